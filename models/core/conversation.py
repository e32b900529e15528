"""A validated, normalised chat conversation: what every layer routes on.

The HTTP edge (``app.api.intake``) builds it once from the request; strategies, encoders,
training and evaluation read it. Nothing below the edge sees raw request dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL.Image import Image

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

    def latest_user_index(self) -> int | None:
        """Index of the latest user turn, or None when there is none."""
        for i in range(len(self.turns) - 1, -1, -1):
            if self.turns[i].role == "user":
                return i
        return None

    @property
    def latest_images(self) -> list[Image]:
        """Images of the latest turn: the latest user message and anything after it (tool
        output); what the answer to this turn has to see."""
        start = self.latest_user_index()
        turns = self.turns if start is None else self.turns[start:]
        return [img for turn in turns for img in turn.images]

    @property
    def earlier_images(self) -> list[Image]:
        """Images of the turns before the latest user message (context, not the request)."""
        start = self.latest_user_index()
        turns = () if start is None else self.turns[:start]
        return [img for turn in turns for img in turn.images]

    def without_images(self) -> Conversation:
        """The same turns without their pixels (the ``[image]`` markers stay in the text):
        the conversation as a text-only model receives it."""
        if not self.has_images:
            return self
        return Conversation(turns=tuple(Turn(t.role, t.text) for t in self.turns))

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
