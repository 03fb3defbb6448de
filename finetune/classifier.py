"""The intent classifier: a sentence encoder with a cosine-softmax head.

The head sits on the L2-normalised sentence embedding rather than on BERT's pooler. That choice means
one forward pass gives both the intent distribution and a retrieval query vector, and the fine-tuned
encoder (saved as a plain sentence-transformers folder) can index the historical answers too.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import batch_to_device

from finetune.cache import FILES, changed_file, file_sha256
from finetune.lexical import CharNgrams, choose_share
from retrieval.encoder import load_sentence_model
from retrieval.text import head_and_tail, model_inputs

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Only errors from transformers' and sentence-transformers' loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in ("transformers", "sentence_transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ModelLoadError(Exception):
    """A model folder is missing, corrupt or incompatible. The serving model stays as it was."""


def _check_files(folder: Path) -> None:
    """Refuse a folder that lost, cut short or changed a file it was saved with. Loading alone would not:
    without its tokenizer files an encoder still loads and reads every word as unknown, and a head whose
    bytes were zeroed on disk loads and answers every message alike. (Folders saved before the list
    existed are loaded as they are, and those saved before it held checksums are checked by size.)"""
    if problem := changed_file(folder):
        raise ModelLoadError(problem)


# The latest trace of each architecture in use, by device and _architecture, which the next model of
# that architecture copies instead of tracing anew (IntentClassifier.trace).
_TRACES: weakref.WeakValueDictionary[str, torch.jit.ScriptModule] = weakref.WeakValueDictionary()


def _architecture(encoder: torch.nn.Module) -> str:
    """What a trace records besides the weights: each module's type and shapes, and the Hugging Face
    configuration (the number of attention heads is the shape of no weight)."""
    parts = []
    for name, module in encoder.named_modules():
        config = getattr(module, "config", None)
        settings = config.to_json_string() if hasattr(config, "to_json_string") else ""
        parts.append(f"{name} {type(module).__name__}({module.extra_repr()}) {settings}")
    return "\n".join(parts)


def _retarget(template: torch.jit.ScriptModule, encoder: torch.nn.Module) -> torch.jit.ScriptModule | None:
    """A copy of ``template``, a trace of a model with ``encoder``'s modules, running on ``encoder``'s
    own weights: its parameters, buffers and int8 layers' packed weights (TorchScript objects). The copy
    shares the template's graph, which torch would otherwise keep a second time. None where a module of
    the trace has no twin in ``encoder``."""
    traced = copy.deepcopy(template)  # its own attribute slots: the template keeps serving its own model
    try:
        for name, module in traced.named_modules():
            twin = encoder.get_submodule(name)
            own = [key for key, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]]
            own += [key for key, value in vars(twin).items() if isinstance(value, torch.ScriptObject)]
            for key in own:
                module._c.setattr(key, getattr(twin, key))
    except (AttributeError, RuntimeError):  # not the same architecture after all
        return None
    return traced


@dataclass
class Prediction:
    intent: str
    confidence: float
    ranking: list[tuple[str, float]]  # the top 5, best first


def pick_device(device: str | None = None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


class IntentClassifier(torch.nn.Module):
    """``encoder`` + a bias-free linear head over the normalised embedding, scaled by ``scale``, and the
    character n-gram vote mixed into its probabilities where held-out examples chose one."""

    train_seconds: float = 0.0  # set by training: how long it took
    train_steps: int = 0  # set by training: its optimisation steps (model.epochs sets how many)
    train_passes: float = 0.0  # set by training: the passes over the training examples those steps made
    ngrams: CharNgrams | None = None  # a character n-gram vote mixed into the probabilities (see fit_ngrams)
    ngram_share: float = 0.0
    # Messages per encoder pass where the caller names no batch size. A model in dynamic int8 answers a message
    # otherwise with other messages in its pass (bot.nlu.as_served measures it one message a pass).
    pass_size: int = 64

    def __init__(self, encoder: SentenceTransformer, labels: list[str], scale: float = 20.0, prefix: str = "",
                 simplified: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        self.scale = scale
        self.prefix = prefix
        self.simplified = simplified  # reads Traditional Chinese as Simplified (see read)
        dim = encoder.get_embedding_dimension()
        self.head = torch.nn.Parameter(torch.randn(len(labels), dim) * 0.02)
        self._traced: torch.jit.ScriptModule | None = None  # see trace()

    @property
    def device(self) -> torch.device:
        return self.head.device

    def read(self, texts: list[str]) -> list[str]:
        """``texts`` as the encoder and the n-gram vote read them (:func:`~retrieval.text.model_inputs`). A
        model trained before deskbot read Traditional Chinese as Simplified learnt the characters as written,
        and reads them so still; training it anew switches it over."""
        return model_inputs(texts, self.simplified)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Normalised sentence embeddings, with gradients when training."""
        texts = head_and_tail(self.read(texts), self.encoder.tokenizer, self.encoder.max_seq_length, self.prefix)
        features = batch_to_device(self.encoder.preprocess(texts), self.device)
        if self._traced is not None and not torch.is_grad_enabled():
            output = self._traced({k: v for k, v in features.items() if isinstance(v, torch.Tensor)})
        else:
            output = self.encoder(features)
        return F.normalize(output["sentence_embedding"].float(), dim=-1)

    def trace(self) -> bool:
        """Run inference through a TorchScript trace of the encoder from now on, same weights, same results.

        In eager mode every layer comes back to Python between kernels and takes the interpreter lock
        to do so, so batches run from several threads (the server's model workers) queue for it. The
        trace runs the whole pass in C++ without the lock, so two threads on two cores get nearly twice
        one thread's rate, and there is less Python work per pass as well (bench/SERVE.md).

        The example batch is padded, so the attention-mask path is the one recorded, and it is right
        for batches without padding too. The trace shares the encoder's parameters but records its
        modules as they are now, so it comes after any module swap (int8 quantisation). Gradients
        always take the eager encoder.

        torch keeps every graph it traces until the process ends (about 10 MB for MiniLM), so a server
        that traced each model it hot-swaps to grew by that much at every swap. A model whose modules
        and shapes are those of a trace still in use (the model being replaced, as a rule) gets a copy
        of that trace pointed at its own weights instead: no new graph (:func:`_retarget`).

        Any Hugging Face model may sit in the encoder, and not every one traces: when tracing fails, or
        the trace does not reproduce the eager embeddings of the example, the encoder stays eager (with
        a warning) and this returns False.
        """
        example = self.encoder.preprocess([self.prefix + "a", self.prefix + "a longer example message"])
        example = {k: v for k, v in batch_to_device(example, self.device).items() if isinstance(v, torch.Tensor)}
        self.eval()
        architecture = f"{self.device} {_architecture(self.encoder)}"

        def reproduces(traced: torch.jit.ScriptModule) -> bool:
            # sentence-transformers writes its outputs into the features dict: each call gets a copy
            return torch.allclose(traced(dict(example))["sentence_embedding"],
                                  self.encoder(dict(example))["sentence_embedding"], atol=1e-4)

        with warnings.catch_warnings(), _quiet_libraries(), torch.no_grad():
            # torch calls tracing deprecated, and warns about shape checks it records as constants: the
            # ones in these models compare the mask's length with the sequence's, equal in every batch.
            # The tracer also reads every attribute of every module, deprecated ones included, and the
            # libraries log a warning for each of those reads, none of which the trace uses.
            warnings.simplefilter("ignore")
            template = _TRACES.get(architecture)
            try:
                traced = _retarget(template, self.encoder) if template is not None else None
                if traced is None or not reproduces(traced):
                    traced = torch.jit.trace(self.encoder, (dict(example),), strict=False, check_trace=False)
                same = reproduces(traced)
            except Exception as exc:  # whatever the tracer trips on, the eager encoder still works
                log.warning("the encoder cannot be traced (%s); it runs eagerly", exc)
                return False
        if not same:
            log.warning("the traced encoder does not reproduce the eager one; it runs eagerly")
            return False
        _TRACES[architecture] = self._traced = traced
        return True

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * embeddings @ F.normalize(self.head, dim=-1).T

    @torch.inference_mode()
    def _forward(self, texts: list[str], batch_size: int, ngrams: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings for ``texts``, in their order; ``ngrams`` False leaves out the
        n-gram vote, for the encoder's own answers.

        Batches are formed from texts of similar length, so short messages are not padded to the length
        of a long one; on a CPU that is most of the cost of a mixed batch.
        """
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = np.zeros((len(texts), len(self.labels)), np.float32)
        embeddings = np.zeros((len(texts), self.head.shape[1]), np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = order[start : start + batch_size]
            emb = self.embed([texts[i] for i in chunk])
            probs[chunk] = torch.softmax(self.logits(emb), dim=-1).float().cpu().numpy()
            embeddings[chunk] = emb.float().cpu().numpy()
        if ngrams and self.ngrams is not None and self.ngram_share > 0 and texts:
            probs = (1 - self.ngram_share) * probs + self.ngram_share * self.ngrams.probabilities(self.read(texts))
        return probs, embeddings

    def predict_with_embeddings(self, texts: list[str], batch_size: int | None = None
                                ) -> tuple[list[Prediction], np.ndarray]:
        """Predictions and the embeddings they came from (reused as retrieval queries); ``batch_size`` None:
        :attr:`pass_size`."""
        probs, embeddings = self._forward(texts, batch_size or self.pass_size)
        top = np.argsort(-probs, axis=1)[:, : min(5, len(self.labels))]
        predictions = []
        for row, indices in zip(probs, top):
            ranking = [(self.labels[i], float(row[i])) for i in indices]
            predictions.append(Prediction(ranking[0][0], ranking[0][1], ranking))
        return predictions, embeddings

    def predict(self, texts: list[str], batch_size: int | None = None) -> list[Prediction]:
        return self.predict_with_embeddings(texts, batch_size)[0]

    def probabilities(self, texts: list[str], batch_size: int | None = None, ngrams: bool = True) -> np.ndarray:
        """The full intent distribution per text, one row each, columns in ``labels`` order."""
        return self._forward(texts, batch_size or self.pass_size, ngrams)[0]

    def fit_ngrams(self, texts: list[str], intents: list[str], held_texts: list[str], held_intents: list[str]) -> float:
        """Fit the character n-gram vote on the training examples and give it the share of the probabilities
        that answers the held-out examples best (0 when it helps none, and none without held-out examples
        of known intents); returns the share. Replaces any vote the model had (a warm start keeps the
        serving model's until here)."""
        index = {label: i for i, label in enumerate(self.labels)}
        held = [(text, index[intent]) for text, intent in zip(held_texts, held_intents) if intent in index]
        self.ngrams, self.ngram_share = None, 0.0
        if not held:
            return 0.0
        ngrams = CharNgrams.fit(self.read(texts), [index[i] for i in intents], len(self.labels))
        held_texts = [text for text, _ in held]
        share = choose_share(self.probabilities(held_texts, ngrams=False), ngrams.probabilities(self.read(held_texts)),
                             [target for _, target in held])
        if share > 0:
            self.ngrams, self.ngram_share = ngrams, share
        return share

    def relabelled(self, sources: Mapping[str, Sequence[str]]) -> "IntentClassifier":
        """A classifier of the intents ``sources`` names, in that order, sharing this one's encoder, each intent's head
        row the mean direction of its source labels' rows: an intent renamed keeps its row, one merged from two
        starts between theirs. A warm start from it keeps what this model learnt of intents renamed or merged since.
        The n-gram vote is left out: it is fitted afresh after training."""
        index = {label: i for i, label in enumerate(self.labels)}
        with torch.no_grad():
            rows = F.normalize(self.head.detach(), dim=-1)
            head = torch.stack([F.normalize(rows[[index[old] for old in olds]].mean(dim=0), dim=-1)
                                for olds in sources.values()])
        model = IntentClassifier(self.encoder, list(sources), self.scale, self.prefix, self.simplified)
        model.head = torch.nn.Parameter(head.to(self.device))
        return model.to(self.device)

    # --- persistence -------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write ``encoder/`` (a sentence-transformers folder), ``head.safetensors``, ``labels.json`` and,
        when the model has an n-gram vote, ``ngrams.safetensors`` and ``ngrams.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save(str(folder / "encoder"))
        save_file({"head": self.head.detach().cpu().contiguous()}, str(folder / "head.safetensors"))
        if self.ngrams is not None:
            self.ngrams.save(folder)
        meta = {"labels": self.labels, "scale": self.scale, "prefix": self.prefix, "ngram_share": self.ngram_share,
                "simplified": self.simplified}
        (folder / "labels.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                 for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / FILES}
        (folder / FILES).write_text(json.dumps(files, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, device: str | None = None) -> "IntentClassifier":
        folder = Path(folder)
        try:
            _check_files(folder)
            meta = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
            labels, scale, prefix = meta["labels"], float(meta["scale"]), meta.get("prefix", "")
            encoder = load_sentence_model(str(folder / "encoder"), pick_device(device), local_files_only=True)
            head = load_file(str(folder / "head.safetensors"))["head"]
            share = float(meta.get("ngram_share", 0.0))
            ngrams = CharNgrams.load(folder) if share > 0 else None
        except Exception as exc:  # any unreadable part means the folder cannot serve
            raise ModelLoadError(f"{folder}: cannot load the classifier: {type(exc).__name__}: {exc}") from exc
        model = cls(encoder, labels, scale, prefix, simplified=bool(meta.get("simplified", False)))
        if tuple(head.shape) != tuple(model.head.shape):
            raise ModelLoadError(
                f"{folder}: head has shape {tuple(head.shape)} but {len(model.labels)} labels and "
                f"a {model.head.shape[1]}-dim encoder need {tuple(model.head.shape)}"
            )
        if ngrams is not None and ngrams.coef.shape[0] != len(model.labels):
            raise ModelLoadError(f"{folder}: the n-gram vote has {ngrams.coef.shape[0]} labels, not {len(model.labels)}")
        model.head.data.copy_(head)
        model.ngrams, model.ngram_share = ngrams, share
        return model.to(encoder.device).eval()
