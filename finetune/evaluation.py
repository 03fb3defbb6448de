"""``bot eval``: figures, a per-intent report and plots for a trained model, like ``rasa test``."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.durable import replaced
from finetune.metrics import OOS, auroc_by_kind, evaluate, intent_report

if TYPE_CHECKING:  # the classifier imports torch, which reading a test file or `bot init --from-jsonl` never needs
    from types import ModuleType

    from finetune.classifier import Prediction

log = logging.getLogger("deskbot")


def in_scope_score(prediction: Prediction) -> float:
    """The largest probability of a real intent, which out-of-scope detection ranks by (as ``bot bench
    intent`` does): a bot with an ``oos`` intent that is sure a message is out of scope has a high
    confidence and a low in-scope score."""
    return next((p for label, p in prediction.ranking if label != OOS), 0.0)


def evaluate_model(labels: list[str], version: str, rows: list[dict[str, Any]], predictions: list[Prediction],
                   threshold: float, results: Path, threshold_from: str | None = None,
                   more: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures of model ``version`` (whose intents are ``labels``) from its ``predictions`` on ``rows``,
    and the report and plots in ``results``; the report's errors name each row's ``line`` in the test file,
    and its intent as the test file names it (``scored_as`` ``oos`` beside an intent the model does not know).
    ``threshold_from``, given, says where the threshold comes from, beside it; ``more`` are figures measured
    apart (`bot eval`'s replies and notes on the test file), kept with these in the report as they are printed."""
    truth = [r["intent"] for r in rows]
    predicted = [p.intent for p in predictions]
    scores = [in_scope_score(p) for p in predictions]
    figures = evaluate(truth, predicted, scores, labels, threshold)
    if threshold_from is not None:
        shown = list(figures.items())
        shown.insert(list(figures).index("threshold") + 1, ("threshold_from", threshold_from))
        figures = dict(shown)
    kinds = [r.get("oos_type") for r in rows]
    if any(kinds):
        figures["auroc_by_oos_type"] = auroc_by_kind(truth, scores, labels, kinds)
    figures["model_version"] = version

    results.mkdir(parents=True, exist_ok=True)
    known = set(labels)
    final = [OOS if s < threshold else p for p, s in zip(predicted, scores)]
    gold = [t if t in known else OOS for t in truth]
    # A name the model does not know stays as the test file wrote it ("track_ordr" is a typo to find there), with
    # what it was scored as beside it.
    errors = [{"line": r.get("line"), "text": r["text"], "intent": r["intent"],
               **({"scored_as": g} if g != r["intent"] else {}), "predicted": f, "confidence": round(p.confidence, 4)}
              for r, g, f, p in zip(rows, gold, final, predictions) if g != f]
    more = more or {}
    write_report(results / "intent_report.json", {"figures": {**figures, **more}, **intent_report(gold, final),
                                                  "errors": errors})
    _confusion(gold, final, results / "intent_confusion_matrix.png")
    _histogram(gold, predicted, scores, results / "intent_histogram.png", threshold)
    return {**figures, "results": str(results), **more}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """``report`` as JSON to ``path``, made for its owner alone (:func:`~finetune.durable.replaced`), as `bot export`'s
    file is: it quotes the test file's questions, often ones customers asked, and the results folder is the bot
    folder's, which every account on the machine may read."""
    with replaced(path, private=True) as out:
        out.write(json.dumps(report, indent=1, ensure_ascii=False))


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing without a display, imported for the plots alone: `bot serve` imported it at
    every start through :func:`~finetune.labelled.read_jsonl`, and where the home folder is read-only (systemd's ProtectHome)
    matplotlib wrote two warnings about its cache folder in the server's log each time."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    return plt


def fonts_for(texts: list[str]) -> list[str]:
    """The font families that draw the characters of ``texts``: matplotlib's default, then, if it lacks
    some (its DejaVu Sans has no Chinese, and Chinese intent names drew as boxes), installed fonts that
    have them, the one that has the most first, as matplotlib's fallbacks glyph by glyph (one rare
    character, 𠮷, is no reason to draw every other name as boxes). Characters no font has stay boxes,
    and a one-line note names them."""
    from matplotlib import font_manager

    default = font_manager.get_font(font_manager.findfont(font_manager.FontProperties(
        family=_pyplot().rcParams["font.family"])))
    families = [default.family_name]
    missing = {ord(ch) for text in texts for ch in text if not ch.isspace()} - set(default.get_charmap())
    if not missing:
        return families
    fonts = {}  # each readable installed font: its family and the missing characters it has
    for candidate in sorted(font_manager.findSystemFonts()):
        try:
            font = font_manager.get_font(candidate)
        except (OSError, RuntimeError):  # a font file FreeType cannot read
            continue
        if has := missing & set(font.get_charmap()):
            fonts[candidate] = (font.family_name, has)
    while missing and fonts:
        candidate, (family, has) = max(fonts.items(), key=lambda item: len(item[1][1] & missing))
        if not has & missing:
            break
        font_manager.fontManager.addfont(candidate)  # installed after matplotlib cached its list, perhaps
        families.append(family)
        missing -= has
        del fonts[candidate]
    if missing:
        sample = "".join(chr(c) for c in sorted(missing)[:3])
        log.warning(f"note: no installed font has {sample}…, so the plots draw those characters as boxes; install one "
                    "(Debian: fonts-wqy-microhei or fonts-noto-cjk) and run bot eval again")
    return families


def _confusion(gold: list[str], final: list[str], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    labels = sorted(set(gold) | set(final))
    size = min(max(6, 0.3 * len(labels)), 40)  # at most 4000 pixels a side: 300 intents drew 9000 and took 3 GB
    # An intent's name is text, not mathtext ("pay_$5_or_$10" failed to draw), and a long one is cut short for
    # display: past 60 characters or so the layout gave up and clipped every label.
    shown = [label if len(label) <= 40 else label[:39] + "…" for label in labels]
    if len(set(shown)) < len(shown):  # long names alike at the start: their ends tell them apart
        shown = [label if len(label) <= 40 else label[:19] + "…" + label[-20:] for label in labels]
    with plt.rc_context({"font.family": fonts_for(labels), "text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # fonts_for said so, once
        # scikit-learn's advice to pass the labels, which are passed: a test file of one intent has one label
        warnings.filterwarnings("ignore", message="A single label was found")
        fig, ax = plt.subplots(figsize=(size, size))
        counted = len(labels) <= 30  # past that the counts crowd the cells, and a colour scale tells them instead
        ConfusionMatrixDisplay.from_predictions(gold, final, labels=labels, display_labels=shown, ax=ax,
                                                xticks_rotation="vertical", colorbar=not counted,
                                                include_values=counted)
        if not counted:  # the scale counts lines: its ticks read 0.5 and 2.5 lines between the whole ones
            scale = ax.images[0].colorbar
            scale.locator = MaxNLocator(integer=True)
            scale.update_ticks()
        ax.set_title("Intent confusion matrix")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(gold: list[str], predicted: list[str], scores: list[float], path: Path, threshold: float) -> None:
    scores_arr = np.asarray(scores)
    right = np.array([g == p for g, p in zip(gold, predicted)])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 21)
    ax.hist(scores_arr[right], bins=bins, alpha=0.7, label="correct")
    ax.hist(scores_arr[~right], bins=bins, alpha=0.7, label="wrong or out of scope")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("in-scope score (the likeliest real intent's probability), which the threshold cuts")
    ax.set_ylabel("messages")
    ax.set_title("Scores of right and wrong answers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
