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
