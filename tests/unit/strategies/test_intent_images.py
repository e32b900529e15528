"""IntentStrategy on multi-turn conversations with images, with the LLM backends (remote
on a scripted server, vllm on a fake engine) and the default config: the latest turn
decides, earlier images show as markers in the prompt, and intents that cannot apply are
neither offered nor scored. The embedding backend: tests/integration/intent/test_multiturn.py.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from app.settings import DEFAULT_CONFIG
from models.core.conversation import Conversation, Turn
from models.core.routing_config import load_routing_config
from strategies.base import RouteOptions
from strategies.intent.strategy import IntentStrategy
from tests.unit.strategies.test_intent_remote import BASE, Server, wire
from tests.unit.strategies.test_intent_vllm import FakeEngine, make_context, strategy_with

STRONG, SMALL = "gpt-5-chat", "nvidia/nvidia-nemotron-nano-9b-v2"
VISION = "nvidia/nemotron-nano-12b-v2-vl"


def photo() -> Image.Image:
    return Image.new("RGB", (4, 4), (200, 30, 30))


def after_photo(latest: str, latest_images: int = 0) -> Conversation:
    """A photo and its answer, then ``latest`` (with its own images, if any)."""
    marks = " [image]" * latest_images
    return Conversation(
        turns=(
            Turn("user", "what's in this picture? [image]", (photo(),)),
            Turn("assistant", "A red car parked on a street."),
            Turn("user", latest + marks, tuple(photo() for _ in range(latest_images))),
        )
    )


async def remote_strategy(monkeypatch: pytest.MonkeyPatch, server: Server) -> IntentStrategy:
    from app.metrics import RouterMetrics
    from app.settings import Settings
    from strategies.base import StrategyContext

    wire(monkeypatch, server)
    settings = Settings(intent={"backend": "remote", "base_url": BASE, "model": "tiny"})
    context = StrategyContext(settings, load_routing_config(DEFAULT_CONFIG), RouterMetrics())
    strategy = IntentStrategy(context)
    await strategy.start()
    return strategy


def conversation_lines(prompt: str) -> list[dict[str, str]]:
    block = prompt.split("<conversation>\n", 1)[1].split("\n</conversation>", 1)[0]
    return [json.loads(line) for line in block.splitlines()]


@pytest.mark.parametrize(
    ("latest", "answer", "model", "reason", "strip"),
    [
        ("Thanks! Now write a haiku about autumn", "other", SMALL, "images_omitted", True),
        ("prove that the square root of 2 is irrational", "hard_question", STRONG,
         "images_omitted", True),
        ("write a Python function that merges two sorted linked lists", "hard_question",
         STRONG, "images_omitted", True),
        # the opposites: the follow-up asks about the picture
        ("what colour is the car?", "image_understanding", VISION, "image_reference", False),
        ("what colour is the car in the photo?", "other", VISION, "image_reference", False),
    ],
)  # fmt: skip
async def test_remote_latest_turn_decides(
    monkeypatch: pytest.MonkeyPatch, latest: str, answer: str, model: str, reason: str, strip: bool
) -> None:
    server = Server(answer=answer)
    strategy = await remote_strategy(monkeypatch, server)
    decision = await strategy.route(after_photo(latest), RouteOptions())
    assert (decision.model, decision.reason, decision.strip_images) == (model, reason, strip)
    assert decision.needs_vision is (model == VISION)
    if model != VISION:  # every model may answer; the vision model stays a fallback
        assert set(decision.ranking) == {STRONG, SMALL, VISION}
    else:
        assert decision.ranking == [VISION]
    # the prompt shows the earlier image as a marker on its own turn, not on the latest
    lines = conversation_lines(server.posts[-1]["messages"][0]["content"])
    assert lines[0] == {"role": "user", "content": "what's in this picture? [image]"}
    assert lines[-1] == {"role": "user", "content": latest}
    # both requirements hold here: every route is offered
    assert "image_understanding" in server.posts[-1]["structured_outputs"]["choice"]
    assert "try_again" in decision.detail["eligible_intents"]
    await strategy.aclose()


async def test_remote_image_in_the_latest_turn_after_text_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Server(answer="hard_question")
    strategy = await remote_strategy(monkeypatch, server)
    conversation = Conversation(
        turns=(
            Turn("user", "Prove that there are infinitely many primes."),
            Turn("assistant", "Suppose finitely many ..."),
            Turn("user", "is my proof in this photo right? [image]", (photo(),)),
        )
    )
    decision = await strategy.route(conversation, RouteOptions())
    assert (decision.model, decision.reason) == (VISION, "vision_fallback")
    assert decision.needs_vision and decision.detail["vision"] == "latest_image"
    several = after_photo("and this one?", latest_images=2)
    server.answer = "image_understanding"
    decision = await strategy.route(several, RouteOptions())
    assert (decision.model, decision.reason, decision.strip_images) == (VISION, "intent", False)
    await strategy.aclose()


async def test_remote_masks_intents_that_cannot_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(answer="hard_question")
    strategy = await remote_strategy(monkeypatch, server)
    decision = await strategy.route(
        Conversation.from_text("solve x^4 - 5x^2 + 4 = 0"), RouteOptions()
    )
    offered = server.posts[-1]["structured_outputs"]["choice"]
    # no earlier answer: no try_again; no image anywhere: no image_understanding;
    # image_question (a camera-style "look at me") has no `requires` and stays
    assert "try_again" not in offered and "image_understanding" not in offered
    assert "image_question" in offered and "hard_question" in offered
    assert decision.detail["eligible_intents"] == [
        "hard_question",
        "chit_chat",
        "image_question",
        "other",
    ]
    await strategy.aclose()


async def test_vllm_latest_turn_decides_and_prompt_marks_earlier_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"haiku": "other", "colour": "image_understanding"}

    def answer(prompt: list[int]) -> str:
        last = "".join(map(chr, prompt)).split("<conversation>")[-1].split("</conversation>")[0]
        latest = last.strip().splitlines()[-1]
        return next((route for word, route in answers.items() if word in latest), "other")

    engine = FakeEngine(answer=answer)
    ctx = make_context(load_routing_config(DEFAULT_CONFIG))
    strategy = await strategy_with(monkeypatch, ctx, engine)
    haiku = await strategy.route(after_photo("Now write a haiku about autumn"), RouteOptions())
    assert (haiku.model, haiku.reason, haiku.strip_images) == (SMALL, "images_omitted", True)
    prompt = "".join(map(chr, engine.calls[-1]["prompt"]))
    lines = conversation_lines(prompt)
    assert lines[0]["content"].endswith("[image]") and "[image]" not in lines[-1]["content"]
    assert "image_understanding" in engine.calls[-1]["choices"]
    colour = await strategy.route(after_photo("what colour is it?"), RouteOptions())
    assert (colour.model, colour.reason, colour.needs_vision) == (VISION, "image_reference", True)
    await strategy.aclose()


async def test_classifier_failure_is_a_fallback_whatever_the_turn_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Server(answer="hard_question")
    strategy = await remote_strategy(monkeypatch, server)
    server.statuses = [500]
    about = await strategy.route(after_photo("is the car in the photo new?"), RouteOptions())
    assert (about.model, about.reason, about.intent) == (VISION, "fallback", None)
    server.statuses = [500]
    unrelated = await strategy.route(after_photo("tell me a joke"), RouteOptions())
    assert (unrelated.model, unrelated.reason, unrelated.strip_images) == (SMALL, "fallback", True)
    await strategy.aclose()
