"""The trainer: one function trains a decoded genome on a dataset, configured by one dataclass.

It serves the search's short trials and the full protocol of the VGG paper (seeds 000/002,
Khaireddin & Chen): cross-entropy, the genome's optimizer and scheduler (`fernas.recipe`), one
random 40x40 crop or the ten crops of each augmented image, validation every epoch, best
weights kept.  The hot loop follows the fast public trainers (airbench): the split lives on
the device as uint8, one seeded device generator drives shuffling and batched augmentation,
channels_last, bf16 autocast where the hardware has it (`fernas.device`), no per-sample Python,
few device syncs.  A non-finite loss raises `TrainingDiverged`.  With a `checkpoint_path` every
epoch writes everything needed to continue (`resume=True`): on CPU the resumed history equals
the uninterrupted one, which is also how the search's promotions continue a trial.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fernas.dataset import CROP_SIZE, Dataset
from fernas.device import amp_context, check_interval, default_amp, eval_batch_size, resolve_device
from fernas.errors import RunDirError, TrainingDiverged, UserError
from fernas.train_checkpoint import CHECKPOINT_VERSION, load_checkpoint, rng_states, set_rng_states
from fernas.evaluate import evaluate_split
from fernas.io import atomic_torch_save
from fernas.recipe import make_optimizer, make_scheduler, with_device_flags
from fernas.runinfo import fmt_duration



@dataclass
class TrainConfig:
    """How to train: the budget, the data pipeline, the device and the recipe overrides."""

    # Passes over the training split.  No default suits both a search trial (a few epochs)
    # and the paper's protocol (300), so every caller says.  Schedules span all of them.
    epochs: int
    # Stop after this epoch of the `epochs`-long schedule (None: run them all).  A later call
    # with the checkpoint and resume=True continues the same curve: the search's promotions.
    stop_after_epoch: int | None = None
    # Seeds python, numpy and torch (initialisation, dropout) and the device generator that
    # drives shuffling and augmentation: one number reproduces a CPU run bit for bit.
    seed: int = 0
    # "auto" takes the GPU when there is one; "cpu", "cuda", "cuda:1" or a torch.device.
    device: str | torch.device = "auto"
    # 1: one random 40x40 crop per augmented image (ten times cheaper, the search's budget);
    # 10: its four corners, centre and their mirrors, as the VGG paper's code trains.
    train_crops: int = 1
    # "vgg": the VGG paper's augmentation (seeds 000/002); "mild" (seeds 001/004); "none".
    augment: str = "vgg"
    # Epochs over which the augmentation's probabilities rise linearly from 0 (epoch 1: the
    # random crop and the mirror alone) to the preset's (`augment.warmup_overrides`); 0: the
    # preset from the first step.  Strongly regularised genomes can sit at chance for tens of
    # epochs under the full augmentation from scratch, and leave it at a random epoch.
    augment_warmup: int = 0
    # 1: centre crop, cheap for search trials; 10: ten-crop, the test's own protocol.
    val_crops: int = 1
    # "best": keep the weights of the best validation epoch (the seeds' habit); "last": the
    # final ones, for training on train+val where validation accuracy says nothing.
    select: str = "best"
    # bf16 autocast; None: where the hardware computes bf16 natively (fernas.device.default_amp).
    amp: bool | None = None
    # Crops per evaluation forward pass; None: fernas.device.eval_batch_size (512 on CPU; on a GPU
    # sized from the genome's largest activation and the memory the process may take).
    eval_batch: int | None = None
    # Cap on optimizer steps per epoch, for short search trials; None or 0: whole epochs.
    max_steps_per_epoch: int | None = None
    # Steps between finiteness checks (each syncs the device); None: fernas.device.check_interval.
    check_every: int | None = None
    # Seconds between per-epoch checkpoints (the last epoch always writes): a VGG checkpoint
    # is ~360 MB, a large share of a 2-3 s GPU epoch.  0: every epoch.
    checkpoint_min_interval_s: float = 0.0
    # Label of the history records and checkpoints: "train", or "finetune" for the second phase.
    phase: str = "train"
    # Overrides of the genome's recipe; None keeps the genome's own (fine-tuning sets lr 1e-4
    # and cosine; benchmarks fix optimizer and batch size).
    lr: float | None = None
    scheduler: str | None = None
    optimizer: str | None = None
    batch_size: int | None = None

    def __post_init__(self):
        if self.train_crops not in (1, 10):
            raise ValueError(f"train_crops must be 1 or 10, got {self.train_crops}")
        if self.select not in ("best", "last"):
            raise ValueError(f"select must be 'best' or 'last', got {self.select!r}")
        if self.augment_warmup < 0:
            raise ValueError(f"augment_warmup must be >= 0 epochs, got {self.augment_warmup}")


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


@dataclass
class _Run:
    """What one call of `train_genome` works with, passed between the loop's functions."""

    cfg: TrainConfig
    dev: torch.device
    amp: bool
    select: str
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    per_step: bool  # scheduler stepped per optimizer step (else per epoch on val accuracy)
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    train: tuple  # x (N, 48, 48) uint8, y (N,) int64, soft (N, C) float or None; on the device
    val: tuple  # x (M, 48, 48) uint8, y (M,) int64; on the device
    steps_per_epoch: int
    batch: int
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"acc": -1.0, "epoch": 0, "state": None})
    start_epoch: int = 0
    steps: int = 0
    opt_name: str = "nesterov"  # the recipe's optimizer (its device flags are reset on resume)
    doc: dict | None = None  # the genome: sizes the validation batch from its largest activation
    inputs: int = 0


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def _recipe(doc: dict, cfg: TrainConfig) -> dict:
    """The genome's `train` section with the config's overrides applied."""
    overrides = {"lr": None if cfg.lr is None else float(cfg.lr), "scheduler": cfg.scheduler,
                 "optimizer": cfg.optimizer, "batch_size": None if cfg.batch_size is None else int(cfg.batch_size)}
    return {**doc.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(run: _Run, doc: dict, path, epoch: int) -> None:
    """Everything `_restore` needs to continue after `epoch` (1-based) as if never stopped."""
    cfg = run.cfg
    atomic_torch_save({
        "fernas_checkpoint": CHECKPOINT_VERSION, "phase": cfg.phase, "epochs": cfg.epochs,
        "epoch": epoch, "done": epoch == cfg.epochs, "genome": doc,
        "config": {**asdict(cfg), "device": str(cfg.device)},
        "model": _cpu_state(run.model), "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(), "scaler": run.scaler.state_dict(),
        "rng": rng_states(run.gen), "history": run.history, "best_val_acc": run.best["acc"],
        "best_epoch": run.best["epoch"], "best_state": run.best["state"]}, path)


def _restore(run: _Run, path) -> None:
    """Load a checkpoint of the same phase and budget into `run`."""
    cfg = run.cfg
    ck = load_checkpoint(path)
    if ck.get("phase") != cfg.phase or ck.get("epochs") != cfg.epochs:
        raise RunDirError(f"{path}: checkpoint is for phase {ck.get('phase')!r} with "
                          f"{ck.get('epochs')} epochs, not {cfg.phase!r} with {cfg.epochs}")
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(with_device_flags(ck["optimizer"], run.opt_name, run.dev.type == "cuda"))
    run.sched.load_state_dict(ck["scheduler"])
    run.scaler.load_state_dict(ck["scaler"])
    note = set_rng_states(ck["rng"], run.gen, reseed=cfg.seed * 1_000_003 + int(ck["epoch"]))
    if note:
        print(f"{path}: {note}", file=sys.stderr, flush=True)
    run.history = list(ck["history"])
    run.best = {"acc": ck["best_val_acc"], "epoch": ck["best_epoch"], "state": ck["best_state"]}
    run.start_epoch = int(ck["epoch"])


# --------------------------------------------------------------------------- set-up


def _setup(doc: dict, data: Dataset, cfg: TrainConfig, model: nn.Module | None,
           init_state: dict | None) -> _Run:
    """Device, seeded model, data on the device, optimizer, scheduler and generator."""
    from fernas.model import build_model

    dev = resolve_device(cfg.device)
    recipe = _recipe(doc, cfg)
    bs = int(recipe.get("batch_size", 64))
    seed_everything(cfg.seed)
    if model is None:
        model = build_model(doc, input_size=CROP_SIZE, num_classes=data.num_classes)
    model = model.to(dev).to(memory_format=torch.channels_last)
    if init_state is not None:
        model.load_state_dict(init_state)
    # The whole split on the device as uint8: (N, 48, 48), 2.3 KB per image.
    soft = None if data.train.soft is None else data.train.soft.to(dev).float()
    train = (data.train.x.to(dev), data.train.y.to(dev), soft)
    val = (data.val.x.to(dev), data.val.y.to(dev))
    if dev.type == "cuda":
        # Fixed input shapes: let cuDNN pick the fastest kernels once (GPU runs need not be
        # bit-reproducible; CPU runs are).
        torch.backends.cudnn.benchmark = True
    n = len(data.train)
    if n == 0:
        raise UserError("the training split is empty")
    steps_per_epoch = max(1, n // bs)  # the remainder is dropped; the shuffle changes every epoch
    if cfg.max_steps_per_epoch:
        steps_per_epoch = max(1, min(steps_per_epoch, int(cfg.max_steps_per_epoch)))
    opt = make_optimizer(model.parameters(), recipe)
    sched, per_step = make_scheduler(opt, recipe, cfg.epochs, steps_per_epoch)
    # bf16 has fp32's range, so no loss scaling; the scaler exists (disabled) so checkpoints
    # keep one shape and an fp16 path could switch it on.
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed * 1_000_003 + 17)
    return _Run(cfg=cfg, dev=dev, amp=default_amp(dev) if cfg.amp is None else bool(cfg.amp),
                select="last" if len(data.val) == 0 else cfg.select,  # nothing to select on
                model=model, opt=opt, sched=sched, per_step=per_step, scaler=scaler, gen=gen,
                train=train, val=val, steps_per_epoch=steps_per_epoch, batch=min(bs, n),
                opt_name=recipe.get("optimizer", "nesterov"),
                doc=doc)


# --------------------------------------------------------------------------- the loop


def augment_ramp(cfg: TrainConfig, epoch: int) -> dict[str, float]:
    """The augmentation overrides of 0-based `epoch`: epoch e of a warm-up of W epochs draws at
    e / W of the preset's probabilities; none after it (the preset itself)."""
    from fernas import augment as aug

    warm = cfg.augment_warmup
    return aug.warmup_overrides(cfg.augment, epoch / warm) if epoch < warm else {}


def _inputs(run: _Run, idx: torch.Tensor, ramp: dict[str, float]):
    """The augmented network inputs of one batch, with the epoch's `augment_ramp`: (B or 10B,
    1, 40, 40), labels, soft labels."""
    from fernas import augment as aug

    x, y, soft = run.train
    xb, yb = x[idx], y[idx]  # (B, 48, 48) uint8, (B,)
    sb = None if soft is None else soft[idx]
    if run.cfg.train_crops == 10:  # ten crops of each augmented image, as the VGG paper's code trains
        inputs, yb = aug.train_crops_all(xb, yb, generator=run.gen, strength=run.cfg.augment, **ramp)
        sb = None if sb is None else sb.repeat_interleave(inputs.shape[0] // sb.shape[0], dim=0)
    else:
        inputs = aug.augment_batch(xb, generator=run.gen, strength=run.cfg.augment, **ramp)
    return inputs.contiguous(memory_format=torch.channels_last), yb, sb


def _train_epoch(run: _Run, epoch: int, t0: float, progress: bool) -> tuple[float, float]:
    """One pass of optimizer steps; returns (train loss, train accuracy)."""
    run.model.train()
    x = run.train[0]
    perm = torch.randperm(x.shape[0], generator=run.gen, device=run.dev)
    # Every step's loss and correct count land in a device buffer: one copy each and no sync
    # per step.  Every step has the same number of inputs (the remainder is dropped), so the
    # epoch's loss is the buffer's mean.
    losses = torch.zeros(run.steps_per_epoch, device=run.dev)
    correct = torch.zeros(run.steps_per_epoch, device=run.dev, dtype=torch.long)
    every = run.cfg.check_every or check_interval(run.dev)
    ramp = augment_ramp(run.cfg, epoch)  # constant over the epoch
    seen = 0
    for step in range(run.steps_per_epoch):
        inputs, yb, sb = _inputs(run, perm[step * run.batch:(step + 1) * run.batch], ramp)
        with amp_context(run.dev, run.amp):
            logits = run.model(inputs)  # (B, C)
        logits = logits.float()
        loss = F.cross_entropy(logits, sb if sb is not None else yb)
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        if run.per_step:
            run.sched.step()
        losses[step] = loss.detach()
        correct[step] = (logits.detach().argmax(1) == yb).sum()
        seen += yb.shape[0]
        if (step + 1) % every == 0 or step + 1 == run.steps_per_epoch:
            _check_finite(run, losses[:step + 1], epoch, seen, t0, progress)
    run.steps += run.steps_per_epoch
    run.inputs += seen
    return float(losses.mean()), float(correct.sum()) / seen


def _check_finite(run: _Run, losses: torch.Tensor, epoch: int, seen: int, t0: float, progress: bool) -> None:
    """Raise TrainingDiverged at the first non-finite loss of the epoch's `losses` (one per step
    so far); else refresh the progress line."""
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise TrainingDiverged(f"loss became {float(losses[first]):.3g} at epoch {epoch + 1} "
                               f"step {first + 1} (lr {_current_lr(run.opt):.3g})")
    if progress and sys.stderr.isatty():
        el = time.perf_counter() - t0
        print(f"\r  [{run.cfg.phase}] epoch {epoch + 1}/{run.cfg.epochs} step {len(losses)}/{run.steps_per_epoch} "
              f"loss {float(losses.mean()):.4f} {seen / max(el, 1e-9):.0f} inputs/s",
              end="", file=sys.stderr, flush=True)


def _epoch(run: _Run, epoch: int, progress: bool) -> dict:
    """Train one epoch, validate, step a plateau scheduler, keep the selected weights."""
    cfg = run.cfg
    t0 = time.perf_counter()
    lr_epoch = _current_lr(run.opt)
    inputs_before = run.inputs
    train_loss, train_acc = _train_epoch(run, epoch, t0, progress)
    val_loss, val_acc = evaluate_split(run.model, *run.val, crops=cfg.val_crops, device=run.dev, amp=run.amp,
                                       batch_crops=cfg.eval_batch or eval_batch_size(run.dev, run.doc))
    if not run.per_step and math.isfinite(val_acc):
        run.sched.step(val_acc)  # ReduceLROnPlateau, mode max on validation accuracy
    if val_acc > run.best["acc"] if run.select == "best" else True:
        run.best = {"acc": val_acc, "epoch": epoch + 1, "state": _cpu_state(run.model)}
    record = {"phase": cfg.phase, "epoch": epoch + 1, "lr": lr_epoch, "train_loss": train_loss,
              "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
              "seconds": time.perf_counter() - t0, "inputs": run.inputs - inputs_before}
    run.history.append(record)
    return record


def _print_epoch(run: _Run, record: dict, t_call: float) -> None:
    epoch, epochs, best = record["epoch"], run.cfg.epochs, run.best
    last = min(epochs, run.cfg.stop_after_epoch or epochs)  # the ETA is to where this call stops
    eta = (time.perf_counter() - t_call) / (epoch - run.start_epoch) * (last - epoch)
    print(f"\r  [{run.cfg.phase}] epoch {epoch}/{epochs}  loss {record['train_loss']:.4f}  "
          f"acc {record['train_acc']:.4f}  val {record['val_acc']:.4f} (best {best['acc']:.4f} @{best['epoch']})  "
          f"lr {record['lr']:.3g}  {record['seconds']:.1f}s  ETA {fmt_duration(eta)}   ",
          file=sys.stderr, flush=True)


def train_genome(doc: dict, data: Dataset, cfg: TrainConfig, *, model: nn.Module | None = None,
                 init_state: dict | None = None, checkpoint_path=None, resume: bool = False,
                 on_epoch: Callable[[dict], Any] | None = None, progress: bool = False,
                 on_restore: Callable[[list[dict]], Any] | None = None) -> TrainResult:
    """Train `doc` on `data.train` as `cfg` says, validating on `data.val` after each epoch.

    model: a network to train instead of `build_model(doc)` (initialised by the caller);
    init_state: weights to start from; checkpoint_path/resume: write a checkpoint each epoch /
    continue from it; on_epoch: called with a copy of each epoch's history record; progress:
    a progress line on stderr; on_restore: called with a copy of the history a resume restored
    (the epochs trained before, which no on_epoch call repeats).  Raises TrainingDiverged on a
    non-finite loss, RunDirError for a bad resume checkpoint.
    """
    run = _setup(doc, data, cfg, model, init_state)
    if resume and checkpoint_path is not None:
        _restore(run, checkpoint_path)
        if on_restore is not None:
            on_restore([dict(r) for r in run.history])
    t_call = last_ck = time.perf_counter()
    last = min(cfg.epochs, cfg.stop_after_epoch or cfg.epochs)
    for epoch in range(run.start_epoch, last):
        record = _epoch(run, epoch, progress)
        due = time.perf_counter() - last_ck >= cfg.checkpoint_min_interval_s or epoch + 1 == last
        if checkpoint_path is not None and due:
            last_ck = time.perf_counter()
            _save_checkpoint(run, doc, checkpoint_path, epoch + 1)
        if progress:
            _print_epoch(run, record, t_call)
        if on_epoch is not None:
            on_epoch(dict(record))
    best = run.best
    if best["state"] is None:  # epochs == 0: the starting weights are the result
        best = {"acc": float("nan"), "epoch": 0, "state": _cpu_state(run.model)}
    run.model.load_state_dict(best["state"])
    run.model.eval()
    return TrainResult(history=run.history, best_val_acc=float(best["acc"]), best_epoch=int(best["epoch"]),
                       best_state=best["state"], model=run.model, train_seconds=time.perf_counter() - t_call,
                       device=str(run.dev), steps=run.steps, inputs=run.inputs)
