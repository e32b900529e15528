"""Task-level priors a router can use without a task field at serve time.

The prompt embeddings recognise the *task* (ARC / Winogrande / MBPP) very well but barely
predict which prompts of one task a model gets right. So the served probabilities can
lean on a per-task mean score instead of only the global per-model mean:

* :class:`TaskHeadPrior`: a softmax head over unit embeddings, trained on the rows'
  ``task`` / ``source`` field, gives P(task | x); the prior is ``P(task | x) @ task_means``.
* :class:`ClusterPrior`: k-means centroids of the training embeddings (no labels needed);
  the prior is the mean score of the nearest centroid's cluster.

Both are ``nn.Module``s with ``probabilities(x) -> [batch, n_models]`` whose tensors are
saved in the artifact's safetensors (prefix ``prior.``) and whose shape is recorded in the
manifest (``calibration.prior_model``). Fitting uses scikit-learn (training extra only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models.routers.knn import unit, unit_tensor

PriorKind = Literal["task", "cluster"]
SMOOTHING = 5.0  # pseudo-rows of the global mean added to each group's mean
CLUSTER_KS = (2, 4, 8, 16, 32)
MIN_ROWS_PER_CLUSTER = 10


@dataclass(frozen=True, slots=True)
class PriorConfig:
    """Shape of a task-level prior (stored in the manifest as ``calibration.prior_model``)."""

    kind: PriorKind
    in_dim: int
    n_out: int
    n_groups: int
    labels: list[str] = field(default_factory=list)  # task names (task head only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        kind = data["kind"]
        if kind not in ("task", "cluster"):
            raise ValueError(f"unknown prior kind {kind!r}")
        return cls(
            kind=kind,
            in_dim=int(data["in_dim"]),
            n_out=int(data["n_out"]),
            n_groups=int(data["n_groups"]),
            labels=[str(x) for x in data.get("labels", [])],
        )


class TaskHeadPrior(nn.Module):
    """``softmax(W unit(x) + b) @ means``: the predicted task's mean per-model score."""

    weight: torch.Tensor
    bias: torch.Tensor
    means: torch.Tensor

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("weight", torch.zeros(cfg.n_groups, cfg.in_dim))
        self.register_buffer("bias", torch.zeros(cfg.n_groups))
        self.register_buffer("means", torch.zeros(cfg.n_groups, cfg.n_out))

    def task_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        logits = unit_tensor(x) @ self.weight.T.to(x.dtype) + self.bias.to(x.dtype)
        return torch.softmax(logits, dim=1)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return self.task_probabilities(x) @ self.means.to(x.dtype)


class ClusterPrior(nn.Module):
    """The mean per-model score of the nearest centroid's cluster (cosine similarity)."""

    centroids: torch.Tensor
    means: torch.Tensor

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("centroids", torch.zeros(cfg.n_groups, cfg.in_dim))
        self.register_buffer("means", torch.zeros(cfg.n_groups, cfg.n_out))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        nearest = (unit_tensor(x) @ self.centroids.T.to(x.dtype)).argmax(dim=1)
        return self.means[nearest].to(x.dtype)


def build_prior(shape: dict[str, Any]) -> TaskHeadPrior | ClusterPrior:
    """An empty prior of the shape recorded in a manifest."""
    cfg = PriorConfig.from_dict(shape)
    return TaskHeadPrior(cfg) if cfg.kind == "task" else ClusterPrior(cfg)


def group_means(groups: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean of ``y`` [n, m], smoothed toward the overall mean by SMOOTHING rows."""
    overall = y.mean(axis=0)
    out = np.empty((n_groups, y.shape[1]), dtype=np.float64)
    for g in range(n_groups):
        sel = groups == g
        out[g] = (y[sel].sum(axis=0) + SMOOTHING * overall) / (sel.sum() + SMOOTHING)
    return out


def usable_tasks(tasks: Sequence[str] | None) -> bool:
    """A task head needs a label on every row and at least two tasks."""
    return tasks is not None and len(set(tasks)) >= 2


def cluster_ks(n: int) -> list[int]:
    """The k values worth trying for ``n`` training rows."""
    return [k for k in CLUSTER_KS if k * MIN_ROWS_PER_CLUSTER <= n]


def fit_task_head(
    x: np.ndarray, y: np.ndarray, tasks: Sequence[str], seed: int = 0
) -> TaskHeadPrior:
    """Logistic regression (multinomial) from unit embeddings to the task label."""
    from sklearn.linear_model import LogisticRegression

    labels = sorted(set(tasks))
    groups = np.array([labels.index(t) for t in tasks])
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(unit(x), groups)
    coef, intercept = clf.coef_, clf.intercept_
    if len(labels) == 2:  # sklearn's binary form: one row; softmax([0, z]) = sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    cfg = PriorConfig("task", x.shape[1], y.shape[1], len(labels), labels)
    model = TaskHeadPrior(cfg)
    model.weight.copy_(torch.from_numpy(coef.astype(np.float32)))
    model.bias.copy_(torch.from_numpy(intercept.astype(np.float32)))
    model.means.copy_(torch.from_numpy(group_means(groups, y, len(labels)).astype(np.float32)))
    return model.eval()


def fit_clusters(x: np.ndarray, y: np.ndarray, k: int, seed: int = 0) -> ClusterPrior:
    """k-means on unit embeddings; centroids kept unit length, groups by nearest centroid."""
    from sklearn.cluster import KMeans

    z = unit(x)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    centroids = unit(km.cluster_centers_.astype(np.float32))
    groups = (z @ centroids.T).argmax(axis=1)  # the assignment served, not k-means' own
    model = ClusterPrior(PriorConfig("cluster", x.shape[1], y.shape[1], k))
    model.centroids.copy_(torch.from_numpy(centroids))
    model.means.copy_(torch.from_numpy(group_means(groups, y, k).astype(np.float32)))
    return model.eval()


def fit_prior(
    name: str, x: np.ndarray, y: np.ndarray, tasks: Sequence[str] | None, seed: int = 0
) -> TaskHeadPrior | ClusterPrior:
    """The prior called ``name`` ("task" or "cluster-k<k>") fitted on these rows."""
    if name == "task":
        if tasks is None:
            raise ValueError("the task prior needs a task/source field on every row")
        return fit_task_head(x, y, tasks, seed)
    if name.startswith("cluster-k"):
        return fit_clusters(x, y, int(name.removeprefix("cluster-k")), seed)
    raise ValueError(f"unknown prior {name!r}")


def prior_probabilities(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """``model.probabilities`` on numpy rows (validation predictions use the served code)."""
    with torch.inference_mode():
        out: torch.Tensor = model.probabilities(torch.from_numpy(x).float())  # type: ignore[operator]
    return out.numpy().astype(np.float64)
