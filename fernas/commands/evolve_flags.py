"""The flags of `fernas evolve`, in five groups (search space, GA, trials, budgets, Ray / system),
with their help.

`fernas.commands.evolve` registers the command with them and turns the parsed flags into a
run's options.  Nothing here imports torch or Ray: parsing a command line stays fast.
"""

from __future__ import annotations

import argparse

from fernas.commands import flag_types
from fernas.protocol import ProtocolConfig
from fernas.search.options import DEFAULT_TRIAL_AUGMENT, DEFAULT_TRIAL_BATCH

DEFAULT_SEED_GLOB = "genomes/*.json"
DEFAULT_OUT = "runs/evolve-DATE-TIME"  # DATE-TIME is filled in when the run starts
STRENGTHS = ("vgg", "mild", "none")  # fernas.augment.STRENGTHS, without importing torch to parse a command line


def add_search_flags(p, d) -> None:
    from fernas.objectives import help_text

    g = p.add_argument_group("Search space")
    g.add_argument("--seed-genomes", default=DEFAULT_SEED_GLOB, metavar="GLOB",
                   help="genome files that seed the initial population (then random-search-space samples "
                        "of seeds 001/004, then uniform random genomes)")
    g.add_argument("--space", default=None, metavar="FILE",
                   help="search only inside this space file (YAML or JSON; `fernas space show` prints the "
                        "default one to edit): per gene fixed, choices or min/max. Seed designs outside it "
                        "are left out; the run keeps it (--resume refuses another). Under a trial batch "
                        "the batch size is fixed to it as well")
    g.add_argument("--warm-start", default=None, metavar="RUN_DIR",
                   help="start from a finished or stopped run: its hall of fame joins the initial population "
                        "and its trained genomes are not trained again (needs the same data, budgets, trial "
                        "recipe, seed and trainer; refused with the reason otherwise)")
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
    g.add_argument("--seed", type=flag_types.seed, default=d.seed, help="seed of the GA and of every trial's training, -10**12 to 10**12 (torch and numpy take it modulo 2**32)")


def add_trial_flags(p, d) -> None:
    g = p.add_argument_group("Trials (budgets in epochs of the fast trainer, one crop per image)")
    g.add_argument("--min-budget", type=int, default=d.min_budget, metavar="E",
                   help="epochs every new genome trains first (measured on the 1,400-image demo data, each "
                        "genome's own recipe, 60 M multiply-add cap: after 1-2 epochs nothing ranks genomes as 16 "
                        "epochs do, after 4 the validation loss does, Spearman 0.78; against 48 epochs under a 35 M "
                        "cap nothing at 4 does, 0.04, at 16 it does, 0.82; 4 epochs of the default trial recipe "
                        "rank as 48 do at 0.79-0.86, see --trial-batch; one FER2013 epoch has 20 times the steps)")
    g.add_argument("--max-budget", type=int, default=d.max_budget, metavar="E",
                   help="epochs the best genomes of a generation reach; learning-rate schedules span this "
                        "many epochs, so a promoted genome continues the curve it was on. On the demo data, "
                        "trained with their own recipe, the order of genomes after 4-8 epochs predicts their "
                        "order after 48 weakly, after 16 well (README, 'Does a short budget predict the long "
                        "one?'): bring it towards the length the kept network will train when compute allows")
    g.add_argument("--eta", type=int, default=d.eta, metavar="K",
                   help="successive halving in each generation: the best 1/K of the genomes at a budget "
                        "continue (from their checkpoint) to K times the budget, up to --max-budget; selection "
                        "ranks by the largest budget reached, then accuracy there (accuracies at or below the "
                        "validation split's chance level tie; the lower validation loss wins). 1 = every genome "
                        "trains --max-budget epochs")
    g.add_argument("--rerank-top", type=int, default=d.rerank_top, metavar="K",
                   help="at the end, train the K best genomes --rerank-budget epochs again with other seeds; "
                        "best.json and the hall of fame's order come from the mean (0: no re-ranking)")
    g.add_argument("--rerank-seeds", type=int, default=d.rerank_seeds, metavar="S",
                   help="other seeds per re-ranked genome")
    g.add_argument("--rerank-recipe", choices=("own", "trial"), default="own",
                   help="how the re-ranking trains: own = the first --rerank-budget epochs of the genome's own recipe "
                        "as `fernas decode --train --epochs N --train-crops 1` trains it (its own batch size, the "
                        "VGG paper's augmentation after decode's warm-up: --rerank-warmup, the "
                        "schedule spanning N = --rerank-schedule epochs), so best.json is chosen by the recipe the "
                        "kept network trains with (trained 48+2, the best of the 4 finalists of 6 demo runs was "
                        "its choice in 5 after 8 epochs, 3 after 4 and 4 after 16, the trial recipe's in 1-2: "
                        "benchmarks/finalists.py, which reads those epochs from the same trainings whose test they "
                        "predict and so flatters them; on demo-hard it kept the best of 3 finalists in 13 of 20 trainings of 10 searches, "
                        "where `fernas decode --train --race 8` kept it in 17: README, \"Racing the "
                        "finalists\"); trial = the trial recipe of every other trial (--trial-batch, "
                        "--trial-augment)")
    g.add_argument("--rerank-warmup", type=int, default=ProtocolConfig.augment_warmup, metavar="W",
                   help="with --rerank-recipe own: epochs of augmentation warm-up of the re-ranking trainings, as "
                        "decode --train's --augment-warmup, so that they train the start of what decode --train "
                        "trains (the paper's augmentation ramps up from none over W epochs; 0: in full from the "
                        "first step). Measured, it changes little: on demo-hard faces both kept the same "
                        "picks, below the search's own choice; on demo faces the first 8 epochs ranked eleven "
                        "picks' 48+2 trainings at a Spearman of 0.47 with it and 0.59 without, a weak signal "
                        "either way (README, 'Searchers at equal compute')")
    g.add_argument("--rerank-schedule", type=int, default=None, metavar="N",
                   help="with --rerank-recipe own: the length of the schedule the re-ranking trains the start of "
                        "(the epochs you will train the kept network; none given: 48, or --rerank-budget when that is longer)")
    g.add_argument("--rerank-budget", type=int, default=None, metavar="E",
                   help="epochs of each re-ranking training (none given: with --rerank-recipe own 8, or the largest "
                        "budget when that is longer, the length whose validation accuracy chose best above; with "
                        "trial the largest budget, the only length it takes: its mean includes the genome's trial there)")
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
                        "at chance). The batch size is then not searched: every genome of the run (seed "
                        "designs too) has batch B, the one its fitness was measured at")
    g.add_argument("--trial-augment", default=DEFAULT_TRIAL_AUGMENT, choices=STRENGTHS,
                   help="augmentation of every fitness training (vgg: the paper's, which decode --train "
                        "reaches after its warm-up; mild: seeds 001/004's; none; no warm-up in either)")
    g.add_argument("--asha", action="store_true",
                   help="Ray Tune's ASHA stops hopeless trials between epochs (ranked as fernas' promotions "
                        "rank: validation accuracy, ties up to the chance level broken by the validation "
                        "loss; needs one budget: --epochs-per-trial 2 or more)")
    g.add_argument("--asha-grace", type=int, default=None, metavar="E",
                   help="epochs every trial trains before ASHA's first cut (then at 2E, 4E, ... below "
                        "--epochs-per-trial; default half of it: on the demo data, each genome's own recipe, the "
                        "ranking after 1 epoch is noise, Spearman 0.26 against 16 epochs, 0.44 after 4, 0.83 "
                        "after 8)")


def add_budget_flags(p) -> None:
    g = p.add_argument_group("Budgets (each ends the search: running trials finish, the re-ranking follows, "
                             "not counted; a --resume with a larger one goes on)")
    g.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="end the search after N of its trials (not the re-ranking's; over all attempts "
                        "of the run)")
    g.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="end the search after this much time (e.g. 90m, 2h, 1h30m, 1d; summed over "
                        "attempts, the time a killed run was down not counted; a kill loses at most its last "
                        "minute, kept in OUT/search_clock.json)")
    g.add_argument("--max-compute", type=float, default=None, metavar="C",
                   help="end the search once its completed trials have trained this much compute (images "
                        "processed x multiply-adds per image, trials.csv's `compute`, e.g. 2e12; over all "
                        "attempts); running ones finish, so the search ends somewhat above C")
    g.add_argument("--patience", type=int, default=None, metavar="G",
                   help="end the evolution after G generations without a better best; re-ranking then "
                        "runs as at the last generation. 0: never (given with --resume, a search that "
                        "patience ended goes on)")


def add_system_flags(p, o) -> None:
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
    g.add_argument("--auto-resume", type=int, default=0, metavar="N",
                   help="when the search process dies (a signal such as SIGKILL or SIGSEGV, an error after the run "
                        "started), start it again with --resume, up to N times; not after a finished run, bad "
                        "input or a stop asked for (Ctrl-C, SIGTERM, SIGHUP)")
    g.add_argument("--supervised-restarts", type=int, default=0, help=argparse.SUPPRESS)  # an --auto-resume attempt's
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
