"""The ``remote`` intent backend against a scripted OpenAI-compatible server
(``httpx.MockTransport``: nothing leaves the process; a request to any other host fails
the test). The real ``vllm serve`` is exercised in
tests/integration/intent/test_intent_remote_vllm.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation
from models.core.errors import StrategyUnavailableError
from models.core.routing_config import parse_routing_config
from strategies.base import RouteOptions, StrategyContext
from strategies.intent import remote as intent_remote
from strategies.intent.prompt import INSTRUCTION, QUESTION
from strategies.intent.remote import (
    RemoteClassifierError,
    RemoteIntentClassifier,
    RemoteStartupError,
)
from strategies.intent.strategy import IntentStrategy
from tests.helpers import app_client, make_settings, user

BASE = "http://vllm.test:8000/v1"
YAML = """
models:
  - {name: model-a, cost: 1.0}
  - {name: model-b, cost: 0.2}
intents:
  - {name: code, description: Programming help, model: model-a}
  - {name: greet, description: Greetings, model: model-b}
fallback_model: model-b
"""


class Server:
    """Scripted server: ``statuses`` are answered first (one per request), then ``answer``."""

    def __init__(self, answer: str = "code", served: tuple[str, ...] = ("tiny",)) -> None:
        self.answer: str | Callable[[dict[str, Any]], str] = answer
        self.served = served
        self.statuses: list[int | Exception] = []
        self.posts: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url).startswith(BASE + "/"), f"unexpected connection: {request.url}"
        self.headers.append(request.headers)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": m} for m in self.served]})
        body = json.loads(request.content)
        self.posts.append(body)
        if self.statuses:
            status = self.statuses.pop(0)
            if isinstance(status, Exception):
                raise status
            return httpx.Response(status, json={"error": {"message": "busy"}})
        text = self.answer(body) if callable(self.answer) else self.answer
        usage = {"prompt_tokens": 321, "completion_tokens": 2}
        return httpx.Response(
            200, json={"choices": [{"message": {"content": text}}], "usage": usage}
        )


def context(**intent: Any) -> StrategyContext:
    settings = Settings(intent={"backend": "remote", "base_url": BASE, "model": "tiny", **intent})
    config = parse_routing_config(YAML, Path("remote.yaml"))
    return StrategyContext(settings=settings, config=config, metrics=RouterMetrics())


async def started(server: Server, **intent: Any) -> RemoteIntentClassifier:
    clf = RemoteIntentClassifier(context(**intent), transport=httpx.MockTransport(server))
    await clf.start()
    return clf


def invalid_count(clf: RemoteIntentClassifier) -> float | None:
    return clf._ctx.metrics.registry.get_sample_value(
        "llm_router_intent_invalid_answers_total", {"backend": "remote"}
    )


async def test_request_carries_prompt_and_choice_constraint() -> None:
    server = Server(answer="code")
    clf = await started(server)
    result = await clf.classify(Conversation.from_text("sort a list in rust"))
    assert result.intent == "code" and result.detail["prompt_tokens"] == 321
    (body,) = server.posts
    assert body["model"] == "tiny" and body["temperature"] == 0.0
    assert body["structured_outputs"] == {"choice": ["code", "greet", "other"]}
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["max_tokens"] == len("other") + 1
    (message,) = body["messages"]
    assert message["role"] == "user"
    assert message["content"].startswith(INSTRUCTION.split("{routes}")[0])
    assert message["content"].endswith(QUESTION)
    assert '{"role": "user", "content": "sort a list in rust"}' in message["content"]
    await clf.aclose()


@pytest.mark.parametrize(
    ("guided", "field"),
    [
        ("guided_choice", "guided_choice"),
        ("none", None),
        ("structured_outputs", "structured_outputs"),
    ],
)
async def test_constraint_field_follows_the_setting(guided: str, field: str | None) -> None:
    server = Server()
    clf = await started(server, guided=guided)
    await clf.classify(Conversation.from_text("hi"))
    fields = {"guided_choice", "structured_outputs"} & set(server.posts[0])
    assert fields == ({field} if field else set())


async def test_an_answer_naming_no_route_is_other_and_counted() -> None:
    server = Server(answer="Sure! The route is probably code.")
    clf = await started(server, guided="none")
    result = await clf.classify(Conversation.from_text("hi"))
    assert result.intent == "other" and invalid_count(clf) == 1.0
    server.answer = " greet\n"
    assert (await clf.classify(Conversation.from_text("hi"))).intent == "greet"
    assert invalid_count(clf) == 1.0


async def test_retries_connect_errors_429_and_503_then_succeeds() -> None:
    server = Server()
    clf = await started(server, max_retries=3)
    server.statuses = [httpx.ConnectError("refused"), 429, 503]
    assert (await clf.classify(Conversation.from_text("hi"))).intent == "code"
    assert len(server.posts) == 4


@pytest.mark.parametrize("status", [400, 500, 404])
async def test_other_errors_are_not_retried(status: int) -> None:
    server = Server()
    clf = await started(server, max_retries=3)
    server.statuses = [status]
    with pytest.raises(RemoteClassifierError, match=str(status)):
        await clf.classify(Conversation.from_text("hi"))
    assert len(server.posts) == 1


async def test_retries_are_bounded() -> None:
    server = Server()
    clf = await started(server, max_retries=1)
    server.statuses = [503, 503, 503]
    with pytest.raises(RemoteClassifierError, match="after 2 attempts"):
        await clf.classify(Conversation.from_text("hi"))
    assert len(server.posts) == 2


async def test_startup_names_url_and_served_models_when_model_missing() -> None:
    with pytest.raises(RemoteStartupError) as err:
        await started(Server(served=("other-model", "x")))
    assert BASE + "/models" in str(err.value) and "other-model" in str(err.value)


async def test_startup_gives_up_on_an_unreachable_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    clf = RemoteIntentClassifier(
        context(startup_timeout_s=0.01), transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(RemoteStartupError, match="ROUTER_INTENT__BASE_URL") as err:
        await clf.start()
    assert BASE in str(err.value) and not clf.healthy


async def test_api_key_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_VLLM_KEY", "sk-remote")
    server = Server()
    clf = await started(server, api_key_env="MY_VLLM_KEY")
    await clf.classify(Conversation.from_text("hi"))
    assert {h["authorization"] for h in server.headers} == {"Bearer sk-remote"}
    monkeypatch.delenv("MY_VLLM_KEY")
    with pytest.raises(RemoteStartupError, match="MY_VLLM_KEY"):
        await started(server, api_key_env="MY_VLLM_KEY")


def wire(monkeypatch: pytest.MonkeyPatch, server: Server) -> None:
    """Make IntentStrategy's lazily imported remote classifier use ``server``."""

    class Wired(RemoteIntentClassifier):
        def __init__(self, ctx: StrategyContext) -> None:
            super().__init__(ctx, transport=httpx.MockTransport(server))

    monkeypatch.setattr(intent_remote, "RemoteIntentClassifier", Wired)


async def test_strategy_failure_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(answer="code")
    wire(monkeypatch, server)
    fallback = IntentStrategy(context())
    await fallback.start()
    assert fallback.ready
    server.statuses = [500]
    decision = await fallback.route(Conversation.from_text("hi"), RouteOptions())
    assert (decision.model, decision.reason, decision.intent) == ("model-b", "fallback", None)
    strict = IntentStrategy(context(on_error="error"))
    await strict.start()
    server.statuses = [500]
    with pytest.raises(StrategyUnavailableError):
        await strict.route(Conversation.from_text("hi"), RouteOptions())
    decision = await strict.route(Conversation.from_text("hi"), RouteOptions())
    assert (decision.model, decision.reason) == ("model-a", "intent")
    await fallback.aclose()
    await strict.aclose()
    assert not fallback.ready


async def test_through_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(answer="chit_chat")
    wire(monkeypatch, server)
    settings = make_settings(
        strategy="intent", intent={"backend": "remote", "base_url": BASE, "model": "tiny"}
    )
    async with app_client(settings) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user("hello")]})
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "nvidia/nvidia-nemotron-nano-9b-v2"
    assert (body["router"]["intent"], body["router"]["reason"]) == ("chit_chat", "intent")
