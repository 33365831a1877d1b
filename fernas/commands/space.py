"""`fernas space show [FILE]`: the search space as an editable file, or what a space file allows.

`fernas space show > space.yaml`, edit it, then `fernas evolve --space space.yaml`.  With a
FILE it checks the file (one line, exit 2, for any mistake) and prints the space it defines,
every gene with the values it keeps, plus how many genome vectors it holds (dormant genes
included, so more than distinct networks).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from fernas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("space", help="print the search space to edit (for fernas evolve --space FILE)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ssub = p.add_subparsers(dest="space_command", metavar="ACTION")
    ssub.required = True
    s = ssub.add_parser("show", help="print the default search space (or the one FILE defines) as YAML",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("file", nargs="?", default=None, metavar="FILE", help="a space file to check and show")
    s.add_argument("--json", action="store_true", help="JSON instead of YAML (no comments)")
    s.add_argument("--out", default=None, help="write to this file instead of stdout (refuses to overwrite)")
    s.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from fernas.io import atomic_write_text, refuse_file_in_path
    from fernas.space import Space, load_space, show

    space = load_space(args.file) if args.file else Space.full()
    text = json.dumps(_as_json(space), indent=1) + "\n" if args.json else show(space)
    if args.out:
        if Path(args.out).exists():
            raise UserError(f"{args.out}: already exists; refusing to overwrite")
        refuse_file_in_path(Path(args.out))
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.file:
        print(f"{args.file}: {_size(space):.3g} genome vectors", file=sys.stderr)
    return 0


def _as_json(space) -> dict:
    """Every gene (per stage and FC layer) with its allowed values, as a space file takes them."""
    from fernas.space import GENES

    doc: dict = {"fernas_space": 1}
    for gene, raw in zip(GENES, space.allowed):
        *path, name = gene.field.split(".")
        node = doc
        for part in path:
            node = node.setdefault(part, {})
        node[name] = {"choices": [gene.values[r - gene.low] for r in raw]}
    return doc


def _size(space) -> float:
    return math.prod(len(a) for a in space.allowed)
