"""structlog setup: JSON in production, console in development, request id in every event.

Library loggers (uvicorn, sentence-transformers, transformers, httpx, vLLM, Python
warnings) go through the same renderer: the root logger gets one handler whose
structlog ``ProcessorFormatter`` renders stdlib records like structlog events, so with
JSON logs every line a server writes is one JSON object.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: loggers whose libraries may install their own plain-text handlers
LIBRARY_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "transformers",
    "sentence_transformers",
    "httpx",
    "httpcore",
    "vllm",
    "torch",
    "py.warnings",
)


class _RouterHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (marked so a reconfigure replaces it)."""


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Configure structlog and route every stdlib logger through the same renderer."""
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _RouterHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RouterHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    # vLLM installs its own plain-text handler at import unless told not to
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    adopt_library_loggers()
    # httpx logs every request at INFO (proxy mode: one line per upstream call)
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


def adopt_library_loggers() -> None:
    """Send library loggers that installed their own console handler (transformers does,
    on first use) through the root handler instead. Call again after loading models."""
    names = [*LIBRARY_LOGGERS, *logging.root.manager.loggerDict]
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        removed = False
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            if type(handler) is logging.StreamHandler and stream in (sys.stderr, sys.stdout):
                logger.removeHandler(handler)
                removed = True
        # only where a handler was taken away: a logger silenced on purpose stays silent
        # (uvicorn's access log, off: the middleware writes request_completed instead)
        if removed and not logger.handlers:
            logger.propagate = True


#: the ASGI scope key where a request's handlers leave fields for its access log event
#: (``request_completed``, written by app.api.middleware); the scope is the request's own
ACCESS_FIELDS = "llm_router.access_log"


def access_fields(scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """The fields the request's access log event will carry (handlers add to them)."""
    fields: dict[str, Any] = scope.setdefault(ACCESS_FIELDS, {})
    return fields


def get_logger() -> structlog.stdlib.BoundLogger:
    return structlog.get_logger("llm_router")  # type: ignore[no-any-return]
