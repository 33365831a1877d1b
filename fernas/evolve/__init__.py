"""The genetic algorithm: DEAP evolves genome vectors; evaluation is somebody else's job.

Follows DEAP's canonical shape (the `ga/onemax.py` and `ga/nsga2.py` examples and the
checkpoint tutorial): types declared once, a toolbox that reads like a recipe, a generation
loop of select -> clone/vary -> evaluate the invalid only -> replace, statistics in a
`Logbook`, and a checkpoint that is a plain dict.

Modules: `config` (GAConfig, Candidate), `operators` (DEAP types, toolbox, creep mutation,
crowded tournament, novel offspring), `sampling` (initial population, random search),
`evolution` (the loop, the fitness cache, resume), `fidelity` (successive halving in a
generation, re-ranking), `checkpoint` (its file and reader API),
`rng` (RNG states as JSON).  Nothing here imports Ray.
"""

from fernas.evolve.checkpoint import CHECKPOINT_VERSION, is_done, read_outcomes
from fernas.evolve.config import STRATEGIES, Candidate, GAConfig
from fernas.evolve.evolution import Evolution

__all__ = ["CHECKPOINT_VERSION", "STRATEGIES", "Candidate", "Evolution", "GAConfig", "is_done", "read_outcomes"]
