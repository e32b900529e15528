"""The ``vllm`` intent backend: an LLM picks a route name for the conversation.

Arch-Router-style prompt: an instruction and the configured routes as JSON first (the
fixed part, byte-identical for every request, so vLLM's prefix cache reuses it), then
a window of recent turns, then the question: which route best matches the user's
*latest* intent, or ``other``. The answer is constrained to the route names with
structured outputs, so it is always a configured route. The engine batches concurrent
requests itself: classify() awaits it directly, with no lock and no thread.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.config import OTHER_INTENT
from models.vllm_engine import ChoiceOutput, EngineStartupError, choice_max_tokens
from strategies.intent import IntentResult, allowed_intents, route_names

if TYPE_CHECKING:
    from app.settings import IntentSettings
    from strategies.base import Conversation, StrategyContext, Turn

INSTRUCTION = (
    "You are a router. Choose the route that best matches the user's latest intent in a "
    "conversation.\n"
    "The routes are listed in <routes></routes> as JSON objects with a name and a "
    "description:\n"
    "<routes>\n{routes}\n</routes>\n\n"
    "The conversation is in <conversation></conversation>, one JSON message per line, "
    "oldest first. [image] marks an image the user attached.\n"
    "<conversation>\n"
)
QUESTION = (
    "\n</conversation>\n\n"
    "Which route best matches the user's latest intent? Earlier turns are context only. "
    "If no route matches, or the latest intent is already fulfilled, answer other. "
    "Answer with the route name only."
)
OTHER_DESCRIPTION = "None of the other routes matches the user's latest intent."
SYSTEM_ROLES = ("system", "developer")
TURN_TOKEN_CAP = 256  # older turns, assistant replies and tool output: enough for context
SYSTEM_TOKEN_CAP = 128  # the application's system prompt: lowest priority, kept short
MIN_CONVERSATION_TOKENS = 32
MAX_CHARS_PER_TOKEN = 16  # pre-cut huge texts by characters before tokenizing them
ELLIPSIS = "…"
_SENTINEL = "\x00CONVERSATION\x00"


class ChoiceEngine(Protocol):
    """What the classifier needs from an engine (``models.vllm_engine.VllmEngine``)."""

    tokenizer: Any
    max_model_len: int

    async def generate_choice(
        self,
        prompt: str | Sequence[int],
        choices: Sequence[str],
        request_id: str,
        max_tokens: int | None = None,
    ) -> ChoiceOutput: ...

    async def shutdown(self) -> None: ...


EngineFactory = Callable[["IntentSettings"], Awaitable[ChoiceEngine]]


async def default_engine_factory(settings: IntentSettings) -> ChoiceEngine:
    """Start the real in-process vLLM engine (imports vLLM)."""
    from models.vllm_engine import VllmEngine

    return await VllmEngine.start(settings)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered classification prompt."""

    text: str
    token_ids: list[int]
    turns: int  # conversation turns shown to the model (system prompt included)
    truncated: bool  # some turn was shortened or dropped


def routes_json(context: StrategyContext) -> str:
    """The routes block: one ``{name, description}`` JSON object per line."""
    described = {intent.name: intent.description for intent in context.config.intents}
    rows = [
        json.dumps(
            {"name": name, "description": described.get(name, OTHER_DESCRIPTION)},
            ensure_ascii=False,
        )
        for name in route_names(context)
    ]
    return "[\n" + ",\n".join(rows) + "\n]"


def _line(role: str, text: str) -> str:
    return json.dumps({"role": role, "content": text}, ensure_ascii=False)


class VllmIntentClassifier:
    """Names the conversation's intent with an LLM on vLLM."""

    def __init__(self, context: StrategyContext, engine_factory: EngineFactory | None = None):
        self._ctx = context
        self._settings = context.settings.intent
        self._factory = engine_factory
        self.choices = route_names(context)
        self.max_tokens = choice_max_tokens(self.choices)
        self._engine: ChoiceEngine | None = None
        self._before: list[int] = []
        self._after: list[int] = []
        self._before_text = ""
        self._after_text = ""
        self._newline: list[int] = []
        self.conversation_budget = 0

    async def start(self) -> None:
        """Start the engine and pre-tokenize the fixed parts of the prompt."""
        factory = self._factory or default_engine_factory
        engine = await factory(self._settings)
        try:
            self._prepare(engine)
        except Exception:
            await engine.shutdown()
            raise
        self._engine = engine

    def _prepare(self, engine: ChoiceEngine) -> None:
        tok = engine.tokenizer
        content = INSTRUCTION.format(routes=routes_json(self._ctx)) + _SENTINEL + QUESTION
        rendered = self._render(tok, content)
        self._before_text, _, self._after_text = rendered.partition(_SENTINEL)
        self._before = self._encode(tok, self._before_text)
        self._after = self._encode(tok, self._after_text)
        self._newline = self._encode(tok, "\n")
        limit = engine.max_model_len - self.max_tokens
        budget = self._settings.prompt_token_budget or limit - 16
        budget = min(budget, limit)
        self.conversation_budget = budget - len(self._before) - len(self._after)
        if self.conversation_budget < MIN_CONVERSATION_TOKENS:
            raise EngineStartupError(
                f"the routes prompt takes {len(self._before) + len(self._after)} tokens, "
                f"leaving {self.conversation_budget} of the {budget}-token prompt budget for "
                "the conversation: raise ROUTER_INTENT__MAX_MODEL_LEN / "
                "ROUTER_INTENT__PROMPT_TOKEN_BUDGET or shorten the intent descriptions"
            )

    @staticmethod
    def _render(tokenizer: Any, content: str) -> str:
        """The chat-templated prompt, in Qwen3 non-thinking mode (empty think block).

        Templates without ``enable_thinking`` ignore it; a tokenizer without a chat
        template gets the plain text, as a completion prompt.
        """
        messages = [{"role": "user", "content": content}]
        try:
            rendered = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
            )
        except (ValueError, TypeError, AttributeError, KeyError):
            rendered = None
        if not isinstance(rendered, str) or _SENTINEL not in rendered:
            return content + "\nRoute: "
        return rendered

    @staticmethod
    def _encode(tokenizer: Any, text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    def _fit(
        self, tok: Any, role: str, text: str, limit: int, keep_end: bool
    ) -> tuple[list[int], str, bool] | None:
        """The turn's line within ``limit`` tokens, shortened if needed (with ``…``).

        ``keep_end`` keeps the text's end (the latest user turn: its last words are the
        request); otherwise the start. None when not even a stub fits. Text far beyond
        the limit is cut by characters first, so a huge message costs no more to
        tokenize than the budget it can use.
        """
        max_chars = max(limit, 0) * MAX_CHARS_PER_TOKEN
        if len(text) <= max_chars:
            line = _line(role, text)
            ids = self._encode(tok, line)
            if len(ids) <= limit:
                return ids, line, False
            body = text
        else:
            body = text[-max_chars:] if keep_end else text[:max_chars]
        content = self._encode(tok, body)
        wrapper = len(self._encode(tok, _line(role, ELLIPSIS)))
        keep = min(len(content), limit - wrapper)
        for _ in range(6):
            if keep <= 0:
                return None
            part = tok.decode(content[-keep:] if keep_end else content[:keep]).strip("\ufffd")
            line = _line(role, ELLIPSIS + part if keep_end else part + ELLIPSIS)
            ids = self._encode(tok, line)
            if len(ids) <= limit:
                return ids, line, True
            # JSON escapes make a line cost more than its content: shrink in proportion
            keep = min(keep - 1, keep * (limit - wrapper) // max(len(ids) - wrapper, 1))
        return None

    def _window(self, conversation: Conversation) -> tuple[list[tuple[list[int], str]], bool]:
        """Lines for the recent turns that fit the budget, oldest first.

        The latest user turn always comes in (its start cut if it alone is too long);
        then newer turns, then older ones newest first until the budget or
        ``window_turns`` user turns run out; the system prompt last, if room is left.
        """
        assert self._engine is not None
        tok = self._engine.tokenizer
        dialog = [t for t in conversation.turns if t.role not in SYSTEM_ROLES]
        system = "\n".join(
            t.text for t in conversation.turns if t.role in SYSTEM_ROLES and t.text.strip()
        )
        users = [i for i, t in enumerate(dialog) if t.role == "user"]
        truncated = len(users) > self._settings.window_turns
        start = users[-self._settings.window_turns] if truncated else 0
        anchor = users[-1] if users else len(dialog) - 1
        order = [anchor, *range(anchor + 1, len(dialog)), *range(anchor - 1, start - 1, -1)]
        room = self.conversation_budget
        picked: dict[int, tuple[list[int], str]] = {}
        for i in order if dialog else ():
            turn: Turn = dialog[i]
            cost = len(self._newline) if picked else 0
            limit = room - cost if i == anchor else min(room - cost, TURN_TOKEN_CAP)
            fitted = self._fit(tok, turn.role, turn.text, limit, keep_end=i == anchor)
            if fitted is None:
                truncated = True
                break
            ids, line, cut = fitted
            picked[i] = (ids, line)
            truncated |= cut
            room -= len(ids) + cost
        lines = [picked[i] for i in sorted(picked)]
        truncated |= len(picked) < len(dialog) - start
        if system:
            cost = len(self._newline) if lines else 0
            fitted = self._fit(tok, "system", system, min(room - cost, SYSTEM_TOKEN_CAP), False)
            if fitted is None:
                truncated = True
            else:
                lines.insert(0, (fitted[0], fitted[1]))
                truncated |= fitted[2]
        return lines, truncated

    def build_prompt(self, conversation: Conversation) -> Prompt:
        """The full prompt for ``conversation``: fixed prefix, window, question."""
        lines, truncated = self._window(conversation)
        ids = list(self._before)
        for n, (line_ids, _) in enumerate(lines):
            if n:
                ids.extend(self._newline)
            ids.extend(line_ids)
        ids.extend(self._after)
        text = self._before_text + "\n".join(line for _, line in lines) + self._after_text
        return Prompt(text=text, token_ids=ids, turns=len(lines), truncated=truncated)

    def parse(self, text: str) -> str:
        """The route an answer names; ``other`` if it names none (cannot happen with
        structured outputs, but a cut-off answer should still map somewhere sane)."""
        answer = text.strip()
        if answer in self.choices:
            return answer
        matches = [c for c in self.choices if answer and c.startswith(answer)]
        return matches[0] if len(matches) == 1 else OTHER_INTENT

    async def classify(self, conversation: Conversation) -> IntentResult:
        """Ask the engine for the route of the conversation's latest intent."""
        if self._engine is None:
            raise RuntimeError("vLLM intent classifier is not started")
        prompt = self.build_prompt(conversation)
        # routes whose `requires` fail (e.g. try_again with no earlier answer) are not
        # offered; the prompt still lists every route so its prefix stays cacheable
        allowed = set(allowed_intents(self._ctx, conversation))
        choices = [c for c in self.choices if c in allowed]
        out = await self._engine.generate_choice(
            prompt.token_ids, choices, f"intent-{uuid.uuid4().hex}", self.max_tokens
        )
        detail: dict[str, Any] = {
            "prompt_tokens": out.prompt_tokens or len(prompt.token_ids),
            "cached_tokens": out.cached_tokens,
            "turns": prompt.turns,
            "truncated": prompt.truncated,
        }
        if out.logprob is not None and math.isfinite(out.logprob):
            detail["confidence"] = round(math.exp(out.logprob), 4)
        return IntentResult(intent=self.parse(out.text), detail=detail)

    async def aclose(self) -> None:
        """Shut the engine down."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.shutdown()
