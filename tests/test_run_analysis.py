"""fernas.run_analysis on hand-made trial records: slot utilisation over attempts, best-so-far
against compute, the first trainings at chance by property."""

from __future__ import annotations

import json

import pytest

from fernas.run_analysis import best_so_far, chance_by_property, utilisation


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


def first(optimizer, acc, budget=2, kind="first", status="ok", compute=10):
    doc = {"stages": [{"block": "conv", "repeats": 1, "width": 32, "kernel": 3, "dropout": 0.0, "pool": "max"}],
           "head": {"reduce": "avg", "fc": []},
           "train": {"optimizer": optimizer, "lr": 0.01, "weight_decay": 0.0, "scheduler": "constant",
                     "batch_size": 64}}
    return {"kind": kind, "status": status, "budget": str(budget), "val_acc": str(acc), "compute": str(compute),
            "genome": json.dumps(doc)}


def test_chance_by_property_counts_first_trainings_of_the_smallest_budget():
    rows = [first("adam", 0.14), first("adam", 0.15), first("adam", 0.16, compute=30),  # at or below 0.16
            first("sgd", 0.5), first("sgd", 0.6), first("sgd", 0.15),
            first("adam", 0.1, budget=4, kind="promotion"), first("adam", 0.1, kind="rerank"),  # not first
            first("sgd", 0.1, budget=4), first("adam", 0.1, status="failed"),  # another budget, failed
            first("adam", 0.1, status="stopped", compute=5), first("sgd", 0.3, status="stopped")]  # ASHA: apart
    c = chance_by_property(rows, 2, 0.16)
    assert (c["trainings"], c["at_chance"]) == (6, 4)
    assert (c["compute"], c["compute_at_chance"]) == (80.0, 60.0)
    assert (c["stopped"], c["stopped_at_chance"], c["compute_stopped"]) == (2, 1, 15.0)
    by = {e["property"]: e for e in c["properties"]}
    assert by["optimizer"]["means"] == {"adam": (1.0, 3), "sgd": (pytest.approx(1 / 3), 3)}
    assert c["properties"][0]["property"] == "optimizer"  # the only property that varies
    assert chance_by_property(rows[:3], 2, 0.16)["properties"] == []  # too few for the table


def test_a_run_with_a_trial_batch_has_no_batch_size_effect():
    from fernas.run_analysis import untrained_properties

    rows = [first("adam", 0.14), first("adam", 0.15), first("sgd", 0.5), first("sgd", 0.6)] * 2
    assert "batch size" in {e["property"] for e in chance_by_property(rows, 2, 0.16)["properties"]}
    fixed = untrained_properties({"trial_batch": 32, "trial_augment": "none"})
    assert fixed == ("batch size",) and untrained_properties({}) == () and untrained_properties({"trial_batch": 0}) == ()
    assert "batch size" not in {e["property"] for e in chance_by_property(rows, 2, 0.16, fixed)["properties"]}
