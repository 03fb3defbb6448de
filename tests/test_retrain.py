"""``bot retrain``: the promotion gate, warm and full training, agent answers in the index, a killed
run, and a hot swap under load, on the small four-intent bot (tiny BERT, real SQLite and FAISS)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

import bot.retrain
import bot.server
import bot.training
from bot.cli import cli
from bot.cli.models import _print_decision, say_not_learnt
from bot.nlu import Remembered, as_served
from bot.project import Example, ProjectError, load_project
from bot.retrain import (
    agent_answers,
    at_threshold,
    exported,
    forgotten,
    gate,
    learned_examples,
    measured,
    measured_as,
    regate,
    retrain,
    trained_at,
)
from bot.server import create_app, load_serving_model
from bot.training import (EVALUATION_FILE, changed_settings, frozen_split, held_out_texts, holdout_metrics,
                          seed_labels, train_config, train_project)
from dialogues.export import LearnedData, about_one_case, about_one_person, learnable, learned_data
from dialogues.stats import conversation_stats
from dialogues.store import MIGRATIONS, TRYOUT_CHANNEL, Exchange, Store
from finetune.classifier import IntentClassifier
from finetune.registry import Registry, RegistryError
from retrieval.text import same_text
from tests.conftest import (SMALL_INTENTS, ask, configure, damage, rename_intent, store_in_store_dir_of_a_newer_deskbot,
                            store_of_the_last_deskbot)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def bot_dir(small_bot: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_bot, tmp_path / "bot"))


def log_turns(store: Store, texts: list[str], conversation: str = "c1", intent: str = "cancel_order") -> list[int]:
    """User turns as the engine writes them (a low-confidence fallback each); returns their turn ids."""
    ids = []
    for text in texts:
        user_turn = store.log_exchange(Exchange(conversation, "web", None, text, None, "Sorry?", intent, 0.3,
                                                [(intent, 0.3), ("get_refund", 0.25)], "fallback", "v0001"))
        ids.append(user_turn[0])
    return ids


def one_label_to_promote(bot_dir: Path) -> None:
    """One new label and a gate that passes whatever it gives: the next retrain trains and promotes."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["the parcel is late"]), "track_order", "ann")
    store.close()


def seed_texts(root: Path, intent: str) -> list[str]:
    return [e.text for e in load_project(root).examples if e.intent == intent]


def figures(accuracy: float, per_intent: dict[str, float], count: int = 5) -> dict[str, Any]:
    return {"accuracy": accuracy, "n": count * len(per_intent), "per_intent": per_intent,
            "counts": {intent: count for intent in per_intent}}


def test_gate_compares_overall_and_per_intent_accuracy_within_margins() -> None:
    serving = {"frozen": figures(0.8, {"a": 1.0, "b": 0.6}), "seed": figures(1.0, {"a": 1.0, "b": 1.0})}
    same = {"frozen": figures(0.8, {"a": 1.0, "b": 0.6}), "seed": figures(1.0, {"a": 1.0, "b": 1.0})}
    assert gate(serving, same, 0.0, 0.02, 5)[0] == []

    better_overall_but_b_drops = {"frozen": figures(0.85, {"a": 1.0, "b": 0.4}), "seed": figures(1.0, {"a": 1.0, "b": 1.0})}
    reasons, drops = gate(serving, better_overall_but_b_drops, 0.0, 0.02, 5)
    assert reasons == ["frozen: b fell by 0.2000 (from 0.6000), more than 0.02"]
    assert drops["frozen"] == {"a": 0.0, "b": 0.2}
    assert gate(serving, better_overall_but_b_drops, 0.0, 0.25, 5)[0] == []  # within a wider margin

    worse_overall = {"frozen": figures(0.7, {"a": 1.0, "b": 0.6}), "seed": figures(0.99, {"a": 1.0, "b": 1.0})}
    reasons, _ = gate(serving, worse_overall, 0.0, 0.02, 5)
    assert reasons == ["frozen: accuracy fell from 0.8000 to 0.7000", "seed: accuracy fell from 1.0000 to 0.9900"]
    assert gate(serving, worse_overall, 0.1, 0.02, 5)[0] == []

    # An intent with fewer examples than min_intent_examples counts only in the overall figure.
    small = {"frozen": figures(0.8, {"a": 1.0, "b": 0.6}, count=2), "seed": serving["seed"]}
    small_drop = {"frozen": figures(0.8, {"a": 0.5, "b": 1.0}, count=2), "seed": serving["seed"]}
    assert gate(small, small_drop, 0.0, 0.02, 5)[0] == []
    assert gate(small, small_drop, 0.0, 0.02, 2)[0] == ["frozen: a fell by 0.5000 (from 1.0000), more than 0.02"]


def test_gate_lets_one_seed_example_fall_but_not_two_nor_one_of_the_frozen_set() -> None:
    """Both models learnt the seed examples, so the serving model answers nearly all and the candidate has
    little to gain there: one a new label contradicts refused every later retrain. Two lost is forgetting."""
    perfect = figures(1.0, {"a": 1.0, "b": 1.0}, count=9)
    serving = {"frozen": perfect, "seed": perfect}
    one_lost = figures(17 / 18, {"a": 8 / 9, "b": 1.0}, count=9)
    assert gate(serving, {"frozen": perfect, "seed": one_lost}, 0.0, 0.02, 5, 1, ["a"])[0] == []
    assert gate(serving, {"frozen": perfect, "seed": one_lost}, 0.0, 0.02, 5, 0, ["a"]) == (
        ["seed: accuracy fell from 1.0000 to 0.9444", "seed: a fell by 0.1111 (from 1.0000), more than 0.02"],
        {"frozen": {"a": 0.0, "b": 0.0}, "seed": {"a": 0.1111, "b": 0.0}})
    assert gate(serving, {"frozen": one_lost, "seed": perfect}, 0.0, 0.02, 5, 1)[0] == [
        "frozen: accuracy fell from 1.0000 to 0.9444", "frozen: a fell by 0.1111 (from 1.0000), more than 0.02"]

    two_in_a = figures(16 / 18, {"a": 7 / 9, "b": 1.0}, count=9)
    assert gate(serving, {"frozen": perfect, "seed": two_in_a}, 0.0, 0.02, 5, 1, ["a", "a"])[0] == [
        "seed: accuracy fell from 1.0000 to 0.8889", "seed: a fell by 0.2222 (from 1.0000), more than 0.02"]
    one_in_each = figures(16 / 18, {"a": 8 / 9, "b": 8 / 9}, count=9)
    assert gate(serving, {"frozen": perfect, "seed": one_in_each}, 0.0, 0.02, 5, 1, ["a", "b"])[0] == [
        "seed: accuracy fell from 1.0000 to 0.8889"]


def test_gate_counts_seed_examples_lost_not_the_net_fall() -> None:
    """Lost two, gained one back: the net fall of one example hid a second lost one."""
    before = figures(26 / 27, {"a": 1.0, "b": 1.0, "c": 8 / 9}, count=9)
    after = figures(25 / 27, {"a": 8 / 9, "b": 8 / 9, "c": 1.0}, count=9)
    serving, candidate = {"frozen": figures(1.0, {"a": 1.0})}, {"frozen": figures(1.0, {"a": 1.0})}
    assert gate({**serving, "seed": before}, {**candidate, "seed": after}, 0.0, 0.02, 5, 1, ["a", "b"])[0] == [
        "seed: accuracy fell from 0.9630 to 0.9259"]
    assert gate({**serving, "seed": before}, {**candidate, "seed": after}, 0.0, 0.02, 5, 2, ["a", "b"])[0] == []


def test_a_promoted_candidate_names_the_seed_example_it_lost_as_let_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """A promotion printed beside "worst intent drop 0.1111 (margin 0.02)" read as a gate that failed to act."""
    lost = [{"text": "Why did my top-up not go through?", "intent": "top_up_reverted"}]
    decision = {"serving": "v0001", "version": "v0002", "mode": "warm", "figures": {}, "worst_intent_drop": 0.1111,
                "intent_drops": {"frozen": {"top_up": 0.0, "card_arrival": -0.2}, "seed": {"top_up_reverted": 0.1111}},
                "margins": {"max_intent_drop": 0.02, "max_forgotten": 1}, "reasons": [], "forgotten": lost,
                "data": {"seed_examples": 693, "labelled": 9, "oos": 0, "new_labels": 9, "agent_answers": 0,
                         "new_answers": 0}}
    _print_decision({**decision, "passed": True, "promoted": True}, "v0002", Path("mybot"))
    shown = capsys.readouterr().out.splitlines()
    assert shown[-2:] == [
        "  1 seed example now answered otherwise, within learning.max_forgotten (1); check the label:",
        "    top_up_reverted: Why did my top-up not go through?"]
    assert "  worst intent drop 0.1111 (seed: top_up_reverted; margin 0.02)" in shown  # which intent, not a bare figure
    _print_decision({**decision, "passed": False, "promoted": False, "reasons": ["seed: accuracy fell"]}, "v0001",
                    Path("mybot"))
    assert "  1 seed example now answered otherwise; check the label:" in capsys.readouterr().out.splitlines()
    _print_decision({**decision, "passed": True, "promoted": True, "forgotten": lost * 7}, "v0002", Path("mybot"))
    assert capsys.readouterr().out.splitlines()[-2:] == ["    top_up_reverted: Why did my top-up not go through?",
                                                          "    (+2 more: --json lists them all)"]


def test_forgotten_lists_the_seed_examples_only_the_serving_model_answers_right() -> None:
    seed = [Example("where is my parcel", "track_order"), Example("cancel it", "cancel_order"),
            Example("refund please", "get_refund")]
    before, after = {"right": [True, True, False]}, {"right": [False, True, True]}
    assert forgotten(seed, before, after) == [{"text": "where is my parcel", "intent": "track_order"}]


def test_an_agent_answer_that_lost_personal_data_is_not_shown_to_other_customers() -> None:
    row = {"question": "how do I return it?", "intent": None, "id": 1, "created": 0.0}
    data = LearnedData([], [{**row, "answer": "Write to [EMAIL] and we will send a label."},
                            {**row, "id": 2, "answer": "Use the return form in your account."}])
    assert [a.text for a in agent_answers(data)] == ["Use the return form in your account."]


@pytest.mark.parametrize(("asked", "answer"), [
    ("", "Hi, Thanks for your patience. Refunds take 5-7 days."),  # the word after a greeting is no name
    ("", "Hello, Of course! Returns are free."),
    ("", "The MacBook Air M2 8GB is back in stock."),  # a size is no postcode
    ("", "The PS5 1TB edition ships next week."),
    ("", "In WeChat: Settings > Payment > Add card."),  # a menu is no WeChat ID
    ("我是上海的客户，什么时候发货", "上海仓库今天发货"),  # after 我是, a city is no name
    ("我是VIP会员，有折扣吗", "VIP会员可以享受9折"),
    ("", "Thanks, UPS!"), ("", "Hello, DHL: 2 days"), ("", "Thanks! PayPal."),  # a brand is no name
    ("", "这个时间段3号之前都能发货"), ("", "知道10号发货就好"), ("", "走顺丰通道5号到"),  # a date is no house number
    ("", "您好，谢谢！"), ("", "亲爱的顾客，已退款"), ("", "您好，周末不发货"), ("", "您好，江苏可以发货"),  # greet no one
    ("", "門市在2樓客服室旁邊"), ("", "送到15樓就可以"),  # a floor alone is no one's
    ("", "周生生的首飾今天到貨"), ("", "學生證可以打九折"),  # 生 after a surname, greeting no one
    ("", "收件人是我本人"), ("", "持卡人是我们公司的话请提供营业执照"), ("", "收件人 周末不在可以放驿站"),  # no one named
])
def test_an_everyday_agent_answer_is_no_ones_and_stays_indexed(asked: str, answer: str) -> None:
    """Each was taken for one naming its customer or where they live, and never given to anyone."""
    assert not about_one_person(asked, answer)


@pytest.mark.parametrize(("asked", "answer"), [
    ("", "Hi John, your parcel left today."), ("", "Thanks Maria!"), ("", "Sent to London NW1 6XE today"),
    ("", "加我微信：zhangwei"), ("我是张伟，订单没到", "张伟您好，已为您催件"), ("我係陳大文，想退款", "好，陳大文，已經幫你處理"),
    # names in the alphabets customers write them in: each was given to other customers
    ("", "Hi Ólafur, you can change the delivery address under My Orders."), ("", "Thanks Chloé!"),
    ("", "Hola José, your refund is on its way."), ("", "Dear Mrs Šimková, it ships today."),
    ("", "Hi Anna-Lena, done."), ("", "Hello Mary Ann Smith, it left today."),
    ("my name is Hans Müller, can I change the address?", "Yes, Müller family, under My Orders."),
    ("", "Thanks, LeBron!"), ("", "Hi DeShawn, your parcel left today."), ("", "Hello D'Angelo, it left today."),
    ("", "Hi JOHN, your parcel left today."), ("", "Hi Jean-luc, your refund is done."), ("", "Hi ΑΝΝΑ, ok"),
    # a Chinese street and number as agents write one back: spaced, a section's, Hong Kong's 道, with 甲
    ("", "已改到杭州市西湖区文三路 478 号"), ("", "已改到台北市信義區信義路五段7號"), ("", "已改为香港九龍彌敦道100號"),
    ("", "已改到中关村大街甲27号"),
    # Hong Kong's roads named for where they run, and a flat and floor as Hong Kong writes them in English
    ("", "已改到中環德輔道中88號"), ("", "寄到皇后大道東 183 號"), ("", "Sent to Flat A, 4/F, Block 2, Taikoo Shing"),
    ("", "Shop 3, G/F, Wing On Plaza"),
    ("", "您好张伟，退款已到账"), ("", "亲爱的李娜！已发货"), ("", "王芳您好，已改好"),  # a greeting by a Chinese name
    ("", "已退到收款人张三的卡上"), ("", "收件人是王小明，已改好"),  # the one a refund or a parcel goes to
])
def test_an_agent_answer_naming_its_customer_is_theirs(asked: str, answer: str) -> None:
    assert about_one_person(asked, answer)


def test_an_agent_answer_filed_under_an_intent_nlu_yml_lost_is_indexed_without_it(small_bot: Path) -> None:
    """Retrieval gives an answer only for the predicted intent (or one of none): filed under an intent no
    model predicts any more, the answer was never given, and blocked the others as the closest one.
    bot export writes it so too, as what a retrain learns."""
    row = {"question": "where is my parcel", "created": 0.0}
    data = LearnedData([], [{**row, "id": 1, "intent": "shipping_status", "answer": "It left the depot today."},
                            {**row, "id": 2, "intent": "track_order", "answer": "Track it in your account."},
                            {**row, "id": 3, "intent": "oos", "answer": "We do not sell bicycles."}])
    project = load_project(small_bot)
    assert [a.intent for a in agent_answers(data, project)] == [None, "track_order", "oos"]
    assert [a.intent for a in agent_answers(data)] == ["shipping_status", "track_order", "oos"]
    assert [r["intent"] for r in exported(project, data).answers] == [None, "track_order", "oos"]


def test_an_agent_answer_to_an_nlu_yml_example_is_filed_under_its_nlu_yml_intent(small_bot: Path) -> None:
    """A review label giving an nlu.yml example another intent is not learnt, so the model goes on predicting
    nlu.yml's intent for that question, and the agent's answer, filed under the label's, was never given to it."""
    project = load_project(small_bot)
    example = next(e for e in project.examples if e.intent == "track_order")
    data = LearnedData([], [{"question": example.text.upper(), "created": 0.0, "id": 1, "intent": "get_refund",
                             "answer": "Track it in your account under Orders."}])
    assert [a.intent for a in agent_answers(data, project)] == ["track_order"]
    assert [r["intent"] for r in exported(project, data).answers] == ["track_order"]


def test_an_agent_answer_about_one_customers_order_is_not_shown_to_others() -> None:
    """"Order 556677 left our warehouse today" was given, word for word, to the next customer asking about
    order 112233."""
    asked = {"question": "where is my order 556677", "intent": None, "created": 0.0}
    data = LearnedData([], [{**asked, "id": 1, "answer": "Order 556677 left our warehouse today."},
                            {**asked, "id": 2, "answer": "Order ５５６６７７ is on its way."},  # full-width digits
                            {**asked, "id": 3, "answer": "Your tracking code is 1Z999AA10123456784."},
                            {**asked, "id": 4, "answer": "Parcels leave within 24 hours; refunds take 5 to 7 days."},
                            {**asked, "id": 5, "question": "do you have size 42?", "answer": "Yes, 42 is in stock."}])
    assert [a.id for a in agent_answers(data)] == ["agent:4", "agent:5"]
    later = {**asked, "question": "where is my order?", "asked": "where is my order? 55667"}  # the number came next
    kept = [{**later, "id": 6, "answer": "Order 55667 left our warehouse today."},
            {**later, "id": 7, "answer": "The 256GB model ships in 2 days: https://shop.example.com/a/1234567"}]
    assert [a.id for a in agent_answers(LearnedData([], kept))] == ["agent:7"]  # a unit's quantity, a link's number
    grouped = [{**asked, "id": 8, "answer": "Order 556-677 is at the depot."},  # the customer's number, in groups
               {**later, "id": 9, "answer": "Your tracking number is SF 1234 5678 9012."},
               {**later, "id": 19, "answer": "USPS tracking: 9400 1000 0000 0000 0000 00."},  # the last group short
               {**later, "question": "my order 556 677 has not come", "asked": "", "id": 10, "answer": "556 is late."},
               {**later, "id": 11, "answer": "Refunds take 5-7 days."}]
    assert [a.id for a in agent_answers(LearnedData([], grouped))] == ["agent:11"]
    spaced = [{**asked, "id": 12, "answer": "Order 556  677 left our warehouse."},  # doubled spaces, a line break
              {**asked, "id": 13, "answer": "Your order 556\n677 has shipped."},
              {**later, "question": "where is order 55667A", "id": 14, "answer": "Order 55667A shipped."},  # letters after
              {**later, "question": "我的订单55667到哪了", "id": 15, "answer": "详见https://shop.example.com，订单55667已发货"}]
    assert agent_answers(LearnedData([], spaced)) == []  # the link's end was taken as the rest of the sentence
    linked = [{**later, "id": 16, "answer": "Track it here: https://shop.example.com/track?order=55667"},
              {**asked, "question": "see https://shop.example.com/orders/55667", "asked": "", "id": 17,
               "answer": "Order 55667 has shipped."},  # the customer's number in the link they sent
              {**later, "id": 18, "answer": "See https://help.example.com/articles/360012345"},  # a help page's
              {**later, "id": 40, "answer": "退货流程见 https://shop.example.com/帮助/文章/360012345。"},  # in Chinese too
              {**later, "id": 41, "answer": "请看 https://shop.example.com/订单?编号=55667"}]
    assert [a.id for a in agent_answers(LearnedData([], linked))] == ["agent:18", "agent:40"]
    anyones = ["It ships on 2026-12-03.", "A 1920x1080 screen and 2000mAh.", "Between 100-200 units a batch.",
               "It costs 1.299.000 VND.", "Sizes 100 120 140 are in stock."]  # were taken for one number each
    general = [{**later, "id": 20 + n, "answer": text} for n, text in enumerate(anyones)]
    assert len(agent_answers(LearnedData([], general))) == len(anyones)
    # A price the customer named is no one's case: it was left out of the index ("$1499" repeated)
    priced = [{**later, "question": "refund for the $1499 laptop?", "asked": "refund for the $1499 laptop?", "id": 30 + n,
               "answer": text} for n, text in enumerate(["Yes, the $1499 model is refundable.", "Yes, 1499 元 back.",
                                                         "1499 USD within 30 days."])]
    assert len(agent_answers(LearnedData([], priced))) == 3
    hk = {**later, "question": "1499蚊嗰部機可唔可以退？", "asked": "1499蚊嗰部機可唔可以退？"}  # as Hong Kong writes prices
    priced = [{**hk, "id": 35 + n, "answer": text} for n, text in enumerate(["可以，1499蚊全數退返。", "1499港元原路退回",
                                                                            "退返 1499 塊"])]
    assert len(agent_answers(LearnedData([], priced))) == 3
    charged = {**later, "question": "I was charged $234.56 twice", "asked": "I was charged $234.56 twice"}
    assert agent_answers(LearnedData([], [{**charged, "id": 40, "answer": "We refunded the $234.56 charge."}])) == []


def test_an_agent_answer_linking_to_one_customers_page_is_not_shown_to_others() -> None:
    """A tracking link with the customer's parcel number, a password reset link and an order page's key were indexed,
    and the next customer asking where their parcel was, or how to log in, was given the other customer's page."""
    row = {"question": "where is my parcel? I can't log in either", "intent": None, "created": 0.0}
    private = ["Follow it here: https://track.example.com/?id=9400111899223344556677",
               "I sent you a reset link: https://shop.example.com/reset?token=aZ8kQ2mP9xL4bN7cR1tY",
               "Your order page: https://shop.example.com/orders/view?key=wc_order_AbCdEf123456",
               "Pay here: https://pay.example.com/i/8f14e45fceea167a5a36dedd4bea2543",
               "See https://shop.example.com/orders/3f2b8c1e-9d4a-4b6e-8f1a-2c3d4e5f6a7b for its status.",
               "Reset it at https://shop.example.com/reset#token=Zx81kk2Lmn0p", "请点击 https://shop.example.com/订单?编号=Ab12Cd34Ef"]
    data = LearnedData([], [{**row, "id": n, "answer": text} for n, text in enumerate(private)])
    assert agent_answers(data) == []
    anyones = ["See https://help.example.com/hc/en-us/articles/360012345678-Returns",
               "Browse https://shop.example.com/products/iphone15pro?color=blue&size=128gb",
               "Search https://shop.example.com/search?q=shoes&page=2 or read https://help.example.com/#/faq/returns"]
    data = LearnedData([], [{**row, "id": n, "answer": text} for n, text in enumerate(anyones)])
    assert [a.text for a in agent_answers(data)] == anyones


def test_an_agent_answer_repeating_part_of_a_redacted_number_is_not_shown_to_others(tmp_path: Path) -> None:
    """The customer's "+44 20 7946 0958" is stored as [PHONE], so "the courier has 7946 0958" repeated nothing the
    check could see: it was indexed, and read by the next customer."""
    store = Store(tmp_path / "dialogues.db")
    cases = [("my delivery failed, please call me on +44 20 7946 0958", "OK, the courier has 7946 0958 and will ring first."),
             ("送货失败了，我的手机是13812345678", "好的，快递员明天会打您号码1234-5678的手机。"),
             ("送货失败了，我的手机是13812345678", "好的，快递员明天会打您尾号5678的手机。"),
             ("退款退去我張信用卡 4111 1111 1111 1111", "已經退返去你尾數 1111 嘅信用卡。"),  # as Hong Kong writes it
             ("退款退去我張信用卡 4111 1111 1111 1111", "已退回最後四位係1111嘅卡。"),
             ("refund to my card 4111 1111 1111 1111", "Refunded to the card ending in 1111."),
             ("my ID is 11010519491231002X", "Your ID 1101 0519 4912 is verified."),
             ("call me on +44 20 7946 0958", "We call from 9:00 to 18:00 on 2024-05-01; the fee is $1,299.00."),  # anyone's
             ("refund to my card 4111 1111 1111 1111", "Refunds take 5-7 business days."),
             ("write to jane@example.com", "Sizes 100 120 140 are back in stock.")]  # an email has no digits to repeat
    for n, (question, answer) in enumerate(cases):
        log_turns(store, [question], conversation=f"c{n}")
        store.add_agent_answer(f"c{n}", answer)
    learned = learned_data(store)
    store.close()
    assert "[PHONE]" in learned.answers[0]["asked"]  # what the check reads
    assert [a.text for a in agent_answers(learned)] == [answer for _, answer in cases[7:]]


def test_an_agent_answer_naming_its_customer_or_where_they_live_is_not_shown_to_others() -> None:
    """"Hi John Smith, I've changed the delivery address to 221B Baker Street" was indexed, and given to the next
    customer who wanted to change their address."""
    row = {"question": "I need to change my delivery address", "intent": None, "created": 0.0}
    personal = [
        "Hi John Smith, I've changed the delivery address to 221B Baker Street, London NW1 6XE as you asked.",
        "好的张伟先生，已为您把收货地址改为北京市海淀区中关村大街27号院3号楼，收件人张伟。",
        "Please send it back to Jane Doe, 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
        "Done, it goes to 12 main street now.", "已改为上海市浦东新区世纪大道１００号。", "已改为2单元1101室。",
        "Ship to postcode SW1A 1AA confirmed.", "It will reach you in Austin, TX 78701-1234.",
        "已改為沙田翠竹花園3座15樓B室。", "已更新為太古城 5 座 20 樓。",  # a Hong Kong estate's block, floor and flat
        "陳生，已經幫你改好。", "黃太你好，地址已更新。", "好的，林太太！",  # Mr and Mrs in Hong Kong's Cantonese
        "Dear Ms Brown, the new address is saved.", "Transfer it to the account of Mr. Peter Brown.",
        "好的王女士，已经改好了。", "收件人：李娜，已更新。", "Recipient: Jane, updated.",
        "加我个人微信 zhangwei_1988 或者QQ 123456789 都可以。", "WeChat ID: zhangwei, add me.",
    ]
    given = [("my name is Maria Lopez", "Done, Lopez is on the parcel now."),  # the customer's name, repeated
             ("my name is maria", "Thanks, Maria, it's updated."), ("I'm Maria", "Maria, it's updated."),
             ("我叫张伟，想改地址", "好的，张伟，已经改好了。"), ("我是王芳。", "王芳，地址已更新。")]
    data = LearnedData([], [{**row, "id": n, "answer": text} for n, text in enumerate(personal)]
                       + [{**row, "id": 100 + n, "asked": asked, "answer": text} for n, (asked, text) in enumerate(given)])
    assert agent_answers(data) == []
    generic = ["Our returns desk is open 9-5", "请在订单页面点击退款", "Hi there, you can change it in Settings > Addresses.",
               "Dear customer, refunds take 3-5 days.", "Hello! Sorry for the wait, it ships today.",
               "尊敬的先生/女士，请在订单页申请退款。", "请核对收件人姓名和电话是否正确。", "收件人需本人签收。",
               "Pay with WeChat Pay, or follow our WeChat official account.", "5月3号发货，请耐心等待。",
               "Store 3 will close at 9pm.", "Hi, I'm Anna from support: it ships today.",
               "Duties are the responsibility of the recipient. If unsure, ask us."]
    kept = [{**row, "id": n, "asked": "I'm Not happy, 我是新用户", "answer": text} for n, text in enumerate(generic)]
    assert [a.text for a in agent_answers(LearnedData([], kept))] == generic


def test_the_checks_on_an_agent_answer_take_time_in_proportion_to_it() -> None:
    """A price was looked for from every digit of a long run, each time to its end: an answer of 20,000 digits
    held a retrain (and an index build) for 18 s, 100,000 for minutes."""
    for text in ("1" * 100_000, "１" * 100_000, "1," * 50_000, "1 " * 50_000, "0044 " * 20_000, "路1" * 50_000):
        started = time.perf_counter()
        assert about_one_case("[PHONE]", text + " 7946 0958") and not about_one_person(text, text)
        assert time.perf_counter() - started < 5  # about 0.2 s


def test_oos_labels_train_the_bots_oos_intent_when_it_has_one() -> None:
    data = LearnedData([{"text": "do you sell bikes", "intent": "oos"}, {"text": "refund me", "intent": "get_refund"},
                        {"text": "held out", "intent": "get_refund"}, {"text": "x", "intent": "gone"}], [])
    usable, counts, _ = learned_examples(data, {"get_refund", "cancel_order"}, {"held out"}, {})
    assert [e.text for e in usable] == ["refund me"]
    assert counts == {"labelled": 1, "repeated": 0, "oos": 1, "contradicting": 0, "unusable": 2}
    usable, counts, _ = learned_examples(data, {"get_refund", "oos"}, {"held out"}, {})
    assert [(e.text, e.intent) for e in usable] == [("do you sell bikes", "oos"), ("refund me", "get_refund")]
    assert counts == {"labelled": 2, "repeated": 0, "oos": 0, "contradicting": 0, "unusable": 2}


def test_no_label_teaches_a_frozen_example_in_another_spelling(bot_dir: Path) -> None:
    """The frozen set was kept out by case and spacing alone: labels on "cancelling order!" and on the frozen
    "I don't want order 113542617735902" with another order number were learnt, and the gate scored the
    candidate on what it had been taught."""
    project = load_project(bot_dir)
    frozen = [json.loads(line) for line in (project.models_dir / EVALUATION_FILE).read_text().splitlines()]
    twins = [{"text": f"{row['text'].upper()}!!", "intent": row["intent"]} for row in frozen[:2]]
    numbered = [{"text": "i don't want order 99", "intent": "cancel_order"}]
    held = held_out_texts(project) | {same_text("I don't want order 113542617735902")}
    data = LearnedData([*twins, *numbered, {"text": "cancel the blue sofa please", "intent": "cancel_order"}], [])
    usable, counts, _ = learned_examples(data, set(project.intents), held, seed_labels(project))
    assert [e.text for e in usable] == ["cancel the blue sofa please"]
    assert counts["labelled"] == 1 and counts["contradicting"] == 0, counts


def test_a_message_labelled_on_many_turns_is_one_example_with_its_latest_label(tmp_path: Path) -> None:
    """One click on a popular item put each of its turns into the training data: 400 copies of "where is my
    parcel", which outweighed every other intent's examples."""
    store = Store(tmp_path / "dialogues.db")
    parcel = log_turns(store, ["where is my parcel"] * 40 + ["Where is my parcel?"] * 10)
    store.add_labels(parcel, "track_order", "ann")  # one queue item
    store.add_labels(log_turns(store, ["取消訂單", "取消订单"], conversation="hk"), "cancel_order", "ann")
    store.add_labels(log_turns(store, ["WHERE is my parcel!"], conversation="later"), "get_refund", "bob")  # the latest
    data = learned_data(store)
    store.close()

    usable, counts, _ = learned_examples(data, {"track_order", "cancel_order", "get_refund"}, set(), {})

    assert [(e.text, e.intent) for e in usable] == [("取消订单", "cancel_order"), ("WHERE is my parcel!", "get_refund")]
    assert counts == {"labelled": 2, "repeated": 51, "oos": 0, "contradicting": 0, "unusable": 0}
    exported = learnable(data, {"track_order", "cancel_order", "get_refund"}, set(), {}).examples  # what bot export writes
    assert [(r["text"], r["intent"]) for r in exported] == [(e.text, e.intent) for e in usable]


def test_a_label_contradicting_nlu_yml_is_left_out_and_counted(bot_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reviewer labelled an nlu.yml example of one intent (in another case and spacing) with another: the
    retrain trained on both without a word, and the served model answered the shop's own example with the
    label's intent. nlu.yml's intent stands; a label agreeing with it, or on a text nlu.yml lacks, is learnt,
    and bot export writes what the retrain learns."""
    project = load_project(bot_dir)
    held = held_out_texts(project)
    refund, cancel = (next(t for t in seed_texts(bot_dir, intent) if same_text(t) not in held)
                      for intent in ("get_refund", "cancel_order"))
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, [f"  {refund.upper()} "], conversation="wrong"), "cancel_order", "ann")
    store.add_labels(log_turns(store, [cancel], conversation="right"), "cancel_order", "ann")
    store.add_labels(log_turns(store, ["cancel the blue sofa please"], conversation="new"), "cancel_order", "ann")
    data = learned_data(store)
    store.close()

    usable, counts, listed = learned_examples(data, set(project.intents), held, seed_labels(project))

    assert [(e.text, e.intent) for e in usable] == [(cancel, "cancel_order"), ("cancel the blue sofa please", "cancel_order")]
    assert counts == {"labelled": 2, "repeated": 0, "oos": 0, "contradicting": 1, "unusable": 0}
    assert [(r["text"], r["intent"]) for r in exported(project, data).examples] == [(e.text, e.intent) for e in usable]
    assert listed == [{"text": f"  {refund.upper()} ", "label": "cancel_order", "nlu_intent": "get_refund"}]
    _print_decision({"serving": "v0001", "version": "v0002", "mode": "warm", "promoted": True, "figures": {},
                     "worst_intent_drop": 0.0, "margins": {"max_intent_drop": 0.02}, "reasons": [],
                     "contradicting": listed,
                     "data": {"seed_examples": 50, **counts, "new_labels": 2, "agent_answers": 0, "new_answers": 0}},
                    "v0002", bot_dir)
    out = capsys.readouterr().out.splitlines()
    assert "  data: 50 seed examples, 2 labelled (2 new), 1 contradicting nlu.yml left out (its example's intent " \
           "stands), 0 agent answers (0 new)" in out
    assert f"    labelled cancel_order, nlu.yml says get_refund: {refund.upper()}" in out  # which one to correct


def test_a_versions_decision_listing_customers_messages_is_readable_by_its_owner_alone(
        bot_dir: Path, common_umask: None) -> None:
    """decision.json lists each label that contradicts nlu.yml with the customer's message, and took the umask's mode
    (0644), where the index and n-grams beside it, which hold customers' words too, are made 0600."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    held = held_out_texts(load_project(bot_dir))
    refund = next(t for t in seed_texts(bot_dir, "get_refund") if same_text(t) not in held)
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, [refund.upper()], conversation="wrong"), "cancel_order", "ann")
    store.add_labels(log_turns(store, ["cancel the blue sofa please"], conversation="new"), "cancel_order", "ann")
    store.close()

    version = retrain(load_project(bot_dir), device="cpu", progress=False).version
    decision = bot_dir / "models" / version / "decision.json"
    assert json.loads(decision.read_text())["contradicting"] == [
        {"text": refund.upper(), "label": "cancel_order", "nlu_intent": "get_refund"}]
    assert decision.stat().st_mode & 0o777 == 0o600


def test_agent_answers_in_bot_chat_are_not_learnt(tmp_path: Path) -> None:
    """``bot chat`` is the shop trying its bot in a terminal: an agent's reply there (sent from the console,
    reaching no one) was exported and indexed as an answer for real customers. Its review labels are learnt
    as any other, since the review queue offers its messages too."""
    store = Store(tmp_path / "dialogues.db")
    for conversation, channel in (("cli:try", TRYOUT_CHANNEL), ("web1", "web")):
        turn = store.log_exchange(Exchange(conversation, channel, None, "do you ship to norway", None, "Sorry?",
                                           "track_order", 0.3, [("track_order", 0.3)], "fallback", "v0001"))[0]
        store.add_labels([turn], "track_order", "ann")
        store.add_agent_answer(conversation, f"Yes, we ship to Norway ({channel}).", channel)
    data = learned_data(store)
    store.close()

    assert [r["answer"] for r in data.answers] == ["Yes, we ship to Norway (web)."]
    assert [a.text for a in agent_answers(data)] == ["Yes, we ship to Norway (web)."]
    assert len(data.examples) == 2  # the labels of both conversations' messages


def test_retrain_warm_starts_learns_labels_and_indexes_agent_answers(bot_dir: Path) -> None:
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})  # this test is about promotion
    store = Store(bot_dir / "dialogues.db")
    question = "my parcel never showed up, mail me at jane.doe@example.com"
    [turn] = log_turns(store, [question], conversation="lost")
    store.add_labels([turn], "track_order", "ann")
    store.add_agent_answer("lost", "It left our depot on Monday; it is with the courier now.")
    log_turns(store, ["do you ship to Norway?"], conversation="other")
    store.close()

    result = retrain(load_project(bot_dir), device="cpu", progress=False)

    registry = Registry(bot_dir / "models")
    assert result.promoted and result.version == "v0002" and registry.current() == "v0002"
    decision = json.loads((bot_dir / "models" / "v0002" / "decision.json").read_text())
    assert decision["mode"] == "warm" and decision["serving"] == "v0001" and decision["passed"] is True
    assert decision["data"]["labelled"] == 1 and decision["data"]["new_labels"] == 1 and decision["data"]["new_answers"] == 1
    assert decision["data"]["transfer_messages"] == 2  # the customer messages, kept close to v0001's answers
    assert set(decision["figures"]) == {"frozen", "seed"} and decision["figures"]["frozen"]["candidate"]["n"] == 8
    meta = json.loads((bot_dir / "models" / "v0002" / "meta.json").read_text())
    through = meta["learned_through"]
    assert meta["parent"] == "v0001" and (through["label"], through["answer"]) == (1, 1)
    assert 0 < through["label_at"] <= time.time() and 0 < through["answer_at"] <= time.time()
    assert [d["event"] for d in registry.decisions()] == ["trained", "promoted"]

    from bot.nlu import NLU

    nlu = NLU.load(bot_dir / "models" / "v0002")
    hit = nlu.analyse(["my parcel never showed up, mail me at [EMAIL]"])[0].hits[0]
    assert hit.id == "agent:1" and hit.intent == "track_order" and hit.score > 0.99
    assert hit.question is not None and "jane.doe" not in hit.question  # redacted before indexing

    store = Store(bot_dir / "dialogues.db")  # an answer redaction left out is nothing new: it trained again
    log_turns(store, ["the courier never came"], conversation="courier")
    store.add_agent_answer("courier", "Call the courier on 13812345678.")
    store.close()
    again = retrain(load_project(bot_dir), device="cpu", progress=False)
    assert again.version is None and again.decision["reasons"] == ["nothing new"]
    assert registry.current() == "v0002" and [v.name for v in registry.versions()] == ["v0001", "v0002"]

    # Purged, its label is to be unlearnt too: "Nothing new" kept serving a model trained on it.
    store = Store(bot_dir / "dialogues.db")
    store.purge("lost")
    store.close()
    purged = retrain(load_project(bot_dir), device="cpu", progress=False)
    # Its agent answer left the index before the training began (v0003, v0002's classifier), not after it.
    refreshed = json.loads((bot_dir / "models" / "v0003" / "meta.json").read_text())
    assert refreshed["mode"] == "index_refresh" and refreshed["learned_through"] == through
    assert not [i for i in NLU.load(bot_dir / "models" / "v0003").index.ids if i.startswith("agent:")]
    assert purged.version == "v0004" and purged.decision["serving"] == "v0003"
    assert purged.decision["data"]["labels_gone"] == 1 and purged.decision["data"]["answers_removed"] == 1
    assert purged.decision["mode"] == "full"  # not from the model that learnt the purged label
    assert (purged.decision["data"]["labelled"], purged.decision["data"]["new_labels"]) == (0, 0)
    assert retrain(load_project(bot_dir), device="cpu", progress=False).decision["reasons"] == ["nothing new"]


def test_a_rollback_that_drops_purged_answers_leaves_newer_labels_to_learn(bot_dir: Path) -> None:
    """The index refresh of a rollback counted every label in the store as learnt: the next retrain found
    "nothing new" and a label no model had seen was never trained on."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    [turn] = log_turns(store, ["my parcel never showed up"], conversation="lost")
    store.add_labels([turn], "track_order", "ann")
    store.add_agent_answer("lost", "It left our depot on Monday; it is with the courier now.")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version == "v0002"
    store = Store(bot_dir / "dialogues.db")
    [later] = log_turns(store, ["I want my money back"], conversation="later")
    store.add_labels([later], "get_refund", "ann")
    store.purge("lost")
    store.close()

    assert CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).exit_code == 0  # v0002 serves no more
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"])
    assert result.exit_code == 0, result.output
    assert Registry(bot_dir / "models").current() == "v0003"  # v0002's classifier, without the purged answer

    again = retrain(load_project(bot_dir), device="cpu", progress=False)
    assert again.decision["reasons"] != ["nothing new"]
    assert again.decision["data"]["new_labels"] == 1 and again.decision["data"]["labels_gone"] == 1


def test_bot_purge_names_the_versions_that_may_still_hold_the_conversation(bot_dir: Path) -> None:
    """It said the serving index alone might: each version trained since keeps the answers in its folder."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    seed_meta = bot_dir / "models" / "v0001" / "meta.json"  # trained an hour before, not in the second they began
    seed_meta.write_text(json.dumps({**json.loads(seed_meta.read_text()),
                                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - 3600))}))
    store = Store(bot_dir / "dialogues.db")
    [turn] = log_turns(store, ["my parcel never showed up"], conversation="lost")
    store.add_labels([turn], "track_order", "ann")
    store.add_agent_answer("lost", "It left our depot on Monday; it is with the courier now.")
    log_turns(store, ["hello?"], conversation="quiet")
    for other in ("late", "later"):  # said once for both: a retention purge's thousands each had their line
        log_turns(store, ["can I change my delivery address?"], conversation=other)
        store.add_agent_answer(other, "Yes: reply with the new address and we will update it before dispatch.")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version == "v0002"
    result = CliRunner().invoke(cli, ["purge", str(bot_dir), "--conversation", "lost", "--conversation", "quiet",
                                      "--conversation", "late", "--conversation", "later"])
    assert result.exit_code == 0, result.output
    assert "its agent answers and labels may be in v0002, trained since it began" in result.output
    assert "2 conversations' agent answers may be in v0002, trained since they began" in result.output
    assert "v0001" not in result.output and result.output.count("may be in") == 2  # nothing of "quiet" was learnt


def test_a_version_saved_in_the_second_a_conversation_began_may_hold_it() -> None:
    """meta.json says when to the second: a conversation begun at 12:00:00.6 and a version saved at 12:00:00.9
    (written "12:00:00") read as the version trained before it, and `bot purge` left that version unnamed."""
    began = datetime(2026, 12, 7, 12, 0, 0, 600000, tzinfo=timezone.utc).timestamp()
    assert trained_at({"created": "2026-12-07T12:00:00+0000"}) >= began
    assert trained_at({"created": "2026-12-07T11:59:59+0000"}) < began  # a second before: trained before it
    assert trained_at({}) == float("inf")  # a version that does not say may hold anything


def test_a_damaged_serving_index_stops_a_retrain_in_one_line(bot_dir: Path) -> None:
    """Taking a purged answer out of an index whose file was cut short ended `bot retrain` in a traceback; and the
    line names the version to roll back to, as `bot serve` does, which serves it meanwhile."""
    store = Store(bot_dir / "dialogues.db")
    log_turns(store, ["my parcel never showed up"], conversation="lost")
    store.add_agent_answer("lost", "It left our depot on Monday; it is with the courier now.")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version == "v0002"
    faiss_file = next((bot_dir / "models" / "v0002" / "index").glob("*.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    store = Store(bot_dir / "dialogues.db")
    store.purge("lost")
    store.close()
    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: " in result.output and "index.faiss does not match its checksum" in result.output
    assert f"; `bot rollback {bot_dir} v0001` serves v0001, the newest other version that has served" in result.output
    assert Registry(bot_dir / "models").current() == "v0002"


def add_invoice_intent(root: Path) -> None:
    """Add the demo's check_invoice intent, with 15 of its examples, to the bot's nlu.yml."""
    demo = yaml.safe_load((REPO / "bot" / "demo" / "nlu.yml").read_text())
    invoice = next(i for i in demo["nlu"] if i.get("intent") == "check_invoice")
    nlu = yaml.safe_load((root / "nlu.yml").read_text())
    nlu["nlu"].append({"intent": "check_invoice", "examples": "\n".join(invoice["examples"].splitlines()[:15]) + "\n"})
    (root / "nlu.yml").write_text(yaml.safe_dump(nlu, sort_keys=False))


def test_bot_models_says_whose_accuracy_compares_no_more_and_measures_them_all_again(bot_dir: Path) -> None:
    """An intent added to nlu.yml since gives the frozen evaluation set more examples: `bot models` listed each
    version's accuracy as measured when it was made, figures an engineer would set beside the next candidate's
    though they measure another set, and said nothing. It names the versions measured on another set,
    and --remeasure measures every version on today's set, as bot serve runs it."""
    meta = json.loads((bot_dir / "models" / "v0001" / "meta.json").read_text())
    made = json.loads((bot_dir / "models" / "v0001" / "metrics.json").read_text())
    unchanged = CliRunner().invoke(cli, ["models", str(bot_dir)])
    same = json.loads(CliRunner().invoke(cli, ["models", str(bot_dir), "--remeasure", "--json"]).stdout)
    assert "note:" not in unchanged.output and made["holdout_examples"] == 8
    assert same["remeasured"] == {"accuracy": round(made["accuracy"], 4), "threshold": meta["intent_threshold"], "n": 8}

    add_invoice_intent(bot_dir)
    listed = CliRunner().invoke(cli, ["models", str(bot_dir)])
    again = CliRunner().invoke(cli, ["models", str(bot_dir), "--remeasure"])

    assert listed.exit_code == 0 and again.exit_code == 0, again.output
    assert (f"note: accuracy is as measured when each version was made: v0001 on another frozen evaluation set than "
            f"today's 10 examples (nlu.yml's intents or their examples changed since), so it compares with no other; "
            f"`bot models {bot_dir} --remeasure` measures every version on today's set") in listed.stderr
    header, row, legend = again.stdout.splitlines()
    assert legend.startswith("* serving: ")
    assert header.split()[3:8] == ["accuracy", "n", "threshold", "now", "n"]
    assert row.split()[4:7] == [f"{made['accuracy']:.4f}", "8", f"{meta['intent_threshold']:.4f}"]
    assert 0 <= float(row.split()[7]) <= 1 and row.split()[8] == "10"
    assert "note: now and its n: accuracy on the frozen evaluation set as it is today (10 examples)" in again.stderr
    assert (bot_dir / "models" / EVALUATION_FILE).read_text().count("\n") == 8  # measuring wrote nothing


def test_bot_models_says_whose_accuracy_compares_no_more_once_an_intent_is_renamed_without_relabel(
        bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase in nlu.yml keeps the frozen evaluation set's size, and `bot models` said
    nothing, though v0001 answers cancel_order, wrong on every one of its examples now: the next candidate's accuracy
    would read as a leap. The set's intents and examples say it; `bot relabel`, under which v0001 answers the new
    name, makes it compare again. A version made before they were kept is judged by the set's size."""
    note = "note: accuracy is as measured when each version was made: v0001 on another frozen evaluation set"
    assert note not in CliRunner().invoke(cli, ["models", str(bot_dir)]).stderr
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")

    renamed = CliRunner().invoke(cli, ["models", str(bot_dir)])

    assert renamed.exit_code == 0 and note in renamed.stderr
    assert CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"]).exit_code == 0
    assert note not in CliRunner().invoke(cli, ["models", str(bot_dir)]).stderr
    metrics = bot_dir / "models" / "v0001" / "metrics.json"
    older = {k: v for k, v in json.loads(metrics.read_text()).items() if k != "frozen_set"}
    metrics.write_text(json.dumps(older))
    add_invoice_intent(bot_dir)
    assert note in CliRunner().invoke(cli, ["models", str(bot_dir)]).stderr


def test_bot_relabel_of_an_intent_a_model_learnt_does_not_migrate_an_older_deskbots_store_under_its_server(
        bot_dir: Path) -> None:
    """Deskbot upgraded, the older `bot serve` still running on the store: `bot relabel` of an intent a model had
    learnt migrated the store under it, which went on writing to a schema it did not know, where every other command
    that writes refuses, naming the `bot serve` to start."""
    from filelock import FileLock

    (bot_dir / "dialogues.db").unlink(missing_ok=True)
    store_of_the_last_deskbot(bot_dir / "dialogues.db")
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    servers = bot_dir / ".dialogues.db.servers"
    servers.mkdir()
    older = FileLock(servers / f"{'b' * 32}.lock", thread_local=False)
    older.acquire()  # as the older server holds its own while it runs

    refused = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])

    assert refused.exit_code == 1
    assert (f"an older deskbot's `bot serve` is running on it: stop it and start this deskbot's, `bot serve {bot_dir}`"
            ) in " ".join(refused.output.split()), refused.output
    assert sqlite3.connect(bot_dir / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    older.release()  # stopped
    moved = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])
    assert moved.exit_code == 0, moved.output
    assert sqlite3.connect(bot_dir / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)


def test_retrain_trains_from_the_base_model_when_the_intents_change(bot_dir: Path) -> None:
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    add_invoice_intent(bot_dir)
    frozen_before = (bot_dir / "models" / EVALUATION_FILE).read_text().splitlines()

    result = retrain(load_project(bot_dir), device="cpu", progress=False)

    assert result.decision["mode"] == "full" and result.decision["data"]["seed_changed"] is True
    frozen_after = (bot_dir / "models" / EVALUATION_FILE).read_text().splitlines()
    assert frozen_after[: len(frozen_before)] == frozen_before  # the old evaluation set is kept as it was
    assert {json.loads(line)["intent"] for line in frozen_after[len(frozen_before):]} == {"check_invoice"}
    meta = json.loads((bot_dir / "models" / result.version / "meta.json").read_text())
    assert "check_invoice" in meta["labels"] and meta["mode"] == "full"

    # Rolled back to a version without the intent, a retrain said "Nothing new", nlu.yml being the same as at the
    # last attempt, and the old intents went on serving; nor did it name the intent nothing answers.
    assert CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).exit_code == 0
    again = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert again.exit_code == 0, again.output
    assert "Nothing new" not in again.output and "PROMOTED" in again.output
    assert "note: 1 intent with no template in responses.yml" in again.output and "check_invoice" in again.output
    assert "check_invoice" in json.loads((bot_dir / "models" / Registry(bot_dir / "models").current() / "meta.json")
                                         .read_text())["labels"]



def test_labels_of_a_renamed_intent_are_named_and_relabelled_not_dropped_unsaid(bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase in nlu.yml: the retrain left its reviewed labels out without a word
    (the data line counted only those it learnt), and nothing moved them to the new name but labelling each
    message again. It names them, with the `bot relabel` that keeps them, and they are learnt after it."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["please cancel the blue sofa", "stop my order right now"]), "cancel_order", "ann")
    store.add_labels(log_turns(store, ["has my parcel left yet"], conversation="c2"), "track_order", "ann")
    store.close()
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    exported_before = CliRunner().invoke(cli, ["export", str(bot_dir)])  # what the retrain learns: not those either
    assert exported_before.exit_code == 0 and len(exported_before.stdout.splitlines()) == 1
    assert "left out: 2 labelled message(s) name intents nlu.yml no longer has" in exported_before.stderr

    first = CliRunner().invoke(cli, ["retrain", str(bot_dir)])

    assert first.exit_code == 0, first.output
    assert (f"2 labelled message(s) name intents nlu.yml no longer has, and are not learnt: cancel_order (2). For an "
            f"intent renamed or merged into another, `bot relabel {bot_dir} cancel_order NEW_INTENT` gives them its "
            "name") in first.output
    assert "1 labelled (1 new), 2 of intents no longer in nlu.yml left out" in first.output
    decision = json.loads((bot_dir / "models" / Registry(bot_dir / "models").current() / "decision.json").read_text())
    assert decision["data"]["orphaned"] == {"cancel_order": 2} and decision["data"]["labelled"] == 1

    refused = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_ordr"])
    assert refused.exit_code == 1 and "unknown intent 'cancel_ordr'" in refused.output
    moved = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])
    assert moved.exit_code == 0, moved.output
    assert f"Relabelled 2 messages from cancel_order to cancel_purchase. Run `bot retrain {bot_dir}`" in moved.output
    typo = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_ordr", "cancel_purchase"])
    assert typo.exit_code == 1 and "no message is labelled cancel_ordr nor answered under it" in typo.output

    second = retrain(load_project(bot_dir), device="cpu", progress=False)
    assert second.decision["data"]["labelled"] == 3 and second.decision["data"]["orphaned"] == {}
    assert second.decision["data"]["new_labels"] == 2


def test_an_intent_renamed_before_any_of_its_messages_was_labelled_keeps_its_answers_right(bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase with none of its messages labelled yet: `bot relabel` refused, having no
    label to move, and the answers the serving model gave under cancel_order until the next retrain, labelled
    cancel_purchase in review, counted in `bot stats` as labelled with another intent."""
    store = Store(bot_dir / "dialogues.db")
    turn, _ = store.log_exchange(Exchange("c1", "web", None, "cancel the sofa", None, "Cancelled.", "cancel_order", 0.9,
                                          [("cancel_order", 0.9)], "action", "v0001"))
    store.close()
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")

    renamed = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])

    assert renamed.exit_code == 0, renamed.output
    assert "No message is labelled cancel_order; `bot stats` counts the bot's answers under it" in renamed.output
    store = Store(bot_dir / "dialogues.db")
    store.add_labels([turn], "cancel_purchase", "ann")
    assert conversation_stats(store)["wrong_answers"] == 0
    store.close()


async def test_a_renamed_intent_is_answered_under_its_new_name_from_the_next_reload(bot_dir: Path,
                                                                                 aiohttp_client: Any) -> None:
    """cancel_order renamed cancel_purchase in the bot's files and by `bot relabel`: until the next retrain the serving
    model predicted cancel_order, which has no template any more, and every customer who asked for it got the fallback
    or an answer of the history. From the next reload the bot answers it under the new name, as it logs it."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    text = "I have a problem with cancelling order 00123842"
    assert (await ask(client, "c1", text))["intent"] == "cancel_order"
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    relabelled = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])
    assert relabelled.exit_code == 0 and "answers cancel_order as cancel_purchase, in a running `bot serve` from its " \
        "next POST /admin/reload" in relabelled.output

    assert (await client.post("/admin/reload", headers={"Authorization": "Bearer small-admin-token"})).status == 200
    reply = await ask(client, "c2", text)
    clicked = await ask(client, "c3", "/cancel_purchase")  # a button of the renamed intent's, as responses.yml has it

    assert reply["source"] == "template" and reply["intent"] == "cancel_purchase" and "00123842" in reply["reply"]
    assert reply["ranking"] and "cancel_order" not in {ranked["intent"] for ranked in reply["ranking"]}
    assert clicked["source"] == "template" and clicked["intent"] == "cancel_purchase"
    store = Store(bot_dir / "dialogues.db")
    logged = store.db.execute("SELECT intent, ranking FROM predictions ORDER BY rowid DESC LIMIT 2").fetchall()
    store.close()
    assert [intent for intent, _ in logged] == ["cancel_purchase", "cancel_purchase"]
    assert "cancel_order" not in logged[1][1]


def test_bot_eval_leaves_out_a_button_naming_an_intent_since_renamed(bot_dir: Path, tmp_path: Path) -> None:
    """`bot serve` takes /cancel_order after `bot relabel` renamed it cancel_purchase as that intent's button, but
    `bot eval` scored such a test line as a question for the model, as typed text."""
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    assert CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"]).exit_code == 0
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(line) + "\n" for line in (
        {"text": "/cancel_order", "intent": "cancel_purchase"}, {"text": "where is my parcel", "intent": "track_order"})))

    scored = CliRunner().invoke(cli, ["eval", str(bot_dir), "--test", str(test), "--json",
                                      "--results", str(tmp_path / "results")])

    assert scored.exit_code == 0, scored.output
    assert "1 test line is a button's payload (/cancel_order)" in scored.stderr
    assert json.loads(scored.stdout)["n"] == 1


async def test_a_button_naming_an_intent_since_renamed_selects_it_by_its_new_name(bot_dir: Path,
                                                                                   aiohttp_client: Any) -> None:
    """A button sent before `bot relabel` renamed cancel_order cancel_purchase (an old page's, an old Slack message's)
    still sends /cancel_order: it was read as typed text, and answered as the model reads those words, at a lower
    confidence or as another intent. It selects cancel_purchase outright, as its button does, values and all."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await ask(client, "c1", "I have a problem with cancelling order 00123842")  # a label for the rename to move
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    assert CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"]).exit_code == 0
    assert (await client.post("/admin/reload", headers={"Authorization": "Bearer small-admin-token"})).status == 200

    clicked = await ask(client, "c2", "/cancel_order")
    valued = await ask(client, "c3", '/cancel_order{"order_id": "00123842"}')

    for reply in (clicked, valued):
        assert reply["source"] == "template" and reply["intent"] == "cancel_purchase" and reply["confidence"] == 1.0
    assert "00123842" in valued["reply"]


@pytest.mark.parametrize("page", [0, 1])  # the file's header, its schema
def test_a_store_that_cannot_be_read_keeps_no_model_from_loading(bot_dir: Path, page: int,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The renames `bot relabel` kept are read as a model loads: a damaged store failed every load with a traceback
    (`bot eval`, which needs no store, and a reload or swap of a running server to a retrained model too), or left
    the renames unread without a word."""
    store = Store(bot_dir / "dialogues.db")
    log_turns(store, ["cancel the sofa"])
    store.close()
    damage(bot_dir / "dialogues.db", page)

    nlu = load_serving_model(load_project(bot_dir), "cpu", workers=1)

    assert nlu.name is None and nlu.labels == sorted(SMALL_INTENTS)
    assert any("the intents `bot relabel` renamed cannot be read" in r.getMessage() for r in caplog.records)


def test_an_intent_renamed_before_the_bot_answered_it_is_answered_under_its_new_name(bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase before the bot had a conversation: `bot relabel` refused, having no label
    to move nor answer under the name, and kept no rename, so the serving model, which learnt cancel_order, answered
    every such question without its template until the next retrain."""
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")

    renamed = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])
    typo = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_ordr", "cancel_purchase"])

    assert renamed.exit_code == 0, renamed.output
    assert "answers cancel_order as cancel_purchase" in renamed.output
    assert typo.exit_code == 1 and "no message is labelled cancel_ordr nor answered under it" in typo.output
    [analysis] = load_serving_model(load_project(bot_dir), "cpu", workers=1).analyse(
        ["I have a problem with cancelling order 00123842"])
    assert analysis.prediction.intent == "cancel_purchase"
    store = Store(bot_dir / "dialogues.db")
    assert store.renames() == {"cancel_order": "cancel_purchase"}
    store.close()


def test_bot_relabel_run_again_keeps_a_rename_made_before_deskbot_kept_renames(bot_dir: Path) -> None:
    """A store from before migration 34 has the labels moved but not the rename: `bot stats` counts the answers
    given under the old name as wrong. Running the same `bot relabel` again keeps it, once however often it is run."""
    store = Store(bot_dir / "dialogues.db")
    turn, _ = store.log_exchange(Exchange("c1", "web", None, "cancel the sofa", None, "Cancelled.", "cancel_order", 0.9,
                                          [("cancel_order", 0.9)], "action", "v0001"))
    store.add_labels([turn], "cancel_order", "ann")
    store.relabel("cancel_order", "cancel_purchase", "ann")
    store.db.execute("DELETE FROM intent_renames")  # as the deskbot before migration 34 left it
    store.db.conn.commit()
    assert conversation_stats(store)["wrong_answers"] == 1
    store.close()
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")

    for _ in range(2):
        again = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "cancel_purchase"])
        assert again.exit_code == 0, again.output
        assert "No message is labelled cancel_order; `bot stats` counts the bot's answers under it" in again.output

    store = Store(bot_dir / "dialogues.db")
    assert conversation_stats(store)["wrong_answers"] == 0 and store.renames() == {"cancel_order": "cancel_purchase"}
    assert store.db["intent_renames"].count == 1
    store.close()


def test_bot_train_names_the_labels_and_answers_it_leaves_to_bot_retrain(bot_dir: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`bot train` learns nlu.yml and the history files alone: a shop that ran it after editing nlu.yml served a
    model without its reviewers' labels, ungated, and nothing said so."""
    say_not_learnt(load_project(bot_dir))  # nothing in the store: nothing to say
    assert capsys.readouterr().err == ""
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["please cancel the blue sofa", "stop my order right now"]), "cancel_order", "ann")
    store.close()

    result = CliRunner().invoke(cli, ["train", str(bot_dir), "--no-promote"])

    assert result.exit_code == 0, result.output
    assert ("note: 2 reviewed labels and 0 agent answers in the store are not learnt by `bot train`, which learns "
            f"nlu.yml and the history files alone: `bot retrain {bot_dir}` learns them too") in result.stderr


def test_bot_train_trains_beside_an_older_deskbots_store_and_says_it_could_not_count_its_labels(
        bot_dir: Path) -> None:
    """Deskbot upgraded, and nlu.yml edited before `bot serve` restarted: `bot train`, which learns nothing of the
    store, refused to train, as its note of the labels left to `bot retrain` read the store, not yet migrated."""
    (bot_dir / "dialogues.db").unlink(missing_ok=True)
    store_of_the_last_deskbot(bot_dir / "dialogues.db")
    result = CliRunner().invoke(cli, ["train", str(bot_dir), "--no-promote"])
    assert result.exit_code == 0, result.output
    said = result.stderr
    assert (f"note: {bot_dir / 'dialogues.db'} is at migration {len(MIGRATIONS) - 1}, an older deskbot's: the reviewed "
            "labels and agent answers in it, which `bot train` does not learn, are not counted") in said
    assert f"once `bot serve` of this deskbot has migrated it, `bot retrain {bot_dir}` learns them" in said
    assert sqlite3.connect(bot_dir / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)


def test_bot_train_trains_beside_a_newer_deskbots_store_and_says_it_could_not_count_its_labels(
        bot_dir: Path) -> None:
    """Gone back to this deskbot after an upgrade migrated the store: `bot train`, which learns nothing of the store
    and trains beside an older deskbot's, refused to train beside a newer one's, as its note of the labels left to
    `bot retrain` could not read it."""
    from finetune.registry import Registry

    store = Store(bot_dir / "dialogues.db")
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    store.close()
    result = CliRunner().invoke(cli, ["train", str(bot_dir), "--no-promote"])
    assert result.exit_code == 0, result.output
    assert (f"note: {bot_dir / 'dialogues.db'} was written by a newer deskbot (schema {len(MIGRATIONS) + 1}; this one "
            f"reads up to {len(MIGRATIONS)}): upgrade deskbot; the reviewed labels and agent answers in it, which `bot "
            f"train` does not learn, are not counted: `bot retrain {bot_dir}` of the newer deskbot learns them"
            ) in result.stderr
    assert len(Registry(bot_dir / "models").versions()) == 2


def test_bot_train_beside_a_newer_deskbots_store_kept_elsewhere_names_the_bot_folder_to_restore_into(
        bot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store kept apart from its bot folder (DESKBOT_STORE_DIR): `bot train`'s note named the store's folder in
    the `bot restore` it advised, which is no bot folder and which `bot restore` refuses."""
    data = tmp_path / "data"
    store_in_store_dir_of_a_newer_deskbot(data, monkeypatch)
    result = CliRunner().invoke(cli, ["train", str(bot_dir), "--no-promote"])
    assert result.exit_code == 0, result.output
    assert f"`bot restore {bot_dir} {data}/dialogues.db.schema{len(MIGRATIONS)}.bak` puts back" in result.stderr


def test_the_out_of_scope_labels_are_not_relabelled_with_one_intent(bot_dir: Path) -> None:
    """`bot relabel mybot oos track_order` gave every message a reviewer had found no intent for, "asdf" and the
    weather alike, the label track_order, which the next retrain learnt. oos names no intent to rename."""
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["asdf qwer", "will it rain tomorrow"]), "oos", "ann")
    store.add_labels(log_turns(store, ["has my parcel left yet"], conversation="c2"), "track_order", "ann")
    store.close()

    refused = CliRunner().invoke(cli, ["relabel", str(bot_dir), "oos", "track_order"])

    assert refused.exit_code == 1 and "oos labels every message no intent of the bot took" in refused.output
    store = Store(bot_dir / "dialogues.db")
    assert sorted(r["intent"] for r in store.labels()) == ["oos", "oos", "track_order"]
    store.close()


def test_the_labels_of_an_intent_nlu_yml_still_has_are_not_relabelled(bot_dir: Path) -> None:
    """`bot relabel mybot cancel_order get_refund` before cancel_order was taken out of nlu.yml gave its labels the
    other intent while its examples went on teaching it, and `bot stats` took its answers as get_refund's."""
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["please cancel the blue sofa"]), "cancel_order", "ann")
    store.close()

    refused = CliRunner().invoke(cli, ["relabel", str(bot_dir), "cancel_order", "get_refund"])

    assert refused.exit_code == 1 and "cancel_order is still an intent of nlu.yml: rename it there first" in refused.output
    store = Store(bot_dir / "dialogues.db")
    assert [r["intent"] for r in store.labels()] == ["cancel_order"] and not list(store.db["intent_renames"].rows)
    store.close()


def test_the_gate_compares_a_renamed_intent_on_neither_model_and_says_so(bot_dir: Path) -> None:
    """The serving model never learnt cancel_purchase, cancel_order's new name: the gate counted each of its examples
    as the serving model's mistake (seed top-1 0.75 against the candidate's 1.0), so any candidate passed on the
    points it gained there whatever it lost elsewhere, and nothing said the two figures measured different things.
    The gate compares the intents both know, and names the others with the candidate's figures on them."""
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    project = load_project(bot_dir)
    renamed = sum(e.intent == "cancel_purchase" for e in project.examples)

    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])

    assert result.exit_code == 0, result.output
    version = Registry(bot_dir / "models").versions()[-1].name
    decision = json.loads((bot_dir / "models" / version / "decision.json").read_text())
    seed, frozen = decision["figures"]["seed"], decision["figures"]["frozen"]
    apart = decision["not_compared"]["candidate"]
    assert apart["seed"]["n"] + apart["frozen"]["n"] == renamed and seed["serving"]["accuracy"] == 1.0
    assert (seed["serving"]["n"] + apart["seed"]["n"], frozen["serving"]["n"] + apart["frozen"]["n"]) == (52, 8)
    assert decision["not_compared"]["intents"] == ["cancel_purchase"]
    assert "of the intents it knows; not compared, as it does not know them: cancel_purchase" in result.output
    assert f"  not compared, {decision['serving']} does not know them: cancel_purchase; the candidate's top-1 there: " \
           "frozen " in result.output

    explained = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", version])
    assert explained.exit_code == 0, explained.output
    assert "not compared" in explained.output and "The same figures as" in explained.output


def test_a_retrain_after_bot_relabel_warm_starts_with_the_serving_models_rows_under_the_new_names(
        bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase and get_refund merged into it, both by `bot relabel`: the serving model
    knows every intent under its new name, yet the retrain trained from the base model, "the intents changed",
    losing all the serving model learnt, and a label it had learnt, moved to the new name, counted as gone. It
    warm-starts from it, each head row under the intent's current name."""
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["please cancel the blue sofa"]), "cancel_order", "ann")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).decision["data"]["new_labels"] == 1
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    merge_intent(bot_dir, "get_refund", "cancel_purchase")
    for old in ("cancel_order", "get_refund"):
        assert CliRunner().invoke(cli, ["relabel", str(bot_dir), old, "cancel_purchase"]).exit_code == 0
    said: list[str] = []

    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    assert result.decision["mode"] == "warm", said
    assert result.decision["data"]["labels_gone"] == 0 and result.decision["data"]["labelled"] == 1
    assert result.decision["warm_renamed"] == {"cancel_order": "cancel_purchase", "get_refund": "cancel_purchase"}
    assert any(line.startswith(f"Training a candidate (warm start from {result.decision['serving']}, its cancel_order "
                               "as cancel_purchase, get_refund as cancel_purchase)") for line in said), said
    meta = json.loads((bot_dir / "models" / result.version / "meta.json").read_text())
    assert meta["labels"] == sorted(load_project(bot_dir).intents) and meta["mode"] == "warm"


def test_a_corrected_label_keeps_the_warm_start_and_is_learnt_over_the_old_one(
        bot_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reviewer's slip corrected with `bot review --correct` counted as a label gone, and the next retrain trained
    from the base model, losing all the serving model learnt. It warm-starts, and says how the correction is learnt:
    several passes over it, without the pull towards the serving model's old answer there."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    [slip] = log_turns(store, ["please cancel the blue sofa"])
    store.add_labels([slip], "track_order", "ann")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).promoted
    store = Store(bot_dir / "dialogues.db")
    store.correct_label([slip], "cancel_order", "ann")
    store.close()
    said: list[str] = []

    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    data = result.decision["data"]
    assert result.decision["mode"] == "warm", said
    assert (data["labels_gone"], data["labels_corrected"], data["new_labels"], data["corrected_passes"]) == (0, 1, 1, 3)
    assert any(f"warm start from {result.decision['serving']}, 1 corrected label(s) learnt 3× per pass and not held to "
               f"{result.decision['serving']}'s answer there)" in line for line in said), said
    _print_decision(result.decision, result.version, bot_dir)
    assert "1 labelled (1 new, 1 corrected)" in capsys.readouterr().out

    store = Store(bot_dir / "dialogues.db")  # purged, a label is still to be unlearnt from the base model
    store.purge("c1")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).decision["mode"] == "full"


def test_a_message_labelled_again_on_a_new_turn_keeps_the_warm_start(bot_dir: Path) -> None:
    """A customer sent a learnt message again, and a reviewer labelled the new turn from the queue: the retrain
    learns one example per message, the new turn's, so the label the serving model learnt counted as gone and the
    retrain trained from the base model. It is the same message: the same intent again is no news, another a
    correction learnt over the old answer."""
    store = Store(bot_dir / "dialogues.db")
    for text in ("please cancel the blue sofa", "where is the red lamp"):
        store.add_labels(log_turns(store, [text]), "cancel_order", "ann")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).promoted
    store = Store(bot_dir / "dialogues.db")
    for text, intent in (("please cancel the blue sofa", "cancel_order"), ("Where is the red lamp?", "track_order")):
        store.add_labels(log_turns(store, [text], "c2"), intent, "bob", True, load_project(bot_dir).labels)
    store.close()

    result = retrain(load_project(bot_dir), device="cpu", progress=False)

    data = result.decision["data"]
    assert result.decision["mode"] == "warm", result.decision
    assert (data["labels_gone"], data["labels_corrected"], data["new_labels"]) == (0, 1, 2)


def test_a_label_bot_relabel_moved_twice_is_still_the_label_the_serving_model_learnt(bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase, then cancel_buy, with `bot relabel` each time and no retrain between: the
    label the serving model learnt, moved twice, counted as gone, and the retrain trained from the base model."""
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["please cancel the blue sofa"]), "cancel_order", "ann")
    store.close()
    retrain(load_project(bot_dir), device="cpu", progress=False)
    for old, new in (("cancel_order", "cancel_purchase"), ("cancel_purchase", "cancel_buy")):
        rename_intent(bot_dir, old, new)
        assert CliRunner().invoke(cli, ["relabel", str(bot_dir), old, new]).exit_code == 0

    result = retrain(load_project(bot_dir), device="cpu", progress=False)

    assert (result.decision["mode"], result.decision["data"]["labels_gone"]) == ("warm", 0)
    assert result.decision["warm_renamed"] == {"cancel_order": "cancel_buy"}


def test_a_retrain_after_a_rename_bot_relabel_was_not_told_of_says_how_to_warm_start(bot_dir: Path) -> None:
    """cancel_order renamed cancel_purchase in nlu.yml alone: the retrain said "full: the intents changed" and trained
    from the base model for minutes, though `bot relabel` would have let it warm-start. It names the intents gone and
    new, and the `bot relabel` to run first, before it trains; an intent only added leaves nothing to relabel."""
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    said: list[str] = []

    retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    assert any(line.startswith("Training a candidate (full: the intents changed: cancel_order gone, cancel_purchase "
                               "new; if one is the other renamed or merged, stop and run `bot relabel "
                               f"{bot_dir} cancel_order cancel_purchase` first, and the retrain warm-starts instead)")
               for line in said), said
    assert bot.retrain.intents_changed(SMALL_INTENTS, load_project(bot_dir), []) == "the intents changed"


def test_a_relabelled_classifier_answers_as_the_serving_model_under_the_new_names(small_bot: Path) -> None:
    """Its rows are the serving model's: renamed, each answer is the same intent under its new name; merged, the
    intent's row lies between the two it replaces."""
    serving = IntentClassifier.load(small_bot / "models" / "v0001" / "classifier", device="cpu")
    serving.ngrams, serving.ngram_share = None, 0.0  # a relabelled model has none until training fits it
    texts = [e.text for e in load_project(small_bot).examples]
    name = {"cancel_order": "cancel_purchase"}
    renamed = serving.relabelled({name.get(label, label): [label] for label in serving.labels})
    assert [p.intent for p in renamed.predict(texts)] == [name.get(p.intent, p.intent) for p in serving.predict(texts)]

    others = [label for label in serving.labels if label not in ("cancel_order", "get_refund")]
    merged = serving.relabelled({"cancel_or_refund": ["cancel_order", "get_refund"], **{o: [o] for o in others}})
    rows = torch.nn.functional.normalize(serving.head.detach(), dim=-1)
    between = rows[serving.labels.index("cancel_order")] + rows[serving.labels.index("get_refund")]
    assert torch.allclose(merged.head[0], torch.nn.functional.normalize(between, dim=0), atol=1e-6)
    assert merged.labels == ["cancel_or_refund", *others] and merged.encoder is serving.encoder


def merge_intent(root: Path, old: str, into: str) -> None:
    """Merge an intent into another: its examples, answers in history.jsonl and fallback title go to ``into``, or go."""
    nlu = yaml.safe_load((root / "nlu.yml").read_text())
    merged = next(i for i in nlu["nlu"] if i.get("intent") == old)
    next(i for i in nlu["nlu"] if i.get("intent") == into)["examples"] += merged["examples"]
    nlu["nlu"].remove(merged)
    (root / "nlu.yml").write_text(yaml.safe_dump(nlu, sort_keys=False))
    responses = yaml.safe_load((root / "responses.yml").read_text())
    del responses["responses"][old]
    (root / "responses.yml").write_text(yaml.safe_dump(responses, sort_keys=False, allow_unicode=True))
    config = yaml.safe_load((root / "bot.yml").read_text())
    del config["fallback"]["titles"][old]
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    history = root / "history.jsonl"
    history.write_text(history.read_text().replace(f'"intent": "{old}"', f'"intent": "{into}"'))


def test_the_gate_counts_the_serving_models_answers_as_the_serving_bot_gives_them_after_bot_relabel(
        bot_dir: Path) -> None:
    """After `bot relabel` the serving bot answers a renamed or merged intent under its new name, with its template:
    the gate still counted those answers under the old name as the serving model's mistakes (or left the renamed
    intent uncompared), so that a candidate gained there what it might lose elsewhere, on answers customers got
    right."""
    store = Store(bot_dir / "dialogues.db")
    log_turns(store, ["cancel the sofa"])  # answered under each old name: the renames are kept
    log_turns(store, ["money back please"], intent="get_refund")
    store.close()
    rename_intent(bot_dir, "cancel_order", "cancel_purchase")
    merge_intent(bot_dir, "get_refund", "cancel_purchase")
    for old in ("cancel_order", "get_refund"):
        assert CliRunner().invoke(cli, ["relabel", str(bot_dir), old, "cancel_purchase"]).exit_code == 0
    project = load_project(bot_dir)
    merged = [e.text for e in project.examples if e.intent == "cancel_purchase"]
    served = {a.prediction.intent for a in load_serving_model(project, "cpu", workers=1).analyse(merged)}

    result = retrain(project, device="cpu", progress=False)

    seed = result.decision["figures"]["seed"]["serving"]
    assert "cancel_purchase" in served and served <= set(project.intents) and result.decision["not_compared"] == {}
    assert seed["n"] == 52 and seed["accuracy"] == 1.0
    assert regate(load_project(bot_dir), result.version, device="cpu")["figures"] == result.decision["figures"]


def test_retrain_gives_each_models_frozen_accuracy_at_its_threshold_as_bot_models_and_bot_eval_do(bot_dir: Path) -> None:
    """The retrain printed top-1 alone, which no other command gives: `bot models` and `bot eval` count a message
    answered below the threshold as wrong, and a candidate whose calibrated threshold moved could fall back far more
    with the same top-1. Beside the gate's figures it gives both models' accuracy at their thresholds, the same as
    the other two commands say."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["my parcel never showed up"]), "track_order", "ann")
    store.close()

    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])

    assert result.exit_code == 0 and "PROMOTED" in result.output, result.output
    cut = json.loads((bot_dir / "models" / "v0002" / "decision.json").read_text())["at_threshold"]
    listed = {v["version"]: v["metrics"] for v in map(json.loads, CliRunner().invoke(
        cli, ["models", str(bot_dir), "--json"]).stdout.splitlines())}
    for name, version in (("serving", "v0001"), ("candidate", "v0002")):
        assert cut[name] == {"accuracy": round(listed[version]["accuracy"], 4),
                             "threshold": listed[version]["intent_threshold"]}
    assert cut["n"] == listed["v0002"]["n"] == 8
    scored = CliRunner().invoke(cli, ["eval", str(bot_dir), "--test", str(bot_dir / "models" / EVALUATION_FILE), "--json"])
    assert scored.exit_code == 0, scored.output
    assert round(json.loads(scored.stdout)["accuracy"], 4) == cut["candidate"]["accuracy"]
    change = cut["candidate"]["accuracy"] - cut["serving"]["accuracy"]
    assert (f"  frozen answered   {cut['serving']['accuracy']:>9.4f}{cut['candidate']['accuracy']:>11.4f}{change:>+9.4f}  "
            f"(n=8, at thresholds {cut['serving']['threshold']:.4f} and {cut['candidate']['threshold']:.4f}: not gated)"
            ) in result.output


def test_the_gate_measures_both_models_in_int8_when_the_bot_serves_them_so(bot_dir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With server.inference.quantize: int8 the bot answers with the encoder's linear layers in int8, which moves some
    answers, but the gate measured both models in float32, as no customer meets them: a candidate whose quantised
    weights answer worse could pass. Both are measured as served; the candidate is saved in float32 all the same."""
    configure(bot_dir, server={"inference": {"quantize": "int8"}})
    in_int8: list[bool] = []
    measure = bot.retrain.measure

    def spied(classifier: Any, examples: list[Example]) -> dict[str, Any]:
        while hasattr(classifier, "classifier"):  # each model answers through Remembered, the serving one Renamed too
            classifier = classifier.classifier
        encoder = classifier.encoder
        in_int8.append(any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in encoder.modules()))
        return measure(classifier, examples)

    monkeypatch.setattr(bot.retrain, "measure", spied)

    result = retrain(load_project(bot_dir), device="cpu", progress=False, force=True)

    assert len(in_int8) == 4 and all(in_int8)  # each model on the frozen and the seed set
    assert result.decision["measured_as"] == "int8"
    saved = IntentClassifier.load(bot_dir / "models" / result.version / "classifier", device="cpu")
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in saved.encoder.modules())
    monkeypatch.undo()
    explained = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", result.version])
    assert explained.exit_code == 0, explained.output
    assert "(both in int8, as bot serve runs them)" in explained.output and "The same figures as" in explained.output
    configure(bot_dir, server={"inference": {"quantize": "none"}})
    again = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", result.version])
    assert "measured in int8 then, float32 now: server.inference.quantize or the device changed since" in again.output


def test_a_bot_served_in_int8_is_measured_in_int8_on_a_cpu_whatever_device_trained_it(
        bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the gate and the threshold's calibration measured in int8 was decided by the device of the model in
    hand: a `bot retrain --device cuda` for a bot served in int8 on a CPU gated and calibrated its candidate in
    float32, as no customer meets it. bot.yml decides it: the model is measured as a CPU copy in int8."""
    configure(bot_dir, server={"inference": {"quantize": "int8"}})
    project = load_project(bot_dir)
    trained = IntentClassifier.load(bot_dir / "models" / "v0001" / "classifier", device="cpu")
    on_gpu = {id(trained)}  # the model as a retrain on a GPU has it in hand
    device = IntentClassifier.device.fget
    monkeypatch.setattr(IntentClassifier, "device",
                        property(lambda self: torch.device("cuda") if id(self) in on_gpu else device(self)))

    served = as_served(project, trained)

    assert served is not trained and served.device.type == "cpu"
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in served.encoder.modules())
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in trained.encoder.modules())
    assert measured_as(project) == "int8"
    configure(bot_dir, server={"inference": {"quantize": "none"}})
    assert as_served(load_project(bot_dir), trained) is trained and measured_as(load_project(bot_dir)) == "float32"


def test_bot_eval_scores_a_bot_served_in_int8_on_the_cpu_whatever_device_it_has(
        bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with a GPU, `bot eval` of a bot served in int8 on a CPU loaded its model on the GPU, where int8
    is a no-op: it scored float32, which no customer meets and the gate no longer measures. It loads it on the CPU."""
    loaded: list[str | None] = []
    load = bot.server.load_serving_model

    def spied(project: Any, device: str | None = None, workers: int | None = None) -> Any:
        loaded.append(device)
        return load(project, device, workers)

    monkeypatch.setattr(bot.server, "load_serving_model", spied)
    test = ["eval", str(bot_dir), "--test", str(bot_dir / "models" / EVALUATION_FILE), "--json"]
    assert CliRunner().invoke(cli, test).exit_code == 0
    configure(bot_dir, server={"inference": {"quantize": "int8"}})

    scored = CliRunner().invoke(cli, test)

    assert scored.exit_code == 0, scored.output
    assert loaded == [None, "cpu"]  # None: cuda where torch sees a GPU


def test_a_version_served_in_int8_is_calibrated_and_listed_as_served(bot_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With server.inference.quantize: int8 the threshold was calibrated, and the accuracy `bot models` lists measured,
    on the float32 model, whose confidences int8 moves: the bot fell back at a cut chosen for another model, and
    the gate's accuracy at the threshold for the candidate, measured in int8, was not the one `bot models` lists."""
    configure(bot_dir, server={"inference": {"quantize": "int8"}}, thresholds={"intent": "auto"})
    in_int8: list[bool] = []
    holdout_metrics = bot.training.holdout_metrics

    def spied(classifier: Any, held: list[Example], threshold: Any) -> dict[str, Any]:
        encoder = getattr(classifier, "classifier", classifier).encoder  # the gate's answers through Remembered
        in_int8.append(any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in encoder.modules()))
        return holdout_metrics(classifier, held, threshold)

    monkeypatch.setattr(bot.training, "holdout_metrics", spied)

    result = retrain(load_project(bot_dir), device="cpu", progress=False, force=True)

    assert in_int8 == [True]
    metrics = json.loads((bot_dir / "models" / result.version / "metrics.json").read_text())
    assert result.decision["at_threshold"]["candidate"] == {"accuracy": round(metrics["accuracy"], 4),
                                                            "threshold": metrics["intent_threshold"]}


def test_the_gate_scores_the_frozen_set_once_a_model_in_int8(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In int8 each message is its own pass, the slowest way to answer, and the frozen evaluation set was scored
    five times a retrain: the serving model for the gate and at its threshold, the candidate for its version's
    figures, the gate and at its threshold. Each model now answers each of its examples once."""
    configure(bot_dir, server={"inference": {"quantize": "int8"}})
    project = load_project(bot_dir)
    held = {e.text for e in frozen_split(project, write=False)[1]}
    scored: list[int] = []  # the frozen examples in each pass of a model answering as served
    predict = IntentClassifier.predict

    def counted(self: IntentClassifier, texts: list[str], batch_size: int | None = None) -> list[Any]:
        if self.pass_size == 1:
            scored.append(len(held.intersection(texts)))
        return predict(self, texts, batch_size)

    monkeypatch.setattr(IntentClassifier, "predict", counted)
    retrain(project, device="cpu", progress=False, force=True)
    assert [n for n in scored if n] == [len(held), len(held)]  # the serving model's, then the candidate's


def test_a_model_answering_each_text_once_gives_the_gate_its_figures_unchanged(bot_dir: Path) -> None:
    """The gate's figures from a model that keeps its answers are those it gave scoring each set afresh, whatever
    set it answered first: in int8 a message's answer is its alone."""
    configure(bot_dir, server={"inference": {"quantize": "int8"}}, thresholds={"intent": "auto"})
    project = load_project(bot_dir)
    seed, held = frozen_split(project, write=False)
    served = as_served(project, IntentClassifier.load(Registry(project.models_dir).current_path() / "classifier",
                                                      device="cpu"))
    remembered = Remembered(served)
    assert measured(remembered, seed[:3], held[::2]) == measured(served, seed[:3], held[::2])
    assert holdout_metrics(remembered, held, "auto") == holdout_metrics(served, held, "auto")
    assert measured(remembered, seed, held) == measured(served, seed, held)
    assert at_threshold(remembered, held, 0.5) == at_threshold(served, held, 0.5)
    assert set(remembered.answers) == {e.text for e in seed + held}


def test_the_gate_scores_the_frozen_set_once_a_model_in_float32(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In float32 the frozen evaluation set was scored five times a retrain, as in int8. Where the serving model knows
    every intent the gate's set is the whole of it, in the same order: each model now scores it once."""
    project = load_project(bot_dir)
    held = {e.text for e in frozen_split(project, write=False)[1]}
    scored: list[int] = []  # the frozen examples in each pass of a model answering 64 messages a pass
    predict = IntentClassifier.predict

    def counted(self: IntentClassifier, texts: list[str], batch_size: int | None = None) -> list[Any]:
        if self.pass_size != 1 and batch_size is None:
            scored.append(len(held.intersection(texts)))
        return predict(self, texts, batch_size)

    monkeypatch.setattr(IntentClassifier, "predict", counted)
    result = retrain(project, device="cpu", progress=False, force=True)
    assert result.decision["measured_as"] == "float32" and not result.decision["not_compared"]
    assert [n for n in scored if n] == [len(held), len(held)]  # the serving model's, then the candidate's


def test_a_model_in_float32_keeps_its_answers_to_the_same_texts_alone(bot_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """In float32 a pass is padded to its longest message, so a text's answer may move with the texts beside it: the
    gate's figures from a model that keeps its answers are those it gave scoring each set afresh, and a set that is
    not the one answered before (the intents the serving model knows) is scored afresh."""
    configure(bot_dir, thresholds={"intent": "auto"})
    project = load_project(bot_dir)
    seed, held = frozen_split(project, write=False)
    served = as_served(project, IntentClassifier.load(Registry(project.models_dir).current_path() / "classifier",
                                                      device="cpu"))
    assert served.pass_size != 1
    remembered = Remembered(served)
    calls: list[int] = []
    predict = served.predict
    monkeypatch.setattr(served, "predict", lambda texts: calls.append(len(texts)) or predict(texts))

    assert holdout_metrics(remembered, held, "auto") == holdout_metrics(served, held, "auto")
    assert measured(remembered, seed, held) == measured(served, seed, held)
    assert at_threshold(remembered, held, 0.5) == at_threshold(served, held, 0.5)
    assert measured(remembered, seed, held[::2]) == measured(served, seed, held[::2])
    whole, seeds, half = len(held), len(seed), len(held[::2])
    # Line by line, the passes of the model keeping its answers, then those of the model scoring afresh.
    assert calls == [whole, whole, seeds, whole, seeds, whole, half, half, seeds]


def test_a_candidate_refused_over_the_intents_both_know_says_how_to_serve_the_new_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    """cancel_order and get_refund merged into cancel_or_refund: the serving model answers neither name nlu.yml now
    has, and a candidate trained from the base model that lost a few seed examples elsewhere was refused, as every
    later one would be, with nothing said of how to get the new intents served."""
    decision = {"serving": "v0002", "version": "v0003", "mode": "full", "figures": {}, "worst_intent_drop": 0.1538,
                "intent_drops": {"seed": {"contact_human_agent": 0.1538}}, "margins": {"max_intent_drop": 0.02},
                "reasons": ["seed: accuracy fell from 1.0000 to 0.8846"], "passed": False, "promoted": False,
                "not_compared": {"intents": ["cancel_or_refund"], "candidate": {"frozen": {"accuracy": 1.0, "n": 4},
                                                                               "seed": {"accuracy": 1.0, "n": 26}}},
                "data": {"seed_examples": 52, "labelled": 0, "oos": 0, "new_labels": 0, "agent_answers": 0,
                         "new_answers": 0}}
    _print_decision(decision, "v0002", Path("my bot"))
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  v0002 answers none of cancel_or_refund, which nlu.yml has: if what the candidate lost above is worth them, "
        "`bot rollback 'my bot' v0003` serves it")
    _print_decision({**decision, "passed": True, "promoted": True, "reasons": []}, "v0003", Path("my bot"))
    assert "bot rollback" not in capsys.readouterr().out


def test_nothing_new_after_a_rollback_says_how_to_go_on(bot_dir: Path) -> None:
    """Rolled back from a promoted candidate, a retrain said only "Nothing new since v0002", while v0001 served:
    nothing said how to serve v0002 again, or to train a candidate against v0001."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["my parcel never showed up"]), "track_order", "ann")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version == "v0002"
    assert CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).exit_code == 0
    said: list[str] = []
    assert retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append).version is None
    assert said[-1].endswith(f"are unchanged. v0001 serves since a rollback: `bot rollback {bot_dir} v0002` serves "
                             f"v0002 again, and `bot retrain {bot_dir} --force` trains a candidate against v0001.")


def test_a_rollback_to_the_serving_version_says_nothing_changed(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said "Now serving v0001 (was v0001)" and that a running server would swap to it; on a full disk it failed,
    writing the decision log and CURRENT again to change nothing."""
    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", disk_full)
    monkeypatch.setattr(os, "fsync", disk_full)
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"])
    assert result.exit_code == 0, result.output
    assert "v0001 serves already; nothing changed." in result.output and "Now serving" not in result.output
    assert Registry(bot_dir / "models").current() == "v0001"


def retrained_with_an_agent_answer(bot_dir: Path) -> None:
    """Retrain ``bot_dir`` into v0002, its gate open, once an agent answered conversation "lost"."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    store = Store(bot_dir / "dialogues.db")
    log_turns(store, ["my parcel never showed up"], conversation="lost")
    store.add_agent_answer("lost", "It left our depot on Monday; it is with the courier now.")
    store.close()
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version == "v0002"


def test_a_rollback_to_the_serving_version_leaves_out_the_answers_purged_since(bot_dir: Path) -> None:
    """It said "nothing changed" and went on serving a purged conversation's agent answer, which a rollback to any
    other version leaves out, as `bot retrain` does; and one after history.jsonl changed served its old answers."""
    from bot.nlu import NLU

    retrained_with_an_agent_answer(bot_dir)
    store = Store(bot_dir / "dialogues.db")
    store.purge("lost")
    store.close()

    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"])
    assert result.exit_code == 0, result.output
    assert "v0003 serves v0002's classifier with it." in result.output and "Now serving v0003 (was v0002)" in result.output
    assert not [i for i in NLU.load(bot_dir / "models" / "v0003").index.ids if i.startswith("agent:")]
    assert "v0003 serves already; nothing changed." in CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0003"]).output
    with (bot_dir / "history.jsonl").open("a") as history:
        history.write(json.dumps({"question": "do you ship to Iceland?", "answer": "Yes, in 5 days.",
                                  "intent": "track_order"}) + "\n")
    assert "Now serving v0004 (was v0003)" in CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0003"]).output


def test_retrain_trains_from_the_base_model_when_model_base_changes(bot_dir: Path, tmp_path: Path) -> None:
    """model.base changed in bot.yml, a retrain warm-started from the serving model's encoder, the old
    base, and recorded the new one in meta.json: `bot info` named a model the classifier was not."""
    from tests.conftest import make_tiny_bert
    from finetune.classifier import IntentClassifier

    wider = make_tiny_bert(tmp_path / "tiny-48", hidden_size=48)
    configure(bot_dir, model={"base": str(wider)})

    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])  # nothing else new: the base is reason enough

    assert result.exit_code == 0, result.output
    assert "Training a candidate (full: the base model changed)" in result.output
    meta = json.loads((bot_dir / "models" / "v0002" / "meta.json").read_text())
    assert meta["mode"] == "full" and meta["base_model"] == str(wider)
    assert IntentClassifier.load(bot_dir / "models" / "v0002" / "classifier", device="cpu").head.shape[1] == 48


def test_a_changed_training_setting_trains_a_candidate_and_says_which(bot_dir: Path) -> None:
    """model.seed edited in bot.yml, a retrain said "Nothing new" and trained nothing: the same data trained with
    another seed, to see how much the figures owe to it, needed a --force that did not say what had changed."""
    configure(bot_dir, model={"seed": 7, "batch_size": 16}, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    said: list[str] = []

    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    assert result.version == "v0002"
    assert "bot.yml's training settings changed since v0001: model.batch_size 32 → 16, model.seed 42 → 7" in said
    assert result.decision["data"]["settings_changed"] == ["model.batch_size 32 → 16", "model.seed 42 → 7"]
    settings = json.loads((bot_dir / "models" / "v0002" / "meta.json").read_text())["training"]
    assert settings["model.seed"] == 7 and settings["model.batch_size"] == 16
    assert retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append).version is None
    assert said[-1] == ("Nothing new since v0002: no new labels or agent answers, and nlu.yml, model.base and the "
                        f"training settings are unchanged. `bot retrain {bot_dir} --force` trains a candidate all the "
                        "same (the same data, another run).")  # the way on, which the message did not name


@pytest.mark.parametrize(("passed", "last", "said"), [
    (True, "v0002", "`bot retrain '/shop/my bot' --force` trains a candidate all the same"),
    (True, "v0003", "`bot rollback '/shop/my bot' v0003` serves v0003 again, and `bot retrain '/shop/my bot' --force`"),
    (False, "v0003", "serve it as it is with `bot rollback '/shop/my bot' v0003`."),
])
def test_nothing_new_names_commands_that_run_as_typed_for_a_folder_with_a_space(
        passed: bool, last: str, said: str) -> None:
    """`bot retrain "my bot"` said to run `bot rollback my bot v0003`, which names two folders."""
    from types import SimpleNamespace

    version = SimpleNamespace(name=last, passed=passed, decision={"reasons": ["accuracy fell"]})
    assert said in bot.retrain._ways_on(SimpleNamespace(root=Path("/shop/my bot")), version, "v0002")


def test_a_setting_added_since_a_version_was_trained_counts_as_its_default_there(bot_dir: Path) -> None:
    """A version trained before model.class_weights was recorded trained without them: setting them in bot.yml is
    a change a retrain trains a candidate for, not "nothing new"."""
    meta = json.loads((bot_dir / "models" / "v0001" / "meta.json").read_text())
    del meta["training"]["model.class_weights"]
    assert changed_settings(meta["training"], load_project(bot_dir)) == []
    configure(bot_dir, model={"class_weights": "sqrt"})
    assert changed_settings(meta["training"], load_project(bot_dir)) == ["model.class_weights none → sqrt"]


def test_corrected_passes_is_a_recorded_training_setting(bot_dir: Path) -> None:
    """How often a warm start learns a corrected label per pass over the rest was fixed at 3, outside bot.yml: a shop
    could not tune it, and a version did not record how it was trained. learning.corrected_passes sets it, a version
    records it, changing it is a change a retrain trains for, and a count below one is refused."""
    meta = json.loads((bot_dir / "models" / "v0001" / "meta.json").read_text())
    assert meta["training"]["learning.corrected_passes"] == 3
    configure(bot_dir, learning={"corrected_passes": 5})
    project = load_project(bot_dir)
    assert train_config(project).corrected_passes == 5
    assert changed_settings(meta["training"], project) == ["learning.corrected_passes 3 → 5"]
    del meta["training"]["learning.corrected_passes"]  # a version trained before it was recorded: 3, as it trained
    assert changed_settings(meta["training"], project) == ["learning.corrected_passes 3 → 5"]
    configure(bot_dir, learning={"corrected_passes": 0})
    with pytest.raises(ProjectError, match="corrected_passes"):
        load_project(bot_dir)


def test_retrieval_settings_changed_since_the_index_was_built_rebuild_it_without_training(bot_dir: Path) -> None:
    """retrieval.options edited in bot.yml: a retrain said nothing new, and the serving index kept the settings it was
    built with until a retrain had labels to train a candidate on."""
    from retrieval.index import saved_answers

    configure(bot_dir, retrieval={"options": {"flat_max": 10_000}})
    said: list[str] = []

    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    assert result.version == "v0002" and result.decision["index_refresh"] == "v0002"
    assert said[0] == ("bot.yml's retrieval settings changed since v0001 was indexed (retrieval.options.flat_max "
                       "20000 → 10000): v0002 serves an index built with them, v0001's classifier unchanged.")
    models = bot_dir / "models"
    assert json.loads((models / "v0002" / "index" / "manifest.json").read_text())["options"]["flat_max"] == 10_000
    assert (models / "v0002" / "classifier" / "head.safetensors").read_bytes() == \
        (models / "v0001" / "classifier" / "head.safetensors").read_bytes()
    assert saved_answers(models / "v0002" / "index") == saved_answers(models / "v0001" / "index")
    assert retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append).version is None


def test_thresholds_intent_turned_to_auto_trains_a_candidate_to_calibrate_it(bot_dir: Path) -> None:
    """A version trained with thresholds.intent: 0.3, then bot.yml set to auto: a retrain said nothing new, and the
    version's 0.3 served as its calibrated threshold. Another number needs no training: it serves as it is."""
    configure(bot_dir, thresholds={"intent": 0.3}, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    assert retrain(load_project(bot_dir), device="cpu", progress=False).version is None
    assert retrain(load_project(bot_dir), device="cpu", progress=False, force=True).version == "v0002"
    configure(bot_dir, thresholds={"intent": "auto"})
    said: list[str] = []

    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)

    assert result.version == "v0003" and result.promoted
    assert "bot.yml's training settings changed since v0002: thresholds.intent 0.3 → auto" in said
    thresholds = [json.loads((bot_dir / "models" / v / "meta.json").read_text())["intent_threshold"]
                  for v in ("v0002", "v0003")]
    assert thresholds == [0.3, 0.5]  # the default: too few held-out examples to calibrate on


def test_gate_refuses_a_candidate_taught_wrong_labels(bot_dir: Path) -> None:
    """A careless reviewer labels every way of asking for an order's status as a cancellation (nlu.yml's
    own examples reworded, each four ways: a label on one of them as written would be left out as
    contradicting it)."""
    store = Store(bot_dir / "dialogues.db")
    texts = [form.format(text) for form in ("hi, {}", "{} please", "hello {}", "{} thanks")
             for text in seed_texts(bot_dir, "track_order")]
    store.add_labels(log_turns(store, texts * 3), "cancel_order", "careless")
    log_turns(store, ["the parcel came damaged"], conversation="damaged")
    store.add_agent_answer("damaged", "Sorry about that! Send us a photo and we will replace it.")
    store.add_labels(log_turns(store, ["do you sell bicycles?"], conversation="bikes"), "oos", "careless")
    store.close()

    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])

    assert result.exit_code == 0, result.output
    assert "Candidate v0002 (warm from v0001): REFUSED, v0001 keeps serving" in result.output
    # an oos label this bot cannot train on (no oos intent) is said to be left out, not counted as learned
    # and each text, labelled three times, is one example
    assert "labelled (60 new), 1 out of scope left out (nlu.yml has no oos intent), 120 repeats left out (one example " \
        "a message), " in result.output
    assert "refused because seed: track_order fell by" in result.output
    assert "seed examples now answered otherwise; check the label:\n    track_order: " in result.output
    decision = json.loads((bot_dir / "models" / "v0002" / "decision.json").read_text())
    assert decision["passed"] is False and decision["worst_intent_drop"] > decision["margins"]["max_intent_drop"]
    assert len(decision["forgotten"]) > decision["margins"]["max_forgotten"] == 1
    assert {e["intent"] for e in decision["forgotten"]} == {"track_order"}
    # the wrong labels bought nothing elsewhere on the seed data either
    assert decision["figures"]["seed"]["candidate"]["accuracy"] <= decision["figures"]["seed"]["serving"]["accuracy"]

    # The refusal can be checked by hand: both models measured again give the figures the gate got, and say why.
    explained = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", "v0002", "--json"])
    assert explained.exit_code == 0, explained.output
    again = json.loads(explained.stdout)
    assert again["serving"] == "v0001" and again["same_as_stored"] is True
    assert {key: again[key] for key in ("passed", "reasons", "figures", "intent_drops", "forgotten")} == \
        {key: decision[key] for key in ("passed", "reasons", "figures", "intent_drops", "forgotten")}
    shown = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", "v0002"])
    assert shown.exit_code == 0, shown.output
    assert "Candidate v0002 measured again against v0001: refused" in shown.output
    assert "  seed: track_order fell by" in shown.output and "refused because seed: track_order fell by" in shown.output
    assert "The same figures as v0002's decision.json, which `bot retrain` wrote." in shown.output
    unjudged = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", "v0001"])
    assert unjudged.exit_code == 1 and "no promotion gate judged v0001" in unjudged.output
    shutil.move(bot_dir / "models" / "v0001", bot_dir / "v0001")  # deleted to free its disk
    gone = CliRunner().invoke(cli, ["models", str(bot_dir), "--explain", "v0002"])
    assert gone.exit_code == 1 and "v0002 was gated against v0001, which is no longer in" in gone.output
    shutil.move(bot_dir / "v0001", bot_dir / "models" / "v0001")

    # The refused classifier never serves, but the new agent answer does, beside the old classifier.
    registry = Registry(bot_dir / "models")
    assert "v0003 now serves the new agent answers with the unchanged classifier" in result.output
    assert registry.current() == "v0003"
    models = bot_dir / "models"
    old, refreshed = models / "v0001", models / "v0003"
    assert (refreshed / "classifier" / "head.safetensors").read_bytes() == (old / "classifier" / "head.safetensors").read_bytes()
    assert [d["event"] for d in registry.decisions()] == ["trained", "index_refresh", "refused"]  # the refusal ends the run

    from bot.nlu import NLU

    hit = NLU.load(refreshed).analyse(["the parcel came damaged"])[0].hits[0]
    assert hit.id == "agent:1" and hit.text.startswith("Sorry about that")

    again = CliRunner().invoke(cli, ["retrain", str(bot_dir)])  # the same data would train the same model
    assert again.exit_code == 0 and "Nothing new since v0003" in again.output
    assert [v.name for v in registry.versions()] == ["v0001", "v0002", "v0003"]

    listing = CliRunner().invoke(cli, ["models", str(bot_dir)])
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[2].startswith("  v0002") and "refused: " in lines[2] and "seed: track_order fell by" in lines[2]
    assert lines[3].startswith("* v0003") and "index_refresh" in lines[3]
    assert lines[3].endswith("  promoted (index refresh of v0001)")  # it serves: its status was left blank

    # Purged, the conversation's agent answer leaves the index at the next retrain, with nothing to train.
    assert CliRunner().invoke(cli, ["purge", str(bot_dir), "--conversation", "damaged"]).exit_code == 0
    purged = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert purged.exit_code == 0 and "1 agent answer no longer in the store as indexed (purged, now redacted, about one customer's case, or given in `bot chat`) left the index: v0004" in purged.output
    assert registry.current() == "v0004" and [d["event"] for d in registry.decisions()][-1] == "index_refresh"
    assert not [i for i in NLU.load(models / "v0004").index.ids if i.startswith("agent:")]
    assert (models / "v0004" / "classifier" / "head.safetensors").read_bytes() == (old / "classifier" / "head.safetensors").read_bytes()
    assert "Nothing new since v0004" in CliRunner().invoke(cli, ["retrain", str(bot_dir)]).output
    (models / "v0004" / "index" / "answers.jsonl").unlink()  # a damaged serving index: one line, no traceback
    damaged = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert damaged.exit_code == 1 and "v0004: cannot load the answer index" in damaged.output


def test_retrain_never_promotes_over_a_current_changed_during_the_run(bot_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`bot rollback` cannot run beside a retrain, and a CURRENT rewritten without the lock is not overridden."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})  # the gate alone would promote
    models = bot_dir / "models"
    shutil.copytree(models / "v0001", models / "v0002")
    registry = Registry(models)
    registry.promote("v0002")
    store = Store(bot_dir / "dialogues.db")
    log_turns(store, ["the parcel came damaged"], conversation="damaged")
    store.add_agent_answer("damaged", "Sorry about that! Send us a photo and we will replace it.")
    store.close()
    fit = bot.retrain.fit

    def fit_while_someone_rolls_back(*args: Any, **kwargs: Any) -> Any:
        with pytest.raises(RegistryError, match="try again when it finishes"):
            registry.rollback("v0001")
        assert registry.current() == "v0002"
        registry.promote("v0001")  # what a hand edit or a tool that takes no lock does
        return fit(*args, **kwargs)

    monkeypatch.setattr(bot.retrain, "fit", fit_while_someone_rolls_back)
    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])

    assert result.exit_code == 0, result.output
    assert "refused because CURRENT changed from v0002 to v0001 during this run" in result.output
    assert "REFUSED, v0001 keeps serving" in result.output
    assert registry.current() == "v0001" and [v.name for v in registry.versions()] == ["v0001", "v0002", "v0003"]
    decision = json.loads((models / "v0003" / "decision.json").read_text())  # kept, never promoted
    assert decision["passed"] is False and decision["serving"] == "v0002"
    assert decision["reasons"] == ["CURRENT changed from v0002 to v0001 during this run; the candidate was gated "
                                   "against v0002, so v0001 keeps serving (`bot retrain --force` gates a new "
                                   "candidate against it)"]
    assert [(d["event"], d["version"]) for d in registry.decisions()][1:] == [("refused", "v0003")]  # no index refresh
    # Run again with nothing new, the admin is told what the refusal was and the ways on, not just "nothing new"
    again = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert again.exit_code == 0 and "Nothing new since v0003" in again.output
    assert "The gate refused v0003 (CURRENT changed from v0002 to v0001" in again.output
    assert f"serve it as it is with `bot rollback {bot_dir} v0003`" in again.output


def killed_before_promotion(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retrain killed once its candidate is written, before it is made to serve."""
    def killed(self: Registry, name: str) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Registry, "promote", killed)
        with pytest.raises(KeyboardInterrupt):
            retrain(load_project(bot_dir), device="cpu", progress=False)


def test_a_run_killed_after_its_promotion_is_listed_as_serving(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between making its candidate serve and recording it, a run left `bot models` marking the serving
    version with * and "passed, not promoted: its run ended first" beside it, and the one on call wondering which
    to believe."""
    one_label_to_promote(bot_dir)

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bot.retrain, "record_served", killed)
    with pytest.raises(KeyboardInterrupt):
        retrain(load_project(bot_dir), device="cpu", progress=False)
    assert Registry(bot_dir / "models").current() == "v0002"
    listing = CliRunner().invoke(cli, ["models", str(bot_dir)]).output.splitlines()
    assert listing[2].startswith("* v0002") and listing[2].endswith(
        "  promoted (its run ended before decisions.jsonl recorded it)")


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 1)])
def test_a_retrain_stopped_just_after_its_promotion_records_it_and_says_its_candidate_serves(
        bot_dir: Path, monkeypatch: pytest.MonkeyPatch, stop: signal.Signals, exit_code: int) -> None:
    """SIGTERM as the candidate was made to serve, before its promotion was recorded, had `bot retrain` say that the
    candidate it was training was removed, while it served: the one on call went looking for a model that was there.
    And the promotion went unrecorded, so that `bot models` could only guess it from CURRENT: the stop (Ctrl-C too)
    waits for the record."""
    one_label_to_promote(bot_dir)
    promote = Registry.promote

    def stopped(self: Registry, name: str) -> None:
        promote(self, name)
        signal.raise_signal(stop)  # SIGTERM handled as `bot retrain` handles it: its exit status is 143

    monkeypatch.setattr(Registry, "promote", stopped)
    result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert result.exit_code == exit_code, result.output
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0002"
    assert [(d["event"], d["version"]) for d in registry.decisions()][-1] == ("promoted", "v0002")
    if stop == signal.SIGTERM:
        assert "Stopped by SIGTERM: v0002 serves now: the candidate it promoted just before the stop.\n" in result.stderr
    listing = CliRunner().invoke(cli, ["models", str(bot_dir)]).output.splitlines()
    assert listing[2].startswith("* v0002") and listing[2].endswith("  promoted"), listing


HUNG_UP_AFTER_PROMOTION = """
import os, signal, sys
from finetune.registry import Registry
from bot.cli import cli

promote = Registry.promote


def hung_up(self, name):  # the terminal the retrain ran in closes as its candidate is made to serve
    promote(self, name)
    os.kill(os.getpid(), signal.SIGHUP)


Registry.promote = hung_up
cli(["retrain", sys.argv[1], "--force"])
"""


def test_a_retrain_whose_terminal_closes_as_it_promotes_records_the_promotion(bot_dir: Path) -> None:
    """SIGHUP (the terminal closed) ended `bot retrain` outright: between writing CURRENT and the log's line, it left a
    promotion the log never named, and anywhere else its staging folder. It ends it as SIGTERM does, status 129,
    saying what serves."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    ended = subprocess.run([sys.executable, "-c", HUNG_UP_AFTER_PROMOTION, str(bot_dir)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert ended.returncode == 128 + signal.SIGHUP, ended.stderr
    assert "Stopped by SIGHUP: v0002 serves now: the candidate it promoted just before the stop.\n" in ended.stderr
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0002"
    assert [(d["event"], d["version"]) for d in registry.decisions()][-1] == ("promoted", "v0002")


def test_a_bot_train_stopped_just_after_its_promotion_records_it(bot_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C as `bot train` made its version serve, before the log recorded it, left a version serving that
    decisions.jsonl never named: the stop waits for the record."""
    promote = Registry.promote

    def stopped(self: Registry, name: str) -> None:
        promote(self, name)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Registry, "promote", stopped)
    with pytest.raises(KeyboardInterrupt):
        train_project(load_project(bot_dir), device="cpu", progress=False)
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0002"
    assert {k: registry.decisions()[-1][k] for k in ("event", "version", "promoted")} == \
        {"event": "trained", "version": "v0002", "promoted": True}


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 1)])
def test_a_rollback_stopped_before_it_served_is_recorded_as_failed(bot_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    stop: signal.Signals, exit_code: int) -> None:
    """A stop between recording a rollback and writing CURRENT (a deploy's SIGTERM, Ctrl-C, the terminal closing) left
    the log saying the version served: `bot models` listed it "served by rollback" and `bot serve`'s fallback took it
    for one that had."""
    train_project(load_project(bot_dir), device="cpu", progress=False)  # v0002 serves
    promote = Registry.promote

    def stopped(self: Registry, name: str) -> None:
        signal.raise_signal(stop)  # SIGTERM handled as `bot rollback` handles it: its exit status is 143
        promote(self, name)

    monkeypatch.setattr(Registry, "promote", stopped)
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"])
    assert result.exit_code == exit_code, result.output
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0002" and registry.last_served() == "v0002"
    assert [(d["event"], d["version"]) for d in registry.decisions()][-2:] == [("rollback", "v0001"),
                                                                                 ("rollback_failed", "v0001")]
    monkeypatch.undo()  # served once rolled back to, whatever comes after
    promote = Registry.promote

    def served_then_stopped(self: Registry, name: str) -> None:
        promote(self, name)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Registry, "promote", served_then_stopped)
    assert CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).exit_code == 1
    assert registry.current() == "v0001" and registry.last_served() == "v0001"
    assert registry.decisions()[-1]["event"] == "rollback"


def test_a_sighup_that_nohup_ignores_stays_ignored_in_a_command_that_unwinds_on_stops() -> None:
    """`nohup bot retrain …` ignores the SIGHUP of the session's end: the run must go on, not stop as on a closed
    terminal."""
    from bot.cli.common import unwound_on_sigterm

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with unwound_on_sigterm():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_a_run_that_ended_before_its_promotion_has_not_run_for_the_next(bot_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between writing its candidate and making it serve, a run has taught the serving model
    nothing, so the next one trains on the same labels instead of finding "nothing new"."""
    one_label_to_promote(bot_dir)

    killed_before_promotion(bot_dir, monkeypatch)
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0001" and [v.name for v in registry.versions()] == ["v0001", "v0002"]
    listing = CliRunner().invoke(cli, ["models", str(bot_dir)]).output.splitlines()  # it passed the gate, never served
    assert listing[2].startswith("  v0002") and listing[2].endswith("  passed, not promoted: its run ended first")

    result = retrain(load_project(bot_dir), device="cpu", progress=False)
    assert (result.version, result.promoted, registry.current()) == ("v0003", True, "v0003")
    assert result.decision["data"]["new_labels"] == 1


def test_a_candidate_whose_promotion_failed_is_not_listed_as_promoted(bot_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """CURRENT could not be written (a full disk) for a candidate the gate passed: `bot models` listed it as
    promoted, though it never served, and the log said nothing of it."""
    one_label_to_promote(bot_dir)
    replace = os.replace

    def disk_full(src: str, dst: str) -> None:
        if Path(dst).name == "CURRENT":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", disk_full)
        result = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
    assert result.exit_code == 1 and "cannot make v0002 serve" in result.output and "Traceback" not in result.output
    registry = Registry(bot_dir / "models")
    assert registry.current() == "v0001" and registry.last_served() == "v0001"
    assert json.loads((bot_dir / "models" / "v0002" / "decision.json").read_text())["passed"] is True
    failed = registry.decisions()[-1]
    assert (failed["event"], failed["version"], failed["serving"]) == ("promotion_failed", "v0002", "v0001")
    listing = CliRunner().invoke(cli, ["models", str(bot_dir)]).output.splitlines()
    assert listing[2].startswith("  v0002") and "promoted" not in listing[2].replace("not promoted", "")
    assert "passed, not promoted: cannot make v0002 serve: writing" in listing[2] and "No space left" in listing[2]
    assert bot.retrain.last_finished(registry, "v0001").name == "v0001"  # the next run learns the label again

    # The disk freed, the operator serves it by hand: it served, which `bot models` said it had not.
    rows = [json.loads(line) for line in CliRunner().invoke(cli, ["models", str(bot_dir), "--json"]).output.splitlines()]
    assert rows[1]["status"].startswith("passed, not promoted: cannot make v0002 serve")
    assert CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"]).exit_code == 0
    listing = CliRunner().invoke(cli, ["models", str(bot_dir)]).output.splitlines()
    assert listing[2].startswith("* v0002") and listing[2].endswith("  served by rollback")
    rows = [json.loads(line) for line in CliRunner().invoke(cli, ["models", str(bot_dir), "--json"]).output.splitlines()]
    assert [(r["version"], r["serving"], r["status"]) for r in rows][1] == ("v0002", True, "served by rollback")


def test_a_promotion_the_full_disk_kept_out_of_the_decision_log_says_the_candidate_serves(
        bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CURRENT written, the log's line refused: bot retrain failed with "cannot record the decision", and the one on
    call took the old version for the one serving, while every server swapped to the new one."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    record = Registry.record

    def disk_full(self: Registry, event: dict[str, Any]) -> None:
        if event["event"] == "promoted":
            raise RegistryError(f"cannot record the decision in {self.root / 'decisions.jsonl'}: No space left on device")
        record(self, event)

    monkeypatch.setattr(Registry, "record", disk_full)
    result = CliRunner().invoke(cli, ["retrain", str(bot_dir), "--force"])

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "v0002 serves now (models/CURRENT names it), but cannot record the decision in" in result.output
    assert Registry(bot_dir / "models").current() == "v0002"


def test_a_killed_run_after_a_deleted_version_has_not_run_for_the_next(bot_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """v0002 served, was rolled back and deleted; a run killed before its promotion wrote its candidate as
    v0002 again, which the log's promotion of the old v0002 made a finished run: "Nothing new since v0002",
    and its label was never learnt."""
    configure(bot_dir, learning={"max_accuracy_drop": 1.0, "max_intent_drop": 1.0})
    registry = Registry(bot_dir / "models")
    registry.record({"event": "promoted", "version": "v0002", "previous": "v0001"})  # v0002 since deleted
    registry.record({"event": "rollback", "version": "v0001", "previous": "v0002"})
    store = Store(bot_dir / "dialogues.db")
    store.add_labels(log_turns(store, ["I want my money back"]), "get_refund", "ann")
    store.close()

    killed_before_promotion(bot_dir, monkeypatch)
    assert [v.name for v in registry.versions()] == ["v0001", "v0003"]

    result = retrain(load_project(bot_dir), device="cpu", progress=False)
    assert (result.version, result.promoted, registry.current()) == ("v0004", True, "v0004")
    assert result.decision["data"]["new_labels"] == 1

def _start_retrain(bot_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "retrain", str(bot_dir), "--force"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc: subprocess.Popen[str], models: Path) -> None:
    """Until the run has said it is training and its staging folder holds files."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("Training a candidate"):
            break
    else:
        pytest.fail(f"retrain ended before training (exit {proc.wait()})")
    deadline = time.monotonic() + 60
    while not list(models.glob(".staging-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well into fine-tuning: the recipe below runs for minutes
    assert proc.poll() is None, "retrain finished before it could be killed"


@pytest.mark.slow
def test_a_killed_retrain_leaves_the_serving_model_untouched(bot_dir: Path) -> None:
    configure(bot_dir, model={"epochs": 100_000})
    models = bot_dir / "models"
    registry = Registry(models)
    current = (models / "CURRENT").read_bytes()

    proc = _start_retrain(bot_dir)  # SIGTERM: the run unwinds and removes its own staging folder
    _wait_for_training(proc, models)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert proc.stderr is not None and "Stopped by SIGTERM: v0001 serves as before, and the candidate it was " \
                                       "training is removed." in proc.stderr.read()
    assert (models / "CURRENT").read_bytes() == current and [v.name for v in registry.versions()] == ["v0001"]
    assert not list(models.glob(".staging-*"))

    proc = _start_retrain(bot_dir)  # SIGKILL: nothing runs, the staging folder stays until the next run
    _wait_for_training(proc, models)
    proc.kill()
    proc.wait(timeout=60)
    assert (models / "CURRENT").read_bytes() == current and [v.name for v in registry.versions()] == ["v0001"]
    assert list(models.glob(".staging-*"))
    with registry.lock():  # what the next `bot train` or `bot retrain` takes first
        assert not list(models.glob(".staging-*"))
    assert registry.current() == "v0001"


async def test_hot_swap_under_concurrent_requests_fails_none(bot_dir: Path, aiohttp_client: Any,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    configure(bot_dir, server={"limits": {"per_ip_per_minute": 0, "per_conversation_per_minute": 0,
                                          "conversations_per_ip": 0,
                                          "messages_per_ip_per_minute": 0}})  # load from one IP
    train_project(load_project(bot_dir), device="cpu", progress=False, promote=False)  # v0002, not serving yet
    registry = Registry(bot_dir / "models")
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    auth = {"Authorization": "Bearer small-admin-token"}
    statuses: list[int] = []
    swapped = asyncio.Event()

    async def customer(n: int) -> None:
        """Talks until the swap is seen, and five turns beyond it."""
        after, i = 0, 0
        while after < 5:
            resp = await client.post("/api/chat", json={"conversation_id": f"load-{n}", "text": f"where is my order {i}"})
            body = await resp.json()
            statuses.append(resp.status)
            assert resp.status == 200 and body["turn_id"] is not None, body
            after += swapped.is_set()
            i += 1

    async def swap() -> None:
        await asyncio.sleep(0.3)
        registry.promote("v0002")  # the watcher (every 0.2 s here) swaps while the customers talk
        while (await (await client.get("/healthz")).json())["model_version"] != "v0002":
            await asyncio.sleep(0.05)
        swapped.set()

    await asyncio.wait_for(asyncio.gather(swap(), *(customer(n) for n in range(8))), timeout=120)

    assert len(statuses) >= 8 * 6 and set(statuses) == {200}
    assert (await (await client.get("/healthz")).json())["model_version"] == "v0002"
    reader = Store(bot_dir / "dialogues.db")
    served = {r[0] for r in reader.db.execute("SELECT DISTINCT model_version FROM predictions")}
    reader.close()
    assert served == {"v0001", "v0002"}  # both models answered part of the traffic

    # A version that cannot load is refused by the watcher and by /admin/reload; the old one keeps serving.
    broken = bot_dir / "models" / "v0003"
    shutil.copytree(bot_dir / "models" / "v0002", broken)
    (broken / "classifier" / "head.safetensors").write_bytes(b"not a tensor file")
    registry.promote("v0003")
    await asyncio.sleep(0.6)
    resp = await client.post("/admin/reload", headers=auth)
    assert resp.status == 409 and (await resp.json())["model_version"] == "v0002"
    resp = await client.post("/api/chat", json={"conversation_id": "after", "text": "cancel my order"})
    assert resp.status == 200

    registry.promote("v0001")  # a rollback, picked up by /admin/reload at once
    resp = await client.post("/admin/reload", headers=auth)
    assert resp.status == 200 and (await resp.json())["model_version"] == "v0001"

    # A swap reads the bot's files again, so a version trained on changed intents comes with their templates.
    responses = yaml.safe_load((bot_dir / "responses.yml").read_text())
    responses["responses"]["cancel_order"] = [{"text": "Our new team handles cancellations."}]
    (bot_dir / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    registry.promote("v0002")
    assert (await client.post("/admin/reload", headers=auth)).status == 200
    reply = await (await client.post("/api/chat", json={"conversation_id": "new", "text": "/cancel_order"})).json()
    assert reply["reply"] == "Our new team handles cancellations."
    (bot_dir / "responses.yml").write_text("responses: [")  # a file that no longer loads refuses the swap
    registry.promote("v0001")
    resp = await client.post("/admin/reload", headers=auth)
    assert resp.status == 409 and "responses.yml" in (await resp.json())["error"]
    reply = await (await client.post("/api/chat", json={"conversation_id": "new", "text": "/cancel_order"})).json()
    assert reply["reply"] == "Our new team handles cancellations."  # the last good files and model still serve
    assert (await (await client.get("/healthz")).json())["model_version"] == "v0002"
    await asyncio.sleep(0.6)  # the watcher refuses v0001 too, while the file is broken
    (bot_dir / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))  # mended
    for _ in range(50):  # and swaps once it is, without another change of CURRENT
        if (await (await client.get("/healthz")).json())["model_version"] == "v0001":
            break
        await asyncio.sleep(0.1)
    assert (await (await client.get("/healthz")).json())["model_version"] == "v0001"

    # A CURRENT that cannot be read (a folder by that name) is said once, not every round, and named;
    # once it is mended, the watcher swaps as before.
    current = bot_dir / "models" / "CURRENT"
    caplog.set_level(logging.ERROR, logger="deskbot")
    current.unlink()
    current.mkdir()
    await asyncio.sleep(1.0)  # five rounds of the watcher
    said = [r.getMessage() for r in caplog.records if "CURRENT" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("still serving v0001: ") and "is a folder" in said[0], said
    current.rmdir()
    registry.promote("v0002")
    for _ in range(50):
        if (await (await client.get("/healthz")).json())["model_version"] == "v0002":
            break
        await asyncio.sleep(0.1)
    assert (await (await client.get("/healthz")).json())["model_version"] == "v0002"


def test_bench_learning_reports_rounds_within_the_label_budget(tiny_model: Path, tmp_path: Path) -> None:
    demo = yaml.safe_load((REPO / "bot" / "demo" / "nlu.yml").read_text())
    train, test = [], []
    for item in demo["nlu"]:
        if item.get("intent") in ("cancel_order", "get_refund", "track_order", "delete_account"):
            lines = [line.removeprefix("- ").strip() for line in item["examples"].splitlines() if line.strip()]
            train += [{"text": t, "intent": item["intent"]} for t in lines[:20]]
            test += [{"text": t, "intent": f"{item['intent']} "} for t in lines[20:30]]  # as the bot names it, once trimmed
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = CliRunner().invoke(cli, ["bench", "learning", "--train", str(tmp_path / "train.jsonl"), "--test",
                                      str(tmp_path / "test.jsonl"), "--model", str(tiny_model), "--seed-shots", "5",
                                      "--label-budget", "0.3", "--rounds", "2", "--device", "cpu", "--json"])

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rounds = figures["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and rounds[0]["labels_used"] <= rounds[1]["labels_used"]
    assert all(0 <= r["labelled_fraction"] <= 0.3 and 0 <= r["accuracy"] <= 1 for r in rounds)
    assert all(0 <= r["broken_answers"] <= 40 and (r["worst_intent_drop"] > 0) <= (r["broken_answers"] > 0)
               and r["promoted"] == (not r["reasons"]) for r in rounds)
    assert figures["labelled_fraction"] == round(rounds[1]["labels_used"] / (80 - 20), 4) <= 0.3
    assert figures["final_ratio"] == pytest.approx(rounds[1]["accuracy"] / figures["full_data_accuracy"], abs=1e-4)
    assert figures["full_data_accuracy"] > 0.5  # every test line counted wrong when its intent had a stray space
    assert (figures["train"], figures["test"], figures["seed_shots"]) == (80, 40, 5)
    assert figures["torch_threads"] == torch.get_num_threads()  # the run's conditions, for a rerun to match


def test_rows_logged_after_a_purge_are_new_though_they_reuse_its_ids(tmp_path: Path) -> None:
    """Purging the latest conversation frees its ids, and SQLite hands them to the next rows: those rows
    are still news to bot retrain, which once answered "Nothing new" and never learnt them."""
    store = Store(tmp_path / "dialogues.db")
    for conversation in ("kept", "purged"):
        store.add_labels(log_turns(store, [f"where is my {conversation} parcel"], conversation), "track_order", "ann")
        store.add_agent_answer(conversation, f"The {conversation} parcel is with the courier.")
    learnt = {"learned_through": bot.retrain._through(learned_data(store))}
    store.purge("purged")
    store.add_labels(log_turns(store, ["cancel it please"], "later"), "cancel_order", "ann")
    store.add_agent_answer("later", "Cancelled.")
    data = learned_data(store)
    store.close()

    assert [r["label_id"] for r in data.examples] == [1, 2] and [r["id"] for r in data.answers] == [1, 2]  # reused
    assert bot.retrain._new_since(data, learnt) == {"labels": 1, "answers": 1, "labels_gone": 1,  # the purged one
                                                    "labels_corrected": 0}
    assert bot.retrain._new_since(data, {"learned_through": bot.retrain._through(data)}) == {
        "labels": 0, "answers": 0, "labels_gone": 0, "labels_corrected": 0}


def test_a_label_given_since_to_a_learnt_message_replaces_it_and_a_purged_or_unlearnable_one_is_gone(
        tmp_path: Path) -> None:
    """What a warm start may go on from: a correction (twice over too) or the same intent given again replaces the
    label the last retrain learnt; a purged label, or one corrected to an intent no retrain learns, is gone."""
    intents = {"track_order", "cancel_order"}
    store = Store(tmp_path / "dialogues.db")
    turns = {name: log_turns(store, [f"message {name}"], name)[0] for name in ("fixed", "twice", "again", "oos", "gone")}
    for turn in turns.values():
        store.add_labels([turn], "track_order", "ann")

    def new_since(meta: dict[str, Any]) -> dict[str, int]:
        data = learnable(learned_data(store), intents, set(), {})
        through = meta["learned_through"]
        replaced = store.replaced_labels(through["label"], through["label_at"])
        return bot.retrain._new_since(data, meta, bot.retrain.LabelHistory(
            store.moved_labels(), {label: was for label, was in replaced.items() if was in intents}))

    learnt = {"learned_through": bot.retrain._through(learnable(learned_data(store), intents, set(), {}))}
    for name, intent in (("fixed", "cancel_order"), ("twice", "cancel_order"), ("twice", "track_order"),
                         ("twice", "cancel_order"), ("again", "track_order")):
        store.add_labels([turns[name]], intent, "bob")
    assert new_since(learnt) == {"labels": 3, "answers": 0, "labels_gone": 0, "labels_corrected": 2}
    store.add_labels([turns["oos"]], "oos", "bob")  # no oos intent: nothing teaches the correction
    assert new_since(learnt)["labels_gone"] == 1
    store.purge("gone")
    assert new_since(learnt) == {"labels": 3, "answers": 0, "labels_gone": 2, "labels_corrected": 2}
    store.close()


def test_an_index_refresh_drops_the_answers_of_purged_conversations(bot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bot purge deletes a conversation's agent answers; a refresh must not carry them into a new version."""
    from bot.nlu import NLU

    registry = Registry(bot_dir / "models")

    def rows(*ids: int) -> LearnedData:
        return LearnedData([], [{"id": n, "answer": f"Agent answer {n}.", "question": f"question {n}?",
                                 "created": float(n),
                                 "intent": None} for n in ids])

    project = load_project(bot_dir)
    first = bot.retrain.refresh_index(registry, registry.current(), agent_answers(rows(1, 2)), project,
                                      bot.retrain._through(rows(1, 2)))
    second = bot.retrain.refresh_index(registry, first, agent_answers(rows(2, 3)), project,
                                       bot.retrain._through(rows(2, 3)))  # 1 was purged
    agents = sorted(i for i in NLU.load(registry.path(second)).index.ids if i.startswith("agent:"))
    assert agents == ["agent:2", "agent:3"] and registry.current() == second
    # Rolled back to, a version indexing answers the store has lost (here: all of them) serves without them,
    # and never as it is, not even for the moment a running server would notice.
    promoted: list[str] = []
    promote = Registry.promote
    monkeypatch.setattr(Registry, "promote", lambda self, name: (promoted.append(name), promote(self, name))[1])
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), first])
    assert result.exit_code == 0, result.output
    third = registry.current()
    assert promoted == [third] and third not in (first, second)
    assert f"{first}'s index is refreshed as `bot retrain` refreshes one" in result.output
    assert f"{third} serves {first}'s classifier with it, {first} never." in result.output
    assert f"Now serving {third} (was {second})" in result.output
    assert not [i for i in NLU.load(registry.path(third)).index.ids if i.startswith("agent:")]


def test_training_keeps_held_out_examples_out_of_the_intent_names(small_bot: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The frozen evaluation set is handed to training, which adds no intent name that is one of its texts."""
    import bot.training
    from bot.project import Example

    seen: dict[str, Any] = {}

    def record(*_args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise RuntimeError("recorded")

    monkeypatch.setattr(bot.training, "train_classifier", record)
    with pytest.raises(RuntimeError, match="recorded"):
        bot.training.fit(load_project(small_bot), [Example("where is my parcel", "track_order")],
                         [Example("track order", "track_order")], progress=False)
    assert seen["held_out"] == ["track order"]


def test_an_answer_corrected_in_history_jsonl_is_given_after_a_retrain_without_training(
        bot_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The answer was indexed at training only: corrected in history.jsonl it was still given, `bot retrain`
    found "nothing new", and nothing said so."""
    from bot.server import load_serving_model
    from retrieval.index import saved_answers

    (bot_dir / "history.jsonl").write_text(json.dumps({"question": "do you deliver abroad?",
                                                        "answer": "Yes, to most countries."}) + "\n")
    assert retrain(load_project(bot_dir), device="cpu", progress=False).decision["index_refresh"] == "v0002"
    (bot_dir / "history.jsonl").write_text(json.dumps({"question": "do you deliver abroad?",
                                                        "answer": "No, we deliver in the UK only."}) + "\n")
    load_serving_model(load_project(bot_dir), "cpu")
    assert "history.jsonl or history.csv changed since v0002 was indexed" in caplog.text
    said: list[str] = []
    result = retrain(load_project(bot_dir), device="cpu", progress=False, say=said.append)
    registry = Registry(bot_dir / "models")
    assert result.decision["index_refresh"] == registry.current() == "v0003"
    # One story: the answers are re-indexed, and nothing was there for the classifier to learn
    assert said[0].startswith("history.jsonl or history.csv changed since v0002 was indexed: v0003 serves")
    assert said[1] == ("No candidate trained: no new labels or agent answers since v0002, and nlu.yml, "
                       "model.base and the training settings are unchanged.")
    assert json.loads((registry.path("v0003") / "meta.json").read_text())["mode"] == "index_refresh"  # not trained
    answers = [a.text for a in saved_answers(registry.path("v0003") / "index") if a.source == "history"]
    assert answers == ["No, we deliver in the UK only."]
    caplog.clear()
    load_serving_model(load_project(bot_dir), "cpu")
    assert "changed since" not in caplog.text


def test_a_version_recorded_with_its_base_models_folder_has_the_same_base(tmp_path: Path) -> None:
    """Versions from before recorded model.base as the folder it named: the first retrain after the change
    took it for another base model and trained from scratch."""
    from bot.retrain import same_base
    from tests.conftest import DEMO, copy_bot

    root = copy_bot(DEMO, tmp_path / "bot", base_model="tinymodel")
    (root / "tinymodel").mkdir()
    project = load_project(root)
    assert same_base("tinymodel", project) and same_base(str((root / "tinymodel").resolve()), project)
    assert not same_base("multilingual", project) and not same_base(None, project)


def test_bot_rollback_beside_an_older_deskbots_store_reads_it_as_it_is(bot_dir: Path) -> None:
    """Deskbot upgraded while the older `bot serve` still ran on the store: `bot rollback`, which touches the model
    registry alone, refused to roll back in the incident, as its read of the agent answers purged since refused the
    store not yet migrated."""
    retrained_with_an_agent_answer(bot_dir)
    (bot_dir / "dialogues.db").unlink()
    store_of_the_last_deskbot(bot_dir / "dialogues.db")  # the conversation purged, as the older deskbot keeps it
    from bot.nlu import NLU

    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"])
    assert result.exit_code == 0, result.output
    assert "Now serving v0001 (was v0002)" in result.output
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"])
    assert result.exit_code == 0, result.output
    assert "Now serving v0003 (was v0001)" in result.output  # the purged answer left out, read as it is
    assert not [i for i in NLU.load(bot_dir / "models" / "v0003").index.ids if i.startswith("agent:")]
    assert sqlite3.connect(bot_dir / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    assert not list(bot_dir.glob("*.bak"))  # nothing migrated, nothing copied


def test_bot_rollback_beside_a_store_too_old_to_read_keeps_the_versions_answers_and_says_so(bot_dir: Path) -> None:
    """A store so old it lacks what the agent answers are read from is not read: the rollback is made all the same,
    the version's index keeping the answers it holds, and the engineer told what was not done and how to do it."""
    retrained_with_an_agent_answer(bot_dir)
    with sqlite3.connect(bot_dir / "dialogues.db") as older:
        older.execute("DROP TABLE review_labels")  # as a deskbot from before review labels left it
        older.execute("PRAGMA user_version=1")

    assert "Now serving v0001" in CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).output
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"])
    assert result.exit_code == 0, result.output
    assert "Now serving v0002 (was v0001)" in result.output
    assert (f"{bot_dir / 'dialogues.db'} is at migration 1, an older deskbot's, too old to read the agent answers "
            "from: v0002's index keeps those it holds, a purged conversation's too; once `bot serve` of this deskbot "
            f"has migrated the store, `bot rollback {bot_dir} v0002` takes those out") in result.stderr


@pytest.mark.parametrize("kept", [True, False])
def test_bot_rollback_beside_a_newer_deskbots_store_keeps_the_versions_answers_and_says_what_to_run(
        bot_dir: Path, kept: bool) -> None:
    """Gone back to this deskbot in an incident, the store already migrated by a newer one: `bot rollback`, which
    touches the model registry alone, refused to roll back, as the store it reads the agent answers from was refused.
    Then it rolled back, but passed on the store's refusal, "upgrade deskbot", which is no way on from a rollback:
    the engineer is told what to run to serve the version, with the newer deskbot or with this one."""
    from bot.nlu import NLU

    retrained_with_an_agent_answer(bot_dir)
    store = bot_dir / "dialogues.db"
    bak = bot_dir / f"dialogues.db.schema{len(MIGRATIONS)}.bak"
    if kept:  # as the newer deskbot kept the store before migrating it
        with sqlite3.connect(store) as conn, sqlite3.connect(bak) as copy:
            conn.backup(copy)
    with sqlite3.connect(store) as newer:
        newer.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")

    assert "Now serving v0001" in CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"]).output
    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0002"])

    assert result.exit_code == 0, result.output
    assert "Now serving v0002 (was v0001)" in result.output
    assert "upgrade deskbot" not in result.stderr
    said = (f"warning: {store} was written by a newer deskbot (schema {len(MIGRATIONS) + 1}), whose agent answers this "
            "deskbot cannot read, so v0002's index keeps those it holds, a purged conversation's too; rolled back all "
            f"the same. To serve it with the newer deskbot, run `bot rollback {bot_dir} v0002` with that deskbot too, "
            "which takes those out; this deskbot's `bot serve` refuses that store")
    if kept:
        said += (f": to serve this deskbot, run `bot restore {bot_dir} {bak}`, which puts back the store as it was "
                 f"before the upgrade (without the conversations since), then `bot rollback {bot_dir} v0002` again")
    else:
        said += (", and no copy of it from before the upgrade is left beside it: to serve this deskbot, put back a "
                 f"`bot backup` copy taken before the upgrade with `bot restore`, then run `bot rollback {bot_dir} "
                 "v0002` again")
    assert said in " ".join(result.stderr.split()), result.stderr
    assert [i for i in NLU.load(bot_dir / "models" / "v0002").index.ids if i.startswith("agent:")]
    if kept:  # the command named puts back a store this deskbot serves
        restored = CliRunner().invoke(cli, ["restore", str(bot_dir), str(bak)])
        assert restored.exit_code == 0, restored.output
        assert sqlite3.connect(store).execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)


def damage_table(path: Path, table: str) -> None:
    """Overwrite the first page of ``table`` in the store at ``path``, as a failing disk would: the store opens, and
    a read of that table fails."""
    with sqlite3.connect(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * size)
        file.write(b"\xde\xad\xbe\xef" * (size // 4))


@pytest.mark.parametrize("spoilt", ["schema", "table"])
def test_bot_rollback_beside_a_damaged_store_keeps_the_versions_answers_and_says_what_to_do(
        bot_dir: Path, spoilt: str) -> None:
    """A damaged store stopped `bot rollback` with SQLite's error: the rollback, the way out of an incident, needs
    nothing of the store; the engineer is told it is damaged and how to put a good copy back. Its schema's pages
    spoilt, the store is refused as it opens; a table's, as the agent answers are read."""
    retrained_with_an_agent_answer(bot_dir)
    if spoilt == "schema":
        damage(bot_dir / "dialogues.db", 1)
    else:
        damage_table(bot_dir / "dialogues.db", "review_labels")

    result = CliRunner().invoke(cli, ["rollback", str(bot_dir), "v0001"])

    assert result.exit_code == 0, result.output
    assert "Now serving v0001 (was v0002)" in result.output
    assert ("warning: the agent answers cannot be read from the store, so v0001's index keeps those it holds, a purged "
            f"conversation's too; rolled back all the same. {bot_dir / 'dialogues.db'} is damaged (") in result.stderr
    assert "put the latest good `bot backup` copy back with `bot restore`" in result.stderr


def test_bot_retrain_beside_an_older_deskbots_store_says_in_one_line_what_to_run(bot_dir: Path) -> None:
    """Deskbot upgraded, the older `bot serve` still running on the store: `bot retrain`, which learns from the store,
    refused it with "start `bot serve` of this deskbot on it first", naming neither the bot nor that the older server
    must stop, nor what to run after. It says to stop the older server only while one runs on the store."""
    from filelock import FileLock

    (bot_dir / "dialogues.db").unlink(missing_ok=True)
    store_of_the_last_deskbot(bot_dir / "dialogues.db")
    (servers := bot_dir / ".dialogues.db.servers").mkdir()
    server = FileLock(servers / f"{'b' * 32}.lock", thread_local=False)
    for stop in ("", "stop its `bot serve` and "):
        refused = CliRunner().invoke(cli, ["retrain", str(bot_dir)])
        assert refused.exit_code == 1
        assert refused.output == (f"Error: {bot_dir / 'dialogues.db'} is at migration {len(MIGRATIONS) - 1}, an older "
                                  f"deskbot's, which `bot retrain` learns from: {stop}start this deskbot's, `bot serve "
                                  f"{bot_dir}`, which migrates it (keeping a copy as it was), then run `bot retrain "
                                  f"{bot_dir}`\n")
        server.acquire()  # as the older server holds its own while it runs
    server.release()
    assert Registry(bot_dir / "models").current() == "v0001"
    assert sqlite3.connect(bot_dir / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
