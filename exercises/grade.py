"""Grade exercises: run each chapter's graders on your functions.

    python -m exercises.start ch01              # once: copy the stubs to workspace/
    python -m exercises.grade ch01              # grade your work on chapter 1
    python -m exercises.grade                   # every chapter
    python -m exercises.grade ch01 --solutions  # grade minigpt's reference solutions instead
    python -m exercises.grade ch01 --file my_answers.py   # grade another file

From a notebook (prints the same report)::

    from exercises.grade import grade
    grade("ch01")

The functions graded come from the workspace copy of the chapter (``workspace/<chapter>.py``,
see ``exercises/workspace.py``) when it exists, else from the untouched stub. A chapter is
named by its key (ch02_bpe), its number (2, 02, ch2, ch02) or a word of its key (bpe). Only
the graders of the chapters named are imported.

The last line reads ``N passed, N failed``; the exit status is 0 only when all passed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from exercises.catalog import CHAPTERS, Exercise, UnknownChapterError, resolve
from exercises.workspace import stub_path, workspace_dir

_counter = itertools.count()


def describe(value: Any, limit: int = 80) -> str:
    """A short description of an input: tensors and arrays by shape and dtype."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        kind = "tensor" if hasattr(value, "detach") else type(value).__name__
        return f"{kind}(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        inner = ", ".join(describe(v, 20) for v in value[:3])
        return f"{type(value).__name__} of {len(value)} items [{inner}, ...]"
    if callable(value) and not isinstance(value, type) and hasattr(value, "__name__"):
        return f"<function {value.__name__}>"
    if hasattr(value, "parameters") and hasattr(value, "forward"):
        return f"<{type(value).__name__} module>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_call(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class _Recorder:
    """Wraps the student's function to remember the call that raised."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.failed_call: str | None = None
        self.last_call: str | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.fn, "__name__", "your function")
        self.last_call = describe_call(name, args, kwargs)
        try:
            return self.fn(*args, **kwargs)
        except BaseException:
            self.failed_call = self.failed_call or self.last_call
            raise


def _student_frame(exc: BaseException, files: set[str]) -> str | None:
    """``file, line N: code`` of the innermost traceback frame in one of ``files``."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) in files:
            found = frame
    if found is None:
        return None
    code = f": {found.line.strip()}" if found.line else ""
    return f"{found.filename}, line {found.lineno}{code}"


def grade_one(exercise: Exercise, fn: Callable[..., Any]) -> tuple[bool, str]:
    """Run one grader on ``fn``: (passed, message).

    A crash reports the call that raised (tensors by shape and dtype), the exception, and the
    line of the student's file it came from.
    """
    recorder = _Recorder(fn)
    code = getattr(fn, "__code__", None)
    files = {os.path.abspath(code.co_filename)} if code else set()
    try:
        exercise.load_grader()(recorder)
    except NotImplementedError:
        return False, "not attempted yet (the stub still raises NotImplementedError)"
    except AssertionError as exc:
        return False, str(exc) or "an assertion failed"
    except Exception as exc:  # a crash in the student's code is a failed exercise
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        where = _student_frame(exc, files)
        if recorder.failed_call is not None:
            message = f"crashed on {recorder.failed_call}: {last}"
            if where:
                message += f"\n      at {where}"
        else:  # the grader itself tripped on what the function returned
            message = f"checking what your function returned raised {last}"
            if recorder.last_call:
                message += f" (last call: {recorder.last_call})"
            if where:
                message += f"\n      at {where}"
        return False, message
    return True, "ok"


def load_file(path: str | os.PathLike[str]) -> ModuleType:
    """Execute a student's file as a fresh module (re-read on every call)."""
    path = Path(path).resolve()
    name = f"_exercises_student_{path.stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def source_file(key: str, workspace: str | os.PathLike[str] | None = None) -> Path:
    """The file graded for chapter ``key``: its workspace copy if there is one, else the stub."""
    mine = workspace_dir(workspace) / f"{key}.py"
    return mine if mine.is_file() else stub_path(key)


def student_function(exercise: Exercise, key: str,
                     workspace: str | os.PathLike[str] | None = None) -> Callable[..., Any]:
    """The student's function, from the chapter's workspace copy (else the stub)."""
    return getattr(load_file(source_file(key, workspace)), exercise.name)


@dataclass(frozen=True)
class Result:
    """The outcome of one exercise."""

    chapter: str
    number: str
    name: str
    passed: bool
    message: str


def _missing(name: str, why: str) -> Callable[..., Any]:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(why)

    missing.__name__ = name
    return missing


def check(chapter: str, *, workspace: str | os.PathLike[str] | None = None,
          file: str | os.PathLike[str] | None = None, solutions: bool = False,
          functions: Mapping[str, Any] | None = None, out: Any = None) -> list[Result]:
    """Grade one chapter and print its report to ``out`` (default stdout); return the results.

    The functions come from ``functions`` (a mapping such as a notebook's ``globals()``), else
    ``file``, else the workspace copy, else the stub; ``solutions=True`` grades minigpt's.
    """
    out = sys.stdout if out is None else out
    key = resolve(chapter)
    print(CHAPTERS.titles[key], file=out)
    try:
        exercises = CHAPTERS[key].exercises
    except Exception as exc:  # a broken grader fails its own chapter, not the others
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        print(f"  [FAIL] the graders of {key} could not be loaded: {last}", file=out)
        return [Result(key, "-", "graders", False, f"could not be loaded: {last}")]
    source: Mapping[str, Any] | None = None
    where = "minigpt's reference solutions"
    if functions is not None:
        source, where = functions, "the functions defined here"
    elif not solutions:
        path = Path(file) if file is not None else source_file(key, workspace)
        where = str(path)
        if path == stub_path(key):  # named as in the repository: the same text everywhere
            print(f"  (the untouched stub exercises/{path.name}; start your own copy with\n"
                  f"   python -m exercises.start {key.split('_')[0]})", file=out)
        else:
            print(f"  grading {path}", file=out)
        try:
            source = vars(load_file(path))
        except Exception as exc:  # the file does not even load: every exercise fails
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            if isinstance(exc, SyntaxError):
                frame = f"{exc.filename}, line {exc.lineno}: {(exc.text or '').strip()}"
            else:
                frame = _student_frame(exc, {str(path.resolve())})
            message = f"your file could not be loaded: {last}" + (
                f"\n      at {frame}" if frame else "")
            source = {ex.name: _missing(ex.name, message) for ex in exercises}
    results = []
    for ex in exercises:
        if source is None:
            fn = ex.load_solution()
        else:
            fn = source.get(ex.name) or _missing(ex.name, f"{where} defines no {ex.name}")
        ok, message = grade_one(ex, fn)
        results.append(Result(key, ex.number, ex.name, ok, message))
        print(f"  [{'PASS' if ok else 'FAIL'}] {ex.number} {ex.name}: {message}", file=out)
    return results


def grade(chapter: str, *, workspace: str | os.PathLike[str] | None = None,
          file: str | os.PathLike[str] | None = None, solutions: bool = False,
          functions: Mapping[str, Any] | None = None) -> None:
    """Grade one chapter from a notebook or a script; prints the command line's report.

    ``grade("ch06")`` grades the workspace copy (re-read on every call, so edit and grade
    again); ``grade("ch06", functions=globals())`` grades functions defined in the notebook.
    Returns nothing, so that a notebook cell shows the report once; use :func:`check` for the
    results.
    """
    results = check(chapter, workspace=workspace, file=file, solutions=solutions,
                    functions=functions)
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.grade",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="e.g. ch01 (default: all)")
    parser.add_argument("--solutions", action="store_true", help="grade minigpt's solutions")
    parser.add_argument("--workspace", help="the workspace folder (default: see exercises.start)")
    parser.add_argument("--file", help="grade this file instead (one chapter only)")
    args = parser.parse_args(argv)
    try:
        keys = [resolve(k) for k in args.chapters] or list(CHAPTERS)
    except UnknownChapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.file and len(keys) != 1:
        print("error: --file grades one chapter: name it", file=sys.stderr)
        return 2
    results = []
    for key in keys:
        results += check(key, workspace=args.workspace, file=args.file,
                         solutions=args.solutions)
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
