"""Micro-batching in front of an encoder.

Concurrent callers ``await submit(x)``; one encoder thread (never the event loop) runs
one batched call of ``fn`` at a time and resolves every caller's future. The thread takes
its next batch itself, the moment the last one is done, so the encoder never waits for
the event loop to hand it work:

* an idle encoder starts on a request at once (no window: a lone request never waits);
* requests that arrive while a batch runs queue up and form the next batch, up to
  ``max_batch_size``; only then, under load, may the thread wait up to ``window_s`` for
  that batch to fill.

When a batched call fails, its items are retried one by one so only the bad item fails
(one poisoned input must not fail everyone batched with it). The queue is bounded: when
full, ``submit`` raises :class:`QueueFullError` at once (HTTP 429). ``aclose`` resolves
every pending and in-flight future with :class:`BatcherClosedError` (HTTP 503), so no
caller hangs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from models.core.errors import BatcherClosedError, QueueFullError

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

JOIN_TIMEOUT_S = 10.0  # aclose waits this long for a batch still running

In = TypeVar("In")
Out = TypeVar("Out")


class BatchMetrics(Protocol):
    """The metrics a batcher records (the app's ``RouterMetrics`` has them)."""

    rejected: Counter
    batch_size: Histogram
    queue_depth: Gauge


class BatchSizeMismatchError(Exception):
    """The batch function returned a different number of results than inputs."""


class MicroBatcher(Generic[In, Out]):
    """Collect concurrent single-item calls into batched calls of ``fn``."""

    def __init__(
        self,
        fn: Callable[[list[In]], Sequence[Out]],
        *,
        name: str,
        max_batch_size: int = 32,
        window_s: float = 0.002,
        queue_size: int = 1024,
        metrics: BatchMetrics | None = None,
    ) -> None:
        self._fn = fn
        self.name = name
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self._queue_size = max(1, queue_size)
        self._metrics = metrics
        self._cond = threading.Condition()
        # guarded by _cond: waiting items, whole-batch jobs (run_now), the running batch
        self._pending: collections.deque[tuple[In, asyncio.Future[Out]]] = collections.deque()
        self._jobs: collections.deque[tuple[list[In], asyncio.Future[Sequence[Out]]]] = (
            collections.deque()
        )
        self._in_flight: list[asyncio.Future[Any]] = []
        self._backlog = False  # requests arrived while a batch ran: the encoder is loaded
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the encoder thread (submit and run_now start it too)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name=f"batch-{self.name}", daemon=True
            )
            self._thread.start()

    async def run_now(self, items: list[In]) -> Sequence[Out]:
        """Run one batch of any size in the encoder thread (warm-up, offline evaluation)."""
        if self._closed:
            raise BatcherClosedError(f"batcher {self.name} is closed")
        self.start()
        future: asyncio.Future[Sequence[Out]] = asyncio.get_running_loop().create_future()
        with self._cond:
            self._jobs.append((items, future))
            self._cond.notify()
        return await future

    async def submit(self, item: In) -> Out:
        """Queue one item and wait for its result."""
        if self._closed:
            raise BatcherClosedError(f"batcher {self.name} is closed")
        self.start()
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        with self._cond:
            if len(self._pending) >= self._queue_size:
                full = True
            else:
                full = False
                self._pending.append((item, future))
                # a batch still running (its callers not yet answered) means load; once
                # its results are posted the encoder is idle again, even if its thread
                # has not yet cleared _in_flight (a caller answered and submitting again
                # at once must not pay the window)
                self._backlog = self._backlog or any(not f.done() for f in self._in_flight)
                self._cond.notify()
            depth = len(self._pending)
        if full:
            if self._metrics is not None:
                self._metrics.rejected.labels("encoder_queue_full").inc()
            raise QueueFullError(
                f"{self.name} queue is full ({self._queue_size} waiting); retry later"
            )
        self._set_depth(depth)
        return await future

    def _set_depth(self, depth: int) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(depth)

    # --- the encoder thread ---

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._jobs or self._closed):
                    self._cond.wait()
                if self._closed:
                    return
                if self._jobs:
                    job: Any = self._jobs.popleft()
                    batch: list[tuple[In, asyncio.Future[Out]]] = []
                else:
                    job, batch = None, self._take()
                self._in_flight = [job[1]] if job else [fut for _, fut in batch]
                depth = len(self._pending)
            self._set_depth(depth)
            try:
                if job is not None:
                    self._run_job(*job)
                elif batch:
                    self._run_batch(batch)
            finally:
                with self._cond:
                    self._in_flight = []

    def _take(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """The next batch (called holding the lock): what is waiting now; under load
        (requests queued while the last batch ran) also what arrives within ``window_s``,
        up to the batch size. Callers that already gave up are dropped."""
        window = self.window_s if self._backlog else 0.0
        self._backlog = False
        deadline = time.perf_counter() + window
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        while not self._closed:
            while self._pending and len(batch) < self.max_batch_size:
                item, fut = self._pending.popleft()
                if not fut.done():
                    batch.append((item, fut))
            remaining = deadline - time.perf_counter()
            if len(batch) >= self.max_batch_size or remaining <= 0 or self._jobs:
                break
            self._cond.wait(remaining)
        return batch

    def _call(self, items: list[In]) -> Sequence[Out]:
        results = self._fn(items)
        if len(results) != len(items):
            raise BatchSizeMismatchError(
                f"{self.name}: batch function returned {len(results)} results "
                f"for {len(items)} inputs"
            )
        return results

    def _run_batch(self, live: list[tuple[In, asyncio.Future[Out]]]) -> None:
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(len(live))
        try:
            results = self._call([item for item, _ in live])
        except Exception as exc:  # isolation: retry one by one, fail only the bad items
            if len(live) == 1:
                self._post(live[0][1], error=exc)
                return
            for item, fut in live:
                if fut.done() or self._closed:
                    continue
                try:
                    (result,) = self._call([item])
                except Exception as item_exc:  # the batch function's own error, per item
                    self._post(fut, error=item_exc)
                else:
                    self._post(fut, result)
            return
        for (_, fut), result in zip(live, results, strict=True):
            self._post(fut, result)

    def _run_job(self, items: list[In], fut: asyncio.Future[Sequence[Out]]) -> None:
        try:
            results = self._call(items)
        except Exception as exc:  # the caller (start-up) gets the batch function's error
            self._post(fut, error=exc)
        else:
            self._post(fut, results)

    def _post(self, fut: asyncio.Future[Any], result: Any = None, *, error: Any = None) -> None:
        """Resolve a caller's future on its event loop (from the encoder thread)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            fut.get_loop().call_soon_threadsafe(_resolve, fut, result, error)

    async def aclose(self) -> None:
        """Stop the encoder thread; every queued or in-flight caller gets
        BatcherClosedError (a batch still running finishes in the background)."""
        self._closed = True
        closed = BatcherClosedError(f"batcher {self.name} is closed (shutting down)")
        with self._cond:
            waiting: list[asyncio.Future[Any]] = [fut for _, fut in self._pending]
            waiting += [fut for _, fut in self._jobs] + self._in_flight
            self._pending.clear()
            self._jobs.clear()
            self._cond.notify_all()
        for fut in waiting:
            _resolve(fut, error=closed)
        self._set_depth(0)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            # wait (off the event loop) for a batch still running: the encoder and its
            # native runtime are then free to be released while the process is whole,
            # not torn down under a running thread at interpreter exit
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
        self._fn = _closed_fn  # let go of the encoder (a closed batcher never calls it)


def _closed_fn(items: list[Any]) -> Sequence[Any]:
    raise BatcherClosedError("batcher is closed")


def _resolve(
    fut: asyncio.Future[Out], result: Out | None = None, error: BaseException | None = None
) -> None:
    """Set a future's result or error unless its caller already gave up (timeout)."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)  # type: ignore[arg-type]
