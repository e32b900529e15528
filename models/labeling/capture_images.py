"""Images in captured rows: each stored once under ``images/<sha256>.<ext>``, the row
keeping a relative reference instead of the base64 data (or dropped altogether), and put
back as data URLs when ``collect`` reads a capture file (so the conversation can be sent
upstream again, and trained on)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from pathlib import Path
from typing import Any

DATA_URL = re.compile(r"^data:(?P<mime>image/[\w.+-]+)?(?:;[\w=-]+)*;base64,", re.I)
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp",
              "image/gif": "gif"}  # fmt: skip
MIME_OF = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
REF = re.compile(r"^images/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z]{2,5})$")
DROPPED = "[image not captured]"


def _store(url: str, images_dir: Path) -> str:
    """The relative reference for a data URL's image, written once (by content hash)."""
    match = DATA_URL.match(url)
    if match is None:
        return url  # an http(s) URL stays as it was sent
    try:
        data = base64.b64decode(url[match.end() :], validate=False)
    except (binascii.Error, ValueError):
        return url
    digest = hashlib.sha256(data).hexdigest()
    ext = EXTENSIONS.get((match.group("mime") or "").lower(), "bin")
    name = f"{digest}.{ext}"
    path = images_dir / name
    if not path.exists():
        tmp = images_dir / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # another worker writing the same image wins harmlessly
    return f"images/{name}"


def store_images(messages: list[Any], images_dir: Path | None) -> list[Any]:
    """``messages`` with every image part's URL replaced by its stored reference, or
    (``images_dir`` None: ``ROUTER_CAPTURE__IMAGES=drop``) the part replaced by a text
    marker. Changes ``messages`` in place (it is the capture's own copy) and returns it."""
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(image, dict) or not isinstance(url, str):
                continue
            if images_dir is None:
                content[i] = {"type": "text", "text": DROPPED}
            else:
                image["url"] = _store(url, images_dir)
    return messages


def inline_images(messages: list[Any], capture_dir: Path) -> list[Any]:
    """A captured conversation made sendable again: each ``images/<sha256>.<ext>``
    reference read back from ``capture_dir`` as a data URL (a missing file stays a
    reference, which the upstream will reject: collect records that error)."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for part in content:
            image = part.get("image_url") if isinstance(part, dict) else None
            url = image.get("url") if isinstance(image, dict) else None
            match = REF.match(url) if isinstance(url, str) else None
            if match is not None and isinstance(image, dict):
                path = capture_dir / match.group(0)
                if path.is_file():
                    mime = MIME_OF.get(match.group("ext"), "application/octet-stream")
                    encoded = base64.b64encode(path.read_bytes()).decode()
                    url = f"data:{mime};base64,{encoded}"
                    part = {**part, "image_url": {**image, "url": url}}
            parts.append(part)
        out.append({**message, "content": parts})
    return out
