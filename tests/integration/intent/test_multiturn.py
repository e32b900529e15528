"""Multi-turn conversations with images on the offline default router (MiniLM embedding
intents, default config): the conversations of issue 22 and their opposites, masked
intents, and the quality gate on the labelled set bench/data/multiturn.jsonl."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bench.routing.bench_multiturn import DATA, evaluate
from tests.helpers import app_client, data_url, image_message, make_settings, png_bytes, user

pytestmark = [pytest.mark.embedding, pytest.mark.asyncio(loop_scope="module")]

CHAT = "/v1/chat/completions"
STRONG, SMALL = "gpt-5-chat", "nvidia/nvidia-nemotron-nano-9b-v2"
VISION = "nvidia/nemotron-nano-12b-v2-vl"
PHOTO = data_url(png_bytes(32, 24, (200, 30, 30)))
OTHER_PHOTO = data_url(png_bytes(32, 24, (30, 30, 200)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_settings(strategy="intent", log_level="warning")) as c:
        yield c


def after_photo(latest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        image_message("what's in this picture?", PHOTO),
        {"role": "assistant", "content": "A red car parked on a quiet street."},
        latest,
    ]


async def decide(client: httpx.AsyncClient, messages: list[dict[str, Any]]) -> dict[str, Any]:
    resp = await client.post(CHAT, json={"model": "router", "messages": messages})
    assert resp.status_code == 200, resp.text
    return resp.json()["router"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("latest", "model"),
    [
        ("Thanks! Now write a haiku about autumn", SMALL),
        ("Thanks! Now prove that the square root of 2 is irrational", STRONG),
        ("ok. write a Python function that merges two sorted linked lists", STRONG),
    ],
)
async def test_unrelated_follow_up_goes_to_the_text_model_it_needs(
    client: httpx.AsyncClient, latest: str, model: str
) -> None:
    router = await decide(client, after_photo(user(latest)))
    assert router["model"] == model
    assert (router["reason"], router["strip_images"], router["needs_vision"]) == (
        "images_omitted",
        True,
        False,
    )


@pytest.mark.parametrize(
    "latest",
    [
        "what colour is the car in the photo?",
        "zoom in on the bottom left corner, what's there?",
        "can you read the license plate in the image?",
    ],
)
async def test_follow_up_about_the_picture_goes_to_the_vision_model(
    client: httpx.AsyncClient, latest: str
) -> None:
    router = await decide(client, after_photo(user(latest)))
    assert (router["model"], router["reason"]) == (VISION, "image_reference")
    assert router["needs_vision"] and not router["strip_images"]
    assert router["detail"]["vision"] == "earlier_image"


async def test_image_in_the_latest_turn_after_text_turns(client: httpx.AsyncClient) -> None:
    messages = [
        user("Prove that there are infinitely many prime numbers."),
        {"role": "assistant", "content": "Suppose there were finitely many ..."},
        image_message("great. what's in this picture?", PHOTO),
    ]
    router = await decide(client, messages)
    assert router["model"] == VISION and router["detail"]["vision"] == "latest_image"


async def test_several_images_over_several_turns(client: httpx.AsyncClient) -> None:
    history = [
        image_message("what's this?", PHOTO),
        {"role": "assistant", "content": "An orange circle logo."},
        image_message("and this?", OTHER_PHOTO),
        {"role": "assistant", "content": "A blue ring logo."},
    ]
    unrelated = await decide(client, [*history, user("cool, thanks a lot, have a nice day")])
    assert (unrelated["model"], unrelated["strip_images"]) == (SMALL, True)
    about = await decide(
        client, [*history, user("which of the two logos would work better on a dark website?")]
    )
    assert about["model"] == VISION
    third = await decide(client, [*history, image_message("and the third one?", PHOTO)])
    assert third["model"] == VISION and third["detail"]["vision"] == "latest_image"


async def test_intents_that_cannot_apply_are_out_of_the_running(
    client: httpx.AsyncClient,
) -> None:
    quartic = await decide(client, [user("Solve the quartic equation x^4 - 5x^2 + 4 = 0.")])
    assert quartic["intent"] == "hard_question" and quartic["model"] == STRONG
    for masked in ("try_again", "image_understanding"):  # no earlier answer, no image
        assert masked not in quartic["scores"]
        assert masked not in quartic["detail"]["eligible_intents"]
    eigen = await decide(client, [user("Find the eigenvalues of [[2, 1], [1, 2]].")])
    assert "image_understanding" not in eigen["scores"] and eigen["model"] != VISION
    # with an image and an earlier answer, both are back in the running
    follow = await decide(client, after_photo(user("that's wrong, try again")))
    assert {"try_again", "image_understanding"} <= set(follow["scores"])
    assert follow["detail"]["eligible_intents"] == list(follow["scores"])


@pytest.mark.slow
async def test_labelled_multiturn_set_meets_the_bar_in_both_modes() -> None:
    """The quality gate: >= 90% of bench/data/multiturn.jsonl routed to the model a user
    expects, in recommend and in proxy mode; in proxy mode every answer is a 200 from an
    upstream that refuses images sent to text models, and none was sent one."""
    report = await evaluate(paths=(DATA,))
    modes = report["sets"][DATA.stem]["modes"]
    for mode in ("recommend", "proxy"):
        summary = modes[mode]
        assert summary["conversations"] >= 60
        assert summary["accuracy"] >= 0.9, (mode, summary["misses"])
    assert modes["proxy"]["non_200"] == 0
    assert modes["proxy"]["image_parts_sent_to_text_models"] == 0
