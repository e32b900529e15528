"""/metrics after traffic: request, decision, latency, in-flight and info metrics, with
the probes and /metrics itself left out of request metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app import __version__
from tests.helpers import app_client, user

CHAT = "/v1/chat/completions"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(found: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    rows = found.get(name, [])
    return sum(v for lab, v in rows if all(lab.get(k) == x for k, x in labels.items()))


async def scrape(client: httpx.AsyncClient) -> dict:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return samples(resp.text)


async def test_metrics_after_traffic() -> None:
    async with app_client() as client:  # app_client polls /ready before yielding
        for _ in range(3):
            assert (await client.post(CHAT, json={"messages": [user("hi")]})).status_code == 200
        assert (await client.post(CHAT, json={"messages": []})).status_code == 400
        manual = await client.post(
            "/sfc_router/chat/completions", json={"model": "gpt-5-chat", "messages": [user("x")]}
        )
        assert manual.status_code == 200
        assert (await client.get("/v1/models")).status_code == 200
        for probe in ("/health", "/ready", "/metrics", "/health"):
            assert (await client.get(probe)).status_code == 200
        found = await scrape(client)

    total = "llm_router_requests_total"
    assert value(found, total, endpoint=CHAT, method="POST", status="200") == 3
    assert value(found, total, endpoint=CHAT, method="POST", status="400") == 1
    assert value(found, total, endpoint="/sfc_router/chat/completions", status="200") == 1
    assert value(found, total, endpoint="/v1/models", method="GET", status="200") == 1
    assert value(found, total) == 6  # /health, /ready, /metrics are not counted
    endpoints = {lab["endpoint"] for lab, _ in found[total]}
    assert endpoints == {CHAT, "/sfc_router/chat/completions", "/v1/models"}

    duration = "llm_router_request_duration_seconds_count"
    assert value(found, duration, endpoint=CHAT) == 4
    assert value(found, duration) == 6

    decisions = "llm_router_decisions_total"
    assert (
        value(
            found,
            decisions,
            strategy="fake",
            model="gpt-5-chat",
            intent="fake_intent",
            reason="fake",
        )
        == 3
    )
    assert value(found, decisions, model="gpt-5-chat", reason="manual") == 1
    assert value(found, decisions) == 4  # the 400 made no decision

    assert value(found, "llm_router_decision_duration_seconds_count", strategy="fake") == 3
    assert value(found, "llm_router_decision_duration_seconds_sum", strategy="fake") > 0

    assert found["llm_router_requests_in_flight"] == [({}, 0.0)]
    info = found["llm_router_build_info"]
    assert len(info) == 1
    labels, one = info[0]
    assert one == 1.0
    assert labels["version"] == __version__
    assert labels["strategy"] == "tests.fakes:FakeStrategy"
    assert value(found, "llm_router_ready") == 1.0


async def test_probes_alone_leave_request_metrics_empty() -> None:
    async with app_client() as client:
        for probe in ("/health", "/ready", "/metrics"):
            await client.get(probe)
        found = await scrape(client)
    assert value(found, "llm_router_requests_total") == 0
    assert value(found, "llm_router_request_duration_seconds_count") == 0


async def test_labels_never_carry_client_strings() -> None:
    """An unknown path or model name must not become a label value (cardinality)."""
    async with app_client() as client:
        await client.get("/v1/secret-path-abc")
        await client.post(CHAT, json={"model": "client-made-up-model", "messages": [user("x")]})
        resp = await client.get("/metrics")
    assert "secret-path-abc" not in resp.text
    assert "client-made-up-model" not in resp.text
    found = samples(resp.text)
    assert value(found, "llm_router_requests_total", endpoint="other", status="404") == 1
    assert value(found, "llm_router_requests_total", endpoint=CHAT, status="404") == 1
