"""The shipped RouterBench artifact (MiniLM) serves decisions; MiniLM text handling."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers import ROOT, app_client, data_url, image_message, make_settings, png_bytes, user

pytestmark = pytest.mark.embedding

SHIPPED = ROOT / "models/artifacts/routerbench-minilm"
ARC = (
    "Which property of a mineral can be determined just by looking at it?\nA) luster\n"
    'B) mass\nC) weight\nD) hardness\nPrint only a single choice from "A" or "B" or "C" '
    'or "D" without explanation.\nAnswer:'
)


def settings(**overrides: object) -> object:
    return make_settings(strategy="auto", config=str(SHIPPED / "routing.yaml"), **overrides)


def test_shipped_artifact_records_its_data_and_encoder() -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "minilm" and manifest["encoder"]["dim"] == 384
    assert len(manifest["models"]) == 11
    data = ROOT / "bench/data/routerbench/train.jsonl"
    assert manifest["training"]["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (SHIPPED / "weights.safetensors").stat().st_size < 10 * 1024**2


async def test_shipped_router_serves_and_honours_overrides() -> None:
    async with app_client(settings()) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user(ARC)]})
        assert resp.status_code == 200, resp.text
        router = resp.json()["router"]
        manifest = json.loads((SHIPPED / "manifest.json").read_text())
        assert set(router["scores"]) == set(manifest["models"])
        assert router["model"] in manifest["models"] and router["reason"] == "utility"

        cheap = await client.post("/v1/chat/completions", json={
            "messages": [user(ARC)], "router": {"cost_weight": 1000.0},
        })  # fmt: skip
        assert cheap.json()["router"]["model"] == "mistralai/mistral-7b-chat"
        best = await client.post("/v1/chat/completions", json={
            "messages": [user(ARC)], "router": {"cost_weight": 0.0},
        })  # fmt: skip
        scores = best.json()["router"]["scores"]
        assert best.json()["router"]["model"] == max(scores, key=scores.get)

        # no model in this config can see images: a clear 400, never a text-only pick
        image = data_url(png_bytes())
        resp = await client.post("/v1/chat/completions", json={
            "messages": [image_message("what is this?", image)],
        })  # fmt: skip
        assert resp.status_code == 400
        assert "vision-capable" in resp.json()["error"]["message"]


def test_minilm_keeps_the_latest_turn_token_exact() -> None:
    import numpy as np

    from models.core.conversation import Conversation, Turn
    from models.encoders.conversation import build_encoder

    enc = build_encoder("minilm", max_tokens=32)
    long = Conversation(turns=(
        Turn("user", "an old question about cooking pasta " * 40),
        Turn("assistant", "an old answer"),
        Turn("user", "now, what is the capital of France?"),
    ))  # fmt: skip
    text = enc._truncate(long.transcript())  # type: ignore[attr-defined]
    assert text.endswith("what is the capital of france?")  # uncased tokenizer
    ids = enc._encoder._model.tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[attr-defined]
    assert 28 <= len(ids) <= 32
    short = Conversation.from_text("now, what is the capital of France?")
    a, b = enc.embed([long, short])
    assert a.shape == (384,) and np.isclose(np.linalg.norm(a), 1.0, atol=1e-4)
    assert not np.allclose(a, b)  # earlier turns still count when they fit
