"""Micro-batching in front of an encoder.

Concurrent callers ``await submit(x)``; a single worker task collects items for up to
``window_s`` (or until ``max_batch_size``), runs one batched call in a dedicated
thread (never on the event loop), and resolves every caller's future, or fails them all
with the batch's error. The queue is bounded: when full, ``submit`` raises
:class:`QueueFullError` at once (the HTTP layer answers 429).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from app.metrics import RouterMetrics

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFullError(RuntimeError):
    """The encoder's queue is full: the service is overloaded."""


class BatcherClosedError(RuntimeError):
    """submit() after aclose()."""


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
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._fn = fn
        self.name = name
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue(queue_size)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._worker: asyncio.Task[None] | None = None
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
        except asyncio.QueueFull:
            raise QueueFullError(
                f"{self.name} queue is full ({self._queue.maxsize} waiting); retry later"
            ) from None
        self._set_depth()
        return await future

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(self._queue.qsize())

    async def _collect(self) -> list[tuple[In, asyncio.Future[Out]]]:
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.window_s
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

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._set_depth()
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            if self._metrics is not None:
                self._metrics.batch_size.labels(self.name).observe(len(live))
            try:
                results = await loop.run_in_executor(
                    self._executor, self._fn, [item for item, _ in live]
                )
                if len(results) != len(live):
                    raise RuntimeError(
                        f"{self.name}: batch function returned {len(results)} results "
                        f"for {len(live)} inputs"
                    )
            except Exception as exc:  # every caller of this batch gets the same error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        """Stop the worker, fail anything still queued, release the thread."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(BatcherClosedError(f"batcher {self.name} closed"))
        self._executor.shutdown(wait=False, cancel_futures=True)
