"""Data-path benchmark: FER2013 CSV parse, cached reload, batched vs per-sample augmentation.

Measures, in one run on one machine:

* parsing a FER2013-sized fer2013.csv (35,887 rows x 2,304 pixels, written by this script;
  rows are drawn from a pool of 1,000 random images, so the file has real FER2013's size and
  digit mix but is not real data) with `fernas.data` (cold load: hash + parse + cache write,
  and the parse alone);
* the cached reload of the same file;
* augmentation throughput of fernas' batched on-device pipeline (`fernas.augment`, VGG-paper
  protocol of seeds 000/002) against the per-sample torchvision/PIL pipeline of the VGG paper's
  public code, both producing ten 40x40 crops per image (the reference code's training input);
  the one-crop-per-image mode is reported too.

Writes benchmarks/results/data.json and prints a table.  `make bench` runs it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fernas.augment import augment_batch, train_crops_all  # noqa: E402
from fernas.data import load_dataset, parse_fer_csv  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from equal_compute import cpu_model  # noqa: E402

FER_ROWS = 35887
USAGE = [(28709, b"Training"), (3589, b"PublicTest"), (3589, b"PrivateTest")]


def write_fer_csv(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pool = [b" ".join(str(v).encode() for v in row) for row in rng.integers(0, 256, (1000, 2304)).tolist()]
    lines, i = [b"emotion,pixels,Usage"], 0
    for n, usage in USAGE:
        for _ in range(n):
            lines.append(b"%d,%s,%s" % (i % 7, pool[int(rng.integers(1000))], usage))
            i += 1
    path.write_bytes(b"\n".join(lines) + b"\n")


def reference_transform():
    """The per-sample training transform of the VGG paper's public code (torchvision on PIL)."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomApply([T.RandomResizedCrop(48, scale=(0.8, 1.2))], p=0.5),
        T.RandomApply([T.RandomAffine(0, translate=(0.2, 0.2))], p=0.5),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.RandomRotation(10)], p=0.5),
        T.TenCrop(40),
        T.Lambda(lambda crops: torch.stack([T.ToTensor()(c) for c in crops])),
        T.Lambda(lambda ts: torch.stack([T.RandomErasing()(t) for t in ts])),
    ])


def timed(fn, min_seconds: float = 2.0, windows: int = 3) -> tuple[float, int]:
    """Run fn() repeatedly in `windows` windows of at least min_seconds/windows each; return the
    (seconds, calls) of the fastest window. The machine is shared, so the best window is the
    least disturbed one; both pipelines are measured the same way."""
    fn()  # warm-up
    best = None
    for _ in range(windows):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds / windows:
                break
        if best is None or calls / dt > best[1] / best[0]:
            best = (dt, calls)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="images per batch for the batched pipeline")
    ap.add_argument("--gpu", "--large", action="store_true",
                    help="accepted for `make bench BENCH_ARGS=--gpu`; the data benchmark has one setting "
                         "(FER2013-sized) and measures the CPU pipelines")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timing window per measurement")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both pipelines (on a shared 2-core machine 2 OpenMP threads "
                         "stall each other; 1 was fastest for both here)")
    ap.add_argument("--out", default=None, help="default benchmarks/results/data.json (data-gpu.json with --gpu)")
    args = ap.parse_args()
    args.out = args.out or str(Path(__file__).parent / "results" / f"data{'-gpu' if args.gpu else ''}.json")
    torch.set_num_threads(args.threads)
    from PIL import Image

    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "fer2013.csv"
        t0 = time.perf_counter()
        write_fer_csv(csv)
        print(f"wrote {csv.stat().st_size / 1e6:.0f} MB FER2013-sized csv in {time.perf_counter() - t0:.1f} s",
              flush=True)
        t0 = time.perf_counter()
        parsed = parse_fer_csv(csv)
        res["parse_only_s"] = time.perf_counter() - t0
        assert parsed["x"].shape == (FER_ROWS, 48, 48)
        del parsed
        cache = tmp / "cache"
        t0 = time.perf_counter()
        ds = load_dataset(csv, cache_dir=cache)
        res["cold_load_s"] = time.perf_counter() - t0  # hash + parse + cache write
        reloads = []
        for _ in range(3):
            t0 = time.perf_counter()
            again = load_dataset(csv, cache_dir=cache)
            reloads.append(time.perf_counter() - t0)
        assert again.info["cache"] == "hit" and torch.equal(again.train.x, ds.train.x)
        res["cached_reload_s"] = min(reloads)
        res["csv_mb"] = round(csv.stat().st_size / 1e6, 1)

    x = ds.train.x[:4096]
    y = ds.train.y[:4096]
    g = torch.Generator().manual_seed(0)
    # Reference: one image at a time from uint8 array -> PIL -> transform, as the paper's Dataset does.
    ref = reference_transform()
    n_ref = 64
    arr = x[:n_ref].numpy()

    def run_ref():
        for i in range(n_ref):
            ref(Image.fromarray(arr[i]))

    secs, calls = timed(run_ref, args.seconds)
    res["reference_img_per_s"] = n_ref * calls / secs
    b = args.batch
    state = {"i": 0}

    def next_batch():
        i = state["i"]
        state["i"] = (i + b) % (len(x) - b)
        return x[i:i + b], y[i:i + b]

    secs, calls = timed(lambda: train_crops_all(*next_batch(), generator=g), args.seconds)
    res["batched_tencrop_img_per_s"] = b * calls / secs
    secs, calls = timed(lambda: augment_batch(next_batch()[0], g), args.seconds)
    res["batched_onecrop_img_per_s"] = b * calls / secs
    res["speedup_tencrop"] = res["batched_tencrop_img_per_s"] / res["reference_img_per_s"]
    # crops per second: one crop per image in the batched mode vs ten per image in the reference
    res["speedup_crops_onecrop_vs_reference"] = res["batched_onecrop_img_per_s"] / (10 * res["reference_img_per_s"])

    out = {
        "benchmark": "data",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs ({cpu_model()}), no GPU, "
                   f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} at the end",
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "rows": FER_ROWS, "batch": b,
        "targets": {"parse_s": 5.0, "cached_reload_s": 0.5, "speedup_tencrop": 20.0},
        **{k: round(v, 3) for k, v in res.items()},
    }
    atomic_write_json(args.out, out)
    rows = [
        ("parse 35,887-row fer2013.csv", f"{res['parse_only_s']:.2f} s", "< 5 s"),
        ("cold load (hash + parse + cache)", f"{res['cold_load_s']:.2f} s", ""),
        ("cached reload", f"{res['cached_reload_s']:.3f} s", "< 0.5 s"),
        ("per-sample PIL/torchvision, 10 crops", f"{res['reference_img_per_s']:,.0f} img/s", ""),
        ("batched fernas.augment, 10 crops", f"{res['batched_tencrop_img_per_s']:,.0f} img/s",
         f"x{res['speedup_tencrop']:.1f} (>= x20)"),
        ("batched fernas.augment, 1 crop", f"{res['batched_onecrop_img_per_s']:,.0f} img/s",
         f"x{res['speedup_crops_onecrop_vs_reference']:.1f} crops/s"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)}  {'result':>14}  target/ratio")
    for r in rows:
        print(f"{r[0].ljust(w)}  {r[1]:>14}  {r[2]}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
