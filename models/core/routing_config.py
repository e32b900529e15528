"""The routing config file (YAML): candidate models, intents, auto-strategy artifact.

Validated with pydantic; every error names the key path and, where YAML knows it, the
line, so a typo fails at startup instead of mis-routing traffic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.core.errors import ConfigError

OTHER_INTENT = "other"


class ModelConfig(BaseModel):
    """One candidate model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    cost: float = Field(
        1.0,
        ge=0.0,
        description="What the strategies rank by (only ratios matter). Left out while both "
        "prices are set: USD per 1k requests of the config's typical_request token mix.",
    )
    input_price_per_1m: float | None = Field(
        None, ge=0.0, description="USD per million prompt tokens, as the provider lists it."
    )
    output_price_per_1m: float | None = Field(
        None, ge=0.0, description="USD per million completion tokens, as the provider lists it."
    )
    cached_input_price_per_1m: float | None = Field(
        None,
        ge=0.0,
        description="USD per million cached prompt tokens (prompt_tokens_details."
        "cached_tokens), where the provider discounts them; unset: the input price.",
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    vision: bool = False
    description: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    timeout_s: float | None = Field(None, gt=0.0)
    headers: dict[str, str] = Field(default_factory=dict)
    retry_on_timeout: bool = Field(
        False,
        strict=True,
        description="Proxy: fall back to the next model also after a read timeout or a "
        "connection lost once the request was sent (the upstream may have done, and "
        "billed, the work). Off: such a failure answers 504/502.",
    )

    @model_validator(mode="after")
    def _both_prices(self) -> ModelConfig:
        priced = (self.input_price_per_1m is None, self.output_price_per_1m is None)
        if priced[0] != priced[1]:
            raise ValueError(
                f"model '{self.name}': set both input_price_per_1m and output_price_per_1m "
                "(USD per million tokens), or neither"
            )
        if self.cached_input_price_per_1m is not None and priced[0]:
            raise ValueError(
                f"model '{self.name}': cached_input_price_per_1m needs input_price_per_1m "
                "and output_price_per_1m"
            )
        return self

    @property
    def priced(self) -> bool:
        """Whether token prices are configured (costs in USD can be counted)."""
        return self.input_price_per_1m is not None and self.output_price_per_1m is not None


class IntentConfig(BaseModel):
    """One intent: what it means, how users phrase it, which model answers it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)
    model: str = Field(min_length=1)
    requires: list[Literal["image", "previous_answer"]] = Field(
        default_factory=list,
        description="Only consider this intent when the conversation has an image / an "
        "assistant answer before the latest user turn.",
    )


class AutoConfig(BaseModel):
    """The auto strategy's artifact and selection policy."""

    model_config = ConfigDict(extra="forbid")

    artifact: str | None = None
    policy: Literal["threshold_cost", "utility"] = "threshold_cost"
    cost_weight: float = Field(0.0, ge=0.0)
    budget_per_1k: float | None = Field(
        None,
        gt=0.0,
        description="Serve the artifact's operating point for this $/1k budget (one of the "
        "budgets it was trained for): that budget's shrinkage alpha and cost_weight, both "
        "chosen on validation. Replaces cost_weight, so set one or the other.",
    )

    @model_validator(mode="after")
    def _one_cost_setting(self) -> AutoConfig:
        if self.budget_per_1k is not None and "cost_weight" in self.model_fields_set:
            raise ValueError(
                "auto: set budget_per_1k (which takes the budget's cost_weight from the "
                "artifact) or cost_weight, not both"
            )
        return self


def request_cost_per_1k(model: ModelConfig, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for 1,000 requests of this token mix at the model's prices."""
    assert model.input_price_per_1m is not None and model.output_price_per_1m is not None
    per_request = prompt_tokens * model.input_price_per_1m
    per_request += completion_tokens * model.output_price_per_1m
    return per_request / 1e6 * 1000


class TypicalRequest(BaseModel):
    """The token mix that turns per-token prices into one relative ``cost`` per model."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(1000, ge=0)
    completion_tokens: int = Field(250, ge=0)


class RoutingConfig(BaseModel):
    """The whole routing config file."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelConfig] = Field(min_length=1)
    typical_request: TypicalRequest = Field(
        default_factory=lambda: TypicalRequest(),
        description="Token mix for costs derived from prices (models that set both prices "
        "and no cost): cost = USD per 1k such requests.",
    )
    intents: list[IntentConfig] = Field(default_factory=list)
    auto: AutoConfig = Field(default_factory=lambda: AutoConfig())
    fallback_model: str | None = None
    vision_fallback_model: str | None = None
    fallback_order: Literal["cheapest", "strongest"] = Field(
        "cheapest",
        description="Proxy: the order the other capable models (eligible: not excluded, "
        "vision when the conversation has images) are tried in when the chosen one fails. "
        "cheapest: lowest cost first (auto: models that reach their threshold, cheapest "
        "first, then the most probable); strongest: intent by highest cost first, auto by "
        "highest predicted probability first.",
    )
    intent_classifier: str | None = Field(
        None,
        description="Directory of a trained intent head (llm-router train-intents), relative "
        "to this file; the embedding backend classifies with it instead of nearest examples.",
    )
    examples_file: str | None = Field(
        None,
        description="JSONL of extra intent examples ({'text' or 'messages', 'intent'}), "
        "relative to this file; added to the intents' examples.",
    )
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_references(self) -> RoutingConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: duplicate model name(s) {dupes}")
        known = set(names)
        for i, intent in enumerate(self.intents):
            if intent.model not in known:
                raise ValueError(
                    f"intents[{i}].model: intent '{intent.name}' maps to unknown model "
                    f"'{intent.model}' (configured models: {sorted(known)})"
                )
        inames = [it.name for it in self.intents]
        dupes = sorted({n for n in inames if inames.count(n) > 1})
        if dupes:
            raise ValueError(f"intents: duplicate intent name(s) {dupes}")
        for key in ("fallback_model", "vision_fallback_model"):
            value = getattr(self, key)
            if value is not None and value not in known:
                raise ValueError(f"{key}: unknown model '{value}' (configured: {sorted(known)})")
        vfb = self.vision_fallback_model
        if vfb is not None and not self.model(vfb).vision:
            raise ValueError(f"vision_fallback_model: model '{vfb}' has vision: false")
        mix = self.typical_request
        for m in self.models:  # prices and no explicit cost: cost from the typical mix
            if m.priced and "cost" not in m.model_fields_set:
                m.cost = request_cost_per_1k(m, mix.prompt_tokens, mix.completion_tokens)
        return self

    # -- lookups ---------------------------------------------------------------------
    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def default_model(self) -> str:
        """The model for 'nothing else applies': fallback_model, the 'other' intent's
        model, or the cheapest model."""
        if self.fallback_model:
            return self.fallback_model
        for intent in self.intents:
            if intent.name == OTHER_INTENT:
                return intent.model
        return min(self.models, key=lambda m: m.cost).name

    def vision_model(self) -> str | None:
        """The model for image requests whose choice cannot see images."""
        if self.vision_fallback_model:
            return self.vision_fallback_model
        vision = [m for m in self.models if m.vision]
        return min(vision, key=lambda m: m.cost).name if vision else None

    def resolve_path(self, value: str) -> Path:
        """Resolve a path from the file relative to the file's directory."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a key path in YAML text (for error messages)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    mark = node.start_mark  # a mapping entry's line is its key's (`intent:`), not its value's
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not match:
                break
            mark, node = match[0][0].start_mark, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return int(mark.line) + 1


# cross-reference errors come from the model validator (loc is empty) and start with
# the key they are about, e.g. "intents[0].model: ..."; recover that key for its line
_KEY_PREFIX = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): ")


def _key_loc(key: str) -> tuple[Any, ...]:
    loc: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_]\w*)(?:\[(\d+)\])?", key):
        loc.append(name)
        if index:
            loc.append(int(index))
    return tuple(loc)


def _format_errors(text: str, exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors()[:10]:
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and (match := _KEY_PREFIX.match(msg)):
            loc, msg = _key_loc(match.group(1)), msg[match.end() :]
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc)
        key = key.replace(".[", "[") or "(top level)"
        line = _line_of(text, loc)
        where = f" (line {line})" if line else ""
        lines.append(f"  {key}{where}: {msg}")
    return f"invalid routing config {path}:\n" + "\n".join(lines)


def parse_routing_config(text: str, path: Path) -> RoutingConfig:
    """Parse and validate YAML text; raise ConfigError naming the bad key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"routing config {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"routing config {path}: expected a mapping with 'models:' at the top")
    try:
        config = RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(text, exc, path)) from None
    config.source = path.resolve()
    _check_files(config, text, path)
    return config


def _check_files(config: RoutingConfig, text: str, path: Path) -> None:
    """Files the config points at must exist (resolved relative to the config file)."""
    for key in ("intent_classifier", "examples_file"):
        value = getattr(config, key)
        if value is None:
            continue
        target = config.resolve_path(value)
        if not target.exists():
            line = _line_of(text, (key,))
            where = f" (line {line})" if line else ""
            raise ConfigError(
                f"invalid routing config {path}:\n  {key}{where}: '{value}' does not exist "
                f"(resolved to {target})"
            )


def load_routing_config(path: Path | str) -> RoutingConfig:
    """Read, parse and validate the routing config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read routing config {path}: {exc.strerror}") from None
    return parse_routing_config(text, path)
