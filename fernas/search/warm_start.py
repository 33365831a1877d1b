"""Warm start: a new run that begins from an earlier run's hall of fame and fitness cache.

`fernas evolve --warm-start RUN_DIR` puts the earlier run's hall of fame at the head of the
initial population and copies its trained genomes into the new fitness cache, so nothing it
trained is trained again.  That is sound only when a trial of the same genome would score
the same: the same data, budgets (and steps per epoch), ASHA or not, trial and re-ranking recipe and seed,
or the warm start is refused with the reason; and only trials measured by this trainer (`trainer_version`,
kept in every trial: TRIAL_VERSION and the torch version) that ran to the end of their budget
are reused.

Reused trials keep `from_run` (the earlier run's directory): they are not counted as this
run's trials or compute and are not listed in its trials.csv.  Genomes above the new cost cap
or outside the new search space are not reused.
"""

from __future__ import annotations

import copy
from pathlib import Path

from fernas import genome as G
from fernas.data_spec import DATA_DEFAULTS_OF_OLDER_RUNS
from fernas.errors import RunDirError
from fernas.evolve import GAConfig, read_outcomes
from fernas.search import rundir
from fernas.search.options import recipe_text, stored_recipe
from fernas.search.trial import trainer_version
from fernas.space import Space


def _differences(stored: dict, opts, data_info: dict) -> list[str]:
    """What differs between the earlier run and this one, in the terms a trial depends on."""
    o = stored["options"]
    ga = o.get("ga", {})
    there = {"data": _data_text(o.get("data"), o.get("data_args"), stored.get("data", {})),
             "budgets": _budget_text(ga.get("min_budget"), ga.get("max_budget"), ga.get("eta"),
                                     o.get("max_steps_per_epoch")),
             "ASHA": "on" if o.get("asha") else "off", "seed": str(ga.get("seed")),
             "trial recipe": recipe_text(*stored_recipe(o)),
             "re-ranking": _reranking(ga.get("rerank_recipe", "trial"), ga.get("rerank_schedule"),
                                      ga.get("rerank_budget") or ga.get("max_budget"), ga.get("rerank_warmup", 0)),
             # a run that searched the batch returns genomes of other batches: set to this run's,
             # they would be other genomes, their trials not reused
             "batch sizes": _batch_sizes(ga.get("space"))}
    here = {"data": _data_text(opts.data, opts.data_args, data_info),
            "budgets": _budget_text(opts.ga.min_budget, opts.ga.max_budget, opts.ga.eta, opts.max_steps_per_epoch),
            "ASHA": "on" if opts.asha else "off", "seed": str(opts.ga.seed),
            "trial recipe": recipe_text(opts.trial_batch, opts.trial_augment),
            "re-ranking": _reranking(opts.ga.rerank_recipe, opts.ga.rerank_schedule, opts.ga.rerank_epochs,
                                     opts.ga.rerank_warmup),
            "batch sizes": _batch_sizes(opts.ga.space)}
    return [f"{k} ({there[k]} there, {here[k]} here)" for k in here if there[k] != here[k]]


def _data_text(source, data_args: dict | None, info: dict) -> str:
    """A run's data as its trials saw it: the --data given, the data flags, the split sizes."""
    data_args = {**DATA_DEFAULTS_OF_OLDER_RUNS, **(data_args or {})}
    flags = "".join(f", {k.replace('_', ' ')}" + ("" if v is True else f" {v}")
                    for k, v in sorted(data_args.items()) if v is not None and v is not False)
    read = f" read as {info.get('source')}" if info.get("source") != source else ""
    sizes = "/".join(str(info.get(k)) for k in ("n_train", "n_val", "n_test"))
    return f"{source}{read}{flags}, {sizes} images"


def _budget_text(low, high, eta, steps) -> str:
    return (f"{low}-{high} epochs, eta {eta}" if low != high else f"{low} epoch(s)") + \
        (f", at most {steps} step(s) per epoch" if steps else "")


def _reranking(recipe: str, schedule: int, epochs: int, warmup: int) -> str:
    """How the re-ranking trains, in the terms its scores depend on (the schedule, length and
    warm-up only for own: a trial-recipe re-ranking trains the largest budget, compared under "budgets")."""
    if recipe != "own":
        return "trial recipe"
    return f"own recipe, {epochs} epochs of a schedule of {schedule}" + (f", warm-up {warmup}" if warmup else "")


def _batch_sizes(space: dict | None) -> str:
    """The batch sizes a run's genomes may have (its space's; "searched": all)."""
    allowed = (space or {}).get("train.batch_size")
    return " or ".join(str(G.BATCH_SIZES[int(v)]) for v in allowed) if allowed else "searched"


def load_warm_start(source: str, opts, data_info: dict) -> tuple[list[dict], dict[str, dict]]:
    """(hall-of-fame genomes, cache entries to reuse) of the run in `source`; RunDirError with
    the reason when a trial of it would not score as one of this run."""
    src = Path(source)
    stored = rundir.read_config(src)  # RunDirError: not a run, another version, corrupt
    diff = _differences(stored, opts, data_info)
    if diff:
        raise RunDirError(f"{src}: cannot warm-start from this run, its trials would not score the same here: "
                          + "; ".join(diff))
    cache = read_outcomes(src / "checkpoint.json")
    reused = {gid: _imported(e, str(src)) for gid, e in cache.items() if _reusable(e, opts.ga)}
    hof = [G.load_genome(p) for p in sorted((src / "hall_of_fame").glob("*.json"))]
    return hof, reused


def _reusable(entry: dict, ga: GAConfig) -> bool:
    """Trained to the end of its budget by this trainer, inside the new space and caps."""
    trials = entry.get("trials", [])
    if entry.get("status") != "ok" or not entry.get("vector") or not trials:
        return False  # failed, refused, or stopped early by ASHA (its accuracy is of a shorter training)
    if any(t.get("trainer") != trainer_version() or t.get("status") not in ("ok", "failed") for t in trials
           if not (t.get("kind") == "rerank" and t.get("status") == "skipped")):  # a re-ranking too large to train
        return False
    doc = G.from_vector(entry["vector"])
    return ga.refusal(doc, entry.get("macs")) is None and Space.from_config(ga.space).admits(entry["vector"])


def _imported(entry: dict, src: str) -> dict:
    """The entry as this run keeps it: trained before generation 0, its trials marked as reused."""
    e = copy.deepcopy(entry)
    e["generation"] = -1
    for t in e.get("trials", []):
        t["from_run"] = src
    return e
