"""The built wheel carries the seed designs: an installed fernas finds them outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_seed_genomes_and_evolve_finds_them(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a clean copy: a stale build/ in the checkout cannot leak into the wheel
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "benchmarks",
                                                              "docs", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(src)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (whl,) = wheels.glob("fernas-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    shipped = sorted(p.name for p in (site / "fernas" / "seed_genomes").glob("*.json"))
    assert shipped == sorted(p.name for p in (ROOT / "genomes").glob("*.json"))
    # from a directory without genomes/, with only the unpacked wheel on the path
    code = ("import fernas; from fernas.commands.evolve import DEFAULT_SEED_GLOB, load_seed_genomes; "
            "files, docs = load_seed_genomes(DEFAULT_SEED_GLOB); print(fernas.__file__); print(len(docs))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(site)), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    where, n = run.stdout.split()
    assert Path(where).is_relative_to(site) and int(n) == len(shipped) == 5


def test_every_subpackage_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fernas").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
