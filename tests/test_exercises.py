"""Every grader passes on the reference solution and fails on the stub and on known wrong answers.

A grader that cannot fail is a defect, so this is part of CI.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from exercises import generate
from exercises.catalog import CHAPTERS, Exercise, chapter
from exercises.grade import grade_one

ROOT = Path(__file__).resolve().parents[1]
ALL = [(c.key, ex) for c in CHAPTERS.values() for ex in c.exercises]
IDS = [f"{key}:{ex.name}" for key, ex in ALL]


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_passes_on_the_reference_solution(key: str, exercise: Exercise) -> None:
    ok, message = grade_one(exercise, exercise.load_solution())
    assert ok, message


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_fails_on_the_untouched_stub(key: str, exercise: Exercise) -> None:
    stub = getattr(importlib.import_module(f"exercises.{key}"), exercise.name)
    ok, message = grade_one(exercise, stub)
    assert not ok and "not attempted" in message


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_rejects_plausible_wrong_answers(key: str, exercise: Exercise) -> None:
    mutants = importlib.import_module(exercise.grader.partition(":")[0]).MUTANTS
    assert mutants.get(exercise.name), f"give {exercise.name} at least one wrong answer to reject"
    for wrong in mutants[exercise.name]:
        ok, _ = grade_one(exercise, wrong)
        assert not ok, f"the grader of {exercise.name} accepted a wrong answer"


def test_stub_files_are_generated_from_the_current_solutions() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m exercises.generate"


def test_stubs_keep_the_solutions_signature_and_docstring() -> None:
    for key, ex in ALL:
        stub = getattr(importlib.import_module(f"exercises.{key}"), ex.name)
        solution = ex.load_solution()
        assert stub.__doc__ == solution.__doc__
        assert stub.__annotations__ == solution.__annotations__


def test_every_chapter_has_at_least_three_exercises() -> None:
    for c in CHAPTERS.values():
        assert len(c.exercises) >= 3, c.key


def test_chapter_lookup_by_prefix_and_clear_error() -> None:
    assert chapter("ch01").key == "ch01_ngrams"
    with pytest.raises(KeyError, match="chapters with exercises"):
        chapter("ch99")


def test_grade_command_reports_and_exits_with_status() -> None:
    run = [sys.executable, "-m", "exercises.grade", "ch01"]
    solutions = subprocess.run([*run, "--solutions"], cwd=ROOT, capture_output=True, text=True)
    assert solutions.returncode == 0, solutions.stdout + solutions.stderr
    assert solutions.stdout.strip().endswith("0 failed")
    stubs = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert stubs.returncode == 1 and "not attempted" in stubs.stdout
