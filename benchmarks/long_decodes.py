"""The picks of an equal-compute run trained longer: is the short decode's order the one that counts?

`equal_compute.py` decode-trains every search's pick with one short protocol (6+1 epochs by
default); short budgets reward networks that learn fast, and a kept network trains far longer.
This trains each distinct pick of the chosen seeds of a result file again with another protocol
(`fernas decode --train`, one crop, training seed `--train-seed` (0), the file's data), without running the searches
again: the genomes are the file's `pick_vector`s.  Decodes are cached in the file's work
directory by genome, protocol, data and seed (`equal_compute.decode_key`), so a stopped run
goes on where it stopped and a later invocation for more seeds reuses the earlier trainings
(`equal_compute.py` without `--reuse` deletes that directory, these decodes included).  An
arm without a pick (nothing reached the largest budget within C) is listed in `no_pick`.

    .venv/bin/python benchmarks/long_decodes.py --tag data1g4 --seeds 0,1 --epochs 48 --fine-tune 2
    # the seed designs of the file's comparison too (its reference):
    .venv/bin/python benchmarks/long_decodes.py --tag data1g4 --seeds 0,1 --designs
    # the VGG seed alone under the same protocol (no pick trained, the file's rows kept):
    .venv/bin/python benchmarks/long_decodes.py --tag data1g4 --seeds "" --vgg

Writes benchmarks/results/long_decodes_TAG.json (with `--batch-size N`, every network trained at
batch N instead of its genome's: long_decodes_TAG_bN.json, to pair with the file without it;
with `--train-seed S`, every network trained with seed S instead of 0: ..._sS.json, a replicate
that measures how much of the arms' differences is the training draw; with `--suffix NAME`,
..._NAME.json, trained again in a work directory of its own (equal_compute_TAG_NAME), e.g. on
another machine; a file that is such a replicate of the one without `--train-seed`/`--suffix`
(same protocol but the seed, same test split; with both flags, the seed-0 file of the same
suffix where there is one) pairs each pick with it under `replicate`.  A
replicate's `short` column and seeds-arm row are still the comparison's own, seed-0 trainings),
and beside it the same name with `.md`: the per-seed table, one row per arm.
With `--vgg` the VGG seed (ten times the usual cap) is trained by the same protocol too, and
`tenth_of_vgg` gives the gaps of ga-mf's mean and best pick and of the best design to it.
Rows of an earlier invocation for other seeds are kept while the result file still has the same
picks for them and the protocol is the same; `machine` is this invocation's (decodes move with
the CPU and thread count: run every seed on one machine to compare them), `invocations` lists
every invocation that wrote the file (date, flags, wall seconds). On demo data each
trained network is also tested on a test split `--big-test` times as large (`long_big`,
`designs_big`, `summary_big`; the file's 280 test images give one accuracy a standard error of
about 1.8 points at 0.9, the size of the differences between picks), and so is the seeds arm's
training of each seed where the work directory still holds it (`seeds_arm_big`: seed -> design
-> accuracy). Of files measured before `used_whole` (no `over_budget` in their settings, e.g.
ashag4) random-sh's picks may come from more than C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import equal_compute as ec  # noqa: E402

from fernas.io import atomic_write_json, atomic_write_text  # noqa: E402


EARLY_EPOCHS = (4, 8)  # the own-recipe re-ranking's lengths measured so far (benchmarks/finalists.py)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="", help="the equal_compute result file's tag (equal_compute_TAG.json)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="the file's seeds whose picks to train")
    ap.add_argument("--epochs", type=int, default=48)
    ap.add_argument("--fine-tune", type=int, default=2)
    ap.add_argument("--big-test", type=int, default=10, help="test split this many times as large (demo data; 0: none)")
    ap.add_argument("--designs", action="store_true", help="also the seed designs under the file's cap (with the decodes' training seed)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="train every network at this batch, not its genome's (writes long_decodes_TAG_bN.json)")
    ap.add_argument("--train-seed", type=int, default=ec.DECODE_SEED,
                    help="the decodes' training seed (another than 0 adds _sN to the output's name: a replicate "
                         "that says how much of the table is the training draw)")
    ap.add_argument("--warmup", type=ec.non_negative, default=ec.ProtocolConfig.augment_warmup,
                    help="epochs of augmentation warm-up of every training (fernas train --augment-warmup, default: "
                         "fernas' own; 0: the protocol of the files before it; "
                         "another than 0 adds _wN to the output's name)")
    ap.add_argument("--seeds-arm", action="store_true",
                    help="also train the seeds arm again (each seed design under the file's cap with all of the "
                         "seed's compute C, as equal_compute.py does, the search seed as training seed) with "
                         "--warmup, and test it on the larger split (seeds_arm_big)")
    ap.add_argument("--vgg", action="store_true",
                    help="also train the VGG seed (351 M multiply-adds, above every cap) with the same protocol: the "
                         "reference of the tenth-of-its-cost target (`vgg`, `vgg_big`, `tenth_of_vgg`)")
    ap.add_argument("--suffix", default="",
                    help="append _SUFFIX to the output's name and train in a work directory of its own "
                         "(e.g. the same decodes on another machine)")
    return ap.parse_args(argv)


def picks_of(rec: dict) -> dict[str, list[str]]:
    """A seed's distinct picks: {gid: the arms that picked it} (arms without a pick left out)."""
    picks: dict[str, list[str]] = {}
    for arm in ec.SEARCH_ARMS:
        if rec[arm].get("pick_vector"):
            picks.setdefault(rec[arm]["pick_gid"], []).append(arm)
    return picks


def pick_rows(a, result: dict, seeds: list[int], work: Path, big: str | None = None,
              train_seed: int = ec.DECODE_SEED) -> list[dict]:
    """One row per (seed, distinct pick): the arms that picked it, its short and long test
    accuracy (and the long one on the `big` test data, when given), trained with `train_seed`."""
    from fernas import genome as G

    rows = []
    for rec in result["per_seed"]:
        if rec["seed"] not in seeds:
            continue
        for gid, arms in picks_of(rec).items():
            r = rec[arms[0]]
            print(f"seed {rec['seed']}: {gid} ({', '.join(arms)})", flush=True)
            long = ec.decode(a, f"seed{rec['seed']}-{gid}", G.from_vector(r["pick_vector"]), work, train_seed)
            trained = ec.decode_run(a, gid, work, train_seed)
            rows.append({"seed": rec["seed"], "gid": gid, "arms": arms, "macs": long["macs"],
                         "short": r.get("decode", {}).get("test_acc_tencrop"), "long": long["test_acc_tencrop"],
                         "val_at": ec.early_val(trained, EARLY_EPOCHS)})
            if big:
                rows[-1]["long_big"] = ec.evaluate_on(trained, big, a.data_seed)
    return rows


def train_design(a, name: str, work: Path, train_seed: int, big: str | None) -> tuple[float, float | None]:
    """A genome of genomes/ (a seed design, or the VGG seed) trained with the invocation's
    protocol: its test accuracy, and on the `big` test data when given."""
    from fernas import genome as G

    doc = G.load_genome(ROOT / "genomes" / f"{name}.json")
    acc = ec.decode(a, name, doc, work, train_seed)["test_acc_tencrop"]
    if not big:
        return acc, None
    return acc, ec.evaluate_on(ec.decode_run(a, G.genome_id(doc), work, train_seed), big, a.data_seed)


def tenth_of_vgg(doc: dict) -> dict:
    """The target "match the VGG seed within a point at a tenth of its multiply-adds": the VGG
    seed, ga-mf's mean and best pick and the best design under the cap, all on the larger test
    split where there is one, with each one's gap to the VGG seed."""
    big = bool(doc.get("big_test"))
    key, ref = ("long_big", doc.get("vgg_big")) if big else ("long", doc.get("vgg"))
    mf = [r[key] for r in doc["rows"] if "ga-mf" in r["arms"] and r.get(key) is not None]
    designs = doc["designs_big" if big else "designs"]
    out = {"split": key, "vgg": ref, "ga_mf_mean": round(sum(mf) / len(mf), 4) if mf else None,
           "ga_mf_best": max(mf, default=None), "best_design": max(designs.values(), default=None)}
    if ref is not None:
        out["gap"] = {k: round(ref - out[k], 4) for k in ("ga_mf_mean", "ga_mf_best", "best_design")
                      if out[k] is not None}
    return out


def still_picked(rows: list[dict], result: dict) -> list[dict]:
    """Earlier rows whose (seed, genome, arms) the result file still has: a regenerated file's
    new picks are not mixed with the old ones' decodes."""
    now = {rec["seed"]: picks_of(rec) for rec in result["per_seed"]}
    return [r for r in rows if now.get(r["seed"], {}).get(r["gid"]) == r["arms"]]


def summary(rows: list[dict], designs: dict, key: str = "long") -> dict:
    """Each arm's long test accuracy (`key`) over the seeds (mean, std, n); ga-mf against each
    other arm seed by seed (the difference, and on how many seeds it is ahead, level or behind);
    and against the best seed design (its single decode).  Rows without `key` are left out."""
    by_arm = {arm: {r["seed"]: r[key] for r in rows if arm in r["arms"] and r.get(key) is not None}
              for arm in ec.SEARCH_ARMS}
    out = {"long_test_acc": {arm: ec.mean_std(list(v.values())) for arm, v in by_arm.items()}, "ga_mf_minus": {}}
    mf = by_arm["ga-mf"]
    for arm in ec.SEARCH_ARMS[1:]:
        diffs = [mf[s] - by_arm[arm][s] for s in sorted(mf.keys() & by_arm[arm].keys())]
        out["ga_mf_minus"][arm] = {**ec.mean_std(diffs), "ahead": sum(d > 0 for d in diffs),
                                   "level": sum(d == 0 for d in diffs), "behind": sum(d < 0 for d in diffs)}
    if designs:
        best = max(designs.values())
        out["best_design"] = best
        out["above_best_design"] = {arm: sum(v > best for v in by_arm[arm].values()) for arm in ec.SEARCH_ARMS}
    return out


def versus_first(base: dict, doc: dict) -> dict:
    """A replicate (`doc`: another training seed, or another machine) against the first file of
    the same picks (`base`): each pick's two accuracies on the larger test split (the file's own
    without one), their difference (this one minus the first), and every arm's summary with
    each pick, and each design, scored by the mean of its two trainings."""
    key = "long_big" if doc.get("big_test") else "long"
    first = {(r["seed"], r["gid"]): r.get(key) for r in base["rows"]}
    pairs = [{"seed": r["seed"], "gid": r["gid"], "arms": r["arms"], "first": first[(r["seed"], r["gid"])],
              "this": r[key]} for r in doc["rows"]
             if first.get((r["seed"], r["gid"])) is not None and r.get(key) is not None]
    diffs = [p["this"] - p["first"] for p in pairs]
    dkey = "designs_big" if key == "long_big" else "designs"
    designs = {n: round((a + doc[dkey][n]) / 2, 4) for n, a in base.get(dkey, {}).items() if n in doc.get(dkey, {})}
    pooled = [{**p, key: round((p["first"] + p["this"]) / 2, 4)} for p in pairs]
    return {"split": key, "pairs": pairs, "difference": ec.mean_std(diffs),
            "mean_abs_difference": round(sum(map(abs, diffs)) / len(diffs), 4) if diffs else None,
            "designs_pooled": designs, "pooled": summary(pooled, designs, key)}


def replicate_base(first: Path, args) -> Path:
    """The file a replicate pairs with: with another training seed and a suffix, the seed-0 file
    of the same suffix (the same machine) where there is one, else the file without either."""
    same_machine = first.with_name(f"{first.name}_{args.suffix}.json")
    if args.suffix and args.train_seed != ec.DECODE_SEED and same_machine.is_file():
        return same_machine
    return first.with_name(f"{first.name}.json")


def attach_replicate(doc: dict, base: Path, out: Path) -> None:
    """When `out` replicates `base` (another training seed or machine; the same protocol but the
    seed, the same test split), pair each pick with its training there (`doc["replicate"]`)."""
    if base == out or not base.is_file():
        return
    first = json.loads(base.read_text())
    if {**first["protocol"], "seed": doc["protocol"]["seed"]} != doc["protocol"] or \
            first.get("big_test") != doc.get("big_test"):
        print(f"{base.name}: another protocol or test split than this file's; no replicate pairing")
        return
    doc["replicate"] = {"of": base.name, **versus_first(first, doc)}


def _cell(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pick_cell(arm_rec: dict, row: dict | None) -> str:
    if not arm_rec.get("pick_gid"):
        return "no pick"
    head = f"{arm_rec['pick_gid']} ({arm_rec.get('pick_origin')})"
    return f"{head} not decoded" if row is None else f"{head} {_cell(row['long'])} / {_cell(row.get('long_big'))}"


def _seeds_row(doc: dict, recs: dict, seeds: list[int], retrained: bool = False) -> str:
    """The seeds arm: the design it picked (by validation), on the file's test / the larger one;
    the mean over the seeds that have the chosen split's figure (how many, when not all).
    `retrained`: the larger split's figures are of another training (`--seeds-arm` with another
    warm-up than the comparison's), so the comparison's own test figures are left out."""
    picked = [recs[s]["seeds"] for s in seeds]
    whole = [None if retrained else p.get("test_acc_tencrop_whole_budget") for p in picked]
    big = [doc["seeds_arm_big"].get(str(s), {}).get(p.get("pick_name")) for s, p in zip(seeds, picked)]
    known = [x for x in (big if doc.get("big_test") else whole) if x is not None]
    mean = ec.mean_std(known) if known else {"mean": None, "std": None}
    n = "" if len(known) == len(seeds) else f" ({len(known)} of {len(seeds)} seeds)"
    label = "the design" if len(picked[0].get("designs", [])) <= 1 else "the best design by validation"
    arm_w, table_w = doc.get("seeds_arm_warmup", 0), doc["protocol"].get("augment_warmup", 0)
    # the comparison's own trainings can be of another protocol than the rows above
    other = f"; warm-up {arm_w}, not this table's {table_w}" if arm_w != table_w else ""
    return (f"| seeds ({label}, trained with its share of C{other}) | "
            + " | ".join(f"{_cell(w)} / {_cell(b)}" for w, b in zip(whole, big))
            + f" | {_cell(mean['mean'])} ± {_cell(mean['std'])}{n} |")


def markdown_table(doc: dict, result: dict) -> str:
    """The per-seed table: one row per arm, one column per seed; a cell is the pick (where it
    came from) and its long test accuracy on the file's test split / on the larger one; the last
    column the mean and standard deviation over seeds on the larger split (on the file's own
    when there is none).  Then the seeds arm (its pick with its share of C) and the designs'
    own long decodes."""
    big = bool(doc.get("big_test"))
    key = "summary_big" if big else "summary"
    rows = {(r["seed"], r["gid"]): r for r in doc["rows"]}
    recs = {rec["seed"]: rec for rec in result["per_seed"]}
    seeds = sorted({r["seed"] for r in doc["rows"]} & recs.keys())
    protocol = doc["protocol"]
    batch = f" at batch {protocol['batch_size']}" if protocol.get("batch_size") else ""
    lines = ["| arm | " + " | ".join(f"seed {s}" for s in seeds)
             + f" | mean ± sd ({'larger test' if big else 'test'}) |", "|---" * (len(seeds) + 2) + "|"]
    for arm in ec.SEARCH_ARMS:
        cells = [_pick_cell(recs[s][arm], rows.get((s, recs[s][arm].get("pick_gid")))) for s in seeds]
        st = doc[key]["long_test_acc"][arm]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {_cell(st['mean'])} ± {_cell(st['std'])} |")
    retrained = doc.get("seeds_arm_warmup", 0) != result["settings"].get("decode_warmup", 0)
    lines.append(_seeds_row(doc, recs, seeds, retrained))
    for name, acc in doc["designs"].items():
        lines.append(f"| {name}, {protocol['epochs']}+{protocol['fine_tune_epochs']}{batch} (decode seed {protocol['seed']}) | "
                     + " | " * len(seeds) + f"{_cell(acc)} / {_cell(doc['designs_big'].get(name))} |")
    if "vgg" in doc:
        lines.append(f"| the VGG seed (351 M, above the cap), {protocol['epochs']}+{protocol['fine_tune_epochs']}{batch} "
                     f"(decode seed {protocol['seed']}) | " + " | " * len(seeds)
                     + f"{_cell(doc['vgg'])} / {_cell(doc.get('vgg_big'))} |")
    return "\n".join(lines) + "\n"


def retrain_seeds_arm(a, result: dict, seeds: list[int], work: Path) -> None:
    """`equal_compute.seeds_arm` of each seed, with `a`'s warm-up, in the work directory
    (reused when a finished training of the same length is there)."""
    designs = ec.designs_under_cap(result["settings"]["max_mmacs"])
    budgets = {rec["seed"]: rec["budget_compute"] for rec in result["per_seed"]}
    arm = SimpleNamespace(**vars(a), reuse=True)
    for seed in seeds:
        print(f"seed {seed}: the seeds arm (warm-up {a.decode_warmup})", flush=True)
        ec.seeds_arm(arm, seed, budgets[seed], designs, work)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    suffix = f"_{args.tag}" if args.tag else ""
    source = ROOT / "benchmarks" / "results" / f"equal_compute{suffix}.json"
    if not source.is_file():
        raise SystemExit(f"{source}: no such result file (run benchmarks/equal_compute.py --tag {args.tag} first)")
    result = json.loads(source.read_text())
    st = result["settings"]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    unknown = sorted(set(seeds) - {rec["seed"] for rec in result["per_seed"]})
    if unknown:
        raise SystemExit(f"{source}: no seed {', '.join(map(str, unknown))} there (--seeds)")
    a = SimpleNamespace(data=st["data"], data_seed=st["data_seed"], decode_epochs=args.epochs,
                        decode_fine_tune=args.fine_tune, remeasure=False, decode_batch=args.batch_size,
                        decode_warmup=args.warmup)
    work = ROOT / "benchmarks" / "results" / "tmp" / f"equal_compute{suffix}{f'_{args.suffix}' if args.suffix else ''}"
    # the first training's file, and this one's: a replicate adds the training seed or a suffix
    first = ROOT / "benchmarks" / "results" / (f"long_decodes{suffix}{f'_b{args.batch_size}' if args.batch_size else ''}"
                                               f"{f'_w{args.warmup}' if args.warmup else ''}")
    replica = (f"_s{args.train_seed}" if args.train_seed != ec.DECODE_SEED else "") + \
        (f"_{args.suffix}" if args.suffix else "")
    out = first.with_name(f"{first.name}{replica}.json")
    protocol = {"epochs": args.epochs, "fine_tune_epochs": args.fine_tune, "train_crops": ec.DECODE_TRAIN_CROPS,
                "seed": args.train_seed, **({"batch_size": args.batch_size} if args.batch_size else {}),
                **({"augment_warmup": args.warmup} if args.warmup else {}),
                "data": st["data"], "data_seed": st["data_seed"],
                "short": {"epochs": st["decode_epochs"], "fine_tune_epochs": st["decode_fine_tune"]}}
    old = json.loads(out.read_text()) if out.is_file() else {}
    if old and old.get("protocol") != protocol:
        raise SystemExit(f"{out}: measured with another protocol ({old.get('protocol')}); move it away first")
    t0 = time.perf_counter()
    big = ec.larger_test(st["data"], args.big_test)
    if old.get("big_test") and big and old["big_test"] != big:
        raise SystemExit(f"{out}: its larger test split is {old['big_test']}, not {big}; move it away first")
    rows = pick_rows(a, result, seeds, work, big, args.train_seed)
    kept = still_picked([r for r in old.get("rows", []) if r["seed"] not in seeds], result)
    designs, designs_big = dict(old.get("designs", {})), dict(old.get("designs_big", {}))
    if args.designs:  # the designs the comparison decoded, not today's genomes/ folder
        for name in result["references"]["seed_designs_decode"]:
            designs[name], acc_big = train_design(a, name, work, args.train_seed, big)
            if big:
                designs_big[name] = acc_big
    vgg = {k: old[k] for k in ("vgg", "vgg_big") if k in old}
    if args.vgg:
        vgg["vgg"], vgg["vgg_big"] = train_design(a, ec.VGG, work, args.train_seed, big)
    # the seeds arm's trainings (each design with all of C), where the work directory still has
    # them: the comparison's own, or those an earlier --seeds-arm trained again (kept)
    arm_warmup = old.get("seeds_arm_warmup", st.get("decode_warmup", 0))
    if args.seeds_arm:  # the seeds arm trained again, with this invocation's warm-up
        arm_warmup = args.warmup
        retrain_seeds_arm(a, result, seeds, work)
    seeds_big = {str(s): {m.parent.name: ec.evaluate_on(m.parent, big, a.data_seed)
                          for m in sorted(ec.seeds_dir(work, s, arm_warmup).glob("*/model.pt"))}
                 for s in seeds if big and ec.seeds_dir(work, s, arm_warmup).is_dir()}
    no_pick = [{"seed": rec["seed"], "arm": arm} for rec in result["per_seed"] for arm in ec.SEARCH_ARMS
               if not rec[arm].get("pick_vector")]
    doc = {"benchmark": "long_decodes", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "source": str(source.relative_to(ROOT)), "machine": {"cpu": ec.cpu_model()}, "protocol": protocol,
           "rows": sorted(kept + rows, key=lambda r: (r["seed"], r["gid"])), "designs": designs,
           "no_pick": no_pick, "big_test": big, "designs_big": designs_big,
           # earlier invocations' seeds-arm figures only where they had the same warm-up
           "seeds_arm_big": {**(old.get("seeds_arm_big", {}) if old.get("seeds_arm_warmup", 0) == arm_warmup else {}),
                             **seeds_big},
           "seeds_arm_warmup": arm_warmup, **vgg}
    doc["summary"] = summary(doc["rows"], designs)
    if big:
        doc["summary_big"] = summary(doc["rows"], designs_big, "long_big")
    if vgg:
        doc["tenth_of_vgg"] = tenth_of_vgg(doc)
    attach_replicate(doc, replicate_base(first, args), out)
    # every invocation that wrote this file, with what it trained: one row's figures may come
    # from an earlier one, so a single wall time would misstate what the file cost
    doc["invocations"] = old.get("invocations", []) + [
        {"date": doc["date"], "argv": argv, "wall_seconds": round(time.perf_counter() - t0, 1)}]
    atomic_write_json(out, doc)
    atomic_write_text(out.with_suffix(".md"), markdown_table(doc, result))
    for r in doc["rows"]:
        print(f"seed {r['seed']}  {r['gid']}  {'+'.join(r['arms']):32s} short {r['short']}  long {r['long']}"
              + (f"  long on {big} {r.get('long_big')}" if big else ""))
    for key in ("summary", "summary_big"):
        for arm, st in doc.get(key, {}).get("long_test_acc", {}).items():
            print(f"{arm:12s} long test accuracy{' (larger test)' if key == 'summary_big' else ''} "
                  f"{st['mean']} +- {st['std']} over {st['n']} seeds")
    if "tenth_of_vgg" in doc:
        print(f"tenth of VGG ({doc['tenth_of_vgg']['split']}): {doc['tenth_of_vgg']}")
    if "replicate" in doc:
        v = doc["replicate"]
        print(f"against {v['of']} ({v['split']}, {v['difference']['n']} picks): difference "
              f"{v['difference']['mean']} +- {v['difference']['std']}, mean absolute {v['mean_abs_difference']}")
        for arm, st in v["pooled"]["long_test_acc"].items():
            print(f"{arm:12s} mean of the two trainings {st['mean']} +- {st['std']} over {st['n']} seeds")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
