"""Shared fixtures: a tiny random BERT for fast tests, and trained bot folders.

Unit tests use a two-layer, 32-wide BERT built here with the real MiniLM tokenizer: it trains in
seconds and exercises every code path. The slow tests fine-tune the real packaged model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bot" / "demo"
SHARED_DATA = REPO.parent / "shared" / "data"


def make_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved as a Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from finetune.models import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def copy_bot(source: Path, dest: Path, base_model: str | None = None, epochs: float | None = None) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("models", "*.db*", "*.sqlite", "__pycache__"))
    if base_model or epochs:
        import yaml

        config = yaml.safe_load((dest / "bot.yml").read_text())
        model = config.setdefault("model", {})
        if base_model:
            model["base"] = base_model
        if epochs:
            model["epochs"] = epochs
        (dest / "bot.yml").write_text(yaml.safe_dump(config))
    return dest


@pytest.fixture(scope="session")
def tiny_demo_bot(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The demo bot trained on the tiny BERT (fast; its answers are mostly fallbacks)."""
    from bot.project import load_project
    from bot.training import train_project

    root = copy_bot(DEMO, tmp_path_factory.mktemp("bots") / "tiny-demo", str(tiny_model), epochs=1)
    train_project(load_project(root), device="cpu", progress=False)
    return root


@pytest.fixture(scope="session")
def real_demo_bot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bot fine-tuned from the real packaged MiniLM, briefly: enough to answer its intents."""
    from bot.project import load_project
    from bot.training import train_project

    root = copy_bot(DEMO, tmp_path_factory.mktemp("bots") / "demo", epochs=3)
    train_project(load_project(root), device="cpu", progress=False)
    return root
