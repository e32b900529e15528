"""``llm-router label``: reference scorers and the LLM judge (a loopback upstream that
answers good verdicts, garbage, and scores that disagree with the reference), judge
spend, resuming, and output rows that ``llm-router train`` reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.evaluation.data import score_matrix
from tests.netguard import loopback_only  # noqa: F401
from tests.unit.loop.loop_support import (
    calls,
    cli,
    cost_of,
    echo,
    prompts,
    read_jsonl,
    write_config,
    write_jsonl,
)
from tests.upstream_server import Scripted, UpstreamServer

pytestmark = pytest.mark.usefixtures("loopback_only")
USAGE = {"prompt_tokens": 100, "completion_tokens": 40}


def answer(pid: str, model: str, text: str | None, ref: Any = None, **extra: Any) -> dict:
    row = {
        "id": pid, "model": model, "messages": [{"role": "user", "content": pid + "?"}],
        "status": "ok", "answer": text, "usage": USAGE, "cost_usd": 0.5,
    }  # fmt: skip
    if ref is not None:
        row["reference"] = ref
    return row | extra


def label(tmp_path: Path, *extra: str) -> list[str]:
    return ["label", str(tmp_path / "answers.jsonl"), "--out", str(tmp_path / "train.jsonl"),
            *extra]  # fmt: skip


def test_reference_number_scores_groups_and_counts_what_is_left_out(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        answer("q0", "cheap", "So the total is $1,234.", "1234", task="math"),
        answer("q0", "strong", "1234, or rather 1235", "1234", task="math"),
        answer("q1", "cheap", "7", "7"),
        answer("q1", "strong", None, "7", status="error", error="HTTP 503"),
        answer("q2", "cheap", "5", None),
        answer("q2", "strong", "5", None),
        answer("q3", "cheap", "5", "5"),  # strong never ran on q3
        answer("q4", "cheap", "x = -3", "-3"),
        answer("q4", "strong", "3-3", "-3"),
    ]
    write_jsonl(tmp_path / "answers.jsonl", rows)
    config = write_config(tmp_path, upstream.base_url)
    code, out, _ = cli(label(tmp_path, "--reference", "number", "--config", str(config)), capsys)
    assert code == 0, out
    train = read_jsonl(tmp_path / "train.jsonl")
    assert [(r["id"], r["scores"]) for r in train] == [
        ("q0", {"cheap": 1.0, "strong": 0.0}),
        ("q4", {"cheap": 1.0, "strong": 0.0}),
    ]
    costs = train[0]["costs"]  # usage x the config's prices, not the recorded 0.5
    assert abs(costs["cheap"] - cost_of("cheap", USAGE)) < 1e-12
    assert abs(costs["strong"] - cost_of("strong", USAGE)) < 1e-12
    assert train[0]["task"] == "math" and train[0]["reference"] == "1234"
    assert train[0]["messages"] == [{"role": "user", "content": "q0?"}]
    assert "2 training rows written, 0 there before, 3 left out" in out
    for reason in ("no answer from some model: 1", "some model's call failed: 1",
                   "no score for some answer: 1"):  # fmt: skip
        assert f"left out, {reason}" in out
    assert upstream.state.requests == []  # reference scoring calls nothing

    code, out, _ = cli(label(tmp_path, "--reference", "number", "--config", str(config)), capsys)
    assert code == 0 and "0 training rows written, 2 there before" in out
    assert len(read_jsonl(tmp_path / "train.jsonl")) == 2


@pytest.mark.parametrize(
    ("mode", "cheap", "strong", "ref", "scores"),
    [
        ("exact", "**Paris.**", "Paris, France", "paris", (1.0, 0.0)),
        ("exact", "ＰＡＲＩＳ", "<think>Lyon?</think> Paris", "Paris", (1.0, 1.0)),
        ("contains", "It is 42.", "It is 4.", "4", (0.0, 1.0)),
        ("contains", "the Eiffel  Tower!", "Eiffel", "eiffel tower", (1.0, 0.0)),
        ("number", "about 10,000 steps", "10.000", 10000, (1.0, 0.0)),
    ],
)
def test_reference_modes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    cheap: str,
    strong: str,
    ref: Any,
    scores: tuple[float, float],
) -> None:
    rows = [answer("q", "cheap", cheap, ref), answer("q", "strong", strong, ref)]
    write_jsonl(tmp_path / "answers.jsonl", rows)
    code, out, _ = cli(label(tmp_path, "--reference", mode), capsys)
    assert code == 0, out
    (row,) = read_jsonl(tmp_path / "train.jsonl")
    assert (row["scores"]["cheap"], row["scores"]["strong"]) == scores
    assert row["costs"] == {"cheap": 0.5, "strong": 0.5}  # no --config: the recorded costs


def test_no_costs_when_a_model_has_no_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [answer("q", "cheap", "1", "1"), answer("q", "strong", "1", "1", cost_usd=None)]
    write_jsonl(tmp_path / "answers.jsonl", rows)
    code, out, _ = cli(label(tmp_path, "--reference", "exact"), capsys)
    assert code == 0 and "no costs written: no prices for ['strong']" in out
    (row,) = read_jsonl(tmp_path / "train.jsonl")
    assert "costs" not in row and row["scores"] == {"cheap": 1.0, "strong": 1.0}


# -- the judge --------------------------------------------------------------------

JUDGE_USAGE = {"prompt_tokens": 300, "completion_tokens": 20}


def graded(body: dict[str, Any]) -> str:
    text = body["messages"][0]["content"]
    return re.search(r"\[Answer to grade\]\n(.*?)\n\nExplain", text, re.S).group(1)  # type: ignore[union-attr]


class Judge:
    """A loopback judge: strong answers are good, cheap ones poor; q1's cheap answer
    gets garbage every time, q2's garbage once; q0's cheap answer equals the reference,
    and the judge still rates it 2."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, body: dict[str, Any], n: int) -> Scripted | None:
        if body["model"] != "judge":
            return echo(body, n)
        what = graded(body)
        self.seen[what] = self.seen.get(what, 0) + 1
        if what.startswith("strong"):
            verdict = "Correct and complete.\nRating: [[9]]"
        elif what == "cheap: q1?" or (what == "cheap: q2?" and self.seen[what] == 1):
            verdict = "This answer is an answer."
        elif what == "cheap: q0?":
            verdict = "Too terse.\nRating: [[2]]"
        else:
            verdict = "Partly right, 4/10"
        return Scripted(content=verdict, usage=JUDGE_USAGE)


def collected(tmp_path: Path, upstream: UpstreamServer, capsys: Any) -> Path:
    rows = prompts(4)
    rows[0]["reference"] = "cheap: q0?"
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    config = write_config(tmp_path, upstream.base_url)
    args = [
        "collect", str(tmp_path / "prompts.jsonl"), "--config", str(config),
        "--models", "cheap,strong", "--out", str(tmp_path / "answers.jsonl"),
    ]  # fmt: skip
    assert cli(args, capsys)[0] == 0
    upstream.state.requests.clear()
    return config


def test_judge_scores_retries_garbage_once_and_reports_its_spend(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = Judge()
    upstream.state.script = judge
    config = collected(tmp_path, upstream, capsys)
    args = label(tmp_path, "--judge", "judge", "--config", str(config), "--backoff-s", "0.01")
    code, out, _ = cli(args, capsys)
    assert code == 0, out
    train = {r["id"]: r for r in read_jsonl(tmp_path / "train.jsonl")}
    assert sorted(train) == ["q0", "q2", "q3"]  # q1: no verdict for cheap, left out
    assert train["q0"]["scores"] == {"cheap": pytest.approx(1 / 9), "strong": pytest.approx(8 / 9)}
    assert train["q2"]["scores"]["cheap"] == pytest.approx(3 / 9)  # garbage, then 4/10
    assert train["q3"]["scores"]["cheap"] == pytest.approx(3 / 9)
    assert judge.seen["cheap: q1?"] == 2 and judge.seen["cheap: q2?"] == 2
    assert len(upstream.state.requests) == 10  # 8 answers + 2 second asks
    body = upstream.state.requests[0]["body"]
    assert body["model"] == "judge" and body["temperature"] == 0 and body["stream"] is False
    q0 = next(r["body"] for r in upstream.state.requests if graded(r["body"]) == "cheap: q0?")
    assert "[Reference answer]\ncheap: q0?" in q0["messages"][0]["content"]
    # spend: 10 calls of 300 + 20 tokens at the judge's prices, exactly
    usd = 10 * cost_of("judge", JUDGE_USAGE)
    line = next(x for x in out.splitlines() if re.match(r"judge +\d", x))
    assert line.split()[1:6] == ["10", "0", "3,000", "200", f"{usd:.6f}"]
    assert "8 answers judged now, 0 before; 1 verdicts missing" in out
    assert "left out, no score for some answer: 1" in out
    verdicts = read_jsonl(tmp_path / "train.jsonl.verdicts.jsonl")
    assert len(verdicts) == 8
    missing = next(v for v in verdicts if v["id"] == "q1" and v["model"] == "cheap")
    assert missing["rating"] is None and missing["score"] is None and missing["judge_calls"] == 2
    assert abs(missing["judge_cost_usd"] - 2 * cost_of("judge", JUDGE_USAGE)) < 1e-12

    upstream.state.requests.clear()  # a rerun: nothing judged twice
    code, out, _ = cli(args, capsys)
    assert code == 0 and upstream.state.requests == []
    assert "0 training rows written, 3 there before" in out
    (tmp_path / "train.jsonl").unlink()  # even without the output, verdicts are kept
    code, out, _ = cli(args, capsys)
    assert code == 0 and upstream.state.requests == [] and "0 answers judged now, 8 before" in out
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "train.jsonl")) == ["q0", "q2", "q3"]


def test_a_failed_judge_call_is_not_recorded_and_is_tried_again(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = Judge()
    broken = {"on": True}

    def script(body: dict[str, Any], n: int) -> Scripted | None:
        if body["model"] == "judge" and broken["on"] and graded(body) == "strong: q3?":
            return Scripted(status=503)
        return judge(body, n)

    upstream.state.script = script
    config = collected(tmp_path, upstream, capsys)
    args = label(tmp_path, "--judge", "judge", "--config", str(config), "--retries", "1",
                 "--backoff-s", "0.01")  # fmt: skip
    code, out, _ = cli(args, capsys)
    assert code == 0 and "1 judge calls failed" in out
    assert "q3" not in {r["id"] for r in read_jsonl(tmp_path / "train.jsonl")}
    broken["on"] = False
    upstream.state.requests.clear()
    code, out, _ = cli(args, capsys)
    assert code == 0 and [graded(r["body"]) for r in upstream.state.requests] == ["strong: q3?"]
    assert "q3" in {r["id"] for r in read_jsonl(tmp_path / "train.jsonl")}


def test_judge_prompt_file_replaces_the_rubric(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.state.script = lambda body, n: (
        Scripted(content="[[10]]", usage=JUDGE_USAGE) if body["model"] == "judge" else echo(body, n)
    )
    config = collected(tmp_path, upstream, capsys)
    rubric = tmp_path / "rubric.txt"
    rubric.write_text('Q: {question}\nA: {answer}\nR: {reference}\n{"json": "kept"}')
    args = label(tmp_path, "--judge", "judge", "--config", str(config), "--judge-prompt",
                 str(rubric), "--concurrency", "1")  # fmt: skip
    assert cli(args, capsys)[0] == 0
    sent = [r["body"]["messages"][0]["content"] for r in upstream.state.requests]
    assert sent[0] == 'Q: q0?\nA: cheap: q0?\nR: cheap: q0?\n{"json": "kept"}'
    assert sent[2] == 'Q: q1?\nA: cheap: q1?\nR: \n{"json": "kept"}'
    assert all(s["scores"] == {"cheap": 1.0, "strong": 1.0}
               for s in read_jsonl(tmp_path / "train.jsonl"))  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge", "judge"], "--judge needs --config"),
        (["--judge", "nope", "--config", "CONFIG"], "--judge nope: not a model of the routing"),
        (["--reference", "exact", "--judge-prompt", "RUBRIC"], "--judge-prompt: only with"),
        (["--reference", "exact", "--models", "cheap,nope"], "--models: ['nope'] have no answers"),
        (["--judge", "judge", "--config", "CONFIG", "--judge-prompt", "RUBRIC"],
         "the judge prompt needs {answer}"),
    ],
)  # fmt: skip
def test_bad_label_arguments_exit_2(
    tmp_path: Path,
    upstream: UpstreamServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("ROUTER_CONFIG", raising=False)
    write_jsonl(tmp_path / "answers.jsonl", [answer("q", "cheap", "1", "1")])
    config = write_config(tmp_path, upstream.base_url)
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("grade {question}")
    extra = [str(config) if e == "CONFIG" else str(rubric) if e == "RUBRIC" else e for e in extra]
    code, _, err = cli(label(tmp_path, *extra), capsys)
    assert code == 2 and message in err, err
    assert upstream.state.requests == []


# -- what train reads -------------------------------------------------------------


class _FakeEncoder:
    name, version, dim, fingerprint, supports_images = "fake", "v1", 8, "f" * 16, False


def test_train_reads_the_labelled_rows(
    tmp_path: Path,
    upstream: UpstreamServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """collect -> label --reference -> train, end to end (a fake encoder stands in for
    MiniLM: this checks the file format, not the router)."""
    from models.training import job as train_job

    def script(body: dict[str, Any], n: int) -> Scripted:
        i = int(body["messages"][0]["content"][1:-1])
        right = body["model"] == "strong" or i % 2 == 0  # cheap is right on even prompts
        text = f"the answer is {i if right else i + 1}"
        return Scripted(content=text, usage={"prompt_tokens": 20, "completion_tokens": 10})

    upstream.state.script = script
    write_jsonl(tmp_path / "prompts.jsonl", prompts(40, reference=True))
    config = write_config(tmp_path, upstream.base_url)
    collect = [
        "collect", str(tmp_path / "prompts.jsonl"), "--config", str(config),
        "--models", "cheap,strong", "--out", str(tmp_path / "answers.jsonl"),
    ]  # fmt: skip
    assert cli(collect, capsys)[0] == 0
    code, out, _ = cli(label(tmp_path, "--reference", "number", "--config", str(config)), capsys)
    assert code == 0 and "40 training rows written" in out
    rows = read_jsonl(tmp_path / "train.jsonl")
    scores, costs = score_matrix(rows, ["cheap", "strong"], "train.jsonl")
    assert scores.mean(axis=0).tolist() == [0.5, 1.0]
    assert costs is not None
    np.testing.assert_allclose(costs[0], [cost_of(m, {"prompt_tokens": 20,
                                                      "completion_tokens": 10})
                                          for m in ("cheap", "strong")])  # fmt: skip

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    monkeypatch.setattr(train_job, "build_encoder", lambda *a, **k: _FakeEncoder())
    monkeypatch.setattr(train_job, "embed_cached", lambda enc, convs, *a, **k: x)
    art = tmp_path / "art"
    train = ["train", str(tmp_path / "train.jsonl"), "--out", str(art), "--epochs", "2",
             "--hidden", "8", "--cache-dir", "", "--model", "knn", "--prior", "global",
             "--folds", "2"]  # fmt: skip
    code, out, err = cli(train, capsys)
    assert code == 0, err
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["models"] == ["cheap", "strong"]
    assert calls(upstream) and len(calls(upstream)) == 80
