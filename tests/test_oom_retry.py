"""A trial out of memory beside other trials is retried once alone on a GPU before its failure
counts as the genome's: the decision, the resource request, the records, and a real Ray search
with injected out-of-memory errors (on CPU the retry's request is the same; what is checked is
that it runs, is recorded, and decides the genome's outcome)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fernas import genome as G
from fernas.evolve import Candidate, Evolution, GAConfig
from fernas.search.trial import shared_oom, trial_gpus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from chaos import trials as read_trials  # noqa: E402
from test_search import tiny_genome  # noqa: E402

OOM = {"status": "failed", "error": "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB", "val_acc": 0.0}


def test_only_an_out_of_memory_failure_of_a_shared_trial_is_retried_once():
    assert shared_oom(OOM, 0.25, alone=False)
    assert not shared_oom(OOM, 0.25, alone=True)  # the retry's own failure counts
    assert not shared_oom(OOM, 1.0, alone=False)  # a trial with a whole GPU was alone already
    assert not shared_oom({**OOM, "error": "diverged: loss became nan"}, 0.25, alone=False)
    assert not shared_oom({"status": "ok", "val_acc": 0.3}, 0.25, alone=False)


def test_the_retry_asks_for_a_whole_gpu_and_a_cpu_trial_stays_on_cpu():
    from fernas.search.tuner import trial_resources

    assert trial_gpus(0.25, alone=True) == 1.0 and trial_gpus(0.25, alone=False) == 0.25
    assert trial_gpus(2.0, alone=True) == 2.0 and trial_gpus(0.0, alone=True) == 0.0
    assert trial_resources(1.0, 0.25, True).required_resources == {"CPU": 1.0, "GPU": 1.0}
    assert trial_resources(1.0, 0.25, False).required_resources == {"CPU": 1.0, "GPU": 0.25}
    assert trial_resources(1.0, 0.0, True).required_resources == {"CPU": 1.0}


def test_the_genome_takes_the_retry_outcome_not_the_out_of_memory_one():
    ev = Evolution(GAConfig(pop=4, generations=1, seed=0))
    cand = Candidate("g1", [0], {}, 0, budget=2)
    ev.record(Candidate("g1", [0], {}, 0, budget=2, kind="oom"), OOM)
    from fernas.search.tune_adapter import ran_out_of_memory

    assert ran_out_of_memory(ev.cache, cand)  # from the cache: a resume retries alone too
    assert not ran_out_of_memory(ev.cache, Candidate("g1", [0], {}, 0, budget=4, kind="promotion"))
    ev.record(cand, {"status": "ok", "val_acc": 0.31})
    assert ev.cache["g1"]["status"] == "ok" and ev.cache["g1"]["val_acc"] == 0.31
    assert [t["kind"] for t in ev.cache["g1"]["trials"]] == ["oom", "first"]
    ev.record(Candidate("g2", [1], {}, 0, budget=2, kind="oom"), OOM)
    ev.record(Candidate("g2", [1], {}, 0, budget=2), {**OOM, "error": "out of memory: again"})
    assert ev.cache["g2"]["error"] == "out of memory: again" and ev.cache["g2"]["kind"] == "first"


def test_a_reranking_try_that_ran_out_of_memory_is_no_search_trial():
    """The search's budgets and counts leave out the re-ranking, its out-of-memory tries too
    (`tune_adapter` records them as kind "oom" with the kind they were of)."""
    from fernas.search.run import run_trials, total_compute

    ev = Evolution(GAConfig(pop=4, generations=1, seed=0))
    ev.record(Candidate("g1", [0], {}, 0, budget=2), {"status": "ok", "val_acc": 0.3, "compute": 10})
    ev.record(Candidate("g1", [0], {}, 0, budget=8, kind="oom"), {**OOM, "oom_of": "rerank", "compute": 5})
    ev.record(Candidate("g2", [1], {}, 0, budget=2, kind="oom"), {**OOM, "oom_of": "first", "compute": 3})
    assert [t["kind"] for t in run_trials(ev, search_only=True)] == ["first", "oom"]
    assert total_compute(ev, search_only=True) == 13 and total_compute(ev) == 18


def test_a_real_search_retries_out_of_memory_trials_alone_and_records_both(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    docs = [tiny_genome(16), tiny_genome(24), tiny_genome(32, 5)]
    for d in docs:
        G.save_genome(d, seeds / f"{d['name']}.json")
    once, always = G.genome_id(docs[0]), G.genome_id(docs[1])
    out = tmp_path / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", FERNAS_FAULT_INJECT=f"{once}=oom,{always}=oom-always")
    res = subprocess.run([sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--out", str(out),
                          "--seed-genomes", str(seeds / "*.json"), "--pop", "4", "--generations", "1",
                          "--epochs-per-trial", "1", "--rerank-top", "0", "--max-steps-per-epoch", "2",
                          "--max-mmacs", "120", "--seed", "1", "--no-dashboard"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = read_trials(out)
    by_gid = {}
    for r in rows:
        by_gid.setdefault(r["gid"], []).append((r["kind"], r["status"]))
    assert by_gid[once] == [("oom", "failed"), ("first", "ok")]  # out of memory beside others, fine alone
    assert by_gid[always] == [("oom", "failed"), ("first", "failed")]  # out of memory alone too: the genome's
    oom_rows = [r for r in rows if r["kind"] == "oom"]
    assert all("retried alone" in r["error"] and r["device"] == "cpu" for r in oom_rows)
    from fernas.evolve import read_outcomes

    trials = read_outcomes(out / "checkpoint.json")[once]["trials"]
    assert [t["gpus"] for t in trials] == [0.0, 0.0]  # on CPU the retry asks for no GPU
    assert "retried alone" in res.stderr  # one line per failed trial, as it ends
    others = [g for g in by_gid if g not in (once, always)]
    assert others and all(by_gid[g] == [("first", "ok")] for g in others)


class FakeRun:
    """What the searcher needs of `fernas.search.run.EvolveRun`, around a real Evolution."""

    def __init__(self, ev):
        from types import SimpleNamespace

        self.ev, self.trial_dirs = ev, {}
        noop = lambda *a, **k: None  # noqa: E731
        self.console = SimpleNamespace(trials_queued=noop, trial_started=noop, trial_finished=noop,
                                       output=SimpleNamespace(closed=None))

    def refuse(self, cand):
        return False

    def out_of_budget(self, live):
        return None

    def checkpoint_path(self, cand):
        return None

    def record(self, cand, outcome):
        self.ev.record(cand, outcome)


def test_the_searcher_holds_new_trials_until_the_retry_starts_and_a_resume_retries_alone(tmp_path):
    from fernas.search.tune_adapter import GenerationalSearcher

    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(pop=4, generations=2, seed=0), seed_docs=[tiny_genome(w) for w in (16, 24, 32, 48)],
                   checkpoint_path=ckpt)
    s = GenerationalSearcher(FakeRun(ev), gpus_per_trial=0.25)
    first = [s.suggest(f"t{i}") for i in range(2)]
    assert [c["alone"] for c in first] == [False, False]
    s.on_trial_complete("t0", {**OOM, "epoch": 0, "compute": 5})
    assert [t["kind"] for t in ev.cache[first[0]["gid"]]["trials"]] == ["oom"]
    retry = s.suggest("t2")
    assert retry["gid"] == first[0]["gid"] and retry["alone"] is True
    assert s.suggest("t3") is None  # the card must empty for the retry: nothing new starts
    s.started("t2")
    assert s.suggest("t3")["alone"] is False
    # killed before the retry ended: a resume hands the genome out again, alone
    resumed = GenerationalSearcher(FakeRun(Evolution.load(ckpt, seed_docs=[])), gpus_per_trial=0.25)
    configs = [s2 for s2 in (resumed.suggest(f"r{i}") for i in range(4)) if s2]
    assert [c["alone"] for c in configs if c["gid"] == first[0]["gid"]] == [True]
    assert all(not c["alone"] for c in configs if c["gid"] != first[0]["gid"])


def test_out_of_memory_outside_torchs_allocator_counts_as_out_of_memory():
    from fernas.search.trial import is_device_oom

    assert is_device_oom("CUDA error: out of memory")
    assert is_device_oom("cuBLAS error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)")
    assert not is_device_oom("CUDA error: an illegal memory access was encountered")
