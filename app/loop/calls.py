"""One chat call to a configured model, as ``collect`` and ``label --judge`` make it:
the proxy's upstream client (URL, key, headers, timeouts: ``build_upstream``; one
exchange and its failure classification: ``exchange``), plus retries with backoff.

A failure is retried when the proxy would have fallen back to another model on it
(connect errors, 429, 5xx, a stale pooled connection: the upstream did not do the work),
after ``retry-after`` when the upstream sent one, else after an exponential backoff with
jitter. A read timeout or a connection lost after the request was sent is not retried
(the upstream may have done, and billed, the work) unless the model sets
``retry_on_timeout``. Any other answer (2xx, or a 4xx such as a prompt too long for the
model) ends the call. A call never raises for an upstream's failure: it returns a
``CallResult`` saying what happened, for the output row.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from app.metrics import RouterMetrics
from app.proxy.upstream import AttemptFailed, Upstream, build_upstream, exchange, upstream_client
from app.settings import ProxySettings
from models.core.errors import ProxySaturatedError
from models.core.pricing import Usage, parse_usage
from models.core.routing_config import RoutingConfig

HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}
MAX_WAIT_S = 60.0  # a retry-after longer than this ends the call (rerun later)
ERROR_TEXT = 300  # characters of an upstream error message kept in the row


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 4  # extra attempts after the first
    backoff_s: float = 1.0  # first backoff; doubles per attempt, with jitter
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        backoff = base / 2 + random.uniform(0, base / 2)
        return max(backoff, retry_after) if retry_after is not None else backoff


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one call ended: the answer body, or the error; tokens used; time; attempts."""

    ok: bool
    body: dict[str, Any] | None
    usage: Usage | None
    latency_s: float
    attempts: int
    http_status: int | None = None
    error: str | None = None


def retry_after(response: httpx.Response | None) -> float | None:
    """The ``retry-after`` header in seconds (a number or an HTTP date), else None."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:ERROR_TEXT].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message if message is not None else data)[:ERROR_TEXT]


class Caller:
    """Calls the routing config's models over one pooled client; close with ``aclose``."""

    def __init__(self, config: RoutingConfig, proxy: ProxySettings, policy: RetryPolicy) -> None:
        self.http = upstream_client(proxy)
        self.metrics = RouterMetrics()  # exchange() counts into it; nothing exports it
        self.policy = policy
        self.upstreams = {m.name: build_upstream(m, proxy) for m in config.models}

    def unusable(self, models: list[str]) -> list[str]:
        """'model: why' for each of ``models`` that cannot be called."""
        return [f"{m}: {p}" for m in models if (p := self.upstreams[m].problem)]

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, model: str, request: dict[str, Any]) -> CallResult:
        """``request`` (a chat body without ``model``) sent to ``model``'s upstream."""
        up = self.upstreams[model]
        payload = orjson.dumps({"model": up.model_id, **request})
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(up, payload)
            if isinstance(outcome, _Retry):
                wait, error = outcome.wait_s, outcome.error
                last = attempt > self.policy.retries
                if not last and wait is not None and wait > MAX_WAIT_S:
                    error, last = f"{error}; retry-after {wait:g} s is over {MAX_WAIT_S:g} s", True
                if not last:
                    await asyncio.sleep(self.policy.delay(attempt, wait))
                    continue
                outcome = CallResult(False, None, None, 0.0, 0, outcome.http_status, error)
            latency = time.perf_counter() - started
            return CallResult(
                outcome.ok, outcome.body, outcome.usage, latency, attempt,
                outcome.http_status, outcome.error,
            )  # fmt: skip

    async def _attempt(self, up: Upstream, payload: bytes) -> CallResult | _Retry:
        """One exchange: how the call ended, or a failure worth another attempt."""
        try:
            answer = await exchange(self.http, self.metrics, up, payload, HEADERS, stream=False)
        except AttemptFailed as exc:
            response = exc.response
            status = response.status_code if response is not None else None
            detail = exc.detail + (f": {_error_message(exc.body)}" if exc.body else "")
            if not exc.fallback:  # the upstream may have done the work: never sent again
                return CallResult(False, None, None, 0.0, 0, status, detail)
            return _Retry(detail, status, retry_after(response))
        except ProxySaturatedError as exc:  # every pooled connection busy: wait and retry
            return _Retry(exc.message, None, None)
        status = answer.response.status_code
        if status >= 300:
            message = f"HTTP {status}: {_error_message(answer.body)}"
            return CallResult(False, None, None, 0.0, 0, status, message)
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return CallResult(False, None, None, 0.0, 0, status, "answer is not a JSON object")
        return CallResult(True, body, parse_usage(body.get("usage")), 0.0, 0, status)


@dataclass(frozen=True, slots=True)
class _Retry:
    error: str
    http_status: int | None
    wait_s: float | None  # the upstream's retry-after


def answer_text(body: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The first choice's message text and finish reason of a chat answer; (None, why)
    when the answer has no choices."""
    choices = body.get("choices") if body else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, None
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    finish = choices[0].get("finish_reason")
    return ("" if content is None else str(content)), (finish if isinstance(finish, str) else None)
