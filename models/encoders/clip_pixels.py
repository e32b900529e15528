"""CLIP image preprocessing on tensors: the same steps as open_clip's PIL transform (resize
the shortest side, bicubic with antialiasing, centre crop, scale to [0, 1], normalise with
the model's mean/std), run on a batch of uint8 tensors on the encoder's device.

On CUDA, JPEGs are decoded there too, in one batched nvJPEG call
(``torchvision.io.decode_jpeg(list, device="cuda")``), so an image costs the CPU little
more than its base64 decode. Other formats, and every image on a CPU device, come from the
PIL image the edge already decoded; they go through the same tensor function, which is
how CPU tests check it against open_clip's own transform. torch/torchvision are imported
lazily (only the open_clip encoder uses this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from models.core.conversation import EncodedImage

# Full-resolution decode on the device costs width * height * 3 bytes of GPU memory per
# image; larger JPEGs (rare) take the edge's reduced PIL decode instead.
DEVICE_DECODE_MAX_PIXELS = 16_000_000
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class PixelSpec:
    """What the vision tower expects: from open_clip's ``visual.preprocess_cfg``."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_model(cls, model: Any) -> PixelSpec | None:
        """The model's spec, or None when its preprocessing is one this module cannot
        reproduce (then the encoder keeps open_clip's PIL transform)."""
        cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None)
        if not cfg:
            return None
        size = cfg.get("size", 224)
        if isinstance(size, (tuple, list)):
            if len(set(size)) != 1:
                return None
            size = size[0]
        mode = cfg.get("resize_mode", "shortest")
        interpolation = cfg.get("interpolation", "bicubic")
        if mode not in RESIZE_MODES or interpolation not in ("bicubic", "bilinear"):
            return None
        return cls(
            size=int(size),
            mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
            interpolation=interpolation,
            resize_mode=mode,
        )


def pil_to_uint8(image: Image) -> Any:
    """An RGB PIL image as a uint8 [3, H, W] CPU tensor."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def to_pixels(images: Sequence[Any], spec: PixelSpec, device: str) -> Any:
    """uint8 [3, H, W] tensors (any sizes, any device) -> float [N, 3, S, S] on ``device``.

    Images of one size are resized together; each group is one resize and one crop."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    mode = InterpolationMode(spec.interpolation)
    size = [spec.size] if spec.resize_mode == "shortest" else [spec.size, spec.size]
    out = torch.empty((len(images), 3, spec.size, spec.size), dtype=torch.uint8, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault((int(img.shape[-2]), int(img.shape[-1])), []).append(i)
    for indices in groups.values():
        batch = torch.stack([images[i].to(device, non_blocking=True) for i in indices])
        batch = F.resize(batch, size, interpolation=mode, antialias=True)
        out[indices] = F.center_crop(batch, [spec.size, spec.size])
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    return out.float().div_(255.0).sub_(mean).div_(std)


def decode_jpegs(sources: Sequence[EncodedImage], device: str) -> list[Any | None]:
    """JPEG bytes -> uint8 [3, H, W] tensors decoded on ``device`` in one batched call;
    None for any image the device decoder refuses (the caller falls back to PIL)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if not sources:
        return []
    data = [torch.frombuffer(bytearray(s.data), dtype=torch.uint8) for s in sources]
    if device.startswith("cuda"):
        # torchvision allocates the outputs on this stream but decodes on its own without
        # waiting for it (pytorch/vision#9606): let queued kernels finish reading first
        torch.cuda.current_stream(device).synchronize()
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad image fails the batch: retry one by one
        decoded: list[Any | None] = []
        for tensor in data:
            try:
                decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def device_decodable(source: EncodedImage | None) -> bool:
    return (
        source is not None
        and source.format == "JPEG"
        and source.size[0] * source.size[1] <= DEVICE_DECODE_MAX_PIXELS
    )


def image_batch(images: Sequence[Image], spec: PixelSpec, device: str) -> Any:
    """Pixels for the vision tower: on CUDA, JPEGs decoded on the device; the rest (and
    everything on CPU) from the decoded PIL images; all through :func:`to_pixels`."""
    from models.core.conversation import encoded_source

    tensors: list[Any | None] = [None] * len(images)
    if device.startswith("cuda"):
        sources = [encoded_source(img) for img in images]
        picked = [i for i, s in enumerate(sources) if device_decodable(s)]
        decoded = decode_jpegs([sources[i] for i in picked], device)  # type: ignore[misc]
        for i, tensor in zip(picked, decoded, strict=True):
            tensors[i] = tensor
    filled = [t if t is not None else pil_to_uint8(images[i]) for i, t in enumerate(tensors)]
    return to_pixels(filled, spec, device)
