"""Every error leaves the server as the OpenAI envelope: {"error": {message, type, param, code}}.

This is the one place that maps errors to HTTP. HarkenError subclasses carry their status and
code; request validation, unknown routes and wrong methods are translated here; anything else
is a bug, logged with its traceback and answered with a bare 500 that reveals nothing.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from harken.errors import HarkenError

__all__ = ["error_response", "install_error_handlers", "envelope"]

log = logging.getLogger("harken.server")

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def envelope(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int, message: str, *, type_: str | None = None, code: str | None = None, param: str | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    if type_ is None:
        type_ = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return JSONResponse(envelope(message, type_, code, param), status_code=status, headers=headers)


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
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, message, code=codes.get(exc.status_code))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error", code="internal_error")
