"""Shared checks for graders."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable
from typing import Any

import numpy as np


def check_docstring_examples(fn: Callable[..., Any], reference: Callable[..., Any]) -> None:
    """Run the examples in the reference's docstring against ``fn`` (same name, same globals)."""
    examples = doctest.DocTestParser().get_examples(reference.__doc__ or "")
    globs = {**reference.__globals__, reference.__name__: fn, "np": np, "math": math}
    for example in examples:
        try:
            code = compile(example.source, "<example>", "eval")
        except SyntaxError:  # a statement, e.g. an assignment that later examples use
            exec(compile(example.source, "<example>", "exec"), globs)
            continue
        got = repr(eval(code, globs))
        want = example.want.strip()
        assert got == want, f"docstring example {example.source.strip()!r}: got {got}, want {want}"


def close(got: float, want: float, what: str, rel: float = 1e-9) -> None:
    """Assert two floats agree to a relative tolerance, with a message for the student."""
    ok = math.isclose(got, want, rel_tol=rel, abs_tol=1e-12)
    assert ok, f"{what}: got {got!r}, want {want!r}"


def expect_value_error(fn: Callable[..., Any], what: str, *args: Any) -> None:
    """Assert that ``fn(*args)`` rejects its input with a ValueError, else hint at it."""
    try:
        fn(*args)
    except ValueError:
        return
    raise AssertionError(f"{what}: raise a ValueError")
