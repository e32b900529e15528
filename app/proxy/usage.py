"""Reading ``usage`` from upstream answers as they pass through (proxy mode).

A whole body is parsed once it has arrived (a compressed one from a decoded copy; the
client still gets the bytes the upstream sent). A stream is read event by event while it
is relayed, never buffered: a streamed request whose client did not ask for usage
(``stream_options.include_usage``) goes upstream asking for it, and the usage-only event
(``usage`` set, ``choices`` empty) is dropped before it reaches that client. A client that
asked gets every network chunk unchanged, the moment it arrives; one that did not gets
whole events only, so an event split across network chunks is held until its end arrives
(no SSE client can act on half an event). The usage counted is the last one the stream
reported (providers that report running totals on every chunk end with the whole).
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import orjson

from models.core.pricing import Usage, parse_usage

#: an event longer than this (no blank line seen) stops the reading: the rest is relayed
#: as it comes and the answer counts as usage missing
MAX_EVENT_BYTES = 1024 * 1024
MAX_DECODED_BYTES = 64 * 1024 * 1024  # a compressed body decoded past this is not read
USAGE_KEY = b'"usage"'
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n")


def ask_for_usage(body: dict[str, Any]) -> bool:
    """Make a streamed request's body ask the upstream for usage. True when the client
    did not ask for it itself: its usage-only event is then dropped from the stream. A
    ``stream_options`` that is not an object is left for the upstream to judge."""
    options = body.get("stream_options")
    if options is None:
        body["stream_options"] = {"include_usage": True}
        return True
    if not isinstance(options, dict) or options.get("include_usage") is True:
        return False
    body["stream_options"] = {**options, "include_usage": True}
    return True


def _decoded(body: bytes, encoding: str) -> bytes | None:
    """The body without its content-encoding (gzip, deflate), or None when it cannot be
    decoded here (another coding, corrupt, or larger than MAX_DECODED_BYTES)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None
    # 47: gzip or zlib header, detected; deflate without a header is raw (-15)
    for wbits in (47,) if encoding != "deflate" else (15, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, MAX_DECODED_BYTES)
        except zlib.error:
            continue
        return None if inflater.unconsumed_tail else out
    return None


def body_usage(body: bytes, encoding: str = "") -> Usage | None:
    """The usage of a whole (non-streamed) answer; None when it has none or is not JSON."""
    raw = _decoded(body, encoding)
    if raw is None or USAGE_KEY not in raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return parse_usage(data.get("usage")) if isinstance(data, dict) else None


def _event_json(event: bytes) -> Any:
    """The JSON of an SSE event's ``data:`` lines (joined with newlines, as the SSE spec
    says), or None."""
    lines = [line[5:] for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    payload = b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _reports_usage(data: bytes) -> bool:
    """Whether ``data`` may hold a usage report: a ``"usage"`` key that is not null (a
    cheap test, so the chunks that carry none are never parsed)."""
    at = data.find(USAGE_KEY)
    while at >= 0:  # every chunk but the last says "usage":null when usage is asked for
        at += len(USAGE_KEY)
        if not (data.startswith(b":null", at) or data.startswith(b": null", at)):
            return True
        at = data.find(USAGE_KEY, at)
    return False


def _last_boundary(data: bytes) -> int:
    """The index just past the last blank line (event end) in ``data``; 0 when none."""
    if data.endswith(b"\n\n"):  # the usual network chunk: whole events
        return len(data)
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class StreamUsage:
    """Reads usage from an SSE stream as it is relayed: ``feed`` each network chunk and
    send on what it returns, then ``finish`` at the end of the stream. With ``drop``
    (the client did not ask for usage) the usage-only event is removed."""

    __slots__ = ("_off", "_tail", "drop", "usage")

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.usage: Usage | None = None
        self._tail = b""  # the start of an event whose end has not arrived
        self._off = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on now for this network chunk."""
        if self._off:
            return chunk
        data = self._tail + chunk if self._tail else chunk
        end = _last_boundary(data)
        if end == 0:
            if len(data) > MAX_EVENT_BYTES:  # not SSE as we know it: stop reading
                self._off, self._tail = True, b""
                return data if self.drop else chunk
            self._tail = data
            return b"" if self.drop else chunk
        events = data
        if end < len(data):
            events, self._tail = data[:end], data[end:]
        elif self._tail:
            self._tail = b""
        if _reports_usage(events):
            events = self._scan(events)
        return events if self.drop else chunk

    def finish(self) -> bytes:
        """At the end of the stream: a last event that came without its blank line (read
        too), still to be sent on when events are being held."""
        rest, self._tail = self._tail, b""
        if self._off or not rest:
            return b""
        if _reports_usage(rest):
            rest = self._scan(rest)
        return rest if self.drop else b""

    def _scan(self, data: bytes) -> bytes:
        """Read the usage of every event in ``data``; ``data`` without the usage-only
        event when dropping it."""
        kept: list[bytes] = []
        start, dropped = 0, False
        ends = [m.end() for m in _BOUNDARY.finditer(data)]
        if not ends or ends[-1] < len(data):
            ends.append(len(data))  # the stream's last event, without its blank line
        for end in ends:
            event, start = data[start:end], end
            if _reports_usage(event) and self._read(event):
                dropped = True
            else:
                kept.append(event)
        return b"".join(kept) if dropped else data

    def _read(self, event: bytes) -> bool:
        """Note the event's usage; True when it is a usage-only event to drop."""
        data = _event_json(event)
        if not isinstance(data, dict) or data.get("usage") is None:
            return False
        usage = parse_usage(data["usage"])
        if usage is not None:
            self.usage = usage
        return self.drop and not data.get("choices")
