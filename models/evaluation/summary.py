"""Human-readable summaries of training and evaluation reports (what the CLI prints)."""

from __future__ import annotations

from typing import Any


def print_quality(report: dict[str, Any]) -> None:
    pol, base = report["policy"], report["baselines"]
    best = base["single"][base["best"]]
    lo, hi = pol["quality_ci95"]
    print(
        f"{report['examples']} prompts, policy {pol['name']} (cost_weight {pol['cost_weight']}"
        + (f", budget {pol['budget_per_1k']:g}/1k" if pol.get("budget_per_1k") else "")
        + "):"
        f" quality {pol['quality']:.4f} [95% {lo:.3f}-{hi:.3f}] at {pol['cost_per_1k']:.4f}/1k"
    )
    print(
        f"  best single {base['best']} {best['quality']:.4f} at {best['cost_per_1k']:.4f}/1k; "
        f"oracle {base['oracle']['quality']:.4f} at {base['oracle']['cost_per_1k']:.4f}/1k"
    )
    vs = report.get("vs_best_single")
    if vs:
        print(
            f"  vs best single at <= its cost ({vs['model']}, {vs['quality']:.4f}): gain "
            f"{vs['gain']:+.4f} [95% {vs['gain_ci95'][0]:+.3f} to {vs['gain_ci95'][1]:+.3f}]"
        )
    decision = (report.get("training_decision") or {}).get("decision")
    if decision:
        what = (
            f"router {decision['router']} (alpha {decision['alpha']}, prior "
            f"{decision.get('prior', 'global')})"
            if decision["mode"] == "router"
            else f"single model {decision['model']}"
        )
        print(f"  artifact decision (on validation): {what}")
    by_task = (report.get("route_by_task") or {}).get("best_under_budget", {})
    on_train = (report.get("route_by_task") or {}).get("chosen_on_train", {})
    for budget, point in (report.get("operating_points") or {}).items():
        chosen = "cost_weight" + (f", alpha {point['alpha']:g}" if "alpha" in point else "")
        line = (
            f"  budget {budget}/1k ({chosen} from validation): {point['quality']:.4f} at "
            f"{point['cost_per_1k']:.4f}/1k"
        )
        lo, hi = point["quality_ci95"]
        line += f" [95% {lo:.3f}-{hi:.3f}]"
        task = by_task.get(budget)
        if task:
            line += f"; route-by-task {task['quality']:.4f} at {task['cost_per_1k']:.4f}/1k"
        trained = on_train.get(budget)
        if trained:
            line += (
                f" (chosen on train: {trained['quality']:.4f} at {trained['cost_per_1k']:.4f}/1k)"
            )
        vs = point.get("vs_route_by_task_train")
        if vs:
            glo, ghi = vs["gain_ci95"]
            line += f"; gain over it {vs['gain']:+.4f} [95% {glo:+.3f} to {ghi:+.3f}]"
        print(line)
    print(
        f"  APGR {report['apgr']}, latency p50 {report['latency']['p50_ms']} ms, "
        f"p95 {report['latency']['p95_ms']} ms"
    )


def print_intents(report: dict[str, Any]) -> None:
    lo, hi = report["accuracy_ci95"]
    print(
        f"accuracy {report['accuracy']:.3f} [95% {lo:.3f}-{hi:.3f}] (model "
        f"{report['model_accuracy']:.3f}) on {report['examples']} conversations; "
        f"p50 {report['latency']['p50_ms']:.1f} ms, p95 {report['latency']['p95_ms']:.1f} ms"
    )
    if report.get("out_of_scope_recall") is not None:
        print(
            f"in-scope accuracy {report['in_scope_accuracy']:.3f}, out-of-scope recall "
            f"{report['out_of_scope_recall']:.3f}"
        )
    head = report.get("intent_head")
    if head:
        print(
            f"intent head: {head['labels']} labels, features {head['features']} "
            f"({head['lexical_features']} n-grams), other-threshold {head['threshold']:.3f}, "
            f"chosen on {head['validation'] or 'no validation'}"
        )
    for label, row in report["per_intent"].items():
        print(
            f"  {label:<22} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"n={row['support']}"
        )


def print_training(report: dict[str, Any], out: str) -> None:
    rec = report["recommended"]
    decision = rec["decision"]
    what = (
        f"router {decision['router']} (alpha {decision['alpha']}, prior "
        f"{decision.get('prior', 'global')})"
        if decision["mode"] == "router"
        else f"single model {decision['model']} (router {decision['router']} did not beat it)"
    )
    print(f"artifact written to {out}: {what}; validation {rec['validation']}")
    for budget, entry in rec["by_budget"].items():
        r, s = entry["router"], entry["single"]
        line = f"  budget {budget}/1k:"
        if entry.get("pick") and decision["mode"] == "router":
            line += f" alpha {entry['pick']['alpha']:g},"
        if r:
            line += f" router {r['quality']:.3f} at {r['cost_per_1k']:.3f}/1k"
        if s:
            line += f"; best single {s['model']} {s['quality']:.3f} at {s['cost_per_1k']:.3f}/1k"
        if "gain_confidence" in entry:
            line += f"; P(gain>0) {entry['gain_confidence']:.2f}"
        print(line)
