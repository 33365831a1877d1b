"""`fernas genome random|check`: make, validate and inspect genome documents."""

from __future__ import annotations

import argparse
import json
import random
import sys

from fernas import genome as g, published_spaces
from fernas.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("genome", help="make, check and inspect genome JSON documents",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gsub = p.add_subparsers(dest="genome_command", metavar="ACTION")
    gsub.required = True
    r = gsub.add_parser("random", help="print a random valid genome JSON",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--seed", type=int, default=None, help="random seed (default: fresh randomness)%(default).0s")
    r.add_argument("--space", choices=("uniform", *published_spaces.SPACES), default="uniform",
                   help="uniform over all genes (the learning rate within its optimizer's range, as the GA "
                        "draws), or the random-search space of seed 001 (sarmah) or 004 (vulpe)")
    r.add_argument("--out", default=None, help="write to this file instead of stdout (refuses to overwrite)")
    r.set_defaults(func=run_random)
    c = gsub.add_parser("check", help="validate genome files; prints id and vector",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("genomes", nargs="+", metavar="GENOME.json")
    c.set_defaults(func=run_check)


def run_random(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    if args.space == "uniform":
        from fernas.space import Space
        doc = g.from_vector(Space.full().random_vector(rng))
    else:
        doc = published_spaces.sample(rng, args.space)
    if args.out:
        from pathlib import Path
        if Path(args.out).exists():
            raise UserError(f"{args.out}: already exists; refusing to overwrite")
        g.save_genome(doc, args.out)
        print(f"wrote {args.out} (id {g.genome_id(doc)})", file=sys.stderr)
    else:
        sys.stdout.write(g.dumps(doc))
    return 0


def run_check(args: argparse.Namespace) -> int:
    for path in args.genomes:
        doc = g.load_genome(path)
        print(json.dumps({"file": path, "name": doc["name"], "id": g.genome_id(doc), "vector": g.to_vector(doc)}))
    return 0
