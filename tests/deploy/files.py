"""Reading the deployment files: ROUTER_* settings they set, PromQL they use."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "llm-router.json"
METRIC = re.compile(r"\bllm_router_[a-z0-9_]+")


def setting_names() -> set[str]:
    """Every ROUTER_* variable Settings reads (nested sections joined with ``__``)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names |= {f"ROUTER_{name}__{sub}".upper() for sub in ann.model_fields}
        else:
            names.add(f"ROUTER_{name}".upper())
    return names


def dockerfile_env(path: Path) -> dict[str, str]:
    """The ENV assignments of a Dockerfile (all stages), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            for word in shlex.split(line.strip()[4:]):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_manifests() -> Iterator[Path]:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield path


def k8s_container_env(doc: dict[str, Any]) -> dict[str, str]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for c in containers for e in c.get("env", []) if "value" in e}


def promql_exprs() -> list[str]:
    """Every PromQL expression in the alert rules and the Grafana dashboard."""
    exprs = [
        rule["expr"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    ]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return exprs


def metric_names_used() -> set[str]:
    """Metric names in the PromQL, without the histogram sample suffixes."""
    names = set()
    for expr in promql_exprs():
        for name in METRIC.findall(expr):
            names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names
