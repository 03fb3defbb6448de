"""The reply policy's CPU per message: what the event loop spends choosing each reply from the model's analysis.

    python bench/reply_policy.py BOT_DIR --test TEST.jsonl

The bot's serving model analyses the test questions once, in batches; then the reply policy (``bot.policy.decide``,
which `bot serve` runs on its event loop for every message, its templates filled in) decides each of them
``--rounds`` times, timed in CPU seconds of this process alone, so that other work on a shared machine counts little.
Run it with another checkout first on PYTHONPATH to compare two versions of the policy in one sitting. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bot.engine import template_values
from bot.language import turn_language
from bot.policy import decide
from bot.project import load_project
from bot.server import load_serving_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bot", type=Path)
    parser.add_argument("--test", type=Path, required=True, help="JSON lines with a text each")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    project = load_project(args.bot)
    texts = [json.loads(line)["text"] for line in args.test.read_text(encoding="utf-8").splitlines() if line.strip()]
    nlu = load_serving_model(project, device="cpu", workers=1)
    analyses = [a for i in range(0, len(texts), 32) for a in nlu.analyse(texts[i:i + 32])]
    config = project.config
    languages = [turn_language(config.language, text) for text in texts]
    started = time.process_time()
    for _ in range(args.rounds):
        for text, analysis, language in zip(texts, analyses, languages):
            decide(analysis, config, project.responses, template_values(project, {}, {}, text, False), "web", 0,
                   language, project.intents)
    seconds = time.process_time() - started
    print(json.dumps({"bot": config.name, "messages": len(texts), "rounds": args.rounds,
                      "hits_per_message": round(sum(len(a.hits) for a in analyses) / max(len(analyses), 1), 2),
                      "decide_ms_per_message": round(seconds * 1000 / max(len(texts) * args.rounds, 1), 4)}))


if __name__ == "__main__":
    main()
