"""Orchestration of `fernas evolve`: run directory, Ray, the GA and the Tuner, in order.

`run_evolve(opts, load_data, seed_docs, console)` refuses bad settings before anything slow
starts, takes the run directory's lock, starts or joins Ray, builds (or loads) the GA, runs
one Tuner until the GA is done, and writes the outputs.  What the user reads comes through
`console` (the CLI's), so this module prints nothing itself.

Resume does not use `Tuner.restore`: the GA checkpoint holds everything, so a resumed run
starts a fresh Tuner whose searcher replays the interrupted generation from the fitness
cache (trials that were in flight when the process died run again; completed ones never do).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fernas import genome as G
from fernas.errors import RunDirError
from fernas.evolve import Candidate, Evolution
from fernas.io import run_dir_lock
from fernas.runinfo import versions
from fernas.search import cluster, rundir
from fernas.search.options import EvolveOptions


class EvolveRun:
    """One run in progress: the GA, its run directory, and what the Tune adapter reports to it."""

    def __init__(self, opts: EvolveOptions, ev: Evolution, rdir: rundir.RunDir, n_train: int, console):
        self.opts, self.ev, self.rundir, self.console = opts, ev, rdir, console
        self.out = rdir.out
        self.trial_dirs: dict[str, str] = {}  # Tune trial id -> its directory
        self.t0 = time.time()
        self.gens_at_start = ev.gen
        self.n_train = n_train
        # Trainer checkpoints of this generation's genomes, continued by their promotions (a run
        # with one budget needs none).  On a cluster OUT must be storage every node reaches.
        self.checkpoints = self.out / "checkpoints" if len(ev.cfg.rungs) > 1 else None
        ev.on_generation = self.on_generation

    def checkpoint_path(self, cand: Candidate) -> str | None:
        if self.checkpoints is None or cand.kind == "rerank":  # a re-ranking trial is never continued
            return None
        return str(self.checkpoints / f"{cand.gid}.pt")

    def refuse(self, cand: Candidate) -> bool:
        """Estimate the candidate's cost (for longest-first ordering); record a refusal, if any."""
        from fernas.model import estimate_macs

        macs = estimate_macs(cand.doc)
        bs = cand.doc["train"]["batch_size"]
        steps = max(1, self.n_train // bs)
        if self.opts.max_steps_per_epoch:
            steps = min(steps, self.opts.max_steps_per_epoch)
        cand.cost_hint = float(macs * steps * bs * (cand.budget - cand.resume_from))  # training work of the trial
        reason = self.ev.cfg.refusal(cand.doc, macs) if cand.kind == "first" else None
        if reason:  # penalised without a trial
            self.record(cand, {"status": "skipped", "error": reason, "val_acc": 0.0, "macs": macs,
                               "wall_seconds": 0.0})
        return reason is not None

    def record(self, cand: Candidate, outcome: dict) -> None:
        self.ev.record(cand, {**outcome, "finished_at": time.time()})  # persisted atomically at once
        self.rundir.write_trials(self.ev)

    def on_generation(self, ev: Evolution, rec: dict) -> None:
        elapsed = time.time() - self.t0
        eta = elapsed / max(1, ev.gen - self.gens_at_start) * (ev.cfg.generations - ev.gen)
        ev.meta.setdefault("generation_times", {})[str(rec["gen"])] = time.time()
        ev.save()
        if self.checkpoints is not None:  # promotions stay inside a generation: nothing continues these
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.console.generation(rec, ev.cfg.generations, elapsed, eta, total_compute(ev))
        self.rundir.write_all(ev)


def run_evolve(cli_opts: EvolveOptions, load_data, seed_docs: list[dict], console) -> Path:
    """The `fernas evolve` job.  `load_data(opts) -> Dataset` (the CLI's data flags)."""
    out = Path(cli_opts.out)
    rundir.prepare(out, cli_opts.resume)  # refuse before creating anything
    with run_dir_lock(out):  # a second process on this run directory is refused
        # again under the lock: another process may have written there in between
        return _run_locked(cli_opts, load_data, seed_docs, console, rundir.prepare(out, cli_opts.resume))


def _resolve(cli_opts: EvolveOptions, stored: dict | None, console) -> tuple[EvolveOptions, Evolution | None]:
    out = Path(cli_opts.out).resolve()
    if not stored:
        cli_opts.out = str(out)
        return cli_opts, None
    try:
        opts = EvolveOptions.from_stored(stored["options"], cli_opts)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{out / 'config.json'}: corrupt ({type(exc).__name__}: {exc}); cannot resume") from None
    opts.out = str(out)
    ev = Evolution.load(out / "checkpoint.json")  # RunDirError names a corrupt file
    opts.ga = ev.cfg  # the checkpoint's GA is the one that resumes
    console.resuming(out, ev)
    return opts, ev


def _run_locked(cli_opts: EvolveOptions, load_data, seed_docs: list[dict], console, stored: dict | None) -> Path:
    opts, ev = _resolve(cli_opts, stored, console)
    out = Path(opts.out)
    cluster.precheck_resources(opts)  # flags that cannot work fail before the data loads and Ray starts
    data = load_data(opts)  # DataError before Ray starts
    ray_info = cluster.connect_ray(opts)
    import ray
    try:
        cpt, gpt, slots = cluster.resolve_resources(opts, ray_info)
        out.mkdir(parents=True, exist_ok=True)
        if ev is None:
            ev = Evolution(opts.ga, seed_docs=seed_docs, checkpoint_path=out / "checkpoint.json")
        ev.meta["attempts"] = attempt = int(ev.meta.get("attempts", 0)) + 1
        data_info = {"source": data.source, "classes": list(data.classes), "n_train": len(data.train),
                     "n_val": len(data.val), "n_test": len(data.test), "info": data.info}
        resources = {**ray_info, "cpus_per_trial": cpt, "gpus_per_trial": gpt, "concurrent_trials": slots}
        rdir = rundir.RunDir(out, {G.genome_id(d): d["name"] for d in seed_docs},
                             {"budgets": list(opts.ga.rungs), "data": opts.data})
        rdir.write_config(_config(opts, data_info, resources, attempt, stored, len(data.val)))
        ev.save()
        storage = opts.storage or str(out / "ray")
        if "://" not in storage:
            storage = str(Path(storage).resolve())  # Tune wants absolute paths or URIs
        exp_name = f"{out.name}-{attempt}"
        console.starting(out, ev.cfg, opts, resources, f"{storage.rstrip('/')}/{exp_name}")
        run = EvolveRun(opts, ev, rdir, len(data.train), console)
        if ev.done:
            console.already_complete()
        else:
            from fernas.search.tune_adapter import fit

            fit(run, data, cpt, gpt, slots, storage, exp_name)
            if not ev.done:  # Tune ends early on Ctrl-C (it stops gracefully) or when its driver loop fails
                console.stopped(out, ev)
                raise KeyboardInterrupt
        rdir.write_all(ev)
        console.finished(out, ev)
        return out
    finally:
        if ray_info["started_local"] or ray.is_initialized():
            ray.shutdown()


def total_compute(ev: Evolution) -> int:
    """Training compute of every trial of the run so far (images processed x multiply-adds)."""
    return sum(int(t.get("compute") or 0) for e in ev.cache.values() for t in e.get("trials", []))


def _config(opts: EvolveOptions, data_info: dict, resources: dict, attempt: int, stored: dict | None,
            n_val: int) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    # The noise of one fitness value: the binomial standard error of an accuracy near 50% on
    # this many validation images (differences smaller than about twice it are mostly luck).
    fitness = {"rule": "validation accuracy at the end of the budget (centre crop); larger budget first",
               "budgets": list(opts.ga.rungs), "eta": opts.ga.eta, "val_images": n_val,
               "standard_error_at_50pct": round((0.25 / max(1, n_val)) ** 0.5, 4)}
    return {"command": "fernas evolve", "argv": sys.argv[1:], "options": _jsonable(asdict(opts)),
            "seed": opts.ga.seed, "versions": versions("torch", "ray", "deap", "numpy"), "fitness": fitness,
            "data": _jsonable(data_info), "ray": resources, "attempt": attempt, "started": now,
            "first_started": stored["first_started"] if stored else now,
            "resumes": stored["resumes"] + 1 if stored else 0}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
