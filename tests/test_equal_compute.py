"""The bookkeeping of benchmarks/equal_compute.py and benchmarks/cost_model.py on made-up trials
(the runs themselves are real `fernas evolve` commands, tested in test_search*.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def trial(gid, kind, budget, acc, compute, epoch=None, status="ok"):
    return {"gid": gid, "kind": kind, "budget": budget, "val_acc": acc, "compute": compute, "status": status,
            "epoch": budget if epoch is None else epoch, "vector": [len(gid)], "val_loss": 1.0}


def fake_decode(run: Path, acc: float, val=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> None:
    """A finished decode's run directory as `fernas decode --train` leaves it: metrics and history."""
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"test_accuracy_tencrop": acc, "macs": 1, "params": 2,
                                                      "train_compute": 9}))
    rows = [{"phase": "train", "epoch": e, "val_acc": v} for e, v in enumerate(val, 1)]
    with (run / "history.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["phase", "epoch", "val_acc"])
        w.writeheader()
        w.writerows([*rows, {"phase": "finetune", "epoch": 1, "val_acc": 0.99}])


TRIALS = [trial("a", "first", 2, 0.20, 10), trial("b", "first", 2, 0.30, 10), trial("b", "promotion", 4, 0.35, 10),
          trial("c", "first", 4, 0.50, 10, epoch=2, status="stopped"),  # ASHA stopped it: not at MAX
          trial("d", "first", 4, 0.40, 20), trial("b", "rerank", 4, 0.33, 20)]


def test_curve_counts_only_trials_that_reached_the_largest_budget():
    ec = load("equal_compute")
    assert ec.curve(TRIALS, 4) == [(10, None), (20, None), (30, 0.35), (40, 0.35), (60, 0.40), (80, 0.40)]


def test_cut_keeps_the_trials_within_the_compute_budget_in_finish_order():
    ec = load("equal_compute")
    assert [t["gid"] for t in ec.cut(TRIALS, 40)] == ["a", "b", "b", "c"]
    assert ec.cut(TRIALS, 5) == []


def test_pick_uses_best_json_when_whole_else_the_best_at_max_within_budget():
    ec = load("equal_compute")
    run = {"trials": TRIALS, "best_gid": "b"}
    assert ec.pick(run, TRIALS, True, 4)[0] == "b"
    assert ec.pick(run, TRIALS, False, 4)[0] == "d"
    assert ec.pick(run, ec.cut(TRIALS, 40), False, 4)[0] == "b"
    assert ec.pick(run, TRIALS[:2], False, 4) == (None, None)


def test_a_halving_arm_is_used_whole_after_its_own_re_ranking():
    ec = load("equal_compute")
    run = {"trials": TRIALS, "best_gid": "b", "done": True}
    assert ec.used_whole("random-sh", run) and ec.used_whole("ga-mf", run)
    assert not ec.used_whole("ga-single", run)  # the single-budget arms are always cut at C
    assert not ec.used_whole("random-sh", {**run, "done": False})  # a run that did not end


def test_a_seed_record_uses_a_halving_arm_whole_and_cuts_the_others_at_the_budget():
    from types import SimpleNamespace

    ec = load("equal_compute")
    a = SimpleNamespace(min_budget=2, max_budget=4)
    run = {"trials": [{**t, "origin": "uniform"} for t in TRIALS], "best_gid": "b", "done": True, "chance": 0.15,
           "wall_s": None}
    seeds = {"total_compute": 1, "designs": [], "curve": [], "best": {"genome": "x", "test_acc_tencrop": 0.5}}
    whole = ec.seed_record(a, 0, {"random-sh": run}, seeds, 40)["random-sh"]
    assert whole["used_whole"] and whole["pick_gid"] == "b" and whole["trials"] == 6
    assert whole["compute"] == 80 and whole["search_compute"] == 60  # the re-ranking's 20 apart
    cut = ec.seed_record(a, 0, {"ga-single": run}, seeds, 40)["ga-single"]
    assert not cut["used_whole"] and cut["pick_gid"] == "b" and cut["trials"] == 4 and cut["compute"] == 40
    assert ec.seed_record(a, 0, {"ga-single": run}, seeds, 60)["ga-single"]["pick_gid"] == "d"  # not best.json
    assert ec.spent_compute(TRIALS, search_only=True) == 60


def test_rank_correlation_of_promoted_genomes():
    ec = load("equal_compute")
    rows = [trial(g, "first", 2, a2, 1) for g, a2 in zip("pqrs", (0.1, 0.2, 0.3, 0.4))]
    rows += [trial(g, "promotion", 4, a4, 1) for g, a4 in zip("pqrs", (0.2, 0.3, 0.4, 0.5))]
    assert ec.promoted_correlation(rows, 2, 4) == {"n": 4, "spearman": 1.0}
    assert ec.promoted_correlation(rows[:4], 2, 4) == {"n": 0, "spearman": None}


def test_compute_to_reach_and_final_best():
    ec = load("equal_compute")
    rec = {"curve": ec.curve(TRIALS, 4)}
    assert ec.final_best(rec) == 0.40
    assert ec.compute_to_reach(rec, 0.35) == 30 and ec.compute_to_reach(rec, 0.9) is None


def test_first_trainings_at_chance_are_counted_per_arm_and_over_seeds():
    ec = load("equal_compute")
    got = ec.first_at_chance(TRIALS + [trial("e", "first", 2, None, 1, status="failed")], 0.25)
    assert got == {"n": 1, "of": 4, "chance_level": 0.25}  # a (0.20); b, c, d above; e failed: not counted
    recs = [{"ga-mf": {"first_at_chance": got}}, {"ga-mf": {"first_at_chance": {"n": 3, "of": 5}}}]
    assert ec.at_chance_total(recs, "ga-mf") == {"n": 4, "of": 9}
    assert ec.at_chance_total(recs + [{"ga-mf": {}}], "ga-mf") is None  # an older record without the count


def test_first_trainings_are_counted_by_origin_and_over_seeds():
    ec = load("equal_compute")
    rows = [{**trial(g, "first", 2, acc, 1), "origin": o} for g, acc, o in
            (("a", 0.10, "child"), ("b", 0.40, "child"), ("c", 0.12, "uniform"), ("d", 0.5, "space-004"))]
    rows += [{**trial("b", "promotion", 4, 0.45, 1), "origin": "child"}]
    got = ec.origins(rows, 0.2)
    assert got == {"child": {"n": 2, "at_chance": 1}, "space-004": {"n": 1, "at_chance": 0},
                   "uniform": {"n": 1, "at_chance": 1}}
    recs = [{"ga-mf": {"origins": got}}, {"ga-mf": {"origins": {"child": {"n": 3, "at_chance": 3}}}}, {"ga-mf": {}}]
    assert ec.origins_total(recs, "ga-mf")["child"] == {"n": 5, "at_chance": 4}


def test_cost_model_ranks_predictors_on_measured_trials(tmp_path):
    """Trials whose time follows activations, not multiply-adds: the JSON says so."""
    from fernas import genome as G
    from fernas.model import plan

    cm = load("cost_model")
    rows = []
    for width, expansion in ((16, 1), (64, 6), (32, 2), (128, 4), (24, 6), (48, 1)):
        doc = G.validate({"fernas_genome": 1, "name": "t", "stages": [
            {"block": "inverted_residual", "expansion": expansion, "repeats": 1, "width": width, "kernel": 3,
             "dropout": 0.0, "pool": "none"}], "head": {"reduce": "avg", "fc": []},
            "train": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}})
        p = plan(doc)
        rows.append({"status": "ok", "macs": p.macs, "compute": 100 * p.macs, "train_seconds": 1e-7 * p.activations * 100,
                     "genome": json.dumps(G.active_content(doc))})
    path = tmp_path / "run" / "trials.csv"
    path.parent.mkdir()
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["status", "macs", "compute", "train_seconds", "genome"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "cost.json"
    assert cm.main([str(path), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["trials"] == 6 and res["predictors"]["activations"]["spearman"] == pytest.approx(1.0)
    assert res["predictors"]["activations"]["median_relative_error"] == pytest.approx(0.0, abs=1e-9)


def test_add_keeps_earlier_seeds_of_the_same_settings_and_refuses_other_settings(tmp_path):
    ec = load("equal_compute")
    settings = {"seeds": "0,1", "data": "demo:1400,560,280", "pop": 6, "no_vgg": False}
    out = tmp_path / "equal_compute.json"
    vers = {"torch": "2.14.1", "ray": "2.60.0", "deap": "1.4", "numpy": "2.3", "ga_checkpoint": 5}
    assert ec.earlier_seeds(out, settings, [2], vers) == ([], {})
    out.write_text(json.dumps({"date": "d0", "settings": settings, "versions": vers,
                               "per_seed": [{"seed": 0}, {"seed": 1}]}))
    kept, old = ec.earlier_seeds(out, {**settings, "seeds": "1,2", "no_vgg": True}, [1, 2], {**vers, "numpy": "2.4"})
    assert [r["seed"] for r in kept] == [0] and old["date"] == "d0"
    with pytest.raises(SystemExit, match="other settings \\(pop\\)"):
        ec.earlier_seeds(out, {**settings, "pop": 8}, [2], vers)
    assert ec.earlier_seeds(out, {**settings, "gpu": False}, [2], vers)[0]  # an option added since, off
    with pytest.raises(SystemExit, match=r"other settings \(gpu\)"):
        ec.earlier_seeds(out, {**settings, "gpu": True}, [2], vers)
    with pytest.raises(SystemExit, match="torch 2.14.1 there, 2.15.0 here"):
        ec.earlier_seeds(out, settings, [2], {**vers, "torch": "2.15.0"})
    with pytest.raises(SystemExit, match="ga_checkpoint 5 there, 6 here"):
        ec.earlier_seeds(out, settings, [2], {**vers, "ga_checkpoint": 6})


def test_each_invocation_keeps_its_machine_and_the_file_says_when_they_differ():
    ec = load("equal_compute")
    amd, intel = {"cpus": 2, "cpu": "AMD EPYC"}, {"cpus": 2, "cpu": "Intel Xeon"}
    assert ec.earlier_runs({}) == []
    # a file of one invocation without per-run records: its top-level machine is that run's
    old = {"date": "d0", "settings": {"seeds": "0"}, "machine": amd}
    runs = ec.earlier_runs(old)
    assert runs == [{"date": "d0", "seeds": "0", "machine": amd}]
    assert ec.shared_machine([*runs, {"date": "d1", "machine": amd}]) == amd
    assert ec.shared_machine([*runs, {"date": "d1", "machine": intel}]) == "mixed (see runs)"
    # runs recorded before machines were: only the last one's is known, so the file is not one machine's
    older = {"date": "d1", "machine": amd, "runs": [{"date": "d0", "seeds": "0"}, {"date": "d1", "seeds": "1"}]}
    runs = ec.earlier_runs(older)
    assert "machine" not in runs[0] and runs[1]["machine"] == amd
    assert ec.shared_machine([*runs, {"date": "d2", "machine": amd}]) == "mixed (see runs)"


def test_a_decode_is_cached_by_genome_protocol_data_seed_and_batch():
    from types import SimpleNamespace

    ec = load("equal_compute")
    a = SimpleNamespace(decode_epochs=48, decode_fine_tune=2, data="demo:1400,560,280", data_seed=0)
    key = ec.decode_key(a, "abc", 0)
    assert key == "abc-e48+2-demo_1400_560_280-d0"
    assert ec.decode_key(a, "abc", 2) == key + "-seed2"
    others = [dict(decode_epochs=6), dict(data="demo:1000,560,280"), dict(data_seed=1), dict(decode_batch=64)]
    assert all(ec.decode_key(SimpleNamespace(**{**vars(a), **o}), "abc", 0) != key for o in others)


def test_the_asha_arm_gets_the_grace_period_given_and_only_it_every_arm_the_trial_recipe():
    from types import SimpleNamespace

    ec = load("equal_compute")
    a = SimpleNamespace(min_budget=4, max_budget=8, eta=2, rerank_top=2, rerank_seeds=1, immigrants=None,
                        generations=3, asha_grace=2, trial_batch=None, trial_augment=None)
    flags, gens = ec.arm_flags(a, "random-asha")
    assert flags[-3:] == ["--asha", "--asha-grace", "2"] and gens == 7
    assert "--asha-grace" not in ec.arm_flags(SimpleNamespace(**{**vars(a), "asha_grace": None}), "random-asha")[0]
    assert all("--asha-grace" not in ec.arm_flags(a, arm)[0] for arm in ("ga-mf", "ga-single", "random-sh"))
    # the same trial recipe for every search arm; none given: fernas evolve's own
    proxy = SimpleNamespace(**{**vars(a), "trial_batch": 0, "trial_augment": "vgg"})
    assert all(ec.arm_flags(proxy, arm)[0][-4:] == ["--trial-batch", "0", "--trial-augment", "vgg"]
               for arm in ec.SEARCH_ARMS)
    assert all("--trial-batch" not in ec.arm_flags(a, arm)[0] for arm in ec.SEARCH_ARMS)
    # search_only.py's arm is ga-mf without its re-ranking, given more generations (--max-compute ends it)
    mf, mf_all = ec.arm_flags(proxy, "ga-mf"), ec.arm_flags(proxy, "ga-mf-all")
    i = mf[0].index("--rerank-top")
    assert mf_all[0] == [*mf[0][:i], "--rerank-top", "0", *mf[0][i + 4:]] and mf_all[1] == 4 * mf[1]
    sh, sh_all = ec.arm_flags(proxy, "random-sh"), ec.arm_flags(proxy, "random-sh-all")
    j = sh[0].index("--rerank-top")
    assert sh_all[0] == [*sh[0][:j], "--rerank-top", "0", *sh[0][j + 4:]] and sh_all[1] == 8 * proxy.generations


def test_long_decodes_list_each_distinct_pick_once_read_from_the_decode_cache(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fernas import genome as G

    ec, dp = load("equal_compute"), load("long_decodes")
    monkeypatch.setattr(dp.ec, "run_cmd", lambda *a, **k: pytest.fail("a cached decode was trained again"))
    docs = [G.load_genome(ROOT / "genomes" / f"{n}.json") for n in ("daocong_mobilenetv2", "vgg_khaireddin")]
    gids = [G.genome_id(d) for d in docs]
    vecs = [G.to_vector(d) for d in docs]
    arm = {a: {"pick_gid": gids[0], "pick_vector": vecs[0], "decode": {"test_acc_tencrop": 0.3}}
           for a in ("ga-mf", "ga-single", "random-sh")}
    arm["random-asha"] = {"pick_gid": gids[1], "pick_vector": vecs[1], "decode": {"test_acc_tencrop": 0.6}}
    result = {"per_seed": [{"seed": 4, **arm}, {"seed": 5, **arm}]}
    a = SimpleNamespace(data="demo:1400,560,280", data_seed=0, decode_epochs=48, decode_fine_tune=2, remeasure=False)
    for gid, acc in zip(gids, (0.9, 0.95)):  # decodes already trained: nothing runs
        fake_decode(tmp_path / "decode" / ec.decode_key(a, gid, 0) / "run", acc)
    rows = dp.pick_rows(a, result, [4], tmp_path)
    assert rows[0]["val_at"] == {"4": 0.5, "8": 0.9}  # what a re-ranking of the decode's first epochs sees
    assert [(r["seed"], r["gid"], r["arms"], r["short"], r["long"]) for r in rows] == [
        (4, gids[0], ["ga-mf", "ga-single", "random-sh"], 0.3, 0.9), (4, gids[1], ["random-asha"], 0.6, 0.95)]
    assert dp.still_picked(rows, result) == rows
    result["per_seed"][0]["random-asha"] = {"pick_gid": None, "pick_vector": None}  # regenerated: no pick
    assert dp.still_picked(rows, result) == rows[:1]
    assert dp.pick_rows(a, result, [4], tmp_path) == rows[:1]
    big = ec.larger_test(a.data, 10)  # the same decode tested on 2,800 images: read from its cache
    ev = ec.decode_run(a, gids[0], tmp_path) / "eval-demo_1400_560_2800-d0"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"test_accuracy_tencrop": 0.877, "n": 2800}))
    assert dp.pick_rows(a, result, [4], tmp_path, big)[0]["long_big"] == 0.877
    # a replicate with another training seed reads (and would train) its own decodes, not seed 0's
    fake_decode(tmp_path / "decode" / ec.decode_key(a, gids[0], 1) / "run", 0.5)
    assert [r["long"] for r in dp.pick_rows(a, result, [4], tmp_path, train_seed=1)] == [0.5]


def test_long_decodes_summary_pairs_ga_mf_with_each_arm_seed_by_seed():
    dp = load("long_decodes")
    rows = [{"seed": 0, "arms": ["ga-mf", "ga-single"], "long": 0.8}, {"seed": 0, "arms": ["random-sh"], "long": 0.9},
            {"seed": 0, "arms": ["random-asha"], "long": 0.7},
            {"seed": 1, "arms": ["ga-mf"], "long": 0.95}, {"seed": 1, "arms": ["ga-single", "random-sh"], "long": 0.85}]
    s = dp.summary(rows, {"a": 0.82, "b": 0.6})
    assert s["long_test_acc"]["ga-mf"]["mean"] == 0.875 and s["long_test_acc"]["random-asha"]["n"] == 1
    vs_sh = s["ga_mf_minus"]["random-sh"]
    assert (vs_sh["mean"], vs_sh["ahead"], vs_sh["behind"], vs_sh["level"]) == (0.0, 1, 1, 0)
    assert s["ga_mf_minus"]["ga-single"]["ahead"] == 1 and s["ga_mf_minus"]["ga-single"]["level"] == 1
    assert s["ga_mf_minus"]["random-asha"]["n"] == 1  # seed 1 has no random-asha pick: not paired
    assert s["best_design"] == 0.82 and s["above_best_design"] == {
        "ga-mf": 1, "ga-single": 1, "random-sh": 2, "random-asha": 0}
    rows[0]["long_big"] = 0.79  # the larger test: rows without it are left out
    big = dp.summary(rows, {"a": 0.8}, "long_big")
    assert big["long_test_acc"]["ga-mf"] == {"mean": 0.79, "std": 0.0, "min": 0.79, "max": 0.79, "n": 1}
    assert big["above_best_design"]["ga-single"] == 0 and big["long_test_acc"]["random-sh"]["n"] == 0


def test_reuse_takes_only_a_run_of_the_same_command_wherever_its_directory_was(tmp_path):
    ec = load("equal_compute")
    cmd = ["python", "-m", "fernas", "evolve", "--data", "demo", "--out", "/old/tag/ga-mf-seed0", "--seed", "0",
           "--trial-batch", "32", "--trial-augment", "none"]
    run = tmp_path / "ga-mf-seed0"
    run.mkdir()
    assert not ec._same_command(run, cmd)  # no config: never reused
    stored = {"rerank_recipe": "own", "rerank_budget": 8, "rerank_warmup": 8, "max_budget": 4,
              "space": {"train.batch_size": [0]}}
    (run / "config.json").write_text(json.dumps({"argv": cmd[3:], "options": {"ga": stored}}))
    moved = [*cmd[:7], str(run), *cmd[8:]]  # the work directory copied to another tag
    assert ec._same_command(run, cmd) and ec._same_command(run, moved)
    # a run stored before the warm-up (no field) or before it was the default (0) re-ranked
    # without one: not today's default re-ranking, the same as --rerank-warmup 0
    cold = [*cmd, "--rerank-warmup", "0"]
    for old in ({k: v for k, v in stored.items() if k != "rerank_warmup"}, {**stored, "rerank_warmup": 0}):
        (run / "config.json").write_text(json.dumps({"argv": cmd[3:], "options": {"ga": old}}))
        assert not ec._same_command(run, cmd)
        (run / "config.json").write_text(json.dumps({"argv": cold[3:], "options": {"ga": old}}))
        assert ec._same_command(run, cold)
    # a run stored before the batch was fixed to the trial batch searched it: another search
    (run / "config.json").write_text(json.dumps({"argv": cmd[3:], "options": {"ga": {**stored, "space": None}}}))
    assert not ec._same_command(run, cmd)
    (run / "config.json").write_text(json.dumps({"argv": cmd[3:], "options": {"ga": stored}}))
    assert not ec._same_command(run, [*cmd, "--rerank-recipe", "trial"])
    del stored["rerank_budget"]  # before --rerank-budget: the re-ranking trained max_budget (4) epochs, now 8
    (run / "config.json").write_text(json.dumps({"argv": cmd[3:], "options": {"ga": stored}}))
    assert not ec._same_command(run, cmd)
    no_rerank = [*cmd, "--rerank-top", "0"]  # ...which does not matter to a run without re-ranking
    (run / "config.json").write_text(json.dumps({"argv": no_rerank[3:], "options": {"ga": stored}}))
    assert ec._same_command(run, no_rerank)
    (run / "config.json").write_text(json.dumps({"argv": cmd[3:]}))  # before the flag: re-ranked by the trial recipe
    assert not ec._same_command(run, cmd) and ec._same_command(run, [*cmd, "--rerank-recipe", "trial"]) is False
    old_recipe = [*cmd[:-4], "--trial-batch", "0", "--trial-augment", "vgg"]
    assert not ec._same_command(run, old_recipe)


def test_finalists_compare_each_signals_choice_with_the_best_finalist(tmp_path):
    fl = load("finalists")
    run = tmp_path / "ga-mf-seed0"
    run.mkdir()
    with open(run / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["gid", "kind", "budget", "status", "val_acc"])
        w.writeheader()
        w.writerows([{"gid": "a", "kind": "first", "budget": 4, "status": "ok", "val_acc": 0.7},
                     {"gid": "a", "kind": "promotion", "budget": 8, "status": "ok", "val_acc": 0.8},
                     {"gid": "a", "kind": "rerank", "budget": 8, "status": "ok", "val_acc": 0.9},
                     {"gid": "b", "kind": "first", "budget": 4, "status": "ok", "val_acc": 0.75}])
    assert fl.trial_accuracy(run, "a", 8) == 0.8  # a re-ranking seed is not the genome's own trial
    assert fl.trial_accuracy(run, "b", 8) is None
    (tmp_path / "history.csv").write_text("phase,epoch,val_acc\ntrain,1,0.2\ntrain,2,0.4\nfinetune,1,0.9\n")
    assert fl.ec.early_val(tmp_path, [1, 2, 3]) == {"1": 0.2, "2": 0.4}  # the training phase's, as far as it went
    rows = [{"gid": "a", "rank": 1, "run": -1, "trial": 0.8, "own@2": 0.3, "test": 0.85},
            {"gid": "b", "rank": 2, "run": -2, "trial": None, "own@2": 0.5, "test": 0.90},
            {"gid": "c", "rank": 3, "run": -3, "trial": 0.7, "own@2": 0.4, "test": 0.88}]
    r = fl.run_summary(rows, ["run", "trial", "own@2"])
    assert r["ceiling"] == 0.90
    for row, big in zip(rows, (0.87, 0.80, 0.86)):
        row["test_big"] = big
    assert fl.run_summary(rows, ["own@2"], "test_big")["picks"]["own@2"] == {"gid": "b", "test": 0.80}
    assert fl.ec.larger_test("demo:1400,560,280", 10) == "demo:1400,560,2800"
    assert fl.ec.larger_test("fer2013.csv", 10) is None and fl.ec.larger_test("demo:1400,560,280", 0) is None
    assert {s: p["gid"] for s, p in r["picks"].items()} == {"run": "a", "trial": "a", "own@2": "b"}
    assert r["spearman"]["own@2"] == 1.0 and r["spearman"]["run"] == -0.5
    s = fl.summary({"x": r, "y": r}, ["run", "own@2"])
    assert s["ceiling_mean"] == 0.9 and s["own@2"] == {"pick_test_mean": 0.9, "chose_ceiling": 2, "spearman_mean": 1.0}
    assert s["run"]["chose_ceiling"] == 0


def test_settings_record_fernas_defaults_and_horizon_refuses_its_own_flags_after_the_separator():
    from fernas.evolve import GAConfig
    from fernas.search.options import DEFAULT_TRIAL_BATCH

    ec = load("equal_compute")
    s = ec.run_settings(ec.parse_args(["--reuse"]))
    assert (s["immigrants"], s["trial_batch"]) == (GAConfig().immigrants, DEFAULT_TRIAL_BATCH) and "reuse" not in s
    horizon = load("horizon")
    h, a = horizon.parse_args(["--seed", "2", "--generations", "5", "--", "--pop", "8", "--min-budget", "4"])
    assert (h.seed, a.generations, a.pop, a.min_budget, a.reuse) == (2, 5, 8, 4, True)
    for flag in ("--seed", "--generations", "--tag=x"):
        with pytest.raises(SystemExit, match=flag.split("=")[0]):
            horizon.parse_args(["--", flag, "3"])
    # shares of C, and the best-so-far within a compute
    assert horizon.share_at(None, 10.0) is None and horizon.share_at(2.5, 10.0) == 0.25
    assert horizon.best_at([(1.0, None), (2.0, 0.3), (3.0, 0.5)], 2.0) == 0.3
    assert horizon.said(None) == "never within C"


def test_long_decodes_table_has_a_row_per_arm_and_a_column_per_seed():
    dp = load("long_decodes")
    pick = {"pick_gid": "g1", "pick_origin": "child"}
    seeds_arm = {"test_acc_tencrop_whole_budget": 0.9, "pick_name": "daocong_mobilenetv2",
                 "designs": [{"genome": "daocong_mobilenetv2"}]}
    rec = {"ga-mf": pick, "ga-single": pick, "random-sh": {"pick_gid": "g2", "pick_origin": "seed"},
           "random-asha": {"pick_gid": None}, "seeds": seeds_arm}
    result = {"settings": {}, "per_seed": [{"seed": 3, **rec},
                                           {"seed": 4, **rec, "random-sh": {"pick_gid": "g9", "pick_origin": "uniform"}}]}
    rows = [{"seed": 3, "gid": "g1", "arms": ["ga-mf", "ga-single"], "long": 0.8, "long_big": 0.81},
            {"seed": 3, "gid": "g2", "arms": ["random-sh"], "long": 0.7, "long_big": 0.72},
            {"seed": 4, "gid": "g1", "arms": ["ga-mf", "ga-single"], "long": 0.6, "long_big": 0.61}]
    doc = {"rows": rows, "big_test": "demo:1400,560,2800",
           "seeds_arm_big": {"3": {"daocong_mobilenetv2": 0.88, "vgg_khaireddin": 0.95}},
           "designs": {"daocong_mobilenetv2": 0.85}, "designs_big": {"daocong_mobilenetv2": 0.86},
           "protocol": {"epochs": 48, "fine_tune_epochs": 2, "batch_size": 64, "seed": 1}}
    doc["summary_big"] = dp.summary(rows, doc["designs_big"], "long_big")
    lines = dp.markdown_table(doc, result).splitlines()
    assert lines[0] == "| arm | seed 3 | seed 4 | mean ± sd (larger test) |"
    assert lines[2] == "| ga-mf | g1 (child) 0.800 / 0.810 | g1 (child) 0.600 / 0.610 | 0.710 ± 0.141 |"
    assert lines[4] == "| random-sh | g2 (seed) 0.700 / 0.720 | g9 (uniform) not decoded | 0.720 ± 0.000 |"
    assert lines[5] == "| random-asha | no pick | no pick | - ± - |"
    # the design the seeds arm picked, not the best on the test; the mean says it has one seed of two
    assert lines[6] == ("| seeds (the design, trained with its share of C) | 0.900 / 0.880 | 0.900 / - "
                        "| 0.880 ± 0.000 (1 of 2 seeds) |")
    assert lines[7] == "| daocong_mobilenetv2, 48+2 at batch 64 (decode seed 1) |  |  | 0.850 / 0.860 |"
    # the seeds arm trained again with another warm-up (--seeds-arm): the comparison's own
    # figures are of another training, so only the retrained ones are shown
    retrained = dp.markdown_table({**doc, "seeds_arm_warmup": 8, "protocol": {**doc["protocol"], "augment_warmup": 8}},
                                  result).splitlines()
    assert retrained[6] == ("| seeds (the design, trained with its share of C) | - / 0.880 | - / - "
                            "| 0.880 ± 0.000 (1 of 2 seeds) |")
    del doc["big_test"]  # no larger test: the means are the file's own split's
    doc["summary"] = dp.summary(rows, doc["designs"])
    lines = dp.markdown_table(doc, result).splitlines()
    assert lines[0].endswith("| mean ± sd (test) |") and lines[2].endswith("| 0.700 ± 0.141 |")
    assert lines[6].endswith("| 0.900 ± 0.000 |")


def test_long_decodes_replicate_pairs_each_pick_with_its_first_training():
    dp = load("long_decodes")
    base = {"rows": [{"seed": 0, "gid": "g1", "arms": ["ga-mf"], "long": 0.8, "long_big": 0.80},
                     {"seed": 0, "gid": "g2", "arms": ["ga-single", "random-sh", "random-asha"], "long": 0.7,
                      "long_big": 0.70},
                     {"seed": 1, "gid": "g3", "arms": list(dp.ec.SEARCH_ARMS), "long": 0.5, "long_big": 0.50}],
            "designs_big": {"d": 0.86}}
    doc = {"big_test": "demo:1400,560,2800", "designs_big": {"d": 0.88},
           "rows": [{"seed": 0, "gid": "g1", "arms": ["ga-mf"], "long": 0.9, "long_big": 0.76},
                    {"seed": 0, "gid": "g2", "arms": ["ga-single", "random-sh", "random-asha"], "long": 0.7,
                     "long_big": 0.76},
                    {"seed": 1, "gid": "g4", "arms": list(dp.ec.SEARCH_ARMS), "long": 0.6, "long_big": 0.6}]}
    v = dp.versus_first(base, doc)
    assert v["split"] == "long_big"  # the larger test split, not the file's own
    assert [(p["gid"], p["first"], p["this"]) for p in v["pairs"]] == [("g1", 0.8, 0.76), ("g2", 0.7, 0.76)]
    # this one minus the first: -0.04 and +0.06
    assert v["difference"]["n"] == 2 and v["difference"]["mean"] == 0.01 and v["mean_abs_difference"] == 0.05
    # g4 is another pick than seed 0's g3 (a regenerated file): neither is paired
    assert v["pooled"]["long_test_acc"]["ga-mf"] == {"mean": 0.78, "std": 0.0, "min": 0.78, "max": 0.78, "n": 1}
    assert v["pooled"]["ga_mf_minus"]["random-sh"]["mean"] == 0.05
    assert v["designs_pooled"] == {"d": 0.87} and v["pooled"]["best_design"] == 0.87
    del doc["big_test"]  # no larger test split: the file's own accuracies (+0.1 and 0)
    v = dp.versus_first(base, doc)
    assert v["split"] == "long" and v["difference"]["mean"] == 0.05 and v["designs_pooled"] == {}


def test_long_decodes_main_pairs_a_replicate_with_the_first_file(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fernas import genome as G

    ec, dp = load("equal_compute"), load("long_decodes")
    monkeypatch.setattr(dp, "ROOT", tmp_path)
    monkeypatch.setattr(dp.ec, "run_cmd", lambda *a, **k: pytest.fail("a decode was trained"))
    doc = G.load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json")
    gid = G.genome_id(doc)
    arm = {"pick_gid": gid, "pick_vector": G.to_vector(doc), "pick_origin": "seed", "decode": {"test_acc_tencrop": 0.3}}
    seeds_arm = {"test_acc_tencrop_whole_budget": 0.9, "pick_name": "daocong_mobilenetv2",
                 "designs": [{"genome": "daocong_mobilenetv2"}]}
    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    (res / "equal_compute_t.json").write_text(json.dumps({
        "settings": {"data": "demo:1400,560,280", "data_seed": 0, "decode_epochs": 6, "decode_fine_tune": 1},
        "per_seed": [{"seed": 0, **{a: arm for a in ec.SEARCH_ARMS}, "seeds": seeds_arm}]}))
    # fernas' default protocol: an augmentation warm-up of 8 epochs, in the cache key and the file names
    a = SimpleNamespace(data="demo:1400,560,280", data_seed=0, decode_epochs=48, decode_fine_tune=2, decode_warmup=8)
    assert ec.decode_key(a, gid, 1).endswith("-seed1-w8")
    for seed, acc in ((0, 0.9), (1, 0.85)):  # both trainings cached: nothing runs
        fake_decode(res / "tmp" / "equal_compute_t" / "decode" / ec.decode_key(a, gid, seed) / "run", acc)
    flags = ["--tag", "t", "--seeds", "0", "--big-test", "0"]
    assert dp.main(flags) == 0
    first = json.loads((res / "long_decodes_t_w8.json").read_text())
    assert "replicate" not in first and first["protocol"]["augment_warmup"] == 8
    # the comparison's own seeds arm trained without the warm-up: its row says so
    assert "warm-up 0, not this table's 8" in (res / "long_decodes_t_w8.md").read_text()
    assert dp.main([*flags, "--train-seed", "1"]) == 0
    rep = json.loads((res / "long_decodes_t_w8_s1.json").read_text())["replicate"]
    assert rep["of"] == "long_decodes_t_w8.json" and rep["split"] == "long"
    assert [(p["first"], p["this"]) for p in rep["pairs"]] == [(0.9, 0.85)] and rep["difference"]["mean"] == -0.05
    # --seeds-arm trains the seeds arm again with each seed's compute and this invocation's warm-up
    calls = []
    monkeypatch.setattr(dp.ec, "seeds_arm", lambda arm, seed, budget, designs, work: calls.append(
        (arm.decode_warmup, arm.reuse, seed, budget, sorted(designs), work.name)))
    doc = json.loads((res / "equal_compute_t.json").read_text())
    doc["settings"]["max_mmacs"], doc["per_seed"][0]["budget_compute"] = 35.0, 3e12
    (res / "equal_compute_t.json").write_text(json.dumps(doc))
    assert dp.main([*flags, "--seeds-arm"]) == 0
    assert calls == [(8, True, 0, 3e12, ["daocong_mobilenetv2"], "equal_compute_t")]
    assert "not this table's" not in (res / "long_decodes_t_w8.md").read_text()
    # --vgg: the VGG seed under the same protocol (its training cached here), the target's gaps
    (tmp_path / "genomes").mkdir()
    shutil.copy(ROOT / "genomes" / "vgg_khaireddin.json", tmp_path / "genomes")
    vgg_gid = G.genome_id(G.load_genome(ROOT / "genomes" / "vgg_khaireddin.json"))
    fake_decode(res / "tmp" / "equal_compute_t" / "decode" / ec.decode_key(a, vgg_gid, 0) / "run", 0.95)
    # (the seeds arm --seeds-arm trained again, as the larger split would have it: kept by later invocations)
    w8 = res / "long_decodes_t_w8.json"
    w8.write_text(json.dumps({**json.loads(w8.read_text()), "seeds_arm_big": {"0": {"daocong_mobilenetv2": 0.91}}}))
    assert dp.main(["--tag", "t", "--seeds", "", "--big-test", "0", "--vgg"]) == 0  # the VGG seed alone
    out = json.loads((res / "long_decodes_t_w8.json").read_text())
    assert [r["gid"] for r in out["rows"]] == [gid]  # the earlier invocations' pick kept
    assert out["seeds_arm_warmup"] == 8 and out["seeds_arm_big"] == {"0": {"daocong_mobilenetv2": 0.91}}
    assert out["vgg"] == 0.95 and out["tenth_of_vgg"]["split"] == "long"
    assert out["tenth_of_vgg"]["gap"] == {"ga_mf_mean": 0.05, "ga_mf_best": 0.05}
    assert "the VGG seed" in (res / "long_decodes_t_w8.md").read_text()
    assert dp.main(flags) == 0  # a later invocation of the same protocol keeps it
    out = json.loads((res / "long_decodes_t_w8.json").read_text())
    assert out["tenth_of_vgg"]["vgg"] == 0.95
    # every invocation that wrote the file is listed with its flags and wall time, none overwritten
    assert [i["argv"] for i in out["invocations"]] == [
        flags, [*flags, "--seeds-arm"], ["--tag", "t", "--seeds", "", "--big-test", "0", "--vgg"], flags]
    assert all(i["wall_seconds"] >= 0 for i in out["invocations"]) and "wall_seconds" not in out
    # a replicate with a suffix pairs with the seed-0 file of the same suffix (machine) where there is one
    ns = SimpleNamespace(suffix="intel", train_seed=1)
    first = res / "long_decodes_t_w8"
    assert dp.replicate_base(first, ns) == res / "long_decodes_t_w8.json"
    (res / "long_decodes_t_w8_intel.json").write_text("{}")
    assert dp.replicate_base(first, ns) == res / "long_decodes_t_w8_intel.json"
    assert dp.replicate_base(first, SimpleNamespace(suffix="intel", train_seed=0)) == res / "long_decodes_t_w8.json"
    (res / "long_decodes_t_w8_intel.json").unlink()
    # another machine's replicate trains in a work directory of its own, not reading the first trainings
    with pytest.raises(pytest.fail.Exception, match="a decode was trained"):
        dp.main([*flags, "--suffix", "other"])
    assert (res / "tmp" / "equal_compute_t_other" / "decode").is_dir()


def test_warmup_effect_pairs_each_pick_without_and_with_the_warm_up_and_refuses_other_pairs(tmp_path, monkeypatch):
    we = load("warmup_effect")
    monkeypatch.setattr(we, "RESULTS", tmp_path)
    protocol = {"epochs": 48, "fine_tune_epochs": 2, "train_crops": 1, "seed": 0, "data": "demo:1400,560,280"}

    def write(name, warmup, accs, machine="Intel"):
        rows = [{"seed": s, "gid": g, "arms": ["ga-mf"], "long": acc, "long_big": acc, "val_at": {"8": acc / 2}}
                for (s, g), acc in accs.items()]
        (tmp_path / name).write_text(json.dumps({
            "source": "benchmarks/results/equal_compute_t.json", "machine": {"cpu": machine}, "big_test": "demo:big",
            "protocol": {**protocol, **({"augment_warmup": warmup} if warmup else {})}, "rows": rows,
            "designs_big": {"d": 0.88 + warmup / 1000}, "summary_big": {"long_test_acc": {"ga-mf": {"mean": 0.5}}}}))

    write("w0.json", 0, {(0, "a"): 0.33, (1, "b"): 0.90})
    write("w8.json", 8, {(0, "a"): 0.90, (1, "b"): 0.89})
    assert we.main(["--tag", "t", "--pair", "w0.json", "w8.json"]) == 0
    doc = json.loads((tmp_path / "warmup_effect_t.json").read_text())
    (rec,) = doc["pairs"]
    assert [(p["gid"], p["without"], p["with"], p["difference"]) for p in rec["pairs"]] == [
        ("a", 0.33, 0.90, 0.57), ("b", 0.90, 0.89, -0.01)]
    assert rec["slow"] == {"without": 1, "with": 0, "of": 2} and rec["designs"]["with"] == {"d": 0.888}
    assert rec["early_rank"] == {"without_vs_with": {"8": -1.0}, "with_vs_with": {"8": 1.0},
                                 "without_vs_without": {"8": 1.0}}
    assert doc["pooled"]["difference_where_fast_without"]["mean"] == -0.01 and doc["pooled"]["trainings"] == 2
    write("w8amd.json", 8, {(0, "a"): 0.9}, machine="AMD")
    for pair, message in ((["w8.json", "w0.json"], "must be without the warm-up"),
                          (["w0.json", "w8amd.json"], "trained on other machines"),
                          (["w0.json", "missing.json"], "no such long_decodes file")):
        with pytest.raises(SystemExit, match=message):
            we.main(["--tag", "t", "--pair", *pair])


def test_finalists_price_a_race_by_the_epochs_of_the_finalists_it_stops(tmp_path):
    fl = load("finalists")
    rows = [{"gid": "a", "rank": 1, "own@2": 0.3, "macs": 10}, {"gid": "b", "rank": 2, "own@2": 0.5, "macs": 20},
            {"gid": "c", "rank": 3, "own@2": 0.4, "macs": 30}]
    decodes = {}
    for gid in "abc":
        run = decodes[gid] = tmp_path / gid
        run.mkdir()
        # 100 training images at batch 32: 96 an epoch (the remainder dropped), 3 + 1 epochs
        (run / "metrics.json").write_text(json.dumps({"epochs": 3, "fine_tune_epochs": 1,
                                                      "train_compute": 4 * 96 * rows["abc".index(gid)]["macs"]}))
        (run / "history.csv").write_text("phase,epoch,seconds\ntrain,1,1.5\ntrain,2,2.0\ntrain,3,9\nfinetune,1,9\n")
    arm = {"compute": 1000.0, "search_compute": 600.0}
    cost = fl.race_cost(rows, 2, decodes, arm, budget=1000.0)
    # b wins; a and c stop after 2 epochs of 96 images: (10 + 30) x 2 x 96, 3.5 s each
    assert cost == {"pick": "b", "extra_compute": 7680.0, "extra_seconds": 7.0, "search_compute": 600.0,
                    "rerank_compute": 400.0, "search_and_race_share_of_C": 8.28, "arm_share_of_C": 1.0}
    summary = fl.race_summary({"x": {"race@2": cost}, "y": {"race@2": {**cost, "search_and_race_share_of_C": 0.6}}})
    assert summary == {"race@2": {"search_and_race_share_of_C_mean": 4.44, "arm_share_of_C_mean": 1.0,
                                  "extra_seconds_mean": 7.0}}


def test_search_only_with_another_max_budget_is_its_own_arm_paired_with_ga_mf_all():
    so = load("search_only")
    settings = {"max_budget": 8, "min_budget": 4, "eta": 2, "generations": 3}
    a = so.arm_namespace(settings, reuse=False, max_budget=16)
    assert (a.arm, a.max_budget) == ("ga-mf-all-b16", 16)
    flags = so.EC.arm_flags(a, "ga-mf-all")[0]
    assert flags[flags.index("--max-budget") + 1] == "16" and flags[flags.index("--rerank-top") + 1] == "0"
    assert so.arm_namespace(settings, reuse=False, max_budget=8).arm == "ga-mf-all"
    assert so.arm_namespace(settings, reuse=False).arm == "ga-mf-all"
    r = so.arm_namespace(settings, reuse=False, max_budget=16, strategy="random")
    assert (r.arm, r.flags_arm, r.same_budgets) == ("random-sh-all-b16", "random-sh-all", False)
    assert so.EC.arm_flags(r, r.flags_arm)[0][:2] == ["--strategy", "random"]
    rows = [{"pick_gid": g, "decode": {"0": d}, "compute_vs_budget": 1.0,
             "source_arms": {**{arm: {"pick_gid": "x", "decode": 0.5} for arm in so.EC.SEARCH_ARMS},
                             "seeds": {"test_whole_budget": 0.6}, "ga-mf-all": {"pick_gid": b, "decode": bd}}}
            for g, d, b, bd in (("p", 0.7, "p", 0.7), ("q", 0.8, "r", 0.6))]
    s = so.summarize(rows, [0], "ga-mf-all-b16")
    assert so.summarize(rows[:1], [0], "ga-mf-all-b16")["ga-mf-all"]["decode_seed0"]["mean"] == 0.7
    assert s["ga-mf-all-b16"]["decode_seed0"]["mean"] == pytest.approx(0.75)
    assert s["ga-mf-all"]["decode_seed0"]["mean"] == pytest.approx(0.65)
    assert s["same_pick_as"]["ga-mf-all"] == 1 and s["same_pick_as"]["ga-mf"] == 0
    # each rung's order against the next one's, over the genomes that reached the next
    trials = [trial(g, "first", 4, acc, 1) for g, acc in zip("abcd", (0.1, 0.2, 0.3, 0.4))]
    trials += [trial(g, "promotion", 8, acc, 1) for g, acc in zip("bcd", (0.5, 0.6, 0.7))]
    trials += [trial(g, "promotion", 16, acc, 1) for g, acc in zip("cd", (0.9, 0.8))]
    assert so.rung_correlations(trials) == {"4->8": {"n": 3, "spearman": 1.0}, "8->16": {"n": 2, "spearman": None}}


def test_search_only_pairs_each_arm_with_the_other_arms_of_the_same_source(tmp_path):
    so = load("search_only")
    for arm, source in (("ga-mf-all", "equal_compute_hard.json"), ("ga-mf-all-b16", "equal_compute_hard.json"),
                        ("random-sh-all-b16", "equal_compute_other.json")):
        rows = [{"seed": 0, "pick_gid": arm, "decode": {"0": 0.5}, "curve": [[1.0, 0.4]]}]
        (tmp_path / f"search_only_hard_{arm}.json").write_text(json.dumps({"arm": arm, "source": source,
                                                                          "per_seed": rows}))
    found = so.sibling_records(tmp_path, "hard", "equal_compute_hard.json", "ga-mf-all-b16")
    assert list(found) == ["ga-mf-all"] and found["ga-mf-all"][0]["pick_gid"] == "ga-mf-all"
    # the issue's target, paired: the compute after which one arm reached the other's final best
    mine = {"curve": [[10.0, 0.3], [20.0, 0.45], [40.0, 0.5]]}
    assert so.reach_share(mine, {"curve": [[5.0, None], [30.0, 0.45]]}, budget=80.0) == 0.25
    assert so.reach_share(mine, {"curve": [[30.0, 0.55]]}, budget=80.0) is None
    rows = [{"pick_gid": "p", "decode": {"0": 0.7}, "compute_vs_budget": 1.0,
             "compute_to_reach_final_best_of": {"random-sh-all": x},
             "source_arms": {**{arm: {"pick_gid": "x", "decode": 0.5} for arm in so.EC.SEARCH_ARMS},
                             "seeds": {"test_whole_budget": 0.6}}} for x in (0.25, 0.26, None)]
    assert so.summarize(rows, [0], "ga-mf-all")["compute_to_reach"] == {
        "random-sh-all": {"per_seed": [0.25, 0.26, None], "within_quarter": 1}}


def test_search_only_keeps_the_earlier_redecodes_when_not_asked_again():
    so = load("search_only")
    def rec():
        return {"source_arms": {"ga-single": {"pick_gid": "a", "decode": 0.7}, "seeds": {"pick_name": "d"},
                                "ga-mf": {"pick_gid": "b", "decode": 0.6, "decode_here": 0.65},
                                "random-sh": {"pick_gid": "new"}}}
    old = {"source_arms": {"ga-single": {"pick_gid": "a", "decode_here": 0.77}, "seeds": {"pick_name": "d",
                                                                                        "decode_here": 0.37},
                           "ga-mf": {"pick_gid": "b", "decode_here": 0.5}, "gone": {"decode_here": 0.1},
                           "random-sh": {"pick_gid": "old", "decode_here": 0.4}}}
    here = rec()
    so.keep_decodes_here(here, old, same_machine=True)
    assert {arm: v.get("decode_here") for arm, v in here["source_arms"].items()} == {
        "ga-single": 0.77, "seeds": 0.37, "ga-mf": 0.65, "random-sh": None}  # a re-decode made now wins; another pick's not
    elsewhere = rec()
    so.keep_decodes_here(elsewhere, old, same_machine=False)  # a figure of another machine is not this one's
    assert {v.get("decode_here") for v in elsewhere["source_arms"].values()} == {None, 0.65}


def test_finalists_read_a_search_only_arm_from_its_own_file_and_its_budget_from_its_run(tmp_path):
    fl = load("finalists")
    result = {"per_seed": [{"seed": 0, "budget_compute": 10.0, "ga-mf": {"compute": 9, "search_compute": 5}}]}
    (tmp_path / "search_only_hard_ga-mf-all-b16.json").write_text(json.dumps(
        {"arm": "ga-mf-all-b16", "per_seed": [{"seed": 0, "compute": 10.2, "search_compute": 10.2}]}))
    assert fl.arm_record(result, tmp_path, "hard", "ga-mf", 0)["compute"] == 9
    assert fl.arm_record(result, tmp_path, "hard", "ga-mf-all-b16", 0)["compute"] == 10.2
    with pytest.raises(SystemExit, match="ga-mf-all: neither an arm"):
        fl.arm_record(result, tmp_path, "hard", "ga-mf-all", 0)
    (tmp_path / "config.json").write_text(json.dumps({"options": {"ga": {"max_budget": 16}}}))
    assert fl.run_max_budget(tmp_path) == 16
    # a finalist the race stops whose decode predates train_compute is trained again, and only it
    decodes = {}
    for gid, has in (("a", False), ("b", False), ("c", True)):
        decodes[gid] = tmp_path / "decode" / gid / "run"
        decodes[gid].mkdir(parents=True)
        (decodes[gid] / "metrics.json").write_text(json.dumps({"train_compute": 1.0} if has else {}))
    rows = [{"gid": g, "rank": i + 1, "own@8": acc, "test": 0.5} for i, (g, acc) in enumerate(zip("abc", (0.6, 0.4, 0.3)))]
    trained = []
    fl.price_stopped(rows, [8], decodes, lambda r: trained.append(r["gid"]) or {"test": 0.7})
    assert trained == ["b"] and [r["test"] for r in rows] == [0.5, 0.7, 0.5]
    assert not decodes["b"].exists() and decodes["a"].exists()


def test_trial_signal_orders_the_decoded_genomes_by_each_signal(tmp_path):
    ts = load("trial_signal")
    from fernas import genome as G

    a = ts.ec.parse_args(["--data", "demo-hard:1400,560,1400"])
    base = G.load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json")
    docs = []
    for lr in (0.01, 0.02, 0.05):
        doc = json.loads(json.dumps(base))
        doc["train"]["lr"] = lr
        docs.append(doc)
    gids = [G.genome_id(d) for d in docs]
    for doc, gid, test, val in zip(docs, gids, (0.7, 0.6, 0.5), (0.3, 0.2, 0.1)):
        run = ts.ec.decode_run(a, gid, tmp_path)
        fake_decode(run, test, (0.1, 0.1, 0.1, 0.4 - val, 0.1, 0.1, 0.1, val))  # own@4 reversed, own@8 in order
        G.save_genome(doc, run.parent / "genome.json")
    other = tmp_path / "decode" / ts.ec.decode_key(a, gids[0], 1)  # training seed 1: not this protocol's
    fake_decode(other / "run", 0.1)
    G.save_genome(docs[0], other / "genome.json")
    for run, rows in (("ga-mf-all-seed0", [(gids[0], "first", 4, 0.30, 1.5), (gids[0], "promotion", 8, 0.40, 1.4),
                                           (gids[1], "first", 4, 0.35, 1.6), (gids[1], "promotion", 8, 0.50, 1.2)]),
                      ("random-sh-all-seed0", [(gids[1], "first", 4, 0.33, 1.6), (gids[2], "first", 4, 0.20, 2.0),
                                               (gids[2], "rerank", 8, 0.90, 0.1)])):
        (tmp_path / run).mkdir()
        with open(tmp_path / run / "trials.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["gid", "kind", "budget", "status", "val_acc", "val_loss"])
            w.writeheader()
            w.writerows({"gid": g, "kind": k, "budget": b, "status": "ok", "val_acc": acc, "val_loss": loss}
                        for g, k, b, acc, loss in rows)
    rows = {r["gid"]: r for r in ts.signal_rows(a, tmp_path)}
    assert sorted(rows) == sorted(gids) and rows[gids[0]]["test"] == 0.7  # seed 1's decode left out
    assert rows[gids[1]]["acc@4"] == 0.34 and rows[gids[1]]["trials@4"] == 2  # mean over the runs
    assert "acc@8" not in rows[gids[2]]  # a re-ranking training is not the search's signal
    c = ts.correlations(list(rows.values()))
    assert c["own@8"] == {"n": 3, "spearman": 1.0} and c["own@4"]["spearman"] == -1.0
    assert c["acc@8"] == {"n": 2, "spearman": -1.0} and c["loss@8"] == {"n": 2, "spearman": -1.0}
    assert c["acc@4"]["spearman"] == 0.5 and c["loss@4"]["spearman"] == 1.0
