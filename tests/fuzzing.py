"""Schemathesis fuzzing of the app's own OpenAPI schema, in-process over ASGI.

Every operation gets valid (positive) and schema-violating (negative) requests from a fixed
seed; each response must be non-5xx, and every error must be OpenAI's error shape. Failures
are collected (not raised at the first one) so a report lists every distinct defect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from tests.helpers import data_url, jpeg_bytes, png_bytes

ERROR_KEYS = {"message", "type", "param", "code"}


@dataclass
class FuzzReport:
    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def summary(self) -> str:
        head = f"{self.cases} cases, statuses {dict(sorted(self.by_status.items()))}"
        return "\n".join([head, *self.failures[:10]])


def image_urls() -> list[str]:
    """Image URLs a fuzzed request may carry: valid data URLs and broken ones (no network)."""
    return [
        data_url(png_bytes(4, 4)),
        data_url(jpeg_bytes(16, 16), "image/jpeg"),
        "data:image/png;base64,!!not-base64!!",
        data_url(b"plain text, not an image", "image/png"),
        "data:image/png;base64,",
    ]


def _steer(body: Any, draw: Any, models: list[str]) -> None:
    """Make random valid bodies reach the interesting paths: real images, real model names."""
    if not isinstance(body, dict):
        return
    if "model" in body and draw(st.booleans()):
        body["model"] = draw(st.sampled_from([None, "router", "auto", *models]))
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    # most real requests end with a user turn that has text
    if isinstance(last, dict) and draw(st.integers(0, 3)) > 0:
        last["role"] = "user"
        if not last.get("content"):
            last["content"] = draw(st.text(min_size=1, max_size=40))
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and isinstance(part.get("image_url"), dict):
                part["image_url"]["url"] = draw(st.sampled_from(image_urls()))


def _bad_success(case: Any, response: Any, ctype: str, models: list[str]) -> str | None:
    """A 200 from the chat endpoint must carry a configured model's name."""
    if not case.path.endswith("/chat/completions"):
        return None
    if ctype.startswith("text/event-stream"):
        ok = response.content.endswith(b"data: [DONE]\n\n")
        return None if ok else "stream does not end with [DONE]"
    body = orjson.loads(response.content)
    content = body["choices"][0]["message"]["content"]
    if body.get("object") != "chat.completion" or content not in models:
        return f"unexpected completion {response.content[:200]!r}"
    return None


def _problem(case: Any, response: Any, models: list[str]) -> str | None:
    """What is wrong with this response, if anything."""
    status = response.status_code
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if "x-request-id" not in {k.lower() for k in response.headers}:
        return "no x-request-id header"
    if status >= 500:
        return f"status {status}"
    if status < 400:
        return _bad_success(case, response, ctype, models)
    if not ctype.startswith("application/json"):
        return f"status {status} error with content-type {ctype!r}"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"status {status} error body is not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if list(body) != ["error"] or not isinstance(error, dict) or set(error) != ERROR_KEYS:
        return f"status {status} error not in OpenAI shape: {response.content[:200]!r}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"status {status} error message empty"
    return None


def _describe(case: Any, response: Any, problem: str) -> str:
    body = case.body
    text = repr(body) if isinstance(body, bytes) else orjson.dumps(body, default=repr).decode()
    return (
        f"{case.method} {case.path} [{problem}] body={text[:300]} "
        f"-> {response.status_code} {response.content[:200]!r}"
    )


def wait_ready(schema: Any, timeout: float = 120.0) -> None:
    ready = schema["/ready"]["GET"]
    deadline = time.monotonic() + timeout
    while ready.Case().call().status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("app did not become ready")
        time.sleep(0.05)


def fuzz_app(app: Any, *, max_examples: int, models: list[str]) -> FuzzReport:
    """Fuzz every operation of ``app`` in both generation modes with a fixed seed."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        wait_ready(schema)
        return _fuzz(schema, max_examples, models)
    finally:  # the app's lifespan (strategy, encoder) ends with the run, not the process
        asgi.shutdown_lifespans()


def _fuzz(schema: Any, max_examples: int, models: list[str]) -> FuzzReport:
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        _fuzz_operation(operation, GenerationMode.POSITIVE, max_examples, models, report)
        if operation.body:  # schema-violating inputs need something to violate
            _fuzz_operation(operation, GenerationMode.NEGATIVE, max_examples, models, report)
    return report


def _fuzz_operation(
    operation: Any, mode: GenerationMode, max_examples: int, models: list[str], report: FuzzReport
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=max_examples,
        derandomize=True,  # the same cases on every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE:
            _steer(case.body, data.draw, models)
        response = case.call()
        report.cases += 1
        report.by_status[response.status_code] = report.by_status.get(response.status_code, 0) + 1
        problem = _problem(case, response, models)
        if problem is not None and problem not in report.seen:
            report.seen.add(problem)
            report.failures.append(_describe(case, response, problem))

    run()
