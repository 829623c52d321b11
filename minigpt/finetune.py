"""Supervised fine-tuning (SFT): teach a pre-trained model to answer instructions.

GPT-3's paper does not fine-tune it: it evaluates zero-, one- and few-shot, and says that
"GPT-3 can be fine-tuned in principle and this is a promising direction for future work"
(Brown et al. 2020, §2). Its successors were fine-tuned: InstructGPT (Ouyang et al. 2022)
starts with *supervised fine-tuning* on (prompt, answer) demonstrations, and FLAN (Wei et al.
2022) showed that fine-tuning on tasks phrased as instructions improves zero-shot accuracy on
other tasks. The recipe has three parts, each a function here:

* **examples**: a prompt and its answer; here the book's synthetic tasks phrased as zero-shot
  instructions, ``"Give the opposite of each word:\\nhot =>"`` -> ``"cold"``
  (:func:`sft_examples`), tokenized as ``[EOT] prompt " answer" [EOT]`` (:func:`encode_examples`);
* **a loss on the answer only**: the model is not taught to write prompts, so the targets of
  prompt positions are set to ``-100``, the ``ignore_index`` of
  :func:`torch.nn.functional.cross_entropy` that :class:`minigpt.model.GPT` (like Hugging Face)
  uses (:func:`answer_loss_mask`, :func:`sft_batch`);
* **gentle updates**: a learning rate well below pre-training's, optionally with most weights
  frozen (:func:`freeze`, :func:`unfreeze`).

:func:`finetune` runs it with :class:`minigpt.train.Trainer`, the same loop as pre-training
(AdamW over the parameters that are still trainable, warmup and cosine decay, clipping,
history). Pre-training cuts a token stream into windows and takes the next token as the
target; SFT needs masked targets, so :func:`finetune` gives the Trainer its own batcher
(:class:`~minigpt.train.Batcher`), an :class:`ExampleBatcher`, which yields ``(x, y)`` batches
as a :class:`~minigpt.train.TokenBatcher` does, but one example per row and ``-100`` wherever
``y`` is not an answer token. Nothing of the loop is copied.

:func:`confident_mistakes` lists the wrong answers a model gives with the highest probability
(:func:`answer_probability`): a small model's errors are often not hesitant.

    >>> answer_loss_mask(torch.tensor([3]), torch.tensor([5]), seq_len=6).int().tolist()
    [[0, 0, 1, 1, 0, 0]]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import random
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.generate import score_continuation
from minigpt.tasks import Prompt, Task, get_task, make_prompts, normalize_prediction, split_task
from minigpt.train import TrainConfig, Trainer

__all__ = [
    "FINETUNE_DEFAULTS",
    "IGNORE_INDEX",
    "ExampleBatcher",
    "Tokenizer",
    "answer_loss",
    "answer_loss_mask",
    "answer_probability",
    "confident_mistakes",
    "distinct_examples",
    "encode_examples",
    "finetune",
    "freeze",
    "sft_batch",
    "sft_examples",
    "trainable_parameters",
    "unfreeze",
]

#: Targets equal to this are left out of the loss (PyTorch's and Hugging Face's convention).
IGNORE_INDEX = -100

#: Fine-tuning defaults: a short run at a learning rate 20 times below GPT-3 Small's 6e-4
#: pre-training peak, short warmup-free cosine decay.
FINETUNE_DEFAULTS = TrainConfig(max_steps=100, batch_size=16, lr=3e-5, warmup_tokens=0,
                                min_lr_ratio=0.1, weight_decay=0.0)


class Tokenizer(Protocol):
    """What SFT needs of a tokenizer: ``encode(text) -> ids`` and an end-of-text id."""

    eot_id: int

    def encode(self, text: str) -> list[int]: ...


# --------------------------------------------------------------------------------------------
# Freezing


def freeze(model: nn.Module, trainable: Sequence[str] = ()) -> list[str]:
    """Freeze every parameter of ``model`` except those whose name matches a pattern.

    ``trainable`` holds :mod:`fnmatch` patterns over the names of
    ``model.named_parameters()``, e.g. ``("transformer.h.1.*", "transformer.ln_f.*")`` for
    the last block and the final norm. A tied matrix has two names (``transformer.wte.weight``
    and ``lm_head.weight``); it stays trainable if either matches. A pattern that matches
    nothing is an error (a typo would otherwise freeze the whole model silently). Returns the
    names of the parameters left trainable; the optimizer must be built afterwards
    (:class:`~minigpt.train.Trainer` only optimizes parameters with ``requires_grad``).

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> freeze(net, ["1.*"])
    ['1.weight', '1.bias']
    >>> [p.requires_grad for p in net.parameters()]
    [False, False, True, True]
    >>> freeze(net, ["2.*"])
    Traceback (most recent call last):
    ...
    ValueError: pattern '2.*' matches no parameter; names look like '0.weight', '0.bias', ...
    """
    if isinstance(trainable, str):
        raise ValueError(f"trainable must be a sequence of patterns, e.g. [{trainable!r}]")
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    for pattern in trainable:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(repr(n) for n in names[:2])
            raise ValueError(f"pattern {pattern!r} matches no parameter; names look like "
                             f"{shown}, ...")
    keep: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in trainable):
            keep.add(id(param))
    kept = []
    for name, param in model.named_parameters():
        param.requires_grad_(id(param) in keep)
        if id(param) in keep:
            kept.append(name)
    return kept


def unfreeze(model: nn.Module) -> None:
    """Make every parameter of ``model`` trainable again."""
    for param in model.parameters():
        param.requires_grad_(True)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (a tied matrix counted once).

    >>> net = nn.Linear(3, 2)
    >>> _ = freeze(net, ["bias"]); trainable_parameters(net)
    2
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# The answer-only loss


def answer_loss_mask(prompt_lengths: Tensor, lengths: Tensor, seq_len: int) -> Tensor:
    """Which next-token targets belong to the answer, ``(B,), (B,) -> (B, seq_len)`` booleans.

    Example ``b`` is ``lengths[b]`` tokens: a prompt of ``prompt_lengths[b]`` tokens, then its
    answer, then padding. Input position ``t`` predicts token ``t + 1``, so position ``t``
    counts when token ``t + 1`` is an answer token:
    ``prompt_lengths[b] <= t + 1 < lengths[b]``. Every prompt token, and the padding, is left
    out of the loss; the first answer token is predicted from the last prompt position.

    Raises ``ValueError`` if ``prompt_lengths`` and ``lengths`` are not 1-D of the same
    length, if an example has no prompt token or no answer token (``1 <= prompt_length <
    length`` must hold), or if an example is longer than ``seq_len + 1`` tokens.

    >>> answer_loss_mask(torch.tensor([2, 3]), torch.tensor([4, 6]), seq_len=5).int()
    tensor([[0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1]], dtype=torch.int32)
    """
    prompt_lengths, lengths = torch.as_tensor(prompt_lengths), torch.as_tensor(lengths)
    if prompt_lengths.shape != lengths.shape or prompt_lengths.ndim != 1:
        raise ValueError(f"prompt_lengths and lengths must be 1-D of the same length, got "
                         f"shapes {tuple(prompt_lengths.shape)} and {tuple(lengths.shape)}")
    if bool((prompt_lengths < 1).any()) or bool((lengths <= prompt_lengths).any()):
        raise ValueError("every example needs a prompt of >= 1 token and an answer of >= 1 "
                         "token (1 <= prompt_length < length)")
    if bool((lengths > seq_len + 1).any()):
        raise ValueError(f"an example of {int(lengths.max())} tokens does not fit seq_len "
                         f"{seq_len} (at most seq_len + 1 tokens)")
    target = torch.arange(1, seq_len + 1)  # (T,): the index of the token each position predicts
    return (target >= prompt_lengths[:, None]) & (target < lengths[:, None])


def sft_batch(rows: Tensor, prompt_lengths: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs and answer-only targets from padded examples ``rows`` ``(B, L)``.

    Returns ``x = rows[:, :-1]`` and ``y = rows[:, 1:]`` with :data:`IGNORE_INDEX` wherever
    :func:`answer_loss_mask` is False, both ``(B, L - 1)``: ready for ``model(x, y)``.

    >>> x, y = sft_batch(torch.tensor([[0, 5, 6, 7, 0, 0]]), torch.tensor([3]),
    ...                  torch.tensor([5]))
    >>> x.tolist(), y.tolist()
    ([[0, 5, 6, 7, 0]], [[-100, -100, 7, 0, -100]])
    """
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"rows must be (B, L) token ids with L >= 2, got {tuple(rows.shape)}")
    mask = answer_loss_mask(prompt_lengths, lengths, rows.shape[1] - 1)
    return rows[:, :-1], rows[:, 1:].masked_fill(~mask, IGNORE_INDEX)


# --------------------------------------------------------------------------------------------
# Examples


def distinct_examples(task: str | Task, patience: int = 2000, limit: int = 10_000) -> list:
    """Every distinct ``(query, answer)`` example of ``task``, sorted by query.

    Draws from ``random.Random(0)`` until ``patience`` draws in a row bring no new query (or
    ``limit`` are found): exhaustive for the word tasks (42 antonyms: the chance of missing one
    is about ``(41/42)^2000``, 1e-21), a sample for arithmetic.

    >>> len(distinct_examples("antonyms")), distinct_examples("antonyms")[0]
    (42, Example(query='accept', answer='reject'))
    """
    task = get_task(task)
    rng, found, misses = random.Random(0), {}, 0
    while misses < patience and len(found) < limit:
        example = task.sample(rng)
        misses = misses + 1 if example.query in found else 0
        found.setdefault(example.query, example)
    return [found[q] for q in sorted(found)]


def sft_examples(
    task: str | Task,
    n: int | None = None,
    seed: int = 0,
    *,
    part: str = "train",
    holdout: float = 0.3,
    description: bool = True,
) -> list[Prompt]:
    """Zero-shot instructions of ``task`` and their answers, as :class:`~minigpt.tasks.Prompt`.

    Queries are split into a ``"train"`` and a ``"test"`` share by a hash of their text
    (:func:`minigpt.lab.icl.split_task`, ``holdout`` = test share), so a model fine-tuned on one
    share can be tested on instructions it has never seen answered. ``n=None`` gives every
    distinct query of the share once (:func:`distinct_examples`), sorted; ``n`` draws that
    many prompts from ``random.Random(seed)`` (:func:`minigpt.tasks.make_prompts`).
    ``description=False`` leaves out the instruction line.

    >>> ex = sft_examples("antonyms", part="test")
    >>> len(ex), ex[0]
    (9, Prompt(text='Give the opposite of each word:\\nalive =>', answer='dead'))
    """
    task = get_task(task)
    share = split_task(task, part, holdout)
    if n is not None:
        return make_prompts(share, n, k_shots=0, seed=seed, description=description)
    head = f"{task.description}\n" if description and task.description else ""
    return [Prompt(head + task.render(ex, with_answer=False), ex.answer)
            for ex in distinct_examples(share)]


def encode_examples(
    examples: Sequence[Prompt], tokenizer: Tokenizer
) -> tuple[Tensor, Tensor, Tensor]:
    """Token rows ``[EOT] prompt " answer" [EOT]``, right-padded with EOT.

    Returns ``rows (N, L)``, ``prompt_lengths (N,)`` (EOT and prompt) and ``lengths (N,)``
    (everything but the padding): the answer's tokens *and the EOT after it* are what
    :func:`answer_loss_mask` keeps, so the model also learns to stop.

    >>> from minigpt.lab.icl import CharTokenizer
    >>> rows, p, n = encode_examples([Prompt("ab =>", "c")], CharTokenizer())
    >>> rows.shape, p.tolist(), n.tolist()
    (torch.Size([1, 9]), [6], [9])
    """
    if not examples:
        raise ValueError("encode_examples needs at least one (prompt, answer) example")
    eot = tokenizer.eot_id
    encoded, prompt_lengths = [], []
    for ex in examples:
        prompt = [eot, *tokenizer.encode(ex.text)]
        encoded.append(prompt + tokenizer.encode(" " + ex.answer) + [eot])
        prompt_lengths.append(len(prompt))
    width = max(map(len, encoded))
    rows = torch.full((len(encoded), width), eot, dtype=torch.long)
    for i, ids in enumerate(encoded):
        rows[i, : len(ids)] = torch.tensor(ids)
    return rows, torch.tensor(prompt_lengths), torch.tensor([len(e) for e in encoded])


class ExampleBatcher:
    """Batches of whole examples with answer-only targets, in a reproducible order.

    The drop-in data source of :class:`~minigpt.train.Trainer` for SFT: the same
    ``next_batch(batch_size) -> (x, y)``, ``state_dict`` and ``load_state_dict`` as
    :class:`~minigpt.train.TokenBatcher`, but each row is one example of ``rows`` (from
    :func:`encode_examples`) and ``y`` comes from :func:`sft_batch`. Each epoch visits the
    examples in a random order drawn from ``seed`` and the epoch number.

    >>> b = ExampleBatcher(torch.tensor([[0, 5, 6, 0]]), torch.tensor([2]), torch.tensor([4]))
    >>> [t.tolist() for t in b.next_batch(2)]
    [[[0, 5, 6], [0, 5, 6]], [[-100, 6, 0], [-100, 6, 0]]]
    """

    def __init__(self, rows: Tensor, prompt_lengths: Tensor, lengths: Tensor, *,
                 seed: int = 0) -> None:
        answer_loss_mask(prompt_lengths, lengths, rows.shape[1] - 1)  # validates the three
        if rows.shape[0] != prompt_lengths.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {prompt_lengths.shape[0]} lengths")
        self.rows, self.prompt_lengths, self.lengths = rows, prompt_lengths, lengths
        self.seq_len = rows.shape[1] - 1
        self.seed, self.epoch, self.cursor = seed, 0, 0
        self._order = self._make_order()

    def _make_order(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.rows.shape[0], generator=g)

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """``batch_size`` examples: ``x, y`` of shape ``(batch_size, seq_len)``."""
        picked = []
        for _ in range(batch_size):
            if self.cursor == len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._make_order()
            picked.append(int(self._order[self.cursor]))
            self.cursor += 1
        index = torch.tensor(picked)
        return sft_batch(self.rows[index], self.prompt_lengths[index], self.lengths[index])

    def state_dict(self) -> dict[str, int]:
        """The position in the data: ``{"epoch", "cursor", "seed"}``."""
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Go back to a position saved by :meth:`state_dict`."""
        self.seed, self.epoch, self.cursor = state["seed"], state["epoch"], state["cursor"]
        self._order = self._make_order()


# --------------------------------------------------------------------------------------------
# Fine-tuning and measuring


@torch.no_grad()
def answer_loss(model: nn.Module, examples: Sequence[Prompt], tokenizer: Tokenizer,
                batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per token) of the answer tokens (and their closing EOT) of
    ``examples`` given their prompts, in eval mode (the mode is restored)."""
    rows, prompt_lengths, lengths = encode_examples(examples, tokenizer)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x, y = sft_batch(rows[i : i + batch_size], prompt_lengths[i : i + batch_size],
                         lengths[i : i + batch_size])
        logits, _ = model(x)
        total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                       ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int((y != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count


def finetune(
    model: nn.Module,
    examples: Sequence[Prompt],
    tokenizer: Tokenizer,
    train: TrainConfig | None = None,
    *,
    trainable: Sequence[str] | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` in place on ``examples`` with the answer-only loss; return the
    :class:`~minigpt.train.Trainer` history (one dict per step, ``"loss"`` among its keys).

    ``train`` defaults to :data:`FINETUNE_DEFAULTS`; its ``seq_len`` is set to the longest
    example (which must fit the model's context), and ``seed`` orders the examples.
    ``trainable`` (patterns, see :func:`freeze`) freezes everything else during the run;
    afterwards every parameter is trainable again. ``None`` trains every parameter.
    """
    train = FINETUNE_DEFAULTS if train is None else train
    if not isinstance(train, TrainConfig):
        raise ValueError(f"train must be a TrainConfig, got {type(train).__name__}")
    rows, prompt_lengths, lengths = encode_examples(examples, tokenizer)
    seq_len = rows.shape[1] - 1
    if seq_len > model.config.n_ctx:
        raise ValueError(f"the longest example has {seq_len + 1} tokens; the model's context "
                         f"is {model.config.n_ctx}")
    if trainable is not None:
        freeze(model, trainable)
    try:
        # SFT's batches are whole examples with the prompt masked out, not windows of a token
        # stream: the Trainer takes them from this batcher. Everything else is the Trainer's.
        batcher = ExampleBatcher(rows, prompt_lengths, lengths, seed=train.seed)
        trainer = Trainer(model, batcher, dataclasses.replace(train, seq_len=seq_len))
        return trainer.train()
    finally:
        if trainable is not None:
            unfreeze(model)


def answer_probability(
    model: nn.Module, tokenizer: Tokenizer, prompt: str, answer: str,
    stops: Sequence[str] = ("\n",),
) -> float:
    """The probability that the model answers ``prompt`` with exactly ``answer``.

    That is ``" " + answer`` followed by an end: the end-of-text token or one of ``stops``
    (the newline that ends an answer in few-shot text), summed over the ends, as
    ``exp`` of :func:`minigpt.generate.score_continuation`. Without the end, "elttil" would
    also count the model's "elttila". The prompt is fed after EOT, as in
    :func:`minigpt.lab.icl.greedy_predictor`.

    >>> from minigpt.lab.icl import CharTokenizer
    >>> from minigpt.config import GPTConfig
    >>> from minigpt.model import GPT
    >>> tok = CharTokenizer()
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=tok.vocab_size,
    ...                       n_ctx=32))
    >>> 0 < answer_probability(model, tok, "hot =>", "cold") < 1
    True
    """
    context = [tokenizer.eot_id, *tokenizer.encode(prompt)]
    body = tokenizer.encode(" " + answer)
    ends = [[tokenizer.eot_id], *(tokenizer.encode(stop) for stop in stops)]
    return sum(math.exp(score_continuation(model, context, body + end)) for end in ends)


def confident_mistakes(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    predictions: Sequence[str],
    top: int = 5,
) -> list[dict[str, Any]]:
    """The ``top`` wrong answers the model was most sure of.

    For each prompt whose prediction (first line, :func:`minigpt.tasks.normalize_prediction`)
    is not the answer: ``p_prediction``, the probability of answering exactly the prediction
    (:func:`answer_probability`), and ``p_answer``, that of the right answer; sorted by
    ``p_prediction``, highest first, rounded to 3 digits.
    """
    if len(prompts) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions for {len(prompts)} prompts")
    rows = []
    for prompt, raw in zip(prompts, predictions, strict=True):
        predicted = normalize_prediction(raw)
        if predicted == prompt.answer.strip():
            continue
        p_predicted = answer_probability(model, tokenizer, prompt.text, predicted)
        rows.append({"prompt": prompt.text, "answer": prompt.answer, "prediction": predicted,
                     "p_prediction": round(p_predicted, 3),
                     "p_answer": round(answer_probability(model, tokenizer, prompt.text,
                                                          prompt.answer), 3)})
    rows.sort(key=lambda r: (-r["p_prediction"], r["prompt"]))
    return rows[:top]
