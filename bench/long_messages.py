"""Long messages: a trained bot's intent accuracy when its test questions come inside a longer message.

    python bench/long_messages.py BOT_DIR --test TEST.jsonl

Each in-scope test question is asked three ways: as it is, after a customer's story ("story first": a
regular customer, happy until now, with a problem today: 50 English words or 70 Chinese characters,
with the question past the classifier's 64 tokens) and before it ("ask first").
The served model reads each once as deskbot reads it (a long message's first quarter and its end,
``retrieval.text.head_and_tail``) and once as the encoder alone would (its first tokens only), in the
same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import finetune.classifier
from bot.project import load_project
from bot.server import load_serving_model
from retrieval.text import head_and_tail

STORY = {
    "en": "Hello, I have been a customer of your shop for many years and I was always happy with the service, "
          "the delivery was quick and your team was friendly, but this time I have a question about something "
          "and I hope you can help me with it today.",
    "zh": "你好，我是你们店的老顾客了，一直以来对你们的服务都很满意，送货也很快，客服也很热情，"
          "不过这次我遇到了一点问题，希望你们今天能帮我处理一下，谢谢。",
}


def story_for(text: str) -> str:
    return STORY["zh"] if any("\u4e00" <= ch <= "\u9fff" for ch in text) else STORY["en"]


def head_only(texts: list[str], tokenizer: Any, max_tokens: int | None, prefix: str = "") -> list[str]:
    """:func:`head_and_tail`'s stand-in for the baseline: the prefix and the whole text, which the encoder
    then cuts to its first tokens."""
    return [prefix + text for text in texts]


def accuracy(nlu: Any, texts: list[str], intents: list[str]) -> float:
    analyses = [a for start in range(0, len(texts), 32) for a in nlu.analyse(texts[start:start + 32])]
    return round(sum(a.prediction.intent == intent for a, intent in zip(analyses, intents)) / len(texts), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bot", type=Path)
    parser.add_argument("--test", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.test.open() if line.strip()]
    rows = [row for row in rows if row["intent"] != "oos"]
    intents = [row["intent"] for row in rows]
    asked = {
        "plain": [row["text"] for row in rows],
        "story_first": [f"{story_for(row['text'])} {row['text']}" for row in rows],
        "ask_first": [f"{row['text']} {story_for(row['text'])}" for row in rows],
    }
    nlu = load_serving_model(load_project(args.bot), device="cpu", workers=1)
    figures: dict[str, Any] = {"n": len(rows), "max_length": nlu.classifier.encoder.max_seq_length}
    for reading, cut in (("head_and_tail", head_and_tail), ("head_only", head_only)):
        finetune.classifier.head_and_tail = cut
        figures[reading] = {way: accuracy(nlu, texts, intents) for way, texts in asked.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
