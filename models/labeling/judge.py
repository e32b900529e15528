"""The LLM judge's side of ``label --judge``: the rubric it is asked with, and reading a
1-10 rating out of whatever it answers.

The judge sees one user message: the rubric with ``{question}`` (the conversation up to
the answer, earlier turns labelled), ``{answer}`` (the graded answer), ``{reference}``
(the reference answer, empty when the prompt has none) and ``{reference_block}`` (a
"Reference answer" section, or nothing) filled in. ``--judge-prompt FILE`` replaces the
rubric; it must contain ``{question}`` and ``{answer}``; other braces are left as they
are. The rating maps to a score as (rating - 1) / 9: 1 -> 0.0, 10 -> 1.0.
"""

from __future__ import annotations

import re
from typing import Any

from models.labeling.reference import strip_thinking

PLACEHOLDERS = ("question", "answer", "reference", "reference_block")
REQUIRED = ("question", "answer")

DEFAULT_RUBRIC = """\
You are grading one answer an AI assistant gave to a user. Decide how well it serves \
the user.

Judge, in this order:
1. Correctness: facts, reasoning, arithmetic and code must be right. A wrong final \
answer is a low rating however well it is written. When a reference answer is given, \
treat it as correct: an answer that contradicts it is wrong.
2. Following the request: does it do what was asked, in the form asked for?
3. Completeness and clarity: nothing essential missing, nothing padded. Length is not \
a merit in itself.

{reference_block}[Conversation]
{question}

[Answer to grade]
{answer}

Explain your judgement in at most three sentences. Then write the rating on its own \
last line, exactly in this form: Rating: [[N]], where N is a whole number from 1 \
(useless or wrong) to 10 (correct, complete and clear)."""

REFERENCE_BLOCK = "[Reference answer]\n{reference}\n\n"


def check_template(template: str, source: str) -> None:
    """ValueError unless the template has the placeholders a grading needs."""
    missing = [name for name in REQUIRED if "{" + name + "}" not in template]
    if missing:
        names = ", ".join("{" + m + "}" for m in missing)
        raise ValueError(f"{source}: the judge prompt needs {names} (placeholders: "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")")  # fmt: skip


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: text kept, images marked
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append("[image]" if "image" in str(part.get("type")) else "[attachment]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def render_question(messages: list[dict[str, Any]]) -> str:
    """The conversation as the judge reads it: one message alone is its text; several
    are labelled by role."""
    if len(messages) == 1:
        return _content_text(messages[0].get("content"))
    lines = []
    for message in messages:
        role = str(message.get("role", "user")).capitalize()
        lines.append(f"{role}: {_content_text(message.get('content'))}")
    return "\n\n".join(lines)


def judge_prompt(
    template: str,
    messages: list[dict[str, Any]],
    answer: str,
    reference: str | int | float | None,
) -> str:
    """The template with the placeholders filled in (one pass: text that the question
    or answer contains, braces included, is never expanded again)."""
    ref = "" if reference is None else str(reference)
    values = {
        "question": render_question(messages),
        "answer": answer,
        "reference": ref,
        "reference_block": REFERENCE_BLOCK.format(reference=ref) if ref else "",
    }
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in PLACEHOLDERS))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


_NUM = r"(\d{1,2}(?:\.\d+)?)"
# strongest evidence first; the first level that matches decides
LEVELS = (
    re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]"),  # Rating: [[7]]
    re.compile(r"\b(?:rating|score|grade|verdict)\b[^\d\n]{0,20}?" + _NUM + r"(?!\d)", re.I),
    re.compile(_NUM + r"\s*(?:/|out\s+of)\s*10\b", re.I),  # 7/10, 7 out of 10
)
BARE = re.compile(r"^[\s*#>_`\[(]*" + _NUM + r"[\s*_`\]).!]*$")  # "**8**" as the last line


def parse_verdict(text: str) -> float | None:
    """The 1-10 rating in a judge's answer, or None when there is none or it is
    ambiguous (different ratings at the same level of evidence, e.g. two ``[[N]]``).

    Levels: ``[[N]]``; "rating/score/grade/verdict" followed by N; "N/10" or "N out of
    10"; else a last line that is only a number. A reasoning model's ``<think>`` block
    is ignored."""
    text = strip_thinking(text)
    for pattern in LEVELS:
        found = {float(m.group(1)) for m in pattern.finditer(text)}
        if found:
            return _in_range(found)
    lines = [line for line in text.splitlines() if line.strip()]
    match = BARE.match(lines[-1]) if lines else None
    return _in_range({float(match.group(1))}) if match else None


def _in_range(found: set[float]) -> float | None:
    if len(found) > 1:
        return None
    value = found.pop()
    return value if 1.0 <= value <= 10.0 else None


def rating_score(rating: float) -> float:
    """A 1-10 rating as a 0..1 training score."""
    return (rating - 1.0) / 9.0
