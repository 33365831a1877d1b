"""A race between finalists: every genome trains the first N epochs of the protocol, the best continues.

`fernas train A.json B.json C.json --race N` (and `fernas decode ... --train --race N`) trains
the training phase of each genome in turn to epoch N of its full schedule (`fulltrain.train_start`:
the same learning-rate curve and augmentation warm-up as the whole run, checkpoint kept), then
continues only the genome with the highest validation accuracy after epoch N (on a tie, the lower
validation loss) from its checkpoint
through the rest of training, fine-tuning and the ten-crop test (`fulltrain.run_protocol` with
resume: on CPU the continued run equals an uninterrupted one).  The others keep their checkpoint,
and their directories are let go once the race is decided, so `fernas train G.json --out
DIR/NAME --resume` finishes one (even while the winner trains on).

Why: the search's own re-ranking trains its finalists again with other seeds and keeps a genome;
the network the user keeps is another training of it, and on data where networks differ that
training's draw is wide.  A race chooses among trainings and keeps the chosen one, at the cost of
(k - 1) x N epochs of the protocol beyond training the winner alone.  Measured on the finalists
of equal-compute searches (docs/search_experiments.md, "Racing the finalists").

DIR/race.json records the race (atomically: its epochs and finalists when it starts, each
finalist's score at epoch N, or why it dropped out, as it comes, and the winner once every
finalist is done), so a killed race resumed with `--resume` goes on from each finalist's last
checkpoint (every epoch on a CPU), does not train again a finalist that diverged, and continues
the same winner.  A finalist whose loss diverges drops out of the race (the winner diverging
after epoch N ends the command with one line, as any training's divergence does: `fernas.cli`,
naming the runner-up and the command that finishes it).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Callable

from fernas.errors import RunDirError, RunExistsError, TrainingDiverged, UserError
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


def check_race_dir(base: Path, docs: list[dict], dirs: list[Path], epochs: int, resume: bool) -> bool:
    """Before the data loads: a new race never replaces another's record (RunExistsError); a
    resumed one must be the race recorded there, of these genomes in these directories, or, with
    no record, must not find runs that were no race (RunDirError).  Returns whether a record is
    there (a resumed race whose finalists have not started yet)."""
    race = stored_race(base)
    if not resume:
        if race is not None:
            raise RunExistsError(Path(base))
        return False
    if race is None:
        if any((d / "config.json").exists() for d in dirs):
            raise RunDirError(f"{base}: holds runs that are not a race (no {RACE_FILE}); resume them without --race")
        return False
    _same_race(race, docs, dirs, epochs, Path(base) / RACE_FILE)
    return True


def stored_race(base: Path) -> dict | None:
    """The race recorded in base/race.json; None when there is none.  An unreadable file, one
    of another version or one missing what a race records is a RunDirError naming it."""
    path = Path(base) / RACE_FILE
    if not path.exists():
        return None
    try:
        race = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise RunDirError(f"{path}: unreadable race record ({exc})") from None
    if not isinstance(race, dict) or race.get("fernas_race") != RACE_VERSION:
        raise RunDirError(f"{path}: not a race record of this fernas (expected fernas_race {RACE_VERSION}); "
                          "start a new race in another --out")
    genomes, winner = race.get("genomes"), race.get("winner")
    if not (isinstance(race.get("epochs"), int) and isinstance(genomes, list) and len(genomes) >= 2
            and all(isinstance(g, dict) and isinstance(g.get("genome_id"), str) and isinstance(g.get("dir"), str)
                    for g in genomes)
            and (winner is None or (isinstance(winner, int) and 0 <= winner < len(genomes)))):
        raise RunDirError(f"{path}: incomplete race record (expected epochs, two or more genomes with "
                          "genome_id and dir, and a winner among them or null)")
    return race


def score_at(history: list[dict], epoch: int, field: str = "val_acc") -> float | None:
    """Validation accuracy (or `field`: val_loss) after `epoch` of the training phase; None when
    it did not get there.  To history.csv's 6 significant digits, whether read from a checkpoint
    or from the csv of a finalist finished by hand: a tie is a tie either way (`winner_index`)."""
    for r in history:
        if r.get("phase", "train") == "train" and int(r["epoch"]) == epoch:
            try:
                val = float(r[field])
            except (KeyError, TypeError, ValueError):
                return None
            return float(f"{val:.6g}") if math.isfinite(val) else None
    return None


def winner_index(scores: list[float | None], losses: list | None = None) -> int:
    """The best score's index.  On a tie of accuracy (a few hundred validation images make ties
    common) the lower validation loss wins, then the first in the order given (the search's
    order); a loss not known counts as the highest."""
    losses = losses or [None] * len(scores)
    ranked = [(s, -(math.inf if loss is None else loss), -i)
              for i, (s, loss) in enumerate(zip(scores, losses)) if s is not None]
    if not ranked:
        raise RunDirError("every finalist of the race diverged: no winner to continue")
    return -max(ranked)[2]


def _decide(race: dict) -> dict:
    """The race with its winner (every finalist's outcome is in it)."""
    genomes = race["genomes"]
    return {**race, "winner": winner_index([g.get("val_acc") for g in genomes], [g.get("val_loss") for g in genomes])}


def _entry(docs: list[dict], dirs: list[Path], epochs: int) -> dict:
    """The race as it starts: its epochs and finalists; no winner yet."""
    from fernas.genome import genome_id

    return {"fernas_race": RACE_VERSION, "epochs": epochs, "winner": None,
            "genomes": [{"name": d.get("name", "genome"), "genome_id": genome_id(d), "dir": str(p)}
                        for d, p in zip(docs, dirs)]}


def _same_race(race: dict, docs: list[dict], dirs: list[Path], epochs: int, path: Path) -> None:
    """A stored race must be of these genomes, in this order and these run directories, decided
    after these epochs (RunDirError)."""
    from fernas.genome import genome_id

    stored = [(g["genome_id"], Path(g["dir"]).name) for g in race["genomes"]]
    if stored != [(genome_id(doc), d.name) for doc, d in zip(docs, dirs)] or len(docs) != len(stored):
        raise RunDirError(f"{path}: a race of other genomes or names "
                          f"({', '.join(f'{n} (id {i})' for i, n in stored)}); resume it with the same "
                          "genome files in the same order")
    if race["epochs"] != epochs:
        raise RunDirError(f"{path}: a race decided after epoch {race['epochs']}, not {epochs}")


def run_starts(docs, files, cfg, data, dirs, race: dict, path: Path, resume: bool, invocation) -> dict:
    """Each finalist's first `race["epochs"]` epochs (`fulltrain.train_start`); returns the race
    with each one's score (and why it dropped out) and its winner.  Each outcome is written to
    `path` as it comes, so that a resume does not train again a finalist that diverged: the race
    then decides as an uninterrupted one did (on a CPU it would diverge again from its last
    checkpoint; on a GPU it might not).  One finished by hand meanwhile is read instead."""
    from fernas.fulltrain import is_complete, train_start

    epochs = race["epochs"]
    for i, (doc, file, d) in enumerate(zip(docs, files, dirs)):
        stored = race["genomes"][i].get("dropped")
        if resume and isinstance(stored, str) and stored.startswith("diverged") and not is_complete(d):
            continue  # its outcome stands in race
        try:
            history = train_start(doc, data, cfg, d, epochs, resume=resume, genome_file=file, invocation=invocation)
            score, loss = score_at(history, epochs), score_at(history, epochs, "val_loss")
            note = "" if score is not None else f"no validation accuracy at epoch {epochs}"
        except TrainingDiverged as exc:
            score, loss, note = None, None, f"diverged: {exc}"
            print(f"  {doc.get('name', 'genome')}: {exc}; out of the race", file=sys.stderr, flush=True)
        race = _outcome(race, i, score, loss, note)
        atomic_write_json(path, race)
    return _decide(race)  # dropped: None


def _outcome(race: dict, i: int, score: float | None, loss: float | None, note: str) -> dict:
    """The race with finalist i's score and loss (and why it dropped out), before a winner is decided."""
    entry = {k: v for k, v in race["genomes"][i].items() if k not in ("dropped", "val_loss")}
    entry = {**entry, "val_acc": score, **({"val_loss": loss} if loss is not None else {}),
             **({"dropped": note} if note else {})}
    return {**race, "genomes": [*race["genomes"][:i], entry, *race["genomes"][i + 1:]]}


def print_race(race: dict, base: Path) -> None:
    """The race's table on stdout, best first, the winner marked."""
    def score(g: dict) -> float:
        return g["val_acc"] if isinstance(g.get("val_acc"), (int, float)) else -1.0

    width = max(len(str(g.get("name", "genome"))) for g in race["genomes"])
    won = race["genomes"][race["winner"]]
    tied = [g for g in race["genomes"] if g is not won and score(g) == score(won)]
    losses = all(isinstance(g.get("val_loss"), (int, float)) for g in [won, *tied])  # an earlier fernas recorded none

    def order(r):  # best first; the winner heads its tie, the rest of a tie by the loss that settled it
        i, g = r
        return -score(g), i != race["winner"], g["val_loss"] if losses and g in tied else 0.0, i

    rows = sorted(enumerate(race["genomes"]), key=order)
    rule = "the lower validation loss" if losses else "the first given (no validation losses recorded)"
    print(f"\nrace: validation accuracy after epoch {race['epochs']}; the best continues ({base / RACE_FILE})"
          + (f"; a tie of accuracy goes to {rule}" if tied else ""))
    for i, g in rows:
        acc = f"{g['val_acc']:.4f}" if score(g) >= 0 else g.get("dropped", "-")
        if tied and losses and score(g) == score(won):
            acc += f" (loss {g['val_loss']:.5f})"
        mark = "continues" if i == race["winner"] else f"stopped ({g['dir']})"
        print(f"  {str(g.get('name', 'genome')).ljust(width)}  {acc}  {mark}")


def race(docs: list[dict], files: list, cfg, data, dirs: list[Path], base: Path, epochs: int, *,
         resume: bool, invocation: dict | None, release: Callable[[Path], None] | None = None) -> dict:
    """The race into base (dirs: one run directory per finalist); returns the winner's metrics.
    release(dir): once the race is decided, each loser's directory is let go (its lock), so that
    `fernas runs` shows it as a lost race and it can be finished while the winner trains."""
    from fernas.fulltrain import is_complete, run_protocol, stored_metrics

    path = Path(base) / RACE_FILE
    if len(data.val) == 0:
        raise UserError(f"--race {epochs}: the race compares validation accuracy, and the data has no "
                        "validation split")
    result = stored_race(base) if resume else None  # checked by check_race_dir before the data loaded
    if result is None:
        result = _entry(docs, dirs, epochs)
        atomic_write_json(path, result)  # a resume without --race still knows this is a race
    if result["winner"] is None:
        result = run_starts(docs, files, cfg, data, dirs, result, path, resume, invocation)
        atomic_write_json(path, result)  # the decision: a resume continues this winner
    print_race(result, Path(base))
    w = result["winner"]
    if release is not None:
        for d in dirs[:w] + dirs[w + 1:]:
            release(d)
    if resume and is_complete(dirs[w]):
        print(f"{dirs[w]}: the race's winner is already trained (metrics.json)", file=sys.stderr)
        return stored_metrics(dirs[w])
    try:
        return run_protocol(docs[w], data, cfg, dirs[w], resume=True, genome_file=files[w], invocation=invocation,
                            resume_key="resumed" if resume else "continued_after_race")
    except TrainingDiverged as exc:  # a resume would diverge again: say how to finish the runner-up
        raise TrainingDiverged(f"{exc}{_runner_up_hint(result, files, dirs)}") from None


def _runner_up_hint(race: dict, files: list, dirs: list[Path]) -> str:
    """For a winner that diverged after the race: which finalist came second, and the command
    that finishes it from its checkpoint ("" when no other finalist has a score)."""
    scores = [g.get("val_acc") if i != race["winner"] else None for i, g in enumerate(race["genomes"])]
    if all(s is None for s in scores):
        return ""
    r = winner_index(scores, [g.get("val_loss") for g in race["genomes"]])
    return (f" (the race's winner, {race['genomes'][race['winner']].get('name', 'genome')}); the runner-up "
            f"{race['genomes'][r].get('name', 'genome')} ({scores[r]:.4f} after epoch {race['epochs']}) "
            f"is finished by `fernas train {files[r]} --out {dirs[r]} --resume`")
