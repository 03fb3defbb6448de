"""One turn end to end through the real server, engine, tiny model, custom action and SQLite store.

The tiny model's guesses are random, so these tests drive the deterministic paths: button payloads,
entities kept as slots, custom actions, handoff and the log.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bot.channels.base import Turn, normalise
from bot.engine import fillable as engine_fillable
from bot.server import BOT, create_app
from tests.conftest import SureOf, ask, configured_copy


@pytest.fixture
async def client(aiohttp_client: Any, tiny_demo_bot: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DESKBOT_ADMIN_TOKEN", "s3cret")
    return await aiohttp_client(create_app(tiny_demo_bot, device="cpu"))



def test_normalise_folds_width_and_strips_control_characters() -> None:
    assert normalise("ｏｒｄｅｒ\u0000 １２３\n\tplease") == "order 123 please"


async def test_intent_payload_uses_the_template_with_slots_from_earlier_turns(client: Any) -> None:
    await ask(client, "eng-1", "it is about order 123")  # an order the demo's order action knows
    reply = await ask(client, "eng-1", "/get_refund")
    assert (reply["intent"], reply["source"], reply["confidence"]) == ("get_refund", "template", 1.0)
    assert "order 123" in reply["reply"]


async def test_the_demos_offer_to_have_an_agent_cancel_an_order_is_a_button_that_hands_off(client: Any) -> None:
    """The demo said "reply here and an agent will do it" to "cancel order 123"; the customer's "yes please do it"
    got "Sorry, I'm not sure I understood", and no agent ever came. Its button brings one."""
    for conversation, said in [("cancel-en", "cancel order 123"), ("cancel-zh", "取消订单 123")]:
        await ask(client, conversation, said)
        reply = await ask(client, conversation, "/cancel_order")
        assert "123" in reply["reply"] and "reply here" not in reply["reply"] and "直接在这里回复" not in reply["reply"]
        assert [b["payload"] for b in reply["buttons"]] == ["/handoff"]
        assert (await ask(client, conversation, "/handoff"))["handed_off"] is True


async def test_saying_yes_to_a_reply_that_offered_one_button_is_that_button(client: Any) -> None:
    """"yes please" to "…or choose *Have an agent cancel it* and an agent will do it" got "All right. If there's anything
    else, just ask.", and the agent offered never came. Said to a reply with one button, a yes is that button; an "ok"
    alone, or a yes to a reply of several buttons, is not."""
    for conversation, said, yes in [("yes-en", "cancel order 123", "yes please"), ("yes-zh", "取消订单 123", "好的，麻烦了"),
                                    ("yes-go", "cancel order 123", "ok do it")]:
        await ask(client, conversation, said)
        await ask(client, conversation, "/cancel_order")
        reply = await ask(client, conversation, yes)
        assert (reply["source"], reply["handed_off"]) == ("handoff", True), yes
    await ask(client, "yes-to-refund", "/get_refund")  # its one button, to the refund policy's template
    reply = await ask(client, "yes-to-refund", "yes")
    assert (reply["source"], reply["intent"], reply["confidence"]) == ("template", "check_refund_policy", 1.0)
    for conversation, offered, said in [("ok-alone", "/cancel_order", "ok"), ("yes-to-three", "/greet", "yes")]:
        await ask(client, conversation, offered)  # an "ok" says yes to nothing; of three buttons, which one is not said
        reply = await ask(client, conversation, said)
        assert not reply["handed_off"] and reply["confidence"] < 1.0, said


async def test_a_buttons_title_typed_out_is_that_button(client: Any) -> None:
    """On the web chat, a customer typing a button's title ("退款政策", "Refund policy!") had it read by the classifier,
    and answered as whatever it leant to, where WeCom picks the choice. It is the button, as clicked."""
    for conversation, greeting, typed in [("typed-zh", "你好", "退款政策"), ("typed-wide", "你好", "退款政策！"),
                                          ("typed-en", "hello", "refund policy!")]:
        await ask(client, conversation, greeting)
        await ask(client, conversation, "/get_refund")
        reply = await ask(client, conversation, typed)
        assert (reply["intent"], reply["confidence"]) == ("check_refund_policy", 1.0), typed
    await ask(client, "typed-later", "你好")
    await ask(client, "typed-later", "/get_refund")
    await ask(client, "typed-later", "ok")  # a later reply offered no button: a title picks none
    assert (await ask(client, "typed-later", "退款政策"))["confidence"] < 1.0


@pytest.mark.parametrize(("conversation", "language_of"), [("redirect-en", "hello"), ("redirect-zh", "你好")])
async def test_the_demos_offer_to_have_an_agent_redirect_a_shipped_order_is_a_button(client: Any, conversation: str,
                                                                                     language_of: str) -> None:
    """"For a shipped order, an agent can try to redirect it" gave no way to an agent: "yes please" got the
    fallback."""
    await ask(client, conversation, language_of)
    reply = await ask(client, conversation, "/change_shipping_address")
    assert [b["payload"] for b in reply["buttons"]] == ["/handoff"]


@pytest.mark.parametrize(("conversation", "language_of"), [("complaint-en", "hello"), ("complaint-zh", "你好")])
@pytest.mark.parametrize("intent", ["complaint", "review"])
async def test_the_demos_answer_to_a_complaint_or_an_opinion_sends_it_to_an_agent(client: Any, conversation: str,
                                                                                  language_of: str, intent: str) -> None:
    """The demo asked "Please tell me what happened" (请告诉我发生了什么) of a complaint, and said "tell me here" (直接在
    这里告诉我) to an opinion, and answered what the customer then told it with "Sorry, I'm not sure I understood":
    the bot cannot take either, an agent can."""
    await ask(client, f"{conversation}-{intent}", language_of)
    reply = await ask(client, f"{conversation}-{intent}", f"/{intent}")
    assert "tell me" not in reply["reply"] and "告诉我" not in reply["reply"]
    assert [b["payload"] for b in reply["buttons"]] == ["/handoff"]


@pytest.mark.parametrize(("conversation", "said", "how", "untrue"), [
    ("refund-en", "it is about order 123", "*Request a refund*", "noted"),
    ("refund-zh", "订单 123", "*申请退款*", "已记下")])
async def test_the_demos_refund_answer_tells_how_to_request_it(client: Any, conversation: str, said: str, how: str,
                                                               untrue: str) -> None:
    """The demo told a customer "I've noted a refund request for order 123", which nothing had noted: they waited
    for money that no one was to send."""
    await ask(client, conversation, said)
    reply = await ask(client, conversation, "/get_refund")
    assert "123" in reply["reply"] and how in reply["reply"] and untrue not in reply["reply"]


@pytest.mark.parametrize(("conversation", "intent", "said", "each", "buttons"), [
    ("each-two", "cancel_order", "cancel orders 123 and 456", ["cancel order 123", "cancel order 456"], ["/handoff"]),
    ("each-three", "cancel_order", "cancel order 123, 456, 789", ["cancel order 123", "cancel order 456", "cancel order 789"],
     ["/handoff"]),
    ("each-zh", "get_refund", "我要退款，订单123和456", ["订单 123 的退款", "订单 456 的退款"], ["/track_refund"]),
    ("each-one", "get_refund", "refund for order 123", ["for order 123"], ["/track_refund"]),
    # the number right after the refund or cancellation, in full-width digits, joined by "or" or 或
    ("each-or", "get_refund", "refund 123 or 456", ["for order 123", "for order 456"], ["/track_refund"]),
    ("each-zh-or", "cancel_order", "取消 １２３或４５６", ["取消订单 123", "取消订单 456"], ["/handoff"]),
])
async def test_a_template_answers_each_order_the_message_names(client: Any, monkeypatch: pytest.MonkeyPatch,
                                                               conversation: str, intent: str, said: str,
                                                               each: list[str], buttons: list[str]) -> None:
    """"cancel orders 123 and 456" was told how to cancel order 123 alone, and the customer had to ask again about 456:
    a template filled with an order number answers of each order the message names, its buttons once."""
    bot = client.app[BOT]
    monkeypatch.setattr(bot, "nlu", SureOf(bot.nlu, intent))
    reply = await ask(client, conversation, said)
    assert (reply["source"], reply["intent"]) == ("template", intent)
    answers = reply["reply"].split("\n\n")
    assert len(answers) == len(each) and all(order in answer for order, answer in zip(each, answers))
    assert [button["payload"] for button in reply["buttons"]] == buttons


@pytest.mark.parametrize(("conversation", "said"), [("refund-after-en", "refund 456"), ("refund-after-zh", "退款 ４５６")])
async def test_a_refund_of_another_order_after_a_lookup_is_the_refunds_answer_for_it(
        client: Any, monkeypatch: pytest.MonkeyPatch, conversation: str, said: str) -> None:
    """"refund 456" after order 123 was looked up got order 456's status: read as though "refund" only named the order,
    it was taken for the same question again of another order."""
    bot = client.app[BOT]
    monkeypatch.setattr(bot, "nlu", SureOf(bot.nlu, "track_order"))
    assert (await ask(client, conversation, "where is order 123?"))["source"] == "action"
    monkeypatch.setattr(bot, "nlu", SureOf(bot.nlu, "get_refund"))
    reply = await ask(client, conversation, said)
    assert (reply["source"], reply["intent"]) == ("template", "get_refund") and "456" in reply["reply"], reply


@pytest.mark.parametrize(("conversation", "asked", "answer"), [
    ("prefixed-en", "/track_order", "DS52017 thanks"), ("prefixed-zh", "/track_order", "DS 52017 谢谢"),
    ("prefixed-hash", "/track_order", "#52017, thank you")])
async def test_an_order_number_with_the_shops_prefix_and_thanks_answers_the_lookups_question(
        client: Any, monkeypatch: pytest.MonkeyPatch, conversation: str, asked: str, answer: str) -> None:
    """"DS52017 thanks", to the demo's "what's your order number?", got "You're welcome!" and no lookup: the number
    given alone with thanks answered it, but not with the shop's prefix (as the order emails print it) or "#"."""
    bot = client.app[BOT]
    await ask(client, conversation, asked)
    monkeypatch.setattr(bot, "nlu", SureOf(bot.nlu, "thank_you"))  # as the demo's model reads the thanks
    reply = await ask(client, conversation, answer)
    assert (reply["source"], reply["intent"]) == ("action", "track_order")
    assert "52017" in reply["reply"]


async def test_a_number_the_patterns_did_not_read_keeps_an_earlier_order_out_of_the_template(client: Any) -> None:
    """After order 789, "I want my money back for order A1234" was told a refund of order 789 was noted."""
    bot = client.app[BOT]
    slots = {"order_id": "789", "language": "en"}
    for text in ("I want my money back for order A1234", "取消订单 B56789"):
        fillable = engine_fillable(bot.project, slots, bot.project.entities(text), text)
        assert fillable == {"language": "en"}, text
        assert "789" not in bot.project.responses.render("get_refund", "web", fillable, "en").text
    for text in ("I want my money back", "I paid 30 dollars, it's been 3 days"):  # no order number named
        assert engine_fillable(bot.project, slots, bot.project.entities(text), text) == slots, text
    said = "refund order 123, I paid 30 dollars"  # the order read in this message stands
    entities = bot.project.entities(said)
    assert entities == {"order_id": "123"}
    assert engine_fillable(bot.project, {**slots, **entities}, entities, said)["order_id"] == "123"


async def test_custom_action_answers_from_its_own_data(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status to anyone with the order number; the tracking number and the day once the email on the order is
    given, as the action asks. The number is given first to no lookup: the tiny model's guess at it may be any
    intent, the lookup too."""
    bot = client.app[BOT]
    nlu = bot.nlu
    monkeypatch.setattr(bot, "nlu", SureOf(nlu, "greet"))
    await ask(client, "eng-2", "my order number is 123")
    monkeypatch.setattr(bot, "nlu", nlu)
    reply = await ask(client, "eng-2", "/track_order")
    assert reply["source"] == "action"
    assert reply["reply"] == ("Order 123 is **shipped**.\nFor its tracking number and expected delivery, send me the "
                              "email address, postcode or phone number on the order.")
    reply = await ask(client, "eng-2", "it's alex@example.com")
    assert reply["source"] == "action"
    assert reply["reply"] == "Order 123 is **shipped**. Tracking: UPS 1Z999AA10123456784. Expected delivery: Tuesday."


async def test_a_greeting_mid_conversation_gets_the_short_greeting(client: Any) -> None:
    """A customer who said "hi" again after a few turns was introduced to the bot again, buttons and all: the
    demo's greeting for a conversation with earlier messages (a condition on mid_conversation) is short."""
    first = await ask(client, "greet-again", "/greet")
    assert first["reply"].startswith("Hi! I'm Demo Shop's assistant.") and first["buttons"]
    await ask(client, "greet-again", "/get_refund")
    again = await ask(client, "greet-again", "/greet")
    assert (again["reply"], again["buttons"]) == ("Hi again! What else can I help you with?", [])
    await ask(client, "greet-again-zh", "我的订单 123")
    assert (await ask(client, "greet-again-zh", "/greet"))["reply"] == "您好！请问还有什么可以帮您？"


async def test_handoff_silences_the_bot_until_handed_back(client: Any, tiny_demo_bot: Path) -> None:
    reply = await ask(client, "eng-3", "/handoff")
    assert reply["source"] == "handoff" and reply["handed_off"] is True
    silent = await ask(client, "eng-3", "hello? anyone?")
    assert (silent["reply"], silent["source"], silent["handed_off"]) == ("", "silent", True)

    headers = {"Authorization": "Bearer s3cret"}
    sent = await client.post("/admin/conversations/eng-3/messages", json={"text": "Hi, Sam here.", "agent": "Sam"}, headers=headers)
    assert sent.status == 200
    history = await (await client.get("/api/conversations/eng-3/history")).json()
    assert [m["text"] for m in history["turns"] if m["role"] == "agent"] == ["Hi, Sam here."]

    back = await client.post("/admin/conversations/eng-3/handback?agent=Sam", headers=headers)
    assert (await back.json()) == {"status": "open"}
    assert (await ask(client, "eng-3", "/get_refund"))["source"] == "template"


async def test_back_to_the_bot_is_logged_and_never_counts_as_a_miss(client: Any, tiny_demo_bot: Path) -> None:
    await ask(client, "eng-resume", "/handoff")
    resumed = await ask(client, "eng-resume", "/resume")  # the customer's own "Back to the bot"
    assert (resumed["source"], resumed["handed_off"]) == ("resume", False) and resumed["turn_id"] is not None
    again = await ask(client, "eng-resume", "/resume")  # clicked once more, after it is back with the bot
    assert again["reply"] == resumed["reply"]
    history = await (await client.get("/api/conversations/eng-resume/history")).json()
    assert [(t["role"], t["text"]) for t in history["turns"]][2:] == [("user", "/resume"), ("bot", resumed["reply"])] * 2
    with sqlite3.connect(tiny_demo_bot / "dialogues.db") as db:
        assert db.execute("SELECT status, fallbacks FROM conversations WHERE id = 'eng-resume'").fetchone() == ("open", 0)


@pytest.fixture
async def unsure(aiohttp_client: Any, tiny_demo_bot: Path, tmp_path: Path) -> Any:
    """A client of the tiny demo bot sure of no typed message, with no handoff intent: the second miss in a row
    hands off."""
    root = configured_copy(tiny_demo_bot, tmp_path / "unsure", handoff={"intent": None},
                           thresholds={"intent": 1.0, "retrieval": 1.0, "fallbacks_before_handoff": 2})
    return await aiohttp_client(create_app(root, device="cpu"))


async def test_thanks_after_an_answer_is_acknowledged_not_a_miss(unsure: Any) -> None:
    """"thanks 👍" and "好的[抱拳]" got "Sorry, I'm not sure I understood" and counted as misses: a customer who
    said thanks twice was handed to a person."""
    client = unsure
    said = [await ask(client, "polite", text) for text in ("ok", "thanks 👍", "好的[抱拳]", "[强]")]
    said.append(await ask(client, "noted", "Noted 🙏"))  # as Hong Kong's offices write it in English
    assert [(r["reply"], r["source"], r["intent"], r["handed_off"]) for r in said] == [
        ("All right. If there's anything else, just ask.", "template", None, False)] * 2 + [
        ("好的，如果还有其他问题，随时问我。", "template", None, False)] * 2 + [
        ("All right. If there's anything else, just ask.", "template", None, False)]
    unsure = await ask(client, "polite", "hmm, what about the thing")  # a miss still is one
    assert (unsure["source"], unsure["handed_off"]) == ("fallback", False)


async def test_an_acknowledgement_between_two_misses_leaves_the_count_of_misses(unsure: Any) -> None:
    """"ok" between two misses set the count of misses in a row back to none: the customer the bot did not
    understand twice was never handed to a person, however often they said "ok" in between."""
    first = await ask(unsure, "ok-between", "hmm, what about the thing")
    assert (first["source"], first["handed_off"]) == ("fallback", False)
    assert (await ask(unsure, "ok-between", "ok"))["source"] == "template"
    second = await ask(unsure, "ok-between", "and the other one?")
    assert (second["source"], second["handed_off"]) == ("handoff", True)


async def test_saying_the_answer_missed_asks_to_put_it_another_way_then_hands_off(
        aiohttp_client: Any, tiny_demo_bot: Path, tmp_path: Path) -> None:
    """"不对" after an answer was answered as what the classifier read in it ("ok", in the demo: "好的，如果还有其他问题，
    随时问我。"), however sure it was: the customer the bot had misunderstood was never asked again nor handed over."""
    root = configured_copy(tiny_demo_bot, tmp_path / "sure", thresholds={"intent": 0.0, "fallbacks_before_handoff": 3})
    client = await aiohttp_client(create_app(root, device="cpu"))
    said = [await ask(client, "wrong", text) for text in ("不对", "不是这个", "that's wrong")]
    assert [(r["source"], r["reply"]) for r in said[:2]] == [
        ("fallback", "抱歉，我不太确定您的意思。能换个说法吗？"), ("fallback", "抱歉，我还是没能理解。您可以换个说法，或者转人工客服。")]
    assert (said[2]["source"], said[2]["handed_off"]) == ("handoff", True)


async def test_emoji_or_punctuation_alone_asks_for_words_not_a_guess(aiohttp_client: Any, tiny_demo_bot: Path,
                                                                     tmp_path: Path) -> None:
    """"😭😭" or "？？" got the closest historical answer, however far, or "did you mean" intents the classifier leant
    to on signs alone: a confident-looking answer to nothing the customer said. It is a miss that asks for words."""
    root = configured_copy(tiny_demo_bot, tmp_path / "signs", thresholds={"intent": 1.0, "retrieval": 0.0,
                                                                          "fallbacks_before_handoff": 3})
    client = await aiohttp_client(create_app(root, device="cpu"))
    for conversation, greeting, signs, rephrase in [
            ("signs-zh", "您好", "？？", "抱歉，我还是没能理解。您可以换个说法，或者转人工客服。"),
            ("signs-en", "hello", "😭😭", "Sorry, I still didn't catch that. Could you put it another way, or talk to a person?")]:
        await ask(client, conversation, greeting)
        reply = await ask(client, conversation, signs)
        assert (reply["source"], reply["intent"], reply["reply"]) == ("fallback", None, rephrase)
        assert [button["payload"] for button in reply["buttons"]] == ["/handoff"]


async def test_pinyin_a_bot_was_not_taught_is_a_miss_in_chinese(aiohttp_client: Any, tiny_demo_bot: Path,
                                                                 tmp_path: Path) -> None:
    """The classifier and the answer index read noise in Pinyin typed without its characters: "wo yao tui huo" was
    answered as track_order, sure-looking. Unless nlu.yml teaches some Pinyin, it is a miss, in Chinese."""
    thresholds = {"intent": 0.0, "retrieval": 0.0, "fallbacks_before_handoff": 3}
    root = configured_copy(tiny_demo_bot, tmp_path / "pinyin", thresholds=thresholds)
    client = await aiohttp_client(create_app(root, device="cpu"))
    for conversation, text in [("tones-none", "wo yao tui huo"), ("tones-numbered", "wo3 yao4 tui4 huo4")]:
        reply = await ask(client, conversation, text)
        assert (reply["source"], reply["reply"]) == ("fallback", "抱歉，我不太确定您的意思。您是想问下面这些吗？")
        assert reply["buttons"][-1] == {"title": "转人工客服", "payload": "/handoff"}
    assert (await ask(client, "thanks", "xie xie"))["reply"] == "好的，如果还有其他问题，随时问我。"  # no miss
    taught = configured_copy(tiny_demo_bot, tmp_path / "taught", thresholds=thresholds)
    with (taught / "nlu.yml").open("a", encoding="utf-8") as nlu:
        nlu.write("- intent: get_refund\n  examples: |\n    - wo yao tui kuan\n")
    client = await aiohttp_client(create_app(taught, device="cpu"))
    assert (await ask(client, "taught", "wo yao tui huo"))["source"] != "fallback"


async def test_saying_the_answer_missed_is_a_thumbs_down_on_it(aiohttp_client: Any, tiny_demo_bot: Path,
                                                                tmp_path: Path) -> None:
    """"不对" after an answer was a miss, but the answer it said was wrong was neither in `bot review`'s queue nor
    among `bot stats`' thumbs down, as it is when the customer clicks the thumb: the customer's words are the vote."""
    from dialogues.review import candidates
    from dialogues.stats import conversation_stats
    from dialogues.store import Store

    root = configured_copy(tiny_demo_bot, tmp_path / "sure", thresholds={"intent": 0.0, "fallbacks_before_handoff": 3})
    client = await aiohttp_client(create_app(root, device="cpu"))
    answered = await ask(client, "wrong", "how long does delivery take?")
    assert answered["source"] == "template"
    await ask(client, "wrong", "不对")
    await ask(client, "right", "how long does delivery take?")
    await ask(client, "right", "不对吗？")  # asks something: no vote
    store = Store(root / "dialogues.db")
    assert [(row["text"], row["reasons"]) for row in candidates(store, threshold=0.0)
            if row["text"] != "不对吗？"] == [("how long does delivery take?", ["negative_feedback"])]
    assert conversation_stats(store)["feedback"] == {"up": 0, "down": 1}
    assert [row["comment"] for row in store.db["feedback"].rows] == ["不对"]


@pytest.mark.parametrize(("conversation", "other"), [("other-en", "and the other one? order 456"), ("other-bare", "456"),
                                                     ("other-zh", "那另一个订单456呢？")])
async def test_another_value_after_an_action_answered_runs_it_again(unsure: Any, conversation: str, other: str) -> None:
    """After order 123 was looked up, "and the other one? order 456" got "Sorry, I'm not sure I understood", though
    a person would just have looked order 456 up too."""
    await ask(unsure, conversation, "my order is 123")
    assert (await ask(unsure, conversation, "/track_order"))["reply"].startswith("Order 123 is")
    again = await ask(unsure, conversation, other)
    assert (again["source"], again["intent"]) == ("action", "track_order") and "456" in again["reply"]
    after = await ask(unsure, conversation, "hmm, what about the thing")  # no value: the classifier's, as before
    assert after["source"] == "fallback"


async def test_a_value_after_an_answer_not_an_actions_is_no_lookup(unsure: Any) -> None:
    """"456" alone after the refund's template, which fills the order number in, is the refund's answer for 456."""
    await ask(unsure, "other-template", "/get_refund")
    reply = await ask(unsure, "other-template", "456")
    assert (reply["source"], reply["intent"]) == ("template", "get_refund") and "456" in reply["reply"]


async def test_a_typed_request_for_a_person_hands_off_as_the_button_does(unsure: Any) -> None:
    """With no handoff intent, "talk to a human" got the fallback, and "转人工" the same in Chinese: only the
    button reached a person."""
    for conversation, text, said in [("typed-en", "hi, talk to a human please", "I'm connecting you with a human agent."),
                                     ("typed-zh", "转人工", "正在为您转接人工客服")]:
        reply = await ask(unsure, conversation, text)
        assert (reply["source"], reply["handed_off"]) == ("handoff", True) and reply["reply"].startswith(said)
        assert reply["intent"] == reply["ranking"][0]["intent"]  # what the classifier read in it, as logged
    asked = await ask(unsure, "typed-about", "can I talk to someone about my refund")  # a question, for the bot
    assert (asked["source"], asked["handed_off"]) == ("fallback", False)


async def test_admin_api_needs_the_token(client: Any) -> None:
    assert (await client.post("/admin/reload")).status == 401
    wrong = await client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_every_exchange_is_in_the_store_before_the_reply(client: Any, tiny_demo_bot: Path) -> None:
    reply = await ask(client, "eng-4", "ＣＡＮＣＥＬ my order")
    db = sqlite_utils.Database(tiny_demo_bot / "dialogues.db")
    turns = list(db.query("select role, text from turns where conversation_id = 'eng-4' order by id"))
    assert turns[0] == {"role": "user", "text": "CANCEL my order"}
    assert turns[1]["role"] == "bot" and turns[1]["text"] == reply["reply"]
    prediction = next(db.query("select intent, source, model_version from predictions where reply_turn_id = ?",
                               [reply["turn_id"]]))
    assert prediction == {"intent": reply["intent"], "source": reply["source"], "model_version": "v0001"}


async def test_a_file_that_came_with_the_words_is_shown_to_agents_and_not_read(client: Any, tiny_demo_bot: Path) -> None:
    """A platform message's file (a Slack screenshot with a caption) is noted in the transcript beside the words, which
    alone the model reads and the reviewers label."""
    bot = client.server.app[BOT]
    await bot.handle(Turn("slack:T1:C1:1.1", "ＷＨＥＲＥ is my refund?", "slack", "U1", attached="[picture]"))
    db = sqlite_utils.Database(tiny_demo_bot / "dialogues.db")  # the transcript shows raw_text, as typed
    assert list(db.query("select text, raw_text from turns where conversation_id = 'slack:T1:C1:1.1' and role = 'user'")
                ) == [{"text": "WHERE is my refund?", "raw_text": "ＷＨＥＲＥ is my refund?\n[picture]"}]


async def test_a_mention_is_shown_to_agents_by_name_and_read_as_a_word(client: Any, tiny_demo_bot: Path) -> None:
    """A Slack mention of a colleague the model reads as "@someone" is shown in the transcript by their name."""
    bot = client.server.app[BOT]
    await bot.handle(Turn("slack:T1:C1:1.2", "did @someone refund me?", "slack", "U1", written="did @Ada refund me?"))
    db = sqlite_utils.Database(tiny_demo_bot / "dialogues.db")
    assert list(db.query("select text, raw_text from turns where conversation_id = 'slack:T1:C1:1.2' and role = 'user'")
                ) == [{"text": "did @someone refund me?", "raw_text": "did @Ada refund me?"}]


def test_bot_chat_answers_in_the_terminal_and_logs_the_turn(tiny_demo_bot: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))
    responses = root / "responses.yml"  # a reply over two lines, as agents write them
    responses.write_text(responses.read_text().replace("They take 5–7 business days", "\\nThey take 5–7 business days", 1))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "chat", str(root), "--device", "cpu"], input="/track_refund\n/handoff\nhello?\n",
                          capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("bot> ") == 2
    # what was piped in shows after its prompt, as typed in a terminal: it was "you> bot> …", without the question
    assert done.stdout.startswith("you> /track_refund\nbot> ") and "you> hello?\n" in done.stdout, done.stdout
    assert "Returns & refunds**. \n     They take 5–7" in done.stdout  # its second line under its first, not at "you> "
    assert done.stdout.endswith("you> \n")  # the end of input ends the prompt's line, for the shell's prompt after it
    assert "(template, track_refund 1.00)" in done.stderr
    # handed off, the bot is silent, and says why rather than "None"
    assert ("(silent, no intent: handed off; in the terminal no agent can answer, /resume hands it back to the bot)"
            in done.stderr)
    # only deskbot's own lines: no progress bar of the model load between the prompt and the answer
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr
    turns = list(sqlite_utils.Database(root / "dialogues.db")["turns"].rows)
    assert [(t["role"], t["channel"], t["text"]) for t in turns][0] == ("user", "cli", "/track_refund")


def test_ctrl_c_ends_bot_chat_at_its_prompt(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """On a terminal, Ctrl-C at `you>` used to wait for Enter (the prompt was read in a worker thread)."""
    import ctypes
    import pty
    import select
    import signal

    root = shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))
    pid, terminal = pty.fork()
    if pid == 0:  # the child: bot chat on the pseudo-terminal
        os.chdir(Path(__file__).parent.parent)
        # Started as a terminal's shell starts it: a suite run in the background (`make test &`) has Ctrl-C
        # ignored, and an ignored signal stays ignored across exec.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # torch starts a thread a core; a test worker keeps to one
        os.execv(sys.executable, [sys.executable, "-m", "bot.cli", "chat", str(root), "--device", "cpu"])
    seen, deadline = b"", time.monotonic() + 300
    while b"you> " not in seen and time.monotonic() < deadline:
        if select.select([terminal], [], [], 1)[0]:
            seen += os.read(terminal, 4096)
    assert b"you> " in seen, seen
    time.sleep(1)  # a person's Ctrl-C comes after the prompt, not within a microsecond of it
    # The kernel hands the terminal's SIGINT to any thread of the process; on one of torch's, the main
    # thread's read went on waiting for Enter. That thread is chosen here, where the kernel chooses by chance.
    threads = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert threads, "bot chat runs threads besides its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(234, pid, threads[-1], signal.SIGINT) == 0  # tgkill(2) on x86-64
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    stuck = ""
    if done[0] == 0:  # what each thread was doing, and what the chat said, for the failure's message
        while select.select([terminal], [], [], 0.2)[0]:
            seen += os.read(terminal, 4096)
        for task in sorted(os.listdir(f"/proc/{pid}/task")):
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
            wchan = Path(f"/proc/{pid}/task/{task}/wchan").read_text()
            stuck += f"{task} {wchan} " + " ".join(line for line in status.splitlines() if line.startswith(("Sig", "Shd"))) + "\n"
        os.kill(pid, 9)
    os.close(terminal)
    assert done[0] == pid, f"bot chat was still waiting 20 s after Ctrl-C:\n{seen[-2000:]!r}\n{stuck}"


def test_bot_chat_does_not_send_a_line_the_terminal_cut(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A terminal holds 4,095 bytes of a line: a longer paste went out cut, and Chinese cut inside a character
    was called "not valid UTF-8"."""
    import pty
    import select

    root = shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))
    pid, terminal = pty.fork()
    if pid == 0:
        os.chdir(Path(__file__).parent.parent)
        os.execv(sys.executable, [sys.executable, "-m", "bot.cli", "chat", str(root), "--device", "cpu"])
    seen = b""

    def read_until(marker: bytes, count: int) -> None:
        nonlocal seen
        deadline = time.monotonic() + 300
        while seen.count(marker) < count and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.5)[0]:
                seen += os.read(terminal, 65536)
        assert seen.count(marker) >= count, seen[-3000:]

    read_until(b"you> ", 1)
    for i, line in enumerate(["a" + "我要退款订单号一二三" * 150, "b" * 5000], start=2):  # 4,501 and 5,000 bytes
        os.write(terminal, line.encode() + b"\n")
        read_until(b"you> ", i)
    os.write(terminal, b"/track_refund\n")
    read_until(b"you> ", 4)
    os.write(terminal, b"\x04")  # Ctrl-D
    os.waitpid(pid, 0)
    os.close(terminal)
    assert seen.count(b"(not sent: a terminal cuts a line at 4,095 bytes") == 2  # each, said as it is
    turns = list(sqlite_utils.Database(root / "dialogues.db")["turns"].rows)
    assert [t["text"] for t in turns if t["role"] == "user"] == ["/track_refund"]  # nothing cut went out


def test_bot_chat_counts_a_line_in_the_terminals_own_bytes(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """2,800 bytes of Chinese in a GB18030 terminal are 4,200 in UTF-8: refused as cut, though nothing was."""
    import pty

    root = shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))
    message = "我要退款" * 350
    pid, terminal = pty.fork()
    if pid == 0:
        os.chdir(Path(__file__).parent.parent)
        os.execve(sys.executable, [sys.executable, "-m", "bot.cli", "chat", str(root), "--device", "cpu"],
                  {**os.environ, "PYTHONIOENCODING": "gb18030"})
    seen = b""
    while b"you> " not in seen:
        seen += os.read(terminal, 65536)
    os.write(terminal, message.encode("gb18030") + b"\n")
    while seen.count(b"you> ") < 2:
        seen += os.read(terminal, 65536)
    os.write(terminal, b"\x04")  # Ctrl-D
    os.waitpid(pid, 0)
    os.close(terminal)
    assert b"not sent" not in seen
    turns = list(sqlite_utils.Database(root / "dialogues.db")["turns"].rows)
    assert [t["text"] for t in turns if t["role"] == "user"] == [message]


def test_a_payload_typed_in_the_other_chinese_script_chooses_its_intent() -> None:
    """A customer in Hong Kong or Taiwan typing the payload of an intent named in Chinese (``/退貨`` for ``/退货``), or
    an input method converting it, was read as those words typed, not as the button."""
    import torch
    from types import SimpleNamespace

    from bot.nlu import NLU

    nlu = NLU(SimpleNamespace(labels=["退货", "查詢訂單", "track_order"], device=torch.device("cpu")),  # type: ignore[arg-type]
              SimpleNamespace(), "v0001")  # type: ignore[arg-type]
    assert [nlu.chosen(name) for name in ("退货", "退貨", "查询订单", "查詢訂單", "track_order", "退款")] == [
        "退货", "退货", "查詢訂單", "查詢訂單", "track_order", None]
