"""Which flags a command line typed, whatever their values (one typed at its default counts):
what a resume compares with the settings its run keeps, so that it names only those."""

from __future__ import annotations

import argparse


def typed_flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, str]:
    """argparse destination -> the option as typed, for every flag in `argv` (the command's own
    arguments, after its name) that `parser` (the command's parser) knows."""
    unset = object()  # argparse leaves an attribute the namespace already has, unless a flag sets it
    options = [a for a in parser._actions if a.option_strings and a.dest != argparse.SUPPRESS]
    parsed = parser.parse_known_args(argv, argparse.Namespace(**{a.dest: unset for a in options}))[0]
    tokens = [t.split("=")[0] for t in argv if t.startswith("--")]
    return {a.dest: _as_typed(a, tokens) for a in options if getattr(parsed, a.dest) is not unset}


def _as_typed(action, tokens: list[str]) -> str:
    """The option string of `action` the user typed (`--no-novel-offspring`, not its first one)."""
    for exact in (True, False):  # a whole option before an abbreviation of one
        for t in tokens:
            for o in action.option_strings:
                if o == t or (not exact and len(t) > 2 and o.startswith(t)):
                    return o
    return action.option_strings[0]
