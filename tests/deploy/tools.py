"""Helpers for the deployment checks: repo paths, CLI tools, podman and its local base.

The container checks build the CPU image for real. No registry is reachable on CI
machines, so the base image is made locally with debootstrap (once; reused while it
exists), and pip inside the build gets the host's CA bundle, its local wheel folder and
a pip.conf through build-time mounts (see ENVIRONMENT.md, "Containers").
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("DEPLOY_BASE_IMAGE", "localhost/debian-py:bookworm")
IMAGE = "localhost/llm-router:cpu"
CONTAINERS_CONF = ROOT / ".ci" / "containers.conf"
BUILD_TIMEOUT_S = 1800
# Debian packages (.ci/install-deploy-tools); the rest comes from pip (the deploy extra)
APT_TOOLS = {"promtool", "prometheus"}


def tool(name: str) -> str:
    """A CLI tool from this Python environment's bin/ (pip-installed) or PATH; else fail."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        if name in APT_TOOLS and os.geteuid() != 0:
            pytest.skip(f"SKIPPED: {name} is not installed and only root can apt-get install it")
        pytest.fail(f"{name} is not installed: run `make test-deploy` (it installs the tools)")
    return found


def run(
    cmd: list[str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=podman_env())
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def require_podman() -> str:
    """podman's path, or skip saying why (the only skip these checks allow)."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip(
            "SKIPPED CONTAINER TEST: podman is not installed (make test-deploy installs it as root)"
        )
    proc = subprocess.run(
        [podman, "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=podman_env(),
    )
    if proc.returncode != 0:
        pytest.skip(f"SKIPPED CONTAINER TEST: podman cannot run here: {proc.stderr.strip()[:300]}")
    return podman


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (debootstrap uses the same)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        match = re.search(r"(?:URIs:|^deb)\s+(\S+/debian)\s", text, re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_base_image(podman: str) -> None:
    """Make the local Debian + python3 base with debootstrap unless it already exists."""
    if run([podman, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        pytest.skip(
            f"SKIPPED CONTAINER TEST: no base image {BASE_IMAGE} and no way to make one "
            "(needs root and debootstrap; make test-deploy installs it as root)"
        )
    with tempfile.TemporaryDirectory(prefix="debian-py-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            timeout=1200,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            [podman, "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            env=podman_env(),
        )
        tar.wait()
        if imp.returncode != 0:
            pytest.fail(f"podman import failed: {imp.stderr}")


def pip_config() -> dict[str, str]:
    """This machine's pip settings (``pip config list``: key -> value)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    )
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        out[key.split(".", 1)[-1]] = value.strip().strip("'")
    return out


def build_args(workdir: Path) -> list[str]:
    """`podman build` arguments: the local base, and pip served like on the host.

    A host whose pip finds a local torch wheel (find-links) gets TORCH_INDEX_URL empty,
    the wheel folder and a pip.conf mounted; its CA bundle is mounted over the image's
    (pip's HTTPS may go through an intercepting proxy). Elsewhere the Dockerfile's default
    PyTorch CPU index is used.
    """
    cfg = pip_config()
    args = ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    conf = ["[global]"]
    links = [p for p in cfg.get("find-links", "").split() if Path(p).is_dir()]
    if any(next(Path(p).glob("torch-*.whl"), None) for p in links):
        args += ["--build-arg", "TORCH_INDEX_URL="]
        mounted = []
        for i, path in enumerate(links):
            args += ["-v", f"{path}:/wheels/{i}:ro"]
            mounted.append(f"/wheels/{i}")
        conf.append("find-links = " + " ".join(mounted))
    cert = cfg.get("cert") or os.environ.get("PIP_CERT", "")
    if cert and Path(cert).is_file():
        args += ["-v", f"{cert}:/etc/ssl/certs/ca-certificates.crt:ro"]
        conf.append("cert = /etc/ssl/certs/ca-certificates.crt")
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text("\n".join(conf) + "\n")
    args += ["-v", f"{pip_conf}:/etc/pip.conf:ro"]
    return args
