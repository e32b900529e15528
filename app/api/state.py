"""What the request handlers share: settings, config, metrics, the strategy, clients.

Built by :func:`app.server.factory.create_app` and its lifespan; the routes read it from
``request.app.state.router``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from app.api.admission import Admission
    from app.api.readiness import WorkerGroup
    from app.capture.writer import CaptureWriter
    from app.images.loader import ImageLoader
    from app.metrics import RouterMetrics
    from app.proxy.forward import Proxy
    from app.settings import Settings
    from models.core.routing_config import ModelConfig, RoutingConfig
    from strategies.base import RoutingStrategy
    from strategies.sessions import SessionRouter


class StrategyUsers:
    """Route calls in flight per strategy object, so a reload (SIGHUP) closes the strategy
    it replaced only once the requests that were routing on it have their answer."""

    def __init__(self) -> None:
        self._count: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    @contextlib.contextmanager
    def using(self, strategy: object) -> Iterator[None]:
        key = id(strategy)
        self._count[key] = self._count.get(key, 0) + 1
        self._idle.setdefault(key, asyncio.Event()).clear()
        try:
            yield
        finally:
            self._count[key] -= 1
            if self._count[key] == 0:
                del self._count[key]
                self._idle.pop(key).set()

    def busy(self, strategy: object) -> int:
        return self._count.get(id(strategy), 0)

    async def wait_idle(self, strategy: object, timeout_s: float) -> bool:
        """True once no request routes on ``strategy``; False after ``timeout_s``."""
        event = self._idle.get(id(strategy))
        if event is None:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        return True


@dataclass
class RouterState:
    """Everything the request handlers share, built by create_app and the lifespan."""

    settings: Settings
    config: RoutingConfig
    metrics: RouterMetrics
    strategy: RoutingStrategy | None = None
    start_error: str | None = None  # the detail, for the log and on_fatal only
    failure: str | None = None  # what /ready may tell anyone: no paths, no exception text
    started: bool = False  # start() returned; not ready after that means unhealthy
    http: httpx.AsyncClient | None = None
    images: ImageLoader | None = None
    proxy: Proxy | None = None
    capture: CaptureWriter | None = None
    workers: WorkerGroup | None = None
    sessions: SessionRouter | None = None  # ROUTER_SESSIONS__POLICY other than off
    baseline: ModelConfig | None = None  # what savings are counted against (proxy mode)
    admission: Admission = field(init=False)
    created: int = field(default_factory=lambda: int(time.time()))
    users: StrategyUsers = field(default_factory=StrategyUsers)

    @property
    def ready(self) -> bool:
        return self.strategy is not None and self.strategy.ready
