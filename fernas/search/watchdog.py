"""A trial that stops making progress (a deadlock, a stuck data read) is ended: `TrialWatchdog`.

The watchdog is a daemon thread beside the trial's training thread.  The trial beats it at
the end of every epoch; when no beat comes within the allowed time, the watchdog raises
`TrialTimeout` inside the training thread (`PyThreadState_SetAsyncExc`, delivered at its next
Python bytecode), so the trial ends as a `failed` outcome with the reason and the worker
lives on.  A thread stuck inside C code never runs that bytecode: after a grace time (`GRACE_S`,
or the allowed time when shorter) the watchdog writes the reason to the trial's `marker` file
and ends the worker process.  Tune retries a dead worker's trial; the retry finds the marker
(`stuck_reason`) and reports the failure at once instead of hanging a second time.

Allowed time: `--trial-timeout SECONDS` per epoch when given; by default (`auto`) the first
epoch may take `FIRST_EPOCH_S` and every later one `FACTOR` times the slowest epoch so far
(at least `MIN_EPOCH_S`): a trial's own speed says what "stuck" means for it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

FIRST_EPOCH_S = 3600.0
FACTOR = 10.0
MIN_EPOCH_S = 300.0
GRACE_S = 30.0


class TrialTimeout(Exception):
    """Raised in a trial's thread when it made no progress for too long."""


class TrialWatchdog:
    """`with TrialWatchdog(limit):` around a trial; `beat()` after every epoch.  `limit`: seconds
    per epoch, 0 = derived from the trial's speed (see the module)."""

    def __init__(self, limit: float = 0.0, poll_s: float = 1.0, marker: str | None = None):
        self.limit, self.poll_s, self.marker = float(limit), poll_s, marker
        self.target = threading.get_ident()
        self.last = time.monotonic()
        self.slowest = 0.0
        self.fired_at: float | None = None
        self.reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="fernas-trial-watchdog")

    def allowed(self) -> float:
        if self.limit > 0:
            return self.limit
        return FIRST_EPOCH_S if self.slowest == 0 else max(MIN_EPOCH_S, FACTOR * self.slowest)

    def beat(self) -> None:
        now = time.monotonic()
        self.slowest = max(self.slowest, now - self.last)
        self.last = now

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            waited = time.monotonic() - self.last
            if self.fired_at is None and waited > self.allowed():
                how = "--trial-timeout" if self.limit > 0 else "--trial-timeout auto: its slowest epoch x10, first 1 h"
                self.reason = f"timed out: no epoch ended within {self.allowed():.0f} s ({how})"
                self.fired_at = time.monotonic()
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.py_object(TrialTimeout))
            elif self.fired_at is not None and time.monotonic() - self.fired_at > min(GRACE_S, self.allowed()):
                print(f"fernas: {self.reason}; the trial does not respond, ending its worker", file=sys.stderr,
                      flush=True)
                if self.marker:
                    from fernas.io import atomic_write_text

                    atomic_write_text(self.marker, f"{self.reason}; it did not respond and its worker was ended")
                os._exit(4)

    def __enter__(self) -> "TrialWatchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.fired_at is not None and exc[0] is None:
            # the exception may still be pending (the thread was between bytecodes): clear it
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), None)


def stuck_reason(marker: str | None) -> str | None:
    """The reason a watchdog wrote before it ended this trial's earlier worker (the file is
    removed: the retry reports it once), or None."""
    if not marker or not os.path.exists(marker):
        return None
    with open(marker) as fh:
        reason = fh.read().strip()
    os.remove(marker)
    return reason or "timed out"
