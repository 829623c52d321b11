"""FlexAttention: causal and locally banded attention at fused-kernel speed, from a mask rule.

PyTorch's ``torch.nn.attention.flex_attention`` (He et al. 2024) takes the *rule* that decides
whether query ``i`` may see key ``j``, a ``mask_mod(b, h, q_idx, kv_idx) -> bool``, and
``torch.compile`` turns it into one FlashAttention-style kernel. Before that, the rule is
evaluated once per ``128 x 128`` tile by ``create_block_mask``: a tile is **empty** (skipped
entirely), **full** (no mask needed inside) or **partial** (the rule is applied element by
element). For a locally banded layer of width ``w`` at context ``T`` only about ``T / 128 * (w /
128 + 1)`` tiles are computed instead of the ``(T / 128)^2 / 2`` of dense causal attention, so
GPT-3's banded layers (:mod:`minigpt.attention.sparse`) become cheaper than dense ones, which an
SDPA call with an explicit ``(T, T)`` mask cannot do: the mask must be read in full and rules
out the FlashAttention kernel.

The two rules used here (queries are the *last* ``Tq`` of ``Tk`` positions, "bottom-right"
alignment, as everywhere in :mod:`minigpt.attention`: query ``i`` sits at ``Tk - Tq + i``)::

    causal:  j <= i                 banded (window w):  i - w < j <= i

A block mask depends only on ``(Tq, Tk, window, device)``, so :func:`block_mask` caches it: a
training run builds two (dense and banded) and reuses them at every step and layer.

``flex_attention`` itself is imported lazily (importing minigpt stays light) and compiled with
``torch.compile`` on CUDA. On a CPU it runs **eagerly** by default: PyTorch then evaluates the
same rule on the full score matrix (exact, but with naive attention's memory), because inductor
needs about a minute to compile the kernel on a small CPU; ``compile=True`` asks for the compiled
kernel there too. Inside a model that is itself compiled, the call is traced into the model's
graph. PyTorch's FlexAttention has **no backward pass on the CPU** (2.13); when gradients are
needed there, the same rule is turned into a boolean mask (``create_mask``) and SDPA computes
the forward and backward passes, so a CPU run trains with the identical pattern. The same
path serves decoding with a KV cache (fewer queries than keys, a new length at every step),
where a compiled kernel would be recompiled for each length.

On CUDA, :func:`flash_attn_window` also reaches the sliding-window kernel of the
``flash-attn`` package (Dao 2023) when it is installed; the ``"sdpa"`` backend uses it for
banded layers (see :func:`minigpt.attention.functional.attention`).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minigpt.attention._common import check_mask, check_qkv, combine_masks, repeat_kv

__all__ = [
    "block_mask",
    "flash_attn_window",
    "flash_attn_window_available",
    "flex_attention",
    "is_available",
    "mask_rule",
]


def is_available() -> bool:
    """Whether this PyTorch has ``torch.nn.attention.flex_attention`` (2.5 and later)."""
    try:
        return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None
    except ModuleNotFoundError:
        return False


def _flex_module() -> Any:
    if not is_available():
        raise RuntimeError(
            f"backend 'flex' needs torch.nn.attention.flex_attention (PyTorch >= 2.5); this is "
            f"torch {torch.__version__}. Allowed instead: backend 'naive', 'tiled' or 'sdpa'"
        )
    import torch.nn.attention.flex_attention as flex

    return flex


def mask_rule(t_q: int, t_k: int, window: int | None = None) -> Callable[..., Tensor]:
    """The ``mask_mod(b, h, q_idx, kv_idx)`` of causal attention (``window=None``) or of a band
    of width ``window``, for ``t_q`` queries that are the last of ``t_k`` positions.

    >>> rule = mask_rule(4, 4, window=2)
    >>> i, j = torch.arange(4).view(-1, 1), torch.arange(4).view(1, -1)
    >>> rule(0, 0, i, j).int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    offset = t_k - t_q

    def causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return kv_idx <= q_idx + offset

    def banded(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        i = q_idx + offset
        return (kv_idx <= i) & (kv_idx > i - window)

    return causal if window is None else banded


def _build_block_mask(t_q: int, t_k: int, window: int | None, device: str) -> Any:
    flex = _flex_module()
    return flex.create_block_mask(mask_rule(t_q, t_k, window), None, None, t_q, t_k,
                                  device=device)


_cached_block_mask = functools.lru_cache(maxsize=64)(_build_block_mask)


def block_mask(t_q: int, t_k: int, window: int | None = None, device: Any = "cpu") -> Any:
    """The ``BlockMask`` of causal (``window=None``) or banded attention, shared by every batch
    row and head, cached per ``(t_q, t_k, window, device)``; inside a model being compiled it is
    built in the graph instead (dynamo would bypass the cache anyway).

    >>> block_mask(256, 256, window=128) is block_mask(256, 256, window=128)
    True
    """
    for name, value in (("t_q", t_q), ("t_k", t_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if t_q > t_k:
        raise ValueError(f"causal attention needs t_q <= t_k (queries are the last positions), "
                         f"got t_q={t_q}, t_k={t_k}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or window < 1):
        raise ValueError(f"window must be None (dense causal) or a positive int, got {window!r}")
    build = _build_block_mask if torch.compiler.is_compiling() else _cached_block_mask
    return build(t_q, t_k, window, str(torch.device(device)))


@functools.lru_cache(maxsize=1)
def _compiled() -> Callable[..., Tensor]:
    return torch.compile(_flex_module().flex_attention, dynamic=False)


def _score_mod(mask: Tensor, shape: tuple[int, int, int, int]) -> Callable[..., Tensor]:
    """A ``score_mod`` applying a bool (allowed) or additive float ``mask`` broadcast to
    ``shape`` ``(B, H, Tq, Tk)``."""
    full = mask.expand(shape)
    if mask.dtype == torch.bool:
        def masked(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return torch.where(full[b, h, q, kv], score, -float("inf"))
        return masked

    def biased(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return score + full[b, h, q, kv].to(score.dtype)
    return biased


def flex_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, window: int | None = None,
    mask: Tensor | None = None, scale: float | None = None, compile: bool | None = None,
) -> Tensor:
    """Attention by ``torch.nn.attention.flex_attention``: ``(B, H, Tq, D) -> (B, H, Tq, D)``.

    Args:
        q: queries ``(B, H, Tq, D)``.
        k, v: keys and values ``(B, Hkv, Tk, D)``, ``Hkv`` dividing ``H`` (grouped-query
            attention runs natively).
        causal: dense causal masking, through a cached :func:`block_mask`.
        window: band width ``w`` of a locally banded layer (``i - w < j <= i``; implies
            causal), also a cached block mask whose empty tiles are skipped.
        mask: an extra bool (``True`` = may attend) or additive float mask broadcasting to
            ``(B, H, Tq, Tk)`` (ALiBi, padding), applied score by score (no tile skipping).
        scale: multiplies the scores; default ``1 / sqrt(D)``.
        compile: run the ``torch.compile``-d kernel; ``None`` (default): on CUDA, unless the
            caller is being compiled already (then the call joins its graph).

    A query row that may see no key outputs zeros, as in the other backends.
    """
    check_qkv(q, k, v)
    b, h, t_q, _ = q.shape
    t_k = k.shape[2]
    if window is not None or causal:
        if t_q > t_k:
            raise ValueError(f"causal attention needs Tq <= Tk, got Tq={t_q}, Tk={t_k}")
        bm = block_mask(t_q, t_k, window, q.device)
    else:
        bm = None
    score_mod = None
    if mask is not None:
        check_mask(mask, (b, h, t_q, t_k))
        score_mod = _score_mod(mask, (b, h, t_q, t_k))
    flex = _flex_module()
    cpu_grad = q.device.type == "cpu" and torch.is_grad_enabled() and any(
        x.requires_grad for x in (q, k, v))
    if cpu_grad or t_q != t_k:
        return _masked_fallback(flex, q, k, v, bm, (t_q, t_k, window), mask, scale)
    if compile is None:
        compile = q.is_cuda and not torch.compiler.is_compiling()
    kwargs = dict(score_mod=score_mod, block_mask=bm, scale=scale,
                  enable_gqa=k.shape[1] != h)
    if compile:
        return _compiled()(q, k, v, **kwargs)
    if torch.compiler.is_compiling():  # traced into the caller's graph
        return flex.flex_attention(q, k, v, **kwargs)
    with warnings.catch_warnings():  # "called without torch.compile()": eager is meant here
        warnings.filterwarnings("ignore", message=".*without torch.compile.*")
        return flex.flex_attention(q, k, v, **kwargs)


def _masked_fallback(flex: Any, q: Tensor, k: Tensor, v: Tensor, bm: Any,
                     shape: tuple[int, int, int | None], mask: Tensor | None,
                     scale: float | None) -> Tensor:
    """SDPA with the block mask's rule materialized (``(Tq, Tk)`` bool) and ``mask`` combined:
    differentiable on the CPU, where FlexAttention has no backward. Rows that see no key give 0."""
    t_q, t_k, window = shape
    rule = None
    if bm is not None:
        rule = flex.create_mask(mask_rule(t_q, t_k, window), None, None, t_q, t_k,
                                device=q.device)[0, 0]
    full = combine_masks(rule, mask)
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    if full is None:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
    allowed = full if full.dtype == torch.bool else full > float("-inf")
    empty = ~allowed.any(dim=-1, keepdim=True)  # (..., Tq, 1)
    if full.dtype != torch.bool:
        full = full.masked_fill(empty, 0.0).to(q.dtype)
    else:
        full = full | empty
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=full, scale=scale)
    return out.masked_fill(empty, 0.0)


def flash_attn_window_available() -> bool:
    """Whether the ``flash-attn`` package (Dao's CUDA kernels) is installed."""
    return importlib.util.find_spec("flash_attn") is not None


def flash_attn_window(q: Tensor, k: Tensor, v: Tensor, *, window: int,
                      scale: float | None = None) -> Tensor:
    """Banded causal attention by ``flash_attn.flash_attn_func``'s sliding window (CUDA, fp16 or
    bf16): ``(B, H, Tq, D) -> (B, H, Tq, D)``, with ``k, v`` ``(B, Hkv, Tk, D)``.

    ``flash_attn`` works in ``(B, T, H, D)`` and its ``window_size=(left, right)`` lets query
    ``i`` see keys ``i - left .. i + right``; the band ``i - w < j <= i`` is ``(w - 1, 0)``
    with ``causal=True`` (bottom-right aligned, as here).
    """
    from flash_attn import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                          softmax_scale=scale, causal=True, window_size=(window - 1, 0))
    return out.transpose(1, 2)
