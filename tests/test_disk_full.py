"""A disk that fills up in the middle of a real search (a 1 MiB tmpfs, mounted here as root):
one line naming the file and what to do, exit status 2, the last good files intact, and
`--resume` finishes the run once there is space again."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fernas.evolve import Evolution

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str):
    """A tmpfs of `size` mounted at `mnt` (as root), unmounted afterwards; skips the test elsewhere."""
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()[:80]})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as mnt:
        yield mnt


def test_a_full_disk_mid_search_is_one_line_and_resume_finishes(small_disk, tmp_path):
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (1024 * 1024 - 60 * 1024))  # about 60 KB left: the first checkpoints fit
    out = small_disk / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "3",
            "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "0", "--max-mmacs", "60",
            "--no-dashboard", "--quiet", "--storage", str(tmp_path / "storage"), "--out", str(out)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out) in err[0] and "--resume" in err[0], err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
    before = Evolution.load(out / "checkpoint.json")  # the last good checkpoint reads back whole
    assert before.recovered is None and not before.done

    filler.unlink()
    res = subprocess.run([*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    after = Evolution.load(out / "checkpoint.json")
    assert after.done and set(before.cache) <= set(after.cache)


@pytest.fixture
def disk_of_64m(tmp_path):
    with tmpfs(tmp_path / "disk", "64m") as mnt:
        yield mnt


def test_a_full_disk_under_a_trials_checkpoint_ends_the_search_and_penalises_no_genome(disk_of_64m, tmp_path):
    """Successive halving: every first training writes a checkpoint for its promotion (megabytes,
    where checkpoint.json is kilobytes).  A disk with room for the JSON files only: torch.save's
    failed write is not the genome's fault, so the search ends in one line (exit 2) with no
    genome recorded failed, and --resume trains them once there is space."""
    filler = disk_of_64m / "filler"
    filler.write_bytes(b"x" * (64 * 1024 * 1024 - 400 * 1024))
    out = disk_of_64m / "run"
    args = [sys.executable, "-m", "fernas", "evolve", "--data", "demo:140,70,70", "--pop", "4", "--generations", "1",
            "--min-budget", "1", "--max-budget", "2", "--max-steps-per-epoch", "1", "--rerank-top", "0",
            "--max-mmacs", "60", "--no-dashboard", "--quiet", "--storage", str(tmp_path / "storage"), "--out", str(out)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out / "checkpoints") in err[0], err
    assert "--resume" in err[0], err
    before = Evolution.load(out / "checkpoint.json")
    trials = [t for e in before.cache.values() for t in e.get("trials", [])]
    assert not any("I/O error" in (t.get("error") or "") or "unexpected pos" in (t.get("error") or "")
                   for t in trials), trials

    filler.unlink()
    res = subprocess.run([*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    after = Evolution.load(out / "checkpoint.json")
    done = [t for e in after.cache.values() for t in e.get("trials", [])]
    assert after.done and done and all(t["status"] == "ok" for t in done), done


def test_a_full_disk_under_a_trainings_checkpoint_is_one_line(disk_of_64m):
    """`fernas train` of the VGG seed (a checkpoint of about 50 MB with its optimizer) on a disk
    with room for its small files only: one line naming the checkpoint, exit 2, no traceback."""
    (disk_of_64m / "filler").write_bytes(b"x" * (40 * 1024 * 1024))
    out = disk_of_64m / "vgg"
    res = subprocess.run([sys.executable, "-m", "fernas", "train", str(ROOT / "genomes" / "vgg_khaireddin.json"),
                          "--data", "demo:70,35,35", "--epochs", "1", "--fine-tune-epochs", "0", "--train-crops", "1",
                          "--device", "cpu", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "No space left on device" in err[-1] and str(out) in err[-1] and "--resume" in err[-1], err


def test_a_failed_atomic_write_names_the_file_asked_for_not_its_temporary(tmp_path):
    """A directory where the file goes (a report.html made by hand): the error names that path,
    not the temporary file beside it, and leaves no temporary file."""
    from fernas.io import atomic_write_text

    (tmp_path / "report.html").mkdir()
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "report.html", "<html>")
    assert err.value.filename == str(tmp_path / "report.html") and list(tmp_path.iterdir()) == [tmp_path / "report.html"]


@pytest.mark.parametrize("probed, told", [("EDQUOT", "EDQUOT"), ("ENOSPC", "ENOSPC"), ("ESTALE", "EIO")])
def test_a_failed_torch_save_is_told_by_the_error_a_write_then_meets(tmp_path, monkeypatch, probed, told):
    """torch's zip writer words every failed write alike ("unexpected pos"): the error raised is
    the one a plain write into the file then meets (a quota, a full disk), not a guess; any
    other (a stale or lost mount) is an I/O error, which ends a search as the storage's fault."""
    import errno

    import torch

    from fernas import io

    real_write = os.write

    def write(fd, data):
        if len(data) == 1 << 20:  # the probe's write
            code = getattr(errno, probed)
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    def save(obj, fh):
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed")

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as err:
        io.atomic_torch_save({"w": torch.zeros(4)}, tmp_path / "ck.pt")
    monkeypatch.undo()
    assert err.value.errno == getattr(errno, told) and err.value.filename == str(tmp_path / "ck.pt")
    assert list(tmp_path.iterdir()) == []  # no temporary file left
