"""Does a trial's time follow its multiply-adds?  The cost estimate checked against measured trials.

Reads the trials.csv of finished `fernas evolve` runs (every trial that trained: its genome,
images and train seconds, measured by the trial itself) and compares three predictors of
seconds per training image: multiply-adds (what `--max-mmacs` counts), activation elements of
the forward pass (`Plan.activations`), and `fernas.model.training_cost` (multiply-adds plus
ACTIVATION_COST_MACS per activation element: what `--max-cost` and the longest-first trial
order use).  Reported: Spearman rank correlation with the measured time, and the median
relative error of a one-coefficient fit, also for other weights of the activation term.

Output: benchmarks/results/cost_model.json.  Default input: the run directories of
benchmarks/equal_compute.py (so `make bench` measures it on its own trials).

    .venv/bin/python benchmarks/cost_model.py [RUN_DIR/trials.csv ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from budget_correlation import spearman  # noqa: E402

from fernas import genome as G  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402
from fernas.model import ACTIVATION_COST_MACS, plan  # noqa: E402

DEFAULT_GLOB = "benchmarks/results/tmp/equal_compute*/*/trials.csv"


def measured(paths: list[Path]) -> list[dict]:
    """(macs, activations, seconds per training image, run name) of every trial that trained."""
    out = []
    for p in paths:
        with p.open() as fh:
            for r in csv.DictReader(fh):
                if r.get("status") != "ok" or not r.get("genome") or not r.get("compute") or not float(r.get("macs") or 0):
                    continue
                images = float(r["compute"]) / float(r["macs"])
                if images <= 0 or not float(r.get("train_seconds") or 0):
                    continue
                pl = plan(G.validate({"fernas_genome": 1, "name": "trial", **json.loads(r["genome"])}))
                out.append({"macs": pl.macs, "activations": pl.activations,
                            "seconds_per_image": float(r["train_seconds"]) / images, "run": p.parent.name})
    return out


def judge(rows: list[dict], predictor) -> dict:
    """Rank correlation with the measured time and the median error of the best scale factor."""
    pred = [predictor(r) for r in rows]
    y = [r["seconds_per_image"] for r in rows]
    scale = statistics.median(b / a for a, b in zip(pred, y) if a > 0)  # robust one-coefficient fit
    errors = [abs(scale * a / b - 1) for a, b in zip(pred, y)]
    return {"spearman": round(spearman(pred, y), 3), "median_relative_error": round(statistics.median(errors), 3),
            "seconds_per_unit": scale}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trials", nargs="*", help=f"trials.csv files (default: {DEFAULT_GLOB})")
    ap.add_argument("--gpu", action="store_true", help="the GPU runs of equal_compute.py --gpu; cost_model-gpu.json")
    ap.add_argument("--out", default=None, help="default benchmarks/results/cost_model[-gpu].json")
    a = ap.parse_args(argv)
    a.out = a.out or str(ROOT / "benchmarks" / "results" / f"cost_model{'-gpu' if a.gpu else ''}.json")
    paths = [Path(p) for p in a.trials] or sorted(p for p in ROOT.glob(DEFAULT_GLOB) if ("-gpu" in str(p)) == a.gpu)
    rows = measured(paths)
    if len(rows) < 5:
        raise SystemExit(f"only {len(rows)} trained trials in {len(paths)} files: run benchmarks/equal_compute.py first")
    k = ACTIVATION_COST_MACS
    result = {
        "benchmark": "cost_model", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()[0]},
        "sources": [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths],
        "trials": len(rows), "macs_range": [min(r["macs"] for r in rows), max(r["macs"] for r in rows)],
        "predictors": {
            "multiply_adds": judge(rows, lambda r: r["macs"]),
            "activations": judge(rows, lambda r: r["activations"]),
            f"training_cost (macs + {k} x activations)": judge(rows, lambda r: r["macs"] + k * r["activations"]),
        },
        "activation_weight_sweep": {str(w): judge(rows, lambda r, w=w: r["macs"] + w * r["activations"])
                                    for w in (10, 30, 100, 300, 1000)},
        "note": "seconds per training image measured by each trial (1 torch thread per trial, 2 trials at a "
                "time on the 2-core CPU, shared with other jobs: noisy); ACTIVATION_COST_MACS = "
                f"{k} in fernas/model.py",
    }
    atomic_write_json(Path(a.out), result)
    for name, v in result["predictors"].items():
        print(f"{name:45s} spearman {v['spearman']:+.3f}  median error {v['median_relative_error']:.2f}")
    print(f"{len(rows)} trials from {len(paths)} runs -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
