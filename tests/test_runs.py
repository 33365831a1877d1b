"""`fernas runs` and `fernas.load_run` on real run directories: an evolve run written by the
GA and the run-directory writer (stand-in fitness, no Ray), and a real `fernas train` run."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest

import fernas
from fernas import genome as G
from fernas.evolve import Evolution, GAConfig
from fernas.errors import RunDirError
from fernas.io import lock_run_dir
from fernas.runs import describe
from fernas.search.rundir import RunDir

from test_evolve import drive_to_a_budget, fake_outcome, seed_docs
from test_fulltrain_cli import FAST, TINY, cli


def evolve_run(out, **cfg) -> Evolution:
    out.mkdir()
    ga = GAConfig(max_mmacs=0, **cfg)
    ev = Evolution(ga, seed_docs=seed_docs(), checkpoint_path=out / "checkpoint.json")
    ev.run(lambda batch: [{**fake_outcome(c), "finished_at": 1.0} for c in batch])
    designs = {G.genome_id(d): d["name"] for d in seed_docs()}
    rdir = RunDir(out, designs, {}, set(designs))
    rdir.write_config({"options": {"ga": json.loads(json.dumps(asdict(ga)))}, "first_started": "2026-12-02T10:00:00",
                       "resumes": 0})
    rdir.write_all(ev)
    return ev


def test_runs_lists_evolve_and_training_runs(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    ev = evolve_run(root / "search", pop=6, generations=2, rerank_top=1, rerank_seeds=1)
    genome = tmp_path / "tiny.json"
    genome.write_text(json.dumps(TINY))
    rc, _, err = cli("train", genome, "--epochs", 1, "--fine-tune-epochs", 0, "--out", root / "trained", *FAST)
    assert rc == 0, err

    row = describe(root / "search")
    n_trials = sum(len(e["trials"]) for e in ev.cache.values())
    assert (row["kind"], row["state"], row["progress"], row["trials"]) == ("evolve", "finished", "2/2 generations", n_trials)
    assert row["ended_by"] == "generations"
    # "best" is the returned genome's (best.json), best_trial the highest fitness trial's
    picked = json.loads((root / "search" / "best.json").read_text())["evolve"]
    assert (row["best_gid"], row["best"]) == (picked["gid"], picked["val_acc"]) == (ev.hall_of_fame()[0].gid,
                                                                                    ev.cache[picked["gid"]]["val_acc"])
    top = ev.cfg.rungs[-1]
    highest = max(t["val_acc"] for e in ev.cache.values() for t in e["trials"]
                  if t.get("kind") != "rerank" and t.get("budget") == top and t["status"] == "ok")
    assert row["best_trial"] == highest
    # a pick that is not the highest trial (re-ranking chose another genome): "best" follows it
    other = min((e for e in ev.cache.values() if e.get("status") == "ok"), key=lambda e: e["val_acc"])
    doc = json.loads((root / "search" / "best.json").read_text())
    doc["evolve"].update(gid=other["gid"], val_acc=other["val_acc"])
    (root / "search" / "best.json").write_text(json.dumps(doc))
    row = describe(root / "search")
    assert (row["best_gid"], row["best"], row["best_trial"]) == (other["gid"], other["val_acc"], highest)
    assert row["best"] < highest
    with lock_run_dir(root / "search"):  # a fernas process holds it
        assert describe(root / "search")["state"] == "running"
    train = describe(root / "trained")
    assert (train["kind"], train["state"], train["progress"]) == ("train", "finished", "epoch 1/1")

    long = "demo-20261207-223409/trained/evolved-627b849040bf"  # make demo's layout and names
    shutil.copytree(root / "trained", root / long)
    rc, out, err = cli("runs", root)
    assert rc == 0 and "search" in out and "trained" in out and "finished" in out
    # trained on the centre crop alone: its single-crop accuracy, marked, and why (stderr)
    assert train["best_crop"] == "single" and f"{train['best']:.3f}*" in out and "* single-crop" in err
    assert long in out
    lines = out.splitlines()  # the columns line up however long a run's name
    assert len({line.index(" evolve " if " evolve " in line else " train ") for line in lines[1:]}
               | {lines[0].index(" kind ")}) == 1, out
    rc, _, err = cli("report", root / "demo-20261207-223409")  # make demo's folder: the runs are below it
    assert rc == 2 and "holds no run itself but 1 run(s) below it" in err and long in err, err
    rc, out, _ = cli("runs", root, "--json")
    assert {json.loads(line)["kind"] for line in out.splitlines()} == {"evolve", "train"}
    rc, _, err = cli("runs", tmp_path / "nowhere")
    assert rc == 2 and "no such directory" in err

    run = fernas.load_run(root / "search")
    assert run.kind == "evolve" and len(run.trials) == n_trials and len(run.logbook) == 2
    assert run.best and run.best[0]["evolve"]["gid"] == ev.hall_of_fame()[0].gid
    run = fernas.load_run(root / "trained")
    assert run.kind == "train" and len(run.history) == 1 and run.metrics["test_accuracy_single"] == train["best"]


def test_a_stopped_evolve_run_is_resumable(tmp_path):
    out = tmp_path / "run"
    evolve_run(out, pop=4, generations=2, rerank_top=0)
    ck = json.loads((out / "checkpoint.json").read_text())
    ck["done"] = False
    (out / "checkpoint.json").write_text(json.dumps(ck))
    assert describe(out)["state"] == "stopped"
    assert describe(tmp_path) is None


def test_runs_names_the_budget_that_ended_a_search(tmp_path):
    out = tmp_path / "budget"
    out.mkdir()
    ga = GAConfig(pop=8, generations=5, seed=2, min_budget=1, max_budget=2, rerank_top=2, rerank_seeds=1, max_mmacs=0)
    ev = Evolution(ga, seed_docs=seed_docs(), checkpoint_path=out / "checkpoint.json")
    drive_to_a_budget(ev, end_after=13)
    RunDir(out, {}, {}, set()).write_config({"options": {"ga": json.loads(json.dumps(asdict(ga)))}})
    row = describe(out)
    assert (row["state"], row["progress"], row["ended_by"]) == ("finished", "1/5 generations --max-compute", "max_compute")
    rc, table, _ = cli("runs", tmp_path)
    assert rc == 0 and "1/5 generations --max-compute" in table.splitlines()[1]
    # patience ends a search between generations (no search_end): named all the same
    stalled = tmp_path / "stalled"
    evolve_run(stalled, pop=4, generations=2)
    ck = json.loads((stalled / "checkpoint.json").read_text())
    ck["meta"]["ended_by"] = "patience"
    (stalled / "checkpoint.json").write_text(json.dumps(ck))
    assert describe(stalled)["progress"] == "2/2 generations --patience"


def test_a_run_whose_files_are_truncated_is_read_as_resume_reads_it(tmp_path, capsys):
    """A kill mid-write cannot truncate these files (they are replaced atomically), a full disk
    or a copy can: `fernas runs` falls back to the copy before, as `--resume` does, and a run
    with no readable config.json at all is listed as corrupt instead of left out."""
    from fernas.cli import main

    run = tmp_path / "search"
    evolve_run(run, pop=6, generations=2)
    before = describe(run)
    for name in ("config.json", "checkpoint.json"):
        shutil.copy(run / name, run / name.replace(".json", ".prev.json"))
        (run / name).write_text((run / name).read_text()[:200])
    assert describe(run) == before  # not "incomplete gen 0/2, 0 trials"
    (run / "config.prev.json").unlink()
    assert (describe(run)["kind"], describe(run)["state"]) == ("?", "corrupt")
    assert main(["runs", str(tmp_path)]) == 0
    assert "search" in capsys.readouterr().out
    assert main(["report", str(run)]) == 2
    assert capsys.readouterr().err.strip() == (f"fernas: error: {run / 'config.json'}: corrupt (not valid JSON, or "
                                               "not an object), and no readable copy before it")
    foreign = tmp_path / "other"  # a config.json of something else, with no other file of a run: not listed
    foreign.mkdir()
    (foreign / "config.json").write_text("[]")
    assert describe(foreign) is None
    from fernas.fulltrain import RUN_VERSION

    trained = tmp_path / "trained"  # a training run whose metrics.json is valid JSON but no object
    trained.mkdir()
    (trained / "config.json").write_text(json.dumps({"fernas_train_run": RUN_VERSION, "args": {"epochs": 2}}))
    (trained / "metrics.json").write_text("[1]")
    assert (describe(trained)["state"], describe(trained)["best"]) == ("incomplete", None)
    (trained / "history.csv").write_bytes(b"epoch\n\x00\xff\n")  # not UTF-8 after a crash: no traceback
    assert describe(trained)["progress"] == "epoch 0/2"
    assert main(["runs", str(tmp_path)]) == 0 and "trained" in capsys.readouterr().out
    assert main(["report", str(trained)]) == 0
    assert f"{trained / 'history.csv'}: not readable (UnicodeDecodeError" in capsys.readouterr().err
    with pytest.raises(RunDirError, match="history.csv: not readable"):
        fernas.load_run(trained)
    assert main(["runs", str(run / "config.json")]) == 2
    assert capsys.readouterr().err.strip() == f"fernas: error: {run / 'config.json'}: not a directory"


def test_start_times_of_other_time_zones_compare_as_moments():
    """A search started under TZ=Asia/Tokyo at 03:03 UTC and a training at 02:51 UTC: `fernas runs`
    shows and sorts both in this machine's local time (the strings as written sort the other
    way); a time without an offset (older runs) is local; anything else is no time."""
    from fernas.runinfo import local_time, timestamp

    tokyo, utc = "2026-12-08T12:03:26+09:00", "2026-12-08T02:51:00+00:00"
    assert tokyo > utc and local_time(tokyo) > local_time(utc)
    assert local_time("2026-12-08T12:03:26") == "2026-12-08T12:03:26"
    assert local_time("") is None and local_time("yesterday") is None
    now = timestamp()
    assert now[-6] in "+-" and local_time(now) == now[:19]


def test_a_genome_refused_untrained_is_no_trial(tmp_path):
    """`fernas runs` counts trials as the budgets and the resume line do (`trial_count`): a
    genome refused untrained (over a cap) is counted apart."""
    out = tmp_path / "run"
    evolve_run(out, pop=4, generations=1, rerank_top=0)
    before = describe(out)
    ck = json.loads((out / "checkpoint.json").read_text())
    entry = next(iter(ck["cache"].values()))
    entry["trials"].append({"status": "skipped", "error": "too large", "val_acc": 0.0, "kind": "first", "budget": 1})
    (out / "checkpoint.json").write_text(json.dumps(ck))
    after = describe(out)
    assert (after["trials"], after["refused"]) == (before["trials"], 1) and before["refused"] == 0
