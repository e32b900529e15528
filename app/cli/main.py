"""The ``llm-router`` command: serve, route, eval, train (auto router), calibrate,
train-intents, export-onnx, and the data commands collect and label (app/cli/learning.py).

This module only parses arguments and calls the code that does the work: the service
(app.server.factory), offline replay (app.cli.replay), training (models.training.job,
models.intents.job) and report summaries (models.evaluation.summary).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from app.cli.common import UsageError, fail, load_settings
from app.proxy.accounting import resolve_baseline
from app.settings import Settings, load_env_file
from models.core.errors import ConfigError, RouterError
from models.core.routing_config import RoutingConfig, load_routing_config
from strategies.registry import UnknownStrategyError, resolve

__all__ = ["UsageError", "build_parser", "load_settings", "main"]

STARTUP_ERRORS = (ConfigError, UnknownStrategyError, ValidationError, ValueError, UsageError)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server.workers import check_workers, serve_workers, worker_count

    settings = load_settings(
        host=args.host, port=args.port, strategy=args.strategy, config=args.config
    )
    count = worker_count(settings)
    check_workers(settings, count)
    if count > 1:
        config = load_routing_config(settings.config)  # bad config: fail here, not in N workers
        resolve(settings.strategy)
        resolve_baseline(config, settings.cost.baseline_model, settings.mode == "proxy")
        return serve_workers(settings, count)
    from app.server.serving import build_server

    server, fatal = build_server(settings)
    server.run()
    if fatal:
        return fail(f"strategy failed to start: {fatal[0]}", 1)
    return 0 if server.started else 1


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def read_image(path: str, settings: Settings) -> Any:
    """An image file for ``route --image``; unreadable or not an image is a UsageError."""
    from app.images.decode import open_image

    try:
        return open_image(read_file(path, "--image"), settings.limits, f"--image {path}")
    except RouterError as exc:
        raise UsageError(f"--image {path}: {exc.message}") from None


async def _route_once(settings: Settings, config: RoutingConfig, args: argparse.Namespace) -> Any:
    from app.cli.replay import started_strategy, timed_route
    from models.core.conversation import Conversation

    images = [read_image(p, settings) for p in args.image]
    conversation = Conversation.from_text(args.text, images)
    async with started_strategy(settings, config) as strategy:
        return await timed_route(strategy, conversation)


def cmd_route(args: argparse.Namespace) -> int:
    settings = load_settings(strategy=args.strategy, config=args.config)
    config = load_routing_config(settings.config)
    decision, seconds = asyncio.run(_route_once(settings, config, args))
    if args.json:
        out = {
            "model": decision.model,
            "strategy": decision.strategy,
            "intent": decision.intent,
            "reason": decision.reason,
            "scores": decision.scores,
            "ranking": decision.ranking,
            "latency_ms": round(seconds * 1000, 3),
        }
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        intent = f" (intent {decision.intent})" if decision.intent else ""
        print(f"{decision.model}{intent} [{decision.reason}, {seconds * 1000:.1f} ms]")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from app.cli.replay import evaluate_intents, evaluate_quality, read_jsonl
    from models.evaluation import summary as eval_summary

    settings = load_settings(strategy=args.strategy, config=args.config)
    config = load_routing_config(settings.config)
    try:
        rows = list(read_jsonl(Path(args.data)))
    except OSError as exc:
        raise UsageError(f"{args.data}: {exc.strerror or exc}") from None
    if not rows:
        return fail(f"{args.data} has no rows")
    if "scores" in rows[0]:  # quality/cost data (auto router)
        if args.cost_weight is not None and config.auto.budget_per_1k is not None:
            raise UsageError(
                f"--cost-weight: the routing config sets auto.budget_per_1k "
                f"{config.auto.budget_per_1k:g}, which takes its cost_weight from the "
                "artifact; drop one of them"
            )
        overrides = {"policy": args.policy, "cost_weight": args.cost_weight}
        auto = config.auto.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        config = config.model_copy(update={"auto": auto})
        report = asyncio.run(evaluate_quality(rows, settings, config, args.budgets, args.data))
        eval_summary.print_quality(report)
    elif any("intent" in r for r in rows):
        report = asyncio.run(evaluate_intents(rows, settings, config))
        eval_summary.print_intents(report)
    else:
        return fail(f"{args.data}: rows need an 'intent' label (or 'scores' for auto data)")
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        plot = None
        if "scores" in rows[0]:
            from models.evaluation.plot import plot_report

            plot = plot_report(report, args.plot or Path(args.out).with_suffix(".png"))
        print(f"report written to {args.out}" + (f", plot to {plot}" if plot else ""))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from app.cli.replay import conversation_of, read_jsonl
    from models.evaluation import summary as eval_summary
    from models.evaluation.data import file_sha256, score_matrix, tasks_of
    from models.training.job import TrainJob, run_training
    from models.training.routing_out import missing_models

    path = Path(args.data)
    rows = list(read_jsonl(path))
    if not rows or not isinstance(rows[0].get("scores"), dict):
        raise ValueError(f"{path}: rows need per-model 'scores'")
    models = list(rows[0]["scores"])
    scores, costs = score_matrix(rows, models, str(path))
    settings = load_settings()
    base = load_routing_config(args.config) if args.config else None
    if base is not None and (missing := missing_models(base, models)):
        raise UsageError(
            f"--config {args.config}: {path} scores models it does not define: "
            f"{', '.join(missing)} (configured: {', '.join(base.model_names)})"
        )

    async def normalised() -> list[Any]:
        return [await conversation_of(row, settings) for row in rows]

    job = TrainJob.from_args(
        args, models, data_path=path, data_sha256=file_sha256(path), base_config=base
    )
    report = run_training(job, asyncio.run(normalised()), scores, costs, tasks_of(rows))
    eval_summary.print_training(report, args.out)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Export (or check) the ONNX graphs of sentence encoders into the cache, e.g. at
    image build time, so the service starts without exporting."""
    from models.encoders.onnx import OnnxSentenceEncoder
    from models.encoders.sentence import DEFAULT_INT8, EncoderLoadError

    settings = load_settings()
    cache_dir = args.cache_dir or settings.encoder.cache_dir
    for name in args.encoder or [settings.intent.encoder]:
        for scheme in (False, DEFAULT_INT8):
            try:
                encoder = OnnxSentenceEncoder(name, scheme, cache_dir)
            except EncoderLoadError as exc:
                return fail(str(exc), 1)
        print(f"{encoder.name}: ONNX fp32 and {DEFAULT_INT8} ready in {encoder.entry}")
    return 0


def cmd_train_intents(args: argparse.Namespace) -> int:
    from models.encoders.runtime import EncoderRuntime
    from models.intents.job import IntentJob, run_train_intents

    settings = load_settings(config=args.config)
    job = IntentJob(
        data=Path(args.data),
        config=load_routing_config(settings.config),
        out=Path(args.out),
        encoder=settings.intent.encoder,
        device=settings.intent.device,
        quantize=settings.intent.quantize,
        val_fraction=args.val_fraction,
        seed=args.seed,
        cache_dir=args.cache_dir or None,
        oos_share=args.oos_share,
        features=args.features,
        fine_tune_epochs=args.fine_tune,
        fine_tune_device=args.fine_tune_device,
        runtime=EncoderRuntime(settings.encoder.runtime, settings.encoder.cache_dir),
    )
    manifest = run_train_intents(job)
    m = manifest["metrics"]
    print(
        f"intent head written to {args.out}/intent-head ({len(manifest['labels'])} labels, "
        f"{m['n_rows']} rows + {m['n_config_examples']} config examples); validation "
        f"({m['validation']}) accuracy {m['val_accuracy']} at other-threshold "
        f"{m['threshold']} (C {m['c']}, features {m['features']})"
    )
    tuning = manifest["training"]["fine_tune"]
    if tuning:
        print(
            f"encoder fine-tuned for {tuning['epochs']} epochs on {tuning['rows']} rows "
            f"({tuning['seconds']} s, loss {tuning['loss_first_epoch']} -> "
            f"{tuning['loss_last_epoch']}); saved in {args.out}/intent-head/encoder and "
            "served with the head"
        )
    print(f"use it: ROUTER_CONFIG={args.out}/routing.yaml llm-router serve")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.cli import args as cli_args
    from app.cli import learning
    from app.cli.calibrate import add_calibrate_parser, cmd_calibrate

    parser = argparse.ArgumentParser(prog="llm-router", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strategy", help="override ROUTER_STRATEGY")
        p.add_argument("--config", help="override ROUTER_CONFIG (routing config YAML)")

    p = sub.add_parser("serve", help="serve the HTTP API")
    common(p)
    p.add_argument("--host", help="override ROUTER_HOST")
    p.add_argument("--port", type=int, help="override ROUTER_PORT")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("route", help="print the decision for one message, without a server")
    common(p)
    p.add_argument("text", help="the user message")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="attach an image file (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("eval", help="replay labelled JSONL through a strategy and score it")
    common(p)
    p.add_argument("data", help="JSONL: messages/text + intent, or + per-model scores")
    p.add_argument("--out", help="write the JSON report here")
    cli_args.add_quality_eval_args(p)
    p.set_defaults(func=cmd_eval)
    cli_args.add_train_parser(sub).set_defaults(func=cmd_train)
    add_calibrate_parser(sub).set_defaults(func=cmd_calibrate)
    cli_args.add_train_intents_parser(sub).set_defaults(func=cmd_train_intents)
    learning.add_collect_parser(sub)
    learning.add_label_parser(sub)

    p = sub.add_parser(
        "export-onnx",
        help="export sentence encoders to ONNX (fp32 and int8) into the encoder cache",
    )
    p.add_argument(
        "--encoder",
        action="append",
        metavar="NAME_OR_PATH",
        help="'minilm' or a sentence-transformers directory (repeatable; default: "
        "ROUTER_INTENT__ENCODER)",
    )
    p.add_argument("--cache-dir", help="override ROUTER_ENCODER__CACHE_DIR")
    p.set_defaults(func=cmd_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_env_file()
    try:
        return int(args.func(args))
    except STARTUP_ERRORS as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
