"""The training recipe's optimizers and learning-rate schedulers, as two registries.

A genome's `train` section names one of each (genes `optimizer` and `scheduler` in
`fernas.genome`); the registries here turn the names into torch objects, one entry per name
(timm's `OptimInfo` habit), so adding one is one entry.  The defaults are those of the VGG
paper's protocol (seeds 000/002, Khaireddin & Chen): momentum 0.9, weight decay 1e-4, and
reduce-on-plateau by 0.75 when validation accuracy has not improved for 5 epochs.

Choices where the papers only say "grid search": cosine_wr restarts after
max(1, epochs // 30) epochs with doubling periods (10, 20, 40, ... at 300 epochs); step
halves the rate every max(1, epochs // 10) epochs; onecycle peaks at the genome's lr and
cycles momentum only for optimizers that have one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

MOMENTUM = 0.9  # "a fixed momentum of 0.9"
WEIGHT_DECAY = 1e-4  # "a weight decay of 0.0001"
PLATEAU_FACTOR = 0.75  # "reduced by a factor of 0.75 if the validation accuracy plateaus"
PLATEAU_PATIENCE = 5  # "... for 5 epochs"


@dataclass(frozen=True)
class OptimInfo:
    """How one optimizer name is built: its class, fixed keyword arguments, and whether it
    takes the recipe's momentum."""

    name: str
    opt_class: type
    kwargs: dict = field(default_factory=dict)
    takes_momentum: bool = False
    # On CUDA: one fused kernel for the whole update where torch has one; the capturable form
    # where the default reads the step count back with .item() once per parameter per step.
    cuda_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SchedInfo:
    """How one scheduler name is built.  `build(opt, cfg, epochs, steps_per_epoch)`;
    per_step: stepped after every optimizer step (so short search trials still see the whole
    curve), else once per epoch on validation accuracy."""

    name: str
    build: Callable
    per_step: bool = True


_OPTIMIZERS = [
    OptimInfo("sgd", torch.optim.SGD, takes_momentum=True, cuda_kwargs={"fused": True}),
    OptimInfo("nesterov", torch.optim.SGD, {"nesterov": True}, takes_momentum=True, cuda_kwargs={"fused": True}),
    OptimInfo("asgd", torch.optim.ASGD, cuda_kwargs={"capturable": True}),
    OptimInfo("adam", torch.optim.Adam, cuda_kwargs={"fused": True}),
    OptimInfo("amsgrad", torch.optim.Adam, {"amsgrad": True}, cuda_kwargs={"fused": True}),
    OptimInfo("adadelta", torch.optim.Adadelta, cuda_kwargs={"capturable": True}),
    OptimInfo("adagrad", torch.optim.Adagrad, cuda_kwargs={"fused": True}),
    OptimInfo("adamw", torch.optim.AdamW, cuda_kwargs={"fused": True}),
]
DEVICE_FLAGS = ("fused", "capturable")  # optimizer flags that depend on the device, not the recipe
OPTIMIZER_INFO = {o.name: o for o in _OPTIMIZERS}
OPTIMIZERS = tuple(OPTIMIZER_INFO)  # the same names, in the same order, as fernas.genome.OPTIMIZERS


class _Constant:
    """A picklable constant multiplier for LambdaLR (a lambda would not survive a checkpoint)."""

    def __call__(self, step: int) -> float:
        return 1.0


def _total(epochs: int, steps_per_epoch: int) -> int:
    return max(1, epochs * steps_per_epoch)


def _constant(opt, cfg, epochs, spe):
    return torch.optim.lr_scheduler.LambdaLR(opt, _Constant())


def _plateau(opt, cfg, epochs, spe):
    # mode max: stepped on validation accuracy, as the seeds do
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=float(cfg.get("plateau_factor", PLATEAU_FACTOR)),
        patience=int(cfg.get("plateau_patience", PLATEAU_PATIENCE)))


def _cosine(opt, cfg, epochs, spe):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=_total(epochs, spe))


def _cosine_wr(opt, cfg, epochs, spe):
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=max(1, epochs // 30) * max(1, spe), T_mult=2)


def _onecycle(opt, cfg, epochs, spe):
    cycle = "momentum" in opt.defaults or "betas" in opt.defaults
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=_total(epochs, spe), cycle_momentum=cycle)


def _step(opt, cfg, epochs, spe):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, epochs // 10) * max(1, spe), gamma=0.5)


_SCHEDULERS = [
    SchedInfo("constant", _constant),
    SchedInfo("plateau", _plateau, per_step=False),
    SchedInfo("cosine", _cosine),
    SchedInfo("cosine_wr", _cosine_wr),
    SchedInfo("onecycle", _onecycle),
    SchedInfo("step", _step),
]
SCHEDULER_INFO = {s.name: s for s in _SCHEDULERS}
SCHEDULERS = tuple(SCHEDULER_INFO)  # the same names, in the same order, as fernas.genome.SCHEDULERS


def make_optimizer(params, train_cfg: dict) -> torch.optim.Optimizer:
    """The recipe's optimizer with the seeds' momentum 0.9 and weight decay 1e-4 as defaults."""
    name = train_cfg.get("optimizer", "nesterov")
    info = OPTIMIZER_INFO.get(name)
    if info is None:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    kw = {"lr": float(train_cfg.get("lr", 0.01)),
          "weight_decay": float(train_cfg.get("weight_decay", WEIGHT_DECAY)), **info.kwargs,
          **device_flags(name, bool(params) and params[0].is_cuda)}
    if info.takes_momentum:
        kw["momentum"] = float(train_cfg.get("momentum", MOMENTUM))
    return info.opt_class(params, **kw)


def device_flags(name: str, cuda: bool) -> dict:
    """The optimizer's device-dependent flags (DEVICE_FLAGS) for parameters on CUDA or not."""
    extra = OPTIMIZER_INFO[name].cuda_kwargs
    return {k: bool(cuda and extra.get(k, False)) for k in DEVICE_FLAGS if k in extra}


def with_device_flags(state: dict, name: str, cuda: bool) -> dict:
    """An optimizer state dict with this device's flags in its groups, for `load_state_dict`:
    torch places the step counters by the loaded groups' flags, so a checkpoint written on a GPU
    resumes on a CPU and the reverse."""
    flags = device_flags(name, cuda)
    return {**state, "param_groups": [{**g, **flags} for g in state["param_groups"]]}


def make_scheduler(opt: torch.optim.Optimizer, train_cfg: dict, epochs: int, steps_per_epoch: int):
    """The recipe's scheduler: `(scheduler, per_step)`.  per_step schedulers are stepped after
    every optimizer step; `plateau` once per epoch with the validation accuracy."""
    name = train_cfg.get("scheduler", "plateau")
    info = SCHEDULER_INFO.get(name)
    if info is None:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    return info.build(opt, train_cfg, epochs, steps_per_epoch), info.per_step
