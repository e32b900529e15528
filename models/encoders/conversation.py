"""Conversation encoders for the auto strategy, behind one small interface.

* ``minilm``: the packaged all-MiniLM-L6-v2 (text only, 384-dim), for CPU/offline use.
* ``open_clip:<model>``: CLIP text and image towers; the vector is ``[text | image]``
  (image part zeros without images, several images averaged).

Both embed the conversation transcript cut from the *start*, token-exact, so the latest
turn survives the encoder's context. ``embed`` is blocking and batched: call it from an
encoder thread (MicroBatcher). torch and open_clip are imported lazily.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from models.encoders.runtime import TORCH_RUNTIME, EncoderRuntime, load_sentence_encoder
from models.encoders.sentence import (
    MAX_CHARS_PER_TOKEN,
    PACKAGED,
    EncoderLoadError,
    weights_fingerprint,
)

if TYPE_CHECKING:
    from models.core.conversation import Conversation

log = logging.getLogger(__name__)

OPEN_CLIP_PREFIX = "open_clip:"
MINILM = "minilm"
# Bump when the text/image preprocessing changes: cached embeddings are keyed by it.
# 3: images preprocessed as tensors (models/encoders/clip_pixels.py) instead of open_clip's PIL.
PREPROCESSING_VERSION = 3


class Encoder(Protocol):
    """Turns conversations into fixed-size float32 vectors."""

    name: str  # e.g. "minilm", "open_clip:ViT-B-32"
    version: str  # weights identity: package model name, pretrained tag or checkpoint file
    dim: int
    fingerprint: str  # short hash of some weights: catches "same name, other weights"
    supports_images: bool

    def embed(self, conversations: Sequence[Conversation]) -> np.ndarray:
        """Blocking, batched: an array of shape [len(conversations), dim]."""
        ...


def conversation_text(conversation: Conversation) -> str:
    """What text encoders see: the ``role: text`` transcript (images as markers)."""
    return conversation.transcript()


class MiniLMEncoder:
    """Text-only sentence embeddings from the packaged all-MiniLM-L6-v2 (full precision,
    as the router artifacts were trained; ONNX Runtime on CPU unless ``runtime`` says
    torch: the same vectors to ~1e-7)."""

    supports_images = False

    def __init__(
        self,
        device: str = "cpu",
        max_tokens: int | None = None,
        runtime: EncoderRuntime = TORCH_RUNTIME,
    ) -> None:
        self._encoder = load_sentence_encoder(PACKAGED, device, False, runtime)
        self.name = MINILM
        self.version = self._encoder.name
        self.dim = self._encoder.dim
        self.runtime = self._encoder.runtime
        budget = self._encoder.max_seq_length - 2  # [CLS] and [SEP]
        self.max_tokens = min(max_tokens or budget, budget)
        self.fingerprint = self._encoder.fingerprint

    def _truncate(self, text: str) -> str:
        return self._encoder.truncate_start(text, self.max_tokens)

    def embed(self, conversations: Sequence[Conversation]) -> np.ndarray:
        texts = [self._truncate(conversation_text(c)) for c in conversations]
        return self._encoder.encode(texts)


class OpenClipEncoder:
    """open_clip text + image towers; vector = [text | image], each L2-normalised."""

    supports_images = True

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        device: str = "cpu",
        max_tokens: int | None = None,
        autocast: str = "bf16",
        device_images: bool = True,
        cuda_graphs: bool = True,
        graph_batch: int = 32,
    ) -> None:
        try:
            import open_clip
            import torch

            from models.encoders.clip_pixels import PixelSpec
        except ImportError as exc:
            raise EncoderLoadError(
                "open_clip is not installed: pip install 'llm-router[clip]' "
                "(needs torch + torchvision)"
            ) from exc
        self._torch = torch
        self.name = f"{OPEN_CLIP_PREFIX}{model_name}"
        self.version = _pretrained_version(pretrained)
        model, preprocess = _create_open_clip(open_clip, torch, model_name, pretrained, device)
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._device = device
        # tensor preprocessing (on the device) unless the model needs an exotic transform
        self._pixel_spec = PixelSpec.from_model(model) if device_images else None
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        on_cuda = device.startswith("cuda")
        self._autocast_dtype = dtypes.get(autocast) if on_cuda else None
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.context_length = int(getattr(self._tokenizer, "context_length", 77))
        budget = self.context_length - 2  # start and end tokens
        self.max_tokens = min(max_tokens or budget, budget)
        self.embed_dim = self._probe_dim()
        self.dim = 2 * self.embed_dim
        self.fingerprint = weights_fingerprint(model)
        self._encode_text: Any = model.encode_text
        self._encode_image: Any = model.encode_image
        self.cuda_graphs = False
        if on_cuda and cuda_graphs:
            self._capture_graphs(graph_batch)

    def _capture_graphs(self, largest: int) -> None:
        """Replay both towers from CUDA graphs (models/encoders/cuda_graphs.py); on any capture
        failure keep the eager towers and say so once in the log."""
        from models.encoders.cuda_graphs import GraphedTower, buckets_up_to

        torch = self._torch
        graph = functools.partial(
            GraphedTower,
            device=self._device,
            buckets=buckets_up_to(largest),
            autocast_dtype=self._autocast_dtype,
        )
        try:
            text = graph(self._model.encode_text, (self.context_length,), torch.long)
            image = None
            if self._pixel_spec is not None:
                size = self._pixel_spec.size
                image = graph(self._model.encode_image, (3, size, size), torch.float32)
        except Exception as exc:  # an op that cannot be captured: eager is still correct
            log.warning("CUDA graph capture failed for %s, running eagerly: %s", self.name, exc)
            return
        self._encode_text = text
        if image is not None:
            self._encode_image = image
        self.cuda_graphs = True

    def _probe_dim(self) -> int:
        with self._torch.inference_mode():
            return int(self._model.encode_text(self._tokens([""])).shape[-1])

    def _tokens(self, texts: list[str]) -> Any:
        """Token ids [n, context_length], each text cut from the start to fit."""
        tok = self._tokenizer
        if not hasattr(tok, "encode") or not hasattr(tok, "sot_token_id"):
            return tok([t[-4 * self.max_tokens :] for t in texts]).to(self._device)
        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, text in enumerate(texts):
            tail = tok.encode(text[-self.max_tokens * MAX_CHARS_PER_TOKEN :])[-self.max_tokens :]
            rows[i, : len(tail) + 2] = [tok.sot_token_id, *tail, tok.eot_token_id]
        tokens = self._torch.from_numpy(rows)  # the batch leaves for the device in one copy
        if self._device.startswith("cuda"):
            tokens = tokens.pin_memory()
        return tokens.to(self._device, non_blocking=True)

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(device_type="cuda", dtype=self._autocast_dtype)

    def _pixels(self, images: list[Any]) -> Any:
        """The vision tower's input for these images, on the device."""
        if self._pixel_spec is None:  # open_clip's own PIL transform, then one copy
            pixels = self._torch.stack([self._preprocess(img.convert("RGB")) for img in images])
            return pixels.to(self._device)
        from models.encoders.clip_pixels import image_batch

        return image_batch(images, self._pixel_spec, self._device)

    def _normalise(self, x: Any) -> Any:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def embed_tensor(self, conversations: Sequence[Conversation]) -> Any:
        """Like :meth:`embed`, as a float32 tensor left on the device (for the MLP)."""
        torch = self._torch
        out = torch.zeros((len(conversations), self.dim), device=self._device)
        if not conversations:
            return out
        owned = [(i, img) for i, c in enumerate(conversations) for img in c.images]
        with torch.inference_mode(), self._autocast():
            # pixels first: the device JPEG decoder wants an idle stream (clip_pixels)
            pixels = self._pixels([img for _, img in owned]) if owned else None
            tokens = self._tokens([conversation_text(c) for c in conversations])
            out[:, : self.embed_dim] = self._normalise(self._encode_text(tokens).float())
            if pixels is not None:
                image = self._normalise(self._encode_image(pixels).float())
                owners = torch.tensor([i for i, _ in owned], device=self._device)
                sums = torch.zeros((len(conversations), self.embed_dim), device=self._device)
                sums.index_add_(0, owners, image)
                counts = torch.bincount(owners, minlength=len(conversations)).clamp_min(1)
                out[:, self.embed_dim :] = sums / counts.unsqueeze(1)  # mean of each one's
        return out

    def embed(self, conversations: Sequence[Conversation]) -> np.ndarray:
        return np.asarray(self.embed_tensor(conversations).cpu().numpy(), dtype=np.float32)


def _pretrained_version(pretrained: str | None) -> str:
    if pretrained is None:
        return "random"
    path = Path(pretrained).expanduser()
    return path.name if path.exists() else pretrained


def _create_open_clip(
    open_clip: Any, torch: Any, model_name: str, pretrained: str | None, device: str
) -> tuple[Any, Any]:
    """Build the model; random weights are seeded so every process gets the same ones."""
    if model_name not in open_clip.list_models():
        raise EncoderLoadError(
            f"unknown open_clip model '{model_name}' (e.g. ViT-B-32; see open_clip.list_models())"
        )
    source = pretrained
    if pretrained is not None and Path(pretrained).expanduser().exists():
        source = str(Path(pretrained).expanduser())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=source, device=device
            )
    except Exception as exc:  # surfaced as a clear startup error
        where = f"pretrained '{pretrained}'" if pretrained else "random weights"
        raise EncoderLoadError(
            f"cannot load open_clip model '{model_name}' with {where}: {exc}. A pretrained tag "
            "needs the weights in the open_clip cache (no model hub here); a local "
            "checkpoint path must exist"
        ) from exc
    return model, preprocess


def build_encoder(
    name: str,
    pretrained: str | None = None,
    device: str = "cpu",
    max_tokens: int | None = None,
    autocast: str = "off",
    device_images: bool = True,
    cuda_graphs: bool = False,
    graph_batch: int = 32,
    runtime: EncoderRuntime = TORCH_RUNTIME,
) -> Encoder:
    """The encoder named by ``ROUTER_AUTO__ENCODER`` ('minilm' or 'open_clip:<model>');
    ``runtime`` runs MiniLM (open_clip always runs on torch)."""
    if name == MINILM:
        return MiniLMEncoder(device=device, max_tokens=max_tokens, runtime=runtime)
    if name.startswith(OPEN_CLIP_PREFIX) and len(name) > len(OPEN_CLIP_PREFIX):
        return OpenClipEncoder(
            name[len(OPEN_CLIP_PREFIX) :],
            pretrained,
            device=device,
            max_tokens=max_tokens,
            autocast=autocast,
            device_images=device_images,
            cuda_graphs=cuda_graphs,
            graph_batch=graph_batch,
        )
    raise EncoderLoadError(
        f"unknown encoder '{name}' (ROUTER_AUTO__ENCODER: 'minilm' or 'open_clip:<model>', "
        "e.g. open_clip:ViT-B-32)"
    )
