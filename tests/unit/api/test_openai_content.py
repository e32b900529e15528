"""Every valid OpenAI message shape is accepted: the router analyses text and images and
forwards every other part, role and field verbatim (proxy), or just routes (recommend)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.api.intake import normalise
from app.api.schemas import ChatCompletionRequest
from tests.helpers import app_client, make_settings
from tests.unit.proxy.proxy_support import completion, proxy

CHAT = "/v1/chat/completions"
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}}
FILE = {
    "type": "file",
    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
}
FUTURE = {"type": "input_hologram", "input_hologram": {"id": "h1"}, "detail": "high"}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
MESSAGES: list[dict[str, Any]] = [
    {"role": "developer", "content": "be brief"},
    {"role": "system", "content": [{"type": "text", "text": "you are helpful"}]},
    {"role": "user", "content": [{"type": "text", "text": "what is said here?"}, AUDIO, FILE]},
    {
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
        "refusal": "I can't help with that.",
    },
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL], "audio": {"id": "a1"}},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]},
    {"role": "function", "name": "f", "content": "42"},
    {"role": "user", "content": [FUTURE, {"type": "text", "text": "and this?"}], "name": "ann"},
]
REQUEST = {
    "model": "router",
    "messages": MESSAGES,
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
}
AUDIO_ONLY = {"messages": [{"role": "user", "content": [AUDIO]}]}


@pytest.mark.parametrize("request_body", [REQUEST, AUDIO_ONLY], ids=["mixed", "audio-only"])
async def test_proxy_forwards_every_part_and_role_verbatim(
    monkeypatch: pytest.MonkeyPatch, request_body: dict[str, Any]
) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(json=completion())
        resp = await client.post(CHAT, json=request_body)
    assert resp.status_code == 200, resp.text
    forwarded = orjson.loads(mock.routes["alpha"].calls[0].request.content)
    assert forwarded == {**request_body, "model": "alpha-upstream"}


@pytest.mark.parametrize("request_body", [REQUEST, AUDIO_ONLY], ids=["mixed", "audio-only"])
async def test_recommend_accepts_every_part_and_role(request_body: dict[str, Any]) -> None:
    async with app_client(make_settings()) as client:
        resp = await client.post(CHAT, json=request_body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["router"]["model"]


async def test_strategy_sees_text_markers_and_tool_roles() -> None:
    request = ChatCompletionRequest.model_validate(REQUEST)
    turns = (await normalise(request, make_settings())).turns
    assert turns[2].text == "what is said here? [input_audio] [file]"
    assert turns[3].text == "I can't help with that."
    assert [t.role for t in turns[5:7]] == ["tool", "tool"]
    assert turns[7].text == "[input_hologram] and this?"
