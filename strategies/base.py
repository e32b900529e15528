"""The contract between the HTTP edge and routing strategies.

The edge validates a request once into a :class:`Conversation`; a strategy returns a
:class:`RoutingDecision`. Nothing below the edge sees raw request dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

# re-exported: strategies import the errors they raise from their contract module
from models.errors import NoEligibleModelError as NoEligibleModelError
from models.errors import StrategyUnavailableError as StrategyUnavailableError

if TYPE_CHECKING:
    from PIL.Image import Image

    from app.config import RoutingConfig
    from app.metrics import RouterMetrics
    from app.settings import Settings

Role = Literal["system", "developer", "user", "assistant", "tool"]
IMAGE_MARKER = "[image]"
ENCODED_KEY = "llm_router.encoded"  # Image.info key of the image's EncodedImage


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image as the client sent it, kept beside its decoded PIL image so a device
    decoder (nvJPEG) can start from the original bytes at full resolution."""

    format: str  # Pillow's name: JPEG, PNG, ...
    data: bytes
    size: tuple[int, int]  # original width, height


def encoded_source(image: Image) -> EncodedImage | None:
    """The original bytes the edge decoded ``image`` from, when it kept them."""
    source = image.info.get(ENCODED_KEY)
    return source if isinstance(source, EncodedImage) else None


@dataclass(frozen=True, slots=True)
class Turn:
    """One message: its role, its text (images replaced by ``[image]``) and its images."""

    role: Role
    text: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversation:
    """A validated, normalised chat conversation."""

    turns: tuple[Turn, ...]

    @property
    def images(self) -> list[Image]:
        return [img for turn in self.turns for img in turn.images]

    @property
    def has_images(self) -> bool:
        return any(turn.images for turn in self.turns)

    def user_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "user"]

    def has_previous_answer(self) -> bool:
        """Whether an assistant turn precedes the latest user turn."""
        seen_user = False
        for turn in reversed(self.turns):
            if turn.role == "user":
                seen_user = True
            elif turn.role == "assistant" and seen_user:
                return True
        return False

    def latest_user_text(self) -> str:
        """Text of the latest user turn (the intent to classify), or '' if none."""
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn.text
        return ""

    def recent_user_texts(self, n: int) -> list[str]:
        """The last ``n`` user turns' texts, newest first, skipping empty ones."""
        texts = [t.text for t in reversed(self.turns) if t.role == "user" and t.text.strip()]
        return texts[:n]

    def transcript(self, max_chars: int | None = None, roles: Sequence[str] | None = None) -> str:
        """``role: text`` lines; when over ``max_chars``, cut from the start so the latest
        turn survives."""
        lines = [f"{t.role}: {t.text}" for t in self.turns if roles is None or t.role in roles]
        text = "\n".join(lines)
        if max_chars is not None and len(text) > max_chars:
            text = text[-max_chars:]
        return text

    @classmethod
    def from_text(cls, text: str, images: Sequence[Image] = ()) -> Conversation:
        """A one-turn user conversation (CLI, tests, benchmarks)."""
        body = text
        if images:
            markers = " ".join(IMAGE_MARKER for _ in images)
            body = f"{text} {markers}".strip()
        return cls(turns=(Turn(role="user", text=body, images=tuple(images)),))


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

    def candidates(self) -> list[str]:
        """The chosen model first, then the rest of the ranking (proxy fallback order)."""
        return [self.model] + [m for m in self.ranking if m != self.model]


@dataclass(slots=True)
class StrategyContext:
    """What a strategy is built from."""

    settings: Settings
    config: RoutingConfig
    metrics: RouterMetrics
    # called with a reason when the strategy can no longer serve (e.g. its engine died)
    # and the process should exit so the orchestrator restarts it
    on_fatal: Callable[[str], None] | None = None


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
    config: RoutingConfig, conversation: Conversation, options: RouteOptions
) -> list[str]:
    """Configured models that may answer: not excluded, and vision-capable when the
    conversation carries images. Order follows the config."""
    need_vision = conversation.has_images
    return [
        m.name
        for m in config.models
        if m.name not in options.exclude_models and (m.vision or not need_vision)
    ]
