"""Edge cost per request, in-process: parse JSON, validate, decode images.

Compares the service's path (orjson, Pillow draft-mode JPEG decoding at reduced size)
with a naive baseline measured in the same run (stdlib json, full-size decode, then
resize), for each workload.

    python -m bench.serving.bench_parsing [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import time

import numpy as np
import orjson
from PIL import Image

from app.api.intake import normalise
from app.api.schemas import ChatCompletionRequest, ImagePart
from app.images.decode import DECODE_MAX_SIDE
from app.images.loader import ImageLoader
from app.settings import Settings
from bench.common import md_table, write_results
from bench.serving.workloads import WORKLOADS, body


def naive(raw: bytes) -> int:
    """The baseline: stdlib json, full-size decode, then resize."""
    req = ChatCompletionRequest.model_validate(json.loads(raw))
    n = 0
    for message in req.messages:
        for part in message.content if isinstance(message.content, list) else []:
            if isinstance(part, ImagePart):
                data = base64.b64decode(part.image_url.url.split(",", 1)[1])
                img = Image.open(io.BytesIO(data)).convert("RGB")
                img.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE))
                n += 1
    return n


async def ours(raw: bytes, settings: Settings, loader: ImageLoader) -> int:
    req = ChatCompletionRequest.model_validate(orjson.loads(raw))
    return len((await normalise(req, settings, loader)).images)


async def naive_async(raw: bytes) -> int:
    return naive(raw)


async def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of ``await fn()``, both paths inside one running loop."""
    await fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    settings = Settings()
    loader = ImageLoader(settings)  # the service's shared decode pool, as in the app
    rows, results = [], {}
    for name in WORKLOADS:
        raw = body(name)
        base_ms = asyncio.run(timed(lambda raw=raw: naive_async(raw), args.repeat))
        ours_ms = asyncio.run(timed(lambda raw=raw: ours(raw, settings, loader), args.repeat))
        results[name] = {
            "bytes": len(raw),
            "baseline_ms": round(base_ms, 3),
            "service_ms": round(ours_ms, 3),
            "speedup": round(base_ms / ours_ms, 2),
        }
        rows.append(
            [name, len(raw), f"{base_ms:.2f}", f"{ours_ms:.2f}", f"{base_ms / ours_ms:.2f}x"]
        )
    asyncio.run(loader.aclose())
    table = md_table(["workload", "body bytes", "naive ms", "service ms", "speed-up"], rows)
    write_results("parsing", {"repeat": args.repeat, "results": results}, table)
    print(table)


if __name__ == "__main__":
    main()
