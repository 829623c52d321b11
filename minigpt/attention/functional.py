"""Attention as a function: the formula written out, PyTorch's fused call, and the dispatcher.

:func:`attention` runs the backend named in :data:`minigpt.config.ATTENTION_BACKENDS`:
``"naive"`` (:func:`naive_attention`), ``"sdpa"`` (:func:`sdpa_attention`), ``"tiled"``
(:func:`minigpt.attention.flash.flash_attention`), ``"triton"``
(:func:`minigpt.attention.flash_triton.triton_attention`) or ``"flex"``
(:func:`minigpt.attention.flex.flex_attention`). Shapes and masks are explained in
:mod:`minigpt.attention`. A locally banded layer passes ``window``: ``"flex"`` turns it into a
block mask that skips the empty tiles; the others apply it as an explicit mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from minigpt.attention._common import check_mask, check_qkv, combine_masks, repeat_kv
from minigpt.attention.flash import flash_attention
from minigpt.attention.flash_triton import triton_attention
from minigpt.attention.flex import flash_attn_window, flash_attn_window_available, flex_attention
from minigpt.attention.sparse import causal_mask, local_mask
from minigpt.config import ATTENTION_BACKEND_ALIASES, ATTENTION_BACKENDS

__all__ = [
    "attention",
    "attention_weights",
    "masked_scores",
    "naive_attention",
    "resolve_backend",
    "sdpa_attention",
]


def resolve_backend(backend: str) -> str:
    """The canonical backend name for ``backend`` (an alias is mapped), else ValueError.

    >>> resolve_backend("flash")
    'tiled'
    >>> resolve_backend("cuda")
    Traceback (most recent call last):
    ...
    ValueError: unknown attention backend 'cuda'; allowed: 'naive', 'tiled', 'sdpa', 'triton', \
'flex' (aliases: 'manual' = 'naive', 'flash' = 'tiled')
    """
    name = ATTENTION_BACKEND_ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if name not in ATTENTION_BACKENDS:
        aliases = ", ".join(f"{a!r} = {b!r}" for a, b in ATTENTION_BACKEND_ALIASES.items())
        raise ValueError(
            f"unknown attention backend {backend!r}; allowed: "
            f"{', '.join(map(repr, ATTENTION_BACKENDS))} "
            f"(aliases: {aliases})"
        )
    return name


def masked_scores(
    q: Tensor, k: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Scores ``q k^T * scale + mask``, ``(B, H, Tq, Tk)``, with ``-inf`` where blocked.

    Also returns ``empty`` ``(B, H, Tq, 1)``, the rows that may attend to nothing (``None``
    when there can be none); their scores are set to 0 so that a softmax stays finite, and the
    caller zeroes their result.  The masks are applied in place: one ``(Tq, Tk)`` float matrix
    per batch and head is the only large tensor made here.

    ``q`` is ``(B, H, Tq, D)``; ``k`` is ``(B, Hkv, Tk, D)`` and may have fewer heads than ``q``
    (grouped-query attention: ``H`` a multiple of ``Hkv``, query head ``h`` reads key head
    ``h // (H // Hkv)``). ``scale`` defaults to ``1 / sqrt(D)``. ``causal=True`` lets query
    ``i`` see the keys up to position ``Tk - Tq + i`` (:func:`causal_mask`). ``mask``
    broadcasts to ``(B, H, Tq, Tk)``: a boolean mask is ``True`` where attending is allowed,
    a float mask is added to the scores.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k = repeat_kv(k, q.shape[1] // k.shape[1])
    scores = torch.einsum("bhid,bhjd->bhij", q * scale, k)  # (B, H, Tq, Tk)
    t_q, t_k = scores.shape[-2:]
    if causal:
        scores.masked_fill_(~causal_mask(t_q, t_k, device=q.device), float("-inf"))
    if mask is not None:
        check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores += mask.to(scores.dtype)
    if mask is None and not (causal and t_q > t_k):
        return scores, None
    # A row of only -inf would give 0/0 = NaN in the softmax.
    empty = (scores == float("-inf")).all(dim=-1, keepdim=True)
    return scores.masked_fill_(empty, 0.0), empty


def attention_weights(
    q: Tensor, k: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """``softmax(q k^T * scale + mask)``: the attention matrix, shape ``(B, H, Tq, Tk)``.

    ``scale`` defaults to ``1 / sqrt(D)``.  Rows that may attend to nothing are all zeros.
    """
    scores, empty = masked_scores(q, k, causal=causal, mask=mask, scale=scale)
    weights = scores.softmax(dim=-1)
    return weights if empty is None else weights.masked_fill(empty, 0.0)


def naive_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None, dropout_p: float = 0.0,
) -> Tensor:
    """Attention with the full score matrix in memory: ``(B, H, Tq, D) -> (B, H, Tq, Dv)``.

    ``k, v`` are ``(B, Hkv, Tk, D)``; ``Hkv`` divides ``H`` (grouped-query attention).
    ``dropout_p`` drops attention weights (always, like SDPA: pass 0 at evaluation).

    >>> q = k = v = torch.eye(2).view(1, 1, 2, 2)
    >>> naive_attention(q, k, v, causal=True, scale=1000.0)
    tensor([[[[1., 0.],
              [0., 1.]]]])
    """
    check_qkv(q, k, v)
    scores, empty = masked_scores(q, k, causal=causal, mask=mask, scale=scale)
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ repeat_kv(v, q.shape[1] // v.shape[1])  # (B, H, Tq, Dv)
    return out if empty is None else out.masked_fill(empty, 0.0)


_TORCH_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None, dropout_p: float = 0.0,
) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` with this module's conventions
    (bottom-right causal alignment, grouped-query heads); shapes as :func:`naive_attention`."""
    check_qkv(q, k, v)
    t_q, t_k = q.shape[2], k.shape[2]
    if mask is not None:
        check_mask(mask, (q.shape[0], q.shape[1], t_q, t_k))
    is_causal = causal and mask is None and t_q == t_k
    if causal and not is_causal:
        mask = combine_masks(causal_mask(t_q, t_k, device=q.device), mask)
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    gqa = {}
    if q.shape[1] != k.shape[1]:
        if _TORCH_HAS_GQA:
            gqa = {"enable_gqa": True}
        else:  # torch < 2.5
            n_rep = q.shape[1] // k.shape[1]
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **gqa
    )


def attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None, dropout_p: float = 0.0, backend: str = "naive",
    window: int | None = None,
) -> Tensor:
    """Scaled dot-product attention by the implementation named ``backend``.

    Args:
        q: queries ``(B, H, Tq, D)``.
        k, v: keys ``(B, Hkv, Tk, D)`` and values ``(B, Hkv, Tk, Dv)``, ``Hkv`` dividing ``H``.
        causal: query ``i`` (at position ``Tk - Tq + i``) sees keys ``j <= Tk - Tq + i``.
        mask: bool (``True`` = may attend) or additive float, broadcasting to
            ``(B, H, Tq, Tk)``; combined with ``causal``.  Not supported by ``"triton"``.
        scale: multiplies the scores; default ``1 / sqrt(D)``.
        dropout_p: attention-weight dropout, ``"naive"`` and ``"sdpa"`` only.
        backend: one of :data:`~minigpt.config.ATTENTION_BACKENDS` (or an alias in
            :data:`~minigpt.config.ATTENTION_BACKEND_ALIASES`).
        window: band width ``w`` of a locally banded layer, ``i - w < j <= i`` (causal by
            itself); ``None`` for none. ``"flex"`` skips the tiles outside the band; on CUDA
            ``"sdpa"`` uses the ``flash-attn`` package's sliding window where it is installed
            (half precision, no other mask, no dropout); every other case, ``"triton"``
            included (its kernel is dense), applies the band as a mask through SDPA or the
            backend itself.

    Returns:
        ``(B, H, Tq, Dv)``.  All backends agree to rounding error.
    """
    name = resolve_backend(backend)
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be None or a positive int band width, got {window!r}")
        if name == "flex" and not dropout_p:
            return flex_attention(q, k, v, window=window, mask=mask, scale=scale)
        if (name == "sdpa" and q.is_cuda and mask is None and not dropout_p
                and q.dtype in (torch.float16, torch.bfloat16) and flash_attn_window_available()):
            return flash_attn_window(q, k, v, window=window, scale=scale)
        band = local_mask(q.shape[2], k.shape[2], window=window, device=q.device)
        mask, causal = combine_masks(band, mask), False  # the band is causal already
        if name == "triton":  # the kernel is dense: banded layers go through SDPA's masked path
            name = "sdpa"
    if dropout_p and name in ("tiled", "triton", "flex"):
        raise ValueError(
            f"dropout_p={dropout_p} is not supported by backend {name!r}; allowed: dropout_p=0, "
            "or backend 'naive' or 'sdpa'"
        )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if name == "naive":
        return naive_attention(q, k, v, causal=causal, mask=mask, scale=scale, dropout_p=dropout_p)
    if name == "sdpa":
        return sdpa_attention(q, k, v, causal=causal, mask=mask, scale=scale, dropout_p=dropout_p)
    if name == "tiled":
        return flash_attention(q, k, v, causal=causal, mask=mask, scale=scale)
    if name == "flex":
        return flex_attention(q, k, v, causal=causal, mask=mask, scale=scale)
    if mask is not None:
        raise ValueError(
            "backend 'triton' supports causal or no masking only; got a mask. Allowed: "
            "mask=None (with causal=True or False), or backend 'naive', 'tiled', 'sdpa' or 'flex'"
        )
    return triton_attention(q, k, v, causal=causal, scale=scale)
