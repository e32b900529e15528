"""Admission control: a bounded number of requests at once, a bounded FIFO queue with a
deadline for the rest, and 429 past either bound.

Rejecting at once when the limit is reached looked cheap but collapsed goodput: clients
retried immediately, and the retry storm (each one read and parsed before it was
refused) took the CPU from the admitted work. Waiting a bounded time for a slot turns
bursts into queueing delay instead of failed requests; the queue's length and deadline
keep memory and latency bounded. Checked before the request body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.responses import Response

from models.core.errors import OverloadedError

if TYPE_CHECKING:
    from app.api.middleware import Receive, Scope, Send
    from app.metrics import RouterMetrics


class Slot:
    """One admitted request's hold on the limit; ``release`` is idempotent."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission._release()


class Admission:
    """At most ``limit`` requests at once; up to ``max_queued`` more wait (FIFO) for up
    to ``timeout_s``; anything past that is :class:`OverloadedError` (429)."""

    def __init__(
        self, limit: int, max_queued: int, timeout_s: float, metrics: RouterMetrics
    ) -> None:
        self.limit = limit
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._metrics = metrics

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _reject(self, reason: str, message: str) -> OverloadedError:
        self._metrics.rejected.labels(reason).inc()
        return OverloadedError(message)

    async def acquire(self) -> Slot:
        """A slot now, or after waiting in line; OverloadedError when none comes in time."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            self._metrics.admission_wait.observe(0.0)
            return Slot(self)
        if len(self._waiters) >= self.max_queued or self.timeout_s <= 0:
            raise self._reject("queue_full", "too many requests in flight; retry shortly")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._metrics.admission_queued.set(len(self._waiters))
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                await waiter
        except TimeoutError:
            if not (waiter.done() and not waiter.cancelled()):
                raise self._reject(
                    "queue_timeout",
                    f"no capacity within {self.timeout_s:g} s (too many requests); retry shortly",
                ) from None
            # the slot was handed over just as the deadline passed: take it
        except BaseException:  # cancelled (client gone, shutdown): hand on a slot we got
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):  # already popped by _release
                self._waiters.remove(waiter)
            self._metrics.admission_queued.set(len(self._waiters))
        self._metrics.admission_wait.observe(time.perf_counter() - began)
        return Slot(self)

    def _release(self) -> None:
        """Hand the slot to the longest waiter still waiting, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class HeldResponse(Response):
    """Sends ``inner`` and releases ``release`` when the response is over: fully sent,
    failed, or the client went away. A proxied stream (and the body it carries) thus
    counts against the limit until its last byte, not only until its first."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        # no super().__init__: this object only delegates; FastAPI reads these three
        self.inner = inner
        self.release = release
        self.status_code = inner.status_code
        self.background = inner.background
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()
