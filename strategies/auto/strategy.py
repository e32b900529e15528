"""AutoStrategy: learned routing (``ROUTER_STRATEGY=auto``).

An encoder turns the conversation into a vector, the artifact's MLP predicts for each
model the probability that it answers well, and a selection policy picks the model.
Concurrent requests are encoded and scored together by a :class:`MicroBatcher` in one
encoder thread, never on the event loop. torch/open_clip load only in :meth:`start`.

Images: the latest turn needs a vision model when it carries an image or its words point
at an earlier one (:mod:`strategies.vision`, lexical cues: this strategy has no intent
classifier). Otherwise every model is a candidate and the conversation is scored as a
text-only model would receive it (earlier images as markers, no pixels); the reason is
then ``images_omitted`` when a text model wins, ``image_reference`` when the latest turn
asks about an earlier image.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.core.conversation import Conversation
from models.core.errors import NoEligibleModelError, StrategyError
from models.inference.batching import MicroBatcher
from strategies.auto.selection import fallback_ranking, policy_params, select
from strategies.base import (
    RouteOptions,
    RoutingDecision,
    StrategyContext,
    eligible_models,
    fallback_by_cost,
    strips_images,
)
from strategies.policy import run_with_policy
from strategies.vision import vision_need

if TYPE_CHECKING:
    from models.encoders.conversation import Encoder
    from models.routers.artifact import Manifest


class AutoStrategyError(StrategyError):
    """The auto strategy cannot start (no artifact, mismatching artifact, encoder)."""


def artifact_path(context: StrategyContext) -> Path:
    """``ROUTER_AUTO__ARTIFACT`` if set, else ``auto.artifact`` from the routing config
    (relative to the config file)."""
    override = context.settings.auto.artifact
    if override:
        return Path(override).expanduser()
    configured = context.config.auto.artifact
    if not configured:
        raise AutoStrategyError(
            "ROUTER_STRATEGY=auto needs a router artifact: set 'auto.artifact' in the routing "
            "config or ROUTER_AUTO__ARTIFACT (build one with 'llm-router train')"
        )
    return context.config.resolve_path(configured)


def _warmup_jpeg() -> Any:
    """A decoded JPEG that keeps its bytes, as the edge makes them (warms nvJPEG too)."""
    import io

    from PIL import Image

    from models.core.conversation import ENCODED_KEY, EncodedImage

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 120, 200)).save(buf, format="JPEG")
    image = Image.open(io.BytesIO(buf.getvalue()))
    image.load()
    image.info[ENCODED_KEY] = EncodedImage("JPEG", buf.getvalue(), image.size)
    return image


class AutoStrategy:
    """Route by predicted per-model success probability and cost."""

    name = "auto"

    def __init__(self, context: StrategyContext) -> None:
        self._ctx = context
        self._path = artifact_path(context)
        self._ready = False
        self._encoder: Encoder | None = None
        self._manifest: Manifest | None = None
        self._mlp: Any = None
        self._torch: Any = None
        self._cost_weight: float | None = None  # the configured budget's, when one is set
        self._batcher: MicroBatcher[Conversation, np.ndarray] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise AutoStrategyError("auto strategy is not started")
        return self._manifest

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise AutoStrategyError("auto strategy is not started")
        return self._encoder

    def _load(self) -> None:
        """Blocking: read the artifact, build the encoder it needs, check they match."""
        import torch

        from models.encoders.conversation import build_encoder
        from models.routers.artifact import (
            ArtifactError,
            budget_operating_point,
            check_compatible,
            load_weights,
            read_manifest,
        )

        settings = self._ctx.settings.auto
        try:
            manifest = read_manifest(self._path)
        except ArtifactError as exc:
            raise AutoStrategyError(f"{exc} (ROUTER_AUTO__ARTIFACT / auto.artifact)") from None
        encoder = build_encoder(
            settings.encoder,
            settings.pretrained,
            settings.device,
            max_tokens=manifest.encoder.get("max_tokens"),
            autocast=settings.autocast,
            device_images=settings.device_images,
            cuda_graphs=settings.cuda_graphs,
            graph_batch=self._ctx.settings.batch.max_size,
            runtime=self._ctx.encoder_runtime(),
        )
        check_compatible(manifest, encoder, self._ctx.config.model_names)
        alpha = None
        budget = self._ctx.config.auto.budget_per_1k
        if budget is not None:  # that budget's alpha and cost_weight, chosen on validation
            try:
                alpha, self._cost_weight = budget_operating_point(manifest, budget)
            except ArtifactError as exc:
                raise AutoStrategyError(f"{exc} (routing config auto.budget_per_1k)") from None
        self._mlp = load_weights(self._path, manifest, settings.device, alpha)
        self._torch = torch
        self._manifest, self._encoder = manifest, encoder

    def score_batch(self, conversations: list[Conversation]) -> list[np.ndarray]:
        """Blocking, batched: per-model probabilities (artifact order) per conversation."""
        torch = self._torch
        embed_tensor = getattr(self.encoder, "embed_tensor", None)
        with torch.inference_mode():
            if embed_tensor is not None:  # stays on the device: one transfer, of the result
                x = embed_tensor(conversations)
            else:
                x = torch.from_numpy(self.encoder.embed(conversations))
                x = x.to(self._ctx.settings.auto.device)
            probs = self._mlp.probabilities(x).float().cpu().numpy()
        return list(probs)

    @property
    def cost_weight(self) -> float:
        """The cost_weight requests start from: the configured budget's, else
        ``auto.cost_weight``."""
        if self._cost_weight is not None:
            return self._cost_weight
        return self._ctx.config.auto.cost_weight

    @property
    def fixed_model(self) -> str | None:
        """The single model the artifact falls back to, when training decided the router
        does not beat it (``recommended.decision.mode == "single"``)."""
        decision = self.manifest.recommended.get("decision") or {}
        return decision.get("model") if decision.get("mode") == "single" else None

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        batch = self._ctx.settings.batch
        self._batcher = MicroBatcher(
            self.score_batch,
            name=self.encoder.name,
            max_batch_size=batch.max_size,
            window_s=batch.window_ms / 1000.0,
            queue_size=batch.queue_size,
            metrics=self._ctx.metrics,
        )
        warmup = [Conversation.from_text("hello"), Conversation.from_text("warm up " * 200)]
        if self.encoder.supports_images:
            warmup.append(Conversation.from_text("what is this?", [_warmup_jpeg()]))
        await self._batcher.run_now(warmup)
        self._ready = True

    async def aclose(self) -> None:
        self._ready = False
        if self._batcher is not None:
            await self._batcher.aclose()
            self._batcher = None
        self._encoder = self._mlp = None  # native sessions released before process exit

    async def probabilities(self, conversation: Conversation) -> dict[str, float]:
        """Every artifact model's probability for this conversation (micro-batched)."""
        if self._batcher is None:
            raise AutoStrategyError("auto strategy is not started")
        probs = await self._batcher.submit(conversation)
        return {m: float(p) for m, p in zip(self.manifest.models, probs, strict=True)}

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        config, metrics = self._ctx.config, self._ctx.metrics
        scored = set(self.manifest.models)
        need = vision_need(conversation)
        eligible = eligible_models(config, conversation, options, need.needed)
        candidates = [m for m in eligible if m in scored]
        if not candidates:
            what = "vision-capable " if need.needed else ""
            raise NoEligibleModelError(f"no {what}model scored by the router is eligible")
        start = time.perf_counter()
        settings = self._ctx.settings.auto
        # earlier images the latest turn does not need: scored as the text they become
        seen = conversation.without_images() if need.omit_for_text_models else conversation
        probs = await run_with_policy(
            self.probabilities(seen),
            strategy=self.name,
            what="router encoder",
            timeout_s=settings.timeout_s,
            on_error=settings.on_error,
            metrics=metrics,
        )
        if probs is None:
            decision = self._fallback(candidates)
        else:
            encoded = time.perf_counter()
            metrics.stage_duration.labels(self.name, "encode").observe(encoded - start)
            params = policy_params(config, options, self.fixed_model, self._cost_weight)
            choice = select(probs, candidates, params)
            ranking = fallback_ranking(
                probs, choice.model, candidates, params, config.fallback_order
            )
            metrics.stage_duration.labels(self.name, "select").observe(
                time.perf_counter() - encoded
            )
            decision = RoutingDecision(
                model=choice.model,
                strategy=self.name,
                reason=choice.reason,
                scores={m: round(probs[m], 6) for m in candidates},
                ranking=ranking,
                detail={"policy": params.policy, "encoder": self.encoder.name},
            )
        decision.needs_vision = need.needed
        decision.strip_images = strips_images(config, conversation, decision.model)
        decision.detail["vision"] = need.cause
        if decision.reason != "fallback":
            decision.detail["selection"] = decision.reason
            if need.cause == "earlier_image":
                decision.reason = "image_reference"
            elif decision.strip_images:
                decision.reason = "images_omitted"
        return decision

    def _fallback(self, candidates: list[str]) -> RoutingDecision:
        """The decision when scoring failed or timed out under ``on_error=fallback``: the
        configured fallback model when eligible, else the cheapest eligible one."""
        config = self._ctx.config
        wanted = config.default_model()
        model = (
            wanted if wanted in candidates else min(candidates, key=lambda m: config.model(m).cost)
        )
        others = fallback_by_cost(config, [m for m in candidates if m != model])
        return RoutingDecision(
            model=model,
            strategy=self.name,
            reason="fallback",
            ranking=[model, *others],
            detail={"encoder": self.encoder.name},
        )
