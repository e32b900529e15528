"""Toy candidate models behind one loopback OpenAI-compatible server, for the learning loop
(capture -> collect -> label -> train -> calibrate -> reload) in tests, the tutorial and
its benchmark: their answers are right or wrong in a known, deterministic way.

Two kinds of questions, with a truth this module can compute:

* arithmetic ("What is 17 plus 25?", "Compute 17 + 25.", ...): the answer is the sum;
* capitals ("What is the capital of Peru?", "Name the capital city of Peru.", ...).

Models (the request's ``model``):

* ``toy-small``: right on every arithmetic question, wrong on every capital;
* ``toy-large``: right on both kinds, except 5% of the sums and 0, 10, 20 or 30% of the
  capitals depending on the country (chosen by a hash of the question, so the same
  question is always answered the same way);
* ``toy-judge``: an LLM judge. It finds the question and the answer in the judge prompt
  (text after ``QUESTION:``/``ANSWER:`` style markers, or the ``[Question]``/``[Answer]``
  blocks of other rubrics), checks the answer against the truth and replies
  ``Rating: [[10]]`` or ``Rating: [[1]]``; ``toy-garbage-judge`` replies with no rating.

Every answer reports ``usage`` (prompt tokens: words in the messages; completion tokens:
words in the answer), so collect and the proxy can count tokens and dollars. Runs in a
thread (``ToyServer``) or as ``python -m tests.toy_models serve --port N``; ``questions``
prints toy prompt rows and ``ask`` sends them through a router and sums up the answers.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Poland": "Warsaw", "Austria": "Vienna", "Hungary": "Budapest",
    "Greece": "Athens", "Sweden": "Stockholm", "Norway": "Oslo", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Ireland": "Dublin", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Switzerland": "Bern", "Czechia": "Prague",
    "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
    "Ukraine": "Kyiv", "Turkey": "Ankara", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat", "Ethiopia": "Addis Ababa",
    "Peru": "Lima", "Chile": "Santiago", "Argentina": "Buenos Aires", "Brazil": "Brasilia",
    "Colombia": "Bogota", "Mexico": "Mexico City", "Canada": "Ottawa", "Cuba": "Havana",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Indonesia": "Jakarta", "Australia": "Canberra",
    "New Zealand": "Wellington", "Iran": "Tehran", "Iraq": "Baghdad", "Nepal": "Kathmandu",
    "Mongolia": "Ulaanbaatar",
}  # fmt: skip
# toy-large is wrong on 0/10/20/30% of the questions about a capital, by country: so the
# countries differ in how much the large model is worth, and a router can rank them
LARGE_MISSES = {c: (0, 10, 20, 30)[i % 4] for i, c in enumerate(sorted(CAPITALS))}
SUM = re.compile(r"(-?\d+)\s*(?:\+|plus|and)\s*(-?\d+)", re.I)
COUNTRY = re.compile("|".join(sorted(map(re.escape, CAPITALS), key=len, reverse=True)))
ARITHMETIC_FORMS = (
    "What is {a} plus {b}?",
    "Compute {a} + {b}.",
    "Add {a} and {b}.",
    "What do you get when you add {a} and {b}?",
    "Quick sum: {a} + {b} = ?",
    "If I have {a} apples and get {b} more, how many apples do I have? ({a} + {b})",
)
CAPITAL_FORMS = (
    "What is the capital of {c}?",
    "Name the capital city of {c}.",
    "Which city is the capital of {c}?",
    "Tell me the capital of {c}, please.",
    "I'm travelling to {c}: what is its capital city?",
    "Quiz question: the capital of {c} is which city?",
)


def truth(question: str) -> str | None:
    """The right answer to a toy question, or None when it is neither kind."""
    if (country := COUNTRY.search(question)) is not None:
        return CAPITALS[country.group(0)]
    if (numbers := SUM.search(question)) is not None:
        return str(int(numbers.group(1)) + int(numbers.group(2)))
    return None


def kind(question: str) -> str:
    return "capital" if COUNTRY.search(question) else "arithmetic"


def questions(n: int, seed: int, forms: slice = slice(None)) -> list[dict[str, Any]]:
    """``n`` questions, half of each kind, with their reference answers. ``forms`` picks
    which phrasings are used (train on some, test on the others)."""
    rng = random.Random(seed)
    countries = sorted(CAPITALS)
    out = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(2, 999), rng.randint(2, 999)
            text = rng.choice(ARITHMETIC_FORMS[forms]).format(a=a, b=b)
        else:
            text = rng.choice(CAPITAL_FORMS[forms]).format(c=rng.choice(countries))
        out.append({"id": f"q{seed}-{i}", "text": text, "reference": truth(text)})
    return out


def _wrong(right: str, question: str) -> str:
    if right.lstrip("-").isdigit():
        return str(int(right) + 1 + int(hashlib.sha256(question.encode()).hexdigest(), 16) % 9)
    others = sorted(set(CAPITALS.values()) - {right})
    return others[int(hashlib.sha256(question.encode()).hexdigest(), 16) % len(others)]


def answer(model: str, question: str) -> str:
    right = truth(question)
    if right is None:
        return "I don't know."
    digest = int(hashlib.sha256(question.encode()).hexdigest(), 16)
    country = COUNTRY.search(question)
    if model == "toy-small":  # every sum, no capital
        ok = country is None
    else:  # toy-large: wrong on 5% of sums, 0-30% of capitals by country (the same ones)
        ok = digest % 100 >= (5 if country is None else LARGE_MISSES[country.group(0)])
    return f"The answer is {right if ok else _wrong(right, question)}."


def _form_pattern(form: str) -> str:
    out = re.escape(form)
    out = out.replace(re.escape("{a}"), r"-?\d+").replace(re.escape("{b}"), r"-?\d+")
    return out.replace(re.escape("{c}"), COUNTRY.pattern)


ANY_QUESTION = re.compile("|".join(_form_pattern(f) for f in ARITHMETIC_FORMS + CAPITAL_FORMS))


def judge(prompt: str) -> str:
    """Find the toy question and the answer in a judge prompt (whatever its rubric) and
    grade the answer against the truth."""
    found = ANY_QUESTION.search(prompt)
    right = truth(found.group(0)) if found else None
    said = re.findall(r"The answer is ([^.\n]+)\.", prompt[found.end() :] if found else "")
    if right is None or not said:
        return "I cannot grade this. Rating: [[1]]"
    return "Rating: [[10]]" if said[-1].strip() == right else "Rating: [[1]]"


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _text_of(messages: list[Any]) -> str:
    parts = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    return "\n".join(parts)


@dataclass
class ToyState:
    calls: list[dict[str, Any]] = field(default_factory=list)  # (model, question) per call
    fail_next: dict[str, list[int]] = field(default_factory=dict)  # model -> statuses


def create_app(state: ToyState) -> Starlette:
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model = str(body.get("model"))
        messages = body.get("messages") or []
        last_user = next((_text_of([m]) for m in reversed(messages) if m.get("role") == "user"), "")
        state.calls.append({"model": model, "question": last_user})
        pending = state.fail_next.get(model)
        if pending:
            status = pending.pop(0)
            return Response(
                orjson.dumps({"error": {"message": "try later", "type": "server_error"}}),
                status,
                media_type="application/json",
            )
        if model == "toy-judge":
            text = judge(_text_of(messages))
        elif model == "toy-garbage-judge":
            text = "This answer has some merit and some problems."
        elif model in ("toy-small", "toy-large"):
            text = answer(model, last_user)
        else:
            return Response(
                orjson.dumps({"error": {"message": f"no model {model}", "type": "invalid"}}),
                404,
                media_type="application/json",
            )
        usage = {
            "prompt_tokens": _words(_text_of(messages)),
            "completion_tokens": _words(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        out = {
            "id": f"chatcmpl-toy-{len(state.calls)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return Response(orjson.dumps(out), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class ToyServer:
    """The toy models on a loopback port, served from a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.state = ToyState()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(create_app(self.state), log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ToyServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("toy server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


FORMS = {"train": slice(0, 3), "test": slice(3, 6), "all": slice(None)}


def ask(base_url: str, items: list[dict[str, Any]], model: str, concurrency: int) -> dict[str, Any]:
    """Send every question through a router (or any OpenAI-compatible server) and sum up:
    statuses, the share each model answered, quality against the truth, cost reported in
    ``x-router-cost-usd``, and what the same tokens cost on ``toy-large``'s prices."""
    import asyncio

    import httpx

    async def run() -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

            async def one(item: dict[str, Any]) -> dict[str, Any]:
                body = {"model": model, "messages": [{"role": "user", "content": item["text"]}]}
                async with limit:  # the question's id names the request (and its capture row)
                    resp = await client.post(
                        "/chat/completions", json=body, headers={"x-request-id": item["id"]}
                    )
                out: dict[str, Any] = {"status": resp.status_code}
                if resp.status_code == 200:
                    text = resp.json()["choices"][0]["message"]["content"]
                    out["model"] = resp.headers.get("x-router-model", model)
                    out["right"] = text == f"The answer is {item['reference']}."
                    out["cost"] = float(resp.headers.get("x-router-cost-usd", "nan"))
                    tokens = dict(
                        kv.split("=")
                        for kv in resp.headers.get("x-router-tokens", "").split(",")
                        if "=" in kv
                    )
                    out["large_cost"] = (
                        int(tokens.get("prompt", 0)) * LARGE_PRICES[0]
                        + int(tokens.get("completion", 0)) * LARGE_PRICES[1]
                    ) / 1e6
                return out

            return await asyncio.gather(*(one(item) for item in items))

    results = asyncio.run(run())
    ok = [r for r in results if r["status"] == 200]
    models = sorted({r["model"] for r in ok})
    cost = sum(r["cost"] for r in ok)
    large = sum(r["large_cost"] for r in ok)
    return {
        "requests": len(results),
        "failed": len(results) - len(ok),
        "quality": round(sum(r["right"] for r in ok) / max(1, len(ok)), 4),
        "share": {m: round(sum(r["model"] == m for r in ok) / max(1, len(ok)), 4) for m in models},
        "cost_usd": round(cost, 9),
        "cost_at_large_prices_usd": round(large, 9),
        "cost_ratio_to_large": round(cost / large, 4) if large else None,
    }


LARGE_PRICES = (2.0, 8.0)  # toy-large's USD per 1M tokens in the tutorial's routing config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.toy_models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the toy models on loopback")
    p.add_argument("--port", type=int, default=8100)
    for name, helptext in (
        ("questions", "print toy questions as prompt rows"),
        ("ask", "send toy questions through a router and sum up"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--n", type=int, default=100)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--forms",
            choices=sorted(FORMS),
            default="all",
            help="phrasings: train (the first three), test (the other three)",
        )
        p.add_argument("--references", action="store_true", help="questions: add references")
        p.add_argument("--url", default="http://127.0.0.1:8000/v1", help="ask: router URL")
        p.add_argument("--model", default="router", help="ask: the request's model")
        p.add_argument("--concurrency", type=int, default=8)
        p.add_argument("--report", help="ask: also write the summary (JSON) here")
    args = parser.parse_args(argv)
    if args.command == "serve":
        with ToyServer(args.port) as server:
            print(f"toy models on {server.base_url}", flush=True)
            threading.Event().wait()
        return
    items = questions(args.n, args.seed, FORMS[args.forms])
    if args.command == "questions":
        for item in items:
            row = {"id": item["id"], "messages": [{"role": "user", "content": item["text"]}]}
            if args.references:
                row["reference"] = item["reference"]
            print(orjson.dumps(row).decode())
        return
    summary = ask(args.url, items, args.model, args.concurrency)
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    if args.report:
        Path(args.report).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
