"""A Chinese bot end to end: `language: zh` fine-tunes the multilingual encoder and answers in Chinese.

The bot in tests/data/zh-shop is small and hand-written; it is trained for a few steps from the
real multilingual-e5-small folder built from the offline packages, then served over HTTP.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.project import load_project
from bot.server import load_serving_model
from bot.training import train_project
from tests.conftest import REPO, ask, copy_bot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zh_bot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("DESKBOT_CACHE")
    os.environ["DESKBOT_CACHE"] = str(cache)  # `multilingual` is built here, from the offline packages
    try:
        root = copy_bot(REPO / "tests" / "data" / "zh-shop", tmp_path_factory.mktemp("bots") / "zh")
        project = load_project(root)
        assert project.config.base_model == "multilingual"
        train_project(project, device="cpu", progress=False)
        yield root
    finally:
        if previous is None:
            os.environ.pop("DESKBOT_CACHE", None)
        else:
            os.environ["DESKBOT_CACHE"] = previous


@pytest.fixture(scope="module")
def served_bot(zh_bot: Path) -> Path:
    """The bot each test's ``client`` serves."""
    return zh_bot



async def test_chinese_refund_with_order_number_gets_its_template(client: Any) -> None:
    reply = await ask(client, "zh-1", "你好，订单 20231 我想退款")
    assert (reply["intent"], reply["source"]) == ("get_refund", "template")
    assert reply["reply"] == "已为订单 20231 登记退款，收到退货后 5–7 个工作日内原路退回。"


async def test_chinese_needs_no_word_segmentation(client: Any) -> None:
    assert (await ask(client, "zh-2", "我的快递现在到哪里了"))["intent"] == "track_order"
    reply = await ask(client, "zh-3", "请给我转人工客服")
    assert (reply["intent"], reply["source"], reply["reply"]) == (
        "contact_human_agent", "handoff", "正在为您转接人工客服，请稍候。")


async def test_a_customer_writing_traditional_characters_is_answered_in_them(client: Any, zh_bot: Path) -> None:
    """Hong Kong and Taiwan customers were understood in Traditional characters and answered in Simplified."""
    reply = await ask(client, "zh-5", "你好，訂單 20231 我想退款")
    assert (reply["intent"], reply["reply"]) == ("get_refund", "已為訂單 20231 登記退款，收到退貨後 5–7 個工作日內原路退回。")
    history = await (await client.get("/api/conversations/zh-5/history")).json()
    assert history["turns"][-1]["text"] == reply["reply"]  # the transcript shows what the customer read
    # A message in no script of its own (the same characters in both, a number) keeps the conversation's;
    # one in Simplified characters is answered in them.
    again = await ask(client, "zh-5", "请给我转人工客服")
    assert again["reply"] == "正在为您转接人工客服，请稍候。"
    assert (await ask(client, "zh-6", "請給我轉人工客服"))["reply"] == "正在為您轉接人工客服，請稍候。"
    assert (await ask(client, "zh-7", "你好，订单 20231 我想退款"))["reply"] == (
        "已为订单 20231 登记退款，收到退货后 5–7 个工作日内原路退回。")


async def test_a_traditional_page_starts_its_conversations_in_traditional_characters(client: Any) -> None:
    """A zh-TW page's first message in neither script (a button, an order number) was answered in Simplified."""
    async def from_page(conversation_id: str, text: str) -> str:
        body = {"conversation_id": conversation_id, "text": text, "language": "zh", "script": "traditional"}
        return (await (await client.post("/api/chat", json=body)).json())["reply"]

    assert await from_page("zh-8", "/contact_human_agent") == "正在為您轉接人工客服，請稍候。"
    assert await from_page("zh-9", "请给我转人工客服") == "正在为您转接人工客服，请稍候。"  # what the customer writes wins


async def test_an_english_question_reaches_the_chinese_intent(client: Any) -> None:
    assert (await ask(client, "zh-4", "Where is my package?"))["intent"] == "track_order"


def test_the_served_index_encodes_like_the_classifier(zh_bot: Path) -> None:
    """The served index embeds text as the classifier does (with e5's prefix), or what it encodes misses the
    classifier's queries."""
    nlu = load_serving_model(load_project(zh_bot), device="cpu", workers=1)
    long = "你好，我是你们店的老顾客了，一直以来对你们的服务都很满意，送货也很快，客服也很热情，" * 4 + "我的快递现在到哪里了"
    texts = ["我的快递现在到哪里了", "Where is my package?", long]  # the long one read from its start and its end
    queries = nlu.index.encoder.encode_queries(texts)
    _, embeddings = nlu.classifier.predict_with_embeddings(texts)
    assert nlu.classifier.prefix == "query: "
    assert np.sum(queries * embeddings, axis=1).min() > 0.999
