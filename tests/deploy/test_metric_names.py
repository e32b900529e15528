"""Every metric the alert rules and the Grafana dashboard query is one the app exports.

Names come from the PromQL expressions (``_bucket``/``_count``/``_sum`` stripped) and are
compared with the families on a real app's ``/metrics`` after a routed request (families
with no samples yet still print their ``# TYPE`` line)."""

from __future__ import annotations

import json

from tests.deploy.files import DASHBOARD, metric_names_used
from tests.helpers import app_client


async def _exported() -> set[str]:
    async with app_client() as client:
        resp = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert resp.status_code == 200
        text = (await client.get("/metrics")).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line.startswith("llm_router_"):
            names.add(line.split("{")[0].split()[0])
    return names


async def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    used = metric_names_used()
    assert len(used) >= 10, used  # the parser found the expressions
    missing = used - await _exported()
    assert not missing, f"used in deploy/ but not exported by the app: {sorted(missing)}"


async def test_dashboard_covers_the_decision_and_upstream_metrics() -> None:
    used = metric_names_used()
    for name in (
        "llm_router_decisions_total",
        "llm_router_decision_duration_seconds",
        "llm_router_requests_total",
        "llm_router_rejected_total",
        "llm_router_batch_size",
        "llm_router_upstream_duration_seconds",
        "llm_router_upstream_ttfb_seconds",
        "llm_router_upstream_fallbacks_total",
        "llm_router_ready",
        "llm_router_cost_usd_total",
        "llm_router_baseline_cost_usd_total",
        "llm_router_request_cost_usd",
        "llm_router_tokens_total",
        "llm_router_usage_missing_total",
    ):
        assert name in used, name


def _panels() -> dict[str, list[str]]:
    dash = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}


def test_dashboard_plots_cost_per_model_per_request_and_savings() -> None:
    """docs/cost.md lists these panels; each plots what its title says."""
    panels = _panels()
    [by_model] = panels["Spend per hour by model"]
    assert "sum by (model) (rate(llm_router_cost_usd_total" in by_model
    actual, baseline = panels["Actual vs baseline spend per hour"]
    assert "rate(llm_router_cost_usd_total" in actual
    assert "rate(llm_router_baseline_cost_usd_total" in baseline
    [ratio] = panels["Savings ratio"]
    assert ratio.startswith("1 - sum(rate(llm_router_cost_usd_total")
    assert "/ sum(rate(llm_router_baseline_cost_usd_total" in ratio
    per_request = " ".join(panels["Cost per request by model"])
    assert "llm_router_request_cost_usd_sum" in per_request
    assert "llm_router_request_cost_usd_count" in per_request
