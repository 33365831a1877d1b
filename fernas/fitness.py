"""Fitness: how a trial's epochs become a genome's score, and a score becomes a DEAP fitness.

The one place that decides what a trial is worth:

* `trial_accuracy(history)` -- the accuracy a trial scores from its per-epoch validation
  records: the best epoch's validation accuracy (a short trial's last epoch is often not its
  best, and the full protocol also keeps the best epoch's weights).
* `outcome_fields(history, costs)` -- what a trial reports about itself after each epoch.
* `fitness_of(outcome, objectives)` -- the DEAP fitness tuple of an outcome; a trial that did
  not end `ok` (or `stopped` early by ASHA, whose accuracy still counts) gets every
  objective's penalty.

A new rule for a trial's fitness (the mean of the last epochs, a seed average) changes this
module only; the trial, the Tune adapter and the GA call these functions.
"""

from __future__ import annotations

import math
from typing import Iterable

from fernas.objectives import OBJECTIVES

OK_STATUSES = ("ok", "stopped")  # "stopped": ended early by ASHA, its accuracy still counts


def trial_accuracy(history: list[dict]) -> float:
    """The accuracy a trial scores: the best validation accuracy of its epochs (0 if none)."""
    accs = [float(r["val_acc"]) for r in history if r.get("val_acc") is not None and math.isfinite(r["val_acc"])]
    return max(accs, default=0.0)


def outcome_fields(history: list[dict], costs: dict) -> dict:
    """A trial's outcome so far: the objectives' values and the progress it made.

    `history`: the trainer's epoch records; `costs`: the measured cost objectives by field.
    """
    last = history[-1] if history else {}
    return {"status": "ok", "error": "", "val_acc": trial_accuracy(history), **costs,
            "epoch": int(last.get("epoch", 0)), "last_val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"), "train_loss": last.get("train_loss"), "lr": last.get("lr"),
            "train_seconds": sum(float(r["seconds"]) for r in history)}


def is_ok(outcome: dict) -> bool:
    return outcome.get("status") in OK_STATUSES


def fitness_of(outcome: dict, objectives: Iterable[str]) -> tuple[float, ...]:
    """The fitness tuple of a trial outcome; a failed trial gets the penalty on every objective."""
    values = []
    for name in objectives:
        obj = OBJECTIVES[name]
        v = outcome.get(obj.field)
        if not is_ok(outcome) or v is None or not math.isfinite(float(v)):
            v = obj.penalty
        values.append(float(v))
    return tuple(values)
