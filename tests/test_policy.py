"""The reply policy, as a pure function of the analysis and the conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.nlu import Analysis
from bot.evaluation import evaluate_replies, reply_outcome
from bot.policy import Decision, decide
from bot.project import HANDOFF_PAYLOAD, BotConfig, load_project
from bot.training import DEFAULT_INTENT_THRESHOLD, calibrate_threshold
from bot.responses import Responses, ResponseVariant
from finetune.classifier import Prediction
from retrieval.index import Hit
from tests.conftest import REPO

CONFIG = BotConfig.model_validate({
    "thresholds": {"intent": "auto", "retrieval": 0.6, "fallbacks_before_handoff": 2},
    "handoff": {"intent": "contact_human_agent"},
    "actions": {"map": {"track_order": "action_order_status"}},
})
RESPONSES = Responses({"get_refund": [ResponseVariant(text="Refund for {order_id}."), ResponseVariant(text="Refund.")]})


def analysis(intent: str, confidence: float, hits: list[Hit] | None = None, threshold: float = 0.5) -> Analysis:
    ranking = [(intent, confidence), ("cancel_order", (1 - confidence) / 2), ("get_invoice", (1 - confidence) / 4)]
    return Analysis(Prediction(intent, confidence, ranking), hits or [], threshold, "v0001")


def hit(score: float, intent: str | None = "get_refund", text: str = "From history.") -> Hit:
    return Hit(id="history:1", text=text, score=score, question="q", intent=intent)


def test_confident_intent_gets_its_template_with_variables() -> None:
    decision = decide(analysis("get_refund", 0.9), CONFIG, RESPONSES, {"order_id": "123"}, "web", 0)
    assert (decision.kind, decision.text) == ("template", "Refund for 123.")


def test_calibrated_threshold_comes_from_the_model() -> None:
    assert decide(analysis("get_refund", 0.6, threshold=0.5), CONFIG, RESPONSES, {}, "web", 0).kind == "template"
    assert decide(analysis("get_refund", 0.6, threshold=0.7), CONFIG, RESPONSES, {}, "web", 0).kind == "fallback"


def test_fixed_threshold_in_bot_yml_overrides_calibration() -> None:
    fixed = CONFIG.model_copy(update={"thresholds": CONFIG.thresholds.model_copy(update={"intent": 0.95})})
    assert decide(analysis("get_refund", 0.9, threshold=0.1), fixed, RESPONSES, {}, "web", 0).kind == "fallback"


def test_mapped_intent_runs_its_action() -> None:
    decision = decide(analysis("track_order", 0.9), CONFIG, RESPONSES, {}, "web", 0)
    assert (decision.kind, decision.action) == ("action", "action_order_status")


def test_handoff_intent_hands_off() -> None:
    assert decide(analysis("contact_human_agent", 0.9), CONFIG, RESPONSES, {}, "web", 0).kind == "handoff"


def test_the_handoff_intents_template_is_what_a_handoff_says() -> None:
    """A shop that edited it in responses.yml saw no change: handoff.message was said instead."""
    back = {"title": "Back to the bot", "payload": "/resume"}
    ours = Responses({"contact_human_agent": [ResponseVariant(text="A person from Demo Shop answers within 2 minutes.",
                                                              buttons=[back]),
                                              ResponseVariant(text="两分钟内有人回复您。", language="zh", buttons=[back])]})
    for language, said in (("en", "A person from Demo Shop answers within 2 minutes."), ("zh", "两分钟内有人回复您。")):
        asked = decide(analysis("contact_human_agent", 0.9), CONFIG, ours, {}, "web", 0, language)
        missed = decide(analysis("get_refund", 0.2), CONFIG, ours, {}, "web", 1, language)
        assert (asked.kind, asked.text) == (missed.kind, missed.text) == ("handoff", said)
        assert asked.buttons == missed.buttons == [back]  # its buttons too
    default = decide(analysis("contact_human_agent", 0.9), CONFIG, RESPONSES, {}, "web", 0)
    assert default.text == "I'm connecting you with a human agent. Please hold on."


def test_the_handoff_template_is_filled_from_the_conversation() -> None:
    """It was rendered with no values: "A person will look at order {order_id}" was never said, and a template
    with only such variants gave way to deskbot's default text."""
    ours = Responses({"contact_human_agent": [ResponseVariant(text="A person will look at order {order_id}."),
                                              ResponseVariant(text="A person will be with you.")]})
    for misses, analysed in ((0, analysis("contact_human_agent", 0.9)), (1, analysis("get_refund", 0.2))):
        said = decide(analysed, CONFIG, ours, {"order_id": "123"}, "web", misses)
        assert (said.kind, said.text, said.quotes) == ("handoff", "A person will look at order 123.", True)
        assert decide(analysed, CONFIG, ours, {}, "web", misses).text == "A person will be with you."


def test_an_unsure_request_for_a_person_is_never_answered_with_the_handoff_message() -> None:
    """"I'm connecting you with an agent" from the index, without handing off, promises a person who never comes."""
    connecting = hit(0.9, "contact_human_agent", "I'm connecting you with a human agent.")
    for hits in ([connecting], [connecting, hit(0.8, None, "An agent's answer.")], [hit(0.8, None, "An agent's answer.")]):
        unsure = decide(analysis("contact_human_agent", 0.4, hits), CONFIG, RESPONSES, {}, "web", 0)
        assert unsure.kind == "fallback" and unsure.buttons[-1]["payload"] == HANDOFF_PAYLOAD
    # leaning elsewhere, with the handoff answer closest: still two guesses, not the next answer down the list
    leaning = decide(analysis("cancel_order", 0.3, [connecting, hit(0.8, "cancel_order", "How to cancel.")]), CONFIG,
                     RESPONSES, {}, "web", 0)
    assert leaning.kind == "fallback" and leaning.buttons[-1]["payload"] == HANDOFF_PAYLOAD


def test_unsure_intent_uses_a_close_historical_answer() -> None:
    decision = decide(analysis("get_refund", 0.2, [hit(0.8)]), CONFIG, RESPONSES, {}, "web", 0)
    assert (decision.kind, decision.text, decision.retrieval_score) == ("retrieval", "From history.", 0.8)


def test_an_unsure_intent_and_a_historical_answer_of_another_intent_fall_back() -> None:
    """Two guesses that disagree are no answer; an answer without an intent has nothing to disagree with."""
    other = decide(analysis("get_refund", 0.2, [hit(0.9, "cancel_order", "Cancel answer.")]), CONFIG, RESPONSES, {},
                   "web", 0)
    assert (other.kind, [b["payload"] for b in other.buttons][0]) == ("fallback", "/get_refund")
    later = [hit(0.9, "cancel_order", "Cancel answer."), hit(0.8, text="Refund answer.")]
    assert decide(analysis("get_refund", 0.2, later), CONFIG, RESPONSES, {}, "web", 0).kind == "fallback"
    untagged = decide(analysis("get_refund", 0.2, [hit(0.9, None, "Agent answer.")]), CONFIG, RESPONSES, {}, "web", 0)
    # about no intent: the classifier's unsure lean ("oos", often) said nothing of it, in the API and the figures
    assert (untagged.kind, untagged.text, untagged.intent) == ("retrieval", "Agent answer.", None)


def test_confident_intent_without_template_prefers_its_own_history() -> None:
    hits = [hit(0.9, "delivery_options", "Other."), hit(0.7, "get_invoice", "Invoice answer.")]
    decision = decide(analysis("get_invoice", 0.9, hits), CONFIG, RESPONSES, {}, "web", 0)
    assert (decision.kind, decision.text) == ("retrieval", "Invoice answer.")
    # Never another intent's answer: with none of its own it falls back; an answer of no intent may serve.
    assert decide(analysis("get_invoice", 0.9, hits[:1]), CONFIG, RESPONSES, {}, "web", 0).kind == "fallback"
    general = decide(analysis("get_invoice", 0.9, [hits[0], hit(0.8, None, "General.")]), CONFIG, RESPONSES, {}, "web", 0)
    assert (general.kind, general.text, general.intent) == ("retrieval", "General.", "get_invoice")  # sure of it


def test_nothing_close_enough_falls_back_with_buttons() -> None:
    decision = decide(analysis("get_refund", 0.2, [hit(0.3)]), CONFIG, RESPONSES, {}, "web", 0)
    assert decision.kind == "fallback"
    assert [b["payload"] for b in decision.buttons] == ["/get_refund", "/cancel_order", "/get_invoice", HANDOFF_PAYLOAD]


def test_a_confident_intent_that_could_not_answer_is_not_offered_as_its_own_button() -> None:
    """Its template needs an order number the conversation lacks: its button would only come back here."""
    needs_order = Responses({"get_refund": [ResponseVariant(text="Refund for {order_id}.")]})
    decision = decide(analysis("get_refund", 0.9), CONFIG, needs_order, {}, "web", 0)
    assert decision.kind == "fallback"
    assert [b["payload"] for b in decision.buttons] == ["/cancel_order", "/get_invoice", HANDOFF_PAYLOAD]


def test_excluded_intents_and_the_handoff_intent_are_never_offered_as_buttons() -> None:
    small_talk = CONFIG.model_copy(update={"fallback": CONFIG.fallback.model_copy(update={"exclude": ["greet"]})})
    ranking = [("greet", 0.3), ("contact_human_agent", 0.25), ("get_refund", 0.2), ("cancel_order", 0.1),
               ("get_invoice", 0.05)]
    unsure = Analysis(Prediction("greet", 0.3, ranking), [], 0.5, "v0001")
    decision = decide(unsure, small_talk, RESPONSES, {}, "web", 0)
    assert [b["payload"] for b in decision.buttons] == ["/get_refund", "/cancel_order", "/get_invoice", HANDOFF_PAYLOAD]
    assert [b["payload"] for b in decide(unsure, CONFIG, RESPONSES, {}, "web", 0).buttons][:3] == [
        "/greet", "/get_refund", "/cancel_order"]


def test_a_fallback_with_no_intent_to_offer_asks_to_rephrase() -> None:
    """Only excluded and hidden intents ranked: "Did you mean one of these?" stood over the person button alone."""
    small_talk = CONFIG.model_copy(update={"fallback": CONFIG.fallback.model_copy(update={"exclude": ["greet"]})})
    ranking = [("greet", 0.3), ("contact_human_agent", 0.25), ("oos", 0.2)]
    decision = decide(Analysis(Prediction("greet", 0.3, ranking), [], 0.5, "v0001"), small_talk, RESPONSES, {}, "web", 0)
    assert decision.kind == "fallback" and decision.buttons == [{"title": "Talk to a person", "payload": HANDOFF_PAYLOAD}]
    assert decision.text == "Sorry, I'm not sure I understood. Could you put it another way?"
    assert decide(analysis("get_refund", 0.2), CONFIG, RESPONSES, {}, "web", 0).text == CONFIG.fallback.message["en"]


def test_a_fallback_offers_only_the_intents_nlu_yml_has() -> None:
    """A model served after `bot rollback` ranked an intent since taken out of nlu.yml: its button led to no
    template nor action, and back to the fallback."""
    ranking = [("get_refund", 0.3), ("old_intent", 0.25), ("cancel_order", 0.2), ("get_invoice", 0.1)]
    unsure = Analysis(Prediction("get_refund", 0.3, ranking), [], 0.5, "v0001")
    decision = decide(unsure, CONFIG, RESPONSES, {}, "web", 0, "en", ["get_refund", "cancel_order", "get_invoice"])
    assert [b["payload"] for b in decision.buttons] == ["/get_refund", "/cancel_order", "/get_invoice", HANDOFF_PAYLOAD]


def test_fallback_buttons_spell_out_intent_names() -> None:
    ranking = [("PlayMusic", 0.3), ("card_arrival", 0.2), ("top-up-failed", 0.1)]
    unsure = Analysis(Prediction("PlayMusic", 0.3, ranking), [], 0.5, "v0001")
    decision = decide(unsure, CONFIG, RESPONSES, {}, "web", 0)
    assert [b["title"] for b in decision.buttons][:3] == ["Play music", "Card arrival", "Top up failed"]


def test_repeated_fallbacks_hand_off() -> None:
    assert decide(analysis("get_refund", 0.2), CONFIG, RESPONSES, {}, "web", 1).kind == "handoff"


def test_a_miss_right_after_a_miss_is_not_answered_with_the_same_words() -> None:
    """With fallbacks_before_handoff above 2, a customer got "Sorry, I'm not sure I understood. Did you mean one
    of these?" word for word again, as if the bot were stuck."""
    patient = CONFIG.model_copy(update={"thresholds": CONFIG.thresholds.model_copy(update={"fallbacks_before_handoff": 3})})
    first, second = (decide(analysis("get_refund", 0.2), patient, RESPONSES, {}, "web", n) for n in (0, 1))
    assert first.text == "Sorry, I'm not sure I understood. Did you mean one of these?"
    assert second.kind == "fallback" and second.buttons == first.buttons
    assert second.text == "Sorry, I still didn't catch that. Could you put it another way, or talk to a person?"
    assert decide(analysis("get_refund", 0.2), patient, RESPONSES, {}, "web", 1, "zh").text == \
        "抱歉，我还是没能理解。您可以换个说法，或者转人工客服。"


def test_saying_the_answer_missed_is_a_miss_whatever_the_classifier_read() -> None:
    """The demo's classifier read "不对" and "不是" as "ok", as it reads "no": the customer told the bot it was wrong
    got "好的，如果还有其他问题，随时问我。", and never a person however often they said it."""
    ok = analysis("acknowledge", 0.9)
    first = decide(ok, CONFIG, RESPONSES, {}, "web", 0, "zh", corrects=True)
    assert (first.kind, first.intent, first.text) == ("fallback", None, "抱歉，我不太确定您的意思。能换个说法吗？")
    assert first.buttons == [{"title": "转人工客服", "payload": HANDOFF_PAYLOAD}]
    assert decide(ok, CONFIG, RESPONSES, {}, "web", 1, "zh", corrects=True).kind == "handoff"  # the misses in a row


@pytest.mark.parametrize("language, answer, asked", [
    ("en", "From history.", "Sorry, I'm not sure I understood. Could you put it another way?"),
    ("zh", "已为您登记退款。", "抱歉，我不太确定您的意思。能换个说法吗？")])
def test_emoji_or_punctuation_alone_is_a_miss_that_asks_for_words(language: str, answer: str, asked: str) -> None:
    """"😭😭" or "？？" in a small bot got the closest historical answer at low confidence, an unrelated one that looked
    sure, or "did you mean" the intents the classifier leant to on signs alone. An intent it is sure of still answers."""
    near = analysis("get_refund", 0.3, [hit(0.95, text=answer)])
    first = decide(near, CONFIG, RESPONSES, {}, "web", 0, language, wordless=True)
    assert (first.kind, first.intent, first.text, first.retrieval_score) == ("fallback", None, asked, None)
    assert [button["payload"] for button in first.buttons] == [HANDOFF_PAYLOAD]
    assert decide(near, CONFIG, RESPONSES, {}, "web", 1, language, wordless=True).kind == "handoff"  # misses in a row
    assert decide(near, CONFIG, RESPONSES, {}, "web", 0, language).kind == "retrieval"  # in words, the answer is given
    sure = decide(analysis("get_refund", 0.9), CONFIG, RESPONSES, {}, "web", 0, language, wordless=True)
    assert (sure.kind, sure.text) == ("template", "Refund.")


def test_calibration_cuts_between_mistakes_and_correct_answers() -> None:
    confidences = [0.34, 0.41] + [0.7 + i / 100 for i in range(20)]
    correct = [False, False] + [True] * 20
    assert calibrate_threshold(confidences, correct) == 0.555  # halfway between 0.41 and 0.70


def test_calibration_prefers_the_widest_gap_among_equal_cuts() -> None:
    confidences = [0.2, 0.3, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99]
    correct = [True, False] + [True] * 8
    assert calibrate_threshold(confidences, correct) == 0.45


def test_calibration_weighs_a_wrong_answer_above_a_fallback() -> None:
    """Cutting above the 0.40 mistake also withholds the right 0.30 answer: counted alike the two cancel out and
    the widest gap (below 0.30) wins; a wrong answer costing more than a right one gains puts the cut above it."""
    confidences = [0.30, 0.40, 0.50] + [0.7 + i / 100 for i in range(10)]
    correct = [True, False, True] + [True] * 10
    assert calibrate_threshold(confidences, correct) == 0.45


@pytest.mark.parametrize(("lowest", "cut"), [(0.31327, 0.3132), (0.56, DEFAULT_INTENT_THRESHOLD)])
def test_calibration_that_answers_every_held_out_example_cuts_right_under_the_least_sure(lowest: float, cut: float) -> None:
    """No held-out confidence bounds the gap below the least sure answer: halfway down to 0 (0.157 here) let
    off-topic questions through."""
    confidences = [lowest, 0.8, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
    correct = [True] * 8 + [False, True]  # a confident mistake: withholding it costs more right answers
    assert calibrate_threshold(confidences, correct) == cut


def test_a_cut_between_close_confidences_stays_between_them() -> None:
    """Rounded to four decimals, the cut fell to 0.5, the mistake's own confidence, which the bot answers."""
    confidences = [0.50001, 0.50003] + [0.9 + i / 100 for i in range(9)]
    correct = [False] + [True] * 10
    cut = calibrate_threshold(confidences, correct)
    assert 0.50001 < cut <= 0.50003
    assert calibrate_threshold([0.41] + confidences[2:], correct[:1] + correct[2:]) == 0.655  # readable where it can be


def test_calibration_cuts_only_between_different_confidences() -> None:
    """Between two equal confidences it scored a cut that withheld the wrong ones and answered the right
    ones, and returned that confidence, which answers both."""
    confidences = [0.9] * 5 + [0.5] * 5
    correct = [True] * 5 + [False] * 3 + [True] * 2
    assert calibrate_threshold(confidences, correct) == 0.7  # halfway between 0.5 and 0.9: the 0.5s withheld


def test_the_held_out_figures_rank_a_sure_oos_answer_as_out_of_scope() -> None:
    """They ranked by the top confidence, an `oos` answer's too: the surest out-of-scope lines counted as
    the most in scope, and a model that got every line right had an AUROC of 0."""
    from types import SimpleNamespace

    from bot.project import Example
    from bot.training import holdout_metrics
    from finetune.classifier import Prediction

    held = [Example("where is my order", "track_order"), Example("refund please", "get_refund"),
            Example("what is the weather", "oos"), Example("tell me a joke", "oos")]
    answers = {"where is my order": Prediction("track_order", 0.8, [("track_order", 0.8), ("oos", 0.1)]),
               "refund please": Prediction("get_refund", 0.8, [("get_refund", 0.8), ("oos", 0.1)]),
               "what is the weather": Prediction("oos", 0.95, [("oos", 0.95), ("track_order", 0.03)]),
               "tell me a joke": Prediction("oos", 0.95, [("oos", 0.95), ("get_refund", 0.02)])}
    classifier = SimpleNamespace(labels=["get_refund", "oos", "track_order"],
                                 predict=lambda texts: [answers[t] for t in texts])
    metrics = holdout_metrics(classifier, held, 0.5)  # type: ignore[arg-type]
    assert metrics["accuracy"] == 1.0 and metrics["auroc"] == 1.0


def test_calibration_needs_enough_held_out_examples() -> None:
    assert calibrate_threshold([0.9, 0.1], [True, False]) == DEFAULT_INTENT_THRESHOLD


def test_fallback_speaks_the_bot_language() -> None:
    zh = CONFIG.model_copy(update={"fallback": CONFIG.fallback.model_copy(update={
        "message": "抱歉，我没有完全理解。", "human_button": "转人工", "titles": {"get_refund": "退款"}})})
    decision = decide(analysis("get_refund", 0.2), zh, RESPONSES, {}, "web", 0)
    assert decision.text == "抱歉，我没有完全理解。"
    assert [b["title"] for b in decision.buttons] == ["退款", "Cancel order", "Get invoice", "转人工"]


MULTI = BotConfig.model_validate({
    "language": "multi",
    "thresholds": {"intent": "auto", "retrieval": 0.6, "fallbacks_before_handoff": 2},
    "handoff": {"message": {"en": "Connecting you.", "zh": "正在转接。"}},
    "fallback": {"message": {"en": "Sorry?", "zh": "抱歉？"}, "human_button": {"en": "A person", "zh": "转人工"},
                 "titles": {"get_refund": {"zh": "退款"}}},
})


def test_a_multi_bot_answers_each_turn_in_its_language() -> None:
    bilingual = Responses({"get_refund": [ResponseVariant(text="Refund."), ResponseVariant(text="退款。", language="zh")]})
    assert decide(analysis("get_refund", 0.9), MULTI, bilingual, {}, "web", 0, "zh").text == "退款。"
    assert decide(analysis("get_refund", 0.9), MULTI, bilingual, {}, "web", 0, "en").text == "Refund."
    zh = decide(analysis("get_refund", 0.2), MULTI, RESPONSES, {}, "web", 0, "zh")
    assert (zh.text, [b["title"] for b in zh.buttons]) == ("抱歉？", ["退款", "Cancel order", "Get invoice", "转人工"])
    en = decide(analysis("get_refund", 0.2), MULTI, RESPONSES, {}, "web", 0, "en")
    assert (en.text, [b["title"] for b in en.buttons]) == ("Sorry?", ["Get refund", "Cancel order", "Get invoice", "A person"])
    assert decide(analysis("get_refund", 0.2), MULTI, RESPONSES, {}, "web", 1, "zh").text == "正在转接。"


def test_a_multi_bot_gives_a_historical_answer_only_in_the_turns_language() -> None:
    hits = [hit(0.9, text="Refunds take 5 days."), hit(0.7, text="退款需要5天。"), hit(0.5, text="Too far.")]
    assert decide(analysis("get_refund", 0.2, hits), MULTI, RESPONSES, {}, "web", 0, "zh").text == "退款需要5天。"
    assert decide(analysis("get_refund", 0.2, hits), MULTI, RESPONSES, {}, "web", 0, "en").text == "Refunds take 5 days."
    english_only = [hit(0.9, text="Refunds take 5 days.")]
    assert decide(analysis("get_refund", 0.2, english_only), MULTI, RESPONSES, {}, "web", 0, "zh").kind == "fallback"
    # An answer goes by the language most of it is in: an English one naming a Chinese carrier is English.
    carrier = [hit(0.9, text="Delivery takes 3 to 5 days with SF Express (顺丰速运)."), hit(0.7, text="请在App Store下载。")]
    assert decide(analysis("get_refund", 0.2, carrier), MULTI, RESPONSES, {}, "web", 0, "en").text.startswith("Delivery")
    assert decide(analysis("get_refund", 0.2, carrier), MULTI, RESPONSES, {}, "web", 0, "zh").text == "请在App Store下载。"
    for short in ("We ship with 顺丰速运.", "Ship with 顺丰速运 in 2 days."):  # four characters were four words: Chinese
        assert decide(analysis("get_refund", 0.2, [hit(0.9, text=short)]), MULTI, RESPONSES, {}, "web", 0, "en").text == short
    for names in ("用 Apple Pay 或 Google Pay 付款。", "请在 App Store 或 Google Play 下载", "好的 OK"):  # Chinese around names
        assert decide(analysis("get_refund", 0.2, [hit(0.9, text=names)]), MULTI, RESPONSES, {}, "web", 0, "zh").text == names
    for chinese in ("详见 https://shop.example.com/help/returns", "[退货政策](https://shop.example.com/returns)",
                    "请发邮件到 returns@shop.example.com"):  # a link or an address is in no language
        assert decide(analysis("get_refund", 0.2, [hit(0.9, text=chinese)]), MULTI, RESPONSES, {}, "web", 0, "zh").text == chinese
    # A bot of one language answers in it only: an agent of a Chinese shop answered one customer in English.
    chinese_bot = BotConfig(language="zh")
    assert decide(analysis("get_refund", 0.2, english_only), chinese_bot, RESPONSES, {}, "web", 0, "zh").kind == "fallback"
    assert decide(analysis("get_refund", 0.2, hits), chinese_bot, RESPONSES, {}, "web", 0, "zh").text == "退款需要5天。"
    for kept in ("AirPods Pro 2 支持 MagSafe 充电盒", "400-820-8820", "https://shop.example.com/returns"):  # its own
        assert decide(analysis("get_refund", 0.2, [hit(0.9, text=kept)]), chinese_bot, RESPONSES, {}, "web", 0, "zh").text == kept
    assert decide(analysis("get_refund", 0.2, hits), CONFIG, RESPONSES, {}, "web", 0, "en").text == "Refunds take 5 days."


def test_deskbots_own_texts_come_in_the_bots_language() -> None:
    chinese = decide(analysis("get_refund", 0.2), BotConfig(language="zh"), RESPONSES, {}, "web", 0, "zh")
    assert (chinese.text, chinese.buttons[-1]["title"]) == ("抱歉，我不太确定您的意思。您是想问下面这些吗？", "转人工客服")
    english = decide(analysis("get_refund", 0.2), CONFIG, RESPONSES, {}, "web", 0, "en")
    assert (english.text, english.buttons[-1]["title"]) == ("Sorry, I'm not sure I understood. Did you mean one of these?",
                                                            "Talk to a person")


def oos_analysis(confidence: float, hits: list[Hit] | None = None) -> Analysis:
    ranking = [("oos", confidence), ("get_refund", 0.2), ("cancel_order", 0.1), ("get_invoice", 0.05), ("track_order", 0.01)]
    return Analysis(Prediction("oos", confidence, ranking), hits or [], 0.5, "v0001")


def test_a_confident_oos_gets_its_template_or_the_fallback_never_history() -> None:
    with_template = Responses({"oos": [ResponseVariant(text="I can only help with your orders.")]})
    decision = decide(oos_analysis(0.9, [hit(0.95)]), CONFIG, with_template, {}, "web", 0)
    assert (decision.kind, decision.text) == ("template", "I can only help with your orders.")
    decision = decide(oos_analysis(0.9, [hit(0.95)]), CONFIG, RESPONSES, {}, "web", 0)
    assert decision.kind == "fallback"
    assert [b["payload"] for b in decision.buttons] == ["/get_refund", "/cancel_order", "/get_invoice", HANDOFF_PAYLOAD]
    # An unsure oos is like any unsure intent: a close historical answer may still be given, unless it is about
    # another intent.
    assert decide(oos_analysis(0.3, [hit(0.95, None)]), CONFIG, RESPONSES, {}, "web", 0).kind == "retrieval"
    assert decide(oos_analysis(0.3, [hit(0.95)]), CONFIG, RESPONSES, {}, "web", 0).kind == "fallback"


def test_an_agents_answer_filed_under_oos_beats_declining() -> None:
    """A question the shop answers without an intent for it (store hours): a reviewer labels it oos, the agent's
    answer is learnt, and a retrained model sure of oos must give that answer, not the decline."""
    with_template = Responses({"oos": [ResponseVariant(text="I can only help with your orders.")]})
    hours = hit(0.95, "oos", "We are open until nine on weekends.")
    decision = decide(oos_analysis(0.9, [hours]), CONFIG, with_template, {}, "web", 0)
    assert (decision.kind, decision.text) == ("retrieval", "We are open until nine on weekends.")
    assert decide(oos_analysis(0.9, [hit(0.5, "oos")]), CONFIG, with_template, {}, "web", 0).kind == "template"


def test_reply_outcomes_count_wrong_answers_apart_from_fallbacks() -> None:
    labels = ["cancel_order", "contact_human_agent", "get_refund", "oos"]
    template = Decision("template", "get_refund", 0.9, "Refund.")
    fallback = Decision("fallback", "get_refund", 0.2)
    assert reply_outcome(template, "get_refund", labels, "contact_human_agent") == "right"
    assert reply_outcome(template, "cancel_order", labels, "contact_human_agent") == "wrong"
    assert reply_outcome(fallback, "cancel_order", labels, "contact_human_agent") == "fallback"
    # Out of scope, or an intent the bot does not have: declining is right, answering is wrong.
    assert reply_outcome(fallback, "oos", labels, "contact_human_agent") == "right"
    assert reply_outcome(template, "weather", labels, "contact_human_agent") == "wrong"
    assert reply_outcome(Decision("template", "oos", 0.9, "Not mine."), "oos", labels, None) == "right"
    # A handoff is the handoff intent's answer; after repeated fallbacks it is one more fallback.
    asked = Decision("handoff", "contact_human_agent", 0.9)
    assert reply_outcome(asked, "contact_human_agent", labels, "contact_human_agent") == "right"
    assert reply_outcome(Decision("handoff", "get_refund", 0.2), "get_refund", labels, "contact_human_agent") == "fallback"


def test_an_answer_of_no_intent_to_a_question_no_intent_covers_is_right(tmp_path: Path) -> None:
    """The starter's history answers "do you deliver abroad?" under no intent, as a shop answers what none of its
    intents covers; bot eval counted that answer wrong for a test line of an intent the bot lacks, as it counts an
    answer to an off-topic (oos) line, which the bot should decline."""
    project = load_project(REPO / "bot" / "starter")
    abroad = next(item.answer for item in project.history if item.intent is None)
    unsure = analysis("opening_hours", 0.3, [hit(0.9, None, abroad)])
    rows = [{"text": "do you deliver to Germany?", "intent": "shipping"}, {"text": "tell me a story", "intent": "oos"},
            {"text": "are you open late?", "intent": "opening_hours"}]  # counted as the intent the classifier leaned to
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], [unsure] * 3, project.intents, tmp_path)
    assert figures["by_source"] == {"retrieval": {"right": 2, "wrong": 1}}
    misses = json.loads((tmp_path / "reply_report.json").read_text())["misses"]
    assert [(miss["intent"], miss["reply"]) for miss in misses] == [("oos", abroad)]


def test_bot_eval_answers_emoji_alone_as_bot_serve_does(tmp_path: Path) -> None:
    """A test line of emoji or punctuation alone ("😭😭") that the classifier is unsure of gets bot serve's request
    for words, a fallback: bot eval counted the closest historical answer, which bot serve never gives it."""
    project = load_project(REPO / "bot" / "starter")
    abroad = next(item.answer for item in project.history if item.intent is None)
    unsure = analysis("opening_hours", 0.3, [hit(0.95, None, abroad)])
    rows = [{"text": "😭😭", "intent": "oos"}, {"text": "？？", "intent": "opening_hours"}]
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], [unsure] * 2, project.intents, tmp_path)
    assert figures["by_source"] == {"fallback": {"right": 1, "fallback": 1}}


def test_bot_eval_answers_thanks_and_a_correction_as_bot_serve_does_a_first_message(tmp_path: Path) -> None:
    """bot serve answers "thanks" or "谢谢" that no intent is sure of (or that is sure it is off-topic) with
    fallback.acknowledged, no miss, and "不对" with a request to put it another way, whatever the classifier read in
    it; bot eval counted the demo's test lines of thanks as fallbacks, or as the oos template's wrong answer, and
    "不对" as the template of the intent the classifier read in it."""
    project = load_project(REPO / "bot" / "demo")
    leaning = analysis("greet", 0.3)
    rows = [{"text": "thanks", "intent": "thank_you"}, {"text": "谢谢", "intent": "thank_you"},
            {"text": "了解", "intent": "acknowledge"}, {"text": "cheers", "intent": "thank_you"},
            {"text": "不对", "intent": "oos"}]
    analyses = [leaning, leaning, leaning, analysis("oos", 0.9), analysis("acknowledge", 0.9)]
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], analyses, project.intents, tmp_path)
    assert figures["by_source"] == {"template": {"right": 4}, "fallback": {"right": 1}}
    assert json.loads((tmp_path / "reply_report.json").read_text())["misses"] == []


def test_bot_eval_fills_templates_with_the_values_bot_serve_gives_a_first_message(tmp_path: Path) -> None:
    """bot serve reads the order number in a short follow-up ("那789呢") and tells a conversation's first message
    from a later one (mid_conversation false); bot eval filled templates with the entities nlu.yml's patterns find in
    the whole message alone, and without mid_conversation: a template that needs the number counted as a fallback, and
    a variant for a first message was never the one scored."""
    project = load_project(REPO / "bot" / "demo")
    first = [{"type": "slot", "name": "mid_conversation", "value": False}]
    project.responses = Responses({"get_refund": [ResponseVariant(text="退款 {order_id}。", language="zh")],
                                   "greet": [ResponseVariant(text="Welcome to Demo Shop!", condition=first),
                                             ResponseVariant(text="Hi again!")]})
    rows = [{"text": "那789呢", "intent": "get_refund"}, {"text": "hello there", "intent": "oos"}]
    analyses = [analysis("get_refund", 0.9), analysis("greet", 0.9)]
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], analyses, project.intents, tmp_path)
    assert figures["by_source"] == {"template": {"right": 1, "wrong": 1}}
    misses = json.loads((tmp_path / "reply_report.json").read_text())["misses"]
    assert [miss["reply"] for miss in misses] == ["Welcome to Demo Shop!"]


def test_bot_eval_fills_templates_with_the_slots_bot_serve_keeps_from_a_first_message(tmp_path: Path) -> None:
    """A multi bot keeps the conversation's language, and the Chinese script its customer writes, in slots its
    templates may use; bot eval gave them neither: a template that needs one counted as a fallback."""
    project = load_project(REPO / "bot" / "demo")
    project.responses = Responses({"get_refund": [ResponseVariant(text="Refund ({language}).")],
                                   "cancel_order": [ResponseVariant(text="取消（{chinese_script}）。", language="zh")]})
    rows = [{"text": "refund please", "intent": "get_refund"}, {"text": "我要取消訂單", "intent": "cancel_order"}]
    analyses = [analysis("get_refund", 0.9), analysis("cancel_order", 0.9)]
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], analyses, project.intents, tmp_path)
    assert figures["by_source"] == {"template": {"right": 2}}


def test_bot_eval_reads_what_a_test_line_says_of_its_conversation_as_bot_serve_reads_a_first_message(
        tmp_path: Path) -> None:
    """bot serve fills a first message's template, and checks its conditions, with the page's session metadata, the
    customer the shop's server vouched for, the slots the actions' validation set and the page's language; bot eval
    gave a test line none of them, and scored fallbacks where bot serve answers. A line may carry each."""
    project = load_project(REPO / "bot" / "demo")
    pro = [{"type": "slot", "name": "session_started_metadata", "value": {"plan": "pro"}}]
    project.responses = Responses({"get_refund": [ResponseVariant(text="Refund for {verified_user}.")],
                                   "cancel_order": [ResponseVariant(text="Pro cancellation.", condition=pro)],
                                   "check_invoice": [ResponseVariant(text="Your {tier} invoice.")],
                                   "get_invoice": [ResponseVariant(text="发票。", language="zh")]})
    rows = [{"text": "refund please", "intent": "get_refund", "verified_user": "ann"},
            {"text": "cancel my order", "intent": "cancel_order", "metadata": {"plan": "pro"}},
            {"text": "my invoice", "intent": "check_invoice", "slots": {"tier": "gold"}},
            {"text": "20240117", "intent": "get_invoice", "language": "zh"}]  # no letter: the page's language
    analyses = [analysis(row["intent"], 0.9) for row in rows]
    texts = [row["text"] for row in rows]

    figures = evaluate_replies(project, rows, texts, analyses, project.intents, tmp_path)

    assert figures["by_source"] == {"template": {"right": 4}}
    bare = [{"text": row["text"], "intent": row["intent"]} for row in rows]
    assert evaluate_replies(project, bare, texts, analyses, project.intents, tmp_path)["fallback"] == 4


@pytest.mark.parametrize(("key", "value", "said"), [("language", "fr", "the language must be one of en, zh"),
                                                     ("script", "hant", "the script must be one of traditional"),
                                                     ("metadata", "pro", "the metadata must be an object"),
                                                     ("verified_user", 7, "the verified_user must be text")])
def test_bot_eval_refuses_a_test_lines_conversation_keys_bot_serve_would_not_read(
        tmp_path: Path, key: str, value: object, said: str) -> None:
    """Scored as a message without it, a mistyped one gave figures taken for those of a message with it."""
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "refund please", "intent": "get_refund"}) + "\n"
                    + json.dumps({"text": "refund please", "intent": "get_refund", key: value}) + "\n")
    result = CliRunner().invoke(cli, ["eval", str(REPO / "bot" / "demo"), "--test", str(test)])
    assert result.exit_code != 0 and f"test.jsonl:2: {said}" in result.output, result.output


def test_bot_eval_hands_off_a_typed_request_for_a_person_as_bot_serve_does(tmp_path: Path) -> None:
    """bot serve hands "转人工" or "talk to a human" off whatever the classifier read in it; bot eval gave such a test
    line the fallback where the classifier was unsure, or another intent's template where it was sure of that. A
    handoff the classifier alone chose is still judged by its intent."""
    project = load_project(REPO / "bot" / "demo")
    rows = [{"text": "我要人工", "intent": "contact_human_agent"}, {"text": "talk to a human", "intent": "contact_human_agent"},
            {"text": "where is my parcel", "intent": "track_order"}]
    analyses = [analysis("greet", 0.3), analysis("complaint", 0.9), analysis("contact_human_agent", 0.9)]
    figures = evaluate_replies(project, rows, [row["text"] for row in rows], analyses, project.intents, tmp_path)
    assert figures["by_source"] == {"handoff": {"right": 2, "wrong": 1}}
    misses = json.loads((tmp_path / "reply_report.json").read_text())["misses"]
    assert [miss["text"] for miss in misses] == ["where is my parcel"]


def test_the_starter_offers_no_small_talk_as_a_fallback_button() -> None:
    """"where is my order?" to a new bot offered "Did you mean one of these? Greet, Opening hours, Goodbye"."""
    project = load_project(REPO / "bot" / "starter")
    ranking = [("greet", 0.36), ("opening_hours", 0.3), ("goodbye", 0.2), ("oos", 0.14)]
    unsure = Analysis(Prediction("greet", 0.36, ranking), [], 0.5, "v0001")
    decision = decide(unsure, project.config, project.responses, {}, "web", 0, "en", project.intents)
    assert [b["title"] for b in decision.buttons] == ["Opening hours", "Talk to a person"]


def test_a_template_text_the_shop_has_since_changed_is_never_sent_from_the_index() -> None:
    """The index keeps the templates' texts of its training: after the fee went from $4.95 to $5.95 in
    responses.yml, an unsure question still got "$4.95" from the index."""
    old = Hit(id="template:get_refund:1", text="Refund, for a $4.95 fee.", score=0.9, question=None, intent="get_refund")
    current = Hit(id="template:get_refund:1", text="Refund.", score=0.9, question=None, intent="get_refund")
    assert decide(analysis("get_refund", 0.3, [old]), CONFIG, RESPONSES, {}, "web", 0).kind == "fallback"
    assert decide(analysis("get_refund", 0.3, [current]), CONFIG, RESPONSES, {}, "web", 0).text == "Refund."
    assert RESPONSES.sent_as_is == {"Refund."}  # a variant with a variable is never sent as it is


def test_a_retrieval_threshold_of_1_gives_exact_repeats() -> None:
    """An exact repeat scores 0.99999988 as often as 1.0000002 in float32: with 1.0, one in six was missed."""
    exact = CONFIG.model_copy(update={"thresholds": CONFIG.thresholds.model_copy(update={"retrieval": 1.0})})
    assert decide(analysis("get_refund", 0.3, [hit(0.99999988)]), exact, RESPONSES, {}, "web", 0).kind == "retrieval"
    assert decide(analysis("get_refund", 0.3, [hit(0.9999)]), exact, RESPONSES, {}, "web", 0).kind == "fallback"
