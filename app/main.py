"""``create_app(settings)``: builds the FastAPI app; its lifespan loads one strategy.

Config and strategy name are checked when the app is built (a bad config never
serves). Loading and warming the strategy runs in the background so ``/health``
answers at once and ``/ready`` says 503 until the strategy is warm; a failure there
is fatal (``on_fatal`` lets the server exit non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from app import __version__
from app.admission import Admission
from app.config import RoutingConfig, load_routing_config
from app.errors import install_error_handlers
from app.image_loader import ImageLoader
from app.logs import adopt_library_loggers, configure_logging, get_logger
from app.metrics import RouterMetrics
from app.middleware import RouterMiddleware
from app.routes import ENDPOINTS, router
from app.settings import Settings, get_settings
from app.workers import WorkerGroup, torch_threads
from strategies.base import RoutingStrategy, StrategyContext
from strategies.registry import create_strategy, resolve


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
    proxy: Any = None
    workers: WorkerGroup | None = None
    admission: Admission = field(init=False)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.strategy is not None and self.strategy.ready


def _backend_label(settings: Settings) -> str:
    if settings.strategy == "intent":
        return settings.intent.backend
    if settings.strategy == "auto":
        return settings.auto.encoder
    return "custom"


def _set_torch_threads(threads: int) -> None:
    """Bound torch's thread pool when the strategy uses torch (its default, one thread
    per core, fights the event loop and the other workers for CPU: long latency tails)."""
    torch = sys.modules.get("torch")
    if torch is None:  # torch reads this when it first starts its thread pool
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:
        torch.set_num_threads(threads)


async def _start_strategy(state: RouterState, on_fatal: Callable[[str], None] | None) -> None:
    log = get_logger()
    began = time.perf_counter()

    def fatal(message: str) -> None:  # after startup too, e.g. the vLLM engine died
        state.start_error = message
        state.failure = "the classifier engine died; the process is exiting"
        if on_fatal is not None:
            on_fatal(message)

    context = StrategyContext(
        settings=state.settings, config=state.config, metrics=state.metrics, on_fatal=fatal
    )
    try:
        _set_torch_threads(torch_threads(state.settings))
        strategy = create_strategy(state.settings.strategy, context)
        state.strategy = strategy
        await strategy.start()
    except Exception as exc:  # any load failure stops the service with a clear message
        adopt_library_loggers()
        state.start_error = f"{type(exc).__name__}: {exc}"
        state.failure = "the strategy failed to start; see the server log"
        log.error("strategy_start_failed", strategy=state.settings.strategy, error=str(exc))
        if on_fatal is not None:
            on_fatal(state.start_error)
        return
    state.started = True
    adopt_library_loggers()  # model libraries imported while loading may add handlers
    state.metrics.ready.set(1)
    if state.workers is not None:
        state.workers.mark_ready()
    log.info(
        "strategy_ready",
        strategy=state.settings.strategy,
        backend=_backend_label(state.settings),
        load_s=round(time.perf_counter() - began, 3),
    )


def create_app(
    settings: Settings | None = None,
    *,
    config: RoutingConfig | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the service. Raises ConfigError / UnknownStrategyError on bad settings."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    config = config or load_routing_config(settings.config)
    resolve(settings.strategy)  # an unknown name fails now, listing the valid ones
    metrics = RouterMetrics()
    state = RouterState(
        settings=settings, config=config, metrics=metrics, workers=WorkerGroup.from_env(settings)
    )
    limits = settings.limits
    state.admission = Admission(
        limits.max_concurrency, limits.max_queued, limits.queue_timeout_s, metrics
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.info.labels(
            __version__, settings.strategy, settings.mode, _backend_label(settings)
        ).set(1)
        limits = httpx.Limits(
            max_connections=settings.proxy.max_connections,
            keepalive_expiry=settings.proxy.keepalive_expiry_s,
        )
        state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.proxy.timeout_s, connect=settings.proxy.connect_timeout_s
            ),
            # connect failures never sent anything: retried on the spot (httpcore retries)
            transport=httpx.AsyncHTTPTransport(
                limits=limits, retries=settings.proxy.connect_retries
            ),
            follow_redirects=False,
        )
        state.images = ImageLoader(settings)
        if settings.mode == "proxy":
            from app.proxy import Proxy

            state.proxy = Proxy(state)
        task = asyncio.create_task(_start_strategy(state, on_fatal), name="strategy-start")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            metrics.ready.set(0)
            if state.workers is not None:
                state.workers.mark_gone()
            if state.strategy is not None:
                with contextlib.suppress(Exception):
                    await state.strategy.aclose()
            if state.proxy is not None:
                await state.proxy.aclose()
            await state.http.aclose()
            await state.images.aclose()

    app = FastAPI(
        title="llm-router",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.router = state
    install_error_handlers(app)
    app.include_router(router)
    if settings.playground:
        from app.playground import router as playground_router

        app.include_router(playground_router)
    app.add_middleware(
        RouterMiddleware,  # type: ignore[arg-type]
        metrics=metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        endpoints=ENDPOINTS,
    )
    return app
