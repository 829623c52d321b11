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

**Backends** (:data:`minigpt.config.ATTENTION_BACKENDS`), selected by name in :func:`attention`:

* ``"naive"``: the formula above, materializing the ``(B, H, Tq, Tk)`` score matrix;
* ``"tiled"``: FlashAttention in plain PyTorch (:mod:`minigpt.attention.flash`), tiles and an online
  softmax, memory linear in ``T``, backward by recomputation;
* ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU);
* ``"triton"``: a Triton kernel for the FlashAttention forward
  (:mod:`minigpt.attention.flash_triton`);
* ``"flex"``: ``torch.nn.attention.flex_attention`` with cached block masks, causal or causal
  within a band, so that GPT-3's locally banded layers skip the tiles outside the band
  (:mod:`minigpt.attention.flex`).

``"manual"`` and ``"flash"`` are accepted as aliases of ``"naive"`` and ``"tiled"``
(:data:`minigpt.config.ATTENTION_BACKEND_ALIASES`).

The subpackage's modules:

* :mod:`minigpt.attention.functional`: the formula, the SDPA call and :func:`attention`, which
  dispatches on the backend's name;
* :mod:`minigpt.attention.multihead`: :class:`MultiHeadAttention` and :class:`KVCache`;
* :mod:`minigpt.attention.flash` and :mod:`minigpt.attention.flash_triton`: FlashAttention in
  PyTorch and in Triton;
* :mod:`minigpt.attention.flex`: FlexAttention's block masks (and ``flash-attn``'s sliding
  window on CUDA);
* :mod:`minigpt.attention.sparse`: causal, banded and strided masks, GPT-3's alternating layers;
* :mod:`minigpt.attention._common`: the shape checks and head split/merge they all share.
"""

from minigpt.attention._common import (
    check_mask,
    check_qkv,
    combine_masks,
    merge_heads,
    repeat_kv,
    split_heads,
)
from minigpt.attention.functional import (
    attention,
    attention_weights,
    masked_scores,
    naive_attention,
    resolve_backend,
    sdpa_attention,
)
from minigpt.attention.multihead import KVCache, MultiHeadAttention

__all__ = [
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
