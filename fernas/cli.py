"""The `fernas` command line: parses arguments and calls the stage modules, nothing more.

Each subcommand lives in `fernas/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func=run`.
Errors the user caused (`UserError`) end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys

from fernas import __version__, stop_signals
from fernas.commands import closed_output
from fernas.errors import ClusterUnreachable, SettingError, TrainingDiverged, UserError

# Order here is the order in `fernas --help`.
COMMAND_MODULES = ["genome", "decode", "train", "data", "space", "evolve", "runs", "report", "evaluate", "predict", "export"]


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose error is one line (the rule for bad input), not the usage block
    (27 lines for `fernas evolve`) before it; its subcommands' parsers are of this class too."""

    def error(self, message: str):
        lists = "the commands" if self.prog == "fernas" else "the flags"
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists {lists})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fernas",
        description="Genetic-algorithm neural architecture search for facial emotion recognition.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fernas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"fernas.commands.{name}").register(sub)
    return parser


def entry() -> int:
    """The `fernas` program (console script, `python -m fernas`): `main`, after which a stop
    signal no longer changes the outcome: the command's files are written and its status is
    decided, so a Ctrl-C while the interpreter shuts down (joining library threads) ends the
    process at once with that status instead of turning it into an interrupt (130)."""
    status = main()

    def leave(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's ignored SIGHUP stays ignored
            signal.signal(signum, leave)
    return status


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ClusterUnreachable.take_attempt()
    closed_output.open_standard_descriptors()  # before anything opens a file
    stop_signals.received.clear()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for a command that runs itself again
    try:
        result = args.func(args)
        sys.stdout.flush()  # a short output's closed pipe shows here, not in the flush at exit
    except BrokenPipeError as exc:
        closed = closed_output.closed_pipes(sys.stdout, sys.stderr)
        if not closed:  # a socket's or a child's pipe: an error like any other
            return _os_error(exc)
        for stream in closed:  # `fernas ... | head`: ended as a shell reports a program its closed pipe ended
            closed_output.OutputWatch().lost(stream, exc)  # no "Exception ignored" from the flush at exit
        return closed_output.STATUS
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP where a command takes them as Ctrl-C
        how = f"stopped by {signal.Signals(stop_signals.received[0]).name}" if stop_signals.received else "interrupted"
        print(f"fernas: {how}", file=sys.stderr)
        return stop_signals.exit_status()
    except ClusterUnreachable as exc:  # on an --auto-resume restart: a head node down for now
        print(f"fernas: error: {exc.as_flag()}", file=sys.stderr)
        return ClusterUnreachable.status()
    except SettingError as exc:  # the core names the setting; the user typed the flag
        print(f"fernas: error: {exc.as_flag()}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"fernas: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:  # the genome's training, not the user's input: status 1
        print(f"fernas: error: the training diverged: {exc}; its run directory keeps its last "
              "checkpoint", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the user named: exists, is not a directory, no permission, disk full
        return _os_error(exc)
    return int(result or 0)


def _os_error(exc: OSError) -> int:
    where = f"{exc.filename}: " if exc.filename else ""
    hint = ("; every file written before is intact (written atomically): free space, then run the same "
            "command again (a search or training: add --resume)") if exc.errno == errno.ENOSPC else ""
    print(f"fernas: error: {where}{exc.strerror or exc}{hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
