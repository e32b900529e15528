"""Which runtime runs a sentence encoder: ONNX Runtime on CPU (the default: about 3x
faster than torch at the same weights), torch on CUDA and for training.

``ROUTER_ENCODER__RUNTIME`` (onnx | torch) reaches here as :class:`EncoderRuntime`, with
the export cache directory and the intra-op thread count the service chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from models.encoders.onnx_export import DEFAULT_ONNX_CACHE
from models.encoders.sentence import ONNX, PACKAGED, TORCH, SentenceEncoder

RuntimeName = Literal["onnx", "torch"]


class TextEncoder(Protocol):
    """What the intent backend and the MiniLM conversation encoder use of an encoder."""

    name: str
    dim: int
    max_seq_length: int
    quantization: str | None
    runtime: str

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...

    def truncate_start(self, text: str, max_tokens: int | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class EncoderRuntime:
    """``name``: onnx or torch; ``cache_dir``: where ONNX exports are kept; ``threads``:
    intra-op threads (0 = the runtime's default)."""

    name: RuntimeName = "onnx"
    cache_dir: str | Path = DEFAULT_ONNX_CACHE
    threads: int = 0

    def on(self, device: str) -> str:
        """The runtime that really runs on ``device``: ONNX Runtime is CPU-only here."""
        return ONNX if self.name == ONNX and device == "cpu" else TORCH


TORCH_RUNTIME = EncoderRuntime("torch")


def load_sentence_encoder(
    name_or_path: str = PACKAGED,
    device: str = "cpu",
    quantize: bool | str = False,
    runtime: EncoderRuntime = TORCH_RUNTIME,
) -> TextEncoder:
    """The sentence encoder ``name_or_path`` on ``runtime`` (torch off the CPU)."""
    if runtime.on(device) == ONNX:
        from models.encoders.onnx import OnnxSentenceEncoder

        return OnnxSentenceEncoder(name_or_path, quantize, runtime.cache_dir, runtime.threads)
    return SentenceEncoder(name_or_path, device, quantize)
