"""Shared checks for graders.

Every check raises ``AssertionError`` with a message a student can act on. Two rules hold for
all of them: a NaN or an infinity is never hidden before comparing (it is reported as such),
and a check that expects an exception goes through :func:`expect_raises`, which records it, so
that ``tests/test_docstring_spec.py`` can prove the docstring of the exercise names it.
"""

from __future__ import annotations

import ast
import doctest
import math
from collections.abc import Callable
from typing import Any

import numpy as np

# (exception name, what) for every expect_raises call since the last clear(); read by the tests.
EXPECTED_ERRORS: list[tuple[str, str]] = []


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compare_message(example: str, node: ast.expr, globs: dict[str, Any]) -> str | None:
    """For ``a == b`` or ``allclose(a, b)``: say what ``a`` and ``b`` are, else None."""
    sides: list[ast.expr] = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        sides = [node.left, node.comparators[0]]
    elif isinstance(node, ast.Call) and len(node.args) >= 2:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", "")
        if name in {"allclose", "isclose", "equal", "array_equal", "approx"}:
            sides = node.args[:2]
    if not sides:
        return None
    try:
        left, right = (eval(compile(ast.Expression(s), "<example>", "eval"), globs) for s in sides)
    except Exception:  # the message below still names the example
        return None
    return (f"docstring example {example!r} is not true: the left side is {_short(left)}, "
            f"the right side is {_short(right)}")


def check_docstring_examples(fn: Callable[..., Any], reference: Callable[..., Any]) -> None:
    """Run the examples in the reference's docstring against ``fn`` (same name, same globals).

    A failing example reports the value it got; an example that checks a comparison
    (``expr == value``, ``torch.allclose(a, b)``) reports both sides, not ``False``.
    """
    examples = doctest.DocTestParser().get_examples(reference.__doc__ or "")
    globs = {**reference.__globals__, reference.__name__: fn, "np": np, "math": math}
    for example in examples:
        source = example.source.strip()
        try:
            code = compile(example.source, "<example>", "eval")
        except SyntaxError:  # a statement, e.g. an assignment that later examples use
            exec(compile(example.source, "<example>", "exec"), globs)
            continue
        got = repr(eval(code, globs))
        want = example.want.strip()
        if got == want:
            continue
        if want in {"True", "False"}:
            node = ast.parse(example.source, mode="eval").body
            message = _compare_message(source, node, globs)
            if message:
                raise AssertionError(message)
        raise AssertionError(f"docstring example {source!r}: got {got}, want {want}")


def _nonfinite(x: np.ndarray) -> str:
    parts = [f"{int(n)} {name}" for name, n in
             (("NaN", np.isnan(x).sum()), ("+inf", np.isposinf(x).sum()),
              ("-inf", np.isneginf(x).sum())) if n]
    return ", ".join(parts) or "no NaN or inf"


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def difference(got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """Why ``got`` is not close to ``want`` (same shape assumed), or None when it is.

    NaN and infinities are compared first and reported by count and first position: a NaN is
    never replaced by a number before measuring.
    """
    g, w = _as_array(got), _as_array(want)
    if g.dtype == bool or w.dtype == bool:
        bad = np.argwhere(g != w)
        return None if not len(bad) else f"wrong entries at {[tuple(map(int, b)) for b in bad[:3]]}"
    g, w = g.astype(np.float64), w.astype(np.float64)
    same_special = (np.isnan(g) & np.isnan(w)) | ((g == w) & np.isinf(w))
    special = ~np.isfinite(g) | ~np.isfinite(w)
    wrong_special = special & ~same_special
    if wrong_special.any():
        where = tuple(int(i) for i in np.argwhere(wrong_special)[0])
        return (f"your result has {_nonfinite(g)} where the expected has {_nonfinite(w)} "
                f"(first mismatch at index {where}: got {g[where]!r}, want {w[where]!r})")
    finite = ~special
    with np.errstate(invalid="ignore"):
        err = np.abs(g - w)
    bad = finite & (err > atol + rtol * np.abs(w))
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"largest difference {float(err[finite].max()):.3g} "
            f"(first at index {where}: got {g[where]!r}, want {w[where]!r})")


def assert_close(got: Any, want: Any, what: str, rtol: float = 1e-9, atol: float = 1e-9,
                 check_dtype: bool = True) -> None:
    """Assert a tensor or array result matches ``want``: type, shape, dtype, then values."""
    if hasattr(want, "detach"):
        assert hasattr(got, "detach"), f"{what}: return a tensor, got {type(got).__name__}"
        if check_dtype:
            assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, want {want.dtype}"
    got_shape, want_shape = tuple(np.shape(_as_array(got))), tuple(np.shape(_as_array(want)))
    assert got_shape == want_shape, f"{what}: shape {got_shape}, want {want_shape}"
    message = difference(got, want, rtol, atol)
    assert message is None, f"{what}: {message}"


def close(got: float, want: float, what: str, rel: float = 1e-9) -> None:
    """Assert two floats agree to a relative tolerance, with a message for the student."""
    ok = math.isclose(got, want, rel_tol=rel, abs_tol=1e-12)
    assert ok, f"{what}: got {got!r}, want {want!r}"


def expect_raises(error: type[BaseException], fn: Callable[..., Any], what: str, *args: Any,
                  **kwargs: Any) -> None:
    """Assert that ``fn(*args, **kwargs)`` raises ``error``; the docstring must say so.

    Every call is recorded in :data:`EXPECTED_ERRORS`. ``NotImplementedError`` (the untouched
    stub) passes through; any other exception is reported as the wrong one.
    """
    EXPECTED_ERRORS.append((error.__name__, what))
    try:
        result = fn(*args, **kwargs)
    except error:
        return
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{what}: raise a {error.__name__} (the docstring says when); "
            f"got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(
        f"{what}: raise a {error.__name__} (the docstring says when); "
        f"your function returned {_short(result, 80)}"
    )


def expect_value_error(fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> None:
    """Assert that ``fn(*args, **kwargs)`` rejects its input with a ValueError."""
    expect_raises(ValueError, fn, what, *args, **kwargs)
