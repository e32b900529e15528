"""Fine-tune the intent backend's sentence encoder on labelled intent rows
(``llm-router train-intents --fine-tune EPOCHS``).

With a few examples per intent a frozen encoder is the limit: its embeddings were trained
for general similarity, not for telling ``card_arrival`` from ``card_delivery_estimate``.
Fine-tuning moves every layer so that each intent's rows gather around a prototype:

* the objective is a cosine classifier, ``cross_entropy(scale * unit(e(x)) @ unit(W).T)``,
  with ``W`` started at each intent's mean embedding (so the first steps refine, rather
  than undo, what the encoder already knows);
* AdamW, linear warm-up over the first 10% of steps then linear decay, a few epochs;
* the classifier ``W`` is thrown away: the intent head is fitted afterwards on the tuned
  encoder's embeddings, exactly as for a frozen encoder, and serving runs the tuned
  encoder (saved beside the head, int8-quantized on CPU like the packaged one).

Blocking and CPU/GPU-bound (seconds per epoch for 1,000 short rows on 2 cores).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.encoders.sentence import PACKAGED, EncoderLoadError, packaged_minilm_path


@dataclass(frozen=True, slots=True)
class FineTuneConfig:
    """Hyper-parameters of one fine-tuning run (recorded in the head's manifest)."""

    epochs: int
    learning_rate: float = 5e-5
    batch_size: int = 32
    scale: float = 20.0  # logit scale of the cosine classifier
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(step: int, total: int, warmup_share: float) -> float:
    warmup = max(1, math.ceil(total * warmup_share))
    return min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / total)


def _preprocess(model: Any, texts: list[str]) -> dict[str, Any]:
    """Tokenised features (``preprocess`` in sentence-transformers 5.x, ``tokenize`` before)."""
    step = getattr(model, "preprocess", None) or model.tokenize
    return dict(step(texts))


def fine_tune_encoder(
    texts: Sequence[str],
    labels: Sequence[str],
    out: Path,
    config: FineTuneConfig,
    encoder: str = PACKAGED,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fine-tune ``encoder`` (the packaged MiniLM or a sentence-transformers directory) on
    ``texts``/``labels`` and save it, full precision, as a sentence-transformers directory
    at ``out``. Returns what happened (steps, seconds, first and last epoch's loss)."""
    if config.epochs < 1:
        raise ValueError("fine-tuning needs at least one epoch")
    if len(texts) != len(labels) or not texts:
        raise ValueError("fine-tuning needs one label per text and at least one text")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer
    from torch.nn import functional as F

    path = str(packaged_minilm_path()) if encoder == PACKAGED else encoder
    if encoder != PACKAGED and not Path(path).exists():
        raise EncoderLoadError(f"sentence encoder not found at '{path}'")
    torch.manual_seed(config.seed)
    model = SentenceTransformer(path, device=device)
    names = sorted(set(labels))
    y = torch.tensor([names.index(label) for label in labels], device=device)
    with torch.inference_mode():
        start = model.encode(
            list(texts),
            batch_size=128,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    prototypes = torch.stack([start[y == k].mean(dim=0) for k in range(len(names))])
    weight = torch.nn.Parameter(F.normalize(prototypes.clone(), dim=-1))
    opt = torch.optim.AdamW(
        [*model.parameters(), weight], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    per_epoch = math.ceil(len(texts) / config.batch_size)
    total = config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _schedule(s, total, config.warmup_share)
    )
    order = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    began = time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        epoch_loss = 0.0
        for batch in torch.randperm(len(texts), generator=order).split(config.batch_size):
            rows = batch.tolist()
            features = _preprocess(model, [texts[i] for i in rows])
            features = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()
            }
            z = F.normalize(model(features)["sentence_embedding"], dim=-1)
            logits = config.scale * z @ F.normalize(weight, dim=-1).T
            loss = F.cross_entropy(logits, y[batch.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            epoch_loss += float(loss.detach()) * len(rows)
        losses.append(epoch_loss / len(texts))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {
        **config.to_dict(),
        "rows": len(texts),
        "steps": total,
        "seconds": round(time.perf_counter() - began, 1),
        "loss_first_epoch": round(losses[0], 4),
        "loss_last_epoch": round(losses[-1], 4),
        "base_encoder": "all-MiniLM-L6-v2" if encoder == PACKAGED else Path(path).name,
    }
