"""Images of one request → decoded RGB images, off the event loop and under a memory budget.

* Every pixel decode runs in a small dedicated thread pool (``ROUTER_LIMITS__IMAGE_DECODE_
  THREADS``); so does base64 decoding and header parsing of large payloads (small ones
  stay inline: a thread hop costs more than they do).
* Decoded pixels in flight across all requests are bounded by a :class:`PixelBudget`
  (``ROUTER_LIMITS__IMAGE_PIXELS_IN_FLIGHT``): an image reserves its pixel count, read from
  the header, before its buffer exists, and gives it back when the worker is done (even
  if the request was cancelled meanwhile). An image that cannot get its share within
  ``ROUTER_LIMITS__IMAGE_WAIT_S`` is answered 429.
* After a large decode the worker asks glibc to hand freed memory back to the OS
  (``malloc_trim``); without it a burst of big images left the process at its peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from PIL.Image import Image

from app.images import decode as images
from app.images.fetch import ImageFetcher, ImageRef, first_error
from app.settings import Settings
from models.core.errors import NotReadyError, OverloadedError

T = TypeVar("T")
INLINE_BYTES = 64 * 1024  # base64/header work below this stays on the loop
TRIM_PIXELS = 4_000_000  # decodes at least this big return freed memory to the OS


class PixelBudget:
    """A FIFO, weighted async semaphore counting decoded pixels in flight."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, pixels: int, timeout: float) -> int:
        """Reserve ``pixels`` (capped at the capacity); 429 after ``timeout`` seconds."""
        pixels = min(pixels, self.capacity)
        if not self._waiters and self.used + pixels <= self.capacity:
            self.used += pixels
            return pixels
        entry = (pixels, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(entry[1])
        except BaseException as exc:
            if entry[1].done():  # granted just as we gave up: hand it back
                self.release(pixels)
            else:
                entry[1].cancel()
                self._waiters.remove(entry)
                self._wake()
            if isinstance(exc, TimeoutError):
                raise OverloadedError(
                    "image decoding is at capacity; retry shortly", code="image_decode_busy"
                ) from None
            raise
        return pixels

    def release(self, pixels: int) -> None:
        self.used -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            pixels, future = self._waiters.popleft()
            self.used += pixels
            future.set_result(None)


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


class ImageLoader:
    """Fetches and decodes a request's images; one per app, closed by its lifespan."""

    def __init__(self, settings: Settings, fetcher: ImageFetcher | None = None) -> None:
        self.limits = settings.limits
        self.executor = ThreadPoolExecutor(
            self.limits.image_decode_threads, thread_name_prefix="image-decode"
        )
        self.budget = PixelBudget(self.limits.image_pixels_in_flight)
        self.fetcher = fetcher if fetcher is not None else ImageFetcher(settings)
        self._malloc_trim = _load_malloc_trim()
        self.preview = images.device_decodes_jpeg(settings)

    async def aclose(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.fetcher.aclose()

    async def load(self, refs: Sequence[ImageRef]) -> list[Image]:
        """Decoded images in request order, or the first image's 4xx error."""
        if not refs:
            return []
        remote = [r for r in refs if not r.url.startswith("data:")]
        bodies = await self.fetcher.fetch_all(remote)
        fetched = dict(zip((r.param for r in remote), bodies, strict=True))
        return await first_error([self._decode(fetched.get(r.param, r), r.param) for r in refs])

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def _decode(self, source: bytes | ImageRef, param: str) -> Image:
        limits = self.limits
        if isinstance(source, ImageRef):
            payload = images.data_url_payload(source.url, limits, param)
            if len(payload) <= INLINE_BYTES:
                data = images.b64decode(payload, param)
            else:
                data = await self._run(partial(images.b64decode, payload, param))
        else:
            data = source
        probe = partial(images.probe, data, limits, param, preview=self.preview)
        img = probe() if len(data) <= INLINE_BYTES else await self._run(probe)
        return await self._budgeted(images.decode_pixels(img), partial(self._finish, img, param))

    def _finish(self, img: Image, param: str) -> Image:
        large = images.decode_pixels(img) >= TRIM_PIXELS
        result = None
        try:
            result = images.finish(img, self.limits, param)
            return result
        finally:
            if result is not img:
                img.close()  # drop the full-size buffer now, not at garbage collection
            if large and self._malloc_trim is not None:
                self._malloc_trim(0)

    async def _budgeted(self, pixels: int, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the pool holding ``pixels`` of the budget until the worker ends."""
        loop = asyncio.get_running_loop()
        held = await self.budget.acquire(pixels, self.limits.image_wait_s)
        try:
            future = self.executor.submit(fn)
        except RuntimeError:  # pool shut down: the app is stopping
            self.budget.release(held)
            raise NotReadyError("the router is shutting down") from None

        def done(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self.budget.release, held)

        future.add_done_callback(done)
        result: Awaitable[T] = asyncio.wrap_future(future)
        return await result
