"""Chaos: a real search killed with SIGKILL at random moments, resumed each time, against the
same search left alone.

The driver of `fernas evolve` is killed (kill -9, then the local Ray it started, by process
id) `--kills` times, each time at a random moment after the attempt has completed at least
one more trial, and resumed with `--resume` until it finishes.  It is then compared with an
uninterrupted run of the same seed: the same trials (genome, budget, kind), none trained
twice, the same best genome and the same hall of fame.  `tests/test_chaos.py` runs a small
version in `make test`; `make bench` runs this one and writes benchmarks/results/chaos.json.

    .venv/bin/python benchmarks/chaos.py --kills 6
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.processes import processes_below  # noqa: E402

ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")


def trials(out: Path) -> list[dict]:
    p = out / "trials.csv"
    if not p.is_file():
        return []
    with p.open() as fh:
        return list(csv.DictReader(fh))


def descendants(pid: int) -> set[int]:
    """Process ids below `pid`, from /proc."""
    return set(processes_below(pid))


def _kill(proc: subprocess.Popen, below: set[int]) -> None:
    """kill -9 of the driver, then of the Ray processes it started (they would outlive it)."""
    for pid in [proc.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait(timeout=60)


def run_with_kills(args: list[str], out: Path, kills: int, rng: random.Random, timeout: float = 600,
                   max_delay: float = 3.0) -> dict:
    """Run `fernas evolve ARGS --out OUT`, killed `kills` times (each 0..max_delay s after the
    attempt's first new trial) and resumed until it finishes."""
    attempts, killed, moments = 0, 0, []
    deadline = time.time() + timeout
    while True:
        cmd = [sys.executable, "-m", "fernas", "evolve", *args, "--out", str(out)] + (["--resume"] if attempts else [])
        attempts += 1
        log = out.parent / f"{out.name}-attempt{attempts}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as fh:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=fh, stderr=subprocess.STDOUT)
        t0, done_before = time.time(), len(trials(out))
        below: set[int] = set()
        if killed < kills:
            extra = rng.uniform(0.0, max_delay)  # the moment: this long after the attempt's first new trial
            seen_at = None
            while proc.poll() is None and time.time() < deadline:
                below |= descendants(proc.pid)
                if seen_at is None and len(trials(out)) > done_before:
                    seen_at = time.time()
                if seen_at is not None and time.time() - seen_at >= extra:
                    break
                time.sleep(0.2)
            if proc.poll() is None:
                moments.append(round(time.time() - t0, 1))
                _kill(proc, below | descendants(proc.pid))
                killed += 1
                continue
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            _kill(proc, descendants(proc.pid))
            raise RuntimeError(f"{out}: the run did not finish within {timeout:.0f} s")
        if proc.returncode != 0:
            raise RuntimeError(f"{out}: attempt {attempts} exited {proc.returncode}: {log.read_text()[-600:]}")
        return {"attempts": attempts, "kills": killed, "kill_moments_s": moments}


def compare(killed: Path, calm: Path) -> dict:
    """What the killed run kept against the uninterrupted one."""
    a, b = trials(killed), trials(calm)
    key = lambda r: (r["gid"], r["budget"], r["kind"], r.get("seed"))  # noqa: E731
    keys_a = [key(r) for r in a]
    hof = lambda out: sorted(p.name for p in (out / "hall_of_fame").glob("*.json"))  # noqa: E731
    best = lambda out: json.loads((out / "best.json").read_text())["evolve"]["gid"]  # noqa: E731
    return {"trials": len(a), "trials_uninterrupted": len(b),
            "same_trials": sorted(keys_a) == sorted(key(r) for r in b),
            "trained_twice": len(keys_a) - len(set(keys_a)),
            "same_accuracies": {key(r): r["val_acc"] for r in a} == {key(r): r["val_acc"] for r in b},
            "same_best": best(killed) == best(calm), "same_hall_of_fame": hof(killed) == hof(calm)}


def main(argv=None) -> int:
    from fernas.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="the search's seed and the kill moments'")
    ap.add_argument("--pop", type=int, default=6)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--gpu", "--large", action="store_true", help="accepted for make bench-gpu; same settings")
    ap.add_argument("--out", default=None, help="default benchmarks/results/chaos[-gpu].json")
    a = ap.parse_args(argv)
    work = ROOT / "benchmarks" / "results" / "tmp" / "chaos"
    shutil.rmtree(work, ignore_errors=True)
    args = ["--data", "demo:280,140,140", "--pop", str(a.pop), "--generations", str(a.generations),
            "--min-budget", "1", "--max-budget", "2", "--eta", "2", "--max-steps-per-epoch", "3",
            "--rerank-top", "1", "--rerank-seeds", "1", "--max-mmacs", "60", "--seed", str(a.seed), "--no-dashboard"]
    t0 = time.time()
    calm = run_with_kills(args, work / "calm", 0, random.Random(a.seed))
    calm_s = time.time() - t0
    chaos = run_with_kills(args, work / "killed", a.kills, random.Random(a.seed))
    result = {"benchmark": "chaos", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "settings": {"evolve": args, "kills": a.kills}, "uninterrupted_seconds": round(calm_s, 1),
              "killed_seconds": round(time.time() - t0 - calm_s, 1), **chaos,
              **compare(work / "killed", work / "calm")}
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"chaos{'-gpu' if a.gpu else ''}.json")
    atomic_write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    ok = result["same_trials"] and not result["trained_twice"] and result["same_best"] and result["same_hall_of_fame"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
