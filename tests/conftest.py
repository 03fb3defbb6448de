"""Shared fixtures: a tiny random BERT for fast tests, and trained bot folders.

Unit tests use a two-layer, 32-wide BERT built here with the real MiniLM tokenizer: it trains in
seconds and exercises every code path. The slow tests fine-tune the real packaged model.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

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


@pytest.fixture(scope="session")
def web_demo_bot(tmp_path_factory: pytest.TempPathFactory, tiny_demo_bot: Path) -> Iterator[SimpleNamespace]:
    """The tiny demo bot set up for the web channel and widget tests, in its own folder and store.

    It has an admin token, and thresholds no prediction of the tiny model reaches: every typed
    message gets the fallback (with buttons), while a button payload such as
    ``/check_refund_policy`` still selects its intent's template. One extra origin may embed the
    widget: a loopback port bound here, so that a test can serve a customer's page from it.
    """
    import socket

    import yaml

    shop_socket = socket.create_server(("127.0.0.1", 0))
    embed_origin = f"http://localhost:{shop_socket.getsockname()[1]}"
    root = tmp_path_factory.mktemp("bots") / "web-demo"
    shutil.copytree(tiny_demo_bot, root, ignore=shutil.ignore_patterns("*.db*"))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["thresholds"] = {"intent": 1.0, "retrieval": 1.0, "fallbacks_before_handoff": 100}
    config.setdefault("server", {})["admin_token"] = "web-admin-token"
    config.setdefault("channels", {}).setdefault("web", {})["origins"] = [embed_origin]
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    yield SimpleNamespace(root=root, admin_token="web-admin-token", embed_origin=embed_origin, shop_socket=shop_socket)
    shop_socket.close()
