"""The Arch-Router-style classification prompt shared by the ``vllm`` and ``remote`` backends.

An instruction and the configured routes as JSON first (the fixed part, byte-identical
for every request, so a prefix cache reuses it), then a window of recent turns, then
the question: which route best matches the user's *latest* intent, or ``other``.
:class:`PromptBuilder` fits the window into a token budget with whatever tokenizer it is
given: the model's own (in-process) or a character estimate (remote, where the server
holds the tokenizer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from models.core.routing_config import OTHER_INTENT
from strategies.intent.strategy import route_names

if TYPE_CHECKING:
    from models.core.conversation import Conversation, Turn
    from strategies.base import StrategyContext

INSTRUCTION = (
    "You are a router. Choose the route that best matches the user's latest intent in a "
    "conversation.\n"
    "The routes are listed in <routes></routes> as JSON objects with a name and a "
    "description:\n"
    "<routes>\n{routes}\n</routes>\n\n"
    "The conversation is in <conversation></conversation>, one JSON message per line, "
    "oldest first. [image] marks an image the user attached; an image stays in the message "
    "it came with, so choose an image route only when the latest message carries an image "
    "or asks about one.\n"
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
SENTINEL = "\x00CONVERSATION\x00"


class Tokenizer(Protocol):
    """The two tokenizer calls the window needs (a Hugging Face tokenizer has both)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> Sequence[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class CharCountTokenizer:
    """One unit per character: a conservative token count where the tokenizer is remote.

    With :data:`CHARS_PER_TOKEN` characters per token the budget in units is the token
    budget times that; English BPE averages about 4 characters per token, so a prompt
    sized this way stays under the server's context.
    """

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(map(chr, ids))


CHARS_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered classification prompt."""

    text: str
    token_ids: list[int]
    turns: int  # conversation turns shown to the model (system prompt included)
    truncated: bool  # some turn was shortened or dropped


class PromptTooLongError(ValueError):
    """The fixed part of the prompt leaves too little room for the conversation."""


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


def prompt_content(context: StrategyContext, conversation_text: str = SENTINEL) -> str:
    """The whole user message: instruction and routes, conversation, question."""
    return INSTRUCTION.format(routes=routes_json(context)) + conversation_text + QUESTION


def render_chat(tokenizer: Any, content: str) -> str:
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
    if not isinstance(rendered, str) or SENTINEL not in rendered:
        return content + "\nRoute: "
    return rendered


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    """The route an answer names: exact, or the one route a cut-off answer starts;
    None when it names none."""
    answer = text.strip()
    if answer in choices:
        return answer
    matches = [c for c in choices if answer and c.startswith(answer)]
    return matches[0] if len(matches) == 1 else None


def _line(role: str, text: str) -> str:
    return json.dumps({"role": role, "content": text}, ensure_ascii=False)


class PromptBuilder:
    """Fits a conversation window between a fixed head and tail within a token budget.

    ``rendered`` is the full prompt with :data:`SENTINEL` where the conversation goes;
    ``budget`` is the most tokens the whole prompt may take; ``scale`` is the number of
    tokenizer units per model token (1 for the model's tokenizer, :data:`CHARS_PER_TOKEN`
    for :class:`CharCountTokenizer`).
    """

    def __init__(
        self, tokenizer: Tokenizer, rendered: str, budget: int, window_turns: int, scale: int = 1
    ) -> None:
        self.tokenizer = tokenizer
        self.window_turns = window_turns
        self.scale = scale
        self.before_text, _, self.after_text = rendered.partition(SENTINEL)
        self.before = self._encode(self.before_text)
        self.after = self._encode(self.after_text)
        self.newline = self._encode("\n")
        fixed = len(self.before) + len(self.after)
        self.conversation_budget = budget * scale - fixed
        if self.conversation_budget < MIN_CONVERSATION_TOKENS * scale:
            raise PromptTooLongError(
                f"the routes prompt takes {fixed // scale} tokens, leaving "
                f"{self.conversation_budget // scale} of the {budget}-token prompt budget for "
                "the conversation: raise ROUTER_INTENT__MAX_MODEL_LEN / "
                "ROUTER_INTENT__PROMPT_TOKEN_BUDGET or shorten the intent descriptions"
            )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _fit(
        self, role: str, text: str, limit: int, keep_end: bool
    ) -> tuple[list[int], str, bool] | None:
        """The turn's line within ``limit`` units, shortened if needed (with ``…``).

        ``keep_end`` keeps the text's end (the latest user turn: its last words are the
        request); otherwise the start. None when not even a stub fits. Text far beyond
        the limit is cut by characters first, so a huge message costs no more to
        tokenize than the budget it can use.
        """
        tok = self.tokenizer
        max_chars = max(limit, 0) * MAX_CHARS_PER_TOKEN
        if len(text) <= max_chars:
            line = _line(role, text)
            ids = self._encode(line)
            if len(ids) <= limit:
                return ids, line, False
            body = text
        else:
            body = text[-max_chars:] if keep_end else text[:max_chars]
        content = self._encode(body)
        wrapper = len(self._encode(_line(role, ELLIPSIS)))
        keep = min(len(content), limit - wrapper)
        for _ in range(6):
            if keep <= 0:
                return None
            part = tok.decode(content[-keep:] if keep_end else content[:keep]).strip("\ufffd")
            line = _line(role, ELLIPSIS + part if keep_end else part + ELLIPSIS)
            ids = self._encode(line)
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
        turn_cap, system_cap = TURN_TOKEN_CAP * self.scale, SYSTEM_TOKEN_CAP * self.scale
        dialog = [t for t in conversation.turns if t.role not in SYSTEM_ROLES]
        system = "\n".join(
            t.text for t in conversation.turns if t.role in SYSTEM_ROLES and t.text.strip()
        )
        users = [i for i, t in enumerate(dialog) if t.role == "user"]
        truncated = len(users) > self.window_turns
        start = users[-self.window_turns] if truncated else 0
        anchor = users[-1] if users else len(dialog) - 1
        order = [anchor, *range(anchor + 1, len(dialog)), *range(anchor - 1, start - 1, -1)]
        room = self.conversation_budget
        picked: dict[int, tuple[list[int], str]] = {}
        for i in order if dialog else ():
            turn: Turn = dialog[i]
            cost = len(self.newline) if picked else 0
            limit = room - cost if i == anchor else min(room - cost, turn_cap)
            fitted = self._fit(turn.role, turn.text, limit, keep_end=i == anchor)
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
            cost = len(self.newline) if lines else 0
            fitted = self._fit("system", system, min(room - cost, system_cap), False)
            if fitted is None:
                truncated = True
            else:
                lines.insert(0, (fitted[0], fitted[1]))
                truncated |= fitted[2]
        return lines, truncated

    def build(self, conversation: Conversation) -> Prompt:
        """The full prompt for ``conversation``: fixed head, window, tail."""
        lines, truncated = self._window(conversation)
        ids = list(self.before)
        for n, (line_ids, _) in enumerate(lines):
            if n:
                ids.extend(self.newline)
            ids.extend(line_ids)
        ids.extend(self.after)
        text = self.before_text + "\n".join(line for _, line in lines) + self.after_text
        return Prompt(text=text, token_ids=ids, turns=len(lines), truncated=truncated)


def parse_or_other(text: str, choices: Sequence[str]) -> str:
    """:func:`parse_choice`, with ``other`` for an answer that names no route."""
    return parse_choice(text, choices) or OTHER_INTENT
