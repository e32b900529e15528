"""Normalise a validated chat request into a typed :class:`Conversation`, once, at the edge.

Strategies see text and images; other content parts (audio, files) appear as a
``[type]`` marker, and the legacy ``function`` role as ``tool``. Proxy mode forwards the
original JSON, so none of this changes what the upstream receives.

Limits are checked before any work is spent: message count, image count (before
decoding), image bytes and pixels. Images are fetched and decoded by
:class:`app.images.loader.ImageLoader`, off the event loop and under a memory budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL.Image import Image

from app.api.schemas import ChatCompletionRequest, ImagePart, Message, TextPart
from app.images.fetch import ImageRef
from app.images.loader import ImageLoader
from app.settings import Settings
from models.core.conversation import IMAGE_MARKER, Conversation, Turn
from models.core.errors import BadRequestError


@dataclass(slots=True)
class _PendingImage:
    message: int
    part: int
    url: str

    @property
    def ref(self) -> ImageRef:
        return ImageRef(self.url, f"messages.{self.message}.content.{self.part}.image_url")


def _text_and_images(message: Message, index: int) -> tuple[list[str], list[_PendingImage]]:
    content = message.content
    if content is None:
        return [], []
    if isinstance(content, str):
        return [content], []
    pieces: list[str] = []
    images: list[_PendingImage] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ImagePart):
            pieces.append(IMAGE_MARKER)
            images.append(_PendingImage(index, j, part.image_url.url))
        elif part.refusal is not None:
            pieces.append(part.refusal)
        else:  # audio, files, future part types: not analysed, only marked (like images)
            pieces.append(f"[{part.type}]")
    return pieces, images


async def normalise(
    request: ChatCompletionRequest,
    settings: Settings,
    loader: ImageLoader | None = None,
) -> Conversation:
    """Build the Conversation a strategy routes, or raise a 4xx domain error.

    ``loader`` is the app's shared image pipeline; without one (CLI, evaluation) a
    private one is made for this call."""
    limits = settings.limits
    if len(request.messages) > limits.max_messages:
        raise BadRequestError(
            f"too many messages ({len(request.messages)}); the limit is {limits.max_messages}",
            param="messages",
        )
    texts: list[list[str]] = []
    pending: list[_PendingImage] = []
    for i, message in enumerate(request.messages):
        pieces, images = _text_and_images(message, i)
        texts.append(pieces)
        pending.extend(images)
    if len(pending) > limits.max_images:
        raise BadRequestError(
            f"too many images ({len(pending)}); the limit is {limits.max_images}",
            param="messages",
            code="too_many_images",
        )
    if not any(m.role == "user" for m in request.messages):
        raise BadRequestError("messages must include a user message", param="messages")
    if not pending and not any(p.strip() for pieces in texts for p in pieces):
        raise BadRequestError("messages contain no text and no images", param="messages")
    refs = [p.ref for p in pending]
    if loader is not None:
        decoded = await loader.load(refs)
    elif refs:
        own = ImageLoader(settings)
        try:
            decoded = await own.load(refs)
        finally:
            await own.aclose()
    else:
        decoded = []
    by_message: dict[int, list[Image]] = {}
    for item, img in zip(pending, decoded, strict=True):
        by_message.setdefault(item.message, []).append(img)
    turns = tuple(
        Turn(
            role="tool" if message.role == "function" else message.role,
            text=" ".join(p for p in texts[i] if p),
            images=tuple(by_message.get(i, ())),
        )
        for i, message in enumerate(request.messages)
    )
    return Conversation(turns=turns)
