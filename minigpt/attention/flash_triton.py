"""The FlashAttention forward as a Triton kernel (causal or not, any length, grouped-query heads).

:mod:`minigpt.attention.flash` explains the algorithm in plain PyTorch, where every tile is a
separate
PyTorch call.  Here one *program* of the kernel owns ``BLOCK_M`` query rows of one (batch, head):
it loads its queries once, walks over the keys and values ``BLOCK_N`` at a time, keeps the
running max ``m``, running sum ``l`` and the unnormalized output in registers, and writes only
the final ``(BLOCK_M, D)`` output and the ``BLOCK_M`` logsumexps back to GPU memory.  The scores
never leave the chip; that, not the arithmetic, is what makes FlashAttention fast.

* Grid: ``(ceil(Tq / BLOCK_M), B * H)``; query head ``h`` reads key/value head
  ``h // (H / Hkv)``, so grouped-query attention costs no copy.
* Any length: loads past ``Tq`` or ``Tk`` are masked, and so are their scores (``-inf``).
  Head sizes are padded to a power of two (at least 16, the smallest ``tl.dot``).
* Causal (bottom-right aligned, as in :mod:`minigpt.attention`): a program stops at the last key
  its rows can see, skipping the tiles above the diagonal.
* Accumulation in float32 (float64 for float64 inputs); float32 products use ``"ieee"``
  precision, not TF32, so the result matches PyTorch to about ``1e-6``.
* Backward: :class:`TritonAttentionFunction` saves the output and logsumexp and reuses the
  recomputing backward of :func:`minigpt.attention.flash.flash_backward` (in PyTorch), so the
   backend can
  train; only the forward is a kernel.

The kernel is compiled for CUDA tensors.  On a machine without a GPU, Triton's interpreter runs
it on CPU tensors (slowly, with NumPy) when the environment variable ``TRITON_INTERPRET=1`` is
set **before triton is first imported** (Triton builds its standard library at import time).
Importing this module does not import triton: that happens at the first launch, so setting the
variable before the first call suffices unless something else imported triton earlier; the
tests run the interpreter in a fresh subprocess for that reason.  Without the ``triton``
package, :func:`triton_attention` raises an ImportError saying how to install it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from einops import reduce
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from minigpt.attention._common import check_qkv, repeat_kv
from minigpt.attention.flash import flash_backward

# The optional dependency, imported at first use by _import_triton() (see the docstring).
triton: Any = None
tl: Any = None

__all__ = [
    "TritonAttentionFunction",
    "interpreter_enabled",
    "is_available",
    "triton_attention",
    "triton_forward",
]


def is_available() -> bool:
    """Whether the ``triton`` package is installed (checked without importing it)."""
    return triton is not None or importlib.util.find_spec("triton") is not None


def _import_triton() -> None:
    """Import triton into this module's globals, where the kernel's ``tl`` is looked up."""
    global triton, tl
    if triton is not None:
        return
    try:
        import triton as triton_module
        import triton.language as tl_module
    except ImportError as err:
        raise ImportError(
            "attention backend 'triton' needs the triton package, which is not installed; "
            "install it with `pip install triton` (Linux), or use backend 'naive', 'tiled' or "
            "'sdpa'"
        ) from err
    triton, tl = triton_module, tl_module


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET=1``: kernels then run on CPU tensors in Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _flash_forward_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, scale_ptr,  # scale: a 1-element tensor
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    n_heads, group, t_q, t_k, d_qk, d_v,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program: rows ``BLOCK_M * pid_m ..`` of one (batch, head); see the module docstring."""
    pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // n_heads, pid_bh % n_heads
    h_kv = h // group
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query indices        (BLOCK_M,)
    cols0 = tl.arange(0, BLOCK_N)  # key indices within a tile                (BLOCK_N,)
    dq, dv = tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_DV)  # feature indices

    q_base = q_ptr + b * stride_qb + h * stride_qh
    q_ptrs = q_base + rows[:, None] * stride_qt + dq[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=(rows[:, None] < t_q) & (dq[None, :] < d_qk), other=0.0)
    scale = tl.load(scale_ptr)  # a Python float would arrive as float32, too coarse for float64
    k_base = k_ptr + b * stride_kb + h_kv * stride_kh
    v_base = v_ptr + b * stride_vb + h_kv * stride_vh

    m = tl.full([BLOCK_M], float("-inf"), ACC)  # running max
    l = tl.zeros([BLOCK_M], ACC)  # noqa: E741    running sum of exp(s - m)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], ACC)  #    running sum of exp(s - m) v
    shift = t_k - t_q  # query i sits at position shift + i
    hi = t_k
    if CAUSAL:
        hi = tl.minimum(t_k, (pid_m + 1) * BLOCK_M + shift)  # the last key these rows can see
    for start in range(0, hi, BLOCK_N):
        cols = start + cols0
        kt_ptrs = k_base + cols[None, :] * stride_kt + dq[:, None] * stride_kd  # K^T tile
        kt = tl.load(kt_ptrs, mask=(cols[None, :] < t_k) & (dq[:, None] < d_qk), other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION).to(ACC) * scale  # (BLOCK_M, BLOCK_N)
        valid = (cols[None, :] < t_k) & (rows[:, None] < t_q)
        if CAUSAL:
            valid = valid & (cols[None, :] <= rows[:, None] + shift)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing seen yet
        p = tl.exp(s - m_ref[:, None])
        alpha = tl.exp(m - m_ref)  # rescale the old sums to the new max
        l = alpha * l + tl.sum(p, 1)  # noqa: E741
        v_ptrs = v_base + cols[:, None] * stride_vt + dv[None, :] * stride_vd
        v = tl.load(v_ptrs, mask=(cols[:, None] < t_k) & (dv[None, :] < d_v), other=0.0)
        acc = alpha[:, None] * acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION).to(ACC)
        m = m_new

    seen = l > 0
    l_safe = tl.where(seen, l, 1.0)
    out = acc / l_safe[:, None]
    o_base = o_ptr + b * stride_ob + h * stride_oh
    o_ptrs = o_base + rows[:, None] * stride_ot + dv[None, :] * stride_od
    o_mask = (rows[:, None] < t_q) & (dv[None, :] < d_v)
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=o_mask)
    lse = tl.where(seen, m + tl.log(l_safe), float("-inf"))
    tl.store(lse_ptr + pid_bh * t_q + rows, lse, mask=rows < t_q)


_KERNELS: dict[bool, Any] = {}


def _kernel() -> Any:
    """``triton.jit(_flash_forward_kernel)``, made at first use (per interpreter setting)."""
    _import_triton()
    interpret = interpreter_enabled()
    if interpret not in _KERNELS:
        _KERNELS[interpret] = triton.jit(_flash_forward_kernel)
    return _KERNELS[interpret]


def _check_device(q: Tensor) -> None:
    if q.is_cuda or (interpreter_enabled() and q.device.type == "cpu"):
        return
    raise ValueError(
        f"the Triton kernel runs on CUDA tensors, got a tensor on {q.device}; allowed: CUDA "
        "tensors, or CPU tensors with the environment variable TRITON_INTERPRET=1 (Triton's "
        "slow interpreter, for testing)"
    )


def _block_sizes(q: Tensor, d_qk: int, d_v: int) -> tuple[int, int]:
    """Default tiles: small in the interpreter and for float64, 64 x 64 on a GPU otherwise."""
    if not q.is_cuda:
        return 16, 16
    if q.dtype == torch.float64 or max(d_qk, d_v) > 128:
        return 32, 32
    return 64, 64


def triton_forward(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, scale: float | None = None,
    block_m: int | None = None, block_n: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the kernel: ``o (B, H, Tq, Dv)`` in the input dtype and logsumexp ``(B, H, Tq)`` in
    the accumulation dtype.  ``k, v`` may have fewer heads ``Hkv`` dividing ``H``."""
    check_qkv(q, k, v)
    kernel = _kernel()
    _check_device(q)
    b, h, t_q, d_qk = q.shape
    h_kv, t_k, d_v = k.shape[1], k.shape[2], v.shape[3]
    default_m, default_n = _block_sizes(q, d_qk, d_v)
    block_m, block_n = block_m or default_m, block_n or default_n
    for name, value in (("block_m", block_m), ("block_n", block_n)):
        if value < 16 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {value}")
    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    o = torch.empty((b, h, t_q, d_v), dtype=q.dtype, device=q.device)
    lse = torch.empty((b, h, t_q), dtype=acc_dtype, device=q.device)
    scale_t = torch.full((1,), d_qk**-0.5 if scale is None else scale, dtype=acc_dtype,
                         device=q.device)
    grid = (triton.cdiv(t_q, block_m), b * h)
    launch = {} if not q.is_cuda else {"num_warps": 4, "num_stages": 2}
    kernel[grid](
        q, k, v, o, lse, scale_t,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        h, h // h_kv, t_q, t_k, d_qk, d_v,
        CAUSAL=causal, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(d_qk)),
        BLOCK_DV=max(16, triton.next_power_of_2(d_v)),
        ACC=tl.float64 if acc_dtype == torch.float64 else tl.float32,
        PRECISION="ieee" if q.dtype in (torch.float32, torch.float64) else None,
        **launch,
    )
    return o, lse


class TritonAttentionFunction(torch.autograd.Function):
    """Triton forward; backward by :func:`minigpt.attention.flash.flash_backward` from the saved
    logsumexp.  ``apply(q, k, v, causal, scale, block_m, block_n)``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, causal: bool, scale: float | None,
        block_m: int | None, block_n: int | None,
    ) -> Tensor:
        o, lse = triton_forward(q, k, v, causal=causal, scale=scale, block_m=block_m,
                                block_n=block_n)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, do: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, o, lse = ctx.saved_tensors
        n_rep = q.shape[1] // k.shape[1]
        dq, dk, dv = flash_backward(
            do, q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), o, lse, causal=ctx.causal,
            scale=ctx.scale,
        )
        # A shared key/value head collects the gradients of every query head in its group.
        dk = reduce(dk, "b (h r) t d -> b h t d", "sum", r=n_rep)
        dv = reduce(dv, "b (h r) t d -> b h t d", "sum", r=n_rep)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def triton_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, scale: float | None = None,
    block_m: int | None = None, block_n: int | None = None,
) -> Tensor:
    """FlashAttention forward as a Triton kernel, differentiable (backward in PyTorch).

    Args:
        q: ``(B, H, Tq, D)`` on CUDA (or CPU with ``TRITON_INTERPRET=1``).
        k, v: ``(B, Hkv, Tk, D)`` and ``(B, Hkv, Tk, Dv)``, ``Hkv`` dividing ``H``.
        causal: bottom-right aligned causal mask; no other mask is supported.
        scale: default ``1 / sqrt(D)``.
        block_m, block_n: tile sizes (powers of two >= 16); defaults depend on the device.

    Returns:
        ``(B, H, Tq, Dv)``, equal to :func:`minigpt.attention.naive_attention`.
    """
    _import_triton()
    check_qkv(q, k, v)
    _check_device(q)
    return TritonAttentionFunction.apply(q, k, v, causal, scale, block_m, block_n)
