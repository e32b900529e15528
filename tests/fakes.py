"""A FakeStrategy implementing the RoutingStrategy protocol (no models), for unit tests and
for benchmarking the service's own overhead (``ROUTER_STRATEGY=tests.fakes:FakeStrategy``)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import numpy as np

from models.core.conversation import Conversation
from models.core.errors import NoEligibleModelError
from models.inference.batching import MicroBatcher
from models.routers.artifact import Manifest
from strategies.auto.strategy import AutoStrategy
from strategies.base import RouteOptions, RoutingDecision, StrategyContext, eligible_models


class FakeStrategy:
    """Routes to the first eligible configured model (cheapest-first when images)."""

    name = "fake"
    #: tests set this to an Event to hold start() (readiness tests)
    start_gate: asyncio.Event | None = None
    fail_start: str | None = None

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self._ready = False
        # the last few conversations only: load tests and benchmarks send thousands
        self.seen: deque[Conversation] = deque(maxlen=16)

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        if FakeStrategy.start_gate is not None:
            await FakeStrategy.start_gate.wait()
        if FakeStrategy.fail_start:
            raise RuntimeError(FakeStrategy.fail_start)
        self._ready = True

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        self.seen.append(conversation)
        eligible = eligible_models(self.context.config, conversation, options)
        if not eligible:
            raise NoEligibleModelError("no model is eligible for this request")
        return RoutingDecision(
            model=eligible[0],
            strategy=self.name,
            reason="fake",
            intent="fake_intent",
            scores={m: 1.0 / (i + 1) for i, m in enumerate(eligible)},
            ranking=eligible,
        )

    async def aclose(self) -> None:
        self._ready = False


class ScriptedStrategy(FakeStrategy):
    """Routes to the model the latest user text names after ``use:`` (else like
    FakeStrategy), so tests can script what a strategy would choose turn by turn."""

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        decision = await super().route(conversation, options)
        text = conversation.latest_user_text()
        if "use:" in text:
            wanted = text.split("use:", 1)[1].split()[0]
            decision.model = wanted
            decision.ranking = [wanted, *(m for m in decision.ranking if m != wanted)]
        return decision


class FailingStrategy(FakeStrategy):
    """A strategy whose start() always fails (startup-failure tests in subprocesses)."""

    async def start(self) -> None:
        raise RuntimeError("failing on purpose")


class Faults:
    """Switches for the fault fakes below: ``gate`` holds their batch functions (cleared =
    hold, bounded by ``hold_s``); texts containing ``POISON`` make a batch function fail.
    Reset by tests/conftest.py."""

    gate = threading.Event()
    hold_s = 5.0
    POISON = "poison"

    @classmethod
    def reset(cls) -> None:
        cls.gate.set()

    @classmethod
    def batch(cls, texts: list[str]) -> None:
        """What every fake batch function does first: wait at the gate, fail on poison."""
        cls.gate.wait(cls.hold_s)
        if any(cls.POISON in t for t in texts):
            raise ValueError("poisoned input")


class FakeIntentClassifier:
    """An intent backend with a real MicroBatcher in front of a fake batch function
    (always ``chit_chat``), for overload, shutdown and failure tests."""

    def __init__(self, context: StrategyContext) -> None:
        batch = context.settings.batch
        self._batcher: MicroBatcher[str, str] = MicroBatcher(
            self._classify_batch,
            name="fake-intent",
            max_batch_size=batch.max_size,
            window_s=batch.window_ms / 1000.0,
            queue_size=batch.queue_size,
            metrics=context.metrics,
        )

    @staticmethod
    def _classify_batch(texts: list[str]) -> list[str]:
        Faults.batch(texts)
        return ["chit_chat"] * len(texts)

    async def start(self) -> None:
        self._batcher.start()

    async def classify(self, conversation: Conversation) -> Any:
        from strategies.intent.strategy import IntentResult

        return IntentResult(intent=await self._batcher.submit(conversation.latest_user_text()))

    async def aclose(self) -> None:
        await self._batcher.aclose()


class FakeAutoStrategy(AutoStrategy):
    """The real AutoStrategy (batcher, policy, selection) with a fake encoder + MLP: every
    configured model scores 0.9. Needs ``auto.artifact`` set to any path."""

    def _load(self) -> None:
        models = self._ctx.config.model_names
        self._manifest = Manifest(encoder={}, models=models, mlp={})
        self._encoder = SimpleNamespace(name="fake-encoder", supports_images=False)  # type: ignore[assignment]

    def score_batch(self, conversations: list[Conversation]) -> list[np.ndarray]:
        Faults.batch([c.latest_user_text() for c in conversations])
        n = len(self._ctx.config.model_names)
        return [np.full(n, 0.9, dtype=np.float32) for _ in conversations]


class SlowFakeStrategy(FakeStrategy):
    """FakeStrategy that takes ``FAKE_ROUTE_DELAY_S`` seconds per decision (server tests)."""

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        await asyncio.sleep(float(os.environ.get("FAKE_ROUTE_DELAY_S", "0")))
        return await super().route(conversation, options)
