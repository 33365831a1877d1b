"""Search quality: the genetic search against random search at an equal trial budget.

For each seed, two real `fernas evolve` runs (local Ray, the real trainer) on the demo data,
one flag apart: `--strategy ga` and `--strategy random`.

The baseline, defined so the comparison is fair:

* Both start from the same generation 0: the seed designs, then random-search-space samples
  of seeds 001/004, then uniform random genomes (the GA's initial population; the same seed
  draws the same genomes, and the trainer is seeded, so both train them to the same accuracy).
* After generation 0, the GA evolves with its defaults (tournament, elitism, two-point
  crossover, creep mutation, novel offspring) while random search draws `--pop` fresh never-seen genomes per generation from
  the same initial distribution (search-space samples + uniform random), as the Keras Tuner
  / hand-made random searches of seeds 001 and 004 did.
* Same seeds, same trainer and trial length, same data, same `--max-mmacs` (genomes above it
  are refused untrained by both, and cost no trial).
* Budget = trained trials.  The GA runs `--generations`; its unchanged children and re-met
  genomes are cache hits, so it trains fewer than `pop` genomes a generation.  Random search
  trains `pop` new genomes a generation and runs ceil(N_ga / pop) generations, just enough to
  spend the GA's count N_ga.  Each run's trained trials are put in the order they finished and
  both are compared over the first N = min of the two counts.

Reported per strategy and seed: best validation accuracy (short trial) within the budget, the
number of trials the GA needed to reach random search's final best, and the test accuracy
(ten-crop) of each best genome after the decode training (`fernas decode --train`, a short
version of the paper's protocol, the same for every genome); mean and spread over seeds; the
hypervolume of the accuracy/cost front when a cost is an objective (`--objectives`).
Target: averaged over the seeds, the GA reaches random search's final best in at most half
the trials, and ends above it.

Writes benchmarks/results/search_quality.json (search_quality-gpu.json with --gpu) and
best_vs_trials.png (best-so-far against trials spent, every seed and the mean).

    .venv/bin/python benchmarks/search_quality.py            # small CPU settings (~1 h on 2 cores)
    .venv/bin/python benchmarks/search_quality.py --gpu      # larger settings for a GPU machine
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.fulltrain import AUGMENT_WARMUP  # noqa: E402
from fernas.fitness import OK_STATUSES as OK  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402

# name -> (small CPU settings, --gpu settings)
SETTINGS = {
    "seeds": ("0,1,2,3,4", "0,1,2,3,4"),
    "data": ("demo:3000,500,500", "demo:28709,3589,3589"),
    "pop": (8, 20),
    "generations": (4, 10),
    "epochs": (1, 2),
    "steps": (0, 0),
    "max_mmacs": (30.0, 1000.0),
    "decode_epochs": (4, 30),
    "decode_fine_tune": (0, 5),
}
CHANCE = 1 / 7  # the demo data's seven classes: the hypervolume's reference accuracy


def fmt(x: float | None, d: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def run_cmd(cmd: list[str], log: Path) -> float:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    t0 = time.perf_counter()
    with log.open("w") as fh:
        res = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}")
    return wall


def run_search(a, strategy: str, seed: int, out: Path, generations: int) -> dict:
    cmd = [sys.executable, "-m", "fernas", "evolve", "--strategy", strategy, "--data", a.data, "--out", str(out),
           "--pop", str(a.pop), "--generations", str(generations), "--epochs-per-trial", str(a.epochs),
           "--max-steps-per-epoch", str(a.steps), "--max-mmacs", str(a.max_mmacs), "--seed", str(seed),
           "--objectives", a.objectives, "--no-dashboard", "--cpus-per-trial", str(a.cpus_per_trial),
           "--rerank-top", "0"]  # the single-budget search this benchmark has always measured
    if a.max_concurrent:
        cmd += ["--max-concurrent", str(a.max_concurrent)]
    if a.seed_genomes:
        cmd += ["--seed-genomes", a.seed_genomes]
    if strategy == "ga" and a.ga_args:
        cmd += a.ga_args.split()
    if a.reuse and _reusable(out, cmd):
        print(f"  {strategy:6s} seed {seed}: reusing the finished run {out}", flush=True)
        return _read_run(out, None)  # not timed here
    shutil.rmtree(out, ignore_errors=True)
    print(f"  {strategy:6s} seed {seed}: fernas evolve ... -> {out}", flush=True)
    wall = run_cmd(cmd, out.parent / f"{out.name}.log")
    return _read_run(out, wall)


def _reusable(out: Path, cmd: list[str]) -> bool:
    """A finished run of exactly this command (--reuse: e.g. rerun only the GA, keep random search)."""
    from dataclasses import asdict

    from fernas.cli import build_parser
    from fernas.commands.evolve import options_from_args
    from fernas.errors import RunDirError
    from fernas.evolve import is_done
    from fernas.search.options import stored_recipe

    try:
        cfg = json.loads((out / "config.json").read_text())
        done = is_done(out / "checkpoint.json")  # refuses a checkpoint of another version
    except (OSError, ValueError, KeyError, RunDirError):
        return False
    if not done or cfg.get("argv") != cmd[3:]:
        return False
    # the same flags can mean another GA when defaults changed since (e.g. novel offspring)
    now = options_from_args(build_parser().parse_args(cmd[3:]))
    recipe = stored_recipe(cfg["options"])
    stored = {k: v for k, v in cfg["options"].get("ga", {}).items() if k != "chance_level"}  # set from the data
    return recipe == (now.trial_batch, now.trial_augment) and \
        stored == {k: v for k, v in json.loads(json.dumps(asdict(now.ga))).items() if k != "chance_level"}


def _read_run(out: Path, wall: float | None) -> dict:
    from fernas.evolve import read_outcomes

    cache = read_outcomes(out / "checkpoint.json")
    trained = sorted((e for e in cache.values() if e.get("status") != "skipped"), key=lambda e: e["finished_at"])
    return {"wall_s": wall, "trials": trained, "skipped": sum(e.get("status") == "skipped" for e in cache.values())}


def best_so_far(trials: list[dict]) -> list[float]:
    curve, best = [], 0.0
    for e in trials:
        if e.get("status") in OK and e.get("val_acc") is not None:
            best = max(best, float(e["val_acc"]))
        curve.append(best)
    return curve


def hypervolume(trials: list[dict], cost_key: str, ref_cost: float, ref_acc: float = 0.0) -> float:
    """Area dominated by the (accuracy up, log10 cost down) front above the reference point
    (ref_acc, log10 ref_cost).  With ref_acc = chance, networks that learned nothing add nothing
    (with 0, a tiny chance-level network buys a wide strip of the log-cost axis)."""
    pts = sorted((math.log10(max(float(e[cost_key]), 1e-9)), float(e["val_acc"])) for e in trials
                 if e.get("status") in OK and e.get(cost_key) is not None and e.get("val_acc") is not None)
    ref = math.log10(ref_cost)
    hv, best = 0.0, ref_acc
    for i, (c, acc) in enumerate(pts):  # sweep by cost; each step adds the strip up to the next point
        best = max(best, acc)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref
        hv += max(0.0, min(nxt, ref) - c) * (best - ref_acc)
    return hv


def _trained_warmup(run: Path) -> int | None:
    """The augmentation warm-up a finished decode trained with (runs before the setting: 0)."""
    try:
        return json.loads((run / "config.json").read_text())["args"].get("augment_warmup", 0)
    except (OSError, ValueError, KeyError):
        return None


def decode_train(a, doc_vector: list[int], seed: int, out: Path) -> dict:
    """`fernas decode --train` on the best genome: the same short protocol for every genome."""
    from fernas import genome as G

    gfile = out.parent / f"{out.name}.genome.json"
    doc = G.from_vector(doc_vector, name=out.name)
    metrics = out / "run" / "metrics.json"
    if a.reuse and metrics.is_file() and gfile.is_file() and G.load_genome(gfile) == doc and \
            _trained_warmup(out / "run") == a.decode_warmup:
        m = json.loads(metrics.read_text())
        return {"test_acc_tencrop": m["test_accuracy_tencrop"], "decode_best_val_acc": m["best_val_acc"],
                "params": m["params"], "macs": m["macs"], "wall_s": None, "reused": True}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    G.save_genome(doc, gfile)
    cmd = [sys.executable, "-m", "fernas", "decode", str(gfile), "--train", "--data", a.data,
           "--epochs", str(a.decode_epochs), "--fine-tune-epochs", str(a.decode_fine_tune),
           "--train-crops", "1", "--augment-warmup", str(a.decode_warmup), "--seed", str(seed), "--out", str(out / "run")]
    wall = run_cmd(cmd, out.parent / f"{out.name}.log")
    m = json.loads((out / "run" / "metrics.json").read_text())
    return {"test_acc_tencrop": m["test_accuracy_tencrop"], "decode_best_val_acc": m["best_val_acc"],
            "params": m["params"], "macs": m["macs"], "wall_s": round(wall, 1)}


def first_reach(curve: list[float], level: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= level - 1e-12), None)


def mean_std(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(statistics.mean(xs), 4), "std": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
            "min": round(min(xs), 4), "max": round(max(xs), 4), "n": len(xs)}


def plot(curves: dict, budget: int, rnd_final: float, path: Path, title: str, pop: int = 0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.4), dpi=110)
    ax.grid(alpha=0.3)
    colors = {"ga": "C3", "random": "C0"}
    labels = {"ga": "genetic search", "random": "random search"}
    for strat, per_seed in curves.items():
        for c in per_seed:
            ax.plot(range(1, len(c) + 1), c, "-", color=colors[strat], alpha=0.25, lw=1)
        n = min(len(c) for c in per_seed)
        mean = [statistics.mean(c[i] for c in per_seed) for i in range(n)]
        ax.plot(range(1, n + 1), mean, "-", color=colors[strat], lw=2.2, label=f"{labels[strat]} (mean of {len(per_seed)} seeds)")
    ax.axhline(rnd_final, color="C0", ls=":", lw=1, label="random search's final best (mean)")
    ax.axhline(1 / 7, color="0.3", ls="-.", lw=0.8, label="chance (1/7)")
    if pop:
        ax.axvspan(0.5, min(pop, budget) + 0.5, color="0.9", zorder=0, label="generation 0 (the same for both)")
    ax.axvline(budget / 2, color="0.5", ls="--", lw=1, label="half the trials")
    ax.set_xlabel("trained trials")
    ax.set_ylabel("best validation accuracy so far (short trial)")
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_title(st: dict) -> str:
    """The settings of a results JSON in one line (wrapped by `plot`)."""
    objectives = st.get("objectives", "accuracy")
    return (f"{'GPU' if st['size'] == 'gpu' else 'CPU'}: {st['data']}, pop {st['pop']} x {st['generations']} gen, "
            f"{st['epochs_per_trial']} ep x {st['max_steps_per_epoch'] or 'all'} steps, <= {st['max_mmacs']:g} MMAC, "
            f"{len(st['seeds'])} seeds" + (f", objectives {objectives}" if objectives != "accuracy" else "")
            + (f", GA {st['ga_args']}" if st.get("ga_args") else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", "--large", dest="large", action="store_true",
                    help="larger settings for a GPU machine (FER2013-sized demo data, pop 20 x 10 generations, "
                         "5 seeds); results go to search_quality-gpu.json / best_vs_trials-gpu.png")
    ap.add_argument("--seeds", default=None, help="comma-separated GA seeds (default 0,1,2,3,4)")
    ap.add_argument("--data", default=None, help="demo data of the trials and the decode training")
    ap.add_argument("--pop", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial")
    ap.add_argument("--steps", type=int, default=None, help="max steps per trial epoch (0: whole epochs)")
    ap.add_argument("--max-mmacs", type=float, default=None)
    ap.add_argument("--objectives", default="accuracy", help="as fernas evolve; with a cost, hypervolume too")
    ap.add_argument("--decode-epochs", type=int, default=None, help="epochs of the decode training of each best")
    ap.add_argument("--decode-fine-tune", type=int, default=None, help="fine-tune epochs of the decode training")
    ap.add_argument("--decode-warmup", type=int, default=AUGMENT_WARMUP,
                    help="augmentation warm-up of the decode training (fernas train --augment-warmup)")
    ap.add_argument("--no-decode", action="store_true", help="skip the decode training of the best genomes")
    ap.add_argument("--seed-genomes", default=None, help="as fernas evolve (default: genomes/*.json)")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    ap.add_argument("--max-concurrent", type=int, default=0, help="0: as many as the resources hold")
    ap.add_argument("--ga-args", default="", help="extra `fernas evolve` flags for the GA runs only "
                    "(e.g. '--no-novel-offspring --mutation-operator uniform' for DEAP's textbook loop; "
                    "random search has no GA flags)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse finished runs in --work made by the same command (e.g. keep the random-search "
                         "runs while trying GA settings)")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/search_quality[-gpu].json)")
    ap.add_argument("--plot", default=None, help="plot (default benchmarks/results/best_vs_trials[-gpu].png)")
    ap.add_argument("--work", default=None, help="run directories (default benchmarks/results/tmp/search_quality)")
    ap.add_argument("--replot", default=None, metavar="JSON", help="only redraw the plot of a results JSON")
    a = ap.parse_args(argv)
    if a.replot:
        res = json.loads(Path(a.replot).read_text())
        st = res["settings"]
        curves = {s: [rec[s]["curve"] for rec in res["per_seed"]] for s in ("ga", "random")}
        n = res["summary"]["budget_trials_common"]
        plot(curves, n, res["summary"]["mean_curve"]["random"][-1], ROOT / res["plot"], plot_title(st), pop=st["pop"])
        return 0

    import torch
    gpu = torch.cuda.is_available()
    pick = 1 if a.large else 0
    for k, v in SETTINGS.items():
        if getattr(a, k) is None:
            setattr(a, k, v[pick])
    seeds = [int(s) for s in str(a.seeds).split(",") if s.strip()]
    suffix = "-gpu" if a.large else ""
    out_json = Path(a.out or ROOT / "benchmarks" / "results" / f"search_quality{suffix}.json")
    out_png = Path(a.plot or ROOT / "benchmarks" / "results" / f"best_vs_trials{suffix}.png")
    work = Path(a.work or ROOT / "benchmarks" / "results" / "tmp" / f"search_quality{suffix}")
    if not a.reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    cost_key = {"params": "params", "macs": "macs", "latency": "latency_ms"}.get(
        a.objectives.split(",")[1].strip() if "," in a.objectives else "", None)

    t_start = time.perf_counter()
    per_seed, curves = [], {"ga": [], "random": []}
    for seed in seeds:
        print(f"seed {seed}", flush=True)
        runs = {"ga": run_search(a, "ga", seed, work / f"ga-seed{seed}", a.generations)}
        # Random search trains `pop` new genomes a generation (all under the cap): just enough
        # generations to spend the GA's trial count (the GA's re-met genomes are cache hits).
        rnd_gens = max(1, math.ceil(len(runs["ga"]["trials"]) / a.pop))
        runs["random"] = run_search(a, "random", seed, work / f"random-seed{seed}", rnd_gens)
        budget = min(len(r["trials"]) for r in runs.values())
        if budget == 0:
            raise SystemExit(f"seed {seed}: a run trained nothing (every genome above --max-mmacs?)")
        rec = {"seed": seed, "budget_trials": budget}
        for s, r in runs.items():
            trials = r["trials"][:budget]
            curve = best_so_far(trials)
            curves[s].append(curve)
            ok = [e for e in trials if e.get("status") in OK and e.get("val_acc") is not None]
            best = max(ok, key=lambda e: float(e["val_acc"])) if ok else None
            rec[s] = {"trained_trials": len(r["trials"]), "skipped_too_large": r["skipped"],
                      "generations": a.generations if s == "ga" else rnd_gens,
                      "failed": sum(e.get("status") not in OK for e in trials),
                      "best_val_acc": round(curve[-1], 4), "best_gid": best["gid"] if best else None,
                      "best_generation": best.get("generation") if best else None,
                      "best_vector": best["vector"] if best else None,
                      "best_params": best.get("params") if best else None,
                      "best_macs": best.get("macs") if best else None,
                      "curve": [round(v, 4) for v in curve],
                      "train_seconds": round(sum(float(e.get("train_seconds") or 0) for e in trials), 1),
                      "wall_s": None if r["wall_s"] is None else round(r["wall_s"], 1)}
            if cost_key:
                rec[s]["hypervolume"] = None  # filled below with a reference shared by both
        if cost_key:
            costs = [float(e[cost_key]) for r in runs.values() for e in r["trials"][:budget]
                     if e.get("status") in OK and e.get(cost_key)]
            ref = max(costs) * 1.1 if costs else 1.0
            for s, r in runs.items():
                rec[s]["hypervolume"] = round(hypervolume(r["trials"][:budget], cost_key, ref, CHANCE), 4)
                rec[s]["hypervolume_ref_acc_0"] = round(hypervolume(r["trials"][:budget], cost_key, ref), 4)
            rec["hypervolume_reference"] = {"val_acc": round(CHANCE, 4), cost_key: ref, "cost_axis": "log10",
                                            "also": "hypervolume_ref_acc_0: the same with val_acc 0"}
        rnd_final = curves["random"][-1][-1]
        rec["ga_trials_to_reach_random_final"] = first_reach(curves["ga"][-1], rnd_final)
        rec["random_trials_to_reach_own_final"] = first_reach(curves["random"][-1], rnd_final)
        if not a.no_decode:
            done: dict[str, dict] = {}
            for s in ("ga", "random"):
                gid = rec[s]["best_gid"]
                if gid is None:
                    continue
                if gid not in done:
                    print(f"  decode training of the {s} best ({gid}) ...", flush=True)
                    done[gid] = decode_train(a, rec[s]["best_vector"], seed, work / f"decode-{s}-seed{seed}")
                rec[s]["decode"] = done[gid]
        per_seed.append(rec)
        g, r = rec["ga"], rec["random"]
        print(f"  budget {budget} trials: best val  ga {fmt(g['best_val_acc'])}  random {fmt(r['best_val_acc'])};"
              f"  ga reaches random's best after {rec['ga_trials_to_reach_random_final']} trials"
              + (f";  test (decode)  ga {fmt(g['decode']['test_acc_tencrop'])}  random "
                 f"{fmt(r['decode']['test_acc_tencrop'])}" if "decode" in g and "decode" in r else ""), flush=True)

    # ---- summary over seeds: mean curves on the common budget
    n = min(len(c) for cs in curves.values() for c in cs)
    mean_curve = {s: [statistics.mean(c[i] for c in cs) for i in range(n)] for s, cs in curves.items()}
    rnd_final_mean = mean_curve["random"][-1]
    ga_reach = first_reach(mean_curve["ga"], rnd_final_mean)
    summary = {
        "budget_trials_common": n,
        "best_val_acc": {s: mean_std([rec[s]["best_val_acc"] for rec in per_seed]) for s in ("ga", "random")},
        "test_acc_tencrop_after_decode": {s: mean_std([rec[s].get("decode", {}).get("test_acc_tencrop")
                                                       for rec in per_seed]) for s in ("ga", "random")},
        "mean_curve": {s: [round(v, 4) for v in c] for s, c in mean_curve.items()},
        "ga_trials_to_reach_random_final_mean_curve": ga_reach,
        "ga_trials_to_reach_random_final_per_seed": [rec["ga_trials_to_reach_random_final"] for rec in per_seed],
        "ga_wins_per_seed": sum(rec["ga"]["best_val_acc"] > rec["random"]["best_val_acc"] for rec in per_seed),
    }
    if cost_key:
        summary["hypervolume"] = {s: mean_std([rec[s]["hypervolume"] for rec in per_seed]) for s in ("ga", "random")}
        summary["hypervolume_ref_acc_0"] = {s: mean_std([rec[s]["hypervolume_ref_acc_0"] for rec in per_seed])
                                            for s in ("ga", "random")}
        summary["ga_hypervolume_wins_per_seed"] = sum(rec["ga"]["hypervolume"] > rec["random"]["hypervolume"]
                                                      for rec in per_seed)
    target = {
        "statement": "over the seeds (mean best-so-far curves), the GA reaches random search's final best "
                     "validation accuracy in at most half of the trials, and ends above it",
        "reaches_in_half": ga_reach is not None and ga_reach <= n / 2,
        "ends_above": mean_curve["ga"][-1] > rnd_final_mean,
    }
    target["met"] = target["reaches_in_half"] and target["ends_above"]

    from fernas.runinfo import versions
    result = {
        "benchmark": "search_quality",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if gpu else None,
                    "platform": platform.platform(), "machine": platform.machine(),
                    "load_average_at_end": round(os.getloadavg()[0], 2)},
        "versions": versions("torch", "ray", "deap", "numpy"),
        "settings": {"size": "gpu" if a.large else "small", "seeds": seeds, "data": a.data, "pop": a.pop,
                     "generations": a.generations, "epochs_per_trial": a.epochs, "max_steps_per_epoch": a.steps,
                     "max_mmacs": a.max_mmacs, "objectives": a.objectives, "cpus_per_trial": a.cpus_per_trial,
                     "ga_args": a.ga_args,
                     "decode": None if a.no_decode else {"epochs": a.decode_epochs, "fine_tune_epochs": a.decode_fine_tune,
                                                         "train_crops": 1, "test": "ten-crop"}},
        "baseline": ("random search = `fernas evolve --strategy random`: the same generation 0 as the GA (seed designs, "
                     "random-search-space samples of seeds 001/004, uniform random), then `pop` fresh never-seen "
                     "genomes per generation from the same distribution (under --max-mmacs); same seeds, trainer, trial "
                     "length, data and --max-mmacs (genomes above it are refused untrained by both and cost no "
                     "trial). Budget = trained trials in the order they finished: random search runs ceil(N_ga/pop) "
                     "generations to spend the GA's count N_ga; both are cut to the smaller count."),
        "target": target,
        "summary": summary,
        "per_seed": per_seed,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "plot": str(out_png.relative_to(ROOT)) if out_png.is_relative_to(ROOT) else str(out_png),
    }
    atomic_write_json(out_json, result)
    plot(curves, n, rnd_final_mean, out_png, plot_title(result["settings"]), pop=a.pop)

    b, t = summary["best_val_acc"], summary["test_acc_tencrop_after_decode"]
    print(f"best val acc over {len(seeds)} seeds ({n} trials):  ga {fmt(b['ga']['mean'])} ± {fmt(b['ga']['std'])}   "
          f"random {fmt(b['random']['mean'])} ± {fmt(b['random']['std'])}")
    if t["ga"]["n"]:
        print(f"test acc (ten-crop) after decode training:  ga {fmt(t['ga']['mean'])} ± {fmt(t['ga']['std'])}   "
              f"random {fmt(t['random']['mean'])} ± {fmt(t['random']['std'])}")
    if cost_key:
        h = summary["hypervolume"]
        print(f"hypervolume (val acc x log10 {cost_key}):  ga {fmt(h['ga']['mean'])} ± {fmt(h['ga']['std'])}   "
              f"random {fmt(h['random']['mean'])} ± {fmt(h['random']['std'])}")
    print(f"GA reaches random search's final best after {ga_reach} of {n} trials (mean curves); "
          f"target {'met' if target['met'] else 'NOT met'}")
    print(f"wrote {out_json} and {out_png} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
