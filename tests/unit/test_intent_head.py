"""Intent head training (synthetic vectors): threshold for out-of-scope, artifact round
trip, encoder check, labelled-row parsing, config examples_file validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from app.config import ConfigError, load_routing_config
from models.intent_data import IntentDataError, read_intent_rows
from models.intent_head import (
    IntentHeadError,
    check_head_encoder,
    load_head,
    save_head,
)
from models.intent_train import fit_intents


def blobs(n_per: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three tight intents on axes 0-2; out-of-scope rows scattered elsewhere."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, name in enumerate(["a", "b", "c"]):
        centre = np.zeros(8)
        centre[k] = 1.0
        xs.append(centre + rng.normal(scale=0.15, size=(n_per, 8)))
        ys += [name] * n_per
    oos = rng.normal(scale=0.15, size=(n_per, 8))
    oos[:, 3:] += rng.choice([-1.0, 1.0], size=(n_per, 5)) * 0.6
    xs.append(oos)
    ys += ["other"] * n_per
    x = np.concatenate(xs).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), ys


def test_fit_chooses_a_threshold_and_recognises_out_of_scope() -> None:
    x, y = blobs(40)
    result = fit_intents(x, y, np.zeros((0, 8), np.float32), [], val_fraction=0.25)
    assert result.metrics["val_accuracy"] is not None and result.metrics["val_accuracy"] > 0.9
    xt, yt = blobs(30, seed=1)
    pred = result.head.predict(xt)
    acc = np.mean([p == g for p, g in zip(pred, yt, strict=True)])
    oos = np.mean([p == "other" for p, g in zip(pred, yt, strict=True) if g == "other"])
    assert acc > 0.9 and oos > 0.8


def test_head_round_trip_and_encoder_mismatch(tmp_path: Path) -> None:
    x, y = blobs(10)
    head = fit_intents(x, y, np.zeros((0, 8), np.float32), []).head
    info = {"name": "enc", "dim": 8, "fingerprint": "abc", "quantized": True}
    save_head(tmp_path / "h", head, {"encoder": info})
    loaded, manifest = load_head(tmp_path / "h")
    assert loaded.labels == head.labels and loaded.threshold == head.threshold
    np.testing.assert_allclose(loaded.probabilities(x), head.probabilities(x), atol=1e-6)
    check_head_encoder(manifest, info, tmp_path)
    with pytest.raises(IntentHeadError, match="quantized"):
        check_head_encoder(manifest, {**info, "quantized": False}, tmp_path)
    with pytest.raises(IntentHeadError, match="cannot read"):
        load_head(tmp_path / "missing")


def test_intent_rows_accept_text_messages_and_empty_intent(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"text": "hello", "intent": "chit_chat"}\n'
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"},'
        ' {"type": "image_url", "image_url": {"url": "x"}}]}], "intent": "img"}\n'
        '{"text": "book me a flight", "intent": ""}\n'
    )
    texts, intents = read_intent_rows(data)
    assert texts == ["hello", "what is it [image]", "book me a flight"]
    assert intents == ["chit_chat", "img", "other"]
    data.write_text('{"intent": "x"}\n')
    with pytest.raises(IntentDataError, match=":1: needs 'text'"):
        read_intent_rows(data)


def test_config_file_references_must_exist(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    base = "models:\n  - name: m\nintents:\n  - name: a\n    description: d\n    model: m\n"
    cfg.write_text(base + "examples_file: ex.jsonl\n")
    with pytest.raises(ConfigError, match=r"examples_file \(line 7\): 'ex.jsonl' does not exist"):
        load_routing_config(cfg)
    (tmp_path / "ex.jsonl").write_text('{"text": "hi", "intent": "a"}\n')
    assert load_routing_config(cfg).resolve_path("ex.jsonl") == tmp_path / "ex.jsonl"
    cfg.write_text(base + "intent_classifier: head\n")
    with pytest.raises(ConfigError, match="intent_classifier"):
        load_routing_config(cfg)


def test_oos_share_reweights_the_threshold_choice() -> None:
    """Validation with few out-of-scope rows: weighting them up raises the threshold."""
    x, y = blobs(40)
    keep = [i for i, label in enumerate(y) if label != "other" or i % 8 == 0]
    x, y = x[keep], [y[i] for i in keep]
    head = fit_intents(x, y, np.zeros((0, 8), np.float32), [], val_fraction=0.3).head
    from models.intent_train import best_threshold

    plain, _ = best_threshold(head, x, y)
    balanced, _ = best_threshold(head, x, y, oos_share=0.5)
    assert balanced >= plain
