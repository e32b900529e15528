"""The playground page and its config endpoint (the browser test drives the page itself)."""

from __future__ import annotations

import re

from tests.helpers import app_client, make_settings


async def test_root_redirects_to_the_playground() -> None:
    async with app_client() as client:
        resp = await client.get("/", follow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["location"] == "/playground"


async def test_page_and_assets_are_served_with_a_strict_csp() -> None:
    async with app_client() as client:
        page = await client.get("/playground")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        # everything the page loads is served here: no CDN, no external font
        refs = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert refs and all(r.startswith("/playground/assets/") for r in refs), refs
        for ref in refs:
            asset = await client.get(ref)
            assert asset.status_code == 200, ref
            assert "http://" not in asset.text and "https://" not in asset.text
        js = await client.get("/playground/assets/playground.js")
        assert js.headers["content-type"].startswith("text/javascript")


async def test_unknown_asset_is_a_404_in_openai_shape() -> None:
    async with app_client() as client:
        for path in ("/playground/assets/../settings.py", "/playground/assets/secret.txt"):
            resp = await client.get(path)
            assert resp.status_code == 404, path
            assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


async def test_config_describes_models_and_intents_without_secrets() -> None:
    async with app_client() as client:
        resp = await client.get("/playground/config.json")
    assert resp.status_code == 200
    body = resp.json()
    assert body["mode"] == "recommend" and body["auth"] is False
    names = [m["name"] for m in body["models"]]
    assert "gpt-5-chat" in names
    assert any(m["vision"] for m in body["models"])
    assert all(set(m) == {"name", "vision", "cost", "threshold"} for m in body["models"])
    assert {"name": "chit_chat", "model": "nvidia/nvidia-nemotron-nano-9b-v2"} in body["intents"]
    assert "base_url" not in resp.text and "api_key" not in resp.text


async def test_config_needs_the_api_key_when_auth_is_on() -> None:
    settings = make_settings(api_keys=["sekrit"])
    async with app_client(settings) as client:
        denied = await client.get("/playground/config.json")
        allowed = await client.get(
            "/playground/config.json", headers={"authorization": "Bearer sekrit"}
        )
        page = await client.get("/playground")  # the static page itself is public
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200 and allowed.json()["auth"] is True
    assert page.status_code == 200


async def test_playground_can_be_switched_off() -> None:
    async with app_client(make_settings(playground=False)) as client:
        for path in ("/", "/playground", "/playground/config.json"):
            resp = await client.get(path, follow_redirects=False)
            assert resp.status_code == 404, path
