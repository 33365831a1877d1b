"""The full-training protocol's settings (`ProtocolConfig`, the VGG paper's by default) and
the version of the run directories it writes.  Kept out of `fernas.fulltrain`, which runs the
protocol and imports torch, so that a command line parses without torch."""

from __future__ import annotations

from dataclasses import dataclass

RUN_VERSION = 3  # config.json's "fernas_train_run"; a run of another version is not resumed
AUGMENT_WARMUP = 8  # epochs; `ProtocolConfig.augment_warmup`


def centre_crop_only(augment: str | None, train_crops: int | None) -> bool:
    """Trained on the exact centre crop alone (no augmentation, one crop): the ten-crop test then
    shows it views it never saw, and single crop is the fair figure."""
    return augment == "none" and train_crops == 1


@dataclass
class ProtocolConfig:
    """The protocol's settings; the defaults are the VGG paper's."""

    epochs: int = 300  # "trained for 300 epochs"
    fine_tune_epochs: int = 50  # "a final 50 epochs" at lr 1e-4 with cosine annealing; 0: none
    # 10: all ten crops of every augmented image per step (the paper's code); 1: one random crop.
    train_crops: int = 10
    val_crops: int | None = None  # None: as train_crops
    # Fine-tune on train+val (the paper's best, 73.28 % on PublicTest: `--fer-test public`); the last fine-tuned weights are tested.
    merge_val: bool = False
    augment: str = "vgg"  # "vgg" (seeds 000/002), "mild" (seeds 001/004), "none"
    # Epochs over which the augmentation rises from none to the preset's (`TrainConfig.augment_warmup`);
    # not the paper's (0), which leaves some strongly regularised genomes at chance for most of a
    # 48-epoch training (docs/search_experiments.md, "An augmentation warm-up").
    augment_warmup: int = AUGMENT_WARMUP
    batch_size: int | None = None  # images per step; None: the genome's
    seed: int = 0  # seeds python, numpy, torch and the trainer's generator
    device: str | torch.device = "auto"  # noqa: F821 (a torch.device once resolved)  # the GPU when there is one
    precision: str = "auto"  # "auto": bf16 where the hardware has it (fernas.device), "bf16", "fp32"

    def __post_init__(self):
        if self.epochs < 0 or self.fine_tune_epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs} and {self.fine_tune_epochs}")
        if self.augment_warmup < 0:
            raise ValueError(f"augment_warmup must be >= 0 epochs, got {self.augment_warmup}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
