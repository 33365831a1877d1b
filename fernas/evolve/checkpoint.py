"""The GA checkpoint (`OUT/checkpoint.json`) and the reader API for what it holds.

A plain dict in DEAP's checkpoint habit, written atomically: population, hall of fame,
logbook, generation, the GA's RNG states at the last generation boundary, and the fitness
cache (genome id -> trial outcome).  The cache is rewritten after every completed trial.

Code outside the GA reads a run through `read_outcomes(path)` and `is_done(path)`, not through
the JSON layout, which may change with `CHECKPOINT_VERSION`; the one exception is
`fernas.runs` (`fernas runs`), which reads `cache`, `done`, `generation` and `meta` itself.  A checkpoint of
another version is refused with one line naming the versions.
"""

from __future__ import annotations

from pathlib import Path

from fernas.errors import RunDirError
from fernas.io import read_versioned_json

CHECKPOINT_VERSION = 6  # 6: GAConfig.immigrants; each genome's origin
# Versions whose fitness cache (the outcomes a warm start or an analysis reads) has today's
# layout; a resume needs CHECKPOINT_VERSION itself (its decisions depend on the ranking rule).
OUTCOMES_READABLE = (3, 4, 5, 6)
VERSION_KEY = "fernas_evolve_checkpoint"


def pack(ind) -> dict:
    return {"vector": list(ind), "gid": ind.gid, "origin": ind.origin,
            "fitness": list(ind.fitness.values) if ind.fitness.valid else None}


def read_checkpoint(path: str | Path, readable: tuple[int, ...] = (CHECKPOINT_VERSION,)) -> dict:
    """The checkpoint's dict; RunDirError (one line) when missing, corrupt or of a version not in
    `readable`."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: no GA checkpoint here (nothing to resume)")
    return read_versioned_json(path, VERSION_KEY, readable, "GA checkpoint")


def read_outcomes(path: str | Path) -> dict[str, dict]:
    """Genome id -> outcome of every genome a run has trained or refused, in completion order.

    An outcome holds `status` (ok | stopped | failed | skipped), the objectives' fields
    (`val_acc`, `params`, `macs`, `latency_ms`), `generation`, `vector`, `train_seconds`,
    `wall_seconds`, `finished_at`, `error` and where the trial logged.
    """
    return dict(read_checkpoint(path, OUTCOMES_READABLE)["cache"])


def is_done(path: str | Path) -> bool:
    """Whether the run that wrote this checkpoint finished its last generation."""
    return bool(read_checkpoint(path)["done"])
