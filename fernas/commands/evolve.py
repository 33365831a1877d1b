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

from fernas.commands.common import DATA_KEYS, add_data_arguments, dataset_from_args
from fernas.commands.evolve_console import EvolveConsole
from fernas.errors import GenomeError, RunDirError, RunExistsError, UserError

DEFAULT_SEED_GLOB = "genomes/*.json"
DEFAULT_OUT = "runs/evolve-DATE-TIME"  # DATE-TIME is filled in when the run starts
# The trial recipe (--trial-batch, --trial-augment: their help gives the measurement).
DEFAULT_TRIAL_BATCH, DEFAULT_TRIAL_AUGMENT = 32, "none"
STRENGTHS = ("vgg", "mild", "none")  # fernas.augment.STRENGTHS, without importing torch to parse a command line


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
    _add_search_flags(p, GAConfig())
    _add_trial_flags(p, GAConfig())
    _add_budget_flags(p)
    _add_system_flags(p, EvolveOptions(out=""))
    p.set_defaults(func=run)


def _add_search_flags(p, d) -> None:
    from fernas.objectives import help_text

    g = p.add_argument_group("Search space")
    g.add_argument("--seed-genomes", default=DEFAULT_SEED_GLOB, metavar="GLOB",
                   help="genome files that seed the initial population (then random-search-space samples "
                        "of seeds 001/004, then uniform random genomes)")
    g.add_argument("--space", default=None, metavar="FILE",
                   help="search only inside this space file (YAML or JSON; `fernas space show` prints the "
                        "default one to edit): per gene fixed, choices or min/max. Seed designs outside it "
                        "are left out; the run keeps it (--resume refuses another)")
    g.add_argument("--warm-start", default=None, metavar="RUN_DIR",
                   help="start from a finished or stopped run: its hall of fame joins the initial population "
                        "and its trained genomes are not trained again (needs the same data, budgets, seed "
                        "and trainer; refused with the reason otherwise)")
    g.add_argument("--max-mmacs", type=float, default=d.max_mmacs, metavar="M",
                   help="genomes above this many million multiply-adds per 40x40 image get the penalty "
                        "without training; the initial population and random search sample below it (seed "
                        "designs above it are left out). The VGG seed has about 350, the 8-conv seed of 001 "
                        "about 1,770")
    g.add_argument("--max-cost", type=float, default=d.max_cost, metavar="M",
                   help="also refuse genomes above this many million multiply-add equivalents per image: "
                        "multiply-adds plus 100 per activation element, which a trial's time follows on CPUs "
                        "(depthwise and 1x1 convolutions on full-size maps are memory-bound); the seeds: "
                        "MobileNetV2-style about 98, VGG about 473 (0: no such cap)")

    g = p.add_argument_group("GA")
    g.add_argument("--strategy", choices=("ga", "random"), default=d.strategy,
                   help="ga: evolve; random: the random-search baseline of seeds 001/004 -- same initial "
                        "population, then every generation --pop fresh never-seen genomes from the same "
                        "distribution (seed designs aside), same trainer, trials and outputs; the GA flags "
                        "below are then unused")
    g.add_argument("--generations", type=int, default=d.generations,
                   help="generations including the initial population (at most pop x generations trials)")
    g.add_argument("--pop", type=int, default=d.pop, help="population size")
    g.add_argument("--objectives", default=",".join(d.objectives), help=help_text())
    g.add_argument("--crossover", type=float, default=d.cxpb, metavar="P",
                   help="probability that a pair of parents is recombined (two-point crossover)")
    g.add_argument("--mutation", type=float, default=d.mutpb, metavar="P",
                   help="probability that a child is mutated")
    g.add_argument("--gene-mutation", type=float, default=d.indpb, metavar="P",
                   help="per-gene probability that a mutated child's gene changes (see --mutation-operator)")
    g.add_argument("--mutation-operator", choices=("uniform", "creep"), default=d.mutation,
                   help="uniform: a mutated gene is redrawn uniformly; creep: half the time a step to a "
                        "neighbouring value (the next width, learning rate, batch size ...) instead; "
                        "either way a learning rate outside its optimizer's range is redrawn inside it")
    g.add_argument("--novel-offspring", action=argparse.BooleanOptionalAction, default=d.novel_offspring,
                   help="mutate every child that would train nothing new (a copy of a parent, a genome seen "
                        "before) until it is new and under --max-mmacs, so every child trains (pop - elite new "
                        "genomes a generation; pop with two objectives): local search around the selected "
                        "parents instead of idle slots")
    g.add_argument("--immigrants", type=float, default=d.immigrants, metavar="SHARE",
                   help="share of each generation's new genomes drawn uniformly from the search space "
                        "(never-seen, under the cost caps) instead of bred: exploration that children of a "
                        "weak generation lack; 0 = children only (unused by --strategy random)")
    g.add_argument("--tournament", type=int, default=d.tournsize, metavar="K",
                   help="tournament size (single objective)")
    g.add_argument("--elite", type=int, default=d.elite, metavar="N",
                   help="best genomes copied unchanged into the next generation (single objective; "
                        "NSGA-II is elitist by itself)")
    g.add_argument("--hall-of-fame", type=int, default=d.hof_size, metavar="N",
                   help="best genomes written to OUT/hall_of_fame/")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the GA and of every trial's training")


def _add_trial_flags(p, d) -> None:
    g = p.add_argument_group("Trials (budgets in epochs of the fast trainer, one crop per image)")
    g.add_argument("--min-budget", type=int, default=d.min_budget, metavar="E",
                   help="epochs every new genome trains first (measured on the 1,400-image demo data under a "
                        "60 M multiply-add cap: after 1-2 epochs nothing ranks genomes as 16 epochs do, after 4 "
                        "the validation loss does, Spearman 0.78; against 48 epochs under a 35 M cap nothing at 4 does, "
                        "0.04, at 16 it does, 0.82; one FER2013 epoch has 20 times the steps)")
    g.add_argument("--max-budget", type=int, default=d.max_budget, metavar="E",
                   help="epochs the best genomes of a generation reach; learning-rate schedules span this "
                        "many epochs, so a promoted genome continues the curve it was on. On the demo data the "
                        "order of genomes after 4-8 epochs predicts their order after 48 weakly, after 16 "
                        "well (README, 'Does a short budget predict the long one?'): bring it towards the "
                        "length the kept network will train when compute allows")
    g.add_argument("--eta", type=int, default=d.eta, metavar="K",
                   help="successive halving in each generation: the best 1/K of the genomes at a budget "
                        "continue (from their checkpoint) to K times the budget, up to --max-budget; selection "
                        "ranks by the largest budget reached, then accuracy there (accuracies at or below the "
                        "validation split's chance level tie; the lower validation loss wins). 1 = every genome "
                        "trains --max-budget epochs")
    g.add_argument("--rerank-top", type=int, default=d.rerank_top, metavar="K",
                   help="at the end, train the K best genomes --max-budget epochs again with other seeds; "
                        "best.json and the hall of fame's order come from the mean (0: no re-ranking)")
    g.add_argument("--rerank-seeds", type=int, default=d.rerank_seeds, metavar="S",
                   help="other seeds per re-ranked genome")
    g.add_argument("--epochs-per-trial", type=int, default=None, metavar="N",
                   help="one budget: every genome trains N epochs (= --min-budget N --max-budget N --eta 1; "
                        "overrides them)")
    g.add_argument("--max-steps-per-epoch", type=int, default=0, metavar="N",
                   help="cap on optimizer steps per trial epoch (0: whole epochs); for quick runs")
    g.add_argument("--trial-batch", type=int, default=DEFAULT_TRIAL_BATCH, metavar="B",
                   help="batch size of every fitness training (0: each genome's own). At the same images "
                        "a small batch makes more optimizer steps: on the demo data 4 epochs at batch 32 "
                        "without augmentation ranked 18 genomes as 48 epochs of their own recipe do with "
                        "Spearman 0.79, at their own batch with the VGG paper's augmentation 0.15 (13 of 18 "
                        "at chance). The search then does not choose the batch size: decode --train "
                        "trains the genome's own")
    g.add_argument("--trial-augment", default=DEFAULT_TRIAL_AUGMENT, choices=STRENGTHS,
                   help="augmentation of every fitness training (vgg: the paper's, as decode --train "
                        "trains; mild: seeds 001/004's; none)")
    g.add_argument("--asha", action="store_true",
                   help="Ray Tune's ASHA stops hopeless trials between epochs (ranked as fernas' promotions "
                        "rank: validation accuracy, ties up to the chance level broken by the validation "
                        "loss; needs one budget: --epochs-per-trial 2 or more)")
    g.add_argument("--asha-grace", type=int, default=None, metavar="E",
                   help="epochs every trial trains before ASHA's first cut (then at 2E, 4E, ... below "
                        "--epochs-per-trial; default half of it: on the demo data the ranking after 1 "
                        "epoch is noise, Spearman 0.26 against 16 epochs, 0.44 after 4, 0.83 after 8)")


def _add_budget_flags(p) -> None:
    g = p.add_argument_group("Budgets (end the search at its next safe point, outputs written; a --resume "
                             "with a larger one goes on)")
    g.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="start no trial after N (every kind, over all attempts of the run); running ones "
                        "finish")
    g.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="start no trial after this much search time (e.g. 90m, 2h, 1h30m, 1d; summed over "
                        "attempts, the time a killed run was down not counted)")
    g.add_argument("--max-compute", type=float, default=None, metavar="C",
                   help="start no trial once the completed trials have trained this much compute (images "
                        "processed x multiply-adds per image, trials.csv's `compute`, e.g. 2e12; over all "
                        "attempts); running ones finish, so the total ends somewhat above C")
    g.add_argument("--patience", type=int, default=None, metavar="G",
                   help="end the evolution after G generations without a better best; re-ranking then "
                        "runs as at the last generation")


def _add_system_flags(p, o) -> None:
    g = p.add_argument_group("Ray / System")
    g.add_argument("--gpus-per-trial", default="auto", metavar="G",
                   help="GPU share of a trial; auto = 0.25 (four trials per card) when the cluster has GPUs, "
                        "else 0 (CPUs)")
    g.add_argument("--cpus-per-trial", type=float, default=o.cpus_per_trial, metavar="N",
                   help="CPUs of a trial (also its torch threads)")
    g.add_argument("--max-concurrent", type=int, default=0, metavar="N",
                   help="trials at a time; 0 = as many as the resources hold")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="join an existing Ray cluster (auto | HOST:PORT | ray://HOST:10001) instead of "
                        "starting a local one")
    g.add_argument("--storage", default=None, metavar="PATH_OR_URI",
                   help="where Ray Tune keeps trial logs, None = OUT/ray; on a cluster a path every node "
                        "reaches or a cloud URI")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out (search settings come from its config.json)")
    g.add_argument("--no-dashboard", action="store_true",
                   help="start the local Ray without its dashboard")
    g.add_argument("--verbose", action="store_true", help="show Ray's own trial table and logs")
    g.add_argument("--trial-timeout", default="auto", metavar="T",
                   help="end a trial whose epoch takes longer than this (a deadlock, a stuck read) with a penalty "
                        "and the reason: a duration (20m, 600) per epoch; auto = 1 h for its first epoch, then 10x "
                        "its slowest epoch so far (at least 5 min); off = never")
    g.add_argument("--quiet", action="store_true",
                   help="only the per-generation lines: no live progress inside a generation (on stderr: "
                        "a bar on a terminal, a line every 30 s otherwise) and no line per failed trial")


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


def _rerank(args: argparse.Namespace) -> dict:
    _check(args.rerank_top >= 0, f"--rerank-top {args.rerank_top}: expected >= 0")
    _check(args.rerank_seeds >= 0, f"--rerank-seeds {args.rerank_seeds}: expected >= 0")
    return {"rerank_top": args.rerank_top, "rerank_seeds": args.rerank_seeds}


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
    from fernas.space import load_space

    return load_space(args.space).to_config() if args.space else None


def check_space(ga, path: str) -> None:
    """A space with no genome under the cost caps cannot start a search (one line, exit 2)."""
    from fernas.evolve.sampling import cheapest_in_space
    from fernas.space import SpaceError

    fits, cheapest = cheapest_in_space(ga)
    if not fits:
        caps = " and ".join(f"{f} {v:g}" for f, v in (("--max-mmacs", ga.max_mmacs), ("--max-cost", ga.max_cost)) if v)
        raise SpaceError(f"{path}: no genome of this space found under {caps} (the cheapest found: about "
                         f"{cheapest}); widen the space or raise the cap")


def options_from_args(args: argparse.Namespace):
    """Validate the flags (UserError, one line) and build EvolveOptions."""
    from fernas.evolve import GAConfig
    from fernas.objectives import parse_objectives
    from fernas.search import EvolveOptions

    _check(args.pop >= 2, f"--pop {args.pop}: need at least 2 genomes")
    _check(args.generations >= 1, f"--generations {args.generations}: need at least 1")
    try:
        objectives = parse_objectives(args.objectives)
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None
    for flag, v in (("--crossover", args.crossover), ("--mutation", args.mutation),
                    ("--gene-mutation", args.gene_mutation), ("--immigrants", args.immigrants)):
        _check(0.0 <= v <= 1.0, f"{flag} {v:g}: expected a probability in [0, 1]")
    _check(args.tournament >= 1, f"--tournament {args.tournament}: need at least 1")
    _check(0 <= args.elite < args.pop, f"--elite {args.elite}: expected 0 to pop-1 ({args.pop - 1})")
    _check(args.hall_of_fame >= 1, f"--hall-of-fame {args.hall_of_fame}: need at least 1")
    budgets = _budgets(args)
    _check(args.trial_batch >= 0, f"--trial-batch {args.trial_batch}: expected 0 (each genome's own) or a batch size")
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
                  novel_offspring=args.novel_offspring, immigrants=args.immigrants, **budgets, **_rerank(args),
                  space=_space(args), patience=args.patience or 0)
    if args.space or ga.max_cost:
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

    opts = options_from_args(args)
    files, docs = load_seed_genomes(args.seed_genomes)
    opts.seed_genomes = files
    console = EvolveConsole(quiet=args.quiet)
    if not args.resume:
        from fernas.evolve.sampling import admitted_seeds

        for doc, reason in admitted_seeds(opts.ga, docs)[1]:
            console.left_out(doc, reason)

    def load_data(resolved):  # on --resume the stored data flags win
        ns = argparse.Namespace(**vars(args))
        ns.data = resolved.data
        for k, v in resolved.data_args.items():
            setattr(ns, k, v)
        return dataset_from_args(ns)

    try:
        run_evolve(opts, load_data, docs, console)
    except RunExistsError as exc:
        raise RunDirError(f"{exc.path}: {exc.what}; pass --resume to continue that run or choose another --out") from None
    return 0
