"""The trial as a plain function (no Ray): genome, data, budget -> outcome."""

from __future__ import annotations

import pytest

from fernas.data import load_dataset
from fernas.fitness import trial_accuracy
from fernas.objectives import COSTS, FIELDS
from fernas.search.trial import FAULT_ENV, TrialBudget, train_trial
from test_search import tiny_genome


@pytest.fixture(scope="module")
def data():
    return load_dataset("demo:140,70,70")


def test_a_trial_reports_every_epoch_and_scores_by_the_fitness_rule(data):
    reports = []
    out = train_trial(tiny_genome(16), data, TrialBudget(epochs=2, max_steps_per_epoch=2, seed=3), report=reports.append)
    assert out["status"] == "ok" and out["epoch"] == 2 and [r["epoch"] for r in reports] == [1, 2]
    history = [{"val_acc": r["last_val_acc"]} for r in reports]
    assert out["val_acc"] == trial_accuracy(history) == history[-1]["val_acc"]  # accuracy at the budget's end
    assert out["compute"] == out["images"] * out["macs"] and out["images"] == 2 * 2 * 32  # epochs x steps x batch
    assert all(out[f] is not None and out[f] > 0 for f in FIELDS if f != "val_acc")
    assert len(COSTS) == len(FIELDS) - 1  # every objective but accuracy is measured before training
    again = train_trial(tiny_genome(16), data, TrialBudget(epochs=2, max_steps_per_epoch=2, seed=3))
    assert again["val_acc"] == out["val_acc"]  # same seed, same fitness


def test_the_trial_recipe_trains_the_genome_at_the_trial_batch_with_the_trial_augmentation(data):
    from fernas.augment import STRENGTHS
    from fernas.commands.evolve_flags import STRENGTHS as CLI_STRENGTHS

    assert CLI_STRENGTHS == STRENGTHS  # --trial-augment's choices, kept without importing torch
    doc = tiny_genome(16)  # batch 32
    big = {**doc, "train": {**doc["train"], "batch_size": 64}}
    budget = TrialBudget(epochs=1, max_steps_per_epoch=2, seed=3)
    proxy = train_trial(big, data, TrialBudget(**{**vars(budget), "batch": 32, "augment": "none"}))
    assert proxy["images"] == 2 * 32 and big["train"]["batch_size"] == 64  # steps x the trial batch
    same = train_trial(doc, data, TrialBudget(**{**vars(budget), "augment": "none"}))
    assert proxy["val_acc"] == same["val_acc"] and proxy["val_loss"] == same["val_loss"]
    augmented = train_trial(doc, data, budget)
    assert augmented["val_loss"] != same["val_loss"]  # the augmentation reached the trainer


def test_a_failing_genome_is_a_failed_outcome_and_reporting_errors_propagate(data, monkeypatch):
    doc = tiny_genome(24)
    from fernas.genome import genome_id

    monkeypatch.setenv(FAULT_ENV, f"{genome_id(doc)}=raise")
    out = train_trial(doc, data, TrialBudget(epochs=1, max_steps_per_epoch=1), gid=genome_id(doc))
    assert out["status"] == "failed" and "injected fault" in out["error"] and out["val_acc"] == 0.0
    assert out["last_val_acc"] == 0.0  # a number, never None: rank_score (what ASHA ranks on) is computed from it
    monkeypatch.delenv(FAULT_ENV)

    class Stop(Exception):
        pass

    def stop(outcome):
        raise Stop  # e.g. Tune stopping the trial: not the genome's fault, not a failed outcome

    with pytest.raises(Stop):
        train_trial(doc, data, TrialBudget(epochs=2, max_steps_per_epoch=1), report=stop)


def test_a_promotion_continues_from_the_checkpoint_as_one_longer_trial(data, tmp_path):
    """Budget 1 then a promotion to budget 3 (schedule of 4 epochs) = budget 3 in one go."""
    doc = tiny_genome(16, lr=2e-3)
    doc["train"]["scheduler"] = "cosine"
    ck = str(tmp_path / "g.pt")
    base = dict(schedule_epochs=4, max_steps_per_epoch=2, seed=5)
    first = train_trial(doc, data, TrialBudget(epochs=1, checkpoint=ck, **base))
    promoted = train_trial(doc, data, TrialBudget(epochs=3, checkpoint=ck, resume=True, resume_from=1, **base))
    whole = train_trial(doc, data, TrialBudget(epochs=3, **base))
    assert first["epoch"] == 1 and promoted["epoch"] == whole["epoch"] == 3
    assert promoted["val_acc"] == whole["val_acc"] and promoted["train_loss"] == whole["train_loss"]
    assert promoted["images"] == 2 * first["images"]  # the promotion accounts for its own epochs only
    # killed after its last checkpoint and run again: nothing left to train, the same outcome
    again = train_trial(doc, data, TrialBudget(epochs=3, checkpoint=ck, resume=True, resume_from=1, **base))
    for k in ("epoch", "val_acc", "train_loss", "images", "compute"):
        assert again[k] == promoted[k], k
    # killed after epoch 2 of the promotion (its checkpoint at epoch 2) and run again: its reports,
    # of which Tune keeps the last, count epoch 2 too (the compute a --max-compute budget adds up)
    train_trial(doc, data, TrialBudget(epochs=1, checkpoint=ck, **base))
    train_trial(doc, data, TrialBudget(epochs=2, checkpoint=ck, resume=True, resume_from=1, **base))
    reports = []
    resumed = train_trial(doc, data, TrialBudget(epochs=3, checkpoint=ck, resume=True, resume_from=1, **base),
                          report=reports.append)
    assert [r["epoch"] for r in reports] == [3] and reports[-1]["images"] == resumed["images"] == promoted["images"]
    assert resumed["val_acc"] == promoted["val_acc"]


def test_the_score_ray_tunes_asha_ranks_ties_at_chance_by_the_loss():
    from fernas.fitness import ranking_accuracy
    from fernas.search.trial import with_rank_score

    chance = 0.16
    at_chance_low_loss = with_rank_score({"status": "ok", "last_val_acc": 0.15, "val_loss": 1.80}, chance)
    at_chance_high_loss = with_rank_score({"status": "ok", "last_val_acc": 0.14, "val_loss": 1.95}, chance)
    learning = with_rank_score({"status": "ok", "last_val_acc": 0.30, "val_loss": 2.50}, chance)
    # raw accuracy would stop the first one before the second; the promotions' rule does not
    assert learning["rank_score"] > at_chance_low_loss["rank_score"] > at_chance_high_loss["rank_score"]
    assert at_chance_low_loss["rank_score"] == ranking_accuracy(0.15, 1.80, chance)
    for failed in ({"status": "failed", "last_val_acc": 0.0, "val_loss": None},
                   {"status": "ok", "last_val_acc": None, "val_loss": 1.9}):
        assert with_rank_score(failed, chance)["rank_score"] == 0.0  # ASHA cannot compare a None
    # a loss that is not finite breaks no tie (as in the promotions) but keeps the accuracy
    diverged = with_rank_score({"status": "ok", "last_val_acc": 0.30, "val_loss": float("nan")}, chance)
    assert diverged["rank_score"] == 0.30
    assert at_chance_high_loss["rank_score"] > with_rank_score(
        {"status": "ok", "last_val_acc": 0.14, "val_loss": float("inf")}, chance)["rank_score"] >= chance
