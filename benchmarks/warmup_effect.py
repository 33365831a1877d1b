"""What the augmentation warm-up (`fernas train --augment-warmup`) does to the long decodes of
an equal-compute comparison's picks: pairs of `long_decodes.py` files, each pair the same picks
trained with the same seed on the same machine, without (`--warmup 0`) and with the warm-up.

    .venv/bin/python benchmarks/long_decodes.py --tag fairb --designs --warmup 0 --suffix intel
    .venv/bin/python benchmarks/long_decodes.py --tag fairb --designs --warmup 8 --suffix intel
    .venv/bin/python benchmarks/warmup_effect.py --tag fairb \\
        --pair long_decodes_fairb_intel.json long_decodes_fairb_w8_intel.json

Writes benchmarks/results/warmup_effect_TAG.json: per pair, each pick's test accuracy (the
larger test split where the files have one) without and with the warm-up and the difference;
each arm's mean over seeds and the seed designs' accuracy under both; how well the first
epochs of each decode rank the picks (`early_rank`: Spearman between the validation accuracy
after 4 and 8 epochs, a proxy of what `--rerank-recipe own` sees, and the test accuracy of the
decode with the warm-up, or without it for `without_vs_without`); over all pairs,
the differences pooled, and how many picks left chance-like accuracies (below `--slow`) behind.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import equal_compute as ec  # noqa: E402
import long_decodes as ld  # noqa: E402

from fernas.io import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", required=True, help="names the output: warmup_effect_TAG.json")
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("WITHOUT.json", "WITH.json"),
                    help="two long_decodes files under benchmarks/results/ (repeatable)")
    ap.add_argument("--slow", type=float, default=0.6,
                    help="a training below this test accuracy counts as one that left chance late or never")
    return ap.parse_args(argv)


def load_pair(without: str, with_: str) -> tuple[dict, dict]:
    """The two files, refused unless they differ in the warm-up alone."""
    docs = []
    for name in (without, with_):
        path = RESULTS / name
        if not path.is_file():
            raise SystemExit(f"{path}: no such long_decodes file")
        docs.append(json.loads(path.read_text()))
    a, b = docs
    if a["protocol"].get("augment_warmup", 0) or not b["protocol"].get("augment_warmup"):
        raise SystemExit(f"{without} must be without the warm-up and {with_} with it (their protocol's augment_warmup)")
    if {**b["protocol"], "augment_warmup": 0} != {**a["protocol"], "augment_warmup": 0} or \
            a.get("big_test") != b.get("big_test") or a.get("source") != b.get("source"):
        raise SystemExit(f"{without} and {with_}: other protocols, test splits or comparisons besides the warm-up")
    if a.get("machine") != b.get("machine"):
        raise SystemExit(f"{without} and {with_}: trained on other machines ({a.get('machine')}, {b.get('machine')})")
    return a, b


def early_rank(doc: dict, truth: dict, key: str) -> dict[str, float | None]:
    """Spearman between a file's validation accuracy after the first N epochs of each decode
    (`val_at`: a proxy of what an own-recipe re-ranking sees) and `truth`'s test accuracy of the
    same pick, over the picks both hold, for each N recorded."""
    test = {(r["seed"], r["gid"]): r.get(key) for r in truth["rows"]}
    rows = [r for r in doc["rows"] if test.get((r["seed"], r["gid"])) is not None and r.get("val_at")]
    epochs = sorted({e for r in rows for e in r["val_at"]}, key=int)
    return {e: ec.spearman([r["val_at"][e] for r in rows if e in r["val_at"]],
                           [test[(r["seed"], r["gid"])] for r in rows if e in r["val_at"]]) for e in epochs}


def pair_record(without: str, with_: str, slow: float) -> dict:
    a, b = load_pair(without, with_)
    paired = ld.versus_first(a, b)
    key = paired["split"]
    sums = "summary_big" if key == "long_big" else "summary"
    designs = "designs_big" if key == "long_big" else "designs"
    pairs = [{"seed": p["seed"], "gid": p["gid"], "arms": p["arms"], "without": p["first"], "with": p["this"],
              "difference": round(p["this"] - p["first"], 4)} for p in paired["pairs"]]
    return {"without": without, "with": with_, "warmup": b["protocol"]["augment_warmup"],
            "training_seed": a["protocol"]["seed"], "machine": a.get("machine"), "split": key, "pairs": pairs,
            "difference": paired["difference"],
            "slow": {"without": sum(p["without"] < slow for p in pairs), "with": sum(p["with"] < slow for p in pairs),
                     "of": len(pairs)},
            "arms": {"without": a.get(sums, {}).get("long_test_acc"), "with": b.get(sums, {}).get("long_test_acc")},
            "designs": {"without": a.get(designs), "with": b.get(designs)},
            # the first epochs of either decode against the end of the one with the warm-up (the
            # network kept), and the decode without it against its own end
            "early_rank": {"without_vs_with": early_rank(a, b, key), "with_vs_with": early_rank(b, b, key),
                           "without_vs_without": early_rank(a, a, key)}}


def main(argv=None) -> int:
    args = parse_args(argv)
    records = [pair_record(w0, w, args.slow) for w0, w in args.pair]
    diffs = [p["difference"] for r in records for p in r["pairs"]]
    fast = [p["difference"] for r in records for p in r["pairs"] if p["without"] >= args.slow]
    doc = {"benchmark": "warmup_effect", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "slow_below": args.slow, "pairs": records,
           "pooled": {"difference": ec.mean_std(diffs), "difference_where_fast_without": ec.mean_std(fast),
                      "slow_without": sum(r["slow"]["without"] for r in records),
                      "slow_with": sum(r["slow"]["with"] for r in records),
                      "trainings": len(diffs)}}
    out = RESULTS / f"warmup_effect_{args.tag}.json"
    atomic_write_json(out, doc)
    for r in records:
        print(f"{r['without']} -> {r['with']}: difference {r['difference']}, below {args.slow}: "
              f"{r['slow']['without']} -> {r['slow']['with']} of {r['slow']['of']}")
    print(f"pooled over {len(diffs)} pairs: {doc['pooled']['difference']}; where fast without: "
          f"{doc['pooled']['difference_where_fast_without']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
