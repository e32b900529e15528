"""The body a model that cannot see images receives: each ``image_url`` part replaced by
a text part carrying the marker (``ROUTER_PROXY__IMAGE_MARKER``), nothing else changed.

Used in proxy mode when a text-only model answers a conversation whose earlier turns
hold images (the strategies never choose one for a latest turn that holds or asks about
an image), and on every fallback to such a model: a text-only upstream never receives
an image part.
"""

from __future__ import annotations

from typing import Any

IMAGE_PART = "image_url"


def omit_images(body: dict[str, Any], marker: str) -> tuple[dict[str, Any], int]:
    """A copy of ``body`` with every image part of every message replaced by
    ``{"type": "text", "text": marker}``, and how many were replaced. Messages without
    image parts are shared with ``body``, not copied; with none at all, ``body`` itself."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body, 0
    replaced = 0
    out: list[Any] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list) or not any(_is_image(p) for p in content):
            out.append(message)
            continue
        parts = []
        for part in content:
            if _is_image(part):
                parts.append({"type": "text", "text": marker})
                replaced += 1
            else:
                parts.append(part)
        out.append({**message, "content": parts})
    if not replaced:
        return body, 0
    return {**body, "messages": out}, replaced


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == IMAGE_PART
