"""``llm-router collect`` against a real loopback upstream: every pair answered once,
exact token and dollar counts, retries, recorded errors, --max-usd, resuming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.loop.calls import RetryPolicy
from app.loop.collect import CollectJob, run_collect
from app.settings import ProxySettings
from models.core.routing_config import load_routing_config
from models.labeling.prompts import read_prompts
from tests.helpers import free_port
from tests.netguard import loopback_only  # noqa: F401
from tests.unit.loop.loop_support import (
    calls,
    cli,
    cost_of,
    echo,
    prompts,
    read_jsonl,
    usage_of,
    user_text,
    write_config,
    write_jsonl,
)
from tests.upstream_server import Scripted, UpstreamServer

pytestmark = pytest.mark.usefixtures("loopback_only")
FAST = ["--backoff-s", "0.01"]


def collect(tmp_path: Path, config: Path, models: str, *extra: str) -> list[str]:
    return [
        "collect", str(tmp_path / "prompts.jsonl"), "--config", str(config),
        "--models", models, "--out", str(tmp_path / "answers.jsonl"), *FAST, *extra,
    ]  # fmt: skip


def test_every_pair_is_answered_once_with_exact_tokens_and_dollars(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.state.script = echo
    write_jsonl(tmp_path / "prompts.jsonl", prompts(5, reference=True))
    config = write_config(tmp_path, upstream.base_url)
    args = collect(tmp_path, config, "cheap,strong", "--max-tokens", "64", "--temperature", "0.2")
    code, out, _ = cli(args, capsys)
    assert code == 0, out
    assert sorted(calls(upstream)) == sorted(
        (m, f"q{i}?") for i in range(5) for m in ("cheap", "strong")
    )
    # concurrent calls may arrive in any order: look at q0's, whichever came first
    body = next(r["body"] for r in upstream.state.requests if user_text(r["body"]) == "q0?")
    assert body["stream"] is False and body["max_tokens"] == 64 and body["temperature"] == 0.2
    assert body["messages"] == [{"role": "user", "content": "q0?"}]
    rows = read_jsonl(tmp_path / "answers.jsonl")
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}
    first = next(r for r in rows if r["id"] == "q3" and r["model"] == "strong")
    assert first["answer"] == "strong: q3?" and first["reference"] == "3"
    assert first["messages"] == [{"role": "user", "content": "q3?"}]
    assert first["attempts"] == 1 and first["http_status"] == 200 and first["error"] is None
    want_usage = usage_of({"messages": first["messages"]}, first["answer"])
    assert first["usage"] == {**want_usage, "cached_tokens": 0}
    assert abs(first["cost_usd"] - cost_of("strong", want_usage)) < 1e-12
    # the summary: per-model tokens and dollars are the sums of the rows, exactly
    for model in ("cheap", "strong"):
        mine = [r for r in rows if r["model"] == model]
        tokens_in = sum(r["usage"]["prompt_tokens"] for r in mine)
        tokens_out = sum(r["usage"]["completion_tokens"] for r in mine)
        usd = sum(cost_of(model, r["usage"]) for r in mine)
        line = next(x for x in out.splitlines() if x.startswith(model + " "))
        assert line.split()[1:6] == ["5", "0", str(tokens_in), str(tokens_out), f"{usd:.6f}"]
    assert "10 pairs (5 prompts x 2 models): 0 answered before, 10 answered now" in out


def test_report_totals_are_exact(tmp_path: Path, upstream: UpstreamServer) -> None:
    upstream.state.script = echo
    write_jsonl(tmp_path / "p.jsonl", prompts(7))
    config = load_routing_config(write_config(tmp_path, upstream.base_url))
    job = CollectJob(
        prompts=read_prompts([tmp_path / "p.jsonl"])[0], models=["cheap", "strong"],
        out=tmp_path / "a.jsonl", concurrency=3, progress=False,
    )  # fmt: skip
    report = asyncio.run(run_collect(job, config, ProxySettings()))
    want_usd = 0.0
    want_tokens = 0
    for i in range(7):
        for model in ("cheap", "strong"):
            usage = usage_of({"messages": [{"content": f"q{i}?"}]}, f"{model}: q{i}?")
            want_usd += cost_of(model, usage)
            want_tokens += usage["prompt_tokens"] + usage["completion_tokens"]
    assert abs(report.spend.usd - want_usd) < 1e-9
    assert report.spend.tokens == want_tokens and report.spend.calls == 14
    assert report.spend.errors == 0 and report.not_started == 0 and report.stopped is None


def test_a_rerun_calls_nothing_answered_and_retries_what_failed(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def script(body: dict[str, Any], n: int) -> Scripted:
        if body["model"] == "strong" and body["messages"][0]["content"] == "q1?":
            return Scripted(status=400)  # a client error: recorded, not retried
        return echo(body, n)

    upstream.state.script = script
    write_jsonl(tmp_path / "prompts.jsonl", prompts(3))
    config = write_config(tmp_path, upstream.base_url)
    code, out, _ = cli(collect(tmp_path, config, "cheap,strong"), capsys)
    assert code == 0 and len(upstream.state.requests) == 6
    failed = [r for r in read_jsonl(tmp_path / "answers.jsonl") if r["status"] == "error"]
    assert [(r["id"], r["model"], r["http_status"], r["attempts"]) for r in failed] == [
        ("q1", "strong", 400, 1)
    ]
    assert "up failed on purpose" in failed[0]["error"] and failed[0]["answer"] is None
    assert "1 failed" in out and "rerun the same command for the 1 left" in out

    upstream.state.requests.clear()
    upstream.state.script = echo
    code, out, _ = cli(collect(tmp_path, config, "cheap,strong"), capsys)
    assert code == 0 and calls(upstream) == [("strong", "q1?")]
    assert "5 answered before, 1 answered now, 0 failed" in out
    upstream.state.requests.clear()
    code, out, _ = cli(collect(tmp_path, config, "cheap,strong"), capsys)
    assert code == 0 and upstream.state.requests == []
    assert "6 answered before, 0 answered now" in out


def test_429_and_503_are_retried_with_backoff_and_retry_after(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = [
        Scripted(status=429, headers={"retry-after": "1"}),
        Scripted(status=503),
        Scripted(status=503),
    ]

    def script(body: dict[str, Any], n: int) -> Scripted:
        return plan.pop(0) if plan else echo(body, n)

    upstream.state.script = script
    write_jsonl(tmp_path / "prompts.jsonl", prompts(1))
    config = write_config(tmp_path, upstream.base_url)
    code, out, _ = cli(collect(tmp_path, config, "cheap"), capsys)
    assert code == 0, out
    times = [r["time"] for r in upstream.state.requests]
    assert len(times) == 4
    assert times[1] - times[0] >= 1.0  # the upstream's retry-after was waited
    assert times[2] - times[1] < 1.0  # then the (tiny) backoff
    (row,) = read_jsonl(tmp_path / "answers.jsonl")
    assert row["status"] == "ok" and row["attempts"] == 4 and row["answer"] == "cheap: q0?"
    line = next(x for x in out.splitlines() if x.startswith("cheap "))
    assert line.split()[1:3] == ["1", "0"]  # one call, no error


def test_errors_are_recorded_per_call_and_the_run_goes_on(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """503 every time (retries exhausted), a closed port (connect errors, retried), a read
    timeout after the request was sent (not retried: it may have been billed)."""

    def script(body: dict[str, Any], n: int) -> Scripted:
        if body["model"] == "strong":
            return Scripted(status=503)
        if body["model"] == "judge":
            return Scripted(delay_s=1.0)
        return echo(body, n)

    upstream.state.script = script
    write_jsonl(tmp_path / "prompts.jsonl", prompts(2))
    closed = f"http://127.0.0.1:{free_port()}/v1"
    config = write_config(
        tmp_path, upstream.base_url, judge={"timeout_s": 0.2}, cheap={"base_url": closed}
    )
    args = collect(tmp_path, config, "cheap,strong,judge", "--retries", "2")
    code, out, _ = cli(args, capsys)
    assert code == 0
    rows = {(r["id"], r["model"]): r for r in read_jsonl(tmp_path / "answers.jsonl")}
    assert len(rows) == 6 and {r["status"] for r in rows.values()} == {"error"}
    strong, cheap, judge = rows[("q0", "strong")], rows[("q0", "cheap")], rows[("q0", "judge")]
    assert (strong["attempts"], strong["http_status"], strong["error"]) == (3, 503, "HTTP 503")
    assert cheap["attempts"] == 3 and cheap["error"].startswith("connection error")
    assert judge["attempts"] == 1 and judge["error"].startswith("timeout")
    assert len(calls(upstream, "strong")) == 6 and len(calls(upstream, "judge")) == 2
    assert "6 failed" in out


def test_max_usd_stops_starting_calls(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 0}  # $0.003 a call on strong
    upstream.state.script = lambda body, n: Scripted(content="x", usage=usage)
    write_jsonl(tmp_path / "prompts.jsonl", prompts(10))
    config = write_config(tmp_path, upstream.base_url)
    args = collect(tmp_path, config, "strong", "--max-usd", "0.0075", "--concurrency", "1")
    code, out, _ = cli(args, capsys)
    assert code == 0
    assert len(upstream.state.requests) == 3  # 0.003, 0.006, 0.009 >= 0.0075: stop
    assert len(read_jsonl(tmp_path / "answers.jsonl")) == 3
    assert "stopped: --max-usd 0.0075 reached ($0.009000 spent)" in out
    assert "7 not started" in out


def test_max_usd_finishes_the_calls_in_flight(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 0}
    upstream.state.script = lambda body, n: Scripted(content="x", usage=usage, delay_s=0.3)
    write_jsonl(tmp_path / "prompts.jsonl", prompts(10))
    config = write_config(tmp_path, upstream.base_url)
    args = collect(tmp_path, config, "strong", "--max-usd", "0.001", "--concurrency", "4")
    code, out, _ = cli(args, capsys)
    assert code == 0
    rows = read_jsonl(tmp_path / "answers.jsonl")
    assert len(upstream.state.requests) == 4 and len(rows) == 4  # all paid for, all kept
    assert {r["status"] for r in rows} == {"ok"} and "6 not started" in out


def test_capture_and_text_rows_are_prompts(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.state.script = echo
    capture = [
        {
            "time": "2026-12-06T10:00:00.000Z", "request_id": f"req-{i}",
            "messages": [{"role": "user", "content": f"captured {i}"}],
            "decision": {"model": "cheap", "strategy": "auto", "intent": None, "reason": "r"},
            "status": 200, "usage": {"prompt_tokens": 2, "completion_tokens": 3},
        }
        for i in range(3)
    ]  # fmt: skip
    write_jsonl(tmp_path / "capture-0.jsonl", capture)
    write_jsonl(tmp_path / "prompts.jsonl", [{"text": "plain"}, {"text": "plain"}])
    config = write_config(tmp_path, upstream.base_url)
    args = [
        "collect", str(tmp_path / "capture-0.jsonl"), str(tmp_path / "prompts.jsonl"),
        "--config", str(config), "--models", "cheap", "--out", str(tmp_path / "a.jsonl"),
    ]  # fmt: skip
    code, out, _ = cli(args, capsys)
    assert code == 0
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [r["id"] for r in rows[:3]] == ["req-0", "req-1", "req-2"]
    assert rows[3]["id"].startswith("p-") and rows[3]["answer"] == "cheap: plain"
    assert "1 repeated prompt rows" in out and len(upstream.state.requests) == 4


def test_a_torn_last_line_is_repaired_and_only_that_pair_is_rerun(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.state.script = echo
    write_jsonl(tmp_path / "prompts.jsonl", prompts(3))
    config = write_config(tmp_path, upstream.base_url)
    assert cli(collect(tmp_path, config, "cheap,strong", "--concurrency", "1"), capsys)[0] == 0
    answers = tmp_path / "answers.jsonl"
    data = answers.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    answers.write_bytes(data[: len(data) - len(last) // 2 - 1])  # killed mid-write
    torn = json.loads(last)
    upstream.state.requests.clear()
    code, out, _ = cli(collect(tmp_path, config, "cheap,strong"), capsys)
    assert code == 0 and calls(upstream) == [(torn["model"], f"{torn['id']}?")]
    assert "cut off a torn last line" in out
    rows = read_jsonl(answers)  # valid JSONL again, every pair once
    assert sorted((r["id"], r["model"]) for r in rows) == sorted(
        (f"q{i}", m) for i in range(3) for m in ("cheap", "strong")
    )


def test_the_key_comes_from_api_key_env_and_a_missing_one_stops_before_any_call(
    tmp_path: Path,
    upstream: UpstreamServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.state.script = echo
    write_jsonl(tmp_path / "prompts.jsonl", prompts(1))
    config = write_config(
        tmp_path, upstream.base_url, cheap={"api_key_env": "CHEAP_KEY", "headers": {"x-t": "1"}}
    )
    monkeypatch.delenv("CHEAP_KEY", raising=False)
    code, _, err = cli(collect(tmp_path, config, "cheap"), capsys)
    assert code == 2 and "API key env var CHEAP_KEY is not set" in err
    assert upstream.state.requests == []
    monkeypatch.setenv("CHEAP_KEY", "sk-test-1")
    assert cli(collect(tmp_path, config, "cheap"), capsys)[0] == 0
    headers = upstream.state.requests[0]["headers"]
    assert headers["authorization"] == "Bearer sk-test-1" and headers["x-t"] == "1"
    assert "sk-test-1" not in (tmp_path / "answers.jsonl").read_text()


@pytest.mark.parametrize(
    ("models", "extra", "rows", "message"),
    [
        ("cheap,nope", [], None, "--models: ['nope'] not in the routing config"),
        ("cheap", [], [{"id": "x"}], "prompts.jsonl row 1: expected 'messages'"),
        ("cheap", [], [], "the prompts files have no rows"),
        ("unpriced", ["--max-usd", "1"], None, "--max-usd needs prices"),
        ("cheap", ["--out", "/nonexistent/dir/a.jsonl"], None, "not a file in an existing"),
    ],
)
def test_bad_input_exits_2_before_any_call(
    tmp_path: Path,
    upstream: UpstreamServer,
    capsys: pytest.CaptureFixture[str],
    models: str,
    extra: list[str],
    rows: list[dict[str, Any]] | None,
    message: str,
) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", prompts(1) if rows is None else rows)
    config = write_config(tmp_path, upstream.base_url)
    text = json.loads(config.read_text())
    text["models"].append({"name": "unpriced", "base_url": upstream.base_url})
    config.write_text(json.dumps(text))
    code, _, err = cli(collect(tmp_path, config, models, *extra), capsys)
    assert code == 2 and message in err, err
    assert upstream.state.requests == []


def test_the_retry_policy_backs_off_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=5, backoff_s=1.0, max_backoff_s=8.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        assert base / 2 <= policy.delay(attempt, None) <= base
    assert policy.delay(1, 5.0) == 5.0


def test_a_long_retry_after_ends_the_call(tmp_path: Path, upstream: UpstreamServer) -> None:
    upstream.state.script = lambda body, n: Scripted(status=429, headers={"retry-after": "3600"})
    write_jsonl(tmp_path / "p.jsonl", prompts(1))
    config = load_routing_config(write_config(tmp_path, upstream.base_url))
    job = CollectJob(read_prompts([tmp_path / "p.jsonl"])[0], ["cheap"], tmp_path / "a.jsonl")
    job.progress = False
    report = asyncio.run(run_collect(job, config, ProxySettings()))
    (row,) = read_jsonl(tmp_path / "a.jsonl")
    assert report.spend.errors == 1 and row["attempts"] == 1 and row["http_status"] == 429
    assert "retry-after 3600 s is over 60 s" in row["error"]
