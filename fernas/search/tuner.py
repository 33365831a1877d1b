"""Ray Tune's runs of a search: `fit` runs the run's trials through Tuners (one per
`SEGMENT_TRIALS` trials or so, each with the run's `GenerationalSearcher`), with the trials'
resource requests and the `--asha` scheduler.

A Tuner keeps every trial it ran in the driver's memory (about 100 KB each) and writes them
all to its experiment state every 10 s, copying the experiment's folder to the storage each
time: at thousands of trials, hundreds of MB every 10 s, for as long as the search runs.  A new
Tuner at the GA's first batch (a rung, a generation or the re-ranking: nothing runs then)
after `SEGMENT_TRIALS` trials bounds both; it costs a
few seconds (its trial actors start again) once per that many trials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from fernas.search.cluster import keep_idle_actors
from fernas.search.trial import TrialBudget, run_trial, trial_gpus
from fernas.search import tune_adapter
from fernas.search.tune_adapter import GenerationalSearcher, TrialEvents, trial_name


def trial_resources(cpt: float, gpt: float, alone: bool):
    """A trial's resource request: its share, or a whole GPU for an out-of-memory retry."""
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    return resource_dict_to_pg_factory({"cpu": cpt, "gpu": trial_gpus(gpt, alone)})


class SearchASHA(ASHAScheduler):
    """Ray Tune's ASHA for the search's trials; a re-ranking trial of the genome's own recipe
    trains its whole budget and stays out of the rungs: they hold trial-recipe results, and an
    own-recipe training (augmented, slower to leave chance) would be cut by a comparison of
    two recipes."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.config.get("recipe") == "own":
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.config.get("recipe") == "own":
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)


def asha_scheduler(opts) -> ASHAScheduler | None:
    """Ray Tune's ASHA for `--asha` (one budget of 2+ epochs): rungs at the grace period and its
    doublings below the budget, cutting on `rank_score`; None without it."""
    ga = opts.ga
    if not (opts.asha and len(ga.rungs) == 1 and ga.max_budget > 1):
        return None
    return SearchASHA(metric="rank_score", mode="max", time_attr="training_iteration",
                         max_t=ga.max_budget, grace_period=opts.asha_grace, reduction_factor=2)


@contextlib.contextmanager
def _own_ctrl_c(events: TrialEvents):
    """The SIGINT handler before the Tuner, back after it: Tune installs one that ends its run and
    leaves it behind, where it would swallow a Ctrl-C (or SIGTERM, fernas.stop_signals) while
    the run's files are written.  Whether Tune's fired is kept in `events.stopped` first."""
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if before is not None and threading.current_thread() is threading.main_thread():
            # the handler this replaces tells whether Tune's fired (it puts `before` back when it
            # does): read in the same call, so no signal falls between the check and the restore
            events.stopped = events.fired(signal.signal(signal.SIGINT, before))


def fit(run, data, cpt: float, gpt: float, slots: int, storage: str, exp_name: str) -> None:
    """The run's trials until the GA is done: one Tuner per `SEGMENT_TRIALS` trials or so (a new
    one at the GA's first batch after that many), named EXP_NAME, EXP_NAME.2, ..."""
    opts = run.opts
    if not opts.verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)
    searcher = GenerationalSearcher(run, gpus_per_trial=gpt)
    ga = opts.ga
    budget = TrialBudget(epochs=ga.max_budget, schedule_epochs=ga.max_budget, max_steps_per_epoch=opts.max_steps_per_epoch,
                         seed=ga.seed, threads=max(1, int(cpt)), gpus=gpt, timeout=opts.trial_timeout,
                         markers=str((run.out / "stuck").resolve()),  # OUT: every node's storage
                         chance=run.chance, batch=opts.trial_batch, augment=opts.trial_augment)
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, budget=budget),  # the data put once
                                    lambda config: trial_resources(cpt, gpt, bool(config.get("alone"))))
    scheduler = asha_scheduler(opts)  # one for all Tuners: its rungs compare every trial of the run
    segment = 1
    while True:
        events = TrialEvents(searcher)
        name = exp_name if segment == 1 else f"{exp_name}.{segment}"
        try:
            if segment > 1:
                run.console.new_tuner(f"{storage.rstrip('/')}/{name}", tune_adapter.SEGMENT_TRIALS)
            _fit_one(trainable, searcher, events, scheduler, opts, slots, storage, name)
            if searcher.failure is not None:  # kept from a callback after the searcher had finished
                raise searcher.failure
            if events.stopped or run.console.output.closed or not searcher.next_tuner():
                break
        except KeyboardInterrupt:  # a stop outside Tune's handler (between Tuners, a second Ctrl-C):
            break  # the run stops as on Ctrl-C (`run._search`)
        segment += 1
    with contextlib.suppress(OSError):  # the watchdogs' folder, when none left a marker there
        (run.out / "stuck").rmdir()


def _fit_one(trainable, searcher: GenerationalSearcher, events: TrialEvents, scheduler, opts, slots: int,
             storage: str, name: str) -> None:
    """One Tuner: trials until the searcher says FINISHED (the GA done, or a batch held for the
    next Tuner), or a stop."""
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=slots, trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name,
                                    reuse_actors=True),  # an actor per slot, reused: no process start per trial
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=2 if opts.verbose else 0,
                                  callbacks=[events],
                                  failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    # Tune prints its experiment banner whatever `verbose` says; keep stdout for our lines.
    # With --verbose its lines (and the workers' forwarded logs) pass the console's guard.
    with contextlib.ExitStack() as stack:
        stack.enter_context(keep_idle_actors(slots))
        stack.enter_context(_own_ctrl_c(events))
        stdout = stack.enter_context(open(os.devnull, "w")) if not opts.verbose else searcher.run.console.stream
        stack.enter_context(contextlib.redirect_stdout(stdout))
        tuner.fit()
