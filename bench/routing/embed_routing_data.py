"""Embed the routing data sets once (RouterBench train/test, RouteLLM GSM8K) with the auto
strategy's MiniLM encoder, into the training embedding cache.

    PYTHONPATH=. .venv/bin/python -m bench.routing.embed_routing_data
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.cli.replay import conversation_of
from app.settings import Settings
from models.encoders.cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoders.conversation import build_encoder
from models.evaluation.data import read_jsonl

FILES = (
    "bench/data/routerbench/train.jsonl",
    "bench/data/routerbench/test.jsonl",
    "/work/shared/data/routellm/gsm8k.jsonl",
)


async def _convs(path: str, settings: Settings) -> list:  # type: ignore[type-arg]
    return [await conversation_of(r, settings) for r in read_jsonl(Path(path))]


def main() -> None:
    settings = Settings()
    encoder = build_encoder("minilm", None, "cpu", 128)
    for path in FILES:
        convs = asyncio.run(_convs(path, settings))
        start = time.perf_counter()
        x = embed_cached(encoder, convs, DEFAULT_CACHE_DIR)
        print(f"{path}: {x.shape} in {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
