"""At equal images, do more optimizer steps lift short trials off chance and rank genomes better?

On the demo data (1,400 training images) a 4-epoch trial at batch 128 makes 44 optimizer
steps; pooled over the equal-compute runs, 16 of 17 such first trainings ended at chance
against 4 of 19 at batch 32-64 (`chance_rates.json`).  This trains the genomes of a
`budget_correlation.py` result (the same draw: its seed, count and cost cap) for the same
epochs twice with the real trial function: once at the genome's own batch size and once at
`--batch` (the same images, so the same images x multiply-adds, in more steps), and compares
how many end at chance and how well each ranking (fernas' rule: accuracy above the chance
level, ties by the loss) predicts the long accuracy of that file (its `span` at the largest
budget, trained at the genome's own batch).  A genome whose batch is already `--batch` is
trained once.  Seconds are side by side per genome (smaller batches use a CPU less well).

    .venv/bin/python benchmarks/batch_steps.py --long benchmarks/results/budget_correlation_48.json

Output: benchmarks/results/batch_steps.json, rewritten after every genome.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import budget_correlation as bc  # noqa: E402

from fernas.io import atomic_write_json  # noqa: E402


def summary(rows: list[dict], chance: float, top: str) -> dict:
    """At-chance counts of both batch sizes and Spearman of their rankings with the long accuracy."""
    # trained at both sizes and long (a failed training is no accuracy, as `fitness.at_chance` counts)
    rows = [r for r in rows if r.get("long") is not None and r["own"]["status"] == r["small"]["status"] == "ok"]
    out = {"genomes": len(rows)}
    for k in ("own", "small"):
        acc = [r[k]["val_acc"] for r in rows]
        loss = [r[k]["val_loss"] for r in rows]
        out[k] = {"at_or_below_chance": sum(a <= chance for a in acc),
                  f"spearman_vs_{top}": bc.spearman(bc.lexicographic_score([max(a, chance) for a in acc], loss),
                                                    [r["long"] for r in rows]),
                  "train_seconds": round(sum(r[k]["train_seconds"] for r in rows), 1)}
    return out


def train(doc: dict, data, epochs: int, seed: int, threads: int, chance: float) -> dict:
    from fernas.search.trial import TrialBudget, train_trial

    o = train_trial(doc, data, TrialBudget(epochs=epochs, seed=seed, threads=threads, chance=chance))
    return {k: o.get(k) for k in ("status", "val_acc", "val_loss", "train_seconds", "compute")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", required=True, help="a budget_correlation.py result: its draw and long accuracies")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batch_steps.json"))
    a = ap.parse_args(argv)
    ref = json.loads(Path(a.long).read_text())
    st = ref["settings"]
    top = st["budgets"].split(",")[-1]
    long_acc = {r["gid"]: r["span"].get(top) for r in ref["rows"]}
    import torch

    from fernas.data import load_dataset
    from fernas.fitness import chance_level
    from fernas.genome import genome_id

    torch.set_num_threads(st["threads"])
    data = load_dataset(st["data"])
    chance = chance_level(data.val.class_counts(data.num_classes))
    schedulers = tuple(x for x in st.get("schedulers", "").split(",") if x)  # the reference's draw exactly
    docs = [d for d in bc.draw_genomes(st["genomes"], st["seed"], st["max_mmacs"], schedulers)
            if genome_id(d) in long_acc]
    restart = {r["gid"]: r.get("restart", {}).get(str(a.epochs)) for r in ref["rows"]}
    rows, t0 = [], time.perf_counter()
    for doc in docs:
        gid, batch = genome_id(doc), doc["train"]["batch_size"]
        own = train(doc, data, a.epochs, st["seed"], st["threads"], chance)
        small_doc = {**doc, "train": {**doc["train"], "batch_size": a.batch}}
        small = own if batch == a.batch else train(small_doc, data, a.epochs, st["seed"], st["threads"], chance)
        # the same training as the reference's restart at this budget, when the trainer is unchanged
        rows.append({"gid": gid, "batch": batch, "optimizer": doc["train"]["optimizer"], "own": own, "small": small,
                     "long": long_acc[gid], "reference_own": restart.get(gid)})
        print(f"{gid}  batch {batch:>3} {own['val_acc']:.3f} ({own['train_seconds']:.0f} s)  batch {a.batch} "
              f"{small['val_acc']:.3f} ({small['train_seconds']:.0f} s)  long {long_acc[gid]}", flush=True)
        atomic_write_json(a.out, {
            "benchmark": "batch_steps", "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": st["threads"]},
            "settings": {**vars(a), "draw": st}, "chance_level": chance, "summary": summary(rows, chance, top),
            "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps(summary(rows, chance, top), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
