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


def run_batch(ev, batch: list[Candidate], ran) -> Generator[list[Candidate], None, None]:
    """Yield `batch` to the driver (when not empty) and check every trial came back (`ran(c)`)."""
    if not batch:
        return
    ev.pending = batch
    yield batch
    missing = [c.gid for c in batch if not ran(c)]
    if missing:
        raise RuntimeError(f"evaluation returned no outcome for {missing}")
    ev.pending = []


def n_promoted(members: list, eta: int) -> int:
    """How many of a rung's members go on to the next budget."""
    return max(1, len(members) // eta)


def promote(c: Candidate, rungs: tuple) -> Candidate:
    """The candidate of the next rung that continues `c` from its checkpoint."""
    return replace(c, budget=rungs[c.level + 1], level=c.level + 1, resume_from=rungs[c.level], kind="promotion")


def bracket(ev, cands: list[Candidate]) -> Generator[list[Candidate], None, None]:
    """Successive halving over new genomes: all train the first budget; the best 1/eta of each
    rung (`fitness.promoted`) continue from their checkpoint to the next.  One batch per rung
    (`certain_promotions` may start some of the next rung's trials while a rung ends)."""
    rungs, members = ev.cfg.rungs, [replace(c, budget=ev.cfg.rungs[0], level=0) for c in cands]
    for level, budget in enumerate(rungs):
        if level:
            prev = rungs[level - 1]
            keep = set(promoted([(c.gid, trial_at(ev.cache, c.gid, prev) or {}) for c in members],
                                n_promoted(members, ev.cfg.eta), ev.cfg.chance_level))
            members = [promote(c, rungs) for c in members if c.gid in keep]
        ev.rung = members
        batch = [c for c in members if trial_at(ev.cache, c.gid, budget) is None]
        yield from run_batch(ev, batch, lambda c: trial_at(ev.cache, c.gid, c.budget) is not None)
    ev.rung = []


def certain_promotions(ev) -> list[Candidate]:
    """The promotions out of the rung in flight that no trial still running can change: a
    finished member ranked i-th among the finished ends at rank i + (members still out) at
    worst, so it is promoted whatever they score when that is below the number promoted.
    Starting them while the rung's last trials run keeps the slots busy; `bracket` later runs
    only the promotions still missing, so the decisions are those of waiting for the rung."""
    members = ev.rung
    if not members or members[0].level + 1 >= len(ev.cfg.rungs):
        return []
    results = [(c.gid, trial_at(ev.cache, c.gid, c.budget)) for c in members]
    waiting = sum(r is None for _, r in results)
    done = [(gid, r) for gid, r in results if r is not None]
    sure = set(promoted(done, max(0, n_promoted(members, ev.cfg.eta) - waiting), ev.cfg.chance_level))
    return [promote(c, ev.cfg.rungs) for c in members
            if c.gid in sure and trial_at(ev.cache, c.gid, ev.cfg.rungs[c.level + 1]) is None]


def rerank(ev) -> Generator[list[Candidate], None, None]:
    """The best genomes trained again (`GAConfig.rerank_epochs`) with other seeds (one batch)."""
    cfg = ev.cfg
    top = [ind for ind in ev.by_fitness() if is_ok(ev.cache.get(ind.gid, {}))][:cfg.rerank_top]

    def done() -> set:
        return {(t.get("seed"), e["gid"]) for e in ev.cache.values() for t in e.get("trials", [])
                if t.get("kind") == "rerank"}

    before = done()
    batch = [Candidate(ind.gid, list(ind), vector_id(ind)[1], ev.cache[ind.gid]["generation"],
                       budget=cfg.rerank_epochs, level=len(cfg.rungs) - 1, kind="rerank", seed=s)
             for s in range(1, cfg.rerank_seeds + 1) for ind in top if (s, ind.gid) not in before]
    yield from run_batch(ev, batch, lambda c: (c.seed, c.gid) in done())
