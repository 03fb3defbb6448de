"""Which of an agent's messages answer the customer, and which only hold the line.

Agents answer in a few messages: "您好，我是小李，请稍等，我帮您查一下。", then the answer, then
"还有什么可以帮您？". Learned as the answer to the customer's question, the first would have the bot
tell the next customer to wait as Xiao Li, and the last would answer nothing. So a run of agent
messages is learned as the messages that say something, and a message made only of greetings,
introductions, holding and closing phrases says nothing. A message is never cut: "Your refund left
today. Anything else?" is learned whole, since a rule that cut clauses out of answers would also cut
"If it has not arrived in 5 days, please wait another day" in half.
"""

from __future__ import annotations

import re

from retrieval.text import model_text

# A clause that holds the line or closes it, in English and (Simplified) Chinese, by one of its phrases.
_HOLDING = re.compile(
    r"\b(?:one|a|just a) (?:moment|sec|second|minute)\b|\bplease (?:wait|hold)\b|\bhold on\b|\bbear with me\b"
    r"|\blet me (?:check|look|see|find|have a look)\b|\bi(?:['’]ll| will) (?:check|look|find out)\b"
    r"|\b(?:checking|looking into)\b|\bgive me a (?:moment|minute|sec)\b"
    r"|\bthanks? (?:you )?for (?:waiting|your patience|contacting|reaching out)\b|\banything else\b"
    r"|\b(?:happy|glad) to help\b|\bhave a (?:great|good|nice) day\b|\byou(?:['’]re| are) welcome\b"
    r"|稍等|稍候|等一下|等一等|查一下|帮您查|帮你查|为您查|给您查|正在查|正在为您|马上为您|久等|耐心"
    r"|还有什么|还有其他|还有别的|其他问题|其它问题|不客气|祝您|很高兴为您|感谢您的咨询"
)
# A clause that only greets, introduces the agent or acknowledges.
_CHATTER = re.compile(
    r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b.{0,15}|(?:this is|my name is) \w+(?: \w+){0,3}"
    r"|(?:i['’]m|i am) \w+(?: from \w+(?: \w+)?)?"
    r"|ok(?:ay)?|sure|no problem|got it|thanks?(?: you)?(?: so much| very much| a lot)?"
    r"|(?:您好|你好|哈喽|嗨|早上好|下午好|晚上好)[呀啊哦]?|亲(?:爱的)?(?:顾客|用户|客户)?|我是(?:客服)?.{1,4}|好的|好|嗯+|收到|没问题|明白|谢谢.{0,4}"
)
_CLAUSES = re.compile(r"[,.!?;:，。！？；：、…~～()（）\n]+")


def says_nothing(text: str) -> bool:
    """Whether an agent's message is only greetings, introductions, holding and closing phrases."""
    clauses = [c.strip() for c in _CLAUSES.split(model_text(text).lower())]
    return all(_HOLDING.search(c) or _CHATTER.fullmatch(c) for c in clauses if c)


def run_answer(texts: list[str]) -> str:
    """What a run of an agent's messages to one question answers: the messages that say something, one a
    line; empty when none does (the agent is still looking)."""
    return "\n".join(text for text in texts if not says_nothing(text))
