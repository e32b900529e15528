"""Prompt rows (what ``collect`` runs) and answer rows (what it writes, ``label`` reads).

A prompt row is a JSON object with ``messages`` (OpenAI chat messages) or ``text`` (one
user message), an optional ``id`` and an optional ``reference`` (the expected answer,
for ``label --reference``). Rows the service's traffic capture writes are prompt rows
too: their ``request_id`` is the id, and their stored images are read back from the
capture directory as data URLs. A row without an id gets one from its messages
(``p-`` + 16 hex digits of their SHA-256), so the same prompt gets the same id in every
run and a rerun knows it. ``task`` / ``source`` are carried through to the training rows
(``train`` uses them for its route-by-task baseline and prior).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.labeling.capture_images import inline_images
from models.labeling.jsonl import read_rows

PASSED_KEYS = ("task", "source")  # carried from the prompt row to answers and training rows


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt to run on every model."""

    id: str
    messages: list[dict[str, Any]]
    reference: str | int | float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # PASSED_KEYS present in the row


def prompt_id(messages: list[dict[str, Any]]) -> str:
    """A stable id for a prompt without one: its messages' digest."""
    digest = hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "p-" + digest[:16]


def prompt_of(row: dict[str, Any], where: str) -> Prompt:
    """A prompt from one input row; ValueError naming ``where`` when it is not one."""
    messages = row.get("messages")
    if messages is None and isinstance(row.get("text"), str):
        messages = [{"role": "user", "content": row["text"]}]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected 'messages' (a non-empty list) or 'text'")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"{where}: messages[{i}] is not an object with a 'role'")
    raw_id = row.get("id", row.get("request_id"))
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
        if raw_id is not None:
            raise ValueError(f"{where}: 'id' must be a non-empty string or an integer")
        raw_id = prompt_id(messages)
    reference = row.get("reference")
    if reference is not None and (
        isinstance(reference, bool) or not isinstance(reference, str | int | float)
    ):
        raise ValueError(f"{where}: 'reference' must be a string or a number")
    extra = {k: row[k] for k in PASSED_KEYS if k in row}
    return Prompt(str(raw_id), messages, reference, extra)


def read_prompts(paths: Iterable[Path]) -> tuple[list[Prompt], int]:
    """Every prompt of the files, in order, and how many repeated rows were left out (the
    same id with the same messages). One id with different messages is a ValueError."""
    prompts: list[Prompt] = []
    seen: dict[str, tuple[Prompt, str]] = {}
    repeated = 0
    for path in paths:
        rows, _ = read_rows(path)
        for n, row in enumerate(rows, 1):
            where = f"{path} row {n}"
            if "request_id" in row and isinstance(row.get("messages"), list):
                # a capture row: its images are files beside it (app.capture)
                row = {**row, "messages": inline_images(row["messages"], path.parent)}
            prompt = prompt_of(row, where)
            if prompt.id in seen:
                first, first_where = seen[prompt.id]
                if first.messages != prompt.messages:
                    raise ValueError(
                        f"{where}: id {prompt.id!r} was already used by {first_where} "
                        "with different messages"
                    )
                repeated += 1
                continue
            seen[prompt.id] = (prompt, where)
            prompts.append(prompt)
    return prompts, repeated


# -- answer rows ---------------------------------------------------------------------


def answer_key(row: dict[str, Any]) -> tuple[str, str] | None:
    """(prompt id, model) of an answer row, or None when it is not one."""
    pid, model = row.get("id"), row.get("model")
    if isinstance(pid, str) and isinstance(model, str):
        return pid, model
    return None


def answered(rows: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(prompt id, model) pairs with a usable answer: a rerun skips them."""
    return {key for row in rows if row.get("status") == "ok" and (key := answer_key(row))}


def latest_answers(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Answer rows by prompt id, then model: the last usable answer of each pair, else its
    last failed one (a rerun appends a new row for a pair that failed before). Prompts and
    models keep the order they first appear in."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        key = answer_key(row)
        if key is None:
            continue
        pid, model = key
        models = out.setdefault(pid, {})
        old = models.get(model)
        if old is None or row.get("status") == "ok" or old.get("status") != "ok":
            models[model] = row
    return out
