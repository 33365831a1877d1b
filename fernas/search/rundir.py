"""The run directory of `fernas evolve` (`--out`): its files, their formats, and the plots.

    config.json       the run's settings, versions, data and Ray resources (CONFIG_VERSION)
    checkpoint.json   the GA state and fitness cache (fernas.evolve.checkpoint; rewritten per trial)
    trials.csv        one row per trial (first training, promotion) or refused genome (TRIAL_COLUMNS)
    logbook.csv       one row per generation (the GA's logbook, plus the time it ended)
    hall_of_fame/     NN_<gid>.json: the best genomes, as files `fernas decode --train` takes
    seed_designs/     <name>.json: the seed designs the run trained, with what they reached (the
                      last lines suggest training the best beside the designs' own --seed-genomes files, these
                      copies only when those are missing: fernas.search.next_steps)
    best.json         the best genome
    pareto.csv/.png   accuracy against the cost objective (parameters with one objective), the
                      measured front and best.json's genome marked
    progress.png      best so far, best and mean of each generation
    tensorboard/      the same per generation as TensorBoard scalars (Ray Tune's per-trial ones are in ray/)
    ray/              Ray Tune's trial directories (unless --storage says elsewhere)
    checkpoints/      <gid>.pt: trainer checkpoints that promotions continue (while needed)
    search_clock.json the search time --time-budget counts, every minute (fernas.search.clock)
    .lock             held by the process that runs the search
    .processes.json   the processes below it (Ray's), ended by the next search here if it is killed
    auto_resume.json  with --auto-resume: every search process that died, when, why, whether restarted
    report.html       the run's report page (fernas.html_report)
    *.prev.json       config.json and checkpoint.json as they were before their last rewrite

Every file written here by fernas itself is written atomically (not TensorBoard's event files,
nor Ray Tune's in ray/).  A run directory is never overwritten without --resume,
and one written by another version of fernas is refused with one line.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fernas import genome as G
from fernas.errors import OtherVersionError, RunDirError, RunExistsError
from fernas.fitness import fitness_of, is_ok, reranked_accuracy, reranked_trainings
from fernas.io import (LOCK_NAME, atomic_write_csv, atomic_write_json, atomic_write_text, keep_previous,
                       previous_path, read_json_object, read_versioned_json)
from fernas.objectives import FIELDS, OBJECTIVES
from fernas.runinfo import timestamp, versions
from fernas.search.leftovers import NOTES
from fernas.search.options import recipe_text

CONFIG_VERSION = 3
VERSION_KEY = "fernas_evolve_run"
TRIAL_COLUMNS = ["trial", "generation", "gid", "origin", "kind", "budget", "seed", "status", *FIELDS, "val_loss", "compute",
                 "train_seconds", "wall_seconds", "overhead_seconds", "epochs", "device", "node", "error", "trial_id", "log_dir", "genome"]


def read_config(out: Path) -> dict:
    """The stored config.json of a run to resume (the copy before its last write when it is
    unreadable); RunDirError (one line) for anything else."""
    cfg_path = out / "config.json"
    if not out.is_dir():
        raise RunDirError(f"{out}: " + ("not a directory" if out.exists() else "no such run directory"))
    try:
        return _read_config(cfg_path, out)
    except OtherVersionError:
        raise
    except RunDirError as exc:
        prev = previous_path(cfg_path)
        if prev.is_file() and cfg_path.is_file():
            try:
                stored = _read_config(prev, out)  # an earlier attempt's settings: the same run
            except RunDirError:
                raise exc from None
            print(f"fernas: warning: {str(exc)[:200]}; resuming with {prev.name}, the copy before its last write",
                  file=sys.stderr)
            return stored
        raise


def _resumable(cfg_path: Path, out: Path) -> bool:
    """Whether `read_config` takes this config.json itself (not the copy before it)."""
    try:
        _read_config(cfg_path, out)
        return True
    except (RunDirError, FileNotFoundError):
        return False


def _read_config(cfg_path: Path, out: Path) -> dict:
    try:
        stored = read_versioned_json(cfg_path, VERSION_KEY, CONFIG_VERSION, "fernas evolve run")
    except FileNotFoundError:
        raise RunDirError(f"{cfg_path}: missing; {out} is not a fernas evolve run") from None
    missing = [k for k in ("options", "first_started", "resumes") if k not in stored]
    if missing or not isinstance(stored["options"], dict):
        raise RunDirError(f"{cfg_path}: corrupt (no {', '.join(missing) or 'options'}); cannot resume")
    return stored


def prepare(out: Path, resume: bool) -> dict | None:
    """Refuse to overwrite a run; on resume the stored config (RunDirError if there is none)."""
    if resume:
        stored = read_config(out)
        if not (out / "checkpoint.json").is_file() and not previous_path(out / "checkpoint.json").is_file():
            raise RunDirError(f"{out / 'checkpoint.json'}: no GA checkpoint here (nothing to resume)")
        return stored
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: not a directory (--out names the run directory)")
    if out.exists() and any(p.name not in (LOCK_NAME, NOTES) for p in out.iterdir()):  # a start killed before its config
        if not (out / "checkpoint.json").is_file() and not (out / "config.json").is_file():
            raise RunDirError(f"{out}: already exists and is not empty, and holds no fernas evolve run; "
                              "choose another --out")
        if "fernas_train_run" in (read_json_object(out / "config.json") or {}):  # `--resume` would not help
            raise RunDirError(f"{out}: holds a training run (fernas train), not a search; choose another --out")
        raise RunExistsError(out, "already exists and is not empty")
    return None


def reranking(cfg, entry: dict) -> dict:
    """{"rerank": ...} for a re-ranked genome: the recipe and length of its re-ranking trainings, their count
    and the mean validation accuracy that orders best.json and the hall of fame (`val_acc` is its
    own trial's, at the trial recipe); {} for the others."""
    top = len(cfg.rungs) - 1
    runs = reranked_trainings(entry, top, cfg.rerank_with_own)
    if not runs:
        return {}
    mean = reranked_accuracy(entry, top, cfg.rerank_with_own)
    return {"rerank": {"recipe": cfg.rerank_recipe, "epochs": cfg.rerank_epochs, "trainings": len(runs),
                       "mean_val_acc": round(mean, 4)}}


class RunDir:
    """Writes the files of one run directory from the GA's state."""

    def __init__(self, out: Path, seed_names: dict[str, str], trial_info: dict, designs: set[str] = frozenset()):
        self.out = out
        self.checkpoint = out / "checkpoint.json"
        self.seed_names = seed_names  # genome id -> name of a seed file, to keep the names readable
        self.designs = designs  # ids of the --seed-genomes files (a warm start's genomes are seeds, not designs)
        self.trial_info = trial_info  # what every hall-of-fame file says about the trials
        self._genome_text: dict[str, str] = {}  # gid -> its active content as JSON (trials.csv is rewritten per trial)

    def write_config(self, config: dict) -> None:
        path = self.out / "config.json"
        if path.is_file() and _resumable(path, self.out):  # one a resume cannot read would replace the good copy
            keep_previous(path)  # config.prev.json: what a resume falls back to if this write is lost
        atomic_write_json(path, {VERSION_KEY: CONFIG_VERSION, **config})

    def write_all(self, ev) -> None:
        self.write_trials(ev)
        self.write_logbook(ev)
        self.write_hall_of_fame(ev)
        self.write_seed_designs(ev)
        self.write_pareto(ev)
        self.write_progress_plot(ev)

    def write_trials(self, ev) -> None:
        # this run's trials (a warm start's reused ones are the earlier run's: listed there)
        trials = [(t, e) for e in ev.cache.values() for t in e.get("trials", []) if not t.get("from_run")]
        trials.sort(key=lambda p: p[0].get("finished_at") or 0.0)  # stable: cache order among equals
        rows = [{**_trial_row(i, t, e), "genome": self._genome(e)} for i, (t, e) in enumerate(trials)]
        atomic_write_csv(self.out / "trials.csv", TRIAL_COLUMNS, rows)

    def _genome(self, e: dict) -> str:
        if e["gid"] not in self._genome_text:
            doc = G.from_vector(e["vector"]) if e.get("vector") else None
            self._genome_text[e["gid"]] = json.dumps(G.active_content(doc), separators=(",", ":")) if doc else ""
        return self._genome_text[e["gid"]]

    def write_scalars(self, rec: dict, compute: int) -> None:
        """A generation's best, mean and compute as TensorBoard scalars in OUT/tensorboard (next to
        the per-trial event files Ray Tune writes under OUT/ray): `tensorboard --logdir OUT`."""
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # Ray Tune installs it; without it there is nothing to write
            return
        # one event file per generation: tensorboardX names files by the second, and two
        # generations may end within one (cache hits only)
        with SummaryWriter(logdir=str(self.out / "tensorboard"), filename_suffix=f".gen{rec['gen']}") as w:
            for key in ("best", "max", "mean"):
                if rec.get(key) is not None:
                    w.add_scalar(f"search/{key}_val_acc", float(rec[key]), rec["gen"])
            w.add_scalar("search/trials", rec.get("trials", 0), rec["gen"])
            w.add_scalar("search/compute_img_macs", float(compute), rec["gen"])

    def write_logbook(self, ev) -> None:
        times = ev.meta.get("generation_times", {})

        def when(gen) -> str:
            t = times.get(str(gen))
            return timestamp(t) if t else ""

        atomic_write_csv(self.out / "logbook.csv", [*ev.logbook.header, "time"],
                         [{**rec, "time": when(rec["gen"])} for rec in ev.logbook], digits=None)

    def genome_file(self, ev, ind, rank: int | None) -> dict:
        return self.genome_doc(ev, ind.gid, list(ind), list(ind.fitness.values), rank)

    def genome_doc(self, ev, gid: str, vector: list[int], fitness: list[float], rank: int | None) -> dict:
        """The genome file of one trained genome: its network and recipe, and in `evolve` what the
        search measured (`rank`: its place in the hall of fame, None outside it)."""
        e = ev.cache.get(gid, {})
        doc = G.from_vector(vector, name=self.seed_names.get(gid) or f"evolved-{gid}")
        doc["evolve"] = {  # metrics of the search (the genome validator keeps this key)
            "run": self.out.name, "rank": rank, "gid": gid, "generation": e.get("generation"),
            "objectives": list(ev.cfg.objectives), "fitness": fitness,
            **{f: e.get(f) for f in FIELDS}, "budget": e.get("budget"),
            "train_seconds": sum(float(t.get("train_seconds") or 0) for t in e.get("trials", [])), **self.trial_info,
            **reranking(ev.cfg, e)}
        return G.validate(doc)

    def write_hall_of_fame(self, ev) -> None:
        hof_dir = self.out / "hall_of_fame"
        hof_dir.mkdir(parents=True, exist_ok=True)
        ranked = _hall_of_fame(ev)
        wanted = {f"{rank:02d}_{ind.gid}.json": self.genome_file(ev, ind, rank)
                  for rank, ind in enumerate(ranked[:max(ev.cfg.hof_size, 1)], start=1)}
        for name, doc in wanted.items():
            atomic_write_text(hof_dir / name, G.dumps(doc))
        for p in hof_dir.glob("*.json"):
            if p.name not in wanted:
                p.unlink(missing_ok=True)
        if ranked:
            atomic_write_text(self.out / "best.json", G.dumps(self.genome_file(ev, ranked[0], 1)))

    def write_seed_designs(self, ev) -> None:
        """OUT/seed_designs/<name>.json: the seed designs (--seed-genomes) the run has results for
        (trained here, or reused by a warm start), the evolve block saying what they reached.  A
        short search favours networks that learn fast; trained longer a seed design may end
        above the best (README), so the run keeps them at hand to compare."""
        seeds = [e for gid, e in ev.cache.items() if gid in self.designs and is_ok(e) and e.get("vector")]
        out = self.out / "seed_designs"
        wanted: dict[str, dict] = {}
        for e in seeds:
            fitness = list(fitness_of(e, ev.cfg.objectives, ev.cfg.chance_level))
            doc = self.genome_doc(ev, e["gid"], e["vector"], fitness, rank=None)
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", doc["name"])[:80].lstrip(".") or e["gid"]
            wanted[f"{name}_{e['gid']}.json" if f"{name}.json" in wanted else f"{name}.json"] = doc
        if wanted:
            out.mkdir(exist_ok=True)
        for name, doc in wanted.items():
            atomic_write_text(out / name, G.dumps(doc))
        for p in out.glob("*.json"):  # none when the folder is absent
            if p.name not in wanted:
                p.unlink(missing_ok=True)

    def write_pareto(self, ev) -> None:
        """Accuracy against the run's cost objective over every trained genome; the front of the
        measured accuracies marked, and best.json's genome, which the fitness rule and the
        re-ranking chose (larger budgets first, ties by loss, re-ranked means): it can lie off
        that front."""
        cost = OBJECTIVES[ev.cfg.objectives[1] if ev.cfg.multi else "params"]
        acc = OBJECTIVES["accuracy"].field
        pts = [e for e in ev.cache.values() if is_ok(e) and e.get(cost.field) is not None and e.get(acc) is not None]
        pts.sort(key=lambda e: (e[cost.field], -e[acc]))
        front, best_acc = set(), -1.0
        for e in pts:  # sweep by cost: a point is on the front if no cheaper one is as accurate
            if e[acc] > best_acc:
                front.add(e["gid"])
                best_acc = e[acc]
        ranked = _hall_of_fame(ev)
        best = ranked[0].gid if ranked else None  # best.json's
        atomic_write_csv(self.out / "pareto.csv", ["gid", "generation", *FIELDS, "on_front", "best"],
                         [{**{k: e.get(k) for k in ("gid", "generation", *FIELDS)}, "on_front": int(e["gid"] in front),
                           "best": int(e["gid"] == best)} for e in pts])
        if pts:
            _plot_front(pts, front, best, cost, self.out)

    def write_progress_plot(self, ev) -> None:
        recs = list(ev.logbook)
        if not recs:
            return
        from fernas.report import new_figure, save_figure

        fig, ax = new_figure()
        gens = [r["gen"] for r in recs]

        def col(key):  # None (nothing trained that generation) -> a gap
            return [math.nan if r.get(key) is None else r[key] for r in recs]

        # the fittest genome's accuracy: it can fall when at-chance ties are broken by validation loss
        ax.plot(gens, col("best"), "o-", label="the fittest genome so far (its accuracy)")
        ax.plot(gens, col("max"), "^--", label="best of generation")
        ax.plot(gens, col("mean"), "s-", label="mean of generation (trained genomes)")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
        ax.set_xlabel("generation")
        ax.set_ylabel(OBJECTIVES["accuracy"].label)
        ax.set_title(f"{self.out.name}: progress")
        ax.legend(loc="best")
        save_figure(fig, self.out / "progress.png")


def _trial_row(i: int, t: dict, e: dict) -> dict:
    """A row of trials.csv (but the genome column): trial `t` of the genome whose cache entry is `e`."""
    wall, train = t.get("wall_seconds"), t.get("train_seconds")
    return {"trial": i, "generation": e.get("generation"), "gid": e["gid"], "origin": e.get("origin", ""),
            **{k: t.get(k) for k in ("kind", "budget", "seed", "status", *FIELDS, "val_loss", "compute", "train_seconds",
                                     "wall_seconds", "device", "node")},
            "overhead_seconds": (wall - train) if (wall is not None and train is not None and is_ok(t)) else None,
            "epochs": t.get("epoch"), "error": t.get("error") or "", "trial_id": t.get("trial_id", ""),
            "log_dir": t.get("log_dir", "")}


def _hall_of_fame(ev) -> list:
    """The hall of fame as the run's files show it (the generation in flight's genomes too),
    trained ones only, best first: best.json is its first."""
    return [ind for ind in ev.hall_of_fame_so_far() if is_ok(ev.cache.get(ind.gid, {}))]


def _plot_front(pts: list[dict], front: set, best: str | None, cost, out: Path) -> None:
    from fernas.report import new_figure, save_figure

    acc = OBJECTIVES["accuracy"]
    fig, ax = new_figure()
    ax.scatter([e[cost.field] for e in pts], [e[acc.field] for e in pts], s=14, c="0.6", label="trained genomes")
    fr = [e for e in pts if e["gid"] in front]
    ax.plot([e[cost.field] for e in fr], [e[acc.field] for e in fr], "o-", c="C3", ms=5, label="Pareto front")
    for e in (e for e in pts if e["gid"] == best):
        ax.plot([e[cost.field]], [e[acc.field]], "*", c="C0", ms=16, mfc="none", mew=1.5, label="best.json")
    ax.set_xscale("log")
    ax.set_xlabel(cost.label)
    ax.set_ylabel(acc.label)
    ax.set_title(f"{out.name}: accuracy against {cost.label}")
    ax.legend(loc="lower right")
    save_figure(fig, out / "pareto.png")


def run_config(opts, data_info: dict, resources: dict, attempt: int, stored: dict | None,
               n_val: int, chance: float) -> dict:
    """config.json of an attempt: the run's resolved options, versions, data, Ray resources and
    fitness rule; `stored`: the config of the attempt before (a resume), else None."""
    now = timestamp()
    # The noise of one fitness value: the binomial standard error of an accuracy near 50% on
    # this many validation images (differences smaller than about twice it are mostly luck).
    fitness = {"rule": "larger budget first, then validation accuracy at the end of the budget (centre crop), "
                       "accuracies at or below chance_level tied, then the lower validation loss",
               "budgets": list(opts.ga.rungs), "eta": opts.ga.eta, "val_images": n_val,
               "trial_recipe": recipe_text(opts.trial_batch, opts.trial_augment),
               "standard_error_at_50pct": round((0.25 / max(1, n_val)) ** 0.5, 4),
               # at or below it a trial learnt nothing: the largest class's share plus one standard error
               "chance_level": round(chance, 4),
               "rerank_order": "by the mean over a genome's re-ranking trainings" + (
                   "; two means above chance_level closer than one binomial standard error of their difference "
                   "tie, and the fitness above orders them" if opts.ga.val_images else "")}
    from fernas.search.trial import TRIAL_VERSION

    argv = (stored or {}).get("argv", sys.argv[1:])  # the command that began the run; this attempt's in attempt_argv
    return {"command": "fernas evolve", "argv": argv, "attempt_argv": sys.argv[1:], "options": _jsonable(asdict(opts)),
            "trial_version": TRIAL_VERSION,
            "seed": opts.ga.seed, "versions": versions("torch", "ray", "deap", "numpy"), "fitness": fitness,
            "data": _jsonable(data_info), "ray": resources, "attempt": attempt, "started": now,
            "first_started": stored["first_started"] if stored else now,
            "resumes": stored["resumes"] + 1 if stored else 0}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


REPORT_EVERY_S = 300.0  # report.html after a generation at most this often (a stop and the end write it too)


def write_report(out: Path, state: str | None = None) -> None:
    """OUT/report.html as the run stands (after a generation, a stop, the end), by the process
    that holds the run's lock; `state`, else what its files say.  A failure is one warning line."""
    from fernas.html_report import write_report as write
    from fernas.io import best_effort

    best_effort(str(out / "report.html"), f"fernas report {out} writes it", write, out, own_lock=True, state=state)
