"""Readiness shared by the worker processes of one server (``ROUTER_WORKERS``).

Each ready worker leaves a marker file (its pid) in a directory the supervisor made, so
whichever worker answers ``/ready`` can report them all: 200 only when every one is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from app.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    from app.settings import Settings


class WorkerGroup:
    """Readiness shared by the workers of one server: one marker file per ready worker."""

    def __init__(self, directory: Path, expected: int) -> None:
        self.directory = directory / "ready"
        self.expected = expected
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, settings: Settings) -> WorkerGroup | None:
        """The group this process belongs to, or None when it serves alone."""
        shared = os.environ.get(MULTIPROC_ENV)
        if not shared or not isinstance(settings.workers, int) or settings.workers < 2:
            return None
        return cls(Path(shared), settings.workers)

    def mark_ready(self, pid: int | None = None) -> None:
        (self.directory / str(pid or os.getpid())).touch()

    def mark_gone(self, pid: int | None = None) -> None:
        (self.directory / str(pid or os.getpid())).unlink(missing_ok=True)

    def ready_count(self) -> int:
        return sum(1 for marker in self.directory.iterdir() if _alive(marker.name))

    def all_ready(self) -> bool:
        return self.ready_count() >= self.expected

    def describe(self) -> str:
        return f"{self.ready_count()}/{self.expected} ready"


def _alive(name: str) -> bool:
    if not name.isdigit():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
