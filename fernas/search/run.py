"""Orchestration of `fernas evolve`: run directory, Ray, the GA and the Tuners, in order.

`run_evolve(opts, load_data, seed_docs, console)` refuses bad settings before anything slow
starts, takes the run directory's lock, starts or joins Ray, builds (or loads) the GA, runs
its trials until the GA is done (`search.tuner.fit`: a new Tuner every `SEGMENT_TRIALS` trials
or so), and writes the outputs.  What the user reads comes through
`console` (the CLI's), so this module prints nothing itself.

Resume does not use `Tuner.restore`: the GA checkpoint holds everything, so a resumed run
starts a fresh Tuner whose searcher replays the interrupted generation from the fitness
cache (trials that were in flight when the process died run again; completed ones never do).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fernas import genome as G, stop_signals
from fernas.errors import RunDirError
from fernas.evolve import Candidate, Evolution
from fernas.data_spec import FER_TEST_DEFAULT
from fernas.fitness import at_chance, chance_level, is_rerank
from fernas.io import run_dir_lock
from fernas.runinfo import refuse_other_data
from fernas.search import clock, cluster, leftovers, rundir, start_notes
from fernas.search.options import EvolveOptions, recipe_text
from fernas.search.trial import trainer_version
from fernas.space import at_batch


class EvolveRun:
    """One run in progress: the GA, its run directory, and what the Tune adapter reports to it."""

    def __init__(self, opts: EvolveOptions, ev: Evolution, rdir: rundir.RunDir, n_train: int, console):
        self.opts, self.ev, self.rundir, self.console = opts, ev, rdir, console
        self.out = rdir.out
        self.trial_dirs: dict[str, str] = {}  # Tune trial id -> its directory
        self.t0 = time.monotonic()  # this attempt's start, for the ETA (the search time is `clock`'s)
        self.gens_at_start = ev.gen
        self.n_train = n_train
        # Trainer checkpoints of this generation's genomes, continued by their promotions (a run
        # with one budget needs none).  On a cluster OUT must be storage every node reaches.
        self.checkpoints = self.out / "checkpoints" if len(ev.cfg.rungs) > 1 else None
        ev.on_generation = self.on_generation
        self.seconds_before = clock.earlier_seconds(self.out, ev.meta)  # earlier attempts' search time
        self.clock = clock.SearchClock(self.out, self.seconds_before)
        self.stop_reason: tuple[str, str] | None = None  # (setting, what happened): the budget that stopped the run
        self.trial_memory = 0.0  # host memory a CPU trial may take (bytes; 0: not checked), set by run_evolve
        self.chance = 0.0  # validation accuracy at or below which a trial learnt nothing (fitness.chance_level)
        self.report_at = time.monotonic()  # report.html's last write at a generation's end

    def search_seconds(self) -> float:
        return self.clock.seconds()

    def tick(self) -> None:
        """On every step of Tune's loop: keep the search time where a kill does not lose it."""
        if not self.ev.search_over:  # the time budget counts the search, not the re-ranking
            self.clock.tick()

    def out_of_budget(self, live: int) -> tuple[str, str, float] | None:
        """(setting, what happened, its limit) when a budget is spent and no further trial of the
        search may start, else None.  `live`: trials running."""
        o = self.opts
        if o.max_trials and trial_count(self.ev, search_only=True) + live >= o.max_trials:
            self.stop_reason = ("max_trials", f"{o.max_trials} reached", o.max_trials)
        elif o.time_budget and self.search_seconds() >= o.time_budget:
            from fernas.runinfo import fmt_duration
            self.stop_reason = ("time_budget", f"{fmt_duration(o.time_budget)} spent", o.time_budget)
        elif o.max_compute and total_compute(self.ev, search_only=True) >= o.max_compute:
            self.stop_reason = ("max_compute", f"{o.max_compute:.3g} images x multiply-adds spent", o.max_compute)
        else:  # spent in an earlier attempt, whose trials then running a kill lost (not counted above)
            self.stop_reason = self.stop_reason or self.ev.spent_budget(budget_limits(o))
        return self.stop_reason

    def checkpoint_path(self, cand: Candidate) -> str | None:
        if self.checkpoints is None or cand.kind == "rerank":  # a re-ranking trial is never continued
            return None
        return str(self.checkpoints / f"{cand.gid}.pt")

    def refuse(self, cand: Candidate) -> bool:
        """Estimate the candidate's cost (for longest-first ordering); record a refusal, if any."""
        from fernas.model import plan, training_cost

        p = plan(cand.doc)
        macs = p.macs
        own = self.ev.cfg.trains_own_recipe(cand)  # trains the genome's own batch
        # the trainer takes at most the training set in a batch
        bs = min((0 if own else self.opts.trial_batch) or cand.doc["train"]["batch_size"], max(1, self.n_train))
        steps = max(1, self.n_train // bs)
        if self.opts.max_steps_per_epoch:
            steps = min(steps, self.opts.max_steps_per_epoch)
        # the trial's training time, roughly: images x cost per image with activation memory counted
        cand.cost_hint = float(training_cost(p) * steps * bs * (cand.budget - cand.resume_from))
        reason = self.ev.cfg.refusal(cand.doc, plan=p) if cand.kind == "first" else None
        # a re-ranking at the genome's own batch (up to 8x a searched trial batch) needs its own check
        if reason is None and (cand.kind == "first" or own) and self.trial_memory:
            reason = memory_refusal(p, bs, self.trial_memory)
        if reason:  # penalised without a trial
            self.record(cand, {"status": "skipped", "error": reason, "val_acc": 0.0, "macs": macs,
                               "wall_seconds": 0.0})
        return reason is not None

    def record(self, cand: Candidate, outcome: dict, running: list[Candidate] | None = None,
               waiting: bool = True) -> bool:
        """Record a trial's outcome.  `running` (from the searcher: the trials still running or
        waiting to retry): when this outcome spends a budget and trials wait to start
        (`waiting`), the search ends with them, in the same checkpoint write as the outcome (a
        kill finds both or neither); when none waits, they finish first (`note_spent`), so that
        a generation whose last trials they are closes.  True if it ended."""
        if not self.ev.search_over:  # the time budget counts the search, not the re-ranking
            self.ev.meta["search_seconds"] = self.search_seconds()
        # the trainer that measured it: a warm start reuses only trials of the trainer it runs
        outcome = {**outcome, "finished_at": time.time(), "attempt": self.ev.meta.get("attempts"),
                   "trainer": trainer_version()}
        self.ev.record(cand, outcome, save=False)
        spent = running is not None and not self.ev.search_over and self.out_of_budget(len(running))
        ends = spent and waiting
        if ends:
            self.ev.end_search(self.stop_reason, running)  # persists the outcome with the end
        else:
            if spent:
                self.ev.note_spent(self.stop_reason, running)
            self.ev.save()
        self.rundir.write_trials(self.ev)
        return bool(ends)

    def on_generation(self, ev: Evolution, rec: dict) -> None:
        this_attempt = time.monotonic() - self.t0  # the ETA goes by this attempt's pace
        eta = this_attempt / max(1, ev.gen - self.gens_at_start) * (ev.cfg.generations - ev.gen)
        ev.meta.setdefault("generation_times", {})[str(rec["gen"])] = time.time()
        ev.meta["search_seconds"] = elapsed = self.search_seconds()  # with earlier attempts', as --time-budget counts
        ev.save()
        if self.checkpoints is not None:  # promotions stay inside a generation: nothing continues these
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        # the search's compute, as --max-compute counts it (the re-ranking's is in the run's last lines)
        self.console.generation(rec, ev.cfg.generations, elapsed, eta, total_compute(ev, search_only=True))
        self._check_signal(ev, rec["gen"])
        self.rundir.write_all(ev)
        self.rundir.write_scalars(rec, total_compute(ev))
        if time.monotonic() - self.report_at >= rundir.REPORT_EVERY_S:  # written inside Tune's loop: not every generation
            self.report_at = time.monotonic()
            rundir.write_report(self.out, state="running")

    def _check_signal(self, ev: Evolution, gen: int) -> None:
        """Say so when most of a generation's first trainings ended at chance: their ranking
        (promotions, selection) is then mostly ties, and the smallest budget too small."""
        # trained to the end of the budget (not stopped early by ASHA, not failed or refused)
        first = [t for e in ev.cache.values() if e.get("generation") == gen for t in e.get("trials", [])
                 if t.get("kind") == "first" and t.get("budget") == ev.cfg.rungs[0] and t.get("status") == "ok"
                 and not t.get("from_run")]
        n = at_chance(first, self.chance)
        if self.chance and first and 2 * n > len(first):
            self.console.no_signal(gen, n, len(first), ev.cfg.rungs[0], self.chance, len(ev.cfg.rungs) > 1,
                                   recipe_hint=start_notes.recipe_hint(self.opts))


def budget_limits(opts: EvolveOptions) -> dict:
    """An attempt's budgets, setting -> limit (None: none)."""
    return {k: getattr(opts, k) for k in ("max_trials", "time_budget", "max_compute")}


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
    if ev.recovered:
        console.say(f"fernas: warning: {ev.recovered}", err=True)
    start_notes.say_other_trainers(ev, console)
    if cli_opts.space_file is not None and not _same_space(cli_opts.ga.space, ev.cfg.space, opts.trial_batch):
        raise RunDirError(f"{cli_opts.space_file}: not the search space of the run in {out} (see its "
                          "config.json); a run keeps its space: start a new run (it may warm-start from this one)")
    if cli_opts.patience is not None:
        ev.cfg.patience = cli_opts.patience
    opts.ga = ev.cfg  # the checkpoint's GA is the one that resumes
    console.resuming(out, ev, cli_opts, opts)
    if ev.reopen():
        console.reopened(ev)
    return opts, ev


def _run_locked(cli_opts: EvolveOptions, load_data, seed_docs: list[dict], console, stored: dict | None) -> Path:
    ended = leftovers.end_leftovers(Path(cli_opts.out))  # Ray's agents outlive a search killed with SIGKILL
    if ended:
        console.say(ended, err=True)
    opts, ev = _resolve(cli_opts, stored, console)
    out = Path(opts.out)
    seed_docs = at_batch(seed_docs, opts.trial_batch)  # as the run searches them (the stored run's batch on a resume)
    designs = {G.genome_id(d): d["name"] for d in seed_docs}  # --seed-genomes files, not a warm start's genomes
    if ev is not None and ev.done and not ev.budget_raised(budget_limits(opts)):
        # nothing to train: no data to load, no Ray to start; the files are written again (a
        # kill may have come between the final checkpoint and them)
        console.run_line(out, ev.cfg, opts)
        console.already_complete(ev)
        _finish(out, ev, _run_dir(out, opts, _seeds(ev, designs, seed_docs)), console)
        return out
    cluster.precheck_resources(opts)  # flags that cannot work fail before the data loads and Ray starts
    data = load_data(opts)  # DataError before Ray starts
    data_info = {"source": data.source, "classes": list(data.classes), "n_train": len(data.train),
                 "n_val": len(data.val), "n_test": len(data.test), "info": data.info}
    if stored:  # a resume: the data the run began with, or none
        refuse_other_data(stored.get("data") or {}, ("n_train", "n_val", "n_test"), data.classes,
                          [len(data.train), len(data.val), len(data.test)], opts.data, out)
    warm = _warm_start(opts, data_info, console) if ev is None and opts.warm_start else ([], {})
    seed_docs = at_batch(warm[0], opts.trial_batch) + seed_docs  # the earlier run's hall of fame first
    if console.reader_gone():  # a run that would stop at its first line starts no Ray and keeps its files
        raise KeyboardInterrupt
    storage = _trial_storage(opts, out)  # a storage Tune cannot use: refused before Ray and the run's files
    notes = leftovers.ProcessNotes(out)  # what runs below this process before Ray is not Ray's
    ray_info = {"started_local": False}
    import ray
    try:
        notes.start()  # Ray's processes, for the next search here should this one be killed (from ray.init on)
        with stop_signals.through_ray_init():  # ray.init installs a SIGTERM handler of its own
            ray_info = cluster.connect_ray(opts)
        cpt, gpt, slots = cluster.resolve_resources(opts, ray_info)
        if gpt > 0 and ray_info["started_local"]:
            start_notes.unusable_gpus(ray_info, console)
        from fernas.search.tuner import fit

        out.mkdir(parents=True, exist_ok=True)
        if opts.address:  # a node that cannot see OUT would fail every promotion it ran
            cluster.check_out_shared(out, lambda line: console.say(line, err=True))
        chance = chance_level(data.val.class_counts(data.num_classes))
        if ev is None:
            opts.ga.chance_level, opts.ga.val_images = chance, len(data.val)
            ev = Evolution(opts.ga, seed_docs=seed_docs, checkpoint_path=out / "checkpoint.json")
            ev.cache.update(warm[1])
        else:
            chance = ev.cfg.chance_level  # a resume keeps (and reports) the level its checkpoint decided with
        ev.meta["attempts"] = attempt = int(ev.meta.get("attempts", 0)) + 1
        seeds = _seeds(ev, designs, seed_docs)
        resources = {**ray_info, "cpus_per_trial": cpt, "gpus_per_trial": gpt, "concurrent_trials": slots}
        ev.meta.setdefault("slots", {})[str(attempt)] = slots  # for the utilisation (run_analysis)
        rdir = _run_dir(out, opts, seeds)
        rdir.write_config(rundir.run_config(opts, data_info, resources, attempt, stored, len(data.val), chance))
        ev.save()
        exp_name = f"{out.name}-{attempt}"
        console.starting(out, ev.cfg, opts, resources, f"{storage.rstrip('/')}/{exp_name}")
        if gpt == 0 and ev.gen == 0:
            console.slow_on_cpus(start_notes.slow_on_cpus(seed_docs, ev.cfg))
        run = EvolveRun(opts, ev, rdir, len(data.train), console)
        run.chance = chance
        if gpt == 0 and ray_info.get("memory"):  # CPU trials: their tensors live in host memory
            run.trial_memory = ray_info["memory"] / max(1, slots)
        _search(run, lambda: fit(run, data, cpt, gpt, slots, storage, exp_name))
        if not ev.search_over:
            ev.meta["search_seconds"] = run.search_seconds()
        _finish(out, ev, rdir, console)
        return out
    finally:
        try:
            if ray_info["started_local"] or ray.is_initialized():
                ray.shutdown()
        finally:
            notes.stop()


def _trial_storage(opts: EvolveOptions, out: Path) -> str:
    """Where Tune keeps the trials: OUT/ray, a URI, or the --storage directory, made now (Tune
    wants absolute paths; one that cannot be made fails here, before the run writes a file).
    One inside OUT is left to Tune: made now, it would leave a fresh run's OUT not empty."""
    if not opts.storage:
        return str((out / "ray").resolve())
    if "://" in opts.storage:
        return opts.storage
    path = Path(opts.storage).resolve()
    if path.is_relative_to(out.resolve()):
        return str(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--storage {opts.storage}: a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"--storage {opts.storage}: cannot make the directory ({exc.strerror})") from None
    return str(path)


def _run_dir(out: Path, opts: EvolveOptions, seeds: dict) -> rundir.RunDir:
    fer_test = opts.data_args.get("fer_test", FER_TEST_DEFAULT)  # which FER2013 split the search validated on
    trial_info = {"budgets": list(opts.ga.rungs), "data": opts.data,
                  **({"fer_test": fer_test} if fer_test != FER_TEST_DEFAULT else {}),
                  "trial_recipe": recipe_text(opts.trial_batch, opts.trial_augment)}
    return rundir.RunDir(out, seeds["names"], trial_info, set(seeds["designs"]))


def _seeds(ev: Evolution, designs: dict, seed_docs: list[dict]) -> dict:
    """The seeds the run started with (names, and which are designs): a resume keeps them
    whatever --seed-genomes says now, and a warm start's names though it reads no run again."""
    return ev.meta.setdefault("seeds", {"designs": designs, "names": {G.genome_id(d): d["name"] for d in seed_docs}})


def _finish(out: Path, ev: Evolution, rdir: rundir.RunDir, console) -> None:
    """A finished run: its checkpoint (again: it may be the copy a corrupt file fell back to),
    its files, its report, and the closing lines."""
    if not (ev.ended_by_budget and len(ev.cfg.rungs) > 1):  # a raised budget reopens the search: its promotions continue these
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # nothing continues a trainer checkpoint now
    ev.save()
    rdir.write_all(ev)
    rundir.write_report(out)
    console.finished(out, ev)


def _search(run: EvolveRun, fit) -> None:
    """This attempt's trials (`fit()`: the Tune run) until the run is done, after reopening a
    search whose budget was raised or ending one whose budget is spent; KeyboardInterrupt when
    it stopped before (Ctrl-C, a failed driver loop)."""
    ev, console = run.ev, run.console
    if ev.budget_raised(budget_limits(run.opts)):  # a budget ended the search; this attempt raised it
        ev.reopen_search()
        console.search_reopened(ev)
    # spent before this attempt: the search is over, not its re-ranking (unless trials running
    # when it was spent are to finish: the searcher ends it at its next trial to start)
    if run.out_of_budget(live=0) and "spent_with" not in ev.meta:
        ev.end_search(run.stop_reason, [])
    fit()
    if not ev.done:
        rundir.write_report(run.out)  # "stopped"
        console.stopped(run.out, ev)
        raise KeyboardInterrupt


def _warm_start(opts: EvolveOptions, data_info: dict, console) -> tuple[list[dict], dict]:
    from fernas.search.warm_start import load_warm_start

    hof, reused = load_warm_start(opts.warm_start, opts, data_info)
    from fernas.evolve.sampling import heading_seeds

    heading = len(heading_seeds(opts.ga, at_batch(hof, opts.trial_batch)))  # as the initial population takes them
    console.warm_start(opts.warm_start, len(hof), heading, len(reused))
    return hof, reused


def _same_space(given: dict | None, stored: dict | None, trial_batch: int) -> bool:
    """The --space file of a resume (`given`, as read) is the stored run's space: as it was, or
    with the batch fixed to the run's trial batch (`space.with_batch`, runs since it)."""
    from fernas.space import Space, SpaceError, with_batch

    if given == stored:
        return True
    try:
        return bool(trial_batch) and with_batch(Space.from_config(given), trial_batch, "").to_config() == stored
    except SpaceError:
        return False


def memory_refusal(p, batch: int, allowance: float) -> str | None:
    """Why a genome (its `fernas.model.Plan`) cannot train within `allowance` bytes of host
    memory, or None."""
    from fernas.model import training_memory_bytes

    need = training_memory_bytes(p, batch)
    if need <= allowance:
        return None
    return (f"too large for host memory: training needs about {need / 2**30:.1f} GiB, a trial has about "
            f"{allowance / 2**30:.1f} GiB (Ray's memory of the cluster / trials at once)")


def run_trials(ev: Evolution, search_only: bool = False) -> list[dict]:
    """The trials this run trained (not those a warm start brought in); `search_only`: not the
    re-ranking's (the budgets count the search)."""
    return [t for e in ev.cache.values() for t in e.get("trials", [])
            if not t.get("from_run") and not (search_only and is_rerank(t))]


def trial_count(ev: Evolution, search_only: bool = False) -> int:
    """Trials this run has completed (not genomes refused untrained)."""
    return sum(1 for t in run_trials(ev, search_only) if t.get("status") != "skipped")


def total_compute(ev: Evolution, search_only: bool = False) -> int:
    """Training compute of the run's trials so far (images processed x multiply-adds)."""
    return sum(int(t.get("compute") or 0) for t in run_trials(ev, search_only))
