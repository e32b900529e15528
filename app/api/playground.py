"""The playground: one static page, served by the service, to watch the router decide.

Static HTML/CSS/JS shipped in the package (no CDN, no build step). The page talks to the
same public API any client uses (``/v1/chat/completions``, ``/metrics``) plus
``/playground/config.json``, which describes the loaded strategy and config without
secrets. ``ROUTER_PLAYGROUND=false`` removes all of it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from app.api.routes import check_api_key
from models.core.errors import NotFoundError

if TYPE_CHECKING:
    from app.api.state import RouterState

router = APIRouter(include_in_schema=False)
ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
}
# Everything the page loads comes from this origin; images are data:/blob: URLs it makes.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@lru_cache(maxsize=8)
def _static(name: str) -> bytes:
    return resources.files("app.api").joinpath("static", name).read_bytes()


def _page(name: str, media_type: str) -> Response:
    return Response(_static(name), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
async def root() -> Response:
    """The service's root sends a browser to the playground."""
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground")
async def playground() -> Response:
    """The playground page."""
    return _page("playground.html", "text/html; charset=utf-8")


@router.get("/playground/assets/{name}")
async def asset(name: str) -> Response:
    """The page's stylesheet and script (a fixed list: no path from the client is read)."""
    if name not in ASSETS:
        raise NotFoundError(f"no playground asset '{name}'")
    return _page(name, ASSETS[name])


@router.get("/playground/config.json")
async def playground_config(request: Request) -> Response:
    """What the page needs to offer the right controls: strategy, mode, models, intents.

    Needs the API key when auth is on (it describes the config); never returns secrets
    (no upstream URLs, no key variable names).
    """
    check_api_key(request)
    state: RouterState = request.app.state.router
    config = state.config
    body = {
        "strategy": state.settings.strategy,
        "strategy_name": state.strategy.name if state.strategy is not None else None,
        "mode": state.settings.mode,
        "backend": state.settings.intent.backend if state.settings.strategy == "intent" else None,
        "ready": state.ready,
        "auth": bool(state.settings.api_keys),
        "models": [
            {"name": m.name, "vision": m.vision, "cost": m.cost, "threshold": m.threshold}
            for m in config.models
        ],
        "intents": [{"name": i.name, "model": i.model} for i in config.intents],
        "cost_weight": getattr(state.strategy, "cost_weight", config.auto.cost_weight),
        "budget_per_1k": config.auto.budget_per_1k,
        "policy": config.auto.policy,
    }
    return Response(orjson.dumps(body), media_type="application/json")
