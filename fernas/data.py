"""Datasets on disk -> in-memory uint8 tensors (`fernas.dataset.Dataset`), with a parse cache.

Sources (`--data`):

* ``demo`` (default) -- the built-in synthetic faces of `fernas.demo_faces`. ``demo:N`` sets the
  training size (val and test get N/5 each), ``demo:N,V,T`` all three.
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
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from fernas import demo_faces
from fernas.dataset import FER_CLASSES, IMAGE_SIZE, Dataset, Split
from fernas.errors import DataError
from fernas.io import atomic_torch_save, atomic_write_json

FERPLUS_CLASSES = FER_CLASSES + ["contempt"]
# FER+ vote columns in fer2013new.csv, and where each goes in FERPLUS_CLASSES (None: dropped rows).
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "nf"]
FERPLUS_TO_CLASS = [6, 3, 5, 4, 0, 1, 2, 7]
USAGE_TO_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}
PIXELS = IMAGE_SIZE * IMAGE_SIZE
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- cache

def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("FERNAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fernas"


def _file_hash(path: Path, root: Path) -> str:
    """SHA-256 of a file's content, memoised by (absolute path, size, mtime_ns)."""
    st = path.stat()
    memo_path = root / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    digest = h.hexdigest()
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path.resolve()}|")}
    memo[key] = digest
    try:
        atomic_write_json(memo_path, memo)
    except OSError:
        pass  # a read-only cache only costs speed
    return digest


def _cached(key_parts: dict, root: Path | None, build) -> Dataset:
    """Return the dataset cached under the hash of key_parts, or build() and cache it."""
    if root is None:
        return build()
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:32]
    path = root / f"{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            splits = [Split(blob[s]["x"], blob[s]["y"], blob[s].get("soft")) for s in ("train", "val", "test")]
            info = json.loads(blob["info"])
            info["cache"] = "hit"
            return Dataset(blob["classes"], *splits, source=blob["source"], skipped=blob["skipped"], info=info)
        except Exception:  # noqa: BLE001 - a corrupt or foreign cache file is rebuilt, never fatal
            pass
    ds = build()
    blob = {"classes": ds.classes, "source": ds.source, "skipped": ds.skipped, "info": json.dumps(ds.info)}
    for name, sp in ds.splits().items():
        blob[name] = {"x": sp.x.contiguous(), "y": sp.y}
        if sp.soft is not None:
            blob[name]["soft"] = sp.soft
    try:
        atomic_torch_save(blob, path)
    except OSError:
        pass
    ds.info["cache"] = "miss"
    return ds


# ----------------------------------------------------------------------------- helpers

def stratified_split(y: torch.Tensor, fractions: list[float], seed: int) -> list[torch.Tensor]:
    """Index sets [rest, part1, part2, ...]: each class split by `fractions`, seeded.

    Per class the indices are shuffled and round(frac * n_class) go to each part, so every
    part keeps the class proportions (a class with more images than parts gets at least one
    image in each part). Returns sorted index tensors.
    """
    g = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for k, f in enumerate(fractions):
            n = int(round(f * len(idx)))
            if f > 0 and n == 0 and len(idx) > len(fractions):
                n = 1  # a small class still appears in every part
            parts[k + 1].append(idx[start:start + n])
            start += n
        parts[0].append(idx[start:])
    return [torch.sort(torch.cat(p))[0] if p else torch.zeros(0, dtype=torch.long) for p in parts]


def _check_nonempty(ds: Dataset, where: str, hint: str = "") -> Dataset:
    for name, sp in ds.splits().items():
        if len(sp) == 0:
            raise DataError(f"{where}: split '{name}' has no images{hint}")
    return ds


def _take(x, y, soft, idx) -> Split:
    return Split(x[idx], y[idx], None if soft is None else soft[idx])


# ----------------------------------------------------------------------------- CSV

def _detect_header(first: bytes, where: str) -> tuple[list[str], dict[str, int]]:
    names = [f.strip().strip('"').strip().lower() for f in first.decode("utf-8-sig", "replace").split(",")]
    cols = {n: i for i, n in enumerate(names)}
    if set(names) in ({"emotion", "pixels", "usage"}, {"emotion", "pixels"}) and len(names) == len(cols):
        return names, cols
    shown = first.decode("utf-8", "replace").strip()[:80]
    if {"neutral", "happiness", "nf"} <= set(names):
        raise DataError(f"{where}: this is a FER+ vote file; pass it with --labels and give fer2013.csv to --data")
    raise DataError(f"{where}: unknown header '{shown}'; expected 'emotion,pixels,Usage' (fer2013.csv), "
                    f"'emotion, Usage, pixels' (icml_face_data.csv) or 'emotion,pixels' (train.csv)")


def _parse_pixels_slow(pix: bytes) -> tuple[np.ndarray | None, str]:
    """Exact parse of one pixel field for error messages: (values, '') or (None, why)."""
    toks = pix.split()
    if len(toks) != PIXELS:
        return None, f"expected {PIXELS} pixel values, found {len(toks)}"
    for t in toks:
        if not t.isdigit():
            return None, f"pixel value '{t.decode('utf-8', 'replace')[:20]}' is not a number (expected integers 0..255)"
        if int(t) > 255:
            return None, f"pixel value {int(t)} is outside 0..255"
    return np.array([int(t) for t in toks], dtype=np.uint8), ""


def parse_fer_csv(path: str | os.PathLike, skip_bad: bool = False) -> dict:
    """Parse a FER2013 CSV variant. Returns dict(x uint8 (N,48,48), y (N,), usage list|None,
    row (N,) data-row index of each image (0-based, for FER+ alignment), skipped, variant, rows).

    Fast path: Python only splits each line into its fields (35,887 lines), the pixel fields of
    all rows are joined and parsed by one `np.fromstring` call; only when that disagrees with the
    per-row counts is every row re-parsed exactly to name the bad line.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise DataError(f"{where}: empty file")
    lines = raw.split(b"\n")
    names, cols = _detect_header(lines[0].rstrip(b"\r"), where)
    ncols = len(names)
    ie, ip, iu = cols["emotion"], cols["pixels"], cols.get("usage")
    variant = ("icml_face_data.csv" if b", " in lines[0] else "fer2013.csv") if iu is not None else "train.csv"
    skipped = 0
    labels, usages, rows, pixfields = [], [], [], []
    data_row = -1

    def bad(lineno: int, why: str) -> None:
        nonlocal skipped
        if not skip_bad:
            raise DataError(f"{where} line {lineno}: {why}")
        skipped += 1

    for lineno, line in enumerate(lines[1:], start=2):
        if len(line) < 3 and not line.strip():
            continue  # blank line (e.g. the end of the file)
        data_row += 1
        parts = line.split(b",")
        if len(parts) != ncols:
            bad(lineno, f"expected {ncols} comma-separated fields ({', '.join(names)}), found {len(parts)}")
            continue
        lab = parts[ie].strip(b' "\r')
        if not lab.isdigit() or int(lab) >= len(FER_CLASSES):
            bad(lineno, f"emotion '{lab.decode('utf-8', 'replace')[:20]}' is not a class index 0..{len(FER_CLASSES) - 1}")
            continue
        if iu is not None:
            use = parts[iu].strip(b' "\r').decode("utf-8", "replace")
            if use.lower() not in USAGE_TO_SPLIT:
                bad(lineno, f"unknown Usage '{use[:30]}' (expected Training, PublicTest or PrivateTest)")
                continue
            usages.append(USAGE_TO_SPLIT[use.lower()])
        pix = parts[ip].strip(b' "\r')
        if pix.count(b" ") + 1 != PIXELS:
            vals, why = _parse_pixels_slow(pix)  # maybe only doubled spaces; else the exact reason
            if vals is None:
                bad(lineno, why)
                if iu is not None:
                    usages.pop()
                continue
        labels.append(int(lab))
        rows.append((data_row, lineno))
        pixfields.append(pix)
    n = len(pixfields)
    if n == 0:
        raise DataError(f"{where}: no images (the file has a header but no data rows)" if skipped == 0
                        else f"{where}: no images left after skipping {skipped} bad rows")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns and returns a partial read instead
            flat = np.fromstring(b" ".join(pixfields), dtype=np.int16, sep=" ")
    except ValueError:  # numpy 2: a token that is not a number
        flat = np.zeros(0, dtype=np.int16)
    ok = flat.size == n * PIXELS and (flat.size == 0 or (flat.min() >= 0 and flat.max() <= 255))
    if ok:
        x = flat.astype(np.uint8).reshape(n, 48, 48)
        keep = list(range(n))
    else:  # some field has a non-number or an out-of-range value: find it row by row
        keep, arrays = [], []
        for k, pix in enumerate(pixfields):
            vals, why = _parse_pixels_slow(pix)
            if vals is None:
                bad(rows[k][1], why)
                continue
            keep.append(k)
            arrays.append(vals)
        if not arrays:
            raise DataError(f"{where}: no images left after skipping {skipped} bad rows")
        x = np.stack(arrays).reshape(-1, 48, 48)
    y = np.array(labels, dtype=np.int64)[keep]
    return dict(x=torch.from_numpy(x), y=torch.from_numpy(y),
                usage=[usages[k] for k in keep] if iu is not None else None,
                row=torch.tensor([rows[k][0] for k in keep], dtype=torch.long),
                skipped=skipped, variant=variant, rows=data_row + 1)


def parse_ferplus(path: str | os.PathLike, skip_bad: bool = False) -> tuple[dict[int, np.ndarray], int, int]:
    """Read a FER+ vote file (fer2013new.csv). Returns ({data row: votes (10,)}, rows, skipped)."""
    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{where}: no such file (expected the FER+ vote file fer2013new.csv)")
    try:
        text = p.read_bytes().decode("utf-8-sig", "replace").splitlines()
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if not text or not text[0].strip():
        raise DataError(f"{where}: empty file")
    header = [h.strip().lower() for h in text[0].split(",")]
    if header[-10:] != FERPLUS_COLUMNS:
        raise DataError(f"{where}: unknown header '{text[0].strip()[:80]}'; expected the FER+ header "
                        f"'Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF'")
    votes, skipped, r = {}, 0, -1
    for lineno, line in enumerate(text[1:], start=2):
        if not line.strip():
            continue
        r += 1
        parts = [f.strip() for f in line.split(",")]
        try:
            if len(parts) != len(header):
                raise ValueError(f"expected {len(header)} fields, found {len(parts)}")
            v = np.array([float(t) for t in parts[-10:]], dtype=np.float32)
            if (v < 0).any():
                raise ValueError("negative vote count")
        except ValueError as exc:
            if not skip_bad:
                raise DataError(f"{where} line {lineno}: bad vote counts ({exc})") from None
            skipped += 1
            continue
        votes[r] = v
    return votes, r + 1, skipped


def ferplus_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FER+ majority labels for vote rows (M, 10) -> (keep mask (M,), label (M,), soft (M, 8)).

    As in Microsoft's FERPlus reference code: votes of 1 are outliers and removed; the top
    emotion must hold more than half of the rest; rows whose top is unknown or not-a-face, or
    that have no majority, are dropped. soft is the cleaned vote distribution over the eight
    emotions, in FERPLUS_CLASSES order.
    """
    v = np.where(votes <= 1.0, 0.0, votes)
    total = v.sum(1)
    top = v.argmax(1)
    keep = (total > 0) & (v.max(1) > 0.5 * total) & (top < 8)
    emo = v[:, :8]
    soft = np.zeros((len(v), 8), dtype=np.float32)
    soft[:, FERPLUS_TO_CLASS] = emo
    s = soft.sum(1, keepdims=True)
    soft = np.divide(soft, s, out=np.zeros_like(soft), where=s > 0)
    label = np.array(FERPLUS_TO_CLASS + [-1, -1])[top]
    return keep, label, soft


def _load_csv(path: Path, labels: str | None, skip_bad: bool, seed: int, val_fraction: float,
              test_fraction: float) -> Dataset:
    parsed = parse_fer_csv(path, skip_bad)
    x, y, skipped = parsed["x"], parsed["y"], parsed["skipped"]
    soft = None
    classes = list(FER_CLASSES)
    info = {"kind": "csv", "variant": parsed["variant"], "path": str(path)}
    if labels:
        votes, vrows, vskipped = parse_ferplus(labels, skip_bad)
        if vrows != parsed["rows"]:
            raise DataError(f"{labels}: has {vrows} rows but {path} has {parsed['rows']}; "
                            f"FER+ labels must come with the fer2013.csv they were made for")
        rowidx = parsed["row"].tolist()
        have = np.array([r in votes for r in rowidx], dtype=bool)
        table = np.stack([votes.get(r, np.zeros(10, np.float32)) for r in rowidx])
        keep, lab, sft = ferplus_targets(table)
        keep &= have
        skipped += vskipped
        sel = torch.from_numpy(np.flatnonzero(keep))
        x, y, soft = x[sel], torch.from_numpy(lab[keep].astype(np.int64)), torch.from_numpy(sft[keep])
        if parsed["usage"] is not None:
            parsed["usage"] = [parsed["usage"][i] for i in sel.tolist()]
        classes = list(FERPLUS_CLASSES)
        info.update(labels=str(labels), ferplus_dropped=int((~keep).sum()))
    if parsed["usage"] is not None:
        use = np.array(parsed["usage"])
        splits = [torch.from_numpy(np.flatnonzero(use == s)) for s in ("train", "val", "test")]
        hint = " (no rows with Usage {})"
        ds = Dataset(classes, *[_take(x, y, soft, i) for i in splits], source=str(path), skipped=skipped, info=info)
        for name, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
            if len(getattr(ds, name)) == 0:
                raise DataError(f"{path}: split '{name}' has no images{hint.format(usage)}")
        return ds
    rest, val, test = stratified_split(y, [val_fraction, test_fraction], seed)
    info.update(split=f"stratified, seed {seed}, val {val_fraction}, test {test_fraction}")
    ds = Dataset(classes, _take(x, y, soft, rest), _take(x, y, soft, val), _take(x, y, soft, test),
                 source=str(path), skipped=skipped, info=info)
    return _check_nonempty(ds, str(path), " (too few rows to split off val and test)")


# ----------------------------------------------------------------------------- image folder

def image_to_face(im) -> np.ndarray:
    """A PIL image of a face crop -> (48, 48) uint8 grayscale, the same for training and predict.

    EXIF orientation is applied (phone photos), colour becomes luminance, a non-square image
    is centre-cropped to a square (no squashing), then resized bilinearly to 48x48.
    """
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im).convert("L")
    w, h = im.size
    s = min(w, h)
    if (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _load_folder(root: Path, skip_bad: bool, seed: int, val_fraction: float) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    where = str(root)
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    for need in ("train", "test"):
        if need not in split_dirs:
            raise DataError(f"{where}: image folder needs {where}/{need}/<class>/ (found no '{need}' folder)")
    names = sorted({d.name for s in split_dirs.values() for d in s.iterdir() if d.is_dir()
                    and not d.name.startswith(".")})
    if not names:
        raise DataError(f"{where}/train: no class folders (expected {where}/train/<class>/<image>)")
    lower = [n.lower() for n in names]
    if len(set(lower)) == len(lower) and set(lower) <= set(FER_CLASSES):
        names = sorted(names, key=lambda n: FER_CLASSES.index(n.lower()))  # FER2013 order
    classes = [n.lower() if n.lower() in FER_CLASSES else n for n in names]
    skipped = 0
    out = {}
    for split, sdir in split_dirs.items():
        xs, ys = [], []
        for ci, cname in enumerate(names):
            cdir = sdir / cname
            if not cdir.is_dir():
                continue
            for f in _image_files(cdir):
                try:
                    with Image.open(f) as im:
                        xs.append(image_to_face(im))
                except (UnidentifiedImageError, OSError, ValueError) as exc:
                    if not skip_bad:
                        why = "not an image Pillow can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
                        raise DataError(f"{f}: unreadable image ({why})") from None
                    skipped += 1
                    continue
                ys.append(ci)
        x = torch.from_numpy(np.stack(xs)) if xs else torch.zeros((0, 48, 48), dtype=torch.uint8)
        out[split] = Split(x, torch.tensor(ys, dtype=torch.long))
    info = {"kind": "folder", "path": where}
    if "val" not in out:
        tr = out["train"]
        rest, val = stratified_split(tr.y, [val_fraction], seed)
        out["train"], out["val"] = _take(tr.x, tr.y, None, rest), _take(tr.x, tr.y, None, val)
        info["split"] = f"val: stratified {val_fraction} of train, seed {seed}"
    ds = Dataset(classes, out["train"], out["val"], out["test"], source=where, skipped=skipped, info=info)
    return _check_nonempty(ds, where)


def _folder_hash(root: Path) -> str:
    """Content hash of an image folder: relative paths and bytes of every file."""
    h = hashlib.sha256()
    for f in _image_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


# ----------------------------------------------------------------------------- entry points

def parse_demo_spec(source: str) -> tuple[int, int, int]:
    """'demo' -> default sizes; 'demo:N' -> (N, N//5, N//5); 'demo:N,V,T' -> (N, V, T)."""
    if source == "demo":
        return demo_faces.DEFAULT_SIZES
    spec = source.split(":", 1)[1]
    try:
        sizes = [int(s) for s in spec.split(",")]
        if len(sizes) == 1:
            sizes = [sizes[0], max(1, sizes[0] // 5), max(1, sizes[0] // 5)]
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError
    except ValueError:
        raise DataError(f"--data {source}: expected 'demo', 'demo:N' or 'demo:TRAIN,VAL,TEST' "
                        f"with positive sizes") from None
    return tuple(sizes)  # type: ignore[return-value]


def load_dataset(source: str | os.PathLike = "demo", *, labels: str | os.PathLike | None = None,
                 skip_bad: bool = False, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.1, use_cache: bool = True) -> Dataset:
    """Load `source` (see the module docstring) as a `Dataset` of uint8 (N, 48, 48) splits.

    seed: the demo generator's seed, and the seed of stratified splits. Raises DataError.
    """
    src = str(source)
    root = cache_root(cache_dir) if use_cache else None
    if src == "demo" or src.startswith("demo:"):
        if labels:
            raise DataError("--labels (FER+ votes) applies to fer2013.csv, not to the demo data")
        sizes = parse_demo_spec(src)
        demo_src = Path(demo_faces.__file__).read_bytes()  # a changed generator invalidates the cache
        key = dict(v=CACHE_VERSION, kind="demo", sizes=list(sizes), seed=seed,
                   gen=hashlib.sha256(demo_src).hexdigest())
        ds = _cached(key, root, lambda: demo_faces.make_demo(*sizes, seed=seed))
        ds.source = src
        return ds
    path = Path(src)
    if not path.exists():
        raise DataError(f"{src}: no such file or directory (expected 'demo', a FER2013 CSV or an image folder)")
    for f in ("val_fraction", "test_fraction"):
        v = locals()[f]
        if not 0 <= v < 0.5:
            raise DataError(f"{f} must be in [0, 0.5), got {v}")
    if path.is_dir():
        if labels:
            raise DataError("--labels (FER+ votes) applies to fer2013.csv, not to an image folder")
        key_fn = lambda: dict(v=CACHE_VERSION, kind="folder", content=_folder_hash(path),  # noqa: E731
                              skip_bad=skip_bad, seed=seed, val=val_fraction)
        build = lambda: _load_folder(path, skip_bad, seed, val_fraction)  # noqa: E731
    else:
        if path.stat().st_size == 0:
            raise DataError(f"{src}: empty file")
        if labels and not Path(labels).is_file():
            raise DataError(f"{labels}: no such file (expected the FER+ vote file fer2013new.csv)")
        key_fn = lambda: dict(  # noqa: E731
            v=CACHE_VERSION, kind="csv", content=_file_hash(path, root) if root else "",
            labels=_file_hash(Path(labels), root) if (labels and root) else None,
            skip_bad=skip_bad, seed=seed, val=val_fraction, test=test_fraction)
        build = lambda: _load_csv(path, str(labels) if labels else None, skip_bad, seed,  # noqa: E731
                                  val_fraction, test_fraction)
    if root is None:
        return build()
    return _cached(key_fn(), root, build)


# ----------------------------------------------------------------------------- writers

_SPLIT_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def fer_csv_bytes(ds: Dataset) -> bytes:
    """A dataset as fer2013.csv bytes (emotion,pixels,Usage; train/val/test -> Training/PublicTest/PrivateTest)."""
    lut = [str(i).encode() for i in range(256)]
    out = [b"emotion,pixels,Usage"]
    for name, sp in ds.splits().items():
        usage = _SPLIT_USAGE[name].encode()
        for row, lab in zip(sp.x.reshape(len(sp), -1).tolist(), sp.y.tolist()):
            out.append(b"%d,%s,%s" % (lab, b" ".join([lut[v] for v in row]), usage))
    return b"\n".join(out) + b"\n"


def refuse_nonempty(out: Path) -> None:
    if out.exists() and (out.is_file() and out.stat().st_size > 0 or out.is_dir() and any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; choose another --out or remove it")


def write_fer_csv(ds: Dataset, out: str | os.PathLike) -> None:
    from fernas.io import atomic_write_bytes

    out = Path(out)
    refuse_nonempty(out)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; --format csv needs a file name such as {out}/fer2013.csv")
    atomic_write_bytes(out, fer_csv_bytes(ds))


def write_image_folder(ds: Dataset, out: str | os.PathLike) -> None:
    """Write OUT/{train,val,test}/<class>/<index>.png; built in a temporary sibling folder and
    renamed into place, so a killed run leaves nothing half-written."""
    import shutil
    import tempfile

    from PIL import Image

    out = Path(out)
    refuse_nonempty(out)
    if out.is_file():
        raise DataError(f"{out}: is an (empty) file; --format folder needs a folder name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name, sp in ds.splits().items():
            for c in ds.classes:
                (tmp / name / c).mkdir(parents=True)
            for i, (img, lab) in enumerate(zip(sp.x.numpy(), sp.y.tolist())):
                Image.fromarray(img, mode="L").save(tmp / name / ds.classes[lab] / f"{i:06d}.png")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
