"""Where genomes come from before selection has anything to work with.

Everything drawn here is inside the run's search space (`GAConfig.space`, fernas.space):
seed designs outside it are left out, samples are projected into it, uniform draws are
uniform among its values (the learning rate among those in its optimizer's range:
`Space.random_vector`).

The initial distribution: the seed designs, then a `search_space_share` of samples from the
random-search spaces of seeds 001/004 (alternating), then uniform random vectors.  With a
cost cap every fresh draw is under it (seed designs above it are left out), so no trial slot
of generation 0 goes to a genome the driver would refuse.  Random search draws its later
generations from the same distribution (seed designs aside); the GA's immigrants are uniform
draws only (`sample_fresh(..., share=0.0)`).
"""

from __future__ import annotations

import random
from typing import Callable

from fernas import genome as G, published_spaces
from fernas.evolve.config import GAConfig
from fernas.evolve.operators import vector_id
from fernas.space import Space


def admitted_seeds(cfg: GAConfig, seed_docs: list[dict]) -> tuple[list[list[int]], list[tuple[dict, str]]]:
    """The seed designs' vectors that may start a run (dormant genes moved into the space),
    and (design, reason) for each one left out: above the cost cap or outside the space."""
    space = Space.from_config(cfg.space)
    kept, left = [], []
    for doc in seed_docs:
        vec = G.to_vector(doc)
        reason = cfg.refusal(doc) or (None if space.admits(vec) else "outside the search space (--space)")
        if reason:
            left.append((doc, reason))
        else:
            kept.append(space.project(vec, random))  # only dormant genes move: the same network
    return kept, left


def heading_seeds(cfg: GAConfig, seed_docs: list[dict]) -> list[list[int]]:
    """The seed designs' vectors that head the initial population: admitted, one per network
    (genome id), at most cfg.pop."""
    kept, seen = [], set()
    for vec in admitted_seeds(cfg, seed_docs)[0]:
        gid = vector_id(vec)[0]
        if gid not in seen and len(kept) < cfg.pop:
            seen.add(gid)
            kept.append(vec)
    return kept


def initial_population(cfg: GAConfig, seed_docs: list[dict], make_ind: Callable) -> list:
    """Seed designs, then random-search-space samples (001/004), then uniform random; unique ids."""
    pop = [make_ind(vec) for vec in heading_seeds(cfg, seed_docs)]
    for ind in pop:
        ind.origin = "seed"
    return pop + sample_fresh(cfg, cfg.pop - len(pop), {ind.gid for ind in pop}, make_ind)


def sample_fresh(cfg: GAConfig, n: int, seen: set, make_ind: Callable, share: float | None = None) -> list:
    """`n` never-seen genomes from the initial distribution (adds their ids to `seen`), each
    with its `origin`: space-001, space-004 or uniform.  `share`: of samples of the 001/004
    spaces (default `cfg.search_space_share`; 0: uniform draws only)."""
    out: list = []

    def add(vec, origin: str) -> None:
        ind = make_ind(vec)
        if ind.gid not in seen and len(out) < n and cfg.refusal(vector_id(ind)[1]) is None:
            seen.add(ind.gid)
            ind.origin = origin
            out.append(ind)

    space = Space.from_config(cfg.space)
    target = max(0, round(n * (cfg.search_space_share if share is None else share)))
    spaces = (("sarmah", "space-001"), ("vulpe", "space-004"))
    for tries in range(50 * max(n, 1)):
        if len(out) >= min(target, n):
            break
        name, origin = spaces[tries % 2]
        add(space.project(G.to_vector(published_spaces.sample(random, name)), random), origin)
    # Under a small cap the search spaces of 001/004 (wide convs) may have nothing: uniform fills up.
    for _ in range(2000 * max(n, 1)):
        if len(out) >= n:
            break
        add(space.random_vector(random), "uniform")
    return out


def cheapest_in_space(cfg: GAConfig, draws: int = 300) -> tuple[bool, str]:
    """(whether some genome of the space passes the cost caps, the cheapest found in words).
    A greedy descent gene by gene on the caps' cost from the space's first values, then
    `draws` uniform draws; a space refused here may still hold a passing genome nobody found."""
    from fernas.model import plan, training_cost

    space = Space.from_config(cfg.space)

    def load(vec) -> tuple[float, str]:  # the largest fraction of a cap the genome uses
        p = plan(G.from_vector(vec))
        parts = [(p.macs / (cfg.max_mmacs * 1e6), f"{p.macs / 1e6:.3g}M multiply-adds")] if cfg.max_mmacs else []
        if cfg.max_cost:
            cost = training_cost(p)
            parts.append((cost / (cfg.max_cost * 1e6), f"{cost / 1e6:.3g}M multiply-add equivalents"))
        return max(parts) if parts else (0.0, "")

    vec = [a[0] for a in space.allowed]
    for i, allowed in enumerate(space.allowed):
        vec[i] = min(allowed, key=lambda v: load(vec[:i] + [v] + vec[i + 1:])[0])
    rng = random.Random(0)
    best = min([load(vec)] + [load(space.random_vector(rng)) for _ in range(draws)])
    return best[0] <= 1.0, best[1]
