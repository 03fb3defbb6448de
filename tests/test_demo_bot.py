"""The walking skeleton with real parts: the demo bot fine-tuned from the packaged multilingual-e5-small,
served over HTTP, in English and in Chinese.

This is the user's first experience (`make demo`), so it runs the real model, real FAISS index and
real SQLite store, and checks the answers a customer would see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.server import create_app
from tests.conftest import DEMO, ask

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(aiohttp_client: Any, real_demo_bot: Path) -> Any:
    return await aiohttp_client(create_app(real_demo_bot, device="cpu"))


async def test_refund_request_gets_the_refund_template_with_the_order(client: Any) -> None:
    reply = await ask(client, "demo-1", "I want my money back for order 123")
    assert (reply["intent"], reply["source"]) == ("get_refund", "template")
    assert "order 123" in reply["reply"]
    assert [b["payload"] for b in reply["buttons"]] == ["/track_refund"]


@pytest.mark.parametrize(("text", "intent"), [
    ("how do I cancel my order?", "cancel_order"),
    ("I forgot my password", "recover_password"),
    ("I need to speak with a real person", "contact_human_agent"),
])
async def test_common_questions_find_their_intent(client: Any, text: str, intent: str) -> None:
    assert (await ask(client, f"demo-{intent}", text))["intent"] == intent


async def test_order_status_runs_the_custom_action(client: Any) -> None:
    reply = await ask(client, "demo-2", "what is the status of order 789?")
    assert reply["source"] == "action"
    assert reply["reply"].startswith("Order 789 is **delivered**")


async def test_a_chinese_customer_is_answered_in_chinese(client: Any) -> None:
    reply = await ask(client, "demo-zh-1", "我要退款，订单号123")
    assert (reply["intent"], reply["source"]) == ("get_refund", "template")
    assert "订单 123" in reply["reply"] and [b["title"] for b in reply["buttons"]] == ["查看退款进度"]
    # A button's payload is in no language: the conversation stays in Chinese.
    reply = await ask(client, "demo-zh-1", "/track_refund")
    assert reply["source"] == "template" and "退款" in reply["reply"]
    # And the custom action reads the conversation's language from its slot.
    reply = await ask(client, "demo-zh-2", "帮我查一下订单 789 到哪了")
    assert reply["source"] == "action" and reply["reply"].startswith("订单 789 的状态：**已送达**")


async def test_the_same_conversation_follows_the_customers_language(client: Any) -> None:
    chinese = await ask(client, "demo-both", "忘记密码了怎么办")
    english = await ask(client, "demo-both", "I forgot my password")
    assert chinese["intent"] == english["intent"] == "recover_password"
    assert "密码" in chinese["reply"] and "password" in english["reply"]


@pytest.mark.parametrize(("text", "marker"), [("what's the weather like in Paris today?", "only help with"),
                                            ("今天北京天气怎么样", "只能帮您")])
async def test_an_off_topic_question_gets_the_oos_answer_in_its_language(client: Any, text: str, marker: str) -> None:
    reply = await ask(client, f"demo-oos-{len(text)}", text)
    assert (reply["intent"], reply["source"]) == ("oos", "template") and marker in reply["reply"]


def test_eval_on_the_demo_test_set(real_demo_bot: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(real_demo_bot), "--test", str(DEMO / "test.jsonl"),
                                      "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["n"], figures["n_oos"]) == (336, 12)  # 162 Bitext questions, 162 Chinese ones, 12 off-topic in both
    assert figures["accuracy"] >= 0.85 and figures["macro_f1"] >= 0.85
    assert {p.name for p in tmp_path.iterdir()} >= {"intent_report.json", "intent_confusion_matrix.png",
                                                    "intent_histogram.png"}
