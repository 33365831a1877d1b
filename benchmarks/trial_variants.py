"""Do short trials trained another way lift genomes off chance and rank them better?

On the demo data (1,400 training images) most 4-epoch first trainings end at chance: pooled
over the equal-compute runs, 31 of 51 (`chance_rates.json`).  This trains the genomes of a
`budget_correlation.py` result (the same draw: its seed, count and cost cap) for the same
epochs twice with the real trial function: once as the search does (the genome's own batch
size, the VGG paper's augmentation) and once as a variant: `--batch` (the same images, so the
same images x multiply-adds, in more optimizer steps) and/or `--augment` (another preset of
`fernas.augment`).  It compares how many end at chance and how well each ranking (fernas'
rule: accuracy above the chance level, ties by the loss) predicts the long accuracy of that
file (its `span` at the largest budget, trained as the search does).  A genome the variant
would not change is trained once.  Seconds are side by side per genome.  `--own-from` takes
the search-like trainings from an earlier output of this script with the same draw and epochs
(they do not depend on the variant) instead of training them again.

    .venv/bin/python benchmarks/trial_variants.py --long benchmarks/results/budget_correlation_48.json --batch 32
    .venv/bin/python benchmarks/trial_variants.py --long benchmarks/results/budget_correlation_48.json \
        --batch 0 --augment none --own-from benchmarks/results/trial_variants_b32_vgg.json

Output: benchmarks/results/trial_variants_bBATCH_AUGMENT.json (or --out), rewritten after every genome.
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
    """At-chance counts of both trainings and Spearman of their rankings with the long accuracy."""
    # trained at both sizes and long (a failed training is no accuracy, as `fitness.at_chance` counts)
    rows = [r for r in rows if r.get("long") is not None and r["own"]["status"] == r["variant"]["status"] == "ok"]
    out = {"genomes": len(rows)}
    for k in ("own", "variant"):
        acc = [r[k]["val_acc"] for r in rows]
        loss = [r[k]["val_loss"] for r in rows]
        out[k] = {"at_or_below_chance": sum(a <= chance for a in acc),
                  f"spearman_vs_{top}": bc.spearman(bc.lexicographic_score([max(a, chance) for a in acc], loss),
                                                    [r["long"] for r in rows]),
                  "train_seconds": round(sum(r[k]["train_seconds"] for r in rows), 1)}
    return out


def train(doc: dict, data, epochs: int, seed: int, threads: int, chance: float, batch: int = 0,
          augment: str = "vgg") -> dict:
    """One trial as fernas evolve trains it, with the trial recipe (batch, augment)."""
    from fernas.search.trial import TrialBudget, train_trial

    o = train_trial(doc, data, TrialBudget(epochs=epochs, seed=seed, threads=threads, chance=chance, batch=batch,
                                           augment=augment))
    return {k: o.get(k) for k in ("status", "val_acc", "val_loss", "train_seconds", "compute")}


def earlier_own(path: str | None, st: dict, epochs: int) -> dict:
    """gid -> the search-like training of an earlier output with the same draw and epochs."""
    if not path:
        return {}
    doc = json.loads(Path(path).read_text())
    if doc["settings"]["draw"] != st or doc["settings"]["epochs"] != epochs:
        raise SystemExit(f"{path}: another draw or epoch count than --long and --epochs; expected draw {st}")
    return {r["gid"]: r["own"] for r in doc["rows"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", required=True, help="a budget_correlation.py result: its draw and long accuracies")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32, help="the variant's batch size (0: the genome's own)")
    ap.add_argument("--augment", default="vgg", choices=("vgg", "mild", "none"),
                    help="the variant's augmentation preset")
    ap.add_argument("--own-from", help="an earlier output of this script: its search-like trainings")
    ap.add_argument("--out", help="default benchmarks/results/trial_variants_bBATCH_AUGMENT.json")
    a = ap.parse_args(argv)
    a.out = a.out or f"benchmarks/results/trial_variants_b{a.batch}_{a.augment}.json"
    ref = json.loads(Path(a.long).read_text())
    st = ref["settings"]
    top = st["budgets"].split(",")[-1]
    long_acc = {r["gid"]: r["span"].get(top) for r in ref["rows"]}
    known_own = earlier_own(a.own_from, st, a.epochs)
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
        own = known_own.get(gid) or train(doc, data, a.epochs, st["seed"], st["threads"], chance)
        variant_batch = a.batch or batch
        unchanged = variant_batch == batch and a.augment == "vgg"
        variant = own if unchanged else train(doc, data, a.epochs, st["seed"], st["threads"], chance, a.batch,
                                              a.augment)
        # the same training as the reference's restart at this budget, when the trainer is unchanged
        rows.append({"gid": gid, "batch": batch, "optimizer": doc["train"]["optimizer"], "own": own,
                     "variant": variant, "long": long_acc[gid], "reference_own": restart.get(gid)})
        print(f"{gid}  own {own['val_acc']:.3f} ({own['train_seconds']:.0f} s)  batch {variant_batch:>3} "
              f"{a.augment} {variant['val_acc']:.3f} ({variant['train_seconds']:.0f} s)  long {long_acc[gid]}",
              flush=True)
        atomic_write_json(a.out, {
            "benchmark": "trial_variants", "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": st["threads"]},
            "settings": {**vars(a), "draw": st}, "chance_level": chance, "summary": summary(rows, chance, top),
            "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps(summary(rows, chance, top), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
