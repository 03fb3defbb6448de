"""One serving model version: the intent classifier and the answer index, sharing one encoder pass.

The classifier's fine-tuned encoder also embeds the historical answers, so the embedding computed to
classify a message is the retrieval query too: one transformer pass per message.

On a CPU the encoder's linear layers can run in int8 (``server.inference.quantize``): dynamic
quantisation stores the weights as int8 once and scales each batch's activations on the fly, which
is where nearly all of a small BERT's time goes. ``bot bench nlu`` measures what that costs in
accuracy; bench/SERVE.md has the figures.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bot.project import InferenceConfig, Project
from dialogues.review import current_name, renamed_ranking
from dialogues.store import Store, StoreError
from finetune.classifier import IntentClassifier, ModelLoadError, Prediction
from retrieval.encoder import Encoder
from retrieval.index import AnswerIndex, Hit
from retrieval.text import model_text, token_counts

Name = Callable[[str], str]  # an intent's name as the bot answers under it now
log = logging.getLogger("deskbot")


@dataclass
class Analysis:
    """What one serving model made of a message: the classifier's intent and the closest historical answers."""

    prediction: Prediction
    hits: list[Hit]
    intent_threshold: float  # calibrated for the model version that made the prediction
    model_version: str  # that version, logged with the turn even if a swap happens meanwhile


def read_meta(folder: Path) -> dict[str, Any]:
    """A version's meta.json as serving reads it: the base model's id and the calibrated intent threshold,
    a number from 0 to 1. A file edited or restored by hand is refused with its name, not met later as a
    traceback or a cut that lets everything through."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot read meta.json: {exc}") from exc
    threshold = meta.get("intent_threshold", 0.5) if isinstance(meta, dict) else None
    if not (isinstance(meta, dict) and isinstance(meta.get("id"), str) and type(threshold) in (int, float)
            and 0 <= threshold <= 1):
        raise ModelLoadError(f'{folder}: meta.json must hold the model\'s "id" and an "intent_threshold" from 0 to 1')
    return meta


class NLU:
    """One model version as ``bot serve`` runs it: its classifier and answer index, which :meth:`analyse` asks
    together, a batch of messages at a time (the engine's ``MicroBatcher``)."""

    def __init__(self, classifier: IntentClassifier, index: AnswerIndex, version: str, k: int = 5,
                 intent_threshold: float = 0.5, pass_tokens: int | None = None, workers: int = 1,
                 meta: dict[str, Any] | None = None) -> None:
        self.classifier = classifier
        self.index = index
        self.version = version
        self.k = k
        self.intent_threshold = intent_threshold
        # A GPU pads for free next to the cost of launching many small passes: it takes each batch whole.
        self.pass_tokens = pass_tokens if classifier.device.type == "cpu" else None
        self.workers = workers  # batches analysed at once, by the server's model workers
        self.meta = meta or {}  # the version's meta.json as it was loaded with it (read_meta)
        self.name: Name | None = None  # the intents' names since `bot relabel` renamed some (current_names)

    @property
    def labels(self) -> list[str]:
        """The intents the model answers with, by the names it answers under (:attr:`name`)."""
        return renamed_labels(self.classifier.labels, self.name)

    def chosen(self, intent: str) -> str | None:
        """The intent a button's payload ``/intent`` selects, by its current name (:attr:`name`), if the model
        answers it; None otherwise. A page or a Slack message sent before `bot relabel` renamed the intent still
        names the old one: taken as typed text, its click landed on the new intent at a lower confidence, or another.
        An intent named in Chinese is chosen in either script: a customer in Hong Kong or Taiwan who types the payload
        (``/退貨`` for ``/退货``) or whose input method converts it was read as typing those words."""
        current = intent if self.name is None else self.name(intent)
        if current in self.labels:
            return current
        spelled = model_text(current)
        return next((label for label in self.labels if model_text(label) == spelled), None)

    @property
    def button_intents(self) -> list[str]:
        """The intents a button's payload ``/intent`` may name: the current ones, and the ones the model learnt under
        a name `bot relabel` changed since, which :meth:`chosen` takes to their current names."""
        return [*self.labels, *(label for label in self.classifier.labels if label not in self.labels
                                and self.chosen(label))]

    @classmethod
    def load(cls, folder: Path, device: str | None = None, k: int = 5, inference: InferenceConfig | None = None,
             index_device: str = "auto") -> "NLU":
        """Load and check a version folder; raises :class:`ModelLoadError` with the reason if unusable.
        ``index_device`` is where the answer index searches (``auto``: a GPU when faiss has one)."""
        folder = Path(folder)
        meta = read_meta(folder)  # before the weights: a bad file is named at once
        inference = inference or InferenceConfig(workers=1)
        classifier = serving_classifier(folder, device, inference)
        # The cores this process may run on (a container's cpuset, not the host's), where the system says.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        # A GPU runs one batch at a time anyway. On a CPU the batches in flight share the cores: by default
        # each gets its share, so none oversubscribes.
        workers = (inference.workers or cores) if classifier.device.type == "cpu" else 1
        torch.set_num_threads(inference.threads or max(1, cores // workers))
        try:
            index = AnswerIndex.load(folder / "index", answer_encoder(classifier, meta["id"]), index_device)
        except Exception as exc:
            raise ModelLoadError(f"{folder}: cannot load the answer index: {exc}") from exc
        return cls(classifier, index, folder.name, k, float(meta.get("intent_threshold", 0.5)),
                   inference.pass_tokens, workers, meta)

    def analyse(self, texts: list[str]) -> list[Analysis]:
        """One encoder pass for the batch, or on a CPU one per group of similar-length messages (``pass_tokens``);
        the embeddings serve both heads."""
        if self.pass_tokens is None:
            predictions, embeddings = self.classifier.predict_with_embeddings(texts, batch_size=max(len(texts), 1))
        else:
            predictions, embeddings = self._in_passes(texts, self.pass_tokens)
        hits = self.index.search_vectors(embeddings, self.k) if len(self.index) else [[] for _ in texts]
        if (name := self.name) is not None:  # the index's answers too: filed under the names history.jsonl had then
            predictions = [renamed_prediction(p, name) for p in predictions]
            hits = [[replace(h, intent=h.intent and name(h.intent)) for h in found] for found in hits]
        return [Analysis(p, h, self.intent_threshold, self.version) for p, h in zip(predictions, hits)]

    def _in_passes(self, texts: list[str], budget: int) -> tuple[list[Prediction], np.ndarray]:
        encoder = self.classifier.encoder
        lengths = token_counts([self.classifier.prefix + t for t in texts], encoder.tokenizer, encoder.max_seq_length)
        groups = token_passes(lengths, budget)
        results = [self.classifier.predict_with_embeddings([texts[i] for i in g], batch_size=len(g)) for g in groups]
        order = np.argsort([i for g in groups for i in g])  # back to the batch's order
        predictions = [p for preds, _ in results for p in preds]
        embeddings = np.concatenate([emb for _, emb in results])
        return [predictions[j] for j in order], embeddings[order]


def current_names(project: Project) -> Name | None:
    """Each intent by the name `bot relabel` gave it last (``Store.renames``, a rename of a rename followed), for the
    names nlu.yml no longer has; None where none was renamed. A model trained before the rename predicts the old
    name, which has no template any more: every customer who asked for it got the fallback until the next retrain."""
    if not project.db_path.exists():
        return None
    try:
        store = Store(project.db_path, read_only=True)  # an older deskbot's too, which `bot serve` then migrates
        try:
            renames = store.renames() if store.db["intent_renames"].exists() else {}
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as exc:  # a damaged store must not keep a model from serving
        log.warning("the intents `bot relabel` renamed cannot be read, and the model answers under the names it "
                    "learnt: %s", exc)
        return None
    return partial(current_name, renames=renames, labels=project.intents) if renames else None


def renamed_labels(labels: Iterable[str], name: Name | None) -> list[str]:
    """A model's ``labels`` by their current names (``name``, None: as they are), an intent merged into another once."""
    return list(labels) if name is None else list(dict.fromkeys(map(name, labels)))


def renamed_prediction(prediction: Prediction, name: Name) -> Prediction:
    """``prediction`` under the intents' current names (``name``), as the bot answers it."""
    return Prediction(name(prediction.intent), prediction.confidence, renamed_ranking(prediction.ranking, name))


def token_passes(lengths: list[int], budget: int) -> list[list[int]]:
    """Indexes grouped into encoder passes of similar length, each padded to at most ``budget`` tokens.

    Messages go shortest first; a pass takes the next one while (messages x its longest) stays within
    the budget. A CPU's work is proportional to padded tokens, so a batch of short questions and one
    long complaint costs what its words cost, not 32 copies of the complaint's length.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and (len(groups[-1]) + 1) * lengths[i] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def serving_classifier(folder: Path, device: str | None, inference: InferenceConfig) -> IntentClassifier:
    """A version's classifier as ``bot serve`` runs it: in int8 and traced on a CPU when the bot asks; on a GPU, in
    float32 whatever it asks, with a warning, as its gate's and `bot eval`'s figures are int8's.

    ``bot eval`` scores this one too, so that its figures are the served model's: int8 costs
    multilingual-e5-small 1 to 3 points on the demo's test questions, where MiniLM loses 0.07 on
    BANKING77.
    """
    classifier = IntentClassifier.load(folder / "classifier", device=device)
    if not finite_weights(classifier):  # before int8, which would hide them
        raise ModelLoadError(f"{folder}: the model's weights are not all numbers (NaN or infinite): retrain it, "
                             "or roll back to another version")
    if inference.quantize == "int8":
        if classifier.device.type == "cuda" and _first_time(folder, classifier.device):
            # int8 runs on a CPU only, so the promotion gate and bot eval measure the model there: name the gap once.
            log.warning("%s: server.inference.quantize is int8, which runs on a CPU only: the model is served in "
                        "float32 on %s, while the promotion gate and bot eval measured it in int8 on a CPU, so its "
                        "answers and confidences may differ from their figures. Serve it with --device cpu, or set "
                        "server.inference.quantize: none to measure it in float32 as the GPU serves it",
                        folder.name, classifier.device)
        quantize_int8(classifier)
    if inference.trace and classifier.device.type == "cpu":
        classifier.trace()
    return classifier


# The version folders, with their device, whose float32 serving of an int8 bot the process has named (serving_classifier)
_FLOAT32_NAMED: set[tuple[Path, str]] = set()


def _first_time(folder: Path, device: torch.device) -> bool:
    """Whether this process serves version ``folder`` on ``device`` for the first time, which it then records: `bot
    serve` loads a version again at each `/admin/reload` and at each swap back to it (a rollback), and said the same
    warning each time."""
    key = (folder.resolve(), str(device))
    first = key not in _FLOAT32_NAMED
    _FLOAT32_NAMED.add(key)
    return first


def finite_weights(classifier: IntentClassifier) -> bool:
    """Whether every weight is a number. A weight turned NaN (a byte changed on disk, a run that diverged)
    keeps its file's size, so the model loads like any other, and then the confidence of every message
    that meets it is NaN, which no JSON carries: the widget showed customers nothing while /healthz said ok."""
    tensors = [classifier.head, *classifier.encoder.state_dict().values()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def as_served(project: Project, classifier: IntentClassifier) -> IntentClassifier:
    """``classifier`` as `bot serve` answers with it: where bot.yml's ``server.inference.quantize`` asks for int8
    (:func:`serving_classifier`), a copy on the CPU in int8, else itself. int8 moves some answers and confidences, so
    a model measured in float32 (by the promotion gate, or to calibrate its threshold) was one no customer met. The
    copy is on the CPU whatever device trained the model: int8 is for a CPU (on a GPU it is a no-op), so a `bot
    retrain --device cuda` for a bot served in int8 on a CPU measures what that CPU serves. The copy leaves
    ``classifier`` to train on and save. It answers one message a pass (``pass_size``): dynamic int8 scales each
    layer's input by the range of the whole pass, so in the gate's passes of 64 a message got answers (and
    confidences) `bot serve` gives it in none of its own, whose passes the traffic of the moment makes; alone, it
    gets what `bot serve` answers a message that arrives alone, the same in every measure (:func:`as_measured`).
    Traced where bot.yml's ``server.inference.trace`` asks, as :func:`serving_classifier` runs it: the same answers,
    and the gate's thousands of one-message passes each without the eager encoder's Python work between layers."""
    if not served_in_int8(project):
        return classifier
    served = copy.deepcopy(classifier).to("cpu")
    quantize_int8(served)
    served.pass_size = 1
    if project.config.server.inference.trace:
        served.trace()
    return served


class Answering(Protocol):
    """What the promotion gate and a version's figures read of a model: an :class:`IntentClassifier`, one keeping its
    answers (:class:`Remembered`), or one answering under its intents' current names (``bot.retrain.Renamed``)."""

    @property
    def labels(self) -> list[str]: ...

    def predict(self, texts: list[str]) -> list[Prediction]: ...


class Remembered:
    """A classifier that answers each question once, for the promotion gate, which scores the frozen evaluation set
    three times a model (the figures written with a version, the gate's and those at its threshold). Only one
    answering each message alone (``pass_size`` 1: in int8, :func:`as_served`) gives a text the same answer whatever
    texts share its call, so its answers are kept text by text. Any other pads each pass of 64 to its longest
    message, so a text's answer may move with the texts beside it: its answers are kept call by call, and reused
    only for the same texts in the same order, whose passes are the same (the whole frozen set where the serving
    model knows every intent). Only what the gate reads: ``labels`` and ``predict``."""

    def __init__(self, classifier: IntentClassifier) -> None:
        self.classifier = classifier
        self.answers: dict[str, Prediction] = {}
        self.calls: dict[tuple[str, ...], list[Prediction]] = {}

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def predict(self, texts: list[str]) -> list[Prediction]:
        if self.classifier.pass_size != 1:
            key = tuple(texts)
            if key not in self.calls:
                self.calls[key] = self.classifier.predict(texts)
            return list(self.calls[key])
        if new := [text for text in dict.fromkeys(texts) if text not in self.answers]:
            self.answers.update(zip(new, self.classifier.predict(new)))
        return [self.answers[text] for text in texts]


def as_measured(project: Project, nlu: NLU, texts: list[str]) -> list[Analysis]:
    """``nlu``'s analyses of ``texts`` as the promotion gate measures the model (:func:`as_served`): where it is
    served in int8, each message in an analysis of its own, so that `bot eval` scores a test line as `bot serve`
    answers it alone, and not as the other lines of the file batched with it would make it."""
    if not served_in_int8(project):
        return nlu.analyse(texts)
    return [analysis for text in texts for analysis in nlu.analyse([text])]


def served_in_int8(project: Project) -> bool:
    """Whether `bot serve` runs the bot's models in int8: bot.yml's ``server.inference.quantize`` asks for it. It
    is decided by the bot's settings alone, not by the device a retrain or an evaluation happens to run on."""
    return project.config.server.inference.quantize == "int8"


def measuring_device(project: Project, device: str | None) -> str | None:
    """The device to measure the bot's models on, as `bot serve` answers with them: the CPU where they are served in
    int8 (:func:`served_in_int8`), whatever ``device`` was asked for (on a GPU int8 is a no-op, and the figures
    would be float32's), else ``device``."""
    return "cpu" if served_in_int8(project) else device


def quantize_int8(classifier: IntentClassifier) -> None:
    """Swap the encoder's ``nn.Linear`` layers for dynamic int8 ones, in place, with per-channel
    weight scales (per-tensor scales lose more accuracy on MiniLM). CPU only: on a GPU it is a no-op."""
    if classifier.device.type != "cpu":
        return
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch marks eager quantisation deprecated in favour of torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(classifier.encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)


def answer_encoder(classifier: IntentClassifier, model_id: str) -> Encoder:
    """The classifier's fine-tuned encoder as the answer index's encoder, with the classifier's prefix.

    The index manifest names its encoder by the training run that fine-tuned it, so an index built
    by another run does not load against this model.
    """
    return Encoder.from_model(classifier.encoder, name=f"deskbot-finetuned:{model_id}",
                              prefixes=(classifier.prefix, classifier.prefix), simplified=classifier.simplified)
