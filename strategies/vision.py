"""What the latest turn needs to see: the vision rule shared by every strategy.

A conversation needs a vision-capable model when its **latest turn** carries an image, or
when it asks about an image from an earlier turn. Earlier images alone do not: "Thanks!
Now write a haiku about autumn" after a photo goes to whichever model its intent picks,
and a text-only model gets the earlier images as text markers (proxy mode) or the client
is told to replace them (recommend mode, ``router.strip_images``).

"Asks about an earlier image" is decided offline from the latest user turn's own words:

* a small lexical cue list (:data:`IMAGE_REFERENCE`): an image noun with a definite or
  ordinal determiner in front ("the photo", "that screenshot", "the first picture"), a
  visual action ("zoom in", "look again", "crop"), or a place in a picture ("bottom left",
  "in the background"); indefinite mentions ("resize an image") do not count;
* and, for the intent strategy, the classifier: an intent whose model is vision-capable
  (the default config's ``image_understanding`` / ``image_question``) read on the latest
  turn (the embedding backend reads it on its own, since earlier image turns dominate its
  turn-weighted scores; the LLM backends read the whole window and answer for the
  latest turn).

A retry rule ("try_again" after an image turn needs the image) was tried and dropped: the
embedding backend's latest-turn ``try_again`` fires on unrelated follow-ups too often.
``bench/routing/bench_multiturn.py`` measures the rule on ``bench/data/multiturn.jsonl``
and the held-out ``bench/data/multiturn-holdout.jsonl``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from models.core.conversation import Conversation

_NOUNS = (
    r"image|picture|pic|photo|photograph|screenshot|screen ?shot|snapshot|scan|diagram|"
    r"chart|graph|drawing|sketch|illustration|slide|selfie|logo|"
    r"bild|foto|imagen|imagem|immagine"
)
_DETERMINERS = (
    r"the|this|that|these|those|my|your|its|first|second|third|fourth|last|previous|"
    r"earlier|other|same|above|attached|both|each|which"
)
IMAGE_REFERENCE = re.compile(
    rf"\b(?:{_DETERMINERS})\s+(?:[\w'-]+\s+)?(?:{_NOUNS})s?\b"  # "the first photo"
    r"|\bzoom(?:ed|ing)?\s+in\b|\bcrop(?:ped|ping)?\b|\blook(?:ing)?\s+(?:at\s+it\s+)?again\b"
    r"|\blook\s+clos(?:er|ely)\b|\btake\s+(?:another|a\s+closer)\s+look\b"
    r"|\b(?:top|bottom|upper|lower)[\s-](?:left|right)\b"
    r"|\bin\s+the\s+(?:background|foreground|corner)\b|\b(?:left|right)[\s-]hand\s+side\b",
    re.IGNORECASE,
)

VisionCause = Literal["latest_image", "earlier_image"]


def refers_to_image(text: str) -> bool:
    """Whether ``text`` points at a picture the conversation holds (lexical cues only)."""
    return IMAGE_REFERENCE.search(text) is not None


@dataclass(frozen=True, slots=True)
class VisionNeed:
    """The image facts of a conversation, as far as choosing a model goes."""

    latest_images: int  # images in the latest turn (the latest user message and after)
    earlier_images: int  # images before it
    referenced: bool  # the latest turn asks about an earlier image

    @property
    def needed(self) -> bool:
        """A model that cannot see images cannot answer this turn."""
        return self.latest_images > 0 or (self.earlier_images > 0 and self.referenced)

    @property
    def cause(self) -> VisionCause | None:
        if self.latest_images:
            return "latest_image"
        return "earlier_image" if self.needed else None

    @property
    def omit_for_text_models(self) -> bool:
        """Earlier images that a text-only model answering this turn gets as markers."""
        return not self.needed and self.earlier_images > 0

    def with_reference(self, referenced: bool) -> VisionNeed:
        return VisionNeed(self.latest_images, self.earlier_images, self.referenced or referenced)


def vision_need(conversation: Conversation) -> VisionNeed:
    """The lexical view: latest-turn images, earlier images, and whether the latest user
    turn's words point at an earlier one (strategies may add what a classifier read)."""
    earlier = len(conversation.earlier_images)
    latest = len(conversation.latest_images)
    referenced = earlier > 0 and refers_to_image(conversation.latest_user_text())
    return VisionNeed(latest_images=latest, earlier_images=earlier, referenced=referenced)
