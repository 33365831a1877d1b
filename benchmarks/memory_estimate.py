"""Is the host-memory estimate that refuses too-large CPU trials close to what a trial takes?

For each seed design (and a few random genomes under the cost cap) a fresh Python process
loads the demo data, then runs a real search trial (`fernas.search.trial.train_trial`, one
epoch of a few steps with its validation pass) and reports its peak resident memory
(`VmHWM`, reset before the trial) above the resident memory it had before it; that growth is compared
with `fernas.model.training_memory_bytes` at the genome's batch size (what `fernas evolve`
checks against a trial's share of Ray's memory).  The estimate should not be far below the
measurement (a trial it lets through would not fit) and not many times above it (a trial it
refuses would).

Writes benchmarks/results/memory_estimate.json and prints one line per genome.

    .venv/bin/python benchmarks/memory_estimate.py [--random 4 --steps 3 --max-mmacs 400]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fernas.io import atomic_write_json  # noqa: E402

CHILD = """
import json, sys
from fernas.demo_faces import make_demo
from fernas.search.trial import TrialBudget, train_trial

def status(key):
    return next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith(key))

doc = json.loads(sys.argv[1])
data = make_demo(1400, 560, 0, seed=0)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak resident size (VmHWM) to the current one: the data's peak is not the trial's
start = status("VmRSS:")
out = train_trial(doc, data, TrialBudget(epochs=1, max_steps_per_epoch=int(sys.argv[2])))
peak = status("VmHWM:")
print(json.dumps({"status": out["status"], "error": out.get("error", ""), "grown": peak - start, "peak": peak,
                  "start": start}))
"""


def measure(doc: dict, steps: int) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(doc), str(steps)], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if res.returncode != 0:
        return {"status": "crashed", "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def genomes(n_random: int, max_mmacs: float) -> list[dict]:
    import random

    from fernas.evolve import GAConfig
    from fernas.evolve.operators import vector_id
    from fernas.evolve.sampling import sample_fresh
    from fernas.genome import load_genome
    from fernas.model import estimate_macs

    docs = [d for d in (load_genome(p) for p in sorted((ROOT / "genomes").glob("*.json")))
            if estimate_macs(d) <= max_mmacs * 1e6]
    class Ind(list):
        gid = ""

    def make(vec):
        ind = Ind(vec)
        ind.gid = vector_id(vec)[0]
        return ind

    random.seed(0)
    cfg = GAConfig(seed=0, max_mmacs=max_mmacs)
    for i, vec in enumerate(sample_fresh(cfg, n_random, set(), make)):
        doc = vector_id(vec)[1]
        if doc is not None:
            docs.append({**doc, "name": f"random_{i}"})
    return docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", type=int, default=4, help="random genomes under the cap besides the seeds")
    ap.add_argument("--steps", type=int, default=3, help="training steps of the one epoch")
    ap.add_argument("--max-mmacs", type=float, default=400.0)
    a = ap.parse_args()
    from fernas.model import plan, training_memory_bytes

    rows = []
    for doc in genomes(a.random, a.max_mmacs):
        p, bs = plan(doc), doc["train"]["batch_size"]
        est = training_memory_bytes(p, bs)
        m = measure(doc, a.steps)
        row = {"genome": doc["name"], "batch": bs, "params": p.params, "mmacs": round(p.macs / 1e6, 1),
               "estimate_gib": round(est / 2**30, 3), **m}
        if m.get("grown"):
            row["measured_gib"] = round(m["grown"] / 2**30, 3)
            row["estimate_over_measured"] = round(est / m["grown"], 2)
        rows.append(row)
        print(f"{row['genome']:<28} batch {bs:>3}  estimate {row['estimate_gib']:.2f} GiB  measured "
              f"{row.get('measured_gib', float('nan')):.2f} GiB  ratio {row.get('estimate_over_measured', '-')}",
              flush=True)
    ratios = [r["estimate_over_measured"] for r in rows if "estimate_over_measured" in r]
    result = {"benchmark": "memory_estimate", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "settings": vars(a), "method": __doc__.split("\n\n")[1], "genomes": rows,
              "ratio": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)} if ratios else None}
    out = ROOT / "benchmarks" / "results" / "memory_estimate.json"
    atomic_write_json(out, result)
    print(f"estimate / measured: {result['ratio']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
