"""One process per run directory: a second `fernas evolve` / `fernas decode --train` on a
directory in use gets one line and exit 2; a killed holder leaves no stale lock."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from fernas.cli import main
from fernas.errors import RunDirError
from fernas.io import LOCK_NAME, lock_run_dir
from test_fulltrain_cli import TINY


@pytest.fixture
def held(tmp_path):
    """A run directory locked by another process (killed with SIGKILL at the end)."""
    run = tmp_path / "run"
    code = ("import sys, time; from fernas.io import lock_run_dir; fh = lock_run_dir(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield run, proc
    proc.kill()
    proc.wait()


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def test_second_holder_refused_and_kill_leaves_no_stale_lock(held):
    run, proc = held
    with pytest.raises(RunDirError, match=rf"in use by another fernas process \(pid {proc.pid} "):
        lock_run_dir(run)
    proc.kill()
    proc.wait()
    fh = lock_run_dir(run)  # SIGKILL released it
    assert fh is not None and (run / LOCK_NAME).read_text().startswith("pid ")
    fh.close()


def test_decode_train_on_a_directory_in_use_is_refused(held, tmp_path):
    run, proc = held
    g = tmp_path / "tiny.json"
    g.write_text(json.dumps(TINY))
    rc, out, err = cli("decode", g, "--train", "--data", "demo:70,35,35", "--epochs", "1", "--out", run)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"{run}: in use by another fernas process (pid {proc.pid}" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written


def test_evolve_on_a_directory_in_use_is_refused(held):
    run, proc = held
    rc, out, err = cli("evolve", "--data", "demo:70,35,35", "--pop", "3", "--generations", "1",
                       "--no-dashboard", "--out", run)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "in use by another fernas process" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]


def test_an_unheld_lock_file_is_no_obstacle_and_a_failed_start_keeps_the_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("pid 1 on elsewhere\n")  # left by a run that ended
    rc, out, err = cli("evolve", "--data", str(tmp_path / "missing.csv"), "--pop", "3", "--generations", "1",
                       "--no-dashboard", "--out", run)
    assert rc == 2 and "missing.csv" in err and "in use" not in err and "already exists" not in err
    assert run.is_dir()  # it existed before: not ours to remove


def test_a_failed_start_removes_the_directory_it_created(tmp_path):
    g = tmp_path / "tiny.json"
    g.write_text(json.dumps(TINY))
    run = tmp_path / "new-run"
    rc, out, err = cli("decode", g, "--train", "--data", str(tmp_path / "missing.csv"), "--out", run)
    assert rc == 2 and "missing.csv" in err
    assert not run.exists()


def test_resume_of_a_missing_run_creates_nothing(tmp_path):
    g = tmp_path / "tiny.json"
    g.write_text(json.dumps(TINY))
    run = tmp_path / "never-ran"
    rc, out, err = cli("decode", g, "--train", "--data", "demo:70,35,35", "--resume", "--out", run)
    assert rc == 2 and "no run to resume" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_several_genomes_into_a_base_in_use_are_refused(held, tmp_path):
    # the base holds race.json / comparison.csv: a second command there would write them too
    run, proc = held
    files = []
    for name in ("a", "b"):
        doc = {**json.loads(json.dumps(TINY)), "name": name}
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(doc))
    rc, out, err = cli("train", *files, "--race", 1, "--epochs", 2, "--data", "demo:70,35,35", "--out", run)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"{run}: in use by another fernas process (pid {proc.pid}" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # no finalist's directory, no race.json
