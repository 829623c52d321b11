r"""FlashAttention in plain PyTorch: tiles, an online softmax, and a backward by recomputation.

Naive attention builds the whole ``(Tq, Tk)`` score matrix per head: memory quadratic in the
context length, and on a GPU most of the time goes into writing that matrix to slow memory and
reading it back.  FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023) computes the same
output one ``(block_q, block_k)`` tile at a time and never stores more than a tile of scores.
The obstacle is the softmax, whose denominator needs *all* the scores of a row.  The fix is an
**online softmax** (Milakov & Gimelshein 2018).

**Derivation.**  Take one query row with scores ``s_j = q . k_j * scale`` and values ``v_j``.
The softmax is unchanged when every score is shifted by the same constant ``m``, and choosing
``m = max_j s_j`` keeps every ``exp`` at most 1 (no overflow)::

    o = sum_j exp(s_j - m) v_j / sum_j exp(s_j - m)

Process the keys in blocks and keep three running quantities over the blocks seen so far: the
maximum ``m``, the sum ``l = sum exp(s_j - m)`` and the unnormalized output
``acc = sum exp(s_j - m) v_j``.  A new block with scores ``s'`` raises the maximum to
``m' = max(m, max s')``.  Every old term was computed against ``m``; multiplying it by
``exp(m - m')`` re-expresses it against ``m'``, since ``exp(s - m) exp(m - m') = exp(s - m')``::

    m'   = max(m, max_j s'_j)
    l'   = exp(m - m') l   + sum_j exp(s'_j - m')
    acc' = exp(m - m') acc + sum_j exp(s'_j - m') v'_j

Start from ``m = -inf, l = 0, acc = 0``; after the last block ``o = acc / l`` exactly, with no
approximation.  The logsumexp of the row, ``L = m + log l``, is kept for the backward pass
(``L = -inf`` for a row that may attend to nothing, whose output is 0).

**Backward by recomputation** (FlashAttention-2's algorithm).  Autograd through the loop above
would save every tile's probabilities, ``Tq x Tk`` numbers again.  Instead the forward saves
only ``O`` and ``L`` (linear in ``T``) and the backward rebuilds each tile:
``P_ij = exp(s_ij - L_i)`` is the exact softmax weight.  With ``dO`` the output gradient::

    dV_j  = sum_i P_ij dO_i
    dP_ij = dO_i . V_j
    dS_ij = P_ij (dP_ij - D_i),    D_i = sum_j P_ij dP_ij = dO_i . O_i
    dQ_i  = scale sum_j dS_ij K_j,    dK_j = scale sum_i dS_ij Q_i

(``dS`` is the softmax Jacobian applied to ``dP``; ``D_i`` comes from ``O`` and ``dO`` without any
tile.)  The recomputation costs one more ``Q K^T`` product, which FlashAttention happily trades
for memory.  :class:`FlashAttentionFunction` is that ``torch.autograd.Function``.

Causal attention skips tiles entirely above the diagonal: about half the work.  On a CPU these
Python loops over tiles are slower than one big matrix product; what they show is the memory,
``O(block_q * block_k)`` per batch and head instead of ``O(Tq * Tk)`` (see
``benchmarks/attention.py``).  :mod:`minigpt.attention.flash_triton` runs the same forward as a
GPU kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from minigpt.attention._common import check_mask, check_qkv, repeat_kv
from minigpt.checks import check_int

__all__ = [
    "FlashAttentionFunction",
    "flash_attention",
    "flash_backward",
    "flash_forward",
    "online_softmax",
]

NEG_INF = float("-inf")


def online_softmax(x: Tensor, block: int) -> Tensor:
    """Softmax over the last axis, reading ``x`` in blocks of ``block`` with a running max and sum.

    One pass finds ``m`` and ``l = sum exp(x - m)``; then ``exp(x - m) / l``.  Equals
    ``x.softmax(-1)``.

    >>> x = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0])
    >>> torch.allclose(online_softmax(x, block=2), x.softmax(-1))
    True
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    m = torch.full(x.shape[:-1], NEG_INF, dtype=x.dtype, device=x.device)
    l = torch.zeros_like(m)  # noqa: E741 (the paper's name)
    for start in range(0, x.shape[-1], block):
        chunk = x[..., start : start + block]
        m_new = torch.maximum(m, chunk.amax(dim=-1))
        l = l * torch.exp(m - m_new) + torch.exp(chunk - m_new[..., None]).sum(dim=-1)  # noqa: E741
        m = m_new
    return torch.exp(x - m[..., None]) / l[..., None]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precision inputs, else the input dtype (float32 or float64)."""
    return torch.promote_types(dtype, torch.float32)


def _key_end(q1: int, t_q: int, t_k: int, causal: bool) -> int:
    """Keys ``j < _key_end`` can be seen by queries ``< q1`` (query i sits at t_k - t_q + i)."""
    return max(0, min(t_k, q1 + t_k - t_q)) if causal else t_k


def _mask_tile(
    s: Tensor, q0: int, k0: int, t_q: int, t_k: int, causal: bool, mask: Tensor | None
) -> Tensor:
    """Apply the causal mask and the tile ``[q0:q0+bq, k0:k0+bk]`` of ``mask`` to scores ``s``
    of shape ``(B, H, bq, bk)``."""
    bq, bk = s.shape[-2:]
    if causal and k0 + bk - 1 > q0 + t_k - t_q:  # the tile crosses the diagonal
        i = torch.arange(q0, q0 + bq, device=s.device).view(-1, 1) + (t_k - t_q)
        j = torch.arange(k0, k0 + bk, device=s.device).view(1, -1)
        s = s.masked_fill(j > i, NEG_INF)
    if mask is not None:
        tile = mask[..., q0 : q0 + bq, k0 : k0 + bk]
        s = s.masked_fill(~tile, NEG_INF) if tile.dtype == torch.bool else s + tile.to(s.dtype)
    return s


def flash_forward(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None, block_q: int = 64, block_k: int = 64,
) -> tuple[Tensor, Tensor]:
    """Tiled attention forward with an online softmax.

    Args:
        q: ``(B, H, Tq, D)``; k: ``(B, H, Tk, D)``; v: ``(B, H, Tk, Dv)`` (equal head counts).
        mask: ``None`` or a bool/additive mask already expanded to ``(B, H, Tq, Tk)`` (a view).

    Returns:
        ``o (B, H, Tq, Dv)`` and the row logsumexp ``L (B, H, Tq)``, both in the accumulation
        dtype (float32 for half inputs).
    """
    b, h, t_q, _ = q.shape
    t_k, acc_dtype = k.shape[2], _accumulation_dtype(q.dtype)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o = q.new_zeros(b, h, t_q, v.shape[-1], dtype=acc_dtype)
    lse = q.new_full((b, h, t_q), NEG_INF, dtype=acc_dtype)
    for q0 in range(0, t_q, block_q):
        q_tile = q[:, :, q0 : q0 + block_q].to(acc_dtype) * scale  # (B, H, bq, D)
        m = q.new_full(q_tile.shape[:-1], NEG_INF, dtype=acc_dtype)  # running max   (B, H, bq)
        l = torch.zeros_like(m)  # noqa: E741                          running sum   (B, H, bq)
        acc = q.new_zeros(*q_tile.shape[:-1], v.shape[-1], dtype=acc_dtype)  # (B, H, bq, Dv)
        for k0 in range(0, _key_end(q0 + q_tile.shape[2], t_q, t_k, causal), block_k):
            k_tile = k[:, :, k0 : k0 + block_k].to(acc_dtype)  # (B, H, bk, D)
            v_tile = v[:, :, k0 : k0 + block_k].to(acc_dtype)  # (B, H, bk, Dv)
            s = _mask_tile(q_tile @ k_tile.transpose(-1, -2), q0, k0, t_q, t_k, causal, mask)
            m_new = torch.maximum(m, s.amax(dim=-1))
            m_ref = torch.where(m_new == NEG_INF, 0.0, m_new)  # all -inf so far: any finite ref
            p = torch.exp(s - m_ref[..., None])  # (B, H, bq, bk)
            alpha = torch.exp(m - m_ref)  # rescales the old sums; 0 while m = -inf
            l = alpha * l + p.sum(dim=-1)  # noqa: E741
            acc = alpha[..., None] * acc + p @ v_tile
            m = m_new
        seen, l = l > 0, l.clamp_min(torch.finfo(acc_dtype).tiny)  # noqa: E741
        o[:, :, q0 : q0 + block_q] = torch.where(seen[..., None], acc / l[..., None], 0.0)
        lse[:, :, q0 : q0 + block_q] = torch.where(seen, m + l.log(), NEG_INF)
    return o, lse


def flash_backward(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, *, causal: bool = False,
    mask: Tensor | None = None, scale: float | None = None, block_q: int = 64, block_k: int = 64,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients ``dq, dk, dv`` from the saved output ``o`` and logsumexp ``lse``, tile by tile.

    Shapes as :func:`flash_forward`; ``do`` is ``(B, H, Tq, Dv)``.  Outer loop over key tiles,
    inner over query tiles (FlashAttention-2): each ``dK, dV`` tile is finished in one pass,
    ``dQ`` accumulates.  Results are in the accumulation dtype.
    """
    t_q, t_k, acc_dtype = q.shape[2], k.shape[2], _accumulation_dtype(q.dtype)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    do, o = do.to(acc_dtype), o.to(acc_dtype)
    d_row = (do * o).sum(dim=-1)  # D_i = dO_i . O_i, (B, H, Tq)
    lse = torch.where(lse == NEG_INF, float("inf"), lse)  # empty rows: P = exp(-inf) = 0
    dq = torch.zeros(q.shape, dtype=acc_dtype, device=q.device)
    dk = torch.zeros(k.shape, dtype=acc_dtype, device=k.device)
    dv = torch.zeros(v.shape, dtype=acc_dtype, device=v.device)
    for k0 in range(0, t_k, block_k):
        k_tile = k[:, :, k0 : k0 + block_k].to(acc_dtype)  # (B, H, bk, D)
        v_tile = v[:, :, k0 : k0 + block_k].to(acc_dtype)  # (B, H, bk, Dv)
        first_q = max(0, k0 - (t_k - t_q)) if causal else 0  # earlier queries cannot see k0..
        for q0 in range(first_q, t_q, block_q):
            rows = slice(q0, q0 + block_q)
            q_tile = q[:, :, rows].to(acc_dtype) * scale  # (B, H, bq, D)
            s = _mask_tile(q_tile @ k_tile.transpose(-1, -2), q0, k0, t_q, t_k, causal, mask)
            p = torch.exp(s - lse[:, :, rows, None])  # (B, H, bq, bk), exact softmax weights
            dv[:, :, k0 : k0 + block_k] += p.transpose(-1, -2) @ do[:, :, rows]
            dp = do[:, :, rows] @ v_tile.transpose(-1, -2)  # (B, H, bq, bk)
            ds = p * (dp - d_row[:, :, rows, None])
            dq[:, :, rows] += (ds @ k_tile) * scale
            dk[:, :, k0 : k0 + block_k] += ds.transpose(-1, -2) @ q_tile  # q_tile has the scale
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Tiled attention whose backward recomputes the tiles from the saved logsumexp.

    ``apply(q, k, v, causal, mask, scale, block_q, block_k)``, with equal head counts and
    ``mask`` ``None`` or expanded to ``(B, H, Tq, Tk)``; returns ``(B, H, Tq, Dv)``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, causal: bool, mask: Tensor | None,
        scale: float | None, block_q: int, block_k: int,
    ) -> Tensor:
        o, lse = flash_forward(
            q, k, v, causal=causal, mask=mask, scale=scale, block_q=block_q, block_k=block_k
        )
        ctx.save_for_backward(q, k, v, o, lse, mask)
        ctx.options = {"causal": causal, "scale": scale, "block_q": block_q, "block_k": block_k}
        return o.to(q.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, do: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, o, lse, mask = ctx.saved_tensors
        dq, dk, dv = flash_backward(do, q, k, v, o, lse, mask=mask, **ctx.options)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None



def flash_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None,
    scale: float | None = None, block_q: int = 64, block_k: int = 64,
) -> Tensor:
    """FlashAttention (tiled, online softmax, recomputing backward) in plain PyTorch.

    Args:
        q: ``(B, H, Tq, D)``; k: ``(B, Hkv, Tk, D)``; v: ``(B, Hkv, Tk, Dv)``; ``Hkv | H``.
        causal: bottom-right aligned causal mask (see :mod:`minigpt.attention`).
        mask: bool (``True`` = may attend) or additive float mask broadcasting to
            ``(B, H, Tq, Tk)``; it receives no gradient.
        scale: default ``1 / sqrt(D)``.
        block_q, block_k: tile sizes; any lengths work, the last tile may be short.

    Returns:
        ``(B, H, Tq, Dv)``, equal to :func:`minigpt.attention.naive_attention`.

    >>> q, k, v = torch.randn(3, 1, 2, 70, 16, dtype=torch.float64)
    >>> from minigpt.attention import naive_attention
    >>> ref = naive_attention(q, k, v, causal=True)
    >>> torch.allclose(flash_attention(q, k, v, causal=True, block_q=32, block_k=16), ref)
    True
    """
    check_qkv(q, k, v)
    check_int("block_q", block_q)
    check_int("block_k", block_k)
    shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        check_mask(mask, shape)
        if mask.requires_grad:
            raise ValueError(
                "the tiled backend gives no gradient to mask; got a mask that requires grad. "
                "Allowed: a mask without grad (e.g. mask.detach()), or backend 'naive'"
            )
        mask = mask.expand(shape)  # a view: no (Tq, Tk) copy per batch and head
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # autograd sums the shared heads' grads
    return FlashAttentionFunction.apply(q, k, v, causal, mask, scale, block_q, block_k)
