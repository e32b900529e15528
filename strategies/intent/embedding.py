"""Embedding intent backend: sentence embeddings of the latest user turns, then either

* nearest configured intent: each intent is represented by its description, its example
  utterances and the config's ``examples_file`` rows; below ``ROUTER_INTENT__THRESHOLD``
  the answer is ``other``; or
* a trained intent head (config ``intent_classifier``, from ``llm-router train-intents``):
  softmax probabilities over the embedding (and, when the head was trained with them,
  word/character n-grams of the same turn text), ``other`` under the head's validated
  threshold.

Turns are embedded micro-batched with concurrent requests; the latest turn weighs most.
The latest turn is also read on its own (``latest_intent``): the strategy decides from it
whether a turn after earlier images asks about them, since an earlier "what's in this
picture? [image]" turn can outweigh an unrelated latest turn in the weighted scores.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.core.conversation import Conversation
from models.core.routing_config import OTHER_INTENT
from models.encoders.runtime import TextEncoder, load_sentence_encoder
from models.inference.batching import MicroBatcher
from models.intents.data import read_intent_rows
from models.intents.head import (
    HEAD_CHARS,
    TAIL_CHARS,
    IntentHead,
    bundled_encoder,
    check_head_encoder,
    clip_text,
    encoder_identity,
    head_quantization,
    load_head,
    serving_runtime,
)
from strategies.base import StrategyContext
from strategies.intent.strategy import IntentResult, allowed_intents

TURN_WEIGHTS = (1.0, 0.35, 0.15, 0.08)  # newest first; later turns share the last weight
TOP_K = 3  # an intent's score: mean of its k most similar references (chosen by
# leave-one-out on the default config's examples: k=1 0.79, k=2 0.82, k=3 0.83, k=5 0.82)
CONTEXT_CHARS = 240  # older turns are context: their last few sentences are enough

log = logging.getLogger(__name__)


class IntentConfigError(ValueError):
    """The config's intent_classifier / examples_file does not fit the configured intents."""


def turn_weights(n: int) -> np.ndarray:
    weights = np.array([TURN_WEIGHTS[min(i, len(TURN_WEIGHTS) - 1)] for i in range(n)])
    return (weights / weights.sum()).astype(np.float32)


class EmbeddingIntentClassifier:
    """Nearest-intent classifier over sentence embeddings."""

    def __init__(self, context: StrategyContext) -> None:
        self._ctx = context
        self._intents = [i for i in context.config.intents]
        self._names = [i.name for i in self._intents]
        self._encoder: TextEncoder | None = None
        self._batcher: MicroBatcher[str, np.ndarray] | None = None
        self._refs = np.zeros((0, 0), dtype=np.float32)
        # each intent's reference rows, padded to the longest ([intents, most]), and how
        # many of its best similarities it averages (TOP_K, or fewer when it has fewer)
        self._ref_index = np.zeros((0, 0), dtype=np.int64)
        self._ref_valid = np.zeros((0, 0), dtype=bool)
        self._ref_k = np.zeros(0, dtype=np.float32)
        self._head: IntentHead | None = None

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        assert self._encoder is not None
        return list(self._encoder.encode(texts))

    async def start(self) -> None:
        settings = self._ctx.settings
        loop = asyncio.get_running_loop()
        config = self._ctx.config
        quantize = settings.intent.quantize and settings.intent.device == "cpu"
        runtime: str = settings.encoder.runtime
        head: IntentHead | None = None
        manifest: dict[str, Any] = {}
        tuned: Path | None = None
        path = Path()
        if config.intent_classifier:
            path = config.resolve_path(config.intent_classifier)
            head, manifest = load_head(path)
            tuned = bundled_encoder(path, manifest)  # a --fine-tune head brings its encoder
            runtime = serving_runtime(manifest, runtime, quantize, path)
            if runtime != settings.encoder.runtime:
                log.warning(
                    "intent head %s was trained on %s int8 embeddings: serving it on %s, not "
                    "ROUTER_ENCODER__RUNTIME=%s (retrain with llm-router train-intents to "
                    "change)", path, runtime, runtime, settings.encoder.runtime,
                )  # fmt: skip
        self._encoder = await loop.run_in_executor(
            None,
            load_sentence_encoder,
            str(tuned) if tuned is not None else settings.intent.encoder,
            settings.intent.device,
            (head_quantization(manifest, quantize, path) if head else quantize) or False,
            self._ctx.encoder_runtime(runtime),
        )
        texts, owners = self._references()
        if head is not None:
            check_head_encoder(manifest, encoder_identity(self._encoder), path)
            unknown = sorted(set(head.labels) - {*self._names, OTHER_INTENT})
            if unknown:
                raise IntentConfigError(
                    f"intent classifier '{path}' predicts intents not in the routing config: "
                    f"{unknown}"
                )
            self._head, texts, owners = head, [], []
        self._batcher = MicroBatcher(
            self._encode,
            name=f"intent-{self._encoder.name}",
            max_batch_size=settings.batch.max_size,
            window_s=settings.batch.window_ms / 1000.0,
            queue_size=settings.batch.queue_size,
            metrics=self._ctx.metrics,
        )
        if texts:
            self._refs = np.stack(await self._batcher.run_now(texts))
        self._index_references(np.asarray(owners, dtype=np.int64))

    def _index_references(self, owner: np.ndarray) -> None:
        rows = [np.flatnonzero(owner == i) for i in range(len(self._intents))]
        most = max((len(r) for r in rows), default=0)
        self._ref_index = np.zeros((len(rows), most), dtype=np.int64)
        self._ref_valid = np.zeros((len(rows), most), dtype=bool)
        for i, r in enumerate(rows):
            self._ref_index[i, : len(r)] = r
            self._ref_valid[i, : len(r)] = True
        self._ref_k = np.array([min(TOP_K, len(r)) for r in rows], dtype=np.float32)

    def _references(self) -> tuple[list[str], list[int]]:
        """Reference texts (descriptions, examples, examples_file rows) and their intents."""
        texts: list[str] = []
        owners: list[int] = []
        for idx, intent in enumerate(self._intents):
            for text in [intent.description, *intent.examples]:
                texts.append(clip_text(text))
                owners.append(idx)
        config = self._ctx.config
        if config.examples_file:
            path = config.resolve_path(config.examples_file)
            extra, labels = read_intent_rows(path)
            index = {name: i for i, name in enumerate(self._names)}
            unknown = sorted(set(labels) - set(index))
            if unknown:
                raise IntentConfigError(
                    f"examples_file {path} has intents not in the routing config: {unknown}"
                )
            texts += [clip_text(t) for t in extra]
            owners += [index[label] for label in labels]
        return texts, owners

    def head_scores(self, vectors: np.ndarray, texts: list[str]) -> np.ndarray:
        """Per-intent probability from the trained head, weighted over turns (newest
        first); intents the head does not know score 0. ``texts`` are the embedded turn
        texts (the head's lexical features read them)."""
        return self.head_turn_scores(vectors, texts) @ turn_weights(vectors.shape[0])  # type: ignore[no-any-return]

    def head_turn_scores(self, vectors: np.ndarray, texts: list[str]) -> np.ndarray:
        """The head's per-intent probabilities per turn, ``[intents, turns]``."""
        assert self._head is not None
        probs = self._head.probabilities(vectors, texts).T  # [labels, turns]
        out = np.zeros((len(self._names), vectors.shape[0]), dtype=np.float32)
        for j, label in enumerate(self._head.labels):
            if label in self._names:
                out[self._names.index(label)] = probs[j]
        return out

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Per-intent score: mean of its TOP_K most similar references, per turn, then
        weighted over turns (newest first). ``vectors`` is [turns, dim]."""
        return self.turn_scores(vectors) @ turn_weights(vectors.shape[0])  # type: ignore[no-any-return]

    def turn_scores(self, vectors: np.ndarray) -> np.ndarray:
        """Per-intent score per turn, ``[intents, turns]`` (mean of the TOP_K most similar
        references of each intent)."""
        sims = self._refs @ vectors.T  # [refs, turns]
        block = np.where(self._ref_valid[..., None], sims[self._ref_index], -np.inf)
        k = min(TOP_K, block.shape[1])  # [intents, most, turns] -> each intent's best k
        best = -np.partition(-block, k - 1, axis=1)[:, :k]
        per_intent = np.where(np.isfinite(best), best, 0.0).sum(axis=1) / self._ref_k[:, None]
        return per_intent.astype(np.float32)  # type: ignore[no-any-return]

    def _pick(self, scores: np.ndarray, allowed: set[str], threshold: float) -> str:
        """The best allowed intent, or ``other`` when none reaches the threshold."""
        masked = np.where([n in allowed for n in self._names], scores, -np.inf)
        best = int(np.argmax(masked))
        if not np.isfinite(masked[best]) or masked[best] < threshold:
            return OTHER_INTENT
        return self._names[best]

    async def classify(self, conversation: Conversation) -> IntentResult:
        assert self._batcher is not None, "start() first"
        texts = conversation.recent_user_texts(self._ctx.settings.intent.window_turns)
        if not texts:
            texts = [conversation.transcript(max_chars=HEAD_CHARS + TAIL_CHARS) or "[empty]"]
        start = asyncio.get_running_loop().time()
        clipped = [clip_text(texts[0])] + [clip_text(t, 0, CONTEXT_CHARS) for t in texts[1:]]
        if len(clipped) == 1:  # the common case: no task per turn
            vectors = (await self._batcher.submit(clipped[0]))[None, :]
        else:
            vectors = np.stack(await asyncio.gather(*(self._batcher.submit(t) for t in clipped)))
        self._ctx.metrics.stage_duration.labels("intent", "encode").observe(
            asyncio.get_running_loop().time() - start
        )
        if self._head is not None:
            per_turn = self.head_turn_scores(vectors, clipped)
            threshold = self._head.threshold
        else:
            per_turn, threshold = self.turn_scores(vectors), self._ctx.settings.intent.threshold
        scores = per_turn @ turn_weights(vectors.shape[0])
        allowed = set(allowed_intents(self._ctx, conversation))
        intent = self._pick(scores, allowed, threshold)
        # the latest turn read alone: earlier image turns weigh into ``intent`` (context),
        # so whether it asks about an image is read from its own words
        latest = self._pick(per_turn[:, 0], allowed, threshold)
        return IntentResult(
            intent=intent,
            scores={name: float(s) for name, s in zip(self._names, scores, strict=True)},
            detail={"turns_used": len(texts), "latest_turn_intent": latest},
            latest_intent=latest,
        )

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
        self._encoder = None
