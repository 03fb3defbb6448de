"""The FAISS index over historical and templated answers.

What is embedded for an answer is the customer question it answered when there is one (a new
question is matched against old questions, which is much closer than question-to-answer), else
the answer text itself. Scores are cosine similarities: vectors are L2-normalised and the
indexes use inner product.

The index type follows the size: an exact `IndexFlatIP` (wrapped in `IndexIDMap2` for ids)
for up to `flat_max` answers, where a full scan still answers in a few milliseconds, and an
`IndexIVFFlat` with trained centroids above that (bench/RETRIEVAL.md has the figures). For a history
too large for memory, ``ivf-sq8`` (`IndexIVFScalarQuantizer`) keeps each vector as one byte a dimension, a
quarter of the memory and of the file, and orders close answers a little less exactly. IVF
rather than HNSW because FAISS removes ids from an IVF index in place (an HNSW graph cannot
drop nodes, so `remove` would mean a rebuild) and has a GPU version of it (none of HNSW). On a
GPU the CPU index stays the master copy (it is what is saved and updated) and a clone on the
GPU answers the searches.

String answer ids are mapped to int64 labels, handed out in order and persisted, so that
`add` and `remove` work on the FAISS index in place without a rebuild.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import faiss
import numpy as np

from finetune.cache import file_sha256
from finetune.durable import owner_only
from retrieval import gpu
from retrieval.options import IVF_TYPES, IndexOptions
from retrieval.text import PRICE, comparable

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
ANSWERS_FILE = "answers.jsonl"
MANIFEST_FILE = "manifest.json"
SHOWN_KEYS = ("index_type", "params", "count", "dim", "encoder")  # what `bot info` shows of a manifest
MANIFEST_KEYS = (*SHOWN_KEYS, "encoder_fingerprint", "next_label", "options", "checksums")
FORMAT_VERSION = 1


class TextEncoder(Protocol):
    """What the index needs from an encoder (`retrieval.encoder.Encoder` is one)."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


PARALLEL_BATCH = 16  # searches of fewer queries than this run on one OpenMP thread
MIN_POINTS_PER_LIST = 39  # below this many training points per IVF list k-means is unreliable


@contextmanager
def _threads_for(batch: int) -> Iterator[None]:
    """One FAISS thread for a small batch, all of them for a large one.

    FAISS splits a single flat-index query over its threads and joins them at a barrier; with
    two cores shared by the encoder, the server and other processes, the thread that waits for
    a core decides the latency (over 20,000 answers on a busy machine: 66 ms at the median on
    two threads, 1.2 ms on one; bench/RETRIEVAL.md). Large batches split by query, which pays.
    OpenMP's thread count is per calling thread, so concurrent searches do not see each other's
    setting.
    """
    threads = faiss.omp_get_max_threads()
    if batch >= PARALLEL_BATCH or threads == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


class IndexBuildError(ValueError):
    """bot.yml's retrieval settings cannot index these answers (too few for IVF, no GPU for a GPU index)."""


class IndexMismatchError(RuntimeError):
    """A saved index does not belong to the encoder it is loaded with, or its files changed."""


@dataclass(slots=True)
class Answer:
    id: str
    text: str
    question: str | None = None
    intent: str | None = None
    source: str = "history"


@dataclass(slots=True)
class Hit:
    id: str
    text: str
    score: float
    question: str | None
    intent: str | None


def _answer_key(answer: Answer) -> tuple[str, str]:
    """An answer's text and question (its text when it has none) as :func:`collapse_near_duplicates` compares
    them: normalised, with the digits of an order number or the like (three digits or more) made ``#`` in the
    question, and in the answer where it repeats one from its question. Such a number is the customer's; any
    other number in an answer is a fact that differs: "Plan 200 costs 450 USD" is not "Plan 100 costs 250
    USD", nor "Zone 5 delivery takes 9 days" the zone 1 answer, and merging them sent the one answer to a
    question about the other. Nor is a price the customer named ("the $1499 laptop?" "Yes, the $1499 laptop
    is in stock"): the $1999 laptop's answer is another."""
    if not answer.question:
        return (text := comparable(answer.text)), text
    numbers = re.compile(r"\d{3,}")
    prices = {number for price in PRICE.findall(answer.text) for number in numbers.findall(price)}
    echoed = set(numbers.findall(answer.text)) & set(numbers.findall(answer.question)) - prices
    text = numbers.sub(lambda m: "#" if m.group() in echoed else m.group(), answer.text)
    return comparable(text), comparable(answer.question, number_digits=3)


def _embed(encoder: TextEncoder, answers: Sequence[Answer]) -> np.ndarray:
    """Questions are encoded as queries (question-to-question is a symmetric match, which e5
    wants with `query: ` on both sides); answers without a question as passages."""
    vectors = np.zeros((len(answers), encoder.dim), dtype=np.float32)
    with_question = [i for i, a in enumerate(answers) if a.question]
    without = [i for i, a in enumerate(answers) if not a.question]
    if with_question:
        vectors[with_question] = encoder.encode_queries([answers[i].question or "" for i in with_question])
    if without:
        vectors[without] = encoder.encode_passages([answers[i].text for i in without])
    return vectors


def collapse_near_duplicates(answers: Sequence[Answer], vectors: np.ndarray, threshold: float) -> list[int]:
    """Positions of the answers to keep, first occurrence wins.

    Two answers are near-duplicates when they are filed under one intent, their texts are equal once
    normalised AND their questions are too (normalised equal, or embedded at cosine >= threshold), as
    :func:`_answer_key` makes them: history repeats "order 1234 is cancelled" to "cancel order
    1234" with every order number. The same answer to clearly different questions is kept once
    per question, since each question is another way customers ask for it and dropping it would
    lose recall; different answers are never merged, nor one answer under two intents (retrieval gives an
    answer only for the intent predicted: merged, the "complaint" copy of a template the "refund" one shares
    was gone, and a customer predicted to complain was not answered).
    """
    keys = [_answer_key(answer) for answer in answers]
    groups: dict[tuple[str | None, str], list[int]] = {}
    for position, (text, _question) in enumerate(keys):
        groups.setdefault((answers[position].intent, text), []).append(position)
    keep: list[int] = []
    for members in groups.values():
        kept: list[int] = []
        seen_questions: set[str] = set()
        for position in members:
            question = keys[position][1]
            if question in seen_questions:
                continue
            if kept and float(np.max(vectors[kept] @ vectors[position])) >= threshold:
                continue
            kept.append(position)
            seen_questions.add(question)
        keep.extend(kept)
    return sorted(keep)


def _deduplicated(answers: Sequence[Answer], vectors: np.ndarray,
                  opts: IndexOptions) -> tuple[Sequence[Answer], np.ndarray]:
    """``answers`` and their ``vectors`` with near-duplicates collapsed (:func:`collapse_near_duplicates`), where
    ``opts.dedup`` asks for it."""
    if not opts.dedup or not answers:
        return answers, vectors
    keep = collapse_near_duplicates(answers, vectors, opts.dedup_threshold)
    return [answers[i] for i in keep], vectors[keep]


def _check_rows(answers: Sequence[Answer], vectors: np.ndarray) -> None:
    """Refuse answers and vectors that do not pair up one to one, or two answers with one id: two rows for one id
    would leave one behind on remove."""
    if len(vectors) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(vectors)} vectors")
    if len({a.id for a in answers}) != len(answers):
        raise ValueError("answer ids must be unique")


def _encoder_identity(encoder: TextEncoder) -> str:
    """The weights' fingerprint when the encoder has one (so a moved model folder still
    matches), else its name."""
    return str(getattr(encoder, "fingerprint", encoder.name))


def _prefixes(encoder: TextEncoder) -> list[str]:
    """The role prefixes an encoder puts before queries and passages: the same weights with other
    prefixes place every text elsewhere, so they are part of what an index was built with."""
    return [getattr(encoder, "query_prefix", ""), getattr(encoder, "passage_prefix", "")]


class AnswerIndex:
    """Answers, their int64 labels, and the FAISS index over their vectors."""

    def __init__(
        self,
        encoder: TextEncoder,
        index: faiss.Index,
        index_type: str,
        options: IndexOptions,
        answers: dict[int, Answer],
        next_label: int,
    ) -> None:
        self.encoder = encoder
        self.index = index  # the CPU master copy
        self.index_type = index_type
        self.options = options
        self.device = gpu.resolve_device(options.device)
        self._answers = answers
        self._labels = {answer.id: label for label, answer in answers.items()}
        self._next_label = next_label
        self._gpu_index: faiss.Index | None = None  # a search replica, rebuilt after changes
        self._gpu_lock = threading.Lock()  # FAISS's GPU indexes take one search at a time, the server's workers many
        self._intent_labels: dict[str | None, np.ndarray] | None = None

    # --- building -------------------------------------------------------------------------

    @staticmethod
    def check_options(count: int, **options: Any) -> None:
        """Raise :class:`IndexBuildError` now for settings that cannot index ``count`` answers, so that a
        training run fails before minutes of fine-tuning rather than after them. Near-duplicates, which
        the fine-tuned encoder finds at build, may leave fewer; the build then trains fewer lists."""
        opts = IndexOptions(**options)
        _device(opts)
        if opts.index_type in IVF_TYPES:
            _nlist(count, opts)

    @classmethod
    def build(cls, encoder: TextEncoder, answers: Sequence[Answer], **options: Any) -> "AnswerIndex":
        """Embed the answers and index them; see `IndexOptions` for the options."""
        return cls.build_from_vectors(encoder, answers, _embed(encoder, answers), **options)

    @classmethod
    def build_from_vectors(
        cls, encoder: TextEncoder, answers: Sequence[Answer], vectors: np.ndarray, **options: Any
    ) -> "AnswerIndex":
        """Index answers whose vectors are already computed (the benchmark, or a caller that
        embedded them for another purpose); vectors must be L2-normalised rows."""
        opts = IndexOptions(**options)
        _check_rows(answers, vectors)
        given = len(answers)
        answers, vectors = _deduplicated(answers, np.ascontiguousarray(vectors, dtype=np.float32), opts)
        n = len(answers)
        index_type = opts.index_type
        if index_type == "auto":  # IVF cannot train on fewer answers than one list needs, whatever flat_max says
            index_type = "flat" if n <= max(opts.flat_max, MIN_POINTS_PER_LIST) else "ivf"
        nlist = _nlist(n, opts, given) if index_type in IVF_TYPES else 0
        if not nlist:
            index_type = "flat"
        device = _device(opts)
        labels = np.arange(n, dtype=np.int64)
        replica: faiss.Index | None = None
        if index_type == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim))
            index.add_with_ids(vectors, labels)
        else:
            index, replica = cls._build_ivf(encoder.dim, vectors, labels, nlist, opts, device, index_type)
        built = cls(encoder, index, index_type, opts, dict(zip(labels.tolist(), answers)), n)
        built._gpu_index = replica
        return built

    @staticmethod
    def _build_ivf(
        dim: int, vectors: np.ndarray, labels: np.ndarray, nlist: int, opts: IndexOptions, device: str,
        index_type: str = "ivf",
    ) -> tuple[faiss.Index, faiss.Index | None]:
        """Train the IVF centroids (and for ``ivf-sq8`` each dimension's byte range) on a sample and add
        everything, on the GPU when there is one.

        Returns the CPU master and, when built on the GPU, the GPU index (reused for search).
        """
        n = len(vectors)
        quantizer = faiss.IndexFlatIP(dim)
        if index_type == "ivf-sq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = opts.kmeans_iters
        index.cp.seed = opts.seed
        index.cp.max_points_per_centroid = opts.train_points_per_list
        index.nprobe = min(nlist, opts.nprobe or max(8, nlist // 128))
        rng = np.random.default_rng(opts.seed)
        sample_size = min(n, nlist * opts.train_points_per_list)
        sample = vectors[np.sort(rng.choice(n, size=sample_size, replace=False))]
        if device == "gpu":
            replica = gpu.to_gpu(index)
            replica.train(sample)
            replica.add_with_ids(vectors, labels)
            return gpu.to_cpu(replica), replica
        index.train(sample)
        index.add_with_ids(vectors, labels)
        return index, None

    # --- changing -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def count(self) -> int:
        return len(self._answers)

    @property
    def ids(self) -> list[str]:
        """The ids of the answers indexed."""
        return list(self._labels)

    def add(self, answers: Sequence[Answer]) -> None:
        """Add answers in place; an answer whose id is already indexed replaces the old one."""
        self.add_vectors(answers, _embed(self.encoder, answers))

    def add_vectors(self, answers: Sequence[Answer], vectors: np.ndarray) -> None:
        """`add` for answers whose vectors are already computed."""
        _check_rows(answers, vectors)
        if not answers:
            return
        self.remove([a.id for a in answers if a.id in self._labels])
        labels = np.arange(self._next_label, self._next_label + len(answers), dtype=np.int64)
        self._next_label += len(answers)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), labels)
        for label, answer in zip(labels.tolist(), answers):
            self._answers[label] = answer
            self._labels[answer.id] = label
        self._changed()

    def replace(self, prefix: str, answers: Sequence[Answer]) -> None:
        """Make the answers whose ids start with ``prefix`` (``agent:``) ``answers``, near-duplicates among
        them collapsed as a build collapses them: added as they came, a refresh brought back every copy
        the build had merged, and each refresh re-embedded them all anyway."""
        self.remove([i for i in self.ids if i.startswith(prefix)])
        self.add_vectors(*_deduplicated(answers, _embed(self.encoder, answers), self.options))

    def remove(self, ids: Iterable[str]) -> None:
        """Remove answers by id, in place; ids that are not indexed are ignored (they may
        have been collapsed as near-duplicates on build)."""
        labels = [self._labels.pop(i) for i in ids if i in self._labels]
        if not labels:
            return
        array = np.array(labels, dtype=np.int64)
        removed = self.index.remove_ids(faiss.IDSelectorBatch(array.size, faiss.swig_ptr(array)))
        if removed != len(labels):
            raise RuntimeError(f"FAISS removed {removed} of {len(labels)} answers: the index is inconsistent")
        for label in labels:
            del self._answers[label]
        self._changed()

    def _changed(self) -> None:
        self._gpu_index = None
        self._intent_labels = None

    # --- searching ------------------------------------------------------------------------

    def search(self, query_texts: Sequence[str], k: int = 5, intent: str | None = None) -> list[list[Hit]]:
        """The k best answers per query, best first; restricted to one intent's answers when
        `intent` is given (then up to k hits of that intent, whenever it has that many)."""
        return self.search_vectors(self.encoder.encode_queries(query_texts), k, intent)

    def search_vectors(self, vectors: np.ndarray, k: int = 5, intent: str | None = None) -> list[list[Hit]]:
        """`search` for query vectors already computed, to spare a second encoder pass."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        k = min(k, self.count)
        if k <= 0:
            return [[] for _ in range(len(vectors))]
        with _threads_for(len(vectors)):
            if intent is None:
                scores, labels = self._search_all(vectors, k)
            else:
                scores, labels = self._search_intent(vectors, k, intent)
        return [
            [self._hit(int(label), float(score)) for score, label in zip(row_scores, row_labels) if label >= 0]
            for row_scores, row_labels in zip(scores, labels)
        ]

    def _hit(self, label: int, score: float) -> Hit:
        answer = self._answers[label]
        return Hit(answer.id, answer.text, score, answer.question, answer.intent)

    def _search_all(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "gpu":
            try:
                with self._gpu_lock:
                    if self._gpu_index is None:
                        self._gpu_index = gpu.to_gpu(self.index)
                    return self._gpu_index.search(vectors, k)
            except RuntimeError as exc:  # FAISS's own errors (the GPU's memory full): every message failed with them
                log.error("the answer index cannot search on the GPU (%s); it searches on the CPU from now on", exc)
                self.device, self._gpu_index = "cpu", None
        return self.index.search(vectors, k)

    def _labels_of(self, intent: str) -> np.ndarray:
        if self._intent_labels is None:
            by_intent: dict[str | None, list[int]] = {}
            for label, answer in self._answers.items():
                by_intent.setdefault(answer.intent, []).append(label)
            self._intent_labels = {key: np.array(value, dtype=np.int64) for key, value in by_intent.items()}
        return self._intent_labels.get(intent, np.zeros(0, dtype=np.int64))

    def _search_intent(self, vectors: np.ndarray, k: int, intent: str) -> tuple[np.ndarray, np.ndarray]:
        """Search among one intent's answers with an IDSelector on the CPU master (FAISS's GPU
        indexes take no selector). IVF only scans `nprobe` lists, which may hold fewer than k
        of that intent's answers: those queries are repeated over every list, which is exact."""
        members = self._labels_of(intent)
        if members.size == 0:
            empty = np.full((len(vectors), k), -1, dtype=np.int64)
            return np.zeros((len(vectors), k), dtype=np.float32), empty
        selector = faiss.IDSelectorBatch(members.size, faiss.swig_ptr(members))
        if self.index_type == "flat":
            return self.index.search(vectors, k, params=faiss.SearchParameters(sel=selector))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        scores, labels = self.index.search(vectors, k, params=params)
        short = np.flatnonzero((labels >= 0).sum(axis=1) < min(k, members.size))
        if short.size:
            exhaustive = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nlist)
            scores[short], labels[short] = self.index.search(vectors[short], k, params=exhaustive)
        return scores, labels

    # --- persisting -----------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """The index's own parameters, as recorded in the manifest."""
        if self.index_type in IVF_TYPES:
            return {"nlist": int(self.index.nlist), "nprobe": int(self.index.nprobe), "metric": "inner_product"}
        return {"metric": "inner_product"}

    def save(self, folder: Path) -> None:
        """Write index.faiss, answers.jsonl and manifest.json (the manifest last, so that a
        half-written folder fails its checksum instead of loading)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # The customers' questions as vectors (from which their words can be guessed back) and the agents' answers
        # beside them: for the bot's owner alone. FAISS writes by name, into the file made for it here.
        os.close(owner_only(folder / INDEX_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        with open(folder / ANSWERS_FILE, "w", encoding="utf-8", opener=owner_only) as handle:
            for label, answer in self._answers.items():
                handle.write(json.dumps({"label": label, **dataclasses.asdict(answer)}, ensure_ascii=False) + "\n")
        manifest = {
            "format": FORMAT_VERSION,
            "encoder": self.encoder.name,
            "encoder_fingerprint": _encoder_identity(self.encoder),
            "prefixes": _prefixes(self.encoder),
            "dim": self.encoder.dim,
            "count": self.count,
            "next_label": self._next_label,
            "index_type": self.index_type,
            "params": self.params(),
            "options": self.options.model_dump(),
            "faiss": faiss.__version__,
            "checksums": {INDEX_FILE: file_sha256(folder / INDEX_FILE), ANSWERS_FILE: file_sha256(folder / ANSWERS_FILE)},
            # for `bot models`, which looks at sizes and reads no file whole
            "sizes": {name: (folder / name).stat().st_size for name in (INDEX_FILE, ANSWERS_FILE)},
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, encoder: TextEncoder, device: str = "auto") -> "AnswerIndex":
        """Load a saved index, refusing (IndexMismatchError) one built with another encoder or
        dimension, or whose files do not match their checksums. `device` is not taken from the
        manifest: the machine that serves may not be the one that built."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest["encoder_fingerprint"] != _encoder_identity(encoder):
            raise IndexMismatchError(
                f"{folder}: the index was built with encoder {manifest['encoder']!r} "
                f"(fingerprint {manifest['encoder_fingerprint']}) but is being loaded with {encoder.name!r} "
                f"(fingerprint {_encoder_identity(encoder)}); rebuild the index with `bot train`"
            )
        if manifest.get("prefixes", _prefixes(encoder)) != _prefixes(encoder):  # indexes saved before prefixes were kept pass
            raise IndexMismatchError(
                f"{folder}: the index was built with the prefixes {manifest['prefixes']} but is being loaded with "
                f"{_prefixes(encoder)} (query, passage); rebuild the index with `bot train`"
            )
        if manifest["dim"] != encoder.dim:
            raise IndexMismatchError(
                f"{folder}: the index holds {manifest['dim']}-dim vectors but encoder {encoder.name!r} "
                f"makes {encoder.dim}-dim ones; rebuild the index with `bot train`"
            )
        if unlisted := sorted({INDEX_FILE, ANSWERS_FILE} - set(manifest["checksums"])):  # a manifest edited
            raise IndexMismatchError(f"{folder}: {MANIFEST_FILE} lists no checksum of {unlisted[0]}")
        for name, expected in manifest["checksums"].items():
            if not (folder / name).is_file():
                raise IndexMismatchError(f"{folder}: {name} is missing")
            if file_sha256(folder / name) != expected:
                raise IndexMismatchError(f"{folder}: {name} does not match its checksum in {MANIFEST_FILE}: it was changed or truncated")
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.d != manifest["dim"] or index.ntotal != manifest["count"]:
            raise IndexMismatchError(f"{folder}: {INDEX_FILE} holds {index.ntotal}×{index.d}, manifest says {manifest['count']}×{manifest['dim']}")
        options = IndexOptions(**{**manifest["options"], "device": device})
        if manifest["index_type"] in IVF_TYPES:
            index.nprobe = manifest["params"]["nprobe"]
        return cls(encoder, index, manifest["index_type"], options, _read_answers(folder), manifest["next_label"])


def _read_answers(folder: Path) -> dict[int, Answer]:
    answers: dict[int, Answer] = {}
    with (Path(folder) / ANSWERS_FILE).open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            label = row.pop("label")
            answers[label] = Answer(**row)
    return answers


def saved_answers(folder: Path) -> list[Answer]:
    """The answers a saved index holds, read without the encoder or FAISS: what ``bot retrain``
    compares with the store to find agent answers a purge took away."""
    return list(_read_answers(folder).values())


def _device(opts: IndexOptions) -> str:
    try:
        return gpu.resolve_device(opts.device)
    except RuntimeError as exc:  # "gpu" asked for, none here
        raise IndexBuildError(str(exc)) from None


def _nlist(n: int, opts: IndexOptions, given: int | None = None) -> int:
    """The IVF list count for ``n`` answers; too few answers to train that many lists is an error.

    ``given``: the answers before near-duplicates were collapsed. Settings that fit those but not the
    ``n`` left train as many lists as ``n`` can (0: a flat index), with a warning: `check_options`
    passed them before training, the collapse needs the fine-tuned encoder so cannot run earlier, and
    refusing now would throw the training run away.
    """
    nlist = opts.nlist or max(1, min(int(round(math.sqrt(n))), n // MIN_POINTS_PER_LIST))
    if n < nlist * MIN_POINTS_PER_LIST:
        if given is not None and given >= (opts.nlist or 1) * MIN_POINTS_PER_LIST:
            fitted = n // MIN_POINTS_PER_LIST
            log.warning("%d of %d answers are left once near-duplicates are collapsed, too few for nlist=%d; "
                        "indexing them in %s", n, given, nlist, f"{fitted} IVF lists" if fitted else "a flat index")
            return fitted
        raise IndexBuildError(f"an IVF index with nlist={nlist} needs at least {nlist * MIN_POINTS_PER_LIST} answers "
                              f"to train, and there are {n}; set retrieval.index_type to flat (or auto), or a smaller nlist")
    return nlist


def read_manifest(folder: Path) -> dict[str, Any]:
    """A saved index's manifest, checked for its format only: what `bot info` shows without
    loading the index, and the first thing `AnswerIndex.load` checks."""
    manifest_path = Path(folder) / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IndexMismatchError(f"{folder}: no {MANIFEST_FILE}, so this is not a saved answer index")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:  # cut short, or not UTF-8
        raise IndexMismatchError(f"{folder}: {MANIFEST_FILE} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise IndexMismatchError(f"{folder}: index format {found}, expected {FORMAT_VERSION}")
    if missing := [key for key in MANIFEST_KEYS if key not in manifest]:
        raise IndexMismatchError(f"{folder}: {MANIFEST_FILE} lacks {', '.join(missing)}")
    return manifest


def describe_saved(folder: Path) -> dict[str, Any]:
    """What `bot info` shows about a saved index, from its manifest alone (loading the index
    would need the encoder); a broken or missing manifest is reported, not raised."""
    try:
        manifest = read_manifest(folder)
    except IndexMismatchError as exc:
        return {"error": str(exc)}
    return {key: manifest[key] for key in SHOWN_KEYS}
