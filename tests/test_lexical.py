"""The character n-gram vote: the same figures as scikit-learn's, its share chosen on held-out examples,
and its place in a saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from finetune.classifier import FILES, IntentClassifier, ModelLoadError
from finetune.lexical import C, CharNgrams, choose_share
from finetune.train import TrainConfig, train_classifier

TEXTS = ["我要退款", "退款进度怎么查", "查询订单", "我的订单在哪里", "where is my refund", "track my order",
         "修改收货地址", "change my delivery address"]
TARGETS = [0, 0, 2, 2, 0, 2, 3, 3]  # label 1 has no examples
QUESTIONS = ["退款什么时候到账", "my order has not come", "地址写错了", "xyz"]


def test_features_and_probabilities_are_scikit_learns() -> None:
    model = CharNgrams.fit(TEXTS, TARGETS, 4)
    reference = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True).fit(TEXTS)
    assert np.allclose(model.features(QUESTIONS).toarray(), reference.transform(QUESTIONS).toarray(), atol=1e-6)
    regression = LogisticRegression(C=C, max_iter=3000).fit(reference.transform(TEXTS), TARGETS)
    expected = regression.predict_proba(reference.transform(QUESTIONS))
    probabilities = model.probabilities(QUESTIONS)
    assert np.allclose(probabilities[:, [0, 2, 3]], expected, atol=1e-5)
    assert np.all(probabilities[:, 1] == 0)  # no examples, no probability
    assert probabilities[0].argmax() == 0 and probabilities[1].argmax() == 2 and probabilities[2].argmax() == 3


def test_two_intents_give_the_binary_regressions_probabilities() -> None:
    targets = [0 if t == 0 else 1 for t in TARGETS[:6]]
    model = CharNgrams.fit(TEXTS[:6], targets, 2)
    regression = LogisticRegression(C=C, max_iter=3000).fit(model.features(TEXTS[:6]), targets)
    assert np.allclose(model.probabilities(QUESTIONS), regression.predict_proba(model.features(QUESTIONS)), atol=1e-5)


def test_one_intent_gets_all_the_probability() -> None:
    assert CharNgrams.fit(["hello", "hi"], [1, 1], 3).probabilities(["hey"]).tolist() == [[0.0, 1.0, 0.0]]


def test_the_saved_ngrams_are_readable_by_their_owner_alone(tmp_path: Path, common_umask: None) -> None:
    """ngrams.json holds pieces of the texts trained on, customers' messages among them after `bot retrain`, and was
    made with the umask's mode (0644): every account on the machine could read them."""
    CharNgrams.fit(TEXTS, TARGETS, 4).save(tmp_path)
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        "ngrams.json": 0o600, "ngrams.safetensors": 0o600}


def test_save_and_load_give_the_same_probabilities(tmp_path: Path) -> None:
    model = CharNgrams.fit(TEXTS, TARGETS, 4)
    model.save(tmp_path)
    assert np.array_equal(CharNgrams.load(tmp_path).probabilities(QUESTIONS), model.probabilities(QUESTIONS))
    (tmp_path / "ngrams.json").write_text('["a", "b"]', encoding="utf-8")
    with pytest.raises(ValueError, match="do not match the 2 n-grams"):
        CharNgrams.load(tmp_path)


def test_the_share_is_the_smallest_that_answers_most_held_out_examples() -> None:
    encoder = np.array([[0.6, 0.4], [0.45, 0.55], [0.2, 0.8]])
    ngrams = np.array([[0.9, 0.1], [0.9, 0.1], [0.0, 1.0]])
    # example 2 (truth 0) scores 0.45 + 0.45 s against 0.55 - 0.45 s: right once s > 1/9, first at 0.2
    assert choose_share(encoder, ngrams, [0, 0, 1]) == 0.2
    assert choose_share(encoder, ngrams, [0, 1, 1]) == 0.0  # the vote only breaks example 2: none of it
    assert choose_share(encoder, np.array([[0.0, 1.0]] * 3), [0, 0, 1]) == 0.0  # no share helps: none


def test_a_classifier_takes_the_vote_that_helps_and_keeps_it_through_save_and_load(tiny_model: Path,
                                                                                    tmp_path: Path) -> None:
    texts = ["where is my refund", "refund status please", "i want my money back", "refund not received",
             "track my order", "order status", "where is my parcel", "my order has not arrived"]
    intents = ["refund"] * 4 + ["order"] * 4
    held = ["refund still not here", "money back status", "parcel not arrived", "order tracking"]
    held_intents = ["refund", "refund", "order", "order"]
    # Half an epoch of a random two-layer BERT knows little; the n-grams know the words.
    model = train_classifier(texts, intents, str(tiny_model), TrainConfig(epochs=0.5, seed=1), device="cpu",
                             progress=False)
    encoder_only = model.probabilities(held)
    share = model.fit_ngrams(texts, intents, held, held_intents)
    assert share > 0 and model.ngram_share == share
    votes = model.ngrams.probabilities(held)
    assert np.allclose(model.probabilities(held), (1 - share) * encoder_only + share * votes, atol=1e-6)
    assert np.allclose(model.probabilities(held, ngrams=False), encoder_only, atol=1e-6)

    model.save(tmp_path / "clf")
    loaded = IntentClassifier.load(tmp_path / "clf", device="cpu")
    assert loaded.ngram_share == share
    assert np.allclose(loaded.probabilities(held), model.probabilities(held), atol=1e-5)

    assert model.fit_ngrams(texts, intents, [], []) == 0.0  # nothing held out: no vote
    assert model.ngrams is None and np.allclose(model.probabilities(held), encoder_only, atol=1e-6)


def test_a_model_folder_with_a_broken_vote_does_not_load(tiny_model: Path, tmp_path: Path) -> None:
    texts = ["refund please", "my refund", "order status", "track order"]
    intents = ["refund", "refund", "order", "order"]
    model = train_classifier(texts, intents, str(tiny_model), TrainConfig(epochs=0.5, seed=1), device="cpu",
                             progress=False)
    model.ngrams, model.ngram_share = CharNgrams.fit(texts, [1, 1, 0, 0], 2), 0.3
    model.save(tmp_path / "clf")
    (tmp_path / "clf" / "ngrams.safetensors").write_bytes(b"corrupt")
    with pytest.raises(ModelLoadError, match="cannot load the classifier"):
        IntentClassifier.load(tmp_path / "clf", device="cpu")
    model.ngrams = CharNgrams.fit(texts, [1, 1, 0, 0], 3)  # a vote over three labels for two intents
    model.save(tmp_path / "clf")
    with pytest.raises(ModelLoadError, match="3 labels, not 2"):
        IntentClassifier.load(tmp_path / "clf", device="cpu")


def test_traditional_chinese_is_read_as_simplified_by_the_vote_the_classifier_and_the_answer_encoder(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hong Kong customer's 註銷我的賬戶 is the demo's 注销我的账户: the demo bot fell back three times as
    often on its Chinese test questions written in Traditional characters."""
    import json

    from sentence_transformers import SentenceTransformer

    from bot.nlu import answer_encoder
    from retrieval.text import model_text

    body = SentenceTransformer(str(tiny_model), device="cpu")
    classifier = IntentClassifier(body, ["refund", "order", "address"])
    texts, intents = ["我要退款", "退款進度怎麼查", "查詢訂單", "我的訂單在哪裡", "修改收貨地址"], ["refund"] * 2 + ["order"] * 2 + ["address"]
    monkeypatch.setattr("finetune.classifier.choose_share", lambda *args: 0.5)  # whatever the held-out lines say
    assert classifier.fit_ngrams(texts, intents, ["退款到賬了嗎"], ["refund"]) == 0.5
    assert all(model_text(gram) == gram for gram in classifier.ngrams.vocabulary)  # learnt in Simplified
    traditional, simplified = ["註銷我的賬戶", "訂單號碼是789，謝謝"], ["注销我的账户", "订单号码是789，谢谢"]
    assert np.allclose(classifier.probabilities(traditional), classifier.probabilities(simplified), atol=1e-6)
    # The tiny model's tokenizer (MiniLM's) knows few Chinese characters, 國 and 国 among them.
    assert np.allclose(classifier.probabilities(["中國"], ngrams=False), classifier.probabilities(["中国"], ngrams=False))
    encoder = answer_encoder(classifier, "tiny")
    assert np.allclose(encoder.encode_queries(["中國"]), encoder.encode_queries(["中国"]), atol=1e-6)
    # Simplified Chinese passes unchanged: the model still tells its characters apart.
    assert not np.allclose(encoder.encode_queries(["国"]), encoder.encode_queries(["学"]), atol=1e-3)
    # A model saved before deskbot read text so learnt the characters as written, and reads them so still.
    classifier.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "labels.json").read_text())
    assert meta.pop("simplified") is True
    (tmp_path / "old" / "labels.json").write_text(json.dumps(meta))
    sizes = json.loads((tmp_path / "old" / FILES).read_text())
    (tmp_path / "old" / FILES).write_text(json.dumps({**sizes, "labels.json": (tmp_path / "old" / "labels.json").stat().st_size}))
    old = IntentClassifier.load(tmp_path / "old", device="cpu")
    assert not old.simplified and not answer_encoder(old, "old").simplified
    assert not np.allclose(old.probabilities(traditional), old.probabilities(simplified), atol=1e-3)
