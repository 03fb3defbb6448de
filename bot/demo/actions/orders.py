"""A demo custom action: look an order up in a small SQLite table.

It is a standard rasa-sdk action, so it runs unchanged in deskbot (in-process) and in a Rasa
action server (`python -m rasa_sdk --actions actions`).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

ORDERS = [
    ("123", "shipped", "UPS 1Z999AA10123456784", "Tuesday"),
    ("456", "processing", None, "Friday"),
    ("789", "delivered", "DHL 3345678901", None),
]

# Chinese digits, as customers read an order number out one by one (七八九, 幺二三), with the ASCII digit of each.
CHINESE_DIGITS = "〇零一二三四五六七八九幺两兩"
AS_DIGITS = str.maketrans(CHINESE_DIGITS, "00123456789122")


def as_looked_up(order_id: str) -> str:
    """An order number as the order table writes it: in ASCII digits, and without the dashes or spaces between the
    groups a customer writes it in (123-456, 123–456, 1234 5678), so that it is one number, not its first group."""
    return re.sub(r"\D", "", order_id.translate(AS_DIGITS))


def orders_db() -> sqlite3.Connection:
    """The demo's order table, created next to this file on first use."""
    conn = sqlite3.connect(Path(__file__).with_name("orders.sqlite"))
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, status TEXT, tracking TEXT, eta TEXT)")
    conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)", ORDERS)
    conn.commit()
    return conn


# What the action says, in the conversation's language (deskbot keeps a bilingual bot's in the slot "language").
MESSAGES = {
    "en": {"ask_number": "Sure — what's your order number?",
           "ask_again": "I need the order number to look the order up: it's in your order confirmation email and under "
                        "**Orders** in your account. Or a person can help.",
           "person": "Talk to a person",
           "not_found": "I couldn't find order {order_id}. Could you check the number?",
           "status": "Order {order_id} is **{status}**.", "tracking": " Tracking: {tracking}.",
           "eta": " Expected delivery: {eta}.", "words": {}},
    "zh": {"ask_number": "好的，请问您的订单号是多少？",
           "ask_again": "查询订单需要订单号：您可以在订单确认邮件里，或者账户的 **订单** 中找到它。也可以转人工客服。",
           "person": "转人工客服",
           "not_found": "没有找到订单 {order_id}，麻烦核对一下订单号？",
           "status": "订单 {order_id} 的状态：**{status}**。", "tracking": "物流单号：{tracking}。",
           "eta": "预计送达：{eta}。",
           "words": {"shipped": "已发货", "processing": "处理中", "delivered": "已送达", "Tuesday": "周二", "Friday": "周五"}},
}


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        say = MESSAGES.get(tracker.get_slot("language"), MESSAGES["en"])
        order_id = tracker.get_slot("order_id")
        if isinstance(order_id, str):  # deskbot gives 七八九 as 789; Rasa's regex extractor gives it as written
            order_id = as_looked_up(order_id)
        said, read = tracker.latest_message.get("text") or "", tracker.latest_message.get("entities") or []
        if order_id and not read and order_id not in said and re.search(rf"[\d{CHINESE_DIGITS}]{{3,}}", said):
            order_id = None  # a number the order pattern did not read: never answer with an earlier order's status
        if not order_id and tracker.get_slot("requested_slot") == "order_id":
            # Asked already: the same question again would loop ("I don't know it" got it once more), so where the
            # number is, and a person.
            dispatcher.utter_message(text=say["ask_again"], buttons=[{"title": say["person"], "payload": "/handoff"}])
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        if not order_id:  # asks, and requested_slot sends the customer's answer back here
            dispatcher.utter_message(text=say["ask_number"])
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        # Each order a message names ("where are my orders 123 and 456?"): the first alone left the other unanswered.
        named = list(dict.fromkeys(as_looked_up(entity["value"]) for entity in read
                                   if entity.get("entity") == "order_id" and isinstance(entity.get("value"), str)))
        with orders_db() as conn:
            rows = {number: conn.execute("SELECT status, tracking, eta FROM orders WHERE id = ?", [number]).fetchone()
                    for number in (named if len(named) > 1 else [order_id])}
        dispatcher.utter_message(text="\n".join(say["not_found"].format(order_id=number) if row is None
                                                else status_text(say, number, row) for number, row in rows.items()))
        if None in rows.values():  # the number put right goes back here
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        return [SlotSet("order_status", list(rows.values())[-1][0]), SlotSet("requested_slot", None)]


def status_text(say: dict[str, Any], order_id: str, row: tuple[str, str | None, str | None]) -> str:
    """What the action says of an order found in the table: its status, tracking number and expected delivery."""
    status, tracking, eta = row
    words = say["words"]
    text = say["status"].format(order_id=order_id, status=words.get(status, status))
    if tracking:
        text += say["tracking"].format(tracking=tracking)
    if eta:
        text += say["eta"].format(eta=words.get(eta, eta))
    return text
