"""What every subcommand shares: settings from the environment plus command-line
overrides, with errors that name the variable."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.settings import Settings
from models.core.errors import ConfigError


def _env_name(loc: tuple[Any, ...]) -> str:
    return "ROUTER_" + "__".join(str(p).upper() for p in loc)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus CLI overrides; errors name the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [f"  {_env_name(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
