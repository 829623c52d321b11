"""Synthetic few-shot tasks in GPT-3's prompt formats, with a seeded generator and a scorer.

GPT-3 is not fine-tuned for a task; it is shown one in its context window (Brown et al. 2020,
§2). A *zero-shot* prompt gives a description of the task and the query, a *one-shot* prompt
adds one solved example, and a *few-shot* prompt ``k`` of them, as in the paper's Figure 2.1::

    Translate English to French:        <- task description
    sea otter => loutre de mer          <- examples
    cheese =>                           <- the query: the model should continue " fromage"

The tasks here need no data files:

- **arithmetic** (the paper's §3.9.1): addition and subtraction of two integers drawn uniformly
  from ``[0, 10^n)``, in the paper's format ``"Q: What is 48 plus 76?\\n\\nA: 124"`` (the
  spacing of the released test files) or the compact ``"48 + 76 => 124"``;
- **reversed words** (one of the paper's word-scrambling tasks, §3.9.2): the word is given
  spelled backwards and the answer is the word, ``"stcejbo => objects"``;
- **antonyms** and **synonyms** from a small built-in list, ``"hot => cold"``.

    >>> prompt = make_prompt("addition_2d", k_shots=2, rng=0, style="compact")
    >>> print(prompt.text)
    Add the numbers:
    49 + 97 => 146
    53 + 5 => 58
    33 + 65 =>
    >>> prompt.answer
    '98'
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "split_task",
    "ANTONYMS",
    "REVERSAL_WORDS",
    "SYNONYMS",
    "TASKS",
    "Example",
    "Prompt",
    "Task",
    "arithmetic_task",
    "get_task",
    "make_prompt",
    "make_prompts",
    "normalize_prediction",
    "score",
    "word_task",
]


class Example(NamedTuple):
    """One solved instance: the ``query`` the model sees and the ``answer`` it should give."""

    query: str
    answer: str


class Prompt(NamedTuple):
    """A prompt ``text`` ending where the model must answer, and the expected ``answer``.

    The text ends with the task's arrow or ``"A:"``, with no trailing space: the model's
    completion is ``" " + answer`` (GPT-2/3 tokens carry their leading space).
    """

    text: str
    answer: str


@dataclass(frozen=True)
class Task:
    """A task: a ``sample(rng) -> Example`` generator and how examples are written.

    An example is written ``query + joiner + " " + answer``; examples are separated by
    ``separator``; a non-empty ``description`` heads the prompt on its own line.
    """

    name: str
    description: str
    sample: Callable[[random.Random], Example]
    joiner: str = " =>"
    separator: str = "\n"

    def render(self, example: Example, with_answer: bool = True) -> str:
        """The text of one example, with or without its answer.

        >>> get_task("antonyms").render(Example("hot", "cold"))
        'hot => cold'
        """
        text = example.query + self.joiner
        return f"{text} {example.answer}" if with_answer else text


# --------------------------------------------------------------------------------------------
# Arithmetic

_OPERATIONS = {
    "plus": ("+", lambda a, b: a + b),
    "minus": ("-", lambda a, b: a - b),
}
_STYLES = ("qa", "compact")


def arithmetic_task(digits: int, operation: str = "plus", style: str = "qa") -> Task:
    """Addition or subtraction of two integers drawn uniformly from ``[0, 10^digits)``.

    As in GPT-3's test sets, "n-digit" bounds the operands (``"132 plus 79778"`` is in the
    five-digit file) and subtraction answers may be negative.

    - ``style="qa"``: ``"Q: What is 48 plus 76?\\n\\nA: 124"``, examples separated by a blank
      line, no description (the question states the task);
    - ``style="compact"``: ``"48 + 76 => 124"``, one per line, under ``"Add the numbers:"``
      or ``"Subtract the numbers:"``.

    >>> task = arithmetic_task(3, "minus")
    >>> task.render(task.sample(random.Random(1)))
    'Q: What is 137 minus 582?\\n\\nA: -445'
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 9:
        raise ValueError(f"digits must be an integer from 1 to 9 (the paper used 2 to 5), "
                         f"got {digits!r}")
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(map(repr, _OPERATIONS))}, "
                         f"got {operation!r}")
    if style not in _STYLES:
        raise ValueError(f"style must be one of {', '.join(map(repr, _STYLES))}, got {style!r}")
    symbol, apply = _OPERATIONS[operation]

    def sample(rng: random.Random) -> Example:
        a, b = rng.randrange(10**digits), rng.randrange(10**digits)
        query = f"Q: What is {a} {operation} {b}?" if style == "qa" else f"{a} {symbol} {b}"
        return Example(query, str(apply(a, b)))

    name = f"{'addition' if operation == 'plus' else 'subtraction'}_{digits}d"
    if style == "qa":
        return Task(name, "", sample, joiner="\n\nA:", separator="\n\n")
    verb = "Add" if operation == "plus" else "Subtract"
    return Task(name, f"{verb} the numbers:", sample)


# --------------------------------------------------------------------------------------------
# Words

#: Word -> opposite. Each query word appears once, so each has one expected answer.
ANTONYMS: dict[str, str] = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad",
    "open": "closed", "early": "late", "full": "empty", "hard": "soft", "high": "low",
    "long": "short", "rich": "poor", "strong": "weak", "wet": "dry", "thick": "thin",
    "loud": "quiet", "clean": "dirty", "true": "false", "win": "lose", "buy": "sell",
    "love": "hate", "push": "pull", "always": "never", "inside": "outside", "before": "after",
    "heavy": "light", "first": "last", "alive": "dead", "cheap": "expensive",
    "accept": "reject", "remember": "forget", "increase": "decrease", "begin": "end",
    "north": "south", "east": "west", "day": "night", "good": "bad", "left": "right",
    "question": "answer", "give": "take", "young": "old", "friend": "enemy",
}

#: Word -> a synonym. Exact-match scoring counts other valid synonyms as wrong, a limitation
#: the paper's exact-match tasks share.
SYNONYMS: dict[str, str] = {
    "good": "excellent", "big": "large", "little": "small", "glad": "happy", "quick": "fast",
    "start": "begin", "finish": "end", "clever": "smart", "angry": "mad", "shut": "close",
    "simple": "easy", "difficult": "hard", "huge": "enormous", "wealthy": "rich",
    "sick": "ill", "scared": "afraid", "below": "under", "jump": "leap", "talk": "speak",
    "purchase": "buy", "correct": "right", "choose": "pick", "gift": "present",
    "fix": "repair", "story": "tale", "silent": "quiet", "brave": "courageous",
    "tired": "sleepy", "shout": "yell", "street": "road", "ocean": "sea", "rock": "stone",
    "sofa": "couch", "grin": "smile", "rapid": "swift", "mistake": "error", "wide": "broad",
    "begin": "commence", "end": "conclude", "answer": "reply",
}

#: Words for the reversed-words task: the words above with 5 to 14 letters, the lengths the
#: paper used (it took the 10,000 most frequent English words "of length more than 4
#: characters and less than 15 characters").
REVERSAL_WORDS: tuple[str, ...] = tuple(sorted(
    {w for pairs in (ANTONYMS, SYNONYMS) for pair in pairs.items() for w in pair
     if 4 < len(w) < 15 and w != w[::-1]}
))


def word_task(name: str, pairs: Sequence[tuple[str, str]], description: str) -> Task:
    """A task that draws one ``(query, answer)`` pair uniformly from ``pairs``."""
    if not pairs:
        raise ValueError("pairs must not be empty")
    pairs = tuple(pairs)

    def sample(rng: random.Random) -> Example:
        return Example(*rng.choice(pairs))

    return Task(name, description, sample)


# --------------------------------------------------------------------------------------------
# Registry and prompts

#: Every built-in task by name; arithmetic tasks here use the paper's Q/A style.
TASKS: dict[str, Task] = {
    **{f"addition_{n}d": arithmetic_task(n, "plus") for n in range(2, 6)},
    **{f"subtraction_{n}d": arithmetic_task(n, "minus") for n in range(2, 6)},
    "reversed_words": word_task("reversed_words", [(w[::-1], w) for w in REVERSAL_WORDS],
                                "Spell each word forwards:"),
    "antonyms": word_task("antonyms", list(ANTONYMS.items()), "Give the opposite of each word:"),
    "synonyms": word_task("synonyms", list(SYNONYMS.items()),
                          "Give a word with the same meaning:"),
}


def get_task(name: str | Task, style: str | None = None) -> Task:
    """A task by name; ``style`` (``"qa"`` or ``"compact"``) applies to arithmetic only.

    >>> get_task("subtraction_4d", style="compact").description
    'Subtract the numbers:'
    """
    if isinstance(name, Task):
        if style is not None:
            raise ValueError("style only applies to a task given by name")
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    if style is None:
        return TASKS[name]
    if not name.startswith(("addition_", "subtraction_")):
        raise ValueError(f"style applies to arithmetic tasks only, not {name!r}")
    operation = "plus" if name.startswith("addition_") else "minus"
    return arithmetic_task(int(name.split("_")[1][:-1]), operation, style)


def _as_rng(rng: random.Random | int) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise ValueError(f"rng must be a random.Random or an integer seed, got {type(rng).__name__}")


def _distinct_examples(task: Task, count: int, rng: random.Random) -> list[Example]:
    """``count`` examples with different queries, or a ValueError if the task has too few."""
    examples: dict[str, Example] = {}
    attempts = 0
    while len(examples) < count:
        example = task.sample(rng)
        examples.setdefault(example.query, example)
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"task {task.name!r} cannot supply {count} distinct examples; "
                             f"ask for fewer shots (found {len(examples)})")
    return list(examples.values())


def make_prompt(
    task: str | Task,
    k_shots: int,
    rng: random.Random | int,
    *,
    style: str | None = None,
    description: bool = True,
) -> Prompt:
    """A zero- (``k_shots=0``), one- (1) or few-shot (``k``) prompt and its expected answer.

    The query and the ``k`` solved examples are distinct draws from the task; the examples
    come first, the query last, unanswered. ``description=False`` leaves out the task's
    description line.

    >>> p = make_prompt("antonyms", 1, rng=3)
    >>> print(p.text)
    Give the opposite of each word:
    loud => quiet
    left =>
    >>> p.answer
    'right'
    >>> print(make_prompt("addition_2d", 0, rng=0).text)
    Q: What is 49 plus 97?
    <BLANKLINE>
    A:
    """
    task = get_task(task, style)
    if isinstance(k_shots, bool) or not isinstance(k_shots, int) or k_shots < 0:
        raise ValueError(f"k_shots must be a non-negative integer (0 = zero-shot), "
                         f"got {k_shots!r}")
    *shots, query = _distinct_examples(task, k_shots + 1, _as_rng(rng))
    parts = [task.render(ex) for ex in shots] + [task.render(query, with_answer=False)]
    text = task.separator.join(parts)
    if description and task.description:
        text = f"{task.description}\n{text}"
    return Prompt(text, query.answer)


def make_prompts(
    task: str | Task,
    n: int,
    k_shots: int,
    seed: int = 0,
    *,
    style: str | None = None,
    description: bool = True,
) -> list[Prompt]:
    """``n`` prompts from one ``random.Random(seed)``: the same list on every machine.

    ``description`` is passed on to :func:`make_prompt` (``False``: no description line). The
    first ``m`` prompts of ``n`` are those of ``make_prompts(task, m, ...)`` with the same seed.

    >>> [p.answer for p in make_prompts("reversed_words", 3, k_shots=2, seed=1)]
    ['begin', 'short', 'young']
    >>> make_prompts("antonyms", 1, k_shots=1, seed=1, description=False)[0].text.count("\\n")
    1
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    return [make_prompt(task, k_shots, rng, style=style, description=description)
            for _ in range(n)]


def normalize_prediction(prediction: str) -> str:
    """The answer part of a model's continuation: its first line, without surrounding spaces.

    >>> normalize_prediction(" 124\\n\\nQ: What is 3 plus 4?")
    '124'
    """
    if not isinstance(prediction, str):
        raise ValueError(f"predictions must be strings, got {type(prediction).__name__}")
    lines = prediction.strip().splitlines()
    return lines[0].strip() if lines else ""


def score(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Exact-match accuracy: the share of predictions whose first line equals the answer.

    A prediction counts when ``normalize_prediction(prediction) == answer.strip()``.
    Raises ``ValueError`` if ``predictions`` or ``answers`` is a single string rather than a
    sequence of strings, if their lengths differ, or if there are no answers.

    >>> score([" 124\\n", "12", "-5 and more"], ["124", "13", "-5"])
    0.3333333333333333
    """
    if isinstance(predictions, str) or isinstance(answers, str):
        raise ValueError("predictions and answers must be sequences of strings, not one string")
    if len(predictions) != len(answers):
        raise ValueError(f"got {len(predictions)} predictions for {len(answers)} answers; "
                         "they must pair up one to one")
    if not answers:
        raise ValueError("no answers to score")
    hits = sum(normalize_prediction(p) == a.strip() for p, a in zip(predictions, answers,
                                                                     strict=True))
    return hits / len(answers)


_PARTS = ("train", "test")


def split_task(task: Task, part: str, holdout: float) -> Task:
    """The task restricted to the ``"train"`` or ``"test"`` share of its queries.

    A query is in the test share when ``crc32(query) / 2^32 < holdout``: a split fixed by the
    text alone, the same on every machine, that needs no list of held-out problems.

    >>> test = split_task(get_task("addition_2d"), "test", 0.2)
    >>> example = test.sample(random.Random(0))
    >>> zlib.crc32(example.query.encode()) / 2**32 < 0.2
    True
    """
    if part not in _PARTS:
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    if holdout == 0.0:
        if part == "test":
            raise ValueError("holdout = 0 leaves no test queries; use holdout > 0")
        return task
    want_test = part == "test"

    def sample(rng: random.Random):
        for _ in range(10_000):
            example = task.sample(rng)
            if (zlib.crc32(example.query.encode()) / 2**32 < holdout) == want_test:
                return example
        raise ValueError(f"task {task.name!r} found no {part} query in 10,000 draws")

    return dataclasses.replace(task, sample=sample)
