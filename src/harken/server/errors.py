"""Every error leaves the server as the OpenAI envelope: {"error": {message, type, param, code}}.

This is the one place that maps errors to HTTP. HarkenError subclasses carry their status and
code; request validation, unknown routes and wrong methods are translated here; anything else
is a bug, logged with its traceback and answered with a bare 500 that reveals nothing, on a
connection that stays open for the client's next request.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harken.errors import HarkenError, error_type

__all__ = [
    "CatchAll", "ERROR_RESPONSES", "ErrorEnvelope", "error_response", "error_responses", "install_error_handlers", "envelope",
]

log = logging.getLogger("harken.server")


def envelope(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """The OpenAI error shape every non-2xx answer has."""

    error: _ErrorBody


_MEANINGS = {
    400: "bad request: an option, a path or the audio is unusable",
    401: "missing or invalid API key",
    403: "a path, host or model this server does not allow",
    404: "no such model, job, file or folder",
    413: "the request body, a file or the audio is larger or longer than allowed",
    415: "not decodable audio",
    422: "the request does not match the schema",
    429: "rate limit, or too many failed API keys; see Retry-After",
    500: "a bug in harken (logged); the answer says nothing more",
    503: "the model is loading or missing, the queue is full, or the request ran out of time",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """The OpenAPI `responses=` entry for error statuses, each answered with the envelope.

    A route names only what it (or what it calls) can really answer, on top of ERROR_RESPONSES.
    A route with any parameter should name 422: FastAPI otherwise documents its own 422 shape,
    which this server never sends.
    """
    return {status: {"model": ErrorEnvelope, "description": _MEANINGS[status]} for status in statuses}


# What any route may answer besides its own statuses, whatever it does: the security middleware's
# refusals (a missing or wrong key, rate limits, a body over the upload cap; /healthz and /readyz
# are exempt from keys and limits, not from the cap) and a bug's bare 500. For FastAPI(responses=).
ERROR_RESPONSES: dict[int | str, dict] = error_responses(401, 413, 429, 500)


def error_response(
    status: int, message: str, *, type_: str | None = None, code: str | None = None, param: str | None = None,
    retry_after: float | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    if type_ is None:
        type_ = error_type(status)
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(envelope(message, type_, code, param), status_code=status, headers=headers or None)


def from_harken(exc: HarkenError) -> JSONResponse:
    return error_response(
        exc.status, exc.message, type_=exc.type, code=exc.code, param=exc.param,
        retry_after=getattr(exc, "retry_after", None),
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HarkenError)
    async def _harken(request: Request, exc: HarkenError) -> JSONResponse:
        return from_harken(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        return error_response(422, message, code="invalid_request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, HarkenError):  # FastAPI wraps errors raised while reading a body
            return from_harken(exc.__cause__)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}  # 400: a body that does not parse
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return error_response(exc.status_code, message, code=codes.get(exc.status_code), headers=headers)

    # Only for errors in the outer middleware: CatchAll answers everything below it.
    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _internal()


def _allowed(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    served = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            served.append(method)
    return ", ".join(served)


def _internal() -> JSONResponse:
    return error_response(500, "internal server error", code="internal_error")


class CatchAll:
    """Answers an unhandled exception with the 500 envelope and does not re-raise it.

    Starlette's outermost handler re-raises after answering, and uvicorn then closes the
    connection, so the client's next request on it was reset. A response already under way
    cannot be turned into an error: that one is re-raised, and its connection closed, so the
    client sees a broken response rather than a silently truncated one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _internal()(scope, receive, send)
