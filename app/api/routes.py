"""HTTP endpoints: chat completions (recommend or proxy), models, health, ready, metrics."""

from __future__ import annotations

import hmac
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from app.api.admission import HeldResponse
from app.api.intake import normalise
from app.api.middleware import on_completed
from app.api.schemas import (
    ChatCompletionRequest,
    chat_request_openapi,
    models_list,
    recommendation,
    recommendation_stream,
)
from app.api.sessions import session_key
from app.capture.writer import CaptureRow, json_copy
from app.logs import get_logger
from app.metrics import exposition
from models.core.conversation import Conversation
from models.core.errors import (
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    NotReadyError,
    UnauthorizedError,
)
from strategies.base import RouteOptions, RoutingDecision, strips_images

if TYPE_CHECKING:
    from app.api.state import RouterState

router = APIRouter()
CHAT_PATHS = ("/v1/chat/completions", "/sfc_router/chat/completions")
ENDPOINTS = {*CHAT_PATHS, "/v1/models"}
JSON = "application/json"


def _state(request: Request) -> RouterState:
    return request.app.state.router  # type: ignore[no-any-return]


def check_api_key(request: Request) -> None:
    """The auth hook: when ROUTER_API_KEYS is set, require one of them as a bearer token."""
    keys = _state(request).settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(token.encode(), k.encode()) for k in keys
    ):
        raise UnauthorizedError("missing or invalid API key (Authorization: Bearer <key>)")


async def parse_request(request: Request) -> tuple[dict[str, Any], ChatCompletionRequest]:
    """The body as parsed JSON (what proxy mode forwards) and as a validated request."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ClientClosedError("the client closed the connection mid-body") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequestError("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequestError("request body must be a JSON object", code="invalid_json")
    return data, ChatCompletionRequest.model_validate(data)


def _check_option_models(options: RouteOptions, known: list[str]) -> None:
    """Per-request overrides must name configured models (a typo is an error, not a no-op)."""
    named = [
        ("exclude_models", sorted(options.exclude_models)),
        ("thresholds", list(options.thresholds)),
        ("costs", list(options.costs)),
    ]
    for key, names in named:
        unknown = [m for m in names if m not in known]
        if unknown:
            param = f"router.{key}" if key == "exclude_models" else f"router.{key}.{unknown[0]}"
            raise BadRequestError(
                f"router.{key}: unknown model(s) {unknown}; configured: {known}",
                param=param,
                code="unknown_model",
            )


async def decide(
    state: RouterState,
    req: ChatCompletionRequest,
    conversation: Conversation,
    session: str | None = None,
) -> RoutingDecision:
    """Manual routing when ``model`` names a configured model, else ask the strategy (and,
    for a request in a session, the session policy)."""
    assert state.strategy is not None
    options = req.router.to_options() if req.router else RouteOptions()
    _check_option_models(options, state.config.model_names)
    if not req.wants_routing():
        return _manual(state, req, conversation)
    strategy = state.strategy  # a reload may swap it meanwhile: this request keeps it
    start = time.perf_counter()
    with state.users.using(strategy):
        decision = await strategy.route(conversation, options)
    if session is not None and state.sessions is not None:
        decision = state.sessions.apply(session, decision, options, conversation)
    # whatever strategy decided: a model that cannot see gets the images as markers
    decision.strip_images = strips_images(state.config, conversation, decision.model)
    state.metrics.decision_duration.labels(decision.strategy).observe(time.perf_counter() - start)
    return decision


def _manual(
    state: RouterState, req: ChatCompletionRequest, conversation: Conversation
) -> RoutingDecision:
    """The model the request names. A text-only model may answer a conversation whose
    earlier turns hold images (they go as markers); not one whose latest turn holds one."""
    name = (req.model or "").strip()
    if name not in state.config.model_names:
        raise NotFoundError(
            f"model '{name}' is not configured; use one of {state.config.model_names} "
            "or 'router' to let the router choose",
            param="model",
            code="model_not_found",
        )
    latest = bool(conversation.latest_images)
    if latest and not state.config.model(name).vision:
        raise BadRequestError(
            f"model '{name}' cannot accept images (vision: false) and the latest message "
            "carries one; choose a vision model or let the router route",
            param="model",
            code="model_not_eligible",
        )
    return RoutingDecision(
        model=name,
        strategy=state.strategy.name if state.strategy else "manual",
        reason="manual",
        ranking=[name],
        needs_vision=latest,
        strip_images=strips_images(state.config, conversation, name),
    )


def _log_decision(
    state: RouterState,
    decision: RoutingDecision,
    conversation: Conversation,
    latency_s: float,
    stream: bool,
) -> None:
    extra = {"prompt": conversation.transcript()} if state.settings.log_prompts else {}
    get_logger().info(
        "route_decided",
        strategy=decision.strategy,
        model=decision.model,
        intent=decision.intent,
        reason=decision.reason,
        latency_s=round(latency_s, 6),
        turns=len(conversation.turns),
        images=len(conversation.images),
        latest_images=len(conversation.latest_images),
        strip_images=decision.strip_images,
        stream=stream,
        mode=state.settings.mode,
        **extra,
    )


def _capture_row(
    state: RouterState,
    request: Request,
    body: dict[str, Any],
    decision: RoutingDecision,
    stream: bool,
) -> CaptureRow | None:
    """This request's capture row, when capture is on and the request is sampled."""
    capture = state.capture
    if capture is None or (capture.sample_rate < 1.0 and random.random() >= capture.sample_rate):
        return None
    return CaptureRow(
        request_id=str(request.scope.get("state", {}).get("request_id", "")),
        messages=json_copy(body.get("messages", [])),
        decision={
            "model": decision.model,
            "strategy": decision.strategy,
            "intent": decision.intent,
            "reason": decision.reason,
        },
        mode=state.settings.mode,
        time=time.time(),
        stream=stream,
    )


def _finish_capture(state: RouterState, row: CaptureRow) -> Callable[[int, dict[str, Any]], None]:
    """The completion hook that captures a proxied request once its answer has been sent:
    the status the client got, the model that answered and the tokens it reported."""

    def finish(status: int, fields: dict[str, Any]) -> None:
        row.status, row.answered_by = status, fields.get("model")
        if "prompt_tokens" in fields:
            row.usage = {
                key: fields[key]
                for key in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")
                if key in fields
            }
        if state.capture is not None:
            state.capture.submit(row)

    return finish


@router.post(CHAT_PATHS[0], openapi_extra=chat_request_openapi())
@router.post(CHAT_PATHS[1], include_in_schema=False)
async def chat_completions(request: Request) -> Response:
    """Route an OpenAI chat-completions request: recommend a model, or proxy to it.

    Admission comes before the body is read, so refusing is cheap; the slot is held
    until the response has been sent (a proxied stream counts until its last byte).
    """
    state = _state(request)
    check_api_key(request)
    if not state.ready:
        raise NotReadyError("the router is still loading; retry shortly")
    slot = await state.admission.acquire()
    try:
        response = await _complete(state, request)
    except BaseException:
        slot.release()
        raise
    return HeldResponse(response, slot.release)


async def _complete(state: RouterState, request: Request) -> Response:
    began = time.perf_counter()
    body, req = await parse_request(request)
    conversation = await normalise(req, state.settings, state.images)
    decision = await decide(state, req, conversation, session_key(request, req))
    latency = time.perf_counter() - began
    state.metrics.decisions.labels(
        decision.strategy, decision.model, decision.intent or "", decision.reason
    ).inc()
    _log_decision(state, decision, conversation, latency, req.stream)
    row = _capture_row(state, request, body, decision, req.stream)
    if state.proxy is not None:
        excluded = frozenset(req.router.exclude_models) if req.router else frozenset()
        response = await state.proxy.forward(
            request, body, conversation, decision, latency, req.stream, excluded
        )
        if row is not None:
            on_completed(request.scope, _finish_capture(state, row))
        return response
    if row is not None:
        state.capture.submit(row)  # type: ignore[union-attr]
    if req.stream:
        return StreamingResponse(
            recommendation_stream(decision, latency), media_type="text/event-stream"
        )
    return Response(recommendation(decision, latency), media_type=JSON)


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    """The configured models (OpenAI list shape)."""
    state = _state(request)
    check_api_key(request)
    return Response(models_list(state.config.model_names, state.created), media_type=JSON)


@router.get("/health")
async def health() -> Response:
    """Liveness: the process is up and serving HTTP."""
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/ready")
async def ready(request: Request) -> Response:
    """Readiness: 200 once the strategy is loaded and warm, 503 before (or if it failed).
    With several workers, whichever answers reports them all: 200 only when every one is."""
    state = _state(request)
    if state.ready and state.workers is not None and not state.workers.all_ready():
        raise NotReadyError(f"not ready: workers loading ({state.workers.describe()})")
    if state.ready:
        body = {"status": "ready", "strategy": state.settings.strategy}
        return Response(orjson.dumps(body), media_type=JSON)
    if state.failure:  # the detail (paths, exception text) is in the log only
        raise NotReadyError(f"not ready: {state.failure}")
    if state.started:  # e.g. the vLLM engine died and the process was told not to exit
        raise NotReadyError("not ready: the strategy is unhealthy; see the server log")
    raise NotReadyError("not ready: strategy is loading")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(exposition(_state(request).metrics), media_type=CONTENT_TYPE_LATEST)
