"""`fernas decode GENOME.json...`: layer table, parameters, multiply-adds and recipe;
with `--train`, the full training protocol of seeds 000/002, as `fernas train` runs it."""

from __future__ import annotations

import argparse
import json

from fernas import genome as g
from fernas.commands import train as train_command
from fernas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("decode", help="show the network a genome decodes to; --train trains it fully",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("genomes", nargs="+", metavar="GENOME.json", help="one or more genome files")
    p.add_argument("--json", action="store_true", help="print one JSON object per genome instead of a table")
    # Flags that only mean something with --train: refuse them without it, rather than ignore.
    train_only = train_command.add_train_arguments(p, switch=True)
    p.set_defaults(func=run, _train_only=train_only, command_parser=p)


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def format_table(doc: dict, summary: dict) -> str:
    rows = [("layer", "type", "output shape", "params")]
    for r in summary["layers"]:
        rows.append((r["layer"], r["type"], "x".join(map(str, r["output_shape"])), _fmt_int(r["params"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"genome {summary['name']} (id {g.genome_id(doc)}), input 1x{summary['input'][1]}x{summary['input'][2]}"]
    for i, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                                r[3].rjust(widths[3])]))
        if i == 0:
            lines.append("-" * (sum(widths) + 6))
    lines.append(f"total parameters: {_fmt_int(summary['params'])}")
    lines.append(f"multiply-adds per image: {_fmt_int(summary['macs'])} ({summary['macs'] / 1e6:.1f} M)")
    t = doc["train"]
    lines.append(f"recipe: optimizer {t['optimizer']}, lr {t['lr']:g}, weight decay {t['weight_decay']:g}, "
                 f"scheduler {t['scheduler']}, batch {t['batch_size']}")
    for rep in summary["repairs"]:
        lines.append(f"repaired: {rep}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    docs = [g.load_genome(p) for p in args.genomes]  # validate all before doing anything
    if getattr(args, "train", False):
        return train_command.run_training(args, "fernas decode --train")
    for option, dest, default in getattr(args, "_train_only", []):
        if getattr(args, dest, default) != default:
            raise UserError(f"{option} only applies with --train (fernas decode GENOME.json --train {option} ...)")
    from fernas.model import summarize

    for i, doc in enumerate(docs):
        summary = summarize(doc)  # at the 40x40 crops fernas builds, trains and tests every network at
        if args.json:
            out = dict(summary, id=g.genome_id(doc), file=args.genomes[i], train=doc["train"])
            print(json.dumps(out))
        else:
            if i:
                print()
            print(format_table(doc, summary))
    return 0
