"""What every attention backend shares: the shape and mask checks, and head split/merge.

Internal to :mod:`minigpt.attention`; :mod:`minigpt.attention` exports the public names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor

__all__ = ["check_mask", "check_qkv", "combine_masks", "merge_heads", "repeat_kv", "split_heads"]


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise ValueError unless ``q (B, H, Tq, D)``, ``k (B, Hkv, Tk, D)``, ``v (B, Hkv, Tk, Dv)``
    agree, with ``H`` a multiple of ``Hkv``, one dtype and one device."""
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention expects 4-D tensors (B, H, T, D); got {shapes}")
    if q.shape[0] != k.shape[0] or k.shape[:3] != v.shape[:3] or q.shape[3] != k.shape[3]:
        raise ValueError(
            "attention expects q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) with the "
            f"same B, the same D for q and k, and the same Hkv and Tk for k and v; got {shapes}"
        )
    if q.shape[1] % k.shape[1]:
        raise ValueError(
            f"the number of query heads ({q.shape[1]}) must be a multiple of the number of "
            f"key/value heads ({k.shape[1]}); got {shapes}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k and v must share dtype and device; got {q.dtype}/{k.dtype}/{v.dtype} on "
            f"{q.device}/{k.device}/{v.device}"
        )


def check_mask(mask: Tensor, shape: Sequence[int]) -> None:
    """Raise ValueError unless ``mask`` is boolean or floating and broadcasts to ``shape``
    (``(B, H, Tq, Tk)``)."""
    if not isinstance(mask, Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must be a bool tensor (True = may attend) or a float tensor (added to the "
            f"scores); got {kind}"
        )
    target = tuple(shape)
    try:
        ok = mask.ndim <= len(target) and torch.broadcast_shapes(mask.shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"(B, H, Tq, Tk) = {target}; allowed: any shape that broadcasts to it, such as "
            "(Tq, Tk), (B, 1, Tq, Tk) or (1, H, Tq, Tk)"
        )


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Combine masks: the AND of boolean masks, or the sum of additive ones (a boolean mask is
    turned into ``0 / -inf`` when it meets a float one).  ``None`` entries are skipped.

    >>> combine_masks(torch.tensor([True, False]), torch.tensor([1.0, 2.0]))
    tensor([1., -inf])
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    if all(m.dtype == torch.bool for m in present):
        out = present[0]
        for m in present[1:]:
            out = out & m
        return out
    dtype = next(m.dtype for m in present if m.dtype != torch.bool)
    out = None
    for m in present:
        add = _additive(m, dtype)
        out = add if out is None else out + add
    return out


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask as ``0`` (allowed) / ``-inf`` (blocked); a float mask cast to ``dtype``."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Share each key/value head with ``n_rep`` query heads: ``(B, Hkv, T, D) ->
    (B, Hkv * n_rep, T, D)``; query head ``h`` reads key/value head ``h // n_rep``.

    >>> repeat_kv(torch.arange(2.0).view(1, 2, 1, 1), 3).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    return x if n_rep == 1 else repeat(x, "b h t d -> b (h r) t d", r=n_rep)


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """``(B, T, H * D) -> (B, H, T, D)``."""
    return rearrange(x, "b t (h d) -> b h t d", h=n_heads)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, D) -> (B, T, H * D)``."""
    return rearrange(x, "b h t d -> b t (h d)")
