"""AutoStrategy end to end on a tiny open_clip model: train (CLI) -> artifact -> serve ->
decisions for text and image requests over HTTP; eval report; mismatches fail startup."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    app_client,
    data_url,
    image_message,
    make_settings,
    png_bytes,
    startup_error,
    user,
)

pytestmark = pytest.mark.clip


@dataclass(frozen=True)
class Trained:
    root: Path
    weights: Path
    data: Path
    artifact: Path
    config: Path

    @property
    def encoder(self) -> str:
        from tests.tiny_clip import TINY_CLIP_NAME

        return f"open_clip:{TINY_CLIP_NAME}"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    pytest.importorskip("open_clip")
    from app.cli.main import main
    from tests.tiny_clip import TINY_CLIP_NAME, register_tiny_clip, routing_yaml, write_dataset

    root = tmp_path_factory.mktemp("auto-clip")
    weights = register_tiny_clip(root / "clip")
    data = write_dataset(root / "train.jsonl")
    artifact = root / "artifact"
    code = main([
        "train", str(data), "--encoder", f"open_clip:{TINY_CLIP_NAME}", "--pretrained",
        str(weights), "--out", str(artifact), "--epochs", "40", "--patience", "40",
        "--hidden", "32,16", "--val-fraction", "0.25", "--members", "2",
        "--cache-dir", str(root / "cache"), "--no-progress", "--write-config",
        "--vision-models", "vlm", "--model", "mlp", "--confidence", "0",
    ])  # fmt: skip
    assert code == 0
    config = routing_yaml(root / "routing.yaml", "artifact", policy="threshold_cost")
    return Trained(root, weights, data, artifact, config)


def auto_settings(t: Trained, **overrides: object) -> object:
    auto = {"encoder": t.encoder, "pretrained": str(t.weights), **overrides.pop("auto", {})}  # type: ignore[dict-item]
    return make_settings(strategy="auto", config=str(overrides.pop("config", t.config)),
                         auto=auto, **overrides)  # fmt: skip


def test_train_writes_artifact_and_report(trained: Trained) -> None:
    manifest = json.loads((trained.artifact / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == trained.encoder
    assert manifest["encoder"]["dim"] == 128  # [text 64 | image 64]
    assert manifest["encoder"]["version"] == "tiny-clip.pt"  # the local checkpoint
    assert manifest["models"] == ["frontier", "coder", "chatter", "vlm"]
    assert manifest["mlp"]["hidden"] == [32, 16] and manifest["mlp"]["members"] == 2
    assert len(manifest["training"]["data"]["sha256"]) == 64
    report = json.loads((trained.artifact / "report.json").read_text())
    for key in ("val_loss", "best_epoch", "epochs_run", "val_loss_history", "val_auc"):
        assert key in report["metrics"]
    # operating points at 0.25/0.5/0.75/1x the best single model's cost (issue 21; before:
    # the fixed $ budgets 0.35/0.5/1/2)
    points = report["recommended"]["operating_points"]["fractions"]
    assert list(points.values()) == [0.25, 0.5, 0.75, 1.0]
    assert set(report["recommended"]["by_budget"]) == set(points)
    assert report["recommended"]["decision"]["mode"] in {"router", "single"}
    assert (trained.artifact / "weights.safetensors").stat().st_size > 0
    assert "auto:" in (trained.artifact / "routing.yaml").read_text()
    assert list((trained.root / "cache").glob("*.npz"))  # embeddings cached


async def test_text_and_image_requests_over_http(trained: Trained) -> None:
    async with app_client(auto_settings(trained)) as client:
        resp = await client.post("/v1/chat/completions", json={
            "model": "router", "messages": [user("write a python function to sort a list")],
        })  # fmt: skip
        assert resp.status_code == 200, resp.text
        body = resp.json()
        router = body["router"]
        assert body["model"] == "auto" and router["strategy"] == "auto"
        assert body["choices"][0]["message"]["content"] == router["model"]
        assert set(router["scores"]) == {"frontier", "coder", "chatter", "vlm"}
        assert all(0.0 <= p <= 1.0 for p in router["scores"].values())
        assert router["reason"] in {"threshold_cost", "none_qualified"}
        assert sorted(router["ranking"]) == sorted(router["scores"])

        image = data_url(png_bytes(32, 32, (10, 200, 30)))
        resp = await client.post("/v1/chat/completions", json={
            "messages": [image_message("what is this?", image, image)],
        })  # fmt: skip
        assert resp.status_code == 200, resp.text
        router = resp.json()["router"]
        assert router["model"] == "vlm" and set(router["scores"]) == {"vlm"}

        metrics = (await client.get("/metrics")).text
        assert 'llm_router_stage_duration_seconds_count{stage="encode",strategy="auto"}' in metrics
        assert 'stage="select",strategy="auto"' in metrics
        assert "llm_router_batch_size_count" in metrics


async def test_request_overrides_steer_the_choice(trained: Trained) -> None:
    async with app_client(auto_settings(trained)) as client:

        async def choose(router: dict[str, object]) -> dict[str, object]:
            resp = await client.post("/v1/chat/completions", json={
                "messages": [user("hello there, how are you?")], "router": router,
            })  # fmt: skip
            assert resp.status_code == 200, resp.text
            return resp.json()["router"]  # type: ignore[no-any-return]

        everyone = {m: 0.0 for m in ("frontier", "coder", "chatter", "vlm")}
        got = await choose({"thresholds": everyone})
        assert (got["model"], got["reason"]) == ("chatter", "threshold_cost")  # cheapest
        got = await choose({"thresholds": everyone, "costs": {"frontier": 0.0}})
        assert got["model"] == "frontier"
        got = await choose({"thresholds": {m: 1.0 for m in everyone}})
        assert got["reason"] == "none_qualified"
        assert got["model"] == max(got["scores"], key=got["scores"].get)  # type: ignore[arg-type]
        got = await choose({"thresholds": everyone, "exclude_models": ["chatter"]})
        assert got["model"] == "coder" and "chatter" not in got["scores"]


async def test_auto_artifact_setting_overrides_config(trained: Trained, tmp_path: Path) -> None:
    from tests.tiny_clip import routing_yaml

    config = routing_yaml(tmp_path / "routing.yaml", "does-not-exist")
    settings = auto_settings(trained, config=config, auto={"artifact": str(trained.artifact)})
    async with app_client(settings) as client:
        assert (await client.get("/ready")).status_code == 200


def _tampered(trained: Trained, tmp_path: Path, **encoder: object) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(trained.artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder"].update(encoder)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


async def test_wrong_encoder_fails_startup(trained: Trained, tmp_path: Path) -> None:
    art = _tampered(trained, tmp_path, name="minilm", dim=384)
    message = await startup_error(auto_settings(trained, auto={"artifact": str(art)}))
    assert "artifact was trained with encoder minilm (dim 384)" in message
    assert f"ROUTER_AUTO__ENCODER is {trained.encoder} (dim 128)" in message


async def test_wrong_dim_fails_startup(trained: Trained, tmp_path: Path) -> None:
    art = _tampered(trained, tmp_path, dim=1024)
    message = await startup_error(auto_settings(trained, auto={"artifact": str(art)}))
    assert "(dim 1024)" in message and "(dim 128)" in message


async def test_other_weights_fail_startup(trained: Trained) -> None:
    message = await startup_error(auto_settings(trained, auto={"pretrained": None}))
    assert "fingerprint" in message and "ROUTER_AUTO__PRETRAINED" in message


async def test_model_missing_from_config_fails_startup(trained: Trained, tmp_path: Path) -> None:
    from tests.tiny_clip import routing_yaml

    config = routing_yaml(tmp_path / "r.yaml", str(trained.artifact), ("frontier", "coder", "vlm"))
    message = await startup_error(auto_settings(trained, config=config))
    assert "artifact model 'chatter' is not in the routing config" in message
    assert "configured: frontier, coder, vlm" in message


async def test_missing_artifact_fails_startup(trained: Trained, tmp_path: Path) -> None:
    message = await startup_error(auto_settings(trained, auto={"artifact": str(tmp_path / "x")}))
    assert "does not exist" in message


def test_eval_cli_writes_report_and_plot(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli.main import main

    monkeypatch.setenv("ROUTER_AUTO__ENCODER", trained.encoder)
    monkeypatch.setenv("ROUTER_AUTO__PRETRAINED", str(trained.weights))
    out = tmp_path / "eval.json"
    code = main(["eval", str(trained.data), "--strategy", "auto", "--config",
                 str(trained.artifact / "routing.yaml"), "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    for key in (
        "policy",
        "baselines",
        "per_model_auc",
        "curve",
        "frontier",
        "apgr",
        "cpt",
        "cost_to_match_best",
        "latency",
        "best_under_budget",
    ):
        assert key in report, key
    assert report["examples"] == 48
    assert report["baselines"]["oracle"]["quality"] == 1.0
    assert report["latency"]["p50_ms"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_clip_vector_layout_and_start_truncation(trained: Trained) -> None:
    import numpy as np
    from PIL import Image

    from models.core.conversation import Conversation
    from models.encoders.conversation import build_encoder

    enc = build_encoder(trained.encoder, str(trained.weights))
    half = enc.dim // 2
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    text, one, other, both = enc.embed([
        Conversation.from_text("hi"), Conversation.from_text("hi", [red]),
        Conversation.from_text("hi", [blue]), Conversation.from_text("hi", [red, blue]),
    ])  # fmt: skip
    assert not text[half:].any()  # no image: zeros
    assert np.linalg.norm(one[half:]) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(both[half:], (one[half:] + other[half:]) / 2, atol=1e-5)

    tok = enc._tokenizer  # type: ignore[attr-defined]
    long = Conversation.from_text("filler words " * 100 + "the final question")
    row = enc._tokens(["user: " + long.turns[0].text])[0].tolist()  # type: ignore[attr-defined]
    ids = tok.encode("user: " + long.turns[0].text)
    assert row[0] == tok.sot_token_id and row[-1] == tok.eot_token_id  # full context
    assert row[1:-1] == ids[-75:]  # token-exact: the latest words survive
    assert enc.embed([long]).shape == (1, enc.dim)


async def test_full_encoder_queue_answers_429(trained: Trained) -> None:
    import asyncio

    settings = auto_settings(trained, batch={"max_size": 1, "window_ms": 0, "queue_size": 1})
    async with app_client(settings) as client:
        body = {"messages": [user("write a python function " * 20)]}
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=body) for _ in range(40))
        )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
    error = next(r for r in responses if r.status_code == 429).json()["error"]
    assert error["code"] == "overloaded" and error["type"] == "rate_limit_error"
