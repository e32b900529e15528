"""The ``vllm`` intent backend: an LLM on an in-process vLLM engine picks a route name.

The prompt (routes first, so vLLM's prefix cache reuses them; then a window of recent
turns; then the question) comes from :mod:`strategies.intent.prompt`, rendered with the
model's chat template and tokenized here, off the event loop. The answer is constrained
to the route names with structured outputs, so it is always a configured route. The
engine batches concurrent requests itself: classify() awaits it directly, with no lock.

An engine that dies (``EngineDeadError``, or a failed periodic health check) is fatal:
it is logged once (``engine_dead``), counted, turns ``/ready`` to 503 and, unless
``ROUTER_INTENT__EXIT_ON_ENGINE_DEATH=false``, stops the process (``on_fatal``) so the
orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from models.inference.vllm_engine import (
    ChoiceOutput,
    EngineDeadError,
    EngineStartupError,
    choice_max_tokens,
)
from strategies.intent.prompt import (
    ELLIPSIS,
    INSTRUCTION,
    QUESTION,
    TURN_TOKEN_CAP,
    Prompt,
    PromptBuilder,
    PromptTooLongError,
    parse_or_other,
    prompt_content,
    render_chat,
)
from strategies.intent.strategy import IntentResult, allowed_intents, route_names

if TYPE_CHECKING:
    from models.core.conversation import Conversation
    from strategies.base import StrategyContext
    from strategies.settings import IntentSettings

__all__ = ["ELLIPSIS", "INSTRUCTION", "QUESTION", "TURN_TOKEN_CAP", "VllmIntentClassifier"]


class ChoiceEngine(Protocol):
    """What the classifier needs from an engine (``models.inference.vllm_engine.VllmEngine``)."""

    tokenizer: Any
    max_model_len: int

    async def generate_choice(
        self,
        prompt: str | Sequence[int],
        choices: Sequence[str],
        request_id: str,
        max_tokens: int | None = None,
    ) -> ChoiceOutput: ...

    async def check_health(self) -> None:
        """Raise :class:`EngineDeadError` when the engine can no longer serve."""

    async def shutdown(self) -> None: ...


EngineFactory = Callable[["IntentSettings"], Awaitable[ChoiceEngine]]


async def default_engine_factory(settings: IntentSettings) -> ChoiceEngine:
    """Start the real in-process vLLM engine (imports vLLM)."""
    from models.inference.vllm_engine import VllmEngine

    return await VllmEngine.start(settings)


class VllmIntentClassifier:
    """Names the conversation's intent with an LLM on vLLM."""

    def __init__(self, context: StrategyContext, engine_factory: EngineFactory | None = None):
        self._ctx = context
        self._settings = context.settings.intent
        self._factory = engine_factory
        self.choices = route_names(context)
        self.max_tokens = choice_max_tokens(self.choices)
        self._engine: ChoiceEngine | None = None
        self._builder: PromptBuilder | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.dead_reason: str | None = None

    @property
    def conversation_budget(self) -> int:
        return self._builder.conversation_budget if self._builder else 0

    @property
    def healthy(self) -> bool:
        """Started and the engine has not died (what ``/ready`` reflects)."""
        return self._engine is not None and self.dead_reason is None

    async def start(self) -> None:
        """Start the engine, pre-tokenize the fixed parts of the prompt, watch its health."""
        factory = self._factory or default_engine_factory
        engine = await factory(self._settings)
        try:  # rendering the template and tokenizing the routes block take a while
            self._builder = await asyncio.to_thread(self._prepare, engine)
        except Exception:
            await engine.shutdown()
            raise
        self._engine = engine
        # one thread: tokenizing is short, and a fast tokenizer releases the GIL anyway
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="intent-prompt")
        if self._settings.vllm_metrics:
            self._ctx.metrics.include_default_registry("vllm:")
        if self._settings.health_interval_s > 0:
            self._watchdog = asyncio.create_task(self._watch(engine), name="vllm-health")

    def _prepare(self, engine: ChoiceEngine) -> PromptBuilder:
        rendered = render_chat(engine.tokenizer, prompt_content(self._ctx))
        limit = engine.max_model_len - self.max_tokens
        budget = min(self._settings.prompt_token_budget or limit - 16, limit)
        try:
            return PromptBuilder(engine.tokenizer, rendered, budget, self._settings.window_turns)
        except PromptTooLongError as exc:
            raise EngineStartupError(str(exc)) from exc

    def build_prompt(self, conversation: Conversation) -> Prompt:
        """The full prompt for ``conversation``: fixed prefix, window, question."""
        if self._builder is None:
            raise EngineStartupError("vLLM intent classifier is not started")
        return self._builder.build(conversation)

    def parse(self, text: str) -> str:
        """The route an answer names; ``other`` if it names none (cannot happen with
        structured outputs, but a cut-off answer should still map somewhere sane)."""
        return parse_or_other(text, self.choices)

    async def classify(self, conversation: Conversation) -> IntentResult:
        """Ask the engine for the route of the conversation's latest intent."""
        engine = self._engine
        if engine is None or self.dead_reason is not None:
            raise EngineDeadError(f"vLLM engine is not running ({self.dead_reason or 'closed'})")
        loop = asyncio.get_running_loop()
        prompt = await loop.run_in_executor(self._executor, self.build_prompt, conversation)
        # routes whose `requires` fail (e.g. try_again with no earlier answer) are not
        # offered; the prompt still lists every route so its prefix stays cacheable
        allowed = set(allowed_intents(self._ctx, conversation))
        choices = [c for c in self.choices if c in allowed]
        try:
            out = await engine.generate_choice(
                prompt.token_ids, choices, f"intent-{uuid.uuid4().hex}", self.max_tokens
            )
        except EngineDeadError as exc:
            self._engine_died(str(exc))
            raise
        detail: dict[str, Any] = {
            "prompt_tokens": out.prompt_tokens or len(prompt.token_ids),
            "cached_tokens": out.cached_tokens,
            "turns": prompt.turns,
            "truncated": prompt.truncated,
        }
        if out.logprob is not None and math.isfinite(out.logprob):
            detail["confidence"] = round(math.exp(out.logprob), 4)
        return IntentResult(intent=self.parse(out.text), detail=detail)

    async def _watch(self, engine: ChoiceEngine) -> None:
        """Check the engine's health every ``health_interval_s``, so a death is seen
        even when no request arrives."""
        while self.dead_reason is None:
            await asyncio.sleep(self._settings.health_interval_s)
            try:
                await engine.check_health()
            except EngineDeadError as exc:
                self._engine_died(str(exc))

    def _engine_died(self, reason: str) -> None:
        """Once per engine: log, count, go unready, and stop the process if configured."""
        if self.dead_reason is not None:
            return
        self.dead_reason = reason or "engine dead"
        exit_now = self._settings.exit_on_engine_death
        structlog.get_logger("llm_router").error(
            "engine_dead", backend="vllm", error=self.dead_reason, exit=exit_now
        )
        self._ctx.metrics.engine_deaths.labels("vllm").inc()
        self._ctx.metrics.ready.set(0)
        if exit_now and self._ctx.on_fatal is not None:
            self._ctx.on_fatal(f"vLLM engine died: {self.dead_reason}")

    async def aclose(self) -> None:
        """Stop the health check and the prompt thread, then shut the engine down."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        engine, self._engine = self._engine, None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if engine is not None:
            await engine.shutdown()
