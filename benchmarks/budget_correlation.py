"""Does a short budget predict the long one?  Rank correlation of genomes across budgets.

Successive halving promotes by the accuracy at the small budget, so it only helps when the
ranking of genomes there agrees with their ranking at the largest budget (Zela et al. 2018:
it often does not).  For N genomes drawn as the GA's initial distribution draws them (under
the cost cap), this trains each with the real trial function and records the validation
accuracy at every budget in two ways:

* "span": one training whose learning-rate schedule spans the largest budget, read at the end
  of each budget -- what fernas' promotions see (a promotion continues this curve), with each
  genome's own batch size and the VGG paper's augmentation (the trial recipe before
  2026-12-05; `trial_variants.py` compares the present one against these files);
* "restart": a separate training per budget whose schedule ends with that budget.

It reports Spearman's rank correlation between each small budget and the largest, for both, and
(`predictors`, span mode) how well three rankings at a small budget predict the accuracy at the
largest: the accuracy alone, the validation loss alone, and the accuracy with ties broken by
the loss (what `fitness.promoted` and the GA's selection use).  Accuracies of networks still
at chance tie; their losses do not.  `*_last_two`: the same on the mean of the budget's last two
epochs (would scoring that beat scoring the last?).  `--resummarize FILE` recomputes these from
an earlier file's rows.
Output: benchmarks/results/budget_correlation.json (with the machine and the settings).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.io import atomic_write_json  # noqa: E402


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho: the Pearson correlation of the average ranks (None if a side is constant
    or there are fewer than two pairs)."""
    n = len(a)
    if n < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return None if va == 0 or vb == 0 else round(cov / (va * vb) ** 0.5, 4)


def lexicographic_score(acc: list[float], loss: list[float]) -> list[float]:
    """One number per genome that orders as (accuracy, then lower loss): its rank in that order."""
    order = sorted(range(len(acc)), key=lambda i: (acc[i], -loss[i], i))
    out = [0.0] * len(acc)
    for pos, i in enumerate(order):
        out[i] = float(pos)
    return out


def last_epochs_mean(row: dict, key: str, budget: int, k: int = 2) -> float:
    """The mean of a span-mode record (`span` or `span_loss`) over the budget's last k epochs."""
    epochs = range(max(1, budget - k + 1), budget + 1)
    return sum(float(row[key][str(e)]) for e in epochs) / len(epochs)


def predictors(rows: list[dict], budgets: list[int], chance: float) -> dict:
    """Spearman's rho of span-mode rankings at each small budget with the accuracy at the
    largest: accuracy, negated validation loss, accuracy with ties broken by the loss, and the
    same with every accuracy at or below the chance level counted as a tie; then the first and
    the last of these on the mean of the budget's last two epochs instead of its last."""
    top = str(budgets[-1])
    small = budgets[-2] if len(budgets) > 1 else 0  # the largest small budget: every epoch up to it is read
    rows = [r for r in rows if all(r.get("span_loss", {}).get(str(e)) is not None for e in range(1, small + 1))]
    final = [r["span"][top] for r in rows]
    out = {"genomes": len(rows)}
    for b in budgets[:-1]:
        acc = [r["span"][str(b)] for r in rows]
        loss = [float(r["span_loss"][str(b)]) for r in rows]
        acc2 = [last_epochs_mean(r, "span", b) for r in rows]
        loss2 = [last_epochs_mean(r, "span_loss", b) for r in rows]
        out[f"{b}_vs_{top}"] = {"accuracy": spearman(acc, final), "loss": spearman([-x for x in loss], final),
                                "accuracy_then_loss": spearman(lexicographic_score(acc, loss), final),
                                "above_chance_then_loss": spearman(
                                    lexicographic_score([max(x, chance) for x in acc], loss), final),
                                "accuracy_last_two": spearman(acc2, final),
                                "above_chance_then_loss_last_two": spearman(
                                    lexicographic_score([max(x, chance) for x in acc2], loss2), final)}
    return out


def measured_modes(no_restart: bool) -> tuple[str, ...]:
    return ("span",) if no_restart else ("span", "restart")


def complete_rows(rows: list[dict], budgets: list[int], modes: tuple[str, ...]) -> list[dict]:
    """The trained rows with an accuracy at every budget in every mode."""
    return [r for r in rows if r["status"] == "ok" and all(str(b) in r[m] for b in budgets for m in modes)]


def resummarize(ap: argparse.ArgumentParser, path: str) -> int:
    """Recompute the `predictors` of an earlier result file from its rows, in place."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        ap.error(f"--resummarize {path}: not a readable JSON file ({exc})")
    if not isinstance(doc, dict) or not {"settings", "rows", "chance_level", "predictors"} <= set(doc):
        ap.error(f"--resummarize {path}: not a result of this benchmark with per-epoch losses (no "
                 "settings, rows, chance_level or predictors); run it again")
    budgets = [int(b) for b in doc["settings"]["budgets"].split(",")]
    ok = complete_rows(doc["rows"], budgets, measured_modes(doc["settings"].get("no_restart")))
    doc["predictors"] = predictors(ok, budgets, doc["chance_level"])
    atomic_write_json(path, doc)
    print(json.dumps(doc["predictors"], indent=2))
    return 0


def draw_genomes(n: int, seed: int, max_mmacs: float, schedulers: tuple[str, ...] = ()) -> list[dict]:
    """N genomes as the GA's initial population draws them; with `schedulers`, the first N of a
    larger draw whose learning-rate scheduler is one of those."""
    from fernas.evolve import Evolution, GAConfig
    from fernas.evolve.operators import vector_id
    from fernas.evolve.rng import get_rng_states, set_rng_states
    from fernas.evolve.sampling import initial_population

    pop_size = n
    while True:
        ev = Evolution(GAConfig(pop=pop_size, seed=seed, max_mmacs=max_mmacs))
        saved = get_rng_states()
        set_rng_states(ev.rng)
        docs = [vector_id(ind)[1] for ind in initial_population(ev.cfg, [], ev._ind)]
        set_rng_states(saved)
        kept = [d for d in docs if not schedulers or d["train"]["scheduler"] in schedulers]
        if len(kept) >= n or pop_size >= 64 * n:
            return kept[:n]
        pop_size *= 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo:1400,560,280")
    ap.add_argument("--genomes", type=int, default=16)
    ap.add_argument("--budgets", default="1,2,4", help="epochs; the last is the largest budget")
    ap.add_argument("--max-mmacs", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--schedulers", default="",
                    help="comma-separated: only genomes with one of these learning-rate schedulers. The span "
                         "and restart modes differ only where the curve depends on its length: cosine and "
                         "onecycle at any budget, step where the largest budget is 20 epochs or more, "
                         "cosine_wr where it is 60 or more")
    ap.add_argument("--no-restart", action="store_true",
                    help="span mode only (one training per genome): large budgets at a fraction of the time")
    ap.add_argument("--gpu", action="store_true",
                    help="for `make bench-gpu`: the trials take the GPU (they do wherever one is), "
                         "results go to budget_correlation-gpu.json")
    ap.add_argument("--out", default=None, help="default benchmarks/results/budget_correlation[-gpu].json")
    ap.add_argument("--resummarize", metavar="FILE",
                    help="train nothing: recompute the predictors of an earlier result file from its rows")
    a = ap.parse_args(argv)
    if a.resummarize:
        return resummarize(ap, a.resummarize)
    from fernas.genome import SCHEDULERS, genome_id

    schedulers = tuple(x for x in a.schedulers.split(",") if x)
    unknown = set(schedulers) - set(SCHEDULERS)
    if unknown:
        ap.error(f"--schedulers: unknown {', '.join(sorted(unknown))} (expected some of {', '.join(SCHEDULERS)})")
    a.out = a.out or str(ROOT / "benchmarks" / "results" / f"budget_correlation{'-gpu' if a.gpu else ''}.json")
    import torch

    from fernas.data import load_dataset
    from fernas.fitness import chance_level
    from fernas.search.trial import TrialBudget, train_trial

    torch.set_num_threads(a.threads)
    budgets = [int(b) for b in a.budgets.split(",")]
    top = budgets[-1]
    docs = draw_genomes(a.genomes, a.seed, a.max_mmacs, schedulers)
    if len(docs) < a.genomes:  # the draw gave up (64 x N genomes drawn): too few with these schedulers
        ap.error(f"only {len(docs)} of {a.genomes} genomes drawn under --max-mmacs {a.max_mmacs:g}"
                 + (f" with --schedulers {a.schedulers}" if schedulers else "")
                 + "; ask for fewer genomes" + (" or more schedulers" if schedulers else ""))
    data = load_dataset(a.data)
    chance = chance_level(data.val.class_counts(data.num_classes))
    t0 = time.perf_counter()
    rows = []
    for doc in docs:
        curve: list[dict] = []
        span = train_trial(doc, data, TrialBudget(epochs=top, schedule_epochs=top, seed=a.seed, threads=a.threads),
                           report=curve.append)
        row = {"gid": genome_id(doc), "status": span["status"], "macs": span.get("macs"),
               "span": {str(r["epoch"]): r["last_val_acc"] for r in curve},
               "span_loss": {str(r["epoch"]): r.get("val_loss") for r in curve},
               "restart": {str(top): span["val_acc"]}}
        for b in [] if a.no_restart else budgets[:-1]:  # a schedule that ends with this budget
            row["restart"][str(b)] = train_trial(doc, data, TrialBudget(epochs=b, seed=a.seed, threads=a.threads))["val_acc"]
        rows.append(row)
        print(f"{row['gid']}  span {row['span']}  restart {row['restart']}", flush=True)
        # written after every genome: a stopped run keeps what it finished
        result = summarize(a, rows, budgets, chance, time.perf_counter() - t0)
        atomic_write_json(a.out, result)
    if rows:
        print(json.dumps({k: result[k] for k in ("genomes", "rank_correlation", "predictors", "at_or_below_chance_level",
                                                 "wall_seconds")}, indent=2))
    return 0


def summarize(a, rows: list[dict], budgets: list[int], chance: float, wall: float) -> dict:
    top = budgets[-1]
    modes = measured_modes(a.no_restart)
    ok = complete_rows(rows, budgets, modes)
    return {
        "benchmark": "budget_correlation", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": a.threads},
        "settings": vars(a), "genomes": len(ok),
        "rank_correlation": {mode: {f"{b}_vs_{top}": spearman([r[mode][str(b)] for r in ok], [r[mode][str(top)] for r in ok])
                                    for b in budgets[:-1]} for mode in modes},
        "chance_level": chance,  # exact: --resummarize ties accuracies at it as the run did
        "predictors": predictors(ok, budgets, chance),
        "at_or_below_chance_level": {str(b): sum(r["span"][str(b)] <= chance for r in ok) for b in budgets},
        "chance_level_at": {mode: {str(b): sum(abs(r[mode][str(b)] - 1 / 7) < 0.01 for r in ok) for b in budgets}
                            for mode in modes},
        # false while the run goes on, and in the file of a stopped one
        "complete": len(rows) == a.genomes, "rows": rows, "wall_seconds": round(wall, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
