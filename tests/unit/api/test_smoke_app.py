"""The app answers a chat request through the real HTTP stack with the FakeStrategy."""

from tests.helpers import app_client, user


async def test_recommend_returns_configured_model() -> None:
    async with app_client() as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user("hi")]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "gpt-5-chat"
    assert body["model"] == "fake"
    assert body["router"]["reason"] == "fake"
    assert resp.headers["x-request-id"]
