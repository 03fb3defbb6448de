"""The one interface every channel implements.

A channel has an input side (HTTP routes that turn a platform's request into a :class:`Turn`) and an
output side (:meth:`Channel.send`, used when a human agent or a late answer must reach the user).
Adding a channel means adding one module next to this one and listing it in ``bot/channels/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bot.engine import Bot


@dataclass
class Turn:
    """One user message, as the engine sees it, whatever door it came through."""

    conversation_id: str
    text: str
    channel: str
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """What the bot answers to a :class:`Turn`."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    source: str = "fallback"  # template | retrieval | action | fallback | handoff | silent
    buttons: list[dict[str, str]] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)
    turn_id: int | None = None
    handed_off: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "reply": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "source": self.source,
            "buttons": self.buttons,
            "ranking": [{"intent": i, "confidence": round(c, 4)} for i, c in self.ranking],
            "turn_id": self.turn_id,
            "handed_off": self.handed_off,
        }


class Channel:
    """Base class: subclasses set ``name`` and implement :meth:`routes` and :meth:`send`."""

    name: str = ""

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        self.bot = bot
        self.settings = settings

    def routes(self) -> list[web.AbstractRouteDef]:
        raise NotImplementedError

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        """Deliver a message that is not the direct answer to a request (agent replies, late answers)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release client sessions and background tasks at shutdown."""
