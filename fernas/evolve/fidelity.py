"""Multi-fidelity inside the GA: successive halving over a generation's new genomes, and the
re-ranking of the best genomes at the end of a run.

Both are generators that yield batches of `Candidate`s for the driver to train and decide
everything from the fitness cache only, so a resume replays the same promotions and runs only
the trials that are missing.  A trial's outcome is recorded by `Evolution.record`; its trials
are listed under the genome's cache entry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Generator

from fernas.evolve.config import Candidate
from fernas.evolve.operators import vector_id
from fernas.fitness import is_ok, promoted


def trial_at(cache: dict, gid: str, budget: int) -> dict | None:
    """The genome's trial (first training or promotion) at this budget, if it ran."""
    return next((t for t in cache.get(gid, {}).get("trials", [])
                 if t.get("budget") == budget and t.get("kind") in ("first", "promotion")), None)


def _run(ev, batch: list[Candidate], ran) -> Generator[list[Candidate], None, None]:
    """Yield `batch` to the driver (when not empty) and check every trial came back (`ran(c)`)."""
    if not batch:
        return
    ev.pending = batch
    yield batch
    missing = [c.gid for c in batch if not ran(c)]
    if missing:
        raise RuntimeError(f"evaluation returned no outcome for {missing}")
    ev.pending = []


def bracket(ev, cands: list[Candidate]) -> Generator[list[Candidate], None, None]:
    """Successive halving over new genomes: all train the first budget; the best 1/eta of each
    rung (`fitness.promoted`) continue from their checkpoint to the next.  One batch per rung."""
    rungs, members = ev.cfg.rungs, cands
    for level, budget in enumerate(rungs):
        if level:
            prev = rungs[level - 1]
            keep = set(promoted([(c.gid, trial_at(ev.cache, c.gid, prev) or {}) for c in members],
                                max(1, len(members) // ev.cfg.eta)))
            members = [replace(c, budget=budget, level=level, resume_from=prev, kind="promotion")
                       for c in members if c.gid in keep]
        else:
            members = [replace(c, budget=budget, level=0) for c in members]
        batch = [c for c in members if trial_at(ev.cache, c.gid, budget) is None]
        yield from _run(ev, batch, lambda c: trial_at(ev.cache, c.gid, c.budget) is not None)


def rerank(ev) -> Generator[list[Candidate], None, None]:
    """The best genomes trained again at the largest budget with other seeds (one batch)."""
    cfg = ev.cfg
    top = [ind for ind in ev.by_fitness() if is_ok(ev.cache.get(ind.gid, {}))][:cfg.rerank_top]

    def done() -> set:
        return {(t.get("seed"), e["gid"]) for e in ev.cache.values() for t in e.get("trials", [])
                if t.get("kind") == "rerank"}

    before = done()
    batch = [Candidate(ind.gid, list(ind), vector_id(ind)[1], ev.cache[ind.gid]["generation"],
                       budget=cfg.max_budget, level=len(cfg.rungs) - 1, kind="rerank", seed=s)
             for s in range(1, cfg.rerank_seeds + 1) for ind in top if (s, ind.gid) not in before]
    yield from _run(ev, batch, lambda c: (c.seed, c.gid) in done())
