"""One serving model version: the intent classifier and the answer index, sharing one encoder pass.

The classifier's fine-tuned encoder also embeds the historical answers, so the embedding computed to
classify a message is the retrieval query too: one transformer pass per message.

On a CPU the encoder's linear layers can run in int8 (``server.inference.quantize``): dynamic
quantisation stores the weights as int8 once and scales each batch's activations on the fly, which
is where nearly all of a small BERT's time goes. ``bot bench nlu`` measures what that costs in
accuracy; bench/SERVE.md has the figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import warnings
from pathlib import Path

import torch

from bot.project import InferenceConfig
from finetune.classifier import IntentClassifier, ModelLoadError, Prediction
from retrieval.encoder import Encoder
from retrieval.index import AnswerIndex, Hit


GPU_CHUNK = 64  # a GPU gains from wide passes: it pads for free next to the cost of launching many


@dataclass
class Analysis:
    prediction: Prediction
    hits: list[Hit]
    intent_threshold: float  # calibrated for the model version that made the prediction


class NLU:
    def __init__(self, classifier: IntentClassifier, index: AnswerIndex, version: str, k: int = 5,
                 intent_threshold: float = 0.5, chunk: int = 64) -> None:
        self.classifier = classifier
        self.index = index
        self.version = version
        self.k = k
        self.intent_threshold = intent_threshold
        # Messages per encoder pass. The classifier sorts a batch by length before cutting it into passes,
        # so on a CPU small passes pad short messages far less; a GPU is better fed the whole batch.
        self.chunk = chunk if classifier.device.type == "cpu" else GPU_CHUNK

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @classmethod
    def load(cls, folder: Path, device: str | None = None, k: int = 5, inference: InferenceConfig | None = None) -> "NLU":
        """Load and check a version folder; raises :class:`ModelLoadError` with the reason if unusable."""
        folder = Path(folder)
        inference = inference or InferenceConfig()
        if inference.threads:
            torch.set_num_threads(inference.threads)
        classifier = IntentClassifier.load(folder / "classifier", device=device)
        if inference.quantize == "int8":
            quantize_int8(classifier)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            encoder = Encoder.from_model(classifier.encoder, name=encoder_name(meta["id"]))
            index = AnswerIndex.load(folder / "index", encoder)
        except Exception as exc:
            raise ModelLoadError(f"{folder}: cannot load the answer index: {exc}") from exc
        return cls(classifier, index, folder.name, k, float(meta.get("intent_threshold", 0.5)), inference.chunk)

    def analyse(self, texts: list[str]) -> list[Analysis]:
        predictions, embeddings = self.classifier.predict_with_embeddings(texts, batch_size=self.chunk)
        hits = self.index.search_vectors(embeddings, self.k) if len(self.index) else [[] for _ in texts]
        return [Analysis(p, h, self.intent_threshold) for p, h in zip(predictions, hits)]


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


def encoder_name(model_id: str) -> str:
    """The index manifest names its encoder by the training run that fine-tuned it."""
    return f"deskbot-finetuned:{model_id}"
