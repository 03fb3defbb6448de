"""Text as deskbot's models read it, kept apart from the encoder so that loading a bot's files (which
compares examples as the models will read them) does not import the models' libraries."""

from __future__ import annotations

import copy
import re
import unicodedata
import weakref
from collections.abc import Sequence
from typing import Any

import opencc
import regex

_SIMPLIFIED = opencc.OpenCC("t2s.json")
TRADITIONAL = opencc.OpenCC("s2t.json")  # OpenCC's own forms, which leave every Traditional character as written
# What a customer is answered in: Taiwan's standard forms, which Hong Kong reads too (為 where OpenCC's own write 爲)
WRITTEN_TRADITIONAL = opencc.OpenCC("s2tw.json")
HONG_KONG = opencc.OpenCC("s2hk.json")  # which keeps 台 and 着 as written, as Hong Kong and Taiwan write them


def model_text(text: str) -> str:
    """``text`` as deskbot's models read it: Traditional Chinese in Simplified characters.

    Customers in Hong Kong and Taiwan write 訂單 and 註銷 where most shops' examples, and most of the
    Chinese a multilingual model learnt from, write 订单 and 注销: other tokens, so the demo bot was unsure
    of three times as many of its Chinese test questions written in Traditional characters. Simplified
    Chinese, English and the other alphabets pass unchanged (Japanese kanji are converted too, alike in
    training and serving); so does text Python holds but cannot encode (a lone surrogate), which the
    converter would refuse.
    """
    try:
        return _SIMPLIFIED.convert(text)
    except UnicodeEncodeError:
        return text


def spellings(text: str) -> set[str]:
    """``text`` as customers in either Chinese script may write it: as given, in Simplified characters (as the
    models read Traditional ones), and in Traditional ones, OpenCC's own forms, Taiwan's and Hong Kong's
    (广州 and 廣州; 台 and 臺). Text in neither script is its only spelling, as is text the converter refuses."""
    try:
        simplified = model_text(text)
        return {text, simplified, *(c.convert(simplified) for c in (TRADITIONAL, WRITTEN_TRADITIONAL, HONG_KONG))}
    except UnicodeEncodeError:  # half a surrogate pair
        return {text}


# What the model is not shown: C0 and C1 controls, every whitespace character (str.split's) and the
# invisible format characters (soft hyphen, Arabic letter mark, Mongolian vowel separator, zero-width
# space and joiners, direction marks and isolates, word joiner, variation selectors, byte-order mark,
# annotation marks) and Hangul fillers. Spelled as a regex class that Python, JavaScript and Rust read
# alike, so that the API schema promises exactly what the server accepts; hence no astral characters
# (tag characters), which JavaScript reads in a class only with a flag the schema cannot carry.
INVISIBLE = (r"\x00-\x20\x7f-\xa0\xad\u061c\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000"
             r"\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb")
_INVISIBLE_RUNS = re.compile(f"[{INVISIBLE}]+")


def normalise(text: str) -> str:
    """NFKC, then every run of invisible characters (``INVISIBLE``) made one space, and the ends
    trimmed: what the model sees, so that "refund\u200b?" and "refund ?" are one question."""
    return _INVISIBLE_RUNS.sub(" ", unicodedata.normalize("NFKC", text)).strip(" ")


# The direction embeddings, overrides and isolates (LRE to RLO, LRI to PDI): each reorders the text after it, to the
# end of its line, which a terminal shows as a customer wrote it, columns and all (the "Trojan Source" trick).
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{BIDI_CONTROLS}]")


def printable(text: str) -> str:
    """``text`` with each control character (C0, DEL, C1) written as its escape (``\\x1b``), and each direction
    control (``BIDI_CONTROLS``) as its (``\\u202e``), for a terminal. What customers write reaches the terminal of
    whoever runs `bot stats`, `bot review` or `bot purge --dry-run` (a feedback comment, the ``user`` a page or client
    sends, stored as sent): an escape sequence in it would clear the screen, retitle the window or show a link to an
    address other than its text (OSC 8), a line break or a tab would add a row or a column of its own to a listing,
    and a right-to-left override would show what follows it on the line backwards (a count, another column)."""
    return _CONTROLS.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xff else f"\\u{code:04x}"


def model_inputs(texts: Sequence[str], simplified: bool) -> list[str]:
    """``texts`` as a model reads them, in training and serving alike: as the server reads a message
    (:func:`normalise`: an example written in full-width letters trained MiniLM on unknown tokens where
    the served message had letters), and Traditional Chinese as Simplified for a model that reads it so
    (:func:`model_text`)."""
    texts = [normalise(text) for text in texts]
    return [model_text(text) for text in texts] if simplified else texts


def same_example(text: str) -> str:
    """What two examples share when they are one message to the classifier: spacing, invisible characters,
    case, character width and Chinese script aside (the server reads "在吗？" as "在吗?" and "退款\u200b" as
    "退款", :func:`normalise`, and the models read 取消訂單 as 取消订单, so examples under two intents would
    teach the classifier two answers to one message)."""
    return model_text(normalise(text).casefold())


def same_text(text: str) -> str:
    """The key under which customer messages are one message to a reviewer: a label on one is a label on
    all of them, in the review queue and in what a retrain learns from labels. That is
    :func:`same_example`'s message (the classifier reads 取消訂單 as 取消订单) up to punctuation and with any
    number alike: a question about order 5 is the one about order 12, and takes the same label. Kept
    apart is what a label could not cover alike: a pause between Chinese words and emoji ("👍" and "😡" are
    not one message, nor "thanks 👍" and "thanks 👎"). Built on :func:`same_example`, so what the classifier
    reads as one message is never two to a reviewer."""
    example = same_example(text)
    key = comparable(_PAUSE_IN_UNSPACED.sub("_", example), number_digits=1)
    return " ".join(filter(None, [key, *_PICTOGRAPH.findall(example)])) or example


# A comma, an enumeration comma, a semicolon or a colon between Chinese words is a pause that can carry
# the meaning: "不，要退款" (no: I want a refund) is not "不要退款" (I don't want a refund).
_PAUSE_IN_UNSPACED = re.compile(r"(?<=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff])\s*[,、;:]\s*"
                                r"(?=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff])")

# Emoji: "thanks 👍" is not "thanks 👎".
_PICTOGRAPH = regex.compile(r"\p{Extended_Pictographic}")


# Punctuation inside a word or a number that leaves one word or number behind, not two: "can't" is "cant",
# "e-mail" "email", and "1,234" one number; not "1.50" or "1-2", which are not 150 nor 12.
_INSIDE = re.compile(r"(?<=[^\W\d])['\u2019\-\u2010\u2011](?=[^\W\d])|(?<=\d),(?=\d{3}(?!\d))")


# Chinese characters and Japanese kana: scripts written without spaces, so a space or a comma beside
# one separates no words ("你们有没有，自行车卖" is "你们有没有自行车卖", "订单 123" is "订单123").
_SPACE_BESIDE_UNSPACED = re.compile(r"(?<=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]) | (?=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff])")


def comparable(text: str, number_digits: int | None = None) -> str:
    """Text up to case, spacing and punctuation, and, with ``number_digits``, the digits of every run of
    that many digits or more."""
    text = _INSIDE.sub("", text.casefold())
    if number_digits is not None:
        text = re.sub(rf"\d{{{number_digits},}}", "#", text)
    return _SPACE_BESIDE_UNSPACED.sub("", " ".join(re.sub(r"[^\w#]+", " ", text).split()))


# A price: a currency sign before a whole amount (or one ending .00 or .99) or a currency after it ("$1499",
# "1499元", "20 EUR"; in Hong Kong and Taiwan "1499塊", "1499港元" and Cantonese "1499蚊"). An amount with other
# cents ("charged $234.56 twice") is the customer's own. One with its currency after it is read from the start of
# its run of digits and commas only: read from each digit of a long run, each going to its end, 20,000 digits
# took 18 s.
_AMOUNT = r"[0-9][0-9,]*(?:\.(?:00|99))?(?![0-9.,])"
PRICE = re.compile(rf"[$€£¥]\s?{_AMOUNT}|(?<![0-9,]),*{_AMOUNT}\s?(?:元|块|塊|蚊|円|港元|港[币幣]|美元|人民[币幣]"
                   r"|(?:dollars?|euros?|usd|eur|gbp|rmb|cny|hkd)(?![a-z]))", re.IGNORECASE)

# A web address as the web chat links it (INLINE in bot/static/widget.js): with a path's part or a query's name or
# value that starts in Chinese (https://shop.example/帮助/退货?类型=全部), not with Chinese text written straight after an
# ASCII part (…/faq请查看), after punctuation or after a space, nor with the punctuation that ends the sentence.
WEB_ADDRESS = re.compile(r"https?://(?:[^\s<>\"'\u0080-\uffff]|(?<=[/=?&#\u0080-\uffff])"
                         r"[^\s<>\"'\x00-\x7f\u2000-\u206f\u3000-\u303f\uff00-\uffef])+(?<![.,;:!?)\]])")

HEAD_SHARE = 0.25  # of a long message's tokens, from its start; the rest from its end
_OWN_TOKENIZERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _own(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` for counting and cutting (:func:`token_counts`, :func:`head_and_tail`), always
    called without padding or truncation. A tokenizer keeps the padding and truncation of its last call, and
    the server's model workers encode from several threads at once: a call with other settings meanwhile
    makes another thread's fail ("Already borrowed") or pad what it should not."""
    if (own := _OWN_TOKENIZERS.get(tokenizer)) is None:
        own = _OWN_TOKENIZERS[tokenizer] = copy.deepcopy(tokenizer)
    return own


def token_counts(texts: list[str], tokenizer: Any, max_tokens: int | None) -> list[int]:
    """How many tokens of each text an encoder reads: special tokens included, at most ``max_tokens``."""
    own = _own(tokenizer)
    extra = own.num_special_tokens_to_add()
    counts = [len(ids) + extra for ids in own(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    return [min(n, max_tokens) for n in counts] if max_tokens else counts


def head_and_tail(texts: list[str], tokenizer: Any, max_tokens: int | None, prefix: str = "") -> list[str]:
    """``prefix`` and each text, the whole text when they fit in ``max_tokens`` (special tokens included),
    else the text's first quarter and its end, joined by a space.

    An encoder keeps a long message's first tokens and drops the rest, while a customer often tells the
    story first and asks last: "I bought a coat for my daughter last week … can I get my money back?".
    Keeping the head and the tail read long texts best among the cuts tried for fine-tuned BERT
    classifiers (Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?"). The cut falls
    between tokens, by the tokenizer's character offsets; where a character is several tokens (Hangul in
    a WordPiece vocabulary) the end is shortened until the whole fits. A model without a length limit, or
    with a tokenizer that gives no offsets (a slow one), reads its texts whole.
    """
    if not max_tokens or not getattr(tokenizer, "is_fast", False):
        return [prefix + text for text in texts]
    own = _own(tokenizer)

    def count(text: str) -> int:
        return len(own(text, add_special_tokens=False, verbose=False)["input_ids"])

    room = max_tokens - own.num_special_tokens_to_add()
    limit = room - count(prefix)  # for the text
    head = max(1, int(limit * HEAD_SHARE))
    read = []
    for text, spans in zip(texts, own(texts, add_special_tokens=False, return_offsets_mapping=True,
                                      verbose=False)["offset_mapping"]):
        tail = limit - head - 2  # the join may tokenise into a token or two more
        while len(spans) > limit and tail >= 1:
            cut = f"{text[:spans[head - 1][1]]} {text[spans[-tail][0]:]}"
            if (over := count(prefix + cut) - room) <= 0:
                text = cut
                break
            tail -= over
        read.append(prefix + text)
    return read


def intent_phrase(intent: str) -> str:
    """An intent's name in lower-case words: "card_arrival" → "card arrival", "PlayMusic" → "play music".

    One rule for every place a name stands in for a message: a fallback button's default title, the
    retrieval query of a ``/intent`` button payload, and the extra example few-shot training adds.
    """
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", intent).replace("_", " ").replace("-", " ").lower()


def title_key(text: str) -> str:
    """A button's title as a customer may type it: case, width, spacing, punctuation and Chinese script aside."""
    return comparable(same_example(text))
