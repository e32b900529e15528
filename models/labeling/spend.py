"""What a ``collect`` or ``label --judge`` run spent, per model: calls, errors, tokens,
dollars (usage at the routing config's prices, models/core/pricing.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.core.pricing import Usage


@dataclass(slots=True)
class ModelSpend:
    calls: int = 0  # finished calls (answered or failed), retries not counted
    errors: int = 0  # calls that ended without a usable answer
    attempts: int = 0  # HTTP exchanges, retries included
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    usd: float = 0.0
    unpriced: int = 0  # answered calls whose cost is unknown (no prices, or no usage)

    def to_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "attempts": self.attempts,
            **self.usage.to_dict(),
            "usd": self.usd,
            "unpriced_calls": self.unpriced,
        }


@dataclass(slots=True)
class Spend:
    """Running totals of one run, by model."""

    models: dict[str, ModelSpend] = field(default_factory=dict)

    def add(
        self, model: str, ok: bool, attempts: int, usage: Usage | None, cost: float | None
    ) -> None:
        entry = self.models.setdefault(model, ModelSpend())
        entry.calls += 1
        entry.errors += 0 if ok else 1
        entry.attempts += attempts
        if usage is not None:
            entry.usage = entry.usage + usage
        if cost is not None:
            entry.usd += cost
        elif ok:
            entry.unpriced += 1

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models.values())

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.models.values())

    @property
    def tokens(self) -> int:
        return sum(m.usage.total_tokens for m in self.models.values())

    @property
    def usd(self) -> float:
        return sum(m.usd for m in self.models.values())

    def table(self) -> list[str]:
        """One line per model and a total: calls, errors, tokens in/out, USD."""
        head = f"{'model':<24} {'calls':>7} {'errors':>7} {'in tokens':>11} {'out tokens':>11} "
        lines = [head + f"{'USD':>12}"]
        rows = list(self.models.items())
        total = ModelSpend(
            calls=self.calls,
            errors=self.errors,
            usage=sum((m.usage for _, m in rows), Usage(0, 0)),
            usd=self.usd,
            unpriced=sum(m.unpriced for _, m in rows),
        )
        for name, m in [*rows, ("total", total)]:
            usd = f"{m.usd:12.6f}" + (f" (+{m.unpriced} unpriced)" if m.unpriced else "")
            lines.append(
                f"{name:<24} {m.calls:>7} {m.errors:>7} {m.usage.prompt_tokens:>11,} "
                f"{m.usage.completion_tokens:>11,} {usd}"
            )
        return lines
