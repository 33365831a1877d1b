"""A search that a budget (`fernas evolve --max-trials/--time-budget/--max-compute`) ended in
mid-generation: its trials in flight finish, the unfinished generation's trained genomes rank
beside the hall of fame (`standing.Standing._standing`), the best are re-ranked and the run
ends.  A resume with a larger budget reopens the search: the generation replays from its
boundary like any resume.

A mixin of `fernas.evolve.evolution.Evolution`; its state lives in the checkpoint's `meta`
("ended_by", and "search_end": the generation, the budget's words, the trials in flight).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Generator

from fernas.evolve.config import Candidate
from fernas.evolve.fidelity import run_batch, trial_at


def _key(trial: dict) -> tuple:
    return trial["gid"], trial["budget"], trial["seed"], trial["kind"]


class BudgetEnd:
    """Ending the search on a budget, and going on (mixed into `Evolution`)."""

    @property
    def search_over(self) -> bool:
        """The search has ended (its generations, patience or a budget); the re-ranking may not."""
        return "ended_by" in self.meta

    @property
    def ended_by_budget(self) -> bool:
        """A budget ended the search (`end_search`)."""
        return self.meta.get("search_end") is not None

    def end_search(self, budget: tuple[str, str, float], in_flight: list[Candidate]) -> None:
        """A budget (setting, what happened, its limit) ended the search in mid-generation: the
        driver starts no further trial of it.  `in_flight`, its trials running (or waiting to
        retry), finish; then the genomes the unfinished generation trained rank beside the hall
        of fame, the best are re-ranked and the run ends.  Stored at once, so a run killed
        meanwhile resumes to the same re-ranking."""
        if self.search_over:
            return
        self.meta.pop("spent_with", None)
        self.meta["ended_by"] = budget[0]
        self.meta["search_end"] = {"generation": self.gen, "why": budget[1], "limit": budget[2],
                                   "in_flight": [asdict(replace(c, cost_hint=0.0)) for c in in_flight]}
        if self._gen_obj is not None:
            self._gen_obj.close()  # the generation's remaining batches are never run
        self._gen_obj, self.pending, self.rung = None, [], []
        self.save()

    def note_spent(self, budget: tuple[str, str, float], running: list[Candidate]) -> None:
        """A budget (setting, what happened, its limit) was spent while `running`, the last
        trials of the rung in flight, ran and no other trial waited to start: they finish and
        the search goes on to its next trial to start (which the budget refuses: the search
        ends there, after the generation closed if they were its last).  Stored with the
        outcome that spent it, so that a resume takes the budget as spent (`spent_budget`) and
        lets the trials a kill lost run again, as they would have (`ran_when_spent`); those
        noted earlier stay until recorded."""
        earlier = [t for t in self._spent_trials() if trial_at(self.cache, t["gid"], t["budget"]) is None]
        now = [asdict(replace(c, cost_hint=0.0)) for c in running]
        keys = {_key(t) for t in now}
        self.meta["spent_with"] = {"generation": self.gen, "budget": list(budget),
                                   "trials": now + [t for t in earlier if _key(t) not in keys]}

    def _spent_trials(self) -> list[dict]:
        spent = self.meta.get("spent_with")
        return spent["trials"] if spent and spent.get("generation") == self.gen else []

    def ran_when_spent(self, cand: Candidate) -> bool:
        """Whether `cand` was running in this generation when a budget was spent (`note_spent`)."""
        return any(_key(t) == (cand.gid, cand.budget, cand.seed, cand.kind) for t in self._spent_trials())

    def spent_budget(self, limits: dict) -> tuple[str, str, float] | None:
        """The budget `note_spent` stored in this generation, unless this attempt raised it
        (`limits`: setting -> the value it runs with); a raised or stale one is dropped."""
        spent = self.meta.get("spent_with")
        if not spent:
            return None
        setting, words, limit = spent.get("budget") or (None, "", 0)
        now = limits.get(setting)
        if spent.get("generation") != self.gen or not now or now > limit:
            del self.meta["spent_with"]
            return None
        return setting, words, limit

    def budget_raised(self, limits: dict) -> bool:
        """The budget that ended the search is above its limit then (`limits`: setting -> the
        value this attempt runs with; None or 0: no such budget)."""
        if not self.ended_by_budget:
            return False
        now, then = limits.get(self.meta["ended_by"]), self.meta["search_end"]["limit"]
        return not now or now > then

    def reopen_search(self) -> None:
        """Let a search a budget ended go on (its budget raised): the unfinished generation
        replays from its boundary, its trained genomes from the cache, and re-ranking runs again
        at the new end for the top genomes not re-ranked yet."""
        del self.meta["search_end"]
        self.meta.pop("ended_by", None)
        self.done, self._gen_obj = False, None
        self.rng = self.boundary_rng  # the replay draws as the generation did
        self.save()

    def _after_search_end(self) -> Generator[list[Candidate], None, None]:
        """The trials in flight when the search ended (those a kill lost run again); the unfinished
        generation's trained genomes rank from then on (`_standing`)."""
        def recorded(c: Candidate) -> bool:
            return trial_at(self.cache, c.gid, c.budget) is not None

        fields = Candidate.__dataclass_fields__
        stored = [Candidate(**{k: v for k, v in d.items() if k in fields}) for d in self.meta["search_end"]["in_flight"]]
        left = [c for c in stored if not recorded(c)]
        yield from run_batch(self, left, recorded)
