"""The official openai client against a live `llm-router serve` process on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import data_url, png_bytes, server_process

pytestmark = pytest.mark.embedding

CONFIGURED = set(load_routing_config(DEFAULT_CONFIG).model_names)
VL = "nvidia/nemotron-nano-12b-v2-vl"


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    env = {"ROUTER_STRATEGY": "intent", "ROUTER_API_KEYS": "sk-test"}
    with (
        server_process(env) as base,
        openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0) as c,
    ):
        yield c


def test_text_request(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="router", messages=[{"role": "user", "content": "hey, how's it going?"}]
    )
    assert completion.choices[0].message.content in CONFIGURED
    assert completion.model == "intent"


def test_image_request_with_a_data_url(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="router",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this image?"},
                    {"type": "image_url", "image_url": {"url": data_url(png_bytes(32, 32))}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == VL


def test_streaming_request(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="router",
        messages=[{"role": "user", "content": "tell me a joke"}],
        stream=True,
    )
    content = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert content in CONFIGURED


def test_models_list(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == CONFIGURED


def test_manual_model_and_errors_map_to_openai_exceptions(client: openai.OpenAI) -> None:
    manual = client.chat.completions.create(
        model="gpt-5-chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert manual.choices[0].message.content == "gpt-5-chat"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="router", messages=[])


def test_wrong_key_is_an_authentication_error(client: openai.OpenAI) -> None:
    bad = client.with_options(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="router", messages=[{"role": "user", "content": "hi"}])
