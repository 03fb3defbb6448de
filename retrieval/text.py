"""Text as deskbot's models read it, kept apart from the encoder so that loading a bot's files (which
compares examples as the models will read them) does not import the models' libraries."""

from __future__ import annotations

import opencc

_SIMPLIFIED = opencc.OpenCC("t2s.json")


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
