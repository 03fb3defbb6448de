"""A demo custom action: look an order up in a small SQLite table.

It is a standard rasa-sdk action, so it runs unchanged in deskbot (in-process) and in a Rasa
action server (`python -m rasa_sdk --actions actions`).
"""

from __future__ import annotations

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


def orders_db() -> sqlite3.Connection:
    """The demo's order table, created next to this file on first use."""
    conn = sqlite3.connect(Path(__file__).with_name("orders.sqlite"))
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, status TEXT, tracking TEXT, eta TEXT)")
    conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)", ORDERS)
    conn.commit()
    return conn


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        order_id = tracker.get_slot("order_id")
        if not order_id:
            dispatcher.utter_message(text="Sure — what's your order number?")
            return []
        with orders_db() as conn:
            row = conn.execute("SELECT status, tracking, eta FROM orders WHERE id = ?", [order_id]).fetchone()
        if row is None:
            dispatcher.utter_message(text=f"I couldn't find order {order_id}. Could you check the number?")
            return [SlotSet("order_id", None)]
        status, tracking, eta = row
        text = f"Order {order_id} is **{status}**."
        if tracking:
            text += f" Tracking: {tracking}."
        if eta:
            text += f" Expected delivery: {eta}."
        dispatcher.utter_message(text=text)
        return [SlotSet("order_status", status)]
