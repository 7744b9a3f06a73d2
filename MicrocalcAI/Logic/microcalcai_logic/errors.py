"""Errors the front ends show to a person as they are: one sentence saying what went wrong and
what to do. Front ends catch `LogicError` and display `str(error)`; anything else is a bug."""


class LogicError(Exception):
    """Something the user can fix (a missing input, an ROI outside the image, ...)."""


class ServerError(LogicError):
    """The server could not be reached, or it refused a request (its message is kept)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
