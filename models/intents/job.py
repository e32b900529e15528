"""``llm-router train-intents``: fit an intent head on labelled messages for a routing
config and write the artifact plus a routing config that uses it.

Layout of ``out``: ``intent-head/`` (weights.safetensors + manifest.json: encoder
fingerprint, labels, threshold, features, metrics; vocabulary.json when the head uses
lexical features) and ``routing.yaml`` (the base config plus
``intent_classifier: intent-head``; the base's relative paths made absolute).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.core.routing_config import OTHER_INTENT
from models.encoders.cache import DEFAULT_CACHE_DIR
from models.intents.data import IntentDataError, read_intent_rows
from models.intents.fine_tune import FineTuneConfig, fine_tune_encoder
from models.intents.fit import LEXICAL_GRID, FitResult, fit_chosen, fit_intents, stratified_split
from models.intents.head import TextEmbedder, clip_text, save_head

if TYPE_CHECKING:
    from models.core.routing_config import RoutingConfig
    from models.encoders.runtime import EncoderRuntime

HEAD_DIR = "intent-head"
ENCODER_DIR = "encoder"  # inside HEAD_DIR: the fine-tuned sentence encoder
# --features: which (word, char) n-gram weights validation chooses among; (0, 0) is the
# embedding-only head
FEATURE_GRIDS = {
    "auto": LEXICAL_GRID,
    "embedding": ((0.0, 0.0),),
    "lexical": tuple(w for w in LEXICAL_GRID if w != (0.0, 0.0)),
}
ROUTING = "routing.yaml"


@dataclass(slots=True)
class IntentJob:
    data: Path
    config: RoutingConfig
    out: Path
    encoder: str = "minilm"
    device: str = "cpu"
    quantize: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    cache_dir: Path | str | None = DEFAULT_CACHE_DIR
    oos_share: float | None = None  # weight of out-of-scope rows in the threshold choice
    features: str = "auto"  # see FEATURE_GRIDS
    fine_tune_epochs: int = 0  # > 0: fine-tune the encoder first (models.intents.fine_tune)
    fine_tune_device: str | None = None  # where to fine-tune (default: device)
    runtime: EncoderRuntime | None = None  # what embeds for the head, as served (torch)


def config_rows(config: RoutingConfig) -> tuple[list[str], list[str]]:
    """The config's descriptions, examples and examples_file rows as labelled texts."""
    texts: list[str] = []
    labels: list[str] = []
    for intent in config.intents:
        for text in [intent.description, *intent.examples]:
            texts.append(text)
            labels.append(intent.name)
    if config.examples_file:
        extra, extra_labels = read_intent_rows(config.resolve_path(config.examples_file))
        texts += extra
        labels += extra_labels
    return texts, labels


def check_intents(labels: list[str], config: RoutingConfig, source: str) -> None:
    known = {i.name for i in config.intents} | {OTHER_INTENT}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise IntentDataError(
            f"{source}: intent(s) {unknown} are not in the routing config "
            f"(configured: {sorted(known)})"
        )


def run_train_intents(job: IntentJob) -> dict[str, Any]:
    """Fit, write ``job.out``, return the head's manifest."""
    texts, labels = read_intent_rows(job.data)
    if not texts:
        raise IntentDataError(f"{job.data} has no rows")
    check_intents(labels, job.config, str(job.data))
    extra, extra_labels = config_rows(job.config)
    check_intents(extra_labels, job.config, "examples_file")
    if job.fine_tune_epochs > 0:
        tuned = fit_fine_tuned(
            texts,
            labels,
            extra,
            extra_labels,
            job.out / HEAD_DIR / ENCODER_DIR,
            FineTuneConfig(epochs=job.fine_tune_epochs, seed=job.seed),
            encoder=job.encoder,
            device=job.device,
            tune_device=job.fine_tune_device,
            quantize=job.quantize,
            val_fraction=job.val_fraction,
            seed=job.seed,
            oos_share=job.oos_share,
            lexical_grid=FEATURE_GRIDS[job.features],
            runtime=job.runtime,
        )
        result, info, tuning = tuned.result, tuned.encoder_identity, tuned.tuning
    else:
        embedder = TextEmbedder(job.encoder, job.device, job.quantize, job.cache_dir, job.runtime)
        x, x_config = _embed_rows(embedder, texts, extra)
        result = fit_intents(
            x,
            labels,
            x_config,
            extra_labels,
            job.val_fraction,
            job.seed,
            oos_share=job.oos_share,
            texts=[clip_text(t) for t in texts],  # what the service scores: the clipped turn
            config_texts=[clip_text(t) for t in extra],
            lexical_grid=FEATURE_GRIDS[job.features],
        )
        info, tuning = embedder.info, None
    manifest = {
        "encoder": info,
        "metrics": result.metrics,
        "training": {
            "data": job.data.name,
            "val_fraction": job.val_fraction,
            "seed": job.seed,
            "features": job.features,
            "fine_tune": tuning,
        },
    }
    save_head(job.out / HEAD_DIR, result.head, manifest)
    write_config(job.config, job.out / ROUTING)
    return {**manifest, "labels": result.head.labels, "threshold": result.head.threshold}


@dataclass(frozen=True, slots=True)
class FineTuned:
    result: FitResult
    encoder_identity: dict[str, Any]  # what the manifest records (with the bundled path)
    tuning: dict[str, Any]  # the final tuning run's report


def fit_fine_tuned(
    texts: list[str],
    labels: list[str],
    extra: list[str],
    extra_labels: list[str],
    encoder_dir: Path,
    tuning: FineTuneConfig,
    *,
    encoder: str = "minilm",
    device: str = "cpu",
    tune_device: str | None = None,
    quantize: bool = True,
    val_fraction: float = 0.2,
    seed: int = 0,
    oos_share: float | None = None,
    lexical_grid: Sequence[tuple[float, float]] = LEXICAL_GRID,
    runtime: EncoderRuntime | None = None,
) -> FineTuned:
    """Fine-tune, choose, fine-tune again; the final encoder is saved at ``encoder_dir``.

    Choosing the head's C, features and ``other`` threshold on rows the encoder was tuned
    on would be optimistic (tuned embeddings separate their own training rows too well),
    so: (1) tune on a stratified ``val_fraction`` split's training rows and choose on its
    held-out rows; (2) tune on every row and fit the head with the settings (1) chose.
    Config rows (``extra``) always train. Tuning runs on ``tune_device`` (default
    ``device``) with torch; embeddings for the head come from ``device`` with ``quantize``
    on ``runtime``, as the service computes them."""
    clipped, clipped_extra = [clip_text(t) for t in texts], [clip_text(t) for t in extra]
    train, val = stratified_split(labels, val_fraction, seed)
    if not len(val):
        raise IntentDataError(
            "fine-tuning needs held-out rows to choose the head on: give at least two rows "
            "for some intent"
        )
    where = tune_device or device
    held_out = {clipped[i] for i in val}  # a config row repeating one would leak it
    extra_kept = [(t, lbl) for t, lbl in zip(clipped_extra, extra_labels, strict=True)
                  if t not in held_out]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="llm-router-finetune-") as tmp,
        tempfile.TemporaryDirectory(prefix="llm-router-finetune-onnx-") as exports,
    ):
        fine_tune_encoder(
            [clipped[i] for i in train] + [t for t, _ in extra_kept],
            [labels[i] for i in train] + [lbl for _, lbl in extra_kept],
            Path(tmp),
            tuning,
            encoder,
            where,
        )
        scratch = dataclasses.replace(runtime, cache_dir=exports) if runtime else None
        embedder = TextEmbedder(tmp, device, quantize, cache_dir=None, runtime=scratch)
        x, x_config = _embed_rows(embedder, texts, extra)
        chosen = fit_intents(
            x[train],
            [labels[i] for i in train],
            x_config,
            extra_labels,
            val_fraction,
            seed,
            validation=(x[val], [labels[i] for i in val]),
            oos_share=oos_share,
            texts=[clipped[i] for i in train],
            config_texts=clipped_extra,
            validation_texts=[clipped[i] for i in val],
            lexical_grid=lexical_grid,
        )
    report = fine_tune_encoder(
        clipped + clipped_extra, labels + extra_labels, encoder_dir, tuning, encoder, where
    )
    embedder = TextEmbedder(str(encoder_dir), device, quantize, cache_dir=None, runtime=runtime)
    x, x_config = _embed_rows(embedder, texts, extra)
    head = fit_chosen(
        x, labels, x_config, extra_labels, chosen.metrics, seed, clipped, clipped_extra
    )
    metrics = {
        **chosen.metrics,
        "n_rows": len(texts),
        "validation": f"{chosen.metrics['validation']} (encoder tuned without it)",
    }
    return FineTuned(FitResult(head, metrics), {**embedder.info, "path": ENCODER_DIR}, report)


def _embed_rows(
    embedder: TextEmbedder, texts: list[str], extra: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    x = embedder.embed(texts)
    return x, embedder.embed(extra) if extra else np.zeros((0, x.shape[1]), np.float32)


def write_config(config: RoutingConfig, path: Path) -> Path:
    """The base config plus ``intent_classifier``; paths stay valid from the new place."""
    import yaml

    data = config.model_dump(mode="json", exclude_none=True)
    if config.examples_file:
        data["examples_file"] = str(config.resolve_path(config.examples_file).resolve())
    artifact = config.auto.artifact
    if artifact:
        data["auto"]["artifact"] = str(config.resolve_path(artifact).resolve())
    data["intent_classifier"] = HEAD_DIR
    header = (
        f"# Written by llm-router train-intents from {config.source}: the same models and\n"
        f"# intents, classified by the trained head in ./{HEAD_DIR}.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
