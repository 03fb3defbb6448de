"""``bot bench intent``, ``bot eval`` and ``bot bench nlu``, end to end on the tiny BERT and small data sets."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import finetune.bench as bench
from bot.channels.base import normalise
from bot.cli import cli
from bot.project import Example, load_project
from bot.training import held_out_texts
from dialogues.holding import acknowledges
from dialogues.store import MIGRATIONS, Exchange, Store
from finetune.bench import run_intent_bench, sample_shots
from finetune.classifier import Prediction
from finetune.evaluation import evaluate_model
from retrieval.text import same_text
from tests.conftest import configured_copy, labelled_in_the_last_deskbots_store

INTENTS = {
    "card_arrival": ["where is my new card", "my card has not arrived yet", "card still not delivered",
                     "when will the card come", "waiting for my card for a week", "card delivery is late"],
    "exchange_rate": ["what is the exchange rate", "how much is a euro in dollars", "rate for converting pounds",
                      "exchange rates today", "which rate do you use for currency", "euro to yen rate"],
}
OUT_OF_SCOPE = ["what is the weather tomorrow", "tell me a joke", "play some music", "book a table for two",
                "how tall is the eiffel tower", "set an alarm for six"]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def in_scope_rows(repeat: int = 2) -> list[dict[str, str]]:
    return [{"text": t, "intent": i} for i, texts in INTENTS.items() for t in texts] * repeat


def test_sample_shots_draws_k_per_intent_reproducibly() -> None:
    rows = [Example(f"{intent} {n}", intent) for intent, count in (("a", 20), ("b", 3), ("c", 12)) for n in range(count)]
    sample = sample_shots(rows, 5, seed=7)
    counts = {i: sum(e.intent == i for e in sample) for i in "abc"}
    assert counts == {"a": 5, "b": 3, "c": 5}
    assert len({e.text for e in sample}) == len(sample) and all(e in rows for e in sample)
    assert sample_shots(rows, 5, seed=7) == sample
    assert sample_shots(rows, 5, seed=8) != sample
    with pytest.raises(ValueError):
        sample_shots(rows, 0, seed=1)


def test_bench_intent_prints_the_figures_as_json(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", in_scope_rows())
    kinds = ["ood", "ood", "ood", "id", "id", "id"]
    test = write_jsonl(tmp_path / "test.jsonl", in_scope_rows(1) + [{"text": t, "intent": "oos", "oos_type": k}
                                                                    for t, k in zip(OUT_OF_SCOPE, kinds)])
    result = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(test),
                                      "--model", str(tiny_model), "--shots", "4", "--seed", "3", "--device", "cpu",
                                      "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("accuracy", "in_scope_accuracy", "macro_f1", "oos_recall", "auroc"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert figures["oos_precision"] is None  # nothing rejected (below), so no precision to speak of
    by_kind = figures["auroc_by_oos_type"]
    assert set(by_kind) == {"id", "ood"} and min(by_kind.values()) <= figures["auroc"] <= max(by_kind.values())
    assert figures["threshold"] == 0.0  # train has no oos line, so nothing supports rejecting anything
    assert figures["ngram_share"] == 0.0  # and nothing is held out to choose an n-gram vote's share
    assert figures["train_seconds"] > 0 and figures["examples_per_second_inference"] > 0
    assert (figures["model"], figures["device"]) == (str(tiny_model), "cpu")
    assert (figures["n"], figures["n_oos"], figures["train_examples"], figures["shots"]) == (18, 6, 8, 4)
    assert "note:" not in result.stderr
    typo = write_jsonl(tmp_path / "typo.jsonl", in_scope_rows(1) + [{"text": "my card is late", "intent": "card_arival"},
                                                                   {"text": "tell me a joke", "intent": "chitchat"}])
    typos = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(typo), "--model",
                                     str(tiny_model), "--shots", "4", "--device", "cpu", "--json"])
    assert typos.exit_code == 0, typos.output
    assert json.loads(typos.stdout)["n_oos"] == 2  # scored as out of scope, and said so
    assert ("note: 2 test intent(s) no training line has, scored as out of scope: card_arival (1; did you mean "
            "'card_arrival'?), chitchat (1)") in typos.stderr
    more = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(test), "--model",
                                    str(tiny_model), "--shots", "50", "--device", "cpu", "--json"])
    counts = Counter(row["intent"] for row in in_scope_rows())
    assert json.loads(more.stdout.strip().splitlines()[-1])["train_examples"] == sum(counts.values())  # all there is
    assert ("note: 2 intent(s) have fewer than 50 lines, and use all they have: "
            + ", ".join(f"{intent} ({n})" for intent, n in sorted(counts.items()))) in more.stderr


def test_threshold_comes_from_held_out_train_lines_never_from_test(tiny_model: Path, monkeypatch) -> None:
    train = [Example(r["text"], r["intent"]) for r in in_scope_rows(3)]
    train += [Example(t, "oos") for t in OUT_OF_SCOPE]
    seen: list[list[str]] = []
    choose = bench.choose_threshold

    def spy(true, predicted, scores, known):  # type: ignore[no-untyped-def]
        seen.append(list(true))
        return choose(true, predicted, scores, known)

    monkeypatch.setattr(bench, "choose_threshold", spy)
    easy = [Example("where is my new card", "card_arrival")]
    hard = [Example("what is the weather tomorrow", "oos"), Example("stock prices", "weather_intent_absent")]
    first = run_intent_bench(train, easy, model=str(tiny_model), device="cpu", progress=False)
    second = run_intent_bench(train, hard, model=str(tiny_model), device="cpu", progress=False)

    assert first["threshold"] == second["threshold"]  # the test lines changed, the threshold did not
    assert first["ngram_share"] == second["ngram_share"]  # nor the n-gram vote's share
    assert first["calibration_examples"] == len(seen[0]) == 2 + 2 + 1  # a tenth of 18, 18 and 6 lines
    assert "oos" in seen[0]
    assert first["train_examples"] + first["calibration_examples"] == len(train)


def test_a_given_valid_file_is_the_calibration_set(tiny_model: Path) -> None:
    train = [Example(r["text"], r["intent"]) for r in in_scope_rows()]
    valid = [Example("card not here yet", "card_arrival"), Example("tell me a story", "oos")]
    figures = run_intent_bench(train, valid, valid=valid, model=str(tiny_model), device="cpu", progress=False)
    assert figures["train_examples"] == len(train) and figures["calibration_examples"] == 2


def test_bench_intent_names_the_bad_line(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", in_scope_rows())
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"text": "fine", "intent": "card_arrival"}\n{"text": "no intent here"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(bad),
                                      "--model", str(tiny_model), "--json"])
    assert result.exit_code != 0
    assert f"{bad}:2" in result.output and "intent" in result.output


def test_bench_intent_refuses_train_lines_of_fewer_than_two_intents(tmp_path: Path) -> None:
    """A train file of only oos lines trained a model with no intents, which rejected every test line."""
    test = write_jsonl(tmp_path / "test.jsonl", in_scope_rows(1))
    for name, rows in (("oos", [{"text": t, "intent": "oos"} for t in OUT_OF_SCOPE]),
                       ("one", [{"text": t, "intent": "card_arrival"} for t in INTENTS["card_arrival"]])):
        train = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        result = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(test), "--json"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        count = 0 if name == "oos" else 1
        assert f"the training lines name {count} intent(s) besides oos; a classifier needs two or more" in result.output


def test_a_test_file_is_read_once_so_a_pipe_works(tmp_path: Path) -> None:
    """``--test <(zcat test.jsonl.gz)``: the second read of the pipe found nothing ("no examples")."""
    import os
    import threading

    pipe = tmp_path / "test.jsonl"
    os.mkfifo(pipe)
    lines = '{"text": "where is my card", "intent": "card_arrival"}\n{"text": "weather?", "intent": "oos", "oos_type": "ood"}\n'
    writer = threading.Thread(target=pipe.write_text, args=(lines,))
    writer.start()
    examples, oos_types = bench.load_test_file(pipe, pytest.fail)
    writer.join()
    assert [e.intent for e in examples] == ["card_arrival", "oos"] and oos_types == [None, "ood"]


def test_bench_intent_names_a_line_that_is_not_utf8(tiny_model: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", in_scope_rows())
    bad = tmp_path / "test.jsonl"
    bad.write_bytes('{"text": "fine", "intent": "card_arrival"}\n{"text": "卡到了吗", "intent": "card_arrival"}\n'
                    .encode("gbk"))
    result = CliRunner().invoke(cli, ["bench", "intent", "--train", str(train), "--test", str(bad),
                                      "--model", str(tiny_model), "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{bad}:2: not UTF-8 text" in result.output, result.output


def test_eval_ranks_out_of_scope_by_the_best_real_intent(tmp_path: Path) -> None:
    """A bot with an ``oos`` intent that is sure a line is out of scope ranks it least in scope."""
    rows = [{"text": "a?", "intent": "a"}, {"text": "b?", "intent": "b"},
            {"text": "weather?", "intent": "oos"}, {"text": "joke?", "intent": "oos"}]
    predictions = [Prediction("a", 0.9, [("a", 0.9), ("b", 0.05), ("oos", 0.05)]),
                   Prediction("b", 0.8, [("b", 0.8), ("oos", 0.15), ("a", 0.05)]),
                   Prediction("oos", 0.97, [("oos", 0.97), ("a", 0.02), ("b", 0.01)]),
                   Prediction("oos", 0.95, [("oos", 0.95), ("b", 0.03), ("a", 0.02)])]
    figures = evaluate_model(["a", "b", "oos"], "v0001", rows, predictions, 0.5, tmp_path)
    assert (figures["accuracy"], figures["oos_recall"], figures["auroc"]) == (1.0, 1.0, 1.0)  # not 0: by 0.03, 0.02
    report = json.loads((tmp_path / "intent_report.json").read_text())
    assert report["errors"] == []


def test_the_reports_errors_name_an_unknown_intent_as_the_test_file_does(tmp_path: Path) -> None:
    """A line of an intent the model does not know (a typo, a renamed intent) was listed as intent oos, which
    left the name to find in the test file out of the report."""
    rows = [{"text": "where is it", "intent": "track_ordr", "line": 1}, {"text": "a?", "intent": "a", "line": 2},
            {"text": "weather?", "intent": "oos", "line": 3}]
    predictions = [Prediction("a", 0.9, [("a", 0.9), ("b", 0.1)]), Prediction("b", 0.8, [("b", 0.8), ("a", 0.2)]),
                   Prediction("a", 0.7, [("a", 0.7), ("b", 0.3)])]
    evaluate_model(["a", "b"], "v0001", rows, predictions, 0.5, tmp_path)
    errors = json.loads((tmp_path / "intent_report.json").read_text())["errors"]
    assert [(e["line"], e["intent"], e.get("scored_as"), e["predicted"]) for e in errors] == [
        (1, "track_ordr", "oos", "a"), (2, "a", None, "b"), (3, "oos", None, "a")]


def test_the_report_keeps_each_intents_figures_apart_from_the_averages(tmp_path: Path) -> None:
    """scikit-learn's classification_report puts its averages among the intents: an intent named accuracy, macro avg
    or weighted avg lost its figures to the average of that name."""
    names = ["accuracy", "accuracy", "macro avg", "weighted avg"]
    rows = [{"text": f"message {n}", "intent": name} for n, name in enumerate(names)]
    answered = ["accuracy", "macro avg", "macro avg", "weighted avg"]  # the second line is answered wrong
    predictions = [Prediction(name, 0.9, [(name, 0.9)]) for name in answered]
    evaluate_model(sorted(set(names)), "v0001", rows, predictions, 0.5, tmp_path)
    report = json.loads((tmp_path / "intent_report.json").read_text())
    assert report["per_intent"] == {
        "accuracy": {"precision": 1.0, "recall": 0.5, "f1-score": pytest.approx(2 / 3), "support": 2},
        "macro avg": {"precision": 0.5, "recall": 1.0, "f1-score": pytest.approx(2 / 3), "support": 1},
        "weighted avg": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 1}}
    summary = report["summary"]
    assert summary["accuracy"] == report["figures"]["accuracy"] == 0.75
    assert summary["macro avg"] == {"precision": pytest.approx(5 / 6), "recall": pytest.approx(5 / 6),
                                    "f1-score": pytest.approx(7 / 9), "support": 4}
    # weighted by support: (2 * 2/3 + 2/3 + 1) / 4
    assert summary["weighted avg"]["f1-score"] == pytest.approx(3 / 4) and summary["weighted avg"]["support"] == 4


def test_the_plots_draw_chinese_intent_names_or_say_once_why_not(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Matplotlib's DejaVu Sans has no Chinese: every name drew as boxes, under a warning per character."""
    import warnings

    from matplotlib import font_manager

    from finetune.evaluation import fonts_for

    names = ["查询订单", "申请退款"]
    rows = [{"text": "订单到哪了", "intent": names[0]}, {"text": "我要退款", "intent": names[1]}]
    predictions = [Prediction(name, 0.9, [(name, 0.9)]) for name in names]
    families = fonts_for(names)  # `make test` installs a Chinese font (Debian's fonts-wqy-microhei)
    assert len(families) == 2 and families[0] == fonts_for(["track_order"])[0]
    chinese = font_manager.findfont(font_manager.FontProperties(family=families[1]), fallback_to_default=False)
    assert {ord(ch) for ch in "".join(names)} <= set(font_manager.get_font(chinese).get_charmap())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate_model(names, "v0001", rows[:1], predictions[:1], 0.5, tmp_path / "drawn")  # one intent: one label
        monkeypatch.setattr(font_manager, "findSystemFonts", lambda *args, **kwargs: [])  # a machine without one
        evaluate_model(names, "v0001", rows, predictions, 0.5, tmp_path / "boxes")
    assert [str(w.message) for w in seen] == []  # no warning per glyph, none of scikit-learn's
    notes = [r.getMessage() for r in caplog.records if "no installed font has" in r.getMessage()]
    assert len(notes) == 1 and "fonts-wqy-microhei" in notes[0]
    assert (tmp_path / "boxes" / "intent_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.undo()
    assert fonts_for([*names, "𠮷野家"]) == families  # a character no font has leaves the others drawn


def test_intent_names_are_drawn_as_text_and_long_ones_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"pay_$5_or_$10" was read as mathtext and failed bot eval with a traceback; one 80-character name made
    the layout give up and clip every label."""
    import warnings

    from sklearn.metrics import ConfusionMatrixDisplay

    drawn: dict[str, Any] = {}
    draw = ConfusionMatrixDisplay.from_predictions
    monkeypatch.setattr(ConfusionMatrixDisplay, "from_predictions", lambda *a, **k: (drawn.update(k), draw(*a, **k))[1])
    names = ["pay_$5_or_$10", "Very.Long-Intent_Name" + "_x" * 30, "Very.Long-Intent_Name" + "_x" * 29 + "_y", "greet"]
    rows = [{"text": f"message {n}", "intent": name} for n, name in enumerate(names)]
    predictions = [Prediction(name, 0.9, [(name, 0.9)]) for name in names]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate_model(names, "v0001", rows, predictions, 0.5, tmp_path)
    assert [str(w.message) for w in seen] == []  # "Tight layout not applied" was one
    assert (tmp_path / "intent_confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = drawn["display_labels"]
    assert len(set(shown)) == len(names) and max(map(len, shown)) <= 40  # two long names alike stay apart


@pytest.mark.parametrize(("intents", "axes"), [(30, 1), (31, 2)])
def test_a_confusion_matrix_too_large_for_its_counts_has_a_colour_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         intents: int, axes: int) -> None:
    """Past 30 intents the cells hold no counts, and without a colour scale nothing said what a colour counted."""
    from sklearn.metrics import ConfusionMatrixDisplay

    displays: list[Any] = []
    draw = ConfusionMatrixDisplay.from_predictions
    monkeypatch.setattr(ConfusionMatrixDisplay, "from_predictions", lambda *a, **k: displays.append(draw(*a, **k)))
    names = [f"intent_{n}" for n in range(intents)]
    rows = [{"text": f"message {n}", "intent": name} for n, name in enumerate(names)]
    predictions = [Prediction(name, 0.9, [(name, 0.9)]) for name in names]
    evaluate_model(names, "v0001", rows, predictions, 0.5, tmp_path)
    assert len(displays[0].figure_.axes) == axes  # the matrix, and its colour scale where the counts are left out


def test_the_colour_scale_of_a_large_confusion_matrix_counts_whole_lines(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Its ticks read 0.5, 1.5 and 2.5 between the counts of lines, where no cell holds half a line."""
    from sklearn.metrics import ConfusionMatrixDisplay

    displays: list[Any] = []
    draw = ConfusionMatrixDisplay.from_predictions
    monkeypatch.setattr(ConfusionMatrixDisplay, "from_predictions", lambda *a, **k: (displays.append(draw(*a, **k)),
                                                                                    displays[-1])[1])
    names = [f"intent_{n}" for n in range(40)]
    rows = [{"text": f"message {n}", "intent": name} for n, name in enumerate(names)] * 3
    predictions = [Prediction(row["intent"], 0.9, [(row["intent"], 0.9)]) for row in rows]
    evaluate_model(names, "v0001", rows, predictions, 0.5, tmp_path)
    scale = displays[0].figure_.axes[1]
    ticks = [tick for tick in scale.get_yticks() if 0 <= tick <= 3]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)


def test_eval_writes_the_report_and_both_plots(tiny_demo_bot: Path, tmp_path: Path) -> None:
    marked = [{"text": "tell me a joke", "intent": "oos", "oos_type": "ood"},
              {"text": "can I pay for my order in gold bars", "intent": "oos", "oos_type": "id"}]
    test = tmp_path / "test.jsonl"
    test.write_text((tiny_demo_bot / "test.jsonl").read_text() + "".join(json.dumps(r) + "\n" for r in marked))
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results",
                                      str(tmp_path / "results"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    lines = test.read_text().strip().splitlines()
    assert figures["n"] == len(lines)
    assert set(figures["auroc_by_oos_type"]) == {"id", "ood"}
    report = json.loads((tmp_path / "results" / "intent_report.json").read_text())
    # everything printed, the replies and the notes on the test file too, but the folder's own name
    assert report["figures"] == {k: v for k, v in figures.items() if k != "results"} and figures["replies"]
    assert len(report["errors"]) == round((1 - figures["accuracy"]) * len(lines))
    for png in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (tmp_path / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_scores_another_version_than_the_serving_one(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A candidate the gate refused could be measured on the shop's own test file only by serving it."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", thresholds={"intent": "auto"})
    models = root / "models"
    shutil.copytree(models / "v0001", models / "v0002")
    meta = json.loads((models / "v0002" / "meta.json").read_text())
    (models / "v0002" / "meta.json").write_text(json.dumps({**meta, "intent_threshold": 0.0123}))
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "where is my parcel?", "intent": "track_order"}])

    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--version", "v0002", "--results",
                                      str(tmp_path / "r"), "--json", "--device", "cpu"])

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["model_version"] == "v0002" and figures["threshold"] == 0.0123  # its own calibrated threshold
    assert (models / "CURRENT").read_text().strip() == "v0001"
    assert "note: v0002 does not serve (v0001 does): these are its figures, not those of the bot as it answers now" \
        in result.stderr
    served = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--version", "v0001", "--results",
                                      str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert served.exit_code == 0 and "does not serve" not in served.stderr
    missing = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--version", "v0009"])
    assert missing.exit_code == 1 and "no model version 'v0009'" in missing.output


def test_eval_scores_the_model_as_bot_serve_runs_it(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """int8 and traced on a CPU, as bot.yml's server.inference says: the figures are the served model's."""
    from bot.channels.base import normalise
    from bot.nlu import NLU
    from bot.project import load_project
    from finetune.registry import Registry

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"inference": {"quantize": "int8"}})
    project = load_project(root)
    version = Registry(project.models_dir).current_path()
    served = NLU.load(version, device="cpu", inference=project.config.server.inference)
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--results",
                                      str(tmp_path / "results"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "results" / "intent_report.json").read_text())
    analyses = [served.analyse([normalise(r["text"])])[0] for r in rows]  # one at a time, as a channel hands them over
    confidences = {r["text"]: round(a.prediction.confidence, 4) for r, a in zip(rows, analyses)}
    assert report["errors"] and all(e["confidence"] == confidences[e["text"]] for e in report["errors"])


def test_eval_counts_what_the_bot_answers(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Each question through the reply policy: right, wrong or the fallback, by source, and the misses listed, in a
    report for its owner alone (it was readable by every account on the machine, the test file's questions in it)."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()]
    rows.append({"text": "tell me a joke", "intent": "oos"})
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results",
                                      str(tmp_path / "results"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    replies = json.loads(result.stdout.strip().splitlines()[-1])["replies"]
    assert replies["right"] + replies["wrong"] + replies["fallback"] == len(rows)
    assert sum(sum(counts.values()) for counts in replies["by_source"].values()) == len(rows)
    misses = json.loads((tmp_path / "results" / "reply_report.json").read_text())["misses"]
    assert len(misses) == replies["wrong"] + replies["fallback"]
    assert all(m["outcome"] in ("wrong", "fallback") and m["reply"] is not None for m in misses)
    # each report quotes the test file's questions, often customers': for the owner alone, as bot export's file
    for report in ("reply_report.json", "intent_report.json"):
        assert (tmp_path / "results" / report).stat().st_mode & 0o777 == 0o600, report


def test_eval_reads_intents_as_nlu_yml_holds_them_and_names_the_unknown(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """"track_order " is track_order, as bot init --from-jsonl reads it; a typo is scored out of scope, and said."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()]
    spaced = [{**r, "intent": f" {r['intent']}\u3000"} for r in rows]
    runs = []
    typos = [{"text": text, "intent": "track_ordr"} for text in ("where is my parcel", "parcel?", "my order", "order")]
    for lines in (rows, spaced + typos):
        result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(write_jsonl(tmp_path / "t.jsonl", lines)),
                                          "--results", str(tmp_path / "results"), "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        runs.append((json.loads(result.stdout.strip().splitlines()[-1]), result.stderr))
    (plain, quiet), (padded, warned) = runs
    assert padded["in_scope_accuracy"] == plain["in_scope_accuracy"] and padded["n_oos"] == plain["n_oos"] + len(typos)
    assert "test intent" not in quiet and "1 test intent the model does not know, scored as out of scope: track_ordr " \
        f"(4 lines: {len(rows) + 1}, {len(rows) + 2}, {len(rows) + 3} …; did you mean 'track_order'?); correct a typo, or an intent renamed in nlu.yml since, in the test file: its lines count as right " \
        "only where the bot declines them" in warned
    blank = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(write_jsonl(tmp_path / "b.jsonl", [
        rows[0], {"text": "hi", "intent": " \u3000"}])), "--results", str(tmp_path / "results"), "--device", "cpu"])
    assert blank.exit_code == 1 and "b.jsonl:2: the intent is empty" in blank.output  # not an unnamed unknown intent


def test_eval_says_why_a_figure_is_missing_where_json_says_null(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Printed for a person, a figure a test file cannot give (AUROC without out-of-scope lines) read Python's None."""
    printed = {}
    for name, rows in (("in_scope", [{"text": "where is my parcel?", "intent": "track_order"}]),
                       ("off_topic", [{"text": "tell me a joke", "intent": "oos"}])):
        test = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results", str(tmp_path / name),
                                          "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "None" not in result.stdout
        printed[name] = {key.strip(): value for key, value in (line.split(": ", 1) for line in result.stdout.splitlines())}
    absent = "n/a (no test line is out of scope: add some of intent oos)"
    assert (printed["in_scope"]["oos_recall"], printed["in_scope"]["auroc"]) == (absent, absent)
    assert printed["off_topic"]["in_scope_accuracy"] == printed["off_topic"]["auroc"] == \
        "n/a (every test line is out of scope)"


def test_eval_refuses_a_text_longer_than_the_server_takes(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A ticket's whole thread was scored as a question, where the server refuses a message past
    server.max_message_chars: the figures counted what no customer can ask."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"max_message_chars": 80})
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "where is my parcel", "intent": "track_order"},
                                              {"text": "where is my parcel, " * 5, "intent": "track_order"}])
    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"{test}:2: the text is 100 characters long, more than a customer's message may be (80: " \
           "server.max_message_chars)" in result.output
    assert not (root / "results" / "reply_report.json").exists()  # refused before the model ran


@pytest.mark.parametrize("test", [[], ["--test", "test.jsonl"]])
def test_eval_without_its_test_file_says_how_to_write_one(tmp_path: Path, test: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`bot init` writes no test file, and the README's `bot eval mybot --test test.jsonl` was answered "Path
    'test.jsonl' does not exist" (or, without --test, "Missing option"), nothing saying what the file holds."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "mybot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    result = CliRunner().invoke(cli, ["eval", str(root), *test])
    assert result.exit_code == 1, result.output
    assert ('one {"text": "where is my parcel?", "intent": "track_order"} a line ("intent": "oos" for one it should '
            f"decline), to test.jsonl, then run `bot eval {root} --test test.jsonl`") in result.output
    assert ("test.jsonl does not exist: " if test else "bot eval needs --test FILE: ") in result.output


def test_eval_reads_a_csv_test_file_as_bot_init_reads_one(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A helpdesk's questions, exported as CSV, were refused as "not JSON": they score as their JSON Lines do."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()][:20]
    table = tmp_path / "t.csv"
    with table.open("w", newline="", encoding="utf-8-sig") as out:
        csv.writer(out).writerows([["Question", "Intent"], *([r["text"], r["intent"]] for r in rows)])
    runs = [CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results", str(tmp_path / "r"),
                                     "--json", "--device", "cpu"]) for test in (write_jsonl(tmp_path / "t.jsonl", rows), table)]
    assert all(run.exit_code == 0 for run in runs), runs[-1].output
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
    with table.open("a", newline="", encoding="utf-8") as out:
        csv.writer(out).writerow(["where is my parcel", ""])
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(table), "--device", "cpu"])
    assert result.exit_code == 1 and f"{table}:22: the intent is empty" in result.output, result.output
    misnamed = tmp_path / "export.jsonl"  # said of a CSV file named as JSON Lines
    misnamed.write_bytes(table.read_bytes())
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(misnamed), "--device", "cpu"])
    assert result.exit_code == 1 and "the file looks like CSV" in result.output
    assert "or name it .csv to be read as CSV" in result.output, result.output


def test_eval_names_the_lines_of_an_unknown_intent_in_a_csv_test_file(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A CSV row's line is the one it starts on, past the header, a blank row and a question quoted over two lines,
    as the file's editor shows it: not its count of rows. An intent of one line is said at it: "(1 line: 8)" read as
    two counts."""
    table = tmp_path / "t.csv"
    table.write_text('Question,Intent\nwhere is my order,track_order\n"where is\nmy parcel",track_ordr\n\n'
                     "parcel?,track_ordr\nI want my money back,get_refund\nwhere's my refund,refund_status\n",
                     encoding="utf-8")

    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(table), "--results",
                                      str(tmp_path / "results"), "--json", "--device", "cpu"])

    assert result.exit_code == 0, result.output
    assert "2 test intents the model does not know, scored as out of scope: refund_status (line 8), track_ordr " \
        "(2 lines: 3, 6; did you mean 'track_order'?); " in result.stderr, result.stderr


def test_eval_leaves_out_button_payloads(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """"/handoff" and "/track_refund" were scored as questions for the model, and counted as its misses, where
    the bot answers them without it."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()][:30]
    clicks = [{"text": "/handoff", "intent": "contact_human_agent"}, {"text": "/track_refund ", "intent": "track_refund"}]
    runs = []
    for name, lines in (("plain", rows), ("clicked", clicks[:1] + rows + clicks[1:]), ("only", clicks)):
        runs.append(CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(write_jsonl(tmp_path / f"{name}.jsonl", lines)),
                                             "--results", str(tmp_path / name), "--json", "--device", "cpu"]))
    plain, clicked, only = runs
    assert plain.exit_code == clicked.exit_code == 0, clicked.output
    assert json.loads(clicked.stdout)["replies"] == json.loads(plain.stdout)["replies"]
    assert "2 test lines are a button's payload (/handoff), which selects its intent without the model: left out" in clicked.stderr
    assert only.exit_code == 1 and "no test line is a question for the model" in only.output


def test_eval_says_when_it_is_scored_on_the_examples_the_model_learnt(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A test file made of nlu.yml's own examples scored the model perfect without a word; and reviewed labels
    a retrain had taught the model were not counted among what it learnt (and `bot train` learns none)."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    project = load_project(root)
    held = held_out_texts(project)
    learnt = [{"text": e.text.upper(), "intent": e.intent} for e in project.examples if same_text(e.text) not in held][:3]
    # as a chat log writes them: "我要退款！" is the example "我要退款"
    chinese = next(e for e in project.examples if same_text(e.text) not in held and "\u4e00" <= e.text[0] <= "\u9fff")
    learnt.append({"text": chinese.text + "！！", "intent": chinese.intent})
    store = Store(root / "dialogues.db")
    for text in ("my parcel went to my neighbour 12", "my parcel went to the wrong house"):
        store.add_labels([store.log_exchange(Exchange("c1", "web", None, text, None, "Sorry?", None, 0.2, [], "fallback",
                                                      "v0001"))[0]], "track_order")
    store.close()
    meta_path = root / "models" / "v0001" / "meta.json"  # as a retrain that learnt the first label writes it
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "learned_through": {"label": 1}}))
    labelled = [{"text": "My parcel went to my neighbour 345!", "intent": "track_order"},
                {"text": "my parcel went to the wrong house", "intent": "track_order"}]  # labelled since: not learnt
    new = [{"text": "is there a shop in Lisbon?", "intent": "oos"}]
    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(write_jsonl(tmp_path / "t.jsonl", learnt + labelled + new)),
                                      "--results", str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "5 of 7 test lines are examples the model was trained on (nlu.yml and reviewed labels)" in result.stderr
    meta_path.write_text(json.dumps({k: v for k, v in json.loads(meta_path.read_text()).items() if k != "learned_through"}))
    trained = CliRunner().invoke(cli, ["eval", str(root), "--test", str(tmp_path / "t.jsonl"), "--results",
                                       str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert "4 of 7 test lines are examples the model was trained on" in trained.stderr  # bot train's: nlu.yml's alone
    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(write_jsonl(tmp_path / "n.jsonl", new)),
                                      "--results", str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert "trained on" not in result.stderr


def test_eval_scores_the_model_on_an_older_deskbots_store_reading_its_labels_as_they_are(tiny_demo_bot: Path,
                                                                                          tmp_path: Path) -> None:
    """Deskbot upgraded and its model tried before `bot serve` restarted: `bot eval` of a model that learnt reviewed
    labels refused the store, not yet migrated, and scored nothing; then it scored, but counted the test lines the
    model learnt from the store's labels as new questions, which the older store, read as it is, tells."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    labelled_in_the_last_deskbots_store(root / "dialogues.db", "my parcel never showed up at all", "track_order")
    meta_path = root / "models" / "v0001" / "meta.json"  # as a retrain that learnt the first label writes it
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "learned_through": {"label": 1}}))
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "is there a shop in Lisbon?", "intent": "oos"},
                                              {"text": "my parcel never showed up at all!", "intent": "track_order"}])
    eval_ = ["eval", str(root), "--test", str(test), "--results", str(tmp_path / "r"), "--json", "--device", "cpu"]
    result = CliRunner().invoke(cli, eval_)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replies"]
    assert "1 of 2 test lines is an example the model was trained on" in result.stderr
    assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as older, older:
        older.execute("DROP TABLE review_labels")  # as a deskbot from before review labels kept it
        older.execute("PRAGMA user_version=1")
    result = CliRunner().invoke(cli, eval_)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replies"]
    assert ("is at migration 1, an older deskbot's, which lacks what this reads (no such table: review_labels): test "
            "lines the model learnt from its reviewed labels count as new questions; `bot serve` of this deskbot "
            "migrates the store as it starts") in result.stderr


def test_eval_scores_the_model_beside_a_newer_deskbots_store_and_says_what_it_could_not_count(tiny_demo_bot: Path,
                                                                                              tmp_path: Path) -> None:
    """Gone back to this deskbot after an upgrade migrated the store: `bot eval` of a model that learnt reviewed labels
    refused to score it, as its count of the test lines learnt read the store, though scoring needs none of it, as
    beside an older deskbot's."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    store.close()
    meta_path = root / "models" / "v0001" / "meta.json"  # as a retrain that learnt the first label writes it
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "learned_through": {"label": 1}}))
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "is there a shop in Lisbon?", "intent": "oos"}])

    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(test), "--results", str(tmp_path / "r"),
                                      "--json", "--device", "cpu"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replies"]
    assert (f"{root / 'dialogues.db'} was written by a newer deskbot (schema {len(MIGRATIONS) + 1}; this one reads up "
            f"to {len(MIGRATIONS)}): upgrade deskbot. Test lines the model learnt from its reviewed labels count as new "
            "questions; `bot eval` of the newer deskbot counts them") in " ".join(result.stderr.split())


def test_eval_says_when_it_is_scored_on_the_examples_its_threshold_was_chosen_on(tiny_demo_bot: Path,
                                                                                 tmp_path: Path) -> None:
    """models/evaluation.jsonl, the frozen set training calibrated the threshold and the n-gram share on, made a
    test file whose figures flattered the model without a word."""
    frozen = [json.loads(line) for line in (tiny_demo_bot / "models" / "evaluation.jsonl").read_text().splitlines()][:3]
    rows = [{**frozen[0], "text": frozen[0]["text"].upper() + "!"}, *frozen[1:], {"text": "is there a shop in Lisbon?",
                                                                                  "intent": "oos"}]
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                      "--results", str(tmp_path / "r"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3 of 4 test lines are in the frozen evaluation set" in result.stderr
    assert "trained on" not in result.stderr


def test_eval_json_holds_what_its_notes_say_of_the_test_file(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """The notes went to stderr alone: a script reading --json took figures scored on the model's own examples, or
    on intents it does not know, for figures on new questions."""
    project = load_project(tiny_demo_bot)
    frozen = [json.loads(line) for line in (tiny_demo_bot / "models" / "evaluation.jsonl").read_text().splitlines()][:2]
    held = held_out_texts(project)
    learnt = [{"text": e.text, "intent": e.intent} for e in project.examples if same_text(e.text) not in held][:3]
    rows = [*frozen, *learnt, {"text": "where is my parcel", "intent": "track_ordr"}, {"text": "is it sunny in Lisbon", "intent": "weather"},
            {"text": "will it rain in Porto", "intent": "weather"}, {"text": "/handoff", "intent": "contact_human_agent"}]
    test = write_jsonl(tmp_path / "t.jsonl", rows)
    runs = [CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results", str(tmp_path / "r"),
                                     "--device", "cpu", *json_flag]) for json_flag in (["--json"], [])]
    assert all(run.exit_code == 0 for run in runs), runs[0].output
    figures = json.loads(runs[0].stdout)
    assert figures["test_file"] == {"unknown_intents": {"track_ordr": 1, "weather": 2}, "button_payload_lines_left_out": 1,
                                    "trained_on": 3, "in_evaluation_set": 2}
    assert "3 of 8 test lines are examples the model was trained on" in runs[0].stderr
    assert "2 of 8 test lines are in the frozen evaluation set" in runs[0].stderr
    assert f"test_file: {json.dumps(figures['test_file'])}" in runs[1].stdout  # the text shows the same


def test_bench_nlu_scores_lines_as_the_server_sees_them(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A zero-width space or a full-width letter is normalised away before the model, as bot serve does; an
    intent spelled " track_order " is track_order (before, such lines were dropped as unknown intents). A
    button's payload is answered without the model: it is left out (before, scored as the model's miss)."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()][:40]
    messy = [{"text": "\u200b" + r["text"].replace("a", "\uff41"), "intent": f" {r['intent']}\u3000"} for r in rows]
    clicked = rows + [{"text": "/track_order", "intent": "track_order"}, {"text": " /handoff", "intent": "contact_human_agent"}]
    runs = []
    for name, lines in (("plain", rows), ("messy", messy), ("clicked", clicked)):
        result = CliRunner().invoke(cli, ["bench", "nlu", str(tiny_demo_bot), "--test",
                                          str(write_jsonl(tmp_path / f"{name}.jsonl", lines)), "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.stdout)
        runs.append(({v["variant"]: (v["accuracy"], v["retrieval_hit_at_1"], v["retrieval_mrr"]) for v in figures["variants"]},
                     figures["test_lines"], figures["button_payload_lines_left_out"]))
    assert runs[0] == runs[1] and len(runs[0][0]) == 3
    assert runs[2] == (runs[0][0], runs[0][1], 2)
    fp32 = next(v for v in figures["variants"] if v["variant"] == "one_pass_fp32")
    assert fp32["intent_changes_alone"] == 0 and fp32["confidence_change_alone"] < 0.001  # float32: batchmates change nothing


def test_bench_nlu_times_each_variant_warm() -> None:
    """Timed at its first call, the traced one-pass design was still being optimised while the two-pass one came
    warm: two passes timed faster than one."""
    import time

    from bot.nlu_bench import TIMED_RUNS, _score

    calls = []

    def run() -> tuple[list[str], list[list[Any]]]:
        time.sleep(0.5 if not calls else 0.01)  # the first call is the slow, cold one
        calls.append(1)
        return ["a", "b"], [[], []]

    figures = _score("one_pass_fp32", run, ["a", "c"])
    assert len(calls) == 1 + TIMED_RUNS and figures["accuracy"] == 0.5
    assert figures["messages_per_s"] > 2 / 0.1  # the median of the warm runs, not the cold one


def test_eval_at_another_threshold_answers_at_that_cut(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """--threshold moves the intent figures' cut and the reply policy's together: at 0 every question gets its
    intent's answer, at 1 none does (a line that only thanks or acknowledges gets fallback.acknowledged, of none)."""
    test = tiny_demo_bot / "test.jsonl"
    figures = {}
    for cut in (0.0, 1.0):
        result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--threshold", str(cut),
                                          "--results", str(tmp_path / str(cut)), "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        figures[cut] = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures[0.0]["threshold"] == 0.0 and figures[1.0]["threshold"] == 1.0
    assert figures[0.0]["replies"]["fallback"] == 0 and "fallback" not in figures[0.0]["replies"]["by_source"]
    thanks = sum(acknowledges(normalise(json.loads(line)["text"])) for line in test.read_text().splitlines())
    assert "action" not in figures[1.0]["replies"]["by_source"]
    assert figures[1.0]["replies"]["by_source"]["template"] == {"right": thanks} and thanks > 0
    assert figures[1.0]["in_scope_accuracy"] == 0.0


def test_eval_reports_name_each_wrong_answers_line_in_the_test_file(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """The reports gave a wrong answer's text alone, to be searched for in the test file, where a blank line or a
    CSV question over two lines put it elsewhere than its count of rows, and a text there twice made two lines."""
    rows = [json.loads(line) for line in (tiny_demo_bot / "test.jsonl").read_text().splitlines()][:12]
    test = tmp_path / "t.jsonl"
    test.write_text("\n".join(json.dumps(row) + ("\n" if n == 3 else "") for n, row in enumerate(rows)) + "\n")
    result = CliRunner().invoke(cli, ["eval", str(tiny_demo_bot), "--test", str(test), "--results", str(tmp_path / "r"),
                                      "--device", "cpu", "--threshold", "1"])
    assert result.exit_code == 0, result.output
    lines = test.read_text().split("\n")
    errors = json.loads((tmp_path / "r" / "intent_report.json").read_text())["errors"]
    misses = json.loads((tmp_path / "r" / "reply_report.json").read_text())["misses"]
    assert errors and misses and {error["line"] for error in errors} & set(range(6, 14))  # past the blank line
    for wrong in errors + misses:
        assert json.loads(lines[wrong["line"] - 1])["text"] == wrong["text"]


@pytest.mark.usefixtures("one_torch_thread")  # as the fixture's bot was trained: the threads' sums are added in another order
def test_the_same_data_and_seed_train_a_model_of_the_same_figures(small_bot: Path, tmp_path: Path) -> None:
    """bot train again on the same files and model.seed: the same frozen figures and threshold, and bot eval's the same."""
    from bot.training import train_project

    again = Path(shutil.copytree(small_bot, tmp_path / "again", ignore=shutil.ignore_patterns("models", "results", "*.db*")))
    train_project(load_project(again), device="cpu", progress=False)

    def measured(bot: Path) -> dict[str, Any]:
        return {k: v for k, v in json.loads((bot / "models" / "v0001" / "metrics.json").read_text()).items()
                if k != "train_seconds"}
    assert measured(again) == measured(small_bot)
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "where is my package", "intent": "track_order"},
                                              {"text": "I want to cancel my order", "intent": "cancel_order"},
                                              {"text": "what's the weather like", "intent": "oos"}])
    figures = []
    for bot in (small_bot, again):
        result = CliRunner().invoke(cli, ["eval", str(bot), "--test", str(test), "--results", str(tmp_path / bot.name),
                                          "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        figures.append({k: v for k, v in json.loads(result.stdout).items() if k != "results"})
    assert figures[0] == figures[1]


def test_eval_says_where_its_threshold_comes_from(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """threshold: 0.5 read alike whether bot.yml fixed it, training calibrated it, --threshold asked for it, or
    training kept the default for want of held-out examples to calibrate on."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", thresholds={"intent": "auto"})
    test = write_jsonl(tmp_path / "t.jsonl", [{"text": "where is my parcel?", "intent": "track_order"}])

    def threshold_from(bot: Path, *options: str) -> tuple[float, str]:
        result = CliRunner().invoke(cli, ["eval", str(bot), "--test", str(test), "--results", str(tmp_path / "r"),
                                          "--json", "--device", "cpu", *options])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.stdout)
        report = json.loads((tmp_path / "r" / "intent_report.json").read_text())["figures"]
        assert report["threshold_from"] == figures["threshold_from"]  # the report kept beside the plots says it too
        return figures["threshold"], figures["threshold_from"]

    assert threshold_from(tiny_demo_bot) == (0.5, "bot.yml")  # the demo fixes its own
    assert threshold_from(root, "--threshold", "0.25") == (0.25, "--threshold")
    assert threshold_from(root) == (0.5, "version")  # trained while bot.yml fixed it, and kept in its meta.json
    metrics_path = root / "models" / "v0001" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    meta_path = root / "models" / "v0001" / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "intent_threshold": 0.4321}))
    metrics_path.write_text(json.dumps({**metrics, "threshold_calibrated": True}))  # as bot train records a calibration
    assert threshold_from(root) == (0.4321, "calibrated")
    metrics_path.write_text(json.dumps({**metrics, "threshold_calibrated": False}))  # too few held out, as bot train says
    assert threshold_from(root)[1] == "default"


def test_eval_of_a_corrupt_model_says_which_folder(tiny_demo_bot: Path, tmp_path: Path) -> None:
    import shutil

    from finetune.registry import Registry

    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot"))
    version = Registry(root / "models").current_path()
    (version / "classifier" / "labels.json").write_text("{not json")
    result = CliRunner().invoke(cli, ["eval", str(root), "--test", str(root / "test.jsonl")])
    assert result.exit_code != 0
    assert f"{version / 'classifier'}: cannot load the classifier" in result.output
