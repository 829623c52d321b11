"""Where is each token? Four ways to tell attention about order.

Attention on its own is blind to order: permute the keys and values together and the output
does not change.  A language model must know that "dog bites man" is not "man bites dog", so
position enters somewhere:

* **Learned absolute** (GPT-1, GPT-2, GPT-3): a table of ``max_len`` trainable vectors, one per
  position, *added to the token embeddings* before the first block.  GPT-3's table has
  ``n_ctx = 2048`` rows, so it can never read a 2049th token.
* **Sinusoidal absolute** (Vaswani et al. 2017): the same addition, but the table is fixed,

      PE[p, 2i]     = sin(p / base^(2i/d))
      PE[p, 2i + 1] = cos(p / base^(2i/d)),        base = 10000,

  one sine/cosine pair per frequency, from one turn per ``2 pi`` positions down to one per
  ``2 pi base`` positions.  ``PE[p + k]`` is a fixed rotation of ``PE[p]`` in each pair.
* **Rotary (RoPE)** (Su et al. 2021; GPT-NeoX, LLaMA): nothing is added.  Inside attention,
  each pair of features of a query or key at position ``p`` is rotated by the angle
  ``p * theta_i``, ``theta_i = base^(-2i/d_head)``.  A rotation by ``m theta`` dotted with a
  rotation by ``n theta`` is a rotation by ``(m - n) theta``, so the score ``q_m . k_n`` depends
  on the positions only through their *distance* ``m - n``.
* **ALiBi** (Press et al. 2022): nothing is added or rotated; each head adds ``-slope * (i - j)``
  to the score of query ``i`` and key ``j``, a linear penalty on distance with one slope per
  head (a geometric sequence).  It is an additive attention mask.

The first two are modules the *model* uses at its input (:class:`LearnedPositionalEmbedding`,
:class:`SinusoidalPositionalEmbedding`); the last two act inside attention
(:class:`RotaryEmbedding`, :class:`ALiBi`) and are what
:class:`minigpt.attention.MultiHeadAttention` accepts as ``positions``.  All take an ``offset``:
with a KV cache, the new tokens sit after the ``offset`` tokens already seen.

RoPE pairs feature ``i`` with feature ``i + d_head/2`` ("rotate half", the GPT-NeoX and Hugging
Face LLaMA layout), not neighbours ``2i, 2i + 1`` as in the RoFormer paper; the two differ only
by a fixed permutation of the features of q and k, which leaves every score unchanged.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from minigpt.checks import check_int

__all__ = [
    "ALiBi",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionalEmbedding",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "check_span",
    "rope_cos_sin",
    "rotate_half",
    "sinusoidal_table",
]


def check_span(t: int, offset: int, max_len: int, who: str) -> None:
    """Raise ValueError unless positions ``offset .. offset + t - 1`` fit in a table of max_len."""
    if offset < 0:
        raise ValueError(f"{who}: offset must be >= 0, got {offset}")
    if offset + t > max_len:
        raise ValueError(
            f"{who}: positions {offset}..{offset + t - 1} do not fit in the position table of "
            f"max_len={max_len} (a KV cache of {offset} tokens plus {t} new ones); allowed: "
            f"offset + T <= {max_len}, or build it with a larger max_len"
        )



def _check_even(name: str, value: int) -> None:
    check_int(name, value)
    if value % 2:
        raise ValueError(f"{name} must be even (features are used in pairs), got {value}")


# ---------------------------------------------------------------------------------------------
# Absolute positions: added to the token embeddings


class LearnedPositionalEmbedding(nn.Module):
    """GPT's learned position table ``weight`` of shape ``(max_len, d_model)`` (GPT-2's ``wpe``).

    ``forward(t, offset)`` returns rows ``offset .. offset + t - 1``, shape ``(t, d_model)``, to be
    added to the token embeddings ``(B, t, d_model)``.  Initialized from N(0, 0.02^2), as
    Hugging Face's GPT-2.

    >>> pos = LearnedPositionalEmbedding(max_len=8, d_model=4)
    >>> pos(3, offset=5).shape
    torch.Size([3, 4])
    >>> pos(4, offset=5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: LearnedPositionalEmbedding: positions 5..8 do not fit in the position table ...
    """

    def __init__(self, max_len: int, d_model: int, *, device=None, dtype=None) -> None:
        super().__init__()
        check_int("max_len", max_len)
        check_int("d_model", d_model)
        self.max_len, self.d_model = max_len, d_model
        self.weight = nn.Parameter(torch.empty(max_len, d_model, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, t: int, offset: int = 0) -> Tensor:
        check_span(t, offset, self.max_len, type(self).__name__)
        return self.weight[offset : offset + t]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """Vaswani et al.'s fixed table, shape ``(max_len, d_model)``, float32.

    Column ``2i`` holds ``sin(p / base^(2i/d))`` and column ``2i + 1`` the matching cosine.

    >>> sinusoidal_table(3, 4)
    tensor([[ 0.0000,  1.0000,  0.0000,  1.0000],
            [ 0.8415,  0.5403,  0.0100,  0.9999],
            [ 0.9093, -0.4161,  0.0200,  0.9998]])
    """
    check_int("max_len", max_len)
    _check_even("d_model", d_model)
    pos = torch.arange(max_len, dtype=torch.float64)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    angles = torch.outer(pos, inv_freq)  # (max_len, d/2)
    pairs = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (max_len, d/2, 2)
    return rearrange(pairs, "p i two -> p (i two)").float()


class SinusoidalPositionalEmbedding(nn.Module):
    """The fixed table of :func:`sinusoidal_table` as a (non-trainable) buffer.

    ``forward(t, offset)`` returns shape ``(t, d_model)``, like :class:`LearnedPositionalEmbedding`.
    """

    def __init__(self, max_len: int, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.register_buffer("table", sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, t: int, offset: int = 0) -> Tensor:
        check_span(t, offset, self.max_len, type(self).__name__)
        return self.table[offset : offset + t]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


# ---------------------------------------------------------------------------------------------
# Rotary positions: rotate q and k inside attention


def rope_cos_sin(max_len: int, d_head: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the angles ``p * theta_i``, each of shape ``(max_len, d_head)``.

    ``theta_i = base^(-2i/d_head)`` for ``i < d_head/2``; each angle appears twice, at columns
    ``i`` and ``i + d_head/2``, the two features it rotates together.  Computed in float64.
    """
    check_int("max_len", max_len)
    _check_even("d_head", d_head)
    theta = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (d_head/2,)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), theta)
    angles = torch.cat([angles, angles], dim=-1)  # (max_len, d_head)
    return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last axis: a 90 degree turn per pair.

    >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor([-3., -4.,  1.,  2.])
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each feature pair ``(x_i, x_{i + D/2})`` of ``x`` by its angle.

    Args:
        x: queries or keys ``(B, H, T, D)`` (any leading axes).
        cos, sin: ``(T, D)`` from :func:`rope_cos_sin`, rows for the positions of ``x``.

    Returns:
        ``x * cos + rotate_half(x) * sin``, shape and dtype of ``x``.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE for heads of size ``d_head`` at positions ``0 .. max_len - 1``.

    ``forward(q, k, offset)`` rotates ``q (B, H, Tq, D)`` and ``k (B, Hkv, Tk, D)``, both
    holding positions ``offset, offset + 1, ...``; a KV cache stores keys already rotated.
    """

    def __init__(self, d_head: int, max_len: int = 2048, base: float = 10000.0) -> None:
        super().__init__()
        self.d_head, self.max_len, self.base = d_head, max_len, base
        cos, sin = rope_cos_sin(max_len, d_head, base)
        self.register_buffer("cos", cos, persistent=False)  # (max_len, d_head), float64
        self.register_buffer("sin", sin, persistent=False)

    def rotate(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate ``x (..., T, d_head)`` holding positions ``offset .. offset + T - 1``."""
        if x.shape[-1] != self.d_head:
            raise ValueError(
                f"RotaryEmbedding was built for d_head={self.d_head}, got tensor of shape "
                f"{tuple(x.shape)} (last axis must be {self.d_head})"
            )
        t = x.shape[-2]
        check_span(t, offset, self.max_len, type(self).__name__)
        return apply_rope(x, self.cos[offset : offset + t], self.sin[offset : offset + t])

    def forward(self, q: Tensor, k: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
        return self.rotate(q, offset), self.rotate(k, offset)

    def extra_repr(self) -> str:
        return f"d_head={self.d_head}, max_len={self.max_len}, base={self.base}"


# ---------------------------------------------------------------------------------------------
# ALiBi: a linear distance penalty per head


def alibi_slopes(n_heads: int) -> Tensor:
    """Press et al.'s head slopes, shape ``(n_heads,)``, float64.

    For ``n`` a power of two: ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``.  Otherwise the slopes of the
    next lower power of two ``m``, then every other slope of ``2m`` heads, as the paper's code.

    >>> alibi_slopes(4).tolist()
    [0.25, 0.0625, 0.015625, 0.00390625]
    """
    check_int("n_heads", n_heads)

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(m) + power_of_two(2 * m)[0::2][: n_heads - m]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(n_heads: int, t_q: int, t_k: int | None = None) -> Tensor:
    """Additive attention bias ``-slope_h * |i - j|``, shape ``(n_heads, t_q, t_k)``, float64.

    Query ``i`` sits at position ``t_k - t_q + i`` (the last ``t_q`` of ``t_k`` positions, as with
    a KV cache).  Only ``j <= i`` matters once the causal mask is applied.

    >>> alibi_bias(1, 3)[0]
    tensor([[ 0.0000, -0.0039, -0.0078],
            [-0.0039,  0.0000, -0.0039],
            [-0.0078, -0.0039,  0.0000]], dtype=torch.float64)
    """
    t_k = t_q if t_k is None else t_k
    i = torch.arange(t_k - t_q, t_k).view(-1, 1)
    j = torch.arange(t_k).view(1, -1)
    minus_distance = (-(i - j).abs()).to(torch.float64)  # (t_q, t_k), 0 on the diagonal
    return alibi_slopes(n_heads).view(-1, 1, 1) * minus_distance


class ALiBi(nn.Module):
    """ALiBi for ``n_heads`` heads: ``forward(t_q, t_k)`` is the ``(H, t_q, t_k)`` bias."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def forward(self, t_q: int, t_k: int | None = None) -> Tensor:
        return alibi_bias(self.n_heads, t_q, t_k).to(self.slopes.device)

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}"
