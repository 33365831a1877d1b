"""In-memory dataset types shared by every stage.

A dataset is three splits of 48x48 grayscale images kept as uint8 tensors (FER2013 is
35,887 x 48 x 48 = 83 MB, so the whole of it fits on any training device).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# FER2013 class order; every dataset with these classes keeps it (demo faces included).
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
IMAGE_SIZE = 48  # side of a stored face (FER2013's 48x48)
CROP_SIZE = 40  # side of a network input: the ten-crop protocol of the VGG paper crops 40x40


@dataclass
class Split:
    x: torch.Tensor  # (N, 48, 48) uint8
    y: torch.Tensor  # (N,) int64 class indices
    soft: torch.Tensor | None = None  # (N, C) float32 vote distribution (FER+), rows sum to 1

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        soft = None if self.soft is None else self.soft.to(device)
        return Split(self.x.to(device), self.y.to(device), soft)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.y.cpu(), minlength=num_classes).tolist()


@dataclass
class Dataset:
    classes: list[str]
    train: Split
    val: Split
    test: Split
    source: str = "demo"  # what --data named, for config.json and messages
    skipped: int = 0  # rows/files skipped by --skip-bad
    info: dict = field(default_factory=dict)  # free-form provenance (sizes, seed, file hash)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.classes, self.train.to(device), self.val.to(device), self.test.to(device),
                       self.source, self.skipped, dict(self.info))
