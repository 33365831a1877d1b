"""`make gpu-check`: the whole GPU path in a few minutes, on the first machine that has a GPU.

Runs in order and stops at the first failure (exit status 1), writing what it measured so far
to benchmarks/results/gpu-check.json (card, driver, versions, one entry per step):

1. cuda-tests: the test suite's CUDA tests (skipped on CPUs).
2. decode-evaluate-export: `fernas decode --train` of the VGG seed on the GPU (short), then
   `fernas evaluate` and `fernas export` (ONNX, checked against PyTorch) of its model.
3. cross-device-resume: a training checkpoint written on the GPU resumes on the CPU, and the
   reverse, each saying that its random draws were reseeded.
4. wide-genome-memory: the evaluation batch of a wide genome (256-wide stage, inverted
   residual with expansion 6 at 40x40) sized from its activations fits; peak memory recorded.
5. evolve-shared-card: a short `fernas evolve` with four trials per card (every trial on cuda,
   each process's peak memory sampled with nvidia-smi; one seed design's first trial gets an
   injected out-of-memory error and must be retried alone, on a whole card, and train there),
   then one with `--gpus-per-trial 0` (every trial on cpu); the dashboard's node view reports
   the GPU.
6. trainer-benchmark: `benchmarks/train.py --gpu` (fernas against the reference pipeline;
   the 10x and 30%-of-bf16-peak targets) and a VGG epoch on FER2013-sized demo data, for the
   300+50-epoch projection.
7. step-operators: operators and milliseconds per trial step of the MobileNetV2-style seed
   (benchmarks/step_ops.py), with and without the augmentation.
8. augment-graph: the augmentation eager against a CUDA graph of it, at batch 32 and 256
   (benchmarks/step_levers.py).
9. compile-vgg: the VGG seed's training step (batch 64) eager against torch.compile: compile
   seconds, milliseconds per step, steps to pay for the compile (benchmarks/step_levers.py).

`--from STEP` starts at a later step (after fixing a failure), keeping the earlier steps'
results already in `--out`; each step's entry carries its date and commit. `--keep-going` runs
the steps after a failure too (exit status 1 at the end), for the most figures from one call.

On a machine without a GPU it says so in one line and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # fernas, and the benchmarks it runs (step_ops, ...)
OUT = ROOT / "benchmarks" / "results" / "gpu-check.json"
PY = sys.executable
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
SHORT = ["--data", "demo:2800,700,700", "--epochs", "2", "--fine-tune-epochs", "1", "--train-crops", "1"]


def sh(*cmd, timeout: int = 300) -> str:
    """Run a command in the repository; its output, or a failure naming it."""
    res = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {res.returncode}: {(res.stderr or res.stdout)[-800:]}")
    return res.stdout


def card() -> dict:
    import torch

    smi = sh("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader").strip()
    return {"card": torch.cuda.get_device_name(0), "nvidia_smi": smi, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def cuda_tests(work: Path) -> dict:
    out = sh(PY, "-m", "pytest", "-q", "-k", "cuda or gpu", "tests/", timeout=400)
    return {"pytest": out.strip().splitlines()[-1]}


def decode_evaluate_export(work: Path) -> dict:
    run = work / "vgg"
    sh(PY, "-m", "fernas", "decode", "genomes/vgg_khaireddin.json", "--train", "--out", run, "--device", "cuda", *SHORT)
    m = json.loads((run / "metrics.json").read_text())
    ev = sh(PY, "-m", "fernas", "evaluate", run / "model.pt", "--data", "demo:2800,700,700", "--device", "cuda",
            "--out", work / "eval")
    ex = sh(PY, "-m", "fernas", "export", run / "model.pt", "--ten-crop", "--out", work / "vgg.onnx")
    assert m["device"].startswith("cuda"), m["device"]
    return {"test_accuracy_tencrop": m["test_accuracy_tencrop"], "train_seconds": m["train_seconds"],
            "evaluate": ev.strip().splitlines()[0], "export": ex.strip()}


def cross_device_resume(work: Path) -> dict:
    import contextlib
    import io

    from fernas.demo_faces import make_demo
    from fernas.genome import load_genome
    from fernas.train import TrainConfig, train_genome

    data = make_demo(600, 150, 0, seed=0)
    notes = {}
    for first, then, optimizer in (("cuda", "cpu", "adam"), ("cpu", "cuda", "adam"), ("cpu", "cuda", "asgd")):
        doc = load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json")
        doc["train"]["optimizer"] = optimizer  # fused / capturable state with step counters on the device
        ck = work / f"ck-{first}-{optimizer}.pt"

        class Stop(Exception):
            pass

        def stop(rec):
            if rec["epoch"] == 1:
                raise Stop

        try:
            train_genome(doc, data, TrainConfig(epochs=2, device=first, max_steps_per_epoch=5), checkpoint_path=ck,
                         on_epoch=stop)
        except Stop:
            pass
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            res = train_genome(doc, data, TrainConfig(epochs=2, device=then, max_steps_per_epoch=5),
                               checkpoint_path=ck, resume=True)
        assert "seed derived" in said.getvalue(), said.getvalue()[-500:]
        notes[f"{first}->{then} {optimizer}"] = {"epochs": len(res.history), "val_acc": res.history[-1]["val_acc"]}
    return notes


def wide_genome_memory(work: Path) -> dict:
    import torch

    from fernas.device import eval_batch_size
    from fernas.evaluate import crop_logits
    from fernas.genome import load_genome
    from fernas.model import build_model, plan

    doc = load_genome(ROOT / "genomes" / "vgg_khaireddin.json")
    doc["stages"] = [{"block": "conv", "repeats": 1, "width": 256, "kernel": 3, "dropout": 0.0, "pool": "none"},
                     {"block": "inverted_residual", "expansion": 6, "repeats": 1, "width": 256, "kernel": 3,
                      "dropout": 0.0, "pool": "max"}]
    dev = torch.device("cuda")
    model = build_model(doc).to(dev).to(memory_format=torch.channels_last).eval()
    free, _ = torch.cuda.mem_get_info()
    crops = eval_batch_size(dev, doc)
    torch.cuda.reset_peak_memory_stats()
    x = torch.randint(0, 256, (2000, 48, 48), dtype=torch.uint8)
    real = model.forward
    seen = []
    model.forward = lambda c: seen.append(c.shape[0]) or real(c)  # crops per pass: no halving may be needed
    crop_logits(model, x, crops=10, device=dev, amp=True, batch_crops=crops)
    peak = torch.cuda.max_memory_allocated()
    assert max(seen) == crops // 10 * 10, (max(seen), crops)
    assert peak < free, (peak, free)
    return {"peak_activation_elements": plan(doc).peak_activation, "eval_crops": crops,
            "peak_gib": round(peak / 2**30, 2), "free_gib_before": round(free / 2**30, 2)}


def evolve_shared_card(work: Path) -> dict:
    import csv

    common = ["--data", "demo:2800,700,700", "--pop", "8", "--generations", "1", "--epochs-per-trial", "1",
              "--rerank-top", "0", "--max-mmacs", "400"]
    peaks: list[str] = []
    log = work / "evolve-gpu.log"
    oom_gid = _genome_id(ROOT / "genomes" / "daocong_mobilenetv2.json")  # out of memory beside others, once
    with log.open("w") as fh:
        proc = subprocess.Popen([PY, "-m", "fernas", "evolve", *common, "--gpus-per-trial", "0.25", "--out",
                                 work / "gpu"], cwd=ROOT, env={**ENV, "FERNAS_FAULT_INJECT": f"{oom_gid}=oom"},
                                text=True, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its Ray processes in its group, killed with it
        dashboard, deadline = None, time.time() + 300
        try:
            while proc.poll() is None:  # sample per-process GPU memory while the four trials run
                if time.time() > deadline:
                    raise RuntimeError(f"fernas evolve --gpus-per-trial 0.25 ran past 300 s: {log.read_text()[-800:]}")
                time.sleep(2)
                peaks.append(sh("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader").strip())
                cfg = work / "gpu" / "config.json"
                if dashboard is None and cfg.is_file():
                    dashboard = _dashboard_gpus(json.loads(cfg.read_text())["ray"])
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"fernas evolve --gpus-per-trial 0.25 exited {proc.returncode}: {log.read_text()[-800:]}")
    sh(PY, "-m", "fernas", "evolve", *common, "--gpus-per-trial", "0", "--no-dashboard", "--out", work / "cpu",
       timeout=600)
    devices, rows = {}, {}
    for name in ("gpu", "cpu"):
        with (work / name / "trials.csv").open() as fh:
            rows[name] = list(csv.DictReader(fh))
        devices[name] = sorted({r["device"] for r in rows[name] if r["status"] == "ok"})
    assert devices["gpu"] == ["cuda"] and devices["cpu"] == ["cpu"], devices
    from fernas.evolve import read_outcomes

    retried = [(t["kind"], t["status"], t["device"], t.get("gpus"))
               for t in read_outcomes(work / "gpu" / "checkpoint.json")[oom_gid]["trials"]]
    assert retried == [("oom", "failed", "cuda", 0.25), ("first", "ok", "cuda", 1.0)], retried
    assert dashboard, "the dashboard's node view did not report the GPU"
    return {"trial_devices": devices, "oom_retry_alone": retried, "nvidia_smi_samples": [p for p in peaks if p][:20],
            "dashboard_gpus": dashboard}


def _genome_id(path: Path) -> str:
    from fernas import genome as G

    return G.genome_id(G.load_genome(path))


def _dashboard_gpus(ray_info: dict):
    import urllib.request

    if not ray_info.get("dashboard_url"):
        return None
    token = Path(ray_info["token_file"]).read_text().strip()
    req = urllib.request.Request(f"{ray_info['dashboard_url']}/nodes?view=summary",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read())
    except (OSError, ValueError):  # not up yet, or not JSON: asked again at the next sample
        return None
    nodes = body.get("data", {}).get("summary", [])
    gpus = [g.get("name") for n in nodes for g in n.get("gpus", [])]
    return gpus or None


def trainer_benchmark(work: Path) -> dict:
    out = work / "train-gpu.json"
    sh(PY, "benchmarks/train.py", "--gpu", "--out", out, timeout=400)
    bench = json.loads(out.read_text())
    t0 = time.perf_counter()
    sh(PY, "-m", "fernas", "train", "genomes/vgg_khaireddin.json", "--data", "demo:28709,3589,100", "--epochs", "1",
       "--fine-tune-epochs", "0", "--device", "cuda", "--out", work / "vgg-epoch", timeout=400)
    hist = (work / "vgg-epoch" / "history.csv").read_text().splitlines()
    epoch_s = float(hist[1].split(",")[-1])
    return {"train_benchmark": bench.get("models"), "vgg_epoch_seconds_fer2013_size": epoch_s,
            "projected_300_plus_50_epochs_hours": round(epoch_s * 350 / 3600, 2),
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def step_operators(work: Path) -> dict:
    """Operators and wall time of one trial step of the MobileNetV2-style seed on the card, with
    the trial recipe's augmentation (none) and decode's (vgg): how launch-bound a short trial is."""
    import step_ops
    import torch

    from fernas.genome import load_genome

    doc, dev = load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json"), torch.device("cuda")
    got = {}
    for augment in ("none", "vgg"):
        ops = step_ops.step_ops(doc, augment, dev)
        ms = step_ops.step_seconds(doc, augment, dev) * 1000
        n = ops["step_cuda_form"]  # the bf16 step that step_seconds times (on CUDA: exact)
        got[augment] = {"operators": n, "step_ms": round(ms, 3), "us_per_operator": round(ms * 1000 / n, 2)}
    return {"mobilenetv2_batch32": got}


def augment_graph(work: Path) -> dict:
    """A lever not yet used, measured: the augmentation as one CUDA graph replay."""
    import step_levers
    import torch

    return {"batches": [step_levers.augment_graph(b, torch.device("cuda")) for b in (32, 256)]}


def compile_vgg(work: Path) -> dict:
    """A lever not yet used, measured: torch.compile for long decodes (the VGG seed at the
    protocol's batch 64)."""
    import step_levers
    import torch

    from fernas.genome import load_genome

    doc = load_genome(ROOT / "genomes" / "vgg_khaireddin.json")
    return step_levers.compile_step(doc, torch.device("cuda"), batch=64)


STEPS = [cuda_tests, decode_evaluate_export, cross_device_resume, wide_genome_memory, evolve_shared_card,
         trainer_benchmark, step_operators, augment_graph, compile_vgg]


def step_name(step) -> str:
    return step.__name__.replace("_", "-")


def parse_args(argv: list[str] | None):
    import argparse

    names = [step_name(s) for s in STEPS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="start", choices=names, metavar="STEP", default=names[0],
                    help=f"start at this step (after fixing a failure; one of {', '.join(names)}); the "
                         "results of earlier steps already in --out are kept")
    ap.add_argument("--out", type=Path, default=OUT, help="the results file (default %(default)s)")
    ap.add_argument("--keep-going", action="store_true",
                    help="run every step even after one fails (exit status 1 at the end): the most figures from "
                         "one session on a lent GPU (a step that breaks the process's CUDA context fails the "
                         "in-process steps after it too)")
    return ap.parse_args(argv)


def earlier_steps(out: Path, first: int) -> dict:
    """The results of the steps before STEPS[first] in an earlier results file."""
    try:
        earlier = json.loads(out.read_text()).get("steps", {}) if out.is_file() else {}
    except (OSError, ValueError, AttributeError) as exc:
        raise SystemExit(f"gpu-check: {out} is not an earlier gpu-check result ({exc}); give another --out")
    return {step_name(s): earlier[step_name(s)] for s in STEPS[:first] if step_name(s) in earlier}


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check")
        return 0
    first = [step_name(s) for s in STEPS].index(args.start)
    result = {"benchmark": "gpu-check", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), **card(),
              "steps": earlier_steps(args.out, first) if first else {}}
    kept = result["steps"]
    missing = [step_name(s) for s in STEPS[:first] if kept.get(step_name(s), {}).get("ok") is not True]
    if first:
        print(f"gpu-check: kept {len(kept)} earlier steps from {args.out}"
              + (f"; not passed there: {', '.join(missing)}" if missing else ""))
    with tempfile.TemporaryDirectory(prefix="fernas-gpu-check-") as tmp:
        failed = run_steps(STEPS[first:], Path(tmp), result, args.out, args.keep_going)
    if failed:
        print(f"gpu-check: FAILED: {', '.join(failed)}; {args.out}", file=sys.stderr)
        return 1
    if missing:
        print(f"gpu-check: the steps from {args.start} on passed; {', '.join(missing)} did not; {args.out}")
        return 1
    print(f"gpu-check: all steps passed; {args.out}")
    return 0


def run_steps(steps, work: Path, result: dict, out: Path, keep_going: bool) -> list[str]:
    """Run the steps in order, writing `result` to `out` after each; the names of those that
    failed (the first failure ends the run unless `keep_going`)."""
    from step_ops import commit

    from fernas.io import atomic_write_json

    failed, built_from = [], commit()
    for step in steps:
        name, t0 = step_name(step), time.perf_counter()
        stamp = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": built_from}
        try:
            got, ok = step(work), True
        except Exception as exc:  # recorded with what came before
            got, ok = {"error": f"{type(exc).__name__}: {exc}"[:2000]}, False
            print(f"gpu-check: {name} FAILED: {exc}", file=sys.stderr)
        result["steps"][name] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1), **stamp, **got}
        atomic_write_json(out, result)
        if ok:
            print(f"gpu-check: {name} ok ({result['steps'][name]['seconds']} s)")
            continue
        failed.append(name)
        if not keep_going:
            break
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
