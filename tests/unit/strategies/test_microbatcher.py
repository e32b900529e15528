"""MicroBatcher: results reach the right callers, a bad item fails only its own caller, a
full queue refuses at once, batches form under concurrency, work runs off the loop, an
idle encoder starts at once and the window applies only under load."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

import pytest

from app.metrics import RouterMetrics
from models.inference.batching import BatcherClosedError, MicroBatcher, QueueFullError


async def test_each_caller_gets_its_own_result_and_batches_form() -> None:
    sizes: list[int] = []
    threads: set[str] = set()

    def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return [2 * x for x in items]

    metrics = RouterMetrics()
    batcher = MicroBatcher(double, name="t", max_batch_size=8, window_s=0.005, metrics=metrics)
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    finally:
        await batcher.aclose()
    assert results == [2 * i for i in range(20)]
    assert max(sizes) > 1 and max(sizes) <= 8 and sum(sizes) == 20
    assert threading.current_thread().name not in threads  # never on the event loop thread
    count = metrics.registry.get_sample_value("llm_router_batch_size_count", {"encoder": "t"})
    assert count == len(sizes)


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    release = threading.Event()
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if len(sizes) == 1:
            release.wait(5)  # the encoder is busy while the next three queue up
        if -1 in items:
            raise ValueError("boom")
        return items

    batcher = MicroBatcher(fn, name="t", max_batch_size=4, window_s=0.05)
    try:
        busy = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)
        batched = [asyncio.create_task(batcher.submit(x)) for x in (1, -1, 2)]
        await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.gather(busy, *batched, return_exceptions=True)
        assert results[1] == 1 and results[3] == 2  # batched with a bad item, still answered
        assert isinstance(results[2], ValueError) and str(results[2]) == "boom"
        assert sizes[1] == 3  # it was one batch before the items were retried one by one
        assert await batcher.submit(5) == 5  # the worker survives a failed batch
    finally:
        await batcher.aclose()


async def test_full_queue_refuses_immediately() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    batcher = MicroBatcher(slow, name="t", max_batch_size=1, window_s=0.0, queue_size=2)
    tasks = [asyncio.create_task(batcher.submit(0))]
    await asyncio.sleep(0.05)  # item 0 is in the worker
    tasks += [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)  # two waiting: the queue is full
    with pytest.raises(QueueFullError, match="queue is full"):
        await batcher.submit(99)
    release.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2]
    await batcher.aclose()
    with pytest.raises(BatcherClosedError):
        await batcher.submit(1)


async def test_close_resolves_in_flight_and_queued_callers() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    batcher = MicroBatcher(slow, name="t", max_batch_size=1, window_s=0.0, queue_size=4)
    in_flight = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.05)  # item 0 is in the worker thread
    queued = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    await batcher.aclose()
    release.set()
    results = await asyncio.wait_for(asyncio.gather(in_flight, queued, return_exceptions=True), 5)
    assert all(isinstance(r, BatcherClosedError) for r in results), results


async def test_an_idle_encoder_starts_at_once() -> None:
    """A lone request never waits for the window (c=1 pays none): with a 30 s window
    it is still answered at once."""
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher = MicroBatcher(fn, name="t", max_batch_size=32, window_s=30.0)
    try:
        for i in range(3):  # each time the encoder is idle again
            assert await asyncio.wait_for(batcher.submit(i), 10) == i
    finally:
        await batcher.aclose()
    assert sizes == [1, 1, 1]


async def test_a_caller_answered_and_back_at_once_pays_no_window() -> None:
    """The encoder thread clears its in-flight batch a moment after posting the results;
    a caller answered in that moment and submitting again finds the encoder idle, not
    loaded (it once found it loaded and waited the whole window)."""
    batcher = MicroBatcher(lambda items: items, name="t", max_batch_size=32, window_s=30.0)
    post = batcher._post

    def slow_post(fut: Any, result: Any = None, *, error: Any = None) -> None:
        post(fut, result, error=error)
        time.sleep(0.3)  # the thread descheduled between posting and clearing in-flight

    batcher._post = slow_post  # type: ignore[method-assign]
    try:
        for i in range(3):
            assert await asyncio.wait_for(batcher.submit(i), 10) == i
    finally:
        await batcher.aclose()


async def test_requests_arriving_during_a_batch_form_the_next_one() -> None:
    release = threading.Event()
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if len(sizes) == 1:
            release.wait(5)
        return items

    batcher = MicroBatcher(fn, name="t", max_batch_size=4, window_s=0.0)
    try:
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # item 0 is in the worker: the encoder is busy
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.gather(first, *rest) == list(range(7))
    finally:
        await batcher.aclose()
    assert sizes == [1, 4, 2]  # queued while busy: batched, up to max_batch_size


async def test_under_load_the_window_lets_a_batch_fill() -> None:
    """Requests queued while a batch ran start a batch that waits (up to the window)
    for more: one arriving a little later still joins it."""
    release = threading.Event()
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if len(sizes) == 1:
            release.wait(5)
        return items

    batcher = MicroBatcher(fn, name="t", max_batch_size=3, window_s=30.0)
    try:
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.sleep(0.1)  # the worker took 1 and 2 and waits for a third
        late = asyncio.create_task(batcher.submit(3))
        results = await asyncio.wait_for(asyncio.gather(first, *queued, late), 10)
        assert results == [0, 1, 2, 3]
    finally:
        await batcher.aclose()
    assert sizes == [1, 3]


async def test_aclose_waits_for_the_thread_and_lets_go_of_the_encoder() -> None:
    """After aclose the encoder thread has ended and the batcher holds no reference to
    the encoder, so a native runtime behind it is released while the process is whole
    (left to interpreter exit, ONNX Runtime torn down beside torch crashed processes)."""

    class Encoder:
        def encode(self, items: list[int]) -> list[int]:
            return items

    encoder = Encoder()
    gone = weakref.ref(encoder)
    batcher = MicroBatcher(encoder.encode, name="t", window_s=0.0)
    assert await batcher.submit(1) == 1
    thread = batcher._thread
    assert thread is not None and thread.is_alive()
    del encoder
    await batcher.aclose()
    assert not thread.is_alive()
    gc.collect()
    assert gone() is None
    with pytest.raises(BatcherClosedError):
        await batcher.submit(2)
