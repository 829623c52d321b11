"""Tests for minigpt.attention.flash (tiled FlashAttention in PyTorch) and
minigpt.attention.flash_triton.

The tiled forward and its recomputing backward are compared with naive attention and autograd
on fresh random inputs.  The Triton kernel runs compiled on a GPU when there is one; otherwise
Triton's interpreter runs it on the CPU.  The interpreter must be switched on before triton is
first imported, so on CPU this file runs itself in a subprocess with ``TRITON_INTERPRET=1``
(``python tests/test_flash.py``) and the tests check what it reports.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from minigpt.attention import attention, flash_triton, naive_attention
from minigpt.attention.flash import flash_attention, flash_forward, online_softmax

F32, F64 = torch.float32, torch.float64
TOL = {F32: {"rtol": 1e-5, "atol": 1e-5}, F64: {"rtol": 1e-10, "atol": 1e-10}}


def qkv(b, h, h_kv, t_q, t_k, d, *, seed, dtype=F64, d_v=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, d, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(b, h_kv, t_k, d, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(b, h_kv, t_k, d_v or d, generator=g, dtype=dtype, requires_grad=True)
    return q, k, v


def grads(out, inputs, seed):
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, dy.to(out.device))


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=2), n=st.integers(1, 40),
       block=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_online_softmax_equals_softmax(shape, n, block, seed) -> None:
    x = torch.randn(*shape, n, generator=torch.Generator().manual_seed(seed), dtype=F64) * 10
    torch.testing.assert_close(online_softmax(x, block), x.softmax(-1), **TOL[F64])


def test_forward_logsumexp_is_the_row_logsumexp() -> None:
    q, k, v = qkv(2, 3, 3, 45, 45, 8, seed=0)
    o, lse = flash_forward(q, k, v, causal=True, block_q=16, block_k=8)
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    scores = scores.masked_fill(torch.ones(45, 45, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(lse, scores.logsumexp(-1), **TOL[F64])
    torch.testing.assert_close(o, naive_attention(q, k, v, causal=True), **TOL[F64])


# (B, H, Hkv, Tq, Tk, D, block_q, block_k): lengths not multiples of the tiles, one tile bigger
# than the sequence, Tq < Tk (decoding) and Tq > Tk (rows that see nothing), 1 to n heads.
CASES = [
    (2, 1, 1, 70, 70, 8, 16, 16),
    (1, 4, 2, 70, 70, 16, 32, 16),
    (2, 3, 1, 33, 33, 8, 8, 32),
    (1, 2, 2, 5, 70, 8, 4, 16),
    (1, 2, 1, 70, 20, 8, 16, 8),
    (1, 2, 2, 13, 13, 8, 64, 64),
    (1, 1, 1, 1, 1, 4, 16, 16),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_tiled_forward_and_backward_equal_naive(case, causal, dtype) -> None:
    b, h, h_kv, t_q, t_k, d, bq, bk = case
    q, k, v = qkv(b, h, h_kv, t_q, t_k, d, seed=t_q + t_k + h, dtype=dtype)
    out = flash_attention(q, k, v, causal=causal, block_q=bq, block_k=bk)
    ref = naive_attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    for ours, theirs in zip(grads(out, (q, k, v), 1), grads(ref, (q, k, v), 1), strict=True):
        torch.testing.assert_close(ours, theirs, **TOL[dtype])


@settings(max_examples=25, deadline=None)
@given(
    h_kv=st.integers(1, 2), group=st.integers(1, 3), t_q=st.integers(1, 50),
    t_k=st.integers(1, 50), d=st.integers(1, 9), block_q=st.integers(1, 24),
    block_k=st.integers(1, 24), causal=st.booleans(), seed=st.integers(0, 2**16),
)
def test_property_tiled_equals_naive_forward_and_backward(
    h_kv, group, t_q, t_k, d, block_q, block_k, causal, seed
) -> None:
    q, k, v = qkv(1, h_kv * group, h_kv, t_q, t_k, d, seed=seed)
    out = flash_attention(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
    ref = naive_attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, ref, **TOL[F64])
    for ours, theirs in zip(grads(out, (q, k, v), 1), grads(ref, (q, k, v), 1), strict=True):
        torch.testing.assert_close(ours, theirs, **TOL[F64])


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_tiled_with_masks_forward_and_backward(kind) -> None:
    q, k, v = qkv(2, 4, 2, 50, 61, 8, seed=3, d_v=6)
    g = torch.Generator().manual_seed(4)
    if kind == "bool":
        mask = torch.rand(2, 1, 50, 61, generator=g) > 0.4
        mask[0, 0, 7] = False  # a row that sees nothing
    else:
        mask = torch.randn(4, 50, 61, generator=g, dtype=F64)
    out = flash_attention(q, k, v, causal=True, mask=mask, scale=0.2, block_q=16, block_k=16)
    ref = naive_attention(q, k, v, causal=True, mask=mask, scale=0.2)
    torch.testing.assert_close(out, ref, **TOL[F64])
    for ours, theirs in zip(grads(out, (q, k, v), 2), grads(ref, (q, k, v), 2), strict=True):
        torch.testing.assert_close(ours, theirs, **TOL[F64])


def test_tiled_half_precision_accumulates_in_float32() -> None:
    q, k, v = (x.detach().to(torch.bfloat16) for x in qkv(1, 2, 2, 40, 40, 16, seed=5))
    out = flash_attention(q, k, v, causal=True, block_q=16, block_k=16)
    assert out.dtype == torch.bfloat16
    ref = naive_attention(q.double(), k.double(), v.double(), causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_tiled_never_forms_the_score_matrix() -> None:
    b, h, t, d, block = 1, 2, 256, 8, 32
    q, k, v = qkv(b, h, h, t, t, d, seed=6)
    with _LargestTensor() as naive_mode:
        out = naive_attention(q, k, v, causal=True)
        grads(out, (q, k, v), 0)
    with _LargestTensor() as tiled_mode:
        out = flash_attention(q, k, v, causal=True, block_q=block, block_k=block)
        grads(out, (q, k, v), 0)
    assert naive_mode.largest >= b * h * t * t  # the (B, H, T, T) scores
    assert tiled_mode.largest <= b * h * max(t * d, block * block)  # inputs, outputs, one tile


def test_tiled_errors() -> None:
    q, k, v = qkv(1, 2, 2, 8, 8, 4, seed=0)
    with pytest.raises(ValueError, match="block_q must be a positive integer, got 0"):
        flash_attention(q, k, v, block_q=0)
    mask = torch.zeros(8, 8, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="gives no gradient to mask"):
        flash_attention(q, k, v, mask=mask)
    with pytest.raises(ValueError, match="block must be >= 1"):
        online_softmax(q, 0)


# --------------------------------------------------------------------------- Triton

# (B, H, Hkv, Tq, Tk, D, Dv, causal, dtype): small, as the interpreter is slow.
TRITON_CASES = [
    (2, 2, 2, 70, 70, 16, 16, True, "float32"),
    (1, 4, 1, 33, 70, 16, 16, True, "float32"),  # multi-query, decoding-like Tq < Tk
    (1, 1, 1, 17, 17, 8, 24, False, "float32"),  # head sizes padded to 16 and 32
    (1, 2, 2, 1, 40, 16, 16, True, "float32"),  # one new token
    (1, 4, 2, 70, 33, 16, 16, True, "float64"),  # grouped-query, rows that see nothing
    (2, 2, 1, 45, 45, 16, 16, False, "float64"),
]
HAS_TRITON = flash_triton.is_available()
ON_GPU = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed (pip install triton); CI installs it"
)


def run_triton_cases(device: str) -> list[dict]:
    """Forward and gradient errors of the Triton backend against naive attention, per case,
    plus a KV-cache decode through MultiHeadAttention(backend='triton')."""
    from minigpt.attention import KVCache, MultiHeadAttention

    results = []
    for i, (b, h, h_kv, t_q, t_k, d, d_v, causal, dtype_name) in enumerate(TRITON_CASES):
        dtype = getattr(torch, dtype_name)
        q, k, v = (x.detach().to(device).requires_grad_() for x in qkv(
            b, h, h_kv, t_q, t_k, d, d_v=d_v, seed=i, dtype=dtype))
        if i == 0:  # non-contiguous inputs: (B, T, H, D) memory viewed as (B, H, T, D)
            q = q.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
        out = attention(q, k, v, causal=causal, backend="triton")
        ref = naive_attention(q, k, v, causal=causal)
        grad_err = max((a - b).abs().max().item() for a, b in zip(
            grads(out, (q, k, v), i), grads(ref, (q, k, v), i), strict=True))
        results.append({"case": i, "dtype": dtype_name, "shape": list(out.shape),
                        "forward": (out - ref).abs().max().item(), "backward": grad_err})
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, 2, backend="triton", positions="rope").to(device)
    x = torch.randn(2, 9, 32, device=device)
    cache = KVCache()
    with torch.no_grad():
        steps = torch.cat([mha(x[:, :4], cache=cache)] + [
            mha(x[:, t : t + 1], cache=cache) for t in range(4, 9)], dim=1)
        mha.backend = "naive"
        full = mha(x)
    results.append({"case": "kv_cache", "dtype": "float32", "shape": list(full.shape),
                    "forward": (steps - full).abs().max().item(), "backward": 0.0})
    return results


@pytest.fixture(scope="module")
def triton_results() -> dict:
    if ON_GPU:
        results = run_triton_cases("cuda")
    else:
        env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, __file__], env=env, cwd=root,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {str(r["case"]): r for r in results}


@needs_triton
@pytest.mark.parametrize("case", [str(i) for i in range(len(TRITON_CASES))] + ["kv_cache"])
def test_triton_equals_naive(triton_results, case) -> None:
    r = triton_results[case]
    tol = TOL[getattr(torch, r["dtype"])]["atol"]
    assert r["forward"] <= tol, r
    assert r["backward"] <= tol, r


@needs_triton
@pytest.mark.skipif(ON_GPU, reason="checks the CPU error; this machine has a GPU")
def test_triton_on_cpu_without_interpreter_says_how(monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q = torch.zeros(1, 1, 4, 16)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        flash_triton.triton_attention(q, q, q)


def test_triton_missing_raises_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(flash_triton, "triton", None)
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now fails
    q = torch.zeros(1, 1, 4, 16)
    with pytest.raises(ImportError, match="needs the triton package.*pip install triton"):
        attention(q, q, q, backend="triton")


@needs_triton
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU (compiled kernel, half precision)")
def test_triton_compiled_half_precision() -> None:
    q, k, v = (x.detach().cuda().half() for x in qkv(2, 8, 8, 300, 300, 64, seed=0))
    out = attention(q, k, v, causal=True, backend="triton")
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, rtol=2e-3, atol=2e-3)


if __name__ == "__main__":  # the interpreter subprocess of triton_results
    assert importlib.util.find_spec("triton") and os.environ.get("TRITON_INTERPRET") == "1"
    torch.set_num_threads(1)
    print(json.dumps(run_triton_cases("cpu")))
