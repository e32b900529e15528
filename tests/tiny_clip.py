"""A tiny open_clip model and a small routing dataset, built locally (no model hub).

``register_tiny_clip`` writes a ~1M-parameter config (ENVIRONMENT.md), registers it with
open_clip and saves a random-weight checkpoint, so the encoder's "local checkpoint path"
loading path is exercised. ``write_dataset`` makes quality-labelled JSONL with text and
image rows. Import only where open_clip is installed (``clip``-marked tests).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.helpers import data_url, png_bytes

TINY_CLIP_NAME = "tiny-clip-llm-router"
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
MODELS = ("frontier", "coder", "chatter", "vlm")
COSTS = {"frontier": 1.0, "coder": 0.3, "chatter": 0.1, "vlm": 0.5}
CODE = ["write a python function", "fix this bug in my code", "refactor the class", "sql query"]
CHAT = ["hello there", "how are you today", "tell me a joke", "good morning friend"]


def register_tiny_clip(directory: Path) -> Path:
    """Register the tiny config with open_clip; return the path of its saved weights."""
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{TINY_CLIP_NAME}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(config)
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    weights = directory / "tiny-clip.pt"
    torch.save(model.state_dict(), weights)
    return weights


def routing_yaml(path: Path, artifact: str, models: tuple[str, ...] = MODELS, **auto: Any) -> Path:
    """A routing config for the dataset's models (vlm is the only vision model)."""
    import yaml

    data = {
        "models": [
            {"name": m, "cost": COSTS[m], "threshold": 0.5, "vision": m == "vlm"} for m in models
        ],
        "auto": {"artifact": artifact, **auto},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _row(text: str, scores: dict[str, float], image: str | None = None) -> dict[str, Any]:
    content: Any = text
    if image is not None:
        content = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": image}},
        ]
    return {
        "messages": [{"role": "user", "content": content}],
        "scores": scores,
        "costs": {m: COSTS[m] / 1000 for m in MODELS},
    }


def write_dataset(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Code prompts suit 'coder', chat suits 'chatter', image prompts suit 'vlm'; 'frontier'
    is usually right."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 3
        noise = rng.random() < 0.1
        if kind == 0:
            scores = {"frontier": 1.0, "coder": float(not noise), "chatter": 0.0, "vlm": 0.0}
            rows.append(_row(f"{rng.choice(CODE)} number {i}", scores))
        elif kind == 1:
            scores = {"frontier": 1.0, "coder": 0.0, "chatter": float(not noise), "vlm": 0.0}
            rows.append(_row(f"{rng.choice(CHAT)} {i}", scores))
        else:
            color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            image = data_url(png_bytes(16, 16, color))
            scores = {"frontier": 0.0, "coder": 0.0, "chatter": 0.0, "vlm": 1.0}
            rows.append(_row("what is in this picture?", scores, image))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
