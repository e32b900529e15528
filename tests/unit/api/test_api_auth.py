"""API keys: when ROUTER_API_KEYS is set, the API needs a bearer token; probes do not."""

from __future__ import annotations

import pytest

from tests.helpers import app_client, make_settings, user

CHAT = "/v1/chat/completions"
BODY = {"messages": [user("hi")]}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "k1"},
        {"authorization": "Basic k1"},
        {"authorization": "Bearer k1x"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic", "prefix"],
)
@pytest.mark.parametrize("method,path", [("POST", CHAT), ("GET", "/v1/models")])
async def test_missing_or_wrong_key_is_401(headers: dict, method: str, path: str) -> None:
    async with app_client(make_settings(api_keys=["k1", "k2"])) as client:
        resp = await client.request(method, path, json=BODY, headers=headers)
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", ["k1", "k2"])
async def test_right_key_is_accepted(key: str) -> None:
    async with app_client(make_settings(api_keys=["k1", "k2"])) as client:
        chat = await client.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
        models = await client.get("/v1/models", headers={"authorization": f"bearer {key}"})
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "gpt-5-chat"
    assert models.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_probes_and_metrics_need_no_key(path: str) -> None:
    async with app_client(make_settings(api_keys=["k1"])) as client:
        resp = await client.get(path)
    assert resp.status_code == 200


async def test_no_keys_configured_means_no_auth() -> None:
    async with app_client(make_settings(api_keys=[])) as client:
        resp = await client.post(CHAT, json=BODY)
    assert resp.status_code == 200
