"""Multi-head, multi-query and grouped-query attention as a module, and the KV cache.

See :mod:`minigpt.attention` for the ideas; :class:`MultiHeadAttention` projects, splits heads,
applies positions (RoPE or ALiBi) and a local band if asked, and calls
:func:`minigpt.attention.functional.attention` with the backend it was given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minigpt.attention._common import check_mask, combine_masks, merge_heads, split_heads
from minigpt.attention.functional import attention, resolve_backend
from minigpt.attention.sparse import local_mask
from minigpt.positions import ALiBi, RotaryEmbedding

__all__ = ["KVCache", "MultiHeadAttention"]

#: Positions handled outside attention (added to the token embeddings by the model).
_ABSOLUTE_POSITIONS = (None, "none", "learned", "absolute", "sinusoidal")


class KVCache:
    """Keys and values of the tokens one attention layer has already seen.

    The cache writes into preallocated buffers ``(B, Hkv, capacity, D)`` and keeps a length
    pointer, so that a decoding step copies its one new token instead of concatenating (and so
    copying) the whole past. ``k`` and ``v`` are views of the filled part, ``(B, Hkv, T_past,
    D)`` (``None`` while the cache is empty). :meth:`append` adds the new step's keys and
    values and returns all of them. ``max_len`` (optional, :meth:`GPT.make_caches
    <minigpt.model.GPT.make_caches>` passes ``n_ctx``) bounds ``T_past`` and is the capacity
    of the buffers; without it they grow by doubling. :meth:`reset` forgets the tokens but
    keeps the buffers for the next sequence.

    >>> cache = KVCache()
    >>> k = torch.zeros(1, 2, 3, 4)
    >>> [t.shape[2] for t in cache.append(k, k)], len(cache)
    ([3, 3], 3)
    >>> _ = cache.append(k[:, :, :1], k[:, :, :1]); len(cache)
    4
    """

    #: The smallest buffer allocated when ``max_len`` is not given (in tokens).
    _MIN_CAPACITY = 64

    def __init__(self, max_len: int | None = None) -> None:
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int)
                                    or max_len < 1):
            raise ValueError(f"max_len must be None (unbounded) or an integer >= 1, "
                             f"got {max_len!r}")
        self.max_len = max_len
        self._k: Tensor | None = None  # (B, Hkv, capacity, D)
        self._v: Tensor | None = None  # (B, Hkv, capacity, Dv)
        self._len = 0

    @property
    def k(self) -> Tensor | None:
        """The cached keys ``(B, Hkv, T_past, D)``, a view of the buffer; ``None`` if empty."""
        return None if self._len == 0 else self._k[:, :, : self._len]

    @property
    def v(self) -> Tensor | None:
        """The cached values ``(B, Hkv, T_past, Dv)``, a view of the buffer; ``None`` if empty."""
        return None if self._len == 0 else self._v[:, :, : self._len]

    def __len__(self) -> int:
        return self._len

    def _reserve(self, k: Tensor, v: Tensor, needed: int) -> None:
        """Make the buffers hold ``needed`` tokens of ``k``'s and ``v``'s layout, keeping the
        cached ones (new buffers when the batch, heads, dtype or device changed while empty)."""
        fits = (
            self._k is not None and self._k.shape[:2] == k.shape[:2]
            and self._k.shape[3] == k.shape[3] and self._v.shape[3] == v.shape[3]
            and self._k.dtype == k.dtype and self._v.dtype == v.dtype
            and self._k.device == k.device
        )
        if fits and self._k.shape[2] >= needed:
            return
        if self.max_len is not None:
            capacity = self.max_len
        else:
            old = self._k.shape[2] if fits else 0
            capacity = max(needed, 2 * old, self._MIN_CAPACITY)
        b, h = k.shape[:2]
        new_k = k.new_empty((b, h, capacity, k.shape[3]))
        new_v = v.new_empty((b, h, capacity, v.shape[3]))
        if self._len:
            new_k[:, :, : self._len] = self._k[:, :, : self._len]
            new_v[:, :, : self._len] = self._v[:, :, : self._len]
        self._k, self._v = new_k, new_v

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` ``(B, Hkv, T_new, D)``; return all, ``(B, Hkv, T_past + T_new, D)``
        (views of the buffers, valid until the next :meth:`append`, :meth:`reorder` or
        :meth:`reset`)."""
        if k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3]:
            raise ValueError(
                "KVCache.append expects k (B, Hkv, T, D) and v (B, Hkv, T, Dv) with the same "
                f"B, Hkv and T; got k {tuple(k.shape)}, v {tuple(v.shape)}"
            )
        n, t = self._len, k.shape[2]
        if n and (
            self._k.shape[:2] != k.shape[:2] or self._k.shape[3] != k.shape[3]
            or self._v.shape[3] != v.shape[3]
        ):
            raise ValueError(
                f"KVCache holds keys {tuple(self.k.shape)} and values {tuple(self.v.shape)}; "
                f"new ones must match in every axis but T (axis 2), got k {tuple(k.shape)}, "
                f"v {tuple(v.shape)}"
            )
        if n and (self._k.dtype != k.dtype or self._k.device != k.device
                  or self._v.dtype != v.dtype):
            raise ValueError(
                f"KVCache holds {self._k.dtype} keys and {self._v.dtype} values on "
                f"{self._k.device}; new ones must have the same dtypes and device, got "
                f"{k.dtype} and {v.dtype} on {k.device}"
            )
        if self.max_len is not None and n + t > self.max_len:
            raise ValueError(
                f"KVCache is full: {n} cached + {t} new tokens > max_len={self.max_len}"
            )
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            # Writing in place would modify tensors that autograd saved: concatenate instead.
            self._k = k.clone() if n == 0 else torch.cat([self._k[:, :, :n], k], dim=2)
            self._v = v.clone() if n == 0 else torch.cat([self._v[:, :, :n], v], dim=2)
        else:
            if n == 0 or self._k.shape[2] < n + t:
                self._reserve(k, v, n + t)
            self._k.narrow(2, n, t).copy_(k)  # a decoding step copies one token
            self._v.narrow(2, n, t).copy_(v)
        self._len = n + t
        return self._k.narrow(2, 0, n + t), self._v.narrow(2, 0, n + t)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` ``(B_new,)``, in that order, repeats allowed (beam search).

        ``k, v`` ``(B, Hkv, T, D) -> (B_new, Hkv, T, D)``: row ``i`` becomes old row
        ``index[i]``, as :func:`torch.index_select` along axis 0.

        >>> cache = KVCache()
        >>> _ = cache.append(torch.arange(3.0).view(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
        >>> cache.reorder(torch.tensor([2, 2, 0])); cache.k.flatten().tolist()
        [2.0, 2.0, 0.0]
        """
        if self._len == 0:
            return
        if not isinstance(index, Tensor) or index.ndim != 1 or index.is_floating_point():
            raise ValueError(f"index must be a 1-D integer tensor of batch rows, got {index!r}")
        b = self._k.shape[0]
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= b):
            raise ValueError(f"index holds rows outside [0, {b}): {index.tolist()}")
        index = index.to(self._k.device, torch.long)
        n = self._len  # copy the filled part only, into buffers of the same capacity
        new_k = self._k.new_empty((index.numel(), *self._k.shape[1:]))
        new_v = self._v.new_empty((index.numel(), *self._v.shape[1:]))
        new_k[:, :, :n] = self._k[:, :, :n].index_select(0, index)
        new_v[:, :, :n] = self._v[:, :, :n].index_select(0, index)
        self._k, self._v = new_k, new_v

    def reset(self) -> None:
        """Forget every cached token (the buffers are kept for reuse)."""
        self._len = 0

    def __repr__(self) -> str:
        shape = None if self._len == 0 else tuple(self.k.shape)
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
            layer (``i - w < j <= i``); see :func:`minigpt.attention.sparse.gpt3_layer_windows`.
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
        self, t_q: int, t_k: int, mask: Tensor | None, like: Tensor, include_band: bool = True
    ) -> Tensor | None:
        """The band (if ``window`` and ``include_band``), ALiBi bias and user ``mask``
        combined; ``None`` if none."""
        band = None
        if self.window is not None and include_band:
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
        causal = self.causal
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, offset + T, Dh)
            # A single new query sits after every cached key: causal masking blocks nothing,
            # so no mask is built (a decoding step).
            causal = causal and q.shape[2] > 1
        # The band travels as ``window``: the "flex" backend skips the tiles outside it.
        attn_mask = self.attention_mask(q.shape[2], k.shape[2], mask, x, include_band=False)
        y = attention(
            q, k, v,
            causal=causal,
            mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            backend=self.backend,
            window=self.window,
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
