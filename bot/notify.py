"""Telling the agents that a customer waits: a JSON POST to ``handoff.notify_url`` on each handoff.

Fire and forget: the customer's reply never waits on it, and a receiver that is down or slow costs
a log line, not a turn. The body names the conversation and why it was handed off, never what the
customer wrote: the transcript, behind the admin token, has that, so no personal data goes to a
third party's hook.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import aiohttp

from bot.channels.base import BackgroundTasks

log = logging.getLogger("deskbot")


class HandoffNotifier:
    def __init__(self, url: str | None, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks = BackgroundTasks()

    def handed_off(self, conversation_id: str, channel: str, reason: str) -> None:
        """Post the notice in the background (nothing when no URL is configured)."""
        if self.url is None:
            return
        self._tasks.spawn(self._post(self.url, {
            "event": "handed_off", "conversation_id": conversation_id, "channel": channel, "reason": reason,
            "transcript": f"/admin/conversations/{quote(conversation_id, safe='')}",
            "text": f"A customer on {channel} is waiting for a person ({reason}): conversation {conversation_id}",
        }))

    async def _post(self, url: str, body: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, json=body) as response:
                if response.status >= 300:
                    log.error("handoff notice for %s: %s answered %d", body["conversation_id"], url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("handoff notice for %s: %s unreachable: %r", body["conversation_id"], url, exc)

    async def close(self) -> None:
        """Let the notices on their way finish (a few seconds at most), then close the session."""
        await self._tasks.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
