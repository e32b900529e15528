"""The contract between the HTTP edge and routing strategies.

The edge validates a request once into a :class:`~models.core.conversation.Conversation`;
a strategy returns a :class:`RoutingDecision`. A strategy is built from a
:class:`StrategyContext`, whose settings and metrics are described here by what strategies
use of them (the app's ``Settings`` and ``RouterMetrics`` provide them), so this layer
never imports the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from models.core.conversation import Conversation
from models.inference.batching import BatchMetrics
from strategies.vision import vision_need

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from models.core.routing_config import RoutingConfig
    from models.encoders.runtime import EncoderRuntime
    from strategies.settings import AutoSettings, BatchSettings, EncoderSettings, IntentSettings


class StrategySettings(Protocol):
    """The settings sections strategies read (``app.settings.Settings`` has them)."""

    @property
    def intent(self) -> IntentSettings: ...

    @property
    def auto(self) -> AutoSettings: ...

    @property
    def batch(self) -> BatchSettings: ...

    @property
    def encoder(self) -> EncoderSettings: ...


class StrategyMetrics(BatchMetrics, Protocol):
    """The metrics strategies record (``app.metrics.RouterMetrics`` has them)."""

    stage_duration: Histogram
    strategy_errors: Counter
    engine_deaths: Counter
    invalid_answers: Counter
    ready: Gauge

    def include_default_registry(self, prefix: str) -> None: ...


@dataclass(slots=True)
class RouteOptions:
    """Per-request routing overrides (the request's ``router`` extension field)."""

    thresholds: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    cost_weight: float | None = None
    exclude_models: frozenset[str] = frozenset()


@dataclass(slots=True)
class RoutingDecision:
    """Which model should answer, and why."""

    model: str
    strategy: str
    reason: str
    intent: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    ranking: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    #: the latest turn has to be seen (it carries an image, or asks about an earlier one):
    #: only vision-capable models may answer it
    needs_vision: bool = False
    #: the chosen model cannot see images and the conversation holds some (earlier turns):
    #: they go to it as text markers (proxy), or the client should replace them (recommend)
    strip_images: bool = False

    def candidates(self) -> list[str]:
        """The chosen model first, then the rest of the ranking (proxy fallback order)."""
        return [self.model] + [m for m in self.ranking if m != self.model]


@dataclass(slots=True)
class StrategyContext:
    """What a strategy is built from."""

    settings: StrategySettings
    config: RoutingConfig
    metrics: StrategyMetrics
    # called with a reason when the strategy can no longer serve (e.g. its engine died)
    # and the process should exit so the orchestrator restarts it
    on_fatal: Callable[[str], None] | None = None
    # intra-op threads for encoders (the app shares the usable cores out between its
    # workers); 0 = the runtime's default
    threads: int = 0

    def encoder_runtime(self, runtime: str | None = None) -> EncoderRuntime:
        """``ROUTER_ENCODER__*`` and the thread count as the models layer takes them;
        ``runtime`` overrides the configured one (an intent head's recorded runtime)."""
        from models.encoders.runtime import EncoderRuntime

        encoder = self.settings.encoder
        name = runtime or encoder.runtime
        return EncoderRuntime(
            "onnx" if name == "onnx" else "torch", encoder.cache_dir, self.threads
        )


@runtime_checkable
class RoutingStrategy(Protocol):
    """A routing strategy: load and warm up once, then route many conversations."""

    name: str

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None:
        """Load models and warm up; ``ready`` is True afterwards."""

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        """Choose a model for the conversation."""
        ...

    async def aclose(self) -> None:
        """Release models, engines and threads."""


def eligible_models(
    config: RoutingConfig,
    conversation: Conversation,
    options: RouteOptions,
    need_vision: bool | None = None,
) -> list[str]:
    """Configured models that may answer: not excluded, and vision-capable when the latest
    turn needs to see an image (``need_vision``; by default the lexical rule of
    :func:`strategies.vision.vision_need`). Earlier images alone do not count: a text
    model answers them with the images replaced by markers. Order follows the config."""
    if need_vision is None:
        need_vision = vision_need(conversation).needed
    return [
        m.name
        for m in config.models
        if m.name not in options.exclude_models and (m.vision or not need_vision)
    ]


def strips_images(config: RoutingConfig, conversation: Conversation, model: str) -> bool:
    """Whether ``model`` answers this conversation with its images replaced by markers
    (it cannot see them, and the conversation holds some)."""
    return conversation.has_images and not config.model(model).vision


def fallback_by_cost(config: RoutingConfig, others: list[str]) -> list[str]:
    """The models to fall back to, in the routing config's ``fallback_order`` by cost:
    cheapest first, or with ``strongest`` the most expensive first (cost standing in for
    capability). Ties keep the config's order."""
    strongest = config.fallback_order == "strongest"
    return sorted(others, key=lambda m: config.model(m).cost, reverse=strongest)
