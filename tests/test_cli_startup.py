"""The command line answers at once: parsing any command line, and the commands that read only
small files (`genome`, `space`, `runs`, `--help`), import no torch, numpy, Ray or DEAP (about
1.5 s and 700 MB before the first line otherwise); the commands that train import them when
they run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_runs import evolve_run

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "ray", "deap", "pandas", "PIL", "matplotlib")
GENOME = str(ROOT / "genomes" / "vgg_khaireddin.json")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_command_line_parses_without_torch():
    argvs = [["evolve", "--pop", "4"], ["train", GENOME, "--epochs", "2"], ["decode", GENOME, "--train"],
             ["data", "check", "demo"], ["data", "demo", "--out", "x.csv"], ["evaluate", "m.pt"], ["predict", "m.pt", "a.png"],
             ["export", "m.pt"], ["report", "run"], ["runs"], ["space", "show"], ["genome", "check", GENOME]]
    code = f"from fernas.cli import build_parser\np = build_parser()\nfor a in {argvs!r}:\n    p.parse_args(a)"
    assert heavy_modules_after(code) == []


def test_commands_that_read_small_files_run_without_torch(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    evolve_run(root / "search", pop=4, generations=1)
    calls = [["genome", "check", GENOME], ["genome", "random", "--seed", "1"], ["space", "show"], ["runs", str(root)],
             ["runs", str(root), "--json"]]
    code = ("import contextlib, io\nfrom fernas.cli import main\n"
            f"for a in {calls!r}:\n    with contextlib.redirect_stdout(io.StringIO()):\n        assert main(a) == 0, a")
    assert heavy_modules_after(code) == []
