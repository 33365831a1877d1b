"""Error types shared by all stages.

`UserError` and its subclasses are mistakes a user can cause (bad file, bad genome,
bad flag). The CLI prints their message as one line on stderr and exits with status 2,
so each message names the file, the field and what was expected.
"""


class UserError(Exception):
    """An error the user caused; the CLI prints it on one line and exits 2."""


class GenomeError(UserError):
    """A genome document or vector is invalid (message names file and field)."""


class DataError(UserError):
    """A dataset is missing, malformed or empty (message names file and line)."""


class RunDirError(UserError):
    """An output directory holds another run, or a resume target is missing/corrupt."""


class OtherVersionError(RunDirError):
    """A run file written by another version of fernas: refused, never replaced by an older copy."""


class RunExistsError(RunDirError):
    """A run directory already holds another run (`path`); a command says how to resume it."""

    def __init__(self, path, what: str = "holds another run"):
        self.path, self.what = path, what
        super().__init__(f"{path}: {what}; resume it or choose another run directory")


class SettingError(UserError):
    """A setting whose value cannot work here (a device that is absent, more GPUs than exist).

    A `SettingError` names its setting as the code does (`gpus_per_trial`), not as a
    command-line flag; the CLI shows the flags instead (`as_flag`).  `hint` may name settings in braces:
    "{name}" is this one, "{labels}" another ("use {name} cpu or auto").
    """

    def __init__(self, setting: str, value, reason: str, hint: str = ""):
        self.setting, self.value, self.reason, self.hint = setting, value, reason, hint
        super().__init__(self._text(lambda s: s))

    def _text(self, show) -> str:
        names = _Names(show, self.setting)
        return f"{show(self.setting)} {self.value}: {self.reason}" + (
            f"; {self.hint.format_map(names)}" if self.hint else "")

    def as_flag(self) -> str:
        return self._text(lambda s: "--" + s.replace("_", "-"))


class ClusterUnreachable(SettingError):
    """--address cannot be reached or joined.  Bad input on a search's first start (exit status
    2); on an --auto-resume restart, whose attempt before reached it, a head node that is down
    for now: `status()` is EX_TEMPFAIL, which the supervisor restarts with a growing delay."""

    TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL
    ATTEMPT_ENV = "FERNAS_SUPERVISED_ATTEMPT"  # set by the --auto-resume supervisor: 1, 2, ... on restarts
    attempt = 0  # this process's (`take_attempt`)

    @classmethod
    def take_attempt(cls) -> None:
        """Read the supervisor's attempt number and remove it from the environment, so that no
        process started from here (Ray's, a trial's) takes itself for a restart."""
        import os

        text = os.environ.pop(cls.ATTEMPT_ENV, "0")
        cls.attempt = int(text) if text.isdigit() else 0

    @classmethod
    def status(cls) -> int:
        return cls.TEMPFAIL if cls.attempt > 0 else 2


class _Names(dict):
    """Setting names in a hint, shown as the reader knows them (a setting or a flag)."""

    def __init__(self, show, own: str):
        super().__init__()
        self.show, self.own = show, own

    def __missing__(self, key: str) -> str:
        return self.show(self.own if key == "name" else key)


class DataSettingError(SettingError, DataError):
    """A data setting (the source, the labels) that cannot work."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names epoch, step and lr.  Not the
    user's mistake: a search scores it as a failed trial, the CLI reports it on one line (exit 1)."""
