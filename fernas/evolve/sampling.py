"""Where genomes come from before selection has anything to work with.

The initial distribution: the seed designs, then a `search_space_share` of samples from the
random-search spaces of seeds 001/004 (alternating), then uniform random vectors.  With a
cost cap every fresh draw is under it (seed designs above it are left out), so no trial slot
of generation 0 goes to a genome the driver would refuse.  Random search draws its later
generations from the same distribution (seed designs aside).
"""

from __future__ import annotations

import random
from typing import Callable

from fernas import genome as G
from fernas.evolve.config import GAConfig
from fernas.evolve.operators import vector_id


def initial_population(cfg: GAConfig, seed_docs: list[dict], make_ind: Callable) -> list:
    """Seed designs, then random-search-space samples (001/004), then uniform random; unique ids."""
    pop, seen = [], set()
    for doc in seed_docs:
        if cfg.refusal(doc) is None:
            ind = make_ind(G.to_vector(doc))
            if ind.gid not in seen and len(pop) < cfg.pop:
                seen.add(ind.gid)
                pop.append(ind)
    return pop + sample_fresh(cfg, cfg.pop - len(pop), seen, make_ind)


def sample_fresh(cfg: GAConfig, n: int, seen: set, make_ind: Callable) -> list:
    """`n` never-seen genomes from the initial distribution (adds their ids to `seen`)."""
    out: list = []

    def add(vec) -> None:
        ind = make_ind(vec)
        if ind.gid not in seen and len(out) < n and (not cfg.max_mmacs or cfg.refusal(vector_id(ind)[1]) is None):
            seen.add(ind.gid)
            out.append(ind)

    target = max(0, round(n * cfg.search_space_share))
    spaces = ("sarmah", "vulpe")
    for tries in range(50 * max(n, 1)):
        if len(out) >= min(target, n):
            break
        add(G.to_vector(G.sample_random_search_space(random, spaces[tries % 2])))
    # Under a small cap the search spaces of 001/004 (wide convs) may have nothing: uniform fills up.
    for _ in range(2000 * max(n, 1)):
        if len(out) >= n:
            break
        add(G.random_vector(random))
    return out
