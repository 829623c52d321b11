"""Graders for chapter 4 (activation functions).

Each grader checks known values, then compares the student's function with torch (or with
minigpt's reference) on random inputs, and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from exercises.catalog import Exercise
from exercises.graders.common import difference, expect_value_error
from minigpt import activations

_HERE = "exercises.graders.ch04_activations"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import torch",
    "from torch import Tensor",
    "",
    "# you may use these:",
    "from minigpt.activations import GELU_TANH_COEFF, SQRT_2_OVER_PI, silu, split_halves, tanh",
)

EXERCISES = (
    Exercise(
        "4.1",
        "gelu_tanh",
        "minigpt.activations:gelu_tanh",
        f"{_HERE}:grade_gelu_tanh",
        "Write GELU in the tanh approximation that GPT-2 and GPT-3 use.",
    ),
    Exercise(
        "4.2",
        "gelu_tanh_grad",
        "minigpt.activations:gelu_tanh_grad",
        f"{_HERE}:grade_gelu_tanh_grad",
        "Differentiate the tanh-approximated GELU by hand.",
    ),
    Exercise(
        "4.3",
        "swiglu",
        "minigpt.activations:swiglu",
        f"{_HERE}:grade_swiglu",
        "Write SwiGLU: split the input into value and gate halves, gate with SiLU.",
    ),
)


def _random_inputs(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(3, 7, generator=gen, dtype=torch.float64) * scale
        for scale in (0.1, 1.0, 3.0, 10.0)
    ]


def _assert_close(got: Any, want: torch.Tensor, what: str, tol: float = 1e-10) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, want {want.dtype} (keep x's)"
    message = difference(got, want, tol, tol)
    assert message is None, f"{what}: {message}"


def grade_gelu_tanh(fn: Callable[..., Any]) -> None:
    x = torch.tensor([0.0, 1.0, -1.0, 3.0], dtype=torch.float64)
    _assert_close(fn(x), F.gelu(x, approximate="tanh"), "gelu_tanh at 0, 1, -1, 3")
    assert float(fn(torch.tensor([0.0], dtype=torch.float64))) == 0.0, "GELU(0) is exactly 0"
    for x in _random_inputs(0):
        _assert_close(fn(x), F.gelu(x, approximate="tanh"),
                      "gelu_tanh differs from F.gelu(x, approximate='tanh')")
    big = torch.tensor([-50.0, 50.0], dtype=torch.float64)
    _assert_close(fn(big), torch.tensor([0.0, 50.0], dtype=torch.float64),
                  "far from 0 GELU is 0 on the left and x on the right")


def grade_gelu_tanh_grad(fn: Callable[..., Any]) -> None:
    x = torch.tensor([0.0], dtype=torch.float64)
    _assert_close(fn(x), torch.tensor([0.5], dtype=torch.float64), "the slope at 0 is 1/2")
    for x in _random_inputs(1):
        leaf = x.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(F.gelu(leaf, approximate="tanh").sum(), leaf)
        _assert_close(fn(x), want, "gelu_tanh_grad differs from autograd on F.gelu(tanh)",
                      tol=1e-9)


def grade_swiglu(fn: Callable[..., Any]) -> None:
    a = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    want = a * F.silu(b)
    _assert_close(fn(torch.cat([a, b], dim=-1)), want,
                  "swiglu([a, b]) must be a * silu(b), value half first, gate half second")
    for x in _random_inputs(2):
        x = torch.cat([x, x.flip(0)], dim=-1)  # (3, 14)
        value, gate = x.chunk(2, dim=-1)
        _assert_close(fn(x), value * F.silu(gate), "swiglu on a random (3, 14) input")
    rows = torch.cat(_random_inputs(3)[:2], dim=0)  # (6, 7): split along dim 0
    value, gate = rows.chunk(2, dim=0)
    _assert_close(fn(rows, dim=0), value * F.silu(gate), "swiglu(x, dim=0) splits the rows")
    expect_value_error(fn, "an odd size (5) cannot be split in halves", torch.zeros(2, 5))


def _gelu_tanh_wrong_constant(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.44715 * x**3)))


def _gelu_tanh_grad_no_product_rule(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t)


def _gelu_tanh_grad_no_chain_rule(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t)


def _swiglu_swapped(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    value, gate = activations.split_halves(x, dim)
    return gate * F.silu(value)


def _swiglu_sigmoid(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    value, gate = activations.split_halves(x, dim)
    return value * torch.sigmoid(gate)


def _swiglu_ignores_dim(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    value, gate = activations.split_halves(x, -1)
    return value * F.silu(gate)


# Plausible wrong answers: CI checks that each grader rejects them.
MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "gelu_tanh": [
        _gelu_tanh_wrong_constant,
        lambda x: F.gelu(x),  # the exact erf form, not the tanh approximation
        lambda x: x * torch.sigmoid(1.702 * x),  # another approximation
    ],
    "gelu_tanh_grad": [_gelu_tanh_grad_no_product_rule, _gelu_tanh_grad_no_chain_rule],
    "swiglu": [_swiglu_swapped, _swiglu_sigmoid, _swiglu_ignores_dim],
}
