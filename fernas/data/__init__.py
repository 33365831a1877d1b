"""Datasets on disk -> in-memory uint8 tensors (`fernas.dataset.Dataset`), with a parse cache.

Sources (`--data`):

* ``demo`` (default) -- the built-in synthetic faces of `fernas.demo_faces`. ``demo:N`` sets the
  training size (val and test get N/5 each), ``demo:N,V,T`` all three. ``demo-hard`` (with the
  same sizes) draws them with more pose, occlusion, lighting and noise (`demo_faces.DIFFICULTIES`).
* a FER2013 CSV (Goodfellow et al. 2013; the data set of every seed paper), in any of its
  distributed variants, recognised by the header:
  ``fer2013.csv`` (``emotion,pixels,Usage``), ``icml_face_data.csv`` (``emotion, Usage, pixels``,
  with spaces) and the Kaggle challenge ``train.csv`` (``emotion,pixels``, no Usage).
  Splits: train = Training, val = PublicTest, test = PrivateTest (Kaggle's final ranking);
  ``fer_test="public"`` swaps val and test, as the VGG paper's code did (it reports on PublicTest).
  Without a Usage column a stratified, seeded validation and test part is split off
  (``val_fraction``, ``test_fraction``).
* FER+ labels (Barsoum et al. 2016): ``labels="fer2013new.csv"`` relabels the rows of fer2013.csv
  by the FER+ majority vote (as Microsoft's FERPlus code does: single votes are dropped as
  outliers, the top emotion needs more than half of the remaining votes) and drops rows whose
  vote is unknown, not-a-face or has no majority. Classes are FER2013's seven in FER2013 order
  plus ``contempt``; each split also carries ``soft``, the vote distribution.
* an image folder ``ROOT/{train,test}/<class>/*`` with optional ``ROOT/val`` (else a stratified,
  seeded part of train); the split folders may also be named ``training``, ``valid``,
  ``validation``, ``PublicTest``, ``testing``, ``PrivateTest`` (any case), other folders are
  ignored with a warning. Any image Pillow reads becomes 48x48 grayscale, 16-bit ones scaled
  (`images`). Class folders named like the FER2013 classes (any case) keep FER2013 order; other
  names are sorted. Every class needs training images.

Bad input raises `DataError` with one line naming the file, the line or image, and what was
expected; ``skip_bad=True`` skips bad rows/images instead and counts them in `Dataset.skipped`.

Parsed data is cached under ``~/.cache/fernas`` (``FERNAS_CACHE_DIR`` or ``cache_dir`` override)
as a torch file keyed by the SHA-256 of the input's content and the loader options, written
atomically. To make a reload cheaper than hashing 290 MB again, the hash of a file is memoised
by (path, size, mtime), the way git's index does. A copy of the same bytes under another name
hits the same entry, so a hit reports the path given now (`Dataset.source`, ``info["path"]``);
an image folder's key also holds its folder listing (an empty class folder changes it).

Seeds are -2**63..2**63-1 and demo splits 1..1,000,000 images (`MIN_SEED`, `MAX_SEED`, `MAX_DEMO_IMAGES`).

Modules: `fer_csv` (the CSV variants, FER+), `folder` (image folders), `images` (any image file
-> a face: `read_face`, `image_to_face`), `cache` (the parse cache), `common` (splits), this one
(`load_dataset`, the demo source).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from fernas import demo_faces
from fernas.data.cache import CACHE_VERSION, cache_root, cached, file_hash
from fernas.data.common import refuse_nonempty, stratified_split
from fernas.data.fer_csv import (FERPLUS_CLASSES, fer_csv_bytes, ferplus_targets, load_csv,
                                 parse_fer_csv, parse_ferplus, write_fer_csv)
from fernas.data.folder import SPLIT_FOLDERS, folder_hash, load_folder, write_image_folder
from fernas.data.images import BadImage, image_to_face, read_face
from fernas.data_spec import FER_TEST_CHOICES, FER_TEST_DEFAULT
from fernas.dataset import FER_CLASSES, IMAGE_SIZE, Dataset
from fernas.demo_spec import MAX_DEMO_IMAGES, MAX_SEED, MIN_SEED
from fernas.errors import DataError, DataSettingError

__all__ = ["CACHE_VERSION", "FERPLUS_CLASSES", "FER_CLASSES", "MAX_DEMO_IMAGES", "MAX_SEED", "MIN_SEED", "BadImage", "cache_root",
           "check_demo_size", "check_seed", "demo_difficulty", "fer_csv_bytes", "ferplus_targets", "image_to_face",
           "load_dataset", "parse_demo_spec", "parse_fer_csv", "parse_ferplus", "read_face", "refuse_nonempty",
           "stratified_split", "write_fer_csv", "write_image_folder"]



def check_seed(seed: int, setting: str = "data_seed") -> int:
    """`seed` if it is an integer in MIN_SEED..MAX_SEED, else a DataSettingError naming `setting`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not MIN_SEED <= seed <= MAX_SEED:
        raise DataSettingError(setting, seed, "a seed must be an integer from -2**63 to 2**63-1")
    return seed


def check_demo_size(n: int, setting: str, shown=None) -> int:
    """`n` if 1 <= n <= MAX_DEMO_IMAGES, else a DataSettingError naming `setting` (showing `shown`)."""
    if not 1 <= n <= MAX_DEMO_IMAGES:
        raise DataSettingError(setting, n if shown is None else shown,
                               f"a demo split needs 1 to {MAX_DEMO_IMAGES:,} images (the demo faces are drawn into "
                               f"memory, {IMAGE_SIZE * IMAGE_SIZE:,} bytes each)")
    return n


def demo_difficulty(source: str) -> str | None:
    """The difficulty of a demo spec ('demo...' standard, 'demo-hard...' hard); None: not one."""
    name = str(source).split(":", 1)[0]
    return {"demo": "standard", **{f"demo-{k}": k for k in demo_faces.DIFFICULTIES}}.get(name)


def parse_demo_spec(source: str) -> tuple[int, int, int]:
    """'demo' -> default sizes; 'demo:N' -> (N, N//5, N//5); 'demo:N,V,T' -> (N, V, T); the
    same after 'demo-hard'.  Each size must be in 1..MAX_DEMO_IMAGES."""
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
    for n in sizes:
        check_demo_size(n, "data", source)
    return tuple(sizes)  # type: ignore[return-value]


def load_dataset(source: str | os.PathLike = "demo", *, labels: str | os.PathLike | None = None,
                 skip_bad: bool = False, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, use_cache: bool = True,
                 fer_test: str = FER_TEST_DEFAULT) -> Dataset:
    """Load `source` (see the module docstring) as a `Dataset` of uint8 (N, 48, 48) splits.

    seed: the demo generator's seed, and the seed of stratified splits (MIN_SEED..MAX_SEED).
    fer_test: "private" or "public", the Usage a FER2013 CSV's test split is read from.  Raises DataError.
    """
    src = str(source)
    check_seed(seed)
    if fer_test not in FER_TEST_CHOICES:
        raise DataSettingError("fer_test", fer_test, f"expected {' or '.join(FER_TEST_CHOICES)}")
    root = cache_root(cache_dir) if use_cache else None
    difficulty = demo_difficulty(src)
    if fer_test != FER_TEST_DEFAULT and (difficulty or Path(src).is_dir()):
        what = "the demo data" if difficulty else ("an image folder (its val and test are the folders so named, "
                                                   "PublicTest and PrivateTest among them: rename them to swap)")
        raise DataSettingError("fer_test", fer_test, f"applies to a FER2013 CSV with a Usage column, not to {what}")
    if difficulty:
        return _load_demo(src, difficulty, labels, seed, root)
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
            what = "a directory" if Path(labels).is_dir() else "no such file"
            raise DataError(f"{labels}: {what} (expected the FER+ vote file fer2013new.csv)")
        key_fn = lambda: dict(  # noqa: E731
            v=CACHE_VERSION, kind="csv", content=file_hash(path, root) if root else "",
            labels=file_hash(Path(labels), root) if (labels and root) else None,
            skip_bad=skip_bad, seed=seed, val=val_fraction, test=test_fraction, fer_test=fer_test)
        build = lambda: load_csv(path, str(labels) if labels else None, skip_bad, seed,  # noqa: E731
                                 val_fraction, test_fraction, fer_test)
    # What this call names, never taken from a cache entry made from a copy at another path.
    paths = {"path": src, **({"labels": str(labels)} if labels else {})}
    ds = build() if root is None else cached(key_fn(), root, build, source=src, paths=paths)
    _warn_ignored(ds)
    return ds


def _load_demo(src: str, difficulty: str, labels, seed: int, root: Path | None) -> Dataset:
    if labels:
        raise DataSettingError("labels", labels, "FER+ votes apply to fer2013.csv, not to the demo data")
    sizes = parse_demo_spec(src)
    demo_src = Path(demo_faces.__file__).read_bytes()  # a changed generator invalidates the cache
    key = dict(v=CACHE_VERSION, kind="demo", sizes=list(sizes), seed=seed, difficulty=difficulty,
               gen=hashlib.sha256(demo_src).hexdigest())
    ds = cached(key, root, lambda: demo_faces.make_demo(*sizes, seed=seed, difficulty=difficulty))
    ds.source = src  # 'demo' from the generator, or what the entry was made for
    return ds


def _warn_ignored(ds: Dataset) -> None:
    """One stderr line for folders of an image folder that are no split (also on a cache hit)."""
    ignored = ds.info.get("ignored")
    if ignored:
        names = ", ".join(f"'{n}'" for n in ignored)
        known = ", ".join("/".join(names_) for names_ in SPLIT_FOLDERS.values())
        print(f"fernas: warning: {ds.source}: ignored folder {names} (split folders are {known}, any case)",
              file=sys.stderr)
