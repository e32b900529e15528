"""A bounded load test on loopback: a real server process under concurrent mixed text and
image traffic answers every request correctly (no 5xx) and its memory stays bounded.

~30 s in all (CI has 2 cores): a short warm-up, then DURATION_S at CONCURRENCY. Numbers
are printed (run with -s); the RSS bound is generous, a leak per request exceeds it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import (
    FAKE,
    data_url,
    image_message,
    jpeg_bytes,
    png_bytes,
    running_server,
    user,
)

CONCURRENCY = 32
WARMUP_S = 4.0
DURATION_S = 20.0
RSS_GROWTH_LIMIT_MB = 150.0
MODELS = set(load_routing_config(DEFAULT_CONFIG).model_names)
CHAT = "/v1/chat/completions"


def payloads() -> list[dict[str, Any]]:
    """Mixed requests: plain and multi-turn text, PNG and JPEG data URLs, streaming."""
    png = data_url(png_bytes(32, 32))
    jpeg = data_url(jpeg_bytes(96, 96), "image/jpeg")
    chat = [user("hello there"), {"role": "assistant", "content": "hi!"}, user("tell me more")]
    return [
        {"messages": [user("what is the capital of France?")]},
        {"messages": [{"role": "system", "content": "be brief"}, *chat]},
        {"messages": [image_message("what is in this picture?", png)]},
        {"messages": [image_message("describe both", png, jpeg)]},
        {"messages": [user("prove that sqrt(2) is irrational " * 40)], "stream": True},
        {"messages": [image_message("and this one?", jpeg)], "model": "router"},
    ]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def problem(resp: httpx.Response, stream: bool) -> str | None:
    if resp.status_code != 200:
        return f"status {resp.status_code}: {resp.text[:200]}"
    if stream:
        ok = resp.content.endswith(b"data: [DONE]\n\n")
        return None if ok else f"bad stream {resp.content[-100:]!r}"
    content = orjson.loads(resp.content)["choices"][0]["message"]["content"]
    return None if content in MODELS else f"unknown model {content!r}"


async def drive(base: str, seconds: float, stats: Counter[str], problems: list[str]) -> None:
    bodies = [(orjson.dumps(p), bool(p.get("stream"))) for p in payloads()]
    cycle = itertools.cycle(range(len(bodies)))
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                raw, stream = bodies[next(cycle)]
                resp = await client.post(CHAT, content=raw, headers=headers)
                stats[str(resp.status_code)] += 1
                found = problem(resp, stream)
                if found is not None and len(problems) < 20:
                    problems.append(found)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


@pytest.mark.slow
def test_bounded_load_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    env = {"ROUTER_STRATEGY": FAKE, "ROUTER_LOG_LEVEL": "warning"}
    stats: Counter[str] = Counter()
    problems: list[str] = []
    with running_server(env, timeout=60, output=tmp_path / "server.log") as (base, proc):
        asyncio.run(drive(base, WARMUP_S, Counter(), problems))
        before = rss_mb(proc.pid)
        began = time.monotonic()
        asyncio.run(drive(base, DURATION_S, stats, problems))
        elapsed = time.monotonic() - began
        after = rss_mb(proc.pid)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
    total = sum(stats.values())
    growth = after - before
    print(
        f"\nload: {total} requests in {elapsed:.1f} s at c={CONCURRENCY} "
        f"({total / elapsed:.0f} req/s), statuses {dict(stats)}; "
        f"RSS {before:.1f} -> {after:.1f} MB (growth {growth:+.1f} MB)"
    )
    assert problems == []
    assert set(stats) == {"200"}
    assert total >= 100  # the load really ran
    assert growth < RSS_GROWTH_LIMIT_MB
