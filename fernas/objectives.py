"""The registry of search objectives: what a genome can be judged by, and how each is measured.

Every part of the search that names objectives iterates over `OBJECTIVES`: the DEAP fitness
weights, `--objectives` and its help text, the trials table, the hall-of-fame files, the
Pareto table and plot.  Adding an objective is one `Objective` entry here plus its
`measure` function (called once per trial, on the freshly initialised model).

Accuracy is always the first objective (the single-objective GA and every "best" ranks by
it); a second one, a cost, turns the search into NSGA-II with a Pareto front.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Objective:
    name: str  # as --objectives spells it
    field: str  # key in a trial's outcome, column of trials.csv and pareto.csv
    weight: float  # DEAP weight: +1 maximise, -1 minimise
    # Score of a genome whose trial failed or was refused: below any trained network and above
    # any real cost, yet finite so NSGA-II's crowding distances stay finite.
    penalty: float
    label: str  # axis label and table heading
    how: str  # how it is measured, for --help and the docs
    # (model, summary, device) -> value, before training; None: the trainer's result (accuracy)
    measure: Callable | None = None


def measure_latency_ms(model, device, input_size: int = 40, budget_s: float = 0.3) -> float:
    """Fastest of repeated forward passes of one image (batch 1, fp32, eager), after warm-up.

    The minimum, not the median: neighbours on a shared card or CPU only ever add time.  On
    CUDA the time comes from CUDA events around the pass, with cuDNN's autotuning off while
    measuring (a worker's earlier training turns it on; every trial measures the same way)."""
    import torch

    x = torch.zeros(1, 1, input_size, input_size, device=device).contiguous(memory_format=torch.channels_last)
    was_training, bench = model.training, torch.backends.cudnn.benchmark
    model.eval()
    torch.backends.cudnn.benchmark = False
    times: list[float] = []
    try:
        with torch.inference_mode():
            for i in range(53):
                t = timed_seconds(lambda: model(x), device)
                if i >= 3:  # the first calls pay for allocation and kernel selection
                    times.append(t)
                if i >= 8 and sum(times) > budget_s:
                    break
    finally:
        model.train(was_training)
        torch.backends.cudnn.benchmark = bench
    return 1000.0 * min(times)


def timed_seconds(fn, device) -> float:
    """Seconds of one call of fn: between CUDA events on a GPU (the work it queued, not the
    launches), by the wall clock elsewhere."""
    import torch

    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


ACCURACY = Objective("accuracy", "val_acc", 1.0, 0.0, "validation accuracy (short trial)",
                     "validation accuracy at the end of a trial's budget (centre crop)")
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    ACCURACY,
    Objective("params", "params", -1.0, 1e12, "parameters", "trainable parameters of the network",
              lambda model, summary, device: summary["params"]),
    Objective("macs", "macs", -1.0, 1e15, "multiply-adds per image",
              "multiply-adds of one 40x40 image (from the model's build plan)",
              lambda model, summary, device: summary["macs"]),
    Objective("latency", "latency_ms", -1.0, 1e9, "latency (ms, batch 1)",
              "fastest of repeated batch-1 fp32 forward passes on the trial's device (CUDA events on a GPU, "
              "cuDNN autotuning off), in ms; on a card shared by several trials it still varies",
              lambda model, summary, device: measure_latency_ms(model, device)),
)}
COSTS = tuple(o for o in OBJECTIVES.values() if o.measure is not None)
FIELDS = tuple(o.field for o in OBJECTIVES.values())  # outcome fields every trial reports


def parse_objectives(text: str) -> tuple[str, ...]:
    """'accuracy' or 'accuracy,COST'; ValueError naming what was expected."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    for n in names:
        if n not in OBJECTIVES:
            raise ValueError(f"unknown objective {n!r} (expected {choices_text('or')})")
    if not names or names[0] != ACCURACY.name or len(names) > 2 or len(set(names)) != len(names):
        raise ValueError(f"objectives {text!r}: expected {' or '.join(usages())}")
    return names


def usages() -> list[str]:
    """The accepted --objectives values: accuracy alone, or accuracy with one cost."""
    return [ACCURACY.name] + [f"{ACCURACY.name},{o.name}" for o in COSTS]


def choices_text(last: str = "or") -> str:
    names = list(OBJECTIVES)
    return ", ".join(names[:-1]) + f" {last} {names[-1]}"


def weights(names: tuple[str, ...]) -> tuple[float, ...]:
    return tuple(OBJECTIVES[n].weight for n in names)


def help_text() -> str:
    return (" | ".join(usages()) + "; two objectives use NSGA-II and a Pareto front. "
            + "; ".join(f"{o.name}: {o.how}" for o in OBJECTIVES.values()))
