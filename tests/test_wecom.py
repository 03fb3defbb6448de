"""WeCom callback channel: Tencent's official sample vectors, a real aiohttp app, and a local
stand-in for WeCom's API (gettoken + message/send)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
import sqlite3
import sys
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest
import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.channels.base import MaybeDelivered, Reply, Stopping, Turn, failure, message_pieces
from bot.channels.wecom import (MAX_CONTENT_BYTES, WeComAPIError, WeComChannel, WeComMaybeSent, choice_number,
                                numbered_choices, plain_text)
from bot.channels.wecom_crypto import ReceiveIdError, SignatureError, WeComCrypto, WeComError, parse_xml
from bot.language import Script, turn_language
from bot.limits import LIMITS, Limits
from bot.project import LimitsConfig, ProjectError
from bot.project import WeComChannel as WeComSettings
from dialogues.store import TURN_RENEW_S, Exchange, LeaseWatch, log_tag
from tests.conftest import REPO, store_failing_once

# From Tencent's WXBizMsgCrypt sample (callback_python3/Sample.py).
TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_ID = "ww1436e0e65a779aee"
VERIFY = {
    "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
    "timestamp": "1476416373",
    "nonce": "47744683",
    "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
}
MESSAGE = {"msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "timestamp": "1476422779", "nonce": "1597212914"}
SAMPLE_NOW = int(MESSAGE["timestamp"]) + 60  # the channel refuses stale callbacks, so its clock is set to the sample's day
ENCRYPTED = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew"
    "+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24Yhm"
    "ZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwo"
    "cugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)
SAMPLE_BODY = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>\n<Encrypt><![CDATA[{ENCRYPTED}]]></Encrypt>\n"
    "<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
)
ANSWER = "您好，请在设置页面重置密码。"
# A stand-in store's count of the sends to an employee (Store.take_send, Store.send_ended): every send has its place;
# not a serving one (no Store.server), whose sends take no turn among servers, and none of which is sending now.
PACED = {"take_send": lambda *args: (1, 0.0), "send_ended": lambda *args: None, "server": None,
         "sending": lambda _id: False}


class FakeBot:
    """Stands in for bot.engine.Bot: records turns and answers after ``delay`` seconds."""

    store = None
    logs = False  # whether its answers are logged in its store, naming the kept message each answers, as the engine's

    def __init__(self, text: str = ANSWER, source: str = "template", delay: float = 0.0) -> None:
        self.text, self.source, self.delay = text, source, delay
        self.buttons: list[dict[str, str]] = []
        self.turns: list[Turn] = []
        self.language: str | None = None
        self.script: Script | None = None
        self.leases = LeaseWatch()

    async def handle(self, turn: Turn) -> Reply:
        self.turns.append(turn)
        await asyncio.sleep(self.delay)
        turn_id = None
        if self.logs:
            _, turn_id = self.store.log_exchange(Exchange(
                turn.conversation_id, turn.channel, turn.user, turn.text, None, self.text, None, 0.0, [], self.source,
                None, pending_id=turn.pending_id, buttons=self.buttons))
        return Reply(text=self.text, source=self.source, buttons=self.buttons, language=self.language,
                     script=self.script, turn_id=turn_id)

    async def _store(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` at once, on the ``store`` a test gives it, where the bot runs it on the store's thread."""
        return fn(*args)

    async def _look_up(self, fn: Any, *args: Any) -> Any:
        """``fn(store, *args)`` at once, where the bot runs a customer's message's short reads on a thread of their own."""
        return fn(self.store, *args)

    @asynccontextmanager
    async def renewing(self, renew: Any, what: str, lost: Any = None) -> AsyncIterator[None]:
        """``renew(store)`` every ``TURN_RENEW_S`` while the body runs, as the bot renews what its server holds in the
        store (on a connection of its own there)."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(TURN_RENEW_S)
                renew(self.store)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TOKEN", "AES_KEY", "CORP_ID", "SECRET", "AGENT_ID", "API_URL", "PREVIOUS_TOKEN", "PREVIOUS_AES_KEY"):
        monkeypatch.delenv(f"DESKBOT_WECOM_{var}", raising=False)


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


# --- the cryptography, against the official vectors ------------------------------------------


def test_verify_url_sample(crypto: WeComCrypto) -> None:
    assert crypto.verify_url(**VERIFY) == "1288432023552776189"


def test_decrypt_msg_sample(crypto: WeComCrypto) -> None:
    message = parse_xml(crypto.decrypt_message(SAMPLE_BODY, **MESSAGE))
    assert message.findtext("Content") == "你好"
    assert message.findtext("FromUserName") == "ChenJiaShun"
    assert message.findtext("MsgId") == "1456453720"


def test_official_vector_pads_to_32_byte_blocks() -> None:
    key = base64.b64decode(AES_KEY + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(ENCRYPTED)) + decryptor.finalize()
    assert plain[-1] == 22  # more than a 16-byte block's worth of padding
    unpadder = padding.PKCS7(128).unpadder()
    with pytest.raises(ValueError):
        unpadder.update(plain) + unpadder.finalize()


def test_encrypt_decrypt_round_trip(crypto: WeComCrypto) -> None:
    for text in ("", "a", "x" * 31, "你好" * 500, "<xml>]]></xml>"):
        encrypted = crypto.encrypt(text)
        assert len(base64.b64decode(encrypted)) % 32 == 0
        assert crypto.decrypt(encrypted) == text
    assert crypto.encrypt("same") != crypto.encrypt("same")  # the random prefix
    wrapped = parse_xml(crypto.encrypt_message("<xml><Content>hi</Content></xml>", "123", "1700000000"))
    assert crypto.decrypt_message(
        f"<xml><Encrypt>{wrapped.findtext('Encrypt')}</Encrypt></xml>",
        wrapped.findtext("MsgSignature") or "",
        "1700000000",
        "123",
    ) == "<xml><Content>hi</Content></xml>"


def test_tampered_signature_or_ciphertext_is_refused(crypto: WeComCrypto) -> None:
    with pytest.raises(SignatureError):
        crypto.verify_url(**{**VERIFY, "msg_signature": "0" * 40})
    with pytest.raises(SignatureError):
        crypto.verify_url(**{**VERIFY, "nonce": "47744684"})
    with pytest.raises(SignatureError):
        crypto.decrypt_message(SAMPLE_BODY.replace("Kl7k", "Kl8k"), **MESSAGE)


def test_wrong_receive_id_is_refused() -> None:
    with pytest.raises(ReceiveIdError):
        WeComCrypto(TOKEN, AES_KEY, "wwSOMEOTHERCORP").decrypt(ENCRYPTED)


def test_bad_key_and_garbage_ciphertext(crypto: WeComCrypto) -> None:
    with pytest.raises(ValueError):
        WeComCrypto(TOKEN, "too-short", CORP_ID)
    for garbage in ("", "not base64!", base64.b64encode(b"x" * 20).decode(), base64.b64encode(b"x" * 32).decode()):
        with pytest.raises(WeComError):
            crypto.decrypt(garbage)


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><Encrypt>abc</Encrypt>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>',
        b'<!doctype xml SYSTEM "file:///etc/passwd"><xml/>',
        b"<xml>\xff\xfe</xml>",
    ],
    ids=["truncated", "entity", "external_dtd", "not_utf8"],
)
def test_parse_xml_refuses_malformed_and_dtds(body: bytes) -> None:
    with pytest.raises(WeComError):
        parse_xml(body)


def utf8(text: str) -> int:
    return len(text.encode())


def test_a_long_message_is_cut_where_a_reader_expects_a_break_within_wecoms_byte_limit() -> None:
    """Cut at the last character within 2,048 bytes, a Chinese answer broke off mid-word and its last two
    characters came as a message of their own, and a family emoji came apart."""
    paragraph = "我们的营业时间是周一至周五上午九点到下午六点，节假日另行通知。" * 20  # 1,800 bytes
    text = "\n\n".join([paragraph] * 3) + "\n\n1. 查询订单\n2. 申请退款\n回复数字即可选择。"
    pieces = message_pieces(text, MAX_CONTENT_BYTES, size=utf8)
    assert all(utf8(p) <= MAX_CONTENT_BYTES for p in pieces)
    assert pieces == [paragraph, paragraph, paragraph + "\n\n1. 查询订单\n2. 申请退款\n回复数字即可选择。"]
    sentences = message_pieces("这是一句没有换行的话。" * 120, MAX_CONTENT_BYTES, size=utf8)  # 3,960 bytes
    assert all(p.endswith("。") and utf8(p) <= MAX_CONTENT_BYTES for p in sentences)
    assert "".join(sentences) == "这是一句没有换行的话。" * 120
    family = "👨\u200d👩\u200d👧"
    assert message_pieces("好" * 681 + family, MAX_CONTENT_BYTES, size=utf8) == ["好" * 681, family]
    unbroken = message_pieces("你" * 1000, MAX_CONTENT_BYTES, size=utf8)  # no break at all: cut between characters
    assert [utf8(p) for p in unbroken] == [2046, 954] and "".join(unbroken) == "你" * 1000
    assert message_pieces("short", MAX_CONTENT_BYTES, size=utf8) == ["short"]


# --- the channel in a real aiohttp app ---------------------------------------------------------


@pytest.fixture
async def wecom_api(aiohttp_server: Any) -> SimpleNamespace:
    """gettoken, agent/get and message/send, answering as WeCom does; the first token issued is reported expired
    (42001) on message/send. ``busy`` counts the sends, and ``busy_tokens`` the gettokens, to answer with
    ``busy_code`` (-1, WeCom's "system busy, try again later", unless set);
    ``trusted`` is whether this server's IP is among the app's trusted ones (企业可信IP), which WeCom checks on the
    calls with a token, not on gettoken; ``expires_in`` the seconds gettoken says its token lasts; with ``same_token``
    gettoken gives out the token it gave before (TOKEN1 aside), as WeCom does while it lasts, else a new one each time,
    the one before it refused. With a ``window`` (seconds), message/send takes 30 messages to one employee
    in it, as WeCom takes 30 a minute, and drops the others (into ``dropped``) while answering errcode 0. Each
    message/send takes ``send_s`` seconds to answer, and sets ``arrived`` as it is taken."""
    state = SimpleNamespace(issued=[], sent=[], url="", busy=0, busy_tokens=0, busy_code=-1, trusted=True,
                            window=None, taken=defaultdict(list), dropped=[], expires_in=7200, same_token=False,
                            send_s=0.0, arrived=asyncio.Event())

    def busy() -> web.Response:
        errmsg = {-1: "system busy", 45009: "api freq out of limit", 45033: "api concurrent out of limit"}
        return web.json_response({"errcode": state.busy_code, "errmsg": errmsg[state.busy_code]})

    async def gettoken(request: web.Request) -> web.Response:
        if state.busy_tokens:
            state.busy_tokens -= 1
            return busy()
        if request.query.get("corpid") != CORP_ID:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != "app-secret":
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        if not (state.same_token and state.issued and state.issued[-1] != "TOKEN1"):
            state.issued.append(f"TOKEN{len(state.issued) + 1}")
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": state.issued[-1],
                                  "expires_in": state.expires_in})

    async def agent_get(request: web.Request) -> web.Response:
        if request.query.get("access_token") not in state.issued:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if not state.trusted:
            return web.json_response({"errcode": 60020, "errmsg": "not allow to access from your ip"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "agentid": 1000002, "name": "小店客服"})

    async def message_send(request: web.Request) -> web.Response:
        token = request.query.get("access_token")
        if token == "TOKEN1":
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if not state.issued or token != state.issued[-1]:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if state.busy:
            state.busy -= 1
            return busy()
        message = await request.json()
        if state.window is not None:
            now, taken = time.monotonic(), state.taken[message["touser"]]
            if len([t for t in taken if t > now - state.window]) >= 30:
                state.dropped.append(message)
                return web.json_response({"errcode": 0, "errmsg": "ok"})
            taken.append(now)
        state.sent.append(message)
        state.arrived.set()
        await asyncio.sleep(state.send_s)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_get("/cgi-bin/agent/get", agent_get)
    app.router.add_post("/cgi-bin/message/send", message_send)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/cgi-bin/"))
    return state


def settings(api_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "token": TOKEN,
        "aes_key": AES_KEY,
        "corp_id": CORP_ID,
        "secret": "app-secret",
        "agent_id": "1000002",
        "api_url": api_url,
        "reply_timeout": 1.0,
        "max_body_bytes": 4096,
        **extra,
    }


async def client_for(aiohttp_client: Any, channel: WeComChannel, app: web.Application | None = None) -> Any:
    """A test client for an app serving ``channel``'s routes."""
    app = app if app is not None else web.Application()
    app.add_routes(channel.routes())
    return await aiohttp_client(app)


@pytest.fixture
async def wecom(aiohttp_client: Any, wecom_api: SimpleNamespace) -> AsyncIterator[SimpleNamespace]:
    bot = FakeBot()
    channel = WeComChannel(bot, settings(wecom_api.url))
    client = await client_for(aiohttp_client, channel)
    yield SimpleNamespace(bot=bot, channel=channel, client=client, api=wecom_api)
    await channel.close()


@pytest.fixture(autouse=True)
def _sample_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: SAMPLE_NOW))


def signed_post(crypto: WeComCrypto, inner_xml: str, nonce: str = "42",
                timestamp: str = MESSAGE["timestamp"]) -> tuple[dict[str, str], str]:
    """Query parameters and body for a callback that carries ``inner_xml``, as WeCom would send it."""
    encrypted = crypto.encrypt(inner_xml)
    query = {"msg_signature": crypto.signature(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return query, f"<xml><ToUserName>{CORP_ID}</ToUserName><Encrypt>{encrypted}</Encrypt><AgentID>1000002</AgentID></xml>"


async def test_get_verification_returns_plaintext_bare(wecom: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: int(VERIFY["timestamp"]) + 60))
    response = await wecom.client.get("/wecom/callback", params=VERIFY)
    assert response.status == 200
    assert await response.text() == "1288432023552776189"
    # WeCom URL-encodes echostr, but a proxy that does not leaves a '+' that query parsing turns into a space.
    raw = "&".join(f"{k}={v}" for k, v in VERIFY.items())
    response = await wecom.client.get(f"/wecom/callback?{raw}")
    assert await response.text() == "1288432023552776189"


def passive_text(crypto: WeComCrypto, response_xml: bytes) -> str:
    """The text of a passive reply, its signature checked and its payload decrypted with ``crypto``'s pair."""
    outer = parse_xml(response_xml)
    encrypted = outer.findtext("Encrypt") or ""
    crypto.check_signature(outer.findtext("MsgSignature") or "", outer.findtext("TimeStamp") or "",
                           outer.findtext("Nonce") or "", encrypted)
    return parse_xml(crypto.decrypt(encrypted)).findtext("Content") or ""


async def test_a_token_and_key_changed_in_the_console_are_taken_with_the_previous_ones_until_saved_there(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin generating a new Token and EncodingAESKey (设置API接收 > 随机获取) had to set them on the servers before
    clicking Save, for WeCom's check of the URL made with them, and until Save every message, signed with the old
    ones, was refused; with the old ones still set, Save failed. previous_token and previous_aes_key take the old ones
    meanwhile, and each passive reply is encrypted with the pair its message came with."""
    new = WeComCrypto("n3wT0ken", base64.b64encode(bytes(range(32))).decode().rstrip("="), CORP_ID)
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, token=new.token,
                                               aes_key=base64.b64encode(bytes(range(32))).decode(),
                                               previous_token=TOKEN, previous_aes_key=AES_KEY))
    client = await client_for(aiohttp_client, channel)
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: int(VERIFY["timestamp"]) + 60))
    assert await (await client.get("/wecom/callback", params=VERIFY)).text() == "1288432023552776189"  # the old pair
    echostr = new.encrypt("4242")
    checked = {"msg_signature": new.signature(VERIFY["timestamp"], "1", echostr), "timestamp": VERIFY["timestamp"],
               "nonce": "1", "echostr": echostr}
    assert await (await client.get("/wecom/callback", params=checked)).text() == "4242"  # Save, with the new pair
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: SAMPLE_NOW))
    response = await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)  # sent before Save
    assert passive_text(crypto, await response.read()) == ANSWER
    query, body = text_message(new, "你好", "9201")  # sent after it
    response = await client.post("/wecom/callback", params=query, data=body)
    assert passive_text(new, await response.read()) == ANSWER
    other = WeComCrypto("0therT0ken", AES_KEY, CORP_ID)  # neither pair's Token: refused
    query, body = text_message(other, "你好", "9202")
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 401
    await channel.close()
    assert WeComSettings.model_validate({"previous_token": TOKEN, "previous_aes_key": AES_KEY}).previous_token == TOKEN


async def test_the_callback_url_with_a_closing_slash_is_verified_and_answered(
        wecom: SimpleNamespace, crypto: WeComCrypto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guides in Chinese have admins save the URL as https://HOST/wecom/callback/: WeCom's check of it got a 404, and
    the URL could not be saved."""
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: int(VERIFY["timestamp"]) + 60))
    response = await wecom.client.get("/wecom/callback/", params=VERIFY, allow_redirects=False)
    assert (response.status, await response.text()) == (200, "1288432023552776189")
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: SAMPLE_NOW))
    response = await wecom.client.post("/wecom/callback/", params=MESSAGE, data=SAMPLE_BODY, allow_redirects=False)
    assert response.status == 200
    assert parse_xml(crypto.decrypt(parse_xml(await response.read()).findtext("Encrypt") or "")).findtext("Content") == ANSWER


async def test_a_url_check_with_the_servers_clock_off_fails_saying_so(
        wecom: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The console's check passed with the server's clock minutes off, and then every employee's message was refused
    for its timestamp: the URL was saved, and the bot answered no one."""
    monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: int(VERIFY["timestamp"]) + 420))
    response = await wecom.client.get("/wecom/callback", params=VERIFY)
    assert response.status == 401 and "timestamp" in await response.text()
    [said] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "it was signed 420 s before the time of this server's clock" in said and "set this server's clock" in said


async def test_get_verification_rejects_bad_input(wecom: SimpleNamespace) -> None:
    assert (await wecom.client.get("/wecom/callback", params={**VERIFY, "timestamp": "1476416374"})).status == 401
    response = await wecom.client.get("/wecom/callback", params={k: v for k, v in VERIFY.items() if k != "echostr"})
    assert response.status == 400 and "echostr" in await response.text()


async def test_sample_message_gets_an_encrypted_passive_reply(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    response = await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert response.status == 200
    outer = parse_xml(await response.read())
    encrypted, timestamp, nonce = outer.findtext("Encrypt") or "", outer.findtext("TimeStamp") or "", outer.findtext("Nonce") or ""
    crypto.check_signature(outer.findtext("MsgSignature") or "", timestamp, nonce, encrypted)
    reply = parse_xml(crypto.decrypt(encrypted))
    assert reply.findtext("Content") == ANSWER
    assert (reply.findtext("ToUserName"), reply.findtext("FromUserName"), reply.findtext("MsgType")) == ("ChenJiaShun", CORP_ID, "text")
    [turn] = wecom.bot.turns
    assert (turn.conversation_id, turn.text, turn.user) == (f"wecom:{CORP_ID}:ChenJiaShun", "你好", "ChenJiaShun")
    assert wecom.api.sent == []


async def test_duplicate_msgid_gets_one_reply(wecom: SimpleNamespace) -> None:
    first = await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    again = await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert "<Encrypt>" in await first.text()
    assert again.status == 200 and await again.text() == ""
    await wecom.channel.close()
    assert len(wecom.bot.turns) == 1 and wecom.api.sent == []


@pytest.mark.parametrize("other", [True, False], ids=["another server", "the same server"])
async def test_a_message_wecom_sends_again_after_its_passive_reply_was_lost_has_its_answer_sent(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path, other: bool) -> None:
    """WeCom sends a message again only when it got no reply to it: a passive answer lost on the network left the
    redelivery taken for a duplicate (same MsgId), answered by an empty 200, and the employee got nothing. The answer
    logged for the message is sent with message/send, once for WeCom's two redeliveries, and not computed again."""
    first, second = await store_servers(aiohttp_client, wecom_api, tmp_path / "dialogues.db")
    query, body = text_message(crypto, "付款失败了", "9103")
    assert "<Encrypt>" in await (await first.client.post("/wecom/callback", params=query, data=body)).text()
    for _ in range(200):  # the passive reply is written: its message is settled as answered that way
        if first.bot.store.db.execute("SELECT answered FROM pending").fetchone()[0] is not None:
            break
        await asyncio.sleep(0.01)
    for _ in range(2):  # WeCom's two retries, to the server behind the URL that takes each
        again = await (second if other else first).client.post("/wecom/callback", params=query, data=body)
        assert (again.status, await again.text()) == (200, "")
    await asyncio.wait_for(taken(wecom_api, 1), 10)
    await closed([first, second])
    assert [m["text"]["content"] for m in wecom_api.sent] == [ANSWER]
    assert [turn.text for turn in first.bot.turns + second.bot.turns] == ["付款失败了"]


async def test_a_message_without_a_msgid_is_known_after_a_restart_by_a_key_that_names_nobody(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """Its key was its sender's userid and its time, kept in the store for WeCom's retry window after the
    message was answered, and after its conversation was purged."""
    from dialogues.store import Store

    store = Store(tmp_path / "dialogues.db")

    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>zhangwei</FromUserName><CreateTime>1476422779"
             "</CreateTime><MsgType>text</MsgType><Content>退款多久到账</Content><AgentID>1000002</AgentID></xml>")
    answered = []
    for _ in range(2):  # the second, WeCom's retry, reaches a server started since
        bot = FakeBot()
        bot.store = store  # type: ignore[assignment]
        channel = WeComChannel(bot, settings(wecom_api.url))
        client = await client_for(aiohttp_client, channel)
        query, body = signed_post(crypto, inner)
        response = await client.post("/wecom/callback", params=query, data=body)
        answered.append("<Encrypt>" in await response.text())
        await channel.close()
        await client.close()
    store.purge(f"wecom:{CORP_ID}:zhangwei")
    [(key,)] = store.db.execute("SELECT key FROM pending").fetchall()
    store.close()
    assert answered == [True, False]
    assert key.startswith("wecom:") and "zhangwei" not in key and "1476422779" not in key


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("aes_key", "tooshort", "EncodingAESKey must be 43 characters"),
    ("aes_key", "!" * 43, "EncodingAESKey holds '!', which no EncodingAESKey has"),
    ("aes_key", AES_KEY[:20] + "，" + AES_KEY[21:], "EncodingAESKey holds '，', which no EncodingAESKey has"),
    ("aes_key", AES_KEY[:20] + " " + AES_KEY[20:], "EncodingAESKey holds ' ', which no EncodingAESKey has"),
    ("aes_key", AES_KEY + "==", "EncodingAESKey holds '='"),
    ("token", TOKEN[:10] + "，", "Token holds '，', which no Token has (letters and digits alone)"),
    ("token", AES_KEY, "Token has 43 characters, more than a Token has (32) (the EncodingAESKey?)"),
    ("agent_id", "abc", "agent_id is the app's number (AgentId), not 'abc'"),
])
def test_settings_that_cannot_be_used_stop_the_start_in_one_line(key: str, value: str, problem: str) -> None:
    """They ended `bot serve` in a traceback, and a bad DESKBOT_WECOM_AGENT_ID named neither key nor variable; a
    full-width character pasted into the EncodingAESKey was "string argument should contain only ASCII characters"."""
    with pytest.raises(ProjectError) as info:
        WeComChannel.from_settings(FakeBot(), settings("http://127.0.0.1:9/cgi-bin/", **{key: value}))
    assert str(info.value).startswith("channels.wecom (bot.yml, or DESKBOT_WECOM_TOKEN") and problem in str(info.value)


def test_a_token_and_key_swapped_are_said_to_be() -> None:
    """Both are random letters the console gives on one page: pasted into each other's place, the start only said
    the key must be 43 characters."""
    with pytest.raises(ProjectError, match=r"must be 43 characters \(32 bytes once decoded\), not 32 \(the Token and "
                                           r"the EncodingAESKey swapped\?\)"):
        WeComChannel.from_settings(FakeBot(), settings("http://127.0.0.1:9/cgi-bin/", token=AES_KEY, aes_key=TOKEN))


def test_a_key_written_with_its_closing_equals_sign_is_the_same_key() -> None:
    """The console shows the key without the "=" that ends its base64, and one added to it refused the start as
    "not base64"."""
    echoed = WeComCrypto(TOKEN, AES_KEY + "=", CORP_ID).verify_url(**VERIFY)
    assert echoed == WeComCrypto(TOKEN, AES_KEY, CORP_ID).verify_url(**VERIFY) and echoed


async def test_a_message_the_store_could_not_keep_is_answered_when_wecom_retries(
        aiohttp_client: Any, wecom_api: SimpleNamespace, tmp_path: Path) -> None:
    """Its 500 makes WeCom send it again, which was then taken for a duplicate: never stored, never answered.
    Nor may the lost attempt count against the conversation's limit: at one message a minute, the retry
    was told to wait."""
    bot = FakeBot()
    store_failing_once(bot, tmp_path / "dialogues.db")
    channel = WeComChannel(bot, settings(wecom_api.url))
    app = web.Application()
    app[LIMITS] = Limits(LimitsConfig(per_conversation_per_minute=1), 65536)
    client = await client_for(aiohttp_client, channel, app)
    assert (await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)).status == 500
    again = await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert again.status == 200 and "<Encrypt>" in await again.text()  # answered
    await channel.close()
    assert len(bot.turns) == 1


async def test_a_redelivery_while_the_first_waits_on_the_store_is_answered_if_that_one_fails(
        aiohttp_client: Any, wecom_api: SimpleNamespace, tmp_path: Path) -> None:
    """WeCom sends a message again after five seconds without an answer, and a store waiting on a lock takes
    up to thirty: the redeliveries got an empty 200 at once, as duplicates, and when the first then failed
    the message was never answered."""
    bot, held = FakeBot(), asyncio.Event()
    waiting = store_failing_once(bot, tmp_path / "dialogues.db", held)
    channel = WeComChannel(bot, settings(wecom_api.url))
    client = await client_for(aiohttp_client, channel)
    first = asyncio.create_task(client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY))
    await waiting.wait()
    again = asyncio.create_task(client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY))
    await asyncio.sleep(0.3)
    assert not again.done()  # it waits to learn whether the first was kept
    held.set()
    assert (await first).status == 500
    answered = await again
    assert answered.status == 200 and "<Encrypt>" in await answered.text()
    await channel.close()
    assert len(bot.turns) == 1


async def test_an_answer_message_send_fails_for_is_said_in_one_line_and_marked_undelivered(
        aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A late answer WeCom refused was a traceback under "background task failed", and the transcript showed
    it delivered."""
    async def gettoken(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})

    async def message_send(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 81013, "errmsg": "user & party & tag all invalid"})

    api = web.Application()
    api.router.add_get("/cgi-bin/gettoken", gettoken)
    api.router.add_post("/cgi-bin/message/send", message_send)
    server = await aiohttp_server(api)
    bot, marked, settled, handed = FakeBot(delay=0.3), [], [], []

    def not_delivered(conversation_id: str, turn_id: int, pending_id: int | None) -> bool:
        marked.append(turn_id), settled.append(pending_id)
        return True  # handed off, in the same transaction

    bot.store = SimpleNamespace(**PACED, receive=lambda *args: 1, offered=lambda _id: [], not_delivered=not_delivered,
                                delivered=settled.append)

    async def announce(*args: Any) -> None:
        handed.append(args)

    bot.announce = announce  # type: ignore[attr-defined]
    handle = bot.handle

    async def numbered(turn: Turn) -> Reply:
        reply = await handle(turn)
        reply.turn_id = 41
        return reply

    bot.handle = numbered
    channel = WeComChannel(bot, settings(str(server.make_url("/cgi-bin/")), reply_timeout=0.1))
    client = await client_for(aiohttp_client, channel)
    response = await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert response.status == 200 and await response.text() == ""  # too late: sent actively, and refused
    await channel.close()
    assert marked == [41] and settled == [1]  # refused for good: not sent again by the next server
    assert handed == [(f"wecom:{CORP_ID}:ChenJiaShun", True, "undelivered", "wecom")]  # only a person can still answer
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert failed == [f"the answer to {log_tag(f'wecom:{CORP_ID}:ChenJiaShun')} did not reach the customer: "
                      "message/send: 81013 user & party & tag all invalid (the employee is outside the app's "
                      "visible range: add them, or their department, to its 可见范围)"]


async def test_an_answer_owed_to_another_wecom_app_is_settled_not_sent_at_every_start(
        wecom_api: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """After corp_id changed, an answer a stopped server owed an employee of the old app raised ValueError,
    which left it owed: every start took it over and failed again. The ValueError named the conversation by its id,
    which names the employee, in the log's traceback."""
    bot, settled, marked, handed = FakeBot(), [], [], []

    async def announce(*args: Any) -> None:
        handed.append(args)

    def not_delivered(conversation_id: str, turn_id: int, pending_id: int | None) -> bool:
        marked.append(turn_id), settled.append(pending_id)
        return True

    bot.store = SimpleNamespace(**PACED, delivered=settled.append, not_delivered=not_delivered, conversation=lambda _id: None)
    bot.announce = announce  # type: ignore[attr-defined]
    channel = WeComChannel(bot, settings(wecom_api.url))
    channel.redeliver({"id": 7, "conversation_id": "wecom:ww-old:chen", "reply_turn": 42, "reply": "它明天到。",
                       "buttons": []})
    await channel.close()
    assert (settled, marked, handed) == ([7], [42], [("wecom:ww-old:chen", True, "undelivered", "wecom")])
    assert f"the answer to {log_tag('wecom:ww-old:chen')} could not be sent" in caplog.text and wecom_api.sent == []
    # nor does the traceback name the employee: the error names the conversation by its tag, as the log does
    assert f"ValueError: not a conversation of this WeCom app: {log_tag('wecom:ww-old:chen')}" in caplog.text
    assert "chen" not in caplog.text


async def test_buttons_alone_owed_to_a_chinese_customer_are_offered_in_chinese(wecom_api: SimpleNamespace) -> None:
    """An answer of buttons alone, owed by a stopped server, has no words to tell its language by: the
    customer's message tells it."""
    bot, settled = FakeBot(), []

    bot.store = SimpleNamespace(**PACED, delivered=settled.append, conversation=lambda _id: None)
    channel = WeComChannel(bot, settings(wecom_api.url))
    channel.redeliver({"id": 7, "conversation_id": f"wecom:{CORP_ID}:ChenJiaShun", "reply_turn": 42, "reply": "",
                       "text": "我要退货", "buttons": [{"title": "退货", "payload": "/return"}]})
    await channel.close()
    assert settled == [7]
    assert "回复数字即可选择" in wecom_api.sent[0]["text"]["content"]


async def test_an_answer_in_hong_kong_forms_owed_to_a_customer_is_resent_in_hong_kong_forms(
        wecom_api: SimpleNamespace) -> None:
    """An owed answer's script was read from its words alone: one in Hong Kong's forms (後台) read as Taiwan's, and
    its choice hint came in Taiwan's (裡面) under it. The conversation keeps its customer's script."""
    bot, settled = FakeBot(), []

    conversation = {"slots": {"chinese_script": "hongkong"}}
    bot.store = SimpleNamespace(**PACED, delivered=settled.append, conversation=lambda _id: conversation)
    channel = WeComChannel(bot, settings(wecom_api.url, choice_hint={"zh": "回复里面的数字即可选择。"}))
    channel.redeliver({"id": 7, "conversation_id": f"wecom:{CORP_ID}:ChenJiaShun", "reply_turn": 42,
                       "reply": "請在後台查看。", "buttons": [{"title": "退貨", "payload": "/return"}]})
    await channel.close()
    assert settled == [7]
    assert "回覆裏面的數字即可選擇" in wecom_api.sent[0]["text"]["content"]


async def test_a_refusal_whose_fix_is_the_apps_settings_names_the_setting(wecom_api: SimpleNamespace) -> None:
    """A wrong CorpID or Secret made every late answer fail as "gettoken: 40013 invalid corpid", and the operator
    looked the code up to learn which of the five values was wrong, and where the right one is."""
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, corp_id="ww-mistyped"))
    with pytest.raises(WeComAPIError) as failed:
        await channel.send("wecom:ww-mistyped:ChenJiaShun", "它明天到。")
    await channel.close()
    assert str(failed.value) == ("gettoken: 40013 invalid corpid (set channels.wecom.corp_id (or DESKBOT_WECOM_CORP_ID) "
                                 "to the company's CorpID (我的企业 > 企业信息 > 企业ID))")


SECRET_FIX = ("set channels.wecom.secret (or DESKBOT_WECOM_SECRET) to the Secret of the app whose AgentId is "
              "channels.wecom.agent_id (应用管理 > the app > Secret)")
REFUSED_AT_START = ("ERROR WeCom refused the app's settings at start ({}): answers later than a passive reply and agents' "
                    "replies do not reach WeCom's customers, each handed to an agent as undelivered, until it is set right")


@pytest.mark.parametrize("secret, trusted, said", [
    ("app-secret", True, f"INFO WeCom: the Secret is the app 小店客服 (AgentId 1000002) of CorpID {CORP_ID}"),
    ("the-aes-key-by-mistake", True, REFUSED_AT_START.format(f"gettoken: 40001 invalid credential ({SECRET_FIX})")),
    ("app-secret", False, REFUSED_AT_START.format(
        "agent/get: 60020 not allow to access from your ip (WeCom takes API calls only from the app's trusted IPs: add "
        "this server's public IP under the app's 企业可信IP)")),
])
async def test_the_apps_settings_are_checked_with_wecom_at_start(
        wecom_api: SimpleNamespace, caplog: pytest.LogCaptureFixture, secret: str, trusted: bool, said: str) -> None:
    """A wrong Secret, or a server outside the app's trusted IPs, showed only when the first answer too late to be
    passive, or an agent's reply, failed, and that customer was handed to an agent as undelivered: passive replies
    never ask for a token. WeCom is asked at start (gettoken, then agent/get with its token, which WeCom checks the
    trusted IPs on), and the log names the app, or what to fix."""
    caplog.set_level(logging.INFO, logger="bot.channels.wecom")
    wecom_api.trusted = trusted
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, secret=secret))
    channel.start()
    await channel._checking
    await channel.close()
    assert [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "bot.channels.wecom"] == [said]
    assert wecom_api.issued == ([] if secret != "app-secret" else ["TOKEN1"])


@pytest.mark.parametrize(("busy", "code", "said"), [
    (1, 45009, "INFO WeCom: the Secret is the app 小店客服 (AgentId 1000002) of CorpID ww1436e0e65a779aee"),
    (3, -1, "WARNING WeCom was reached at start but asked to be called later (gettoken: -1 system busy at try 3 of 3): "
            "the app's settings are not checked; answers are tried as messages come, each again while WeCom is busy"),
])
async def test_a_busy_wecom_at_start_is_tried_again_and_not_said_out_of_reach(
        wecom_api: SimpleNamespace, caplog: pytest.LogCaptureFixture, busy: int, code: int, said: str) -> None:
    """WeCom answering the check at start that it is busy (-1) or the app over its call rates (45009, 45033) was said
    as "could not be reached … check channels.wecom.api_url": an admin went looking for a wrong address, and WeCom had
    answered. It is tried again, as a send is, and said for what it is."""
    caplog.set_level(logging.INFO, logger="bot.channels.wecom")
    wecom_api.busy_tokens, wecom_api.busy_code = busy, code
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    channel.start()
    await channel._checking
    await channel.close()
    assert [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "bot.channels.wecom"] == [said]
    assert wecom_api.busy_tokens == 0


async def test_a_wecom_that_never_answers_the_check_at_start_does_not_hold_up_the_shutdown(
        aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The check at start waits for WeCom a few seconds at most, and a server stopped meanwhile does not wait for it:
    a WeCom API address that takes the connection and never answers would have held the shutdown for its grace."""
    asked, never = asyncio.Event(), asyncio.Event()

    async def gettoken(request: web.Request) -> web.Response:
        asked.set()
        await never.wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    server = await aiohttp_server(app)
    channel = WeComChannel(FakeBot(), settings(str(server.make_url("/cgi-bin/"))))
    channel.start()
    await asyncio.wait_for(asked.wait(), timeout=5.0)
    await asyncio.wait_for(channel.close(grace=30.0), timeout=2.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_wecom_out_of_reach_at_start_is_said_once_with_the_address_to_check(
        caplog: pytest.LogCaptureFixture) -> None:
    """WeCom not answering at start (a mistyped api_url, no way out of the server) is said after one try, naming
    api_url: a try again would only delay the line."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/cgi-bin/"
    channel = WeComChannel(FakeBot(), settings(url))
    channel.start()
    await asyncio.wait_for(channel._checking, timeout=2.0)  # one try: a second would wait a second first
    await channel.close()
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith("WeCom could not be reached at start (") and (
        f"check channels.wecom.api_url (or DESKBOT_WECOM_API_URL), now {url}, and that this server can reach it" in line)


async def test_a_redirect_from_wecoms_api_url_is_not_followed(aiohttp_server: Any) -> None:
    """A 307 from api_url (a proxy's, a mistyped address) had this server send gettoken, the app's secret in its
    query, and then the customer's answer to whatever address it named, one on the server's own network included."""
    elsewhere: list[str] = []

    async def collect(request: web.Request) -> web.Response:
        elsewhere.append(request.path_qs)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": "T", "expires_in": 7200})

    other = web.Application()
    other.router.add_route("*", "/{anything:.*}", collect)
    collector = await aiohttp_server(other)

    async def gettoken(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(collector.make_url("/cgi-bin/gettoken").with_query(request.query)))

    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    channel = WeComChannel(FakeBot(), settings(str((await aiohttp_server(app)).make_url("/cgi-bin/"))))
    with pytest.raises(WeComAPIError, match="gettoken: HTTP 307"):
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "您的订单 55667 明天到。")
    await channel.close()
    assert elsewhere == []


async def test_a_wecom_out_of_reach_at_start_is_said_without_the_proxys_password(
        caplog: pytest.LogCaptureFixture) -> None:
    """An api_url through a proxy that asks for a password (``https://user:password@proxy/cgi-bin/``) was said whole
    in the log line naming the address to check, as Slack's is not."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    channel = WeComChannel(FakeBot(), settings(f"http://relay:pr0xy-s3cret@127.0.0.1:{port}/cgi-bin/"))
    channel.start()
    await asyncio.wait_for(channel._checking, timeout=2.0)
    await channel.close()
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"now http://127.0.0.1:{port}/cgi-bin/, and that" in line and "pr0xy-s3cret" not in caplog.text


async def test_wecom_busy_is_tried_again_up_to_three_times(wecom_api: SimpleNamespace) -> None:
    """WeCom's -1 asks to try again later: the answer went to a person instead."""
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    wecom_api.busy = 1
    await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "它明天到。")
    assert [m["text"]["content"] for m in wecom_api.sent] == ["它明天到。"]
    wecom_api.busy = 3
    with pytest.raises(WeComAPIError, match="message/send: -1 system busy at try 3 of 3"):
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "还有别的吗？")
    assert wecom_api.busy == 0 and len(wecom_api.sent) == 1
    await channel.close()


@pytest.mark.parametrize("code", [45009, 45033])
async def test_wecoms_rate_limit_is_tried_again(wecom_api: SimpleNamespace, code: int) -> None:
    """Over the app's API call rate (45009) or its concurrent calls (45033) WeCom sent nothing and asks for a later
    try: the answer was marked undelivered at once, and its customer handed to a person."""
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    wecom_api.busy, wecom_api.busy_code = 1, code
    await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "它明天到。")
    assert [m["text"]["content"] for m in wecom_api.sent] == ["它明天到。"] and wecom_api.busy == 0
    await channel.close()


async def test_a_passive_answer_wecom_hung_up_on_goes_out_actively_and_is_settled_only_then(
        aiohttp_client: Any, wecom_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept message was settled before its passive answer was written: a write that failed (or a server
    killed in between) left WeCom's retry taken for one already answered, and the answer never went out."""
    bot, settled = FakeBot(), []

    bot.store = SimpleNamespace(**PACED, receive=lambda *args: 1, offered=lambda _id: [], delivered=settled.append)  # type: ignore[assignment]
    channel = WeComChannel(bot, settings(wecom_api.url))

    class HungUp(web.Response):
        async def prepare(self, request: web.BaseRequest) -> Any:
            raise ConnectionResetError("Cannot write to closing transport")

    passive = channel._passive_reply
    monkeypatch.setattr(channel, "_passive_reply", lambda *args: HungUp(body=passive(*args).body))
    client = await client_for(aiohttp_client, channel)
    with pytest.raises(aiohttp.ClientError):
        await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    await channel.close()  # waits for the active send
    assert [m["text"]["content"] for m in wecom_api.sent] == [ANSWER] and settled == [1]


async def test_slow_answer_gets_empty_200_then_active_send_with_token_refresh(
    aiohttp_client: Any, wecom_api: SimpleNamespace
) -> None:
    bot = FakeBot(delay=0.4)
    channel = WeComChannel(bot, settings(wecom_api.url, reply_timeout=0.1))
    client = await client_for(aiohttp_client, channel)
    response = await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert response.status == 200 and await response.text() == ""
    for _ in range(200):  # the late answer is sent in the background
        if wecom_api.sent:
            break
        await asyncio.sleep(0.02)
    assert wecom_api.sent == [{"touser": "ChenJiaShun", "msgtype": "text", "agentid": 1000002, "text": {"content": ANSWER}}]
    assert wecom_api.issued == ["TOKEN1", "TOKEN2"]  # 42001 on the first token: refreshed, retried once
    await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "an agent's follow-up")
    assert wecom_api.issued == ["TOKEN1", "TOKEN2"]  # the token stays cached
    assert len(wecom_api.sent) == 2
    await channel.close()
    with pytest.raises(Stopping):  # closed: no session is opened again to send on
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "too late")
    assert len(wecom_api.sent) == 2


async def test_a_token_wecom_says_lasts_minutes_more_is_used_not_fetched_again_at_each_send(
        wecom_api: SimpleNamespace) -> None:
    """WeCom gives out the token it gave before while that one lasts, saying so by a shorter ``expires_in``: a server
    that asked in its last 5 minutes (started beside one that fetched it earlier, or refreshing it ahead of time)
    took it for expired already and called gettoken again at every send, which WeCom rate-limits."""
    wecom_api.expires_in = 200
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    for n in range(3):
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", f"消息{n}")
    await channel.close()
    assert [m["text"]["content"] for m in wecom_api.sent] == ["消息0", "消息1", "消息2"]
    assert wecom_api.issued == ["TOKEN1", "TOKEN2"]  # 42001 on the first: refreshed once, then kept


async def test_time_spent_before_the_turn_counts_against_the_passive_reply(
    aiohttp_client: Any, wecom_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store busy with another writer delays keeping the turn: WeCom's deadline runs from the request."""
    channel = WeComChannel(FakeBot(delay=0.05), settings(wecom_api.url, reply_timeout=0.2))
    keep = channel.keep

    async def slow_keep(turn: Turn, key: str, within: tuple[int, float] | None = None) -> bool:
        await asyncio.sleep(0.3)
        return await keep(turn, key, within)

    monkeypatch.setattr(channel, "keep", slow_keep)
    client = await client_for(aiohttp_client, channel)
    response = await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert response.status == 200 and await response.text() == ""
    await channel.close()
    assert [m["text"]["content"] for m in wecom_api.sent] == [ANSWER]


async def test_an_answer_wecom_hung_up_on_goes_out_actively(wecom_api: SimpleNamespace, unused_tcp_port: int) -> None:
    """As `bot serve` runs it, aiohttp lets a handler run on after its client hung up (test servers cancel it)."""
    channel = WeComChannel(FakeBot(delay=0.3), settings(wecom_api.url, reply_timeout=2.0))
    app = web.Application()
    app.add_routes(channel.routes())
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.post(f"http://127.0.0.1:{unused_tcp_port}/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
        await asyncio.sleep(0.5)  # the handler finds the connection gone once the answer is ready
        await channel.close()
    finally:
        await runner.cleanup()
    assert [m["text"]["content"] for m in wecom_api.sent] == [ANSWER]


async def test_a_kept_message_a_killed_server_left_is_answered_actively(wecom: SimpleNamespace) -> None:
    wecom.channel.resume(Turn(f"wecom:{CORP_ID}:ChenJiaShun", "你好", "wecom", "ChenJiaShun"))
    await wecom.channel.close()
    assert [t.text for t in wecom.bot.turns] == ["你好"]
    assert wecom.api.sent == [{"touser": "ChenJiaShun", "msgtype": "text", "agentid": 1000002, "text": {"content": ANSWER}}]


async def test_long_answer_goes_out_actively_in_pieces(wecom: SimpleNamespace) -> None:
    wecom.bot.text = "答" * 1000  # 3,000 bytes: more than one message holds
    response = await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert await response.text() == ""
    await wecom.channel.close()
    assert "".join(m["text"]["content"] for m in wecom.api.sent) == "答" * 1000 and len(wecom.api.sent) == 2


async def test_an_answer_in_many_pieces_and_an_agents_message_keep_within_wecoms_sends_a_minute(
        wecom_api: SimpleNamespace) -> None:
    """WeCom takes 30 message/send calls a minute from one app to one employee and drops the others, answering
    errcode 0: the pieces of a long answer, with an agent's message beside them, were lost past the 30th. The sends
    to one employee wait their turn, a message's pieces together, within that limit (the window shortened here)."""
    wecom_api.window = 0.5
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    channel.send_window_s = wecom_api.window
    pieces = [f"第{n}段。" + "答" * 670 for n in range(1, 36)]  # over 2,020 bytes each: one message each
    conversation = f"wecom:{CORP_ID}:ChenJiaShun"
    await asyncio.gather(channel.send(conversation, "\n".join(pieces)), channel.send(conversation, "小李：稍等，我查一下。"))
    await channel.close()
    assert wecom_api.dropped == []
    sent = [m["text"]["content"] for m in wecom_api.sent if m["touser"] == "ChenJiaShun"]
    assert sent == [*pieces, "小李：稍等，我查一下。"]  # the agent's message waits for the whole answer, not between its pieces


async def test_two_servers_on_one_store_keep_together_within_wecoms_sends_a_minute(
        wecom_api: SimpleNamespace, tmp_path: Path) -> None:
    """Two servers on one store, each sending a long answer to the same employee (20 pieces each, 40 in all): each
    counted its own sends, 20 of WeCom's 30 a minute, and WeCom dropped the ten over 30. They count them together in
    the store (the window shortened here)."""
    from dialogues.store import Store

    wecom_api.window = 0.5
    channels = []
    for _ in range(2):
        bot = FakeBot()
        bot.store = Store(tmp_path / "dialogues.db")  # one Store each, on the same file, as two processes have
        bot.store.add_message(f"wecom:{CORP_ID}:ChenJiaShun", "user", "我要退货", "wecom")
        channel = WeComChannel(bot, settings(wecom_api.url))
        channel.send_window_s = wecom_api.window
        channels.append(channel)
    conversation = f"wecom:{CORP_ID}:ChenJiaShun"
    answers = [[f"{server}-{n}。" + "答" * 670 for n in range(20)] for server in ("甲", "乙")]
    await asyncio.gather(*(channel.send(conversation, "\n".join(pieces)) for channel, pieces in zip(channels, answers)))
    for channel in channels:
        await channel.close()
    assert wecom_api.dropped == []
    sent = [m["text"]["content"] for m in wecom_api.sent]
    assert sorted(sent) == sorted(answers[0] + answers[1])
    assert [piece for piece in sent if piece.startswith("甲")] == answers[0]  # each answer's pieces in order


@pytest.mark.parametrize("failing, said", [
    ("take_send", "counted by this server alone, as the store could not count them (database is locked)"),
    ("send_ended", "counted by this server alone, as the store could not count them (database is locked)"),
    ("take_turn", "goes out without waiting for the other servers' to its customer, as the store could not say whose "
                  "turn it is (database is locked)")])
async def test_a_store_that_cannot_count_the_sends_holds_none_up_nor_has_it_taken_for_undelivered(
        wecom_api: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture, failing: str, said: str) -> None:
    """A store that could not write as a message was counted (held locked by another process past its wait, a full
    disk) failed the send before it went out, or one WeCom had taken after it: the answer was told undelivered and
    its customer handed to a person. It is counted by this server alone meanwhile, and said so; so is a store that
    cannot say whose turn it is to send to the employee."""
    from dialogues.store import Store

    bot = FakeBot()
    bot.store = Store(tmp_path / "dialogues.db")
    bot.store.serve()

    def locked(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    setattr(bot.store, failing, locked)
    channel = WeComChannel(bot, settings(wecom_api.url))
    await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "稍等，我查一下。")
    await channel.close()
    assert [m["text"]["content"] for m in wecom_api.sent] == ["稍等，我查一下。"]
    assert said in caplog.text


SENDING_SERVER = """
import asyncio, sys
from bot.channels.wecom import WeComChannel
from dialogues.store import Store
from tests.test_wecom import CORP_ID, FakeBot, settings

async def main(db: str, url: str, window: str, tag: str, pieces: str) -> None:
    bot = FakeBot()
    bot.store = Store(db)
    bot.store.serve()  # as `bot serve` does
    channel = WeComChannel(bot, settings(url))
    channel.send_window_s = float(window)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # told when to start sending
    await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "\\n".join(f"{tag}-{n}。" + "答" * 670 for n in range(int(pieces))))
    await channel.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def sending_servers(api: SimpleNamespace, db: Path, pieces: dict[str, int]) -> list[asyncio.subprocess.Process]:
    """Two `bot serve` processes on the store ``db``, as SENDING_SERVER runs them, each ready to send, when told
    (:func:`go`), its tag's number of ``pieces`` to one employee."""
    servers = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", SENDING_SERVER, str(db), api.url, str(api.window), tag, str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO) for tag, count in pieces.items()]
    for server in servers:
        assert await server.stdout.readline() == b"ready\n"
    return servers


async def go(server: asyncio.subprocess.Process) -> None:
    """Have a :func:`sending_servers` server send."""
    assert server.stdin is not None
    server.stdin.write(b"go\n")
    await server.stdin.drain()


async def test_two_server_processes_on_one_store_keep_together_within_wecoms_sends_a_minute(
        wecom_api: SimpleNamespace, tmp_path: Path) -> None:
    """The same as two processes on one host, as two `bot serve` on one store run: 40 pieces to one employee, 30 of
    which WeCom takes in its window, none dropped."""
    wecom_api.window, wecom_api.same_token = 0.5, True
    from dialogues.store import Store

    store = Store(tmp_path / "dialogues.db")  # migrated before both open it
    store.add_message(f"wecom:{CORP_ID}:ChenJiaShun", "user", "我要退货", "wecom")
    store.close()
    servers = await sending_servers(wecom_api, tmp_path / "dialogues.db", {"甲": 20, "乙": 20})
    for server in servers:  # both start sending at once
        await go(server)
    assert [await asyncio.wait_for(server.wait(), 60) for server in servers] == [0, 0]
    assert wecom_api.dropped == [] and len(wecom_api.sent) == 40


async def test_a_long_answer_sent_by_one_server_has_no_message_of_another_server_between_its_pieces(
        wecom_api: SimpleNamespace, tmp_path: Path) -> None:
    """Two processes on one store, as two `bot serve` behind one callback URL: one sends a long answer in eight
    pieces, and the other, once the first piece is out, a message to the same employee (its answer to their next
    message, or an agent's reply). Each server sent one message at a time for itself alone, and the employee read the
    other's message between the answer's pieces. It waits for the answer's last piece."""
    wecom_api.window, wecom_api.same_token, wecom_api.send_s = 60.0, True, 0.2
    from dialogues.store import Store

    store = Store(tmp_path / "dialogues.db")
    store.add_message(f"wecom:{CORP_ID}:ChenJiaShun", "user", "我要退货", "wecom")
    store.close()
    answering, other = await sending_servers(wecom_api, tmp_path / "dialogues.db", {"甲": 8, "乙": 1})
    await go(answering)
    await asyncio.wait_for(wecom_api.arrived.wait(), 30)  # the answer's first piece is out
    await go(other)
    assert [await asyncio.wait_for(server.wait(), 60) for server in (answering, other)] == [0, 0]
    assert [m["text"]["content"].split("。")[0] for m in wecom_api.sent] == [*(f"甲-{n}" for n in range(8)), "乙-0"]


async def taken(api: SimpleNamespace, count: int) -> None:
    """Wait until WeCom's stand-in has taken ``count`` messages."""
    while True:
        api.arrived.clear()
        if len(api.sent) >= count:
            return
        await api.arrived.wait()


async def store_servers(aiohttp_client: Any, api: SimpleNamespace, db: Path, limits: LimitsConfig | None = None,
                        **extra: Any) -> list[SimpleNamespace]:
    """Two serving WeCom servers on the store ``db`` (one Store each, on the same file, as two processes have), each
    with its ``bot``, which logs its answers there, ``channel`` and test ``client``, and its own ``limits``, if any."""
    from dialogues.store import Store

    servers = []
    for _ in range(2):
        bot = FakeBot()
        bot.store, bot.logs = Store(db), True
        bot.store.serve()
        channel = WeComChannel(bot, settings(api.url, reply_timeout=4.0, **extra))
        app = web.Application()
        if limits is not None:
            app[LIMITS] = Limits(limits, 65536)
        servers.append(SimpleNamespace(bot=bot, channel=channel, client=await client_for(aiohttp_client, channel, app)))
    return servers


async def closed(servers: list[SimpleNamespace]) -> None:
    """Close :func:`store_servers`' channels and stores."""
    for server in servers:
        await server.channel.close()
        server.bot.store.close()


@pytest.mark.parametrize("other", [True, False], ids=["another server", "the same server"])
async def test_an_answer_ready_while_a_long_one_goes_out_waits_for_its_pieces_rather_than_going_back_passively(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path, other: bool) -> None:
    """A server sending an employee a long answer (or an agent's reply) in pieces, and the employee's next message
    answered in time, by that server or another on the store behind the callback URL: the passive reply, which takes
    no turn, went back at once and the employee read it between the pieces. It goes out actively, after them."""
    wecom_api.send_s = 0.2
    servers = await store_servers(aiohttp_client, wecom_api, tmp_path / "dialogues.db")
    sending, answering = servers if other else servers[:1] * 2
    pieces = [f"第{n}段。" + "答" * 670 for n in range(1, 6)]
    long_answer = asyncio.create_task(sending.channel.send(f"wecom:{CORP_ID}:u1", "\n".join(pieces)))
    await asyncio.wait_for(wecom_api.arrived.wait(), 10)  # its first piece is out
    query, body = text_message(crypto, "还在吗", "9101")
    response = await answering.client.post("/wecom/callback", params=query, data=body)
    assert (response.status, await response.text()) == (200, "")
    await long_answer
    await asyncio.wait_for(taken(wecom_api, len(pieces) + 1), 10)  # the answer, sent once its turn came
    await closed(servers)
    assert [m["text"]["content"] for m in wecom_api.sent] == [*pieces, ANSWER]


async def test_a_hint_due_while_a_long_answer_goes_out_follows_its_pieces(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto) -> None:
    """A picture sent while the employee was being sent a long answer was told to type in the callback's response at
    once, between that answer's pieces. The hint goes out after them."""
    wecom_api.send_s = 0.2
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    pieces = [f"第{n}段。" + "答" * 670 for n in range(1, 4)]
    long_answer = asyncio.create_task(channel.send(f"wecom:{CORP_ID}:u1", "\n".join(pieces)))
    await asyncio.wait_for(wecom_api.arrived.wait(), 10)  # its first piece is out
    assert await unread_reply(client, crypto, PICTURE.format(n=1)) == ""
    await long_answer
    await asyncio.wait_for(taken(wecom_api, len(pieces) + 1), 10)
    await channel.close()
    assert [m["text"]["content"] for m in wecom_api.sent] == [*pieces, TYPE_HINT]


@pytest.mark.parametrize("written", [True, False], ids=["written since", "waited too long"])
async def test_a_hint_waiting_for_another_servers_long_answer_is_dropped_once_no_longer_relevant(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, written: bool) -> None:
    """A picture reaching one server while another sends the employee a long answer: its "please type" waited for
    that answer's turn and went out whenever it came, a minute later behind a long one, after the employee had typed
    their question and been answered. It is dropped, and the log says why, once the customer has written since, or
    once it has waited longer than a send turn goes unrenewed (shortened here)."""
    from bot.channels import wecom as module

    caplog.set_level(logging.INFO, logger="bot.channels.wecom")
    wecom_api.send_s = 0.2
    if not written:
        monkeypatch.setattr(module, "NOTICE_STALE_S", 0.3)
    sending, told = await store_servers(aiohttp_client, wecom_api, tmp_path / "dialogues.db", language="zh")
    pieces = [f"第{n}段。" + "答" * 670 for n in range(1, 6)]
    long_answer = asyncio.create_task(sending.channel.send(f"wecom:{CORP_ID}:u1", "\n".join(pieces)))
    await asyncio.wait_for(wecom_api.arrived.wait(), 10)  # its first piece is out
    assert await unread_reply(told.client, crypto, PICTURE.format(n=1)) == ""  # the hint waits its turn
    if written:
        query, body = text_message(crypto, "付款失败了", "9102")
        assert await (await told.client.post("/wecom/callback", params=query, data=body)).text() == ""
    await long_answer
    await asyncio.wait_for(taken(wecom_api, len(pieces) + written), 10)
    for _ in range(500):  # until the hint's turn has come
        if "is not sent" in caplog.text:
            break
        await asyncio.sleep(0.01)
    await closed([sending, told])
    assert [m["text"]["content"] for m in wecom_api.sent] == [*pieces, *[ANSWER] * written]
    assert ("its customer has written since" if written else "s to go out, more than 0.3 s") in caplog.text


async def test_a_notice_wecoms_rate_would_hold_past_relevance_is_dropped(
        wecom_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An employee sent WeCom's 30 messages of a minute (a long answer's pieces): a "please type" for their picture
    then waited for a place in the next minute, and went out up to a minute later. It is dropped where that wait would
    outlast its relevance (the window and the relevance shortened here)."""
    from bot.channels import wecom as module

    caplog.set_level(logging.INFO, logger="bot.channels.wecom")
    monkeypatch.setattr(module, "NOTICE_STALE_S", 0.3)
    channel = WeComChannel(FakeBot(), settings(wecom_api.url))
    channel.send_window_s = 5.0
    conversation = f"wecom:{CORP_ID}:u1"
    for n in range(30):
        await channel.send(conversation, f"第{n}段。")
    await channel._tell(conversation, TYPE_HINT)
    await channel.close()
    assert len(wecom_api.sent) == 30 and TYPE_HINT not in [m["text"]["content"] for m in wecom_api.sent]
    assert "a notice to" in caplog.text and "s to go out, more than 0.3 s" in caplog.text


async def test_silent_reply_sends_nothing(wecom: SimpleNamespace) -> None:
    wecom.bot.text, wecom.bot.source = "", "silent"
    response = await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)
    assert response.status == 200 and await response.text() == ""
    await wecom.channel.close()
    assert len(wecom.bot.turns) == 1 and wecom.api.sent == []


async def test_tampered_signature_is_401_and_not_processed(wecom: SimpleNamespace) -> None:
    response = await wecom.client.post("/wecom/callback", params={**MESSAGE, "nonce": "1"}, data=SAMPLE_BODY)
    assert response.status == 401
    assert wecom.bot.turns == []


async def test_stale_or_future_timestamp_is_401_and_not_processed(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><MsgType>text</MsgType>"
             "<Content>hello</Content><MsgId>7</MsgId></xml>")
    for timestamp in (str(SAMPLE_NOW - 301), str(SAMPLE_NOW + 301), "later"):  # a replay, a forged clock, junk
        query, body = signed_post(crypto, inner, timestamp=timestamp)
        response = await wecom.client.post("/wecom/callback", params=query, data=body)
        assert response.status == 401 and "timestamp" in await response.text(), timestamp
    query, body = signed_post(crypto, inner, timestamp=str(SAMPLE_NOW - 299))
    assert (await wecom.client.post("/wecom/callback", params=query, data=body)).status == 200
    assert [t.text for t in wecom.bot.turns] == ["hello"]


async def test_a_message_for_another_app_of_the_company_is_acknowledged_not_answered(
        wecom: SimpleNamespace, crypto: WeComCrypto, caplog: pytest.LogCaptureFixture) -> None:
    """Two apps of one company saved with the same URL, Token and EncodingAESKey both reach the server: the other
    app's employees were answered from this app (message/send names its agent_id). Their messages are acknowledged
    (WeCom does not send them again), not answered, and the log says so once for that app."""
    for msg_id, kind in (("9001", "<MsgType>text</MsgType><Content>退款多久到账</Content>"),
                         ("9002", "<MsgType>text</MsgType><Content>还在吗</Content>"),
                         ("9003", "<MsgType>image</MsgType><PicUrl>http://p.qpic.cn/x</PicUrl>")):
        query, body = signed_post(crypto, f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>LiLei</FromUserName>"
                                          f"<CreateTime>1476422779</CreateTime>{kind}<MsgId>{msg_id}</MsgId>"
                                          "<AgentID>1000003</AgentID></xml>")
        response = await wecom.client.post("/wecom/callback", params=query, data=body)
        assert (response.status, await response.text()) == (200, "")
    assert wecom.bot.turns == [] and wecom.api.sent == []
    [said] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said.startswith("WeCom's request to /wecom/callback was for the app with AgentId '1000003', and "
                           "channels.wecom.agent_id (or DESKBOT_WECOM_AGENT_ID) is 1000002: its messages are "
                           "acknowledged and not answered"), said
    assert (await wecom.client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)).status == 200
    assert [turn.text for turn in wecom.bot.turns] == ["你好"]  # this app's own are answered


async def test_message_for_another_corp_is_401(aiohttp_client: Any, wecom_api: SimpleNamespace) -> None:
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, corp_id="wwSOMEOTHERCORP"))
    client = await client_for(aiohttp_client, channel)
    assert (await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)).status == 401
    await channel.close()


async def test_a_message_for_another_corp_id_names_both_in_the_log(
        aiohttp_client: Any, wecom_api: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """A CorpID mistyped in bot.yml (a space kept in its quotes, an O for a 0) had every message refused with "set it to
    the company's CorpID", beside a value that looked like it: the log shows the one WeCom encrypted for."""
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, corp_id=CORP_ID.replace("0", "O") + " "))
    client = await client_for(aiohttp_client, channel)
    assert (await client.post("/wecom/callback", params=MESSAGE, data=SAMPLE_BODY)).status == 401
    await channel.close()
    [said] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said.endswith(f"(it was encrypted for '{CORP_ID}', corp_id is '{CORP_ID.replace('0', 'O')} ')"), said


async def test_a_message_encrypted_with_another_key_is_401(wecom: SimpleNamespace) -> None:
    """Signed with the Token, encrypted with a key that is not this app's (rotated in the admin console)."""
    other = WeComCrypto(TOKEN, base64.b64encode(bytes(range(32))).decode().rstrip("="), CORP_ID)
    query, body = signed_post(other, "<xml><FromUserName>u1</FromUserName><MsgType>text</MsgType>"
                                     "<Content>hello</Content><MsgId>8</MsgId></xml>")
    response = await wecom.client.post("/wecom/callback", params=query, data=body)
    assert response.status == 401 and "EncodingAESKey" in await response.text()
    assert wecom.bot.turns == []


async def test_wecoms_requests_refused_for_a_wrong_setting_or_a_clock_off_are_said_in_the_log(
        aiohttp_client: Any, wecom: SimpleNamespace, wecom_api: SimpleNamespace, crypto: WeComCrypto,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """WeCom's check of the callback URL, then every message, got a silent 401 when the token, the EncodingAESKey or
    the corp id was not the app's, or when the server's clock was minutes off: the admin had WeCom's "请求URL失败"
    alone. One warning a minute says which setting to fix, and never the secrets themselves."""
    def warnings() -> list[str]:
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        caplog.clear()
        return said

    for _ in range(2):  # said once a minute
        assert (await wecom.client.get("/wecom/callback", params={**VERIFY, "nonce": "1"})).status == 401
    [token] = warnings()
    assert token.startswith("WeCom's request to /wecom/callback was refused (401): its msg_signature is not made with "
                            "channels.wecom.token (or DESKBOT_WECOM_TOKEN)"), token
    assert "while a new one is not saved there yet, set channels.wecom.previous_token (or DESKBOT_WECOM_PREVIOUS_TOKEN)" \
        in token, token  # the old one WeCom signs with until the new one is saved
    inner = "<xml><FromUserName>u1</FromUserName><MsgType>text</MsgType><Content>hello</Content><MsgId>8</MsgId></xml>"
    for case, channel_settings in (("aes_key", {"aes_key": base64.b64encode(bytes(range(32))).decode().rstrip("=")}),
                                   ("corp_id", {"corp_id": "wwSOMEOTHERCORP"}), ("clock", {})):
        channel = WeComChannel(FakeBot(), settings(wecom_api.url, **channel_settings))
        client = await client_for(aiohttp_client, channel)
        monkeypatch.setattr(WeComChannel, "clock", staticmethod(lambda: SAMPLE_NOW + (420 if case == "clock" else 0)))
        query, body = signed_post(crypto, inner)
        assert (await client.post("/wecom/callback", params=query, data=body)).status == 401
        await channel.close()
        [said] = warnings()
        assert said.startswith("WeCom's request to /wecom/callback was refused (401): "), said
        assert (f"channels.wecom.{case} (or DESKBOT_WECOM_{case.upper()})" in said if case != "clock"
                else re.search(r"it was signed 480 s before the time of this server's clock, more than the 300 s "
                               r"allowed: if every request of WeCom's is refused so, set this server's clock right", said))
        assert not {TOKEN, AES_KEY, "app-secret"} & set(re.findall(r"[\w-]+", said)), said


async def test_bad_bodies_are_400_or_413(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    for body in ("<xml><Encrypt>", "<xml><ToUserName>x</ToUserName></xml>", '<!DOCTYPE x [<!ENTITY a "b">]><xml/>'):
        response = await wecom.client.post("/wecom/callback", params=MESSAGE, data=body)
        assert response.status == 400, body
    query, body = signed_post(crypto, "<xml><MsgType>text</MsgType><Content>unclosed")
    response = await wecom.client.post("/wecom/callback", params=query, data=body)
    assert response.status == 400 and "malformed XML" in await response.text()
    assert (await wecom.client.post("/wecom/callback", params={}, data=SAMPLE_BODY)).status == 400
    assert (await wecom.client.post("/wecom/callback", params=MESSAGE, data="x" * 5000)).status == 413
    assert wecom.bot.turns == []


@pytest.mark.parametrize("payload", [
    "<MsgType>event</MsgType><Event>enter_agent</Event>",
    "<MsgType>text</MsgType><Content>\u200b \u3000</Content><MsgId>42</MsgId>",  # nothing to read
], ids=["event", "blank_text"])
async def test_events_and_non_text_messages_are_acknowledged_not_answered(wecom: SimpleNamespace, crypto: WeComCrypto,
                                                                          payload: str) -> None:
    inner = (
        f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000</CreateTime>"
        f"{payload}<AgentID>1000002</AgentID></xml>"
    )
    query, body = signed_post(crypto, inner)
    response = await wecom.client.post("/wecom/callback", params=query, data=body)
    assert response.status == 200 and await response.text() == ""
    assert wecom.bot.turns == []


TYPE_HINT = "抱歉，我只能读懂文字消息，请用文字描述您的问题。"
VOICE = "<MsgType>voice</MsgType><MediaId>m1</MediaId><Format>amr</Format><MsgId>7001</MsgId>"
PICTURE = "<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m{n}</MediaId><MsgId>700{n}</MsgId>"


async def unread_reply(client: Any, crypto: WeComCrypto, payload: str) -> str:
    """The passive reply's text to u1's message of the bot cannot read (``payload``: its type and what it carries);
    "" for none."""
    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000"
             f"</CreateTime>{payload}<AgentID>1000002</AgentID></xml>")
    query, body = signed_post(crypto, inner)
    text = await (await client.post("/wecom/callback", params=query, data=body)).text()
    return text and parse_xml(crypto.decrypt(parse_xml(text).findtext("Encrypt") or "")).findtext("Content") or ""


async def test_a_voice_message_or_a_picture_is_answered_with_a_request_to_type(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto) -> None:
    """The customer who sent one heard nothing back, as for an event, and waited for an answer that never came. Told
    once for messages sent one after another (three screenshots had it three times in a row), until they write words."""
    bot = FakeBot()
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    assert await unread_reply(client, crypto, VOICE) == TYPE_HINT
    assert await unread_reply(client, crypto, PICTURE.format(n=2)) == await unread_reply(
        client, crypto, PICTURE.format(n=3)) == ""  # told already
    assert await passive_content(client, crypto, "付款失败了", "7004") == ANSWER
    assert await unread_reply(client, crypto, PICTURE.format(n=5)) == TYPE_HINT
    await channel.close()
    assert [turn.text for turn in bot.turns] == ["付款失败了"] and wecom_api.sent == []


class SlowHintBot(FakeBot):
    """A bot whose store takes ``slow`` seconds to say whether a customer was told a hint lately (a busy disk, another
    writer holding the lock)."""

    slow = 0.3

    async def _store(self, fn: Any, *args: Any) -> Any:
        if getattr(fn, "__name__", "") == "hint_due":
            await asyncio.sleep(self.slow)
        return fn(*args)


async def test_a_hint_too_late_for_the_callbacks_response_is_sent_once_with_message_send(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """A "please type" ready after WeCom's wait for the response went back passively, to nobody, and WeCom's retry of
    the picture, seen already, got nothing: the customer never heard it. It is sent with message/send, once."""
    from dialogues.store import Store

    bot = SlowHintBot()
    bot.store = Store(tmp_path / "dialogues.db")
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh", reply_timeout=0.1))
    client = await client_for(aiohttp_client, channel)
    assert await unread_reply(client, crypto, VOICE) == ""
    await asyncio.wait_for(taken(wecom_api, 1), 10)
    assert await unread_reply(client, crypto, VOICE) == ""  # WeCom's retry
    await channel.close()
    assert [(m["touser"], m["text"]["content"]) for m in wecom_api.sent] == [("u1", TYPE_HINT)]
    bot.store.close()


async def test_a_hint_whose_callback_response_was_lost_is_sent_once_when_wecom_retries(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto) -> None:
    """WeCom sends a message again only where it got no response in time: the "please type" that response carried
    was lost, and the retry, seen already, got nothing. The retry has it sent with message/send, once for the
    message's tries, whatever else comes between."""
    channel = WeComChannel(FakeBot(), settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    assert await unread_reply(client, crypto, VOICE) == TYPE_HINT  # the response WeCom did not get
    assert await unread_reply(client, crypto, PICTURE.format(n=2)) == ""  # told already
    for _ in range(2):  # WeCom's second and third tries
        assert await unread_reply(client, crypto, VOICE) == ""
    await channel.close()
    assert [(m["touser"], m["text"]["content"]) for m in wecom_api.sent] == [("u1", TYPE_HINT)]


async def test_two_servers_on_one_store_ask_a_customer_to_type_once(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """Two servers behind one callback URL each remembered for itself whom it had asked to type: a customer's two
    pictures, one reaching each server, or WeCom's retry of one reaching the other, were answered with the hint twice.
    The store remembers it for both, and forgets it once the customer writes words, on either."""
    from dialogues.store import Store

    bots, clients = [], []
    for _ in range(2):
        bot = FakeBot()
        bot.store = Store(tmp_path / "dialogues.db")  # one Store each, on the same file, as two processes have
        channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
        bots.append(bot)
        clients.append(await client_for(aiohttp_client, channel))
    first, second = clients
    assert await unread_reply(first, crypto, VOICE) == TYPE_HINT
    assert await unread_reply(second, crypto, VOICE) == ""  # WeCom's retry, to the other server
    assert await unread_reply(second, crypto, PICTURE.format(n=2)) == ""  # told already, by the other server
    assert await passive_content(first, crypto, "付款失败了", "7004") == ANSWER
    assert await unread_reply(second, crypto, PICTURE.format(n=5)) == TYPE_HINT
    assert await unread_reply(first, crypto, PICTURE.format(n=6)) == ""
    for bot in bots:
        bot.store.close()


async def test_a_hong_kong_apps_customers_are_answered_in_hong_kong_forms_from_their_first_message(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto) -> None:
    """WeCom says nothing of where its customers are, and a Hong Kong company could not say it either: its customers'
    "你好", an order number or a picture was answered in Simplified characters. channels.wecom.script says it, as a
    web page's script does, until a customer writes a script of their own."""
    assert WeComSettings.model_validate({"script": "hongkong"}).script == "hongkong"  # bot.yml's channels.wecom.script
    bot = FakeBot()
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh", script="hongkong"))
    client = await client_for(aiohttp_client, channel)
    await passive_content(client, crypto, "你好", "1")
    assert bot.turns[0].script == "hongkong"  # the engine's until the customer's own shows
    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000</CreateTime>"
             "<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m2</MediaId><MsgId>7002</MsgId>"
             "<AgentID>1000002</AgentID></xml>")
    query, body = signed_post(crypto, inner)
    response = await client.post("/wecom/callback", params=query, data=body)
    hint = parse_xml(crypto.decrypt(parse_xml(await response.read()).findtext("Encrypt") or "")).findtext("Content")
    assert hint == "抱歉，我只能讀懂文字消息，請用文字描述您的問題。"
    await channel.close()


async def test_a_picture_sent_to_an_agent_reaches_their_transcript_and_is_never_learnt(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """While a person has the conversation, the customer's picture or voice message was answered with the
    "please type" hint and the agent never learnt of it: nothing in the transcript, nobody waiting."""
    from dialogues.export import recent_traffic
    from dialogues.review import candidates
    from dialogues.store import Exchange, Store

    store = Store(tmp_path / "dialogues.db")
    cid = f"wecom:{CORP_ID}:u1"
    store.log_exchange(Exchange(cid, "wecom", "u1", "收到的杯子碎了", None, "抱歉，我没听懂。", None, 0.2, [], "fallback",
                                "v0001"))
    store.log_exchange(Exchange(cid, "wecom", "u1", "转人工", None, None, None, 0.0, [], "handoff", "v0001",
                                handoff="requested"))
    store.add_agent_answer(cid, "很抱歉，我们会给您补发一个新杯子。", "wecom", agent="小李")
    bot = FakeBot()
    bot.store = store  # type: ignore[assignment]

    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    for payload in ("<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId><MsgId>8001</MsgId>",
                    "<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId><MsgId>8001</MsgId>",
                    "<MsgType>voice</MsgType><MediaId>m2</MediaId><Format>amr</Format><MsgId>8002</MsgId>"):
        inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000"
                 f"</CreateTime>{payload}<AgentID>1000002</AgentID></xml>")
        query, body = signed_post(crypto, inner)
        response = await client.post("/wecom/callback", params=query, data=body)
        assert response.status == 200 and await response.text() == ""  # no hint: the agent is there
    await channel.close()
    assert [(t["role"], t["text"]) for t in store.history(cid)][-2:] == [("user", "[图片]"), ("user", "[语音]")]
    assert store.waiting()[0] == 1
    store.add_agent_answer(cid, "照片收到了，补发三天内送到。", "wecom", agent="小李")
    learnt = [(a["question"], a["answer"]) for a in store.answer_candidates()]
    queued = [row["text"] for row in candidates(store, threshold=1.0)]
    traffic = recent_traffic(store, 10)
    store.close()
    assert learnt and {question for question, _ in learnt} == {"收到的杯子碎了"}
    assert not {"[图片]", "[语音]"} & set(queued + traffic)
    assert bot.turns == [] and wecom_api.sent == []


async def test_a_picture_sent_as_the_agent_hands_the_conversation_back_gets_the_hint(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """Handed back to the bot between the channel reading the conversation's status and storing "[图片]", the
    picture was kept in a conversation no agent looks at, and its customer heard nothing."""
    from dialogues.store import Exchange, Store

    store = Store(tmp_path / "dialogues.db")
    cid = f"wecom:{CORP_ID}:u1"
    store.log_exchange(Exchange(cid, "wecom", "u1", "转人工", None, None, None, 0.0, [], "handoff", "v0001",
                                handoff="requested"))

    handed_back: list[bool] = []

    async def look_up(fn: Any, *args: Any) -> Any:
        result = fn(store, *args)
        if not handed_back:  # the agent hands it back just after the channel read the conversation
            handed_back.append(store.set_status(cid, "open", "agent", "wecom", agent="小李") or True)
        return result

    bot = FakeBot()
    bot.store, bot._look_up = store, look_up  # type: ignore[assignment, method-assign]
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000"
             "</CreateTime><MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId>"
             "<MsgId>8001</MsgId><AgentID>1000002</AgentID></xml>")
    query, body = signed_post(crypto, inner)
    text = await (await client.post("/wecom/callback", params=query, data=body)).text()
    await channel.close()
    history = store.history(cid)
    store.close()
    assert parse_xml(crypto.decrypt(parse_xml(text).findtext("Encrypt") or "")).findtext("Content") == \
        "抱歉，我只能读懂文字消息，请用文字描述您的问题。"
    assert "[图片]" not in [t["text"] for t in history]


async def test_an_answer_that_is_not_a_json_object_is_a_delivery_error(aiohttp_server: Any) -> None:
    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", lambda _: web.Response(text="<html>portal login</html>", content_type="text/html"))
    server = await aiohttp_server(app)
    channel = WeComChannel(FakeBot(), settings(str(server.make_url("/cgi-bin/"))))
    with pytest.raises(WeComAPIError, match="gettoken: the answer is not a JSON object"):
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "hi")
    await channel.close()


async def test_an_answer_that_is_not_http_is_said_without_the_apps_secret(not_http_port: int) -> None:
    """aiohttp names a malformed answer's URL, its query with it: gettoken's holds the app's secret, message/send's the
    access token, and the log line that said the answer did not reach the employee wrote them out."""
    channel = WeComChannel(FakeBot(), settings(f"http://127.0.0.1:{not_http_port}/cgi-bin/"))
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await channel.send(f"wecom:{CORP_ID}:ChenJiaShun", "hi")
    await channel.close()
    said = failure(raised.value)
    assert "Bad status line" in said and "app-secret" not in said and "gettoken" not in said


async def test_a_message_wecom_may_have_sent_is_told_apart_from_one_it_refused(aiohttp_server: Any) -> None:
    """A 500, a 504, a timeout of message/send or a connection closed before its answer may have sent the
    message, as has a long one whose later piece failed: each was an error like a refusal, and an agent told the
    customer did not get their reply sent it again. Nor is it tried again, which would send it twice. A failed
    gettoken sent nothing."""
    answers: list[int | str] = []  # per message/send: its status, "slow" or "hang up"
    sent: list[str] = []
    token_status = [500]

    async def gettoken(request: web.Request) -> web.Response:
        if token_status:
            return web.Response(status=token_status.pop())
        return web.json_response({"errcode": 0, "access_token": "T", "expires_in": 7200})

    async def message_send(request: web.Request) -> web.Response:
        how = answers.pop(0) if answers else 200
        if how == "slow":
            await asyncio.sleep(1)
        elif how == "hang up":  # sent, and the connection closed before the answer
            sent.append((await request.json())["text"]["content"])
            request.transport.close()
            return web.Response()  # never written
        elif how != 200:
            return web.Response(status=int(how), text="upstream error")
        sent.append((await request.json())["text"]["content"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/message/send", message_send)
    channel = WeComChannel(FakeBot(), settings(str((await aiohttp_server(app)).make_url("/cgi-bin/"))))
    channel._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
    employee = f"wecom:{CORP_ID}:ChenJiaShun"
    with pytest.raises(WeComAPIError, match="gettoken: HTTP 500") as failed:
        await channel.send(employee, "它明天到。")
    assert not isinstance(failed.value, MaybeDelivered)
    for how, why in ((500, "HTTP 500"), (504, "HTTP 504"), ("slow", "no answer in time")):
        answers.append(how)
        with pytest.raises(WeComMaybeSent, match=f"message/send: {why}"):
            await channel.send(employee, "它明天到。")
    answers.append("hang up")
    with pytest.raises(WeComMaybeSent, match="message/send: the connection closed before an answer came"):
        await channel.send(employee, "已发货。")
    assert sent.count("已发货。") == 1 and not answers  # sent, and not tried again
    sent.remove("已发货。")
    answers.append(400)
    with pytest.raises(WeComAPIError, match="message/send: HTTP 400") as failed:
        await channel.send(employee, "它明天到。")
    assert not isinstance(failed.value, MaybeDelivered)
    answers.extend([200, 400])
    with pytest.raises(WeComMaybeSent, match="HTTP 400, after 1 of its 2 pieces went out"):
        await channel.send(employee, "答" * 1000)
    assert "".join(sent) == "答" * 682  # the first piece: 2,046 bytes
    await channel.close()


def test_a_message_that_mentions_a_doctype_is_text() -> None:
    inner = parse_xml("<xml><Content><![CDATA[how do I fix <!DOCTYPE html> and <!entity on my page]]></Content></xml>")
    assert inner.findtext("Content") == "how do I fix <!DOCTYPE html> and <!entity on my page"


def test_from_settings_needs_secrets_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WeComChannel.from_settings(FakeBot(), {}) is None
    with pytest.raises(ProjectError, match=r"^channels.wecom: secret, agent_id not set \(bot.yml, or DESKBOT_WECOM_SECRET, "
                                           r"DESKBOT_WECOM_AGENT_ID\) while token, aes_key, corp_id are: set them"):
        WeComChannel.from_settings(FakeBot(), {"token": TOKEN, "aes_key": AES_KEY, "corp_id": CORP_ID})
    for name, value in {"TOKEN": TOKEN, "AES_KEY": AES_KEY, "CORP_ID": CORP_ID, "SECRET": "s", "AGENT_ID": "7"}.items():
        monkeypatch.setenv(f"DESKBOT_WECOM_{name}", value)
    monkeypatch.setenv("DESKBOT_WECOM_API_URL", "http://127.0.0.1:1/cgi-bin/")
    channel = WeComChannel.from_settings(FakeBot(), {"agent_id": "1"})
    assert channel is not None
    assert (channel.agent_id, channel.api_url, channel.reply_timeout) == (7, "http://127.0.0.1:1/cgi-bin/", 4.0)
    assert sorted((route.method, route.path) for route in channel.routes()) == [  # type: ignore[attr-defined]
        ("GET", "/wecom/callback"), ("GET", "/wecom/callback/"), ("POST", "/wecom/callback"), ("POST", "/wecom/callback/")]


# --- template buttons as a numbered list ------------------------------------------------------

REFUND_BUTTONS = [{"title": "申请退款", "payload": "/get_refund"}, {"title": "查询退款", "payload": "/track_refund"}]


def text_message(crypto: WeComCrypto, content: str, msg_id: str) -> tuple[dict[str, str], str]:
    inner = (
        f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000</CreateTime>"
        f"<MsgType>text</MsgType><Content>{content}</Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    )
    return signed_post(crypto, inner)


async def passive_content(client: Any, crypto: WeComCrypto, content: str, msg_id: str) -> str:
    query, body = text_message(crypto, content, msg_id)
    response = await client.post("/wecom/callback", params=query, data=body)
    return parse_xml(crypto.decrypt(parse_xml(await response.read()).findtext("Encrypt") or "")).findtext("Content") or ""


def test_numbered_choices() -> None:
    assert numbered_choices("退款说明", REFUND_BUTTONS, "回复数字即可选择。") == "退款说明\n\n1. 申请退款\n2. 查询退款\n回复数字即可选择。"
    assert numbered_choices("", REFUND_BUTTONS[:1], "Pick one.") == "1. 申请退款\nPick one."
    assert numbered_choices("plain", [], "Pick one.") == "plain"


def test_plain_text_shows_markdown_as_wecom_text_can() -> None:
    """What the web chat draws as bold, italic, code or a link (its rules), WeCom shows as plain text."""
    assert plain_text("订单 789 的状态：**已送达**。") == "订单 789 的状态：已送达。"
    assert plain_text("请点击**“取消订单”**按钮。**【重要】**需支付**¥4.95**") == "请点击“取消订单”按钮。【重要】需支付¥4.95"
    assert plain_text("Go to **Orders** → *Cancel order*, `code`") == "Go to Orders → Cancel order, code"
    assert plain_text("see [the FAQ](https://shop.example/faq), [退货政策](https://shop.example/退货) or "
                      "[help@shop.example](mailto:help@shop.example)") == (
        "see the FAQ (https://shop.example/faq), 退货政策 (https://shop.example/%E9%80%80%E8%B4%A7) or help@shop.example")
    # an address past ASCII in ASCII, since WeCom links one only up to its first Chinese character; full-width
    # punctuation around it stays as written
    assert plain_text("详情见（[退货政策](https://shop.example/退货?类型=全部)）。请访问：[https://商店.cn/帮助](https://商店.cn/帮助)，谢谢") == (
        "详情见（退货政策 (https://shop.example/%E9%80%80%E8%B4%A7?%E7%B1%BB%E5%9E%8B=%E5%85%A8%E9%83%A8)）。"
        "请访问：https://xn--czrs0t.cn/%E5%B8%AE%E5%8A%A9，谢谢")
    # and a bare one, as the web chat links it: its Chinese path or query, not the Chinese after an ASCII part
    assert plain_text("见 https://shop.example/帮助/退货?类型=全部，或 https://shop.example/faq请查看。") == (
        "见 https://shop.example/%E5%B8%AE%E5%8A%A9/%E9%80%80%E8%B4%A7?%E7%B1%BB%E5%9E%8B=%E5%85%A8%E9%83%A8，"
        "或 https://shop.example/faq请查看。")
    assert plain_text("- one\n- **two**\n\n1. three") == "- one\n- two\n\n1. three"  # lines stay as written
    # an asterisk from or to a digit is a size's or a rating's
    assert plain_text("*包邮*\n尺寸 20*30*40cm，评分 5*，物流 4*") == "包邮\n尺寸 20*30*40cm，评分 5*，物流 4*"
    assert plain_text("[x](javascript:alert(1)) <b>as typed</b> 2 * 3") == "[x](javascript:alert(1)) <b>as typed</b> 2 * 3"


async def test_markdown_reaches_wecom_as_plain_text(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    wecom.bot.text = "订单 789 的状态：**已送达**。"
    assert await passive_content(wecom.client, crypto, "订单 789", "1") == "订单 789 的状态：已送达。"
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "An agent here: see [returns](https://shop.example/r).", role="agent")
    assert wecom.api.sent[-1]["text"]["content"] == "An agent here: see returns (https://shop.example/r)."
    # an agent's name leads the reply, as the web chat shows it beside it
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "Which order is it?", role="agent", author="Li")
    assert wecom.api.sent[-1]["text"]["content"] == "Li: Which order is it?"
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "请问是哪个订单？", role="agent", author="小李")
    assert wecom.api.sent[-1]["text"]["content"] == "小李：请问是哪个订单？"  # in Chinese, Chinese punctuation


async def test_a_reply_with_characters_xml_cannot_carry_still_reaches_wecom(wecom: SimpleNamespace,
                                                                           crypto: WeComCrypto) -> None:
    """A form feed pasted into an answer, or a control character from an action, would make the passive
    reply's XML unreadable: WeCom would show nothing. They are dropped; tabs and line breaks stay."""
    wecom.bot.text = "Page\x0cbreak\x0b|\x00|\x1b[31m|\ufffe|tab\there\nline 😀 中文 & <b> ]]>"
    assert await passive_content(wecom.client, crypto, "hello", "1") == "Pagebreak||[31m||tab\there\nline 😀 中文 & <b> ]]>"


async def test_buttons_are_numbered_and_a_number_sends_the_payload(aiohttp_client: Any, wecom_api: SimpleNamespace,
                                                                   crypto: WeComCrypto) -> None:
    bot = FakeBot(text="退款一般需要5到7个工作日。")
    bot.buttons = REFUND_BUTTONS
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)

    shown = await passive_content(client, crypto, "退款要多久", "1")
    assert shown == "退款一般需要5到7个工作日。\n\n1. 申请退款\n2. 查询退款\n回复数字即可选择。"
    bot.buttons = []
    await passive_content(client, crypto, " 2 ", "2")  # the choice is made by number
    await passive_content(client, crypto, "1", "3")  # that answer offered no choices, so "1" is just text
    bot.buttons = REFUND_BUTTONS
    await passive_content(client, crypto, "hello", "4")
    await passive_content(client, crypto, "3", "5")  # out of range: sent as typed
    await channel.close()
    assert [t.text for t in bot.turns] == ["退款要多久", "/track_refund", "1", "hello", "3"]


@pytest.mark.parametrize("typed, number", [
    ("1", 1), ("１", 1), (" 2 ", 2), ("1.", 1), ("1。", 1), ("1、", 1), ("2)", 2), ("第1个", 1), ("第一个", 1),
    ("第二個", 2), ("第三", 3), ("选1", 1), ("選2", 2), ("选第二个", 2), ("選擇第三個", 3), ("选 2", 2),
    ("1 件", None), ("第一次买", None), ("第1个问题", None), ("12345678", 12345678), ("1.5", None), ("选", None),
    ("一", None), ("hello", None),
    ("①", 1), ("②。", 2), ("1️⃣", 1), ("揀2", 2), ("揀第二個", 2), ("⑩", 10), ("①件", None),  # as input methods type them
    ("选项2", 2), ("選項二", 2), ("选二", 2), ("揀三個", 3),  # a numeral alone after the word for choosing
    ("我选1", 1), ("我選第二個", 2), ("我要第一个", 1), ("要第2个", 2), ("我揀2", 2),  # the customer's own pick
    ("要2", None), ("我要1个", None), ("我要", None),  # a quantity wanted
    ("就第一个吧", 1), ("那选2吧", 2), ("第二個啦！", 2), ("1吧", 1), ("那就揀第三個喇", 3),  # settled on, with a particle
    ("就1个吧", None), ("第一次吧", None),
])
def test_a_choice_is_picked_the_ways_customers_type_it(typed: str, number: int | None) -> None:
    """WeCom shows buttons as a numbered list, and customers answer "1." or "第一个" as often as "1"."""
    assert choice_number(typed) == number


async def test_a_choice_typed_as_an_ordinal_sends_the_payload(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    wecom.bot.buttons = REFUND_BUTTONS
    await passive_content(wecom.client, crypto, "退款要多久", "1")
    await passive_content(wecom.client, crypto, "选第二个", "2")
    await passive_content(wecom.client, crypto, "1。", "3")
    await passive_content(wecom.client, crypto, "第一次买", "4")  # about their first purchase: sent as typed
    assert [t.text for t in wecom.bot.turns] == ["退款要多久", "/track_refund", "/get_refund", "第一次买"]


async def test_a_choice_typed_out_by_its_title_sends_the_payload(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    """WeCom shows buttons as a list the customer cannot click, and many type the choice's title ("查询退款"), in
    Hong Kong and Taiwan in Traditional characters ("查詢退款"): it reached the model as typed words."""
    wecom.bot.buttons = REFUND_BUTTONS
    for n, typed in enumerate(["退款要多久", "查詢退款！", "退款要多久", " 申请退款 ", "退款要多久", "查询退款进度"]):
        await passive_content(wecom.client, crypto, typed, str(n))
    assert [t.text for t in wecom.bot.turns] == ["退款要多久", "/track_refund", "退款要多久", "/get_refund", "退款要多久",
                                                 "查询退款进度"]  # more than the title: a question of its own


async def test_a_choice_the_store_could_not_keep_is_made_again_by_wecoms_retry(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """The failed attempt withdrew the choices, so the retry's "2" reached the model as the text "2"."""
    bot = FakeBot(text="退款一般需要5到7个工作日。")
    bot.buttons = REFUND_BUTTONS
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    client = await client_for(aiohttp_client, channel)
    await passive_content(client, crypto, "退款要多久", "1")
    store_failing_once(bot, tmp_path / "dialogues.db")
    bot.store.log_exchange(Exchange(f"wecom:{CORP_ID}:u1", "wecom", "u1", "退款要多久", None, "退款一般需要5到7个工作日。",
                                    "refund_time", 0.9, [], "template", "v0001", buttons=REFUND_BUTTONS))  # as the bot logs it
    bot.buttons = []
    query, body = text_message(crypto, "2", "2")
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 500  # WeCom sends it again
    assert (await client.post("/wecom/callback", params=query, data=body)).status == 200
    await channel.close()
    assert [t.text for t in bot.turns] == ["退款要多久", "/track_refund"]


async def test_the_choices_offered_before_a_restart_are_read_from_the_store(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """They lived in the server's memory only: after a restart, "2" reached the model as text and got the
    fallback, which counts towards a handoff."""
    from dialogues.store import Exchange, Store

    store = Store(tmp_path / "dialogues.db")
    cid = f"wecom:{CORP_ID}:u1"
    store.log_exchange(Exchange(cid, "wecom", "u1", "退款要多久", None, "退款一般需要5到7个工作日。", "refund_time", 0.9,
                                [], "template", "v0001", buttons=REFUND_BUTTONS))  # answered by the server before
    bot = FakeBot()
    bot.store = store  # type: ignore[assignment]

    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))  # this one, started since
    client = await client_for(aiohttp_client, channel)
    await passive_content(client, crypto, "2", "1")
    await passive_content(client, crypto, "2", "1b")  # once chosen, they are withdrawn, though the store has them yet
    store.add_message(cid, "agent", "您好，我是客服小李。")  # a person's word since withdraws them
    channel._offers.clear()  # as after another restart
    await passive_content(client, crypto, "1", "2")
    await channel.close()
    unsettled = store.db.execute("SELECT count(*) FROM pending WHERE answered IS NULL").fetchone()[0]
    store.close()
    assert [t.text for t in bot.turns] == ["/track_refund", "2", "1"]
    assert unsettled == 0  # both answers went out in the callbacks' responses


async def test_a_choice_is_picked_from_the_latest_offered_whichever_server_on_the_store_offered_it(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """Behind a load balancer, an employee's "1" reached the server that had offered choices before another server's
    later answer offered others: it picked from its own, older ones. The store's latest turn tells; a message kept
    since it, its turn still to come, withdraws them as the message is kept."""
    from dialogues.store import Store

    cid = f"wecom:{CORP_ID}:u1"
    bot = FakeBot(text="请问是哪一种？")
    bot.store = Store(tmp_path / "dialogues.db")
    bot.buttons = [{"title": "退货", "payload": "/return"}, {"title": "换货", "payload": "/exchange"}]
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))  # this server offered 退货 and 换货
    client = await client_for(aiohttp_client, channel)
    await passive_content(client, crypto, "我要退", "1")
    bot.buttons = []
    bot.store.log_exchange(Exchange(cid, "wecom", "u1", "退款要多久", None, "退款一般需要5到7个工作日。", "refund_time", 0.9,
                                    [], "template", "v0001", buttons=REFUND_BUTTONS))  # another server's answer since
    await passive_content(client, crypto, "1", "2")
    await passive_content(client, crypto, "2", "3")  # "1" withdrew them: kept, its turn to come
    await channel.close()
    bot.store.close()
    assert [t.text for t in bot.turns] == ["我要退", "/get_refund", "2"]


async def test_choices_are_explained_in_the_language_of_the_reply(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto) -> None:
    bot = FakeBot(text="Refunds take 5 to 7 days.")
    bot.buttons = REFUND_BUTTONS
    channel = WeComChannel(bot, settings(wecom_api.url, language="multi"))
    client = await client_for(aiohttp_client, channel)
    bot.language = "en"
    assert (await passive_content(client, crypto, "refund?", "1")).endswith("\nReply with a number to choose.")
    bot.language = "zh"
    assert (await passive_content(client, crypto, "退款？", "2")).endswith("\n回复数字即可选择。")
    bot.script = "traditional"  # in the script its customer writes
    assert (await passive_content(client, crypto, "退款要多久？", "3")).endswith("\n回覆數字即可選擇。")
    await channel.close()
    # A first message with no letters in it ("？", an emoji) is WeCom's customers' language's: Chinese.
    assert {t.language for t in bot.turns} == {"zh"}
    assert turn_language("multi", "？", None, page=bot.turns[0].language) == "zh"
    assert turn_language("multi", "hello", None, page=bot.turns[0].language) == "en"  # a sentence says its own


async def test_an_agent_message_withdraws_the_choices(wecom: SimpleNamespace, crypto: WeComCrypto) -> None:
    wecom.bot.buttons = REFUND_BUTTONS
    shown = await passive_content(wecom.client, crypto, "refund?", "1")
    assert shown.endswith("1. 申请退款\n2. 查询退款\nReply with a number to choose.")  # English by default
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "Hi, I'm Li from support. Which order is it?", role="agent")
    await passive_content(wecom.client, crypto, "1", "2")
    assert [t.text for t in wecom.bot.turns] == ["refund?", "1"]


async def test_the_busy_message_offers_its_way_back_as_a_numbered_choice(wecom: SimpleNamespace, wecom_api: SimpleNamespace,
                                                                         crypto: WeComCrypto) -> None:
    """The agents-are-busy message says the customer may go back to the bot; on WeCom that way is a number."""
    back = [{"title": "返回机器人", "payload": "/resume"}]
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "抱歉久等了，客服人员正忙。", role="bot", buttons=back, language="zh")
    assert wecom_api.sent[-1]["text"]["content"] == "抱歉久等了，客服人员正忙。\n\n1. 返回机器人\n回复数字即可选择。"
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "抱歉久等了，客服人員正忙。", role="bot", buttons=back, language="zh",
                             script="traditional")
    assert wecom_api.sent[-1]["text"]["content"].endswith("\n回覆數字即可選擇。")
    await passive_content(wecom.client, crypto, "1", "1")
    assert [t.text for t in wecom.bot.turns] == ["/resume"]
    # An agent's handback told without choices withdraws them: "1" is the customer's word again.
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "人工客服已接入。", role="bot", buttons=back, language="zh")
    await wecom.channel.send(f"wecom:{CORP_ID}:u1", "您已回到机器人服务。", role="bot", language="zh")
    await passive_content(wecom.client, crypto, "1", "2")
    assert [t.text for t in wecom.bot.turns] == ["/resume", "1"]


# --- the per-conversation limit -----------------------------------------------------------------


async def test_a_flooding_employee_is_limited_and_told_once_to_wait(aiohttp_client: Any, wecom_api: SimpleNamespace,
                                                                    crypto: WeComCrypto) -> None:
    bot = FakeBot()
    channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
    app = web.Application()
    app[LIMITS] = Limits(LimitsConfig(per_conversation_per_minute=2), 65536)
    client = await client_for(aiohttp_client, channel, app)
    answers = [await passive_content(client, crypto, f"第{n}个问题", str(n)) for n in range(1, 4)]
    assert answers[:2] == [ANSWER, ANSWER]
    seconds = int(re.fullmatch(r"您发送消息太快了，请等待 (\d+) 秒后再发送。", answers[2])[1])  # type: ignore[index]
    assert 1 <= seconds <= 60
    for msg_id in ("4", "5"):  # told once: the next ones get WeCom's "received, no reply"
        query, body = text_message(crypto, "还在吗", msg_id)
        response = await client.post("/wecom/callback", params=query, data=body)
        assert response.status == 200 and await response.text() == ""
    await channel.close()
    assert [t.text for t in bot.turns] == ["第1个问题", "第2个问题"]  # the excess never reached the model
    assert wecom_api.sent == []  # nothing sent actively either


async def test_two_servers_on_one_store_hold_an_employee_to_the_limit_together_and_tell_once_to_wait(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """Each server counted an employee's messages in its own memory: behind one callback URL, two servers let twice
    per_conversation_per_minute through to the model, and each told the employee to wait. They count the messages
    the store keeps, and tell it once."""
    first, second = await store_servers(aiohttp_client, wecom_api, tmp_path / "dialogues.db",
                                        LimitsConfig(per_conversation_per_minute=2), language="zh")
    assert await passive_content(first.client, crypto, "第1个问题", "1") == ANSWER
    assert await passive_content(second.client, crypto, "第2个问题", "2") == ANSWER
    told = await passive_content(first.client, crypto, "第3个问题", "3")
    assert re.fullmatch(r"您发送消息太快了，请等待 \d+ 秒后再发送。", told)
    query, body = text_message(crypto, "还在吗", "4")  # told already, by the other server
    assert await (await second.client.post("/wecom/callback", params=query, data=body)).text() == ""
    await closed([first, second])
    assert [t.text for t in first.bot.turns + second.bot.turns] == ["第1个问题", "第2个问题"]


async def test_two_servers_counting_an_employees_messages_at_once_let_no_more_than_the_limit_through(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two messages reaching two servers at once, both counted before either was kept: each server found room for
    the last place, and both reached the model. The store counts as it keeps a message, and the server that finds
    the place taken tells the employee to wait."""
    from dialogues.store import Store

    first, second = await store_servers(aiohttp_client, wecom_api, tmp_path / "dialogues.db",
                                        LimitsConfig(per_conversation_per_minute=1), language="zh")
    counts: list[float] = []
    both_counted = asyncio.Event()
    kept_wait = Store.kept_wait

    def counting(store: Store, *args: Any) -> float:
        counts.append(wait := kept_wait(store, *args))
        return wait

    async def after_both_counted(self: FakeBot, fn: Any, *args: Any) -> Any:
        before = len(counts)
        result = fn(*args)
        if before < len(counts) <= 2:  # each server's first count waits for the other's
            if len(counts) == 2:
                both_counted.set()
            await asyncio.wait_for(both_counted.wait(), 5)
        return result

    monkeypatch.setattr(Store, "kept_wait", counting)
    monkeypatch.setattr(FakeBot, "_store", after_both_counted)
    answers = await asyncio.gather(passive_content(first.client, crypto, "第1个问题", "1"),
                                   passive_content(second.client, crypto, "第2个问题", "2"))
    await closed([first, second])
    assert counts[:2] == [0.0, 0.0]  # both found room as they counted
    assert len(first.bot.turns + second.bot.turns) == 1
    assert ANSWER in answers and any(re.fullmatch(r"您发送消息太快了，请等待 \d+ 秒后再发送。", a) for a in answers), answers


async def test_a_picture_sent_to_an_agent_again_after_a_restart_is_recorded_once(
        aiohttp_client: Any, wecom_api: SimpleNamespace, crypto: WeComCrypto, tmp_path: Path) -> None:
    """WeCom's retry of a picture reaching a server started since was recorded a second time: its MsgId was
    known in the first server's memory only, while a text message's is kept in the store."""
    from dialogues.store import Exchange, Store

    store = Store(tmp_path / "dialogues.db")
    cid = f"wecom:{CORP_ID}:u1"
    store.log_exchange(Exchange(cid, "wecom", "u1", "转人工", None, None, None, 0.0, [], "handoff", "v0001",
                                handoff="requested"))

    inner = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>u1</FromUserName><CreateTime>1700000000"
             "</CreateTime><MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId>"
             "<MsgId>8001</MsgId><AgentID>1000002</AgentID></xml>")
    for _ in range(2):  # the second, WeCom's retry, reaches a server started since
        bot = FakeBot()
        bot.store = store  # type: ignore[assignment]
        channel = WeComChannel(bot, settings(wecom_api.url, language="zh"))
        client = await client_for(aiohttp_client, channel)
        query, body = signed_post(crypto, inner)
        response = await client.post("/wecom/callback", params=query, data=body)
        assert response.status == 200 and await response.text() == ""
        await channel.close()
        await client.close()
    pictures = [t for t in store.history(cid) if t["text"] == "[图片]"]
    store.close()
    assert len(pictures) == 1
