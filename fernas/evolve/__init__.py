"""The genetic algorithm: DEAP evolves genome vectors; evaluation is somebody else's job.

Follows DEAP's canonical shape (the `ga/onemax.py` and `ga/nsga2.py` examples and the
checkpoint tutorial): types declared once, a toolbox that reads like a recipe, a generation
loop of select -> clone/vary -> evaluate the invalid only -> replace, statistics in a
`Logbook`, and a checkpoint that is a plain dict.

Modules: `config` (GAConfig, Candidate), `operators` (DEAP types, toolbox, creep mutation,
crowded tournament, novel offspring), `sampling` (initial population, random search),
`evolution` (the loop, the fitness cache, resume), `standing` (the fittest so far, the hall of
fame, the fitness order), `budget_end` (a budget ending the search mid-generation, a resume
reopening it), `fidelity` (successive halving in a generation, re-ranking), `checkpoint` (its
file and reader API), `rng` (RNG states as JSON).  Nothing here imports Ray.
"""

import importlib

# name -> its module: imported when first asked for, so that GAConfig (a command line's
# defaults) comes without the loop's DEAP, numpy and torch
_EXPORTS = {"CHECKPOINT_VERSION": "checkpoint", "is_done": "checkpoint", "read_outcomes": "checkpoint",
            "STRATEGIES": "config", "Candidate": "config", "GAConfig": "config", "Evolution": "evolution"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fernas.evolve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fernas.evolve.{_EXPORTS[name]}"), name)
