"""Errors that reach a user as one clear message instead of a traceback."""


class MicrocalcError(Exception):
    """A problem with the user's input, data or environment.

    The message must name the file, row, tag or setting at fault and say what to do;
    the command line prints it on stderr and exits with status 1, the server answers 4xx.
    """


class InputError(MicrocalcError, ValueError):
    """Bad input: a file that cannot be read, a value out of range, a missing column."""


class NotAvailableError(MicrocalcError, RuntimeError):
    """Something the request needs is not here (weights offline, a missing optional package)."""
