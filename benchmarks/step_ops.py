"""Operators per training step: what a short trial pays in kernel launches on a GPU.

A search trial of a small genome is launch-bound on a GPU: each optimizer step dispatches one
to three hundred tensor operators, each a kernel launch of several microseconds, around little
arithmetic (about 6.5 GFLOP for the MobileNetV2-style seed at batch 32). This counts, for every seed design and both augmentations a user meets (none, the
search's trial recipe; vgg, decode's protocol), the aten operators one step of
`fernas.train`'s loop dispatches, split by part:

* augmentation: `_inputs` (indexing the batch, `fernas.augment`, channels_last);
* model: forward, loss and backward, in fp32 and under bf16 autocast (as GPUs train: its
  casts of weights, input and gradients come every step);
* optimizer: `opt.step()` as this device builds it, and in the form CUDA builds it (fused
  where torch has a fused kernel, else foreach), which CPU tensors accept too;
* step_cuda_form: the step as a GPU trains it (bf16 autocast, CUDA's optimizer form);
* bookkeeping: the rest of the step (running loss, accuracy).

Operators are counted with a TorchDispatchMode below autograd, so backward's are included.
"compute" excludes views (slice, unsqueeze, detach, ...), which launch no kernel. Counts depend
on the code and the genome, not on the machine's speed: a CPU count of a step in its CUDA form
is what a GPU step dispatches, give or take cuDNN's own operator names. Results go to
benchmarks/results/step_ops.json (`--gpu`: counted on the GPU, step_ops-gpu.json).

    python benchmarks/step_ops.py
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

# Operators that allocate or alias without a kernel of their own.
NO_KERNEL = {"aten.detach", "aten.lift_fresh", "aten.empty", "aten.empty_like"}


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched inside `with OpCounter() as n:`: `n.counts` by name,
    `n.compute` those that can launch a kernel (views and allocations apart), `n.views` the rest."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()
        self.compute = self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.counts[name] += 1
        if func.is_view or name in NO_KERNEL:
            self.views += 1
        else:
            self.compute += 1
        return func(*args, **(kwargs or {}))


def _count(fn) -> int:
    with OpCounter() as n:
        fn()
    return n.compute


def _cuda_form(opt: torch.optim.Optimizer, name: str) -> torch.optim.Optimizer:
    """The same optimizer over the same parameters in the form CUDA builds (fernas.recipe):
    fused where torch has a fused kernel; on CPU tensors the capturable ones as foreach
    (capturable itself refuses them)."""
    from fernas.recipe import OPTIMIZER_INFO, device_flags

    params = [p for g in opt.param_groups for p in g["params"]]
    takes = inspect.signature(type(opt).__init__).parameters  # AdamW keeps a default it does not take
    kw = {k: v for k, v in opt.defaults.items() if k in takes and k not in ("fused", "foreach", "capturable")}
    if params[0].is_cuda:
        form = device_flags(name, True)
    else:
        form = {"fused": True} if OPTIMIZER_INFO[name].cuda_kwargs.get("fused") else {"foreach": True}
    return type(opt)(params, **kw, **form)


def trainer_run(doc: dict, augment: str, device: torch.device, steps: int, amp: bool | None = False,
                batch: int = 32):
    """The trainer's state for epochs of `steps` steps of `doc` on demo faces (amp None: the
    device's default, bf16 autocast on GPUs)."""
    from fernas import train as T
    from fernas.demo_faces import make_demo

    cfg = T.TrainConfig(epochs=1, augment=augment, device=device, amp=amp, batch_size=batch,
                        check_every=10**6, max_steps_per_epoch=steps)  # one finiteness check per epoch
    return T._setup(doc, make_demo(batch * steps, 16, 16).to(device), cfg, None, None)


def epoch_seconds(run) -> float:
    """Wall seconds of one epoch of the trainer's loop (it ends with a read-back: the device's
    queue has drained)."""
    from fernas import train as T

    if run.dev.type == "cuda":
        torch.cuda.synchronize(run.dev)
    t0 = time.perf_counter()
    T._train_epoch(run, 0, t0, False)
    return time.perf_counter() - t0


def step_seconds(doc: dict, augment: str, device: torch.device, steps: int = 50) -> float:
    """Wall seconds of one training step of `doc` at batch 32 (bf16 autocast where the device
    has it, as trials train), the best of three epochs of `steps` steps after a warm-up one."""
    run = trainer_run(doc, augment, device, steps, amp=None)
    epoch_seconds(run)  # warm-up: cuDNN's choice, the augmentation's constants
    return min(epoch_seconds(run) for _ in range(3)) / steps


def step_ops(doc: dict, augment: str, device: torch.device) -> dict:
    """The operators of one training step of genome `doc`, by part (see the module docstring)."""
    from fernas import train as T
    from fernas.device import amp_context

    # One step is the difference of a 4-step and a 2-step epoch (what each epoch does once cancels).
    epochs = []
    for steps in (2, 4):
        run = trainer_run(doc, augment, device, steps)
        T._train_epoch(run, 0, time.perf_counter(), False)  # builds the cached constants first
        epochs.append(_count(lambda: T._train_epoch(run, 0, time.perf_counter(), False)))
    step = (epochs[1] - epochs[0]) / 2
    idx = torch.arange(run.batch, device=device)
    inputs, yb, _ = T._inputs(run, idx, {})
    augmentation = _count(lambda: T._inputs(run, idx, {}))

    def forward_backward(amp: bool):  # as in the loop: the gradients were set to None first
        run.opt.zero_grad(set_to_none=True)
        with amp_context(device, amp):
            logits = run.model(inputs)
        F.cross_entropy(logits.float(), yb).backward()

    model = _count(lambda: forward_backward(False))
    forward_backward(True)
    model_autocast = _count(lambda: forward_backward(True))  # as GPUs train: every weight cast, every step
    optimizer = _count(run.opt.step)
    cuda_opt = _cuda_form(run.opt, run.opt_name)
    cuda_opt.step()  # state (momentum buffers) exists from the first step on
    optimizer_cuda_form = _count(cuda_opt.step)
    params = sum(1 for g in run.opt.param_groups for _ in g["params"])
    return {"step": step, "augmentation": augmentation, "model": model, "optimizer": optimizer,
            "bookkeeping": step - augmentation - model - optimizer,
            "model_bf16_autocast": model_autocast, "optimizer_cuda_form": optimizer_cuda_form,
            "step_cuda_form": step - model - optimizer + model_autocast + optimizer_cuda_form,
            "optimizer_name": run.opt_name, "parameter_tensors": params}


def commit() -> str | None:
    """The checked-out commit, short; None outside a git checkout."""
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:  # no git on this machine
        return None
    return res.stdout.strip() or None


def main() -> int:
    from fernas.genome import load_genome
    from fernas.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true", help="count on the GPU (step_ops-gpu.json)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if args.gpu else "cpu")
    out = args.out or ROOT / "benchmarks" / "results" / ("step_ops-gpu.json" if args.gpu else "step_ops.json")
    rows = {}
    for path in sorted((ROOT / "genomes").glob("*.json")):
        for augment in ("none", "vgg"):
            got = step_ops(load_genome(path), augment, device)
            rows[f"{path.stem}/{augment}"] = got
            print(f"{path.stem:24s} augment {augment:4s}  step {got['step']:5.0f} compute ops "
                  f"(augmentation {got['augmentation']}, model {got['model']}, optimizer {got['optimizer']}, "
                  f"bookkeeping {got['bookkeeping']:.0f}); as a GPU trains (bf16, "
                  f"{got['optimizer_cuda_form']}-operator optimizer) {got['step_cuda_form']:.0f}")
    atomic_write_json(out, {"benchmark": "step_ops", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "device": str(device), "torch": torch.__version__, "commit": commit(),
                            "counts": "aten operators per optimizer step that can launch a kernel "
                                      "(views and allocations apart), batch 32",
                            "steps": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
