"""One pure-ASGI middleware for what every request needs: a request id, a body-size
limit, request metrics (count, duration, in-flight), one ``request_completed`` access log
event and the answer to unexpected errors. Pure ASGI keeps streaming responses streaming
and costs a few microseconds per request.

The access event is written when the response has been sent (a stream: after its last
byte), with the fields handlers left in the scope (app.logs.access_fields: in proxy mode
the model that answered, ``fallback_from``, tokens and ``cost_usd``). ``/metrics``,
``/health`` and ``/ready`` are left out, as from the request metrics.

Unexpected exceptions are answered here (a generic 500 in OpenAI's shape), inside the
request-id scope, so every response carries ``x-request-id`` and is counted; Starlette's
own catch-all sits outside all middleware. A client that goes away is status 499 and
one ``client_disconnected`` line, not a 500 with tracebacks.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from starlette.requests import ClientDisconnect

from app.errors import CLIENT_CLOSED, error_response, log_failure
from app.logs import ACCESS_FIELDS, get_logger
from app.metrics import RouterMetrics
from models.core.errors import PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMETERED = frozenset({"/metrics", "/health", "/ready"})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


COMPLETION_HOOKS = "llm_router.completion_hooks"


def on_completed(
    scope: MutableMapping[str, Any], hook: Callable[[int, dict[str, Any]], None]
) -> None:
    """Call ``hook(status, access_fields)`` once the response has been sent (a stream: after
    its last byte), e.g. to capture a proxied request with the tokens it used."""
    scope.setdefault(COMPLETION_HOOKS, []).append(hook)


class RouterMiddleware:
    """Request id, body limit and request metrics for every HTTP request."""

    def __init__(
        self, app: ASGIApp, metrics: RouterMetrics, max_body_bytes: int, endpoints: set[str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.endpoints = endpoints
        # bound once (the app is built after logging is configured): a fresh logger per
        # event costs more than the event itself when its level is filtered out
        self.log = get_logger().bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        scope[ACCESS_FIELDS] = {}
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        path = scope.get("path", "")
        metered = path not in UNMETERED
        endpoint = path if path in self.endpoints else "other"
        status_holder = [500]
        started = [False]
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._reject_too_large(scope, receive, send_wrapper)
            if metered:
                self._completed(scope, endpoint, 413, 0.0)
            return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLargeError(
                        f"request body is larger than {self.max_body_bytes} bytes"
                    )
            return message

        start = time.perf_counter()
        if metered:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_limited, send_wrapper)
        except ClientDisconnect:  # the client left mid-response (a stream): nobody to answer
            status_holder[0] = CLIENT_CLOSED
            structlog.get_logger("llm_router").info("client_disconnected")
        except Exception as exc:  # the last resort: one log line, a 500 with the request id
            log_failure(exc)
            if started[0]:
                return  # too late for an error response; the server closes the connection
            await error_response(exc)(scope, receive, send_wrapper)
        finally:
            if metered:
                self.metrics.in_flight.dec()
                self._completed(scope, endpoint, status_holder[0], time.perf_counter() - start)

    async def _reject_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.rejected.labels("too_large").inc()
        response = error_response(
            PayloadTooLargeError(f"request body is larger than {self.max_body_bytes} bytes")
        )
        await response(scope, receive, send)

    def _completed(self, scope: Scope, endpoint: str, status: int, duration: float) -> None:
        """Request metrics, the access log event and the handlers' completion hooks."""
        method = scope["method"] if scope["method"] in METHODS else "other"
        self.metrics.requests.labels(endpoint, method, str(status)).inc()
        self.metrics.request_duration.labels(endpoint).observe(duration)
        fields = scope.get(ACCESS_FIELDS, {})
        self.log.info(
            "request_completed",
            method=method,
            endpoint=endpoint,
            status=status,
            duration_s=round(duration, 6),
            **fields,
        )
        for hook in scope.get(COMPLETION_HOOKS, ()):
            try:
                hook(status, fields)
            except Exception as exc:  # a hook (the capture) must never fail the request
                log_failure(exc)
