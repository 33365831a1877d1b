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
