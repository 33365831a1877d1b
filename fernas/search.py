"""Evolution on Ray Tune: one Tuner per run, trials are short trainings of genomes.

DESIGN.md "Search on Ray Tune": a custom generational `Searcher` adapts `fernas.evolve`
(DEAP) to Tune.  `suggest` hands out the never-evaluated genomes of the current generation
(longest estimated job first, so the slots finish a generation together), returns `None`
while the generation is in flight and `Searcher.FINISHED` after the last one;
`on_trial_complete` records each outcome in the GA's fitness cache (persisted at once)
and, after the last member, lets DEAP build the next generation.  Decisions depend only
on the seed and the fitness values, never on the order trials finish in.

A trial (`run_trial`) trains with `fernas.train.train_genome` for a few epochs, reports
every epoch with `ray.tune.report` (val accuracy, losses, params, multiply-adds, measured
inference latency), and turns a diverged loss, an out-of-memory or any exception into a
reported `status: failed` with its reason, which the GA penalises.  A worker that dies
(after Tune's retries) reaches the searcher as an errored trial: same penalty.

Resume does not use `Tuner.restore`: the GA checkpoint (`fernas.evolve`) holds everything,
so a resumed run starts a fresh Tuner whose searcher replays the interrupted generation
from the cache (trials that were in flight when the process died run again; completed
ones never do).

Run directory (`--out`): config.json, checkpoint.json, trials.csv, logbook.csv,
hall_of_fame/*.json, best.json, pareto.csv/.png, progress.png, ray/ (Tune's trial logs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fernas import __version__
from fernas import genome as G
from fernas.errors import RunDirError, UserError
from fernas.model import estimate_macs  # noqa: F401 - the GA and the trials use it from here
from fernas.evolve import OK_STATUSES, Candidate, Evolution, GAConfig
from fernas.io import LOCK_NAME, atomic_write_json, atomic_write_text, run_dir_lock


# Test hook: FERNAS_FAULT_INJECT="GID=raise,GID2=exit" makes those genomes' trials raise an
# exception or kill their worker process, so the failure paths are tested with real Ray.
FAULT_ENV = "FERNAS_FAULT_INJECT"
CONNECT_TIMEOUT_S = 30  # an unreachable --address fails within this


# ---------------------------------------------------------------------------- options
@dataclass
class EvolveOptions:
    """Resolved arguments of `fernas evolve` (written to config.json)."""
    out: str
    ga: GAConfig = field(default_factory=GAConfig)
    data: str = "demo"
    data_args: dict = field(default_factory=dict)  # what fernas.data needs besides the source
    epochs_per_trial: int = 2
    max_steps_per_epoch: int = 0  # 0 = whole epochs
    max_mmacs: float = 3000.0  # genomes above this many million multiply-adds per image are not trained
    seed_genomes: list[str] = field(default_factory=list)  # resolved files
    gpus_per_trial: str = "auto"
    cpus_per_trial: float = 1.0
    max_concurrent: int = 0
    address: str | None = None
    storage: str | None = None
    resume: bool = False
    dashboard: bool = True
    asha: bool = False
    verbose: bool = False
    max_failures: int = 1  # Tune's retries of a trial whose worker died


# ---------------------------------------------------------------------------- costs
def measure_latency_ms(model, device, input_size: int = 40, budget_s: float = 0.3) -> float:
    """Median time of one forward pass of a single image (batch 1), after warm-up."""
    import torch

    x = torch.zeros(1, 1, input_size, input_size, device=device).contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(53):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 3:  # the first calls pay for allocation and kernel selection
                times.append(time.perf_counter() - t0)
            if i >= 8 and sum(times) > budget_s:
                break
    model.train(was_training)
    times.sort()
    return 1000.0 * times[len(times) // 2]


# ---------------------------------------------------------------------------- the trial
def build_trial_model(doc: dict, seed: int, num_classes: int, device="cpu"):
    """A trial's model, initialised from `seed`.  `train_genome(..., seed=seed, model=...)` then
    re-seeds for training, so a trial's fitness is reproduced by exactly these two calls (with the
    trial's thread settings: OMP_NUM_THREADS=1 as in a Ray worker)."""
    from fernas.model import build_model
    from fernas.train import seed_everything

    seed_everything(seed)
    return build_model(doc, input_size=40, num_classes=num_classes).to(device)


def run_trial(config: dict, data=None, settings: dict | None = None) -> None:
    """Ray Tune function trainable: train one genome briefly, report every epoch."""
    import torch
    from ray import tune

    from fernas.model import count_params, summarize
    from fernas.train import TrainingDiverged, resolve_device, train_genome

    settings = settings or {}
    torch.set_num_threads(max(1, int(settings.get("threads", 1))))
    doc, gid = config["genome"], config["gid"]
    epochs = int(settings["epochs"])
    base = {"gid": gid, "generation": config["generation"]}
    t_start = time.perf_counter()
    state = {"best": 0.0, "train_s": 0.0, "epoch": 0, "params": None, "macs": None, "latency_ms": None}

    def failed(reason: str) -> None:
        tune.report({**base, "status": "failed", "error": reason[:500], "val_acc": 0.0, "best_val_acc": 0.0,
                     "epoch": state["epoch"], "params": state["params"], "macs": state["macs"],
                     "latency_ms": state["latency_ms"], "train_seconds": state["train_s"],
                     "trial_seconds": time.perf_counter() - t_start})

    fault = dict(kv.split("=", 1) for kv in os.environ.get(FAULT_ENV, "").split(",") if "=" in kv).get(gid)
    try:
        if fault == "exit":
            os._exit(1)  # a worker killed mid-trial (test hook)
        if fault == "raise":
            raise RuntimeError("injected fault (FERNAS_FAULT_INJECT)")
        device = resolve_device("auto")  # Ray hides the GPUs of trials without a GPU share
        info = summarize(doc, input_size=40, num_classes=data.num_classes)
        state["params"], state["macs"] = info["params"], info["macs"]
        model = build_trial_model(doc, settings.get("seed", 0), data.num_classes, device)
        state["latency_ms"] = measure_latency_ms(model, device)  # the weights do not change it

        def on_epoch(rec: dict) -> None:
            state["best"] = max(state["best"], float(rec["val_acc"]))
            state["train_s"] += float(rec["seconds"])
            state["epoch"] = int(rec["epoch"])
            tune.report({**base, "status": "ok", "error": "", "epoch": rec["epoch"], "val_acc": rec["val_acc"],
                         "best_val_acc": state["best"], "val_loss": rec["val_loss"],
                         "train_loss": rec["train_loss"], "lr": rec["lr"], "params": count_params(model),
                         "macs": state["macs"], "latency_ms": state["latency_ms"],
                         "train_seconds": state["train_s"], "trial_seconds": time.perf_counter() - t_start,
                         "device": str(device)})

        train_genome(doc, data, epochs=epochs, device=device, seed=settings.get("seed", 0), model=model,
                     on_epoch=on_epoch, max_steps_per_epoch=settings.get("max_steps_per_epoch") or None)
    except TrainingDiverged as exc:
        failed(f"diverged: {exc}")
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        failed(f"out of memory: {str(exc).splitlines()[0]}")
    except Exception as exc:  # an invalid model, a bug in a block: penalise, keep searching
        if type(exc).__module__.startswith("ray") or isinstance(exc, StopIteration):
            raise  # Tune's own control flow (a stopped trial), not the genome's fault
        msg = str(exc).splitlines()[0] if str(exc) else ""
        failed(f"{type(exc).__name__}: {msg}")


# ---------------------------------------------------------------------------- the searcher
def _make_searcher_classes():
    """Defined lazily so importing fernas.search does not import Ray."""
    from ray import tune
    from ray.tune.search import Searcher

    class GenerationalSearcher(Searcher):
        """Hands out one GA generation at a time; feeds outcomes back to `fernas.evolve`."""

        def __init__(self, run: "EvolveRun"):
            super().__init__(metric="best_val_acc", mode="max")
            self.run = run
            self.queue: deque[Candidate] = deque()
            self.live: dict[str, tuple[Candidate, float]] = {}  # trial_id -> (candidate, start time)
            self.errored: dict[str, float] = {}  # trial_id -> time Tune reported the error
            self.finished = False
            self._load(run.ev.start())

        def _load(self, batch: list[Candidate] | None) -> None:
            while batch is not None:
                runnable = []
                for cand in batch:
                    reason = self.run.refuse_reason(cand)
                    if reason:  # too big to train: penalised without a trial
                        self.run.record(cand, {"status": "skipped", "error": reason, "val_acc": 0.0,
                                               "macs": estimate_macs(cand.doc), "wall_seconds": 0.0})
                    else:
                        runnable.append(cand)
                if runnable:
                    # Longest (estimated) first: the slots then finish the generation together.
                    self.queue.extend(sorted(runnable, key=lambda c: -c.cost_hint))
                    return
                batch = self.run.ev.resume_batch()
            self.finished = True

        def suggest(self, trial_id: str):
            self._flush_errors(max_wait_s=2.0)
            if self.queue:
                cand = self.queue.popleft()
                self.live[trial_id] = (cand, time.perf_counter())
                return {"genome": cand.doc, "gid": cand.gid, "generation": cand.generation}
            return Searcher.FINISHED if self.finished else None

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            pass

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id not in self.live:
                return
            if error:
                # The reason arrives a moment later through the callback (on_trial_error).
                self.errored[trial_id] = time.perf_counter()
                return
            cand, t0 = self.live[trial_id]
            result = result or {}
            outcome = {k: result.get(k) for k in ("val_acc", "best_val_acc", "params", "macs", "latency_ms",
                                                    "train_seconds", "epoch", "error", "device")}
            outcome["val_acc"] = result.get("best_val_acc", 0.0)  # fitness: best epoch of the trial
            status = result.get("status", "failed")
            if not result:
                outcome["error"] = "the trial reported nothing"
            if status == "ok" and int(result.get("epoch") or 0) < self.run.opts.epochs_per_trial:
                status = "stopped"  # ended early by ASHA
            outcome["status"] = status
            self._complete(trial_id, outcome)

        def trial_failed(self, trial_id: str, reason: str) -> None:
            if trial_id in self.live:
                self._complete(trial_id, {"status": "failed", "error": reason, "val_acc": 0.0})
            self.errored.pop(trial_id, None)

        def _flush_errors(self, max_wait_s: float) -> None:
            now = time.perf_counter()
            for tid, t in list(self.errored.items()):
                if now - t > max_wait_s:
                    self.trial_failed(tid, "trial worker failed (no reason reported)")

        def _complete(self, trial_id: str, outcome: dict) -> None:
            cand, t0 = self.live.pop(trial_id)
            self.errored.pop(trial_id, None)
            outcome["wall_seconds"] = time.perf_counter() - t0
            outcome["trial_id"] = trial_id
            outcome["log_dir"] = self.run.trial_dirs.get(trial_id, "")
            self.run.record(cand, outcome)
            if not self.live and not self.queue and not self.finished:
                self._load(self.run.ev.resume_batch())

        def save(self, checkpoint_path: str) -> None:
            # Tune's own experiment checkpoint: the GA state lives in the run's checkpoint.json.
            atomic_write_json(checkpoint_path, {"fernas_checkpoint": str(self.run.ckpt_path)})

        def restore(self, checkpoint_path: str) -> None:
            raise NotImplementedError("resume with `fernas evolve --out DIR --resume`")

        # Tune pickles the searcher into its experiment state; ours lives in checkpoint.json
        # (the GA's generator cannot be pickled), so a pickled copy only says where.
        def __getstate__(self):
            return {"checkpoint": str(self.run.ckpt_path)}

        def __setstate__(self, state):
            self.__dict__.update(state)

    class TrialEvents(tune.Callback):
        """Tells the searcher why a trial errored and where each trial logs."""

        def __init__(self, searcher: GenerationalSearcher, run: "EvolveRun"):
            self.searcher, self.run = searcher, run

        def __getstate__(self):
            return {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.run.trial_dirs[trial.trial_id] = str(trial.path or "")

        def on_trial_error(self, iteration, trials, trial, **info):
            text = ""
            try:  # the local error file is written before this callback; storage may lag
                if trial.error_file and Path(trial.error_file).is_file():
                    text = Path(trial.error_file).read_text(errors="replace")
                elif trial.get_error() is not None:
                    text = str(trial.get_error())
            except Exception:
                pass
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            # Ray's traces name the cause ("The actor died unexpectedly ...", "...Error: ..."); keep that line.
            key = next((ln for ln in lines if "died" in ln), None) or next(
                (ln for ln in reversed(lines) if "Error" in ln), None) or "the worker process died"
            n = self.run.opts.max_failures
            reason = f"worker failed after {n} retr{'y' if n == 1 else 'ies'}: {key}"
            self.searcher.trial_failed(trial.trial_id, reason[:500])

    return GenerationalSearcher, TrialEvents


# ---------------------------------------------------------------------------- Ray
def _reachable(address: str) -> None:
    """Fail fast (a few seconds) with what was tried when --address cannot be reached."""
    if address == "auto":
        return
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"--address {address}: cannot connect to {host}:{port} ({exc}); "
                        "start the head with `ray start --head` there, or drop --address for a local run") from None


def connect_ray(opts: EvolveOptions, out: Path) -> dict:
    """Start a local Ray (dashboard on 127.0.0.1, token auth on) or join --address."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep absolute paths (DESIGN.md)
    level = logging.INFO if opts.verbose else logging.ERROR
    env_vars = {k: os.environ[k] for k in ("RAY_CHDIR_TO_TRIAL_DIR", FAULT_ENV, "RAY_USAGE_STATS_ENABLED")
                if k in os.environ}
    if opts.address:
        _reachable(opts.address)
        if os.environ.get("RAY_AUTH_MODE") is None:
            _enable_token_auth()  # a token-protected cluster refuses a driver without token mode
        import fernas
        # Ship this fernas to the cluster's workers (they may not have it installed).
        runtime_env = {"env_vars": env_vars, "py_modules": [str(Path(fernas.__file__).parent)]}
        done = threading.Event()

        def watchdog():
            if not done.wait(CONNECT_TIMEOUT_S):
                print(f"fernas: error: --address {opts.address}: Ray did not answer within "
                      f"{CONNECT_TIMEOUT_S} s", file=sys.stderr, flush=True)
                os._exit(2)
        threading.Thread(target=watchdog, daemon=True).start()
        try:
            ctx = ray.init(address=opts.address, logging_level=level, log_to_driver=opts.verbose,
                           runtime_env=runtime_env)
        except Exception as exc:  # ConnectionError, auth errors, version mismatch
            raise UserError(f"--address {opts.address}: cannot join the Ray cluster "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        finally:
            done.set()
        started = False
    else:
        # A fresh local instance ("local": never join somebody else's `ray start` by accident).
        # Token auth stays on: Ray 2.60 enables it for new local clusters; we make sure.
        if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
            print("fernas: note: RAY_AUTH_MODE is not 'token'; keeping the dashboard's token check on",
                  file=sys.stderr)
        _enable_token_auth()
        ctx = ray.init(address="local", include_dashboard=opts.dashboard, dashboard_host="127.0.0.1",
                       logging_level=level, log_to_driver=opts.verbose, runtime_env={"env_vars": env_vars})
        started = True
    res = ray.cluster_resources()
    url = getattr(ctx, "dashboard_url", None) or ""
    if url and not url.startswith("http"):
        url = "http://" + url
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return {"started_local": started, "address": opts.address or "local", "dashboard_url": url,
            "token_file": token_path, "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0))}


def _precheck_resources(opts: EvolveOptions) -> None:
    """Cheap checks before anything slow: a reachable --address, GPUs a local run can have."""
    if opts.address:
        _reachable(opts.address)
        return
    if opts.gpus_per_trial != "auto":
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if float(opts.gpus_per_trial) > n:
            raise UserError(f"--gpus-per-trial {float(opts.gpus_per_trial):g}: this machine has {n} GPU(s)"
                            + ("; leave the flag out to train on CPUs" if n == 0 else ""))
    if opts.cpus_per_trial > (os.cpu_count() or 1):
        raise UserError(f"--cpus-per-trial {opts.cpus_per_trial:g}: this machine has {os.cpu_count()} CPU(s)")


def _enable_token_auth() -> None:
    """Token mode for this process and the Ray processes it starts.

    Setting RAY_AUTH_MODE after `import ray` is not enough: Ray caches its config, and then
    creates no token while its GCS (which reads the variable) insists on one.
    """
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth as enable
    except ImportError:  # another Ray version: the variable is all there is
        os.environ["RAY_AUTH_MODE"] = "token"
    else:
        enable()


def read_token(path: str) -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def resolve_resources(opts: EvolveOptions, ray_info: dict) -> tuple[float, float, int]:
    """(cpus, gpus per trial, concurrent trials); UserError when a trial cannot fit."""
    cpus, gpus = ray_info["cpus"], ray_info["gpus"]
    if opts.gpus_per_trial == "auto":
        gpt = 0.25 if gpus > 0 else 0.0  # four short trials share a card; CPUs when there is none
    else:
        gpt = float(opts.gpus_per_trial)
        if gpt > gpus:
            raise UserError(f"--gpus-per-trial {gpt:g}: the Ray cluster has {gpus:g} GPU(s)"
                            + ("; leave the flag out to train on CPUs" if gpus == 0 else ""))
    cpt = float(opts.cpus_per_trial)
    if cpt > cpus:
        raise UserError(f"--cpus-per-trial {cpt:g}: the Ray cluster has {cpus:g} CPU(s)")
    slots = int(cpus // cpt) if cpt > 0 else 10**6
    if gpt > 0:
        slots = min(slots, int(round(gpus / gpt, 6) // 1))
    slots = max(1, slots)
    if opts.max_concurrent > 0:
        slots = min(slots, opts.max_concurrent)
    return cpt, gpt, slots


# ---------------------------------------------------------------------------- run directory
TRIAL_COLUMNS = ["trial", "generation", "gid", "status", "val_acc", "params", "macs", "latency_ms",
                 "train_seconds", "wall_seconds", "overhead_seconds", "epochs", "device", "error",
                 "trial_id", "log_dir", "genome"]


def _fmt_time(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class EvolveRun:
    """One run: the GA, its Tune searcher's callbacks, and every file of the run directory."""

    def __init__(self, opts: EvolveOptions, ev: Evolution, data_info: dict, seed_names: dict[str, str]):
        self.opts = opts
        self.out = Path(opts.out)
        self.ckpt_path = self.out / "checkpoint.json"
        self.ev = ev
        self.data_info = data_info
        self.seed_names = seed_names  # genome id -> name of a seed file, to keep the names readable
        self.trial_dirs: dict[str, str] = {}
        self.t0 = time.time()
        self.gens_at_start = ev.gen
        self.n_train = int(data_info.get("n_train", 0))
        self.stdout = sys.stdout  # the real one, also while Tune's own output is silenced
        ev.on_generation = self.on_generation

    # -- per trial
    def refuse_reason(self, cand: Candidate) -> str | None:
        macs = estimate_macs(cand.doc)
        bs = cand.doc["train"]["batch_size"]
        steps = max(1, self.n_train // bs)
        if self.opts.max_steps_per_epoch:
            steps = min(steps, self.opts.max_steps_per_epoch)
        cand.cost_hint = float(macs * steps * bs)  # training work of one epoch, for the ordering
        if macs > self.opts.max_mmacs * 1e6:
            return f"too large: about {macs / 1e6:.0f}M multiply-adds per image > --max-mmacs {self.opts.max_mmacs:g}"
        return None

    def record(self, cand: Candidate, outcome: dict) -> None:
        outcome = dict(outcome)
        outcome["vector"] = cand.vector
        outcome["generation"] = cand.generation
        outcome["finished_at"] = time.time()
        self.ev.record(cand.gid, outcome)  # the fitness cache, persisted atomically at once
        self.write_trials()

    # -- per generation
    def on_generation(self, ev: Evolution, rec: dict) -> None:
        done_here = ev.gen - self.gens_at_start
        elapsed = time.time() - self.t0
        eta = elapsed / max(1, done_here) * (ev.cfg.generations - ev.gen)
        ev.meta.setdefault("generation_times", {})[str(rec["gen"])] = time.time()
        ev.save()
        print(f"gen {rec['gen'] + 1:>3}/{ev.cfg.generations}  best {_acc(rec['best'])}  mean {_acc(rec['mean'])}  "
              f"evals {rec['evals']:>3}  cache hits {rec['cache_hits']:>3}  failures {rec['failures']:>2}  "
              + (f"too large {rec['skipped']:>2}  " if rec.get("skipped") else "") +
              f"elapsed {_fmt_time(elapsed)}  ETA {_fmt_time(eta)}", file=self.stdout, flush=True)
        self.write_outputs()

    def write_outputs(self) -> None:
        self.write_trials()
        self.write_logbook()
        self.write_hall_of_fame()
        self.write_pareto()
        self.write_progress_plot()

    def trial_rows(self) -> list[dict]:
        rows = []
        for i, e in enumerate(self.ev.cache.values()):
            doc = G.from_vector(e["vector"]) if "vector" in e else None
            wall, train = e.get("wall_seconds"), e.get("train_seconds")
            rows.append({
                "trial": i, "generation": e.get("generation"), "gid": e["gid"], "status": e.get("status"),
                "val_acc": e.get("val_acc"), "params": e.get("params"), "macs": e.get("macs"),
                "latency_ms": e.get("latency_ms"), "train_seconds": train, "wall_seconds": wall,
                "overhead_seconds": (wall - train) if (wall is not None and train is not None
                                                      and e.get("status") in OK_STATUSES) else None,
                "epochs": e.get("epoch"), "device": e.get("device"), "error": e.get("error") or "",
                "trial_id": e.get("trial_id", ""), "log_dir": e.get("log_dir", ""),
                "genome": json.dumps(G.active_content(doc), separators=(",", ":")) if doc else "",
            })
        return rows

    def write_trials(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=TRIAL_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in self.trial_rows():
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
                        for k, v in row.items()})
        atomic_write_text(self.out / "trials.csv", buf.getvalue())

    def write_logbook(self) -> None:
        cols = [*self.ev.logbook.header, "time"]
        times = self.ev.meta.get("generation_times", {})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for rec in self.ev.logbook:
            t = times.get(str(rec["gen"]))
            w.writerow({**rec, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else ""})
        atomic_write_text(self.out / "logbook.csv", buf.getvalue())

    def genome_file(self, ind, rank: int) -> dict:
        e = self.ev.cache.get(ind.gid, {})
        doc = G.from_vector(list(ind), name=self.seed_names.get(ind.gid) or f"evolved-{ind.gid}")
        doc["evolve"] = {  # metrics of the search (the genome validator keeps this key)
            "run": self.out.name, "rank": rank, "gid": ind.gid, "generation": e.get("generation"),
            "objectives": list(self.ev.cfg.objectives), "fitness": list(ind.fitness.values),
            "val_acc": e.get("val_acc"), "params": e.get("params"), "macs": e.get("macs"),
            "latency_ms": e.get("latency_ms"), "train_seconds": e.get("train_seconds"),
            "epochs_per_trial": self.opts.epochs_per_trial, "data": self.opts.data,
        }
        return G.validate(doc)

    def write_hall_of_fame(self) -> None:
        hof_dir = self.out / "hall_of_fame"
        hof_dir.mkdir(parents=True, exist_ok=True)
        wanted = {}
        ranked = [ind for ind in self.ev.hall_of_fame()
                  if self.ev.cache.get(ind.gid, {}).get("status") in OK_STATUSES]
        for rank, ind in enumerate(ranked[:max(self.ev.cfg.hof_size, 1)], start=1):
            wanted[f"{rank:02d}_{ind.gid}.json"] = self.genome_file(ind, rank)
        for name, doc in wanted.items():
            atomic_write_text(hof_dir / name, G.dumps(doc))
        for p in hof_dir.glob("*.json"):
            if p.name not in wanted:
                p.unlink(missing_ok=True)
        if ranked:
            atomic_write_text(self.out / "best.json", G.dumps(self.genome_file(ranked[0], 1)))

    def write_pareto(self) -> None:
        """Accuracy against parameters over every trained genome; the front marked."""
        pts = [(e["val_acc"], e["params"], e) for e in self.ev.cache.values()
               if e.get("status") in OK_STATUSES and e.get("params") is not None and e.get("val_acc") is not None]
        pts.sort(key=lambda p: (p[1], -p[0]))
        front, best_acc = set(), -1.0
        for acc, params, e in pts:  # sweep by size: a point is on the front if no smaller one is as accurate
            if acc > best_acc:
                front.add(e["gid"])
                best_acc = acc
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["gid", "generation", "val_acc", "params", "macs", "latency_ms", "on_front"])
        for acc, params, e in pts:
            w.writerow([e["gid"], e.get("generation"), f"{acc:.6g}", params, e.get("macs"),
                        "" if e.get("latency_ms") is None else f"{e['latency_ms']:.4g}", int(e["gid"] in front)])
        atomic_write_text(self.out / "pareto.csv", buf.getvalue())
        if not pts:
            return
        fig, ax = _figure()
        ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=14, c="0.6", label="trained genomes")
        fr = [p for p in pts if p[2]["gid"] in front]
        ax.plot([p[1] for p in fr], [p[0] for p in fr], "o-", c="C3", ms=5, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("validation accuracy (short trial)")
        ax.set_title(f"{self.out.name}: accuracy against size")
        ax.legend(loc="lower right")
        _save_figure(fig, self.out / "pareto.png")

    def write_progress_plot(self) -> None:
        recs = list(self.ev.logbook)
        if not recs:
            return
        fig, ax = _figure()
        gens = [r["gen"] for r in recs]

        def col(key):  # None (nothing trained that generation) -> a gap
            return [math.nan if r.get(key) is None else r[key] for r in recs]

        ax.plot(gens, col("best"), "o-", label="best so far")
        ax.plot(gens, col("max"), "^--", label="best of generation")
        ax.plot(gens, col("mean"), "s-", label="mean of generation (trained genomes)")
        ax.set_xlabel("generation")
        ax.set_ylabel("validation accuracy (short trial)")
        ax.set_title(f"{self.out.name}: progress")
        ax.legend(loc="lower right")
        _save_figure(fig, self.out / "progress.png")


def _acc(v: float | None) -> str:
    return "     -" if v is None else f"{v:.4f}"


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.grid(alpha=0.3)
    return fig, ax


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from fernas.io import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------- the run
def _versions() -> dict:
    import deap
    import numpy
    import ray
    import torch
    return {"fernas": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__, "deap": deap.__version__, "numpy": numpy.__version__,
            "platform": platform.platform()}


def prepare_run_dir(opts: EvolveOptions) -> dict | None:
    """Refuse to overwrite a run; on --resume return the stored config (RunDirError if none)."""
    out = Path(opts.out)
    if opts.resume:
        cfg_path = out / "config.json"
        if not out.is_dir():
            raise RunDirError(f"{out}: no such run directory to resume")
        try:
            stored = json.loads(cfg_path.read_text(encoding="utf-8"))
            stored["options"]["ga"]
        except FileNotFoundError:
            raise RunDirError(f"{cfg_path}: missing; {out} is not a fernas evolve run") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"{cfg_path}: corrupt ({type(exc).__name__}); cannot resume") from None
        if not (out / "checkpoint.json").is_file():
            raise RunDirError(f"{out / 'checkpoint.json'}: no GA checkpoint here (nothing to resume)")
        return stored
    if out.exists() and (not out.is_dir() or any(p.name != LOCK_NAME for p in out.iterdir())):
        raise RunDirError(f"{out}: already exists and is not empty; pass --resume to continue that run "
                          "or choose another --out")
    return None


def options_from_stored(stored: dict, cli: EvolveOptions) -> EvolveOptions:
    """On resume the stored search settings win (same decisions); system flags come from the CLI."""
    o = dict(stored["options"])
    o["ga"] = GAConfig.from_stored(o["ga"])
    opts = EvolveOptions(**o)
    for k in ("address", "storage", "gpus_per_trial", "cpus_per_trial", "max_concurrent", "dashboard", "verbose"):
        setattr(opts, k, getattr(cli, k))
    opts.resume = True
    opts.out = cli.out
    return opts


def run_evolve(cli_opts: EvolveOptions, load_data, seed_docs: list[dict]) -> Path:
    """The `fernas evolve` job.  `load_data(opts) -> Dataset` (the CLI's data flags)."""
    prepare_run_dir(cli_opts)  # refuse before creating anything
    with run_dir_lock(cli_opts.out):  # a second process on this run directory is refused
        # again under the lock: another process may have written there in between
        return _run_evolve(cli_opts, load_data, seed_docs, prepare_run_dir(cli_opts))


def _run_evolve(cli_opts: EvolveOptions, load_data, seed_docs: list[dict], stored: dict | None) -> Path:
    try:
        opts = options_from_stored(stored, cli_opts) if stored else cli_opts
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{Path(cli_opts.out) / 'config.json'}: corrupt ({type(exc).__name__}: {exc}); "
                          "cannot resume") from None
    out = Path(opts.out).resolve()
    opts.out = str(out)

    if stored:
        ev = Evolution.load(out / "checkpoint.json")  # RunDirError names a corrupt file
        if ev.cfg != opts.ga:
            ev.cfg = opts.ga
        print(f"resuming {out}: generation {ev.gen + 1}/{ev.cfg.generations}, "
              f"{len(ev.cache)} trials already done (not repeated)", flush=True)
    else:
        ev = None
    _precheck_resources(opts)  # flags that cannot work fail before the data loads and Ray starts
    data = load_data(opts)  # DataError before Ray starts
    seed_names = {G.genome_id(d): d["name"] for d in seed_docs}

    ray_info = connect_ray(opts, out)
    import ray
    try:
        cpt, gpt, slots = resolve_resources(opts, ray_info)
        out.mkdir(parents=True, exist_ok=True)
        if ev is None:
            ev = Evolution(opts.ga, seed_docs=seed_docs, checkpoint_path=out / "checkpoint.json")
        attempt = int(ev.meta.get("attempts", 0)) + 1
        ev.meta["attempts"] = attempt
        data_info = {"source": data.source, "classes": list(data.classes), "n_train": len(data.train),
                     "n_val": len(data.val), "n_test": len(data.test), "info": data.info}
        config = {"command": "fernas evolve", "argv": sys.argv[1:], "options": _jsonable(asdict(opts)),
                  "seed": opts.ga.seed, "versions": _versions(), "data": _jsonable(data_info),
                  "ray": {**ray_info, "cpus_per_trial": cpt, "gpus_per_trial": gpt, "concurrent_trials": slots},
                  "attempt": attempt, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if stored:
            config["first_started"] = stored.get("first_started", stored.get("started"))
            config["resumes"] = stored.get("resumes", 0) + 1
        else:
            config["first_started"] = config["started"]
        atomic_write_json(out / "config.json", config)
        ev.save()

        storage = opts.storage or str(out / "ray")
        if "://" not in storage:
            storage = str(Path(storage).resolve())  # Tune wants absolute paths or URIs
        exp_name = f"{out.name}-{attempt}"
        strategy = "random search, " if ev.cfg.strategy == "random" else ""
        print(f"fernas evolve: {out}  ({strategy}pop {ev.cfg.pop}, {ev.cfg.generations} generations, objectives "
              f"{','.join(ev.cfg.objectives)}, {opts.epochs_per_trial} epoch(s) per trial)", flush=True)
        print(f"Ray: {'local instance' if ray_info['started_local'] else 'cluster ' + ray_info['address']}, "
              f"{ray_info['cpus']:g} CPU(s), {ray_info['gpus']:g} GPU(s); {slots} trial(s) at a time, "
              f"{cpt:g} CPU + {gpt:g} GPU each", flush=True)
        if ray_info["dashboard_url"]:
            print(f"Ray dashboard: {ray_info['dashboard_url']}  (log in with the token in "
                  f"{ray_info['token_file']}; `ray get-auth-token` prints it)", flush=True)
        print(f"Trial logs: {storage.rstrip('/')}/{exp_name}", flush=True)

        run = EvolveRun(opts, ev, data_info, seed_names)
        if ev.done:
            print("the run is already complete", flush=True)
        else:
            _fit(run, data, cpt, gpt, slots, storage, exp_name)
        run.write_outputs()
        _final_message(run)
        return out
    finally:
        if ray_info["started_local"] or ray.is_initialized():
            ray.shutdown()


def _fit(run: EvolveRun, data, cpt: float, gpt: float, slots: int, storage: str, exp_name: str) -> None:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    opts = run.opts
    if not opts.verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)
    Searcher_, TrialEvents = _make_searcher_classes()
    searcher = Searcher_(run)
    settings = {"epochs": opts.epochs_per_trial, "max_steps_per_epoch": opts.max_steps_per_epoch,
                "seed": opts.ga.seed, "threads": max(1, int(cpt))}
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, settings=settings),
                                    {"cpu": cpt, "gpu": gpt})
    scheduler = None
    if opts.asha and opts.epochs_per_trial > 1:
        scheduler = ASHAScheduler(metric="val_acc", mode="max", time_attr="training_iteration",
                                  max_t=opts.epochs_per_trial, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=slots,
                                    # an actor per slot, reused: no process start per trial
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=exp_name, storage_path=storage, verbose=2 if opts.verbose else 0,
                                  callbacks=[TrialEvents(searcher, run)],
                                  failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    # Tune prints its experiment banner whatever `verbose` says; keep stdout for our lines.
    with contextlib.ExitStack() as stack:
        stack.enter_context(_keep_idle_actors(slots))
        if not opts.verbose:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        tuner.fit()
    if not run.ev.done:
        # Tune ends early on Ctrl-C (it stops gracefully) or when its driver loop fails.
        print(f"fernas evolve: stopped at generation {run.ev.gen + 1}/{run.ev.cfg.generations}; nothing done is "
              f"lost: continue with  fernas evolve --out {run.out} --resume", file=sys.stderr, flush=True)
        raise KeyboardInterrupt


@contextlib.contextmanager
def _keep_idle_actors(n: int):
    """Let Tune keep up to `n` idle trial actors (one per slot) across a generation barrier.

    Tune caches a finished trial's actor for reuse only while trials are staged, plus one
    spare.  At a generation's end nothing is staged (the next generation needs the last
    fitness), so all but one actor stopped and the next generation started fresh worker
    processes: measured here ~10 s per generation per slot (torch import, data transfer).
    Patching the cache's keep-one rule to keep-n (for this Tuner only) removes that.
    Ray-version specific and private, so any mismatch just leaves Tune's behaviour.
    """
    try:
        from ray.tune.utils.object_cache import _ObjectCache
        orig_cache, orig_flush = _ObjectCache.cache_object, _ObjectCache.flush_cached_objects
        probe = _ObjectCache(may_keep_one=True)
        probe._cached_objects, probe._max_num_objects, probe._num_cached_objects  # noqa: B018
    except (ImportError, AttributeError, TypeError):
        yield
        return

    def cache_object(self, key, obj):
        if (self._may_keep_one and len(self._cached_objects[key]) >= self._max_num_objects[key]
                and self._num_cached_objects < n and not any(v for v in self._max_num_objects.values())):
            self._cached_objects[key].append(obj)
            self._num_cached_objects += 1
            return True
        return orig_cache(self, key, obj)

    def flush_cached_objects(self, force_all: bool = False):
        if (not force_all and self._may_keep_one and self._num_cached_objects <= n
                and not any(v for v in self._max_num_objects.values())):
            return iter(())
        return orig_flush(self, force_all)

    _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = cache_object, flush_cached_objects
    try:
        yield
    finally:
        _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = orig_cache, orig_flush


def _final_message(run: EvolveRun) -> None:
    best = run.ev.best()
    out = run.out
    if best is not None:
        e = run.ev.cache.get(best.gid, {})
        print(f"best genome {best.gid}: validation accuracy {best.fitness.values[0]:.4f}, "
              f"{e.get('params') or 0:,} parameters, {(e.get('macs') or 0) / 1e6:.1f}M multiply-adds", flush=True)
    print(f"results: {out}/trials.csv, logbook.csv, pareto.csv; plots: {out}/progress.png, {out}/pareto.png",
          flush=True)
    print(f"best genomes: {out}/hall_of_fame/*.json; train the best: fernas decode {out}/best.json --train",
          flush=True)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
