"""Ray's agents outlive a search killed with SIGKILL; the next search in the run directory ends
them (fernas.search.leftovers), by pid and start time, never a process of another boot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from fernas.processes import start_time
from fernas.search.leftovers import NOTES, ProcessNotes, end_leftovers, left_running

ROOT = Path(__file__).resolve().parents[1]

# A "search": notes the processes below it, starts one that would outlive it, says when it is noted
DRIVER = """
import subprocess, sys, time
from pathlib import Path
from fernas.search.leftovers import ProcessNotes
notes = ProcessNotes(Path(sys.argv[1]), every=0.1).start()
child = subprocess.Popen(["sleep", "600"])
while child.pid not in notes.noted:
    time.sleep(0.05)
print(child.pid, flush=True)
time.sleep(600)
"""


def _running(pid: int, started: str | None = None) -> bool:
    """Whether `pid` still runs (a zombie does not: a container's init may not reap it soon)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and start_time(pid) == (started or start_time(pid))


def _ends(pid: int, within: float = 10.0) -> bool:
    """Whether `pid` stops running within `within` seconds (SIGKILL takes effect asynchronously)."""
    deadline = time.time() + within
    while _running(pid):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def _noted(out: Path) -> dict[int, str]:
    return {int(p): s for p, s in json.loads((out / NOTES).read_text())["processes"].items()}


def _killed_driver(out: Path) -> int:
    """The pid of a process left running by a driver killed with SIGKILL."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    orphan = int(driver.stdout.readline())
    driver.kill()
    driver.wait()
    assert _running(orphan)  # it outlived the driver, as Ray's agents do
    return orphan


def test_the_next_search_ends_what_a_killed_one_left_running(tmp_path):
    orphan = _killed_driver(tmp_path)
    said = end_leftovers(tmp_path)
    assert said.startswith(f"fernas: ended 1 process left running by the search killed earlier in {tmp_path} (sleep; ")
    assert _ends(orphan), "the leftover still runs"
    assert not (tmp_path / NOTES).exists() and end_leftovers(tmp_path) is None


def test_notes_from_another_boot_or_a_reused_pid_end_nothing(tmp_path):
    orphan = _killed_driver(tmp_path)
    try:
        notes = json.loads((tmp_path / NOTES).read_text())
        (tmp_path / NOTES).write_text(json.dumps({**notes, "boot_id": "another-boot"}))
        assert end_leftovers(tmp_path) is None and _running(orphan)
        (tmp_path / NOTES).write_text(json.dumps({**notes, "processes": {str(orphan): "1"}}))  # pid reused since
        assert end_leftovers(tmp_path) is None and _running(orphan)
        (tmp_path / NOTES).write_text("{not json")
        assert end_leftovers(tmp_path) is None
    finally:
        os.kill(orphan, signal.SIGKILL)


def test_a_search_that_still_runs_ends_nothing_and_a_moved_run_still_ends_what_it_left(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        child = int(driver.stdout.readline())
        copy = tmp_path / "copy"
        shutil.copytree(out, copy)  # a copy of a running search's directory
        assert end_leftovers(out) is None and _running(child)  # its writer still runs (no lock: NFS without flock)
        assert end_leftovers(copy) is None and _running(child)
        driver.kill()
        driver.wait()
        moved = tmp_path / "moved"
        out.rename(moved)  # the killed run's directory moved: what it left is still its own
        assert left_running(moved) == {child: start_time(child)}
        assert end_leftovers(moved) is not None and _ends(child)
    finally:
        driver.kill()


def test_notes_of_another_version_are_dropped(tmp_path):
    (tmp_path / NOTES).write_text(json.dumps({"fernas_processes": 1, "boot_id": "x", "pid": 1, "processes": {}}))
    assert end_leftovers(tmp_path) is None and not (tmp_path / NOTES).exists()


def test_what_ran_below_before_the_search_is_never_noted(tmp_path):
    earlier = subprocess.Popen(["sleep", "600"])  # the caller's own (a notebook's TensorBoard, say)
    try:
        notes = ProcessNotes(tmp_path, every=0.05).start()
        later = subprocess.Popen(["sleep", "600"])
        while later.pid not in notes.noted:
            time.sleep(0.05)
        assert earlier.pid not in _noted(tmp_path)
        later.kill()
        later.wait()
        notes.stop()
    finally:
        earlier.kill()
        earlier.wait()


def test_a_zombie_counts_as_ended():
    child = subprocess.Popen(["sleep", "600"])
    assert start_time(child.pid) is not None
    child.kill()
    deadline = time.time() + 10
    while start_time(child.pid) is not None:  # killed, not yet collected: a zombie
        assert time.time() < deadline
        time.sleep(0.05)
    assert Path(f"/proc/{child.pid}").exists()  # still a zombie: nobody waited for it
    child.wait()


def test_notes_of_a_search_that_ended_cleanly_are_removed(tmp_path):
    notes = ProcessNotes(tmp_path, every=0.05).start()
    child = subprocess.Popen(["sleep", "600"])
    while child.pid not in notes.noted:
        time.sleep(0.05)
    assert child.pid in _noted(tmp_path)
    child.kill()
    child.wait()
    notes.stop()
    assert not (tmp_path / NOTES).exists()


def test_a_real_search_killed_with_sigkill_leaves_nothing_running_after_its_resume(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "50",
            "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
            "--no-dashboard", "--out", str(out)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    search = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (out / "trials.csv").is_file():  # Ray and its agents have started, the notes name them
            # (50 generations: still running at the kill, however slow or fast the machine)
            assert search.poll() is None and time.time() < deadline, "no trial before the kill"
            time.sleep(0.2)
        time.sleep(2.5)  # a note is at most WATCH_S (2 s) old
        noted = _noted(out)
        search.kill()
        search.wait()
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    time.sleep(1.0)
    alive = [p for p, started in noted.items() if _running(p, started)]
    assert alive, "nothing outlived the killed search: Ray now ends its agents itself?"
    listed = subprocess.run([sys.executable, "-m", "fernas", "runs", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert f"{out}: its killed search left {len(alive)} Ray process(es) running (kill -9 " in listed.stderr
    done = subprocess.run([*args, "--resume", "--max-trials", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # the budget is spent: the resume ends the search at once
    assert done.returncode == 0, done.stderr
    assert f"left running by the search killed earlier in {out}" in done.stderr
    assert all(_ends(p) or start_time(p) != noted[p] for p in alive)
    assert not (out / NOTES).exists()
