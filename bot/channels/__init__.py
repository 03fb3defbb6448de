"""The doors customers come through. Each module here is one channel (see ``base.py``)."""

from __future__ import annotations

from typing import Any

from bot.channels.base import Channel, Reply, Turn

__all__ = ["Channel", "Reply", "Turn", "build_channels"]


def build_channels(bot: Any, config: Any, settings: dict[str, Any]) -> list[Channel]:
    """The channels that are enabled and configured. A platform without secrets stays unmounted (404).

    The channels are imported here, not above: they need the server's parts (``bot.limits``), which
    need ``bot.channels.base``, so importing them with the package would make a cycle."""
    from bot.channels.slack import SlackChannel
    from bot.channels.wecom import WeComChannel
    from bot.channels.web import WebChannel

    channels: list[Channel] = []
    if config.web.enabled:
        channels.append(WebChannel(bot, {**settings, **config.web.model_dump()}))
    for cls, section in ((SlackChannel, config.slack), (WeComChannel, config.wecom)):
        channel = cls.from_settings(bot, {**settings, **section.model_dump(exclude_none=True)})
        if channel is not None:
            channels.append(channel)
    return channels
