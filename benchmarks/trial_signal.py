"""Does a trial's score order the networks a user keeps?

Over every genome of an equal-compute work directory that was decode-trained by
`equal_compute.py`'s protocol (48+2 epochs with the warm-up, training seed 0, ten-crop test),
the Spearman between the decode's test accuracy and each signal a search or a race could choose
by:

* `acc@B`, `loss@B`: the trial recipe's validation accuracy and loss at budget B (the mean over
  the genome's first trainings and promotions at B, in every run of the directory): what the
  search's fitness and its re-ranking's order act on;
* `own@N`: the decode's own validation accuracy after its N-th epoch: what `--race N` sees (read
  from the very training whose test it predicts, so it shares that training's draw).

The genomes are the searches' picks and finalists, not a random sample of the space: the
question is whether these signals order the networks a search ends up choosing between.

    .venv/bin/python benchmarks/trial_signal.py --tag hard
Output: benchmarks/results/trial_signal_TAG.json
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import equal_compute as ec  # noqa: E402
from budget_correlation import spearman  # noqa: E402

from fernas.io import atomic_write_json  # noqa: E402

RACE_EPOCHS = (4, 8, 16)


def trial_scores(work: Path) -> dict[str, dict[int, dict]]:
    """Every genome's trial-recipe figures by budget over the directory's runs: mean validation
    accuracy and loss of its first trainings and promotions there, and how many."""
    seen: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for path in sorted(work.glob("*/trials.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r["status"] == "ok" and r["kind"] in ("first", "promotion") and r["val_acc"] and r["val_loss"]:
                    seen.setdefault(r["gid"], {}).setdefault(int(r["budget"]), []).append(
                        (float(r["val_acc"]), float(r["val_loss"])))
    return {gid: {b: {"acc": statistics.mean(a for a, _ in v), "loss": statistics.mean(x for _, x in v), "n": len(v)}
                  for b, v in by_budget.items()} for gid, by_budget in seen.items()}


def decoded(a, work: Path) -> dict[str, Path]:
    """The genomes decode-trained by the protocol of `a` with training seed 0: their run directories."""
    from fernas import genome as G

    out = {}
    for genome in sorted((work / "decode").glob("*/genome.json")):
        gid = G.genome_id(G.load_genome(genome))
        run = ec.decode_run(a, gid, work)
        if run.parent == genome.parent and (run / "metrics.json").is_file():
            out[gid] = run
    return out


def signal_rows(a, work: Path) -> list[dict]:
    """One row per decoded genome: its test accuracy and every signal it has."""
    trials = trial_scores(work)
    rows = []
    for gid, run in decoded(a, work).items():
        row = {"gid": gid, "test": json.loads((run / "metrics.json").read_text())["test_accuracy_tencrop"]}
        for b, t in sorted(trials.get(gid, {}).items()):
            row[f"acc@{b}"], row[f"loss@{b}"], row[f"trials@{b}"] = round(t["acc"], 4), round(t["loss"], 4), t["n"]
        row.update({f"own@{n}": v for n, v in ec.early_val(run, RACE_EPOCHS).items()})
        rows.append(row)
    return rows


def correlations(rows: list[dict]) -> dict[str, dict]:
    """Spearman of each signal with the test accuracy, over the rows that have it (a loss
    negated, so that a positive value means the signal orders as the test does)."""
    signals = sorted({k for r in rows for k in r if k.startswith(("acc@", "loss@", "own@"))})
    out = {}
    for s in signals:
        have = [r for r in rows if r.get(s) is not None]
        sign = -1.0 if s.startswith("loss@") else 1.0
        out[s] = {"n": len(have), "spearman": spearman([sign * r[s] for r in have], [r["test"] for r in have])}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="hard", help="the equal_compute result file's tag (its settings and work directory)")
    args = ap.parse_args(argv)
    results = ROOT / "benchmarks" / "results"
    settings = json.loads((results / f"equal_compute_{args.tag}.json").read_text())["settings"]
    a = argparse.Namespace(**{**vars(ec.parse_args([])), **settings})
    work = results / "tmp" / f"equal_compute_{args.tag}"
    rows = signal_rows(a, work)
    doc = {"benchmark": "trial_signal", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "source": f"equal_compute_{args.tag}.json", "machine": {"cpu": ec.cpu_model()},
           "protocol": __doc__.split("\n\n")[1:4], "rows": rows, "spearman": correlations(rows)}
    out = results / f"trial_signal_{args.tag}.json"
    atomic_write_json(out, doc)
    for s, c in doc["spearman"].items():
        print(f"{s:10s} n {c['n']:3d}  spearman {c['spearman']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
