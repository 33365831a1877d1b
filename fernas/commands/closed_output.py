"""Output whose reader went away: `fernas evolve ... | head`, a killed `tee`, a dropped ssh
session.  Writes go through `OutputWatch.guard(stream)`; the first write that finds the pipe
closed points that file descriptor at /dev/null (later writes, Python's flush at exit and the
libraries' own lines then go nowhere instead of raising) and tells `on_closed` once.

A search cannot let the BrokenPipeError rise from where it happens: lines are printed inside
Ray Tune's callbacks, and Tune swallows their exceptions with the search's state half-updated
(the search then waits for ever).  So the search asks `OutputWatch.closed` where it hands out
trials, and stops there.
"""

from __future__ import annotations

import os

STATUS = 141  # 128 + SIGPIPE: what a shell reports for a program its closed pipe ended


class OutputWatch:
    """Which of the guarded streams (if any) found its reader gone."""

    def __init__(self, on_closed=None):
        self.closed: str | None = None  # "stdout" or "stderr", the first that closed
        self.on_closed = on_closed  # called once, with that name, after the descriptor is redirected

    def guard(self, stream):
        return GuardedStream(stream, self)

    def lost(self, stream) -> None:
        fd = _fd(stream)
        if fd is not None:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
                stream.flush()  # what the failed write left in the buffer goes to /dev/null now
            except (OSError, ValueError):
                pass
        if self.closed is None:
            self.closed = "stderr" if fd == 2 else "stdout"
            if self.on_closed is not None:
                self.on_closed(self.closed)


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None


class GuardedStream:
    """A text stream (stdout, stderr) that reports a closed pipe to its watch instead of raising."""

    def __init__(self, stream, watch: OutputWatch):
        self._stream = stream
        self._watch = watch

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._watch.lost(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._watch.lost(self._stream)

    def __getattr__(self, name):  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)
