"""A budget that ends a search, and a kill after any outcome: the resumed run trains exactly
what the uninterrupted one does, and decides alike.  The real searcher (`GenerationalSearcher`),
`EvolveRun.record`/`out_of_budget` and `run._search`, driven by a fake Tune loop that completes
trials in a seeded random order (no Ray, no training: each trial's outcome is a function of its
genome and budget), with successive halving over three slots, so that certain promotions run
beside the rung's last trials when the budget is spent."""

from __future__ import annotations

import glob
import hashlib
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.search import Searcher

from fernas import genome as G
from fernas.evolve import Evolution, GAConfig
from fernas.search import run as R
from fernas.search.tune_adapter import GenerationalSearcher

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(pop=6, generations=2, seed=0, min_budget=1, max_budget=2, rerank_top=0)
SLOTS = 3


class _Console:
    output = SimpleNamespace(closed=False)

    def __getattr__(self, name):
        return lambda *a, **k: None


class _Run(R.EvolveRun):
    """The real run, with a clock that advances one second per completed trial and no refusals."""

    def __init__(self, *args, clock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock, self.started_at = clock, clock[0]

    def search_seconds(self) -> float:
        return self.seconds_before + self.clock[0] - self.started_at

    def refuse(self, cand) -> bool:
        cand.cost_hint = float(int(hashlib.md5(cand.gid.encode()).hexdigest(), 16) % 97)
        return False


def _outcome(config: dict) -> dict:
    s, b = int(hashlib.md5(config["gid"].encode()).hexdigest(), 16), config["budget"]
    return {"status": "ok", "val_acc": (s % 101) / 125.0 + 0.05 * b, "epoch": b,
            "compute": (s % 1000) * (b - (config.get("resume_from") or 0)), "rank_score": 0.0}


def _search(tmp: Path, budgets: dict, order: int, kill_after: int | None = None) -> dict:
    """The search to its end; killed (the driver gone, its state as saved) once `kill_after`
    trials completed, then resumed.  Returns what it trained and decided."""
    seeds = [G.load_genome(p) for p in sorted(glob.glob(str(ROOT / "genomes" / "*.json")))]
    ev = Evolution(GAConfig(**CONFIG), seed_docs=seeds, checkpoint_path=tmp / "checkpoint.json")
    rng, clock, completed, spent_at = random.Random(order), [0.0], [0], []
    for attempt in (1, 2):
        if attempt == 2:
            ev = Evolution.load(tmp / "checkpoint.json", seed_docs=[])
        opts = SimpleNamespace(max_trials=budgets.get("max_trials"), time_budget=budgets.get("time_budget"),
                               max_compute=budgets.get("max_compute"), max_steps_per_epoch=0, trial_batch=0)
        rdir = SimpleNamespace(out=tmp, write_trials=lambda ev: None, write_all=lambda ev: None,
                               write_scalars=lambda *a: None)
        run = _Run(opts, ev, rdir, 100, _Console(), clock=clock)
        killed = []

        def fit():
            searcher, live = GenerationalSearcher(run), []
            while True:
                while len(live) < SLOTS:
                    tid = f"a{attempt}-t{completed[0]}-{len(live)}"
                    config = searcher.suggest(tid)
                    if config is None or config == Searcher.FINISHED:
                        break
                    searcher.started(tid)
                    live.append((tid, config))
                if not live:
                    return
                tid, config = live.pop(rng.randrange(len(live)))
                clock[0] += 1.0
                searcher.on_trial_complete(tid, _outcome(config))
                completed[0] += 1
                if not spent_at and (ev.search_over or ev.meta.get("spent_with")):
                    spent_at.append(completed[0])
                if attempt == 1 and completed[0] == kill_after:
                    killed.append(True)
                    return

        try:
            R._search(run, fit)
        except KeyboardInterrupt:  # the stop a kill leaves: the resume goes on
            pass
        if not killed:
            break
    return {"trials": sorted((e["gid"], t["budget"], t["kind"]) for e in ev.cache.values() for t in e["trials"]),
            "ended_by": ev.meta.get("ended_by"), "logbook": len(ev.logbook), "done": ev.done,
            "hall_of_fame": [i.gid for i in ev.hall_of_fame()], "spent_at": spent_at[:1] if kill_after is None else None}


@pytest.mark.parametrize("budget", [{"max_trials": n} for n in (4, 7, 9, 12)]
                         + [{"time_budget": t} for t in (5.5, 8.5)] + [{"max_compute": c} for c in (2500, 6000)])
def test_a_kill_after_any_outcome_of_a_budget_ended_search_changes_nothing(tmp_path, budget):
    """Kills after the budget was spent (before it, a kill changes which trials complete first,
    and so which ones a budget admits, as any other completion order would)."""
    for order in (1, 2):
        whole = _search(tmp_path / f"whole-{order}", budget, order)
        assert whole["done"] and whole["spent_at"], whole
        for kill_after in range(whole["spent_at"][0], len(whole["trials"])):
            resumed = _search(tmp_path / f"kill-{order}-{kill_after}", budget, order, kill_after)
            assert {**resumed, "spent_at": None} == {**whole, "spent_at": None}, (order, kill_after)


def test_a_trial_whose_worker_died_counts_the_training_it_reported(tmp_path):
    """A worker that dies after reporting epochs (Tune's `on_trial_error`): the trial is recorded
    failed, with the images, compute and seconds of its last report spent (they count against
    --max-compute and in trials.csv), not as free."""
    from fernas.search.tune_adapter import TrialEvents

    seeds = [G.load_genome(p) for p in sorted(glob.glob(str(ROOT / "genomes" / "*.json")))]
    ev = Evolution(GAConfig(**CONFIG), seed_docs=seeds, checkpoint_path=tmp_path / "checkpoint.json")
    opts = SimpleNamespace(max_trials=None, time_budget=None, max_compute=None, max_steps_per_epoch=0,
                           trial_batch=0, max_failures=1)
    rdir = SimpleNamespace(out=tmp_path, write_trials=lambda ev: None, write_all=lambda ev: None,
                           write_scalars=lambda *a: None)
    run = _Run(opts, ev, rdir, 100, _Console(), clock=[0.0])
    searcher = GenerationalSearcher(run)
    died, silent = (searcher.suggest(tid) for tid in ("t0", "t1"))
    report = {"images": 320, "compute": 320 * 1000, "train_seconds": 4.5, "epoch": 1, "val_acc": 0.4}
    for tid, last in (("t0", report), ("t1", None)):
        trial = SimpleNamespace(trial_id=tid, last_result=last, error_file=None, path="",
                                get_error=lambda: "ray.exceptions.ActorDiedError: The actor died unexpectedly")
        TrialEvents(searcher).on_trial_error(0, [], trial)
    trials = {t["trial_id"]: t for e in ev.cache.values() for t in e["trials"]}
    assert trials["t0"]["status"] == "failed" and "The actor died unexpectedly" in trials["t0"]["error"]
    assert (trials["t0"]["images"], trials["t0"]["compute"], trials["t0"]["train_seconds"]) == (320, 320000, 4.5)
    assert trials["t0"]["val_acc"] == 0.0  # its accuracy is not the genome's: the worker died
    assert (trials["t1"]["compute"], trials["t1"]["images"]) == (0, 0)  # died before any report
    assert {died["gid"], silent["gid"]} <= set(ev.cache)


def test_a_resume_names_trials_another_trainer_measured():
    """After fernas changed how a trial scores (TRIAL_VERSION), a resumed run says how many of
    its trials the other trainer measured: the new trials' scores may not compare with theirs."""
    from fernas.search.start_notes import other_trainers
    from fernas.search.trial import trainer_version

    ev = SimpleNamespace(cache={"a": {"trials": [{"trainer": "trial 3, torch 2.14.1"}, {"trainer": trainer_version()}]},
                                "b": {"trials": [{"trainer": "trial 3, torch 2.14.1"}, {}]}})
    assert other_trainers(ev) == (["trial 3, torch 2.14.1"], 2)
    assert other_trainers(SimpleNamespace(cache={"a": {"trials": [{"trainer": trainer_version()}]}})) is None


def test_a_cpu_search_names_the_seed_designs_that_are_slow_there():
    """The README's first search (the default cap of 3000M) on a laptop: generation 0 trains the
    VGG (351M) and the 8-conv Sarmah design (1,771M) seeds; a CPU-only run says so at its start."""
    from fernas.search.start_notes import slow_on_cpus

    seeds = [G.load_genome(p) for p in sorted(glob.glob(str(ROOT / "genomes" / "*.json")))]

    def slow(**caps):
        return [n for n, _ in slow_on_cpus(seeds, GAConfig(pop=4, generations=1, **caps))]

    assert slow(max_mmacs=3000) == ["sarmah_8conv", "vgg_khaireddin", "vulpe_random_search"]
    assert slow(max_mmacs=60) == []  # make demo's cap leaves them out (and the refusal says so)
    assert slow(max_mmacs=400) == ["vgg_khaireddin"]
