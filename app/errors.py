"""Domain errors and the one function that turns any exception into OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}`` with the right status. Messages are
short and never echo payloads; unexpected exceptions become a generic 500 whose detail
goes to the log only.
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

from models.batching import QueueFullError
from strategies.base import NoEligibleModelError, StrategyUnavailableError

MAX_MESSAGE_CHARS = 600


class RouterError(Exception):
    """Base of the domain errors: each knows its HTTP status and OpenAI error type."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequestError(RouterError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class UnauthorizedError(RouterError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class NotFoundError(RouterError):
    status, type, code = 404, "invalid_request_error", "not_found"


class PayloadTooLargeError(RouterError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class OverloadedError(RouterError):
    status, type, code = 429, "rate_limit_error", "overloaded"


class UpstreamError(RouterError):
    status, type, code = 502, "upstream_error", "upstream_error"


class UpstreamTimeoutError(RouterError):
    status, type, code = 504, "upstream_error", "upstream_timeout"


class ProxySaturatedError(RouterError):
    """Every pooled upstream connection is busy: local saturation, not an upstream fault."""

    status, type, code = 503, "service_unavailable", "proxy_saturated"


class NotReadyError(RouterError):
    status, type, code = 503, "service_unavailable", "not_ready"


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
        status, msg, type_, param, code = exc.status, exc.message, exc.type, exc.param, exc.code
        if isinstance(exc, UnauthorizedError):
            headers["www-authenticate"] = "Bearer"
    elif isinstance(exc, QueueFullError):
        status, msg, type_, param, code = 429, str(exc), "rate_limit_error", None, "overloaded"
    elif isinstance(exc, NoEligibleModelError):
        status, msg, type_, param, code = 400, str(exc), "invalid_request_error", None, "no_model"
    elif isinstance(exc, StrategyUnavailableError):
        status, msg, type_, param, code = 503, str(exc), "service_unavailable", None, "unavailable"
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


EXPECTED = (
    RouterError,
    QueueFullError,
    NoEligibleModelError,
    StrategyUnavailableError,
    RequestValidationError,
    ValidationError,
    StarletteHTTPException,
)


async def _handle(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, EXPECTED):
        structlog.get_logger("llm_router").exception(
            "request_failed", error_type=type(exc).__name__
        )
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one error function for domain, HTTP, validation and any other error."""
    for exc_type in (*EXPECTED, Exception):
        app.add_exception_handler(exc_type, _handle)
