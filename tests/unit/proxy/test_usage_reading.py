"""Reading usage from upstream answers (app/proxy/usage.py): SSE events split anywhere
across network chunks, the usage-only event dropped or kept, bodies plain or compressed."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest

from app.proxy.usage import MAX_EVENT_BYTES, StreamUsage, ask_for_usage, body_usage
from models.core.pricing import Usage


def event(data: dict[str, Any], newline: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(data) + newline + newline


USAGE = {"prompt_tokens": 21, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 5}}
CONTENT = [
    event({"choices": [{"index": 0, "delta": {"content": "he"}}], "usage": None}),
    event({"choices": [{"index": 0, "delta": {"content": "llo"}}], "usage": None}),
    event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
]
USAGE_EVENT = event({"choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"
STREAM = b"".join([*CONTENT, USAGE_EVENT, DONE])
WITHOUT_USAGE = b"".join([*CONTENT, DONE])


def relay(reader: StreamUsage, chunks: list[bytes]) -> bytes:
    return b"".join(reader.feed(c) for c in chunks) + reader.finish()


@pytest.mark.parametrize("drop", [False, True], ids=["client-asked", "router-asked"])
def test_usage_event_read_and_dropped_only_when_the_client_did_not_ask(drop: bool) -> None:
    reader = StreamUsage(drop)
    out = relay(reader, [STREAM])
    assert reader.usage == Usage(21, 7, 5)
    assert out == (WITHOUT_USAGE if drop else STREAM)


@pytest.mark.parametrize("drop", [False, True], ids=["client-asked", "router-asked"])
def test_events_split_at_every_byte(drop: bool) -> None:
    """An event cut in two network chunks at any byte (the usage event included) is read
    once and relayed whole; nothing is lost, duplicated or reordered."""
    for cut in range(1, len(STREAM)):
        reader = StreamUsage(drop)
        out = relay(reader, [STREAM[:cut], STREAM[cut:]])
        assert reader.usage == Usage(21, 7, 5), cut
        assert out == (WITHOUT_USAGE if drop else STREAM), cut


def test_one_byte_chunks_and_held_events_are_never_half_sent() -> None:
    reader = StreamUsage(drop=True)
    sent = [reader.feed(STREAM[i : i + 1]) for i in range(len(STREAM))]
    assert b"".join(sent) + reader.finish() == WITHOUT_USAGE
    assert reader.usage == Usage(21, 7, 5)
    for piece in filter(None, sent):  # whatever went out was whole events
        assert piece.endswith(b"\n\n")


def test_crlf_events_and_multiline_data() -> None:
    crlf = [e.replace(b"\n", b"\r\n") for e in CONTENT]
    split_data = b'data: {"choices": [],\r\ndata: "usage": {"prompt_tokens": 3, ' + (
        b'"completion_tokens": 4}}\r\n\r\n'
    )
    reader = StreamUsage(drop=True)
    out = relay(reader, [*crlf, split_data, b"data: [DONE]\r\n\r\n"])
    assert reader.usage == Usage(3, 4)
    assert out == b"".join(crlf) + b"data: [DONE]\r\n\r\n"


def test_usage_on_a_content_chunk_is_kept_and_the_last_report_wins() -> None:
    """Providers that report running usage on content chunks: those chunks carry an
    answer, so they are never dropped; the last report is the whole."""
    running = [
        event({"choices": [{"delta": {"content": w}}], "usage": {**USAGE, "completion_tokens": n}})
        for n, w in enumerate("ab", start=1)
    ]
    reader = StreamUsage(drop=True)
    assert relay(reader, running) == b"".join(running)
    assert reader.usage == Usage(21, 2, 5)


def test_a_stream_without_usage_is_unchanged() -> None:
    for drop in (False, True):
        reader = StreamUsage(drop)
        assert relay(reader, [WITHOUT_USAGE[:50], WITHOUT_USAGE[50:]]) == WITHOUT_USAGE
        assert reader.usage is None


def test_a_word_usage_in_the_answer_is_not_taken_for_usage() -> None:
    fake = [
        event({"choices": [{"delta": {"content": "usage"}}]}),
        event({"choices": [{"delta": {"content": '{"usage": {"prompt_tokens": 1}}'}}]}),
    ]
    reader = StreamUsage(drop=True)
    assert relay(reader, fake) == b"".join(fake)
    assert reader.usage is None


def test_last_event_without_blank_line_is_read_and_sent() -> None:
    unterminated = USAGE_EVENT.rstrip(b"\n")
    for drop in (False, True):
        reader = StreamUsage(drop)
        out = relay(reader, [CONTENT[0], unterminated])
        assert reader.usage == Usage(21, 7, 5)
        assert out == (CONTENT[0] if drop else CONTENT[0] + unterminated)


def test_not_sse_is_passed_on_once_an_event_gets_too_long() -> None:
    blob = b"x" * (MAX_EVENT_BYTES // 2)
    reader = StreamUsage(drop=True)
    assert reader.feed(blob) == b""  # held: could be the start of an event
    assert reader.feed(blob + b"y") == blob + blob + b"y"  # too long: passed on, reading off
    assert reader.feed(USAGE_EVENT) == USAGE_EVENT
    assert reader.finish() == b"" and reader.usage is None


def test_malformed_events_are_relayed_not_read() -> None:
    bad = [b'data: {"usage": {"prompt_tokens": \n\n', b"data: [1, 2]\n\n", b": comment\n\n"]
    reader = StreamUsage(drop=True)
    assert relay(reader, bad) == b"".join(bad)
    assert reader.usage is None


@pytest.mark.parametrize(
    "options,sent,drop",
    [
        (None, {"include_usage": True}, True),
        ({"include_usage": True}, {"include_usage": True}, False),
        ({"include_usage": False}, {"include_usage": True}, True),
        ({"other": 1}, {"other": 1, "include_usage": True}, True),
        ("nonsense", "nonsense", False),  # the upstream answers it with its own 400
    ],
)
def test_ask_for_usage(options: Any, sent: Any, drop: bool) -> None:
    body: dict[str, Any] = {"stream": True}
    if options is not None:
        body["stream_options"] = options
    assert ask_for_usage(body) is drop
    assert body["stream_options"] == sent


ANSWER = orjson.dumps({"choices": [{"message": {"content": "hi"}}], "usage": USAGE})


@pytest.mark.parametrize(
    "body,encoding",
    [
        (ANSWER, ""),
        (ANSWER, "identity"),
        (gzip.compress(ANSWER), "gzip"),
        (zlib.compress(ANSWER), "deflate"),
        (zlib.compress(ANSWER)[2:-4], "deflate"),  # raw deflate, as some servers send it
    ],
)
def test_body_usage_plain_and_compressed(body: bytes, encoding: str) -> None:
    assert body_usage(body, encoding) == Usage(21, 7, 5)


@pytest.mark.parametrize(
    "body,encoding",
    [
        (orjson.dumps({"choices": []}), ""),
        (b"not json", ""),
        (b'["usage"]', ""),
        (b"\x1f\x8b broken gzip", "gzip"),
        (ANSWER, "br"),  # a coding read nowhere here: not counted, still relayed
        (orjson.dumps({"usage": {"prompt_tokens": "many"}}), ""),
    ],
)
def test_body_without_usable_usage(body: bytes, encoding: str) -> None:
    assert body_usage(body, encoding) is None
