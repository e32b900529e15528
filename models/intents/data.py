"""Labelled intent rows: ``{"text": ...}`` or ``{"messages": [...]}`` plus ``"intent"``.

The text of a ``messages`` row is its latest user turn as the service sees it (text
parts joined, each image replaced by ``[image]``). A missing or empty intent means
out-of-scope (``other``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from models.core.routing_config import OTHER_INTENT

IMAGE_MARKER = "[image]"


class IntentDataError(ValueError):
    """A labelled intent file is unreadable or a row is malformed (message names the line)."""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    pieces = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            pieces.append(IMAGE_MARKER)
    return " ".join(p for p in pieces if p)


def row_text(row: dict[str, Any]) -> str:
    """The text to classify: ``text``, else the latest user message's text."""
    if isinstance(row.get("text"), str):
        return str(row["text"])
    messages = row.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
    return ""


def read_intent_rows(path: Path) -> tuple[list[str], list[str]]:
    """(texts, intents) of a JSONL file; raises IntentDataError naming the bad line."""
    texts: list[str] = []
    intents: list[str] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise IntentDataError(f"cannot read {path}: {exc.strerror}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise IntentDataError(f"{path}:{lineno}: not valid JSON") from None
        if not isinstance(row, dict):
            raise IntentDataError(f"{path}:{lineno}: expected a JSON object")
        text = row_text(row).strip()
        if not text:
            raise IntentDataError(f"{path}:{lineno}: needs 'text' or 'messages' with a user turn")
        intent = row.get("intent")
        if intent is not None and not isinstance(intent, str):
            raise IntentDataError(f"{path}:{lineno}: 'intent' must be a string")
        texts.append(text)
        intents.append(intent.strip() if intent and intent.strip() else OTHER_INTENT)
    return texts, intents
