"""Live progress inside a generation: counts, best, ETA, failure lines, quiet, the tty bar."""

import io

import pytest

from fernas.commands.trial_progress import TrialProgress


def _gen(p, outcomes, running=2):
    p.queued(0, len(outcomes), best=0.3)
    for _ in range(running):
        p.started()
    for i, o in enumerate(outcomes):
        if i >= running:
            p.started()
        p.finished(f"gen0_g{i}_b4_x", o, at_max_budget=True)


def test_plain_lines_count_failures_and_best():
    out = io.StringIO()
    p = TrialProgress(out, tty=False, every_s=0.0)
    _gen(p, [{"status": "ok", "val_acc": 0.41, "wall_seconds": 10.0},
             {"status": "failed", "error": "CUDA out of memory", "wall_seconds": 1.0},
             {"status": "ok", "val_acc": 0.35, "wall_seconds": 20.0}])
    text = out.getvalue()
    assert "trial gen0_g1_b4_x failed: CUDA out of memory" in text
    last = text.strip().splitlines()[-1]
    assert last == "gen 0: trials 3/3 done, 0 running, 1 failed  highest 0.4100  ETA 0m00s"
    assert p.best == 0.41


def test_eta_from_trial_pace():
    p = TrialProgress(io.StringIO(), tty=False, every_s=1e9)
    p.queued(2, 10, best=None)
    p.started(), p.started()
    p.finished("a", {"status": "ok", "val_acc": 0.2, "wall_seconds": 30.0}, at_max_budget=False)
    # 9 trials left at 30 s each, 2 at a time
    assert p.eta_seconds() == 30.0 * 9 / 2
    assert p.best is None  # a lower budget's accuracy is no fitness of the run
    p.queued(2, 5, best=0.5)  # a rung opens: its promotions join the generation
    assert p.total == 15 and p.best == 0.5
    p.queued(3, 4, best=0.5)  # the next generation starts afresh
    assert (p.total, p.done, p.gen) == (4, 0, 3)
    assert p.summary().startswith("gen 3: trials 0/4 done")
    from fernas.evolve.config import RERANKING

    p.queued(RERANKING, 6, best=0.5)  # the re-ranking's trials are no generation's
    assert p.summary().startswith("re-ranking: trials 0/6 done")


def test_plain_lines_are_rate_limited_and_quiet_is_silent():
    out = io.StringIO()
    p = TrialProgress(out, tty=False, every_s=1e9)
    _gen(p, [{"status": "ok", "val_acc": 0.4, "wall_seconds": 1.0}] * 3)
    assert out.getvalue() == ""
    quiet = io.StringIO()
    q = TrialProgress(quiet, quiet=True, tty=False, every_s=0.0)
    _gen(q, [{"status": "failed", "error": "boom"}])
    assert quiet.getvalue() == ""


def test_terminal_bar_in_place():
    out = io.StringIO()
    p = TrialProgress(out, tty=True)
    _gen(p, [{"status": "ok", "val_acc": 0.4, "wall_seconds": 1.0},
             {"status": "failed", "error": "boom", "wall_seconds": 1.0}])
    assert p.bar is not None and p.bar.n == 2 and p.bar.total == 2
    p.close()
    text = out.getvalue()
    assert "\r" in text and "gen 0: 2/2" in text and "failed 1" in text
    assert "trial gen0_g1_b4_x failed: boom" in text


def test_a_real_search_reports_failed_and_hung_trials_as_they_happen(tmp_path):
    """Through real Ray Tune trials: a failing genome, a hanging one (--trial-timeout ends it) and
    one stuck inside C code (its worker is ended; Tune's retry reports why instead of hanging
    again) each get their line on stderr with the reason, stdout is unchanged, the run goes on."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from fernas import genome as G
    from test_search import read_trials, tiny_genome

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    docs = [tiny_genome(16), tiny_genome(24), tiny_genome(32), tiny_genome(48)]
    for d in docs:
        G.save_genome(d, seeds / f"{d['name']}.json")
    bad, hung, stuck = G.genome_id(docs[1]), G.genome_id(docs[2]), G.genome_id(docs[3])
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", FERNAS_FAULT_INJECT=f"{bad}=raise,{hung}=hang,{stuck}=stuck")
    res = subprocess.run([sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--out",
                          str(tmp_path / "run"), "--seed-genomes", str(seeds / "*.json"), "--pop", "4",
                          "--generations", "1", "--epochs-per-trial", "1", "--max-steps-per-epoch", "1",
                          "--rerank-top", "0", "--no-dashboard", "--trial-timeout", "12s"],
                         env=env, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    failed = sorted(ln for ln in res.stderr.splitlines() if ln.startswith("trial gen0_"))
    assert any(f"_{bad}_b1_" in ln and "injected fault" in ln for ln in failed), failed
    assert any(f"_{hung}_b1_" in ln and "timed out: no epoch ended within 12 s (--trial-timeout)" in ln
               for ln in failed), failed
    assert "trial gen0_" not in res.stdout and "gen   0 (1/1)" in res.stdout
    rows = {r["gid"]: r for r in read_trials(tmp_path / "run")}
    assert rows[hung]["status"] == "failed" and rows[hung]["error"].startswith("timed out")
    # stuck in C: the watchdog ended its worker; Tune's retry found the reason and did not hang again
    assert rows[stuck]["status"] == "failed", rows[stuck]
    assert rows[stuck]["error"].startswith("timed out") and "its worker was ended" in rows[stuck]["error"]
    assert not (tmp_path / "run" / "stuck").exists()  # the retry took the reason; the empty folder is removed
    assert rows[G.genome_id(docs[0])]["status"] == "ok"


def test_a_hung_trial_is_ended_by_its_watchdog_with_the_reason():
    """In-process: the watchdog raises in the trial's thread; the outcome says why."""
    from fernas.demo_faces import make_demo
    from fernas.genome import genome_id
    from fernas.search.trial import FAULT_ENV, TrialBudget, train_trial
    from test_search import tiny_genome

    import os
    doc = tiny_genome(16)
    os.environ[FAULT_ENV] = f"{genome_id(doc)}=hang"
    try:
        out = train_trial(doc, make_demo(64, 32, 0, seed=0), TrialBudget(epochs=1, max_steps_per_epoch=1, timeout=1.5),
                          gid=genome_id(doc))
    finally:
        del os.environ[FAULT_ENV]
    assert out["status"] == "failed" and out["error"].startswith("timed out: no epoch ended within 2 s")
    assert out["val_acc"] == 0.0


def test_watchdog_limits_come_from_the_trials_own_speed():
    from fernas.search.watchdog import FACTOR, FIRST_EPOCH_S, MIN_EPOCH_S, TrialWatchdog

    dog = TrialWatchdog(0.0)
    assert dog.allowed() == FIRST_EPOCH_S
    dog.last -= 40.0  # an epoch of 40 s
    dog.beat()
    assert dog.allowed() == pytest.approx(max(MIN_EPOCH_S, FACTOR * 40.0), rel=1e-3)
    assert TrialWatchdog(90.0).allowed() == 90.0


def test_workers_killed_by_rays_memory_monitor_get_that_reason(tmp_path):
    """A threshold of 1% of the node's memory makes Ray's memory monitor kill every trial worker
    (and Tune's retry of it): each trial is penalised with that reason, the run ends normally."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_search import read_trials

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_memory_usage_threshold="0.01",
               RAY_memory_monitor_refresh_ms="100")
    res = subprocess.run([sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--out",
                          str(tmp_path / "run"), "--pop", "2", "--elite", "1", "--generations", "1",
                          "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0",
                          "--no-dashboard", "--max-mmacs", "60"],
                         env=env, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [r for r in read_trials(tmp_path / "run") if r["status"] != "skipped"]
    assert rows and all(r["status"] == "failed" for r in rows), rows
    for r in rows:
        assert r["error"].startswith("worker failed after 1 retry: killed by Ray's memory monitor"), r["error"]
        assert "in use)" in r["error"] and "--cpus-per-trial" in r["error"]
