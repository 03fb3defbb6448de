"""Templated answers: variables, per-channel and per-language variants, and buttons.

A template may use ``{variables}`` filled from the conversation's slots and the entities found in the
message. Among an intent's variants, those written for the turn's language, then for its channel, come
first (a variant with no language or no channel serves them all), and among those the one using the
most variables that are all known wins; variants with the same variables take turns at random. So a
user can write "Refund for order {order_id} started" beside a plain "Refund started" for when no order
number was given, as in Rasa's conditional responses, and a bilingual bot adds a ``language: zh``
variant of each for its Chinese customers.
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bot.language import Language, Visible


log = logging.getLogger("deskbot")
MAX_REPLY_CHARS = 20_000  # a reply to a customer, a template's, an agent's or an action's: longer is runaway output


def slack_blocks(custom: Any) -> list[Any]:
    """The Slack Block Kit ``blocks`` a custom payload (an action's json_message, a response's custom:) holds, as a
    Rasa bot's Slack responses write them; none for any other payload."""
    blocks = custom.get("blocks") if isinstance(custom, dict) else None
    return blocks if isinstance(blocks, list) else []


def slack_attachments(custom: Any) -> list[Any]:
    """The Slack message ``attachments`` a custom payload holds: an action's ``utter_message(attachment={...})``, which
    Rasa's Slack channel posts as a message's attachments, is passed on as ``{"attachments": [attachment]}``."""
    attachments = custom.get("attachments") if isinstance(custom, dict) else None
    return attachments if isinstance(attachments, list) else []


def slack_image(url: str) -> dict[str, Any]:
    """An action's image as Rasa's Slack channel posts it: a custom payload of one Block Kit ``image`` block, its link
    the alt text and the notification's text, so that Slack draws the picture rather than a bare link."""
    return {"text": url, "blocks": [{"type": "image", "image_url": url, "alt_text": url}]}


def passed_on(channel: str, custom: Any) -> bool:
    """Whether ``channel`` passes the custom payload ``custom`` on: the web chat's API passes any on to the customer's
    page as it is, as Rasa's REST channel does, for a shop's own page or app to act on; Slack posts one holding Block
    Kit ``blocks`` (:func:`slack_blocks`) or ``attachments`` (:func:`slack_attachments`), as Rasa's Slack channel
    posts a custom payload."""
    return channel == "web" or (channel == "slack" and bool(slack_blocks(custom) or slack_attachments(custom)))


def warn_unshown(whose: str, parts: list[str], channel: str) -> None:
    """Say what of a message the customer's channel does not show (an action's ``elements``, a ``custom`` payload
    off the web chat), so that a shop whose Slack customers miss it finds out why."""
    log.warning("%s %s was not shown on %s: deskbot's channels show text, buttons and links (and the web chat's API "
                "passes json_message on as custom, and Slack posts one holding Block Kit blocks or attachments)", whose,
                " and ".join(parts), channel)


# A variable in the full-width braces a Chinese input method types (｛order_id｝): text to the formatter, shown as
# written to every customer, and the variant chosen as though it needed no value.
_FULL_WIDTH_VARIABLE = re.compile(r"[｛{]\s*([^\W\d]\w*)\s*[｝}]")
# A variable whose closing brace is left out ("{order_id is on its way"), which Python names only as "expected '}'
# before end of string" or "unexpected '{' in field name"
_UNCLOSED_VARIABLE = re.compile(r"(?<!\{)\{([^\W\d]\w*)(?![\w}])")


def variables_are_names(text: str) -> str:
    """Checked on load: a stray brace would otherwise fail the first customer who triggers the intent, and a
    variable in full-width braces would be shown to them as written."""
    literal = "write {{ and }} for a literal brace"
    if typed := next((found for found in _FULL_WIDTH_VARIABLE.finditer(text) if "｛" in found[0] or "｝" in found[0]),
                     None):
        raise ValueError(f"{typed.group()} is written with a full-width brace, which the customer would see as it is; "
                         f"write {{{typed.group(1)}}}")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as exc:
        if unclosed := _UNCLOSED_VARIABLE.search(text):
            raise ValueError(f"{unclosed.group()} opens a variable and does not close it: write {unclosed.group()}}}, "
                             f"or {{{{ for a literal brace") from None
        raise ValueError(f"{exc}; {literal}") from None
    for name, spec, conversion in fields:
        if not name.isidentifier():
            raise ValueError(f"{{{name}}} is not a variable (a slot or entity name such as {{order_id}}); {literal}")
        if spec or conversion:  # slots are text, so {total:.2f} would fail when rendered
            raise ValueError(f"{{{name}}} takes no format; its value is shown as it is")
    return text


# A Markdown link with a full-width bracket or parenthesis, as a Chinese input method types them ([退货政策]（https://…）,
# ［退货政策］(https://…)): no channel reads it as a link, so every customer would see it as written. Lenticular
# brackets before a link (【退货政策】(https://…)) are a heading's, and stay.
_FULL_WIDTH_LINK = re.compile(r"[\[［]([^\]］\n]+)[\]］]\s*[(（]\s*(https?://[^\s()（）]+)\s*[)）]")


# A link in Slack's mrkdwn (<https://…|the FAQ>), as a Rasa bot's Slack responses write one: Slack's markdown block, where
# deskbot posts an answer, reads standard Markdown alone, as the web chat and WeCom do, so every customer would see it
# as written.
_MRKDWN_LINK = re.compile(r"<((?:https?://|mailto:)[^\s|<>]+)\|([^<>\n]+)>")


def links_are_markdown(text: str) -> str:
    """Checked on load: a link written with a full-width bracket, or in Slack's mrkdwn, would reach customers as
    typed, brackets and all."""
    if link := _MRKDWN_LINK.search(text):
        raise ValueError(f"{link.group()} is a link in Slack's mrkdwn, which the customer would see as it is (deskbot "
                         f"posts answers to Slack in standard Markdown, as the web chat and WeCom read them); write "
                         f"[{link.group(2)}]({link.group(1)})")
    for link in _FULL_WIDTH_LINK.finditer(text):
        if any(sign in link.group() for sign in "［］（）"):
            raise ValueError(f"{link.group()} is written with full-width brackets, which the customer would see as "
                             f"they are; write [{link.group(1)}]({link.group(2)})")
    return text


def variable_names(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


_PAYLOAD_VALUES = re.compile(r"(/[^{]+)(\{.*\})", re.DOTALL)
# A payload's value as the slot keeps it: a text (a number as its digits, which the entity's patterns read as typed),
# or a JSON true, false or null as it is, as Rasa sets a boolean slot (a response's condition `value: true`)
PayloadValue = str | bool | None


def read_payload(text: str) -> tuple[str, dict[str, PayloadValue | list[str]]]:
    """A button's payload as it selects an intent, and the entities it sets: Rasa's ``/inform{"order_id":
    "123"}`` is ``/inform`` with order_id 123, and ``/inform{"newsletter": true}`` sets newsletter to True. A list of
    texts or numbers is each a value of the entity, as a message naming several gives them
    (``/get_refund{"order_id": ["123", "456"]}``, what the fallback's button carries for "refund 123 and 456").
    Any other text is itself, with none."""
    if match := _PAYLOAD_VALUES.fullmatch(text):
        try:
            values = json.loads(match[2])
        except (ValueError, RecursionError):  # not JSON (or nested past Python's depth): typed text that looks like it
            return text, {}
        if isinstance(values, dict) and all(isinstance(v, str | int | float | bool) or v is None or (
                isinstance(v, list) and v and all(isinstance(item, str | int | float) and not isinstance(item, bool)
                                                  for item in v)) for v in values.values()):
            return match[1], {name: [str(item) for item in value] if isinstance(value, list)
                              else value if isinstance(value, bool) or value is None else str(value)
                              for name, value in values.items()}
    return text, {}


def texts_of(values: dict[str, PayloadValue | list[str]]) -> list[str]:
    """A payload's values that are texts, a list's each, which may hold {variables}; a boolean or null holds none."""
    return [text for value in values.values() for text in (value if isinstance(value, list) else [value])
            if isinstance(text, str)]


def payload_values_are_json(payload: str) -> str:
    """Checked on load: a payload such as ``/track_order{order_id: 123}`` (not JSON) would be sent as typed
    text, and the click answered as the classifier reads those words."""
    values = read_payload(payload)[1]
    if not values and payload.startswith("/") and (match := _PAYLOAD_VALUES.fullmatch(payload)):
        if match[2].startswith("{{") and match[2].endswith("}}") and read_payload(single := payload[:-1].replace(
                "{", "", 1))[1]:  # as Rasa's docs write one, its template filling making the doubled braces single
            raise ValueError(f"the values' braces are doubled, as a Rasa domain writes them: deskbot reads a "
                             f"payload's JSON as it is written, so write {single}")
        raise ValueError('the values after the intent must be a JSON object of texts, numbers, true, false, null or '
                         'lists of texts, as in /track_order{"order_id": "123"}')
    for value in texts_of(values):
        variables_are_names(value)
    return payload


# Slack's limits, kept on every channel so that a template shows the same everywhere: Slack cut a longer
# title, and left out the buttons past 25, without a word.
MAX_BUTTON_TITLE_CHARS = 75
MAX_BUTTONS = 25


class Button(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Visible = Field(..., max_length=MAX_BUTTON_TITLE_CHARS, description="may hold {variables}, as the text does")
    payload: Visible = Field(..., description="'/intent' triggers that intent, '/intent{\"entity\": \"value\"}' "
                                              "sets entities too (a value may hold {variables}); other text is "
                                              "sent as typed")

    _title_variables = field_validator("title")(variables_are_names)
    _payload_values = field_validator("payload")(payload_values_are_json)

    def variables(self) -> set[str]:
        return variable_names(self.title).union(*map(variable_names, texts_of(read_payload(self.payload)[1])))

    def filled(self, shown: dict[str, Any], values: dict[str, Any]) -> dict[str, str]:
        """As the customer sees it, and what a click sends: its title filled with the values as ``shown``
        (yes for a boolean slot), its payload's values with the ``values`` themselves, which the entity's
        patterns must take again when it comes back ({{ and }} single braces in both, as in the text)."""
        intent, entities = read_payload(self.payload)
        payload = self.payload
        if entities:
            raw = {k: str(v) for k, v in values.items()}
            payload = intent + json.dumps({k: v.format_map(raw) if isinstance(v, str) else v for k, v in entities.items()},
                                          ensure_ascii=False)
        return {"title": self.title.format_map(shown), "payload": payload}


class SlotCondition(BaseModel):
    """A condition of a Rasa conditional response variation: the variant is shown only while the slot holds the
    value (null: while it is unset)."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["slot"]
    name: str
    value: Any = None


class ResponseVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # None: a custom payload alone, as a Rasa response may be, which only the web chat, and Slack one of blocks, pass on
    text: Visible | None = Field(None, max_length=MAX_REPLY_CHARS)
    channel: Literal["web", "slack", "wecom"] | None = None  # a name no channel has would be a variant never shown
    language: Language | None = None
    buttons: list[Button] = Field(default_factory=list, max_length=MAX_BUTTONS)
    image: Visible | None = Field(None, description="a picture's http(s) link, as a Rasa response's image: on Slack an "
                                                    "image block, as Rasa's Slack channel posts it; elsewhere shown "
                                                    "after the text as its link")
    condition: list[SlotCondition] = Field(default_factory=list, description="as Rasa's conditional response "
                                           "variations: shown only while every slot named holds its value, before "
                                           "the variants without a condition")
    custom: dict[str, Any] | None = Field(None, description="as a Rasa response's custom: passed on as it is written, "
                                          "with the text, to the web chat's page (custom in /api/chat's reply, the "
                                          "widget's deskbot:custom event); on Slack, one holding Block Kit "
                                          "blocks is posted, the text its fallback; not shown on WeCom")

    @field_validator("text", mode="before")
    @classmethod
    def _text_written(cls, text: Any) -> Any:
        """Checked on load: an empty ``text:`` is a slip, refused as any empty text is; a custom payload alone leaves
        the key out."""
        if text is None:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return text

    _text_variables = field_validator("text")(variables_are_names)
    _text_links = field_validator("text")(links_are_markdown)

    @model_validator(mode="after")
    def _says_something(self) -> ResponseVariant:
        """Checked on load: a variant with neither a text nor a custom payload would answer with silence."""
        if self.text is None and self.custom is None:
            raise ValueError("a variant needs its text, or a custom payload for the web chat (custom:)")
        return self

    @field_validator("image")
    @classmethod
    def _image_is_a_link(cls, image: str | None) -> str | None:
        """Checked on load: anything but a web link would be shown to the customer as it is written."""
        if image is not None and not re.fullmatch(r"https?://\S+", image):
            raise ValueError("an image is its http:// or https:// link")
        return image

    @field_validator("custom")
    @classmethod
    def _custom_is_json(cls, custom: dict[str, Any] | None) -> dict[str, Any] | None:
        """Checked on load: a payload JSON cannot carry (a YAML date, say) would fail the web chat's reply."""
        try:
            json.dumps(custom, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"custom must be what JSON can carry: {exc}") from None
        return custom

    def variables(self) -> set[str]:
        """The variables of its text and of its buttons: the variant is shown only when all are known."""
        return variable_names(self.text or "").union(*(b.variables() for b in self.buttons))

    def as_is(self) -> str | None:
        """Its text as a customer reads it ({{ and }} single braces) if it reads the same on every channel and
        in every conversation (no variables, no channel of its own, no buttons, no image, no condition, no custom
        payload), as retrieval sends answers."""
        return None if self.variables() or self.channel or self.buttons or self.image or self.condition or self.custom \
            else (self.text or "").format_map({})

    def shows_on(self, channel: str) -> bool:
        """Whether it says anything on ``channel``: a custom payload alone says nothing where it is not passed on
        (:func:`passed_on`), whose customers get another variant, or else the intent's history answer or the fallback."""
        return self.text is not None or passed_on(channel, self.custom)

    def fits(self, values: dict[str, Any]) -> bool:
        """Whether the conversation's ``values`` meet its conditions (one without any always does)."""
        return all(values.get(c.name) == c.value for c in self.condition)


TEMPLATE_ANSWER = "template:"  # the id prefix of a template's text in the answer index


@dataclass
class Rendered:
    text: str
    buttons: list[dict[str, str]]
    quotes: bool = False  # filled with the conversation's values, which may be the customer's own words
    custom: list[Any] = field(default_factory=list)  # the custom payloads the channel passes on (passed_on)


class Responses:
    def __init__(self, templates: dict[str, list[ResponseVariant]],
                 named: dict[str, list[ResponseVariant]] | None = None) -> None:
        self.templates = templates
        # Responses that answer no intent (a Rasa domain's utter_ask_email), which only a custom action sends:
        # kept apart, so that no intent, and no answer of the index, is ever one of them.
        self.named = named or {}
        # What the answer index may send of these templates: one trained before responses.yml changed holds
        # texts the shop has since replaced (an old price), which must not reach a customer.
        self.sent_as_is = {text for variants in templates.values() for v in variants if (text := v.as_is()) is not None}

    def __contains__(self, intent: str) -> bool:
        return intent in self.templates

    def fills_in(self, intent: str, names: set[str]) -> bool:
        """Whether a variant of ``intent``'s template fills in one of the values ``names``: only such an answer says
        something of the value a customer's follow-up names ("那789呢"); any other is the same for every value."""
        return any(variant.variables() & names for variant in self.templates.get(intent, []))

    def render(self, intent: str, channel: str, values: dict[str, Any], language: Language | None = None,
               rng: random.Random | None = None) -> Rendered | None:
        """The best variant for this language and channel with every variable filled, or None if there is none."""
        return _best(self.templates.get(intent, []), channel, values, language, rng)

    def utter(self, response: str, channel: str, values: dict[str, Any], language: Language | None = None) -> Rendered | None:
        """The response an action names, as :meth:`render` fills it: one of its own (``utter_ask_email``), or else
        the template of the intent it is named after (``utter_<intent>``)."""
        variants = self.named.get(response) or self.templates.get(response.removeprefix("utter_"), [])
        return _best(variants, channel, values, language)


def _best(variants: list[ResponseVariant], channel: str, values: dict[str, Any], language: Language | None,
          rng: random.Random | None = None) -> Rendered | None:
    """Of ``variants``, the best for this language and channel with every variable filled, or None if there is none."""
    candidates = [v for v in variants if v.channel in (None, channel) and v.language in (None, language)
                  and v.fits(values) and v.shows_on(channel)]
    # The language's own variants first, then the channel's, then those whose conditions hold, as Rasa prefers them,
    # then the most specific (most variables) that can be filled.
    candidates.sort(key=lambda v: (v.language is None, v.channel is None, not v.condition, -len(v.variables())))
    known = {k for k, v in values.items() if v not in (None, "") and v != [] and v != {}}
    for variant in candidates:
        if variant.variables() <= known:
            same = [c for c in candidates if (c.language, c.channel, bool(c.condition)) ==
                    (variant.language, variant.channel, bool(variant.condition)) and c.variables() == variant.variables()]
            chosen = (rng or random).choice(same)
            known_values = {k: _shown(values[k], language) for k in chosen.variables()}
            text = (chosen.text or "").format_map(known_values)
            passed = bool(chosen.custom) and passed_on(channel, chosen.custom)
            if chosen.custom and not passed:
                warn_unshown("a response's", ["custom"], channel)
            drawn = [slack_image(chosen.image)] if chosen.image and channel == "slack" else []
            return Rendered("\n\n".join(part for part in (text, "" if drawn else chosen.image) if part),
                            [b.filled(known_values, values) for b in chosen.buttons],
                            quotes=bool(known_values), custom=([chosen.custom] if passed else []) + drawn)
    return None


def _shown(value: Any, language: Language | None) -> Any:
    """A slot's value as a customer reads it: a list slot (Rasa's, set by an action) as its items, and a
    boolean one as yes or no, not as Python writes them."""
    if isinstance(value, bool):
        return ("是" if value else "否") if language == "zh" else ("yes" if value else "no")
    if isinstance(value, (list, tuple)):
        return ("、" if language == "zh" else ", ").join(map(str, value))
    return value
