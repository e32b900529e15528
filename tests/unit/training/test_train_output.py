"""What ``llm-router train`` tells the user and writes (issue 21, part 8): a summary that
names what the artifact serves (no empty budget lines, no router numbers passed off as
the artifact's when it is a single model), a routing.yaml that serves in proxy mode as
written (upstreams and prices from ``train --config``), and no tokenizer length warning
from the MiniLM encoder on text it cuts on purpose."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.evaluation.summary import print_training  # noqa: E402
from models.training.operating import fraction_budgets  # noqa: E402
from models.training.selection import choose  # noqa: E402
from tests.helpers import app_client, make_settings, user  # noqa: E402
from tests.unit.training.test_cost_aware import issue_case, run  # noqa: E402
from tests.upstream_server import UpstreamServer  # noqa: E402

DIM = 8


def _report(chosen: dict[str, Any]) -> dict[str, Any]:
    return {"recommended": {"policy": "utility", "validation": "5-fold CV", **chosen}}


def test_a_single_model_summary_has_no_empty_lines_and_no_borrowed_router_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(1)
    n = 400
    scores = np.stack([rng.random(n) < 0.6, rng.random(n) < 0.9], axis=1).astype(np.float32)
    costs = np.tile(np.array([1e-4, 1e-3], np.float32), (n, 1))
    chosen = choose({"knn-k5": rng.random((n, 2))}, scores.mean(axis=0), scores, costs,
                    costs.mean(axis=0) * 1000, ["small", "large"], [0.05, 0.5, 2.0])  # fmt: skip
    assert chosen["decision"]["mode"] == "single"
    chosen["by_budget"]["0.5"]["router"] = None  # a budget with a single model and no router
    print_training(_report(chosen), "out")
    text = capsys.readouterr().out
    assert "single model large" in text and "serves always large" in text
    assert (
        ":;" not in text
        and ": ;" not in text
        and not any(line.rstrip().endswith(":") for line in text.splitlines())
    )
    assert "budget 0.05/1k: no router point within it; no single model within it" in text
    assert "budget 0.5/1k: no router point within it; best single small" in text
    # the router's points are shown as what they are: not what the artifact serves
    assert re.search(r"budget 2/1k: router \(not served\) 0\.\d+ at", text)
    assert not re.search(r"router \d", text)
    assert "<- served" not in text


def test_a_router_summary_marks_the_served_point_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = issue_case()
    budgets, record = fraction_budgets(data["scores"], data["costs"], ["small", "large"])
    chosen = run(data, budgets, explicit=False)
    chosen["operating_points"] = record
    for key, fraction in record["fractions"].items():
        chosen["by_budget"][key]["fraction"] = fraction
    print_training(_report(chosen), "out")
    text = capsys.readouterr().out
    assert "operating points: fractions of large's mean cost (0.05/1k)" in text
    served = [line for line in text.splitlines() if line.endswith("<- served")]
    large_q = f"{data['scores'][:, 1].mean():.3f}"  # 0.923 in this sample
    assert len(served) == 1
    assert f"budget 0.0375/1k (0.75x): router {large_q} at 0.0258" in served[0]
    assert f"serves budget 0.0375/1k (0.75x): {large_q} at 0.0258" in text
    assert "as good as the best single model (within the margin) at a lower cost" in text


class _Encoder:
    """'kind0 ...' and 'kind1 ...' prompts embed onto two axes (anything else: between),
    each prompt jittered by its text."""

    name, version, dim, fingerprint, supports_images = "fake", "v1", DIM, "f" * 16, False

    def embed(self, conversations: list[Any]) -> np.ndarray:
        out = np.full((len(conversations), DIM), 0.1, dtype=np.float32)
        for i, conv in enumerate(conversations):
            text = conv.latest_user_text()
            out[i, 2:] += np.random.default_rng(zlib.crc32(text.encode())).random(DIM - 2) * 0.1
            if text.startswith("kind"):
                out[i, int(text[4])] = 3.0
        return out


def _data(path: Path, n: int = 300) -> Path:
    """The issue's data: small right on every kind0 prompt, large on all of kind0 and ~91%
    of kind1; costs 0.002 and 0.05 $/1k."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        kind = i % 2
        rows.append({
            "messages": [{"role": "user", "content": f"kind{kind} question {i}"}],
            "scores": {"small": float(kind == 0), "large": float(kind == 0 or rng.random() < 0.91)},
            "costs": {"small": 2e-6, "large": 5e-5},
        })  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _base_config(path: Path, upstream: UpstreamServer) -> Path:
    path.write_text(
        f"""models:
  - name: small
    base_url: {upstream.base_url}
    api_key_env: TRAIN_TEST_SMALL_KEY
    upstream_model: up-small
    headers: {{x-team: routing}}
    timeout_s: 7
    input_price_per_1m: 0.1
    output_price_per_1m: 0.4
  - name: large
    base_url: {upstream.base_url}
    api_key_env: TRAIN_TEST_LARGE_KEY
    upstream_model: up-large
    vision: true
    input_price_per_1m: 2.5
    output_price_per_1m: 10
  - name: unused
    base_url: {upstream.base_url}
fallback_model: small
"""
    )
    return path


@pytest.fixture
def upstream() -> Any:
    with UpstreamServer("upstream") as server:
        yield server


async def test_train_config_copies_upstreams_and_the_written_config_proxies(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    upstream: UpstreamServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    from app.cli.main import main
    from models.core.routing_config import load_routing_config
    from models.encoders import conversation as encoders
    from models.training import job as train_run

    monkeypatch.setattr(train_run, "build_encoder", lambda *a, **k: _Encoder())
    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _Encoder())
    out = tmp_path / "art"
    base = _base_config(tmp_path / "collected.yaml", upstream)
    code = await asyncio.to_thread(main, [
        "train", str(_data(tmp_path / "train.jsonl")), "--out", str(out), "--write-config",
        "--config", str(base), "--model", "knn", "--cache-dir", "", "--no-progress",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "<- served" in capsys.readouterr().out
    written = yaml.safe_load((out / "routing.yaml").read_text())
    small, large = written["models"]
    assert small == {
        "name": "small", "cost": 0.002, "threshold": 0.5, "vision": False,
        "base_url": upstream.base_url, "api_key_env": "TRAIN_TEST_SMALL_KEY",
        "upstream_model": "up-small", "headers": {"x-team": "routing"}, "timeout_s": 7.0,
        "input_price_per_1m": 0.1, "output_price_per_1m": 0.4,
    }  # fmt: skip
    assert large["vision"] is True and large["upstream_model"] == "up-large"
    assert large["cost"] == 0.05  # the data's cost, which cost_weight was chosen against
    assert written["fallback_model"] == "small"
    config = load_routing_config(out / "routing.yaml")
    assert config.model_names == ["small", "large"]

    monkeypatch.setenv("TRAIN_TEST_SMALL_KEY", "sk-small")
    monkeypatch.setenv("TRAIN_TEST_LARGE_KEY", "sk-large")
    settings = make_settings(strategy="auto", mode="proxy", config=str(out / "routing.yaml"))
    async with app_client(settings) as client:
        for text in ("kind0 what is 2 + 2?", "kind1 write a poem"):
            resp = await client.post("/v1/chat/completions", json={"messages": [user(text)]})
            assert resp.status_code == 200, resp.text
    got = [(r["model"], r["headers"]["authorization"], r["headers"].get("x-team"))
           for r in upstream.state.requests]  # fmt: skip
    assert got == [
        ("up-small", "Bearer sk-small", "routing"),
        ("up-large", "Bearer sk-large", None),
    ]


def test_train_config_must_define_every_trained_model(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.main import main

    base = tmp_path / "collected.yaml"
    base.write_text(f"models:\n  - {{name: small, base_url: {upstream.base_url}}}\n")
    code = main(["train", str(_data(tmp_path / "train.jsonl", 20)), "--out", str(tmp_path / "a"),
                 "--config", str(base), "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "scores models it does not define: large (configured: small)" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.embedding
def test_minilm_cuts_long_text_without_a_tokenizer_length_warning(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The auto strategy's warm-up ('warm up ' x 200, 402 tokens) and any long prompt are
    tokenized whole on purpose to find their tail; transformers must not warn that the
    sequence is longer than the model's maximum (what eval printed on short prompts)."""
    from models.core.conversation import Conversation
    from models.encoders.conversation import build_encoder

    enc = build_encoder("minilm", max_tokens=128)
    tokenizer = enc._encoder._model.tokenizer  # type: ignore[attr-defined]
    tokenizer.deprecation_warnings.clear()
    vectors = enc.embed([Conversation.from_text("warm up " * 200), Conversation.from_text("hi")])
    assert vectors.shape == (2, 384)
    assert not tokenizer.deprecation_warnings
    assert "Token indices sequence length" not in capfd.readouterr().err
    # the cut is still token-exact: the kept tail fits the encoder
    ids = tokenizer(enc._truncate("user: " + "warm up " * 200), add_special_tokens=False)  # type: ignore[attr-defined]
    assert len(ids["input_ids"]) <= 128
