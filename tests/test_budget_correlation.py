"""benchmarks/budget_correlation.py: Spearman's rho, and a tiny run of the real trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import budget_correlation as bc  # noqa: E402


def test_spearman_with_ties():
    assert bc.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert bc.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert bc.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert bc.spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side has no ranking
    assert bc.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)


def test_a_tiny_run_writes_the_correlations(tmp_path):
    out = tmp_path / "bc.json"
    assert bc.main(["--genomes", "3", "--budgets", "1,2", "--data", "demo:140,70,70", "--out", str(out),
                    "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["genomes"] == 3 and set(res["rank_correlation"]) == {"span", "restart"}
    for row in res["rows"]:  # the span run read at budget 2 is the restart run's budget 2: one training
        assert row["span"]["2"] == row["restart"]["2"] and set(row["span"]) == {"1", "2"}


def test_draws_can_be_limited_to_schedules_whose_curve_depends_on_their_length():
    docs = bc.draw_genomes(4, 0, 35.0, ("cosine", "onecycle", "step"))
    assert len(docs) == 4 and {d["train"]["scheduler"] for d in docs} <= {"cosine", "onecycle", "step"}
    assert docs == bc.draw_genomes(4, 0, 35.0, ("cosine", "onecycle", "step"))  # deterministic
    assert len(bc.draw_genomes(3, 0, 35.0)) == 3  # no filter: the GA's draw as it is
    with pytest.raises(SystemExit) as e:
        bc.main(["--schedulers", "cosine,warp"])
    assert e.value.code == 2
