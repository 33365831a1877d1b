"""SIGTERM and SIGHUP stop a long command (a search, a full training) as Ctrl-C does.

A job scheduler's time limit (SLURM sends SIGTERM, then SIGKILL after a grace time), a plain
`kill PID` and a closed terminal (SIGHUP) would otherwise end the process at once: a training
without a word on how to continue it, and a search with Ray's stack dump and status 1 (ray.init
installs a SIGTERM handler of its own) or, on SIGHUP, with its trial workers left running
(about 1 GB each).  Inside `stopping_as_ctrl_c()` they call the SIGINT handler of the moment
(Ray Tune's during a search: it ends the trials and returns) or raise KeyboardInterrupt, so
the command stops on Ctrl-C's path: it says how to continue and exits 128 + the signal's
number.  A signal the process was started ignoring (`nohup` ignores SIGHUP) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOPS = (signal.SIGTERM, signal.SIGHUP)
received: list[int] = []  # the stop signals that arrived inside the outermost block, in order
_handled: list[int] = []  # those the innermost block handles: not ignored when it began


@contextlib.contextmanager
def stopping_as_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP act as Ctrl-C in the block; the handlers before it come back after it.
    Outside the main thread, where Python takes no signal handler, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = list(_handled)
    if not outer:
        received.clear()
    old = {s: signal.getsignal(s) for s in STOPS}
    handled = [s for s in STOPS if old[s] is not signal.SIG_IGN]
    _handled[:] = handled
    install()
    try:
        yield
    finally:
        for s in handled:
            signal.signal(s, old[s] if old[s] is not None else signal.SIG_DFL)  # None: not Python's
        _handled[:] = outer


def install() -> None:
    """(Again) inside the block: after something replaced the handlers, as ray.init does."""
    if threading.current_thread() is not threading.main_thread():
        return  # the block did nothing there either
    for s in _handled:
        signal.signal(s, _as_ctrl_c)


@contextlib.contextmanager
def through_ray_init() -> Iterator[None]:
    """Around ray.init, which installs a SIGTERM handler of its own (`sys.exit(15)`: a silent exit
    with status 15 while Ray starts) and leaves it: a SIGTERM there stops as Ctrl-C does, and
    the block's handlers are installed again after."""
    try:
        yield
        install()  # inside the try: Ray's handler may still fire until this returns
    except SystemExit as exc:
        if exc.code != signal.SIGTERM or signal.SIGTERM not in _handled:
            raise
        received.append(signal.SIGTERM)
        raise KeyboardInterrupt from None


def exit_status() -> int:
    """The status a stopped command ends with: 128 + the first stop signal's number, 130 for Ctrl-C."""
    return 128 + received[0] if received else 128 + signal.SIGINT


def _as_ctrl_c(signum: int, frame) -> None:
    received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a script) or not Python's: stop all the same
        raise KeyboardInterrupt
