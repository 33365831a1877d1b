"""Fitness: how a trial's epochs become a genome's score, and a score becomes a DEAP fitness.

The one place that decides what a trial is worth:

* `trial_accuracy(history)` -- the accuracy a trial scores from its per-epoch validation
  records: its last epoch's, i.e. the accuracy at the end of its budget (the maximum over
  epochs would be biased upward by noise, more so the more epochs a trial has).
* `outcome_fields(history, costs)` -- what a trial reports about itself after each epoch,
  with its training compute (images processed x multiply-adds per image).
* `promoted(results, n, chance)` -- which genomes of a rung continue to the next budget.
* `ranking_accuracy(acc, loss, chance)` -- the number genomes are ordered by at one budget:
  accuracy, every accuracy at or below the chance level counted as that level (a network that
  predicts one class has shown nothing, and a point or two above the class share is luck), then
  the lower validation loss, which still tells who has started to learn.  Measured on the demo
  faces (benchmarks/results/budget_correlation_long.json, 16 genomes): at 4 of 16 epochs the
  accuracy ranks genomes like their 16-epoch accuracy with Spearman 0.44, this ordering 0.78;
  against 48 epochs (budget_correlation_48.json, 18 genomes under a 35 M cap) 0.22 and 0.04 at
  4 epochs, 0.83 and 0.82 at 16: 4 epochs say little about 48 there.  Scoring the mean of
  the last two epochs instead of the last (the files' `*_last_two` predictors): the plain
  accuracy's correlations rise in these two files (4 of 48: 0.44 against 0.22; over
  cosine/onecycle genomes, budget_correlation_sched8.json, they fall at 4 of 8: 0.20 against
  0.45), this ordering's fall at 4 epochs
  (0.58 against 0.78 of 16; -0.08 against 0.04 of 48) and rise a little at 8 and 16 (0.52
  against 0.43, 0.84 against 0.82 of 48).  Mixed on 16-18 genomes: the last epoch stays.
* `chance_level(class_counts)`, `at_chance(outcomes, level)` -- whether trials have left chance
  (a rung of chance-level trials ranks on ties: its budget is too small for the data).
* `reranked_trainings(entry, max_level)`, `reranked_accuracy(...)`, `reranked_score(..., chance)` --
  a re-ranked genome's re-ranking trainings, their mean accuracy, and the mean
  `ranking_accuracy` that orders re-ranked genomes (best.json, the hall of fame's files); its
  own trial at the largest budget counts only when the re-ranking trains the same (trial)
  recipe (`with_own`).
* `rerank_order(scored, n_val)` -- the order of re-ranked genomes (best.json, the hall of fame):
  by their mean; above chance, a difference within one binomial standard error counts as a tie
  that the search's own fitness breaks; at chance the validation loss still orders.  Measured
  (docs/search_experiments.md, "Re-ranking ties within noise"): the own-recipe re-ranking after
  8 epochs scores 0.14-0.45 on demo faces; of ten top-2 decisions whose finalists were all
  trained 48+2 (four re-rankings of `equal_compute_fairb.json`, six from the own-recipe 8-epoch
  accuracies of `finalists_proxy.json`) the rule changes one, for 10 points better (fairb seed
  1: the seed design at 0.277 had been put over a child at 0.271); tying at-chance means too
  would have changed another for 36 points worse (the loss there told who had started to learn).
* `fitness_of(entry, objectives, chance)` -- the DEAP fitness tuple of a genome: the largest budget it
  reached first, then its `ranking_accuracy` there (the accuracy objective is
  `level + ranking_accuracy`, a number that orders exactly so); a genome whose first trial did not end `ok` (or `stopped`
  early by ASHA, whose accuracy still counts) gets every objective's penalty.

A new rule for a trial's fitness (the mean of the last epochs, a seed average) changes this
module only; the trial, the Tune adapter and the GA call these functions.
"""

from __future__ import annotations

import math
from typing import Iterable

from fernas.objectives import OBJECTIVES

OK_STATUSES = ("ok", "stopped")  # "stopped": ended early by ASHA, its accuracy still counts
# Weight of the loss in `ranking_accuracy`: below the step between two accuracies of any
# validation split under a million images (1 / its size), so the loss only breaks ties.
LOSS_TIE_WEIGHT = 1e-7


def trial_accuracy(history: list[dict]) -> float:
    """The accuracy a trial scores: its last epoch's validation accuracy (0 if none)."""
    acc = history[-1].get("val_acc") if history else None
    return float(acc) if acc is not None and math.isfinite(acc) else 0.0


def outcome_fields(history: list[dict], costs: dict) -> dict:
    """A trial's outcome so far: the objectives' values and the progress it made.

    `history`: the trainer's epoch records; `costs`: the measured cost objectives by field.
    """
    last = history[-1] if history else {}
    images = sum(int(r.get("inputs", 0)) for r in history)
    return {"status": "ok", "error": "", "val_acc": trial_accuracy(history), **costs,
            "epoch": int(last.get("epoch", 0)), "last_val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"), "train_loss": last.get("train_loss"), "lr": last.get("lr"),
            "train_seconds": sum(float(r["seconds"]) for r in history),
            "images": images, "compute": images * int(costs.get("macs") or 0)}


def chance_level(class_counts: list[int]) -> float:
    """The validation accuracy below which a network has shown nothing: the share of the largest
    class (what predicting one class scores) plus one binomial standard error of it."""
    n = max(1, sum(class_counts))
    p = max(class_counts, default=0) / n
    return p + math.sqrt(p * (1 - p) / n)


def at_chance(outcomes: list[dict], level: float) -> int:
    """How many of these trained outcomes scored at or below `level` (`chance_level`)."""
    return sum(1 for o in outcomes if is_ok(o) and o.get("val_acc") is not None and float(o["val_acc"]) <= level)


def is_ok(outcome: dict) -> bool:
    return outcome.get("status") in OK_STATUSES


def is_rerank(trial: dict) -> bool:
    """A trial of the re-ranking (or its try that ran out of memory beside others: kind "oom"),
    not of the search: the search's budgets and counts leave it out."""
    return trial.get("kind") == "rerank" or trial.get("oom_of") == "rerank"


def validation_loss(outcome: dict) -> float:
    """The outcome's validation loss; infinite when missing or not finite (it then breaks no tie)."""
    v = outcome.get("val_loss")
    return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def ranking_accuracy(acc: float, loss: float, chance: float = 0.0) -> float:
    """A number that orders outcomes as (accuracy with everything up to `chance` tied, then
    lower validation loss): max(acc, chance) + LOSS_TIE_WEIGHT * exp(-loss)."""
    return max(float(acc), chance) + LOSS_TIE_WEIGHT * math.exp(-loss)


def promoted(results: list[tuple[str, dict]], n: int, chance: float = 0.0) -> list[str]:
    """The ids of the `n` best (id, trial outcome) pairs of a rung: trained (`ok`/`stopped`)
    ones only, by `ranking_accuracy` at the rung's budget, then by genome id (never by timing)."""
    ok = [(gid, r) for gid, r in results if is_ok(r) and r.get("val_acc") is not None]
    ok.sort(key=lambda p: (-ranking_accuracy(p[1]["val_acc"], validation_loss(p[1]), chance), p[0]))
    return [gid for gid, _ in ok[:n]]


def reranked_trainings(entry: dict, max_level: int, with_own: bool = True) -> list[dict]:
    """The trainings that order a re-ranked genome: its re-ranking trainings, and with
    `with_own` its own trial at the largest budget (when the re-ranking trains the trial recipe
    to that budget); none when it was not re-ranked."""
    reruns = [t for t in entry.get("trials", []) if t.get("kind") == "rerank" and is_ok(t)]
    if not reruns:
        return []
    own = with_own and is_ok(entry) and int(entry.get("level") or 0) == max_level
    return ([entry] if own else []) + reruns


def reranked_accuracy(entry: dict, max_level: int, with_own: bool = True) -> float | None:
    """Mean accuracy of those trainings (`reranked_trainings`); None when it was not re-ranked."""
    runs = reranked_trainings(entry, max_level, with_own)
    return sum(float(t["val_acc"]) for t in runs) / len(runs) if runs else None


def reranked_score(entry: dict, max_level: int, chance: float = 0.0, with_own: bool = True) -> float | None:
    """The mean `ranking_accuracy` of those trainings: what orders re-ranked genomes."""
    runs = reranked_trainings(entry, max_level, with_own)
    return (sum(ranking_accuracy(t["val_acc"], validation_loss(t), chance) for t in runs) / len(runs)) if runs else None


def difference_se(p: float, trainings: tuple[int, int], n_val: int) -> float:
    """Binomial standard error of the difference between two mean accuracies near `p`, each over
    `trainings` measurements on a validation split of `n_val` images (0 without a split)."""
    if n_val <= 0:
        return 0.0
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1 - p) * (1 / (n_val * trainings[0]) + 1 / (n_val * trainings[1])))


def rerank_order(scored: list[tuple[str, float, int, float, bool]], n_val: int) -> list[str]:
    """Re-ranked genomes best first, from (gid, mean `reranked_score`, its trainings, search
    fitness, whether its mean is above the chance level).  A difference within one standard
    error (`difference_se`) between two means above chance is no evidence: the genomes after the
    highest left whose means are, one after the other, that close to it tie with it (up to the
    first that is not), and tied genomes go by their search fitness (the accuracy the search
    measured them by), then id.  Means at chance keep the order of their validation loss
    (`ranking_accuracy`: who has started to learn).  `n_val` 0: by the mean alone, ties by id."""
    left = sorted(scored, key=lambda x: (-x[1], x[0]))
    if n_val <= 0:
        return [x[0] for x in left]
    order: list[str] = []
    while left:
        lead, n = left[0], 1
        while n < len(left) and lead[4] and left[n][4] and \
                lead[1] - left[n][1] <= difference_se(lead[1], (lead[2], left[n][2]), n_val):
            n += 1  # an unbroken run from the top: none skips a genome with a higher mean
        order += [x[0] for x in sorted(left[:n], key=lambda x: (-x[3], x[0]))]
        left = left[n:]
    return order


def fitness_of(entry: dict, objectives: Iterable[str], chance: float = 0.0) -> tuple[float, ...]:
    """The fitness tuple of a genome (its cache entry); a failed one gets every penalty.
    `chance`: the validation split's `chance_level` (accuracies up to it tie, see
    `ranking_accuracy`)."""
    values = []
    for name in objectives:
        obj = OBJECTIVES[name]
        v = entry.get(obj.field)
        if not is_ok(entry) or v is None or not math.isfinite(float(v)):
            v = obj.penalty
        elif obj is OBJECTIVES["accuracy"]:
            # the larger budget first, then accuracy there, ties by the loss
            v = int(entry.get("level") or 0) + ranking_accuracy(float(v), validation_loss(entry), chance)
        values.append(float(v))
    return tuple(values)
