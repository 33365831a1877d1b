"""The Keras Tuner random-search spaces of the seed papers (Sarmah et al., seed 001; Vulpe-Grigorasi
& Grigore, seed 004), as genomes: `fernas genome random --space` and the GA's first generation
draw from them.
"""

from __future__ import annotations

import random

from fernas.genome import DROPOUTS, GENOME_VERSION, validate

SPACES = ("sarmah", "vulpe")


def sample(rng: random.Random, space: str = "sarmah") -> dict:
    """A genome drawn from the Keras Tuner random-search space of seed 001 or seed 004.

    Both: first conv 32..256 step 32, further convs 64..512 step 64, 3x3 kernels, ReLU,
    Adam.  Sarmah et al. (001): 5 or 8 conv layers, dropout 0..0.5 step 0.05, lr 1e-4,
    batch 32 (the paper's final batch; it does not say which its random search used).  Vulpe-Grigorasi & Grigore (004): up to 4 convs after the first, dropout
    0.1..0.4 step 0.1, FC 256, lr 1e-3, batch 128.  Layer-to-stage grouping and pooling
    (a max-pool after each stage) are our choice; the papers show them only in figures.
    """
    first = rng.choice(range(32, 257, 32))
    later = lambda: rng.choice(range(64, 513, 64))  # noqa: E731
    if space == "sarmah":
        n_conv = rng.choice((5, 8))
        drop = lambda: rng.choice(DROPOUTS)  # noqa: E731
        repeats = [1, 1, 1, 1, 1] if n_conv == 5 else [1, 1, 2, 2, 2]
        fc = [{"width": rng.choice((256, 512)), "dropout": drop()}, {"width": rng.choice((256, 512)), "dropout": drop()}]
        train = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}
    elif space == "vulpe":
        n_conv = 1 + rng.randint(1, 4)
        drop = lambda: rng.choice((0.1, 0.2, 0.3, 0.4))  # noqa: E731
        repeats = [1] * n_conv
        fc = [{"width": 256, "dropout": drop()}]
        train = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 128}
    else:
        raise ValueError(f"unknown random-search space {space!r} (expected 'sarmah' or 'vulpe')")
    stages = []
    for i, r in enumerate(repeats):
        stages.append({"block": "conv", "repeats": r, "width": first if i == 0 else later(), "kernel": 3,
                       "dropout": drop(), "pool": "max"})
    doc = {"fernas_genome": GENOME_VERSION, "name": "", "stages": stages,
           "head": {"reduce": "flatten", "fc": fc}, "train": train}
    return validate(doc)
