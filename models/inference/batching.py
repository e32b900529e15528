"""Micro-batching in front of an encoder.

Concurrent callers ``await submit(x)``; a single worker task runs one batched call at a
time in a dedicated thread (never on the event loop) and resolves every caller's future.
An idle encoder starts on a request at once (no window: a lone request never waits);
requests that arrive while a batch runs queue up and form the next batch, up to
``max_batch_size``. Only then, under load, may the worker wait up to ``window_s`` for
that batch to fill. When a batched call
fails, its items are retried one by one so only the bad item fails (one poisoned input
must not fail everyone batched with it). The queue is bounded: when full, ``submit``
raises :class:`QueueFullError` at once (HTTP 429). ``aclose`` resolves every pending and
in-flight future with :class:`BatcherClosedError` (HTTP 503), so no caller hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from models.core.errors import BatcherClosedError, QueueFullError

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

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
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue(queue_size)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: list[asyncio.Future[Out]] = []
        self._backlog = False  # requests arrived while a batch ran: the encoder is loaded
        self._closed = False

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name=f"batcher-{self.name}"
            )

    async def run_now(self, items: list[In]) -> Sequence[Out]:
        """Run one batch directly in the encoder thread (warm-up, offline evaluation)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fn, items)

    async def submit(self, item: In) -> Out:
        """Queue one item and wait for its result."""
        if self._closed:
            raise BatcherClosedError(f"batcher {self.name} is closed")
        self.start()
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
            self._backlog = self._backlog or bool(self._in_flight)
        except asyncio.QueueFull:
            if self._metrics is not None:
                self._metrics.rejected.labels("encoder_queue_full").inc()
            raise QueueFullError(
                f"{self.name} queue is full ({self._queue.maxsize} waiting); retry later"
            ) from None
        self._set_depth()
        return await future

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(self._queue.qsize())

    async def _collect(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """The next batch: what is waiting now; under load (requests queued while the
        last batch ran) also what arrives within ``window_s``, up to the batch size."""
        batch = [await self._queue.get()]
        window = self.window_s if self._backlog else 0.0
        self._backlog = False
        deadline = time.perf_counter() + window
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _call(self, items: list[In]) -> Sequence[Out]:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._fn, items)
        if len(results) != len(items):
            raise BatchSizeMismatchError(
                f"{self.name}: batch function returned {len(results)} results "
                f"for {len(items)} inputs"
            )
        return results

    async def _run_batch(self, live: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            results = await self._call([item for item, _ in live])
        except Exception as exc:  # isolation: retry one by one, fail only the bad items
            if len(live) == 1:
                _resolve(live[0][1], error=exc)
                return
            for item, fut in live:
                if fut.done():
                    continue
                try:
                    (result,) = await self._call([item])
                except Exception as item_exc:  # the batch function's own error, per item
                    _resolve(fut, error=item_exc)
                else:
                    _resolve(fut, result)
            return
        for (_, fut), result in zip(live, results, strict=True):
            _resolve(fut, result)

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            self._set_depth()
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            if self._metrics is not None:
                self._metrics.batch_size.labels(self.name).observe(len(live))
            self._in_flight = [fut for _, fut in live]
            try:
                await self._run_batch(live)
            finally:
                self._in_flight = []

    async def aclose(self) -> None:
        """Stop the worker; every queued or in-flight caller gets BatcherClosedError."""
        self._closed = True
        closed = BatcherClosedError(f"batcher {self.name} is closed (shutting down)")
        for fut in self._in_flight:
            _resolve(fut, error=closed)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            _resolve(fut, error=closed)
        self._set_depth()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _resolve(
    fut: asyncio.Future[Out], result: Out | None = None, *, error: BaseException | None = None
) -> None:
    """Set a future's result or error unless its caller already gave up (timeout)."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)  # type: ignore[arg-type]
