"""``llm-router label``: grade collected answers and write training rows.

``--reference MODE`` compares each answer with the prompt's reference
(models/labeling/reference.py). ``--judge MODEL`` asks that model of the routing config,
through its upstream, to rate each answer 1-10 with a rubric (models/labeling/judge.py);
a verdict with no readable rating is asked for once more, then recorded as missing.
Every judged answer is appended to ``OUT.verdicts.jsonl`` as soon as its verdict comes,
so a rerun judges only answers without one (a judge call that failed is tried again; a
verdict recorded as missing is not: delete its line to ask again). Training rows are
appended to ``OUT`` (models/labeling/grouping.py); a rerun skips prompts already there.
Only prompts that every model answered are judged: the others cannot become rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.loop.calls import Caller, RetryPolicy, answer_text
from app.loop.pool import run_pool
from app.loop.progress import Progress
from app.settings import ProxySettings
from models.core.pricing import usage_cost
from models.core.routing_config import RoutingConfig
from models.labeling import reference
from models.labeling.grouping import (
    NO_SCORE,
    Dropped,
    missing_reason,
    priced_models,
    training_row,
)
from models.labeling.grouping import answer_text as graded_text
from models.labeling.jsonl import AppendLog, read_rows
from models.labeling.judge import DEFAULT_RUBRIC, judge_prompt, parse_verdict, rating_score
from models.labeling.prompts import answer_key, latest_answers
from models.labeling.spend import ModelSpend, Spend

VERDICT_TEXT = 4000  # characters of a judge's answer kept in the verdicts file
Scores = dict[tuple[str, str], float | None]


@dataclass(slots=True)
class LabelJob:
    answers: Path
    out: Path
    reference: str | None = None  # exact | number | contains
    judge: str | None = None  # a model of the routing config
    rubric: str = DEFAULT_RUBRIC
    models: list[str] | None = None  # default: every model in the answers file, sorted
    concurrency: int = 8
    temperature: float | None = 0.0
    max_tokens: int | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    progress: bool = True


@dataclass(slots=True)
class JudgeStats:
    spend: Spend
    judged: int = 0  # answers given a verdict this run
    before: int = 0  # answers with a verdict from an earlier run
    missing: int = 0  # verdicts recorded as missing this run (no rating twice)
    failed: int = 0  # answers whose judge call failed (tried again next run)
    stopped: str | None = None


@dataclass(slots=True)
class LabelReport:
    prompts: int
    models: list[str]
    before: int  # training rows already in OUT
    written: int
    dropped: Dropped
    costs: bool
    unpriced: list[str]
    judge: JudgeStats | None = None

    def lines(self, out: Path) -> list[str]:
        lines = [
            f"label: {self.prompts} prompts x {len(self.models)} models "
            f"({', '.join(self.models)}): {self.written} training rows written, "
            f"{self.before} there before, {self.dropped.total} left out"
        ]
        for reason, count in sorted(self.dropped.counts.items()):
            lines.append(f"  left out, {reason}: {count}")
        if not self.costs:
            lines.append(f"no costs written: no prices for {self.unpriced} (routing config)")
        if (j := self.judge) is not None:
            lines.append(
                f"judge: {j.judged} answers judged now, {j.before} before; {j.missing} "
                f"verdicts missing (no rating, asked twice); {j.failed} judge calls failed"
            )
            if j.stopped:
                lines.append(f"judge stopped: {j.stopped}")
            lines += ["judge spend:", *j.spend.table()]
        lines.append(f"training rows in {out}")
        return lines


def verdicts_path(out: Path) -> Path:
    return out.with_name(out.name + ".verdicts.jsonl")


async def run_label(
    job: LabelJob, config: RoutingConfig | None, proxy: ProxySettings
) -> LabelReport:
    rows, _ = read_rows(job.answers)
    by_prompt = latest_answers(rows)
    if not by_prompt:
        raise ValueError(f"{job.answers}: no answer rows (id, model) in it")
    present = sorted({m for answers in by_prompt.values() for m in answers})
    if job.models and (absent := [m for m in job.models if m not in present]):
        raise ValueError(f"--models: {absent} have no answers in {job.answers} (it has {present})")
    models = job.models or present
    done = {r.get("id") for r in read_rows(job.out)[0]}
    pending = {pid: answers for pid, answers in by_prompt.items() if pid not in done}
    with_costs, unpriced = priced_models(by_prompt, models, config)
    stats = None
    if job.judge is not None:
        stats, scores = await judge_answers(job, config, proxy, pending, models)
    else:
        mode = job.reference or "exact"
        scores = {
            (pid, m): reference.score(mode, graded_text(a), a.get("reference"))
            for pid, answers in pending.items()
            for m, a in answers.items()
        }
    dropped, written = Dropped(), 0
    with AppendLog(job.out) as log:
        # by prompt id: the same answers give the same training file (and so the same
        # cross-validation folds in train), however collect's concurrent calls finished
        for pid, answers in sorted(pending.items()):
            graded = {m: scores.get((pid, m)) for m in models}
            row, reason = training_row(answers, models, graded, config, with_costs)
            if row is None:
                dropped.add(reason or NO_SCORE)
                continue
            log.write(row)
            written += 1
    return LabelReport(
        prompts=len(by_prompt),
        models=models,
        before=len(by_prompt) - len(pending),
        written=written,
        dropped=dropped,
        costs=with_costs,
        unpriced=unpriced,
        judge=stats,
    )


async def judge_answers(
    job: LabelJob,
    config: RoutingConfig | None,
    proxy: ProxySettings,
    pending: dict[str, dict[str, dict[str, Any]]],
    models: list[str],
) -> tuple[JudgeStats, Scores]:
    """Scores from the judge's verdicts: those recorded before, and new ones for every
    answer of a fully answered prompt that has none."""
    judge = str(job.judge)
    if config is None or judge not in config.model_names:
        known = config.model_names if config is not None else []
        raise ValueError(f"--judge {judge}: not a model of the routing config (--config) {known}")
    path = verdicts_path(job.out)
    scores: Scores = {}
    for row in read_rows(path)[0]:
        if (key := answer_key(row)) is not None:
            scores[key] = row.get("score")
    todo = [
        (pid, m, answers[m])
        for pid, answers in pending.items()
        if missing_reason(answers, models) is None
        for m in models
        if (pid, m) not in scores
    ]
    stats = JudgeStats(Spend({judge: ModelSpend()}))
    stats.before = sum(1 for pid in pending for m in models if (pid, m) in scores)
    caller = Caller(config, proxy, job.policy)
    progress = Progress(len(todo), "judge", job.progress)
    try:
        if problems := caller.unusable([judge]):
            raise ValueError("cannot call the judge: " + "; ".join(problems))
        with AppendLog(path) as log:

            async def work(item: tuple[str, str, dict[str, Any]]) -> None:
                row = await _judge_one(caller, config, job, stats.spend, item)
                progress.update(stats.spend)
                if row is None:
                    stats.failed += 1
                    return
                log.write(row)
                scores[(row["id"], row["model"])] = row["score"]
                stats.judged += 1
                stats.missing += row["score"] is None

            pool = await run_pool(todo, work, job.concurrency, lambda: None, progress.note)
            stats.stopped = pool.stopped
    finally:
        progress.close()
        await caller.aclose()
    return stats, scores


async def _judge_one(
    caller: Caller,
    config: RoutingConfig,
    job: LabelJob,
    spend: Spend,
    item: tuple[str, str, dict[str, Any]],
) -> dict[str, Any] | None:
    """The verdict row for one answer, or None when the judge could not be called."""
    pid, model, answer = item
    judge = str(job.judge)
    text = judge_prompt(
        job.rubric, answer["messages"], graded_text(answer), answer.get("reference")
    )
    body: dict[str, Any] = {"messages": [{"role": "user", "content": text}], "stream": False}
    if job.temperature is not None:
        body["temperature"] = job.temperature
    if job.max_tokens is not None:
        body["max_tokens"] = job.max_tokens
    verdict, rating, calls, cost = "", None, 0, 0.0
    for _ in range(2):  # a verdict without a readable rating is asked for once more
        result = await caller.call(judge, body)
        calls += 1
        spent = usage_cost(config.model(judge), result.usage) if result.usage else None
        spend.add(judge, result.ok, result.attempts, result.usage, spent)
        cost += spent or 0.0
        if not result.ok:
            return None
        verdict = answer_text(result.body)[0] or ""
        rating = parse_verdict(verdict)
        if rating is not None:
            break
    return {
        "id": pid,
        "model": model,
        "judge": judge,
        "rating": rating,
        "score": rating_score(rating) if rating is not None else None,
        "judge_calls": calls,
        "judge_cost_usd": cost,
        "verdict": verdict[:VERDICT_TEXT],
    }
