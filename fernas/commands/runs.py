"""`fernas runs [DIR]`: the run directories under DIR (default runs/) at a glance.

One line per run: kind, state (running: its lock is held; finished; stopped: resumable; lost
race: a finalist its race stopped, resumable; incomplete; corrupt: config.json and its copy
unreadable; `version N`: written by another fernas), progress (an evolve run a budget ended: the generation and the budget's flag),
trials, best accuracy, compute and time; `--json` for scripts.
"best" of a search is the validation accuracy of the genome it returns (best.json, chosen by the
fitness rule and the re-ranking; before the first generation ends, the highest trial's);
`best_trial` in --json is the highest of any trial at the largest budget, which can be another
genome's; of a training run, "best" is its ten-crop test accuracy (its single-crop one, marked *,
when it trained on the centre crop alone: --augment none --train-crops 1).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from fernas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("runs", help="list run directories: kind, state, progress, best accuracy, compute",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="where the run directories are")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fernas.runinfo import fmt_duration
    from fernas.runs import describe, list_runs

    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(f"{root}: " + ("not a directory" if root.exists() else "no such directory"))
    rows = ([describe(root)] if describe(root) else []) + list_runs(root)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    if not rows:
        print(f"no fernas runs under {root}", file=sys.stderr)
        return 0
    wide = max(12, *(len(r["progress"]) for r in rows))  # "12/30 generations --time-budget"
    names = [_short(r["run"], root) for r in rows]
    name_w = max(3, *(len(n) for n in names))  # make demo's runs/demo-DATE-TIME/trained/evolved-GID are 50
    head = f"{'run':{name_w}s} {'kind':6s} {'state':10s} {'progress':{wide}s} {'trials':>6s} {'best':>7s} {'compute':>8s} " \
           f"{'time':>7s}  started"
    print(head)
    for r, name in zip(rows, names):
        best = "-" if r["best"] is None else f"{r['best']:.3f}" + ("*" if r.get("best_crop") == "single" else "")
        compute = "-" if not r["compute"] else f"{r['compute']:.2g}"
        secs = "-" if r["seconds"] is None else fmt_duration(float(r["seconds"]))
        trials = "-" if r["trials"] is None else str(r["trials"])
        print(f"{name:{name_w}s} {r['kind']:6s} {r['state']:10s} {r['progress']:{wide}s} {trials:>6s} "
              f"{best:>7s} {compute:>8s} {secs:>7s}  {(r['started'] or '-')[:19]}")
    if any(r.get("best_crop") == "single" and r["best"] is not None for r in rows):
        print("* single-crop test accuracy: trained on the centre crop alone (--augment none, --train-crops 1), "
              "so the ten-crop test shows it views it never saw", file=sys.stderr)
    for r in rows:
        if r.get("left_running"):
            pids = " ".join(map(str, r["left_running"]))
            print(f"{r['run']}: its killed search left {len(r['left_running'])} Ray process(es) running "
                  f"(kill -9 {pids}, they ignore SIGTERM; `fernas evolve --out {shlex.quote(r['run'])} --resume` "
                  "ends them too)", file=sys.stderr)
    return 0


def _short(path: str, root: Path) -> str:
    p = Path(path)
    return str(p.relative_to(root)) if p.is_relative_to(root) and p != root else str(p)
