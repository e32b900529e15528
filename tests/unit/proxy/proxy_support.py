"""Shared setup for the proxy unit tests: a routing config with mocked upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import respx

from models.core.routing_config import RoutingConfig
from tests.helpers import app_client, make_settings

ALPHA_KEY = "sk-alpha-secret-123"
CONFIG = RoutingConfig.model_validate(
    {
        "models": [
            {
                "name": "alpha",
                "cost": 1.0,
                "base_url": "http://alpha.test/v1/",
                "api_key_env": "ALPHA_KEY",
                "upstream_model": "alpha-upstream",
                "headers": {"x-tenant": "t1"},
            },
            {"name": "beta", "cost": 0.3, "base_url": "http://beta.test/v1"},
            {"name": "seer", "cost": 0.5, "vision": True, "base_url": "http://seer.test/v1"},
            {"name": "seer2", "cost": 0.6, "vision": True, "base_url": "http://seer2.test/v1"},
        ]
    }
)


def opted_in(*names: str) -> RoutingConfig:
    """CONFIG with ``retry_on_timeout: true`` on the named models."""
    models = [m.model_dump() | {"retry_on_timeout": m.name in names} for m in CONFIG.models]
    return RoutingConfig.model_validate({"models": models})


def completion(content: str = "hello", model: str = "x") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


SSE = [
    b'data: {"choices":[{"delta":{"content":"he"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"llo"}}]}\n\n',
    b"data: [DONE]\n\n",
]


class Chunks(httpx.AsyncByteStream):
    """An upstream body that yields ``chunks`` and then, optionally, fails."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks, self.fail = chunks, fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.fail is not None:
            raise self.fail


def sse(chunks: list[bytes] = SSE, fail: Exception | None = None) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Chunks(chunks, fail)
    )


@asynccontextmanager
async def proxy(
    monkeypatch: Any,
    config: RoutingConfig = CONFIG,
    key: str | None = ALPHA_KEY,
    settings_overrides: dict[str, Any] | None = None,
    **proxy_settings: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, respx.MockRouter]]:
    """The app in proxy mode (FakeStrategy) with every upstream of ``config`` mocked by
    respx (routes named after the models); ``key=None`` leaves alpha's API key env var
    unset."""
    if key is None:
        monkeypatch.delenv("ALPHA_KEY", raising=False)
    else:
        monkeypatch.setenv("ALPHA_KEY", key)
    settings = make_settings(mode="proxy", proxy=proxy_settings, **(settings_overrides or {}))
    mock = respx.mock(assert_all_called=False)
    for m in config.models:  # each model's upstream, as a route named after the model
        if m.base_url:
            mock.post(f"{m.base_url.rstrip('/')}/chat/completions", name=m.name)
    mock.start()
    try:
        async with app_client(settings, config=config) as client:
            yield client, mock
    finally:
        mock.stop(clear=False, reset=False)  # keep the calls for assertions afterwards
