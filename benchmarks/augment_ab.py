"""Today's augmentation against fernas/augment.py of another git revision, timed side by side.

Both modules are loaded into one process (the other from `git show REV:fernas/augment.py`) and
timed interleaved, five rounds, best per setting, so load on a shared machine hits both alike:
`augment_batch` (one crop per image, the VGG preset) and `train_crops_all` (ten crops), at
batch 32 (a search trial's) and 256, on 1 torch thread. Writes
benchmarks/results/augment_ab.json.

    python benchmarks/augment_ab.py --against 4664105
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def _module_at(rev: str):
    """fernas/augment.py as it was at `rev`, imported under another name."""
    src = subprocess.run(["git", "show", f"{rev}:fernas/augment.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    with tempfile.TemporaryDirectory(prefix="fernas-augment-") as tmp:  # imported, the file is no longer needed
        path = Path(tmp) / "augment_then.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("augment_then", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


def _seconds_per_call(fn, calls: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def compare(then, now, batches=(32, 256), rounds: int = 5) -> dict:
    """Images per second of both modules per (batch, crops), best of `rounds` interleaved rounds."""
    best: dict = {}
    for batch in batches:
        x = torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        y = torch.zeros(batch, dtype=torch.long)
        for _ in range(rounds):
            for name, mod in (("then", then), ("now", now)):
                g = torch.Generator().manual_seed(0)
                for crops, fn, calls in ((1, lambda: mod.augment_batch(x, g), max(5, 4000 // batch)),
                                         (10, lambda: mod.train_crops_all(x, y, g), max(2, 800 // batch))):
                    key = (batch, crops, name)
                    best[key] = min(best.get(key, float("inf")), _seconds_per_call(fn, calls))
    return {f"batch {b}, {c} crop{'s' if c > 1 else ''}": {
        "then_img_per_s": round(b / best[(b, c, "then")]), "now_img_per_s": round(b / best[(b, c, "now")]),
        "now_over_then": round(best[(b, c, "then")] / best[(b, c, "now")], 2)}
        for b in batches for c in (1, 10)}


def main() -> int:
    from fernas import augment
    from fernas.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, metavar="REV", help="the git revision to compare with")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "augment_ab.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from equal_compute import cpu_model
    from step_ops import commit

    rows = compare(_module_at(args.against), augment)
    for k, v in rows.items():
        print(f"{k:18s} then {v['then_img_per_s']:>8,} img/s   now {v['now_img_per_s']:>8,} img/s   "
              f"x{v['now_over_then']}")
    atomic_write_json(args.out, {"benchmark": "augment_ab", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "machine": cpu_model(), "torch": torch.__version__, "threads": 1,
                                 "then": args.against, "now": commit(), "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
