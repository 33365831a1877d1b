"""Which flags of a `fernas evolve --resume` command line the run's own settings replace.

A resume keeps the settings its run began with (config.json) and takes from the command line
only the machine's settings and the budgets (`RESUME_TAKES`).  A flag typed for anything else
is said to be unused when the settings it sets differ from the run's, so a resume never drops
a typed value without a word.  Which settings a flag sets is found by building the options
again with that flag at another value (its default, another choice, a neighbouring number).
"""

from __future__ import annotations

import argparse

from fernas.commands.typed_flags import typed_flags
from fernas.errors import UserError
from fernas.search.options import BUDGET_SETTINGS, SYSTEM_SETTINGS, flat_settings

# What a resume takes from its command line (argparse destinations)
RESUME_TAKES = {"out", "resume", "auto_resume", "quiet", "no_dashboard", "space", *SYSTEM_SETTINGS, *BUDGET_SETTINGS}
# Settings the run works out itself (chance level, validation size, the space with the batch fixed)
DERIVED = {"ga.chance_level", "ga.val_images", "ga.space"}


def settings_of_typed_flags(args: argparse.Namespace, build) -> dict[str, list[str]]:
    """Option as typed -> the run settings (`flat_settings` keys) it sets, for each typed flag a
    resume does not take; `build(args)` makes the options (`options_from_args`)."""
    given = flat_settings(build(args))
    found = {}
    for dest, option in typed_flags(args.command_parser, args.argv[1:]).items():
        if dest in RESUME_TAKES:
            continue
        if dest == "seed_genomes":  # resolved to files after the options are built
            found[option] = ["seed_genomes"]
            continue
        found[option] = _settings_set_by(args, dest, given, build)
    return {option: _own(option, keys, found) for option, keys in found.items()}


def _own(option: str, keys: list[str], found: dict[str, list[str]]) -> list[str]:
    """`keys` less those another typed flag sets too (--epochs-per-trial moves the re-ranking's
    budget, which --rerank-recipe sets): each setting is charged to the flag that is its own,
    where there is one."""
    others = {k for o, ks in found.items() if o != option for k in ks}
    return [k for k in keys if k not in others] or keys


def _settings_set_by(args: argparse.Namespace, dest: str, given: dict, build) -> list[str]:
    action = next(a for a in args.command_parser._actions if a.dest == dest)
    for value in _other_values(action, getattr(args, dest), args.command_parser.get_default(dest)):
        try:
            other = flat_settings(build(argparse.Namespace(**{**vars(args), dest: value})))
        except UserError:  # the other flags need this value
            continue
        changed = [k for k in given if k not in DERIVED and given[k] != other.get(k)]
        if changed:
            return changed
    return [k for k in given if k.rsplit(".", 1)[-1] == dest]  # by its name, as a last resort


def _other_values(action, value, default):
    """Values other than `value` the flag may take: its default, its other choices, a neighbour."""
    if default != value:
        yield default
    for choice in action.choices or ():
        if choice != value:
            yield choice
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1)
    elif isinstance(value, float):
        yield from (value / 2, value + 0.5)
