"""`fernas evolve`: the genetic search on Ray Tune (`fernas.evolve` + `fernas.search`).

Parses and validates the flags, loads the seed genomes, calls `fernas.search.run_evolve`, and
prints what the run reports (`fernas.commands.evolve_console`).  Every mistake a user can make here ends in
one line and exit status 2.
"""

from __future__ import annotations

import argparse
import glob
import math
import time
from pathlib import Path

from fernas.commands import closed_output
from fernas.commands.common import DATA_KEYS, add_data_arguments, dataset_from_args
from fernas.commands.evolve_console import EvolveConsole
from fernas.errors import GenomeError, RunDirError, RunExistsError, UserError
from fernas.stop_signals import stopping_as_ctrl_c
from fernas.commands.evolve_flags import (DEFAULT_OUT, DEFAULT_SEED_GLOB, add_budget_flags, add_search_flags,
                                          add_system_flags, add_trial_flags)


def register(sub) -> None:
    from fernas.evolve import GAConfig
    from fernas.search import EvolveOptions

    p = sub.add_parser(
        "evolve", help="evolve genomes with a GA, training each new one briefly on Ray Tune workers",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="DEAP evolves genomes; every never-seen genome is trained for a few epochs in a Ray Tune "
                    "trial (a GPU share where there are GPUs, else CPUs); the best genomes are written as "
                    "files `fernas decode --train` takes. Resume a killed run with --out DIR --resume.")
    add_data_arguments(p)  # its own "data" group: --data, --labels, --skip-bad, --data-seed
    g = p.add_argument_group("Output")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="run directory (never overwritten without --resume)")
    add_search_flags(p, GAConfig())
    add_trial_flags(p, GAConfig())
    add_budget_flags(p)
    add_system_flags(p, EvolveOptions(out=""))
    p.set_defaults(func=run, command_parser=p)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise UserError(msg)


def _budgets(args: argparse.Namespace) -> dict:
    """GAConfig's budget fields from --min-budget/--max-budget/--eta or --epochs-per-trial."""
    if args.epochs_per_trial is not None:
        _check(args.epochs_per_trial >= 1, f"--epochs-per-trial {args.epochs_per_trial}: need at least 1")
        return {"min_budget": args.epochs_per_trial, "max_budget": args.epochs_per_trial, "eta": 1}
    _check(args.min_budget >= 1, f"--min-budget {args.min_budget}: need at least 1")
    _check(args.max_budget >= args.min_budget,
           f"--max-budget {args.max_budget}: must be at least --min-budget ({args.min_budget})")
    _check(args.eta >= 1, f"--eta {args.eta}: need at least 1")
    return {"min_budget": args.min_budget, "max_budget": args.max_budget, "eta": args.eta}


def rerank_settings(args: argparse.Namespace) -> dict:
    """GAConfig's re-ranking fields from the --rerank-* flags (their defaults resolved)."""
    _check(args.rerank_top >= 0, f"--rerank-top {args.rerank_top}: expected >= 0")
    _check(args.rerank_seeds >= 0, f"--rerank-seeds {args.rerank_seeds}: expected >= 0")
    _check(args.rerank_seeds > 0 or args.rerank_top == 0, f"--rerank-seeds 0: re-ranks nothing, which "
           f"contradicts --rerank-top {args.rerank_top}; give --rerank-top 0 to leave the re-ranking out")
    from fernas.evolve import GAConfig
    from fernas.evolve.config import OWN_RERANK_EPOCHS

    top = args.epochs_per_trial or args.max_budget
    own = args.rerank_recipe == "own"
    epochs = args.rerank_budget
    if epochs is None:  # own: the measured length, or the largest budget when longer; trial: the largest budget
        epochs = max(OWN_RERANK_EPOCHS, top) if own else top
    _check(epochs >= 1, f"--rerank-budget {epochs}: expected at least 1 epoch")
    _check(own or epochs == top, f"--rerank-budget {epochs}: with --rerank-recipe trial the re-ranking trains the "
                                 f"largest budget ({top} epochs), its mean includes the genome's trial there")
    _check(args.rerank_warmup >= 0, f"--rerank-warmup {args.rerank_warmup}: expected >= 0")
    schedule = args.rerank_schedule or max(GAConfig.rerank_schedule, epochs)
    _check(schedule >= epochs, f"--rerank-schedule {schedule}: expected at least the re-ranking's {epochs} epochs")
    return {"rerank_top": args.rerank_top, "rerank_seeds": args.rerank_seeds, "rerank_recipe": args.rerank_recipe,
            "rerank_schedule": schedule, "rerank_budget": epochs, "rerank_warmup": args.rerank_warmup if own else 0}


def _budget_stops(args: argparse.Namespace) -> dict:
    """--max-trials, --time-budget, --max-compute, --patience (None where not given: on --resume
    the run's stay)."""
    from fernas.runinfo import parse_duration

    _check(args.max_trials is None or args.max_trials >= 1, f"--max-trials {args.max_trials}: need at least 1")
    _check(args.patience is None or args.patience >= 0, f"--patience {args.patience}: expected >= 0")
    seconds = None
    if args.time_budget is not None:
        try:
            seconds = parse_duration(args.time_budget)
        except ValueError:
            raise UserError(f"--time-budget {args.time_budget!r}: expected a duration such as 90m, 2h, 1h30m, "
                            "1d or seconds") from None
        _check(seconds > 0, f"--time-budget {args.time_budget}: expected more than 0")
    _check(args.max_compute is None or (math.isfinite(args.max_compute) and args.max_compute > 0),
           f"--max-compute {args.max_compute}: expected images x multiply-adds above 0, e.g. 2e12")
    return {"max_trials": args.max_trials, "time_budget": seconds, "max_compute": args.max_compute,
            "patience": args.patience}


def _trial_timeout(text: str) -> float | None:
    """--trial-timeout: auto -> 0 (from each trial's speed), off -> None, else seconds per epoch."""
    from fernas.runinfo import parse_duration

    if text in ("auto", "off"):
        return 0.0 if text == "auto" else None
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise UserError(f"--trial-timeout {text!r}: expected auto, off or a duration such as 20m or 600") from None
    _check(seconds > 0, f"--trial-timeout {text}: expected more than 0 (off turns it off)")
    return seconds


def _space(args: argparse.Namespace) -> dict | None:
    """The run's search space: the --space file's (None: the full space), its batch size fixed
    to --trial-batch when given (`space.with_batch`)."""
    from fernas.space import Space, load_space, with_batch

    space = load_space(args.space) if args.space else Space.full()
    if args.trial_batch and not args.resume:  # a resume keeps the stored run's (run._resolve compares)
        space = with_batch(space, args.trial_batch, args.space or "the full search space")
    return space.to_config()


def check_space(ga, path: str) -> None:
    """A space with no genome under the cost caps cannot start a search (one line, exit 2)."""
    from fernas.evolve.sampling import cheapest_in_space
    from fernas.space import SpaceError

    fits, cheapest = cheapest_in_space(ga, draws=0)  # the greedy descent alone: milliseconds
    if not fits:
        fits, cheapest = cheapest_in_space(ga)
    if not fits:
        caps = " and ".join(f"{f} {v:g}" for f, v in (("--max-mmacs", ga.max_mmacs), ("--max-cost", ga.max_cost)) if v)
        raise SpaceError(f"{path}: no genome of this space found under {caps} (the cheapest found: about "
                         f"{cheapest}); widen the space or raise the cap")


# Flags of the machine rather than the run: a resume takes them from its own command line.
MACHINE_FLAGS = ("--address", "--storage", "--gpus-per-trial", "--cpus-per-trial", "--max-concurrent",
                 "--trial-timeout", "--no-dashboard", "--verbose", "--quiet")


def machine_flags(args: argparse.Namespace) -> list[str]:
    """The machine's flags this command line set, to repeat in the command that goes on."""
    flags = []
    for action in args.command_parser._actions:
        flag, value = (action.option_strings or [None])[0], getattr(args, action.dest, None)
        if flag in MACHINE_FLAGS and value != action.default:
            flags += [flag] if value is True else [flag, str(value)]
    return flags


def options_from_args(args: argparse.Namespace):
    """Validate the flags (UserError, one line) and build EvolveOptions."""
    from fernas.evolve import GAConfig
    from fernas.objectives import parse_objectives
    from fernas.search import EvolveOptions

    _check(args.pop >= 2, f"--pop {args.pop}: need at least 2 genomes")
    _check(args.auto_resume >= 0, f"--auto-resume {args.auto_resume}: expected >= 0")
    _check(args.generations >= 1, f"--generations {args.generations}: need at least 1")
    try:
        objectives = parse_objectives(args.objectives)
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None
    for flag, v in (("--crossover", args.crossover), ("--mutation", args.mutation),
                    ("--gene-mutation", args.gene_mutation), ("--immigrants", args.immigrants)):
        _check(0.0 <= v <= 1.0, f"{flag} {v:g}: expected a probability in [0, 1]")
    _check(args.tournament >= 1, f"--tournament {args.tournament}: need at least 1")
    typed = any(a == "--elite" or a.startswith("--elite=") for a in getattr(args, "argv", []))
    _check(0 <= args.elite < args.pop, f"--elite {args.elite}{'' if typed else ' (its default)'}: expected 0 "
           f"to pop-1 ({args.pop - 1}) with --pop {args.pop}; give --elite {max(0, args.pop - 1)} or a larger --pop")
    _check(args.hall_of_fame >= 1, f"--hall-of-fame {args.hall_of_fame}: need at least 1")
    _check(args.resume or len(objectives) > 1 or args.rerank_top <= args.hall_of_fame,  # a resume keeps the run's; two
           # objectives keep the whole front
           f"--rerank-top {args.rerank_top}: the re-ranking takes the best of the hall of fame, which keeps "
           f"{args.hall_of_fame} (--hall-of-fame); give --hall-of-fame {args.rerank_top} or more")
    budgets = _budgets(args)
    _check(args.max_steps_per_epoch >= 0, f"--max-steps-per-epoch {args.max_steps_per_epoch}: expected >= 0")
    _check(args.max_mmacs > 0, f"--max-mmacs {args.max_mmacs:g}: expected > 0")
    _check(args.max_cost >= 0, f"--max-cost {args.max_cost:g}: expected >= 0 (0: no such cap)")
    _check(args.cpus_per_trial > 0, f"--cpus-per-trial {args.cpus_per_trial:g}: expected > 0")
    _check(args.max_concurrent >= 0, f"--max-concurrent {args.max_concurrent}: expected >= 0")
    if args.gpus_per_trial != "auto":
        try:
            gpt = float(args.gpus_per_trial)
        except ValueError:
            raise UserError(f"--gpus-per-trial {args.gpus_per_trial!r}: expected auto or a number") from None
        _check(gpt >= 0, f"--gpus-per-trial {gpt:g}: expected >= 0")
        _check(gpt <= 1 or gpt == int(gpt), f"--gpus-per-trial {gpt:g}: a share above 1 must be whole")
    if args.resume:
        _check(args.out != DEFAULT_OUT, "--resume needs --out DIR (the run to continue)")
    _check(not args.asha or (args.epochs_per_trial or 0) >= 2,
           "--asha needs one budget of 2 or more epochs (--epochs-per-trial N): it stops trials between epochs")
    asha_grace = _asha_grace(args)
    out = args.out.replace("DATE-TIME", time.strftime("%Y%m%d-%H%M%S")) if args.out == DEFAULT_OUT else args.out
    budget_stops = _budget_stops(args)
    ga = GAConfig(pop=args.pop, generations=args.generations, cxpb=args.crossover, mutpb=args.mutation,
                  indpb=args.gene_mutation, tournsize=args.tournament, elite=args.elite,
                  hof_size=args.hall_of_fame, objectives=objectives, seed=args.seed,
                  strategy=args.strategy, max_mmacs=args.max_mmacs, max_cost=args.max_cost,
                  mutation=args.mutation_operator,
                  novel_offspring=args.novel_offspring, immigrants=args.immigrants, **budgets, **rerank_settings(args),
                  space=_space(args), patience=args.patience or 0)
    if args.space or ga.max_cost or ga.max_mmacs:
        check_space(ga, args.space or "the full search space")
    data_args = {k: getattr(args, k) for k in DATA_KEYS if k != "data"}
    return EvolveOptions(
        space_file=args.space, warm_start=args.warm_start, **budget_stops,
        out=out, ga=ga, data=args.data, data_args=data_args, max_steps_per_epoch=args.max_steps_per_epoch,
        seed_genomes=[], gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        max_concurrent=args.max_concurrent, address=args.address, storage=args.storage, resume=args.resume,
        dashboard=not args.no_dashboard, asha=args.asha, asha_grace=asha_grace, verbose=args.verbose,
        trial_timeout=_trial_timeout(args.trial_timeout), trial_batch=args.trial_batch,
        trial_augment=args.trial_augment)


def default_asha_grace(epochs: int) -> int:
    """Half the one budget: an earlier cut ranks trials still at chance (--asha-grace's help)."""
    return max(1, epochs // 2)


def _asha_grace(args) -> int:
    """ASHA's grace period in epochs (0 without --asha): the flag's, or half of the one budget."""
    _check(args.asha or args.asha_grace is None, f"--asha-grace {args.asha_grace}: only with --asha")
    if not args.asha:
        return 0
    if args.asha_grace is None:
        return default_asha_grace(args.epochs_per_trial)
    _check(1 <= args.asha_grace < args.epochs_per_trial,
           f"--asha-grace {args.asha_grace}: expected 1 to {args.epochs_per_trial - 1} "
           f"(below --epochs-per-trial {args.epochs_per_trial}, or ASHA never cuts)")
    return args.asha_grace


def packaged_seed_files() -> list[str]:
    """The seed designs shipped with the package (genomes/ is installed as fernas/seed_genomes);
    in a source checkout (editable install) the repository's genomes/ next to fernas/."""
    pkg = Path(__file__).resolve().parents[1]
    return (sorted(glob.glob(str(pkg / "seed_genomes" / "*.json")))
            or sorted(glob.glob(str(pkg.parent / DEFAULT_SEED_GLOB))))


def load_seed_genomes(pattern: str) -> tuple[list[str], list[dict]]:
    """Every file the glob names, validated (GenomeError names a file that does not parse)."""
    from fernas.genome import load_genome

    files = sorted(glob.glob(pattern))
    if not files and pattern == DEFAULT_SEED_GLOB:
        files = packaged_seed_files()  # run from outside the repository
    elif not files and pattern:
        raise UserError(f"--seed-genomes {pattern}: no file matches")
    docs = []
    for f in files:
        try:
            docs.append(load_genome(f))
        except GenomeError as exc:
            raise GenomeError(f"--seed-genomes: {exc}") from None
    return files, docs


def run(args: argparse.Namespace) -> int:
    from fernas.search import run_evolve
    from fernas.space import at_batch

    opts = options_from_args(args)
    files, docs = load_seed_genomes(args.seed_genomes)
    from fernas.commands.evolve_auto_resume import run_with_restarts
    from fernas.search.next_steps import continue_command

    go_on = continue_command(opts.out, args.auto_resume or args.supervised_restarts, machine_flags(args))
    if args.auto_resume:  # the flags are checked above, once; each attempt runs in a child process
        run_with_restarts(args.argv, opts.out, args.auto_resume, args.resume, go_on)  # does not return
    opts.seed_genomes = files
    console = EvolveConsole(quiet=args.quiet)
    console.go_on = go_on
    if args.resume:
        from fernas.commands.evolve_resume_flags import settings_of_typed_flags

        console.flag_settings = settings_of_typed_flags(args, options_from_args)
    else:
        docs = at_batch(docs, opts.trial_batch)  # as the run will search them (their batch fixed to the trial's)
        from fernas.evolve.sampling import admitted_seeds

        console.left_out_seeds = admitted_seeds(opts.ga, docs)[1]  # said as the run starts, after every check

    def load_data(resolved):  # on --resume the stored data flags win
        ns = argparse.Namespace(**vars(args))
        ns.data = resolved.data
        for k, v in resolved.data_args.items():
            setattr(ns, k, v)
        return dataset_from_args(ns)

    try:
        with stopping_as_ctrl_c():  # a scheduler's SIGTERM, a closed terminal's SIGHUP
            run_evolve(opts, load_data, docs, console)
    except RunExistsError as exc:
        raise RunDirError(f"{exc.path}: {exc.what}; pass --resume to continue that run or choose another --out") from None
    except KeyboardInterrupt:
        if console.output.closed:  # the search stopped because nobody reads its lines (already said)
            return closed_output.STATUS
        raise
    return 0
