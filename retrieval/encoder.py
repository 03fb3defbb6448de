"""The sentence encoder that turns questions and answers into vectors for the answer index.

It wraps `sentence_transformers.SentenceTransformer` so that the rest of deskbot never has to
know about model-specific conventions: vectors always come back as float32, L2-normalised
(so inner product is cosine similarity and FAISS inner-product indexes can be used), and
e5-style models get their `query: ` / `passage: ` prefixes, without which their embeddings
are noticeably worse.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from retrieval.text import head_and_tail, model_inputs

E5_PREFIXES = ("query: ", "passage: ")


_E5_NAME = re.compile(r"(?:^|[^a-z0-9])e5(?:[^a-z0-9]|$)")


def wants_e5_prefixes(name_or_path: str) -> bool:
    """Whether the model expects e5's "query: " / "passage: " prefixes; without them e5's
    similarities drift. True for a folder whose sentence-transformers config declares those
    prompts (as deskbot's prepared multilingual folder does) and for names of e5 checkpoints
    (intfloat/e5-*, multilingual-e5-*). The last two parts of a path are looked at, since a
    downloaded e5 folder is often `.../e5-small/model`; the folders above them (a cache root, a
    virtual environment's `/opt/e5-shop/`) name no model.
    """
    st_config = Path(name_or_path) / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {}
        if prompts.get("query") == E5_PREFIXES[0]:
            return True
    return _E5_NAME.search("/".join(Path(str(name_or_path).lower()).parts[-2:])) is not None


def _fingerprint(name_or_path: str) -> str:
    """A short identity of the model's weights, stable across machines.

    A local folder is identified by the hash of its files rather than its path, so that an
    index built against a model copied elsewhere (another venv, a model version folder)
    still loads, while a different or re-trained model in the same place is refused.
    A hub-style name is its own identity.
    """
    folder = Path(name_or_path)
    if not folder.is_dir():
        return name_or_path
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        if file.suffix not in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            continue  # READMEs and .gitattributes do not change the vectors
        if file.name == "README.md":
            continue
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_sentence_model(name_or_path: str, device: str | None = None, **kwargs: object) -> SentenceTransformer:
    """A sentence-transformers model in float32, whatever its checkpoint was saved in.

    transformers loads weights in the dtype they were saved in, and a model published in float16 then
    trains to NaN (AdamW's epsilon and small squared gradients round to zero in float16, whatever the
    learning rate) and runs on a CPU slower than in float32, if at all.
    """
    return SentenceTransformer(name_or_path, device=device, model_kwargs={"dtype": torch.float32}, **kwargs)


class Encoder:
    """Encodes texts into L2-normalised float32 vectors, in batches.

    `name` is what was asked for (a hub name or a folder); `fingerprint` identifies the
    weights and is what an index manifest is checked against; `dim` is the vector size.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        device: str | None = None,
        prefixes: tuple[str, str] | None = None,
        batch_size: int = 64,
    ) -> None:
        name = str(name_or_path)
        model = load_sentence_model(name, device)
        self._init(model, name, prefixes, batch_size, _fingerprint(name))

    @classmethod
    def from_model(
        cls,
        model: SentenceTransformer,
        name: str,
        prefixes: tuple[str, str] | None = None,
        batch_size: int = 64,
        simplified: bool = True,
    ) -> "Encoder":
        """Wrap a model that is already loaded (the classifier's base, say) to avoid a second load;
        ``simplified``: whether it reads Traditional Chinese as Simplified (:func:`~retrieval.text.model_text`), as the
        classifiers deskbot trains now do."""
        encoder = cls.__new__(cls)
        encoder._init(model, name, prefixes, batch_size, _fingerprint(name), simplified)
        return encoder

    def _init(
        self,
        model: SentenceTransformer,
        name: str,
        prefixes: tuple[str, str] | None,
        batch_size: int,
        fingerprint: str,
        simplified: bool = True,
    ) -> None:
        self.model = model
        self.simplified = simplified
        self.name = name
        self.fingerprint = fingerprint
        dim = model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{name}: the model does not declare its embedding dimension")
        self.dim: int = int(dim)
        if prefixes is None:
            prefixes = E5_PREFIXES if wants_e5_prefixes(name) else ("", "")
        self.query_prefix, self.passage_prefix = prefixes
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim})"

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = model_inputs(texts, self.simplified)
        vectors = self.model.encode(
            head_and_tail(texts, self.model.tokenizer, self.model.max_seq_length, prefix),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for what a customer asks now, shape (len(texts), dim)."""
        return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for what is stored in the index (historical questions or answers)."""
        return self._encode(texts, self.passage_prefix)
