"""Session stickiness (opt-in): a conversation keeps its model across turns, so the
upstream's prompt cache and the model's tone survive.

The HTTP edge names the session (``x-session-id`` or ``router.session_id``) and hands each
fresh strategy decision to :meth:`SessionRouter.apply`, which may replace its model:

* ``sticky``: the session's model answers every turn it can answer (not excluded by the
  request, and vision-capable when the turn needs to see an image); when it cannot, the
  fresh choice answers and becomes the session's model.
* ``upgrade_only``: the session moves to the fresh choice only when that is *stronger*
  (a higher ``cost`` in the routing config) or when the session's model cannot see an
  image this turn needs (then to the vision model, whatever its cost); otherwise it stays.
  So it never backs down to a cheaper model for a turn its current model can answer.

Reasons (bounded): ``sticky`` when the session's model replaced a different fresh choice,
``upgrade`` when ``upgrade_only`` moved the session; a fresh choice that wins otherwise
keeps the strategy's reason. The store is in memory, per worker process, bounded
(least recently used forgotten first) with a sliding TTL.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from strategies.base import RouteOptions, RoutingDecision, strips_images

if TYPE_CHECKING:
    from models.core.conversation import Conversation
    from models.core.routing_config import RoutingConfig
    from strategies.settings import SessionSettings

STICKY = "sticky"
UPGRADE = "upgrade"


class SessionStore:
    """Session key -> model, at most ``max_sessions``, each forgotten ``ttl_s`` after its
    last write. Used from the event loop only (no locking)."""

    def __init__(
        self, max_sessions: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sessions, self.ttl_s, self._clock = max_sessions, ttl_s, clock
        # ordered by last write, so by expiry too (one TTL for all): expired ones lead
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def _purge(self, now: float) -> None:
        while self._entries:
            key, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                return
            del self._entries[key]

    def get(self, key: str) -> str | None:
        """The session's model, or None when unknown or expired."""
        self._purge(self._clock())
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: str, model: str) -> None:
        """Remember ``model`` for the session, for another ``ttl_s``."""
        now = self._clock()
        self._purge(now)
        self._entries[key] = (model, now + self.ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._entries)


class SessionRouter:
    """Applies the session policy to fresh decisions."""

    def __init__(
        self,
        settings: SessionSettings,
        config: RoutingConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = settings.policy
        self.config = config
        self.store = SessionStore(settings.max_sessions, settings.ttl_s, clock)

    def _keep(
        self, previous: str, decision: RoutingDecision, options: RouteOptions
    ) -> tuple[str, str | None]:
        """The model for this turn and the reason stickiness gives (None: the fresh one's)."""
        fresh = decision.model
        if previous == fresh or previous in options.exclude_models:
            return fresh, None
        blind = decision.needs_vision and not self.config.model(previous).vision
        if self.policy == "sticky":
            return (fresh, None) if blind else (previous, STICKY)
        if blind or self.config.model(fresh).cost > self.config.model(previous).cost:
            return fresh, UPGRADE
        return previous, STICKY

    def apply(
        self,
        key: str,
        decision: RoutingDecision,
        options: RouteOptions,
        conversation: Conversation,
    ) -> RoutingDecision:
        """The decision for this turn of session ``key`` (changed in place), remembered."""
        if self.policy == "off":
            return decision
        previous = self.store.get(key)
        if previous is not None and previous not in self.config.model_names:
            previous = None
        model, reason = (decision.model, None)
        if previous is not None:
            model, reason = self._keep(previous, decision, options)
        decision.detail["session"] = {
            "policy": self.policy,
            "previous": previous,
            "routed": decision.model,
        }
        if model != decision.model:
            decision.ranking = [model, *(m for m in decision.ranking if m != model)]
            decision.model = model
            decision.strip_images = strips_images(self.config, conversation, model)
        if reason is not None:
            decision.reason = reason
        self.store.put(key, model)
        return decision
