"""WeCom (企业微信) self-built app callback: ``GET``/``POST /wecom/callback`` in; a passive
encrypted reply or ``message/send`` out.

WeCom waits 5 seconds for the callback's answer and then retries (3 tries in all). So the turn runs
in the background and the request waits for it only until ``reply_timeout`` seconds (default 4) after
it arrived: an answer ready by then goes back passively in the HTTP response; a later one is sent
actively through ``message/send`` after an empty 200, which WeCom documents as "received, no reply,
do not retry".

WeCom text messages cannot carry buttons, so a template's buttons become a numbered list under the
answer, and a reply that picks one of those numbers ("1", "1.", "第一个", "选2") sends that button's payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from bot.channels.base import (DEFAULT_GRACE_S, MAX_SKEW_S, MAYBE_SENT, UNAVAILABLE, UNDELIVERED, DeliveryError,
                               MaybeDelivered, PlatformChannel, Stopping, UNREAD, UNREAD_HINT, TryAgain, Turn, api_base,
                               api_result, clock_off, failure, handed_over, http_error, is_fresh, read_body,
                               message_pieces, readable, send_pieces, shown_url, signed, skew)
from bot.channels.wecom_crypto import ReceiveIdError, SignatureError, WeComCrypto, WeComError, WrongKeyError, parse_xml
from bot.language import LANGUAGES, SCRIPT, SLOT, Script, Text, kept_script, say
from bot.project import WECOM_MESSAGE_BYTES
from dialogues.holding import SENT
from dialogues.store import TURN_STALE_S, Store, log_tag
from bot.responses import MAX_BUTTON_TITLE_CHARS
from retrieval.text import WEB_ADDRESS, title_key

if TYPE_CHECKING:
    from bot.engine import Bot

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://qyapi.weixin.qq.com/cgi-bin/"
DEFAULT_REPLY_TIMEOUT_S = 4.0
MAX_OFFERS = 10_000  # conversations whose numbered choices are remembered, oldest forgotten first
MAX_PASSIVE_NOTICES = 1_000  # the notices lately given as a callback's response, kept for WeCom's retries (15 s)
CHOICE_HINT: Text = {"en": "Reply with a number to choose.", "zh": "回复数字即可选择。"}
UNREAD_TYPES = {"image", "voice", "video", "file", "location", "link"}  # the message types a customer sends besides text
MAX_CONTENT_BYTES = WECOM_MESSAGE_BYTES  # WeCom's limit for a text message's content
TOKEN_EXPIRED = {40014, 42001}  # invalid access_token, expired access_token
SYSTEM_BUSY = -1  # "系统繁忙": WeCom asks to try again later
# Answers that sent nothing and may pass if tried again a little later: WeCom busy, the app over its API call
# rate (45009, "接口调用超过限制") or over its concurrent calls (45033, "接口并发调用超过限制").
TRY_LATER = frozenset({SYSTEM_BUSY, 45009, 45033})
TOKEN_MARGIN_S = 300  # refresh this long before WeCom's stated expiry, or half its stated lifetime if that is shorter
MAX_CORP_ID_SHOWN = 64  # characters of the CorpID a refused callback was encrypted for that the log shows (WeCom's are 18)
# WeCom takes at most 30 message/send calls a minute from one app to one employee, and drops the calls over that
# silently (errcode 0 all the same): a long answer cut into pieces, and an agent's messages, lost pieces.
MAX_SENDS_PER_EMPLOYEE = 30
SEND_WINDOW_S = 60.0
# How often a message waiting for another server on the store to finish sending to the same employee looks whether it
# has (WeComChannel._across_servers): a write each, for up to the minute a long answer's paced pieces may take.
SEND_TURN_POLL_S = 0.2
# A notice (to type, to wait) that waited longer than a turn may go unrenewed for its turn to be sent is dropped: said a
# minute after the picture it answers, behind another server's long answer, it told the employee of what they had
# likely written about since.
NOTICE_STALE_S = TURN_STALE_S
MAX_AGENT_ID_SHOWN = 32  # characters of another app's AgentId that the log shows (WeCom's are 7 digits)
START_CHECK_TIMEOUT_S = 5.0  # the check of the app's settings at start (WeComChannel.start) waits no longer for WeCom
ENV = {
    "token": "DESKBOT_WECOM_TOKEN",
    "aes_key": "DESKBOT_WECOM_AES_KEY",
    "corp_id": "DESKBOT_WECOM_CORP_ID",
    "secret": "DESKBOT_WECOM_SECRET",
    "agent_id": "DESKBOT_WECOM_AGENT_ID",
    "api_url": "DESKBOT_WECOM_API_URL",
    "previous_token": "DESKBOT_WECOM_PREVIOUS_TOKEN",
    "previous_aes_key": "DESKBOT_WECOM_PREVIOUS_AES_KEY",
}
REQUIRED = ("token", "aes_key", "corp_id", "secret", "agent_id")
# What to do about the errors of WeCom's API whose fix is in bot.yml or the admin console: the code and WeCom's
# words alone ("40013 invalid corpid"), logged for each answer that failed, left the operator to look them up.
FIXES: dict[int, str] = {
    40001: (f"set channels.wecom.secret (or {ENV['secret']}) to the Secret of the app whose AgentId is "
            "channels.wecom.agent_id (应用管理 > the app > Secret)"),
    40013: f"set channels.wecom.corp_id (or {ENV['corp_id']}) to the company's CorpID (我的企业 > 企业信息 > 企业ID)",
    40056: f"set channels.wecom.agent_id (or {ENV['agent_id']}) to the app's AgentId (应用管理 > the app > AgentId)",
    60020: "WeCom takes API calls only from the app's trusted IPs: add this server's public IP under the app's 企业可信IP",
    81013: "the employee is outside the app's visible range: add them, or their department, to its 可见范围",
}


class WeComAPIError(DeliveryError):
    """WeCom's API answered with a non-zero ``errcode`` or a non-2xx status."""

    refused = False  # WeCom itself answered with an errcode: the same call fails again until a setting is mended


def api_error(path: str, result: dict[str, Any]) -> WeComAPIError:
    """The error of a call to ``path`` that WeCom answered with ``result``'s non-zero ``errcode``: its code and
    words, and what to do where the fix is the app's settings (:data:`FIXES`)."""
    code = result.get("errcode")
    fix = FIXES.get(code) if isinstance(code, int) else None
    error = WeComAPIError(f"{path}: {code} {result.get('errmsg')}{f' ({fix})' if fix else ''}")
    error.refused = True
    return error


@dataclass
class Pace:
    """The sends to one employee from this server: one at a time, in the order asked for; and when each of the last
    :data:`MAX_SENDS_PER_EMPLOYEE` ended (``time.monotonic()``), for a bot without a store, or whose store cannot
    count them now (a store counts them for every server on it: ``Store.take_send``)."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SENDS_PER_EMPLOYEE))


class Outdated(DeliveryError):
    """A notice no longer worth sending by the time it could go out (:meth:`WeComChannel._outdated`): nothing went
    out, and nobody is owed it."""


class WeComBusy(WeComAPIError):
    """WeCom answered, at each try, that it is busy or the app over its call rates (:data:`TRY_LATER`): it was
    reached, and nothing is wrong with the settings."""


class Busy(TryAgain):
    """WeCom's own answer asking for a later try (:data:`TRY_LATER`), as opposed to a gateway's or no answer."""


class WeComMaybeSent(WeComAPIError, MaybeDelivered):
    """message/send timed out or answered 500 or 504: WeCom may have sent the message."""


# The web chat's Markdown subset (INLINE in bot/static/widget.js, whose rules these are): [text](url),
# **bold**, *italic* (not starting or ending with a digit: 20*30*40cm is a size, 评分 5*，物流 4* two ratings),
# `code`. Lines and lists read the same as plain text.
INLINE = re.compile(r"\[([^\]\n]+)\]\(([^()\s]+)\)|\*\*(?=\S)([^*\n]*?\S)\*\*"
                    r"|\*(?=[^\s0-9０-９])([^*\n]*?[^\s0-9０-９])\*|`([^`\n]+)`")
LINKS = ("", "http", "https", "mailto", "tel")  # the addresses the web chat links; any other stays as typed
_URL_SIGNS = "".join(chr(c) for c in range(0x21, 0x7f))  # what an address keeps as written: ASCII's printable
# What XML 1.0 cannot carry at all, even escaped: a reply holding one (a form feed pasted into an agent's
# answer, "\x0b" in an action's text) would make the whole passive reply unreadable to WeCom.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# How a customer picks numbered choice N: "1" or "１", "1." "1。" "1、" "1)" (the list's own "1." copied),
# "第1个" "第一个" "第二個", "选1" "選第二个" "揀2" (Cantonese), "选项2" "选二" "選項二" (a numeral alone only after the word
# for choosing), "我选1" "我要第一个" (the one they want, by its place), "就第一个吧" "那选2吧" (settled on, with the particle
# that says so); nothing more after it, so "1 件" and "第一次买" stay what they say.
CHINESE_NUMBERS = {numeral: n for n, numeral in enumerate("一二三四五六七八九十", start=1)}
_PICK = r"(?:我?(?:选项|選項|选择?|選擇?|揀|要(?=\s*第)))"
CHOICE = re.compile(rf"(?:那|就|那就)?(?:{_PICK}?\s*(?:第\s*(\d+|[一二三四五六七八九十])\s*[个個项項]?|(\d+))"
                    rf"|{_PICK}\s*([一二三四五六七八九十])\s*[个個项項]?)\s*[吧啦喇啊呀]?\s*[.．。、)）!！]?")
# The other ways an input method types a number: circled (①, which Chinese ones offer) and keycap emoji (1️⃣).
_AS_DIGITS = {ord(circled): str(n) for n, circled in enumerate("①②③④⑤⑥⑦⑧⑨⑩", start=1)} | dict.fromkeys(map(ord, "\ufe0f\u20e3"))


def linkable(address: str) -> str:
    """A web ``address`` written in ASCII alone: its host in Punycode, the rest with every other character
    percent-encoded, as a browser sends it. A chat app links a typed address up to the first character past
    ASCII, since Chinese text runs on after one without a space: "https://shop.example/退货" would open
    https://shop.example/."""
    parts = urlsplit(address)
    if address.isascii() or parts.scheme.lower() not in ("http", "https"):
        return address
    try:
        host = parts.netloc.encode("idna").decode("ascii")
    except UnicodeError:  # a user or a port beside a host past ASCII: left as written
        host = parts.netloc
    return urlunsplit((parts.scheme, host, *(quote(part, safe=_URL_SIGNS) for part in parts[2:])))


def hung_up(request: web.Request) -> bool:
    """Whether WeCom closed the callback's connection, which aiohttp lets the handler run on after: a passive reply
    written then reaches nobody."""
    return request.transport is None or request.transport.is_closing()


def plain_text(markdown: str) -> str:
    """A reply as WeCom's text messages can show it, since they draw no Markdown: what the web chat draws
    as bold, italic or code without its marks, and a link as its label and its address, which, as a bare one
    (:data:`~retrieval.text.WEB_ADDRESS`), is in ASCII (:func:`linkable`), so that WeCom links all of it."""

    def plain(match: re.Match[str]) -> str:
        label, address, bold, italic, code = match.groups()
        if label is not None:
            if urlsplit(address).scheme.lower() not in LINKS:  # [x](javascript:…) is not a link there either
                return match.group(0)
            if label == address.removeprefix("mailto:"):
                return linkable(label)
            return f"{label} ({linkable(address)})"
        return code if code is not None else plain_text(bold if bold is not None else italic)

    return WEB_ADDRESS.sub(lambda match: linkable(match.group()), INLINE.sub(plain, markdown))


def numbered_choices(text: str, buttons: list[dict[str, str]], hint: str) -> str:
    """``text`` followed by the buttons' titles as a numbered list and how to pick one."""
    if not buttons:
        return text
    lines = [f"{i}. {button['title']}" for i, button in enumerate(buttons, start=1)]
    return "\n".join([text, "", *lines, hint]) if text else "\n".join([*lines, hint])


def choice_number(text: str) -> int | None:
    """The number of the choice ``text`` picks in the ways customers type it (:data:`CHOICE`), or None when it
    is not just a pick: WeCom shows buttons as a numbered list, and "1.", "第一个", "①" or "1️⃣" picks as "1" does."""
    match = CHOICE.fullmatch(text.strip().translate(_AS_DIGITS))
    if match is None:
        return None
    number = match.group(1) or match.group(2) or match.group(3)
    return CHINESE_NUMBERS[number] if number in CHINESE_NUMBERS else int(number)


# Why WeCom's crypto refused a callback, in the words of its fix, were every request of WeCom's refused so (the
# settings named, never their values): the Token signs, the EncodingAESKey encrypts, the CorpID ends the plaintext.
REFUSALS: dict[type[WeComError], str] = {
    SignatureError: (f"its msg_signature is not made with channels.wecom.token (or {ENV['token']}): if every request "
                     "of WeCom's is refused so, set it to the Token of the app's API receiving settings (接收消息 > "
                     "设置API接收), as saved there; while a new one is not saved there yet, set "
                     f"channels.wecom.previous_token (or {ENV['previous_token']}) to the one before it"),
    WrongKeyError: (f"it does not decrypt with channels.wecom.aes_key (or {ENV['aes_key']}): if every request of "
                    "WeCom's is refused so, set it to the EncodingAESKey of the app's API receiving settings (接收消息 > "
                    "设置API接收), the new one if it was generated again there; while a new one is not saved there "
                    f"yet, set channels.wecom.previous_aes_key (or {ENV['previous_aes_key']}) to the one before it"),
    ReceiveIdError: (f"it was encrypted for another company than channels.wecom.corp_id (or {ENV['corp_id']}): if every "
                     "request of WeCom's is refused so, set it to the company's CorpID (我的企业 > 企业信息 > 企业ID)"),
}


class WeComChannel(PlatformChannel):
    """The callback input side and the ``message/send`` output side of one WeCom app.

    Conversation ids are ``wecom:{corp_id}:{FromUserName}``: one conversation per employee.
    """

    name = "wecom"
    platform = "WeCom"
    unmarked = staticmethod(plain_text)
    env = ENV
    required = REQUIRED
    # The callback's address, and the same with a closing slash, which guides in Chinese have admins type into
    # 设置API接收: WeCom takes the URL as typed, and its check (GET) and messages (POST) got a 404.
    paths = ("/wecom/callback", "/wecom/callback/")
    clock = staticmethod(time.time)  # "now" for the callbacks' signed timestamps (tests replay Tencent's 2016 samples)
    send_window_s = SEND_WINDOW_S  # the time in which WeCom takes MAX_SENDS_PER_EMPLOYEE sends to one employee

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        super().__init__(bot, settings)
        self.corp_id: str = self.settings["corp_id"]
        self.secret: str = self.settings["secret"]
        try:
            self.agent_id = int(self.settings["agent_id"])
        except ValueError:
            raise ValueError(f"agent_id is the app's number (AgentId), not {self.settings['agent_id']!r}") from None
        self.api_url = api_base(self.settings.get("api_url") or DEFAULT_API_URL)
        self.reply_timeout = float(self.settings.get("reply_timeout", DEFAULT_REPLY_TIMEOUT_S))
        self.choice_hint: Text = self.settings.get("choice_hint") or CHOICE_HINT  # one text, or one per language
        self.unread_hint: Text = self.settings.get("unread_hint") or UNREAD_HINT
        # The script of the app's customers (a Hong Kong company's: hongkong), until a customer's own shows: WeCom
        # says nothing of where they are, and one writing 你好 or an order number was answered in Simplified.
        self.script: Script | None = self.settings.get("script")
        self.crypto = WeComCrypto(self.settings["token"], self.settings["aes_key"], self.corp_id)
        # The Token and EncodingAESKey WeCom signs and encrypts with until the new ones are saved in its console: a
        # server set to the new ones alone refused every message until then, and one set to the old ones the
        # console's check of the URL, so that they could not be changed without losing messages.
        previous_token, previous_key = self.settings.get("previous_token"), self.settings.get("previous_aes_key")
        self.previous = (WeComCrypto(previous_token or self.settings["token"], previous_key or self.settings["aes_key"],
                                     self.corp_id) if previous_token or previous_key else None)
        # The payloads of the numbered choices last offered in each conversation ([]: none, or withdrawn).
        self._offers: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._checking: asyncio.Task[None] | None = None  # the check of the app's settings at start (start())
        # The notices given as the callback's response, by the key of the message each was for, newest last: a retry
        # of that message says the response was lost, and the notice is sent with message/send (:meth:`_tell_again`).
        self._passive_notices: OrderedDict[str, str] = OrderedDict()
        self._paces: OrderedDict[str, Pace] = OrderedDict()  # by employee, the most recently sent to last
        self._other_apps: set[str] = set()  # the AgentIds of other apps whose callbacks came here, said once each

    def start(self) -> None:
        self._checking = self._tasks.spawn(self._check_app())

    async def close(self, grace: float = DEFAULT_GRACE_S) -> None:
        """Close as every platform channel does, the check of the app's settings at start cancelled rather than
        waited for: a WeCom out of reach would have held the shutdown until the check's timeout."""
        if self._checking is not None:
            self._checking.cancel()
        await super().close(grace)

    async def _check_app(self) -> None:
        """Ask WeCom at start for the app's access token (``gettoken``, as WeCom documents getting one) and, with it,
        for the app itself (``agent/get``), each within :data:`START_CHECK_TIMEOUT_S` (one try to reach WeCom; a busy
        WeCom is tried again as a send is), and say in the log
        which app the settings are, or what to fix (:data:`FIXES`): a wrong CorpID, Secret or AgentId, or a server
        outside the app's trusted IPs (企业可信IP, which WeCom checks on calls with the token, not on gettoken).
        Passive replies need no token, so either showed only when an answer too late to be passive, or an agent's
        reply, failed, and that customer was handed to an agent as undelivered. The server starts all the same:
        passive replies and the other channels work on, and a WeCom down for a moment is no reason to stop."""
        try:
            async with asyncio.timeout(START_CHECK_TIMEOUT_S):
                token = await self._fetch_token(once=True)
            async with asyncio.timeout(START_CHECK_TIMEOUT_S):
                app = await self._request("GET", "agent/get", once=True,
                                          params={"access_token": token, "agentid": self.agent_id})
            if app.get("errcode", 0) != 0:
                raise api_error("agent/get", app)
        except Stopping:
            return
        except UNDELIVERED as exc:
            if isinstance(exc, WeComBusy):
                log.warning("WeCom was reached at start but asked to be called later (%s): the app's settings are not "
                            "checked; answers are tried as messages come, each again while WeCom is busy", exc)
            elif isinstance(exc, WeComAPIError) and exc.refused:
                log.error("WeCom refused the app's settings at start (%s): answers later than a passive reply and agents' "
                          "replies do not reach WeCom's customers, each handed to an agent as undelivered, until it is "
                          "set right", exc)
            else:
                log.warning("WeCom could not be reached at start (%s): check channels.wecom.api_url (or %s), now %s, and "
                            "that this server can reach it; answers are tried as messages come", failure(exc),
                            ENV["api_url"], shown_url(self.api_url))
            return
        log.info("WeCom: the Secret is the app %s (AgentId %s) of CorpID %s", app.get("name") or "?", self.agent_id,
                 self.corp_id)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [route for path in self.paths
                for route in (web.get(path, self.handle_verify), web.post(path, self.handle_callback))]

    @contextmanager
    def refused_as_http(self, path: str) -> Iterator[None]:
        """What WeCom's crypto refuses in a callback to ``path``, as its answer: 401 for a request it cannot prove is
        WeCom's (a signature, a corp or a key that does not match), said in the log with the setting to fix
        (:data:`REFUSALS`), 400 for one that is malformed otherwise."""
        try:
            yield
        except (SignatureError, ReceiveIdError, WrongKeyError) as exc:
            why = REFUSALS[type(exc)]
            if isinstance(exc, ReceiveIdError):  # a CorpID is no secret: the log names it at start too
                why += f" (it was encrypted for {exc.receive_id[:MAX_CORP_ID_SHOWN]!r}, corp_id is {self.corp_id!r})"
            self.say_refused(path, lambda: why)
            raise http_error(web.HTTPUnauthorized, str(exc)) from exc
        except WeComError as exc:
            raise http_error(web.HTTPBadRequest, str(exc)) from exc

    def _opened(self, path: str, opening: Callable[[WeComCrypto], str]) -> tuple[WeComCrypto, str]:
        """What ``opening`` (a check of WeCom's signature, and a decryption) makes of a request to ``path`` with the
        Token and EncodingAESKey, or where they do not fit it, with ``previous_token`` and ``previous_aes_key``, which
        WeCom uses until the new ones are saved in its console; and the pair that opened it. Opened by neither, it
        is refused as the current pair refuses it (:meth:`refused_as_http`)."""
        with self.refused_as_http(path):
            try:
                return self.crypto, opening(self.crypto)
            except (SignatureError, WrongKeyError):
                if self.previous is not None:
                    with suppress(SignatureError, WrongKeyError):
                        return self.previous, opening(self.previous)
                raise

    @staticmethod
    def _query(request: web.Request, *names: str) -> list[str]:
        values = [request.query.get(name, "") for name in names]
        missing = [name for name, value in zip(names, values) if not value]
        if missing:
            raise http_error(web.HTTPBadRequest, f"missing query parameter(s): {', '.join(missing)}")
        return values

    async def handle_verify(self, request: web.Request) -> web.StreamResponse:
        """The URL check WeCom makes when the callback is saved: answer the decrypted echostr, bare."""
        signature, timestamp, nonce, echostr = self._query(request, "msg_signature", "timestamp", "nonce", "echostr")
        # Query parsing turns a literal '+' into a space; base64 has no spaces, so put them back.
        echostr = echostr.replace(" ", "+")
        _, plain = self._opened(request.path, lambda crypto: crypto.verify_url(signature, timestamp, nonce, echostr))
        # A clock minutes off refuses every message; refused here too, it shows while the admin saves the URL, not
        # once the employees' messages go unanswered.
        self._refuse_stale(request.path, timestamp)
        return web.Response(text=plain)

    def _refuse_stale(self, path: str, timestamp: str) -> None:
        """A 401 for a request to ``path`` signed at ``timestamp`` more than ``MAX_SKEW_S`` from the server's clock,
        said in the log as the clock to set right where every request of WeCom's is refused so."""
        if not is_fresh(timestamp, now := self.clock()):
            off = skew(timestamp, now)
            self.say_refused(path, lambda: None if off is None else clock_off(off, self.platform))
            raise http_error(web.HTTPUnauthorized, f"timestamp: more than {MAX_SKEW_S} s from the server's clock")

    async def handle_callback(self, request: web.Request) -> web.StreamResponse:
        # WeCom's five seconds run from the request, not from when the turn is kept: reading the body or a
        # store busy with another writer eats into the wait for a passive reply.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_timeout
        body = await read_body(request, self.max_body_bytes)
        signature, timestamp, nonce = self._query(request, "msg_signature", "timestamp", "nonce")
        crypto, inner = self._opened(request.path,
                                     lambda crypto: crypto.decrypt_message(body, signature, timestamp, nonce))
        with self.refused_as_http(request.path):
            message = parse_xml(inner)
        # WeCom signs the timestamp but does not ask for this check; a replayed message would be answered twice.
        self._refuse_stale(request.path, timestamp)

        empty = web.Response(text="")
        if self._for_another_app(request.path, message):  # acknowledged, so that WeCom does not send it again
            return empty
        user = message.findtext("FromUserName") or ""
        text = (message.findtext("Content") or "").strip()
        kind = message.findtext("MsgType") or ""
        if kind in UNREAD_TYPES and user and message.findtext("MsgId"):
            return await self._unread(request, user, kind, self._message_key(message), nonce, crypto, deadline)
        if kind != "text" or not user or not readable(text):
            return empty
        key = self._message_key(message)
        conversation_id = self._conversation_of(user)
        async with self._seen.claim((key,)) as first:
            if not first:
                return await self._redelivered(conversation_id, key)
            turn = Turn(
                conversation_id=conversation_id,
                text=(await self._chosen(conversation_id, text))[: self.max_message_chars],
                channel=self.name,
                user=user,
                metadata={"msg_id": message.findtext("MsgId"), "agent_id": message.findtext("AgentID")},
                language="zh",  # WeCom is a Chinese app: a first "？" in a multi bot was answered in English
                script=self.script,
            )
            kept, notice = await self.keep_within_limit(request, turn, key, text)
            if notice is not None:  # over the conversation's limit: WeCom still gets its answer, the model nothing
                return await self._notice(request, deadline, key, user, notice, nonce, crypto)
        if not kept:  # WeCom delivered it again, while it waits for its answer or once it was answered
            return await self._redelivered(conversation_id, key)
        # Whatever it is, the message withdraws the choices; only once kept: if keeping it fails, WeCom sends it
        # again, and the retry must pick what this one picked.
        self._offer(conversation_id, [])
        self._words_came(conversation_id)  # a picture alone is told unread_hint again
        answered: asyncio.Future[tuple[str, int | None]] = loop.create_future()
        self._tasks.spawn(self._answer(turn, answered))
        try:
            answer, turn_id = await asyncio.wait_for(asyncio.shield(answered), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            if answered.cancel():  # too late for this response: _answer will send it actively
                return empty
            answer, turn_id = answered.result()
        except asyncio.CancelledError:  # the server shuts down: the answer must go out actively
            answered.cancel()
            raise
        if not answer:
            return empty
        # Too long for one passive message, WeCom hung up meanwhile (aiohttp lets the handler run on), or another
        # message to the employee going out, which it would land between the pieces of: it waits its turn.
        if (len(answer.encode()) > MAX_CONTENT_BYTES or hung_up(request)
                or await self._sending_to(conversation_id, user)):
            self._tasks.spawn(self.deliver(turn.conversation_id, turn_id, self._send_plain(turn.conversation_id, answer),
                                           turn.pending_id))
            return empty
        response = self._passive_reply(user, answer, nonce, crypto)
        if turn.pending_id is None or self.bot.store is None:
            return response
        # Settled once written, not before: a server killed, or a write failed, in between left WeCom's retry
        # taken for one already answered, and the answer never went out.
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:  # WeCom hung up as it was written: the answer goes out actively
            self._tasks.spawn(self.deliver(turn.conversation_id, turn_id, self._send_plain(turn.conversation_id, answer),
                                           turn.pending_id))
            return response
        self._tasks.spawn(self.bot._store(self.bot.store.delivered, turn.pending_id, True))
        return response

    async def _redelivered(self, conversation_id: str, key: str) -> web.Response:
        """An empty 200 for WeCom's redelivery of a message kept already, whose answer is sent with ``message/send``
        where it went back as the callback's reply alone (``Store.unconfirmed_answer``): WeCom sends again only what
        it got no reply to, so that reply was lost on the way, and the redelivery, taken for a duplicate, left the
        employee answered by nobody. The answer is the one logged for the message, sent once whichever servers the
        redeliveries reach; one still being answered is sent as it is ready."""
        self._tell_again(conversation_id, key)
        store = self.bot.store
        if store is not None and (kept := await self.bot._store(store.unconfirmed_answer, key)) is not None:
            log.warning("WeCom sent a message of %s's again after its answer went back in the callback's reply: that "
                        "reply did not reach WeCom, and the answer is sent with message/send", log_tag(conversation_id))
            self.redeliver(kept)
        return web.Response(text="")

    def _for_another_app(self, path: str, message: ET.Element) -> bool:
        """Whether ``message`` is for another app than ``agent_id``, said in the log once for each such app. Two apps
        of the company with the same URL, Token and EncodingAESKey both reach this server, and the answers to the
        other app's employees went out as this app's (``message/send`` names ``agent_id``)."""
        agent = (message.findtext("AgentID") or "").strip()
        if not agent or agent == str(self.agent_id):
            return False
        if agent not in self._other_apps:  # only WeCom's signed callbacks get here: a company's few apps
            self._other_apps.add(agent)
            log.warning("WeCom's request to %s was for the app with AgentId %r, and channels.wecom.agent_id (or %s) is "
                        "%s: its messages are acknowledged and not answered, since the answers would come from this "
                        "app. Give that app its own URL, Token and EncodingAESKey (接收消息 > 设置API接收), or set "
                        "agent_id to it if it is the app this server answers for", path, agent[:MAX_AGENT_ID_SHOWN],
                        ENV["agent_id"], self.agent_id)
        return True

    def _conversation_of(self, user: str) -> str:
        """The conversation of the employee ``user``, one for each (``wecom:{corp_id}:{user}``, which
        :meth:`_send_plain` reads back)."""
        return f"{self.name}:{self.corp_id}:{user}"

    def _message_key(self, message: ET.Element) -> str:
        """How a redelivery of ``message`` is known, here and in the store for ``REDELIVERY_WINDOW_S`` (a purged
        conversation's too): its MsgId, or for a message without one its sender and time, as a digest keyed with
        the app's secret, which names nobody (it held the employee's userid)."""
        if msg_id := message.findtext("MsgId"):
            return f"wecom:{msg_id}"
        sent = f"{message.findtext('FromUserName')}:{message.findtext('CreateTime') or ''}".encode()
        return f"wecom:from:{hmac.new(self.secret.encode(), sent, hashlib.sha256).hexdigest()}"

    async def _unread(self, request: web.Request, user: str, kind: str, key: str, nonce: str,
                      crypto: WeComCrypto, deadline: float) -> web.StreamResponse:
        """Answer a message the bot cannot read (a voice message, a picture, a file) with ``unread_hint``, once
        per message and within the conversation's limit, in its language and script: the customer who sent one
        heard nothing back, and waited; once until they write words, for ``HINTED_S`` at most (:meth:`_hint_due`):
        three pictures sent one after another were told it three times. In a conversation handed to a person it is
        recorded instead, as a customer's turn that says what was sent ("[图片]", :data:`~dialogues.holding.SENT`):
        the agent learns of it and sees the customer waiting, and no hint talks over them. Which of the two the store decides as it
        records it (:meth:`~dialogues.store.Store.receive_unanswered`), so that a hand-back meanwhile gets the hint."""
        conversation_id = self._conversation_of(user)
        async with self._seen.claim((key,)) as first:
            if not first:
                self._tell_again(conversation_id, key)
                return web.Response(text="")
            slots = partial(self.conversation_slots, conversation_id)
            notice = await self._hold_back(request, conversation_id, "", slots)
            if notice is None:
                conversation = await self.conversation(conversation_id)
                kept = (conversation or {}).get("slots", {})
                language = self.language if self.language in LANGUAGES else kept.get(SLOT) or "zh"
                store = self.bot.store
                if conversation is not None and store is not None and await self.bot._store(
                        store.receive_unanswered, key, conversation_id, self.name, user, SENT[kind][language]):
                    return web.Response(text="")
                if not await self._hint_due(conversation_id, UNREAD):
                    return web.Response(text="")
                notice = say(self.unread_hint, language, script=kept_script(kept) or self.script)
        return await self._notice(request, deadline, key, user, notice, nonce, crypto)

    async def conversation_slots(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's slots, its customer's script the app's (``script``) until their own shows: what the
        channel says for the bot (a "please wait", an owed answer's choices) is in it too."""
        slots = await super().conversation_slots(conversation_id)
        return {**slots, SCRIPT: self.script} if self.script and not kept_script(slots) else slots

    async def _chosen(self, conversation_id: str, text: str) -> str:
        """The payload of the numbered choice ``text`` picks, by its number or by its title typed out ("查询退款"; in
        the other Chinese script, "查詢退款", or another case, width or punctuation: :func:`title_key`), as customers
        answer a list they cannot click; or ``text`` itself if it picks none. The choices are those the store's latest
        turn offers (``Store.offered``), whichever server on it offered them, or without a store those this server
        offered last: a server's own memory was read first, and behind a load balancer a "1" picked from the choices
        that server had offered before another server's later answer, or after an agent's reply sent by another."""
        number = choice_number(text)
        if number is None and len(text) > MAX_BUTTON_TITLE_CHARS:
            return text
        store = self.bot.store
        offered = (await self.bot._store(store.offered, conversation_id) if store is not None
                   else self._offers.get(conversation_id)) or []
        if number is not None:
            return offered[number - 1]["payload"] if 1 <= number <= len(offered) else text
        titled = [button["payload"] for button in offered if title_key(button["title"]) == title_key(text)]
        return titled[0] if len(titled) == 1 and title_key(text) else text

    def _offer(self, conversation_id: str, buttons: list[dict[str, str]]) -> None:
        """Remember the choices offered in the conversation, none (withdrawn) included, for a bot without a store
        (:meth:`_chosen`)."""
        self._offers.pop(conversation_id, None)
        self._offers[conversation_id] = [{"title": button["title"], "payload": button["payload"]} for button in buttons]
        if len(self._offers) > MAX_OFFERS:
            self._offers.popitem(last=False)

    def resume(self, turn: Turn) -> None:
        gone: asyncio.Future[tuple[str, int | None]] = asyncio.get_running_loop().create_future()
        gone.cancel()  # no request waits for this answer: it goes out actively
        self._tasks.spawn(self._answer(turn, gone))

    async def _answer(self, turn: Turn, answered: asyncio.Future[tuple[str, int | None]]) -> None:
        """Run the turn; hand the text and its turn's id to the waiting request, or send it actively if it
        gave up."""
        turn_id = None
        try:
            reply = await self.answer(turn)
            silent, turn_id = reply.source == "silent", reply.turn_id
            self._offer(turn.conversation_id, [] if silent else reply.buttons)
            hint = say(self.choice_hint, reply.language or self.language, script=reply.script)
            text = "" if silent else plain_text(numbered_choices(reply.text, reply.buttons, hint))
        except Exception:
            log.exception("wecom turn failed for %s", log_tag(turn.conversation_id))
            text = ""
        if not answered.done():  # the waiting callback's response carries it
            answered.set_result((text, turn_id))
        elif text:
            await self.deliver(turn.conversation_id, turn_id, self._send_plain(turn.conversation_id, text), turn.pending_id)

    async def _notice(self, request: web.Request, deadline: float, key: str, user: str, notice: str,
                      nonce: str, crypto: WeComCrypto) -> web.Response:
        """The callback's response to the message ``key`` that tells the employee ``user`` the channel's ``notice`` (to
        wait, to type; "" for none): the passive reply (sent again with ``message/send`` if WeCom sends the message
        again: :meth:`_tell_again`), or an empty one, the notice sent with ``message/send`` (:meth:`_tell`), while
        another message to them is going out (:meth:`_sending_to`), after it, not between its pieces, and where the
        response would come too late: past ``deadline`` (``reply_timeout`` after the request came: a store slow to say
        whether the hint was told lately), or WeCom hung up. Such a passive reply reached nobody, and WeCom's retry of
        the message, seen already, got an empty one: the customer never heard it."""
        if not notice:
            return web.Response(text="")
        conversation_id = self._conversation_of(user)
        if asyncio.get_running_loop().time() >= deadline or hung_up(request) or await self._sending_to(conversation_id,
                                                                                                        user):
            self._tasks.spawn(self._tell(conversation_id, notice))
            return web.Response(text="")
        self._passive_notices[key] = notice
        if len(self._passive_notices) > MAX_PASSIVE_NOTICES:
            self._passive_notices.popitem(last=False)
        return self._passive_reply(user, notice, nonce, crypto)

    def _tell_again(self, conversation_id: str, key: str) -> None:
        """Send with ``message/send`` the notice this server gave as the callback's response to the message ``key``
        (:meth:`_notice`), which WeCom sends again: it retries only what it got no response to in time, so that
        response was lost, and the retry, seen already, was answered with nothing. Once: forgotten as it goes."""
        if (notice := self._passive_notices.pop(key, None)) is not None:
            log.warning("WeCom sent a message of %s's again after the callback's response told them a notice: that "
                        "response did not reach WeCom, and the notice is sent with message/send", log_tag(conversation_id))
            self._tasks.spawn(self._tell(conversation_id, notice))

    async def _tell(self, conversation_id: str, notice: str) -> None:
        """Send the channel's ``notice`` with ``message/send`` once its turn comes, unless by then it waited longer
        than :data:`NOTICE_STALE_S` or its customer has written since (:meth:`_outdated`); one that does not reach WeCom
        is said in one line: it answers no message kept, and nobody is owed it."""
        try:
            await self._send_plain(conversation_id, notice, partial(self._outdated, conversation_id, time.time()))
        except Outdated as exc:
            log.info("WeCom: a notice to %s is not sent: %s", log_tag(conversation_id), exc)
        except UNDELIVERED as exc:  # a server stopping (Stopping) among them
            log.warning("WeCom: a notice to %s did not reach the customer: %s", log_tag(conversation_id), failure(exc))

    async def _outdated(self, conversation_id: str, asked: float, wait: float) -> str | None:
        """Why a notice to ``conversation_id`` asked at ``asked`` (``time.time()``) would not be worth sending after
        ``wait`` seconds more, or None: it would have waited longer than :data:`NOTICE_STALE_S` (its turn, WeCom's
        rate), or its customer has written since, to whichever server on the store (``Store.received_since``; one that
        cannot say lets it go out)."""
        waited = time.time() + wait - asked
        if waited > NOTICE_STALE_S:
            return f"it would wait {waited:.1f} s to go out, more than {NOTICE_STALE_S:g} s"
        if self.bot.store is None:
            return None
        try:
            written = await self.bot._look_up(lambda store: store.received_since(conversation_id, asked))
        except sqlite3.Error as exc:
            log.warning("WeCom: a notice to %s goes out, as the store could not say whether its customer has written "
                        "since (%s)", log_tag(conversation_id), exc)
            return None
        return "its customer has written since" if written else None

    def _passive_reply(self, user: str, text: str, nonce: str, crypto: WeComCrypto) -> web.Response:
        """``text`` as the callback's encrypted response, with ``crypto``, the Token and EncodingAESKey its request
        came with (:meth:`_opened`): WeCom reads it with those."""
        timestamp = str(int(time.time()))
        root = ET.Element("xml")
        for tag, value in (
            ("ToUserName", user),
            ("FromUserName", self.corp_id),
            ("CreateTime", timestamp),
            ("MsgType", "text"),
            ("Content", NOT_XML.sub("", text)),
        ):
            ET.SubElement(root, tag).text = value
        reply_xml = ET.tostring(root, encoding="unicode")
        return web.Response(text=crypto.encrypt_message(reply_xml, nonce, timestamp), content_type="application/xml")

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        """Send ``text`` to the employee with ``message/send``, in 2,048-byte pieces; ``buttons`` (the way
        back to the bot under the busy and takeover notices) become numbered choices, as in an answer.

        Any message withdraws the numbered choices offered before it: a number typed after an agent's is an
        answer to the agent, and one typed after the handback notice no longer takes the customer "back".
        """
        buttons = kwargs.get("buttons") or []
        self._offer(conversation_id, buttons)
        text = numbered_choices(signed(text, kwargs.get("author")), buttons,
                                say(self.choice_hint, kwargs.get("language") or self.language, script=kwargs.get("script")))
        await self._send_plain(conversation_id, plain_text(text))

    async def _send_plain(self, conversation_id: str, text: str,
                          outdated: Callable[[], Awaitable[str | None]] | None = None) -> None:
        """Send ``text``, already as WeCom shows it (:func:`plain_text`), in 2,048-byte pieces; :class:`Outdated` where
        ``outdated(wait)`` says why it is no longer worth sending once its turn comes, or after the ``wait`` WeCom's
        rate would hold it for."""
        prefix, corp_id, user = conversation_id.split(":", 2)
        if prefix != self.name or corp_id != self.corp_id:
            # named by its tag, as the log names it: the id names the employee, and a traceback prints this
            raise ValueError(f"not a conversation of this WeCom app: {log_tag(conversation_id)}")
        pieces = message_pieces(text, MAX_CONTENT_BYTES, size=lambda piece: len(piece.encode()))
        async with self._turn_of(conversation_id, user) as pace:
            if outdated is not None and (why := await outdated(0.0)) is not None:
                raise Outdated(why)
            await send_pieces(pieces, lambda piece: self._send_text(conversation_id, user, piece, pace, outdated),
                              WeComMaybeSent)

    async def _send_text(self, conversation_id: str, user: str, content: str, pace: Pace,
                         outdated: Callable[[float], Awaitable[str | None]] | None = None) -> None:
        """Send one message to ``user``, in its turn (``pace``, held) and within WeCom's limit of
        :data:`MAX_SENDS_PER_EMPLOYEE` in ``send_window_s``, over which WeCom drops a message and says it sent it
        (:meth:`_take_send`). It counts from when it ended, failed too, since WeCom cannot have taken it later."""
        payload = {"touser": user, "msgtype": "text", "agentid": self.agent_id, "text": {"content": content}}
        place = await self._take_send(conversation_id, pace, outdated)
        try:
            result = await self._post_message(payload)
        except Exception:  # counted all the same; one cut short by a stopping server stays counted from its start
            await self._send_ended(conversation_id, pace, place)
            raise
        await self._send_ended(conversation_id, pace, place)
        if result.get("errcode", 0) != 0:
            raise api_error("message/send", result)

    async def _post_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """WeCom's answer to ``message/send`` with ``payload``, the access token refreshed and the call made again
        once if WeCom says it is invalid or expired."""
        token = await self._access_token()
        result = await self._request("POST", "message/send", sends=True, params={"access_token": token}, json=payload)
        if result.get("errcode") in TOKEN_EXPIRED:  # revoked or expired early: refresh and retry once
            token = await self._access_token(stale=token)
            result = await self._request("POST", "message/send", sends=True, params={"access_token": token},
                                         json=payload)
        return result

    async def _take_send(self, conversation_id: str, pace: Pace,
                         outdated: Callable[[float], Awaitable[str | None]] | None = None) -> int | None:
        """Wait until WeCom takes one more message to the conversation's employee, counted, with a store, for every
        server on it (``Store.take_send``; the place's id), else for this one (``pace``; None): each server counted its
        own, and two servers on one store sent twice what WeCom takes, the rest dropped or refused (45009). A server
        stopping cuts the wait short; so does ``outdated(wait)`` saying the message would no longer be worth sending
        after it (:class:`Outdated`)."""
        while True:
            taken = await self._counted(conversation_id, "take_send", conversation_id, MAX_SENDS_PER_EMPLOYEE,
                                        self.send_window_s)
            if taken is None:  # no store, or one that cannot write now: this server's own count
                full = len(pace.ended) == MAX_SENDS_PER_EMPLOYEE
                place, wait = None, pace.ended[0] + self.send_window_s - time.monotonic() if full else 0.0
            else:
                place, wait = taken[0]
            if wait <= 0:
                return place
            if outdated is not None and (why := await outdated(wait)) is not None:
                raise Outdated(why)
            await self.pause_before_retry(wait)

    async def _send_ended(self, conversation_id: str, pace: Pace, place: int | None) -> None:
        """Count the send that took ``place`` (:meth:`_take_send`) from now, when it ended: in the store, or in
        ``pace`` without one."""
        if place is None or await self._counted(conversation_id, "send_ended", place, conversation_id,
                                                time.time()) is None:
            pace.ended.append(time.monotonic())

    async def _counted(self, conversation_id: str, method: str, *args: Any) -> tuple[Any] | None:
        """What the store's ``method`` (``take_send`` or ``send_ended``) returns for ``args``, as a 1-tuple; None without
        a store, or when it cannot write now (another process holding it locked past the wait, a full disk), said in
        the log: the message is then counted by this server alone, rather than held up, or, sent already, taken for
        undelivered."""
        store = self.bot.store
        if store is None:
            return None
        try:
            return (await self.bot._store(getattr(store, method), *args),)
        except sqlite3.Error as exc:
            log.warning("WeCom: the messages to %s are counted by this server alone, as the store could not count "
                        "them (%s): with other servers on the store, WeCom may take fewer than are sent",
                        log_tag(conversation_id), exc)
            return None

    @asynccontextmanager
    async def _turn_of(self, conversation_id: str, user: str) -> AsyncIterator[Pace]:
        """The employee ``user``'s turn to be sent a message, all its pieces: messages to one employee go one at a
        time, in the order asked for, so that they share WeCom's count of sends a minute (:meth:`_send_text`) and an
        agent's message does not land between a long answer's pieces; this server's first, then, with a serving
        store, every server's on it (:meth:`_across_servers`)."""
        pace = self._paces.pop(user, None) or Pace()
        self._paces[user] = pace
        if len(self._paces) > MAX_OFFERS:
            oldest = next(iter(self._paces))
            if not self._paces[oldest].turn.locked():
                del self._paces[oldest]
        async with pace.turn, self._across_servers(conversation_id):
            yield pace

    async def _sending_to(self, conversation_id: str, user: str) -> bool:
        """Whether a message to the employee ``user`` is going out now, from this server (:meth:`_turn_of`) or from
        another on the store (its turn there): a passive reply, which takes no turn, landed between a long answer's
        pieces. A store that cannot say is taken to say no: the answer goes back at once, as it did."""
        pace = self._paces.get(user)
        if pace is not None and pace.turn.locked():
            return True
        if self.bot.store is None:
            return False
        try:
            return await self.bot._look_up(lambda store: store.sending(conversation_id))
        except sqlite3.Error as exc:
            log.warning("WeCom: the answer to %s goes back at once, as the store could not say whether another server "
                        "is sending to its customer (%s)", log_tag(conversation_id), exc)
            return False

    @asynccontextmanager
    async def _across_servers(self, conversation_id: str) -> AsyncIterator[None]:
        """The conversation's turn to be sent a message among the servers on the store (``Store.take_turn`` with
        ``of="send"``), waited for, renewed while the pieces go out (paced to WeCom's rate, a long answer's take a
        minute) and given up once they have: each server sent one message at a time for itself alone, and another
        server's answer, or an agent's message it sent, landed between a long answer's pieces. A server hung while it
        holds the turn stops renewing it, and one killed lets it go at once. A store that does not serve shares its
        customers with nobody; one that cannot write now leaves the message to go out as this server's alone, said in
        the log, rather than unsent. A server stopping cuts the wait short (:class:`Stopping`): the answer stays owed,
        for the next server to send."""
        store = self.bot.store
        if store is None or store.server is None:
            yield
            return
        stale = partial(self.bot.leases.stale, stale_s=TURN_STALE_S)
        refused = False  # the store could not take the turn: there is none of this server's to give up
        try:
            try:
                while not await self.bot._store(store.take_turn, conversation_id, stale, "send"):
                    await self.pause_before_retry(SEND_TURN_POLL_S)
            except sqlite3.Error as exc:
                refused = True
                log.warning("WeCom: the message to %s goes out without waiting for the other servers' to its customer, "
                            "as the store could not say whose turn it is (%s)", log_tag(conversation_id), exc)
            if refused:
                yield
            else:
                async with self.bot.renewing(partial(Store.renew_turn, conversation_id=conversation_id, of="send"),
                                             f"turn to send to conversation {log_tag(conversation_id)}"):
                    yield
        finally:  # also where the send was cancelled (its server stopping) as the store took the turn
            if not refused:
                try:
                    await self.bot._store(store.end_turn, conversation_id, "send")
                except sqlite3.Error as exc:  # the other servers wait until it goes stale
                    log.warning("WeCom: cannot give up this server's turn to send to %s in the store (%s): the other "
                                "servers wait up to %g s to send to its customer", log_tag(conversation_id), exc,
                                TURN_STALE_S)

    async def _access_token(self, stale: str | None = None) -> str:
        """The cached access token, fetched when missing, near expiry, or equal to ``stale``.

        Comparing with ``stale`` means concurrent sends that all saw the same token rejected
        trigger one ``gettoken`` between them, not one each.
        """
        async with self._token_lock:
            if self._token is None or self._token == stale or time.monotonic() >= self._token_expires:
                return await self._fetch_token()
            return self._token

    async def _fetch_token(self, once: bool = False) -> str:
        """A new access token from ``gettoken`` (one try to reach WeCom if ``once``), kept until near its expiry."""
        result = await self._request("GET", "gettoken", once=once,
                                     params={"corpid": self.corp_id, "corpsecret": self.secret})
        if result.get("errcode", 0) != 0 or not result.get("access_token"):
            raise api_error("gettoken", result)
        self._token = str(result["access_token"])
        # WeCom gives out the token it gave before, with the seconds it has left, while it lasts: the whole margin off
        # a token with 5 minutes left had it fetched again at every send until it expired.
        lasts = int(result.get("expires_in", 7200))
        self._token_expires = time.monotonic() + lasts - min(TOKEN_MARGIN_S, lasts / 2)
        return self._token

    async def _request(self, method: str, path: str, sends: bool = False, once: bool = False,
                       **kwargs: Any) -> dict[str, Any]:
        """Call the API, up to ``SEND_ATTEMPTS`` tries while WeCom is unavailable
        (:data:`~bot.channels.base.UNAVAILABLE`, or one of :data:`TRY_LATER`: its own ``-1``, "system busy, try again
        later", or a rate limit, which sent nothing); if ``once``, one try to reach WeCom (a refused connection or a
        gateway's 502 or 503 is not tried again), and WeCom's own :data:`TRY_LATER` alone tried again. A call that ``sends`` a message and times out or answers 500 or 504 may have sent it
        (:class:`WeComMaybeSent`)."""
        async def attempt() -> dict[str, Any] | TryAgain:
            # A redirect is not followed: a 307 would have this server send the message (a customer's answer) to
            # whatever address it named, one on its own network included.
            async with self.session.request(method, self.api_url + path, allow_redirects=False, **kwargs) as response:
                if response.status in UNAVAILABLE:
                    return TryAgain(f"HTTP {response.status}")
                if sends and response.status in MAYBE_SENT:
                    raise WeComMaybeSent(f"{path}: HTTP {response.status}")
                if response.status >= 300:
                    raise WeComAPIError(f"{path}: HTTP {response.status}")
                result = await api_result(response, WeComAPIError, path)
                if (code := result.get("errcode")) in TRY_LATER:
                    return Busy(f"{code} {result.get('errmsg')}")
                return result

        if once:
            async def reached() -> dict[str, Any] | TryAgain:
                try:
                    outcome = await attempt()
                except aiohttp.ClientConnectorError as exc:  # which with_retries would try again
                    raise WeComAPIError(f"{path}: {failure(exc)}") from exc
                if isinstance(outcome, TryAgain) and not isinstance(outcome, Busy):
                    raise WeComAPIError(f"{path}: {outcome.why}")
                return outcome

            return await self.with_retries(path, WeComBusy, reached)
        tries = self.with_retries(path, WeComAPIError, attempt)
        return await (handed_over(tries, path, WeComMaybeSent) if sends else tries)
