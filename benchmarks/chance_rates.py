"""Which genes leave a first training at chance?  The report's table, pooled over many runs.

`fernas report` shows, per run, how many first trainings ended at or below the run's chance
level after its smallest budget, by value of each property (`run_analysis.chance_by_property`).
One run has a few dozen; this pools the first trainings of several evolve runs on the same
data and budget (a genome trained with the same seed in two runs, e.g. the shared generation 0
of two arms of `equal_compute.py`, counts once) and writes the same table for all of them.

    .venv/bin/python benchmarks/chance_rates.py benchmarks/results/tmp/equal_compute_*/*-seed*
    .venv/bin/python benchmarks/chance_rates.py runs/a runs/b --budget 4 --out /tmp/chance.json

Runs on other data than the first run's, or whose smallest budget is not `--budget` (default:
the first run's), are skipped and listed.  Writes benchmarks/results/chance_rates.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.io import atomic_write_json  # noqa: E402
from fernas.run_analysis import chance_by_property, first_trainings  # noqa: E402


def run_key(cfg: dict) -> tuple:
    """What must match for two runs' trainings to pool: data, data seed, smallest budget."""
    data = cfg["options"]["data"], cfg["options"]["data_args"].get("data_seed")
    return data, cfg["fitness"]["budgets"][0]


def pooled(runs: list[Path], budget: int | None) -> tuple[list[dict], dict, list[str]]:
    """The distinct first trainings of the runs that match the first one, its config, the skipped."""
    rows, seen, skipped, first_cfg = [], set(), [], None
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        if first_cfg is None:
            first_cfg = cfg
            budget = budget or cfg["fitness"]["budgets"][0]
        if run_key(cfg) != (run_key(first_cfg)[0], budget):
            skipped.append(str(run))
            continue
        for r in first_trainings(list(csv.DictReader((run / "trials.csv").open())), budget):
            if (r["gid"], r["seed"]) not in seen:
                seen.add((r["gid"], r["seed"]))
                rows.append(r)
    return rows, first_cfg, skipped


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
    runs = [r for r in a.runs if (r / "trials.csv").is_file() and (r / "config.json").is_file()]
    if not runs:
        raise SystemExit("no evolve run directory among the arguments (trials.csv and config.json)")
    rows, cfg, skipped = pooled(runs, a.budget)
    budget = a.budget or cfg["fitness"]["budgets"][0]
    c = chance_by_property(rows, budget, cfg["fitness"]["chance_level"])
    atomic_write_json(a.out, {"benchmark": "chance_rates", "data": cfg["options"]["data"],
                              "data_seed": cfg["options"]["data_args"].get("data_seed"),
                              "runs": [_shown(r) for r in runs if str(r) not in skipped],
                              "skipped": [_shown(Path(r)) for r in skipped], **c})
    print(f"{c['at_chance']} of {c['trainings']} first trainings at or below {c['chance_level']:.3f} "
          f"after {budget} epoch(s), {c['compute_at_chance'] / max(c['compute'], 1):.0%} of their compute")
    for e in c["properties"]:
        shares = "  ".join(f"{v} {round(m * n)}/{n}" for v, (m, n) in e["means"].items())
        print(f"  {e['property']:26s} {e['omega2']:.2f}  {shares}")
    print(f"wrote {a.out}" + (f" (skipped {len(skipped)} runs of other data or budgets)" if skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
