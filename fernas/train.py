"""The trainer: one function trains a decoded genome on a dataset for a budget of epochs.

It serves both the search's short trials and the full training protocol of the VGG paper
(seeds 000/002, Khaireddin & Chen): cross-entropy, momentum 0.9, weight decay 1e-4, the
genome's optimizer (sgd, nesterov, asgd, adam, amsgrad, adadelta, adagrad, adamw) and
scheduler (constant, plateau, cosine, cosine_wr, onecycle, step; plateau = reduce by 0.75
when validation accuracy has not improved for 5 epochs), training on one random 40x40
crop or on the ten crops of each augmented image, validation every epoch, best weights kept.

Speed is the search's speed, so the hot loop follows the fast public trainers (airbench):
the whole split lives on the device as uint8, one seeded device `torch.Generator` drives
shuffling and the batched augmentation of `fernas.augment`, inputs are channels_last,
autocast runs bf16 on CUDA (and on CPUs with native bf16, where it measured faster), evaluation runs under `inference_mode` with big batches, and
the loop never touches single samples from Python nor syncs the device more than needed.

A non-finite loss raises `TrainingDiverged` (the search turns it into a penalty). With a
`checkpoint_path` every epoch writes model, optimizer, scheduler, scaler, RNG states,
history and best weights atomically, so `resume=True` continues exactly where a run stopped
(on CPU with a fixed seed the resumed history equals the uninterrupted one).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fernas.dataset import Dataset
from fernas.errors import RunDirError, UserError
from fernas.evaluate import amp_context, crop_logits
from fernas.io import atomic_torch_save

# Defaults of seeds 000/002 where the genome's recipe does not say otherwise.
MOMENTUM = 0.9  # "a fixed momentum of 0.9"
WEIGHT_DECAY = 1e-4  # "a weight decay of 0.0001"
PLATEAU_FACTOR = 0.75  # "reduced by a factor of 0.75 if the validation accuracy plateaus"
PLATEAU_PATIENCE = 5  # "... for 5 epochs"
CHECKPOINT_VERSION = 1

OPTIMIZERS = ("sgd", "nesterov", "asgd", "adam", "amsgrad", "adadelta", "adagrad", "adamw")
SCHEDULERS = ("constant", "plateau", "cosine", "cosine_wr", "onecycle", "step")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names epoch, step and lr."""


@dataclass
class TrainResult:
    history: list[dict]  # one record per epoch (phase, epoch, lr, losses, accuracies, seconds)
    best_val_acc: float
    best_epoch: int  # 1-based epoch whose weights are in best_state
    best_state: dict  # state_dict of the selected weights, on CPU
    model: nn.Module  # the network with best_state loaded, on the training device, eval mode
    train_seconds: float  # wall time of the epochs run in this call (not counting resumed ones)
    device: str = "cpu"
    steps: int = 0  # optimizer steps run in this call
    inputs: int = 0  # network inputs (crops) trained on in this call
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- devices


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is a UserError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available here "
                            "(torch.cuda.is_available() is False); use --device cpu or auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    raise UserError(f"--device {name!r}: expected auto, cpu or cuda")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def default_amp(device: torch.device) -> bool:
    """Whether to autocast to bf16: on CUDA cards with native bf16; on CPU only with native bf16 units.

    Measured on the 2-core AMD EPYC (AVX512-BF16) this project develops on: bf16 autocast
    trained the MobileNetV2-style seed about 2x and the VGG about 3-6x faster than fp32
    (benchmarks/train.py prints both); without native bf16 the conversions cost more than
    they save, so fp32 stays.
    """
    if device.type == "cuda":
        # Ampere and newer; an older card (T4, V100) would emulate bf16 slowly: stay in fp32.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


# --------------------------------------------------------------------------- recipe


def make_optimizer(params, train_cfg: dict) -> torch.optim.Optimizer:
    """The genome's optimizer with the seeds' momentum 0.9 and weight decay 1e-4 as defaults."""
    name = train_cfg.get("optimizer", "nesterov")
    lr = float(train_cfg.get("lr", 0.01))
    wd = float(train_cfg.get("weight_decay", WEIGHT_DECAY))
    mom = float(train_cfg.get("momentum", MOMENTUM))
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd, nesterov=True)
    if name == "asgd":
        return torch.optim.ASGD(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, amsgrad=True)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


class _Constant:
    """A picklable constant multiplier for LambdaLR (a lambda would not survive a checkpoint)."""

    def __call__(self, step: int) -> float:
        return 1.0


def make_scheduler(opt: torch.optim.Optimizer, train_cfg: dict, epochs: int, steps_per_epoch: int):
    """The genome's scheduler.  Returns `(scheduler, per_step)`: per_step schedulers are
    stepped after every optimizer step (so short search trials still see the whole curve);
    `plateau` is stepped once per epoch on validation accuracy, the seeds' setting.

    Choices where the papers only say "grid search": cosine_wr restarts after
    max(1, epochs // 30) epochs with doubling periods (10, 20, 40, ... at 300 epochs);
    step halves the rate every max(1, epochs // 10) epochs; onecycle peaks at the genome's
    lr and cycles momentum only for optimizers that have one.
    """
    name = train_cfg.get("scheduler", "plateau")
    total = max(1, epochs * steps_per_epoch)
    spe = max(1, steps_per_epoch)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, _Constant()), True
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=float(train_cfg.get("plateau_factor", PLATEAU_FACTOR)),
            patience=int(train_cfg.get("plateau_patience", PLATEAU_PATIENCE))), False
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), True
    if name == "cosine_wr":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=max(1, epochs // 30) * spe, T_mult=2), True
    if name == "onecycle":
        cycle = "momentum" in opt.defaults or "betas" in opt.defaults
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total,
            cycle_momentum=cycle), True
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, epochs // 10) * spe, gamma=0.5), True
    raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


# --------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states(gen: torch.Generator) -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict, gen: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    gen.set_state(states["generator"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def load_checkpoint(path) -> dict:
    """Read a trainer checkpoint; a missing or corrupt file is a RunDirError (one line)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: no checkpoint to resume from")
    try:
        # Our own file: it holds RNG states (numpy arrays, python tuples), hence weights_only=False.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, random bytes, pickle errors
        raise RunDirError(f"{path}: checkpoint is corrupt or unreadable ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(ck, dict) or ck.get("fernas_checkpoint") != CHECKPOINT_VERSION:
        raise RunDirError(f"{path}: not a fernas training checkpoint")
    return ck


# --------------------------------------------------------------------------- trainer


def train_genome(doc: dict, data: Dataset, *, epochs: int, device="auto", seed: int = 0,
                 train_crops: int = 1, augment: str = "vgg", lr: float | None = None,
                 scheduler: str | None = None, init_state: dict | None = None,
                 checkpoint_path=None, resume: bool = False,
                 on_epoch: Callable[[dict], Any] | None = None,
                 max_steps_per_epoch: int | None = None, phase: str = "train",
                 progress: bool = False, optimizer: str | None = None,
                 batch_size: int | None = None, val_crops: int = 1, select: str = "best",
                 amp: bool | None = None, eval_batch: int | None = None,
                 model: nn.Module | None = None, check_every: int | None = None,
                 checkpoint_min_interval_s: float = 0.0) -> TrainResult:
    """Train `doc` on `data.train` for `epochs`, validating on `data.val` after each epoch.

    train_crops: 1 = one random 40x40 crop of each augmented image per step (fast);
        10 = the four corners, centre and their mirrors of each augmented image, as the
        VGG paper's code trains (ten times the work per epoch).
    lr / scheduler / optimizer / batch_size override the genome's recipe (fine-tuning uses
        lr=1e-4, scheduler="cosine").  init_state: weights to start from.
    val_crops: 1 (centre crop, cheap, for search trials) or 10 (ten-crop, as the test).
    select: "best" keeps the weights of the best validation epoch; "last" the final ones
        (for training on train+val, where validation accuracy says nothing).
    checkpoint_min_interval_s: write the per-epoch checkpoint only when this many seconds have
        passed since the last one (the last epoch always writes); a VGG checkpoint is ~360 MB,
        which on a GPU costs a large share of a 2-3 s epoch.  0 = every epoch.
    Raises TrainingDiverged on a non-finite loss, RunDirError for a bad resume checkpoint.
    """
    from fernas.augment import augment_batch  # the data engineer's batched augmentation
    from fernas.model import build_model

    if train_crops not in (1, 10):
        raise ValueError(f"train_crops must be 1 or 10, got {train_crops}")
    if select not in ("best", "last"):
        raise ValueError(f"select must be 'best' or 'last', got {select!r}")
    if len(data.val) == 0:
        select = "last"  # nothing to select on
    dev = resolve_device(device)
    use_amp = default_amp(dev) if amp is None else bool(amp)
    cfg = dict(doc.get("train", {}))
    if lr is not None:
        cfg["lr"] = float(lr)
    if scheduler is not None:
        cfg["scheduler"] = scheduler
    if optimizer is not None:
        cfg["optimizer"] = optimizer
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    bs = int(cfg.get("batch_size", 64))
    if eval_batch is None:
        eval_batch = 4096 if dev.type == "cuda" else 512  # crops per eval forward

    seed_everything(seed)
    if model is None:
        model = build_model(doc, input_size=40, num_classes=data.num_classes)
    model = model.to(dev).to(memory_format=torch.channels_last)
    if init_state is not None:
        model.load_state_dict(init_state)

    # The whole split on the device as uint8: (N, 48, 48), 2.3 KB per image.
    x_tr = data.train.x.to(dev)
    y_tr = data.train.y.to(dev)
    soft_tr = None if data.train.soft is None else data.train.soft.to(dev).float()
    x_val, y_val = data.val.x.to(dev), data.val.y.to(dev)
    if dev.type == "cuda":
        # Fixed input shapes: let cuDNN pick the fastest kernels once (GPU runs need not be
        # bit-reproducible; CPU runs are).
        torch.backends.cudnn.benchmark = True
    n = len(data.train)
    if n == 0:
        raise UserError("the training split is empty")
    steps_per_epoch = max(1, n // bs)  # the remainder is dropped; the shuffle changes every epoch
    if max_steps_per_epoch is not None:
        steps_per_epoch = max(1, min(steps_per_epoch, int(max_steps_per_epoch)))
    batch = min(bs, n)

    opt = make_optimizer(model.parameters(), cfg)
    sched, per_step = make_scheduler(opt, cfg, epochs, steps_per_epoch)
    # bf16 has fp32's range, so no loss scaling; the scaler exists (disabled) so checkpoints
    # keep one shape and an fp16 path could switch it on.
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed * 1_000_003 + 17)

    history: list[dict] = []
    best = {"acc": -1.0, "epoch": 0, "state": None}
    start_epoch = 0
    if resume and checkpoint_path is not None:
        ck = load_checkpoint(checkpoint_path)
        if ck.get("phase") != phase or ck.get("epochs") != epochs:
            raise RunDirError(f"{checkpoint_path}: checkpoint is for phase {ck.get('phase')!r} with "
                              f"{ck.get('epochs')} epochs, not {phase!r} with {epochs}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        _set_rng_states(ck["rng"], gen)
        history = list(ck["history"])
        best = {"acc": ck["best_val_acc"], "epoch": ck["best_epoch"], "state": ck["best_state"]}
        start_epoch = int(ck["epoch"])

    if check_every is None:
        # A finiteness check syncs the device: every step on CPU (free), every 25 on GPU.
        check_every = 1 if dev.type == "cpu" else 25
    t_call = last_ck = time.perf_counter()
    steps_run = inputs_run = 0

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        lr_epoch = _current_lr(opt)
        perm = torch.randperm(n, generator=gen, device=dev)
        loss_sum = torch.zeros((), device=dev)  # accumulated on the device: no sync per step
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        first_bad = torch.full((), -1, device=dev, dtype=torch.long)  # 1-based step of the first NaN/inf
        bad_val = torch.zeros((), device=dev)
        for step in range(steps_per_epoch):
            idx = perm[step * batch:(step + 1) * batch]
            xb, yb = x_tr[idx], y_tr[idx]
            sb = None if soft_tr is None else soft_tr[idx]
            if train_crops == 10:
                inputs, yb, sb = _ten_crop_train(xb, yb, sb, gen, augment)  # (10B, 1, 40, 40)
            else:
                inputs = augment_batch(xb, generator=gen, strength=augment)  # (B, 1, 40, 40)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            with amp_context(dev, use_amp):
                logits = model(inputs)  # (B, C)
            logits = logits.float()
            loss = F.cross_entropy(logits, sb if sb is not None else yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if per_step:
                sched.step()
            ld = loss.detach()
            newly_bad = (first_bad < 0) & ~torch.isfinite(ld)  # 0-d bool, stays on the device
            first_bad = torch.where(newly_bad, torch.full_like(first_bad, step + 1), first_bad)
            bad_val = torch.where(newly_bad, ld, bad_val)
            loss_sum += ld * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                bad = int(first_bad)
                if bad >= 0:
                    raise TrainingDiverged(f"loss became {float(bad_val):.3g} at epoch {epoch + 1} "
                                           f"step {bad} (lr {_current_lr(opt):.3g})")
                if progress and sys.stderr.isatty():
                    el = time.perf_counter() - t0
                    print(f"\r  [{phase}] epoch {epoch + 1}/{epochs} step {step + 1}/{steps_per_epoch} "
                          f"loss {float(loss_sum) / seen:.4f} {seen / max(el, 1e-9):.0f} inputs/s",
                          end="", file=sys.stderr, flush=True)
        steps_run += steps_per_epoch
        inputs_run += seen
        train_loss = float(loss_sum) / seen
        train_acc = float(correct) / seen

        val_loss, val_acc = evaluate_split(model, x_val, y_val, crops=val_crops,
                                           device=dev, amp=use_amp, batch_crops=eval_batch)
        if not per_step and math.isfinite(val_acc):
            sched.step(val_acc)  # ReduceLROnPlateau, mode max on validation accuracy
        improved = val_acc > best["acc"] if select == "best" else True
        if improved:
            best = {"acc": val_acc, "epoch": epoch + 1, "state": _cpu_state(model)}
        record = {"phase": phase, "epoch": epoch + 1, "lr": lr_epoch, "train_loss": train_loss,
                  "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        due = time.perf_counter() - last_ck >= checkpoint_min_interval_s or epoch + 1 == epochs
        if checkpoint_path is not None and due:
            last_ck = time.perf_counter()
            atomic_torch_save({
                "fernas_checkpoint": CHECKPOINT_VERSION, "phase": phase, "epochs": epochs,
                "epoch": epoch + 1, "done": epoch + 1 == epochs, "genome": doc,
                "model": _cpu_state(model), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "rng": _rng_states(gen), "history": history, "best_val_acc": best["acc"],
                "best_epoch": best["epoch"], "best_state": best["state"]}, checkpoint_path)
        if progress:
            done = epoch + 1 - start_epoch
            eta = (time.perf_counter() - t_call) / done * (epochs - epoch - 1)
            end = "\n"
            print(f"\r  [{phase}] epoch {epoch + 1}/{epochs}  loss {train_loss:.4f}  acc {train_acc:.4f}  "
                  f"val {val_acc:.4f} (best {best['acc']:.4f} @{best['epoch']})  lr {lr_epoch:.3g}  "
                  f"{record['seconds']:.1f}s  ETA {_fmt_eta(eta)}   ", end=end, file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(dict(record))

    if best["state"] is None:  # epochs == 0: the starting weights are the result
        best = {"acc": float("nan"), "epoch": 0, "state": _cpu_state(model)}
    model.load_state_dict(best["state"])
    model.eval()
    return TrainResult(history=history, best_val_acc=float(best["acc"]), best_epoch=int(best["epoch"]),
                       best_state=best["state"], model=model,
                       train_seconds=time.perf_counter() - t_call, device=str(dev),
                       steps=steps_run, inputs=inputs_run)


def _ten_crop_train(xb, yb, sb, gen, augment):
    """Ten crops of each augmented image, as the VGG paper's code trains.

    xb (B, 48, 48) uint8 -> inputs (10B, 1, 40, 40) float, labels repeated per crop.
    """
    from fernas import augment as aug

    inputs, y10 = aug.train_crops_all(xb, yb, generator=gen, strength=augment)
    s10 = None if sb is None else sb.repeat_interleave(inputs.shape[0] // sb.shape[0], dim=0)
    return inputs, y10, s10


@torch.inference_mode()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, crops: int = 1,
                   device=None, amp: bool = False, batch_crops: int = 512) -> tuple[float, float]:
    """(loss, accuracy) of `model` on uint8 images `x` (N, 48, 48) with labels `y` (N,)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    dev = device if device is not None else next(model.parameters()).device
    logits = crop_logits(model, x, crops=crops, device=dev, amp=amp, batch_crops=batch_crops)  # (N, C)
    y = y.to(logits.device)
    loss = float(F.cross_entropy(logits, y))
    acc = float((logits.argmax(1) == y).float().mean())
    return loss, acc
