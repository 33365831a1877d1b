"""fernas.run_analysis on hand-made trial records: slot utilisation over attempts, best-so-far
against compute."""

from __future__ import annotations

import pytest

from fernas.run_analysis import best_so_far, utilisation


def trial(attempt, start, end, train, **kw):
    return {"attempt": attempt, "finished_at": end, "wall_seconds": end - start, "train_seconds": train, **kw}


def test_utilisation_counts_each_attempts_span_with_its_slots():
    trials = [trial(1, 0, 10, 9), trial(1, 0, 8, 7), trial(1, 8, 10, 1),  # 2 slots, 0..10 s: 20 slot-s
              trial(2, 1000, 1030, 27),  # resumed after 990 s down, 1 slot: 30 slot-s, no downtime counted
              {"status": "skipped", "wall_seconds": 0.0, "finished_at": 5, "attempt": 1}]  # refused: no slot time
    use = utilisation(trials, {"1": 2, "2": 1})
    assert use["slot_seconds"] == pytest.approx(50.0)
    assert use["busy"] == pytest.approx((10 + 8 + 2 + 30) / 50)
    assert use["training"] == pytest.approx((9 + 7 + 1 + 27) / 50)


def test_utilisation_is_none_without_timed_trials():
    assert utilisation([], {"1": 2}) is None
    assert utilisation([{"finished_at": 5.0, "wall_seconds": 3.0}], {"1": 2}) is None  # no attempt recorded


def test_best_so_far_counts_every_trials_compute():
    rows = [{"status": "ok", "kind": "first", "budget": "2", "val_acc": "0.5", "compute": "10"},
            {"status": "ok", "kind": "promotion", "budget": "4", "val_acc": "0.4", "compute": "20"},
            {"status": "failed", "kind": "first", "budget": "2", "val_acc": "0", "compute": "5"},
            {"status": "ok", "kind": "promotion", "budget": "4", "val_acc": "0.6", "compute": "20"},
            {"status": "ok", "kind": "rerank", "budget": "4", "val_acc": "0.9", "compute": "20"}]
    assert best_so_far(rows, 4) == [(30.0, 0.4), (35.0, 0.4), (55.0, 0.6), (75.0, 0.6)]  # re-ranking: no fitness
