"""Train the router MLP on embedded conversations with per-model quality scores.

Scores (0..1) are thresholded into labels, or used as soft BCE targets. A seeded random
validation split drives early stopping, which restores the best epoch's weights.
Returns the model plus a metrics dict (val loss, per-model AUC, epochs, and a
validation sweep of ``cost_weight`` when costs are known) for the artifact manifest.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from models.evaluation.metrics import per_model_auc
from models.routers.mlp import MLPConfig, Norm, RouterMLP


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyperparameters (stored in the manifest)."""

    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    norm: Norm = "layernorm"
    members: int = 1
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    soft_labels: bool = False
    label_threshold: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data


@dataclass(slots=True)
class TrainResult:
    """The trained model (best epoch restored), the split, and what was measured."""

    model: RouterMLP
    train_idx: np.ndarray
    val_idx: np.ndarray
    metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs (training only; serving never reseeds)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (train, val) split; at least one row in each when n >= 2."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and n >= 2 else 0), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def targets(scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """BCE targets: the scores themselves (soft) or scores >= threshold (hard)."""
    if cfg.soft_labels:
        return np.clip(scores, 0.0, 1.0).astype(np.float32)
    return (scores >= cfg.label_threshold).astype(np.float32)


def _loss(model: RouterMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)  # [members, batch, n_out]
    return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits))


def _evaluate(model: RouterMLP, x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
    model.eval()
    with torch.inference_mode():
        probs = model.probabilities(x)
        loss = F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), y).item()
    return loss, probs.numpy()


def train_router(
    x: np.ndarray,
    scores: np.ndarray,
    models: Sequence[str],
    cfg: TrainConfig,
    progress: bool = False,
) -> TrainResult:
    """Train on ``x`` [n, dim] against ``scores`` [n, len(models)]; early stopping on val."""
    seed_everything(cfg.seed)
    train_idx, val_idx = split_indices(len(x), cfg.val_fraction, cfg.seed)
    y = targets(scores, cfg)
    xt, yt = torch.from_numpy(x[train_idx]).float(), torch.from_numpy(y[train_idx])
    has_val = len(val_idx) > 0
    xv = torch.from_numpy(x[val_idx]).float() if has_val else xt
    yv = torch.from_numpy(y[val_idx]) if has_val else yt
    mlp_cfg = MLPConfig(x.shape[1], len(models), cfg.hidden, cfg.dropout, cfg.norm, cfg.members)
    model = RouterMLP(mlp_cfg)
    model.set_standardizer(xt.mean(dim=0), xt.std(dim=0) if len(xt) > 1 else torch.ones(x.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    best_loss, best_state, best_epoch, bad, history = float("inf"), None, 0, 0, []
    bar = _progress(cfg.epochs, progress)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if cfg.norm == "batchnorm" and len(batch) < 2:
                continue
            opt.zero_grad()
            _loss(model, xt[batch], yt[batch]).backward()
            opt.step()
        val_loss, _ = _evaluate(model, xv, yv)
        history.append(round(val_loss, 5))
        if val_loss < best_loss - 1e-5:
            best_loss, best_state, best_epoch, bad = (
                val_loss,
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            bad += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_loss=f"{val_loss:.4f}", best=best_epoch)
        if bad >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    val_loss, val_probs = _evaluate(model, xv, yv)
    metrics: dict[str, Any] = {
        "val_loss": round(val_loss, 5),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "val_loss_history": history,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "val_auc": _rounded(per_model_auc(scores[val_idx], val_probs, models)) if has_val else {},
    }
    return TrainResult(model, train_idx, val_idx, metrics)


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in values.items()}


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="training", unit="epoch")


def predict(model: RouterMLP, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Probabilities [n, n_out] for embedded rows."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(x[start : start + batch_size]).float()
            out.append(model.probabilities(chunk).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.n_out), dtype=np.float32)
