"""Every graded exercise of the book, by chapter.

An exercise names the minigpt function that is its reference solution. From that one source:

- ``python -m exercises.generate`` writes the student's stub (signature and docstring of the
  minigpt function, body ``raise NotImplementedError``) into ``exercises/<chapter>.py``;
- the book shows the same function's code behind a "Solution" toggle (``show_source``);
- ``python -m exercises.grade <chapter>`` runs the chapter's graders on the student's functions.

Each chapter declares its exercises as ``CHAPTER`` in its grader module,
``exercises/graders/<chapter>.py``, next to the graders.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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


def _discover() -> dict[str, Chapter]:
    """Collect ``CHAPTER`` from every ``exercises/graders/ch*.py``, in chapter order."""
    folder = Path(__file__).resolve().parent / "graders"
    found = {}
    for path in sorted(folder.glob("ch*.py")):
        module = importlib.import_module(f"exercises.graders.{path.stem}")
        found[module.CHAPTER.key] = module.CHAPTER
    return found


CHAPTERS: dict[str, Chapter] = _discover()


def chapter(key: str) -> Chapter:
    """Look a chapter up by its key or a prefix of it (``"ch01"``)."""
    matches = [c for k, c in CHAPTERS.items() if k == key or k.startswith(key)]
    if len(matches) != 1:
        raise KeyError(f"unknown chapter {key!r}; chapters with exercises: {', '.join(CHAPTERS)}")
    return matches[0]
