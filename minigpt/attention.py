"""Scaled dot-product attention, multi-head / multi-query / grouped-query attention, KV cache.

**Attention** mixes information between positions.  Each query vector ``q_i`` scores every key
``k_j`` by a dot product, the scores become weights by a softmax over ``j``, and the output is
the weighted average of the value vectors::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V        Q: (Tq, d), K, V: (Tk, d)

Dividing by ``sqrt(d)`` keeps the scores of unit-variance vectors at unit variance, so the
softmax does not saturate as ``d`` grows.  ``M`` is a mask: ``-inf`` where query ``i`` must not
see key ``j`` (``exp(-inf) = 0``), or any finite additive bias (ALiBi).  Masks here follow
``torch.nn.functional.scaled_dot_product_attention``: a **boolean** mask is ``True`` where
attention is *allowed*; a **float** mask is *added* to the scores.  Either broadcasts to
``(B, H, Tq, Tk)``.  A query row that may see no key at all outputs zeros (as SDPA does).

**Causal** masking lets position ``i`` see only ``j <= i``, so a language model cannot peek at
the token it predicts.  When ``Tq < Tk`` the queries are taken to be the *last* ``Tq`` positions
(query ``i`` sits at ``Tk - Tq + i``, "bottom-right" alignment, as FlashAttention-2): that is
what decoding with a KV cache needs.  SDPA's ``is_causal=True`` aligns top-left instead; the two
agree when ``Tq == Tk``.

**Multi-head attention** (Vaswani et al. 2017) runs ``H`` attentions of width ``d_head`` side by
side on different learned projections and concatenates them: ``(B, T, H * d_head)`` is
rearranged to ``(B, H, T, d_head)`` (einops: ``"b t (h d) -> b h t d"``), so heads are just one
more batch axis.  GPT-3 175B has 96 heads of 128.

**Multi-query** (Shazeer 2019) and **grouped-query** attention (Ainslie et al. 2023) keep ``H``
query heads but only ``H_kv`` key/value heads (1 for MQA), each shared by a group of ``H /
H_kv`` query heads.  Compute is unchanged; what shrinks ``H / H_kv`` times is the KV cache,
which dominates memory traffic when decoding.  :func:`repeat_kv` expands the shared heads for
the backends that need equal head counts.

**KV cache.**  Generating token ``t + 1`` needs attention of the new query against all ``t + 1``
keys and values, but the old keys and values do not change: :class:`KVCache` keeps them,
``(B, H_kv, T_past, d_head)`` per layer, so each step projects one token instead of ``t + 1``.

**Backends** (:data:`BACKENDS`), selected by name in :func:`attention`:

* ``"naive"``: the formula above, materializing the ``(B, H, Tq, Tk)`` score matrix;
* ``"tiled"``: FlashAttention in plain PyTorch (:mod:`minigpt.flash`), tiles and an online
  softmax, memory linear in ``T``, backward by recomputation;
* ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU);
* ``"triton"``: a Triton kernel for the FlashAttention forward (:mod:`minigpt.flash_triton`).

``"manual"`` and ``"flash"`` are accepted as aliases of ``"naive"`` and ``"tiled"``.
The names are those of :data:`minigpt.config.ATTENTION_BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from minigpt.positions import ALiBi, RotaryEmbedding
from minigpt.sparse import causal_mask, local_mask

__all__ = [
    "BACKENDS",
    "BACKEND_ALIASES",
    "KVCache",
    "MultiHeadAttention",
    "attention",
    "attention_weights",
    "check_mask",
    "check_qkv",
    "combine_masks",
    "masked_scores",
    "merge_heads",
    "naive_attention",
    "repeat_kv",
    "resolve_backend",
    "sdpa_attention",
    "split_heads",
]

#: Attention implementations :func:`attention` dispatches on.
BACKENDS = ("naive", "tiled", "sdpa", "triton")
#: Other accepted names: the usual words for the two written-out backends.
BACKEND_ALIASES = {"manual": "naive", "flash": "tiled"}

#: Positions handled outside attention (added to the token embeddings by the model).
_ABSOLUTE_POSITIONS = (None, "none", "learned", "absolute", "sinusoidal")


# ---------------------------------------------------------------------------------------------
# Checks and shape helpers


def resolve_backend(backend: str) -> str:
    """The canonical backend name for ``backend`` (an alias is mapped), else ValueError.

    >>> resolve_backend("flash")
    'tiled'
    >>> resolve_backend("cuda")
    Traceback (most recent call last):
    ...
    ValueError: unknown attention backend 'cuda'; allowed: 'naive', 'tiled', 'sdpa', 'triton' \
(aliases: 'manual' = 'naive', 'flash' = 'tiled')
    """
    name = BACKEND_ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if name not in BACKENDS:
        aliases = ", ".join(f"{a!r} = {b!r}" for a, b in BACKEND_ALIASES.items())
        raise ValueError(
            f"unknown attention backend {backend!r}; allowed: {', '.join(map(repr, BACKENDS))} "
            f"(aliases: {aliases})"
        )
    return name


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


# ---------------------------------------------------------------------------------------------
# The formula, written out


def masked_scores(
    q: Tensor, k: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Scores ``q k^T * scale + mask``, ``(B, H, Tq, Tk)``, with ``-inf`` where blocked.

    Also returns ``empty`` ``(B, H, Tq, 1)``, the rows that may attend to nothing (``None``
    when there can be none); their scores are set to 0 so that a softmax stays finite, and the
    caller zeroes their result.  The masks are applied in place: one ``(Tq, Tk)`` float matrix
    per batch and head is the only large tensor made here.
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
        backend: one of :data:`BACKENDS` (or an alias in :data:`BACKEND_ALIASES`).

    Returns:
        ``(B, H, Tq, Dv)``.  All backends agree to rounding error.
    """
    name = resolve_backend(backend)
    if dropout_p and name in ("tiled", "triton"):
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
    # minigpt.flash and minigpt.flash_triton import this module, hence the late imports.
    if name == "tiled":
        from minigpt.flash import flash_attention

        return flash_attention(q, k, v, causal=causal, mask=mask, scale=scale)
    from minigpt.flash_triton import triton_attention

    if mask is not None:
        raise ValueError(
            "backend 'triton' supports causal or no masking only; got a mask. Allowed: "
            "mask=None (with causal=True or False), or backend 'naive', 'tiled' or 'sdpa'"
        )
    return triton_attention(q, k, v, causal=causal, scale=scale)


# ---------------------------------------------------------------------------------------------
# KV cache and the multi-head module


class KVCache:
    """Keys and values of the tokens one attention layer has already seen.

    ``k`` and ``v`` are ``(B, Hkv, T_past, D)`` (``None`` before the first step).
    :meth:`append` adds the new step's keys and values and returns all of them.
    ``max_len`` (optional) bounds ``T_past``.

    >>> cache = KVCache()
    >>> k = torch.zeros(1, 2, 3, 4)
    >>> [t.shape[2] for t in cache.append(k, k)], len(cache)
    ([3, 3], 3)
    >>> _ = cache.append(k[:, :, :1], k[:, :, :1]); len(cache)
    4
    """

    def __init__(self, max_len: int | None = None) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.max_len = max_len

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` ``(B, Hkv, T_new, D)``; return all, ``(B, Hkv, T_past + T_new, D)``."""
        if k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3]:
            raise ValueError(
                "KVCache.append expects k (B, Hkv, T, D) and v (B, Hkv, T, Dv) with the same "
                f"B, Hkv and T; got k {tuple(k.shape)}, v {tuple(v.shape)}"
            )
        if self.k is not None and (
            self.k.shape[:2] != k.shape[:2] or self.k.shape[3] != k.shape[3]
            or self.v.shape[3] != v.shape[3]
        ):
            raise ValueError(
                f"KVCache holds keys {tuple(self.k.shape)} and values {tuple(self.v.shape)}; "
                f"new ones must match in every axis but T (axis 2), got k {tuple(k.shape)}, "
                f"v {tuple(v.shape)}"
            )
        if self.max_len is not None and len(self) + k.shape[2] > self.max_len:
            raise ValueError(
                f"KVCache is full: {len(self)} cached + {k.shape[2]} new tokens > "
                f"max_len={self.max_len}"
            )
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` ``(B_new,)``, in that order, repeats allowed (beam search).

        ``k, v`` ``(B, Hkv, T, D) -> (B_new, Hkv, T, D)``: row ``i`` becomes old row
        ``index[i]``, as :func:`torch.index_select` along axis 0.

        >>> cache = KVCache()
        >>> _ = cache.append(torch.arange(3.0).view(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
        >>> cache.reorder(torch.tensor([2, 2, 0])); cache.k.flatten().tolist()
        [2.0, 2.0, 0.0]
        """
        if self.k is None:
            return
        if not isinstance(index, Tensor) or index.ndim != 1 or index.is_floating_point():
            raise ValueError(f"index must be a 1-D integer tensor of batch rows, got {index!r}")
        b = self.k.shape[0]
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= b):
            raise ValueError(f"index holds rows outside [0, {b}): {index.tolist()}")
        index = index.to(self.k.device, torch.long)
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)

    def reset(self) -> None:
        """Forget every cached token."""
        self.k = self.v = None

    def __repr__(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"KVCache(length={len(self)}, k_shape={shape}, max_len={self.max_len})"


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with GPT-2's parameter layout.

    ``c_attn`` is one fused ``Linear(d_model, (H + 2 Hkv) d_head)`` producing q, k and v (in
    that order along the output axis, as GPT-2's ``c_attn``; GPT-2 stores the transposed
    weight), ``c_proj`` is ``Linear(H d_head, d_model)``.

    Args:
        d_model: width of the input and output ``(B, T, d_model)``.
        n_heads: query heads ``H``.
        n_kv_heads: key/value heads ``Hkv`` (``None``: ``H``; 1: multi-query; otherwise
            grouped-query).  Must divide ``n_heads``.
        bias: biases on both linear layers (GPT-2/3: True).
        dropout: dropout on the attention weights and on the output (GPT-2: 0.1), in training.
        backend: attention implementation, see :func:`attention`.
        positions: ``"rope"``, ``"alibi"``, a :class:`~minigpt.positions.RotaryEmbedding` or
            :class:`~minigpt.positions.ALiBi`; or ``None``/``"learned"``/``"sinusoidal"``,
            absolute positions that the model adds to its input, so nothing happens here.
        d_head: head width; default ``d_model // n_heads`` (then ``n_heads`` must divide it).
        max_len: size of the RoPE table (GPT-3: 2048).
        window: ``None`` for dense causal attention, or the band width ``w`` of a locally banded
            layer (``i - w < j <= i``); see :func:`minigpt.sparse.gpt3_layer_windows`.
        causal: mask the future (True for a language model).
        rope_base: RoPE's ``base`` (10000).

    ``forward(x, cache=None, mask=None)``: ``x`` is ``(B, T, d_model)``; ``cache`` a
    :class:`KVCache`, appended to in place, whose length is the position offset of ``x``;
    ``mask`` an extra mask broadcasting to ``(B, H, T, T_past + T)``.

    >>> attn = MultiHeadAttention(d_model=32, n_heads=4, n_kv_heads=2, positions="rope")
    >>> cache = KVCache()
    >>> y = attn(torch.randn(2, 5, 32), cache=cache)
    >>> y.shape, cache.k.shape
    (torch.Size([2, 5, 32]), torch.Size([2, 2, 5, 8]))
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        backend: str = "sdpa",
        positions: str | RotaryEmbedding | ALiBi | None = None,
        *,
        d_head: int | None = None,
        max_len: int = 2048,
        window: int | None = None,
        causal: bool = True,
        rope_base: float = 10000.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        d_head = self._check_sizes(d_model, n_heads, n_kv_heads, d_head)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if window is not None and (not isinstance(window, int) or window < 1 or not causal):
            raise ValueError(
                f"window must be None (dense) or a positive int band width with causal=True; "
                f"got window={window!r}, causal={causal}"
            )
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_head
        self.backend = resolve_backend(backend)
        self.dropout, self.window, self.causal = dropout, window, causal
        kw = {"device": device, "dtype": dtype}
        self.c_attn = nn.Linear(d_model, (n_heads + 2 * n_kv_heads) * d_head, bias=bias, **kw)
        self.c_proj = nn.Linear(n_heads * d_head, d_model, bias=bias, **kw)
        self.resid_dropout = nn.Dropout(dropout)
        self.rope, self.alibi = self._make_positions(positions, d_head, n_heads, max_len, rope_base)

    @staticmethod
    def _check_sizes(d_model: int, n_heads: int, n_kv_heads: int, d_head: int | None) -> int:
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(
                    f"n_heads ({n_heads}) must divide d_model ({d_model}) so that each head has "
                    f"d_model // n_heads features; allowed: n_heads in "
                    f"{[h for h in range(1, d_model + 1) if d_model % h == 0]}, or pass d_head"
                )
            d_head = d_model // n_heads
        if n_heads % n_kv_heads:
            raise ValueError(
                f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads}): each "
                "key/value head serves a whole group of query heads; allowed n_kv_heads: "
                f"{[h for h in range(1, n_heads + 1) if n_heads % h == 0]}"
            )
        return d_head

    @staticmethod
    def _make_positions(
        positions: str | RotaryEmbedding | ALiBi | None, d_head: int, n_heads: int, max_len: int,
        rope_base: float,
    ) -> tuple[RotaryEmbedding | None, ALiBi | None]:
        if isinstance(positions, RotaryEmbedding):
            if positions.d_head != d_head:
                raise ValueError(
                    f"RotaryEmbedding has d_head={positions.d_head}, attention heads have {d_head}"
                )
            return positions, None
        if isinstance(positions, ALiBi):
            if positions.n_heads != n_heads:
                raise ValueError(f"ALiBi has n_heads={positions.n_heads}, attention has {n_heads}")
            return None, positions
        if positions == "rope":
            return RotaryEmbedding(d_head, max_len, rope_base), None
        if positions == "alibi":
            return None, ALiBi(n_heads)
        if positions in _ABSOLUTE_POSITIONS:
            return None, None
        raise ValueError(
            f"unknown positions {positions!r}; allowed: 'rope', 'alibi', a RotaryEmbedding or "
            "ALiBi module, or None / 'learned' / 'sinusoidal' (absolute positions are added to "
            "the token embeddings by the model, not inside attention)"
        )

    def qkv(self, x: Tensor, offset: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``x (B, T, d_model)`` to ``q (B, H, T, Dh)``, ``k, v (B, Hkv, T, Dh)``,
        with RoPE applied for positions ``offset ..``."""
        q_width, kv_width = self.n_heads * self.d_head, self.n_kv_heads * self.d_head
        q, k, v = self.c_attn(x).split([q_width, kv_width, kv_width], dim=-1)
        q, k, v = split_heads(q, self.n_heads), split_heads(k, self.n_kv_heads), split_heads(
            v, self.n_kv_heads
        )
        if self.rope is not None:
            q, k = self.rope(q, k, offset)
        return q, k, v

    def attention_mask(
        self, t_q: int, t_k: int, mask: Tensor | None, like: Tensor
    ) -> Tensor | None:
        """The band (if ``window``), ALiBi bias and user ``mask`` combined; ``None`` if none."""
        band = None
        if self.window is not None:
            band = local_mask(t_q, t_k, window=self.window, device=like.device)
        bias = None
        if self.alibi is not None:
            bias = self.alibi(t_q, t_k).to(device=like.device, dtype=like.dtype)  # (H, Tq, Tk)
        if mask is not None:
            check_mask(mask, (like.shape[0], self.n_heads, t_q, t_k))
        return combine_masks(band, bias, mask)

    def forward(
        self, x: Tensor, cache: KVCache | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """``(B, T, d_model) -> (B, T, d_model)``; see the class docstring."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention expects x of shape (B, T, d_model={self.d_model}), got "
                f"{tuple(x.shape)}"
            )
        offset = 0 if cache is None else len(cache)
        q, k, v = self.qkv(x, offset)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, offset + T, Dh)
        attn_mask = self.attention_mask(q.shape[2], k.shape[2], mask, x)
        y = attention(
            q, k, v,
            causal=self.causal and self.window is None,  # a band is already causal
            mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            backend=self.backend,
        )  # (B, H, T, Dh)
        return self.resid_dropout(self.c_proj(merge_heads(y)))

    def extra_repr(self) -> str:
        parts = [
            f"d_model={self.d_model}", f"n_heads={self.n_heads}", f"n_kv_heads={self.n_kv_heads}",
            f"d_head={self.d_head}", f"backend={self.backend!r}",
        ]
        if self.window is not None:
            parts.append(f"window={self.window}")
        return ", ".join(parts)
