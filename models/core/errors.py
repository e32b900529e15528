"""The project's exception hierarchy, at the bottom of the layering.

``models/`` (the lowest layer), ``strategies/`` and ``app/`` all import from here, so
every layer raises the narrowest domain error and nobody branches on built-in
exception types (an ``except RuntimeError`` that also swallowed "queue full" once turned
overload into silent fallback answers). Each class maps to exactly one HTTP status in
one place: ``app.errors.STATUS`` (``to_openai_error``).
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every domain error: a short client-safe message, optional param and code."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequestError(RouterError):
    """The request itself is invalid (HTTP 400)."""

    code = "invalid_request"


class NoEligibleModelError(BadRequestError):
    """Every model was excluded, or none can see the request's images (HTTP 400)."""

    code = "no_model"


class OverloadedError(RouterError):
    """Too much work queued or in flight; the client should retry later (HTTP 429)."""

    code = "overloaded"


class QueueFullError(OverloadedError):
    """A micro-batcher's bounded queue is full."""


class UnavailableError(RouterError):
    """The service cannot answer now, though the request is fine (HTTP 503)."""

    code = "unavailable"


class StrategyUnavailableError(UnavailableError):
    """The strategy's classifier failed or timed out and policy says to answer 503."""


class ShuttingDownError(UnavailableError):
    """The service is draining for shutdown (HTTP 503)."""

    code = "shutting_down"


class BatcherClosedError(ShuttingDownError):
    """A micro-batcher was closed (shutdown) before this item was answered."""


class ClientClosedError(RouterError):
    """The client went away before the request was read (status label 499)."""

    code = "client_closed_request"


class StrategyError(RouterError):
    """A strategy cannot start or is used before it started (a server fault, HTTP 500)."""

    code = "strategy_error"


class UnauthorizedError(RouterError):
    """Missing or wrong API key (HTTP 401)."""

    code = "invalid_api_key"


class NotFoundError(RouterError):
    """An unknown model or path (HTTP 404)."""

    code = "not_found"


class PayloadTooLargeError(RouterError):
    """The body or an image is over its size limit (HTTP 413)."""

    code = "request_too_large"


class UpstreamError(RouterError):
    """Proxy: no upstream gave a usable answer (HTTP 502)."""

    code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    """Proxy: the upstreams timed out (HTTP 504)."""

    code = "upstream_timeout"


class ProxySaturatedError(UnavailableError):
    """Every pooled upstream connection is busy: local saturation, not an upstream fault."""

    code = "proxy_saturated"


class NotReadyError(UnavailableError):
    """The strategy is still loading, or failed (HTTP 503)."""

    code = "not_ready"


class ConfigError(Exception):
    """The routing config or the settings cannot be used; the message says which key and
    why (a startup error: the service never serves with it)."""
