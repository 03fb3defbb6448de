"""Telling the agents that a customer waits: a JSON POST to ``handoff.notify_url`` on each handoff.

Fire and forget: the customer's reply never waits on it, and a receiver that is down or slow costs
a log line, not a turn. A notice the receiver could not take (no connection, a timeout, a 429 or a 5xx:
a chat room's webhook restarting or asking to slow down) is tried again in the background, twice, a few
seconds apart; one it refused (another 4xx) or redirected (a 3xx, not followed) is not. A conversation's notices are posted in the order they were
made, each once the one before it is done (tried again meanwhile, say): a handoff's withdrawal never comes first, and
none comes for a handoff the receiver surely never had (each try refused, or given up before it was sent). One whose
delivery is unknown (a timeout, a 500 or a 504, the connection closed before the answer: the receiver may have
posted it) is withdrawn all the same. The body says why the conversation was handed off and names it by its
reference alone (``Store.reference``), with a link into the agents' console that opens it once signed in: never its
id, which is a web customer's key to their conversation (whoever reads the room the webhook posts to could read and
write it as the customer) and a WeCom employee's userid, nor what the customer wrote, so no personal data goes to a
third party's hook. The logs name the receiver by its origin alone: a webhook's path and query
often hold its secret (Slack's ``https://hooks.slack.com/services/T.../B.../SECRET``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import aiohttp

from bot.channels.base import MAYBE_SENT, BackgroundTasks, RecentKeys, client_session
from bot.log_format import Verbatim
from dialogues.store import log_tag

log = logging.getLogger("deskbot")

ATTEMPTS = 3  # tries per notice, the first included
RETRY_DELAY_S = 1.0  # the wait before the first retry, doubled before each next one
RETRY_AFTER_CAP_S = 10.0  # the longest a receiver's Retry-After is waited for: the agents need to know soon
CONSOLE = "/agent"  # the agents' console, where no handoff.console_url says how the agents reach it

# A conversation's reference, which names it in a notice (None: none could be made, the notice links to the inbox)
Reference = Callable[[str], Awaitable[str | None]]


async def _no_reference(conversation_id: str) -> None:
    """A notifier's without a store (one of its own, in a test): its notices link to the inbox."""
    return None


class HandoffNotifier:
    def __init__(self, url: str | None, timeout: float = 5.0, reference: Reference = _no_reference,
                 console: str | None = None) -> None:
        """``reference``: the conversation's reference, made once it is to be posted (``Store.reference``);
        ``console``: the agents' console as they reach it (``handoff.console_url``), which a notice links into."""
        self.url = url
        self.reference = reference
        self.console = console or CONSOLE
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks = BackgroundTasks()
        self._stopping = asyncio.Event()  # set by close(): a notice waiting to be tried again is given up
        self._latest: dict[str, asyncio.Task[None]] = {}  # each conversation's last notice still on its way
        # The conversations whose latest handoff notice the receiver surely never had, whose withdrawal is not posted:
        # a deletion comes within minutes of its handoff, which these outlast.
        self._untaken = RecentKeys()

    def handed_off(self, conversation_id: str, channel: str, reason: str) -> None:
        """Post the notice in the background (nothing when no URL is configured)."""
        self._notice("handed_off", conversation_id, channel, reason, "is waiting for a person")

    def withdrawn(self, conversation_id: str, channel: str) -> None:
        """Post in the background that the handoff announced for the conversation is taken back (reason ``deleted``:
        its customer deleted their request for a person before they were answered): the agents told of it went on
        looking for a customer who no longer waits."""
        self._notice("withdrawn", conversation_id, channel, "deleted", "no longer waits for a person")

    def _notice(self, event: str, conversation_id: str, channel: str, reason: str, waits: str) -> None:
        """Post the notice ``event`` of the customer who ``waits`` so, for ``reason``, in the background (nothing
        when no URL is configured)."""
        if self.url is None:
            return
        before = self._latest.get(conversation_id)
        notice = self._latest[conversation_id] = self._tasks.spawn(self._post(self.url, conversation_id, {
            "event": event, "channel": channel, "reason": reason, "text": f"A customer on {channel} {waits} ({reason})",
        }, before))
        notice.add_done_callback(lambda done: self._latest.pop(conversation_id, None)
                                 if self._latest.get(conversation_id) is done else None)

    async def _referenced(self, conversation_id: str, body: dict[str, str | None]) -> dict[str, str | None]:
        """``body`` with the conversation's reference and the console's link that opens it (the console alone, its
        inbox, when no reference could be made), in its ``text`` too for tools that show that line alone."""
        ref = await self.reference(conversation_id)
        link = f"{self.console}#ref={quote(ref, safe='')}" if ref is not None else self.console
        return {**body, "reference": ref, "console": link, "text": f"{body['text']}: {link}"}

    async def _post(self, url: str, conversation_id: str, body: dict[str, str | None],
                    before: asyncio.Task[None] | None = None) -> None:
        """Post ``body``, again after a failure the receiver may get over (see the module's docstring); one
        log line if it never took it, or was given up at shutdown. Only once the conversation's notice ``before`` it
        is done, taken or given up: a withdrawal posted while the handoff it takes back was tried again reached the
        agents first, and the handoff after it stood. A withdrawal of a handoff the receiver surely never had is not
        posted: given up at shutdown, the handoff was followed by its withdrawal, of a customer the agents never heard
        of. One of a handoff that may have reached them (:class:`Delivery` in doubt) is: a handoff notice that timed
        out had often been posted in the agents' room, and its customer, who deleted the request, stood there."""
        if self._session is None:
            self._session = client_session(timeout=self.timeout)
        handoff = body["event"] == "handed_off"
        delivery = Delivery()
        try:
            if before is not None:
                await asyncio.wait([before])
            if not handoff and conversation_id in self._untaken:
                log.info("handoff notice for %s: its withdrawal is not posted, as %s never had the handoff",
                         log_tag(conversation_id), _origin(url))
                return
            await self._tries(url, conversation_id, await self._referenced(conversation_id, body), delivery)
        except asyncio.CancelledError:
            self._given_up(url, conversation_id)
            raise
        finally:
            if handoff:
                self._untaken.forget((conversation_id,))
                if not (delivery.taken or delivery.in_doubt):
                    self._untaken.add(conversation_id)

    def _given_up(self, url: str, conversation_id: str, why: str = "") -> None:
        log.error("handoff notice for %s: %s %sgiven up at shutdown", log_tag(conversation_id), _origin(url), why)

    async def _tries(self, url: str, conversation_id: str, body: dict[str, str | None], delivery: Delivery) -> None:
        """Post the notice, tried as the module's docstring says, and keep in ``delivery`` whether the receiver took
        it or may have: each try is in doubt until the receiver's answer, or a connection that never opened, says
        otherwise (a try cut short at shutdown stays so)."""
        assert self._session is not None
        for attempt in range(1, ATTEMPTS + 1):
            delay = RETRY_DELAY_S * 2 ** (attempt - 1)
            doubted, delivery.in_doubt = delivery.in_doubt, True
            try:
                # A redirect is not followed: it would carry the notice, and the agents' link, elsewhere.
                async with self._session.post(url, json=body, allow_redirects=False) as response:
                    if response.status < 300:
                        delivery.taken = True
                        return
                    if response.status not in MAYBE_SENT:  # refused, or not taken in (429, 502, 503)
                        delivery.in_doubt = doubted
                    problem = f"answered {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # a wrong address or a refused body: the same notice would be refused again
                    delay = _retry_after(response.headers.get("Retry-After"), delay)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
                    delivery.in_doubt = doubted  # never connected: nothing was sent
                # ClientConnectorError says the host and why; others (a timeout) may quote the whole URL
                problem = f"unreachable: {exc if isinstance(exc, aiohttp.ClientConnectorError) else type(exc).__name__}"
            except aiohttp.ClientError as exc:  # an address aiohttp cannot use, too many redirects
                delivery.in_doubt = doubted
                problem = f"failed: {type(exc).__name__}"
                break
            if attempt < ATTEMPTS:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    self._given_up(url, conversation_id, f"{_after(problem, attempt)}, ")
                    return
        log.error("handoff notice for %s: %s %s", log_tag(conversation_id), _origin(url), _after(problem, attempt))

    async def close(self) -> None:
        """Let the notices on their way finish (a few seconds at most: those still being tried again are
        given up at once, with a log line each), then close the session."""
        self._stopping.set()
        await self._tasks.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class Delivery:
    """What became of one notice: ``taken`` by the receiver (a 2xx), or ``in_doubt``: a try may have reached it
    unanswered (a timeout, a 500 or a 504, the connection closed before the answer, a try cut short at shutdown)."""

    taken: bool = False
    in_doubt: bool = False


def _after(problem: str, attempts: int) -> str:
    """What became of a notice, and after how many tries: "answered 503 (3 tries)"."""
    return f"{problem} ({attempts} {'try' if attempts == 1 else 'tries'})"


def _origin(url: str) -> Verbatim:
    """``scheme://host[:port]`` of ``url``: what a log line may say of a webhook (no user, path or query), its host as
    it is, an IP address too (:class:`Verbatim`)."""
    parts = urlsplit(url)
    return Verbatim(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")


def _retry_after(value: str | None, default: float) -> float:
    """The wait a 429 or 503 asks for in its Retry-After (seconds, or an HTTP date), at most
    :data:`RETRY_AFTER_CAP_S`; ``default`` when it asks none that can be read."""
    if value is None:
        return default
    value = value.strip()
    try:
        if value.isascii() and value.isdigit():
            wait = float(value)
        else:
            wait = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return default
    return min(max(wait, 0.0), RETRY_AFTER_CAP_S)
