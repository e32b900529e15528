"""The image pipeline: decoding off the event loop, and the pixel budget across requests.

No timing assertions: "the loop was not blocked" is shown by the loop making progress
*while* a decode is running (the decode waits, in its worker, for the loop to tick).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from app.errors import status_of
from app.images import decode as images
from app.images.loader import INLINE_BYTES, PixelBudget
from models.core.errors import OverloadedError
from tests.helpers import app_client, data_url, image_message, make_settings, png_bytes

CHAT = "/v1/chat/completions"


def small_huge_png() -> bytes:
    """4000x4000 solid PNG: ~56 KB compressed, under the inline-bytes cut-off."""
    data = png_bytes(4000, 4000)
    assert len(data) <= INLINE_BYTES
    return data


async def post(client: Any, *urls: str) -> Any:
    return await client.post(CHAT, json={"messages": [image_message("what?", *urls)]})


def record_threads(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Wrap ``app.images.decode.<name>`` to record which thread ran it."""
    seen: list[str] = []
    real: Callable[..., Any] = getattr(images, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, name, wrapped)
    return seen


async def test_small_file_big_image_decodes_in_a_worker_while_the_loop_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 56 KB 4000x4000 PNG used to decode on the event loop; now the loop keeps
    ticking while its pixels decode in the image-decode pool."""
    ticks = 0
    progressed: list[bool] = []
    real_finish = images.finish

    def finish(*args: Any) -> Image.Image:
        start = ticks
        for _ in range(500):  # wait (bounded) until the loop ticks: impossible if blocked
            if ticks > start + 2:
                break
            threading.Event().wait(0.01)
        progressed.append(ticks > start + 2)
        return real_finish(*args)

    monkeypatch.setattr(images, "finish", finish)
    threads = record_threads(monkeypatch, "finish")
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async with app_client() as client:
        task = asyncio.create_task(ticker())
        resp = await post(client, data_url(small_huge_png()))
        stop.set()
        await task
    assert resp.status_code == 200, resp.text
    assert threads and all(t.startswith("image-decode") for t in threads), threads
    assert progressed == [True]


async def test_large_base64_decodes_off_the_loop_small_stays_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = record_threads(monkeypatch, "b64decode")
    big = Image.effect_noise((200, 200), 64).convert("RGB")  # noise: ~120 KB as PNG
    big_png = io.BytesIO()
    big.save(big_png, format="PNG")
    assert len(big_png.getvalue()) > INLINE_BYTES
    async with app_client() as client:
        small = await post(client, data_url(png_bytes(8, 8)))
        large = await post(client, data_url(big_png.getvalue()))
    assert small.status_code == large.status_code == 200
    assert threads[0] == threading.current_thread().name  # inline, on the loop
    assert threads[1].startswith("image-decode")


async def test_budget_grants_fifo_and_times_out_with_429() -> None:
    budget = PixelBudget(100)
    assert await budget.acquire(60, timeout=1) == 60
    with pytest.raises(OverloadedError) as info:
        await budget.acquire(60, timeout=0.05)
    assert status_of(info.value)[0] == 429 and info.value.code == "image_decode_busy"
    assert budget.used == 60  # the timed-out waiter took nothing
    order: list[str] = []

    async def want(name: str, pixels: int) -> None:
        await budget.acquire(pixels, timeout=5)
        order.append(name)

    big = asyncio.create_task(want("big", 90))
    await asyncio.sleep(0)
    small = asyncio.create_task(want("small", 10))  # fits now, but queues behind big
    await asyncio.sleep(0.01)
    assert order == []
    budget.release(60)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.used == 100
    budget.release(100)
    assert await budget.acquire(10**9, timeout=0.05) == 100  # capped to the capacity


async def test_cancelled_waiter_gives_its_place_back() -> None:
    budget = PixelBudget(10)
    await budget.acquire(10, timeout=1)
    waiter = asyncio.create_task(budget.acquire(5, timeout=5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10)
    assert budget.used == 0


async def test_pixels_in_flight_are_bounded_across_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for one 100x100 image, a second concurrent decode waits, then gets 429;
    once the first finishes, requests succeed again."""
    gate = threading.Event()
    entered = threading.Event()
    real_finish = images.finish

    def held_finish(*args: Any) -> Image.Image:
        entered.set()
        gate.wait(10)
        return real_finish(*args)

    monkeypatch.setattr(images, "finish", held_finish)
    settings = make_settings(
        limits={"max_image_pixels": 10_000, "image_pixels_in_flight": 10_000, "image_wait_s": 0.2}
    )
    url = data_url(png_bytes(100, 100))
    async with app_client(settings) as client:
        first = asyncio.create_task(post(client, url))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        second = await post(client, url)
        gate.set()
        assert (await first).status_code == 200
        third = await post(client, url)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "image_decode_busy"
    assert second.headers["retry-after"]
    assert third.status_code == 200


def test_budget_smaller_than_one_image_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="IMAGE_PIXELS_IN_FLIGHT"):
        make_settings(limits={"max_image_pixels": 1000, "image_pixels_in_flight": 999})


def test_default_pixel_cap_fits_what_encoders_use() -> None:
    limits = make_settings().limits
    assert limits.max_image_pixels <= 25_000_000
    assert limits.image_pixels_in_flight >= limits.max_image_pixels
