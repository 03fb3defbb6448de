"""rasa-sdk custom actions on both paths: in-process from ``actions/``, and a real rasa-sdk action
server process (``python -m rasa_sdk``) over HTTP; plus an aiohttp stand-in for the server's 449
"resend with domain" and 400 rejection answers. The same action code runs on both paths, and its
events are applied the same way: SlotSet into slots, ConversationPaused as a handoff, FollowupAction.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from aiohttp import web
from rasa_sdk import Tracker
from rasa_sdk.events import (ActionExecuted, AllSlotsReset, ConversationPaused, ConversationResumed, FollowupAction,
                             Restarted, SessionStarted, SlotSet)
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import ActionError, ActionResult, ActionRunner, action_call, action_domain, past_events
from bot.channels.base import Turn
from bot.engine import MAX_FOLLOWUPS, Bot
from bot.language import say
from bot.nlu import NLU
from bot.project import FormConfig, ProjectError, load_project
from bot.server import create_app
from dialogues.review import current_name
from dialogues.store import CUSTOM_PLACEHOLDER, Exchange, Store, log_tag
from tests.conftest import SureOf, configured_copy

ACTIONS = '''
import asyncio

from rasa_sdk import Action
from rasa_sdk.events import (ActionReverted, ActiveLoop, AllSlotsReset, ConversationPaused, FollowupAction,
                             Restarted, SessionEnded, SlotSet, UserUtteranceReverted)
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.interfaces import ActionExecutionRejection

from .wording import BYE  # a module of the shop's own beside its actions, imported as in Rasa's actions package


class ActionLookupLatest(Action):
    def name(self):
        return "action_lookup_latest"

    def run(self, dispatcher, tracker, domain):
        return [SlotSet("order_id", "456"), FollowupAction("action_order_status")]


class ActionHandOn(Action):
    def name(self):
        return "action_hand_on"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"after {tracker.latest_action_name}")
        return [SlotSet("order_id", "456"), FollowupAction("action_see_who_asked")]


class ActionAfterWhom(Action):
    def name(self):
        return "action_see_who_asked"

    def run(self, dispatcher, tracker, domain):
        said = max(i for i, e in enumerate(tracker.events) if e["event"] == "user")
        since = ", ".join(f"{e['event']} {e.get('name')}" for e in tracker.events[said + 1:])
        dispatcher.utter_message(text=f"after {tracker.latest_action_name} ({since})")
        return []


class ActionHalfPairSlot(Action):
    def name(self):
        return "action_half_pair_slot"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Found it.")
        return [SlotSet("order_id", "1\\ud800")]


class ActionTupleKeySlot(Action):
    def name(self):
        return "action_tuple_key_slot"

    def run(self, dispatcher, tracker, domain):
        return [SlotSet("order_id", {(1, 2): "a"})]


class ActionDatedButton(Action):
    def name(self):
        return "action_dated_button"

    def run(self, dispatcher, tracker, domain):
        import datetime

        dispatcher.utter_message(text="Pick a day.", buttons=[{"title": "Today", "payload": "/track_order",
                                                               "day": datetime.date.today()}])
        return []


class ActionHalfPairButton(Action):
    def name(self):
        return "action_half_pair_button"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Pick one.", buttons=[{"title": "t\\udc00", "payload": "/track_order"}])
        return []


class ActionEscalate(Action):
    def name(self):
        return "action_escalate"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="A colleague will take over from here.")
        return [ConversationPaused()]


class ActionRefundThenPolicy(Action):
    def name(self):
        return "action_refund_then_policy"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Refund noted.")
        return [FollowupAction("utter_cancel_order")]


class ActionWhere(Action):
    def name(self):
        return "action_where"

    def run(self, dispatcher, tracker, domain):
        said = next(e for e in reversed(tracker.events) if e["event"] == "user")
        thread = tracker.latest_message["metadata"]["thread_ts"]  # where Rasa's actions read it
        dispatcher.utter_message(text=f"{tracker.get_latest_input_channel()} {said['metadata'].get('thread_ts')} "
                                      f"{said['text']} {thread}")
        return []


class ActionWhoStarted(Action):
    def name(self):
        return "action_who_started"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"{tracker.get_slot('session_started_metadata')}")
        return []


class ActionWhoIsVerified(Action):
    def name(self):
        return "action_who_is_verified"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"{tracker.slots['verified_user']}")
        return []


class ActionAskIfHelped(Action):
    def name(self):
        return "action_ask_if_helped"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Did that help?", buttons=[
            {"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": '/deny{"order_id": "123"}'},
            {"title": "Track it", "payload": "/track_order"}, {"title": "A person", "payload": "/handoff"},
            {"title": "Say it", "payload": "where is my parcel"}])
        return []


class ActionReadSlots(Action):
    def name(self):
        return "action_read_slots"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"{tracker.slots['order_id']} {tracker.slots['order_status']}")
        return []


class ActionSayAsEvent(Action):
    def name(self):
        return "action_say_as_event"

    def run(self, dispatcher, tracker, domain):
        from rasa_sdk.events import BotUttered

        dispatcher.utter_message(text="First.")
        return [BotUttered("Second.", {"buttons": [{"title": "Track it", "payload": "/track_order"}]})]


class ActionRemind(Action):
    def name(self):
        return "action_remind"

    def run(self, dispatcher, tracker, domain):
        import datetime

        from rasa_sdk.events import ReminderScheduled

        dispatcher.utter_message(text="I'll remind you.")
        return [ReminderScheduled("EXTERNAL_remind", datetime.datetime.now() + datetime.timedelta(hours=1))]


class ActionAskOrder(Action):
    def name(self):
        return "action_ask_order"

    def run(self, dispatcher, tracker, domain):
        if not tracker.get_slot("order_id"):
            dispatcher.utter_message(text="What is the order's number?")
            return [SlotSet("requested_slot", "order_id")]
        dispatcher.utter_message(text=f"Order {tracker.get_slot('order_id')} noted.")
        return [SlotSet("requested_slot", None)]


class ActionNameTheLoop(Action):
    def name(self):
        return "action_name_the_loop"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"Asked by {tracker.active_loop_name}.")
        return [SlotSet("requested_slot", None if tracker.get_slot("order_id") else "order_id")]


class ActionStartOrderForm(Action):
    def name(self):
        return "action_start_order_form"

    def run(self, dispatcher, tracker, domain):
        if tracker.active_loop_name == "order_form" and tracker.get_slot("order_id"):
            activated = [e["name"] for e in tracker.events if e["event"] == "active_loop"]
            dispatcher.utter_message(text=f"Order {tracker.get_slot('order_id')} in {activated}.")
            return [ActiveLoop(None), SlotSet("requested_slot", None)]
        dispatcher.utter_message(text="Which order?")
        return [ActiveLoop("order_form"), SlotSet("requested_slot", "order_id")]


class ActionOpenOrderForm(Action):
    def name(self):
        return "action_open_order_form"

    def run(self, dispatcher, tracker, domain):
        return [ActiveLoop("order_form")]


class ValidateOrderForm(FormValidationAction):
    def name(self):
        return "validate_order_form"

    def extract_email(self, dispatcher, tracker, domain):
        text = tracker.latest_message["text"]
        return {"email": text} if "@" in text else {}

    def validate_order_id(self, slot_value, dispatcher, tracker, domain):
        if slot_value.startswith("0"):
            dispatcher.utter_message(text=f"{slot_value} is none of ours ({tracker.active_loop_name}).")
            return {"order_id": None}
        return {"order_id": slot_value}


class ActionAskReturnFormOrderId(Action):
    def name(self):
        return "action_ask_return_form_order_id"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Which order would you like to return?")
        return []


class ActionAskReason(Action):
    def name(self):
        return "action_ask_reason"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"Why return order {tracker.get_slot('order_id')}? ({tracker.active_loop_name} "
                                      f"asks for the {tracker.get_slot('requested_slot')})")
        return [SlotSet("order_status", "returning")]


class ActionSubmitOrder(Action):
    def name(self):
        return "action_submit_order"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"Order {tracker.get_slot('order_id')} for {tracker.get_slot('email')} placed "
                                      f"({tracker.active_loop_name}).")
        return []


class ActionReadTheAnswer(Action):
    def name(self):
        return "action_read_the_answer"

    def run(self, dispatcher, tracker, domain):
        read = [e["parse_data"] for e in tracker.events if e["event"] == "user"][-2:]
        dispatcher.utter_message(text=" ".join(f"{p['intent']['name']}:{p['intent']['confidence']}="
                                               f"{p['intent_ranking'][0]['name']}:{p['intent_ranking'][0]['confidence']}"
                                               for p in [*read[:-1], tracker.latest_message]))
        return [SlotSet("requested_slot", "order_id")]


class ActionAskThenStop(Action):
    def name(self):
        return "action_ask_then_stop"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Give me an order number some other time.")
        return [SlotSet("requested_slot", "order_id"), ActiveLoop(None)]


class ActionSetAside(Action):
    def name(self):
        return "action_set_aside"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Let's leave that aside.")
        return [SlotSet("order_status", "undone"), ActionReverted(), SlotSet("order_status", "forgotten"),
                UserUtteranceReverted(), SlotSet("order_status", "kept")]


class ActionSetAsideForAPerson(Action):
    def name(self):
        return "action_set_aside_for_a_person"

    def run(self, dispatcher, tracker, domain):
        if tracker.get_intent_of_latest_message() == "track_order":
            dispatcher.utter_message(text="A colleague will look at it.")
        return [UserUtteranceReverted(), ConversationPaused()]


class ActionSetAsideQuietly(Action):
    def name(self):
        return "action_set_aside_quietly"

    def run(self, dispatcher, tracker, domain):
        return [UserUtteranceReverted()]


class ActionAskEmail(Action):
    def name(self):
        return "action_ask_email"

    def run(self, dispatcher, tracker, domain):
        if not tracker.get_slot("email"):
            dispatcher.utter_message(response="utter_ask_email")
            return [SlotSet("requested_slot", "email")]
        dispatcher.utter_message(text=f"Thanks, {tracker.get_slot('email')}.")
        return [SlotSet("requested_slot", None)]


class ValidateActionAskEmail(FormValidationAction):
    def name(self):
        return "validate_action_ask_email"

    def extract_email(self, dispatcher, tracker, domain):
        text = tracker.latest_message["text"]
        return {"email": text} if "@" in text else {}

    def validate_email(self, slot_value, dispatcher, tracker, domain):
        if slot_value.endswith("@example.invalid"):
            dispatcher.utter_message(text="That address cannot be reached.")
            return {"email": None}
        return {"email": slot_value}


class ActionReadNewsletter(Action):
    def name(self):
        return "action_read_newsletter"

    def run(self, dispatcher, tracker, domain):
        given = [e["value"] for e in tracker.latest_message["entities"]]
        dispatcher.utter_message(text=f"{tracker.get_slot('newsletter')!r} {given!r}")
        return []


class ValidateActionAskOrder(FormValidationAction):
    def name(self):
        return "validate_action_ask_order"

    def validate_order_id(self, slot_value, dispatcher, tracker, domain):
        if slot_value.startswith("0"):
            dispatcher.utter_message(text=f"{slot_value} is none of ours ({tracker.active_loop_name}).")
            return {"order_id": None}
        return {"order_id": slot_value}


class ActionListOrders(Action):
    def name(self):
        return "action_list_orders"

    def run(self, dispatcher, tracker, domain):
        orders = list(tracker.get_latest_entity_values("order_id"))
        if not orders:
            dispatcher.utter_message(text="Which orders?")
            return [SlotSet("requested_slot", "order_id")]
        dispatcher.utter_message(text=f"Cancelling {' and '.join(orders)}.")
        return [SlotSet("requested_slot", None)]


class ActionPointAtOrders(Action):
    def name(self):
        return "action_point_at_orders"

    def run(self, dispatcher, tracker, domain):
        text, found = tracker.latest_message["text"], tracker.latest_message["entities"]
        if not found:
            dispatcher.utter_message(text="Which orders?")
            return [SlotSet("requested_slot", "order_id")]
        dispatcher.utter_message(text="; ".join(f"{text[e['start']:e['end']]} {e['confidence_entity']} "
                                                f"{e.get('extractor')}" for e in found))
        return [SlotSet("requested_slot", None)]


class ActionLookBack(Action):
    def name(self):
        return "action_look_back"

    def run(self, dispatcher, tracker, domain):
        said = tracker.get_last_event_for("bot")
        asked = tracker.get_last_event_for("user", skip=1)
        events = " | ".join(f"{e['event']} {e.get('name') or e.get('text') or ''}".rstrip()
                            for e in tracker.events_after_latest_restart())
        entity = asked["parse_data"]["entities"][0]
        dispatcher.utter_message(text=f"{said['text']}\\n{events}\\n{asked['text'][entity['start']:entity['end']]} "
                                      f"{asked['parse_data']['intent']['name']} {tracker.get_latest_input_channel()} "
                                      f"{len(tracker.applied_events())}")
        return []


class ActionShowProducts(Action):
    def name(self):
        return "action_show_products"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Our bestsellers:", elements=[
            {"title": "Mug", "subtitle": "9.95", "image_url": "https://shop.example/mug.png",
             "buttons": [{"title": "Track it", "payload": "/track_order"}]},
            {"title": "Tee", "subtitle": None,
             "buttons": [{"title": "Our site", "url": "https://shop.example", "type": "web_url"}]}, "promo-carousel"])
        dispatcher.utter_message(text="Anything else?", quick_replies=[
            {"content_type": "text", "title": "Cancel it", "payload": "/cancel_order"}])
        return []


class ActionStartOver(Action):
    def name(self):
        return "action_start_over"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Let's start over.")
        return [Restarted()]


class ActionSinceTheRestart(Action):
    def name(self):
        return "action_since_the_restart"

    def run(self, dispatcher, tracker, domain):
        before = tracker.get_last_event_for("user", skip=1)
        dispatcher.utter_message(text=f"{[e['event'] for e in tracker.events_after_latest_restart()]} "
                                      f"{before and before['text']} {len(tracker.applied_events())}")
        return []


class ActionSendInvoice(Action):
    def name(self):
        return "action_send_invoice"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Your invoice:", attachment="https://shop.example/invoice/77.pdf")
        dispatcher.utter_message(attachment={"type": "template", "payload": {"template_type": "generic"}})
        return []


class ActionQuoteResponse(Action):
    def name(self):
        return "action_quote_response"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=domain["responses"]["utter_cancel_order"][-1]["text"])
        return []


class ActionListActions(Action):
    def name(self):
        return "action_list_actions"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=" ".join(domain["actions"]))
        return []


class ActionNamedResponses(Action):
    def name(self):
        return "action_named_responses"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(response="utter_cancel_order", order_id="77")
        dispatcher.utter_message(response="utter_ask_email")
        dispatcher.utter_message(response="utter_nobody_wrote_this")
        return []


class ActionForget(Action):
    def name(self):
        return "action_forget"

    def run(self, dispatcher, tracker, domain):
        return [SlotSet("order_id", "999"), AllSlotsReset(), SlotSet("order_status", "forgotten")]


class ActionEndSession(Action):
    def name(self):
        return "action_end_session"

    def run(self, dispatcher, tracker, domain):
        return [SessionEnded()]


class ActionBookRefund(Action):
    def name(self):
        return "action_book_refund"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"Your refund is booked. {BYE}")
        return [SlotSet("refund", "booked"), FollowupAction("action_restart")]


class ActionSlowNote(Action):
    def name(self):
        return "action_slow_note"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(0.5)
        dispatcher.utter_message(text="Noted.")
        return [SlotSet("note", "slow")]


class ActionShowAll(Action):
    def name(self):
        return "action_show_all"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(response="utter_cancel_order", order_id="77", text="Cancelled.",
                                 buttons=[{"title": "Talk to a person", "payload": "/handoff"}])
        dispatcher.utter_message(buttons=[{"title": "Track it", "payload": "/track_order"},
                                          {"title": "Our site", "url": "https://shop.example", "type": "web_url"},
                                          {"title": "\\u200b", "payload": "/greet"}])
        dispatcher.utter_message(image="https://shop.example/parcel.png", json_message={"blocks": []})
        return [SlotSet("shown", "all")]


class ActionTextBlocksText(Action):
    def name(self):
        return "action_text_blocks_text"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Our mugs:")
        dispatcher.utter_message(json_message={"blocks": [{"type": "divider"}]})
        dispatcher.utter_message(text="Anything else?", buttons=[{"title": "Track it", "payload": "/track_order"}])
        return []


class ActionStampTime(Action):
    def name(self):
        return "action_stamp_time"

    def run(self, dispatcher, tracker, domain):
        import datetime

        dispatcher.utter_message(text="Stamped.")
        return [SlotSet("when", datetime.datetime.now())]


class ActionAskAsList(Action):
    def name(self):
        return "action_ask_as_list"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Which order?")
        return [SlotSet("requested_slot", ["order_id"])]


class ActionAgain(Action):
    def name(self):
        return "action_again"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="again")
        return [FollowupAction("action_again")]


class ActionStreamed(Action):
    def name(self):
        return "action_streamed"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="One moment.")
        await dispatcher.stream_start()
        for token in ("Your", " order", " has", " shipped."):
            await dispatcher.stream_chunk(text=token)
        await dispatcher.stream_chunk(image="https://shop.example/parcel.png")
        for token in ("您的", "订单", "已发货。"):
            await dispatcher.stream_chunk(text=token)
        await dispatcher.stream_chunk(buttons=[{"title": "Track it", "payload": "/track_order"}])
        await dispatcher.stream_end()
        for token in ("Anything", " else?"):  # a stream the action leaves open, which rasa-sdk closes
            await dispatcher.stream_chunk(text=token)
        return []


class ActionFollowMisspelt(Action):
    def name(self):
        return "action_follow_misspelt"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Looking it up.")
        return [FollowupAction("action_order_stauts")]


class ActionRefundOnceThenFail(Action):
    def name(self):
        return "action_refund_once_then_fail"

    def run(self, dispatcher, tracker, domain):
        if tracker.get_slot("refund"):
            raise RuntimeError("the refund system is down")
        dispatcher.utter_message(text="Your refund R1 was created.")
        return [SlotSet("refund", "R1"), FollowupAction("action_refund_once_then_fail")]


class ActionChatty(Action):
    def name(self):
        return "action_chatty"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="x" * 15_000)
        dispatcher.utter_message(text="y" * 15_000)
        return [SlotSet("chatted", "yes")]


class ActionChattyThenPause(Action):
    def name(self):
        return "action_chatty_then_pause"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="x" * 15_000)
        dispatcher.utter_message(text="y" * 15_000)
        return [SlotSet("chatted", "yes"), ConversationPaused()]


class ActionRunaway(Action):
    def name(self):
        return "action_runaway"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="y" * 200_000)
        return []


class ActionJsonOnly(Action):
    def name(self):
        return "action_json_only"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(json_message={"blocks": [{"type": "section"}]})
        return [SlotSet("order_id", "321")]


class ActionForgetQuietly(Action):
    def name(self):
        return "action_forget_quietly"

    def run(self, dispatcher, tracker, domain):
        return [AllSlotsReset()]


class ActionSetThenFail(Action):
    def name(self):
        return "action_set_then_fail"

    def run(self, dispatcher, tracker, domain):
        tracker.add_slots([SlotSet("order_id", "999")])  # as rasa-sdk's validation actions do
        tracker.slots["refund"] = "R9"
        raise RuntimeError("the order system is down")


class ActionLookupOrder(Action):
    def name(self):
        return "action_lookup_order"

    async def run(self, dispatcher, tracker, domain):
        orders = {}
        dispatcher.utter_message(text=f"Order {orders[tracker.get_slot('order_id')]} found.")
        return []


class ActionOrderCard(Action):
    def name(self):
        return "action_order_card"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="订单 77：", buttons=[{"title": "Track it", "payload": "/track_order"}])
        dispatcher.utter_message(json_message={"blocks": [{"type": "divider"}]})
        dispatcher.utter_message(image="https://shop.example/parcel.png")
        dispatcher.utter_message(text="Anything else?", buttons=[{"title": "Cancel it", "payload": "/cancel_order"}])
        return []


class ActionPackingSlip(Action):
    def name(self):
        return "action_packing_slip"

    def run(self, dispatcher, tracker, domain):
        raise ValueError(f"no weight on file for order {tracker.get_slot('order_id')}")


class ActionNeedsOrderNumber(Action):
    def name(self):
        return "action_needs_order_number"

    def run(self, dispatcher, tracker, domain):
        raise ActionExecutionRejection(self.name(), "no order number given")


class ActionSlowCourier(Action):
    def name(self):
        return "action_slow_courier"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(30)  # the courier's API, which does not answer
        dispatcher.utter_message(text="Your parcel is with the courier.")
        return []
'''


@pytest.fixture(scope="module")
def action_bot(small_bot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(shutil.copytree(small_bot, tmp_path_factory.mktemp("actions") / "bot"))
    (root / "actions" / "extra.py").write_text(ACTIONS)
    (root / "actions" / "wording.py").write_text('BYE = "Bye!"\n')
    with (root / "responses.yml").open("a") as responses:  # a response named after no intent, as a Rasa domain has
        responses.write("  utter_ask_email:\n  - text: What is your email?\n  - text: 请问您的邮箱是什么？\n    language: zh\n")
        responses.write("  utter_ask_order_id:\n  - text: Which order is it?\n")
        # the demo's answers to thanks and an acknowledgement, which its order action says when the customer is done
        responses.write("  utter_thank_you:\n  - text: You're welcome!\n  - text: 不客气！\n    language: zh\n")
        responses.write("  utter_acknowledge:\n  - text: All right.\n  - text: 好的。\n    language: zh\n")
    return root


@pytest.fixture(scope="module")
def action_server(action_bot: Path) -> Iterator[str]:
    """The real rasa-sdk action server, serving the bot's own actions/ folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # in a process group of its own: sanic's worker processes are stopped with it (stop_action_server)
    proc = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
                            cwd=action_bot, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(action_bot)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_action_server(proc)
                pytest.fail("the rasa-sdk action server did not start")
            time.sleep(0.2)
    yield f"{url}/webhook"
    stop_action_server(proc)


def stop_action_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the rasa-sdk action server and its sanic workers, killed after 10 s: stopped by SIGTERM right after it
    started (a test run alone), its main process waited on its workers for good, and left them running."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def make_bot(root: Path, endpoint: str | None, actions: dict[str, str], tmp_path: Path) -> Bot:
    project = load_project(root)
    project.config.actions.map = actions
    project.config.actions.endpoint = endpoint
    nlu = NLU.load(root / "models" / "v0001", device="cpu")
    return Bot(project, nlu, Store(tmp_path / "dialogues.db"))


MAP = {"track_order": "action_lookup_latest", "cancel_order": "action_escalate",
       "get_refund": "action_refund_then_policy"}


@pytest.fixture(params=["in-process", "action server"])
def endpoint(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "in-process" else request.getfixturevalue("action_server")


async def test_slots_followups_and_pause_on_both_paths(action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    bot = make_bot(action_bot, endpoint, MAP, tmp_path)
    try:
        # SlotSet fills the slot, FollowupAction runs the demo's order lookup with it.
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "Order 456 is **processing**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
        slots = bot.store.conversation("c1")["slots"]
        assert slots["order_id"] == "456" and slots["order_status"] == "processing"

        # FollowupAction("utter_<intent>") adds that intent's template, filled from the slots.
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))
        assert reply.text.startswith("Refund noted.\n\nI can cancel order 456 for you.")

        # ConversationPaused hands the conversation to a person; the bot then stays silent.
        reply = await bot.handle(Turn("c2", "/cancel_order", "web"))
        assert (reply.source, reply.handed_off, reply.text) == ("handoff", True, "A colleague will take over from here.")
        assert bot.store.conversation("c2")["status"] == "handed_off"
        assert (await bot.handle(Turn("c2", "/track_order", "web"))).source == "silent"
    finally:
        await bot.close()


async def test_a_followup_sees_the_action_that_asked_for_it_as_the_latest_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As in Rasa, tracker.latest_action_name is the action whose FollowupAction runs this one: it read
    action_listen, so a follow-up could not tell it was one. Its events follow the user's, then those it
    returned, as Rasa's tracker holds them: they were missing, so a follow-up could not read what it set."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_hand_on"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.text == ("after action_listen\n\nafter action_hand_on "
                              "(action action_hand_on, slot order_id, followup action_see_who_asked)")
    finally:
        await bot.close()


async def test_an_action_that_reverts_the_message_leaves_the_slots_and_the_question_as_they_were_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As in Rasa, ActionReverted undoes what the action did before it, and UserUtteranceReverted forgets the
    customer's message: the slots it filled are as before it, and the action that asked a question still waits for
    its answer. Both were ignored with a warning, so a message an action set aside changed the order and ended the
    wait for the order's number."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_ask_order", "cancel_order": "action_set_aside"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "What is the order's number?"
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "555"}', "web"))
        assert (reply.source, reply.text) == ("action", "Let's leave that aside.")
        conversation = bot.store.conversation("c1")
        assert (conversation["slots"].get("order_id"), conversation["slots"]["order_status"]) == (None, "kept")
        assert conversation["active_loop"] == "action_ask_order"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 noted."
        assert "does not apply" not in caplog.text
    finally:
        await bot.close()


async def test_a_message_an_action_reverted_is_rewound_in_later_trackers_as_rasa_lists_it_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """Rasa lists a message taken back with UserUtteranceReverted followed by a rewind, which rasa-sdk's
    applied_events() and get_last_event_for leave out: a later action's tracker listed it as the customer's latest
    request, and the set-aside reply as the bot's last word. The store keeps it for the agents."""
    bot = make_bot(action_bot, endpoint, {"cancel_order": "action_set_aside", "get_refund": "action_look_back"},
                   tmp_path)
    try:
        first = await bot.handle(Turn("c1", '/track_order{"order_id": "123"}', "web"))
        assert (await bot.handle(Turn("c1", '/cancel_order{"order_id": "555"}', "web"))).text == "Let's leave that aside."
        said, events, asked = (await bot.handle(Turn("c1", "/get_refund", "web"))).text.split("\n")
        assert (said, asked.split()[:3]) == (first.text, ['{"order_id":', '"123"}', "track_order"])
        assert ('user /cancel_order{"order_id": "555"} | slot order_id | action action_set_aside | bot Let\'s leave '
                "that aside. | rewind | action action_listen | user /get_refund") in events
        assert '/cancel_order{"order_id": "555"}' in [t["text"] for t in bot.store.recent_turns("c1", 10)]
    finally:
        await bot.close()


async def test_later_trackers_list_a_restart_after_the_reply_of_an_action_that_restarted_as_rasa_lists_it(
        action_bot: Path, tmp_path: Path) -> None:
    """Rasa lists a restart (an action's Restarted, or its FollowupAction("action_restart")) in the tracker, which
    rasa-sdk's events_after_latest_restart(), applied_events() and get_last_event_for start after: a later action's
    tracker listed the conversation before it as current, so an action read the customer's requests from before the
    restart as their latest. The store keeps the turns for the agents."""
    bot = make_bot(action_bot, None, {"cancel_order": "action_start_over", "track_order": "action_book_refund",
                                      "get_refund": "action_since_the_restart"}, tmp_path)
    try:
        for conversation in ("c1", "c2"):
            first = await bot.handle(Turn(conversation, '/get_refund{"order_id": "123"}', "web"))
            assert first.text == "['action', 'session_started', 'action', 'user'] None 4"
            restart = "/cancel_order" if conversation == "c1" else "/track_order"
            assert (await bot.handle(Turn(conversation, restart, "web"))).source == "action"
            assert (await bot.handle(Turn(conversation, "/get_refund", "web"))).text == "['action', 'user'] None 2"
        assert [t["text"] for t in bot.store.recent_turns("c1", 10)][0] == '/get_refund{"order_id": "123"}'
    finally:
        await bot.close()


async def test_a_message_an_action_reverted_stays_marked_when_the_action_hands_off_or_shows_nothing(
        action_bot: Path, tmp_path: Path) -> None:
    """UserUtteranceReverted with ConversationPaused, or from an action that then showed nothing and was taken as
    failed, left the message as an ordinary one, though its slots were undone: later actions' trackers listed it as
    the customer's latest request."""
    bot = make_bot(action_bot, None, {"track_order": "action_set_aside_for_a_person", "cancel_order":
                                      "action_set_aside_for_a_person", "get_refund": "action_set_aside_quietly"}, tmp_path)
    del bot.project.responses.templates["get_refund"]  # no template to answer for an action that shows nothing
    try:
        replies = [await bot.handle(Turn(f"c{i}", text, "web"))
                   for i, text in enumerate(["/track_order", "/cancel_order", "/get_refund"])]
        assert [r.source for r in replies] == ["handoff", "handoff", "fallback"]
        assert replies[0].text == "A colleague will look at it."
        assert [[t["reverted"] for t in bot.store.recent_turns(f"c{i}", 10) if t["role"] == "user"]
                for i in range(3)] == [[True]] * 3
    finally:
        await bot.close()


def test_events_deskbot_does_not_apply_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """They were dropped without a word, so an action returning ActiveLoop or ReminderScheduled seemed to work."""
    answer = {"events": [{"event": "slot", "name": "x", "value": 1}, {"event": "active_loop", "name": "order_form"},
                         {"event": "reminder", "name": "r", "intent": "EXTERNAL_remind", "date_time": "2030-01-01T09:00:00"},
                         {"event": "cancel_reminder", "name": "r0"}, {"event": "slot", "name": "y", "value": 2}]}
    assert ActionResult.from_response(answer).slots == {"x": 1, "y": 2}
    assert "which deskbot does not apply" not in caplog.text  # each is named on its own below
    # the form is named, with what deskbot does instead: "active_loop events" left a shop moving a form to guess
    assert ("an action activated the form 'order_form', which deskbot does not run: bot.yml's actions.forms does not "
            "name it with its required_slots") in caplog.text
    assert ("an action scheduled a reminder 'r' of intent 'EXTERNAL_remind' for 2030-01-01T09:00:00, which will not "
            "run: deskbot keeps no reminders") in caplog.text
    caplog.clear()
    ActionResult.from_response(answer, forms={"order_form"})  # one bot.yml names runs, as in Rasa
    assert "activated the form" not in caplog.text
    caplog.clear()
    ActionResult.from_response({"events": [{"event": "slot", "name": "x", "value": 1}]})
    assert "not apply" not in caplog.text


def test_what_an_action_sent_that_was_left_out_is_logged_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A button or a card an action built from the customer's details ("Send to jane@example.com") and that deskbot
    left out was logged as it came, the customer's email and phone in the server's log, where a stored reply is
    redacted."""
    answer = {"events": [], "responses": [{"text": "Where to?", "buttons": [{"title": "Send to jane@example.com"}],
                                           "elements": ["call +44 20 7946 0958"]}]}
    ActionResult.from_response(answer)
    assert "left out: [{'title': 'Send to [EMAIL]'}]" in caplog.text
    assert "left out: ['call [PHONE]']" in caplog.text
    assert "jane@example.com" not in caplog.text and "7946" not in caplog.text


def test_a_value_an_actions_answer_is_refused_for_is_quoted_redacted() -> None:
    """An answer refused for a value deskbot's checks quote (requested_slot set to the customer's details rather than
    a slot's name) was logged with the value as it came, the customer's e-mail address in the server's log."""
    answer = {"events": [{"event": "slot", "name": "requested_slot", "value": {"email": "jane@example.com"}}]}
    with pytest.raises(ActionError) as refused:
        ActionResult.from_response(answer, "action_ask")
    assert str(refused.value).startswith("action 'action_ask': not a rasa-sdk action answer: events.0: "
                                         "requested_slot names the slot the action asks for")
    assert "not dict {'email': " in str(refused.value) and "[EMAIL]" in str(refused.value)
    assert "jane" not in str(refused.value)


async def test_an_action_answered_reads_itself_as_the_active_loop_as_a_rasa_form_does_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As Rasa's tracker names the active form: tracker.active_loop_name was None even for the action run with the
    answer to its own question, so an action written for a Rasa form could not tell the answer from a fresh ask."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_name_the_loop"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Asked by None."
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Asked by action_name_the_loop."
    finally:
        await bot.close()


async def test_a_form_an_action_activates_is_the_active_loop_until_it_ends_as_in_rasa(action_bot: Path,
                                                                                       tmp_path: Path) -> None:
    """An action that asks as a Rasa form's does (ActiveLoop("order_form") and requested_slot) checks
    tracker.active_loop_name == "order_form" on the answer: the form was dropped, and the tracker named the action, so
    code written for Rasa took the answer for a fresh ask. Deactivated, a restart or a handoff ends it."""
    bot = make_bot(action_bot, None, {"get_refund": "action_start_order_form"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order?"
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == ("action_start_order_form", "order_form")
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 in ['order_form']."
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == (None, None)
        await bot.handle(Turn("c2", "/get_refund", "web"))
        await bot.handle(Turn("c2", "/handoff", "web"))
        assert bot.store.conversation("c2")["active_form"] is None
    finally:
        await bot.close()
    activated = {"event": "active_loop", "name": "order_form"}
    assert ActionResult.from_response({"events": [activated]}).form == "order_form"
    for ended in ({"event": "active_loop", "name": None}, {"event": "restart"}, {"event": "undo"}):
        assert ActionResult.from_response({"events": [activated, ended]}).form is None


async def test_a_form_of_bot_yml_asks_for_its_slots_validates_each_answer_and_submits_as_rasas_does_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """A Rasa bot's form (ActiveLoop("order_form") with validate_order_form) was not run: the form's validation never
    checked an answer, nothing asked for its slots, and its submit action never ran. Its required slots are read from
    bot.yml's actions.forms, each asked with its utter_ask_<slot> response."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_open_order_form", "cancel_order": "action_ask_email"},
                   tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         submit="action_submit_order")}
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order is it?"
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == ("order_form", "order_form")
        reply = await bot.handle(Turn("c1", "0123", "web"))
        assert reply.text == "0123 is none of ours (order_form).\n\nWhich order is it?"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "What is your email?"
        reply = await bot.handle(Turn("c1", "ada@example.com", "web"))
        assert (reply.source, reply.text) == ("action", "Order 789 for ada@example.com placed (None).")
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == (None, None)
        assert conversation["slots"]["requested_slot"] is None
        # a message that is no answer, whose action asks a question of its own: that action waits instead of the form
        await bot.handle(Turn("c2", "/get_refund", "web"))
        assert (await bot.handle(Turn("c2", "/cancel_order", "web"))).text == "What is your email?"
        conversation = bot.store.conversation("c2")
        assert (conversation["active_loop"], conversation["active_form"]) == ("action_ask_email", None)
    finally:
        await bot.close()


async def test_the_slots_a_form_starts_with_are_validated_as_rasas_activation_validates_them_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """Rasa's form runs validate_<form> on the required slots already filled when it starts: an order number in the
    message that started the form ("/get_refund{"order_id": "0123"}") was taken unchecked, and the form went on to
    ask for the email, whether actions.map started the form or an action's ActiveLoop did."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         submit="action_submit_order")}
    bot.config.actions.map["track_order"] = "order_form"
    try:
        for conversation, intent in (("c1", "get_refund"), ("c2", "track_order")):
            reply = await bot.handle(Turn(conversation, f'/{intent}{{"order_id": "0123"}}', "web"))
            assert reply.text == "0123 is none of ours (order_form).\n\nWhich order is it?"
            assert bot.store.conversation(conversation)["slots"]["order_id"] is None
        reply = await bot.handle(Turn("c3", '/get_refund{"order_id": "789"}', "web"))
        assert reply.text == "What is your email?"
    finally:
        await bot.close()


async def test_a_form_answers_an_interruption_then_asks_again_until_the_customer_stops_it_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """A message that is no answer to the form's question (another intent's question, one the bot did not understand)
    ended the form without a word, and the answer that came next was taken for a new request. As Rasa's form does
    after an interruption, the bot answers it, asks the form's question again and waits on; "stop", "cancel" or
    "never mind", and a request for a person, end the form."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         submit="action_submit_order")}
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.intent) == ("template", "track_order")
        assert reply.text == ("You can follow your order under **Orders**, or tell me the order number and I'll look it "
                              "up.\n\nWhich order is it?")
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == ("order_form", "order_form")
        bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
        reply = await bot.handle(Turn("c1", "hmm, and the weather?", "web"))
        assert reply.source == "fallback" and reply.text.endswith("\n\nWhich order is it?")
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "What is your email?"
        for conversation, stop in (("c1", "stop"), ("c2", "cancel"), ("c3", "never mind"), ("c4", "/handoff")):
            if conversation != "c1":
                await bot.handle(Turn(conversation, "/get_refund", "web"))
            reply = await bot.handle(Turn(conversation, stop, "web"))
            assert "Which order is it?" not in reply.text and "email" not in reply.text
            assert bot.store.conversation(conversation)["active_loop"] is None
        assert reply.source == "handoff"
    finally:
        await bot.close()


async def test_a_form_asks_with_an_action_ask_action_where_the_actions_have_one_as_rasas_does_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """Rasa's form asks for a slot with the custom action action_ask_<form>_<slot> or action_ask_<slot> where there is
    one, before its utter_ask_<slot> response, the form its tracker's active loop and the slot its requested_slot: a
    form whose question needed the conversation's values (or a database) could not ask it, and one with no
    utter_ask_<slot> response for such a slot was refused at load."""
    project = load_project(action_bot)
    project.config.actions.endpoint = endpoint
    project.config.actions.forms = {"return_form": FormConfig(required_slots=["order_id", "reason"])}
    ActionRunner.for_project(project)  # action_ask_reason asks for the reason: no utter_ask_reason needed
    project.config.actions.forms = {"return_form": FormConfig(required_slots=["order_id", "phone"])}
    with pytest.raises(ActionError, match="responses.yml has no utter_ask_phone"):
        ActionRunner.for_project(project)
    bot = make_bot(action_bot, endpoint, {}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"return_form": FormConfig(required_slots=["order_id", "reason"])}
    bot.config.actions.map["get_refund"] = "return_form"
    try:
        # action_ask_return_form_order_id, of this form, asks before utter_ask_order_id, as in Rasa
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order would you like to return?"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Why return order 789? (return_form asks for the reason)"
        conversation = bot.store.conversation("c1")
        assert (conversation["active_loop"], conversation["active_form"]) == ("return_form", "return_form")
        assert conversation["slots"]["requested_slot"] == "reason" and conversation["slots"]["order_status"] == "returning"
    finally:
        await bot.close()


async def test_a_forms_slot_filled_by_a_message_that_interrupts_it_is_validated_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """A message the form answers as an interruption may still give one of its slots ("cancel order 0456" while it asks
    which order to refund): that value was kept unchecked, and the form asked for the next slot. Rasa's form validates
    every slot of its own a message fills; a value validate_<form> rejects is asked for again."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"])}
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "0456"}', "web"))
        assert reply.intent == "cancel_order"
        assert reply.text.endswith("\n\n0456 is none of ours (order_form).\n\nWhich order is it?")
        assert bot.store.conversation("c1")["slots"]["order_id"] is None
    finally:
        await bot.close()


async def test_a_message_that_fills_another_of_the_forms_slots_is_an_answer_as_in_rasa_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """A message giving a slot of the form's other than the one it asks for (the email, while it asks which order) was
    answered as an interruption ("I didn't understand"), then the question was asked again. Rasa's form takes it as an
    answer: the slot is filled, validated, and the form asks for the slot still missing, whether nlu.yml's patterns
    read the value or validate_<form>'s extract_<slot> did."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         submit="action_submit_order")}
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation in ("extracted", "read by a pattern"):
            if conversation != "extracted":
                bot.project.entity_patterns["email"] = [re.compile(r"\S+@\S+")]
            await bot.handle(Turn(conversation, "/get_refund", "web"))
            reply = await bot.handle(Turn(conversation, "ada@example.com", "web"))
            assert (reply.source, reply.text) == ("action", "Which order is it?")
            assert bot.store.conversation(conversation)["slots"]["email"] == "ada@example.com"
            reply = await bot.handle(Turn(conversation, "789", "web"))
            assert reply.text == "Order 789 for ada@example.com placed (None)."
    finally:
        await bot.close()


async def test_a_message_of_an_intent_a_form_ignores_fills_none_of_its_slots_as_rasas_ignored_intents(
        action_bot: Path, tmp_path: Path) -> None:
    """Rasa's form fills none of its slots from a message of one of its ignored_intents: a request to cancel order 456
    while the form asked which order to refund was read as its answer, and the form went on to ask for the email.
    The message is answered as any interruption, and the form asks its question again; an intent nlu.yml does not
    have is refused at load."""
    bot = make_bot(action_bot, None, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         ignored_intents=["cancel_order"])}
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "456"}', "web"))
        assert (reply.intent, reply.text.rpartition("\n\n")[2]) == ("cancel_order", "Which order is it?")
        assert bot.store.conversation("c1")["slots"].get("order_id") is None
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "What is your email?"
    finally:
        await bot.close()
    typo = configured_copy(action_bot, tmp_path / "typo", actions={"forms": {"order_form": {
        "required_slots": ["order_id"], "ignored_intents": ["chitchat"]}}})
    with pytest.raises(ProjectError, match="actions.forms.order_form.ignored_intents.0: unknown intent 'chitchat'"):
        load_project(typo)


async def test_an_action_that_asks_without_a_form_stops_waiting_on_another_request_and_a_form_asks_again(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """An action that asks a question itself (action_ask_email sets requested_slot) is no form: another request while
    it waits is answered as such and the wait ends, since asking again would run the action's code again (an order
    placed twice), as Rasa runs no loop for it. A one-slot form in bot.yml, with the action as its submit, asks again
    after the interruption and hands the answer to the action, as docs/learning.md says."""
    bot = make_bot(action_bot, endpoint, {"cancel_order": "action_ask_email"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.project.entity_patterns["email"] = [re.compile(r"\S+@\S+")]
    try:
        assert (await bot.handle(Turn("c1", "/cancel_order", "web"))).text == "What is your email?"
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.intent) == ("template", "track_order") and "email" not in reply.text
        assert bot.store.conversation("c1")["active_loop"] is None
        bot.config.actions.forms = {"email_form": FormConfig(required_slots=["email"], submit="action_ask_email")}
        bot.config.actions.map["cancel_order"] = "email_form"
        assert (await bot.handle(Turn("c2", "/cancel_order", "web"))).text == "What is your email?"
        reply = await bot.handle(Turn("c2", "/track_order", "web"))
        assert (reply.intent, reply.text.rpartition("\n\n")[2]) == ("track_order", "What is your email?")
        assert (await bot.handle(Turn("c2", "ada@example.com", "web"))).text == "Thanks, ada@example.com."
    finally:
        await bot.close()


async def test_a_message_of_one_of_a_forms_stop_intents_ends_it(action_bot: Path, tmp_path: Path) -> None:
    """No intent could end a form, only the stop words: "I don't want a refund any more" was answered and the form
    asked its question again, as a Rasa bot's rule deactivating the form on that intent would not. A message the
    classifier is sure is one of the form's stop_intents ends it; an intent nlu.yml does not have is refused at load."""
    bot = make_bot(action_bot, None, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "email"],
                                                         stop_intents=["cancel_order"])}
    try:
        for conversation in ("c1", "c2"):
            await bot.handle(Turn(conversation, "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", "/cancel_order", "web"))
        assert (reply.source, reply.text) == ("template", "All right. If there's anything else, just ask.")
        assert bot.store.conversation("c1")["active_loop"] is None
        reply = await bot.handle(Turn("c2", "/track_order", "web"))  # another intent's question: the form asks again
        assert reply.text.endswith("\n\nWhich order is it?")
    finally:
        await bot.close()
    typo = configured_copy(action_bot, tmp_path / "typo", actions={"forms": {"order_form": {
        "required_slots": ["order_id"], "stop_intents": ["no_refund"]}}})
    with pytest.raises(ProjectError, match="actions.forms.order_form.stop_intents.0: unknown intent 'no_refund'"):
        load_project(typo)


async def test_actions_map_may_start_a_form_and_a_form_that_cannot_ask_or_submit_is_refused_at_load(
        action_bot: Path, tmp_path: Path) -> None:
    """As a Rasa rule starts a form on an intent, actions.map may name one of actions.forms. A form without an
    utter_ask_<slot> for one of its slots, or with a submit action of no class, would fail every customer who
    reached it: it stops the bot at start, with bot.yml's line."""
    project = load_project(action_bot)
    project.config.actions.map = {"get_refund": "order_form"}
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"], submit="action_submit_order")}
    bot = Bot(project, NLU.load(action_bot / "models" / "v0001", device="cpu"), Store(tmp_path / "dialogues.db"))
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order is it?"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 for None placed (None)."
    finally:
        await bot.close()
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id", "phone"])}
    with pytest.raises(ActionError, match="responses.yml has no utter_ask_phone, nor actions/ defines an action_ask_<slot>"):
        ActionRunner.for_project(project)
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"], submit="action_submt_order")}
    with pytest.raises(ActionError, match="'action_submt_order': no class in actions/ is named so"):
        ActionRunner.for_project(project)


def test_a_forms_submit_the_action_server_does_not_list_is_refused_at_load(action_bot: Path, action_server: str,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """On an action server, a misspelt submit action was found only when a customer had filled the whole form, whose
    turn then failed: the server's list of its actions (GET /actions) is checked at load, as actions/ is; a server
    that does not answer yet (it may start after deskbot) leaves it unchecked, with a warning."""
    project = load_project(action_bot)
    project.config.actions.endpoint = action_server
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"], submit="action_submit_order")}
    ActionRunner.for_project(project)
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"], submit="action_submt_order")}
    with pytest.raises(ActionError, match="'action_submt_order': the action server does not list it"):
        ActionRunner.for_project(project)
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        project.config.actions.endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}/webhook"
    ActionRunner.for_project(project)
    assert "did not list its actions" in caplog.text and "(action_ask_<slot>, submit) are not checked" in caplog.text


async def test_a_form_the_bot_no_longer_names_is_no_longer_waited_on(action_bot: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A form taken out of actions.forms (a reload) while a customer was answering it was run as an action of that
    name, which failed their turn ("Sorry, something went wrong") and counted as a miss: the message is handled as
    any other instead."""
    bot = make_bot(action_bot, None, {"get_refund": "action_open_order_form"}, tmp_path)
    bot.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"])}
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order is it?"
        bot.config.actions.forms = {}
        bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
        await bot.handle(Turn("c1", "789", "web"))
        assert "'order_form' failed" not in caplog.text and "actions.forms no longer names" in caplog.text
        assert bot.store.conversation("c1")["active_loop"] is None
    finally:
        await bot.close()


async def test_the_answer_to_an_actions_question_is_read_as_the_classifier_read_it_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As Rasa's tracker gives the message's own parse: the answer to an action's question ("789") reached the action
    with the asking intent, at confidence 1, as its latest_message.intent, beside the classifier's intent_ranking, in
    its own call and in later trackers alike."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_read_the_answer"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        for text in ("789", "790"):
            read = [pair.split("=") for pair in (await bot.handle(Turn("c1", text, "web"))).text.split()]
            assert all(intent == ranked for intent, ranked in read) and read[-1][0] != "get_refund:1.0"
    finally:
        await bot.close()


async def test_an_active_loop_of_none_ends_the_wait_for_an_answer_as_a_rasa_form_deactivates(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ActiveLoop(None) was ignored with a warning: an action that asked a question and then stopped its form (as
    Rasa's custom form actions do) left the bot waiting for the answer."""
    bot = make_bot(action_bot, None, {"get_refund": "action_ask_then_stop"}, tmp_path)
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        assert bot.store.conversation("c1")["active_loop"] is None and "not apply" not in caplog.text
    finally:
        await bot.close()
    asked_then_stopped = {"events": [{"event": "slot", "name": "requested_slot", "value": "order_id"},
                                     {"event": "active_loop", "name": None}]}
    assert ActionResult.from_response(asked_then_stopped).loop_ended is True
    asked_again = {"events": [*asked_then_stopped["events"], {"event": "slot", "name": "requested_slot", "value": "email"}]}
    assert ActionResult.from_response(asked_again).loop_ended is False
    undone = {"events": [*asked_then_stopped["events"], {"event": "undo"}]}
    assert ActionResult.from_response(undone).loop_ended is False


async def test_what_an_actions_answer_has_wrong_names_the_action_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """"an action's reminder events were not applied" and "not a rasa-sdk action answer" left a bot with many
    actions to guess which."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_remind", "cancel_order": "action_ask_as_list"},
                   tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text == "I'll remind you."
        assert "action 'action_remind' scheduled a reminder of intent 'EXTERNAL_remind' for 20" in caplog.text
        assert "which will not run: deskbot keeps no reminders" in caplog.text
        assert (await bot.handle(Turn("c1", "/cancel_order", "web"))).source == "fallback"
        assert "action 'action_ask_as_list': not a rasa-sdk action answer: events.0" in caplog.text
    finally:
        await bot.close()


def test_an_action_call_gives_a_version_rasa_sdk_finds_compatible() -> None:
    """A fixed "3.10.0" made rasa-sdk's server warn, on its first call, that it and "rasa 3.10.0" might not be
    compatible, for every rasa-sdk but 3.10's: deskbot's own included."""
    from rasa_sdk.utils import check_version_compatibility

    call = action_call("action_x", "c1", "hi", "greet", 1.0, [], {}, [], {}, "web", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_version_compatibility(call["version"])


def test_pause_and_resume_events_apply_in_order() -> None:
    """An action's events apply in order, as in Rasa: the last of a pause and a resume stands."""
    def result(*events: Any) -> ActionResult:
        return ActionResult.from_response({"events": [dict(e) for e in events], "responses": []})

    assert result(ConversationPaused()).paused
    assert not result(ConversationPaused(), ConversationResumed()).paused
    assert result(ConversationResumed(), ConversationPaused()).paused
    assert not result(SlotSet("order_id", "1")).paused
    # a reset clears the slots set before it, not those after
    assert result(SlotSet("a", 1), AllSlotsReset(), SlotSet("b", 2)).slots == {"b": 2}
    assert result(SlotSet("a", 1), Restarted()).reset and result(SlotSet("a", 1), Restarted()).slots == {}
    restarted = result(ConversationPaused(), FollowupAction("action_x"), Restarted())  # Rasa forgets both too
    assert (restarted.paused, restarted.followup) == (False, None)
    assert not result(SlotSet("a", 1)).reset


def test_a_session_started_starts_the_conversation_afresh_as_rasa_applies_it(caplog: pytest.LogCaptureFixture) -> None:
    """Rasa resets the tracker on a SessionStarted an action returns, as on a Restarted (a Rasa bot's own
    action_session_start returns one, then ActionExecuted("action_listen")): it was ignored with a warning, and the
    slots set before it stayed."""
    answer = {"events": [dict(e) for e in (SlotSet("a", 1), ConversationPaused(), FollowupAction("action_x"),
                                           SessionStarted(), ActionExecuted("action_listen"), SlotSet("b", 2))]}
    started = ActionResult.from_response(answer)
    assert (started.reset, started.slots, started.paused, started.followup) == (True, {"b": 2}, False, None)
    assert "not apply" not in caplog.text


async def test_actions_see_the_channel_and_its_metadata_on_both_paths(action_bot: Path, endpoint: str | None,
                                                                     tmp_path: Path) -> None:
    bot = make_bot(action_bot, endpoint, {"track_order": "action_where"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "slack", metadata={"thread_ts": "1700000000.000100"}))
        assert reply.text == "slack 1700000000.000100 /track_order 1700000000.000100"
    finally:
        await bot.close()


async def test_actions_read_the_metadata_the_conversation_started_with_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As in Rasa, the slot session_started_metadata holds the metadata of the message that started the
    conversation (a user id the shop's page passes), and of the next one after an action restarted it: it was
    never set, and an action reading the customer's id from it found None."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_who_started", "get_refund": "action_book_refund"},
                   tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web", metadata={"user_id": "u-17"}))
        assert reply.text == "{'user_id': 'u-17'}"
        reply = await bot.handle(Turn("c1", "/track_order", "web", metadata={"user_id": "u-18"}))
        assert reply.text == "{'user_id': 'u-17'}"  # the session's start, not the latest message's
        await bot.handle(Turn("c1", "/get_refund", "web", metadata={"user_id": "u-19"}))  # restarts the conversation
        reply = await bot.handle(Turn("c1", "/track_order", "web", metadata={"user_id": "u-20"}))
        assert reply.text == "{'user_id': 'u-20'}"
        assert (await bot.handle(Turn("c2", "/track_order", "web"))).text == "None"  # a message without any
    finally:
        await bot.close()


async def test_actions_read_the_customer_the_shops_server_vouched_for_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """The slot verified_user is the web customer's id the shop's server vouched for (channels.web.identity_secret),
    as of each message, which an action may trust where it cannot trust the page's metadata; an action's reset of
    the slots leaves it."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_who_is_verified", "cancel_order": "action_forget_quietly"},
                   tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web", "u-17", verified_user="u-17"))
        assert reply.text == "u-17"
        assert (await bot.handle(Turn("c1", "/track_order", "web", "u-17"))).text == "None"  # one not vouched for
        forged = Turn("c2", "/track_order", "web", "u-18", metadata={"verified_user": "u-18"})
        assert (await bot.handle(forged)).text == "None"
        await bot.handle(Turn("c3", "/cancel_order", "web", "u-17", verified_user="u-17"))
        assert bot.store.conversation("c3")["slots"] == {"verified_user": "u-17"}
    finally:
        await bot.close()


async def test_actions_read_every_slot_of_the_domain_as_in_rasa_on_both_paths(action_bot: Path, endpoint: str | None,
                                                                            tmp_path: Path) -> None:
    """``tracker.slots["order_id"]`` is None before anything sets it, as in Rasa: it raised KeyError, and the
    action failed."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_read_slots"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "None None")
        reply = await bot.handle(Turn("c1", '/track_order{"order_id": "12345"}', "web"))
        assert (reply.source, reply.text) == ("action", "12345 None")
        assert "order_status" not in bot.store.conversation("c1")["slots"]  # only what an action sets is kept
    finally:
        await bot.close()


async def test_actions_find_the_templates_in_the_domains_responses_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As in Rasa's domain, under the names an action gives them (utter_<intent>): the domain's responses
    were empty, and an action reading one failed."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_quote_response"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", bot.project.responses.templates["cancel_order"][-1].text)
    finally:
        await bot.close()


async def test_the_domains_actions_list_every_action_of_actions_folder(action_bot: Path, tmp_path: Path) -> None:
    """As Rasa's domain lists every custom action: it listed actions.map's alone, and an action looking for another
    there (to choose a FollowupAction) did not find it."""
    bot = make_bot(action_bot, None, {"track_order": "action_list_actions"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        listed = reply.text.split()
        assert listed == sorted(bot.actions.names) and {"action_list_actions", "action_forget"} <= set(listed)
    finally:
        await bot.close()
    # an action server's: those the map names and the forms' submit actions, a response run as one left out
    project = load_project(action_bot)
    project.config.actions.map = {"track_order": "action_lookup"}
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["email"], submit="action_submit_order"),
                                    "email_form": FormConfig(required_slots=["email"], submit="utter_thank_you")}
    assert action_domain(project)["actions"] == ["action_lookup", "action_submit_order"]


async def test_responses_named_by_an_action_are_rendered_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``utter_message(response="utter_<intent>", **values)`` shows that intent's template, filled from the
    message's values, and a response named after no intent (``utter_ask_email``) its own text, as in Rasa (it
    could not be written, so a Rasa bot's forms' questions had to move into its actions' code), its custom payload
    passed on to the web chat's page; a response the bot does not have shows nothing and is logged."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_named_responses"}, tmp_path)
    form = {"type": "email_form"}
    named = bot.project.responses.named
    named["utter_ask_email"] = [v.model_copy(update={"custom": form}) for v in named["utter_ask_email"]]
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "action"
        template = bot.project.responses.templates["cancel_order"][0].text.format(order_id="77")
        assert reply.text == f"{template}\n\nWhat is your email?" and reply.custom == [form]
        assert "utter_nobody_wrote_this" in caplog.text
    finally:
        await bot.close()


async def test_an_actions_messages_are_put_together_as_rasa_does_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A named response with the message's own text and buttons (the text wins, the buttons follow the
    template's), a message of buttons alone, an image as its link (on Slack as an image block, as Rasa's Slack
    channel posts it, where it was a bare link); a button without a payload or with a
    blank title (Slack refuses the whole message) is left out, with a warning, and the rest of the answer stands;
    a json_message is passed on as it is (custom) on the web chat, as Rasa's REST channel does, and on Slack is
    not shown, with a warning, unless it holds Block Kit blocks, which Slack posts."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_show_all"}, tmp_path)
    template = bot.project.responses.render("cancel_order", "web", {"order_id": "77"}, "en")
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "Cancelled.\n\nhttps://shop.example/parcel.png")
        assert reply.buttons == [*template.buttons, {"title": "Talk to a person", "payload": "/handoff"},
                                 {"title": "Track it", "payload": "/track_order"}]
        assert bot.store.conversation("c1")["slots"]["shown"] == "all"
        assert reply.custom == [{"blocks": []}] and reply.to_json()["custom"] == [{"blocks": []}]
        assert "button without a payload or a title" in caplog.text and "custom was not shown" not in caplog.text
        assert "'title': '\\u200b'" in caplog.text  # a zero-width space shows nothing
        on_slack = await bot.handle(Turn("c2", "/track_order", "slack"))  # the image as Rasa's Slack channel posts it
        image = "https://shop.example/parcel.png"
        assert on_slack.text == "Cancelled." and on_slack.custom == [
            {"text": image, "blocks": [{"type": "image", "image_url": image, "alt_text": image}]}]
        assert "an action's custom was not shown on slack" in caplog.text
        bot.config.actions.map["track_order"] = "action_json_only"
        assert (await bot.handle(Turn("c3", "/track_order", "slack"))).custom == [{"blocks": [{"type": "section"}]}]
    finally:
        await bot.close()


async def test_an_actions_text_after_its_payload_keeps_its_place_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """An action's text, its Slack blocks, then text again: the two texts were joined into one reply before the
    blocks. The reply lists the messages in the action's order, as Rasa's REST channel does, for Slack to post each
    on its own and the web chat's page to read; an action whose payloads come last needs no such list."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_text_blocks_text", "get_refund": "action_json_only"},
                   tmp_path)
    blocks = {"blocks": [{"type": "divider"}]}
    try:
        for channel in ("web", "slack"):
            reply = await bot.handle(Turn(f"c-{channel}", "/track_order", channel))
            assert (reply.text, reply.custom) == ("Our mugs:\n\nAnything else?", [blocks])
            assert reply.parts == [{"text": "Our mugs:", "custom": []}, {"text": "", "custom": [blocks]},
                                   {"text": "Anything else?", "custom": []}]
            assert reply.to_json()["messages"] == [{"text": "Our mugs:"}, {"custom": blocks}, {"text": "Anything else?"}]
            assert reply.buttons == [{"title": "Track it", "payload": "/track_order"}]
        assert (await bot.handle(Turn("c-last", "/get_refund", "web"))).to_json()["messages"] == []
    finally:
        await bot.close()


async def test_an_actions_elements_and_quick_replies_are_shown_as_rasas_channels_show_them(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rasa's channels show each of utter_message(elements=[...]) as its "title : subtitle" with its buttons, where
    they draw no carousel (its REST and Slack channels): deskbot dropped them with a warning, and the customer got
    "Our bestsellers:" and nothing. Quick replies are buttons there: they were taken for a response's values."""
    bot = make_bot(action_bot, None, {"track_order": "action_show_products"}, tmp_path)
    try:
        for channel in ("web", "slack"):
            reply = await bot.handle(Turn(f"c-{channel}", "/track_order", channel))
            assert (reply.source, reply.text) == ("action", "Our bestsellers:\n\nMug : 9.95\n\nTee\n\nAnything else?")
            assert reply.buttons == [{"title": "Track it", "payload": "/track_order"},
                                     {"content_type": "text", "title": "Cancel it", "payload": "/cancel_order"}]
        assert "elements was not shown" not in caplog.text and "button without a payload" in caplog.text
        assert "an action's elements that are no card were left out: ['promo-carousel']" in caplog.text
    finally:
        await bot.close()


async def test_an_actions_buttons_to_intents_the_bot_lacks_are_named_in_a_warning(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Rasa bot's action offering /affirm, an intent nlu.yml lacks, showed its button without a word: a click
    reached the classifier as the typed text "/affirm", and the customer was answered at random."""
    bot = make_bot(action_bot, None, {"track_order": "action_ask_if_helped"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert len(reply.buttons) == 5  # shown all the same: the shop decides
        assert ("action 'action_ask_if_helped' offered buttons selecting intents the bot does not know, whose "
                "clicks are read as typed text: /affirm, /deny") in caplog.text
        assert "/track_order" not in caplog.text and "/handoff" not in caplog.text
    finally:
        await bot.close()


async def test_an_actions_button_to_an_intent_since_renamed_is_no_unknown_intent(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An action written before `bot relabel` merged affirm into track_order still offers /affirm: its click selects
    track_order (:meth:`NLU.chosen`), so it is not named among the intents the bot does not know."""
    bot = make_bot(action_bot, None, {"track_order": "action_ask_if_helped"}, tmp_path)
    bot.nlu.name = partial(current_name, renames={"affirm": "track_order"}, labels=bot.project.intents)
    try:
        await bot.handle(Turn("c1", "/track_order", "web"))
        assert "clicks are read as typed text: /deny\n" in caplog.text + "\n"
    finally:
        await bot.close()


async def test_a_bot_uttered_event_is_shown_after_the_actions_messages_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rasa sends the BotUttered events an action returns to the customer; they were dropped with a warning."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_say_as_event"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "First.\n\nSecond.")
        assert reply.buttons == [{"title": "Track it", "payload": "/track_order"}]
        assert "not applied" not in caplog.text
    finally:
        await bot.close()


async def test_an_attachment_given_as_a_link_is_shown_as_its_link_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As Rasa's channels show what they cannot attach: an invoice's PDF sent with
    utter_message(attachment=url) was dropped, and the customer got "Your invoice:" and nothing."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_send_invoice"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "Your invoice:\n\nhttps://shop.example/invoice/77.pdf")
        assert "an action's attachment was not shown" in caplog.text  # a platform's payload, as before
    finally:
        await bot.close()


async def test_an_attachment_given_as_slacks_payload_is_passed_on_to_slack_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rasa's Slack channel posts utter_message(attachment={...}) as the message's attachments: a Rasa bot's actions
    moved over lost it on Slack with a warning. The web chat still shows the link alone."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_send_invoice"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "slack"))
        assert reply.text == "Your invoice:\n\nhttps://shop.example/invoice/77.pdf"
        assert reply.custom == [{"attachments": [{"type": "template", "payload": {"template_type": "generic"}}]}]
        assert "attachment was not shown" not in caplog.text
        assert (await bot.handle(Turn("c2", "/track_order", "web"))).custom == []
    finally:
        await bot.close()


async def test_slot_resets_and_session_end_clear_the_slots_on_both_paths(action_bot: Path, endpoint: str | None,
                                                                         tmp_path: Path) -> None:
    bot = make_bot(action_bot, endpoint, {**MAP, "cancel_order": "action_forget", "get_refund": "action_end_session"},
                   tmp_path)
    try:
        await bot.handle(Turn("c1", "/track_order", "web"))
        assert bot.store.conversation("c1")["slots"] == {"order_id": "456", "order_status": "processing",
                                                         "requested_slot": "order_proof", "orders_unproven": ["456"],
                                                         "order_proof": None}  # a lookup clears an earlier proof
        await bot.handle(Turn("c1", "/cancel_order", "web"))  # AllSlotsReset between two SlotSets
        assert bot.store.conversation("c1")["slots"] == {"order_status": "forgotten"}
        await bot.handle(Turn("c1", "/get_refund", "web"))  # SessionEnded
        assert bot.store.conversation("c1")["slots"] == {}
    finally:
        await bot.close()


async def test_a_followup_restart_starts_afresh_and_keeps_what_was_said_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    bot = make_bot(action_bot, endpoint, {**MAP, "get_refund": "action_book_refund"}, tmp_path)
    try:
        await bot.handle(Turn("c1", "/track_order", "web"))
        assert bot.store.conversation("c1")["slots"]["order_id"] == "456"
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))  # FollowupAction("action_restart")
        assert (reply.source, reply.text) == ("action", "Your refund is booked. Bye!")
        assert bot.store.conversation("c1")["slots"] == {}
    finally:
        await bot.close()


async def test_a_conversations_turns_run_in_order_and_keep_each_others_slots(action_bot: Path, tmp_path: Path) -> None:
    """A second message sent while a slow action answers the first waits for it, so neither's slots are lost."""
    bot = make_bot(action_bot, None, {**MAP, "cancel_order": "action_slow_note"}, tmp_path)
    try:
        slow, fast = await asyncio.gather(bot.handle(Turn("c1", "/cancel_order", "web")),
                                          bot.handle(Turn("c1", "/track_order", "web")))
        assert (slow.text, fast.text) == ("Noted.", "Order 456 is **processing**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
        slots = bot.store.conversation("c1")["slots"]
        assert (slots["note"], slots["order_id"]) == ("slow", "456")
        other = await asyncio.gather(*(bot.handle(Turn(f"c{n}", "/cancel_order", "web")) for n in range(2, 6)))
        assert [r.text for r in other] == ["Noted."] * 4 and not bot._turns  # each lock goes with its last turn
        many = await asyncio.gather(*(bot.handle(Turn(f"m{n}", "/cancel_order", "web")) for n in range(40)))
        assert [r.text for r in many] == ["Noted."] * 40  # more at once than action threads: the rest wait their turn
    finally:
        await bot.close()


async def test_a_bilingual_bots_actions_speak_the_conversations_language_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """The slots ``language`` and ``chinese_script`` reach the action and survive a reset; named responses and the
    demo's own action answer in it, and a payload keeps it."""
    bot = make_bot(action_bot, endpoint, {**MAP, "track_order": "action_named_responses",
                                          "cancel_order": "action_forget", "get_refund": "action_order_status"},
                   tmp_path)
    bot.config.language = "multi"
    bot.config.handoff.intent = None  # so that the typed message below, whatever its intent, cannot hand off
    zh_cancel = next(v for v in bot.project.responses.templates["cancel_order"] if v.language == "zh")
    try:
        await bot.handle(Turn("c1", "订单 789 退款", "web"))  # typed in Chinese, whatever it is classified as
        assert bot.store.conversation("c1")["slots"]["language"] == "zh"
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.text == f"{zh_cancel.text.format(order_id='77')}\n\n请问您的邮箱是什么？"
        await bot.handle(Turn("c1", "/cancel_order", "web"))  # AllSlotsReset
        assert bot.store.conversation("c1")["slots"] == {"language": "zh", "chinese_script": "simplified",
                                                         "order_status": "forgotten"}
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))  # the demo's action, asked without a number
        assert reply.text == "好的，请问您的订单号是多少？"
        await bot.handle(Turn("c1", "order 789 please", "web"))  # typed in English
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))  # asked again, of the order looked up or another
        assert reply.text.startswith("Order 789 again, or another one?")
    finally:
        await bot.close()


async def test_the_demos_lookup_reads_an_order_number_written_in_groups_whole(action_bot: Path, tmp_path: Path) -> None:
    """"order 123-456" was looked up as order 123, and the customer was told that another customer's order had shipped:
    a number written in groups, in full-width digits and dashes too, is looked up as one."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for said, number in [("order 123-456", "123456"), ("１２３－４５６", "123456"), ("订单 1234 5678", "12345678"),
                             ("order 123–456", "123456")]:
            assert (await bot.handle(Turn(said, "/track_order", "web"))).text == "Sure — what's your order number?"
            reply = await bot.handle(Turn(said, said, "web"))
            assert reply.text == f"I couldn't find order {number}. Could you check the number?", said
        await bot.handle(Turn("c1", "/track_order", "web"))
        assert (await bot.handle(Turn("c1", "#４５６ 🙏", "web"))).text.startswith("Order 456 is **processing**")
    finally:
        await bot.close()


async def test_the_demos_order_number_written_short_or_misspelt_is_looked_up(action_bot: Path, tmp_path: Path) -> None:
    """"ord 456", "oder 123" or "order nr 789" typed as the answer to "what's your order number?" got "Sorry, I'm not
    sure I understood" and ended the wait: the order pattern read a number only after "order" spelt in full."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for said, number in [("ord 456", "456"), ("oder 123", "123"), ("Ord. #789", "789"), ("order nr 456", "456"),
                             ("ordr no: 123", "123")]:
            assert (await bot.handle(Turn(said, "/track_order", "web"))).text == "Sure — what's your order number?"
            reply = await bot.handle(Turn(said, said, "web"))
            assert (reply.source, reply.text.split(" is ")[0]) == ("action", f"Order {number}"), said
        await bot.handle(Turn("word", "/track_order", "web"))  # a word that ends in "ord" names no order
        assert (await bot.handle(Turn("word", "my password 123", "web"))).source == "fallback"
    finally:
        await bot.close()


async def test_the_demos_order_number_before_asking_where_it_has_got_to_is_looked_up(action_bot: Path,
                                                                                     tmp_path: Path) -> None:
    """"456 到哪了" ("where has 456 got to?") or Hong Kong's "456 去咗邊" named no order the pattern read: the number
    before 订单 was one, before the question where the order is was not. A sum before it still is none."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for said, number in [("456 到哪了", "456"), ("456 去咗邊", "456"), ("789到了吗？", "789"), ("123到咗未", "123")]:
            assert bot.project.entities(said) == {"order_id": number}, said
        assert bot.project.entities("300块到哪了") == {}
        for said, number in [("456 去咗邊", "456"), ("123到咗未", "123")]:  # the answer to "what's your order number?"
            await bot.handle(Turn(said, "/track_order", "web"))
            reply = await bot.handle(Turn(said, said, "web"))
            assert (reply.source, reply.text.split(" is ")[0]) == ("action", f"Order {number}"), said
    finally:
        await bot.close()


async def test_the_fallbacks_buttons_carry_the_order_number_the_customer_typed(action_bot: Path, tmp_path: Path) -> None:
    """A customer's first message "789", or "ord 789", which the classifier was unsure of, got the fallback's "Track
    order" button, and its click asked "what's your order number?": the number just typed was lost. The buttons to the
    intents that use it carry it; the person button and a message without a value are as before."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation, said in [("en", "789"), ("zh", "订单七八九")]:  # the small bot speaks English alone
            reply = await bot.handle(Turn(conversation, said, "web"))
            assert reply.source == "fallback"
            payloads = {b["payload"].split("{")[0]: b["payload"] for b in reply.buttons}
            assert payloads["/track_order"] == '/track_order{"order_id": "789"}'
            assert payloads["/cancel_order"] == '/cancel_order{"order_id": "789"}'  # its template names the order
            assert payloads["/handoff"] == "/handoff"
            reply = await bot.handle(Turn(conversation, payloads["/track_order"], "web"))
            assert (reply.source, reply.text.split("\n")[0]) == ("action", "Order 789 is **delivered**.")
        reply = await bot.handle(Turn("none", "hmm where", "web"))
        assert reply.source == "fallback" and all("{" not in b["payload"] for b in reply.buttons)
    finally:
        await bot.close()


async def test_the_fallbacks_buttons_carry_every_order_the_customer_named(action_bot: Path, tmp_path: Path) -> None:
    """"orders 123 and 456", which the classifier was unsure of, got buttons that carried order 123 alone: clicked, the
    answer was about 123, and the customer had to ask again about 456. They carry both, and the click answers both."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        reply = await bot.handle(Turn("two", "orders 123 and 456", "web"))
        assert reply.source == "fallback"
        payloads = {b["payload"].split("{")[0]: b["payload"] for b in reply.buttons}
        assert payloads["/track_order"] == '/track_order{"order_id": ["123", "456"]}'
        assert payloads["/cancel_order"] == '/cancel_order{"order_id": ["123", "456"]}'
        tracked = await bot.handle(Turn("two", payloads["/track_order"], "web"))
        assert tracked.source == "action" and "Order 123" in tracked.text and "Order 456" in tracked.text
        cancelled = await bot.handle(Turn("two", payloads["/cancel_order"], "web"))
        assert "123" in cancelled.text and "456" in cancelled.text, cancelled.text
        assert [e["value"] for e in bot.project.payload_entities('/track_order{"order_id": ["789", "no order"]}')] == [
            "789"]  # each value its patterns take, as a payload of one value
    finally:
        await bot.close()


async def test_a_message_with_an_order_number_the_classifier_leans_to_tracking_is_looked_up(
        action_bot: Path, tmp_path: Path) -> None:
    """"hi, wher is my oder 52017", track_order at 0.31 under the demo's 0.5, got the fallback, though the order number
    read in it bears the intent out: where the intent runs an action, a lean of half the threshold or more runs it
    with the value; a lower one, or a message without a value, still gets the fallback."""
    bot = make_bot(action_bot, None, {}, tmp_path)
    bot.config.thresholds.retrieval = 1.0
    said = "where is my order 789"
    try:
        bot.config.thresholds.intent = 1.0
        leaning = await bot.handle(Turn("c0", said, "web"))
        assert leaning.source == "fallback"
        bot.config.actions.map = {leaning.intent: "action_order_status"}  # the intent the small model leans to
        bot.config.thresholds.intent = leaning.confidence * 1.9  # unsure, and leaning at more than half of it
        reply = await bot.handle(Turn("c1", said, "web"))
        assert (reply.source, reply.intent, reply.text.split("\n")[0]) == (
            "action", leaning.intent, "Order 789 is **delivered**.")
        assert (await bot.handle(Turn("c2", "where is my order", "web"))).source == "fallback"
        bot.config.thresholds.intent = leaning.confidence * 2.1
        assert (await bot.handle(Turn("c3", said, "web"))).source == "fallback"
    finally:
        await bot.close()


async def test_the_answer_to_an_actions_question_goes_back_to_it_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """The demo's action asks for the order number and sets ``requested_slot``; the next message that
    carries one runs it again, even one the classifier is unsure of; any other message ends the wait. So does its
    question for the email address, postcode or phone number on the order, read by its validation action."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Sure — what's your order number?"
        assert bot.store.conversation("c1")["active_loop"] == "action_order_status"
        reply = await bot.handle(Turn("c1", "555", "web"))
        assert (reply.source, reply.intent, reply.text) == ("action", "get_refund",
                                                            "I couldn't find order 555. Could you check the number?")
        reply = await bot.handle(Turn("c1", "it's 789", "web"))  # still waiting: the action asked again
        assert (reply.source, reply.text) == ("action", "Order 789 is **delivered**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
        assert bot.store.conversation("c1")["slots"]["requested_slot"] == "order_proof"
        reply = await bot.handle(Turn("c1", "94105", "web"))  # the postcode on the order: its tracking number
        assert (reply.source, reply.intent, reply.text) == ("action", "get_refund",
                                                            "Order 789 is **delivered**. Tracking: DHL 3345678901.")
        assert bot.store.conversation("c1")["active_loop"] is None
        # answered: no longer waiting, but another order number after the action's answer is looked up too
        reply = await bot.handle(Turn("c1", "456", "web"))
        assert (reply.source, reply.text.split(".")[0]) == ("action", "Order 456 is **processing**")
        assert "Friday" not in reply.text  # proven for order 789 alone

        await bot.handle(Turn("c2", "/get_refund", "web"))
        assert (await bot.handle(Turn("c2", "/cancel_order", "web"))).source == "template"
        reply = await bot.handle(Turn("c2", "789", "web"))  # no longer the refund's lookup: the cancellation's, of 789
        assert (reply.source, reply.intent) == ("template", "cancel_order") and "cancel order 789" in reply.text

        await bot.handle(Turn("c3", "/get_refund", "web"))  # the number read out in Chinese digits: 七八九 is 789
        assert (await bot.handle(Turn("c3", "七八九", "web"))).text.startswith("Order 789 is **delivered**")
    finally:
        await bot.close()


async def test_a_proof_sent_after_another_question_goes_to_the_order_lookup_waiting_for_it(
        action_bot: Path, tmp_path: Path) -> None:
    """"what are your opening hours?" while the demo's lookup awaited the proof ended the wait, and the email address
    sent next went to the classifier (the fallback): the question for what only the validation reads stands through an
    answer in passing, a template's or the fallback's, and the proof sent after it is compared, in either language."""
    bot = make_bot(action_bot, None, {"get_refund": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation, interruption in (("c1", "what are your opening hours?"), ("c2", "/track_order")):
            await bot.handle(Turn(conversation, "/get_refund", "web"))
            assert (await bot.handle(Turn(conversation, "789", "web"))).text.startswith("Order 789 is **delivered**")
            reply = await bot.handle(Turn(conversation, interruption, "web"))
            assert reply.source in ("fallback", "template") and "Order 789" not in reply.text
            reply = await bot.handle(Turn(conversation, "sam@example.com", "web"))
            assert (reply.source, reply.text) == ("action", "Order 789 is **delivered**. Tracking: DHL 3345678901.")
            assert bot.store.conversation(conversation)["active_loop"] is None  # answered
    finally:
        await bot.close()


@pytest.mark.parametrize("waiting_for", ["number", "proof"])
async def test_another_shops_order_number_sent_while_the_lookup_waits_is_said_to_be_none_of_its_own(
        action_bot: Path, tmp_path: Path, waiting_for: str) -> None:
    """"TB-52017" alone, sent while the demo's lookup asked for the order number or the proof of order 789, got the
    fallback, which ended the wait: the lookup says whose prefix its order numbers have, and waits for one of them."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", "/track_order", "web"))
        if waiting_for == "proof":
            assert (await bot.handle(Turn("c1", "789", "web"))).text.startswith("Order 789 is **delivered**")
        reply = await bot.handle(Turn("c1", "TB-52017", "web"))
        assert reply.source == "action"
        assert reply.text.startswith("TB-52017 isn't one of our order numbers: ours start with DS")
        assert (await bot.handle(Turn("c1", "DS-456", "web"))).text.startswith("Order 456")
    finally:
        await bot.close()


async def test_a_short_follow_up_naming_another_order_asks_the_same_of_it(action_bot: Path, tmp_path: Path) -> None:
    """"那789呢" ("and 789?"), Hong Kong's "咁789呢" or "what about order 456?" after an order's status or a cancellation
    was answered asks the same of that order: no pattern read a number between a connective and 呢, and the classifier,
    unsure of a number and a particle, had the fallback answer. So does "还有一单456呢" (one more order, 456?), which was
    read as asking about "一单456", a number no pattern takes whole."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", '/track_order{"order_id": "456"}', "web"))
        reply = await bot.handle(Turn("c1", "那789呢", "web"))  # while the action waits for the proof of order 456
        assert (reply.source, reply.intent, reply.text) == ("action", "track_order",
                                                            "Order 789 is **delivered**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
        assert (await bot.handle(Turn("c1", "咁 456 呢？", "web"))).text.startswith("Order 456 is **processing**")
        for said in ("那789的呢", "789号的呢？", "咁789號嘅呢", "那个789呢",  # with 的 (Hong Kong's 嘅) after the number
                     "那「789」呢", "那789呢[捂脸]", "咁７８９呢唔該🙏", "and 789 pls?"):  # signs, emoticons, thanks
            assert (await bot.handle(Turn("c1", said, "web"))).text.startswith("Order 789 is **delivered**"), said
        # another order named before the number ("one more order, 456?"), in Hong Kong's words too, and in English
        for said in ("还有一单456呢", "另外一单456呢？", "仲有一張單 456 呢", "还有一个订单456呢", "and 456?", "also 456?",
                     "can you check 456 too", "456 as well", "再帮我查一下456", "456也查一下"):  # look at it too
            assert (await bot.handle(Turn("c1", said, "web"))).text.startswith("Order 456 is **processing**"), said
        await bot.handle(Turn("c2", '/cancel_order{"order_id": "123"}', "web"))  # answered by its template
        reply = await bot.handle(Turn("c2", "what about order 456?", "web"))
        assert (reply.source, reply.intent) == ("template", "cancel_order") and "cancel order 456" in reply.text
        # a sentence about the number is no follow-up: the classifier's
        assert (await bot.handle(Turn("c2", "那789退款呢", "web"))).source == "fallback"
        await bot.handle(Turn("c3", '/cancel_order{"order_id": "123"}', "web"))
        assert (await bot.handle(Turn("c3", "那789的退款呢", "web"))).source == "fallback"
    finally:
        await bot.close()


async def test_an_order_number_alone_after_an_answer_that_uses_it_asks_that_answer_of_it(action_bot: Path,
                                                                                          tmp_path: Path) -> None:
    """"order 123" or "789" alone after "I want a refund" or "cancel my order" was answered got order 123's status
    (the classifier, sure that "order 123" tracks an order) or "Sorry, I'm not sure I understood": a bare number went
    back only to an action that answered the message before. A message that is only the value of an entity (one of its
    patterns takes it whole), right after an answer whose intent uses that value (its action, or a template that fills
    it in), asks that intent of it, as "那789呢" does; after any other answer, the classifier's reading of it stands."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    try:
        for conversation, said in [("en", "order 123"), ("zh", "订单123"), ("en-bare", "123"), ("zh-bare", "是123")]:
            assert (await bot.handle(Turn(conversation, "/get_refund", "web"))).source == "template"
            reply = await bot.handle(Turn(conversation, said, "web"))
            assert (reply.source, reply.intent) == ("template", "get_refund"), (said, reply.text)
            assert "order 123" in reply.text, reply.text
        bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
        for conversation, said in [("c-en", "789"), ("c-zh", "七八九"), ("c-hash", "#789")]:
            assert (await bot.handle(Turn(conversation, "/cancel_order", "web"))).source == "template"
            reply = await bot.handle(Turn(conversation, said, "web"))
            assert (reply.source, reply.intent) == ("template", "cancel_order"), (said, reply.text)
            assert "cancel order 789" in reply.text, reply.text
        await bot.handle(Turn("lookup", '/track_order{"order_id": "456"}', "web"))  # after an action: that action
        assert (await bot.handle(Turn("lookup", "订单789", "web"))).text.startswith("Order 789 is **delivered**")
        templates = bot.project.responses.templates
        templates["get_refund"] = [v for v in templates["get_refund"] if not v.variables()]  # an answer for any order
        for conversation, said in [("any-en", "789"), ("any-zh", "订单789")]:
            await bot.handle(Turn(conversation, "/get_refund", "web"))
            assert (await bot.handle(Turn(conversation, said, "web"))).source == "fallback", said
    finally:
        await bot.close()


async def test_a_follow_up_about_the_other_one_asks_the_same_of_it(action_bot: Path, tmp_path: Path) -> None:
    """"what about the 456 one" after an order was looked up got "Sorry, I'm not sure I understood": "the 456 one"
    was read whole as what was asked about, which no order number pattern takes. So was "那456那个呢"."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", '/track_order{"order_id": "123"}', "web"))
        for said in ("what about the 456 one", "and the 456 one?", "what about that 456 one please", "那456那个呢",
                     "456那单呢？", "那个456那張呢"):
            reply = await bot.handle(Turn("c1", said, "web"))
            assert (reply.source, reply.intent) == ("action", "track_order"), said
            assert reply.text.startswith("Order 456 is **processing**"), (said, reply.text)
        assert (await bot.handle(Turn("c1", "what about the blue one", "web"))).source == "fallback"
    finally:
        await bot.close()


async def test_a_value_alone_of_a_bots_own_entity_continues_the_answer_that_uses_it(action_bot: Path,
                                                                                   tmp_path: Path) -> None:
    """"booking AB1234" after the answer about cancelling, which fills a booking reference in, got "Sorry, I'm not sure I
    understood", where "order 123" after a refund's answer got the refund's for order 123: the words a value alone may
    be named with were an order's. They are the bot's own: its entity's name, and the words its patterns read before
    the value; a word of none of them still asks more."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    with (root / "nlu.yml").open("a") as nlu:
        nlu.write("- regex: booking_ref\n  examples: |\n"
                  "    - (?i)(?:reservation|预订)\\s*(?:ref\\w*)?\\s*(?P<value>[A-Z]{2}\\d{4})\n"
                  "    - (?i)booking\\s*(?P<value>[A-Z]{2}\\d{4})\n    - (?P<value>[A-Z]{2}\\d{4})(?: cancelled\\?)?\n")
    responses = yaml.safe_load((root / "responses.yml").read_text())
    responses["responses"]["cancel_order"].insert(0, {"text": "I can cancel booking {booking_ref} for you."})
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    bot = make_bot(root, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for said in ("booking AB1234", "Reservation ref AB1234", "预订 AB1234", "AB1234"):
            assert (await bot.handle(Turn(said, "/cancel_order", "web"))).source == "template"
            reply = await bot.handle(Turn(said, said, "web"))
            assert (reply.source, reply.intent, reply.text) == ("template", "cancel_order",
                                                                "I can cancel booking AB1234 for you."), said
        await bot.handle(Turn("more", "/cancel_order", "web"))  # a pattern takes it whole, but it asks whether it is
        assert (await bot.handle(Turn("more", "AB1234 cancelled?", "web"))).source == "fallback"
    finally:
        await bot.close()

async def test_a_correction_of_a_mistyped_order_number_looks_the_right_one_up(action_bot: Path, tmp_path: Path) -> None:
    """"oh sorry, I meant 123" or "不是555，是456" after "I couldn't find order 555" got "Sorry, I'm not sure I
    understood": no pattern read the number after the apology, and the classifier, unsure of an apology and a number,
    had the fallback answer. A correction is the answer the action waits for; after an answer, it asks the same of the
    right number."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation, said, right in [
                ("c1", "oh sorry, I meant 123", "123"), ("c2", "oops typo, it's 789", "789"), ("c3", "actually it's 456", "456"),
                ("c4", "不好意思，打错了，是123", "123"), ("c5", "不是555，是456", "456"), ("c6", "說錯了，應該是789", "789")]:
            await bot.handle(Turn(conversation, '/track_order{"order_id": "555"}', "web"))
            reply = await bot.handle(Turn(conversation, said, "web"))
            assert (reply.source, reply.intent) == ("action", "track_order"), said
            assert reply.text.startswith(f"Order {right} is **"), (said, reply.text)
            # the number answered: what the action asks next is the proof of the order, for its tracking details
            assert bot.store.conversation(conversation)["slots"]["requested_slot"] == "order_proof"
        reply = await bot.handle(Turn("c1", "sorry, I meant 456", "web"))  # after the answer: the other order's
        assert (reply.source, reply.text.split(".")[0]) == ("action", "Order 456 is **processing**")
        for n, said in enumerate(("sorry", "actually I want a refund", "不是这个")):  # no number put right: the classifier's
            assert (await bot.handle(Turn(f"d{n}", said, "web"))).source == "fallback", said
    finally:
        await bot.close()


async def test_the_demos_order_lookup_answers_for_each_order_a_message_names(action_bot: Path, tmp_path: Path) -> None:
    """"my orders 123 and 456" was answered for order 123 alone, and the customer was left asking again for 456. The
    proof asked for then shows the details of the order it proves alone, and names the other, whose proof it still
    awaits."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", "/track_order", "web"))
        reply = await bot.handle(Turn("c1", "my orders 123 and 456", "web"))
        assert reply.text == "Order 123 is **shipped**.\nOrder 456 is **processing**.\nFor their tracking numbers and expected delivery, send me the email address, postcode or phone number on the orders."
        reply = await bot.handle(Turn("c1", "Alex@Example.com", "web"))  # order 123's email
        assert reply.text == "Order 123 is **shipped**. Tracking: UPS 1Z999AA10123456784. Expected delivery: Tuesday." \
                             "\nThat doesn't match order 456: for its tracking details, send me the email address, " \
                             "postcode or phone number on it."
        assert bot.store.conversation("c1")["active_loop"] == "action_order_status"
        reply = await bot.handle(Turn("c1", "200031", "web"))  # order 456's postcode
        assert reply.text == "Order 456 is **processing**. Expected delivery: Friday."
        assert bot.store.conversation("c1")["active_loop"] is None
        await bot.handle(Turn("c2", "/track_order", "web"))
        reply = await bot.handle(Turn("c2", "orders 555 and 789", "web"))  # one to check: its number goes back to it
        assert reply.text == "I couldn't find order 555. Could you check the number?\nOrder 789 is **delivered**."
        assert bot.store.conversation("c2")["active_loop"] == "action_order_status"
        assert (await bot.handle(Turn("c2", "sorry, 456", "web"))).text.startswith("Order 456 is **processing**")
        # the numbers alone, as the answer to its question or while a proof is awaited, each asked for once
        for conversation, first, then in (("c3", "123、456", "DS123 and ds-456"), ("c4", "订单DS123和#DS456", "123和456")):
            await bot.handle(Turn(conversation, "/track_order", "web"))
            for said in (first, then):
                reply = await bot.handle(Turn(conversation, said, "web"))
                assert reply.text.count("123") == reply.text.count("456") == 1, said
                assert reply.text.count("postcode") + reply.text.count("邮编") == 1, said
    finally:
        await bot.close()


async def test_a_follow_up_repeats_only_an_answer_that_uses_the_order_number(action_bot: Path, tmp_path: Path) -> None:
    """"那789呢" after a question whose answer names no order (the shop's opening hours, a refund policy) got that
    answer again, as though it were 789's. A follow-up asks the same again only of an intent answered by an action, or
    by a template that fills the value in; after any other, the classifier's reading of it stands."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    templates = bot.project.responses.templates
    templates["get_refund"] = [v for v in templates["get_refund"] if not v.variables()]  # an answer for any order
    try:
        for said in ("那789呢", "还有一单789呢", "what about order 789?"):
            assert (await bot.handle(Turn(said, "/get_refund", "web"))).source == "template"
            reply = await bot.handle(Turn(said, said, "web"))
            assert reply.source == "fallback", (said, reply.intent)
        await bot.handle(Turn("c2", "/cancel_order", "web"))  # its template fills the order number in
        reply = await bot.handle(Turn("c2", "那789呢", "web"))
        assert (reply.source, reply.intent) == ("template", "cancel_order") and "789" in reply.text
    finally:
        await bot.close()


async def test_a_follow_up_after_an_agents_past_answer_asks_its_intent_of_the_other_order(action_bot: Path,
                                                                                           tmp_path: Path) -> None:
    """"那789呢" after a message answered from agents' past answers got the fallback, where after a template or an
    action it asks the same of 789. The past answer is another customer's case, not 789's, and is not said again; its
    intent, which the classifier and the agents' filing agreed on, answers with its action or template. An answer
    filed under no intent, or under one with neither, says nothing of what to do for 789: the classifier's reading
    of the message stands, and its fallback offers the likeliest intents."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    del bot.project.responses.templates["get_refund"]  # an intent answered from agents' answers alone
    for conversation, intent in [("c1", "track_order"), ("c2", "cancel_order"), ("c3", None), ("c4", "get_refund")]:
        bot.store.log_exchange(Exchange(conversation, "web", None, "我的订单123怎么还没到", None,
                                        "仓库这两天爆单，预计48小时内发出。", intent, 0.4, [], "retrieval", "v0001"))
    try:
        reply = await bot.handle(Turn("c1", "那789的呢", "web"))
        assert (reply.source, reply.intent, reply.text) == ("action", "track_order",
                                                            "Order 789 is **delivered**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
        reply = await bot.handle(Turn("c2", "那789呢", "web"))
        assert (reply.source, reply.intent) == ("template", "cancel_order") and "789" in reply.text
        for conversation in ("c3", "c4"):
            reply = await bot.handle(Turn(conversation, "那789呢", "web"))
            assert reply.source == "fallback" and "爆单" not in reply.text
            assert len(reply.buttons) > 1, reply.buttons  # the likeliest intents, and a person
    finally:
        await bot.close()


async def test_the_demos_order_lookup_asked_again_says_where_the_number_is_and_offers_a_person(
        action_bot: Path, tmp_path: Path) -> None:
    """"不知道订单号" (I don't know the order number) to "what's your order number?" got the same question again, and
    again: asked a second time, the demo's lookup says where the number is and offers a person."""
    bot = make_bot(action_bot, None, {"get_refund": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation, said in [("c1", "hello"), ("c2", "你好")]:
            await bot.handle(Turn(conversation, said, "web"))
            first = await bot.handle(Turn(conversation, "/get_refund", "web"))
            again = await bot.handle(Turn(conversation, "/get_refund", "web"))  # as the classifier reads "不知道订单号"
            assert again.text != first.text and ("**Orders**" in again.text or "**订单**" in again.text)
            assert [b["payload"] for b in again.buttons] == ["/handoff"]
            assert bot.store.conversation(conversation)["active_loop"] == "action_order_status"  # a number still goes there
            assert (await bot.handle(Turn(conversation, "789", "web"))).text.startswith(("Order 789", "订单 789"))
    finally:
        await bot.close()


async def test_not_knowing_the_answer_an_action_waits_for_has_it_say_where_it_is(action_bot: Path, tmp_path: Path) -> None:
    """"I don't have it", "dunno" or "忘了" to "what's your order number?" got "Sorry, I'm not sure I understood" with
    unrelated intents to pick from, or, read as "ok", "All right. If there's anything else, just ask.", which ended
    the wait. Whatever the classifier reads in it, the action runs again: the demo's lookup says where the number is
    and offers a person, and a number given then still goes to it."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for n, said in enumerate(("I don't have it", "dunno", "sorry, I don't know the order number", "不知道订单号",
                                  "忘了", "唔記得")):
            asked = await bot.handle(Turn(f"c{n}", "/track_order", "web"))
            assert asked.text == "Sure — what's your order number?"
            reply = await bot.handle(Turn(f"c{n}", said, "web"))
            assert (reply.source, reply.intent) == ("action", "track_order"), said
            assert "**Orders**" in reply.text and [b["payload"] for b in reply.buttons] == ["/handoff"], said
            assert bot.store.conversation(f"c{n}")["active_loop"] == "action_order_status"
            assert (await bot.handle(Turn(f"c{n}", "789", "web"))).text.startswith("Order 789 is **delivered**")
        await bot.handle(Turn("d1", "/track_order", "web"))  # a question of its own is no such answer
        assert (await bot.handle(Turn("d1", "I don't know how to cancel", "web"))).source == "fallback"
    finally:
        await bot.close()


async def test_asking_about_an_order_without_its_number_says_where_it_is_at_once(action_bot: Path, tmp_path: Path) -> None:
    """"where is my order? I forgot the order number" (訂單號碼是多少 我忘記了) was asked "what's your order number?", the
    one thing the customer had just said they lacked: the demo's lookup says where the number is and offers a person at
    once, and a number given then still goes to it; not knowing where the order is asks for its number."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.nlu = SureOf(bot.nlu, "track_order")
    try:
        for n, said in enumerate(("where is my order? I forgot the order number", "I don't have my order no.",
                                  "訂單號碼是多少 我忘記了", "查订单，订单号找不到了")):
            reply = await bot.handle(Turn(f"c{n}", said, "web"))
            assert "**Orders**" in reply.text or "**订单**" in reply.text or "**訂單**" in reply.text, said
            assert [b["payload"] for b in reply.buttons] == ["/handoff"], said
            assert bot.store.conversation(f"c{n}")["active_loop"] == "action_order_status"
            assert "789" in (await bot.handle(Turn(f"c{n}", "789", "web"))).text
        for n, said in enumerate(("I don't know where my order is", "不知道订单到哪了")):
            assert (await bot.handle(Turn(f"d{n}", said, "web"))).text in ("Sure — what's your order number?",
                                                                          "好的，请问您的订单号是多少？")
    finally:
        await bot.close()


async def test_an_acknowledgement_while_an_action_waits_has_it_ask_again(action_bot: Path, tmp_path: Path) -> None:
    """"ok" or "好的[抱拳]" to "What is the order's number?" got "All right. If there's anything else, just ask." and
    ended the wait: the customer was not told the bot still needed the number, and the number then given went
    to the classifier instead of the action. The action runs again and asks again, as for a rejected value."""
    bot = make_bot(action_bot, None, {"get_refund": "action_ask_order"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "What is the order's number?"
        for text in ("ok", "好的[抱拳]"):
            reply = await bot.handle(Turn("c1", text, "web"))
            assert (reply.source, reply.intent, reply.text) == ("action", "get_refund", "What is the order's number?")
            assert bot.store.conversation("c1")["active_loop"] == "action_ask_order"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 noted."
        reply = await bot.handle(Turn("c1", "thanks", "web"))  # no longer waiting
        assert (reply.source, reply.text) == ("template", bot.config.fallback.acknowledged["en"])
    finally:
        await bot.close()


async def test_never_mind_while_an_action_waits_ends_the_wait(action_bot: Path, tmp_path: Path) -> None:
    """"never mind" to "What is the order's number?" had the action ask again, as "ok" does: the customer who
    dropped the question was pressed for its answer."""
    bot = make_bot(action_bot, None, {"get_refund": "action_ask_order"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        for conversation, text in [("c1", "never mind"), ("c2", "ok forget it"), ("c3", "算啦")]:
            await bot.handle(Turn(conversation, "/get_refund", "web"))
            reply = await bot.handle(Turn(conversation, text, "web"))
            assert (reply.source, reply.text) == ("template", bot.config.fallback.acknowledged["en"])
            assert bot.store.conversation(conversation)["active_loop"] is None
    finally:
        await bot.close()


async def test_the_answer_to_an_actions_question_is_validated_first_as_a_rasa_form_does_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As Rasa runs a form's validate_<form> on the answer to its question, deskbot runs validate_<action> (a
    FormValidationAction) before the action that asked: its validate_<slot> rejecting the value ({slot: None})
    leaves the slot empty, so the action asks again after the validation's own words. It was never run (only
    named in a warning), so an order number the shop's check refuses was taken. An action server is asked which
    actions it has (rasa-sdk's GET /actions)."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_ask_order"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "What is the order's number?"
        reply = await bot.handle(Turn("c1", "0123", "web"))
        assert (reply.source, reply.text) == ("action", "0123 is none of ours (action_ask_order).\n\n"
                                                        "What is the order's number?")
        assert bot.store.conversation("c1")["slots"]["order_id"] is None
        assert bot.store.conversation("c1")["active_loop"] == "action_ask_order"
        reply = await bot.handle(Turn("c1", "789", "web"))
        assert (reply.source, reply.text) == ("action", "Order 789 noted.")
        assert bot.store.conversation("c1")["slots"]["order_id"] == "789"
        assert "validate_action_ask_order" not in caplog.text  # it runs: not named as one that never does
        # a message that is no answer to the question runs the action as usual, without its validation
        assert (await bot.handle(Turn("c2", '/get_refund{"order_id": "0456"}', "web"))).text == "Order 0456 noted."
    finally:
        await bot.close()


async def test_an_answer_the_asking_actions_validation_extracts_goes_back_to_it_as_a_rasa_forms_does(
        action_bot: Path, tmp_path: Path) -> None:
    """Rasa runs a form's validate_<form> on every message while the form is active, so its extract_<slot> fills a
    slot no entity gives (a typed email): deskbot ran validate_<action> only on an entity's value, so a typed email
    got the fallback and ended the wait. A message it extracts nothing from is still no answer."""
    bot = make_bot(action_bot, None, {"get_refund": "action_ask_email"}, tmp_path)
    bot.project.config.actions.slots = None  # every slot an action sets is known
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "What is your email?"
        reply = await bot.handle(Turn("c1", "ada@example.invalid", "web"))
        assert (reply.source, reply.text) == ("action", "That address cannot be reached.\n\nWhat is your email?")
        reply = await bot.handle(Turn("c1", "ada@example.com", "web"))
        assert (reply.source, reply.text) == ("action", "Thanks, ada@example.com.")
        assert bot.store.conversation("c1")["active_loop"] is None
        await bot.handle(Turn("c2", "/get_refund", "web"))
        assert (await bot.handle(Turn("c2", "ok", "web"))).text == "What is your email?"  # asked again, as before
        assert (await bot.handle(Turn("c2", "why do you need it", "web"))).source == "fallback"
    finally:
        await bot.close()


SLOT_MAPPINGS_VALIDATION = """
from rasa_sdk.forms import ValidationAction


class ValidatePredefinedSlots(ValidationAction):
    def validate_order_id(self, slot_value, dispatcher, tracker, domain):
        if slot_value.startswith("0"):
            dispatcher.utter_message(text=f"{slot_value} is none of ours.")
            return {"order_id": None}
        return {"order_id": slot_value}

    def extract_gift_wrap(self, dispatcher, tracker, domain):
        return {"gift_wrap": "yes"} if "gift" in tracker.latest_message["text"] else {}
"""


async def test_a_validation_action_checks_and_extracts_the_slots_of_every_message_as_rasa_runs_it(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rasa runs action_validate_slot_mappings (a rasa-sdk ValidationAction) after every message: its validate_<slot>
    methods check what the message filled, its extract_<slot> methods fill slots of their own. deskbot only named it
    in a warning, so an order number the shop's check refuses was confirmed in a template, and kept."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "validation.py").write_text(SLOT_MAPPINGS_VALIDATION)
    bot = make_bot(root, None, {"get_refund": "action_ask_order"}, tmp_path)
    bot.project.config.actions.slots = ["gift_wrap"]
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "0456"}', "web"))
        assert reply.text.startswith("0456 is none of ours.\n\nTo cancel an order, open **Orders**")
        assert bot.store.conversation("c1")["slots"]["order_id"] is None
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "789"}', "web"))
        assert reply.text.startswith("I can cancel order 789 for you.")
        await bot.handle(Turn("c1", "a gift, please", "web"))
        assert bot.store.conversation("c1")["slots"]["gift_wrap"] == "yes"
        # an answer to an action's question that it rejects is no answer: the action asks again, as a form does
        assert (await bot.handle(Turn("c2", "/get_refund", "web"))).text == "What is the order's number?"
        reply = await bot.handle(Turn("c2", "0123", "web"))
        assert (reply.source, reply.text) == ("action", "0123 is none of ours.\n\nWhat is the order's number?")
        assert (await bot.handle(Turn("c2", "789", "web"))).text == "Order 789 noted."
        assert "action_validate_slot_mappings" not in caplog.text  # it runs: not named as one that never does
    finally:
        await bot.close()


async def test_a_null_for_an_empty_slot_is_no_answer_and_is_not_validated_as_rasa_sets_no_slot_for_it(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rasa's slot extraction sets nothing for a payload's null (/get_refund{"order_id": null}) where the slot holds
    none, so a Rasa form does not take it for an answer and no validate_<slot> sees it: deskbot handed it to
    validate_<action> and action_validate_slot_mappings as the answer, and their checks, written for Rasa's values,
    failed on it, so the customer was told the bot could not complete that instead of being asked again. A null for
    a slot that holds a value still clears it, as in Rasa."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "validation.py").write_text(SLOT_MAPPINGS_VALIDATION)
    bot = make_bot(root, None, {"get_refund": "action_ask_order"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "What is the order's number?"
        reply = await bot.handle(Turn("c1", '/get_refund{"order_id": null}', "web"))
        assert (reply.source, reply.text) == ("action", "What is the order's number?")
        assert bot.store.conversation("c1")["active_loop"] == "action_ask_order"
        assert "failed" not in caplog.text
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 noted."
        await bot.handle(Turn("c1", '/track_order{"order_id": null}', "web"))
        assert bot.store.conversation("c1")["slots"]["order_id"] is None
    finally:
        await bot.close()


SLOW_VALIDATION = """
import asyncio

from rasa_sdk import Action
from rasa_sdk.forms import ValidationAction


class ValidatePredefinedSlots(ValidationAction):
    async def validate_order_id(self, slot_value, dispatcher, tracker, domain):
        await asyncio.sleep(1.2)
        return {"order_id": slot_value}


class ActionLookUpSlowly(Action):
    def name(self):
        return "action_look_up_slowly"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(1.0)
        dispatcher.utter_message(text="Found it.")
        return []
"""


async def test_a_messages_slot_validation_and_its_action_share_the_actions_timeout(
        action_bot: Path, tmp_path: Path) -> None:
    """What the customer waits is actions.timeout: the validation of the message's slots and the action after it each
    had all of it, so a customer could wait twice as long before being told the action was slow."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "validation.py").write_text(SLOW_VALIDATION)
    bot = make_bot(root, None, {"track_order": "action_look_up_slowly"}, tmp_path)
    bot.actions.timeout = 2.0
    try:
        reply = await bot.handle(Turn("c1", '/track_order{"order_id": "789"}', "web"))
        assert reply.text == bot.config.fallback.action_slow["en"]
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text == "Found it."  # no value to validate
    finally:
        await bot.close()


async def test_an_action_servers_validation_action_is_run_after_every_message(
        action_bot: Path, aiohttp_server: Any, tmp_path: Path) -> None:
    """On an action server, deskbot runs action_validate_slot_mappings where the server lists it (GET /actions),
    its tracker ending with the slots the message filled, as rasa-sdk's slots_to_validate() reads them."""
    validated: list[list[dict[str, Any]]] = []

    async def webhook(request: web.Request) -> web.Response:
        call = await request.json()
        assert call["next_action"] == "action_validate_slot_mappings"
        validated.append([e for e in call["tracker"]["events"][-2:]])
        rejected = any(e.get("name") == "order_id" and e["value"].startswith("0") for e in validated[-1])
        return web.json_response({"responses": [{"text": "None of ours."}] if rejected else [],
                                  "events": [{"event": "slot", "name": "order_id", "value": None}] if rejected else []})

    async def actions(request: web.Request) -> web.Response:
        return web.json_response([{"name": "action_validate_slot_mappings"}])

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/actions", actions)
    server = await aiohttp_server(app)
    bot = make_bot(action_bot, f"http://127.0.0.1:{server.port}/webhook", {}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", '/cancel_order{"order_id": "0456"}', "web"))
        assert reply.text.startswith("None of ours.\n\nTo cancel an order")
        assert validated[0][-1] == {"event": "slot", "timestamp": validated[0][-1]["timestamp"], "name": "order_id",
                                    "value": "0456"}
        assert (await bot.handle(Turn("c1", "hello", "web"))).text and validated[1][-1]["event"] == "user"
    finally:
        await bot.close()


async def test_an_action_reads_every_value_a_message_gives_an_entity_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As Rasa's RegexEntityExtractor lists them: tracker.get_latest_entity_values("order_id") gave the first
    order alone, so "order 123 and order 456" cancelled one; the slot still takes the first."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_list_orders"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which orders?"
        reply = await bot.handle(Turn("c1", "order 123 and order 456, order 123 again", "web"))
        assert (reply.source, reply.text) == ("action", "Cancelling 123 and 456.")
        assert bot.store.conversation("c1")["slots"]["order_id"] == "123"
        reply = await bot.handle(Turn("c1", '/get_refund{"order_id": "789"}', "web"))  # a button's value alone
        assert (reply.source, reply.text) == ("action", "Cancelling 789.")
    finally:
        await bot.close()


async def test_an_action_reads_where_each_entity_was_said_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As Rasa lists a message's entities: with their start and end in its text, their confidence and their
    extractor; a button's values span its JSON, as Rasa's payload handler gives them. They had only entity and
    value, and an action reading e["start"] failed."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_point_at_orders"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which orders?"
        reply = await bot.handle(Turn("c1", "order 123 and #456", "web"))
        assert (reply.source, reply.text) == ("action", "123 1.0 RegexEntityExtractor; 456 1.0 RegexEntityExtractor")
        reply = await bot.handle(Turn("c1", '/get_refund{"order_id": "789"}', "web"))
        assert reply.text == '{"order_id": "789"} 1.0 None'
    finally:
        await bot.close()


async def test_an_action_reads_the_conversation_before_the_message_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """As Rasa's tracker lists them, an action reads the conversation's earlier messages and replies: its events
    held the latest message alone, so tracker.get_last_event_for("bot") was None, and an action repeating what
    the bot said, or reading what the customer asked before, failed."""
    bot = make_bot(action_bot, endpoint, {"get_refund": "action_look_back"}, tmp_path)
    try:
        first = await bot.handle(Turn("c1", '/cancel_order{"order_id": "123"}', "web"))
        assert first.source == "template"
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))
        assert reply.text.split("\n") == [
            first.text,
            'action action_session_start | session_started | action action_listen | user /cancel_order{"order_id": '
            f'"123"}} | slot order_id | action utter_cancel_order | bot {first.text} | action action_listen | '
            "user /get_refund",
            '{"order_id": "123"} cancel_order web 9']
    finally:
        await bot.close()


def test_an_acknowledgement_in_the_tracker_names_no_response_and_keeps_what_the_classifier_read() -> None:
    """"thanks" answered with fallback.acknowledged is stored with no intent: the tracker named an action
    utter_None, and the message's intent was None where Rasa's NLU names the one it read."""
    turns = [{"role": "user", "text": "thanks", "channel": "web", "created": 1.0, "buttons": [], "intent": None,
              "confidence": 0.3, "ranking": [["greet", 0.3], ["goodbye", 0.2]], "source": "template"},
             {"role": "bot", "text": "All right.", "channel": "web", "created": 1.0, "buttons": [], "intent": None,
              "confidence": None, "ranking": [], "source": None}]
    events = past_events(turns, {}, lambda text: [])
    assert [(e["event"], e.get("name")) for e in events] == [("action", "action_listen"), ("user", None), ("bot", None)]
    assert events[1]["parse_data"]["intent"] == {"name": "greet", "confidence": 0.3}


def test_a_reply_of_custom_payloads_alone_is_a_bot_event_without_text_and_with_its_payload() -> None:
    """A web reply of an action's json_message alone is stored as "[custom payload]" for the agents: a later
    action read that as what the bot said, where Rasa lists such a reply with no text, and the payload in its data
    (which a later action found nowhere)."""
    turns = [{"role": "user", "text": "show me the catalogue", "channel": "web", "created": 1.0, "buttons": [],
              "intent": "catalogue", "confidence": 0.9, "ranking": [], "source": "action"},
             {"role": "bot", "text": CUSTOM_PLACEHOLDER, "channel": "web", "created": 1.0, "buttons": [],
              "custom": [{"carousel": ["mug"]}], "intent": None, "confidence": None, "ranking": [], "source": None}]
    bot_event = past_events(turns, {"catalogue": "action_catalogue"}, lambda text: [])[-1]
    assert (bot_event["event"], bot_event["text"], bot_event["data"]) == ("bot", None, {"custom": {"carousel": ["mug"]}})


NESTED_ACTION = """
from rasa_sdk import Action

from ..wording import BYE


class Nested(Action):
    def name(self):
        return "action_nested"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=BYE)
        return []
"""


# as a Rasa project's actions import their helpers
ABSOLUTE_IMPORT_ACTION = NESTED_ACTION.replace("from ..wording import", "from actions.wording import")


def nested_actions(root: Path) -> Path:
    """``root``/actions with wording.py and orders/status.py, whose action_nested imports the other."""
    actions = root / "actions"
    (actions / "orders").mkdir(parents=True)
    (actions / "wording.py").write_text('BYE = "Bye!"\n')
    (actions / "orders" / "__init__.py").write_text("")
    (actions / "orders" / "status.py").write_text(NESTED_ACTION)
    return actions


async def said_by_nested(actions: Path) -> list[str]:
    """What action_nested of the ``actions`` folder says, run in-process."""
    runner = ActionRunner(actions, None, 5.0, {})
    try:
        call = action_call("action_nested", "c1", "hi", "greet", 1.0, [], {}, {}, {}, "web", {})
        return [m["text"] for m in (await runner.run(call)).messages]
    finally:
        await runner.close()


async def test_actions_in_a_sub_package_of_actions_are_registered(tmp_path: Path) -> None:
    """actions/orders/status.py, as rasa-sdk's server loads it: deskbot read the top-level files alone, and
    refused to start ("no class in actions/ is named so")."""
    actions = nested_actions(tmp_path)
    assert await said_by_nested(actions) == ["Bye!"]
    (actions / "orders" / "status.py").write_text("import orders_api_client\n")
    with pytest.raises(ActionError, match=r"status.py:1: cannot load the custom actions: ModuleNotFoundError"):
        ActionRunner(actions, None, 5.0, {})


async def test_two_action_classes_of_one_name_are_refused_with_both_places(tmp_path: Path) -> None:
    """A class copied into another file with its name() left as it was: rasa-sdk ran whichever it registered last,
    which hung on the files' order, and said so only at its INFO level ("Re-registered function")."""
    actions = nested_actions(tmp_path)
    assert await said_by_nested(actions) == ["Bye!"]
    (actions / "refunds.py").write_text(NESTED_ACTION.replace("class Nested", "class Refund")
                                        .replace("from ..wording", "from .wording"))
    line = NESTED_ACTION.splitlines().index("class Nested(Action):") + 1
    with pytest.raises(ActionError) as refused:
        ActionRunner(actions, None, 5.0, {})
    assert str(refused.value) == (f"{actions / 'refunds.py'}:{line}: cannot load the custom actions: class Refund is "
                                  f"named 'action_nested', as class Nested at {actions / 'orders' / 'status.py'}:{line} "
                                  "is: rename one of them")


RASA_RUNS_THESE = """
from rasa_sdk import Action
from rasa_sdk.events import SlotSet


class ActionSessionStart(Action):
    def name(self):
        return "action_session_start"

    def run(self, dispatcher, tracker, domain):
        return [SlotSet("channel_user", tracker.latest_message["metadata"].get("user"))]


class ActionTrack(Action):
    def name(self):
        return "action_track"

    def run(self, dispatcher, tracker, domain):
        return []
"""


def test_actions_rasa_runs_by_itself_are_named_at_start(action_bot: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A Rasa bot's own action_session_start and its forms' validate_<form> were loaded and never run, without
    a word; one that actions.map names runs, and is not named. A validation action checks nothing even where
    actions.map names it (deskbot has no forms, and hands it no slot values), which is said too, where the
    warning said that mapping it would run it, and it then validated nothing without a word."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))  # its actions define validate_order_form
    (root / "actions" / "rasa_runs.py").write_text(RASA_RUNS_THESE)
    project = load_project(root)
    validation = ("defines validate_order_form, rasa-sdk's slot validation of a form (FormValidationAction), "
                  "which deskbot does not run as Rasa does: bot.yml's actions.forms does not name its form")
    project.config.actions.map = {"track_order": "action_track", "greet": "action_session_start"}
    ActionRunner.for_project(project)
    assert "Rasa runs by itself" not in caplog.text and f"actions/ {validation}" in caplog.text
    caplog.clear()
    project.config.actions.map = {"track_order": "action_track", "greet": "validate_order_form"}
    ActionRunner.for_project(project)
    assert ("actions/ defines action_session_start, which Rasa runs by itself (at a session's start, on a fallback) "
            "and deskbot never does") in caplog.text and f"actions/ {validation}" in caplog.text
    caplog.clear()
    project.config.actions.endpoint = "http://127.0.0.1:5055/webhook"  # its classes unseen: by the name Rasa runs
    ActionRunner.for_project(project)
    assert "actions.map names validate_order_form, rasa-sdk's slot validation" in caplog.text
    caplog.clear()
    project.config.actions.forms = {"order_form": FormConfig(required_slots=["order_id"])}  # run as Rasa runs it
    for endpoint in ("http://127.0.0.1:5055/webhook", None):
        project.config.actions.endpoint = endpoint
        ActionRunner.for_project(project)
    assert "validate_order_form" not in caplog.text


KEPT_CLIENT_ACTIONS = """
import asyncio
import aiohttp
from pathlib import Path
from rasa_sdk import Action

session = None  # one client for every call, as an action server keeps one


class Fetch(Action):
    def name(self):
        return "action_fetch"

    async def run(self, dispatcher, tracker, domain):
        global session
        session = session or aiohttp.ClientSession()
        async with session.get(tracker.latest_message["text"]) as resp:
            dispatcher.utter_message(text=await resp.text())
        return []


class SlowRefund(Action):
    def name(self):
        return "action_slow_refund"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(1)
        Path(tracker.latest_message["text"]).write_text("refunded")
        return []
"""


async def test_async_actions_share_one_loop_and_are_cancelled_at_the_time_limit(tmp_path: Path,
                                                                                 aiohttp_server: Any) -> None:
    """Each call ran in an event loop of its own, so a client an action kept (an aiohttp session, a database
    pool) worked for the first customer and failed every later one: "Event loop is closed". And an action
    that ran out of time went on, so the refund it was told had failed was made all the same."""
    app = web.Application()
    app.router.add_get("/status", lambda request: web.Response(text="shipped"))
    server = await aiohttp_server(app)
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "kept.py").write_text(KEPT_CLIENT_ACTIONS)
    runner = ActionRunner(tmp_path / "actions", None, 0.3, {})
    try:
        url = str(server.make_url("/status"))
        for _ in range(3):
            call = action_call("action_fetch", "c1", url, "track_order", 1.0, [], {}, {}, {}, "web", {})
            assert [m["text"] for m in (await runner.run(call)).messages] == ["shipped"]
        receipt = tmp_path / "refund.txt"
        call = action_call("action_slow_refund", "c1", str(receipt), "get_refund", 1.0, [], {}, {}, {}, "web", {})
        with pytest.raises(ActionError, match="timed out"):
            await runner.run(call)
        await asyncio.sleep(1.2)
        assert not receipt.exists()
    finally:
        await runner.close()




BLOCKING_ACTIONS = """
import time
from rasa_sdk import Action


class Lookup(Action):
    def name(self):
        return "action_lookup"

    async def run(self, dispatcher, tracker, domain):
        time.sleep(1.5)  # a synchronous client in an async def run
        return []


class Greet(Action):
    def name(self):
        return "action_greet"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="hello")
        return []


class Track(Action):
    def name(self):
        return "action_track"

    def run(self, dispatcher, tracker, domain):
        time.sleep(1.2)  # an order system that does not answer, asked with no timeout
        return []
"""


async def test_an_async_action_timed_out_behind_a_blocking_one_names_the_line_that_blocks(
        tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """A blocking call in one async action held up every other, and each timed out under its own name alone: the
    log blamed actions that had done nothing wrong. One the loop never came to was also said on stderr to be
    "never awaited", as if deskbot had lost it."""
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "shop.py").write_text(BLOCKING_ACTIONS)
    runner = ActionRunner(tmp_path / "actions", None, 0.5, {})

    async def run(name: str) -> str:
        with pytest.raises(ActionError, match="timed out") as timed_out:
            await runner.run(action_call(name, "c1", "hi", "greet", 1.0, [], {}, {}, {}, "web", {}))
        return str(timed_out.value)

    try:
        blocking = asyncio.create_task(run("action_lookup"))
        await asyncio.sleep(0.1)
        held = f"the async actions' loop is held meanwhile at {tmp_path / 'actions' / 'shop.py'}:11 (time.sleep(1.5)"
        assert held in await run("action_greet")
        assert held in await blocking
    finally:
        await runner.close()
    gc.collect()  # what the loop dropped, in the cycles of the exceptions it was cancelled with
    assert [str(w.message) for w in recwarn if "never awaited" in str(w.message)] == []


async def test_async_actions_called_while_a_blocking_one_holds_their_loop_run_on_a_new_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A blocking call in an async def run (a synchronous client, time.sleep) stalled every other customer's async
    action until it returned, or until each timed out and its customer got the fallback. Those called once the loop
    has been held a while run on a new loop; the one that blocks still runs to its end, within its time limit."""
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "shop.py").write_text(BLOCKING_ACTIONS)
    runner = ActionRunner(tmp_path / "actions", None, 2.5, {})

    def call(name: str) -> dict[str, Any]:
        return action_call(name, "c1", "hi", "greet", 1.0, [], {}, {}, {}, "web", {})

    try:
        blocking = asyncio.create_task(runner.run(call("action_lookup")))
        await asyncio.sleep(0.8)
        greeted = await runner.run(call("action_greet"))
        assert not blocking.done()  # answered while the blocking one still ran
        assert [m["text"] for m in greeted.messages] == ["hello"]
        await blocking  # not given up on: it answers within its time limit
        said = [r.getMessage() for r in caplog.records if "holds the async actions' loop" in r.getMessage()]
        assert len(said) == 1 and f"{tmp_path / 'actions' / 'shop.py'}:11 (time.sleep(1.5)" in said[0]
        assert (await runner.run(call("action_greet"))).messages  # and the new loop serves on
    finally:
        await runner.close()


async def test_a_plain_action_that_times_out_names_the_line_it_still_waits_at(tmp_path: Path) -> None:
    """A hung action's timeout named the action alone, and not the call it waited on."""
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "shop.py").write_text(BLOCKING_ACTIONS)
    line = 1 + BLOCKING_ACTIONS.splitlines().index("        time.sleep(1.2)  # an order system that does not "
                                                         "answer, asked with no timeout")
    runner = ActionRunner(tmp_path / "actions", None, 0.3, {})
    try:
        with pytest.raises(ActionError, match="timed out") as timed_out:
            await runner.run(action_call("action_track", "c1", "where is it", "track_order", 1.0, [], {}, {}, {}, "web",
                                         {}))
        assert f"; it runs on, at {tmp_path / 'actions' / 'shop.py'}:{line} (time.sleep(1.2)" in str(timed_out.value)
    finally:
        await runner.close()


async def test_actions_import_their_helpers_from_the_actions_package_as_in_rasa(tmp_path: Path) -> None:
    """``from actions.helpers import ...``, which rasa-sdk's server loads, stopped the bot from starting
    ("No module named 'actions'"); a second bot's folder loaded in the same process brings its own helpers."""
    answers = []
    for shop, bye in [("first", "Bye!"), ("second", "再见！")]:
        actions = tmp_path / shop / "actions"
        actions.mkdir(parents=True)
        (actions / "wording.py").write_text(f"BYE = {bye!r}\n")
        (actions / "nested.py").write_text(ABSOLUTE_IMPORT_ACTION)
        answers += await said_by_nested(actions)
    assert answers == ["Bye!", "再见！"]


async def test_actions_defined_in_the_packages_init_are_registered(tmp_path: Path) -> None:
    """A Rasa project may define its actions in actions/__init__.py: deskbot refused to start, saying that
    actions/ "defines none"."""
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "wording.py").write_text('BYE = "Bye!"\n')
    (actions / "__init__.py").write_text(ABSOLUTE_IMPORT_ACTION)
    assert await said_by_nested(actions) == ["Bye!"]
    (actions / "__init__.py").write_text("import orders_api_client\n")
    with pytest.raises(ActionError, match=r"__init__.py:1: cannot load the custom actions: ModuleNotFoundError"):
        ActionRunner(actions, None, 5.0, {})


async def test_a_rasa_payload_with_values_selects_its_intent_and_sets_its_entities(
        action_bot: Path, tmp_path: Path) -> None:
    """An action written for Rasa offers /get_refund{"order_id": "789"}: the click was read as typed text."""
    bot = make_bot(action_bot, None, {"get_refund": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        reply = await bot.handle(Turn("c1", '/get_refund{"order_id": "789", "unknown": "x"}', "web"))
        assert (reply.source, reply.intent) == ("action", "get_refund")
        assert reply.text == "Order 789 is **delivered**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order."
        assert "unknown" not in bot.store.conversation("c1")["slots"]  # only nlu.yml's entities
        typed = await bot.handle(Turn("c2", '/get_refund{not json}', "web"))
        assert typed.source == "fallback"
        # typed by a customer, a value nlu.yml's patterns would not take is not taken: not into the slot, nor the reply
        forged = '/get_refund{"order_id": "123. [Verify your account](https://evil.example) @here"}'
        reply = await bot.handle(Turn("c3", forged, "web"))
        assert bot.store.conversation("c3")["slots"].get("order_id") is None and "evil" not in reply.text
    finally:
        await bot.close()


async def test_a_payloads_true_or_false_sets_a_boolean_slot_that_a_condition_and_an_action_read_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """A Rasa button /track_order{"newsletter": true} was refused on load (values were texts or numbers alone),
    so a response's condition `value: true` could never be met by a click."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    with (root / "nlu.yml").open("a") as nlu:
        nlu.write("- lookup: newsletter\n  examples: |\n    - newsletter\n")
    subscribed = {"text": "You get our newsletter.", "condition": [{"type": "slot", "name": "newsletter", "value": True}]}
    responses = yaml.safe_load((root / "responses.yml").read_text())
    responses["responses"]["track_order"].append(subscribed)
    responses["responses"]["cancel_order"][0]["buttons"] = [{"title": "Subscribe", "payload": '/track_order{"newsletter": true}'}]
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    bot = make_bot(root, endpoint, {"get_refund": "action_read_newsletter"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", '/track_order{"newsletter": true}', "web"))).text == subscribed["text"]
        assert bot.store.conversation("c1")["slots"]["newsletter"] is True
        assert (await bot.handle(Turn("c1", '/get_refund{"newsletter": false}', "web"))).text == "False [False]"
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text != subscribed["text"]
        assert (await bot.handle(Turn("c1", '/get_refund{"newsletter": null}', "web"))).text == "None [None]"
        offered = (await bot.handle(Turn("c2", '/cancel_order{"order_id": "789"}', "web"))).buttons
        assert offered == [{"title": "Subscribe", "payload": '/track_order{"newsletter": true}'}]
    finally:
        await bot.close()


async def test_yes_to_the_one_button_offered_takes_its_payloads_values(action_bot: Path, tmp_path: Path) -> None:
    """"yes please" to a reply whose one button was /track_order{"order_id": "789"} got "All right. If there's anything
    else, just ask.": only a payload without values was taken up as the button's click."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    responses = yaml.safe_load((root / "responses.yml").read_text())
    responses["responses"]["cancel_order"][1]["buttons"] = [{"title": "Track it", "payload": '/track_order{"order_id": "789"}'}]
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    bot = make_bot(root, None, {"track_order": "action_order_status"}, tmp_path)
    try:
        assert [b["title"] for b in (await bot.handle(Turn("c1", "/cancel_order", "web"))).buttons] == ["Track it"]
        reply = await bot.handle(Turn("c1", "yes please", "web"))
        assert (reply.source, reply.intent, reply.text.split("\n")[0]) == ("action", "track_order",
                                                                           "Order 789 is **delivered**.")
    finally:
        await bot.close()


async def test_the_demo_action_asks_which_order_when_asked_again_without_a_number(action_bot: Path, tmp_path: Path) -> None:
    """"check my order" after order 789 was looked up answered for order 789 again, though the customer may have meant
    another: the order remembered is offered as a button ("yes please" takes it), and a number typed instead is looked
    up. A request that names the order, or answers the action's own question, is answered at once as before."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    which = "Order 789 again, or another one? Choose it below, or type the other order's number."
    try:
        assert (await bot.handle(Turn("c1", '/track_order{"order_id": "789"}', "web"))).text.startswith("Order 789 is")
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.text, reply.buttons) == (which, [{"title": "Order 789", "payload": '/track_order{"order_id": "789"}'}])
        assert (await bot.handle(Turn("c1", "yes please", "web"))).text.startswith("Order 789 is **delivered**")
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text == which
        assert (await bot.handle(Turn("c1", "456", "web"))).text.startswith("Order 456 is **processing**")
        assert (await bot.handle(Turn("c1", '/track_order{"order_id": "456"}', "web"))).text.startswith("Order 456 is")
    finally:
        await bot.close()


async def test_the_demo_action_does_not_ask_a_third_time_for_a_number_the_customer_does_not_have(
        action_bot: Path, tmp_path: Path) -> None:
    """A second "dunno" to "what's your order number?" got the same words as the first, and a third again: the
    second ends the wait, offering a person, and a number given later is still looked up."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text == "Sure — what's your order number?"
        first = await bot.handle(Turn("c1", "dunno", "web"))
        assert first.text.startswith("I need the order number") and first.buttons[0]["payload"] == "/handoff"
        second = await bot.handle(Turn("c1", "I don’t know", "web"))
        assert second.text.startswith("No problem: without the number") and second.text != first.text
        assert second.buttons == first.buttons and bot.store.conversation("c1")["active_loop"] is None
        assert (await bot.handle(Turn("c1", "order 456", "web"))).text.startswith("Order 456 is **processing**")
    finally:
        await bot.close()


async def test_the_demo_shows_an_orders_tracking_number_only_to_who_proves_it_is_theirs(action_bot: Path,
                                                                                          tmp_path: Path) -> None:
    """Anyone who typed an order number, theirs or a guessed one, was shown its tracking number and delivery day. The
    status is shown to anyone; the details once the email address, postcode or phone number on the order is given, not before nor
    after a wrong one, and, after three wrong ones in the conversation, not even for the right one: no guessing."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    tracking, prompt = "DHL 3345678901", "send me the email address, postcode or phone number on the order"
    try:
        reply = await bot.handle(Turn("c1", '/track_order{"order_id": "789"}', "web"))
        assert reply.text.startswith("Order 789 is **delivered**.") and prompt in reply.text and tracking not in reply.text
        for wrong in ("94106", "someone@example.com"):  # asked again, and still nothing but the status
            reply = await bot.handle(Turn("c1", wrong, "web"))
            assert reply.text.startswith("That doesn't match the order.") and tracking not in reply.text, wrong
        reply = await bot.handle(Turn("c1", "my postcode is 94105", "web"))
        assert reply.text == f"Order 789 is **delivered**. Tracking: {tracking}."
        slots = bot.store.conversation("c1")["slots"]
        assert slots["orders_proven"] == ["789"] and slots["order_proof"] is None  # the proof itself is not kept
        assert bot.store.conversation("c1")["active_loop"] is None
        assert (await bot.handle(Turn("c1", "789", "web"))).text == f"Order 789 is **delivered**. Tracking: {tracking}."

        await bot.handle(Turn("c2", '/track_order{"order_id": "789"}', "web"))
        for n, wrong in enumerate(("94106", "a@example.com", "10001")):
            reply = await bot.handle(Turn("c2", wrong, "web"))
            assert tracking not in reply.text
        assert reply.text.startswith("That doesn't match either") and reply.buttons[0]["payload"] == "/handoff"
        reply = await bot.handle(Turn("c2", '/track_order{"order_id": "789"}', "web"))
        assert reply.text == "Order 789 is **delivered**.\nFor its tracking details, try again in 15 minutes, or a " \
                             "person can help now."
        reply = await bot.handle(Turn("c2", "94105", "web"))  # no more guesses are compared, and none is counted
        assert reply.text == "For its tracking details, try again in 15 minutes, or a person can help now."

        await bot.handle(Turn("c3", '/track_order{"order_id": "789"}', "web"))
        reply = await bot.handle(Turn("c3", "I don't have it", "web"))  # no proof to give: a person
        assert reply.text.startswith("All right. Without the email address, postcode or phone number") and tracking not in reply.text
        assert reply.buttons[0]["payload"] == "/handoff"

        # the proof found after "I don't have it" is compared, not left to the classifier: the wait stays open
        reply = await bot.handle(Turn("c3", "sam @ example. com", "web"))
        assert reply.text == f"Order 789 is **delivered**. Tracking: {tracking}."

        await bot.handle(Turn("c5", '/track_order{"order_id": "789"}', "web"))
        for _ in range(2):  # said twice, "I don't have it" ends the wait: a person is offered
            reply = await bot.handle(Turn("c5", "I don't have it", "web"))
            assert reply.buttons[0]["payload"] == "/handoff"
        assert bot.store.conversation("c5")["slots"]["requested_slot"] is None

        for text, said in (("thanks!", "You're welcome!"), ("ok, got it", "All right.")):  # done: the bot's own answer
            await bot.handle(Turn(f"c4{text}", '/track_order{"order_id": "789"}', "web"))
            reply = await bot.handle(Turn(f"c4{text}", text, "web"))
            assert (reply.text, reply.buttons) == (said, []), text
            assert bot.store.conversation(f"c4{text}")["active_loop"] is None
    finally:
        await bot.close()


def test_the_demo_action_asks_a_chinese_customer_for_the_proof_in_chinese(action_bot: Path, tmp_path: Path) -> None:
    """The question for the proof, a wrong one, the last wrong one and the details are in the conversation's language;
    a postcode in a message that names an order is that order's number, not a proof; a proof is compared whatever
    its spacing and case; and a proof slot set after the last miss shows nothing."""
    orders = demo_orders(action_bot, tmp_path)

    def run(action: Any, slots: dict[str, Any], text: str) -> tuple[str, list[Any]]:
        dispatcher = CollectingDispatcher()
        latest = {"text": text, "entities": [], "intent": {"name": "track_order"}}
        events = action.run(dispatcher, Tracker("c1", {"language": "zh", **slots}, latest, [], False, None, {}, None), {})
        return (dispatcher.messages[0]["text"] if dispatcher.messages else ""), events

    said, events = run(orders.ActionOrderStatus(), {"order_id": "456"}, "订单456到哪了")
    assert said == "订单 456 的状态：**处理中**。\n如需查看物流单号和预计送达时间，请发送订单上的邮箱、邮编或手机号。"
    assert SlotSet("requested_slot", "order_proof") in events and SlotSet("orders_unproven", ["456"]) in events
    waiting = {"order_id": "456", "requested_slot": "order_proof", "orders_unproven": ["456"]}
    validate = orders.ValidateActionOrderStatus()
    assert run(validate, waiting, "邮编是 200031")[1] == [SlotSet("order_proof", "200031")]
    assert run(validate, waiting, "我的邮箱LI.WEI@example.cn谢谢")[1] == [SlotSet("order_proof", "LI.WEI@example.cn")]
    assert run(validate, waiting, "订单 200031")[1] == []  # an order number
    assert run(validate, {"order_id": "456"}, "200031")[1] == []  # no proof asked for
    said, events = run(orders.ActionOrderStatus(), {**waiting, "order_id": "200031", "order_proof": "200032"}, "200032")
    assert said == "与订单信息不符。请核对后，再发送一次订单上的邮箱、邮编或手机号。"
    assert SlotSet("order_id", "456") in events and SlotSet("order_proof_misses", 1) in events
    said, events = run(orders.ActionOrderStatus(), {**waiting, "order_proof": "li.wei@EXAMPLE.cn "}, "li.wei@EXAMPLE.cn")
    assert said == "订单 456 的状态：**处理中**。预计送达：周五。"
    assert SlotSet("orders_proven", ["456"]) in events and SlotSet("order_proof", None) in events
    said, _ = run(orders.ActionOrderStatus(), {**waiting, "order_proof": "200031", "order_proof_misses": 2}, "200031")
    assert said == "订单 456 的状态：**处理中**。预计送达：周五。"  # right at the last try
    said, events = run(orders.ActionOrderStatus(), {**waiting, "order_proof": "999999", "order_proof_misses": 2}, "x")
    assert said == "还是与订单信息不符，15 分钟内我这边无法再核对。之后可以再试一次，也可以现在转人工客服帮您查询。"
    assert SlotSet("requested_slot", "order_proof") in events
    locked = {"order_proof_retry_at": time.time() + 60}
    said, events = run(orders.ActionOrderStatus(), {**waiting, "order_proof": "200031", **locked}, "200031")
    assert said == "如需物流详情，请在 1 分钟后再试，也可以现在转人工客服帮您查询。"  # not compared, so no mismatch
    assert SlotSet("requested_slot", "order_proof") in events  # a proof once the lock opens is compared

def demo_turn(action: Any, slots: dict[str, Any], text: str, entities: list[dict[str, Any]] | None = None,
              intent: str = "track_order", conversation: str = "c1") -> tuple[list[dict[str, Any]], list[Any]]:
    """What the demo's ``action`` says (its messages) and returns for the customer's ``text``, read as ``intent`` with
    ``entities``, in a conversation whose slots are ``slots``."""
    dispatcher = CollectingDispatcher()
    latest = {"text": text, "entities": entities or [], "intent": {"name": intent}}
    events = action.run(dispatcher, Tracker(conversation, slots, latest, [], False, None, {}, None), {})
    return dispatcher.messages, events


@pytest.mark.parametrize(("order", "answer"), [
    ("789", "+1 (415) 555-0132"), ("789", "my phone is 415.555.0132"), ("789", "1-415-555-0132"),
    ("789", "last four digits: 0132"), ("456", "13800138000"), ("456", "+86 138 0013 8000"), ("456", "0086-138-0013-8000"),
    ("456", "手机尾号８０００。"), ("456", "我的手机号是１３８ ００１３ ８０００，谢谢"), ("123", "020 7946 0958"),
    ("123", "+44 (0)20 7946 0958"), ("123", "0044 20 7946 0958")])
def test_the_demo_takes_the_phone_number_on_the_order_or_its_last_four_digits_as_its_proof(
        action_bot: Path, tmp_path: Path, order: str, answer: str) -> None:
    """Only the email address or postcode proved an order was the customer's, though a phone number is what many give
    first (couriers find parcels by it): the phone number on the order, however grouped and with or without its
    country's code, or its last four digits, prove it too; a near miss does not."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": order, "requested_slot": "order_proof", "orders_unproven": [order]}
    [read] = demo_turn(orders.ValidateActionOrderStatus(), waiting, answer)[1]
    proof = read["value"]
    said, events = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": proof}, answer)
    assert "Expected delivery" in said[0]["text"] or "Tracking" in said[0]["text"], (answer, proof)
    assert SlotSet("orders_proven", [order]) in events
    near = re.sub(r"\d(?=\D*$)", lambda digit: str((int(digit[0]) + 1) % 10), proof)  # its last digit one off
    said, _ = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": near}, near)
    assert said[0]["text"].startswith("That doesn't match the order."), near


@pytest.mark.parametrize("answer", ["sam@example。com", "邮箱：sam @ example.com", "ｓａｍ＠ｅｘａｍｐｌｅ．ｃｏｍ。",
                                    "SAM@EXAMPLE。COM，谢谢", "it's Sam@Example.com.", "sam@example. com",
                                    "sam @ example . com", "邮箱 sam@example 。 com", "sam@example.com. Thanks"])
def test_the_demo_reads_an_email_typed_on_a_chinese_keyboard_or_with_spaces_as_its_proof(action_bot: Path,
                                                                                        tmp_path: Path, answer: str) -> None:
    """An email address typed with the 。 a keyboard in Chinese mode types for its dot, or with spaces around its @ or
    its domain's dot, was no proof at all: the customer's answer went to the classifier, and the wait for it ended. It is read as the
    address, in full-width letters and any case too."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    [read] = demo_turn(orders.ValidateActionOrderStatus(), waiting, answer)[1]
    assert read["value"].casefold() == "sam@example.com"
    said, _ = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": read["value"]}, answer)
    assert said[0]["text"] == "Order 789 is **delivered**. Tracking: DHL 3345678901."


@pytest.mark.parametrize(("language", "text", "numbers", "said"), [
    ("en", "where is order 789? my email is Sam@Example.com", ["789"],
     "Order 789 is **delivered**. Tracking: DHL 3345678901."),
    ("zh", "订单789到哪了，手机 +1 415 555 0132", ["789"], "订单 789 的状态：**已送达**。物流单号：DHL 3345678901。"),
    ("en", "order 789, sam@example.org", ["789"], "Order 789 is **delivered**.\nThat doesn't match the order. Please "
     "check it and send the email address, postcode or phone number on the order again."),
    ("en", "orders 123 and 789, email sam@example.com", ["123", "789"], "Order 123 is **shipped**.\nOrder 789 is "
     "**delivered**. Tracking: DHL 3345678901.\nThat doesn't match order 123: for its tracking details, send me the "
     "email address, postcode or phone number on it."),
    ("en", "order 789, I emailed support@demoshop.com", ["789"], "Order 789 is **delivered**.\nFor its tracking number "
     "and expected delivery, send me the email address, postcode or phone number on the order."),
    ("en", "order 789 - I wrote to help@courier.example and SUPPORT@DemoShop.com, mine is sam@example.com", ["789"],
     "Order 789 is **delivered**. Tracking: DHL 3345678901."),
    ("zh", "订单789，我已经发邮件给 help@courier.example 了", ["789"],
     "订单 789 的状态：**已送达**。\n如需查看物流单号和预计送达时间，请发送订单上的邮箱、邮编或手机号。")])
def test_the_demo_compares_a_proof_given_with_the_order_number_at_once(action_bot: Path, tmp_path: Path, language: str,
                                                                     text: str, numbers: list[str], said: str) -> None:
    """"where is order 789? my email is sam@example.com" was answered with the status and "send me the email address
    or postcode on the order", which the customer had just sent: an email address or phone number beside the order's
    number is compared at once, and a wrong one counts as one. The shop's own address, or one the customer says they
    wrote to ("I emailed support@demoshop.com"), is no proof, and no wrong one."""
    orders = demo_orders(action_bot, tmp_path)
    read = [{"entity": "order_id", "value": number} for number in numbers]
    messages, events = demo_turn(orders.ActionOrderStatus(), {"order_id": numbers[0], "language": language}, text, read)
    assert [message["text"] for message in messages] == [said]
    proven = "Tracking:" in said or "物流单号：" in said
    assert (SlotSet("orders_proven", ["789"]) in events) == proven
    missed = not proven and "match" in said
    assert any(event["name"] == "order_proof_misses" and event["value"] == 1 for event in events) == missed


def test_the_demo_takes_no_address_the_customer_wrote_to_for_the_proof_it_waits_for(action_bot: Path,
                                                                                  tmp_path: Path) -> None:
    """"I emailed support@demoshop.com" while the proof was awaited was compared as the proof, and counted as a wrong
    one: the shop's own addresses and those the customer wrote to are not read; their own beside them is."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    validate = orders.ValidateActionOrderStatus()
    assert demo_turn(validate, waiting, "I emailed support@demoshop.com yesterday")[1] == []
    assert demo_turn(validate, waiting, "我联系了 help@courier.example")[1] == []
    assert demo_turn(validate, waiting, "I contacted help@courier.example, my email is sam@example.com")[1] \
        == [SlotSet("order_proof", "sam@example.com")]


@pytest.mark.parametrize(("answer", "proves"), [("94105-1234", True), ("my zip is 94105-0001, thanks", True),
                                              ("94106-1234", False)])
def test_the_demo_takes_a_zip_code_with_its_four_digits_after_it_as_the_zip_code(action_bot: Path, tmp_path: Path,
                                                                                 answer: str, proves: bool) -> None:
    """A US customer's ZIP+4 (94105-1234) was read as a phone number of nine digits, and so matched no order: it proves
    the order whose ZIP code it begins with."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    [read] = demo_turn(orders.ValidateActionOrderStatus(), waiting, answer)[1]
    said, _ = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": read["value"]}, answer)
    assert ("Tracking: DHL 3345678901" in said[0]["text"]) == proves, said


@pytest.mark.parametrize(("order", "answer"), [
    ("789", "the postcode on the order is 94105"), ("456", "订单上的邮编是200031。"), ("456", "订单的手机尾号是8000"),
    ("789", "zip on my order: 94105"), ("123", "the order's post code is sw1a 1aa")])
def test_the_demo_reads_a_proof_named_as_the_order_s_as_its_proof(action_bot: Path, tmp_path: Path, order: str,
                                                                  answer: str) -> None:
    """Asked for "the email address, postcode or phone number on the order", a customer who answered in its words
    ("the postcode on the order is 94105", "订单上的邮编是200031") gave no proof: a message naming an order was read as
    giving an order's number. One that names the proof it gives is read for it."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": order, "requested_slot": "order_proof", "orders_unproven": [order]}
    [read] = demo_turn(orders.ValidateActionOrderStatus(), waiting, answer)[1]
    said, events = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": read["value"]}, answer)
    assert SlotSet("orders_proven", [order]) in events, said


@pytest.mark.parametrize("answer", ["I bought it in 2026 and forgot the email", "sorry, it was 2 weeks ago at 1130"])
def test_the_demo_takes_no_four_digits_that_are_not_a_phone_numbers_for_a_proof(action_bot: Path, tmp_path: Path,
                                                                                answer: str) -> None:
    """Any four digits in the answer (a year, a time) were read as a phone number's last four, and counted as a wrong
    proof: four digits are one alone, or where the message names a phone number."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    assert demo_turn(orders.ValidateActionOrderStatus(), waiting, answer)[1] == []
    assert demo_turn(orders.ValidateActionOrderStatus(), waiting, "0132!")[1] == [SlotSet("order_proof", "0132")]


def test_the_demo_reads_a_long_number_beside_order_as_the_orders_not_a_phone_number(action_bot: Path,
                                                                                  tmp_path: Path) -> None:
    """A number of seven digits or more after "order" is an order's number; written as a phone number is, it is one."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    assert demo_turn(orders.ValidateActionOrderStatus(), waiting, "order 1234567")[1] == []
    assert demo_turn(orders.ValidateActionOrderStatus(), waiting, "the phone on the order is +1 415 555 0132")[1] \
        == [SlotSet("order_proof", "+1 415 555 0132")]


def test_an_order_number_typed_while_the_proof_is_awaited_looks_that_order_up(action_bot: Path, tmp_path: Path) -> None:
    """"52017", typed to look that order up while the proof of order 789 was awaited, was read as a postcode: "That
    doesn't match the order", a wrong proof counted against 789. A known order's number that proves none of the orders
    awaited is a new lookup of it, and no wrong proof."""
    orders = demo_orders(action_bot, tmp_path)
    waiting = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    [read] = demo_turn(orders.ValidateActionOrderStatus(), waiting, "52017")[1]
    said, events = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_id": "52017", "order_proof": read["value"]},
                             "52017", [{"entity": "order_id", "value": "52017"}])
    assert said[0]["text"] == "Order 52017 is **shipped**.\nFor its tracking number and expected delivery, send me " \
                              "the email address, postcode or phone number on the order."
    assert SlotSet("orders_unproven", ["52017"]) in events and SlotSet("order_proof", None) in events
    assert not any(event["name"] == "order_proof_misses" for event in events)
    assert orders.looked_up(["789"])["789"]["proof_misses"] == 0
    said, _ = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": "518000"}, "518000")  # 52017's postcode
    assert said[0]["text"].startswith("That doesn't match the order."), "a postcode, not an order's number, is a proof"


async def test_an_order_number_typed_while_the_proof_is_awaited_looks_that_order_up_in_the_bot(action_bot: Path,
                                                                                              tmp_path: Path) -> None:
    """The same through the bot, where the order pattern reads "52017" as an order number and the validation action as
    a postcode; a postcode then proves the order asked about."""
    bot = make_bot(action_bot, None, {"track_order": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        await bot.handle(Turn("c1", '/track_order{"order_id": "789"}', "web"))
        reply = await bot.handle(Turn("c1", "52017", "web"))
        assert reply.text.startswith("Order 52017 is **shipped**.\nFor its tracking number"), reply.text
        reply = await bot.handle(Turn("c1", "518000", "web"))
        assert reply.text == "Order 52017 is **shipped**. Tracking: SF 1234567890123. Expected delivery: Thursday."
    finally:
        await bot.close()


def test_a_postcode_that_proves_the_order_awaited_is_its_proof_though_it_is_an_orders_number_too(
        action_bot: Path, tmp_path: Path) -> None:
    """Digits that are both the postcode on the order awaited and another order's number prove the order: the customer
    answered the question asked."""
    orders = demo_orders(action_bot, tmp_path)
    with orders.orders_db() as conn:  # an order whose number is order 456's postcode
        conn.execute("INSERT INTO orders (id, status) VALUES ('200031', 'processing')")
    waiting = {"order_id": "200031", "requested_slot": "order_proof", "orders_unproven": ["456"], "language": "zh"}
    said, events = demo_turn(orders.ActionOrderStatus(), {**waiting, "order_proof": "200031"}, "200031",
                             [{"entity": "order_id", "value": "200031"}])
    assert said[0]["text"] == "订单 456 的状态：**处理中**。预计送达：周五。"
    assert SlotSet("orders_proven", ["456"]) in events and SlotSet("order_id", "456") in events


@pytest.mark.parametrize(("language", "unproven", "proof", "said"), [
    ("en", ["123", "789"], "sam@example.com", "Order 789 is **delivered**. Tracking: DHL 3345678901.\nThat doesn't "
     "match order 123: for its tracking details, send me the email address, postcode or phone number on it."),
    ("en", ["123", "456", "789"], "94105", "Order 789 is **delivered**. Tracking: DHL 3345678901.\nThat doesn't match "
     "orders 123 and 456: for their tracking details, send me the email address, postcode or phone number on them."),
    ("zh", ["123", "456", "789"], "Sam@Example.com", "订单 789 的状态：**已送达**。物流单号：DHL 3345678901。\n"
     "这与订单 123、456 的信息不符：如需其物流详情，请发送该订单上的邮箱、邮编或手机号。")])
def test_a_proof_of_some_of_the_orders_asked_about_names_those_it_does_not_prove(
        action_bot: Path, tmp_path: Path, language: str, unproven: list[str], proof: str, said: str) -> None:
    """A proof that matched one of two orders showed that one's details and said nothing of the other, as though the
    customer had seen all they asked for: the orders it does not prove are named, and their proof still awaited."""
    orders = demo_orders(action_bot, tmp_path)
    slots = {"language": language, "order_id": unproven[-1], "requested_slot": "order_proof",
             "orders_unproven": unproven, "order_proof": proof}
    messages, events = demo_turn(orders.ActionOrderStatus(), slots, proof)
    assert [message["text"] for message in messages] == [said]
    assert SlotSet("orders_unproven", unproven[:-1]) in events and SlotSet("requested_slot", "order_proof") in events
    assert SlotSet("orders_proven", ["789"]) in events


@pytest.mark.parametrize("language, text, intent", [("en", "thanks", "thank_you"), ("en", "ok", "acknowledge"),
                                                    ("zh", "谢谢", "thank_you"), ("zh", "好的", "acknowledge")])
def test_the_demo_action_thanks_a_customer_who_is_done_rather_than_asking_for_the_proof(
        action_bot: Path, tmp_path: Path, language: str, text: str, intent: str) -> None:
    """The proof is optional, but "thanks" or "ok" right after the order's status, while the proof was awaited, got
    "All right. Without the email address, postcode or phone number…" with a person: the customer, done, gets the bot's own answer
    to a thank-you or an acknowledgement (the demo's template of its intent, in their language), and the wait ends."""
    orders = demo_orders(action_bot, tmp_path)
    dispatcher = CollectingDispatcher()
    latest = {"text": text, "entities": [], "intent": {"name": intent}}
    slots = {"language": language, "order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    events = orders.ActionOrderStatus().run(dispatcher, Tracker("c1", slots, latest, [], False, None, {}, None), {})
    assert [message["response"] for message in dispatcher.messages] == [f"utter_{intent}"]
    assert not any(message["buttons"] for message in dispatcher.messages)
    assert SlotSet("requested_slot", None) in events and SlotSet("orders_unproven", None) in events
    templates = load_project(Path(__file__).parents[1] / "bot" / "demo").responses.templates[intent]
    assert any((variant.language or "en") == language for variant in templates)  # said in the customer's language


@pytest.mark.parametrize(("text", "response"), [
    ("thanks!", "utter_thank_you"), ("Thank you so much 🙏", "utter_thank_you"), ("OK, got it.", "utter_acknowledge"),
    ("ｏｋ", "utter_acknowledge"), ("好的。", "utter_acknowledge"), ("谢谢！", "utter_thank_you"),
    ("好的，谢谢", "utter_thank_you"), ("唔該晒", "utter_thank_you"), ("ok, where is it?", None), ("I don't have it", None)])
def test_the_demo_action_knows_thanks_and_ok_itself_whatever_the_classifier_read(
        action_bot: Path, tmp_path: Path, text: str, response: str | None) -> None:
    """"thanks" or "好的" while the proof was awaited got its template only where the classifier read it as thanks or
    an acknowledgement, which a Rasa action server cannot check: read as another intent (track_order here), it got "All
    right. Without the email address…" and a person. The action reads such a message itself; any other still ends the
    wait with a person offered."""
    orders = demo_orders(action_bot, tmp_path)
    slots = {"order_id": "789", "requested_slot": "order_proof", "orders_unproven": ["789"]}
    said, events = demo_turn(orders.ActionOrderStatus(), slots, text, intent="track_order")
    assert [message["response"] for message in said] == [response]
    assert bool(said[0]["buttons"]) == (response is None)  # a person offered only where the customer is not done
    # the wait ends once they are done; it stays open for a proof they may find next
    assert SlotSet("requested_slot", None if response else "order_proof") in events


@pytest.mark.parametrize("language, said", [
    ("en", ["For their tracking numbers and expected delivery, send me the email address, postcode or phone number on the orders.",
            "For their tracking details, try again in a minute, or a person can help now.",
            "That doesn't match the orders. Please check it and send the email address, postcode or phone number on the orders again.",
            "That doesn't match either, so I can't check another here for 15 minutes: then you can try again, or a "
            "person can help now.",
            "All right. Without the email address, postcode or phone number on the orders I can't show their tracking details here, "
            "but a person can help."]),
    ("zh", ["如需查看物流单号和预计送达时间，请发送订单上的邮箱、邮编或手机号。", "如需物流详情，请在 1 分钟后再试，也可以现在转人工客服帮您查询。",
            "与订单信息不符。请核对后，再发送一次订单上的邮箱、邮编或手机号。",
            "还是与订单信息不符，15 分钟内我这边无法再核对。之后可以再试一次，也可以现在转人工客服帮您查询。",
            "好的。没有订单上的邮箱、邮编或手机号，我这边无法显示物流详情，人工客服可以帮您查询。"])])
def test_the_demo_action_asks_for_the_proof_of_several_orders_in_the_plural(action_bot: Path, tmp_path: Path,
                                                                          language: str, said: list[str]) -> None:
    """An answer about two orders asked "For its tracking number…", as though of one, and said "That doesn't match
    the order" and "the order's tracking details" of both: in English it asks of their tracking numbers and the email
    address or postcode on the orders, and says so of them after a wrong proof, the last one, or none; the Chinese
    says it of one order or several alike."""
    orders = demo_orders(action_bot, tmp_path)
    asked = "where are my orders 123 and 789?"

    def run(slots: dict[str, Any], text: str = asked) -> str:
        dispatcher = CollectingDispatcher()
        read = [{"entity": "order_id", "value": number} for number in ("123", "789") if text == asked]
        latest = {"text": text, "intent": {"name": "track_order"}, "entities": read}
        tracker = Tracker("c1", {"language": language, "order_id": "789", **slots}, latest, [], False, None, {}, None)
        orders.ActionOrderStatus().run(dispatcher, tracker, {})
        return dispatcher.messages[0]["text"]

    assert run({}).splitlines()[-1] == said[0]
    assert run({"order_proof_retry_at": time.time() + 30}).splitlines()[-1] == said[1]
    waiting = {"requested_slot": "order_proof", "orders_unproven": ["123", "789"]}
    assert run({**waiting, "order_proof": "10001"}, "10001") == said[2]
    assert run({**waiting, "order_proof": "10001", "order_proof_misses": 2}, "10001") == said[3]
    assert run(waiting, "I don't have it") == said[4]


def test_the_demo_stops_comparing_proofs_of_an_order_guessed_at_in_many_conversations_for_a_while(
        action_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three wrong proofs in a conversation stopped the guessing there alone: a new conversation had three more. An
    order's wrong proofs in all conversations are counted in its table, and after ten the chat compares none of its
    guessable proofs (a postcode, a phone number's last four digits), the right one neither, and offers a person; a
    right one before that starts the count afresh. The lock lasted for good, so that whoever guessed ten times locked
    the order's customer out: it lasts a quarter of an hour, which the customer is told, and then the right proof shows
    the details. It stopped the email address too, so that a stranger failing ten times from new conversations every
    quarter of an hour kept the customer from the details for as long as they liked: the email address or whole phone
    number on the order, which no one guesses, is still compared, a wrong one counting in its conversation."""
    orders = demo_orders(action_bot, tmp_path)
    clock = [1_000_000.0]
    monkeypatch.setattr(orders, "time", SimpleNamespace(time=lambda: clock[0]))

    def run(slots: dict[str, Any], text: str) -> tuple[dict[str, Any], list[Any]]:
        dispatcher = CollectingDispatcher()
        latest = {"text": text, "entities": [], "intent": {"name": "track_order"}}
        events = orders.ActionOrderStatus().run(dispatcher, Tracker(text, {"order_id": "789", **slots}, latest, [],
                                                                      False, None, {}, None), {})
        return dispatcher.messages[0], events

    waiting = {"requested_slot": "order_proof", "orders_unproven": ["789"]}
    for n in range(4):
        run({**waiting, "order_proof": f"1000{n}"}, f"1000{n}")  # each in a conversation of its own
    said, events = run({**waiting, "order_proof": "94105"}, "94105")
    assert "DHL 3345678901" in said["text"] and orders.looked_up(["789"])["789"][6] == 0
    for n in range(9):
        said, _ = run({**waiting, "order_proof": f"2000{n}"}, f"2000{n}")
        assert said["text"] == "That doesn't match the order. Please check it and send the email address, postcode or phone number " \
                               "on the order again.", n
    said, events = run({**waiting, "order_proof": "20009"}, "20009")  # the tenth
    strong_only = "For 15 minutes, I can't check a postcode or the last digits of a phone number for this order: send " \
                  "me the email address or the whole phone number on it, or a person can help now."
    assert said["text"] == strong_only and said["buttons"][0]["payload"] == "/handoff"
    for right in ("94105", "0132"):  # right, in a new conversation: not compared
        said, events = run({**waiting, "order_proof": right}, right)
        assert said["text"] == strong_only and said["buttons"][0]["payload"] == "/handoff"
    said, events = run({}, "where is order 789")
    assert said["text"] == f"Order 789 is **delivered**.\n{strong_only}"
    assert SlotSet("requested_slot", "order_proof") in events  # a proof once the lock opens is compared
    said, events = run({**waiting, "order_proof": "nobody@example.com"}, "nobody@example.com")  # compared, and wrong
    assert said["text"].startswith("That doesn't match the order.")
    assert SlotSet("order_proof_misses", 1) in events
    for right in ("sam@example.com", "+1 415 555 0132"):  # the customer's, while the lock lasts
        said, events = run({**waiting, "order_proof": right}, right)
        assert "DHL 3345678901" in said["text"], right
    for n in range(10):  # locked again
        run({**waiting, "order_proof": f"3000{n}"}, f"3000{n}")
    clock[0] += 14 * 60 + 30
    assert run({}, "where is order 789")[0]["text"].startswith("Order 789 is **delivered**.\nFor a minute, I can't")
    clock[0] += 30
    said, events = run({}, "where is order 789")
    assert said["text"].endswith("send me the email address, postcode or phone number on the order.")
    assert SlotSet("requested_slot", "order_proof") in events
    said, events = run({**waiting, "order_proof": "94105"}, "94105")
    assert "DHL 3345678901" in said["text"]


def test_a_conversations_wrong_proofs_lock_its_proofs_for_a_while_not_for_good(
        action_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three wrong proofs in a conversation (a customer mistyping their email) left it unable to prove the order for
    good: the conversation compares none for a quarter of an hour, says when to try again, and then compares afresh,
    with three more tries."""
    orders = demo_orders(action_bot, tmp_path)
    clock = [1_000_000.0]
    monkeypatch.setattr(orders, "time", SimpleNamespace(time=lambda: clock[0]))
    slots: dict[str, Any] = {"order_id": "789"}

    def turn(text: str, **more: Any) -> str:
        messages, events = demo_turn(orders.ActionOrderStatus(), {**slots, **more}, text)
        slots.update({event["name"]: event["value"] for event in events if event["event"] == "slot"})
        return messages[0]["text"]

    assert turn("where is order 789").endswith("on the order.")
    for typo in ("sam@exmaple.com", "sam@example.co", "same@example.com"):
        said = turn(typo, order_proof=typo)
    assert said == "That doesn't match either, so I can't check another here for 15 minutes: then you can try again, " \
                   "or a person can help now."
    assert slots["requested_slot"] == "order_proof" and orders.looked_up(["789"])["789"]["proof_misses"] == 3
    clock[0] += 5 * 60
    assert turn("where is order 789").endswith("try again in 10 minutes, or a person can help now.")
    clock[0] += 10 * 60
    assert turn("where is order 789").endswith("on the order.")
    assert turn("sam@example.com", order_proof="sam@example.com").endswith("Tracking: DHL 3345678901.")

def test_the_demo_shows_a_signed_in_customer_their_own_orders_details_without_asking(action_bot: Path,
                                                                                      tmp_path: Path) -> None:
    """A customer signed in to the web chat (the slot verified_user, which the page's hash proves) was asked for the
    email or postcode of an order the shop knows they placed. Their own order's details show at once; another's, and
    any order to a visitor or another customer, wait for the proof as before."""
    orders = demo_orders(action_bot, tmp_path)

    def run(slots: dict[str, Any], text: str) -> tuple[str, list[Any]]:
        dispatcher = CollectingDispatcher()
        latest = {"text": text, "entities": [{"entity": "order_id", "value": text[-3:]}], "intent": {"name": "track_order"}}
        events = orders.ActionOrderStatus().run(dispatcher, Tracker("c1", {"order_id": text[-3:], **slots}, latest, [],
                                                                      False, None, {}, None), {})
        return dispatcher.messages[0]["text"], events

    said, events = run({"verified_user": "u-17"}, "order 123")
    assert said == "Order 123 is **shipped**. Tracking: UPS 1Z999AA10123456784. Expected delivery: Tuesday."
    assert SlotSet("requested_slot", None) in events
    for slots, text in (({"verified_user": "u-17"}, "order 789"), ({"verified_user": "u-18"}, "order 123"),
                        ({"verified_user": None}, "order 123")):
        said, events = run(slots, text)
        assert "Tracking" not in said and said.endswith("send me the email address, postcode or phone number on the order."), slots
        assert SlotSet("requested_slot", "order_proof") in events

def demo_orders(action_bot: Path, tmp_path: Path) -> Any:
    """The demo's order action module, loaded from a copy, so that its order table is the test's own."""
    shutil.copy(action_bot / "actions" / "orders.py", tmp_path / "orders.py")
    spec = importlib.util.spec_from_file_location("demo_orders", tmp_path / "orders.py")
    orders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orders)
    return orders


def test_the_demo_action_takes_no_phone_number_for_the_order_number(action_bot: Path, tmp_path: Path) -> None:
    """"13812345678在哪" ("where is [the parcel of] 13812345678"), which the order pattern no longer reads, was offered as
    "Is 13812345678 the order number?": couriers find a parcel by the phone number, so customers give it. The action asks
    for the order number instead, in English too; a number beside the phone number is still offered."""
    orders = demo_orders(action_bot, tmp_path)

    def run(text: str, language: str = "zh") -> str:
        dispatcher = CollectingDispatcher()
        latest = {"text": text, "entities": [], "intent": {"name": "track_order"}}
        orders.ActionOrderStatus().run(dispatcher, Tracker("c1", {"language": language}, latest, [], False, None, {},
                                                           None), {})
        return dispatcher.messages[0]["text"]

    for said in ("13812345678在哪", "+86 138 1234 5678 到哪了", "我手机号13812345678"):
        assert run(said) == "好的，请问您的订单号是多少？", said
    for said in ("where is the parcel for (555) 123-4567", "my number is +44 7700 900123", "07700 900123 where is it"):
        assert run(said, "en") == "Sure — what's your order number?", said
    assert run("13812345678 的 456 到了吗").startswith("456 是订单号吗？")

@pytest.mark.parametrize(("language", "said", "answer"), [
    ("en", "where is my order AB1023?", "AB1023 isn't one of our order numbers: ours start with DS"),
    ("zh", "订单TB-52017到哪了", "TB-52017 不是本店的订单号：本店订单号以 DS 开头"),
    ("en", "order ord1023", None), ("en", "my order no123", None)])
def test_the_demo_action_says_an_order_number_of_another_shops_is_none_of_its_own(
        action_bot: Path, tmp_path: Path, language: str, said: str, answer: str | None) -> None:
    """"where is my order AB1023?" (another shop's order number, its prefix not the demo's DS) was offered as "Is 1023
    the order number?", and a button that looked up the demo's order 1023, or that of an earlier order the message did
    not name: the action says whose prefix its order numbers have, and offers a person. "no123", "ord1023" are no
    prefix."""
    orders = demo_orders(action_bot, tmp_path)
    messages, events = demo_turn(orders.ActionOrderStatus(), {"language": language, "order_id": "52017",
                                                              "order_status": "shipped"}, said)
    if answer is None:
        assert "one of our order numbers" not in messages[0]["text"], said
        return
    assert messages[0]["text"].startswith(answer) and messages[0]["buttons"][0]["payload"] == "/handoff"
    assert SlotSet("order_id", None) in events and SlotSet("requested_slot", "order_id") in events


def test_the_demo_action_reads_full_width_digits_as_rasas_regex_extractor_gives_them(action_bot: Path,
                                                                                   tmp_path: Path) -> None:
    """Rasa gives an order number typed in full-width digits (a Chinese keyboard's ５２０１７) as typed, and the action
    looked "５２０１７" up, which no order is: it reads the digits as ASCII ones, as deskbot gives them."""
    orders = demo_orders(action_bot, tmp_path)
    said, _ = demo_turn(orders.ActionOrderStatus(), {"order_id": "５２０１７", "language": "zh"}, "订单５２０１７到哪了",
                        [{"entity": "order_id", "value": "５２０１７"}])
    assert said[0]["text"].startswith("订单 52017 的状态：**已发货**。")
    said, _ = demo_turn(orders.ActionOrderStatus(), {"order_id": "789", "language": "zh"}, "帮我看看５２０１７")
    assert said[0]["text"].startswith("52017 是订单号吗？")
    assert said[0]["buttons"][0]["payload"] == '/track_order{"order_id": "52017"}'


def test_the_demo_action_asks_rather_than_answer_about_an_earlier_order(action_bot: Path, tmp_path: Path) -> None:
    """The slot holds the conversation's last order; a message naming another in words the order pattern
    does not read (訂單 before the pattern knew it) got the earlier order's status and tracking number."""
    orders = demo_orders(action_bot, tmp_path)

    def run(text: str, entities: list[dict[str, str]], order: str = "789") -> tuple[str, list[dict[str, Any]]]:
        dispatcher = CollectingDispatcher()
        tracker = Tracker("c1", {"order_id": order}, {"text": text, "entities": entities}, [], False, None, {}, None)
        events = orders.ActionOrderStatus().run(dispatcher, tracker, {})
        return dispatcher.messages[0]["text"], events

    text, events = run("please check the 456 one", [])  # asked whether 456 is the order's number, not answered for 789
    assert text == "Is 456 the order number? If so, choose it below; if not, type the order number."
    assert SlotSet("order_id", None) in events and SlotSet("requested_slot", "order_id") in events
    assert run("is 789 there yet", [])[0].startswith("Order 789 is **delivered**")  # the slot's own number
    assert run("where is it now?", [])[0].startswith("Order 789 is **delivered**")  # no number: the slot's
    assert run("order 789", [{"entity": "order_id", "value": "789"}])[0].startswith("Order 789")
    # a number in Chinese digits the pattern did not read is another order's too; as Rasa gives one, it is looked up
    assert run("查一下四五六那个", [])[0].startswith("Is 456 the order number?")
    read = [{"entity": "order_id", "value": "七八九"}]
    assert run("订单七八九", read, "七八九")[0].startswith("Order 789 is **delivered**")


def test_the_demo_action_asks_which_order_and_stops_asking_in_chinese_too(action_bot: Path, tmp_path: Path) -> None:
    """"查订单" after order 123 was looked up is asked which order, "帮我看看 456" ("have a look at 456"), a number the
    order pattern does not read, is asked whether it is the order's (it was asked for the number just given), and a
    second "不知道" ends the wait, in Chinese: the order button's payload is the intent the customer asked with, and the
    same in any script."""
    orders = demo_orders(action_bot, tmp_path)

    def run(slots: dict[str, Any], text: str, events: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
        dispatcher = CollectingDispatcher()
        latest = {"text": text, "entities": [], "intent": {"name": "get_refund"}}
        returned = orders.ActionOrderStatus().run(dispatcher, Tracker("c1", {"language": "zh", **slots}, latest, events,
                                                                      False, None, {}, None), {})
        return dispatcher.messages[0], returned

    said, events = run({"order_id": "123", "order_status": "shipped"}, "查订单", [])
    assert said["text"] == "还是查订单 123 吗？是的话请点下面的按钮；查其他订单，请直接发订单号。"
    assert said["buttons"] == [{"title": "订单 123", "payload": '/get_refund{"order_id": "123"}'}]
    assert SlotSet("requested_slot", "order_id") in events
    said, _ = run({"order_id": "123", "order_status": "shipped", "requested_slot": "order_id"}, "好的", [])
    assert said["text"].startswith("订单 123 的状态")  # "ok" to it: the order offered
    said, events = run({}, "帮我看看 456", [])  # a number the order pattern did not read: asked whether it is the order's
    assert said["text"] == "456 是订单号吗？是的话请点下面的按钮；不是的话，请直接发订单号。"
    assert said["buttons"] == [{"title": "订单 456", "payload": '/get_refund{"order_id": "456"}'}]
    assert SlotSet("requested_slot", "order_id") in events
    asked_again = {"event": "bot", "text": "查詢訂單需要訂單號", "data": {"buttons": [{"title": "轉人工客服", "payload": "/handoff"}]}}
    said, events = run({"requested_slot": "order_id"}, "不知道", [asked_again])
    assert said["text"].startswith("没关系：没有订单号我这边查不到") and said["buttons"][0]["payload"] == "/handoff"
    assert SlotSet("requested_slot", None) in events


async def test_a_sentence_the_classifier_is_sure_of_goes_to_its_own_intent_while_an_action_waits(
        action_bot: Path, tmp_path: Path) -> None:
    """A message carrying an order number while the action waits for one, that the classifier puts
    in another intent with confidence, is that intent's; a bare number still answers the action."""
    bot = make_bot(action_bot, None, {"get_refund": "action_order_status"}, tmp_path)
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", "need assistance canceling order 113542617735902", "web"))  # a cancel_order example
        assert (reply.intent, reply.source) == ("cancel_order", "template")
        await bot.handle(Turn("c2", "/get_refund", "web"))
        reply = await bot.handle(Turn("c2", "#789", "web"))
        assert (reply.source, reply.intent, reply.text) == ("action", "get_refund", "Order 789 is **delivered**.\nFor its tracking number and expected delivery, send me the email address, postcode or phone number on the order.")
    finally:
        await bot.close()


async def test_an_unknown_action_is_refused_on_load_or_falls_back(action_bot: Path, endpoint: str | None,
                                                                  tmp_path: Path) -> None:
    """In-process, the actions are known when the bot loads: a typo in actions.map is named there, not
    met by every customer who asks; an action server's are known only when it answers."""
    if endpoint is None:
        # Named with bot.yml's line, before the model loads (this copy has none): not after seconds of loading it.
        typo = configured_copy(action_bot, tmp_path / "typo", actions={"map": {"track_order": "action_nobody_wrote"}})
        shutil.rmtree(typo / "models")
        line = (typo / "bot.yml").read_text().splitlines().index("    track_order: action_nobody_wrote") + 1
        with pytest.raises(ActionError) as refused:
            create_app(typo)
        assert str(refused.value).startswith(f"{typo / 'bot.yml'}:{line}: actions.map.track_order: 'action_nobody_wrote': "
                                             "no class in actions/ is named so (it defines action_again, ")
        with pytest.raises(ActionError, match="the bot has no actions/ folder and no actions.endpoint"):
            make_bot(Path(shutil.copytree(action_bot, tmp_path / "bare", ignore=shutil.ignore_patterns("actions"))),
                     None, {"track_order": "action_lookup_latest"}, tmp_path)
        return
    bot = make_bot(action_bot, endpoint, {"track_order": "action_nobody_wrote"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that")
        assert reply.buttons[-1]["payload"] == "/handoff"
    finally:
        await bot.close()


async def test_an_actions_several_messages_reach_each_channel_in_order_on_both_paths(
        action_bot: Path, endpoint: str | None, tmp_path: Path) -> None:
    """An action's messages (one per utter_message: a text with its button, a Slack payload, an image, a text with its
    button), from rasa-sdk's action server as in process: the web chat lists them in the action's order, its payload
    among them; Slack posts each on its own, the image as an image block; WeCom, which shows text alone, gets the texts
    and the image's link in order. Every channel keeps both buttons, in order."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_order_card"}, tmp_path)
    image, divider = "https://shop.example/parcel.png", {"blocks": [{"type": "divider"}]}
    drawn = {"text": image, "blocks": [{"type": "image", "image_url": image, "alt_text": image}]}
    buttons = [{"title": "Track it", "payload": "/track_order"}, {"title": "Cancel it", "payload": "/cancel_order"}]
    try:
        web = await bot.handle(Turn("c-web", "/track_order", "web"))
        assert (web.text, web.buttons, web.custom) == (f"订单 77：\n\n{image}\n\nAnything else?", buttons, [divider])
        assert web.to_json()["messages"] == [{"text": "订单 77："}, {"custom": divider}, {"text": image},
                                             {"text": "Anything else?"}]
        slack = await bot.handle(Turn("c-slack", "/track_order", "slack"))
        assert (slack.buttons, slack.custom) == (buttons, [divider, drawn])
        assert slack.parts == [{"text": "订单 77：", "custom": []}, {"text": "", "custom": [divider]},
                               {"text": "", "custom": [drawn]}, {"text": "Anything else?", "custom": []}]
        wecom = await bot.handle(Turn("c-wecom", "/track_order", "wecom"))
        assert (wecom.text, wecom.buttons, wecom.custom, wecom.parts) == (web.text, buttons, [], [])
    finally:
        await bot.close()


async def test_a_shops_failing_rejected_slow_and_misspelt_actions_on_a_rasa_sdk_server_are_told_apart(
        action_bot: Path, action_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """rasa-sdk's action server answers an action that raised with a 500 and its message alone, and one that rejected
    the call (ActionExecutionRejection) with a 400: both were logged "was rejected", a crash read as deskbot's call
    refused. A misspelt action (404) was named without the server or its likely fix. Each turn falls back, a slow
    action with actions.fallback.action_slow, and the bot goes on."""
    mapped = {"track_order": "action_packing_slip", "cancel_order": "action_needs_order_number",
              "get_refund": "action_slow_courier"}
    bot = make_bot(action_bot, action_server, mapped, tmp_path)
    bot.actions.timeout = 1.0
    try:
        for conversation, text in (("c1", '/track_order{"order_id": "123"}'), ("c2", "/cancel_order")):
            reply = await bot.handle(Turn(conversation, text, "web"))
            assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that"), text
        assert (f"action 'action_packing_slip' failed on the action server at {action_server} (500): no weight on file "
                "for order 123 (its log has the traceback)") in caplog.text
        assert "action 'action_needs_order_number' was rejected (400): no order number given" in caplog.text
        bot.config.actions.map["track_order"] = "action_lokup_order"
        assert (await bot.handle(Turn("c3", "/track_order", "web"))).source == "fallback"
        assert (f"the action server at {action_server} does not know 'action_lokup_order'; did you mean "
                "'action_lookup_order'?") in caplog.text
        reply = await bot.handle(Turn("c4", "/get_refund", "web"))
        assert (reply.source, reply.text) == ("fallback", say(bot.config.fallback.action_slow, "en"))
        assert (f"action 'action_slow_courier' timed out after 1s; the action server at {action_server} had not "
                "answered (its action may still finish)") in caplog.text
        assert (await bot.handle(Turn("c4", "/cancel_order", "web"))).source == "fallback"  # the bot goes on
    finally:
        await bot.close()


async def test_a_slot_json_cannot_hold_fails_the_action_and_its_turn_falls_back(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bot = make_bot(action_bot, None, {"track_order": "action_stamp_time", "cancel_order": "action_tuple_key_slot",
                                      "get_refund": "action_dated_button"}, tmp_path)
    try:
        keyed = await bot.handle(Turn("c2", "/cancel_order", "web"))  # not JSON either: a tuple for a key
        assert keyed.source == "fallback" and "slot 'order_id' is set to dict" in caplog.text
        dated = await bot.handle(Turn("c3", "/get_refund", "web"))  # nor a button's date: the store failed, message and all
        assert dated.source == "fallback" and "button 'Today' carries a value that is not JSON" in caplog.text
        assert [t["text"] for t in bot.store.history("c3")][0] == "/get_refund"
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that")
        assert "slot 'when' is set to datetime" in caplog.text
        assert "when" not in bot.store.conversation("c1")["slots"]
        assert [t["text"] for t in bot.store.history("c1")][0] == "/track_order"  # the customer's message is kept
    finally:
        await bot.close()


@pytest.mark.parametrize("action", ["action_half_pair_slot", "action_half_pair_button"])
async def test_half_a_surrogate_pair_fails_the_action_not_the_turn(action_bot: Path, endpoint: str | None, action: str,
                                                                   tmp_path: Path) -> None:
    """A slot or a button title holding "\\ud800" reached the store, which refused the whole exchange: the
    customer got a 400 quoting the codec, and their message was lost."""
    bot = make_bot(action_bot, endpoint, {"track_order": action}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that")
        assert [t["text"] for t in bot.store.history("c1")][0] == "/track_order"
        assert "order_id" not in bot.store.conversation("c1")["slots"]
    finally:
        await bot.close()


async def test_a_requested_slot_that_is_not_a_name_fails_the_action_not_the_conversation(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bot = make_bot(action_bot, None, {"track_order": "action_ask_as_list"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and "requested_slot names the slot the action asks for" in caplog.text
        # a log from before the check holds one all the same: the conversation must go on
        bot.store.db.execute("UPDATE conversations SET slots = ?, active_loop = 'action_ask_as_list' WHERE id = 'c1'",
                             ['{"requested_slot": ["order_id"]}'])
        for text in ("hello", "where is my order 123"):
            assert (await bot.handle(Turn("c1", text, "web"))).text
    finally:
        await bot.close()


async def test_a_runaway_reply_fails_the_action_on_both_paths(action_bot: Path, endpoint: str | None, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """200,000 characters for a chat: the store's redaction of them held every other customer up."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_runaway"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that")
        assert "responses.0.text: String should have at most 20000 characters" in caplog.text
    finally:
        await bot.close()


async def test_a_reply_over_the_limit_in_several_messages_fails_the_action(action_bot: Path, tmp_path: Path) -> None:
    """Each message was held to the limit, but not what they said together: 150,000 characters reached a customer."""
    bot = make_bot(action_bot, None, {"track_order": "action_chatty", "cancel_order": "action_chatty_then_pause"}, tmp_path)
    try:
        for conversation, payload in (("c1", "/track_order"), ("c2", "/cancel_order")):  # the second hands off after
            reply = await bot.handle(Turn(conversation, payload, "web"))
            assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that"), payload
            assert "chatted" not in bot.store.conversation(conversation)["slots"]  # the failed action's slots are undone
    finally:
        await bot.close()


async def test_an_action_that_fails_as_its_own_followup_keeps_what_its_first_run_said(
        action_bot: Path, tmp_path: Path) -> None:
    """Its slots were kept but its message lost: the customer heard the refund failed, though it was created."""
    bot = make_bot(action_bot, None, {"get_refund": "action_refund_once_then_fail"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/get_refund", "web"))
        assert (reply.source, reply.text) == ("action", "Your refund R1 was created.")
        assert bot.store.conversation("c1")["slots"]["refund"] == "R1"
    finally:
        await bot.close()


async def test_an_action_that_shows_nothing_answers_with_its_template_or_falls_back(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An action that sent only a json_message (which WeCom does not show) gave the customer an
    empty reply, counted as answered."""
    bot = make_bot(action_bot, endpoint, {"cancel_order": "action_json_only", "get_refund": "action_json_only"}, tmp_path)
    del bot.project.responses.templates["get_refund"]  # an intent whose answers come from its action alone
    try:
        reply = await bot.handle(Turn("c1", "/cancel_order", "wecom"))
        assert (reply.source, reply.text.split(". ")[0]) == ("action", "I can cancel order 321 for you")  # its slot fills it
        # a message naming a number no pattern reads: an earlier turn's order number would be left out, not the action's
        named = await bot.handle(Turn("c3", '/cancel_order{"note": "A-1234"}', "wecom"))
        assert named.text.split(". ")[0] == "I can cancel order 321 for you"
        assert "action_json_only showed the customer nothing; its intent's template answers instead" in caplog.text
        missed = await bot.handle(Turn("c2", "/get_refund", "wecom"))
        assert missed.source == "fallback" and missed.text.startswith("Sorry, I couldn't complete that")
        assert bot.store.conversation("c2")["slots"]["order_id"] == "321"  # what the action did stands
        # the web chat passes the json_message on to the customer's page, which shows it: not a failed action
        on_web = await bot.handle(Turn("c4", "/get_refund", "web"))
        assert (on_web.source, on_web.text, on_web.custom) == ("action", "", [{"blocks": [{"type": "section"}]}])
        # the transcript shows that the bot answered, in place of what its page showed: no question left unanswered
        assert [(t["role"], t["text"]) for t in bot.store.transcript("c4")["turns"]] == [
            ("user", "/get_refund"), ("bot", "[custom payload]")]
        # the customer's reloaded page shows nothing for it, as it showed no text as it came
        assert [(t["role"], t["text"], t["id"]) for t in bot.store.history("c4")][1:] == [("bot", "", on_web.turn_id)]
        run = bot.actions.run

        async def taken_over_meanwhile(call: dict[str, Any], left: float | None = None) -> Any:  # an agent takes over
            await bot.set_handoff("c5", True, "agent")
            return await run(call, left)

        bot.actions.run = taken_over_meanwhile  # type: ignore[method-assign]
        raced = await bot.handle(Turn("c5", "/get_refund", "web"))
        assert (raced.source, raced.custom, raced.handed_off) == ("silent", [], True)  # the agent's to answer alone
        assert [t["role"] for t in bot.store.history("c5")] == ["user"]
        bot.actions.run = run  # type: ignore[method-assign]
        bot.config.actions.map["get_refund"] = "action_forget_quietly"  # one that starts afresh may say nothing
        forgot = await bot.handle(Turn("c2", "/get_refund", "wecom"))
        assert (forgot.source, forgot.text) == ("action", "") and "order_id" not in bot.store.conversation("c2")["slots"]
    finally:
        await bot.close()


async def test_a_failed_action_leaves_the_slots_as_they_were(action_bot: Path, tmp_path: Path) -> None:
    """The tracker held the conversation's own slots: what a failing action wrote into them stayed, and the
    next "cancel order" answered about order 999."""
    bot = make_bot(action_bot, None, {"track_order": "action_set_then_fail"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback"
        slots = bot.store.conversation("c1")["slots"]
        assert "order_id" not in slots and "refund" not in slots
    finally:
        await bot.close()


@pytest.mark.parametrize(("action", "raised"), [
    ("action_set_then_fail", ('raise RuntimeError("the order system is down")',
                              "RuntimeError: the order system is down")),
    ("action_lookup_order", ("orders[tracker.get_slot('order_id')]", "KeyError: '12345'")),  # async
])
async def test_an_in_process_action_that_raises_is_logged_with_its_type_and_line(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, action: str, raised: tuple[str, str]) -> None:
    """The log said "action 'action_lookup_order' failed: '12345'": neither that it was a KeyError nor where."""
    source = action_bot / "actions" / "extra.py"
    line = next(n for n, text in enumerate(source.read_text().splitlines(), 1) if raised[0] in text)
    bot = make_bot(action_bot, None, {"track_order": action}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", '/track_order{"order_id": "12345"}', "web"))
        assert reply.source == "fallback"
        assert f"action {action!r} failed: {source}:{line}: {raised[1]}" in caplog.text
    finally:
        await bot.close()


async def logged_failing_here_and_remotely(root: Path, tmp_path: Path, aiohttp_server: Any,
                                          caplog: pytest.LogCaptureFixture, action: str, turns: tuple[Turn, Turn],
                                          error: Callable[[dict[str, Any]], str]) -> tuple[str, str]:
    """What the log said of ``action`` (mapped to track_order) failing: run in process on the first of ``turns``, then
    on an action server answering the second 500 with ``error`` of its request, as rasa-sdk's answers an action that
    raised. Each turn got the fallback."""
    async def webhook(request: web.Request) -> web.Response:
        return web.json_response({"error": error(await request.json())}, status=500)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    server = await aiohttp_server(app)
    said = []
    for endpoint, turn in zip((None, f"http://127.0.0.1:{server.port}/webhook"), turns):
        caplog.clear()
        bot = make_bot(root, endpoint, {"track_order": action}, tmp_path)
        try:
            assert (await bot.handle(turn)).source == "fallback"
        finally:
            await bot.close()
        said.append(caplog.text)
    return said[0], said[1]


async def test_an_action_failing_on_a_customers_personal_data_logs_it_redacted(
        action_bot: Path, tmp_path: Path, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """What the shop's code raised often quotes what it was given (a ValueError of the text it parsed, a KeyError of a
    slot's value), in process or as rasa-sdk's action server answers it, and the server's log, kept apart from the store
    and beyond `bot purge`, kept the customer's email and phone number as they wrote them."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "quantity.py").write_text(
        "from rasa_sdk import Action\n\n\n"
        "class Quantity(Action):\n"
        "    def name(self):\n"
        "        return 'action_quantity'\n\n"
        "    def run(self, dispatcher, tracker, domain):\n"
        "        return [int(tracker.latest_message['text'])]\n")
    written = '/track_order{"note": "mail jane.doe@example.com or call +44 20 7946 0958"}'
    logged = '/track_order{"note": "mail [EMAIL] or call [PHONE]"}'
    in_process, remote = await logged_failing_here_and_remotely(
        root, tmp_path, aiohttp_server, caplog, "action_quantity", (Turn("c1", written, "web"), Turn("c2", written, "web")),
        lambda body: f"invalid literal for int() with base 10: {body['tracker']['latest_message']['text']!r}")
    assert (f"action 'action_quantity' failed: {root / 'actions' / 'quantity.py'}:9: ValueError: invalid literal "
            f"for int() with base 10: {logged!r}") in in_process
    assert "jane.doe" not in in_process and "7946" not in in_process
    assert re.search(r"action 'action_quantity' failed on the action server at http://127\.0\.0\.1:\d+/webhook "
                     + re.escape(f"(500): invalid literal for int() with base 10: {logged!r} (its log has the "
                                 "traceback)"), remote)
    assert "jane.doe" not in remote


async def test_an_action_failing_with_the_conversations_id_logs_its_tag_instead(
        action_bot: Path, tmp_path: Path, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A shop's action that says which conversation it failed for (``tracker.sender_id``), in process or as rasa-sdk's
    action server answers it, put the id in the server's log: a web visitor's key to their conversation, a WeCom
    employee's userid, kept by the log's aggregator for a year. The log names it by its tag, as deskbot's own lines."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "lookup.py").write_text(
        "from rasa_sdk import Action\n\n\n"
        "class Lookup(Action):\n"
        "    def name(self):\n"
        "        return 'action_lookup'\n\n"
        "    def run(self, dispatcher, tracker, domain):\n"
        "        raise LookupError(f'no order for {tracker.sender_id}')\n")
    cid = "wecom:ww-corp:13912345678"  # a userid the redaction would take a part of
    in_process, remote = await logged_failing_here_and_remotely(
        root, tmp_path, aiohttp_server, caplog, "action_lookup", (Turn(cid, "/track_order", "web"),) * 2,
        lambda body: f"no order for {body['sender_id']}")
    assert f"LookupError: no order for {log_tag(cid)}" in in_process and "ww-corp" not in in_process
    assert f"(500): no order for {log_tag(cid)} (its log has the traceback)" in remote and "ww-corp" not in remote


async def test_an_action_failing_on_a_url_with_the_conversations_id_logs_its_tag_instead(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An action whose call to the shop's API failed raises with the URL it called (requests' ``HTTPError: 404 Client
    Error: Not Found for url: …``), the conversation's id quoted in it: the id reached the log all the same."""
    root = Path(shutil.copytree(action_bot, tmp_path / "bot"))
    (root / "actions" / "lookup.py").write_text(
        "from urllib.parse import quote\n\n"
        "from rasa_sdk import Action\n\n\n"
        "class Lookup(Action):\n"
        "    def name(self):\n"
        "        return 'action_lookup'\n\n"
        "    def run(self, dispatcher, tracker, domain):\n"
        "        raise LookupError(f'404 for url: https://crm.example/customers/{quote(tracker.sender_id, safe=\"\")}')\n")
    cid = "wecom:ww-corp:chen.jia"
    bot = make_bot(root, None, {"track_order": "action_lookup"}, tmp_path)
    try:
        assert (await bot.handle(Turn(cid, "/track_order", "web"))).source == "fallback"
        assert f"https://crm.example/customers/{log_tag(cid)}" in caplog.text and "chen" not in caplog.text
    finally:
        await bot.close()


async def test_failing_actions_hand_off_once_the_misses_reach_the_limit(action_bot: Path, tmp_path: Path) -> None:
    """They counted as misses, but only a misunderstanding after them handed the customer to a person."""
    bot = make_bot(action_bot, None, {"track_order": "action_runaway"}, tmp_path)
    limit = bot.config.thresholds.fallbacks_before_handoff
    try:
        replies = [await bot.handle(Turn("c1", "/track_order", "web")) for _ in range(limit)]
        assert [r.source for r in replies] == ["fallback"] * (limit - 1) + ["handoff"]
        assert replies[-1].handed_off and bot.store.conversation("c1")["status"] == "handed_off"
    finally:
        await bot.close()


async def test_a_customer_leaning_to_a_person_while_an_action_waits_is_not_its_answer(
        action_bot: Path, tmp_path: Path) -> None:
    """"I want to talk to a human about order 555" went back to the order lookup ("I couldn't find order
    555"), where outside the wait an unsure lean to a person gets the fallback's "talk to a person"."""
    bot = make_bot(action_bot, None, {"get_refund": "action_order_status"}, tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    text = "I want to talk to a human about order 555"
    bot.config.handoff.intent = (await bot._analysis_for(text)).prediction.intent  # whatever this model leans to
    assert bot.config.handoff.intent != "get_refund"
    try:
        await bot.handle(Turn("c1", "/get_refund", "web"))
        reply = await bot.handle(Turn("c1", text, "web"))
        assert reply.source == "fallback" and reply.buttons[-1]["payload"] == "/handoff"
        assert (await bot.handle(Turn("c2", "/get_refund", "web"))).source == "action"
        assert (await bot.handle(Turn("c2", "order 555", "web"))).source == "action"  # an answer all the same
    finally:
        await bot.close()


async def test_a_followup_loop_is_cut_and_said_so(action_bot: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bot = make_bot(action_bot, None, {"track_order": "action_again"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.text.split("\n\n") == ["again"] * (MAX_FOLLOWUPS + 1)
        assert f"action_again asked for action_again after {MAX_FOLLOWUPS} follow-ups, which is not run" in caplog.text
    finally:
        await bot.close()


async def test_a_streamed_reply_reaches_the_customer_as_the_messages_its_chunks_make(
        action_bot: Path, tmp_path: Path) -> None:
    """rasa-sdk replays a stream's chunks as a message each where the channel does not stream, as deskbot's do not: a
    reply streamed token by token reached the customer as one paragraph a token ("Your\n\n order\n\n has...")."""
    bot = make_bot(action_bot, None, {"track_order": "action_streamed"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "action"
        assert reply.text.split("\n\n") == [
            "One moment.", "Your order has shipped.", "https://shop.example/parcel.png", "您的订单已发货。", "Anything else?"]
        assert reply.buttons == [{"title": "Track it", "payload": "/track_order"}]
    finally:
        await bot.close()


async def test_a_followup_no_action_answers_to_is_named_with_the_action_that_asked_for_it(
        action_bot: Path, endpoint: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A misspelt FollowupAction was logged with the name it misspelt alone: which of the bot's actions wrote it was
    for the shop to find, and which name it meant (in process, rasa-sdk's "No registered action found")."""
    bot = make_bot(action_bot, endpoint, {"track_order": "action_follow_misspelt"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "Looking it up.")  # what the asker said stands
        [record] = [r for r in caplog.records if "action_order_stauts" in r.getMessage()]
        assert record.getMessage().endswith("'action_order_stauts'; did you mean 'action_order_status'? (a FollowupAction "
                                            "of action_follow_misspelt asked for it)")
        assert record.getMessage().startswith("no class in actions/ is named" if endpoint is None else
                                              f"the action server at {endpoint} does not know")
    finally:
        await bot.close()


async def test_the_action_server_protocol_449_and_400(action_bot: Path, aiohttp_server: Any, tmp_path: Path) -> None:
    """A stand-in speaking rasa-sdk's protocol: it asks once for the domain, and rejects one action."""
    calls: list[dict[str, Any]] = []

    async def webhook(request: web.Request) -> web.Response:
        assert request.query["token"] == "s3cret"
        body = await request.json()
        calls.append(body)
        if body["next_action"] == "action_rejecting":
            return web.json_response({"error": "no order id given", "action_name": "action_rejecting"}, status=400)
        if len(calls) == 1:
            return web.json_response({"error": "resend with domain"}, status=449)
        return web.json_response({"events": [{"event": "slot", "name": "order_id", "value": "789"}],
                                  "responses": [{"text": "Looked it up.", "buttons": []}]})

    app = web.Application()
    app.router.add_post("/hooks/webhook", webhook)
    server = await aiohttp_server(app)
    # rasa-sdk's path goes before the query that a gateway in front of the server may ask for
    bot = make_bot(action_bot, f"http://127.0.0.1:{server.port}/hooks?token=s3cret", {"track_order": "action_lookup",
                                                                    "cancel_order": "action_rejecting"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert (reply.source, reply.text) == ("action", "Looked it up.")
        assert len(calls) == 2 and calls[1]["domain"]["intents"] == bot.project.intents
        # the entity, bot.yml's actions.slots, Rasa's own session_started_metadata and deskbot's verified_user
        assert set(calls[1]["domain"]["slots"]) == {"order_id", "order_status", "session_started_metadata",
                                                    "verified_user"}
        assert calls[1]["tracker"]["latest_message"]["intent"]["name"] == "track_order"
        assert bot.store.conversation("c1")["slots"]["order_id"] == "789"

        rejected = await bot.handle(Turn("c1", "/cancel_order", "web"))
        assert rejected.source == "fallback" and len(calls) == 3
    finally:
        await bot.close()


async def test_an_action_server_that_lists_no_actions_runs_the_asking_action_unvalidated(
        action_bot: Path, aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The validation action an answer gets is looked for among the action server's (GET /actions, beside the
    webhook, with its query); one that does not list them (a gateway passing the webhook alone) is asked again a
    minute later, not at each message, and meanwhile the action that asked gets the answer unchecked, as the log
    says."""
    listed: list[str | None] = []

    async def webhook(request: web.Request) -> web.Response:
        order = (await request.json())["tracker"]["slots"]["order_id"]
        return web.json_response({"responses": [{"text": f"Order {order} noted." if order else "Which order?"}],
                                  "events": [{"event": "slot", "name": "requested_slot", "value": None if order else "order_id"}]})

    async def actions(request: web.Request) -> web.Response:
        listed.append(request.query.get("token"))
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/actions", actions)
    server = await aiohttp_server(app)
    bot = make_bot(action_bot, f"http://127.0.0.1:{server.port}/webhook?token=t", {"get_refund": "action_ask_order"},
                   tmp_path)
    bot.config.thresholds.intent = bot.config.thresholds.retrieval = 1.0  # no typed message is understood
    try:
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).text == "Which order?"
        assert (await bot.handle(Turn("c1", "789", "web"))).text == "Order 789 noted."
        assert listed == ["t"]
        assert (f"the action server at http://127.0.0.1:{server.port}/actions did not list its actions (ValueError: "
                "status 404), so no validation action is run, and bot.yml's actions.map is not checked against them, "
                "until it does") in caplog.text
    finally:
        await bot.close()


async def test_an_action_list_over_the_answers_limit_is_no_list_and_fails_no_check(
        action_bot: Path, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A GET /actions answer over 1 MiB raised past the handlers of a listing that failed: the check of the map, run
    after a reload had swapped, turned the reload's answer into a refusal, and a customer's turn failed with it."""
    app = web.Application()
    app.router.add_get("/actions", lambda request: web.json_response([{"name": "action_" + "x" * 1000}] * 2000))
    server = await aiohttp_server(app)
    runner = ActionRunner(None, f"http://127.0.0.1:{server.port}/webhook", 5.0, {})
    try:
        assert await runner.check_listed_map(load_project(action_bot).config, action_bot, again=True) is None
        assert await runner.known() == set()
        assert "did not list its actions (ValueError: the action server's answer is over 1 MiB)" in caplog.text
    finally:
        await runner.close()


async def test_an_action_servers_password_stays_out_of_the_log(action_bot: Path, aiohttp_server: Any, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """An endpoint with a user and password (basic auth, which aiohttp sends) wrote the password into the log
    each time the server could not be reached. Nor is it told which Python and aiohttp call it: deskbot does."""
    seen: list[str | None] = []
    agents: list[str | None] = []

    async def webhook(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        agents.append(request.headers.get("User-Agent"))
        return web.json_response({"responses": [{"text": "Looked it up."}]})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    server = await aiohttp_server(app)
    port = server.port
    bot = make_bot(action_bot, f"http://bot:s3cret@127.0.0.1:{port}", {"track_order": "action_lookup"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).text == "Looked it up."
        assert seen == ["Basic Ym90OnMzY3JldA=="]  # bot:s3cret
        assert agents == [f"deskbot/{version('deskbot')}"]
        await server.close()
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).source == "fallback"
        assert f"the action server at http://127.0.0.1:{port}/webhook failed" in caplog.text
        assert "s3cret" not in caplog.text
    finally:
        await bot.close()


async def test_an_action_servers_token_stays_out_of_the_log_when_its_answer_is_not_http(
        action_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, not_http_port: int) -> None:
    """aiohttp names a malformed answer's URL, its query with it: a token in the endpoint's query was written into
    the log each time the server (or a proxy before it) answered something that is not HTTP."""
    bot = make_bot(action_bot, f"http://127.0.0.1:{not_http_port}/webhook?token=s3cret",
                   {"track_order": "action_lookup"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).source == "fallback"
        assert f"the action server at http://127.0.0.1:{not_http_port}/webhook failed" in caplog.text
        assert "Bad status line" in caplog.text and "s3cret" not in caplog.text
    finally:
        await bot.close()


@pytest.mark.parametrize(("answer", "said"), [
    (web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
     "answered 502 Bad Gateway for 'action_lookup', and not as rasa-sdk answers: a proxy in front of it"),
    (web.Response(status=404, text="404: Not Found"), "answered 404 Not Found for 'action_lookup'"),  # not its /webhook
], ids=["a_proxys_page", "another_servers_404"])
async def test_an_action_servers_error_that_is_not_rasa_sdks_is_logged_with_its_status(
        action_bot: Path, aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, answer: web.Response,
        said: str) -> None:
    """The log said "failed for 'action_lookup': JSONDecodeError: Expecting value", nothing of the 502 or the 404
    that told why."""
    async def webhook(request: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    server = await aiohttp_server(app)
    bot = make_bot(action_bot, f"http://127.0.0.1:{server.port}", {"track_order": "action_lookup"}, tmp_path)
    try:
        assert (await bot.handle(Turn("c1", "/track_order", "web"))).source == "fallback"
        assert f"the action server at http://127.0.0.1:{server.port}/webhook {said}" in caplog.text
    finally:
        await bot.close()


@pytest.mark.parametrize("answer", [
    None,  # nothing listens on the port
    web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),  # a proxy
    web.json_response({"events": [{"event": "slot", "value": "789"}]}),  # a slot event with no name
    web.json_response({"responses": "Looked it up."}),  # responses must be a list of messages
    web.json_response({"responses": [{"text": "x" * (1 << 20)}]}),  # a runaway answer
    web.json_response([]),  # rasa-sdk answers an object; an empty list was taken for an empty answer
    # followed, the customer's conversation (the tracker) went to wherever the answer pointed
    web.Response(status=307, headers={"Location": "/elsewhere"}),
], ids=["down", "not_json", "slot_without_name", "responses_not_a_list", "over_1_MiB", "a_list", "redirected"])
async def test_an_action_server_that_is_down_or_answers_nonsense_falls_back(
        action_bot: Path, aiohttp_server: Any, tmp_path: Path, answer: web.Response | None) -> None:
    async def webhook(request: web.Request) -> web.Response:
        assert answer is not None
        return answer

    async def elsewhere(request: web.Request) -> web.Response:
        return web.json_response({"events": [{"event": "slot", "name": "order_id", "value": "789"}]})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_post("/elsewhere", elsewhere)
    server = await aiohttp_server(app)
    endpoint = f"http://127.0.0.1:{server.port}"
    if answer is None:
        await server.close()
    bot = make_bot(action_bot, endpoint, {"track_order": "action_lookup"}, tmp_path)
    try:
        reply = await bot.handle(Turn("c1", "/track_order", "web"))
        assert reply.source == "fallback" and reply.text.startswith("Sorry, I couldn't complete that")
        assert "order_id" not in bot.store.conversation("c1")["slots"]  # nothing of a rejected answer applied
        assert (await bot.handle(Turn("c1", "/get_refund", "web"))).source == "template"  # and the bot goes on
    finally:
        await bot.close()
