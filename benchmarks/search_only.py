"""fernas' GA (or random search) with successive halving and no re-ranking, given all of C.

`equal_compute.py` gives ga-mf a budget C of which its search spends S (about 0.55 C on
`demo-hard`) and its re-ranking the rest.  On `demo-hard` the re-ranking kept a worse finalist
than the search's own order on two of five seeds, and ga-single's picks were ga-mf's search's
best: so is C better spent searching longer?  This arm answers it at the same C, per seed, read
from an `equal_compute` result file (its other arms are not run again):

    ga-mf-all    fernas evolve --strategy ga with ga-mf's budgets, immigrants and trial recipe,
                 --rerank-top 0, more generations than C needs and --max-compute C (its running
                 trials finish, so it ends somewhat above C); its pick is best.json (the largest
                 budget first, then the accuracy there: the search's own order)

    ga-mf-all-bN  the same with --max-budget N (`--max-budget N`): rungs up to N epochs, its
                 fitness the accuracy after N epochs of a schedule N epochs long, so it can see
                 a network that learns on after 8 (its best-so-far is at N epochs, so its
                 "reach" of the baselines' 8-epoch bests is not computed)
    random-sh-all[-bN]  the same with `--strategy random` (`--strategy random`): is it the
                 budgets or the GA?

Each arm's file also holds, seed by seed, the picks of the other search_only arms run from the
same source file (paired: the same machine, the same decode cache).

The pick is decode-trained by `equal_compute.py`'s protocol and cache (the same training
seeds, the same work directory: an earlier arm's decode of the same genome is reused).  Also the
run's top three (hall of fame order) for a race (`finalists.py`), and the compute after which its
best-so-far reached each baseline's final best.

    .venv/bin/python benchmarks/search_only.py --tag hard --seeds 0,1,2,3,4
    # then, on the same machine: the other arms' picks trained again here, paired
    .venv/bin/python benchmarks/search_only.py --tag hard --seeds 0,1,2,3,4 --reuse --redecode ga-single,seeds
    .venv/bin/python benchmarks/search_only.py --tag hard --seeds 0,1,2,3,4 --max-budget 16
    .venv/bin/python benchmarks/search_only.py --tag hard --seeds 0,1,2 --max-budget 16 --strategy random
Output: benchmarks/results/search_only_TAG.json (ga-mf-all), search_only_TAG_ARM.json (the others),
written after each seed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import equal_compute as EC  # noqa: E402
from search_quality import mean_std  # noqa: E402

from fernas.io import atomic_write_json  # noqa: E402

ARM = "ga-mf-all"  # the first arm: search_only_TAG.json
BASE_ARMS = {"ga": ARM, "random": "random-sh-all"}  # equal_compute.arm_flags' names


def arm_name(settings: dict, max_budget: int | None, strategy: str = "ga") -> str:
    """ga-mf-all or random-sh-all, with -bN where --max-budget N differs from the source file's."""
    base = BASE_ARMS[strategy]
    return base if max_budget in (None, settings["max_budget"]) else f"{base}-b{max_budget}"


def arm_namespace(settings: dict, reuse: bool, max_budget: int | None = None,
                  strategy: str = "ga") -> argparse.Namespace:
    """The source file's equal_compute settings, as `equal_compute.parse_args` would give them
    (with another maximum budget where given)."""
    a = EC.parse_args([])
    for k, v in settings.items():
        if hasattr(a, k):
            setattr(a, k, v)
    a.reuse, a.remeasure, a.add, a.started = reuse, False, False, time.time()
    a.arm, a.flags_arm = arm_name(settings, max_budget, strategy), BASE_ARMS[strategy]
    a.same_budgets = max_budget in (None, settings["max_budget"])
    if max_budget is not None:
        a.max_budget = max_budget
    return a


def run_arm(a, seed: int, budget: float, work: Path) -> dict:
    """The search of this arm on one seed (reused when finished with the same command)."""
    run = EC.run_search(a, a.flags_arm, seed, work / f"{a.arm}-seed{seed}", budget)
    return {**run, "command": " ".join(json.loads((run["out"] / "config.json").read_text())["argv"])}


def top_three(out: Path) -> list[dict]:
    """The run's hall of fame's first three: genome id, vector and score (for a race)."""
    from fernas.evolve import Evolution

    ev = Evolution.load(out / "checkpoint.json")
    return [{"gid": ind.gid, "vector": [int(v) for v in ind], "val_acc": ev.cache.get(ind.gid, {}).get("val_acc")}
            for ind in ev.hall_of_fame()[:3]]


def decode_here(a, src: dict, arm: str, work: Path) -> float | None:
    """The source file's pick of `arm` decode-trained again on this machine (training seed 0;
    "seeds": the seed design): one genome with one seed can test points apart on two CPUs."""
    from fernas import genome as G

    if arm == "seeds":
        name = src["seeds"]["pick_name"]
        doc = G.load_genome(EC.ROOT / "genomes" / f"{name}.json")
    elif src[arm].get("pick_vector"):
        name, doc = f"{arm}-seed{src['seed']}-{src[arm]['pick_gid']}", G.from_vector(src[arm]["pick_vector"])
    else:
        return None
    return EC.decode(a, name, doc, work)["test_acc_tencrop"]


def rung_correlations(trials: list[dict]) -> dict:
    """Spearman between each budget's accuracies and the next budget's, over the genomes that
    reached the next ("4->8", "8->16"): does a longer rung reorder what the shorter one saw?"""
    budgets = sorted({int(t["budget"]) for t in trials if t.get("kind") in ("first", "promotion")})
    return {f"{lo}->{hi}": EC.promoted_correlation(trials, lo, hi) for lo, hi in zip(budgets, budgets[1:])}


def reach_share(rec: dict, other: dict, budget: float) -> float | None:
    """The share of C after which `rec`'s best-so-far reached `other`'s final best (None: never)."""
    x = EC.compute_to_reach(rec, EC.final_best(other))
    return None if x is None else round(x / budget, 3)


def seed_result(a, src: dict, run: dict, work: Path, train_seeds: list[int], redecode: list[str],
                siblings: dict[str, dict] | None = None) -> dict:
    """One seed's figures: compute, seconds, pick and its decodes, reach of each baseline's best;
    `siblings`: the other search_only arms' records of this seed, by arm."""
    from fernas import genome as G

    budget = src["budget_compute"]
    rec = {"seed": src["seed"], "budget_compute": budget, **EC.arm_record(a, run, run["trials"], True),
           "rank_correlation": EC.promoted_correlation(run["trials"], a.min_budget, a.max_budget),
           "rank_correlation_rungs": rung_correlations(run["trials"]),
           "top3": top_three(run["out"]), "command": run["command"]}
    rec["compute_vs_budget"] = round(rec["compute"] / budget, 3)
    name, doc = f"{a.arm}-seed{src['seed']}-{rec['pick_gid']}", G.from_vector(rec["pick_vector"])
    rec["decode"] = {str(s): EC.decode(a, name, doc, work, seed=s)["test_acc_tencrop"] for s in train_seeds}
    if a.same_budgets:  # a longer maximum budget's best-so-far is in other units than the baselines'
        rec["compute_to_reach_final_best_of"] = {arm: reach_share(rec, src[arm], budget) for arm in EC.SEARCH_ARMS}
    rec["source_arms"] = {arm: {"pick_gid": src[arm].get("pick_gid"),
                                "decode": src[arm].get("decode", {}).get("test_acc_tencrop"),
                                "final_best_val": EC.final_best(src[arm])} for arm in EC.SEARCH_ARMS}
    rec["source_arms"]["seeds"] = {"pick_name": src["seeds"]["pick_name"],
                                   "test_whole_budget": src["seeds"]["test_acc_tencrop_whole_budget"]}
    for arm in redecode:
        rec["source_arms"][arm]["decode_here"] = decode_here(a, src, arm, work)
    for arm, other in (siblings or {}).items():
        rec["source_arms"][arm] = {"pick_gid": other["pick_gid"], "decode": other["decode"].get("0"),
                                   "best_val": EC.final_best(other)}
        if a.same_budgets and "-b" not in arm:  # paired: the same machine, the same budgets
            rec["compute_to_reach_final_best_of"][arm] = reach_share(rec, other, budget)
    return rec


def keep_decodes_here(rec: dict, old: dict, same_machine: bool) -> None:
    """Carry the earlier file's re-decodes on this machine (`--redecode`) into `rec` for the arms
    not re-decoded now, when that file was written on this machine and the arm's pick is the
    same: a later invocation without --redecode must not drop them."""
    def pick(arm_rec: dict):
        return arm_rec.get("pick_gid") or arm_rec.get("pick_name")

    for arm, was in old.get("source_arms", {}).items() if same_machine else ():
        now = rec["source_arms"].get(arm)
        if was.get("decode_here") is not None and now is not None and now.get("decode_here") is None \
                and pick(now) == pick(was):
            now["decode_here"] = was["decode_here"]


def sibling_records(results: Path, tag: str, source: str, this: str) -> dict[str, dict[int, dict]]:
    """The other search_only arms' records from the same source file, by arm and seed."""
    found = {}
    for path in sorted(results.glob(f"search_only_{tag}*.json")):
        d = json.loads(path.read_text())
        if d.get("source") == source and d.get("arm") != this:
            found[d["arm"]] = {r["seed"]: r for r in d["per_seed"]}
    return found


def summarize(per_seed: list[dict], train_seeds: list[int], this: str) -> dict:
    """Means over seeds of arm `this` beside the source file's arms (training seed 0 decodes)."""
    s = {this: {f"decode_seed{t}": mean_std([r["decode"].get(str(t)) for r in per_seed]) for t in train_seeds}}
    s[this]["compute_vs_budget"] = mean_std([r["compute_vs_budget"] for r in per_seed])
    paired = [arm for arm in per_seed[0]["source_arms"]
              if arm not in (*EC.SEARCH_ARMS, "seeds") and all(arm in r["source_arms"] for r in per_seed)]
    for arm in paired:  # the other search_only arms, on the seeds that every one ran
        s[arm] = {"decode_seed0": mean_std([r["source_arms"][arm]["decode"] for r in per_seed])}
    for arm in EC.SEARCH_ARMS:
        s[arm] = {"decode_seed0": mean_std([r["source_arms"][arm]["decode"] for r in per_seed])}
    s["seeds"] = {"test_whole_budget": mean_std([r["source_arms"]["seeds"]["test_whole_budget"] for r in per_seed])}
    for arm in [*EC.SEARCH_ARMS, "seeds"]:  # the picks decode-trained again on this machine, where done
        here = [r["source_arms"][arm].get("decode_here") for r in per_seed]
        if any(x is not None for x in here):
            s[arm]["decode_here_seed0"] = mean_std(here)
    reach = [r.get("compute_to_reach_final_best_of", {}) for r in per_seed]
    s["compute_to_reach"] = {  # the target: another arm's final best within a quarter of C
        arm: {"per_seed": [x.get(arm) for x in reach],
              "within_quarter": sum(x.get(arm) is not None and x[arm] <= 0.25 for x in reach)}
        for arm in dict.fromkeys(k for x in reach for k in x)}
    s["same_pick_as"] = {other: sum(r["pick_gid"] == r["source_arms"][other]["pick_gid"] for r in per_seed)
                         for other in [*EC.SEARCH_ARMS, *paired]}
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="hard", help="the equal_compute result file's tag (C per seed from it)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--train-seeds", default="0", help="training seeds of each pick's decode")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs and decodes in the work directory")
    ap.add_argument("--redecode", default="", help="arms of the source file (or seeds: the seed design) whose "
                    "picks to decode-train again on this machine, comma-separated")
    ap.add_argument("--max-budget", type=int, default=None,
                    help="the largest budget in epochs (default: the source file's); another gives the arm "
                    "ga-mf-all-bN")
    ap.add_argument("--strategy", choices=sorted(BASE_ARMS), default="ga",
                    help="fernas evolve's searcher (random: the arm random-sh-all[-bN])")
    args = ap.parse_args(argv)
    results = ROOT / "benchmarks" / "results"
    src_file = results / f"equal_compute_{args.tag}.json"
    src = json.loads(src_file.read_text())
    a = arm_namespace(src["settings"], args.reuse, args.max_budget, args.strategy)
    work = results / "tmp" / f"equal_compute_{args.tag}"
    work.mkdir(parents=True, exist_ok=True)
    out_json = results / (f"search_only_{args.tag}.json" if a.arm == ARM else f"search_only_{args.tag}_{a.arm}.json")
    siblings = sibling_records(results, args.tag, src_file.name, a.arm)
    train_seeds = [int(s) for s in args.train_seeds.split(",")]
    old = json.loads(out_json.read_text()) if out_json.is_file() else {}
    by_seed = {r["seed"]: r for r in old.get("per_seed", [])}
    t0 = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        rec = next(r for r in src["per_seed"] if r["seed"] == seed)
        print(f"seed {seed}: C = {rec['budget_compute']:.3e}", flush=True)
        run = run_arm(a, seed, rec["budget_compute"], work)
        result = seed_result(a, rec, run, work, train_seeds, [x for x in args.redecode.split(",") if x],
                             {arm: recs[seed] for arm, recs in siblings.items() if seed in recs})
        if result["wall_s"] is None and seed in by_seed:  # a reused run: its seconds as first measured
            result["wall_s"] = by_seed[seed]["wall_s"]
        keep_decodes_here(result, by_seed.get(seed, {}), old.get("machine", {}).get("cpu") == EC.cpu_model())
        by_seed[seed] = result
        per_seed = [by_seed[k] for k in sorted(by_seed)]
        atomic_write_json(out_json, {
            "benchmark": "search_only", "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "source": src_file.name, "machine": {"cpu": EC.cpu_model()}, "arm": a.arm,
            "protocol": __doc__.split("\n\n")[1:6],
            "settings": {**src["settings"], "max_budget": a.max_budget, "strategy": args.strategy},
            "per_seed": per_seed, "summary": summarize(per_seed, train_seeds, a.arm),
            "wall_seconds": round(time.perf_counter() - t0, 1)})
        print(f"  pick {by_seed[seed]['pick_gid']} decode {by_seed[seed]['decode']} "
              f"compute/C {by_seed[seed]['compute_vs_budget']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
