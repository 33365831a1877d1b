"""Processes by /proc: which run below a process, which one a process id names, and ending those a
killed search left behind.

A process id alone may have been reused; with its start time (clock ticks after boot, field 22 of
/proc/PID/stat) and the boot id it names one process.  Standard library only: the
`--auto-resume` supervisor imports this and waits for days in about 15 MB.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def processes_below(pid: int) -> dict[int, str]:
    """The processes below `pid`, with their start times (pid -> start time)."""
    parent, start = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = _stat(d.name)
                parent[int(d.name)], start[int(d.name)] = int(fields[1]), fields[19]
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update({c: start[c] for c in kids})
        todo.extend(kids)
    return found


def start_time(pid: int) -> str | None:
    """When process `pid` started; None when it is gone (a zombie has ended: only its exit
    status waits for its parent, which a container's init may collect late)."""
    try:
        fields = _stat(pid)
        return None if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        return None


def boot_id() -> str | None:
    """This boot of this machine (start times count from it); None without /proc."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def describe(pid: int) -> tuple[str, int]:
    """(name, resident bytes) of a running process: Ray names its agents `ray::DashboardAgent`."""
    try:
        name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return "?", 0
    return os.path.basename(name) if name.startswith("/") else name, rss


def end_still_running(seen: dict[int, str]) -> dict[int, tuple[str, int]]:
    """SIGKILL those of `seen` (pid -> start time) that are still the same processes; what each
    was (pid -> (name, resident bytes)).  Ray's agents ignore SIGTERM."""
    ended = {}
    for pid, started in seen.items():
        if start_time(pid) != started:
            continue
        what = describe(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        ended[pid] = what
    return ended


def _stat(pid) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...; start time at 19)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
