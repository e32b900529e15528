"""The deployment files agree with the app: settings names and values, routing config,
compose profiles, probes. Pure Python (no tools), so it runs with the unit tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from models.core.routing_config import load_routing_config
from tests.deploy.files import (
    COMPOSE,
    K8S,
    ROOT,
    dockerfile_env,
    k8s_container_env,
    k8s_manifests,
    setting_names,
    yaml_docs,
)


def _check_settings(env: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Every ROUTER_* name is a real setting (pydantic would ignore a typo) and the values
    validate together."""
    router = {k: v for k, v in env.items() if k.startswith("ROUTER_")}
    assert router, f"{where} sets no ROUTER_* variable"
    unknown = set(router) - setting_names()
    assert not unknown, f"{where}: unknown settings {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith("ROUTER_"):
            monkeypatch.delenv(key)
    for key, value in router.items():
        if "${" not in value:
            monkeypatch.setenv(key, value)
    return Settings()


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_cpu_dockerfile_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _check_settings(dockerfile_env(ROOT / "Dockerfile"), "Dockerfile", monkeypatch)
    assert (s.host, s.port, s.strategy) == ("0.0.0.0", 8000, "intent")
    assert s.config == Path("/etc/llm-router/routing.yaml")
    assert s.intent.backend == "embedding"


def test_gpu_dockerfile_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dockerfile_env(ROOT / "Dockerfile.gpu")
    s = _check_settings(env, "Dockerfile.gpu", monkeypatch)
    assert (s.host, s.port, s.config) == ("0.0.0.0", 8000, Path("/etc/llm-router/routing.yaml"))
    assert (s.intent.backend, s.intent.model) == ("vllm", "Qwen/Qwen3-1.7B")
    assert (s.auto.encoder, s.auto.device) == ("open_clip:ViT-B-32", "cuda")
    assert env["HF_HOME"] == "/var/cache/huggingface"


def test_gpu_image_uses_the_paths_the_cpu_image_tests_for_real() -> None:
    """The GPU image cannot be built here: its entrypoint, health check, user and config
    path are the CPU image's, which the container test runs."""
    cpu, gpu = ((ROOT / n).read_text() for n in ("Dockerfile", "Dockerfile.gpu"))
    for line in (
        'ENTRYPOINT ["llm-router"]',
        'CMD ["serve"]',
        "USER 10001:0",
        "EXPOSE 8000",
        "/opt/llm-router/healthcheck.py",
        "router:x:10001:0:llm-router:/home/router:/usr/sbin/nologin",
    ):
        assert line in cpu and line in gpu, line
    assert "COPY app/default_config.yaml /etc/llm-router/routing.yaml" in gpu
    assert 'VOLUME ["/var/cache/huggingface"]' in gpu
    # vLLM pins its torch: the base tag, the checked vLLM version and torch agree
    env_args = dict(
        line.split(" ", 1)[1].split("=", 1)
        for line in gpu.splitlines()
        if line.startswith("ARG ") and "=" in line
    )
    assert env_args["BASE_IMAGE"].endswith(":v" + env_args["VLLM_VERSION"])
    assert env_args["TORCH_VERSION"] == "2.13.0"


def test_dockerfile_copies_exist() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu"):
        for line in (ROOT / name).read_text().splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                for src in line.split()[1:-1]:
                    assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"


def test_compose_profiles_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    profiles = {p for svc in services.values() for p in svc.get("profiles", [])}
    assert profiles == {"cpu", "intent", "auto", "prometheus", "grafana"}
    for name in ("router-cpu", "router-intent", "router-auto"):
        svc = services[name]
        env = {k: str(v) for k, v in svc["environment"].items()}
        s = _check_settings(env, f"docker-compose {name}", monkeypatch)
        assert (s.host, s.port) == ("0.0.0.0", 8000)
        assert svc["ports"][0].startswith("${LLM_ROUTER_PUBLISH:-127.0.0.1:"), "publish on loopback"
        assert svc["env_file"][0]["path"] == ".env"
        assert "router" in svc["networks"]["default"]["aliases"]
        assert svc["read_only"] is True
        gpu = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if name == "router-cpu":
            assert gpu is None
        else:
            assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
            assert any(v.startswith("hf-cache:") for v in svc["volumes"])
    for svc in services.values():
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"compose mounts missing {src}"


def test_configmap_routing_config_is_the_default(tmp_path: Path) -> None:
    (cm,) = yaml_docs(K8S / "base" / "configmap.yaml")
    path = tmp_path / "routing.yaml"
    path.write_text(cm["data"]["routing.yaml"])
    ours = load_routing_config(path)
    default = load_routing_config(ROOT / "app" / "default_config.yaml")
    assert ours.model_dump(exclude={"source"}) == default.model_dump(exclude={"source"})


def test_k8s_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    deployments = [
        (p, d) for p in k8s_manifests() for d in yaml_docs(p) if d["kind"] == "Deployment"
    ]
    assert {p.parent.name for p, _ in deployments} == {"cpu", "gpu"}
    for path, doc in deployments:
        s = _check_settings(k8s_container_env(doc), str(path), monkeypatch)
        assert s.config == Path("/etc/llm-router/routing.yaml")
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
        assert {"ROUTER_API_KEYS", "OPENAI_API_KEY", "NVIDIA_API_KEY"} <= secrets
        gpus = c["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == (1 if path.parent.name == "gpu" else None)
    kinds = {d["kind"] for p in k8s_manifests() for d in yaml_docs(p)}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Namespace",
    } <= kinds


def test_kustomizations_list_existing_files() -> None:
    for kust in K8S.rglob("kustomization.yaml"):
        for res in yaml.safe_load(kust.read_text())["resources"]:
            assert (kust.parent / res).exists(), f"{kust}: {res} missing"


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    import json

    grafana = ROOT / "deploy" / "grafana"
    (ds,) = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    dash = json.loads((grafana / "dashboards/llm-router.json").read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uids == {ds["uid"]}
    provider = yaml.safe_load((grafana / "provisioning/dashboards/llm-router.yml").read_text())
    mounted = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounted
