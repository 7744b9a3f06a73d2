"""Errors a client can cause, each carrying the HTTP status it is answered with.

The server turns these (and the library's InputError) into `{"detail": message}` JSON answers
in `microcalcai.server.asgi`; anything else stays a 500.
"""

from __future__ import annotations

from microcalcai.errors import InputError


class RequestError(InputError):
    """Bad request input; `status` is the HTTP status code the client gets."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFound(RequestError):
    status = 404


class TooLarge(RequestError):
    status = 413


class UnsupportedMedia(RequestError):
    status = 415


class Conflict(RequestError):
    status = 409


class Unauthorized(RequestError):
    status = 401


class ServerFault(Exception):
    """Something on the server's side failed (disk full, read-only folder): a 5xx JSON answer
    that says what failed, never the traceback or the server's paths."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status
