"""A demo custom action: look an order up in a small SQLite table.

It is a standard rasa-sdk action, so it runs unchanged in deskbot (in-process) and in a Rasa
action server (`python -m rasa_sdk --actions actions`).

Anyone can type an order number, their own or a guessed one, so a lookup by number alone says only the order's status.
The carrier's tracking number and the expected day (which tell a stranger where and when a parcel waits) are shown once
the customer proves the order is theirs: the action asks for the email address, postcode or phone number on the order
(the phone number's last four digits do too), which ``validate_action_order_status`` reads from the answer
(``requested_slot`` is ``order_proof`` meanwhile), and compares it with the order's, as it does an email address or
phone number given with the order's number; a customer signed in to the web chat sees their own orders' at once. Three
wrong answers in a conversation, and it compares none there for a quarter of an hour, so that no one can guess, saying
when to try again and offering a person; ten of an order's in all, and for a quarter of an hour it compares no postcode
or last four digits of its phone number (which a stranger could guess from new conversations), only the email address
or whole phone number, which its customer has and no stranger guesses, so that failing on purpose locks no one out. It never shows the email, postcode or phone number it
compares, nor the customer's name, address or items. An action of your own that shows or changes more (the address, a
refund, a cancellation) should ask for such a proof the same way, or leave it to the shop's signed-in pages or an agent,
as the demo's templates do.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import unicodedata
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

# id, status, tracking number, expected day, the email, postcode and phone number that prove the order is theirs, and
# the shop's id of the customer who placed it, which the web chat's verified user (the slot verified_user) is, signed in
ORDERS = [
    ("123", "shipped", "UPS 1Z999AA10123456784", "Tuesday", "alex@example.com", "SW1A 1AA", "+44 20 7946 0958", "u-17"),
    ("456", "processing", None, "Friday", "li.wei@example.cn", "200031", "+86 138 0013 8000", None),
    ("789", "delivered", "DHL 3345678901", None, "sam@example.com", "94105", "+1 415 555 0132", None),
    ("52017", "shipped", "SF 1234567890123", "Thursday", "chen.jing@example.cn", "518000", "+86 139 2233 4455", None),
]
# The prefix the shop's e-mails print before an order number (DS52017): nlu.yml's order number patterns read the number
# after it, so the table keeps the digits alone, and a customer may type it or not. Letters before the digits that are
# not it are another shop's prefix (AB1023, TB-1023): such a number is no order of this shop's, and the action says so
# rather than look its digits up as one of ours.
ORDER_PREFIX = "DS"
PREFIXED = re.compile(r"(?<![A-Za-z0-9_])#?([A-Za-z]{1,4})[\u2010-\u2015\u2212-]?(\d{3,})(?![A-Za-z0-9])")
# the words that come before an order's number joined to it ("no123", "ord.123" reads without its dot), which are no prefix
ORDER_WORDS = ("no", "nr", "num", "id", "ord", "ords", "oder", "ordr", "po")
PROOF = "order_proof"  # the slot asked for: the email address, postcode or phone number the customer gives
MAX_PROOF_MISSES = 3  # wrong proofs in a conversation before the action stops comparing them for a while
# Wrong proofs of an order in all conversations (a new conversation starts with none of its own) before the chat
# compares no guessable proof of it for a while (a postcode, a phone number's last four digits: :func:`guessable`),
# as a shop's login slows down guesses at a PIN without closing the account: the email address or the whole phone
# number on the order, which no one guesses in ten tries, is still compared, so that a stranger who fails on purpose
# from new conversations cannot lock the order's customer out of its details; its customer may also sign in, or a
# person checks who they are. A right one starts the count afresh.
MAX_ORDER_PROOF_MISSES = 10
# How long the chat compares no proof after either: a while, not for good, so that whoever guesses at an order's
# proof slows down to ten guesses every quarter of an hour without locking its customer out of their order's details.
PROOF_LOCK_SECONDS = 15 * 60
# The demo's intents of a message that only thanks or acknowledges ("thanks", "ok", "谢谢", "好的"): to the question
# for the proof, the customer is done, and gets the template of the intent, not the offer of a person.
ACKNOWLEDGEMENTS = ("thank_you", "acknowledge")
# The words of such a message, which the action reads itself: on a Rasa action server it sees only the intent the
# classifier gave, which for a message this short may be another ("ok" read as track_order, and offered a person).
THANKS = (r"thank(?:s|\s*you|\s*u)?(?:\s*(?:so|very)\s*much|\s*a\s*lot|\s*again)?|thx|ty|cheers|谢谢|謝謝|多谢晒|多謝晒|多谢|多謝"
          r"|感谢|感謝|唔该晒|唔該晒|唔该|唔該")
OKS = (r"ok(?:ay|ey)?|kk?|fine|got\s*it|alright|all\s*right|cool|great|noted|understood|好(?:的|吧|嘅|滴)?|行|嗯+|明白了?"
       r"|知道了?|收到|没问题|沒問題|得")
ACKNOWLEDGING_WORD = re.compile(rf"(?i)(?:{THANKS}|{OKS})\s*")
THANKING = re.compile(rf"(?i){THANKS}")
# A proof in the customer's answer: an email address, a phone number, or a postcode (a UK one, SW1A 1AA; a US ZIP or a
# Chinese 邮编, five or six digits) in a message that names no order or parcel, where the digits are another order's
# number ("order 12345"), and which asks again about the order ("check my order") rather than saying "ok" or "I don't
# have it".
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")  # of 邮箱x@example.cn谢谢, x@example.cn
# The shop's own email domains (set them to your shop's): an address at one is whom the customer wrote to ("order 789,
# I emailed support@demoshop.com"), never the proof that an order is theirs, and so is an address after words that
# say they wrote to it ("I emailed help@courier.com", "发邮件给 help@courier.com").
SHOP_EMAIL_DOMAINS = ("demoshop.com",)
WROTE_TO = re.compile(r"(?i)(?:e-?mailed|mailed|wrote\s+to|sent\s+(?:\w+\s+){0,3}to|contacted|cc'?d|发邮件给|發郵件給|发给|發給"
                      r"|写信给|寫信給|联系了?|聯繫了?|联络了?|聯絡了?)\W*$")
# A phone number given as the proof, however it is grouped (+86 138-0013-8000, (415) 555 0132, 020 7946 0958), in a
# message that names no order; and the last four digits of one, alone ("0132.") or where the message says they are
# ("last 4: 0132", "尾号0132"), not any four ("I ordered it in 2026").
PROOF_PHONE = re.compile(r"(?<![A-Za-z0-9+])\+?\(?\d(?:[\s().-]*\d){6,14}(?![A-Za-z0-9])")
LAST_FOUR = re.compile(r"(?<![A-Za-z0-9-])\d{4}(?![A-Za-z0-9-])")
PHONE_WORDS = r"phone|mobile|cell|last\s*(?:four|4)|手机|手機|电话|電話|尾号|尾號"
NAMES_A_PHONE = re.compile(rf"(?i){PHONE_WORDS}")
POSTCODE = re.compile(r"(?<![A-Za-z0-9-])(?:[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}|\d{5,6})(?![A-Za-z0-9-])")
# a US ZIP code with the four digits after it (94105-1234), which proves the order as the ZIP code does: no phone number
ZIP_PLUS_FOUR = re.compile(r"(?<![A-Za-z0-9-])(\d{5})-\d{4}(?![A-Za-z0-9-])")
NAMES_AN_ORDER = re.compile(r"(?i)order|parcel|package|订单|訂單|单号|單號|快递|快遞|包裹")
# ...unless it names the proof it gives, as the question asks for it: "the postcode on the order is 94105", "订单上的邮编是
# 200031", "订单手机尾号0132"
NAMES_A_PROOF = re.compile(rf"(?i)post\s*code|zip|邮编|郵編|邮政编码|郵政編碼|{PHONE_WORDS}")

# A message that says the customer has not got the order's number ("where's my order? I forgot the number", 訂單號碼是多少
# 我忘記了): asking for it would ask what they have just said they lack, so where it is, and a person, are said at once.
LACKS = re.compile(r"(?i)forg[eo]t|don'?t\s+(?:have|know|remember)|do\s+not\s+(?:have|know|remember)|lost|can'?t\s+find"
                   r"|cannot\s+find|no\s+idea|忘|不记得|不記得|找不到|不知道|唔记得|唔記得|唔知")
NAMES_THE_NUMBER = re.compile(r"(?i)number|\bno\b|号|號")

# Chinese digits, as customers read an order number out one by one (七八九, 幺二三), with the ASCII digit of each.
CHINESE_DIGITS = "〇零一二三四五六七八九幺两兩"
AS_DIGITS = str.maketrans(CHINESE_DIGITS, "00123456789122")
# A phone number (a mainland mobile, 138 1234 5678, after +86 too; (555) 123-4567; 07700 900123), which a customer gives
# as what couriers find a parcel by: never offered as the order's number.
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|(?<!\d)(?:(?:86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}"
                   r"|\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}|07\d{3}[\s-]?\d{6})(?!\d)")


def as_looked_up(order_id: str) -> str:
    """An order number as the order table writes it: in ASCII digits (of full-width ones, ５２０１７, too, which Rasa's
    regex extractor gives as typed), and without the dashes or spaces between the groups a customer writes it in
    (123-456, 123–456, 1234 5678), so that it is one number, not its first group."""
    return re.sub(r"\D", "", unicodedata.normalize("NFKC", order_id).translate(AS_DIGITS))


def orders_db() -> sqlite3.Connection:
    """The demo's order table, created next to this file on first use."""
    conn = sqlite3.connect(Path(__file__).with_name("orders.sqlite"))
    conn.row_factory = sqlite3.Row
    columns = {row[1] for row in conn.execute("PRAGMA table_info(orders)")}
    if columns and "proof_locked_until" not in columns:  # an earlier demo's, without all that proves whose an order is
        conn.execute("DROP TABLE orders")
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, status TEXT, tracking TEXT, eta TEXT, "
                 "email TEXT, postcode TEXT, phone TEXT, customer TEXT, proof_misses INTEGER NOT NULL DEFAULT 0, "
                 "proof_locked_until REAL)")
    conn.executemany("INSERT OR IGNORE INTO orders (id, status, tracking, eta, email, postcode, phone, customer) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ORDERS)
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
           "not_ours": "{given} isn't one of our order numbers: ours start with {prefix}, as on our order emails "
                       "({prefix}52017). Please check the number (an order from another shop is theirs to look up), "
                       "or a person can help.",
           "not_found": "I couldn't find order {order_id}. Could you check the number?",
           "status": "Order {order_id} is **{status}**.", "tracking": " Tracking: {tracking}.",
           "eta": " Expected delivery: {eta}.",
           "prove": "For its tracking number and expected delivery, send me the email address, postcode or phone number "
                    "on the order.",
           "no_proof": "All right. Without the email address, postcode or phone number on the order I can't show its "
                       "tracking details here, but a person can help.",
           "wrong": "That doesn't match the order. Please check it and send the email address, postcode or phone number "
                    "on the order again.",
           "locked": "That doesn't match either, so I can't check another here for {wait}: then you can try again, or a "
                     "person can help now.",
           "ask_a_person": "For its tracking details, try again in {wait}, or a person can help now.",
           "wait": "{minutes} minutes", "wait_1": "a minute",
           "strong_only": "For {wait}, I can't check a postcode or the last digits of a phone number for this order: "
                          "send me the email address or the whole phone number on it, or a person can help now.",
           "strong_only_several": "For {wait}, I can't check a postcode or the last digits of a phone number for these "
                                  "orders: send me the email address or the whole phone number on them, or a person "
                                  "can help now.",
           "still_unproven": "That doesn't match order {orders}: for its tracking details, send me the email address, "
                             "postcode or phone number on it.",
           "still_unproven_several": "That doesn't match orders {orders}: for their tracking details, send me the "
                                     "email address, postcode or phone number on them.",
           "between": ", ", "before_last": " and ",
           # the same, where the answer is about several orders (the Chinese says it of one or several alike)
           "prove_several": "For their tracking numbers and expected delivery, send me the email address, postcode or "
                            "phone number on the orders.",
           "ask_a_person_several": "For their tracking details, try again in {wait}, or a person can help now.",
           "no_proof_several": "All right. Without the email address, postcode or phone number on the orders I can't "
                               "show their tracking details here, but a person can help.",
           "wrong_several": "That doesn't match the orders. Please check it and send the email address, postcode or "
                            "phone number on the orders again.",
           "locked_several": "That doesn't match either, so I can't check another here for {wait}: then you can try "
                             "again, or a person can help now.", "words": {}},
    "zh": {"ask_number": "好的，请问您的订单号是多少？",
           "ask_again": "查询订单需要订单号：您可以在订单确认邮件里，或者账户的 **订单** 中找到它。也可以转人工客服。",
           "still_none": "没关系：没有订单号我这边查不到，但人工客服可以用您下单时的邮箱帮您查找。之后找到订单号的话，发“订单”加号码给我就行。",
           "which": "还是查订单 {order_id} 吗？是的话请点下面的按钮；查其他订单，请直接发订单号。",
           "this_one": "订单 {order_id}",
           "is_it": "{order_id} 是订单号吗？是的话请点下面的按钮；不是的话，请直接发订单号。",
           "person": "转人工客服",
           "not_ours": "{given} 不是本店的订单号：本店订单号以 {prefix} 开头，和订单邮件上的一样（如 {prefix}52017）。请核对一下订单号"
                       "（其他商店的订单请向该商店查询），也可以转人工客服。",
           "not_found": "没有找到订单 {order_id}，麻烦核对一下订单号？",
           "status": "订单 {order_id} 的状态：**{status}**。", "tracking": "物流单号：{tracking}。",
           "eta": "预计送达：{eta}。",
           "prove": "如需查看物流单号和预计送达时间，请发送订单上的邮箱、邮编或手机号。",
           "no_proof": "好的。没有订单上的邮箱、邮编或手机号，我这边无法显示物流详情，人工客服可以帮您查询。",
           "wrong": "与订单信息不符。请核对后，再发送一次订单上的邮箱、邮编或手机号。",
           "locked": "还是与订单信息不符，{wait}内我这边无法再核对。之后可以再试一次，也可以现在转人工客服帮您查询。",
           "ask_a_person": "如需物流详情，请在 {wait}后再试，也可以现在转人工客服帮您查询。",
           "wait": "{minutes} 分钟", "wait_1": "1 分钟",
           "strong_only": "{wait}内我这边无法核对该订单的邮编或手机尾号：请发送订单上的邮箱或完整手机号，也可以现在转人工客服。",
           "still_unproven": "这与订单 {orders} 的信息不符：如需其物流详情，请发送该订单上的邮箱、邮编或手机号。",
           "between": "、", "before_last": "、",
           "words": {"shipped": "已发货", "processing": "处理中", "delivered": "已送达", "Tuesday": "周二", "Friday": "周五",
                     "Thursday": "周四"}},
}


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        say = MESSAGES.get(tracker.get_slot("language"), MESSAGES["en"])
        person = [{"title": say["person"], "payload": "/handoff"}]
        proof = tracker.get_slot(PROOF) if tracker.get_slot("requested_slot") == PROOF else None
        another = proof and another_order(proof, tracker.get_slot("orders_unproven") or [])
        if proof and not another:
            return checked_proof(dispatcher, tracker, say, person)
        order_id = another or tracker.get_slot("order_id")
        if isinstance(order_id, str):  # deskbot gives 七八九 as 789; Rasa's regex extractor gives it as written
            order_id = as_looked_up(order_id)
        # in ASCII digits and punctuation, as deskbot gives it (Rasa gives it as typed)
        said = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "")
        read = tracker.latest_message.get("entities") or []
        unread = None if read else re.search(rf"[\d{CHINESE_DIGITS}]{{3,}}", PHONE.sub(" ", said))
        foreign = None if read else foreign_order_number(said)
        if order_id and (foreign or (unread and order_id not in said)):
            order_id = None  # a number the order pattern did not read: never answer with an earlier order's status
        asked = tracker.get_slot("requested_slot") == "order_id"
        intent = (tracker.latest_message.get("intent") or {}).get("name") or "track_order"
        if not order_id and foreign:
            dispatcher.utter_message(text=say["not_ours"].format(given=foreign, prefix=ORDER_PREFIX), buttons=person)
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        if not order_id and unread:
            # "where is 789 now": a number the order pattern did not read may be the order's, or a price or a phone
            # number, so it is offered as a button rather than asked for again, as though the customer had not given it.
            number = as_looked_up(unread[0])
            dispatcher.utter_message(text=say["is_it"].format(order_id=number),
                                     buttons=[order_button(say, intent, number)])
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        if tracker.get_slot("requested_slot") == PROOF and not another and not read and not NAMES_AN_ORDER.search(said) \
                and not said.startswith("/"):
            # The proof is optional: "thanks" or "ok" (read as such) ends the wait with the bot's own answer to it, and
            # "I don't have it" offers a person, as the same question again would loop ("check my order", or the
            # intent's button, is asked which order, below). The wait stays open for the proof the customer may find
            # next, until another message: a second "I don't have it" after a person was offered ends it.
            acknowledged = acknowledgement(said) or (intent if intent in ACKNOWLEDGEMENTS else None)
            if acknowledged:
                dispatcher.utter_message(response=f"utter_{acknowledged}")
            else:
                dispatcher.utter_message(text=worded(say, "no_proof", tracker.get_slot("orders_unproven") or []),
                                         buttons=person)
            if acknowledged or offered_a_person(tracker):
                return [SlotSet("requested_slot", None), SlotSet("orders_unproven", None)]
            return [SlotSet("requested_slot", PROOF)]
        if order_id and not read and order_id not in said and tracker.get_slot("order_status") and not asked:
            # Asked again without a number ("查订单", "check my order") after an order was looked up: the customer may
            # mean another order, so the one remembered is offered, not assumed; a number typed instead is looked up.
            dispatcher.utter_message(text=say["which"].format(order_id=order_id),
                                     buttons=[order_button(say, intent, order_id)])
            return [SlotSet("requested_slot", "order_id")]
        if not order_id and (asked or LACKS.search(said) and NAMES_THE_NUMBER.search(said)):
            if asked and offered_a_person(tracker):
                # "I don't know it" a second time: the same words once more would loop, so the wait ends, with a
                # person; a number typed later is still looked up.
                dispatcher.utter_message(text=say["still_none"], buttons=person)
                return [SlotSet("order_id", None), SlotSet("requested_slot", None)]
            # Asked already, or said to be lacking (LACKS): the question would loop, so where the number is, and a person.
            dispatcher.utter_message(text=say["ask_again"], buttons=person)
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        if not order_id:  # asks, and requested_slot sends the customer's answer back here
            dispatcher.utter_message(text=say["ask_number"])
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        # Each order a message names ("where are my orders 123 and 456?"): the first alone left the other unanswered.
        named = list(dict.fromkeys(as_looked_up(entity["value"]) for entity in read
                                   if entity.get("entity") == "order_id" and isinstance(entity.get("value"), str)))
        rows = looked_up(named if len(named) > 1 else [order_id])
        # proven in the conversation, or placed by the customer signed in to the web chat (verified_user)
        signed_in = tracker.get_slot("verified_user")
        proven = [*(tracker.get_slot("orders_proven") or []),
                  *(number for number, row in rows.items() if row and signed_in and row["customer"] == signed_in)]
        if None in rows.values():  # the number put right goes back here
            dispatcher.utter_message(text="\n".join(say["not_found"].format(order_id=number) if row is None
                                                    else status_text(say, number, row, number in proven)
                                                    for number, row in rows.items()))
            return [SlotSet("order_id", None), SlotSet("requested_slot", "order_id")]
        # What a stranger must not see (the tracking number, the day) waits for the proof that the order is theirs,
        # which the message may already give beside the order's number ("order 789, sam@example.com")
        unproven = [number for number, row in rows.items() if number not in proven and (row["tracking"] or row["eta"])]
        given = (customers_email(said) or PHONE.search(said)) if unproven else None
        newly, counted, wait = compared(tracker, given[0], unproven) if given else ([], [], 0)
        unproven = [number for number in unproven if number not in newly]
        wait = wait or locked_for(tracker, [rows[number] for number in unproven])
        lines = [status_text(say, number, row, number in proven or number in newly) for number, row in rows.items()]
        if unproven:
            asks = ("strong_only" if guesses_only(tracker, counted, wait) else "ask_a_person") if wait \
                else "still_unproven" if newly else "wrong" if given else "prove"
            lines.append(worded(say, asks, unproven).format(wait=in_minutes(say, wait), orders=listed(say, unproven)))
        dispatcher.utter_message(text="\n".join(lines), buttons=person if unproven and wait else [])
        waits = bool(unproven)  # locked too: a proof sent once the lock opens is compared, not left to the classifier
        return [SlotSet("order_status", list(rows.values())[-1][0]), SlotSet("requested_slot", PROOF if waits else None),
                SlotSet("orders_unproven", unproven if waits else None), SlotSet(PROOF, None), *counted,
                *([SlotSet("orders_proven", [*(tracker.get_slot("orders_proven") or []), *newly])] if newly else [])]


class ValidateActionOrderStatus(Action):
    """Reads the answer to the order status's question for a proof (``requested_slot`` is ``order_proof``): deskbot
    runs ``validate_<action>`` on an answer no entity of nlu.yml reads, as Rasa runs a form's validation, and the
    action runs next with the slot set. Another shop's order number ("TB-52017"), sent while the number or the proof
    is asked for, is an answer the action rejects, saying whose prefix its numbers have: it got the fallback, which
    ended the wait. Nothing else is read while no proof is asked for."""

    def name(self) -> str:
        return "validate_action_order_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        requested = tracker.get_slot("requested_slot")
        said = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "")
        foreign = requested in ("order_id", PROOF) and foreign_order_number(said)
        if requested != PROOF:
            return [SlotSet(requested, None)] if foreign else []
        names_an_order = NAMES_AN_ORDER.search(said) and not NAMES_A_PROOF.search(said)
        # a long number beside "order", or after another shop's prefix, is an order's, unless it is written as a phone
        # number is (PHONE)
        proof = customers_email(said) or PHONE.search(said) \
            or (None if names_an_order or foreign else ZIP_PLUS_FOUR.search(said) or PROOF_PHONE.search(said)
                or POSTCODE.search(said) or last_four(said))
        return [SlotSet(PROOF, proof[0].strip() if proof else None)] if proof or foreign else []


def foreign_order_number(said: str) -> str | None:
    """An order number in ``said`` with another shop's prefix ("AB1023", "#TB-1023"), as typed; None where there is none:
    no prefix, this shop's own (``ORDER_PREFIX``), or a word for "order number" joined to the digits ("no123")."""
    return next((found[0].lstrip("#") for found in PREFIXED.finditer(said)
                 if found[1].casefold() not in (ORDER_PREFIX.casefold(), *ORDER_WORDS)), None)


def last_four(said: str) -> re.Match[str] | None:
    """The last four digits of a phone number in ``said``: four digits alone, or where it names a phone number."""
    if NAMES_A_PHONE.search(said):
        return LAST_FOUR.search(said)
    return LAST_FOUR.fullmatch(re.sub(r"[\W_]+", " ", said).strip())


def customers_email(said: str) -> re.Match[str] | None:
    """The first email address in ``said`` (:func:`as_typed_email`) that the customer gives as theirs: none at the
    shop's own domains (``SHOP_EMAIL_DOMAINS``), nor one they say they wrote to (``WROTE_TO``), which compared as the
    proof would count a wrong one against them."""
    typed = as_typed_email(said)
    return next((found for found in EMAIL.finditer(typed) if not WROTE_TO.search(typed[:found.start()])
                 and not any(f"@{found[0].rsplit('@', 1)[1]}".casefold().endswith((f"@{domain}", f".{domain}"))
                             for domain in SHOP_EMAIL_DOMAINS)), None)


def as_typed_email(said: str) -> str:
    """``said`` with an email address in it put right as a Chinese keyboard or a thumb types one: the 。 that a
    keyboard in Chinese mode types for the dot (sam@example。com), the spaces around the @ (sam @ example.com), and
    those around the first dot of its domain, which an address needs (sam@example. com, sam @ example . com); a dot
    that ends a sentence after a whole address ("sam@example.com. Thanks") stays one."""
    said = re.sub(r"\s*@\s*", "@", re.sub(r"(?<=[A-Za-z0-9])。(?=[A-Za-z0-9])", ".", said))
    return re.sub(r"(@[A-Za-z0-9-]+)\s*[.。]\s*(?=[A-Za-z0-9])", r"\1.", said)


def looked_up(numbers: list[str]) -> dict[str, sqlite3.Row | None]:
    """Each order of ``numbers`` as the table has it (status, tracking, eta, email, postcode, customer, proof_misses,
    phone, by name or in that order), None where none is."""
    with orders_db() as conn:
        return {number: conn.execute("SELECT status, tracking, eta, email, postcode, customer, proof_misses, phone, "
                                     "proof_locked_until FROM orders WHERE id = ?", [number]).fetchone()
                for number in numbers}


def count_proof(numbers: list[str], missed: bool) -> None:
    """Count a wrong proof against each order of ``numbers``, locking the chat's proofs of one for
    ``PROOF_LOCK_SECONDS`` at its ``MAX_ORDER_PROOF_MISSES``th (its count then starts afresh), or start their count
    afresh after a right one."""
    with orders_db() as conn:
        ids = [[number] for number in numbers]
        if not missed:
            conn.executemany("UPDATE orders SET proof_misses = 0, proof_locked_until = NULL WHERE id = ?", ids)
            return
        conn.executemany("UPDATE orders SET proof_misses = proof_misses + 1 WHERE id = ?", ids)
        conn.executemany("UPDATE orders SET proof_misses = 0, proof_locked_until = ? WHERE id = ? AND proof_misses >= ?",
                         [[time.time() + PROOF_LOCK_SECONDS, number, MAX_ORDER_PROOF_MISSES] for number in numbers])


def locked_for(tracker: Tracker, rows: list[sqlite3.Row]) -> float:
    """Seconds until the chat compares a proof of the orders ``rows`` again, 0 where it does now: the conversation's
    lock after its ``MAX_PROOF_MISSES`` wrong ones (the slot ``order_proof_retry_at``), else, where every order's own
    is locked after its ``MAX_ORDER_PROOF_MISSES``, the soonest of theirs to open."""
    now = time.time()
    orders = min(((row["proof_locked_until"] or 0) - now for row in rows), default=0)
    return max((tracker.get_slot("order_proof_retry_at") or 0) - now, orders, 0)


def guessable(proof: str) -> bool:
    """Whether ``proof`` is one a stranger could hit on in a few guesses: a postcode or a phone number's last four
    digits, not an email address or a whole phone number (nine digits or more)."""
    return "@" not in proof and len(digits_of(proof)) < 9


def guesses_only(tracker: Tracker, counted: list[dict[str, Any]], wait: float) -> bool:
    """Whether a ``wait`` is the order's lock alone, not the conversation's (its slot ``order_proof_retry_at``, as the
    slots ``counted`` by :func:`compared` leave it): the email address or whole phone number is compared meanwhile."""
    retry_at = next((event["value"] for event in counted if event["name"] == "order_proof_retry_at"),
                    tracker.get_slot("order_proof_retry_at"))
    return wait > 0 and (retry_at or 0) <= time.time()


def in_minutes(say: dict[str, Any], seconds: float) -> str:
    """``seconds`` as the customer reads a wait: "a minute", "15 minutes" (rounded up)."""
    minutes = math.ceil(seconds / 60)
    return say["wait_1"] if minutes <= 1 else say["wait"].format(minutes=minutes)


def proves(proof: str, row: sqlite3.Row) -> bool:
    """Whether ``proof`` is the email address, the postcode or the phone number of the order ``row``, however the
    customer spaced or capitalised it (sw1a1aa is SW1A 1AA), or the phone number's last four digits."""
    def plain(text: str | None) -> str:
        return re.sub(r"\s", "", unicodedata.normalize("NFKC", text or "")).casefold()
    given = plain(proof)
    phone = digits_of(row["phone"])
    zip_code = ZIP_PLUS_FOUR.fullmatch(given)
    return bool(given) and (given in (plain(row["email"]), plain(row["postcode"]))
                            or (zip_code is not None and zip_code[1] == plain(row["postcode"]))
                            or (len(given) == 4 and given.isdigit() and phone.endswith(given))
                            or same_phone(digits_of(proof), phone))


def digits_of(phone: str | None) -> str:
    """The digits of a phone number, in ASCII, without the zeros before them (of the 00 before a country's code, or
    the trunk prefix 0 of 020 or 07700, which +44 (0)20 puts in brackets)."""
    return re.sub(r"\D", "", unicodedata.normalize("NFKC", phone or "").replace("(0)", "")).lstrip("0")


def same_phone(given: str, phone: str) -> bool:
    """Whether the digits ``given`` (:func:`digits_of`) are those of ``phone``, with or without its country's code:
    +44 20 7946 0958, 0044 20 7946 0958 and 020 7946 0958 are one number, as are +86 138-0013-8000 and 13800138000,
    and +1 (415) 555-0132 and 415.555.0132. Nine digits at least: a national number has as many."""
    shorter, longer = sorted((given, phone), key=len)
    return len(shorter) >= 9 and longer.endswith(shorter)


def another_order(proof: str, unproven: list[str]) -> str | None:
    """The order number that ``proof``, read as a postcode or a phone number's last digits while the proof of the
    orders ``unproven`` was awaited, is rather: digits alone that are a known order's number and prove none of those
    orders, a new lookup ("52017", typed to look that order up); digits that prove one are a proof, though an order's
    number too. None where the proof is no such number."""
    if not unicodedata.normalize("NFKC", proof).strip().isdigit():
        return None
    number = as_looked_up(proof)
    if looked_up([number])[number] is None or any(row and proves(proof, row) for row in looked_up(unproven).values()):
        return None
    return number


def compared(tracker: Tracker, proof: str, unproven: list[str]) -> tuple[list[str], list[dict[str, Any]], float]:
    """The orders of ``unproven`` that ``proof`` proves; where it proves none, the slots that count it as a wrong one
    in the conversation, and the seconds until the chat compares another (0: it does now). Compared only while the
    conversation's proofs are not locked, and the order's, unless ``proof`` is no :func:`guessable` one."""
    misses = tracker.get_slot("order_proof_misses") or 0
    rows = {number: row for number, row in looked_up(unproven).items() if row}
    now = time.time()
    conversation_open = (tracker.get_slot("order_proof_retry_at") or 0) <= now
    strong = not guessable(proof)  # compared while the order's lock lasts: no one guesses it
    open_to_proof = {number: row for number, row in rows.items() if conversation_open
                     and (strong or (row["proof_locked_until"] or 0) <= now)}
    proven = [number for number, row in open_to_proof.items() if proves(proof, row)]
    count_proof(proven or list(open_to_proof), missed=not proven)
    if proven:
        return proven, [], 0
    misses += 1 if open_to_proof else 0
    retry_at = tracker.get_slot("order_proof_retry_at")
    if misses >= MAX_PROOF_MISSES:  # the conversation's lock: its count starts afresh once it opens
        misses, retry_at = 0, now + PROOF_LOCK_SECONDS
    wait = max((retry_at or 0) - now, 0) or (0 if strong else locked_for(tracker, list(looked_up(list(rows)).values())))
    return [], [SlotSet("order_proof_misses", misses), SlotSet("order_proof_retry_at", retry_at)], wait


def checked_proof(dispatcher: CollectingDispatcher, tracker: Tracker, say: dict[str, Any],
                  person: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The answer to a proof given for the orders it was asked for (the slot ``orders_unproven``): their details where
    it is theirs, else asked again, up to ``MAX_PROOF_MISSES`` wrong ones in the conversation (and
    ``MAX_ORDER_PROOF_MISSES`` of the order's in all), then a person. The proof is never kept in the slots, and the
    order number a postcode's digits filled (200031) is put back."""
    unproven = tracker.get_slot("orders_unproven") or []
    rows = {number: row for number, row in looked_up(unproven).items() if row}
    locked = locked_for(tracker, list(rows.values()))  # before this proof: it is not compared, so no wrong one
    proven, counted, wait = compared(tracker, tracker.get_slot(PROOF), unproven)
    events = [SlotSet(PROOF, None), SlotSet("order_id", unproven[-1] if unproven else None), *counted]
    if proven:
        # the orders it does not prove (placed with another email) are named, and their proof still awaited
        left = [number for number in unproven if number not in proven]
        lines = [status_text(say, number, rows[number], True) for number in proven]
        if left:
            lines.append(worded(say, "still_unproven", left).format(orders=listed(say, left)))
        dispatcher.utter_message(text="\n".join(lines))
        return [*events, SlotSet("orders_proven", [*(tracker.get_slot("orders_proven") or []), *proven]),
                SlotSet("orders_unproven", left or None), SlotSet("requested_slot", PROOF if left else None)]
    if wait > 0:
        # no more guesses for a while: then the customer tries again (the wait stays open for it), or a person checks
        # who they are now
        asks = "strong_only" if guesses_only(tracker, counted, wait) else "ask_a_person" if locked else "locked"
        dispatcher.utter_message(text=worded(say, asks, unproven).format(
            wait=in_minutes(say, wait)), buttons=person)
    else:
        dispatcher.utter_message(text=worded(say, "wrong", unproven))
    return [*events, SlotSet("requested_slot", PROOF)]


def worded(say: dict[str, Any], key: str, orders: list[str]) -> str:
    """The message ``key`` of ``say``, worded for ``orders``: its ``<key>_several`` where they are several ("their
    tracking numbers", "on the orders"), which a language that says it of one or several alike has none of."""
    return say.get(f"{key}_several", say[key]) if len(orders) > 1 else say[key]


def acknowledgement(said: str) -> str | None:
    """The intent of a message that only thanks ("thank_you": "thanks!", "ok 谢谢🙏") or acknowledges ("acknowledge":
    "OK, got it.", "好的。"), whatever its punctuation, emoji and case; None for any other."""
    words = rest = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", said)).strip()
    while rest:  # a word at a time: one pattern repeated over the whole would backtrack without end on "kkkk…x"
        word = ACKNOWLEDGING_WORD.match(rest)
        if not word:
            return None
        rest = rest[word.end():]
    return ("thank_you" if THANKING.search(words) else "acknowledge") if words else None


def listed(say: dict[str, Any], orders: list[str]) -> str:
    """The order numbers ``orders`` as a sentence names them: "123", "123 and 456", "123, 456 and 789" ("123、456")."""
    return say["before_last"].join(filter(None, [say["between"].join(orders[:-1]), orders[-1]]))


def order_button(say: dict[str, Any], intent: str, order_id: str) -> dict[str, str]:
    """A button that looks ``order_id`` up, as the intent the customer asked with: "Order 123"."""
    return {"title": say["this_one"].format(order_id=order_id),
            "payload": f"/{intent}{json.dumps({'order_id': order_id})}"}


def offered_a_person(tracker: Tracker) -> bool:
    """Whether the bot's last message offered a person: the action's second ask for the number did, and a third would
    say the same words again."""
    said = tracker.get_last_event_for("bot") or {}
    return any(button.get("payload") == "/handoff" for button in (said.get("data") or {}).get("buttons") or [])


def status_text(say: dict[str, Any], order_id: str, row: sqlite3.Row, proven: bool) -> str:
    """What the action says of an order found in the table: its status, and where the customer has ``proven`` it is
    theirs, its tracking number and expected delivery."""
    status, tracking, eta = row["status"], row["tracking"], row["eta"]
    words = say["words"]
    text = say["status"].format(order_id=order_id, status=words.get(status, status))
    if not proven:
        return text
    if tracking:
        text += say["tracking"].format(tracking=tracking)
    if eta:
        text += say["eta"].format(eta=words.get(eta, eta))
    return text
