"""Atomic file writes (a temporary file in the same directory, then `os.replace`) and the
lock that keeps two processes out of one run directory.

A run killed at any moment leaves either the old file or the new one, never half of one.
Also: the copy kept before a rewrite (`keep_previous`, `previous_path`: checkpoint.prev.json),
`best_effort` (an optional output step whose failure is one warning line), the readers of
JSON run files (`read_json_object`, `read_versioned_json`), `refuse_file_in_path` and
`json_type`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

LOCK_NAME = ".lock"


def _read_umask() -> int:
    # Read once at import: os.umask() can only be read by setting it, which would race
    # with other threads (Ray's driver has several) creating files meanwhile.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(fh)` on a temporary file beside `path`, then put it in place with
    `os.replace`: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask).
        os.chmod(tmp, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and (not exc.filename or exc.filename == tmp):
            # a full disk, a directory in the way: the file asked for, not the temporary one beside it
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def read_json_object(path: Path) -> dict | None:
    """The JSON object in `path`; None when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None
    return obj if isinstance(obj, dict) else None


def previous_path(path: str | Path) -> Path:
    """Where the copy before the current file is kept: checkpoint.json -> checkpoint.prev.json."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def keep_previous(path: Path) -> None:
    """Make the current file the previous copy (a hard link put in place atomically), before
    the file is replaced: a disk that loses the next write still has the one before."""
    prev = previous_path(path)
    # A name no earlier process left behind (a kill between link and replace leaves its file;
    # a container's fernas often has the same pid every start).
    tmp = prev.with_name(f".{prev.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        try:
            os.link(path, tmp)
        except OSError:  # a file system without hard links: a plain copy, also atomic
            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def best_effort(what: str, hint: str, fn: Callable, *args, **kwargs) -> bool:
    """Run an optional output step (an export, a report) after a run's results are safe: a
    failure is one warning line on stderr naming `what` and the command that redoes it
    (`hint`), never the end of a run that has finished.  True when it worked."""
    import sys

    try:
        fn(*args, **kwargs)
        return True
    except Exception as exc:  # whatever the step raised: the run's own files are already written
        from fernas.errors import first_line

        print(f"fernas: warning: {what} not written ({type(exc).__name__}: {first_line(exc)}); {hint}",
              file=sys.stderr, flush=True)
        return False


def refuse_file_in_path(out: Path) -> None:
    """A file where `out` (a path given as --out) needs a directory (`afile/x`): a UserError
    saying so, before any work, instead of the 'File exists' that making the directory raises."""
    from fernas.errors import UserError

    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{parent}: not a directory (in --out {out})")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` straight into a temporary file (no copy of the checkpoint in memory), so a
    checkpoint is never half-written."""
    import torch

    def save(fh) -> None:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # torch's zip writer reports a failed write so ("unexpected pos ...")
            if not any(s in str(exc) for s in TORCH_WRITE_ERRORS):
                raise
            code = _failing_write_errno(fh, Path(path).parent)
            raise OSError(code, os.strerror(code), str(path)) from None

    atomic_write(path, save)


def _failing_write_errno(fh: IO[bytes], folder: Path) -> int:
    """The error a write into `fh` fails with now (torch's writer hides it): a plain 1 MiB write
    tells a full disk (ENOSPC) from a quota (EDQUOT) or an I/O error; when that write succeeds,
    ENOSPC if under 1 MiB is free, else EIO."""
    try:
        fh.flush()
        os.write(fh.fileno(), bytes(1 << 20))
        os.fsync(fh.fileno())
    except OSError as exc:  # a stale or lost mount (ESTALE, ENOTCONN, ...) is the storage's fault too: EIO
        return exc.errno if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else errno.EIO
    return errno.ENOSPC if shutil.disk_usage(folder).free < (1 << 20) else errno.EIO


# How torch.save's zip writer words a write that failed (a full disk, an I/O error).
TORCH_WRITE_ERRORS = ("inline_container.cc", "PytorchStreamWriter", "file write failed")


def lock_run_dir(path: str | os.PathLike) -> IO | None:
    """Hold an exclusive lock on PATH/.lock while the returned file stays open.

    A second fernas process (a double `--resume`, a new run aimed at a running one) gets a
    RunDirError naming the holder instead of interleaving its checkpoints with the first's.
    `flock` locks die with their process, so a run killed with SIGKILL leaves no stale lock.
    None where locks are unsupported (not POSIX, a file system without flock): a warning, no lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the atomic writes still hold)
        return None
    import errno
    import socket
    import sys

    from fernas.errors import RunDirError

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fh = open(path / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirError(f"{path}: in use by another fernas process ({holder or 'unknown'}); "
                              "wait for it to end or stop it first") from None
        print(f"warning: {path}: cannot lock ({exc.strerror}); make sure no other fernas process uses "
              "this run directory", file=sys.stderr)
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    fh.flush()
    return fh


@contextlib.contextmanager
def run_dir_lock(path: str | os.PathLike) -> Iterator[None]:
    """`lock_run_dir` for a block; a directory the block created and left empty is removed again,
    so a run that fails before writing anything (bad data, no GPU) leaves nothing behind."""
    path = Path(path)
    created = not path.exists()
    fh = lock_run_dir(path)
    try:
        yield
    finally:
        if created and path.is_dir() and [p.name for p in path.iterdir()] == [LOCK_NAME]:
            (path / LOCK_NAME).unlink(missing_ok=True)  # while still holding it
            with contextlib.suppress(OSError):
                path.rmdir()
        if fh is not None:
            fh.close()


def atomic_write_csv(path: str | os.PathLike, fieldnames: list[str], rows: list[dict], digits: int | None = 6) -> None:
    """A CSV with a header row, written atomically; floats to `digits` significant digits (None:
    in full), None as ''."""
    import csv
    import io

    def cell(v: Any) -> Any:
        return "" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) and digits else v)

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: cell(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def json_type(value: Any) -> str:
    """What a parsed JSON value is, by JSON's own names (null, boolean, number, string, array,
    object): the user wrote JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "boolean"
    for kinds, name in (((int, float), "number"), (str, "string"), ((list, tuple), "array"), (dict, "object")):
        if isinstance(value, kinds):
            return name
    return type(value).__name__


# The version keys of the run directories' config.json, and what each is
RUN_KINDS = {"fernas_evolve_run": "the config.json of a search (fernas evolve)",
             "fernas_train_run": "the config.json of a training run (fernas train or decode --train)"}


def read_versioned_json(path: str | os.PathLike, key: str, version: int | tuple[int, ...], what: str) -> dict:
    """A JSON object fernas wrote, holding `key: version` (files from before versions were
    written count as version 1).  A missing file raises
    FileNotFoundError (callers say what its absence means); a corrupt one or one of another
    version is a RunDirError naming the file, the version found and the one expected."""
    from fernas.errors import OtherVersionError, RunDirError

    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise RunDirError(f"{path}: corrupt {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: corrupt {what} (expected a JSON object, found {type(obj).__name__})")
    if key not in obj:
        other = next((k for k in obj if k in RUN_KINDS), None)
        if other:  # another command's run: named as such, not as version 1 of this one
            raise RunDirError(f"{path}: {RUN_KINDS[other]}, not a {what}")
        if not obj:
            raise RunDirError(f"{path}: corrupt {what} (an empty object)")
    found = obj.get(key, 1)
    readable = version if isinstance(version, tuple) else (version,)
    if found not in readable:
        raise OtherVersionError(f"{path}: {what} version {found!r}, this fernas reads version "
                                f"{' or '.join(map(str, readable))}; "
                          "start a new run (runs of other versions are not resumed)")
    return obj
