"""``collect`` and ``label``: the arguments and the commands (the work is in app/loop and
models/labeling). Both print a summary on stdout and the progress bar on stderr; both
exit 130 when Ctrl-C stopped them before the end (what was finished is kept)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from app.cli.common import load_settings
from app.loop.calls import RetryPolicy
from app.loop.pool import INTERRUPTED
from app.settings import Settings
from models.core.routing_config import RoutingConfig, load_routing_config
from models.labeling.judge import DEFAULT_RUBRIC, check_template
from models.labeling.prompts import read_prompts
from models.labeling.reference import MODES


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one model")
    return list(dict.fromkeys(names))


def _calls_args(p: argparse.ArgumentParser, temperature: float | None) -> None:
    """Options of the model calls both commands make."""
    p.add_argument("--concurrency", type=_positive_int, default=8, help="calls at once (8)")
    p.add_argument(
        "--retries",
        type=int,
        default=4,
        help="extra tries of a call that failed with 429, 5xx or a connect error (4)",
    )
    p.add_argument(
        "--backoff-s",
        type=_non_negative_float,
        default=1.0,
        help="first wait before a retry, doubled each time, with jitter; an upstream's "
        "retry-after is waited at least (1.0)",
    )
    p.add_argument("--max-tokens", type=_positive_int, help="max_tokens of each request")
    p.add_argument(
        "--temperature",
        type=_non_negative_float,
        default=temperature,
        help="temperature of each request"
        + (" (0)" if temperature is not None else " (default: the upstream's)"),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_collect_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "collect",
        help="run prompts on candidate models through their upstreams; resumable",
    )
    p.add_argument(
        "prompts",
        nargs="+",
        help="JSONL: messages (or text), optional id and reference; capture files too",
    )
    p.add_argument("--config", help="routing config with the models' upstreams and prices")
    p.add_argument("--models", type=_names, required=True, help="models to run, e.g. a,b")
    p.add_argument("--out", required=True, help="answers JSONL (appended to; rerun resumes)")
    p.add_argument(
        "--max-usd",
        type=_positive_float,
        help="stop starting calls once this run has spent this many dollars (the calls "
        "in flight finish)",
    )
    _calls_args(p, temperature=None)
    p.set_defaults(func=cmd_collect)
    return p


def add_label_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "label",
        help="grade collected answers (reference or LLM judge) into training rows",
    )
    p.add_argument("answers", help="answers JSONL written by collect")
    p.add_argument("--out", required=True, help="training JSONL for llm-router train")
    p.add_argument(
        "--config",
        help="routing config: prices for costs (default: the costs collect recorded) and "
        "the judge's upstream; ROUTER_CONFIG when set",
    )
    scorer = p.add_mutually_exclusive_group(required=True)
    scorer.add_argument(
        "--reference", choices=MODES, help="compare each answer with the row's reference"
    )
    scorer.add_argument("--judge", metavar="MODEL", help="grade with this model of --config")
    p.add_argument(
        "--judge-prompt",
        metavar="FILE",
        help="rubric replacing the default; placeholders {question} {answer} {reference} "
        "{reference_block}",
    )
    p.add_argument(
        "--models",
        type=_names,
        help="models to keep, in this order (default: every model in ANSWERS, sorted)",
    )
    _calls_args(p, temperature=0.0)
    p.set_defaults(func=cmd_label)
    return p


def _policy(args: argparse.Namespace) -> RetryPolicy:
    if args.retries < 0:
        raise ValueError("--retries: must be 0 or more")
    return RetryPolicy(retries=args.retries, backoff_s=args.backoff_s)


def _read(path: str, what: str) -> Path:
    target = Path(path)
    if not target.is_file():
        raise ValueError(f"{what} {path}: no such file")
    return target


def _out(path: str) -> Path:
    target = Path(path)
    if target.is_dir() or not target.parent.is_dir():
        raise ValueError(f"--out {path}: not a file in an existing directory")
    return target


def cmd_collect(args: argparse.Namespace) -> int:
    from app.loop.collect import CollectJob, run_collect

    settings: Settings = load_settings(config=args.config)
    config = load_routing_config(settings.config)
    prompts, repeated = read_prompts([_read(p, "prompts file") for p in args.prompts])
    if not prompts:
        raise ValueError("the prompts files have no rows")
    job = CollectJob(
        prompts=prompts,
        models=args.models,
        out=_out(args.out),
        concurrency=args.concurrency,
        max_usd=args.max_usd,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        policy=_policy(args),
        progress=not args.no_progress,
    )
    report = asyncio.run(run_collect(job, config, settings.proxy))
    if repeated:
        print(f"{repeated} repeated prompt rows (same id and messages) were run once")
    print("\n".join(report.lines(len(prompts), len(args.models), job.out)))
    return 130 if report.stopped == INTERRUPTED else 0


def cmd_label(args: argparse.Namespace) -> int:
    from app.loop.label import LabelJob, run_label

    if args.judge_prompt and not args.judge:
        raise ValueError("--judge-prompt: only with --judge")
    rubric = DEFAULT_RUBRIC
    if args.judge_prompt:
        rubric = _read(args.judge_prompt, "--judge-prompt").read_text(encoding="utf-8")
        check_template(rubric, args.judge_prompt)
    config_path = args.config or os.environ.get("ROUTER_CONFIG")
    config: RoutingConfig | None = load_routing_config(config_path) if config_path else None
    if args.judge and config is None:
        raise ValueError("--judge needs --config (the routing config with the judge model)")
    settings: Settings = load_settings()
    job = LabelJob(
        answers=_read(args.answers, "answers file"),
        out=_out(args.out),
        reference=args.reference,
        judge=args.judge,
        rubric=rubric,
        models=args.models,
        concurrency=args.concurrency,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        policy=_policy(args),
        progress=not args.no_progress,
    )
    report = asyncio.run(run_label(job, config, settings.proxy))
    print("\n".join(report.lines(job.out)))
    stopped = report.judge.stopped if report.judge is not None else None
    return 130 if stopped == INTERRUPTED else 0
