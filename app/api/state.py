"""What the request handlers share: settings, config, metrics, the strategy, clients.

Built by :func:`app.server.factory.create_app` and its lifespan; the routes read it from
``request.app.state.router``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from app.api.admission import Admission
    from app.api.readiness import WorkerGroup
    from app.images.loader import ImageLoader
    from app.metrics import RouterMetrics
    from app.proxy.forward import Proxy
    from app.settings import Settings
    from models.core.routing_config import ModelConfig, RoutingConfig
    from strategies.base import RoutingStrategy


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
    workers: WorkerGroup | None = None
    baseline: ModelConfig | None = None  # what savings are counted against (proxy mode)
    admission: Admission = field(init=False)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.strategy is not None and self.strategy.ready
