"""Trained intent head: a linear (softmax) classifier over sentence embeddings and,
optionally, lexical features of the same text (TF-IDF word and character n-grams,
``models.intents.features``).

The head is fitted offline (``llm-router train-intents``) on labelled messages and the
routing config's examples; serving only needs numpy:
``softmax(x @ W.T + lexical(text) @ W_lex + b)``, then ``other`` when the top probability
is under the threshold chosen on validation. Heads written before lexical features
existed (no ``features.lexical`` in the manifest) load and score as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.encoders.cache import DEFAULT_CACHE_DIR, embed_texts_cached, text_encoder_key
from models.intents.features import LexicalFeatures

if TYPE_CHECKING:
    from models.encoders.runtime import EncoderRuntime, TextEncoder

HEAD_CHARS, TAIL_CHARS = 300, 700  # long turns: keep the opening and the end
KIND = "intent-head"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
VOCABULARY = "vocabulary.json"  # lexical n-grams, in feature-index order


class IntentHeadError(RuntimeError):
    """The intent classifier artifact is missing, unreadable or does not match."""


def clip_text(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """Keep the start (the instruction) and the end (the question) of a long turn."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]} ... {text[-tail:]}" if head else text[-tail:]


def encoder_identity(encoder: TextEncoder) -> dict[str, Any]:
    """What an intent head's vectors depend on (recorded in, and checked against, its
    manifest). ``quantized`` is the int8 scheme, or false for full precision;
    ``runtime`` (onnx, torch) matters for int8 only: fp32 vectors agree to ~1e-7."""
    return {
        "name": encoder.name,
        "dim": encoder.dim,
        "fingerprint": encoder.fingerprint,
        "quantized": encoder.quantization or False,
        "runtime": encoder.runtime,
    }


class TextEmbedder:
    """The intent backend's sentence encoder plus an on-disk cache (training/eval).
    ``quantize``: False, True (the default int8 scheme) or a scheme name; CPU only.
    ``runtime``: as the service runs it (default: torch)."""

    def __init__(
        self,
        encoder: str = "minilm",
        device: str = "cpu",
        quantize: bool | str = True,
        cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
        runtime: EncoderRuntime | None = None,
    ) -> None:
        from models.encoders.runtime import TORCH_RUNTIME, load_sentence_encoder

        self.encoder = load_sentence_encoder(
            encoder, device, quantize if device == "cpu" else False, runtime or TORCH_RUNTIME
        )
        self.quantized = self.encoder.quantization
        self.info = encoder_identity(self.encoder)
        self.cache_dir = cache_dir
        self.key = text_encoder_key(
            self.encoder.name, self.info["fingerprint"], self.quantized, self.encoder.runtime
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        clipped = [clip_text(t) for t in texts]
        return embed_texts_cached(
            self.encoder.encode, clipped, self.key, self.encoder.dim, self.cache_dir
        )


@dataclass(slots=True)
class IntentHead:
    """Softmax regression over unit-length embeddings, plus lexical features of the text
    when ``lexical`` is set (then every scoring call needs the texts)."""

    labels: list[str]
    weight: np.ndarray  # [classes, dim]
    bias: np.ndarray  # [classes]
    threshold: float = 0.0  # top probability below this -> other
    lexical: LexicalFeatures | None = None
    lexical_weight: np.ndarray | None = None  # [n_features, classes]

    def logits(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class scores for embeddings ``x`` [n, dim] of ``texts`` (needed, and must be
        the embedded texts, when the head has lexical features)."""
        out = x @ self.weight.T + self.bias
        if self.lexical is not None and self.lexical_weight is not None:
            if texts is None or len(texts) != len(x):
                raise ValueError("this intent head scores the texts too: pass one per vector")
            out = out + self.lexical.transform(texts).matmul(self.lexical_weight)
        return out  # type: ignore[no-any-return]

    def probabilities(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        logits = self.logits(x, texts)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(
        self, x: np.ndarray, texts: Sequence[str] | None = None, other: str = "other"
    ) -> list[str]:
        """Top label per row, or ``other`` when its probability is under the threshold."""
        probs = self.probabilities(x, texts)
        top = probs.argmax(axis=1)
        return [
            other if p[j] < self.threshold else self.labels[j]
            for p, j in zip(probs, top, strict=True)
        ]


def save_head(out: Path, head: IntentHead, manifest: dict[str, Any]) -> Path:
    """Write ``weights.safetensors`` and ``manifest.json`` (labels, threshold, encoder,
    features, metrics) into ``out``, plus ``vocabulary.json`` for a lexical head."""
    import json

    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": head.weight.astype(np.float32), "bias": head.bias.astype(np.float32)}
    features: dict[str, Any] = {"embedding": int(head.weight.shape[1]), "lexical": None}
    if head.lexical is not None and head.lexical_weight is not None:
        tensors["lexical_weight"] = head.lexical_weight.astype(np.float32)
        tensors["lexical_idf"] = head.lexical.idf.astype(np.float32)
        features["lexical"] = head.lexical.state()
        vocab = sorted(head.lexical.vocabulary, key=head.lexical.vocabulary.__getitem__)
        (out / VOCABULARY).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (out / VOCABULARY).chmod(0o644)
    save_file(tensors, str(out / WEIGHTS))
    (out / WEIGHTS).chmod(0o644)
    data = {
        "kind": KIND,
        **manifest,
        "features": features,
        "labels": head.labels,
        "threshold": head.threshold,
    }
    (out / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def _load_lexical(
    path: Path, state: dict[str, Any], tensors: dict[str, np.ndarray]
) -> tuple[LexicalFeatures, np.ndarray]:
    import json

    vocab = json.loads((path / VOCABULARY).read_text(encoding="utf-8"))
    lexical = LexicalFeatures(
        vocabulary={str(g): i for i, g in enumerate(vocab)},
        idf=tensors["lexical_idf"],
        word_weight=float(state["word_weight"]),
        char_weight=float(state["char_weight"]),
    )
    return lexical, tensors["lexical_weight"]


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
        state = (manifest.get("features") or {}).get("lexical")
        if state:
            head.lexical, head.lexical_weight = _load_lexical(path, state, tensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntentHeadError(f"cannot read intent classifier '{path}': {exc}") from None
    shape_ok = head.weight.ndim == 2 and head.weight.shape[0] == len(head.labels) == head.bias.size
    if head.lexical is not None and head.lexical_weight is not None:
        n = head.lexical.n_features
        shape_ok = shape_ok and head.lexical_weight.shape == (n, len(head.labels))
        shape_ok = shape_ok and head.lexical.idf.shape == (n,)
    if manifest.get("kind") != KIND or not shape_ok:
        raise IntentHeadError(f"'{path}' is not a consistent {KIND} artifact")
    return head, manifest


def bundled_encoder(path: Path, manifest: dict[str, Any]) -> Path | None:
    """The fine-tuned sentence encoder saved inside the head's directory
    (``train-intents --fine-tune``), or None when the head uses the configured encoder."""
    encoder = manifest.get("encoder")
    relative = encoder.get("path") if isinstance(encoder, dict) else None
    if not relative:
        return None
    where = (path / str(relative)).resolve()
    if not where.is_relative_to(path.resolve()) or not where.is_dir():
        raise IntentHeadError(
            f"intent classifier '{path}' names a fine-tuned encoder at '{relative}', "
            "which is not a directory inside it"
        )
    return where


def check_head_encoder(manifest: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    """Refuse a head trained on another encoder's vectors (name, dim, weights, int8, and
    for int8 the runtime: torch's and ONNX Runtime's int8 kernels round differently)."""
    want = manifest.get("encoder", {})
    for key in ("name", "dim", "fingerprint", "quantized", "runtime"):
        have = info.get(key)
        same = want.get(key) == have
        if key == "quantized":
            same = _scheme(want.get(key), path) == _scheme(have, path)
        if key == "runtime":  # identities from before the ONNX runtime: torch
            have = have or "torch"
            same = not _scheme(want.get("quantized"), path) or head_runtime(manifest) == have
        if not same:
            trained = head_runtime(manifest) if key == "runtime" else want.get(key)
            raise IntentHeadError(
                f"intent classifier '{path}' was trained with encoder {key}={trained!r} "
                f"but the running encoder has {key}={have!r} (check "
                "ROUTER_INTENT__ENCODER / ROUTER_INTENT__QUANTIZE / ROUTER_ENCODER__RUNTIME, "
                "or retrain with llm-router train-intents)"
            )


def head_runtime(manifest: dict[str, Any]) -> str:
    """The runtime a head's vectors came from: recorded, else torch (heads written before
    the ONNX runtime)."""
    return str((manifest.get("encoder") or {}).get("runtime") or "torch")


def _scheme(value: object, path: Path) -> str | None:
    from models.encoders.sentence import recorded_quantization

    try:
        return recorded_quantization(value)
    except ValueError as exc:
        raise IntentHeadError(f"intent classifier '{path}': {exc}") from None


def head_quantization(manifest: dict[str, Any], quantize: bool, path: Path) -> str | None:
    """The int8 scheme to run the encoder with for this head when the service quantizes:
    the one the head was trained with (heads from before per-channel int8 keep
    per-tensor); None when the service does not quantize."""
    from models.encoders.sentence import DEFAULT_INT8

    if not quantize:
        return None
    return _scheme((manifest.get("encoder") or {}).get("quantized"), path) or DEFAULT_INT8


def serving_runtime(manifest: dict[str, Any], configured: str, quantize: bool, path: Path) -> str:
    """The runtime to serve a head with: for an int8 head, the one it was trained on
    (heads from before the ONNX runtime keep torch), as the int8 scheme follows the head;
    else the configured one (fp32 vectors agree across runtimes)."""
    if quantize and _scheme((manifest.get("encoder") or {}).get("quantized"), path):
        return head_runtime(manifest)
    return configured
