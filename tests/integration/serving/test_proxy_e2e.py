"""Proxy mode end to end: the official ``openai`` client -> a real router process -> real
local OpenAI-compatible upstreams (tests/upstream_server.py) on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.helpers import data_url, image_message, png_bytes, server_process, user
from tests.upstream_server import UpstreamServer

KEY = "sk-integration-secret"
READ_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def primary() -> Iterator[UpstreamServer]:
    with UpstreamServer("primary") as server:
        yield server


@pytest.fixture(scope="module")
def secondary() -> Iterator[UpstreamServer]:
    with UpstreamServer("secondary") as server:
        yield server


@pytest.fixture(scope="module")
def router_url(
    primary: UpstreamServer, secondary: UpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = {
        "models": [
            {
                "name": "primary",
                "base_url": primary.base_url,
                "api_key_env": "TEST_UPSTREAM_KEY",
                "upstream_model": "primary-model",
            },
            {
                "name": "secondary",
                "base_url": secondary.base_url,
                "upstream_model": "secondary-model",
            },
            {
                "name": "eyes",
                "vision": True,
                "base_url": secondary.base_url,
                "upstream_model": "eyes-model",
            },
        ]
    }
    path = Path(tmp_path_factory.mktemp("proxy")) / "routing.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        "ROUTER_MODE": "proxy",
        "ROUTER_STRATEGY": "tests.fakes:FakeStrategy",
        "ROUTER_CONFIG": str(path),
        "ROUTER_LOG_LEVEL": "warning",
        "ROUTER_PROXY__TIMEOUT_S": str(READ_TIMEOUT_S),
        "TEST_UPSTREAM_KEY": KEY,
    }
    with server_process(env, timeout=60) as url:
        yield url


@pytest.fixture(autouse=True)
def _clean(primary: UpstreamServer, secondary: UpstreamServer) -> None:
    primary.state.reset()
    secondary.state.reset()


@pytest.fixture
def client(router_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{router_url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait until ``check()``; return how long it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - start


def test_non_streaming_answer_comes_from_upstream(
    client: openai.OpenAI, primary: UpstreamServer
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="router", messages=[user("hello there")], temperature=0.1
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "primary says: hello there"
    assert raw.headers["x-router-model"] == "primary"
    assert raw.headers["x-router-strategy"] == "fake"
    seen = primary.state.requests[0]
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"
    assert seen["body"]["model"] == "primary-model" and seen["body"]["temperature"] == 0.1


def test_streaming_arrives_chunk_by_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="router",
        messages=[user("one two three four")],
        stream=True,
        extra_body={"mock": {"delay_s": 0.15}},
    )
    words, arrivals = [], []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
            arrivals.append(time.monotonic())
    assert "".join(words) == "primary says: one two three four"
    # six words, 0.15 s apart upstream: relayed as they come, not buffered to the end
    assert arrivals[-1] - arrivals[0] > 0.5


def test_vision_request_goes_to_vision_model(
    client: openai.OpenAI, secondary: UpstreamServer
) -> None:
    message = image_message("what is this?", data_url(png_bytes()))
    answer = client.chat.completions.create(model="router", messages=[message])  # type: ignore[list-item]
    assert answer.choices[0].message.content == "secondary says: what is this?"
    assert secondary.state.requests[0]["body"]["messages"] == [message]
    assert secondary.state.requests[0]["body"]["model"] == "eyes-model"


@pytest.mark.parametrize("mode", ["error:500", "error:429", "error:503"])
def test_failing_primary_falls_back(
    client: openai.OpenAI, primary: UpstreamServer, mode: str
) -> None:
    primary.state.modes["primary-model"] = mode
    raw = client.chat.completions.with_raw_response.create(model="router", messages=[user("hi")])
    assert raw.parse().choices[0].message.content == "secondary says: hi"
    assert raw.headers["x-router-model"] == "secondary"
    assert len(primary.state.requests) == 1


def test_read_timeout_is_504_not_resent(
    client: openai.OpenAI, primary: UpstreamServer, secondary: UpstreamServer
) -> None:
    """The primary may still finish (and bill) the answer: no second model without
    retry_on_timeout."""
    primary.state.modes["primary-model"] = "stall"
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="router", messages=[user("hi")])
    assert info.value.status_code == 504
    assert info.value.response.headers["x-router-model"] == "primary"
    assert len(primary.state.requests) == 1 and secondary.state.requests == []


def test_killed_primary_falls_back(client: openai.OpenAI, primary: UpstreamServer) -> None:
    primary.stop()
    try:
        for stream in (False, True):
            answer = client.chat.completions.create(
                model="router", messages=[user("anyone?")], stream=stream
            )
            if stream:
                text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)  # type: ignore[union-attr]
            else:
                text = answer.choices[0].message.content  # type: ignore[union-attr]
            assert text == "secondary says: anyone?"
    finally:
        primary.start()


def test_all_upstreams_failing_is_502(
    client: openai.OpenAI, primary: UpstreamServer, secondary: UpstreamServer
) -> None:
    primary.state.modes["primary-model"] = "error:503"
    secondary.state.modes["secondary-model"] = "error:500"
    secondary.state.modes["eyes-model"] = "error:502"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="router", messages=[user("hi")])
    assert info.value.status_code == 502
    message = str(info.value)
    assert "primary: HTTP 503" in message and "secondary: HTTP 500" in message
    assert "eyes: HTTP 502" in message
    assert KEY not in message


def test_client_error_passes_through(client: openai.OpenAI, primary: UpstreamServer) -> None:
    primary.state.modes["primary-model"] = "error:400"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="router", messages=[user("hi")])
    assert "primary failed on purpose" in str(info.value)


def test_no_retry_once_streaming_began(
    client: openai.OpenAI, primary: UpstreamServer, secondary: UpstreamServer
) -> None:
    primary.state.modes["primary-model"] = "die_stream"
    stream = client.chat.completions.create(model="router", messages=[user("hi")], stream=True)
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for _ in stream:
            pass
    assert len(primary.state.requests) == 1
    assert secondary.state.requests == []


def test_client_disconnect_mid_stream_cancels_upstream(
    client: openai.OpenAI, primary: UpstreamServer
) -> None:
    stream = client.chat.completions.create(
        model="router",
        messages=[user("a long answer")],
        stream=True,
        extra_body={"mock": {"delay_s": 0.1, "repeat": 50}},  # ~25 s if not cancelled
    )
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    stream.close()
    waited = eventually(lambda: primary.state.cancelled == ["primary-model"], timeout=5)
    assert waited < 2.0


def test_client_giving_up_cancels_pending_upstream(
    router_url: str, primary: UpstreamServer
) -> None:
    primary.state.modes["primary-model"] = "stall"
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{router_url}/v1/chat/completions", json={"messages": [user("hi")]}, timeout=0.5
        )
    eventually(lambda: primary.state.cancelled == ["primary-model"], timeout=5)
    assert time.monotonic() - start < READ_TIMEOUT_S  # not the router's own timeout
