"""Which language a turn is answered in: English or Chinese.

A bot with ``language: en`` or ``zh`` always answers in that language. A ``multi`` bot answers in
the language of the customer's latest typed message: Chinese when it has a Chinese character,
English otherwise. A button's payload (``/track_order``) or an order number is in no language, so
the conversation keeps the last one seen, in its ``language`` slot.

Every text the bot itself says (the fallback, the handoff notices, button titles) may be one string
or one per language, so a ``multi`` bot never answers a Chinese customer in English.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import PlainValidator

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = get_args(Language)


def _text(value: Any) -> str | dict[Language, str]:
    """One message for a config error, where pydantic's would list what each branch of the union wanted.
    A blank text is refused: it would be a button with no title (which Slack refuses, whole message and all)
    or a message that says nothing."""
    texts = [value]
    if isinstance(value, dict) and value and set(value) <= set(LANGUAGES):
        texts = list(value.values())
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("expected a text, or one text per language: {en: ..., zh: ...}")
    if not all(text.strip() for text in texts):
        raise ValueError("a text may not be blank")
    return value


# One text for every language, or one per language: {en: "Talk to a person", zh: 转人工}
Text = Annotated[str | dict[Language, str], PlainValidator(_text)]
SLOT = "language"  # the slot that holds a multi bot's conversation language
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


def written_in(text: str) -> Language:
    return "zh" if CJK.search(text) else "en"


# What is read in no language: a link (also a Markdown link's target) or an e-mail address.
_ADDRESSES = re.compile(r"\]\([^)]*\)|https?://\S+|\S+@\S+")


def mostly_written_in(text: str) -> Language:
    """The language most of a text is in: Chinese when its Chinese characters are at least as many as its
    Latin words, links and addresses aside. For the shop's answers, which may name a Chinese carrier in an
    English sentence ("with SF Express (顺丰速运)"); any Chinese character would make it Chinese, and no
    English customer would get it. A short Chinese answer made mostly of English names ("iPhone 15 Pro
    Max 有货") counts as English."""
    text = _ADDRESSES.sub(" ", text)
    chinese = len(CJK.findall(text))
    return "zh" if chinese and chinese >= len(re.findall(r"[A-Za-z]+", text)) else "en"


def turn_language(bot_language: str, text: str, previous: str | None = None) -> Language:
    """The language to answer ``text`` in. A button's payload (whatever its intent's name is written in),
    or a message with no word in it (an order number, an emoji), keeps ``previous``, the conversation's."""
    if bot_language in LANGUAGES:
        return bot_language  # type: ignore[return-value]
    if text.startswith("/") and previous in LANGUAGES:
        return previous  # type: ignore[return-value]
    if CJK.search(text):
        return "zh"
    if not LATIN.search(text):
        return previous if previous in LANGUAGES else "en"  # type: ignore[return-value]
    return "en"


def say(text: Text, language: str, default: str | None = None) -> str:
    """``text`` in ``language``; a text without that language gives ``default``, else its first one."""
    if isinstance(text, str):
        return text
    return text.get(language) or default or next(iter(text.values()))
