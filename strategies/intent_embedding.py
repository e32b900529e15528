"""Embedding intent backend: nearest configured intent by sentence-embedding similarity.

Each intent is represented by its description and example utterances. The latest user
turns are embedded (micro-batched with concurrent requests) and scored against every
reference; the latest turn weighs most. Below ``ROUTER_INTENT__THRESHOLD`` the answer
is ``other``.
"""

from __future__ import annotations

import asyncio

import numpy as np

from app.config import OTHER_INTENT
from models.batching import MicroBatcher
from models.minilm import SentenceEncoder
from strategies.base import Conversation, StrategyContext
from strategies.intent import IntentResult, allowed_intents

TURN_WEIGHTS = (1.0, 0.35, 0.15, 0.08)  # newest first; later turns share the last weight
TOP_K = 3  # an intent's score: mean of its k most similar references (chosen by
# leave-one-out on the default config's examples: k=1 0.79, k=2 0.82, k=3 0.83, k=5 0.82)
HEAD_CHARS, TAIL_CHARS = 300, 700  # long turns: keep the opening and the end
CONTEXT_CHARS = 240  # older turns are context: their last few sentences are enough


def clip_text(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """Keep the start (the instruction) and the end (the question) of a long turn."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]} ... {text[-tail:]}" if head else text[-tail:]


def turn_weights(n: int) -> np.ndarray:
    weights = np.array([TURN_WEIGHTS[min(i, len(TURN_WEIGHTS) - 1)] for i in range(n)])
    return (weights / weights.sum()).astype(np.float32)


class EmbeddingIntentClassifier:
    """Nearest-intent classifier over sentence embeddings."""

    def __init__(self, context: StrategyContext) -> None:
        self._ctx = context
        self._intents = [i for i in context.config.intents]
        self._names = [i.name for i in self._intents]
        self._encoder: SentenceEncoder | None = None
        self._batcher: MicroBatcher[str, np.ndarray] | None = None
        self._refs = np.zeros((0, 0), dtype=np.float32)
        self._ref_rows: list[np.ndarray] = []

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        assert self._encoder is not None
        return list(self._encoder.encode(texts))

    async def start(self) -> None:
        settings = self._ctx.settings
        loop = asyncio.get_running_loop()
        self._encoder = await loop.run_in_executor(
            None,
            SentenceEncoder,
            settings.intent.encoder,
            settings.intent.device,
            settings.intent.quantize and settings.intent.device == "cpu",
        )
        texts: list[str] = []
        owners: list[int] = []
        for idx, intent in enumerate(self._intents):
            for text in [intent.description, *intent.examples]:
                texts.append(clip_text(text))
                owners.append(idx)
        self._batcher = MicroBatcher(
            self._encode,
            name=f"intent-{self._encoder.name}",
            max_batch_size=settings.batch.max_size,
            window_s=settings.batch.window_ms / 1000.0,
            queue_size=settings.batch.queue_size,
            metrics=self._ctx.metrics,
        )
        self._refs = np.stack(await self._batcher.run_now(texts))
        owner = np.asarray(owners, dtype=np.int64)
        self._ref_rows = [np.flatnonzero(owner == i) for i in range(len(self._intents))]

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Per-intent score: mean of its TOP_K most similar references, per turn, then
        weighted over turns (newest first). ``vectors`` is [turns, dim]."""
        sims = self._refs @ vectors.T  # [refs, turns]
        per_intent = np.empty((len(self._intents), vectors.shape[0]), dtype=np.float32)
        for i, rows in enumerate(self._ref_rows):
            block = sims[rows]
            k = min(TOP_K, len(rows))
            per_intent[i] = np.sort(block, axis=0)[-k:].mean(axis=0)
        return per_intent @ turn_weights(vectors.shape[0])  # type: ignore[no-any-return]

    async def classify(self, conversation: Conversation) -> IntentResult:
        assert self._batcher is not None, "start() first"
        texts = conversation.recent_user_texts(self._ctx.settings.intent.window_turns)
        if not texts:
            texts = [conversation.transcript(max_chars=HEAD_CHARS + TAIL_CHARS) or "[empty]"]
        start = asyncio.get_running_loop().time()
        clipped = [clip_text(texts[0])] + [clip_text(t, 0, CONTEXT_CHARS) for t in texts[1:]]
        vectors = await asyncio.gather(*(self._batcher.submit(t) for t in clipped))
        self._ctx.metrics.stage_duration.labels("intent", "encode").observe(
            asyncio.get_running_loop().time() - start
        )
        scores = self.score(np.stack(vectors))
        allowed = set(allowed_intents(self._ctx, conversation))
        masked = np.where([n in allowed for n in self._names], scores, -np.inf)
        best = int(np.argmax(masked))
        intent = self._names[best]
        if not np.isfinite(masked[best]) or masked[best] < self._ctx.settings.intent.threshold:
            intent = OTHER_INTENT
        return IntentResult(
            intent=intent,
            scores={name: float(s) for name, s in zip(self._names, scores, strict=True)},
            detail={"turns_used": len(texts)},
        )

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
        self._encoder = None
