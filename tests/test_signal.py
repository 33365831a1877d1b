"""The chance level of a validation split, and the line a run prints when most of a
generation's first trainings end at it (their ranking is then ties: the budget is too small)."""

from __future__ import annotations

import io

import pytest

from fernas.commands.evolve_console import EvolveConsole
from fernas.evolve import Candidate, Evolution, GAConfig
from fernas.fitness import at_chance, chance_level
from fernas.search.run import EvolveRun


def test_chance_level_is_the_largest_class_share_plus_one_standard_error():
    assert chance_level([10] * 7) == pytest.approx(1 / 7 + (1 / 7 * 6 / 7 / 70) ** 0.5)
    assert chance_level([50, 30, 20]) == pytest.approx(0.5 + 0.05)  # p = .5, n = 100
    ok = [{"status": "ok", "val_acc": v} for v in (0.14, 0.15, 0.3)]
    assert at_chance(ok + [{"status": "failed", "val_acc": 0.0}], 0.2) == 2


def run_with(outcomes: list[float], budgets=(2, 4)) -> str:
    ev = Evolution(GAConfig(pop=4, generations=2, seed=0, min_budget=budgets[0], max_budget=budgets[-1]))
    for i, acc in enumerate(outcomes):
        ev.record(Candidate(f"g{i}", [i], {}, 0, budget=budgets[0]), {"status": "ok", "val_acc": acc})
    out = io.StringIO()
    run = EvolveRun.__new__(EvolveRun)  # only what the check reads
    run.console, run.chance = EvolveConsole(stream=out, quiet=True, progress_stream=io.StringIO()), 0.185
    run._check_signal(ev, 0)
    return out.getvalue()


def test_a_generation_mostly_at_chance_is_reported_once_with_what_to_change():
    line = run_with([0.143, 0.143, 0.16, 0.31])
    assert line.startswith("gen   1: 3 of 4 new genomes ended at chance after 2 epoch(s)") and "--min-budget" in line
    assert run_with([0.143, 0.25, 0.26, 0.31]) == ""  # most learnt something: nothing to say
    assert "--epochs-per-trial" in run_with([0.1, 0.1, 0.1], budgets=(4,))


def test_trials_asha_stopped_or_that_failed_are_not_counted():
    ev = Evolution(GAConfig(pop=4, generations=2, seed=0, min_budget=4, max_budget=4))
    for i in range(3):
        ev.record(Candidate(f"s{i}", [i], {}, 0, budget=4), {"status": "stopped", "val_acc": 0.14, "epoch": 1})
    ev.record(Candidate("f", [9], {}, 0, budget=4), {"status": "failed", "val_acc": 0.0})
    ev.record(Candidate("ok", [8], {}, 0, budget=4), {"status": "ok", "val_acc": 0.4})
    out = io.StringIO()
    run = EvolveRun.__new__(EvolveRun)
    run.console, run.chance = EvolveConsole(stream=out, quiet=True, progress_stream=io.StringIO()), 0.185
    run._check_signal(ev, 0)
    assert out.getvalue() == ""
