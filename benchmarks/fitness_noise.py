"""How much of a short trial's fitness is signal?  Retrain the genomes a search kept as its best.

The search-quality comparison (`benchmarks/search_quality.py`) scores each genome by one short
trial.  If that score were mostly noise, the best genome of a run would be the luckiest, not
the best, and selection (the GA's whole advantage) would chase noise.  This benchmark takes the
best genome of each finished run in a search-quality work directory and trains it again, with
the trial's exact settings (same data, epochs, one torch thread, `fernas.train.train_genome`):

* once with the run's own seed: the stored fitness must come back (the trainer is seeded);
* `--repeats` times with other seeds: the spread of the fitness of one genome, and how far the
  best genomes fall back when the luck of their first trial is taken away (regression to the
  mean), against chance (1/7) and against the spread between genomes.

Writes benchmarks/results/fitness_noise.json.

    .venv/bin/python benchmarks/fitness_noise.py --work benchmarks/results/tmp/sq_novel
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in a Ray trial worker, before torch is imported
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.io import atomic_write_json  # noqa: E402

CHANCE = 1 / 7


def best_of_run(run: Path) -> dict | None:
    """The best trained genome of a finished `fernas evolve` run, with the run's trial settings."""
    from fernas.errors import RunDirError
    from fernas.evolve import is_done, read_outcomes
    from fernas.fitness import is_ok
    from fernas.search.options import stored_recipe

    try:
        if not is_done(run / "checkpoint.json"):
            return None  # still running or killed
        cache = read_outcomes(run / "checkpoint.json")
        opts = json.loads((run / "config.json").read_text())["options"]
    except (RunDirError, OSError, ValueError, KeyError):
        return None
    ok = [e for e in cache.values() if is_ok(e) and e.get("val_acc") is not None]
    if not ok:
        return None
    best = max(ok, key=lambda e: float(e["val_acc"]))
    return {"run": run.name, "gid": best["gid"], "vector": best["vector"], "stored_val_acc": float(best["val_acc"]),
            "seed": int(opts["ga"]["seed"]), "data": opts["data"], "epochs": int(opts["ga"]["max_budget"]),
            "steps": int(opts.get("max_steps_per_epoch") or 0), "trained_in_run": len(ok),
            # the run's trial recipe (a run stored before it: each genome's own batch, VGG augmentation)
            **dict(zip(("trial_batch", "trial_augment"), stored_recipe(opts)))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", "--large", dest="large", action="store_true",
                    help="the runs of `search_quality.py --gpu`, retrained on the GPU; writes fitness_noise-gpu.json")
    ap.add_argument("--work", default=None, help="a benchmarks/search_quality.py work directory (its "
                    "ga-seed*/random-seed* runs; default benchmarks/results/tmp/search_quality[-gpu])")
    ap.add_argument("--repeats", type=int, default=3, help="retrainings with other seeds per genome")
    ap.add_argument("--out", default=None, help="default benchmarks/results/fitness_noise[-gpu].json")
    a = ap.parse_args(argv)
    suffix = "-gpu" if a.large else ""
    a.work = a.work or str(ROOT / "benchmarks" / "results" / "tmp" / f"search_quality{suffix}")
    a.out = a.out or str(ROOT / "benchmarks" / "results" / f"fitness_noise{suffix}.json")

    import torch

    from fernas import genome as G
    from fernas.data import load_dataset
    from fernas.search.trial import TrialBudget, train_trial

    torch.set_num_threads(1)  # as a trial (--cpus-per-trial 1)
    device = "cuda" if a.large and torch.cuda.is_available() else "cpu"
    runs = sorted(Path(p) for p in glob.glob(os.path.join(a.work, "*-seed*")) if Path(p).is_dir())
    picks = [b for b in (best_of_run(r) for r in runs) if b is not None]
    if not picks:
        raise SystemExit(f"{a.work}: no finished runs")
    data_cache: dict[str, object] = {}
    t0 = time.perf_counter()
    done: dict[tuple, list[float]] = {}  # both strategies may keep the same genome of generation 0
    for p in picks:
        if p["data"] not in data_cache:
            data_cache[p["data"]] = load_dataset(p["data"])
        doc = G.from_vector(p["vector"])
        key = (p["gid"], p["seed"], p["data"], p["epochs"], p["steps"], p["trial_batch"], p["trial_augment"])
        accs = done.get(key, [])
        for k in range(len(accs), a.repeats + 1):  # k = 0: the run's own seed (reproduces the stored fitness)
            seed = p["seed"] + 1000 * k
            budget = TrialBudget(epochs=p["epochs"], max_steps_per_epoch=p["steps"], seed=seed, device=device,
                                 batch=p["trial_batch"], augment=p["trial_augment"])
            accs.append(round(float(train_trial(doc, data_cache[p["data"]], budget)["val_acc"]), 4))  # as a trial
        done[key] = accs
        p["same_seed_val_acc"] = accs[0]
        p["other_seeds_val_acc"] = accs[1:]
        p["other_seeds_mean"] = round(statistics.mean(accs[1:]), 4)
        p["other_seeds_std"] = round(statistics.stdev(accs[1:]), 4) if len(accs) > 2 else 0.0
        print(f"{p['run']:>16} {p['gid']}: stored {p['stored_val_acc']:.4f}  same seed {accs[0]:.4f}  "
              f"other seeds {' '.join(f'{x:.4f}' for x in accs[1:])}", flush=True)

    stored = [p["stored_val_acc"] for p in picks]
    again = [p["other_seeds_mean"] for p in picks]
    summary = {
        "genomes": len(picks),
        "reproduced_with_same_seed": sum(abs(p["same_seed_val_acc"] - p["stored_val_acc"]) < 1e-3 for p in picks),
        "stored_best_mean": round(statistics.mean(stored), 4),
        "retrained_other_seeds_mean": round(statistics.mean(again), 4),
        "regression_to_mean": round(statistics.mean(stored) - statistics.mean(again), 4),
        "within_genome_std_pooled": round(statistics.mean(p["other_seeds_std"] ** 2 for p in picks) ** 0.5, 4),
        "between_genome_std_of_retrained_means": round(statistics.stdev(again), 4) if len(again) > 1 else None,
        "retrained_mean_above_chance": sum(m > CHANCE + 0.01 for m in again),
        "by_strategy": {s: {"stored_mean": round(statistics.mean(q["stored_val_acc"] for q in sel), 4),
                            "retrained_mean": round(statistics.mean(q["other_seeds_mean"] for q in sel), 4),
                            "n": len(sel)}
                        for s in ("ga", "random") if (sel := [q for q in picks if q["run"].startswith(s + "-")])},
    }
    from fernas.runinfo import versions
    result = {"benchmark": "fitness_noise", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                          "load_average_at_end": round(os.getloadavg()[0], 2)},
              "versions": versions("torch", "ray", "deap", "numpy"), "work": str(a.work), "repeats": a.repeats, "chance": round(CHANCE, 4),
              "summary": summary, "genomes": picks, "wall_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(a.out, result)
    print(json.dumps(summary, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
