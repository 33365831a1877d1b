"""Where Ray Tune would swallow why a search cannot go on (and the search would then wait for
ever): output whose reader went away (`fernas evolve ... | head`): a real search stops cleanly
with status 141, other commands end with 141 and no noise, --auto-resume does not restart it;
an error of the driver's own code in a Tune callback ends the search with that error."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fernas.commands import closed_output
from fernas.commands.evolve_auto_resume import restart_reason
from fernas.evolve import Evolution, GAConfig

from test_oom_retry import FakeRun
from test_search import read_trials, tiny_genome

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import chaos  # noqa: E402

@pytest.mark.parametrize("reader", ["pipe", "terminal"])
def test_a_lost_reader_points_the_descriptor_at_devnull(reader):
    """EPIPE (`| head`): a stop, told once.  EIO (a terminal that went away: a search started
    with `&` whose login ended): nobody asked for a stop; only the lines are lost."""
    read_end, write_end = os.pipe() if reader == "pipe" else os.openpty()
    told = []
    watch = closed_output.OutputWatch(on_closed=told.append)
    with os.fdopen(write_end, "w") as raw:
        stream = watch.guard(raw)
        os.close(read_end)
        print("nobody reads this", file=stream, flush=True)  # no exception
        print("nor this", file=stream, flush=True)
        assert os.readlink(f"/proc/self/fd/{raw.fileno()}") == os.devnull
    if reader == "pipe":
        assert told == ["stdout"] and watch.closed == "stdout" and not watch.gone
    else:
        assert told == [] and watch.closed is None and watch.gone


def env(**changes) -> dict:
    """This process's environment (as the test sees it) without Python's unbuffered mode."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "RAY_USAGE_STATS_ENABLED": "0",
            **changes}


def read_until(proc, marker: str, seconds: float) -> str:
    """`proc`'s stdout until it holds `marker`, ends or `seconds` pass (a hung search must not hang the test)."""
    text, deadline, fd = b"", time.time() + seconds, proc.stdout.fileno()
    while marker.encode() not in text and time.time() < deadline:
        if select.select([fd], [], [], 1.0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            text += chunk
    return text.decode()


def test_a_search_whose_output_closes_stops_instead_of_hanging(tmp_path):
    """The lines after `Trial logs:` are printed inside Ray Tune's callbacks, where a
    BrokenPipeError used to be swallowed with the search half-updated (it then waited for ever)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "3",
           "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
           "--no-dashboard", "--out", str(out)]
    with (tmp_path / "stderr").open("w") as log:  # a file, not a pipe: a hung search must not hang the test
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=log)
    printed = read_until(proc, "Trial logs:", 120)  # `| head` up to the last line before the trials
    proc.stdout.close()
    try:
        status = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *chaos.descendants(proc.pid)]:  # the search and the Ray it started
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        status = "still running after 120 s"
    err = (tmp_path / "stderr").read_text()
    assert "Trial logs:" in printed and status == closed_output.STATUS, printed + err
    assert "stdout was closed (broken pipe): no further trial is handed out" in err and "--resume" in err, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    state = json.loads((out / "checkpoint.json").read_text())
    assert not state["done"] and len(read_trials(out)) < 8  # stopped early, its trials recorded


def test_other_commands_end_with_141_and_no_noise():
    # `fernas genome random` prints about 40 lines: buffered, they reach the pipe in the flush at the end
    proc = subprocess.Popen([sys.executable, "-m", "fernas", "genome", "random", "--seed", "1"], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # closed before Python has even started: its first write finds no reader
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == closed_output.STATUS and err == "", err


def test_a_search_whose_output_closed_before_it_started_starts_no_ray(tmp_path):
    """`fernas evolve ... | true`: no line may be written before Ray would start; the closed
    pipe is seen there, and the run directory is left as it was (here: none)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "2",
           "--epochs-per-trial", "1", "--rerank-top", "0", "--max-mmacs", "60", "--no-dashboard", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before Python has even started
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == closed_output.STATUS, err
    assert err == "fernas evolve: stdout was closed (broken pipe) before the search started: no trial was trained\n"
    assert not (out / "config.json").exists() and not (out / "ray").exists()


def close_standard_descriptors():
    """In the child before exec: what `>&- 2>&- <&-` in a shell does."""
    for fd in (0, 1, 2):
        os.close(fd)


def test_a_search_started_with_its_descriptors_closed_runs_to_its_end(tmp_path):
    """`fernas evolve ... >&- 2>&- <&- &`: Python sets sys.stdout to None (the first line
    used to raise AttributeError), and the next file opened would get descriptor 1."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "2",
           "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
           "--no-dashboard", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), preexec_fn=close_standard_descriptors)
    assert proc.wait(timeout=300) == 0
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["done"] and len(read_trials(out)) >= 4
    for name in ("config.json", "best.json"):
        json.loads((out / name).read_text())  # no library line landed in them


def test_other_commands_with_stdout_closed_succeed_silently():
    proc = subprocess.run([sys.executable, "-m", "fernas", "genome", "random", "--seed", "1"], cwd=ROOT, env=env(),
                          preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_auto_resume_does_not_restart_a_search_whose_output_closed():
    assert restart_reason(closed_output.STATUS, started=True) is None
    assert restart_reason(-13, started=True) is None  # killed by SIGPIPE


def test_an_error_in_a_tune_callback_ends_the_search_instead_of_hanging(tmp_path):
    """Tune logs an exception of `on_trial_complete` and goes on; the searcher keeps it and
    raises it where Tune does not swallow it (the next `suggest`)."""
    from fernas.search.tune_adapter import GenerationalSearcher

    class FullDisk(FakeRun):
        def record(self, cand, outcome, running=(), waiting=True):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoint.json"))

    ev = Evolution(GAConfig(pop=4, generations=2, seed=0), seed_docs=[tiny_genome(w) for w in (16, 24, 32, 48)],
                   checkpoint_path=tmp_path / "checkpoint.json")
    s = GenerationalSearcher(FullDisk(ev))
    s.suggest("t0")
    s.on_trial_complete("t0", {"status": "ok", "val_acc": 0.5, "epoch": 1})  # Tune would swallow a raise here
    with pytest.raises(OSError, match="No space left"):
        s.suggest("t1")
