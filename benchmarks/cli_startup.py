"""How long a `fernas` command takes to answer, and its peak memory: this tree against a git
revision (default 5643d98, before the command line stopped importing torch), side by side.

Each command runs as users run it (`python -m fernas ...`, a fresh interpreter), the two
trees alternating, `--repeats` times each; the figures are the medians of wall time and of
peak resident memory (the child's own rusage, from wait4).  The other tree is a `git worktree` of the
revision; the editable install's import hook is taken off for it, so its own `fernas`
package is the one imported.  Results go to benchmarks/results/cli_startup.json.

    python benchmarks/cli_startup.py [--against REV] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--version"], ["--help"], ["genome", "check", "genomes/vgg_khaireddin.json"], ["space", "show"],
            ["genome", "random", "--seed", "1"]]
# Runs `fernas` from the tree in argv[1], whatever the editable install points at.
LAUNCHER = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
            "getattr(f, '__module__', type(f).__module__)]; sys.path.insert(0, sys.argv.pop(1)); "
            "from fernas.cli import main; sys.argv[0] = 'fernas'; sys.exit(main())")


def once(tree: Path, command: list[str]) -> tuple[float, float]:
    """(seconds, peak MB) of one run of `fernas COMMAND` from `tree`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tree), *command], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"fernas {' '.join(command)} from {tree}: exit status {proc.returncode}"
    return seconds, usage.ru_maxrss / 1024  # KB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="5643d98", help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    other = Path(tempfile.mkdtemp(prefix="fernas-cli-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.against], cwd=ROOT, check=True)
    try:
        rows = []
        for command in COMMANDS:
            runs = {"this tree": [], args.against: []}
            for _ in range(args.repeats):  # alternating: a busy moment costs both alike
                runs["this tree"].append(once(ROOT, command))
                runs[args.against].append(once(other, command))
            row = {"command": "fernas " + " ".join(command)}
            for name, got in runs.items():
                row[name] = {"median_s": round(statistics.median(s for s, _ in got), 3),
                             "median_peak_mb": round(statistics.median(m for _, m in got), 1)}
            rows.append(row)
            print(f"{row['command']:50s} this tree {row['this tree']['median_s']:.3f} s "
                  f"{row['this tree']['median_peak_mb']:.0f} MB   {args.against} {row[args.against]['median_s']:.3f} s "
                  f"{row[args.against]['median_peak_mb']:.0f} MB", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
        shutil.rmtree(other.parent, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / "cli_startup.json"
    out.write_text(json.dumps({"against": args.against, "repeats": args.repeats, "python": sys.version.split()[0],
                               "machine": _cpu(), "cpus": os.cpu_count(),
                               "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1) + "\n")
    print(f"written to {out}")


def _cpu() -> str:
    """The CPU's model name (figures compare only on one machine)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return os.uname().machine


if __name__ == "__main__":
    main()
