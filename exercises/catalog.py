"""Every graded exercise of the book, by chapter.

An exercise names the minigpt function that is its reference solution. From that one source:

- ``python -m exercises.generate`` writes the student's stub (signature and docstring of the
  minigpt function, body ``raise NotImplementedError``) into ``exercises/<chapter>.py``;
- the book shows the same function's code behind a "Solution" toggle (``show_source``);
- ``python -m exercises.grade <chapter>`` runs the chapter's graders on the student's functions.

``DECLARED`` below is the one list of chapters with exercises: key and title, one line each.
The key names the stub file ``exercises/<key>.py`` and the grader module
``exercises/graders/<key>.py``, which declares ``IMPORTS`` (the stub file's imports) and
``EXERCISES`` next to its graders. Reading this module imports no grader: ``CHAPTERS[key]``
imports a chapter's grader when that chapter is graded or its exercises are listed, so a
broken grader, or one that needs an optional library, only affects its own chapter.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Every chapter with exercises, in book order: (key, title). Adding a chapter is one line here.
DECLARED: tuple[tuple[str, str], ...] = (
    ("ch01_ngrams", "Chapter 1: n-gram language models"),
    ("ch02_bpe", "Chapter 2: byte-level BPE tokenization"),
    ("ch03_gradient_descent", "Chapter 3: gradient descent and optimizers"),
    ("ch04_activations", "Chapter 4: activation functions"),
    ("ch05_layernorm", "Chapter 5: layer normalization"),
    ("ch06_attention", "Chapter 6: attention"),
    ("ch07_gpt3_model", "Chapter 7: the GPT-3 model and its training recipe"),
    ("ch08_decoding", "Chapter 8: decoding"),
    ("ch09_scaling", "Chapter 9: scaling"),
    ("ch10_in_context_learning", "Chapter 10: in-context learning and data contamination"),
    ("ch11_after_gpt3", "Chapter 11: after GPT-3"),
    ("ch12_gpu_training", "Chapter 12: training on GPUs"),
    ("ch13_training_data", "Chapter 13: GPT-3's training data"),
)


@dataclass(frozen=True)
class Exercise:
    """One exercise: a function to write, its reference solution and its grader."""

    number: str  # "1.2": chapter 1, exercise 2
    name: str  # function name, the same in the stub file and in minigpt
    solution: str  # "minigpt.ngram:count_ngrams"
    grader: str  # "exercises.graders.ch01_ngrams:grade_count_ngrams"
    task: str  # one-sentence statement shown in the stub and the book

    def load_solution(self) -> Callable[..., Any]:
        return _load(self.solution)

    def load_grader(self) -> Callable[[Callable[..., Any]], None]:
        return _load(self.grader)


@dataclass(frozen=True)
class Chapter:
    """The exercises of one chapter and the imports its stub file needs."""

    key: str  # "ch01_ngrams": also the stub file's and the grader module's name
    title: str
    imports: tuple[str, ...]
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)


class UnknownChapterError(KeyError):
    """A chapter key that names no chapter, or several; its message is one line."""

    def __str__(self) -> str:
        return str(self.args[0])


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def grader_module(key: str) -> str:
    """The module that grades chapter ``key``: ``exercises.graders.<key>``."""
    return f"exercises.graders.{key}"


class Chapters(Mapping[str, Chapter]):
    """The chapters of ``DECLARED`` by key; a chapter's grader is imported on first lookup.

    Iterating over the keys, ``len`` and ``in`` import nothing; ``chapters[key]`` (and so
    ``values()`` and ``items()``) imports that chapter's grader module.
    """

    def __init__(self, declared: tuple[tuple[str, str], ...]) -> None:
        self.titles = dict(declared)
        self._loaded: dict[str, Chapter] = {}

    def __getitem__(self, key: str) -> Chapter:
        if key not in self.titles:
            raise UnknownChapterError(unknown_message(key))
        if key not in self._loaded:
            self._loaded[key] = self._load(key)
        return self._loaded[key]

    def __contains__(self, key: object) -> bool:  # Mapping's would import the grader
        return key in self.titles

    def __iter__(self) -> Iterator[str]:
        return iter(self.titles)

    def __len__(self) -> int:
        return len(self.titles)

    def _load(self, key: str) -> Chapter:
        module = importlib.import_module(grader_module(key))
        title = self.titles[key]
        if not (hasattr(module, "IMPORTS") and hasattr(module, "EXERCISES")):
            raise AttributeError(f"{module.__name__} must declare IMPORTS and EXERCISES")
        return Chapter(key, title, tuple(module.IMPORTS), tuple(module.EXERCISES))


CHAPTERS = Chapters(DECLARED)


def _number(key: str) -> int:
    return int(re.match(r"ch(\d+)", key).group(1))


def unknown_message(key: str, matches: list[str] | None = None) -> str:
    if matches:
        return f"chapter {key!r} is ambiguous: it could be {', '.join(matches)}"
    return (
        f"unknown chapter {key!r}; chapters with exercises: {', '.join(CHAPTERS)} "
        "(a number such as 2 or ch02, or a word of the key such as bpe, also works)"
    )


def resolve(key: str) -> str:
    """The full key of a chapter written as its key, a prefix of it, its number (``2``,
    ``02``, ``ch2``, ``ch02``) or a word of its name (``bpe``, ``attention``).

    >>> resolve("ch2"), resolve("02"), resolve("bpe"), resolve("ch02_bpe")
    ('ch02_bpe', 'ch02_bpe', 'ch02_bpe', 'ch02_bpe')
    """
    wanted = key.strip().lower()
    if wanted in CHAPTERS:
        return wanted
    number = re.fullmatch(r"(?:ch)?0*(\d+)", wanted)
    if number:
        matches = [k for k in CHAPTERS if _number(k) == int(number.group(1))]
    else:
        matches = [
            k
            for k in CHAPTERS
            if k.startswith(wanted) or wanted in (k.split("_", 1)[1], *k.split("_")[1:])
        ]
    if len(matches) != 1:
        raise UnknownChapterError(unknown_message(key, matches))
    return matches[0]


def chapter(key: str) -> Chapter:
    """The chapter ``key`` names (see :func:`resolve`), its grader imported."""
    return CHAPTERS[resolve(key)]
