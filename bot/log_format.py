"""The format of ``bot serve``'s log: its lines as deskbot writes them, and a traceback without the personal data an
exception's text may quote."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from numbers import Number
from types import TracebackType
from typing import TypeAlias
from urllib.parse import quote, quote_plus

from dialogues.redact import redact
from dialogues.store import kept_conversations, log_tag

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The loggers whose lines deskbot writes, which name a conversation and a client by their tags and quote no customer.
# Another library's (asyncio's "Task exception was never retrieved", which quotes the task's exception; aiohttp's, which
# names the client's address) is said as an exception's text is.
DESKBOT_LOGGERS = ("deskbot", "bot", "dialogues", "finetune", "retrieval")
# A Slack or WeCom conversation's id, as an exception may quote it (the store's KeyError of one): a WeCom one names the
# employee (``wecom:{corp}:{userid}``), and the log names a conversation by its tag.
PLATFORM_CONVERSATION = re.compile(r"(?<![A-Za-z0-9_.:@-])(?:slack|wecom):[A-Za-z0-9_.:@-]*[A-Za-z0-9_:@-]")
# The web conversations the code running in this context named (a web request's, a socket's latest), whose ids an
# exception or another library's line may quote: a web conversation's id, which its client chooses, has no shape to be
# told by, as a platform's has, and it is the visitor's key to their conversation (:func:`names_conversation`).
_NAMED: ContextVar[tuple[str, ...]] = ContextVar("named_conversations", default=())
MAX_NAMED = 16  # conversations a context keeps named: a socket's joined ones (bot.channels.web.MAX_JOINED)
# A word a web conversation's id may be (:data:`bot.channels.web.WebConversationId`'s letters), long enough to be
# looked up in the store wherever a line quotes it (:func:`as_logged`): a shorter one, which many a word would match, is
# put as its tag where the request or socket that named it failed alone.
_WEB_ID_WORD = re.compile(r"(?<![A-Za-z0-9_.:@%#-])[A-Za-z0-9_.-]{8,128}(?![A-Za-z0-9_.:@-])")  # not a tag's digits
# And a shorter one quoted, as an exception quotes the value it failed on (``KeyError('u42')``): looked up, and put as
# its tag, only so quoted, since as a word it would stand for any "u42" a line says.
_QUOTED_SHORT_WORD = re.compile(r"(?<=(['\"]))[A-Za-z0-9_.-]{1,7}(?=\1)")
# A tag deskbot wrote (a conversation's, an address's), set aside from the redaction as a conversation's id is.
_TAG = re.compile(r"#[ac][0-9a-f]{12}(?![0-9a-f])")
_ASIDE = "[CONVERSATION{}]"  # where a conversation's id stood in what is logged, while the rest is redacted
ExcInfo: TypeAlias = "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"


class RedactedTracebacks(logging.Formatter):
    """A formatter whose lines of other libraries than deskbot's are redacted (:func:`as_logged`), and whose
    tracebacks keep the exception's type and every frame (file, line, function and its source
    line: deskbot's and the shop's code), and its text redacted as the store keeps a message (:func:`redact`).
    deskbot's log lines name a conversation by its tag and never quote a customer, but a traceback printed what the
    exception said, and exceptions often quote the value they failed on: a ``ValueError`` quoting the message, a
    ``KeyError`` of an e-mail address, a SQLite error quoting a value. The log is read by everyone on call and kept
    by its aggregator for long, beyond `bot purge`'s reach. deskbot's own words hold none of what the redaction
    finds, so they read as they were written, but the values they quote are redacted (:meth:`format`); what it
    replaces reads as its placeholder (``[EMAIL]``), so that the line still says which value failed."""

    def format(self, record: logging.LogRecord) -> str:
        """``record`` said, its traceback formatted here: the one another handler's formatter wrote on the record
        (``exc_text``, which logging's formatters reuse) is the exception's text as it was. A deskbot line's values
        (``%s``, ``%r``) are said as an exception's text is (:class:`AsLogged`): its words are deskbot's, but what
        it quotes (an exception, an agent's message, an action's answer) may hold a customer's details or a
        conversation's id."""
        args = record.args
        cached, record.exc_text = record.exc_text, None if record.exc_info else record.exc_text
        if args and record.name.partition(".")[0] in DESKBOT_LOGGERS:
            record.args = ({key: _as_logged(value) for key, value in args.items()} if isinstance(args, Mapping)
                           else tuple(_as_logged(value) for value in args))
        try:
            return super().format(record)
        finally:
            record.exc_text, record.args = cached, args

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        if record.name.partition(".")[0] not in DESKBOT_LOGGERS:
            record.message = as_logged(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: ExcInfo) -> str:  # noqa: N802  (logging's name)
        kind, value, tb = ei
        if kind is None or value is None:
            return super().formatException(ei)
        return "".join(redacted_traceback(traceback.TracebackException(kind, value, tb))).rstrip("\n")


class Verbatim(str):
    """A value a deskbot line says as it is: an address of deskbot's own (the one it listens on, a proxy's to set in
    ``server.limits.trusted_proxies``, a configured URL), which the redaction would take as a customer's."""


class AsLogged:
    """A value of a deskbot line, said (``%s``) or quoted (``%r``) as :func:`as_logged` says an exception's text."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return as_logged(str(self.value))

    def __repr__(self) -> str:
        return as_logged(repr(self.value))


def _as_logged(value: object) -> object:
    """``value`` as a deskbot line says it: a number (``%d``, ``%g``) or a :class:`Verbatim` as it is, else
    :class:`AsLogged`."""
    return value if value is None or isinstance(value, (Number, Verbatim)) else AsLogged(value)


def redacted_traceback(shown: traceback.TracebackException) -> list[str]:
    """``shown`` formatted as Python does, with the text of each exception in it redacted: those it was raised
    from or while handling, those of an exception group, their notes, and a syntax error's quoted line."""
    seen: set[int] = set()
    pending = [shown]
    while pending:
        each = pending.pop()
        if id(each) in seen:
            continue
        seen.add(id(each))
        each._str = as_logged(each._str)  # what str() of the exception said, which format_exception_only writes
        if each.__notes__:
            each.__notes__ = [as_logged(str(note)) for note in each.__notes__]
        for field in ("msg", "text"):  # a SyntaxError's words and the line it quotes, written instead of _str
            if isinstance(getattr(each, field, None), str):
                setattr(each, field, as_logged(getattr(each, field)))
        pending.extend(linked for linked in (each.__cause__, each.__context__) if linked is not None)
        pending.extend(each.exceptions or ())
    return list(shown.format())


def names_conversation(conversation_id: str) -> None:
    """Have the log put ``conversation_id`` as its tag (:func:`log_tag`) wherever an exception or another library's
    line quotes it, from here to the end of this context (a web request's task, a socket's, the tasks they start):
    deskbot's own lines name a conversation by its tag, but a traceback printed what the exception said (a KeyError
    of the id), and a web conversation's id has no shape :func:`as_logged` could find it by."""
    named = _NAMED.get()
    if conversation_id and conversation_id not in named:
        _NAMED.set((*named, conversation_id)[-MAX_NAMED:])


def as_logged(said: str, conversations: Iterable[str] = ()) -> str:
    """What an exception said, as the log may keep it: redacted as the store keeps a message, and each conversation's
    id in it put as its tag (:func:`log_tag`): ``conversations``, those this context named (:func:`names_conversation`)
    and any Slack or WeCom one's, as it is or as a URL quotes it (``wecom%3Aww1%3Achen``). The ids are set aside
    before the redaction, which would take a WeCom userid that is an e-mail address and leave the rest of the id;
    a named one only where it stands apart from the words around it, since a short id (``c``) is a part of many."""
    ids: list[str] = []

    def aside(conversation_id: str) -> str:
        if conversation_id not in ids:
            ids.append(conversation_id)
        return _ASIDE.format(ids.index(conversation_id))

    quoted = {found[0] for found in _QUOTED_SHORT_WORD.finditer(said)}
    stored = kept_conversations({word for found in _WEB_ID_WORD.finditer(said) for word in (found[0], found[0].rstrip("."))}
                                | quoted)
    said = _TAG.sub(lambda found: aside(found[0]), said)
    named = (*conversations, *_NAMED.get())
    for conversation_id in dict.fromkeys(one for one in (*named, *sorted(stored, key=len, reverse=True)) if one):
        tag = aside(conversation_id)
        if conversation_id in quoted and conversation_id not in named:
            said = re.sub(rf"(?<=(['\"])){re.escape(conversation_id)}(?=\1)", tag, said)
            continue
        for written in sorted({conversation_id, quote(conversation_id, safe=""), quote_plus(conversation_id)}, key=len,
                              reverse=True):
            said = re.sub(rf"(?<!\w){re.escape(written)}(?!\w)", tag, said)
    said = PLATFORM_CONVERSATION.sub(lambda found: aside(found[0]), said)
    said = redact(said)
    return re.sub(r"\[CONVERSATION(\d+)\]", lambda kept: _tag(ids[int(kept[1])]) if int(kept[1]) < len(ids)
                  else kept[0], said)


def _tag(set_aside: str) -> str:
    """What stands where ``set_aside`` was: a tag deskbot wrote as it is, a conversation's id as its tag."""
    return set_aside if _TAG.fullmatch(set_aside) else log_tag(set_aside)
