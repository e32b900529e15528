"""The CPU image for real: built with podman, started as docker-compose's `cpu` profile
with podman-compose, health-checked, asked for decisions through the published loopback
port, scraped by a real Prometheus server, stopped.

The tests in this module share one running container and run in file order (the last
one stops it). Timings (build, time to healthy, image size) go to .cache/deploy-timings.json.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from models.core.routing_config import load_routing_config
from tests.deploy.files import COMPOSE, ROOT
from tests.deploy.tools import (
    BUILD_TIMEOUT_S,
    IMAGE,
    build_args,
    ensure_base_image,
    free_port,
    podman_env,
    require_podman,
    run,
    tool,
)
from tests.helpers import data_url, image_message, png_bytes, user

pytestmark = pytest.mark.deploy

PROJECT = "llm-router-citest"
HEALTHY_TIMEOUT_S = 300
TIMINGS = ROOT / ".cache" / "deploy-timings.json"
CONFIG = load_routing_config(ROOT / "app" / "default_config.yaml")


def _record(**values: Any) -> None:
    TIMINGS.parent.mkdir(exist_ok=True)
    old = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    TIMINGS.write_text(json.dumps({**old, **values}, indent=2) + "\n")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    podman = require_podman()
    t0 = time.monotonic()
    ensure_base_image(podman)
    t1 = time.monotonic()
    args = build_args(tmp_path_factory.mktemp("build"))
    run(
        [
            podman,
            "build",
            "--format",
            "docker",
            "-f",
            str(ROOT / "Dockerfile"),
            "-t",
            IMAGE,
            *args,
            str(ROOT),
        ],
        timeout=BUILD_TIMEOUT_S,
    )
    size = int(run([podman, "image", "inspect", "--format", "{{.Size}}", IMAGE]).stdout)
    _record(
        base_image_s=round(t1 - t0, 1),
        build_s=round(time.monotonic() - t1, 1),
        image_bytes=size,
        image_mb=round(size / 1e6),
    )
    return podman


def _compose(podman_compose: str, port: int, *args: str, timeout: float = 300) -> None:
    env = {**podman_env(), "LLM_ROUTER_PUBLISH": f"127.0.0.1:{port}"}
    cmd = [podman_compose, "-f", str(COMPOSE), "-p", PROJECT, "--profile", "cpu", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def stack(image: str) -> Iterator[dict[str, Any]]:
    """`podman-compose --profile cpu up -d` on a free loopback port, until healthy."""
    podman, compose = image, tool("podman-compose")
    port = free_port()
    _compose(compose, port, "down", "-t", "5")  # leftovers of an interrupted run
    t0 = time.monotonic()
    _compose(compose, port, "up", "-d", "--no-build")
    try:
        name = run(
            [
                podman,
                "ps",
                "-a",
                "--filter",
                f"label=io.podman.compose.project={PROJECT}",
                "--format",
                "{{.Names}}",
            ]
        ).stdout.split()[0]
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while run([podman, "healthcheck", "run", name], check=False).returncode != 0:
            state = run([podman, "inspect", "--format", "{{.State.Status}}", name]).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                logs = run([podman, "logs", "--tail", "40", name], check=False)
                pytest.fail(f"container {state}, not healthy:\n{logs.stdout}{logs.stderr}")
            time.sleep(1)
        _record(time_to_healthy_s=round(time.monotonic() - t0, 1))
        yield {"podman": podman, "name": name, "url": f"http://127.0.0.1:{port}"}
    finally:
        _compose(compose, port, "down", "-t", "10")


def _ask(url: str, message: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "router", "messages": [message]}, timeout=60
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["choices"][0]["message"]["content"] == body["router"]["model"]
    return body


def test_health_status_and_settings(stack: dict[str, Any]) -> None:
    podman, name = stack["podman"], stack["name"]
    health = run([podman, "inspect", "--format", "{{.State.Health.Status}}", name]).stdout
    assert health.strip() == "healthy"
    assert httpx.get(f"{stack['url']}/health", timeout=10).status_code == 200
    assert run([podman, "exec", name, "id", "-u"]).stdout.strip() == "10001"
    # compose's read_only: the root filesystem refuses writes, /tmp (tmpfs) takes them
    assert run([podman, "exec", name, "touch", "/opt/x"], check=False).returncode != 0
    run([podman, "exec", name, "touch", "/tmp/x"])


def test_text_and_image_decisions(stack: dict[str, Any]) -> None:
    names = {m.name for m in CONFIG.models}
    text = _ask(stack["url"], user("Prove that sqrt(2) is irrational, step by step."))
    assert text["router"]["strategy"] == "intent"
    assert text["router"]["model"] in names
    picture = _ask(stack["url"], image_message("What is in this picture?", data_url(png_bytes())))
    vision = {m.name for m in CONFIG.models if m.vision}
    assert picture["router"]["model"] in vision


def test_metrics_endpoint(stack: dict[str, Any]) -> None:
    text = httpx.get(f"{stack['url']}/metrics", timeout=10).text
    assert "llm_router_decisions_total{" in text
    assert "llm_router_decision_duration_seconds_bucket{" in text
    assert "llm_router_ready 1.0" in text


def _prom_query(base: str, query: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=10)
    assert resp.status_code == 200, resp.text
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


def test_prometheus_scrapes_the_router(stack: dict[str, Any], tmp_path: Path) -> None:
    """The Debian Prometheus with the project's scrape config and alert rules, pointed at
    the container's loopback port: the decision counter and latency histogram arrive
    with their labels, the alert rules load."""
    prom_port, target = free_port(), stack["url"].removeprefix("http://")
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(ROOT / "deploy" / "prometheus" / r) for r in cfg["rule_files"]]
    (job,) = cfg["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        for i in range(5):
            _ask(stack["url"], user(f"good morning! ({i})"))
        deadline = time.monotonic() + 90
        decisions: list[dict[str, Any]] = []
        buckets: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (decisions and buckets):
            time.sleep(1)
            try:
                decisions = _prom_query(base, 'llm_router_decisions_total{job="llm-router"}')
                buckets = _prom_query(base, "llm_router_decision_duration_seconds_bucket")
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert decisions, "no decision counter in Prometheus"
        labels = decisions[0]["metric"]
        assert {"strategy", "model", "intent", "reason", "instance"} <= set(labels)
        assert labels["strategy"] == "intent" and labels["model"] in {m.name for m in CONFIG.models}
        assert sum(float(d["value"][1]) for d in decisions) >= 5
        assert {b["metric"]["strategy"] for b in buckets} == {"intent"}
        assert {"le"} <= set(buckets[0]["metric"])
        assert _prom_query(base, 'up{job="llm-router"} == 1')
        rules = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        alerts = {r["name"] for g in rules for r in g["rules"]}
        assert {
            "LLMRouterNotReady",
            "LLMRouterHighErrorRatio",
            "LLMRouterDecisionLatencyP99High",
            "LLMRouterFallbackRatioHigh",
            "LLMRouterRejectingRequests",
            "LLMRouterUpstreamFailures",
        } <= alerts
        firing = [r["name"] for g in rules for r in g["rules"] if r.get("state") == "firing"]
        assert not firing, f"alerts firing on a healthy router: {firing}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_image_has_no_compilers_or_caches(stack: dict[str, Any]) -> None:
    podman, name = stack["podman"], stack["name"]
    found = run(
        [
            podman,
            "exec",
            name,
            "sh",
            "-c",
            "command -v gcc cc g++ make; ls -d /root/.cache/pip "
            "/home/router/.cache 2>/dev/null; true",
        ]
    ).stdout
    assert found.strip() == "", found


def test_auto_strategy_with_the_shipped_minilm_artifact(stack: dict[str, Any]) -> None:
    """The image's other offline mode, as the README documents it: auto with MiniLM."""
    podman = stack["podman"]
    artifact = "/opt/llm-router/artifacts/routerbench-minilm"
    proc = run(
        [
            podman,
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--network",
            "none",
            "-e",
            "ROUTER_STRATEGY=auto",
            "-e",
            f"ROUTER_CONFIG={artifact}/routing.yaml",
            IMAGE,
            "route",
            "Write a Python function that reverses a list.",
            "--json",
        ],
        timeout=300,
    )
    decision = json.loads(proc.stdout)
    models = {
        m.name
        for m in load_routing_config(
            ROOT / "models/artifacts/routerbench-minilm/routing.yaml"
        ).models
    }
    assert decision["strategy"] == "auto" and decision["model"] in models, decision


def test_stops_cleanly(stack: dict[str, Any]) -> None:
    """SIGTERM (podman stop) shuts the server down gracefully: exit code 0, no traceback."""
    podman, name = stack["podman"], stack["name"]
    run([podman, "stop", "-t", "30", name], timeout=60)
    state = run([podman, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name])
    assert state.stdout.split() == ["exited", "0"], state.stdout
    logs = run([podman, "logs", name])
    assert "Traceback" not in logs.stdout + logs.stderr
