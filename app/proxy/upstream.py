"""One upstream as the proxy calls it, and what a failed call means for the next step.

Whether a failed call may go to the next model depends on whether the upstream may have
done the work. It provably has not when the connection could not be made (connect error
or timeout); it has produced nothing when it answered 429 or 5xx (an error status is the
whole answer). After the request was sent, a read timeout or a lost connection leaves
the upstream possibly still generating, and billing: that is not re-sent to another model
unless the model's ``retry_on_timeout`` says the operator accepts paying twice. The one
exception is a pooled keep-alive connection that fails before any response byte: almost
always the upstream closed it as idle just as the request arrived, so the request never
reached the upstream's application; it is re-sent once to the same upstream on a new
connection, as HTTP clients and proxies do for this case (browsers, nginx, Envoy).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from app import __version__
from models.core.errors import ProxySaturatedError

if TYPE_CHECKING:
    from app.metrics import RouterMetrics
    from app.settings import ProxySettings
    from models.core.routing_config import ModelConfig

# upstream_requests_total{outcome}: one per HTTP exchange; fallbacks_total{reason} reuses them
OUTCOMES = (
    "2xx", "3xx", "4xx", "429", "5xx",
    "connect_error", "connect_timeout", "timeout", "error", "stale_connection", "cancelled",
)  # fmt: skip
READ_ERROR_BODY_BYTES = 64 * 1024  # an upstream error body kept for pass-through


@dataclass(frozen=True, slots=True)
class Upstream:
    """A configured model as the proxy calls it (built once, at startup)."""

    name: str
    url: httpx.URL
    model_id: str
    vision: bool
    headers: dict[str, str]
    timeout: httpx.Timeout
    retry_on_timeout: bool = False
    problem: str | None = None  # why it cannot be called (no base_url, key not set)


def upstream_client(proxy: ProxySettings) -> httpx.AsyncClient:
    """The pooled HTTP client upstream calls share (proxy mode, image fetches, collect
    and label)."""
    limits = httpx.Limits(
        max_connections=proxy.max_connections, keepalive_expiry=proxy.keepalive_expiry_s
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(proxy.timeout_s, connect=proxy.connect_timeout_s),
        # connect failures never sent anything: retried on the spot (httpcore retries)
        transport=httpx.AsyncHTTPTransport(limits=limits, retries=proxy.connect_retries),
        follow_redirects=False,
    )


def build_upstream(model: ModelConfig, settings: ProxySettings) -> Upstream:
    """Resolve URL, API key and timeouts, once at startup.

    The key comes from the env var named by ``api_key_env`` (keys are never in the file).
    A model whose key is unset, or that has no ``base_url``, stays in the config (recommend
    answers and manual routing still name it) but is skipped as a proxy candidate, so
    traffic falls back to the next model instead of sending unauthenticated calls; the
    startup log says so, and a request with no usable candidate left gets a 502 naming
    the missing variable (never a key)."""
    headers = {"user-agent": f"llm-router/{__version__}", **model.headers}
    problem = None if model.base_url else "no base_url in the routing config"
    if model.api_key_env:
        key = os.environ.get(model.api_key_env, "").strip()
        if key:
            headers["authorization"] = f"Bearer {key}"
        elif problem is None:
            problem = f"API key env var {model.api_key_env} is not set"
    return Upstream(
        name=model.name,
        url=httpx.URL((model.base_url or "http://unset.invalid").rstrip("/") + "/chat/completions"),
        model_id=model.upstream_model or model.name,
        vision=model.vision,
        headers=headers,
        timeout=httpx.Timeout(
            model.timeout_s or settings.timeout_s,
            connect=settings.connect_timeout_s,
            pool=settings.pool_timeout_s,
        ),
        retry_on_timeout=model.retry_on_timeout,
        problem=problem,
    )


class ConnectionTrace:
    """httpcore's ``trace`` extension for one exchange: was the request sent on a reused
    connection, and did any of the response arrive?"""

    __slots__ = ("connected", "responded", "sending")

    def __init__(self) -> None:
        self.connected = self.sending = self.responded = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.startswith(("connection.connect_tcp.", "connection.connect_unix_socket.")):
            self.connected = True
        elif event.endswith(".send_request_headers.started"):
            self.sending = True
        elif event.endswith(".receive_response_headers.complete"):
            self.responded = True

    @property
    def stale(self) -> bool:
        """Sent on a pooled connection that failed before any response byte: the peer had
        closed it (idle timeout) or reset it, so the request never reached the upstream."""
        return self.sending and not self.connected and not self.responded


@dataclass(slots=True)
class Answer:
    """A usable upstream answer: a whole body, or an open stream and its first chunk."""

    upstream: Upstream
    response: httpx.Response
    started: float
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None
    upstream_s: float = 0.0  # time spent waiting on upstreams, all attempts
    images_omitted: int = 0  # image parts sent to this (text-only) upstream as markers


class AttemptFailed(Exception):
    """One attempt at one upstream ended without a usable answer.

    ``fallback``: the next candidate may be tried. ``response``/``body``: the upstream's
    error answer (429/5xx), kept so it can be passed through when nothing better comes."""

    def __init__(
        self,
        outcome: str,
        detail: str,
        *,
        fallback: bool,
        timeout: bool = False,
        response: httpx.Response | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(detail)
        self.outcome, self.detail, self.fallback, self.timeout = outcome, detail, fallback, timeout
        self.response, self.body = response, body


def status_outcome(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


def transport_failure(up: Upstream, exc: Exception, trace: ConnectionTrace) -> AttemptFailed:
    """Classify a timeout or transport error (never a pool timeout: that is local)."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return AttemptFailed(
            "connect_timeout", f"connect timeout ({name})", fallback=True, timeout=True
        )
    if isinstance(exc, httpx.ConnectError):
        return AttemptFailed("connect_error", f"connection error ({name})", fallback=True)
    optin = up.retry_on_timeout
    note = "" if optin else " after the request was sent; not re-sent to another model"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return AttemptFailed("timeout", f"timeout ({name}){note}", fallback=optin, timeout=True)
    if trace.stale:
        return AttemptFailed("stale_connection", f"stale connection ({name})", fallback=True)
    return AttemptFailed("error", f"connection error ({name}){note}", fallback=optin)


async def exchange(
    http: httpx.AsyncClient,
    metrics: RouterMetrics,
    up: Upstream,
    payload: bytes,
    headers: dict[str, str],
    stream: bool,
) -> Answer:
    """One HTTP exchange with ``up``; counted once in upstream_requests_total."""
    trace = ConnectionTrace()
    request = http.build_request(
        "POST",
        up.url,
        content=payload,
        headers={**headers, **up.headers},
        timeout=up.timeout,
        extensions={"trace": trace},
    )
    started = time.perf_counter()
    response: httpx.Response | None = None
    try:
        response = await http.send(request, stream=True)
        metrics.upstream_ttfb.labels(up.name).observe(time.perf_counter() - started)
        status = response.status_code
        metrics.upstream_requests.labels(up.name, status_outcome(status)).inc()
        if status == 429 or status >= 500:
            raise AttemptFailed(
                status_outcome(status),
                f"HTTP {status}",
                fallback=True,
                response=response,
                body=await error_answer(response) if status == 429 else b"",
            )
        if stream and status < 300:
            chunks = response.aiter_raw()
            first = await anext(chunks, b"")
            return Answer(up, response, started, first, chunks)
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    except AttemptFailed:
        await response.aclose()  # type: ignore[union-attr]
        raise
    except httpx.PoolTimeout:
        raise ProxySaturatedError("every upstream connection is busy; retry shortly") from None
    except (TimeoutError, httpx.TimeoutException, httpx.TransportError) as exc:
        failure = transport_failure(up, exc, trace)
        await _failed(metrics, up, response, failure.outcome)
        raise failure from None
    except asyncio.CancelledError:
        await _failed(metrics, up, response, "cancelled")
        raise
    metrics.upstream_duration.labels(up.name).observe(time.perf_counter() - started)
    return Answer(up, response, started, body)


async def _failed(
    metrics: RouterMetrics, up: Upstream, response: httpx.Response | None, kind: str
) -> None:
    """Account for an exchange that ended without a usable response, and release it."""
    if response is None:
        metrics.upstream_requests.labels(up.name, kind).inc()
    else:
        await response.aclose()


async def error_answer(response: httpx.Response) -> bytes:
    """An upstream error answer's body (capped), kept to pass a 429 through; b"" when it
    cannot be read."""
    out = b""
    try:
        async for chunk in response.aiter_raw():
            out += chunk
            if len(out) >= READ_ERROR_BODY_BYTES:
                return b""
    except httpx.HTTPError:
        return b""
    return out
