"""``llm-router collect``: run every prompt on every named model, one answer row per
(prompt, model), resumable.

Rows are appended to the output as calls finish (models/labeling/jsonl.py: one flushed
line each; a torn last line is repaired). A rerun reads the file first and skips every
pair that already has a usable answer, so an interrupted run loses at most the calls in
flight when it was killed and never pays for an answer it has; a pair whose call failed
is tried again. Pairs run prompt by prompt, so a run stopped early leaves whole prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.loop.calls import Caller, CallResult, RetryPolicy, answer_text
from app.loop.pool import run_pool
from app.loop.progress import Progress
from app.settings import ProxySettings
from models.core.pricing import usage_cost
from models.core.routing_config import RoutingConfig
from models.labeling.jsonl import AppendLog, read_rows
from models.labeling.prompts import Prompt, answered
from models.labeling.spend import ModelSpend, Spend


@dataclass(slots=True)
class CollectJob:
    prompts: list[Prompt]
    models: list[str]
    out: Path
    concurrency: int = 8
    max_usd: float | None = None  # stop starting calls once this run spent this much
    max_tokens: int | None = None
    temperature: float | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    progress: bool = True


@dataclass(slots=True)
class CollectReport:
    pairs: int  # prompts x models
    before: int  # answered by earlier runs (skipped)
    spend: Spend
    stopped: str | None  # why pairs were left unstarted
    not_started: int
    repaired: bool  # a torn last line (an interrupted write) was cut off

    def lines(self, prompts: int, models: int, out: Path) -> list[str]:
        answered_now = self.spend.calls - self.spend.errors
        lines = [
            f"collect: {self.pairs} pairs ({prompts} prompts x {models} models): "
            f"{self.before} answered before, {answered_now} answered now, "
            f"{self.spend.errors} failed, {self.not_started} not started"
        ]
        if self.repaired:
            lines.append(f"{out}: cut off a torn last line left by an interrupted run")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}; the calls in flight were finished")
        lines += self.spend.table()
        left = self.spend.errors + self.not_started
        tail = f"; rerun the same command for the {left} left" if left else ""
        lines.append(f"answers in {out}{tail}")
        return lines


def request_body(prompt: Prompt, job: CollectJob) -> dict[str, Any]:
    """The chat request sent for a prompt (``model`` is added per upstream)."""
    body: dict[str, Any] = {"messages": prompt.messages, "stream": False}
    if job.max_tokens is not None:
        body["max_tokens"] = job.max_tokens
    if job.temperature is not None:
        body["temperature"] = job.temperature
    return body


def answer_row(
    prompt: Prompt, model: str, upstream_model: str, result: CallResult, cost: float | None
) -> dict[str, Any]:
    text, finish = answer_text(result.body) if result.ok else (None, None)
    error = result.error
    if result.ok and text is None:
        error = "the answer has no choices"
    row: dict[str, Any] = {"id": prompt.id, "model": model, "messages": prompt.messages}
    if prompt.reference is not None:
        row["reference"] = prompt.reference
    row.update(prompt.extra)
    row.update(
        status="ok" if error is None else "error",
        answer=text,
        finish_reason=finish,
        usage=result.usage.to_dict() if result.usage is not None else None,
        cost_usd=cost,
        latency_s=round(result.latency_s, 6),
        attempts=result.attempts,
        http_status=result.http_status,
        error=error,
        upstream_model=upstream_model,
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    return row


async def run_collect(
    job: CollectJob, config: RoutingConfig, proxy: ProxySettings
) -> CollectReport:
    """Answer every (prompt, model) pair not answered in ``job.out`` yet."""
    unknown = [m for m in job.models if m not in config.model_names]
    if unknown:
        raise ValueError(f"--models: {unknown} not in the routing config {config.model_names}")
    if job.max_usd is not None and (
        unpriced := [m for m in job.models if not config.model(m).priced]
    ):
        raise ValueError(
            f"--max-usd needs prices (input_price_per_1m, output_price_per_1m) for {unpriced}"
        )
    rows, repaired = read_rows(job.out)
    done = answered(rows)
    todo = [(p, m) for p in job.prompts for m in job.models if (p.id, m) not in done]
    pairs = len(job.prompts) * len(job.models)
    caller = Caller(config, proxy, job.policy)
    spend = Spend({m: ModelSpend() for m in job.models})
    progress = Progress(len(todo), "collect", job.progress)
    try:
        if problems := caller.unusable(job.models):
            raise ValueError("cannot call " + "; ".join(problems))
        with AppendLog(job.out) as log:

            async def work(pair: tuple[Prompt, str]) -> None:
                prompt, model = pair
                result = await caller.call(model, request_body(prompt, job))
                cfg = config.model(model)
                cost = usage_cost(cfg, result.usage) if result.usage is not None else None
                row = answer_row(prompt, model, caller.upstreams[model].model_id, result, cost)
                log.write(row)
                spend.add(model, row["status"] == "ok", result.attempts, result.usage, cost)
                progress.update(spend)

            def over_budget() -> str | None:
                if job.max_usd is not None and spend.usd >= job.max_usd:
                    return f"--max-usd {job.max_usd:g} reached (${spend.usd:.6f} spent)"
                return None

            pool = await run_pool(todo, work, job.concurrency, over_budget, progress.note)
    finally:
        progress.close()
        await caller.aclose()
    return CollectReport(
        pairs=pairs,
        before=pairs - len(todo),
        spend=spend,
        stopped=pool.stopped,
        not_started=len(todo) - pool.started,
        repaired=repaired,
    )
