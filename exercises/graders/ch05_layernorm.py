"""Graders for chapter 5 (layer normalization).

Each grader checks a known case, then compares the student's function with torch
(``F.layer_norm``, ``F.rms_norm`` and autograd) on random inputs, and raises AssertionError
with a hint if they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from exercises.catalog import Exercise
from exercises.graders.common import difference, expect_value_error
from minigpt import layernorm
from minigpt.layernorm import LayerNormCache, RMSNormCache

_HERE = "exercises.graders.ch05_layernorm"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import torch",
    "from torch import Tensor",
    "",
    "# you may use these:",
    "from minigpt.layernorm import LayerNormCache, RMSNormCache, ShapeLike",
)

EXERCISES = (
    Exercise(
        "5.1",
        "layer_norm",
        "minigpt.layernorm:layer_norm",
        f"{_HERE}:grade_layer_norm",
        "Normalize each vector over its features, then scale and shift it.",
    ),
    Exercise(
        "5.2",
        "layer_norm_backward",
        "minigpt.layernorm:layer_norm_backward",
        f"{_HERE}:grade_layer_norm_backward",
        "Derive and write the backward pass of LayerNorm.",
    ),
    Exercise(
        "5.3",
        "rms_norm",
        "minigpt.layernorm:rms_norm",
        f"{_HERE}:grade_rms_norm",
        "Write RMSNorm: divide by the root mean square, no mean, no bias.",
    ),
)

# (input shape, normalized shape): one trailing dim, two trailing dims, a single vector
_CASES = [((4, 6), (6,)), ((2, 3, 5), (5,)), ((3, 4, 5), (4, 5)), ((7,), (7,))]


def _random(shape: tuple[int, ...], gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def _close(got: Any, want: torch.Tensor, what: str, tol: float = 1e-9) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    message = difference(got, want, tol, tol)
    assert message is None, f"{what}: {message}"


def grade_layer_norm(fn: Callable[..., Any]) -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)
    y, cache = fn(x, None, None, 0.0, normalized_shape=4)
    _close(y, (x - 3.0) / 3.5**0.5, "layer_norm([1, 2, 3, 6]) with eps = 0; the variance is the"
           " biased one, mean((x - mu)^2) = 3.5")
    gen = torch.Generator().manual_seed(0)
    for shape, norm_shape in _CASES:
        x = _random(shape, gen, scale=3.0) + 2.0
        w, b = _random(norm_shape, gen), _random(norm_shape, gen)
        for weight, bias in [(w, b), (w, None), (None, None)]:
            y, cache = fn(x, weight, bias, 1e-5, normalized_shape=norm_shape)
            want = F.layer_norm(x, norm_shape, weight, bias, 1e-5)
            what = f"layer_norm on shape {shape} over {norm_shape}"
            _close(y, want, what + f" (weight {'given' if weight is not None else 'None'}, "
                   f"bias {'given' if bias is not None else 'None'})")
            assert isinstance(cache, LayerNormCache), "return (y, LayerNormCache(...)) as second"
            _close(cache.xhat, F.layer_norm(x, norm_shape, eps=1e-5), "cache.xhat")
            dy = _random(shape, gen)
            dx = layernorm.layer_norm_backward(dy, cache)[0]
            leaf = x.clone().requires_grad_(True)
            (want_dx,) = torch.autograd.grad(
                F.layer_norm(leaf, norm_shape, weight, bias, 1e-5), leaf, dy
            )
            _close(dx, want_dx, "the backward pass from your cache (check rstd, keepdim shape)")
    expect_value_error(fn, "x of shape (2, 5) with weight of shape (4,)", torch.zeros(2, 5),
                       torch.ones(4), None)


def _autograd_layer_norm(x, dy, norm_shape, weight, bias):  # noqa: ANN001, ANN202
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (x, weight, bias)]
    out = F.layer_norm(leaves[0], norm_shape, leaves[1], leaves[2], 1e-5)
    inputs = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, inputs, dy)
    it = iter(grads)
    return [next(it) if t is not None else None for t in leaves]


def grade_layer_norm_backward(fn: Callable[..., Any]) -> None:
    gen = torch.Generator().manual_seed(1)
    for shape, norm_shape in _CASES:
        x = _random(shape, gen, scale=2.0) - 1.0
        w, b = _random(norm_shape, gen), _random(norm_shape, gen)
        for weight, bias in [(w, b), (w, None), (None, None)]:
            _, cache = layernorm.layer_norm(x, weight, bias, 1e-5, normalized_shape=norm_shape)
            dy = _random(shape, gen)
            got = fn(dy, cache)
            want = _autograd_layer_norm(x, dy, norm_shape, weight, bias)
            where = f"input {shape} over {norm_shape}"
            assert len(got) == 3, "return the three gradients (dx, dweight, dbias)"
            _close(got[0], want[0], f"dx ({where})")
            for name, g, wnt in [("dweight", got[1], want[1]), ("dbias", got[2], want[2])]:
                if wnt is None:
                    assert g is None, f"{name} must be None when the forward had none ({where})"
                else:
                    _close(g, wnt, f"{name}, summed over every batch position ({where})")


def grade_rms_norm(fn: Callable[..., Any]) -> None:
    x = torch.tensor([[3.0, -4.0]], dtype=torch.float64)  # rms = sqrt(12.5)
    y, _ = fn(x, None, 0.0, normalized_shape=2)
    _close(y, x / 12.5**0.5, "rms_norm([3, -4]) with eps = 0 divides by sqrt((9 + 16) / 2)")
    gen = torch.Generator().manual_seed(2)
    for shape, norm_shape in _CASES:
        x = _random(shape, gen, scale=3.0) + 1.0
        w = _random(norm_shape, gen)
        for weight, eps in [(w, 1e-6), (None, 1e-6), (w, None)]:
            y, cache = fn(x, weight, eps, normalized_shape=norm_shape)
            want = F.rms_norm(x, norm_shape, weight, eps)
            _close(y, want, f"rms_norm on {shape} over {norm_shape}, eps={eps}")
            assert isinstance(cache, RMSNormCache), "return (y, RMSNormCache(...)) as second"
            dy = _random(shape, gen)
            dx = layernorm.rms_norm_backward(dy, cache)[0]
            leaf = x.clone().requires_grad_(True)
            (want_dx,) = torch.autograd.grad(F.rms_norm(leaf, norm_shape, weight, eps), leaf, dy)
            _close(dx, want_dx, "the backward pass from your cache (check rrms and xhat)")


# Plausible wrong answers: CI checks that each grader rejects them.
def _ln_unbiased(x, weight, bias=None, eps=1e-5, *, normalized_shape=None):  # noqa: ANN001, ANN202
    shape = layernorm._resolve_shape(weight, normalized_shape, "layer_norm")
    dims = layernorm._feature_dims(len(shape))
    mu = x.mean(dim=dims, keepdim=True)
    rstd = torch.rsqrt(x.var(dim=dims, keepdim=True, unbiased=True) + eps)
    xhat = (x - mu) * rstd
    y = xhat if weight is None else xhat * weight
    y = y if bias is None else y + bias
    return y, LayerNormCache(xhat, rstd, weight, bias is not None, len(shape))


def _ln_eps_outside(x, weight, bias=None, eps=1e-5, *, normalized_shape=None):  # noqa: ANN001, ANN202
    shape = layernorm._resolve_shape(weight, normalized_shape, "layer_norm")
    dims = layernorm._feature_dims(len(shape))
    mu = x.mean(dim=dims, keepdim=True)
    rstd = 1.0 / (((x - mu) ** 2).mean(dim=dims, keepdim=True).sqrt() + eps)
    xhat = (x - mu) * rstd
    y = xhat if weight is None else xhat * weight
    y = y if bias is None else y + bias
    return y, LayerNormCache(xhat, rstd, weight, bias is not None, len(shape))


def _ln_last_dim_only(x, weight, bias=None, eps=1e-5, *, normalized_shape=None):  # noqa: ANN001, ANN202
    shape = layernorm._resolve_shape(weight, normalized_shape, "layer_norm")
    mu = x.mean(dim=-1, keepdim=True)
    rstd = torch.rsqrt(((x - mu) ** 2).mean(dim=-1, keepdim=True) + eps)
    xhat = (x - mu) * rstd
    y = xhat if weight is None else xhat * weight
    y = y if bias is None else y + bias
    return y, LayerNormCache(xhat, rstd, weight, bias is not None, len(shape))


def _ln_over_batch(x, weight, bias=None, eps=1e-5, *, normalized_shape=None):  # noqa: ANN001, ANN202
    shape = layernorm._resolve_shape(weight, normalized_shape, "layer_norm")
    mu = x.mean(dim=0, keepdim=True)  # BatchNorm's axis, not LayerNorm's
    rstd = torch.rsqrt(((x - mu) ** 2).mean(dim=0, keepdim=True) + eps)
    xhat = (x - mu) * rstd
    y = xhat if weight is None else xhat * weight
    y = y if bias is None else y + bias
    return y, LayerNormCache(xhat, rstd, weight, bias is not None, len(shape))


def _backward_no_mean_term(dy, cache):  # noqa: ANN001, ANN202
    xhat, rstd, weight, has_bias, k = cache
    dims = layernorm._feature_dims(k)
    dxhat = dy if weight is None else dy * weight
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(dim=dims, keepdim=True))
    dw = layernorm._sum_over_batch(dy * xhat, k) if weight is not None else None
    db = layernorm._sum_over_batch(dy, k) if has_bias else None
    return dx, dw, db


def _backward_naive(dy, cache):  # noqa: ANN001, ANN202 - treats mu and sigma as constants
    xhat, rstd, weight, has_bias, k = cache
    dxhat = dy if weight is None else dy * weight
    dw = layernorm._sum_over_batch(dy * xhat, k) if weight is not None else None
    db = layernorm._sum_over_batch(dy, k) if has_bias else None
    return rstd * dxhat, dw, db


def _backward_forgets_weight(dy, cache):  # noqa: ANN001, ANN202
    xhat, rstd, weight, has_bias, k = cache
    dims = layernorm._feature_dims(k)
    dx = rstd * (dy - dy.mean(dim=dims, keepdim=True)
                 - xhat * (dy * xhat).mean(dim=dims, keepdim=True))
    dw = layernorm._sum_over_batch(dy * xhat, k) if weight is not None else None
    db = layernorm._sum_over_batch(dy, k) if has_bias else None
    return dx, dw, db


def _rms_subtracts_mean(x, weight, eps=None, *, normalized_shape=None):  # noqa: ANN001, ANN202
    y, cache = layernorm.layer_norm(x, weight, None, eps or 1e-6, normalized_shape=normalized_shape)
    return y, RMSNormCache(cache.xhat, cache.rstd, weight, cache.k)


def _rms_uses_sum(x, weight, eps=None, *, normalized_shape=None):  # noqa: ANN001, ANN202
    shape = layernorm._resolve_shape(weight, normalized_shape, "rms_norm")
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    rrms = torch.rsqrt((x * x).sum(dim=layernorm._feature_dims(len(shape)), keepdim=True) + eps)
    xhat = x * rrms
    return (xhat if weight is None else xhat * weight), RMSNormCache(xhat, rrms, weight, len(shape))


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "layer_norm": [_ln_unbiased, _ln_eps_outside, _ln_last_dim_only, _ln_over_batch],
    "layer_norm_backward": [_backward_no_mean_term, _backward_naive, _backward_forgets_weight],
    "rms_norm": [_rms_subtracts_mean, _rms_uses_sum],
}
