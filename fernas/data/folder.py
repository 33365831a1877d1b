"""Image folders ``ROOT/{train,val,test}/<class>/*`` <-> datasets.

Any image Pillow reads becomes 48x48 grayscale (`fernas.data.images`).  Split folders may also be
named ``training``, ``valid``/``validation``/``PublicTest``, ``testing``/``PrivateTest`` (any
case); other folders in ROOT are ignored and listed in ``info["ignored"]``.  Class folders named
like the FER2013 classes (any case) keep FER2013 order; other names are sorted.  Every class
needs training images.  Without a val folder a stratified, seeded part of train becomes the
validation split.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from fernas.data.common import check_nonempty, refuse_nonempty, split_note, stratified_split, take
from fernas.data.images import BadImage, read_face
from fernas.dataset import FER_CLASSES, IMAGE_SIZE, Dataset, Split
from fernas.errors import DataError, DataSettingError
from fernas.io import UMASK


def image_files(root: Path) -> list[Path]:
    """The files under root, broken links included (read, they are bad images: counted, or one
    line, never dropped without a word); hidden ones left out."""
    return sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink() and not p.exists())
                  and not p.name.startswith("."))


# Split folder names (any case) -> split.  FER2013 dumped as images often uses the CSV's Usage
# values (Training, PublicTest, PrivateTest); other data sets say valid or validation.
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation", "publictest"),
                 "test": ("test", "testing", "privatetest")}


def split_folders(root: Path) -> tuple[dict[str, Path], list[str]]:
    """({split: its folder}, names of the other visible folders in root, which are ignored)."""
    alias = {name: split for split, names in SPLIT_FOLDERS.items() for name in names}
    found: dict[str, Path] = {}
    ignored = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = alias.get(d.name.lower())
        if split is None:
            ignored.append(d.name)
        elif split in found:
            raise DataError(f"{root}: both '{found[split].name}' and '{d.name}' are {split} folders; keep one")
        else:
            found[split] = d
    for need in ("train", "test"):
        if need not in found:
            alts = " or ".join(f"'{a}'" for a in SPLIT_FOLDERS[need][1:])
            seen = f"; ignored: {', '.join(ignored)}" if ignored else ""
            raise DataError(f"{root}: image folder needs {root}/{need}/<class>/ (found no '{need}' folder, "
                            f"nor {alts}{seen})")
    return found, ignored


def _class_names(split_dirs: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(class folder names in class order, class names): FER2013 order when they are FER2013's."""
    names = sorted({d.name for s in split_dirs.values() for d in s.iterdir() if d.is_dir()
                    and not d.name.startswith(".")})
    if not names:
        train = split_dirs["train"]
        raise DataError(f"{train}: no class folders (expected {train}/<class>/<image>)")
    lower = [n.lower() for n in names]
    if len(set(lower)) == len(lower) and set(lower) <= set(FER_CLASSES):
        names = sorted(names, key=lambda n: FER_CLASSES.index(n.lower()))  # FER2013 order
    return names, [n.lower() if n.lower() in FER_CLASSES else n for n in names]


def _read_split(sdir: Path, names: list[str], skip_bad: bool) -> tuple[Split, int]:
    """(the faces of sdir/<class>/*, how many bad files were skipped)."""
    xs, ys, skipped = [], [], 0
    for ci, cname in enumerate(names):
        cdir = sdir / cname
        if not cdir.is_dir():
            continue
        for f in image_files(cdir):  # one decode per file: no way around a per-file loop
            try:
                xs.append(read_face(f))
            except BadImage as exc:
                if not skip_bad:
                    raise DataError(f"{f}: unreadable image ({exc})") from None
                skipped += 1
                continue
            ys.append(ci)
    x = torch.from_numpy(np.stack(xs)) if xs else torch.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    return Split(x, torch.tensor(ys, dtype=torch.long)), skipped


def _refuse_untrained(out: dict[str, Split], split_dirs: dict[str, Path], names: list[str]) -> None:
    """A class without training images (its folder only in test, or empty) cannot be learnt: refused."""
    counts = out["train"].class_counts(len(names))
    for ci, name in enumerate(names):
        if counts[ci]:
            continue
        tdir = split_dirs["train"]
        if (tdir / name).is_dir():
            why = "the folder holds no readable images"
        else:
            why = "the class folder is only in " + ", ".join(d.name for d in split_dirs.values() if (d / name).is_dir())
        raise DataError(f"{tdir / name}: class '{name}' has no training images ({why}); every class needs "
                        "training images: add some, or remove the class's folders")


def load_folder(root: Path, skip_bad: bool, seed: int, val_fraction: float) -> Dataset:
    where = str(root)
    split_dirs, ignored = split_folders(root)
    names, classes = _class_names(split_dirs)
    out, skipped = {}, 0
    for split, sdir in split_dirs.items():
        out[split], k = _read_split(sdir, names, skip_bad)
        skipped += k
    _refuse_untrained(out, split_dirs, names)
    info = {"kind": "folder", "path": where}
    if ignored:
        info["ignored"] = ignored
    if "val" not in out:
        tr = out["train"]
        rest, val = stratified_split(tr.y, [val_fraction], seed)
        out["train"], out["val"] = take(tr.x, tr.y, None, rest), take(tr.x, tr.y, None, val)
        note = split_note("val", len(val), len(tr), val_fraction, "train images")
        info["split"] = f"stratified by class, seed {seed}: {note}"
    ds = Dataset(classes, out["train"], out["val"], out["test"], source=where, skipped=skipped, info=info)
    return check_nonempty(ds, where)


def folder_hash(root: Path) -> str:
    """Content hash of an image folder: its folders (an empty class folder is a class too, so it
    must change the hash), then the relative path and bytes of every file."""
    h = hashlib.sha256()
    dirs = sorted(str(d.relative_to(root)) for d in root.rglob("*") if d.is_dir())
    h.update(f"{len(dirs)} folders\0".encode() + "\0".join(dirs).encode() + b"\0")
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
    # mkdtemp makes it 0700: the mode a plain mkdir gives (an existing empty folder keeps its own)
    os.chmod(tmp, out.stat().st_mode & 0o7777 if out.is_dir() else 0o777 & ~UMASK)
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
