"""benchmarks/search_quality.py on a tiny budget: both strategies through `fernas evolve`
(real Ray, real trainer), the decode training of each best, the JSON and the plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from fernas import genome as G

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_search_quality", ROOT / "benchmarks" / "search_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny(width: int, lr: float) -> dict:
    return G.validate({
        "fernas_genome": 1, "name": f"tiny{width}",
        "stages": [{"block": "conv", "repeats": 1, "width": width, "kernel": 3, "dropout": 0.0, "pool": "max"}],
        "head": {"reduce": "avg", "fc": []},
        "train": {"optimizer": "adam", "lr": lr, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}})


def test_small_search_quality_run_writes_json_and_plot(tmp_path, monkeypatch):
    # one end-to-end run, with a cost objective (hypervolume on top of everything else). The
    # accuracy-only run (`make bench`'s default) differs only by skipping the `if cost_key:`
    # blocks; it is not run here, as a second end-to-end run costs the suite over a minute
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for d in (tiny(16, 1e-3), tiny(24, 2e-3)):
        G.save_genome(d, seeds / f"{d['name']}.json")
    out, png = tmp_path / "sq.json", tmp_path / "best_vs_trials.png"
    bench = load_bench()
    assert bench.main(["--seeds", "0", "--pop", "3", "--generations", "2", "--data", "demo:140,70,70",
                       "--epochs", "1", "--steps", "1", "--max-mmacs", "60", "--decode-epochs", "1",
                       "--seed-genomes", str(seeds / "*.json"), "--out", str(out), "--plot", str(png),
                       "--work", str(tmp_path / "work"), "--objectives", "accuracy,params"]) == 0
    res = json.loads(out.read_text())
    assert png.stat().st_size > 0
    assert res["benchmark"] == "search_quality" and res["machine"]["cpus"] and res["versions"]["torch"]
    assert "--strategy random" in res["baseline"]
    (rec,) = res["per_seed"]
    n = rec["budget_trials"]
    assert n >= 2 and res["summary"]["budget_trials_common"] == n
    for s in ("ga", "random"):
        r = rec[s]
        assert len(r["curve"]) == n and r["curve"] == sorted(r["curve"])  # best so far never drops
        assert r["best_val_acc"] == r["curve"][-1]
        assert 0.0 <= r["decode"]["test_acc_tencrop"] <= 1.0
        assert res["summary"]["best_val_acc"][s]["n"] == 1
    # the same generation 0 (the two seed designs are trained first by both, to the same accuracy)
    from fernas.evolve import read_outcomes

    ga0 = read_outcomes(tmp_path / "work" / "ga-seed0" / "checkpoint.json")
    rn0 = read_outcomes(tmp_path / "work" / "random-seed0" / "checkpoint.json")
    g0 = lambda c: {g: e["val_acc"] for g, e in c.items() if e["generation"] == 0}  # noqa: E731
    assert g0(ga0) == g0(rn0)
    assert set(res["target"]) >= {"reaches_in_half", "ends_above", "met"}
    # retrain each run's best with its own and another seed
    spec = importlib.util.spec_from_file_location("bench_fitness_noise", ROOT / "benchmarks" / "fitness_noise.py")
    noise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noise)
    assert noise.main(["--work", str(tmp_path / "work"), "--repeats", "1", "--out", str(tmp_path / "fn.json")]) == 0
    fn = json.loads((tmp_path / "fn.json").read_text())
    assert fn["summary"]["genomes"] == 2 and set(fn["summary"]["by_strategy"]) == {"ga", "random"}
    for g in fn["genomes"]:
        # the run's best over all its trials (the comparison cuts both to a common budget)
        assert g["stored_val_acc"] >= rec[g["run"].split("-")[0]]["best_val_acc"] - 1e-4
        assert len(g["other_seeds_val_acc"]) == 1 and 0.0 <= g["same_seed_val_acc"] <= 1.0
    # the front of each strategy against one shared reference
    for s in ("ga", "random"):  # one-step trials may stay at chance: 0 above it, > 0 above accuracy 0
        assert 0 <= rec[s]["hypervolume"] < rec[s]["hypervolume_ref_acc_0"]
    assert rec["hypervolume_reference"]["params"] > 0
    assert res["summary"]["hypervolume"]["ga"]["n"] == 1


def test_hypervolume_of_a_front():
    bench = load_bench()
    trials = [{"status": "ok", "val_acc": 0.5, "params": 10}, {"status": "ok", "val_acc": 0.8, "params": 100},
              {"status": "ok", "val_acc": 0.4, "params": 1000}, {"status": "failed", "val_acc": 0.0, "params": 1}]
    # log10 costs 1, 2 (dominates 3); reference 4: 0.5 * (2 - 1) + 0.8 * (4 - 2)
    assert abs(bench.hypervolume(trials, "params", 1e4) - 2.1) < 1e-9
    # above a reference accuracy of 0.45: 0.05 * (2 - 1) + 0.35 * (4 - 2); 0.4 adds nothing
    assert abs(bench.hypervolume(trials, "params", 1e4, ref_acc=0.45) - 0.75) < 1e-9
