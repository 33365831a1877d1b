"""SIGTERM and SIGHUP stop a search or a full training as Ctrl-C does (fernas.stop_signals): the
run is kept, the line says how to continue it, the status is 128 + the signal's number, and
no Ray process is left running.  Without this, ray.init's own SIGTERM handler dumped a stack
and exited 1, and a SIGHUP left the trial workers running (about 1 GB each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fernas import stop_signals
from fernas.search.leftovers import NOTES

from test_search import tiny_genome

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_raises_as_ctrl_c_inside_the_block_only(signum):
    given = signal.signal(signum, signal.SIG_DFL)  # as in a shell (under nohup, as CI may run, SIGHUP is ignored)
    try:
        with pytest.raises(KeyboardInterrupt):
            with stop_signals.stopping_as_ctrl_c():
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler runs in this thread before the sleep ends
        assert stop_signals.received == [signum] and stop_signals.exit_status() == 128 + signum
        assert signal.getsignal(signum) == signal.SIG_DFL
    finally:
        signal.signal(signum, given)


def test_a_signal_ignored_before_stays_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with stop_signals.stopping_as_ctrl_c():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
        assert stop_signals.received == [] and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_after_the_command_finished_keeps_its_exit_status(signum):
    """The program's entry point: a Ctrl-C that arrives once `main` has returned (the interpreter
    joining library threads) ends the process with the command's status, not as interrupted."""
    code = ("import os, signal, sys, time\n"
            "import fernas.cli as cli\n"
            "cli.main = lambda: 3  # a command that finished with status 3\n"
            "status = cli.entry()\n"
            f"os.kill(os.getpid(), {int(signum)})\n"
            "time.sleep(5)\n"
            "sys.exit(9)\n")
    # a background job of a non-interactive shell (CI) starts with SIGINT ignored, which stays so
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    assert res.returncode == 3, (res.returncode, res.stderr)


def test_blocks_nest_and_outside_the_main_thread_change_nothing():
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals.stopping_as_ctrl_c():
        with stop_signals.stopping_as_ctrl_c():
            pass
        assert signal.getsignal(signal.SIGTERM) is not before  # the outer block's handler is back
    assert signal.getsignal(signal.SIGTERM) == before
    failures = []

    def in_a_thread():
        try:
            with stop_signals.stopping_as_ctrl_c():
                pass
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert failures == []


def test_a_sigterm_while_ray_starts_stops_as_ctrl_c():
    """ray.init installs `sys.exit(15)` for SIGTERM: inside `through_ray_init` it is Ctrl-C's stop."""
    with pytest.raises(KeyboardInterrupt):
        with stop_signals.stopping_as_ctrl_c(), stop_signals.through_ray_init():
            sys.exit(signal.SIGTERM)
    assert stop_signals.received == [signal.SIGTERM]
    with pytest.raises(SystemExit):  # any other exit is left alone
        with stop_signals.stopping_as_ctrl_c(), stop_signals.through_ray_init():
            sys.exit(3)


def _stopped(args: list[str], started: Path, signum: int) -> subprocess.CompletedProcess:
    """`fernas ARGS` sent `signum` (to it alone, as `kill PID` does) once `started` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "fernas", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not started.exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.2)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_sigterm_stops_a_search_resumably_and_ends_its_ray(tmp_path):
    out = tmp_path / "run"
    done = _stopped(["evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "50",
                     "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
                     "--no-dashboard", "--out", str(out)], out / "trials.csv", signal.SIGTERM)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert f"nothing done is lost: continue with  fernas evolve --no-dashboard --out {out} --resume" in done.stderr
    assert done.stderr.rstrip().endswith("fernas: stopped by SIGTERM") and "SIGTERM received" not in done.stderr
    assert not (out / NOTES).exists()  # every process below it ended with it
    report = (out / "report.html").read_text()  # written at the stop: the run as it stands
    assert ">stopped<" in report and ">running<" not in report


def test_sigterm_stops_a_full_training_with_how_to_continue_it(tmp_path):
    genome = tmp_path / "g.json"
    genome.write_text(json.dumps(tiny_genome(16)))
    out = tmp_path / "train"
    done = _stopped(["train", str(genome), "--data", "demo:210,70,70", "--epochs", "60", "--out", str(out)],
                    out / "history.csv", signal.SIGTERM)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert (f"fernas train: stopped; continue from the last checkpoint with  fernas train {genome} --out {out} "
            "--resume") in done.stderr


def test_the_stop_line_names_the_generation_in_progress_and_those_finished(capsys):
    from types import SimpleNamespace

    from fernas.commands.evolve_console import EvolveConsole

    console = EvolveConsole(quiet=True)
    console.stopped("runs/x", SimpleNamespace(gen=3, cfg=SimpleNamespace(generations=300), search_over=False))
    console.stopped("runs/x", SimpleNamespace(gen=300, cfg=SimpleNamespace(generations=300), search_over=True))
    first, second = capsys.readouterr().err.splitlines()
    assert first == ("fernas evolve: stopped in generation 3 (4/300; 3 finished); nothing done is lost: continue with  "
                     "fernas evolve --out runs/x --resume")
    assert second.startswith("fernas evolve: stopped after its search ended, before the re-ranking")
