"""Nested cross-validation of the auto router's selection rule on RouterBench train only.

Outer folds split ``train.jsonl``; on each outer-train part the inner cross-validation is
run exactly as ``llm-router train`` runs it (candidates, priors, folds, seed), and every
candidate and prior is refitted on the outer-train rows and predicted on the outer-test
rows. ``--stage predict`` caches those predictions per outer fold (the slow part: 5-member
MLPs); ``--stage compare`` then applies the selection rules (one (router, prior, alpha)
for all budgets vs one per budget) and scores each outer-test fold at every budget,
against route-by-task with tables chosen on the outer-train rows. Test data is never read.

    PYTHONPATH=. python -m bench.routing.nested_cv_routing --stage predict
    PYTHONPATH=. python -m bench.routing.nested_cv_routing --stage compare \
        --out bench/results/x.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

from app.cli.args import DEFAULT_BUDGETS, floats
from app.cli.main import load_settings
from app.cli.replay import conversation_of, read_jsonl
from models.encoders.cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoders.conversation import build_encoder
from models.evaluation.data import score_matrix, tasks_of
from models.evaluation.metrics import utility_choices
from models.routers.registry import KINDS
from models.routers.task_prior import fit_prior, prior_probabilities
from models.training import selection as router_select
from models.training.candidates import (
    fit_final,
    folds_of,
    prior_names,
    validation_predictions,
    validation_priors,
)
from models.training.fit_mlp import TrainConfig, predict, targets
from models.training.job import train_route_by_task
from models.training.selection import GLOBAL, PER_1K, choose, shrink

DATA = "bench/data/routerbench/train.jsonl"
CACHE = Path(".cache/nested-cv")


def load(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    rows = list(read_jsonl(Path(path)))
    models = list(rows[0]["scores"])
    scores, costs = score_matrix(rows, models, path)
    assert costs is not None
    settings = load_settings()

    async def convs() -> list[Any]:
        return [await conversation_of(r, settings) for r in rows]

    encoder = build_encoder("minilm", None, "cpu", 128)
    x = embed_cached(encoder, asyncio.run(convs()), DEFAULT_CACHE_DIR)
    tasks = tasks_of(rows)
    assert tasks is not None
    return x, scores, costs, tasks, models


def predict_fold(
    k: int,
    outer_test: np.ndarray,
    x: np.ndarray,
    scores: np.ndarray,
    tasks: list[str],
    models: list[str],
    cfg: TrainConfig,
) -> None:
    """Inner CV predictions and outer-test predictions of every candidate and prior."""
    train = np.setdiff1d(np.arange(len(x)), outer_test)
    xt, st, tt = x[train], scores[train], [tasks[i] for i in train]
    val_sets = folds_of(len(xt), 5, cfg.val_fraction, cfg.seed)
    rows, candidates = validation_predictions(xt, st, models, KINDS, cfg, val_sets)
    names = [p for p in prior_names(len(xt), tt, ("task", "cluster")) if p != GLOBAL]
    priors = validation_priors(xt, st, tt, names, cfg, val_sets)
    y = targets(st, cfg)
    test_candidates = {}
    for name in candidates:
        model, _ = fit_final(name, xt, st, models, cfg)
        test_candidates[name] = predict(model, x[outer_test])
    test_priors = {
        name: prior_probabilities(fit_prior(name, xt, y, tt, cfg.seed), x[outer_test])
        for name in names
    }
    np.savez(
        CACHE / f"fold{k}.npz",
        outer_test=outer_test,
        inner_rows=rows,
        **{f"val/{n}": v for n, v in candidates.items()},
        **{f"valprior/{n}": v for n, v in priors.items()},
        **{f"test/{n}": v for n, v in test_candidates.items()},
        **{f"testprior/{n}": v for n, v in test_priors.items()},
    )


def _split(data: Any, prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): data[k] for k in data.files if k.startswith(prefix)}


def compare(
    x: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    tasks: list[str],
    models: list[str],
    cfg: TrainConfig,
    budgets: list[float],
    n_outer: int,
) -> dict[str, Any]:
    rules = {
        "one_for_all": {"per_budget": None},
        "alpha_per_budget": {"per_budget": "alpha"},
        "prior_alpha_per_budget": {"per_budget": "prior_alpha"},
        "all_per_budget": {"per_budget": "all"},
    }
    per_row: dict[str, dict[str, np.ndarray]] = {
        r: {f"{b:g}": np.zeros(len(x)) for b in budgets} for r in [*rules, "route_by_task"]
    }
    cost_row = {r: {f"{b:g}": np.zeros(len(x)) for b in budgets} for r in per_row}
    picks: list[dict[str, Any]] = []
    for k in range(n_outer):
        data = np.load(CACHE / f"fold{k}.npz")
        test = data["outer_test"]
        train = np.setdiff1d(np.arange(len(x)), test)
        rows = train[data["inner_rows"]]
        cand, vpri = _split(data, "val/"), _split(data, "valprior/")
        tcand, tpri = _split(data, "test/"), _split(data, "testprior/")
        y = targets(scores[train], cfg)
        model_costs = costs[train].mean(axis=0) * PER_1K
        prior = y.mean(axis=0)
        tpri[GLOBAL] = np.tile(prior, (len(test), 1))
        fold_picks: dict[str, Any] = {"fold": k}
        # the (router, prior, alpha) table is the same for every rule: build it once
        levels = [b / PER_1K for b in budgets]
        table = router_select._table(
            cand, {GLOBAL: prior, **vpri}, scores[rows], costs[rows], model_costs, levels
        )
        for rule, kw in rules.items():
            with patch.object(router_select, "_table", lambda *a, _t=table, **k: _t):
                chosen = choose(
                    cand,
                    prior,
                    scores[rows],
                    costs[rows],
                    model_costs,
                    models,
                    budgets,
                    0.9,
                    vpri,
                    **kw,
                )
            print(f"fold {k} {rule}: {chosen['decision']}", flush=True)
            fold_picks[rule] = {}
            for b in budgets:
                key = f"{b:g}"
                d = chosen["by_budget"][key]
                pick = d.get("pick") or chosen["decision"]
                probs = shrink(tcand[pick["router"]], tpri[pick["prior"]], pick["alpha"])
                lam = d["router"]["cost_weight"]
                ch = utility_choices(probs, model_costs, lam)
                per_row[rule][key][test] = scores[test, ch]
                cost_row[rule][key][test] = costs[test, ch]
                fold_picks[rule][key] = {
                    "router": pick["router"],
                    "prior": pick["prior"],
                    "alpha": pick["alpha"],
                    "cost_weight": lam,
                    "mode": chosen["decision"]["mode"],
                }
        tables = train_route_by_task(
            [tasks[i] for i in train], scores[train], costs[train], models, budgets
        )
        for b in budgets:
            key = f"{b:g}"
            table = tables[key]["table"]
            ch = np.array([models.index(table[tasks[i]]) for i in test])
            per_row["route_by_task"][key][test] = scores[test, ch]
            cost_row["route_by_task"][key][test] = costs[test, ch]
        picks.append(fold_picks)
    rng = np.random.default_rng(0)
    boot = rng.integers(0, len(x), size=(2000, len(x)))

    def ci(v: np.ndarray) -> list[float]:
        m = v[boot].mean(axis=1)
        return [round(float(np.quantile(m, 0.025)), 4), round(float(np.quantile(m, 0.975)), 4)]

    out: dict[str, Any] = {"by_budget": {}, "picks": picks}
    for b in budgets:
        key = f"{b:g}"
        rbt = per_row["route_by_task"][key]
        entry: dict[str, Any] = {
            "route_by_task": {
                "quality": round(float(rbt.mean()), 4),
                "cost_per_1k": round(float(cost_row["route_by_task"][key].mean() * PER_1K), 4),
            }
        }
        for rule in rules:
            v = per_row[rule][key]
            entry[rule] = {
                "quality": round(float(v.mean()), 4),
                "cost_per_1k": round(float(cost_row[rule][key].mean() * PER_1K), 4),
                "gain_vs_route_by_task": round(float((v - rbt).mean()), 4),
                "gain_ci": ci(v - rbt),
                "fold_gains": [
                    round(float((v - rbt)[d["outer_test"]].mean()), 4)
                    for d in (np.load(CACHE / f"fold{i}.npz") for i in range(n_outer))
                ],
            }
            if rule != "one_for_all":
                diff = v - per_row["one_for_all"][key]
                entry[rule]["diff_vs_one_for_all"] = round(float(diff.mean()), 4)
                entry[rule]["diff_ci"] = ci(diff)
        out["by_budget"][key] = entry
    for rule in rules:
        v = np.mean([per_row[rule][f"{b:g}"] for b in budgets], axis=0)
        out.setdefault("mean_over_budgets", {})[rule] = round(float(v.mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["predict", "compare"], required=True)
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--folds", type=ints_arg, default=None, help="outer folds to predict")
    ap.add_argument("--out")
    args = ap.parse_args()
    cfg = TrainConfig(members=5)
    budgets = floats(DEFAULT_BUDGETS)
    x, scores, costs, tasks, models = load(DATA)
    outer = np.random.default_rng(12345).permutation(len(x))
    parts = [np.sort(p) for p in np.array_split(outer, args.outer)]
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.stage == "predict":
        for k in args.folds if args.folds is not None else range(args.outer):
            start = time.perf_counter()
            predict_fold(k, parts[k], x, scores, tasks, models, cfg)
            print(f"outer fold {k}: {time.perf_counter() - start:.0f}s", flush=True)
        return
    result = compare(x, scores, costs, tasks, models, cfg, budgets, args.outer)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "picks"}, indent=2))


def ints_arg(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


if __name__ == "__main__":
    main()
