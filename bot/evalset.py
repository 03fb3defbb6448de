"""The frozen evaluation set as read without the model libraries: what `bot check` and `bot train` say of nlu.yml's
intents before any training (which of them no accuracy measures, which are too unequal), without the seconds torch,
transformers and scikit-learn take to import (:mod:`bot.training` trains, and imports them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bot.project import Project, ProjectError
from finetune.labelled import read_jsonl

EVALUATION_FILE = "evaluation.jsonl"  # the frozen evaluation set, in the models folder
MIN_HOLDING_OUT = 5  # examples an intent needs for one of them to be held out


def unmeasured_intents(project: Project) -> list[str]:
    """nlu.yml's intents of which the frozen evaluation set holds no example, nor will after the next training (fewer
    than MIN_HOLDING_OUT examples): no accuracy `bot models` lists is theirs, and the promotion gate checks them only
    as part of the seed set's overall accuracy, where a candidate may lose a one-example intent within
    learning.max_forgotten."""
    frozen = {r["intent"] for r in read_frozen_rows(project.models_dir / EVALUATION_FILE)}
    counts = Counter(e.intent for e in project.examples)
    return sorted(i for i in project.intents if i not in frozen and counts[i] < MIN_HOLDING_OUT)


UNEQUAL = 10  # times the examples of the smallest intent the largest has, from which training is told to weigh them


def unequal_intents(project: Project) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """nlu.yml's largest and smallest intents with their example counts, when the largest has ``UNEQUAL`` times the
    smallest's and ``model.class_weights`` is ``none``: the model then tends to answer the largest for the smallest's
    messages, and the setting that weighs them is to be named."""
    counts = Counter(e.intent for e in project.examples).most_common()
    if project.config.model.class_weights != "none" or not counts or counts[0][1] < UNEQUAL * counts[-1][1]:
        return None
    return counts[0], counts[-1]


def read_frozen_rows(path: Path) -> list[dict[str, Any]]:
    """The frozen evaluation set; a damaged line stops training with its number, since a new set would
    make this version's figures incomparable with every earlier version's."""
    if not path.exists() or path.stat().st_size == 0:  # none yet, or every intent too small to hold one out
        return []

    def refuse(problem: str) -> None:
        raise ProjectError(f"{problem}; restore it from a backup, or delete the file to choose a new "
                           "evaluation set (earlier versions' figures then no longer compare)")

    return read_jsonl(path, refuse)
