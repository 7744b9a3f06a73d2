"""Errors the front ends show to a person as they are: one sentence saying what went wrong and
what to do. Front ends catch `LogicError` and display `str(error)`; anything else is a bug."""


class LogicError(Exception):
    """Something the user can fix (a missing input, an ROI outside the image, ...)."""


class ServerError(LogicError):
    """The server could not be reached, or it refused a request (its message is kept)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def user_message(error: BaseException) -> str:
    """What a front end shows for an exception: the Logic's own sentence, or for a bug a short
    line pointing at the log (the traceback goes to the log, never into a dialog)."""
    if isinstance(error, LogicError):
        return str(error)
    return (
        f"Unexpected error ({type(error).__name__}: {error}). The details are in the application's "
        "log; please report them."
    )
