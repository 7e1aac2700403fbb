"""The service's errors: one JSON shape, and the library's errors mapped to statuses in one place.

Every error answer is `{"error": {"type": "...", "message": "..."}}`; `type` is stable
(invalid_request, unauthorized, forbidden, not_found, too_large, rate_limited, ...).

    >>> raise ApiError(404, "not_found", "no document 'x'")       # in a route or a dependency
    >>> install_error_handlers(app)                                 # once, in `create_app`
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragtune.errors import AccessDenied, ConfigError, InputError, RagtuneError, StoreUnavailable

log = logging.getLogger("ragtune.service")

# The library's errors (`ragtune.errors`) as HTTP: the most specific class of an error decides.
LIBRARY_ERRORS: dict[type[RagtuneError], tuple[int, str]] = {
    AccessDenied: (403, "forbidden"),
    InputError: (400, "invalid_request"),
    ConfigError: (400, "invalid_request"),
    RagtuneError: (500, "server_error"),
}
HTTP_KINDS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    """An error with its HTTP status and stable `type` (and headers, e.g. `Retry-After`)."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers


def error_response(status: int, kind: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape, as a response."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status,
                        headers=headers)


def rate_limited(wait: float, what: str) -> ApiError:
    """429 with `Retry-After` (whole seconds, at least 1)."""
    return ApiError(429, "rate_limited", f"{what}; retry in {wait:.1f} s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))})


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.kind, exc.message, exc.headers)


async def _library_error(request: Request, exc: RagtuneError) -> JSONResponse:
    status, kind = next(LIBRARY_ERRORS[cls] for cls in type(exc).__mro__
                        if cls in LIBRARY_ERRORS)
    return error_response(status, kind, str(exc))


async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
    # the whole store is out (disk full, read-only, corrupt): the operator's log has the file
    # and what to do; the client learns the cause, not the server's paths
    log.error("%s", exc)
    return error_response(503, "store_unavailable", f"the knowledge store is unavailable "
                          f"({exc.reason}); the write that failed was rolled back")


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors: Any = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return error_response(422, "invalid_request", f"{where}: {first['msg']}")


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = HTTP_KINDS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    """Every error the routes raise, answered in the one shape (never a traceback)."""
    handlers: list[tuple[type[Exception], Any]] = [
        (ApiError, _api_error), *((kind, _library_error) for kind in LIBRARY_ERRORS),
        (StoreUnavailable, _store_unavailable), (RequestValidationError, _validation),
        (StarletteHTTPException, _http)]
    for error, handler in handlers:
        app.exception_handler(error)(handler)
