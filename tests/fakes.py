"""A FakeStrategy implementing the RoutingStrategy protocol (no models), for unit tests and
for benchmarking the service's own overhead (``ROUTER_STRATEGY=tests.fakes:FakeStrategy``)."""

from __future__ import annotations

import asyncio
from collections import deque

from strategies.base import (
    Conversation,
    NoEligibleModelError,
    RouteOptions,
    RoutingDecision,
    StrategyContext,
    eligible_models,
)


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


class FailingStrategy(FakeStrategy):
    """A strategy whose start() always fails (startup-failure tests in subprocesses)."""

    async def start(self) -> None:
        raise RuntimeError("failing on purpose")


class SlowStrategy(FakeStrategy):
    """Takes two seconds per decision (drain-on-SIGTERM tests in subprocesses)."""

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        await asyncio.sleep(2.0)
        return await super().route(conversation, options)
