"""Domain errors carry their HTTP status; one set of handlers turns every failure into the
API's `{"error": {code, message, details}}` shape, so no client input can produce a bare 500."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.db import DATABASE_AWAY, storage_full

log = logging.getLogger("sala.server")


class SalaError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(SalaError):
    status, code = 404, "not_found"


class Conflict(SalaError):
    status, code = 409, "conflict"


class StaleLease(Conflict):
    code = "stale_lease"


class InvalidInput(SalaError):
    status, code = 422, "validation_error"


class Unauthorized(SalaError):
    status, code = 401, "unauthorized"


class Forbidden(SalaError):
    status, code = 403, "forbidden"


class PayloadTooLarge(SalaError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(SalaError):
    status, code = 415, "unsupported_media_type"


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or []}}


async def send_error(send, error: SalaError) -> None:
    """An error answered by plain ASGI middleware, before the app (and its handlers) see the request."""
    body = json.dumps(error_body(error.code, error.message, error.details)).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def field_path(loc: tuple | list) -> str:
    """`("body", "recipe", "tasks", 1, "type")` → `recipe.tasks[1].type`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _validation_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(e.get("msg", "") for e in errors if e.get("type") == "json_invalid")
        return JSONResponse(error_body("malformed", f"request body is not valid JSON: {msg}"), 400)
    details = [{"path": field_path(e.get("loc", ())), "message": e.get("msg", "")} for e in errors]
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:5])
    return JSONResponse(error_body("validation_error", f"invalid request: {summary}", details), 422)


def _sala_handler(_request: Request, exc: SalaError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=headers)


_HTTP_CODES = {400: "malformed", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large"}


def _http_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


class DatabaseUnavailable(SalaError):
    status, code = 503, "database_unavailable"


class StorageFull(SalaError):
    status, code = 503, "storage_full"


def _database_handler(request: Request, exc: Exception) -> JSONResponse:
    """The database went away or ran out of space: a 503 that says which, which workers retry."""
    if storage_full(exc):
        request.app.state.storage_full_at = time.monotonic()  # /readyz says not ready for a while
        error: SalaError = StorageFull("the database is out of space: the write was not stored; "
                                       "retry once space is freed")
    else:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        error = DatabaseUnavailable(f"the database is unreachable ({cause}); retry shortly")
    log.warning("%s %s: %s", request.method, request.url.path, error.message)
    return JSONResponse(error_body(error.code, error.message), error.status, headers={"Retry-After": "2"})


class Internal(SalaError):
    status, code = 500, "internal"


class CatchAll:
    """Any error no handler took becomes the API's 500, answered here: Starlette's last-resort
    handler re-raises after answering, and uvicorn then drops the kept-alive connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:  # nothing more can be said on this connection
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await send_error(send, Internal("internal server error"))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(SalaError, _sala_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    for away in DATABASE_AWAY:
        app.add_exception_handler(away, _database_handler)
