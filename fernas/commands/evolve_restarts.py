"""`fernas evolve --restarts N`: the search in a child process, started again with `--resume`
when it dies, so that a crash at night costs minutes, not the night.

Each attempt is `fernas evolve` with the flags the user gave; a restart adds `--resume`, which
goes on from the GA checkpoint and trains nothing already recorded.  What counts as dying: a
signal other than a stop (SIGKILL from the kernel's out-of-memory killer, SIGSEGV in a native
library, SIGABRT) or an exit status other than 0 and 2.  What does not restart: a finished run
(0), a mistake in the input (2: restarting cannot fix it), and a stop that the user or a job
scheduler asked for (SIGINT, SIGTERM, SIGHUP), which this process passes on to the search.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RESTART_DELAY_S = 5.0  # no hot loop when a start keeps failing; the dead attempt's Ray agents end within a minute


def restart_reason(status: int) -> str | None:
    """Why an attempt that ended with `status` (Popen's returncode: -N for signal N) is started
    again, or None when it is not: it finished, the input was wrong, or it was asked to stop."""
    if status in (0, 2) or status in [-s for s in STOPS] or status in [128 + s for s in STOPS]:
        return None
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def attempt_argv(argv: list[str], out: str, resume: bool) -> list[str]:
    """The child's `fernas evolve` arguments: the user's, with no restarts of its own, the run
    directory spelled out (a default `--out` holds the date and time of the first start), and
    `--resume` once that directory holds a run.  Later flags win in argparse, so nothing is removed."""
    return [*argv, "--restarts", "0", "--out", out, *(["--resume"] if resume else [])]


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def supervise(command, restarts: int, delay: float = RESTART_DELAY_S) -> int:
    """Run `command(attempt)` (the argv of attempt 0, 1, ...) until it ends without a reason to
    restart or `restarts` restarts are spent; the exit status is the last attempt's (128 + N
    for a signal N, as a shell reports it).  SIGINT, SIGTERM and SIGHUP are passed on to the
    running attempt, which runs in its own session (so a terminal's Ctrl-C reaches it once)."""
    stop = threading.Event()
    stopped_by: list[int] = []
    child: list[subprocess.Popen] = []

    def pass_on(signum, frame):
        stopped_by.append(signum)
        stop.set()
        if child and child[-1].poll() is None:
            child[-1].send_signal(signum)

    old = {s: signal.signal(s, pass_on) for s in STOPS}
    try:
        attempt = 0
        while True:
            started = time.monotonic()
            child.append(subprocess.Popen(command(attempt), start_new_session=True))
            status = child[-1].wait()
            reason = None if stop.is_set() else restart_reason(status)
            if reason is None or attempt >= restarts:
                if reason is not None:
                    print(f"fernas: the search process ended ({reason}) and its {restarts} restart(s) are spent; "
                          "continue it with --resume", file=sys.stderr)
                return 128 - status if status < 0 else status
            attempt += 1
            print(f"fernas: the search process ended ({reason}) after {_duration(time.monotonic() - started)}; "
                  f"restart {attempt} of {restarts} with --resume in {delay:.0f} s", file=sys.stderr, flush=True)
            if stop.wait(delay):  # asked to stop while waiting: the run stays resumable
                return 128 + stopped_by[0]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_with_restarts(argv: list[str], out: str, restarts: int, resume: bool) -> int:
    """`fernas evolve` (argv: the arguments after `fernas`) with up to `restarts` restarts.
    This process becomes the supervisor by exec (same process id, so signals and a job
    scheduler still reach it), shedding torch and the rest the flag checks imported: it waits
    for days in about 15 MB instead of 500."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", __name__, str(restarts), out, str(int(resume)), *argv])


def _supervise_evolve(restarts: int, out: str, resume: bool, argv: list[str]) -> int:
    def command(attempt: int) -> list[str]:
        again = resume or (attempt > 0 and (Path(out) / "config.json").is_file())
        return [sys.executable, "-m", "fernas", *attempt_argv(argv, out, again)]

    return supervise(command, restarts)


if __name__ == "__main__":  # run_with_restarts: RESTARTS OUT RESUME ARGV...
    sys.exit(_supervise_evolve(int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4:]))
