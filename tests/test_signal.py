"""The chance level of a validation split: the line a run prints when most of a generation's
first trainings end at it (the budget is too small), and the order of genomes at or below it
(their accuracies tie, the validation loss decides) in promotions, selection and the best."""

from __future__ import annotations

import io
import json
import math

import pytest

from fernas.commands.evolve_console import EvolveConsole
from fernas.evolve import CHECKPOINT_VERSION, Candidate, Evolution, GAConfig
from fernas.fitness import at_chance, chance_level, fitness_of, promoted, ranking_accuracy
from fernas.search import EvolveOptions
from fernas.search.run import EvolveRun


def test_chance_level_is_the_largest_class_share_plus_one_standard_error():
    assert chance_level([10] * 7) == pytest.approx(1 / 7 + (1 / 7 * 6 / 7 / 70) ** 0.5)
    assert chance_level([50, 30, 20]) == pytest.approx(0.5 + 0.05)  # p = .5, n = 100
    ok = [{"status": "ok", "val_acc": v} for v in (0.14, 0.15, 0.3)]
    assert at_chance(ok + [{"status": "failed", "val_acc": 0.0}], 0.2) == 2


def run_with(outcomes: list[float], budgets=(2, 4), augment="none") -> str:
    ev = Evolution(GAConfig(pop=4, generations=2, seed=0, min_budget=budgets[0], max_budget=budgets[-1]))
    for i, acc in enumerate(outcomes):
        ev.record(Candidate(f"g{i}", [i], {}, 0, budget=budgets[0]), {"status": "ok", "val_acc": acc})
    out = io.StringIO()
    run = EvolveRun.__new__(EvolveRun)  # only what the check reads
    run.console, run.chance = EvolveConsole(stream=out, quiet=True, progress_stream=io.StringIO()), 0.185
    run.opts = EvolveOptions(out="unused", trial_batch=32, trial_augment=augment)
    run._check_signal(ev, 0)
    return out.getvalue()


def test_a_generation_mostly_at_chance_is_reported_once_with_what_to_change():
    line = run_with([0.143, 0.143, 0.16, 0.31])
    assert line.startswith("gen   0: 3 of 4 new genomes ended at chance after 2 epoch(s)") and "--min-budget" in line
    assert run_with([0.143, 0.25, 0.26, 0.31]) == ""  # most learnt something: nothing to say
    assert "--epochs-per-trial" in run_with([0.1, 0.1, 0.1], budgets=(4,))
    # a run that trains with augmentation is pointed at the default trial recipe too
    assert "--trial-" not in line
    assert "the trial recipe --trial-augment none, a larger" in run_with([0.1] * 3, augment="vgg")


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


CHANCE = 0.158  # the demo's 560-image validation split: 1/7 + one standard error


def ok(acc: float, loss: float, level: int = 0) -> dict:
    return {"status": "ok", "val_acc": acc, "val_loss": loss, "level": level}


def test_accuracies_up_to_the_chance_level_tie_and_the_lower_loss_wins():
    def f(entry, chance=CHANCE):
        return fitness_of(entry, ("accuracy",), chance)

    assert f(ok(0.143, 1.90)) > f(ok(0.150, 1.95))  # both at chance: the loss decides
    assert f(ok(0.150, 1.90)) < f(ok(0.143, 1.89))
    assert f(ok(0.20, 3.0)) > f(ok(0.19, 1.0))  # above it: accuracy first, however the losses go
    assert f(ok(0.16, 9.0)) > f(ok(0.158, 0.1))
    assert f(ok(0.143, 1.9, level=1)) > f(ok(0.9, 0.1))  # the larger budget first
    assert f(ok(0.143, 1.9)) > f(ok(0.143, math.nan)) == f(ok(0.143, math.inf))  # no loss: last of its tie
    assert f(ok(0.150, 1.95), 0.0) > f(ok(0.143, 1.90), 0.0)  # no level: only exact ties go to the loss
    assert f({"status": "failed", "val_acc": 0.9, "val_loss": 0.1}) < f(ok(0.0, 50.0))
    # equal accuracies on any split under a million images keep their order
    assert ranking_accuracy(0.5 + 1e-6, 100.0) > ranking_accuracy(0.5, 0.0)


def test_promotions_use_the_same_order():
    rung = [("a", ok(0.150, 1.95)), ("b", ok(0.143, 1.90)), ("c", ok(0.30, 2.5)), ("d", {"status": "failed"}),
            ("e", ok(0.143, 1.90))]
    assert promoted(rung, 3, CHANCE) == ["c", "b", "e"]  # b and e tie on everything: the id decides
    assert promoted(rung, 2, 0.0) == ["c", "a"]


def test_the_ga_selects_among_chance_level_genomes_by_loss():
    """A generation that learnt nothing but in its losses: the hall of fame's order, the elites
    and the logbook's best follow the loss, not the noise in the accuracy."""
    def evaluate(batch):
        return [ok(0.143 + 0.002 * (int(c.gid[:4], 16) % 7), 1.5 + (int(c.gid[4:8], 16) % 1000) / 1000) for c in batch]

    ev = Evolution(GAConfig(pop=8, generations=2, seed=3, min_budget=2, max_budget=2, rerank_top=0,
                            chance_level=CHANCE)).run(evaluate)
    trained = [e for e in ev.cache.values() if e.get("generation") == 0]
    lowest = min(trained, key=lambda e: e["val_loss"])
    assert ev.by_fitness()[0].gid == min(ev.cache.values(), key=lambda e: e["val_loss"])["gid"]
    assert lowest["gid"] in {ind.gid for ind in ev.population}  # an elite of generation 0 lives on
    assert ev.logbook[0]["best"] == lowest["val_acc"] != max(e["val_acc"] for e in trained)


def test_re_ranked_genomes_are_ordered_by_the_same_rule():
    """best.json and the hall of fame's files put re-ranked genomes first, by the mean ranking
    over their largest-budget trainings: at chance that is the mean loss, not the id."""
    def evaluate(batch):
        return [ok(0.143, 1.5 + (int(c.gid[4:8], 16) % 1000) / 1000 + 0.01 * c.seed) for c in batch]

    ev = Evolution(GAConfig(pop=6, generations=1, seed=5, min_budget=2, max_budget=2, rerank_top=3, rerank_seeds=1,
                            chance_level=CHANCE)).run(evaluate)
    reranked = [e for e in ev.cache.values() if any(t["kind"] == "rerank" for t in e["trials"])]
    assert len(reranked) == 3

    def mean_loss(e):
        return sum(t["val_loss"] for t in e["trials"]) / len(e["trials"])
    assert [ind.gid for ind in ev.hall_of_fame()[:3]] == [e["gid"] for e in sorted(reranked, key=mean_loss)]
    assert ev.best().gid == min(reranked, key=mean_loss)["gid"]
    best = [r["best_fitness"] for r in ev.logbook]
    assert best == sorted(best)  # the elite keeps the fittest: what patience compares never falls


def test_outcomes_of_a_version_3_run_are_read_but_it_is_not_resumed(tmp_path):
    from fernas.errors import RunDirError
    from fernas.evolve import read_outcomes

    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(pop=4, generations=1, seed=1, max_budget=1, rerank_top=0), checkpoint_path=ckpt)
    ev.run(lambda b: [ok(0.3, 1.0) for _ in b])
    state = json.loads(ckpt.read_text())
    for older in (3, 4, 5):  # same cache layout; an older ranking rule (3) or older draws (4, 5)
        state["fernas_evolve_checkpoint"] = older
        ckpt.write_text(json.dumps(state))
        assert set(read_outcomes(ckpt)) == set(ev.cache)  # a warm start may reuse its trials
        with pytest.raises(RunDirError, match=f"version {older}, this fernas reads version {CHECKPOINT_VERSION};"):
            Evolution.load(ckpt)
