"""The search on Ray Tune: every never-seen genome of a GA generation is a short Ray Tune trial.

Ray is imported only inside this package, and only when a search runs (importing
`fernas.search` itself does not import Ray).  Modules, in the order of the data flow:

- `options`      EvolveOptions, the settings of a run (config.json "options")
- `trial`        `train_trial(genome, data, budget) -> outcome` (plain) and `run_trial` (Tune)
- `tune_adapter` the generational Searcher, the trial-error callback
- `tuner`        `fit`: the run's Tuners (a new one every `SEGMENT_TRIALS` trials), ASHA, resources
- `cluster`      starting or joining Ray, token auth, resources (Ray's private APIs: here and in `tuner`)
- `watchdog`     `TrialWatchdog`: ends a trial with no epoch within its time limit
- `rundir`       the run directory: config.json, trials.csv, logbook, hall of fame, plots
- `warm_start`   `--warm-start RUN_DIR`: an earlier run's hall of fame and reusable trials
- `leftovers`    the processes below a search, noted in OUT/.processes.json and ended by the
                 next search there when a kill left them running
- `start_notes`  the warning and hint lines a run says of itself as it starts or resumes
- `run`          `run_evolve`: the orchestration of all of the above
- `clock`        the search time `--time-budget` counts, kept where a kill does not lose it
- `next_steps`   the commands a run suggests (the `--resume` line after a stop; once finished,
                 its last lines and its report page)

The GA itself is `fernas.evolve` (no Ray); a trial's score is decided in `fernas.fitness`.
"""

from fernas.search.options import EvolveOptions


def run_evolve(*args, **kwargs):
    from fernas.search.run import run_evolve as _run

    return _run(*args, **kwargs)


__all__ = ["EvolveOptions", "run_evolve"]
