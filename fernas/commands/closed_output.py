"""Output whose reader went away.  Writes go through `OutputWatch.guard(stream)`; the first
write that fails points that file descriptor at /dev/null, so later writes, Python's flush at
exit and the libraries' own lines go nowhere instead of raising.

- A closed pipe (EPIPE: `fernas evolve ... | head`, a killed `tee`): somebody stopped reading
  on purpose.  `OutputWatch.closed` names the stream and `on_closed` is told once; a search
  asks `closed` where it hands out trials and stops there, with exit status `STATUS`.
- A terminal that went away (EIO: a search started with `&` whose login session ended):
  nobody can read any more, but nobody asked for a stop either.  The lines are dropped and
  the search goes on (`OutputWatch.gone`).

A search cannot let the error rise from where it happens: lines are printed inside Ray
Tune's callbacks, and Tune swallows their exceptions with the search's state half-updated
(the search then waits for ever).
"""

from __future__ import annotations

import errno
import os
import select
import sys

STATUS = 141  # 128 + SIGPIPE: what a shell reports for a program its closed pipe ended


class OutputWatch:
    """Which of the guarded streams (if any) lost its reader."""

    def __init__(self, on_closed=None):
        self.closed: str | None = None  # "stdout" or "stderr": the first pipe that closed
        self.gone = False  # a terminal went away (EIO)
        self.on_closed = on_closed  # told once, with that name, after the descriptor is redirected

    def guard(self, stream):
        return GuardedStream(stream, self)

    def lost(self, stream, error: OSError) -> None:
        """`stream`'s write or flush failed with `error` (EPIPE or EIO)."""
        fd = _fd(stream)
        if fd is not None:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
                stream.flush()  # what the failed write left in the buffer goes to /dev/null now
            except (OSError, ValueError):
                pass
        if error.errno == errno.EIO:
            self.gone = True
        elif self.closed is None:
            self.closed = "stderr" if fd == 2 else "stdout"
            if self.on_closed is not None:
                self.on_closed(self.closed)


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None


def open_standard_descriptors() -> None:
    """Point descriptors 0-2 that the caller closed (`>&-`, `2>&-`, some daemon launchers) at
    /dev/null.  Left closed, the next file fernas opens would get the number, and a library's
    line to stdout or stderr would be written into a checkpoint; Python also sets the matching
    `sys` stream to None, which any print would trip on.  Their lines go nowhere, as asked."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself, 0-2 go in order
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", buffering=1 if fd else -1, closefd=False))


def closed_pipes(*streams) -> list:
    """Those of `streams` that are pipes whose reader closed them (poll reports an error)."""
    found = []
    for stream in streams:
        fd = _fd(stream)
        if fd is None:
            continue
        p = select.poll()
        p.register(fd, select.POLLOUT)
        if any(ev & select.POLLERR for _, ev in p.poll(0)):
            found.append(stream)
    return found


class GuardedStream:
    """A text stream (stdout, stderr) that reports a lost reader to its watch instead of raising."""

    def __init__(self, stream, watch: OutputWatch):
        self._stream = stream
        self._watch = watch

    def _call(self, method, *args):
        try:
            return method(*args)
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EIO:
                raise
            self._watch.lost(self._stream, exc)
            return None

    def write(self, text: str) -> int:
        n = self._call(self._stream.write, text)
        return len(text) if n is None else n

    def flush(self) -> None:
        self._call(self._stream.flush)

    def __getattr__(self, name):  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)
