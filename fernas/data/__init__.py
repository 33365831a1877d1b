"""Datasets on disk -> in-memory uint8 tensors (`fernas.dataset.Dataset`), with a parse cache.

Sources (`--data`):

* ``demo`` (default) -- the built-in synthetic faces of `fernas.demo_faces`. ``demo:N`` sets the
  training size (val and test get N/5 each), ``demo:N,V,T`` all three. ``demo-hard`` (with the
  same sizes) draws them with more pose, occlusion, lighting and noise (`demo_faces.DIFFICULTIES`).
* a FER2013 CSV (Goodfellow et al. 2013; the data set of every seed paper), in any of its
  distributed variants, recognised by the header:
  ``fer2013.csv`` (``emotion,pixels,Usage``), ``icml_face_data.csv`` (``emotion, Usage, pixels``,
  with spaces) and the Kaggle challenge ``train.csv`` (``emotion,pixels``, no Usage).
  Splits follow the seed papers: train = Training, val = PublicTest, test = PrivateTest.
  Without a Usage column a stratified, seeded validation and test part is split off
  (``val_fraction``, ``test_fraction``).
* FER+ labels (Barsoum et al. 2016): ``labels="fer2013new.csv"`` relabels the rows of fer2013.csv
  by the FER+ majority vote (as Microsoft's FERPlus code does: single votes are dropped as
  outliers, the top emotion needs more than half of the remaining votes) and drops rows whose
  vote is unknown, not-a-face or has no majority. Classes are FER2013's seven in FER2013 order
  plus ``contempt``; each split also carries ``soft``, the vote distribution.
* an image folder ``ROOT/{train,test}/<class>/*`` with optional ``ROOT/val`` (else a stratified,
  seeded part of train). Any image Pillow reads becomes 48x48 grayscale. Class folders named like
  the FER2013 classes (any case) keep FER2013 order; other names are sorted.

Bad input raises `DataError` with one line naming the file, the line or image, and what was
expected; ``skip_bad=True`` skips bad rows/images instead and counts them in `Dataset.skipped`.

Parsed data is cached under ``~/.cache/fernas`` (``FERNAS_CACHE_DIR`` or ``cache_dir`` override)
as a torch file keyed by the SHA-256 of the input's content and the loader options, written
atomically. To make a reload cheaper than hashing 290 MB again, the hash of a file is memoised
by (path, size, mtime), the way git's index does.

Modules: `fer_csv` (the CSV variants, FER+), `folder` (image folders, `image_to_face`),
`cache` (the parse cache), `common` (splits), this one (`load_dataset`, the demo source).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fernas import demo_faces
from fernas.data.cache import CACHE_VERSION, cache_root, cached, file_hash
from fernas.data.common import refuse_nonempty, stratified_split
from fernas.data.fer_csv import (FERPLUS_CLASSES, fer_csv_bytes, ferplus_targets, load_csv, parse_fer_csv,
                                 parse_ferplus, write_fer_csv)
from fernas.data.folder import folder_hash, image_to_face, load_folder, write_image_folder
from fernas.dataset import FER_CLASSES, Dataset
from fernas.errors import DataError, DataSettingError

__all__ = ["CACHE_VERSION", "FERPLUS_CLASSES", "FER_CLASSES", "cache_root", "demo_difficulty", "fer_csv_bytes",
           "ferplus_targets", "image_to_face", "load_dataset", "parse_demo_spec", "parse_fer_csv", "parse_ferplus", "refuse_nonempty",
           "stratified_split", "write_fer_csv", "write_image_folder"]


def demo_difficulty(source: str) -> str | None:
    """The difficulty of a demo spec ('demo...' standard, 'demo-hard...' hard); None: not one."""
    name = str(source).split(":", 1)[0]
    return {"demo": "standard", **{f"demo-{k}": k for k in demo_faces.DIFFICULTIES}}.get(name)


def parse_demo_spec(source: str) -> tuple[int, int, int]:
    """'demo' -> default sizes; 'demo:N' -> (N, N//5, N//5); 'demo:N,V,T' -> (N, V, T); the
    same after 'demo-hard'."""
    name, colon, spec = source.partition(":")
    if not colon:
        return demo_faces.DEFAULT_SIZES
    try:
        sizes = [int(s) for s in spec.split(",")]
        if len(sizes) == 1:
            sizes = [sizes[0], max(1, sizes[0] // 5), max(1, sizes[0] // 5)]
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError
    except ValueError:
        raise DataSettingError("data", source, f"expected '{name}', '{name}:N' or '{name}:TRAIN,VAL,TEST' "
                               "with positive sizes") from None
    return tuple(sizes)  # type: ignore[return-value]


def load_dataset(source: str | os.PathLike = "demo", *, labels: str | os.PathLike | None = None,
                 skip_bad: bool = False, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, use_cache: bool = True) -> Dataset:
    """Load `source` (see the module docstring) as a `Dataset` of uint8 (N, 48, 48) splits.

    seed: the demo generator's seed, and the seed of stratified splits. Raises DataError.
    """
    src = str(source)
    root = cache_root(cache_dir) if use_cache else None
    difficulty = demo_difficulty(src)
    if difficulty:
        if labels:
            raise DataSettingError("labels", labels, "FER+ votes apply to fer2013.csv, not to the demo data")
        sizes = parse_demo_spec(src)
        demo_src = Path(demo_faces.__file__).read_bytes()  # a changed generator invalidates the cache
        key = dict(v=CACHE_VERSION, kind="demo", sizes=list(sizes), seed=seed, difficulty=difficulty,
                   gen=hashlib.sha256(demo_src).hexdigest())
        ds = cached(key, root, lambda: demo_faces.make_demo(*sizes, seed=seed, difficulty=difficulty))
        ds.source = src
        return ds
    path = Path(src)
    if not path.exists():
        raise DataError(f"{src}: no such file or directory (expected 'demo', 'demo-hard', a FER2013 CSV or an "
                        "image folder)")
    for f in ("val_fraction", "test_fraction"):
        v = locals()[f]
        if not 0 <= v < 0.5:
            raise DataError(f"{f} must be in [0, 0.5), got {v}")
    if path.is_dir():
        if labels:
            raise DataSettingError("labels", labels, "FER+ votes apply to fer2013.csv, not to an image folder")
        key_fn = lambda: dict(v=CACHE_VERSION, kind="folder", content=folder_hash(path),  # noqa: E731
                              skip_bad=skip_bad, seed=seed, val=val_fraction)
        build = lambda: load_folder(path, skip_bad, seed, val_fraction)  # noqa: E731
    else:
        if path.stat().st_size == 0:
            raise DataError(f"{src}: empty file")
        if labels and not Path(labels).is_file():
            raise DataError(f"{labels}: no such file (expected the FER+ vote file fer2013new.csv)")
        key_fn = lambda: dict(  # noqa: E731
            v=CACHE_VERSION, kind="csv", content=file_hash(path, root) if root else "",
            labels=file_hash(Path(labels), root) if (labels and root) else None,
            skip_bad=skip_bad, seed=seed, val=val_fraction, test=test_fraction)
        build = lambda: load_csv(path, str(labels) if labels else None, skip_bad, seed,  # noqa: E731
                                  val_fraction, test_fraction)
    if root is None:
        return build()
    return cached(key_fn(), root, build)
