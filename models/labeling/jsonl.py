"""JSONL files that a long run appends to and a rerun resumes from.

A run can be stopped at any moment (Ctrl-C, ``kill -9``, a crash): every finished row is
one ``write`` of a whole line, flushed at once, so at most the last line is torn. Reading
ignores a torn last line (one that does not end in a newline and does not parse);
opening for append cuts it off first, so the file stays valid JSONL. A bad line anywhere
else is a real error and names its line.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson


def read_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The rows of ``path`` (none when it does not exist) and whether a torn last line
    was ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], False
    lines = data.split(b"\n")
    torn = False
    if lines and lines[-1].strip():  # no newline at the end: whole if it parses
        try:
            orjson.loads(lines[-1])
        except orjson.JSONDecodeError:
            lines, torn = lines[:-1], True
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object")
        rows.append(row)
    return rows, torn


class AppendLog:
    """Appends rows to a JSONL file, one flushed line each; a torn last line left by an
    interrupted run is cut off (or, when it parses, ended with a newline) on opening.
    New files are created readable by their owner only: they hold user prompts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._fh = os.fdopen(fd, "r+b", buffering=0)
        self._repair()
        self.written = 0

    def _repair(self) -> None:
        fh = self._fh
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return
        # find the start of the last line
        block, end = 1 << 16, size
        start = 0
        while end > 0:
            begin = max(0, end - block)
            fh.seek(begin)
            chunk = fh.read(end - begin)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = begin + cut + 1
                break
            end = begin
        fh.seek(start)
        tail = fh.read(size - start)
        try:
            orjson.loads(tail)
        except orjson.JSONDecodeError:
            fh.truncate(start)
            fh.seek(start)
            return
        fh.seek(size)
        fh.write(b"\n")

    def write(self, row: dict[str, Any]) -> None:
        self._fh.seek(0, os.SEEK_END)
        view = memoryview(orjson.dumps(row) + b"\n")
        while view:  # one line, whole (a raw file may take it in parts)
            view = view[self._fh.write(view) or 0 :]
        self.written += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
