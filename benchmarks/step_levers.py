"""The two untried levers on a training step's speed, measured on a GPU: CUDA graphs for the
augmentation, and torch.compile for long full trainings.

* `augment_graph`: `fernas.augment.augment_batch` (vgg preset) eager against one CUDA-graph
  replay of the same call, at batch 32 (a search trial) and 256, timed with CUDA events (the
  best of five runs of 50 calls). The graph registers its generator, a torch.Generator on the
  card as the trainer's is (`CUDAGraph.register_generator_state`), so replays draw new
  numbers: checked.
* `compile_step`: the trainer's step (`fernas.train`'s loop, bf16 autocast where the device has
  it) of a genome eager and with `torch.compile(model)`: the seconds of the first compiled epoch
  (compilation), the milliseconds of a step after it, and the steps a training must run for the
  compilation to pay (a full VGG protocol run is about 350 epochs of 450 steps at batch 64).

Run by `make gpu-check` (steps augment-graph and compile-vgg); by hand:

    python benchmarks/step_levers.py [--genome genomes/vgg_khaireddin.json] [--batch 64]

writes benchmarks/results/step_levers.json (step_levers-gpu.json on a GPU). On a CPU only the
compile measurement runs (CUDA graphs need CUDA).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402


def _cuda_ms(fn, device: torch.device, calls: int = 50, repeats: int = 5) -> float:
    """Milliseconds per call of fn on the card: the best of `repeats` runs of `calls` calls."""
    from fernas.objectives import timed_seconds

    def run():
        for _ in range(calls):
            fn()

    return min(timed_seconds(run, device) for _ in range(repeats)) * 1000 / calls


def augment_graph(batch: int, device: torch.device) -> dict:
    """Eager augment_batch against a CUDA graph of it, on one static (batch, 48, 48) input."""
    from fernas.augment import augment_batch

    x = torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    eager_ms = _cuda_ms(lambda: augment_batch(x, gen), device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # capture needs warm-up calls off the default stream
        for _ in range(3):
            augment_batch(x, gen)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        out = augment_batch(x, gen)  # (batch, 1, 40, 40) float32, rewritten by each replay
    graph.replay()
    first = out.clone()
    graph.replay()
    assert not torch.equal(first, out), "replays of the augmentation graph drew the same numbers"
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    graph_ms = _cuda_ms(graph.replay, device)
    return {"batch": batch, "eager_ms": round(eager_ms, 4), "graph_ms": round(graph_ms, 4),
            "speedup": round(eager_ms / graph_ms, 2)}


def compile_step(doc: dict, device: torch.device, batch: int = 64, steps: int = 30) -> dict:
    """Milliseconds per training step of genome `doc`, eager and compiled, and the compile time."""
    import step_ops

    run = step_ops.trainer_run(doc, "vgg", device, steps, amp=None, batch=batch)
    step_ops.epoch_seconds(run)  # warm-up: cuDNN's choice, the augmentation's constants
    eager = min(step_ops.epoch_seconds(run) for _ in range(2)) / steps
    run.model = torch.compile(run.model)  # shares the parameters: the optimizer is unchanged
    first = step_ops.epoch_seconds(run)
    compiled = min(step_ops.epoch_seconds(run) for _ in range(2)) / steps
    saved = eager - compiled
    return {"batch": batch, "eager_step_ms": round(eager * 1000, 3), "compiled_step_ms": round(compiled * 1000, 3),
            "first_compiled_epoch_s": round(first, 1), "speedup": round(eager / compiled, 3),
            "steps_to_pay_compile": round((first - steps * compiled) / saved) if saved > 0 else None}


def main() -> int:
    from fernas.genome import load_genome
    from fernas.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genome", type=Path, default=ROOT / "genomes" / "vgg_khaireddin.json")
    ap.add_argument("--batch", type=int, default=64, help="the compiled step's batch (the VGG protocol's 64)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = "step_levers-gpu.json" if device.type == "cuda" else "step_levers.json"
    from equal_compute import cpu_model
    from step_ops import commit

    got = {"benchmark": "step_levers", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": str(device),
           "card": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "cpu": cpu_model(),
           "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "commit": commit()}
    if device.type == "cuda":
        got["augment_graph"] = [augment_graph(b, device) for b in (32, 256)]
        print(f"augmentation: {got['augment_graph']}")
    got["compile_step"] = {args.genome.stem: compile_step(load_genome(args.genome), device, args.batch)}
    print(f"torch.compile: {got['compile_step']}")
    out = args.out or ROOT / "benchmarks" / "results" / name
    atomic_write_json(out, got)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
