"""The tensor image path (models/encoders/clip_pixels.py) against open_clip's own PIL transform, on
CPU with the tiny CLIP: pixels within one uint8 level, embeddings cosine >= 0.999; JPEG
bytes kept by the edge; the device decoder's per-image fallback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.serving.workloads import jpeg
from tests.helpers import png_bytes

pytestmark = pytest.mark.clip

# open_clip's PIL resize rounds to uint8, as does torchvision's uint8 resize: measured max
# difference 1/255 before normalisation (0.015 after, with CLIP's std); allow 1 level.
PIXEL_LEVELS = 1.0
EMBEDDING_COSINE = 0.999


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    pytest.importorskip("open_clip")
    from tests.tiny_clip import TINY_CLIP_NAME, register_tiny_clip

    weights = register_tiny_clip(tmp_path_factory.mktemp("clip"))
    return f"open_clip:{TINY_CLIP_NAME}", weights


def decoded(data: bytes) -> object:
    from app.images.decode import open_image
    from app.settings import LimitSettings

    return open_image(data, LimitSettings(), "messages[0]")


IMAGES = {
    "photo_640x480": lambda: jpeg(640, 480),
    "tall_100x300": lambda: jpeg(100, 300, seed=3),
    "small_50x40_upscaled": lambda: jpeg(50, 40, seed=4),
    "png_flat_33x17": lambda: png_bytes(33, 17, (10, 200, 90)),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_tensor_preprocessing_matches_open_clip(tiny: tuple[str, Path], name: str) -> None:
    import open_clip
    import torch

    from models.encoders.clip_pixels import PixelSpec, pil_to_uint8, to_pixels

    model_name, weights = tiny
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name.split(":", 1)[1], pretrained=str(weights)
    )
    spec = PixelSpec.from_model(model)
    assert spec is not None and spec.size == 64 and spec.resize_mode == "shortest"
    image = decoded(IMAGES[name]())
    expected = preprocess(image)
    got = to_pixels([pil_to_uint8(image)], spec, "cpu")[0]
    assert got.shape == expected.shape == (3, 64, 64)
    std = torch.tensor(spec.std).view(3, 1, 1)
    levels = ((got - expected).abs() * std * 255).max().item()
    assert levels <= PIXEL_LEVELS + 1e-3, f"{name}: {levels:.3f} uint8 levels apart"


def test_embeddings_agree_with_the_pil_path(tiny: tuple[str, Path]) -> None:
    import numpy as np

    from models.core.conversation import Conversation
    from models.encoders.conversation import build_encoder

    model_name, weights = tiny
    tensor_path = build_encoder(model_name, str(weights), device_images=True)
    pil_path = build_encoder(model_name, str(weights), device_images=False)
    assert tensor_path._pixel_spec is not None and pil_path._pixel_spec is None  # type: ignore[attr-defined]
    convs = [Conversation.from_text("what is this?", [decoded(make())]) for make in IMAGES.values()]
    convs.append(Conversation.from_text("two", [decoded(jpeg(640, 480)), decoded(jpeg(80, 60))]))
    a, b = tensor_path.embed(convs), pil_path.embed(convs)
    half = a.shape[1] // 2
    assert np.allclose(a[:, :half], b[:, :half], atol=1e-6)  # text part untouched
    cos = (a[:, half:] * b[:, half:]).sum(1) / (
        np.linalg.norm(a[:, half:], axis=1) * np.linalg.norm(b[:, half:], axis=1)
    )
    assert cos.min() >= EMBEDDING_COSINE, cos


def test_edge_keeps_the_original_bytes_and_preview_decodes_small() -> None:
    from app.images.decode import open_image
    from app.settings import LimitSettings
    from models.core.conversation import encoded_source

    data = jpeg(640, 480)
    full = open_image(data, LimitSettings(), "p")
    source = encoded_source(full)
    assert source is not None and source.format == "JPEG" and source.data is data
    assert source.size == (640, 480) and full.size == (512, 384)
    preview = open_image(data, LimitSettings(), "p", preview=True)
    assert preview.size == (80, 60) and encoded_source(preview) == source


def test_preview_still_refuses_a_truncated_jpeg() -> None:
    from app.images.decode import open_image
    from app.settings import LimitSettings
    from models.core.errors import BadRequestError

    data = jpeg(640, 480)
    with pytest.raises(BadRequestError, match="corrupt or truncated"):
        open_image(data[: len(data) // 2], LimitSettings(), "p", preview=True)


def test_device_decoder_falls_back_per_image() -> None:
    from models.core.conversation import EncodedImage
    from models.encoders.clip_pixels import decode_jpegs, pil_to_uint8

    good = EncodedImage("JPEG", jpeg(640, 480), (640, 480))
    bad = EncodedImage("JPEG", b"\xff\xd8\xff\xe0 not really a jpeg", (640, 480))
    first, second, third = decode_jpegs([good, bad, good], "cpu")
    assert second is None
    from PIL import Image

    reference = pil_to_uint8(Image.open(io.BytesIO(good.data)))
    assert first is not None and third is not None
    assert (first.int() - reference.int()).abs().max().item() <= 1


def test_cpu_never_uses_the_device_decoder(
    tiny: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.core.conversation import Conversation
    from models.encoders import clip_pixels
    from models.encoders.conversation import build_encoder

    def refuse(*args: object) -> None:
        raise AssertionError("decode_jpegs called on a CPU device")

    monkeypatch.setattr(clip_pixels, "decode_jpegs", refuse)
    enc = build_encoder(tiny[0], str(tiny[1]))
    assert enc.embed([Conversation.from_text("x", [decoded(jpeg(64, 64))])]).shape[0] == 1
