"""Cost accounting end to end: a real router process (one worker, and two sharing a port)
in proxy mode -> real loopback upstreams that report usage (tests/upstream_server.py).

40 plain + 20 streamed requests: the router's token counts equal the upstreams' own, cost
and baseline cost are exact to 1e-9 USD, every plain answer says its cost, stream clients
that did not ask for usage never see it, and each request has one access log event."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.helpers import FAKE, running_server, user
from tests.upstream_server import UpstreamServer

PRICES = {  # USD per 1M tokens: input, output, cached input
    "nano": (Decimal("0.04"), Decimal("0.16"), Decimal("0.04")),
    "frontier": (Decimal("1.25"), Decimal("10"), Decimal("0.125")),
}
BASELINE = "frontier"  # the default: the most expensive text model


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, UpstreamServer]]:
    with UpstreamServer("nano") as nano, UpstreamServer("frontier") as frontier:
        yield {"nano": nano, "frontier": frontier}


def routing_config(upstreams: dict[str, UpstreamServer], path: Path) -> Path:
    models = []
    for name, (inp, out, cached) in PRICES.items():
        model = {
            "name": name,
            "base_url": upstreams[name].base_url,
            "input_price_per_1m": float(inp),
            "output_price_per_1m": float(out),
        }
        if cached != inp:
            model["cached_input_price_per_1m"] = float(cached)
        models.append(model)
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def cost(model: str, usage: dict[str, Any]) -> Decimal:
    """Exact USD of one upstream usage report at ``model``'s prices."""
    inp, out, cached_price = PRICES[model]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    fresh = usage["prompt_tokens"] - cached
    total = fresh * inp + cached * cached_price + usage["completion_tokens"] * out
    return total / Decimal(10**6)


def workload() -> list[dict[str, Any]]:
    """40 plain (30 routed to nano, 10 to frontier with cached prompt tokens) and 20
    streamed (10 asking for usage, 10 not, half of each with events split in two writes)."""
    bodies: list[dict[str, Any]] = []
    for i in range(40):
        body: dict[str, Any] = {
            "messages": [user(" ".join(["word"] * (3 + i)))],
            "mock": {"repeat": 1 + i % 4},
        }
        if i % 4 == 3:
            body |= {"model": "frontier"}
            body["mock"]["cached_tokens"] = 2 + i // 4
        bodies.append(body)
    for i in range(20):
        body = {
            "messages": [user(f"stream number {i} " + "x " * i)],
            "stream": True,
            "mock": {"repeat": 1 + i % 3, "split": i % 2 == 0},
        }
        if i % 2:
            body["stream_options"] = {"include_usage": True}
        if i % 5 == 4:
            body["model"] = "frontier"
        bodies.append(body)
    return bodies


async def send_all(base: str, bodies: list[dict[str, Any]]) -> list[tuple[dict, httpx.Response]]:
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one(body: dict[str, Any]) -> tuple[dict, httpx.Response]:
            async with limit:
                resp = await client.post("/v1/chat/completions", json=body)
                assert resp.status_code == 200, resp.text
                return body, resp

        return await asyncio.gather(*(one(b) for b in bodies))


def families(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every llm_router_ sample."""
    out = {}
    for m in re.finditer(r"^(llm_router_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def sse_events(raw: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_workload_tokens_and_dollars_match_the_upstreams(
    upstreams: dict[str, UpstreamServer], tmp_path: Path, workers: int
) -> None:
    for server in upstreams.values():
        server.state.reset()
    env = {
        "ROUTER_MODE": "proxy",
        "ROUTER_STRATEGY": FAKE,
        "ROUTER_CONFIG": str(routing_config(upstreams, tmp_path / "routing.yaml")),
        "ROUTER_WORKERS": str(workers),
        "ROUTER_TORCH_THREADS": "1",
        "ROUTER_LOG_LEVEL": "info",
    }
    log = tmp_path / "router.log"
    with running_server(env, timeout=120, output=log) as (base, _proc):
        answered = asyncio.run(send_all(base, workload()))
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(4)]

    # the upstreams' own counts, and the exact dollars they make
    want_tokens: dict[tuple[str, str], int] = {}
    want_cost = {name: Decimal(0) for name in PRICES}
    want_baseline = Decimal(0)
    sent_to = [body.get("model", "nano") for body, _ in answered]
    for name, server in upstreams.items():
        # every answer reported usage: the router asked for it on every stream
        assert len(server.state.usage) == sent_to.count(name) > 0
        for usage in server.state.usage:
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            for kind, n in (
                ("prompt", usage["prompt_tokens"]),
                ("completion", usage["completion_tokens"]),
                ("cached", cached),
            ):
                want_tokens[name, kind] = want_tokens.get((name, kind), 0) + n
            want_cost[name] += cost(name, usage)
            want_baseline += cost(BASELINE, usage)
    assert want_tokens["frontier", "cached"] > 0

    for text in scrapes:  # with two workers, each scrape may land on either: all agree
        got = families(text)
        for (name, kind), n in want_tokens.items():
            assert got.get(f'llm_router_tokens_total{{model="{name}",type="{kind}"}}', 0) == n
        for name, usd in want_cost.items():
            assert got[f'llm_router_cost_usd_total{{model="{name}"}}'] == pytest.approx(
                float(usd), abs=1e-9
            )
        assert got["llm_router_baseline_cost_usd_total"] == pytest.approx(
            float(want_baseline), abs=1e-9
        )
        assert sum(v for k, v in got.items() if k.startswith("llm_router_usage_missing_total")) == 0
    assert want_baseline > sum(want_cost.values())  # routing saved something

    for body, resp in answered:
        model = resp.headers["x-router-model"]
        if not body.get("stream"):
            usage = resp.json()["usage"]
            tokens = resp.headers["x-router-tokens"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            assert tokens == (
                f"prompt={usage['prompt_tokens']},completion={usage['completion_tokens']},"
                f"cached={cached}"
            )
            assert Decimal(resp.headers["x-router-cost-usd"]) == cost(model, usage)
            continue
        events = sse_events(resp.content)
        reported = [e for e in events if e.get("usage")]
        if body.get("stream_options"):
            assert len(reported) == 1 and reported[0]["choices"] == []
        else:
            assert reported == [] and all(e["choices"] for e in events)
        assert "".join(
            c["delta"].get("content", "") for e in events for c in e["choices"]
        ).startswith(f"{model} says: stream number")

    completed = [
        e
        for line in log.read_text().splitlines()
        if line.startswith("{")
        and (e := json.loads(line)).get("event") == "request_completed"
        and e["endpoint"] == "/v1/chat/completions"
    ]
    assert len(completed) == 60
    assert '"logger": "uvicorn.access"' not in log.read_text()  # one access event, not two
    assert all(e["stream_result"] == "complete" for e in completed if "stream_result" in e)
    assert sum(1 for e in completed if "stream_result" in e) == 20
    logged = sum(Decimal(str(e["cost_usd"])) for e in completed)
    assert abs(logged - sum(want_cost.values())) <= Decimal("1e-9")
