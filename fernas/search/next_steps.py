"""The commands a search suggests: the one that goes on after a stop, and, once it finished (its
last lines, and its report page), train the best genome, race the top three, compare the best
with the seed designs; each on the run's data (config.json's data flags) and at the length
races and comparisons were measured at."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from fernas.data_spec import FER_TEST_DEFAULT

# The length the kept network trains in the suggested commands: --rerank-schedule epochs and two
# of fine-tuning on single crops, the setting races and comparisons were measured at (README,
# "Racing the finalists"), not the paper's 300+50 on ten crops.
SHORT_PROTOCOL = "--epochs {epochs} --fine-tune-epochs 2 --train-crops 1"


def continue_command(out, restarts: int = 0, machine: list[str] = ()) -> str:
    """The command line that goes on with the run in `out`: the machine's flags it was given
    (`machine`: a resume takes those from its own command line, the rest from the run), and
    its restarts."""
    return shlex.join(["fernas", "evolve", *machine, "--out", str(out), "--resume",
                       *(["--auto-resume", str(restarts)] if restarts else [])])


def train_best_command(out) -> str:
    """The full protocol for best.json, on the run's data."""
    return f"fernas decode {shlex.quote(str(out))}/best.json --train{data_flags(out)}"


def race_command(out, epochs: int) -> str | None:
    """The race of the hall of fame's top three (`fernas.race`) at `epochs` (the run's
    --rerank-schedule); None when it holds fewer than two, or the training is too short for a
    race (decided before its end)."""
    from fernas.protocol import AUGMENT_WARMUP

    if len(list(Path(out, "hall_of_fame").glob("0[1-3]_*.json"))) < 2 or epochs <= AUGMENT_WARMUP:
        return None
    return (f"fernas decode {shlex.quote(str(out))}/hall_of_fame/0[1-3]_*.json --train --race {AUGMENT_WARMUP}"
            f"{data_flags(out)} {SHORT_PROTOCOL.format(epochs=epochs)}")


def compare_command(out, best_gid: str | None, epochs: int) -> str | None:
    """The best genome trained beside the seed designs the run trained, each by its own recipe,
    at `epochs` (short trials favour networks that learn fast; README, "Searchers at equal
    compute"); None when the run trained none, or the best is one of them."""
    evolved = [d["evolve"] for d in seed_design_docs(out)]
    if not evolved or any(e.get("gid") == best_gid for e in evolved):
        return None
    where = shlex.quote(str(out))
    own = design_files(out, [e["name"] for e in evolved])
    designs = " ".join(map(shlex.quote, own)) if own else f"{where}/seed_designs/*.json"
    return f"fernas train {where}/best.json {designs}{data_flags(out)} {SHORT_PROTOCOL.format(epochs=epochs)}"


def design_files(out, names: list[str]) -> list[str] | None:
    """The --seed-genomes files of the seed designs of these names, to train by their own recipe
    (the run's copies in OUT/seed_designs carry its trial batch); None when one is not found."""
    from fernas.errors import UserError
    from fernas.genome import load_genome

    try:
        files = json.loads(Path(out, "config.json").read_text())["options"]["seed_genomes"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    by_name: dict[str, str] = {}
    for f in files:
        try:
            by_name.setdefault(load_genome(f)["name"], f)
        except (UserError, KeyError, TypeError):
            continue
    found = [by_name.get(n) for n in names]
    return None if None in found else list(dict.fromkeys(found))


def seed_design_docs(out) -> list[dict]:
    """The genome files in OUT/seed_designs (rundir.RunDir.write_seed_designs), their names in
    `evolve`; a file that does not read is left out (the run's outputs are written already)."""
    from fernas.errors import UserError
    from fernas.genome import load_genome

    docs = []
    for p in sorted(Path(out, "seed_designs").glob("*.json")):
        try:
            doc = load_genome(p)
            docs.append({**doc, "evolve": {**doc["evolve"], "name": doc["name"]}})
        except (UserError, KeyError, TypeError):
            continue
    return docs


def data_flags(out) -> str:
    """The run's data flags (config.json), to train on the same data: ' --data SOURCE ...'."""
    try:
        opts = json.loads(Path(out, "config.json").read_text())["options"]
        extra = opts.get("data_args") or {}
        flags = f" --data {shlex.quote(str(opts['data']))}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):  # a hint only: the user adds --data
        return " --data ..."
    if extra.get("labels"):
        flags += f" --labels {shlex.quote(str(extra['labels']))}"
    if extra.get("skip_bad"):
        flags += " --skip-bad"
    if extra.get("fer_test", FER_TEST_DEFAULT) != FER_TEST_DEFAULT:
        flags += f" --fer-test {extra['fer_test']}"
    return flags + (f" --data-seed {extra['data_seed']}" if extra.get("data_seed") else "")
