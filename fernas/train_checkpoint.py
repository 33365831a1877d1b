"""The trainer's checkpoint file: its version, its reader, and the RNG states it carries.

A checkpoint (`fernas.train`, written every epoch when a run has a `checkpoint_path`) holds
the model, optimizer, scheduler and scaler states, the history, the best weights and the RNG
states, all as tensors and plain values, so it loads with `torch.load(weights_only=True)`:
a file that carries anything else (pickled code) is refused.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from fernas.errors import RunDirError

CHECKPOINT_VERSION = 4  # a checkpoint of another version is refused, not resumed


def rng_states(gen: torch.Generator) -> dict:
    """The RNG states as tensors and plain values only, so checkpoints load with weights_only.
    The generator's device and the visible GPUs are kept with them: a CUDA generator's state
    does not fit a CPU generator (nor the reverse)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                     int(has_gauss), float(gauss)),
              "torch": torch.get_rng_state(), "generator": gen.get_state(),
              "generator_device": gen.device.type, "cuda_devices": 0}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
        states["cuda_devices"] = len(states["cuda"])
    return states


def set_rng_states(states: dict, gen: torch.Generator, reseed: int) -> str | None:
    """Restore the states into the process and `gen`.  When the checkpoint was written on
    another kind of device (or with other GPUs visible), the device generators are seeded
    from `reseed` instead -- deterministic, but not the draws an uninterrupted run would have
    made -- and the returned line says so (None when everything was restored)."""
    random.setstate(states["python"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    saved_on, saved_gpus = states["generator_device"], int(states["cuda_devices"])
    if saved_on == gen.device.type and (saved_gpus == visible or gen.device.type == "cpu"):
        gen.set_state(states["generator"])
        if "cuda" in states and visible == saved_gpus:
            torch.cuda.set_rng_state_all(states["cuda"])
        return None
    gen.manual_seed(reseed)
    if visible:
        torch.cuda.manual_seed_all(reseed)
    return (f"the checkpoint was written on {saved_on} with {saved_gpus} GPU(s) visible, this run is on "
            f"{gen.device.type} with {visible}: its random draws continue from a seed derived from the run's seed "
            "and epoch (deterministic, not those of an uninterrupted run)")


def load_checkpoint(path) -> dict:
    """Read a trainer checkpoint; a missing, corrupt or older file is a RunDirError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: no checkpoint to resume from")
    try:
        # Tensors and plain values only: a file holding anything else (pickled code) is refused.
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise RunDirError(f"{path}: refused: it holds objects other than tensors and plain values (an older "
                          "fernas wrote it, or it carries code); start the run again") from None
    except Exception as exc:  # truncated zip, random bytes
        raise RunDirError(f"{path}: checkpoint is corrupt or unreadable ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(ck, dict) or "fernas_checkpoint" not in ck:
        raise RunDirError(f"{path}: not a fernas training checkpoint")
    if ck["fernas_checkpoint"] != CHECKPOINT_VERSION:
        raise RunDirError(f"{path}: training checkpoint version {ck['fernas_checkpoint']!r}, this fernas "
                          f"resumes version {CHECKPOINT_VERSION}; start the run again")
    return ck
