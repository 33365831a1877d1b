"""The search's elapsed time, summed over attempts, as `--time-budget` counts it.

The GA checkpoint records it with every trial's outcome, so a kill would lose the time since the
last outcome (a whole trial's, up to hours on a slow genome, and again at every kill of a
week-long `--auto-resume` search).  Between outcomes the driver also writes it every minute to
a small file of its own (`search_clock.json`); a resume starts from the larger of the two.
"""

from __future__ import annotations

import time
from pathlib import Path

from fernas.io import atomic_write_json, read_json_object

CLOCK_FILE = "search_clock.json"
TICK_SECONDS = 60.0  # about the most search time a kill loses (Tune's loop can block longer)


def earlier_seconds(out: Path, meta: dict) -> float:
    """Search time of the earlier attempts: the checkpoint's, or the clock file's when a kill
    came after the checkpoint's last outcome (the larger)."""
    clock = read_json_object(Path(out) / CLOCK_FILE) or {}
    return max(_seconds(meta.get("search_seconds")), _seconds(clock.get("search_seconds")))


def _seconds(value) -> float:
    """A stored number of seconds; 0 for anything else (a damaged file is not worth a crash)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return float(value) if ok and value > 0 else 0.0


class SearchClock:
    """This attempt's search time on the monotonic clock (an NTP step does not move it), on top
    of the earlier attempts'."""

    def __init__(self, out: Path, seconds_before: float, every: float = TICK_SECONDS):
        self.path = Path(out) / CLOCK_FILE
        self.seconds_before, self.every = seconds_before, every
        self.t0 = time.monotonic()
        self.last_tick: float | None = None  # the first tick writes

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.t0

    def tick(self) -> None:
        """Write the search time at the first call and then when a tick's worth has passed since
        the last write (called on every step of Tune's loop; cheap otherwise).  A failed write is
        not the search's end: the checkpoint still records the time at each outcome."""
        now = time.monotonic()
        if self.last_tick is not None and now - self.last_tick < self.every:
            return
        self.last_tick = now
        try:
            atomic_write_json(self.path, {"search_seconds": round(self.seconds(), 3)})
        except OSError:
            pass
