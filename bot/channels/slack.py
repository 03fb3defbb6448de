"""Slack over the Events API: ``POST /slack/events`` in, ``chat.postMessage`` out.

Slack gives an app 3 seconds to acknowledge an event and retries up to three times otherwise, so
this channel verifies the request, answers 200 at once and runs the turn in the background — the
opposite of Rasa's Slack channel, which answers after the whole turn and makes users see duplicate
replies. Redeliveries are recognised by ``event_id``.

Replies are Block Kit messages: the text in a ``markdown`` block (templates are written in standard
Markdown, which Slack's older ``mrkdwn`` would garble) and a template's buttons in an ``actions``
block; a reply's custom payloads that hold Block Kit ``blocks`` (a Rasa bot's Slack responses) are posted
as written, after the text. A click arrives at
``POST /slack/interactions`` and is answered like a typed message whose text is the button's payload.
``chat.postMessage`` honours Slack's rate limiting: a 429 is retried after its ``Retry-After``, a bounded
number of times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import re
import sqlite3
import time
import weakref
from functools import partial
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aiohttp import web

from bot.channels.base import (MAYBE_SENT, UNAVAILABLE, UNDELIVERED, UNREAD, UNREAD_HINT, DeliveryError, MaybeDelivered,
                               PlatformChannel, RecentKeys, Stopping, TryAgain, Turn, Withdrawn, api_base, api_result, clock_off,
                               failure, handed_over, http_error, is_fresh, load_json, message_pieces, normalise,
                               read_body, readable, same_secret, send_pieces, shown_url, signed, skew, with_attached)
from bot.language import LANGUAGES, SLOT, Text, kept_script, mostly_written_in, say
from bot.project import valid_unicode
from bot.responses import MAX_BUTTON_TITLE_CHARS, MAX_BUTTONS, slack_attachments, slack_blocks
from bot.channels.wecom import plain_text as unmarked
from dialogues.holding import SENT
from dialogues.store import log_tag

if TYPE_CHECKING:
    from bot.engine import Bot

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
MAX_RETRY_AFTER_S = 30.0  # a longer Retry-After is not waited for: the answer would be stale
NAME_LOOKUP_S = 1.5  # users.info runs before the event's 200, which Slack wants within 3 seconds
NAME_RETRY_S = 600.0  # after Slack refused users.info (no users:read, a revoked token), names are not asked for this long
NAME_SLOW_RETRY_S = 30.0  # after users.info went unanswered (too slow, Slack down), names are asked for again this soon
NAME_KEPT_S = 3600.0  # a support team member's name is looked up again after this long: they may have changed it
UNKNOWN_KEPT_S = 600.0  # a user id Slack does not know (user_not_found) is not looked up again for this long
MAX_UNKNOWN = 1000  # the user ids Slack did not know that are remembered: customers may mention any id at all
MAX_NAMES_A_MESSAGE = 20  # the people a message mentions whose names are asked of Slack (the first, in its order)
# The colleagues kept in the store whose names are asked of Slack as the server starts (SlackChannel._name_colleagues),
# as many as a message's mentions: asking for every colleague ever kept, hundreds in a big team, hit Slack's rate limit.
MAX_NAMES_AT_START = MAX_NAMES_A_MESSAGE
GROUP_KEPT_S = 300.0  # team_users' user groups are listed again after this long: colleagues join and leave them
# Slack's limits on a message's blocks, in characters as Slack counts them (:func:`slack_length`): the text of all its
# markdown blocks together (documented), and the text of all its blocks, buttons' titles included, where each block
# after the first counts BLOCK_COST more (msg_blocks_too_long; not published, but measured in slackapi/bolt-js#2509:
# 13,297 characters of markdown blocks pass and one more does not, and a divider beside them leaves 13,172).
MARKDOWN_LIMIT = 12_000
SECTION_LIMIT = 3_000  # a section block's text (documented)
MESSAGE_TEXT_LIMIT, BLOCK_COST = 13_297, 125
# An event carries a message's text twice, as text and as its rich_text blocks, up to 40,000 characters each
# and escaped in JSON (six bytes a Chinese character): server.max_body_bytes refused long messages Slack
# takes, and Slack gave up on them after three tries. Read whole and signed, they are cut to max_message_chars.
MIN_EVENT_BYTES = 1024 * 1024
BUTTON_VALUE_LIMIT, BLOCK_ID_LIMIT = 2000, 255
MAX_BLOCKS = 50  # Slack refuses a message of more blocks
BUTTON_ACTION = "deskbot_button"
# the shop's menus whose chosen option's value is answered, and its date pickers, whose date is
CHOICES = ("static_select", "overflow", "radio_buttons", "datepicker")
SHARED_BLOCK = "connect"  # a buttons' block_id ends so when they were posted in a Slack Connect channel
# Message subtypes that are a person writing: ``me_message`` is /me's ("/me is still waiting"), which Slack shows as
# the user's own message, in italics; ignored, it was neither answered nor seen by the agent holding the customer.
CUSTOMER_SUBTYPES = (None, "thread_broadcast", "file_share", "me_message")
# Slackbot's user id: a reminder set for a channel (/remind #support …) comes from it as a person's message, without a
# bot_id, and was answered, its thread a customer's conversation in the agents' inbox
SLACKBOT = "USLACKBOT"
MENTION = "mention"  # the bot mentioned alone, without a question (SlackChannel._unread)
# What a customer who mentioned the bot alone, to start, is asked, where they got no answer.
MENTION_HINT: Text = {"en": "Hi! What can I help you with? Please type your question.",
                      "zh": "您好！请问有什么可以帮您？请直接输入您的问题。"}
CHANGES = ("message_changed", "message_deleted")  # a message edited or deleted (SlackChannel._changed)
ENV = {
    "signing_secret": "DESKBOT_SLACK_SIGNING_SECRET",
    "bot_token": "DESKBOT_SLACK_BOT_TOKEN",
    "api_url": "DESKBOT_SLACK_API_URL",
}
REQUIRED = ("signing_secret", "bot_token")
# The tokens of a Slack app that are not its bot token, which an admin may paste in its place, and what they do there.
WRONG_TOKENS = {"xapp-": "an App-Level Token, with which Slack refuses every message the bot posts",
                "xoxp-": "a User OAuth Token, with which the bot posts as the person who installed the app"}
MEMBER_ID = re.compile(r"[UWS][A-Z0-9]+")  # a Slack user's id (U…, W… on Enterprise Grid), or a user group's (S…)
# The Bot Token Scopes the channel needs (docs/channels.md, step 3), each with what goes amiss without it: Slack sends no
# event of a scope the app lacks (message.channels needs channels:history), and refuses the methods that need it.
SCOPES = {
    "chat:write": "no answer is posted (Slack refuses each, and its customer is handed to an agent as undelivered)",
    "channels:history": "a channel's messages are heard only where they mention the bot (app_mention), replies in "
                        "a thread too (a customer's answer to the bot's question, what they write to an agent), and "
                        "their edits and deletions not at all: a message its customer deleted stays in the transcript",
    "im:history": "direct messages to the bot are not heard",
    "users:read": "colleagues and the people customers mention are shown by their Slack user ids",
}
GROUP_SCOPE = "usergroups:read"  # needed too where team_users names a user group (_list_groups)
# Slack's own words, in an answer of HTTP 200, for what a 503 and a 500 say (UNAVAILABLE, MAYBE_SENT): down for a moment,
# nothing done, to be tried again; an error on its side after which, Slack says, "some aspect of the operation" may
# have succeeded: the message may be posted. Each was a refusal: the first handed its customer to an agent for a
# hiccup, the second too, with the answer most likely in the thread, and an agent told it failed sent it again.
BUSY_ERRORS = frozenset({"service_unavailable"})
MAYBE_DONE_ERRORS = frozenset({"internal_error", "fatal_error"})
# Slack's errors for a post to a channel the bot cannot post in now, each with its fix
CHANNEL_ERRORS = {
    "not_in_channel": "the bot is no member of the channel: invite it there, /invite @yourbot",
    "channel_not_found": "the channel is gone, or private and the bot no member of it: invite it there, /invite @yourbot",
    "is_archived": "the channel is archived: unarchive it to answer there",
}
# Slack's errors for a bot token it no longer takes (the app uninstalled, the token revoked or mistyped)
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
# Slack's markup in a message's text: <https://…|label>, <mailto:…>, <@U…>, <#C…|name>, <!here>, <!subteam^…|@team>.
MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
SOMEONE = "@someone"  # what the model reads for a mention of a person other than the bot
MENTIONED = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")  # a person's mention in Slack's markup, and their id
ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))  # the three characters Slack escapes; &amp; last


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def plain_text(text: str, person: Callable[[str, str | None], str] | None = None) -> str:
    """Slack's markup undone: a link or a mention as it reads (its label, else its target: ``@here``,
    ``#general``, the URL), and ``&lt;``, ``&gt;`` and ``&amp;`` back to what the person typed. A mention of a
    person (``<@U07…>``, ``<@U07…|name>``) is what ``person`` makes of their id and label, where one is given."""

    def as_read(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@") and person is not None:
            return person(target[1:], label)
        if target.startswith("#"):
            return f"#{label}" if label else target
        if target.startswith("!"):  # <!here>, <!channel>; a user group or a date carries its label
            return label or "@" + target[1:].split("^")[0]
        return label or target

    text = MARKUP.sub(as_read, text)
    for escaped, character in ESCAPES:
        text = text.replace(escaped, character)
    return text


def verify_slack_request(secret: str, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    """True when the timestamp is within 5 minutes of ``now`` and the signature matches.

    The window stops replays of captured requests; the constant-time comparison stops an attacker
    from learning the signature byte by byte from response timings.
    """
    if not is_fresh(timestamp, now):
        return False
    return same_secret(signature, slack_signature(secret, timestamp, body))


def refusal(secret: str, timestamp: str, signature: str, body: bytes, now: float) -> str | None:
    """Why :func:`verify_slack_request` refused a request that carries Slack's signature, in the words of its fix
    (were every request of Slack's refused so): signed with ``secret`` too long before or after ``now`` (this server's
    clock is off, or the request is replayed), else signed with another secret (the app's Client Secret, say).
    None for a request without Slack's signature headers, which Slack did not send."""
    off = skew(timestamp, now)
    if off is None or not signature.startswith("v0="):
        return None
    if same_secret(signature, slack_signature(secret, timestamp, body)):
        return clock_off(off, "Slack")
    return (f"its signature is not made with channels.slack.signing_secret (or {ENV['signing_secret']}): if every "
            "request of Slack's is refused so, set it to the app's Signing Secret (Basic Information, App "
            "Credentials), not its Client Secret or Verification Token")


def slack_length(text: str) -> int:
    """``text``'s length as Slack counts it against its limits: in UTF-16 code units, as its Block Kit Builder and its
    SDKs count, where an emoji beyond the Basic Multilingual Plane (😀, 👍) is two and a Chinese character one.
    Counted as Python's characters, an answer of emoji past half a block's limit was refused whole."""
    return len(text.encode("utf-16-le")) // 2


def slack_cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` as Slack counts (:func:`slack_length`), at a break a reader expects where
    there is one (:func:`~bot.channels.base.message_pieces`), never inside an emoji."""
    return message_pieces(text, limit, size=slack_length)[0]


def message_blocks(text: str, buttons: list[dict[str, str]], conversation_id: str = "",
                   shared: bool = False, custom: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Block Kit for a reply: its Markdown text, then the ``blocks`` of its ``custom`` payloads
    (:func:`~bot.responses.slack_blocks`) as the shop wrote them for Slack (a Rasa bot's Slack responses are such
    payloads), then one button per template button. The text is a block of its own, as Rasa's Slack channel posts a
    response's text apart from its custom payload: Slack shows a message's blocks alone, and an action's "Our
    mugs:" before its blocks was only their notification.

    A button's ``value`` is its payload, sent back by Slack when it is clicked; Slack's length
    limits are applied here so that one long title cannot make the whole message fail. ``text`` is
    at most ``MARKDOWN_LIMIT`` characters long (:func:`~bot.channels.base.message_pieces`). The buttons' block is named
    after the conversation, which a click on an org-wide (Enterprise Grid) install, sent without its
    team, is known by, and says whether it is in a Slack Connect channel (``shared``), which a click does not
    (:func:`named_block`).
    """
    shops = within_sections([block for block in answerable([block for payload in custom
                                                              for block in slack_blocks(payload)])])
    blocks: list[dict[str, Any]] = ([{"type": "markdown", "text": text}] if text else []) + shops
    elements = [
        {
            "type": "button",
            "action_id": f"{BUTTON_ACTION}_{i}",
            "text": {"type": "plain_text", "text": slack_cut(button["title"], MAX_BUTTON_TITLE_CHARS), "emoji": True},
            "value": slack_cut(button["payload"], BUTTON_VALUE_LIMIT),
        }
        for i, button in enumerate(buttons)
    ]
    named = f"{conversation_id}:{SHARED_BLOCK}" if shared and conversation_id else conversation_id
    # Slack takes 25 buttons in a block: more (an action's, or the handoff's button after a template's 25) go on in
    # blocks of their own, each block_id once in the message (the n-th after the first ends ":n")
    for n in range(0, len(elements), MAX_BUTTONS):
        block_id = f"{named}:{n // MAX_BUTTONS}" if n and named else named
        blocks.append({"type": "actions", "elements": elements[n:n + MAX_BUTTONS],
                       **({"block_id": block_id} if 0 < len(block_id) <= BLOCK_ID_LIMIT else {})})
    return blocks


def within_sections(blocks: list[Any]) -> list[Any]:
    """The shop's ``blocks`` with each section whose text passes ``SECTION_LIMIT`` (as Slack counts,
    :func:`slack_length`) cut into sections of one piece each, at a break a reader expects, the first keeping its
    ``block_id``, ``accessory`` and ``fields``: an action's long product description in one section had Slack refuse
    the whole reply (``invalid_blocks``), and its customer handed to a person as undelivered."""
    fitted: list[Any] = []
    for block in blocks:
        text = block.get("text") if isinstance(block, dict) and block.get("type") == "section" else None
        if not (isinstance(text, dict) and isinstance(text.get("text"), str)
                and slack_length(text["text"]) > SECTION_LIMIT):
            fitted.append(block)
            continue
        first, *rest = message_pieces(text["text"], SECTION_LIMIT, size=slack_length)
        fitted += [{**block, "text": {**text, "text": first}},
                   *({"type": "section", "text": {**text, "text": piece}} for piece in rest)]
    return fitted


def posts(channel: str, thread_ts: str, piece: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``chat.postMessage`` arguments for one piece of a reply and its ``blocks``: one message, or several
    (:func:`block_messages`), with a warning, where the blocks would pass what Slack takes in one, which refused the
    whole reply. The first carries ``piece`` as its ``text``, each later one the text of its ``markdown`` blocks as plain
    text (the shop's own, which went on there): without it, screen readers, which read a message's ``text`` alone,
    read nothing of that message, and its notification said nothing either."""
    chunks = block_messages(blocks)
    if len(chunks) > 1:
        log.warning("a reply of %d Slack blocks is posted in %d messages: Slack takes at most %d blocks in a message, "
                    "each block_id once, markdown blocks of %d characters in all, and %d characters of text in all its "
                    "blocks, each after the first counting %d more", len(blocks), len(chunks), MAX_BLOCKS, MARKDOWN_LIMIT,
                    MESSAGE_TEXT_LIMIT, BLOCK_COST)
    messages = []
    for n, chunk in enumerate(chunks):
        said = unmarked("\n\n".join(block["text"] for block in chunk if isinstance(block, dict) and block.get(
            "type") == "markdown" and isinstance(block.get("text"), str))) if n else piece
        # ``text`` is mrkdwn, where <…> is a mention or a link and & starts an entity: a reply's own "<3 days"
        # or "<!channel>" must read as written (Slack's formatting reference asks for these three escaped).
        message: dict[str, Any] = {"channel": channel,
                                   "text": said.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}
        if thread_ts:  # none at a DM's top level, where its customer writes
            message["thread_ts"] = thread_ts
        if chunk:  # ``text`` stays as the notification and screen-reader fallback
            message["blocks"] = chunk
        messages.append(message)
    return messages


def payload_text(custom: Sequence[Any]) -> str:
    """The ``text`` of the first custom payload of blocks that has one (``json_message={"text": …, "blocks": […]}``),
    which Rasa's Slack channel posts as the message's notification and screen-reader fallback: a reply of such a
    payload alone has no text of its own, and Slack's notification of it said nothing."""
    return next((payload["text"] for payload in custom if slack_blocks(payload) and isinstance(payload.get("text"), str)),
                "")


def block_text(block: Any) -> int:
    """What ``block``'s texts (a ``markdown`` block's, a section's, each button's title), wherever they are in it,
    count against ``MESSAGE_TEXT_LIMIT`` (:func:`slack_length`)."""
    if isinstance(block, dict):
        return sum(slack_length(v) if k == "text" and isinstance(v, str) else block_text(v) for k, v in block.items())
    return sum(map(block_text, block)) if isinstance(block, list) else 0


def block_messages(blocks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``blocks`` in the messages Slack takes, in order: at most ``MAX_BLOCKS`` each, a ``block_id`` once in each
    (an action uttering two payloads built alike, each posted on its own by Rasa, gave one message twice the id),
    at most ``MARKDOWN_LIMIT`` characters of ``markdown`` blocks in each, a limit Slack counts over all of a message's
    (a long answer's text with the shop's own markdown blocks under it passed it, and Slack refused the whole reply),
    and at most ``MESSAGE_TEXT_LIMIT`` of text in all (:func:`block_text`, each block after the first ``BLOCK_COST``
    more): a long answer with its buttons under it passed that, and Slack refused it (``msg_blocks_too_long``). All
    counted as Slack counts (:func:`slack_length`)."""
    chunks: list[list[dict[str, Any]]] = [[]]
    named: set[str] = set()
    written = held = 0  # the characters of the markdown blocks in the last message, and what all its blocks count for
    for block in blocks:
        block_id = block.get("block_id") if isinstance(block, dict) else None
        text = block.get("text") if isinstance(block, dict) and block.get("type") == "markdown" else None
        size, counted = slack_length(text) if isinstance(text, str) else 0, block_text(block)
        if len(chunks[-1]) == MAX_BLOCKS or isinstance(block_id, str) and block_id in named or (
                chunks[-1] and (written + size > MARKDOWN_LIMIT or held + BLOCK_COST + counted > MESSAGE_TEXT_LIMIT)):
            chunks.append([])
            named.clear()
            written = held = 0
        if isinstance(block_id, str):
            named.add(block_id)
        written += size
        held += counted + (BLOCK_COST if chunks[-1] else 0)
        chunks[-1].append(block)
    return chunks


def named_block(block_id: str) -> tuple[list[str], bool]:
    """The parts of the conversation id a block of the bot's buttons is named after (:func:`message_blocks`), and
    whether it was posted in a Slack Connect channel."""
    named = block_id.split(":")
    return named[:4], SHARED_BLOCK in named[4:]


def answerable(blocks: list[Any]) -> list[Any]:
    """The shop's own ``blocks`` with each button that names no ``action_id`` (its ``value`` a payload, in an
    ``actions`` block or as a section's ``accessory``) named as deskbot's, so that its click is answered as its value
    typed, as Rasa's Slack channel answers it: Slack named such a button itself, and its click was ignored as another
    app's. A menu of options and a date picker (:data:`CHOICES`) are named so too, a choice answered as the option's
    value typed, or the date picked as ``2026-12-24``, as Rasa answers them. An element with an ``action_id`` of the
    shop's own is left to the shop."""
    count = itertools.count()

    def named(element: Any) -> Any:
        if not (isinstance(element, dict) and "action_id" not in element and (
                element.get("type") == "button" and isinstance(element.get("value"), str)
                or element.get("type") in CHOICES)):
            return element
        return {**element, "action_id": f"{BUTTON_ACTION}_custom_{next(count)}"}

    def in_block(block: Any) -> Any:
        if not isinstance(block, dict):
            return block
        if block.get("type") == "actions" and isinstance(block.get("elements"), list):
            return {**block, "elements": [named(element) for element in block["elements"]]}
        return {**block, "accessory": named(block["accessory"])} if "accessory" in block else block

    return [in_block(block) for block in blocks]


def check_settings(bot_token: str, team_users: list[str]) -> None:
    """Refuse, at start, a ``bot_token`` of another kind than the bot's and ``team_users`` that name no one: an
    App-Level Token had Slack refuse every answer, a User OAuth Token made the bot answer as a person, and a colleague
    named by name or mention (``@ada``) was answered as a customer."""
    if kind := next((kind for prefix, kind in WRONG_TOKENS.items() if bot_token.startswith(prefix)), None):
        raise ValueError(f"bot_token is {kind}: set it to the Bot User OAuth Token (xoxb-…, under OAuth & Permissions)")
    if odd := [member for member in team_users if not MEMBER_ID.fullmatch(member)]:
        raise ValueError(f"team_users holds {', '.join(map(repr, odd))}, no Slack ids: a person's id starts with U or W "
                         "(their profile, ⋮ → Copy member ID), a user group's with S (its page, ⋮ → Copy group ID)")


def is_group(member: str) -> bool:
    """Whether ``member`` of ``team_users`` is a Slack user group's id (``S0614TZR7``), not a user's (``U…``, ``W…``)."""
    return member.startswith("S")


def is_dm(channel: str) -> bool:
    """Whether ``channel`` is a direct message with the bot (its id starts with D): one person writes there, never a
    colleague in a customer's thread, so a member of ``team_users`` is answered there as anyone is."""
    return channel.startswith("D")


def in_thread(channel: str, thread: str) -> str:
    """The thread a message's conversation is: its own, but none in a direct message (a channel id starting
    with D), which is one conversation with its customer, answered at the top level where they write: they
    answered the bot's question there, and each answer started a new conversation, the question lost."""
    return "" if is_dm(channel) else thread


def dm_thread(channel: str, thread_ts: str) -> str:
    """Where to answer in a DM besides its top level: the thread a message was written or a button clicked in
    (one of the bot's answers, replied to), as the customer reads on there; empty elsewhere."""
    return thread_ts if is_dm(channel) else ""


def conversation_of(team: str, channel: str, thread: str) -> str:
    """The id of the conversation a message in ``thread`` of ``channel`` belongs to (:class:`SlackChannel`)."""
    return f"slack:{team}:{channel}:{in_thread(channel, thread)}"


NOTED = "slack:ts:"  # how the key of each Slack message the store keeps starts (message_key), a colleague's note's too


def message_key(channel: str, ts: str) -> str:
    """The key the store knows a Slack message by (``Store.receive``): its channel and its ``ts``."""
    return f"{NOTED}{channel}:{ts}"


def written_lately(ts: str) -> bool:
    """Whether the message of Slack's ``ts`` was written within ``MAX_SKEW_S`` of now, which a platform message's
    keys outlast (``RecentKeys``, ``Store.receive``): a redelivery, an edit or a deletion of it may still come."""
    return is_fresh(ts.partition(".")[0], time.time())


def retry_after(header: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header (Slack sends whole seconds); 1 if absent or odd."""
    try:
        return max(0.0, float(header)) if header is not None else 1.0
    except ValueError:
        return 1.0


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: payload fields are never trusted to be."""
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str:
    """``value`` if it is a JSON string in valid Unicode, else an empty one: a JSON escape can carry half a
    surrogate pair, which the store cannot keep (an id so spelled failed every delivery of its event)."""
    return value if isinstance(value, str) and valid_unicode(value) else ""


def shown_name(member: dict[str, Any], user: str) -> str:
    """The name Slack shows for ``member`` (a ``users.info`` or ``user_change`` user object): their display name, else
    their full name, else their username; ``user``, their id, where none is set."""
    profile = _object(member.get("profile"))
    return next((_string(n).strip() for n in (profile.get("display_name"), profile.get("real_name"),
                                              member.get("real_name"), member.get("name")) if _string(n).strip()), user)


def api_error(result: dict[str, Any]) -> str:
    """Slack's error code in a Web API answer, with what to do where the fix is the app's settings: a scope the app
    lacks (which Slack names in ``needed``), a token revoked or wrong, the bot out of the channel; else with what Slack
    says of it in ``response_metadata.messages`` (the first three): which block of the shop's Slack payload Slack
    refused, and why. The code alone ("invalid_blocks", "invalid_auth"), logged for each answer that failed, left the
    operator to look it up, or to guess which of their blocks was wrong."""
    error = _string(result.get("error")) or "unknown error"
    if error == "missing_scope" and _string(result.get("needed")):
        return f"{error} (add the {result['needed']} scope to the Slack app and reinstall it)"
    if error == "no_such_subteam":
        return f"{error} (no user group of the workspace has this id: copy it from the group's page, ⋮ → Copy group ID)"
    if error in TOKEN_ERRORS:
        return (f"{error} (the bot token is not valid: reinstall the app to the workspace and set channels.slack.bot_token, "
                f"or {ENV['bot_token']}, to its Bot User OAuth Token)")
    if error in CHANNEL_ERRORS:
        return f"{error} ({CHANNEL_ERRORS[error]})"
    said = _object(result.get("response_metadata")).get("messages")
    details = [_string(line)[:200] for line in said if _string(line)][:3] if isinstance(said, list) else []
    return f"{error} ({'; '.join(details)})" if details else error


def authorized_team(payload: dict[str, Any]) -> str:
    """The workspace deskbot is installed in, which an event is delivered for: its authorization's team.
    Empty on an org-wide (Enterprise Grid) install, whose authorization names no team."""
    authorizations = payload.get("authorizations")
    first = _object(authorizations[0]) if isinstance(authorizations, list) and authorizations else {}
    return _string(first.get("team_id"))


def installed_team(payload: dict[str, Any]) -> str:
    """The team a conversation is known by: :func:`authorized_team`, else the top-level ``team_id``. The two are
    the same in a workspace's own channels, but in a Slack Connect channel ``team_id`` is the workspace that
    shared the channel, a customer's, which a click on the bot's buttons does not name."""
    return authorized_team(payload) or _string(payload.get("team_id"))


def from_support_team(payload: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether a message in a Slack Connect channel (one shared with another organisation: a customer's) was
    written by a member of the workspace deskbot is installed in, the support team, whose notes in a
    customer's thread are no customer's question to answer or to keep as theirs."""
    own = authorized_team(payload)
    author = _string(event.get("user_team")) or _string(event.get("team"))
    return payload.get("is_ext_shared_channel") is True and bool(own) and author == own


def sent_kind(event: dict[str, Any]) -> str:
    """What came with a message that the bot cannot read, in :data:`~dialogues.holding.SENT`'s words: its files,
    ``image`` when all are pictures, else ``file``; else ``link`` for a Slack message it shares (an attachment marked
    ``is_share`` or ``is_msg_unfurl``, whose words are someone else's); empty when nothing came."""
    given, attached = event.get("files"), event.get("attachments")
    files = [_object(file) for file in given] if isinstance(given, list) else []
    if files:
        return "image" if all(_string(f.get("mimetype")).startswith("image/") for f in files) else "file"
    attachments = [_object(a) for a in attached] if isinstance(attached, list) else []
    return "link" if any(a.get("is_share") or a.get("is_msg_unfurl") for a in attachments) else ""


def file_note(event: dict[str, Any], text: str) -> str:
    """What the agents read beside a message's words of the files that came with them (``Turn.attached``): "[picture]"
    or "[file]" in the words' language; empty for a message without files or without words."""
    kind = sent_kind(event)
    return SENT[kind][mostly_written_in(text)] if kind and text else ""


def rate_limited(payload: dict[str, Any]) -> None:
    """Say in the log that Slack holds back the events of a workspace (``app_rate_limited``, sent once as it begins):
    past 30,000 events an hour from it, or 5% of deliveries not answered 200, Slack sends the app none for a while, and
    its customers' messages meanwhile never reach the bot. Acknowledged in silence, nothing told anyone why."""
    minute = payload.get("minute_rate_limited")
    since = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(minute))
             if isinstance(minute, int) and 0 <= minute < 2 ** 40 else "now")
    log.error("Slack holds back the events of workspace %s since %s: more than 30,000 in an hour (or too many not "
              "answered 200); customers' messages meanwhile do not reach the bot. Subscribe to fewer events "
              "(message.channels brings every message of every channel the app is in)", _string(payload.get("team_id"))
              or "?", since)


def said_retried(request: web.Request, payload: dict[str, Any]) -> None:
    """Say in the log that Slack sent an event again (``X-Slack-Retry-Num``), and why (``X-Slack-Retry-Reason``):
    deskbot did not answer an earlier delivery 200 in time, which made its answer late, and which Slack, past a
    share of its deliveries, answers by holding the app's events back or turning them off."""
    retry = request.headers.get("X-Slack-Retry-Num")
    if retry:
        log.warning("Slack sent event %s again (its retry %.8s, %.40s): deskbot did not answer an earlier delivery "
                    "with 200 within 3 seconds (the server down or restarting, or an error); its message is answered "
                    "once", _string(payload.get("event_id")) or "?", retry,
                    request.headers.get("X-Slack-Retry-Reason", "no reason given"))


class SlackAPIError(DeliveryError):
    """Slack's Web API answered with ``ok: false``, a non-2xx status, or kept rate-limiting."""

    def __init__(self, message: str, error: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.error = error  # Slack's error code, where it gave one ("user_not_found")
        self.status = status  # the HTTP status of an answer that was no Web API answer (404), where one came

    @property
    def refused(self) -> bool:
        """Whether the same call would be refused again until the admin mends something: Slack's error code (a scope
        missing, the token revoked), or a 4xx answer that is none of Slack's (a mistyped ``api_url``'s 404)."""
        return bool(self.error) or 400 <= self.status < 500


class SlackMaybePosted(SlackAPIError, MaybeDelivered):
    """chat.postMessage timed out, answered 500 or 504, or said internal_error: Slack may have posted the message."""


class SlackChannel(PlatformChannel):
    """The Events API and interactivity input side and the ``chat.postMessage`` output side.

    Conversation ids are ``slack:{team}:{channel}:{thread_ts or ts}``: one conversation per thread,
    which is also where the bot answers; in a direct message ``slack:{team}:{channel}:``, one conversation
    with its customer, answered where they write (:func:`in_thread`).
    """

    name = "slack"
    platform = "Slack"
    env = ENV
    required = REQUIRED
    paths = ("/slack/events", "/slack/interactions")

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        super().__init__(bot, settings)
        self.max_body_bytes = max(self.max_body_bytes, MIN_EVENT_BYTES)
        self.signing_secret: str = self.settings["signing_secret"]
        self.bot_token: str = self.settings["bot_token"]
        self.api_url = api_base(self.settings.get("api_url") or DEFAULT_API_URL)
        # The bot's own user id is learnt from each event's ``authorizations``; bot_user_id can pin it.
        self.own_user_ids: set[str] = {self.settings["bot_user_id"]} if self.settings.get("bot_user_id") else set()
        # The support team's members, where a channel does not tell them from customers (one of the workspace's own,
        # not Slack Connect): their words are an agent's (:meth:`_note`), their clicks not the customer's. Named by
        # their user ids, or by user groups (S…), whose members Slack lists (:meth:`on_team`).
        named = [str(member) for member in self.settings.get("team_users") or ()]
        check_settings(self.bot_token, named)
        self.team_users: frozenset[str] = frozenset(member for member in named if not is_group(member))
        self.team_groups: tuple[str, ...] = tuple(member for member in named if is_group(member))
        self._group_members: dict[str, frozenset[str]] = {}  # each group's members, as Slack listed them last
        self._groups_due = 0.0  # the time.monotonic() from which the groups are listed again
        self._listing: asyncio.Task[None] | None = None  # their listing under way
        self._posting: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()  # per channel
        # The Slack Connect channels, as events say: a click says nothing of it, so the buttons posted there say it.
        self.shared_channels: set[str] = set()
        # the support team's names by Slack user id (users.info), each with the time.monotonic() it was learnt at
        self._member_names: dict[str, tuple[str, float]] = {}
        # the user ids Slack answered user_not_found for, each with the time.monotonic() it did, oldest first
        self._unknown_users: dict[str, float] = {}
        self._looking_up: dict[str, asyncio.Task[None]] = {}  # the users.info calls under way, by user id
        self._names_refused_until = 0.0  # the time.monotonic() until which users.info is not asked (_names_paused)
        self._names_said: float | None = None  # the pause the log told of since Slack last answered a lookup
        self._scopes: str | None = None  # the token's scopes, as Slack's latest answer said them (X-OAuth-Scopes)
        self._kept_by_id: set[str] = set()  # the colleagues whose notes were kept by their user id (Store.name_member)
        # the names the store keeps colleagues by, by user id (Store.kept_members), as read at start, then renamed
        self._kept_names: dict[str, str] = {}
        # the renames refused as another person has the old name too (user id, old name, new name), said once each
        self._refused_renames: set[tuple[str, str, str]] = set()
        self._holding: set[str] = set()  # those of them who held customers as the server started (_name_colleagues)
        self._colleagues: set[str] = set()  # the user ids of those who wrote notes since the server started (_note)
        self._recalling: asyncio.Task[None] | None = None  # those kept so before this server started (_name_kept)
        # The messages (message_key) their customers deleted lately, for which nothing is posted any more: neither an
        # answer nor a hint or a notice to wait, which the store keeps no row of to withdraw (:meth:`send`).
        self._deleted = RecentKeys()

    def start(self) -> None:
        self._tasks.spawn(self._check_token())
        self._tasks.spawn(self._name_colleagues())

    async def _name_colleagues(self) -> None:
        """Ask Slack, as the server starts, the names of the colleagues the store keeps who hold customers now
        (:meth:`member_name`), which renames there those Slack now names otherwise (:meth:`_name_kept`): one renamed
        in Slack while no server ran held the customers they took by the old name until they wrote again. The first
        ``MAX_NAMES_AT_START`` of them alone (by user id): asking for every colleague ever kept hit Slack's rate limit
        in a big team, which paused the names of the people customers mention too (:meth:`_names_paused`). The others
        are renamed as they write again or Slack tells of their change (:meth:`_user_changed`)."""
        if self.bot.store is None:
            return
        await self._recalled()
        await asyncio.gather(*(self.member_name(user) for user in sorted(self._holding)[:MAX_NAMES_AT_START]))

    async def _check_token(self) -> None:
        """Ask Slack who the bot token is (``auth.test``, as Slack advises an app to check its token), and say so in
        the log: its bot user and workspace, whose bot user id the bot learns (its mentions, before any event said
        it); else, with its fix, that Slack refused it (revoked, mistyped, the app uninstalled, an ``api_url`` with no
        Web API) or could not be reached. Either showed only when a customer's first answer failed, and that customer
        was handed to an agent as undelivered. The server starts all the same: its other channels and the agents'
        console serve on, and a Slack down for a moment is no reason to stop."""
        try:
            result = await self._call("auth.test", {}, form=True)
        except Stopping:
            return
        except UNDELIVERED as exc:
            if isinstance(exc, SlackAPIError) and exc.refused:
                log.error("Slack refused the bot token at start (%s): no answer reaches Slack's customers, each handed "
                          "to an agent as undelivered, until it is set right", failure(exc))
            else:
                log.warning("Slack could not be reached at start (%s): check channels.slack.api_url (or %s), now %s, "
                            "and that this server can reach it; answers are tried as messages come", failure(exc),
                            ENV["api_url"], shown_url(self.api_url))
            return
        if user := _string(result.get("user_id")):
            self.own_user_ids.add(user)
        log.info("Slack: the bot token is the bot user %s (%s) of workspace %s (%s)", _string(result.get("user")) or "?",
                 user or "?", _string(result.get("team")) or "?", _string(result.get("team_id")) or "?")
        self._say_missing_scopes()

    def _say_missing_scopes(self) -> None:
        """Say in the log, at start, the scopes the bot token lacks of those the channel needs (:data:`SCOPES`), and
        what goes amiss without each, as Slack's answer to ``auth.test`` names the token's: without
        ``channels:history`` the app cannot subscribe to ``message.channels``, and hears mentions alone, whose
        deletions Slack never sends; a customer who deleted a message (their card number, sent by mistake) had it
        kept, and learnt from, with nothing said. Nothing where Slack's answer did not name them (a proxy's)."""
        if self._scopes is None:
            return
        granted = {scope.strip() for scope in self._scopes.split(",")}
        needed = {**SCOPES, **({GROUP_SCOPE: "the members of team_users' user groups are answered as customers"}
                               if self.team_groups else {})}
        if missing := [scope for scope in needed if scope not in granted]:
            log.warning("Slack: the bot token lacks the scope%s %s (OAuth & Permissions, Bot Token Scopes; then reinstall "
                        "the app to the workspace): %s", "s" if len(missing) > 1 else "", ", ".join(missing),
                        "; ".join(f"without {scope}, {needed[scope]}" for scope in missing))

    def routes(self) -> list[web.AbstractRouteDef]:
        events, interactions = self.paths
        return [web.post(events, self.handle_events), web.post(interactions, self.handle_interactions)]

    async def _verified_body(self, request: web.Request) -> bytes:
        body = await read_body(request, self.max_body_bytes)
        signed_at = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        now = time.time()
        if not verify_slack_request(self.signing_secret, signed_at, signature, body, now):
            self.say_refused(request.path, lambda: refusal(self.signing_secret, signed_at, signature, body, now))
            raise http_error(web.HTTPUnauthorized, "bad or stale Slack signature")
        return body

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        body = await self._verified_body(request)
        try:
            payload = load_json(body)
        except ValueError as exc:  # UnicodeDecodeError included
            raise http_error(web.HTTPBadRequest, f"malformed JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise http_error(web.HTTPBadRequest, "JSON body must be an object")
        if payload.get("type") == "url_verification":
            return web.json_response({"challenge": payload.get("challenge", "")})
        if payload.get("type") == "app_rate_limited":
            rate_limited(payload)
        if payload.get("type") == "event_callback" and isinstance(payload.get("event"), dict):
            said_retried(request, payload)
            self._groups_changed(payload["event"])
            self._user_changed(payload["event"])
            self._learn_own_ids(payload)
            on_team = await self._learn_about(payload)
            turn = self._turn(payload)
            if turn is not None and on_team and not is_dm(turn.metadata["channel"]):
                turn.metadata["support_team"] = True
            if turn is None and payload["event"].get("subtype") in CHANGES:
                await self._changed(payload)
            # An edited message that mentions the bot comes again as an app_mention, plain. Written minutes ago, it is
            # answered unless its first delivery was (the turn's keys remember it): a mention added by an edit, where
            # the app hears mentions alone. Older, those keys may have forgotten it: it is not answered again, and the
            # store takes the edit of a message it holds, the customer's or a colleague's.
            elif turn is not None and payload["event"].get("edited") and not written_lately(turn.metadata["ts"]):
                await self._edited(turn, message_key(turn.metadata["channel"], turn.metadata["ts"]),
                                   sent_kind(payload["event"]) or MENTION)
            elif turn is not None and turn.metadata.get("support_team"):
                await self._note(turn, sent_kind(payload["event"]) or MENTION, bool(payload["event"].get("edited")))
            elif turn is not None and turn.text:
                await self._start(request, turn, message_key(turn.metadata["channel"], turn.metadata["ts"]),
                                  bool(payload["event"].get("edited")))
            elif turn is not None:
                await self._unread(request, turn, sent_kind(payload["event"]) or MENTION,
                                   bool(payload["event"].get("edited")))
        return web.Response(status=200)

    async def handle_interactions(self, request: web.Request) -> web.StreamResponse:
        """A button click: a form with one field, ``payload``, holding the interaction as JSON."""
        body = await self._verified_body(request)
        try:
            payload = load_json(parse_qs(body.decode(), strict_parsing=True)["payload"][0])
        except (ValueError, KeyError) as exc:
            raise http_error(web.HTTPBadRequest, "expected a form field 'payload' holding JSON") from exc
        if not isinstance(payload, dict):
            raise http_error(web.HTTPBadRequest, "payload must be a JSON object")
        clicked = {"block_actions": self._click, "interactive_message": self._attachment_click}.get(payload.get("type"))
        if clicked is not None:
            turn = clicked(payload)
            # a colleague's click is no customer's, but in their own DM with the bot
            if turn is not None and (is_dm(turn.metadata["channel"]) or not await self.on_team(turn.user or "")):
                await self._start(request, turn, f"slack:click:{payload['trigger_id']}")
        return web.Response(status=200)

    def _turn(self, payload: dict[str, Any]) -> Turn | None:
        """The :class:`Turn` for a new user message, or None for anything to ignore; a message of the support team's
        in a Slack Connect channel (:func:`from_support_team`) is marked ``support_team`` in its metadata;
        :meth:`handle_events` marks those of ``team_users`` so too (:meth:`on_team`)."""
        event: dict[str, Any] = payload["event"]
        self._note_shared(payload, _string(event.get("channel")))
        if event.get("type") not in ("message", "app_mention"):
            return None
        user, channel, ts = _string(event.get("user")), _string(event.get("channel")), _string(event.get("ts"))
        # Edits, deletions, joins and bot posts all arrive as subtypes; a customer's own words come plain,
        # as a thread reply also sent to the channel, with a file attached, or written with /me (and Slackbot's
        # reminders too).
        if (event.get("subtype") not in CUSTOMER_SUBTYPES or event.get("bot_id") or user in self.own_user_ids
                or user == SLACKBOT):
            return None
        if not (user and channel and ts):
            return None
        # A mention in a channel arrives twice (``message`` and ``app_mention``, with different
        # event ids) but with the same channel and ts, so both keys must be new.
        event_id = _string(payload.get("event_id"))
        seen = ((f"event:{event_id}",) if event_id else ()) + (f"ts:{channel}:{ts}",)
        # Slack has already been told 200, so an over-long message is cut rather than refused.
        text, written = self._read(_string(event.get("text")))
        if not readable(text):
            if not sent_kind(event):
                if not self._mentions_me(_string(event.get("text"))):
                    return None
                # The bot mentioned alone, to start (:meth:`_unread` asks for the question): its edit that adds the
                # question keeps the message's own key, so that it is answered.
                seen = seen[:-1] + (f"mention:{channel}:{ts}",)
            text = written = ""  # files alone, or a shared message, which the bot cannot read (:meth:`_unread`)
        team = installed_team(payload) or _string(event.get("team"))
        thread = _string(event.get("thread_ts")) or ts
        answer_in = dm_thread(channel, _string(event.get("thread_ts")))
        return Turn(
            conversation_id=conversation_of(team, channel, thread),
            text=text,
            channel=self.name,
            user=user,
            written=written if written != text else "",
            attached=file_note(event, text),
            metadata={"team": team, "channel": channel, "ts": ts, "thread_ts": thread, "event_id": event_id,
                      **({"answer_in": answer_in} if answer_in else {}),
                      **({"support_team": True} if from_support_team(payload, event) else {})},
            seen=seen,
        )

    def _learn_own_ids(self, payload: dict[str, Any]) -> None:
        """Learn the bot's own user id from an event's ``authorizations`` (``bot_user_id`` can pin it)."""
        authorizations = payload.get("authorizations")
        for auth in authorizations if isinstance(authorizations, list) else []:
            if _object(auth).get("is_bot") and _string(auth.get("user_id")):
                self.own_user_ids.add(auth["user_id"])

    def _note_shared(self, payload: dict[str, Any], channel: str) -> None:
        """Remember whether ``channel`` is a Slack Connect channel, as an event's ``is_ext_shared_channel`` says, in
        which the support team is known (:func:`from_support_team`): a click there names its conversation's team,
        which is the support team's only where the event named the workspace deskbot is installed in."""
        shared = payload.get("is_ext_shared_channel")
        if shared is True and authorized_team(payload):
            self.shared_channels.add(channel)
        elif shared is not None:
            self.shared_channels.discard(channel)

    def _click(self, payload: dict[str, Any]) -> Turn | None:
        """The :class:`Turn` for a click on one of the bot's buttons: its payload, in its thread; None for a click
        of the support team's in a Slack Connect channel (:func:`from_support_team`)."""
        actions = payload.get("actions")
        action = _object(actions[0]) if isinstance(actions, list) and actions else {}
        # a button's value, or the value of the option chosen in a menu of the shop's blocks (answerable), or the date
        value = _string(action.get("value") or _object(action.get("selected_option")).get("value")
                        or action.get("selected_date"))
        value = value[: self.max_message_chars]
        if not _string(action.get("action_id")).startswith(BUTTON_ACTION) or not readable(value):
            return None
        container, message = _object(payload.get("container")), _object(payload.get("message"))
        channel = _string(container.get("channel_id")) or _string(_object(payload.get("channel")).get("id"))
        thread = _string(container.get("thread_ts") or message.get("thread_ts") or container.get("message_ts")
                         or message.get("ts"))
        clicker = _object(payload.get("user"))
        if not (channel and thread):
            return None
        # The block names the conversation its buttons were posted into (message_blocks): an org-wide install's
        # click comes with "team": null, and in a Slack Connect channel the team may not be the one events named.
        named, shared = named_block(_string(action.get("block_id")))
        if (len(named) == 4 and named[0] == self.name and named[2] == channel  # a DM's block from before: its ts
                and in_thread(channel, named[3]) == in_thread(channel, thread)):
            team = named[1]
            if shared and team and _string(clicker.get("team_id")) == team:  # a colleague of the support team
                return None
        else:
            team = _string(_object(payload.get("team")).get("id"))
        return self._clicked(payload, value, team, channel, thread, _string(container.get("thread_ts")),
                             action.get("action_id"))

    def _attachment_click(self, payload: dict[str, Any]) -> Turn | None:
        """The :class:`Turn` for a click on a button or menu of a legacy Slack attachment (an action's
        ``utter_message(attachment={..., "actions": [...]})``), which Slack sends as an ``interactive_message``: the
        button's value, or the chosen option's, typed, as Rasa's Slack channel answers it, in the message's thread."""
        actions = payload.get("actions")
        action = _object(actions[0]) if isinstance(actions, list) and actions else {}
        options = action.get("selected_options")
        chosen = _object(options[0]) if isinstance(options, list) and options else {}
        value = _string(action.get("value") or chosen.get("value"))[: self.max_message_chars]
        original = _object(payload.get("original_message"))
        channel = _string(_object(payload.get("channel")).get("id"))
        thread = _string(original.get("thread_ts") or payload.get("message_ts") or original.get("ts"))
        if not (readable(value) and channel and thread):
            return None
        team = _string(_object(payload.get("team")).get("id"))
        return self._clicked(payload, value, team, channel, thread, _string(original.get("thread_ts")),
                             _string(payload.get("callback_id")))

    def _clicked(self, payload: dict[str, Any], value: str, team: str, channel: str, thread: str, in_dm_thread: str,
                 button: Any) -> Turn | None:
        """The :class:`Turn` a click on ``button`` sends: ``value`` typed by the user who clicked, in the conversation
        of ``thread``, answered in the DM's thread ``in_dm_thread`` (:func:`dm_thread`); seen once per
        ``trigger_id``, which a redelivered click repeats. None without a user or a trigger."""
        user = _string(_object(payload.get("user")).get("id"))
        trigger = _string(payload.get("trigger_id"))
        if not (user and trigger):
            return None
        answer_in = dm_thread(channel, in_dm_thread)
        return Turn(
            conversation_id=conversation_of(team, channel, thread),
            text=value,
            channel=self.name,
            user=user,
            metadata={"team": team, "channel": channel, "thread_ts": thread, "button": button,
                      **({"answer_in": answer_in} if answer_in else {})},
            seen=(f"click:{trigger}",),
        )

    def _own_mentions(self) -> list[re.Pattern[str]]:
        """The bot's own mentions in Slack's markup: ``<@BOT>`` and ``<@BOT|name>``."""
        return [re.compile(rf"<@{re.escape(user_id)}(\|[^>]*)?>") for user_id in self.own_user_ids]

    def _mentions_me(self, text: str) -> bool:
        """Whether Slack's ``text`` mentions the bot."""
        return any(mention.search(text) for mention in self._own_mentions())

    def _read(self, text: str) -> tuple[str, str]:
        """Slack's ``text`` as the model reads it and as the agents do, so that both see only the question: the
        bot's own ``<@BOT>`` (and ``<@BOT|name>``) removed, the rest of Slack's markup as it reads. Another person's
        mention is :data:`SOMEONE` for the model, which a Slack user id would only puzzle, and for the agents the name
        deskbot knows (:meth:`member_name`, which :meth:`_learn_names` asked Slack for), else the one Slack wrote,
        else the id."""
        for mention in self._own_mentions():
            text = mention.sub(" ", text)

        def named(user: str, label: str | None) -> str:
            return "@" + (self._member_names[user][0] if user in self._member_names else label or user)

        read, written = plain_text(text, lambda _user, _label: SOMEONE), plain_text(text, named)
        return " ".join(read.split())[: self.max_message_chars], " ".join(written.split())[: self.max_message_chars]

    async def _changed(self, payload: dict[str, Any]) -> None:
        """A message edited (``message_changed``) or deleted (``message_deleted``): a customer's message the store
        holds takes its new text, or has its text removed (``Store.replace_message``), so that what the store keeps
        of them is what they left in Slack. Neither is answered: the bot answered the message as first written. A
        deletion that takes back the handoff its answer made is announced to the agents' webhook. One edited to leave
        nothing the bot reads (the bot's mention alone, a file alone) reads as such a message sent so reads
        ("[mentioned the bot]"), where it kept its first words; a colleague's mention of the bot alone edited into words
        to the customer hands the conversation to them, as those words sent so do (``Store.replace_message``)."""
        event, store = payload["event"], self.bot.store
        # A deleted message that has replies stays as a "tombstone": it comes as changed into one.
        changed = _object(event.get("message"))
        deleted = event.get("subtype") == "message_deleted" or changed.get("subtype") == "tombstone"
        message = _object(event.get("previous_message")) if event.get("subtype") == "message_deleted" else changed
        channel, ts = _string(event.get("channel")), _string(event.get("deleted_ts") or message.get("ts"))
        key = message_key(channel, ts)
        if deleted and channel and ts:
            self._deleted.add(key)
        # An unfurled link or a new reply in its thread changes a message too, without an edit.
        if store is None or not (channel and ts) or not (deleted or message.get("edited")):
            return
        raw = _string(message.get("text"))
        text, written = (None, "") if deleted else self._read(raw)
        team = installed_team(payload) or _string(message.get("team"))
        conversation_id = conversation_of(team, channel, _string(message.get("thread_ts")) or ts)
        recent = written_lately(ts)  # the bot may still be working on it, or not have it yet
        if text is None:
            if await self.bot._store(store.replace_message, conversation_id, key, None, None, recent):
                self.bot.notifier.withdrawn(conversation_id, self.name)
            return
        if readable(text):
            text, shown = normalise(text), with_attached(written, file_note(message, text))
        elif kind := sent_kind(message) or (MENTION if self._mentions_me(raw) else ""):
            text = shown = SENT[kind][self._own_language(await self.conversation_slots(conversation_id))]
        else:
            return
        await self.bot._store(store.replace_message, conversation_id, key, text, shown, recent)

    async def _note(self, turn: Turn, kind: str, edit: bool = False) -> None:
        """A support team member's words in a customer's thread: not the customer's to answer, but an agent's
        message in the conversation (``Store.receive_note``), which the agents' console and the transcript show, with
        what came with them, or without a word what they sent (``kind``: "[picture]", :func:`sent_kind`), or that they
        mentioned the bot alone (:data:`MENTION`), which left no trace of them in the conversation, and which, saying
        nothing to the customer, does not take the conversation from the bot as their words do. An ``edit`` (a
        message that mentions the bot, edited, comes again as an ``app_mention``) is kept even where its message was
        seen: an app that hears mentions alone learns of the edit so and no other way (``Store.receive_note``)."""
        store = self.bot.store
        sent = SENT[kind][self.language if self.language in LANGUAGES else "en"] if kind else ""
        text = turn.shown if turn.text else sent
        async with self._seen.claim(turn.seen) as first:
            if (first or edit) and store is not None and text and turn.user:
                key = message_key(turn.metadata["channel"], turn.metadata["ts"])
                self._colleagues.add(turn.user)
                author = await self.member_name(turn.user)
                if author == turn.user:
                    self._kept_by_id.add(author)
                await self._recalled()  # the name kept before, read ere this note's replaces it (_name_kept)
                await self.bot._store(store.receive_note, key, turn.conversation_id, self.name, author, text,
                                      kind != MENTION or bool(turn.text), edit, turn.user)

    async def _learn_about(self, payload: dict[str, Any]) -> bool:
        """Whether the author of the event's message is one of ``team_users`` (:meth:`on_team`), asked of Slack at
        once with the names :meth:`_learn_names` asks for, so ``NAME_LOOKUP_S`` at most in all before the event's 200:
        one after the other, a slow Slack made the 200 miss its 3 seconds, and Slack sent the event again."""
        event = payload["event"]
        user = _string(event.get("user")) if event.get("type") in ("message", "app_mention") else ""
        team, _ = await asyncio.gather(self.on_team(user) if user else asyncio.sleep(0, False),
                                       self._learn_names(payload))
        return team

    async def _learn_names(self, payload: dict[str, Any]) -> None:
        """Look up the names of the people a message, or its edit, mentions (:meth:`member_name`, all at once, so
        ``NAME_LOOKUP_S`` at most before the event's 200), which the transcript shows (:meth:`_read`): only the names
        of the support team members who had written since the server started were known, and after a restart a
        customer's "<@U07ABC> said…" read "@U07ABC". Its author's too, where they may be of the support team, whose
        name their note is kept by (:meth:`_note`). The first ``MAX_NAMES_A_MESSAGE`` people it mentions alone: a
        message of thousands of mentions (Slack takes 40,000 characters) had Slack asked for each at once, before any
        limit on the customer's messages, and used up the app's users.info allowance for everyone else's."""
        event = payload["event"]
        if event.get("type") not in ("message", "app_mention"):
            return
        text = _string(event.get("text")) + _string(_object(event.get("message")).get("text"))
        people = [user for user in dict.fromkeys(MENTIONED.findall(text)) if user not in self.own_user_ids]
        looked_up = set(people[:MAX_NAMES_A_MESSAGE])
        author = _string(event.get("user"))
        if author and (author in self.team_users or self.team_groups or from_support_team(payload, event)):
            looked_up.add(author)
        await asyncio.gather(*(self.member_name(user) for user in looked_up - self.own_user_ids))

    async def member_name(self, user: str) -> str:
        """The name Slack shows for ``user``, a support team member or someone a message mentions (``users.info``,
        which needs ``users:read``), remembered for ``NAME_KEPT_S`` once known: the console, the transcript and an agent told who holds the
        conversation read it, where "U7" told them nothing; remembered until a restart, a name they changed in Slack
        stayed the old one. The name known before, else their user id, when Slack does not say (no scope, a failure,
        too slow); after a failure Slack is not asked again for a while (:meth:`_names_paused`): without ``users:read``,
        each of the team's messages waited on a lookup bound to fail, and logged it once more."""
        name, learnt = self._member_names.get(user, (user, float("-inf")))
        now = time.monotonic()
        if (now - learnt < NAME_KEPT_S or now < self._names_refused_until
                or now - self._unknown_users.get(user, float("-inf")) < UNKNOWN_KEPT_S):
            return name
        # Two messages mentioning the same person at once asked Slack twice: the second waits on the first's lookup.
        lookup = self._looking_up.get(user)
        if lookup is None:
            lookup = self._looking_up[user] = self._tasks.spawn(self._look_up(user))
            lookup.add_done_callback(lambda _: self._looking_up.pop(user, None))
        await asyncio.shield(lookup)
        return self._member_names.get(user, (name, 0.0))[0]

    async def _look_up(self, user: str) -> None:
        """Ask Slack for ``user``'s name (:meth:`member_name`), ``NAME_LOOKUP_S`` at most, and remember it; or remember
        that Slack does not know them, or pause the lookups where it failed. Slack's answer, either of the first two,
        ends the failures the log told of (:meth:`_names_paused`), which it says: a user_not_found left them
        unended, and Slack's next failure, hours later, went unsaid. A colleague whose notes were kept by their id
        meanwhile (:meth:`_note`) is named in the store (``Store.name_member``): the conversations they hold too."""
        try:
            # Not tried again: a wait for Slack (a 429's Retry-After, a 503) was cut short as no answer in time, the
            # log saying so where Slack had said why, and each of a message's lookups warned of its retry.
            result = await asyncio.wait_for(self._call("users.info", {"user": user}, form=True, max_delay=0.0),
                                            NAME_LOOKUP_S)
        except UNDELIVERED as exc:
            if not (isinstance(exc, SlackAPIError) and exc.error == "user_not_found"):
                self._names_paused(exc)
                return
            self._remember_unknown(user)  # one of another organisation's
        else:
            self._learnt(user, shown_name(_object(result.get("user")), user))
        if self._names_said is not None:
            log.info("Slack gives names again: the support team and the people customers mention are shown by name")
        self._names_said = None

    def _learnt(self, user: str, name: str) -> None:
        """Remember ``name`` as the one Slack shows for ``user`` now, and name them so in the store, in the background
        (the event's 200 waits on no write): where their notes were kept by their user id (:meth:`_name_kept`), and
        where they were kept by the name known before, which they changed in Slack (:meth:`_renamed`)."""
        before = self._member_names.get(user, (user, 0.0))[0]
        self._member_names[user] = (name, time.monotonic())
        if name == user or self.bot.store is None:
            return
        self._tasks.spawn(self._name_kept(user, before, name))

    def _user_changed(self, event: dict[str, Any]) -> None:
        """Learn at once the new name of a person whose name is shown (a colleague, someone customers mention) from
        Slack's ``user_change`` (sent to an app subscribed to it, with ``users:read``, as a profile changes): a
        colleague renamed in Slack held the conversations they took, and signed their notes, by the old name until
        they wrote again after ``NAME_KEPT_S``; one the store keeps (``Store.kept_members``), whose name this server had
        not learnt yet, for good. Others' changes, of the whole workspace, are not kept."""
        member = _object(event.get("user")) if event.get("type") == "user_change" else {}
        user = _string(member.get("id"))
        if user and not member.get("deleted"):
            self._tasks.spawn(self._member_changed(user, shown_name(member, user)))

    async def _member_changed(self, user: str, name: str) -> None:
        """Learn ``name``, the one Slack shows for ``user`` now (:meth:`_user_changed`), where they are known here or
        kept in the store, read first (:meth:`_recalled`)."""
        if self.bot.store is not None:
            await self._recalled()
        if user in self._member_names or user in self._kept_names:
            self._learnt(user, name)

    async def _renamed(self, user: str, before: str, name: str) -> None:
        """Name the colleague ``user``, whose name in Slack changed from ``before`` to ``name``, by ``name`` in the store
        (``Store.name_member``): the conversations they hold, their takeovers and their notes in the transcript, which
        the agents' inbox and console read. Not where they are no colleague (someone customers mention: a console
        agent's name may be theirs), nor where another person Slack named is known by ``before`` too: those kept so
        may be theirs, said in the log once a server: it was said again at each of their profile changes in Slack
        (``user_change``) and hourly, as their name was looked up again."""
        if not (user in self._colleagues or user in self._kept_names or await self.on_team(user)):
            return
        known = [(other, known) for other, (known, _) in self._member_names.items()] + list(self._kept_names.items())
        if any(name_known == before for other, name_known in known if other != user):
            if (user, before, name) in self._refused_renames:
                return
            self._refused_renames.add((user, before, name))
            log.warning("Slack: %s is now %s, but another person is %s in Slack too: the conversations held by %s stay "
                        "so", user, name, before, before)
            return
        assert self.bot.store is not None
        await self.bot._store(self.bot.store.name_member, self.name, before, name, NOTED)
        self._kept_names[user] = name
        log.info("Slack: %s (%s) is now %s, in the conversations they hold and their notes", before, user, name)

    async def _name_kept(self, user: str, before: str, name: str) -> None:
        """Name ``user``, known as ``before`` until Slack named them ``name``, so in the store (``Store.name_member``):
        where their notes were kept by their user id (:meth:`_note`), by this server or, read from the store at the
        first name Slack gives, by the servers before it: after a restart, those a server had kept so stayed "U7" as
        holders of the customers they took over, until they wrote again; and where they were kept by another name
        (:meth:`_renamed`), the one the store keeps beside their id (``Store.kept_members``) else the one this server
        knew: renamed in Slack while no server ran, they kept the old name for good. In the background: the event's
        200 waits on no read of the store. Ids kept by a deskbot that kept no id beside a name are told from names by
        their form (``U…``, ``W…``), and a name of that form is renamed only where Slack names that very id, in the
        conversations where a Slack note was kept under it (``Store.name_member``): a console agent's name alike
        (``WU``) stays as it is."""
        await self._recalled()
        assert self.bot.store is not None
        if user in self._kept_by_id:
            self._kept_by_id.discard(user)
            await self.bot._store(self.bot.store.name_member, self.name, user, name, NOTED)
            self._kept_names[user] = name
        before = self._kept_names.get(user, before)
        if before not in (user, name):
            await self._renamed(user, before, name)

    async def _recalled(self) -> None:
        """Wait for the colleagues the store keeps (:meth:`_recall_kept`) to be read, once a server."""
        if self._recalling is None:
            self._recalling = self._tasks.spawn(self._recall_kept())
        await asyncio.shield(self._recalling)

    async def _recall_kept(self) -> None:
        """Learn the names the store keeps colleagues by beside their user id, and add the colleagues it knows by their
        user id to those :meth:`_name_kept` names, and which of them hold customers now (:meth:`_name_colleagues`);
        where the store cannot say, none (said in the log): the names are looked up all the same."""
        try:
            names, kept, holding = await self.bot._read(
                lambda store: (store.member_names(self.name), store.kept_members(self.name),
                               store.holding_members(self.name)))
        except sqlite3.Error as exc:
            log.warning("the support team members kept before this server started could not be read (%s): they are "
                        "named as they write again", exc)
            return
        self._kept_names, self._holding = kept, holding
        self._kept_by_id |= {name for name in names if MEMBER_ID.fullmatch(name) and not is_group(name)}

    def _remember_unknown(self, user: str) -> None:
        """Remember for ``UNKNOWN_KEPT_S`` that Slack does not know ``user`` (one of another organisation's, a
        mistyped id): each message that mentioned them asked Slack again, and waited on it. Only the ``MAX_UNKNOWN``
        latest are kept, as a customer may mention any number of ids. The name Slack wrote in a mention still
        shows (:meth:`_read`), as this holds no name."""
        self._unknown_users.pop(user, None)
        self._unknown_users[user] = time.monotonic()
        if len(self._unknown_users) > MAX_UNKNOWN:
            del self._unknown_users[next(iter(self._unknown_users))]

    def _names_paused(self, exc: BaseException) -> None:
        """Stop asking Slack for names after ``users.info`` failed with ``exc``: for ``NAME_RETRY_S`` where Slack
        refused it (``missing_scope``, ``invalid_auth``; a mistyped ``api_url``'s 404, which was asked again every 30
        seconds), which only the admin's fix ends, but for ``NAME_SLOW_RETRY_S`` where Slack did not answer (one call
        past ``NAME_LOOKUP_S``, Slack unavailable): a single slow answer turned names off for ten minutes, and the
        support team and the people customers mention were shown by their ids. Said in the log once until Slack
        answers a lookup again (:meth:`_look_up`), or where a refusal lengthens the pause: the lookups of one message, failing together,
        wrote one warning each, and a failure that lasts wrote one at each pause."""
        pause = NAME_RETRY_S if isinstance(exc, SlackAPIError) and exc.refused else NAME_SLOW_RETRY_S
        self._names_refused_until = max(self._names_refused_until, time.monotonic() + pause)
        if self._names_said is not None and pause <= self._names_said:
            return
        self._names_said = pause
        log.warning("in transcripts and the agents' console, the support team and the people customers mention are "
                    "shown by their Slack user ids (or a name known before) until Slack gives names again (asked "
                    "again in %g minutes): %s", pause / 60, failure(exc))

    async def on_team(self, user: str) -> bool:
        """Whether ``user`` is one of ``team_users``: named by their id, or a member of a user group named there, as
        Slack listed it last (``usergroups.users.list``, which needs ``usergroups:read``). The groups are listed again
        after ``GROUP_KEPT_S``; a message waits for a listing under way ``NAME_LOOKUP_S`` at most, as Slack wants its
        200 within 3 seconds, and is otherwise judged by the listing before."""
        if user in self.team_users or not self.team_groups:
            return user in self.team_users
        if time.monotonic() >= self._groups_due and (self._listing is None or self._listing.done()):
            self._groups_due = time.monotonic() + GROUP_KEPT_S
            self._listing = self._tasks.spawn(self._list_groups())
        if self._listing is not None and not self._listing.done():
            await asyncio.wait([self._listing], timeout=NAME_LOOKUP_S)
        return any(user in members for members in self._group_members.values())

    def _groups_changed(self, event: dict[str, Any]) -> None:
        """Have ``team_users``' user groups listed again at the next message where Slack says one of them changed
        (``subteam_members_changed``, to which an app with ``usergroups:read`` may subscribe): a colleague added to
        the group counts at once, not up to ``GROUP_KEPT_S`` later."""
        if event.get("type") == "subteam_members_changed" and _string(event.get("subteam_id")) in self.team_groups:
            self._groups_due = 0.0

    async def _list_groups(self) -> None:
        """Learn the members of ``team_users``' user groups from Slack. A group Slack does not list (the app lacks
        ``usergroups:read``, the id is no group of the workspace, Slack down) keeps the members it had, none at
        first: said in one line, with its fix, for each listing that fails, ``GROUP_KEPT_S`` apart; the channel
        answers on, a colleague of that group answered as a customer meanwhile. A failure that is not the group's own
        (any but ``no_such_subteam``: a scope missing, the token, the address, Slack down) is the same for the groups
        after it, which are not asked this time and are said in that line: each group wrote the same line."""
        for n, group in enumerate(self.team_groups):
            try:
                listed = await self._call("usergroups.users.list", {"usergroup": group}, form=True)
            except UNDELIVERED as exc:
                own = isinstance(exc, SlackAPIError) and exc.error == "no_such_subteam"
                unlisted = [group] if own else list(self.team_groups[n:])
                log.error("channels.slack.team_users: Slack did not list the members of user group%s %s (%s); %s, "
                          "until it does (asked again in %g minutes)", "s" if len(unlisted) > 1 else "",
                          ", ".join(unlisted), failure(exc),
                          "the members it listed before stand" if all(g in self._group_members for g in unlisted)
                          else "the messages of a group's members it never listed are answered as customers'",
                          GROUP_KEPT_S / 60)
                if own:
                    continue
                return
            users = listed.get("users")
            self._group_members[group] = frozenset(
                user for user in (users if isinstance(users, list) else []) if _string(user))

    async def _unread(self, request: web.Request, turn: Turn, kind: str, edit: bool = False) -> None:
        """Answer files sent without a word (a screenshot), or a Slack message shared so, with ``UNREAD_HINT``, and
        the bot mentioned alone (``kind`` :data:`MENTION`) with ``MENTION_HINT``, once and within the conversation's
        limit, in its language and script: the customer heard nothing back. Each hint is said once until the customer
        writes words, for ``HINTED_S`` at most (:meth:`_hint_due`): three screenshots pasted one after another had it
        three times, and each of three mentions alone ``MENTION_HINT``. In a
        conversation handed to a person it is recorded instead, as a customer's turn saying what came ("[picture]",
        :data:`~dialogues.holding.SENT`): the agent learns of it, and no hint talks over them. WeCom's pictures are
        answered the same way. An ``edit`` of a message the store holds (its words taken back, the mention or the file
        left) reads so there (:meth:`_edited`), and asks for nothing."""
        conversation_id, key = turn.conversation_id, message_key(turn.metadata["channel"], turn.metadata["ts"])
        if edit:
            await self._edited(turn, key, kind)
        async with self._seen.claim(turn.seen) as first:
            if not first:
                return
            await self._heard(conversation_id, turn.metadata.get("answer_in", ""))
            slots = partial(self.conversation_slots, conversation_id)
            notice = await self._hold_back(request, conversation_id, "", slots)
            if notice is None:
                store, kept = self.bot.store, await slots()
                language = self._own_language(kept)
                if store is not None and await self.bot._store(store.receive_unanswered, key, conversation_id,
                                                                self.name, turn.user, SENT[kind][language]):
                    return
                if not await self._hint_due(conversation_id, MENTION if kind == MENTION else UNREAD):
                    return
                notice = say(MENTION_HINT if kind == MENTION else UNREAD_HINT, language, script=kept_script(kept))
            if notice:
                self._tell(turn, notice, key)

    def _own_language(self, kept: dict[str, Any]) -> str:
        """The language of what the channel itself says in a conversation whose slots are ``kept`` (a hint, what a
        message without words reads as): the bot's, else the one the conversation was last answered in, else English."""
        return self.language if self.language in LANGUAGES else kept.get(SLOT) or "en"

    async def _start(self, request: web.Request, turn: Turn, key: str, edit: bool = False) -> None:
        """Keep the turn, unless it is a redelivery, and answer it in the background; past its
        conversation's limit, drop it and say once to wait. An ``edit`` of a message kept already (a mention, edited,
        comes again as an ``app_mention``) is not answered again, but the store takes its new words
        (:meth:`_edited`)."""
        async with self._seen.claim(turn.seen) as first:
            if not first:
                if edit:
                    await self._edited(turn, key)
                return
            kept, notice = await self.keep_within_limit(request, turn, key, turn.text)
            if kept:
                self._words_came(turn.conversation_id)  # a file or a mention alone is told its hint again
                self.resume(turn)
            elif notice is None and edit:  # kept by a server before this one, which Slack's first delivery reached
                await self._edited(turn, key)
            elif notice:
                self._tell(turn, notice, key)

    async def _edited(self, turn: Turn, key: str, kind: str = "") -> None:
        """Give the customer's message ``key`` (or a colleague's note, :meth:`_note`, edited after its keys are
        forgotten), where the store holds it, the words of its edit ``turn``
        (``Store.replace_message``), or, without words, what came instead (``kind``, as :meth:`_unread` reads it:
        "[mentioned the bot]", "[picture]"), as a ``message_changed`` does (:meth:`_changed`): an app that hears
        mentions alone (``app_mention``, no ``message.channels``) learns of an edit only so, and the transcript, the
        agents and the reviewers kept the words the customer had taken back."""
        store = self.bot.store
        if store is None:
            return
        if turn.text:
            text, shown = normalise(turn.text), turn.shown
        else:
            text = shown = SENT[kind][self._own_language(await self.conversation_slots(turn.conversation_id))]
        await self.bot._store(store.replace_message, turn.conversation_id, key, text, shown)

    async def _heard(self, conversation_id: str, thread: str) -> None:
        """Keep in the store that the customer of the DM ``conversation_id`` wrote (or clicked) last in ``thread`` of
        it (empty: at its top level), where what is said to them outside an answer goes (:meth:`send`): an agent's
        replies and the notice that they joined went to the top level, away from the question the customer asked in
        the thread. Kept in one server's memory, it was lost at a restart and unknown to a second server on the store."""
        store = self.bot.store
        if store is not None and is_dm(conversation_id.split(":", 3)[2]):
            await self.bot._store(store.reply_in, conversation_id, thread)

    async def _reply_thread(self, conversation_id: str) -> str:
        """The DM thread the customer of ``conversation_id`` wrote in last (:meth:`_heard`); empty for its top level,
        or a conversation that is no DM, whose own thread is answered."""
        store = self.bot.store
        if store is None or not is_dm(conversation_id.split(":", 3)[2]):
            return ""
        try:
            return await self.bot._look_up(lambda store: store.reply_thread(conversation_id))
        except sqlite3.Error as exc:  # the reply goes out all the same, where the customer may look less
            log.warning("Slack: a message to %s goes to its DM's top level, as the store could not say which thread its "
                        "customer wrote in last (%s)", log_tag(conversation_id), exc)
            return ""

    async def _redeliver(self, kept: dict[str, Any]) -> None:
        """Send the answer a stopped server owed (:meth:`~bot.channels.base.PlatformChannel.redeliver`) where its
        message was written: a DM's thread too, which the kept message's metadata names."""
        await self._heard(kept["conversation_id"], _string(_object(kept.get("metadata")).get("answer_in")))
        await super()._redeliver(kept)

    def _tell(self, turn: Turn, notice: str, key: str) -> None:
        """Post the channel's own ``notice`` for the message ``key`` of ``turn`` (a hint, a notice to wait) in the
        background, where its answer would go; not once its customer deleted the message (:meth:`send`)."""
        self._tasks.spawn(self.deliver(turn.conversation_id, None, self.send(
            turn.conversation_id, notice, thread=turn.metadata.get("answer_in", ""), about=key)))

    def resume(self, turn: Turn) -> None:
        self._tasks.spawn(self._answer(turn))

    async def _answer(self, turn: Turn) -> None:
        await self._heard(turn.conversation_id, turn.metadata.get("answer_in", ""))
        reply = await self.answer(turn)
        # an action may offer buttons alone, or a custom payload of blocks alone
        if (reply.text or reply.buttons or reply.custom) and reply.source != "silent":
            await self.deliver(turn.conversation_id, reply.turn_id, self.send(
                turn.conversation_id, reply.text, buttons=reply.buttons, custom=reply.custom,
                thread=turn.metadata.get("answer_in", ""), parts=reply.parts, answering=turn.pending_id,
                about=message_key(turn.metadata.get("channel", ""), turn.metadata.get("ts", ""))), turn.pending_id)

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        """Post ``text`` (and any ``buttons``) into the conversation's thread with ``chat.postMessage``, or into
        ``thread`` (a DM's answer to a message written in one, empty for one at its top level); without ``thread`` (an
        agent's reply, a notice of the handoff), into the DM's thread its customer wrote in last (:meth:`_heard`); an
        agent's reply led by its ``author``'s name. A
        reply's ``custom`` payloads of Block Kit blocks follow its text in its last message (:func:`message_blocks`),
        in several where they pass Slack's limit (:func:`posts`); their ``attachments``
        (:func:`~bot.responses.slack_attachments`) go under the last. An action's ``parts`` (its messages, where a
        text follows a payload: :attr:`~bot.channels.base.Reply.parts`) are posted each on its own, in order, as
        Rasa's Slack channel posts them, the buttons under the last. An answer to the kept message ``answering``, or
        anything said for the message ``about`` (:func:`message_key`), is not posted once its customer deleted that
        message (:class:`~bot.channels.base.Withdrawn`)."""
        prefix, _team, channel, thread_ts = conversation_id.split(":", 3)
        if prefix != self.name:
            raise ValueError(f"not a Slack conversation id: {conversation_id}")
        thread_ts = (kwargs["thread"] if "thread" in kwargs else await self._reply_thread(conversation_id)) or thread_ts
        buttons = kwargs.get("buttons") or []
        parts = kwargs.get("parts") or [{"text": signed(text, kwargs.get("author")), "custom": kwargs.get("custom") or []}]
        messages: list[dict[str, Any]] = []
        for n, part in enumerate(parts, start=1):
            messages += self._messages(conversation_id, thread_ts, part["text"], buttons if n == len(parts) else [],
                                       part["custom"])

        async def post(message: dict[str, Any]) -> None:
            await self._call("chat.postMessage", message)

        # One post at a time in a Slack channel: chat.postMessage allows about one a second there, and a burst of
        # answers retried at the same instants lost all but a few to its 429s; queued, each waits its turn.
        lock = self._posting.setdefault(channel, asyncio.Lock())
        queued = lock.locked()
        async with lock:
            # An agent's reply is no answer the shutdown waits for: queued while the server stops, it would go out
            # as the sessions close. It is cut short, as a retry is, and the agent is told.
            if queued and self._stopping.is_set() and kwargs.get("role") == "agent":
                raise Stopping(f"{self.name}: the server is stopping")
            # deleted while the answer waited its turn, or before the message itself came (Slack sends them in any order)
            if not await self.still_owed(kwargs.get("answering")) or kwargs.get("about") in self._deleted:
                raise Withdrawn(f"{self.name}: the message it answers was deleted")
            await send_pieces(messages, post, SlackMaybePosted)

    def _messages(self, conversation_id: str, thread_ts: str, text: str, buttons: list[dict[str, str]],
                  custom: Sequence[Any]) -> list[dict[str, Any]]:
        """The ``chat.postMessage`` arguments for ``text`` with its ``buttons`` and ``custom`` payloads, in
        ``thread_ts``: a long text in several messages, the shop's own blocks and the buttons under the last, and the
        payloads' attachments too. Each message's ``text``, which Slack shows in its notification and reads out to
        screen readers, is its Markdown as plain text (bold without its asterisks, a link as its label and address,
        as WeCom shows them); its ``markdown`` block keeps the Markdown, which Slack draws."""
        channel = conversation_id.split(":", 3)[2]
        shared = channel in self.shared_channels
        # The buttons go under the last piece: a long text is cut shorter so that they fit in its message
        # (MESSAGE_TEXT_LIMIT), but not below half a markdown block (hundreds of buttons), where they go on in a
        # message of their own, as the shop's blocks that do not fit do (block_messages).
        room = MESSAGE_TEXT_LIMIT - sum(BLOCK_COST + block_text(block)
                                        for block in message_blocks("", buttons, conversation_id, shared))
        pieces = message_pieces(text, max(MARKDOWN_LIMIT // 2, min(MARKDOWN_LIMIT, room)), size=slack_length)
        messages: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces, start=1):
            last = i == len(pieces)
            blocks = message_blocks(piece, buttons if last else [], conversation_id, shared, custom if last else [])
            # the notification and screen readers read ``text`` as it is: "**Ana:** see [the FAQ](…)" there
            messages += posts(channel, thread_ts, unmarked(piece) if piece else payload_text(custom), blocks)
        if attachments := [attachment for payload in custom for attachment in slack_attachments(payload)]:
            messages[-1]["attachments"] = attachments
        return messages

    def _not_api(self, status: int) -> str:
        """What a 404 from ``api_url`` means, with its fix: no Web API there (a mistyped ``api_url``), which said "HTTP
        404" alone, for every answer and every name looked up, and left the admin to guess; empty for other statuses,
        and at Slack's own address, where it is a method Slack does not have."""
        if status != 404 or self.api_url == DEFAULT_API_URL:
            return ""
        return (f" (no Slack Web API at {shown_url(self.api_url)}: set channels.slack.api_url, or {ENV['api_url']}, to Slack's, "
                f"{DEFAULT_API_URL}, or leave it unset)")

    async def _call(self, method: str, payload: dict[str, Any], form: bool = False,
                    max_delay: float = MAX_RETRY_AFTER_S) -> dict[str, Any]:
        """Call a Web API method, up to ``SEND_ATTEMPTS`` tries: a 429 waits out its ``Retry-After``, and
        Slack unavailable (:data:`~bot.channels.base.UNAVAILABLE`) a second more at each try. ``form`` sends the
        arguments form-encoded, as Slack's reading methods (``users.info``) want them, where JSON is not read. A wait
        longer than ``max_delay`` is not made: the call fails at once, saying why."""
        body = {"data": payload} if form else {"json": payload}

        async def attempt() -> dict[str, Any] | TryAgain:
            # A redirect is not followed: a 307 would have this server post the message (a customer's answer) to
            # whatever address it named, one on its own network included.
            async with self.session.post(
                self.api_url + method, **body, headers={"Authorization": f"Bearer {self.bot_token}"},
                allow_redirects=False,
            ) as response:
                if response.status == 429:
                    delay = retry_after(response.headers.get("Retry-After"))
                    return TryAgain(f"rate limited (Retry-After {delay:g}s)", delay)
                if response.status in UNAVAILABLE:
                    return TryAgain(f"HTTP {response.status}")
                if response.status in MAYBE_SENT:
                    raise SlackMaybePosted(f"{method}: HTTP {response.status}")
                if response.status >= 300:
                    raise SlackAPIError(f"{method}: HTTP {response.status}{self._not_api(response.status)}",
                                        status=response.status)
                result = await api_result(response, SlackAPIError, method)
                self._scopes = response.headers.get("X-OAuth-Scopes", self._scopes)
                error = _string(result.get("error"))
                if not result.get("ok") and error in BUSY_ERRORS:
                    return TryAgain(error)
                if not result.get("ok") and error in MAYBE_DONE_ERRORS:
                    raise SlackMaybePosted(f"{method}: {error}")
                if not result.get("ok"):
                    raise SlackAPIError(f"{method}: {api_error(result)}", error)
                return result

        return await handed_over(self.with_retries(method, SlackAPIError, attempt, max_delay=max_delay),
                                 method, SlackMaybePosted)
