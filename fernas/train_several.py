"""Several genomes through the protocol in one command (`fernas train A.json B.json ...`).

`plan_run_dirs` names one run directory per genome under a base directory; `train_genomes`
locks and checks them all before the data loads, then trains every genome in turn
(`fulltrain.run_protocol`) and ends with a comparison table (base/comparison.csv), or with
`race_epochs` runs a race instead (`fernas.race`: only its winner is trained fully).
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from fernas.dataset import Dataset
from fernas.errors import RunDirError
from fernas.fulltrain import (ProtocolConfig, centre_crop_only, check_run_dir, holds_run, is_complete, run_protocol,
                              stored_metrics)
from fernas.io import atomic_write_csv, run_dir_lock


def _slug(name: str) -> str:
    """A directory name from a genome's name (no separators; never "." or "..")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "genome"


def _unique_names(docs: list[dict]) -> list[str]:
    """One directory name per genome, distinct even on a case-insensitive file system: a
    repeated name gets -2, -3, ... (names A, A, A-2 -> A, A-2, A-2-2)."""
    names, used = [], set()
    for d in docs:
        base = n = _slug(d.get("name", "genome"))
        k = 1
        while n.lower() in used:
            k += 1
            n = f"{base}-{k}"
        used.add(n.lower())
        names.append(n)
    return names


def plan_run_dirs(docs: list[dict], out=None) -> tuple[Path | None, list[Path]]:
    """(base directory for a comparison, one run directory per genome).  out=None: a new
    time-stamped directory under runs/; with several genomes, one sub-directory each."""
    names = _unique_names(docs)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        if len(docs) == 1:
            return None, [Path("runs") / f"{stamp}-{names[0]}"]
        base = Path("runs") / stamp
        return base, [base / n for n in names]
    out = Path(out)
    if len(docs) == 1:
        return None, [out]
    return out, [out / n for n in names]


def train_genomes(docs: list[dict], genome_files: list, cfg: ProtocolConfig, load_data: Callable[[], Dataset],
                  dirs: list[Path], *, base: Path | None = None, resume: bool = False,
                  invocation: dict | None = None, race_epochs: int = 0) -> list[dict]:
    """Every genome in turn into its directory (all locked and checked before the data loads);
    with several, a comparison table on stdout and in base/comparison.csv.  With `race_epochs`,
    a race instead (`fernas.race`): only its winner is trained fully.  Returns the metrics."""
    with contextlib.ExitStack() as locks:
        # a second process on one of these directories, or on the base that holds their
        # race.json / comparison.csv, is refused; each is held until the end (a race lets its
        # losers go once it is decided: `release`)
        held = {}
        for d in ([base] if base is not None else []) + dirs:
            if d.is_dir() or not d.exists():  # (a file in the way: check_run_dir says so)
                held[d] = locks.enter_context(contextlib.ExitStack())
                held[d].enter_context(run_dir_lock(d))
        if base is not None and holds_run(base):
            raise RunDirError(f"{base}: holds one genome's training run; several genomes need a directory of "
                              "their own (another --out)")
        if base is not None and len(dirs) > 1:
            _check_comparison(base, dirs)
        started = False  # a race's record: its resume may find no finalist started yet
        if race_epochs:
            from fernas.race import check_race_dir

            started = check_race_dir(base, docs, dirs, race_epochs, resume)
        finished = _check_dirs(docs, dirs, resume, started)
        data = load_data()
        warn_chosen_on_the_test_split(docs, data)
        if race_epochs:
            from fernas.race import race

            return [race(docs, genome_files, cfg, data, dirs, base, race_epochs, resume=resume,
                         invocation=invocation, release=lambda d: held[d].close() if d in held else None)]
        t0 = time.perf_counter()
        results = []
        for path, doc, d in zip(genome_files, docs, dirs):
            if d in finished:
                print(f"{d}: run already complete (metrics.json); nothing to resume", file=sys.stderr)
                results.append((d, stored_metrics(d)))
                continue
            results.append((d, run_protocol(doc, data, cfg, d, resume=resume, genome_file=path,
                                            invocation=invocation)))
        if len(results) > 1:
            _compare(base, results, time.perf_counter() - t0, centre_crop_only(cfg))
    return [m for _, m in results]


def warn_chosen_on_the_test_split(docs: list[dict], data) -> None:
    """One warning line for each genome a search chose by its validation accuracy on the FER2013
    split this training tests on (the search read the same CSV with the other --fer-test): its
    test accuracy is then no held-out figure."""
    from fernas.data_spec import FER_TEST_DEFAULT, split_usage

    test = (data.info or {}).get("test_usage")
    for doc in docs if test else []:
        found = doc.get("evolve") or {}
        searched = found.get("fer_test", FER_TEST_DEFAULT)
        if split_usage(searched)["val"] == test and _same_file(found.get("data"), data.source):
            flag = f"--fer-test {searched}"
            print(f"fernas: warning: {doc.get('name', 'genome')} was chosen by a search that validated on {test} "
                  f"({flag}), the split this training tests on: its test accuracy is not held out; train with "
                  f"{flag}", file=sys.stderr)


def _same_file(a, b) -> bool:
    try:
        return a is not None and Path(str(a)).samefile(str(b))
    except OSError:
        return False


def _check_dirs(docs: list[dict], dirs: list[Path], resume: bool, started: bool = False) -> list[Path]:
    """Check every run directory before anything trains; returns those already complete.  On a
    resume of several genomes, a directory the interrupted command never reached starts afresh
    (but one of them must hold a run, or `started`: a race's record; a mistyped --out is refused)."""
    if resume and len(dirs) > 1 and not started and not any(holds_run(d) for d in dirs):
        raise RunDirError(f"{dirs[0].parent}: no run to resume (no genome's run directory holds one)")
    finished = []
    for doc, d in zip(docs, dirs):
        check_run_dir(d, doc, resume and (len(dirs) == 1 or holds_run(d)))  # a finished run too: same genome
        if resume and is_complete(d):
            stored_metrics(d)  # readable, or one line now, before the data loads
            finished.append(d)
    return finished


def _check_comparison(base: Path, dirs: list[Path]) -> None:
    """base/comparison.csv of another command's genomes would be overwritten: refused (a resume of
    the same genomes, or of a subset of them, rewrites it)."""
    import csv

    path = base / "comparison.csv"
    if not path.is_file():
        return
    try:
        with path.open(newline="") as f:
            listed = {Path(r["run_dir"]).name for r in csv.DictReader(f)}
    except (OSError, KeyError, UnicodeDecodeError, csv.Error):
        listed = {"?"}  # unreadable: not this command's to replace
    others = sorted(listed - {d.name for d in dirs})
    if others:
        raise RunDirError(f"{path}: compares other genomes' runs ({', '.join(others)}); choose another --out "
                          "(or train them again together into it with --resume)")


def _compare(base: Path, results: list[tuple[Path, dict]], seconds: float, by_single: bool) -> None:
    """The comparison table, best first: by ten-crop accuracy, or by single crop (`by_single`)."""
    rows = [{"genome": m["genome"], "test_accuracy_tencrop": m["test_accuracy_tencrop"],
             "test_accuracy_single": m["test_accuracy_single"], "macro_f1": m["macro_f1"],
             "params": m["params"], "macs": m["macs"], "run_dir": str(d)} for d, m in results]
    rows.sort(key=lambda r: -r["test_accuracy_single" if by_single else "test_accuracy_tencrop"])
    atomic_write_csv(base / "comparison.csv", list(rows[0]), rows)
    width = max(len(r["genome"]) for r in rows)
    print(f"\n{'genome'.ljust(width)}  ten-crop  single  macro-F1      params        MACs")
    for r in rows:
        print(f"{r['genome'].ljust(width)}  {r['test_accuracy_tencrop']:8.4f}  {r['test_accuracy_single']:6.4f}  "
              f"{r['macro_f1']:8.4f}  {r['params']:10,}  {r['macs']:10,}")
    order = "single-crop" if by_single else "ten-crop"
    print(f"comparison (best {order} accuracy first) written to {base / 'comparison.csv'} ({seconds:.0f} s)")
