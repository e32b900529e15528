"""The vision rule of the latest turn (strategies/vision.py): conversation facts, lexical
cues, eligibility, and the auto strategy's use of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation, Turn
from models.core.errors import NoEligibleModelError
from models.core.routing_config import RoutingConfig
from strategies.base import RouteOptions, StrategyContext, eligible_models, strips_images
from strategies.vision import refers_to_image, vision_need
from tests.fakes import FakeAutoStrategy

CONFIG = RoutingConfig.model_validate(
    {
        "models": [
            {"name": "big", "cost": 1.0},
            {"name": "small", "cost": 0.2},
            {"name": "vl", "cost": 0.5, "vision": True},
        ]
    }
)


def image() -> Image.Image:
    return Image.new("RGB", (4, 4), (10, 200, 30))


def chat(*turns: tuple[str, str, int]) -> Conversation:
    """Turns as (role, text, number of images); the text gets one [image] per image."""
    return Conversation(
        turns=tuple(
            Turn(role, (text + " [image]" * n).strip(), tuple(image() for _ in range(n)))  # type: ignore[arg-type]
            for role, text, n in turns
        )
    )


PHOTO_THEN = (("user", "what's in this picture?", 1), ("assistant", "A red car.", 0))


def test_latest_and_earlier_images_are_told_apart() -> None:
    unrelated = chat(*PHOTO_THEN, ("user", "Thanks! Now write a haiku about autumn", 0))
    assert len(unrelated.earlier_images) == 1 and unrelated.latest_images == []
    assert unrelated.has_images
    own = chat(*PHOTO_THEN, ("user", "and this one?", 2))
    assert len(own.earlier_images) == 1 and len(own.latest_images) == 2
    # a tool result after the latest user message belongs to the latest turn
    tool = chat(("user", "look it up", 0), ("assistant", "calling", 0), ("tool", "result", 1))
    assert len(tool.latest_images) == 1 and tool.earlier_images == []
    stripped = unrelated.without_images()
    assert not stripped.has_images
    assert [t.text for t in stripped.turns] == [t.text for t in unrelated.turns]  # markers stay
    text_only = chat(("user", "hi", 0))
    assert text_only.without_images() is text_only


@pytest.mark.parametrize(
    "text",
    [
        "what colour is the car in the photo?",
        "zoom in on the bottom left corner",
        "can you read the small text at the top of the image?",
        "which of the two pictures is brighter?",
        "look again, the cap has white spots",
        "translate the text in that screenshot",
        "are there people in the background?",
        "crop it to the face",
        "what's written on the right-hand side?",
        "in the first photo, what's on the table?",
    ],
)
def test_cues_that_point_at_a_picture(text: str) -> None:
    assert refers_to_image(text)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks! Now write a haiku about autumn",
        "prove that the square root of 2 is irrational",
        "write a Python function that merges two sorted linked lists",
        "write a function that resizes an image to half its size",  # indefinite: a task
        "what is the capital of Canada?",
        "tell me a joke",
    ],
)
def test_words_that_do_not_point_at_a_picture(text: str) -> None:
    assert not refers_to_image(text)


def test_vision_need_follows_the_latest_turn() -> None:
    unrelated = vision_need(chat(*PHOTO_THEN, ("user", "tell me a joke", 0)))
    assert not unrelated.needed and unrelated.omit_for_text_models and unrelated.cause is None
    about = vision_need(chat(*PHOTO_THEN, ("user", "what colour is the car in the photo?", 0)))
    assert about.needed and about.cause == "earlier_image" and not about.omit_for_text_models
    own = vision_need(chat(("user", "Prove Fermat's little theorem", 0), ("user", "this?", 1)))
    assert own.needed and own.cause == "latest_image"
    # words about a picture without any picture in the conversation need nothing
    nothing = vision_need(chat(("user", "what colour is the car in the photo?", 0)))
    assert not nothing.needed and not nothing.omit_for_text_models


def test_eligible_models_only_narrow_for_the_latest_turn() -> None:
    options = RouteOptions()
    unrelated = chat(*PHOTO_THEN, ("user", "tell me a joke", 0))
    assert eligible_models(CONFIG, unrelated, options) == ["big", "small", "vl"]
    assert strips_images(CONFIG, unrelated, "small") and not strips_images(CONFIG, unrelated, "vl")
    about = chat(*PHOTO_THEN, ("user", "is the car in the picture new?", 0))
    assert eligible_models(CONFIG, about, options) == ["vl"]
    several = chat(*PHOTO_THEN, ("user", "and this?", 1), ("assistant", "A bus.", 0))
    several = Conversation(
        turns=(*several.turns, Turn("user", "and this last one? [image]", (image(),)))
    )
    assert eligible_models(CONFIG, several, options) == ["vl"]
    assert eligible_models(CONFIG, unrelated, options, need_vision=True) == ["vl"]


class RecordingAuto(FakeAutoStrategy):
    """The fake auto strategy, remembering what it scored; ``small`` scores highest."""

    scored: list[Conversation]

    def score_batch(self, conversations: list[Conversation]) -> list:  # type: ignore[type-arg]
        self.scored = list(conversations)
        names = self._ctx.config.model_names
        import numpy as np

        row = np.array([0.9 if n == "small" else 0.5 for n in names], dtype=np.float32)
        return [row for _ in conversations]


async def auto_strategy(tmp_path: Path) -> RecordingAuto:
    config = CONFIG.model_copy(update={"auto": CONFIG.auto.model_copy(update={"artifact": "x"})})
    settings = Settings(auto={"artifact": str(tmp_path)})
    strategy = RecordingAuto(StrategyContext(settings, config, RouterMetrics()))
    await strategy.start()
    return strategy


async def test_auto_routes_earlier_images_to_text_models_as_text(tmp_path: Path) -> None:
    strategy = await auto_strategy(tmp_path)
    unrelated = chat(*PHOTO_THEN, ("user", "Thanks! Now write a haiku about autumn", 0))
    decision = await strategy.route(unrelated, RouteOptions())
    assert (decision.model, decision.reason) == ("small", "images_omitted")
    assert decision.strip_images and not decision.needs_vision
    assert decision.detail["selection"] == "threshold_cost"
    assert not strategy.scored[0].has_images  # scored as the text a text model gets

    about = chat(*PHOTO_THEN, ("user", "what colour is the car in the photo?", 0))
    decision = await strategy.route(about, RouteOptions())
    assert (decision.model, decision.reason) == ("vl", "image_reference")
    assert decision.needs_vision and not decision.strip_images and decision.ranking == ["vl"]
    assert strategy.scored[0].has_images

    own = chat(("user", "prove it", 0), ("assistant", "ok", 0), ("user", "this one?", 1))
    decision = await strategy.route(own, RouteOptions())
    assert (decision.model, decision.reason) == ("vl", "threshold_cost")
    with pytest.raises(NoEligibleModelError, match="vision-capable"):
        await strategy.route(own, RouteOptions(exclude_models=frozenset({"vl"})))
    await strategy.aclose()
