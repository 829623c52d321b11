"""Activation functions and the transformer feed-forward block, written from their formulas.

A transformer block is attention followed by a position-wise feed-forward network (FFN):
every token's vector of size ``d_model`` is sent through the same two-layer MLP,

    FFN(x) = W2 f(W1 x + b1) + b2,        W1: (d_hidden, d_model), W2: (d_model, d_hidden),

with ``d_hidden = 4 d_model`` in GPT-2 and GPT-3 and ``f`` a nonlinearity. Without ``f`` the two
matrices would collapse into one linear map; the nonlinearity is what makes the block an MLP.

Elementwise activations (each ``fn(x)`` has an analytic derivative ``fn_grad(x)``):

* ReLU          ``max(0, x)``                                   (the original transformer)
* leaky ReLU    ``x if x > 0 else a x``
* sigmoid       ``1 / (1 + exp(-x))``
* tanh          ``(exp(x) - exp(-x)) / (exp(x) + exp(-x))``
* GELU          ``x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``      (BERT, GPT-2, GPT-3)
* GELU (tanh)   ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, the approximation that
  GPT-2's code uses and GPT-3 inherited
* SiLU / Swish  ``x sigmoid(beta x)``, ``beta = 1`` gives SiLU

Gated linear units (Dauphin et al. 2017; Shazeer 2020, "GLU Variants Improve Transformer")
replace ``f(W1 x)`` by an elementwise product of two projections, one of them passed through an
activation, the *gate*:  ``(W1 x) * f(W3 x)``.  With ``f`` = sigmoid, identity, ReLU, GELU or
SiLU this is GLU, bilinear, ReGLU, GEGLU or SwiGLU.  SwiGLU is the FFN of PaLM and LLaMA.
A gated FFN has three matrices instead of two, so to keep the parameter count equal the hidden
size shrinks by 2/3: ``d_hidden = 2/3 * 4 d_model`` (see :func:`matched_hidden_size`).

Every function here is a plain function on tensors built from ``torch.exp``, ``torch.erf`` and
arithmetic, so autograd can differentiate it and the tests can compare it with
``torch.nn.functional``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "GATED_ACTIVATIONS",
    "Activation",
    "FeedForward",
    "bilinear",
    "feed_forward_activations",
    "geglu",
    "gelu",
    "gelu_grad",
    "gelu_tanh",
    "gelu_tanh_grad",
    "glu",
    "leaky_relu",
    "leaky_relu_grad",
    "matched_hidden_size",
    "reglu",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "silu",
    "silu_grad",
    "split_halves",
    "swiglu",
    "swish",
    "swish_grad",
    "tanh",
    "tanh_grad",
]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_COEFF = 0.044715
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Elementwise activations and their derivatives.  All map a tensor of any shape to one of the
# same shape.  At a kink (ReLU at 0) the derivative is the one torch's autograd uses.
# ---------------------------------------------------------------------------------------------


def _abs_via_where(x: Tensor) -> Tensor:
    """|x| written as a ``where``, so autograd at 0 takes the right-hand slope (+1), not 0."""
    return torch.where(x >= 0, x, -x)


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(0, x).  Shape: any -> same."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def relu_grad(x: Tensor) -> Tensor:
    """d ReLU / dx = 1 if x > 0 else 0 (0 at x = 0, as autograd).  Shape: any -> same."""
    return (x > 0).to(x.dtype)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU(x) = x if x > 0 else negative_slope * x.  Shape: any -> same."""
    return torch.where(x > 0, x, negative_slope * x)


def leaky_relu_grad(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """d leaky ReLU / dx = 1 if x > 0 else negative_slope.  Shape: any -> same."""
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))


def sigmoid(x: Tensor) -> Tensor:
    """sigmoid(x) = 1 / (1 + exp(-x)).  Shape: any -> same.

    Computed as ``1 / (1 + z)`` for x >= 0 and ``z / (1 + z)`` for x < 0 with
    ``z = exp(-|x|) <= 1``, the same function written so that ``exp`` never overflows.
    """
    z = torch.exp(-_abs_via_where(x))
    return torch.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def sigmoid_grad(x: Tensor) -> Tensor:
    """d sigmoid / dx = sigmoid(x) (1 - sigmoid(x)).  Shape: any -> same."""
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x: Tensor) -> Tensor:
    """tanh(x) = (1 - exp(-2x)) / (1 + exp(-2x)).  Shape: any -> same.

    Evaluated at |x| with ``expm1`` (so tiny x keep full relative precision and nothing
    overflows), then given the sign of x: tanh is odd.
    """
    m = torch.expm1(-2.0 * _abs_via_where(x))  # exp(-2|x|) - 1, in (-1, 0]
    t = -m / (2.0 + m)
    return torch.where(x >= 0, t, -t)


def tanh_grad(x: Tensor) -> Tensor:
    """d tanh / dx = 1 - tanh(x)^2.  Shape: any -> same."""
    return 1.0 - tanh(x) ** 2


def _normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) = P(Z <= x) for Z ~ N(0, 1) = 0.5 (1 + erf(x / sqrt 2))."""
    return 0.5 * (1.0 + torch.erf(x * INV_SQRT_2))


def _normal_pdf(x: Tensor) -> Tensor:
    """phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
    return torch.exp(-0.5 * x * x) * INV_SQRT_2PI


def gelu(x: Tensor) -> Tensor:
    """GELU(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form.  Shape: any -> same.

    Hendrycks & Gimpel (2016): weight the input by the probability that a standard normal
    variable is below it, a smooth ReLU that dips slightly below 0 for negative x.
    """
    return x * _normal_cdf(x)


def gelu_grad(x: Tensor) -> Tensor:
    """d GELU / dx = Phi(x) + x phi(x).  Shape: any -> same."""
    return _normal_cdf(x) + x * _normal_pdf(x)


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    The form in GPT-2's code (``gelu`` in ``model.py``), used again by GPT-3; it agrees with
    :func:`gelu` to about 5e-4 everywhere.  Shape: any -> same.
    """
    u = SQRT_2_OVER_PI * (x + GELU_TANH_COEFF * x**3)
    return 0.5 * x * (1.0 + tanh(u))


def gelu_tanh_grad(x: Tensor) -> Tensor:
    """d/dx of :func:`gelu_tanh`.  Shape: any -> same.

    With u = sqrt(2/pi) (x + 0.044715 x^3) and t = tanh(u), the product and chain rules give
    ``0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.
    """
    t = tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFF * x**3))
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEFF * x**2)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx


def swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """Swish_beta(x) = x sigmoid(beta x) (Ramachandran et al. 2017).  Shape: any -> same."""
    return x * sigmoid(beta * x)


def swish_grad(x: Tensor, beta: float = 1.0) -> Tensor:
    """d Swish_beta / dx = s + beta x s (1 - s) with s = sigmoid(beta x).  Shape: any -> same."""
    s = sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


def silu(x: Tensor) -> Tensor:
    """SiLU(x) = x sigmoid(x), Swish with beta = 1.  Shape: any -> same."""
    return x * sigmoid(x)


def silu_grad(x: Tensor) -> Tensor:
    """d SiLU / dx = s (1 + x (1 - s)) with s = sigmoid(x).  Shape: any -> same."""
    s = sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


class Activation(NamedTuple):
    """An activation and its analytic derivative; unpacks as ``fn, grad = ACTIVATIONS[name]``."""

    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(relu, relu_grad),
    "leaky_relu": Activation(leaky_relu, leaky_relu_grad),
    "sigmoid": Activation(sigmoid, sigmoid_grad),
    "tanh": Activation(tanh, tanh_grad),
    "gelu": Activation(gelu, gelu_grad),
    "gelu_tanh": Activation(gelu_tanh, gelu_tanh_grad),
    "silu": Activation(silu, silu_grad),
}
"""name -> (fn, derivative) for every elementwise activation (leaky ReLU with slope 0.01)."""


# ---------------------------------------------------------------------------------------------
# Gated linear units on a split input: x = [a, b] along ``dim``, result a * f(b).
# The convention (value first, gate second) is that of torch.nn.functional.glu.
# ---------------------------------------------------------------------------------------------


def split_halves(x: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """Split x into (value, gate) halves along ``dim``.  Shape: (..., 2h) -> two of (..., h).

    Raises:
        ValueError: if the size along ``dim`` is odd.
    """
    size = x.shape[dim]
    if size % 2 != 0:
        raise ValueError(
            f"GLU-family activations split dim {dim} into two equal halves, so its size must be "
            f"even; got size {size} (input shape {tuple(x.shape)})"
        )
    value, gate = x.chunk(2, dim=dim)
    return value, gate


def _gated(x: Tensor, gate_fn: Callable[[Tensor], Tensor], dim: int) -> Tensor:
    value, gate = split_halves(x, dim)
    return value * gate_fn(gate)


def glu(x: Tensor, dim: int = -1) -> Tensor:
    """GLU([a, b]) = a * sigmoid(b) (Dauphin et al. 2017).  Shape: (..., 2h) -> (..., h)."""
    return _gated(x, sigmoid, dim)


def bilinear(x: Tensor, dim: int = -1) -> Tensor:
    """Bilinear([a, b]) = a * b, a GLU without nonlinearity.  Shape: (..., 2h) -> (..., h)."""
    return _gated(x, lambda b: b, dim)


def reglu(x: Tensor, dim: int = -1) -> Tensor:
    """ReGLU([a, b]) = a * ReLU(b).  Shape: (..., 2h) -> (..., h)."""
    return _gated(x, relu, dim)


def geglu(x: Tensor, dim: int = -1) -> Tensor:
    """GEGLU([a, b]) = a * GELU(b) (exact GELU).  Shape: (..., 2h) -> (..., h)."""
    return _gated(x, gelu, dim)


def swiglu(x: Tensor, dim: int = -1) -> Tensor:
    """SwiGLU([a, b]) = a * SiLU(b), the FFN of PaLM and LLaMA.  Shape: (..., 2h) -> (..., h).

    The last (or ``dim``) axis holds the value half ``a`` first and the gate half ``b`` second,
    as in ``torch.nn.functional.glu``; use :func:`split_halves`, which raises a ValueError when
    that size is odd, and :func:`silu`.
    """
    value, gate = split_halves(x, dim)
    return value * silu(gate)


GATED_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "glu": sigmoid,
    "bilinear": lambda b: b,
    "reglu": relu,
    "geglu": gelu,
    "swiglu": silu,
}
"""gated variant name -> the activation applied to its gate half."""


def feed_forward_activations() -> list[str]:
    """All names :class:`FeedForward` accepts: elementwise ones, then gated ones."""
    return [*ACTIVATIONS, *GATED_ACTIVATIONS]


# ---------------------------------------------------------------------------------------------
# The feed-forward block.
# ---------------------------------------------------------------------------------------------


def matched_hidden_size(d_model: int, gated: bool, multiple_of: int = 1, expansion: int = 4) -> int:
    """Hidden size that gives an FFN about the parameter count of the usual 4x MLP.

    Ungated: ``expansion * d_model`` (two matrices, ``2 * 4 d^2`` weights).  Gated: three
    matrices share that budget, so ``int(2/3 * expansion * d_model)`` rounded up to a multiple
    of ``multiple_of``, as in LLaMA's code (which uses ``multiple_of=256``).

    Example: d_model = 768 gives 3072 ungated and 2048 gated.
    """
    if d_model <= 0 or multiple_of <= 0 or expansion <= 0:
        raise ValueError(
            "d_model, multiple_of and expansion must be positive; got "
            f"d_model={d_model}, multiple_of={multiple_of}, expansion={expansion}"
        )
    hidden = expansion * d_model
    if not gated:
        return hidden
    hidden = int(2 * hidden / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class FeedForward(nn.Module):
    """Position-wise feed-forward block.  Input (..., d_model) -> output (..., d_model).

    Ungated (``activation`` in :data:`ACTIVATIONS`, GPT-2/3 use "gelu_tanh")::

        y = dropout(w2(f(w1(x))))

    Gated (``activation`` in :data:`GATED_ACTIVATIONS`, e.g. "swiglu")::

        y = dropout(w2(w1(x) * f(w3(x))))

    ``w3`` is the gate projection: its output goes through ``f``.  This equals
    ``w2(swiglu(cat([w1(x), w3(x)], -1)))`` with :func:`swiglu`.  (Meta's LLaMA code writes
    ``w2(silu(w1(x)) * w3(x))``: the same model with the names w1 and w3 swapped.)

    Args:
        d_model: size of each token vector.
        d_hidden: hidden size; see :func:`matched_hidden_size` for a fair comparison.
        activation: a name from :func:`feed_forward_activations`.
        bias: whether the linear layers have biases (GPT-2/3: yes; LLaMA: no).
        dropout: dropout probability on the output (GPT-2's residual dropout).
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        allowed = feed_forward_activations()
        if activation not in allowed:
            raise ValueError(f"unknown activation {activation!r}; allowed values: {allowed}")
        self.activation = activation
        self.gated = activation in GATED_ACTIVATIONS
        self.w1 = nn.Linear(d_model, d_hidden, bias=bias)
        self.w3 = nn.Linear(d_model, d_hidden, bias=bias) if self.gated else None
        self.w2 = nn.Linear(d_hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def hidden(self, x: Tensor) -> Tensor:
        """The hidden activations.  Shape: (..., d_model) -> (..., d_hidden)."""
        if self.w3 is None:
            return ACTIVATIONS[self.activation].fn(self.w1(x))
        return self.w1(x) * GATED_ACTIVATIONS[self.activation](self.w3(x))

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (..., d_model) -> (..., d_model)."""
        return self.dropout(self.w2(self.hidden(x)))
