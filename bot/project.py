"""The bot project folder: load, validate and hand out its parts.

Every file a user edits is validated when it is loaded, so a typo stops ``bot train`` or ``bot serve``
with one message that names the file and the line, instead of a stack trace minutes later.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import csv
import difflib
import functools
import html
import types
import typing
import io
import json
import os
import re
import shlex
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, NoReturn
from urllib.parse import quote

import yaml
from bs4 import BeautifulSoup, Declaration, ProcessingInstruction, Tag
from markdownify import MarkdownConverter
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, IPvAnyNetwork, ValidationError
from pydantic_core import SchemaValidator, core_schema
from yarl import URL

from bot.language import (CJK, LANGUAGES, SCRIPT, SLOT, KeyMistake, Language, Script, Text, language_meant,
                          mistake_in, per_language, typed_in_pinyin)
from bot.responses import (MAX_BUTTON_TITLE_CHARS, MAX_REPLY_CHARS, Button, PayloadValue, ResponseVariant,
                           Responses, read_payload, variable_names, variables_are_names)
from dialogues.export import about_one_case
from dialogues.review import OOS
from retrieval.options import IndexOptions, IndexType, Settings
from retrieval.text import (INVISIBLE, intent_phrase, model_text, normalise, same_example, same_text, spellings,
                            title_key)

# The bot's own buttons, which no intent may be named after (its button payload /NAME would be taken).
HANDOFF_PAYLOAD = "/handoff"
STORE_DIR_ENV = "DESKBOT_STORE_DIR"  # the folder of the conversation store, over bot.yml's store_dir
RESUME_PAYLOAD = "/resume"
RESERVED_PAYLOADS = (HANDOFF_PAYLOAD, RESUME_PAYLOAD)


def button_payloads(intents: Iterable[str]) -> frozenset[str]:
    """What the bot's buttons send: ``/INTENT`` selects that intent outright, as in Rasa, and the bot's own."""
    return frozenset({*(f"/{intent}" for intent in intents), *RESERVED_PAYLOADS})


MAX_INTENT_CHARS = 100  # its button's payload /NAME must get through every channel (Slack's values: 2,000)


def reserved_name(name: str) -> str | None:
    """Why ``name`` cannot name an intent: its button payload /NAME is one of the bot's own, or too long to
    come back from a button on every channel."""
    if f"/{name}" in RESERVED_PAYLOADS:
        return f"intent {name!r}: /{name} is the bot's own button payload; rename the intent"
    if len(name) > MAX_INTENT_CHARS:
        return (f"intent {name[:30]!r}…: {len(name)} characters, more than an intent name may have "
                f"({MAX_INTENT_CHARS}): its button could not select it on every channel")
    return None


def intent_label(label: str) -> str:
    """An intent a data file names (a labelled line's, a test line's, an answer's in history.jsonl) as
    nlu.yml spells names: normalised as a button's payload reaches the bot (NFKC, spaces and invisible
    characters made one space, trimmed), so that "top_up " and "ｔｏｐ_ｕｐ" are top_up. ValueError when
    nothing is left of it."""
    if not (name := normalise(label)):
        raise ValueError("an intent name is empty")
    return name


def intent_name(intent: str) -> str:
    """``intent`` as nlu.yml can hold it: :func:`intent_label`, and not a name :func:`reserved_name` refuses."""
    name = intent_label(intent)
    if reserved := reserved_name(name):
        raise ValueError(reserved)
    return name


class ProjectError(Exception):
    """A bot project file is missing or wrong. The message names the file and, when known, the line."""


class ProjectErrors(ProjectError):
    """The mistakes one read of the bot's files found, a line each: an editor who made ten typos learns of all ten
    at once, not one a run."""

    def __init__(self, mistakes: list[str]) -> None:
        super().__init__("\n".join(mistakes))
        self.mistakes = mistakes


class Mistakes(list[str]):
    """The mistakes found so far in a read of the bot's files, which goes on past each to find the others."""

    @contextlib.contextmanager
    def noted(self) -> Iterator[None]:
        """Note the :class:`ProjectError` the block raises, and go on after the block."""
        try:
            yield
        except ProjectErrors as exc:
            self.extend(exc.mistakes)
        except ProjectError as exc:
            self.append(str(exc))

    def raise_any(self) -> None:
        """Raise the mistakes found, all of them, if there are any, in file order (:func:`in_file_order`)."""
        if len(self) == 1:
            raise ProjectError(self[0])
        if self:
            raise ProjectErrors(in_file_order(self))


_WHERE = re.compile(r"(.+?)(?::(\d+))?: ")  # a mistake's "path:line: " or "path: "
MAX_TOLD_PER_FILE = 100


def in_file_order(mistakes: Iterable[str]) -> list[str]:
    """``mistakes`` file by file, in the order their files were first named, and in each file by line (one naming no
    line first): the checks find them in their own order (bot.yml's intents after responses.yml's, the examples
    named twice after the rest of nlu.yml), and an editor walks a file from its top to its bottom. A file's first
    ``MAX_TOLD_PER_FILE`` are told, then how many more there are from the next one's line on: 3,000 examples pasted
    without their bullets were told in 3,000 lines, the other files' mistakes lost among them."""
    files: dict[str, list[tuple[int, str]]] = {}
    for mistake in mistakes:
        where = _WHERE.match(mistake)
        path, line = (where[1], int(where[2] or 0)) if where else ("", 0)
        files.setdefault(path, []).append((line, mistake))
    told = []
    for path, said in files.items():
        said.sort(key=lambda pair: pair[0])
        told.extend(mistake for _, mistake in said[:MAX_TOLD_PER_FILE])
        if more := said[MAX_TOLD_PER_FILE:]:
            told.append(f"{path}:{more[0][0]}: and {len(more)} more mistake{'s' * (len(more) != 1)} from here on, "
                        "told once these are mended")
    return told


class ModelConfig(Settings):
    base: str = Field("default", description="Hugging Face name or path, or an alias: default, multilingual, mpnet")
    epochs: float | None = Field(None, gt=0, description="sets the training steps, epochs x ceil(examples / batch_size), "
                                 "which make fewer passes over the data in few-shot training's smaller batches; "
                                 "None lets the recipe choose from the data size")
    # Fine-tuning a transformer takes 1e-5 to 1e-4; above 0.01 the weights diverge (1e5 for 1e-5 trained to NaN).
    learning_rate: float | None = Field(None, gt=0, le=0.01)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(64, ge=8, le=512)
    seed: int = 42
    class_weights: Literal["none", "sqrt", "balanced"] = Field(
        "none", description="weight each intent's training loss by its rarity, for intents of very unequal sizes: "
                            "balanced (examples / (intents x its examples)), sqrt (that weight's square root, "
                            "gentler), none")


REQUESTED_SLOT = "requested_slot"  # what an action sets to ask the customer for a slot, as Rasa's forms do
# Rasa's slot for the metadata of the message that started the conversation (a user id the shop's page passes)
SESSION_METADATA = "session_started_metadata"
# The web customer's id that the shop's server vouched for (channels.web.identity_secret), None for any other
VERIFIED_USER = "verified_user"
# Whether the conversation had a message before this one: for a template's condition, so that a customer who says
# "hi" again after a few turns is not introduced to the bot a second time. Given to templates, never stored.
MID_CONVERSATION = "mid_conversation"
Probability = Annotated[float, Field(ge=0, le=1)]


def _auto_or_number(value: Any) -> Any:
    """Said in a line a shop can act on (a number in quotes, "0.7", is still the number; YAML's yes and no
    never get here, Settings refuses them)."""
    try:
        if value == "auto" or 0 <= float(value) <= 1:
            return value
    except (TypeError, ValueError):
        pass
    raise ValueError(f"expected auto or a number from 0 to 1, not {value!r}")


AutoOrProbability = Annotated[Probability | Literal["auto"], BeforeValidator(_auto_or_number)]


class Thresholds(Settings):
    intent: AutoOrProbability = Field(
        "auto", description="confidence at or above which the intent's answer is given; auto: calibrated at training")
    retrieval: float = Field(0.6, ge=-1, le=1, description="similarity at or above which a historical answer is given")
    fallbacks_before_handoff: int = Field(2, ge=1)


def _button_title(text: str | dict[Language, str]) -> str | dict[Language, str]:
    """A button's title is held to Slack's limit, as a template's buttons are: Slack cut it there."""
    for language, title in per_language(text):
        if len(title) > MAX_BUTTON_TITLE_CHARS:
            raise mistake_in(language, f"a button title has {MAX_BUTTON_TITLE_CHARS} characters at most (Slack's "
                                       f"limit); {title[:20]!r}… has {len(title)}")
    return text


ButtonTitle = Annotated[Text, AfterValidator(_button_title)]


AGENT = "agent"  # the variable handoff.joined_message_named names the agent with


# A {variable}, in ASCII braces or the full-width ones a Chinese input method types
_VARIABLE_LIKE = re.compile(r"[{｛]\s*[^\W\d]\w*\s*[}｝]")


def _said_as_written(text: Text) -> Text:
    """The bot's own messages are said as written: a ``{order_id}`` copied from a template would reach customers as
    typed, braces and all."""
    for language, each in per_language(text):
        if found := _VARIABLE_LIKE.search(each):
            raise mistake_in(language, f"{found.group()} would reach customers as written: bot.yml's messages are said "
                                       "as they are, and only responses.yml's templates fill in values; leave it out")
    return text


Said = Annotated[Text, AfterValidator(_said_as_written)]  # a message of the bot's own, said as written

WECOM_MESSAGE_BYTES = 2048  # the most of a WeCom text message's content, in UTF-8 bytes: WeCom cuts what is past it


def _one_wecom_message(text: Text) -> Text:
    """A text WeCom shows as one message (a hint, sent as the callback's reply as it is) within its 2,048 bytes: WeCom
    cut a longer one at the byte, mid-character in Chinese (3 bytes each), where the count of characters looked far
    from it."""
    for language, each in per_language(text):
        if (size := len(each.encode())) > WECOM_MESSAGE_BYTES:
            raise mistake_in(language, f"it is {size:,} bytes in UTF-8, more than the {WECOM_MESSAGE_BYTES:,} WeCom "
                                       f"shows in one message ({len(each):,} characters; a Chinese one is 3 bytes): "
                                       "shorten it")
    return text


WeComText = Annotated[Text, AfterValidator(_one_wecom_message)]


def _names_no_agent(text: Text) -> Text:
    """joined_message is said when no name is known, so an ``{agent}`` in it would reach customers as typed."""
    for language, each in per_language(text):
        if "{" + AGENT + "}" in each:
            raise mistake_in(language, "it is said when no agent's name is known: name them in "
                                       "handoff.joined_message_named")
    return text


def _names_the_agent(text: Text) -> Text:
    """Filled with the agent's name alone: any other variable, or none, would reach customers as typed."""
    for language, each in per_language(text):
        try:
            names = variable_names(variables_are_names(each))
        except ValueError as exc:
            raise mistake_in(language, str(exc)) from None
        if unknown := sorted(names - {AGENT}):
            raise mistake_in(language, f"{{{unknown[0]}}} is not a variable it can use: {{{AGENT}}}, the agent's name, "
                                       "is the only one")
        if AGENT not in names:
            raise mistake_in(language, f"it names the agent with {{{AGENT}}}, or is left out")
    return text


class HandoffConfig(Settings):
    """What the bot says on handing a conversation to a person and taking it back: one text, or one
    per language. The defaults have both, so a bot of either language speaks it from the start."""

    intent: str | None = Field(None, description="the intent that asks for a human, e.g. contact_human_agent")
    message: Said = {"en": "I'm connecting you with a human agent. Please hold on.", "zh": "正在为您转接人工客服，请稍候。"}
    resumed_message: Said = {"en": "You're back with the bot. How else can I help?",
                             "zh": "您已回到机器人服务，还有什么可以帮您？"}
    # said on Slack and WeCom when an agent takes a conversation over from the bot (the web chat shows a banner)
    joined_message: Annotated[Text, AfterValidator(_names_no_agent), AfterValidator(_said_as_written)] = {
        "en": "A member of our team has joined and will answer you here.", "zh": "人工客服已接入，将在这里为您解答。"}
    # said instead when the agent's name is known, filled in for {agent} (None: joined_message is said)
    joined_message_named: Annotated[Text, AfterValidator(_names_the_agent)] | None = None
    busy_after_seconds: float | None = Field(
        300, gt=0, description="a customer who has waited this long for a person's reply is told, once per wait and "
                               "again when they write this long after being told, that the agents are busy "
                               "(null: never)")
    busy_message: Said = {"en": "Sorry for the wait: our agents are all busy right now. One will answer here as soon "
                                "as they can, or you can go back to the bot.",
                          "zh": "抱歉久等了，客服人员正忙，会尽快在这里回复您；您也可以返回机器人。"}
    back_button: ButtonTitle = {"en": "Back to the bot", "zh": "返回机器人"}  # with busy_message and joined_message where buttons show
    agent_script: Literal["customer", "as_written"] = Field(
        "customer", description="the Chinese script an agent's reply reaches its customer in: customer (converted to "
                                "theirs, Traditional or Simplified, as the bot's own replies are; the agents' console "
                                "keeps it as written) or as_written")
    notify_url: str | None = Field(None, pattern=r"^https?://\S+$",
                                   description="POSTed a JSON notice on every handoff, e.g. a helpdesk's or a chat room's webhook")
    console_url: str | None = Field(None, pattern=r"^https?://[^\s#]+$",
                                    description="the agents' console as they reach it, e.g. https://chat.shop.example/agent: "
                                                "the link each notice gives (null: the path /agent)")

    def joined(self, agent: str | None, language: str) -> tuple[Text, str | None]:
        """What a customer of ``language`` is told as ``agent`` (their name, if given) takes them over, and the name
        to fill in for its ``{agent}`` (None: joined_message, which has none). Filled in once the text is in its
        customer's script (:func:`name_agent`): a person's name is shown as they wrote it (张 is not 張). A
        joined_message_named without the customer's language gives way to a joined_message with it: a Chinese
        customer was told in English."""
        named = self.joined_message_named
        if named is None or agent is None or not speaks(named, language) and speaks(self.joined_message, language):
            return self.joined_message, None
        return named, agent


def speaks(text: Text, language: str) -> bool:
    """Whether ``text`` is said in ``language`` as written, not in another language for want of it (:func:`say`)."""
    return isinstance(text, str) or bool(text.get(language))


def name_agent(said: str, agent: str | None) -> str:
    """``said``, a text of handoff.joined_message_named as said, with ``agent``'s name for its ``{agent}``."""
    return said if agent is None else said.format(**{AGENT: agent})


class FallbackConfig(Settings):
    """What the bot says when it is unsure, likewise in one language or per language."""

    message: Said = {"en": "Sorry, I'm not sure I understood. Did you mean one of these?",
                     "zh": "抱歉，我不太确定您的意思。您是想问下面这些吗？"}
    rephrase: Said = {"en": "Sorry, I'm not sure I understood. Could you put it another way?",  # no intent to offer
                      "zh": "抱歉，我不太确定您的意思。能换个说法吗？"}
    # said instead after a miss right before: the same "not sure I understood" again read as a bot stuck in a loop
    again: Said = {"en": "Sorry, I still didn't catch that. Could you put it another way, or talk to a person?",
                   "zh": "抱歉，我还是没能理解。您可以换个说法，或者转人工客服。"}
    action_failed: Said = {"en": "Sorry, I couldn't complete that just now. Please try again, or ask for a person.",
                           "zh": "抱歉，刚才没能完成这个操作。请再试一次，或者转人工客服。"}
    action_slow: Said = {"en": "Sorry, that is taking longer than it should, and it may still go through. Please check "
                               "in a moment before trying again, or ask for a person.",
                         "zh": "抱歉，处理时间比预期长，操作可能仍在进行。请稍后确认再重试，或者转人工客服。"}
    # said to a message that only acknowledges or thanks ("ok", "thanks 👍", "好的[抱拳]"), which no intent answered:
    # a polite customer is no miss, and was handed to a person for saying thanks twice
    acknowledged: Said = {"en": "All right. If there's anything else, just ask.", "zh": "好的，如果还有其他问题，随时问我。"}
    human_button: ButtonTitle = {"en": "Talk to a person", "zh": "转人工客服"}
    titles: dict[str, ButtonTitle] = Field(default_factory=dict, description="intent -> button title (default: its name)")
    exclude: list[str] = Field(default_factory=list, description="intents never offered as buttons (oos never is)")


class RetrievalConfig(Settings):
    index_type: IndexType = "auto"
    options: IndexOptions = Field(default_factory=IndexOptions,
                                  description="answer index parameters (nlist, nprobe, flat_max, dedup...): retrieval/options.py")
    k: int = Field(5, ge=1, le=100)


def _slot_name(name: str) -> str:
    """A name a template can write as ``{name}`` (``{订单号}`` too)."""
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a slot name a template could use (letters, digits and _)")
    return name


def _slot_names(slots: Any) -> Any:
    """A Rasa 2 domain's ``required_slots``, a mapping of each slot to its slot mappings, refused with the list
    deskbot reads (Rasa 3's), where it was "Input should be a valid list", which said nothing of what to write."""
    if isinstance(slots, dict):
        raise ValueError(f"a mapping of slots to their slot mappings, as a Rasa 2 domain writes it: write the slots' "
                         f"names as a list, as Rasa 3 does, required_slots: [{', '.join(map(str, slots))}] (a form's "
                         f"slots are filled from nlu.yml's entities of their names, a button's values and "
                         f"validate_<form>'s extract_<slot> methods, not by slot mappings)")
    return slots


class FormConfig(Settings):
    """A Rasa form (a domain's ``forms:`` entry): the slots it asks for in turn, each with its ``utter_ask_<slot>``
    response, and the action run once all are filled, as a Rasa rule runs one after the form deactivates."""

    required_slots: Annotated[list[Annotated[str, AfterValidator(_slot_name)]], BeforeValidator(_slot_names)] = Field(
        min_length=1)
    submit: str | None = Field(None, pattern=r"^\S+$", description="the custom action (or utter_ response) run once "
                                                                    "every required slot is filled")
    ignored_intents: list[str] = Field(default_factory=list, description="intents whose messages fill none of the "
                                                                         "form's slots: answered, then asked again")
    stop_intents: list[str] = Field(default_factory=list, description="intents whose messages end the form, as its "
                                                                      "stop words do (\"I want to stop this\")")


class ActionsConfig(Settings):
    map: dict[str, Annotated[str, Field(pattern=r"^\S+$")]] = Field(default_factory=dict,
                                                                    description="intent -> custom action name")
    endpoint: str | None = Field(None, pattern=r"^https?://\S+$",
                                 description="a rasa-sdk action server; None runs actions/ in-process")
    timeout: float = Field(5.0, gt=0)
    import_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds actions/'s modules may take to import (their top level runs) before "
                                         "the load is refused, naming the line it is held at: at start and at a reload")
    slots: list[Annotated[str, AfterValidator(_slot_name)]] | None = Field(
        None, description="the slots the custom actions set, and the values they pass with a response "
                          "(utter_message(response=..., eta=...)); listed, a template variable that neither they nor "
                          "an entity fill is refused at load (None: an action may fill any, so none is checked)")
    forms: dict[Annotated[str, Field(pattern=r"^\S+$")], FormConfig] = Field(
        default_factory=dict, description="Rasa forms by name, as a domain's forms: an action's ActiveLoop, or "
                                          "actions.map, starts one")


def _origin(value: str) -> str:
    """An origin as a browser sends it (scheme and host in lower case, a non-ASCII host in its ASCII form
    (``bücher.example`` is ``xn--bcher-kva.example``), no default port, no path), ``*``, or ``null`` (a
    sandboxed frame's): an entry written otherwise (``shop.example.com``, ``https://Shop.example.com/``,
    ``https://shop.example.com:443``) would never match and refuse every page. Apps' own schemes
    (``capacitor://localhost``) are origins too."""
    if value in ("*", "null"):
        return value
    problem = ValueError(f"{value!r} is not an origin: write it as https://shop.example.com (scheme and host, no path)")
    try:
        url = URL(value.strip())
        host = url.raw_host  # in the ASCII form browsers send, by IDNA 2008 as they encode it
    except (ValueError, UnicodeError):
        raise problem from None
    if (not url.scheme or not host or url.path not in ("", "/") or url.query_string or url.fragment
            or "@" in value):  # a browser's Origin names no user or password
        raise problem
    host = f"[{host}]" if ":" in host else host
    if url.explicit_port is not None and not url.is_default_port():
        host += f":{url.explicit_port}"
    return f"{url.scheme.lower()}://{host}"


class WebChannel(Settings):
    enabled: bool = True
    title: Text | None = None  # None: the widget's own, in its language ("Support", "在线客服")
    origins: list[Annotated[str, AfterValidator(_origin)]] = Field(
        default_factory=list, description="extra origins allowed to embed the widget")
    identity_secret: str | None = Field(None, description=(
        "or DESKBOT_WEB_IDENTITY_SECRET: a web user must come with HMAC-SHA256(secret, user) in hex as user_hash, "
        "so that agents and actions can trust who they are (docs/channels.md)"))
    predictions: bool = Field(True, description=(
        "whether every client gets the model's intent, confidence and top 5 ranking with each reply; false: only a "
        "request with the admin token, as the admin API does: the rest are told the reply alone"))
    min_conversation_id_chars: int = Field(0, ge=0, le=128, description=(
        "a shorter conversation id from a web client is refused (400): the id is the key to a visitor's conversation, "
        "and one a client makes short (an order number) is guessed; 0 takes any, and the log says when one under "
        "16 characters comes (docs/security.md)"))


class SlackChannel(Settings):
    """docs/channels.md; the secrets may come from the environment instead (DESKBOT_SLACK_*)."""

    signing_secret: str | None = None
    bot_token: str | None = None
    api_url: str | None = None
    bot_user_id: str | None = None
    team_users: list[str] = Field(default_factory=list, description=(
        "the support team's Slack user ids (U…) or user groups (S…): their messages in a customer's thread are an "
        "agent's, not answered"))


class WeComChannel(Settings):
    """docs/channels.md; the secrets may come from the environment instead (DESKBOT_WECOM_*)."""

    token: str | None = None
    aes_key: str | None = None
    corp_id: str | None = None
    secret: str | None = None
    agent_id: int | None = None
    api_url: str | None = None
    previous_token: str | None = Field(None, description="the Token WeCom signs with until a new one is saved in its "
                                                         "console, accepted beside token meanwhile")
    previous_aes_key: str | None = Field(None, description="the EncodingAESKey WeCom encrypts with until a new one is "
                                                           "saved in its console, accepted beside aes_key meanwhile")
    reply_timeout: float | None = Field(None, gt=0, lt=5, description="seconds; WeCom gives up after 5")
    choice_hint: WeComText | None = None
    unread_hint: WeComText | None = None
    script: Script | None = Field(None, description=(
        "the Chinese script of the app's customers (hongkong for a Hong Kong company's, in Hong Kong's forms; "
        "traditional for Taiwan's): the Chinese replies' until a customer writes a character of either, as a web "
        "page's script is"))


class ChannelsConfig(Settings):
    web: WebChannel = Field(default_factory=WebChannel)
    slack: SlackChannel = Field(default_factory=SlackChannel)
    wecom: WeComChannel = Field(default_factory=WeComChannel)


class LimitsConfig(Settings):
    """What one client may ask of a server on the public internet (0 switches a limit off)."""

    per_ip_per_minute: int = Field(240, ge=0, description="requests from one IP address (widget API, documents, admin calls without the token)")
    failed_auth_per_ip_per_minute: int = Field(10, ge=0, description="requests from one IP address refused 401 for "
                                                                     "a wrong token (admin, agent, metrics): past it, "
                                                                     "every request of its with a token gets 429")
    per_conversation_per_minute: int = Field(30, ge=0, description="messages to one conversation")
    messages_per_ip_per_minute: int = Field(120, ge=0, description="web chat messages from one IP address, whatever "
                                                                   "their conversations (an office shares one address)")
    connections_per_ip: int = Field(100, ge=0, description="connections open at once from one IP address, its WebSockets "
                                                           "among them (not counted from the proxies X-Forwarded-For is "
                                                           "read from, whose connections carry many clients')")
    websockets_per_ip: int = Field(20, ge=0, description="WebSocket connections open at once from one IP address")
    websockets: int | None = Field(None, ge=0, description="WebSocket connections open at once in all, from every "
                                                          "address (null: half the process's open-file limit)")
    handoffs_per_ip: int = Field(20, ge=0, description="web conversations one IP address may hand to a person in "
                                                       "handoff_window_minutes (an office shares one address)")
    handoff_window_minutes: int = Field(10, ge=1, description="the moving window handoffs_per_ip counts in")
    conversations_per_ip: int = Field(100, ge=0, description="web conversations one IP address may open in "
                                                             "conversation_window_minutes (an office shares one address)")
    conversation_window_minutes: int = Field(10, ge=1, description="the moving window conversations_per_ip counts in")
    ipv6_prefix_length: int = Field(64, ge=1, le=128, description="the IPv6 prefix counted as one address: a subscriber "
                                                                  "holds a /64 at least, many a /56 or /48 (set 56 or 48)")
    trust_forwarded_for: bool = Field(False, description="take the client's IP from X-Forwarded-For (behind a proxy only)")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list, description="the proxies' addresses or networks (10.0.0.0/8): X-Forwarded-For is read only "
                                          "from them, and through as many of them as it names (a load balancer, then nginx)")


class InferenceConfig(Settings):
    """How ``bot serve`` runs the model (bench/SERVE.md has the measurements behind the defaults)."""

    quantize: Literal["none", "int8"] = Field(
        "none", description="none: full float32; int8: the encoder's linear layers in dynamic int8 on a CPU (about 1.5x "
                            "faster, 0.07 points of BANKING77 accuracy, 1 to 3 on the multilingual model), whose answer "
                            "to a message can change with the messages batched with it. bot bench nlu measures both")
    trace: bool = Field(True, description="on a CPU, run the encoder as a TorchScript trace: each pass in C++, "
                                           "without holding Python's interpreter lock between layers")
    max_batch: int = Field(64, ge=1, description="most messages in one model call")
    max_wait_ms: float = Field(0.0, ge=0, le=100, description="wait for more messages before a batch (0: never wait)")
    pass_tokens: int = Field(256, ge=8, description="on a CPU, padded tokens per encoder pass: a batch is sorted by "
                                                     "length and cut into passes of about this size (a GPU takes it whole)")
    workers: int | None = Field(None, ge=1, description="on a CPU, batches analysed at once, each on its share of "
                                                         "the cores (default: one per core; a GPU takes one)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per batch (default: the cores divided "
                                                         "among the workers)")
    max_queue: int | None = Field(512, ge=1, description=(
        "web chat messages waiting for the model at most: past it the next is answered 503 with Retry-After at once, "
        "rather than every customer waiting as long as the queue grows when messages come faster than the model "
        "answers them (Slack's and WeCom's wait: they cannot be answered 503; null: no bound)"))


# What the admin token does beyond answering customers, which an agent's own token does only where bot.yml grants it:
# serving another model, every conversation's training data, the shop's figures, and labelling the review queue,
# which teaches the next model.
AgentGrant = Literal["reload", "export", "stats", "review"]
AGENT_GRANTS: tuple[AgentGrant, ...] = typing.get_args(AgentGrant)


class AgentConfig(Settings):
    """One agent's own token (``server.agents``): what they do with it is done in their name alone. It answers
    customers (the inbox, transcripts, replies, notes); ``grants`` adds what else the admin token does, so that a token
    taken from one agent's browser cannot swap the model nor read every conversation out, and a lead chooses who labels
    what the next model learns. An agent without ``grants`` labels the review queue, as every agent did before
    ``review`` was a grant; one whose ``grants`` are set labels it where they list ``review``."""

    token: str | None = Field(None, description="the agent's token (bot.yml is then a secret: keep it to its owner)")
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                  description="the environment variable holding the token, read before token")
    grants: list[AgentGrant] | None = Field(None, description=(
        "what else of the admin API the token may do: reload (POST /admin/reload), export (GET /admin/export), stats "
        "(GET /admin/stats, the console's figures of today), review (GET /admin/review and its labels, the "
        "console's To review); unset, review alone, as before review was a grant (403 for the others)"))

    def granted(self) -> list[AgentGrant]:
        """What the token may do beyond answering customers: ``grants``, or the review queue alone where none are set."""
        return ["review"] if self.grants is None else self.grants


MAX_AGENT_CHARS = 64  # an agent's name, in server.agents as in the admin API's agent, ?agent= and ?holder=
MAX_REVIEWER_CHARS = 128  # a review label's reviewer, in the admin API and bot review's --reviewer
# What an agent's name may not hold: INVISIBLE's characters but the plain space (controls such as \r and ESC, zero-width
# ones, direction overrides, the other spaces), private-use ones, which each font draws as it likes (an icon, a letter,
# nothing), and the tag characters (U+E0000 to U+E007F, unseen, which can spell a hidden text). Two names that look
# alike would be two agents, a zero-width one could pass in the console for a colleague's, and an override shows the
# name backwards. Published as the names' pattern, which the server holds names to: the characters past U+FFFF (the
# tags and the two private-use planes) are written as themselves, which JSON Schema reads by code point (JavaScript's
# RegExp with its u flag), as Python does; JavaScript's RegExp without it reads them as halves, and refuses the pattern.
UNSEEN_IN_NAMES = (INVISIBLE.replace(r"\x00-\x20", r"\x00-\x1f", 1) + r"\ue000-\uf8ff"
                   + "\U000e0000-\U000e007f\U000f0000-\U0010ffff")
AGENT_NAME_PATTERN = f"^[^{UNSEEN_IN_NAMES}]*$"  # a query's name, which may be blank (none)
VISIBLE_AGENT_NAME = f"^[^{UNSEEN_IN_NAMES}]*[^ {UNSEEN_IN_NAMES}][^{UNSEEN_IN_NAMES}]*$"  # a body's, with a character to see
_UNSEEN_IN_NAMES = re.compile(f"[{UNSEEN_IN_NAMES}]")


def seen_only(text: str, what: str) -> str:
    """``text`` as given; ValueError for a character that shows nothing or moves the text (``UNSEEN_IN_NAMES``),
    saying to write ``what`` without it."""
    if unseen := _UNSEEN_IN_NAMES.search(text):
        raise ValueError(f"holds U+{ord(unseen.group()):04X}, an invisible or control character: write {what} "
                         "with visible characters and plain spaces")
    return text


def agent_name(name: str) -> str:
    """An agent's name in Unicode's composed form (NFC), so that "José" typed with a combining accent is the José
    bot.yml names; ValueError for a character that shows nothing or moves the text (``UNSEEN_IN_NAMES``)."""
    return unicodedata.normalize("NFC", seen_only(name, "the name"))


def one_spelling_each(agents: Any) -> Any:
    """``server.agents`` as written, refused when two names are one in NFC ("José" with its accent typed apart):
    read as one, the first one's token would be lost without a word."""
    if isinstance(agents, dict):
        seen: dict[Any, Any] = {}
        for name in agents:
            if isinstance(name, str) and (other := seen.setdefault(unicodedata.normalize("NFC", name), name)) != name:
                raise KeyMistake(name, f"{other!r} and {name!r} are one name written two ways: give each agent one "
                                       "name")
    return agents


AgentName = Annotated[str, Field(min_length=1, max_length=MAX_AGENT_CHARS, pattern=r"^\S(.*\S)?$"),
                      AfterValidator(agent_name)]


def host_name(authority: str) -> str | None:
    """The host an HTTP ``Host`` header (or a ``server.hosts`` entry) names, without its port, in one form: lower
    case, no trailing dot, a non-ASCII name in its ASCII form, an IPv6 address without brackets; None for what
    names no host (a path, a user, an empty header)."""
    if not authority or any(c in authority for c in "/?#@\\ \t"):
        return None
    try:
        host = URL(f"http://{authority}").raw_host
    except (ValueError, UnicodeError):
        return None
    return (host or "").lower().rstrip(".") or None


def _served_host(value: str) -> str:
    """A ``server.hosts`` entry: a host name alone. A port or a scheme written in would never match a request."""
    name = host_name(value.strip())
    if name is None or URL(f"http://{value.strip()}").explicit_port is not None:
        raise ValueError(f"{value!r} is not a host name: write it as shop.example.com or [::1] (no scheme, port or "
                         "path)")
    return name


# What a customer's turn may take beyond its actions' time (actions.timeout), for the model and the store's writes, by
# default (server.turn_seconds): past it the turn is given up.
TURN_MARGIN_S = 25.0


class ServerConfig(Settings):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    hosts: list[Annotated[str, AfterValidator(_served_host)]] | None = Field(
        None, min_length=1, description=(
            "the host names clients reach this server by (its Host header, port aside): a request naming any other "
            "is answered 421, which keeps a page of another site that makes its own name resolve to this server "
            "(DNS rebinding) from using it (null: this machine's own names, localhost and loopback addresses, on a "
            "host on loopback without limits.trust_forwarded_for or trusted_proxies, else any host; docs/security.md)"))
    max_message_chars: int = Field(4000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    admin_token: str | None = None
    agents: Annotated[dict[AgentName, AgentConfig], BeforeValidator(one_spelling_each)] = Field(
        default_factory=dict, description="agents with a token of their own: a call made with it acts as that agent, "
                                          "whatever name it gives (docs/security.md)")
    metrics_token: str | None = Field(None, description="what a scraper of /metrics must send as a bearer token "
                                                        "(unset: /metrics answers anyone)")
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    max_web_turns: int | None = Field(1024, ge=1, description=(
        "web chat messages being answered at once at most, from their body's arrival to their reply (those waiting for "
        "the model among them): past it the next is answered 503 with Retry-After at once, before its body is read, "
        "rather than piling up in the server's own queue where inference.max_queue does not reach when they come "
        "faster than the server's CPU takes them in (null: no bound)"))
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    shutdown_seconds: float = Field(10.0, gt=0, description="how long SIGTERM waits for turns in flight")
    turn_seconds: float | None = Field(None, gt=0, le=3600, description=(
        "the longest a customer's turn may run (the model, the actions, the store's writes) before it is given up and "
        "the customer gets fallback.action_slow, its conversation free again on every server on the store; keep it "
        "above actions.timeout, which a turn's actions share (null: actions.timeout + 25 s)"))
    drain_seconds: float = Field(0.0, ge=0, le=300, description="how long SIGTERM goes on serving first, /healthz "
                                                                "answering 503, for a load balancer to move away")
    keepalive_seconds: float = Field(75.0, gt=0, le=3600, description=(
        "how long a connection may stay idle, or take to send a request's headers, before it is closed: above the "
        "idle timeout of the load balancer or proxy in front (60 s on most), lower where clients reach it directly"))
    peers_seconds: float = Field(0.5, ge=0.05, le=60, description=(
        "how often a server looks in the store for what other servers on it said in the conversations its web chat "
        "sockets hear, which reaches those customers within this (each look is one read of the store)"))


    def turn_bound(self, actions_timeout: float) -> float:
        """How long a customer's turn may run (``turn_seconds``): by default ``TURN_MARGIN_S`` more than the
        actions of the turn may take together (``actions.timeout``), for the model and the store's writes."""
        return self.turn_seconds if self.turn_seconds is not None else actions_timeout + TURN_MARGIN_S


class PrivacyConfig(Settings):
    redact: bool = True
    keep_raw: bool = False
    retention_days: int | None = Field(None, ge=1, description="bot serve deletes, every hour, the conversations with "
                                       "nothing written in this many days, as bot purge --before does (unset: none)")
    slot_hours: float | None = Field(24.0, ge=0, description="bot serve drops, every hour, the slots holding personal "
                                     "data (an e-mail address or phone number a form collected) of the conversations "
                                     "with nothing written in this many hours, as bot redact does, whether or not "
                                     "privacy.redact is on: a retention period (0 or null: kept with their conversation)")


class LearningConfig(Settings):
    """The promotion gate of ``bot retrain``, the review queue and the hot swap."""

    max_accuracy_drop: float = Field(0.0, ge=0, le=1, description="how far overall accuracy may fall (0: not at all)")
    max_intent_drop: float = Field(0.02, ge=0, le=1, description="how far any one intent's accuracy may fall")
    min_intent_examples: int = Field(5, ge=1, description="examples an intent needs in a set for its own check")
    max_forgotten: int = Field(1, ge=0, description="seed examples the candidate may lose, in all and within an "
                               "intent, listed for a check of their labels (0: none)")
    review_similarity: float = Field(0.9, ge=0, le=1, description="cosine at which review items group (0: by text only)")
    review_confidence: AutoOrProbability = Field(
        "auto", description="below this confidence a turn enters the review queue; auto: the intent threshold or 0.5, "
        "whichever is higher")
    distill: float = Field(1.0, ge=0, description="how strongly a warm-started candidate keeps the serving model's "
                           "answers where no new label asks for a change (0: not at all)")
    distill_messages: int = Field(2000, ge=0, description="recent customer messages, labelled or not, on which "
                                  "the distillation also holds (0: the training examples only)")
    interpolate: float = Field(0.5, gt=0, le=1, description="share of a warm-started candidate's trained weights "
                               "when they are averaged with the serving model's (1: the trained weights alone)")
    corrected_passes: int = Field(3, ge=1, le=100, description="passes a warm-started candidate makes over each "
                                  "label corrected since the serving model learnt it, per pass over the other "
                                  "examples (1: as often as they)")
    watch_seconds: float = Field(2.0, ge=0, description="how often bot serve checks models/CURRENT (0: never)")
    keep_served: int | None = Field(None, ge=0, description="after each bot retrain, delete the versions as `bot "
                                    "models --prune` this does: all but the serving one, the newest and this many "
                                    "newest others that served, for `bot rollback` (null: keep every version)")


class BotConfig(Settings):
    name: str = "deskbot"
    language: Literal["en", "zh", "multi"] = "en"
    store_dir: str | None = Field(None, min_length=1, description=(
        "the folder of the conversation store (dialogues.db), read from the bot's folder when relative; "
        f"{STORE_DIR_ENV} overrides it (null: the bot's folder)"))
    model: ModelConfig = Field(default_factory=ModelConfig)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)

    @property
    def base_model(self) -> str:
        """The base model to fine-tune: a Chinese or mixed bot defaults to the multilingual encoder."""
        if self.model.base.strip().lower() == "default" and self.language in ("zh", "multi"):  # as resolve_model reads it
            return "multilingual"
        return self.model.base


@dataclass
class Example:
    text: str
    intent: str


@dataclass
class Twins:
    """Two nlu.yml examples under two intents that are one message up to punctuation and numbers
    (:func:`~retrieval.text.same_text`): "where is my order" and "Where is my order?". The classifier is taught
    two answers to what a customer writes either way, and a review label or the frozen evaluation set's example
    covers both."""

    first: Example
    first_line: int | None
    second: Example
    second_line: int | None


@dataclass
class HistoryItem:
    question: str
    answer: str
    intent: str | None = None
    # From history.csv, a helpdesk's export: its agents' answers to its customers, not answers the shop wrote for all
    exported: bool = False


@dataclass
class Project:
    """Everything ``bot train`` and ``bot serve`` need from a bot folder."""

    root: Path
    config: BotConfig
    examples: list[Example]
    entity_patterns: dict[str, list[re.Pattern[str]]]
    responses: Responses
    history: list[HistoryItem] = field(default_factory=list)
    # Entities nlu.yml annotates ([123](order_id)) that no regex reads, with the line of the first annotation
    unread_entities: dict[str, int | None] = field(default_factory=dict)
    # nlu.yml's synonyms: each example, in lower case and Simplified characters, and the value it stands for
    # ("nyc" -> "New York City"); a Chinese lookup element stands for itself as written (廣州 -> 广州)
    synonyms: dict[str, str] = field(default_factory=dict)
    # Examples under two intents that differ only in punctuation or numbers, each with the first of its key
    twins: list[Twins] = field(default_factory=list)
    # history.jsonl's and history.csv's lines left out ("history.jsonl:3"): their question is longer than a
    # customer's message may be
    long_questions: list[str] = field(default_factory=list)
    # Entities nlu.yml annotates with a role or a group ({"entity": "city", "role": "departure"}), with the line of
    # the first such annotation: Rasa's DIET learns them, deskbot's regexes and lookups read the entity without
    roled_entities: dict[str, int | None] = field(default_factory=dict)
    # Intents nlu.yml lists in more than one entry, each with the lines of its entries: read as one, as Rasa does
    repeated_intents: dict[str, list[int | None]] = field(default_factory=dict)
    # nlu.yml's examples longer than a customer's message may be, each with its line: trained on, as written
    long_examples: list[tuple[int | None, Example]] = field(default_factory=list)
    # history.jsonl's and history.csv's lines left out as a question and answer read before, each with the line
    # kept: "history.csv:2 (history.jsonl:1)"
    repeated_answers: list[str] = field(default_factory=list)
    # history.jsonl's and history.csv's lines left out as tickets exported unanswered ("history.csv:4")
    unanswered_tickets: list[str] = field(default_factory=list)
    # history questions with more than one answer, kept: "'where is my parcel?' (history.jsonl:2, history.csv:4)"
    answered_otherwise: list[str] = field(default_factory=list)

    @functools.cached_property
    def intents(self) -> list[str]:
        """nlu.yml's intents, sorted: read once, as the examples are (each customer's message is decided with them)."""
        return sorted({e.intent for e in self.examples})

    @property
    def labels(self) -> set[str]:
        """What a reviewer may label a message, and a retrain learns: the intents and ``oos``. A label of an
        intent since taken out of nlu.yml teaches nothing."""
        return {*self.intents, OOS}

    @functools.cached_property
    def reads_pinyin(self) -> bool:
        """Whether nlu.yml teaches Pinyin typed without its characters (an example of some intent is): else what the
        classifier reads in such a message is noise, and the bot takes it for a miss."""
        return any(typed_in_pinyin(example.text) for example in self.examples)

    @functools.cached_property
    def button_titles(self) -> frozenset[str]:
        """The titles the bot's buttons may have (:func:`~retrieval.text.title_key`): its templates' (but those filled
        with values), the fallback's intents' and its person button's. A message that is none of these picks no button,
        and is read without looking up the buttons the conversation was offered."""
        fallback = self.config.fallback
        titles = [b.title for variants in self.responses.templates.values() for v in variants for b in v.buttons
                  if not b.variables()]
        titles += [intent_phrase(name) for name in self.intents]
        for title in [*fallback.titles.values(), fallback.human_button]:
            titles += [title] if isinstance(title, str) else title.values()
        return frozenset(map(title_key, titles))

    def history_files(self) -> str:
        """The history files this bot reads its answers from, by name ("history.jsonl and history.csv"), for
        the notes about those answers to point at the file to open; both names where it has neither."""
        return " and ".join(name for name in HISTORY_FILES if (self.root / name).exists()) or \
            "history.jsonl or history.csv"

    def unanswered(self) -> list[str]:
        """Intents nothing of the bot's own answers: no template in responses.yml, no custom action, no
        answer filed under them in history.jsonl or history.csv that the index keeps (the handoff intent and ``oos`` need
        none). Such an intent is answered only by a close history answer filed under no intent, or by an
        agent's answer learned later; otherwise a customer the classifier understood is told it did not
        understand. A template left out by mistake is a new shop's commonest slip, so ``bot train`` and
        ``bot serve`` name them."""
        answered = {*self.responses.templates, *self.config.actions.map, self.config.handoff.intent, "oos",
                    *(item.intent for item in self.history if not about_one_case(item.question, item.answer))}
        return [intent for intent in self.intents if intent not in answered]

    def needing_values(self) -> dict[str, list[str]]:
        """Intents whose every template variant, in some language the bot speaks, needs a value the customer
        may not have given (``{order_id}`` in its text or a button), with the fewest such values one needs:
        a customer who has not given them is told the bot did not understand, unless one of the intent's
        history answers is close. Those of custom actions and the handoff intent aside (the action answers;
        a handoff says handoff.message)."""
        languages = LANGUAGES if self.config.language == "multi" else (self.config.language,)
        skipped = {*self.config.actions.map, self.config.handoff.intent}
        needing = {}
        for intent, variants in self.responses.templates.items():
            if intent in skipped:
                continue
            for language in languages:
                spoken = [v.variables() - {SLOT, SCRIPT} for v in variants
                          if v.channel is None and not v.condition and v.language in (None, language)]
                if spoken and all(spoken):
                    needing[intent] = sorted(min(spoken, key=len))
        return needing

    def unspoken(self) -> list[str]:
        """Responses with a variant for a language the bot does not speak (``language: zh`` in a ``language: en``
        bot, which answers every customer in English): never shown, though written for its customers."""
        spoken = LANGUAGES if self.config.language == "multi" else (self.config.language,)
        return [name for name, variants in {**self.responses.templates, **self.responses.named}.items()
                if any(v.language not in (None, *spoken) for v in variants)]

    def unlisted_variables(self) -> dict[str, list[str]]:
        """The ``{variables}`` of responses.yml that no entity of nlu.yml fills, nor the bot itself, each with the
        responses using it, while bot.yml's ``actions.slots`` leaves unsaid which slots the custom actions set: each is
        taken as one of theirs on load, a misspelt ``{oder_id}`` too, whose variant no customer is ever shown."""
        actions = self.config.actions
        if not actions.map or actions.slots is not None:
            return {}
        filled = {*self.entity_patterns, SLOT, SCRIPT, MID_CONVERSATION, REQUESTED_SLOT, SESSION_METADATA,
                  VERIFIED_USER, *(slot for form in actions.forms.values() for slot in form.required_slots)}
        unlisted: dict[str, list[str]] = {}
        for name, variants in {**self.responses.templates, **self.responses.named}.items():
            for variable in sorted(set().union(*(v.variables() for v in variants)) - filled):
                unlisted.setdefault(variable, []).append(name)
        return unlisted

    def custom_only(self) -> list[str]:
        """Responses (an intent's template, or one an action names) that say nothing to Slack or WeCom customers of
        some language the bot speaks: each of their variants there is a custom payload alone, which only the web
        chat passes on (and Slack one of Block Kit blocks). Those customers get the intent's history answer or the
        fallback instead."""
        languages = LANGUAGES if self.config.language == "multi" else (self.config.language,)
        responses = {**self.responses.templates, **self.responses.named}
        return [name for name, variants in responses.items()
                if any(not any(v.shows_on(channel) and v.channel in (None, channel) and v.language in (None, language)
                               for v in variants) for language in languages for channel in ("slack", "wecom"))]

    def entities(self, text: str) -> dict[str, str]:
        """The entities nlu.yml's regexes and lookups find in ``text``: each one's first value
        (:meth:`entity_values`)."""
        found: dict[str, str] = {}
        for name, value in self.entity_values(text):
            found.setdefault(name, value)
        return found

    def entity_values(self, text: str) -> list[tuple[str, str]]:
        """Every value nlu.yml's regexes and lookups find in ``text``, as (entity, value) (:meth:`found_entities`)."""
        return [(found["entity"], found["value"]) for found in self.found_entities(text)]

    def found_entities(self, text: str) -> list[dict[str, Any]]:
        """Every value nlu.yml's regexes and lookups find in ``text``, each once, in the order of the entities,
        their patterns and the matches, as Rasa's RegexEntityExtractor lists them for an action ("orders 123 and
        456": both), with where in ``text`` each was found (an action reads ``e["start"]``). A value one of
        nlu.yml's synonyms lists, in any case and either Chinese script, is the synonym's, as Rasa's
        EntitySynonymMapper makes it ("NYC" -> "New York City"); so a lookup's Chinese element written in the
        other script (廣州 for 广州) is read as the lookup writes it, and an action finds it. A match gives the
        part of it in a group named ``value`` when the pattern has one, so that a pattern can name the words
        around a value without taking them (``order (?P<value>\\d+)``). A match that leaves the value empty (an
        optional group, a pattern that matches nothing) finds nothing, so it cannot wipe a slot. Digits come as
        ASCII digits: ``\\d`` matches any script's (Arabic-Indic ١٢٣, Devanagari), and an order number typed
        in them would be looked up as written, and not found. A pattern reads the text as typed and with its
        full-width forms as ASCII (:func:`ascii_forms`), the value being the typed text's, so that a pattern's
        ``[:#]`` takes the "：" a Chinese input method types ("订单号：789"), which the demo's order number missed;
        and with its Traditional characters as Simplified (:func:`model_text`) where that keeps each character in
        its place, so that a word a customer types in both scripts (订單456, as input methods mix them) is read
        as a pattern written in either takes it."""
        found: dict[tuple[str, str], dict[str, Any]] = {}  # ordered, each value once
        texts = read_forms(text)
        for name, patterns in self.entity_patterns.items():
            for match in (m for pattern in patterns for typed in texts for m in pattern.finditer(typed)):
                group = "value" if "value" in match.re.groupindex else 0
                start, end = match.span(group)
                if value := text[start:end]:
                    entity = self._entity(name, value, (start, end), "RegexEntityExtractor")
                    found.setdefault((name, entity["value"]), entity)
        return list(found.values())

    def payload_entities(self, payload: str) -> list[dict[str, Any]]:
        """A button payload's values (``/choose{"city": "NYC"}``) as :meth:`found_entities` lists typed ones, each
        spanning the payload's JSON, as Rasa's RegexMessageHandler gives them; a text none of its entity's
        patterns takes (:func:`entity_value`) is left out, and a text one takes is named as a typed value is
        (:meth:`canonical`: /choose{"city": "廣州"} sets the lookup's 广州). A true, false or null is its entity's as
        it is, as Rasa gives it (patterns read texts), for an entity of nlu.yml alone: a customer can type a payload
        too, and must not set a slot only the shop's actions set."""
        chosen, values = read_payload(payload)
        span, found = (len(chosen), len(payload)), []
        for name, given in values.items():
            for value in given if isinstance(given, list) else [given]:  # a list: each a value of the entity
                if not isinstance(value, str):
                    if name in self.entity_patterns:
                        found.append(self._entity(name, value, span, None))
                elif (taken := entity_value(self.entity_patterns.get(name, ()), value)) is not None:
                    found.append(self._entity(name, taken, span, None))
        return found

    def _entity(self, name: str, value: PayloadValue, span: tuple[int, int], extractor: str | None) -> dict[str, Any]:
        """An entity as Rasa's ``latest_message["entities"]`` lists it, its value as nlu.yml names it
        (:meth:`canonical`), with EntitySynonymMapper among its ``processors`` where that changed it, as Rasa
        marks it. A pattern's match, or a button's value, is certain: ``confidence_entity`` is 1."""
        named = self.canonical(value) if isinstance(value, str) else value
        renamed = isinstance(value, str) and named != value and self._listed(value)
        return {"entity": name, "start": span[0], "end": span[1], "value": named, "confidence_entity": 1.0,
                **({"extractor": extractor} if extractor else {}),
                **({"processors": ["EntitySynonymMapper"]} if renamed else {})}

    def canonical(self, value: str) -> str:
        """An entity's ``value`` as nlu.yml names it: the value of a synonym that lists it ("NYC" -> "New York
        City"), in any case and either Chinese script, or a lookup's Chinese element as the lookup writes it (廣州
        -> 广州); else with its digits as ASCII digits (:func:`_ascii_digits`), as an action looks a number up. A
        lookup's element written in Chinese digits (三三) is a name, kept as written."""
        return self.synonyms.get(model_text(value.lower())) or _ascii_digits(value)

    def _listed(self, value: str) -> bool:
        """Whether nlu.yml names ``value``: a synonym's example or a lookup's Chinese element."""
        return model_text(value.lower()) in self.synonyms

    @property
    def base_model(self) -> str:
        """The base model to load: bot.yml's (:attr:`BotConfig.base_model`, which versions record and compare,
        so that a bot folder moved elsewhere is no new base) with a folder read from the bot's folder."""
        return model_folder(self.root, self.config.base_model)

    def naming_words(self, entity: str) -> set[str]:
        """The words that name ``entity``'s value in the bot's own data, which a message may say besides the value and
        still be only that value (:func:`~dialogues.holding.names_only`): those of its name (order_id: "order";
        booking_ref: "booking", "ref") and those its patterns read before the value group ("订单", "單號", "purchase"
        of the demo's order number, "reservation" of a booking reference's). A list of an order's words alone left
        another entity, "booking AB1234", asking more than its value."""
        words = set(re.findall(r"[^\W\d_]{2,}", entity))
        for pattern in self.entity_patterns.get(entity, ()):
            before, value, _ = pattern.pattern.partition("(?P<value>")
            if value:  # without escapes (\d, \u2010) and character classes, whose letters are no words
                plain = re.sub(r"\[[^\]]*\]", " ", re.sub(r"\\(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", " ", before))
                words.update(word for word in re.findall(r"[^\W\d_]+", plain) if len(word) > 1 or not word.isascii())
        return words

    def is_answer(self, entity: str, text: str) -> bool:
        """Whether one of ``entity``'s patterns takes the whole message: what the shop wrote as an answer
        when an action asks for that value, in any of the forms :meth:`found_entities` reads (:func:`read_forms`)."""
        forms = read_forms(text.strip())  # once: read for each pattern, they cost a customer's message a millisecond
        return any(pattern.fullmatch(typed) for pattern in self.entity_patterns.get(entity, ()) for typed in forms)

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def store_dir(self) -> Path:
        """The folder the conversation store and what SQLite and the servers write beside it live in: the bot's
        folder, or the one :data:`STORE_DIR_ENV` or ``store_dir`` names, for a bot folder that is read-only where
        it is served (a container's configuration mounted apart from a data volume)."""
        named = self.store_dir_setting
        if named is None:
            return self.root
        folder = Path(named[1]).expanduser()
        return folder.absolute() if named[0] == STORE_DIR_ENV else self.root / folder

    @property
    def store_dir_setting(self) -> tuple[str, str] | None:
        """The setting that moves the store out of the bot's folder, as (its name, its value): the environment's
        before bot.yml's, as a container sets the one and mounts the other read-only. None where neither is set."""
        if env := os.environ.get(STORE_DIR_ENV, "").strip():  # set but empty, as compose files do: unset
            return STORE_DIR_ENV, env
        return ("store_dir in bot.yml", self.config.store_dir) if self.config.store_dir else None

    @property
    def db_path(self) -> Path:
        return self.store_dir / "dialogues.db"

    @property
    def actions_dir(self) -> Path:
        return self.root / "actions"


def config_error(root: Path, loc: tuple[Any, ...], message: str) -> ProjectError:
    """A problem with the value at ``loc`` of ``root``'s bot.yml found after reading it (an action map against
    actions/, slots listed with no action to set them), named with its line as a loading error is."""
    _, node = _load_yaml(root / "bot.yml", Mistakes())  # a key set twice is told with the file's mistakes
    return _fail(root / "bot.yml", node, loc, message)


# --- YAML with line numbers -------------------------------------------------------------------


BOT_FILES = ("bot.yml", "nlu.yml", "responses.yml", "history.jsonl")  # a bot's own data, which `bot init` writes


def _named_otherwise(path: Path) -> str:
    """What to add where the bot's file ``path`` is missing and the file is there under another name: ``.yaml``
    where deskbot reads ``.yml`` (or the other way round), or in ``data/``, where a Rasa project keeps nlu.yml."""
    other_suffix = {".yml": ".yaml", ".yaml": ".yml"}.get(path.suffix)
    named = [*([path.with_suffix(other_suffix)] if other_suffix else []), path.parent / "data" / path.name]
    there = next((other for other in named if other.is_file()), None)
    if there:
        return f"; {there} is there: deskbot reads {path.name}, so move or rename it"
    markdown = [path.with_suffix(".md"), path.parent / "data" / path.with_suffix(".md").name]
    if path.name == "nlu.yml" and (there := next((other for other in markdown if other.is_file()), None)):
        return (f"; {there} is there, in the Markdown format of Rasa 1 and 2, which deskbot does not read: convert it "
                f"with Rasa 2's `rasa data convert nlu -f yaml --data {there} --out {path.parent}` (Rasa 3 converts no "
                f"Markdown) and rename the .yml file it writes there to {path.name}")
    return ""


def _written_by_init(path: Path) -> str:
    """Where the bot's file ``path`` is simply missing (deleted, or a folder put together by hand), how to get the
    starter's: `bot init` on the bot's own folder would refuse, or with --force replace its other files too."""
    if path.name not in BOT_FILES:
        return ""
    return (f"; `bot init` writes one: run `bot init NEW_FOLDER` (--language zh or multi for those starters) and copy "
            f"NEW_FOLDER/{path.name} here")


def not_utf8(data: bytes, start: int) -> str:
    """Why ``data``, which is not UTF-8 from ``start`` on, cannot be read: said of Chinese in GBK or Big5 too, which
    Chinese Windows's editors and Excel ("CSV (逗号分隔)") save by default, so that a shop sees why its Chinese file is
    not read as it is. GB18030 reads GBK's bytes and most of Big5's; the two are not told apart, and the file is not
    read in either, since a wrong guess would garble its Chinese without a word. Said of UTF-16 too, which Windows
    Notepad saves as "Unicode": "not UTF-8 text" alone did not say what the file is, to a shop that chose Unicode."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return 'not UTF-8 text (it is UTF-16, which Windows Notepad saves as "Unicode")'
    try:
        chinese = CJK.search(data[data.rfind(b"\n", 0, start) + 1:].decode("gb18030")) is not None
    except UnicodeDecodeError:
        chinese = False
    return "not UTF-8 text" + (" (it reads as Chinese in GBK or Big5, as Chinese Windows saves text by default)"
                               if chinese else "")


def _read_text(path: Path) -> str:
    """A data file's text. It must be UTF-8 (a byte-order mark, as some Windows editors write, is
    dropped); other bytes stop with the line they are on, since a guessed encoding would garble
    Chinese examples without a word."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(f"{path}: file not found{_named_otherwise(path) or _written_by_init(path)}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ProjectError(f"{path}:{line}: {not_utf8(data, exc.start)}; save the file as UTF-8") from None


# libyaml's parser where PyYAML has it: a bot of 200,000 imported examples loaded in 35 seconds with the
# pure-Python one, before every bot train, bot serve and bot chat.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str, loader: type[yaml.SafeLoader]) -> tuple[Any, yaml.Node | None]:
    """``text``'s data and its node tree, from one parse."""
    parser = loader(text)
    try:
        node = parser.get_single_node()
        if node is None:  # an empty file
            return None, None
        # Building the data merges a merge key's mapping (<<: *base) into the node of the mapping it is in,
        # while the tree must hold the file's keys as written: such a file's data is built from a tree of its own.
        built = yaml.compose(text, Loader=loader) if "<<" in text else node
        return parser.construct_document(built), node
    finally:
        parser.dispose()


def _parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """:func:`_parse` with the fastest parser. What libyaml refuses is read again by the pure-Python parser,
    whose words (and lines) the errors below are made of: libyaml words its errors otherwise, and counts a
    bad character's place in bytes, not characters."""
    try:
        return _parse(text, _FAST_LOADER)
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
    return _parse(text, yaml.SafeLoader)


def _load_yaml(path: Path, mistakes: Mistakes | None = None) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file, keeping the node tree so that errors can point at a line. A key set twice is added to
    ``mistakes``, the file read on as YAML reads it (the later one kept), or without them raised; so is malformed
    YAML that :func:`_yaml_mistakes` reads to the end as surely mended, the file read on so."""
    text, spaced = _no_break_indents(path, _read_text(path))
    if spaced:
        if mistakes is None:
            raise ProjectErrors(spaced) if len(spaced) > 1 else ProjectError(spaced[0])
        mistakes.extend(spaced)  # the file read on with them as spaces, for its other mistakes to be told
    try:
        data, node = _parse_yaml(text)
    except yaml.reader.ReaderError as exc:  # a control character, such as a NUL pasted from elsewhere
        line = text.count("\n", 0, exc.position) + 1
        raise ProjectError(f"{path}:{line}: the control character U+{exc.character:04X} is not allowed in YAML; remove it") from None
    except yaml.YAMLError as exc:
        error, mended = _yaml_mistakes(path, text, exc)
        if mistakes is None or mended is None:
            raise error from None
        # read on as mended, for the file's other mistakes to be told in the same run (its examples', its keys')
        mistakes.extend(error.mistakes if isinstance(error, ProjectErrors) else [str(error)])
        data, node = _parse_yaml(mended)
    if repeated := list(_repeated_keys(path, node)):
        if mistakes is None:
            raise ProjectErrors(repeated)
        mistakes.extend(repeated)
    return data, node


def _yaml_mistakes(path: Path, text: str, exc: yaml.YAMLError) -> tuple[ProjectError, str | None]:
    """The malformed YAML of ``path`` (``text``, which ``exc`` refused), said with where and how to mend it. A key
    written with a full-width colon, a line indented with full-width spaces and a full-width bullet, and a line
    indented with tabs, are read on as if mended, so that each of the file (a Chinese input method types them all so,
    and an editor whose Tab key types a tab) is told in one run, with whatever else YAML then refuses, not one a
    run. With it, the text as mended where YAML reads it to the end and each mend is sure (a full-width character's
    half-width one, not a tab's guessed indentation, nor a key YAML read as text), for the file's other checks to be
    made on it in the same run; else None. A file indented with tabs throughout is read with its tabs as the editor
    showed them (:func:`_tabs_read_on`), each such line told, and its other checks made on it as so read."""
    said: list[tuple[int, str]] = []  # each mistake, after its line
    written = _YAML_BREAK.split(text)  # the file's lines with its sure mends alone: their tabs as written
    tabs_tried = tabs_read = False  # whether the file was read with every line's tabs as spaces, and read on so
    read_through: str | None = None
    while True:
        mark, context, opened = (getattr(exc, name, None) for name in ("problem_mark", "context", "context_mark"))
        problem = str(getattr(exc, "problem", None) or exc)
        lines = _YAML_BREAK.split(text)
        tab = mark is not None and "'\\t'" in problem and "\t" in lines[mark.line]
        whole = None
        if tab and not tabs_tried and mark:  # the whole file read with its tabs as spaces, unless its line alone reads further
            tabs_tried, whole = True, _tabs_read_on(written, mark.line)
            if _reach(whole) < _reach(_read_on(lines, _tab_mends(lines, mark.line))):
                whole = None
        if whole is not None:
            tabs_read, read = True, whole
            said.extend(_tab_mistakes(path, written))
        else:
            before = next((line for line in reversed(lines[:mark.line] if mark else []) if line.strip()), "")
            near = range((opened or mark).line - 1, mark.line + 2) if mark else range(0)
            quoted = range((opened or mark).line, mark.line + 1) if mark else range(0)
            full_width, mended_line = _full_width_fix(lines, near)
            if not full_width:
                full_width, mended_line = _colon_fix(problem, lines, mark, opened)
            fix = (_yaml_fix(problem, before, lines[mark.line] if mark else "") or full_width
                   or _quote_fix(lines, quoted) or _bracket_fix(context, opened, lines)
                   or _indent_fix(problem, context, opened, mark, lines))
            # told at the line to mend, where the fix names another than YAML's (a quote left open lines above, a key
            # typed with a full-width colon on the line before), for an editor who goes to the line named first
            at = int(named[1]) if (named := re.match(r"; line (\d+) ", fix)) else mark.line + 1 if mark else None
            # What was open when the problem was found, and where: a quote never closed is found at the file's end
            since = f" ({context}, on line {opened.line + 1})" if context and opened and opened.line + 1 != at else ""
            said.append(((at or 1) - 1, f"{_at(path, at)}: malformed YAML: {problem}{since}{fix}"))
            if tab and mark:
                mends = _tab_mends(lines, mark.line)
            else:
                mends = [mended_line] if mended_line is not None and fix == full_width else []
            if not mends or len(said) > MAX_YAML_MISTAKES:
                break
            on = _read_on(lines, mends)
            if not tab and mark and _reach(whole := _sure_mend(written, mends[0], mark.line)) > max(_reach(on), 0):
                read = whole  # type: ignore[assignment]
                if not tabs_read:  # the lines told a tab at a time so far are told again: said once below
                    tabs_read = True
                    said.extend(_tab_mistakes(path, written))
            elif on is None:
                break
            else:
                read = on
        text, node = read
        if isinstance(node, yaml.YAMLError):
            exc = node
            continue
        # the keys with a full-width colon that YAML read as text, a list item's "- title：Opening hours"
        mended = text.split("\n")
        as_text = [(n, f"{_at(path, n + 1)}: '{key[1]}：' is written with a full-width colon, which YAML reads as "
                       f"text, not as the key {key[1]}: write '{key[1]}: ', a half-width colon and a space")
                   for scalar in _plain_scalars(node) for n in range(scalar.start_mark.line, scalar.end_mark.line + 1)
                   if (key := _FULL_WIDTH_KEY.match(mended[n]))]
        said.extend(as_text)
        read_through = None if as_text else text
        break
    told = list(dict.fromkeys(mistake for _, mistake in sorted(said, key=lambda item: item[0])))
    return ProjectErrors(told) if len(told) > 1 else ProjectError(told[0]), read_through


def _reach(read: tuple[str, yaml.Node | None | yaml.YAMLError] | None) -> float:
    """How far YAML read a mended file (:func:`_read_on`'s, :func:`_tabs_read_on`'s): to its end, or the index of the
    line it stopped at; -1 for none."""
    if read is None:
        return -1
    if not isinstance(read[1], yaml.YAMLError):
        return float("inf")
    mark = getattr(read[1], "problem_mark", None)
    return mark.line if mark is not None else -1


def _tabs_read_on(lines: list[str], n: int) -> tuple[str, yaml.Node | None | yaml.YAMLError] | None:
    """The file of ``lines``, whose line ``n`` YAML refused for a tab, with the tabs of every line's indentation (and
    after its ``-``) as the spaces to the stops of ``_TAB_STOPS`` that YAML reads furthest with (an editor whose Tab key types a tab indents a
    whole file so, lined up at its own stops), and what YAML makes of it: its node tree, or the error it stops at
    further on; None where no stops read past line ``n``, the file's tabs then mended a line at a time."""
    best: tuple[float, str, yaml.Node | None | yaml.YAMLError] | None = None  # how far YAML read, the text, what it made
    for stops in _TAB_STOPS:
        text = "\n".join(_tabs_as_spaces(line, stops) for line in lines)
        try:
            reached, read = float("inf"), _parse_yaml(text)[1]
        except yaml.reader.ReaderError:  # said as the file's one mistake once the lines are mended
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            reached, read = (mark.line if mark is not None else -1), exc
        if reached > n and (best is None or reached > best[0]):
            best = reached, text, read
    return None if best is None else (best[1], best[2])


def _sure_mend(written: list[str], mend: tuple[int, str],
               stopped: int) -> tuple[str, yaml.Node | None | yaml.YAMLError] | None:
    """Make ``mend`` (a line's index, and the line as mended) in ``written`` (the file's lines with their tabs as
    written: the line's own tabs kept), and where the file holds lines indented with tabs, it as read with them as
    spaces past line ``stopped``, where YAML stopped (:func:`_tabs_read_on`); else None. The stops that read a file
    furthest with a key YAML read as text (a full-width colon's) may be others than those that line it up once the key
    is mended."""
    n, mended = mend
    indent = re.match(r"[ \t]*", written[n])[0]  # type: ignore[index]
    written[n] = indent + mended.lstrip(" \t") if "\t" in indent else mended
    if not any("\t" in _TAB_INDENT.match(line)[0] for line in written):  # type: ignore[index]
        return None
    return _tabs_read_on(written, stopped)


def _tab_mistakes(path: Path, lines: list[str]) -> list[tuple[int, str]]:
    """Each line of ``lines`` indented with a tab, after its index, said as YAML refuses it (:func:`_each_line`)."""
    tabbed = [n for n, line in enumerate(lines) if "\t" in _TAB_INDENT.match(line)[0] and line.strip()]  # type: ignore[index]
    return _each_line(path, tabbed, "malformed YAML: found character '\\t' that cannot start any token; indent with "
                                    "spaces: YAML takes no tabs there", "indented with tabs: indent them with spaces")


def _each_line(path: Path, numbers: list[int], mistake: str, more_are: str) -> list[tuple[int, str]]:
    """One ``mistake`` of the lines of index ``numbers``, each told with its line and index, up to
    ``MAX_YAML_MISTAKES`` of them, then how many more lines from there on are ``more_are``: a file indented so
    throughout would be told at a length that hides its other mistakes."""
    said = [(n, f"{_at(path, n + 1)}: {mistake}") for n in numbers[:MAX_YAML_MISTAKES]]
    if more := numbers[MAX_YAML_MISTAKES:]:
        said.append((more[0], f"{_at(path, more[0] + 1)}: and {len(more)} more line{'s' * (len(more) != 1)} from "
                              f"here on are {more_are}"))
    return said


def _no_break_indents(path: Path, text: str) -> tuple[str, list[str]]:
    """``text`` with the no-break spaces (U+00A0) of its lines' indentation as spaces, and each such line told: text
    copied from Word or a web page has them, and YAML reads one as text, not as indentation, so that an indented key
    (``\u00a0 retrieval: 0.6``) became a key of its own, "unknown key", or broke the file lines further on. A line of a
    ``|`` or ``>`` text (a response's) that YAML reads is left as written: there they are the text's own."""
    lines = _YAML_BREAK.split(text)
    spaced = [n for n, line in enumerate(lines) if (indent := _NO_BREAK_INDENT.match(line)) and line[indent.end():]]
    if spaced:
        with contextlib.suppress(yaml.YAMLError):
            texts = _block_text_lines(_parse_yaml(text)[1], set())
            spaced = [n for n in spaced if n not in texts]
    if not spaced:
        return text, []
    for n in spaced:
        lines[n] = _NO_BREAK_INDENT.sub(lambda indent: indent[0].replace("\u00a0", " "), lines[n], count=1)
    told = _each_line(path, spaced, "the line is indented with a no-break space (U+00A0), as text copied from Word or a "
                                    "web page is, which YAML does not read as a space: indent it with plain spaces",
                      "indented with no-break spaces: indent them with plain spaces")
    return "\n".join(lines), [said for _, said in told]


def _block_text_lines(node: yaml.Node | None, visited: set[int]) -> set[int]:
    """The indexes of the lines that the ``|`` and ``>`` texts under ``node`` are written on, below their keys'; each
    node looked at once (an alias shares its anchor's)."""
    if node is None or id(node) in visited:
        return set()
    visited.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        return set(range(node.start_mark.line + 1, node.end_mark.line + 1)) if node.style in ("|", ">") else set()
    children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
    return set().union(*(_block_text_lines(child, visited) for child in children))


# A line's indentation holding a no-break space
_NO_BREAK_INDENT = re.compile(r"[ \t]*\u00a0[ \t\u00a0]*")


def _tabs_as_spaces(line: str, stops: int) -> str:
    """``line`` with the tabs of its indentation and bullets as the spaces to the next of ``stops``; those in its text
    (a tab in a quoted text, or in an example) are left as written."""
    indent = _TAB_INDENT.match(line)[0]  # type: ignore[index]
    return indent.expandtabs(stops) + line[len(indent):]


# A line's indentation and its list bullets, where an editor's Tab key puts its tabs ("\t- hi", "-\tintent: greet")
_TAB_INDENT = re.compile(r"[ \t]*(?:-[ \t]+)*")


def _tab_mends(lines: list[str], n: int) -> list[tuple[int, str]]:
    """Line ``n``, which holds a tab, as its editor likely saw it, each with ``n``: its indentation lined up with the line
    above (with its start, then with its text after a ``- ``), then its tabs as the spaces to each of ``_TAB_STOPS``."""
    line = lines[n]
    text = line.lstrip(" \t")
    above = next((lines[k] for k in range(n - 1, -1, -1) if lines[k].strip()), "")
    lined_up = dict.fromkeys((_indent(above), len(re.match(r"[ ]*(?:-[ ]+)?", above)[0])))  # type: ignore[index]
    return [*((n, " " * start + text) for start in lined_up if "\t" in line[:len(line) - len(text)]),
            *((n, line.expandtabs(stops)) for stops in _TAB_STOPS)]


def _read_on(lines: list[str], mends: list[tuple[int, str]]) -> tuple[str, yaml.Node | None | yaml.YAMLError] | None:
    """The file of ``lines`` with the one of ``mends`` (a line's index, and the line as mended) that YAML reads furthest
    (the first of those it reads to the end), and what YAML makes of it: its node tree, or the error it stops at
    further on. One mend alone is taken as it reads; of several (a tab's, :func:`_tab_mends`), one that YAML stops at
    on its line again is not: none (None) rather than a mistake of the mend's own told, as a guess read no further
    than another is."""
    best: tuple[int, str, yaml.Node | None | yaml.YAMLError] | None = None  # how far YAML read, the text, what it made
    for n, mended in mends:
        text = "\n".join([*lines[:n], mended, *lines[n + 1:]])
        try:
            return text, _parse_yaml(text)[1]
        except yaml.reader.ReaderError:  # said as the file's one mistake once the lines are mended
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            reached = mark.line if mark is not None else -1
            if (len(mends) == 1 or reached > n) and (best is None or reached > best[0]):
                best = reached, text, exc
    return None if best is None else (best[1], best[2])


def _plain_scalars(node: yaml.Node | None) -> Iterator[yaml.ScalarNode]:
    """The unquoted scalars under ``node``, in the order of the file: where a key written with a full-width colon is
    read, as text (a quoted or block text is meant as text)."""
    if isinstance(node, yaml.ScalarNode) and not node.style:  # plain: None, or "" from libyaml
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _plain_scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _plain_scalars(key)
            yield from _plain_scalars(value)


# A tab not lined up with the line above is read on as the spaces to the next of these stops, as editors show it (most
# with stops of 4): the first that YAML reads past the line, as the line the editor saw lined up with those around it.
_TAB_STOPS = (4, 2, 8)

# How many mistakes of one malformed YAML file are told, its full-width colons read on past: a file pasted in whole
# from a Chinese input method would otherwise be read again for each of its lines.
MAX_YAML_MISTAKES = 50


# A key written with the full-width colon a Chinese input method types ("- intent：greet", "examples：|"), a line
# indented with its full-width space (U+3000), and a list item bulleted with a full-width "－" or "・", which YAML reads
# as text, not as a key, an indentation or an item.
_FULL_WIDTH_KEY = re.compile(r"[ \t]*(?:-[ \t]+)?([A-Za-z_][\w-]*)[ \t]*：")
_FULL_WIDTH_INDENT = re.compile(r"[ \t]*\u3000[ \t\u3000]*")
_FULL_WIDTH_BULLET = re.compile(r"([ \t]*)([－・])[ \t\u3000]*")
# A list item bulleted with the dash or bullet a word processor turns "- " into ("– intent: greet"), or a line starting
# with a byte-order mark (U+FEFF) pasted from another file's start: YAML reads either as text.
_WORD_BULLET = re.compile(r"([ \t]*)([–—•])[ \t]+")
_LINE_BOM = re.compile(r"[ \t]*\ufeff")
# A key followed by the no-break space (U+00A0) of text copied from Word or a web page, which YAML reads as text
_NO_BREAK_KEY = re.compile(r"[ \t]*(?:-[ \t]+)?([A-Za-z_][\w-]*):\u00a0")


def _full_width_fix(lines: list[str], near: range) -> tuple[str, tuple[int, str] | None]:
    """How to mend a full-width colon after a key, a full-width space in an indentation, a full-width bullet, a word
    processor's, a byte-order mark or a key's no-break space on one of the lines ``near`` a YAML error, which YAML names only as "mapping values are not allowed here" or "could
    not find expected ':'", on another line; and that line's index with the line mended (each full-width space as the
    two half-width ones it is as wide as), for the file to be read on, else None."""
    for n in (n for n in near if 0 <= n < len(lines)):
        line = lines[n]
        if key := _FULL_WIDTH_KEY.match(line):
            return (f"; line {n + 1} writes '{key[1]}：' with a full-width colon, as a Chinese input method types it: "
                    f"write '{key[1]}: ', a half-width colon and a space", (n, line.replace("：", ": ", 1)))
        if indent := _FULL_WIDTH_INDENT.match(line):
            return (f"; line {n + 1} is indented with a full-width space (U+3000), which YAML does not read as one: "
                    "indent with half-width spaces", (n, indent.group().replace("\u3000", "  ") + line[indent.end():]))
        if bullet := _FULL_WIDTH_BULLET.match(line):
            return (f"; line {n + 1} starts with a full-width '{bullet[2]}', which is no YAML list item: write '- ' "
                    "(half-width)", (n, f"{bullet[1]}- {line[bullet.end():]}"))
        if bullet := _WORD_BULLET.match(line):
            return (f"; line {n + 1} starts with '{bullet[2]}', as a word processor types a list's '- ', which is no "
                    "YAML list item: write '- ' (a hyphen and a space)", (n, f"{bullet[1]}- {line[bullet.end():]}"))
        if bom := _LINE_BOM.match(line):
            return (f"; line {n + 1} starts with an invisible byte-order mark (U+FEFF), as text pasted from the start "
                    "of another file may: delete it", (n, line[:bom.end() - 1] + line[bom.end():]))
        if key := _NO_BREAK_KEY.match(line):
            return (f"; line {n + 1} writes a no-break space (U+00A0) after '{key[1]}:', as text copied from Word or a "
                    "web page has, which YAML does not read as a space: type a plain space",
                    (n, line.replace(":\u00a0", ": ", 1)))
    return "", None


def _colon_fix(problem: str, lines: list[str], mark: yaml.Mark | None,
               opened: yaml.Mark | None) -> tuple[str, tuple[int, str] | None]:
    """How to mend a key written without a space after its colon (``- intent:greet``, ``retrieval:0.6``), which YAML
    reads as text and names as "mapping values are not allowed here" or "could not find expected ':'" on a line below
    (``opened``: where the text it read as a key starts), or a value holding ': ' (``text: Our hours: 9am to 6pm``),
    which YAML reads as a second key; and that line's index with the line mended, for the file to be read on, else
    None. A value ending with a colon (``- intent: greet:``) is told, not mended: the colon may be a slip."""
    if mark is None or problem not in ("mapping values are not allowed here", "could not find expected ':'"):
        return "", None
    near = dict.fromkeys((*((opened.line,) if opened else ()), mark.line - 1, mark.line))
    for n in (n for n in near if 0 <= n < len(lines)):
        if key := _KEY_NO_SPACE.match(lines[n]):
            return (f"; line {n + 1} writes '{key[1]}:' with no space after the colon, which YAML reads as text, not "
                    f"as the key {key[1]}: write '{key[1]}: ', a space after the colon",
                    (n, f"{lines[n][:key.end()]} {lines[n][key.end():]}"))
    value = _PLAIN_VALUE.fullmatch(lines[mark.line]) if mark.line < len(lines) else None
    if not problem.startswith("mapping") or not value or mark.column < value.start(2) or " #" in value[2]:
        return "", None
    if value[2].endswith(":"):
        return (f"; line {mark.line + 1} ends its value with ':', which YAML reads as a key: leave the colon out, or put "
                "the value in quotes", None)
    quoted = '"' + value[2].replace("\\", "\\\\").replace('"', '\\"') + '"'
    return (f"; line {mark.line + 1} holds ': ' in its value, which YAML reads as the start of another key: put the value "
            f"in quotes, {value[1].strip()} {quoted}", (mark.line, value[1] + quoted))


# A value in quotes, after its key or list bullet: text: "…", - '…'
_QUOTED_VALUE = re.compile(r"""[ \t]*(?:-[ \t]+)?(?:[\w-]+[ \t]*:[ \t]+)?(["'])(.*)""")
# The curly quotes a word processor, a Mac or a Chinese input method types for " and ', which YAML reads as text; and
# a value in them
_CURLY_QUOTES = "“”‘’"
_CURLY_QUOTED_VALUE = re.compile(rf"""[ \t]*(?:-[ \t]+)?(?:[\w-]+[ \t]*:[ \t]+)?([{_CURLY_QUOTES}])""")
# A key written with no space after its colon ("- intent:greet"), which YAML reads as text: not a link's "https://"
_KEY_NO_SPACE = re.compile(r"[ \t]*(?:-[ \t]+)?([A-Za-z_][\w-]*):(?=[^\s:/])")
# A key and its unquoted value, which a ': ' within would make a second key ("text: Our hours: 9am to 6pm")
_PLAIN_VALUE = re.compile(rf"""([ \t]*(?:-[ \t]+)?[A-Za-z_][\w-]*:[ \t]+)([^\s"'#|>&*!{{\[%@`{_CURLY_QUOTES}].*?)[ \t]*""")


def _quote_fix(lines: list[str], near: range) -> str:
    """How to mend a quoted text on one of the lines ``near`` a YAML error whose quotes YAML reads otherwise than
    meant: its closing quote left out (YAML reads on to the next quote, lines below, and names the line there), its
    quote within it (We're in single quotes), which ends the text early, or curly quotes (“Hello: welcome”), which are
    text to YAML, and a ": " within them a key. YAML says none of them."""
    for n in (n for n in near if 0 <= n < len(lines)):
        if curly := _CURLY_QUOTED_VALUE.match(lines[n]):
            return (f"; line {n + 1} puts its text in {curly[1]} quotes, which YAML reads as part of the text, not as "
                    "quotes: put it in straight \" quotes")
        if not (value := _QUOTED_VALUE.fullmatch(lines[n])):
            continue
        quote, rest = value[1], value[2]
        inner = re.sub(r"\\.", "", rest) if quote == '"' else rest.replace("''", "")
        if quote not in inner:
            return f"; line {n + 1} opens a text with {quote} and does not close it: end the text with {quote}"
        if not re.fullmatch(rf"[^{quote}]*{quote}[ \t]*(#.*)?", inner):
            within = "write '' for it (We''re)" if quote == "'" else 'write \\" for it'
            other = '"' if quote == "'" else "'"
            return (f"; line {n + 1}'s text in {quote} quotes holds a {quote} within it, which ends the text there: "
                    f"{within}, or put the text in {other} quotes")
    return ""


def _bracket_fix(context: str | None, opened: yaml.Mark | None, lines: list[str]) -> str:
    """How to mend a list (``[greet, goodbye``) or a mapping (``{en: Hi, zh: 你好``) written on one line without its
    closing bracket, which YAML finds lines below, at the next key or the file's end, and says as "expected ',' or
    ']'" alone, on that line."""
    if not (context and opened and context.startswith("while parsing a flow ")):
        return ""
    opening, closing, what = ("[", "]", "list") if "sequence" in context else ("{", "}", "mapping")
    line = lines[opened.line]
    if line.count(opening) <= line.count(closing):
        return ""
    return f"; line {opened.line + 1} opens a {what} with {opening} and does not close it: end the {what} with {closing}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _indent_fix(problem: str, context: str | None, opened: yaml.Mark | None, mark: yaml.Mark | None,
                lines: list[str]) -> str:
    """How to mend a line indented otherwise than the block it is in, which YAML names only as "expected <block end>,
    but found ..." or "mapping values are not allowed here": a key as far in as the ``- `` items of a list
    (``buttons:`` under ``- text:``), further in or out than the keys beside it, or further in than a ``key: value``
    line above it, whose value YAML then reads it as."""
    if problem == "mapping values are not allowed here" and mark:
        above = next((n for n in range(mark.line - 1, -1, -1) if lines[n].strip()), None)
        if (above is not None and re.match(r"\s*(-\s+)?[\w-]+:\s+[^\s#|>]", lines[above])
                and _indent(lines[mark.line]) > _indent(lines[above])):
            return (f"; line {mark.line + 1} is indented further than line {above + 1}, so YAML reads it as more of that "
                    f"line's value: line it up with the key on line {above + 1}")
        return ""
    if not (problem.startswith("expected <block end>") and context and opened and mark and opened.line < mark.line):
        return ""
    line, at, keys = mark.line + 1, mark.column, opened.column
    out = next((n for n in range(mark.line - 1, opened.line, -1) if lines[n].strip()
                and not lines[n].lstrip().startswith("#") and _indent(lines[n]) <= keys), None)
    if (at > keys and out is not None and _indent(lines[out]) == keys and re.fullmatch(r"[^\s#-][^:#]*:\s*", lines[out])
            and any(_indent(lines[n]) == at for n in range(opened.line + 1, out) if lines[n].strip())):
        # a key typed out at its block's own indent above ("goodbye:" under "responses:"), which ended the block there
        return (f"; line {out + 1} ({lines[out].strip()!r}) is as far out as {lines[opened.line].strip()!r} on line "
                f"{opened.line + 1}, while the keys around it are indented {at}: indent it {at} spaces, as they are")
    if "collection" in context and at == keys:
        return (f"; line {line} is as far in as the '- ' items of the list on line {opened.line + 1}, without being one: "
                "indent it two spaces more, with the keys of its item, or start it with '- '")
    if at != keys:
        return (f"; line {line} is indented {at} space{'s' * (at != 1)}, as no key of its block is (those of the block "
                f"from line {opened.line + 1} are indented {keys}, those within them further): line it up with the keys "
                "it belongs with")
    return ""


def _yaml_fix(problem: str, before: str, line: str) -> str:
    """How to mend what YAML reports in its own words, which do not say it: a tab, or a ``- `` line (``line``) it did
    not expect after ``before`` (the line above it), where an intent's examples lack their ``examples: |``, a block's
    lines are no further in than its key, or one example of a block is less far in than those above it (which ends
    the block there)."""
    if "'\\t'" in problem:
        return "; indent with spaces: YAML takes no tabs there"
    if (problem.startswith("expected <block end>") and re.match(r"\s*-\s", before) and re.match(r"\s*-\s", line)
            and _indent(line) < _indent(before)):
        return (f"; this line is indented {_indent(line)} space{'s' * (_indent(line) != 1)}, less than the '- ' line "
                f"above it ({_indent(before)}): line up each '- ' line with the others")
    if "found '-'" not in problem:
        return ""
    if re.search(r":\s*[|>][-+0-9]*\s*(#.*)?$", before):
        return ("; the lines of a '|' block go further in than its key ('examples: |', then each '- example' two "
                "more spaces in)")
    if re.match(r"\s*(-\s+)?intent:", before):
        return "; an intent's examples go under 'examples: |', on a line of its own after 'intent:'"
    return ""


def _repeated_keys(path: Path, node: yaml.Node | None, visited: set[int] | None = None) -> Iterator[str]:
    """YAML keeps the last of two equal keys without a word, so a second ``server:`` section appended
    to bot.yml would silently drop the first one's settings; say where both are instead, for each key set twice.
    Each node is looked at once: an alias shares its anchor's node, and walking every alias of aliases again would
    take a few lines of anchors minutes."""
    visited = set() if visited is None else visited
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    yield f"{path}:{line}: {key.value!r} is already set on line {seen[key.value]}; merge the two"
                seen.setdefault(key.value, line)
            yield from _repeated_keys(path, value, visited)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _repeated_keys(path, item, visited)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the value (or key) at ``loc`` in a composed YAML tree."""
    return _node_at(node, loc)[0]


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int | None, yaml.Node | None]:
    """The 1-based line of the value (or key) at ``loc`` in a composed YAML tree (:func:`_line_of`), and the value's
    node: None where ``loc`` is not in the tree, whose line is then that of the nearest part of it that is."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part) or (not isinstance(part, str) and _read_scalar(key) == (type(part), part)):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line, None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line, None
    return line, node


def _read_scalar(key: yaml.Node) -> tuple[type, Any] | None:
    """A key as YAML reads it, with its type: ``yes`` is True, which ``str(True)`` does not find."""
    if not isinstance(key, yaml.ScalarNode):
        return None
    value = yaml.safe_load(yaml.serialize(key))
    return type(value), value


def _at(path: Path, line: int | None) -> str:
    """Where an error is: ``path:line``, or the path alone when the line is not known."""
    return f"{path}:{line}" if line else str(path)


def _fail(path: Path, node: yaml.Node | None, loc: tuple[Any, ...], message: str,
          line: int | None = None) -> ProjectError:
    """The error at ``loc``, on the line of its key unless ``line`` says another (an example's own)."""
    key = ".".join(str(p) for p in loc)
    return ProjectError(f"{_at(path, line or _line_of(node, loc))}: {key + ': ' if key else ''}{message}")


# --- the files ----------------------------------------------------------------------------------


def first_error(exc: ValidationError) -> Any:
    """The error to name: an unknown key before the others, since a misspelt key (``titel:``) also leaves
    the one it meant missing, and "title: Field required" sends the reader looking for what is there."""
    errors = exc.errors()
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def in_own_words(err: Any) -> str:
    """The message of pydantic's validation error ``err``, a check of deskbot's own (a ValueError) said in its words
    alone, without the "Value error, " pydantic puts before them: one rule for what `bot check` says of a file and what
    the API answers of a request, where the API's 400s said "reviewer: Value error, holds U+200B" and the command
    line "holds U+200B"."""
    return str(err["msg"]).removeprefix("Value error, ")


# The keys of the bot's files as a Chinese editor may write them, in either script
_KEYS_IN_CHINESE = {"意图": "intent", "意圖": "intent", "正则": "regex", "正則": "regex", "同义词": "synonym",
                    "同義詞": "synonym", "查找表": "lookup", "例句": "examples", "示例": "examples", "例子": "examples",
                    "文本": "text", "回复": "text", "回覆": "text", "按钮": "buttons", "按鈕": "buttons", "标题": "title",
                    "標題": "title", "语言": "language", "語言": "language", "渠道": "channel", "条件": "condition",
                    "條件": "condition", "图片": "image", "圖片": "image"}


def key_meant(key: str, keys: Iterable[str], file: str) -> str:
    """What to add to an error about ``key``, not one of ``keys`` (those of its place in ``file``): the one it means
    where it is written in Chinese (``文本:``), which a did-you-mean cannot match, else the closest of them."""
    keys = tuple(keys)
    if _KEYS_IN_CHINESE.get(key) in keys:
        return f"; write '{_KEYS_IN_CHINESE[key]}:' for '{key}:', as {file}'s keys are English, as Rasa's are"
    return did_you_mean(key, keys)


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """What to add to an error about ``name`` that is not one of ``names``: the closest of them, when one is
    close, so that a typo (``threshold:``, ``opening_hour``) is told with its fix rather than left to be found."""
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_intent(intent: str, intents: Iterable[str], renamed: str | None = None) -> str:
    """The error for an intent that nlu.yml does not have, with the one it likely meant: a name close to it, else
    ``renamed``, the one intent of nlu.yml that no response answers, as after an intent renamed in nlu.yml alone
    (``opening_hours`` to ``hours``), whose old name no "did you mean" finds."""
    meant = did_you_mean(intent, intents)
    if not meant and renamed is not None:
        meant = (f"; renamed {renamed!r} there? It is the one intent of nlu.yml no response answers: write "
                 f"{renamed!r} here too")
    return f"unknown intent {intent!r} (not in nlu.yml{meant})"


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc`` of ``model`` takes (``server.agents.Ana``: an agent's, ``buttons.0``: a
    button's), or none where ``loc`` leaves the models (a mapping of free keys, a text)."""
    kind: Any = model
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        elif typing.get_origin(kind) in (dict, list):  # a mapping's value, or a list's item
            kind = typing.get_args(kind)[-1]
        else:
            return []
        if typing.get_origin(kind) is Annotated:
            kind = typing.get_args(kind)[0]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # a section that may be null
            kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


# The keys of bot.yml whose value is a secret (the admin, metrics and agents' tokens, the channels' keys): a mistake in
# one is said without its value, which went into `bot serve`'s log, and into a refused reload's answer and log line,
# where an agent granted reload read a token written as a number (the admin token's too).
SECRET_KEYS = frozenset({"admin_token", "metrics_token", "token", "identity_secret", "signing_secret", "bot_token",
                         "aes_key", "secret"})


def _keyed_text(key: re.Match[str]) -> str:
    """The text YAML read where a key and its value were meant (``key``: the key matched at its start), as an error
    quotes it: its first 40 characters, or the key alone where its value is a secret (:data:`SECRET_KEYS`)."""
    return f"{key[0]}…" if key[1] in SECRET_KEYS else key.string[:40]


def error_message(err: Any, model: type[BaseModel]) -> str:
    """A validation error in words, with what YAML made of a text it read as something else: an empty value, or a
    number, a yes or a date where a text goes (WeCom's Token 12345678, which the admin console may give, or a title
    "No"), which is then put in quotes. "Input should be a valid string" alone did not say that it was one once
    quoted, and a Token 0123 quoted stays 0123 where YAML reads 83. A section that YAML read as the text of a key
    typed with a full-width colon ("server:" over "port：9000") says so: "Input should be a valid dictionary" did not.
    A secret's value is never said (:data:`SECRET_KEYS`)."""
    err = {**err, "msg": in_own_words(err)}
    if err["type"] == "extra_forbidden":  # a misspelt key: the section's keys tell which it meant
        key = str(err["loc"][-1])
        if model is BotConfig and len(err["loc"]) == 1 and key in RASA_CONFIG_KEYS:  # not a typo: no "did you mean"
            return f"unknown key{RASA_CONFIG_KEYS[key]}"
        if model is BotConfig and err["loc"][0] == "channels" and (rasa := _rasa_channel_key(tuple(err["loc"][1:]))):
            return f"unknown key{rasa}"
        file = "responses.yml" if model is ResponseVariant else "bot.yml"
        return f"unknown key{key_meant(key, _keys_at(model, tuple(err['loc'][:-1])), file)}"
    if err["type"] == "string_type" and err["input"] is None:
        return f"{err['msg']}: it is empty"
    if model is ResponseVariant and err["type"] == "missing" and err["loc"][:1] == ("buttons",) \
            and err["loc"][-1] in _BUTTON_NEEDS:  # "Field required" alone, of a button with one of its two
        return f"{err['msg']}: {_BUTTON_NEEDS[err['loc'][-1]]}"
    if (model is ResponseVariant and err["type"] == "string_type" and err["loc"] == ("text",)
            and isinstance(err["input"], list) and err["input"]):  # a response's other wordings, listed under its text
        variants = ", then ".join(f"'- text: {text}'" for text in err["input"][:2])
        return (f"{err['msg']}: a variant has one text, not a list: write each as a variant of its own ({variants}), "
                "which take turns at random")
    if err["type"] == "string_type" and isinstance(err["input"], (bool, int, float, date)):
        read = "" if err["loc"][-1:] and err["loc"][-1] in SECRET_KEYS else f" {err['input']!r}"
        return f"{err['msg']}: YAML reads it as {type(err['input']).__name__}{read}; put it in quotes"
    if isinstance(err["input"], str) and (key := _FULL_WIDTH_KEY.match(err["input"])):  # "port：9000" under server:
        return (f"{err['msg']}: YAML reads {_keyed_text(key)!r} as a text, its key written with a full-width colon, as "
                f"a Chinese input method types it: write '{key[1]}: ', a half-width colon and a space")
    if (err["type"] in ("model_type", "dict_type") and isinstance(err["input"], str)
            and (key := _KEY_NO_SPACE.match(err["input"]))):
        return (f"{err['msg']}: YAML reads {_keyed_text(key)!r} as a text, its key written with no space after the "
                f"colon: write '{key[1]}: ', a space after the colon")  # "retrieval:0.6" under thresholds:
    if (meant := _number_meant(err)) is not None:  # "0,6", as a decimal comma is written in much of the world
        return f"{err['msg']}: write {meant}; YAML reads {err['input']!r} as a text"
    if err["type"] == "literal_error" and err["loc"][-1:] == ("language",) and (meant := language_meant(err["input"])):
        return f"{err['msg']}: write {meant!r}" + (", which answers customers of either script in theirs, Traditional or "
                                                    "Simplified" if meant == "zh" else "")
    return str(err["msg"])


# What a button lacks where its title or its payload is left out, and what to write
_BUTTON_NEEDS = {"payload": "a button needs its payload, what a click sends: write 'payload: /INTENT' (the intent it "
                            "selects) beside its title",
                 "title": "a button needs its title, the words on it: write 'title: ...' beside its payload"}


def _number_meant(err: Any) -> str | None:
    """The number a setting refused as text meant, written with a comma: a decimal comma (``0,6``) where a number with
    a fraction is wanted, digits grouped by commas (``4,000``) where a whole number is; else None."""
    value = err["input"].strip() if isinstance(err["input"], str) else ""
    if err["type"] == "int_parsing" and re.fullmatch(r"\d{1,3}(,\d{3})+", value):
        return value.replace(",", "")
    if err["type"] in ("float_parsing", "value_error") and re.fullmatch(r"\d+,\d+", value):
        return value.replace(",", ".")
    return None


def load_config(path: Path) -> BotConfig:
    """bot.yml, or a :class:`ProjectError` naming each of its mistakes."""
    mistakes = Mistakes()
    config, _ = read_config(path, mistakes)
    mistakes.raise_any()
    assert config is not None  # a bot.yml that did not load has a mistake
    return config


# The keys of a Rasa project's config.yml, endpoints.yml and credentials.yml that a shop may paste into bot.yml, each
# with where deskbot has what it said: "unknown key" alone left it to search docs/configuration.md.
_CLASSIFIER = ": Rasa's {}, which deskbot does not read: its classifier is set by model and thresholds (the " \
              "FallbackClassifier's threshold is thresholds.intent; docs/configuration.md)"
_WEB_CHAT = ": Rasa's {} channel, which is deskbot's web chat here: channels.web (docs/channels.md)"
RASA_CONFIG_KEYS = {
    "recipe": _CLASSIFIER.format("recipe"), "pipeline": _CLASSIFIER.format("NLU pipeline"),
    "policies": _CLASSIFIER.format("dialogue policies") + "; deskbot has no rules or stories",
    "assistant_id": ": Rasa's assistant id, which deskbot does not read: name: names the bot",
    "action_endpoint": ": Rasa's endpoints.yml's action server: write its url as actions.endpoint",
    "tracker_store": ": Rasa's endpoints.yml's tracker store: deskbot keeps conversations in its own SQLite store "
                     "(store_dir)",
    "rest": _WEB_CHAT.format("rest"), "socketio": _WEB_CHAT.format("socketio"),
    "slack": ": Rasa's credentials.yml's Slack channel: deskbot's is channels.slack (docs/channels.md)",
}


# The keys of a Rasa credentials.yml's channels that a shop may paste under bot.yml's channels:, each with deskbot's
_WEBHOOK = (": Rasa's address the platform posts messages to, which deskbot does not read: enter deskbot's own in the "
            "platform's console (https://HOST/slack/events for Slack, https://HOST/wecom/callback for WeCom; "
            "docs/channels.md)")
RASA_CHANNEL_KEYS = {
    ("slack", "slack_token"): ": Rasa's Slack bot token: write it as bot_token (or DESKBOT_SLACK_BOT_TOKEN)",
    ("slack", "slack_signing_secret"): ": Rasa's Slack signing secret: write it as signing_secret (or "
                                       "DESKBOT_SLACK_SIGNING_SECRET)",
    ("slack", "slack_channel"): ": Rasa's Slack channel to post in, which deskbot does not read: it answers in each "
                                "channel its app is invited to (/invite @yourbot), and in direct messages",
    ("rest",): _WEB_CHAT.format("rest"),
    ("socketio",): _WEB_CHAT.format("socketio") + ", whose widget speaks its own events: Rasa's user_message_evt, "
                                                  "bot_message_evt and session_persistence have no counterpart",
}


def _rasa_channel_key(loc: tuple[Any, ...]) -> str | None:
    """What to write for a Rasa credentials.yml key at ``loc`` under bot.yml's ``channels:`` (:data:`RASA_CHANNEL_KEYS`,
    a ``webhook_url`` under any channel), or None where it is none of them."""
    return _WEBHOOK if loc[-1:] == ("webhook_url",) else RASA_CHANNEL_KEYS.get(loc)


def written_forms(path: Path) -> set[str]:
    """The forms bot.yml at ``path`` names under ``actions.forms`` as written, one refused for a mistake of its own (a
    Rasa 2 ``required_slots``) too, which ``actions.map`` may name without being told it names no action as well."""
    with contextlib.suppress(ProjectError):
        data, _ = _load_yaml(path, Mistakes())
        forms = ((data or {}).get("actions") or {}).get("forms") if isinstance(data, dict) else None
        if isinstance(forms, dict) and isinstance(data["actions"], dict):
            return {str(name) for name in forms}
    return set()


def written_responses(path: Path) -> set[str] | None:
    """The names responses.yml at ``path`` gives its responses as written (those refused for a mistake of their own
    too), or None where it does not parse: what asks for a form's slots (``utter_ask_<slot>``) is checked against them
    while another file of the bot is at fault, not once all of them load."""
    with contextlib.suppress(ProjectError):
        data, _ = _load_yaml(path, Mistakes())
        responses = data.get("responses") if isinstance(data, dict) else None
        if isinstance(responses, dict):
            return {name for name in responses if isinstance(name, str)}
    return None


def read_config(path: Path, mistakes: Mistakes) -> tuple[BotConfig | None, bool]:
    """bot.yml with each of its mistakes noted in ``mistakes``, a line each, and as read without the keys at fault
    (their defaults in their place), for the other files to be checked against it all the same; and whether its
    ``language`` is as written, which responses.yml is checked against. None where it does not parse."""
    with mistakes.noted():
        data, node = _load_yaml(path, mistakes)
        try:
            return BotConfig.model_validate(data or {}), True
        except ValidationError as exc:
            errors = exc.errors()
        mistakes.extend(said for _, said in _validation_mistakes(path, node, (), errors, BotConfig))
        return _without_mistakes(BotConfig, data or {}), all(err["loc"][:1] != ("language",) for err in errors)
    return None, False


def _validation_mistakes(path: Path, node: yaml.Node | None, loc: tuple[Any, ...], errors: list[Any],
                         model: type[BaseModel], hint: Callable[[Any], str] = lambda err: "") -> list[tuple[int, str]]:
    """The validation ``errors`` of ``model``'s section at ``loc`` in words (:func:`error_message`, and what ``hint``
    adds), each with its line, in their order, one a line: a union's members each say why a value is none of them. A
    misspelt key (``titel:``) is told without the key it was meant for, which it leaves missing."""
    misspelt = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    said: dict[int | None, str] = {}
    for err in sorted(errors, key=lambda e: e["type"] != "extra_forbidden"):
        if err["type"] == "missing" and tuple(err["loc"][:-1]) in misspelt:
            continue
        where = (*loc, *err["loc"], *_key_at_fault(err))
        said.setdefault(_line_of(node, where), str(_fail(path, node, where, error_message(err, model) + hint(err))))
    return sorted((line or 0, text) for line, text in said.items())


def _key_at_fault(err: Any) -> tuple[Any, ...]:
    """The key of the mapping at ``err``'s place whose value is at fault (a text's ``fr:``, :class:`KeyMistake`), which
    its place does not name: pydantic names the mapping."""
    error = err.get("ctx", {}).get("error")
    return (error.key,) if isinstance(error, KeyMistake) else ()


def _without_mistakes(model: type[_Section], data: Any) -> _Section | None:
    """``data`` read as ``model`` (bot.yml, a variant of responses.yml) without the values its mistakes are in (a
    misspelt key read as the one it likely meant, :func:`_rename`), for the checks that read it to be made all the
    same: one taken out at a time, as taking one out of a list moves the others; None where a mistake is in no value
    (``data`` is no mapping)."""
    data = copy.deepcopy(data)
    validate: Callable[[Any], Any] = model.model_validate
    for _ in range(_MOST_MISTAKES):
        try:
            return validate(data)
        except ValidationError as exc:
            err = first_error(exc)
            if not err["loc"] and isinstance(data, dict) and validate == model.model_validate:
                validate = _fields_only(model).validate_python  # a check of the whole section, told: its values read
            elif not (err["type"] == "extra_forbidden" and _rename(data, model, tuple(err["loc"]))
                      or _drop(data, tuple(err["loc"]))):
                return None
    return None


@functools.cache
def _fields_only(model: type[BaseModel]) -> SchemaValidator:
    """``model``'s validator without its checks of the whole (a ``model_validator``, such as a variant's "needs its
    text"), whose mistake pydantic ties to no key, so none can be taken out: the section's values are then read as
    written, for the checks of them and of the other files (its buttons' intents, bot.yml's intents) to be made in
    the same run, not once that mistake is mended."""
    schema: Any = model.__pydantic_core_schema__
    definitions = schema["definitions"] if schema["type"] == "definitions" else None
    schema = schema["schema"] if definitions is not None else schema
    while schema["type"] in ("function-after", "function-before", "function-wrap"):
        schema = schema["schema"]
    return SchemaValidator(schema if definitions is None else core_schema.definitions_schema(schema, definitions))


def _rename(data: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Give the misspelt key at ``loc`` of ``data`` (``titel:``) the name it likely meant (``title:``), where that
    one is not set: its value is then checked as meant. Whether it was renamed."""
    *above, key = loc
    section = functools.reduce(lambda value, part: value[part], above, data)
    meant = difflib.get_close_matches(str(key), _keys_at(model, tuple(above)), n=1)
    if not meant or meant[0] in section:
        return False
    section[meant[0]] = section.pop(key)
    return True


_MOST_MISTAKES = 500  # a section with more is read no further
_Section = typing.TypeVar("_Section", bound=BaseModel)


def _drop(data: Any, loc: tuple[Any, ...]) -> bool:
    """Take the value at ``loc`` out of ``data``, or the one at the longest start of it that ``data`` has (a missing
    key's section; pydantic names a union's member after its key): a mapping of a list (a button) alone, a name of a
    list with the list, whole (a slot taken out of ``actions.slots`` would make its templates refused in
    responses.yml, where the list left unread is any slot). Whether there was one."""
    parent: Any = None
    for part in loc:
        if not (isinstance(data, dict) and part in data
                or isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)):
            break
        if not isinstance(data, list) or isinstance(data[part], dict):
            parent, key = data, part
        data = data[part]
    if parent is None:
        return False
    del parent[key]
    return True


# [text](entity), [text](entity:value), [text]{"entity": …} and Rasa 3's list of those, [text][{…}, {…}]: the
# text, then what a label starts as (a JSON one ends where its JSON does, which may hold "]" or "}" in a value)
_ANNOTATED_TEXT = re.compile(r"\[([^\]]+)\]")
_LABEL = re.compile(r"\([^)]*\)|\{[^}]*\}|\[\s*\{[^\]]*\]")
_JSON = json.JSONDecoder()


def _annotated(line: str) -> Iterator[tuple[int, int, str, str]]:
    """Each Rasa annotation of ``line`` as (start, end, text, label). A JSON label is read as JSON, so that a
    value holding a bracket or a brace (``[x]{"entity": "a", "value": "b}c"}``) is its own and not the label's
    end; one that is not JSON ends at its first closing bracket, as before."""
    at = 0
    while match := _ANNOTATED_TEXT.search(line, at):
        label = _LABEL.match(line, match.end())
        if label is None:
            at = match.start() + 1
            continue
        end = label.end()
        if label[0].startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                end = _JSON.raw_decode(line, match.end())[1]
        yield match.start(), end, match[1], line[match.end():end]
        at = end


def example_text(line: str) -> str:
    """An example as the classifier sees it: Rasa's entity annotations ``[text](entity)`` reduced to the text."""
    parts, at = [], 0
    for start, end, text, _ in _annotated(line):
        parts += [line[at:start], text]
        at = end
    return "".join(parts) + line[at:]


def annotations(line: str) -> list[tuple[str, str, str, bool]]:
    """An example's Rasa annotations, each as (entity, text, value, roled): ``[123](order_id)``, ``[NYC](city:New York
    City)`` or ``[NYC]{"entity": "city", "value": "New York City"}`` (whose value is a synonym of the text, as
    Rasa's EntitySynonymMapper learns it), the value being the text where the annotation gives none; Rasa 3's
    ``[NYC][{"entity": "city"}, {"entity": "place"}]`` gives one for each entity it names. ``roled``: the annotation
    gives the entity a ``role`` or a ``group`` (``{"entity": "city", "role": "departure"}``)."""
    found = []
    for _, _, text, label in _annotated(line):
        if label.startswith(("{", "[")):
            try:
                fields = json.loads(label)
            except ValueError:  # not JSON: no entity named
                fields = None
            # Rasa 3's list form names several entities of one text: [NYC][{"entity": "city"}, {"entity": "place"}]
            named = [(f.get("entity"), f.get("value", text), "role" in f or "group" in f)
                     for f in (fields if isinstance(fields, list) else [fields]) if isinstance(f, dict)]
        else:
            name, colon, value = label[1:-1].partition(":")
            named = [(name, value if colon else text, False)]
        for name, value, roled in named:
            if isinstance(name, str) and name.strip():
                found.append((name.strip(), text, value if isinstance(value, str) and value.strip() else text, roled))
    return found


_AS_A_BLOCK = "write 'examples: |', then each example on a line of its own after '- '"  # what YAML cannot misread


class ExampleError(ValueError):
    """What is wrong with one of an entry's examples, and where it is (as :func:`_example_lines` gives it)."""

    def __init__(self, where: int, message: str) -> None:
        super().__init__(message)
        self.where = where


def _example_lines(block: Any, faults: list[ExampleError], messages: bool = False) -> list[tuple[int, str]]:
    """Rasa writes examples as a ``- text`` block string; a plain YAML list is accepted too, of texts or of
    Rasa's ``{text, metadata}`` mappings. Each example comes with where it is: its line in the block, or
    its item in the list. ValueError for anything else instead of it; what is wrong with each example is added to
    ``faults`` (:class:`ExampleError`), and that example left out. ``messages``: the examples are an intent's, a
    customer's words, in which a helpdesk's HTML is pasted, not typed (a regex's "(?P<b>…)" is no tag)."""
    lines = []
    if block is not None and not isinstance(block, (str, list)):  # it became the example "{'hi': 'there'}" or "True"
        seen = f"a mapping ({block!r})" if isinstance(block, dict) else repr(block)
        raise ValueError(f"YAML reads these examples as {seen}, not text: {_AS_A_BLOCK}")
    if isinstance(block, list):
        for where, x in enumerate(block):
            if isinstance(x, dict) and isinstance(x.get("text"), str) and x.keys() <= {"text", "metadata"}:
                x = x["text"]
            if isinstance(x, (list, dict)):
                faults.append(ExampleError(where, f"an example must be a text (or 'text:' with 'metadata:'), not {x!r}"))
            elif not isinstance(x, str):  # "- 12:30" is the number 750, "- 0123" 83, "- no" False, "- 2024-05-01" a date
                seen = f"the number {x!r}" if isinstance(x, (int, float)) and not isinstance(x, bool) else repr(x)
                faults.append(ExampleError(where, f"YAML reads an example as {seen}, not as written: quote it, "
                                                  f"or {_AS_A_BLOCK}"))
            else:
                lines.append((where, x))
    else:
        raws = [raw.strip() for raw in str(block or "").splitlines()]
        bulleted = any(raw.startswith("-") for raw in raws)
        for where, raw in enumerate(raws):
            if raw.startswith("-"):  # a bullet, as Rasa reads one: "-text" too, which lacks its space
                raw = raw[1:].strip()
                if not raw:  # a bullet left empty would be the example "-"
                    faults.append(ExampleError(where, "an example is empty: a '- ' with nothing after it"))
            elif raw and bulleted:  # Rasa skips it; it was learnt as an example of its own
                faults.append(ExampleError(where, _unbulleted(raw)))
                continue
            if raw:
                lines.append((where, raw))
    faults.extend(ExampleError(where, f"{line!r} is not valid Unicode (half of a surrogate pair)")
                  for where, line in lines if not valid_unicode(line))
    # in a block, straight quotes are text too: YAML reads its lines as they are ("- 'hi'" is the example 'hi')
    quoted = {where: quote for where, line in lines
              if (quote := in_curly_quotes(line) or isinstance(block, str) and _in_straight_quotes(line))}
    faults.extend(ExampleError(where, f"{line!r} is written in {quoted[where]} quotes, which are kept as part of the "
                                      f"example: write '- {unquoted_example(line)}'")
                  for where, line in lines if where in quoted)
    # in a block, a note after " # " is text too (YAML reads a comment only outside it)
    noted = {where: note for where, line in lines if isinstance(block, str) and (note := _NOTE.search(line))}
    faults.extend(ExampleError(where, f"{line!r} ends in {line[noted[where].start():]!r}, which an 'examples: |' block "
                                      "keeps as part of the example, not as a comment: write "
                                      f"'- {line[:noted[where].start()].rstrip()}', with the note as a comment above "
                                      "'examples: |'; or, where the customer typed the '#', write it without the space "
                                      f"after it ('- {unquoted_example(line)}')")
                  for where, line in lines if where in noted and where not in quoted)
    # a helpdesk's HTML pasted in ("<p>refund</p>", "AT&amp;T"): learnt as written, as no customer types it
    told = quoted | noted.keys()
    pasted = {where: read for where, line in lines
              if messages and where not in told and (read := html_read(line)) != line}
    faults.extend(ExampleError(where, f"{line!r} holds HTML, which is learnt as written, not as a customer types it: "
                                      + (f"write '- {pasted[where]}'" if pasted[where].strip() else "remove the line"))
                  for where, line in lines if where in pasted)
    return [(where, line) for where, line in lines if valid_unicode(line) and where not in told | pasted.keys()]


# A note after an example in a block, as YAML writes a comment elsewhere: a "#" (or the "＃" a Chinese input method
# types) after white space and before white space and a word ("hiya  # from the chat logs", "你好 ＃ 常见问候"), not a
# number ("order # 123") nor a "#" joined to its word ("order #123", "#退款"), which are a customer's own.
_NOTE = re.compile(r"(?<=\s)[#＃]\s+(?=[^\s\d])")


def unquoted_example(text: str) -> str:
    """An example ``text`` as a block of examples takes it: without a pair of quotes around it whole, curly, corner or
    straight, which the block would keep (:func:`_example_lines` refuses them), and which say nothing of what was
    asked; a "#" that would read as a note's (:data:`_NOTE`) joined to the word after it; and read as HTML until it
    reads as itself (an export's escaped "&lt;b&gt; tag?" is "<b> tag?" once read, which the block would refuse as
    HTML), unless nothing would be left."""
    inner = text.strip()[1:-1].strip() if in_curly_quotes(text) or _in_straight_quotes(text.strip()) else ""
    example = _NOTE.sub(lambda note: note.group().rstrip(), inner or text)
    for _ in range(3):  # an export escapes its HTML once, a careless one twice
        if (read := html_read(example)) == example or not read.strip():
            break
        example = read
    return example


def _in_straight_quotes(line: str) -> str | None:
    """The straight quote that opens and closes ``line``, an example of an ``examples: |`` block, else None: not one
    that holds the quote too (``'ok' she said 'bye'``), which may be the customer's own."""
    return line[0] if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'" and line[0] not in line[1:-1] \
        else None


def _unbulleted(line: str) -> str:
    """What is wrong with a line of a block of ``- example`` lines that has no bullet: a comment, which a ``|``
    block keeps as text, or an example wrapped onto a second line, whose end became an example of its own; or a
    bullet typed with a Chinese input method's full-width "－" or "・" (or "—"), or a word processor's "–" or "•",
    which is no YAML bullet."""
    if line.startswith("#"):
        return f"{line!r} is text inside the block, not a comment: move it above 'examples: |'"
    if line[:1] in "－・—–•":
        return (f"{line!r} starts with {line[0]!r}, not the half-width '-' an example's bullet is: "
                f"write '- {line[1:].strip()}'")
    return f"{line!r} has no '- ' before it, as the other examples have: an example is one line (join a wrapped " \
           "one to the line above it), or starts with '- '"


def valid_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: JSON and YAML escapes can hold half of a surrogate pair,
    which no tokenizer, file or SQLite takes (``bot train`` failed on one after its minutes of training)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _entry_lines(path: Path, node: yaml.Node | None, i: int, item: dict[str, Any], source: Callable[[], list[str]],
                 messages: bool = False) -> tuple[list[tuple[int, str]], list[str]]:
    """The examples of nlu.yml's entry ``i`` (an intent's or a regex's), each with where it is in the entry
    (:func:`_example_line`), and the error of each example at fault, on its line, which is left out: the others are
    read, for an example under two intents to be told with them. ``source``: the file's lines; ``messages``: the
    entry is an intent's (:func:`_example_lines`)."""
    examples = _examples_node(node, i)
    listed = examples.value if isinstance(examples, yaml.SequenceNode) else []
    faults = [ExampleError(where, f"YAML reads these lines as one example ({text.value!r}): write each '- example' "
                                  "at the same indent")
              for where, text in enumerate(listed)
              if isinstance(text, yaml.ScalarNode) and _bullet_within(text, source)]  # a bullet one indent too far in
    faults += [ExampleError(where, lost) for where, text in enumerate(listed)  # "- order #123": "order"
               if (lost := _lost_to_comment(text, source))]
    try:
        if _joined(examples, source):
            raise ValueError("the examples read as one line: write 'examples: |', which keeps one example a line")
        lines = _example_lines(item.get("examples"), faults, messages)
    except ValueError as exc:
        raise _fail(path, node, ("nlu", i, "examples"), str(exc)) from None
    return lines, [str(_fail(path, node, ("nlu", i, "examples"), str(fault), _example_line(node, i, fault.where)))
                   for fault in sorted(faults, key=lambda fault: fault.where)]  # each on the example's own line


# What YAML reads as a comment after a plain text: a "#" after white space, to the end of the line
_COMMENT = re.compile(r"\s+(#.*)")


def _lost_to_comment(item: yaml.Node, source: Callable[[], list[str]]) -> str | None:
    """What is wrong with an example of a YAML list (``- text`` or ``- text: text``) whose line goes on in " #"
    and a customer's text, which YAML read as a comment and dropped unsaid ("- order #123" was the example "order"),
    or None: a note after it (:data:`_NOTE`, "- hiya  # from the chat logs") is the comment it reads as, as an
    ``examples: |`` block's is the text it keeps."""
    text = next((value for key, value in item.value if key.value == "text"), None) \
        if isinstance(item, yaml.MappingNode) else item
    if not isinstance(text, yaml.ScalarNode) or text.style:  # a quoted text ends at its quote
        return None
    line = source()[text.end_mark.line]
    comment = _COMMENT.match(line, text.end_mark.column)
    if comment is None or not comment.group(1)[1:].strip() or _NOTE.match(line, comment.start(1)):
        return None
    lost, bullet = comment.group(1).rstrip(), "- " if text is item else "- text: "
    quoted = json.dumps(text.value + line[text.end_mark.column:comment.start(1)] + lost, ensure_ascii=False)
    return (f"{text.value!r} lost {lost!r}, which YAML reads as a comment after a space, not as part of the example: "
            f"where the customer typed the '#', quote the example ('{bullet}{quoted}'), or write it without the space "
            f"before it ('{bullet}{text.value}{lost}')")


def _examples_node(node: yaml.Node | None, i: int, key: str = "examples") -> yaml.Node | None:
    """The YAML node of nlu.yml's entry ``i``'s examples (or of its ``key``)."""
    entries = next((value for k, value in getattr(node, "value", []) if getattr(k, "value", None) == "nlu"), None)
    if not isinstance(entries, yaml.SequenceNode) or not isinstance(entry := entries.value[i], yaml.MappingNode):
        return None
    return next((value for k, value in entry.value if k.value == key), None)


def _name_over_lines(node: yaml.Node | None, i: int) -> int:
    """How many lines the name of nlu.yml's intent ``i`` runs over: more than one when ``examples: |`` was left
    out and YAML read the examples below ``intent:`` as the rest of the name."""
    name = _examples_node(node, i, "intent")
    return name.end_mark.line - name.start_mark.line + 1 if isinstance(name, yaml.ScalarNode) else 1


_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts lines by


def _joined(examples: yaml.Node | None, source: Callable[[], list[str]]) -> bool:
    """Whether YAML joins lines of these examples that were written one a line, reading each line break as a
    space: a folded block (``examples: >``), a plain text over several lines, or a quoted one with a line
    that starts with a bullet ("- hi - hello there - good morning" was one example). The line breaks of a
    quoted text that YAML keeps (a blank line, an escaped one), as YAML writers write them, join nothing.
    ``source``: the file's lines, read only for a quoted text over several lines."""
    if not isinstance(examples, yaml.ScalarNode) or examples.style == "|":
        return False
    first, last = examples.start_mark.line, examples.end_mark.line
    if examples.style == ">":
        return True
    if first == last:
        return False
    if not examples.style:  # plain ('' from libyaml, None from PyYAML)
        return True
    return _bullet_within(examples, source)


def _bullet_within(text: yaml.ScalarNode, source: Callable[[], list[str]]) -> bool:
    """Whether a text YAML reads over several lines has one that starts with a bullet, which YAML joins to the
    line before it: "hi - hello there". A line break a double-quoted text escapes keeps it apart."""
    lines = source()[text.start_mark.line:text.end_mark.line + 1]
    for before, line in zip(lines, lines[1:]):
        escaped = text.style == '"' and (len(before) - len(before.rstrip("\\"))) % 2 == 1
        if before.strip() and line.lstrip().startswith("-") and not escaped:
            return True
    return False


def _example_line(node: yaml.Node | None, i: int, where: int) -> int | None:
    """The 1-based line of entry ``i``'s example at ``where`` (:func:`_example_lines`): an item of a list, or
    a line of an ``examples: |`` block, whose text starts on the line after its key; the key's line for a
    quoted string's."""
    examples = _examples_node(node, i)
    if isinstance(examples, yaml.SequenceNode) and where < len(examples.value):
        return examples.value[where].start_mark.line + 1
    if isinstance(examples, yaml.ScalarNode) and examples.style == "|":
        return examples.start_mark.line + 2 + where
    return _line_of(node, ("nlu", i, "examples"))


class NluFile(NamedTuple):
    """What :func:`read_nlu` reads of nlu.yml."""

    examples: list[Example]
    # Each entity's patterns: its regexes, and its lookup tables as :func:`lookup_pattern` reads them.
    patterns: dict[str, list[re.Pattern[str]]]
    # The entities the examples annotate (``[123](order_id)``) that no pattern reads, each with the line of its first
    # annotation: Rasa learns to find those, deskbot never sets them.
    unread: dict[str, int | None]
    # A ``synonym:``'s examples, and an annotated text the annotation gives another value (``[NYC](city:New York
    # City)``), each in lower case and Simplified characters with the value it stands for (and each Chinese lookup
    # element, for itself as written).
    synonyms: dict[str, str]
    # The examples under two intents that differ only in punctuation or numbers: they load, as their labels may mean
    # them apart, but are told of.
    twins: list[Twins]
    # The entities an annotation gives a role or a group, with the line of the first, which deskbot reads without them.
    roled: dict[str, int | None]
    # The intents listed in more than one entry, each with its entries' lines: their examples are one intent's, as
    # Rasa reads them, but a second entry may be a pasted block, or a name meant to be another's.
    repeated: dict[str, list[int | None]]
    # The examples longer than a customer's message may be (a ticket's whole thread pasted as one), with their lines:
    # no customer sends one, and the classifier reads its start alone, but lowering the limit leaves the bot loading.
    long: list[tuple[int | None, Example]]


# Rasa's training data may hold responses (its retrieval intents' answers, utter_faq/returns), which deskbot reads
# from responses.yml alone: "deskbot has no stories or rules" said nothing of where they go.
NLU_RESPONSES = ("deskbot reads responses from responses.yml: move them there, each under its intent's name "
                 "(`faq/returns:` for a retrieval intent's `utter_faq/returns:`)")


def read_nlu(path: Path, slots: tuple[str, ...], mistakes: Mistakes,
             max_chars: int) -> tuple[NluFile | None, set[str]]:
    """Read intents and examples in Rasa's ``nlu.yml`` format, and its entities (:class:`NluFile`; None where it does
    not parse), with each of its mistakes noted in ``mistakes`` (an entry or an example at fault left
    out), and the names of its intents, those of the entries left out among them, which bot.yml and
    responses.yml are checked against all the same. ``slots`` are the bot's own, which no regex or lookup may name;
    ``max_chars`` is the longest message a customer may send (server.max_message_chars)."""
    with mistakes.noted():
        data, node = _load_yaml(path, mistakes)
        if not isinstance(data, dict) or not isinstance(data.get("nlu"), list):
            raise _not_top_level(path, node, data, "nlu", "list", "nlu.yml holds 'nlu:' and, under it, each intent as "
                                 "'- intent: greet', then 'examples: |' and each example on a line of its own after '- '")
        for extra in sorted(str(key) for key in set(data) - {"version", "nlu"}):  # a typo, or Rasa's stories and rules
            mistakes.append(str(_fail(path, node, (extra,), "unknown key: nlu.yml holds 'version' and 'nlu' "
                                                             "(intents, examples and regexes); " + (
                                                                 NLU_RESPONSES if extra == "responses" else
                                                                 "deskbot has no stories or rules"))))
        return _nlu_entries(path, node, data["nlu"], slots, mistakes, max_chars)
    return None, set()


def _not_top_level(path: Path, node: yaml.Node | None, data: Any, key: str, expected: str, holds: str) -> ProjectError:
    """The error of file ``path``, read as ``data``, that lacks the ``key:`` it holds everything under (a
    ``expected``), with what it ``holds`` where it is empty or that key has nothing under it (told at its line):
    "expected a top-level 'responses:' mapping" said nothing of a file saved empty, or cleared to be written again."""
    if data is None:
        return _fail(path, node, (), f"the file is empty (or holds comments alone): {holds}")
    if isinstance(data, dict) and key in data and data[key] is None:
        return _fail(path, node, (), f"'{key}:' has nothing under it: {holds}", _line_of(node, (key,)))
    if isinstance(data, dict) and key not in data:  # `Responses:`, `NLU:` or `respones:`: told at that key, with its fix
        for written in data:
            if did_you_mean(str(written).strip().lower(), (key,)):
                return _fail(path, node, (), f"write '{key}:' for '{written}:': {holds}",
                             _line_of(node, (written,)))
    return _fail(path, node, (), f"expected a top-level '{key}:' {expected}")


_ENTRY_KINDS = ("intent", "regex", "synonym", "lookup")  # the key that names what an entry of nlu.yml is
# Those keys as a Chinese editor may write them, in either script


def _nlu_entries(path: Path, node: yaml.Node | None, items: list[Any], slots: tuple[str, ...],
                 mistakes: Mistakes, max_chars: int) -> tuple[NluFile, set[str]]:
    """nlu.yml's entries (``items``), as :func:`read_nlu` reads them: each entry's mistakes noted, and the entry left
    out."""
    source = functools.cache(lambda: _YAML_BREAK.split(_read_text(path)))  # the lines, for :func:`_joined`
    examples: list[Example] = []
    patterns: dict[str, list[re.Pattern[str]]] = {}
    labelled: dict[str, tuple[str, int | None]] = {}  # same_example(text) -> its intent and line
    alike: dict[str, tuple[Example, int | None]] = {}  # same_text(text) -> its first example and line
    twins: list[Twins] = []
    long: list[tuple[int | None, Example]] = []
    annotated: dict[str, int | None] = {}  # entity -> the line of its first annotation
    roled: dict[str, int | None] = {}  # entity -> the line of its first annotation giving it a role or a group
    synonyms: dict[str, str] = {}
    entries: dict[str, list[int | None]] = {}  # intent -> the lines of its entries
    named: set[str] = set()  # every entry's intent name, those refused too
    blocks: dict[int, tuple[str, int | None]] = {}  # id() of an entry's examples node -> its intent and line
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("intent"), str):
            named.add(_meant_name(item["intent"].strip()))
        with mistakes.noted():
            if isinstance(item, str) and i and isinstance(items[i - 1], dict):  # "- hello" out at the entries' indent
                raise _fail(path, node, ("nlu", i), f"{item[:30] + '…' * (len(item) > 30)!r} is read as an entry of its "
                                                   "own, its '- ' as far out as '- intent:': if it is an example, "
                                                   "indent it as far in as the examples above it")
            if not isinstance(item, dict):
                raise _fail(path, node, ("nlu", i), "each entry must be a mapping such as 'intent: NAME'")
            if "intent" in item:
                name, texts = _intent_entry(path, node, i, item, source, mistakes)
                entries.setdefault(name, []).append(_line_of(node, ("nlu", i)))
                if (aliased := _aliased_examples(path, node, i, name, blocks)) is not None:
                    mistakes.append(aliased)
                    continue
                for where, text in texts:
                    line = _example_line(node, i, where)
                    for entity, said, value, has_role in annotations(text):
                        annotated.setdefault(entity, line)
                        if has_role:
                            roled.setdefault(entity, line)
                        if value != said:  # a synonym, as Rasa learns one from the annotation
                            synonyms[model_text(said.lower())] = value
                    text = example_text(text)
                    other, first = labelled.setdefault(same_example(text), (name, line))
                    if other != name:  # the classifier would be taught both answers for one message
                        mistakes.append(f"{_at(path, line)}: {text!r}, an example of {name!r}, is one of {other!r} "
                                        f"too (line {first}); keep it in one")
                        continue
                    examples.append(Example(text, name))
                    if len(text) > max_chars:
                        long.append((line, examples[-1]))
                    first_example, first_line = alike.setdefault(same_text(text), (examples[-1], line))
                    if first_example.intent != name:
                        twins.append(Twins(first_example, first_line, examples[-1], line))
            elif kind := next((k for k in _ENTRY_KINDS[1:] if k in item), None):
                _entity_entry(path, node, i, item, kind, source, slots, patterns, synonyms, mistakes)
            else:
                raise _fail(path, node, ("nlu", i), f"unknown entry {sorted(item)}{_kind_meant(item)}")
    if len(named) < 2:
        mistakes.append(str(_fail(path, node, ("nlu",), "at least two intents are needed")))
    unread = {entity: line for entity, line in annotated.items() if entity not in patterns}
    repeated = {name: lines for name, lines in entries.items() if len(lines) > 1}
    return NluFile(examples, patterns, unread, synonyms, twins, roled, repeated, long), named


def _aliased_examples(path: Path, node: yaml.Node | None, i: int, name: str,
                      blocks: dict[int, tuple[str, int | None]]) -> str | None:
    """What is wrong with entry ``i``'s examples (of intent ``name``) where they are a YAML alias (``examples:
    *greetings``) of another intent's, or None, noting them in ``blocks`` (the examples nodes read so far): each was
    told as an example of both intents, on the anchor's line, which said "is one of 'greet' too (line 7)" of line 7."""
    examples = _examples_node(node, i)
    if examples is None:
        return None
    other, line = blocks.setdefault(id(examples), (name, _line_of(node, ("nlu", i, "examples"))))
    if other == name:
        return None
    return (f"{_at(path, _line_of(node, ('nlu', i, 'examples')))}: nlu.{i}.examples: these are a YAML alias (*name) "
            f"of the examples of {other!r} (line {line}), and an example under two intents teaches the classifier both "
            f"answers for one message: write the examples of {name!r} here")


def _kind_meant(item: dict[Any, Any]) -> str:
    """What to add where an entry of nlu.yml has none of the keys that name its kind (``_ENTRY_KINDS``): the one a key
    of it likely meant, misspelt (``intnet:``) or written in Chinese (``意图:``), else nothing."""
    for key in (str(key).strip() for key in item):
        if meant := key_meant(key, _ENTRY_KINDS, "nlu.yml"):
            return meant
    return ""


def _intent_entry(path: Path, node: yaml.Node | None, i: int, item: dict[str, Any],
                  source: Callable[[], list[str]], mistakes: Mistakes) -> tuple[str, list[tuple[int, str]]]:
    """Entry ``i`` of nlu.yml, an intent: its name and its examples (:func:`_entry_lines`, those at fault noted in
    ``mistakes`` and left out), refused with the line to fix where the name could never be the classifier's answer or
    its buttons' payload."""
    if isinstance(item["intent"], (list, dict)):  # intent: [get_refund], which quotes would not mend
        raise _fail(path, node, ("nlu", i), f"an intent has one name, not a {type(item['intent']).__name__}: write "
                                           f"intent: {_one_name(item['intent'], 'NAME')}")
    if not isinstance(item["intent"], str):  # YAML reads `yes` as true, `404` as a number, a blank as null
        raise _fail(path, node, ("nlu", i), f"an intent name is text: write intent: \"{item['intent']}\" in quotes"
                    if item["intent"] is not None else "the intent has no name")
    if extra := sorted(set(item) - {"intent", "examples", "metadata"}, key=str):
        raise _fail(path, node, ("nlu", i, extra[0]),
                    f"unknown key{key_meant(str(extra[0]), ('examples', 'metadata'), 'nlu.yml')}")
    name = item["intent"].strip()
    if (lines := _name_over_lines(node, i)) > 1:  # it was refused as an intent "with no examples"
        raise _fail(path, node, ("nlu", i), f"the intent's name runs over {lines} lines ({name!r}): write "
                                           f"'examples: |' on a line of its own under 'intent:', then "
                                           "each example on a line of its own after '- '")
    texts, faults = _entry_lines(path, node, i, item, source, messages=True)
    mistakes.extend(faults)
    if not name or not texts and not faults:
        raise _fail(path, node, ("nlu", i), f"intent {name!r} has no examples")
    if (meant := _meant_name(name)) != name:
        raise _fail(path, node, ("nlu", i), f"intent {name!r} is written in {name[0]} quotes, which YAML keeps as part of "
                                           f"its name: write intent: {meant}")
    if reserved := reserved_name(name):
        raise _fail(path, node, ("nlu", i), reserved)
    if (payload := normalise(name)) != name:  # a button's payload /NAME reaches the bot normalised
        raise _fail(path, node, ("nlu", i), f"intent {name!r}: write it as {payload!r} (full-width "
                                           "characters, doubled spaces or invisible ones in a name would "
                                           "never match its button)")
    return name, texts


# The pairs of quotation marks a word processor or a Chinese input method types for straight ones: curly, and the
# corner brackets of Traditional Chinese (and of many a Simplified writer: 「我要退款」).
_CURLY_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』"}


def in_curly_quotes(text: str) -> str | None:
    """The quote that opens ``text`` where it is written wholly in a pair of curly quotes or corner brackets
    (“Hello!”, 「你好」), which YAML and an ``examples: |`` block keep as text; else None: not one that holds the pair
    again (「退货」和「退款」), whose quotes are the customer's own."""
    value = text.strip()
    close = _CURLY_PAIRS.get(value[:1])
    return value[0] if len(value) >= 2 and value[-1] == close and close not in value[1:-1] else None


def _meant_name(name: str) -> str:
    """An intent's ``name`` as meant: without the pair of curly quotes around it (:func:`in_curly_quotes`), which YAML
    keeps as part of the name, where the responses and bot.yml name it without them (and were told "did you mean
    '“greet”'?")."""
    return name[1:-1].strip() if in_curly_quotes(name) else name


def _one_name(value: list[Any] | dict[Any, Any], otherwise: str) -> str:
    """The name a list of one (``[get_refund]``) holds, as it would be written alone; else ``otherwise``."""
    return str(value[0]) if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) else otherwise


def _entity_entry(path: Path, node: yaml.Node | None, i: int, item: dict[str, Any], kind: str,
                  source: Callable[[], list[str]], slots: tuple[str, ...], patterns: dict[str, list[re.Pattern[str]]],
                  synonyms: dict[str, str], mistakes: Mistakes) -> None:
    """Entry ``i`` of nlu.yml, of ``kind`` regex, synonym or lookup, added to the entities' ``patterns`` and to the
    ``synonyms`` (:func:`read_nlu`), its examples at fault noted in ``mistakes`` and left out; ``slots``: the bot's
    own, which no regex or lookup may name."""
    if isinstance(item[kind], (list, dict)):  # its entity would be named "['order_id']"
        raise _fail(path, node, ("nlu", i), f"a {kind} has one name, not a {type(item[kind]).__name__}: write "
                                           f"{kind}: {_one_name(item[kind], 'NAME')}")
    # A misspelt 'examples:' would leave the entry empty: a regex that never finds its entity.
    if extra := sorted(set(item) - {kind, "examples"}, key=str):
        raise _fail(path, node, ("nlu", i, extra[0]), f"unknown key{did_you_mean(str(extra[0]), ('examples',))}")
    lines, faults = _entry_lines(path, node, i, item, source)
    mistakes.extend(faults)
    if not lines and not faults:
        raise _fail(path, node, ("nlu", i), f"{kind} {item[kind]!r} has no examples")
    if kind != "synonym" and str(item[kind]) in slots:  # its value would replace the bot's own
        raise _fail(path, node, ("nlu", i), f"{kind} {item[kind]!r}: the bot keeps its own slot of that "
                                            "name; give the entity another")
    if kind == "lookup" and lines:  # an empty table would find its entity in every message
        patterns.setdefault(str(item["lookup"]), []).append(lookup_pattern([text for _, text in lines]))
        for text in (text for _, text in lines if CJK.search(text)):  # a synonym's value wins
            synonyms.setdefault(model_text(text.lower()), text)
    synonyms.update((model_text(text.lower()), str(item["synonym"])) for _, text in lines if kind == "synonym")
    for where, pattern in lines if kind == "regex" else []:
        try:
            patterns.setdefault(str(item["regex"]), []).extend(regex_patterns(pattern))
        except re.error as exc:  # on the pattern's own line, as an entry holds many: each told, the rest kept
            mistakes.append(str(_fail(path, node, ("nlu", i, "examples"), f"bad regex {pattern!r}: {exc}",
                                      _example_line(node, i, where))))


# A letter or digit of a script written with spaces between words: Chinese is written without them.
_SPACED_WORD = rf"[^\W{CJK.pattern[1:-1]}]"


def lookup_pattern(elements: list[str]) -> re.Pattern[str]:
    """A lookup table of nlu.yml as the pattern of its entity, as Rasa's RegexEntityExtractor reads one: any of
    its elements as written, ignoring case, as a whole word (Berlin, not the Berlin of "Berliner"); in Chinese,
    written without spaces, wherever it stands (北京 in 我要去北京的机票, Berlin in 去Berlin的机票), as Rasa
    reads a Chinese bot's; in either Chinese script (广州 in 我想去廣州, :func:`~retrieval.text.spellings`), as
    deskbot reads Traditional Chinese as Simplified. The longest first, so that "New York City" is not read as
    "New York"."""
    def whole(element: str) -> str:
        before = rf"(?<!{_SPACED_WORD})" if re.match(_SPACED_WORD, element) else ""
        after = rf"(?!{_SPACED_WORD})" if re.search(rf"{_SPACED_WORD}\Z", element) else ""
        return before + re.escape(element) + after
    spelled = {spelling for element in elements for spelling in spellings(element)}
    return re.compile("|".join(whole(e) for e in sorted(spelled, key=len, reverse=True)), re.IGNORECASE)


def regex_patterns(pattern: str) -> list[re.Pattern[str]]:
    """A regex of nlu.yml as the patterns of its entity: ignoring case, as Rasa's RegexEntityExtractor does by
    default ("Order AB123" as "order ab123"), and its Chinese in either script (订单 reads 訂單 123, and 訂單
    订单 123, :func:`~retrieval.text.spellings`), as deskbot reads Traditional Chinese as Simplified; a match's value
    is as the customer wrote it. As written first; :class:`re.error` if it does not compile so."""
    compiled = [re.compile(pattern, re.IGNORECASE)]
    for spelling in sorted(spellings(pattern) - {pattern}):
        with contextlib.suppress(re.error):  # a range of characters ([乾-亂]) whose ends the other script reverses
            compiled.append(re.compile(spelling, re.IGNORECASE))
    return compiled


# "- text:请提供订单号" (no space after the colon, or a full-width one, as Chinese input methods type them) is
# YAML's text "text:请提供订单号", which customers were shown word for word.
_KEY_WITHOUT_SPACE = re.compile(r"(text|buttons|language|channel)(?::(?=\S|\u00a0)|\s*：)")


# The sections of a Rasa domain.yml besides its responses, which a migrating shop may paste into responses.yml, and
# where deskbot has what each said.
_READ_ELSEWHERE = (": a Rasa domain's section, which responses.yml does not hold (it holds the domain's responses "
                   "alone): deskbot reads ")
RASA_DOMAIN = {
    "intents": _READ_ELSEWHERE + "the intents from nlu.yml",
    "entities": _READ_ELSEWHERE + "the entities from nlu.yml's regex and lookup entries",
    "slots": _READ_ELSEWHERE + "the slots from nlu.yml's entities and from bot.yml's actions.slots, the ones custom "
                               "actions set",
    "actions": _READ_ELSEWHERE + "the custom actions from actions/ (or actions.endpoint), run as bot.yml's actions.map "
                                 "names them",
    "forms": _READ_ELSEWHERE + "the forms, with their required_slots, from bot.yml's actions.forms (docs/learning.md, "
                               "Custom actions)",
    "session_config": _READ_ELSEWHERE + "no sessions: a conversation keeps its slots until an action resets them",
}


def read_responses(path: Path, intents: set[str] | None, languages: tuple[Language, ...], mistakes: Mistakes,
                   fillable: set[str] | None = None, entities: Mapping[str, list[re.Pattern[str]]] | None = None,
                   unread: Mapping[str, int | None] | None = None, sent_by_actions: bool = False,
                   renamed: str | None = None) -> Responses:
    """responses.yml, with each of its mistakes noted in ``mistakes`` (the response at fault left out; empty where it
    does not parse). ``languages``: those the bot's customers write in. Each intent's template
    must answer each of them on every channel, or an intent the classifier is sure of gets the fallback, with its own
    button in it. So must a response named ``utter_<name>`` after no intent (a Rasa domain's ``utter_ask_email``),
    which a custom action sends by its name; ``sent_by_actions``: whether any custom action runs, without which such a
    response is an error. ``intents``: nlu.yml's, which each response and button names (None: unknown, not checked).
    ``fillable``: the only variables anything can fill (None: unknown, as when custom actions may set any
    slot); a variant with another would never be shown. ``entities``: nlu.yml's entity patterns, which a
    button's payload values must be values of (None: not checked). ``unread``: the entities nlu.yml annotates
    and no regex or lookup reads (:func:`read_nlu`), which a variable that cannot be filled is told apart by.
    ``renamed``: the intent an unknown one named here with no name close to it was likely renamed to
    (:func:`renamed_intent`)."""
    templates: dict[str, list[ResponseVariant]] = {}
    named: dict[str, list[ResponseVariant]] = {}  # an action's own responses, named after no intent
    with mistakes.noted():
        data, node = _load_yaml(path, mistakes)
        if not isinstance(data, dict) or not isinstance(data.get("responses"), dict):
            raise _not_top_level(path, node, data, "responses", "mapping of intent -> variants",
                                 "responses.yml holds 'responses:' and, under it, each intent's answers after its name "
                                 "('greet:', then '- text: Hello!' indented below it)")
        payloads = None if intents is None else button_payloads(intents)
        for key in sorted(set(data) - {"responses", "version"}, key=str):
            mistakes.append(str(_fail(path, node, (key,), f"unknown key{RASA_DOMAIN.get(key, '')}")))
        for intent, variants in data["responses"].items():
            with mistakes.noted():
                parsed = _response(path, node, intent, variants, intents, payloads, mistakes, fillable, entities,
                                   unread, sent_by_actions, renamed)
                if parsed is None:
                    continue
                for language in languages:
                    with mistakes.noted():
                        _check_answers(path, node, intent, parsed, language)
                (named if intents is not None and intent not in intents else templates)[intent] = parsed
    return Responses(templates, named)


def renamed_intent(intents: set[str] | None, answered: set[str] | None) -> str | None:
    """The one intent of nlu.yml (``intents``) that none of ``answered`` is (responses.yml's names as written, the
    handoff's intent, the custom actions'), which an unknown intent named elsewhere was likely renamed to in nlu.yml
    alone; None where there are none or several, or where either file is unread."""
    unanswered = set() if intents is None or answered is None else intents - answered
    return next(iter(unanswered)) if len(unanswered) == 1 else None


def _response(path: Path, node: yaml.Node | None, intent: Any, variants: Any, intents: set[str] | None,
              payloads: frozenset[str] | None, mistakes: Mistakes, fillable: set[str] | None,
              entities: Mapping[str, list[re.Pattern[str]]] | None, unread: Mapping[str, int | None] | None,
              sent_by_actions: bool, renamed: str | None) -> list[ResponseVariant] | None:
    """The variants of responses.yml's response ``intent`` (:func:`read_responses`), each one's mistakes noted (None
    then: what the others answer is not what it will, and is not checked); a :class:`ProjectError` where its name
    is at fault."""
    if not isinstance(intent, str):  # yes: and 404: are read as True and 404
        raise _fail(path, node, ("responses", intent),
                    f"an intent name is text, but YAML reads this key as {type(intent).__name__} {intent!r}: put it in quotes")
    if intents is not None:
        own = intent.startswith("utter_") and intent.removeprefix("utter_") not in intents
        if intent not in intents and not (own and sent_by_actions):
            utter = intent.startswith("utter_")  # said below: its name
            said = unknown_intent(intent, () if utter else intents, None if utter else renamed)
            if own:
                said += (": a response named after no intent is sent only by a custom action "
                         f"(dispatcher.utter_message(response={intent!r}) or FollowupAction({intent!r})), and "
                         "bot.yml's actions.map runs none")
            elif utter:  # a Rasa domain's response name: deskbot's are its intents'
                said += (f": name it '{intent.removeprefix('utter_')}:', after its intent; an action's "
                         f"response={intent!r} still shows it")
            raise _fail(path, node, ("responses", intent), said)
    if isinstance(variants, (str, dict)):
        variants = [variants]
    if variants is None or variants == []:  # "goodbye:" with its variants not written yet, or deleted
        raise _fail(path, node, ("responses", intent), f"no variant to answer with: write one under it ('- text: ...'), "
                                                       f"or remove '{intent}:'")
    if not isinstance(variants, list):
        raise _fail(path, node, ("responses", intent), "expected a list of variants")
    parsed = []
    for j, variant in enumerate(variants):
        with mistakes.noted():
            parsed.append(_response_variant(path, node, ("responses", intent, j), variant, payloads, fillable,
                                            entities, unread, renamed))
    return parsed if len(parsed) == len(variants) else None


def _response_variant(path: Path, node: yaml.Node | None, loc: tuple[Any, ...], variant: Any,
                      payloads: frozenset[str] | None,
                      fillable: set[str] | None, entities: Mapping[str, list[re.Pattern[str]]] | None,
                      unread: Mapping[str, int | None] | None, renamed: str | None) -> ResponseVariant:
    """One variant of responses.yml at ``loc`` (a text, or a mapping), refused with the line to fix of each of its
    mistakes where it could never be shown (a variable or a condition nothing fills) or a button of it sends what the
    bot cannot read (:func:`read_responses` says which of its arguments does what)."""
    if isinstance(variant, str) and (key := _KEY_WITHOUT_SPACE.match(variant)):
        space = ("a plain space after it: the one there is a no-break space (U+00A0), as text copied from Word or a web "
                 "page has, which YAML does not read as one" if variant[key.end():].startswith("\u00a0") else
                 "a space after it")
        raise _fail(path, node, loc, f"this variant is the text {variant[:30]!r}: write "
                    f"'{key[1]}: ' with a half-width colon and {space}")
    if variant is None:  # a '-' alone: pydantic said "Input should be a valid dictionary or instance of ResponseVariant"
        raise _fail(path, node, loc, "this variant is empty: write its text after the '-' ('- text: ...'), or remove "
                                     "the line")
    text_at = loc if isinstance(variant, str) else (*loc, "text")
    if isinstance(variant, str):
        variant = {"text": variant}
    faults: list[tuple[int, str]] = []  # each mistake with its line, told in their order
    buttons = variant.get("buttons") if isinstance(variant, dict) else None
    for what, at in (("text", text_at), *(("title", (*loc, "buttons", k, "title"))
                                          for k in range(len(buttons) if isinstance(buttons, list) else 0))):
        if quote := _curly_quoted(_node_at(node, at)[1]):
            faults.append(_lined(path, node, at, f"the {what} is written in {quote} quotes, which YAML keeps as part of "
                                                 f"the {what}: customers would see them; leave them out, or put them in "
                                                 "straight quotes ('“…”') to show them"))
    if isinstance(variant, dict) and (rasa_keys := [key for key in variant if key in RASA_RESPONSE_KEYS]):
        faults.extend(_lined(path, node, (*loc, key), RASA_RESPONSE_KEYS[key]) for key in rasa_keys)
        variant = {key: value for key, value in variant.items() if key not in rasa_keys}  # the rest checked as ever
    try:
        parsed = ResponseVariant.model_validate(variant)
    except ValidationError as exc:  # a Rasa domain's channel names, and a misspelt one
        faults.extend(_validation_mistakes(
            path, node, loc, exc.errors(), ResponseVariant,
            lambda err: _rasa_channel(err["input"]) if err["type"] == "literal_error" and err["loc"] == ("channel",)
            else ""))
        if (unmistaken := _without_mistakes(ResponseVariant, variant)) is None:
            raise ProjectErrors([said for _, said in faults]) from None
        parsed = unmistaken
    for name in sorted(parsed.variables() - fillable) if fillable is not None else ():
        if unread and name in unread:  # a Rasa bot's annotations, which taught its entity extractor
            why = (f": nlu.yml annotates it (line {unread[name]}) but has no regex or lookup for it, and deskbot "
                   f"reads an entity only with one of those (add '- regex: {name}' or '- lookup: {name}')")
        else:
            why = " is filled by no entity of nlu.yml, nor by what the custom actions set (bot.yml's actions.slots)"
        meant = "".join(f"; did you mean {{{close}}}?" for close in difflib.get_close_matches(name.lower(),
                                                                                              sorted(fillable), n=1))
        if not meant and not (unread and name in unread):  # that one says what to add
            meant = _fillable_here(fillable, "variables", "{{{}}}")
        faults.append(_lined(path, node, loc, f"{{{name}}}{why}: this variant would never be shown{meant}"))
    faults.extend(_lined(path, node, loc, f"{{{{{name}}}}} is shown to the customer as '{{{name}}}', braces and all: "
                                          f"a variable is written in single braces, {{{name}}}")
                  for name in sorted(_doubled(parsed)) if fillable is None or name in fillable)
    faults.extend(_lined(path, node, (*loc, "condition", k, "name"),
                         f"{c.name!r} is a slot no entity of nlu.yml fills, nor what the custom actions set (bot.yml's "
                         f"actions.slots): this variant would never be shown"
                         f"{did_you_mean(c.name, fillable) or _fillable_here(fillable, 'slots', '{}')}")
                  for k, c in enumerate(parsed.condition)
                  if fillable is not None and c.name not in fillable and c.value is not None)
    for k, button in _buttons_as_written(variant, parsed):  # a typo would send the click to the classifier as text
        chosen, values = read_payload(button.payload)
        chosen = chosen.strip()  # as the server reads a message: "/track_refund " selects track_refund
        unquoted = chosen.strip(_CURLY_QUOTES).strip()
        meant = unquoted if unquoted.startswith("/") else f"/{unquoted}"
        if payloads is not None and unquoted.startswith("/") and unquoted not in payloads:
            faults.append(_lined(path, node, (*loc, "buttons", k, "payload"),
                                 unknown_intent(unquoted[1:], (p[1:] for p in payloads), renamed)
                                 + ("; and write it without its curly quotes, which YAML keeps as text"
                                    if unquoted != chosen else "")))
        # its slash left out, or in curly quotes: these told whatever nlu.yml's intents, unread while it is at fault
        elif meant != chosen and (meant in payloads if payloads is not None else unquoted.startswith("/")):
            faults.append(_lined(path, node, (*loc, "buttons", k, "payload"),
                                 f"{chosen!r} would be sent as a customer's text, for the classifier to read, not as "
                                 f"the intent: write '{meant}'"))
        elif entities is not None and (why := _not_a_value(values, entities)):
            faults.append(_lined(path, node, (*loc, "buttons", k, "payload"), why))
    if faults:
        raise ProjectErrors([said for _, said in sorted(faults)])
    return parsed


def _fillable_here(fillable: set[str], what: str, written: str) -> str:
    """The variables or slots (``what``) a variant can use, each as ``written`` formats it, for a name none of them is
    like: "would never be shown" alone left the editor to guess which names the bot's entities and actions give."""
    return f"; the {what} it can use are {', '.join(written.format(name) for name in sorted(fillable))}"


def _curly_quoted(text: yaml.Node | None) -> str | None:
    """The curly quote that opens ``text``, a response's text written unquoted in YAML and wholly in a pair of curly
    quotes (“Hello!”), as a word processor or a Chinese input method types them for straight ones; else None. YAML
    keeps them as text, and customers saw them; a text in straight quotes ('“Hello!”') shows them, as meant."""
    return None if not isinstance(text, yaml.ScalarNode) or text.style else in_curly_quotes(text.value)


# A variable written in double braces, as Jinja and Mustache templates write one ({{order_id}}): deskbot's are single,
# and a double brace is a literal one. Not {{{order_id}}}, a variable in literal braces.
_DOUBLED_VARIABLE = re.compile(r"(?<!\{)\{\{([^\W\d]\w*)\}\}(?!\})")


def _doubled(variant: ResponseVariant) -> set[str]:
    """The names written as variables in double braces in ``variant``'s text and button titles."""
    return {name for text in (variant.text or "", *(b.title for b in variant.buttons))
            for name in _DOUBLED_VARIABLE.findall(text)}


def _buttons_as_written(variant: Any, parsed: ResponseVariant) -> list[tuple[int, Button]]:
    """The buttons of ``parsed``, read from responses.yml's ``variant``, each with its index there: one left out for
    a mistake of its own (told already) moved those after it, whose mistakes were told at the line of the one
    before."""
    written = variant.get("buttons") if isinstance(variant, dict) else None
    if not isinstance(written, list) or len(written) == len(parsed.buttons):
        return list(enumerate(parsed.buttons))
    read = []
    for k, button in enumerate(written):
        with contextlib.suppress(ValidationError):
            read.append((k, Button.model_validate(button)))
    return read


def _lined(path: Path, node: yaml.Node | None, loc: tuple[Any, ...], message: str) -> tuple[int, str]:
    """The error at ``loc`` (:func:`_fail`) with its line, for mistakes told in the order of their lines."""
    return _line_of(node, loc) or 0, str(_fail(path, node, loc, message))


def _check_answers(path: Path, node: yaml.Node | None, intent: str, parsed: list[ResponseVariant],
                   language: Language) -> None:
    """Refuse an intent's variants (``parsed``) that leave ``language``'s customers on some channel, or with some
    slots, without an answer: they would get the fallback for an intent the classifier is sure of."""
    spoken = [v for v in parsed if v.language in (None, language)]
    if any(v.channel is None for v in spoken) and all(v.condition for v in spoken if v.channel is None):
        raise _fail(path, node, ("responses", intent), f"no variant answers {language} customers whatever the "
                    "slots hold (each has a condition): add one without 'condition:'")
    if not any(v.channel is None for v in spoken):
        only = sorted({v.channel for v in spoken if v.channel})
        raise _fail(path, node, ("responses", intent),
                    f"no variant answers {language} customers on every channel (only on {', '.join(only)}): "
                    "add one without 'channel:'" if only else
                    f"no variant answers {language} customers: add one with 'language: {language}' or none")


# The keys of a Rasa domain's response that a responses.yml variant does not take, each with what to write instead:
# "unknown key" alone (or "did you mean 'buttons'?" for button_type) left a migrating shop to guess.
_NOT_SENT = "Rasa's {}, which a responses.yml variant does not send: "
RASA_RESPONSE_KEYS = {
    "button_type": "Rasa's layout of the buttons, which deskbot does not set (each channel lays out buttons its own "
                   "way): leave it out",
    "id": "Rasa's response id, which only Rasa's NLG server reads: leave it out",
    "metadata": "Rasa's response metadata, which deskbot does not read: leave it out (a page's data goes in custom:)",
    "quick_replies": "Rasa's quick replies: write them as buttons: (a title and a payload each), which every channel "
                     "shows, as Rasa's channels show quick replies where they have none of their own",
    "attachment": _NOT_SENT.format("attachment") + "put its link in the text, or an image's link in image:",
    "elements": _NOT_SENT.format("carousel cards") + "write the cards' titles in the text and their buttons as "
                                                     "buttons:, or send them from a custom action's "
                                                     "utter_message(elements=...), which shows them so",
}


# Rasa's channels whose customers deskbot's web chat serves: its REST and Socket.IO ones, which web widgets use
RASA_WEB_CHANNELS = {"rest", "socketio"}


def _rasa_channel(channel: Any) -> str:
    """What to write instead of a ``channel:`` that deskbot has no channel of: a Rasa domain's, or a typo of one of
    deskbot's (``slak``, ``Slack``), which "leave it out" would have had its variant deleted for."""
    if isinstance(channel, list):  # a crash ("unhashable type: 'list'") where it was told
        return ": a variant is for one channel, or for all without 'channel:': write one variant for each"
    if channel in RASA_WEB_CHANNELS:
        return f": Rasa's {channel} channel is deskbot's web chat here: write 'channel: web'"
    if isinstance(channel, str) and (meant := did_you_mean(channel.strip().lower(), CHANNELS)):
        return meant
    return f": deskbot has no {channel} channel, so this variant would never be shown: leave it out"


CHANNELS = typing.get_args(typing.get_args(ResponseVariant.model_fields["channel"].annotation)[0])  # web, slack, wecom


def _not_a_value(values: dict[str, PayloadValue | list[str]], entities: Mapping[str, list[re.Pattern[str]]]) -> str | None:
    """Why a button's payload ``values`` would be dropped when clicked (the engine keeps only the values an
    entity's patterns take), or None."""
    for name, value in values.items():
        if name not in entities:
            return (f"{name!r} is no entity of nlu.yml (it has {', '.join(sorted(entities)) or 'none'}): the click would "
                    f"not set it; a Rasa slot that buttons alone set becomes an entity with '- lookup: {name}' listing "
                    "its values, which a click (or a customer typing one) sets")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not variable_names(text) and entity_value(entities[name], text) is None:
                return f"{text!r} is no {name} that nlu.yml's patterns take: the click would not set it"
    return None


def no_answer(answer: Any) -> bool:
    """Whether ``answer`` is a helpdesk's export of a ticket no agent answered: none (JSON's null) or empty, HTML of no
    text (``<p></p>``) too once read. An export holds many such tickets, and its line is left out, not refused."""
    return answer is None or isinstance(answer, str) and not answer.strip()


def history_item(row: Any) -> HistoryItem | None:
    """One line of history.jsonl, read from its JSON, or one row of history.csv as such a line: None for a ticket
    exported unanswered (:func:`no_answer`), which :func:`load_history` leaves out and names; a TypeError or
    ValueError says what is wrong with another. ``bot init --from-jsonl`` checks a labelled line's answer with it
    too, so that what it writes loads."""
    if not isinstance(row, dict):
        raise TypeError(f"a line is one JSON object, not {type(row).__name__}")
    if extra := sorted(set(row) - {"question", "answer", "intent"}):  # before the missing: "anwser" names both
        raise TypeError(f"unknown key {extra[0]!r}" + "".join(f", no {key!r}" for key in ("question", "answer")
                                                              if key not in row))
    if missing := [key for key in ("question", "answer") if key not in row]:
        raise TypeError(f"no {missing[0]!r}")
    if not isinstance(row["question"], str):
        raise TypeError("question and answer must be text")
    if no_answer(row["answer"]):
        return None
    item = HistoryItem(row["question"], row["answer"], row.get("intent"))
    if not isinstance(item.question, str) or not isinstance(item.answer, str):
        raise TypeError("question and answer must be text")
    if blank := next((key for key in ("question", "answer") if not getattr(item, key).strip()), None):
        raise TypeError(f"the {blank} is empty")  # a blank question was the closest answer to any message
    if not isinstance(item.intent, (str, type(None))):
        raise TypeError(f"intent must be a string, not {item.intent!r}")
    if item.intent is not None:  # as a labelled line's: "top_up " is top_up
        item.intent = intent_label(item.intent)
    if not valid_unicode(item.question + item.answer):
        raise ValueError("the question or the answer is not valid Unicode (half of a surrogate pair)")
    if len(item.answer) > MAX_REPLY_CHARS:  # as a template, an agent's or an action's reply may be
        raise ValueError(f"the answer is {len(item.answer)} characters long, more than a reply may be "
                         f"({MAX_REPLY_CHARS})")
    return item


# What a Chinese input method (or a word processor) types for JSON's punctuation, with what JSON takes
_TYPED_FULL_WIDTH = {"，": ",", "：": ":", "“": '"', "”": '"', "‘": '"', "’": '"'}


def json_error(exc: ValueError) -> str:
    """Why a line of a JSON Lines file is no JSON, in the line's terms: json's "line 1 column 57 (char 56)" counted
    within the line, which the file's line number already names, and with the mistake it most likely is, which
    json does not say: a full-width comma, colon or curly quote as a Chinese input method types them, single quotes,
    or a comma after the last value."""
    if not isinstance(exc, json.JSONDecodeError):
        return str(exc)
    said = f"{exc.msg} at column {exc.colno}"
    at, before = exc.doc[exc.pos:exc.pos + 1], exc.doc[:exc.pos].rstrip()[-1:]
    if at in _TYPED_FULL_WIDTH:
        return f"{said}: {at!r} is typed full-width, as a Chinese input method types it; write {_TYPED_FULL_WIDTH[at]!r}"
    if at == "'":
        return f"{said}: JSON puts its keys and texts in double quotes, \"question\", not single ones"
    if before == "," and at in ("}", "]"):
        return f"{said}: JSON takes no ',' after the last value; take it out"
    return said


def jsonl_hint(line: str, n: int, example: str, as_csv: str = "") -> str:
    """What line ``n`` of a JSON Lines file, which is no JSON object, most likely is, and what to write instead:
    an export in another format. ``example``: a line as the file holds one; ``as_csv``: how the command reads
    a CSV file, where it does."""
    start = line.lstrip("\ufeff ")
    if start.startswith("["):
        return "; the file looks like one JSON array: write one JSON object per line (JSON Lines)" if n == 1 else ""
    if not start.startswith("{") and any(mark in line for mark in (",", ";", "\t")):
        return f"; the file looks like CSV: write one JSON object per line, such as {example}{as_csv}"
    return ""


# A column's name: its key. A Chinese helpdesk's export names them in Chinese (问题, 意图, 答案), in either script.
CSV_COLUMNS = {"question": "text", "text": "text", "intent": "intent", "answer": "answer",
               "问题": "text", "問題": "text", "意图": "intent", "意圖": "intent", "答案": "answer"}


# A character reference as HTML writes one, its semicolon included: "&amp;", "&#39;", "&#x4e2d;". html.unescape
# alone also reads the bare legacy names, and "price&notice" became "price¬ice".
_HTML_REFERENCE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def html_references_read(text: str) -> str:
    """``text`` with its HTML character references ("We&#39;ll check &amp; reply") as the characters they stand
    for: a helpdesk exports its tickets' HTML bodies so, and the bot sent customers "&#39;" as it was."""
    return _HTML_REFERENCE.sub(lambda match: html.unescape(match.group()), text)


# The tags a helpdesk's ticket bodies are written with: a cell holding none of them is text, whose "<order 123>" or
# "< 5 kg" is the customer's own, and is left as written. Those that break its lines come first: where it has one,
# the text's own line breaks are HTML's spaces.
_HTML_LINES = ["p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "blockquote", "table", "tr",
               "caption", "pre"]
_HTML_TAGS = [*_HTML_LINES, "b", "strong", "i", "em", "u", "span", "font", "a", "td", "th", "s", "strike", "del"]
# What else a helpdesk's editor (or an e-mail pasted into it) writes: a "<" that opens or closes none of these, nor a
# comment, nor Outlook's namespaced "<o:p>", is text ("your <order 123>", "a < b"), where html.parser read
# "<order 123>" as a tag and dropped it from a cell that also held real ones.
_HTML_ELEMENTS = [*_HTML_TAGS, "html", "head", "body", "meta", "title", "style", "script", "img", "ins", "sub", "sup",
                  "small", "big", "tt", "center", "code", "thead", "tbody", "tfoot", "col", "colgroup", "section",
                  "article", "header", "footer", "figure", "figcaption", "dl", "dt", "dd", "wbr"]
# The XML declaration a ticket body pasted from Word opens with, which carries nothing: left, it had BeautifulSoup
# warn that the body may be XML.
_XML_DECLARATION = re.compile(r"\A<\?xml[^>]*>", re.IGNORECASE)
# Markup that is no element: a comment, a doctype, Word's "<![if !supportLists]>" and "<![endif]>", a CDATA section, an
# XML declaration. Any other "<!" is text: html.parser refused "<![确]" (a regex pasted into a cell) with an exception.
_MARKUP = r"!--|!doctype\b|!\[(?:cdata|if|else|endif)\b|\?xml\b"
# What follows the "<" of a tag or of such markup
_OPENS = rf"/?(?:{'|'.join(_HTML_ELEMENTS)})[\s/>]|/?[A-Za-z]+:[A-Za-z]|{_MARKUP}"
_NOT_A_TAG = re.compile(rf"<(?!{_OPENS})", re.IGNORECASE)
_CELL_END = "\x1f"  # ends a table cell's text, for its row to join the cells
_OPENABLE = ("https://", "http://", "mailto:", "tel:")  # the addresses a customer can open from a chat, pictures the first two


class _ReplyMarkdown(MarkdownConverter):
    """markdownify's Markdown as the web chat draws it (bot/static/widget.js), and WeCom and Slack show it: a line
    break is a "\\n" alone, which the chat reads as one, without Markdown's two spaces before it left in the reply;
    a heading, which the chat does not draw, is a paragraph of its text rather than a line of "## "; a rule, which none
    of them draws, a blank line; a table, which none of them draws either, a line of each row's cells ("Size | Price");
    a "```" block or a "> " quote, which the chat does not draw either, its lines; struck-out text none; and a link's
    address with no space or parenthesis in it, which end the link the chat draws."""

    def convert_br(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return super().convert_br(el, text, parent_tags) if "_inline" in parent_tags else "\n" + text

    def convert_hN(self, n: int, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self.convert_p(el, text, parent_tags)

    def convert_hr(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return "\n\n"

    def convert_table(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return f"\n\n{text.strip()}\n\n"

    def convert_tr(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        cells = [cell.strip() for cell in text.split(_CELL_END)]
        return " | ".join(cell for cell in cells if cell) + "\n"

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return " ".join(text.split()) + _CELL_END

    convert_th = convert_td

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """A link whose address a customer can open, its address :func:`_linked`; any other (the helpdesk's own
        "/hc/articles/1", "#top", "javascript:…") its text alone, where "[text](/hc/articles/1)" was shown as typed."""
        href = str(el.get("href") or "").strip()
        if not href.lower().startswith(_OPENABLE):
            return text
        el["href"] = _linked(href)  # "https://shop.example/help center" stayed "[text](https://shop.example/help center)"
        el.attrs.pop("title", None)  # [text](url "title") is no link the chat draws
        return super().convert_a(el, text, parent_tags)

    def convert_blockquote(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """A quoted passage (a policy the agent cites) as its paragraphs: the chat draws no "> " quote."""
        return self.convert_p(el, text, parent_tags)

    def convert_s(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """Struck-out text (an old price, a date since moved) left out: the chat draws no "~~", and the customer read
        "~~$50~~ $40" as typed, or, as plain text, "$50 $40", the old one first."""
        return ""

    convert_del = convert_strike = convert_s

    def convert_pre(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """Preformatted text (a pasted address, a table of sizes) as its lines: the chat draws no "```" block."""
        lines = [line.strip() for line in text.strip("\n").splitlines()]
        return "\n\n" + "\n".join(line for line in lines if line) + "\n\n"

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """A picture, which no channel draws from Markdown: a link to it, named by its alt text; or that text alone
        where its address is none a customer can open (an e-mail's "cid:", a pasted "data:" image of thousands of
        characters). Its "![alt](…)" showed the customer its marks, "![](…)" without an alt text."""
        alt, src = " ".join(str(el.get("alt") or "").split()), str(el.get("src") or "").strip()
        if not src.lower().startswith(_OPENABLE[:2]):
            return alt
        return f"[{alt}]({_linked(src)})" if alt else f" {_linked(src)} "  # a bare address, apart from the words


def _linked(address: str) -> str:
    """A link's ``address`` as the web chat's Markdown reads one: its white space and parentheses percent-encoded, as
    a browser sends them, since they end the link."""
    return re.sub(r"[\s()]", lambda match: quote(match.group()), address.strip())


def _layout_as_blocks(soup: BeautifulSoup) -> None:
    """Each table of ``soup`` whose rows hold one cell each, as an e-mail template lays out a whole answer (its
    greeting, paragraphs, list and signature), made plain blocks: read as a table, its paragraphs ran into one line."""
    for table in soup.find_all("table"):
        rows = [row for row in table.find_all("tr") if row.find_parent("table") is table]
        if any(len(row.find_all(["td", "th"], recursive=False)) > 1 for row in rows):
            continue
        for part in [table, *(part for part in table.find_all(["thead", "tbody", "tfoot", "tr", "td", "th"])
                              if part.find_parent("table") is table)]:
            part.name = "div"


def html_read(text: str, markdown: bool = False) -> str:
    """A helpdesk's exported ticket body as deskbot's text: its HTML tags, which the web chat shows as typed and
    Slack and WeCom print, as the paragraphs, line breaks and lists of deskbot's Markdown and (with ``markdown``, for
    an answer) its bold, italics and links; a question's are its text alone. A text with none of the tags a ticket is
    written with is left as written, its character references read (:func:`html_references_read`), and an escaped
    ``&lt;b&gt;`` stays the text it was; so does a "<" that opens no HTML tag in a text that has some."""
    if "<" not in text:  # most cells: no parse
        return html_references_read(text)
    soup = BeautifulSoup(_XML_DECLARATION.sub("", _NOT_A_TAG.sub("&lt;", text)), "html.parser")
    if soup.find(_HTML_TAGS) is None:
        return html_references_read(text)
    for markup in soup.find_all(string=lambda node: isinstance(node, (Declaration, ProcessingInstruction))):
        markup.extract()  # Word's "<![if !supportLists]>", "<?xml:namespace …>": markdownify wrote their words
    _layout_as_blocks(soup)
    inline = [] if markdown else ["a", "b", "strong", "i", "em", "img"]
    converted = _ReplyMarkdown(bullets="-", autolinks=False, escape_asterisks=False, escape_underscores=False, strip=inline,
                          wrap=soup.find(_HTML_LINES) is not None, wrap_width=None).convert_soup(soup)
    # a rule between paragraphs: one blank line; a picture's bare address that starts a line: no space before it
    return re.sub(r"(?m)^ (?=\S)", "", re.sub(r"\n{3,}", "\n\n", converted)).strip()


# The keys of a helpdesk's exported line whose text is a ticket's HTML body: a labelled line's, a test line's and a
# history line's (:func:`exported_line`).
_EXPORTED_KEYS = ("text", "question", "intent", "answer")
# A "<" that opens an HTML tag: the rest are text (:data:`_NOT_A_TAG`).
_A_TAG = re.compile(rf"<(?={_OPENS})", re.IGNORECASE)


def exported_line(row: Any) -> Any:
    """A line of a helpdesk's export, a JSON object or a CSV row by its keys, as deskbot reads every such file (an
    import's, a test file's, a history file's): the HTML of its text, question, intent and answer read
    (:func:`html_read`), the answer's as Markdown; its other keys as they are, and anything but an object as it is,
    for its reader to refuse."""
    if not isinstance(row, dict):
        return row
    return row | {key: html_read(value, markdown=key == "answer") for key in _EXPORTED_KEYS
                  if isinstance(value := row.get(key), str)}


def html_kept(text: str) -> str:
    """``text`` as a file deskbot reads as a helpdesk's export must hold it to be read back as it is
    (:func:`html_read`): a "<" that would open a tag, and a "&" that would start a character reference, escaped. A
    history.jsonl ``bot init`` writes holds the export's text so: its "&lt;b&gt;", read as "<b>", became bold."""
    return _A_TAG.sub("&lt;", _HTML_REFERENCE.sub(lambda match: "&amp;" + match.group()[1:], text))


def _named_twice(header: list[str]) -> str | None:
    """What a header names twice among the columns read (``answer`` and ``answer``, or ``question`` and ``text``),
    or None: a row's cells are read by name, so the last such column was read and the other dropped unsaid."""
    first: dict[str, str] = {}  # a column's key: the first name read as it
    for name in header:
        if (key := CSV_COLUMNS.get(name)) is None:
            continue
        if key in first:
            return f"two columns are named {name!r}" if first[key] == name else \
                f"two columns name the {'question' if key == 'text' else key}: {first[key]!r} and {name!r}"
        first[key] = name
    return None


# Said of a file of questions and answers given where labelled questions are needed: it answers as the bot's history
HISTORY_ALONE = ("; questions with their answers and no intents are a bot's history: make the bot (bot init DIR, or from "
                 "a file with intents) and save this file as DIR/history.csv")


def csv_rows(path: Path, fail: Callable[[str], None], needed: str = "intent") -> Iterator[tuple[int, dict[str, str]]]:
    """A CSV export's rows, each with the line it starts on, as ``{"text", "intent", "answer"}`` and its other
    columns by name: the header row names the columns ``question`` (or ``text``), ``intent`` and ``answer``, in
    any case and order, each once, ``needed`` among them (``intent`` for labelled questions, ``answer`` for
    history.csv). Blank rows are skipped. ``fail`` stops with the line of what cannot be read: a file that is not
    UTF-8, such a header, a quote left open, a row of more cells than the header names. A column may be named in
    Chinese instead (:data:`CSV_COLUMNS`). A read column's HTML, as a helpdesk exports its tickets' bodies, is read as
    deskbot's text, an answer's as its Markdown (:func:`html_read`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" opens with a byte order mark
    except UnicodeDecodeError as exc:
        at = exc.object[:exc.start].count(b"\n") + 1
        fail(f"{path}:{at}: {not_utf8(exc.object, exc.start)}; save the file as UTF-8 (Excel: CSV UTF-8)")
    # A cell may be as long as the file: a helpdesk exports each ticket's whole transcript beside its question, and
    # csv's limit of 131,072 characters stopped the export at its first long one, said to be a quote left open. The
    # limit is the process's own and only grows; a quote left open is still told, at the end of the file.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    # A quoted answer's line breaks are its own; strict: a quote left open took the rest of the file as one cell.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = [name.strip().casefold() for name in next(reader, [])]
    keys = {CSV_COLUMNS.get(name) for name in header}
    if needed not in keys or "text" not in keys:
        found = ",".join(header)
        hint = "; the columns are separated by commas" if ";" in found or "\t" in found else ""
        if needed == "intent" and keys >= {"text", "answer"}:  # a helpdesk's answered tickets, which no one labelled
            hint += HISTORY_ALONE
        optional = "answer" if needed == "intent" else "intent"
        chinese = {"intent": "意图", "answer": "答案"}
        fail(f"{path}:1: the first row names the columns: question (or text), {needed} and, optionally, {optional} "
             f"(or in Chinese: 问题, {chinese[needed]}, {chinese[optional]}); it has {found!r}{hint}")
    if twice := _named_twice(header):
        fail(f"{path}:1: {twice}; keep one, or rename the other")
    columns = [CSV_COLUMNS.get(name) for name in header]
    while True:
        line = reader.line_num + 1  # the row's first line: a quoted answer may run over several
        try:
            values = next(reader, None)
        except csv.Error as exc:
            fail(f"{path}:{line}: {exc} (a quote left open, or one inside a text not doubled)")
        if values is None:
            return
        if not any(value.strip() for value in values):
            continue
        if len(values) > len(header):
            fail(f"{path}:{line}: {len(values)} columns where the first row names {len(header)} "
                 f"({_cells_as_read(header, values)}); quote a text that holds a comma (\"where is it, please?\")")
        # the HTML of the columns read alone: another (a ticket's whole transcript) is kept to be named as not read
        yield line, exported_line({name if key is None else key: value for name, key, value in zip(header, columns, values)})


def _cells_as_read(header: list[str], values: list[str]) -> str:
    """How a row of more cells than ``header`` names was read, each cell under its column's name and the rest past
    them, each cut to 40 characters: the cell cut short at its comma ("answer '<p>Yes'") shows which text to quote,
    where a count of columns alone left a helpdesk export's row of long HTML cells to be searched by hand."""
    def cut(value: str) -> str:
        return repr(value if len(value) <= 40 else value[:40] + "…")

    named = ", ".join(f"{name or 'a column with no name'} {cut(value)}" for name, value in zip(header, values))
    return f"read as {named}, and {', '.join(cut(value) for value in values[len(header):])} past them"


HISTORY_LINE = '{"question": "where is my order?", "answer": "It ships within 2 days."}'  # one line of history.jsonl


def too_long(text: str, limit: int, what: str = "text") -> str | None:
    """What is wrong with a ``what`` longer than a customer's message may be (``limit``: server.max_message_chars),
    or None: the web channel refuses such a message and Slack and WeCom cut it, so no customer asks it, and one
    the bot learns from or is scored on (a ticket's whole thread) measures nothing it will meet."""
    if len(text) <= limit:
        return None
    return f"the {what} is {len(text):,} characters long, more than a customer's message may be " \
           f"({limit:,}: server.max_message_chars)"


def _jsonl_history(path: Path, faults: list[str]) -> Iterator[tuple[int, HistoryItem | None]]:
    """history.jsonl's answers with their lines: one JSON object per line, a helpdesk's JSON export; a line whose
    answer is null or empty is a ticket exported unanswered, None for :func:`load_history` to leave out, as history.csv's
    row is. What is wrong with each other line is added to ``faults``."""
    for n, line in enumerate(_read_text(path).split("\n"), start=1):  # not splitlines: U+2028 may sit in a string
        if not line.strip():
            continue
        try:
            # a file of several joined, each with its mark; a helpdesk's JSON export, its bodies in HTML
            item = history_item(exported_line(json.loads(line.removeprefix("\ufeff"))))
        except (ValueError, RecursionError, KeyError, TypeError) as exc:  # RecursionError: nested too deep to parse
            faults.append(f"{path}:{n}: expected {{\"question\", \"answer\", \"intent\"?}}: {json_error(exc)}"
                          f"{jsonl_hint(line, n, HISTORY_LINE, as_csv=', or save the CSV as history.csv')}")
            continue
        yield n, item


def _csv_history(path: Path, faults: list[str]) -> Iterator[tuple[int, HistoryItem | None]]:
    """history.csv's answers with their lines: a helpdesk's export, read as ``bot init --from-csv`` reads one
    (:func:`csv_rows`), with ``question`` (or ``text``) and ``answer`` columns and, optionally, ``intent``; other
    columns (the agent, the date) are not read, and an empty intent is none. A row whose answer is empty is a ticket
    exported unanswered (:func:`no_answer`), as ``bot init --from-csv`` reads one: None, for :func:`load_history` to
    leave out (an export holds many, and refusing them stopped the bot until each row was deleted by hand). What is
    wrong with another row is added to ``faults``; a file that is no such export raises."""
    def fail(message: str) -> NoReturn:
        raise ProjectError(message)

    for n, row in csv_rows(path, fail, needed="answer"):
        line = {"question": row.get("text", ""), "answer": row.get("answer", "")}
        if row.get("intent", "").strip():
            line["intent"] = row["intent"]
        try:
            item = history_item(line)
        except (ValueError, TypeError) as exc:
            faults.append(f"{path}:{n}: {exc}")
            continue
        if item is not None:
            item.exported = True
        yield n, item


HISTORY_FILES = {"history.jsonl": _jsonl_history, "history.csv": _csv_history}  # both are read, where they are


class History(NamedTuple):
    """What :func:`load_history` read of the history files, and the ``file:line`` of what it left out."""

    items: list[HistoryItem]
    # a question longer than a customer's message may be (a ticket's whole thread), none a customer can ask
    long_questions: list[str]
    # a question and answer read before, "history.csv:2 (history.jsonl:1)": a ticket export saved as history.csv
    # after bot init --from-csv wrote its answers to history.jsonl, or a ticket exported twice
    repeated_answers: list[str]
    # history.jsonl's and history.csv's lines of tickets exported unanswered ("history.csv:4"): no answer to give
    unanswered_tickets: list[str]
    # questions kept with more than one answer (:func:`answered_otherwise`): a customer asking one gets either
    answered_otherwise: list[str]


def load_history(root: Path, intents: set[str], max_chars: int) -> History:
    """Historical question -> agent answer pairs, from the bot folder's history.jsonl and history.csv, and the
    ``file:line`` of those left out: a question is a customer's message, up to ``max_chars``
    (server.max_message_chars), so a longer one (a ticket's whole thread) is none a customer can ask; and a
    question (spacing and case aside) with an answer read before is kept once, under the intent first read, so
    that an answer imported twice is not indexed twice, taking the place of the next closest answer; and the lines
    with no answer, tickets exported unanswered. Those are left out, not refused, so that lowering the limit
    leaves the bot loading and an export needs no filtering by hand; ``bot train`` and ``bot serve`` name them."""
    items, too_long_lines, repeated, unanswered, kept = [], [], [], [], []
    first: dict[tuple[str, str], str] = {}  # (same_example(question), answer) -> the "file:line" that had it first
    mistakes = Mistakes()  # each line at fault, of both files
    for name, read in HISTORY_FILES.items():
        path = root / name
        if not path.exists():
            continue
        unknown: dict[str, list[int]] = {}  # intent -> the lines naming it
        with mistakes.noted():
            for n, item in read(path, mistakes):
                if item is None:
                    unanswered.append(f"{name}:{n}")
                elif item.intent is not None and item.intent not in intents:
                    unknown.setdefault(item.intent, []).append(n)
                elif len(item.question) > max_chars:
                    too_long_lines.append(f"{name}:{n}")
                elif (seen := first.setdefault((same_example(item.question), item.answer.strip()),
                                               f"{name}:{n}")) != f"{name}:{n}":
                    repeated.append(f"{name}:{n} ({seen})")
                else:
                    items.append(item)
                    kept.append((item.question, item.answer, f"{name}:{n}"))
        if unknown:
            mistakes.append(unknown_history_intents(path, unknown, intents))
    mistakes.raise_any()
    return History(items, too_long_lines, repeated, unanswered, answered_otherwise(kept))


def answered_otherwise(answers: Iterable[tuple[str, str, str]]) -> list[str]:
    """Each question of ``answers`` (question, answer, where: "history.csv:4") given more than one answer, spacing and
    case aside, with where each is: "'where is my parcel?' (history.jsonl:2, history.csv:4)". Two agents answered it
    otherwise, or one answer is out of date: both are kept, and a customer asking it gets either, which the shop
    would choose."""
    found: dict[str, tuple[str, list[str], set[str]]] = {}  # same_example(question) -> its first spelling, where, answers
    for question, answer, where in answers:
        _, wheres, given = found.setdefault(same_example(question), (question, [], set()))
        wheres.append(where)
        given.add(answer.strip())
    return [f"{question!r} ({', '.join(wheres)})" for question, wheres, given in found.values() if len(given) > 1]


def unknown_history_intents(path: Path, unknown: dict[str, list[int]], intents: Iterable[str]) -> str:
    """The first line naming an intent nlu.yml lacks, with every other such line: an intent renamed or merged in
    nlu.yml is named on many lines, and they were told one a run."""
    def on(lines: list[int]) -> str:
        return f"on line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}"

    (intent, lines), *others = unknown.items()
    said = f"{path}:{lines[0]}: {unknown_intent(intent, intents)}"
    if len(lines) == 1 and not others:
        return said
    also = f", also {on(lines[1:])}" if len(lines) > 1 else ""
    return (f"{said}{also}{''.join(f'; {other!r} {on(at)}' for other, at in others)}. An intent renamed or merged "
            "into another in nlu.yml takes its new name here too")


def entity_value(patterns: Iterable[re.Pattern[str]], value: str) -> str | None:
    """The part of ``value`` an entity with these ``patterns`` takes, before :meth:`Project.canonical` names it
    (:meth:`Project.payload_entities`): where one of them takes it whole, the part in its ``value`` group ("789" of
    "order 789" for ``order (?P<value>\\d+)``), else all of it; where a ``value`` group alone takes it whole ("789"),
    all of it. None otherwise: anyone can type a payload, and "123. [verify it here](https://…)" is no order number.
    Read in the forms a typed message is (:func:`read_forms`: 订單 456, a word in both Chinese scripts, too), the part
    taken being ``value``'s own."""
    patterns, forms = list(patterns), read_forms(value)
    for match in (m for pattern in patterns for form in forms if (m := pattern.fullmatch(form))):
        if taken := value[slice(*match.span("value" if "value" in match.re.groupindex else 0))]:
            return taken
    groups = filter(None, map(_value_group, patterns))
    return value if value and any(group.fullmatch(form) for group in groups for form in forms) else None


# The full-width forms of ASCII's characters a Chinese input method types (：，＃, ｏｒｄｅｒ) and its ideographic space,
# each as the ASCII character it stands for: one character for one, so that a match's span is the typed text's.
_FULL_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}


def ascii_forms(text: str) -> str:
    """``text`` with its full-width forms of ASCII's characters as ASCII (:data:`_FULL_WIDTH`), as long as it."""
    return text.translate(_FULL_WIDTH)


def read_forms(text: str) -> list[str]:
    """The forms of ``text`` an entity's patterns read, each as long as it, so that a match's span is the typed
    text's: as typed, with its full-width forms as ASCII (:func:`ascii_forms`), and each with its Traditional
    characters as Simplified (:func:`model_text`) where that keeps it as long. A pattern compiled in each whole
    script (:func:`regex_patterns`) took no word typed in both (订單456, as input methods mix them), which the
    Simplified form reads as the Simplified pattern does."""
    def simplified(form: str) -> str:
        converted = model_text(form)
        return converted if len(converted) == len(form) else form
    return list(dict.fromkeys(typed for form in (text, ascii_forms(text)) for typed in (form, simplified(form))))


# Chinese digits as a number read out one by one is written in them (七八九, 幺二三: 幺 is 1 there, 两 2, 〇 0).
_CHINESE_DIGITS = str.maketrans("〇零一二三四五六七八九幺两兩", "00123456789122")


def _ascii_digits(value: str) -> str:
    """``value`` with its digits as ASCII digits, as an action looks a number up. A value wholly of digits, Chinese
    ones among them (订单号是七八九), is a number: 789, or the order was not found; a word with one in it (三亚, 一下)
    is left as it is."""
    if all(c.isdecimal() or ord(c) in _CHINESE_DIGITS for c in value):
        value = value.translate(_CHINESE_DIGITS)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in value)


def _value_group(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """The part of ``pattern`` in its ``value`` group as a pattern of its own, with the pattern's flags; None
    when it has none (or the part does not compile alone, as a backreference to another group would not)."""
    source, opening = pattern.pattern, "(?P<value>"
    start = source.find(opening)
    if start < 0:
        return None
    depth, at, in_class = 1, start + len(opening), False
    while at < len(source):
        char = source[at]
        if char == "\\":
            at += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            at += 2 if source[at + 1:at + 3] == "^]" else 1 if source[at + 1:at + 2] in ("]", "^") else 0
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                try:
                    return re.compile(source[start + len(opening):at], pattern.flags)
                except re.error:
                    return None
        at += 1
    return None


def model_folder(root: Path, base: str) -> str:
    """bot.yml's ``model.base`` as the folder it names, read as nlu.yml is, from the bot's folder, ``~`` expanded:
    "tinymodel" beside bot.yml was looked for on the Hugging Face hub when a command ran elsewhere. A path
    (with a "/") may also be the current folder's, as it was read before. Anything else (an alias, a Hugging
    Face model name) as written."""
    path = Path(base).expanduser()
    folders = (root / path, path) if "/" in base or base.startswith((".", "~")) else (root / path,)
    return next((str(folder.resolve()) for folder in folders if folder.is_dir()), base)


def kept_slots(language: Literal["en", "zh", "multi"]) -> tuple[str, ...]:
    """The slots a bot of ``language`` keeps itself that a template may fill: a multi bot keeps the conversation's
    language in one, and a bot that speaks Chinese its customer's script."""
    return (*{"en": (), "zh": (SCRIPT,), "multi": (SLOT, SCRIPT)}[language], MID_CONVERSATION)


def entityless_slots(kept: tuple[str, ...]) -> tuple[str, ...]:
    """The slots no entity of nlu.yml may be named: those the bot keeps (``kept``), and those of forms and sessions."""
    return (*kept, REQUESTED_SLOT, SESSION_METADATA, VERIFIED_USER)


# The files of a Rasa project that a shop moving to deskbot may copy into the bot folder, and where deskbot reads
# what each said: left there, each was ignored without a word, its responses, forms or action server unused.
_NOT_READ = ": a Rasa project's file, which deskbot does not read: "
RASA_FILES = {
    "domain.yml": _NOT_READ + "move its responses into responses.yml (an intent's answer under the intent's name, "
                              "`greet:` for `utter_greet:`), its forms into bot.yml's actions.forms and the slots "
                              "custom actions set into actions.slots (deskbot reads the intents and entities from "
                              "nlu.yml; docs/learning.md, Custom actions), then delete it",
    "config.yml": _NOT_READ + "deskbot's classifier is set in bot.yml's model and thresholds (the "
                              "FallbackClassifier's threshold is thresholds.intent; docs/configuration.md), then "
                              "delete it",
    "endpoints.yml": _NOT_READ + "set its action_endpoint's url as bot.yml's actions.endpoint "
                                 "(docs/configuration.md), then delete it",
    "credentials.yml": _NOT_READ + "set its channels' secrets in bot.yml's channels (docs/channels.md), then "
                                   "delete it",
}


def rasa_files(root: Path) -> list[str]:
    """The mistakes of a Rasa project's files left in the bot folder ``root`` (``.yml`` or ``.yaml``, or a domain
    split into a ``domain/`` folder, as Rasa reads one), each saying where deskbot reads what it held."""
    found = []
    for name, where in RASA_FILES.items():
        stem = name.removesuffix(".yml")
        there = [root / f"{stem}.yml", root / f"{stem}.yaml", *([root / stem] if stem == "domain" else [])]
        found.extend(f"{path}{where}" for path in there if path.exists())
    return found


def load_project(root: Path | str) -> Project:
    """The bot folder ``root``, its files read and checked, or a :class:`ProjectError` naming every mistake found in
    them: each file is read to its end (a YAML slip stops its own file alone), and checked against the others as
    far as they read, so that an editor learns of every typo in one run."""
    root = Path(root)
    if not (root / "bot.yml").exists():
        if otherwise := _named_otherwise(root / "bot.yml"):
            raise ProjectError(f"{root / 'bot.yml'}: file not found{otherwise}")
        raise ProjectError(f"{root}: not a bot folder (no bot.yml); create one with `bot init {shlex.quote(str(root))}`")
    mistakes = Mistakes(rasa_files(root))
    config, language_read = read_config(root / "bot.yml", mistakes)
    kept = kept_slots(config.language if config else "en")
    nlu, named_intents = read_nlu(root / "nlu.yml", entityless_slots(kept), mistakes,
                                  (config or BotConfig()).server.max_message_chars)
    intents = named_intents if nlu is not None else None
    language = config.language if config and language_read else None
    languages = () if language is None else LANGUAGES if language == "multi" else (language,)
    # nlu.yml's entities and the slot the bot keeps fill a template, and custom actions the slots they set:
    # requested_slot and those bot.yml lists, or, unlisted, any.
    actions = config.actions if config else ActionsConfig(map={"?": "?"})  # unread: any slot, any action's response
    if actions.slots is not None and not actions.map:
        mistakes.append(str(config_error(root, ("actions", "slots"),
                                         "no custom action runs to set these (actions.map is empty)")))
    set_by_actions = ((REQUESTED_SLOT, *(actions.slots or ()),
                       *(slot for form in actions.forms.values() for slot in form.required_slots)) if actions.map else ())
    patterns = nlu.patterns if nlu else {}
    fillable = None if nlu is None or actions.map and actions.slots is None else {*patterns, *kept, *set_by_actions}
    written = written_responses(root / "responses.yml")
    renamed = renamed_intent(intents, None if written is None else {*written, (config or BotConfig()).handoff.intent,
                                                                    *actions.map})
    responses = read_responses(root / "responses.yml", intents, languages, mistakes, fillable,
                               patterns if nlu else None, nlu.unread if nlu else None, sent_by_actions=bool(actions.map),
                               renamed=renamed)
    history = History([], [], [], [], [])
    if nlu is not None:
        with mistakes.noted():
            history = load_history(root, named_intents, (config or BotConfig()).server.max_message_chars)
    if config is not None and intents is not None:
        mistakes.extend(str(config_error(root, loc, unknown_intent(intent, intents, renamed)))
                        for loc, intent in _intents_named(config) if intent is not None and intent not in intents)
    models_dir = root / "models"  # Project.models_dir
    if models_dir.exists() and not models_dir.is_dir():
        mistakes.append(f"{models_dir}: a file where the bot keeps its model versions; move it away")
    mistakes.raise_any()
    assert config is not None and nlu is not None  # else a mistake was noted
    return Project(root, config, nlu.examples, nlu.patterns, responses, history.items, nlu.unread, nlu.synonyms,
                   nlu.twins, history.long_questions, nlu.roled, nlu.repeated, nlu.long, history.repeated_answers,
                   history.unanswered_tickets, history.answered_otherwise)


def _intents_named(config: BotConfig) -> list[tuple[tuple[Any, ...], str | None]]:
    """The intents bot.yml names, each with where (its key's path)."""
    forms = config.actions.forms.items()
    return [*((("actions", "map", i), i) for i in config.actions.map), (("handoff", "intent"), config.handoff.intent),
            *((("fallback", "titles", i), i) for i in config.fallback.titles),
            *((("fallback", "exclude", k), i) for k, i in enumerate(config.fallback.exclude)),
            *((("actions", "forms", name, "ignored_intents", k), i) for name, form in forms
              for k, i in enumerate(form.ignored_intents)),
            *((("actions", "forms", name, "stop_intents", k), i) for name, form in forms
              for k, i in enumerate(form.stop_intents))]


def lost_intents(labels: Collection[str], version: str, project: Project, serving: Project) -> str | None:
    """Why the bot's files saved as ``project`` must not be served with model ``version``, or None: the model answers
    intents (``labels``, by the names `bot relabel` gave them) that the files ``serving`` now answer with and
    ``project`` no longer has, renamed or deleted in nlu.yml and responses.yml. Served, every customer the model gave
    one of them to got the fallback until the next retrain, and only a warning said so. An intent the serving files
    already lacked (a rollback to an older version) refuses nothing: no customer has its answer to lose."""
    lost = sorted((set(labels) - set(project.intents)) & set(serving.intents))
    if not lost:
        return None
    root = shlex.quote(str(project.root))
    new = sorted(set(project.intents) - set(labels))
    if new:  # renamed, or deleted and another added
        relabel = (f"For an intent renamed, `bot relabel {root} {lost[0]} {new[0]}`" if len(lost) == len(new) == 1 else
                   f"For an intent renamed, `bot relabel {root} OLD NEW` for each")
        relabel += " has the model answer it by its new name"
    else:  # deleted: its questions go to another intent, or are declined
        relabel = (f"For an intent deleted, `bot relabel {root} {lost[0]} INTENT` has the model answer its questions "
                   "with the intent that takes them now (oos, to decline them)")
    return (f"model {version} answers {', '.join(lost)}, which nlu.yml no longer has: the customers it gives "
            f"{'it' if len(lost) == 1 else 'them'} to would get no answer. {relabel}; else run `bot retrain {root}` "
            "first, which learns nlu.yml's intents; then save nlu.yml again")


def other_intents(labels: Collection[str], version: str, project: Project) -> str | None:
    """How the intents model ``version`` was trained on (``labels``) differ from nlu.yml's, or None: nlu.yml
    replaced (bot init --force) or edited since its training, or a rollback to a version older than the edit.
    The model serves all the same, and what it answers follows its own intents. It takes the labels, not the
    model, so that `bot rollback` need not keep a whole model in memory to ask. The way on is `bot retrain`, which
    learns the labels and agent answers too and is gated: `bot train` learns nlu.yml alone, and serves ungated."""
    if set(labels) == set(project.intents):
        return None
    return (f"model {version} was trained on other intents than nlu.yml holds (only in the model: "
            f"{', '.join(sorted(set(labels) - set(project.intents))) or 'none'}; only in nlu.yml: "
            f"{', '.join(sorted(set(project.intents) - set(labels))) or 'none'}): its answers follow the old "
            f"ones until `bot retrain {shlex.quote(str(project.root))}`")
