"""``create_app(settings)``: builds the FastAPI app; its lifespan loads one strategy.

Config and strategy name are checked when the app is built (a bad config never
serves). Loading and warming the strategy runs in the background so ``/health``
answers at once and ``/ready`` says 503 until the strategy is warm; a failure there
is fatal (``on_fatal`` lets the server exit non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import FastAPI

from app import __version__
from app.api.admission import Admission
from app.api.middleware import RouterMiddleware
from app.api.readiness import WorkerGroup
from app.api.routes import ENDPOINTS, router
from app.api.state import RouterState
from app.errors import install_error_handlers
from app.images.loader import ImageLoader
from app.logs import adopt_library_loggers, configure_logging, get_logger
from app.metrics import RouterMetrics
from app.proxy.accounting import resolve_baseline
from app.server.cpus import set_torch_threads, torch_threads
from app.settings import ProxySettings, Settings, get_settings
from models.core.routing_config import RoutingConfig, load_routing_config
from strategies.base import StrategyContext
from strategies.registry import create_strategy, resolve


def _backend_label(settings: Settings) -> str:
    if settings.strategy == "intent":
        return settings.intent.backend
    if settings.strategy == "auto":
        return settings.auto.encoder
    return "custom"


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
        set_torch_threads(torch_threads(state.settings))
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


def init_app_state(settings: Settings, config: RoutingConfig) -> RouterState:
    """The state every handler shares, before the lifespan opens its clients."""
    metrics = RouterMetrics()
    state = RouterState(
        settings=settings, config=config, metrics=metrics, workers=WorkerGroup.from_env(settings)
    )
    limits = settings.limits
    state.admission = Admission(
        limits.max_concurrency, limits.max_queued, limits.queue_timeout_s, metrics
    )
    return state


def upstream_client(proxy: ProxySettings) -> httpx.AsyncClient:
    """The pooled HTTP client every upstream call shares (proxy mode, image fetches)."""
    limits = httpx.Limits(
        max_connections=proxy.max_connections, keepalive_expiry=proxy.keepalive_expiry_s
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(proxy.timeout_s, connect=proxy.connect_timeout_s),
        # connect failures never sent anything: retried on the spot (httpcore retries)
        transport=httpx.AsyncHTTPTransport(limits=limits, retries=proxy.connect_retries),
        follow_redirects=False,
    )


async def _close(state: RouterState, starting: asyncio.Task[None]) -> None:
    """Undo the lifespan, in reverse order: the strategy, then the proxy and clients."""
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await starting
    state.metrics.ready.set(0)
    if state.workers is not None:
        state.workers.mark_gone()
    if state.strategy is not None:
        with contextlib.suppress(Exception):
            await state.strategy.aclose()
    if state.proxy is not None:
        await state.proxy.aclose()
    if state.http is not None:
        await state.http.aclose()
    if state.images is not None:
        await state.images.aclose()


def _lifespan(
    state: RouterState, on_fatal: Callable[[str], None] | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Open the clients, start the strategy in the background; close all on the way out."""
    settings = state.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.metrics.info.labels(
            __version__, settings.strategy, settings.mode, _backend_label(settings)
        ).set(1)
        state.http = upstream_client(settings.proxy)
        state.images = ImageLoader(settings)
        if settings.mode == "proxy":
            from app.proxy.forward import Proxy

            state.proxy = Proxy(
                state.http, state.metrics, settings.proxy, state.config, state.baseline
            )
        starting = asyncio.create_task(_start_strategy(state, on_fatal), name="strategy-start")
        try:
            yield
        finally:
            await _close(state, starting)

    return lifespan


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
    baseline = resolve_baseline(config, settings.cost.baseline_model, settings.mode == "proxy")
    state = init_app_state(settings, config)
    state.baseline = baseline
    app = FastAPI(
        title="llm-router",
        version=__version__,
        lifespan=_lifespan(state, on_fatal),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.router = state
    install_error_handlers(app)
    app.include_router(router)
    if settings.playground:
        from app.api.playground import router as playground_router

        app.include_router(playground_router)
    app.add_middleware(
        RouterMiddleware,  # type: ignore[arg-type]
        metrics=state.metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        endpoints=ENDPOINTS,
    )
    return app
