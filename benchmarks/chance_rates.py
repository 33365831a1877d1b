"""Which genes leave a first training at chance?  The report's table, pooled over many runs.

`fernas report` shows, per run, how many first trainings ended at or below the run's chance
level after its smallest budget, by value of each property (`run_analysis.chance_by_property`).
One run has a few dozen; this pools the first trainings of several evolve runs on the same
data and budget (a genome trained with the same seed in two runs, e.g. the shared generation 0
of two arms of `equal_compute.py`, counts once) and writes the same table for all of them.

    .venv/bin/python benchmarks/chance_rates.py benchmarks/results/tmp/equal_compute_*/*-seed*
    .venv/bin/python benchmarks/chance_rates.py runs/a runs/b --budget 4 --out /tmp/chance.json

Runs unlike the first (other data or data seed, largest budget, step cap or trainer version), or
whose smallest budget is not `--budget` (default: the first run's), are skipped and listed, as
are arguments that are no run directory.  Writes benchmarks/results/chance_rates.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.io import atomic_write_json  # noqa: E402
from fernas.run_analysis import chance_by_property, first_trainings, untrained_properties  # noqa: E402
from fernas.search.options import stored_recipe  # noqa: E402


def run_key(cfg: dict) -> tuple:
    """What must match for two runs' first trainings to be the same kind of training, apart from
    the smallest budget: data and its seed, the largest budget (a schedule spans it), the step
    cap, the trial recipe and the trainer's version."""
    o = cfg["options"]
    return (o["data"], o["data_args"].get("data_seed"), cfg["fitness"]["budgets"][-1], o.get("max_steps_per_epoch"),
            *stored_recipe(o), cfg.get("trial_version"))


def pooled(runs: list[Path], budget: int | None) -> tuple[list[dict], dict, int, list[Path], list[Path]]:
    """The distinct first trainings (genome and seed) of the runs like the first one at its
    smallest budget (or `budget`): rows, the first run's config, the budget, the runs pooled and
    the runs skipped.  A training that ran its budget in one run and was stopped by ASHA in
    another counts as run."""
    cfgs = [json.loads((run / "config.json").read_text()) for run in runs]
    budget = budget or cfgs[0]["fitness"]["budgets"][0]
    like = [run_key(cfg) == run_key(cfgs[0]) and cfg["fitness"]["budgets"][0] == budget for cfg in cfgs]
    kept = [run for run, ok in zip(runs, like) if ok]
    trials = [list(csv.DictReader((run / "trials.csv").open())) for run in kept]
    rows, seen = [], set()
    for status in ("ok", "stopped"):
        for r in (r for t in trials for r in first_trainings(t, budget, status)):
            if (r["gid"], r["seed"]) not in seen:
                seen.add((r["gid"], r["seed"]))
                rows.append(r)
    return rows, cfgs[0], budget, kept, [run for run, ok in zip(runs, like) if not ok]


def _shown(run: Path) -> str:
    """A run's path as the JSON keeps it: relative to the repository when inside it."""
    try:
        return str(run.resolve().relative_to(ROOT))
    except ValueError:
        return str(run)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="evolve run directories (trials.csv, config.json)")
    p.add_argument("--budget", type=int, help="the smallest budget to pool (default: the first run's)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chance_rates.json")
    a = p.parse_args(argv)
    given = list(dict.fromkeys(r.resolve() for r in a.runs))  # each run once
    runs = [r for r in given if (r / "trials.csv").is_file() and (r / "config.json").is_file()]
    not_runs = [_shown(r) for r in given if r not in runs]
    if not runs:
        raise SystemExit("no evolve run directory among the arguments (trials.csv and config.json)")
    rows, cfg, budget, kept, skipped = pooled(runs, a.budget)
    level = cfg["options"].get("ga", {}).get("chance_level") or cfg["fitness"]["chance_level"]  # unrounded
    c = chance_by_property(rows, budget, level, untrained_properties(cfg["options"]))
    when = datetime.datetime.now().isoformat(timespec="seconds")
    atomic_write_json(a.out, {"benchmark": "chance_rates", "date": when,
                              "argv": sys.argv[1:] if argv is None else list(argv), "data": cfg["options"]["data"],
                              "data_seed": cfg["options"]["data_args"].get("data_seed"),
                              "runs": [_shown(r) for r in kept], "skipped": [_shown(r) for r in skipped],
                              "not_runs": not_runs, **c})
    print(f"{c['at_chance']} of {c['trainings']} first trainings at or below {c['chance_level']:.3f} "
          f"after {budget} epoch(s), {c['compute_at_chance'] / max(c['compute'], 1):.0%} of their compute")
    if c["stopped"]:
        print(f"  and {c['stopped']} stopped by ASHA before the budget's end, {c['stopped_at_chance']} of them at chance")
    for e in c["properties"]:
        shares = "  ".join(f"{v} {round(m * n)}/{n}" for v, (m, n) in e["means"].items())
        print(f"  {e['property']:26s} {e['omega2']:.2f}  {shares}")
    print(f"wrote {a.out}" + (f" (skipped {len(skipped)} runs of other data or budgets)" if skipped else "")
          + (f"; not run directories: {', '.join(not_runs)}" if not_runs else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
