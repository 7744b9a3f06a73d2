"""MONAI Label's own FastAPI app, with MicrocalcAI's request guard and error answers.

`microcalcai serve` runs `monailabel start_server --uvicorn_app microcalcai.server.asgi:app`:
every route is MONAI Label's; what is added here is
- a guard that refuses wrong content types (415) and oversized bodies (413) before any parsing,
  and records the query's `output` and `image` for the infer task (context.py);
- exception handlers that answer a client's mistakes as 4xx `{"detail": message}` JSON instead
  of MONAI Label's bare 500.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs

from fastapi.responses import JSONResponse
from monailabel.app import app
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelException,
)

from microcalcai.errors import InputError, MicrocalcError, NotAvailableError
from microcalcai.server.context import REQUEST
from microcalcai.server.train_routes import install_train_routes

LOG = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 30  # a 16-bit full-field mammogram is < 100 MB; 1 GiB is no mammogram

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# (method, path prefix) -> accepted content types of a non-empty body
_BODY_RULES = (
    ("POST", "/infer/", _FORM_TYPES),
    ("PUT", "/datastore/label", ("multipart/form-data",)),
    ("PUT", "/datastore/image", ("multipart/form-data",)),
    ("POST", "/activelearning/", ("application/json",)),
    ("POST", "/train/", ("application/json",)),
)


def _reply(status: int, detail: str):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def send_it(send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return send_it


class RequestGuard:
    """Pure ASGI middleware, so context variables it sets reach the endpoint's task."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope["method"], scope["path"]
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return await _reply(
                413,
                f"request body of {int(length)} bytes is larger than {MAX_BODY_BYTES}; "
                "send the ROI crop instead of the whole study",
            )(send)
        has_body = (length is not None and length not in ("", "0")) or "transfer-encoding" in headers
        for rule_method, prefix, accepted in _BODY_RULES:
            if (
                method == rule_method
                and path.startswith(prefix)
                and has_body
                and content_type not in accepted
            ):
                return await _reply(
                    415,
                    f"{method} {path} takes a body of type {' or '.join(accepted)}, "
                    f"got {content_type or 'none'}; see docs/server-api.md",
                )(send)
        token = None
        if method == "POST" and path.startswith("/infer/"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            state = {
                "output": (query.get("output") or [None])[0],
                "image": (query.get("image") or [""])[0],
                "multipart": content_type == "multipart/form-data",
            }
            token = REQUEST.set(state)
            receive = _watch_upload_name(receive, state)
        try:
            await self.inner(scope, receive, send)
        finally:
            if token is not None:
                REQUEST.reset(token)


_UPLOAD_NAME = re.compile(rb'name="file"; filename="([^"\r\n]{1,200})"')


def _watch_upload_name(receive, state: dict):
    """Note the uploaded file's own name as the body streams by, so messages can name it."""
    seen = bytearray()

    async def wrapped():
        message = await receive()
        if "upload_name" not in state and message.get("type") == "http.request" and len(seen) < 65536:
            seen.extend(message.get("body", b"")[:65536])
            match = _UPLOAD_NAME.search(seen)
            if match:
                state["upload_name"] = match.group(1).decode("utf-8", "replace")
        return message

    return wrapped


async def _input_error(request, exc: InputError):
    status = getattr(exc, "status", 400)
    return JSONResponse(status_code=status, content={"detail": str(exc)})


async def _microcalc_error(request, exc: MicrocalcError):
    status = 503 if isinstance(exc, NotAvailableError) else 400
    return JSONResponse(status_code=status, content={"detail": str(exc)})


async def _monailabel_error(request, exc: MONAILabelException):
    if isinstance(exc, (ImageNotFoundException, LabelNotFoundException)):
        status = 404
    elif "There is no" in exc.msg or "not Initialized" in exc.msg:
        status = 404
    else:
        status = 400
    return JSONResponse(status_code=status, content={"detail": exc.msg, "error": exc.error.value})


async def _json_error(request, exc: json.JSONDecodeError):
    return JSONResponse(
        status_code=400, content={"detail": f"the params form field is not valid JSON: {exc}"}
    )


app.add_middleware(RequestGuard)
install_train_routes(app)  # checks and the cross-restart lock in front of /train/
app.add_exception_handler(InputError, _input_error)
app.add_exception_handler(MicrocalcError, _microcalc_error)
app.add_exception_handler(MONAILabelException, _monailabel_error)
app.add_exception_handler(json.JSONDecodeError, _json_error)
