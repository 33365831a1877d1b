"""The process's python, numpy and torch RNG states as plain JSON lists (for the GA checkpoint)."""

from __future__ import annotations

import random

import numpy as np
import torch


def get_rng_states() -> dict:
    py = random.getstate()
    npst = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
            "torch": torch.get_rng_state().tolist()}


def set_rng_states(st: dict) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))


def seeded_rng_states(seed: int) -> dict:
    """The RNG states that `seed` gives, without disturbing the process's own states."""
    saved = get_rng_states()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    states = get_rng_states()
    set_rng_states(saved)
    return states
