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


def _budget_label(budget: str, entry: dict[str, Any]) -> str:
    if budget == "none":
        return "no budget"
    fraction = entry.get("fraction")
    return f"budget {budget}/1k" + (f" ({fraction:g}x)" if fraction is not None else "")


def _evidence(entry: dict[str, Any]) -> str:
    """The tests behind a point's verdict: gain over the single-model baseline, and
    non-inferiority and saving against the best single model (one-sided bounds)."""
    parts = []
    if "gain_confidence" in entry and entry.get("baseline"):
        parts.append(f"P(gain>0) {entry['gain_confidence']:.2f} over {entry['baseline']['name']}")
    vs = entry.get("vs_best")
    if vs:
        parts.append(
            f"vs {vs['model']} {vs['quality_diff']:+.3f} (bound {vs['quality_diff_lcb']:+.3f}),"
            f" saving {vs['cost_saving']:.0%} (bound {vs['cost_saving_lcb']:.0%})"
        )
    return "; ".join(parts)


def _budget_line(budget: str, entry: dict[str, Any], decision: dict[str, Any]) -> str:
    """One operating point: what the router reaches within it (marked as not served when
    the artifact is a single model), the best single model it allows, the evidence."""
    router, single = entry.get("router"), entry.get("single")
    serving = decision["mode"] == "router"
    line = f"  {_budget_label(budget, entry)}: "
    if router:
        alpha = f", alpha {entry['pick']['alpha']:g}" if entry.get("pick") and serving else ""
        who = "router" if serving else "router (not served)"
        line += f"{who} {router['quality']:.3f} at {router['cost_per_1k']:.4g}/1k{alpha}"
    else:
        line += "no router point within it"
    if single:
        line += f"; best single {single['model']} {single['quality']:.3f} at "
        line += f"{single['cost_per_1k']:.4g}/1k"
    else:
        line += "; no single model within it"
    evidence = _evidence(entry) if router else ""
    if evidence:
        line += f"; {evidence}"
    if entry.get("wins"):
        line += f" [wins: {', '.join(entry['wins'])}]"
    if serving and budget == decision.get("primary_budget"):
        line += "  <- served"
    return line


WHY = {
    "superior": "beats every single model and random mix of them at its cost",
    "noninferior_cheaper": "as good as the best single model (within the margin) at a lower cost",
    "protection off": "--confidence 0: the raw router",
}


def print_training(report: dict[str, Any], out: str) -> None:
    """What ``llm-router train`` decided and why, one line per operating point."""
    rec = report["recommended"]
    decision = rec["decision"]
    serving = decision["mode"] == "router"
    what = (
        f"router {decision['router']} (alpha {decision['alpha']}, prior "
        f"{decision.get('prior', 'global')})"
        if serving
        else f"single model {decision['model']}"
    )
    print(f"artifact written to {out}: {what}; validation {rec['validation']}")
    points = rec.get("operating_points") or {}
    if points.get("fractions"):
        print(
            f"  operating points: fractions of {points['model']}'s mean cost "
            f"({points['cost_per_1k']:.4g}/1k)"
        )
    for budget, entry in rec["by_budget"].items():
        print(_budget_line(budget, entry, decision))
    served = rec["by_budget"].get(decision.get("primary_budget") or "", {})
    if serving and served.get("router"):
        why = "; ".join(WHY.get(w, w) for w in decision.get("why", []))
        r = served["router"]
        print(
            f"  serves {_budget_label(decision['primary_budget'], served)}: "
            f"{r['quality']:.3f} at {r['cost_per_1k']:.4g}/1k on validation ({why})"
        )
    elif not serving:
        margin = decision.get("margin")
        rule = f" within {margin:g}" if margin is not None else ""
        print(
            f"  serves always {decision['model']}: no operating point beat the single "
            f"models or matched the best one's quality{rule} at a lower cost "
            f"(confidence {decision['confidence_required']:g})"
        )
