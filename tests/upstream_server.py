"""A small, real OpenAI-compatible upstream for proxy tests and benchmarks.

``POST /v1/chat/completions`` answers ``"<name> says: <latest user text>"``, as JSON or as
SSE chunks (one per word). What it does is chosen per request, first match wins:
``server.modes[model]`` (set by tests), the ``x-upstream-mode`` header (per-model headers
in a routing config), the body's ``mock.mode`` (the router passes unknown fields on), else
``ok``. Modes: ``ok``; ``no_usage`` (an answer without ``usage``); ``error:<status>``
(OpenAI error body); ``stall`` (no answer until the client goes away); ``stall_stream``
(first chunk, then nothing); ``die_stream`` (first chunk, then the connection is dropped).
``mock.delay_s`` paces stream chunks, ``mock.repeat`` makes the answer longer,
``mock.cached_tokens`` reports that many prompt tokens as cached and ``mock.split`` sends
every stream event in two network writes, 5 ms apart. ``state.script`` (a function of the
body and the request's number) can answer any request instead, as JSON: a ``Scripted``
reply (status, text, usage, headers, delay, raw body), or None for the modes above. A
model in ``server.text_only`` answers 400 ``image_not_supported`` to a body holding an
``image_url`` part, as a text-only provider does.

Usage (unscripted answers) is counted as OpenAI reports it: one token per
whitespace-separated word, prompt = every message's text, completion = the answer. Plain
answers always carry it (except ``no_usage``); streams carry it as OpenAI does, only when
``stream_options.include_usage`` is true: ``"usage": null`` on every chunk and a last
chunk with empty ``choices`` and the usage. What was reported is recorded per request in
``state.usage``. Every request (with its arrival time) and every client disconnect is
recorded. Runs in a thread (``UpstreamServer``) or as ``python -m tests.upstream_server``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Scripted:
    """One scripted answer: an OpenAI error body for status >= 400, else a completion
    with ``content`` (default: the usual echo) and ``usage`` (default 1 + 1 tokens);
    ``raw`` is sent as the body instead of either."""

    status: int = 200
    content: str | None = None
    usage: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


@dataclass
class UpstreamState:
    """What the server was asked, and what tests want it to do."""

    name: str = "upstream"
    modes: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    script: Callable[[dict[str, Any], int], Scripted | None] | None = None
    text_only: set[str] = field(default_factory=set)  # models that refuse image parts
    usage: list[dict[str, Any]] = field(default_factory=list)  # the usage each answer reported

    def reset(self) -> None:
        self.modes.clear()
        self.text_only.clear()
        self.requests.clear()
        self.cancelled.clear()
        self.script = None
        self.usage.clear()


def _latest_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        return str(content or "")
    return ""


def image_parts(body: dict[str, Any]) -> int:
    """How many ``image_url`` parts the body's messages hold."""
    return sum(
        1
        for message in body.get("messages") or []
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    )


def _words(content: Any) -> int:
    if isinstance(content, list):
        return sum(len(str(p.get("text", "")).split()) for p in content if isinstance(p, dict))
    return len(str(content or "").split())


def count_usage(body: dict[str, Any], content: str) -> dict[str, Any]:
    """The usage object this upstream reports: one token per word."""
    prompt = sum(_words(m.get("content")) for m in body.get("messages") or [])
    completion = len(content.split())
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = (body.get("mock") or {}).get("cached_tokens")
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": min(int(cached), prompt)}
    return usage


def _chunk(
    n: int,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    usage: dict[str, Any] | bool | None = False,
) -> bytes:
    """One SSE event; ``delta=None`` makes the usage-only chunk (empty ``choices``);
    ``usage=False`` leaves the field out (the client did not ask for usage)."""
    event: dict[str, Any] = {
        "id": f"chatcmpl-up-{n}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not False:
        event["usage"] = usage
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _error(state: UpstreamState, status: int, headers: dict[str, str]) -> Response:
    error = {
        "message": f"{state.name} failed on purpose",
        "type": "test_error",
        "param": None,
        "code": str(status),
    }
    return Response(orjson.dumps({"error": error}), status, headers, "application/json")


def _completion(
    model: str,
    n: int,
    content: str,
    usage: dict[str, Any] | None,
    headers: dict[str, str],
    omit_usage: bool = False,
) -> Response:
    answer: dict[str, Any] = {
        "id": f"chatcmpl-up-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    if not omit_usage:
        answer["usage"] = usage or {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return Response(orjson.dumps(answer), 200, headers, "application/json")


async def _scripted(
    state: UpstreamState,
    reply: Scripted,
    body: dict[str, Any],
    model: str,
    n: int,
    headers: dict[str, str],
) -> Response:
    if reply.delay_s:
        await asyncio.sleep(reply.delay_s)
    headers = {**headers, **reply.headers}
    if reply.raw is not None:
        return Response(reply.raw, reply.status, headers, "application/json")
    if reply.status >= 400:
        return _error(state, reply.status, headers)
    content = reply.content
    if content is None:
        content = f"{state.name} says: {_latest_user_text(body)}"
    return _completion(model, n, content, reply.usage, headers)


def create_upstream_app(state: UpstreamState) -> Starlette:
    """The upstream's ASGI app, recording into ``state``."""

    async def wait_gone(request: Request, model: str) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.01)
        state.cancelled.append(model)

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model = str(body.get("model"))
        n = len(state.requests)
        state.requests.append(
            {"model": model, "headers": dict(request.headers), "body": body,
             "time": time.monotonic()}
        )  # fmt: skip
        headers = {"x-request-id": f"up-{n}", "x-ratelimit-remaining-requests": "99"}
        scripted = state.script(body, n) if state.script is not None else None
        if scripted is not None:
            return await _scripted(state, scripted, body, model, n, headers)
        mock = body.get("mock") or {}
        mode = (
            state.modes.get(model)
            or request.headers.get("x-upstream-mode")
            or mock.get("mode", "ok")
        )
        if model in state.text_only and image_parts(body):
            error = {
                "message": f"model {model} does not support image inputs",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "image_not_supported",
            }
            return Response(orjson.dumps({"error": error}), 400, headers, "application/json")
        if mode.startswith("error:"):
            return _error(state, int(mode.split(":", 1)[1]), headers)
        if mode == "stall":
            await wait_gone(request, model)
            return Response(status_code=499)
        content = f"{state.name} says: {_latest_user_text(body)}"
        content = " ".join([content] * int(mock.get("repeat", 1)))
        usage = count_usage(body, content)
        if not body.get("stream"):
            if mode != "no_usage":
                state.usage.append(usage)
            return _completion(model, n, content, usage, headers, omit_usage=mode == "no_usage")
        delay = float(mock.get("delay_s", 0.0))
        split = bool(mock.get("split"))
        options = body.get("stream_options")
        reports = isinstance(options, dict) and options.get("include_usage") is True
        reports = reports and mode != "no_usage"
        null: bool | None = None if reports else False  # "usage": null on every chunk

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _chunk(n, model, {"role": "assistant", "content": ""}, usage=null)
                if mode == "stall_stream":
                    await wait_gone(request, model)
                    return
                if mode == "die_stream":
                    raise ConnectionAbortedError("upstream dropped the stream on purpose")
                words = [
                    _chunk(n, model, {"content": word if i == 0 else " " + word}, usage=null)
                    for i, word in enumerate(content.split(" "))
                ]
                end = [_chunk(n, model, {}, "stop", usage=null)]
                if reports:
                    end.append(_chunk(n, model, None, usage=usage))
                    state.usage.append(usage)
                end.append(b"data: [DONE]\n\n")
                for i, event in enumerate([*words, *end]):
                    if delay and i < len(words):
                        await asyncio.sleep(delay)
                    if split:
                        yield event[: len(event) // 2]
                        await asyncio.sleep(0.005)
                        yield event[len(event) // 2 :]
                    else:
                        yield event
            except asyncio.CancelledError:  # Starlette cancels the stream when the client goes
                state.cancelled.append(model)
                raise

        return StreamingResponse(events(), headers=headers, media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return Response(b'{"object":"list","data":[]}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


class UpstreamServer:
    """The upstream on 127.0.0.1 in a background thread; stop() and start() again to
    simulate an upstream that dies and comes back on the same port."""

    def __init__(self, name: str = "upstream", port: int = 0) -> None:
        self.state = UpstreamState(name=name)
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> UpstreamServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_upstream_app(self.state),
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("upstream server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve the upstream in the foreground (benchmarks run it as a separate process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--name", default="upstream")
    parser.add_argument(
        "--keep-alive", type=float, default=5.0, help="close connections idle this long (s)"
    )
    args = parser.parse_args(argv)
    app = create_upstream_app(UpstreamState(name=args.name))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=args.keep_alive,
    )


if __name__ == "__main__":
    main()
