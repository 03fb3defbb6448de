"""Templates pick the variant that fits the channel and the known variables."""

from __future__ import annotations

import random
from datetime import date
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from bot.responses import Responses, ResponseVariant, read_payload, slack_image
from bot.training import answers_for


def responses() -> Responses:
    return Responses({"get_refund": [
        ResponseVariant(text="Refund for order {order_id} started.", buttons=[{"title": "Track", "payload": "/track_refund"}]),
        ResponseVariant(text="Refund started."),
        ResponseVariant(text="*Refund* for {order_id}", channel="slack"),
    ]})


def test_variant_with_all_variables_known_wins() -> None:
    rendered = responses().render("get_refund", "web", {"order_id": "123"})
    assert rendered is not None
    assert rendered.text == "Refund for order 123 started."
    assert rendered.buttons == [{"title": "Track", "payload": "/track_refund"}]


def test_falls_back_to_the_variant_without_variables() -> None:
    rendered = responses().render("get_refund", "web", {"order_id": ""})
    assert rendered is not None and rendered.text == "Refund started." and rendered.buttons == []


def test_a_list_slot_reads_as_its_items_and_an_empty_one_as_unknown() -> None:
    """An action's list slot showed as Python wrote it (['INV-1', 'INV-2']), and an empty one as []."""
    assert responses().render("get_refund", "web", {"order_id": ["A1", "A2"]}).text == "Refund for order A1, A2 started."
    assert responses().render("get_refund", "web", {"order_id": ("A1", "A2")}, "zh").text == "Refund for order A1、A2 started."
    for empty in ([], {}):
        assert responses().render("get_refund", "web", {"order_id": empty}).text == "Refund started."


def test_a_payload_is_filled_with_the_slots_value_and_its_title_as_the_customer_reads_it() -> None:
    """A boolean slot went into a button's payload as 是, which no entity pattern takes back."""
    gift = {"title": "Wrap it: {gift}", "payload": '/gift{"gift": "{gift}", "note": "{{as is}}"}'}
    wrapped = Responses({"gift": [ResponseVariant(text="Wrap?", buttons=[gift])]})
    assert wrapped.render("gift", "web", {"gift": True}, "zh").buttons == [
        {"title": "Wrap it: 是", "payload": '/gift{"gift": "True", "note": "{as is}"}'}]


def test_a_boolean_slot_reads_as_yes_or_no_in_the_turns_language() -> None:
    """An action's SlotSet("gift", True) showed as Python writes it: "Gift wrapped: True"."""
    wrapped = Responses({"gift": [ResponseVariant(text="Gift wrapped: {gift}")]})
    said = [wrapped.render("gift", "web", {"gift": value}, language).text
            for value, language in ((True, "en"), (False, "en"), (True, "zh"))]
    assert said == ["Gift wrapped: yes", "Gift wrapped: no", "Gift wrapped: 是"]


def test_channel_variant_comes_first_on_its_channel() -> None:
    assert responses().render("get_refund", "slack", {"order_id": "9"}).text == "*Refund* for 9"
    assert responses().render("get_refund", "wecom", {"order_id": "9"}).text == "Refund for order 9 started."


def test_unknown_intent_renders_nothing() -> None:
    assert responses().render("greet", "web", {}) is None


def test_equal_variants_are_chosen_at_random() -> None:
    many = Responses({"greet": [ResponseVariant(text="Hi!"), ResponseVariant(text="Hello!")]})
    seen = {many.render("greet", "web", {}, rng=random.Random(seed)).text for seed in range(20)}
    assert seen == {"Hi!", "Hello!"}


def test_a_language_variant_comes_first_in_its_language_and_never_in_another() -> None:
    bilingual = Responses({"get_refund": [
        *responses().templates["get_refund"],
        ResponseVariant(text="订单 {order_id} 的退款已开始。", language="zh"),
        ResponseVariant(text="退款已开始。", language="zh"),
    ]})
    # Chinese wins over the channel's own untagged variant, and a known variable picks the fuller one.
    assert bilingual.render("get_refund", "slack", {"order_id": "9"}, "zh").text == "订单 9 的退款已开始。"
    assert bilingual.render("get_refund", "web", {}, "zh").text == "退款已开始。"
    assert bilingual.render("get_refund", "slack", {"order_id": "9"}, "en").text == "*Refund* for 9"
    assert bilingual.render("get_refund", "web", {}, "en").text == "Refund started."
    chinese_only = Responses({"greet": [ResponseVariant(text="您好！", language="zh")]})
    assert chinese_only.render("greet", "web", {}, "en") is None


@pytest.mark.parametrize(("text", "problem"), [
    ("use the { key", "expected '}' before end of string"),
    ("see {user.name}", "{user.name} is not a variable"),
    ("order {} started", "{} is not a variable"),
    ("total {total:.2f}", "{total} takes no format"),
    # as a Chinese input method types the braces: shown to the customer as written
    ("已为订单 ｛order_id｝ 登记退款", "｛order_id｝ is written with a full-width brace, which the customer would see as it is; "
                              "write {order_id}"),
    # one brace of the two typed full-width, which Python named "Single '}' encountered"
    ("已为订单 ｛order_id} 登记退款", "｛order_id} is written with a full-width brace"),
    ("Order {order_id｝ is on its way", "{order_id｝ is written with a full-width brace"),
    # a closing brace left out, which Python named "expected '}'" or "unexpected '{' in field name"
    ("Order {order_id is on its way", "{order_id opens a variable and does not close it: write {order_id}"),
    ("Order {order_id, for {name}", "{order_id opens a variable and does not close it: write {order_id}"),
    # a link with the brackets a Chinese input method types: no channel reads it as one
    ("详见[退货政策]（https://shop.example/r）", "[退货政策]（https://shop.example/r） is written with full-width brackets, "
                                            "which the customer would see as they are; write [退货政策](https://shop.example/r)"),
    ("详见［退货政策］(https://shop.example/r)", "write [退货政策](https://shop.example/r)"),
    # a Slack variant written in Slack's mrkdwn, as a Rasa bot's are: Slack's markdown block shows it as written
    ("See <https://shop.example/faq|our FAQ>.", "<https://shop.example/faq|our FAQ> is a link in Slack's mrkdwn, which "
                                                 "the customer would see as it is"),
    ("Write to <mailto:help@shop.example|us>.", "write [us](mailto:help@shop.example)"),
])
def test_a_malformed_variable_is_refused_on_load_not_at_the_first_customer(text: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        ResponseVariant(text=text)
    assert problem in str(info.value)


def test_a_link_and_full_width_brackets_around_other_words_load() -> None:
    """Only a link written with full-width brackets is refused: a heading in 【】 before a link, and a remark in
    full-width parentheses, are the shop's own words."""
    text = "详见[退货政策](https://shop.example/r)，【退货政策】（https://shop.example/r），[注意]（请保留小票）"
    assert ResponseVariant(text=text).text == text


def test_doubled_braces_are_literal() -> None:
    rendered = Responses({"faq": [ResponseVariant(text="Send {{\"order\": {order_id}}} to the API.")]}).render(
        "faq", "web", {"order_id": "123"})
    assert rendered is not None and rendered.text == 'Send {"order": 123} to the API.'


@pytest.mark.parametrize("language", ["en", "multi"])
def test_only_variants_that_read_the_same_everywhere_are_retrieval_answers(language: str) -> None:
    """A retrieved answer goes out as it is, on any channel and without buttons."""
    project = SimpleNamespace(history=[], config=SimpleNamespace(language=language), responses=Responses({"greet": [
        ResponseVariant(text="Hello {name}!"),
        ResponseVariant(text="*Hi* on Slack", channel="slack"),
        ResponseVariant(text="Hi! Pick one:", buttons=[{"title": "Hours", "payload": "/opening_hours"}]),
        ResponseVariant(text="你好", language="zh"),
        ResponseVariant(text="Hi, see {{docs}}"),
        ResponseVariant(text="Hi!", image="https://shop.example/wave.png"),
        ResponseVariant(text="Hi again!", condition=[{"type": "slot", "name": "returning", "value": True}]),
        ResponseVariant(text="Hi there!", custom={"carousel": ["hours"]}),
    ]}))
    texts = [a.text for a in answers_for(project)]
    assert texts == (["Hi, see {docs}"] if language == "en" else ["你好", "Hi, see {docs}"])


def test_a_variant_with_a_condition_answers_first_while_its_slots_hold_their_values() -> None:
    """As Rasa's conditional response variations: a variant with 'condition:' was refused as an unknown key."""
    signed_in = [{"type": "slot", "name": "signed_in", "value": True}]
    greet = Responses({"greet": [ResponseVariant(text="Welcome back, {name}!", condition=signed_in),
                                 ResponseVariant(text="Welcome back!", condition=signed_in),
                                 ResponseVariant(text="Hello {name}!"), ResponseVariant(text="Hello!")]})
    said = [greet.render("greet", "web", values).text for values in (
        {"signed_in": True, "name": "Ann"}, {"signed_in": True}, {"signed_in": False, "name": "Ann"}, {})]
    assert said == ["Welcome back, Ann!", "Welcome back!", "Hello Ann!", "Hello!"]


def test_an_image_is_shown_after_the_text_as_its_link() -> None:
    """As a Rasa response's image, and as an action's image is shown: a responses.yml variant with one was refused
    ("image: unknown key"), so a migrating bot's pictures had to be written into its texts."""
    parcel = Responses({"track_order": [ResponseVariant(text="Order {order_id} is on its way.",
                                                        image="https://shop.example/parcel.png")]})
    assert parcel.render("track_order", "web", {"order_id": "7"}).text == ("Order 7 is on its way.\n\n"
                                                                          "https://shop.example/parcel.png")
    # Slack draws it, as Rasa's Slack channel posts a response's image: it got the bare link
    on_slack = parcel.render("track_order", "slack", {"order_id": "7"})
    assert on_slack is not None and on_slack.text == "Order 7 is on its way." and on_slack.custom == [
        slack_image("https://shop.example/parcel.png")]
    with pytest.raises(ValidationError, match="an image is its http:// or https:// link"):
        ResponseVariant(text="Hi", image="parcel.png")


def test_a_custom_payload_is_passed_on_with_the_text_on_the_web_chat_alone(caplog: pytest.LogCaptureFixture) -> None:
    """As a Rasa response's custom, and as an action's json_message is: a responses.yml variant with one was refused
    ("custom: unknown key"), so a migrating bot's carousels had to be rewritten as custom actions."""
    carousel = {"type": "carousel", "items": [{"title": "Parcel", "price": 4.95}]}
    parcel = Responses({"track_order": [ResponseVariant.model_validate({"text": "Here it is:", "custom": carousel})]})
    on_web = parcel.render("track_order", "web", {})
    assert (on_web.text, on_web.custom) == ("Here it is:", [carousel])
    assert "custom was not shown" not in caplog.text
    on_slack = parcel.render("track_order", "slack", {})
    assert (on_slack.text, on_slack.custom) == ("Here it is:", [])
    assert "a response's custom was not shown on slack" in caplog.text
    with pytest.raises(ValidationError, match="custom must be what JSON can carry"):
        ResponseVariant(text="Hi", custom={"since": date(2024, 1, 1)})  # as YAML reads an unquoted 2024-01-01


def test_a_custom_payload_alone_answers_the_web_chat_and_another_variant_or_none_the_others() -> None:
    """As a Rasa response may be a custom payload alone: such a variant was refused for its missing text. Slack and
    WeCom, which show no custom payload, get a variant with a text, or nothing, which the fallback answers."""
    carousel = {"type": "carousel", "items": ["mug", "tee"]}
    alone = ResponseVariant.model_validate({"custom": carousel})
    shop = Responses({"bestsellers": [alone, ResponseVariant(text="Our bestsellers: mug, tee", channel="slack")],
                      "new_in": [alone]})
    on_web = shop.render("bestsellers", "web", {})
    assert (on_web.text, on_web.buttons, on_web.custom) == ("", [], [carousel])
    assert shop.render("bestsellers", "slack", {}).text == "Our bestsellers: mug, tee"
    assert shop.render("new_in", "web", {}).custom == [carousel]
    assert shop.render("new_in", "slack", {}) is None and shop.render("new_in", "wecom", {}) is None
    assert alone.as_is() is None  # no retrieval answer of its own: it says nothing on Slack
    with pytest.raises(ValidationError, match="a variant needs its text, or a custom payload"):
        ResponseVariant.model_validate({"buttons": [{"title": "Mug", "payload": "/buy"}]})


def test_a_custom_payload_of_block_kit_blocks_is_passed_on_to_slack_too(caplog: pytest.LogCaptureFixture) -> None:
    """A Rasa bot's Slack responses are custom payloads of Block Kit blocks, with a text or alone: Slack got the text
    without them, and for one alone another variant, or the fallback. WeCom still gets neither."""
    blocks = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Mug* 9.95"}}]}
    shop = Responses({"bestsellers": [ResponseVariant.model_validate({"text": "Our bestseller: the mug", "custom": blocks})],
                      "new_in": [ResponseVariant.model_validate({"custom": blocks})]})
    on_slack = shop.render("bestsellers", "slack", {})
    assert (on_slack.text, on_slack.custom) == ("Our bestseller: the mug", [blocks])
    assert shop.render("new_in", "slack", {}).custom == [blocks]
    assert "custom was not shown" not in caplog.text
    assert shop.render("bestsellers", "wecom", {}).custom == [] and shop.render("new_in", "wecom", {}) is None


def test_a_historical_answer_about_one_customers_order_is_no_retrieval_answer() -> None:
    """history.jsonl, exported from a helpdesk, holds answers such as "Order 12345678 has shipped", which the
    next customer asking about their order was given."""
    from bot.project import HistoryItem

    history = [HistoryItem("where is order 12345678?", "Order 12345678 has shipped.", None),
               HistoryItem("where is my order?", "Your tracking number is 1234 5678 9012.", None),
               HistoryItem("how long does shipping take?", "Orders ship within 2 days.", None)]
    project = SimpleNamespace(history=history, config=SimpleNamespace(language="en"), responses=Responses({}))
    assert [(a.id, a.text) for a in answers_for(project)] == [("history:2", "Orders ship within 2 days.")]


def test_a_channel_no_deskbot_channel_has_is_refused() -> None:
    """Rasa calls its web chat socketio; here that variant would never be shown."""
    with pytest.raises(ValidationError) as info:
        ResponseVariant(text="Hi!", channel="socketio")
    assert "Input should be 'web', 'slack' or 'wecom'" in str(info.value)


@pytest.mark.parametrize("variant", [
    {"text": "Pick one", "buttons": [{"title": " ", "payload": "/greet"}]},  # a nameless button: Slack refuses the message
    {"text": "Pick one", "buttons": [{"title": "Hi", "payload": ""}]},  # a click that sends nothing: 400 from /api/chat
    {"text": "x" * 20_001},  # past what any reply may be; a 72,000-character template was served whole
    # past Slack's limits, which cut them there without a word
    {"text": "Pick one", "buttons": [{"title": f"Size {n}", "payload": "/greet"} for n in range(26)]},
    {"text": "Pick one", "buttons": [{"title": "x" * 76, "payload": "/greet"}]},
])
def test_a_variant_no_channel_can_send_is_refused(variant: dict) -> None:
    with pytest.raises(ValidationError):
        ResponseVariant.model_validate(variant)


def test_button_titles_are_filled_like_the_text() -> None:
    """A variant is shown only when its titles' variables are known too; doubled braces are literal there as well."""
    refund = {"title": "Refund order {order_id} {{now}}", "payload": "/get_refund"}
    templates = Responses({"greet": [ResponseVariant(text="Hi!", buttons=[refund]), ResponseVariant(text="Hi.")]})
    assert templates.render("greet", "web", {"order_id": "4567"}).buttons == [
        {"title": "Refund order 4567 {now}", "payload": "/get_refund"}]
    assert templates.render("greet", "web", {}).text == "Hi."
    with pytest.raises(ValidationError, match="buttons.0.title"):
        ResponseVariant(text="Hi!", buttons=[{"title": "Refund {", "payload": "/get_refund"}])


def test_a_payload_nested_past_pythons_depth_is_typed_text() -> None:
    """'/greet{"a": [[[…]]]}' 2 KB long answered 500 with a traceback, each time it was typed."""
    nested = '/greet{"a": ' + "[" * 1000 + "]" * 1000 + "}"
    assert read_payload(nested) == (nested, {})
    assert read_payload('/greet{"name": "Ann"}') == ("/greet", {"name": "Ann"})
