"""benchmarks/chance_rates.py on hand-written run directories (a training shared by two runs
counts once, runs of other data are skipped, the JSON holds the pooled table) and
trial_variants.summary on hand-made rows."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import chance_rates  # noqa: E402

from test_run_analysis import first  # noqa: E402


def write_run(path: Path, rows: list[dict], data: str = "demo:1400,560,280") -> Path:
    path.mkdir(parents=True)
    cfg = {"options": {"data": data, "data_args": {"data_seed": 0}},
           "fitness": {"budgets": [2, 4], "chance_level": 0.16}}
    (path / "config.json").write_text(json.dumps(cfg))
    with (path / "trials.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["gid", "seed", *rows[0]])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"gid": r.pop("gid", f"g{i}"), "seed": r.pop("seed", "0"), **r})
    return path


def test_pools_distinct_trainings_of_matching_runs(tmp_path):
    shared = {**first("adam", 0.15), "gid": "same"}
    a = write_run(tmp_path / "a", [dict(shared), first("sgd", 0.5), first("sgd", 0.4)])
    b = write_run(tmp_path / "b", [dict(shared), {**first("adam", 0.12), "gid": "other"},
                                   {**first("sgd", 0.3), "gid": "third"}, {**first("sgd", 0.6), "gid": "fourth"}])
    c = write_run(tmp_path / "c", [first("adam", 0.1)], data="demo:1000,560,280")
    d = write_run(tmp_path / "d", [{**first("adam", 0.1), "gid": "same", "seed": "1"}])
    out = tmp_path / "chance.json"
    args = [str(a), str(b), str(c), str(d), str(a), str(tmp_path / "typo"), "--out", str(out)]
    assert chance_rates.main(args) == 0
    doc = json.loads(out.read_text())
    # a's g1/g2, b's other/third/fourth are distinct; "same" with seed 0 counts once, with seed 1 (d) too
    assert (doc["trainings"], doc["at_chance"], doc["budget"]) == (7, 3, 2)
    assert doc["skipped"] == [str(c)] and doc["runs"] == [str(a), str(b), str(d)]  # a given twice: once
    assert doc["not_runs"] == [str(tmp_path / "typo")] and doc["argv"] == args
    optimizer = next(e for e in doc["properties"] if e["property"] == "optimizer")
    assert optimizer["means"] == {"adam": [1.0, 3], "sgd": [0.0, 4]}
    # --budget 4: every run's smallest budget is 2, so none is pooled
    assert chance_rates.main([str(a), "--budget", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["skipped"] == [str(a)]


def test_trial_variants_summary_counts_chance_and_ranks_by_fernas_rule():
    import trial_variants

    def row(own, variant, long, own_loss=1.9, variant_loss=1.9):
        return {"own": {"status": "ok", "val_acc": own, "val_loss": own_loss, "train_seconds": 1.0},
                "variant": {"status": "ok", "val_acc": variant, "val_loss": variant_loss, "train_seconds": 2.0},
                "long": long}

    failed = row(0.0, 0.3, 0.8)
    failed["own"]["status"] = "failed"

    rows = [row(0.15, 0.30, 0.5), row(0.15, 0.40, 0.7, own_loss=1.5), row(0.20, 0.50, 0.9),
            row(0.15, 0.20, None), failed]  # no long accuracy, a failed training: left out
    s = trial_variants.summary(rows, chance=0.16, top="48")
    assert s["genomes"] == 3
    assert s["own"]["at_or_below_chance"] == 2 and s["variant"]["at_or_below_chance"] == 0
    # own: the two at chance tie on accuracy and the lower loss ranks higher -> the long order
    assert s["own"]["spearman_vs_48"] == 1.0 and s["variant"]["spearman_vs_48"] == 1.0
    assert (s["own"]["train_seconds"], s["variant"]["train_seconds"]) == (3.0, 6.0)
