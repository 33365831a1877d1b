"""The picks of an equal-compute run trained longer: is the short decode's order the one that counts?

`equal_compute.py` decode-trains every search's pick with one short protocol (6+1 epochs by
default); short budgets reward networks that learn fast, and a kept network trains far longer.
This trains each distinct pick of the chosen seeds of a result file again with another protocol
(`fernas decode --train`, one crop, seed 0, the file's data), without running the searches
again: the genomes are the file's `pick_vector`s.  Decodes are cached in the file's work
directory by genome, protocol, data and seed (`equal_compute.decode_key`), so a stopped run
goes on where it stopped and a second file with more seeds reuses the first's trainings.

    .venv/bin/python benchmarks/decode_picks.py --tag ashag4 --seeds 3,4 --epochs 48 --fine-tune 2
    # the seed designs under the file's cap too (the comparison's reference):
    .venv/bin/python benchmarks/decode_picks.py --tag ashag4 --seeds 0,1,2,3,4 --designs

Writes benchmarks/results/equal_compute_TAG_long.json (seeds and rows of an earlier file of the
same protocol are kept: --seeds adds).
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

from fernas.io import atomic_write_json  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="", help="the equal_compute result file's tag (equal_compute_TAG.json)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="the file's seeds whose picks to train")
    ap.add_argument("--epochs", type=int, default=48)
    ap.add_argument("--fine-tune", type=int, default=2)
    ap.add_argument("--designs", action="store_true", help="also the seed designs under the file's cap (decode seed 0)")
    return ap.parse_args(argv)


def pick_rows(a, result: dict, seeds: list[int], work: Path) -> list[dict]:
    """One row per (seed, distinct pick): the arms that picked it, its short and long test accuracy."""
    from fernas import genome as G

    rows = []
    for rec in result["per_seed"]:
        if rec["seed"] not in seeds:
            continue
        picks: dict[str, list[str]] = {}
        for arm in ec.SEARCH_ARMS:
            if rec[arm].get("pick_vector"):
                picks.setdefault(rec[arm]["pick_gid"], []).append(arm)
        for gid, arms in picks.items():
            r = rec[arms[0]]
            print(f"seed {rec['seed']}: {gid} ({', '.join(arms)})", flush=True)
            long = ec.decode(a, f"seed{rec['seed']}-{gid}", G.from_vector(r["pick_vector"]), work)
            rows.append({"seed": rec["seed"], "gid": gid, "arms": arms, "macs": long["macs"],
                         "short": r.get("decode", {}).get("test_acc_tencrop"), "long": long["test_acc_tencrop"]})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    suffix = f"_{args.tag}" if args.tag else ""
    source = ROOT / "benchmarks" / "results" / f"equal_compute{suffix}.json"
    if not source.is_file():
        raise SystemExit(f"{source}: no such result file (run benchmarks/equal_compute.py --tag {args.tag} first)")
    result = json.loads(source.read_text())
    st = result["settings"]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    a = SimpleNamespace(data=st["data"], data_seed=st["data_seed"], decode_epochs=args.epochs,
                        decode_fine_tune=args.fine_tune, remeasure=False)
    work = ROOT / "benchmarks" / "results" / "tmp" / f"equal_compute{suffix}"
    out = ROOT / "benchmarks" / "results" / f"equal_compute{suffix}_long.json"
    protocol = {"epochs": args.epochs, "fine_tune_epochs": args.fine_tune, "train_crops": 1, "seed": 0,
                "data": st["data"], "data_seed": st["data_seed"],
                "short": {"epochs": st["decode_epochs"], "fine_tune_epochs": st["decode_fine_tune"]}}
    old = json.loads(out.read_text()) if out.is_file() else {}
    if old and old.get("protocol") != protocol:
        raise SystemExit(f"{out}: measured with another protocol ({old.get('protocol')}); move it away first")
    t0 = time.perf_counter()
    rows = pick_rows(a, result, seeds, work)
    kept = [r for r in old.get("rows", []) if r["seed"] not in seeds]
    designs = dict(old.get("designs", {}))
    if args.designs:
        from fernas import genome as G
        for name, (path, _) in ec.designs_under_cap(st["max_mmacs"]).items():
            designs[name] = ec.decode(a, name, G.load_genome(path), work)["test_acc_tencrop"]
    doc = {"benchmark": "decode_picks", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "source": str(source.relative_to(ROOT)), "machine": {"cpu": ec.cpu_model()}, "protocol": protocol,
           "rows": sorted(kept + rows, key=lambda r: (r["seed"], r["gid"])), "designs": designs,
           "wall_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out, doc)
    for r in doc["rows"]:
        print(f"seed {r['seed']}  {r['gid']}  {'+'.join(r['arms']):32s} short {r['short']}  long {r['long']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
