"""An unexpected failure inside a strategy is a generic 500 in OpenAI's shape that
leaks nothing; the strategy's own policy errors map to their documented statuses."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.server.factory import create_app
from models.core.errors import StrategyUnavailableError
from tests.fakes import FakeStrategy
from tests.helpers import make_settings, user, wait_ready


@pytest.mark.parametrize(
    "exc,status,code",
    [
        (KeyError("/srv/secret/path.bin"), 500, None),
        (StrategyUnavailableError("intent classifier unavailable (timeout)"), 503, "unavailable"),
    ],
    ids=["unexpected", "unavailable"],
)
async def test_strategy_errors(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, status: int, code: str | None
) -> None:
    async def broken(*args: object) -> None:
        raise exc

    monkeypatch.setattr(FakeStrategy, "route", broken)
    # Starlette re-raises after sending the 500 (so servers log it); take the response
    async with LifespanManager(create_app(make_settings())) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
            resp = await client.post("/v1/chat/completions", json={"messages": [user("hi")]})
            health = await client.get("/health")
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "/srv/secret" not in resp.text
    if status == 500:
        assert error["type"] == "server_error"
    assert health.status_code == 200  # the service keeps serving
