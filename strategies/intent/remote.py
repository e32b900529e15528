"""The ``remote`` intent backend: the Arch-Router-style prompt sent to an OpenAI-compatible
server (``vllm serve``, SGLang, NIM) so every router replica shares one LLM deployment.

It uses ``/v1/chat/completions`` with the whole classification prompt as one user
message: every OpenAI-compatible server has that endpoint, and the server renders the
model's own chat template (``chat_template_kwargs.enable_thinking=false`` asks Qwen3
for its non-thinking mode), so the router needs neither the tokenizer nor the template.
The routes come first in the message, so the server's prefix cache still reuses them.
The answer is constrained to the route names where the server supports it
(``structured_outputs.choice`` on current vLLM, ``guided_choice`` on older vLLM) and
parsed either way, because a server that does not know the field ignores it (vLLM 0.32
accepts unknown fields; it only warns about the removed ``guided_choice``): an answer
that names no route becomes ``other`` and is counted.

Failures (connection refused, timeouts, 4xx/5xx) raise :class:`RemoteClassifierError`,
which the strategy's failure policy (``timeout_s``, ``on_error``) turns into the
fallback model or a 503, exactly as for the in-process backend. Only connect errors,
429 and 503 are retried, at most ``max_retries`` times.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import httpx

from models.core.errors import StrategyError
from models.core.routing_config import OTHER_INTENT
from models.inference.vllm_engine import choice_max_tokens
from strategies.intent.prompt import (
    CHARS_PER_TOKEN,
    CharCountTokenizer,
    PromptBuilder,
    PromptTooLongError,
    parse_choice,
    prompt_content,
)
from strategies.intent.strategy import IntentResult, allowed_intents, route_names

if TYPE_CHECKING:
    from models.core.conversation import Conversation
    from strategies.base import StrategyContext

RETRY_STATUSES = (429, 503)
BACKOFF_S = 0.05  # first retry delay, doubled each time
PROBE_INTERVAL_S = 1.0
MAX_ERROR_CHARS = 200


class RemoteClassifierError(StrategyError):
    """One classification call to the remote server failed."""


class RemoteStartupError(StrategyError):
    """The remote server is unreachable or does not serve the configured model."""


class RemoteIntentClassifier:
    """Names the conversation's intent by asking an OpenAI-compatible LLM server."""

    def __init__(
        self, context: StrategyContext, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._ctx = context
        self._settings = context.settings.intent
        self._transport = transport
        self.choices = route_names(context)
        self.max_tokens = choice_max_tokens(self.choices)
        self.base_url = self._settings.base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        limit = self._settings.max_model_len - self.max_tokens
        budget = min(self._settings.prompt_token_budget or limit - 16, limit)
        try:
            self.builder = PromptBuilder(
                CharCountTokenizer(),
                prompt_content(context),
                budget,
                self._settings.window_turns,
                scale=CHARS_PER_TOKEN,
            )
        except PromptTooLongError as exc:
            raise RemoteStartupError(str(exc)) from exc

    @property
    def healthy(self) -> bool:
        """Started: the startup probe found the model on the server."""
        return self._client is not None

    def _headers(self) -> dict[str, str]:
        name = self._settings.api_key_env
        if not name:
            return {}
        key = os.environ.get(name, "")
        if not key:
            raise RemoteStartupError(
                f"ROUTER_INTENT__API_KEY_ENV names {name}, which is not set or empty"
            )
        return {"Authorization": f"Bearer {key}"}

    async def start(self) -> None:
        """Open the connection pool and wait until the server lists the model."""
        timeout = self._settings.timeout_s
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=self._transport,
            follow_redirects=False,
        )
        try:
            await self._probe(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def _probe(self, client: httpx.AsyncClient) -> None:
        """GET /models until it lists the model (or ``startup_timeout_s`` passes)."""
        model, url = self._settings.model, f"{self.base_url}/models"
        deadline = time.monotonic() + self._settings.startup_timeout_s
        while True:
            try:
                resp = await client.get("/models")
                if resp.status_code == 200:
                    served = [str(m.get("id")) for m in resp.json().get("data", [])]
                    if model in served:
                        return
                    raise RemoteStartupError(
                        f"{url} does not serve ROUTER_INTENT__MODEL={model!r}; it serves "
                        f"{served}: set ROUTER_INTENT__MODEL to the served model name"
                    )
                if resp.status_code in (401, 403):
                    raise RemoteStartupError(
                        f"{url} refused the API key (HTTP {resp.status_code}): check "
                        "ROUTER_INTENT__API_KEY_ENV"
                    )
                last = f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteStartupError(
                    f"no OpenAI-compatible server listed models at {url} within "
                    f"{self._settings.startup_timeout_s:g} s (last error: {last}); check "
                    "ROUTER_INTENT__BASE_URL"
                )
            await asyncio.sleep(min(PROBE_INTERVAL_S, left))

    def request_body(self, text: str, choices: list[str]) -> dict[str, Any]:
        """The chat-completions request for one classification."""
        body: dict[str, Any] = {
            "model": self._settings.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "chat_template_kwargs": {"enable_thinking": False},
        }
        guided = self._settings.guided
        if guided == "structured_outputs":
            body["structured_outputs"] = {"choice": choices}
        elif guided == "guided_choice":
            body["guided_choice"] = choices
        return body

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST with bounded retries on connect errors, 429 and 503."""
        if self._client is None:
            raise RemoteClassifierError("remote intent classifier is not started")
        attempts = self._settings.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                resp = await self._client.post("/chat/completions", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect to {self.base_url} ({type(exc).__name__})"
                continue
            except httpx.HTTPError as exc:
                raise RemoteClassifierError(
                    f"remote classifier call failed: {type(exc).__name__}"
                ) from exc
            if resp.status_code in RETRY_STATUSES:
                last = f"{self.base_url} answered {resp.status_code}"
                continue
            if resp.status_code >= 400:
                raise RemoteClassifierError(
                    f"{self.base_url} answered {resp.status_code}: {resp.text[:MAX_ERROR_CHARS]}"
                )
            try:
                data = resp.json()
            except ValueError as exc:
                raise RemoteClassifierError("remote classifier answered invalid JSON") from exc
            if not isinstance(data, dict):
                raise RemoteClassifierError("remote classifier answered a non-object")
            return data
        raise RemoteClassifierError(f"{last} after {attempts} attempts")

    async def classify(self, conversation: Conversation) -> IntentResult:
        """Ask the server for the route of the conversation's latest intent."""
        prompt = self.builder.build(conversation)
        allowed = set(allowed_intents(self._ctx, conversation))
        choices = [c for c in self.choices if c in allowed]
        data = await self._post(self.request_body(prompt.text, choices))
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise RemoteClassifierError("remote classifier answer has no message") from exc
        intent = parse_choice(str(text), choices)
        if intent is None:  # the server ignored the constraint, or it was turned off
            self._ctx.metrics.invalid_answers.labels("remote").inc()
            intent = OTHER_INTENT
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        detail: dict[str, Any] = {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "turns": prompt.turns,
            "truncated": prompt.truncated,
        }
        return IntentResult(intent=intent, detail=detail)

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
