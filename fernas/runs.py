"""Runs at a glance: what `fernas runs [DIR]` lists, and `fernas.load_run(path)` for scripts.

`describe(path)` reads only a run directory's small files and says what it is: an evolve run
(config.json `fernas_evolve_run`) or a training run (`fernas_train_run`), its state (running:
its lock is held; finished; stopped: resumable; lost race: a finalist its race stopped, resumable;
incomplete: nothing to resume; corrupt: config.json and its copy unreadable; `version N`:
written by another fernas, not read further), progress,
best accuracy, compute and times.  `load_run(path)` returns an evolve run's trials and
logbook as pandas DataFrames and its best genomes as documents (a training run: its history
and metrics).
"""

from __future__ import annotations

import csv
import fcntl
from dataclasses import dataclass, field
from pathlib import Path

from fernas.errors import RunDirError
from fernas.io import LOCK_NAME, previous_path, read_json_object
from fernas.runinfo import local_time
from fernas.search.clock import earlier_seconds


# Files beside an unreadable config.json that make the directory a fernas run (a corrupt one)
RUN_SIGNS = ("config.prev.json", "checkpoint.json", "checkpoint.prev.json", "trials.csv", "genome.json", "history.csv")


def lock_held(run: Path) -> bool:
    """Whether a fernas process holds the run directory's lock (a shared probe, released at once)."""
    lock = run / LOCK_NAME
    if not lock.is_file():
        return False
    with lock.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _json_or_previous(path: Path) -> dict | None:
    """A run file that fernas writes with a copy of the one before (config.json, checkpoint.json):
    the copy when the file is unreadable, as `--resume` reads it."""
    return read_json_object(path) or read_json_object(previous_path(path))


def describe(run: Path, probe_lock: bool = True) -> dict | None:
    """One row of `fernas runs` for a run directory; None when `run` is not one.
    `probe_lock=False`: the caller holds the run's lock (its state is what its files say)."""
    cfg = _json_or_previous(run / "config.json")
    if cfg is None:
        if not (run / "config.json").is_file() or not any((run / f).exists() for f in RUN_SIGNS):
            return None  # no config.json, or one of something else
        return {"run": str(run), "kind": "?", "state": "corrupt", "progress": "config.json unreadable", "trials": None,
                "best": None, "compute": None, "started": None, "seconds": None}
    from fernas.protocol import RUN_VERSION
    from fernas.search.rundir import CONFIG_VERSION

    kinds = {"fernas_evolve_run": ("evolve", CONFIG_VERSION, _evolve_row),
             "fernas_train_run": ("train", RUN_VERSION, _train_row)}
    key = next((k for k in kinds if k in cfg), None)
    if key is None:
        return None
    kind, version, read = kinds[key]
    if cfg[key] != version:  # written by another fernas: its files may mean other things
        row = {"kind": kind, "state": f"version {cfg[key]}", "progress": "-", "trials": None, "best": None,
               "compute": None, "started": cfg.get("first_started") or cfg.get("started"), "seconds": None}
    else:
        row = read(run, cfg)
    if probe_lock and lock_held(run):
        row["state"] = "running"
    row["started"] = local_time(row["started"]) if row.get("started") else None  # comparable across time zones
    return {"run": str(run), **row}


def _evolve_row(run: Path, cfg: dict) -> dict:
    ga = cfg.get("options", {}).get("ga", {})
    ck = _json_or_previous(run / "checkpoint.json") or {}
    trials = [t for e in ck.get("cache", {}).values() for t in e.get("trials", []) if not t.get("from_run")]
    from fernas.run_analysis import is_fitness_trial, utilisation
    from fernas.search.leftovers import left_running

    # a warm start's trials count too: its genomes are in the run's population and hall of fame
    accs = [float(t["val_acc"]) for e in ck.get("cache", {}).values() for t in e.get("trials", [])
            if is_fitness_trial(t, int(ga.get("max_budget") or 0))]
    state = "finished" if ck.get("done") else ("stopped" if ck else "incomplete")
    picked = _picked(run, ck)
    best_trial = max(accs) if accs else None
    meta = ck.get("meta") or {}
    progress = f"{ck.get('generation', 0)}/{ga.get('generations', '?')} generations"  # finished of all
    ended_by = meta.get("ended_by")
    if isinstance(ended_by, str) and (meta.get("search_end") is not None or ended_by == "patience"):  # a budget ended it
        progress += " --" + ended_by.replace("_", "-")  # its flag: max_compute -> --max-compute
    trained = [t for t in trials if t.get("status") != "skipped"]  # as `search.run.trial_count`
    return {"kind": "evolve", "state": state, "progress": progress, "ended_by": meta.get("ended_by"),
            "trials": len(trained), "refused": len(trials) - len(trained), "best": picked.get("val_acc", best_trial), "best_gid": picked.get("gid"),
            "best_trial": best_trial,
            "compute": sum(int(t.get("compute") or 0) for t in trials),
            "started": cfg.get("first_started"),
            "seconds": earlier_seconds(run, meta) or meta.get("search_seconds"),  # the clock's before any outcome
            "utilisation": utilisation(trials, meta.get("slots") or {}),
            "left_running": sorted(left_running(run))}  # Ray processes its killed search left running


def _picked(run: Path, ck: dict) -> dict:
    """The `evolve` block of the genome the run returns (best.json: the fitness rule's and the
    re-ranking's choice, which need not hold the highest accuracy of any trial); {} before the
    first generation has one (the row then shows the highest trial's accuracy)."""
    doc = read_json_object(run / "best.json")
    ev = doc.get("evolve") if isinstance(doc, dict) else None
    return ev if isinstance(ev, dict) and ev.get("gid") in (ck.get("cache") or {}) else {}


def _train_row(run: Path, cfg: dict) -> dict:
    metrics = read_json_object(run / "metrics.json")
    epochs = 0
    if (run / "history.csv").is_file():
        try:
            with (run / "history.csv").open(newline="", encoding="utf-8") as fh:
                epochs = sum(1 for _ in csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error):  # damaged by a crash: the row shows 0 epochs
            epochs = 0
    args = cfg.get("args") or {}
    total = int(args.get("epochs") or 0) + int(args.get("fine_tune_epochs") or 0)
    resumable = any(run.glob("checkpoint-*.pt"))
    stopped = "lost race" if _lost_race(run) else "stopped"
    from fernas.protocol import centre_crop_only

    crop = "single" if centre_crop_only(args.get("augment"), args.get("train_crops")) else "tencrop"
    return {"kind": "train", "state": "finished" if metrics else (stopped if resumable else "incomplete"),
            "progress": f"epoch {epochs}/{total or '?'}", "trials": None,
            "best": metrics.get(f"test_accuracy_{crop}") if metrics else None, "best_crop": crop,
            "compute": metrics.get("train_compute") if metrics else None,
            "started": cfg.get("started"), "seconds": metrics.get("train_seconds") if metrics else None}


def _lost_race(run: Path) -> bool:
    """Whether the run is a finalist its race (`fernas.race`: race.json beside it) stopped."""
    race = read_json_object(run.parent / "race.json")
    if not isinstance(race, dict) or not isinstance(race.get("winner"), int):
        return False
    names = [Path(str(g.get("dir", ""))).name for g in race.get("genomes", []) if isinstance(g, dict)]
    return run.name in names and names.index(run.name) != race["winner"]


def list_runs(root: Path) -> list[dict]:
    """Every run directory at most three levels below `root`, oldest first: a `fernas train` of
    several genomes keeps one per genome, and `make demo` puts those under runs/demo-*/trained/."""
    rows = []
    patterns = ("*/config.json", "*/*/config.json", "*/*/*/config.json")
    for d in sorted({p.parent for pattern in patterns for p in root.glob(pattern)}):
        row = describe(d)
        if row:
            rows.append(row)
    return sorted(rows, key=lambda r: (r.get("started") or "", r["run"]))


@dataclass
class Run:
    """A run loaded for analysis (`fernas.load_run`)."""
    path: Path
    kind: str  # evolve | train
    config: dict
    trials: object = None  # pandas DataFrame of trials.csv (evolve)
    logbook: object = None  # pandas DataFrame of logbook.csv (evolve)
    best: list[dict] = field(default_factory=list)  # hall-of-fame genome documents, best first (evolve)
    history: object = None  # pandas DataFrame of history.csv (train)
    metrics: dict | None = None  # metrics.json (train)


def describe_run(run: Path, probe_lock: bool = True) -> dict:
    """`describe(run)` of a run directory whose files can be read further; RunDirError otherwise."""
    row = describe(run, probe_lock)
    if row is None:
        inside = [r["run"] for r in list_runs(run)] if run.is_dir() else []  # a multi-genome train, make demo's
        if inside:
            shown = ", ".join(inside[:4]) + (f" and {len(inside) - 4} more" if len(inside) > 4 else "")
            raise RunDirError(f"{run}: holds no run itself but {len(inside)} run(s) below it ({shown}); name one "
                              f"of them (`fernas runs {run}` lists them)")
        raise RunDirError(f"{run}: not a fernas run directory (no config.json of an evolve or training run)")
    if row["state"] == "corrupt":
        raise RunDirError(f"{run / 'config.json'}: corrupt (not valid JSON, or not an object), and no readable "
                          "copy before it")
    return row


def read_config(run: Path) -> dict:
    """A run's config.json as `describe` read it (the copy before it when it is unreadable)."""
    return _json_or_previous(run / "config.json") or {}


def load_run(path: str | Path) -> Run:
    """An evolve or training run directory as DataFrames and documents; RunDirError otherwise."""
    import pandas as pd

    from fernas.genome import load_genome

    run = Path(path)
    row = describe_run(run)
    cfg = read_config(run)

    def frame(name: str):
        if not (run / name).is_file():
            return pd.DataFrame()
        try:
            return pd.read_csv(run / name)
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' ParserError is a ValueError
            raise RunDirError(f"{run / name}: not readable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None

    if row["kind"] == "evolve":
        best = [load_genome(p) for p in sorted((run / "hall_of_fame").glob("*.json"))]
        return Run(run, "evolve", cfg, trials=frame("trials.csv"), logbook=frame("logbook.csv"), best=best)
    return Run(run, "train", cfg, history=frame("history.csv"), metrics=read_json_object(run / "metrics.json"))
