"""A race between finalists: every genome trains the first N epochs of the protocol, the best continues.

`fernas train A.json B.json C.json --race N` (and `fernas decode ... --train --race N`) trains
the training phase of each genome in turn to epoch N of its full schedule (`fulltrain.train_start`:
the same learning-rate curve and augmentation warm-up as the whole run, checkpoint kept), then
continues only the genome with the highest validation accuracy after epoch N from its checkpoint
through the rest of training, fine-tuning and the ten-crop test (`fulltrain.run_protocol` with
resume: on CPU the continued run equals an uninterrupted one).  The others keep their checkpoint,
so `fernas train G.json --out DIR/NAME --resume` finishes one later.

Why: the search's own re-ranking trains its finalists again with other seeds and keeps a genome;
the network the user keeps is another training of it, and on data where networks differ that
training's draw is wide.  A race chooses among trainings and keeps the chosen one, at the cost of
(k - 1) x N epochs of the protocol beyond training the winner alone.  Measured on the finalists
of equal-compute searches (docs/search_experiments.md, "Racing the finalists").

DIR/race.json records the race (atomically: its epochs and finalists when it starts, their scores
and the winner once every finalist reached epoch N), so a killed race resumed with `--resume`
continues the same winner and trains no finalist's completed epochs twice.  A finalist whose
loss diverges drops out of the race.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from fernas.errors import RunDirError, RunExistsError, UserError
from fernas.io import atomic_write_json

RACE_VERSION = 1  # race.json's "fernas_race"
RACE_FILE = "race.json"


def check_race(epochs: int, n_genomes: int, train_epochs: int) -> None:
    """Refuse a race that decides nothing: one genome, or no epochs left after it (UserError)."""
    if epochs < 0:
        raise UserError(f"--race {epochs}: must be >= 0 epochs (0: no race, every genome trained fully)")
    if epochs and n_genomes < 2:
        raise UserError(f"--race {epochs}: a race needs two or more genomes, got {n_genomes}")
    if epochs and epochs >= train_epochs:
        raise UserError(f"--race {epochs}: must be fewer than --epochs {train_epochs} "
                        "(the winner continues from epoch --race)")


def check_new_race(base: Path, resume: bool) -> None:
    """A new race never replaces another's record (RunExistsError: resume it or choose another --out)."""
    if not resume and (Path(base) / RACE_FILE).exists():
        raise RunExistsError(Path(base))


def stored_race(base: Path) -> dict | None:
    """The race recorded in base/race.json; None when there is none.  An unreadable file or
    one of another version is a RunDirError naming it."""
    path = Path(base) / RACE_FILE
    if not path.exists():
        return None
    try:
        race = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable race record ({exc})") from None
    if not isinstance(race, dict) or race.get("fernas_race") != RACE_VERSION:
        raise RunDirError(f"{path}: not a race record of this fernas (expected fernas_race {RACE_VERSION}); "
                          "start a new race in another --out")
    return race


def score_at(history: list[dict], epoch: int) -> float | None:
    """Validation accuracy after `epoch` of the training phase; None when it did not get there."""
    for r in history:
        if r.get("phase", "train") == "train" and int(r["epoch"]) == epoch:
            val = float(r["val_acc"])
            return val if math.isfinite(val) else None
    return None


def winner_index(scores: list[float | None]) -> int:
    """The best score's index, the first on ties (the order given: the search's order)."""
    ranked = [(s, -i) for i, s in enumerate(scores) if s is not None]
    if not ranked:
        raise RunDirError("every finalist of the race diverged: no winner to continue")
    return -max(ranked)[1]


def _entry(docs: list[dict], dirs: list[Path], epochs: int) -> dict:
    """The race as it starts: its epochs and finalists; no winner yet."""
    from fernas.genome import genome_id

    return {"fernas_race": RACE_VERSION, "epochs": epochs, "winner": None,
            "genomes": [{"name": d.get("name", "genome"), "genome_id": genome_id(d), "dir": str(p)}
                        for d, p in zip(docs, dirs)]}


def _decided(race: dict, scores: list, notes: list[str]) -> dict:
    genomes = [{**g, "val_acc": s, **({"dropped": n} if n else {})}
               for g, s, n in zip(race["genomes"], scores, notes)]
    return {**race, "genomes": genomes, "winner": winner_index(scores)}


def _same_race(race: dict, docs: list[dict], epochs: int, path: Path) -> None:
    """A stored race must be of these genomes in this order and these epochs (RunDirError)."""
    from fernas.genome import genome_id

    stored = [g.get("genome_id") for g in race.get("genomes", [])]
    if stored != [genome_id(d) for d in docs]:
        raise RunDirError(f"{path}: a race of other genomes ({', '.join(map(str, stored))}); "
                          "resume it with the same genome files in the same order")
    if race.get("epochs") != epochs:
        raise RunDirError(f"{path}: a race decided after epoch {race.get('epochs')}, not {epochs}")


def run_starts(docs, files, cfg, data, dirs, epochs: int, resume: bool, invocation) -> tuple[list, list[str]]:
    """Each finalist's first `epochs` epochs (`fulltrain.train_start`); (scores, why each dropped out)."""
    from fernas.fulltrain import train_start
    from fernas.train import TrainingDiverged

    scores, notes = [], []
    for doc, path, d in zip(docs, files, dirs):
        try:
            history = train_start(doc, data, cfg, d, epochs, resume=resume, genome_file=path, invocation=invocation)
            scores.append(score_at(history, epochs))
            notes.append("" if scores[-1] is not None else f"no validation accuracy at epoch {epochs}")
        except TrainingDiverged as exc:
            scores.append(None)
            notes.append(f"diverged: {exc}")
            print(f"  {doc.get('name', 'genome')}: {exc}; out of the race", file=sys.stderr, flush=True)
    return scores, notes


def print_race(race: dict, base: Path) -> None:
    """The race's table on stdout, best first, the winner marked."""
    rows = sorted(enumerate(race["genomes"]), key=lambda r: -(r[1]["val_acc"] if r[1]["val_acc"] is not None else -1))
    width = max(len(g["name"]) for g in race["genomes"])
    print(f"\nrace: validation accuracy after epoch {race['epochs']}; the best continues ({base / RACE_FILE})")
    for i, g in rows:
        acc = f"{g['val_acc']:.4f}" if g["val_acc"] is not None else g.get("dropped", "-")
        mark = "continues" if i == race["winner"] else f"stopped ({g['dir']})"
        print(f"  {g['name'].ljust(width)}  {acc}  {mark}")


def race(docs: list[dict], files: list, cfg, data, dirs: list[Path], base: Path, epochs: int, *,
         resume: bool, invocation: dict | None) -> dict:
    """The race into base (dirs: one run directory per finalist); returns the winner's metrics."""
    from fernas.fulltrain import CHECKPOINTS, run_protocol

    path = Path(base) / RACE_FILE
    result = stored_race(base) if resume else None
    if result is not None:
        _same_race(result, docs, epochs, path)
    else:
        result = _entry(docs, dirs, epochs)
        atomic_write_json(path, result)  # a resume without --race still knows this is a race
    if result["winner"] is None:
        scores, notes = run_starts(docs, files, cfg, data, dirs, epochs, resume, invocation)
        result = _decided(result, scores, notes)
        atomic_write_json(path, result)  # the decision: a resume continues this winner
    print_race(result, Path(base))
    w = result["winner"]
    done = dirs[w] / "metrics.json"
    if resume and done.exists() and not (dirs[w] / CHECKPOINTS[0]).exists():
        print(f"{dirs[w]}: the race's winner is already trained (metrics.json)", file=sys.stderr)
        return json.loads(done.read_text())
    return run_protocol(docs[w], data, cfg, dirs[w], resume=True, genome_file=files[w], invocation=invocation)
