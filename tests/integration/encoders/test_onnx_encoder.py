"""The ONNX Runtime encoder with the real packaged MiniLM and a tiny locally built
sentence-transformers model: the export matches torch (fp32 cosine >= 0.9999), is cached
by the weights (a changed weight re-exports), survives a broken or missing file by
exporting again, fails at startup with a clear message when it cannot, and the runtime
setting picks what serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.encoders import onnx_export
from models.encoders.onnx import OnnxSentenceEncoder
from models.encoders.runtime import EncoderRuntime, load_sentence_encoder
from models.encoders.sentence import EncoderLoadError, SentenceEncoder
from tests.helpers import ROOT, app_client, make_settings, startup_error, user

pytestmark = pytest.mark.embedding

SENTENCES = [
    "hi", "Can you explain how binary search works?", "Prove there are infinitely many primes.",
    "what's the weather in Paris tomorrow?", "I was charged twice for my card payment",
    "Write a Python function that reverses a linked list and explain its complexity.",
    "that answer was wrong, try again", "Wie spät ist es in Tokio?", "東京の天気は？",
    "emoji 🎉🎉 and punctuation!!! ... ???", "   leading and trailing spaces   ",
    "a " * 300, "The quick brown fox jumps over the lazy dog. " * 12,
    "SELECT name FROM users WHERE id = 42;", "describe this image of a cat on a sofa",
    "refund", "my account is locked and I cannot log in", "translate 'good morning' to Italian",
]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_fp32() -> np.ndarray:
    return SentenceEncoder().encode(SENTENCES)


def test_fp32_onnx_matches_torch(cache: Path, torch_fp32: np.ndarray) -> None:
    encoder = OnnxSentenceEncoder(cache_dir=cache)
    got = encoder.encode(SENTENCES)
    cosine = (got * torch_fp32).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.abs(got - torch_fp32).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # what intent-head manifests record: the same identity as the torch encoder's
    torch_encoder = SentenceEncoder()
    assert (encoder.name, encoder.dim, encoder.fingerprint) == (
        torch_encoder.name, torch_encoder.dim, torch_encoder.fingerprint,
    )  # fmt: skip
    assert encoder.runtime == "onnx" and encoder.quantization is None


def test_int8_onnx_stays_near_fp32(cache: Path, torch_fp32: np.ndarray) -> None:
    """int8 per channel moves the vectors a little, less than torch's int8 does."""
    onnx_int8 = OnnxSentenceEncoder(quantize=True, cache_dir=cache).encode(SENTENCES)
    torch_int8 = SentenceEncoder(quantize=True).encode(SENTENCES)
    drift = {
        name: float(1.0 - (x * torch_fp32).sum(axis=1).mean())
        for name, x in (("onnx", onnx_int8), ("torch", torch_int8))
    }
    assert 0.0 < drift["onnx"] < 0.02 and drift["onnx"] < drift["torch"], drift
    assert (cache / OnnxSentenceEncoder(cache_dir=cache).entry.name).is_dir()


def test_a_single_text_and_its_batch_agree(cache: Path) -> None:
    """Sorting by length and padding within a batch do not change fp32 vectors."""
    encoder = OnnxSentenceEncoder(cache_dir=cache)
    batch = encoder.encode(SENTENCES, batch_size=4)
    alone = np.concatenate([encoder.encode([t]) for t in SENTENCES])
    assert np.abs(batch - alone).max() < 1e-5
    assert encoder.encode([]).shape == (0, 384)


def test_a_batch_runs_in_groups_of_similar_length(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One long text among short ones is not padded into: it runs on its own, the short
    ones together, and the fp32 vectors are those of one padded run."""
    encoder = OnnxSentenceEncoder(cache_dir=cache)
    texts = ["hi", "refund", "The quick brown fox jumps over the lazy dog. " * 12, "ok thanks"]
    shapes: list[tuple[int, int]] = []
    forward = OnnxSentenceEncoder._forward

    def recording(graph: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
        shapes.append(inputs["input_ids"].shape)
        return forward(graph, inputs)

    monkeypatch.setattr(OnnxSentenceEncoder, "_forward", staticmethod(recording))
    grouped = encoder.encode(texts)
    assert [rows for rows, _ in shapes] == [1, 3]
    assert shapes[0][1] > 100 > shapes[1][1]
    one_run = OnnxSentenceEncoder._run(encoder._tokens, encoder._session, texts)
    assert np.abs(grouped - one_run).max() < 1e-5


def test_truncation_keeps_the_same_tail_as_torch(cache: Path) -> None:
    encoder, reference = OnnxSentenceEncoder(cache_dir=cache), SentenceEncoder()
    long = "an old question about cooking pasta, " * 60 + "now: what's the capital of France?"
    for budget in (8, 32, 128, None):
        assert encoder.truncate_start(long, budget) == reference.truncate_start(long, budget)
    assert encoder.truncate_start("short text", 32) == "short text"


def test_a_warm_cache_loads_without_exporting(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    OnnxSentenceEncoder(quantize=True, cache_dir=cache)

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export", no_export)
    monkeypatch.setattr(onnx_export, "quantize", no_export)
    encoder = OnnxSentenceEncoder(quantize=True, cache_dir=cache)
    assert encoder.encode(["hi"]).shape == (1, 384)


def tiny_model(out: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT sentence-transformers model with MiniLM's tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    from models.encoders.sentence import packaged_minilm_path

    base = out.with_name(out.name + "-base")
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    tokenizer.save_pretrained(str(base))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(str(base))
    modules = [Transformer(str(base), max_seq_length=64), Pooling(32, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    shutil.rmtree(base)
    return out


def changed_middle_weight(model_dir: Path) -> None:
    """Change one weight that the first/last-parameter fingerprint does not see."""
    from safetensors.torch import load_file, save_file

    file = next(model_dir.rglob("model.safetensors"))
    tensors = load_file(str(file))
    key = next(k for k in tensors if "layer.0.intermediate.dense.weight" in k)
    tensors[key] = tensors[key] * 20.0
    save_file(tensors, str(file), metadata={"format": "pt"})


def test_changed_weights_export_again(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny")
    cache = tmp_path / "cache"
    before = OnnxSentenceEncoder(str(model), cache_dir=cache)
    old = before.encode(SENTENCES)
    changed_middle_weight(model)
    after = OnnxSentenceEncoder(str(model), cache_dir=cache)
    assert after.entry != before.entry  # a new entry: the old graph is not reused
    assert before.fingerprint == after.fingerprint  # the cheap fingerprint missed it...
    new = after.encode(SENTENCES)
    assert np.abs(new - old).max() > 1e-3  # ...the export did not
    reference = SentenceEncoder(str(model)).encode(SENTENCES)
    assert ((new * reference).sum(axis=1)).min() >= 0.9999
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == sorted(
        [before.entry.name, after.entry.name]
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "meta"])
def test_a_broken_or_missing_graph_is_exported_again(tmp_path: Path, damage: str) -> None:
    model = tiny_model(tmp_path / "tiny")
    cache = tmp_path / "cache"
    want = OnnxSentenceEncoder(str(model), quantize=True, cache_dir=cache).encode(SENTENCES)
    entry = onnx_export.cache_entry(cache, str(model))
    int8 = entry / "model.int8-per-channel.onnx"
    if damage == "garbage":
        int8.write_bytes(b"not an onnx graph")
    elif damage == "truncated":
        int8.write_bytes(int8.read_bytes()[: int8.stat().st_size // 2])
    elif damage == "missing":
        (entry / "model.onnx").unlink()
        int8.unlink()
    else:
        (entry / "export.json").write_text("{")
    got = OnnxSentenceEncoder(str(model), quantize=True, cache_dir=cache).encode(SENTENCES)
    assert np.abs(got - want).max() < 1e-4


def test_a_graph_of_other_weights_is_caught_by_the_probe(tmp_path: Path) -> None:
    """A readable graph that computes something else (another model's file copied in)
    fails the probe check and is exported again."""
    model, other = tiny_model(tmp_path / "tiny"), tiny_model(tmp_path / "other", seed=1)
    cache = tmp_path / "cache"
    want = OnnxSentenceEncoder(str(model), cache_dir=cache).encode(SENTENCES)
    foreign = OnnxSentenceEncoder(str(other), cache_dir=cache)
    shutil.copy(foreign.entry / "model.onnx", onnx_export.cache_entry(cache, str(model)))
    got = OnnxSentenceEncoder(str(model), cache_dir=cache).encode(SENTENCES)
    assert np.abs(got - want).max() < 1e-5


def test_an_unusable_cache_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(EncoderLoadError, match="ROUTER_ENCODER__CACHE_DIR"):
        OnnxSentenceEncoder(str(tiny_model(tmp_path / "tiny")), cache_dir=blocker / "onnx")


def test_the_runtime_setting_picks_the_encoder(cache: Path) -> None:
    assert isinstance(
        load_sentence_encoder(runtime=EncoderRuntime("onnx", cache)), OnnxSentenceEncoder
    )
    assert isinstance(
        load_sentence_encoder(runtime=EncoderRuntime("torch", cache)), SentenceEncoder
    )
    assert EncoderRuntime("onnx").on("cuda:0") == "torch"  # ONNX Runtime is CPU-only here
    assert EncoderRuntime("onnx").on("cpu") == "onnx"


async def test_the_service_routes_on_either_runtime(cache: Path) -> None:
    """ROUTER_ENCODER__RUNTIME picks what the intent backend encodes with; the fp32
    scores agree across runtimes."""
    import httpx
    from asgi_lifespan import LifespanManager

    from app.server.cpus import torch_threads
    from app.server.factory import create_app
    from tests.helpers import wait_ready

    scores = {}
    for runtime in ("onnx", "torch"):
        settings = make_settings(
            strategy="intent",
            intent={"quantize": False},
            encoder={"runtime": runtime, "cache_dir": str(cache)},
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=300) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await wait_ready(client)
                resp = await client.post(
                    "/v1/chat/completions", json={"messages": [user("hello there, how are you?")]}
                )
            assert resp.status_code == 200, resp.text
            assert resp.json()["router"]["intent"] == "chit_chat"
            scores[runtime] = resp.json()["router"]["scores"]
            encoder = app.state.router.strategy._classifier._encoder
            assert encoder.runtime == runtime
            if runtime == "onnx":  # the worker's share of the cores, as torch gets it
                options = encoder._session.get_session_options()
                assert options.intra_op_num_threads == torch_threads(settings)
                assert options.inter_op_num_threads == 1
    for intent, score in scores["onnx"].items():
        assert score == pytest.approx(scores["torch"][intent], abs=1e-5)


async def test_a_broken_cache_at_startup_never_fails_a_request(tmp_path: Path) -> None:
    """The service re-exports a damaged graph while starting; requests only ever see
    the working one."""
    cache = tmp_path / "cache"
    entry = OnnxSentenceEncoder(quantize=True, cache_dir=cache).entry
    (entry / "model.int8-per-channel.onnx").write_bytes(b"\x00" * 1024)
    settings = make_settings(strategy="intent", encoder={"cache_dir": str(cache)})
    async with app_client(settings) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user("hi!")]})
        assert resp.status_code == 200, resp.text


async def test_an_unwritable_cache_fails_startup_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = make_settings(strategy="intent", encoder={"cache_dir": str(blocker / "onnx")})
    error = await startup_error(settings)
    assert "ROUTER_ENCODER__CACHE_DIR" in error and "EncoderLoadError" in error


def test_onnxruntime_telemetry_stays_off(tmp_path: Path) -> None:
    """ONNX Runtime's Linux wheels write a device id and an event store under
    ~/.cache/Microsoft and upload events unless ORT_DISABLE_TELEMETRY is set before they
    initialise. A fresh process that loads and runs the encoder (export and int8 quantizer
    included) with a home of its own must leave none of that and keep the switch set."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    script = (
        "import os\n"
        "from models.encoders.onnx import OnnxSentenceEncoder\n"
        f"enc = OnnxSentenceEncoder(quantize=True, cache_dir={str(tmp_path / 'cache')!r})\n"
        "assert enc.encode(['hello there']).shape == (1, enc.dim)\n"
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not [p for p in written if "microsoft" in p.lower() or "onnxruntime" in p], written
    assert "telemetry" not in proc.stderr.lower(), proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "1"
