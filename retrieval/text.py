"""Text as deskbot's models read it, kept apart from the encoder so that loading a bot's files (which
compares examples as the models will read them) does not import the models' libraries."""

from __future__ import annotations

from typing import Any

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


HEAD_SHARE = 0.25  # of a long message's tokens, from its start; the rest from its end


def head_and_tail(texts: list[str], tokenizer: Any, max_tokens: int | None) -> list[str]:
    """``texts`` that fit in ``max_tokens`` (special tokens included) as they are; longer ones as their
    first quarter and their end, joined by a space.

    An encoder keeps a long message's first tokens and drops the rest, while a customer often tells the
    story first and asks last: "I bought a coat for my daughter last week … can I get my money back?".
    Keeping the head and the tail read long texts best among the cuts tried for fine-tuned BERT
    classifiers (Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?"). The cut falls
    between tokens, by the tokenizer's character offsets, and leaves two tokens of room for the join's
    own tokenisation. A model without a length limit, or with a tokenizer that gives no offsets (a slow
    one), reads its texts as they are.
    """
    if not max_tokens or not getattr(tokenizer, "is_fast", False):
        return texts
    limit = max_tokens - tokenizer.num_special_tokens_to_add()
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    head = max(1, int(limit * HEAD_SHARE))
    tail = limit - head - 2
    return [text if len(spans) <= limit or tail < 1 else f"{text[:spans[head - 1][1]]} {text[spans[-tail][0]:]}"
            for text, spans in zip(texts, offsets)]
