"""FER2013 in its CSV variants, FER+ vote labels, and the fer2013.csv writer.

Variants, recognised by the header: ``fer2013.csv`` (``emotion,pixels,Usage``),
``icml_face_data.csv`` (``emotion, Usage, pixels``, with spaces) and the Kaggle challenge
``train.csv`` (``emotion,pixels``, no Usage).  Splits: train = Training, val = PublicTest,
test = PrivateTest (Kaggle's final ranking; ``fer_test="public"`` swaps the two held-out ones,
as the VGG paper's code did: it reports its 73.28 % on PublicTest); without a Usage column a
stratified, seeded validation and test part is split off.  FER+ (Barsoum et al. 2016) relabels the rows of fer2013.csv by
majority vote, as Microsoft's FERPlus code does.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from fernas.data.common import check_nonempty, refuse_nonempty, split_note, stratified_split, take
from fernas.data_spec import FER_TEST_DEFAULT, split_usage
from fernas.dataset import FER_CLASSES, IMAGE_SIZE, Dataset
from fernas.errors import DataError, DataSettingError

FERPLUS_CLASSES = FER_CLASSES + ["contempt"]
# FER+ vote columns in fer2013new.csv, and where each goes in FERPLUS_CLASSES (None: dropped rows).
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "nf"]
FERPLUS_TO_CLASS = [6, 3, 5, 4, 0, 1, 2, 7]
USAGE_TO_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}
PIXELS = IMAGE_SIZE * IMAGE_SIZE


def _detect_header(first: bytes, where: str) -> tuple[list[str], dict[str, int]]:
    names = [f.strip().strip('"').strip().lower() for f in first.decode("utf-8-sig", "replace").split(",")]
    cols = {n: i for i, n in enumerate(names)}
    if set(names) in ({"emotion", "pixels", "usage"}, {"emotion", "pixels"}) and len(names) == len(cols):
        return names, cols
    shown = first.decode("utf-8", "replace").strip()[:80]
    if {"neutral", "happiness", "nf"} <= set(names):
        raise DataSettingError("data", where, "this is a FER+ vote file",
                               "pass it with {labels} and give fer2013.csv to {name}")
    raise DataError(f"{where}: unknown header '{shown}'; expected 'emotion,pixels,Usage' (fer2013.csv), "
                    f"'emotion, Usage, pixels' (icml_face_data.csv) or 'emotion,pixels' (train.csv)")


def _parse_pixels_slow(pix: bytes) -> tuple[np.ndarray | None, str]:
    """Exact parse of one pixel field for error messages: (values, '') or (None, why)."""
    toks = pix.split()
    if len(toks) != PIXELS:
        return None, f"expected {PIXELS} pixel values, found {len(toks)}"
    for t in toks:
        if not t.isdigit():
            shown = t.decode("utf-8", "replace")[:20]
            if t[:1] == b"-" and t[1:].isdigit():
                return None, f"pixel value {shown} is outside 0..255"
            return None, f"pixel value '{shown}' is not a number (expected integers 0..255)"
        if int(t) > 255:
            return None, f"pixel value {int(t)} is outside 0..255"
    return np.array([int(t) for t in toks], dtype=np.uint8), ""


def _decode_pixels(pixfields: list[bytes], linenos: list[int], bad) -> tuple[np.ndarray, list[int]]:
    """Pixel fields -> (x uint8 (n, 48, 48), indices kept).  One `np.fromstring` call parses all
    fields; only when that disagrees with the field count is every field re-parsed exactly, so
    `bad(line, why)` names the line of a non-number or an out-of-range value."""
    n = len(pixfields)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns and returns a partial read instead
            flat = np.fromstring(b" ".join(pixfields), dtype=np.int16, sep=" ")
    except ValueError:  # numpy 2: a token that is not a number
        flat = np.zeros(0, dtype=np.int16)
    if flat.size == n * PIXELS and (flat.size == 0 or (flat.min() >= 0 and flat.max() <= 255)):
        return flat.astype(np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE), list(range(n))
    keep, arrays = [], []
    for k, pix in enumerate(pixfields):
        vals, why = _parse_pixels_slow(pix)
        if vals is None:
            bad(linenos[k], why)
            continue
        keep.append(k)
        arrays.append(vals)
    x = np.stack(arrays).reshape(-1, IMAGE_SIZE, IMAGE_SIZE) if arrays else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return x, keep


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
    x, keep = _decode_pixels(pixfields, [r[1] for r in rows], bad)
    if not keep:
        raise DataError(f"{where}: no images left after skipping {skipped} bad rows")
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


# Why FER+ drops a row (ferplus_targets), for the message when it drops all of a split.
_DROPPED = "each row's vote is empty, unknown, not-a-face or without a majority"


def _relabel_ferplus(parsed: dict, labels: str, path: Path, skip_bad: bool, usage_of: dict[str, str]) -> tuple:
    """Relabel parsed rows by FER+ majority vote -> (x, y, soft, vote rows skipped, rows dropped);
    parsed["usage"] keeps only the kept rows.  Raises DataError naming the labels file."""
    votes, vrows, vskipped = parse_ferplus(labels, skip_bad)
    if vrows != parsed["rows"]:
        raise DataError(f"{labels}: has {vrows} rows but {path} has {parsed['rows']}; "
                        f"FER+ labels must come with the fer2013.csv they were made for")
    rowidx = parsed["row"].tolist()
    have = np.array([r in votes for r in rowidx], dtype=bool)  # rows whose vote line was skipped: dropped
    table = np.stack([votes.get(r, np.zeros(10, np.float32)) for r in rowidx])  # (N, 10)
    keep, lab, sft = ferplus_targets(table)
    keep &= have
    if not keep.any():
        raise DataError(f"{labels}: the FER+ relabelling dropped all {len(keep)} rows of {path} ({_DROPPED})")
    sel = torch.from_numpy(np.flatnonzero(keep))
    if parsed["usage"] is not None:
        before = {u: parsed["usage"].count(u) for u in USAGE_TO_SPLIT.values()}
        parsed["usage"] = [parsed["usage"][i] for i in sel.tolist()]
        for split, n in before.items():
            if n and split not in parsed["usage"]:
                raise DataError(f"{labels}: the FER+ relabelling dropped all {n} rows of split '{split}' "
                                f"(Usage {usage_of[split]}) of {path} ({_DROPPED})")
    y, soft = torch.from_numpy(lab[keep].astype(np.int64)), torch.from_numpy(sft[keep])
    return parsed["x"][sel], y, soft, vskipped, int((~keep).sum())


def _usage_splits(x, y, soft, parsed: dict, path: Path, classes, skipped: int, info: dict,
                  usage_of: dict[str, str]) -> Dataset:
    """The splits the Usage column names (Training, PublicTest, PrivateTest); each must have rows."""
    use = np.array(parsed["usage"])
    splits = [torch.from_numpy(np.flatnonzero(use == s)) for s in ("train", "val", "test")]
    info = {**info, "split": f"Usage column: val = {usage_of['val']}, test = {usage_of['test']}",
            "test_usage": usage_of["test"], "val_usage": usage_of["val"]}
    ds = Dataset(classes, *[take(x, y, soft, i) for i in splits], source=str(path), skipped=skipped, info=info)
    for name, usage in usage_of.items():
        if len(getattr(ds, name)) == 0:
            raise DataError(f"{path}: split '{name}' has no images (no rows with Usage {usage})")
    return ds


def load_csv(path: Path, labels: str | None, skip_bad: bool, seed: int, val_fraction: float,
             test_fraction: float, fer_test: str = FER_TEST_DEFAULT) -> Dataset:
    """fer_test: which Usage is the test split (`split_usage`); "public" needs a Usage column."""
    parsed = parse_fer_csv(path, skip_bad)
    usage_of = split_usage(fer_test)
    if parsed["usage"] is None and fer_test == "public":
        raise DataSettingError("fer_test", fer_test, f"{path} has no Usage column (no PublicTest rows): its val "
                               "and test are split off at random", "leave {name} out")
    if fer_test == "public":  # parse_fer_csv read PublicTest as val and PrivateTest as test
        parsed["usage"] = [{"val": "test", "test": "val"}.get(u, u) for u in parsed["usage"]]
    x, y, skipped = parsed["x"], parsed["y"], parsed["skipped"]
    soft = None
    classes = list(FER_CLASSES)
    info = {"kind": "csv", "variant": parsed["variant"], "path": str(path)}
    if labels:
        x, y, soft, vskipped, dropped = _relabel_ferplus(parsed, labels, path, skip_bad, usage_of)
        skipped += vskipped
        classes = list(FERPLUS_CLASSES)
        info.update(labels=str(labels), ferplus_dropped=dropped)
    if parsed["usage"] is not None:
        return _usage_splits(x, y, soft, parsed, path, classes, skipped, info, usage_of)
    rest, val, test = stratified_split(y, [val_fraction, test_fraction], seed)
    notes = [split_note(name, len(idx), len(y), frac, "rows")
             for name, idx, frac in (("val", val, val_fraction), ("test", test, test_fraction))]
    info.update(split=f"stratified by class, seed {seed}: {', '.join(notes)}")
    ds = Dataset(classes, take(x, y, soft, rest), take(x, y, soft, val), take(x, y, soft, test),
                 source=str(path), skipped=skipped, info=info)
    return check_nonempty(ds, str(path), " (too few rows to split off val and test)")


def fer_csv_bytes(ds: Dataset) -> bytes:
    """A dataset as fer2013.csv bytes (emotion,pixels,Usage; train/val/test -> Training/PublicTest/PrivateTest)."""
    lut = [str(i).encode() for i in range(256)]
    out = [b"emotion,pixels,Usage"]
    for name, sp in ds.splits().items():
        usage = split_usage()[name].encode()
        for row, lab in zip(sp.x.reshape(len(sp), -1).tolist(), sp.y.tolist()):
            out.append(b"%d,%s,%s" % (lab, b" ".join([lut[v] for v in row]), usage))
    return b"\n".join(out) + b"\n"


def write_fer_csv(ds: Dataset, out: str | os.PathLike) -> None:
    from fernas.io import atomic_write_bytes

    out = Path(out)
    refuse_nonempty(out)
    if out.is_dir():
        raise DataSettingError("out", out, "is a folder", f"{{format}} csv needs a file name such as {out}/fer2013.csv")
    atomic_write_bytes(out, fer_csv_bytes(ds))


