"""Serving inference: passes by token budget, two threads at once and the traced encoder all answer as the plain model."""

from __future__ import annotations

import logging
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

import bot.nlu
from bot.nlu import NLU, as_measured, as_served, serving_classifier, token_passes
from bot.project import InferenceConfig, load_project
from finetune import classifier as classifier_module
from finetune.classifier import IntentClassifier
from finetune.registry import Registry


def test_passes_group_similar_lengths_within_the_budget() -> None:
    lengths = [40, 5, 6, 90, 5, 7, 41]
    groups = token_passes(lengths, budget=64)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups[0] == [1, 4, 2, 5]  # the four short ones, shortest first: 4 x 7 tokens
    assert all(len(g) * max(lengths[i] for i in g) <= 64 or len(g) == 1 for g in groups)
    assert [3] in groups  # longer than the budget: a pass of its own


def test_answers_in_passes_match_one_pass_in_the_batch_order(tiny_demo_bot: Path) -> None:
    path = Registry(tiny_demo_bot / "models").current_path()
    texts = ["hi", "where is my order 12345, it was due last week and nobody answers the phone", "refund please",
             "cancel", "I would like to change the delivery address of the parcel I ordered yesterday", "thanks"]
    whole = NLU.load(path, device="cpu", inference=InferenceConfig(quantize="none", pass_tokens=100_000))
    passes = NLU.load(path, device="cpu", inference=InferenceConfig(quantize="none", pass_tokens=16))
    assert len(token_passes([len(t.split()) for t in texts], 16)) > 1
    one, many = whole.analyse(texts), passes.analyse(texts)
    assert [a.prediction.intent for a in one] == [a.prediction.intent for a in many]
    assert np.allclose([a.prediction.confidence for a in one], [a.prediction.confidence for a in many], atol=1e-4)
    assert [[h.id for h in a.hits] for a in one] == [[h.id for h in a.hits] for a in many]


def test_batches_analysed_from_two_threads_at_once_answer_as_one_at_a_time(tiny_demo_bot: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = Registry(tiny_demo_bot / "models").current_path()
    nlu = NLU.load(path, device="cpu", inference=InferenceConfig(quantize="none", pass_tokens=32, workers=2))
    assert nlu.workers == 2
    batches = [[f"order {n} " + "is late " * ((n + b) % 7) for n in range(12)] for b in range(8)]
    serial = [[a.prediction.intent for a in nlu.analyse(batch)] for batch in batches]
    with ThreadPoolExecutor(2) as pool:
        concurrent = [[a.prediction.intent for a in result] for result in pool.map(nlu.analyse, batches * 3)]
    assert concurrent == serial * 3


def test_the_traced_encoder_answers_as_the_eager_one(tiny_demo_bot: Path) -> None:
    path = Registry(tiny_demo_bot / "models").current_path()
    eager = NLU.load(path, device="cpu", inference=InferenceConfig(trace=False))
    traced = NLU.load(path, device="cpu", inference=InferenceConfig(trace=True))
    # padded batches, a batch of one (no padding at all) and a message longer than the trace's example
    batches = [["hi", "where is my order 12345, it was due last week"], ["refund please"],
               ["I would like to change the delivery address " * 3, "cancel", "thanks"]]
    for batch in batches:
        _, want = eager.classifier.predict_with_embeddings(batch)
        _, got = traced.classifier.predict_with_embeddings(batch)
        assert np.allclose(want, got, atol=1e-5)


def test_a_swap_to_a_model_of_the_same_architecture_traces_nothing_anew(
        tiny_demo_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch keeps every graph it traces for good: tracing each model a server swapped to grew it by
    # about 10 MB a swap (MiniLM). The next model copies the serving one's trace, on its own weights.
    traced = []
    trace = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *args, **kwargs: traced.append(1) or trace(*args, **kwargs))
    monkeypatch.setattr(classifier_module, "_TRACES", weakref.WeakValueDictionary())
    path = Registry(tiny_demo_bot / "models").current_path()
    serving = NLU.load(path, device="cpu", inference=InferenceConfig(trace=True, quantize="none"))
    swapped = NLU.load(path, device="cpu", inference=InferenceConfig(trace=True, quantize="none"))
    with torch.no_grad():  # the new model's weights differ from the serving one's, as a retrained one's do
        for weight in swapped.classifier.encoder.parameters():
            weight.add_(torch.randn_like(weight) * 0.05)
    swapped.classifier.trace()
    eager = NLU.load(path, device="cpu", inference=InferenceConfig(trace=False, quantize="none"))
    assert len(traced) == 1 and swapped.classifier._traced is not None
    batch = ["hi", "where is my order 12345, it was due last week", "refund please"]
    _, before = eager.classifier.predict_with_embeddings(batch)
    _, still = serving.classifier.predict_with_embeddings(batch)
    assert np.allclose(still, before, atol=1e-5)  # the serving model answers as it did
    _, got = swapped.classifier.predict_with_embeddings(batch)
    swapped.classifier._traced = None  # its own eager encoder
    _, want = swapped.classifier.predict_with_embeddings(batch)
    assert not np.allclose(want, before, atol=1e-3) and np.allclose(got, want, atol=1e-5)


def test_an_encoder_that_cannot_be_traced_runs_eagerly(tiny_demo_bot: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("this architecture does not trace")

    path = Registry(tiny_demo_bot / "models").current_path()
    want = NLU.load(path, device="cpu", inference=InferenceConfig(trace=False)).analyse(["refund please"])
    monkeypatch.setattr(torch.jit, "trace", refuse)
    monkeypatch.setattr(classifier_module, "_TRACES", weakref.WeakValueDictionary())  # no trace to copy
    with caplog.at_level(logging.WARNING):
        nlu = NLU.load(path, device="cpu", inference=InferenceConfig(trace=True))
    assert "cannot be traced" in caplog.text and "does not trace" in caplog.text
    got = nlu.analyse(["refund please"])
    assert got[0].prediction.intent == want[0].prediction.intent
    assert got[0].prediction.confidence == pytest.approx(want[0].prediction.confidence, abs=1e-5)


def test_loading_and_answering_leave_no_library_warnings_in_the_log(tiny_demo_bot: Path) -> None:
    # The tracer reads deprecated attributes, and each read used to log a warning at every model load;
    # counting a long message's tokens for its pass used to warn of "indexing errors" that cannot happen.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("transformers", "sentence_transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        nlu = NLU.load(Registry(tiny_demo_bot / "models").current_path(), device="cpu",
                       inference=InferenceConfig(trace=True, pass_tokens=4096))
        loading = [r.getMessage() for r in records]
        long = "where is the refund for my order " * 100
        assert len(nlu.classifier.encoder.tokenizer(long)["input_ids"]) > nlu.classifier.encoder.max_seq_length
        records.clear()  # that count was this test's own
        nlu.analyse([long, "hi"])
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert nlu.classifier._traced is not None
    assert loading == []
    assert [r.getMessage() for r in records] == []


def test_the_cores_shared_out_are_those_the_process_may_run_on(tiny_demo_bot: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A container limited to one core (a cpuset) shared out the host's: a thread per host core, all on one."""
    path = Registry(tiny_demo_bot / "models").current_path()
    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3}, raising=False)
    try:
        nlu = NLU.load(path, device="cpu", inference=InferenceConfig(quantize="none"))
        assert (nlu.workers, torch.get_num_threads()) == (1, 1)
    finally:
        torch.set_num_threads(before)


def test_int8_asked_of_a_model_on_a_gpu_is_named_once_as_float32_served(
        tiny_demo_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """int8 runs on a CPU only: a bot that asks for it and is served on a GPU answered in float32, silently, while its
    promotion gate and bot eval measured it in int8 on a CPU. Loading it says so, once a version and process (it was
    said again at every reload); on a CPU nothing is said."""
    monkeypatch.setattr(bot.nlu, "_FLOAT32_NAMED", set())  # what other tests' loads named
    path = Registry(tiny_demo_bot / "models").current_path()
    int8 = InferenceConfig(quantize="int8", trace=False, workers=1)
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        on_cpu = serving_classifier(path, "cpu", int8)
    assert caplog.records == []
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in on_cpu.encoder.modules())
    monkeypatch.setattr(classifier_module.IntentClassifier, "device", property(lambda self: torch.device("cuda")))
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        on_gpu = serving_classifier(path, "cpu", int8)  # loaded on the CPU, but on the device it reports, a GPU's
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in on_gpu.encoder.modules())
    [warned] = [record.getMessage() for record in caplog.records]
    assert f"{path.name}: server.inference.quantize is int8" in warned
    assert "served in float32 on cuda" in warned and "measured it in int8 on a CPU" in warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        serving_classifier(path, "cpu", int8)  # a reload: said already
    assert caplog.records == []
    other = Path(shutil.copytree(path, tmp_path / "v0009"))
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        serving_classifier(other, "cpu", int8)  # another version: its figures were int8's too
    assert [record.getMessage().split(":")[0] for record in caplog.records] == ["v0009"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        serving_classifier(path, "cpu", InferenceConfig(quantize="none", trace=False, workers=1))
    assert caplog.records == []


def test_an_int8_model_is_measured_one_message_a_pass_whatever_is_measured_with_it(tiny_demo_bot: Path) -> None:
    """Dynamic int8 scales a pass's input by the range of all its messages: the promotion gate, the threshold's
    calibration and bot eval measured a message in passes of 64 of the set's, which `bot serve` never makes, and its
    answer there was not the one it gets alone, nor with another set around it. Each is measured alone, as `bot serve`
    answers a message that arrives alone, and the same in every measure."""
    project = load_project(tiny_demo_bot)
    project.config.server.inference.quantize = "int8"
    path = Registry(tiny_demo_bot / "models").current_path()
    served = as_served(project, IntentClassifier.load(path / "classifier", device="cpu"))
    texts = [e.text for e in project.examples[:48]]
    alone = np.stack([served.probabilities([text])[0] for text in texts])

    assert np.array_equal(served.probabilities(texts), alone)
    assert np.array_equal(served.probabilities(texts[::-1])[::-1], alone)
    assert not np.array_equal(served.probabilities(texts, batch_size=64), alone)  # what passes of 64 made of them
    nlu = NLU.load(path, device="cpu", inference=InferenceConfig(quantize="int8", trace=False, workers=1))
    measured = as_measured(project, nlu, texts)
    assert [a.prediction for a in measured] == [nlu.analyse([text])[0].prediction for text in texts]


def test_the_gates_int8_copy_is_traced_and_answers_as_bot_serve_does(tiny_demo_bot: Path) -> None:
    """The promotion gate scored its int8 copy one message a pass in the eager encoder, where `bot serve` runs a
    trace: the gate's thousands of passes each paid the eager encoder's Python work between layers. It runs the trace
    too, and its answers are those of the eager copy and of the model `bot serve` loads, to the last bit."""
    project = load_project(tiny_demo_bot)
    project.config.server.inference.quantize = "int8"
    path = Registry(tiny_demo_bot / "models").current_path()
    texts = [e.text for e in project.examples[:48]]

    served = as_served(project, IntentClassifier.load(path / "classifier", device="cpu"))

    assert served._traced is not None
    project.config.server.inference.trace = False
    eager = as_served(project, IntentClassifier.load(path / "classifier", device="cpu"))
    assert eager._traced is None
    assert np.array_equal(served.probabilities(texts), eager.probabilities(texts))
    serve = serving_classifier(path, "cpu", InferenceConfig(quantize="int8", trace=True, workers=1))
    assert np.array_equal(np.stack([serve.probabilities([text])[0] for text in texts]), served.probabilities(texts))
