"""Filters on aiohttp's own log, which ``bot serve`` adds once: a request its client broke said in one INFO line
without the secrets aiohttp quotes of it, at a bounded rate, and a socket's unasked subprotocols left out."""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

from dialogues.store import address_tag

# A header line holding a secret (the admin token, a session cookie, a platform's signature) to the end of what
# aiohttp's parse error quotes of it, and a credential quoted without its header's name (a line over 8 KiB).
_SECRET_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|x-slack-signature|x-api-key)\s*:.*")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+\S+")
# What aiohttp quotes of the line it stopped at, to the end of its message: often a value without its header's
# name (``Got more than 8190 bytes when reading: b'session=…'``, the pure-Python parser's ``Invalid HTTP
# header: b'TOKEN\\x01'``), or a request line whose URL holds a conversation's id or what an agent searched for (the
# pure-Python parser's ``Bad status line 'GET /api/conversations/web-…/history?q=… HTTP/1.1 x'``, as a str), so none
# of it is kept but the header's name where it starts the quote.
_QUOTED = re.compile(r"(\bb|(?<=\s))(['\"])(?:([!#$%&*+.^_`|~0-9A-Za-z-]+)\s*:)?.*")


def _quoted(match: re.Match[str]) -> str:
    bytes_, name = match[1], match[3]
    return f"{bytes_}'{name}: [redacted]'" if name else f"{bytes_}'[redacted]'"


def redacted(error: str) -> str:
    """A client error as aiohttp says it, without the secrets it may quote: a header line it stopped at
    (``Authorization: Bearer TOKEN\\r``) is quoted whole, and the log would keep the admin token."""
    return _QUOTED.sub(_quoted, _CREDENTIAL.sub(r"\1 [redacted]", _SECRET_HEADER.sub(r"\1: [redacted]", error)))


CLIENT_ERROR_LINES = 30  # requests their clients broke said in the log in CLIENT_ERROR_WINDOW_S; the rest counted
CLIENT_ERROR_WINDOW_S = 60.0


class ClientErrorsInOneLine(logging.Filter):
    """A request its client broke (a malformed header, a gzip body that is not gzip) is logged by aiohttp
    with a traceback at ERROR level, and a broken body twice: once more as aiohttp drains what is left of
    it after json_errors has answered 400. Nothing on the server needs mending, so one INFO line says it,
    with no secret a broken header line quoted (:func:`redacted`). A request too broken to parse is answered
    below deskbot's limits, uncounted, so past ``lines`` such lines in ``window_s`` the rest are only counted,
    and the next line said says how many: one client could otherwise fill the disk the log is on."""

    def __init__(self, lines: int = CLIENT_ERROR_LINES, window_s: float = CLIENT_ERROR_WINDOW_S) -> None:
        super().__init__()
        self.lines, self.window_s = lines, window_s
        self._since = -math.inf  # when the window of the lines said began (monotonic)
        self._said = self._unsaid = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, web.RequestPayloadError) or (isinstance(error, HttpProcessingError) and 400 <= error.code < 500):
            if not self._within_budget():
                return False
            said = (f"{error.code}, message: invalid URL [redacted]" if isinstance(error, InvalidURLError)  # the URL alone
                    else redacted(" ".join(str(error).split())))
            record.msg, record.args = "%s: %s", (_peers_tagged(record), said)
            if self._unsaid:
                record.msg += f" (and {self._unsaid} more such requests before it, not logged)"
                self._unsaid = 0
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True

    def _within_budget(self) -> bool:
        """Count one line; False past ``lines`` in the window, when it is to be left out."""
        now = time.monotonic()
        if now - self._since >= self.window_s:
            self._since, self._said = now, 0
        if self._said >= self.lines:
            self._unsaid += 1
            return False
        self._said += 1
        return True


def _peers_tagged(record: logging.LogRecord) -> str:
    """``record``'s message (aiohttp's ``Error handling request from %s``) with each address in it by its tag
    (:func:`address_tag`), as deskbot's own lines name a client: an IP address is a customer's personal data."""
    args = record.args if isinstance(record.args, tuple) else ()
    return str(record.msg) % tuple(address_tag(arg) if _is_address(arg) else arg for arg in args) if args else \
        record.getMessage()


def _is_address(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


CLIENT_ERRORS = ClientErrorsInOneLine()


def unasked_subprotocols(record: logging.LogRecord) -> bool:
    """Leave out aiohttp's warning of a socket asking for subprotocols deskbot does not speak (the widget asks for
    none), which quotes up to 8 KB of the client's words: one could write it hundreds of times a minute."""
    return not str(record.msg).startswith("%s: Client protocols")
