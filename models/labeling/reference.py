"""Scoring an answer against the prompt's reference answer (``label --reference``).

Normalisation (both sides alike): a reasoning model's ``<think>…</think>`` block is
dropped, Unicode is NFKC-folded (full-width letters, ligatures), case is folded, every
punctuation character (Unicode category P: ``. , ! ? ' " - ( ) * _`` …) is deleted, and
runs of whitespace become one space. Symbols such as ``$ % + =`` are kept.

* ``exact``: the normalised answer equals the normalised reference.
* ``contains``: the normalised reference appears in the normalised answer as whole
  words (``4`` is not found in ``42``).
* ``number``: the last number in the answer equals the reference's number. Numbers may
  carry a sign, thousands separators (``1,234``: commas between groups of three digits)
  and decimals; whatever surrounds them (``$``, ``%``, units, words) is ignored.
  Equal means within 1e-6 relative (``3.0`` equals ``3``).

Each scorer gives 1.0 or 0.0, or None when it cannot score (no reference, or a reference
with no number for ``number``); such a prompt is left out of the training rows.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
# a sign only where no digit or letter precedes it ("3-5" is 3 and 5, not 3 and -5)
NUMBER = re.compile(r"(?<![\w.])([-+\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)|(\d+)")
MODES = ("exact", "number", "contains")


def strip_thinking(text: str) -> str:
    return THINK.sub(" ", text)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", strip_thinking(text)).casefold()
    kept = "".join(
        " " if ch.isspace() else ch for ch in text if not unicodedata.category(ch).startswith("P")
    )
    return " ".join(kept.split())


def numbers(text: str) -> list[float]:
    """The numbers in ``text``, in order."""
    out = []
    for match in NUMBER.finditer(unicodedata.normalize("NFKC", strip_thinking(text))):
        if match.group(4) is not None:  # digits glued to a word or a decimal tail
            continue
        sign, whole, frac = match.group(1), match.group(2).replace(",", ""), match.group(3) or ""
        value = float(whole + frac)
        out.append(-value if sign in ("-", "\u2212") else value)
    return out


def _text(reference: str | int | float) -> str:
    if isinstance(reference, float) and reference.is_integer():
        return str(int(reference))
    return str(reference)


def exact(answer: str, reference: str | int | float) -> float | None:
    want = normalise(_text(reference))
    if not want:
        return None
    return float(normalise(answer) == want)


def contains(answer: str, reference: str | int | float) -> float | None:
    want = normalise(_text(reference))
    if not want:
        return None
    return float(f" {want} " in f" {normalise(answer)} ")


def number(answer: str, reference: str | int | float) -> float | None:
    if isinstance(reference, int | float):
        want = float(reference)
    else:
        found = numbers(reference)
        if not found:
            return None
        want = found[-1]
    got = numbers(answer)
    if not got:
        return 0.0
    return float(math.isclose(got[-1], want, rel_tol=1e-6, abs_tol=1e-9))


SCORERS: dict[str, Callable[[str, str | int | float], float | None]] = {
    "exact": exact,
    "number": number,
    "contains": contains,
}


def score(mode: str, answer: str, reference: str | int | float | None) -> float | None:
    """1.0 / 0.0 for ``answer`` against ``reference`` under ``mode``; None: cannot say."""
    if reference is None:
        return None
    return SCORERS[mode](answer, reference)
