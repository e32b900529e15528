"""Test-only network guard and a scriptable loopback HTTP server for image fetching.

``loopback_only`` (a fixture) makes any DNS lookup of a non-loopback name and any
connect to a non-loopback address fail, and fails the test afterwards even if the code
under test swallowed the error: no test can reach past 127.0.0.1/::1, even when the code
it tests is wrong. ``ImageServer`` answers scripted responses on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    violations: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(what: str, host: object, numeric_ok: bool = False) -> None:
        if isinstance(host, bytes):
            host = host.decode()
        if numeric_ok and isinstance(host, str) and _is_ip(host):
            return  # looking up a literal sends nothing; connecting to it is checked
        if isinstance(host, str) and host not in LOOPBACK:
            violations.append(f"{what} {host}")
            raise AssertionError(f"test tried to reach {host} outside loopback ({what})")

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        check("getaddrinfo", host, numeric_ok=True)
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check("connect", address[0])
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check("connect_ex", address[0])
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield violations
    assert violations == [], f"connections outside loopback were attempted: {violations}"


@dataclass
class Reply:
    """A scripted answer: status, headers, body, and optionally a slow drip."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip_s: float = 0.0  # > 0: send the body one byte at a time, this far apart
    delay_s: float = 0.0  # wait before answering
    chunked_forever: bool = False  # stream 64 KiB chunks without Content-Length


class ImageServer:
    """Serves ``routes`` (path → Reply) on 127.0.0.1 and records what it was asked."""

    def __init__(self, routes: dict[str, Reply]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.active = 0
        self.max_active = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            self.requests.append((path, headers))
            await self._reply(self.routes.get(path, Reply(404)), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _reply(self, reply: Reply, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(reply.delay_s)
        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        if reply.chunked_forever:
            writer.write(f"HTTP/1.1 {reply.status} X\r\n{extra}Connection: close\r\n\r\n".encode())
            for _ in range(10_000):
                writer.write(b"\0" * 65536)
                await writer.drain()
            return
        length = (
            ""
            if "content-length" in {k.lower() for k in reply.headers}
            else (f"Content-Length: {len(reply.body)}\r\n")
        )
        writer.write(
            f"HTTP/1.1 {reply.status} X\r\n{extra}{length}Connection: close\r\n\r\n".encode()
        )
        if reply.drip_s:
            for i in range(len(reply.body)):
                writer.write(reply.body[i : i + 1])
                await writer.drain()
                await asyncio.sleep(reply.drip_s)
        else:
            writer.write(reply.body)
        await writer.drain()


@asynccontextmanager
async def image_server(routes: dict[str, Reply]) -> AsyncIterator[ImageServer]:
    server = ImageServer(routes)
    listener = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
