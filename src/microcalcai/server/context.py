"""What the HTTP layer knows about the current request and MONAI Label does not pass on.

MONAI Label hands an infer task only the merged params, not the query's `output` nor whether
`image` is the request's own upload; the infer route (routes.py) records both here.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST: ContextVar[dict | None] = ContextVar("microcalcai_request", default=None)


def current_request() -> dict:
    return REQUEST.get() or {}
