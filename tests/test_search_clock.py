"""The search time `--time-budget` counts survives a kill between two trial outcomes: the
driver writes it every minute to `search_clock.json`, and a resume (and `fernas runs`) start
from the larger of that file and the GA checkpoint's record."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fernas.evolve import Evolution, GAConfig
from fernas.search import clock as C
from fernas.search import run as R

from test_budget_kills import _Console


def _run(tmp_path, time_budget: float) -> R.EvolveRun:
    ev = Evolution(GAConfig(pop=4, generations=2, seed=0), seed_docs=[], checkpoint_path=tmp_path / "checkpoint.json")
    ev.meta["search_seconds"] = 10.0  # recorded with the last outcome before the kill
    opts = SimpleNamespace(max_trials=None, time_budget=time_budget, max_compute=None)
    return R.EvolveRun(opts, ev, SimpleNamespace(out=tmp_path), 100, _Console())


def test_a_resume_counts_the_time_after_the_last_outcome(tmp_path):
    (tmp_path / C.CLOCK_FILE).write_text(json.dumps({"search_seconds": 3600.0}))
    run = _run(tmp_path, time_budget=3000.0)
    assert run.seconds_before == 3600.0 and run.search_seconds() >= 3600.0
    assert run.out_of_budget(live=0)[0] == "time_budget"  # the kill lost none of the hour
    (tmp_path / C.CLOCK_FILE).write_text(json.dumps({"search_seconds": 5.0}))  # behind the checkpoint
    assert _run(tmp_path, time_budget=3000.0).seconds_before == 10.0


def test_the_clock_file_is_written_at_the_first_tick_then_every_minute_of_search(tmp_path):
    run = _run(tmp_path, time_budget=None)
    path = tmp_path / C.CLOCK_FILE
    run.tick()
    first = json.loads(path.read_text())["search_seconds"]
    assert 10.0 <= first < 60.0
    path.unlink()
    run.tick()  # within the minute: no write
    assert not path.exists()
    run.clock.every = 0.0
    run.tick()
    assert json.loads(path.read_text())["search_seconds"] >= first
    path.unlink()
    run.ev.end_search(("max_trials", "4 reached", 4), [])  # the re-ranking is not search time
    run.tick()
    assert not path.exists()


def test_a_damaged_clock_or_record_counts_as_no_time(tmp_path):
    for text in ("{trunc", "[]", '{"search_seconds": "1h"}', '{"search_seconds": true}', '{"search_seconds": NaN}'):
        (tmp_path / C.CLOCK_FILE).write_text(text)
        assert C.earlier_seconds(tmp_path, {"search_seconds": 7}) == 7.0
    assert C.earlier_seconds(tmp_path, {"search_seconds": "x"}) == 0.0
