"""Traffic capture: one JSONL row per sampled request, written by a background thread.

Capture exists to feed the learning loop (``llm-router collect`` reads these files), so a
row holds what that needs: the time, the request id, the conversation's ``messages``, the
decision and, in proxy mode, the upstream's status and token usage. **It stores user
prompts** (and, unless ``ROUTER_CAPTURE__IMAGES=drop``, their images): it is off until
``ROUTER_CAPTURE__PATH`` names a directory, every file it makes is readable by its owner
only (0600, directories 0700), and nothing of it goes to the log.

It never slows or fails a request: the event loop only puts a row on a bounded queue
(``put_nowait``); when the queue is full the row is dropped and counted
(``llm_router_capture_dropped_total{reason="queue_full"}``), and a failed write is
counted too (``reason="write_error"``) instead of raised. The thread serialises the rows,
stores each image once under ``images/<sha256>.<ext>`` and rotates the file by size. Each
worker process writes its own files (the pid is in the name), so workers never share one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from models.core.errors import ConfigError
from models.labeling.capture_images import store_images

if TYPE_CHECKING:
    from app.metrics import RouterMetrics
    from app.settings import CaptureSettings

FILE_MODE = 0o600
DIR_MODE = 0o700
_STOP = object()


@dataclass(slots=True)
class CaptureRow:
    """One request as captured; ``messages`` is a copy the event loop will not change."""

    request_id: str
    messages: list[Any]
    decision: dict[str, Any]
    mode: str
    time: float
    stream: bool = False
    status: int | None = None
    usage: dict[str, Any] | None = None
    answered_by: str | None = None

    def to_json(self, images_dir: Path | None) -> bytes:
        row: dict[str, Any] = {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
            "mode": self.mode,
            "messages": store_images(self.messages, images_dir),
            "decision": self.decision,
            "stream": self.stream,
        }
        if self.mode == "proxy":
            row["status"] = self.status
            row["answered_by"] = self.answered_by
            row["usage"] = self.usage
        return orjson.dumps(row) + b"\n"


def json_copy(value: Any) -> Any:
    """A copy of parsed JSON's lists and dicts (strings are shared: they are immutable), so
    the rows queued for the writer thread never see a later change to the request body."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


def open_private(path: Path) -> int:
    """Create ``path`` for appending, readable by its owner only (umask cannot widen it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def check_capture_dir(settings: CaptureSettings) -> None:
    """Fail at startup, naming the setting, when the capture directory cannot be used."""
    if settings.path is None:
        return
    path = Path(settings.path).expanduser()
    try:
        private_dir(path)
        probe = path / f".probe-{os.getpid()}"
        os.close(open_private(probe))
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"ROUTER_CAPTURE__PATH={settings.path}: cannot write there ({exc.strerror or exc})"
        ) from None


class CaptureWriter:
    """The bounded queue and the thread that writes it (one per worker process)."""

    def __init__(self, settings: CaptureSettings, metrics: RouterMetrics) -> None:
        assert settings.path is not None
        self.directory = private_dir(Path(settings.path).expanduser())
        self.images = private_dir(self.directory / "images") if settings.images == "store" else None
        self.sample_rate = settings.sample_rate
        self.max_file_bytes = settings.max_file_bytes
        self.metrics = metrics
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_size)
        self._prefix = f"capture-{socket.gethostname()}-{os.getpid()}"
        self._fd: int | None = None
        self._written = 0
        self._files = 0
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    @property
    def current_file(self) -> Path | None:
        return self._path if self._fd is not None else None

    def submit(self, row: CaptureRow) -> None:
        """Queue a row; never blocks, never raises (a full queue drops it, counted)."""
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.metrics.capture_dropped.labels("queue_full").inc()

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._files += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self._path = self.directory / f"{self._prefix}-{stamp}-{self._files:04d}.jsonl"
        self._fd = open_private(self._path)
        self._written = 0

    def _write(self, rows: list[CaptureRow]) -> None:
        lines = []
        for row in rows:
            try:
                lines.append(row.to_json(self.images))
            except Exception:  # an unserialisable row is one lost row, never a crash
                self.metrics.capture_dropped.labels("write_error").inc()
        data = b"".join(lines)
        if not data:
            return
        try:
            full = self._written > 0 and self._written + len(data) > self.max_file_bytes
            if self._fd is None or full:
                self._open_next()
            assert self._fd is not None
            os.write(self._fd, data)
            self._written += len(data)
            self.metrics.capture_rows.inc(len(lines))
        except OSError:
            self.metrics.capture_dropped.labels("write_error").inc(len(lines))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            rows = [first]
            stop = False
            while len(rows) < 256:  # write what has piled up in one go
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                rows.append(item)
            self._write(rows)
            if stop:
                break
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the thread (at shutdown)."""
        while True:
            try:
                self._queue.put(_STOP, timeout=timeout_s)
                break
            except queue.Full:  # pragma: no cover - the writer is always draining
                continue
        self._thread.join(timeout_s)
