"""HTTP-level errors and the one function that turns any exception into OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}`` with the right status. The domain
hierarchy lives at the bottom of the layering (:mod:`models.core.errors`) so strategies and
model code raise it too; :data:`STATUS` below is the one place each error class gets its
HTTP status. Messages are short and never echo payloads; unexpected exceptions become a
generic 500 whose detail goes to the log only.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from models.core.errors import (
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RouterError,
    UnauthorizedError,
    UnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

MAX_MESSAGE_CHARS = 600
CLIENT_CLOSED = 499  # nginx's "client closed request": a status label, never sent


# Each domain error class → (HTTP status, OpenAI error type). Looked up along the MRO,
# so a subclass inherits its parent's status unless it is listed itself.
STATUS: dict[type[RouterError], tuple[int, str]] = {
    RouterError: (500, "server_error"),
    BadRequestError: (400, "invalid_request_error"),
    UnauthorizedError: (401, "authentication_error"),
    NotFoundError: (404, "invalid_request_error"),
    PayloadTooLargeError: (413, "invalid_request_error"),
    OverloadedError: (429, "rate_limit_error"),
    ClientClosedError: (CLIENT_CLOSED, "invalid_request_error"),
    UpstreamError: (502, "upstream_error"),
    UpstreamTimeoutError: (504, "upstream_error"),
    UnavailableError: (503, "service_unavailable"),
}


def status_of(exc: RouterError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of a domain error."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return STATUS[RouterError]


def error_body(status: int, message: str, type_: str, param: str | None, code: str | None) -> bytes:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    """A short message and the first bad parameter from pydantic errors."""
    parts, first_param = [], None
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        # drop pydantic's union-tag segments such as 'str' or 'list[...]'
        loc = [p for p in loc if p != "str" and not p.startswith(("list[", "function-"))]
        param = ".".join(loc) or None
        first_param = first_param or param
        msg = str(err.get("msg", "invalid value"))
        parts.append(f"{param}: {msg}" if param else msg)
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more, first_param


def to_openai_error(exc: BaseException) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and extra headers for any exception."""
    headers: dict[str, str] = {}
    if isinstance(exc, RouterError):
        (status, type_), msg, param, code = status_of(exc), exc.message, exc.param, exc.code
        if status == 500:  # a domain error that is our fault: no detail to the client
            msg = "internal error"
        if isinstance(exc, UnauthorizedError):
            headers["www-authenticate"] = "Bearer"
    elif isinstance(exc, RequestValidationError | ValidationError):
        msg, param = _validation_message(list(exc.errors()))
        status, type_, code = 400, "invalid_request_error", "invalid_request"
    elif isinstance(exc, StarletteHTTPException):
        status, msg, param = exc.status_code, str(exc.detail), None
        type_ = "invalid_request_error" if status < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
    else:
        status, msg, type_, param, code = 500, "internal error", "server_error", None, None
    if status in (429, 503):
        headers.setdefault("retry-after", "1")
    return status, error_body(status, msg, type_, param, code), headers


def error_response(exc: BaseException) -> Response:
    status, body, headers = to_openai_error(exc)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


EXPECTED = (RouterError, RequestValidationError, ValidationError, StarletteHTTPException)


def log_failure(exc: BaseException) -> None:
    """One log line for a failed request: a traceback only for unexpected errors."""
    log = structlog.get_logger("llm_router")
    if isinstance(exc, ClientClosedError):
        log.info("client_disconnected")
    elif not isinstance(exc, EXPECTED) or (
        isinstance(exc, RouterError) and status_of(exc)[0] == 500
    ):
        log.error("request_failed", error_type=type(exc).__name__, exc_info=exc)


async def _handle(request: Request, exc: Exception) -> Response:
    log_failure(exc)
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one error function for domain, HTTP and validation errors. Anything
    else is answered by :class:`app.api.middleware.RouterMiddleware` (inside which the request
    id and metrics live); the ``Exception`` handler is only a last resort."""
    for exc_type in (*EXPECTED, Exception):
        app.add_exception_handler(exc_type, _handle)
