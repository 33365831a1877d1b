"""A long search runs in several Tuners (`fernas.search.tuner`): a new one at the GA's first
batch after `SEGMENT_TRIALS` trials, so Tune's per-trial state (driver memory, an
experiment state rewritten every 10 s) stays bounded.  Here a real search with a segment of 3
trials: every generation runs, in more than one Tuner, and each trial's log folder is where
trials.csv says."""

from __future__ import annotations

import json
from pathlib import Path

from fernas import genome as G
from fernas.cli import main
from fernas.search import tune_adapter

from test_search import read_trials, tiny_genome


def test_a_long_search_goes_on_in_new_tuners(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tune_adapter, "SEGMENT_TRIALS", 3)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for d in (tiny_genome(16), tiny_genome(24)):
        G.save_genome(d, seeds / f"{d['name']}.json")
    out = tmp_path / "run"
    argv = ["evolve", "--data", "demo:140,70,70", "--out", str(out), "--seed-genomes", str(seeds / "*.json"),
            "--pop", "4", "--generations", "3", "--epochs-per-trial", "1", "--max-steps-per-epoch", "1",
            "--rerank-top", "1", "--rerank-seeds", "1", "--max-mmacs", "60", "--seed", "2", "--no-dashboard"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert f"Trial logs from here on: {out / 'ray' / 'run-1.2'} (a new Ray Tune experiment after each 3 trials)" in said
    assert json.loads((out / "checkpoint.json").read_text())["done"] is True
    logbook = (out / "logbook.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in logbook[1:]] == ["0", "1", "2"]
    rows = read_trials(out)
    assert rows[-1]["kind"] == "rerank" and len({r["trial_id"] for r in rows}) == len(rows)
    tuners = sorted(p.name for p in (out / "ray").iterdir() if p.is_dir())
    assert tuners[0] == "run-1" and "run-1.2" in tuners, tuners  # generation 0's 4 trials filled the first
    for r in rows:
        assert Path(r["log_dir"]).parent.name in tuners and Path(r["log_dir"]).is_dir(), r["log_dir"]


def test_a_stop_between_two_tuners_stops_the_run_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    """A Ctrl-C (or SIGTERM) that lands between two Tuners, outside Tune's own handler: the run
    stops with its usual line and report, and --resume finishes it."""
    from fernas.commands.evolve_console import EvolveConsole

    monkeypatch.setattr(tune_adapter, "SEGMENT_TRIALS", 3)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")

    def interrupted(self, path, after):
        raise KeyboardInterrupt

    monkeypatch.setattr(EvolveConsole, "new_tuner", interrupted)
    out = tmp_path / "run"
    argv = ["evolve", "--data", "demo:140,70,70", "--out", str(out), "--pop", "4", "--generations", "2",
            "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "30",
            "--seed", "2", "--no-dashboard"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"nothing done is lost: continue with  fernas evolve --no-dashboard --out {out} --resume" in err, err
    assert "<td>stopped</td>" in (out / "report.html").read_text()
    monkeypatch.undo()
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["done"] is True


def test_the_running_search_writes_its_report_without_probing_its_own_lock(tmp_path, monkeypatch):
    """On NFS flock is a POSIX lock of the process: a probe from the process that holds the run's
    lock would release it.  The search's own report says "running" from what it is told."""
    import fernas.runs
    from fernas.search import rundir

    from test_runs import evolve_run

    out = tmp_path / "run"
    evolve_run(out, pop=4, generations=1, rerank_top=0)

    def probe(run):
        raise AssertionError("the lock was probed")

    monkeypatch.setattr(fernas.runs, "lock_held", probe)
    rundir.write_report(out, state="running")
    assert "<td>running</td>" in (out / "report.html").read_text()
