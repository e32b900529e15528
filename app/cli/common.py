"""What every ``llm-router`` command shares: settings with errors that name the variable,
the one-line usage error, and how a command fails."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from app.settings import Settings
from models.core.errors import ConfigError


class UsageError(Exception):
    """A file named on the command line cannot be used (one line, exit status 2)."""


def _env_name(loc: tuple[Any, ...]) -> str:
    return "ROUTER_" + "__".join(str(p).upper() for p in loc)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus CLI overrides; errors name the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [f"  {_env_name(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None


def fail(message: str, code: int = 2) -> int:
    print(f"llm-router: error: {message}", file=sys.stderr)
    return code
