"""``bot bench nlu``: what the serving design choices cost in accuracy and retrieval quality.

Three ways to serve the same trained version are scored on one labelled test file:

- ``one_pass_fp32``: the served design; the classifier's embedding is also the retrieval query.
- ``one_pass_int8``: the same with the encoder's linear layers in dynamic int8.
- ``two_pass_fp32``: the classifier, plus a second pass of the untuned base encoder for retrieval,
  over an index of the same answers built with that encoder (the usual "separate retriever" design).

Retrieval quality is judged by intent: a hit is right when the answer it returns belongs to the
message's labelled intent (hit@1, and the mean reciprocal rank of the first right answer in the top k).

Each one-pass variant also analyses every line alone and counts the lines whose intent changes: a
customer's answer must not depend on whose messages the server batched with theirs. Dynamic int8
scales each batch's activations by the batch's own range, so in int8 it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bot.evaluation import model_questions
from bot.nlu import NLU
from bot.project import InferenceConfig, Project
from bot.training import answers_for
from finetune.models import resolve_model
from finetune.train import loading_base
from finetune.registry import Registry
from retrieval.encoder import Encoder
from retrieval.index import AnswerIndex, Hit

TIMED_RUNS = 3  # each variant's speed is the median of this many runs over the test file, after a warm-up
INT8_BUDGET_POINTS = 0.3  # int8 is worth offering only if accuracy falls by at most this many points


def retrieval_quality(hits: list[list[Hit]], gold: list[str]) -> dict[str, float]:
    ranks = [next((r for r, h in enumerate(row, start=1) if h.intent == g), None) for row, g in zip(hits, gold)]
    return {"retrieval_hit_at_1": round(float(np.mean([r == 1 for r in ranks])), 4),
            "retrieval_mrr": round(float(np.mean([1 / r if r else 0.0 for r in ranks])), 4)}


def _score(name: str, run: Callable[[], tuple[list[str], list[list[Hit]]]], gold: list[str]) -> dict[str, Any]:
    """A variant's figures, its speed the median of ``TIMED_RUNS`` after one untimed run. Timed at its first
    call, a traced encoder was still being optimised (TorchScript does it over the first calls) while the
    two-pass design's classifier came warm from the one-pass run: two passes timed faster than one."""
    intents, hits = run()
    times = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    accuracy = float(np.mean([p == g for p, g in zip(intents, gold)]))
    return {"variant": name, "accuracy": round(accuracy, 4), **retrieval_quality(hits, gold),
            "messages_per_s": round(len(gold) / seconds, 1)}


def batch_dependence(nlu: NLU, texts: list[str]) -> dict[str, Any]:
    """How many of ``texts`` get another intent analysed alone than in batches, and the largest change in
    confidence."""
    together = nlu.analyse(texts)
    alone = [nlu.analyse([text])[0] for text in texts]
    return {"intent_changes_alone": sum(a.prediction.intent != b.prediction.intent for a, b in zip(alone, together)),
            "confidence_change_alone": round(max(abs(a.prediction.confidence - b.prediction.confidence)
                                                 for a, b in zip(alone, together)), 4)}


def nlu_benchmark(project: Project, rows: list[dict[str, str]], device: str | None = None) -> dict[str, Any]:
    """Score the three designs on ``rows``. Lines whose intent the bot does not know are left out, and so are
    a button's payloads (``/track_order``), which the bot answers without the model, as ``bot eval`` does."""
    path = Registry(project.models_dir).current_path()
    known = set(project.intents)
    questions, texts, clicks = model_questions(rows, known)
    kept = [(row["intent"], text) for row, text in zip(questions, texts) if row["intent"] in known]
    if not kept:
        raise ValueError("no test line is a question with an intent this bot knows")
    gold, texts = [intent for intent, _ in kept], [text for _, text in kept]  # texts as the server's model sees them
    k = project.config.retrieval.k
    results = []
    for quantize in ("none", "int8"):
        nlu = NLU.load(path, device=device, k=k, inference=InferenceConfig(quantize=quantize, workers=1))

        def one_pass(nlu: NLU = nlu) -> tuple[list[str], list[list[Hit]]]:
            analyses = nlu.analyse(texts)
            return [a.prediction.intent for a in analyses], [a.hits for a in analyses]

        results.append({**_score(f"one_pass_{'fp32' if quantize == 'none' else 'int8'}", one_pass, gold),
                        **batch_dependence(nlu, texts)})
        if quantize == "none":
            classifier = nlu.classifier
    with loading_base(project.base_model):
        retriever = Encoder(resolve_model(project.base_model), device=str(classifier.device))
    index = AnswerIndex.build(retriever, answers_for(project))

    def two_pass() -> tuple[list[str], list[list[Hit]]]:
        return [p.intent for p in classifier.predict(texts)], index.search(texts, k)

    results.append(_score("two_pass_fp32", two_pass, gold))
    fp32, int8 = results[0]["accuracy"], results[1]["accuracy"]
    drop = round((fp32 - int8) * 100, 2)
    return {"model_version": path.name, "test_lines": len(kept), "button_payload_lines_left_out": len(clicks),
            "answers_indexed": len(index), "k": k,
            "variants": results, "int8_accuracy_drop_points": drop, "int8_within_budget": drop <= INT8_BUDGET_POINTS}
