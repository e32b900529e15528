"""Every Prometheus metric the service exports, in one place.

Built per app on its own registry (no import-time registration), so tests and
benchmarks can create many apps in one process. Names: ``llm_router_`` prefix, base
units, counters end in ``_total``; labels come from small fixed sets only.

With several worker processes (``ROUTER_WORKERS``) prometheus-client runs in
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker imports it,
every value lives in a file there, and :func:`exposition` merges them, so one scrape
shows every worker's counters and histograms summed. Gauges say how to merge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when this process is one of several workers."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(metrics: RouterMetrics) -> bytes:
    """The Prometheus text for ``/metrics``: all workers merged in multiprocess mode."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


# Decision latencies are milliseconds-scale; request durations include proxying.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# USD per answer: a short nano answer costs ~1e-5, a long frontier one ~0.1
COST_BUCKETS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


class RouterMetrics:
    """The service's metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_router_requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "llm_router_request_duration_seconds",
            "HTTP request duration by endpoint.",
            ["endpoint"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_router_requests_in_flight",
            "HTTP requests being handled.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.decisions = Counter(
            "llm_router_decisions_total",
            "Routing decisions by strategy, chosen model, intent and reason.",
            ["strategy", "model", "intent", "reason"],
            registry=r,
        )
        self.decision_duration = Histogram(
            "llm_router_decision_duration_seconds",
            "Time to reach a routing decision (normalised input to decision).",
            ["strategy"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "llm_router_stage_duration_seconds",
            "Strategy stage latency (parse, encode, classify, select).",
            ["strategy", "stage"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.strategy_errors = Counter(
            "llm_router_strategy_errors_total",
            "Classifier failures and timeouts, by strategy and what happened.",
            ["strategy", "kind"],
            registry=r,
        )
        self.batch_size = Histogram(
            "llm_router_batch_size",
            "Inputs per encoder batch.",
            ["encoder"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "llm_router_queue_depth",
            "Inputs waiting for an encoder batch.",
            ["encoder"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "llm_router_rejected_total",
            "Requests refused by the router itself, by reason (queue_full, queue_timeout, "
            "encoder_queue_full, too_large, proxy_saturated: no free upstream connection).",
            ["reason"],
            registry=r,
        )
        self.admission_wait = Histogram(
            "llm_router_admission_wait_seconds",
            "Time admitted requests waited for a slot (0 when one was free).",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.admission_queued = Gauge(
            "llm_router_admission_queued",
            "Requests waiting in the admission queue for a slot.",
            registry=r,
        )
        self.upstream_requests = Counter(
            "llm_router_upstream_requests_total",
            "Proxy: upstream HTTP exchanges by model and outcome (2xx, 3xx, 4xx, 429, 5xx, "
            "connect_error, connect_timeout, timeout, error, stale_connection, cancelled).",
            ["model", "outcome"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "llm_router_upstream_duration_seconds",
            "Proxy: upstream call duration until the response is complete.",
            ["model"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.upstream_ttfb = Histogram(
            "llm_router_upstream_ttfb_seconds",
            "Proxy: time until the upstream's response headers arrive.",
            ["model"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.upstream_fallbacks = Counter(
            "llm_router_upstream_fallbacks_total",
            "Proxy: fallbacks from one model to the next, by the failed attempt's outcome "
            "(or unusable: no base_url or key).",
            ["from_model", "to_model", "reason"],
            registry=r,
        )
        self.proxy_overhead = Histogram(
            "llm_router_proxy_overhead_seconds",
            "Proxy: router time per request excluding upstream time and routing decision.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_router_tokens_total",
            "Proxy: tokens of answered requests as the upstream reported them, by the model "
            "that answered and type (prompt, completion; cached: the part of prompt the "
            "upstream served from its cache).",
            ["model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "llm_router_cost_usd_total",
            "Proxy: USD spent, tokens x the answering model's prices (models with prices).",
            ["model"],
            registry=r,
        )
        self.baseline_cost = Counter(
            "llm_router_baseline_cost_usd_total",
            "Proxy: USD the same token counts would have cost on the baseline model "
            "(ROUTER_COST__BASELINE_MODEL), for the answers counted in cost_usd_total.",
            registry=r,
        )
        self.request_cost = Histogram(
            "llm_router_request_cost_usd",
            "Proxy: USD per answered request, by the model that answered (models with prices).",
            ["model"],
            buckets=COST_BUCKETS,
            registry=r,
        )
        self.usage_missing = Counter(
            "llm_router_usage_missing_total",
            "Proxy: successful answers without a usable usage object (streams cut short "
            "included): their tokens are not counted.",
            ["model"],
            registry=r,
        )
        self.ready = Gauge(
            "llm_router_ready",
            "1 once the strategy is loaded and warm (every live worker, with several).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.engine_deaths = Counter(
            "llm_router_engine_deaths_total",
            "Classifier engines that died (the process then goes unready and exits).",
            ["backend"],
            registry=r,
        )
        self.invalid_answers = Counter(
            "llm_router_intent_invalid_answers_total",
            "Classifier answers that named no route (mapped to 'other').",
            ["backend"],
            registry=r,
        )
        self.capture_rows = Counter(
            "llm_router_capture_rows_total",
            "Requests written to the traffic capture (ROUTER_CAPTURE__PATH).",
            registry=r,
        )
        self.capture_dropped = Counter(
            "llm_router_capture_dropped_total",
            "Sampled requests the capture did not write, by reason (queue_full: the writer "
            "fell behind; write_error: disk full or unwritable).",
            ["reason"],
            registry=r,
        )
        self.config_reloads = Counter(
            "llm_router_config_reloads_total",
            "Reloads of the routing config and its artifact (SIGHUP), by result (success, "
            "error: the old config kept serving).",
            ["result"],
            registry=r,
        )
        self.info = Gauge(
            "llm_router_build_info",
            "Build and strategy information (value is always 1).",
            ["version", "strategy", "mode", "backend"],
            registry=r,
            multiprocess_mode="max",
        )

    def include_default_registry(self, prefix: str) -> None:
        """Also export the process-wide registry's metrics named ``prefix*`` (vLLM's
        stat logger registers its ``vllm:*`` metrics there)."""
        self.registry.register(_PrefixBridge(prefix))


class _PrefixBridge:
    """A collector that re-exports the default registry's metric families by prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def describe(self) -> list[Metric]:
        return []  # names unknown until collected; no clash check needed for vllm:*

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name.startswith(self.prefix):
                yield family
