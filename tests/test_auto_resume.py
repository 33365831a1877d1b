"""`fernas evolve --auto-resume N`: a search process that dies is started again with --resume;
one that finished, refused its input or was asked to stop is not."""

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

from fernas.cli import build_parser, main
from fernas.commands.evolve_auto_resume import attempt_command, python, record_death, restart_reason, supervise
from fernas.search.next_steps import continue_command
from fernas.processes import start_time

from test_search import descendants, read_trials

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("status, started, reason", [
    (0, True, None), (2, False, None), (-2, True, None), (-15, True, None), (-1, True, None),
    (2, True, "exit status 2 after its run had started"), (130, True, "exit status 130"),
    (-9, False, "killed by SIGKILL"), (-11, True, "killed by SIGSEGV"), (-6, True, "killed by SIGABRT"),
    (1, False, "exit status 1"), (143, True, None), (129, True, None)])  # 143, 129: SIGTERM, SIGHUP sent to the search
def test_what_restarts(status, started, reason):
    assert restart_reason(status, started) == reason


def test_a_restart_resumes_only_a_run_its_first_attempt_began(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = "-run"  # a name that starts with a dash, as --out=-run accepts it
    argv = ["evolve", "--pop", "4", "--auto-resume", "3", "--out=-typed-"]
    first = attempt_command(argv, out, resume=False, fresh=True, attempt=0)
    n = len(python()) + 2
    assert first[:n] == [*python(), "-m", "fernas"] and "--resume" not in first
    assert "--resume" not in attempt_command(argv, out, False, True, 1)  # it died before making its run
    Path(out).mkdir()
    (Path(out) / "config.json").write_text("{}")
    assert attempt_command(argv, out, False, True, 1)[-1] == "--resume"
    assert "--resume" not in attempt_command(argv, out, False, False, 1)  # somebody else's run: never taken over
    assert attempt_command(argv, out, True, False, 0)[-1] == "--resume"
    args = build_parser().parse_args(attempt_command(argv, out, False, True, 1)[n:])
    assert (args.auto_resume, args.out, args.resume, args.pop) == (0, out, True, 4)


def test_attempts_import_fernas_from_where_this_process_did(monkeypatch):
    monkeypatch.setattr(sys, "path", [os.getcwd(), *sys.path[1:]])  # python -m fernas: the directory first
    assert python() == [sys.executable]
    monkeypatch.setattr(sys, "path", ["/venv/bin", *sys.path[1:]])  # the console script: -m must not add it
    assert python() == [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else [])]


def child(*statuses: int):
    """Attempt i of a stand-in search ends with statuses[i] (negative: killed by that signal)."""
    def command(attempt: int) -> list[str]:
        s = statuses[attempt]
        code = f"import os, signal; os.kill(os.getpid(), {-s})" if s < 0 else f"raise SystemExit({s})"
        return [sys.executable, "-c", code]
    return command


def test_a_dead_attempt_is_started_again_until_one_finishes(capfd):
    deaths = []
    assert supervise(child(-9, -11, 0), restarts=2, delay=0.01, record=deaths.append) == 0
    assert [(d["attempt"], d["reason"], d["restarted"]) for d in deaths] == [
        (1, "killed by SIGKILL", True), (2, "killed by SIGSEGV", True)]
    err = capfd.readouterr().err.splitlines()
    assert [line.split(" after ")[0] for line in err] == [
        "fernas: the search process ended (killed by SIGKILL)", "fernas: the search process ended (killed by SIGSEGV)"]
    assert err[1].endswith("restart 2 of 2 with --resume in 0 s")


def test_spent_restarts_bad_input_and_a_finished_run_end_it(capfd):
    assert supervise(child(-9, -9), restarts=1, delay=0.01, again=continue_command("runs/my run", 1)) == 128 + 9
    assert capfd.readouterr().err.splitlines()[-1] == (
        "fernas: the search process ended (killed by SIGKILL) and its 1 restart(s) are spent; continue it with  "
        "fernas evolve --out 'runs/my run' --resume --auto-resume 1")
    assert supervise(child(2, 0), restarts=3, delay=0.01) == 2
    assert supervise(child(1, 2, 0), restarts=3, delay=0.01) == 2
    assert capfd.readouterr().err.count("restart 1 of 3") == 1
    stamps = iter(range(100))  # every attempt rewrites config.json: its exit status 2 came after the start
    assert supervise(child(2, 0), restarts=3, delay=0.01, stamp=lambda: next(stamps)) == 0


def test_a_restart_that_finds_the_cluster_down_waits_longer_and_goes_on(capfd, monkeypatch, tmp_path):
    """The head node lost: the restart's --address is unreachable.  On a first start that is bad
    input (exit 2, not restarted); on a restart (FERNAS_SUPERVISED_ATTEMPT > 0) it exits 75 and
    the supervisor restarts it after a doubling delay, recording each death."""
    seen = tmp_path / "attempts"

    def command(attempt: int) -> list[str]:  # attempt 0 dies, 1 and 2 find the cluster down, 3 finishes
        code = (f"import os, sys; open({str(seen)!r}, 'a').write(os.environ['FERNAS_SUPERVISED_ATTEMPT'] + ' '); "
                f"sys.exit({(137, 75, 75, 0)[attempt]})")
        return [sys.executable, "-c", code]

    deaths = []
    assert supervise(command, restarts=3, delay=0.5, record=deaths.append) == 0
    assert seen.read_text().split() == ["0", "1", "2", "3"]
    assert [d["reason"] for d in deaths] == ["exit status 137"] + ["the Ray cluster (--address) could not be reached"] * 2
    waits = [line.rsplit(" in ", 1)[1] for line in capfd.readouterr().err.splitlines()]
    assert waits == ["0 s", "1 s", "2 s"]  # the delay, then doubling while the cluster stays down
    assert restart_reason(75, started=False) == "the Ray cluster (--address) could not be reached"

    argv = ["evolve", "--address", "127.0.0.1:9", "--out", str(tmp_path / "run"), "--no-dashboard"]
    monkeypatch.delenv("FERNAS_SUPERVISED_ATTEMPT", raising=False)
    assert main(argv) == 2 and "cannot connect to 127.0.0.1:9" in capfd.readouterr().err
    monkeypatch.setenv("FERNAS_SUPERVISED_ATTEMPT", "2")
    assert main(argv) == 75 and "cannot connect to 127.0.0.1:9" in capfd.readouterr().err
    assert "FERNAS_SUPERVISED_ATTEMPT" not in os.environ  # taken: nothing this process starts inherits it


def test_the_command_that_goes_on_has_the_machine_flags_and_the_restarts(tmp_path):
    from fernas.commands.evolve import machine_flags

    argv = ["evolve", "--pop", "6", "--address", "10.0.0.1:6379", "--gpus-per-trial", "0.5", "--no-dashboard",
            "--out", "runs/my run", "--auto-resume", "3"]
    args = build_parser().parse_args(argv)
    assert machine_flags(args) == ["--gpus-per-trial", "0.5", "--address", "10.0.0.1:6379", "--no-dashboard"]
    assert continue_command("runs/my run", 3, machine_flags(args)) == (
        "fernas evolve --gpus-per-trial 0.5 --address 10.0.0.1:6379 --no-dashboard --out 'runs/my run' --resume "
        "--auto-resume 3")
    assert continue_command("o") == "fernas evolve --out o --resume"
    # an attempt knows its supervisor's restarts from its command line (nothing in the environment)
    attempt = build_parser().parse_args(attempt_command(argv, "o", False, True, 0, restarts=3)[len(python()) + 2:])
    assert attempt.supervised_restarts == 3 and attempt.auto_resume == 0
    assert "--supervised-restarts" not in build_parser().format_help()


def test_deaths_are_kept_in_the_run_directory_once_it_holds_a_run(tmp_path, capsys):
    death = {"attempt": 1, "reason": "killed by SIGKILL", "restarted": True}
    record_death(str(tmp_path), death)
    assert not (tmp_path / "auto_resume.json").exists()  # no run there yet
    (tmp_path / "config.json").write_text("{}")
    record_death(str(tmp_path), death)
    record_death(str(tmp_path), {**death, "attempt": 2})
    doc = json.loads((tmp_path / "auto_resume.json").read_text())
    assert doc["fernas_auto_resume"] == 1 and [d["attempt"] for d in doc["deaths"]] == [1, 2]
    (tmp_path / "auto_resume.json").write_text("{broken")
    record_death(str(tmp_path), death)
    assert (tmp_path / "auto_resume.json").read_text() == "{broken"
    assert capsys.readouterr().err.startswith(f"fernas: warning: {tmp_path / 'auto_resume.json'} not updated")


def sleeper(started):
    def command(attempt):
        started.append(attempt)
        return [sys.executable, "-c", "import time; time.sleep(60)"]
    return command


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_is_passed_on_and_not_restarted(signum):
    started = []
    given = signal.signal(signum, signal.SIG_DFL)  # as in a shell (under nohup, SIGHUP is ignored and stays so)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signum))  # to this process: the supervisor
    timer.start()
    t0 = time.monotonic()
    try:
        assert supervise(sleeper(started), restarts=3, delay=0.01) == 128 + signum
        assert signal.getsignal(signum) is signal.SIG_DFL  # handlers given back
    finally:
        timer.cancel()
        signal.signal(signum, given)
    assert started == [0] and time.monotonic() - t0 < 30


def test_a_stop_during_the_wait_ends_it(capfd):
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    try:
        assert supervise(child(-9, 0), restarts=1, delay=20) == 128 + signal.SIGTERM
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10  # the stop ended the wait
    assert "restart 1 of 1" in capfd.readouterr().err


def test_an_ignored_hangup_stays_ignored_in_the_search():
    """`nohup fernas evolve --auto-resume N &` survives the end of the login session."""
    code = ("import os, signal, sys, time; sys.path.insert(0, %r)\n"
            "from fernas.commands.evolve_auto_resume import supervise\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "cmd = lambda a: [sys.executable, '-c', 'import os, signal, time; time.sleep(0.5); "
            "os.kill(os.getppid(), signal.SIGHUP); os.kill(os.getpid(), signal.SIGHUP); time.sleep(1.5)']\n"
            "sys.exit(supervise(cmd, 0))" % str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_bad_auto_resume_flag_is_one_line(capsys):
    assert main(["evolve", "--auto-resume", "-1", "--out", "x"]) == 2
    assert capsys.readouterr().err.strip() == "fernas: error: --auto-resume -1: expected >= 0"


def test_a_search_killed_with_sigkill_goes_on_by_itself(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "2",
            "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
            "--no-dashboard", "--auto-resume", "1", "--out", str(out)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    log = tmp_path / "supervisor.log"
    with log.open("w") as fh:  # in its own session: a failure below ends it and its searches at once
        sup = subprocess.Popen(args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (out / "trials.csv").is_file() or len(read_trials(out)) < 1:  # the first attempt has trained
            assert sup.poll() is None and time.time() < deadline, f"no trial before the kill: {log.read_text()}"
            time.sleep(0.5)
        (attempt,) = map(int, Path(f"/proc/{sup.pid}/task/{sup.pid}/children").read_text().split())
        # Ray started seconds before the first trial ended: the supervisor, which looks every
        # WATCH_S seconds, has seen its agents
        below = {pid: start_time(pid) for pid in descendants(attempt)}
        os.kill(attempt, signal.SIGKILL)
        sup.wait(timeout=300)
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
    said = log.read_text()
    assert sup.returncode == 0, said
    assert "the search process ended (killed by SIGKILL)" in said and "restart 1 of 1 with --resume" in said
    rows = read_trials(out)
    keys = [(r["gid"], r["budget"], r["kind"]) for r in rows]
    assert len(keys) == len(set(keys)), "a genome was trained twice"
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["done"] and state["meta"]["attempts"] == 2
    (death,) = json.loads((out / "auto_resume.json").read_text())["deaths"]
    assert (death["attempt"], death["reason"], death["restarted"]) == (1, "killed by SIGKILL", True)
    # Ray's agents outlived the killed attempt (for ever, holding about 200 MB): ended with it
    assert below and [p for p, started in below.items() if start_time(p) == started] == []
