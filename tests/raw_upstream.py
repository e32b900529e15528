"""An OpenAI-shaped upstream on a raw asyncio socket, for connection-level faults that a
framework server will not produce on demand: a keep-alive connection closed under a new
request (the race with an idle timeout), a connection dropped before any answer, a slow
answer that holds its connection.

``drop``: ``none``; ``reused`` (read any request after the first on a connection, then
close without answering, as when the upstream's idle timeout fires as the request
arrives); ``all`` (close every connection after reading its first request). Loopback only.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson

Drop = Literal["none", "reused", "all"]


def _answer(n: int) -> bytes:
    body = orjson.dumps(
        {
            "id": f"chatcmpl-raw-{n}",
            "object": "chat.completion",
            "created": 1,
            "model": "raw",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "raw says hi"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class RawUpstream:
    """``async with RawUpstream(...) as up``: listening on 127.0.0.1, ``up.base_url``;
    counts connections, requests read and requests answered."""

    def __init__(self, drop: Drop = "none", delay_s: float = 0.0) -> None:
        self.drop, self.delay_s = drop, delay_s
        self.connections = self.requests = self.answered = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                if self.drop == "all" or (self.drop == "reused" and served):
                    return
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(_answer(self.requests))
                await writer.drain()
                served += 1
                self.answered += 1
        finally:
            writer.close()
