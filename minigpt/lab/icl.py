"""In-context learning in miniature: small GPTs trained on a mixture of few-shot episodes.

GPT-3's paper describes language-model meta-learning in two loops (Brown et al. 2020, §1 and
Figure 1.1). The **outer loop** is unsupervised pre-training, gradient descent over many
sequences, some of which hold "repeated sub-tasks embedded within a single sequence"; the
**inner loop**, which the paper calls *in-context learning*, "occurs within the forward-pass
upon each sequence": the model reads a few solved examples in its context and continues the
pattern, with no weight update. Here both loops are small enough to watch on a CPU:

* a **character-level tokenizer** for the task alphabet (:class:`CharTokenizer`);
* **training data**: episodes of ``n`` solved examples of one task in the paper's
  ``"query => answer"`` format (:func:`make_episode`), the task drawn from a
  :class:`Mixture`, ``n`` drawn from ``1 .. max_examples``, packed between
  ``<|endoftext|>`` tokens (:func:`training_tokens`);
* **training** with :class:`minigpt.train.Trainer` (:func:`make_trainer`,
  :func:`train_icl_model`);
* **evaluation**: exact-match accuracy of greedy completions of ``k``-shot prompts made by
  :func:`minigpt.tasks.make_prompts` and scored by :func:`minigpt.tasks.score`, for
  ``k = 0, 1, 2, 4, 8`` (:func:`evaluate_icl`), with and without the task description.

**The mixture, and why.** In-context examples only help when they carry information the model
does not already have. So the word tasks share their queries: besides the book's
``antonyms`` (``hot => cold``) and ``synonyms`` (``quick => fast``), the mixture has
``backwards``, which spells the *same* words backwards (``hot => toh``, ``quick => kciuq``),
weighted so that a bare ``hot =>`` is about equally likely to be either. Half of the episodes
(``p_description = 0.5``) start with the task's description line, half do not. Without a
description a zero-shot query is therefore ambiguous, and a model that has learned the tasks
perfectly can still only guess (about 50 %); one solved example settles the task. With the
description the task is stated, as in the paper's zero-shot setting. The book's
``reversed_words`` (``stcejbo => objects``) is the same operation as ``backwards`` (reverse
the letters) but its query, a reversed word, already says which task it is: a control in which
examples carry format only.

Arithmetic uses the compact style ``"48 + 76 => 124"``. The operator is stated, as in the
paper's ``"What is 48 plus 76?"``, so examples carry no information about the operation there:
arithmetic is the control on that side. The mixture has ``addition_1d`` (100 sums, all of them
seen in training: a memorised table, like the antonyms), ``addition_2d`` and ``addition_5d``,
after the paper's finding that 175B few-shot gets 100 % of 2-digit additions right and 9.3 %
of 5-digit ones (its Table 3.9), while "even the 13 billion parameter model" solves 2-digit
addition only about half the time. There are only 10^4 two-digit problems, so a ``holdout``
share of the 2- and 5-digit queries, chosen by a hash of the query text (:func:`split_task`), is
never trained on and is what the evaluation asks: a 2-digit accuracy is one on sums the model
has not seen.

**Positions.** The models are GPT-3's layout except for rotary positions
(``positions="rope"`` in the sizes of ``experiments/icl.py``). With GPT-3's learned absolute
positions a model has to learn "look 4 characters back" separately at each of its 256
positions; in trial runs a 2-layer model trained 300 steps on 1-digit sums alone was still
unsure that ``=>`` follows ``"a + b "`` and gave every sum the same answer, while with rotary
positions, where attention depends on the offset, it had learned the format and the carry in
the same 300 steps.

Everything is seeded; on one machine with ``torch.set_num_threads(1)`` a run is bit-for-bit
repeatable. :func:`make_parameters` writes down everything a run depends on,
:func:`run_from_parameters` re-creates a stored run from it, and :func:`live_rerun` repeats a
20-second slice of the smallest one, to compare with the stored numbers by
:func:`~minigpt.lab.record.reproduces`.
"""

from __future__ import annotations

import dataclasses
import random
import string
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from minigpt.checks import check_int
from minigpt.config import GPTConfig
from minigpt.generate import greedy
from minigpt.lab.record import leaves
from minigpt.model import GPT
from minigpt.tasks import (
    ANTONYMS,
    SYNONYMS,
    TASKS,
    Task,
    arithmetic_task,
    get_task,
    make_prompt,
    make_prompts,
    score,
    split_task,
    word_task,
)
from minigpt.train import TrainConfig, Trainer

__all__ = [
    "IclRun",
    "LiveSlice",
    "DEFAULT_WEIGHTS",
    "EOT",
    "ICL_TASKS",
    "SHOTS",
    "TASK_ALPHABET",
    "TRAIN_FIELDS",
    "CharTokenizer",
    "Mixture",
    "accuracy",
    "evaluate_icl",
    "greedy_predictor",
    "live_rerun",
    "make_episode",
    "make_parameters",
    "make_trainer",
    "run_from_parameters",
    "smallest_size",
    "train_config",
    "train_from_parameters",
    "trainer_from_parameters",
    "train_icl_model",
    "training_episodes",
    "training_tokens",
]

#: The end-of-text marker: token 0, between training episodes and at the start of a prompt.
EOT = "<|endoftext|>"
#: Every character the tasks write (descriptions included), in token-id order after ``EOT``.
TASK_ALPHABET = ("\n " + string.digits + string.ascii_lowercase + string.ascii_uppercase
                 + "+-=>:?.,'")
#: The numbers of solved examples shown in evaluation prompts.
SHOTS = (0, 1, 2, 4, 8)


# --------------------------------------------------------------------------------------------
# Tokenizer


class CharTokenizer:
    """One token per character of ``alphabet``, plus ``<|endoftext|>`` as token 0.

    >>> tok = CharTokenizer()
    >>> tok.encode("hot => cold")[:3], tok.vocab_size
    ([20, 27, 32], 74)
    >>> tok.decode(tok.encode("49 + 97 => 146"))
    '49 + 97 => 146'
    >>> tok.encode("café")
    Traceback (most recent call last):
    ...
    ValueError: character 'é' (position 3) is not in the task alphabet; allowed: ...
    """

    def __init__(self, alphabet: str = TASK_ALPHABET) -> None:
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError("alphabet must be a non-empty string of distinct characters")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet has repeated characters; each character is one token")
        self.alphabet = alphabet
        self.eot_id = 0
        self._ids = {ch: i + 1 for i, ch in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        """``len(alphabet) + 1`` (the end-of-text token)."""
        return len(self.alphabet) + 1

    def encode(self, text: str) -> list[int]:
        """``text -> [id, ...]``, one id per character; unknown characters raise ValueError."""
        if not isinstance(text, str):
            raise ValueError(f"encode takes a string, got {type(text).__name__}")
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            pos = next(i for i, ch in enumerate(text) if ch not in self._ids)
            shown = self.alphabet.replace("\n", "\\n")
            raise ValueError(f"character {text[pos]!r} (position {pos}) is not in the task "
                             f"alphabet; allowed: {shown!r} and EOT as id 0") from None

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """``[id, ...] -> text``; the end-of-text token decodes to ``""``."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int)
               or not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]!r} is outside the vocabulary "
                             f"[0, {self.vocab_size})")
        return "".join(self.alphabet[i - 1] for i in ids if i != self.eot_id)


# --------------------------------------------------------------------------------------------
# Tasks and the mixture


def _backwards_task() -> Task:
    """The antonym and synonym query words, spelled backwards: ``hot => toh``."""
    words = sorted(set(ANTONYMS) | set(SYNONYMS))
    return word_task("backwards", [(w, w[::-1]) for w in words], "Spell each word backwards:")


#: The tasks of the training mixture by name: the book's tasks (arithmetic in the compact
#: ``"a + b => c"`` style) and ``backwards``, which shares the word tasks' queries.
ICL_TASKS: dict[str, Task] = {
    "addition_1d": arithmetic_task(1, "plus", style="compact"),
    "addition_2d": get_task("addition_2d", style="compact"),
    "addition_5d": get_task("addition_5d", style="compact"),
    "antonyms": TASKS["antonyms"],
    "synonyms": TASKS["synonyms"],
    "reversed_words": TASKS["reversed_words"],
    "backwards": _backwards_task(),
}

#: Relative frequencies of the tasks in training. ``backwards`` has the weight of antonyms and
#: synonyms together and twice as many query words, so a bare ``hot =>`` is about as likely
#: to be an antonym as a backward spelling.
DEFAULT_WEIGHTS: dict[str, float] = {
    "addition_1d": 1.0, "addition_2d": 2.0, "addition_5d": 1.0, "antonyms": 1.0, "synonyms": 1.0,
    "reversed_words": 1.0, "backwards": 2.0,
}

@dataclass(frozen=True)
class Mixture:
    """What the model is trained on: tasks and their weights, and the episodes' shape.

    Attributes:
        weights: task name (a key of :data:`ICL_TASKS`) -> relative frequency.
        max_examples: an episode has ``1 .. max_examples`` solved examples (uniform).
        p_description: probability that an episode starts with the task's description line.
        holdout: share of the queries of ``holdout_tasks`` kept out of training and used for
            evaluation (see :func:`split_task`).
        holdout_tasks: the tasks split so (2- and 5-digit addition: a memorised table, such as
            the 100 one-digit sums or the antonyms, cannot be tested on unseen entries).

    >>> Mixture(**Mixture().to_dict()) == Mixture()
    True
    """

    weights: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS))
    max_examples: int = 9
    p_description: float = 0.5
    holdout: float = 0.2
    holdout_tasks: tuple[str, ...] = ("addition_2d", "addition_5d")

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(ICL_TASKS)
        if not self.weights or unknown:
            raise ValueError(f"weights must name tasks of {', '.join(ICL_TASKS)}; "
                             f"got unknown {sorted(unknown)}" if unknown else
                             "weights must name at least one task")
        if any(not (isinstance(w, int | float) and w > 0) for w in self.weights.values()):
            raise ValueError(f"weights must be positive numbers, got {dict(self.weights)}")
        check_int("max_examples", self.max_examples)
        if not 0.0 <= self.p_description <= 1.0:
            raise ValueError(f"p_description must be in [0, 1], got {self.p_description!r}")
        split_task(ICL_TASKS["addition_2d"], "train", self.holdout)  # validates holdout
        object.__setattr__(self, "holdout_tasks", tuple(self.holdout_tasks))
        if set(self.holdout_tasks) - set(ICL_TASKS):
            raise ValueError(f"holdout_tasks must name tasks of {', '.join(ICL_TASKS)}, "
                             f"got {list(self.holdout_tasks)}")

    def task(self, name: str, part: str = "train") -> Task:
        """Task ``name``; arithmetic restricted to the ``part`` of its queries."""
        if name not in ICL_TASKS:
            raise ValueError(f"unknown task {name!r}; allowed: {', '.join(ICL_TASKS)}")
        if name in self.holdout_tasks and self.holdout > 0:
            return split_task(ICL_TASKS[name], part, self.holdout)
        return ICL_TASKS[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields; ``Mixture(**m.to_dict()) == m``."""
        return {"weights": dict(self.weights), "max_examples": self.max_examples,
                "p_description": self.p_description, "holdout": self.holdout,
                "holdout_tasks": list(self.holdout_tasks)}


# --------------------------------------------------------------------------------------------
# Training data


def make_episode(task: Task, n_examples: int, rng: random.Random, description: bool) -> str:
    """One training episode: ``n_examples`` distinct solved examples of ``task``.

    It is a :func:`~minigpt.tasks.make_prompt` prompt of ``n_examples - 1`` shots with its
    answer appended, so training sees exactly the evaluation format.

    >>> print(make_episode(ICL_TASKS["backwards"], 3, random.Random(0), description=False))
    open => nepo
    quick => kciuq
    before => erofeb
    >>> print(make_episode(ICL_TASKS["antonyms"], 2, random.Random(0), description=True))
    Give the opposite of each word:
    before => after
    first => last
    """
    check_int("n_examples", n_examples)
    prompt = make_prompt(task, n_examples - 1, rng, description=description)
    return f"{prompt.text} {prompt.answer}"


def training_episodes(mixture: Mixture, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` episodes ``(task name, text)`` drawn from one ``random.Random(seed)``.

    >>> [name for name, _ in training_episodes(Mixture(), 5, seed=0)]
    ['backwards', 'backwards', 'backwards', 'addition_5d', 'synonyms']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    names, weights = list(mixture.weights), list(mixture.weights.values())
    tasks = {name: mixture.task(name, "train") for name in names}
    episodes = []
    for _ in range(n):
        name = rng.choices(names, weights)[0]
        n_examples = rng.randint(1, mixture.max_examples)
        description = rng.random() < mixture.p_description
        episodes.append((name, make_episode(tasks[name], n_examples, rng, description)))
    return episodes


def training_tokens(tokenizer: CharTokenizer, mixture: Mixture, n_tokens: int,
                    seed: int) -> Tensor:
    """A stream of at least ``n_tokens`` token ids ``(N,)``: episodes, each followed by EOT
    (:func:`minigpt.train.pack_documents` of the encoded episodes).

    Episodes are drawn in batches of 256, batch ``b`` by :func:`training_episodes` with seed
    ``seed * 1_000_003 + b``, until the stream is long enough; so a longer stream starts with
    the shorter one.

    >>> tok = CharTokenizer()
    >>> stream = training_tokens(tok, Mixture(), 300, seed=0)
    >>> stream.shape[0] >= 300, int(stream[-1]) == tok.eot_id
    (True, True)
    """
    check_int("n_tokens", n_tokens)
    stream: list[int] = []  # what pack_documents builds, without a tensor per episode
    batch = 0
    while len(stream) < n_tokens:
        for _, text in training_episodes(mixture, 256, seed * 1_000_003 + batch):
            stream += tokenizer.encode(text)
            stream.append(tokenizer.eot_id)
        batch += 1
    return torch.tensor(stream, dtype=torch.long)


# --------------------------------------------------------------------------------------------
# Training


def make_trainer(
    size: Mapping[str, Any],
    train: TrainConfig,
    mixture: Mixture,
    data_seed: int,
    tokenizer: CharTokenizer | None = None,
) -> Trainer:
    """A :class:`~minigpt.train.Trainer` for a fresh :class:`GPT` of shape ``size`` on
    ``train.max_steps`` batches of ``(train.batch_size, train.seq_len)`` tokens of ``mixture``.

    ``size`` holds :class:`~minigpt.config.GPTConfig` fields (``n_layer``, ``d_model``,
    ``n_heads``, ``positions``...) and optionally ``lr``, which overrides ``train.lr`` (GPT-3
    too lowers the learning rate as models grow). The context ``n_ctx`` is ``train.seq_len``;
    the weights are initialised after ``torch.manual_seed(train.seed)``; the stream holds the
    tokens of ``train.max_steps`` full batches, so no window is seen twice.
    """
    if train.seq_len is None:
        raise ValueError("train.seq_len must be set: it is also the model's context n_ctx")
    size = dict(size)
    lr = size.pop("lr", None)
    if lr is not None:
        train = dataclasses.replace(train, lr=lr)
    tokenizer = tokenizer or CharTokenizer()
    stream = training_tokens(tokenizer, mixture,
                             train.max_steps * train.batch_size * train.seq_len + 1, data_seed)
    torch.manual_seed(train.seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_ctx=train.seq_len, **size))
    return Trainer(model, stream, train)


def train_icl_model(
    size: Mapping[str, Any],
    train: TrainConfig,
    mixture: Mixture,
    data_seed: int,
    tokenizer: CharTokenizer | None = None,
    steps: int | None = None,
) -> tuple[GPT, list[dict[str, float]]]:
    """Train the model of :func:`make_trainer`; return it (in eval mode) and the trainer's
    history (one dict per step, ``"loss"`` among its keys).

    ``steps`` stops early; the learning-rate schedule stays that of ``train.max_steps``, so the
    first ``steps`` steps are exactly those of the full run.
    """
    trainer = make_trainer(size, train, mixture, data_seed, tokenizer)
    history = trainer.train(steps)
    return trainer.model.eval(), history


# --------------------------------------------------------------------------------------------
# Evaluation

#: A predictor maps prompt texts to completions (the text after the prompt).
Predictor = Callable[[Sequence[str]], list[str]]


def greedy_predictor(model: GPT, tokenizer: CharTokenizer | None = None,
                     max_new_tokens: int = 12) -> Predictor:
    """Greedy completions with :func:`minigpt.generate.greedy`, stopping at a newline.

    Each prompt is fed as ``[EOT] + encode(text)`` (an episode starts after EOT in training).
    Prompts of equal length are decoded as one batch ``(B, T)``; a completion ends at its
    first newline or EOT.
    """
    tokenizer = tokenizer or CharTokenizer()
    newline = tokenizer.encode("\n")[0]

    def predict(prompts: Sequence[str]) -> list[str]:
        groups: dict[int, list[int]] = defaultdict(list)
        encoded = [[tokenizer.eot_id, *tokenizer.encode(p)] for p in prompts]
        for i, ids in enumerate(encoded):
            groups[len(ids)].append(i)
        out = [""] * len(prompts)
        for length, rows in groups.items():
            idx = torch.tensor([encoded[i] for i in rows])  # (B, T)
            new = greedy(model, idx, max_new_tokens, eos_id=newline)[:, length:]  # (B, n)
            for i, ids in zip(rows, new.tolist(), strict=True):
                cut = ids.index(tokenizer.eot_id) if tokenizer.eot_id in ids else len(ids)
                out[i] = tokenizer.decode(ids[:cut])
        return out

    return predict


def accuracy(predict: Predictor, task: Task, k: int, n_prompts: int, seed: int,
             description: bool) -> float:
    """Exact-match accuracy of ``predict`` on ``n_prompts`` ``k``-shot prompts of ``task``,
    rounded to 3 digits.

    >>> oracle = lambda texts: [" " + t.split("\\n")[-1][:-3][::-1] for t in texts]
    >>> accuracy(oracle, ICL_TASKS["backwards"], 2, 50, seed=0, description=False)
    1.0
    """
    prompts = make_prompts(task, n_prompts, k, seed, description=description)
    predictions = predict([p.text for p in prompts])
    return round(score(predictions, [p.answer for p in prompts]), 3)


def _prompt_key(description: bool) -> str:
    return "with_description" if description else "without_description"


def evaluate_icl(
    predict: Predictor,
    mixture: Mixture,
    tasks: Sequence[str] = tuple(ICL_TASKS),
    shots: Sequence[int] = SHOTS,
    n_prompts: int = 200,
    seed: int = 1,
    descriptions: Sequence[bool] = (False, True),
) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy for every prompt kind, task and number of shots.

    Returns ``{"without_description" | "with_description": {task: {str(k): accuracy}}}``
    (string keys, as in JSON). Arithmetic prompts use the test share of the mixture's split.
    Every cell uses ``make_prompts(..., seed)``, so a cell does not depend on which others are
    evaluated.
    """
    check_int("n_prompts", n_prompts)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for description in descriptions:
        cells = results.setdefault(_prompt_key(description), {})
        for name in tasks:
            task = mixture.task(name, "test")
            cells[name] = {str(k): accuracy(predict, task, k, n_prompts, seed, description)
                           for k in shots}
    return results


# --------------------------------------------------------------------------------------------
# Stored runs: parameters, re-running, comparing


#: The :class:`~minigpt.train.TrainConfig` fields a stored run records (the others keep their
#: defaults).
TRAIN_FIELDS = ("max_steps", "batch_size", "seq_len", "lr", "min_lr_ratio", "warmup_tokens",
                "weight_decay", "betas", "eps", "grad_clip", "seed")


def smallest_size(parameters: Mapping[str, Any]) -> str:
    """The name of the size with the fewest parameters per token (``L d^2`` ranks them).

    >>> smallest_size({"sizes": {"M": {"n_layer": 2, "d_model": 64},
    ...                          "S": {"n_layer": 1, "d_model": 32}}})
    'S'
    """
    sizes = parameters["sizes"]
    return min(sizes, key=lambda n: sizes[n]["n_layer"] * sizes[n]["d_model"] ** 2)


def make_parameters(
    sizes: Mapping[str, Mapping[str, Any]],
    train: TrainConfig,
    mixture: Mixture,
    data_seed: int = 0,
    evaluation: Mapping[str, Any] | None = None,
    live: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Everything :func:`run_from_parameters` needs, as plain JSON-ready values.

    ``evaluation`` holds :func:`evaluate_icl`'s ``tasks``, ``shots``, ``n_prompts``, ``seed``,
    ``descriptions`` and ``max_new_tokens`` (defaults filled in). ``live`` is the slice that
    :func:`live_rerun` repeats: the smallest size, evaluated after ``step`` steps on ``tasks``
    x ``shots`` x ``descriptions``. ``extra`` (the command, versions) is stored alongside.

    >>> p = make_parameters({"XS": {"n_layer": 1, "d_model": 32, "n_heads": 2}},
    ...                     TrainConfig(max_steps=10, seq_len=64), Mixture())
    >>> sorted(p)
    ['alphabet', 'data_seed', 'evaluation', 'live', 'mixture', 'sizes', 'train']
    >>> p["train"]["max_steps"], p["evaluation"]["shots"], p["live"]["size"], p["live"]["step"]
    (10, [0, 1, 2, 4, 8], 'XS', 5)
    """
    evaluation = {"tasks": list(ICL_TASKS), "shots": list(SHOTS), "n_prompts": 200, "seed": 1,
                  "descriptions": [False, True], "max_new_tokens": 12, **(evaluation or {})}
    train_dict = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in dataclasses.asdict(train).items() if k in TRAIN_FIELDS}
    parameters = {"sizes": {name: dict(size) for name, size in sizes.items()},
                  "train": train_dict, "mixture": mixture.to_dict(), "data_seed": data_seed,
                  "alphabet": TASK_ALPHABET, "evaluation": evaluation}
    live = {"step": train.max_steps // 2, "tasks": ["synonyms", "backwards"],
            "shots": [0, 1, 4], "descriptions": [False], **(live or {})}
    if not 1 <= live["step"] <= train.max_steps:
        raise ValueError(f"live step must be in 1..{train.max_steps}, got {live['step']}")
    parameters["live"] = {"size": smallest_size(parameters), **live}
    return {**parameters, **extra}


def train_config(parameters: Mapping[str, Any]) -> TrainConfig:
    """The :class:`~minigpt.train.TrainConfig` stored in ``parameters["train"]``."""
    fields = dict(parameters["train"])
    if "betas" in fields:
        fields["betas"] = tuple(fields["betas"])
    return TrainConfig(**fields)


def trainer_from_parameters(parameters: Mapping[str, Any], size: str) -> Trainer:
    """:func:`make_trainer` for size ``size`` of stored ``parameters``."""
    if size not in parameters["sizes"]:
        raise ValueError(f"unknown size {size!r}; the parameters have "
                         f"{', '.join(parameters['sizes'])}")
    return make_trainer(parameters["sizes"][size], train_config(parameters),
                        Mixture(**parameters["mixture"]), parameters["data_seed"],
                        CharTokenizer(parameters["alphabet"]))


def train_from_parameters(parameters: Mapping[str, Any], size: str,
                          steps: int | None = None) -> tuple[GPT, list[dict[str, float]]]:
    """Train size ``size`` of stored ``parameters`` (its first ``steps`` steps only, if
    given); return the model (eval mode) and the history."""
    trainer = trainer_from_parameters(parameters, size)
    history = trainer.train(steps)
    return trainer.model.eval(), history


def _evaluate(model: GPT, parameters: Mapping[str, Any], tasks: Sequence[str],
              shots: Sequence[int], descriptions: Sequence[bool]) -> dict:
    ev = parameters["evaluation"]
    predict = greedy_predictor(model, CharTokenizer(parameters["alphabet"]),
                               ev["max_new_tokens"])
    return evaluate_icl(predict, Mixture(**parameters["mixture"]), tasks, shots,
                        ev["n_prompts"], ev["seed"], descriptions)


@dataclass(frozen=True)
class LiveSlice:
    """The slice of a stored run that a notebook repeats live: the smallest size after
    ``step`` training steps, its training ``loss`` at that step, and its ``accuracy`` table
    (``{"with_description"|"without_description": {task: {str(k): accuracy}}}``, as
    :func:`evaluate_icl`)."""

    step: int
    loss: float
    accuracy: dict[str, dict[str, dict[str, float]]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as a results file stores them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> LiveSlice:
        """The slice a results file stored; ``ValueError`` if a field is missing."""
        missing = {"step", "loss", "accuracy"} - set(fields)
        if missing:
            raise ValueError(f"a live slice needs 'step', 'loss' and 'accuracy'; missing: "
                             f"{', '.join(sorted(missing))}")
        return cls(step=int(fields["step"]), loss=float(fields["loss"]),
                   accuracy=fields["accuracy"])


@dataclass(frozen=True)
class IclRun:
    """One size of the experiment, trained and scored by :func:`run_from_parameters`.

    Attributes:
        n_parameters: trainable parameters.
        final_loss: the mean training loss of the last 10 steps.
        loss_curve: ``[[step, loss], ...]`` at step 1 and every 10 steps.
        accuracy: every cell, as :func:`evaluate_icl`.
        live: the :class:`LiveSlice` (for the size that ``parameters["live"]`` names).
        train_s, eval_s: wall-clock seconds.
    """

    n_parameters: int
    final_loss: float
    loss_curve: list[list[float]]
    accuracy: dict[str, dict[str, dict[str, float]]]
    live: LiveSlice | None
    train_s: float
    eval_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as ``experiments/icl.py`` stores them (no ``live`` if none)."""
        out = dataclasses.asdict(self)
        if self.live is None:
            del out["live"]
        return out


def run_from_parameters(parameters: Mapping[str, Any], size: str) -> IclRun:
    """Train size ``size`` as ``parameters`` say and evaluate every cell: an :class:`IclRun`.

    For the size of ``parameters["live"]`` the run also holds the :class:`LiveSlice` evaluated
    after ``live["step"]`` steps (training then goes on unchanged: greedy decoding draws no
    random numbers).
    """
    start = time.perf_counter()
    trainer = trainer_from_parameters(parameters, size)
    live_slice = None
    live = parameters.get("live")
    if live and live["size"] == size:
        history = trainer.train(live["step"])
        live_slice = _live_slice(trainer.model, history, parameters)
    history = trainer.train()
    train_s = time.perf_counter() - start
    ev = parameters["evaluation"]
    acc = _evaluate(trainer.model.eval(), parameters, ev["tasks"], ev["shots"],
                    ev["descriptions"])
    last = [r["loss"] for r in history[-10:]]
    return IclRun(n_parameters=trainer.model.num_parameters(),
                  final_loss=round(sum(last) / len(last), 4),
                  loss_curve=[[r["step"], round(r["loss"], 4)] for r in history
                              if r["step"] == 1 or r["step"] % 10 == 0],
                  accuracy=acc, live=live_slice, train_s=round(train_s, 1),
                  eval_s=round(time.perf_counter() - start - train_s, 1))


def live_rerun(parameters: Mapping[str, Any]) -> LiveSlice:
    """Repeat the stored run's ``live`` slice: train the smallest size for ``live["step"]``
    steps and evaluate ``live["tasks"]`` x ``shots`` x ``descriptions``.

    Returns the :class:`LiveSlice` (``loss``: the training loss of that step) to compare
    with ``results[size]["live"]`` by :func:`~minigpt.lab.record.reproduces` (about 20 s on
    one idle CPU
    thread with the stored parameters).
    """
    live = parameters["live"]
    model, history = train_from_parameters(parameters, live["size"], live["step"])
    return _live_slice(model, history, parameters)


def _live_slice(model: GPT, history: list[dict[str, float]],
                parameters: Mapping[str, Any]) -> LiveSlice:
    """The live slice after ``history``; its ``loss`` is that of the last step."""
    live = parameters["live"]
    return LiveSlice(step=live["step"], loss=round(history[-1]["loss"], 4),
                     accuracy=_evaluate(model, parameters, live["tasks"], live["shots"],
                                        live["descriptions"]))


def live_summary(live: LiveSlice) -> dict[str, float]:
    """The two numbers of a live slice that another CPU reproduces: the training loss of its
    last step and the accuracy averaged over all its cells.

    Single cells are fragile: rounding differs between CPUs, a few hundred steps of training
    amplify it, and a cell of 200 prompts can move by several points. Averages move far less.

    >>> live_summary(LiveSlice(500, 0.98, {"a": {"0": 0.2, "1": 0.4}, "b": {"0": 0.6}}))
    {'loss': 0.98, 'mean_accuracy': 0.4}
    """
    values = [float(v) for _, v in leaves(live.accuracy)]
    if not values:
        raise ValueError("the live slice holds no accuracies")
    return {"loss": float(live.loss), "mean_accuracy": round(sum(values) / len(values), 6)}
