"""The doors customers come through. Each module here is one channel (see ``base.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.channels.base import Channel, PlatformChannel, Reply, Turn

__all__ = ["Channel", "Reply", "Turn", "build_channels", "off_callbacks"]


def platforms() -> list[type[PlatformChannel]]:
    """The platforms' channels, imported here for the reason :func:`build_channels` gives."""
    from bot.channels.slack import SlackChannel
    from bot.channels.wecom import WeComChannel

    return [SlackChannel, WeComChannel]


def unmarked(channel: str) -> Callable[[str], str] | None:
    """How the customers of ``channel`` (a conversation's, served here or not) read a reply written in Markdown
    (:attr:`Channel.unmarked`): None where they read it drawn."""
    return next((cls.unmarked for cls in platforms() if cls.name == channel), None)


def build_channels(bot: Any, config: Any, settings: dict[str, Any]) -> list[Channel]:
    """The channels that are enabled and configured. A platform without secrets stays unmounted (404).

    The channels are imported here, not above: they need the server's parts (``bot.limits``), which
    need ``bot.channels.base``, so importing them with the package would make a cycle."""
    from bot.channels.web import WebChannel

    channels: list[Channel] = []
    if config.web.enabled:
        channels.append(WebChannel(bot, {**settings, **config.web.model_dump()}))
    for cls in platforms():
        section = getattr(config, cls.name)
        channel = cls.from_settings(bot, {**settings, **section.model_dump(exclude_none=True)})
        if channel is not None:
            channels.append(channel)
    return channels


def off_callbacks(channels: list[Channel]) -> dict[str, type[PlatformChannel]]:
    """The paths of the platforms whose channel is off (none of its secrets set), each with its channel: a platform
    calling one gets a 404, which the log says why of (:func:`bot.server.say_channel_off`)."""
    on = {channel.name for channel in channels}
    return {path: cls for cls in platforms() if cls.name not in on for path in cls.paths}
