"""Intent head training (synthetic vectors): threshold for out-of-scope, artifact round
trip, encoder check, labelled-row parsing, config examples_file validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from models.core.errors import ConfigError
from models.core.routing_config import load_routing_config
from models.intents.data import IntentDataError, read_intent_rows
from models.intents.fit import fit_intents
from models.intents.head import (
    IntentHeadError,
    check_head_encoder,
    load_head,
    save_head,
)


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


def test_recorded_quantization_schemes(tmp_path: Path) -> None:
    """``quantized: true`` in a manifest is per-tensor int8 (written before schemes were
    recorded); the service runs a head with the scheme it was trained with."""
    from models.intents.head import head_quantization

    info = {"name": "enc", "dim": 8, "fingerprint": "abc"}
    legacy = {"encoder": {**info, "quantized": True}}
    check_head_encoder(legacy, {**info, "quantized": "int8-per-tensor"}, tmp_path)
    with pytest.raises(IntentHeadError, match="quantized"):
        check_head_encoder(legacy, {**info, "quantized": "int8-per-channel"}, tmp_path)
    with pytest.raises(IntentHeadError, match="unknown quantization 'int4'"):
        check_head_encoder({"encoder": {**info, "quantized": "int4"}}, legacy["encoder"], tmp_path)
    assert head_quantization(legacy, True, tmp_path) == "int8-per-tensor"
    channel = {"encoder": {**info, "quantized": "int8-per-channel"}}
    assert head_quantization(channel, True, tmp_path) == "int8-per-channel"
    assert head_quantization({"encoder": {**info, "quantized": False}}, True, tmp_path) == (
        "int8-per-channel"  # then the encoder check refuses the fp32 head, as before
    )
    assert head_quantization(legacy, False, tmp_path) is None


def test_runtime_is_checked_for_int8_heads_only(tmp_path: Path) -> None:
    """int8 vectors differ between torch and ONNX Runtime, fp32 ones do not: an int8
    head refuses the other runtime, a full-precision one serves on either; the service
    runs an int8 head on the runtime it recorded (none recorded: torch)."""
    from models.encoders.cache import text_encoder_key
    from models.intents.head import serving_runtime

    info = {"name": "enc", "dim": 8, "fingerprint": "abc"}
    int8 = {"encoder": {**info, "quantized": "int8-per-channel", "runtime": "onnx"}}
    check_head_encoder(int8, {**info, "quantized": "int8-per-channel", "runtime": "onnx"}, tmp_path)
    with pytest.raises(IntentHeadError, match=r"runtime='onnx'.*runtime='torch'"):
        check_head_encoder(
            int8, {**info, "quantized": "int8-per-channel", "runtime": "torch"}, tmp_path
        )
    legacy = {"encoder": {**info, "quantized": "int8-per-channel"}}  # before the ONNX runtime
    with pytest.raises(IntentHeadError, match="runtime='torch'"):
        check_head_encoder(
            legacy, {**info, "quantized": "int8-per-channel", "runtime": "onnx"}, tmp_path
        )
    fp32 = {"encoder": {**info, "quantized": False, "runtime": "torch"}}
    check_head_encoder(fp32, {**info, "quantized": False, "runtime": "onnx"}, tmp_path)

    assert serving_runtime(int8, "torch", True, tmp_path) == "onnx"
    assert serving_runtime(legacy, "onnx", True, tmp_path) == "torch"
    assert serving_runtime(fp32, "onnx", True, tmp_path) == "onnx"
    assert serving_runtime(int8, "torch", False, tmp_path) == "torch"  # then the check refuses
    # cached training vectors: int8 keys differ by runtime; torch's keys are unchanged
    assert text_encoder_key("enc", "abc", "int8-per-channel", "onnx") != text_encoder_key(
        "enc", "abc", "int8-per-channel", "torch"
    )
    assert text_encoder_key("enc", "abc", "int8-per-channel", "torch") == text_encoder_key(
        "enc", "abc", "int8-per-channel"
    )
    assert text_encoder_key("enc", "abc", None, "onnx") == text_encoder_key("enc", "abc", None)


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
    from models.intents.fit import best_threshold

    plain, _ = best_threshold(head, x, y)
    balanced, _ = best_threshold(head, x, y, oos_share=0.5)
    assert balanced >= plain


# --- lexical features (word/character n-grams beside the embedding) ---------------------

TOPICS = {
    "refund": ["refund", "money back", "reimburse"],
    "login": ["password", "log in", "locked"],
}
FILLER = ["please help with", "I have a question about", "something is wrong with", "hi,"]


def keyword_rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts whose intent only their words reveal (the tests give them all the same
    embedding)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = sorted(TOPICS)[i % 2]
        texts.append(f"{rng.choice(FILLER)} {rng.choice(TOPICS[label])} {rng.integers(99)}")
        labels.append(label)
    return texts, labels


def test_lexical_features_blocks_are_unit_length_and_unknown_grams_ignored() -> None:
    from models.intents.features import LexicalFeatures, char_grams

    # " ab " has 3-grams; at n=4 the padded word is used whole, once, and longer n stop
    assert char_grams(["ab"]) == ["c  ab", "c ab ", "c  ab "]
    lex = LexicalFeatures.fit(["my card is lost", "card arrival", "lost card"], min_df=1,
                              word_weight=0.5, char_weight=2.0)  # fmt: skip
    rows = lex.transform(["lost card", "zzz qqq", ""])
    dense = rows.dense()
    words_ = [i for g, i in lex.vocabulary.items() if g.startswith("w ")]
    chars = [i for g, i in lex.vocabulary.items() if g.startswith("c ")]
    assert np.linalg.norm(dense[0, words_]) == pytest.approx(0.5, rel=1e-5)
    assert np.linalg.norm(dense[0, chars]) == pytest.approx(2.0, rel=1e-5)
    assert not dense[1:].any()  # nothing known: no features (no crash)
    w = np.random.default_rng(0).normal(size=(lex.n_features, 3)).astype(np.float32)
    np.testing.assert_allclose(rows.matmul(w), dense @ w, atol=1e-5)


def test_lexical_head_separates_what_the_embedding_cannot(tmp_path: Path) -> None:
    """Every row has the same embedding: only the n-grams can tell the intents apart."""
    texts, labels = keyword_rows(80, seed=0)
    x = np.tile(np.eye(8, dtype=np.float32)[0], (len(texts), 1))
    none = np.zeros((0, 8), np.float32)
    plain = fit_intents(x, labels, none, [], texts=texts, config_texts=[],
                        lexical_grid=[(0.0, 0.0)])  # fmt: skip
    fit = fit_intents(x, labels, none, [], texts=texts, config_texts=[])
    assert fit.metrics["features"] == "embedding+lexical" and fit.head.lexical is not None
    assert fit.metrics["validation"] == "5-fold cross-validation"  # few rows
    test_texts, test_labels = keyword_rows(40, seed=1)
    xt = x[: len(test_texts)]
    acc = np.mean([p == g for p, g in zip(fit.head.predict(xt, test_texts), test_labels,
                                          strict=True)])  # fmt: skip
    base = np.mean([p == g for p, g in zip(plain.head.predict(xt), test_labels, strict=True)])
    assert acc == 1.0 and base <= 0.5
    with pytest.raises(ValueError, match="texts"):
        fit.head.probabilities(xt)  # the texts cannot be forgotten silently

    info = {"name": "enc", "dim": 8, "fingerprint": "abc", "quantized": True}
    save_head(tmp_path / "h", fit.head, {"encoder": info})
    loaded, manifest = load_head(tmp_path / "h")
    assert manifest["features"]["lexical"]["n_features"] == fit.head.lexical.n_features
    assert (tmp_path / "h" / "vocabulary.json").is_file()
    np.testing.assert_allclose(
        loaded.probabilities(xt, test_texts), fit.head.probabilities(xt, test_texts), atol=1e-6
    )
    (tmp_path / "h" / "vocabulary.json").write_text('["w refund"]')
    with pytest.raises(IntentHeadError, match="not a consistent"):
        load_head(tmp_path / "h")


def test_heads_saved_before_lexical_features_still_load(tmp_path: Path) -> None:
    """An artifact from the earlier format: weights + manifest without ``features``."""
    import json

    from safetensors.numpy import save_file

    (tmp_path / "old").mkdir()
    weight = np.eye(3, 8, dtype=np.float32)
    save_file({"weight": weight, "bias": np.zeros(3, np.float32)},
              str(tmp_path / "old/weights.safetensors"))  # fmt: skip
    manifest = {"kind": "intent-head", "encoder": {}, "labels": ["a", "b", "c"],
                "threshold": 0.4}  # fmt: skip
    (tmp_path / "old/manifest.json").write_text(json.dumps(manifest))
    head, _ = load_head(tmp_path / "old")
    assert head.lexical is None
    x = np.eye(8, dtype=np.float32)[:3] * 10
    assert head.predict(x) == ["a", "b", "c"]


def test_threshold_choice_matches_brute_force() -> None:
    from models.intents.fit import _weights, choose_threshold

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 30))
        gold = list(rng.choice(["a", "b", "other"], n))
        top = list(rng.choice(["a", "b", "other"], n))
        prob = np.round(rng.random(n), 1)  # ties on purpose
        share = (None, 0.5)[trial % 2]
        t, acc = choose_threshold(prob, top, gold, share)
        w = _weights(gold, share)

        def accuracy(th: float, prob=prob, top=top, gold=gold, w=w) -> float:  # type: ignore[no-untyped-def]
            pred = ["other" if p < th else lbl for p, lbl in zip(prob, top, strict=True)]
            return float(np.average([p == g for p, g in zip(pred, gold, strict=True)], weights=w))

        best = max(accuracy(c) for c in np.unique(np.concatenate([[0.0], prob + 1e-6])))
        assert accuracy(t) == pytest.approx(acc) == pytest.approx(best)


async def test_served_decisions_use_the_lexical_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serving with a fake encoder that gives every text the same vector: the head can
    only be right on both intents when the service passes the turn's text to it."""
    from app.metrics import RouterMetrics
    from app.settings import Settings
    from models.core.conversation import Conversation
    from strategies.base import StrategyContext
    from strategies.intent import embedding as intent_embedding

    info = {"name": "same-vector", "dim": 8, "fingerprint": "f", "quantized": False}

    class SameVector:
        name, dim = "same-vector", 8

        def __init__(self, *args: object) -> None:
            pass

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.tile(np.eye(8, dtype=np.float32)[0], (len(texts), 1))

    monkeypatch.setattr(intent_embedding, "load_sentence_encoder", SameVector)
    monkeypatch.setattr(intent_embedding, "encoder_identity", lambda enc: info)
    texts, labels = keyword_rows(80, seed=0)
    x = SameVector().encode(texts)
    fit = fit_intents(x, labels, np.zeros((0, 8), np.float32), [], texts=texts,
                      config_texts=[], lexical_grid=[(1.0, 0.5)])  # fmt: skip
    save_head(tmp_path / "intent-head", fit.head, {"encoder": info})
    (tmp_path / "r.yaml").write_text(
        "models:\n  - name: m1\n  - name: m2\nintents:\n"
        "  - {name: refund, description: refunds, model: m1}\n"
        "  - {name: login, description: account access, model: m2}\n"
        "  - {name: other, description: anything else, model: m1}\n"
        "intent_classifier: intent-head\n"
    )
    settings = Settings(strategy="intent", intent={"quantize": False})
    ctx = StrategyContext(settings, load_routing_config(tmp_path / "r.yaml"), RouterMetrics())
    clf = intent_embedding.EmbeddingIntentClassifier(ctx)
    await clf.start()
    try:
        got = [
            (await clf.classify(Conversation.from_text(text))).intent
            for text in ("I want my money back", "I forgot my password", "please refund me")
        ]
    finally:
        await clf.aclose()
    assert got == ["refund", "login", "refund"]


def test_several_oos_shares_share_the_fits_but_not_the_thresholds() -> None:
    from models.intents.fit import fit_intents_for_shares

    x, y = blobs(40)
    keep = [i for i, label in enumerate(y) if label != "other" or i % 8 == 0]
    x, y = x[keep], [y[i] for i in keep]
    none = np.zeros((0, 8), np.float32)
    together = fit_intents_for_shares(x, y, none, [], [None, 0.5], val_fraction=0.3, folds=1)
    for share, result in zip([None, 0.5], together, strict=True):
        alone = fit_intents(x, y, none, [], val_fraction=0.3, oos_share=share, folds=1)
        assert result.head.threshold == alone.head.threshold
        assert result.metrics["trials"] == alone.metrics["trials"]
        np.testing.assert_allclose(result.head.weight, alone.head.weight, atol=1e-5)
    assert together[1].head.threshold >= together[0].head.threshold


def test_fine_tuning_never_tunes_on_the_rows_that_choose_the_head(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``fit_fine_tuned`` tunes once without the held-out rows (nor config rows that
    repeat them) to choose the head, then once on every row for the encoder it saves."""
    import zlib

    from models.intents import job as train_intents
    from models.intents.fine_tune import FineTuneConfig
    from models.intents.fit import stratified_split

    tuned_on: list[list[str]] = []

    def fake_tune(texts: list[str], labels: list[str], out: Path, *args: object) -> dict:  # type: ignore[type-arg]
        tuned_on.append(list(texts))
        Path(out).mkdir(parents=True, exist_ok=True)
        return {"rows": len(texts)}

    class WordVectors:  # stands in for the tuned encoder: a vector per word, summed
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.info = {"name": "words", "dim": 16, "fingerprint": "w", "quantized": False}

        def embed(self, texts: list[str]) -> np.ndarray:
            out = np.zeros((len(texts), 16), np.float32)
            for row, text in enumerate(texts):
                for word in text.split():
                    out[row] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=16)
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    monkeypatch.setattr(train_intents, "fine_tune_encoder", fake_tune)
    monkeypatch.setattr(train_intents, "TextEmbedder", WordVectors)
    texts, labels = keyword_rows(40, seed=3)
    _, val = stratified_split(labels, 0.2, 0)
    repeated = int(val[0])  # a config example that repeats a held-out row
    got = train_intents.fit_fine_tuned(
        texts, labels, [texts[repeated], "refund please"], [labels[repeated], "refund"],
        tmp_path / "encoder", FineTuneConfig(epochs=1),
    )  # fmt: skip
    choose_on, final = tuned_on
    assert not {texts[i] for i in val} & set(choose_on)
    assert "refund please" in choose_on
    assert set(final) == {*texts, "refund please"}
    assert got.encoder_identity["path"] == "encoder" and got.tuning == {"rows": len(final)}
    assert "encoder tuned without it" in str(got.result.metrics["validation"])
    assert got.result.metrics["n_rows"] == 40
