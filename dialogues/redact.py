"""Personal data out of text before it leaves the conversation store.

Exported training data, and the agent answers that retrieval may show to other customers, must not
carry one customer's email address, phone number, card or identity number. Each is replaced by a
placeholder such as ``[EMAIL]``, so a sentence keeps its shape for training.

Support traffic is full of order numbers, so digits are redacted only when they are unmistakably
personal: a card number must start like a card and pass the Luhn check, a Chinese resident ID must
pass its checksum, and a phone number must be written like one (a ``+`` country code, a Chinese
mobile ``1[3-9]xxxxxxxxx``, or a separated North American ``(555) 010-0199``). Lookarounds on
digits are used instead of ``\\b`` because ``\\b`` sees no boundary between Chinese text and digits.

Chinese input methods type full-width characters (``１３９…``, ``＠``, ``．``), which the ASCII
patterns would never see, so matching runs on an NFKC-normalised view of the text, while the
replacement is made in the text as written: everything outside a match keeps its characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
CN_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
INTL_PHONE = re.compile(r"(?<![A-Za-z0-9_+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)")
NANP_PHONE = re.compile(r"(?<!\d)(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?!\d)")

_CN_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CN_ID_CHECK = "10X98765432"
# Issuer prefixes of the card schemes (Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners).
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6011|65|64[4-9]|35|62|30[0-5]|36|38)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """The GB 11643 checksum of an 18-character Chinese resident identity number."""
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == number[17].upper()


Span = tuple[int, int]
Find = Callable[[re.Match[str]], Span | None]


def _card(match: re.Match[str]) -> Span | None:
    """Where in ``match`` a card number is: all of it or, failing that, the longest run of its digit
    groups that is one, so that an expiry or CVV written next to it (``4111 … 1111 12/25``) does
    not hide the card."""
    text = match.group(0)
    groups = [group.span() for group in re.finditer(r"\d+", text)]
    runs = [(i, j) for i in range(len(groups)) for j in range(i + 1, len(groups) + 1)]
    for i, j in sorted(runs, key=lambda run: run[0] - run[1]):  # the most groups first, then leftmost
        start, end = groups[i][0], groups[j - 1][1]
        digits = re.sub(r"\D", "", text[start:end])
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_valid(digits):
            return match.start() + start, match.start() + end
    return None


def _whole(match: re.Match[str]) -> Span:
    return match.span()


def _when(valid: Callable[[str], bool]) -> Find:
    return lambda match: match.span() if valid(match.group(0)) else None


def _digits_between(low: int, high: int) -> Callable[[str], bool]:
    return lambda text: low <= len(re.sub(r"\D", "", text)) <= high


RULES: list[tuple[re.Pattern[str], str, Find]] = [
    (EMAIL, "[EMAIL]", _whole),
    (CN_ID, "[ID]", _when(cn_id_valid)),
    (SSN, "[ID]", _whole),
    (CARD, "[CARD]", _card),
    (CN_MOBILE, "[PHONE]", _whole),
    (INTL_PHONE, "[PHONE]", _when(_digits_between(8, 15))),
    (NANP_PHONE, "[PHONE]", _whole),
]


def _nfkc_view(text: str) -> tuple[str, Sequence[int]]:
    """``text`` NFKC-normalised character by character, and for each character of that view the
    index in ``text`` of the character it came from. Normalising the whole string at once could
    compose characters across positions and lose the map back; the patterns match no combining
    marks, so the two views differ in nothing they look at."""
    if text.isascii():  # most messages: NFKC changes no ASCII character
        return text, range(len(text))
    pieces = [unicodedata.normalize("NFKC", ch) for ch in text]
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


def redact(text: str) -> str:
    """``text`` with emails, phone numbers, card and identity numbers replaced by placeholders."""
    for pattern, placeholder, find in RULES:
        view, origin = _nfkc_view(text)
        spans = [span for match in pattern.finditer(view) if (span := find(match))]
        for start, end in reversed(spans):  # from the end, so the earlier spans' indexes still hold
            text = text[:origin[start]] + placeholder + text[origin[end - 1] + 1:]
    return text
