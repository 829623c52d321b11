"""Every graded exercise of the book, by chapter.

An exercise names the minigpt function that is its reference solution. From that one source:

- ``python -m exercises.generate`` writes the student's stub (signature and docstring of the
  minigpt function, body ``raise NotImplementedError``) into ``exercises/<chapter>.py``;
- the book shows the same function's code behind a "Solution" toggle (``show_source``);
- ``python -m exercises.grade <chapter>`` runs the chapter's graders on the student's functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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

    key: str  # "ch01_ngrams": also the stub file's name
    title: str
    imports: tuple[str, ...]
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_G1 = "exercises.graders.ch01_ngrams"

CHAPTERS: dict[str, Chapter] = {
    "ch01_ngrams": Chapter(
        key="ch01_ngrams",
        title="Chapter 1: n-gram language models",
        imports=(
            "import math",
            "from collections import Counter",
            "from collections.abc import Iterable, Sequence",
            "",
            "import numpy as np",
            "",
            "from minigpt.ngram import BOS, EOS, Context, Token, ngrams, pad  # you may use these",
        ),
        exercises=(
            Exercise(
                "1.1",
                "count_ngrams",
                "minigpt.ngram:count_ngrams",
                f"{_G1}:grade_count_ngrams",
                "Count, for every order k = 1..order, which token follows each context.",
            ),
            Exercise(
                "1.2",
                "add_k_probability",
                "minigpt.ngram:add_k_probability",
                f"{_G1}:grade_add_k_probability",
                "Write the add-k (Laplace when k = 1, Lidstone otherwise) estimate.",
            ),
            Exercise(
                "1.3",
                "perplexity",
                "minigpt.ngram:perplexity",
                f"{_G1}:grade_perplexity",
                "Turn the log-probabilities of N predicted tokens into a perplexity.",
            ),
            Exercise(
                "1.4",
                "apply_temperature",
                "minigpt.ngram:apply_temperature",
                f"{_G1}:grade_apply_temperature",
                "Rescale a distribution by a temperature, with T = 0 meaning greedy.",
            ),
        ),
    ),
}


def chapter(key: str) -> Chapter:
    """Look a chapter up by its key or a prefix of it (``"ch01"``)."""
    matches = [c for k, c in CHAPTERS.items() if k == key or k.startswith(key)]
    if len(matches) != 1:
        raise KeyError(f"unknown chapter {key!r}; chapters with exercises: {', '.join(CHAPTERS)}")
    return matches[0]
