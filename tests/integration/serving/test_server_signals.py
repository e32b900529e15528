"""A real ``llm-router serve`` process: SIGTERM drains in-flight requests (a streaming
response completes) and the process exits 0, not 143."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.helpers import running_server, user


@contextmanager
def serve(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with running_server({"ROUTER_STRATEGY": "tests.fakes:SlowFakeStrategy", **env}, timeout=60) as (
        base,
        proc,
    ):
        yield proc, base


def test_sigterm_exits_0_after_a_clean_drain() -> None:
    with serve({}) as (proc, _):
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        output = proc.stdout.read() if proc.stdout else ""
    assert rc == 0, output


def test_sigterm_during_a_streaming_response_lets_it_complete() -> None:
    result: dict[str, object] = {}

    def stream(base: str) -> None:
        body = {"messages": [user("hi")], "stream": True}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            result["status"] = r.status_code
            result["body"] = b"".join(r.iter_bytes())

    with serve({"FAKE_ROUTE_DELAY_S": "1.5"}) as (proc, base):
        client = threading.Thread(target=stream, args=(base,))
        client.start()
        time.sleep(0.7)  # the request is in flight (routing takes 1.5 s)
        proc.send_signal(signal.SIGTERM)
        client.join(timeout=30)
        rc = proc.wait(timeout=30)
        output = proc.stdout.read() if proc.stdout else ""
    assert result.get("status") == 200, output
    assert isinstance(result.get("body"), bytes)
    assert result["body"].endswith(b"data: [DONE]\n\n")  # type: ignore[union-attr]
    assert rc == 0, output


def test_drain_timeout_bounds_how_long_sigterm_waits_for_requests_in_flight() -> None:
    """ROUTER_DRAIN_TIMEOUT_S: a request that would take a minute does not hold the
    shutdown past the drain timeout (the default, 10 s, would)."""
    outcome: dict[str, object] = {}

    def slow(base: str) -> None:
        try:
            r = httpx.post(
                f"{base}/v1/chat/completions", json={"messages": [user("hi")]}, timeout=90
            )
            outcome["status"] = r.status_code
        except httpx.HTTPError as exc:
            outcome["error"] = type(exc).__name__

    with serve({"FAKE_ROUTE_DELAY_S": "60", "ROUTER_DRAIN_TIMEOUT_S": "1"}) as (proc, base):
        client = threading.Thread(target=slow, args=(base,))
        client.start()
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=8)  # TimeoutExpired if the drain waited for the request
        client.join(timeout=30)
    assert "status" not in outcome or outcome["status"] != 200, outcome
