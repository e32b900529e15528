"""IntentStrategy: classify the conversation into a configured intent, map it to a model.

The classifier backend (``ROUTER_INTENT__BACKEND``) is loaded lazily: ``embedding``
(packaged MiniLM, offline default), ``vllm`` (in-process LLM) or ``remote`` (an
OpenAI-compatible server). This module owns what is common to them: intent → model
mapping, the vision rule, the failure policy (:func:`strategies.policy.run_with_policy`)
and metrics.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.core.conversation import Conversation
from models.core.errors import NoEligibleModelError
from models.core.routing_config import OTHER_INTENT
from strategies.base import (
    RouteOptions,
    RoutingDecision,
    StrategyContext,
    eligible_models,
    fallback_by_cost,
)
from strategies.policy import run_with_policy

BACKENDS = {
    "embedding": "strategies.intent.embedding:EmbeddingIntentClassifier",
    "vllm": "strategies.intent.vllm:VllmIntentClassifier",
    "remote": "strategies.intent.remote:RemoteIntentClassifier",
}


@dataclass(slots=True)
class IntentResult:
    """A classifier's answer: the intent name and, where it has them, per-intent scores."""

    intent: str
    scores: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


class IntentClassifier(Protocol):
    """A backend that names the intent of a conversation."""

    async def start(self) -> None: ...

    async def classify(self, conversation: Conversation) -> IntentResult: ...

    async def aclose(self) -> None: ...


def route_names(context: StrategyContext) -> list[str]:
    """The classifier's label set: configured intents plus ``other``."""
    names = [intent.name for intent in context.config.intents]
    return names if OTHER_INTENT in names else [*names, OTHER_INTENT]


def allowed_intents(context: StrategyContext, conversation: Conversation) -> list[str]:
    """Route names whose ``requires`` hold for this conversation (``other`` always)."""
    facts = {
        "image": conversation.has_images,
        "previous_answer": conversation.has_previous_answer(),
    }
    names = [
        intent.name
        for intent in context.config.intents
        if all(facts[req] for req in intent.requires)
    ]
    return names if OTHER_INTENT in names else [*names, OTHER_INTENT]


class IntentStrategy:
    """Route by intent."""

    name = "intent"

    def __init__(self, context: StrategyContext) -> None:
        self._ctx = context
        settings = context.settings.intent
        if not context.config.intents:
            raise ValueError("ROUTER_STRATEGY=intent needs 'intents:' in the routing config")
        module_name, _, class_name = BACKENDS[settings.backend].partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        self.backend = settings.backend
        self._classifier: IntentClassifier = cls(context)
        self._targets = {intent.name: intent.model for intent in context.config.intents}
        self._ready = False

    @property
    def ready(self) -> bool:
        # a backend with an engine that can die says so through ``healthy``
        return self._ready and getattr(self._classifier, "healthy", True)

    async def start(self) -> None:
        await self._classifier.start()
        await self._classifier.classify(Conversation.from_text("hello"))  # warm-up
        self._ready = True

    async def aclose(self) -> None:
        self._ready = False
        await self._classifier.aclose()

    async def _classify(self, conversation: Conversation) -> IntentResult | None:
        """The classifier's answer, or None when it failed and the policy is fallback."""
        settings = self._ctx.settings.intent
        start = time.perf_counter()
        result = await run_with_policy(
            self._classifier.classify(conversation),
            strategy=self.name,
            what="intent classifier",
            timeout_s=settings.timeout_s,
            on_error=settings.on_error,
            metrics=self._ctx.metrics,
        )
        if result is not None:
            self._ctx.metrics.stage_duration.labels(self.name, "classify").observe(
                time.perf_counter() - start
            )
        return result

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        config = self._ctx.config
        eligible = eligible_models(config, conversation, options)
        if not eligible:
            need = "vision-capable " if conversation.has_images else ""
            raise NoEligibleModelError(f"no {need}model is eligible for this request")
        result = await self._classify(conversation)
        if result is None:
            intent, reason, wanted = None, "fallback", config.default_model()
        else:
            intent, reason = result.intent, "intent"
            wanted = self._targets.get(result.intent, config.default_model())
        model = wanted
        if model not in eligible:
            vision = config.vision_model() if conversation.has_images else None
            if vision is not None and vision in eligible:
                model, reason = vision, "vision_fallback"
            else:
                # cheapest eligible model stands in for an excluded/incapable choice
                model = min(eligible, key=lambda m: config.model(m).cost)
                reason = "vision_fallback" if conversation.has_images else "excluded_fallback"
        ranking = [model, *fallback_by_cost(config, [m for m in eligible if m != model])]
        return RoutingDecision(
            model=model,
            strategy=self.name,
            reason=reason,
            intent=intent,
            scores=dict(result.scores) if result else {},
            ranking=ranking,
            detail={"backend": self.backend, **(result.detail if result else {})},
        )
