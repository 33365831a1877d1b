"""`fernas evolve --auto-resume N`: the search in a child process, started again with `--resume`
when it dies, so that a crash at night costs minutes, not the night.

Each attempt is `fernas evolve` with the flags the user gave; a restart adds `--resume`, which
goes on from the GA checkpoint and trains nothing already recorded.  What counts as dying: a
signal other than a stop (SIGKILL from the kernel's out-of-memory killer, SIGSEGV in a native
library, SIGABRT), an exit status other than 0, 2, 141, 143 and 129, and exit status 2 (an error fernas
reports in one line) once the attempt had started its run (rewritten config.json: a full disk,
too many open files, a lost connection), and exit status 75 (a restart that found --address
unreachable: the head node may be coming back; restarted after a delay that doubles each time).
What does not restart: a finished run, bad input
found before the run started (restarting cannot fix it), a search whose output was closed
(status 141 or SIGPIPE: `| head` closes on a restart too), and a stop asked of this process
(SIGINT, SIGTERM, SIGHUP), which it passes on to the search (a terminal's Ctrl-C reaches the
search itself: they share a process group), or sent to the search itself (it ends with 143
or 129).  A signal this process was started ignoring
(`nohup` ignores SIGHUP) stays ignored, in the search too.  When an attempt ends, the processes
it left running below it are ended: Ray's dashboard and runtime-env agents outlive a driver
killed with SIGKILL (about 200 MB an attempt, for ever).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fernas.commands import closed_output
from fernas.errors import ClusterUnreachable
from fernas.processes import end_still_running, processes_below
from fernas.runinfo import timestamp

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEATHS_FILE = "auto_resume.json"  # in OUT: every attempt that died, when, why, whether it was restarted
RESTART_DELAY_S = 5.0  # no hot loop when a start keeps failing
MAX_DELAY_S = 300.0  # the longest wait between restarts that find the Ray cluster unreachable
# A restart that found --address unreachable exits TEMPFAIL (fernas.errors.ClusterUnreachable):
# the head node may come back, so it is restarted after a growing delay.
TEMPFAIL, ATTEMPT_ENV = ClusterUnreachable.TEMPFAIL, ClusterUnreachable.ATTEMPT_ENV
WATCH_S = 2.0  # how often the processes below an attempt are noted (a /proc scan: milliseconds)


def restart_reason(status: int, started: bool = False) -> str | None:
    """Why an attempt that ended with `status` (Popen's returncode: -N for signal N) is started
    again, or None when it is not: it finished, was asked to stop, or refused its input before
    its run started (`started`: it had rewritten the run's config.json)."""
    if status in (0, closed_output.STATUS, -signal.SIGPIPE) or (status == 2 and not started) or \
            status in [-s for s in STOPS] or status in (128 + signal.SIGTERM, 128 + signal.SIGHUP):
        return None  # a closed output (`| head`) would close on the restart too; 143, 129: a stop sent to the search
    if status == TEMPFAIL:
        return "the Ray cluster (--address) could not be reached"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}" + (" after its run had started" if status == 2 else "")


def _say(text: str) -> None:
    """A line on stderr; a closed stderr does not end the supervision."""
    print(text, file=closed_output.OutputWatch().guard(sys.stderr), flush=True)


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _terminal_sent(signum: int, tty: int | None) -> bool:
    """Whether a SIGINT most likely came from the controlling terminal (`tty`, an open
    /dev/tty), which sends it to its whole foreground process group, the search included:
    this process's group is that group."""
    try:
        return signum == signal.SIGINT and tty is not None and os.tcgetpgrp(tty) == os.getpgrp()
    except OSError:
        return False


def _open_tty() -> int | None:
    try:
        return os.open("/dev/tty", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:  # no controlling terminal (a job scheduler, a service)
        return None


def supervise(command, restarts: int, delay: float = RESTART_DELAY_S, stamp=lambda: None,
              record=lambda death: None, again: str = "--resume") -> int:
    """Run `command(attempt)` (the argv of attempt 0, 1, ...) until it ends without a reason to
    restart or `restarts` restarts are spent; the exit status is the last attempt's (128 + N
    for a signal N, as a shell reports it).  An attempt counts as started when `stamp()`
    differs after it from before it; `record(death)` is told of every attempt that died.  Stops
    asked of this process are passed on to the running attempt, which shares its process group
    (so a terminal's keys and window size reach it).  `again`: how to go on once the restarts
    are spent."""
    stops: list[int] = []
    child: list[subprocess.Popen] = []
    tty = _open_tty()

    def pass_on(signum, frame):  # no locks here: a signal may arrive inside any line below
        stops.append(signum)
        if child and child[-1].returncode is None and not _terminal_sent(signum, tty):
            try:
                os.kill(child[-1].pid, signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, pass_on) for s in STOPS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        attempt = unreachable = 0  # unreachable: restarts in a row that found the cluster down
        while True:
            before, started_at = stamp(), time.monotonic()
            if stops:
                return 128 + stops[0]
            child.append(subprocess.Popen(command(attempt), env={**os.environ, ATTEMPT_ENV: str(attempt)}))
            if stops:  # asked to stop while it was being started (it may have missed even a terminal's)
                os.kill(child[-1].pid, stops[0])
            status, left = _wait_watching(child[-1])
            end_still_running(left)  # a killed search leaves Ray's agents behind, about 200 MB an attempt
            reason = None if stops else restart_reason(status, started=stamp() != before)
            if reason is not None:
                record({"ended": timestamp(), "attempt": attempt + 1, "reason": reason,
                        "seconds": round(time.monotonic() - started_at, 1), "restarted": attempt < restarts})
            if reason is None or attempt >= restarts:
                if reason is not None:
                    _say(f"fernas: the search process ended ({reason}) and its {restarts} restart(s) are spent; "
                         f"continue it with  {again}")
                return 128 - status if status < 0 else status
            attempt += 1
            unreachable = unreachable + 1 if status == TEMPFAIL else 0
            wait = min(MAX_DELAY_S, delay * 2 ** unreachable) if unreachable else delay  # a head node restarting
            _say(f"fernas: the search process ended ({reason}) after {_duration(time.monotonic() - started_at)}; "
                 f"restart {attempt} of {restarts} with --resume in {wait:.0f} s")
            deadline = time.monotonic() + wait
            while not stops and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if tty is not None:
            os.close(tty)


def _wait_watching(proc: subprocess.Popen, every: float = WATCH_S) -> tuple[int, dict[int, str]]:
    """`proc`'s exit status, and the processes below it as last seen (pid -> start time)."""
    seen: dict[int, str] = {}
    while True:
        try:
            return proc.wait(timeout=every), seen
        except subprocess.TimeoutExpired:
            try:
                seen = processes_below(proc.pid)
            except Exception:  # noqa: BLE001 - noting must never end the supervision of a search
                pass


def python() -> list[str]:
    """This interpreter, to run fernas as this process does: `python -m` puts the working
    directory first on sys.path, which the `fernas` console script does not, and a directory
    holding another fernas checkout would then be imported instead (`-P`, Python 3.11+)."""
    cwd_first = sys.path[0] in ("", os.getcwd())
    return [sys.executable, *([] if cwd_first or sys.version_info < (3, 11) else ["-P"])]


def run_with_restarts(argv: list[str], out: str, restarts: int, resume: bool, go_on: str) -> None:
    """`fernas evolve` (argv: the arguments after `fernas`) with up to `restarts` restarts;
    `go_on`: the command that continues the run once they are spent.  This process becomes the
    supervisor by exec and never returns (same process id, so signals and a job scheduler still
    reach it), shedding torch and the rest that the flag checks imported: it waits for days in
    about 15 MB instead of 500."""
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = [*python(), "-m", __name__, str(restarts), out, str(int(resume)), go_on, *argv]
    os.execv(cmd[0], cmd)


def attempt_command(argv: list[str], out: str, resume: bool, fresh: bool, attempt: int, restarts: int = 0) -> list[str]:
    """Attempt `attempt`'s command line: the user's flags, with no restarts of its own (but
    knowing its supervisor's `restarts`, which its stop line names) and the run directory
    spelled out (a default `--out` holds the date and time of the first start); later flags win
    in argparse, so nothing is removed.  A restart resumes when the first attempt was to resume,
    or when OUT held no run before it (`fresh`) and holds one now: a run that was there before
    is never taken over by a restart."""
    again = resume or (attempt > 0 and fresh and (Path(out) / "config.json").is_file())
    return [*python(), "-m", "fernas", *argv, "--auto-resume", "0", f"--supervised-restarts={restarts}",
            f"--out={out}", *(["--resume"] if again else [])]


def _config_stamp(out: str):
    try:
        return (Path(out) / "config.json").stat().st_mtime_ns
    except OSError:
        return None


def record_death(out: str, death: dict) -> None:
    """Add an attempt that died to OUT/auto_resume.json (what happened overnight, for the
    morning), once OUT holds a run; a file that cannot be read or written is left as it is."""
    from fernas.io import atomic_write_json

    path = Path(out) / DEATHS_FILE
    if not (Path(out) / "config.json").is_file():
        return
    try:
        deaths = json.loads(path.read_text())["deaths"] if path.is_file() else []
        atomic_write_json(path, {"fernas_auto_resume": 1, "deaths": [*deaths, death]})
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:  # the restart matters more than its record
        _say(f"fernas: warning: {path} not updated ({type(exc).__name__}: {exc})")


def _supervise_evolve(restarts: int, out: str, resume: bool, go_on: str, argv: list[str]) -> int:
    fresh = not (Path(out) / "config.json").exists()
    return supervise(lambda attempt: attempt_command(argv, out, resume, fresh, attempt, restarts), restarts,
                     stamp=lambda: _config_stamp(out), record=lambda death: record_death(out, death), again=go_on)


if __name__ == "__main__":  # from run_with_restarts: RESTARTS OUT RESUME GO_ON ARGV...
    sys.exit(_supervise_evolve(int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5:]))
