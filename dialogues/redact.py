"""Personal data out of text before it leaves the conversation store.

Exported training data, and the agent answers that retrieval may show to other customers, must not
carry one customer's email address, phone number, card or identity number. Each is replaced by a
placeholder such as ``[EMAIL]``, so a sentence keeps its shape for training.

Support traffic is full of order numbers, so digits are redacted only when they are unmistakably
personal: a card number must start like a card and pass the Luhn check, a Chinese resident ID must
pass its checksum, and a phone number must be written like one (a ``+`` country code, a Chinese
mobile ``1[3-9]xxxxxxxxx``, or a separated North American ``(555) 010-0199``). Lookarounds on
digits are used instead of ``\\b`` because ``\\b`` sees no boundary between Chinese text and digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
CN_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
INTL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)")
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


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_valid(digits):
        return "[CARD]"
    return match.group(0)


def _digits_between(low: int, high: int, placeholder: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return placeholder if low <= len(re.sub(r"\D", "", match.group(0))) <= high else match.group(0)

    return replace


RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (EMAIL, lambda m: "[EMAIL]"),
    (CN_ID, lambda m: "[ID]" if cn_id_valid(m.group(0)) else m.group(0)),
    (SSN, lambda m: "[ID]"),
    (CARD, _card),
    (CN_MOBILE, lambda m: "[PHONE]"),
    (INTL_PHONE, _digits_between(8, 15, "[PHONE]")),
    (NANP_PHONE, lambda m: "[PHONE]"),
]


def redact(text: str) -> str:
    """``text`` with emails, phone numbers, card and identity numbers replaced by placeholders."""
    for pattern, replace in RULES:
        text = pattern.sub(replace, text)
    return text
