"""The review queue: which turns enter it, its order and grouping, labelling in the terminal
(``bot review`` driven through click's runner) and through the authenticated admin API."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from sklearn.feature_extraction.text import TfidfVectorizer

from bot.cli import cli
from bot.project import Example, load_project
import bot.server
import dialogues.review
from bot.review import CachedModel, parse_answer, review_in_terminal, serving_queue, show
from bot.server import BOT, create_app
from dialogues.review import ReviewItem, review_queue, uncertainty
from dialogues.store import MIGRATIONS, Exchange, LabelledMeanwhile, Store
from finetune.classifier import IntentClassifier
from retrieval.text import same_text
from tests.conftest import REPO, configure, labelled_in_the_last_deskbots_store

AUTH = {"Authorization": "Bearer small-admin-token"}


def turn(store: Store, text: str, confidence: float, source: str = "template", second: float = 0.0,
         conversation: str = "c1", intent: str = "track_order") -> tuple[int, int | None]:
    ranking = [(intent, confidence), ("get_refund", second)]
    return store.log_exchange(Exchange(conversation, "web", None, text, None, "reply", intent, confidence, ranking,
                                       source, "v0001"))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = Store(tmp_path / "dialogues.db")
    yield store
    store.close()


def test_uncertainty_is_the_margin_and_a_thumbs_down_is_certain_doubt() -> None:
    assert uncertainty([("a", 0.6), ("b", 0.3)], False) == pytest.approx(0.7)
    assert uncertainty([("a", 0.95)], False) == pytest.approx(0.05)
    assert uncertainty([("a", 0.95), ("b", 0.01)], True) == 1.0
    assert uncertainty([], False) == 1.0


def test_the_queue_holds_doubtful_turns_grouped_and_ordered_by_expected_value(store: Store) -> None:
    orders = [turn(store, f"Where is my order {n}?", 0.30, "fallback", 0.25, f"o{n}")[0] for n in (12, 345, 6789)]
    refund = turn(store, "refund now", 0.20, "fallback", 0.05, intent="get_refund")[0]
    disliked, disliked_reply = turn(store, "cancel my order", 0.95, "template", 0.01, intent="cancel_order")
    store.add_feedback("c1", disliked_reply, -1)
    human = turn(store, "get me a person", 0.9, "handoff", 0.05, intent="contact_human_agent")[0]
    turn(store, "track my parcel", 0.95, "template", 0.02)  # confident, answered, no complaint
    liked_reply = turn(store, "cancel order 5", 0.96, "template", 0.01, intent="cancel_order")[1]
    store.add_feedback("c1", liked_reply, 1)
    turn(store, "/track_order", 0.1, "fallback")  # a button payload
    turn(store, "hello? anyone?", 0.0, "silent")  # typed while an agent had the conversation
    store.add_labels([turn(store, "already labelled", 0.1, "fallback")[0]], "track_order")
    turn(store, "Already labelled!", 0.1, "fallback", conversation="c9")  # said again: the label is known
    again = [turn(store, "hmm refund?", 0.3, "fallback", 0.25, intent="get_refund")[0] for _ in range(4)]  # one customer

    items = review_queue(store, threshold=0.5)

    assert [item.turn_ids for item in items] == [orders[::-1], [disliked], again[::-1], [refund], [human]]
    first = items[0]
    assert first.texts[0].startswith("Where is my order") and len(first.texts) == 3
    assert first.score == pytest.approx(3 * 0.95) and first.reasons == ["fallback", "low_confidence"]
    assert first.intent == "track_order" and first.to_json()["count"] == 3
    assert items[1].reasons == ["negative_feedback"] and items[1].score == 1.0
    assert items[2].score == pytest.approx(0.95)  # four messages of one customer count once
    assert items[4].reasons == ["handoff"] and items[4].score == pytest.approx(0.15)


def test_an_answer_of_no_intent_is_queued_with_the_intent_the_classifier_leaned_to(store: Store) -> None:
    """An unsure historical answer filed under no intent is stored with none; the reviewer still sees, and may
    accept, what the classifier read in the message."""
    store.log_exchange(Exchange("c1", "web", None, "do you ship to France?", None, "Yes, in 5 days.", None, 0.3,
                                [("oos", 0.3), ("track_order", 0.2)], "retrieval", "v0001"))
    [item] = review_queue(store, threshold=0.5)
    assert (item.intent, item.reasons) == ("oos", ["low_confidence"])


def test_a_queue_that_stopped_before_the_waiting_messages_ran_out_says_more_wait(store: Store) -> None:
    """A big shop's queue held the latest 5,000 waiting messages of 156,701, and said "478 left"."""
    ids = [turn(store, text, 0.3, "template", conversation=f"c{n}")[0]  # unsure: rescored, the model may be sure
           for n, text in enumerate(["refund please", "where is my parcel", "cancel it", "my card", "a bike?"])]
    newest = review_queue(store, threshold=0.5, limit=2)
    assert sorted(i for item in newest for i in item.turn_ids) == ids[3:] and newest.more_waiting
    assert not review_queue(store, threshold=0.5, limit=6).more_waiting  # all five in it

    def sure_of_all_but_the_first(texts: list[str]) -> list[list[tuple[str, float]]]:  # a model after a retrain
        return [[("get_refund", 0.4 if text == "refund please" else 0.99)] for text in texts]

    # Rescored, most of what is read leaves the queue; the reads stop at their cap with the window not full
    capped = review_queue(store, threshold=0.5, limit=1, rank=sure_of_all_but_the_first)
    assert capped == [] and capped.more_waiting
    assert not review_queue(store, threshold=0.5, limit=5, rank=sure_of_all_but_the_first).more_waiting


def test_messages_equal_up_to_punctuation_inside_words_and_numbers_are_one_item(store: Store) -> None:
    """An apostrophe, a hyphen or a thousands separator split a word or a number in two, so "I can't log in"
    and "I cant log in" were two items, and a label on one left the other in the queue."""
    pairs = [("I can't log in", "I cant log in"), ("my e-mail is wrong", "My email is wrong!"),
             ("where is order 1,234", "Where is order 56?"), ("the neighbour’s house", "the neighbours house"),
             ("你们有没有自行车卖？", "你们 有没有自行车卖"), ("我的 订单 123 在哪", "我的订单456在哪？")]  # no spaces in Chinese
    ids = [[turn(store, text, 0.3, "fallback", conversation=f"c{i}{j}")[0] for j, text in enumerate(pair)]
           for i, pair in enumerate(pairs)]
    assert sorted(sorted(item.turn_ids) for item in review_queue(store, threshold=0.5)) == sorted(ids)
    store.add_labels([ids[0][0]], "oos")
    store.add_labels([ids[4][1]], "oos")
    turn(store, "I CAN’T log in...", 0.3, "fallback", conversation="later")
    turn(store, "你们有没有 自行车卖！", 0.3, "fallback", conversation="later")
    assert all("log" not in text and "自行车" not in text for item in review_queue(store, threshold=0.5)
               for text in item.texts)


def test_a_pause_between_chinese_words_and_an_emoji_keep_messages_apart(store: Store) -> None:
    """The reviewer's key dropped every comma and emoji, so one label on "不，要退款" (no: I want a refund)
    covered "不要退款" (I don't want a refund), and one on "late 👍" covered "late 👎"."""
    pairs = [("不，要退款", "不要退款"), ("late 👍", "late 👎")]
    ids = [[turn(store, text, 0.3, "fallback", conversation=f"c{i}{j}")[0] for j, text in enumerate(pair)]
           for i, pair in enumerate(pairs)]
    assert sorted(sorted(item.turn_ids) for item in review_queue(store, threshold=0.5)) == sorted(
        [[turn_id] for pair in ids for turn_id in pair])
    store.add_labels([ids[0][0], ids[1][0]], "oos")
    turn(store, "不, 要退款!", 0.3, "fallback", conversation="later")  # the same messages again
    turn(store, "Late 👍", 0.3, "fallback", conversation="later")
    assert sorted(text for item in review_queue(store, threshold=0.5) for text in item.texts) == ["late 👎", "不要退款"]


def test_a_bare_acknowledgement_stays_out_of_the_queue(store: Store) -> None:
    """The bot answers "ok", "thanks 👍", "好的[抱拳]" with fallback.acknowledged, stored unsure of any intent: they
    filled the queue, where a reviewer could only label thanks as one of the shop's intents or oos."""
    for n, text in enumerate(["ok", "Thanks 👍", "好的[抱拳]", "[强]"]):
        store.log_exchange(Exchange(f"c{n}", "web", None, text, None, "All right.", None, 0.2,
                                    [("oos", 0.2), ("track_order", 0.1)], "template", "v0001"))
    # nor does "不对": the answer it says missed is voted down, and its own message means no intent either
    for n, text in enumerate(["不对", "还是不对", "that's wrong"]):
        turn(store, text, 0.2, "fallback", conversation=f"w{n}")
    asking = turn(store, "ok where is my parcel", 0.3, "fallback", conversation="c9")[0]
    assert [item.turn_ids for item in review_queue(store, threshold=0.5)] == [[asking]]


def test_a_second_look_at_the_queue_reads_no_waiting_message_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console on the review tab looks at the queue every 3 s: each look read each of its window's thousands of
    waiting messages again, for the key that groups it and whether it only thanks or says the answer missed, two
    thirds of the look's time for the same messages as the look before. Those read before are kept; a message longer
    than what is kept is read at each look."""
    read: list[str] = []
    monkeypatch.setattr(dialogues.review, "same_text", lambda text: read.append(text) or same_text(text))
    asked = store.path.parent.name  # messages of this test alone: none read before by another
    long = f"where is my parcel {asked} " + "x" * 1000  # a long one, of the thousands of characters a customer may send
    texts = [f"Where is my order 12, {asked}?", long, f"Where is my order 345, {asked}?"]
    for n, text in enumerate(texts):
        turn(store, text, 0.3, "fallback", conversation=f"c{n}")
    store.add_labels([turn(store, f"labelled {asked}", 0.1, "fallback", conversation="l")[0]], "track_order")
    first = review_queue(store, threshold=0.5)
    assert sorted(read) == sorted([*texts, long, f"labelled {asked}"])  # the long one again, for its item
    del read[:]
    assert review_queue(store, threshold=0.5) == first and read == [long, long]


def test_a_message_in_traditional_and_in_simplified_characters_is_one_item(store: Store) -> None:
    """The classifier reads 取消訂單 as 取消订单, yet the queue showed them as two items, and a label on the one
    left the other waiting for a label of its own."""
    hong_kong = turn(store, "取消訂單", 0.3, "fallback", conversation="hk", intent="cancel_order")[0]
    beijing = turn(store, "取消订单！", 0.3, "fallback", conversation="bj", intent="cancel_order")[0]
    [item] = review_queue(store, threshold=0.5)
    assert sorted(item.turn_ids) == [hong_kong, beijing]
    store.add_labels([beijing], "cancel_order")
    turn(store, "取消訂單?", 0.3, "fallback", conversation="tw", intent="cancel_order")  # said again: the label is known
    assert review_queue(store, threshold=0.5) == []

def test_the_queue_and_the_labels_show_a_message_as_the_customer_typed_it(store: Store) -> None:
    """The model reads full-width forms as ASCII ("訂單１２３？" as "訂單123?"); the reviewer saw the message so
    converted, not as the customer wrote it."""
    typed = "我要退貨，訂單１２３？"
    store.log_exchange(Exchange("hk", "web", None, "我要退貨,訂單123?", typed, "reply", "get_refund", 0.3,
                                [("get_refund", 0.3)], "fallback", "v0001"))
    [item] = review_queue(store, threshold=0.5)
    assert item.texts == [typed]
    store.add_labels(item.turn_ids, "get_refund")
    assert [row["text"] for row in store.newest_labels()] == [typed]


def test_a_label_on_an_emoji_covers_that_emoji_alone(store: Store) -> None:
    """Texts of no letters or digits have no normal form: labelling "👍" kept "😡" and "???" out for good."""
    store.add_labels([turn(store, "👍", 0.1, "fallback", conversation="a")[0]], "track_order")
    angry = turn(store, "😡😡", 0.1, "fallback", conversation="b")[0]
    puzzled = turn(store, "???", 0.1, "fallback", conversation="c")[0]
    turn(store, "👍", 0.1, "fallback", conversation="d")  # said again: the label is known

    assert sorted(item.turn_ids[0] for item in review_queue(store, threshold=0.5)) == [angry, puzzled]


def test_a_label_of_an_intent_taken_out_of_nlu_yml_leaves_its_messages_to_review_again(store: Store) -> None:
    """Such a label is not trained on, yet it kept its message, and every message of its text, out of the queue
    for good."""
    old = turn(store, "where is my parcel", 0.1, "fallback", conversation="a")[0]
    store.add_labels([old], "shipping_status")  # an intent nlu.yml has since lost
    again = turn(store, "Where is my parcel?", 0.1, "fallback", conversation="b")[0]
    kept = turn(store, "money back", 0.1, "fallback", conversation="c")[0]
    store.add_labels([kept], "get_refund")
    assert review_queue(store, threshold=0.5) == []  # every label counts, without the bot's labels
    known = {"get_refund", "track_order", "oos"}
    [item] = review_queue(store, threshold=0.5, labels=known)
    assert sorted(item.turn_ids) == [old, again]
    # Labelled as the queue shows it: the stale label is no colleague's (it was a 409 and skipped, for good).
    with pytest.raises(LabelledMeanwhile):
        store.add_labels(item.turn_ids, "track_order", "ann", first=True)
    assert sorted(store.add_labels(item.turn_ids, "track_order", "ann", first=True, known=known)) == [old, again]
    assert review_queue(store, threshold=0.5, labels=known) == []
    with pytest.raises(LabelledMeanwhile, match="by ann, as track_order"):
        store.add_labels([again], "oos", "bob", first=True, known=known)


def test_near_duplicates_group_by_embedding_similarity(store: Store) -> None:
    texts = ["where is my parcel", "where is my parcel please", "my parcel where is it", "i want a refund",
             "refund i want"]
    for n, text in enumerate(texts):
        turn(store, text, 0.3, "fallback", 0.2, conversation=f"c{n}")
    vectorizer = TfidfVectorizer().fit(texts)

    def embed(batch: list[str]) -> np.ndarray:
        return vectorizer.transform(batch).toarray().astype(np.float32)  # rows are L2-normalised

    by_text = review_queue(store, 0.5)
    grouped = review_queue(store, 0.5, embed, similarity=0.6)
    assert len(by_text) == 5
    assert sorted(sorted(item.texts) for item in grouped) == [
        ["i want a refund", "refund i want"],
        ["my parcel where is it", "where is my parcel", "where is my parcel please"],
    ]
    assert grouped[0].score > grouped[1].score  # three turns outweigh two of the same doubt


class CountedProducts(np.ndarray):
    """Embeddings that count the matrix products taken of them."""

    products = 0

    def __matmul__(self, other: Any) -> Any:
        CountedProducts.products += 1
        return np.asarray(self) @ np.asarray(other)


def greedy_clusters(groups: list[list[dict[str, Any]]], vectors: np.ndarray, similarity: float) -> list[list[str]]:
    """The grouping as defined: largest group first, each into the cluster whose first group it is closest to."""
    order = sorted(range(len(groups)), key=lambda i: len(groups[i]), reverse=True)
    clusters: list[list[str]] = []
    heads: list[int] = []
    for i in order:
        sims = [float(vectors[h] @ vectors[i]) for h in heads]
        if sims and max(sims) >= similarity:
            clusters[sims.index(max(sims))] += [r["text"] for r in groups[i]]
        else:
            heads.append(i)
            clusters.append([r["text"] for r in groups[i]])
    return clusters


def test_thousands_of_distinct_messages_are_grouped_with_a_product_per_block_not_per_message() -> None:
    """A product per group with a copy of every cluster so far: 5,000 distinct messages took seconds (up to half a minute) on
    every read of the queue, which the agents' console reads every 3 seconds."""
    from dialogues.review import _merge_similar

    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, 16))
    vectors = centres[rng.integers(0, 40, 1500)] + 0.3 * rng.standard_normal((1500, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = [[{"text": f"m{i}"}] * (1 + i % 3) for i in range(len(vectors))]  # 1 to 3 turns each
    by_text = {f"m{i}": row for i, row in enumerate(vectors)}

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([by_text[t] for t in texts]).view(CountedProducts)

    CountedProducts.products = 0
    merged = _merge_similar(groups, embed, 0.9)
    assert CountedProducts.products <= 2
    expected = greedy_clusters(groups, vectors, 0.9)
    assert 40 <= len(expected) < 1500  # near messages do merge
    assert [[r["text"] for r in cluster] for cluster in merged] == expected
    assert [[r["text"] for r in cluster] for cluster in _merge_similar(groups, embed, 0.9, block=97)] == expected

def test_the_serving_model_rescores_waiting_turns(store: Store) -> None:
    unsure = turn(store, "which card fee", 0.30, "template", 0.25)[0]
    fell_back = turn(store, "cancel it", 0.30, "fallback", 0.25, intent="cancel_order")[0]
    still_unsure = turn(store, "hmm refund", 0.35, "template", 0.30, intent="get_refund")[0]
    now = {"which card fee": [("track_order", 0.97), ("get_refund", 0.01)],  # the new model is sure now
           "cancel it": [("cancel_order", 0.90), ("get_refund", 0.05)],
           "hmm refund": [("get_refund", 0.40), ("cancel_order", 0.39)]}

    items = review_queue(store, 0.5, rank=lambda texts: [now[t] for t in texts])

    assert [item.turn_ids for item in items] == [[still_unsure], [fell_back]]  # unsure leaves the queue
    assert items[0].ranking == now["hmm refund"] and items[0].score == pytest.approx(0.99)
    assert items[1].reasons == ["fallback"] and items[1].intent == "cancel_order"
    assert unsure not in {t for item in items for t in item.turn_ids}


def test_bot_reviews_queue_is_rescored_by_the_model_as_served(review_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With server.inference.quantize: int8 the console's queue is rescored by the int8 model the bot serves, but `bot
    review`'s by the float32 one: confidences apart from those the threshold was calibrated on, and another queue."""
    import bot.review

    configure(review_bot, server={"inference": {"quantize": "int8"}})
    rescored: list[IntentClassifier] = []
    monkeypatch.setattr(bot.review, "CachedModel", lambda classifier, version: rescored.append(classifier) or
                        CachedModel(classifier, version))
    store = Store(review_bot / "dialogues.db")
    turn(store, "money back", 0.20, "fallback", 0.10)

    assert len(serving_queue(load_project(review_bot), store, "cpu")) == 1
    store.close()
    assert [any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in c.encoder.modules())
            for c in rescored] == [True]


def test_the_queue_offers_a_renamed_intent_by_the_name_bot_relabel_gave_it(store: Store) -> None:
    """Until the next retrain the serving model predicts an intent by the name nlu.yml had: after `bot relabel` the
    queue still offered it, and accepting the prediction was refused as an unknown intent."""
    cancel = turn(store, "stop the sofa", 0.3, "fallback", 0.25, intent="cancel_order")[0]
    store.add_labels([turn(store, "cancel it", 0.3, "fallback", conversation="c2", intent="cancel_order")[0]],
                     "cancel_order")
    status = turn(store, "refund status?", 0.3, "fallback", 0.25, intent="refund_status", conversation="c3")[0]
    store.relabel("cancel_order", "cancel_sale")  # renamed twice since: its answers are cancel_purchase's
    store.relabel("cancel_sale", "cancel_purchase")
    store.relabel("refund_status", "get_refund")  # merged into get_refund, which the model ranks as well
    now = {"stop the sofa": [("cancel_order", 0.4), ("get_refund", 0.3)],
           "refund status?": [("refund_status", 0.4), ("get_refund", 0.3), ("cancel_order", 0.2)]}
    intents = ["cancel_purchase", "get_refund", "track_order"]

    queue = review_queue(store, 0.5, rank=lambda texts: [now[t] for t in texts], labels={*intents, "oos"})

    by_turn = {item.id: item for item in queue}
    assert sorted(by_turn) == [cancel, status]
    assert by_turn[cancel].intent == "cancel_purchase"
    assert by_turn[cancel].ranking == [("cancel_purchase", 0.4), ("get_refund", 0.3)]
    assert by_turn[status].ranking == [("get_refund", 0.4), ("cancel_purchase", 0.2)]
    assert parse_answer("a", by_turn[cancel], intents).intent == "cancel_purchase"
    logged = {item.id: (item.intent, item.ranking) for item in review_queue(store, 0.5, labels={*intents, "oos"})}
    assert logged == {cancel: ("cancel_purchase", [("cancel_purchase", 0.3), ("get_refund", 0.25)]),
                      status: ("get_refund", [("get_refund", 0.3)])}


def test_a_question_asked_again_and_again_since_its_label_leaves_the_waiting_turns_in_the_queue(store: Store) -> None:
    """The queue read the latest turns up to its limit before leaving out those a label covers: a popular
    question, labelled once, filled the limit with its repeats, and the queue showed nothing while other
    customers' messages waited."""
    waiting = [turn(store, text, 0.3, "fallback", conversation=f"w{n}")[0]
               for n, text in enumerate(["do you sell bikes", "my coupon fails", "can I pay later", "退货地址", "hello?"])]
    store.add_labels([turn(store, "where is my parcel", 0.3, "fallback", conversation="first")[0]], "track_order")
    for n in range(30):
        turn(store, "Where is my parcel?", 0.3, "fallback", conversation=f"again{n}")

    assert sorted(item.turn_ids[0] for item in review_queue(store, threshold=0.5, limit=10)) == waiting
    assert [item.turn_ids[0] for item in review_queue(store, threshold=0.5, limit=2)] == waiting[:2:-1]  # the latest two


def test_turns_the_serving_model_is_sure_of_now_leave_older_ones_in_the_queue(store: Store) -> None:
    """Rescored after the limit was taken: once a retrain made the model sure of a message asked often, its
    turns filled the limit and left it, and the queue was empty while older fallbacks waited."""
    fell_back = [turn(store, text, 0.3, "fallback", conversation=f"f{n}")[0]
                 for n, text in enumerate(["my coupon fails", "can I pay later"])]
    for n in range(30):
        turn(store, "which card fee", 0.3, "template", conversation=f"u{n}")
    now = {"which card fee": [("track_order", 0.97)], "my coupon fails": [("get_refund", 0.6)],
           "can I pay later": [("track_order", 0.4)]}

    items = review_queue(store, 0.5, limit=10, rank=lambda texts: [now[t] for t in texts])

    assert sorted(item.turn_ids[0] for item in items) == fell_back

def test_the_model_view_is_the_classifiers_and_computed_once(small_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = IntentClassifier.load(small_bot / "models" / "v0001" / "classifier", device="cpu")
    predictions, vectors = classifier.predict_with_embeddings(["a", "b"])
    calls: list[list[str]] = []
    original = classifier.predict_with_embeddings
    monkeypatch.setattr(classifier, "predict_with_embeddings",
                        lambda texts, batch_size=None: calls.append(texts) or original(texts, batch_size))
    model = CachedModel(classifier, "v0001", size=2)
    np.testing.assert_allclose(model.embed(["a", "b", "a"]), vectors[[0, 1, 0]], atol=1e-6)
    assert model.rank(["b"]) == [predictions[1].ranking]
    model.rank(["c"])  # evicts the least recently used, "a"
    model.embed(["a"])
    assert calls == [["a", "b"], ["c"], ["a"]]


@pytest.fixture
def review_bot(small_bot: Path, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(small_bot, tmp_path / "bot"))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["learning"]["review_similarity"] = 0  # a random tiny BERT embeds everything alike
    (root / "bot.yml").write_text(yaml.safe_dump(config))
    return root


def test_bot_review_and_relabel_hold_the_reviewers_name_to_the_admin_apis_rule(review_bot: Path) -> None:
    """--reviewer took any name: one with a zero-width space or an escape passed in the labels for a colleague's,
    and José typed with its accent apart was another reviewer, names the admin API refuses or reads in NFC."""
    for command in (["review", str(review_bot)], ["relabel", str(review_bot), "gone", "oos"]):
        for name, said in (("ann\u200b", "U+200B, an invisible or control character"), ("ann\x1b[2J", "U+001B"),
                           ("a" * 129, "at most 128 characters")):
            result = CliRunner().invoke(cli, [*command, "--reviewer", name], input="q\n")
            assert result.exit_code == 2, result.output
            assert "Invalid value for '--reviewer'" in result.output and said in result.output
    store = Store(review_bot / "dialogues.db")
    turn(store, "money back", 0.20, "fallback", 0.10)
    store.close()
    result = CliRunner().invoke(cli, ["review", str(review_bot), "--reviewer", "Jose\u0301"], input="oos\n")
    assert result.exit_code == 0, result.output
    store = Store(review_bot / "dialogues.db")
    assert {r["reviewer"] for r in store.labels()} == {"Jos\u00e9"}
    store.close()


def test_bot_review_labels_one_item_at_a_time_in_the_terminal(review_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(review_bot / "dialogues.db")
    for n in range(4):
        turn(store, f"where is order {n}", 0.30, "fallback", 0.25, f"o{n}")
    for text in ("money back", "someone real", "nice weather", "hmm"):
        turn(store, text, 0.20, "fallback", 0.10)
    items = serving_queue(load_project(review_bot), store)  # what the command shows, in its order
    store.close()
    assert len(items) == 5 and sum(len(i.turn_ids) for i in items) == 8
    first_intent = items[0].ranking[-1][0]  # typed as a unique prefix
    prefix = next(first_intent[:n] for n in range(1, len(first_intent) + 1)
                  if [i for i in load_project(review_bot).intents if i.startswith(first_intent[:n])] == [first_intent])
    answers = ["zzz", prefix, "a", "2", "o", "", "unused"]

    result = CliRunner().invoke(cli, ["review", str(review_bot), "--reviewer", "ann"], input="\n".join(answers) + "\n")

    assert result.exit_code == 0, result.output
    assert "Error: unknown intent 'zzz'" in result.output  # asked again, nothing stored
    assert f"[1/5] {len(items[0].turn_ids)} message" in result.output
    labelled = sum(len(i.turn_ids) for i in items[:4])
    assert f"Labelled 4 items ({labelled} messages), skipped 1. 1 left." in result.output
    store = Store(review_bot / "dialogues.db")
    labels = {r["turn_id"]: (r["intent"], r["reviewer"]) for r in store.labels()}
    store.close()
    expected_intents = [first_intent, items[1].intent, items[2].ranking[1][0], "oos"]
    assert labels == {t: (intent, "ann") for item, intent in zip(items, expected_intents) for t in item.turn_ids}

    # The next sitting starts with what is left; q stops at once.
    again = CliRunner().invoke(cli, ["review", str(review_bot)], input="q\n")
    assert again.exit_code == 0 and "1 item to review" in again.output and f"“{items[4].texts[0]}”" in again.output
    import bot.review

    def past_the_window(*args: Any) -> Any:  # as if more than 5,000 messages were waiting
        queue = serving(*args)
        queue.more_waiting = True
        return queue

    serving = bot.review.serving_queue
    monkeypatch.setattr(bot.review, "serving_queue", past_the_window)
    full = CliRunner().invoke(cli, ["review", str(review_bot)], input="q\n")
    assert "0 items (0 messages), skipped 0. 1 left among the latest waiting messages; older ones come once " \
           "these are labelled." in full.output


def test_bot_review_lists_and_corrects_a_label_given_in_an_earlier_sitting(review_bot: Path) -> None:
    """`u` corrects only the label given last in the sitting: a slip found a day later, or a label the retrain's
    forgotten examples put in doubt, could be corrected through the admin API alone, and was learnt at every retrain.
    --labelled lists the labels as given, newest first, and --correct changes one, with the messages labelled with it."""
    store = Store(review_bot / "dialogues.db")
    parcel = [turn(store, text, 0.3, "fallback", conversation=f"p{n}")[0]
              for n, text in enumerate(["where is my parcel", "where is my parcel?", "wheres my parcel"])]
    store.add_labels(parcel, "get_refund", "ann")  # one queue item's near duplicates, labelled with one answer
    refund = turn(store, "money back", 0.3, "fallback", conversation="r")[0]
    store.add_labels([refund], "get_refund", "bob")
    store.close()

    listed = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled"])
    one_intent = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled", "--intent", "get_refund", "--limit", "1"])

    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith(f"  #{refund}  get_refund  by bob, ") and lines[0].endswith(": “money back”")
    assert lines[1].startswith(f"  #{parcel[0]}  get_refund  by ann, ")
    assert lines[1].endswith(": “where is my parcel” (+2 more phrasings)")
    assert lines[2] == f"2 labels. `bot review {review_bot} --correct TURN INTENT` changes one (TURN is the number after #)."
    assert one_intent.output.splitlines()[1].startswith("1 label, the newest (older ones too: --limit 2 lists more)")

    corrected = CliRunner().invoke(cli, ["review", str(review_bot), "--correct", str(parcel[1]), "track_order",
                                         "--reviewer", "cy"])

    assert corrected.exit_code == 0, corrected.output
    assert f"Corrected 3 messages from get_refund to track_order. Run `bot retrain {review_bot}`" in corrected.output
    store = Store(review_bot / "dialogues.db")
    labels = {r["turn_id"]: (r["intent"], r["reviewer"]) for r in store.labels()}
    store.close()
    assert labels == {**{t: ("track_order", "cy") for t in parcel}, refund: ("get_refund", "bob")}
    none = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled", "--intent", "get_refund"])
    assert [line.split()[0] for line in none.output.splitlines()[:-1]] == [f"#{refund}"]

    typo = CliRunner().invoke(cli, ["review", str(review_bot), "--correct", str(refund), "track_ordr"])
    assert typo.exit_code == 1 and "unknown intent 'track_ordr' (did you mean track_order?)" in typo.output
    unlabelled = CliRunner().invoke(cli, ["review", str(review_bot), "--correct", str(refund + 1), "oos"])
    assert unlabelled.exit_code == 1 and f"turn {refund + 1} has no label to correct" in unlabelled.output
    same = CliRunner().invoke(cli, ["review", str(review_bot), "--correct", str(refund), "get_refund"])
    assert same.exit_code == 0 and f"Turn {refund} is labelled get_refund already." in same.output
    alone = CliRunner().invoke(cli, ["review", str(review_bot), "--intent", "get_refund"])
    assert alone.exit_code == 2 and "add --labelled" in alone.output


def test_bot_review_labelled_reads_no_older_labels_than_it_shows(review_bot: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`bot review --labelled --limit N` read every label the store holds, twice, to show the newest N: it reads them
    newest first and stops at the answer after the N-th, listing them as the whole listing does."""
    store = Store(review_bot / "dialogues.db")
    given = []
    for n in range(6):
        turns = [turn(store, f"where is parcel {n}{'?' * k}", 0.3, "fallback", conversation=f"c{n}-{k}")[0]
                 for k in range(2)]
        store.add_labels(turns, "track_order", f"reviewer{n}")
        given.append(turns)
    store.close()
    read: list[int] = []

    def counted(self: Store, intent: str | None = None) -> Any:
        for row in newest(self, intent):
            read.append(row["id"])
            yield row

    newest = Store.newest_labels
    monkeypatch.setattr(Store, "newest_labels", counted)
    monkeypatch.setattr(Store, "labels", lambda *args: pytest.fail("every label read"))
    whole = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled"])
    read.clear()
    two = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled", "--limit", "2"])

    assert two.exit_code == 0, two.output
    assert two.output.splitlines()[:2] == whole.output.splitlines()[:2]
    assert [line.split()[0] for line in two.output.splitlines()[:2]] == [f"#{given[5][0]}", f"#{given[4][0]}"]
    assert "2 labels, the newest (older ones too: --limit 4 lists more)." in two.output
    assert len(read) <= 2 * 3 + 1  # the two answers shown, the next, and the first label of the one after
    assert whole.output.splitlines()[6].startswith("6 labels. ")


def test_correcting_a_label_bot_relabel_moved_changes_the_messages_of_its_answer_alone(review_bot: Path) -> None:
    """One `bot relabel` moves every label of the old name at once, and a correction changed every label given at the
    same moment: correcting one message among those moved relabelled them all, hundreds of reviewers' answers. It
    changes those its reviewer's answer labelled, as before the move, and `bot review --labelled` lists them so."""
    store = Store(review_bot / "dialogues.db")
    pair = [turn(store, text, 0.3, "fallback", conversation=f"p{n}")[0]
            for n, text in enumerate(["cancel my order", "cancel my order!"])]
    store.add_labels(pair, "cancel_ordr", "ann")
    single = turn(store, "where is my sofa", 0.3, "fallback", conversation="s")[0]
    store.add_labels([single], "cancel_ordr", "bob")
    assert len(store.relabel("cancel_ordr", "cancel_order", "cy")) == 3
    store.close()

    listed = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled"])
    corrected = CliRunner().invoke(cli, ["review", str(review_bot), "--correct", str(single), "track_order"])

    assert [line.split()[0] for line in listed.output.splitlines()[:-1]] == [f"#{single}", f"#{pair[0]}"], listed.output
    assert "Corrected 1 message from cancel_order to track_order." in corrected.output, corrected.output
    store = Store(review_bot / "dialogues.db")
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {
        pair[0]: "cancel_order", pair[1]: "cancel_order", single: "track_order"}
    assert store.correct_label([pair[1]], "get_refund", "cy") == pair
    store.close()


@pytest.mark.parametrize("command", ["review", "chat"])
def test_a_closed_stdin_ends_the_terminal_commands_as_the_end_of_input_does(review_bot: Path, command: str) -> None:
    """Run from a job with stdin closed (`<&-`), both ended in a traceback: Python gives them no stdin at all."""
    store = Store(review_bot / "dialogues.db")
    turn(store, "money back", 0.20, "fallback", 0.10)
    store.close()
    done = subprocess.run(["bash", "-c", f'"$0" -m bot.cli {command} "$1" --device cpu <&-', sys.executable, str(review_bot)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    if command == "review":
        assert "1 item to review" in done.stdout and "Labelled 0 items (0 messages), skipped 0. 1 left." in done.stdout


def test_bot_review_shows_what_the_customers_said_was_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    item = ReviewItem([7], ["where is it"], "track_order", [("track_order", 0.4)], ["negative_feedback"], 1.0, 1.0,
                      ["it showed another order"])
    show(item, 1, 1, ["track_order"])
    assert "  said wrong: “it showed another order”" in capsys.readouterr().out


def test_bot_review_in_a_narrow_terminal_breaks_lines_between_words_and_ranked_intents(
        store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """In a terminal 40 columns wide the ranking wrapped where the line ended: "… track_order 0.12  4" over
    ". cancel_order 0.10", where the 4 reads as the end of 0.124, and the instructions broke inside words ("model" /
    "'s ranking"). Chinese intent names take two columns a character."""
    monkeypatch.setenv("COLUMNS", "40")
    item = ReviewItem([7], ["我的订单什么时候能到？已经等了一个星期了"], "track_order",
                      [("track_order", 0.3), ("取消订单", 0.25), ("get_refund", 0.1)], ["fallback", "low_confidence"],
                      0.9, 0.9)
    show(item, 1, 1, ["track_order", "取消订单", "get_refund"])
    shown = capsys.readouterr().out.splitlines()
    assert shown[-4:] == ["  model:", "    1. track_order 0.30", "    2. 取消订单 0.25", "    3. get_refund 0.10"]
    assert shown[1:3] == ["[1/1] 1 message (fallback,", "low_confidence) · score 0.90"]  # not "low_confiden" / "ce"
    monkeypatch.setenv("COLUMNS", "80")
    show(item, 1, 1, ["track_order", "取消订单", "get_refund"])
    assert capsys.readouterr().out.splitlines()[-1] == "  model: 1. track_order 0.30  2. 取消订单 0.25  3. get_refund 0.10"

    monkeypatch.setenv("COLUMNS", "40")
    _, _, shown = review_two_items(store, "q\n")
    intro = shown.split("\n\n")[0].splitlines()
    assert max(map(len, intro)) <= 40 and "1-2 from the model's ranking, a = accept" in " ".join(intro)


def test_bot_review_marks_a_ranked_intent_nlu_yml_no_longer_has(capsys: pytest.CaptureFixture[str]) -> None:
    """Renamed in nlu.yml before the next retrain, an intent the serving model ranks was shown as any other, and its
    number refused only once typed."""
    item = ReviewItem([7], ["cancel it"], "cancel_order", [("cancel_order", 0.4), ("get_refund", 0.3)], ["fallback"],
                      0.9, 0.9)
    show(item, 1, 1, ["cancel_purchase", "get_refund"])
    assert capsys.readouterr().out.splitlines()[-1] == "  model: 1. cancel_order 0.40 (not in nlu.yml)  2. get_refund 0.30"


def test_a_reviewer_cannot_store_an_intent_nlu_yml_no_longer_has() -> None:
    """The serving model still knows an intent renamed since: accepting it, or picking it, must be refused."""
    item = ReviewItem([7], ["I want to buy"], "place_order", [("place_order", 0.4), ("buy_item", 0.3)], ["fallback"], 0.6, 0.6)
    intents = ["buy_item", "greet"]
    for typed in ("a", "1"):
        with pytest.raises(ValueError, match="unknown intent 'place_order'"):
            parse_answer(typed, item, intents)
    assert parse_answer("2", item, intents).intent == "buy_item"


def test_an_unknown_intent_is_refused_with_the_names_meant_and_how_a_new_intent_is_made() -> None:
    """A reviewer meeting a question no intent covers typed a new name and was told only that it was unknown: not
    that a new intent starts in nlu.yml, nor, for a slip, which name was meant."""
    item = ReviewItem([7], ["do you gift wrap"], "track_order", [("track_order", 0.4)], ["fallback"], 0.6, 0.6)
    intents = ["cancel_order", "track_order"]
    with pytest.raises(ValueError, match=r"unknown intent 'track_ordr' \(did you mean track_order\?\); use one of"):
        parse_answer("track_ordr", item, intents)
    with pytest.raises(ValueError) as refused:
        parse_answer("gift_wrap", item, intents)
    assert "did you mean" not in str(refused.value)
    assert str(refused.value).endswith("A new intent is added to nlu.yml first, with a few examples and its answer in "
                                       "responses.yml; then its messages can be labelled with it, and the next "
                                       "`bot retrain` learns it")
    assert parse_answer("gift_wrap", item, [*intents, "gift_wrap"]).intent == "gift_wrap"  # once nlu.yml has it


def test_a_reviewer_may_type_oos_in_any_case_and_a_digit_int_cannot_read_is_explained() -> None:
    item = ReviewItem([7], ["I want to buy"], "buy_item", [("buy_item", 0.4), ("greet", 0.3)], ["fallback"], 0.6, 0.6)
    intents = ["buy_item", "greet"]
    assert [parse_answer(typed, item, intents).intent for typed in ("o", "O", "oos", "OOS", "２")] == [
        "oos", "oos", "oos", "oos", "greet"]
    assert [parse_answer(typed, item, intents).intent for typed in ("①", "²")] == ["buy_item", "greet"]  # read as 1, 2
    with pytest.raises(ValueError, match="pick a number between 1 and 2"):  # int() refused it in its own words
        parse_answer("⑳⑳", item, intents)


def test_an_intent_named_like_a_shortcut_is_labelled_by_its_name() -> None:
    """"404" was read as the 404th of the ranking, and "OOS", an intent of its own, stored as oos."""
    item = ReviewItem([7], ["qwerty"], "greet", [("greet", 0.4), ("OOS", 0.3)], ["fallback"], 0.6, 0.6)
    intents = ["404", "OOS", "a", "greet"]
    assert [parse_answer(typed, item, intents).intent for typed in ("404", "OOS", "a", "oos", "1", "A")] == [
        "404", "OOS", "a", "oos", "greet", "greet"]


async def test_the_admin_api_serves_and_labels_the_same_queue(review_bot: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    replies = []
    for n, text in enumerate(["where is my order 12", "where is my order 345", "Where is my order 6789?", "I hate this"]):
        resp = await client.post("/api/chat", json={"conversation_id": f"c{n}", "text": text})
        replies.append(await resp.json())
        await client.post("/api/feedback", json={"conversation_id": f"c{n}", "turn_id": replies[-1]["turn_id"],
                                                 "value": -1, **({"comment": "it showed another order"} if n else {})})

    assert (await client.get("/admin/review")).status == 401
    assert (await client.get("/admin/review", headers={"Authorization": "Bearer wrong"})).status == 401
    resp = await client.get("/admin/review?limit=1", headers=AUTH)
    body = await resp.json()
    assert resp.status == 200 and body["total"] == 2 and len(body["items"]) == 1 and body["more_waiting"] is False
    orders = body["items"][0]
    assert orders["count"] == 3 and "negative_feedback" in orders["reasons"] and "track_order" in body["intents"]
    assert orders["comments"] == ["it showed another order"]  # the customers' word on the replies, once
    # the page after the first (a queue longer than a page was read its first page alone)
    second = await (await client.get("/admin/review?limit=1&offset=1", headers=AUTH)).json()
    assert second["total"] == 2 and [i["count"] for i in second["items"]] == [1] and second["items"][0] != orders
    assert (await (await client.get("/admin/review?offset=2", headers=AUTH)).json())["items"] == []
    assert (await client.get("/admin/review?offset=-1", headers=AUTH)).status == 400

    url = f"/admin/review/{orders['id']}"
    resp = await client.post(url, json={"intent": "weather"}, headers=AUTH)
    assert resp.status == 400 and "unknown intent 'weather'" in (await resp.json())["error"]
    assert (await client.post(url, json=["track_order"], headers=AUTH)).status == 400
    for body in ({}, {"accept": False}, {"intent": " track_order"}):  # neither a label nor an acceptance; a near miss
        assert (await client.post(url, json=body, headers=AUTH)).status == 400
    schema = (await (await client.get("/openapi.json", headers=AUTH)).json())["components"]["schemas"]["ReviewLabelRequest"]
    assert schema["properties"]["intent"]["anyOf"][0]["enum"] == sorted({*load_project(review_bot).intents, "oos"})
    resp = await client.post(url, json={"intent": "track_order", "reviewer": "ann"}, headers=AUTH)
    assert resp.status == 200 and sorted((await resp.json())["turn_ids"]) == sorted(orders["turn_ids"])
    resp = await client.post(url, json={"intent": "track_order"}, headers=AUTH)  # labelled: said so, and how to change it
    assert resp.status == 409 and (await resp.json())["error"].endswith('as track_order (send "correct": true to change it)')
    # A reviewer's slip is corrected: the messages labelled with it take the new intent too.
    correction = {"intent": "cancel_order", "correct": True, "reviewer": "ann"}
    resp = await client.post(url, json=correction, headers=AUTH)
    assert resp.status == 200 and sorted((await resp.json())["turn_ids"]) == sorted(orders["turn_ids"])
    assert {client.app[BOT].store.label_of(t)["intent"] for t in orders["turn_ids"]} == {"cancel_order"}
    resp = await client.post(f"/admin/review/{replies[3]['user_turn_id']}", json=correction, headers=AUTH)
    assert resp.status == 404 and "has no label to correct" in (await resp.json())["error"]
    resp = await client.post(url, json={"accept": True, "predicted": "track_order", "correct": True}, headers=AUTH)
    assert resp.status == 400 and "correct takes an intent" in (await resp.json())["error"]

    rest = (await (await client.get("/admin/review", headers=AUTH)).json())["items"]
    assert [item["texts"] for item in rest] == [["I hate this"]]
    project = client.app[BOT].project  # its prediction renamed in nlu.yml since the model was trained
    renamed = [e for e in project.examples if e.intent != rest[0]["predicted"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(project, "examples", renamed)
        patch.setitem(project.__dict__, "intents", sorted({e.intent for e in renamed}))  # Project.intents, read once
        accept = {"accept": True, "predicted": rest[0]["predicted"]}
        resp = await client.post(f"/admin/review/{rest[0]['id']}", json=accept, headers=AUTH)
        assert resp.status == 400 and f"unknown intent {rest[0]['predicted']!r}" in (await resp.json())["error"]
    # Accepting is of the prediction the reviewer saw: a model swapped in since may predict another intent.
    other = next(i for i in load_project(review_bot).intents if i != rest[0]["predicted"])
    resp = await client.post(f"/admin/review/{rest[0]['id']}", json={"accept": True, "predicted": other}, headers=AUTH)
    assert resp.status == 409 and "read the queue again" in (await resp.json())["error"]
    assert (await client.post(f"/admin/review/{rest[0]['id']}", json={"accept": True}, headers=AUTH)).status == 400
    resp = await client.post(f"/admin/review/{rest[0]['id']}", json={"accept": True, "predicted": rest[0]["predicted"]},
                             headers=AUTH)
    assert resp.status == 200 and (await resp.json())["intent"] == rest[0]["predicted"]
    assert (await (await client.get("/admin/review", headers=AUTH)).json())["total"] == 0
    # Labelled with an intent since taken out of nlu.yml, the message is back, and is labelled as it shows.
    client.app[BOT].store.add_labels(rest[0]["turn_ids"], "shipping_status")
    [back] = (await (await client.get("/admin/review", headers=AUTH)).json())["items"]
    resp = await client.post(f"/admin/review/{back['id']}", json={"intent": "oos"}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["turn_ids"] == rest[0]["turn_ids"] == back["turn_ids"]

    store = Store(review_bot / "dialogues.db")
    assert {r["intent"] for r in store.labels()} == {"cancel_order", "oos"} and len(store.labels()) == 4
    store.close()


async def test_a_look_at_the_review_queue_with_nothing_committed_since_the_last_reads_nothing_again(
        review_bot: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console on the review tab looks at the queue every 3 s, and each look read and built the whole queue again
    with nothing committed since. The queue is read again once something is (a customer's message, a label)."""
    client = await aiohttp_client(create_app(review_bot, device="cpu"))

    async def voted_down(conversation: str, text: str) -> None:  # in the queue whatever the model made of it
        reply = await (await client.post("/api/chat", json={"conversation_id": conversation, "text": text})).json()
        voted = await client.post("/api/feedback", json={"conversation_id": conversation, "turn_id": reply["turn_id"],
                                                          "value": -1})
        assert voted.status == 200

    await voted_down("c1", "where is my order 12")
    reads: list[int] = []
    read = dialogues.review.candidates
    monkeypatch.setattr(dialogues.review, "candidates", lambda *args, **kw: reads.append(1) or read(*args, **kw))

    async def look() -> dict[str, Any]:
        response = await client.get("/admin/review", headers=AUTH)
        assert response.status == 200
        return await response.json()

    first = await look()
    assert reads and first["total"] == 1
    del reads[:]
    assert await look() == first and reads == []
    await voted_down("c2", "I hate this")
    assert (await look())["total"] == 2 and reads
    item = (await look())["items"][0]
    assert (await client.post(f"/admin/review/{item['id']}", json={"intent": "oos"}, headers=AUTH)).status == 200
    assert (await look())["total"] == 1


async def test_the_admin_api_offers_and_accepts_a_renamed_intent_by_its_new_name(review_bot: Path, aiohttp_client: Any) -> None:
    """Renamed in nlu.yml and by `bot relabel` before the next retrain, a prediction was still offered by its old
    name, and accepting it was refused as an unknown intent."""
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    reply = await (await client.post("/api/chat", json={"conversation_id": "c1", "text": "I hate this"})).json()
    await client.post("/api/feedback", json={"conversation_id": "c1", "turn_id": reply["turn_id"], "value": -1})
    [item] = (await (await client.get("/admin/review", headers=AUTH)).json())["items"]
    old = item["predicted"]
    bot = client.app[BOT]
    bot.store.relabel(old, "renamed_intent")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bot.project, "examples", [Example(e.text, "renamed_intent" if e.intent == old else e.intent)
                                                for e in bot.project.examples])
        patch.setitem(bot.project.__dict__, "intents", sorted({e.intent for e in bot.project.examples}))
        [item] = (await (await client.get("/admin/review", headers=AUTH)).json())["items"]
        assert item["predicted"] == "renamed_intent" and old not in {r["intent"] for r in item["ranking"]}
        resp = await client.post(f"/admin/review/{item['id']}", json={"accept": True, "predicted": "renamed_intent"},
                                 headers=AUTH)
    assert resp.status == 200 and (await resp.json())["intent"] == "renamed_intent"


async def test_of_two_reviewers_labelling_one_item_at_once_the_second_is_told(
        review_bot: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the queue before either stored: the second label used to overwrite the first, both told 200."""
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    await client.post("/api/chat", json={"conversation_id": "c1", "text": "hmm, the thing with the order"})
    stale = await bot.server.review_items(client.app)

    async def as_read_before(app: Any) -> list[ReviewItem]:
        return stale

    monkeypatch.setattr(bot.server, "review_items", as_read_before)
    url = f"/admin/review/{stale[0].turn_ids[0]}"
    first = await client.post(url, json={"intent": "track_order", "reviewer": "ann"}, headers=AUTH)
    second = await client.post(url, json={"intent": "oos", "reviewer": "bob"}, headers=AUTH)

    assert first.status == 200 and second.status == 409
    said = await second.json()
    assert said == {"error": f"turn {stale[0].turn_ids[0]} was labelled meanwhile by ann, as track_order",
                    "code": "labelled_meanwhile", "labelled": "track_order", "reviewer": "ann",
                    "yours": False}  # for the console's "Correct it"
    assert [(r["intent"], r["reviewer"]) for r in client.app[BOT].store.labels()] == [("track_order", "ann")]


async def test_a_second_reviewer_of_an_item_hears_who_labelled_it(review_bot: Path, aiohttp_client: Any) -> None:
    """The labelled item had left the queue, so the second reviewer heard 404 "not in the review queue". A name refused
    is said as `bot review --reviewer` says it, where the API's said "reviewer: Value error, holds U+200B"."""
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    await client.post("/api/chat", json={"conversation_id": "c1", "text": "hmm, the thing with the order"})
    [item] = [i for i in await bot.server.review_items(client.app) if "hmm, the thing with the order" in i.texts]
    url = f"/admin/review/{item.turn_ids[0]}"
    for unseen, said in (("Sam\u200b", "U+200B"), ("Sam\U000e0053", "U+E0053")):  # not Sam: refused (a tag character)
        refused = await client.post(url, json={"intent": "oos", "reviewer": unseen}, headers=AUTH)
        told = CliRunner().invoke(cli, ["review", str(review_bot), "--reviewer", unseen]).output.splitlines()[-1]
        assert told.startswith(f"Error: Invalid value for '--reviewer': holds {said}"), told
        assert refused.status == 400 and (await refused.json())["error"] == \
            "reviewer: " + told.removeprefix("Error: Invalid value for '--reviewer': ")
    first = await client.post(url, json={"intent": "track_order", "reviewer": "Sam"}, headers=AUTH)
    second = await client.post(url, json={"intent": "oos", "reviewer": "Kim"}, headers=AUTH)
    assert first.status == 200 and second.status == 409
    assert (await second.json())["error"].startswith(f"turn {item.turn_ids[0]} was labelled meanwhile by Sam, as track_order")
    assert (await second.json())["labelled"] == "track_order"  # for the console's "Correct it"
    unknown = await client.post("/admin/review/999999", json={"intent": "oos"}, headers=AUTH)
    assert unknown.status == 404


async def test_an_agent_labels_the_review_queue_unless_their_grants_leave_review_out(
        review_bot: Path, aiohttp_client: Any) -> None:
    """Any agent's token labelled the queue, which teaches the next model. An agent whose grants bot.yml sets reads and
    labels it where they list review (403 naming the grant otherwise); one without grants labels it as before review
    was a grant. The inbox says what each token may do, for the console to offer the queue or not."""
    configure(review_bot, server={"agents": {"Ana": {"token": "ana-own-token-0123"},
                                             "Bob": {"token": "bob-own-token-4567", "grants": ["stats"]},
                                             "Cy": {"token": "cy-own-token-89ab", "grants": ["stats", "review"]}}})
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    tokens = {"Ana": "ana-own-token-0123", "Bob": "bob-own-token-4567", "Cy": "cy-own-token-89ab"}
    for n, text in enumerate(["hmm, the thing with the order", "qwerty zxcv"]):  # two items
        await client.post("/api/chat", json={"conversation_id": f"c{n}", "text": text})
    items = (await (await client.get("/admin/review", headers=AUTH)).json())["items"]

    async def labels(name: str, item: dict[str, Any]) -> tuple[int, int, list[str]]:
        auth = {"Authorization": f"Bearer {tokens[name]}"}
        queue = await client.get("/admin/review", headers=auth)
        label = await client.post(f"/admin/review/{item['id']}", json={"intent": "track_order"}, headers=auth)
        inbox = await (await client.get("/admin/conversations?limit=0", headers=auth)).json()
        return queue.status, label.status, inbox["token_grants"]

    assert await labels("Bob", items[0]) == (403, 403, ["stats"])
    assert await labels("Ana", items[0]) == (200, 200, ["review"])
    assert await labels("Cy", items[1]) == (200, 200, ["stats", "review"])
    refused = await client.get("/admin/review", headers={"Authorization": f"Bearer {tokens['Bob']}"})
    assert await refused.json() == {
        "error": "GET /admin/review needs the admin token, or an agent's token granted review: this one is agent Bob's "
                 "(server.agents: Bob: {grants: [stats, review]} in bot.yml grants it)", "code": "not_granted", "agent": "Bob",
        "grant": "review"}
    assert [r["reviewer"] for r in client.app[BOT].store.labels()] == ["Ana", "Cy"]
    admin = await (await client.get("/admin/conversations?limit=0", headers=AUTH)).json()
    assert admin["token_grants"] == ["reload", "export", "stats", "review"]


@pytest.mark.parametrize("read_before", [False, True])
async def test_a_reviewer_labelling_an_item_from_a_second_window_hears_it_was_them(
        review_bot: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, read_before: bool) -> None:
    """The console told a reviewer who had labelled the item in another window that a colleague had: the answer
    named nobody. It names who labelled it, and says when that is the reviewer sending, by name as people read
    names (in any letter case and spacing), whether the item had left the queue or was labelled as it was stored."""
    client = await aiohttp_client(create_app(review_bot, device="cpu"))
    await client.post("/api/chat", json={"conversation_id": "c1", "text": "hmm, the thing with the order"})
    [item] = [i for i in await bot.server.review_items(client.app) if "hmm, the thing with the order" in i.texts]
    if read_before:  # the queue as read before the first label: the label is met as it is stored
        async def as_read_before(app: Any) -> list[ReviewItem]:
            return [item]

        monkeypatch.setattr(bot.server, "review_items", as_read_before)
    url = f"/admin/review/{item.turn_ids[0]}"
    assert (await client.post(url, json={"intent": "track_order", "reviewer": "Sam"}, headers=AUTH)).status == 200
    second = await client.post(url, json={"intent": "oos", "reviewer": " sam"}, headers=AUTH)
    said = await second.json()
    assert second.status == 409 and (said["labelled"], said["reviewer"], said["yours"]) == ("track_order", "Sam", True)
    assert said["error"].startswith(f"turn {item.turn_ids[0]} was labelled meanwhile by you (Sam) from another window, "
                                    "as track_order")


def test_bot_review_skips_an_item_labelled_meanwhile(store: Store) -> None:
    taken = turn(store, "where is it", 0.2, "fallback")[0]
    free = turn(store, "money back", 0.2, "fallback", conversation="c2")[0]
    items = review_queue(store, threshold=0.5)  # on the screen while an agent labels the first in the admin API
    store.add_labels([taken], "track_order", "ann")
    with CliRunner().isolation(input="o\no\n") as (output, *_):
        done = review_in_terminal(store, items, ["track_order", "get_refund"], "bob")
        shown = output.getvalue().decode()
    assert done == {"items": 1, "turns": 1, "skipped": 1}
    assert f"skipped: turn {taken} was labelled meanwhile by ann, as track_order" in shown
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {taken: "track_order", free: "oos"}
    with pytest.raises(LabelledMeanwhile):
        store.add_labels([free], "get_refund", first=True)


def review_two_items(store: Store, answers: str) -> tuple[list[ReviewItem], dict[str, int], str]:
    """Two waiting messages reviewed in the terminal, ``answers`` typed: the items, the counts, what was shown."""
    turn(store, "where is it", 0.2, "fallback")
    turn(store, "money back", 0.2, "fallback", conversation="c2")
    items = review_queue(store, threshold=0.5)
    with CliRunner().isolation(input=answers) as (output, *_):
        done = review_in_terminal(store, items, ["track_order", "get_refund"], "bob")
        return items, done, output.getvalue().decode()


def test_bot_review_asks_again_after_bytes_that_are_not_utf8_and_reads_full_width_shortcuts(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A character the terminal's erase cut in two ended the sitting with a UnicodeDecodeError; an input method
    in full-width mode types "ｏ" and "ａ", which were unknown intents."""
    from click import termui

    turn(store, "where is it", 0.2, "fallback")
    turn(store, "money back", 0.2, "fallback", conversation="c2")
    items = review_queue(store, threshold=0.5)
    lines = iter([b"\xe9\x80o", "\uff4f", "\uff41", ""])  # 退 cut in two, then ｏ and ａ, then Enter

    def typed(prompt: str) -> str:
        line = next(lines)
        click.echo(prompt, nl=False)
        return line.decode() if isinstance(line, bytes) else line  # as input() decodes a terminal's line

    with CliRunner().isolation() as (output, *_):
        monkeypatch.setattr(termui, "visible_prompt_func", typed)
        done = review_in_terminal(store, items, ["track_order", "get_refund"], "bob", more=True)
        shown = output.getvalue().decode()
    assert "not UTF-8 text; type it again" in shown
    assert done == {"items": 2, "turns": 2, "skipped": 0}
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {items[0].turn_ids[0]: "oos",
                                                                    items[1].turn_ids[0]: "track_order"}
    assert "1-2 from the model's ranking" in shown.replace("\n", " ") and "end of this sitting" in shown  # not of the queue


def test_bot_review_of_an_empty_queue_says_so_and_suggests_no_retrain(review_bot: Path) -> None:
    store = Store(review_bot / "dialogues.db")
    turn(store, "/track_order", 0.2, "fallback")  # a button's payload, answered without the model: not for review
    store.close()
    result = CliRunner().invoke(cli, ["review", str(review_bot)], input="q\n")
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == "Nothing to review."
    assert "retrain" not in result.output


def test_bot_review_and_chat_show_what_a_terminal_in_another_encoding_cannot(review_bot: Path) -> None:
    """On a GBK (or Latin-1) terminal an emoji in a message ended `bot review` at its first item, every sitting."""
    store = Store(review_bot / "dialogues.db")
    turn(store, "where is my parcel \U0001f621\U0001f621", 0.20, "fallback", 0.10)
    store.close()
    env = {**os.environ, "PYTHONIOENCODING": "gbk"}
    for command, typed in (("review", "o\n\n"), ("chat", "\u6211\u8981\u9000\u6b3e \U0001f621\n")):
        done = subprocess.run([sys.executable, "-m", "bot.cli", command, str(review_bot), "--device", "cpu"],
                              input=typed.encode("gbk", "replace"), capture_output=True, timeout=300, cwd=REPO, env=env)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode("gbk", "replace")
        if command == "review":
            assert "where is my parcel ??" in done.stdout.decode("gbk") and b"Labelled 1 item" in done.stdout
            # each piped answer shows after its prompt, as typed in a terminal: it was "label:   → oos"
            assert b"label: o\n  \xa1\xfa oos" in done.stdout, done.stdout.decode("gbk")


def test_bot_review_corrects_the_item_labelled_last(store: Store) -> None:
    """A slip in the terminal could not be taken back there, and was learned at every retrain."""
    items, done, shown = review_two_items(store, "u\no\nu\ntrack_order\nget_refund\n")
    assert done == {"items": 2, "turns": 2, "skipped": 0}
    assert "nothing labelled yet to correct" in shown and "→ oos (1 message)" in shown
    assert shown.count(f"“{items[0].texts[0]}”") == 2  # shown again to be corrected
    labels = {r["turn_id"]: (r["intent"], r["reviewer"]) for r in store.labels()}
    assert labels == {items[0].turn_ids[0]: ("track_order", "bob"), items[1].turn_ids[0]: ("get_refund", "bob")}


def test_bot_review_corrects_the_queues_last_label_before_it_ends(store: Store) -> None:
    """Once the queue's last item was labelled the sitting ended, and a slip there could not be taken back."""
    items, done, shown = review_two_items(store, "o\noos\nx\nu\nget_refund\n\n")
    assert done == {"items": 2, "turns": 2, "skipped": 0}
    assert "type u to correct the last label" in shown  # "x" is no answer there
    assert shown.count(f"“{items[1].texts[0]}”") == 2
    labels = {r["turn_id"]: r["intent"] for r in store.labels()}
    assert labels == {items[0].turn_ids[0]: "oos", items[1].turn_ids[0]: "get_refund"}


def test_bot_review_labels_what_is_left_of_an_item_purged_meanwhile(store: Store) -> None:
    """``bot purge`` while an item was on the screen ended the sitting with a traceback (KeyError)."""
    kept = turn(store, "where is my parcel", 0.2, "fallback", conversation="c1")[0]
    gone = turn(store, "Where is my parcel?", 0.2, "fallback", conversation="c2")[0]
    alone = turn(store, "money back", 0.2, "fallback", conversation="c3")[0]
    items = review_queue(store, threshold=0.5)
    assert sorted(len(item.turn_ids) for item in items) == [1, 2]
    store.purge("c2", "c3")
    with CliRunner().isolation(input="o\no\n") as (output, *_):
        done = review_in_terminal(store, items, ["track_order", "get_refund"], "bob")
        shown = output.getvalue().decode()
    assert done == {"items": 1, "turns": 1, "skipped": 1}
    assert f"skipped: turn {alone} was deleted meanwhile" in shown and "→ oos (1 message)" in shown
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {kept: "oos"}
    assert gone not in {r["turn_id"] for r in store.labels()}
    with pytest.raises(KeyError):  # labels not from the queue name their turns: an unknown one is an error
        store.add_labels([gone], "oos")


def test_bot_review_corrects_an_item_whose_first_message_was_purged_after_labelling(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The correction went by the item's first labelled message alone: once that was purged, the rest of
    the item kept the slip ("not corrected: its messages were deleted meanwhile")."""
    conversations = {turn(store, "where is my parcel", 0.2, "fallback", conversation="c1")[0]: "c1",
                     turn(store, "Where is my parcel?", 0.2, "fallback", conversation="c2")[0]: "c2"}
    [item] = review_queue(store, threshold=0.5)
    assert sorted(item.turn_ids) == sorted(conversations)
    add_labels = store.add_labels
    kept = []

    def add_then_purge(*args: Any, **kwargs: Any) -> list[int]:  # `bot purge` of the first one right after
        labelled = add_labels(*args, **kwargs)
        monkeypatch.undo()
        store.purge(conversations[labelled[0]])
        kept.extend(labelled[1:])
        return labelled

    monkeypatch.setattr(store, "add_labels", add_then_purge)
    with CliRunner().isolation(input="o\nu\ntrack_order\n\n") as (output, *_):
        review_in_terminal(store, [item], ["track_order", "get_refund"], "bob")
        shown = output.getvalue().decode()
    assert "→ track_order (1 message)" in shown
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {kept[0]: "track_order"}


def test_bot_review_does_not_label_another_customers_message_that_took_a_purged_turns_id(store: Store) -> None:
    """SQLite gives the highest deleted ids out again: the label for a purged question landed on the next
    customer's message, and went into the training data."""
    shown, reply = turn(store, "frobnicate the quantum teapot please", 0.2, "fallback", conversation="victim")
    items = review_queue(store, threshold=0.5)
    store.purge("victim")
    later = turn(store, "blorp zzz wibble", 0.1, "fallback", conversation="bystander")[0]  # in the queue too
    assert later > reply  # no id comes back, from this store or one opened afresh
    store.close()
    again = Store(store.path)
    again.purge("bystander")
    assert again.add_message("third", "agent", "Hello?") > later
    store = again
    with CliRunner().isolation(input="o\n") as (output, *_):
        done = review_in_terminal(store, items, ["track_order", "get_refund"], "bob")
        said = output.getvalue().decode()
    assert done == {"items": 0, "turns": 0, "skipped": 1} and f"skipped: turn {shown} was deleted meanwhile" in said
    assert store.labels() == []
    again.close()


def test_the_queue_threshold_follows_the_intent_threshold_unless_set() -> None:
    from bot.project import BotConfig
    from bot.review import review_threshold

    assert review_threshold(BotConfig(), 0.23) == 0.5  # auto: at least even odds, above a low calibrated threshold
    assert review_threshold(BotConfig(), 0.64) == 0.64  # and the serving model's calibrated threshold above them
    assert review_threshold(BotConfig.model_validate({"thresholds": {"intent": 0.6}}), 0.23) == 0.6
    assert review_threshold(BotConfig.model_validate({"learning": {"review_confidence": 0.7}}), 0.23) == 0.7


def test_an_items_ranking_is_led_by_the_intent_accepting_it_labels(store: Store) -> None:
    """Accepting an item labels its most frequent prediction, so the ranking shown beside it is one led by it."""
    for n in (1, 2):
        turn(store, "do you sell bicycles?", 0.3, "fallback", 0.2, conversation=f"c{n}", intent="place_order")
    turn(store, "do you sell bicycles?", 0.3, "fallback", 0.2, conversation="c3", intent="track_order")  # the latest
    [item] = review_queue(store, 0.5)
    assert item.intent == "place_order" and item.ranking[0][0] == "place_order"


def test_bot_review_labelled_lists_the_labels_of_an_older_deskbots_store_as_it_is(review_bot: Path) -> None:
    """Deskbot upgraded, the older `bot serve` still running on the store: `bot review --labelled`, which only reads,
    refused to list the labels given, as the store was not migrated yet."""
    (review_bot / "dialogues.db").unlink(missing_ok=True)
    labelled_in_the_last_deskbots_store(review_bot / "dialogues.db", "money back", "get_refund", turn_id=7,
                                        reviewer="bob")

    listed = CliRunner().invoke(cli, ["review", str(review_bot), "--labelled"])

    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].startswith("  #7  get_refund  by bob, ")
    assert sqlite3.connect(review_bot / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
