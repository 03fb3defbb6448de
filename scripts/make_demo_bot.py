"""Rebuild the demo bot's data files from the Bitext customer-support set.

    python scripts/make_demo_bot.py ../shared/data/bitext_customer_support

Writes bot/demo/nlu.yml, history.jsonl and test.jsonl: a small, deterministic sample (examples
chosen by a hash of their text) of the CDLA-Sharing-1.0 Bitext data, followed by the shop's own
examples, test questions and order number patterns from scripts/demo_shop/, which were written for
deskbot: Chinese ones for every intent, small talk, and the ``oos`` intent. test_traditional.jsonl
holds the shop's Chinese test questions in Traditional characters, as customers in Hong Kong and
Taiwan write them (OpenCC's s2t). responses.yml and bot.yml are written by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import opencc
import yaml

EXAMPLES_PER_INTENT = 60
HISTORY_PER_INTENT = 15
TEST_PER_INTENT = 6
DEMO = Path(__file__).resolve().parent.parent / "bot" / "demo"
OWN = Path(__file__).resolve().parent / "demo_shop"

# Bitext answers carry {{Placeholder}} slots. The demo shop fills its contact details, and shows the
# names of pages, sections and buttons ({{Order History}}) as they would appear on its site, in bold.
# An answer with a particular customer's data (an order number, or a slot for one, a fee, a date)
# would tell every later customer someone else's details, so it is left out of the history, and so
# is one that repeats a person's name from its question ("the invoices from Mr. Smith"): it answers
# that customer alone. So is one that names an amount of money ("you are expecting a rebate of $299", to a
# customer who named none) or a time ago ("your invoices from 6 weeks ago"), and one left with a placeholder
# in brackets, which no {{slot}} marks ("Our refund process usually takes [processing time]").
FILLS = {
    "website": "website", "website name": "website", "website url": "shop.example.com",
    "customer support phone number": "+1 555 0100", "customer service phone number": "+1 555 0100",
    "support phone number": "+1 555 0100", "customer support availability": "from 9am to 6pm, Monday to Friday",
    "customer support hours": "9am to 6pm, Monday to Friday", "customer service hours": "9am to 6pm, Monday to Friday",
    "customer support working hours": "9am to 6pm, Monday to Friday", "live chat": "live chat",
    "live chat support": "live chat", "company name": "Demo Shop", "online company portal info": "our website",
    "customer support email": "support@shop.example.com", "customer service email": "support@shop.example.com",
    "customer support email address": "support@shop.example.com", "support email": "support@shop.example.com",
}
# Bitext's answers promise support "available 24/7" or "around the clock"; the demo shop's hours are its own.
HOURS = "from 9am to 6pm on weekdays"
ROUND_THE_CLOCK = re.compile(r"available (?:24/7|a?round the clock)")
PERSONAL = re.compile(r"anonymi[sz]ed|\d|number|date|amount|fee|charge|penalt|days|time|percentage|name field", re.I)
PERSON = re.compile(r"(?:Mr|Mrs|Ms|Miss|Dr)\. [A-Z][a-z]+|[A-Z][a-z]+ [A-Z][a-z]+")
CHINESE = re.compile(r"[\u3400-\u9fff]")
ONE_CASE = re.compile(r"[$€£] ?\d|\d ?(?:dollars|euros|pounds)\b|\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten) \w+ "
                      r"ago\b|\[[a-z][a-z ]*\]", re.I)
LABEL = re.compile(r"[A-Z][\w'&-]*(?:[ /][A-Za-z][\w'&-]*){0,3}")


def key(text: str) -> str:
    return hashlib.md5(text.lower().encode()).hexdigest()


def fill(question: str, answer: str) -> str | None:
    """The answer with every slot filled, or None if it is about one customer's data."""
    if re.search(r"\d{5,}", answer) or ONE_CASE.search(answer) or any(name in answer for name in PERSON.findall(question)):
        return None
    slot = re.compile(r"\{\{([^}]+)\}\}")
    names = [name.strip() for name in slot.findall(answer)]
    if any(n.lower() not in FILLS and (PERSONAL.search(n) or not LABEL.fullmatch(n)) for n in names):
        return None
    shown = slot.sub(lambda m: FILLS.get(m.group(1).strip().lower(), f"**{m.group(1).strip()}**"), answer)
    return ROUND_THE_CLOCK.sub(f"available {HOURS}", shown.replace("\r\n", "\n"))


def main(source: Path) -> None:
    train = [json.loads(l) for l in (source / "train.jsonl").open()]
    test = [json.loads(l) for l in (source / "test.jsonl").open()]
    answers = [json.loads(l) for l in (source / "answers.jsonl").open()]

    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in sorted(train, key=lambda r: key(r["text"])):
        if row["text"] not in by_intent[row["intent"]]:
            by_intent[row["intent"]].append(row["text"])
    own = {item["intent"]: [line.removeprefix("- ") for line in item["examples"].splitlines()]
           for item in yaml.safe_load((OWN / "nlu.yml").read_text())["nlu"]}
    chosen = {i: by_intent.get(i, [])[:EXAMPLES_PER_INTENT] + own.get(i, []) for i in sorted({*by_intent, *own})}
    lines = ["# Demo shop intents: a sample of the Bitext customer-support set (CDLA-Sharing-1.0, see LICENSE),",
             "# then the shop's own examples (scripts/demo_shop/): Chinese ones for every intent, a few English",
             "# ones, small talk, and oos, what the bot should not answer.",
             'version: "3.1"', "", "nlu:"]
    for intent, texts in chosen.items():
        lines += [f"- intent: {intent}", "  examples: |"] + [f"    - {t}" for t in texts]
    (DEMO / "nlu.yml").write_text("\n".join(lines) + "\n\n" + (OWN / "order_id.yml").read_text())

    used = {t for texts in chosen.values() for t in texts} | {r["text"] for r in test}
    history: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(answers, key=lambda r: key(r["text"])):
        answer = fill(row["text"], row["answer"])
        if answer and row["text"] not in used and len(history[row["intent"]]) < HISTORY_PER_INTENT:
            history[row["intent"]].append({"question": row["text"], "answer": answer, "intent": row["intent"]})
    with (DEMO / "history.jsonl").open("w") as out:
        for intent in sorted(history):
            for item in history[intent]:
                out.write(json.dumps(item, ensure_ascii=False) + "\n")

    tests: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(test, key=lambda r: key(r["text"])):
        if len(tests[row["intent"]]) < TEST_PER_INTENT:
            tests[row["intent"]].append(row)
    with (DEMO / "test.jsonl").open("w") as out:
        for intent in sorted(tests):
            for row in tests[intent]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.write((OWN / "test.jsonl").read_text())
    traditional = opencc.OpenCC("s2t.json")
    with (DEMO / "test_traditional.jsonl").open("w") as out:
        for row in map(json.loads, (OWN / "test.jsonl").read_text().splitlines()):
            if CHINESE.search(row["text"]):
                out.write(json.dumps({**row, "text": traditional.convert(row["text"])}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
