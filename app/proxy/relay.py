"""Relaying an upstream HTTP response to the client: streamed bodies, passed-on headers,
and noticing a client that goes away (proxy mode)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.responses import Response

from app.proxy.usage import StreamUsage

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
PASS_HEADERS = frozenset({"content-type", "content-encoding", "retry-after"})
PASS_PREFIXES = ("x-ratelimit-", "openai-")


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (call once the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def passed_headers(response: httpx.Response) -> dict[str, str]:
    """The upstream headers worth passing back: content type and encoding, rate limits;
    the upstream's own request id as ``x-upstream-request-id``."""
    out = {}
    for key, value in response.headers.items():
        if key in PASS_HEADERS or key.startswith(PASS_PREFIXES):
            out[key] = value
    if "x-request-id" in response.headers:
        out["x-upstream-request-id"] = response.headers["x-request-id"]
    return out


class RelayResponse(Response):
    """Sends an upstream stream on chunk by chunk, without buffering, and closes the
    upstream response when the stream ends, breaks or the client goes away.

    A watcher on the client connection (``gone``, started before the upstream was called)
    cancels the relay at once, so an abandoned stream stops the upstream generating. This
    does not rely on Starlette's StreamingResponse, which listens for disconnects only on
    servers speaking ASGI spec < 2.4 and would compete with ``gone`` for ``receive``.
    """

    def __init__(
        self,
        upstream: httpx.Response,
        first: bytes,
        chunks: AsyncIterator[bytes],
        headers: dict[str, str],
        gone: asyncio.Future[None],
        on_done: Callable[[str], None],
        reader: StreamUsage | None = None,
    ) -> None:
        self.status_code = upstream.status_code
        self.background = None
        self.init_headers(headers)  # no content-length: the body is streamed
        self.upstream, self.first, self.chunks = upstream, first, chunks
        self.gone, self.on_done = gone, on_done
        self.reader = reader if reader is not None else StreamUsage(drop=False)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        result = "client_disconnected"
        try:
            await asyncio.wait((pump, self.gone), return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                result = pump.result()
            else:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        finally:
            self.gone.cancel()
            await self.upstream.aclose()
            self.on_done(result)

    async def _pump(self, send: Send) -> str:
        """Head, first chunk, the rest, each through the usage reader. When the upstream
        breaks mid-stream, return without finishing the body: the server then aborts the
        connection and the client sees a truncated stream, never a clean end of a partial
        answer."""
        body = {"type": "http.response.body", "more_body": True}
        feed = self.reader.feed
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self.first and (out := feed(self.first)):
                await send({**body, "body": out})
            async for chunk in self.chunks:
                if out := feed(chunk):
                    await send({**body, "body": out})
            if rest := self.reader.finish():
                await send({**body, "body": rest})
        except httpx.HTTPError as exc:
            return f"upstream_failed ({type(exc).__name__})"
        except OSError:  # servers on ASGI spec >= 2.4 report a closed client this way
            return "client_disconnected"
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "complete"
