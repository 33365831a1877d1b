"""The seed designs on the built-in demo faces, trained with the real fernas trainer.

Complements benchmarks/demo_difficulty.py (linear model, tiny CNN, small VGG-like CNN):
each genome in genomes/ is trained with its own recipe for a few epochs (one random crop
per image, VGG-paper augmentation) and tested with ten-crop averaging.  Writes
benchmarks/results/demo_seeds.json and prints a table.

    .venv/bin/python benchmarks/demo_seeds.py [--epochs 4] [--data demo] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.data import load_dataset  # noqa: E402
from fernas.evaluate import evaluate_model  # noqa: E402
from fernas.genome import load_genome  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402
from fernas.model import summarize  # noqa: E402
from fernas.train import TrainConfig, train_genome  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data", default="demo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--genomes", nargs="*", default=sorted(str(p) for p in (ROOT / "genomes").glob("*.json")))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/demo_seeds.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    # Results accumulate across runs with the same settings (the 8-conv seed alone costs
    # ~1.8 GMAC per image: on 2 CPU cores the genomes are often measured in several sittings).
    rows, out_path = [], Path(args.out)
    if out_path.exists():
        old = json.loads(out_path.read_text())
        if old.get("data") == args.data and old.get("epochs") == args.epochs:
            names = {load_genome(p)["name"] for p in args.genomes}
            rows = [r for r in old["results"] if r["genome"] not in names]
    for path in args.genomes:
        doc = load_genome(path)
        s = summarize(doc)
        t0 = time.perf_counter()
        res = train_genome(doc, data, TrainConfig(epochs=args.epochs, device="cpu", seed=0))
        m = evaluate_model(res.model, data.test, data.classes)
        rows.append({"genome": doc["name"], "params": s["params"], "macs": s["macs"],
                     "best_val_acc": round(res.best_val_acc, 4),
                     "test_acc_tencrop": round(m["test_accuracy_tencrop"], 4),
                     "test_acc_single": round(m["test_accuracy_single"], 4),
                     "train_seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"benchmark": "demo_seeds", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads, "
                      f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
           "torch": torch.__version__, "data": args.data,
           "sizes": [len(data.train), len(data.val), len(data.test)], "epochs": args.epochs,
           "protocol": "genome's own recipe, 1 random crop per image, VGG augmentation, best-val weights, "
                       "ten-crop test", "results": rows}
    out["results"].sort(key=lambda r: r["genome"])
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
