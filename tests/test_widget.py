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
import itertools
import json
import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from bot.server import BOT, create_app

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RESULTS = Path(__file__).resolve().parent.parent / "results"
XSS = "<img src=x onerror=alert(1)>"

expect.set_options(timeout=10_000)


class LiveServer:
    """``bot serve``'s app on 127.0.0.1, and the shop's pages on ``shop_socket``, on their own event
    loop in a thread, for a browser to use."""

    def __init__(self, root: Path, shop_socket: socket.socket) -> None:
        self.root = root
        self.shop_socket = shop_socket
        self.pages: dict[str, str] = {}  # the shop's pages by path, written by the tests
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
        return web.Response(text=self.pages[request.path], content_type="text/html")

    async def _start(self) -> None:
        self.app = create_app(self.root, device="cpu")
        runner = web.AppRunner(self.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        shop = web.Application()
        shop.router.add_get("/{page}", self._shop_page)
        shop_runner = web.AppRunner(shop)
        await shop_runner.setup()
        await web.SockSite(shop_runner, self.shop_socket).start()
        self.runners = [runner, shop_runner]

    def start(self) -> None:
        self.thread.start()
        self._run(self._start())

    def drop_sockets(self) -> None:
        """Close every widget's socket from the server side, as a restart or a proxy timeout would."""
        assert self.app is not None
        self._run(self.app[BOT].channels["web"].close())

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
    context = chromium.request.new_context(base_url=server.url)
    auth = {"Authorization": f"Bearer {web_demo_bot.admin_token}"}

    def admin(path: str, body: dict[str, Any] | None = None) -> Any:
        response = context.post(path, data=body or {}, headers=auth)
        assert response.ok, response.text()
        return response.json()

    def chat(cid: str, text: str) -> Any:
        return context.post("/api/chat", data={"conversation_id": cid, "text": text}).json()

    def history(cid: str) -> Any:
        return context.get(f"/api/conversations/{cid}/history").json()

    yield SimpleNamespace(admin=admin, chat=chat, history=history)
    context.dispose()


def embed_page(server_url: str, config: dict[str, Any], lang: str = "en") -> str:
    """A customer's page: its config object and the one script tag."""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Shop</title></head>'
        "<body><h1>Shop</h1>"
        f"<script>window.deskbotConfig = {json.dumps(config)};</script>"
        f'<script src="{server_url}/widget.js" async></script></body></html>'
    )


PAGE_NUMBERS = itertools.count()


class Widget:
    """A browser tab on a shop page with the widget embedded, and what it noticed (dialogs, errors)."""

    def __init__(self, browser: Browser, server: LiveServer, origin: str, config: dict[str, Any],
                 lang: str = "en", init_script: str | None = None) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        path = f"/shop-{next(PAGE_NUMBERS)}.html"
        server.pages[path] = embed_page(server.url, {"open": True, **config}, lang)
        if init_script:
            self.context.add_init_script(init_script)
        self.page: Page = self.context.new_page()
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
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
        widget = Widget(chromium.browser, server, web_demo_bot.embed_origin, config, lang, init_script)
        opened.append(widget)
        return widget

    yield open_
    for widget in opened:
        widget.close()


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

    page.reload()
    expect(widget.bot_replies()).to_have_count(1)
    assert widget.conversation_id() == cid
    expect(page.locator(".msg.user .bubble")).to_have_text(["my parcel never arrived"])
    assert text_of(widget.bot_replies().first.locator(".bubble")) == " ".join(expected["reply"].split())
    expect(page.locator(".msg.bot")).to_have_count(1)  # no greeting over an existing conversation


def test_quick_reply_sends_its_payload_and_shows_its_title(open_widget: Any, api: SimpleNamespace) -> None:
    widget = open_widget()
    widget.send("hmm")
    expect(widget.bot_replies()).to_have_count(1)
    first = widget.page.locator(".quick button").first
    title = first.inner_text()
    first.click()
    expect(widget.page.locator(".msg.user .bubble")).to_have_text(["hmm", title])
    expect(widget.bot_replies()).to_have_count(2)
    turns = api.history(widget.conversation_id())["turns"]
    sent = [t["text"] for t in turns if t["role"] == "user"]
    assert sent[0] == "hmm" and re.fullmatch(r"/\w+", sent[1]), sent  # the payload went to the bot, not the title
    widget.page.reload()
    expect(widget.page.locator(".msg.user .bubble")).to_have_text(["hmm", title])  # still the title after a reload


def test_html_is_shown_as_text_and_only_safe_markdown_renders(open_widget: Any, api: SimpleNamespace) -> None:
    widget = open_widget()
    page = widget.page
    widget.send(XSS)
    expect(widget.bot_replies()).to_have_count(1)
    expect(page.locator(".msg.user .bubble")).to_have_text([XSS])
    agent_text = f"**Refund sent** {XSS}\n- [help](https://shop.example.com/help)\n- [bad](javascript:alert(2))"
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": agent_text})
    bubble = page.locator(".msg.agent .bubble")
    expect(bubble).to_contain_text(XSS)  # pushed over the socket, shown literally
    expect(bubble.locator("strong")).to_have_text("Refund sent")
    expect(bubble.locator("li")).to_have_count(2)
    links = bubble.locator("a")
    expect(links).to_have_count(1)
    assert links.get_attribute("href") == "https://shop.example.com/help"
    assert links.get_attribute("rel") == "noopener noreferrer nofollow"
    expect(bubble.locator("li").nth(1)).to_have_text("[bad](javascript:alert(2))")
    page.wait_for_timeout(300)  # time for an onerror handler to fire, had an <img> been made
    assert page.locator("img").count() == 0
    assert page.evaluate("document.getElementById('deskbot-widget').shadowRoot.querySelectorAll('img, script, [onerror]').length") == 0
    assert widget.dialogs == []


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
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        rows = db.execute("SELECT value FROM feedback WHERE turn_id = ? ORDER BY id", [turn_id]).fetchall()
    assert rows == [(1,), (-1,)]
    widget.page.reload()  # the vote is shown again from the history
    expect(widget.bot_replies().first.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "true")


def test_handoff_then_agent_replies_over_the_socket(open_widget: Any, api: SimpleNamespace, server: LiveServer) -> None:
    widget = open_widget(pollInterval=60_000)  # no polling: everything comes over the socket
    page = widget.page
    widget.send("I need help")
    page.locator(".quick button", has_text="Talk to a person").click()
    expect(page.locator(".banner")).to_be_visible()
    expect(page.locator(".banner")).to_contain_text("You're now chatting with a person")
    cid = widget.conversation_id()
    assert api.history(cid)["status"] == "handed_off"

    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Hi, this is Sam from support."})
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam from support."])
    expect(page.locator(".msg.agent .sender")).to_have_text(["Agent"])
    server.drop_sockets()
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Are you still there?"})  # while it reconnects
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Hi, this is Sam from support.", "Are you still there?"])
    page.wait_for_function("Deskbot.connected()")
    api.admin(f"/admin/conversations/{cid}/messages", {"text": "Pushed again."})
    expect(page.locator(".msg.agent .bubble")).to_have_count(3)
    widget.send("thanks Sam")  # the bot stays quiet while a person has the conversation
    expect(page.locator(".msg.user")).to_have_count(3)
    expect(page.locator(".typing")).to_be_hidden()
    api.admin(f"/admin/conversations/{cid}/handback")
    expect(page.locator(".banner")).to_be_hidden()
    expect(page.locator(".notice")).to_have_text(["You're back with the bot."])
    expect(widget.bot_replies()).to_have_count(2)  # the answer and the handoff message, nothing for "thanks Sam"


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
    api.admin(f"/admin/conversations/{widget.conversation_id()}/messages", {"text": "Sam here, over HTTP."})
    expect(page.locator(".msg.agent .bubble")).to_have_text(["Sam here, over HTTP."])  # found by polling the history


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


def test_demo_page_and_screenshot(chromium: SimpleNamespace, server: LiveServer) -> None:
    context = chromium.browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.goto(f"{server.url}/")
    expect(page.locator("h2")).to_have_text("Demo Shop support")  # the title from bot.yml
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
    context.close()
