"""How hard is the built-in demo data? Linear model vs tiny CNN vs a small VGG-like CNN.

The demo faces (fernas/demo_faces.py) must separate architectures the way FER2013 does:
a linear model well below a tiny CNN, the tiny CNN well below a good CNN, none at 100 %.
Each model is trained with a plain torch loop on the default demo splits with fernas'
batched VGG-paper augmentation (seeds 000/002), Adam, for a few epochs, and tested with
ten-crop averaging. Writes benchmarks/results/demo_difficulty.json and prints a table.

    .venv/bin/python benchmarks/demo_difficulty.py [--epochs 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fernas.augment import augment_batch, center_crop, ten_crop  # noqa: E402
from fernas.demo_faces import DEFAULT_SIZES, make_demo  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(40 * 40, 7))


def tiny_cnn() -> nn.Module:
    # Two 3x3 conv layers of 8 and 16 channels, then a linear layer on the 10x10 map.
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 10 * 10, 7))


def good_cnn() -> nn.Module:
    # VGG-like, as in seeds 000/002 but narrow: 4 stages (conv-BN-ReLU, max-pool), 32..256 channels.
    layers, c_in = [], 1
    for c in (32, 64, 128, 256):  # one conv per stage keeps it at ~22M multiply-adds per crop
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.3), nn.Linear(256 * 2 * 2, 256), nn.ReLU(),
                         nn.Linear(256, 7))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tta: bool) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 500):
        xb = x[i:i + 500]
        if tta:
            crops = ten_crop(xb)  # (B, 10, 1, 40, 40)
            logits = model(crops.flatten(0, 1)).view(len(xb), 10, -1).softmax(-1).mean(1)
        else:
            logits = model(center_crop(xb))
        correct += int((logits.argmax(1) == y[i:i + 500]).sum())
    return correct / len(y)


def train(name: str, model: nn.Module, data, epochs: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(data.train) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x, y = data.train.x, data.train.y
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            xb = augment_batch(x[idx], g)  # (64, 1, 40, 40)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    secs = time.perf_counter() - t0
    res = dict(model=name, params=sum(p.numel() for p in model.parameters()), epochs=epochs, lr=lr,
               train_seconds=round(secs, 1),
               train_acc=round(accuracy(model, x[:1000], y[:1000], False), 4),
               val_acc=round(accuracy(model, data.val.x, data.val.y, False), 4),
               test_acc_tencrop=round(accuracy(model, data.test.x, data.test.y, True), 4))
    print(f"{name:10s} {res['params']:>9,d} params  {epochs:3d} ep  {secs:6.1f} s  "
          f"val {res['val_acc']:.3f}  test(10-crop) {res['test_acc_tencrop']:.3f}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="linear,tiny,good")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "demo_difficulty.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = make_demo(seed=args.seed)
    gen_s = time.perf_counter() - t0
    print(f"demo data {DEFAULT_SIZES} generated in {gen_s:.1f} s", flush=True)
    makers = {"linear": (linear, 3e-3), "tiny": (tiny_cnn, 3e-3), "good": (good_cnn, 2e-3)}
    results = [train(m, makers[m][0](), data, args.epochs, makers[m][1], args.seed) for m in args.models.split(",")]
    atomic_write_json(args.out, dict(
        benchmark="demo_difficulty", date=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=f"{platform.machine()} {os.cpu_count()} CPUs, torch threads {args.threads}, no GPU",
        torch=torch.__version__, demo_sizes=list(DEFAULT_SIZES), demo_generate_seconds=round(gen_s, 2),
        augmentation="vgg (fernas.augment.augment_batch)", results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
