"""A demo custom action: look an order up in a small SQLite table.

It is a standard rasa-sdk action, so it runs unchanged in deskbot (in-process) and in a Rasa
action server (`python -m rasa_sdk --actions actions`).

Anyone can type an order number, their own or a guessed one, so a lookup by number alone says only what is harmless
to a stranger: the status, the carrier's tracking number and the expected day, never the customer's name, address,
email or items. An action of your own that shows or changes more (the address, a refund, a cancellation) should first
ask for something only the customer has, such as the email or phone number on the order, and compare it with the
order's before it answers, or leave it to the shop's signed-in pages or an agent, as the demo's templates do.
"""

from __future__ import annotations

import json
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
# A phone number (a mainland mobile, 138 1234 5678, after +86 too; (555) 123-4567; 07700 900123), which a customer gives
# as what couriers find a parcel by: never offered as the order's number.
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|(?<!\d)(?:(?:86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}"
                   r"|\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}|07\d{3}[\s-]?\d{6})(?!\d)")


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
           "still_none": "No problem: without the number I can't look the order up here, but a person can find it by "
                         "the email you ordered with. If you find the number later, send me \"order\" and the number.",
           "which": "Order {order_id} again, or another one? Choose it below, or type the other order's number.",
           "this_one": "Order {order_id}",
           "is_it": "Is {order_id} the order number? If so, choose it below; if not, type the order number.",
           "person": "Talk to a person",
           "not_found": "I couldn't find order {order_id}. Could you check the number?",
           "status": "Order {order_id} is **{status}**.", "tracking": " Tracking: {tracking}.",
           "eta": " Expected delivery: {eta}.", "words": {}},
    "zh": {"ask_number": "好的，请问您的订单号是多少？",
           "ask_again": "查询订单需要订单号：您可以在订单确认邮件里，或者账户的 **订单** 中找到它。也可以转人工客服。",
           "still_none": "没关系：没有订单号我这边查不到，但人工客服可以用您下单时的邮箱帮您查找。之后找到订单号的话，发“订单”加号码给我就行。",
           "which": "还是查订单 {order_id} 吗？是的话请点下面的按钮；查其他订单，请直接发订单号。",
           "this_one": "订单 {order_id}",
           "is_it": "{order_id} 是订单号吗？是的话请点下面的按钮；不是的话，请直接发订单号。",
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
        unread = None if read else re.search(rf"[\d{CHINESE_DIGITS}]{{3,}}", PHONE.sub(" ", said))
        if order_id and unread and order_id not in said:
            order_id = None  # a number the order pattern did not read: never answer with an earlier order's status
        asked = tracker.get_slot("requested_slot") == "order_id"
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "track_order"
        if not order_id and unread:
            # "where is 789 now": a number the order pattern did not read may be the order's, or a price or a phone
            # number, so it is offered as a button rather than asked for again, as though the customer had not given it.
            number = as_looked_up(unread[0])
            dispatcher.utter_message(text=say["is_it"].format(order_id=number),
                                     buttons=[order_button(say, intent, number)])
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        if order_id and not read and order_id not in said and tracker.get_slot("order_status") and not asked:
            # Asked again without a number ("查订单", "check my order") after an order was looked up: the customer may
            # mean another order, so the one remembered is offered, not assumed; a number typed instead is looked up.
            dispatcher.utter_message(text=say["which"].format(order_id=order_id),
                                     buttons=[order_button(say, intent, order_id)])
            return [SlotSet("requested_slot", "order_id")]
        person = [{"title": say["person"], "payload": "/handoff"}]
        if not order_id and asked:
            if offered_a_person(tracker):
                # "I don't know it" a second time: the same words once more would loop, so the wait ends, with a
                # person; a number typed later is still looked up.
                dispatcher.utter_message(text=say["still_none"], buttons=person)
                return [SlotSet("order_id", None), SlotSet("requested_slot", None)]
            # Asked already: the same question again would loop, so where the number is, and a person.
            dispatcher.utter_message(text=say["ask_again"], buttons=person)
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


def order_button(say: dict[str, Any], intent: str, order_id: str) -> dict[str, str]:
    """A button that looks ``order_id`` up, as the intent the customer asked with: "Order 123"."""
    return {"title": say["this_one"].format(order_id=order_id),
            "payload": f"/{intent}{json.dumps({'order_id': order_id})}"}


def offered_a_person(tracker: Tracker) -> bool:
    """Whether the bot's last message offered a person: the action's second ask for the number did, and a third would
    say the same words again."""
    said = tracker.get_last_event_for("bot") or {}
    return any(button.get("payload") == "/handoff" for button in (said.get("data") or {}).get("buttons") or [])


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
