"""Image decoding under load, in-process through the real app (FakeStrategy, recommend mode).

1. Event-loop stall: a ticker coroutine sleeps 1 ms in a loop and records its worst lag
   while requests carrying one small-but-huge PNG (solid 4000x4000, ~56 KB compressed)
   are answered one after another.
2. Memory: ``--concurrency`` requests at once, each with ``--images`` big noisy-ish PNGs
   (``--side`` x ``--side``); reports peak RSS growth (VmHWM) and RSS left after the
   burst (VmRSS), both relative to before.

    PYTHONPATH=. .venv/bin/python -m bench.serving.bench_images \
        [--side 4900 --concurrency 16 --images 4]

Both numbers are measured in the same process and run; the machine is shared, so
compare runs only on the same machine and note the load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers import app_client, image_message, make_settings

CHAT = "/v1/chat/completions"


def _status_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _png_url(side: int, pattern: bool) -> str:
    img = Image.new("RGB", (side, side), (120, 30, 200))
    if pattern:  # a gradient stripe so the PNG is not trivially tiny
        img.paste(Image.linear_gradient("L").resize((side, 64)).convert("RGB"), (0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def _stall(client: Any, url: str, requests: int) -> dict[str, float]:
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - began - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    began = time.perf_counter()
    for _ in range(requests):
        resp = await client.post(CHAT, json={"messages": [image_message("what?", url)]})
        assert resp.status_code == 200, resp.text
    per_request = (time.perf_counter() - began) / requests
    stop.set()
    await task
    return {"max_loop_lag_ms": max(lags) * 1e3, "request_ms": per_request * 1e3}


async def _memory(client: Any, url: str, concurrency: int, images: int) -> dict[str, float]:
    body = {"messages": [image_message("what?", *([url] * images))]}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    rss0 = _status_kib("VmRSS")
    began = time.perf_counter()
    resps = await asyncio.gather(*(client.post(CHAT, json=body) for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    statuses: dict[int, int] = {}
    for r in resps:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    await asyncio.sleep(0.5)
    return {
        "peak_rss_growth_mib": (_status_kib("VmHWM") - rss0) / 1024,
        "rss_after_growth_mib": (_status_kib("VmRSS") - rss0) / 1024,
        "burst_s": elapsed,
        "statuses": statuses,  # type: ignore[dict-item]
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=4900)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--stall-requests", type=int, default=5)
    parser.add_argument("--wait-s", type=float, default=600.0, help="image budget wait")
    parser.add_argument("--no-trim", action="store_true", help="skip malloc_trim")
    args = parser.parse_args()
    if args.no_trim:
        try:
            import app.images.loader as loader

            loader._load_malloc_trim = lambda: None  # type: ignore[assignment]
        except ImportError:  # before the image pipeline existed
            pass
    limits: dict[str, Any] = {"max_images": max(8, args.images), "max_concurrency": 1024}
    try:
        make_settings(limits={"image_wait_s": args.wait_s})
        limits["image_wait_s"] = args.wait_s
    except ValueError:  # before the setting existed
        pass
    settings = make_settings(limits=limits, log_level="warning")
    stall_url = _png_url(4000, pattern=False)
    big_url = _png_url(args.side, pattern=True)
    async with app_client(settings) as client:
        await client.post(CHAT, json={"messages": [image_message("warm", stall_url)]})
        stall = await _stall(client, stall_url, args.stall_requests)
        memory = await _memory(client, big_url, args.concurrency, args.images)
    out = {
        "stall_png_4000x4000_kb": round(len(stall_url) * 3 / 4 / 1024, 1),
        **{k: round(v, 1) for k, v in stall.items()},
        "memory_case": f"{args.concurrency} requests x {args.images} PNGs {args.side}x{args.side}",
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in memory.items()},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
