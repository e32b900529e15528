"""app.api.intake.normalise: one typed Conversation from a validated request."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.intake import normalise
from app.api.schemas import ChatCompletionRequest
from models.core.conversation import IMAGE_MARKER
from models.core.errors import BadRequestError
from tests.helpers import data_url, image_message, jpeg_bytes, make_settings, png_bytes, user


async def run(messages: list[dict[str, Any]], **limits: int):
    request = ChatCompletionRequest.model_validate({"messages": messages})
    settings = make_settings(limits=limits) if limits else make_settings()
    return await normalise(request, settings)


async def test_roles_and_texts_are_kept_in_order() -> None:
    conversation = await run(
        [
            {"role": "system", "content": "You are terse."},
            user("What is 2+2?"),
            {"role": "assistant", "content": "5"},
            {"role": "developer", "content": "be precise"},
            user("wrong, try again"),
        ]
    )
    assert [t.role for t in conversation.turns] == [
        "system",
        "user",
        "assistant",
        "developer",
        "user",
    ]
    assert [t.text for t in conversation.turns] == [
        "You are terse.",
        "What is 2+2?",
        "5",
        "be precise",
        "wrong, try again",
    ]
    assert conversation.latest_user_text() == "wrong, try again"
    assert conversation.has_previous_answer()
    assert not conversation.has_images


async def test_multi_part_text_is_joined() -> None:
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second part"}]
    conversation = await run([{"role": "user", "content": parts}])
    assert conversation.turns[0].text == "first part second part"


async def test_images_become_markers_in_text_and_decoded_rgb_images() -> None:
    message = image_message("what is", data_url(png_bytes(1024, 300)))
    message["content"].append({"type": "text", "text": "in this picture?"})
    message["content"].append(
        {"type": "image_url", "image_url": {"url": data_url(jpeg_bytes(800, 800), "image/jpeg")}}
    )
    conversation = await run([message])
    turn = conversation.turns[0]
    assert turn.text == f"what is {IMAGE_MARKER} in this picture? {IMAGE_MARKER}"
    assert len(turn.images) == 2
    assert conversation.has_images
    for img in turn.images:
        assert img.mode == "RGB"
        assert max(img.size) <= 512
    assert turn.images[0].size == (512, 150)
    assert turn.images[0].getpixel((10, 10)) == (200, 30, 30)  # png_bytes' colour survives


async def test_image_only_message_is_a_marker() -> None:
    url = data_url(png_bytes())
    conversation = await run(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )
    assert conversation.turns[0].text == IMAGE_MARKER
    assert len(conversation.images) == 1


async def test_images_stay_with_their_own_turns() -> None:
    red, blue = data_url(png_bytes(color=(255, 0, 0))), data_url(png_bytes(color=(0, 0, 255)))
    conversation = await run(
        [
            image_message("first", red),
            {"role": "assistant", "content": "a red square"},
            image_message("second", blue),
        ]
    )
    first, answer, second = conversation.turns
    assert [img.getpixel((0, 0)) for img in first.images] == [(255, 0, 0)]
    assert answer.images == ()
    assert [img.getpixel((0, 0)) for img in second.images] == [(0, 0, 255)]
    assert [img.getpixel((0, 0)) for img in conversation.images] == [(255, 0, 0), (0, 0, 255)]


async def test_assistant_without_content_is_an_empty_turn() -> None:
    conversation = await run(
        [user("call the tool"), {"role": "assistant", "content": None, "tool_calls": []}]
    )
    assert conversation.turns[1].role == "assistant"
    assert conversation.turns[1].text == ""


@pytest.mark.parametrize(
    "messages,limits,match",
    [
        ([{"role": "system", "content": "hi"}], {}, "user message"),
        ([user(" "), {"role": "assistant", "content": ""}], {}, "no text"),
        ([user("a")] * 3, {"max_messages": 2}, "too many messages"),
        (
            [image_message("x", data_url(png_bytes()), data_url(png_bytes()))],
            {"max_images": 1},
            "too many images",
        ),
    ],
    ids=["no-user", "all-empty", "too-many-messages", "too-many-images"],
)
async def test_refusals(messages: list[dict[str, Any]], limits: dict, match: str) -> None:
    with pytest.raises(BadRequestError, match=match) as info:
        await run(messages, **limits)
    assert info.value.param == "messages"
