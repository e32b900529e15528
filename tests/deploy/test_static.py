"""Linters and validators on the deployment files: hadolint, yamllint,
kubernetes-validate (offline schemas), promtool. Tools: `make test-deploy` installs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.files import DEPLOY, ROOT, k8s_manifests
from tests.deploy.tools import run, tool

pytestmark = pytest.mark.deploy

SKIP_DIRS = {".git", "bench", "node_modules"}


def _yaml_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*.y*ml")):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".venv") or p in SKIP_DIRS or p.endswith("cache") for p in parts):
            continue
        files.append(path)
    return files


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_hadolint(dockerfile: str) -> None:
    run([tool("hadolint"), "--failure-threshold", "info", str(ROOT / dockerfile)])


def test_yamllint_every_yaml_file() -> None:
    files = _yaml_files()
    assert ROOT / "docker-compose.yml" in files and len(files) >= 15
    run([tool("yamllint"), "-s", "-c", str(ROOT / ".ci" / "yamllint.yaml"), *map(str, files)])


def test_kubernetes_validate_strict() -> None:
    files = [str(p) for p in k8s_manifests()]
    assert len(files) >= 8
    proc = run([tool("kubernetes-validate"), "--strict", *files])
    assert "ERROR" not in proc.stdout + proc.stderr


def test_kubernetes_validate_catches_a_bad_manifest(tmp_path: Path) -> None:
    """The validator really checks: a misspelt probe field fails."""
    bad = (
        (DEPLOY / "k8s" / "cpu" / "deployment.yaml")
        .read_text()
        .replace("readinessProbe:", "readinesProbe:")
    )
    (tmp_path / "bad.yaml").write_text(bad)
    proc = run([tool("kubernetes-validate"), "--strict", str(tmp_path / "bad.yaml")], check=False)
    assert proc.returncode != 0


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_promtool_check_config(config: str) -> None:
    run([tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / config)])


def test_promtool_check_rules() -> None:
    proc = run([tool("promtool"), "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")])
    assert "SUCCESS" in proc.stdout


def test_compose_file_matches_the_compose_spec() -> None:
    compose = str(ROOT / "docker-compose.yml")
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", compose])


@pytest.mark.parametrize("service", ["router-intent", "router-auto"])
def test_gpu_profiles_reserve_one_nvidia_gpu(service: str) -> None:
    """What podman-compose makes of the compose GPU reservation: one CDI device
    `nvidia.com/gpu=0` (Docker reads the same block with the NVIDIA toolkit)."""
    import yaml
    from podman_compose import container_to_gpu_res_args

    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    args: list[str] = []
    container_to_gpu_res_args(svc, args)
    assert args[:2] == ["--device", "nvidia.com/gpu=0"] and args.count("--device") == 1
    cpu: list[str] = []
    container_to_gpu_res_args(
        yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["router-cpu"], cpu
    )
    assert cpu == []
