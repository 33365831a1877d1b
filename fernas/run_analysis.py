"""What a search's trials say, for the run report: best-so-far against compute, how the
validation accuracy varies with each property of the network and recipe, and which properties
go with first trainings that ended at chance (compute that taught the search little).

Trials come as `trials.csv` rows (dicts of strings).  Only completed trials at the run's
largest budget count as fitness (`fitness_trials`): a lower budget's accuracy measures a
shorter training, and a re-ranking trial repeats a genome with another seed.

The effect of a property is omega^2: the share of the accuracy's variance explained by
grouping trials by the property's value (numbers with many values in up to `BINS` quantile
bins), corrected for the number of groups -- the plain correlation ratio eta^2 of a few
trials in many groups is near 1 by chance alone.  A GA's population is no random sample -- it breeds from its best --
so these are associations in what the run trained, not causes.
"""

from __future__ import annotations

import json
import math

BINS = 5
MIN_TRIALS = 6  # fewer than this: no effect is estimated


def is_fitness_trial(t: dict, max_budget: int) -> bool:
    """A trial (a trials.csv row or a checkpoint's trial record) whose accuracy is a fitness at
    the run's largest budget: trained (or ended early by ASHA), no re-ranking."""
    return (t.get("status") in ("ok", "stopped") and t.get("kind") != "rerank"
            and int(float(t.get("budget") or 0)) == max_budget and t.get("val_acc") not in (None, ""))


def fitness_trials(rows: list[dict], max_budget: int) -> list[dict]:
    """The fitness trials in the order they finished."""
    return [r for r in rows if is_fitness_trial(r, max_budget)]


def best_so_far(rows: list[dict], max_budget: int) -> list[tuple[float, float]]:
    """(compute spent so far in images x MACs, best fitness so far) after each trial, every
    trial's compute counted (lower budgets and failures cost too)."""
    spent, best, out = 0.0, None, []
    fit = {id(r) for r in fitness_trials(rows, max_budget)}
    for r in rows:
        spent += float(r.get("compute") or 0)
        if id(r) in fit:
            acc = float(r["val_acc"])
            best = acc if best is None else max(best, acc)
        if best is not None:
            out.append((spent, best))
    return out


def utilisation(trials: list[dict], slots: dict) -> dict | None:
    """How busy the trial slots were: the seconds trials ran (`busy`, as the searcher saw them:
    Ray's start of the trial included) and trained (`training`) over the slots' time, from the
    first trial's start to the last one's end, summed over the run's attempts (a resume's
    downtime is not counted).  `trials`: checkpoint trial records (`attempt`, `finished_at`,
    `wall_seconds`, `train_seconds`); `slots`: trials at once by attempt (keys are strings).
    None when no trial has times."""
    spans: dict[str, list[float]] = {}
    busy = training = 0.0
    for t in trials:
        wall, end = float(t.get("wall_seconds") or 0), t.get("finished_at")
        if wall <= 0 or end is None or str(t.get("attempt")) not in slots:
            continue  # refused without a trial, or a trial of a version that did not record its attempt
        lo_hi = spans.setdefault(str(t["attempt"]), [end - wall, end])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], end - wall), max(lo_hi[1], end)
        busy, training = busy + wall, training + float(t.get("train_seconds") or 0)
    capacity = sum((hi - lo) * int(slots[a]) for a, (lo, hi) in spans.items())
    if capacity <= 0:
        return None
    return {"busy": round(busy / capacity, 3), "training": round(training / capacity, 3),
            "slot_seconds": round(capacity, 1)}


def properties(doc: dict) -> dict:
    """The readable properties of a genome's active network and recipe."""
    stages, fc, t = doc["stages"], doc["head"]["fc"], doc["train"]
    return {
        "stages": len(stages),
        "conv layers": sum(s["repeats"] for s in stages),
        "inverted residual stages": sum(s["block"] == "inverted_residual" for s in stages),
        "widest stage": max(s["width"] for s in stages),
        "first stage width": stages[0]["width"],
        "largest kernel": max(s["kernel"] for s in stages),
        "mean stage dropout": round(sum(s["dropout"] for s in stages) / len(stages), 3),
        "head reduce": doc["head"]["reduce"],
        "fc layers": len(fc),
        "optimizer": t["optimizer"],
        "lr": t["lr"],
        "weight decay": t["weight_decay"],
        "scheduler": t["scheduler"],
        "batch size": t["batch_size"],
    }


def _groups(values: list, accs: list[float]) -> dict:
    """Accuracies grouped by value; numbers with more than BINS values go in quantile bins."""
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if len(distinct) <= BINS or any(isinstance(v, str) for v in distinct):
        return {v: [a for x, a in zip(values, accs) if x == v] for v in distinct}
    order = sorted(values)
    edges = [order[min(len(order) - 1, int(len(order) * k / BINS))] for k in range(1, BINS)]
    bins: dict[int, list[tuple]] = {}
    for x, a in zip(values, accs):
        bins.setdefault(sum(x > e for e in edges), []).append((x, a))

    def label(members):  # the range of the values in the bin
        lo, hi = min(x for x, _ in members), max(x for x, _ in members)
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return {label(bins[k]): [a for _, a in bins[k]] for k in sorted(bins)}


def omega2(groups: dict) -> float:
    """Omega^2 of accuracies grouped by value, clipped at 0 (0 where it is undefined)."""
    accs = [a for g in groups.values() for a in g]
    n, k = len(accs), len(groups)
    if k < 2 or n <= k:
        return 0.0
    mean = sum(accs) / n
    total = sum((a - mean) ** 2 for a in accs)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    ms_within = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * ms_within) / (total + ms_within)) if total > 0 else 0.0


def _by_property(trials: list[dict], values: list[float], fixed: tuple = ()) -> list[dict]:
    """Per property of the trials' genomes: omega^2 of `values` grouped by it, the number of
    groups and (mean value, trials) per group, largest effect first.  `fixed`: properties the
    trainings did not use (a run's trial batch replaces every genome's "batch size")."""
    props = [properties(json.loads(r["genome"])) for r in trials]
    out = []
    for name in (n for n in props[0] if n not in fixed):
        groups = _groups([p[name] for p in props], values)
        out.append({"property": name, "omega2": omega2(groups), "values": len(groups),
                    "means": {str(k): (sum(g) / len(g), len(g)) for k, g in groups.items()}})
    return sorted(out, key=lambda e: (-e["omega2"] if e["values"] > 1 else 1.0, e["property"]))


def effects(rows: list[dict], max_budget: int, fixed: tuple = ()) -> list[dict]:
    """Per property: omega^2, the number of distinct values and the mean accuracy per value,
    largest effect first; [] with fewer than MIN_TRIALS fitness trials."""
    fit = [r for r in fitness_trials(rows, max_budget) if r.get("genome")]
    if len(fit) < MIN_TRIALS:
        return []
    return _by_property(fit, [float(r["val_acc"]) for r in fit], fixed)


def untrained_properties(options: dict) -> tuple:
    """Genome properties a run's trials did not train with: the batch size under a trial batch."""
    return ("batch size",) if options.get("trial_batch") else ()


def first_trainings(rows: list[dict], min_budget: int, status: str = "ok") -> list[dict]:
    """New genomes' first trainings at the smallest budget with their genome: those that ran it
    whole ("ok"), or those Ray Tune's ASHA stopped before its end ("stopped")."""
    return [r for r in rows if r.get("kind") == "first" and r.get("status") == status and r.get("genome")
            and int(float(r.get("budget") or 0)) == min_budget and r.get("val_acc") not in (None, "")]


def chance_by_property(rows: list[dict], min_budget: int, chance: float, fixed: tuple = ()) -> dict:
    """Compute that taught the search little: the first trainings that ended at or below `chance`
    (the run's chance level, as `fitness.at_chance` counts) after the smallest budget, the share
    of those trainings' compute they took, and per property the share at chance per value
    (`_by_property` of a 0/1 flag), largest omega^2 first ("properties": [] with fewer than
    MIN_TRIALS trainings).  Trainings ASHA stopped early are counted apart (`stopped`): they did
    not run the budget, so their accuracy is not the budget's."""
    first = first_trainings(rows, min_budget)
    flags = [1.0 if float(r["val_acc"]) <= chance else 0.0 for r in first]
    compute = [float(r.get("compute") or 0) for r in first]
    stopped = first_trainings(rows, min_budget, "stopped")
    return {"budget": min_budget, "chance_level": chance, "trainings": len(first), "at_chance": int(sum(flags)),
            "compute": sum(compute), "compute_at_chance": sum(c for c, f in zip(compute, flags) if f),
            "stopped": len(stopped), "stopped_at_chance": sum(float(r["val_acc"]) <= chance for r in stopped),
            "compute_stopped": sum(float(r.get("compute") or 0) for r in stopped),
            "properties": _by_property(first, flags, fixed) if len(first) >= MIN_TRIALS else []}


def plot_best_vs_compute(points: list[tuple[float, float]], title: str = "") -> bytes:
    """PNG of the best fitness so far against the compute spent (log scale over a decade or more)."""
    from fernas.report import figure_png, new_figure

    fig, ax = new_figure()
    if points:
        xs, ys = zip(*points)
        ax.step(xs, ys, where="post", color="tab:blue")
        low, high = min(xs), max(xs)
        if low > 0 and high / low >= 10:  # log scale over a decade or more: its powers of ten are labelled
            ax.set_xscale("log")
            from matplotlib.ticker import NullFormatter

            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
        else:  # under a decade a log axis has at most one labelled tick: a linear one
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.set_xlabel("training compute spent (images x multiply-adds)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(title or "best so far against compute")
    return figure_png(fig)


def plot_effects(effs: list[dict], top: int = 8) -> bytes:
    """PNG: mean accuracy per value (bar height; n on the bar) of the `top` properties with the
    largest omega^2."""
    import matplotlib.pyplot as plt

    from fernas.report import figure_png

    shown = [e for e in effs if e["values"] > 1][:top]
    cols = 4
    n_rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(16, 3.2 * n_rows), squeeze=False)
    for ax, e in zip(axes.flat, shown):
        labels = list(e["means"])
        means = [e["means"][k][0] for k in labels]
        bars = ax.bar(range(len(labels)), means, color="tab:blue", alpha=0.75)
        for b, k in zip(bars, labels):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"n={e['means'][k][1]}", ha="center",
                    va="bottom", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{e['property']} (ω² {e['omega2']:.2f})", fontsize=9)
        ax.set_ylim(min(means) * 0.9, max(means) * 1.08 if max(means) > 0 else 1)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.supylabel("mean validation accuracy")
    fig.tight_layout()
    return figure_png(fig)
