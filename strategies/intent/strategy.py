"""IntentStrategy: classify the conversation into a configured intent, map it to a model.

The classifier backend (``ROUTER_INTENT__BACKEND``) is loaded lazily: ``embedding``
(packaged MiniLM, offline default), ``vllm`` (in-process LLM) or ``remote`` (an
OpenAI-compatible server). This module owns what is common to them: intent → model
mapping, which intents may apply (``requires``), the vision rule of the latest turn
(:mod:`strategies.vision`, with the classifier's reading of it), the failure policy
(:func:`strategies.policy.run_with_policy`) and metrics.

Decision reasons (bounded, the ``reason`` label of ``llm_router_decisions_total``):
``intent`` (the intent's model), ``images_omitted`` (the intent's text-only model, with
the conversation's earlier images as markers), ``image_reference`` (the latest turn asks
about an earlier image: a vision model), ``vision_fallback`` (the latest turn carries an
image the intent's model cannot see), ``excluded_fallback``, and ``fallback`` whenever
the classifier failed under ``on_error=fallback`` (the fallback model, or the vision
model when the turn needs one).
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
    strips_images,
)
from strategies.policy import run_with_policy
from strategies.vision import VisionNeed, vision_need

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
    #: the latest user turn read on its own, where the backend can tell it apart from the
    #: conversation's reading (embedding: turn-weighted scores); None = ``intent``
    latest_intent: str | None = None


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
    """Route names whose ``requires`` hold for this conversation (``other`` always):
    ``image`` needs an image anywhere in the conversation, ``previous_answer`` an
    assistant answer before the latest user turn. Every backend offers only these."""
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


def image_intents(context: StrategyContext) -> set[str]:
    """Intents whose model can see images (the default config's ``image_understanding``
    and ``image_question``): read on a latest turn that follows images, they mean it asks
    about them."""
    config = context.config
    return {i.name for i in config.intents if config.model(i.model).vision}


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
        self._image_intents = image_intents(context)
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

    def _vision(self, conversation: Conversation, intent: str | None) -> VisionNeed:
        """The lexical vision rule plus what the classifier read on the latest turn
        (``intent``): an image intent (its model can see) after earlier images means the
        turn asks about them."""
        need = vision_need(conversation)
        if intent is None or not need.earlier_images or need.needed:
            return need
        return need.with_reference(intent in self._image_intents)

    def _choose(
        self, intent: str | None, failed: bool, need: VisionNeed, eligible: list[str]
    ) -> tuple[str, str]:
        """The model and the reason, before ``images_omitted`` is known."""
        config = self._ctx.config
        wanted = config.default_model() if failed else self._targets.get(intent or "")
        model, reason = wanted or config.default_model(), "intent"
        if model not in eligible:
            vision = config.vision_model() if need.needed else None
            if vision is not None and vision in eligible:
                model = vision
            else:
                # cheapest eligible model stands in for an excluded/incapable choice
                model = min(eligible, key=lambda m: config.model(m).cost)
            reason = "vision_fallback" if need.needed else "excluded_fallback"
        if need.cause == "earlier_image":
            reason = "image_reference"
        if failed:  # the classifier failed: what the alerts watch for, whatever the model
            reason = "fallback"
        return model, reason

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        config = self._ctx.config
        if not eligible_models(config, conversation, options, bool(conversation.latest_images)):
            what = "vision-capable " if conversation.latest_images else ""
            raise NoEligibleModelError(f"no {what}model is eligible for this request")
        result = await self._classify(conversation)
        intent = result.intent if result is not None else None
        latest = (result.latest_intent or intent) if result is not None else None
        need = self._vision(conversation, latest)
        eligible = eligible_models(config, conversation, options, need.needed)
        if not eligible:
            raise NoEligibleModelError("no vision-capable model is eligible for this request")
        if result is not None and need.omit_for_text_models and intent in self._image_intents:
            # the image intent came from the earlier turns: the latest one, read on its
            # own, names another (else it would have needed the image)
            intent = result.latest_intent or OTHER_INTENT
        model, reason = self._choose(intent, result is None, need, eligible)
        strip = strips_images(config, conversation, model)
        if strip and reason == "intent":
            reason = "images_omitted"
        others = fallback_by_cost(config, [m for m in eligible if m != model])
        allowed = allowed_intents(self._ctx, conversation)
        scores = result.scores if result else {}
        return RoutingDecision(
            model=model,
            strategy=self.name,
            reason=reason,
            intent=intent,
            # intents that cannot apply here (``requires``) are out of the running: not shown
            scores={k: v for k, v in scores.items() if k in allowed},
            ranking=[model, *others],
            detail={
                "backend": self.backend,
                "eligible_intents": allowed,
                "vision": need.cause,
                **(result.detail if result else {}),
            },
            needs_vision=need.needed,
            strip_images=strip,
        )
