"""Benchmark request bodies: short text, a long multi-turn conversation (>= 4k tokens),
one 512x512 JPEG, four 1024x768 JPEGs. Built deterministically, no files needed."""

from __future__ import annotations

import base64
import io
import json
from functools import cache
from typing import Any


@cache
def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A photo-like JPEG (gradient + noise, so it compresses like a real photo)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [(x * 255 // width), (y * 255 // height), ((x + y) * 127 // (width + height))], -1
    )
    noisy = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _image_part(data: bytes) -> dict[str, Any]:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def short_text() -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Can you explain how binary search works?"}]


def long_conversation(min_tokens: int = 4000) -> list[dict[str, Any]]:
    """Alternating turns about a codebase until ~min_tokens (about 4 characters a token)."""
    paragraph = (
        "Here is the next part of the service's request handler; it parses the "
        "body, validates the messages, decodes images and calls the strategy. "
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a code reviewer."}]
    i = 0
    while sum(len(m["content"]) for m in messages) < min_tokens * 4:
        messages.append({"role": "user", "content": f"Part {i}: " + paragraph * 8})
        messages.append({"role": "assistant", "content": "Noted. " + paragraph * 4})
        i += 1
    messages.append({"role": "user", "content": "Given all of that, where is the race condition?"})
    return messages


def one_image() -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this photo?"},
                _image_part(jpeg(512, 512)),
            ],
        }
    ]


def four_images() -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Compare these four photos."}]
    parts += [_image_part(jpeg(1024, 768, seed)) for seed in range(4)]
    return [{"role": "user", "content": parts}]


LENGTHS = (250, 1000, 4000, 16000)  # approximate prompt tokens, for latency vs length


def conversation_of_length(tokens: int) -> list[dict[str, Any]]:
    return long_conversation(min_tokens=tokens)


WORKLOADS = {
    "short_text": short_text,
    "long_conversation": long_conversation,
    "one_image_512": one_image,
    "four_images_1024x768": four_images,
}


def body(name: str) -> bytes:
    """Request body for a named workload, or ``conversation_<N>`` (about N tokens)."""
    if name.startswith("conversation_"):
        messages = conversation_of_length(int(name.removeprefix("conversation_")))
    else:
        messages = WORKLOADS[name]()
    return json.dumps({"model": "router", "messages": messages}).encode()
