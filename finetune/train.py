"""Fine-tuning recipe for the intent classifier.

The recipe is deliberately small: a cosine-softmax head started at the intents' mean embeddings, label
smoothing, a higher learning rate for the head than for the pretrained body (whose word-embedding
table stays frozen), linear warm-up and decay, and a number of optimisation steps chosen from the data
size so that a 300-example bot and a 10,000-example one both get enough updates. Batches group messages of similar
length, which on a CPU saves most of the padding.

A bot with few examples per intent (a new bot, or one started from ten examples each) trains
differently: its batches hold a few intents with several examples each, and a supervised contrastive
term pulls each intent's examples together. A random batch of 32 from ten examples per intent
rarely holds two of one intent, and the cross-entropy alone learns each intent's region slowly from
so few points (bench/INTENT.md has the figures). Each intent's name, in words, is one more of its
examples, and training ends by pulling each intent's head vector part of the way to its examples'
mean embedding. The same constants serve every bot and benchmark: ``bot bench intent`` measures
exactly this recipe.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from finetune.cache import MissingAssetsError
from finetune.classifier import IntentClassifier, ModelLoadError, pick_device
from finetune.metrics import OOS
from finetune.models import model_needs_prefixes, resolve_model
from retrieval.encoder import load_sentence_model
from retrieval.text import intent_phrase, same_example, same_text


@dataclass
class TrainConfig:
    # Sets the number of optimisation steps, epochs × ceil(examples / batch_size): that many passes over the data
    # with full batches, fewer with few-shot training's smaller ones (the trained model's train_passes says how many)
    epochs: float | None = None  # None: chosen from the data size
    learning_rate: float | None = None  # None: 8e-5 for the body
    head_learning_rate: float = 5e-3
    batch_size: int = 32
    max_length: int = 64
    label_smoothing: float = 0.1
    scale: float = 20.0
    warmup: float = 0.1
    seed: int = 42
    few_shot_below: int = 32  # median examples per intent under which training is few-shot
    contrastive: float = 1.0  # weight of the supervised contrastive term in few-shot training (0: none)
    temperature: float = 0.1  # of the contrastive term's cosine similarities
    distill: float = 0.0  # warm starts only: weight of the pull towards the starting model's predictions
    interpolate: float = 1.0  # warm starts only: share of the trained weights in the average with the starting ones
    corrected_passes: int = 3  # warm starts only: passes over each corrected example per pass over the others
    centroid_share: float = 0.25  # few-shot training: share of each intent's mean embedding in its final head
    intent_names: bool = True  # few-shot training: each intent's name in words is one more example of it
    class_weights: str = "none"  # "sqrt" or "balanced": each intent's loss weighted by its rarity (class_weights)

    def few_shot(self, intents: list[str]) -> bool:
        return self.contrastive > 0 and statistics.median(Counter(intents).values()) < self.few_shot_below

    def epochs_for(self, n_examples: int) -> float:
        """Small sets take about 4,000 examples' worth of full batches (at most 10 epochs' worth), large ones 3."""
        if self.epochs is not None:
            return self.epochs
        return float(min(10, max(3, math.ceil(4000 / max(n_examples, 1)))))


def with_intent_names(texts: list[str], intents: list[str], held_out: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The examples plus each intent's name as a phrase ("card_arrival": "card arrival", "PlayMusic":
    "play music"), out-of-scope excepted.

    A name says in words the pretrained model knows what the intent is about, which is worth one more
    example when there are ten; with hundreds it is lost among them, so only few-shot training adds it.
    A name that is already an example adds nothing, and one that is a ``held_out`` example would put
    back into training what the threshold and the promotion gate are measured on, so neither is added.
    """
    taken = {same_example(text) for text in [*texts, *held_out]}
    named = [name for name in sorted({intent for intent in intents if intent != OOS})
             if same_example(intent_phrase(name)) not in taken]
    return texts + [intent_phrase(name) for name in named], intents + named


def with_corrections(texts: list[str], intents: list[str], corrected: set[str], passes: int
                     ) -> tuple[list[str], list[str]]:
    """The examples, each whose :func:`~retrieval.text.same_text` key is in ``corrected`` ``passes`` times over.

    A warm start begins from a model that learnt a corrected message under its old intent, and answers it so with
    confidence: one pass over it among thousands of examples, and the weights then averaged with the starting
    model's (``interpolate``), left the old answer standing. Several passes over it teach the correction while
    every other example is trained on as before; the distillation term is kept off it, since the starting model's
    answer there is the one corrected (:func:`train_classifier`)."""
    extra = [(text, intent) for text, intent in zip(texts, intents) if same_text(text) in corrected]
    return texts + [text for text, _ in extra] * (passes - 1), intents + [intent for _, intent in extra] * (passes - 1)


def readable_tokens(encoder: SentenceTransformer) -> int:
    """The most tokens ``encoder``'s model has positions for, or its tokenizer says it reads."""
    config = encoder[0].auto_model.config
    limits = [encoder.tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    return min(limit for limit in limits if isinstance(limit, int) and limit > 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


BASE_ALIASES = ("default", "minilm", "multilingual", "mpnet")  # the names model.base takes for the packaged encoders


@contextlib.contextmanager
def loading_base(base_model: str) -> Iterator[None]:
    """What loading ``base_model`` can raise, as a :class:`ModelLoadError` that says what to name instead."""
    try:
        yield
    except MissingAssetsError as exc:  # an alias whose offline packages are not installed
        raise ModelLoadError(f"base model {base_model!r}: {exc}") from exc
    except (OSError, ValueError, SafetensorError) as exc:  # no folder, no model, weights cut short, no hub
        if base_model.startswith((".", "/", "~")) and not Path(base_model).expanduser().exists():
            raise ModelLoadError(f"base model {base_model!r}: no such folder (a relative one is read from the bot's "
                                 "folder)") from exc
        # A misspelt alias (multilingal) is read as a Hugging Face name, which the hub's words then explain.
        close = difflib.get_close_matches(base_model.strip().lower(), BASE_ALIASES, n=1)
        meant = f"did you mean {close[0]!r}? Else " if close else ""
        raise ModelLoadError(f"base model {base_model!r}: cannot load it ({exc}); {meant}name a local model folder, "
                             "a Hugging Face model this machine has cached, 'default', 'multilingual' "
                             "or 'mpnet'") from exc


def train_classifier(
    texts: list[str],
    intents: list[str],
    base_model: str,
    config: TrainConfig | None = None,
    device: str | None = None,
    progress: bool = True,
    init_from: IntentClassifier | None = None,
    transfer: list[str] | None = None,
    held_out: Sequence[str] = (),
    corrected: Sequence[str] = (),
) -> IntentClassifier:
    """Fine-tune ``base_model`` (any sentence-transformers or Hugging Face name or path, or an alias).

    ``init_from`` warm-starts from a serving model with the same labels, for retraining. ``transfer``
    holds unlabelled messages (the bot's recent traffic) on which a distilled warm start also keeps
    the starting model's answers: each step adds a batch of them to the distillation term. A warm start
    ends by averaging its weights with the starting model's (``config.interpolate``, see
    :func:`interpolate_weights`). ``held_out`` are the texts kept out of training to be measured on.
    ``corrected``: examples whose label was corrected since ``init_from`` learnt them (:func:`with_corrections`).
    """
    config = config or TrainConfig()
    seed_everything(config.seed)
    device = pick_device(device)
    labels = sorted(set(intents))
    few_shot = config.few_shot(intents)
    warm = init_from is not None and init_from.labels == labels
    fixed = {same_text(text) for text in corrected} if warm else set()
    texts, intents = with_corrections(texts, intents, fixed, config.corrected_passes)
    epochs = config.epochs_for(len(texts))
    if few_shot and config.intent_names:
        texts, intents = with_intent_names(texts, intents, held_out)
    index = {label: i for i, label in enumerate(labels)}
    targets = [index[i] for i in intents]
    model = init_from.to(device) if warm else _base_classifier(base_model, labels, config, device)
    longest = readable_tokens(model.encoder)
    if config.max_length > longest:  # else the first long example fails a tensor shape minutes into training
        raise ModelLoadError(f"base model {base_model!r} reads at most {longest} tokens and model.max_length is "
                             f"{config.max_length}: set model.max_length to {longest} or less")
    model.encoder.max_seq_length = config.max_length
    if model is not init_from:
        imprint_head(model, texts, targets)
    # The word-embedding table is most of a small encoder's weights (96M of multilingual-e5-small's
    # 118M); updating it costs optimiser time and memory and buys no accuracy.
    model.encoder[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = max(1, int(epochs * steps_per_epoch))
    optimizer, schedule = _optimizer(model, config, total)
    power = CLASS_WEIGHT_POWERS.get(config.class_weights)
    weights = None if power is None else class_weights(targets, len(labels), power).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    use_amp = device.startswith("cuda")
    rng = random.Random(config.seed)
    lengths = [len(t) for t in texts]
    distilled = model is init_from and config.distill > 0
    teacher = _teacher(init_from, texts, fixed, device) if distilled else None
    transfer = [text for text in transfer if same_text(text) not in fixed] if distilled and transfer else []
    transfer_teacher = _teacher(init_from, transfer, fixed, device) if transfer else None
    start = ({name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
             if model is init_from and config.interpolate < 1 else None)

    model.train()
    batches: list[list[int]] = []
    bar = tqdm(range(total), desc="fine-tuning", unit="step", disable=not progress)
    started = time.perf_counter()
    seen = 0  # examples trained on, for the passes over the data they make
    for _ in bar:
        if not batches:
            batches = (intent_batches(targets, config.batch_size, rng) if few_shot
                       else length_batches(lengths, config.batch_size, rng))
        batch = batches.pop()
        seen += len(batch)
        batch_targets = torch.tensor([targets[i] for i in batch], device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            embeddings = model.embed([texts[i] for i in batch])
            logits = model.logits(embeddings)
        loss = loss_fn(logits.float(), batch_targets)
        if few_shot:
            loss = loss + config.contrastive * supervised_contrastive(embeddings.float(), batch_targets,
                                                                      config.temperature)
        if teacher is not None:
            loss = loss + config.distill * distillation(logits.float(), teacher[batch])
        if transfer_teacher is not None:
            picked = rng.sample(range(len(transfer)), min(len(transfer), config.batch_size))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                transfer_logits = model.logits(model.embed([transfer[i] for i in picked]))
            loss = loss + config.distill * distillation(transfer_logits.float(), transfer_teacher[picked])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress:  # reading the loss waits for the GPU to finish the step
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if few_shot and config.centroid_share > 0:
        # The contrastive term gathers each intent's examples around their mean, which is then a steadier
        # direction than a head fitted to a few of them per batch; without it the means sit apart from the
        # head's decision boundaries and pulling towards them costs accuracy.
        pull_head_to_means(model, texts, targets, config.centroid_share)
    if start is not None:
        interpolate_weights(model, start, config.interpolate)
    model.train_seconds = time.perf_counter() - started
    model.train_steps, model.train_passes = total, round(seen / len(texts), 2)
    return model.eval()


def _base_classifier(base_model: str, labels: list[str], config: TrainConfig, device: str) -> IntentClassifier:
    """A new classifier of ``labels`` over ``base_model``'s encoder (a local folder, a Hugging Face model this machine
    has cached, or an alias: no hub is reached), with the query prefix the encoder was trained with."""
    with loading_base(base_model):
        path = resolve_model(base_model)
        encoder = load_sentence_model(path, device, local_files_only=True)
    prefix = "query: " if model_needs_prefixes(path) else ""
    return IntentClassifier(encoder, labels, scale=config.scale, prefix=prefix).to(device)


def _teacher(start: IntentClassifier, texts: list[str], fixed: set[str], device: str) -> torch.Tensor:
    """What the starting model's encoder answers for ``texts`` before training, which a warm start's distillation
    term keeps, so that new labels move only what they must. The n-gram vote is left out: it is refitted after
    training, and the encoder keeps its own answers. A text whose label was corrected (``fixed``) gets a row of
    zeros, which adds nothing to the KL term: its old answer is not kept."""
    teacher = torch.from_numpy(start.probabilities(texts, ngrams=False)).to(device)
    if fixed:
        teacher[[i for i, text in enumerate(texts) if same_text(text) in fixed]] = 0.0
    return teacher


def _optimizer(model: IntentClassifier, config: TrainConfig,
               total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the encoder's trainable weights and the head, each at its own learning rate (the head without
    weight decay), warmed up over ``config.warmup`` of the ``total`` steps, then decayed linearly."""
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": config.learning_rate or 8e-5},
            {"params": [model.head], "lr": config.head_learning_rate, "weight_decay": 0.0},
        ],
        weight_decay=0.01,
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(config.warmup * total), total)


CLASS_WEIGHT_POWERS = {"sqrt": 0.5, "balanced": 1.0}  # TrainConfig.class_weights: class_weights' power


def class_weights(targets: list[int], classes: int, power: float = 1.0) -> torch.Tensor:
    """Each intent's weight in the cross-entropy: examples / (intents × its examples), scikit-learn's
    "balanced", to the ``power`` (0.5: its square root). An intent with 8 examples beside one with 500
    otherwise adds so little to the loss that the model learns to answer the big one for both; the full
    weights make a mistake on the small one as costly as on the big one, which also makes the model answer
    the small one where it is unsure, and the square root goes half the way. The loss is averaged by the batch's
    weights, so its scale stays as without them, and on equal intents every weight is 1."""
    counts = torch.bincount(torch.tensor(targets), minlength=classes).float()
    return (len(targets) / (classes * counts.clamp(min=1))) ** power


def length_batches(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """One epoch of shuffled batches, each of examples of similar length.

    Padding every message to the longest in a random batch wastes a third or more of a CPU step on
    short-message data; sorting within pools of ``pool`` batches keeps batches random across pools.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def intent_batches(targets: list[int], batch_size: int, rng: random.Random, per_intent: int = 4) -> list[list[int]]:
    """One epoch of shuffled batches of up to ``batch_size // per_intent`` intents, ``per_intent`` examples each.

    Every example appears once; an intent's examples are spread over successive batches, so most
    batches give each example a few same-intent neighbours for the contrastive term.
    """
    pools: dict[int, list[int]] = {}
    for i, target in enumerate(targets):
        pools.setdefault(target, []).append(i)
    for pool in pools.values():
        rng.shuffle(pool)
    intents = max(1, batch_size // per_intent)
    batches = []
    while ready := [target for target, pool in pools.items() if pool]:
        rng.shuffle(ready)
        batches.append([pools[t].pop() for t in ready[:intents] for _ in range(min(per_intent, len(pools[t])))])
    rng.shuffle(batches)
    return batches


def supervised_contrastive(embeddings: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) over L2-normalised embeddings.

    For each example with a same-intent batch-mate: the mean, over those positives, of minus the log
    of their share of its softmax over the rest of the batch. Examples without a positive add nothing.
    """
    own = torch.eye(len(targets), dtype=torch.bool, device=embeddings.device)
    similarity = (embeddings @ embeddings.T / temperature).masked_fill(own, float("-inf"))
    log_share = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (targets[:, None] == targets[None, :]) & ~own
    anchors = positives.any(dim=1)
    per_anchor = -log_share.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1).clamp(min=1)
    return (per_anchor * anchors).sum() / anchors.sum().clamp(min=1)  # no branch, so no GPU sync per step


def distillation(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) over the intents, averaged over the batch (Hinton et al. 2015).

    In a warm-started retrain the teacher is the serving model's distribution on the same messages.
    The review queue's labels arrive unevenly, many for the intents the model was unsure about and
    none for the rest; cross-entropy alone then widens the labelled intents at their neighbours'
    expense, and a neighbour that got no new label loses messages it used to get right. The term
    keeps the candidate's answers where no label asks for a change. On the training examples alone it
    guards only the messages the labels came with; on the recent traffic as well (``transfer``), it
    guards the messages customers actually send: in an experiment on BANKING77 a retrain broke 12
    right answers that way, 33 distilled on the training examples alone, and 45 without the term
    (bench/LEARNING.md has the figures).
    """
    return F.kl_div(F.log_softmax(logits, dim=1), teacher, reduction="batchmean")


@torch.no_grad()
def interpolate_weights(model: torch.nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """Set each parameter named in ``start`` to ``share`` × its trained value + (1 − ``share``) × its start.

    A warm-started retrain and the serving model it began from lie in one basin, so the weights in
    between are good models too (Wortsman et al. 2022, WiSE-FT), and they change fewer of the serving
    model's answers: on BANKING77 (bench/LEARNING.md) a distilled retrain averaged half-and-half with
    its start broke 5 and 4 right answers of a 1,500-line dev split instead of 13 and 14.
    """
    for name, parameter in model.named_parameters():
        if name in start:
            parameter.lerp_(start[name].to(parameter.device), 1 - share)


MEAN_BATCH = 64  # examples embedded at once for an intent's mean (class_means)


@torch.inference_mode()
def class_means(model: IntentClassifier, texts: list[str], targets: list[int],
                per_class: int | None = None) -> dict[int, torch.Tensor]:
    """Each intent's mean embedding over (up to ``per_class`` of) its examples, embedded ``MEAN_BATCH`` at a
    time: few-shot training is decided by the median intent, so one intent may have thousands (an ``oos``
    intent, a retrain's labels), and 2,000 in one pass took 2.5 GB more on multilingual-e5-small.
    Leaves ``model`` in evaluation mode."""
    chosen: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        indices = chosen.setdefault(t, [])
        if per_class is None or len(indices) < per_class:
            indices.append(i)
    model.eval()
    return {label: torch.cat([model.embed([texts[i] for i in indices[start:start + MEAN_BATCH]])
                              for start in range(0, len(indices), MEAN_BATCH)]).mean(dim=0)
            for label, indices in chosen.items()}


@torch.inference_mode()
def imprint_head(model: IntentClassifier, texts: list[str], targets: list[int], per_class: int = 16) -> None:
    """Start each intent's head vector at the mean embedding of (up to ``per_class`` of) its examples.

    The cosine head then begins as a nearest-centroid classifier on the pretrained embeddings rather
    than at random, which matters most when there are few examples per intent.
    """
    for label, mean in class_means(model, texts, targets, per_class).items():
        model.head[label] = mean


@torch.inference_mode()
def pull_head_to_means(model: IntentClassifier, texts: list[str], targets: list[int], share: float) -> None:
    """Replace each unit head vector by ``1 - share`` of itself plus ``share`` of the unit mean embedding of
    all the intent's examples (see ``TrainConfig.centroid_share``)."""
    for label, mean in class_means(model, texts, targets).items():
        model.head[label] = (1 - share) * F.normalize(model.head[label], dim=-1) + share * F.normalize(mean, dim=-1)
