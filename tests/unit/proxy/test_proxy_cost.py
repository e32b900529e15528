"""Proxy mode: tokens and dollars per answer (headers, metrics, access log), the usage chunk
added and removed for streams, missing usage, the baseline, and fallbacks named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
import yaml
from asgi_lifespan import LifespanManager

from app.server.factory import create_app
from models.core.errors import ConfigError
from models.core.routing_config import RoutingConfig
from tests.helpers import app_client, make_settings, user, wait_ready
from tests.unit.proxy.proxy_support import completion, proxy, sse

CHAT = "/v1/chat/completions"
HI = {"messages": [user("hi")]}
PRICED = RoutingConfig.model_validate(
    {
        "models": [
            {
                "name": "small",
                "input_price_per_1m": 0.04,
                "output_price_per_1m": 0.16,
                "base_url": "http://small.test/v1",
            },
            {
                "name": "big",
                "input_price_per_1m": 1.25,
                "output_price_per_1m": 10.0,
                "cached_input_price_per_1m": 0.125,
                "base_url": "http://big.test/v1",
            },
            {"name": "free", "base_url": "http://free.test/v1"},  # self-hosted: no prices
        ]
    }
)


def answer(prompt: int, completion_tokens: int, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion_tokens}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {**completion("hi"), "usage": usage}


def sample(metrics_text: str, name: str, labels: str = "") -> float | None:
    """The value of ``name{labels}`` in the exposition text; None when absent."""
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    return None


def access_events(err: str) -> list[dict[str, Any]]:
    return [
        e
        for line in err.splitlines()
        if line.startswith("{") and (e := json.loads(line)).get("event") == "request_completed"
    ]


async def test_plain_answer_cost_headers_and_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].respond(json=answer(1000, 250))
        resp = await client.post(CHAT, json=HI)
        text = (await client.get("/metrics")).text
    assert resp.status_code == 200 and resp.headers["x-router-model"] == "small"
    # 1000 x 0.04/1M + 250 x 0.16/1M; the baseline (big, the dearest text model) 1.25 and 10
    assert resp.headers["x-router-cost-usd"] == "0.00008"
    assert resp.headers["x-router-tokens"] == "prompt=1000,completion=250,cached=0"
    assert "x-router-fallback-from" not in resp.headers
    assert sample(text, "llm_router_tokens_total", '{model="small",type="prompt"}') == 1000
    assert sample(text, "llm_router_tokens_total", '{model="small",type="completion"}') == 250
    assert '{model="small",type="cached"}' not in text  # none reported
    assert sample(text, "llm_router_cost_usd_total", '{model="small"}') == pytest.approx(
        8e-5, abs=1e-12
    )
    assert sample(text, "llm_router_baseline_cost_usd_total") == pytest.approx(0.00375, abs=1e-12)
    assert sample(text, "llm_router_request_cost_usd_count", '{model="small"}') == 1
    assert sample(text, "llm_router_usage_missing_total", '{model="small"}') == 0


async def test_cached_tokens_at_the_cached_price(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["big"].respond(json=answer(1000, 100, cached=800))
        resp = await client.post(CHAT, json={**HI, "model": "big"})
        text = (await client.get("/metrics")).text
    # 200 fresh x 1.25 + 800 cached x 0.125 + 100 x 10, per million
    assert resp.headers["x-router-cost-usd"] == "0.00135"
    assert resp.headers["x-router-tokens"] == "prompt=1000,completion=100,cached=800"
    assert sample(text, "llm_router_tokens_total", '{model="big",type="cached"}') == 800
    assert sample(text, "llm_router_tokens_total", '{model="big",type="prompt"}') == 1000
    # served by the baseline itself: baseline cost = cost, savings 0
    assert sample(text, "llm_router_baseline_cost_usd_total") == pytest.approx(0.00135)


async def test_model_without_prices_counts_tokens_only(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["free"].respond(json=answer(40, 2))
        resp = await client.post(CHAT, json={**HI, "model": "free"})
        text = (await client.get("/metrics")).text
    assert resp.headers["x-router-tokens"] == "prompt=40,completion=2,cached=0"
    assert "x-router-cost-usd" not in resp.headers
    assert sample(text, "llm_router_tokens_total", '{model="free",type="prompt"}') == 40
    assert sample(text, "llm_router_cost_usd_total", '{model="free"}') is None
    assert sample(text, "llm_router_baseline_cost_usd_total") == 0  # like with like only


@pytest.mark.parametrize(
    "upstream",
    [
        completion("hi") | {"usage": None},
        {k: v for k, v in completion("hi").items() if k != "usage"},
        completion("hi") | {"usage": {"prompt_tokens": "lots"}},
    ],
    ids=["null", "absent", "malformed"],
)
async def test_missing_usage_is_counted_never_an_error(
    monkeypatch: pytest.MonkeyPatch, upstream: dict[str, Any]
) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].respond(json=upstream)
        resp = await client.post(CHAT, json=HI)
        mock.routes["big"].respond(400, json={"error": {"message": "bad"}})
        refused = await client.post(CHAT, json={**HI, "model": "big"})
        text = (await client.get("/metrics")).text
    assert resp.status_code == 200 and resp.json() == upstream
    assert "x-router-cost-usd" not in resp.headers and "x-router-tokens" not in resp.headers
    assert sample(text, "llm_router_usage_missing_total", '{model="small"}') == 1
    assert refused.status_code == 400  # an error answer has no usage to miss
    assert sample(text, "llm_router_usage_missing_total", '{model="big"}') == 0
    assert sample(text, "llm_router_tokens_total", '{model="small",type="prompt"}') == 0


def chunk(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


CONTENT = [chunk({"choices": [{"delta": {"content": w}}], "usage": None}) for w in ("a", " b")]
USAGE_CHUNK = chunk({"choices": [], "usage": {"prompt_tokens": 500, "completion_tokens": 50}})
DONE = b"data: [DONE]\n\n"


@pytest.mark.parametrize("cut", [0, 7, len(USAGE_CHUNK) // 2, len(USAGE_CHUNK) - 1])
async def test_stream_usage_asked_for_and_removed_for_a_client_that_did_not(
    monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    """The usage event arrives cut in two network chunks at ``cut``."""
    pieces = [*CONTENT, USAGE_CHUNK[:cut], USAGE_CHUNK[cut:], DONE]
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].mock(return_value=sse([p for p in pieces if p]))
        resp = await client.post(CHAT, json={**HI, "stream": True})
        text = (await client.get("/metrics")).text
    assert resp.status_code == 200
    assert resp.content == b"".join([*CONTENT, DONE])  # no usage chunk for this client
    sent = orjson.loads(mock.routes["small"].calls[0].request.content)
    assert sent["stream_options"] == {"include_usage": True}
    assert mock.routes["small"].calls[0].request.headers["accept-encoding"] == "identity"
    assert sample(text, "llm_router_tokens_total", '{model="small",type="prompt"}') == 500
    assert sample(text, "llm_router_tokens_total", '{model="small",type="completion"}') == 50
    assert sample(text, "llm_router_cost_usd_total", '{model="small"}') == pytest.approx(2.8e-5)
    assert "x-router-cost-usd" not in resp.headers  # headers left before the cost was known


async def test_stream_unchanged_for_a_client_that_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join([*CONTENT, USAGE_CHUNK, DONE])
    ask = {**HI, "stream": True, "stream_options": {"include_usage": True}}
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].mock(return_value=sse([body[:30], body[30:]]))
        resp = await client.post(CHAT, json=ask)
        text = (await client.get("/metrics")).text
    assert resp.content == body
    assert sample(text, "llm_router_tokens_total", '{model="small",type="prompt"}') == 500


async def test_stream_without_usage_or_cut_short_counts_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].mock(return_value=sse([*CONTENT, DONE]))
        resp = await client.post(CHAT, json={**HI, "stream": True})
        assert resp.content == b"".join([*CONTENT, DONE])
        mock.routes["small"].mock(return_value=sse(CONTENT, fail=httpx.ReadError("reset")))
        with pytest.raises(AssertionError):  # the in-process transport's "incomplete"
            await client.post(CHAT, json={**HI, "stream": True})
        text = (await client.get("/metrics")).text
    assert sample(text, "llm_router_usage_missing_total", '{model="small"}') == 2


async def test_fallback_named_in_headers_and_access_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].respond(503)
        mock.routes["big"].respond(json=answer(10, 20))
        capsys.readouterr()
        resp = await client.post(CHAT, json=HI, headers={"x-request-id": "rid-fb"})
    assert resp.status_code == 200
    assert resp.headers["x-router-model"] == "big"
    assert resp.headers["x-router-fallback-from"] == "small"
    assert resp.headers["x-router-cost-usd"] == "0.0002125"  # 10 x 1.25 + 20 x 10, per 1M
    [event] = [e for e in access_events(capsys.readouterr().err) if e["request_id"] == "rid-fb"]
    assert event["model"] == "big" and event["fallback_from"] == "small"
    assert (event["prompt_tokens"], event["completion_tokens"]) == (10, 20)
    assert event["cost_usd"] == pytest.approx(0.0002125, abs=1e-12)
    assert event["status"] == 200 and event["endpoint"] == CHAT


async def test_one_access_event_per_request_streams_when_they_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with proxy(monkeypatch, config=PRICED) as (client, mock):
        mock.routes["small"].mock(return_value=sse([*CONTENT, USAGE_CHUNK, DONE]))
        capsys.readouterr()
        await client.post(CHAT, json={**HI, "stream": True}, headers={"x-request-id": "s-1"})
        await client.get("/metrics")  # not logged, like it is not counted
        await client.get("/v1/models", headers={"x-request-id": "m-1"})
    events = access_events(capsys.readouterr().err)
    assert [e["request_id"] for e in events] == ["s-1", "m-1"]
    stream = events[0]
    assert stream["stream_result"] == "complete" and "fallback_from" not in stream
    assert (stream["prompt_tokens"], stream["completion_tokens"]) == (500, 50)
    assert stream["cost_usd"] == pytest.approx(2.8e-5, abs=1e-12)
    assert events[1]["status"] == 200 and "cost_usd" not in events[1]


async def test_recommend_mode_charges_nothing() -> None:
    async with app_client(make_settings(mode="recommend")) as client:
        resp = await client.post(CHAT, json=HI)
        text = (await client.get("/metrics")).text
    assert resp.status_code == 200
    assert not any(h.startswith("x-router-cost") for h in resp.headers)
    assert "llm_router_baseline_cost_usd_total 0.0" in text
    assert "llm_router_cost_usd_total{" not in text


async def test_configured_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """ROUTER_COST__BASELINE_MODEL=small: an answer from big costs more than the baseline."""
    overrides = {"cost": {"baseline_model": "small"}}
    async with proxy(monkeypatch, config=PRICED, settings_overrides=overrides) as (client, mock):
        mock.routes["big"].respond(json=answer(1000, 250))
        await client.post(CHAT, json={**HI, "model": "big"})
        text = (await client.get("/metrics")).text
    assert sample(text, "llm_router_cost_usd_total", '{model="big"}') == pytest.approx(0.00375)
    assert sample(text, "llm_router_baseline_cost_usd_total") == pytest.approx(0.00008)


@pytest.mark.parametrize(
    "mode,baseline,config,message",
    [
        ("recommend", "nope", PRICED, "unknown model 'nope'; configured models: ['small', "),
        ("proxy", "free", PRICED, "baseline model 'free' has no prices"),
    ],
)
def test_bad_baseline_is_a_startup_error(
    mode: str, baseline: str, config: RoutingConfig, message: str
) -> None:
    settings = make_settings(mode=mode, cost={"baseline_model": baseline})
    with pytest.raises(ConfigError, match="ROUTER_COST__BASELINE_MODEL") as info:
        create_app(settings, config=config)
    assert message in str(info.value)


def test_no_baseline_needed_where_nothing_is_charged() -> None:
    unpriced = RoutingConfig.model_validate({"models": [{"name": "a"}, {"name": "b"}]})
    create_app(make_settings(mode="proxy", cost={"baseline_model": "b"}), config=unpriced)
    create_app(make_settings(mode="recommend", cost={"baseline_model": "free"}), config=PRICED)


def test_default_baseline_without_prices_says_how_to_choose() -> None:
    eyes = {"name": "eyes", "vision": True, "input_price_per_1m": 0.2, "output_price_per_1m": 1}
    config = RoutingConfig.model_validate({"models": [{"name": "free"}, eyes]})
    with pytest.raises(ConfigError, match=r"'free' \(the default: set ROUTER_COST__BASELINE_"):
        create_app(make_settings(mode="proxy"), config=config)


def priced_yaml(path: Path, small_prices: tuple[float, float], with_big: bool = True) -> Path:
    models = [
        {
            "name": "small",
            "input_price_per_1m": small_prices[0],
            "output_price_per_1m": small_prices[1],
            "base_url": "http://small.test/v1",
        }
    ]
    if with_big:
        models.append(PRICED.models[1].model_dump(exclude_none=True))
    path.write_text(yaml.safe_dump({"models": models}))
    return path


async def test_a_reload_counts_at_the_new_prices_and_refuses_a_lost_baseline(
    tmp_path: Path,
) -> None:
    """SIGHUP reload: answers after it are priced from the new config; a config without
    the configured baseline model is refused and the old prices keep counting."""
    config = priced_yaml(tmp_path / "routing.yaml", (0.04, 0.16))
    settings = make_settings(mode="proxy", config=str(config), cost={"baseline_model": "big"})
    app = create_app(settings)
    with respx.mock(assert_all_called=False) as mock:
        mock.post("http://small.test/v1/chat/completions").respond(json=answer(1000, 250))
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await wait_ready(client)
                first = await client.post(CHAT, json=HI)
                priced_yaml(config, (0.08, 0.32))
                assert await app.state.reloader.reload() is True
                second = await client.post(CHAT, json=HI)
                priced_yaml(config, (1.0, 1.0), with_big=False)
                assert await app.state.reloader.reload() is False
                third = await client.post(CHAT, json=HI)
                text = (await client.get("/metrics")).text
    assert first.headers["x-router-cost-usd"] == "0.00008"
    assert second.headers["x-router-cost-usd"] == third.headers["x-router-cost-usd"] == "0.00016"
    assert sample(text, "llm_router_cost_usd_total", '{model="small"}') == pytest.approx(0.0004)
    assert sample(text, "llm_router_baseline_cost_usd_total") == pytest.approx(3 * 0.00375)
    assert sample(text, "llm_router_config_reloads_total", '{result="error"}') == 1
