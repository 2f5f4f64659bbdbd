"""The error every stage raises for a problem the user must fix: printed as one line, exit 2."""


class StageError(RuntimeError):
    """A problem the user must fix before the stage can run; printed as one line."""
