"""Proxy mode: forward a routed chat request to the chosen model's OpenAI-compatible upstream.

The body goes upstream as the client sent it, except ``model`` (the chosen model's
``upstream_model`` or name), the router-only ``router`` field (removed) and, for a model
that cannot see images, the conversation's image parts (text markers instead,
:mod:`app.proxy.rewrite`). Failures that
cannot have made an upstream do the work (connect errors, 429, 5xx) fall back to the next
candidate of the decision (bounded by ``max_attempts`` and ``total_timeout_s``); a read
timeout or a connection lost after sending does so only for models with
``retry_on_timeout`` (app/proxy/upstream.py says why). A streamed answer is relayed chunk by
chunk and never retried once it has begun. Other 4xx are the client's errors and come back
as the upstream sent them; a 429 from every candidate tried comes back too, with its
``retry-after``. Every pooled connection busy is local saturation: 503 ``proxy_saturated``,
no fallback. A client that goes away cancels the upstream call, also while waiting for a
slow non-streaming answer.

Every successful answer's ``usage`` is counted (app/proxy/usage.py reads it, also from
streams; app/proxy/accounting.py prices it). A plain answer says what it cost in
``x-router-cost-usd`` and ``x-router-tokens``; an answer that came from a fallback names
the first choice in ``x-router-fallback-from``. Both go into the request's access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.errors import error_body, error_response
from app.logs import access_fields, get_logger
from app.proxy.accounting import Accounting
from app.proxy.relay import RelayResponse, passed_headers, wait_disconnect
from app.proxy.rewrite import omit_images
from app.proxy.upstream import Answer, AttemptFailed, Upstream, build_upstream, exchange
from app.proxy.usage import StreamUsage, ask_for_usage, body_usage
from models.core.conversation import Conversation
from models.core.errors import (
    BadRequestError,
    ProxySaturatedError,
    RouterError,
    UpstreamError,
    UpstreamTimeoutError,
)
from strategies.base import RoutingDecision

if TYPE_CHECKING:
    from app.metrics import RouterMetrics
    from app.settings import ProxySettings
    from models.core.routing_config import ModelConfig, RoutingConfig

CLIENT_CLOSED = 499  # nginx's "client closed request": never reaches the client, only metrics


class _Failed(Exception):
    """No usable answer: the error to send and the model it is about."""

    def __init__(self, error: RouterError, model: str) -> None:
        super().__init__(error.message)
        self.error, self.model = error, model


class _NoCookies(CookieJar):
    """A cookie jar that stores nothing (and costs nothing per response)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class Proxy:
    """Forwards routed requests over the app's shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        metrics: RouterMetrics,
        settings: ProxySettings,
        config: RoutingConfig,
        baseline: ModelConfig | None = None,
    ) -> None:
        """``baseline``: the model savings are counted against (resolve_baseline)."""
        self.http, self.metrics = http, metrics
        # one client serves every user: never keep an upstream's cookies for the next request
        self.http.cookies = _NoCookies()
        self.settings = settings
        # re-sends after a stale pooled connection go out on a new connection, never pooled
        self.fresh = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=self.settings.max_connections, max_keepalive_connections=0
            ),
            follow_redirects=False,
            cookies=_NoCookies(),
        )
        self.use_config(config, baseline)

    def use_config(self, config: RoutingConfig, baseline: ModelConfig | None = None) -> None:
        """Resolve every model's upstream and prices (at startup, and on a reload: requests
        already past this point keep the upstreams and prices they resolved)."""
        upstreams = {m.name: build_upstream(m, self.settings) for m in config.models}
        for up in upstreams.values():
            if up.problem:  # skipped as a candidate at request time (see forward)
                get_logger().warning("upstream_unusable", model=up.name, problem=up.problem)
        accounting = Accounting(config, self.metrics, baseline)
        self.config, self.upstreams, self.accounting = config, upstreams, accounting

    async def aclose(self) -> None:
        await self.fresh.aclose()

    # -- request entry ---------------------------------------------------------------
    async def forward(
        self,
        request: Request,
        body: dict[str, Any],
        conversation: Conversation,
        decision: RoutingDecision,
        decision_s: float,
        stream: bool,
        excluded: frozenset[str],
    ) -> Response:
        """Call the decision's candidates in order; answer with the first usable response.

        ``body`` is the request's parsed JSON (changed in place: ``router`` removed,
        ``model`` set per attempt). ``decision_s`` (routing time) is measured by the
        caller and is not proxy overhead. ``stream`` and ``excluded`` (the request's
        ``router.exclude_models``) come from the validated request."""
        began = time.perf_counter()
        route_headers = {"x-router-strategy": decision.strategy, "x-router-reason": decision.reason}
        if decision.intent:
            route_headers["x-router-intent"] = decision.intent
        candidates = self._candidates(excluded, conversation, decision)
        accounting = self.accounting  # the prices of the config the candidates came from
        body.pop("router", None)
        drop_usage = stream and ask_for_usage(body)
        headers = {"content-type": "application/json", "x-request-id": _request_id(request)}
        # a stream is read as it passes (its usage), so it comes uncompressed
        encoding = request.headers.get("accept-encoding", "identity")
        headers["accept-encoding"] = "identity" if stream else encoding
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        calls = asyncio.ensure_future(self._attempts(candidates, body, headers, stream))
        try:
            await asyncio.wait((calls, gone), return_when=asyncio.FIRST_COMPLETED)
            if not calls.done():
                calls.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calls
                get_logger().info("client_disconnected", phase="before_first_byte")
                return Response(status_code=CLIENT_CLOSED)
            outcome = calls.result()
        except _Failed as exc:
            gone.cancel()
            access_fields(request.scope)["model"] = exc.model
            response = error_response(exc.error)
            response.headers.update({**route_headers, "x-router-model": exc.model})
            return response
        except BaseException:
            gone.cancel()
            calls.cancel()
            raise
        name = outcome.upstream.name
        route_headers["x-router-model"] = name
        log = access_fields(request.scope)
        log["model"] = name
        if name != candidates[0].name:
            route_headers["x-router-fallback-from"] = log["fallback_from"] = candidates[0].name
        if outcome.images_omitted:
            route_headers["x-router-images-omitted"] = str(outcome.images_omitted)
        out_headers = {**passed_headers(outcome.response), **route_headers}
        status = outcome.response.status_code
        if outcome.chunks is None:
            gone.cancel()
            if status < 300:
                coding = outcome.response.headers.get("content-encoding", "")
                charge = accounting.charge(name, body_usage(outcome.body, coding))
                if charge is not None:
                    out_headers.update(charge.headers())
                    log.update(charge.log_fields())
            self._overhead(began, outcome)
            return Response(outcome.body, status, out_headers)
        self._overhead(began, outcome)
        out_headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        reader = StreamUsage(drop_usage)
        return RelayResponse(
            outcome.response,
            outcome.body,
            outcome.chunks,
            out_headers,
            gone,
            lambda result: self._stream_done(outcome, result, reader, accounting, log),
            reader,
        )

    def _overhead(self, began: float, outcome: Answer) -> None:
        overhead = time.perf_counter() - began - outcome.upstream_s
        self.metrics.proxy_overhead.observe(max(overhead, 0.0))

    def _candidates(
        self, excluded: frozenset[str], conversation: Conversation, decision: RoutingDecision
    ) -> list[Upstream]:
        """The decision's candidates, minus excluded models and, when the latest turn
        holds an image or the decision needs one seen, models that cannot see (strategies
        already respect both; manual routing does not). A text model answering earlier
        images gets them as markers (see _attempts)."""
        images = bool(conversation.latest_images) or decision.needs_vision
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
    ) -> Answer:
        """Try candidates in order until one answers usably, falling back only where
        that cannot make an upstream do (and bill) the work twice (see app/proxy/upstream.py).

        When every attempt was rate limited, the last 429 is passed through as the
        upstream sent it (body and ``retry-after``); otherwise _Failed carries a 502/504."""
        deadline = time.perf_counter() + self.settings.total_timeout_s
        failures: list[str] = []
        considered: list[str] = []
        last: AttemptFailed | None = None
        rate_limited: tuple[Upstream, AttemptFailed] | None = None
        upstream_s, tried, limited, model = 0.0, 0, 0, candidates[0].name
        blind: tuple[dict[str, Any], int] | None = None  # the body for text-only models
        for up in candidates:
            if tried >= self.settings.max_attempts:
                break
            if considered:
                reason = last.outcome if last is not None else "unusable"
                self.metrics.upstream_fallbacks.labels(considered[-1], up.name, reason).inc()
            considered.append(up.name)
            last = None
            if up.problem:
                failures.append(f"{up.name}: {up.problem}")
                model = up.name
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                failures.append("total_timeout_s exhausted")
                last = AttemptFailed("timeout", "", fallback=False, timeout=True)
                break
            tried, model = tried + 1, up.name
            sent, omitted = body, 0
            if not up.vision:  # a text-only upstream never receives an image part
                blind = blind or omit_images(body, self.settings.image_marker)
                sent, omitted = blind
            sent["model"] = up.model_id
            started = time.perf_counter()
            try:
                outcome = await self._attempt(up, orjson.dumps(sent), headers, stream, remaining)
            except ProxySaturatedError as exc:
                self.metrics.rejected.labels("proxy_saturated").inc()
                raise _Failed(exc, up.name) from None
            except AttemptFailed as exc:
                upstream_s += time.perf_counter() - started
                failures.append(f"{up.name}: {exc.detail}")
                last = exc
                if exc.outcome == "429":
                    limited, rate_limited = limited + 1, (up, exc)
                get_logger().warning(
                    "upstream_attempt_failed", model=up.name, outcome=exc.outcome, error=exc.detail
                )
                if not exc.fallback:
                    break
                continue
            outcome.upstream_s = upstream_s + time.perf_counter() - started
            outcome.images_omitted = omitted
            return outcome
        if tried and limited == tried and rate_limited and (resp := rate_limited[1].response):
            up, limit = rate_limited  # pass the upstream's 429 (and retry-after) through
            answer = limit.body or error_body(
                429, "the upstream is rate limiting; retry later", "rate_limit_error", None,
                "rate_limited",
            )  # fmt: skip
            return Answer(up, resp, 0.0, answer, upstream_s=upstream_s)
        message = f"no upstream answered (tried {', '.join(considered)}): " + "; ".join(failures)
        timed_out = last is not None and last.timeout
        error = UpstreamTimeoutError(message) if timed_out else UpstreamError(message)
        raise _Failed(error, model)

    async def _attempt(
        self,
        up: Upstream,
        payload: bytes,
        headers: dict[str, str],
        stream: bool,
        budget_s: float,
    ) -> Answer:
        """One upstream call, up to its whole body (or its first streamed chunk); a
        request lost on a stale pooled connection is sent once more, on a new connection."""
        try:
            async with asyncio.timeout(budget_s):
                try:
                    return await exchange(self.http, self.metrics, up, payload, headers, stream)
                except AttemptFailed as exc:
                    if exc.outcome != "stale_connection":
                        raise
                    get_logger().info("upstream_stale_connection_retried", model=up.name)
                return await exchange(self.fresh, self.metrics, up, payload, headers, stream)
        except TimeoutError:
            raise AttemptFailed(
                "timeout", "timeout (total_timeout_s exhausted)", fallback=False, timeout=True
            ) from None

    def _stream_done(
        self,
        outcome: Answer,
        result: str,
        reader: StreamUsage,
        accounting: Accounting,
        log: dict[str, Any],
    ) -> None:
        """At the end of a relayed stream: its duration, and its usage (a stream cut short
        has usually not reported any: counted as missing)."""
        self.metrics.upstream_duration.labels(outcome.upstream.name).observe(
            time.perf_counter() - outcome.started
        )
        charge = accounting.charge(outcome.upstream.name, reader.usage)
        log["stream_result"] = result
        if charge is not None:
            log.update(charge.log_fields())
        if result != "complete":
            get_logger().warning(
                "upstream_stream_ended", model=outcome.upstream.name, result=result
            )


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))
