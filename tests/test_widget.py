"""The chat widget in real headless Chromium (Debian's), against the real server and store.

The server runs the tiny demo bot in a thread on a free loopback port. Most pages embed the widget
the way a customer's site would: a page on another origin (a second loopback site standing in for
the customer's shop) with a config object and one ``<script>`` tag pointing at the server, so CORS
and the socket's origin check are exercised too. The shop is a real site rather than a routed
fake: Chromium lets only pages it knows to be on loopback call a loopback server. The tiny model's answers are fallbacks, which is
fine: the tests check behaviour that does not depend on how good the model is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import yaml
import aiohttp
from aiohttp import WSCloseCode, web
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from bot.channels import web as web_channel
from bot.cli import cli
from bot.limits import LIMITS
from bot.openapi import ERROR_CODES
from bot.project import load_project
from bot.server import BOT, create_app
from dialogues.store import Store
from tests.conftest import configured_copy

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RESULTS = Path(__file__).resolve().parent.parent / "results"

# Every payload the widget is tried with (bench/ROBUSTNESS.md lists them): each is one bullet of a
# message, with the text its list item must show and how many links it may make. Links written with
# a javascript:, data: or vbscript: URL stay plain text; an HTML entity or percent sign is never
# decoded, so the "disguised" ones are ordinary links to a path of the page's own site (a leading
# control character is dropped by the URL parser, so that one is refused as javascript:).
XSS_PAYLOADS: list[tuple[str, str, int]] = [
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>", 0),
    ("<script>alert(2)</script>", "<script>alert(2)</script>", 0),
    ("<svg onload=alert(3)>", "<svg onload=alert(3)>", 0),
    ("<iframe src=javascript:alert(4)></iframe>", "<iframe src=javascript:alert(4)></iframe>", 0),
    ("<a href=javascript:alert(5)>tap</a>", "<a href=javascript:alert(5)>tap</a>", 0),
    ('"><img src=x onerror=alert(6)>', '"><img src=x onerror=alert(6)>', 0),
    ("<math><mtext><table><mglyph><style><img src=x onerror=alert(7)>",
     "<math><mtext><table><mglyph><style><img src=x onerror=alert(7)>", 0),
    ("<details open ontoggle=alert(8)>", "<details open ontoggle=alert(8)>", 0),
    ("**<img src=x onerror=alert(9)>**", "<img src=x onerror=alert(9)>", 0),
    ("`<script>alert(10)</script>`", "<script>alert(10)</script>", 0),
    ("[parens](javascript:alert(11))", "[parens](javascript:alert(11))", 0),
    ("[js](javascript:document.title='js')", "[js](javascript:document.title='js')", 0),
    ("[case](JaVaScRiPt:document.title='case')", "[case](JaVaScRiPt:document.title='case')", 0),
    ("[ctl](\x01javascript:document.title='ctl')", "[ctl](\x01javascript:document.title='ctl')", 0),
    ("[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxMik8L3NjcmlwdD4=)",
     "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxMik8L3NjcmlwdD4=)", 0),
    ("[vb](vbscript:msgbox)", "[vb](vbscript:msgbox)", 0),
    ("![img](javascript:document.title='img')", "![img](javascript:document.title='img')", 0),
    ("[ent](jav&#x09;ascript:document.title='ent')", "ent", 1),
    ("[pct](java%0Ascript:document.title='pct')", "pct", 1),
    ("![pixel](https://shop.example.com/pixel.png)", "!pixel", 1),
    ("[<img src=x onerror=alert(13)>](https://shop.example.com/help)", "<img src=x onerror=alert(13)>", 1),
    ("[quote](https://shop.example.com/\"onmouseover=\"document.title='quote')", "quote", 1),
    ("见 https://shop.example.com/帮助/退货?类型=全部，或 https://shop.example.com/faq请查看",
     "见 https://shop.example.com/帮助/退货?类型=全部，或 https://shop.example.com/faq请查看", 2),
    ("退货说明见 https://shop.example.com/returns。请查看", "退货说明见 https://shop.example.com/returns。请查看", 1),
    ("尺寸 20*30*40cm，评分 5*，物流 4*", "尺寸 20*30*40cm，评分 5*，物流 4*", 0),  # sizes and ratings, not italics
]
XSS_TEXT = "\n".join(["**Refund sent**", *(f"- {payload}" for payload, _, _ in XSS_PAYLOADS)])
XSS_TITLE = "<img src=x onerror=alert(20)>Hostile Shop"
XSS_BUTTONS = [{"title": "<img src=x onerror=alert(21)>Request a refund", "payload": '"><img src=x onerror=alert(22)>'},
               {"title": "<script>alert(23)</script>", "payload": "/get_refund"}]
# What the widget itself is built of; a payload that made any other element would show up.
WIDGET_TAGS = {"a", "br", "button", "code", "div", "em", "footer", "form", "h2", "header", "i", "label", "li", "ol", "p",
               "path", "section", "span", "strong", "style", "svg", "textarea", "ul"}
INERT_CHECK = """() => {
  const inShadow = [...document.getElementById("deskbot-widget").shadowRoot.querySelectorAll("*")];
  const everything = [...document.querySelectorAll("*"), ...inShadow];
  return {
    body: [...document.body.children].map((e) => e.localName),
    tags: [...new Set(inShadow.map((e) => e.localName))],
    handlers: everything.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith("on"))
                                                        .map((a) => `${e.localName}[${a.name}]`)),
    strayIcons: inShadow.filter((e) => e.localName === "svg" && !e.parentElement.matches("button, .avatar")).length,
    urls: everything.flatMap((e) => ["href", "src", "action", "formaction"].filter((a) => e.hasAttribute(a))
                                                                         .map((a) => e.getAttribute(a))),
    title: document.title,
  };
}"""

expect.set_options(timeout=10_000)


class LiveServer:
    """``bot serve``'s app on 127.0.0.1, and the shop's pages on ``shop_socket`` (if given), on their own
    event loop in a thread, for a browser to use."""

    def __init__(self, root: Path, shop_socket: socket.socket | None = None) -> None:
        self.root = root
        self.shop_socket = shop_socket
        self.pages: dict[str, str | bytes] = {}  # the shop's pages by path, written by the tests; bytes name no charset
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="deskbot-live-server", daemon=True)
        self.runners: list[web.AppRunner] = []
        self.app: web.Application | None = None
        self.url = ""

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    async def _shop_page(self, request: web.Request) -> web.Response:
        if request.path not in self.pages:
            raise web.HTTPNotFound()
        page = self.pages[request.path]
        if isinstance(page, bytes):  # in the charset its <meta> names, as a page of another encoding is served
            return web.Response(body=page, content_type="text/html")
        return web.Response(text=page, content_type="text/html")

    async def _start_bot(self, port: int = 0) -> None:
        self.app = create_app(self.root, device="cpu")
        runner = web.AppRunner(self.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self.runners[:1] = [runner]

    async def _start(self) -> None:
        await self._start_bot()
        if self.shop_socket is None:  # a second bot server, embedded in the first one's shop
            return
        shop = web.Application()
        shop.router.add_get("/{page}", self._shop_page)
        shop_runner = web.AppRunner(shop)
        await shop_runner.setup()
        await web.SockSite(shop_runner, self.shop_socket).start()
        self.runners.append(shop_runner)

    def start(self) -> None:
        self.thread.start()
        self._run(self._start())

    def __enter__(self) -> "LiveServer":
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop_bot(self) -> None:
        """Stop the bot's server, as a deploy does, until ``start_bot``."""
        self._run(self.runners[0].cleanup())

    def start_bot(self) -> None:
        """Start the bot's server again, on its address."""
        self._run(self._start_bot(int(self.url.rsplit(":", 1)[1])))

    def drop_sockets(self) -> None:
        """Close every widget's socket from the server side, as a restart or a proxy timeout would, with the code of a
        stop. Not the channel's ``close()``: that is the stop itself, after which the channel answers every message
        as one cut off by it, and this server goes on serving the module's later tests."""
        assert self.app is not None
        channel = self.app[BOT].channels["web"]
        self._run(channel._close_sockets(code=WSCloseCode.SERVICE_RESTART, message=b"this server is stopping: connect again"))

    def stop(self) -> None:
        for runner in self.runners:
            self._run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def server(web_demo_bot: SimpleNamespace) -> Iterator[LiveServer]:
    live = LiveServer(web_demo_bot.root, web_demo_bot.shop_socket)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def hostile(web_demo_bot: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second server whose own configuration carries the payloads: the fallback answer, a template's
    text, its buttons' titles and payloads, every fallback button title and the widget's title."""
    intents = load_project(web_demo_bot.root).intents
    fallback = {"message": XSS_TEXT, "human_button": "<svg onload=alert(24)>Talk to a person",
                "titles": {intent: f"<img src=x onerror=alert(25)>{intent}" for intent in intents}}
    widget = {"title": XSS_TITLE, "origins": [web_demo_bot.embed_origin]}
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "hostile", fallback=fallback,
                           channels={"web": widget})
    responses = yaml.safe_load((root / "responses.yml").read_text())
    responses["responses"]["check_refund_policy"] = [{"text": XSS_TEXT, "buttons": XSS_BUTTONS}]
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    live = LiveServer(root)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[SimpleNamespace]:
    """One browser for the module, and an API client for checking what the server stored."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield SimpleNamespace(browser=browser, request=playwright.request)
        browser.close()


@pytest.fixture
def api(chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> Iterator[SimpleNamespace]:
    with api_client(chromium, server.url, web_demo_bot.admin_token) as client:
        yield client


@contextlib.contextmanager
def api_client(chromium: SimpleNamespace, url: str, admin_token: str) -> Iterator[SimpleNamespace]:
    """The server's API at ``url``: admin calls with the token, chat and history as a customer."""
    context = chromium.request.new_context(base_url=url)
    auth = {"Authorization": f"Bearer {admin_token}"}

    def admin(path: str, body: dict[str, Any] | None = None, token: str = admin_token) -> Any:
        """An admin call, with the admin token or an agent's own (``token``), acting as that agent."""
        response = context.post(path, data=body or {}, headers={"Authorization": f"Bearer {token}"})
        assert response.ok, response.text()
        return response.json()

    def chat(cid: str, text: str, **fields: Any) -> Any:
        """A customer's message, with what else their page sends (``script``)."""
        return context.post("/api/chat", data={"conversation_id": cid, "text": text, **fields}).json()

    def history(cid: str) -> Any:
        return context.get(f"/api/conversations/{cid}/history").json()

    def get(path: str) -> Any:
        response = context.get(path, headers=auth)
        assert response.ok, response.text()
        return response.json()

    try:
        yield SimpleNamespace(admin=admin, chat=chat, history=history, get=get)
    finally:
        context.dispose()


def embed_page(server_url: str, config: dict[str, Any], lang: str = "en", charset: str = "utf-8", head: str = "",
               body: str = "", nonce: str = "", crossorigin: bool = False) -> str:
    """A customer's page: its config object and the one script tag; ``head`` and ``body`` add the shop's own
    markup, ``nonce`` is the config script's (for a CSP), ``crossorigin`` what Sentry and SRI setups add."""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="{charset}"><title>Shop</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{head}</head>'
        f"<body><h1>Shop</h1>{body}"
        f'<script{f" nonce={nonce}" if nonce else ""}>window.deskbotConfig = {json.dumps(config)};</script>'
        f'<script src="{server_url}/widget.js"{" crossorigin=anonymous" if crossorigin else ""} async></script>'
        "</body></html>"
    )


PAGE_NUMBERS = itertools.count()


class Widget:
    """A browser tab on a shop page with the widget embedded, and what it noticed (dialogs, errors)."""

    def __init__(self, browser: Browser, server: LiveServer, origin: str, config: dict[str, Any],
                 lang: str = "en", init_script: str | None = None, charset: str = "utf-8",
                 device: dict[str, Any] | None = None, page_options: dict[str, Any] | None = None) -> None:
        self.context = browser.new_context(**(device or {"viewport": {"width": 1100, "height": 800}}))
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for, to catch an injected image or frame
        self.console: list[str] = []  # what the widget told the page's developer
        path = f"/shop-{next(PAGE_NUMBERS)}.html"
        page = embed_page(server.url, {"open": True, **config}, lang, charset, **(page_options or {}))
        server.pages[path] = page if charset == "utf-8" else page.encode(charset)
        if init_script:
            self.context.add_init_script(init_script)
        self.page: Page = self.context.new_page()
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.goto(f"{origin}{path}")
        expect(self.page.locator(".panel")).to_be_visible()

    def send(self, text: str) -> None:
        self.page.locator("textarea").fill(text)
        self.page.locator("textarea").press("Enter")

    def bot_replies(self) -> Any:
        return self.page.locator(".msg.bot[data-turn-id]")

    def conversation_id(self) -> str:
        return str(self.page.evaluate("Deskbot.conversationId()"))

    def close(self) -> None:
        assert self.errors == []
        self.context.close()


@pytest.fixture
def open_widget(chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> Iterator[Any]:
    opened: list[Widget] = []

    def open_(**config: Any) -> Widget:
        lang = config.pop("page_lang", "en")
        init_script = config.pop("init_script", None)
        charset = config.pop("page_charset", "utf-8")
        device = config.pop("device", None)
        page_options = config.pop("page", None)  # embed_page()'s head, body, nonce and crossorigin
        origin = config.pop("origin", web_demo_bot.embed_origin)
        widget = Widget(chromium.browser, server, origin, config, lang, init_script, charset, device, page_options)
        opened.append(widget)
        return widget

    yield open_
    for widget in opened:
        widget.close()


def wait_until(page: Page, expression: str, timeout: float = 10_000) -> None:
    """Wait until ``expression`` is true on ``page``, asked with ``page.evaluate``, which a page's CSP never
    blocks: ``wait_for_function`` polls a string through eval once its first try is false, and a strict CSP
    refuses that."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"{expression} still false after {timeout} ms"
        page.wait_for_timeout(50)


def text_of(locator: Any) -> str:
    return " ".join(locator.inner_text().split())


def test_message_reply_and_history_after_reload(open_widget: Any, api: SimpleNamespace) -> None:
    widget = open_widget()
    page = widget.page
    expect(page.locator(".msg.bot")).to_have_count(1)  # the greeting
    widget.send("my parcel never arrived")
    expect(widget.bot_replies()).to_have_count(1)
    expected = api.chat(f"web-check-{widget.conversation_id()}", "my parcel never arrived")  # same state, over HTTP
    assert text_of(widget.bot_replies().first.locator(".bubble")) == " ".join(expected["reply"].split())
    expect(page.locator(".quick button")).to_have_text([b["title"] for b in expected["buttons"]])

    cid = widget.conversation_id()
    assert page.evaluate("Object.values(localStorage)").count(cid) == 1
    assert [t["role"] for t in api.history(cid)["turns"]] == ["user", "bot"]
    widget.send("constructor")  # a word that names a property of every JavaScript object
    expect(widget.bot_replies()).to_have_count(2)

    page.reload()
    expect(widget.bot_replies()).to_have_count(2)
    assert widget.conversation_id() == cid
    expect(page.locator(".msg.user .bubble")).to_have_text(["my parcel never arrived", "constructor"])
    assert text_of(widget.bot_replies().first.locator(".bubble")) == " ".join(expected["reply"].split())
    expect(page.locator(".msg.bot")).to_have_count(2)  # no greeting over an existing conversation


@pytest.mark.parametrize("kept", ["{", "null", "7", "[]", '{"conversation": "CID", "messages": 7, "out": "x"}',
                                  '{"answered": {"conversation": "CID"}, "continuing": {"into": "CID", "from": 7, "id": []}}'])
def test_whatever_the_sites_storage_holds_under_the_widgets_keys_the_chat_starts(open_widget: Any, kept: str) -> None:
    """Another script of the shop's site shares the widget's storage: what it leaves under the keys the widget reads as
    JSON (broken, null, a number, a list, fields of the wrong type) is read as nothing kept, not a chat that never
    starts."""
    widget = open_widget()
    page = widget.page
    widget.send("my parcel never arrived")
    expect(widget.bot_replies()).to_have_count(1)
    cid = widget.conversation_id()
    page.evaluate("""([kept]) => {
        const prefix = Object.keys(localStorage).find((k) => k.endsWith(":conversation")).replace(/conversation$/, "");
        for (const key of ["signed-in", "titles", "language", "out", "kept", "went-on"]) {
            localStorage.setItem(prefix + key, kept);
            sessionStorage.setItem(prefix + key, kept);
        }
    }""", [kept.replace("CID", cid)])
    page.reload()
    expect(page.locator(".msg.user .bubble")).to_have_text(["my parcel never arrived"])
    assert widget.conversation_id() == cid
    widget.send("thanks")
    expect(widget.bot_replies()).to_have_count(2)


def test_quick_reply_sends_its_payload_and_shows_its_title(open_widget: Any, api: SimpleNamespace) -> None:
    """Also in another tab of the conversation, open before the click: it showed the payload."""
    widget = open_widget()
    widget.send("hmm")
    expect(widget.bot_replies()).to_have_count(1)
    other_tab = widget.context.new_page()
    other_tab.goto(widget.page.url)
    other_tab.wait_for_function("Deskbot.connected()")
    titles = widget.page.locator(".quick button").all_text_contents()
    widget.page.reload()  # the question the bot left open still offers its choices
    expect(widget.bot_replies()).to_have_count(1)
    expect(widget.page.locator(".quick button")).to_have_text(titles)
    first = widget.page.locator(".quick button").first
    title = first.inner_text()
    first.focus()
    first.press("Enter")  # from the keyboard: the keyboard goes on to the message box, not to the page's top
    expect(widget.page.locator("textarea")).to_be_focused()
    expect(widget.page.locator(".msg.user .bubble")).to_have_text(["hmm", title])
    expect(widget.bot_replies()).to_have_count(2)
    turns = api.history(widget.conversation_id())["turns"]
    sent = [t["text"] for t in turns if t["role"] == "user"]
    assert sent[0] == "hmm" and re.fullmatch(r"/\w+", sent[1]), sent  # the payload went to the bot, not the title
    expect(other_tab.locator(".msg.user .bubble")).to_have_text(["hmm", title])
    other_tab.close()
    widget.page.reload()
    expect(widget.page.locator(".msg.user .bubble")).to_have_text(["hmm", title])  # still the title after a reload


def assert_inert(widget: Widget) -> None:
    """No payload ran or made anything: no dialog, no handler attribute, no element the widget does not
    build itself, no URL but http(s) (none fetched for an image), the page's own title untouched."""
    page = widget.page
    page.wait_for_timeout(300)  # time for an onerror or onload handler to fire, had one been made
    found = page.evaluate(INERT_CHECK)
    assert found["body"] == ["h1", "script", "script", "div"]  # the shop's page: nothing added outside the widget
    assert set(found["tags"]) <= WIDGET_TAGS, set(found["tags"]) - WIDGET_TAGS
    assert found["handlers"] == [] and found["strayIcons"] == 0
    schemes = {urlsplit(url).scheme for url in found["urls"]}
    assert schemes <= {"http", "https"}, found["urls"]
    assert found["title"] == "Shop"  # no javascript: URL set it
    assert not [url for url in widget.requests if urlsplit(url).path in ("/x", "/pixel.png")]
    assert widget.dialogs == [] and widget.errors == []


def assert_shown_as_text(bubble: Any) -> None:
    """A bubble of XSS_TEXT: the bold first line, then each payload's list item as XSS_PAYLOADS expects."""
    expect(bubble.locator("p strong")).to_have_text("Refund sent")
    items = bubble.locator("li")
    expect(items).to_have_text([shown for _, shown, _ in XSS_PAYLOADS])
    for n, (payload, _, links) in enumerate(XSS_PAYLOADS):
        expect(items.nth(n).locator("a"), payload).to_have_count(links)
    for link in bubble.locator("a").all():
        assert urlsplit(link.get_attribute("href") or "").scheme in ("http", "https")
        assert (link.get_attribute("rel"), link.get_attribute("target")) == ("noopener noreferrer nofollow", "_blank")
    assert bubble.locator("a").nth(2).get_attribute("href") == "https://shop.example.com/pixel.png"
    # a path and query in Chinese are the link's; the Chinese text after an ASCII one or after punctuation is not
    hrefs = [unquote(link.get_attribute("href") or "") for link in bubble.locator("a").all()[-3:]]
    assert hrefs == ["https://shop.example.com/帮助/退货?类型=全部", "https://shop.example.com/faq", "https://shop.example.com/returns"]


def test_xss_payloads_stay_inert_on_every_path(open_widget: Any, chromium: SimpleNamespace, hostile: LiveServer,
                                               web_demo_bot: SimpleNamespace) -> None:
    widget = open_widget(server=hostile.url)  # the widget's title comes from the hostile bot.yml
    page = widget.page
    typed = "\n".join(payload for payload, _, _ in XSS_PAYLOADS)
    widget.send(typed)  # typed by the customer: the fallback answer carries the payloads too
    expect(page.locator(".msg.user .bubble")).to_have_text([typed])
    expect(widget.bot_replies()).to_have_count(1)
    fallback_titles = page.locator(".quick button").all_text_contents()
    assert fallback_titles[-1] == "<svg onload=alert(24)>Talk to a person"
    assert all(title.startswith("<img src=x onerror=alert(25)>") for title in fallback_titles[:-1])
    widget.send("/check_refund_policy")  # the template's text and buttons
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator(".quick button")).to_have_text([button["title"] for button in XSS_BUTTONS])
    page.locator(".quick button").first.click()  # its payload goes to the bot, its title into the bubble
    expect(widget.bot_replies()).to_have_count(3)
    with api_client(chromium, hostile.url, web_demo_bot.admin_token) as api:
        api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": XSS_TEXT, "agent": "Sam"})
        expect(page.locator(".msg.agent .bubble")).to_have_count(1)  # pushed over the socket
        assert [t["text"] for t in api.history(widget.conversation_id())["turns"] if t["role"] == "user"][2] \
            == XSS_BUTTONS[0]["payload"]

    for reloaded in (False, True):  # as the socket delivered them, then from the history after a reload
        if reloaded:
            page.reload()
            expect(widget.bot_replies()).to_have_count(3)
        expect(page.locator("h2")).to_have_text(XSS_TITLE)
        # shown as typed, from the history too
        expect(page.locator(".msg.user .bubble")).to_have_text([typed, "/check_refund_policy", XSS_BUTTONS[0]["title"]])
        for bubble in [*widget.bot_replies().locator(".bubble").all(), page.locator(".msg.agent .bubble")]:
            assert_shown_as_text(bubble)
        assert_inert(widget)


OFFER_CHOICES = """
from rasa_sdk import Action


class ActionOfferChoices(Action):
    def name(self):
        return "action_offer_choices"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(buttons=[{"title": "Track my order", "payload": "/track_order"}])
        return []


class ActionShowCarousel(Action):
    def name(self):
        return "action_show_carousel"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Our bestsellers:", json_message={"carousel": ["mug", "tee"]})
        return []


class ActionTextCarouselText(Action):
    def name(self):
        return "action_text_carousel_text"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Our bestsellers:")
        dispatcher.utter_message(json_message={"carousel": ["mug", "tee"]})
        dispatcher.utter_message(text="Anything else?")
        return []
"""


def running_on_refund_policy(action: str, web_demo_bot: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the web demo bot that runs ``action``, one of OFFER_CHOICES', for ``/check_refund_policy``."""
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / action,
                           actions={"map": {"check_refund_policy": action}},
                           channels={"web": {"origins": [web_demo_bot.embed_origin]}})
    (root / "actions" / "choices.py").write_text(OFFER_CHOICES)
    return root


def test_an_actions_buttons_without_text_are_offered(open_widget: Any, web_demo_bot: SimpleNamespace,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    with LiveServer(running_on_refund_policy("action_offer_choices", web_demo_bot, tmp_path_factory)) as live:
        widget = open_widget(server=live.url)
        widget.send("/check_refund_policy")
        expect(widget.page.locator(".quick button")).to_have_text(["Track my order"])
        assert widget.bot_replies().count() == 0  # no empty bubble
        widget.page.reload()  # kept in the history: offered again, still without a bubble
        expect(widget.page.locator(".quick button")).to_have_text(["Track my order"])
        expect(widget.page.locator(".msg.user .bubble")).to_have_count(1)
        assert widget.bot_replies().count() == 0


def test_an_actions_json_message_reaches_the_page_as_an_event_and_again_after_a_reload(
        open_widget: Any, chromium: SimpleNamespace, web_demo_bot: SimpleNamespace,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """As Rasa's REST channel passes a json_message on (custom), for the shop's own script to show: it was dropped,
    and then not kept, so a reloaded chat lost the carousel the page had drawn, and agents saw nothing of it."""
    with LiveServer(running_on_refund_policy("action_show_carousel", web_demo_bot, tmp_path_factory)) as live:
        widget = open_widget(server=live.url, init_script="window.handed = []; window.addEventListener("
                                                          "'deskbot:custom', (e) => window.handed.push(e.detail))")
        widget.send("/check_refund_policy")
        expect(widget.bot_replies()).to_have_count(1)
        assert text_of(widget.bot_replies().first.locator(".bubble")) == "Our bestsellers:"
        wait_until(widget.page, "window.handed.length === 1")
        turn_id = int(widget.bot_replies().first.get_attribute("data-turn-id"))
        handed = {"payload": {"carousel": ["mug", "tee"]}, "conversationId": widget.conversation_id(), "turnId": turn_id}
        assert widget.page.evaluate("window.handed") == [{**handed, "restored": False}]
        widget.page.reload()  # kept with the reply: handed on again, as restored, for the page to draw it where it was
        expect(widget.bot_replies()).to_have_count(1)
        wait_until(widget.page, "window.handed.length === 1")
        assert widget.page.evaluate("window.handed") == [{**handed, "restored": True}]
        widget.send("/handoff")  # the agent who takes the customer over sees what the page was handed
        expect(widget.bot_replies()).to_have_count(2)
        console = chromium.browser.new_page()
        console.goto(f"{live.url}/agent?lang=en")
        console.locator("#token").fill(web_demo_bot.admin_token)
        console.get_by_role("button", name="Sign in").click()
        console.locator(f'.list li[data-id="{widget.conversation_id()}"]').click()
        expect(console.locator(".turn.bot .custom")).to_have_text(['{"carousel":["mug","tee"]}'])
        console.close()


def test_an_actions_texts_around_its_json_message_are_bubbles_of_their_own_live_and_after_a_reload(
        open_widget: Any, chromium: SimpleNamespace, web_demo_bot: SimpleNamespace,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """An action's text, its json_message (a carousel the page draws), then text again: the widget showed both texts
    joined in one bubble, and so did the history, which kept only the joined text. Each text is a bubble of its own,
    in the action's order, in one reply with one pair of thumbs, also from the history."""
    with LiveServer(running_on_refund_policy("action_text_carousel_text", web_demo_bot, tmp_path_factory)) as live:
        widget = open_widget(server=live.url)
        widget.send("/check_refund_policy")
        for reloaded in (False, True):  # as it came, then from the history
            if reloaded:
                widget.page.reload()
            expect(widget.bot_replies()).to_have_count(1)
            expect(widget.bot_replies().first.locator(".bubble")).to_have_text(["Our bestsellers:", "Anything else?"])
            expect(widget.bot_replies().first.locator(".feedback button")).to_have_count(2)
        with api_client(chromium, live.url, web_demo_bot.admin_token) as api:
            assert api.history(widget.conversation_id())["turns"][-1]["messages"] == [
                {"text": "Our bestsellers:"}, {"custom": {"carousel": ["mug", "tee"]}}, {"text": "Anything else?"}]


def test_a_customer_over_the_rate_limit_is_told_how_long_to_wait(open_widget: Any, web_demo_bot: SimpleNamespace,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "limited",
                           server={"limits": {"per_conversation_per_minute": 1}},
                           channels={"web": {"origins": [web_demo_bot.embed_origin]}})
    with LiveServer(root) as live:
        widget = open_widget(server=live.url)
        widget.send("hello")
        expect(widget.bot_replies()).to_have_count(1)
        widget.send("hello again")
        line = widget.page.locator(".status-line")
        expect(line).to_contain_text("too many messages. Wait")
        assert int(line.inner_text().split("Wait ")[1].split(" s")[0]) >= 1
        expect(line.locator("button")).to_be_disabled()  # Retry waits as long as the server asked


def test_a_message_over_the_servers_limit_stays_in_the_box_with_a_note(open_widget: Any, web_demo_bot: SimpleNamespace,
                                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """The box cut at 4,000 UTF-16 units whatever server.max_message_chars said: under a lower limit a longer
    message was sent, refused and shown "Not sent." with a Retry that could never work."""
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "short",
                           server={"max_message_chars": 20}, channels={"web": {"origins": [web_demo_bot.embed_origin]}})
    with LiveServer(root) as live:
        widget = open_widget(server=live.url)
        widget.send("hello")
        expect(widget.bot_replies()).to_have_count(1)
        box = widget.page.locator("textarea")
        widget.send("😀" * 21)  # 21 characters (42 UTF-16 units)
        assert box.evaluate("b => b.validationMessage") == "Too long: 20 characters at most. Shorten it, then send."
        assert box.input_value() == "😀" * 21
        expect(widget.page.locator(".msg.user")).to_have_count(1)  # nothing sent to fail
        widget.send("😀" * 20)
        expect(widget.bot_replies()).to_have_count(2)
        assert box.evaluate("b => b.validationMessage") == ""
        expect(widget.page.locator(".failed")).to_have_count(0)


def test_a_store_that_cannot_write_is_not_told_as_the_customers_flood(open_widget: Any, server: LiveServer) -> None:
    """A 503's Retry-After (the server's full disk) was shown as "too many messages. Wait 30 s", with Retry locked."""
    widget = open_widget(init_script=BLOCKED_WEBSOCKET)  # over HTTP, where the wait comes as a header
    page = widget.page
    page.route(f"{server.url}/api/chat", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "30", "Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After"},
        content_type="application/json",
        body=json.dumps({"error": "the conversation store cannot write now (database or disk is full): try again later",
                         "code": "store_unwritable"})))
    widget.send("hello?")
    line = page.locator(".status-line")
    expect(line).to_have_text("Not sent: the chat cannot keep messages just now. Retry in a moment.Retry")  # by its code
    expect(line).not_to_contain_text("too many messages")
    page.unroute(f"{server.url}/api/chat")
    line.locator("button").click()  # not locked for the 30 s
    expect(widget.bot_replies()).to_have_count(1)


# A socket the bot answers "refuse me" on with an error frame of code window.__code, as it refuses a message it cannot
# take, to be sent again at once (retry_after 0); window.__refused counts them
SOCKET_REFUSING = """
window.__code = "busy";
window.__refused = 0;
window.WebSocket = class extends window.WebSocket {
  send(data) {
    if (JSON.parse(data).text !== "refuse me") return super.send(data);
    window.__refused += 1;
    const frame = { type: "error", error: "the bot is busy", code: window.__code, retry_after: 0, request: "message" };
    setTimeout(() => this.onmessage({ data: JSON.stringify(frame) }));
  }
};
"""


@pytest.mark.parametrize(("lang", "said", "stopping"), [
    ("en", "Not sent: the chat is busy. Retry in a moment.", "Not sent: the chat is restarting. Retry in a moment."),
    ("zh-CN", "未发送：客服系统繁忙，请稍后重试。", "未发送：客服系统正在重启，请稍后重试。"),
    ("zh-TW", "未發送：客服系統繁忙，請稍後重試。", "未發送：客服系統正在重新啟動，請稍後重試。")])
def test_a_message_the_bot_refused_says_why_in_the_customers_language(open_widget: Any, lang: str, said: str,
                                                                      stopping: str) -> None:
    """The socket's error frames said what went wrong in English alone, and the widget said *Not sent* to every one,
    a bot too busy for it and a store that cannot write alike: each comes with its code, said in the widget's
    language, and one the widget does not know is *Not sent* still. A server stopping before it answered (a rolling
    restart) is no busy bot, and is not said as one. Both are sent again three times before they are *Not sent*; a
    refusal of another code is *Not sent* at once."""
    widget = open_widget(page_lang=lang, init_script=SOCKET_REFUSING)
    widget.send("refuse me")
    line = widget.page.locator(".status-line")
    expect(line.locator("span")).to_have_text(said)
    expect(line.locator("span")).to_have_attribute("role", "alert")
    assert widget.page.evaluate("window.__refused") == 4
    widget.page.evaluate("window.__code = 'stopping'")
    widget.send("refuse me")
    expect(line).to_have_count(2)
    expect(line.last.locator("span")).to_have_text(stopping)
    assert widget.page.evaluate("window.__refused") == 8
    widget.page.evaluate("window.__code = 'constructor'")  # no code of the bot's
    widget.send("refuse me")
    expect(line).to_have_count(3)
    assert widget.page.evaluate("window.__refused") == 9
    expect(line.last.locator("span")).to_have_text({"en": "Not sent.", "zh-CN": "未发送。", "zh-TW": "未發送。"}[lang])


@pytest.mark.parametrize("transport", ["socket", "http"])
def test_a_message_a_stopping_server_turned_away_is_sent_again_after_its_retry_after(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        transport: str) -> None:
    """A message the server reached stopped before answering (503 ``stopping``, or the socket's error frame: a rolling
    restart whose server.shutdown_seconds ran out) was marked *Not sent*, and its customer had to press Retry. The
    widget sends it again, with its id, after the Retry-After the server named, shown out meanwhile, not Not sent;
    it is answered once."""
    channel = server.app[BOT].channels["web"]
    reply = channel._reply
    sent: list[tuple[str | None, float]] = []  # each send's message id, and when it came
    resent, go = threading.Event(), asyncio.Event()

    async def stopping_at_the_first(turn: Any, wait: bool) -> dict[str, Any]:
        sent.append((turn.message_id, time.monotonic()))
        if len(sent) == 1:  # the stop's cut comes before the first send is answered; the server serves on after
            channel._cutting.set()
            try:
                return await reply(turn, wait)
            finally:
                channel._cutting.clear()
        resent.set()
        await go.wait()  # until the test has looked at the chat
        return await reply(turn, wait)

    monkeypatch.setattr(channel, "_reply", stopping_at_the_first)
    widget = open_widget(transport=transport)
    page = widget.page
    widget.send("where is my order 1042?")
    assert resent.wait(30), "the message was not sent again"
    expect(page.locator(".msg.user.out")).to_have_count(1)  # shown out, as the answer is awaited
    expect(page.locator(".msg.user.failed")).to_have_count(0)
    expect(page.locator(".status-line")).to_have_count(0)
    server.loop.call_soon_threadsafe(go.set)
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg.user.out")).to_have_count(0)
    (first, at), (again, then) = sent
    assert first == again and then - at >= web_channel.STOPPING_RETRY_S
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = db.execute("SELECT role FROM turns WHERE conversation_id = ? ORDER BY id",
                            [widget.conversation_id()]).fetchall()
    assert stored == [("user",), ("bot",)]


# A socket on which the first message "lost at the stop" never reaches the server: one a stopping server had not read
# yet, queued behind the turn it was answering, as it closed its sockets; window.__swallowed counts it
SOCKET_SWALLOWING = """
window.__swallowed = 0;
window.WebSocket = class extends window.WebSocket {
  send(data) {
    const frame = JSON.parse(data);
    if (frame.type === "message" && frame.text === "lost at the stop" && !window.__swallowed++) return;
    return super.send(data);
  }
};
"""


def test_a_message_a_stopping_server_closed_its_socket_on_unread_is_sent_again(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A server that stops closes its sockets (1012) once the turns it runs are answered: a message queued behind one,
    which it never read, was looked for in the history for 12 s in vain, then marked *Not sent*. It is sent again,
    its id kept, and answered, never shown Not sent."""
    widget = open_widget(init_script=SOCKET_SWALLOWING)
    page = widget.page
    wait_until(page, "Deskbot.connected()")
    widget.send("lost at the stop")
    wait_until(page, "window.__swallowed === 1")
    server.drop_sockets()  # as the server stops
    expect(widget.bot_replies()).to_have_count(1, timeout=7_000)  # within its first looks in the history
    expect(page.locator(".msg.user.out")).to_have_count(0)
    expect(page.locator(".status-line")).to_have_count(0)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = db.execute("SELECT role, text FROM turns WHERE conversation_id = ? ORDER BY id",
                            [widget.conversation_id()]).fetchall()
    assert [role for role, _ in stored] == ["user", "bot"] and stored[0][1] == "lost at the stop"


def test_the_shops_id_for_a_signed_in_customer_is_stored_with_their_messages(open_widget: Any,
                                                                                web_demo_bot: SimpleNamespace) -> None:
    """The widget sent no user: a customer's request to have their conversations deleted (`bot purge --user`)
    found none of their web chats."""
    by_socket, by_http = open_widget(user="customer-4711"), open_widget(user=4712, transport="http")
    for widget in (by_socket, by_http):
        widget.send("is anyone there")
        expect(widget.bot_replies()).to_have_count(1)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = dict(db.execute("SELECT conversation_id, user FROM turns WHERE role = 'user' AND conversation_id IN "
                                 "(?, ?)", [by_socket.conversation_id(), by_http.conversation_id()]).fetchall())
    assert stored == {by_socket.conversation_id(): "customer-4711", by_http.conversation_id(): "4712"}
    listed = CliRunner().invoke(cli, ["purge", str(web_demo_bot.root), "--user", "customer-4711", "--dry-run"])
    assert listed.output == f"{by_socket.conversation_id()}\tweb\tcustomer-4711\n"


def test_in_a_single_page_app_the_customer_named_changes_without_a_reload(open_widget: Any,
                                                                           web_demo_bot: SimpleNamespace) -> None:
    """A single-page shop logs its customers in and out without loading a page: after Deskbot.reset() the next
    customer's messages were still stored as the last one's (bot purge --user found them), and one who signed in
    could not be named. reset() drops the page's user unless given the next customer's; identify() names the
    customer of the conversation under way."""
    widget = open_widget(user="customer-4711")
    page = widget.page
    said = ["hello from Ann", "hello from a visitor", "Bea signed in now", "hello from Cy"]
    for text, then in zip(said, ["Deskbot.reset()", "Deskbot.identify({ user: 'customer-4713' })",
                                 "Deskbot.reset({ user: 'customer-4714' })", ""]):
        widget.send(text)
        expect(page.locator(".msg.user[data-turn-id]", has_text=text)).to_have_count(1)
        if then:
            page.evaluate(then)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = db.execute(f"SELECT text, user FROM turns WHERE role = 'user' AND text IN ({', '.join('?' * 4)}) "
                            "ORDER BY id", said).fetchall()
    assert stored == [(said[0], "customer-4711"), (said[1], None), (said[2], "customer-4713"), (said[3], "customer-4714")]


def test_a_user_id_the_server_would_refuse_is_left_out_and_said_why_in_the_console(
        open_widget: Any, web_demo_bot: SimpleNamespace) -> None:
    """A page's id over 128 characters, or not a string, had the server refuse every message of that customer
    with a 400: the chat was dead. 128 emoji are 128 characters to the server (256 to JavaScript's length). So too
    one with an invisible character (a zero-width space a template left in it, over the socket as well), which the
    server refuses as its published pattern (/api/widget's user_id) says."""
    too_long, an_object, emoji, invisible = (
        open_widget(user="x" * 129), open_widget(user={"id": 7}, transport="http"), open_widget(user="😀" * 128),
        open_widget(user="u-21\u200b"))
    for widget in (too_long, an_object, emoji, invisible):
        widget.send("is anyone there")
        expect(widget.bot_replies()).to_have_count(1)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = dict(db.execute("SELECT conversation_id, user FROM turns WHERE role = 'user' AND conversation_id IN "
                                 "(?, ?, ?, ?)", [w.conversation_id() for w in (too_long, an_object, emoji, invisible)]
                                 ).fetchall())
    assert stored == {too_long.conversation_id(): None, an_object.conversation_id(): None,
                      emoji.conversation_id(): "😀" * 128, invisible.conversation_id(): None}
    for widget in (too_long, an_object, invisible):
        told = [line for line in widget.console if line.startswith("error: deskbot: deskbotConfig.user")]
        assert len(told) == 1 and "128 characters, none of them invisible" in told[0], widget.console
    assert not [line for line in emoji.console if "deskbotConfig.user" in line]


@pytest.fixture
def identity_secret(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bot serving with channels.web.identity_secret set, for one test."""
    assert server.app is not None
    monkeypatch.setattr(server.app[BOT].channels["web"], "identity_secret", "shop-identity-secret")
    return "shop-identity-secret"


def test_a_customer_the_shops_server_vouched_for_is_verified_to_agents_and_a_forged_one_is_refused(
        open_widget: Any, chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace,
        identity_secret: str) -> None:
    """The page's user proved nothing: with the shop's server's HMAC of it as userHash, the customer is verified
    (the slot verified_user, which the agents' console shows), on the socket and over HTTP; a hash of another
    user is refused, the message marked Not sent and the page's developer told why."""
    def vouched(user: str) -> str:
        return hmac.new(identity_secret.encode(), user.encode(), hashlib.sha256).hexdigest()

    by_socket = open_widget(user="u-17", userHash=vouched("u-17"))
    by_http = open_widget(user=4712, userHash=vouched("4712"), transport="http")
    forged = open_widget(user="u-17", userHash=vouched("u-18"))
    for widget in (by_socket, by_http):
        widget.send("/handoff")
        expect(widget.bot_replies()).to_have_count(1)
    forged.send("is anyone there")
    expect(forged.page.locator(".msg.user.failed")).to_contain_text("Not sent")
    told = [line for line in forged.console if line.startswith("error: deskbot: user_hash: not the HMAC")]
    assert len(told) == 1 and "deskbotConfig.userHash" in told[0], forged.console
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        slots = {cid: json.loads(kept).get("verified_user") for cid, kept in db.execute(
            "SELECT id, slots FROM conversations WHERE id IN (?, ?, ?)",
            [w.conversation_id() for w in (by_socket, by_http, forged)])}
    assert slots == {by_socket.conversation_id(): "u-17", by_http.conversation_id(): "4712"}
    context = open_console(chromium, server, web_demo_bot.admin_token, by_socket.conversation_id())
    item = context.pages[0].locator(f'.list li[data-id="{by_socket.conversation_id()}"]')
    expect(item.locator(".meta")).to_contain_text("web · verified: u-17 · ")
    item.click()
    expect(context.pages[0].locator(".conversation .title")).to_have_text(f"{by_socket.conversation_id()} · web · verified: u-17")
    context.close()


def test_a_signed_in_customers_chat_is_shown_again_to_them_and_a_visitor_on_their_device_starts_anew(
        open_widget: Any, identity_secret: str) -> None:
    """A signed-in customer's conversation is read with their proof: the widget sends it with the history and the
    socket's join, so their chat comes back after a reload. A visitor whose browser kept that conversation (the
    shop's page did not call Deskbot.reset() at sign-out) is refused it, and the widget starts a new one."""
    customer = open_widget(user="u-17", userHash=hmac.new(identity_secret.encode(), b"u-17", hashlib.sha256).hexdigest())
    customer.send("my parcel never arrived")
    expect(customer.bot_replies()).to_have_count(1)
    customer.page.reload()
    expect(customer.page.locator(".msg.user .bubble")).to_have_text(["my parcel never arrived"])
    read = [url for url in customer.requests if "/history" in url]
    # the proof and the conversation's id in headers, which no log keeps
    assert read and not [url for url in read if "user_hash" in url or customer.conversation_id() in url], read
    visitor = open_widget()
    visitor.page.evaluate(f"""localStorage.setItem(Object.keys(localStorage).find((k) => k.endsWith(":conversation")),
                                                   "{customer.conversation_id()}")""")
    visitor.page.reload()
    expect(visitor.page.locator(".msg.bot")).to_have_count(1)  # the greeting alone
    assert visitor.conversation_id() != customer.conversation_id()
    visitor.send("hello")
    expect(visitor.bot_replies()).to_have_count(1)


def test_a_visitor_after_a_signed_in_customer_whose_page_did_not_reset_the_chat_goes_on_in_a_new_conversation(
        open_widget: Any, identity_secret: str) -> None:
    """A single-page shop that named its visitor with Deskbot.identify({}) at sign-out, not Deskbot.reset(), left its
    chat in the signed-in customer's conversation, which the server refuses to anyone else: each message was Not
    sent, again on every Retry, and nothing said why. The message goes on in a new conversation, as a reload does,
    and the page's developer is told to call Deskbot.reset()."""
    customer = open_widget(user="u-17", userHash=hmac.new(identity_secret.encode(), b"u-17", hashlib.sha256).hexdigest())
    customer.send("my parcel never arrived")
    expect(customer.bot_replies()).to_have_count(1)
    theirs = customer.conversation_id()
    customer.page.evaluate("Deskbot.identify({})")  # signed out
    customer.send("is anyone there")
    expect(customer.page.locator(".msg.user .bubble")).to_have_text(["is anyone there"])
    expect(customer.bot_replies()).to_have_count(1)
    expect(customer.page.locator(".msg.user.failed")).to_have_count(0)
    assert customer.conversation_id() != theirs
    told = [line for line in customer.console if "Deskbot.reset()" in line]
    assert len(told) == 1 and told[0].startswith("error: deskbot: conversation_id: a signed-in"), customer.console


def test_the_agents_console_opens_a_verified_customers_other_conversations(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace, identity_secret: str) -> None:
    """An agent taking a customer over saw nothing of what they had asked before in another conversation: the
    transcript names the customer's others, each opened with a click, in a navigation a screen reader names so (it
    said "navigation" alone)."""
    user = f"u-{next(PAGE_NUMBERS)}"
    user_hash = hmac.new(identity_secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    earlier, latest = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    customer = chromium.request.new_context(base_url=server.url)
    for cid, text in ((earlier, "where is my parcel?"), (latest, "/handoff")):
        body = {"conversation_id": cid, "text": text, "user": user, "user_hash": user_hash}
        assert customer.post("/api/chat", data=body).ok
    customer.dispose()
    context = open_console(chromium, server, web_demo_bot.admin_token, latest, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{latest}"]').click()
    others = page.locator(".conversation .others")
    expect(others).to_contain_text("This customer's other conversations:")
    assert chromium_role_and_name(page, ".conversation .others") == ("navigation", "This customer's other conversations:")
    others.get_by_role("button", name=re.compile(f"^{earlier} · With the bot · ")).click()
    expect(page.locator(".conversation .title")).to_contain_text(earlier)
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    expect(others.get_by_role("button")).to_have_text([re.compile(f"^{latest} · Waiting · ")])
    context.close()


def test_the_pages_metadata_reaches_custom_actions_and_one_the_server_would_refuse_is_left_out(
        open_widget: Any, web_demo_bot: SimpleNamespace) -> None:
    """A page had no way to pass what it knows of its customer (a user id) to the bot's custom actions, which read
    it, as in Rasa, from the slot session_started_metadata."""
    given, nested = open_widget(metadata={"user_id": "u-17", "plan": 3}), open_widget(metadata={"user": {"id": 7}},
                                                                                         transport="http")
    for widget in (given, nested):
        widget.send("is anyone there")
        expect(widget.bot_replies()).to_have_count(1)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        slots = {cid: json.loads(kept).get("session_started_metadata") for cid, kept in db.execute(
            "SELECT id, slots FROM conversations WHERE id IN (?, ?)", [given.conversation_id(), nested.conversation_id()])}
    assert slots == {given.conversation_id(): {"user_id": "u-17", "plan": 3}, nested.conversation_id(): None}
    told = [line for line in nested.console if line.startswith("error: deskbot: deskbotConfig.metadata")]
    assert len(told) == 1 and "up to 16 keys" in told[0], nested.console


def test_feedback_reaches_the_store(open_widget: Any, web_demo_bot: SimpleNamespace) -> None:
    widget = open_widget()
    widget.send("is anyone there")
    reply = widget.bot_replies().first
    expect(reply).to_be_visible()
    turn_id = int(reply.get_attribute("data-turn-id") or 0)
    up, down = reply.get_by_role("button", name="Helpful", exact=True), reply.get_by_role("button", name="Not helpful")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(reply.locator(".thanks")).to_have_text("Thanks for your feedback!")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    def votes() -> list[tuple[int]]:
        with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
            return db.execute("SELECT value FROM feedback WHERE turn_id = ? ORDER BY id", [turn_id]).fetchall()

    # The button shows its state as it is pressed; the vote's request may still be on its way. It replaces the first.
    for _ in range(50):
        if votes() == [(-1,)]:
            break
        time.sleep(0.1)
    assert votes() == [(-1,)]
    widget.page.reload()  # the vote is shown again from the history
    expect(widget.bot_replies().first.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")


def test_a_thumbs_down_offers_a_box_for_what_was_wrong_and_sends_it_with_the_vote(
        open_widget: Any, web_demo_bot: SimpleNamespace) -> None:
    """A thumbs-down told no one what the answer missed, though POST /api/feedback takes a comment: the customer
    who bothered to say so had to write it to the bot. The box is optional, named in the customer's language, and
    next after the thumb for the keyboard."""
    widget = open_widget()
    widget.send("我的包裹一直没到")  # the widget takes the customer's Chinese
    reply = widget.bot_replies().first
    expect(reply).to_be_visible()
    turn_id = int(reply.get_attribute("data-turn-id") or 0)
    down = reply.get_by_role("button", name="没有帮助")
    down.click()
    box = reply.get_by_role("textbox", name="哪里有问题？（选填）")
    expect(box).to_be_visible()
    widget.page.keyboard.press("Tab")
    expect(box).to_be_focused()
    box.fill("没有说退款要多久")
    reply.get_by_role("button", name="发送").click()
    expect(box).to_have_count(0)
    expect(down).to_be_focused()
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT value, comment FROM feedback WHERE turn_id = ?", [turn_id]).fetchall() == [
            (-1, "没有说退款要多久")]
    down.click()  # the vote taken back: no box
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(reply.locator(".comment")).to_have_count(0)


def test_handoff_then_agent_replies_over_the_socket(open_widget: Any, api: SimpleNamespace, server: LiveServer) -> None:
    widget = open_widget(pollInterval=60_000)  # no polling: everything comes over the socket
    page = widget.page
    widget.send("I need help")
    other_tab = widget.context.new_page()  # the same conversation, open on another page of the shop
    other_tab.goto(page.url)
    expect(other_tab.locator(".msg.user .bubble")).to_have_text(["I need help"])
    other_tab.wait_for_function("Deskbot.connected()")
    page.locator(".quick button", has_text="Talk to a person").click()
    expect(page.locator(".banner")).to_be_visible()
    # "You're now chatting with a person" was untrue until a person took the conversation
    expect(page.locator(".banner")).to_contain_text("You've been passed to a person. They'll reply here.")
    expect(other_tab.locator(".banner")).to_be_visible()  # told at once, not at its next message
    other_tab.close()
    cid = widget.conversation_id()
    assert api.history(cid)["status"] == "handed_off"

    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, this is Sam from support.", "agent": "Sam"})
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam from support."])
    expect(page.locator(".msg.agent .sender")).to_have_text(["Sam · Agent"])
    server.drop_sockets()
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Are you still there?", "agent": "Sam"})  # while it reconnects
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam from support.", "Are you still there?"])
    page.wait_for_function("Deskbot.connected()")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Pushed again.", "agent": "Sam"})
    expect(page.locator(".msg.agent .bubble")).to_have_count(3)
    expect(page.locator(".msg.agent .sender").last).to_have_text("Sam · Agent")
    widget.send("thanks Sam")  # the bot stays quiet while a person has the conversation
    expect(page.locator(".msg.user")).to_have_count(3)
    expect(page.locator(".typing")).to_be_hidden()
    expect(widget.bot_replies()).to_have_count(2)  # the answer and the handoff message, nothing for "thanks Sam"
    # Closed, the chat counts what comes in the launcher's name, which a screen reader says.
    page.get_by_role("button", name="Close chat").first.click()
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "One more thing.", "agent": "Sam"})
    expect(page.get_by_role("button", name="Open chat (1 new message)")).to_be_visible()
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "And another.", "agent": "Sam"})
    launcher = page.get_by_role("button", name="Open chat (2 new messages)")
    expect(page.locator(".root > .sr")).to_have_text("Open chat (2 new messages)")  # a live region, outside the panel
    launcher.click()
    expect(page.get_by_role("button", name="Close chat")).to_have_count(2)
    page.get_by_role("button", name="Back to the bot").focus()
    page.get_by_role("button", name="Back to the bot").press("Enter")
    expect(page.locator(".banner")).to_be_hidden()
    expect(page.locator("textarea")).to_be_focused()  # not the page's top
    assert api.history(cid)["status"] == "open"


SOCKETS_WATCHED = """
window.__sockets = 0;
window.__closes = [];
window.__pauses = [];  // the page's timers' delays, among them the socket's pause before it connects again
const timer = window.setTimeout;
window.setTimeout = (run, delay, ...args) => { window.__pauses.push(delay); return timer(run, delay, ...args); };
Math.random = () => 0.5;
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    super(...args);
    window.__sockets += 1;
    this.addEventListener("close", (event) => window.__closes.push(event.code));
  }
};
"""


def test_a_server_not_ready_sends_the_widget_to_connect_again(open_widget: Any, server: LiveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering /healthz with a 503 kept the widget's socket: the load balancer sent it no new customers,
    and this one stayed on the server that could not answer it. The server closes it saying so, and the widget
    connects again (through the balancer, to a ready server) and goes on. So after a server's stop: each widget after
    a pause of its own, between 0.5 and 5 s (half way, here), not all 0.5 s after the stop, at once."""
    widget = open_widget(pollInterval=60_000, init_script=SOCKETS_WATCHED)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    monkeypatch.setattr(server.app[BOT], "renewals_failing", lambda: "renewals fail")
    assert widget.page.request.get(f"{server.url}/healthz").status == 503
    wait_until(page, "window.__closes.includes(1013)")
    monkeypatch.undo()
    wait_until(page, "window.__sockets === 2 && Deskbot.connected()")
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    server.drop_sockets()  # as the server stops
    wait_until(page, "window.__closes.includes(1012) && window.__sockets === 3 && Deskbot.connected()")
    assert page.evaluate("window.__pauses.filter((pause) => pause === 2750).length") == 2


def test_a_server_draining_refuses_the_widgets_socket_and_the_widget_connects_elsewhere_once(
        open_widget: Any, server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server in its server.drain_seconds took new sockets, then closed them (1012) as its port closed: each widget
    the balancer sent there connected twice. Refused before the handshake (503 ``stopping``), the widget's next try,
    a second later, goes through the balancer to a server not stopping (here, the first try alone meets the drain)."""
    draining = iter([True])
    monkeypatch.setattr(server.app[BOT].channels["web"], "draining", lambda: next(draining, False))
    widget = open_widget(pollInterval=60_000, init_script=SOCKETS_WATCHED)
    page = widget.page
    wait_until(page, "window.__sockets === 2 && Deskbot.connected()")
    assert page.evaluate("window.__closes") == [1006]  # the refused handshake, and no socket closed since
    assert 1000 in page.evaluate("window.__pauses")
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)


def test_an_agents_takeover_takes_the_bots_suggested_replies_away(open_widget: Any, api: SimpleNamespace) -> None:
    """The bot's choices stayed under an agent's takeover, and one pressed reached the agent as its payload
    (/get_refund), which the bot, silent, did not answer."""
    widget = open_widget(pollInterval=60_000)
    page = widget.page
    widget.send("I need help")
    expect(page.locator(".quick button")).not_to_have_count(0)  # the fallback's choices
    page.wait_for_function("Deskbot.connected()")
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    expect(page.locator(".banner")).to_be_visible()
    expect(page.locator(".quick button")).to_have_count(0)


def test_the_banner_names_the_agent_who_took_over_as_text(open_widget: Any, api: SimpleNamespace) -> None:
    """An agent who gives their name on taking over is named in the banner, over the socket and after a reload,
    in the widget's language; the name is an agent's text, so markup in it shows as typed."""
    name = "<b>Ana</b>"
    widget = open_widget(pollInterval=60_000)  # no polling: the name comes over the socket
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    page.wait_for_function("Deskbot.connected()")
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff?agent={quote(name)}")
    expect(page.locator(".banner span")).to_have_text(f"You're now chatting with {name}.")
    expect(page.locator(".banner b")).to_have_count(0)
    page.reload()
    expect(page.locator(".banner span")).to_have_text(f"You're now chatting with {name}.")
    chinese = open_widget(page_lang="zh-CN")
    chinese.send("你好")
    expect(chinese.bot_replies()).to_have_count(1)
    api.admin(f"/admin/conversations/{chinese.conversation_id()}/handoff?agent=Ana")
    expect(chinese.page.locator(".banner span")).to_have_text("客服 Ana 为您服务")
    api.admin(f"/admin/conversations/{chinese.conversation_id()}/handback?agent=Ana")
    expect(chinese.page.locator(".banner")).to_be_hidden()


def wrapped_websocket(what: str, send: str, url: str = "...args") -> str:
    """An init script putting the page's WebSocket in a wrapper that does ``what``: its ``send(data)`` runs the
    JavaScript ``send`` (``post(data)`` sends the frame itself), and the socket opens on ``url``."""
    return f"""
(() => {{
  const Real = window.WebSocket;
  window.WebSocket = function (...args) {{  // {what}
    const ws = new Real({url});
    const post = ws.send.bind(ws);
    ws.send = (data) => {{
{send}
    }};
    return ws;
  }};
  Object.assign(window.WebSocket, {{ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 }});
}})();
"""


BLOCKED_WEBSOCKET = """
window.WebSocket = class BlockedWebSocket {
  constructor(url) {
    this.url = url; this.readyState = 0; window.__socketAttempts = (window.__socketAttempts || 0) + 1;
    setTimeout(() => { this.readyState = 3; this.onerror && this.onerror(new Event("error"));
                       this.onclose && this.onclose(new CloseEvent("close", { code: 1006 })); }, 20);
  }
  send() { throw new Error("not open"); }
  close() {}
};
"""


def test_http_fallback_when_the_websocket_is_blocked(open_widget: Any, api: SimpleNamespace, server: LiveServer) -> None:
    widget = open_widget(pollInterval=300, init_script=BLOCKED_WEBSOCKET)
    page = widget.page
    held: list[Route] = []
    page.route(f"{server.url}/api/chat", lambda route: held.append(route))
    widget.send("hello?")
    page.wait_for_function("window.__socketAttempts >= 1")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1 and json.loads(held[0].request.post_data or "{}")["text"] == "hello?"
    expect(page.locator(".typing")).to_be_visible()  # while the bot works
    held[0].continue_()
    page.unroute(f"{server.url}/api/chat")
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".typing")).to_be_hidden()

    page.locator(".quick button", has_text="Talk to a person").click()
    expect(page.locator(".banner")).to_be_visible()
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Sam here, over HTTP.", "agent": "Sam"})
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Sam here, over HTTP."])  # found by polling the history

    # Back with the bot, the widget still learns that an agent took the conversation over, and hears them.
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handback")
    expect(page.locator(".banner")).to_be_hidden()
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Ann here, I took over.", "agent": "Ann"})
    expect(page.locator(".banner")).to_be_visible()
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Sam here, over HTTP.", "Ann here, I took over."])


def test_messages_sent_quickly_over_http_reach_the_bot_in_the_order_typed(open_widget: Any, api: SimpleNamespace,
                                                                          server: LiveServer) -> None:
    """Over HTTP each message is a request of its own: the first one held up on a flaky network reached the bot after
    the second, answered in reverse. The next one leaves once the one before it is answered (or has been out 5 s)."""
    widget = open_widget(transport="http")
    page = widget.page
    held: list[Route] = []
    passed: list[Any] = []  # the server's answers to the requests let through while the first is held

    def first_held_up(route: Route) -> None:
        if not held:
            held.append(route)
        else:
            response = route.fetch()
            passed.append(response)
            route.fulfill(response=response)

    page.route(f"{server.url}/api/chat", first_held_up)
    widget.send("where is my parcel")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    widget.send("order 12345")
    expect(page.locator(".msg.user.out")).to_have_count(2)
    # The first stays held up on the network for 1.5 s, or until the second has been answered, whichever is first.
    for _ in range(30):
        if passed:
            break
        page.wait_for_timeout(50)
    held[0].continue_()
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator(".msg.user.out")).to_have_count(0)
    page.unroute(f"{server.url}/api/chat")
    said = [turn["text"] for turn in api.history(widget.conversation_id())["turns"] if turn["role"] == "user"]
    assert said == ["where is my parcel", "order 12345"]
    expect(page.locator(".msg.user .bubble")).to_have_text(["where is my parcel", "order 12345"])


def test_http_fallback_when_the_server_has_its_most_websockets_open(open_widget: Any, api: SimpleNamespace,
                                                                    server: LiveServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A server at limits.websockets refuses a new socket (503): its widget chats over HTTP and polls for the agents'
    replies, as behind a proxy that blocks sockets."""
    limits = server.app[LIMITS]
    open_widget()  # whose socket takes the last slot
    for _ in range(200):
        if limits.open_sockets:
            break
        time.sleep(0.05)
    assert limits.open_sockets
    monkeypatch.setattr(limits, "max_sockets", limits.open_sockets)
    widget = open_widget(pollInterval=300)
    page = widget.page
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    widget.send("hello?")
    expect(widget.bot_replies()).to_have_count(1)
    assert f"{server.url}/api/chat" in posted
    page.locator(".quick button", has_text="Talk to a person").click()
    expect(page.locator(".banner")).to_be_visible()
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Sam here, over HTTP.", "agent": "Sam"})
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Sam here, over HTTP."])  # found by polling the history


DROPPING_WEBSOCKET = wrapped_websocket("closes itself right after the next message frame goes out", """
      post(data);
      if (window.__dropNext && JSON.parse(data).type === "message") { window.__dropNext = false; ws.close(); }""")


def test_a_message_out_when_the_socket_drops_is_answered_once(open_widget: Any, api: SimpleNamespace,
                                                              server: LiveServer) -> None:
    """The server had it, so the widget shows its answer instead of offering to send it again."""
    widget = open_widget(init_script=DROPPING_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__dropNext = true")
    widget.send("my parcel never arrived")
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".typing")).to_be_hidden()  # the widget has made up its mind about the message
    expect(page.locator(".status-line")).to_have_count(0)  # no "Not sent" and no Retry
    assert [t["role"] for t in api.history(widget.conversation_id())["turns"]] == ["user", "bot"]
    page.wait_for_function("Deskbot.connected()")
    server.drop_sockets()  # the next reconnect reads the history again: the message is shown once still
    page.wait_for_timeout(1500)
    page.wait_for_function("Deskbot.connected()")
    expect(page.locator(".msg.user")).to_have_count(1)


def test_a_message_over_http_whose_answer_is_lost_on_the_way_back_is_answered_once(
        open_widget: Any, api: SimpleNamespace) -> None:
    """A proxy's 502, or a dropped connection, after the server had the message: it showed twice, marked
    Not sent, and its Retry sent it again. A proxy's answer before the server had it stays Not sent."""
    widget = open_widget(transport="http")
    page = widget.page
    answers = iter(["dropped", "gateway", "before"])

    def on_the_way_back(route: Any) -> None:
        how = next(answers, "through")
        if how == "before":
            route.fulfill(status=502, content_type="text/html", body="<html><body>502 Bad Gateway</body></html>")
            return
        if how == "through":
            route.continue_()
            return
        route.fetch()  # the server has it and answers...
        if how == "dropped":  # ...and the answer is lost
            route.abort("connectionreset")
        else:
            route.fulfill(status=504, content_type="text/html", body="<html><body>504 Gateway Time-out</body></html>")

    page.route("**/api/chat", on_the_way_back)
    widget.send("my parcel never arrived")
    expect(widget.bot_replies()).to_have_count(1)
    widget.send("and my refund?")
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator(".typing")).to_be_hidden()
    expect(page.locator(".status-line")).to_have_count(0)  # no "Not sent" and no Retry
    expect(page.locator(".msg.user .bubble")).to_have_text(["my parcel never arrived", "and my refund?"])
    assert [t["role"] for t in api.history(widget.conversation_id())["turns"]] == ["user", "bot"] * 2
    widget.send("hello?")
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)
    expect(page.locator(".msg.user.failed")).to_have_text(re.compile("hello\\?"))
    assert len(api.history(widget.conversation_id())["turns"]) == 4


@pytest.fixture
def slow_turns(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message "slow N …" is answered N seconds late, as by a slow order system behind an action."""
    assert server.app is not None
    bot = server.app[BOT]
    handle = bot._handle  # inside the conversation's turn lock, as an action's time is

    async def slowly(turn: Any) -> Any:
        if match := re.match(r"slow (\d+)", turn.text):
            await asyncio.sleep(int(match[1]))
        return await handle(turn)

    monkeypatch.setattr(bot, "_handle", slowly)


LOSING_WEBSOCKET = wrapped_websocket("lost at once, as in a tunnel, right after the next message goes out", """
      const message = JSON.parse(data).type === "message";
      if (!(window.__swallowNext && message)) post(data);  // swallowed: lost before the server had it
      if ((window.__loseNext || window.__swallowNext) && message) {
        window.__loseNext = window.__swallowNext = false;
        const closed = ws.onclose;
        ws.onmessage = ws.onclose = null;
        ws.close();
        closed(new CloseEvent("close", { code: 1006 }));
      }""", url='...(window.__down ? ["ws://127.0.0.1:9/"] : args)')  # __down: no new one connects


def test_a_slow_answer_to_a_message_out_when_the_socket_was_lost_is_shown_once(
        open_widget: Any, api: SimpleNamespace, slow_turns: None) -> None:
    """A turn still running 3.5 s after the socket was lost was marked "Not sent", and Retry sent it twice;
    one answered later still, after the widget gave up looking, keeps no mark once its answer shows."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    for delay, text in ((5, "slow 5 where is my parcel"), (14, "slow 14 where is my refund")):
        page.wait_for_function("Deskbot.connected()")
        page.evaluate("window.__loseNext = true")
        widget.send(text)
        expect(page.locator(".msg.user", has_text=text)).to_have_count(1)
        expect(page.locator(".typing")).to_be_hidden(timeout=(delay + 5) * 1000)
        if delay > 12:  # past the widget's look at the history: marked not sent, until the answer comes
            expect(page.locator(".msg.user.failed", has_text=text)).to_have_count(1)
        expect(page.locator(".status-line")).to_have_count(0, timeout=(delay + 10) * 1000)
        expect(page.locator(".msg.user", has_text=text)).to_have_attribute("data-turn-id", re.compile(r"\d+"))
    expect(widget.bot_replies()).to_have_count(2)
    assert [t["role"] for t in api.history(widget.conversation_id())["turns"]] == ["user", "bot"] * 2


def test_retry_of_a_message_still_being_answered_sends_it_once_in_every_tab(
        open_widget: Any, api: SimpleNamespace, server: LiveServer, slow_turns: None) -> None:
    """Marked "Not sent" while its turn still ran, its Retry had the bot answer it twice, and the site's other tab
    showed the customer's message twice."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__loseNext = true")
    text = "slow 20 where is my refund"  # answered 8 s after the widget gives up looking (12 s), a loaded machine's click
    widget.send(text)
    other_tab = widget.context.new_page()  # opened while it is out: shows it out too
    other_tab.goto(page.url)
    expect(other_tab.locator(".msg.user.out")).to_have_text(re.compile(text))
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)  # the widget gave up looking
    page.get_by_role("button", name="Retry").click()
    for tab in (page, other_tab):
        expect(tab.locator(".msg.bot[data-turn-id]")).to_have_count(1, timeout=20_000)
    assert server.app is not None
    deadline = time.monotonic() + 30
    while server.app[BOT].turns_in_flight():  # a second answer, had it been sent twice, is given by now
        assert time.monotonic() < deadline
        page.wait_for_timeout(200)
    page.wait_for_timeout(1000)  # its push reaches the tabs
    assert [t["text"] for t in api.history(widget.conversation_id())["turns"] if t["role"] == "user"] == [text]
    for tab in (page, other_tab):
        expect(tab.locator(".msg.user")).to_have_count(1)
        expect(tab.locator(".status-line")).to_have_count(0)
        expect(tab.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    other_tab.close()


def test_a_message_another_server_is_answering_shows_its_answer_once_that_server_gives_it(
        open_widget: Any, server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Retry reaching the second of two servers while the first answers it is told at once that another server has
    it (its socket's next messages waited behind it): the widget took that for a refusal, marked it "Not sent", and
    showed the message twice once the first server's answer came."""
    from bot.channels.web import ChatRequest

    assert server.app is not None
    channel = server.app[BOT].channels["web"]
    claimed, held = channel._claimed, []
    text = "my parcel never arrived"

    async def elsewhere(turn: Any) -> bool:  # another server has the widget's send of it
        if turn.text == text and not held:
            held.append(turn)
            return False
        return bool(await claimed(turn))

    monkeypatch.setattr(channel, "_claimed", elsewhere)
    widget = open_widget()
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    widget.send(text)
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    answered = ChatRequest(conversation_id=widget.conversation_id(), text=text, message_id=held[0].message_id)
    server._run(channel.chat(answered, None, None))  # as that server does: its answer kept, then said to the sockets
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.user")).to_have_attribute("data-turn-id", re.compile(r"\d+"))
    expect(page.locator(".status-line")).to_have_count(0)


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_a_reload_while_the_answer_is_on_its_way_shows_the_message_and_its_answer(
        open_widget: Any, api: SimpleNamespace, slow_turns: None, transport: str) -> None:
    """Reloaded before the answer came, the chat showed neither the customer's message nor the typing dots, as the
    history has the turn only once it is answered; over HTTP the answer waited for the next poll, 16 s later."""
    widget = open_widget(transport=transport)
    page = widget.page
    widget.send("slow 3 where is my parcel")
    expect(page.locator(".msg.user.out")).to_have_count(1)
    page.wait_for_timeout(300)  # on its way to the server
    page.reload()
    expect(page.locator(".msg.user.out")).to_have_text(re.compile("slow 3 where is my parcel"))
    expect(page.locator(".typing")).to_be_visible()
    expect(widget.bot_replies()).to_have_count(1, timeout=6_000)
    expect(page.locator(".typing")).to_be_hidden()
    history = api.history(widget.conversation_id())["turns"]
    shown = page.locator(".msg[data-turn-id]")
    expect(shown).to_have_count(2)
    assert [int(i) for i in shown.evaluate_all("(nodes) => nodes.map((n) => n.dataset.turnId)")] == [t["id"] for t in history]
    page.reload()  # answered: shown once, from the history
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.user.out")).to_have_count(0)
    expect(page.locator(".typing")).to_be_hidden()


def test_a_tab_opened_while_the_answer_is_on_its_way_shows_the_message_too(
        open_widget: Any, api: SimpleNamespace, slow_turns: None) -> None:
    """A tab of the site opened meanwhile showed the customer's message only once its answer came, seconds later."""
    widget = open_widget()
    widget.send("slow 8 where is my parcel")
    expect(widget.page.locator(".msg.user.out")).to_have_count(1)
    other_tab = widget.context.new_page()
    other_tab.goto(widget.page.url)
    expect(other_tab.locator(".msg.user.out")).to_have_text(re.compile("slow 8 where is my parcel"))
    expect(other_tab.locator(".typing")).to_be_visible()
    expect(other_tab.locator(".msg.bot[data-turn-id]")).to_have_count(1, timeout=15_000)
    expect(other_tab.locator(".msg.user")).to_have_count(1)
    expect(other_tab.locator(".msg.user.out")).to_have_count(0)
    expect(other_tab.locator(".typing")).to_be_hidden()
    other_tab.close()
    expect(widget.bot_replies()).to_have_count(1)
    later_tab = widget.context.new_page()  # answered: shown once, from the history
    later_tab.goto(widget.page.url)
    expect(later_tab.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    expect(later_tab.locator(".msg.user")).to_have_count(1)
    expect(later_tab.locator(".msg.user.out")).to_have_count(0)
    later_tab.close()


def test_a_tab_already_open_shows_the_message_another_tab_sends_as_it_goes_out(
        open_widget: Any, api: SimpleNamespace, slow_turns: None) -> None:
    """A tab of the site already open showed the customer's message from another tab only once its answer came,
    seconds later (a tab opened meanwhile showed it at once)."""
    widget = open_widget()
    other_tab = widget.context.new_page()
    other_tab.goto(widget.page.url)
    other_tab.wait_for_function("Deskbot.connected()")  # its history shown, its chat started
    widget.send("slow 8 where is my parcel")
    expect(other_tab.locator(".msg.user.out")).to_have_text(re.compile("slow 8 where is my parcel"), timeout=5_000)
    expect(other_tab.locator(".typing")).to_be_visible()
    expect(other_tab.locator(".msg.bot[data-turn-id]")).to_have_count(1, timeout=15_000)
    for tab in (widget.page, other_tab):
        expect(tab.locator(".msg.user")).to_have_count(1)
        expect(tab.locator(".msg.user.out")).to_have_count(0)
        expect(tab.locator(".typing")).to_be_hidden()
    other_tab.close()


def test_a_message_out_stays_out_in_its_conversations_tabs_while_a_tab_in_another_sends(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace, identity_secret: str,
        slow_turns: None) -> None:
    """The site's tabs kept the messages out of one conversation at a time: a visitor's tab, in a conversation of its
    own, that sent a message took the signed-in customer's message out from their other tab, which marked it Not
    sent while the bot was still answering it."""
    proof = hmac.new(identity_secret.encode(), b"u-23", hashlib.sha256).hexdigest()
    customer = open_widget(user="u-23", userHash=proof, pollInterval=60_000)
    server.pages["/visitors-page.html"] = embed_page(server.url, {"open": True, "pollInterval": 60_000})
    visitor = customer.context.new_page()  # a page of the shop that names no customer, open from before
    visitor.goto(f"{web_demo_bot.embed_origin}/visitors-page.html")
    visitor.wait_for_function("Deskbot.connected()")
    customer.send("where is my parcel")  # their conversation, signed in: closed to the visitor's tab
    expect(customer.bot_replies()).to_have_count(1)
    visitor.locator("textarea").fill("hello")  # refused there: it goes on in a conversation of its own
    visitor.locator("textarea").press("Enter")
    expect(visitor.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    customer.send("slow 10 and my refund?")
    another = customer.context.new_page()  # another page of the shop, signed in too, opened as it is out
    another.goto(customer.page.url)
    expect(another.locator(".msg.user.out")).to_have_text(re.compile("slow 10 and my refund"))
    visitor.locator("textarea").fill("slow 3 can I return shoes")
    visitor.locator("textarea").press("Enter")
    expect(visitor.locator(".msg.bot[data-turn-id]")).to_have_count(2)
    expect(another.locator(".msg.user.out")).to_have_text(re.compile("slow 10 and my refund"))
    expect(another.locator(".msg.bot[data-turn-id]")).to_have_count(2, timeout=15_000)
    for tab in (customer.page, another):
        expect(tab.locator(".msg.user .bubble")).to_have_text(["where is my parcel", "slow 10 and my refund?"])
        expect(tab.locator(".status-line")).to_have_count(0)
    another.close()
    visitor.close()


def test_a_message_the_socket_lost_shows_above_the_answers_to_the_next(open_widget: Any, api: SimpleNamespace,
                                                                       slow_turns: None) -> None:
    """The answer to the next message, come while the widget still looked for the lost one in the history,
    showed above both messages."""
    widget = open_widget(init_script=LOSING_WEBSOCKET, pollInterval=60_000)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__loseNext = window.__down = true")
    widget.send("slow 2 where is my parcel")
    expect(page.locator(".msg.user")).to_have_count(1)
    widget.send("how do refunds work?")  # over HTTP, answered after the first turn, before the widget looks again
    expect(widget.bot_replies()).to_have_count(2, timeout=20_000)
    expect(page.locator(".status-line")).to_have_count(0, timeout=20_000)
    history = api.history(widget.conversation_id())["turns"]
    assert [t["text"] for t in history if t["role"] == "user"] == ["slow 2 where is my parcel", "how do refunds work?"]
    shown = page.locator(".msg[data-turn-id]")
    expect(shown).to_have_count(4)
    assert [int(i) for i in shown.evaluate_all("(nodes) => nodes.map((n) => n.dataset.turnId)")] == [t["id"] for t in history]


def test_a_message_of_invisible_characters_is_not_sent(open_widget: Any, api: SimpleNamespace) -> None:
    """Zero-width spaces alone enabled Send, and the message came back as Not sent, the server's refusal unsaid."""
    widget = open_widget()
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    box = page.locator("textarea")
    box.fill("\u200b\u200b\u2060")
    expect(page.locator("button[type=submit]")).to_be_disabled()
    box.press("Enter")
    page.wait_for_timeout(500)
    expect(page.locator(".msg.user")).to_have_count(0)
    box.fill("\u200bhello")
    expect(page.locator("button[type=submit]")).to_be_enabled()
    box.press("Enter")
    expect(widget.bot_replies()).to_have_count(1)
    assert [t["role"] for t in api.history(widget.conversation_id())["turns"]] == ["user", "bot"]


def test_a_message_lost_before_the_server_had_it_stays_not_sent(open_widget: Any, api: SimpleNamespace) -> None:
    """Another tab's next message must not be taken for it: the widget said it went through, and hid that one."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__swallowNext = true")
    widget.send("where is my parcel")
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)
    api.chat(widget.conversation_id(), "and my refund?")  # another tab of the same conversation
    expect(page.locator(".msg.user .bubble")).to_have_text(["where is my parcel", "and my refund?"])
    expect(page.locator(".msg.user.failed")).to_have_text(re.compile("where is my parcel"))


def test_a_message_not_sent_in_its_tab_is_not_sent_in_the_sites_other_tabs_either(open_widget: Any) -> None:
    """A tab opened while the message was out showed it going out, with the typing dots, for up to a minute, while the
    tab that sent it already said "Not sent"."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__swallowNext = true")
    widget.send("where is my parcel")
    other_tab = widget.context.new_page()
    other_tab.goto(page.url)
    expect(other_tab.locator(".msg.user.out")).to_have_count(1)
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)
    expect(other_tab.locator(".msg.user.failed")).to_have_count(1, timeout=5_000)
    expect(other_tab.locator(".typing")).to_be_hidden()
    expect(other_tab.get_by_role("button", name="Retry")).to_be_visible()
    other_tab.close()


def test_a_duplicated_tab_shows_the_message_the_first_has_out_as_that_tabs(open_widget: Any) -> None:
    """A duplicated tab starts with a copy of the first one's sessionStorage: it took the message the first had out for
    its own, and showed it going out, with the typing dots, for up to a minute after the first said "Not sent"."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__swallowNext = true")
    widget.send("where is my parcel")
    expect(page.locator(".msg.user.out")).to_have_count(1)
    copied = page.evaluate("Object.entries(sessionStorage)")
    duplicate = widget.context.new_page()  # as the browser duplicates a tab: its sessionStorage copied before it loads
    duplicate.add_init_script("for (const [key, value] of %s) sessionStorage.setItem(key, value);" % json.dumps(copied))
    duplicate.goto(page.url)
    expect(duplicate.locator(".msg.user.out")).to_have_count(1)
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)
    expect(duplicate.locator(".msg.user.failed")).to_have_count(1, timeout=5_000)
    expect(duplicate.get_by_role("button", name="Retry")).to_be_visible()
    duplicate.close()


def test_a_message_the_bot_never_got_is_shown_not_sent_in_the_sites_tabs_already_open(open_widget: Any) -> None:
    """A message that never reached the bot showed only in the tab it was typed in: the customer's other tabs of the
    site, already open, showed nothing of it, nor its Retry, whose message then showed in every tab once."""
    widget = open_widget(init_script=LOSING_WEBSOCKET)
    page = widget.page
    other_tab = widget.context.new_page()
    other_tab.goto(page.url)
    other_tab.wait_for_function("Deskbot.connected()")  # its history shown, its chat started
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__swallowNext = true")
    widget.send("where is my parcel")
    expect(other_tab.locator(".msg.user.out")).to_have_count(1)
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=20_000)
    expect(other_tab.locator(".msg.user.failed")).to_have_count(1, timeout=5_000)
    expect(other_tab.locator(".typing")).to_be_hidden()
    other_tab.get_by_role("button", name="Retry").click()
    for tab in (page, other_tab):
        expect(tab.locator(".msg.bot[data-turn-id]")).to_have_count(1)
        expect(tab.locator(".msg.user")).to_have_count(1)
        expect(tab.locator(".msg.user")).to_have_attribute("data-turn-id", re.compile(r"\d+"))
        expect(tab.locator(".status-line")).to_have_count(0)
    other_tab.close()


DEAF_WEBSOCKET = wrapped_websocket("open at both ends, and the next message goes nowhere: a dead network", """
      if (window.__deafNext && JSON.parse(data).type === "message") window.__deafNext = false;
      else post(data);""")


def test_a_message_a_dead_connection_never_answers_is_marked_not_sent(open_widget: Any, api: SimpleNamespace) -> None:
    """A phone that changed networks left the socket open at both ends: the message waited with the typing
    dots for good, and was lost."""
    widget = open_widget(init_script=DEAF_WEBSOCKET)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    page.evaluate("window.__deafNext = true")
    widget.send("where is my parcel")
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=45_000)
    expect(page.locator(".typing")).to_be_hidden()
    page.get_by_role("button", name="Retry").click()
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg.user")).to_have_count(1)
    assert [t["text"] for t in api.history(widget.conversation_id())["turns"] if t["role"] == "user"] == [
        "where is my parcel"]


def test_a_message_written_offline_is_not_sent_at_once(open_widget: Any) -> None:
    """It could not leave the phone, yet the typing dots showed for 12 s before "Not sent". In a browser without
    AbortSignal.timeout (the Safari of 2021) every request failed."""
    widget = open_widget(transport="http", init_script="delete AbortSignal.timeout;")
    page = widget.page
    widget.context.set_offline(True)
    widget.send("where is my parcel")
    expect(page.locator(".msg.user.failed")).to_have_count(1, timeout=3_000)
    expect(page.locator(".typing")).to_be_hidden()
    widget.context.set_offline(False)
    page.get_by_role("button", name="Retry").click()
    expect(widget.bot_replies()).to_have_count(1)


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_back_online_the_chat_hears_an_agent_at_once(open_widget: Any, api: SimpleNamespace, server: LiveServer,
                                                    transport: str) -> None:
    """After 10 s offline (a phone in a tunnel) the socket's next try was 5 s away, and the poll without one 16 s
    away: an agent's reply meanwhile waited as long, and longer the longer the phone had been offline."""
    widget = open_widget(pollInterval=60_000, transport=transport)
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    cid = widget.conversation_id()
    widget.context.set_offline(True)
    server.drop_sockets()  # the network's loss ends the socket
    page.wait_for_timeout(10_000)
    api.admin(f"/admin/conversations/{cid}/handoff")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, this is Sam.", "agent": "Sam"})
    widget.context.set_offline(False)
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam."], timeout=2_500)


SLEEPING_WEBSOCKET = """
(() => {  // frames pushed while window.__asleep are lost, the socket still open: a phone's screen off
  const Real = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Real(...args);
    let handler = null;
    ws.addEventListener("message", (event) => { if (!window.__asleep && handler) handler(event); });
    Object.defineProperty(ws, "onmessage", { get: () => handler, set: (h) => { handler = h; } });
    return ws;
  };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


def test_back_on_the_page_after_the_phone_slept_the_chat_shows_what_came_meanwhile(
        open_widget: Any, api: SimpleNamespace) -> None:
    """An agent's takeover and reply pushed while the phone slept were lost with its socket, which still seemed
    open: the chat, which polls only without one, never showed them."""
    widget = open_widget(init_script=SLEEPING_WEBSOCKET, pollInterval=60_000)
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    cid = widget.conversation_id()
    page.evaluate("window.__asleep = true")
    api.admin(f"/admin/conversations/{cid}/handoff")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, this is Sam.", "agent": "Sam"})
    page.evaluate("window.__asleep = false; document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam."], timeout=2_500)
    expect(page.locator(".banner")).to_be_visible()


def wait_for_the_held_read(page: Any, held: list[tuple[Route, Any]]) -> None:
    """Wait, 10 s at most, for the history read whose answer ``held`` keeps on its way."""
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the history was not read"
        page.wait_for_timeout(50)


def the_held_read_leaves_the_handoff(page: Any, held: list[tuple[Route, Any]]) -> None:
    """The held history answer, let through last, leaves the banner, and says nothing of a return to the bot."""
    route, response = held[0]
    route.fulfill(response=response)
    page.wait_for_timeout(500)  # time for the older answer to be applied, were it
    expect(page.locator(".banner")).to_be_visible()
    expect(page.locator(".notice")).to_have_count(0)


@pytest.mark.parametrize("event", ["document.dispatchEvent(new Event('visibilitychange'))",
                                   "window.dispatchEvent(new Event('online'))"])
def test_a_history_read_answered_after_an_agent_took_the_chat_over_does_not_undo_the_takeover(
        open_widget: Any, api: SimpleNamespace, server: LiveServer, event: str) -> None:
    """The history read as the customer came back to the page (or back online, or as the socket reconnected), read
    before an agent took the chat over and answered after the takeover was pushed, hid the banner and said the
    customer was back with the bot, though nobody had handed the conversation back."""
    widget = open_widget(pollInterval=60_000)
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    held: list[tuple[Route, Any]] = []  # the history as read before the takeover, its answer held on its way
    page.route(f"{server.url}/api/conversations/history", lambda route: held.append((route, route.fetch())))
    page.evaluate(event)
    wait_for_the_held_read(page, held)
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    expect(page.locator(".banner")).to_be_visible()
    the_held_read_leaves_the_handoff(page, held)


@pytest.mark.parametrize("handoff", ["agent", "customer"])
def test_without_a_socket_an_older_history_read_answered_last_does_not_undo_a_takeover(
        open_widget: Any, api: SimpleNamespace, server: LiveServer, handoff: str) -> None:
    """Without a socket, a history read answered after a later one that had found an agent's takeover (a poll
    slowed down, then the customer back on the page), or after the bot's answer that handed the chat off, hid the
    banner and said the customer was back with the bot."""
    widget = open_widget(pollInterval=60_000, transport="http")
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    held: list[tuple[Route, Any]] = []  # the first read, from before the takeover, held on its way

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append((route, route.fetch()))

    page.route(f"{server.url}/api/conversations/history", hold_the_first)
    come_back = "document.dispatchEvent(new Event('visibilitychange'))"
    page.evaluate(come_back)
    wait_for_the_held_read(page, held)
    if handoff == "agent":
        api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
        page.evaluate(come_back)
    else:  # the customer asks for a person, and the bot's answer hands the chat off
        page.locator(".quick button", has_text="Talk to a person").click()
    expect(page.locator(".banner")).to_be_visible()
    the_held_read_leaves_the_handoff(page, held)


def test_the_list_stays_where_the_customer_reads_and_keeps_the_latest_in_sight(open_widget: Any,
                                                                               api: SimpleNamespace) -> None:
    """A message pulled a customer reading an earlier answer down to the end; a rotated phone hid the latest."""
    widget = open_widget()
    page = widget.page
    for n in range(6):
        widget.send(f"question {n}")
        expect(widget.bot_replies()).to_have_count(n + 1)
    scroller = page.locator(".scroll")
    scroller.evaluate("node => node.scrollTo({ top: 0, behavior: 'instant' })")
    page.wait_for_timeout(200)  # the scroll event has come
    api.chat(widget.conversation_id(), "from another tab")  # shown here too, as the socket says
    expect(page.locator(".msg.user")).to_have_count(7)
    page.wait_for_timeout(300)
    assert scroller.evaluate("node => node.scrollTop") == 0
    jump = page.get_by_role("button", name="New messages", exact=True)  # what came is said, and one click away
    expect(jump).to_be_visible()
    assert "↓" in jump.evaluate("(node) => getComputedStyle(node, '::after').content")  # its arrow seen, not said
    jump.click()
    expect(jump).to_be_hidden()
    assert scroller.evaluate("node => node.scrollTop") > 0
    expect(page.locator("textarea")).to_be_focused()
    widget.send("my own message")  # takes the customer to the end
    expect(widget.bot_replies()).to_have_count(8)
    at_end = "node => node.scrollTop + node.clientHeight >= node.scrollHeight - 2"
    the_list = "document.querySelector('div').shadowRoot.querySelector('.scroll')"
    page.wait_for_function(f"({at_end})({the_list})")
    tall = scroller.evaluate("node => node.clientHeight")
    page.set_viewport_size({"width": 1100, "height": 420})  # smaller: the latest message still in sight
    page.wait_for_function(f"{the_list}.clientHeight < {tall} && ({at_end})({the_list})")


def test_an_answer_taller_than_the_list_is_shown_from_its_start(open_widget: Any, api: SimpleNamespace) -> None:
    """A long answer came scrolled to its end: the customer read its last lines first and scrolled back for the rest."""
    widget = open_widget(pollInterval=60_000)
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    long_answer = "First, the steps.\n\n" + "word " * 600
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": long_answer, "agent": "Ana"})
    answer = page.locator(".msg.agent .bubble")
    expect(answer).to_have_count(1)
    page.wait_for_timeout(300)  # the suggested replies and the typing line have settled
    top_in_list = "(node) => node.getBoundingClientRect().top - node.getRootNode().querySelector('.scroll').getBoundingClientRect().top"
    assert 0 <= answer.evaluate(top_in_list) < 40  # its first line at the top of the list
    expect(page.get_by_role("button", name="New messages")).to_be_hidden()


def test_messages_shown_again_after_a_reload_are_not_counted_as_new(open_widget: Any, server: LiveServer,
                                                                   web_demo_bot: SimpleNamespace) -> None:
    """Reloaded with the chat closed, the launcher said "3 new messages" for answers already read, and a page
    never opened counted its greeting as one."""
    widget = open_widget()
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    closed = f"/shop-closed-{next(PAGE_NUMBERS)}.html"
    server.pages[closed] = embed_page(server.url, {"open": False})
    for page in (widget.page, widget.context.new_page(), widget.page.context.browser.new_page()):  # reloaded; never opened
        page.goto(f"{web_demo_bot.embed_origin}{closed}")
        page.wait_for_function("window.Deskbot && document.querySelector('div').shadowRoot.querySelector('.log').children.length > 0")
        page.wait_for_timeout(300)
        expect(page.get_by_role("button", name="Open chat", exact=True)).to_be_visible()
        expect(page.locator(".badge")).to_have_count(0)
        if page is not widget.page:
            page.close()


def test_on_a_phone_held_sideways_the_latest_message_and_send_stay_in_sight(open_widget: Any) -> None:
    """In 750 × 342 the message list was 26 px tall and Send 6 px; the box's 15 px text made iOS zoom in,
    and Retry, the thumbs and the choices were too small for a finger."""
    widget = open_widget(device={"viewport": {"width": 750, "height": 342}, "is_mobile": True, "has_touch": True,
                                 "device_scale_factor": 3})
    page = widget.page
    widget.send("hello there")
    expect(widget.bot_replies()).to_have_count(1)
    page.locator("textarea").fill("line one\nline two\nline three\nline four")
    send = page.locator(".send").bounding_box()
    assert send is not None and send["y"] >= 0 and send["y"] + send["height"] <= 342
    assert page.locator(".scroll").evaluate("node => node.clientHeight") >= 80
    assert page.locator("textarea").evaluate("node => getComputedStyle(node).fontSize") == "16px"
    assert page.locator("textarea").evaluate("node => node.enterKeyHint") == "send"
    heights = page.locator(".quick button, .feedback button").evaluate_all("nodes => nodes.map(n => n.offsetHeight)")
    assert heights and min(heights) >= 36, heights


ON_SCREEN_KEYBOARD = """
// A phone's visual viewport, which its on-screen keyboard shrinks (__keyboard(px)) while the layout viewport stays
const view = new EventTarget();
Object.assign(view, { offsetTop: 0, offsetLeft: 0, scale: 1, width: innerWidth, height: innerHeight });
Object.defineProperty(window, "visualViewport", { value: view });
window.__keyboard = (px) => { view.height = innerHeight - px; view.dispatchEvent(new Event("resize")); };
"""


def test_on_a_phone_the_message_box_stays_above_the_on_screen_keyboard(open_widget: Any, api: SimpleNamespace) -> None:
    """The chat was as tall as 100vh and fixed to the layout viewport's bottom: the keyboard (and the toolbar of a
    phone's browser) covered the message box and Send, where the customer types. Over a large keyboard, under the
    handoff banner, the message list was then 26 px tall."""
    widget = open_widget(device={"viewport": {"width": 390, "height": 700}, "is_mobile": True, "has_touch": True},
                         init_script=ON_SCREEN_KEYBOARD)
    page = widget.page
    widget.send("hello there")
    expect(widget.bot_replies()).to_have_count(1)
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff", {"agent": "Sam"})
    expect(page.locator(".banner")).to_be_visible()
    for keyboard in (300, 380, 0):  # shown, a larger one, then put away
        page.evaluate(f"__keyboard({keyboard})")
        page.wait_for_timeout(100)
        for part in (".panel", "textarea", ".send", ".msg.bot >> nth=-1"):
            box = page.locator(part).bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 700 - keyboard, (part, box)
        assert page.locator(".scroll").evaluate("node => node.clientHeight") >= 64, keyboard


def test_scrolling_the_messages_past_their_end_leaves_the_page_behind_where_it_was(open_widget: Any) -> None:
    """Scrolled on past the latest message, the page under the chat scrolled instead (2000 px on a long one), and the
    customer lost their place on the shop's page."""
    widget = open_widget(device={"viewport": {"width": 375, "height": 667}, "is_mobile": True, "has_touch": True},
                         page={"body": '<div style="height: 3000px"></div>'})
    page = widget.page
    for sent in range(1, 4):
        widget.send(f"where is my order number {sent}?")
        expect(widget.bot_replies()).to_have_count(sent)
    messages = page.locator(".scroll")
    assert messages.evaluate("(node) => node.scrollHeight > node.clientHeight")
    box = messages.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(5):
        page.mouse.wheel(0, 400)
        page.wait_for_timeout(100)
    assert messages.evaluate("(node) => node.scrollTop + node.clientHeight >= node.scrollHeight - 1")
    assert page.evaluate("scrollY") == 0


HELD_WEBSOCKET = """
window.WebSocket = class HeldWebSocket {  // a proxy that never answers the upgrade
  constructor(url) { this.url = url; this.readyState = 0; }
  send() { throw new Error("not open"); }
  close() {}
};
"""


def test_a_socket_held_connecting_delays_only_the_first_message(open_widget: Any, server: LiveServer) -> None:
    """Every message waited 4 s for a socket a proxy held in its upgrade before going over HTTP."""
    widget = open_widget(init_script=HELD_WEBSOCKET)
    page = widget.page
    waits: list[float] = []
    for n, text in enumerate(("hello", "anyone there?", "my parcel")):
        sent = time.monotonic()
        with page.expect_request(f"{server.url}/api/chat", timeout=10_000):
            widget.send(text)
        waits.append(time.monotonic() - sent)
        expect(widget.bot_replies()).to_have_count(n + 1)
    assert waits[0] >= 3.5 and max(waits[1:]) < 2.0, waits


def test_another_tabs_turns_show_in_the_conversations_order(open_widget: Any, api: SimpleNamespace,
                                                            slow_turns: None) -> None:
    """A tab showed another tab's answer under its own question, and that tab's question at the end."""
    widget = open_widget(pollInterval=60_000)
    page = widget.page
    other_tab = widget.context.new_page()  # the same conversation on another page of the shop
    other_tab.goto(page.url)
    for tab in (page, other_tab):
        tab.wait_for_function("Deskbot.connected()")
    other_tab.locator("textarea").fill("slow 3 where is my order")
    other_tab.locator("textarea").press("Enter")
    page.wait_for_timeout(1000)
    widget.send("how do refunds work?")  # waits behind the other tab's turn
    expect(widget.bot_replies()).to_have_count(2)
    history = api.history(widget.conversation_id())["turns"]
    assert [t["text"] for t in history if t["role"] == "user"] == ["slow 3 where is my order", "how do refunds work?"]
    shown = page.locator(".msg[data-turn-id]")
    expect(shown).to_have_count(4)
    assert [int(i) for i in shown.evaluate_all("(nodes) => nodes.map((n) => n.dataset.turnId)")] == [t["id"] for t in history]
    expect(page.locator(".msg.user .bubble")).to_have_text(["slow 3 where is my order", "how do refunds work?"])
    other_tab.close()


def test_chinese_ui_strings(open_widget: Any) -> None:
    widget = open_widget(page_lang="zh-CN")  # the page's language picks Chinese
    page = widget.page
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(page.locator(".msg.bot .bubble")).to_have_text(["您好！请问有什么可以帮您？"])
    expect(page.get_by_role("button", name="关闭聊天").first).to_be_visible()
    widget.send("你好")
    reply = widget.bot_replies().first
    expect(reply.get_by_role("button", name="有帮助", exact=True)).to_be_visible()
    expect(reply.get_by_role("button", name="没有帮助")).to_be_visible()
    english = open_widget(lang="en", page_lang="zh-CN")  # the config object wins over the page
    expect(english.page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")


def test_the_widget_reads_on_any_page_in_any_script_and_input_method(
        open_widget: Any, chromium: SimpleNamespace, server: LiveServer) -> None:
    """Served without a charset, the script was read in its page's: on a GBK page, as many a Chinese shop's is,
    it did not run at all. Safari ends a pinyin composition before the Enter that ends it, which then says
    isComposing false (and keyCode 229): that Enter sent the half-typed message. "constructor", a name every
    object has, was taken for a language, and right-to-left text was laid out left to right."""
    gbk = open_widget(page_lang="zh-CN", page_charset="gbk")
    expect(gbk.page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")

    page = open_widget(lang="constructor").page
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    page.locator("textarea").evaluate("""(box) => {
        box.focus();
        box.dispatchEvent(new CompositionEvent("compositionstart", {bubbles: true}));
        box.value = "我的订单";
        box.dispatchEvent(new CompositionEvent("compositionend", {bubbles: true, data: "我的订单"}));
        box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", keyCode: 229, bubbles: true, cancelable: true}));
    }""")
    page.keyboard.type("到哪了")  # the customer goes on typing, and sends with an Enter of their own
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text(["我的订单到哪了"])

    page.locator("textarea").fill("שלום, איפה ההזמנה שלי?")
    assert page.locator("textarea").evaluate("(box) => getComputedStyle(box).direction") == "rtl"
    page.locator("textarea").press("Enter")
    hebrew = page.locator(".msg.user .bubble").last
    expect(hebrew).to_have_text("שלום, איפה ההזמנה שלי?")
    assert hebrew.evaluate("(bubble) => getComputedStyle(bubble).direction") == "rtl"

    console = chromium.browser.new_page()
    console.goto(f"{server.url}/agent?lang=constructor")
    expect(console.get_by_role("button", name="Sign in")).to_be_visible()
    console.close()


def test_an_enter_that_picks_an_input_methods_candidate_sends_nothing(open_widget: Any) -> None:
    """As Chromium's input method delivers it (pinyin typed, then Enter to take the candidate): the Enter's keydown
    comes while composing, and only the customer's next Enter sends the message."""
    widget = open_widget()
    page = widget.page
    page.locator("textarea").focus()
    cdp = page.context.new_cdp_session(page)
    for composed in ("wo de", "我的"):
        cdp.send("Input.imeSetComposition", {"text": composed, "selectionStart": len(composed),
                                              "selectionEnd": len(composed)})
    cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 229})
    cdp.send("Input.insertText", {"text": "我的"})  # the candidate taken
    cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13})
    page.wait_for_timeout(300)
    expect(page.locator(".msg.user")).to_have_count(0)
    expect(page.locator("textarea")).to_have_value("我的")
    page.keyboard.type("订单")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text(["我的订单"])


def test_a_bot_of_one_language_has_the_widget_speak_it(open_widget: Any, server: LiveServer) -> None:
    """A Chinese shop's bot (language: zh) on an English page showed its customers "Support" and "Type your
    message…"; a page's own choice still wins."""
    def speaking(page: Page, language: str, title: Any) -> None:
        page.route(f"{server.url}/api/widget", lambda route: route.fulfill(json={
            "title": title, "language": language, "max_message_chars": 4000, "readable": "\\S"}))
        page.reload()

    page = open_widget().page  # an English page
    speaking(page, "zh", None)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(page.locator("h2")).to_have_text("在线客服")
    expect(page.locator(".msg.bot .bubble")).to_have_text(["您好！请问有什么可以帮您？"])
    expect(page.get_by_role("button", name="关闭聊天").first).to_be_visible()
    speaking(page, "zh", {"en": "Help", "zh": "帮助"})
    expect(page.locator("h2")).to_have_text("帮助")
    chosen = open_widget(lang="en").page
    speaking(chosen, "zh", {"en": "Help", "zh": "帮助"})
    expect(chosen.locator("h2")).to_have_text("Help")
    expect(chosen.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    multi = open_widget(page_lang="zh-CN").page  # a bilingual bot: the page's language
    speaking(multi, "multi", None)
    expect(multi.locator("h2")).to_have_text("在线客服")


def test_a_chinese_customer_gets_the_fallback_and_its_buttons_in_chinese(open_widget: Any,
                                                                          web_demo_bot: SimpleNamespace) -> None:
    """The demo is bilingual: a Chinese message gets bot.yml's Chinese fallback and button titles, and
    the intent a button picks answers in Chinese too, though its payload is in no language. A first message
    in no language on a Chinese page is answered in Chinese: it was in English."""
    fallback = load_project(web_demo_bot.root).config.fallback
    first = open_widget(page_lang="zh-CN")
    first.send("？？")  # no words: asked to put it in words, in Chinese
    expect(first.bot_replies()).to_have_count(1)
    assert text_of(first.bot_replies().first.locator(".bubble")) == fallback.rephrase["zh"]
    widget = open_widget(page_lang="zh-CN")
    widget.send("我的包裹一直没到")
    expect(widget.bot_replies()).to_have_count(1)
    assert text_of(widget.bot_replies().first.locator(".bubble")) == fallback.message["zh"]
    titles = widget.page.locator(".quick button").all_text_contents()
    assert titles[-1] == fallback.human_button["zh"]
    assert titles[:-1] and all(re.search(r"[\u4e00-\u9fff]", title) for title in titles[:-1]), titles
    widget.page.locator(".quick button").first.click()
    expect(widget.bot_replies()).to_have_count(2)
    assert re.search(r"[\u4e00-\u9fff]", widget.bot_replies().last.locator(".bubble").inner_text())


def test_the_widgets_own_texts_follow_the_language_the_customer_writes_in(open_widget: Any) -> None:
    """A customer writing Chinese on an English page read the bilingual bot's Chinese answers under an English
    placeholder, Send and banners. The widget speaks the customer's language once they have written, on the site's
    next pages too, until a new conversation; a language the page fixed stays."""
    widget = open_widget()  # an English page
    page = widget.page
    widget.send("我的包裹一直没到")
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(widget.bot_replies().first.get_by_role("button", name="有帮助", exact=True)).to_be_visible()
    assert widget.bot_replies().first.locator(".bubble").get_attribute("lang") is None  # no longer the other language
    expect(page.locator(".msg.bot .bubble").first).to_have_attribute("lang", "en")  # the greeting, read in English
    page.reload()
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(page.get_by_role("button", name="关闭聊天").first).to_be_visible()
    widget.send("我的訂單在哪裡")  # in Traditional characters
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "請輸入您的問題…")
    widget.send("where is my parcel?")
    expect(widget.bot_replies()).to_have_count(3)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    widget.send("我的包裹一直没到")
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    page.evaluate("Deskbot.reset()")  # the next customer on a shared device: the page's language again
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    expect(page.locator(".msg.bot .bubble")).to_have_text(["Hi! How can I help you today?"])

    fixed = open_widget(lang="en")
    fixed.send("我的包裹一直没到")
    expect(fixed.bot_replies()).to_have_count(1)
    expect(fixed.page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")


def test_what_a_screen_reader_says_of_earlier_messages_follows_the_customers_language(open_widget: Any) -> None:
    """Once the widget took the customer's Chinese, the earlier messages' hidden "You:" and "Bot:", the earlier
    answers' thumbs and the thanks for a vote on one were still read out in English; the greeting stays as it was
    sent, marked as English."""
    widget = open_widget()  # an English page
    page = widget.page
    widget.send("where is my parcel?")
    expect(widget.bot_replies()).to_have_count(1)
    widget.bot_replies().first.get_by_role("button", name="Helpful", exact=True).click()
    expect(widget.bot_replies().first.locator(".thanks")).to_have_text("Thanks for your feedback!")
    widget.send("我的包裹一直没到")
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(widget.bot_replies().first.locator(".thanks")).to_have_text("感谢您的反馈！")  # its thanks too
    expect(page.locator(".msg.user > .sr")).to_have_text(["我: ", "我: "])
    bot_prefixes = page.locator(".msg.bot > .sr").all_text_contents()
    assert len(set(bot_prefixes)) == 1 and bot_prefixes[0] == f"{text_of(page.locator('h2'))}: ", bot_prefixes
    for reply in widget.bot_replies().all():
        expect(reply.get_by_role("group", name="这个回答有帮助吗？")).to_be_visible()
        expect(reply.get_by_role("button", name="有帮助", exact=True)).to_be_visible()
        expect(reply.get_by_role("button", name="没有帮助", exact=True)).to_be_visible()
    expect(page.locator(".msg.bot .bubble").first).to_have_attribute("lang", "en")  # the greeting, as it was sent

    widget.context.set_offline(True)  # a message not sent, then the customer's English again
    widget.send("anyone?")
    expect(page.locator(".status-line")).to_have_text("未发送。重试")
    widget.context.set_offline(False)
    widget.send("where is my parcel?")
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    expect(page.locator(".status-line")).to_have_text("Not sent.Retry")


def test_a_page_that_changes_its_language_without_a_reload_has_the_widget_follow(open_widget: Any) -> None:
    """A single-page app's language menu sets <html lang> without loading the page anew: the widget kept the
    language of the page it had loaded on. Once the customer has written, theirs stays; a fixed one stays too."""
    widget = open_widget()  # an English page
    page = widget.page
    page.evaluate("document.documentElement.lang = 'zh-TW'")
    expect(page.locator("textarea")).to_have_attribute("placeholder", "請輸入您的問題…")
    page.evaluate("document.documentElement.lang = 'zh-CN'")
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    widget.send("where is my parcel?")
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")  # the customer's English
    page.evaluate("document.documentElement.lang = 'zh-CN'")
    page.wait_for_timeout(200)
    expect(page.locator("textarea")).to_have_attribute("placeholder", "Type your message…")
    fixed = open_widget(lang="en").page
    fixed.evaluate("document.documentElement.lang = 'zh-CN'")
    fixed.wait_for_timeout(200)
    expect(fixed.locator("textarea")).to_have_attribute("placeholder", "Type your message…")


def test_demo_page_and_screenshot(chromium: SimpleNamespace, server: LiveServer) -> None:
    context = chromium.browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.goto(f"{server.url}/")
    expect(page.locator("h2")).to_have_text("Demo Shop support")  # the title from bot.yml, in the page's language
    page.locator("textarea").fill("How do refunds work?")
    page.locator("textarea").press("Enter")
    expect(page.locator(".quick button").first).to_be_visible()
    page.locator(".msg.bot[data-turn-id]").first.get_by_role("button", name="Helpful", exact=True).click()
    expect(page.locator(".thanks")).to_be_visible()
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "widget.png"))
    assert (RESULTS / "widget.png").stat().st_size > 10_000

    page.keyboard.press("Escape")  # closes, and focus goes back to the launcher
    expect(page.locator(".panel")).to_be_hidden()
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    expect(page.locator("textarea")).to_be_focused()
    expect(page.get_by_role("button", name="Close chat")).to_have_count(2)  # the header's and the launcher

    # Escape inside an input method's composition (pinyin being typed) cancels the composition, not the chat.
    page.context.new_cdp_session(page).send("Input.imeSetComposition", {"text": "wo de", "selectionStart": 5,
                                                                         "selectionEnd": 5})
    page.keyboard.press("Escape")
    expect(page.locator(".panel")).to_be_visible()

    # On a phone with its keyboard up, the choices scroll and the input stays in the panel.
    page.set_viewport_size({"width": 375, "height": 340})
    page.locator("textarea").fill("asdf qwer zxcv")
    page.locator("textarea").press("Enter")
    expect(page.locator(".quick button").first).to_be_visible()
    panel, box = page.locator(".panel").bounding_box(), page.locator("textarea").bounding_box()
    assert panel and box and box["y"] + box["height"] <= panel["y"] + panel["height"], (box, panel)

    # Deskbot.close() on a closed chat leaves the page's own focus alone.
    page.evaluate("Deskbot.close()")
    page.evaluate("document.body.append(Object.assign(document.createElement('input'), {id: 'search'}))")
    page.locator("#search").fill("shoes")
    page.evaluate("Deskbot.close()")
    expect(page.locator("#search")).to_be_focused()
    context.close()


def test_the_agents_console_finds_a_waiting_customer_answers_hands_back_and_takes_over(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    cid = f"console-{next(PAGE_NUMBERS)}"
    question = "<img src=x onerror=alert(1)>where is my parcel?"  # shown as the customer wrote it, never as markup
    api.chat(cid, question)
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    noticed: list[str] = []
    page.on("dialog", lambda dialog: (noticed.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: noticed.append(str(error)))
    page.goto(f"{server.url}/agent?lang=en")
    expect(page.get_by_role("listbox")).to_be_hidden()  # nothing before the token

    page.locator("#token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    page.locator("#token").fill("令牌")  # typed with a Chinese input method on: no header can carry it
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")  # it said "Cannot reach the bot."
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token")).to_be_hidden()
    waiting = page.locator(f'.list li[data-id="{cid}"]')
    expect(waiting.locator(".meta")).to_have_text(re.compile(r"^web · asked for a person · waiting 0 min$"))
    expect(waiting.locator(".preview")).to_have_text(question)
    expect(page).to_have_title(re.compile(r"^\(\d+\) deskbot · agents$"))  # customers waiting, counted in the tab's title
    waiting_before = int(page.title()[1:page.title().index(")")])
    expect(page.locator("header .figures")).to_contain_text(re.compile(r"^Today: \d+ conversations? · \d+ % kept by the bot"))

    expect(waiting).to_have_attribute("tabindex", re.compile(r"^(0|-1)$"))  # in the list's one Tab stop (arrow keys)
    waiting.press("Enter")  # from the keyboard
    expect(page.locator(".turn.user .text").first).to_have_text(question)
    expect(page.locator(".turn.user .meta").first).to_contain_text("Customer")
    page.get_by_role("button", name="Take over").click()  # nameless, it could not say whose the customer is
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill("Sam")
    page.get_by_role("button", name="Take over").click()  # a waiting customer nobody has: the others see whose
    expect(waiting.locator(".meta")).to_have_text("web · asked for a person · taken by Sam · waiting 0 min")
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Sam")
    expect(page.get_by_role("button", name="Take over")).to_be_hidden()
    page.locator("form.reply textarea").fill("Hi, this is Sam. Let me look.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["Hi, this is Sam. Let me look."])
    expect(waiting.locator(".meta")).to_have_text("web · asked for a person · taken by Sam · answered")  # for the others
    expect(page).to_have_title(f"({waiting_before - 1}) deskbot · agents" if waiting_before > 1 else "deskbot · agents")
    assert [(t["text"], t["author"]) for t in api.history(cid)["turns"] if t["role"] == "agent"] == [
        ("Hi, this is Sam. Let me look.", "Sam")]
    expect(page.locator(".turn.agent .meta")).to_contain_text(["Sam · Agent"])
    api.chat(cid, "thanks! is it insured?")  # what they wrote since the reply is counted for every agent
    expect(waiting.locator(".meta")).to_have_text("web · asked for a person · taken by Sam · waiting 0 min · 1 new")
    expect(page.locator(".turn.user .text").last).to_have_text("thanks! is it insured?")
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "agent.png"))

    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.get_by_role("button", name="Take over")).to_be_focused()  # the keyboard stays where the work is
    expect(waiting).to_have_count(0)
    assert api.history(cid)["status"] == "open"
    page.get_by_role("button", name="With the bot").click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    page.get_by_role("button", name="Take over").click()
    expect(page.locator("form.reply textarea")).to_be_focused()
    expect(page.get_by_role("button", name="Hand back to the bot")).to_be_visible()
    assert api.history(cid)["status"] == "handed_off"
    # who changed hands, and when, shows between the turns
    expect(page.locator(".turns .change")).to_have_text([
        re.compile(r"^Handed to a person · asked for a person · taken by Sam · \d"),
        re.compile(r"^Back with the bot · Sam · \d"), re.compile(r"^Handed to a person · taken by Sam · \d")])
    assert page.locator(".turns > *").last.get_attribute("class") == "change"  # the latest, after the agent's reply
    assert page.locator("img").count() == 0 and noticed == []

    page.get_by_role("button", name="Waiting").click()  # the tab a reload shows again
    page.goto(f"{server.url}/agent?lang=zh")  # the tab keeps its token: signed in at once, in Chinese
    expect(page.get_by_role("button", name="等待中")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f'.list li[data-id="{cid}"] .meta')).to_contain_text("已等待")
    expect(page.locator(f'.list li[data-id="{cid}"] .meta')).to_have_text(  # who took over, in Chinese too, said once
        re.compile(r"^web · Sam 已接手 · 已等待 \d+ 分钟$"))
    expect(page.locator("form.reply textarea")).to_have_attribute("aria-label", "回复")  # and what a screen reader says
    page.goto(f"{server.url}/agent?lang=zh-CN")  # with its region, as a browser's language has one: it was English
    expect(page.get_by_role("button", name="等待中")).to_be_visible()
    expect(page.get_by_role("button", name="机器人处理中")).to_be_visible()
    for tag in ("zh-HK", "zh-TW", "zh-Hant"):  # a Hong Kong or Taiwan agent's console: it was in Simplified characters
        page.goto(f"{server.url}/agent?lang={tag}")
        expect(page.get_by_role("button", name="機器人處理中")).to_be_visible()
        expect(page.locator(f'.list li[data-id="{cid}"] .meta')).to_have_text(
            re.compile(r"^web · Sam 已接手 · 已等待 \d+ 分鐘$"))
        assert page.evaluate("document.documentElement.lang") == "zh-Hant"
    # Every text of the English console in each language's: one missing threw where it was shown (the transcript's
    # name, a note's deletion, what the customer wrote said aloud, in Traditional characters).
    missing = page.evaluate("Object.fromEntries(Object.entries(STRINGS).map(([lang, texts]) => "
                            "[lang, Object.keys(STRINGS.en).filter((key) => !(key in texts))]))")
    assert missing == {"en": [], "zh": [], "zh-Hant": []}
    page.goto(f"{server.url}/agent?lang=zh-Hans-HK")  # Simplified characters asked for, in Hong Kong
    expect(page.get_by_role("button", name="机器人处理中")).to_be_visible()
    context.close()


def test_the_agents_console_in_traditional_characters_writes_only_what_differs_from_simplified(
        chromium: SimpleNamespace, server: LiveServer) -> None:
    """The console's Traditional table (zh-Hant) repeated every string of the Simplified one (zh), those written alike
    too (人工客服, 接管, 。): it holds what differs alone, and takes the rest from zh's, so that the two cannot drift
    apart; the console still has every string in Traditional characters."""
    context = chromium.browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=zh-HK")
    expect(page.locator("#token")).to_be_visible()
    tables = page.evaluate("""() => {
      const same = (a, b) => String(a) === String(b);
      const repeated = [];
      for (const [key, value] of Object.entries(ZH_HANT)) {
        if (typeof value === "object") {
          repeated.push(...Object.keys(value).filter((k) => same(value[k], STRINGS.zh[key][k])).map((k) => `${key}.${k}`));
        } else if (same(value, STRINGS.zh[key])) repeated.push(key);
      }
      const nested = (t) => Object.entries(t).flatMap(([k, v]) => (typeof v === "object" ? Object.keys(v).map((j) => `${k}.${j}`) : [k]));
      return { repeated, missing: nested(STRINGS.zh).filter((k) => !nested(STRINGS["zh-Hant"]).includes(k)),
               agents: STRINGS["zh-Hant"].agents, signIn: STRINGS["zh-Hant"].signIn, takenBy: T.takenBy("Sam") };
    }""")
    assert tables == {"repeated": [], "missing": [], "agents": "人工客服", "signIn": "登入", "takenBy": "Sam 已接手"}
    expect(page.get_by_role("button", name="登入")).to_be_visible()
    context.close()


@pytest.mark.parametrize(("lang", "sign_in", "not_a_colleague", "proxy", "gone"), [
    ("zh", "登录", r"^Zed 不在客服名单中：请从 .*Lee.* 中选择。$", "机器人暂时无法处理（HTTP 502）：请稍后再试。",
     "找不到会话 {}：它可能已被删除。"),
    ("zh-Hant", "登入", r"^Zed 不在客服名單中：請從 .*Lee.* 中選擇。$", "機器人暫時無法處理（HTTP 502）：請稍後再試。",
     "找不到會話 {}：它可能已被刪除。")])
def test_the_agents_console_in_chinese_says_what_the_bot_refused_in_chinese(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, sign_in: str, not_a_colleague: str, proxy: str, gone: str) -> None:
    """The Chinese consoles said a few refusals in Chinese, and the rest as the bot says them, in English: a colleague's
    name the bot does not know, a conversation gone, a proxy's error page. Each of the bot's error codes has its words
    in both, and a refusal without one is said by its status."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang={lang}")
    page.locator("#token").fill(web_demo_bot.agent_token)  # Kim's, who acts in her own name
    page.get_by_role("button", name=sign_in).click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    box = page.locator("form.reply textarea")
    assert box.get_attribute("maxlength") is None  # the bot says what is too long; the box keeps all that is typed
    box.fill("字" * 18_000)
    expect(page.locator("form.reply .left")).to_have_text("")  # far from it: nothing said
    box.fill("字" * 19_500)
    expect(page.get_by_role("status").filter(has_text="500")).to_have_text(
        {"zh": "还可输入 500 个字符", "zh-Hant": "還可輸入 500 個字元"}[lang])
    box.fill("")
    page.route("**/messages", lambda route: route.fulfill(status=400, json={
        "error": "text: String should have at most 20000 characters", "code": "text_too_long"}))
    box.fill("where is it?")
    page.locator("form.reply [type=submit]").click()
    expect(page.locator("header .status")).to_contain_text(
        {"zh": "内容超过 20000 个字符", "zh-Hant": "內容超過 20000 個字元"}[lang])
    page.unroute("**/messages")
    box.fill("")
    page.once("dialog", lambda dialog: dialog.accept("Zed"))
    page.locator(".transfer").click()
    expect(page.locator("header .status")).to_have_text(re.compile(not_a_colleague))
    page.route("**/handoff*", lambda route: route.fulfill(status=502, body="<h1>Bad Gateway</h1>", content_type="text/html"))
    page.locator(".takeover").click()  # a proxy's error page: no JSON, no code
    expect(page.locator("header .status")).to_have_text(proxy)
    page.evaluate("""() => sessionStorage.setItem("deskbot-shown",
                                                  JSON.stringify({ status: "handed_off", selected: "gone-for-good" }))""")
    page.reload()
    expect(page.locator("header .status")).to_have_text(gone.format("gone-for-good"))
    tables = page.evaluate("Object.fromEntries(['zh', 'zh-Hant'].map((l) => [l, Object.keys(STRINGS[l].errors).sort()]))")
    assert tables == {"zh": sorted(ERROR_CODES), "zh-Hant": sorted(ERROR_CODES)}
    sources = "".join((Path(__file__).resolve().parent.parent / path).read_text(encoding="utf-8")
                      for path in ("bot/server.py", "bot/channels/web.py", "dialogues/store.py"))
    given = set(re.findall(r'"code": "(\w+)"', sources)) | set(re.findall(r'\n    code = "(\w+)"', sources))
    assert {"held", "not_a_colleague", "store_unwritable"} <= given <= set(ERROR_CODES)
    context.close()


def test_the_agents_console_shows_what_the_customer_got_of_a_reply_sent_in_their_script(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A Hong Kong or Taiwan customer gets an agent's Simplified reply in Traditional characters
    (handoff.agent_script), and the console showed its agent their own words alone: it shows what the customer got
    under them, said by a screen reader with the reply, and nothing more where the customer got what was written."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    assert api.chat(cid, "/handoff", script="traditional")["handed_off"] is True  # a zh-TW page's customer
    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    page.get_by_label("Your name").fill("Li")
    for written in ("您好，请提供您的订单号。", "OK, thanks!"):
        page.locator("form.reply textarea").fill(written)
        page.locator("form.reply [type=submit]").click()
        expect(page.locator(".turn.agent .text").last).to_have_text(written)
    replies = page.locator(".turn.agent")
    expect(replies.first.locator(".sent")).to_have_text("The customer got: 您好，請提供您的訂單號。")
    expect(replies.last.locator(".sent")).to_have_count(0)  # in English: as written
    # text in the log, read with the reply it follows, not hidden from a screen reader
    assert page.evaluate("document.querySelector('.turn.agent .sent').closest('[aria-hidden=true]')") is None
    assert api.get(f"/admin/conversations/{cid}")["turns"][-2]["sent"] == "您好，請提供您的訂單號。"
    # and the customer's reloaded chat shows what they got: a reply sent with its key (as the console sends every
    # one) was stored without it, and a reload showed the customer the agent's Simplified characters
    assert [t["text"] for t in api.history(cid)["turns"] if t["role"] == "agent"] == ["您好，請提供您的訂單號。", "OK, thanks!"]
    context.close()


def test_the_agents_console_shows_the_chosen_transcript_only_and_keeps_a_reply_that_failed(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    first, second = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    for cid in (first, second):
        api.chat(cid, f"where is my parcel? ({cid})")
        assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    # The first conversation's transcript answers slowly, after the agent has already chosen the second.
    context.add_init_script(f"""{{
      const fetchNow = window.fetch;
      window.fetch = (url, init) => String(url).includes("admin/conversations/~?")
          && init.headers["X-Deskbot-Conversation"] === "{first}"
        ? new Promise((resolve) => setTimeout(resolve, 2000)).then(() => fetchNow(url, init)) : fetchNow(url, init);
    }}""")
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.locator(f'.list li[data-id="{first}"]').click()
    page.wait_for_timeout(300)
    page.locator(f'.list li[data-id="{second}"]').click()
    expect(page.locator(".conversation .title")).to_have_text(f"{second} · web")
    # each bot reply with the buttons it offered, which the agent's reply may go on from
    replies = [t for t in api.history(second)["turns"] if t["role"] == "bot"]
    assert any(t["buttons"] for t in replies)
    expect(page.locator(".turn.bot .text")).to_have_text(  # as it reads: the bot's text is drawn in paragraphs
        ["\n".join(filter(None, [t["text"], " ".join(f"[{b['title']}]" for b in t["buttons"])])) for t in replies],
        use_inner_text=True)
    page.wait_for_timeout(1900)  # the first one's answer has come, and was dropped
    assert page.locator(".conversation .title").inner_text() == f"{second} · web"  # the one the reply goes to
    page.get_by_label("Your name").fill("Sam")  # the reply makes the customer nobody has theirs, in a name
    page.locator("form.reply textarea").fill("For the second customer.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["For the second customer."])
    assert [t["text"] for t in api.history(second)["turns"] if t["role"] == "agent"] == ["For the second customer."]
    assert [t for t in api.history(first)["turns"] if t["role"] == "agent"] == []
    # The reply box keeps all that is typed or pasted: the bot counts characters, where maxlength counts UTF-16
    # units (an emoji is two), and says what is too long, where maxlength cut it short and sent the rest.
    page.locator("form.reply textarea").fill("😀" * 10_001)
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_count(2)
    assert api.history(second)["turns"][-1]["text"] == "😀" * 10_001
    page.locator("form.reply textarea").fill("x" * 20_001)
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_contain_text("20000 characters")
    expect(page.locator("form.reply textarea")).to_have_value("x" * 20_001)

    page.route("**/messages", lambda route: route.abort("internetdisconnected"))
    page.locator("form.reply textarea").fill("Will this arrive?")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    expect(page.locator(".status")).to_have_text("")  # a refresh reached the bot since
    expect(page.locator("form.reply textarea")).to_have_value("Will this arrive?")  # the reply is still there to send
    page.unroute("**/messages")
    # A reverse proxy's own error page is no JSON: its status is said, where nothing was
    page.route("**/messages", lambda route: route.fulfill(status=502, content_type="text/html",
                                                         body="<html><body>502 Bad Gateway</body></html>"))
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("HTTP 502 Bad Gateway")
    page.locator(f'.list li[data-id="{first}"]').click()  # why a reply to another failed is not said over this one
    expect(page.locator(".status")).to_have_text("")
    page.locator(f'.list li[data-id="{second}"]').click()
    expect(page.locator("form.reply textarea")).to_have_value("Will this arrive?")  # its draft is kept

    page.unroute("**/messages")
    page.route("**/admin/**", lambda route: route.abort("connectionrefused"))  # the bot restarting
    page.reload()
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    expect(page.locator("#token")).to_be_hidden()  # still signed in
    page.unroute("**/admin/**")
    expect(page.locator(f'.list li[data-id="{second}"]')).to_be_visible()  # and the inbox is back with the bot

    # Down, then back with another token (the agents' token revoked): the sign-in says the token was changed, not
    # that the agent typed a wrong one, and nothing says the bot is down.
    page.route("**/admin/**", lambda route: route.abort("connectionrefused"))
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    page.unroute("**/admin/**")
    page.route("**/admin/**", lambda route: route.fulfill(status=401, content_type="application/json",
                                                         body='{"error": "missing or wrong bearer token"}'))
    expect(page.get_by_role("alert")).to_have_text(
        "The bot no longer takes this token (it was changed): sign in with the current one.")
    expect(page.locator(".status")).to_have_text("")
    expect(page.locator("header .figures")).to_have_text("")
    page.unroute("**/admin/**")
    context.close()


def open_console(chromium: SimpleNamespace, server: LiveServer, admin_token: str, *waiting: str,
                 clock: bool = False) -> Any:
    """A browser context with the agents' console signed in, once each of ``waiting`` has asked for a person
    (with the button alone, in these tests: a typed message joins the review queue a later test reads).
    ``clock``: the page's clock held from the start (``page.clock``), through reloads too, so that it refreshes nothing
    of its own: a timer fires only as the test runs the clock, however long the machine takes between two steps."""
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    if clock:  # set on the context before its page: a page's clock, once installed, ran on until it was paused
        now = time.time()
        context.clock.install(time=now)
        context.clock.pause_at(now)
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(admin_token)
    page.get_by_role("button", name="Sign in").click()
    for cid in waiting:
        expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    if clock:  # the sign-in's refresh over: a refresh still out holds back the one the test runs the clock to
        wait_until(page, "state.refreshes > 0 && state.refreshing === 0")
    return context


@pytest.mark.parametrize("forced_colors", ["none", "active"])
def test_the_agents_consoles_pressed_buttons_are_seen_by_more_than_bold_text(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace, forced_colors: str) -> None:
    """In a contrast theme (forced colours), which takes the accent colour, the pressed tab and the pressed Note
    differed from the others by their bold text alone (WCAG 1.4.11): the theme's Highlight fills them there."""
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    page.emulate_media(forced_colors=forced_colors)
    looks = """(node) => { const s = getComputedStyle(node);
                           return [s.backgroundColor, s.borderTopColor, s.color, s.outlineStyle]; }"""
    pressed = page.locator('.tabs button[aria-pressed="true"]').evaluate(looks)
    other = page.locator('.tabs button[aria-pressed="false"]').first.evaluate(looks)
    assert pressed != other, (pressed, other)
    if forced_colors == "active":  # the theme's pair, whose contrast it makes sure of, not the page's accent
        highlight = page.evaluate("""() => { const probe = document.createElement("i");
                                             probe.style.color = "Highlight"; document.body.append(probe);
                                             const c = getComputedStyle(probe).color; probe.remove(); return c; }""")
        assert pressed[0] == highlight != other[0], (pressed, other, highlight)
    context.close()


def test_the_agents_consoles_list_is_one_stop_of_the_tab_key_gone_through_with_the_arrow_keys(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Each customer listed was a stop of the Tab key: an agent at the keyboard went through every one of them, up to
    200, to reach the transcript and the reply box. The list is one stop, its customers gone through with the arrow
    keys, as a listbox's options are."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{alice}"]').focus()
    page.keyboard.press("ArrowDown")
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".conversation .title")).to_have_text(f"{bob} · web")
    page.keyboard.press("ArrowUp")
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_focused()
    assert page.locator('.list li[role="option"][tabindex="0"]').count() == 1  # the one the keyboard is on
    expect(page.get_by_role("listbox", name="Waiting")).to_be_visible()  # named by its tab for a screen reader
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('role')") != "option"  # on past the list
    page.keyboard.press("Shift+Tab")
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_focused()  # back where the keyboard was
    page.get_by_role("button", name="With the bot").click()
    expect(page.get_by_role("listbox", name="With the bot")).to_be_visible()
    context.close()


def test_a_script_put_into_the_agents_console_does_not_run(chromium: SimpleNamespace, server: LiveServer,
                                                            web_demo_bot: SimpleNamespace) -> None:
    """The console keeps the admin token: a script that got into its page, however it did, ran with the page's
    rights and could read the token and send it anywhere. Its own script and style still run, and it signs in."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    with api_client(chromium, server.url, web_demo_bot.admin_token) as api:
        api.chat(cid, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    assert page.evaluate("getComputedStyle(document.querySelector('.console')).display") == "flex"  # its own style
    assert page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.ran = sessionStorage.getItem('deskbot-admin-token')";
        document.body.append(script);
        return window.ran === undefined;
    }""")
    context.close()


def test_a_handoff_notices_link_opens_its_customer_in_the_console_once_signed_in(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A handoff notice named the conversation by its id, a web customer's key to it, to everyone in the agents' room.
    It names a reference instead, and its link into the console opens the customer once the agent has signed in, in
    the tab that lists them, then leaves the address; the link of a conversation purged since says so."""
    waiting, chatting = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    api.chat(waiting, "/handoff")
    api.chat(chatting, "where is my parcel?")
    store = Store(web_demo_bot.root / "dialogues.db")
    refs = {cid: store.reference(cid) for cid in (waiting, chatting)}
    store.close()
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en#ref={refs[waiting]}")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    for cid, tab in ((waiting, "handed_off"), (chatting, "open")):
        if cid == chatting:  # a second notice's link, the console open already
            page.goto(f"{server.url}/agent?lang=en#ref={refs[chatting]}")
        expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web")
        expect(page.locator(f'.tabs [data-status="{tab}"]')).to_have_attribute("aria-pressed", "true")
        expect(page).to_have_url(f"{server.url}/agent?lang=en")
    page.goto(f"{server.url}/agent?lang=en#ref={'A' * 22}")
    expect(page.locator(".status")).to_contain_text("no conversation has this reference")
    context.close()


def test_the_agents_console_closes_a_conversation_deleted_while_it_was_shown(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A conversation purged while an agent had it open failed every refresh, read as the bot out of reach: the console
    asked less and less often, and a customer handed off after it was not listed for up to 30 s. It closes the
    conversation, says why, and goes on refreshing every 3 s."""
    gone, kept = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    api.chat(gone, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, gone, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{gone}"]').click()
    expect(page.locator(".conversation .title")).to_have_text(f"{gone} · web")
    page.locator("form.reply textarea").fill("Your refund is on its way.")
    store = Store(web_demo_bot.root / "dialogues.db")
    store.purge(gone)
    store.close()
    for _ in range(4):  # refreshes that, failing, were asked less and less often
        page.clock.run_for(3_100)
        wait_until(page, "state.refreshing === 0")
    expect(page.locator(".conversation")).to_be_hidden()
    expect(page.locator("header .status")).to_have_text(f"no conversation {gone!r}")
    # the reply being written is kept by the conversation's id, which a web customer coming back may use again
    assert page.evaluate("JSON.parse(sessionStorage.getItem('deskbot-drafts'))") == {gone: "Your refund is on its way."}
    api.chat(kept, "/handoff")
    page.clock.run_for(3_100)
    expect(page.locator(f'.list li[data-id="{kept}"]')).to_be_visible()
    expect(page.locator("header .status")).to_have_text(f"no conversation {gone!r}")  # said until the next action
    context.close()


def test_the_agents_console_names_its_customers_conversations_in_a_header_not_the_url(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The console read and answered a conversation at its id in the URL, every 3 s while it was open, and a web
    visitor's id is the key to their conversation: every proxy's access log on the way kept it, and whoever read the
    log could read the chat and write in it as the visitor. It names the conversation in a header, ~ in the path."""
    alice, _, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    asked: list[tuple[str, str | None]] = []
    page.on("request", lambda request: asked.append((request.url, request.headers.get("x-deskbot-conversation"))))
    page.locator(f'.list li[data-id="{alice}"]').click()
    expect(page.locator(".conversation .title")).to_have_text(f"{alice} · web")
    page.get_by_label("Your name").fill("Sam")
    page.get_by_role("button", name="Take over").click()
    page.locator("form.reply textarea").fill("Hi, this is Sam.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["Hi, this is Sam."])
    named = [url for url, header in asked if header == alice]
    assert any("/admin/conversations/~?" in url for url in named) and any(url.endswith("/~/messages") for url in named)
    assert not [url for url, _ in asked if alice in url], asked
    context.close()


def console_on_two_waiting_customers(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                     admin_token: str) -> tuple[str, str, Any]:
    """Alice and Bob, each having asked for a person, and the console listing them."""
    alice, bob = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    for cid in (alice, bob):
        api.chat(cid, "/handoff")
    return alice, bob, open_console(chromium, server, admin_token, alice, bob)


def test_a_refresh_leaves_the_list_of_many_waiting_customers_where_the_agent_scrolled_it(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The customer an agent clicked keeps the keyboard: each refresh, drawing the list anew, scrolled it back to them,
    and an agent looking down a long list of waiting customers was taken back up every 3 s."""
    waiting = [f"console-{next(PAGE_NUMBERS)}" for _ in range(30)]
    for cid in waiting:
        api.chat(cid, "/handoff")
    page, context = held_console(chromium, server, web_demo_bot.admin_token)
    clicked = page.locator(f'.list li[data-id="{waiting[0]}"]')
    clicked.click()
    wait_until(page, "state.refreshing === 0")  # the list drawn anew for the customer opened
    expect(clicked).to_be_focused()
    # the list scrolled by the mouse to its far end from the customer clicked, who is out of sight
    scrolled = clicked.evaluate("""item => { const list = item.parentElement;
      list.scrollTop = item.offsetTop - list.offsetTop > list.scrollHeight / 2 ? 0 : list.scrollHeight;
      return list.scrollTop; }""")
    assert clicked.evaluate("item => { const r = item.getBoundingClientRect(), l = item.parentElement.getBoundingClientRect();"
                            " return r.bottom <= l.top || r.top >= l.bottom; }")
    page.clock.run_for(3_000)
    wait_until(page, "state.refreshing === 0")
    assert page.locator(".list").evaluate("list => list.scrollTop") == scrolled
    expect(clicked).to_be_focused()  # the keyboard where it was
    context.close()


def agent_turns(api: SimpleNamespace, cid: str) -> list[str]:
    return [t["text"] for t in api.history(cid)["turns"] if t["role"] == "agent"]


def test_the_agents_console_shows_a_long_conversations_earlier_messages_when_asked(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The console showed a conversation's latest 200 turns and nothing of those before: the agent never
    learnt that what the customer first asked was not on screen."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "my first question, asked long ago")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    for n in range(200):
        api.admin(f"/admin/conversations/{cid}/messages", {"text": f"note {n}", "agent": "Sam"})
    assert api.get(f"/admin/conversations/{cid}")["earlier"] is True
    assert api.get(f"/admin/conversations/{cid}?limit=204")["earlier"] is False
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn")).to_have_count(200)
    expect(page.locator(".turn .text").last).to_have_text("note 199")
    assert page.locator(".turn.user").count() == 0
    page.get_by_role("button", name="Show earlier messages").focus()
    page.keyboard.press("Enter")  # from the keyboard
    expect(page.locator(".turn")).to_have_count(204)
    expect(page.locator(".turn.user .text").first).to_have_text("my first question, asked long ago")
    expect(page.get_by_role("button", name="Show earlier messages")).to_have_count(0)
    expect(page.locator(".turns")).to_be_focused()  # where the keyboard was, not the page itself
    page.wait_for_timeout(3500)  # the refresh keeps them
    expect(page.locator(".turn")).to_have_count(204)
    context.close()


FIRST_TURN_IN_SIGHT = """() => {
  const turns = document.querySelector(".turns"), top = turns.getBoundingClientRect().top;
  const row = [...turns.querySelectorAll("[data-turn-id]")].find((r) => r.getBoundingClientRect().bottom > top + 1);
  return [row.dataset.turnId, Math.round(row.getBoundingClientRect().top - top)];
}"""


def test_an_agent_reading_up_a_long_conversation_keeps_their_place_as_the_customer_writes(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent scrolled up a conversation of hundreds of turns to read what the customer asked before: each message
    the customer wrote moved what they read, the latest 200 shown moving up one turn, those above it left out."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    assert api.chat(cid, "/handoff")["handed_off"] is True
    for n in range(210):
        api.admin(f"/admin/conversations/{cid}/notes" if n % 50 == 0 else f"/admin/conversations/{cid}/messages",
                  {"text": f"line {n}\n" * (1 + n % 3), "agent": "Sam"})
    context = open_console(chromium, server, web_demo_bot.admin_token, cid, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn[data-turn-id]")).to_have_count(200)
    page.locator(".turns").evaluate("turns => { turns.scrollTop = turns.scrollHeight / 3; }")
    reading = page.evaluate(FIRST_TURN_IN_SIGHT)
    api.chat(cid, "are you still there?")
    page.clock.run_for(3_100)
    expect(page.locator(".turn.user .text").last).to_have_text("are you still there?")
    assert page.evaluate(FIRST_TURN_IN_SIGHT) == reading
    context.close()


def test_the_agents_console_reads_the_new_turns_alone_of_the_conversation_it_shows_and_all_of_it_every_30_s(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Each refresh read the conversation shown whole: 200 turns read, sent and drawn again every 3 s, by each console
    open on a long conversation, for the one its customer had just written. It asks for the turns after the latest one
    it shows (``after``), and reads it whole when it opens it, after its agent's own action, and every 30 s, for what
    changed in the turns shown (a message edited or deleted, a thumbs given)."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, web_demo_bot.admin_token, cid, clock=True)
    page = context.pages[0]
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url)
            if request.headers.get("x-deskbot-conversation") == cid and request.method == "GET" else None)
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn[data-turn-id]")).not_to_have_count(0)
    shown = api.get(f"/admin/conversations/{cid}")["turns"][-1]["id"]
    assert [parse_qs(urlsplit(url).query).get("after") for url in asked] == [None]
    api.chat(cid, "are you still there?")
    page.clock.run_for(3_100)
    expect(page.locator(".turn.user .text").last).to_have_text("are you still there?")
    expect(page.locator(".turn[data-turn-id]")).to_have_count(len(api.get(f"/admin/conversations/{cid}")["turns"]))
    assert parse_qs(urlsplit(asked[-1]).query)["after"] == [str(shown)]
    wait_until(page, "state.refreshing === 0")
    del asked[:]
    # A refresh skips the clock's ticks while one is out: the poll 30 s brings may have run early in them, so one more
    # tick after them reads what is then more than 30 s old.
    for _ in range(2):
        page.clock.run_for(30_000 if not asked else 3_100)
        wait_until(page, "state.refreshing === 0")
    assert [url for url in asked if "after" not in parse_qs(urlsplit(url).query)], asked  # read whole once in 30 s
    context.close()


def test_the_agents_console_polls_its_inbox_with_the_etag_of_the_answer_it_holds(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Each refresh read and sent the inbox's page again, every 3 s from every console, with nothing new in it. The
    console sends back the ETag of the answer it holds, and shows that answer again when the bot says it is unchanged
    (304, no body); what changed since comes whole."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, web_demo_bot.admin_token, cid, clock=True)
    page = context.pages[0]
    polls: list[tuple[int, str | None, str | None]] = []  # status, the ETag sent back, the ETag answered
    page.on("response", lambda response: polls.append(
        (response.status, response.request.headers.get("if-none-match"), response.headers.get("etag")))
        if "/admin/conversations?" in response.url and "status=handed_off" in response.url else None)
    for _ in range(3):  # another test's server may commit something of its own between two polls: one is unchanged
        page.clock.run_for(3_100)
        wait_until(page, "state.refreshing === 0")
        if polls[-1][0] == 304:
            break
    status, sent, answered = polls[-1]
    assert status == 304 and sent == answered, polls
    expect(page.locator(f'.list li[data-id="{cid}"] .preview')).to_have_text("where is my parcel?")
    api.chat(cid, "are you still there?")
    page.clock.run_for(3_100)
    expect(page.locator(f'.list li[data-id="{cid}"] .preview')).to_have_text("are you still there?")
    assert polls[-1][0] == 200 and polls[-1][1] == answered
    context.close()


def test_the_agents_console_dates_what_is_not_from_today_and_counts_long_waits_in_hours_and_days(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A customer waiting since yesterday read "waiting 1560 min", and their messages showed the time of day
    alone, as if written today."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800}, locale="en-US")
    page = context.new_page()
    page.clock.set_fixed_time(time.time() + 3 * 3600 + 60)
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    meta = page.locator(f'.list li[data-id="{cid}"] .meta')
    expect(meta).to_have_text("web · asked for a person · waiting 3 h")
    page.clock.set_fixed_time(time.time() + 26 * 3600)  # the next day
    expect(meta).to_have_text("web · asked for a person · waiting 1 d")
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.user .meta").first).to_have_text(re.compile(r"^Customer · \d{1,2}/\d{1,2}/\d{4}, "))
    expect(page.locator(".turns .change")).to_have_text([re.compile(r" · \d{1,2}/\d{1,2}/\d{4}, ")])
    page.clock.set_fixed_time(time.time())
    page.goto(f"{server.url}/agent?lang=zh")
    expect(page.locator(f'.list li[data-id="{cid}"] .meta')).to_have_text("web · 客户要求 · 已等待 0 分钟")
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.user .meta").first).not_to_contain_text("/")  # today's: the time alone
    context.close()


def console_on_a_waiting_customer(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                  admin_token: str) -> tuple[str, Any, Any]:
    """A customer who asked where their parcel is, then for a person, and the console showing their transcript,
    with no refresh of its own: what happens meanwhile is what its agent has not read."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, admin_token, cid, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    return cid, context, page


def clear_announcements(page: Any) -> None:
    """Empty what the console has announced (``.arrivals``), so that what a test expects there is what comes after."""
    page.locator(".arrivals").evaluate("said => { said.textContent = ''; }")


def asked_overriding_lee(page: Any, api: SimpleNamespace, cid: str, button: str) -> str:
    """What the console asks its agent, who clicks ``button`` on customer ``cid`` once Lee has taken them over (seen
    at the next refresh), before doing it anyway."""
    api.admin(f"/admin/conversations/{cid}/handoff", token="lee-own-token")
    page.clock.run_for(3_100)  # the next refresh
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_event("dialog") as asked:
        page.get_by_role("button", name=button).click()
    return str(asked.value.message)


def close_console(context: Any) -> None:
    """Close a console's context, its routes taken off first without waiting: a refresh may be out as it closes."""
    context.unroute_all(behavior="ignoreErrors")
    context.close()


def console_on_a_customer_with_the_bot(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                       admin_token: str, message: str) -> tuple[str, Any, Any]:
    """A customer who wrote ``message`` to the bot, and the console showing them from its "With the bot" tab."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, message)
    context = open_console(chromium, server, admin_token)
    page = context.pages[0]
    page.get_by_role("button", name="With the bot").click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    return cid, context, page


def test_a_chinese_console_in_an_english_browser_shows_its_times_in_chinese(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Times and dates followed the browser's language: a Chinese console (?lang=zh) in an English browser said
    "更新于 3:05:09 PM". They follow the console's language."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "hello")
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800}, locale="en-US")
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=zh")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="登录").click()
    page.get_by_role("button", name="机器人处理中").click()
    expect(page.locator(f'.list li[data-id="{cid}"] .meta')).to_have_text(re.compile(r"更新于 \d{1,2}:\d{2}:\d{2}$"))
    context.close()


def test_the_agents_console_shows_what_the_customer_said_was_wrong_with_a_reply(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    cid = f"console-{next(PAGE_NUMBERS)}"
    reply = api.chat(cid, "how long does a refund take?")
    api.admin("/api/feedback", {"conversation_id": cid, "turn_id": reply["turn_id"], "value": -1,
                                "comment": "it never said how long"})
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    page.get_by_role("button", name="With the bot").click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.bot .comment")).to_have_text("Customer's comment: it never said how long")
    context.close()


@pytest.mark.parametrize(("name", "said"), [("Sam", "a colleague (Ann) replied meanwhile"),
                                            ("Ann", "you (Ann) replied meanwhile from another window")])
def test_the_agents_console_holds_a_reply_back_until_a_colleagues_reply_is_read(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        name: str, said: str) -> None:
    """Two agents on one customer each sent their answer, and the customer read both; and so did one agent
    from two windows, told that the reply came from another window of theirs, not from a colleague."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Ann here: it is in Oslo.", "agent": "Ann"})
    page.get_by_label("Your name").fill(name)
    page.locator("form.reply textarea").fill("Sam here: let me look.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_contain_text(said)
    expect(page.locator(".turn.agent .text")).to_have_text(["Ann here: it is in Oslo."])  # shown to be read
    expect(page.locator("form.reply textarea")).to_have_value("Sam here: let me look.")  # kept to send, or not
    page.once("dialog", lambda dialog: dialog.accept())  # Ann has the customer: Sam sends it over that, once asked
    page.locator("form.reply textarea").press("Enter")  # read: it goes
    expect(page.locator(".turn.agent .text")).to_have_text(["Ann here: it is in Oslo.", "Sam here: let me look."])
    expect(page.locator("form.reply textarea")).to_have_value("")
    assert [t["text"] for t in api.history(cid)["turns"] if t["role"] == "agent"] == [
        "Ann here: it is in Oslo.", "Sam here: let me look."]
    context.close()


def test_the_agents_console_asks_before_a_reply_pulls_back_a_customer_who_went_back_to_the_bot(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A customer who left their agent for the bot ("Back to the bot") while the agent wrote to them: the agent's reply,
    sent as the console showed the customer's return, pulled them back to a person unasked. It goes once the agent
    confirms it; a reply to a customer an agent handed back is sent as before."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Sam")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Sam")
    page.locator("form.reply textarea").fill("Sam here: it is in Oslo.")
    assert api.chat(cid, "/resume")["handed_off"] is False  # the customer goes back to the bot meanwhile
    page.clock.run_for(3_100)  # the next refresh shows it
    expect(page.locator(".turns .change").last).to_contain_text("Back with the bot · Customer")
    # the web chat's button they pressed, by its title, not its payload "/resume", in sight and aloud
    expect(page.locator(".turn.user .text").last).to_have_text("[Back to the bot]")
    expect(page.locator(".arrivals")).to_have_text("Customer: [Back to the bot]")
    with page.expect_event("dialog") as asked:
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("form.reply textarea").press("Enter")
    assert asked.value.message == "The customer went back to the bot. Send your reply anyway? They become yours."
    expect(page.locator("form.reply textarea")).to_have_value("Sam here: it is in Oslo.")  # kept, not sent
    assert api.history(cid)["status"] == "open"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["Sam here: it is in Oslo."])
    assert api.history(cid)["status"] == "handed_off"
    page.get_by_role("button", name="Hand back to the bot").click()  # handed back by the agent: no question
    expect(page.locator(".turns .change").last).to_contain_text("Back with the bot · Sam")
    page.on("dialog", lambda dialog: pytest.fail(f"asked: {dialog.message}"))
    page.locator("form.reply textarea").fill("One more thing.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["Sam here: it is in Oslo.", "One more thing."])
    context.close()


def test_the_agents_console_asks_before_handing_back_or_answering_a_colleagues_customer(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Any agent handed a colleague's customer back to the bot, or answered them beside the colleague, with a click:
    the console names who has them and goes ahead only when the agent confirms it, as a lead standing in for them."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/handoff", token="lee-own-token")
    def dismiss(dialog: Any) -> None:
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.get_by_label("Your name").fill("")  # handed back by nobody, the transcript would say nobody did: the name first
    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill("Sam")
    with page.expect_event("dialog") as asked:
        page.get_by_role("button", name="Hand back to the bot").click()
    assert asked.value.message == "Lee has this customer. Hand them back to the bot anyway?"
    expect(page.locator(".status")).to_have_text("Lee has this customer.")
    assert api.history(cid)["status"] == "handed_off"
    page.get_by_label("Your name").fill("")  # a reply by nobody would leave the customer nobody's: the name first
    page.locator("form.reply textarea").fill("Sam here: let me look.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill("Sam")
    with page.expect_event("dialog") as asked:
        page.locator("form.reply textarea").press("Enter")
    assert asked.value.message == "Lee has this customer. Send your reply anyway? They become yours."
    expect(page.locator(".status")).to_have_text("Lee has this customer.")
    expect(page.locator("form.reply textarea")).to_have_value("Sam here: let me look.")
    assert agent_turns(api, cid) == []
    page.remove_listener("dialog", dismiss)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.get_by_role("button", name="Hand back to the bot")).to_be_hidden()  # with the bot again
    assert api.history(cid)["status"] == "open"
    context.close()


@pytest.mark.parametrize(("lang", "name", "take_over", "asked", "held"), [
    ("en", "Your name", "Take over", "Lee has this customer. Take them over anyway? They become yours.",
     "Lee has this customer."),
    ("zh", "您的名字", "接管", "Lee 正在接待这位客户。仍要接管吗？客户将转由您接待。", None)])
def test_the_agents_console_asks_before_taking_over_a_customer_a_colleague_took_first(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, name: str, take_over: str, asked: str, held: str | None) -> None:
    """Two agents taking one waiting customer over at once: the second's console went on as if the customer were
    theirs, until their reply was refused. It names the colleague, and takes the customer over only once the agent
    confirms it (``held``: what it says when they do not)."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.goto(f"{server.url}/agent?lang={lang}")  # the conversation shown again
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    api.admin(f"/admin/conversations/{cid}/handoff", token="lee-own-token")  # before this console's next refresh
    page.get_by_label(name).fill("Sam")
    page.once("dialog", lambda dialog: dialog.dismiss() if held else dialog.accept())
    with page.expect_event("dialog") as question:
        page.get_by_role("button", name=take_over).click()
    assert question.value.message == asked
    if held:
        expect(page.locator(".status")).to_have_text(held)
        expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
        expect(page.locator("form.reply textarea")).not_to_be_focused()
    else:
        expect(page.locator("form.reply textarea")).to_be_focused()
        # who had the customer stays in the transcript: Lee's takeover, then Sam's from him
        expect(page.locator(".turns .change")).to_have_text([re.compile(r"^已转人工 · 客户要求 · Lee 已接手 · "),
                                                             re.compile(r"^Sam 从 Lee 接手 · ")])
    assert api.get(f"/admin/conversations/{cid}")["agent"] == ("Lee" if held else "Sam")
    context.close()


def test_a_lead_takes_over_a_colleagues_customer_from_the_agents_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The console offered no Take over for a customer a colleague had: a lead standing in for an absent colleague
    could take them over only by replying. It is offered to anyone but the colleague (in any letter case), and asks
    first."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/handoff?agent=Ann")
    page.get_by_label("Your name").fill(" ann")
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Ann")
    expect(page.get_by_role("button", name="Take over")).to_be_hidden()  # hers
    page.get_by_label("Your name").fill("Lin")
    page.clock.run_for(3_100)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lin")
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^Lin took over from Ann · "))
    expect(page.get_by_role("button", name="Take over")).to_be_hidden()
    context.close()


def test_the_agents_console_in_chinese_says_in_chinese_what_came_first(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A Chinese agent whose reply or handback the bot refused, for a colleague's reply or the customer's message
    they had not read, was told why in English."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.goto(f"{server.url}/agent?lang=zh")  # the conversation shown again
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    wait_until(page, "state.refreshing === 0")  # the sign-in's refresh over: none reads what comes next
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Ann here: it is in Oslo.", "agent": "Ann"})
    page.get_by_label("您的名字").fill("小王")
    page.locator("form.reply textarea").fill("我来查一下。")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("同事（Ann）刚刚已回复：请先阅读，再重新发送您的回复。")
    api.chat(cid, "还在吗？")
    page.get_by_role("button", name="交还机器人").click()
    expect(page.locator(".status")).to_have_text("客户刚刚发来新消息：请先阅读并回复，或再次交还机器人。")
    context.close()


def test_the_agents_console_hands_back_only_once_the_customers_latest_message_is_read(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A message the customer sent as the agent handed back went unanswered by both the agent and the bot."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.chat(cid, "and can I change the address?")
    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.locator(".status")).to_contain_text("the customer wrote meanwhile")
    expect(page.locator(".turn.user .text").last).to_have_text("and can I change the address?")  # shown to be read
    assert api.history(cid)["status"] == "handed_off"
    page.get_by_role("button", name="Hand back to the bot").click()  # read: back it goes
    expect(page.get_by_role("button", name="Hand back to the bot")).to_be_hidden()  # with the bot again
    assert api.history(cid)["status"] == "open"
    context.close()


def test_the_agents_console_keeps_the_agents_name_through_a_reload_before_any_reply(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The name was kept with the agent's first reply only: reloaded after a takeover, the console had no name, and
    its agent's own customer was a colleague's to hand back."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ann")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Ann")
    page.reload()
    expect(page.get_by_label("Your name")).to_have_value("Ann")
    page.get_by_role("button", name="Hand back to the bot").click()  # hers: no question asked
    expect(page.get_by_role("button", name="Hand back to the bot")).to_be_hidden()  # with the bot again
    assert api.history(cid)["status"] == "open"
    context.close()


def test_enter_in_the_agents_name_sends_no_reply(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                                 web_demo_bot: SimpleNamespace) -> None:
    """An agent typing their name and pressing Enter sent the half-written reply in the box to the customer."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.locator("form.reply textarea").fill("Your parcel is in")
    page.get_by_label("Your name").fill("Ann")
    page.get_by_label("Your name").press("Enter")
    expect(page.locator("form.reply textarea")).to_be_focused()
    expect(page.locator("form.reply textarea")).to_have_value("Your parcel is in")
    assert agent_turns(api, cid) == []
    context.close()


def test_the_agents_console_sends_a_reply_once(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                              web_demo_bot: SimpleNamespace) -> None:
    """A second Enter or a double click while the reply was out sent it again; so did sending it again after
    the answer to the first try was lost: the customer read it twice."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web")
    page.get_by_label("Your name").fill("Sam")  # the reply makes the customer nobody has theirs, in a name
    sent: list[dict[str, Any]] = []

    def slowly(route: Route) -> None:  # a console 400 ms from the bot
        sent.append(route.request.post_data_json)
        page.wait_for_timeout(400)
        route.continue_()

    page.route("**/messages", slowly)
    box = page.locator("form.reply textarea")
    box.fill("It left our warehouse today.")
    box.press("Enter")
    box.press("Enter")
    expect(page.locator("form.reply [type=submit]")).to_be_disabled()
    expect(box).to_have_value("")
    box.fill("It arrives tomorrow.")
    page.get_by_role("button", name="Send").dblclick()
    expect(box).to_have_value("")
    page.wait_for_timeout(500)
    assert agent_turns(api, cid) == ["It left our warehouse today.", "It arrives tomorrow."]
    page.unroute("**/messages")

    def lost_on_the_way_back(route: Route) -> None:
        sent.append(route.request.post_data_json)
        route.fetch()
        route.abort("connectionreset")

    page.route("**/messages", lost_on_the_way_back)
    box.fill("Anything else?")
    box.press("Enter")
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    expect(box).to_have_value("Anything else?")  # to be sent again, as the agent cannot know it went out
    page.unroute("**/messages")
    page.route("**/messages", lambda route: (sent.append(route.request.post_data_json), route.continue_()))
    box.press("Enter")
    expect(box).to_have_value("")
    expect(page.locator(".status")).to_have_text("")
    assert agent_turns(api, cid) == ["It left our warehouse today.", "It arrives tomorrow.", "Anything else?"]
    assert [body["text"] for body in sent] == ["It left our warehouse today.", "It arrives tomorrow.", "Anything else?",
                                               "Anything else?"]
    assert len({body["key"] for body in sent}) == 3  # the same reply sent again goes with its key
    context.close()


def test_the_agents_console_does_not_offer_again_a_reply_that_may_have_reached_the_customer(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The bot's 504 (Slack or WeCom did not say whether it went out) kept the reply in the box to be sent
    again, and the customer read it twice."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    said = ("kept in the transcript; it may have reached the customer, whose platform did not say "
            "(chat.postMessage: HTTP 504): check before sending it again")
    page.route("**/messages", lambda route: route.fulfill(status=504, json={"error": said}))
    page.get_by_label("Your name").fill("Sam")  # the reply makes the customer nobody has theirs, in a name
    box = page.locator("form.reply textarea")
    box.fill("It left today.")
    box.press("Enter")
    expect(page.locator(".status")).to_have_text(said)
    expect(box).to_have_value("")
    page.wait_for_timeout(3500)  # a refresh later, it still says so
    expect(page.locator(".status")).to_have_text(said)
    context.close()


def test_each_conversation_in_the_agents_console_has_its_own_reply_box(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """One box for every conversation: a reply written for Alice, left while the agent glanced at Bob's
    conversation, went to Bob at the next Enter."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    box = page.locator("form.reply textarea")

    def open_(cid: str) -> None:
        page.locator(f'.list li[data-id="{cid}"]').click()
        expect(page.locator(".conversation .title")).to_have_text(re.compile(rf"^{re.escape(cid)} · web( · taken by Sam)?$"))

    open_(alice)
    page.get_by_label("Your name").fill("Sam")  # a reply makes the customer nobody has theirs, in a name
    box.fill("Alice, your refund for order 1001 goes to the card ending 4242.")
    open_(bob)
    expect(box).to_have_value("")
    box.press("Enter")
    box.fill("Bob, one moment please.")
    open_(alice)
    expect(box).to_have_value("Alice, your refund for order 1001 goes to the card ending 4242.")
    page.route("**/messages", lambda route: (page.wait_for_timeout(500), route.continue_()))
    box.press("Enter")
    open_(bob)  # while Alice's reply is out
    expect(box).to_have_value("Bob, one moment please.")
    page.wait_for_timeout(1000)
    expect(box).to_have_value("Bob, one moment please.")  # sent, Alice's reply empties her box, not Bob's
    assert agent_turns(api, alice) == ["Alice, your refund for order 1001 goes to the card ending 4242."]
    assert agent_turns(api, bob) == []
    page.get_by_role("button", name="With the bot").click()
    page.get_by_role("button", name="Waiting").click()
    open_(bob)
    expect(box).to_have_value("Bob, one moment please.")
    open_(alice)
    expect(box).to_have_value("")
    # One reply out held every other conversation's up: Send did nothing until it came back.
    page.unroute("**/messages")
    held: list[Route] = []
    page.route("**/messages", lambda route: held.append(route)
               if route.request.headers.get("x-deskbot-conversation") == alice else route.continue_())
    box.fill("Alice, anything else?")
    box.press("Enter")
    wait_until(page, "() => document.querySelector('form.reply [type=submit]').disabled")
    open_(bob)  # while Alice's reply is out
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    box.press("Enter")
    expect(box).to_have_value("")
    assert agent_turns(api, bob) == ["Bob, one moment please."]
    assert len(held) == 1
    held[0].continue_()
    open_(alice)
    expect(box).to_have_value("")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert agent_turns(api, alice)[-1] == "Alice, anything else?"
    context.close()


def test_the_replies_an_agent_is_writing_outlast_a_reload_of_the_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A reload of the console (stuck, or after an upgrade) lost every reply its agent was writing."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    box = page.locator("form.reply textarea")
    page.locator(f'.list li[data-id="{alice}"]').click()
    page.get_by_label("Your name").fill("Sam")  # a reply makes the customer nobody has theirs, in a name
    box.fill("Alice, your refund left today.")
    page.locator(f'.list li[data-id="{bob}"]').click()
    box.fill("Bob, one moment please.")
    page.reload()  # the tab keeps its token: signed in at once
    for cid, draft in ((alice, "Alice, your refund left today."), (bob, "Bob, one moment please.")):
        page.locator(f'.list li[data-id="{cid}"]').click()
        expect(box).to_have_value(draft)
    expect(page.locator(".conversation .title")).to_contain_text(bob)  # the box is hidden until the transcript comes
    box.press("Enter")  # Bob's goes; Alice's is still being written
    expect(page.locator(".turn.agent .text")).to_have_text(["Bob, one moment please."])
    page.reload()
    page.locator(f'.list li[data-id="{bob}"]').click()
    expect(page.locator(".turn.agent .text")).to_have_text(["Bob, one moment please."])
    expect(box).to_have_value("")
    page.locator(f'.list li[data-id="{alice}"]').click()
    expect(box).to_have_value("Alice, your refund left today.")
    context.close()


def test_a_reply_out_as_the_console_reloads_reaches_the_customer_once(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Reloaded while a reply was out, the console offered its draft again, and sent again it reached the customer
    twice: the reply's key went with the page."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    lost: list[Route] = []

    def answer_lost(route: Route) -> None:  # the bot gets the reply; its answer never comes back
        route.fetch()
        lost.append(route)

    page.route("**/messages", answer_lost)
    page.get_by_label("Your name").fill("Sam")  # the reply makes the customer nobody has theirs, in a name
    page.locator("form.reply textarea").fill("It left our warehouse today.")
    page.locator("form.reply textarea").press("Enter")
    for _ in range(50):
        if lost:
            break
        page.wait_for_timeout(100)
    assert agent_turns(api, cid) == ["It left our warehouse today."]
    page.reload()
    page.unroute("**/messages")
    expect(page.locator("form.reply textarea")).to_have_value("It left our warehouse today.")
    expect(page.locator(".turn.agent .text")).to_have_text(["It left our warehouse today."])  # shown again: sendable
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator("form.reply textarea")).to_have_value("")
    assert agent_turns(api, cid) == ["It left our warehouse today."]
    context.close()


def test_a_reload_of_the_console_shows_the_conversation_it_showed(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A reload mid-conversation showed the inbox alone: the agent had to find their customer, and the tab they were
    on, again."""
    cid, context, page = console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                            "where is my parcel?")
    page.locator("form.reply textarea").fill("Your parcel is in Oslo.")
    page.reload()
    expect(page.get_by_role("button", name="With the bot")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".turn.user .text")).to_have_text(["where is my parcel?"])
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_have_attribute("aria-selected", "true")
    expect(page.locator("form.reply textarea")).to_have_value("Your parcel is in Oslo.")
    page.get_by_label("Your name").fill("Ana")  # the reply takes the customer over from the bot, in a name
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".turn.agent .text")).to_have_text(["Your parcel is in Oslo."])
    context.close()


def test_the_agents_console_gives_up_a_request_nothing_answers(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A request held for good (a proxy, a dead keep-alive socket) stopped the console's refreshes for good:
    no customer who asked for a person since was shown, and nothing said anything was wrong."""
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    held: list[Route] = []
    page.route("**/admin/conversations?*", lambda route: held.append(route))  # the inbox, asked at each refresh
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.", timeout=25_000)
    assert held
    page.unroute("**/admin/conversations?*")
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(page.locator(".status")).to_have_text("")
    context.close()


def go_online(context: Any, page: Any) -> None:
    """The agent's network back: the browser offline a moment, then online."""
    context.set_offline(True)
    context.set_offline(False)


def back_on_the_tab(context: Any, page: Any) -> None:
    """The agent back on the console's tab (a headless page is always in sight: its change is told alone)."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


@pytest.mark.parametrize("wake", [go_online, back_on_the_tab])
def test_the_agents_console_back_online_refreshes_at_once_past_a_read_the_drop_left_hanging(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        wake: Any) -> None:
    """The network dropped under a refresh: its read hung on the dead connection, the refreshes waited for it, and the
    console, back online, showed no customer who came meanwhile until the read was given up 15 s later."""
    page, context = held_console(chromium, server, web_demo_bot.admin_token)
    hung: list[Route] = []  # the inbox read out as the network dropped, never answered; those after it go through
    page.route("**/admin/conversations?*", lambda route: route.fallback() if hung else hung.append(route))
    page.clock.run_for(3_000)
    wait_until(page, "state.refreshing === 1")
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    wake(context, page)
    wait_until(page, "state.refreshing === 0")  # the hung read given up, and the refresh after it made
    page.clock.run_for(3_000)  # and the next, should the browser have been online a moment after it said so
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(page.locator(".status")).to_have_text("")  # the read given up says nothing
    assert len(hung) == 1
    close_console(context)


def held_console(chromium: SimpleNamespace, server: LiveServer, token: str) -> tuple[Any, Any]:
    """A console signed in with ``token``, its first refresh made, whose clock runs only as the test runs it: a
    3-second refresh each time it runs the clock 3 s."""
    context = open_console(chromium, server, token, clock=True)
    page = context.pages[0]
    expect(page.locator(".figures")).not_to_have_text("")  # the first refresh made
    return page, context


def test_the_agents_console_asks_a_bot_out_of_reach_less_and_less_often(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Every console asked a restarting bot every 3 s; it waits twice as long after each try that fails, up to 30 s,
    and asks at once when the browser is back online."""
    page, context = held_console(chromium, server, web_demo_bot.admin_token)
    tried: list[int] = []  # the 3-second ticks of the page's clock at which the console asked
    clock = {"tick": 0}
    page.route("**/admin/conversations?*", lambda route: (tried.append(clock["tick"]), route.abort("connectionrefused")))
    for clock["tick"] in range(1, 31):
        page.clock.run_for(3_000)
        wait_until(page, "state.refreshing === 0")
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    assert [3 * (later - earlier) for earlier, later in itertools.pairwise(tried)] == [3, 6, 12, 24, 30]
    page.unroute("**/admin/conversations?*")
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    go_online(context, page)
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(page.locator(".status")).to_have_text("")
    close_console(context)


def test_the_agents_console_stops_saying_the_bot_is_out_of_reach_once_a_refresh_reaches_it(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A reply sent as the agent's network dropped said "Cannot reach the bot.", and went on saying it once the network
    was back, at every refresh, until the agent's next action: they took the bot for down while it answered."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Sam")
    context.set_offline(True)
    page.locator("form.reply textarea").fill("Let me look.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    page.clock.run_for(3_100)  # a refresh still offline: the bot is still out of reach
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    context.set_offline(False)
    page.clock.run_for(3_100)
    expect(page.locator(".status")).to_have_text("")
    expect(page.locator("form.reply textarea")).to_have_value("Let me look.")  # not sent: there to send again
    assert not [t for t in api.history(cid)["turns"] if t["role"] == "agent"]
    context.close()


def test_the_agents_console_asks_for_todays_figures_every_half_minute(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """It asked at each refresh, every 3 s: on a busy store one console's reads followed each other without
    a gap, and the store's log grew to 150 MB."""
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    expect(page.locator(".figures")).not_to_have_text("")  # asked for once, at the sign-in
    page.wait_for_timeout(300)
    asked.clear()
    page.wait_for_timeout(7_000)  # two refreshes or more
    assert sum("/admin/conversations?" in url for url in asked) >= 2
    assert not any("/admin/stats" in url for url in asked)
    context.close()


def test_an_agents_console_whose_token_is_not_granted_the_figures_lists_its_customers_without_them(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace) -> None:
    """An agent's token not granted stats is refused today's figures (403): the console's refresh stopped at that
    refusal, before it listed a customer, and showed it as an error, every half minute. It leaves the figures out."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script("""addEventListener("DOMContentLoaded", () => {
      const status = document.querySelector(".status");
      window.statusSaid = [];
      new MutationObserver(() => statusSaid.push(status.textContent))
        .observe(status, { childList: true, characterData: true, subtree: true });
    });""")
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill("lee-own-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    wait_until(page, "state.figuresAt > 0 && state.refreshing === 0")  # today's figures asked for, and answered
    expect(page.locator("header .figures")).to_have_text("")
    assert not any("needs the admin token" in said for said in page.evaluate("statusSaid"))
    context.close()


def test_the_agents_console_pages_through_more_customers_than_it_lists(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A tab listed its first 200 conversations and "and 4,800 more", with no way to them but a search: it pages through
    them, and keeps the page shown through a reload."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()

    waiting: list[int] = []

    def only_the_waiting_and_more(route: Any) -> None:
        """The first page holds only the waiting customers, and the inbox says 3 more wait past it."""
        inbox = whole_answer(route).json()
        shown = [c for c in inbox["conversations"] if c["waiting_since"] is not None]
        waiting.append(len(shown) + 3)
        route.fulfill(json={"conversations": shown, "total": len(shown) + 3, "waiting": len(shown) + 3,
                            "waiting_yours": len(shown) + 3})

    page.route(re.compile(r"/admin/conversations\?.*status=handed_off"), only_the_waiting_and_more)
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(page).to_have_title(f"({waiting[-1]}) deskbot · agents")  # those past the page counted too
    pager = page.locator(".pager")
    expect(pager).to_have_text(re.compile(rf"^Previous1–{waiting[-1] - 3} of {waiting[-1]}Next$"))
    expect(pager.get_by_role("button", name="Previous")).to_be_disabled()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    pager.get_by_role("button", name="Next").click()  # the page after the first 200 (the API's ?offset=)
    expect(page.locator(".pager").get_by_role("button", name="Previous")).to_be_enabled()
    assert any("status=handed_off" in url and "offset=200" in url for url in asked)
    page.reload()  # the page shown stays
    expect(page.locator(".pager").get_by_role("button", name="Previous")).to_be_enabled()
    page.get_by_role("button", name="With the bot").click()  # another tab starts at its first page
    expect(page.locator(".pager")).to_be_hidden()
    context.close()


def test_the_agents_consoles_listbox_holds_its_customers_alone_and_a_status_says_nobody_waits(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The list of customers, a listbox, held its Previous/Next row and its "Nobody is waiting." as items that were no
    options; and empty, it held nothing the keyboard reached: a screen reader's user never heard that nobody waited.
    The listbox holds the customers alone; the pages' buttons sit below it, and a status says the list is empty."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    nobody = {"waits": True}

    def waiting(route: Any) -> None:
        """Nobody waits, else the waiting customers and 3 more past the page."""
        inbox = whole_answer(route).json()
        shown = [] if nobody["waits"] else [c for c in inbox["conversations"] if c["waiting_since"] is not None]
        total = 0 if nobody["waits"] else len(shown) + 3
        route.fulfill(json={**inbox, "conversations": shown, "total": total, "waiting": total, "waiting_yours": total})

    page.route(re.compile(r"/admin/conversations\?.*status=handed_off"), waiting)
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status").filter(has_text="Nobody is waiting.")).to_be_visible()
    expect(page.locator(".list > *")).to_have_count(0)  # said beside the list box, not as an item of it
    nobody["waits"] = False
    page.get_by_role("button", name="With the bot").click()
    page.get_by_role("button", name="Waiting").click()
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Nobody is waiting.")).to_have_count(0)
    expect(page.get_by_role("button", name="Next")).to_be_enabled()
    expect(page.locator('.list > :not([role="option"])')).to_have_count(0)  # options alone in the listbox
    expect(page.get_by_role("listbox", name="Waiting").get_by_role("button")).to_have_count(0)
    context.close()


def test_the_agents_console_finds_a_customer_by_what_they_wrote(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The console listed a tab's first 200 conversations alone: a customer past them could not be found. Its search
    asks the bot for the conversations that hold what the agent types (in Chinese too, once the word is chosen), and
    keeps it through a reload."""
    api.chat(f"console-{next(PAGE_NUMBERS)}", "hello")
    cid, context, page = console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                            "我的订单 ZX-4411 还没到")
    expect(page.locator(".list li[data-id]").nth(1)).to_be_visible()  # other customers too
    page.get_by_label("Search conversations").fill("zx-4411")
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    expect(page.locator(".list li[data-id]")).to_have_attribute("data-id", cid)
    with page.expect_request(lambda request: request.headers.get("x-deskbot-search") == "%E8%AE%A2%E5%8D%95%20zx"):
        page.get_by_label("Search conversations").fill("订单 zx")
    expect(page.locator(".list li[data-id]")).to_have_attribute("data-id", cid)
    page.reload()
    expect(page.get_by_label("Search conversations")).to_have_value("订单 zx")
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    page.get_by_label("Search conversations").fill("nothing like it")
    expect(page.locator(".list li")).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="No conversation holds this.")).to_be_visible()
    context.close()


def test_a_search_that_finds_nobody_on_its_tab_says_how_many_the_other_tab_holds(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent looking for a customer on the waiting tab was told "No conversation holds this" of one with the bot, and
    took it that no such customer had written. The empty list says how many the other tab holds."""
    n = next(PAGE_NUMBERS)
    chatting, waiting = f"console-{n}", f"console-{next(PAGE_NUMBERS)}"
    api.chat(chatting, f"my order QX-{n} never came")
    api.chat(waiting, f"my voucher VQ-{n} is refused")
    api.chat(waiting, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, waiting)
    page = context.pages[0]
    page.get_by_label("Search conversations").fill(f"qx-{n}")
    expect(page.locator(".list li")).to_have_count(0)
    expect(page.locator(".empty")).to_have_text("No conversation here holds this; 1 in With the bot.")
    page.get_by_role("button", name="With the bot").click()
    expect(page.locator(".list li[data-id]")).to_have_attribute("data-id", chatting)
    page.get_by_label("Search conversations").fill(f"vq-{n}")
    expect(page.locator(".empty")).to_have_text("No conversation here holds this; 1 in Waiting.")
    page.get_by_label("Search conversations").fill(f"nothing like qx-{n}")
    expect(page.locator(".empty")).to_have_text("No conversation holds this.")
    page.get_by_label("Search conversations").fill(f"vq-{n}")
    page.goto(f"{server.url}/agent?lang=zh")  # the tab and the search kept through the reload
    expect(page.locator(".empty")).to_have_text("此处没有符合的会话；“等待中”中有 1 个。")
    context.close()


def test_the_agents_console_searches_for_a_word_chosen_from_an_input_method(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """As Chromium delivers pinyin typed and its candidate taken: every input event says isComposing, the last one too,
    and only compositionend follows. An agent searching for 退款 saw the whole list until they typed something else."""
    api.chat(f"console-{next(PAGE_NUMBERS)}", "hello")
    cid, context, page = console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                            "我想申请退款，订单 QX-5521")
    expect(page.locator(".list li[data-id]").nth(1)).to_be_visible()
    page.get_by_label("Search conversations").focus()
    cdp = page.context.new_cdp_session(page)
    with page.expect_request(lambda request: request.headers.get("x-deskbot-search") == quote("申请退款")):
        for composed in ("shen qing tui kuan", "申请退款"):
            cdp.send("Input.imeSetComposition", {"text": composed, "selectionStart": len(composed),
                                                  "selectionEnd": len(composed)})
        cdp.send("Input.insertText", {"text": "申请退款"})  # the candidate taken
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    expect(page.locator(".list li[data-id]")).to_have_attribute("data-id", cid)
    context.close()


def test_the_agents_console_searches_the_conversations_with_the_bot_every_half_minute(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A search of the conversations with the bot reads each of their messages, seconds on a large store, on the one
    thread that reads every console's inbox: asked again at each 3-second refresh, a few agents searching held up
    every console."""
    cid, context, page = console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                            "my order QK-7 is late")
    asked: list[tuple[str, str | None]] = []
    page.on("request", lambda request: asked.append((request.url, request.headers.get("x-deskbot-search"))))
    page.get_by_label("Search conversations").fill("qk-7")
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    expect(page.locator(".list li[data-id]")).to_have_attribute("data-id", cid)
    page.wait_for_timeout(7_000)  # two refreshes or more
    searches = [url for url, search in asked if search == "qk-7"]
    assert len(searches) == 1 and "status=open" in searches[0]
    assert not any("qk-7" in url for url, _ in asked)  # out of the URL, which the access logs keep
    assert sum("/admin/conversations?" in url for url, _ in asked) >= 3  # the waiting count, at each refresh
    context.close()


def test_an_agent_releases_their_customer_to_the_waiting_from_the_agents_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent ending a shift could only hand a customer back to the bot or leave them marked as theirs: released,
    the customer waits for anyone, and the transcript says who released them; a colleague's, only once asked, and
    then whose they were: "Ana released the customer" read as Lee's own release."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    expect(page.get_by_role("button", name="Release to the queue")).to_be_hidden()  # nobody's yet
    page.get_by_role("button", name="Take over").click()
    page.get_by_role("button", name="Release to the queue").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web")
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^Ana released the customer · "))
    expect(page.get_by_role("button", name="Release to the queue")).to_be_hidden()
    transcript = api.get(f"/admin/conversations/{cid}")
    assert transcript["status"] == "handed_off" and transcript["agent"] is None
    asked = asked_overriding_lee(page, api, cid, "Release to the queue")
    assert asked == "Lee has this customer. Release them to the queue anyway?"
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^Ana released Lee's customer · "))
    assert api.get(f"/admin/conversations/{cid}")["agent"] is None
    context.close()


def test_the_agents_console_never_asks_its_agent_about_their_own_release_made_with_the_admin_token(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Lee, who has a token of his own, releasing his customer from a console signed in with the admin token, is kept
    as the admin's release, which his inbox names in taken: his console left it unsaid for the refresh after it alone,
    and his takeover of the customer then asked "admin released your customer to the queue. Take them over again?",
    as it did after a reload."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    page.get_by_role("button", name="Release to the queue").click()
    expect(page.get_by_role("button", name="Release to the queue")).to_be_hidden()
    assert api.get(f"/admin/conversations/{cid}")["agent"] is None
    said: list[str] = []
    page.on("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    for _ in range(2):
        page.clock.run_for(3_100)  # the next refresh
        wait_until(page, "state.refreshing === 0")
    page.reload()
    page.locator(f'.list li[data-id="{cid}"]').click()
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    assert said == []
    expect(page.locator(".status")).not_to_contain_text("released your customer")
    context.close()


def a_timed_refresh_held(context: Any, page: Any) -> tuple[Any, list[int]]:
    """The console's next timed refresh (its timers held by ``page.clock``) made, its inbox read by the server now but
    answered to the console only when the function returned is called: a refresh out as the agent acts. The inboxes
    the later refreshes read pass, counted in the list returned (for :func:`refreshed`)."""
    held: list[tuple[Any, Any]] = []
    inboxes: list[int] = []

    def inbox(route: Any) -> None:
        inboxes.append(1)
        if len(inboxes) == 1:
            held.append((route, route.fetch()))
        else:
            route.fallback()
    context.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), inbox)
    page.clock.run_for(3_100)
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the console did not refresh"
        page.wait_for_timeout(50)

    def answer() -> None:
        route, response = held[0]
        route.fulfill(response=response)
        wait_until(page, "state.refreshing === 0")
    return answer, inboxes


def test_the_agents_console_never_asks_its_agent_about_their_own_release_made_as_a_refresh_was_out(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Lee's release with the admin token, kept as the admin's, ended as a timed refresh was out: its inbox, read
    before the release, named none, and his console forgot the release was his own. From the refresh after, his
    takeover of the customer asked "admin released your customer to the queue. Take them over again?"."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    wait_until(page, "state.refreshing === 0")
    clear_announcements(page)  # Lee's releases in this module's tests
    answer, inboxes = a_timed_refresh_held(context, page)  # read before the release, answered after it
    page.get_by_role("button", name="Release to the queue").click()
    expect(page.get_by_role("button", name="Release to the queue")).to_be_hidden()
    wait_until(page, "state.refreshing === 1")  # the release's own refresh done, the timed one still out
    assert api.get(f"/admin/conversations/{cid}")["agent"] is None
    answer()
    refreshed(page, inboxes)  # the refresh after
    said: list[str] = []
    page.on("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    assert said == []
    expect(page.locator(".status")).not_to_contain_text("released your customer")
    expect(page.locator(".arrivals")).not_to_contain_text("released your customer")
    close_console(context)


def test_release_all_made_as_a_refresh_was_out_is_never_told_back_to_its_agent(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Lee's Release all of his customers with the admin token, kept as the admin's, ended as a timed refresh was out:
    its inbox, read before the release, named none of them, and the refresh after said "admin released your customer
    to the queue" of his own release."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    page.get_by_label("Mine only").check()
    expect(page.get_by_role("button", name="Release all")).to_be_visible()
    wait_until(page, "state.refreshing === 0")
    clear_announcements(page)  # Lee's releases in this module's tests
    answer, inboxes = a_timed_refresh_held(context, page)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Release all").click()
    expect(page.locator(".status")).to_contain_text("released to the queue.")
    wait_until(page, "state.refreshing === 1")  # the release's own refresh done, the timed one still out
    assert api.get(f"/admin/conversations/{cid}")["agent"] is None
    answer()
    refreshed(page, inboxes)  # the refresh after
    expect(page.locator(".arrivals")).not_to_contain_text("released your customer")
    expect(page.locator(".status")).not_to_contain_text("released your customer")
    close_console(context)


def test_the_agents_own_release_is_kept_from_them_when_a_colleague_signs_in_on_the_same_browser(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The releases Lee made with the admin token were kept for the browser alone: Kim, at the same desk, signed in by
    her name, and her console dropped them, as moves her inbox did not name. Back at his desk, Lee was told "admin
    released your customer to the queue" of his own release, and asked it again at his takeover."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    page.get_by_role("button", name="Release to the queue").click()
    expect(page.get_by_role("button", name="Release to the queue")).to_be_hidden()
    wait_until(page, "state.refreshing === 0")
    clear_announcements(page)  # Lee's releases in this module's tests
    answered = inbox_saying(context, {})
    for name in ("Kim", "Lee"):
        page.get_by_label("Your name").fill(name)
        refreshed(page, answered)
    said: list[str] = []
    page.on("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    assert said == []
    expect(page.locator(".arrivals")).not_to_contain_text("released your customer")
    close_console(context)


def test_what_the_agents_console_told_its_agent_is_not_told_again_after_a_colleague_used_the_same_browser(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The customers passed to Lee that he had opened, and his customers a lead moved that his console had told him of,
    were kept for the browser alone: Kim, at the same desk, signed in by her name, and her console dropped them, as
    none of her inbox's. Back at his desk, Lee was told again "Ana released your customer to the queue", and "Kim passed
    you a customer" showed again in his header, of a customer he had opened."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.clock.run_for(3_100)  # Lee's inbox read once: what it holds is known
    wait_until(page, "state.refreshing === 0")
    released = {"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None, "handed_back": False,
                "at": time.time()}
    lees = {"taken": [released], "passed": [{"conversation_id": cid, "by": "Kim", "at": time.time()}]}
    answered: list[dict[str, Any]] = []

    def inbox(route: Any) -> None:
        response = whole_answer(route)
        agent = parse_qs(urlsplit(route.request.url).query).get("agent")
        news = lees if agent == ["Lee"] else {"taken": [], "passed": []}
        route.fulfill(response=response, json={**response.json(), **news})
        answered.append(news)
    context.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), inbox)
    refreshed(page, answered)
    expect(page.locator(".arrivals")).to_contain_text("Ana released your customer to the queue")
    expect(page.locator("header .passed")).to_be_hidden()  # opened: shown as it came
    page.get_by_role("button", name="With the bot").click()
    clear_announcements(page)  # said already
    for name in ("Kim", "Lee"):
        page.get_by_role("button", name="Waiting").click()
        page.locator(f'.list li[data-id="{cid}"]').click()
        page.get_by_label("Your name").fill(name)
        page.get_by_role("button", name="With the bot").click()
        refreshed(page, answered)
    expect(page.locator("header .passed")).to_be_hidden()
    expect(page.locator(".arrivals")).not_to_contain_text("released your customer")
    expect(page.locator(".arrivals")).not_to_contain_text("passed you")
    close_console(context)


def test_the_agents_console_says_whose_customer_a_lead_handed_back_to_the_bot(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A lead handing Lee's customer back to the bot showed as "Back with the bot · Ana", as if the customer had been
    Ana's own: the transcript names Lee too."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    asked = asked_overriding_lee(page, api, cid, "Hand back to the bot")
    assert asked == "Lee has this customer. Hand them back to the bot anyway?"
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^Ana handed Lee's customer back to the bot · "))
    assert api.history(cid)["status"] == "open"
    context.close()


def test_an_agent_passes_their_customer_to_a_named_colleague_from_the_agents_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Signed in with an agent's own token, the console could not make a customer a colleague's: it takes over in its
    agent's name alone. Passed on by the colleague's name, the customer is theirs, and the transcript says who did it."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.agent_token)
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Kim")
    page.once("dialog", lambda dialog: dialog.accept("Lee"))
    page.get_by_role("button", name="Pass to a colleague").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^Kim passed the customer to Lee · "))
    assert api.get(f"/admin/conversations/{cid}")["agent"] == "Lee"
    context.close()


def test_the_agents_console_tells_its_agent_of_a_customer_a_colleague_passed_them(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A customer Kim passed to Lee appeared in Lee's inbox among the others, on whatever tab or page his console had
    open, and waited unnoticed. His console says so in its title and header, and marks them in the list, until he
    opens them; not again after a reload."""
    cid, kims, kim = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.agent_token)
    before = len(api.get("/admin/conversations?agent=Lee&limit=0")["passed"])  # this module's earlier tests' passes
    titled = lambda passed: re.compile(rf"^\[{passed} passed to you\] \(\d+\) deskbot" if passed else r"^\(\d+\) deskbot")
    lees = open_console(chromium, server, "lee-own-token", cid)
    lee = lees.pages[0]
    expect(lee).to_have_title(titled(before))
    lee.get_by_role("button", name="With the bot").click()
    clear_announcements(lee)  # earlier passes, said already
    kim.get_by_role("button", name="Take over").click()
    kim.once("dialog", lambda dialog: dialog.accept("Lee"))
    kim.get_by_role("button", name="Pass to a colleague").click()
    expect(kim.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    expect(kim.locator("header .passed")).to_be_hidden()  # Kim's console tells Kim nothing
    expect(lee).to_have_title(titled(before + 1))
    # and nothing else of Lee's: a customer of this module's earlier tests may come to wait meanwhile, and is counted
    expect(lee.locator(".arrivals")).to_have_text(re.compile(r"^Kim passed you a customer( · \d+ customers? waiting)?$"))
    lee.get_by_role("button", name="Waiting").click()
    expect(lee.locator(f'.list li[data-id="{cid}"].passed .meta')).to_contain_text("Kim passed you a customer · web")
    lee.get_by_role("button", name="With the bot").click()
    lee.get_by_role("button", name=re.compile(r"^Kim passed you a customer( \(\+\d+\))?: open$")).click()
    expect(lee.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    expect(lee.get_by_role("button", name="Waiting")).to_have_attribute("aria-pressed", "true")
    expect(lee).to_have_title(titled(before))
    expect(lee.locator(f'.list li[data-id="{cid}"]')).not_to_have_class(re.compile("passed"))
    lee.reload()
    expect(lee.locator(f'.list li[data-id="{cid}"]')).to_be_visible()
    expect(lee.locator(f'.list li[data-id="{cid}"]')).not_to_have_class(re.compile("passed"))
    expect(lee).to_have_title(titled(before))
    kims.close()
    lees.close()


def test_a_customer_passed_to_an_agent_and_opened_is_not_announced_again_in_another_browser(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Lee opened the customer Kim passed him, then signed in in another browser (another desk, a private window): that
    console announced the pass again, "[1 passed to you]" and "Kim passed you a customer: open", as what he had opened
    was kept in the first browser alone. The bot keeps it, and names the pass no more."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    for path in ("handoff", "transfer?to=Lee"):
        api.admin(f"/admin/conversations/{cid}/{path}", token=web_demo_bot.agent_token)  # Kim's
    first = open_console(chromium, server, "lee-own-token", cid)
    lee = first.pages[0]
    expect(lee.locator(f'.list li[data-id="{cid}"].passed .meta')).to_contain_text("Kim passed you a customer · web")
    with lee.expect_response(lambda response: "/~/seen?" in response.url and response.ok
                             and response.request.headers.get("x-deskbot-conversation") == cid):
        lee.locator(f'.list li[data-id="{cid}"]').click()
    first.close()
    others = len(api.get("/admin/conversations?agent=Lee&limit=0")["passed"])  # this module's earlier tests' passes
    second = open_console(chromium, server, "lee-own-token", cid)
    again = second.pages[0]
    expect(again.locator(f'.list li[data-id="{cid}"]')).not_to_have_class(re.compile("passed"))
    expect(again).to_have_title(re.compile(rf"^\[{others} passed to you\] " if others else r"^(?!\[)"))
    assert again.locator("header .passed").get_attribute("data-id") != cid
    second.close()


def test_the_keyboard_goes_on_to_the_reply_box_of_a_passed_customer_opened_from_the_header(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace) -> None:
    """Lee opened the customer Kim passed him with Enter on "Kim passed you a customer: open": the button, gone once
    the customer was shown, left the keyboard on the page itself, and Lee had to tab his way back to the reply box."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    context = open_console(chromium, server, "lee-own-token", cid, clock=True)
    page = context.pages[0]
    answered = inbox_saying(context, {"passed": [{"conversation_id": cid, "by": "Kim", "at": time.time()}]})
    refreshed(page, answered)
    page.get_by_role("button", name=re.compile(r"^Kim passed you a customer( \(\+\d+\))?: open$")).focus()
    page.keyboard.press("Enter")
    expect(page.locator(".conversation .title")).to_contain_text(cid)
    expect(page.locator("header .passed")).to_be_hidden()
    expect(page.locator("form.reply textarea")).to_be_focused()
    close_console(context)


def test_the_agents_console_knows_its_agents_customer_whichever_form_of_an_accent_their_name_was_typed_in(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """José took a customer over on one computer, whose keyboard sent his name's accent whole (NFC), and opened them
    on another, which sent it apart (NFD): the bot reads both as one agent, the console read them as two, and
    offered him to take his own customer over."""
    whole, apart = "Jos\u00e9", "Jose\u0301"
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/handoff?agent={quote(whole)}")
    page.get_by_label("Your name").fill(apart)
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by {whole}")
    expect(page.get_by_role("button", name="Take over")).to_be_hidden()
    context.close()


@pytest.mark.parametrize(("kept", "typed", "theirs"), [("Straße", "STRASSE", True), ("ẞirin", "ssirin", True),
                                                    ("Işık", "ISIK", False)])
def test_the_agents_console_knows_its_agents_customer_in_any_letter_case_as_the_bot_folds_it(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        kept: str, typed: str, theirs: bool) -> None:
    """The bot reads "Straße" and "STRASSE" as one agent (casefolded); the console lowercased names alone, read them as
    two, and offered the agent to take their own customer over. Names the bot reads as two (the Turkish dotless "ı")
    stay two."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/handoff?agent={quote(kept)}")
    page.get_by_label("Your name").fill(typed)
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by {kept}")
    take_over = page.get_by_role("button", name="Take over")
    expect(take_over).to_be_hidden() if theirs else expect(take_over).to_be_visible()
    listed = api.get(f"/admin/conversations?status=handed_off&holder={quote(typed)}")["conversations"]
    assert (cid in [c["conversation_id"] for c in listed]) is theirs  # as the bot reads the two names
    context.close()


def test_the_agents_console_tells_its_agent_of_a_customer_a_lead_moved_to_a_colleague(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A lead passing Lee's customer to Kim told Lee nothing: his next reply was refused, and the console asked "Kim has
    this customer. Send your reply anyway?", which undid the lead's move, as his reply to a customer a lead released, or
    handed back to the bot, took them back unasked. His console says who moved, released or handed back the customer,
    and asks with that said."""
    cid, context, lee = console_on_a_waiting_customer(chromium, server, api, "lee-own-token")
    lee.get_by_role("button", name="Take over").click()
    expect(lee.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    api.admin(f"/admin/conversations/{cid}/transfer?agent=Ana&to=Kim&force=true")
    lee.clock.run_for(3_100)  # the next refresh
    expect(lee.locator(".arrivals")).to_have_text("Ana passed your customer to Kim")
    expect(lee.locator(".status")).to_have_text("Ana passed your customer to Kim")
    lee.locator("form.reply textarea").fill("Lee here: let me look.")
    with lee.expect_event("dialog") as asked:
        lee.locator("form.reply textarea").press("Enter")
    assert asked.value.message == ("Ana passed your customer to Kim. Kim has this customer. Send your reply anyway? "
                                   "They become yours.")
    asked.value.dismiss()
    assert api.get(f"/admin/conversations/{cid}")["agent"] == "Kim"
    api.admin(f"/admin/conversations/{cid}/transfer?agent=Ana&to=Lee&force=true")
    api.admin(f"/admin/conversations/{cid}/release?agent=Ana&force=true")  # his reply would take them back unasked
    lee.clock.run_for(3_100)
    expect(lee.locator(".status")).to_have_text("Ana released your customer to the queue")
    said: list[str] = []  # nobody's: his reply would take them back, undoing Ana's release
    lee.once("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    lee.locator("form.reply textarea").press("Enter")
    assert said == ["Ana released your customer to the queue. Send your reply anyway? They become yours again."]
    assert api.get(f"/admin/conversations/{cid}")["agent"] is None
    api.admin(f"/admin/conversations/{cid}/handoff", token="lee-own-token")
    api.admin(f"/admin/conversations/{cid}/handback?agent=Ana&force=true")  # as would one with the bot
    lee.clock.run_for(3_100)
    expect(lee.locator(".status")).to_have_text("Ana handed your customer back to the bot")
    lee.once("dialog", lambda dialog: (said.append(dialog.message), dialog.accept()))
    lee.get_by_role("button", name="Take over").click()
    expect(lee.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Lee")
    assert said[1:] == ["Ana handed your customer back to the bot. Take them over again?"]
    context.close()


def test_a_new_name_in_the_agents_console_drops_the_last_agents_news_at_once(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Two agents at one browser, by turns: until a refresh read Bob's inbox after he typed his name over Lee's, the
    header still offered the customer Kim passed Lee, and Bob's reply to a customer Ana moved from Lee to Kim asked
    with "Ana passed your customer to Kim" in the question, Lee's news."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    passed = f"console-{next(PAGE_NUMBERS)}"
    api.chat(passed, "/handoff")
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Lee")
    api.admin(f"/admin/conversations/{cid}/transfer?agent=Ana&to=Kim&force=true")
    api.admin(f"/admin/conversations/{passed}/transfer?agent=Kim&to=Lee&force=true")
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".status")).to_have_text("Ana passed your customer to Kim")
    expect(page.locator("header .passed")).to_be_visible()
    # Bob's inbox unread meanwhile (a refresh that fails, or is still out): what the console knew was Lee's alone
    page.route(re.compile(r"/admin/conversations\?.*\bagent=Bob\b"), lambda route: route.abort())
    page.get_by_label("Your name").fill("Bob")
    assert not page.locator("header .passed").is_visible()  # at once, not at a refresh
    page.locator("form.reply textarea").fill("Bob here: let me look.")
    with page.expect_event("dialog") as asked:
        page.locator("form.reply textarea").press("Enter")
    assert asked.value.message == "Kim has this customer. Send your reply anyway? They become yours."
    asked.value.dismiss()
    assert api.get(f"/admin/conversations/{cid}")["agent"] == "Kim"
    context.close()


def test_a_new_name_in_the_agents_console_does_not_announce_its_waiting_customers_as_newcomers(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Bob, typing his name over Lee's at a shared desk, was told "3 customers waiting" by a screen reader: his own
    customers and nobody's, counted against Lee's one, as if two had just started to wait."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    counts = {"Lee": 1, "Bob": 3}
    answered: list[str] = []

    def inbox(route: Any) -> None:
        response = whole_answer(route)
        agent = parse_qs(urlsplit(route.request.url).query).get("agent", [""])[0]
        route.fulfill(response=response, json={**response.json(), "waiting_yours": counts.get(agent, 0)})
        answered.append(agent)
    context.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), inbox)
    page.get_by_label("Your name").fill("Lee")
    refreshed(page, answered)
    clear_announcements(page)
    page.get_by_label("Your name").fill("Bob")
    refreshed(page, answered)
    expect(page).to_have_title(waiting_titled(3))
    expect(page.locator(".arrivals")).to_have_text("")
    counts["Bob"] = 4  # one more starts to wait
    refreshed(page, answered)
    expect(page.locator(".arrivals")).to_have_text("4 customers waiting")
    close_console(context)


def test_a_name_typed_in_the_agents_console_keeps_nothing_for_its_letters_typed_first(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Each refresh while an agent typed their name kept what the console keeps per name for the name half typed and
    for none ("deskbot-taken-told:le", "deskbot-passed-seen:"), in the browser for good. The name typed in full keeps
    what it has to keep: the customer passed to Lee, seen."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.admin(f"/admin/conversations/{cid}/transfer?agent=Kim&to=Lee&force=true")
    name = page.get_by_label("Your name")
    for letter in "Lee":
        name.press_sequentially(letter)
        page.clock.run_for(3_100)  # a refresh while the name is typed
        wait_until(page, "state.refreshing === 0")
    kept = page.evaluate("Object.keys(localStorage).filter((key) => /^deskbot-(passed-seen|taken-told|moved-here):/"
                         ".test(key))")
    assert {key.partition(":")[2] for key in kept} == {"lee"}
    assert cid in json.loads(page.evaluate('localStorage.getItem("deskbot-passed-seen:lee")'))  # shown, so seen
    context.close()


def lees_customer_released_by_ana(api: SimpleNamespace) -> str:
    """A customer Lee took over and Ana, a lead, released to the queue: a move in the inbox's ``taken`` for Lee."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    api.admin(f"/admin/conversations/{cid}/handoff", token="lee-own-token")
    api.admin(f"/admin/conversations/{cid}/release?agent=Ana&force=true")
    return cid


def test_a_browser_new_to_an_agent_tells_them_only_of_the_moves_made_since_it_opened(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace) -> None:
    """Lee, signing in on a browser he had never used, was told as news the moves a lead had made of his customers up to
    a day before ("Ana released your customer to the queue (+3)"). What his inbox holds as the console opens is known;
    a move made after it is told, and so is one made while the console was closed, once it had opened there."""
    before = lees_customer_released_by_ana(api)
    assert before in [t["conversation_id"] for t in api.get("/admin/conversations?agent=Lee&limit=0")["taken"]]
    context = open_console(chromium, server, "lee-own-token", before, clock=True)
    page = context.pages[0]
    wait_until(page, "state.refreshing === 0")
    expect(page.locator(".arrivals")).not_to_contain_text("your customer")
    expect(page.locator(".status")).to_have_text("")
    # one move, not (+1), with what else the refresh said (a customer passed to Lee in an earlier test, in a new tab)
    told = re.compile(r"^(.* · )?Ana released your customer to the queue( · \d+ customers? waiting)?$")
    lees_customer_released_by_ana(api)
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".arrivals")).to_have_text(told)
    page.close()
    lees_customer_released_by_ana(api)  # while the console is closed
    page = sign_in_again(context, server, "lee-own-token")
    expect(page.locator(".arrivals")).to_have_text(told)
    context.close()


def sign_in_again(context: Any, server: LiveServer, token: str) -> Any:
    """A new tab of ``context``'s browser, its console signed in with ``token`` (the tab's token is its own)."""
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_an_agent_with_a_token_of_their_own_is_told_of_a_move_made_while_their_console_was_closed(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """Kim, signed in with her own token, had no customer moved by anyone while her console was open: nothing was kept
    for her name, and a lead's release of her customer while it was closed was taken as known when it opened again."""
    context = open_console(chromium, server, web_demo_bot.agent_token, clock=True)
    page = context.pages[0]
    news: dict[str, Any] = {"taken": []}
    answered = inbox_saying(context, news)
    refreshed(page, answered)
    page.close()
    news["taken"] = [{"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None, "handed_back": False,
                      "at": time.time()}]
    page = sign_in_again(context, server, web_demo_bot.agent_token)
    expect(page.locator(".arrivals")).to_contain_text("Ana released your customer to the queue")
    close_console(context)


def test_what_the_agents_console_kept_for_the_browser_alone_becomes_its_agents_and_is_gone(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """What deskbot kept for the browser before it kept it per agent's name was read as a start for every name that had
    none of its own, for good: Kim, at Lee's desk, had Lee's customers seen, and was never shown the one passed to
    her. It is moved once to the name the browser kept, Lee's, and taken away."""
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    passed = {"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "at": time.time()}
    seen = json.dumps({passed["conversation_id"]: passed["at"]})
    page.evaluate("([seen]) => { localStorage.setItem('deskbot-agent-name', 'Lee');"
                  "localStorage.setItem('deskbot-passed-seen', seen); localStorage.setItem('deskbot-taken-told', '{}'); }",
                  [seen])
    page.close()
    inbox_saying(context, {"taken": [], "passed": [passed]})
    page = sign_in_again(context, server, web_demo_bot.admin_token)
    expect(page.get_by_label("Your name")).to_have_value("Lee")
    wait_until(page, "state.refreshes > 0 && state.refreshing === 0")
    assert page.evaluate("[localStorage.getItem('deskbot-passed-seen'), localStorage.getItem('deskbot-taken-told')]") \
        == [None, None]
    assert json.loads(page.evaluate("localStorage.getItem('deskbot-passed-seen:lee')")) == json.loads(seen)
    expect(page.locator("header .passed")).to_be_hidden()  # seen by Lee
    page = sign_in_again(context, server, web_demo_bot.agent_token)  # Kim, at Lee's desk
    expect(page.get_by_label("Your name")).to_have_value("Kim")
    expect(page.locator("header .passed")).to_have_text("Ana passed you a customer: open")
    close_console(context)


def test_a_new_name_in_the_agents_console_takes_the_last_agents_passed_marks_off_the_list_at_once(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Lee's "Kim passed you a customer" stayed on the list after Bob typed his name over Lee's, until a refresh drew
    it again; and where a refresh was out as he typed it, Bob's own marks waited for the refresh after."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    passed = f"console-{next(PAGE_NUMBERS)}"
    api.chat(passed, "/handoff")
    news = {"Lee": "Kim", "Bob": "Ana"}
    answered: list[str] = []

    def inbox(route: Any) -> None:
        response = whole_answer(route)
        agent = parse_qs(urlsplit(route.request.url).query).get("agent", [""])[0]
        by = news.get(agent)
        route.fulfill(response=response, json={**response.json(), "taken": [], "passed": [
            {"conversation_id": passed, "by": by, "at": time.time()}] if by else []})
        answered.append(agent)
    context.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), inbox)
    page.get_by_label("Your name").fill("Lee")
    refreshed(page, answered)
    mark = page.locator(f'.list li[data-id="{passed}"].passed .meta')
    expect(mark).to_contain_text("Kim passed you a customer · web")
    answer, _ = a_timed_refresh_held(context, page)  # Lee's inbox, read as he gives the desk to Bob
    page.get_by_label("Your name").fill("Bob")
    expect(page.locator(".list li.passed")).to_have_count(0)
    expect(page.locator(f'.list li[data-id="{passed}"] .meta')).not_to_contain_text("passed you")
    answer()
    expect(mark).to_contain_text("Ana passed you a customer · web")  # read for Bob at once, the clock held
    close_console(context)


def test_a_handback_the_agents_console_made_with_the_admin_token_is_not_told_back_to_it_as_a_leads(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Made with the admin token in the name of Lee, who has a token of his own, Lee's handback is kept as the admin's,
    and his inbox names it among the customers taken from him: his own console said "admin handed your customer back
    to the bot" of what he had just done."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Lee")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Lee")
    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.locator(".turns .change").last).to_have_text(re.compile(r"^admin handed Lee's customer back to the bot"))
    page.clock.run_for(3_100)  # the refresh after
    taken = api.get("/admin/conversations?agent=Lee&limit=0")["taken"]
    assert [(t["conversation_id"], t["handed_back"]) for t in taken][:1] == [(cid, True)]
    expect(page.locator(".status")).to_have_text("")
    expect(page.locator(".arrivals")).not_to_contain_text("admin handed")
    context.close()


@pytest.mark.parametrize(("lang", "name", "mode", "add", "said", "delete"), [
    ("en", "Your name", "Note", "Add note", "Internal note, for agents only", "Delete note"),
    ("zh", "您的名字", "备注", "添加备注", "内部备注，仅客服可见", "删除备注")])
def test_the_agents_console_keeps_a_note_for_the_agents_alone(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, name: str, mode: str, add: str, said: str, delete: str) -> None:
    """An agent had only replies, which the customer reads, to tell a colleague what they knew of the customer. In note
    mode the Enter that sends a reply keeps the note instead (its box says so), and sends nothing. Note mode stays
    through a reload (it fell back to replies, and the next note went to the customer), and its author alone is
    offered to delete a note."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.goto(f"{server.url}/agent?lang={lang}")  # the conversation shown again
    page.get_by_label(name).fill("小王")
    page.get_by_role("button", name=mode, exact=True).click()
    expect(page.locator("form.reply [type=submit]")).to_have_text(add)
    page.get_by_label(said).fill("客户已电话确认退款")
    page.get_by_label(said).press("Enter")
    expect(page.locator(".turn.note .text")).to_have_text(["客户已电话确认退款"])
    expect(page.locator(".turn.note .meta")).to_have_text([re.compile(f"^{said} · 小王 · ")])
    expect(page.locator("form.reply textarea")).to_have_value("")
    assert "客户已电话确认退款" not in [t["text"] for t in api.history(cid)["turns"]]  # nothing sent
    page.reload()
    expect(page.locator("form.reply [type=submit]")).to_have_text(add)
    expect(page.get_by_role("button", name=mode, exact=True)).to_have_attribute("aria-pressed", "true")
    page.get_by_label(name).fill("小李")  # a colleague
    page.clock.run_for(3_100)  # the next refresh draws the transcript for the name
    expect(page.get_by_role("button", name=delete)).to_have_count(0)
    page.get_by_label(name).fill("小王")
    page.clock.run_for(3_100)
    page.once("dialog", lambda dialog: dialog.accept())  # asked first
    page.get_by_role("button", name=delete).click()
    expect(page.locator(".turn.note")).to_have_count(0)
    assert api.get(f"/admin/conversations/{cid}")["notes"] == []
    page.get_by_role("button", name=mode, exact=True).click()  # replies again
    expect(page.locator("form.reply [type=submit]")).not_to_have_text(add)
    context.close()


def test_a_note_added_again_after_its_answer_was_lost_is_kept_once(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A note kept whose answer was lost on the way back stayed in the box, as the agent cannot know it was kept, and
    Add note pressed again kept it a second time: it goes again with its key, and is kept once."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    page.get_by_role("button", name="Note", exact=True).click()
    sent: list[dict[str, Any]] = []

    def lost_on_the_way_back(route: Route) -> None:
        sent.append(route.request.post_data_json)
        route.fetch()
        route.abort("connectionreset")

    page.route("**/notes", lost_on_the_way_back)
    box = page.locator("form.reply textarea")
    box.fill("Refund promised by phone.")
    box.press("Enter")
    expect(page.locator(".status")).to_have_text("Cannot reach the bot.")
    expect(box).to_have_value("Refund promised by phone.")
    page.unroute("**/notes")
    page.route("**/notes", lambda route: (sent.append(route.request.post_data_json), route.continue_()))
    page.get_by_role("button", name="Add note").click()
    expect(box).to_have_value("")
    assert [n["text"] for n in api.get(f"/admin/conversations/{cid}")["notes"]] == ["Refund promised by phone."]
    assert [body["text"] for body in sent] == ["Refund promised by phone."] * 2
    assert len({body["key"] for body in sent}) == 1  # the same note added again goes with its key
    box.fill("Refund promised by phone.")  # the same words again, a note of their own
    box.press("Enter")
    expect(box).to_have_value("")
    assert [n["text"] for n in api.get(f"/admin/conversations/{cid}")["notes"]] == ["Refund promised by phone."] * 2
    assert len({body["key"] for body in sent}) == 2
    context.close()


def test_the_agents_console_corrects_its_agents_note_in_place(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A slip in a note could only be deleted and written again, below the turns since. Its author edits it in the
    note box, the reply being written comes back after, and the note says it was edited."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    page.get_by_label("Reply").fill("Hello, I am looking into it")
    api.admin(f"/admin/conversations/{cid}/notes", {"text": "Refund promised.", "agent": "Ana"})
    page.reload()  # the console shows the note, and keeps the reply being written
    page.get_by_role("button", name="Edit note").click()
    box = page.get_by_label("Internal note, for agents only")
    expect(box).to_have_value("Refund promised.")
    expect(page.locator("form.reply [type=submit]")).to_have_text("Save note")
    box.fill("Refund of 20 EUR promised.")
    box.press("Enter")
    expect(page.locator(".turn.note .text")).to_have_text(["Refund of 20 EUR promised."])
    expect(page.locator(".turn.note .meta")).to_contain_text([" · edited "])
    expect(page.get_by_label("Internal note, for agents only")).to_have_value("Hello, I am looking into it")
    expect(page.locator("form.reply [type=submit]")).to_have_text("Add note")
    [note] = api.get(f"/admin/conversations/{cid}")["notes"]
    assert note["text"] == "Refund of 20 EUR promised." and note["edited"] is not None
    page.get_by_label("Your name").fill("Bob")  # a colleague
    page.clock.run_for(3_100)  # the next refresh draws the transcript for the name
    expect(page.get_by_role("button", name="Edit note")).to_have_count(0)
    context.close()


def test_a_note_deleted_while_it_is_corrected_leaves_the_note_box_to_its_draft(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent correcting a note who chose to delete it instead was left with its text in the box and Save note,
    which the bot refused as a note not found. Deleted, the box holds what it held before, to add a note."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    page.get_by_label("Reply").fill("Hello, I am looking into it")
    api.admin(f"/admin/conversations/{cid}/notes", {"text": "Refund promised.", "agent": "Ana"})
    page.reload()
    page.get_by_role("button", name="Edit note").click()
    expect(page.locator("form.reply [type=submit]")).to_have_text("Save note")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete note").click()
    expect(page.locator(".turn.note")).to_have_count(0)
    expect(page.locator("form.reply [type=submit]")).to_have_text("Add note")
    expect(page.get_by_label("Internal note, for agents only")).to_have_value("Hello, I am looking into it")
    context.close()


def test_the_keyboard_stays_on_a_notes_button_as_the_customer_writes_and_goes_on_to_the_transcript_once_it_is_gone(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent at the keyboard on a note's Edit button lost their place at each message the customer wrote: the
    transcript, drawn anew, left the keyboard on the page itself, and they tabbed their way back from the top."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.get_by_label("Your name").fill("Ana")
    for text in ("Refund promised.", "Called the courier."):
        api.admin(f"/admin/conversations/{cid}/notes", {"text": text, "agent": "Ana"})
    page.clock.run_for(3_100)  # the next refresh shows them
    expect(page.locator(".turn.note .text")).to_have_text(["Refund promised.", "Called the courier."])
    edit = page.locator(".turn.note", has_text="Called the courier.").get_by_role("button", name="Edit note")
    edit.focus()
    api.chat(cid, "any news?")
    page.clock.run_for(3_100)
    expect(page.locator(".turn.user .text").last).to_have_text("any news?")
    expect(edit).to_be_focused()
    page.keyboard.press("Shift+Tab")  # on to its Delete
    page.once("dialog", lambda dialog: dialog.accept())  # asked first
    page.keyboard.press("Enter")
    expect(page.locator(".turn.note .text")).to_have_text(["Refund promised."])
    expect(page.locator(".turns")).to_be_focused()  # the note gone, the transcript itself: not the page
    context.close()


def chromium_role_and_name(page: Any, selector: str) -> tuple[str, str]:
    """The role and the accessible name Chromium gives the element ``selector`` finds, from its accessibility tree (as
    a screen reader hears them)."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    found = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    node = cdp.send("Accessibility.getPartialAXTree", {"nodeId": found, "fetchRelatives": False})["nodes"][0]
    cdp.detach()
    return node["role"]["value"], node.get("name", {}).get("value", "")


@pytest.mark.parametrize(("lang", "messages"), [("en", "Messages: "), ("zh", "消息：")])
def test_a_screen_reader_names_the_transcript_by_its_conversation(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, messages: str) -> None:
    """The transcript, a stop of the Tab key between the colleague's buttons and the reply box, had no name: a screen
    reader said nothing of what the agent had come to, whichever customer it was. It is a log named by its conversation,
    read as the agent moves through it, and not read out whole each time it is drawn anew."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.goto(f"{server.url}/agent?lang={lang}")  # the conversation shown again
    expect(page.locator(".turn.user .text").first).to_have_text("where is my parcel?")
    assert chromium_role_and_name(page, ".turns") == ("log", f"{messages}{cid} · web")
    expect(page.locator(".turns")).to_have_attribute("aria-live", "off")
    context.close()


@pytest.mark.parametrize(("lang", "asked"), [("en", "Delete this note for every agent? Refund promised."),
                                             ("zh", "要为所有客服删除这条备注吗？Refund promised.")])
def test_the_agents_console_asks_before_deleting_a_note(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, asked: str) -> None:
    """A note's × deleted it at once, for every colleague, at a slip of the mouse or of the keyboard's Enter: the console
    asks first, as it does before Release all, quoting the note, and keeps it unless the agent confirms."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    page.locator("form.reply .name").fill("Ana")  # kept through the reload
    api.admin(f"/admin/conversations/{cid}/notes", {"text": "Refund promised.", "agent": "Ana"})
    page.goto(f"{server.url}/agent?lang={lang}")  # the conversation shown again, with the note
    delete = page.locator(".turn.note .delete")
    said: list[str] = []
    page.once("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    delete.click()
    assert said == [asked]
    expect(page.locator(".turn.note .text")).to_have_text(["Refund promised."])
    assert [n["text"] for n in api.get(f"/admin/conversations/{cid}")["notes"]] == ["Refund promised."]
    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(page.locator(".turn.note")).to_have_count(0)
    assert api.get(f"/admin/conversations/{cid}")["notes"] == []
    context.close()


def test_the_agents_console_shows_a_button_the_customer_pressed_by_its_title(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A button the customer pressed reaches the bot as its payload: the console showed, and said aloud, "/handoff" or
    "/track_order", where the customer's chat showed the title they pressed. It shows the title, in brackets as the
    bot's buttons are, with the payload beside what the bot made of it; words typed stay as typed."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    customer = page.locator(".turn.user")
    expect(customer.locator(".text")).to_have_text(["where is my parcel?", "[Talk to a person]"])
    expect(customer.nth(1).locator(".meta")).to_contain_text("/handoff")
    api.chat(cid, "/track_order")  # pressed under the bot's first answer, while an agent has them
    page.clock.run_for(3_100)  # the next refresh
    expect(customer.locator(".text").last).to_have_text("[Track order]")
    expect(page.locator(".arrivals")).to_have_text("Customer: [Track order]")
    context.close()


def test_a_screen_reader_hears_what_the_customer_writes_in_the_conversation_open(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent at a screen reader, writing a reply, heard nothing of the customer's next message: it came into the
    transcript unsaid, and their reply answered what the customer had asked before. It is said aloud as it comes, the
    reply being written kept; opening a conversation says nothing of what it held before."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    expect(page.locator(".arrivals")).to_have_text("")
    page.locator("form.reply textarea").fill("Let me look")
    api.chat(cid, "it is order 12, not 21")
    api.chat(cid, "any news?")
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".turn.user .text").last).to_have_text("any news?")
    expect(page.locator(".arrivals")).to_have_text("Customer: it is order 12, not 21 · Customer: any news?")
    expect(page.locator("form.reply textarea")).to_have_value("Let me look")
    clear_announcements(page)
    page.reload()  # the conversation shown again: nothing new in it
    expect(page.locator(".turn.user .text").last).to_have_text("any news?")
    wait_until(page, "state.refreshing === 0")
    expect(page.locator(".arrivals")).to_have_text("")
    context.close()


CONSOLE_LANGUAGES = """() => [...document.querySelectorAll(".turn.user .text, .list .preview")].map((node) =>
    [node.textContent, node.closest("[lang]").lang])"""


def test_the_agents_console_marks_each_message_with_the_language_it_is_written_in(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """A customer's Chinese on an English console (and an English one's words on a Chinese console) said the console's
    lang: an agent's screen reader read it in its other language's voice, as the web chat once read a Chinese answer."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.chat(cid, "我的包裹到哪里了？")
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator(".turn.user .text").last).to_have_text("我的包裹到哪里了？")
    marked = {"where is my parcel?": "en", "我的包裹到哪里了？": "zh"}
    for console in ("en", "zh"):
        page.goto(f"{server.url}/agent?lang={console}")
        expect(page.locator(".turn.user .text").last).to_have_text("我的包裹到哪里了？")
        shown = page.evaluate(CONSOLE_LANGUAGES)
        assert [lang for text, lang in shown if text in marked] == [marked[text] for text, _ in shown if text in marked]
        assert [text for text, _ in shown].count("我的包裹到哪里了？") == 2, shown  # in the transcript and the list
    # What the customer writes meanwhile is said aloud in its own language's voice too, the console's words around it
    for console, last, words, marked_as, said in (("zh", "我的包裹到哪里了？", "any news?", "en", "客户：any news?"),
                                                  ("en", "any news?", "还在吗？", "zh", "Customer: 还在吗？")):
        page.goto(f"{server.url}/agent?lang={console}")
        expect(page.locator(".turn.user .text").last).to_have_text(last)  # drawn: opening it says nothing
        api.chat(cid, words)
        page.clock.run_for(3_100)  # the next refresh
        expect(page.locator(".arrivals")).to_have_text(said)
        expect(page.locator(".arrivals [lang]")).to_have_text(words)
        expect(page.locator(".arrivals [lang]")).to_have_attribute("lang", marked_as)
    context.close()


def test_a_screen_reader_hears_which_of_the_agents_own_customers_wrote_again(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent answering one of their customers saw "2 new" grow beside another in the list; at a screen reader they
    heard nothing of it. Their own customer writing again is said aloud, with what the one open writes; a colleague's
    customer writing is the colleague's to hear of."""
    alice, bob, carol = (f"console-{next(PAGE_NUMBERS)}" for _ in range(3))
    for cid, agent in ((alice, "Sam"), (bob, "Sam"), (carol, "Ann")):
        api.chat(cid, "/handoff")
        api.admin(f"/admin/conversations/{cid}/handoff?agent={agent}")
    context = open_console(chromium, server, web_demo_bot.admin_token, alice, bob, carol, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{bob}"]').click()
    page.get_by_label("Your name").fill("Sam")
    page.clock.run_for(3_100)  # a refresh in Sam's name: his customers as they were
    wait_until(page, "state.refreshing === 0")
    clear_announcements(page)
    for cid, text in ((alice, "hello?"), (alice, "still there?"), (carol, "hi"), (bob, "me too")):
        api.chat(cid, text)
    page.clock.run_for(3_100)
    expect(page.locator(".turn.user .text").last).to_have_text("me too")
    expect(page.locator(".arrivals")).to_have_text(f"{alice} wrote again (2 new) · Customer: me too")
    context.close()


@pytest.mark.parametrize("tab", ["With the bot", "To review"])
def test_a_screen_reader_hears_which_of_the_agents_own_customers_wrote_again_on_any_tab(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        tab: str) -> None:
    """An agent looking through the conversations with the bot, or the review queue, heard nothing of their own
    customer writing again: it was said on the waiting tab alone, read off the customers it listed."""
    alice, bob = (f"console-{next(PAGE_NUMBERS)}" for _ in range(2))
    for cid in (alice, bob):
        api.chat(cid, "/handoff")
        api.admin(f"/admin/conversations/{cid}/handoff?agent=Sam")
    context = open_console(chromium, server, web_demo_bot.admin_token, alice, bob, clock=True)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{bob}"]').click()
    page.get_by_label("Your name").fill("Sam")
    page.get_by_role("button", name=tab).click()
    page.clock.run_for(3_100)  # a refresh in Sam's name on the other tab: his customers as they were
    wait_until(page, "state.refreshing === 0")
    clear_announcements(page)
    api.chat(alice, "hello?")
    api.chat(alice, "still there?")
    page.clock.run_for(3_100)
    expect(page.locator(".arrivals")).to_have_text(f"{alice} wrote again (2 new)")
    context.close()


@pytest.mark.parametrize(("token", "offered"), [("kim-own-token", 0), ("lee-own-token", 1)])
def test_the_agents_console_offers_the_review_queue_to_the_agents_granted_it(
        chromium: SimpleNamespace, server: LiveServer, token: str, offered: int) -> None:
    """An agent whose grants leave review out (Kim, granted stats alone) was offered To review, whose every label
    the bot refused: the tab is offered to those who may label (Lee, with no grants, as before review was a grant),
    and a reload of the console on it shows the waiting customers instead."""
    context = open_console(chromium, server, token, clock=True)
    page = context.pages[0]
    wait_until(page, "state.refreshing === 0")
    expect(page.get_by_role("button", name="To review")).to_have_count(offered)
    page.evaluate("""sessionStorage.setItem("deskbot-shown", JSON.stringify({ status: "review" }))""")
    page.reload()
    wait_until(page, "state.refreshing === 0 && state.refreshes > 0")
    expect(page.locator(".tabs [aria-pressed=true]")).to_have_text("To review" if offered else "Waiting")
    expect(page.locator(".status")).to_have_text("")
    context.close()


def test_the_agents_console_lists_its_agents_own_customers_alone_when_asked(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """At a change of shift an agent looked for the customers they were leaving among everyone's: "Mine only" lists
    theirs alone, by their name, which it asks for first."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    name = f"Lee {next(PAGE_NUMBERS)}"
    api.admin(f"/admin/conversations/{alice}/handoff?agent={quote(name)}")
    page.locator(f'.list li[data-id="{bob}"]').click()  # the name box is the reply's
    page.get_by_label("Your name").fill("")
    page.get_by_label("Mine only").click()
    expect(page.get_by_label("Mine only")).not_to_be_checked()  # whose, without a name?
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    page.get_by_label("Your name").fill(name.lower())
    page.get_by_label("Mine only").check()
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
    page.get_by_label("Mine only").uncheck()
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_visible()
    context.close()


@pytest.mark.parametrize(("lang", "label", "mine"), [("en", "Colleague's only:", "Mine only"), ("zh", "只看同事：", "只看我的")])
def test_the_agents_console_lists_a_colleagues_customers_alone_when_asked(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        lang: str, label: str, mine: str) -> None:
    """A lead sharing out an absent colleague's customers found them among everyone's: the API lists one agent's
    (?holder=), the console offered only "Mine only". It offers each of server.agents but its own agent, one list at a
    time, kept through a reload, and with the admin token releases all of them at once, once asked."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    page.goto(f"{server.url}/agent?lang={lang}")
    api.admin(f"/admin/conversations/{alice}/handoff", token="lee-own-token")
    page.locator(f'.list li[data-id="{bob}"]').click()  # the name box is the reply's
    page.locator("form.reply .name").fill("Kim")
    colleague = page.get_by_label(label)
    expect(colleague.locator("option")).to_have_text(["—", "Lee"])  # Kim's own are "Mine only"
    colleague.select_option("Lee")
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_hidden()
    page.reload()
    expect(page.get_by_label(label)).to_have_value("Lee")
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_hidden()
    asked: list[str] = []  # an absent colleague's, all at once, as the agent's own are
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator(".release-all").click()
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_hidden()
    assert len(asked) == 1 and "Lee" in asked[0]
    assert api.get(f"/admin/conversations/{alice}")["agent"] is None
    page.get_by_label(mine).check()
    expect(page.get_by_label(label)).to_have_value("")
    context.close()


def test_without_server_agents_the_agents_console_offers_the_colleagues_who_have_customers(
        chromium: SimpleNamespace, web_demo_bot: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> None:
    """"Colleague's only" listed server.agents alone, and was hidden without them: a lead sharing out an absent
    colleague's customers found them among everyone's. It offers the agents who have customers, its own agent left
    out; Release all beside them is kept as made by its agent: it was kept as the colleague's own release. Passing a
    customer on, it names them, and asks before a name none of them bears: a typo made the customer nobody's."""
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "nameless", server={"agents": {}})
    with LiveServer(root) as live, api_client(chromium, live.url, web_demo_bot.admin_token) as api:
        alice, bob, carol = (f"console-{next(PAGE_NUMBERS)}" for _ in range(3))
        for cid in (alice, bob, carol):
            api.chat(cid, "/handoff")
        api.admin(f"/admin/conversations/{alice}/handoff?agent=Lee")
        api.admin(f"/admin/conversations/{carol}/handoff?agent=Kim")
        context = open_console(chromium, live, web_demo_bot.admin_token, alice, bob, carol)
        page = context.pages[0]
        page.locator(f'.list li[data-id="{bob}"]').click()  # the name box is the reply's
        page.locator("form.reply .name").fill("Kim")
        colleague = page.get_by_label("Colleague's only:")
        expect(colleague.locator("option")).to_have_text(["—", "Lee"])  # Kim's own are "Mine only"
        colleague.select_option("Lee")
        expect(page.locator(".list li[data-id]")).to_have_count(1)
        expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
        page.once("dialog", lambda dialog: dialog.accept())  # and releases them as Kim's doing, not Lee's own
        page.locator(".release-all").click()
        expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_hidden()
        last = api.get(f"/admin/conversations/{alice}")["handoffs"][-1]
        assert (last["agent"], last["from"], last["by"]) == (None, "Lee", "Kim")
        # passing a customer on, the console names the colleagues it knows, and asks before a name none of them bears
        api.admin(f"/admin/conversations/{alice}/handoff?agent=Lee")
        colleague.select_option("")
        page.locator(f'.list li[data-id="{carol}"]').click()
        expect(page.locator(".conversation .title")).to_contain_text("taken by Kim")
        asked: list[str] = []
        answers = iter(["Le", False, "lee"])

        def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            reply = next(answers)
            if reply is False:
                dialog.dismiss()
            else:
                dialog.accept(reply)
        page.on("dialog", answer)
        page.get_by_role("button", name="Pass to a colleague").click()  # a typo
        page.get_by_role("button", name="Pass to a colleague").click()
        expect(page.locator(".conversation .title")).to_contain_text("taken by lee")
        assert asked == ["Pass the customer to which colleague? (Lee)",
                         "No colleague named Le has a customer now. Pass the customer to Le anyway?",
                         "Pass the customer to which colleague? (Lee)"]
        context.close()


def test_mine_only_with_no_conversation_open_asks_for_the_agents_name_itself(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The name box is the reply's, hidden with no conversation open: "Mine only" asked for a name and put the keyboard
    in a box nobody saw, so an agent who had not replied yet could not list their customers. It asks in a dialog, and
    keeps the name as the box would."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    name = f"Lee {next(PAGE_NUMBERS)}"
    api.admin(f"/admin/conversations/{alice}/handoff?agent={quote(name)}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_label("Mine only").click()
    expect(page.get_by_label("Mine only")).not_to_be_checked()
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    page.once("dialog", lambda dialog: dialog.accept(f" {name} "))
    with page.expect_event("dialog") as asked:
        page.get_by_label("Mine only").click()
    assert asked.value.message == "Your name"
    expect(page.get_by_label("Mine only")).to_be_checked()
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
    page.locator(f'.list li[data-id="{alice}"]').click()
    expect(page.get_by_label("Your name")).to_have_value(name)
    context.close()


def console_mine_only(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                      admin_token: str) -> tuple[str, str, Any]:
    """Alice, taken over by an agent, and Bob, nobody's (:func:`console_on_two_waiting_customers`), the console of that
    agent listing their customers alone ("Mine only")."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, admin_token)
    page = context.pages[0]
    name = f"Lee {next(PAGE_NUMBERS)}"
    api.admin(f"/admin/conversations/{alice}/handoff?agent={quote(name)}")
    page.once("dialog", lambda dialog: dialog.accept(name))
    page.get_by_label("Mine only").check()
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    return alice, bob, context


def test_mine_only_stays_as_it_was_through_a_reload_of_the_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Reloaded with "Mine only" ticked, the console showed it ticked and listed everyone's customers."""
    alice, bob, context = console_mine_only(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    page.reload()
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
    expect(page.get_by_label("Mine only")).to_be_checked()
    expect(page.locator(".list li[data-id]")).to_have_count(1)
    context.close()


def test_an_agent_leaving_for_the_day_releases_all_their_customers_from_the_agents_console(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent leaving for the day opened and released their customers one by one: listing their own ("Mine only"),
    one button releases them all, once asked, and no colleague's. Made with the admin token, the release is kept as
    the admin's, which is not told back to the console that made it as a lead's doing."""
    alice, bob, context = console_mine_only(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    api.admin(f"/admin/conversations/{bob}/handoff?agent=Sam")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_event("dialog") as asked:
        page.get_by_role("button", name="Release all").click()
    assert asked.value.message == "Release all your customers to the queue, for your colleagues?"
    expect(page.locator(".status")).to_have_text("1 customer released to the queue.")
    expect(page.locator(".list li[data-id]")).to_have_count(0)
    assert api.get(f"/admin/conversations/{alice}")["agent"] is None
    assert api.get(f"/admin/conversations/{bob}")["agent"] == "Sam"
    page.get_by_label("Mine only").uncheck()
    expect(page.get_by_role("button", name="Release all")).to_be_hidden()
    context.close()


def test_the_agents_console_lists_the_customers_nobody_has_alone_when_asked(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent free to take the next customer looked for one nobody had among everyone's, colleagues' included:
    "Nobody's only" lists those alone, unticks "Mine only" (one list at a time), and stays ticked through a reload.
    Alice is Kim's, one of server.agents: the customers of a name it lacks are nobody's too."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    api.admin(f"/admin/conversations/{alice}/handoff?agent=Kim")
    page.once("dialog", lambda dialog: dialog.accept("Kim"))
    page.get_by_label("Mine only").check()
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_have_count(0)
    page.get_by_label("Nobody's only").check()
    expect(page.get_by_label("Mine only")).not_to_be_checked()
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_visible()
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_have_count(0)
    page.reload()
    expect(page.get_by_label("Nobody's only")).to_be_checked()
    expect(page.locator(f'.list li[data-id="{bob}"]')).to_be_visible()
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_have_count(0)
    page.get_by_label("Nobody's only").uncheck()
    expect(page.locator(f'.list li[data-id="{alice}"]')).to_be_visible()
    context.close()


def test_the_agents_console_signed_in_with_an_agents_own_token_acts_in_their_name(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """With an agent's own token the bot refuses every other name: the console shows theirs, which cannot be changed,
    and takes customers over in it."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.agent_token)
    expect(page.get_by_label("Your name")).to_have_value("Kim")
    expect(page.get_by_label("Your name")).not_to_be_editable()
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_contain_text("taken by Kim")
    assert api.get(f"/admin/conversations/{cid}")["agent"] == "Kim"
    context.close()


def test_the_agents_console_labels_the_review_queue(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                                                    web_demo_bot: SimpleNamespace) -> None:
    intents = load_project(web_demo_bot.root).intents
    chosen = intents[-1]
    first, second = "console review: my voucher code is refused", "console review: <b>can I pay later</b>"
    cid = f"review-{next(PAGE_NUMBERS)}"
    reply = api.chat(cid, first)  # a fallback (every typed message is one here): queued
    api.admin("/api/feedback", {"conversation_id": cid, "turn_id": reply["turn_id"], "value": -1,
                                "comment": "it never looked at my code"})
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="To review").click()

    item = queued_item(api, web_demo_bot.root, first)
    page.locator(f'.list li[data-id="{item["id"]}"]').click()
    expect(page.locator(".review .texts li").first).to_have_text(item["texts"][0])
    expect(page.locator(".review .meta")).to_contain_text("Customer's comment: it never looked at my code")
    expect(page.get_by_role("group", name="The model's ranking").get_by_role("button")).not_to_have_count(0)
    page.screenshot(path=str(RESULTS / "review.png"))
    # the out-of-scope intent by the words of its button, as the notice after a label names it too
    expect(page.get_by_label("Intent").locator('option[value="oos"]')).to_have_text("Out of scope")
    page.get_by_label("Intent").select_option(chosen)
    page.get_by_role("button", name="Label", exact=True).click()
    expect(page.locator(f'.list li[data-id="{item["id"]}"]')).to_have_count(0)
    # The keyboard goes on to the next item to review (or the tab, when none is left), not back to the page.
    wait_until(page, "document.activeElement.matches('.list li[tabindex], .tabs [aria-pressed=true]')", timeout=5000)
    assert stored_labels(web_demo_bot.root, first) == [chosen]
    # A slip is taken back from the notice beside the label, and the item's label changed, not added to.
    expect(page.locator(".labelled")).to_have_text(f"Labelled as {chosen}. Correct it")
    page.get_by_role("button", name="Correct it").click()
    expect(page.locator(".review .question")).to_have_text(f"Labelled as {chosen}: what did the customer want?")
    expect(page.locator(".review .texts li").first).to_have_text(item["texts"][0])
    page.get_by_role("button", name="Out of scope").click()
    expect(page.locator(".labelled .what")).to_have_text("Labelled as Out of scope.")
    assert stored_labels(web_demo_bot.root, first) == [chosen, "oos"]

    api.chat(f"review-{next(PAGE_NUMBERS)}", second)
    item = queued_item(api, web_demo_bot.root, second)
    page.locator(f'.list li[data-id="{item["id"]}"]').click()  # the list refreshes by itself
    top = page.get_by_role("group", name="The model's ranking").get_by_role("button").first
    top_intent = top.inner_text().split()[0]
    top.click()
    expect(page.locator(f'.list li[data-id="{item["id"]}"]')).to_have_count(0)
    assert stored_labels(web_demo_bot.root, second) == [top_intent]
    assert page.locator("b").count() == 0  # the customer's markup stayed text

    # A colleague labels the item being read: the console says so and offers to correct their label, where it
    # showed the API's own advice ('send "correct": true').
    third = "console review: the app logs me out"
    api.chat(f"review-{next(PAGE_NUMBERS)}", third)
    item = queued_item(api, web_demo_bot.root, third)
    page.locator(f'.list li[data-id="{item["id"]}"]').click()
    expect(page.locator(".review .texts li").first).to_have_text(item["texts"][0])
    api.admin(f"/admin/review/{item['id']}", {"intent": chosen, "reviewer": "Kim"})
    page.get_by_role("button", name="Out of scope").click()
    expect(page.locator(".labelled .what")).to_have_text(f"A colleague labelled it as {chosen} meanwhile.")
    expect(page.locator("header .status")).to_have_text("")
    page.get_by_role("button", name="Correct it").click()
    expect(page.locator(".review .question")).to_have_text(f"Labelled as {chosen}: what did the customer want?")
    page.get_by_role("button", name="Out of scope").click()
    expect(page.locator(".labelled .what")).to_have_text("Labelled as Out of scope.")
    assert stored_labels(web_demo_bot.root, third) == [chosen, "oos"]

    # Labelled by the agent's own name in another window (another spelling of it): theirs, not a colleague's.
    fourth = "console review: my parcel went to the old address"
    api.chat(f"review-{next(PAGE_NUMBERS)}", fourth)
    item = queued_item(api, web_demo_bot.root, fourth)
    page.locator("form.reply .name").evaluate("(name) => { name.value = 'Kim'; }")  # as typed in the inbox
    page.locator(f'.list li[data-id="{item["id"]}"]').click()
    expect(page.locator(".review .texts li").first).to_have_text(item["texts"][0])
    api.admin(f"/admin/review/{item['id']}", {"intent": chosen, "reviewer": "kim "})
    page.get_by_role("button", name="Out of scope").click()
    expect(page.locator(".labelled .what")).to_have_text(f"You labelled it as {chosen} from another window.")
    assert stored_labels(web_demo_bot.root, fourth) == [chosen]
    context.close()


def test_the_agents_console_pages_through_a_long_review_queue(chromium: SimpleNamespace, server: LiveServer,
                                                              web_demo_bot: SimpleNamespace) -> None:
    """The console read the review queue's first 100 items alone: its reviewers never saw the others. It pages through
    the queue as through the conversations."""
    asked = []

    def queue(route: Route) -> None:
        offset = int(parse_qs(urlsplit(route.request.url).query)["offset"][0])
        asked.append(offset)
        items = [{"id": n, "turn_ids": [n], "texts": [f"question {n}"], "count": 1, "predicted": None, "ranking": [],
                  "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0} for n in range(offset, min(offset + 200, 250))]
        route.fulfill(json={"items": items, "total": 250, "more_waiting": False, "intents": ["greet"]})

    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url, queue)
    page.get_by_role("button", name="To review").click()
    expect(page.locator(".pager")).to_contain_text("1–200 of 250")
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".list li .who").first).to_have_text("question 200")
    expect(page.locator(".pager")).to_contain_text("201–250 of 250")
    assert asked[-1] == 200
    page.get_by_role("button", name="Previous").click()
    expect(page.locator(".list li .who").first).to_have_text("question 0")
    context.close()


def test_the_keyboard_goes_on_to_the_item_after_the_one_labelled(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A reviewer at the keyboard, going down a long queue, was taken back to its first item at each label, and went
    down again from the top to the item after theirs. The keyboard goes on to the item after the one labelled."""
    items = [{"id": n, "turn_ids": [n], "texts": [f"question {n}"], "count": 1, "predicted": None, "ranking": [],
              "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0, "comments": []} for n in (1, 2, 3)]
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url,
               lambda route: route.fulfill(json={"items": items, "total": len(items), "more_waiting": False,
                                                 "intents": ["greet"]}))

    def labelled(route: Route) -> None:
        n = int(urlsplit(route.request.url).path.rsplit("/", 1)[1])
        items[:] = [item for item in items if item["id"] != n]
        route.fulfill(json={"intent": "greet", "turn_ids": [n]})
    page.route(lambda url: "/admin/review/" in url, labelled)
    page.get_by_role("button", name="To review").click()
    expect(page.locator(".list li[data-id]")).to_have_count(3)
    page.locator('.list li[data-id="1"]').focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # the second item opened
    expect(page.locator(".review .texts li")).to_have_text(["question 2"])
    page.get_by_role("button", name="Label", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator(".list li[data-id]")).to_have_count(2)
    expect(page.locator('.list li[data-id="3"]')).to_be_focused()
    context.close()


def test_a_label_that_did_not_reach_the_bot_stays_chosen_to_be_given_again(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A label sent as the network dropped closed its item and went on to the next one: the agent's choice was lost,
    the item back in the list as if never opened. It stays open with the intent chosen, to be labelled again."""
    items = [{"id": n, "turn_ids": [n], "texts": [f"question {n}"], "count": 1, "predicted": "greet", "ranking": [],
              "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0, "comments": []} for n in (1, 2)]
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url,
               lambda route: route.fulfill(json={"items": items, "total": len(items), "more_waiting": False,
                                                 "intents": ["greet", "goodbye"]}))
    sent: list[str] = []

    def labelled(route: Route) -> None:  # the first label lost on the way, the next one taken
        if not sent:
            sent.append("")
            route.abort("internetdisconnected")
            return
        sent.append(route.request.post_data_json["intent"])
        items[:] = [item for item in items if item["id"] != 1]
        route.fulfill(json={"intent": "goodbye", "turn_ids": [1]})
    page.route(lambda url: "/admin/review/" in url, labelled)
    page.get_by_role("button", name="To review").click()
    page.locator('.list li[data-id="1"]').click()
    page.get_by_label("Intent").select_option("goodbye")
    page.get_by_role("button", name="Label", exact=True).click()
    expect(page.locator("header .status")).to_have_text("Cannot reach the bot.")
    expect(page.locator(".review")).to_be_visible()
    expect(page.locator(".review .texts li")).to_have_text(["question 1"])
    expect(page.get_by_label("Intent")).to_have_value("goodbye")
    expect(page.get_by_label("Intent")).to_be_focused()
    page.get_by_role("button", name="Label", exact=True).click()
    expect(page.locator('.list li[data-id="1"]')).to_have_count(0)
    expect(page.locator(".labelled .what")).to_have_text("Labelled as goodbye.")
    assert sent == ["", "goodbye"]
    context.close()


def test_the_keyboard_stays_in_the_list_as_its_item_leaves_it_or_its_page_turns(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """An agent at the keyboard on an item a colleague labelled meanwhile, or on Next, was left on the page itself once
    the list was drawn anew, and tabbed their way back from the top. The keyboard goes on to the item that took the
    place of the one gone, and stays on Next while there is a next page."""
    queue = {"items": [{"id": n, "turn_ids": [n], "texts": [f"question {n}"], "count": 1, "predicted": None,
                        "ranking": [], "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0, "comments": []}
                       for n in range(500)]}

    def page_of(route: Route) -> None:
        offset = int(parse_qs(urlsplit(route.request.url).query)["offset"][0])
        route.fulfill(json={"items": queue["items"][offset:offset + 200], "total": len(queue["items"]),
                            "more_waiting": False, "intents": ["greet"]})
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url, page_of)
    page.get_by_role("button", name="To review").click()
    expect(page.locator(".pager")).to_contain_text("1–200 of 500")
    page.locator('.list li[data-id="1"]').focus()
    queue["items"] = [item for item in queue["items"] if item["id"] != 1]  # labelled by a colleague
    page.clock.run_for(3_100)  # the next refresh
    expect(page.locator('.list li[data-id="1"]')).to_have_count(0)
    expect(page.locator('.list li[data-id="2"]')).to_be_focused()
    page.get_by_role("button", name="Next").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".pager")).to_contain_text("201–400 of 499")
    expect(page.get_by_role("button", name="Next")).to_be_focused()
    page.keyboard.press("Enter")  # the last page: no Next to press again
    expect(page.locator(".pager")).to_contain_text("401–499 of 499")
    expect(page.locator('.list li[data-id="401"]')).to_be_focused()
    context.close()


def test_a_screen_reader_hears_the_range_of_the_page_turned_to_and_not_at_each_refresh(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent at the keyboard pressing Next stayed on the button, and heard nothing of the page they came to: its
    range, drawn anew, was no live region. The range of the page turned to is said once, not again at each refresh."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, web_demo_bot.admin_token, cid, clock=True)
    page = context.pages[0]
    like: list[dict[str, Any]] = []  # the waiting customer, each of the 450 listed made like them
    answered: list[dict[str, Any]] = []

    def waiting(route: Route) -> None:
        inbox = whole_answer(route).json()
        like[:] = like or [c for c in inbox["conversations"] if c["conversation_id"] == cid]
        offset = int(parse_qs(urlsplit(route.request.url).query).get("offset", ["0"])[0])
        shown = [{**like[0], "conversation_id": f"c-{n}"} for n in range(offset, min(offset + 200, 450))]
        answered.append({})
        route.fulfill(json={**inbox, "conversations": shown, "total": 450, "waiting": 450, "waiting_yours": 450})
    page.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), waiting)
    refreshed(page, answered)
    expect(page.locator(".pager")).to_contain_text("1–200 of 450")
    ranges = page.get_by_role("status").filter(has_text=re.compile(r"\d+–\d+ of 450"))
    expect(ranges).to_have_count(0)  # the first page, not turned to: nothing said
    page.get_by_role("button", name="Next").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="201–400 of 450")).to_have_count(1)
    expect(page.get_by_role("button", name="Next")).to_be_focused()
    page.evaluate("""() => { window.saidAgain = [];
      const region = [...document.querySelectorAll("[role=status]")].find((r) => r.textContent === "201–400 of 450");
      new MutationObserver(() => window.saidAgain.push(region.textContent))
        .observe(region, {childList: true, subtree: true, characterData: true}); }""")
    refreshed(page, answered)
    assert page.evaluate("window.saidAgain") == []  # the same page refreshed: not said again
    page.get_by_role("button", name="Previous").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="1–200 of 450")).to_have_count(1)
    close_console(context)


def console_on_page_two_of_450(chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
                               admin_token: str) -> tuple[Any, Any]:
    """A console whose two tabs list 450 customers each, 200 a page (each made like one customer waiting), turned by
    its agent to the waiting tab's second page: for what a screen reader hears of the pager."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "where is my parcel?")
    assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, admin_token, cid, clock=True)
    page = context.pages[0]
    like: list[dict[str, Any]] = []  # the waiting customer
    answered: list[dict[str, Any]] = []

    def listed(route: Route) -> None:
        inbox = whole_answer(route).json()
        like[:] = like or [c for c in inbox["conversations"] if c["conversation_id"] == cid]
        offset = int(parse_qs(urlsplit(route.request.url).query).get("offset", ["0"])[0])
        shown = [{**like[0], "conversation_id": f"c-{n}"} for n in range(offset, min(offset + 200, 450))]
        answered.append({})
        route.fulfill(json={**inbox, "conversations": shown, "total": 450, "waiting": 450, "waiting_yours": 450})
    context.route(re.compile(r"/admin/conversations\?limit=200&status=(handed_off|open)&"), listed)
    refreshed(page, answered)
    page.get_by_role("button", name="Next").click()
    return context, page


def test_a_screen_reader_hears_no_range_after_a_reload_on_a_later_page_or_on_another_tab(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The range was said whenever the page shown differed from the last said: a reload on page 2 said "201–400 of
    450" unasked, and so did the first page of another tab opened from page 2. It is said for a page turned to alone."""
    context, page = console_on_page_two_of_450(chromium, server, api, web_demo_bot.admin_token)
    expect(page.locator(".page-said")).to_have_text("201–400 of 450")  # turned to: said
    page.locator(".page-said").evaluate("said => { said.textContent = ''; }")
    page.reload()  # on page 2 still, which nobody turned to now
    expect(page.locator(".pager")).to_contain_text("201–400 of 450")
    wait_until(page, "state.refreshes > 0 && state.refreshing === 0")
    expect(page.locator(".page-said")).to_have_text("")
    page.get_by_role("button", name="With the bot").click()  # its first page, from page 2 of the waiting tab
    expect(page.locator(".pager")).to_contain_text("1–200 of 450")
    wait_until(page, "state.refreshing === 0")
    expect(page.locator(".page-said")).to_have_text("")
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".page-said")).to_have_text("201–400 of 450")
    close_console(context)


def test_a_screen_reader_hears_no_range_of_a_tab_opened_before_the_page_turned_to_came_back(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """Previous, to page 1, then another tab before that page came back: the other tab's first page, which nobody
    turned to, was said ("1–200 of 450") as if it were the page turned to."""
    context, page = console_on_page_two_of_450(chromium, server, api, web_demo_bot.admin_token)
    expect(page.locator(".page-said")).to_have_text("201–400 of 450")
    page.locator(".page-said").evaluate("said => { said.textContent = ''; }")
    page.evaluate("""() => { [...document.querySelectorAll(".pager button")].find((b) => b.textContent === "Previous").click();
      [...document.querySelectorAll(".tabs button")].find((b) => b.textContent.startsWith("With the bot")).click(); }""")
    expect(page.get_by_role("button", name="With the bot")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".pager")).to_contain_text("1–200 of 450")
    wait_until(page, "state.refreshing === 0")
    expect(page.locator(".page-said")).to_have_text("")
    close_console(context)


def test_a_long_message_in_the_review_queue_takes_a_few_lines_of_the_list(chromium: SimpleNamespace, server: LiveServer,
                                                                          web_demo_bot: SimpleNamespace) -> None:
    """A customer's long message (an order's story, 2,000 characters) was listed whole in the review queue: its item
    filled the list, and the reviewer scrolled past it to reach the next. The list shows its first lines; the item,
    opened, all of it."""
    long = "我的订单一直没有到，客服电话也打不通。" * 100
    items = [{"id": n, "turn_ids": [n], "texts": [text], "count": 1, "predicted": None, "ranking": [],
              "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0} for n, text in ((1, long), (2, "退款"))]
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url,
               lambda route: route.fulfill(json={"items": items, "total": 2, "more_waiting": False, "intents": ["greet"]}))
    page.get_by_role("button", name="To review").click()
    short = page.locator('.list li[data-id="2"]')
    expect(short).to_be_visible()
    assert page.locator('.list li[data-id="1"]').bounding_box()["height"] < 3 * short.bounding_box()["height"]
    page.locator('.list li[data-id="1"]').click()
    expect(page.locator(".review .texts li")).to_have_text([long])
    context.close()


def test_the_review_queue_shows_a_right_to_left_message_right_to_left(chromium: SimpleNamespace, server: LiveServer,
                                                                      web_demo_bot: SimpleNamespace) -> None:
    """The transcript read each message in its own direction, the review queue did not: an Arabic customer's words ran
    left to right in the list and in the item opened, their question mark at the wrong end."""
    arabic = "أين طلبي؟"
    item = {"id": 1, "turn_ids": [1], "texts": [arabic], "count": 1, "predicted": None, "ranking": [],
            "reasons": ["fallback"], "uncertainty": 1.0, "score": 1.0, "comments": []}
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url,
               lambda route: route.fulfill(json={"items": [item], "total": 1, "more_waiting": False, "intents": ["greet"]}))
    page.get_by_role("button", name="To review").click()
    listed = page.locator('.list li[data-id="1"] .who')
    expect(listed).to_have_text(arabic)
    assert listed.evaluate("(node) => getComputedStyle(node).direction") == "rtl"
    page.locator('.list li[data-id="1"]').click()
    expect(page.locator(".review .texts li")).to_have_text([arabic])
    assert page.locator(".review .texts li").evaluate("(node) => getComputedStyle(node).direction") == "rtl"
    context.close()


def test_the_agents_console_marks_and_does_not_offer_a_ranked_intent_nlu_yml_no_longer_has(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """After an intent's rename, before the next retrain, the serving model still ranks its old name: the console
    offered it as any other, and a click was refused with a 400. It is marked as bot review marks it."""
    item = {"id": 1, "turn_ids": [1], "texts": ["where's my parcel"], "count": 1, "predicted": "track_parcel",
            "ranking": [{"intent": "track_parcel", "confidence": 0.6}, {"intent": "greet", "confidence": 0.3}],
            "reasons": ["low_confidence"], "uncertainty": 0.4, "score": 0.4, "comments": []}
    context = open_console(chromium, server, web_demo_bot.admin_token, clock=True)
    page = context.pages[0]
    page.route(lambda url: "/admin/review?" in url, lambda route: route.fulfill(
        json={"items": [item], "total": 1, "more_waiting": False, "intents": ["greet", "oos"]}))
    page.get_by_role("button", name="To review").click()
    page.locator('.list li[data-id="1"]').click()
    ranked = page.get_by_role("group", name="The model's ranking").get_by_role("button")
    expect(ranked).to_have_text(["track_parcel 0.60 (not in nlu.yml)", "greet 0.30"])
    expect(ranked.first).to_be_disabled()
    expect(ranked.last).to_be_enabled()
    context.close()


def test_the_agents_console_waits_for_a_slow_review_queue_before_asking_again(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """The console asked for the queue every 3 seconds, answered or not: a busy bot's queue, slower to build
    than that, piled up requests, each building it again."""
    context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script("""{
      window.reviewReads = 0;
      const fetchNow = window.fetch;
      window.fetch = (url, init) => String(url).includes("admin/review?")
        ? (window.reviewReads += 1, new Promise((resolve) => setTimeout(resolve, 6000)).then(() => fetchNow(url, init)))
        : fetchNow(url, init);
    }""")
    page = context.new_page()
    page.goto(f"{server.url}/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="To review").click()
    wait_until(page, "window.reviewReads === 1", timeout=5000)
    page.wait_for_timeout(5000)  # a tick of the clock or two while the queue is on its way
    assert page.evaluate("window.reviewReads") == 1
    wait_until(page, "window.reviewReads === 2", timeout=10_000)  # answered, the clock asks again
    context.close()

def test_a_direction_override_in_a_customers_comment_reorders_nothing_after_it_in_the_review_queue(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The review queue joined its item's comments on one line: a right-to-left override in one (kept as sent) showed
    the comments after it backwards, so that a customer could make another's read as they liked."""
    asked = "console review: the override in a comment"
    for comment in ("after-it", "\u202eevil"):  # the latest listed first
        cid = f"review-{next(PAGE_NUMBERS)}"
        reply = api.chat(cid, asked)
        api.admin("/api/feedback", {"conversation_id": cid, "turn_id": reply["turn_id"], "value": -1, "comment": comment})
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    page.get_by_role("button", name="To review").click()
    item = queued_item(api, web_demo_bot.root, asked)
    page.locator(f'.list li[data-id="{item["id"]}"]').click()
    expect(page.locator(".review .meta")).to_contain_text("after-it")
    # where the first and the last letter of "after-it" are drawn: left to right, as written
    assert page.evaluate("""(() => {
      const walker = document.createTreeWalker(document.querySelector(".review .meta"), NodeFilter.SHOW_TEXT);
      let node = walker.nextNode();
      while (!node.data.includes("after-it")) node = walker.nextNode();
      const left = (at) => {
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + 1);
        return range.getBoundingClientRect().left;
      };
      const at = node.data.indexOf("after-it");
      return left(at) < left(at + 7);
    })()""")
    context.close()


def queued_item(api: SimpleNamespace, root: Path, text: str) -> dict[str, Any]:
    """The review queue's item holding the customer's latest message ``text``: the test bot's tiny model groups
    most typed messages of the session into one item, shown by its most frequent text."""
    with sqlite3.connect(root / "dialogues.db") as db:
        [(turn,)] = db.execute("SELECT max(id) FROM turns WHERE role = 'user' AND text = ?", [text]).fetchall()
    [item] = [i for i in api.get("/admin/review?limit=100")["items"] if turn in i["turn_ids"]]
    return item


def stored_labels(root: Path, text: str) -> list[str]:
    with sqlite3.connect(root / "dialogues.db") as db:
        return [r[0] for r in db.execute("SELECT r.intent FROM review_labels r JOIN turns t ON t.id = r.turn_id "
                                         "WHERE t.text = ? ORDER BY r.id", [text])]


def test_a_waiting_customer_is_told_the_agents_are_busy_even_without_a_socket(
        chromium: SimpleNamespace, web_demo_bot: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "busy",
                           handoff={"busy_after_seconds": 0.5})
    with LiveServer(root) as live:
        context = chromium.browser.new_context(viewport={"width": 1100, "height": 760})
        page = context.new_page()
        page.goto(f"{live.url}/?transport=http")  # the demo page, its widget polling the history
        page.locator("textarea").fill("I need help")
        page.locator("textarea").press("Enter")
        page.locator(".quick button", has_text="Talk to a person").click()
        expect(page.locator(".banner")).to_be_visible()
        expect(page.locator(".msg.bot .bubble").last).to_contain_text("our agents are all busy", timeout=15_000)
        expect(page.locator(".msg.bot .bubble", has_text="our agents are all busy")).to_have_count(1)
        page.reload()  # the notice's "Back to the bot" is the banner's, not a second button below
        expect(page.locator(".banner button", has_text="Back to the bot")).to_be_visible()
        expect(page.locator(".msg.bot .bubble").last).to_contain_text("our agents are all busy")
        expect(page.locator(".quick button")).to_have_count(0)
        context.close()


# --- on shops' real sites: behind a proxy, among the page's own scripts and styles, under a strict CSP ---------


async def start_prefix_proxy(target: str, prefix: str, delay: float = 0.0) -> tuple[web.AppRunner, str]:
    """A shop's reverse proxy mapping ``prefix``/… to the bot at ``target``, HTTP and WebSocket, passing the
    browser's Host on as nginx's ``proxy_set_header Host $host`` does. Anything else is the shop's: a 404.
    ``delay`` seconds hold each answer and each socket frame, as a slow network does."""
    session = aiohttp.ClientSession()
    skipped = {"host", "connection", "upgrade", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}

    async def forward(request: web.Request) -> web.StreamResponse:
        url = target + request.raw_path[len(prefix):]
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in skipped and not name.lower().startswith("sec-websocket")}
        headers["Host"] = request.host
        if request.headers.get("Upgrade", "").lower() == "websocket":
            async with session.ws_connect(url, headers=headers) as upstream:
                downstream = web.WebSocketResponse()
                await downstream.prepare(request)

                async def pipe(source: Any, sink: Any) -> None:
                    async for message in source:
                        await asyncio.sleep(delay)
                        await sink.send_str(message.data)
                    await sink.close()

                await asyncio.gather(pipe(upstream, downstream), pipe(downstream, upstream))
                return downstream
        async with session.request(request.method, url, headers=headers, data=await request.read()) as answer:
            await asyncio.sleep(delay)
            return web.Response(status=answer.status, body=await answer.read(),
                                headers={name: value for name, value in answer.headers.items() if name.lower() not in skipped})

    async def close_session(_app: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_route("*", prefix + "/{tail:.*}", forward)
    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[str]:
    """The bot behind a proxy at /support/, as https://shop.example/support/ would have it."""
    runner, url = server._run(start_prefix_proxy(server.url, "/support"))
    yield url
    server._run(runner.cleanup())


@pytest.fixture
def slow_network(server: LiveServer) -> Iterator[str]:
    """The bot at ``slow_network``/support over a slow network: each answer and socket frame 1.5 s late."""
    runner, url = server._run(start_prefix_proxy(server.url, "/support", delay=1.5))
    yield f"{url}/support"
    server._run(runner.cleanup())


def test_a_message_sent_while_the_chat_still_loads_comes_after_the_greeting(slow_network: str, open_widget: Any,
                                                                          api: SimpleNamespace) -> None:
    """Over a slow network a customer who wrote before the chat had loaded saw the greeting come under their message,
    above its answer. The message waits, shown as sent, until the chat has loaded."""
    for page_lang in ("en", "zh-CN"):
        widget = open_widget(server=slow_network, page_lang=page_lang)
        page = widget.page
        widget.send("where is my parcel")  # the settings and the history are still on their way
        expect(widget.bot_replies()).to_have_count(1, timeout=20_000)
        roles = page.locator(".log > *").evaluate_all("(nodes) => nodes.map((node) => node.className)")
        assert roles == ["msg bot", "msg user", "msg bot"], (page_lang, roles)
        expect(page.locator(".msg.bot .bubble").first).to_have_text("Hi! How can I help you today?" if page_lang == "en"
                                                                     else "您好！请问有什么可以帮您？")
        assert [turn["text"] for turn in api.history(widget.conversation_id())["turns"]
                if turn["role"] == "user"] == ["where is my parcel"]


def test_the_chat_asks_for_its_settings_and_its_history_at_once(open_widget: Any, server: LiveServer) -> None:
    """The history was asked for only once the settings had come: over a slow network the chat showed nothing, not
    even its greeting, for a round trip more."""
    widget = open_widget()
    page = widget.page
    widget.send("where is my parcel")
    expect(widget.bot_replies()).to_have_count(1)
    held: list[Route] = []
    page.route(f"{server.url}/api/widget", lambda route: held.append(route))  # the settings, held on their way
    asked = len(widget.requests)
    page.reload()
    deadline = time.monotonic() + 10
    while not any("/history" in url for url in widget.requests[asked:]):
        assert time.monotonic() < deadline, "the history waited for the settings"
        page.wait_for_timeout(50)
    assert held
    held[0].continue_()
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg.user .bubble")).to_have_text(["where is my parcel"])


def test_the_demo_pages_snippet_leaves_the_title_and_language_to_the_bot(chromium: SimpleNamespace,
                                                                          server: LiveServer) -> None:
    """The snippet a shop copies from ``/`` pinned ``lang: "en"`` and ``title: "Help"``: on a bot of both languages
    the widget's own texts stayed English for Chinese pages and customers, and bot.yml's title was overridden."""
    page = chromium.browser.new_page()
    page.goto(f"{server.url}/")
    snippet = page.locator("#snippet").text_content() or ""
    page.close()
    config = next(line for line in snippet.splitlines() if "window.deskbotConfig" in line)
    assert "colors" in config and "lang:" not in config and "title:" not in config, snippet
    assert f'<script src="{server.url}/widget.js" async>' in snippet


def test_the_demo_page_in_chinese_keeps_its_english_text_marked_english(chromium: SimpleNamespace,
                                                                      server: LiveServer) -> None:
    """``/?lang=zh`` set the page's ``<html lang>`` to Chinese for the widget, and a screen reader read the page's
    English text in its Chinese voice; the "中文" link, on the English page, in its English voice."""
    page = chromium.browser.new_page()
    for asked in ("en", "zh"):
        page.goto(f"{server.url}/?lang={asked}")
        expect(page.locator("html")).to_have_attribute("lang", asked)  # the widget's language, as the page says
        spoken = page.evaluate("""() => [...document.querySelectorAll("main h1, main p, nav a")].map((node) =>
            [node.textContent.trim().slice(0, 10), node.closest("[lang]").lang])""")
        assert spoken == [[text, "zh" if text == "中文" else "en"] for text, _ in spoken], (asked, spoken)
    page.close()


def test_behind_a_proxys_path_prefix_the_widget_demo_and_console_stay_under_it(
        chromium: SimpleNamespace, proxy: str, web_demo_bot: SimpleNamespace) -> None:
    """Loaded from /support/widget.js, the widget asked for /api/widget, /api/chat and /api/ws at the site's
    root (the shop's pages, not the bot), the demo page for /widget.js, and the console for /admin/…."""
    context = chromium.browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.on("websocket", lambda socket_: asked.append(socket_.url))
    page.goto(f"{proxy}/support/")
    expect(page.locator("h2")).to_have_text("Demo Shop support")  # bot.yml's title, from /support/api/widget
    page.wait_for_function("Deskbot.connected()")
    page.locator("textarea").fill("how do refunds work?")
    page.locator("textarea").press("Enter")
    expect(page.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    expect(page.locator("#snippet")).to_contain_text(f'<script src="{proxy}/support/widget.js" async>')
    assert f"{proxy.replace('http', 'ws')}/support/api/ws" in asked
    assert [url for url in asked if not urlsplit(url).path.startswith("/support/")] == []

    page.goto(f"{proxy}/support/agent?lang=en")
    page.locator("#token").fill(web_demo_bot.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token")).to_be_hidden()
    expect(page.locator("header .figures")).to_contain_text("Today:")
    assert [url for url in asked if not urlsplit(url).path.startswith("/support/")] == []
    context.close()


def test_the_pages_keyboard_shortcuts_leave_what_the_customer_types_alone(open_widget: Any) -> None:
    """A shop's "/" goes to its search unless an input has focus: typed in the chat, whose keys the page saw
    as its host div's, "1/2" lost its slash to it."""
    page = open_widget(init_script="""document.addEventListener("keydown", (event) => {
        if (event.key === "/" && !["INPUT", "TEXTAREA"].includes(event.target.tagName)) {
            event.preventDefault();
            window.shortcuts = (window.shortcuts || 0) + 1;
        }
    });""").page
    page.locator("textarea").focus()
    page.keyboard.type("size 1/2")
    expect(page.locator("textarea")).to_have_value("size 1/2")
    page.keyboard.press("Escape")  # the chat's own keys still work
    expect(page.locator(".panel")).to_be_hidden()
    assert page.evaluate("window.shortcuts") is None


def test_the_widget_loads_from_a_script_tag_marked_crossorigin(open_widget: Any, server: LiveServer) -> None:
    """Sentry's and subresource integrity's crossorigin="anonymous" made the browser refuse widget.js, served
    without CORS headers: no widget at all."""
    page = open_widget(page={"crossorigin": True}).page  # the Widget waits for the open panel
    expect(page.locator("h2")).to_have_text("Demo Shop support")


def test_the_widget_works_under_the_strict_csp_its_docs_give(open_widget: Any, server: LiveServer) -> None:
    """Under style-src 'self' its <style> element was blocked, the widget unstyled; a page requiring Trusted
    Types refused the innerHTML of its icons, and it never started."""
    socket_url = server.url.replace("http", "ws", 1)
    csp = (f"default-src 'none'; script-src 'nonce-shop' {server.url}; connect-src {server.url} {socket_url}; "
           "style-src 'self'; require-trusted-types-for 'script'")
    widget = open_widget(page={"head": f'<meta http-equiv="Content-Security-Policy" content="{csp}">', "nonce": "shop"})
    page = widget.page
    launcher = page.get_by_role("button", name="Close chat").last
    assert launcher.evaluate("(button) => getComputedStyle(button).borderRadius") == "50%"
    expect(launcher.locator("svg path")).to_have_count(1)
    wait_until(page, "Deskbot.connected()")
    widget.send("where is my order?")
    expect(widget.bot_replies()).to_have_count(1)
    expect(widget.bot_replies().locator(".feedback svg")).to_have_count(2)
    assert not [line for line in widget.console if "Content Security Policy" in line or "TrustedHTML" in line]


def test_under_a_csp_that_refuses_its_socket_the_console_says_what_to_add(open_widget: Any,
                                                                                          server: LiveServer) -> None:
    """A connect-src without the bot's wss:// origin: the browser refused the socket, and nothing told the page's
    developer why agents' replies came late (only as often as the chat polls), nor what to add."""
    csp = f"default-src 'none'; script-src 'nonce-shop' {server.url}; connect-src {server.url}"
    widget = open_widget(page={"head": f'<meta http-equiv="Content-Security-Policy" content="{csp}">', "nonce": "shop"})
    widget.send("where is my order?")
    expect(widget.bot_replies()).to_have_count(1)
    socket = server.url.replace("http", "ws", 1)
    told = [line for line in widget.console if line.startswith("warning: deskbot: ")]
    assert len(told) == 1 and f"add {socket} to its connect-src" in told[0], widget.console


def test_under_a_csp_that_refuses_the_bot_the_console_says_what_to_add(open_widget: Any, server: LiveServer) -> None:
    """A connect-src without the bot at all: the console said the bot could not be reached, as if it were down."""
    csp = f"default-src 'self'; script-src 'nonce-shop' {server.url}"
    widget = open_widget(page={"head": f'<meta http-equiv="Content-Security-Policy" content="{csp}">', "nonce": "shop"})
    socket = server.url.replace("http", "ws", 1)
    expect(widget.page.locator(".msg.bot")).to_have_count(1)  # the greeting
    deadline = time.monotonic() + 10
    while not [line for line in widget.console if "deskbot: " in line and "/api/widget failed" in line]:
        assert time.monotonic() < deadline, widget.console
        widget.page.wait_for_timeout(100)
    failed = [line for line in widget.console if "/api/widget failed" in line]
    assert f"add {server.url} and {socket} to its connect-src" in failed[0], failed


def test_the_widget_takes_its_config_from_a_file_of_the_site_under_a_csp_with_no_inline_script(
        open_widget: Any, server: LiveServer) -> None:
    """The docs' way for a site that allows no inline script at all: the config object in a file of its own."""
    config = f"/deskbot-config-{next(PAGE_NUMBERS)}.js"
    server.pages[config] = 'window.deskbotConfig = { open: true, title: "File Shop" };'
    socket_url = server.url.replace("http", "ws", 1)
    csp = (f"default-src 'none'; script-src 'self' {server.url}; connect-src {server.url} {socket_url}; "
           "style-src 'self'")
    widget = open_widget(page={"head": f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
                                       f'<script src="{config}"></script>'})
    page = widget.page
    expect(page.locator("h2")).to_have_text("File Shop")
    widget.send("where is my order?")
    expect(widget.bot_replies()).to_have_count(1)


def test_a_site_that_replaces_its_body_gets_the_widget_back(open_widget: Any, server: LiveServer) -> None:
    """Turbo and single-page sites replace the body, the widget with it: running widget.js again, as Turbo does
    with the new body's scripts, or Deskbot.open() did nothing."""
    widget = open_widget()
    page = widget.page
    cid = widget.conversation_id()
    page.evaluate("Deskbot.close(); document.body.replaceWith(document.createElement('body'))")
    expect(page.locator("#deskbot-widget")).to_have_count(0)
    page.evaluate(f"document.body.append(Object.assign(document.createElement('script'), {{src: '{server.url}/widget.js'}}))")
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    assert widget.conversation_id() == cid
    page.evaluate("document.body.replaceWith(document.createElement('body')); Deskbot.open()")
    expect(page.locator(".panel")).to_be_visible()
    expect(page.locator("textarea")).to_be_focused()
    widget.send("where is my order?")  # the same widget, still talking to the bot
    expect(widget.bot_replies()).to_have_count(1)


def test_a_second_bots_widget_on_the_page_is_said_in_the_console(open_widget: Any, server: LiveServer) -> None:
    """A page that embeds a second bot's widget.js (another server's) got one chat, and no word of why the other never
    showed. Run again from the first one's server (a site that replaces its body), nothing is said."""
    widget = open_widget()
    page = widget.page
    add_script = "(src) => new Promise((loaded) => document.body.append(Object.assign(document.createElement('script'), " \
                 "{src, onload: loaded})))"
    page.evaluate(add_script, f"{server.url}/widget.js?again")
    assert not [line for line in widget.console if "deskbot" in line], widget.console
    other = server.url.replace("127.0.0.1", "localhost")  # another bot's address, as far as the page can tell
    page.evaluate(add_script, f"{other}/widget.js")
    warnings = [line for line in widget.console if line.startswith("warning: deskbot: ")]
    assert len(warnings) == 1 and f"{other}/widget.js" in warnings[0] and f"{server.url}/widget.js" in warnings[0], \
        widget.console
    assert page.evaluate("Object.keys(Deskbot)") == ["open", "close", "attach", "reset", "identify", "setTheme",
                                                    "conversationId", "connected"]
    expect(page.locator("#deskbot-widget")).to_have_count(1)


def test_a_chat_open_from_the_start_leaves_the_pages_own_focus_alone(open_widget: Any) -> None:
    """open: true took the focus from the page's autofocus search box as the page loaded."""
    page = open_widget(page={"body": '<input id="search" autofocus>'}).page  # open: true, as every Widget
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("shoes")
    expect(page.locator("#search")).to_have_value("shoes")
    page.evaluate("Deskbot.close(); Deskbot.open()")  # the page's own "Chat with us" button: to type in it
    expect(page.locator("textarea")).to_be_focused()


def test_a_language_given_with_its_region_is_the_widgets(open_widget: Any) -> None:
    """lang: "zh-CN" was ignored (only "zh" and "en" were taken), though a page's <html lang="zh-CN"> was not."""
    page = open_widget(lang="zh-CN").page  # on an English page
    expect(page.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")
    english = open_widget(lang="en-GB", page_lang="zh-CN").page
    expect(english.locator("textarea")).to_have_attribute("placeholder", "Type your message…")


def test_a_page_in_traditional_chinese_gets_the_widget_in_traditional_characters(open_widget: Any) -> None:
    """A Hong Kong or Taiwan page (zh-TW, zh-HK, zh-Hant) got the widget in Simplified characters, beside the bot's
    replies in Traditional ones."""
    for tag in ("zh-TW", "zh-Hant-HK"):
        widget = open_widget(page_lang=tag)
        expect(widget.page.locator("textarea")).to_have_attribute("placeholder", "請輸入您的問題…")
        expect(widget.page.locator("h2")).to_have_text("Demo Shop 在線客服")  # bot.yml's title too
        assert widget.page.locator("#deskbot-widget").evaluate("(h) => h.shadowRoot.querySelector('.root').lang") \
            == "zh-Hant"
    widget.send("/contact_human_agent")  # the bot is told zh, and the page's script
    expect(widget.bot_replies()).to_have_text([re.compile("轉接")])
    simplified = open_widget(lang="zh-Hans-HK").page  # Simplified characters asked for, in Hong Kong
    expect(simplified.locator("textarea")).to_have_attribute("placeholder", "请输入您的问题…")


def test_a_hong_kong_or_macau_page_is_answered_in_hong_kong_forms(open_widget: Any, web_demo_bot: SimpleNamespace) -> None:
    """A zh-HK page told the bot "traditional", and its customers read Taiwan's forms (後臺, 裡面), not their own."""
    widgets = {tag: open_widget(page_lang=tag) for tag in ("zh-TW", "zh-HK", "zh-Hant-MO")}
    for widget in widgets.values():
        widget.send("/contact_human_agent")
        expect(widget.bot_replies()).to_have_text([re.compile("轉接")])
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        scripts = {tag: json.loads(db.execute("SELECT slots FROM conversations WHERE id = ?",
                                              [widget.conversation_id()]).fetchone()[0]).get("chinese_script")
                   for tag, widget in widgets.items()}
    assert scripts == {"zh-TW": "traditional", "zh-HK": "hongkong", "zh-Hant-MO": "hongkong"}


def test_a_hong_kong_page_shows_the_widget_in_hong_kong_forms(open_widget: Any, web_demo_bot: SimpleNamespace,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """A zh-HK page's widget wrote bot.yml's title and its own labels in Taiwan's forms (衛生, 這裡), beside
    replies in Hong Kong's (衞生, 這裏)."""
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "hygiene",
                           channels={"web": {"title": {"en": "Help", "zh": "卫生用品客服"},
                                             "origins": [web_demo_bot.embed_origin]}})
    with LiveServer(root) as live:
        for tag, title, here in (("zh-TW", "衛生用品客服", "這裡"), ("zh-HK", "衞生用品客服", "這裏")):
            widget = open_widget(server=live.url, page_lang=tag)
            expect(widget.page.locator("h2")).to_have_text(title)
            widget.send("/contact_human_agent")
            expect(widget.page.locator(".banner")).to_contain_text(f"客服會在{here}回覆您")


def test_a_page_of_a_site_the_bot_does_not_list_says_why_in_the_console(open_widget: Any,
                                                                        web_demo_bot: SimpleNamespace) -> None:
    """The greeting showed and every message ended Not sent, with nothing but the browser's CORS errors to go on."""
    other_site = web_demo_bot.embed_origin.replace("localhost", "127.0.0.1")  # the same shop, as another origin
    widget = open_widget(origin=other_site)
    expected = f"origin ({other_site}) may need to be listed in channels.web.origins"
    for _ in range(50):
        if any(line.startswith("error: deskbot: ") and expected in line for line in widget.console):
            break
        widget.page.wait_for_timeout(100)
    assert any(line.startswith("error: deskbot: ") and expected in line for line in widget.console), widget.console


def test_a_chat_in_a_frame_sandboxed_without_allow_same_origin_says_so_in_the_console(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A frame sandboxed without allow-same-origin asks as the origin "null", which the bot refuses: the console asked
    for the page's address to be listed in channels.web.origins, where it already was."""
    widget = open_widget()
    server.pages["/sandboxed.html"] = embed_page(server.url, {})
    server.pages["/framing.html"] = "<!doctype html><iframe src='/sandboxed.html' sandbox='allow-scripts'></iframe>"
    widget.page.goto(f"{web_demo_bot.embed_origin}/framing.html")

    def said() -> list[str]:
        return [line for line in widget.console if line.startswith("error: deskbot: ")]

    for _ in range(50):
        if said():
            break
        widget.page.wait_for_timeout(100)
    assert len(said()) == 1 and "allow-same-origin" in said()[0] and "channels.web.origins" not in said()[0], \
        widget.console


@pytest.mark.parametrize("why", ["internetdisconnected", "connectionrefused"])
def test_a_chat_that_cannot_reach_the_bot_does_not_blame_the_pages_origin(open_widget: Any, server: LiveServer,
                                                                          why: str) -> None:
    """Offline, or with the bot down, the console still said the page's origin may need listing in
    channels.web.origins, sending the page's developer to edit a bot.yml that was right."""
    widget = open_widget()
    page = widget.page
    page.route(f"{server.url}/api/widget", lambda route: route.abort(why))
    widget.console.clear()
    page.reload()
    for _ in range(50):
        if any("/api/widget failed" in line for line in widget.console):
            break
        page.wait_for_timeout(100)
    said = [line for line in widget.console if line.startswith("error: deskbot: ")]
    assert len(said) == 1 and "/api/widget failed" in said[0], widget.console
    assert "channels.web.origins" not in said[0]


def test_the_pages_own_css_neither_restyles_the_chat_nor_covers_it(open_widget: Any) -> None:
    """What the page's rules set on the host div reached the bubbles through it (inherited), and with every
    child of the body stacked at 1, the page's fixed bar at 1000 covered the launcher."""
    css = ("<style>* { letter-spacing: 3px; text-transform: uppercase; }"
           " body > * { position: relative; z-index: 1; }"
           " .bar { position: fixed; left: 0; right: 0; bottom: 0; height: 140px; z-index: 1000; background: #eee; }</style>")
    page = open_widget(page={"head": css, "body": '<div class="bar">Free shipping</div>'}).page
    bubble = page.locator(".msg.bot .bubble").first
    assert bubble.evaluate("(b) => [getComputedStyle(b).letterSpacing, getComputedStyle(b).textTransform]") \
        == ["normal", "none"]
    launcher = page.get_by_role("button", name="Close chat").last
    on_top = launcher.evaluate("""(button) => {
        const box = button.getBoundingClientRect();
        return button.contains(button.getRootNode().elementFromPoint(box.x + box.width / 2, box.y + box.height / 2));
    }""")
    assert on_top
    launcher.click()
    expect(page.locator(".panel")).to_be_hidden()


def test_on_a_right_to_left_page_the_chat_keeps_its_own_direction(open_widget: Any) -> None:
    """An Arabic or Hebrew page's direction reached the chat, which speaks English or Chinese: the customer's
    messages stood on the left and the bot's on the right, Send left of the box and Close left of the title."""
    widget = open_widget(page={"head": "<style>html { direction: rtl }</style>"})
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    right = "(node) => node.getBoundingClientRect().right"
    left = "(node) => node.getBoundingClientRect().left"
    assert page.locator(".msg.user .bubble").evaluate(right) > widget.bot_replies().first.locator(".bubble").evaluate(right)
    assert page.locator(".send").evaluate(left) > page.locator("textarea").evaluate(left)
    assert page.locator(".close").evaluate(left) > page.locator("h2").evaluate(left)
    assert page.locator(".root").evaluate("(root) => getComputedStyle(root).direction") == "ltr"


@pytest.mark.parametrize(("z_index", "stacked"), [(0, "0"), (50, "50"), (None, "2147483000")])
def test_the_chat_stacks_at_the_z_index_the_page_asks(open_widget: Any, z_index: int | None, stacked: str) -> None:
    """A page that asked for zIndex: 0, to keep its own overlays above the chat, got the chat above everything."""
    widget = open_widget(zIndex=z_index)
    assert widget.page.locator(".root").evaluate("(root) => getComputedStyle(root).zIndex") == stacked


@pytest.mark.parametrize("rule", ["div:empty { display: none }", "body > * { filter: blur(0); overflow: hidden }"])
def test_a_page_rule_on_the_chats_host_neither_hides_nor_moves_it(open_widget: Any, rule: str) -> None:
    """The page's rules reach the element the chat lives in: a theme's div:empty { display: none } hid the chat, and
    a filter on the body's children took it off the screen."""
    widget = open_widget(page={"head": f"<style>{rule}</style>"})
    box = widget.page.locator(".panel").bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0
    expect(widget.page.locator(".launcher")).to_be_in_viewport()


def test_the_chat_stays_as_the_customer_left_it_on_the_next_page(open_widget: Any, server: LiveServer,
                                                                 web_demo_bot: SimpleNamespace) -> None:
    """Closed, it opened again on every page of a site whose config opens it; opened, it was closed on the next."""
    widget = open_widget()  # open: true
    page = widget.page
    page.get_by_role("button", name="Close chat").first.click()
    page.reload()
    page.wait_for_function("window.Deskbot")
    expect(page.locator(".panel")).to_be_hidden()
    page.get_by_role("button", name="Open chat").click()
    closed = f"/shop-closed-{next(PAGE_NUMBERS)}.html"
    server.pages[closed] = embed_page(server.url, {"open": False})
    page.goto(f"{web_demo_bot.embed_origin}{closed}")
    expect(page.locator(".panel")).to_be_visible()
    expect(page.get_by_role("button", name="Close chat")).to_have_count(2)
    assert page.evaluate("document.activeElement === document.body")  # open, without taking the page's focus


def test_a_reset_starts_a_new_conversation_for_the_next_customer(open_widget: Any, api: SimpleNamespace,
                                                                slow_turns: None) -> None:
    """A shop whose customers share a device calls Deskbot.reset() as one logs out: the next one gets a new
    conversation, and not even an answer still on its way to the last one."""
    refused_later = """{
      const fetchNow = window.fetch;
      window.fetch = (url, init) => init && String(init.body).includes("refused later")
        ? new Promise((resolve) => setTimeout(resolve, 1000)).then(() => new Response('{"error": "slow down"}', {status: 429}))
        : fetchNow(url, init);
    }"""
    widget = open_widget(transport="http", init_script=refused_later)  # answers on their way: a POST's
    page = widget.page
    widget.send("my address is 1 Main Street")
    expect(widget.bot_replies()).to_have_count(1)
    last = widget.conversation_id()
    widget.send("slow 3 and my phone number is 555 0100")  # answered after the reset
    widget.send("refused later")  # refused after the reset, while the next customer's first message is out
    page.locator("textarea").fill("my card is 4111")  # a draft the last customer left
    page.evaluate("""localStorage.setItem(Object.keys(localStorage).find((k) => k.endsWith(":conversation"))
                                          .replace(/conversation$/, "titles"),
                                          JSON.stringify({"/get_refund": "Refund order 12345"}))""")
    page.evaluate("Deskbot.reset()")
    assert widget.conversation_id() != last
    expect(page.locator(".msg")).to_have_count(1)  # the greeting alone
    expect(page.locator("textarea")).to_have_value("")  # nor the draft
    assert page.evaluate("Object.entries(localStorage).filter(([k]) => k.endsWith(':titles')).map(([, v]) => v)") == ["{}"]
    expect(page.locator(".quick button")).to_have_count(0)
    widget.send("slow 2 hello")
    page.wait_for_timeout(3500)  # the last customer's answer and refusal come meanwhile
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg")).to_have_count(3)  # the greeting, "hello" and its answer
    expect(page.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    assert [t["text"] for t in api.history(widget.conversation_id())["turns"] if t["role"] == "user"] == ["slow 2 hello"]
    page.reload()
    expect(page.locator(".msg.user .bubble")).to_have_text(["slow 2 hello"])

    widget = open_widget()  # over the socket, which joins as the new conversation
    widget.page.wait_for_function("Deskbot.connected()")
    widget.page.evaluate("Deskbot.reset()")
    api.chat(widget.conversation_id(), "hello")  # the new conversation, begun elsewhere (another tab)
    widget.page.wait_for_function("Deskbot.connected()")
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Hello from Sam", "agent": "Sam"})
    expect(widget.page.locator(".msg.agent .bubble")).to_have_text(["Hello from Sam"])


def test_a_reset_in_one_tab_starts_the_chat_over_in_the_others(open_widget: Any, api: SimpleNamespace,
                                                               web_demo_bot: SimpleNamespace) -> None:
    """A customer who logged out in one tab of a shared device left their conversation on show in the shop's other
    tabs, where the next customer's messages went on into it, stored as the last customer's."""
    widget = open_widget(pollInterval=60_000, user="customer-4715")
    page = widget.page
    other_tab = widget.context.new_page()  # the same conversation on another page of the shop
    other_tab.goto(page.url)
    other_tab.wait_for_function("Deskbot.connected()")
    widget.send("my card is 4111")
    expect(other_tab.locator(".msg.user .bubble")).to_have_text(["my card is 4111"])
    page.evaluate("Deskbot.reset()")
    expect(other_tab.locator(".msg")).to_have_count(1)  # the greeting alone
    assert other_tab.evaluate("Deskbot.conversationId()") == widget.conversation_id()
    other_tab.wait_for_function("Deskbot.connected()")
    other_tab.locator("textarea").fill("hello")
    other_tab.locator("textarea").press("Enter")
    expect(widget.bot_replies()).to_have_count(1)  # the tab that reset sees it: one conversation again
    assert [t["text"] for t in api.history(widget.conversation_id())["turns"] if t["role"] == "user"] == ["hello"]
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT user FROM turns WHERE role = 'user' AND conversation_id = ?",
                          [widget.conversation_id()]).fetchall() == [(None,)]
    other_tab.close()


def test_a_stale_visitors_tab_leaves_the_customer_signed_in_in_another_tab_their_conversation(
        open_widget: Any, web_demo_bot: SimpleNamespace, identity_secret: str) -> None:
    """A customer signed in in one tab (Deskbot.identify()) made the conversation the tabs shared theirs; a message
    typed in a tab still showing the visitor's page was refused there for good, and once that tab started a new
    conversation every other tab followed it, the signed-in one included, which forgot its customer."""
    slow_hello = """{
      const fetchNow = window.fetch;
      window.fetch = (url, init) => init && String(init.body).includes('"text":"hello"')
        ? new Promise((resolve) => setTimeout(resolve, 1500)).then(() => fetchNow(url, init)) : fetchNow(url, init);
    }"""  # a slow network, over which the customer types on while their message is out
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=slow_hello)
    signed_in = visitor.context.new_page()  # another tab of the shop, where the customer signs in
    signed_in.goto(visitor.page.url)
    expect(signed_in.locator(".panel")).to_be_visible()
    proof = hmac.new(identity_secret.encode(), b"u-21", hashlib.sha256).hexdigest()
    signed_in.evaluate(f"Deskbot.identify({{ user: 'u-21', userHash: '{proof}' }})")
    signed_in.locator("textarea").fill("where is my parcel")
    signed_in.locator("textarea").press("Enter")
    expect(signed_in.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    theirs = signed_in.evaluate("Deskbot.conversationId()")
    visitor.send("hello")
    visitor.page.locator("textarea").fill("and one more thing")
    expect(visitor.bot_replies()).to_have_count(1)  # in a conversation of its own
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["hello"])
    expect(visitor.page.locator("textarea")).to_have_value("and one more thing")
    assert visitor.conversation_id() != theirs
    signed_in.wait_for_timeout(500)  # the visitor's new conversation is announced to the other tabs meanwhile
    assert signed_in.evaluate("Deskbot.conversationId()") == theirs
    signed_in.locator("textarea").fill("it was due Monday")
    signed_in.locator("textarea").press("Enter")
    expect(signed_in.locator(".msg.bot[data-turn-id]")).to_have_count(2)
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        stored = db.execute("SELECT conversation_id, user FROM turns WHERE role = 'user' AND conversation_id IN (?, ?) "
                            "ORDER BY id", [theirs, visitor.conversation_id()]).fetchall()
    assert stored == [(theirs, "u-21"), (visitor.conversation_id(), None), (theirs, "u-21")]
    signed_in.close()


def sign_in_in_another_tab(visitor: Widget, identity_secret: str, user: str) -> tuple[Page, str]:
    """Another tab of the shop, where the visitor signs in as ``user`` (Deskbot.identify()) and asks something: the
    conversation the site's tabs shared becomes theirs alone. That tab, and the conversation's id."""
    signed_in = visitor.context.new_page()
    signed_in.goto(visitor.page.url)
    expect(signed_in.locator(".panel")).to_be_visible()
    proof = hmac.new(identity_secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    signed_in.evaluate(f"Deskbot.identify({{ user: '{user}', userHash: '{proof}' }})")
    signed_in.locator("textarea").fill("where is my parcel")
    signed_in.locator("textarea").press("Enter")
    expect(signed_in.locator(".msg.user[data-turn-id]:has-text('where is my parcel') + .msg.bot[data-turn-id]")
           ).to_have_count(1)  # answered, after what the conversation held
    return signed_in, str(signed_in.evaluate("Deskbot.conversationId()"))


def user_texts(api: SimpleNamespace, conversation_id: str) -> list[str]:
    return [t["text"] for t in api.history(conversation_id)["turns"] if t["role"] == "user"]


# Messages typed and sent in one go, each out before the server has answered any.
SEND_TOGETHER = """(texts) => {
  const shadow = document.getElementById("deskbot-widget").shadowRoot;
  for (const text of texts) {
    shadow.querySelector("textarea").value = text;
    shadow.querySelector("form").requestSubmit();
  }
}"""


@pytest.mark.parametrize("transport", ["socket", "http"])
def test_every_message_out_from_a_stale_visitors_tab_goes_on_in_its_new_conversation(
        open_widget: Any, api: SimpleNamespace, identity_secret: str, transport: str) -> None:
    """Two messages sent quickly from a tab still showing the visitor's page once the customer signed in in another:
    the first, refused, went on in a conversation of the tab's own, and the second, refused too (or cut off with the
    socket the tab left), vanished from the chat, neither answered nor marked Not sent."""
    visitor = open_widget(pollInterval=60_000, transport=transport)
    if transport == "socket":
        visitor.page.wait_for_function("Deskbot.connected()")
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-23")
    visitor.page.evaluate(SEND_TOGETHER, ["hello", "and one more thing"])
    expect(visitor.bot_replies()).to_have_count(2)
    expect(visitor.page.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    assert visitor.conversation_id() != theirs
    shown = visitor.page.locator(".msg.user .bubble").all_text_contents()
    assert shown == user_texts(api, visitor.conversation_id()) == ["hello", "and one more thing"]
    signed_in.close()


def held_answer(text: str) -> str:
    """A network that holds the answer to ``text`` (the first time it is sent) until the page calls ``release()``:
    ``answerHeld`` once it has come, the message kept and answered by the server."""
    return """{
      const fetchNow = window.fetch;
      let held = false;
      window.fetch = (url, init) => {
        const asked = fetchNow(url, init);
        if (held || !init || !String(init.body).includes('"text":%s')) return asked;
        held = true;
        const released = new Promise((resolve) => (window.release = resolve));
        return asked.then((answer) => {
          window.answerHeld = true;
          return released.then(() => answer);
        });
      };
    }""" % json.dumps(text)


def moved_on(page: Page, left: str) -> None:
    """Release the answer held (:func:`held_answer`) once the tab has left the conversation ``left``."""
    page.wait_for_function("(left) => Deskbot.conversationId() !== left", arg=left)
    page.evaluate("window.release()")


def test_two_messages_refused_in_reverse_order_in_a_stale_visitors_tab_go_on_in_the_order_typed(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """Two messages sent together over HTTP from a tab still showing the visitor's page once the customer signed in in
    another: each was shown and sent again in a new bubble as its own refusal came, the second first when its refusal
    came first, and the customer read their messages, and the bot answered them, in reverse order."""
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=held_answer("hello"))
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-31")
    visitor.page.evaluate(SEND_TOGETHER, ["hello", "and one more thing"])
    visitor.page.evaluate("""() => {
      const shadow = document.getElementById("deskbot-widget").shadowRoot;
      for (const message of shadow.querySelectorAll(".msg.user")) message.typedHere = true;
    }""")  # the bubbles the customer saw as they sent them
    moved_on(visitor.page, theirs)  # the refusal of "and one more thing" came first
    expect(visitor.bot_replies()).to_have_count(2)
    expect(visitor.page.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    assert visitor.conversation_id() != theirs
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["hello", "and one more thing"])
    assert visitor.page.evaluate("""() => [...document.getElementById("deskbot-widget").shadowRoot
      .querySelectorAll(".msg.user")].map((message) => message.typedHere === true)""") == [True, True]
    assert user_texts(api, visitor.conversation_id()) == ["hello", "and one more thing"]
    signed_in.close()


@pytest.mark.parametrize("transport", ["socket", "http"])
def test_messages_a_stale_visitors_tab_sends_on_keep_the_order_typed_behind_a_slow_answer(
        open_widget: Any, api: SimpleNamespace, identity_secret: str, slow_turns: None, transport: str) -> None:
    """Messages a tab still showing the visitor's page had out when the customer signed in in another went on in a
    conversation of its own one after the other's answer: behind a slow one (an order system's), the next waited, and a
    message typed meanwhile in the new conversation came before it, answered out of the order typed."""
    visitor = open_widget(pollInterval=60_000, transport=transport)
    if transport == "socket":
        visitor.page.wait_for_function("Deskbot.connected()")
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-35")
    typed = ["slow 3 hello", "and one more thing", "and a third"]
    visitor.page.evaluate(SEND_TOGETHER, typed[:2])
    visitor.page.wait_for_function("(left) => Deskbot.conversationId() !== left", arg=theirs)
    visitor.send(typed[2])  # while the first is answered
    expect(visitor.bot_replies()).to_have_count(3, timeout=20_000)
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(typed)
    assert user_texts(api, visitor.conversation_id()) == typed
    signed_in.close()


def test_a_message_answered_just_before_a_stale_visitors_tab_went_on_in_a_new_conversation_stays_with_its_answer(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A message the visitor's conversation took just before the customer signed in in another tab, its answer still on
    its way when the tab's next message was refused there: the tab went on in a conversation of its own, and the first
    message vanished from its chat, its answer dropped, as if it had never been sent."""
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=held_answer("hello"))
    visitor.send("hello")
    left = visitor.conversation_id()
    visitor.page.wait_for_function("window.answerHeld")  # its answer is on its way
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-32")
    assert theirs == left
    visitor.send("and one more thing")
    moved_on(visitor.page, left)
    expect(visitor.page.locator(".msg.user + .msg.bot")).to_have_count(2)  # each with its answer below it
    expect(visitor.bot_replies()).to_have_count(1)  # the one turn of the new conversation's: its thumbs
    expect(visitor.page.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["hello", "and one more thing"])
    assert visitor.conversation_id() != theirs
    assert user_texts(api, visitor.conversation_id()) == ["and one more thing"]
    expect(signed_in.locator(".msg.user .bubble")).to_have_text(["hello", "where is my parcel"])
    signed_in.close()


def test_a_message_answered_just_before_a_stale_visitors_tab_went_on_in_a_new_conversation_is_shown_after_a_reload(
        open_widget: Any, identity_secret: str) -> None:
    """The answer a tab still showing the visitor's page showed for a message the conversation took just before the
    customer signed in in another tab lived on that tab alone: not in the history of the conversation the tab went on
    in, it was gone, and the message with it, once the page was reloaded."""
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=held_answer("hello"))
    visitor.send("hello")
    left = visitor.conversation_id()
    visitor.page.wait_for_function("window.answerHeld")  # its answer is on its way
    signed_in, _ = sign_in_in_another_tab(visitor, identity_secret, "u-34")
    visitor.send("and one more thing")
    moved_on(visitor.page, left)
    answered = visitor.page.locator(".msg.user + .msg.bot .bubble")
    expect(answered).to_have_count(2)
    answers = answered.all_text_contents()
    visitor.page.reload()
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["hello", "and one more thing"])
    expect(answered).to_have_text(answers)  # each below its message
    expect(visitor.bot_replies()).to_have_count(1)  # the one turn of the new conversation's: its thumbs
    signed_in.close()


def test_the_agents_of_the_conversation_a_stale_visitors_tab_went_on_in_find_the_one_it_left(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """The messages a tab still showed from the conversation it left, closed to it as the customer signed in in
    another tab, were in neither the transcript of the conversation it went on in nor named there: an agent taking the
    customer over saw nothing of what they had asked and been answered. Each conversation names the other."""
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=held_answer("hello"))
    visitor.send("hello")
    left = visitor.conversation_id()
    visitor.page.wait_for_function("window.answerHeld")  # its answer is on its way
    signed_in, _ = sign_in_in_another_tab(visitor, identity_secret, "u-35")
    visitor.send("and one more thing")
    moved_on(visitor.page, left)
    expect(visitor.page.locator(".msg.user + .msg.bot")).to_have_count(2)  # "hello" answered there, shown here
    visitor.send("thanks")
    expect(visitor.bot_replies()).to_have_count(2)
    went_on = visitor.conversation_id()
    assert user_texts(api, went_on) == ["and one more thing", "thanks"]
    assert [o["conversation_id"] for o in api.get(f"/admin/conversations/{went_on}")["others"]] == [left]
    assert went_on in [o["conversation_id"] for o in api.get(f"/admin/conversations/{left}")["others"]]
    signed_in.close()


def test_a_tab_reloaded_after_following_another_into_a_new_conversation_still_names_the_one_it_left(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A visitor's tab that followed another into a conversation of its own, once the customer signed in in a third,
    kept its proof of the conversation it left in its memory alone: reloaded before its next message, it told the
    server nothing, and the agents of the new conversation never found the one whose messages the customer had seen."""
    visitor = open_widget(pollInterval=60_000, transport="http")
    visitor.send("hello")
    expect(visitor.bot_replies()).to_have_count(1)
    left = visitor.conversation_id()
    second = visitor.context.new_page()  # a visitor's tab that sent nothing there: no proof of its own
    second.goto(visitor.page.url)
    expect(second.locator(".msg.user .bubble")).to_have_text(["hello"])
    signed_in, _ = sign_in_in_another_tab(visitor, identity_secret, "u-37")
    second.locator("textarea").fill("hi")
    second.locator("textarea").press("Enter")
    second.wait_for_function("(left) => Deskbot.conversationId() !== left", arg=left)  # in a conversation of its own
    expect(second.locator(".msg.user[data-turn-id] .bubble")).to_have_text(["hi"])
    went_on = second.evaluate("Deskbot.conversationId()")
    visitor.page.wait_for_function("(id) => Deskbot.conversationId() === id", arg=went_on)  # followed it there
    visitor.page.reload()
    expect(visitor.page.locator(".panel")).to_be_visible()
    visitor.send("thanks")
    expect(visitor.page.locator(".msg.user[data-turn-id]")).to_have_count(2)
    assert visitor.conversation_id() == went_on and user_texts(api, went_on) == ["hi", "thanks"]
    assert [o["conversation_id"] for o in api.get(f"/admin/conversations/{went_on}")["others"]] == [left]
    second.close()
    signed_in.close()


def test_a_message_answered_while_its_tab_follows_another_into_a_new_conversation_stays_with_its_answer(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A visitor's tab whose message the conversation had taken, its answer slow to come, followed another of the
    site's visitor tabs into a conversation of its own once the customer signed in in a third: the message vanished
    from its chat, its answer dropped on arrival, as if it had never been sent."""
    first = open_widget(pollInterval=60_000, transport="http", init_script=held_answer("slow network"))
    second = first.context.new_page()
    second.goto(first.page.url)
    expect(second.locator(".panel")).to_be_visible()
    second.locator("textarea").fill("slow network")
    second.locator("textarea").press("Enter")
    left = first.conversation_id()
    second.wait_for_function("window.answerHeld")  # its answer is on its way
    signed_in, theirs = sign_in_in_another_tab(first, identity_secret, "u-33")
    first.send("hello")  # refused: this tab starts a conversation, which the other follows
    moved_on(second, left)
    expect(first.bot_replies()).to_have_count(1)
    # "hello", out in the first tab, shows here too where this tab follows before it is answered, else with the next
    # poll: which comes first is the machine's timing, not the widget's; the poll is asked for now (back online)
    second.evaluate("window.dispatchEvent(new Event('online'))")
    expect(second.locator(".msg.user + .msg.bot")).to_have_count(2)  # each with its answer below it
    expect(second.locator(".msg.user .bubble").first).to_have_text("slow network")
    expect(second.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    assert second.evaluate("Deskbot.conversationId()") == first.conversation_id() != theirs
    assert user_texts(api, first.conversation_id()) == ["hello"]
    second.close()
    signed_in.close()


def test_a_stale_visitors_tab_following_another_into_a_new_conversation_takes_its_message_out_along(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A visitor's tab whose message was still on its way when another of the site's visitor tabs, refused, started a
    conversation of its own followed that tab into it, and its message, refused in the signed-in customer's
    conversation it was sent to, was dropped without a word."""
    slow = """{
      const fetchNow = window.fetch;
      window.fetch = (url, init) => init && String(init.body).includes('"text":"slow network"')
        ? new Promise((resolve) => setTimeout(resolve, 2000)).then(() => fetchNow(url, init)) : fetchNow(url, init);
    }"""
    first = open_widget(pollInterval=60_000, transport="http", init_script=slow)
    second = first.context.new_page()
    second.goto(first.page.url)
    expect(second.locator(".panel")).to_be_visible()
    signed_in, theirs = sign_in_in_another_tab(first, identity_secret, "u-24")
    second.locator("textarea").fill("slow network")
    second.locator("textarea").press("Enter")
    first.send("hello")  # refused at once: this tab starts a conversation, which the other follows
    expect(first.bot_replies()).to_have_count(1)
    expect(second.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    # "hello", out in the first tab, shows here too where this tab follows before it is answered, else with the next
    # poll: which comes first is the machine's timing, not the widget's
    expect(second.locator(".msg.user .bubble").first).to_have_text("slow network")
    expect(second.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    assert second.evaluate("Deskbot.conversationId()") == first.conversation_id() != theirs
    assert user_texts(api, first.conversation_id()) == ["hello", "slow network"]
    second.close()
    signed_in.close()


def test_a_message_not_sent_in_a_stale_visitors_tab_stays_when_it_goes_on_in_a_new_conversation(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A message marked Not sent (written offline) in a tab still showing the visitor's page went from the chat, and its
    Retry with it, once the customer's next message there, refused as they had signed in in another tab, started a
    conversation of the tab's own: what they had written was lost."""
    visitor = open_widget(pollInterval=60_000, transport="http")
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-27")
    visitor.context.set_offline(True)
    visitor.send("my parcel is late")
    expect(visitor.page.locator(".msg.user.failed")).to_have_count(1, timeout=3_000)
    visitor.context.set_offline(False)
    visitor.send("hello")
    expect(visitor.bot_replies()).to_have_count(1)
    assert visitor.conversation_id() != theirs
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["my parcel is late", "hello"])
    visitor.page.get_by_role("button", name="Retry").click()
    expect(visitor.bot_replies()).to_have_count(2)
    expect(visitor.page.locator(".msg.failed")).to_have_count(0)
    assert user_texts(api, visitor.conversation_id()) == ["hello", "my parcel is late"]
    signed_in.close()

def test_a_signed_out_customers_message_not_sent_goes_with_their_conversation_when_the_next_one_writes(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A page that names its next customer with Deskbot.identify({}) rather than Deskbot.reset() goes on in a new
    conversation with their first message: a message of the signed-out customer's marked Not sent there must not
    follow it, for the next customer to read and send as theirs with its Retry."""
    proof = hmac.new(identity_secret.encode(), b"u-30", hashlib.sha256).hexdigest()
    customer = open_widget(user="u-30", userHash=proof, pollInterval=60_000, transport="http")
    customer.send("where is my parcel")
    expect(customer.bot_replies()).to_have_count(1)
    customer.context.set_offline(True)
    customer.send("my address is 1 Main Street")
    expect(customer.page.locator(".msg.user.failed")).to_have_count(1, timeout=3_000)
    customer.context.set_offline(False)
    customer.page.evaluate("Deskbot.identify({})")  # signed out
    customer.send("hello")
    expect(customer.page.locator(".msg.user .bubble")).to_have_text(["hello"])
    expect(customer.page.locator(".msg.user.out, .msg.failed")).to_have_count(0)
    expect(customer.bot_replies()).to_have_count(1)
    assert user_texts(api, customer.conversation_id()) == ["hello"]

def test_a_message_a_stale_visitors_tab_still_looks_for_is_marked_not_sent_when_it_goes_on_in_a_new_conversation(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """A message whose answer a tab was still looking for in the history (the page reloaded while it was out) went from
    the chat without a word once the tab, refused as the customer had signed in in another, started a conversation of
    its own: neither answered nor marked Not sent, and what the customer had written was lost."""
    lost = """{
      const fetchNow = window.fetch;
      window.fetch = (url, init) => init && String(init.body).includes('"text":"lost on the way"')
        ? new Promise(() => {}) : fetchNow(url, init);
    }"""  # a network that never delivers it
    visitor = open_widget(pollInterval=60_000, transport="http", init_script=lost)
    visitor.send("lost on the way")
    expect(visitor.page.locator(".msg.user.out")).to_have_count(1)
    visitor.page.reload()  # while it is out: looked for in the history for a minute
    expect(visitor.page.locator(".msg.user.out .bubble")).to_have_text(["lost on the way"])
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-29")
    visitor.send("hello")
    expect(visitor.bot_replies()).to_have_count(1)
    assert visitor.conversation_id() != theirs
    expect(visitor.page.locator(".msg.user .bubble")).to_have_text(["lost on the way", "hello"])
    expect(visitor.page.locator(".msg.user.failed .bubble")).to_have_text(["lost on the way"])
    assert user_texts(api, visitor.conversation_id()) == ["hello"]
    signed_in.close()

def test_a_stale_visitors_tab_going_on_in_a_new_conversation_leaves_the_signed_in_customer_their_choices_titles(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace, identity_secret: str) -> None:
    """A choice the signed-in customer pressed showed as its payload (/check_refund_policy) in their pages opened
    since, once a tab still showing the visitor's page had started a conversation of its own: it forgot every
    choice's title as a new customer's conversation does, though theirs goes on."""
    visitor = open_widget(pollInterval=60_000, transport="http")
    signed_in, theirs = sign_in_in_another_tab(visitor, identity_secret, "u-28")
    choice = signed_in.locator(".quick button").first
    title = choice.inner_text()
    choice.click()
    expect(signed_in.locator(".msg.bot[data-turn-id]")).to_have_count(2)
    visitor.send("hello")
    expect(visitor.bot_replies()).to_have_count(1)
    assert visitor.conversation_id() != theirs
    proof = hmac.new(identity_secret.encode(), b"u-28", hashlib.sha256).hexdigest()
    path = f"/shop-signed-in-{next(PAGE_NUMBERS)}.html"
    server.pages[path] = embed_page(server.url, {"open": True, "pollInterval": 60_000, "user": "u-28", "userHash": proof})
    signed_in.goto(f"{web_demo_bot.embed_origin}{path}")  # their next page
    expect(signed_in.locator(".msg.user .bubble")).to_have_text(["where is my parcel", title])
    assert signed_in.evaluate("Deskbot.conversationId()") == theirs
    signed_in.close()

# The storage events (another tab's new conversation) a page gets kept back while ``heldStorage`` is a list, and given
# to it by ``releaseStorage()``: as they come when two tabs start a conversation at the same moment, each after its own.
HOLD_STORAGE = """
window.heldStorage = null;
addEventListener("storage", (event) => {
  if (!window.heldStorage) return;
  event.stopImmediatePropagation();
  window.heldStorage.push(event);
}, true);
window.releaseStorage = () => {
  const held = window.heldStorage;
  window.heldStorage = null;
  for (const { key, oldValue, newValue, url, storageArea } of held) {
    dispatchEvent(new StorageEvent("storage", { key, oldValue, newValue, url, storageArea }));
  }
};
"""


def test_two_stale_visitors_tabs_refused_at_once_go_on_in_one_conversation(
        open_widget: Any, api: SimpleNamespace, identity_secret: str) -> None:
    """Two tabs still showing the visitor's page, refused at the same moment once the customer signed in in a third,
    each started a conversation and then followed the other's: they swapped, each showing the other's message, and its
    own message's answer was dropped. Each then went on in its own, and a reload of either opened the one stored last
    alone: the other tab's messages were gone from view. The tab whose conversation was not stored last joins the one
    that was, showing what was said there at once below what it showed in its own, which stays, there and after a
    reload."""
    first = open_widget(pollInterval=60_000, init_script=HOLD_STORAGE)
    second = first.context.new_page()
    second.goto(first.page.url)
    for page in (first.page, second):
        page.wait_for_function("Deskbot.connected()")
    signed_in, theirs = sign_in_in_another_tab(first, identity_secret, "u-25")
    for page in (first.page, second):
        page.evaluate("window.heldStorage = []")
    first.send("hello from the first tab")
    second.locator("textarea").fill("hello from the second tab")
    second.locator("textarea").press("Enter")
    expect(first.bot_replies()).to_have_count(1)
    expect(second.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    started = {page: str(page.evaluate("Deskbot.conversationId()")) for page in (first.page, second)}
    assert len({*started.values(), theirs}) == 3
    for page in (first.page, second):
        page.wait_for_function("window.heldStorage.some((event) => event.key.endsWith(':conversation'))")
        page.evaluate("releaseStorage()")
    kept = first.page.evaluate("""JSON.parse(localStorage.getItem(Object.keys(localStorage)
                                                        .find((k) => k.endsWith(":conversation")))).id""")
    stayed, joined = (first.page, second) if started[first.page] == kept else (second, first.page)
    said = {first.page: "hello from the first tab", second: "hello from the second tab"}
    joined.wait_for_function("(kept) => Deskbot.conversationId() === kept", arg=kept)
    assert stayed.evaluate("Deskbot.conversationId()") == kept
    expect(joined.locator(".msg.user .bubble")).to_have_text([said[joined], said[stayed]])  # its own first
    expect(joined.locator(".msg.user + .msg.bot")).to_have_count(2)  # each with its answer
    joined.wait_for_function("Deskbot.connected()")
    joined.locator("textarea").fill("and one more thing")
    joined.locator("textarea").press("Enter")
    expect(joined.locator(".msg.bot[data-turn-id]")).to_have_count(2)  # answered in the conversation stored
    assert user_texts(api, kept) == [said[stayed], "and one more thing"]
    for page in (first.page, second):
        page.reload()
        expect(page.locator(".msg.user .bubble")).to_have_text([said[joined], said[stayed], "and one more thing"])
        expect(page.locator(".msg.user + .msg.bot")).to_have_count(3)
    second.close()
    signed_in.close()


def test_every_tab_whose_page_signs_the_customer_in_hears_their_agent(open_widget: Any, api: SimpleNamespace,
                                                                       identity_secret: str) -> None:
    """A single-page shop signs its customer in in each of its open tabs (Deskbot.identify()): once they wrote in one,
    the others, whose sockets had joined the conversation as the visitor's, stopped hearing it, and an agent's reply
    reached them only with a reload."""
    first = open_widget(pollInterval=60_000)
    second = first.context.new_page()
    second.goto(first.page.url)
    proof = hmac.new(identity_secret.encode(), b"u-26", hashlib.sha256).hexdigest()
    for page in (first.page, second):
        page.wait_for_function("Deskbot.connected()")
        page.evaluate(f"Deskbot.identify({{ user: 'u-26', userHash: '{proof}' }})")
    first.send("where is my parcel")
    expect(first.bot_replies()).to_have_count(1)
    expect(second.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    api.admin(f"/admin/conversations/{first.conversation_id()}/messages", {"text": "Hello from Sam", "agent": "Sam"})
    for page in (first.page, second):
        expect(page.locator(".msg.agent .bubble")).to_have_text(["Hello from Sam"])
    second.close()

def test_tabs_that_reset_the_chat_at_the_same_moment_go_on_in_one_conversation(open_widget: Any) -> None:
    """A shop that signs its customer out in every tab at once (its sign-in library tells each tab) calls
    Deskbot.reset() in each: each started a conversation and then followed the other's, so that they swapped, and the
    tabs no longer shared one; the one the site's next page opens on was left to one tab alone."""
    first = open_widget(pollInterval=60_000, user="customer-4716", init_script=HOLD_STORAGE)
    second = first.context.new_page()
    second.goto(first.page.url)
    expect(second.locator(".panel")).to_be_visible()
    for page in (first.page, second):
        page.evaluate("window.heldStorage = []")
    for page in (first.page, second):
        page.evaluate("Deskbot.reset()")
    for page in (first.page, second):
        page.wait_for_function("window.heldStorage.some((event) => event.key.endsWith(':conversation'))")
        page.evaluate("releaseStorage()")
    kept = first.page.evaluate("""JSON.parse(localStorage.getItem(Object.keys(localStorage)
                                                        .find((k) => k.endsWith(":conversation")))).id""")
    assert first.conversation_id() == second.evaluate("Deskbot.conversationId()") == kept
    second.close()

def test_a_signed_in_customers_page_opens_on_their_conversation_though_a_visitors_tab_started_one(
        open_widget: Any, server: LiveServer, web_demo_bot: SimpleNamespace, identity_secret: str) -> None:
    """Once a visitor's tab of the site started a conversation of its own, the customer's page reloaded, or opened in
    a new tab, showed the visitor's conversation, and their own was gone from their view."""
    proof = hmac.new(identity_secret.encode(), b"u-22", hashlib.sha256).hexdigest()
    customer = open_widget(user="u-22", userHash=proof, pollInterval=60_000)
    server.pages["/visitors-page.html"] = embed_page(server.url, {"open": True, "pollInterval": 60_000})
    visitor = customer.context.new_page()  # a page of the shop that names no customer, open from before
    visitor.goto(f"{web_demo_bot.embed_origin}/visitors-page.html")
    visitor.wait_for_function("Deskbot.connected()")
    customer.send("where is my parcel")
    expect(customer.bot_replies()).to_have_count(1)
    theirs = customer.conversation_id()
    visitor.locator("textarea").fill("hello")
    visitor.locator("textarea").press("Enter")
    expect(visitor.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    customer.page.reload()
    expect(customer.page.locator(".msg.user .bubble")).to_have_text(["where is my parcel"])
    assert customer.conversation_id() == theirs
    another = customer.context.new_page()
    another.goto(customer.page.url)
    expect(another.locator(".msg.user .bubble")).to_have_text(["where is my parcel"])
    customer.page.evaluate("Deskbot.reset()")  # signed out: their next page is a new customer's
    another.reload()
    expect(another.locator(".msg")).to_have_count(1)  # the greeting alone

    # A shop that signs its customer out with a page load (no Deskbot.reset()): the visitor's page that follows starts
    # a conversation of their own, which their page once they sign in again goes on with.
    another.locator("textarea").fill("my order 4711")
    another.locator("textarea").press("Enter")
    expect(another.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    visitor.goto(f"{web_demo_bot.embed_origin}/visitors-page.html")
    expect(visitor.locator(".msg")).to_have_count(1)
    visitor.locator("textarea").fill("can I return shoes")
    visitor.locator("textarea").press("Enter")
    expect(visitor.locator(".msg.bot[data-turn-id]")).to_have_count(1)
    another.reload()  # signed in again
    expect(another.locator(".msg.user .bubble")).to_have_text(["can I return shoes"])


def channels(color: str) -> tuple[float, float, float]:
    """A computed colour, ``rgb(…)`` or ``color(srgb …)`` (what color-mix() gives), as 0-255 channels."""
    if color.startswith("color(srgb"):
        r, g, b = (float(value) * 255 for value in color[len("color(srgb"):].split("/")[0].strip(" )").split()[:3])
    else:
        r, g, b = (float(value) for value in re.findall(r"[\d.]+", color)[:3])
    return r, g, b


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two computed colours."""
    def luminance(color: str) -> float:
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in channels(color))]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def on(layer: str, below: str) -> str:
    """A translucent colour over the one below it, as the eye sees them."""
    alpha = float(re.findall(r"[\d.]+", layer)[3]) if layer.startswith("rgba") else 1.0
    mixed = (a * alpha + b * (1 - alpha) for a, b in zip(channels(layer), channels(below)))
    return "rgb({}, {}, {})".format(*mixed)


TEXT_AND_BACKGROUNDS = """(root) => {
    const style = (selector) => getComputedStyle(root.querySelector(selector));
    const pair = (selector) => [selector, style(selector).color, style(selector).backgroundColor];
    const header = style("header").backgroundImage.match(/(rgb|color)\\([^)]*\\)/g);
    return [pair(".launcher"), pair(".send"), pair(".msg.user .bubble"), pair(".quick button"),
            ...header.map((stop) => ["header", style("h2").color, stop])];
}"""


@pytest.mark.parametrize("primary", ["#fde047", "#22c55e", "#4f46e5", "#1e293b"])
def test_a_light_brand_colour_leaves_the_chats_text_readable(open_widget: Any, primary: str) -> None:
    """With a site's light brand colour (colors.primary: "#fde047") the launcher's icon, the header, the customer's
    bubbles and Send stayed white on it (1.3:1), and the choices' titles were written in it on white."""
    widget = open_widget(colors={"primary": primary})
    widget.send("hello")
    expect(widget.page.locator(".quick button").first).to_be_visible()
    pairs = widget.page.locator(".root").evaluate(TEXT_AND_BACKGROUNDS)
    low = [(what, text, background) for what, text, background in pairs if contrast(text, background) < 4.5]
    assert not low, low
    own = open_widget(colors={"primary": "#fde047", "onPrimary": "#7a2e0e"}).page  # the site's own choice stands
    assert own.locator(".launcher").evaluate("(node) => getComputedStyle(node).color") == "rgb(122, 46, 14)"


FOCUS_RINGS = """(root, shop) => {
    const ring = (selector, background) => {
        const node = root.querySelector(selector);
        node.focus();
        const style = getComputedStyle(node);
        return [selector, node.matches(":focus-visible"), style.outlineStyle, parseFloat(style.outlineWidth),
                style.outlineColor, background];
    };
    const panel = getComputedStyle(root.querySelector(".panel")).backgroundColor;
    const header = getComputedStyle(root.querySelector("header")).backgroundImage.match(/(rgb|color)\\([^)]*\\)/g);
    return [...header.map((stop) => ring(".close", stop)), ring(".quick button", panel), ring("textarea", panel),
            ring(".launcher", shop)];
}"""


@pytest.mark.parametrize("primary", ["#4f46e5", "#fde047"])
def test_the_keyboards_place_is_seen_on_every_control(open_widget: Any, primary: str) -> None:
    """The focus ring was the brand colour at 45%: 2:1 on white, and on the header's close button, itself on the
    brand colour, all but invisible; the message box had none."""
    widget = open_widget(colors={"primary": primary})
    widget.send("hello")
    expect(widget.page.locator(".quick button").first).to_be_visible()
    shop = widget.page.evaluate("getComputedStyle(document.body).backgroundColor")
    rings = widget.page.locator(".root").evaluate(FOCUS_RINGS, "rgb(255, 255, 255)" if shop == "rgba(0, 0, 0, 0)" else shop)
    for what, visible, style, width, color, background in rings:
        assert visible and style == "solid" and width >= 2, (what, style, width)
        assert "/" not in color and "rgba" not in color and contrast(color, background) >= 3, (what, color, background)


def test_in_high_contrast_the_launcher_send_and_each_message_keep_their_edges(open_widget: Any) -> None:
    """Forced colours (a Windows contrast theme) take every background: the launcher, Send, the header and the
    bubbles, drawn by their background alone, lost their edges, and the customer's messages ran into the bot's."""
    widget = open_widget()
    widget.page.emulate_media(forced_colors="active")
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    widget.page.get_by_role("button", name="Not helpful").click()  # its box for what was wrong, with a Send
    expect(widget.page.locator(".comment button")).to_be_visible()
    # New messages, drawn over the list by its background alone, read as one more line of the messages under it
    edges = widget.page.locator(".root").evaluate("""(root) => [".launcher", ".send", ".msg.user .bubble",
        ".msg.bot .bubble", "header", ".jump", ".comment button"].map((selector) => {
            const style = getComputedStyle(root.querySelector(selector));
            return [selector, style.borderBottomStyle, style.borderBottomWidth, style.borderBottomColor];
        })""")
    seen = [selector for selector, style, width, color in edges
            if style == "solid" and width != "0px" and color not in ("transparent", "rgba(0, 0, 0, 0)")]
    assert seen == [selector for selector, *_ in edges], edges
    # The typing dots, drawn by their background alone, were gone too: the indicator an empty outline.
    dots, panel = widget.page.locator(".root").evaluate(
        "(root) => ['.dots i', '.panel'].map((selector) => getComputedStyle(root.querySelector(selector)).backgroundColor)")
    assert contrast(dots, panel) >= 3, (dots, panel)


def test_a_customer_who_asks_for_less_motion_gets_none(open_widget: Any) -> None:
    """With the system's "reduce motion" the animations stopped, but the message list still scrolled smoothly
    (the arrow keys, Page Down, a link or button brought into view)."""
    widget = open_widget()
    widget.page.emulate_media(reduced_motion="reduce")
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    motion = widget.page.locator(".root").evaluate("""(root) => [...root.querySelectorAll("*")].map((node) => {
        const style = getComputedStyle(node);
        return [node.className, style.animationName, style.transitionDuration, style.scrollBehavior];
    }).filter(([, animation, transition, scroll]) => animation !== "none" || transition !== "0s" || scroll !== "auto")""")
    assert motion == []


def test_a_printed_page_leaves_the_chat_out(open_widget: Any) -> None:
    """Printed (an order confirmation, an invoice), the page had the open chat or its launcher over its text, on every
    sheet: fixed, it is drawn on each."""
    widget = open_widget()
    page = widget.page
    widget.page.emulate_media(media="print")
    expect(page.locator(".root")).to_be_hidden()
    widget.page.emulate_media(media="screen")
    expect(page.locator(".panel")).to_be_visible()


def test_closing_the_chat_gives_the_keyboard_back_to_the_control_that_opened_it(open_widget: Any) -> None:
    """Opened by the page's own "Chat with us" button, Escape put the focus on the launcher, in the page's corner
    after its last control, and a page's Deskbot.close() took the focus from the page's own search box. Escape on
    the launcher of the open chat left it open."""
    body = '<input id="search"><button id="chat-us" onclick="Deskbot.open()">Chat with us</button><a href="#">Shoes</a>'
    page = open_widget(page={"body": body}).page
    page.locator("#search").focus()
    page.evaluate("Deskbot.close()")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#chat-us")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("textarea")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(".panel")).to_be_hidden()
    expect(page.locator("#chat-us")).to_be_focused()
    page.keyboard.press("Tab")  # on through the page, from where the customer was
    expect(page.locator("a")).to_be_focused()
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.locator("textarea")).to_be_focused()
    page.keyboard.press("Escape")  # opened by the launcher: back to it
    expect(launcher).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # from the box on to the launcher, Send being off with the box empty
    expect(page.get_by_role("button", name="Close chat").last).to_be_focused()
    page.keyboard.press("Escape")  # Escape on it closes the chat as anywhere in it
    expect(page.locator(".panel")).to_be_hidden()


LANGUAGES_SHOWN = """(root) => [...root.querySelectorAll(".bubble, .quick button")].map((node) => [
    node.textContent.trim(), node.closest("[lang]").lang])"""


def test_a_message_in_the_other_language_is_marked_for_screen_readers(open_widget: Any) -> None:
    """A bilingual bot answers a Chinese question on an English page in Chinese, and everything in the chat said
    lang="en": a screen reader read the answer, the question and the Chinese choices in its English voice."""
    widget = open_widget()  # an English page
    widget.send("我的包裹一直没到")
    expect(widget.bot_replies()).to_have_count(1)
    expect(widget.page.locator(".quick button").first).to_be_visible()
    greeting, *chinese = widget.page.locator(".root").evaluate(LANGUAGES_SHOWN)
    assert greeting == ["Hi! How can I help you today?", "en"]
    assert len(chinese) >= 3 and all(lang == "zh" for _, lang in chinese), chinese
    page = open_widget(page_lang="zh-CN")
    page.send("Where is my parcel? It has not arrived")
    expect(page.bot_replies()).to_have_count(1)
    greeting, *english = page.page.locator(".root").evaluate(LANGUAGES_SHOWN)
    assert greeting == ["您好！请问有什么可以帮您？", "zh"]
    assert english[0] == ["Where is my parcel? It has not arrived", "en"]
    assert len(english) >= 3 and all(lang == "en" for _, lang in english), english  # the answer and its choices
    traditional = open_widget(page_lang="zh-TW")  # the greeting in Traditional characters keeps their tag
    traditional.send("Where is my parcel? It has not arrived")
    expect(traditional.bot_replies()).to_have_count(1)
    greeting, *_ = traditional.page.locator(".root").evaluate(LANGUAGES_SHOWN)
    assert greeting == ["您好！請問有什麼可以幫您？", "zh-Hant"]


def test_the_chats_grey_text_reads_at_wcags_contrast(open_widget: Any, api: SimpleNamespace) -> None:
    """The message box's placeholder, its only visible label, was the browser's grey at 4.3:1, and a notice
    ("You're back with the bot.") 4.47:1 on its grey: WCAG AA asks 4.5:1 of text."""
    widget = open_widget()
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    cid = widget.conversation_id()
    api.admin(f"/admin/conversations/{cid}/handoff")
    expect(widget.page.locator(".banner")).to_be_visible()
    api.admin(f"/admin/conversations/{cid}/handback")
    expect(widget.page.locator(".notice")).to_have_text("You're back with the bot.")
    widget.page.locator("textarea").blur()  # its grey background, not the white one it has while typed in
    pairs = widget.page.locator(".root").evaluate("""(root) => {
        const style = (selector, pseudo) => getComputedStyle(root.querySelector(selector), pseudo);
        return {panel: style(".panel").backgroundColor, notice: [style(".notice").color, style(".notice").backgroundColor],
                placeholder: [style("textarea", "::placeholder").color, style("textarea").backgroundColor],
                footer: style("footer").color};
    }""")

    assert contrast(pairs["notice"][0], on(pairs["notice"][1], pairs["panel"])) >= 4.5, pairs
    assert contrast(pairs["placeholder"][0], pairs["placeholder"][1]) >= 4.5, pairs
    assert contrast(pairs["footer"], pairs["panel"]) >= 4.5, pairs


# Each text shown in the agents' console: its colour and the background it is drawn on (the nearest one painted)
CONSOLE_TEXT_COLOURS = """() => [...document.querySelectorAll("body *")].filter((node) => node.checkVisibility() &&
    [...node.childNodes].some((child) => child.nodeType === Node.TEXT_NODE && child.textContent.trim())).map((node) => {
        let painted = node;
        while (painted.parentElement && getComputedStyle(painted).backgroundColor === "rgba(0, 0, 0, 0)") {
            painted = painted.parentElement;
        }
        return [node.textContent.trim().slice(0, 40), getComputedStyle(node).color,
                getComputedStyle(painted).backgroundColor];
    })"""


def test_the_agents_consoles_text_reads_at_wcags_contrast(chromium: SimpleNamespace, server: LiveServer,
                                                         api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The grey of a conversation's line in the list read 4.3:1 once the conversation was open, on the selected
    item's tint (WCAG asks 4.5:1 of text this size)."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    expect(page.locator(f'.list li[data-id="{cid}"]')).to_have_attribute("aria-selected", "true")
    shown = page.evaluate(CONSOLE_TEXT_COLOURS)
    assert len(shown) > 10, shown
    assert [(text, color, background) for text, color, background in shown
            if contrast(on(color, background), background) < 4.5] == []
    context.close()


def test_the_agents_console_marks_the_open_conversation_in_the_list_beyond_a_tint(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The conversation open was marked in the list by a tint alone, 1.1:1 on white (WCAG asks 3:1 of what tells a
    state), and by nothing in a contrast theme, which takes backgrounds."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    item = page.locator(f'.list li[data-id="{cid}"]')
    expect(item).to_have_attribute("aria-selected", "true")
    shadow, background = item.evaluate("(li) => [getComputedStyle(li).boxShadow, getComputedStyle(li).backgroundColor]")
    edge = re.match(r"rgb\([^)]*\)", shadow)
    assert edge and "inset" in shadow and contrast(edge.group(0), background) >= 3, shadow
    page.emulate_media(forced_colors="active")
    style, width = item.evaluate("(li) => [getComputedStyle(li).borderTopStyle, getComputedStyle(li).borderTopWidth]")
    assert (style, width) == ("solid", "2px")
    context.close()


# What of the page reaches past the window's right edge, and how wide the page is
PAST_THE_RIGHT_EDGE = """() => [document.documentElement.scrollWidth, [...document.querySelectorAll("body *")]
    .filter((node) => node.checkVisibility() && node.getBoundingClientRect().right > innerWidth + 1)
    .map((node) => `${node.localName}.${node.className}`)]"""


def test_the_agents_console_at_320_px_wide_reads_without_scrolling_sideways(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """At 320 px (a phone, or a window zoomed to 400%) the sign-in form was 340 px wide, and the console, its list
    beside the conversation, 630 px: the agent scrolled sideways to read each line of a message (WCAG's reflow). On a
    short window too (a 1280 × 1024 screen at 400%: 320 × 256) the tabs and the search took all of the inbox's height,
    and the list of customers, its filters and its pager were cut to nothing."""
    signin = chromium.browser.new_page(viewport={"width": 320, "height": 640})
    signin.goto(f"{server.url}/agent?lang=en")
    expect(signin.locator("#token")).to_be_visible()
    assert signin.evaluate(PAST_THE_RIGHT_EDGE) == [320, []]
    signin.close()
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    for height in (640, 256):
        page.set_viewport_size({"width": 320, "height": height})
        expect(page.locator(".list li")).not_to_have_count(0)
        assert page.evaluate(PAST_THE_RIGHT_EDGE) == [320, []]
        for control in (page.locator(f'.list li[data-id="{cid}"]'), page.get_by_label("Mine only"),
                        page.get_by_role("button", name="Take over"), page.locator("form.reply textarea")):
            control.scroll_into_view_if_needed()
            expect(control).to_be_in_viewport(ratio=1)
    context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_message_boxs_edge_reads_at_wcags_contrast(open_widget: Any, theme: str) -> None:
    """The message box's border, rgba(20, 24, 40, .08), read 1.2:1 on the light palette and about 1:1 on the dark
    one, where WCAG asks 3:1 of what shows a control's edge: the box was found by its placeholder alone."""
    widget = open_widget(theme=theme)
    widget.page.locator("textarea").blur()
    edge, inside, panel = widget.page.locator(".root").evaluate("""(root) => {
        const box = getComputedStyle(root.querySelector("textarea"));
        return [box.borderTopColor, box.backgroundColor, getComputedStyle(root.querySelector(".panel")).backgroundColor];
    }""")
    seen = on(edge, on(inside, panel))
    assert contrast(seen, panel) >= 3 and contrast(seen, on(inside, panel)) >= 3, (edge, inside, panel)


def test_a_message_sent_with_the_keyboard_on_send_leaves_the_keyboard_in_the_chat(open_widget: Any) -> None:
    """Send turns itself off once the box is emptied: pressed from the keyboard, it dropped the focus to the page,
    a screen reader lost its place, and the next Tab went to the launcher."""
    widget = open_widget()
    page = widget.page
    page.locator("textarea").fill("hello")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text(["hello"])
    expect(page.locator("textarea")).to_be_focused()
    page.keyboard.type("and another")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text(["hello", "and another"])


@pytest.mark.parametrize("forced_colors", ["none", "active"])
def test_the_thumb_pressed_is_seen_without_its_colour(open_widget: Any, forced_colors: str) -> None:
    """A pressed thumb differed from the other by its colour alone (WCAG 1.4.1), and in a contrast theme,
    which takes the colours, not at all."""
    widget = open_widget()
    widget.page.emulate_media(forced_colors=forced_colors)
    widget.send("is anyone there")
    reply = widget.bot_replies().first
    up = reply.get_by_role("button", name="Helpful", exact=True)
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    fills = reply.locator(".feedback svg").evaluate_all("(icons) => icons.map((icon) => getComputedStyle(icon).fill)")
    pressed, other = fills
    assert other == "none" and pressed not in ("none", "transparent", "rgba(0, 0, 0, 0)"), fills


DARK_DEVICE = {"viewport": {"width": 1100, "height": 800}, "color_scheme": "dark"}


@pytest.mark.parametrize("dark", [{"colors": {"background": "#111827", "text": "#f3f4f6"}}, {"device": DARK_DEVICE},
                                  {"theme": "dark"}], ids=["site's colours", "device's dark mode", "theme setting"])
def test_a_dark_theme_leaves_every_message_readable(open_widget: Any, api: SimpleNamespace, dark: dict[str, Any]) -> None:
    """A site's dark theme (colors.background and colors.text, as documented) kept the bot's bubbles, the message box
    and an agent's bubble light: light text on them read 1.02:1; the grey text and the choices read under 3.3:1. The
    device's dark mode, or theme: "dark", gives the chat a dark palette too: it stayed white."""
    widget = open_widget(**dark)
    assert widget.page.locator(".panel").evaluate("(node) => getComputedStyle(node).backgroundColor") == "rgb(17, 24, 39)"
    widget.send("hello")
    choice = widget.page.locator(".quick button").first
    expect(choice).to_be_visible()  # read before the takeover, which takes the bot's choices away
    choices = ["choices", *choice.evaluate("(node) => [getComputedStyle(node).color, getComputedStyle(node).backgroundColor]")]
    cid = widget.conversation_id()
    api.admin(f"/admin/conversations/{cid}/handoff")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, this is Sam.", "agent": "Sam"})
    expect(widget.page.locator(".msg.agent .bubble")).to_have_text("Hi, this is Sam.")
    widget.page.locator("textarea").fill("my order")
    widget.page.locator("textarea").blur()
    pairs = widget.page.locator(".root").evaluate("""(root) => {
        const style = (selector, pseudo) => getComputedStyle(root.querySelector(selector), pseudo);
        const panel = style(".panel").backgroundColor;
        const on = (selector, background) => [selector, style(selector).color, background || style(selector).backgroundColor];
        return [on(".msg.bot .bubble"), on(".msg.agent .bubble"), on(".msg.agent .sender", panel), on("textarea"),
                ["placeholder", style("textarea", "::placeholder").color, style("textarea").backgroundColor],
                on("footer", panel)];
    }""")
    low = [(what, text, background) for what, text, background in [*pairs, choices] if contrast(text, background) < 4.5]
    assert not low, low
    widget.context.set_offline(True)  # and "Not sent", red on the dark background
    widget.send("where is my parcel")
    line = widget.page.locator(".status-line span")
    expect(line).to_have_text("Not sent.")
    text, panel = line.evaluate("(node) => [getComputedStyle(node).color, "
                                "getComputedStyle(node.getRootNode().querySelector('.panel')).backgroundColor]")
    assert contrast(text, panel) >= 4.5, (text, panel)
    # the browser's own parts (the list's scrollbar, the message box's caret and spelling marks) in dark colours too
    assert widget.page.locator(".scroll").evaluate("(node) => getComputedStyle(node).colorScheme") == "dark"
    assert open_widget().page.locator(".scroll").evaluate("(node) => getComputedStyle(node).colorScheme") == "light"


def test_the_chat_follows_the_devices_colour_scheme_unless_the_site_chose_its_own(open_widget: Any) -> None:
    """Dark on a device in dark mode, light again as it turns light (as at dawn), dark or light as theme says, and in
    the site's own background and text whatever the device's mode; the browser's scrollbar and caret with it."""
    def looks(widget: Widget) -> list[str]:
        return widget.page.locator(".panel").evaluate(
            "(node) => [getComputedStyle(node).backgroundColor, getComputedStyle(node).colorScheme]")

    widget = open_widget(device=DARK_DEVICE)
    assert looks(widget) == ["rgb(17, 24, 39)", "dark"]
    widget.page.emulate_media(color_scheme="light")
    wait_until(widget.page, "getComputedStyle(document.querySelector('#deskbot-widget').shadowRoot"
                            ".querySelector('.panel')).colorScheme === 'light'")  # the device's change event
    assert looks(widget) == ["rgb(255, 255, 255)", "light"]
    assert looks(open_widget(device=DARK_DEVICE, theme="light")) == ["rgb(255, 255, 255)", "light"]
    assert looks(open_widget(device=DARK_DEVICE, colors={"background": "#fff7ed", "text": "#1f2937"})) == [
        "rgb(255, 247, 237)", "light"]


LOOKS = """(root) => {
    const style = (selector) => getComputedStyle(root.querySelector(selector));
    return [style(".panel").backgroundColor, style(".launcher").backgroundColor, style(".launcher").color,
            style(".scroll").colorScheme];
}"""


@pytest.mark.parametrize(("rule", "device", "background"), [
    ("#deskbot-widget { --deskbot-bg: #000000; --deskbot-text: #e5e7eb; --deskbot-primary: #fde047 }", None,
     "rgb(0, 0, 0)"),
    (":root { --deskbot-primary: #fde047 }", DARK_DEVICE, "rgb(17, 24, 39)"),
    (":root { --deskbot-bg: #0b1120; --deskbot-text: #e5e7eb }", {"viewport": {"width": 1100, "height": 800}},
     "rgb(11, 17, 32)"),
    (":root { --db-bg: #0b1120; --db-text: #e5e7eb; --db-primary: #fde047 }", None, "rgb(11, 17, 32)"),
], ids=["on the widget", "on the page's root, dark palette", "on the page's root, light palette", "by their former names"])
def test_the_pages_own_css_custom_properties_colour_the_chat(open_widget: Any, rule: str, device: dict[str, Any] | None,
                                                             background: str) -> None:
    """A design system's values for the documented properties (#deskbot-widget { --deskbot-bg: #000 }, or on its :root)
    did nothing: the widget set its own inside its shadow root, on either palette. The text on a brand colour given so
    is chosen to read on it, as on one given in deskbotConfig, and a dark background turns the scrollbar dark. The
    former names (--db-bg), which a site's own variables may share, still count, and the console names the new ones."""
    widget = open_widget(device=device, page={"head": f"<style>{rule}</style>"})
    panel, brand, icon, scheme = widget.page.locator(".root").evaluate(LOOKS)
    assert panel == background
    assert scheme == "dark"
    assert "-primary" not in rule or brand == "rgb(253, 224, 71)"
    renamed = [line for line in widget.console if "--db-" in line]
    assert "--db-" not in rule or len(renamed) == 3 and "name it --deskbot-primary" in " ".join(renamed), renamed
    assert contrast(icon, brand) >= 4.5, (icon, brand)
    widget.send("hello")
    choice = widget.page.locator(".quick button").first
    expect(choice).to_be_visible()
    assert contrast(*choice.evaluate("(node) => [getComputedStyle(node).color, getComputedStyle(node).backgroundColor]")) \
        >= 4.5
    if rule.startswith(":root"):  # taken again as the page's own style changes, as a dark-mode toggle changes it
        widget.page.evaluate("document.documentElement.style.setProperty('--deskbot-primary', '#15803d')")
        expect(widget.page.locator(".launcher")).to_have_css("background-color", "rgb(21, 128, 61)")


def test_a_sites_own_dark_mode_toggle_switches_the_chat(open_widget: Any) -> None:
    """A site with its own dark-mode toggle (a class on <html>) could not switch the chat, which followed the device
    alone, nor the custom properties its stylesheet gives the chat in dark mode."""
    widget = open_widget(page={"head": "<style>html.dark { --deskbot-primary: #a5b4fc }</style>"})
    page = widget.page

    def looks() -> list[str]:
        return page.locator(".root").evaluate(LOOKS)

    light = ["rgb(255, 255, 255)", "rgb(79, 70, 229)", "rgb(255, 255, 255)", "light"]
    assert looks() == light
    page.evaluate("document.documentElement.classList.add('dark'); Deskbot.setTheme('dark')")
    assert looks() == ["rgb(17, 24, 39)", "rgb(165, 180, 252)", "rgb(28, 31, 43)", "dark"]
    page.evaluate("document.documentElement.classList.remove('dark'); Deskbot.setTheme('light')")
    assert looks() == light
    page.emulate_media(color_scheme="dark")
    assert looks() == light  # the site's choice, whatever the device's
    page.evaluate("Deskbot.setTheme('auto')")
    assert looks()[0] == "rgb(17, 24, 39)"  # the device's again
    page.evaluate("Deskbot.setTheme('night')")
    assert looks()[0] == "rgb(17, 24, 39)"
    assert [line for line in widget.console if line.startswith("error: deskbot: ") and "night" in line], widget.console


# A stylesheet a page adds once the chat has started: a <style>, a <link>, or a <link> loaded as print and switched
# to all once in (loadCSS, and the pages that defer their CSS so)
LATE_STYLESHEETS = {
    "style": "document.head.append(Object.assign(document.createElement('style'), {textContent: css}))",
    "link": "document.head.append(Object.assign(document.createElement('link'), {rel: 'stylesheet', "
            "href: `data:text/css,${encodeURIComponent(css)}`}))",
    "deferred link": "document.head.append(Object.assign(document.createElement('link'), {rel: 'stylesheet', "
                     "media: 'print', onload() { this.media = 'all'; }, href: `data:text/css,${encodeURIComponent(css)}`}))",
}


@pytest.mark.parametrize("added", LATE_STYLESHEETS)
def test_a_stylesheet_the_page_adds_after_the_chat_started_colours_it(open_widget: Any, added: str) -> None:
    """A site's stylesheet loaded lazily (a route's own, or one deferred) that gives the chat's custom properties
    left the chat in its default colours until a class of <html> or <body> changed."""
    widget = open_widget()
    launcher = widget.page.locator(".launcher")
    expect(launcher).to_have_css("background-color", "rgb(79, 70, 229)")
    widget.page.evaluate(f"(css) => {{ {LATE_STYLESHEETS[added]}; }}", ":root { --deskbot-primary: #15803d }")
    expect(launcher).to_have_css("background-color", "rgb(21, 128, 61)")


def test_a_screen_reader_says_each_buttons_name_once(open_widget: Any) -> None:
    """Icon buttons had their name both as aria-label and as title, which the browser then gave them as their
    description too: "Close chat, button, Close chat", "Helpful, button, Helpful"."""
    widget = open_widget()
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    cdp = widget.context.new_cdp_session(widget.page)
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    buttons = [(node["name"]["value"], node.get("description", {}).get("value", ""))
               for node in nodes if node.get("role", {}).get("value") == "button" and not node.get("ignored")]
    assert {"Close chat", "Send", "Helpful", "Not helpful", "Talk to a person"} <= {name for name, _ in buttons}, buttons
    assert [(name, description) for name, description in buttons if description] == []


def test_the_customers_bubbles_in_a_light_colour_of_their_own_stay_readable(open_widget: Any) -> None:
    """colors.userBubble, a light tint beside a dark brand colour, kept the brand's white text: 1.15:1."""
    widget = open_widget(colors={"primary": "#1e3a8a", "userBubble": "#e0f2fe"})
    widget.send("hello")
    bubble = widget.page.locator(".msg.user .bubble")
    expect(bubble).to_have_text("hello")
    text, background = bubble.evaluate("(node) => [getComputedStyle(node).color, getComputedStyle(node).backgroundColor]")
    assert contrast(text, background) >= 4.5, (text, background)
    launcher = widget.page.locator(".launcher").evaluate("(node) => getComputedStyle(node).color")
    assert launcher == "rgb(255, 255, 255)"  # still white on the dark brand colour


# What a screen reader is told of each message as it comes: whether the log it goes into is live at that moment.
LIVE_AT_INSERTION = """
window.liveAtInsertion = [];
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (options) {
  const shadow = attach.call(this, options);
  new MutationObserver((records) => {
    for (const record of records) {
      if (!record.target.classList || !record.target.classList.contains("log")) continue;
      for (const node of record.addedNodes) {
        const bubble = node.querySelector && node.querySelector(".bubble");
        if (bubble) window.liveAtInsertion.push([bubble.textContent, record.target.getAttribute("aria-live")]);
      }
    }
  }).observe(shadow, {childList: true, subtree: true});
  return shadow;
};
"""


def test_a_chat_left_open_is_not_read_out_again_on_the_next_page(open_widget: Any) -> None:
    """The history shown again went into the live log: on each page of the site the chat was open on, a screen reader
    read the whole conversation out again. Only what comes after is news."""
    widget = open_widget(init_script=LIVE_AT_INSERTION)
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    page.reload()  # the site's next page, the chat open as the customer left it
    expect(widget.bot_replies()).to_have_count(1)
    restored = page.evaluate("window.liveAtInsertion")
    assert [text for text, _ in restored] == ["hello", widget.bot_replies().first.locator(".bubble").inner_text()]
    assert {live for _, live in restored} == {"off"}, restored
    expect(page.locator(".log")).to_have_attribute("aria-live", "polite")
    widget.send("and now?")
    expect(widget.bot_replies()).to_have_count(2)
    news = page.evaluate("window.liveAtInsertion")[2:]
    assert [live for _, live in news] == ["polite", "polite"], news  # the customer's message and its answer


# What each live region in the chat was given to say, as it was given it: its text, and whether it was shown then
# (one hidden says nothing: the widget writes its labels into them all as it starts).
LIVE_REGION_TEXT = """
window.liveText = [];
const attachShadow = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (options) {
  const shadow = attachShadow.call(this, options);
  new MutationObserver((records) => {
    for (const record of records) {
      const region = record.target.closest && record.target.closest("[role=status], [aria-live]:not([aria-live=off])");
      if (!region || region.getAttribute("role") === "log") continue;
      window.liveText.push([region.textContent, region.checkVisibility()]);
    }
  }).observe(shadow, {childList: true, subtree: true, characterData: true});
  return shadow;
};
"""


def test_a_screen_reader_is_told_the_bot_is_typing_once(open_widget: Any, server: LiveServer) -> None:
    """The typing indicator's status region was itself hidden and shown with "Typing…" already in it, which a screen
    reader does not announce: a live region is heard when its text changes while it is in the accessibility tree."""
    widget = open_widget(init_script=BLOCKED_WEBSOCKET + LIVE_REGION_TEXT)
    page = widget.page
    cdp = widget.context.new_cdp_session(page)

    def statuses() -> list[dict[str, Any]]:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
        return [node for node in nodes if node.get("role", {}).get("value") == "status" and not node.get("ignored")]

    def said() -> list[str]:
        return [text for text, shown in page.evaluate("window.liveText") if shown]

    page.wait_for_function("window.__socketAttempts >= 1")
    # The typing one (and the handoff's) is there, live and empty, before anything is said.
    for waiting in statuses():
        assert {p["name"]: p["value"]["value"] for p in waiting["properties"]}["live"] == "polite"
    assert len(statuses()) == 2
    held: list[Route] = []
    page.route(f"{server.url}/api/chat", lambda route: held.append(route))
    widget.send("hello?")
    widget.send("anyone there?")  # a second message out: no second "Typing…"
    for _ in range(100):
        if len(held) == 2:
            break
        page.wait_for_timeout(50)
    assert said() == ["Typing…"]
    for route in held:
        route.continue_()
    page.unroute(f"{server.url}/api/chat")
    expect(widget.bot_replies()).to_have_count(2)
    expect(page.locator(".typing")).to_be_hidden()
    assert said() == ["Typing…", ""]  # emptied, which says nothing
    page.reload()  # the history shown again says nothing of typing
    expect(widget.bot_replies()).to_have_count(2)
    page.wait_for_timeout(300)
    assert said() == []
    assert len(statuses()) == 2



def test_on_a_phone_zoomed_to_200_percent_the_title_wraps_rather_than_being_cut(open_widget: Any) -> None:
    """A 360 × 640 phone at 200% zoom is 180 × 320 CSS px: the header's title showed as "Demo …" (WCAG 1.4.10 asks
    that text reflow). It wraps to two lines there, and keeps to one in the chat's usual width."""
    phone = {"viewport": {"width": 180, "height": 320}, "is_mobile": True, "has_touch": True, "device_scale_factor": 4}
    for device, lines in ((phone, 2), ({"viewport": {"width": 1100, "height": 800}}, 1)):
        widget = open_widget(device=device)
        title = widget.page.locator("h2")
        expect(title).to_have_text("Demo Shop support")
        shown = title.evaluate("""(node) => ({
          cut: node.scrollWidth > node.clientWidth || node.scrollHeight > node.clientHeight,
          lines: Math.round(node.getBoundingClientRect().height / parseFloat(getComputedStyle(node).lineHeight)),
          right: node.getBoundingClientRect().right,
        })""")
        assert not shown["cut"] and shown["lines"] == lines, (device, shown)
        close = widget.page.locator(".close").bounding_box()
        assert close is not None and shown["right"] <= close["x"]  # beside the close button, not under it
        assert close["x"] + close["width"] <= device["viewport"]["width"]



def test_on_a_phone_zoomed_to_200_percent_the_handoff_banners_button_stays_in_the_chat(open_widget: Any) -> None:
    """At 180 × 320 CSS px *Back to the bot* ran past the chat's right edge, cut: it goes below the banner's text
    there, and stays beside it in the chat's usual width."""
    phone = {"viewport": {"width": 180, "height": 320}, "is_mobile": True, "has_touch": True, "device_scale_factor": 4}
    for device, beside in ((phone, False), ({"viewport": {"width": 1100, "height": 800}}, True)):
        widget = open_widget(device=device)
        page = widget.page
        widget.send("hello")
        page.locator(".quick button", has_text="Talk to a person").click()
        back = page.get_by_role("button", name="Back to the bot")
        expect(back).to_be_visible()
        button, text, panel = (page.locator(selector).bounding_box() for selector in (".banner button", ".banner span", ".panel"))
        assert button is not None and text is not None and panel is not None
        assert panel["x"] <= button["x"] and button["x"] + button["width"] <= panel["x"] + panel["width"], (button, panel)
        assert (button["y"] < text["y"] + text["height"]) == beside, (device, button, text)
        back.click()  # and reached there
        expect(page.locator(".banner")).to_be_hidden()


def test_a_screen_reader_is_told_once_that_an_agent_took_over(open_widget: Any, api: SimpleNamespace) -> None:
    """The handoff banner was a status region hidden and shown with its text already in it, which a screen reader
    does not announce: an agent's takeover went unsaid. It is said once, over the socket and without one, and not
    when the customer asked for a person, whose answer from the bot (in the log, itself live) says so."""
    taken_over = "You've been passed to a person. They'll reply here."
    for init_script in (LIVE_REGION_TEXT, BLOCKED_WEBSOCKET + LIVE_REGION_TEXT):
        widget = open_widget(pollInterval=300, init_script=init_script)
        page = widget.page
        widget.send("hello")
        expect(widget.bot_replies()).to_have_count(1)
        cid = widget.conversation_id()

        def said() -> list[str]:
            return [text for text, shown in page.evaluate("window.liveText") if shown and text]

        api.admin(f"/admin/conversations/{cid}/handoff")
        expect(page.locator(".banner")).to_be_visible()
        page.wait_for_timeout(700)  # two polls without a socket: said once all the same
        assert said() == ["Typing…", taken_over], init_script
        api.admin(f"/admin/conversations/{cid}/handback")
        expect(page.locator(".notice")).to_have_text("You're back with the bot.")
        assert api.chat(cid, "/handoff")["handed_off"] is True  # the customer asks in another tab
        expect(page.locator(".banner")).to_be_visible()
        expect(widget.bot_replies()).to_have_count(2)  # the bot's answer, which says it
        page.wait_for_timeout(700)
        assert said() == ["Typing…", taken_over], init_script
        page.reload()  # the history shown again says nothing of it
        expect(page.locator(".banner")).to_be_visible()
        page.wait_for_timeout(300)
        assert said() == []


def test_on_a_phone_zoomed_to_200_percent_the_handoff_banner_leaves_room_for_the_messages(open_widget: Any,
                                                                                         api: SimpleNamespace) -> None:
    """At 180 × 320 CSS px the handoff banner left the message list 26 px, none of it a message's text, and pushed
    the message box and Send out of the chat: there the banner takes a smaller type and scrolls, its first line shown,
    and the list keeps room for a message's lines."""
    phone = {"viewport": {"width": 180, "height": 320}, "is_mobile": True, "has_touch": True, "device_scale_factor": 4}
    widget = open_widget(device=phone)
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    expect(page.locator(".banner")).to_be_visible()
    box = {selector: page.locator(selector).bounding_box() for selector in (".panel", ".banner", ".scroll", "form")}
    assert box[".scroll"]["height"] >= 60, box  # two lines of a message, its padding aside
    assert box[".banner"]["height"] >= 24, box
    assert box["form"]["y"] + box["form"]["height"] <= box[".panel"]["y"] + box[".panel"]["height"], box
    page.get_by_role("button", name="Back to the bot").click()  # scrolled to, and reached
    expect(page.locator(".banner")).to_be_hidden()


def test_an_agents_takeover_while_the_chat_is_closed_is_shown_on_the_launcher(open_widget: Any,
                                                                               api: SimpleNamespace) -> None:
    """An agent who took the chat over while it was closed was told to no one: the banner and its status region are
    inside the hidden panel, and the launcher counted messages only. The launcher shows the unread dot and its name,
    said from the live region outside the panel, that a person has joined."""
    widget = open_widget()
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    page.get_by_role("button", name="Close chat").first.click()
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    launcher = page.get_by_role("button", name="Open chat (a person has joined)")
    expect(launcher).to_be_visible()
    expect(page.locator(".launcher .badge")).to_have_count(1)
    expect(page.locator(".root > .sr")).to_have_text("Open chat (a person has joined)")
    launcher.click()
    expect(page.locator(".banner")).to_be_visible()
    expect(page.locator(".launcher .badge")).to_have_count(0)


def test_what_the_customer_read_in_another_tab_is_not_counted_new_on_the_launcher(open_widget: Any,
                                                                                  api: SimpleNamespace) -> None:
    """The answers to what the customer asked in one of the site's tabs counted as new messages on the launcher of
    every other tab whose chat was closed: going back to one, they were told of messages they had already read."""
    widget = open_widget()
    page = widget.page
    page.wait_for_function("Deskbot.connected()")
    other_tab = widget.context.new_page()
    other_tab.goto(page.url)
    other_tab.wait_for_function("Deskbot.connected()")
    other_tab.get_by_role("button", name="Close chat").first.click()
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    expect(other_tab.locator(".msg.bot[data-turn-id]")).to_have_count(1)  # come in the closed chat too
    expect(other_tab.get_by_role("button", name="Open chat", exact=True)).to_be_visible()
    expect(other_tab.locator(".launcher .badge")).to_have_count(0)
    page.get_by_role("button", name="Close chat").first.click()  # read nowhere now: new in both
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Sam here.", "agent": "Sam"})
    for tab in (page, other_tab):
        expect(tab.get_by_role("button", name="Open chat (1 new message)")).to_be_visible()
    page.get_by_role("button", name="Open chat (1 new message)").click()  # read in this one: no longer new in the other
    expect(page.locator(".banner")).to_be_visible()
    # nor is the person who joined, seen there: the other tab's launcher said so, with its dot, until opened there too
    expect(other_tab.get_by_role("button", name="Open chat", exact=True)).to_be_visible()
    expect(other_tab.locator(".launcher .badge")).to_have_count(0)
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handback")
    page.get_by_role("button", name="Close chat").first.click()
    api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")  # a person joins again: news in both
    for tab in (page, other_tab):
        expect(tab.get_by_role("button", name="Open chat (a person has joined)")).to_be_visible()
        expect(tab.locator(".launcher .badge")).to_have_count(1)
    other_tab.close()


def test_a_handback_while_the_chat_is_closed_gives_the_launcher_its_plain_name_back(open_widget: Any,
                                                                                  api: SimpleNamespace) -> None:
    """Handed back while the chat was still closed, the launcher went on saying *Open chat (a person has joined)*
    with its dot until it was opened: the person it told of had gone."""
    widget = open_widget()
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    page.get_by_role("button", name="Close chat").first.click()
    cid = widget.conversation_id()
    api.admin(f"/admin/conversations/{cid}/handoff")
    expect(page.get_by_role("button", name="Open chat (a person has joined)")).to_be_visible()
    api.admin(f"/admin/conversations/{cid}/handback")
    expect(page.get_by_role("button", name="Open chat", exact=True)).to_be_visible()
    expect(page.locator(".launcher .badge")).to_have_count(0)
    expect(page.locator(".root > .sr")).to_have_text("")
    api.admin(f"/admin/conversations/{cid}/handoff")  # an agent's message meanwhile is still counted
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Sam here.", "agent": "Sam"})
    expect(page.get_by_role("button", name="Open chat (1 new message)")).to_be_visible()
    api.admin(f"/admin/conversations/{cid}/handback")
    expect(page.locator(".notice").last).to_have_text("You're back with the bot.")
    expect(page.get_by_role("button", name="Open chat (1 new message)")).to_be_visible()
    expect(page.locator(".launcher .badge")).to_have_count(1)


def live_setting_of(cdp: Any, text: str) -> str:
    """How a screen reader takes ``text`` as it is added, from Chromium's accessibility tree: the setting of the nearest
    live region around the text's node, as Chromium finds it (the nearest node that is a live region root, an
    ``aria-live="off"`` one included, which Chromium's tree lists without its setting: that is read from its element)."""
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    by_id = {node["nodeId"]: node for node in nodes}
    node = next(node for node in nodes if node.get("role", {}).get("value") == "StaticText" and not node.get("ignored")
                and node.get("name", {}).get("value") == text)
    while node is not None:
        live = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}.get("live")
        if live:
            return str(live)
        if "backendDOMNodeId" in node:
            attributes = cdp.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})["node"].get("attributes", [])
            named = dict(zip(attributes[::2], attributes[1::2]))
            if named.get("aria-live"):
                return named["aria-live"]
        node = by_id.get(node.get("parentId", ""))
    return "off"


def test_a_screen_reader_does_not_read_the_customers_own_message_back_to_them(open_widget: Any,
                                                                               api: SimpleNamespace) -> None:
    """The customer's message went into the live log, which said "You: hello" as they sent it: their own words, heard
    again. It stays in the log, to be read there, and the bot's and an agent's replies are still said as they come."""
    widget = open_widget()
    page = widget.page
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Sam here.", "agent": "Sam"})
    expect(page.locator(".msg.agent .bubble")).to_have_text("Sam here.")
    cdp = widget.context.new_cdp_session(page)
    reply = widget.bot_replies().first.locator(".bubble p").evaluate("(p) => p.firstChild.textContent")
    assert [live_setting_of(cdp, text) for text in ("You:", "hello", reply, "Sam here.")] == ["off", "off", "polite",
                                                                                              "polite"]
    widget.context.set_offline(True)  # its "Not sent" is said all the same, without its button: "Not sent. Retry"
    widget.send("still there?")
    expect(page.locator(".status-line span")).to_have_text("Not sent.")
    assert [live_setting_of(cdp, text) for text in ("still there?", "Not sent.", "Retry")] == ["off", "assertive", "off"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_control_in_the_chat_is_a_target_of_wcags_size_for_a_mouse(open_widget: Any, lang: str) -> None:
    """A message's Retry, a word of 12 px type without padding, was 17 px tall under a mouse (WCAG 2.2's 2.5.8 asks
    24 × 24 px); only a finger's pointer got it taller."""
    widget = open_widget(lang=lang)
    widget.send("hello")
    expect(widget.bot_replies()).to_have_count(1)
    widget.context.set_offline(True)
    widget.send("still there?")
    expect(widget.page.locator(".status-line button")).to_be_visible()
    sizes = widget.page.locator(".root").evaluate("""(root) => [...root.querySelectorAll("button, input, textarea")]
        .filter((node) => node.checkVisibility()).map((node) => {
            const box = node.getBoundingClientRect();
            return [node.className || node.textContent || node.localName, box.width, box.height];
        })""")
    assert len(sizes) >= 6, sizes  # the close, thumbs, Retry, box, Send and launcher
    assert [(what, width, height) for what, width, height in sizes if width < 24 or height < 24] == []


def test_on_a_phone_zoomed_to_200_percent_the_suggested_replies_leave_room_for_the_messages(open_widget: Any) -> None:
    """At 180 × 320 CSS px the suggested replies, each wrapped to two lines, and a placeholder wrapped to three (which
    the box grew to hold once a message was sent) left the message list under a third of the chat. There the replies
    keep to one row, which scrolls sideways, and the placeholder to one line; each reply is still reached."""
    phone = {"viewport": {"width": 180, "height": 320}, "is_mobile": True, "has_touch": True, "device_scale_factor": 4}
    for page_lang in ("en", "zh-CN"):
        widget = open_widget(device=phone, page_lang=page_lang)
        page = widget.page
        widget.send("/check_refund_policy")
        expect(widget.bot_replies()).to_have_count(1)
        replies = page.locator(".quick button")
        expect(replies).to_have_count(2)
        box = {selector: page.locator(selector).bounding_box() for selector in (".panel", ".scroll", "textarea")}
        assert box[".scroll"]["height"] >= box[".panel"]["height"] / 3, (page_lang, box)
        assert box["textarea"]["height"] <= 46, (page_lang, box)  # one line
        tops = replies.evaluate_all("(nodes) => nodes.map((node) => Math.round(node.getBoundingClientRect().top))")
        assert len(set(tops)) == 1, tops
        replies.last.scroll_into_view_if_needed()
        replies.last.click()
        expect(widget.bot_replies()).to_have_count(2)


def test_a_chat_open_through_a_server_restart_hears_an_agent_as_soon_as_the_server_is_back(
        open_widget: Any, web_demo_bot: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory,
        chromium: SimpleNamespace) -> None:
    """A restart of some seconds (a deploy) left the socket waiting out its growing pause between tries after the
    server was back: an agent who took the chat over then was shown only at the next try or poll, up to 30 s later,
    though the customer's own message had just been answered. The first answer from the server back reconnects."""
    root = configured_copy(web_demo_bot.root, tmp_path_factory.mktemp("bots") / "restarted",
                           channels={"web": {"origins": [web_demo_bot.embed_origin]}})
    with LiveServer(root) as live, api_client(chromium, live.url, web_demo_bot.admin_token) as api:
        widget = open_widget(server=live.url)
        page = widget.page
        page.wait_for_function("Deskbot.connected()")
        widget.send("hello")
        expect(widget.bot_replies()).to_have_count(1)
        live.stop_bot()
        page.wait_for_timeout(8000)  # four tries in vain: the next is 8 s away
        live.start_bot()
        widget.send("are you back?")  # over HTTP, the socket still waiting
        expect(widget.bot_replies()).to_have_count(2)
        page.wait_for_function("Deskbot.connected()", timeout=3000)
        api.admin(f"/admin/conversations/{widget.conversation_id()}/handoff")
        expect(page.locator(".banner")).to_be_visible(timeout=3000)


def test_a_double_click_on_back_to_the_bot_hands_back_once(open_widget: Any, api: SimpleNamespace) -> None:
    """*Back to the bot* stays until the bot answers: a double click sent it twice, and the bot said twice that the
    customer was back with it. Send and the suggested replies, gone at the first click, were sent once already."""
    widget = open_widget()
    page = widget.page
    page.locator("textarea").fill("hello")
    page.locator(".send").dblclick()
    expect(widget.bot_replies()).to_have_count(1)
    page.locator(".quick button", has_text="Talk to a person").dblclick()
    back = page.get_by_role("button", name="Back to the bot")
    expect(back).to_be_visible()
    back.dblclick()
    expect(page.locator(".banner")).to_be_hidden()
    expect(widget.bot_replies()).to_have_count(3)
    page.wait_for_timeout(500)  # time for a second answer, had one been asked for
    expect(page.locator(".msg.user .bubble")).to_have_text(["hello", "Talk to a person", "Back to the bot"])
    sent = [turn["text"] for turn in api.history(widget.conversation_id())["turns"] if turn["role"] == "user"]
    assert sent == ["hello", "/handoff", "/resume"]


def test_a_suggested_reply_titled_with_a_long_address_stays_in_the_chat(open_widget: Any, server: LiveServer) -> None:
    """A suggested reply titled with a long address ran past the chat's left edge, its start out of reach: it wraps,
    as messages do."""
    phone = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
    address = "https://shop.example.com/help/returns/" + "a" * 120
    for device in (phone, {"viewport": {"width": 1100, "height": 800}}):
        widget = open_widget(device=device, transport="http")
        page = widget.page
        page.route(f"{server.url}/api/chat", lambda route: route.fulfill(
            headers={"Access-Control-Allow-Origin": "*"},
            json={"reply": "See:", "turn_id": 2, "user_turn_id": 1, "source": "template", "handed_off": False,
                  "buttons": [{"title": address, "payload": "/check_refund_policy"}]}))
        widget.send("returns?")
        expect(page.locator(".quick button")).to_have_text([address])
        panel, button = page.locator(".panel").bounding_box(), page.locator(".quick button").bounding_box()
        assert panel is not None and button is not None
        assert panel["x"] <= button["x"] and button["x"] + button["width"] <= panel["x"] + panel["width"], (device, button)


def test_an_agent_named_with_one_long_word_stays_in_the_chat_and_the_console(
        open_widget: Any, chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace,
        web_demo_bot: SimpleNamespace) -> None:
    """An agent's name of one long word (the API takes 64 characters) made the customer's messages scroll
    sideways on a phone, and ran out of the agents' console's inbox and transcript."""
    name = "B" * 64
    widget = open_widget(device={"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True})
    widget.send("I need help")
    expect(widget.bot_replies()).to_have_count(1)
    cid = widget.conversation_id()
    api.admin(f"/admin/conversations/{cid}/handoff?agent={name}")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, how can I help?", "agent": name})
    expect(widget.page.locator(".msg.agent .sender")).to_contain_text(name)
    assert widget.page.locator(".scroll").evaluate("(list) => list.scrollWidth <= list.clientWidth")

    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    page.locator(f'.list li[data-id="{cid}"]').click()
    expect(page.locator(".turn.agent .meta")).to_contain_text(name)
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.list li *, .conversation *')]
        .filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible'
                       && e.clientWidth > 0).map((e) => e.className || e.localName)""")
    assert overflowing == []
    context.close()


def test_a_screen_reader_hears_in_the_agents_console_that_a_customer_started_to_wait(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The tab's title counted the waiting customers, which a screen reader does not read as it changes: a
    blind agent heard of a new customer only by going through the inbox again."""
    first, second = f"console-{next(PAGE_NUMBERS)}", f"console-{next(PAGE_NUMBERS)}"
    assert api.chat(first, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, web_demo_bot.admin_token, first)
    page = context.pages[0]
    arrivals = page.get_by_role("status").filter(has_text=re.compile("customers? waiting"))
    page.wait_for_timeout(3500)  # a refresh with nobody new says nothing
    expect(arrivals).to_have_count(0)
    assert api.chat(second, "/handoff")["handed_off"] is True
    expect(page.locator(f'.list li[data-id="{second}"]')).to_be_visible()
    expect(arrivals).to_have_text(re.compile(r"^\d+ customers? waiting$"))
    context.close()


def waiting_titled(waiting: int) -> re.Pattern[str]:
    """The console's tab title counting ``waiting`` customers (none shown for 0), after any customers passed on."""
    counted = rf"\({waiting}\) " if waiting else ""
    return re.compile(rf"^(\[[^\]]*\] )?{counted}deskbot")  # [^]] is any character then "]" to the browser's JS


def waiting_in_title(page: Any) -> int:
    """The count of waiting customers in the console's tab title, 0 when it shows none."""
    counted = re.search(r"\((\d+)\) deskbot", page.title())
    return int(counted[1]) if counted else 0


def test_an_agents_console_counts_and_announces_the_customers_waiting_on_them_or_nobody(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """In a team, each console counted and announced every customer waiting, a colleague's too: every message a
    colleague's customer wrote was said aloud at every agent's desk. A console given no name (a lead's) counts all."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    kims = open_console(chromium, server, web_demo_bot.agent_token)
    leads = open_console(chromium, server, web_demo_bot.admin_token)
    pages = {"kim": kims.pages[0], "lead": leads.pages[0]}
    for page in pages.values():  # each console's first count made, which the newcomer's arrival adds to
        expect(page.locator(".figures")).not_to_have_text("")
    assert api.chat(cid, "/handoff")["handed_off"] is True  # waiting on nobody: Kim's to hear of
    for page in pages.values():
        expect(page.locator(".arrivals")).to_have_text(re.compile(r"^\d+ customers? waiting$"))
    counted = {who: waiting_in_title(page) - 1 for who, page in pages.items()}  # once Lee answers them
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, Lee here.", "agent": "Lee"})
    for who, page in pages.items():
        expect(page).to_have_title(waiting_titled(counted[who]))
        clear_announcements(page)
    api.chat(cid, "are you there?")  # waiting on Lee
    expect(pages["lead"]).to_have_title(waiting_titled(counted["lead"] + 1))
    expect(pages["lead"].locator(".arrivals")).to_have_text(re.compile(rf"^{counted['lead'] + 1} customers? waiting$"))
    pages["kim"].wait_for_timeout(3500)  # a refresh since
    expect(pages["kim"]).to_have_title(waiting_titled(counted["kim"]))
    expect(pages["kim"].locator(".arrivals")).to_have_text("")
    kims.close()
    leads.close()


def whole_answer(route: Any) -> Any:
    """The server's whole answer to a routed request, for the test to change: not its 304 to the ETag of the answer the
    console holds, which has no body to change."""
    return route.fetch(headers={name: value for name, value in route.request.headers.items() if name != "if-none-match"})


def inbox_saying(context: Any, news: dict[str, Any]) -> list[dict[str, Any]]:
    """The console's inbox (its waiting customers, counted) answered with ``news`` in place of the server's own
    fields, as the test changes them: what a busy shift brings to one refresh. The news each answer carried, listed
    as it goes."""
    answered: list[dict[str, Any]] = []

    def answer(route: Any) -> None:
        response = whole_answer(route)
        route.fulfill(response=response, json={**response.json(), **news})
        answered.append(dict(news))
    context.route(re.compile(r"/admin/conversations\?limit=\d+&status=handed_off&"), answer)
    return answered


def refreshed(page: Any, answered: list[dict[str, Any]]) -> None:
    """The console's next refresh (its timers held by ``page.clock``) made, with the inbox ``inbox_saying`` answers."""
    wait_until(page, "state.refreshing === 0")  # one under way (a click's) first: the next is timed from its end
    before = len(answered)
    page.clock.run_for(3_100)
    deadline = time.monotonic() + 30  # a loaded machine's browser
    while len(answered) == before:
        assert time.monotonic() < deadline, "the console did not refresh"
        page.wait_for_timeout(50)
    wait_until(page, "state.refreshing === 0")  # the answer applied


def console_counting_none(chromium: SimpleNamespace, server: LiveServer,
                          token: str) -> tuple[Any, Any, dict[str, Any], list[dict[str, Any]]]:
    """A console on a held clock whose inbox answers with ``news`` (``inbox_saying``), refreshed once with nobody
    waiting for its agent: the context, its page, the news a test changes and the answers made."""
    context = open_console(chromium, server, token, clock=True)
    page = context.pages[0]
    expect(page.locator(".figures")).not_to_have_text("")  # the first count made
    news: dict[str, Any] = {"waiting_yours": 0}
    answered = inbox_saying(context, news)
    refreshed(page, answered)  # nobody waiting
    return context, page, news, answered


def test_a_screen_reader_hears_one_customer_waiting_in_the_singular(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """The console announced "1 customers waiting"."""
    context, page, news, answered = console_counting_none(chromium, server, web_demo_bot.admin_token)
    news["waiting_yours"] = 1
    refreshed(page, answered)
    expect(page.locator(".arrivals")).to_have_text("1 customer waiting")
    close_console(context)


def test_a_screen_reader_hears_a_release_of_its_agents_customer_and_a_newcomer_in_the_same_refresh(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A lead's release of the agent's customer, said aloud, was replaced by the newcomer's count in the same refresh:
    the agent never heard of it."""
    context, page, news, answered = console_counting_none(chromium, server, web_demo_bot.admin_token)
    news.update(waiting_yours=2, taken=[{"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None,
                                         "at": time.time()}])
    refreshed(page, answered)
    expect(page.locator(".arrivals")).to_have_text("Ana released your customer to the queue · 2 customers waiting")
    close_console(context)


def test_a_screen_reader_hears_how_many_of_its_agents_customers_a_lead_moved_in_one_refresh(
        chromium: SimpleNamespace, server: LiveServer, web_demo_bot: SimpleNamespace) -> None:
    """A lead's Release all of an absent agent's customers was said to the agent as one customer released: the others
    went unsaid, and the agent looked for them among their own."""
    context, page, news, answered = console_counting_none(chromium, server, web_demo_bot.admin_token)
    news.update(taken=[{"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None,
                        "handed_back": False, "at": time.time()} for _ in range(3)])
    refreshed(page, answered)
    expect(page.locator(".arrivals")).to_have_text("Ana released your customer to the queue (+2)")
    refreshed(page, answered)  # told once
    news.update(taken=[*news["taken"], {"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None,
                                        "handed_back": True, "at": time.time()}])
    refreshed(page, answered)
    expect(page.locator(".status")).to_have_text("Ana handed your customer back to the bot")
    close_console(context)


def test_an_agents_action_keeps_its_result_in_the_status_line_when_a_customer_is_taken_from_them_meanwhile(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace) -> None:
    """The news of a customer a lead released from the agent, arriving in the refresh after the agent's takeover,
    replaced what the takeover said (here, why it failed) in the status line."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, "lee-own-token")
    context.route(re.compile(r"/handoff\?"), lambda route: route.fulfill(status=503, json={"error": "Store is busy"}))
    inbox_saying(context, {"taken": [{"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None,
                                      "at": time.time()}]})
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".status")).to_have_text("Store is busy · Ana released your customer to the queue")
    close_console(context)


def test_release_all_keeps_its_result_in_the_status_line_when_a_customer_is_taken_from_its_agent_meanwhile(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The news of a customer a lead released from the agent, arriving in the refresh after "Release all", was said
    aloud but never shown: the count released took the status line alone."""
    _, _, context = console_mine_only(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    context.route(re.compile(r"/admin/release\?"), lambda route: route.fulfill(json={"released": ["gone-1"]}))
    inbox_saying(context, {"taken": [{"conversation_id": f"console-{next(PAGE_NUMBERS)}", "by": "Ana", "to": None,
                                      "at": time.time()}]})
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Release all").click()
    expect(page.locator(".status")).to_have_text(
        "1 customer released to the queue. · Ana released your customer to the queue")
    close_console(context)


def test_a_screen_reader_hears_of_a_customer_who_starts_to_wait_behind_a_full_page_of_waiting_ones(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """The console counted the waiting customers on the one page of them it reads (200): with more, its count
    said "200+" and stayed so, and a newcomer was not announced. A page of one stands for that page here."""
    first, second, newcomer = (f"console-{next(PAGE_NUMBERS)}" for _ in range(3))
    for cid in (first, second):
        assert api.chat(cid, "/handoff")["handed_off"] is True
    context = open_console(chromium, server, web_demo_bot.admin_token, first, second)
    context.route(re.compile(r"/admin/conversations\?limit=200&status=handed_off&"),
                  lambda route: route.continue_(url=route.request.url.replace("limit=200", "limit=1")))
    page = context.pages[0]
    arrivals = page.get_by_role("status").filter(has_text=re.compile("customers? waiting"))
    page.wait_for_timeout(3500)  # a refresh on the page of one, with nobody new, says nothing
    expect(arrivals).to_have_count(0)
    assert api.chat(newcomer, "/handoff")["handed_off"] is True
    expect(arrivals).to_have_text(re.compile(r"^\d+ customers? waiting$"))
    expect(page).to_have_title(re.compile(r"^\(\d+\) deskbot"))
    context.close()


def test_the_agents_console_counts_as_new_only_what_its_agent_has_not_read(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent who opened a customer's conversation and read it without replying still saw "2 new" beside it."""
    alice, bob, context = console_on_two_waiting_customers(chromium, server, api, web_demo_bot.admin_token)
    page = context.pages[0]
    page.evaluate('localStorage.setItem("deskbot-agent-name", "Ana")')
    page.reload()
    for text in ("it is order 5521", "hello??"):
        api.chat(alice, text)
    meta = page.locator(f'.list li[data-id="{alice}"] .meta')
    expect(meta).to_have_text(re.compile(r" · 2 new$"))
    page.locator(f'.list li[data-id="{alice}"]').click()
    expect(page.locator(".turn.user .text").last).to_have_text("hello??")
    expect(meta).to_have_text(re.compile(r" · waiting 0 min$"))  # read
    page.locator(f'.list li[data-id="{bob}"]').click()
    api.chat(alice, "are you there?")
    expect(meta).to_have_text(re.compile(r" · 1 new$"))  # what came after
    colleague = open_console(chromium, server, web_demo_bot.admin_token, alice)
    expect(colleague.pages[0].locator(f'.list li[data-id="{alice}"] .meta')).to_have_text(re.compile(r" · 3 new$"))
    colleague.close()
    context.close()


def test_the_agents_console_draws_the_markdown_the_web_chat_draws(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent's **bold** and links showed in the console as typed, stars and brackets, where the customer's web chat
    drew them; the customer's own words stay as they typed them, and markup stays text."""
    cid, context, page = console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token)
    api.chat(cid, "is it **really** lost?")
    page.get_by_label("Your name").fill("Sam")  # the reply makes the customer nobody has theirs, in a name
    page.locator("form.reply textarea").fill(
        "**Not lost**: see [tracking](https://shop.example/track) or [this](javascript:alert(1)) <img src=x onerror=alert(2)>")
    page.locator("form.reply textarea").press("Enter")
    said = page.locator(".turn.agent .text")
    expect(said.locator("strong")).to_have_text("Not lost")
    expect(said.get_by_role("link")).to_have_count(1)
    expect(said.get_by_role("link", name="tracking")).to_have_attribute("href", "https://shop.example/track")
    expect(said).to_contain_text("[this](javascript:alert(1)) <img src=x onerror=alert(2)>")
    expect(page.locator(".turn.user .text").last).to_have_text("is it **really** lost?")
    assert page.locator(".turns img, .turn.user strong").count() == 0
    context.close()


def test_the_agents_console_shows_a_wecom_customers_replies_as_the_plain_text_they_got(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """WeCom shows no Markdown: the console drew an agent's **bold** and link there as the web chat does, and said
    nothing of the plain text the customer got, of an agent's reply or of the bot's own. It shows the reply as written,
    and what the customer got under it; the bot's buttons numbered, as WeCom lists them for the customer to pick by
    number."""
    cid = f"wecom:ww1:console-{next(PAGE_NUMBERS)}"
    store = Store(web_demo_bot.root / "dialogues.db")
    store.add_message(cid, "user", "我的包裹呢", "wecom")
    store.add_message(cid, "bot", "See **our policy**.", "wecom", buttons=[
        {"title": "Refunds", "payload": "/refund"}, {"title": "Talk to a person", "payload": "/handoff"}])
    store.add_agent_answer(cid, "**Not lost**: see [tracking](https://shop.example/track).", "wecom", "Li")
    store.close()
    context = open_console(chromium, server, web_demo_bot.admin_token)
    page = context.pages[0]
    page.get_by_role("button", name="With the bot").click()
    page.locator(f'.list li[data-id="{cid}"]').click()
    reply = page.locator(".turn.agent")
    expect(reply.locator(".text")).to_have_text("**Not lost**: see [tracking](https://shop.example/track).")
    expect(reply.locator(".sent")).to_have_text("The customer got: Not lost: see tracking (https://shop.example/track).")
    answer = page.locator(".turn.bot")
    expect(answer.locator(".text")).to_have_text("See **our policy**.\n1. [Refunds] 2. [Talk to a person]")
    expect(answer.locator(".sent")).to_have_text("The customer got: See our policy.")
    assert page.locator(".turn strong, .turn a").count() == 0
    context.close()


def test_the_agents_console_asks_for_the_agents_name_before_taking_a_customer_from_the_bot(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """An agent who took a customer over from the bot with no name left them nobody's to the colleagues, whose consoles
    offered to take them over: one did, and both believed the customer theirs."""
    cid, context, page = console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                            "/check_refund_policy")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    expect(page.get_by_label("Your name")).to_be_focused()
    assert api.history(cid)["status"] == "open"
    page.get_by_label("Your name").fill("Ana")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Ana")
    context.close()


@pytest.mark.parametrize("waiting", [False, True], ids=["with_the_bot", "waiting_for_nobody"])
def test_the_agents_console_asks_for_the_agents_name_before_a_reply_makes_a_customer_theirs(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace,
        waiting: bool) -> None:
    """A reply to a customer with the bot, or to one waiting whom nobody has, makes them the replying agent's: sent with
    no name, it left them nobody's to the colleagues, whose consoles offered to take them over, and two agents answered
    one customer. It is sent once the agent gave their name, as Take over is."""
    cid, context, page = (console_on_a_waiting_customer(chromium, server, api, web_demo_bot.admin_token) if waiting
                          else console_on_a_customer_with_the_bot(chromium, server, api, web_demo_bot.admin_token,
                                                                  "/check_refund_policy"))
    page.locator("form.reply textarea").fill("Let me look at your refund.")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".status")).to_have_text("Give your name first, so that your colleagues see the customer is yours.")
    expect(page.get_by_label("Your name")).to_be_focused()
    expect(page.locator("form.reply textarea")).to_have_value("Let me look at your refund.")
    before = api.history(cid)
    assert (before["status"], [t for t in before["turns"] if t["role"] == "agent"]) == (
        "handed_off" if waiting else "open", [])
    page.get_by_label("Your name").fill("Ana")
    page.locator("form.reply textarea").press("Enter")
    expect(page.locator(".conversation .title")).to_have_text(f"{cid} · web · taken by Ana")
    expect(page.locator("form.reply textarea")).to_have_value("")
    assert [(t["text"], t["author"]) for t in api.history(cid)["turns"] if t["role"] == "agent"] == [
        ("Let me look at your refund.", "Ana")]
    context.close()


def test_the_agents_console_asks_for_the_waiting_count_alone_where_it_lists_none_of_them(
        chromium: SimpleNamespace, server: LiveServer, api: SimpleNamespace, web_demo_bot: SimpleNamespace) -> None:
    """On its With the bot and To review tabs the console read a page of up to 200 waiting customers every 3 s, for the
    count in its title alone."""
    cid = f"console-{next(PAGE_NUMBERS)}"
    api.chat(cid, "/handoff")
    context = open_console(chromium, server, web_demo_bot.admin_token, cid)
    page = context.pages[0]
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "status=handed_off" in request.url else None)
    for tab in ("With the bot", "To review"):
        page.get_by_role("button", name=tab).click()
        page.wait_for_timeout(500)  # the refresh out at the click, on the tab before, has gone
        asked.clear()
        page.wait_for_timeout(3500)
        assert asked and all("limit=0&" in url for url in asked), asked
        expect(page).to_have_title(re.compile(r"^\(\d+\) deskbot · agents$"))
    context.close()





def test_the_web_chat_draws_an_exports_html_answer_as_its_lines_and_links(chromium: SimpleNamespace) -> None:
    """An answer a helpdesk exported in HTML, as bot init reads it, drawn by the web chat's own Markdown: a link whose
    address held a space is a link, a table's rows are lines, and no rule's "---", table's "| --- |" or picture's "!["
    is shown."""
    from bot.project import html_read

    answer = html_read('<p>Refunds:</p><table><tr><th>Method</th><th>Days</th></tr><tr><td>Card</td><td>5</td></tr>'
                       '</table><hr><p>See <a href="https://shop.example/help center">help</a> '
                       '<img src="https://shop.example/btn.png" alt="the button"></p>', markdown=True)
    page = chromium.browser.new_page()
    page.evaluate("""source => { const script = document.createElement("script"); script.dataset.deskbot = "markdown";
                                 script.textContent = source; document.body.append(script); }""",
                  (Path(__file__).parent.parent / "bot" / "static" / "widget.js").read_text(encoding="utf-8"))
    page.evaluate("text => document.body.replaceChildren(window.deskbotMarkdown(text))", answer)
    paragraphs = page.locator("body > p")
    expect(paragraphs).to_have_count(3)
    expect(paragraphs.nth(1)).to_have_text("Method | DaysCard | 5")  # two lines, a <br> between them
    expect(paragraphs.nth(1).locator("br")).to_have_count(1)
    expect(page.get_by_role("link", name="help")).to_have_attribute("href", "https://shop.example/help%20center")
    expect(page.get_by_role("link", name="the button")).to_have_attribute("href", "https://shop.example/btn.png")
    assert not any(mark in page.inner_text("body") for mark in ("---", "![", "](", "<"))
    page.close()
