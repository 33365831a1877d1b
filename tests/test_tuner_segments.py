"""A long search runs in several Tuners (`fernas.search.tuner`): a new one at the first
generation's start after `SEGMENT_TRIALS` trials, so Tune's per-trial state (driver memory, an
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
    assert main(argv) == 0, capsys.readouterr()
    assert json.loads((out / "checkpoint.json").read_text())["done"] is True
    logbook = (out / "logbook.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in logbook[1:]] == ["0", "1", "2"]
    rows = read_trials(out)
    assert rows[-1]["kind"] == "rerank" and len({r["trial_id"] for r in rows}) == len(rows)
    tuners = sorted(p.name for p in (out / "ray").iterdir() if p.is_dir())
    assert tuners[0] == "run-1" and "run-1.2" in tuners, tuners  # generation 0's 4 trials filled the first
    for r in rows:
        assert Path(r["log_dir"]).parent.name in tuners and Path(r["log_dir"]).is_dir(), r["log_dir"]
