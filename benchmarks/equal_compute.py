"""Searchers at equal training compute: what does fernas' search buy over the alternatives?

Five arms per seed, each a real `fernas` command on the same data, the same cost cap and the
same seed, compared by the training compute they spent (images processed x multiply-adds per
image, the `compute` column of trials.csv) with the seconds beside it:

    ga-mf        fernas evolve (GA) with successive halving and re-ranking (budgets MIN -> MAX)
    ga-single    fernas evolve (GA), every genome MAX epochs, no re-ranking (the old behaviour)
    random-sh    fernas evolve --strategy random with the same successive halving and re-ranking
    random-asha  fernas evolve --strategy random, MAX epochs, Ray Tune's ASHAScheduler stopping
    seeds        the seed designs under the cap, `fernas train` with the ga-mf compute split
                 between them (what a user does who does not search)

Equal compute: ga-mf runs first; its total C (every trial: first trainings, promotions,
re-ranking) is the budget, S the part its search spent (C less its re-ranking). random-sh has
the same budgets and re-ranking, more generations than S needs and `--max-compute S`: its search
ends once it has spent S (the trials running then finish), its own re-ranking follows, and it is
used whole (its pick: best.json, as fernas ranks the run's trials today), its total reported
beside C. ga-single and random-asha (no re-ranking) are given more generations than C needs and
`--max-compute C`, then cut at C in the order their trials finished. The pick of an arm cut at C
is the best accuracy at MAX epochs within C. The seeds arm trains each design C / n_designs of
compute.

Best-so-far is the best validation accuracy at MAX epochs (trials that reached it) against
cumulative compute; a run's pick is its best.json (`ranked_best`) when used whole. Every pick
(and every seed design, and the VGG seed as the reference of the tenth-of-its-cost target) is
trained by the same `fernas decode --train` protocol with one fixed seed and tested with ten
crops; the first seed design is also decoded with seeds 0-2 (`decode_noise`): how far one decode
moves with its seed alone (on CPU the thread count and the CPU's kernels move it as well, so
compare decodes measured on one machine: --remeasure).
Also: Spearman rank correlation between the MIN and MAX budgets over the genomes the
successive-halving runs promoted (survivors only: see budget_correlation.py for all genomes;
within C for a run cut at C).

Writes benchmarks/results/equal_compute.json and best_vs_compute.png (per-seed results are
written as each seed ends, so a stopped benchmark keeps what it finished).

    .venv/bin/python benchmarks/equal_compute.py --seeds 0,1,2,3,4
    .venv/bin/python benchmarks/equal_compute.py --seeds 3,4 --add --no-vgg   # more seeds, same file
    # the same, and the earlier seeds' seeds arm and decodes trained again by this code
    # (cheap; their search runs are kept), so every decode figure comes from one trainer:
    .venv/bin/python benchmarks/equal_compute.py --seeds 3,4 --add --remeasure --reuse
    .venv/bin/python benchmarks/equal_compute.py --data demo:1000,560,280 --data-seed 1 --tag data1
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from budget_correlation import spearman  # noqa: E402
from search_quality import first_reach, fmt, mean_std, run_cmd  # noqa: E402

from fernas.fitness import at_chance, is_ok, is_rerank  # noqa: E402
from fernas.fulltrain import ProtocolConfig  # noqa: E402
from fernas.io import atomic_write_json  # noqa: E402

ARMS = ("ga-mf", "ga-single", "random-sh", "random-asha", "seeds")
SEARCH_ARMS = ARMS[:4]
HALVING_ARMS = ("ga-mf", "random-sh")  # successive halving and re-ranking: used whole within C
COLORS = {"ga-mf": "C3", "ga-single": "C1", "random-sh": "C0", "random-asha": "C2", "seeds": "0.3"}


def arm_flags(a, arm: str) -> tuple[list[str], int]:
    """`fernas evolve` flags and generations of a search arm (generations past C are cut)."""
    mf = ["--min-budget", str(a.min_budget), "--max-budget", str(a.max_budget), "--eta", str(a.eta),
          "--rerank-top", str(a.rerank_top), "--rerank-seeds", str(a.rerank_seeds)]
    single = ["--epochs-per-trial", str(a.max_budget), "--rerank-top", "0"]
    ga = ["--strategy", "ga"] + ([] if a.immigrants is None else ["--immigrants", repr(a.immigrants)])
    asha_grace = [] if a.asha_grace is None else ["--asha-grace", str(a.asha_grace)]
    recipe = ([] if a.trial_batch is None else ["--trial-batch", str(a.trial_batch)]) + \
        ([] if a.trial_augment is None else ["--trial-augment", a.trial_augment])
    # search_only.py's arms: ga-mf or random-sh without the re-ranking, searching until --max-compute C
    no_rerank = [*mf[:mf.index("--rerank-top")], "--rerank-top", "0"]
    flags, gens = {"ga-mf": ([*ga, *mf], a.generations),
                   "ga-mf-all": ([*ga, *no_rerank], 4 * a.generations),
                   "random-sh-all": (["--strategy", "random", *no_rerank], 8 * a.generations),
                   "random-sh": (["--strategy", "random", *mf], 2 * a.generations + 1),
                   "ga-single": ([*ga, *single], a.generations + 1),
                   "random-asha": (["--strategy", "random", *single, "--asha", *asha_grace],
                                   2 * a.generations + 1)}[arm]
    return [*flags, *recipe], gens


def run_search(a, arm: str, seed: int, out: Path, compute: float | None = None) -> dict:
    """Run (or with --reuse, reuse) one search arm; `compute`: its --max-compute (S or C)."""
    flags, gens = arm_flags(a, arm)
    if compute is not None:
        flags = [*flags, "--max-compute", repr(float(compute))]  # exact: _same_command compares it
    cmd = [sys.executable, "-m", "fernas", "evolve", "--data", a.data, "--data-seed", str(a.data_seed),
           "--out", str(out), "--pop", str(a.pop), "--generations", str(gens), "--max-mmacs", str(a.max_mmacs),
           "--seed", str(seed), "--no-dashboard", "--cpus-per-trial", "1", *flags]
    cut_at = None if arm in HALVING_ARMS else compute
    if a.reuse and (out / "best.json").is_file() and _finished(out, cut_at) and _same_command(out, cmd):
        print(f"  {arm:11s} reusing {out}", flush=True)
        wall = None
    else:
        shutil.rmtree(out, ignore_errors=True)
        print(f"  {arm:11s} fernas evolve {' '.join(flags)} --generations {gens} -> {out}", flush=True)
        wall = run_cmd(cmd, out.parent / f"{out.name}.log")
    return {"out": out, "wall_s": wall, **read_trials(out)}


def _finished(out: Path, cut_at: float | None = None) -> bool:
    """A run that ended, or (an arm cut at C: `cut_at`) one that has spent C, which is all of it
    that counts."""
    from fernas.evolve import is_done
    try:
        return is_done(out / "checkpoint.json") or (cut_at is not None
                                                     and spent_compute(read_trials(out)["trials"]) >= cut_at)
    except Exception:  # another version, corrupt: run it again
        return False


def _same_command(out: Path, cmd: list[str]) -> bool:
    """The run was started by this command line (same flags: trial recipe, budgets, C), wherever
    its directory was then (a work directory copied to another tag is reused)."""
    def flags(argv: list[str]) -> list[str]:
        i = argv.index("--out") if "--out" in argv else len(argv)
        return argv[:i] + argv[i + 2:]
    from fernas.cli import build_parser
    from fernas.commands.evolve import options_from_args, rerank_settings

    try:
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    # the same argv re-ranks as fernas evolve resolves it today: a run stored before
    # --rerank-recipe re-ranked with the trial recipe, one before --rerank-budget at max_budget
    # (a run without re-ranking, --rerank-top 0, is the same whatever they say)
    ga = cfg.get("options", {}).get("ga") or {}
    stored = (ga.get("rerank_recipe", "trial"), ga.get("rerank_budget") or ga.get("max_budget"),
              ga.get("rerank_warmup", 0))
    args = build_parser().parse_args(cmd[3:])
    want = rerank_settings(args)
    same_rerank = want["rerank_top"] == 0 or stored == (want["rerank_recipe"], want["rerank_budget"],
                                                        want["rerank_warmup"])
    # the space as fernas builds it today (a run stored before the batch was fixed searched it)
    same_space = ga.get("space") == options_from_args(args).ga.space
    return flags(cfg.get("argv") or []) == flags(cmd[3:]) and same_rerank and same_space


def read_trials(out: Path) -> dict:
    """Every trial of a run in the order it finished, with its genome's vector."""
    from fernas.evolve import is_done, read_outcomes

    cache = read_outcomes(out / "checkpoint.json")
    trials = [{**t, "gid": e["gid"], "vector": e["vector"], "origin": e.get("origin", "")}
              for e in cache.values() for t in e.get("trials", [])]
    trials.sort(key=lambda t: t.get("finished_at") or 0.0)
    best = json.loads((out / "best.json").read_text()) if (out / "best.json").is_file() else None
    fitness = json.loads((out / "config.json").read_text())["fitness"]
    done = is_done(out / "checkpoint.json")
    return {"trials": trials, "best_gid": ranked_best(out, fitness["val_images"]) if done else None,
            "best_json_gid": best["evolve"]["gid"] if best else None, "chance": fitness["chance_level"],
            "done": done}


def ranked_best(out: Path, val_images: int) -> str | None:
    """The genome today's ranking code returns from a finished run's trials (its hall of fame's
    first, with the run's validation size: the ties of `fitness.rerank_order` apply to runs
    written before them too, which a `fernas evolve --resume` of such a run would not do): the
    same as best.json unless the run was written before a change of the output order, which
    changes no trial of the search."""
    from fernas.evolve import Evolution

    ev = Evolution.load(out / "checkpoint.json")
    ev.cfg.val_images = ev.cfg.val_images or int(val_images)
    best = ev.best()
    return best.gid if best is not None else None


def spent_compute(trials: list[dict], search_only: bool = False) -> float:
    """Training compute of these trials (images x multiply-adds, trials.csv's `compute`);
    `search_only`: without the re-ranking trials."""
    return sum(float(t.get("compute") or 0) for t in trials if not (search_only and is_rerank(t)))


def at_max(t: dict, max_budget: int) -> bool:
    """A trial that trained a genome to the largest budget (not stopped early, not a re-ranking)."""
    return (is_ok(t) and t.get("kind") in ("first", "promotion") and int(t.get("budget") or 0) == max_budget
            and int(t.get("epoch") or 0) >= max_budget and t.get("val_acc") is not None)


def curve(trials: list[dict], max_budget: int) -> list[tuple[float, float | None]]:
    """(cumulative compute, best accuracy at the largest budget so far) after every trial."""
    out, spent, best = [], 0.0, None
    for t in trials:
        spent += float(t.get("compute") or 0)
        if at_max(t, max_budget):
            best = max(best or 0.0, float(t["val_acc"]))
        out.append((spent, best))
    return out


def cut(trials: list[dict], budget: float) -> list[dict]:
    """The trials that finished within `budget` of compute (in finish order)."""
    kept, spent = [], 0.0
    for t in trials:
        spent += float(t.get("compute") or 0)
        if spent > budget * 1.0001:
            break
        kept.append(t)
    return kept


def used_whole(arm: str, run: dict) -> bool:
    """A halving arm is used whole (its pick: best.json, `ranked_best`, after its re-ranking):
    ga-mf defines C, random-sh's search ended at ga-mf's search compute S (`--max-compute S`)."""
    return arm in HALVING_ARMS and run["done"]


def pick(run: dict, trials: list[dict], whole: bool, max_budget: int) -> tuple[str | None, list[int] | None]:
    """The genome the arm returns: the run's best.json (`ranked_best`) when used whole, else the best
    at MAX within C."""
    if whole and run["best_gid"]:
        gid = run["best_gid"]
        return gid, next(t["vector"] for t in run["trials"] if t["gid"] == gid)
    done = [t for t in trials if at_max(t, max_budget)]
    if not done:
        return None, None
    t = max(done, key=lambda t: (float(t["val_acc"]), -float(t.get("val_loss") or math.inf), t["gid"]))
    return t["gid"], t["vector"]


def promoted_correlation(trials: list[dict], lo: int, hi: int) -> dict:
    """Spearman between the MIN- and MAX-budget accuracies of the genomes that reached MAX."""
    acc = {}
    for t in trials:
        if is_ok(t) and t.get("kind") in ("first", "promotion") and t.get("val_acc") is not None:
            acc.setdefault(t["gid"], {})[int(t["budget"])] = float(t["val_acc"])
    pairs = [(v[lo], v[hi]) for v in acc.values() if lo in v and hi in v]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 3 else None
    return {"n": len(pairs), "spearman": None if rho is None or math.isnan(rho) else round(rho, 3)}


# The decode protocol's fixed parts: one random crop per training image, and the seed of every
# pick's decode (other seeds only for `decode_noise`).
DECODE_TRAIN_CROPS, DECODE_SEED = 1, 0


def decode_batch(a) -> int | None:
    """The batch every decode trains at instead of its genome's (long_decodes.py --batch-size);
    None: the genome's own.  Callers' namespaces without the field mean None."""
    return getattr(a, "decode_batch", None)


def decode_warmup(a) -> int:
    """Epochs of augmentation warm-up of every decode and of the seeds arm (`fernas train
    --augment-warmup`).  Callers' namespaces without the field mean 0, the protocol before it."""
    return getattr(a, "decode_warmup", 0)


def seeds_dir(work: Path, seed: int, warmup: int) -> Path:
    """The seeds arm's trainings of one seed (one sub-directory per design)."""
    return work / (f"seeds-seed{seed}" + (f"-w{warmup}" if warmup else ""))


def decode_key(a, gid: str, seed: int) -> str:
    """The cache directory name of one decode: genome, protocol, data and seed, so a --reuse with
    other --decode-epochs, --data or --data-seed trains again instead of reading old decodes."""
    data = re.sub(r"[^A-Za-z0-9]+", "_", a.data).strip("_")
    batch = decode_batch(a)
    return (f"{gid}-e{a.decode_epochs}+{a.decode_fine_tune}-{data}-d{a.data_seed}" + (f"-seed{seed}" if seed else "")
            + (f"-b{batch}" if batch else "") + (f"-w{decode_warmup(a)}" if decode_warmup(a) else ""))


def early_val(run: Path, epochs, field: str = "val_acc") -> dict[str, float]:
    """Validation accuracy (or `field`) after each of the first `epochs` of a decode's training
    phase (history.csv), keyed by the epoch: what a re-ranking that trains the start of the
    decode protocol sees (`--rerank-recipe own`), and a race."""
    val = {int(r["epoch"]): float(r[field]) for r in _history(run) if r["phase"] == "train"}
    return {str(e): round(val[e], 4) for e in epochs if e in val}


def decode_run(a, gid: str, work: Path, seed: int = DECODE_SEED) -> Path:
    """The run directory of a cached decode (model.pt, metrics.json, history.csv)."""
    return work / "decode" / decode_key(a, gid, seed) / "run"


def decode(a, name: str, doc: dict, work: Path, seed: int = DECODE_SEED) -> dict:
    """`fernas decode --train` with the fixed protocol, cached by `decode_key`."""
    from fernas import genome as G

    d = decode_run(a, G.genome_id(doc), work, seed).parent
    metrics = d / "run" / "metrics.json"
    if not fresh(a, metrics):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        G.save_genome({**doc, "name": name}, d / "genome.json")
        print(f"  decode --train {name} ...", flush=True)
        run_cmd([sys.executable, "-m", "fernas", "decode", str(d / "genome.json"), "--train", "--data", a.data,
                 "--data-seed", str(a.data_seed), "--epochs", str(a.decode_epochs), "--fine-tune-epochs",
                 str(a.decode_fine_tune), "--train-crops", str(DECODE_TRAIN_CROPS), "--seed", str(seed),
                 "--out", str(d / "run"), "--augment-warmup", str(decode_warmup(a)),
                 *(["--batch-size", str(decode_batch(a))] if decode_batch(a) else [])],
                d / "decode.log")
    m = json.loads(metrics.read_text())
    return {"genome": name, "test_acc_tencrop": round(m["test_accuracy_tencrop"], 4), "macs": m["macs"],
            "params": m["params"]}


def larger_test(data: str, factor: int) -> str | None:
    """The demo spec with a test split `factor` times as large (None: not demo data, or factor 0)."""
    from fernas.data import demo_difficulty

    kind, _, sizes = data.partition(":")
    parts = sizes.split(",")
    if not demo_difficulty(data) or len(parts) != 3 or factor <= 0:
        return None
    return f"{kind}:{parts[0]},{parts[1]},{int(parts[2]) * factor}"


def evaluate_on(trained: Path, data: str, data_seed: int) -> float:
    """Ten-crop test accuracy on other data of the model a `fernas decode --train`/`fernas train`
    run directory holds, cached inside it (a decode trained again loses it with the rest)."""
    d = trained / f"eval-{data.replace(':', '_').replace(',', '_')}-d{data_seed}"
    metrics = d / "metrics.json"
    if not metrics.is_file():
        d.mkdir(parents=True, exist_ok=True)
        run_cmd([sys.executable, "-m", "fernas", "evaluate", str(trained / "model.pt"), "--data", data,
                 "--data-seed", str(data_seed), "--out", str(d / "run")], d / "evaluate.log")
        m = json.loads((d / "run" / "metrics.json").read_text())
        atomic_write_json(metrics, {"test_accuracy_tencrop": m["test_accuracy_tencrop"], "n": m["n"]})
    return round(json.loads(metrics.read_text())["test_accuracy_tencrop"], 4)


def fresh(a, path: Path) -> bool:
    """A finished training to reuse: any, or with --remeasure only one of this invocation (one
    machine and trainer for every figure)."""
    return path.is_file() and (not a.remeasure or path.stat().st_mtime >= a.started)


def seeds_arm(a, seed: int, budget: float, designs: dict, work: Path) -> dict:
    """Each seed design under the cap trained with budget / n_designs of compute (`fernas train`)."""
    from fernas.data import parse_demo_spec

    n_train = parse_demo_spec(a.data)[0]
    rows, points, spent = [], [], 0.0
    for name, (path, macs) in designs.items():
        epochs = max(1, int(budget / len(designs) / (n_train * macs)))
        out = seeds_dir(work, seed, decode_warmup(a)) / name
        if a.reuse and fresh(a, out / "metrics.json") and len(_history(out)) == epochs and measured(out):
            print(f"  seeds       reusing {out}", flush=True)
            wall = None
        else:
            shutil.rmtree(out, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            print(f"  seeds       fernas train {name} --epochs {epochs}", flush=True)
            wall = run_cmd([sys.executable, "-m", "fernas", "train", path, "--data", a.data, "--data-seed",
                            str(a.data_seed), "--epochs", str(epochs), "--fine-tune-epochs", "0", "--train-crops",
                            "1", "--augment-warmup", str(decode_warmup(a)), "--seed", str(seed), "--out", str(out)],
                           out.parent / f"{name}.log")
        m = json.loads((out / "metrics.json").read_text())
        for r in _history(out):  # every epoch trains the same number of full batches
            spent += m["train_compute"] / epochs
            best = max([p[1] for p in points] + [float(r["val_acc"])])
            points.append((spent, best))
        rows.append({"genome": name, "epochs": epochs, "compute": m["train_compute"],
                     "best_val_acc": round(m["best_val_acc"]["train"], 4),
                     "test_acc_tencrop": round(m["test_accuracy_tencrop"], 4),
                     "train_seconds": round(float(m.get("train_seconds") or 0), 1),
                     "wall_s": None if wall is None else round(wall, 1)})
    return {"designs": rows, "curve": points, "total_compute": spent,
            "best": max(rows, key=lambda r: r["best_val_acc"])}


def measured(run: Path) -> bool:
    """A finished training whose metrics.json records the compute it trained (`train_compute`);
    one from before the field is trained again."""
    try:
        return "train_compute" in json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False


def _history(run: Path) -> list[dict]:
    if not (run / "history.csv").is_file():
        return []
    with (run / "history.csv").open() as fh:
        return list(csv.DictReader(fh))


def seed_record(a, seed: int, runs: dict, seeds: dict, budget: float) -> dict:
    """One seed's figures per arm: compute, seconds, curve, pick (decode-trained later)."""
    rec = {"seed": seed, "budget_compute": budget}
    for arm, run in runs.items():
        whole = used_whole(arm, run)
        trials = run["trials"] if whole else cut(run["trials"], budget)
        rec[arm] = arm_record(a, run, trials, whole)
        if arm in HALVING_ARMS:
            rec[arm]["rank_correlation"] = promoted_correlation(trials, a.min_budget, a.max_budget)
    rec["seeds"] = seeds_record(seeds)
    return rec


def arm_record(a, run: dict, trials: list[dict], whole: bool) -> dict:
    """One search arm's figures from the trials that count (`trials`: the run's, or those within C):
    compute, seconds, curve, pick (decode-trained later)."""
    gid, vector = pick(run, trials, whole, a.max_budget)
    return {"trials": len(trials), "trials_run": len(run["trials"]),
            "compute": spent_compute(trials),
            "search_compute": spent_compute(trials, search_only=True),
            "train_seconds": round(sum(float(t.get("train_seconds") or 0) for t in trials), 1),
            "wall_s": None if run["wall_s"] is None else round(run["wall_s"], 1),
            "curve": [(c, None if b is None else round(b, 4)) for c, b in curve(trials, a.max_budget)],
            "pick_gid": gid, "pick_vector": vector, "best_json_gid": run.get("best_json_gid"),
            "pick_origin": next((t["origin"] for t in trials if t["gid"] == gid), None),
            "origins": origins(trials, run["chance"]),
            "kinds": {k: sum(t.get("kind") == k for t in trials) for k in ("first", "promotion", "rerank")},
            "first_at_chance": first_at_chance(trials, run["chance"]), "used_whole": whole}


def first_at_chance(trials: list[dict], chance: float) -> dict:
    """How many first trainings (the smallest budget) ended at or below the run's chance level:
    trials that spent compute and told the search nothing by their accuracy."""
    first = [t for t in trials if t.get("kind") == "first" and is_ok(t)]
    return {"n": at_chance(first, chance), "of": len(first), "chance_level": chance}


def origins(trials: list[dict], chance: float) -> dict:
    """First trainings by where their genome came from (fernas' `origin`: seed, space-001,
    space-004, uniform, child; empty in runs older than the field): how many, how many at chance."""
    first = [t for t in trials if t.get("kind") == "first" and is_ok(t)]
    names = sorted({t["origin"] for t in first})
    return {o: {"n": sum(t["origin"] == o for t in first),
                "at_chance": at_chance([t for t in first if t["origin"] == o], chance)} for o in names}


def seeds_record(s: dict) -> dict:
    return {"compute": s["total_compute"], "designs": s["designs"], "curve": s["curve"],
            "train_seconds": sum(d["train_seconds"] for d in s["designs"]),
            "pick_gid": None, "pick_name": s["best"]["genome"],
            "test_acc_tencrop_whole_budget": s["best"]["test_acc_tencrop"]}


def remeasured(a, rec: dict, designs: dict, work: Path) -> dict:
    """An earlier seed's record (--add) with its seeds arm trained and every pick decode-trained
    again by this code, so the figures compared across seeds come from one trainer; its search
    runs (the expensive part) are kept as measured then."""
    from fernas.search.trial import trainer_version

    rec = {**rec, "seeds": seeds_record(seeds_arm(a, rec["seed"], rec["budget_compute"], designs, work))}
    decode_picks(a, rec, designs, work)
    rec["remeasured"] = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "trainer": trainer_version(),
                         "what": "seeds arm and decodes; the search runs are those of the first measurement"}
    return rec


def final_best(rec: dict) -> float | None:
    vals = [b for _, b in rec["curve"] if b is not None]
    return vals[-1] if vals else None


def compute_to_reach(rec: dict, level: float | None) -> float | None:
    """The compute after which the arm's best-so-far first reached `level`."""
    if level is None:
        return None
    i = first_reach([b if b is not None else -1.0 for _, b in rec["curve"]], level)
    return None if i is None else rec["curve"][i - 1][0]


def decode_picks(a, rec: dict, designs: dict, work: Path) -> None:
    from fernas import genome as G

    for arm in ARMS:
        r = rec[arm]
        if arm == "seeds":
            path = designs[r["pick_name"]][0]
            r["decode"] = decode(a, r["pick_name"], G.load_genome(path), work)
        elif r["pick_vector"]:
            r["decode"] = decode(a, f"{arm}-seed{rec['seed']}-{r['pick_gid']}", G.from_vector(r["pick_vector"]), work)


def at_chance_total(per_seed: list[dict], arm: str) -> dict | None:
    """First trainings at chance over all seeds (None when a seed's record predates the count)."""
    counts = [rec[arm].get("first_at_chance") for rec in per_seed]
    if not counts or None in counts:
        return None
    return {"n": sum(c["n"] for c in counts), "of": sum(c["of"] for c in counts)}


def origins_total(per_seed: list[dict], arm: str) -> dict:
    """`origins` summed over seeds (records older than the field count nothing)."""
    total: dict = {}
    for rec in per_seed:
        for o, c in rec[arm].get("origins", {}).items():
            t = total.setdefault(o, {"n": 0, "at_chance": 0})
            t["n"], t["at_chance"] = t["n"] + c["n"], t["at_chance"] + c["at_chance"]
    return total


def summarize(per_seed: list[dict], references: dict) -> dict:
    """Means over seeds and the issue's targets, stated with what was measured."""
    def over(f):
        return {arm: mean_std([f(rec, arm) for rec in per_seed]) for arm in ARMS}

    s = {"final_best_val_acc_at_max_budget": over(lambda rec, arm: final_best(rec[arm])),
         "seeds_test_acc_tencrop_whole_budget": mean_std([rec["seeds"]["test_acc_tencrop_whole_budget"]
                                                          for rec in per_seed]),
         "decode_test_acc_tencrop": over(lambda rec, arm: rec[arm].get("decode", {}).get("test_acc_tencrop")),
         "compute_vs_budget": over(lambda rec, arm: rec[arm]["compute"] / rec["budget_compute"]),
         "train_seconds": over(lambda rec, arm: rec[arm].get("train_seconds")),
         "rank_correlation": {arm: mean_std([rec[arm]["rank_correlation"]["spearman"] for rec in per_seed])
                              for arm in HALVING_ARMS},
         "first_trainings_at_chance": {arm: at_chance_total(per_seed, arm) for arm in ARMS if arm != "seeds"},
         "first_trainings_by_origin": {arm: origins_total(per_seed, arm) for arm in SEARCH_ARMS},
         "pick_origin_per_seed": {arm: [rec[arm].get("pick_origin") for rec in per_seed] for arm in SEARCH_ARMS}}
    reach = {}
    for base in ("random-sh", "random-asha"):
        fr = [compute_to_reach(rec["ga-mf"], final_best(rec[base])) for rec in per_seed]
        reach[base] = {"fraction_of_budget_per_seed": [None if x is None else round(x / rec["budget_compute"], 3)
                                                       for x, rec in zip(fr, per_seed)]}
    s["ga_mf_compute_to_reach_random_final"] = reach
    dec = s["decode_test_acc_tencrop"]
    mf = dec["ga-mf"]["mean"]
    s["targets"] = {
        "reach_random_final_in_quarter": {b: all(x is not None and x <= 0.25 for x in v["fraction_of_budget_per_seed"])
                                          for b, v in reach.items()},
        "ga_mf_above_every_alternative_decode": mf is not None and all(
            dec[o]["mean"] is None or mf > dec[o]["mean"] for o in ARMS if o != "ga-mf"),
        "ga_mf_pick_beats_best_seed_design_decode": {
            "ga_mf_mean": mf, "best_seed_design": max(references["seed_designs_decode"].values())},
        "tenth_of_vgg": {"ga_mf_mean": mf, "vgg_decode": references.get("vgg_decode")},
    }
    return s


def plot(per_seed: list[dict], path: Path, title: str, arms: tuple[str, ...] = ARMS) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=110)
    ax.grid(alpha=0.3)
    for arm in arms:
        for i, rec in enumerate(per_seed):
            pts = [(c, b) for c, b in rec[arm]["curve"] if b is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.step([x / rec["budget_compute"] for x in xs], ys, where="post", color=COLORS[arm],
                        alpha=0.8 if len(per_seed) == 1 else 0.45, lw=1.4, label=arm if i == 0 else None)
    ax.axvline(1.0, color="0.5", ls="--", lw=1, label="budget C (ga-mf's total)")
    ax.axvline(0.25, color="0.7", ls=":", lw=1, label="C / 4")
    ax.axhline(1 / 7, color="0.3", ls="-.", lw=0.8, label="chance (1/7)")
    ax.set_xlabel("training compute spent / C   (images x multiply-adds)")
    ax.set_ylabel("best validation accuracy at the largest budget")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n}: expected 0 or more")
    return n


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--data", default="demo:1400,560,280", help="demo data (demo:TRAIN,VAL,TEST or demo-hard:TRAIN,VAL,TEST)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--pop", type=int, default=6)
    ap.add_argument("--generations", type=int, default=3, help="of ga-mf and random-sh")
    ap.add_argument("--min-budget", type=int, default=2)
    ap.add_argument("--max-budget", type=int, default=4)
    ap.add_argument("--eta", type=int, default=2)
    ap.add_argument("--rerank-top", type=int, default=2)
    ap.add_argument("--rerank-seeds", type=int, default=1)
    ap.add_argument("--immigrants", type=float, default=None,
                    help="the GA arms' --immigrants (default: fernas evolve's own)")
    ap.add_argument("--asha-grace", type=int, default=None,
                    help="random-asha's --asha-grace (default: fernas evolve's own, half of --max-budget)")
    ap.add_argument("--trial-batch", type=int, default=None,
                    help="the search arms' --trial-batch (default: fernas evolve's own)")
    ap.add_argument("--trial-augment", default=None, choices=("vgg", "mild", "none"),
                    help="the search arms' --trial-augment (default: fernas evolve's own)")
    ap.add_argument("--max-mmacs", type=float, default=35.0, help="default: a tenth of the VGG seed's")
    ap.add_argument("--decode-epochs", type=int, default=6)
    ap.add_argument("--decode-fine-tune", type=int, default=1)
    ap.add_argument("--decode-warmup", type=non_negative, default=ProtocolConfig.augment_warmup,
                    help="epochs of augmentation warm-up of the decodes and the seeds arm (fernas train "
                         "--augment-warmup; default: fernas' own; 0: the protocol of the files before it)")
    ap.add_argument("--no-vgg", action="store_true", help="skip the decode training of the VGG seed")
    ap.add_argument("--tag", default="", help="suffix of the output files (e.g. data1)")
    ap.add_argument("--gpu", action="store_true", help="for `make bench-gpu`: results go to *-gpu files")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs and decodes in the work directory")
    ap.add_argument("--add", action="store_true",
                    help="add these seeds to the result file's earlier seeds (same settings; a seed given is rerun)")
    ap.add_argument("--remeasure", action="store_true",
                    help="with --add: train the earlier seeds' seeds arm and decode their picks again with this code")
    return ap.parse_args(argv)


def earlier_seeds(out_json: Path, settings: dict, seeds: list[int], versions: dict) -> tuple[list[dict], dict]:
    """For --add: the per-seed records of the result file's earlier run (seeds not rerun), and
    that file.  Refused when it was measured with other settings, another torch, Ray or DEAP, or
    another GA (`versions`' ga_checkpoint): the seeds would not compare."""
    if not out_json.is_file():
        return [], {}
    old = json.loads(out_json.read_text())
    before = old.get("settings", {})

    def differs(k: str) -> bool:  # a setting only one side has is an option added since: equal while off
        if k in before and k in settings:
            return settings[k] != before[k]
        return bool(settings.get(k) or before.get(k))

    differ = sorted(k for k in settings.keys() | before.keys() if k not in ("seeds", "no_vgg", "add", "remeasure") and differs(k))
    there = old.get("versions", {})
    differ += [f"{k} {there.get(k)} there, {versions.get(k)} here" for k in ("torch", "ray", "deap", "ga_checkpoint")
               if there.get(k) != versions.get(k)]
    if differ:
        raise SystemExit(f"{out_json}: measured with other settings ({', '.join(differ)}); "
                         "run without --add (or with the same settings)")
    return [r for r in old.get("per_seed", []) if r["seed"] not in seeds], old


def reference_decodes(a, designs: dict, work: Path) -> dict:
    from fernas import genome as G

    refs = {"seed_designs_decode": {n: decode(a, n, G.load_genome(p), work)["test_acc_tencrop"]
                                    for n, (p, _) in designs.items()}}
    # How far one decode of one genome moves with its seed alone: the resolution of the comparison
    name, (path, _) = next(iter(designs.items()))
    accs = [decode(a, name, G.load_genome(path), work, seed=k)["test_acc_tencrop"] for k in range(3)]
    refs["decode_noise"] = {"genome": name, "seeds": [0, 1, 2], "test_acc_tencrop": accs, **mean_std(accs)}
    return refs


VGG = "vgg_khaireddin"  # the VGG seed (genomes/): the reference of the tenth-of-its-multiply-adds target


def vgg_decode(a, work: Path) -> float:
    """The VGG seed under the same decode protocol: the reference of the tenth-of-its-cost target."""
    from fernas import genome as G

    return decode(a, VGG, G.load_genome(ROOT / "genomes" / f"{VGG}.json"), work)["test_acc_tencrop"]


def earlier_runs(old: dict) -> list[dict]:
    """The invocations of an earlier result file, each with its machine where known: a file's
    top-level `machine` was written by its last invocation, so it is that run's."""
    if not old:
        return []
    runs = [dict(r) for r in old["runs"]] if "runs" in old else [{"date": old["date"],
                                                                  "seeds": old["settings"]["seeds"]}]
    if "machine" not in runs[-1] and isinstance(old.get("machine"), dict):
        runs[-1]["machine"] = old["machine"]
    return runs


def shared_machine(runs: list[dict]) -> dict | str:
    """The machine every invocation ran on, or "mixed (see runs)" when they differ (decodes and
    seconds do not carry across CPUs) or an invocation did not record one."""
    machines = [r.get("machine") for r in runs]
    if all(m == machines[-1] for m in machines):
        return machines[-1]
    return "mixed (see runs)"


def cpu_model() -> str:
    """The CPU's model name with its family, model and stepping numbers (a decode's result depends
    on the kernels it runs, and so on it: two "Intel(R) Xeon(R) Processor" machines trained one
    genome with one seed to tests 2 points apart)."""
    try:
        fields = dict(ln.split(":", 1) for ln in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                      if ":" in ln)
    except OSError:
        return platform.processor()
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    numbers = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return fields.get("model name", platform.processor()) + (f" ({numbers})" if numbers else "")


def designs_under_cap(max_mmacs: float) -> dict:
    from fernas.genome import load_genome
    from fernas.model import estimate_macs

    out = {}
    for p in sorted((ROOT / "genomes").glob("*.json")):
        macs = estimate_macs(load_genome(p))
        if macs <= max_mmacs * 1e6:
            out[p.stem] = (str(p), macs)
    return out


def run_settings(a) -> dict:
    """The settings a result file records: the flags, with fernas evolve's defaults resolved (a
    default that changes later must not make two files look alike)."""
    from fernas.commands.evolve import default_asha_grace
    from fernas.evolve import GAConfig
    from fernas.search.options import DEFAULT_TRIAL_AUGMENT, DEFAULT_TRIAL_BATCH

    settings = {k: v for k, v in vars(a).items() if k not in ("reuse", "add", "remeasure", "started")}
    if a.immigrants is None:  # the share the GA arms ran with, even when it was fernas' default
        settings["immigrants"] = GAConfig().immigrants
    if a.asha_grace is None:  # the grace random-asha ran with: fernas evolve's default (files before it: Ray's 1)
        settings["asha_grace"] = default_asha_grace(a.max_budget)
    if a.trial_batch is None:  # the trial recipe the searches ran with (files before it: 0, vgg)
        settings["trial_batch"] = DEFAULT_TRIAL_BATCH
    if a.trial_augment is None:
        settings["trial_augment"] = DEFAULT_TRIAL_AUGMENT
    # under a trial batch every genome of a run has that batch (files before it left the gene free)
    settings["batch_gene"] = "the trial batch" if settings["trial_batch"] else "searched"
    # random-sh: its search ends at ga-mf's search compute S, then its own re-ranking (files
    # before it cut random-sh at C, often before its re-ranking): not to be mixed
    settings["over_budget"] = "random-sh searches S, then re-ranks; the others cut at C"
    return settings


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.remeasure and not a.add:
        raise SystemExit("--remeasure re-measures the earlier seeds of --add: give both")
    a.started = time.time()
    import torch

    from fernas.runinfo import versions

    suffix = (f"_{a.tag}" if a.tag else "") + ("-gpu" if a.gpu else "")
    out_json = ROOT / "benchmarks" / "results" / f"equal_compute{suffix}.json"
    out_png = ROOT / "benchmarks" / "results" / f"best_vs_compute{suffix}.png"
    work = ROOT / "benchmarks" / "results" / "tmp" / f"equal_compute{suffix}"
    if not a.reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    designs = designs_under_cap(a.max_mmacs)
    if not designs:
        raise SystemExit(f"no seed design under --max-mmacs {a.max_mmacs}")
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    settings = run_settings(a)
    from fernas.evolve import CHECKPOINT_VERSION
    # the GA checkpoint version changes with the GA's draws and ranking: seeds of two GAs do not mix
    vers = {**versions("torch", "ray", "deap", "numpy"), "ga_checkpoint": CHECKPOINT_VERSION}
    per_seed, old = earlier_seeds(out_json, settings, seeds, vers) if a.add else ([], {})
    t0 = time.perf_counter()
    date = datetime.datetime.now().isoformat(timespec="seconds")
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": cpu_model(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    # each invocation, with its machine; the top-level wall_seconds is the last one's
    runs = [*earlier_runs(old), {"date": date, "seeds": a.seeds, "versions": vers, "machine": machine}]
    result = {"benchmark": "equal_compute", "date": date, "machine": shared_machine(runs),
              "versions": vers,
              "settings": {**settings, "seeds": ",".join(str(r["seed"]) for r in per_seed) or a.seeds},
              "runs": runs,
              "arms": {arm: " ".join(arm_flags(a, arm)[0]) + {"ga-mf": "", "random-sh": " --max-compute S"}.get(
                  arm, " --max-compute C") for arm in SEARCH_ARMS},
              "protocol": __doc__.split("\n\n")[1:4]}
    result["references"] = {**old.get("references", {}), **reference_decodes(a, designs, work)}
    if a.remeasure:
        for rec in per_seed:
            print(f"seed {rec['seed']} (earlier): seeds arm and decodes again", flush=True)
        per_seed = [remeasured(a, rec, designs, work) for rec in per_seed]
    for seed in seeds:
        print(f"seed {seed}", flush=True)
        runs = {"ga-mf": run_search(a, "ga-mf", seed, work / f"ga-mf-seed{seed}")}
        budget = spent_compute(runs["ga-mf"]["trials"])
        search = spent_compute(runs["ga-mf"]["trials"], search_only=True)
        for arm in SEARCH_ARMS[1:]:
            runs[arm] = run_search(a, arm, seed, work / f"{arm}-seed{seed}", search if arm == "random-sh" else budget)
        rec = seed_record(a, seed, runs, seeds_arm(a, seed, budget, designs, work), budget)
        decode_picks(a, rec, designs, work)
        per_seed = sorted([*per_seed, rec], key=lambda r: r["seed"])
        result["settings"]["seeds"] = ",".join(str(r["seed"]) for r in per_seed)
        print("  " + "  ".join(f"{arm} {fmt(final_best(rec[arm]), 3)}/{fmt(rec[arm].get('decode', {}).get('test_acc_tencrop'), 3)}"
                               for arm in ARMS) + "   (best val at MAX / decode test)", flush=True)
        result["runs"][-1]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        result.update(per_seed=per_seed, summary=summarize(per_seed, result["references"]),
                      wall_seconds=round(time.perf_counter() - t0, 1), plot=str(out_png.relative_to(ROOT)))
        atomic_write_json(out_json, result)
        plot(per_seed, out_png, f"{a.data} (data seed {a.data_seed}), <= {a.max_mmacs:g} MMAC, pop {a.pop}, "
             f"budgets {a.min_budget}->{a.max_budget}, {len(per_seed)} seed(s)")
    if not a.no_vgg:  # last: the most expensive training, and only a reference
        result["references"]["vgg_decode"] = vgg_decode(a, work)
        result["runs"][-1]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        result.update(summary=summarize(per_seed, result["references"]), wall_seconds=round(time.perf_counter() - t0, 1))
        atomic_write_json(out_json, result)
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out_json} and {out_png} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
