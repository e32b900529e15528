"""Test helpers: an in-process app client, a real server subprocess, image builders."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from asgi_lifespan import LifespanManager

from app.server.factory import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FAKE = "tests.fakes:FakeStrategy"


def env_without_settings() -> dict[str, str]:
    """This process's environment without ROUTER_* settings, except the test session's
    ONNX export cache (tests/conftest.py), for a subprocess under test."""
    keep = {"ROUTER_ENCODER__CACHE_DIR"}
    return {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_") or k in keep}


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: defaults plus overrides (ROUTER_* env vars still apply)."""
    overrides.setdefault("strategy", FAKE)
    return Settings.model_validate(overrides)


async def wait_ready(client: httpx.AsyncClient, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await client.get("/ready")
        if resp.status_code == 200:
            return
        if "not ready: " in resp.text and "loading" not in resp.text:
            raise RuntimeError(f"strategy failed to start: {resp.text}")
        await asyncio.sleep(0.05)
    raise TimeoutError("app did not become ready")


@asynccontextmanager
async def app_client(
    settings: Settings | None = None, *, ready: bool = True, **create_kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process (lifespan included) behind an httpx client."""
    app = create_app(settings or make_settings(), **create_kwargs)
    async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://router.test", timeout=120
        ) as client:
            if ready:
                await wait_ready(client)
            yield client


@functools.cache
def empty_dir() -> str:
    """An empty working directory for test subprocesses, so a developer's .env is not read."""
    return tempfile.mkdtemp(prefix="llm-router-test-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(env: dict[str, str] | None = None, timeout: float = 300.0) -> Iterator[str]:
    """A real ``llm-router serve`` process on loopback; yields its base URL."""
    with running_server(env, timeout) as (base, _proc):
        yield base


def spawn_server(
    env: dict[str, str] | None = None, output: IO[str] | None = None, **popen: Any
) -> tuple[subprocess.Popen[str], str]:
    """Start ``llm-router serve`` on a free loopback port, in an empty directory (a
    developer's ``.env`` is not read); returns the process and its base URL at once.
    Output (stdout and stderr) goes to ``output`` when given, else to a pipe."""
    port = free_port()
    full_env = {
        **os.environ,
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=empty_dir(),
        env=full_env,
        stdout=output or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_until_ready(
    proc: subprocess.Popen[str], base: str, timeout: float, output: Path | None = None
) -> None:
    """Poll ``/ready`` until 200; the server's output in the error if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = output.read_text() if output else proc.stdout.read()  # type: ignore[union-attr]
            raise RuntimeError(f"server exited {proc.returncode}:\n{text}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("server did not become ready")
        time.sleep(0.2)


@contextmanager
def running_server(
    env: dict[str, str] | None = None, timeout: float = 300.0, output: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``llm-router serve`` on loopback, ready; yields its base URL and process, and stops
    it (SIGTERM, then SIGKILL after 30 s) afterwards. Output goes to ``output`` when given,
    which nothing has to drain, else to a pipe."""
    sink = output.open("w") if output is not None else None
    proc, base = spawn_server(env, sink)
    try:
        wait_until_ready(proc, base, timeout, output)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if sink is not None:
            sink.close()


def png_bytes(
    width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 512, height: int = 512) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.radial_gradient("L").resize((width, height)).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header + compressed zero rows for a huge greyscale image (~400 KB)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + tag
            + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def image_message(text: str, *urls: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"role": "user", "content": parts}


async def startup_error(settings: Settings) -> str:
    """The startup failure's detail, as the server's log and exit message get it; /ready
    says only that the start failed (no paths or exception text to anonymous callers)."""
    fatal: list[str] = []
    async with app_client(settings, ready=False, on_fatal=fatal.append) as client:
        for _ in range(600):
            resp = await client.get("/ready")
            if "loading" not in resp.text:
                break
            await asyncio.sleep(0.05)
        assert resp.status_code == 503
        assert resp.json()["error"]["message"] == (
            "not ready: the strategy failed to start; see the server log"
        )
    assert len(fatal) == 1
    return fatal[0]
