"""`fernas evolve --restarts N`: a search process that dies is started again with --resume; one
that finished, was given bad input or was asked to stop is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fernas.cli import main
from fernas.commands.evolve_restarts import attempt_argv, restart_reason, supervise

from test_search import read_trials

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("status, reason", [
    (0, None), (2, None), (-2, None), (-15, None), (-1, None), (130, None), (143, None),
    (-9, "killed by SIGKILL"), (-11, "killed by SIGSEGV"), (-6, "killed by SIGABRT"), (1, "exit status 1"),
    (137, "exit status 137")])
def test_what_restarts(status, reason):
    assert restart_reason(status) == reason


def test_an_attempt_keeps_the_users_flags_and_names_its_run():
    argv = ["evolve", "--pop", "4", "--restarts", "3"]
    assert attempt_argv(argv, "runs/x", False) == [*argv, "--restarts", "0", "--out", "runs/x"]
    assert attempt_argv(argv, "runs/x", True)[-1] == "--resume"


def child(*statuses: int):
    """Attempt i of a stand-in search ends with statuses[i] (negative: killed by that signal)."""
    def command(attempt: int) -> list[str]:
        s = statuses[attempt]
        code = f"import os, signal; os.kill(os.getpid(), {-s})" if s < 0 else f"raise SystemExit({s})"
        return [sys.executable, "-c", code]
    return command


def test_a_dead_attempt_is_started_again_until_one_finishes(capfd):
    assert supervise(child(-9, -11, 0), restarts=2, delay=0.01) == 0
    err = capfd.readouterr().err.splitlines()
    assert [line.split(" after ")[0] for line in err] == [
        "fernas: the search process ended (killed by SIGKILL)", "fernas: the search process ended (killed by SIGSEGV)"]
    assert err[1].endswith("restart 2 of 2 with --resume in 0 s")


def test_spent_restarts_bad_input_and_a_finished_run_end_it(capfd):
    assert supervise(child(-9, -9), restarts=1, delay=0.01) == 128 + 9
    assert capfd.readouterr().err.splitlines()[-1] == (
        "fernas: the search process ended (killed by SIGKILL) and its 1 restart(s) are spent; continue it with --resume")
    assert supervise(child(2, 0), restarts=3, delay=0.01) == 2
    assert supervise(child(1, 2, 0), restarts=3, delay=0.01) == 2
    assert capfd.readouterr().err.count("restart 1 of 3") == 1


def test_a_stop_is_passed_on_and_not_restarted():
    started = []

    def command(attempt):
        started.append(attempt)
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    assert supervise(command, restarts=3, delay=0.01) == 128 + signal.SIGTERM
    assert started == [0] and time.monotonic() - t0 < 30
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back


def test_bad_restarts_flag_is_one_line(capsys):
    assert main(["evolve", "--restarts", "-1", "--out", "x"]) == 2
    assert capsys.readouterr().err.strip() == "fernas: error: --restarts -1: expected >= 0"


def test_a_search_killed_with_sigkill_goes_on_by_itself(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "2",
            "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
            "--no-dashboard", "--restarts", "1", "--out", str(out)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    sup = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "trials.csv").is_file() or len(read_trials(out)) < 1:  # the first attempt has trained
            assert sup.poll() is None and time.time() < deadline, "no trial before the kill"
            time.sleep(0.5)
        (attempt,) = map(int, Path(f"/proc/{sup.pid}/task/{sup.pid}/children").read_text().split())
        os.kill(attempt, signal.SIGKILL)
        _, err = sup.communicate(timeout=300)
    finally:
        if sup.poll() is None:
            sup.kill()
    assert sup.returncode == 0, err
    assert "the search process ended (killed by SIGKILL)" in err and "restart 1 of 1 with --resume" in err
    rows = read_trials(out)
    keys = [(r["gid"], r["budget"], r["kind"]) for r in rows]
    assert len(keys) == len(set(keys)), "a genome was trained twice"
    import json

    state = json.loads((out / "checkpoint.json").read_text())
    assert state["done"] and state["meta"]["attempts"] == 2
