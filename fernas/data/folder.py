"""Image folders ``ROOT/{train,val,test}/<class>/*`` <-> datasets, and any image -> a 48x48 face.

Any image Pillow reads becomes 48x48 grayscale.  Class folders named like the FER2013 classes
(any case) keep FER2013 order; other names are sorted.  Without ``ROOT/val`` a stratified,
seeded part of train becomes the validation split.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from fernas.data.common import check_nonempty, refuse_nonempty, stratified_split, take
from fernas.dataset import FER_CLASSES, IMAGE_SIZE, Dataset, Split
from fernas.errors import DataError, DataSettingError


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


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def load_folder(root: Path, skip_bad: bool, seed: int, val_fraction: float) -> Dataset:
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
            for f in image_files(cdir):
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
        out["train"], out["val"] = take(tr.x, tr.y, None, rest), take(tr.x, tr.y, None, val)
        info["split"] = f"val: stratified {val_fraction} of train, seed {seed}"
    ds = Dataset(classes, out["train"], out["val"], out["test"], source=where, skipped=skipped, info=info)
    return check_nonempty(ds, where)


def folder_hash(root: Path) -> str:
    """Content hash of an image folder: relative paths and bytes of every file."""
    h = hashlib.sha256()
    for f in image_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def write_image_folder(ds: Dataset, out: str | os.PathLike) -> None:
    """Write OUT/{train,val,test}/<class>/<index>.png; built in a temporary sibling folder and
    renamed into place, so a killed run leaves nothing half-written."""
    import shutil
    import tempfile

    from PIL import Image

    out = Path(out)
    refuse_nonempty(out)
    if out.is_file():
        raise DataSettingError("out", out, "is an (empty) file", "{format} folder needs a folder name")
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
