"""The FlexAttention backend (minigpt.attention.flex) against naive masked attention: block masks,
forward and gradients, causal and banded, grouped-query heads, extra masks, KV-cache alignment,
and GPT-3's alternating layers in a whole model. Everything runs eagerly on the CPU (exact, the
same mask rule); the compiled kernel is checked with MINIGPT_SLOW_TESTS=1 (about a minute of
inductor on 2 CPU cores) and on CUDA by tools/gpu_run.py."""

from __future__ import annotations

import os

import pytest
import torch

from minigpt.attention import MultiHeadAttention, attention, flex, naive_attention
from minigpt.attention.sparse import causal_mask, local_mask
from minigpt.config import ATTENTION_BACKENDS, GPTConfig
from minigpt.model import GPT

pytestmark = pytest.mark.skipif(not flex.is_available(), reason="torch without flex_attention")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _qkv(b=2, h=4, t_q=200, t_k=None, d=16, h_kv=None, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    t_k = t_q if t_k is None else t_k
    h_kv = h if h_kv is None else h_kv
    q = torch.randn(b, h, t_q, d, generator=g)
    k, v = torch.randn(2, b, h_kv, t_k, d, generator=g)
    return [x.clone().requires_grad_(grad) for x in (q, k, v)]


def test_flex_is_a_backend():
    assert "flex" in ATTENTION_BACKENDS
    assert GPTConfig(n_layer=2, d_model=32, n_heads=4, attention_backend="flex")


@pytest.mark.parametrize("t_q, t_k, window", [(7, 7, None), (7, 7, 3), (3, 9, None), (3, 9, 4),
                                              (1, 5, 2)])
def test_mask_rule_is_the_sparse_module_mask(t_q, t_k, window):
    i, j = torch.arange(t_q).view(-1, 1), torch.arange(t_k).view(1, -1)
    got = flex.mask_rule(t_q, t_k, window)(0, 0, i, j)
    want = causal_mask(t_q, t_k) if window is None else local_mask(t_q, t_k, window=window)
    assert torch.equal(got, want)


def test_block_masks_are_cached_and_skip_empty_tiles():
    dense = flex.block_mask(512, 512)
    band = flex.block_mask(512, 512, window=128)
    assert flex.block_mask(512, 512) is dense and band is not dense
    assert flex.block_mask(512, 512, window=128, device=torch.device("cpu")) is band
    # 4 x 4 tiles of 128: causal keeps 10, a 128-wide band 7 (the diagonal and the one before)
    assert int(dense.kv_num_blocks.sum() + dense.full_kv_num_blocks.sum()) == 10
    assert int(band.kv_num_blocks.sum() + band.full_kv_num_blocks.sum()) == 7
    with pytest.raises(ValueError, match="window"):
        flex.block_mask(8, 8, window=0)
    with pytest.raises(ValueError, match="t_q <= t_k"):
        flex.block_mask(9, 8)


@pytest.mark.parametrize("window", [None, 1, 50, 128, 300])
def test_forward_matches_naive(window):
    q, k, v = _qkv(t_q=300)
    mask = None if window is None else local_mask(300, window=window)
    want = naive_attention(q, k, v, causal=window is None, mask=mask)
    got = flex.flex_attention(q, k, v, causal=True, window=window)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    via_dispatch = attention(q, k, v, causal=True, window=window, backend="flex")
    torch.testing.assert_close(via_dispatch, want, atol=2e-6, rtol=1e-5)


def test_gradients_match_naive():
    # PyTorch's FlexAttention has no CPU backward: there the same rule becomes an SDPA mask
    q, k, v = _qkv(t_q=260, grad=True)
    q2, k2, v2 = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))
    (flex.flex_attention(q, k, v, window=64) * grad_out).sum().backward()
    (naive_attention(q2, k2, v2, mask=local_mask(260, window=64)) * grad_out).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_grouped_query_heads_and_bottom_right_alignment():
    q, k, v = _qkv(h=4, h_kv=2, t_q=5, t_k=140)  # 5 new queries after 135 cached keys
    for window in (None, 16):
        mask = local_mask(5, 140, window=16) if window else None
        want = naive_attention(q, k, v, causal=window is None, mask=mask)
        got = attention(q, k, v, causal=True, window=window, backend="flex")
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_extra_masks_combine_with_the_band():
    q, k, v = _qkv(t_q=40)
    keep = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(3)) > 0.3
    bias = torch.randn(4, 40, 40, generator=torch.Generator().manual_seed(4))
    for extra in (keep, bias):
        want = attention(q, k, v, causal=True, mask=extra, window=8, backend="naive")
        got = attention(q, k, v, causal=True, mask=extra, window=8, backend="flex")
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    nothing = torch.zeros(40, 40, dtype=torch.bool)  # rows that see nothing give zeros
    assert attention(q, k, v, mask=nothing, backend="flex").abs().max() == 0


@pytest.mark.parametrize("backend", ["naive", "tiled", "sdpa", "triton"])
def test_every_backend_takes_a_window(backend):
    q, k, v = _qkv(t_q=33)
    want = naive_attention(q, k, v, mask=local_mask(33, window=5))
    # "triton"'s kernel is dense: banded layers go through SDPA with the band as a mask
    got = attention(q, k, v, causal=True, window=5, backend=backend)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_errors_are_clear():
    q, k, v = _qkv(t_q=8)
    with pytest.raises(ValueError, match="dropout_p"):
        attention(q, k, v, causal=True, dropout_p=0.1, backend="flex")
    with pytest.raises(ValueError, match="window"):
        attention(q, k, v, window=0, backend="flex")


def test_gpt3_alternating_model_flex_equals_sdpa():
    """A GPT with dense and banded layers: the same logits and gradients with either backend."""
    config = GPTConfig(n_layer=4, d_model=32, n_heads=4, vocab_size=50, n_ctx=160,
                       attention_pattern="alternating", local_window=24, attention_backend="sdpa")
    idx = torch.randint(0, 50, (2, 160), generator=torch.Generator().manual_seed(0))
    results = []
    for backend in ("sdpa", "flex"):
        torch.manual_seed(0)
        model = GPT(config.replace(attention_backend=backend))
        _, loss = model(idx, idx.roll(-1, 1))
        loss.backward()
        results.append((loss, [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    attns = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert [(a.window, a.backend) for a in attns] == [(None, "flex"), (24, "flex")] * 2


@pytest.mark.skipif(os.environ.get("MINIGPT_SLOW_TESTS") != "1",
                    reason="inductor compiles the flex kernel for about a minute on 2 CPU cores; "
                           "set MINIGPT_SLOW_TESTS=1 to run it")
def test_compiled_kernel_on_cpu():
    q, k, v = _qkv(b=1, h=2, t_q=256, d=32)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=local_mask(256, window=64))
    got = flex.flex_attention(q, k, v, window=64, compile=True)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


@needs_cuda
@pytest.mark.parametrize("window", [None, 256])
def test_cuda_compiled_flex_forward_and_backward(window):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 1024, 64, device="cuda", dtype=torch.bfloat16, generator=g)
               .requires_grad_(True) for _ in range(3))
    got = attention(q, k, v, causal=True, window=window, backend="flex")
    mask = None if window is None else local_mask(1024, window=window, device="cuda")
    want = attention(q.float(), k.float(), v.float(), causal=window is None, mask=mask,
                     backend="sdpa")
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=2e-2)
    got.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


@needs_cuda
@pytest.mark.skipif(not flex.flash_attn_window_available(), reason="flash-attn not installed")
def test_cuda_flash_attn_sliding_window():
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 1024, 64, device="cuda", dtype=torch.bfloat16, generator=g)
               for _ in range(3))
    got = flex.flash_attn_window(q, k, v, window=256)
    want = naive_attention(q.float(), k.float(), v.float(),
                           mask=local_mask(1024, window=256, device="cuda"))
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=2e-2)


def test_a_compiled_model_traces_flex_without_graph_breaks():
    """torch.compile of a model with banded flex layers: one graph (the block masks are built
    inside it), the same outputs; dynamo's "eager" backend checks the capture in seconds."""
    import torch._dynamo as dynamo

    config = GPTConfig(n_layer=2, d_model=32, n_heads=2, vocab_size=64, n_ctx=256,
                       attention_pattern="alternating", local_window=64, attention_backend="flex")
    model = GPT(config).eval()
    idx = torch.randint(0, 64, (2, 256), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        explained = dynamo.explain(model)(idx)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0)
        compiled = torch.compile(model, backend="eager")
        torch.testing.assert_close(compiled(idx)[0], model(idx)[0])
    dynamo.reset()
