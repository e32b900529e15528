"""IntentStrategy on vLLM with CUDA (the `vllm` package), tiny Qwen3: the CPU checks again.

Skipped without CUDA (tests/conftest.py). Run on the lent GPU machine: ``make test-gpu``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation
from strategies.base import RouteOptions, StrategyContext
from strategies.intent.strategy import IntentStrategy
from tests.integration.intent.test_intent_vllm_engine import (
    CONVERSATIONS,
    MAX_MODEL_LEN,
    ROUTES,
    short_config,
    turns,
)
from tests.tiny_models import build_tiny_qwen3

pytestmark = [pytest.mark.gpu, pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strategy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IntentStrategy]:
    model = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-gpu"))
    settings = Settings(
        intent={
            "backend": "vllm",
            "model": str(model),
            "max_model_len": MAX_MODEL_LEN,
            "gpu_memory_utilization": 0.2,
        }
    )
    ctx = StrategyContext(settings=settings, config=short_config(), metrics=RouterMetrics())
    strategy = IntentStrategy(ctx)
    await strategy.start()
    yield strategy
    await strategy.aclose()


async def test_every_decision_is_a_configured_route_on_cuda(strategy: IntentStrategy) -> None:
    config = short_config()
    for name, conversation in CONVERSATIONS.items():
        decision = await strategy.route(conversation, RouteOptions())
        assert decision.intent in ROUTES, name
        assert decision.reason in {"intent", "vision_fallback"}, name
        if conversation.has_images:
            assert config.model(decision.model).vision, name


async def test_concurrent_decisions_on_cuda(strategy: IntentStrategy) -> None:
    convs = list(CONVERSATIONS.values()) * 6
    decisions = await asyncio.gather(*(strategy.route(c, RouteOptions()) for c in convs))
    assert all(d.intent in ROUTES and d.reason != "fallback" for d in decisions)


async def test_long_conversation_truncated_on_cuda(strategy: IntentStrategy) -> None:
    conversation = turns(("user", "start " + "word " * 5000 + "end?"))
    decision = await strategy.route(conversation, RouteOptions())
    assert decision.intent in ROUTES and decision.detail["truncated"] is True
    assert decision.detail["prompt_tokens"] <= MAX_MODEL_LEN


async def test_decision_latency_on_cuda(strategy: IntentStrategy) -> None:
    """A tiny model on a GPU decides in well under the reference router's ~95 ms."""
    latencies = []
    for i in range(20):
        began = time.perf_counter()
        await strategy.route(Conversation.from_text(f"question {i}?"), RouteOptions())
        latencies.append(time.perf_counter() - began)
    assert statistics.median(latencies) < 0.095
