"""Traffic capture (ROUTER_CAPTURE__*): a row per sampled request, images stored once, files
private to their owner, rotated by size, and never a slower or failed request."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from app.capture.writer import CaptureWriter
from app.server.factory import create_app
from models.core.errors import ConfigError
from models.core.routing_config import RoutingConfig
from models.labeling.capture_images import inline_images
from tests.helpers import app_client, data_url, image_message, make_settings, png_bytes, user

CHAT = "/v1/chat/completions"
CONFIG = RoutingConfig.model_validate(
    {
        "models": [
            {"name": "alpha", "base_url": "http://alpha.test/v1"},
            {"name": "eyes", "vision": True, "base_url": "http://eyes.test/v1"},
        ]
    }
)


def rows(directory: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(directory.glob("capture-*.jsonl")):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return out


def settings(directory: Path, **capture: Any) -> Any:
    return make_settings(capture={"path": str(directory), **capture})


async def test_every_request_is_captured_with_its_decision(tmp_path: Path) -> None:
    prompts = [f"question number {i}" for i in range(20)]
    async with app_client(settings(tmp_path), config=CONFIG) as client:
        for i, text in enumerate(prompts):
            resp = await client.post(
                CHAT, json={"messages": [user(text)]}, headers={"x-request-id": f"req-{i}"}
            )
            assert resp.status_code == 200
        bad = await client.post(CHAT, json={"messages": []})  # refused: not captured
        assert bad.status_code == 400
    got = rows(tmp_path)  # the lifespan's end writes what is queued
    assert [r["messages"] for r in got] == [[user(t)] for t in prompts]
    assert [r["request_id"] for r in got] == [f"req-{i}" for i in range(20)]
    first = got[0]
    assert first["decision"] == {
        "model": "alpha", "strategy": "fake", "intent": "fake_intent", "reason": "fake"
    }  # fmt: skip
    assert first["mode"] == "recommend" and first["stream"] is False
    assert first["time"].endswith("+00:00")
    (path,) = tmp_path.glob("capture-*.jsonl")
    assert f"-{os.getpid()}-" in path.name  # one file per worker process
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


async def test_images_are_stored_once_and_can_be_put_back(tmp_path: Path) -> None:
    red, blue = data_url(png_bytes(color=(250, 0, 0))), data_url(png_bytes(color=(0, 0, 250)))
    sent = [
        [image_message("what is this?", red)],
        [image_message("and this?", red, blue)],
        [image_message("again", red), {"role": "assistant", "content": "red"}, user("thanks")],
    ]
    async with app_client(settings(tmp_path), config=CONFIG) as client:
        for messages in sent:
            assert (await client.post(CHAT, json={"messages": messages})).status_code == 200
    images = sorted((tmp_path / "images").iterdir())
    assert len(images) == 2  # the red image three times, stored once
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in images)
    got = rows(tmp_path)
    url = got[1]["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("images/") and url.endswith(".png") and "base64" not in url
    assert [inline_images(r["messages"], tmp_path) for r in got] == sent


async def test_images_can_be_dropped(tmp_path: Path) -> None:
    red = data_url(png_bytes())
    async with app_client(settings(tmp_path, images="drop"), config=CONFIG) as client:
        resp = await client.post(CHAT, json={"messages": [image_message("look", red)]})
        assert resp.status_code == 200
    (row,) = rows(tmp_path)
    assert row["messages"][0]["content"][1] == {"type": "text", "text": "[image not captured]"}
    assert not (tmp_path / "images").exists()
    assert b"base64" not in next(tmp_path.glob("capture-*.jsonl")).read_bytes()


@pytest.mark.parametrize("rate,low,high", [(0.0, 0, 0), (0.5, 140, 260), (1.0, 400, 400)])
async def test_sample_rate(tmp_path: Path, rate: float, low: int, high: int) -> None:
    async with app_client(settings(tmp_path, sample_rate=rate), config=CONFIG) as client:
        for _ in range(400):
            assert (await client.post(CHAT, json={"messages": [user("hi")]})).status_code == 200
    assert low <= len(rows(tmp_path)) <= high  # 0.5: binomial(400), mean 200, sd 10


async def test_a_full_buffer_drops_rows_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck, original = threading.Event(), CaptureWriter._write

    def slow_write(self: CaptureWriter, batch: list[Any]) -> None:
        stuck.wait(30)  # the disk has stalled
        original(self, batch)

    monkeypatch.setattr(CaptureWriter, "_write", slow_write)
    async with app_client(settings(tmp_path, queue_size=5), config=CONFIG) as client:
        statuses = [
            (await client.post(CHAT, json={"messages": [user(f"m{i}")]})).status_code
            for i in range(50)
        ]
        metrics = (await client.get("/metrics")).text
        stuck.set()
    assert statuses == [200] * 50  # requests neither wait nor fail
    dropped = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('llm_router_capture_dropped_total{reason="queue_full"}')
    )
    written = len(rows(tmp_path))
    assert dropped >= 40  # one row in the stalled write, five queued, the rest dropped
    assert written + dropped == 50


async def test_files_rotate_by_size(tmp_path: Path) -> None:
    text = "x" * 1500
    async with app_client(settings(tmp_path, max_file_bytes=4096), config=CONFIG) as client:
        for i in range(30):
            await client.post(CHAT, json={"messages": [user(f"{i} {text}")]})
            await asyncio.sleep(0.002)  # let the writer take rows a few at a time
    files = sorted(tmp_path.glob("capture-*.jsonl"))
    assert len(files) >= 8
    assert all(p.stat().st_size <= 4096 for p in files)
    assert sorted(int(r["messages"][0]["content"].split()[0]) for r in rows(tmp_path)) == list(
        range(30)
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_proxy_mode_records_status_answering_model_and_usage(
    tmp_path: Path, stream: bool
) -> None:
    from tests.upstream_server import UpstreamServer

    with UpstreamServer(name="up") as upstream:
        config = RoutingConfig.model_validate(
            {
                "models": [
                    {"name": "alpha", "base_url": upstream.base_url},
                    {"name": "eyes", "vision": True, "base_url": upstream.base_url},
                ]
            }
        )
        upstream.state.modes["alpha"] = "error:503"  # the chosen model fails: eyes answers
        async with app_client(
            make_settings(mode="proxy", capture={"path": str(tmp_path)}), config=config
        ) as client:
            body = {"messages": [user("hello there friend")], "stream": stream}
            resp = await client.post(CHAT, json=body)
            assert resp.status_code == 200
            reported = upstream.state.usage[-1]
    (row,) = rows(tmp_path)
    assert row["mode"] == "proxy" and row["status"] == 200 and row["stream"] is stream
    assert row["decision"]["model"] == "alpha" and row["answered_by"] == "eyes"
    assert row["usage"]["prompt_tokens"] == reported["prompt_tokens"]
    assert row["usage"]["completion_tokens"] == reported["completion_tokens"]


def test_an_unwritable_directory_fails_at_startup(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="ROUTER_CAPTURE__PATH"):
        create_app(settings(blocker / "capture"), config=CONFIG)


async def test_prompts_are_not_logged_when_captured(tmp_path: Path) -> None:
    secret = "my social security number is 078-05-1120"
    with structlog.testing.capture_logs() as logs:
        async with app_client(settings(tmp_path), config=CONFIG) as client:
            await client.post(CHAT, json={"messages": [user(secret)]})
    assert secret not in repr(logs)
    assert rows(tmp_path)[0]["messages"][0]["content"] == secret


async def test_collect_sends_captured_images_as_they_were_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.main import main
    from tests.upstream_server import UpstreamServer

    picture = data_url(png_bytes(color=(10, 200, 10)))
    sent = [image_message("what is in this picture?", picture)]
    capture = tmp_path / "capture"
    async with app_client(settings(capture), config=CONFIG) as client:
        assert (await client.post(CHAT, json={"messages": sent})).status_code == 200
    (captured,) = capture.glob("capture-*.jsonl")
    with UpstreamServer(name="up") as upstream:
        config = tmp_path / "routing.yaml"
        config.write_text(
            f"models:\n  - name: eyes\n    vision: true\n    base_url: {upstream.base_url}\n"
        )
        args = ["collect", str(captured), "--config", str(config), "--models", "eyes"]
        code = await asyncio.to_thread(
            main, [*args, "--out", str(tmp_path / "answers.jsonl"), "--no-progress"]
        )
        assert code == 0, capsys.readouterr()
        (request,) = upstream.state.requests
    assert request["body"]["messages"] == sent  # the image as the client sent it
