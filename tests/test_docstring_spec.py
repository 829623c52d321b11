"""The docstring is the specification: every error a grader expects is named in it.

Graders check expected exceptions only through ``exercises.graders.common.expect_raises``
(``expect_value_error``), which records each check; running a grader on the reference solution
collects them, and the solution's docstring (which the stub copies) must name each one. A
static check makes sure no grader expects an exception some other way, around the recorder.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from exercises.catalog import CHAPTERS, Exercise
from exercises.grade import grade_one
from exercises.graders import common

ALL = [ex for c in CHAPTERS.values() for ex in c.exercises]
KEYS = {ex.name: c.key for c in CHAPTERS.values() for ex in c.exercises}


def expected_errors(exercise: Exercise, fn: Callable[..., Any]) -> list[tuple[str, str]]:
    """(exception, case) for every exception the grader expects while grading ``fn``."""
    common.EXPECTED_ERRORS.clear()
    ok, message = grade_one(exercise, fn)
    assert ok, message
    return list(common.EXPECTED_ERRORS)


def unstated(exercise: Exercise, doc: str | None) -> list[str]:
    """The expected errors that ``doc`` does not name."""
    errors = expected_errors(exercise, exercise.load_solution())
    return sorted({f"{name} ({what})" for name, what in errors if name not in (doc or "")})


@pytest.mark.parametrize("exercise", ALL, ids=[f"{ex.number}:{ex.name}" for ex in ALL])
def test_the_docstring_names_every_error_the_grader_expects(exercise: Exercise) -> None:
    stub = getattr(importlib.import_module(f"exercises.{KEYS[exercise.name]}"), exercise.name)
    missing = unstated(exercise, stub.__doc__)
    assert not missing, (
        f"exercise {exercise.number}: the grader expects {', '.join(missing)}, but the "
        f"docstring of {exercise.solution} does not say so (write it there, then run "
        "python -m exercises.generate)"
    )


def test_the_check_can_fail() -> None:
    """A docstring without its Raises line is caught (the collection is not empty)."""
    exercise = next(ex for ex in ALL if ex.name == "top_p_filter")
    doc = exercise.load_solution().__doc__
    assert unstated(exercise, doc) == []
    stripped = doc.replace("ValueError", "an error")
    assert unstated(exercise, stripped) == ["ValueError (p = 0)", "ValueError (p = 1.5)"]


def _calls_fn(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "fn"
               for n in ast.walk(node))


@pytest.mark.parametrize("key", list(CHAPTERS))
def test_graders_expect_errors_only_through_the_recorder(key: str) -> None:
    """A ``try`` around the student's ``fn`` with an ``except`` would bypass the record."""
    module = importlib.import_module(f"exercises.graders.{key}")
    tree = ast.parse(inspect.getsource(module))
    bad = [
        f"line {node.lineno}"
        for func in tree.body if isinstance(func, ast.FunctionDef)
        and func.name.startswith("grade_")
        for node in ast.walk(func)
        if isinstance(node, ast.Try) and node.handlers and any(_calls_fn(s) for s in node.body)
    ]
    assert not bad, f"{key}: use expect_value_error / expect_raises instead of try ({bad})"
