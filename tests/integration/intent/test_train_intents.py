"""`llm-router train-intents` end to end with the real packaged MiniLM on ~50 rows:
train -> DIR/routing.yaml serves with the head -> eval reports per-intent and
out-of-scope numbers; a head with lexical n-gram features serves exactly the head's
offline probabilities; a config's examples_file feeds the untrained backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import app_client, make_settings, startup_error, user
from tests.integration.auto.test_cli_route_eval import cli

pytestmark = pytest.mark.embedding

BASE = """\
models:
  - name: big
    cost: 1.0
  - name: small
    cost: 0.1
intents:
  - name: weather
    description: questions about the weather forecast, rain, temperature
    model: small
  - name: coding
    description: writing or debugging program code
    model: big
    examples: ["fix this python function"]
  - name: other
    description: anything else
    model: small
"""
WEATHER = ["will it rain tomorrow", "how hot is it today", "is it sunny in Paris",
           "forecast for the weekend", "do I need an umbrella", "temperature tonight",
           "will it snow this week", "is a storm coming", "how windy is it outside",
           "what's the weather in Rome"]  # fmt: skip
CODING = ["my python loop is too slow", "write a sql query for top salaries",
          "why does this java code throw a null pointer", "implement quicksort in rust",
          "refactor this javascript function", "debug my segfault in C",
          "how do I reverse a linked list in go", "unit test this method",
          "fix the off-by-one error in my code", "write a bash script to rename files"]  # fmt: skip
OTHER = ["book a table for two", "what's the capital of Peru", "play some jazz",
         "translate hello to german", "set an alarm for 7", "who won the game last night",
         "order a pizza", "how many cups in a litre", "call my mother",
         "recommend a novel"]  # fmt: skip


def rows(texts: list[str], intent: str) -> list[str]:
    return [json.dumps({"text": t, "intent": intent}) for t in texts]


PROBE = "is my python code going to rain errors tomorrow?"  # between the two intents


def served_embedder(encoder: str = "minilm", runtime: str = "onnx", **kwargs: object) -> Any:
    """The intent backend's encoder as the service runs it by default (ONNX Runtime, the
    test session's export cache), for a head's offline probabilities."""
    import os

    from models.encoders.runtime import EncoderRuntime
    from models.intents.head import TextEmbedder

    where = EncoderRuntime(runtime, os.environ["ROUTER_ENCODER__CACHE_DIR"])  # type: ignore[arg-type]
    return TextEmbedder(encoder, cache_dir=None, runtime=where, **kwargs)  # type: ignore[arg-type]


async def served_scores(config: Path, text: str) -> dict[str, float]:
    """``router.scores`` of one decision by the service running ``config``."""
    settings = make_settings(strategy="intent", config=str(config))
    async with app_client(settings) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user(text)]})
        assert resp.status_code == 200, resp.text
        return resp.json()["router"]["scores"]  # type: ignore[no-any-return]


def with_encoder_entry(trained_dir: Path, copy: Path, **encoder: object) -> Path:
    """A copy of a train-intents output whose manifest's ``encoder`` entries are replaced."""
    import shutil

    shutil.copytree(trained_dir, copy)
    manifest_path = copy / "intent-head/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["encoder"].update(encoder)
    manifest_path.write_text(json.dumps(manifest))
    return copy


def torch_int8_identity() -> dict[str, Any]:
    """The fingerprint a head trained on torch's int8 encoder records (taken from the
    quantized module, so it differs from the full-precision weights' one)."""
    return {"fingerprint": served_embedder(runtime="torch").info["fingerprint"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("intents")
    (root / "base.yaml").write_text(BASE)
    lines = rows(WEATHER, "weather") + rows(CODING, "coding") + rows(OTHER, "")
    lines += [json.dumps({"messages": [user("is it going to be cold")], "intent": "weather"})]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    proc = cli("train-intents", str(root / "train.jsonl"), "--config", str(root / "base.yaml"),
               "--out", str(root / "out"), "--cache-dir", str(root / "cache"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "intent head written" in proc.stdout
    return root


def test_artifact_records_encoder_labels_threshold(trained: Path) -> None:
    manifest = json.loads((trained / "out/intent-head/manifest.json").read_text())
    assert manifest["encoder"]["name"] == "all-MiniLM-L6-v2"
    assert manifest["encoder"]["quantized"] == "int8-per-channel"
    assert manifest["encoder"]["runtime"] == "onnx"  # the default on CPU, as served
    assert manifest["encoder"]["fingerprint"]
    assert set(manifest["labels"]) == {"weather", "coding", "other"}
    assert 0.0 <= manifest["threshold"] < 1.0
    assert manifest["metrics"]["n_rows"] == 31
    assert "intent_classifier: intent-head" in (trained / "out/routing.yaml").read_text()


def test_eval_reports_per_intent_and_out_of_scope(trained: Path) -> None:
    test = rows(["rain expected on monday?", "is it cold in Oslo"], "weather")
    test += rows(["my rust code does not compile", "write a python class"], "coding")
    test += rows(["buy concert tickets", "what time is it in Tokyo"], "other")
    (trained / "test.jsonl").write_text("\n".join(test) + "\n")
    out = trained / "report.json"
    proc = cli("eval", str(trained / "test.jsonl"), "--config", str(trained / "out/routing.yaml"),
               "--strategy", "intent", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["intent_classifier"] == "intent-head"
    assert set(report["per_intent"]) >= {"weather", "coding", "other"}
    assert report["out_of_scope_recall"] is not None and report["accuracy"] >= 4 / 6
    assert "out-of-scope recall" in proc.stdout
    assert report["intent_head"]["labels"] == 3 and "intent head:" in proc.stdout


async def test_serving_uses_the_head(trained: Path) -> None:
    settings = make_settings(strategy="intent", config=str(trained / "out/routing.yaml"))
    async with app_client(settings) as client:
        resp = await client.post("/v1/chat/completions", json={
            "messages": [user("will it rain in London tomorrow?")]})  # fmt: skip
        assert resp.status_code == 200, resp.text
        router = resp.json()["router"]
        assert router["intent"] == "weather" and router["model"] == "small"
        assert set(router["scores"]) == {"weather", "coding", "other"}


async def test_lexical_head_serves_its_offline_probabilities(trained: Path) -> None:
    """--features lexical: the artifact carries the n-gram vocabulary, and the service's
    scores are the head's probabilities for the embedding *and* the text."""
    from models.intents.head import clip_text, load_head

    out = trained / "lexical"
    proc = cli("train-intents", str(trained / "train.jsonl"), "--config",
               str(trained / "base.yaml"), "--out", str(out), "--features", "lexical",
               "--cache-dir", str(trained / "cache"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "features embedding+lexical" in proc.stdout
    head, manifest = load_head(out / "intent-head")
    assert manifest["features"]["lexical"]["n_features"] > 0
    assert (out / "intent-head" / "vocabulary.json").is_file() and head.lexical is not None

    text = PROBE
    x = served_embedder().embed([text])
    want = dict(zip(head.labels, head.probabilities(x, [clip_text(text)])[0], strict=True))
    embedding_only = head.logits(x, [""])  # the same head with no n-gram evidence
    assert not np.allclose(embedding_only, head.logits(x, [text]), atol=1e-3)
    got = await served_scores(out / "routing.yaml", text)
    for label, p in want.items():
        assert got[label] == pytest.approx(float(p), abs=2e-3)
    (trained / "one.jsonl").write_text(json.dumps({"text": text, "intent": "coding"}) + "\n")
    proc = cli("eval", str(trained / "one.jsonl"), "--config", str(out / "routing.yaml"),
               "--strategy", "intent", "--out", str(trained / "lexical-report.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((trained / "lexical-report.json").read_text())
    assert report["intent_head"]["features"] == "embedding+lexical"
    n_grams = manifest["features"]["lexical"]["n_features"]
    assert report["intent_head"]["lexical_features"] == n_grams


def test_unknown_intent_in_data_is_an_error_naming_it(trained: Path) -> None:
    (trained / "bad.jsonl").write_text('{"text": "hi", "intent": "greeting"}\n')
    proc = cli("train-intents", str(trained / "bad.jsonl"), "--config",
               str(trained / "base.yaml"), "--out", str(trained / "bad"))  # fmt: skip
    assert proc.returncode == 2
    assert "greeting" in proc.stderr and "not in the routing config" in proc.stderr


async def test_examples_file_adds_references(tmp_path: Path) -> None:
    (tmp_path / "ex.jsonl").write_text("\n".join(rows(WEATHER, "weather")) + "\n")
    (tmp_path / "r.yaml").write_text(BASE + "examples_file: ex.jsonl\n")
    settings = make_settings(strategy="intent", config=str(tmp_path / "r.yaml"))
    async with app_client(settings) as client:
        resp = await client.post("/v1/chat/completions", json={
            "messages": [user("do I need an umbrella tomorrow?")]})  # fmt: skip
        assert resp.json()["router"]["intent"] == "weather"


def _separation(x: np.ndarray, labels: list[str]) -> float:
    """Mean cosine to same-intent rows minus mean cosine to other rows."""
    sims = x @ x.T
    same = np.equal.outer(labels, labels) & ~np.eye(len(labels), dtype=bool)
    other = ~np.equal.outer(labels, labels)
    return float(sims[same].mean() - sims[other].mean())


def test_fine_tuning_pulls_each_intent_together(tmp_path: Path) -> None:
    """The tuned encoder separates the intents it was tuned on better than the packaged
    one, and its loss goes down; the directory loads as a sentence encoder."""
    from models.encoders.sentence import SentenceEncoder
    from models.intents.fine_tune import FineTuneConfig, fine_tune_encoder

    texts = WEATHER + CODING + OTHER
    labels = ["weather"] * 10 + ["coding"] * 10 + ["other"] * 10
    report = fine_tune_encoder(texts, labels, tmp_path / "enc", FineTuneConfig(epochs=6))
    assert report["steps"] == 6 and report["rows"] == 30
    assert report["loss_last_epoch"] < report["loss_first_epoch"]
    before = SentenceEncoder().encode(texts)
    after = SentenceEncoder(str(tmp_path / "enc")).encode(texts)
    assert after.shape == before.shape
    gained = _separation(after, labels) - _separation(before, labels)
    assert gained > 0.03, gained


@pytest.fixture(scope="module")
def tuned(trained: Path) -> Path:
    out = trained / "tuned"
    proc = cli("train-intents", str(trained / "train.jsonl"), "--config",
               str(trained / "base.yaml"), "--out", str(out), "--fine-tune", "2",
               "--cache-dir", str(trained / "cache"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "intent head written" in proc.stdout and "fine-tuned" in proc.stdout
    return out


def test_fine_tuned_head_records_its_encoder(trained: Path, tuned: Path) -> None:
    manifest = json.loads((tuned / "intent-head/manifest.json").read_text())
    frozen = json.loads((trained / "out/intent-head/manifest.json").read_text())
    assert manifest["encoder"]["path"] == "encoder"
    assert (tuned / "intent-head/encoder/config.json").is_file()
    assert manifest["encoder"]["fingerprint"] != frozen["encoder"]["fingerprint"]
    tuning = manifest["training"]["fine_tune"]
    assert tuning["epochs"] == 2 and tuning["rows"] == 31 + 4  # + the config's rows
    assert "encoder tuned without it" in manifest["metrics"]["validation"]
    assert frozen["training"]["fine_tune"] is None


async def test_serving_runs_the_fine_tuned_encoder(tuned: Path) -> None:
    """The service's scores are the head's probabilities over the *tuned* encoder's
    embedding; the packaged encoder's would differ."""
    from models.intents.head import clip_text, load_head

    head, manifest = load_head(tuned / "intent-head")
    assert manifest["encoder"]["runtime"] == "onnx"
    text = PROBE
    probs = {}
    for name, encoder in (("tuned", str(tuned / "intent-head/encoder")), ("packaged", "minilm")):
        x = served_embedder(encoder).embed([text])
        probs[name] = head.probabilities(x, [clip_text(text)])[0]
    assert not np.allclose(probs["tuned"], probs["packaged"], atol=1e-2)
    got = await served_scores(tuned / "routing.yaml", text)
    for label, p in zip(head.labels, probs["tuned"], strict=True):
        assert got[label] == pytest.approx(float(p), abs=2e-3)


@pytest.mark.parametrize("where", ["missing", "../../out/intent-head"])
async def test_a_bad_bundled_encoder_path_fails_startup(
    tuned: Path, tmp_path: Path, where: str
) -> None:
    """A manifest naming an encoder directory that is absent, or outside the head's
    directory, stops the start with a message naming it."""
    copy = with_encoder_entry(tuned, tmp_path / "tuned", path=where)
    settings = make_settings(strategy="intent", config=str(copy / "routing.yaml"))
    message = await startup_error(settings)
    assert f"names a fine-tuned encoder at '{where}'" in message


def test_fine_tune_needs_a_whole_number_of_epochs(trained: Path) -> None:
    proc = cli("train-intents", str(trained / "train.jsonl"), "--config",
               str(trained / "base.yaml"), "--out", str(trained / "x"),
               "--fine-tune", "-1")  # fmt: skip
    assert proc.returncode == 2 and "--fine-tune" in proc.stderr


def test_per_channel_int8_stays_closer_to_full_precision() -> None:
    """Why per-channel is the default int8 scheme: its embeddings are nearer the fp32
    ones than per-tensor int8's, at the same speed."""
    from models.encoders.sentence import SentenceEncoder

    texts = WEATHER + CODING + OTHER
    full = SentenceEncoder().encode(texts)
    drift = {}
    for scheme in ("int8-per-tensor", "int8-per-channel"):
        got = SentenceEncoder(quantize=scheme).encode(texts)
        drift[scheme] = float(1.0 - (got * full).sum(axis=1).mean())
    assert drift["int8-per-channel"] < 0.7 * drift["int8-per-tensor"], drift


async def test_heads_from_before_per_channel_keep_per_tensor_int8(
    trained: Path, tmp_path: Path
) -> None:
    """A head whose manifest says ``quantized: true`` (written before schemes were
    recorded) is served with the per-tensor int8 encoder it was trained with."""
    from models.intents.head import TextEmbedder, clip_text, load_head

    copy = with_encoder_entry(
        trained / "out", tmp_path / "legacy", quantized=True, runtime=None, **torch_int8_identity()
    )
    head, _ = load_head(copy / "intent-head")
    text = PROBE
    probs = {}
    for scheme in ("int8-per-tensor", "int8-per-channel"):
        x = TextEmbedder(quantize=scheme, cache_dir=None).embed([text])
        probs[scheme] = head.probabilities(x, [clip_text(text)])[0]
    assert not np.allclose(probs["int8-per-tensor"], probs["int8-per-channel"], atol=1e-4)
    got = await served_scores(copy / "routing.yaml", text)
    for label, p in zip(head.labels, probs["int8-per-tensor"], strict=True):
        assert got[label] == pytest.approx(float(p), abs=1e-5)


@pytest.mark.parametrize(
    ("recorded", "configured", "served"),
    [(None, "onnx", "torch"), ("torch", "onnx", "torch"), ("onnx", "torch", "onnx")],
)
async def test_an_int8_head_is_served_on_the_runtime_it_was_trained_on(
    trained: Path, tmp_path: Path, recorded: str | None, configured: str, served: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """torch's and ONNX Runtime's int8 vectors differ a little, so an int8 head keeps the
    runtime its manifest records, whatever ROUTER_ENCODER__RUNTIME says; heads written
    before the ONNX runtime (no record) were trained on torch."""
    from models.intents.head import clip_text, load_head

    torch_made = torch_int8_identity() if served == "torch" else {}
    copy = with_encoder_entry(trained / "out", tmp_path / "head", runtime=recorded, **torch_made)
    head, _ = load_head(copy / "intent-head")
    probs = {rt: head.probabilities(served_embedder(runtime=rt).embed([PROBE]),
                                    [clip_text(PROBE)])[0] for rt in ("onnx", "torch")}  # fmt: skip
    assert not np.allclose(probs["onnx"], probs["torch"], atol=1e-4)
    monkeypatch.setenv("ROUTER_ENCODER__RUNTIME", configured)
    got = await served_scores(copy / "routing.yaml", PROBE)
    for label, p in zip(head.labels, probs[served], strict=True):
        assert got[label] == pytest.approx(float(p), abs=1e-5)


async def test_a_full_precision_head_serves_on_either_runtime(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 vectors agree across runtimes (~1e-7): a full-precision head trained on
    torch serves on ONNX Runtime, with the same scores."""
    copy = with_encoder_entry(trained / "out", tmp_path / "fp32", quantized=False, runtime="torch")
    monkeypatch.setenv("ROUTER_INTENT__QUANTIZE", "false")
    scores = {}
    for runtime in ("torch", "onnx"):
        monkeypatch.setenv("ROUTER_ENCODER__RUNTIME", runtime)
        scores[runtime] = await served_scores(copy / "routing.yaml", PROBE)
    for label, p in scores["torch"].items():
        assert scores["onnx"][label] == pytest.approx(p, abs=1e-5)
