"""Grade exercises: run each chapter's graders on the functions in exercises/<chapter>.py.

    python -m exercises.grade ch01              # grade your work on chapter 1
    python -m exercises.grade                   # every chapter
    python -m exercises.grade ch01 --solutions  # grade minigpt's reference solutions instead

The last line reads ``N passed, N failed``; the exit status is 0 only when all passed.
"""

from __future__ import annotations

import argparse
import importlib
import traceback
from collections.abc import Callable
from typing import Any

from exercises.catalog import CHAPTERS, Exercise, chapter


def grade_one(exercise: Exercise, fn: Callable[..., Any]) -> tuple[bool, str]:
    """Run one grader on ``fn``: (passed, message)."""
    try:
        exercise.load_grader()(fn)
    except NotImplementedError:
        return False, "not attempted yet (the stub still raises NotImplementedError)"
    except AssertionError as exc:
        return False, str(exc) or "an assertion failed"
    except Exception as exc:  # a crash in the student's code is a failed exercise
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return False, f"raised {last}"
    return True, "ok"


def student_function(exercise: Exercise, key: str) -> Callable[..., Any]:
    """The student's function, from the stub file of the chapter."""
    module = importlib.import_module(f"exercises.{key}")
    return getattr(module, exercise.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="e.g. ch01 (default: all)")
    parser.add_argument("--solutions", action="store_true", help="grade minigpt's solutions")
    args = parser.parse_args(argv)
    keys = [chapter(k).key for k in args.chapters] or list(CHAPTERS)
    passed = failed = 0
    for key in keys:
        print(CHAPTERS[key].title)
        for ex in CHAPTERS[key].exercises:
            fn = ex.load_solution() if args.solutions else student_function(ex, key)
            ok, message = grade_one(ex, fn)
            passed, failed = passed + ok, failed + (not ok)
            print(f"  [{'PASS' if ok else 'FAIL'}] {ex.number} {ex.name}: {message}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
