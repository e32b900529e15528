"""OpenAI chat-completions request model and the recommend-mode response shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag

from strategies.base import RouteOptions, RoutingDecision

ROUTING_ALIASES = frozenset({"", "router", "auto", "intent", "llm-router"})
#: a session id (``router.session_id`` or the ``x-session-id`` header): printable ASCII
SESSION_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str = Field(min_length=1)
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(BaseModel):
    """Any other content part (``refusal``, ``input_audio``, ``file``, future types): not
    analysed, forwarded verbatim in proxy mode (the original JSON is what goes upstream)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)
    refusal: str | None = None  # an assistant refusal's text counts as conversation text


def _part_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None  # not a part: pydantic reports the missing/invalid ``type``
    return kind if kind in ("text", "image_url") else "other"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image_url")]
    | Annotated[OtherPart, Tag("other")],
    Discriminator(
        _part_kind,
        custom_error_type="invalid_content_part",
        custom_error_message="a content part needs a string 'type'",
    ),
]
# every role OpenAI accepts; ``function`` is the legacy form of ``tool``
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None


class RouterOptionsIn(BaseModel):
    """The request's ``router`` extension field: per-request routing overrides."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    costs: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    cost_weight: float | None = Field(None, ge=0.0)
    exclude_models: list[str] = Field(default_factory=list)
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN,
        description="Names the conversation for session stickiness (ROUTER_SESSIONS__POLICY): "
        "1-128 printable ASCII characters, no spaces; wins over the x-session-id header.",
    )

    def to_options(self) -> RouteOptions:
        return RouteOptions(
            thresholds=dict(self.thresholds),
            costs=dict(self.costs),
            cost_weight=self.cost_weight,
            exclude_models=frozenset(self.exclude_models),
        )


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat-completions request; unknown fields are kept (proxy passes them on)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: StrictBool = False  # OpenAI rejects "yes" / 1; so do we
    router: RouterOptionsIn | None = None

    def wants_routing(self) -> bool:
        return self.model is None or self.model.strip().lower() in ROUTING_ALIASES


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace ``{"$ref": "#/$defs/X"}`` by X's schema (the request model is not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        # a discriminator mapping points into $defs; the oneOf of const-typed parts says the same
        return {
            k: _inline_refs(v, defs)
            for k, v in node.items()
            if not (k == "discriminator" and isinstance(v, dict) and "mapping" in v)
        }
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def chat_request_openapi() -> dict[str, Any]:
    """The chat endpoint's OpenAPI ``requestBody``: its handler reads the raw request (proxy
    mode forwards the body as sent), so FastAPI cannot infer the schema by itself."""
    schema = ChatCompletionRequest.model_json_schema()
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_refs(schema, defs)}},
        }
    }


def _decision_object(decision: RoutingDecision, latency_s: float) -> dict[str, Any]:
    return {
        "strategy": decision.strategy,
        "model": decision.model,
        "intent": decision.intent,
        "reason": decision.reason,
        "scores": {k: round(v, 6) for k, v in decision.scores.items()},
        "ranking": decision.ranking,
        "latency_ms": round(latency_s * 1000.0, 3),
        "needs_vision": decision.needs_vision,
        "strip_images": decision.strip_images,
        "detail": decision.detail,
    }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def recommendation(decision: RoutingDecision, latency_s: float) -> bytes:
    """A ``chat.completion`` whose message content is the chosen model's name."""
    return orjson.dumps(
        {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": decision.strategy,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": decision.model},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "router": _decision_object(decision, latency_s),
        }
    )


async def recommendation_stream(
    decision: RoutingDecision, latency_s: float
) -> AsyncIterator[bytes]:
    """The same decision as SSE ``chat.completion.chunk`` events ending in ``[DONE]``.

    Async: Starlette iterates a sync generator in a thread pool, one hop per chunk."""
    base = {
        "id": completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": decision.strategy,
    }
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": decision.model}, None),
        ({}, "stop"),
    ]
    for i, (delta, finish) in enumerate(deltas):
        chunk: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if i == len(deltas) - 1:
            chunk["router"] = _decision_object(decision, latency_s)
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


def models_list(names: list[str], created: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": created, "owned_by": "llm-router"}
                for n in names
            ],
        }
    )
