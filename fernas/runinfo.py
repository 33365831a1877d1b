"""What every run records about itself and prints: library versions, durations, and whether a
resume loaded the data the run recorded."""

from __future__ import annotations

import importlib
import platform

from fernas import __version__


def versions(*packages: str) -> dict:
    """fernas, Python, the platform and the versions of `packages` (those importable)."""
    out = {"fernas": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in packages:
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = None
    return out


def timestamp(t: float | None = None) -> str:
    """A moment (now, or the epoch seconds `t`) as the runs record it: local time with its UTC
    offset, '2026-12-08T04:05:06+01:00' (readable, and comparable across time zones)."""
    from datetime import datetime

    return (datetime.now() if t is None else datetime.fromtimestamp(t)).astimezone().isoformat(timespec="seconds")


def local_time(text) -> str | None:
    """A recorded moment as this machine's local time, 'YYYY-MM-DDTHH:MM:SS' (how `fernas runs`
    shows and sorts them); one without an offset (older runs) is taken as local; None for
    anything that is not a moment."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.isoformat(timespec="seconds")


def fmt_duration(seconds: float) -> str:
    """'4m07s' below an hour, '2h05m' above."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds of '90m', '2h', '1h30m', '45s', '1d' or a bare number of seconds; ValueError otherwise."""
    t = str(text).strip().lower()
    try:
        return float(t)
    except ValueError:
        pass
    total, num = 0.0, ""
    for ch in t:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in _UNITS and num:
            total, num = total + float(num) * _UNITS[ch], ""
        else:
            raise ValueError(text)
    if num or not t:
        raise ValueError(text)
    return total


def refuse_other_data(recorded: dict, size_keys: tuple, classes, sizes, source: str, run) -> None:
    """A RunDirError when the data a resume loaded (`classes`, `sizes`: train, val, test images)
    differs from what the run recorded (`recorded`: its config.json's "data", the sizes under
    `size_keys`); nothing recorded, nothing to compare.  A resume must not mix results measured
    on two datasets (a file edited, or a folder read another way)."""
    from fernas.errors import RunDirError

    parts = []
    if recorded.get("classes") is not None and list(recorded["classes"]) != list(classes):
        parts.append(f"classes {','.join(recorded['classes'])} then, {','.join(classes)} now")
    then = [recorded.get(k) for k in size_keys]
    if None not in then and then != list(sizes):
        parts.append(f"{'/'.join(map(str, then))} train/val/test images then, {'/'.join(map(str, sizes))} now")
    if parts:
        raise RunDirError(f"{source}: not the data the run in {run} began with ({'; '.join(parts)}: the data, or how "
                          "this fernas reads it, changed); a run keeps its data: restore it, or start a new run")
