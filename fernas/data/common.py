"""Helpers every dataset loader shares: stratified splits, split checks, refusing to overwrite."""

from __future__ import annotations

from pathlib import Path

import torch

from fernas.dataset import Dataset, Split
from fernas.errors import DataError, DataSettingError


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


def check_nonempty(ds: Dataset, where: str, hint: str = "") -> Dataset:
    for name, sp in ds.splits().items():
        if len(sp) == 0:
            raise DataError(f"{where}: split '{name}' has no images{hint}")
    return ds


def take(x, y, soft, idx) -> Split:
    return Split(x[idx], y[idx], None if soft is None else soft[idx])


def refuse_nonempty(out: Path) -> None:
    """An output path that may be replaced: absent, an empty regular file or an empty folder
    (a device, a pipe or a link, even an empty one, is not ours to replace)."""
    if out.is_symlink() or out.exists() and not (out.is_file() or out.is_dir()):
        raise DataSettingError("out", out, "is a link or a special file, not a regular file or folder",
                               "choose another {name}")
    if out.exists() and (out.is_file() and out.stat().st_size > 0 or out.is_dir() and any(out.iterdir())):
        raise DataSettingError("out", out, "already exists and is not empty", "choose another {name} or remove it")


def split_note(name: str, k: int, n: int, asked: float, unit: str) -> str:
    """What a stratified split really took, e.g. 'val 7 of 14 train images (50.0%; 0.1 asked: ...)':
    on a small set the per-class rounding and the one-image-per-class floor take more than asked."""
    got = k / n if n else 0.0
    text = f"{name} {k} of {n} {unit} ({got:.1%}"
    if round(got, 3) != round(asked, 3):
        text += f"; {asked:g} asked: counts are rounded per class, and each class with 2+ images gives at least one"
    return text + ")"
