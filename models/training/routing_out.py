"""The routing config ``llm-router train --write-config`` writes beside the artifact: the
trained models with their data costs, the served operating point, and, from the config
the data was collected with (``train --config``), each model's upstream and prices, so
the file serves in proxy mode as written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from models.core.routing_config import RoutingConfig

# per-model fields taken from the base config: where and how to call the model, its prices
UPSTREAM_FIELDS = (
    "description",
    "base_url",
    "api_key_env",
    "upstream_model",
    "headers",
    "timeout_s",
    "retry_on_timeout",
    "input_price_per_1m",
    "output_price_per_1m",
    "cached_input_price_per_1m",
)


def missing_models(base: RoutingConfig, models: Sequence[str]) -> list[str]:
    """The trained models the base config does not define."""
    known = set(base.model_names)
    return [m for m in models if m not in known]


def _model_entry(
    name: str, cost: float, vision: bool, base: RoutingConfig | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "cost": cost, "threshold": 0.5, "vision": vision}
    if base is None:
        return entry
    model = base.model(name)
    dumped = model.model_dump(exclude_unset=True)
    for key in UPSTREAM_FIELDS:
        if key in dumped and dumped[key] not in (None, {}, ""):
            entry[key] = dumped[key]
    entry["vision"] = vision or model.vision
    return entry


def _served(recommended: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``auto`` section and one header line saying what it serves."""
    decision = recommended.get("decision") or {}
    entries = recommended.get("by_budget", {})
    routers = {b: v["router"] for b, v in entries.items() if v.get("router")}
    auto: dict[str, Any] = {"artifact": ".", "policy": "utility"}
    if decision.get("mode") == "single":
        auto["cost_weight"] = 0.0
        return auto, f"# serves: always {decision['model']} (training chose the single model)\n"
    budgets = [b for b in routers if b != "none"]
    primary = decision.get("primary_budget")
    if budgets:
        served = str(primary) if primary in budgets else budgets[-1]
        auto["budget_per_1k"] = float(served)
        return auto, f"# serves: the <= {served}/1k operating point (auto.budget_per_1k)\n"
    weights = [v["cost_weight"] for v in routers.values()]
    auto["cost_weight"] = round(weights[-1], 6) if weights else 0.0
    return auto, f"# serves: cost_weight {auto['cost_weight']:g}\n"


def _point_lines(recommended: dict[str, Any]) -> str:
    entries = recommended.get("by_budget", {})
    lines = []
    for budget, entry in entries.items():
        router = entry.get("router")
        if not router:
            continue
        pick = entry.get("pick")
        alpha = f", alpha {pick['alpha']:g}" if pick else ""
        fraction = entry.get("fraction")
        share = f" ({fraction:g} x the best model's cost)" if fraction is not None else ""
        lines.append(
            f"#   <= {budget}/1k{share}: cost_weight {router['cost_weight']:.6g}{alpha}; "
            f"validation {router['quality']:.3f} at {router['cost_per_1k']:.4g}/1k\n"
        )
    return "".join(lines)


def write_routing_config(
    path: Path,
    models: Sequence[str],
    model_costs: np.ndarray | None,
    recommended: dict[str, Any],
    vision_models: Sequence[str] = (),
    base: RoutingConfig | None = None,
) -> Path:
    """A routing config for the artifact in the same directory (``auto.artifact: .``);
    ``base`` (the config the data was collected with) gives upstreams and prices."""
    import yaml

    if base is not None and (missing := missing_models(base, models)):
        raise ValueError(f"models {missing} are trained but not in the base routing config")
    auto, serves = _served(recommended)
    data: dict[str, Any] = {
        "models": [
            _model_entry(
                m,
                round(float(model_costs[j]), 6) if model_costs is not None else 1.0,
                m in vision_models,
                base,
            )
            for j, m in enumerate(models)
        ],
        "auto": auto,
    }
    if base is not None:  # fallbacks that name trained models (a vision one keeps vision)
        for key in ("fallback_model", "vision_fallback_model"):
            value = getattr(base, key)
            if value in models:
                data[key] = value
    header = (
        "# Routing config for the router artifact in this directory (written by llm-router\n"
        "# train --write-config). cost: mean USD per 1k prompts in the training data.\n"
        + serves
        + "# Operating points chosen on validation (set auto.budget_per_1k to another one to\n"
        "# move, or run llm-router calibrate; a request can still override cost_weight with\n"
        "# the router.cost_weight extension field):\n" + _point_lines(recommended)
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
