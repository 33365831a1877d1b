"""The settings of one `fernas evolve` run (written to its config.json as "options")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fernas.data_spec import DATA_DEFAULTS_OF_OLDER_RUNS
from fernas.evolve import GAConfig

# Settings of the machine rather than the search: on --resume they come from the new command
# line, every other setting from the run's config.json (so the run decides as it began).
SYSTEM_SETTINGS = ("address", "storage", "gpus_per_trial", "cpus_per_trial", "max_concurrent", "dashboard",
                   "verbose", "trial_timeout")
BUDGET_SETTINGS = ("max_trials", "time_budget", "max_compute", "patience")
# The trial recipe of a new run (`fernas evolve --trial-batch/--trial-augment`): every fitness
# training at batch 32 without augmentation (benchmarks/trial_variants.py measured why).  A run
# stored without it trained each genome's own batch with the VGG paper's augmentation.
DEFAULT_TRIAL_BATCH, DEFAULT_TRIAL_AUGMENT = 32, "none"
STORED_TRIAL_RECIPE = (0, "vgg")


def stored_recipe(options: dict) -> tuple[int, str]:
    """(trial batch, augmentation) of a run's stored options (config.json "options")."""
    return (int(options.get("trial_batch", STORED_TRIAL_RECIPE[0])),
            options.get("trial_augment", STORED_TRIAL_RECIPE[1]))


def recipe_text(batch: int, augment: str) -> str:
    """A trial recipe in words (console, report, warm-start refusals)."""
    size = f"batch {batch}" if batch else "each genome's own batch"
    return f"{size}, augmentation {augment}"


def flat_settings(opts: "EvolveOptions") -> dict:
    """`opts` as {"data": ..., "ga.pop": ..., "data_args.data_seed": ...}: its nested settings spelled out."""
    flat = {}
    for k, v in asdict(opts).items():
        if k in ("ga", "data_args"):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    return flat


def flags_not_taken(flag_settings: dict[str, list[str]], given: "EvolveOptions", kept: "EvolveOptions") -> list[str]:
    """Those flags (`flag_settings`: flag -> the settings it sets) whose settings differ between
    `given` (a resume's command line) and `kept` (the run's own, which it resumes with)."""
    a, b = flat_settings(given), flat_settings(kept)
    return [flag for flag, keys in flag_settings.items() if any(a.get(k) != b.get(k) for k in keys)]


@dataclass
class EvolveOptions:
    out: str
    ga: GAConfig = field(default_factory=GAConfig)
    data: str = "demo"
    data_args: dict = field(default_factory=dict)  # what fernas.data needs besides the source
    max_steps_per_epoch: int = 0  # 0 = whole epochs
    seed_genomes: list[str] = field(default_factory=list)  # resolved files
    gpus_per_trial: str = "auto"  # "auto": a quarter card where there are GPUs, else none
    cpus_per_trial: float = 1.0  # also the trial's torch threads
    max_concurrent: int = 0  # 0 = as many trials as the resources hold
    address: str | None = None  # an existing Ray cluster; None = a fresh local Ray
    storage: str | None = None  # Tune's trial logs; None = OUT/ray
    resume: bool = False
    dashboard: bool = True
    asha: bool = False  # Ray Tune's ASHA stops hopeless trials between epochs
    asha_grace: int = 1  # epochs before ASHA's first cut (a run stored without it ran with Ray's default, 1)
    # The trial recipe (`TrialBudget.batch`, `.augment`); a run stored without it ran with these.
    trial_batch: int = 0  # 0 = each genome's own batch size
    trial_augment: str = "vgg"
    verbose: bool = False
    max_failures: int = 1  # Tune's retries of a trial whose worker died
    trial_timeout: float | None = 0.0  # seconds an epoch may take; 0 = from the trial's speed; None = off
    space_file: str | None = None  # where the space (ga.space) was read from, for the record
    warm_start: str | None = None  # the run whose hall of fame and fitness cache this one started from
    # Budgets that end the search (None/0: none; the re-ranking follows, not counted).  On
    # --resume the ones the new command line gives replace the stored ones (a larger budget
    # reopens a search it ended).
    max_trials: int | None = None  # the search's trials started, over all attempts
    time_budget: float | None = None  # seconds of search, summed over attempts
    max_compute: float | None = None  # training compute (images x multiply-adds) of the search's completed trials
    patience: int | None = None  # the command line's --patience (the GA keeps it in ga.patience)

    @classmethod
    def from_stored(cls, stored: dict, cli: "EvolveOptions") -> "EvolveOptions":
        """The stored run's settings, with the machine's settings from the new command line."""
        o = dict(stored)
        o["ga"] = GAConfig(**o["ga"])
        o["data_args"] = {**DATA_DEFAULTS_OF_OLDER_RUNS, **o.get("data_args", {})}
        opts = cls(**o)
        for k in SYSTEM_SETTINGS:
            setattr(opts, k, getattr(cli, k))
        for k in BUDGET_SETTINGS:
            if getattr(cli, k) is not None:
                setattr(opts, k, getattr(cli, k))
        opts.resume, opts.out = True, cli.out
        return opts
