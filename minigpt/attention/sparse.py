"""Sparse attention patterns as boolean masks, and GPT-3's alternating dense and banded layers.

Dense causal attention lets query ``i`` see every key ``j <= i``: ``T (T + 1) / 2`` pairs, a cost
quadratic in the context length.  The Sparse Transformer (Child et al. 2019) lets each head see a
fixed subset ``A_i`` of ``{j <= i}`` of size about ``sqrt(T)``, chosen so that two heads (or two
layers) in a row still connect every pair of positions through some intermediate position.
With stride ``l`` (about ``sqrt(T)``), the paper's patterns are:

* **strided**: ``A_i^(1) = {t, ..., i}`` with ``t = max(0, i - l)`` (the ``l`` previous positions
  and ``i`` itself) and ``A_i^(2) = {j : (i - j) mod l = 0}`` (every ``l``-th position back).
  Suited to data with a period, such as image rows.
* **fixed**: ``A_i^(1) = {j : floor(j / l) = floor(i / l)}`` (the block of ``l`` positions that
  holds ``i``) and ``A_i^(2) = {j : j mod l in {l - c, ..., l - 1}}`` (the last ``c`` positions
  of every block, "summary" cells that later positions can read).  Suited to text.

Both components are intersected with ``j <= i``: the model stays autoregressive.  A head may use
one component (the paper's interleaved heads) or their union (its "merged" head); the functions
return either.

**Locally banded** (a sliding window) is the simplest pattern: ``i - w < j <= i``, the ``w`` most
recent positions, ``i`` included.  GPT-3 (Brown et al. 2020, section 2.1) says: "we use
alternating dense and locally banded sparse attention patterns in the layers of the
transformer, similar to the Sparse Transformer".  The paper gives **no band width** and does not
say which layers are banded.  Here dense and banded layers alternate starting with a dense layer
0, and the default band is :data:`GPT3_BAND_WIDTH` ``= 256`` tokens, an eighth of GPT-3's 2048
context: the value EleutherAI chose for GPT-Neo, the open GPT-3 replication that implements this
exact alternation (its ``window_size``).  The Sparse Transformer's rule ``l ~ sqrt(T)`` would give
about 45; a wider band keeps each banded layer closer to dense attention on short-range text,
where most of the attention mass falls, while still cutting its cost by ``2048 / 256 = 8``.

Every mask here is a ``(t_q, t_k)`` boolean tensor, ``True`` where query ``i`` may attend to key
``j`` (the convention of ``torch.nn.functional.scaled_dot_product_attention``).  With ``t_k >
t_q`` the queries are the *last* ``t_q`` positions (query ``i`` sits at ``t_k - t_q + i``), which
is what decoding with a KV cache needs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.checks import check_int

__all__ = [
    "GPT3_BAND_WIDTH",
    "causal_mask",
    "fixed_mask",
    "fixed_masks",
    "gpt3_layer_mask",
    "gpt3_layer_windows",
    "local_mask",
    "mask_density",
    "strided_mask",
    "strided_masks",
]

#: Band width of GPT-3's locally banded layers used here (the paper gives none; see above).
GPT3_BAND_WIDTH = 256



def _query_key_positions(
    t_q: int, t_k: int | None, device: torch.device | str | None
) -> tuple[Tensor, Tensor]:
    """Absolute positions of queries ``(t_q, 1)`` and keys ``(1, t_k)``; queries are the last."""
    t_k = t_q if t_k is None else t_k
    check_int("t_q", t_q)
    check_int("t_k", t_k)
    i = torch.arange(t_k - t_q, t_k, device=device).view(-1, 1)
    j = torch.arange(t_k, device=device).view(1, -1)
    return i, j


def causal_mask(t_q: int, t_k: int | None = None, *, device=None) -> Tensor:
    """Dense causal mask ``j <= i``, shape ``(t_q, t_k)``.

    Query ``i`` sits at position ``t_k - t_q + i`` (the queries are the last ``t_q`` of the
    ``t_k`` positions; ``t_k`` defaults to ``t_q``) and may see key ``j`` when ``j`` is at or
    before that position: ``True`` means may attend. Raises ``ValueError`` if ``t_q`` or
    ``t_k`` is not an integer >= 1.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    >>> causal_mask(1, 4).int()  # one new query after three cached keys sees all four
    tensor([[1, 1, 1, 1]], dtype=torch.int32)
    """
    i, j = _query_key_positions(t_q, t_k, device)
    return j <= i


def local_mask(t_q: int, t_k: int | None = None, *, window: int, device=None) -> Tensor:
    """Locally banded (sliding window) causal mask ``i - window < j <= i``, ``(t_q, t_k)``.

    >>> local_mask(5, window=2).int()
    tensor([[1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1]], dtype=torch.int32)
    """
    check_int("window", window)
    i, j = _query_key_positions(t_q, t_k, device)
    return (j <= i) & (j > i - window)


def strided_masks(
    t_q: int, t_k: int | None = None, *, stride: int, device=None
) -> tuple[Tensor, Tensor]:
    """The two heads of strided attention: ``(A1, A2)``, each ``(t_q, t_k)``.

    ``A1``: ``max(0, i - stride) <= j <= i``; ``A2``: ``j <= i`` and ``(i - j) mod stride == 0``.
    """
    check_int("stride", stride)
    i, j = _query_key_positions(t_q, t_k, device)
    causal = j <= i
    return causal & (j >= i - stride), causal & ((i - j) % stride == 0)


def strided_mask(t_q: int, t_k: int | None = None, *, stride: int, device=None) -> Tensor:
    """Union of the two strided heads (one "merged" head), ``(t_q, t_k)``.

    >>> strided_mask(6, stride=2).int()
    tensor([[1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [1, 0, 1, 1, 1, 0],
            [0, 1, 0, 1, 1, 1]], dtype=torch.int32)
    """
    a1, a2 = strided_masks(t_q, t_k, stride=stride, device=device)
    return a1 | a2


def fixed_masks(
    t_q: int, t_k: int | None = None, *, stride: int, c: int = 1, device=None
) -> tuple[Tensor, Tensor]:
    """The two heads of fixed attention: ``(A1, A2)``, each ``(t_q, t_k)``.

    ``A1``: ``j <= i`` in the same block of ``stride`` positions as ``i``; ``A2``: ``j <= i`` and
    ``j`` among the last ``c`` positions of its block (``1 <= c <= stride``).
    """
    check_int("stride", stride)
    check_int("c", c)
    if c > stride:
        raise ValueError(f"c (summary positions per block) must be <= stride={stride}, got {c}")
    i, j = _query_key_positions(t_q, t_k, device)
    causal = j <= i
    return causal & (j // stride == i // stride), causal & (j % stride >= stride - c)


def fixed_mask(
    t_q: int, t_k: int | None = None, *, stride: int, c: int = 1, device=None
) -> Tensor:
    """Union of the two fixed heads, ``(t_q, t_k)``.

    >>> fixed_mask(6, stride=3).int()
    tensor([[1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 1]], dtype=torch.int32)
    """
    a1, a2 = fixed_masks(t_q, t_k, stride=stride, c=c, device=device)
    return a1 | a2


def gpt3_layer_windows(n_layer: int, band_width: int = GPT3_BAND_WIDTH) -> list[int | None]:
    """Per-layer attention pattern: ``None`` (dense) for even layers, ``band_width`` for odd.

    Pass each entry as ``window=`` to :class:`minigpt.attention.MultiHeadAttention`.

    >>> gpt3_layer_windows(4)
    [None, 256, None, 256]
    """
    check_int("n_layer", n_layer)
    check_int("band_width", band_width)
    return [None if layer % 2 == 0 else band_width for layer in range(n_layer)]


def gpt3_layer_mask(
    layer: int, t_q: int, t_k: int | None = None, *, band_width: int = GPT3_BAND_WIDTH, device=None
) -> Tensor:
    """The ``(t_q, t_k)`` mask of GPT-3 block ``layer``: dense causal (even) or banded (odd)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"layer must be a non-negative integer, got {layer!r}")
    if layer % 2 == 0:
        return causal_mask(t_q, t_k, device=device)
    return local_mask(t_q, t_k, window=band_width, device=device)


def mask_density(mask: Tensor) -> float:
    """Fraction of the dense causal pairs that ``mask`` (a square ``(T, T)`` mask) keeps.

    >>> round(mask_density(local_mask(2048, window=256)), 3)
    0.234
    """
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask_density expects a square (T, T) mask, got {tuple(mask.shape)}")
    t = mask.shape[-1]
    return float(mask.sum()) / (t * (t + 1) / 2)
