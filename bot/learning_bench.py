"""``bot bench learning``: how close does the learning loop get to full-data accuracy, on a label budget?

A bot starts from ``seed_shots`` examples per intent (``bot init --from-jsonl`` and ``bot train``).
The rest of train is shuffled and streamed as customer traffic, in ``rounds`` equal parts, through
the real engine and conversation store. After each part an oracle plays the reviewer: it takes the
review queue in its order and labels whole items with the true intent of the item's latest message,
while the turns labelled stay within ``label_budget`` of the traffic so far. Then ``bot retrain``
runs, gate included, and the serving model is measured on the test file (top-1 accuracy, per
intent too, and ``broken_answers``: the test lines the previous round's model got right and this
round's gets wrong, which counts every regression that the worst intent's drop summarises). The
same recipe trained on all of train, in the same run, gives ``full_data_accuracy``.

The test file is read only to score serving models; the loop never sees it.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from bot.channels.base import Turn
from bot.engine import Bot
from bot.importer import write_bot
from bot.project import Example, Project, load_project
from bot.retrain import measure, retrain
from bot.review import serving_queue
from bot.server import load_serving_model
from bot.training import train_project
from dialogues.store import Store
from finetune.bench import sample_shots
from finetune.classifier import IntentClassifier
from finetune.registry import Registry

Say = Callable[[str], None]


def make_bot(root: Path, examples: list[Example], model: str, config: dict[str, Any] | None = None) -> Project:
    write_bot(root, [{"text": e.text, "intent": e.intent} for e in examples], root.name)
    bot_config = yaml.safe_load((root / "bot.yml").read_text(encoding="utf-8"))
    bot_config["model"]["base"] = model
    for section, values in (config or {}).items():
        bot_config.setdefault(section, {}).update(values)
    (root / "bot.yml").write_text(yaml.safe_dump(bot_config), encoding="utf-8")
    return load_project(root)


async def stream(project: Project, texts: list[str], first: int, device: str | None, concurrency: int = 64) -> None:
    """Each message as its own conversation (``traffic-N``), many at once, through the real engine."""
    bot = Bot(project, load_serving_model(project, device, workers=1), Store(project.db_path))  # retrains next, on every core
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int, text: str) -> None:
        async with gate:
            await bot.handle(Turn(f"traffic-{n}", text, "bench"))

    try:
        await asyncio.gather(*(one(first + i, t) for i, t in enumerate(texts)))
    finally:
        await bot.close()


def oracle(project: Project, truth: list[str], budget: int, device: str | None) -> tuple[int, int]:
    """Label queue items in queue order while the turns labelled fit in ``budget``.

    Returns the turns labelled and how many of them got their own true intent: one label covers a
    group of near-duplicates, so a group that mixes intents costs label quality.
    """
    store = Store(project.db_path)
    try:
        items = serving_queue(project, store, device, limit=len(truth))
        conversations = dict(store.db.execute("SELECT id, conversation_id FROM turns WHERE role = 'user'").fetchall())
        used = correct = 0
        for item in items:
            if used + len(item.turn_ids) > budget:
                continue
            messages = [int(conversations[t].removeprefix("traffic-")) for t in item.turn_ids]
            intent = truth[messages[0]]
            store.add_labels(item.turn_ids, intent, "oracle")
            used += len(item.turn_ids)
            correct += sum(truth[m] == intent for m in messages)
        return used, correct
    finally:
        store.close()


def score_on_test(project: Project, test: list[Example], device: str | None) -> dict[str, Any]:
    classifier = IntentClassifier.load(Registry(project.models_dir).current_path() / "classifier", device=device)
    return measure(classifier, test)


def run_learning_bench(train: list[Example], test: list[Example], seed_shots: int = 10, label_budget: float = 0.3,
                       rounds: int = 3, model: str = "default", device: str | None = None, seed: int = 42,
                       gate: dict[str, float] | None = None, say: Say = lambda line: None) -> dict[str, Any]:
    """``gate`` overrides keys of bot.yml's ``learning:`` section (the gate's margins, the queue's threshold)."""
    if not 0 <= label_budget <= 1 or rounds < 1:
        raise ValueError("label_budget must be within [0, 1] and rounds at least 1")
    seed_set = sample_shots(train, seed_shots, seed)
    chosen = {id(e) for e in seed_set}
    traffic = [e for e in train if id(e) not in chosen]
    random.Random(seed).shuffle(traffic)
    truth = [e.intent for e in traffic]
    if len(traffic) < rounds:
        raise ValueError(f"{len(traffic)} training lines are left as traffic after {seed_shots} per intent, too few "
                         f"for {rounds} rounds: lower --seed-shots or --rounds")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = make_bot(root / "loop", seed_set, model, {"learning": gate or {}})
        margins = project.config.learning.model_dump(include={"max_accuracy_drop", "max_intent_drop",
                                                               "min_intent_examples", "max_forgotten",
                                                               "review_confidence", "distill", "distill_messages",
                                                               "interpolate"})
        say(f"seed model: {len(seed_set)} examples ({seed_shots} per intent)")
        train_project(project, device=device, progress=False)
        previous = score_on_test(project, test, device)
        seed_accuracy = previous["accuracy"]
        results, streamed, used, correct = [], 0, 0, 0
        for number in range(1, rounds + 1):
            end = round(len(traffic) * number / rounds)
            say(f"round {number}: streaming messages {streamed}..{end} as traffic")
            asyncio.run(stream(project, [e.text for e in traffic[streamed:end]], streamed, device))
            streamed = end
            labelled, right = oracle(project, truth, int(label_budget * streamed) - used, device)
            used, correct = used + labelled, correct + right
            say(f"round {number}: {used} turns labelled; retraining")
            decision = retrain(load_project(project.root), device=device, progress=False, say=say).decision
            figures = score_on_test(project, test, device)
            drops = [previous["per_intent"][i] - figures["per_intent"].get(i, 0.0) for i in previous["per_intent"]]
            results.append({"round": number, "accuracy": round(figures["accuracy"], 4), "labels_used": used,
                            "labelled_fraction": round(used / streamed, 4),
                            "label_precision": round(correct / used, 4) if used else None,
                            "worst_intent_drop": round(max(drops, default=0.0), 4),
                            "broken_answers": sum(was and not now for was, now in zip(previous["right"], figures["right"])),
                            "promoted": decision["promoted"], "reasons": decision["reasons"],
                            "forgotten": len(decision.get("forgotten", [])),
                            "serving": Registry(project.models_dir).current()})
            say(f"round {number}: {results[-1]}")
            previous = figures
        say(f"full data: {len(train)} examples")
        full = make_bot(root / "full", train, model)
        train_project(full, device=device, progress=False)
        full_accuracy = score_on_test(full, test, device)["accuracy"]
    return {"rounds": results, "full_data_accuracy": round(full_accuracy, 4),
            "final_ratio": round(previous["accuracy"] / full_accuracy, 4) if full_accuracy else None,  # unrounded
            "labelled_fraction": round(used / len(traffic), 4) if traffic else 0.0,
            "seed_model_accuracy": round(seed_accuracy, 4), "train": len(train), "test": len(test), "seed_shots": seed_shots,
            "label_budget": label_budget, "gate": margins,
            # floating-point order, and so which round the gate refuses, differs with torch's thread count
            "torch_threads": torch.get_num_threads()}
