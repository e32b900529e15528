"""With ROUTER_LOG_FORMAT=json every line the server writes is JSON, library loggers
(uvicorn, sentence-transformers, transformers, httpx, warnings) included, and prompts
are not logged."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import running_server

SECRET = "zebra-pineapple-secret-prompt"


@pytest.mark.embedding
@pytest.mark.slow
def test_every_startup_and_request_line_is_json(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    env = {
        "ROUTER_LOG_FORMAT": "json",
        "ROUTER_LOG_LEVEL": "debug",  # the most library lines
        "ROUTER_STRATEGY": "intent",  # loads the packaged MiniLM via sentence-transformers
        "PYTHONWARNINGS": "default",
    }
    with running_server(env, output=log) as (base, _proc):
        body = {"messages": [{"role": "user", "content": SECRET}]}
        assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code == 200
        assert httpx.get(f"{base}/nope", timeout=5).status_code == 404
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) >= 3
    events = []
    for line in lines:
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    loggers = {e.get("logger") for e in events}
    assert "uvicorn.error" in loggers, loggers  # "Started server process", "Uvicorn running"
    assert any(e["event"] == "route_decided" for e in events)
    assert SECRET not in log.read_text()
