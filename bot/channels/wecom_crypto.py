"""WeCom (企业微信) callback cryptography, equivalent to Tencent's ``WXBizMsgCrypt``.

WeCom signs every callback with SHA-1 over the sorted ``[token, timestamp, nonce, encrypted]`` and
encrypts the message with AES-256-CBC: key = base64(EncodingAESKey + "="), IV = the first 16 key
bytes, plaintext = 16 random bytes + a 4-byte big-endian length + the message + the receive id
(the CorpID), padded PKCS#7-style to **32-byte** blocks. The 32 matters: the official vector ends in
a pad of 22, which a 16-byte unpadder (``cryptography``'s ``PKCS7(128)``) rejects, so the padding
is done here and only the AES itself comes from ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import string
import xml.etree.ElementTree as ET

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import ElementTree as defused
from defusedxml.common import DefusedXmlException

from bot.channels.base import same_secret

BLOCK = 32


class WeComError(ValueError):
    """A callback that cannot be accepted: malformed (HTTP 400) unless a subclass says otherwise."""


class SignatureError(WeComError):
    """The ``msg_signature`` does not match: the request did not come from WeCom (HTTP 401)."""


class ReceiveIdError(WeComError):
    """The payload decrypted but was meant for another corp or app (HTTP 401). ``receive_id`` is the one it was
    meant for (WeCom's: it decrypted with the app's key), as text: the CorpID to set, where this one was mistyped."""

    def __init__(self, message: str, receive_id: str = "") -> None:
        super().__init__(message)
        self.receive_id = receive_id


class WrongKeyError(WeComError):
    """The payload does not decrypt with this EncodingAESKey: encrypted for another app, or with a key
    changed in the admin console and not here (HTTP 401, as for another corp's)."""


def parse_xml(data: bytes | str) -> ET.Element:
    """Parse untrusted XML, refusing any DTD.

    ``xml.etree`` expands internal entities, so a document type declaration could carry a "billion
    laughs" bomb; WeCom never sends one, so defusedxml's parser refuses any, while a customer's text that
    merely mentions ``<!DOCTYPE`` inside ``<Content>`` is read as text. Bytes are decoded strictly as
    UTF-8, WeCom's encoding, so that a body in any other says so instead of failing somewhere later.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise WeComError("XML is not UTF-8") from exc
    try:
        return defused.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise WeComError("XML with a DTD or entities is refused") from None
    except ET.ParseError as exc:
        raise WeComError(f"malformed XML: {exc}") from exc


TOKEN_CHARS = frozenset(string.ascii_letters + string.digits)
BASE64 = TOKEN_CHARS | {"+", "/"}
AES_KEY_CHARS = 43  # as the admin console shows an EncodingAESKey: 32 bytes in base64, without its closing "="


def aes_key(encoding_aes_key: str, token: str = "") -> bytes:
    """The AES key of an ``EncodingAESKey``, or a ValueError saying what is wrong with it as the admin console's
    page shows it. The base64 "=" that closes it, which the console leaves off, may be added: it is the same key.
    A character that base64 has no place for (a full-width "，" or a space an input method slipped in) is named:
    it was refused as "string argument should contain only ASCII characters", naming no key, or as "not base64";
    and a key of the wrong length beside a Token of a key's length is said to be the two swapped."""
    text = encoding_aes_key.removesuffix("=")
    if odd := sorted(set(text) - BASE64, key=text.index):
        raise ValueError(f"EncodingAESKey holds {', '.join(map(repr, odd))}, which no EncodingAESKey has (letters, "
                         "digits, + and / alone): copy it again from the app's API receiving settings (接收消息 > 设置API接收)")
    if len(text) != AES_KEY_CHARS:
        swapped = " (the Token and the EncodingAESKey swapped?)" if len(token) == AES_KEY_CHARS else ""
        raise ValueError(f"EncodingAESKey must be {AES_KEY_CHARS} characters (32 bytes once decoded), not "
                         f"{len(text)}{swapped}")
    return base64.b64decode(text + "=")


MAX_TOKEN_CHARS = 32


def check_token(token: str) -> None:
    """A ValueError unless ``token`` could be a Token the admin console takes (up to 32 letters and digits): one
    holding another character (a "，" copied with it) or longer (the EncodingAESKey pasted in its place) signed no
    request the way WeCom does, and the start said nothing; each request was then refused."""
    if odd := sorted(set(token) - TOKEN_CHARS, key=token.index):
        raise ValueError(f"Token holds {', '.join(map(repr, odd))}, which no Token has (letters and digits alone): copy "
                         "it again from the app's API receiving settings (接收消息 > 设置API接收)")
    if len(token) > MAX_TOKEN_CHARS:
        key = " (the EncodingAESKey?)" if len(token) == AES_KEY_CHARS else ""
        raise ValueError(f"Token has {len(token)} characters, more than a Token has ({MAX_TOKEN_CHARS}){key}")


class WeComCrypto:
    """Signs, verifies, encrypts and decrypts WeCom callback payloads for one app."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        key = aes_key(encoding_aes_key, token)
        check_token(token)
        self.token = token
        self.receive_id = receive_id
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        # query values aiohttp could not decode keep their bytes as surrogates: they sign, and fail to match
        text = "".join(sorted([self.token, timestamp, nonce, encrypted]))
        return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()

    def check_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise :class:`SignatureError` unless ``msg_signature`` matches, compared in constant time."""
        expected = self.signature(timestamp, nonce, encrypted)
        if not same_secret(msg_signature, expected):
            raise SignatureError("msg_signature does not match")

    def encrypt(self, message: str) -> str:
        """Encrypt ``message`` for WeCom, returning base64 text."""
        body = message.encode()
        plain = os.urandom(16) + len(body).to_bytes(4, "big") + body + self.receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """Decrypt base64 ``encrypted``; refuses bad padding, bad lengths and a foreign receive id."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text (found by tests/test_fuzz.py)
            raise WeComError("ciphertext is not base64") from exc
        if not data or len(data) % 16:
            raise WeComError("ciphertext length is not a multiple of the AES block")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise WrongKeyError("bad padding: is the EncodingAESKey right?")
        content = plain[16:-pad]
        if len(content) < 4:
            raise WrongKeyError("plaintext too short: is the EncodingAESKey right?")
        length = int.from_bytes(content[:4], "big")
        if len(content) < 4 + length:
            raise WrongKeyError("message length exceeds the plaintext: is the EncodingAESKey right?")
        if (receive_id := content[4 + length :]) != self.receive_id.encode():
            raise ReceiveIdError("receive id does not match this corp", receive_id.decode("utf-8", "replace"))
        try:
            return content[4 : 4 + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WeComError("message is not UTF-8") from exc

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The GET handshake: check the signature over ``echostr`` and return its plaintext."""
        self.check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(self, post_body: bytes | str, msg_signature: str, timestamp: str, nonce: str) -> str:
        """The POST callback: take ``<xml><Encrypt/>…</xml>``, verify, and return the inner XML text."""
        encrypted = parse_xml(post_body).findtext("Encrypt")
        if not encrypted:
            raise WeComError("no <Encrypt> element")
        self.check_signature(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt_message(self, reply_xml: str, nonce: str, timestamp: str) -> str:
        """Wrap a passive reply: ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``."""
        encrypted = self.encrypt(reply_xml)
        root = ET.Element("xml")
        for tag, value in (
            ("Encrypt", encrypted),
            ("MsgSignature", self.signature(timestamp, nonce, encrypted)),
            ("TimeStamp", timestamp),
            ("Nonce", nonce),
        ):
            ET.SubElement(root, tag).text = value
        return ET.tostring(root, encoding="unicode")
