"""Chaos at a small size: a real search (real Ray Tune trials) whose driver is killed with
SIGKILL five times at random moments and resumed each time ends with the same trials, none
trained twice, the same best genome and hall of fame as the same search left alone
(`benchmarks/chaos.py` is the larger version `make bench` runs)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import chaos  # noqa: E402


def test_five_random_kills_change_nothing(tmp_path):
    args = ["--data", "demo:140,70,70", "--pop", "4", "--generations", "3", "--min-budget", "1", "--max-budget", "2",
            "--eta", "2", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60", "--seed", "5",
            "--no-dashboard"]
    calm = chaos.run_with_kills(args, tmp_path / "calm", 0, random.Random(0))
    killed = chaos.run_with_kills(args, tmp_path / "killed", 5, random.Random(1), max_delay=1.5)
    assert calm["attempts"] == 1 and killed["kills"] == 5 and killed["attempts"] == 6
    got = chaos.compare(tmp_path / "killed", tmp_path / "calm")
    assert got["trained_twice"] == 0 and got["same_trials"], got
    assert got["same_accuracies"] and got["same_best"] and got["same_hall_of_fame"], got


def test_kills_around_a_budget_that_ends_the_search_lose_nothing(tmp_path):
    """`--max-trials` ends the search, then the best genome is re-ranked; SIGKILLs on the way
    (which trials run when the budget is spent is the timing's, so there is no calm twin to
    compare with): exactly the budget's search trials, none trained twice, one re-ranking of
    the genome best.json names, and the run done."""
    import json

    n = 7
    args = ["--data", "demo:140,70,70", "--pop", "4", "--generations", "4", "--min-budget", "1", "--max-budget", "2",
            "--eta", "2", "--max-steps-per-epoch", "1", "--rerank-top", "1", "--rerank-seeds", "1",
            "--rerank-recipe", "trial", "--max-trials", str(n), "--max-mmacs", "60", "--seed", "5", "--no-dashboard"]
    out = tmp_path / "killed"
    got = chaos.run_with_kills(args, out, 3, random.Random(2), max_delay=1.5)
    # a short run may end before its third kill (an attempt is killed only after a new trial of it)
    assert 1 <= got["kills"] <= 3 and got["attempts"] == got["kills"] + 1, got
    rows = chaos.trials(out)
    keys = [(r["gid"], r["budget"], r["kind"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)), "a completed trial was trained again"
    assert sum(r["kind"] in ("first", "promotion") for r in rows) == n
    reranked = [r["gid"] for r in rows if r["kind"] == "rerank"]
    assert reranked == [json.loads((out / "best.json").read_text())["evolve"]["gid"]]
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["done"] and state["meta"]["ended_by"] == "max_trials"
