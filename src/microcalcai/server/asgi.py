"""MONAI Label's own FastAPI app, with MicrocalcAI's routes, request guard and error answers.

`microcalcai serve` runs `monailabel start_server --uvicorn_app microcalcai.server.asgi:app`.
What is changed here:
- the route table (routes.py): MONAI Label's routes MicrocalcAI needs, guarded; the others off;
- a guard that, before any parsing, asks for the bearer token when one is set
  (MICROCALCAI_TOKEN), refuses wrong content types (415) and bodies over the route's limit
  (413), counted as they stream, not only by Content-Length; and removes the request's files
  when it ends, whatever the outcome, and at start those a killed server left (uploads.py);
- CORS closed unless MICROCALCAI_CORS_ORIGINS names origins (MONAI Label allows any origin);
- exception handlers: a client's mistakes are 4xx `{"detail": message}` JSON, server faults a
  5xx JSON saying what failed; never a traceback or a server path.
"""

from __future__ import annotations

import hmac
import json
import logging
import os

from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from monailabel.app import app
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelException,
)
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from microcalcai.errors import InputError, MicrocalcError, NotAvailableError
from microcalcai.server import routes
from microcalcai.server.errors import ServerFault
from microcalcai.server.uploads import remove_orphaned_folders, request_scope, storage_fault

LOG = logging.getLogger(__name__)
DEFAULT_UPLOAD_MB = 256  # a 16-bit full-field mammogram is < 100 MB
SMALL_BODY_BYTES = 1 << 20  # labels, active-learning and training requests are JSON of a few KB
TOKEN_ENV = "MICROCALCAI_TOKEN"
CORS_ENV = "MICROCALCAI_CORS_ORIGINS"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_BODY_BYTES = _env_int("MICROCALCAI_MAX_UPLOAD_MB", DEFAULT_UPLOAD_MB) << 20

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# (method, path prefix) -> accepted content types of a non-empty body, largest body
_BODY_RULES = (
    ("POST", "/infer/", _FORM_TYPES, None),
    ("PUT", "/datastore/image", ("multipart/form-data",), None),
    ("PUT", "/datastore/label", ("multipart/form-data",), SMALL_BODY_BYTES),
    ("POST", "/activelearning/", ("application/json",), SMALL_BODY_BYTES),
    ("POST", "/train/", ("application/json",), SMALL_BODY_BYTES),
)


class BodyTooLarge(HTTPException):
    """Raised from the body stream: FastAPI passes HTTPExceptions raised while parsing through."""


def _reply(status: int, detail: str, headers: dict | None = None):
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]

    async def send_it(send):
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return send_it


def _too_large(limit: int, size: int | None = None, *, files: bool = True) -> str:
    told = f"of {size} bytes " if size is not None else ""
    advice = (
        "send the ROI crop instead of the whole study"
        if files
        else "this route takes one annotation or a short JSON request, not a file"
    )
    return f"request body {told}is larger than this route takes ({limit} bytes); {advice}"


class ClosedCORS(CORSMiddleware):
    """Starlette's CORS, answering a refused preflight in JSON like every other refusal."""

    def preflight_response(self, request_headers):
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        return JSONResponse(
            status_code=400,
            content={
                "detail": f"{response.body.decode(errors='replace')}: this server takes browser "
                "requests only "
                "from the origins given to `microcalcai serve --cors-origin`"
            },
        )


class RequestGuard:
    """Pure ASGI middleware, so what it sets for a request reaches the endpoint's task."""

    def __init__(self, inner, token: str | None = None):
        self.inner = inner
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or "")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope["method"], scope["path"]
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        # A browser's CORS preflight never carries credentials; CORS (inside) answers it.
        if self.token and not preflight and not _authorised(headers.get("authorization", ""), self.token):
            return await _reply(
                401,
                "this server asks for its access token: send the header 'Authorization: Bearer TOKEN' "
                "(the token given to `microcalcai serve` with --token or MICROCALCAI_TOKEN)",
                {"www-authenticate": "Bearer"},
            )(send)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        length = headers.get("content-length")
        has_body = (length is not None and length not in ("", "0")) or "transfer-encoding" in headers
        limit, files = MAX_BODY_BYTES, True
        for rule_method, prefix, accepted, rule_limit in _BODY_RULES:
            if method == rule_method and path.startswith(prefix):
                limit, files = rule_limit or MAX_BODY_BYTES, rule_limit is None
                if has_body and content_type not in accepted:
                    return await _reply(
                        415,
                        f"{method} {path} takes a body of type {' or '.join(accepted)}, "
                        f"got {content_type or 'none'}; see docs/server-api.md",
                    )(send)
        if length is not None and length.isdigit() and int(length) > limit:
            return await _reply(413, _too_large(limit, int(length), files=files))(send)
        started = False

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = _relative_redirect(message)
            await send(message)

        try:
            with request_scope():
                await self.inner(scope, _limited(receive, limit, files), watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _reply(413, exc.detail)(send)


def _relative_redirect(start: dict) -> dict:
    """Starlette's slash redirect (/info -> /info/) writes the request's Host header into its
    Location: a client that sends another Host would be sent to another server. The path alone
    is enough for any client to follow."""
    if start.get("status") not in (301, 302, 307, 308):
        return start
    from urllib.parse import urlsplit, urlunsplit

    headers = []
    for key, value in start.get("headers", []):
        if key.lower() == b"location":
            parts = urlsplit(value.decode("latin-1"))
            # one leading slash: "//host/..." would name another server to a browser
            path = "/" + parts.path.lstrip("/")
            value = urlunsplit(("", "", path, parts.query, "")).encode("latin-1")
        headers.append((key, value))
    return {**start, "headers": headers}


def _authorised(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _limited(receive, limit: int, files: bool):
    """The body stream, refused once more than `limit` bytes came (chunked bodies included)."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(413, _too_large(limit, files=files))
        return message

    return wrapped


# -- error answers ------------------------------------------------------------------------------
def _json(status: int, detail, **extra) -> JSONResponse:
    """`detail` must already be free of server paths (scrub what came from an exception)."""
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


async def _input_error(request, exc: InputError):
    return _json(getattr(exc, "status", 400), routes.scrub(str(exc)))


async def _microcalc_error(request, exc: MicrocalcError):
    return _json(503 if isinstance(exc, NotAvailableError) else 400, routes.scrub(str(exc)))


async def _monailabel_error(request, exc: MONAILabelException):
    if isinstance(exc, (ImageNotFoundException, LabelNotFoundException)):
        status = 404
    elif "There is no" in exc.msg or "not Initialized" in exc.msg:
        status = 404
    else:
        status = 400
    return _json(status, routes.scrub(exc.msg), error=exc.error.value)


async def _json_error(request, exc: json.JSONDecodeError):
    return _json(400, routes.scrub(f"the params form field is not valid JSON: {exc}"))


async def _http_error(request, exc: HTTPException):
    detail = routes.scrub(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path} on this server; docs/server-api.md lists them"
    elif exc.status_code == 405:
        detail = f"{request.url.path} does not take {request.method}; docs/server-api.md lists the routes"
    elif exc.status_code >= 500:
        LOG.error("%s %s: %s", request.method, request.url.path, detail)
        detail = f"the server failed to answer {request.method} {request.url.path}: {detail}"
    return _json(exc.status_code, detail)


async def _validation_error(request, exc: RequestValidationError):
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {routes.scrub(str(error.get('msg', 'invalid')))}")
    return _json(422, "; ".join(problems) or "malformed request")


async def _server_fault(request, exc: ServerFault):
    LOG.error("%s %s: %s", request.method, request.url.path, exc)
    return _json(exc.status, routes.scrub(str(exc)))


async def _os_error(request, exc: OSError):
    LOG.exception("%s %s failed", request.method, request.url.path)
    fault = storage_fault(exc, f"answer {request.method} {request.url.path}")
    return _json(fault.status, str(fault))


async def _any_error(request, exc: Exception):
    # The traceback goes to the server's log; the client learns what failed, not how.
    return _json(
        500,
        f"the server failed to answer {request.method} {request.url.path} ({type(exc).__name__}); "
        "the server's log has the details",
    )


def _cors_origins() -> list[str]:
    return [o.strip() for o in os.environ.get(CORS_ENV, "").split(",") if o.strip() and o.strip() != "*"]


def configure(application) -> None:
    routes.install(application)
    # MONAI Label allows every origin with credentials; a browser page from anywhere could then
    # drive this server. Only origins named in MICROCALCAI_CORS_ORIGINS are allowed, no cookies.
    middleware = [Middleware(RequestGuard)]
    middleware += [m for m in application.user_middleware if m.cls is not CORSMiddleware]
    origins = _cors_origins()
    if origins:
        middleware.append(
            Middleware(
                ClosedCORS,
                allow_origins=origins,
                allow_credentials=False,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["authorization", "content-type"],
            ),
        )
    application.user_middleware[:] = middleware
    application.add_exception_handler(InputError, _input_error)
    application.add_exception_handler(MicrocalcError, _microcalc_error)
    application.add_exception_handler(MONAILabelException, _monailabel_error)
    application.add_exception_handler(json.JSONDecodeError, _json_error)
    application.add_exception_handler(HTTPException, _http_error)
    application.add_exception_handler(RequestValidationError, _validation_error)
    application.add_exception_handler(ServerFault, _server_fault)
    application.add_exception_handler(OSError, _os_error)
    application.add_exception_handler(Exception, _any_error)
    remove_orphaned_folders()


configure(app)
