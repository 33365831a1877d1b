"""The finalists of equal-compute searches trained with the decode protocol: would another
re-ranking have picked a better network?

A run's pick comes from its last decision: the `--rerank-top` best genomes trained again at the
largest budget, `best.json` the best mean; the proxy runs this was written for re-ranked with
the trial recipe (batch 32, no augmentation; `--rerank-recipe trial`, the default then).  The network a user keeps is trained far longer with its own recipe (`fernas decode
--train`, 48+2 epochs).  This trains the `--top` best genomes of each run (its `hall_of_fame/`
order) with that protocol and compares three ways of choosing among them with the best of them
(the finalists' ceiling):

* `run`: the run's own pick (hall of fame rank 1);
* `trial`: the best accuracy of a trial-recipe training at the largest budget (first training
  or promotion; finalists that never reached that budget rank after those that did);
* `own@N` for each N of `--at`: the decode's own validation accuracy after its N-th epoch,
  i.e. what a re-ranking that trained the first N epochs of the decode protocol would have
  seen.  It is what `fernas decode --train --race N` chooses by, and the race continues that very
  training, so the chosen finalist's decode here is the race's result; `races` gives what the
  race costs beyond it (the stopped finalists' N epochs) beside the re-ranking it would replace.

The runs are those `benchmarks/equal_compute.py --tag TAG` left in its work directory
(`benchmarks/results/tmp/equal_compute_TAG/ARM-seedS`), and those of `search_only.py --tag TAG`
(arms ga-mf-all, ga-mf-all-b16, ...: their records from search_only_TAG*.json, their largest
budget from each run's config.json); the decodes are cached there as `long_decodes.py`'s are
(same key), so the picks already trained 48+2 are read, not trained.

    .venv/bin/python benchmarks/finalists.py --tag proxy --seeds 2,3,4 --arms ga-mf,random-sh --top 4
    .venv/bin/python benchmarks/finalists.py --tag hard --arms ga-mf-all,ga-mf-all-b16 --top 3 --at 8 \
        --big-test 0 --out-tag hard_all

Writes benchmarks/results/finalists_TAG.json (`--out-tag T`: finalists_T.json; `--train-seed N`: _sN
before .json) after every run, so a stopped benchmark keeps the runs it finished.  The equal-compute file's test split (280 demo
images) gives one accuracy a standard error of about 1.8 points at 0.9, the size of the
differences between finalists; so each trained network is also tested (`fernas evaluate`,
ten-crop) on a test split `--big-test` times as large (`equal_compute.evaluate_on`; on the
demo data, whose splits are drawn from streams of their own, the training and validation
images stay the same).  Each decode is still one training seed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import equal_compute as ec  # noqa: E402
from budget_correlation import spearman  # noqa: E402

from fernas.io import atomic_write_json  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="proxy", help="the equal_compute result file's tag (equal_compute_TAG.json)")
    ap.add_argument("--seeds", default="2,3,4", help="the seeds whose runs are still in the work directory")
    ap.add_argument("--arms", default="ga-mf,random-sh", help="the search arms whose runs to read")
    ap.add_argument("--top", type=int, default=4, help="finalists per run (hall of fame order)")
    ap.add_argument("--at", default="8,16,24", help="decode epochs whose validation accuracy is a re-ranking signal")
    ap.add_argument("--warmup", type=ec.non_negative, default=ec.ProtocolConfig.augment_warmup,
                    help="the decodes' augmentation warm-up (fernas train --augment-warmup; default: fernas' own; "
                         "finalists_proxy.json was measured without one, 0)")
    ap.add_argument("--big-test", type=int, default=10, help="test split this many times as large (demo data; 0: none)")
    ap.add_argument("--epochs", type=int, default=48)
    ap.add_argument("--fine-tune", type=int, default=2)
    ap.add_argument("--train-seed", type=int, default=ec.DECODE_SEED,
                    help="the decodes' training seed (another one: finalists_TAG_sN.json, the same race "
                         "with another training of every finalist)")
    ap.add_argument("--out-tag", default=None,
                    help="write finalists_OUT-TAG.json instead of finalists_TAG.json (other arms of the same runs)")
    return ap.parse_args(argv)


def finalists(run: Path, top: int) -> list[dict]:
    """The run's `top` best genomes, best first: rank, id, genome document."""
    files = sorted((run / "hall_of_fame").glob("*.json"))[:top]
    docs = [json.loads(p.read_text()) for p in files]
    return [{"rank": i + 1, "gid": d["evolve"]["gid"], "doc": d} for i, d in enumerate(docs)]


def arm_record(result: dict, results: Path, tag: str, arm: str, seed: int) -> dict:
    """An arm's record of one seed (compute, search_compute): the equal_compute file's, or for a
    search_only.py arm its own file's."""
    rec = next(r for r in result["per_seed"] if r["seed"] == seed)
    if arm in rec:
        return rec[arm]
    for path in sorted(results.glob(f"search_only_{tag}*.json")):
        d = json.loads(path.read_text())
        if d.get("arm") == arm:
            return next(r for r in d["per_seed"] if r["seed"] == seed)
    raise SystemExit(f"{arm}: neither an arm of equal_compute_{tag}.json nor of a search_only_{tag}*.json")


def run_max_budget(run: Path) -> int:
    """The largest budget (epochs) the run's trials reached: its config.json's."""
    return int(json.loads((run / "config.json").read_text())["options"]["ga"]["max_budget"])


def trial_accuracy(run: Path, gid: str, max_budget: int) -> float | None:
    """The genome's best trial-recipe accuracy at the largest budget (first training or
    promotion; re-ranking seeds left out: only the run's finalists have them); None when it never
    reached that budget."""
    with open(run / "trials.csv", newline="") as f:
        accs = [float(r["val_acc"]) for r in csv.DictReader(f)
                if r["gid"] == gid and r["kind"] in ("first", "promotion") and r["status"] == "ok"
                and r["val_acc"] and int(r["budget"]) == max_budget]
    return max(accs) if accs else None


def price_stopped(rows: list[dict], at: list[int], decodes: dict[str, Path], train) -> None:
    """A finalist a race would stop whose cached decode predates `train_compute` (so the race
    cannot be priced) is trained again on this machine: `train(row)` returns the row's test
    figures anew.  Only the decodes a price needs, not every old one."""
    for r in rows:
        stopped = any(chosen(rows, f"own@{n}")["gid"] != r["gid"] for n in at)
        if stopped and not ec.measured(decodes[r["gid"]]):
            shutil.rmtree(decodes[r["gid"]].parent)
            r.update(train(r))


def chosen(rows: list[dict], signal: str) -> dict:
    """The finalist a signal picks (highest value; missing values last; then, for own@N as the
    race decides, the lower validation loss; then hall of fame rank)."""
    def loss(r: dict) -> float:
        v = r.get(signal.replace("own@", "own_loss@")) if signal.startswith("own@") else None
        return float("inf") if v is None else v

    return min(rows, key=lambda r: (r.get(signal) is None, -(r.get(signal) or 0.0), loss(r), r["rank"]))


def run_summary(rows: list[dict], signals: list[str], truth: str = "test") -> dict:
    """One run: the `truth` (test accuracy) of each signal's choice, the ceiling, and each
    signal's Spearman with the truth over the finalists."""
    test = [r[truth] for r in rows]
    out = {"ceiling": max(test), "picks": {}, "spearman": {}}
    for s in signals:
        out["picks"][s] = {"gid": chosen(rows, s)["gid"], "test": chosen(rows, s)[truth]}
        pairs = [(r[s], r[truth]) for r in rows if r.get(s) is not None]
        out["spearman"][s] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def race_cost(rows: list[dict], n: int, decodes: dict[str, Path], arm: dict, budget: float) -> dict:
    """What `fernas decode --train --race n` over these finalists costs beyond training its pick
    (the finalists it stops trained n epochs: images x multiply-adds, and their seconds), and the
    arm's search with it instead of its re-ranking, as a share of the seed's budget C."""
    pick = chosen(rows, f"own@{n}")["gid"]
    extra, seconds = 0.0, 0.0
    for r in rows:
        if r["gid"] == pick:
            continue
        run = decodes[r["gid"]]
        if not ec.measured(run):
            raise SystemExit(f"{run}: its metrics.json does not record train_compute (trained by an older "
                             "fernas); delete that decode to train it again")
        m = json.loads((run / "metrics.json").read_text())  # every epoch trains the same full batches
        extra += n * m["train_compute"] / (m["epochs"] + m["fine_tune_epochs"])
        seconds += sum(float(h["seconds"]) for h in ec._history(run) if h["phase"] == "train" and int(h["epoch"]) <= n)
    return {"pick": pick, "extra_compute": extra, "extra_seconds": round(seconds, 1),
            "search_compute": arm["search_compute"], "rerank_compute": arm["compute"] - arm["search_compute"],
            "search_and_race_share_of_C": round((arm["search_compute"] + extra) / budget, 3),
            "arm_share_of_C": round(arm["compute"] / budget, 3)}


def summary(runs: dict[str, dict], signals: list[str]) -> dict:
    """Over runs: each signal's mean test accuracy of its choice, how often it chose the
    ceiling, and its mean Spearman."""
    out = {"runs": len(runs), "ceiling_mean": round(statistics.mean(r["ceiling"] for r in runs.values()), 4)}
    for s in signals:
        tests = [r["picks"][s]["test"] for r in runs.values()]
        rhos = [r["spearman"][s] for r in runs.values() if r["spearman"][s] is not None]
        out[s] = {"pick_test_mean": round(statistics.mean(tests), 4),
                  "chose_ceiling": sum(r["picks"][s]["test"] == r["ceiling"] for r in runs.values()),
                  "spearman_mean": round(statistics.mean(rhos), 3) if rhos else None}
    return out


def race_summary(races: dict[str, dict]) -> dict:
    """Over runs, per race length: the mean share of C of the search with the race instead of
    the re-ranking, and of the arm as it ran (search and re-ranking)."""
    out = {}
    for key in next(iter(races.values()), {}):
        shares = [r[key]["search_and_race_share_of_C"] for r in races.values()]
        out[key] = {"search_and_race_share_of_C_mean": round(statistics.mean(shares), 3),
                    "arm_share_of_C_mean": round(statistics.mean(r[key]["arm_share_of_C"] for r in races.values()), 3),
                    "extra_seconds_mean": round(statistics.mean(r[key]["extra_seconds"] for r in races.values()), 1)}
    return out


def race_run(a, args, work: Path, seed: int, arm: str, at: list[int], big) -> tuple[list[dict], dict]:
    """One run's finalists trained (or read from the cache) by the decode protocol: their rows,
    and each finalist's decode directory."""
    run = work / f"{arm}-seed{seed}"
    if not (run / "hall_of_fame").is_dir():
        raise SystemExit(f"{run}: no such run (equal_compute.py --tag {args.tag} left none for this seed)")
    mine, decodes, docs = [], {}, {}
    for f in finalists(run, args.top):
        docs[f["gid"]] = f["doc"]
        print(f"{arm} seed {seed}: finalist {f['rank']} {f['gid']}", flush=True)
        d = ec.decode(a, f"{arm}-seed{seed}-{f['gid']}", f["doc"], work, args.train_seed)
        dec = decodes[f["gid"]] = ec.decode_run(a, f["gid"], work, args.train_seed)
        mine.append({"seed": seed, "arm": arm, "rank": f["rank"], "gid": f["gid"], "run": -f["rank"],
                     "trial": trial_accuracy(run, f["gid"], run_max_budget(run)),
                     **{f"own@{n}": v for n, v in ec.early_val(dec, at).items()},
                     **{f"own_loss@{n}": v for n, v in ec.early_val(dec, at, "val_loss").items()},
                     "test": d["test_acc_tencrop"], "macs": d["macs"]})
        if big:
            mine[-1]["test_big"] = ec.evaluate_on(dec, big, a.data_seed)

    def train_again(r: dict) -> dict:
        d = ec.decode(a, f"{arm}-seed{seed}-{r['gid']}", docs[r["gid"]], work, args.train_seed)
        return {"test": d["test_acc_tencrop"],
                **({"test_big": ec.evaluate_on(decodes[r["gid"]], big, a.data_seed)} if big else {})}

    price_stopped(mine, at, decodes, train_again)
    return mine, decodes


def result_doc(args, suffix: str, big, rows: list[dict], runs: dict, races: dict, signals: list[str],
               truths: list[str], seconds: float) -> dict:
    """The result file's document for the runs finished so far."""
    return {"benchmark": "finalists", "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "source": f"benchmarks/results/equal_compute{suffix}.json", "machine": {"cpu": ec.cpu_model()},
            "settings": vars(args), "protocol": {"epochs": args.epochs, "fine_tune_epochs": args.fine_tune,
                                                 "train_crops": ec.DECODE_TRAIN_CROPS, "seed": args.train_seed},
            "big_test": big, "rows": rows, "runs": runs,
            "summary": {t: summary({k: v[t] for k, v in runs.items()}, signals) for t in truths},
            "races": races, "race_summary": race_summary(races), "wall_seconds": round(seconds, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    suffix = f"_{args.tag}" if args.tag else ""
    result = json.loads((ROOT / "benchmarks" / "results" / f"equal_compute{suffix}.json").read_text())
    st = result["settings"]
    results = ROOT / "benchmarks" / "results"
    work = results / "tmp" / f"equal_compute{suffix}"
    a = SimpleNamespace(data=st["data"], data_seed=st["data_seed"], decode_epochs=args.epochs,
                        decode_fine_tune=args.fine_tune, remeasure=False, decode_warmup=args.warmup)
    at = [int(n) for n in args.at.split(",")]
    signals = ["run", "trial", *(f"own@{n}" for n in at)]
    big = ec.larger_test(st["data"], args.big_test)
    truths = ["test", "test_big"] if big else ["test"]
    seed_suffix = f"_s{args.train_seed}" if args.train_seed != ec.DECODE_SEED else ""
    name = args.out_tag or args.tag
    out = results / f"finalists{'_' + name if name else ''}{seed_suffix}.json"
    t0 = time.perf_counter()
    rows, runs, races = [], {}, {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in args.arms.split(","):
            mine, decodes = race_run(a, args, work, seed, arm, at, big)
            runs[f"{arm}-seed{seed}"] = {t: run_summary(mine, signals, t) for t in truths}
            budget = next(r for r in result["per_seed"] if r["seed"] == seed)["budget_compute"]
            record = arm_record(result, results, args.tag, arm, seed)
            races[f"{arm}-seed{seed}"] = {f"race@{n}": race_cost(mine, n, decodes, record, budget) for n in at}
            rows += mine
            # written after every run: a long benchmark stopped part way keeps the runs it finished
            doc = result_doc(args, suffix, big, rows, runs, races, signals, truths, time.perf_counter() - t0)
            atomic_write_json(out, doc)
    for name, by_truth in runs.items():
        for t, r in by_truth.items():
            print(f"{name:18s} {t:8s} ceiling {r['ceiling']:.3f}  "
                  + "  ".join(f"{s} {p['test']:.3f}" for s, p in r["picks"].items()))
    print(json.dumps(doc["summary"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
