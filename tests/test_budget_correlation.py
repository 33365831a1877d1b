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
    p = res["predictors"]["1_vs_2"]  # one epoch: its last two are its last
    assert p["accuracy_last_two"] == p["accuracy"] and p["above_chance_then_loss_last_two"] == p["above_chance_then_loss"]
    out.write_text(json.dumps({**res, "predictors": {}}))
    assert bc.main(["--resummarize", str(out)]) == 0
    assert json.loads(out.read_text()) == res  # the rows hold all the predictors need


def test_the_mean_of_the_last_two_epochs_is_a_predictor_of_its_own():
    # epoch 2 ranks the genomes against epoch 3, the mean of epochs 1-2 with it
    first, second = [0.1, 0.3, 0.5, 0.7], [0.5, 0.4, 0.3, 0.2]
    rows = [{"span": {"1": a, "2": b, "3": (a + b) / 2}, "span_loss": {"1": 1.0 + i / 5, "2": 2.0 - i / 10, "3": 1.0}}
            for i, (a, b) in enumerate(zip(first, second))]
    p = bc.predictors(rows, [2, 3], chance=0.0)["2_vs_3"]
    assert p["accuracy"] == -1.0 and p["accuracy_last_two"] == 1.0
    assert p["above_chance_then_loss_last_two"] == 1.0
    p = bc.predictors(rows, [2, 3], chance=0.6)["2_vs_3"]  # all tied at chance: the loss decides alone
    assert p["loss"] == 1.0  # the last epoch's loss falls with i; the mean of the last two rises
    assert p["above_chance_then_loss_last_two"] == -1.0


def test_a_draw_short_of_genomes_is_refused_before_any_training(monkeypatch, capsys):
    monkeypatch.setattr(bc, "draw_genomes", lambda n, *a: [{}] * (n - 1))
    monkeypatch.setattr(bc, "ROOT", Path("/nonexistent"))  # nothing may be written
    with pytest.raises(SystemExit) as e:
        bc.main(["--genomes", "5", "--schedulers", "cosine_wr", "--data", "demo:140,70,70"])
    assert e.value.code == 2 and "only 4 of 5 genomes drawn" in capsys.readouterr().err


def test_draws_can_be_limited_to_schedules_whose_curve_depends_on_their_length():
    docs = bc.draw_genomes(4, 0, 35.0, ("cosine", "onecycle", "step"))
    assert len(docs) == 4 and {d["train"]["scheduler"] for d in docs} <= {"cosine", "onecycle", "step"}
    assert docs == bc.draw_genomes(4, 0, 35.0, ("cosine", "onecycle", "step"))  # deterministic
    assert len(bc.draw_genomes(3, 0, 35.0)) == 3  # no filter: the GA's draw as it is
    with pytest.raises(SystemExit) as e:
        bc.main(["--schedulers", "cosine,warp"])
    assert e.value.code == 2
