"""`fernas report RUN_DIR...`: write each run's self-contained report.html (open it in a browser)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("report", help="write a run's report.html: plots, hall of fame, trials, gene effects",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="One self-contained HTML page per run directory (pictures embedded, no network "
                                   "needed), written as RUN_DIR/report.html.  `fernas evolve` and `fernas train` "
                                   "write it when they end; this command writes it again, also while a run goes on.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evolve or training run directories")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fernas.html_report import report_page
    from fernas.io import atomic_write_text

    pages = [report_page(r) for r in args.runs]  # every run read first: a bad one writes nothing
    for path, text in pages:
        atomic_write_text(path, text)
        print(f"{path}  (open file://{path.resolve()})")
    return 0
