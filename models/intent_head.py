"""Trained intent head: a linear (softmax) classifier over sentence embeddings.

The head is fitted offline (``llm-router train-intents``) on labelled messages and the
routing config's examples; serving only needs numpy: ``softmax(x @ W.T + b)``, then
``other`` when the top probability is under the threshold chosen on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.embed_cache import DEFAULT_CACHE_DIR, embed_texts_cached, text_encoder_key

if TYPE_CHECKING:
    from models.minilm import SentenceEncoder

HEAD_CHARS, TAIL_CHARS = 300, 700  # long turns: keep the opening and the end
KIND = "intent-head"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


class IntentHeadError(RuntimeError):
    """The intent classifier artifact is missing, unreadable or does not match."""


def clip_text(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """Keep the start (the instruction) and the end (the question) of a long turn."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]} ... {text[-tail:]}" if head else text[-tail:]


def encoder_info(encoder: SentenceEncoder, quantized: bool) -> dict[str, Any]:
    """What an intent head's vectors depend on (recorded in, and checked against, its
    manifest)."""
    from models.encoders import weights_fingerprint

    return {
        "name": encoder.name,
        "dim": encoder.dim,
        "fingerprint": weights_fingerprint(encoder._model),
        "quantized": quantized,
    }


class TextEmbedder:
    """The intent backend's sentence encoder plus an on-disk cache (training/eval)."""

    def __init__(
        self,
        encoder: str = "minilm",
        device: str = "cpu",
        quantize: bool = True,
        cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
    ) -> None:
        from models.minilm import SentenceEncoder

        self.quantized = quantize and device == "cpu"
        self.encoder = SentenceEncoder(encoder, device, self.quantized)
        self.info = encoder_info(self.encoder, self.quantized)
        self.cache_dir = cache_dir
        self.key = text_encoder_key(self.encoder.name, self.info["fingerprint"], self.quantized)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        clipped = [clip_text(t) for t in texts]
        return embed_texts_cached(
            self.encoder.encode, clipped, self.key, self.encoder.dim, self.cache_dir
        )


@dataclass(slots=True)
class IntentHead:
    """Softmax regression weights over unit-length embeddings."""

    labels: list[str]
    weight: np.ndarray  # [classes, dim]
    bias: np.ndarray  # [classes]
    threshold: float = 0.0  # top probability below this -> other

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(self, x: np.ndarray, other: str = "other") -> list[str]:
        """Top label per row, or ``other`` when its probability is under the threshold."""
        probs = self.probabilities(x)
        top = probs.argmax(axis=1)
        return [
            other if p[j] < self.threshold else self.labels[j]
            for p, j in zip(probs, top, strict=True)
        ]


def save_head(out: Path, head: IntentHead, manifest: dict[str, Any]) -> Path:
    """Write ``weights.safetensors`` and ``manifest.json`` (labels, threshold, encoder,
    metrics) into ``out``."""
    import json

    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": head.weight.astype(np.float32), "bias": head.bias.astype(np.float32)}
    save_file(tensors, str(out / WEIGHTS))
    (out / WEIGHTS).chmod(0o644)
    data = {"kind": KIND, **manifest, "labels": head.labels, "threshold": head.threshold}
    (out / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def load_head(path: Path) -> tuple[IntentHead, dict[str, Any]]:
    """The head and manifest of a ``train-intents`` artifact; IntentHeadError when absent,
    unreadable or inconsistent."""
    import json

    from safetensors.numpy import load_file

    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        tensors = load_file(str(path / WEIGHTS))
        head = IntentHead(
            labels=[str(x) for x in manifest["labels"]],
            weight=tensors["weight"],
            bias=tensors["bias"],
            threshold=float(manifest["threshold"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntentHeadError(f"cannot read intent classifier '{path}': {exc}") from None
    shape_ok = head.weight.ndim == 2 and head.weight.shape[0] == len(head.labels) == head.bias.size
    if manifest.get("kind") != KIND or not shape_ok:
        raise IntentHeadError(f"'{path}' is not a consistent {KIND} artifact")
    return head, manifest


def check_head_encoder(manifest: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    """Refuse a head trained on another encoder's vectors (name, dim, weights, int8)."""
    want = manifest.get("encoder", {})
    for key in ("name", "dim", "fingerprint", "quantized"):
        if want.get(key) != info.get(key):
            raise IntentHeadError(
                f"intent classifier '{path}' was trained with encoder {key}={want.get(key)!r} "
                f"but the running encoder has {key}={info.get(key)!r} (check "
                "ROUTER_INTENT__ENCODER / ROUTER_INTENT__QUANTIZE, or retrain with "
                "llm-router train-intents)"
            )
