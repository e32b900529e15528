"""Proxy mode: forward a routed chat request to the chosen model's OpenAI-compatible upstream.

The body goes upstream as the client sent it, except ``model`` (the chosen model's
``upstream_model`` or name) and the router-only ``router`` field (removed). Connection
errors, timeouts, 429 and 5xx *before the first byte reaches the client* fall back to the
next candidate of the decision (bounded by ``max_attempts`` and ``total_timeout_s``); a
streamed answer is relayed chunk by chunk and never retried once it has begun. Other 4xx
are the client's errors and come back as the upstream sent them. A client that goes away
cancels the upstream call, also while waiting for a slow non-streaming answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.errors import BadRequestError, UpstreamError, UpstreamTimeoutError, error_response
from app.logs import get_logger
from app.relay import RelayResponse, passed_headers, wait_disconnect
from strategies.base import Conversation, RoutingDecision

if TYPE_CHECKING:
    from app.config import ModelConfig
    from app.main import RouterState
    from app.schemas import ChatCompletionRequest

CLIENT_CLOSED = 499  # nginx's "client closed request": never reaches the client, only metrics


@dataclass(frozen=True, slots=True)
class Upstream:
    """A configured model as the proxy calls it (built once, at startup)."""

    name: str
    url: httpx.URL
    model_id: str
    vision: bool
    headers: dict[str, str]
    timeout: httpx.Timeout
    problem: str | None = None  # why it cannot be called (no base_url, key not set)


def build_upstream(model: ModelConfig, default_timeout_s: float, connect_s: float) -> Upstream:
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
        timeout=httpx.Timeout(model.timeout_s or default_timeout_s, connect=connect_s),
        problem=problem,
    )


class _Retryable(Exception):
    """One attempt failed in a way another upstream may not (error, timeout, 429, 5xx)."""

    def __init__(self, detail: str, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.timeout = detail, timeout


@dataclass(slots=True)
class _Outcome:
    """A usable upstream answer: a whole body, or an open stream and its first chunk."""

    upstream: Upstream
    response: httpx.Response
    started: float
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None
    upstream_s: float = 0.0  # time spent waiting on upstreams, all attempts


class _NoCookies(CookieJar):
    """A cookie jar that stores nothing (and costs nothing per response)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


class Proxy:
    """Forwards routed requests over the app's shared ``httpx.AsyncClient``."""

    def __init__(self, state: RouterState) -> None:
        assert state.http is not None, "the shared HTTP client is built before the proxy"
        self.http, self.metrics = state.http, state.metrics
        # one client serves every user: never keep an upstream's cookies for the next request
        self.http.cookies = _NoCookies()
        self.settings = state.settings.proxy
        self.upstreams = {
            m.name: build_upstream(m, self.settings.timeout_s, self.settings.connect_timeout_s)
            for m in state.config.models
        }
        for up in self.upstreams.values():
            if up.problem:  # skipped as a candidate at request time (see forward)
                get_logger().warning("upstream_unusable", model=up.name, problem=up.problem)

    # -- request entry ---------------------------------------------------------------
    async def forward(
        self,
        request: Request,
        body: dict[str, Any],
        req: ChatCompletionRequest,
        conversation: Conversation,
        decision: RoutingDecision,
        decision_s: float,
    ) -> Response:
        """Call the decision's candidates in order; answer with the first usable response.

        ``body`` is the request's parsed JSON (changed in place: ``router`` removed,
        ``model`` set per attempt). ``decision_s`` (routing time) is measured by the
        caller and is not proxy overhead."""
        began = time.perf_counter()
        route_headers = {"x-router-strategy": decision.strategy}
        if decision.intent:
            route_headers["x-router-intent"] = decision.intent
        candidates = self._candidates(req, conversation, decision)
        body.pop("router", None)
        headers = {"content-type": "application/json", "x-request-id": _request_id(request)}
        headers["accept-encoding"] = request.headers.get("accept-encoding", "identity")
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        calls = asyncio.ensure_future(self._attempts(candidates, body, headers, req.stream))
        try:
            await asyncio.wait((calls, gone), return_when=asyncio.FIRST_COMPLETED)
            if not calls.done():
                calls.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calls
                get_logger().info("client_disconnected", phase="before_first_byte")
                return Response(status_code=CLIENT_CLOSED)
            outcome = calls.result()
        except (UpstreamError, UpstreamTimeoutError) as exc:
            gone.cancel()
            response = error_response(exc)
            response.headers.update(route_headers)
            return response
        except BaseException:
            gone.cancel()
            calls.cancel()
            raise
        route_headers["x-router-model"] = outcome.upstream.name
        out_headers = {**passed_headers(outcome.response), **route_headers}
        overhead = time.perf_counter() - began - outcome.upstream_s
        self.metrics.proxy_overhead.observe(max(overhead, 0.0))
        if outcome.chunks is None:
            gone.cancel()
            return Response(outcome.body, outcome.response.status_code, out_headers)
        out_headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return RelayResponse(
            outcome.response,
            outcome.body,
            outcome.chunks,
            out_headers,
            gone,
            lambda result: self._stream_done(outcome, result),
        )

    def _candidates(
        self, req: ChatCompletionRequest, conversation: Conversation, decision: RoutingDecision
    ) -> list[Upstream]:
        """The decision's candidates, minus excluded models and, for requests with images,
        models that cannot see them (strategies already respect both; manual routing
        does not)."""
        excluded = set(req.router.exclude_models) if req.router else set()
        images = conversation.has_images
        out = [
            up
            for name in decision.candidates()
            if (up := self.upstreams.get(name)) is not None
            and name not in excluded
            and (up.vision or not images)
        ]
        if not out:
            why = "cannot accept images" if images else "is excluded"
            raise BadRequestError(
                f"model '{decision.model}' {why}; choose another model or let the router route",
                param="model",
                code="model_not_eligible",
            )
        return out

    # -- attempts --------------------------------------------------------------------
    async def _attempts(
        self,
        candidates: list[Upstream],
        body: dict[str, Any],
        headers: dict[str, str],
        stream: bool,
    ) -> _Outcome:
        """Try candidates in order until one answers usably; raise 502/504 when none does."""
        deadline = time.perf_counter() + self.settings.total_timeout_s
        failures: list[str] = []
        considered: list[str] = []
        upstream_s, tried, timed_out = 0.0, 0, False
        log = get_logger()
        for up in candidates:
            if tried >= self.settings.max_attempts:
                break
            if considered:
                self.metrics.upstream_fallbacks.labels(considered[-1], up.name).inc()
            considered.append(up.name)
            if up.problem:
                failures.append(f"{up.name}: {up.problem}")
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                failures.append("total_timeout_s exhausted")
                timed_out = True
                break
            tried += 1
            body["model"] = up.model_id
            started = time.perf_counter()
            try:
                outcome = await self._attempt(up, orjson.dumps(body), headers, stream, remaining)
            except _Retryable as exc:
                upstream_s += time.perf_counter() - started
                failures.append(f"{up.name}: {exc.detail}")
                timed_out = exc.timeout
                log.warning("upstream_attempt_failed", model=up.name, error=exc.detail)
                continue
            outcome.upstream_s = upstream_s + time.perf_counter() - started
            return outcome
        message = f"no upstream answered (tried {', '.join(considered)}): " + "; ".join(failures)
        if timed_out:
            raise UpstreamTimeoutError(message)
        raise UpstreamError(message)

    async def _attempt(
        self,
        up: Upstream,
        payload: bytes,
        headers: dict[str, str],
        stream: bool,
        budget_s: float,
    ) -> _Outcome:
        """One upstream call, up to its whole body (or its first streamed chunk)."""
        request = self.http.build_request(
            "POST", up.url, content=payload, headers={**headers, **up.headers}, timeout=up.timeout
        )
        started = time.perf_counter()
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(budget_s):
                response = await self.http.send(request, stream=True)
                self.metrics.upstream_ttfb.labels(up.name).observe(time.perf_counter() - started)
                status = response.status_code
                self.metrics.upstream_requests.labels(up.name, _status_class(status)).inc()
                if status == 429 or status >= 500:
                    raise _Retryable(f"HTTP {status}")
                if stream and status < 300:
                    chunks = response.aiter_raw()
                    first = await anext(chunks, b"")
                    return _Outcome(up, response, started, first, chunks)
                body = b"".join([chunk async for chunk in response.aiter_raw()])
        except _Retryable:
            await response.aclose()  # type: ignore[union-attr]
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            await self._failed(up, response, "timeout")
            raise _Retryable(f"timeout ({type(exc).__name__})", timeout=True) from None
        except httpx.TransportError as exc:
            await self._failed(up, response, "error")
            raise _Retryable(f"connection error ({type(exc).__name__})") from None
        except asyncio.CancelledError:
            await self._failed(up, response, "cancelled")
            raise
        self.metrics.upstream_duration.labels(up.name).observe(time.perf_counter() - started)
        return _Outcome(up, response, started, body)

    async def _failed(self, up: Upstream, response: httpx.Response | None, kind: str) -> None:
        """Account for an attempt that ended without a usable response, and release it."""
        if response is None:
            self.metrics.upstream_requests.labels(up.name, kind).inc()
        else:
            await response.aclose()

    def _stream_done(self, outcome: _Outcome, result: str) -> None:
        self.metrics.upstream_duration.labels(outcome.upstream.name).observe(
            time.perf_counter() - outcome.started
        )
        if result != "complete":
            get_logger().warning(
                "upstream_stream_ended", model=outcome.upstream.name, result=result
            )


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))
