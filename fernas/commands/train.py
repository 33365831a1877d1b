"""`fernas train GENOME.json...`: the full training protocol of seeds 000/002 (Khaireddin &
Chen's VGG paper, `fernas.fulltrain`) for each genome, one run directory each.

`fernas decode GENOME.json --train` takes the same flags (`add_train_arguments`) and runs the
same code (`run_training`).  The flags' defaults are `fernas.fulltrain.ProtocolConfig`'s.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields

from fernas.commands import flag_types
from fernas.commands.common import DATA_KEYS, add_data_arguments, dataset_from_args, device_from_args
from fernas.data_spec import DATA_DEFAULTS_OF_OLDER_RUNS
from fernas.errors import RunDirError, RunExistsError, UserError
from fernas.protocol import ProtocolConfig
from fernas.race import check_race, stored_race
from fernas.stop_signals import stopping_as_ctrl_c

_D = ProtocolConfig()

# (flags, add_argument keywords) of the protocol's flags, in --help order.
TRAIN_FLAGS = [
    (("--epochs",), dict(type=int, default=_D.epochs, help="training epochs")),
    (("--fine-tune-epochs",), dict(type=int, default=_D.fine_tune_epochs,
                                   help="epochs of fine-tuning from the best weights at lr 1e-4 with cosine "
                                        "annealing (0: none)")),
    (("--train-crops",), dict(type=int, choices=(1, 10), default=_D.train_crops,
                              help="crops per training image and step: 10 = all ten crops (the paper's code), "
                                   "1 = one random crop")),
    (("--val-crops",), dict(type=int, choices=(1, 10), default=_D.val_crops,
                            help="crops per validation image; unset: as --train-crops")),
    (("--merge-val",), dict(action="store_true", default=_D.merge_val,
                            help="fine-tune on train+val (the paper's best setting); the last fine-tuned "
                                 "weights are tested")),
    (("--augment",), dict(choices=("vgg", "mild", "none"), default=_D.augment,
                          help="training augmentation: vgg (seeds 000/002), mild (seeds 001/004), none")),
    (("--augment-warmup",), dict(type=int, default=_D.augment_warmup, metavar="N",
                                 help="epochs over which the augmentation's probabilities rise from 0 (random "
                                      "crop and mirror only; epoch e of N at (e-1)/N) to --augment's from epoch N+1, whatever "
                                      "--epochs; fine-tuning has none; 0: the paper's "
                                      "protocol, full augmentation from the first step (some strongly "
                                      "regularised genomes then stay near chance for tens of epochs)")),
    (("--batch-size",), dict(type=int, default=_D.batch_size,
                             help="images per step; unset: the genome's batch size")),
    (("--out",), dict(default=None, help="run directory (several genomes: one sub-directory each); "
                                         "unset: a new directory under runs/")),
    (("--race",), dict(type=int, default=0, metavar="N",
                       help="with several genomes (a search's finalists): train each the first N epochs of "
                            "the protocol, then only the one with the best validation accuracy after epoch N "
                            "goes on to the end, continued from its checkpoint (the others keep theirs); "
                            "the race costs (genomes - 1) x N epochs more than one training. 8 (the warm-up's "
                            "length) kept the best of three finalists in 17 of 20 trainings (10 searches on "
                            "demo-hard at --epochs 48, two training seeds each); the re-ranking 13 of 20 "
                            "(docs/search_experiments.md, \"Racing the finalists\"). 0: every genome trained "
                            "fully, then compared")),
    (("--seed",), dict(type=flag_types.seed, default=_D.seed, help="seeds python, numpy and torch, -10**12 to 10**12 (torch and numpy take it modulo 2**32)")),
    (("--device",), dict(default=_D.device, help="auto, cpu or cuda")),
    (("--precision",), dict(choices=("auto", "bf16", "fp32"), default=_D.precision,
                            help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32")),
    (("--resume",), dict(action="store_true", help="continue the run in --out from its last checkpoint")),
]

# Settings that define a run: on --resume they come from the run's config.json, so a resumed
# run trains on the same data with the same protocol whatever the command line says now.
# The device is not one of them: a run may continue on another machine.
RESUME_KEYS = DATA_KEYS + tuple(f.name for f in fields(ProtocolConfig) if f.name != "device")


def add_train_arguments(parser: argparse.ArgumentParser, *, switch: bool = False) -> list[tuple[str, str, object]]:
    """Add the data and protocol flags (and with `switch`, decode's `--train`) to `parser`.

    Returns (flag, dest, default) of each flag added other than `--train`, in order, so a host
    command can refuse those given without `--train`.
    """
    g = parser.add_argument_group("Training (with --train): protocol of seeds 000/002" if switch
                                  else "Training: protocol of seeds 000/002")
    if switch:
        g.add_argument("--train", action="store_true",
                       help="fully train each genome, fine-tune, test with ten-crop, write a run directory")
    add_data_arguments(parser)
    added = [("--" + k.replace("_", "-"), k, parser.get_default(k)) for k in DATA_KEYS]
    for flags, kw in TRAIN_FLAGS:
        action = g.add_argument(*flags, **kw)
        added.append((action.option_strings[0], action.dest, action.default))
    return added


def register(sub) -> None:
    p = sub.add_parser("train", help="fully train genomes (protocol of seeds 000/002), test with ten-crop",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("genomes", nargs="+", metavar="GENOME.json", help="one or more genome files")
    add_train_arguments(p)
    p.set_defaults(func=lambda args: run_training(args, "fernas train"), command_parser=p)


def _jsonable(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "argv", "command_parser") and not k.startswith("_") and not callable(v)}


def _shown(value) -> str:
    """A stored setting as a flag's value reads: None is unset, a switch on or off."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _refuse_unlike_runs(args: argparse.Namespace, runs: list) -> None:
    """Every genome of a multi-genome resume must have been trained with the settings the resume
    uses (the first run's, where it recorded them, else this command line's): a finished one with
    others would enter the comparison as if trained alike."""
    (first, stored), later = runs[0], runs[1:]
    used = {k: stored[k] if k in stored else getattr(args, k, None) for k in RESUME_KEYS}
    for d, other in later:
        differ = [k for k in RESUME_KEYS if k in other and other[k] != used[k]]
        if differ:
            k, more = differ[0], f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
            source = first / "config.json" if k in stored else "this command line"
            raise UserError(f"{d / 'config.json'}: trained with --{k.replace('_', '-')} {_shown(other[k])}, not "
                            f"{_shown(used[k])} as {source}{more}; resume each genome on its own "
                            f"(--out DIR/NAME --resume)")


def _restore_run_settings(args: argparse.Namespace, dirs) -> None:
    """On --resume: the run's stored settings replace this command line's (a note says which)."""
    from fernas.fulltrain import stored_settings

    runs = [(d, {**DATA_DEFAULTS_OF_OLDER_RUNS, **s}) for d in dirs if (s := stored_settings(d)) is not None]
    if not runs:
        return
    _refuse_unlike_runs(args, runs)
    first, stored = runs[0]
    typed = _typed(args)
    changed = [typed[k] for k in RESUME_KEYS if k in stored and k in typed and getattr(args, k, None) != stored[k]]
    for k in RESUME_KEYS:
        if k in stored:
            setattr(args, k, stored[k])
    if changed:
        print(f"resuming {first} with its stored settings ({', '.join(changed)} from config.json, not from this "
              "command line)", file=sys.stderr)


def _typed(args: argparse.Namespace) -> dict[str, str]:
    """The flags the command line typed (destination -> option as typed); every setting's flag
    when `args` did not come from a command line."""
    from fernas.commands.typed_flags import typed_flags

    if not hasattr(args, "command_parser"):
        return {k: "--" + k.replace("_", "-") for k in RESUME_KEYS}
    return typed_flags(args.command_parser, args.argv[1:])


def _restore_race(args: argparse.Namespace, base) -> None:
    """On --resume of a race: its epochs come from base/race.json, as the protocol's settings
    come from config.json (a note says when the command line differs)."""
    race = stored_race(base) if base is not None else None
    if race is None:
        return
    if args.race not in (0, race["epochs"]):
        print(f"resuming the race in {base} after epoch {race['epochs']} as race.json records "
              f"(not --race {args.race} from this command line)", file=sys.stderr)
    args.race = race["epochs"]


def run_training(args: argparse.Namespace, command: str) -> int:
    """Check the flags, restore a resumed run's settings, then train every genome in turn."""
    from fernas import train_several
    from fernas.genome import load_genome

    docs = [load_genome(p) for p in args.genomes]
    for flag in ("epochs", "fine_tune_epochs", "augment_warmup"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 0")
    if args.epochs + args.fine_tune_epochs == 0:
        raise UserError("--epochs 0 --fine-tune-epochs 0: nothing to train (fernas evaluate tests a saved model)")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    base, dirs = train_several.plan_run_dirs(docs, args.out)
    if args.resume:
        _restore_run_settings(args, dirs)
        _restore_race(args, base)
    if args.merge_val and args.fine_tune_epochs == 0:  # train+val is the fine-tuning phase's training set
        raise UserError("--merge-val --fine-tune-epochs 0: --merge-val fine-tunes on train+val; give "
                        "--fine-tune-epochs N (the paper: 50)")
    check_race(args.race, len(docs), args.epochs)
    dev = device_from_args(args)
    cfg = ProtocolConfig(**{f.name: getattr(args, f.name) for f in fields(ProtocolConfig) if f.name != "device"},
                         device=dev)
    invocation = {"command": command, "argv": args.argv, "args": _jsonable(args)}
    try:
        with stopping_as_ctrl_c():  # a scheduler's SIGTERM, a closed terminal's SIGHUP
            train_several.train_genomes(docs, list(args.genomes), cfg, lambda: dataset_from_args(args), dirs,
                                        base=base, resume=args.resume, invocation=invocation, race_epochs=args.race)
    except RunExistsError as exc:
        raise RunDirError(f"{exc.path}: holds another run; pass --resume to continue it, "
                          "or choose another --out") from None
    except KeyboardInterrupt:
        if any((d / "genome.json").is_file() for d in dirs):  # a run was begun: say how to go on with it
            again = shlex.join([*command.split(), *args.genomes, "--out", str(base or dirs[0]), "--resume"])
            print(f"{command}: stopped; continue from the last checkpoint with  {again}", file=sys.stderr)
        raise
    return 0
