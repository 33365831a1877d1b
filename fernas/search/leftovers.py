"""Ray processes that a killed search left running, noted while it runs and ended by the next
search in its run directory.

A driver killed with SIGKILL takes Ray's GCS server and raylet with it, but Ray's dashboard agent
and runtime-env agent live on (about 210 MB together, for ever), and after a SIGTERM to the
whole process group its trial workers too (about 1 GB each).  `--auto-resume` ends them itself;
a plain `kill -9` (the kernel's out-of-memory killer, a job scheduler) has nobody to.  So while
a search runs, the processes that appeared below it since it began (Ray's, not a caller's) are
noted in OUT/.processes.json, rewritten when the set changes, with who wrote it (pid and start
time) and on which boot.  A search started in OUT later, holding the run's lock, ends those
still running, but only when the writer has ended and the notes are of this boot: a copy of a
running search's directory ends nothing, and a run directory moved after its search was
killed still ends what it left.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from fernas.io import atomic_write_json
from fernas.processes import boot_id, end_still_running, processes_below, start_time

NOTES = ".processes.json"
NOTES_VERSION = 2  # 2: the writer (pid, start time)
WATCH_S = 2.0  # Ray starts its agents within a second or two of ray.init; a /proc scan is milliseconds
STOP_WAIT_S = 3.0


class ProcessNotes:
    """Notes the processes below this one that were not there when it was made (the caller's
    own children are never noted) in OUT/.processes.json every WATCH_S seconds, in a thread,
    from `start()` to `stop()`.  The set only grows: a few processes per slot over a search."""

    def __init__(self, out: Path, every: float = WATCH_S):
        self.path, self.every = Path(out) / NOTES, every
        try:
            self.before = set(processes_below(os.getpid()).items())  # (pid, start time) already running
        except OSError:  # no /proc: nothing is noted (note() fails quietly)
            self.before = set()
        self.noted: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fernas-process-notes", daemon=True)

    def start(self) -> ProcessNotes:
        self._thread.start()
        return self

    def stop(self, wait: float = STOP_WAIT_S) -> None:
        """Stop noting; remove the notes once every noted process has ended (Ray's shutdown ends
        its agents within moments), or keep them for the next search here after `wait` seconds."""
        if not self._thread.is_alive():
            return  # never started: nothing noted
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + wait
        while any(start_time(pid) == started for pid, started in self.noted.items()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        self.path.unlink(missing_ok=True)

    def _watch(self) -> None:
        while True:
            self.note()
            if self._stop.wait(self.every):
                return

    def note(self) -> None:
        """Add the new processes now below this one to the notes; a failure here never ends a search."""
        try:
            below = {p: s for p, s in processes_below(os.getpid()).items() if (p, s) not in self.before}
            now = {**self.noted, **below}
            if now != self.noted:
                atomic_write_json(self.path, {"fernas_processes": NOTES_VERSION, "boot_id": boot_id(),
                                              "writer": [os.getpid(), start_time(os.getpid())],
                                              "processes": {str(p): s for p, s in now.items()}})
                self.noted = now
        except Exception:  # noqa: BLE001 - a full disk or a vanished /proc entry: noted next time
            pass


def left_running(out: Path) -> dict[int, str]:
    """The processes noted in OUT by a search that has ended that still run (pid -> start time):
    {} when there are none, or the notes are of another boot, of a writer still running (a copy
    of a running search's directory), or cannot be read."""
    notes = _processes_of_an_ended_search(_read_notes(out))
    return {p: s for p, s in (notes or {}).items() if start_time(p) == s}


def end_leftovers(out: Path) -> str | None:
    """End what `left_running(out)` names (the caller holds the run's lock) and drop the notes,
    also those of another fernas version; a line saying what was ended, or None."""
    notes = _read_notes(out)
    noted = _processes_of_an_ended_search(notes)
    if noted is None and (notes or {}).get("fernas_processes") in (None, NOTES_VERSION):
        return None  # none, unreadable, of another boot, or their search still runs
    ended = end_still_running(noted or {})  # only those still the same process
    (Path(out) / NOTES).unlink(missing_ok=True)
    if not ended:
        return None
    names = ", ".join(sorted({name for name, _ in ended.values()}))
    mb = sum(rss for _, rss in ended.values()) / 2**20
    return (f"fernas: ended {len(ended)} process{'es' if len(ended) > 1 else ''} left running by the search "
            f"killed earlier in {out} ({names}; {mb:.0f} MB)")


def _read_notes(out: Path) -> dict | None:
    """OUT's notes as read, or None (none, unreadable, not a JSON object)."""
    try:
        notes = json.loads((Path(out) / NOTES).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return notes if isinstance(notes, dict) else None


def _processes_of_an_ended_search(notes: dict | None) -> dict[int, str] | None:
    """The noted processes (pid -> start time) when the notes are of this version and boot and
    their writer has ended, else None.  The directory is not compared: a run moved after its
    kill still ends what it left, and a copy of a running search's has a writer that still runs."""
    try:
        if notes is None or notes["fernas_processes"] != NOTES_VERSION or notes["boot_id"] != boot_id():
            return None
        writer_pid, writer_start = notes["writer"]
        seen = {int(p): str(s) for p, s in notes["processes"].items()}
        writer_runs = start_time(int(writer_pid)) == writer_start
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None if writer_runs else seen
