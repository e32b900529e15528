"""The auto strategy's CUDA image path: nvJPEG batch decode, on-device resize/normalise and
bf16 autocast agree with the CPU path (tiny CLIP). Skipped without CUDA (tests/conftest.py);
run on the lent GPU machine: ``.venv-clip/bin/python -m pytest -m "clip and gpu"``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.serving.workloads import jpeg

pytestmark = [pytest.mark.gpu, pytest.mark.clip]

# nvJPEG and libjpeg-turbo differ in IDCT and chroma upsampling by a few levels per pixel,
# more at sharp chroma edges (on an H100 with torchvision 0.26: 21 levels at most, 1.35 on
# average over the test's noisy photo-like JPEG; the embeddings still agree, see below)
DECODE_MAX_LEVELS = 32
DECODE_MEAN_LEVELS = 2.0
COSINE = 0.99  # bf16 autocast on CUDA vs fp32 on CPU


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    pytest.importorskip("open_clip")
    from tests.tiny_clip import TINY_CLIP_NAME, register_tiny_clip

    return f"open_clip:{TINY_CLIP_NAME}", register_tiny_clip(tmp_path_factory.mktemp("clip"))


def sources() -> list[object]:
    from models.core.conversation import EncodedImage

    return [EncodedImage("JPEG", jpeg(640, 480, seed=s), (640, 480)) for s in range(3)] + [
        EncodedImage("JPEG", jpeg(300, 500, seed=9), (300, 500))
    ]


def test_nvjpeg_batch_decode_matches_cpu_decode() -> None:
    from models.encoders.clip_pixels import decode_jpegs

    items = sources()
    on_gpu = decode_jpegs(items, "cuda")  # type: ignore[arg-type]
    on_cpu = decode_jpegs(items, "cpu")  # type: ignore[arg-type]
    for g, c in zip(on_gpu, on_cpu, strict=True):
        assert g is not None and c is not None and g.is_cuda and g.shape == c.shape
        diff = (g.cpu().int() - c.int()).abs()
        worst, mean = diff.max().item(), diff.float().mean().item()
        assert worst <= DECODE_MAX_LEVELS and mean <= DECODE_MEAN_LEVELS, (worst, mean)


def test_a_corrupt_jpeg_falls_back_without_failing_the_batch() -> None:
    from models.core.conversation import EncodedImage
    from models.encoders.clip_pixels import decode_jpegs

    items = [*sources()[:2], EncodedImage("JPEG", b"\xff\xd8\xff\xe0 broken", (640, 480))]
    out = decode_jpegs(items, "cuda")
    assert out[0] is not None and out[1] is not None and out[2] is None


def test_cuda_embeddings_agree_with_cpu(tiny: tuple[str, Path]) -> None:
    import numpy as np

    from app.images.decode import open_image
    from app.settings import LimitSettings
    from models.core.conversation import Conversation
    from models.encoders.conversation import build_encoder

    name, weights = tiny
    limits = LimitSettings()
    full = [open_image(jpeg(640, 480, seed=s), limits, "p") for s in range(3)]
    preview = [open_image(jpeg(640, 480, seed=s), limits, "p", preview=True) for s in range(3)]
    texts = ["what is in this photo?", "describe it", "and this one?"]
    cpu = build_encoder(name, str(weights), "cpu").embed(
        [Conversation.from_text(t, [i]) for t, i in zip(texts, full, strict=True)]
    )
    gpu = build_encoder(name, str(weights), "cuda", autocast="bf16").embed(
        [Conversation.from_text(t, [i]) for t, i in zip(texts, preview, strict=True)]
    )
    cos = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cos.min() >= COSINE, cos


async def test_auto_strategy_routes_jpegs_on_cuda(tiny: tuple[str, Path], tmp_path: Path) -> None:
    from bench.routing.bench_auto import context, random_artifact
    from models.core.conversation import Conversation
    from strategies.auto.strategy import AutoStrategy
    from strategies.base import RouteOptions

    name, weights = tiny
    artifact = random_artifact(name, str(weights), "cuda", tmp_path / "artifact", None)
    ctx = context(name, str(weights), "cuda", artifact, 32, 2.0)
    strategy = AutoStrategy(ctx)
    await strategy.start()
    try:
        from app.images.decode import open_image
        from app.settings import LimitSettings

        image = open_image(jpeg(640, 480), LimitSettings(), "p", preview=True)
        decision = await strategy.route(Conversation.from_text("what?", [image]), RouteOptions())
        assert decision.model in {"b", "c"}  # the vision models
    finally:
        await strategy.aclose()


@pytest.mark.parametrize("batch", [1, 3, 8, 11])
def test_cuda_graph_towers_match_eager_towers(tiny: tuple[str, Path], batch: int) -> None:
    """Replayed graphs (bucket 4 for 3 rows, padded; 11 > the largest bucket runs eagerly)
    give the eager towers' embeddings, with and without images."""
    import numpy as np

    from app.images.decode import open_image
    from app.settings import LimitSettings
    from models.core.conversation import Conversation
    from models.encoders.conversation import build_encoder

    name, weights = tiny
    graphed = build_encoder(
        name, str(weights), "cuda", autocast="bf16", cuda_graphs=True, graph_batch=8
    )
    eager = build_encoder(name, str(weights), "cuda", autocast="bf16", cuda_graphs=False)
    assert graphed.cuda_graphs and not eager.cuda_graphs  # type: ignore[attr-defined]
    limits = LimitSettings()
    convs = [
        Conversation.from_text(
            f"question number {i} about the picture",
            [open_image(jpeg(320 + 16 * i, 240, seed=i), limits, "p", preview=True)]
            if i % 2 == 0
            else [],
        )
        for i in range(batch)
    ]
    # a different batch first, so stale rows sit in the graphs' static inputs
    graphed.embed([Conversation.from_text("something else entirely", [])] * 8)
    a, b = graphed.embed(convs), eager.embed(convs)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    # whole vectors: text half and image half (zeros for rows without an image)
    assert cos.min() >= 0.999, cos


def test_cuda_graphs_are_captured_by_the_auto_strategy(
    tiny: tuple[str, Path], tmp_path: Path
) -> None:
    from bench.routing.bench_auto import context, random_artifact
    from strategies.auto.strategy import AutoStrategy

    name, weights = tiny
    artifact = random_artifact(name, str(weights), "cuda", tmp_path / "artifact", None)
    strategy = AutoStrategy(context(name, str(weights), "cuda", artifact, 16, 0.0))
    strategy._load()
    assert strategy.encoder.cuda_graphs  # type: ignore[attr-defined]
    assert strategy.encoder._encode_text.buckets == [1, 2, 4, 8, 16]  # type: ignore[attr-defined]
