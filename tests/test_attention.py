"""Tests for minigpt.attention: every backend against torch's scaled_dot_product_attention,
MultiHeadAttention against nn.MultiheadAttention, grouped-query heads, the KV cache, errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

from minigpt.attention import (
    KVCache,
    MultiHeadAttention,
    attention,
    attention_weights,
    combine_masks,
    merge_heads,
    repeat_kv,
    resolve_backend,
    split_heads,
)
from minigpt.attention.sparse import causal_mask
from minigpt.config import ATTENTION_BACKENDS
from minigpt.positions import ALiBi, RotaryEmbedding

F32, F64 = torch.float32, torch.float64
TOL = {F32: {"rtol": 1e-5, "atol": 1e-5}, F64: {"rtol": 1e-10, "atol": 1e-10}}
CPU_BACKENDS = ("naive", "tiled", "sdpa")  # "triton" is tested in test_flash.py


def randn(*shape: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def qkv(b, h, h_kv, t_q, t_k, d, *, seed=0, dtype=F64, d_v=None, grad=False):
    q = randn(b, h, t_q, d, seed=seed, dtype=dtype)
    k = randn(b, h_kv, t_k, d, seed=seed + 1, dtype=dtype)
    v = randn(b, h_kv, t_k, d_v or d, seed=seed + 2, dtype=dtype)
    return [x.requires_grad_(grad) for x in (q, k, v)]


def reference(q, k, v, *, causal=False, mask=None):
    """torch's SDPA, with torch's own lower-right causal mask when Tq != Tk."""
    t_q, t_k = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if causal and mask is None and t_q <= t_k:
        bias = causal_lower_right(t_q, t_k) if t_q != t_k else None
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, is_causal=t_q == t_k, enable_gqa=gqa
        )
    if causal:
        lower_right = torch.ones(t_q, t_k, dtype=torch.bool).tril(diagonal=t_k - t_q)
        if mask is None:
            mask = lower_right
        elif mask.dtype == torch.bool:
            mask = mask & lower_right
        else:
            mask = mask.masked_fill(~lower_right, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def make_mask(kind: str, b: int, h: int, t_q: int, t_k: int, seed: int, dtype: torch.dtype):
    if kind == "none":
        return None
    g = torch.Generator().manual_seed(seed + 10)
    if kind == "bool":  # (Tq, Tk), broadcast over batch and heads
        return torch.rand(t_q, t_k, generator=g) > 0.3
    if kind == "bool_bh":  # a different mask per batch element and head
        return torch.rand(b, h, t_q, t_k, generator=g) > 0.5
    if kind == "additive":  # finite biases with some -inf, per head
        bias = torch.randn(1, h, t_q, t_k, generator=g, dtype=dtype)
        return bias.masked_fill(torch.rand(1, h, t_q, t_k, generator=g) < 0.2, float("-inf"))
    raise AssertionError(kind)


# (B, H, Hkv, Tq, Tk, D): 1 to n heads, MQA and GQA, lengths that are not multiples of the tile
# (the tiled backend uses 64 x 64 tiles by default), decoding shapes (Tq < Tk) and Tq > Tk.
SHAPES = [
    (2, 1, 1, 70, 70, 8),
    (1, 3, 3, 33, 33, 16),
    (2, 4, 2, 65, 65, 8),
    (1, 4, 1, 129, 129, 4),
    (2, 2, 2, 1, 17, 8),
    (1, 6, 3, 5, 70, 8),
    (1, 2, 1, 40, 9, 8),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_backends_match_sdpa(backend, dtype, shape, causal) -> None:
    b, h, h_kv, t_q, t_k, d = shape
    q, k, v = qkv(b, h, h_kv, t_q, t_k, d, dtype=dtype, seed=sum(shape))
    out = attention(q, k, v, causal=causal, backend=backend)
    torch.testing.assert_close(out, reference(q, k, v, causal=causal), **TOL[dtype])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["bool", "bool_bh", "additive"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_masks_match_sdpa(backend, kind, causal, dtype) -> None:
    for i, (b, h, h_kv, t_q, t_k, d) in enumerate([(2, 4, 2, 70, 70, 8), (1, 3, 1, 6, 67, 8)]):
        q, k, v = qkv(b, h, h_kv, t_q, t_k, d, dtype=dtype, seed=i)
        mask = make_mask(kind, b, h, t_q, t_k, seed=i, dtype=dtype)
        out = attention(q, k, v, causal=causal, mask=mask, backend=backend)
        torch.testing.assert_close(out, reference(q, k, v, causal=causal, mask=mask), **TOL[dtype])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_match_sdpa(backend) -> None:
    q, k, v = qkv(2, 4, 2, 70, 70, 8, grad=True)
    mask = make_mask("additive", 2, 4, 70, 70, seed=0, dtype=F64)
    out = attention(q, k, v, causal=True, mask=mask, backend=backend)
    ref = reference(q, k, v, causal=True, mask=mask)
    dy = randn(*out.shape, seed=5)
    ours = torch.autograd.grad(out, (q, k, v), dy)
    theirs = torch.autograd.grad(ref, (q, k, v), dy)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[F64])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_scale_and_value_width(backend) -> None:
    q, k, v = qkv(1, 2, 2, 20, 20, 8, d_v=5)
    out = attention(q, k, v, causal=True, scale=0.3, backend=backend)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    torch.testing.assert_close(out, ref, **TOL[F64])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_rows_that_see_nothing_are_zero_like_sdpa(backend) -> None:
    q, k, v = qkv(1, 2, 2, 4, 6, 8)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1] = False
    out = attention(q, k, v, mask=mask, backend=backend)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert torch.all(out[:, :, 1] == 0)


def test_causal_is_bottom_right_aligned_unlike_sdpa_is_causal() -> None:
    """Documented difference: with Tq < Tk the queries are the *last* Tq positions (KV-cache
    decoding); SDPA's is_causal=True aligns top-left, so it differs there, and agrees when
    Tq == Tk."""
    q, k, v = qkv(1, 2, 2, 3, 8, 8)
    ours = attention(q, k, v, causal=True)
    top_left = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    bottom_right = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(3, 8))
    torch.testing.assert_close(ours, bottom_right)
    assert not torch.allclose(ours, top_left)
    assert causal_mask(1, 4).all()  # one new token after three cached ones sees all four


def test_attention_weights_rows_sum_to_one_and_respect_causality() -> None:
    q, k, _ = qkv(2, 3, 3, 10, 10, 8)
    w = attention_weights(q, k, causal=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 10, dtype=F64))
    assert torch.all(w.triu(diagonal=1) == 0)


def test_dropout_naive_zeroes_weights_and_keeps_the_mean() -> None:
    q, k, v = qkv(1, 1, 1, 64, 64, 4)
    v = torch.ones_like(v)  # every output is the sum of the kept weights
    torch.manual_seed(0)
    out = attention(q, k, v, dropout_p=0.5, backend="naive")
    assert (out[..., 0] != 1).any()
    assert abs(out.mean().item() - 1.0) < 0.1  # inverted dropout keeps the expectation


def test_repeat_kv_and_head_split_roundtrip() -> None:
    x = randn(2, 5, 12, seed=0)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    torch.testing.assert_close(merge_heads(heads), x)
    kv = randn(2, 2, 5, 4, seed=1)
    torch.testing.assert_close(repeat_kv(kv, 3), kv.repeat_interleave(3, dim=1))


def test_combine_masks() -> None:
    a = torch.tensor([True, True, False])
    b = torch.tensor([True, False, True])
    assert combine_masks(a, None, b).tolist() == [True, False, False]
    assert combine_masks(None, None) is None
    bias = torch.tensor([0.5, 1.0, 2.0])
    assert combine_masks(a, bias).tolist() == [0.5, 1.0, float("-inf")]


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2), h_kv=st.integers(1, 3), group=st.integers(1, 3),
    t_q=st.integers(1, 40), extra=st.integers(0, 30), d=st.integers(1, 12),
    causal=st.booleans(), seed=st.integers(0, 2**16),
)
def test_property_backends_agree(b, h_kv, group, t_q, extra, d, causal, seed) -> None:
    q, k, v = qkv(b, h_kv * group, h_kv, t_q, t_q + extra, d, seed=seed)
    ref = reference(q, k, v, causal=causal)
    for backend in CPU_BACKENDS:
        torch.testing.assert_close(attention(q, k, v, causal=causal, backend=backend), ref,
                                   **TOL[F64])


# --------------------------------------------------------------------------- MultiHeadAttention


def randomize(module: torch.nn.Module, seed: int) -> None:
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(randn(*p.shape, seed=seed + 100 + i, dtype=p.dtype) * 0.3)


@pytest.mark.parametrize("n_heads", [1, 2, 4])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_mha_matches_nn_multihead_attention(n_heads, backend, dtype) -> None:
    """Same fused (3d, d) in-projection layout; nn.MultiheadAttention's boolean attn_mask is
    True where attention is *blocked* (the opposite of SDPA's and ours)."""
    d, t = 16, 37
    ours = MultiHeadAttention(d, n_heads, backend=backend, dtype=dtype)
    ref = torch.nn.MultiheadAttention(d, n_heads, batch_first=True, dtype=dtype)
    randomize(ref, seed=n_heads)
    with torch.no_grad():
        ours.c_attn.weight.copy_(ref.in_proj_weight)
        ours.c_attn.bias.copy_(ref.in_proj_bias)
        ours.c_proj.weight.copy_(ref.out_proj.weight)
        ours.c_proj.bias.copy_(ref.out_proj.bias)
    x = randn(3, t, d, seed=7, dtype=dtype)
    blocked = ~causal_mask(t)
    expected, _ = ref(x, x, x, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(ours(x), expected, **TOL[dtype])
    non_causal = MultiHeadAttention(d, n_heads, backend=backend, causal=False, dtype=dtype)
    non_causal.load_state_dict(ours.state_dict())
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(non_causal(x), expected, **TOL[dtype])


def test_mha_parameter_layout_is_gpt2s() -> None:
    mha = MultiHeadAttention(48, 4, positions="rope")
    shapes = {name: tuple(p.shape) for name, p in mha.state_dict().items()}
    assert shapes == {
        "c_attn.weight": (144, 48), "c_attn.bias": (144,),
        "c_proj.weight": (48, 48), "c_proj.bias": (48,),
    }  # RoPE tables are not saved; GPT-2's Conv1D stores c_attn.weight transposed, (48, 144)
    gqa = MultiHeadAttention(48, 4, n_kv_heads=2, bias=False)
    assert gqa.c_attn.weight.shape == (48 + 2 * 2 * 12, 48) and gqa.c_attn.bias is None
    wide = MultiHeadAttention(48, 6, d_head=16)  # attention width 96 != d_model
    assert wide.c_proj.weight.shape == (48, 96)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_mha_grouped_query_matches_sdpa_enable_gqa(n_kv_heads) -> None:
    mha = MultiHeadAttention(32, 4, n_kv_heads=n_kv_heads, backend="naive", dtype=F64)
    randomize(mha, seed=1)
    x = randn(2, 11, 32, seed=3)
    q, k, v = mha.qkv(x)
    assert k.shape == v.shape == (2, n_kv_heads, 11, 8)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(mha(x), mha.c_proj(merge_heads(y)), **TOL[F64])
    k_rep = k.repeat_interleave(4 // n_kv_heads, dim=1)
    v_rep = v.repeat_interleave(4 // n_kv_heads, dim=1)
    y_rep = F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=True)
    torch.testing.assert_close(y, y_rep, **TOL[F64])


def test_mha_backends_agree_with_rope_alibi_window_and_mask() -> None:
    x = randn(2, 30, 32, seed=0)
    pad = torch.ones(2, 1, 1, 30, dtype=torch.bool)
    pad[1, :, :, :4] = False  # the second sequence has 4 padding tokens at the start
    for positions, window in [("rope", None), ("alibi", 7), (None, 5)]:
        outs = []
        for backend in CPU_BACKENDS:
            mha = MultiHeadAttention(32, 4, 2, positions=positions, window=window,
                                     backend=backend, dtype=F64)
            randomize(mha, seed=2)
            outs.append(mha(x, mask=pad))
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0], **TOL[F64])


CACHE_CASES = [
    dict(positions=None),
    dict(positions="rope"),
    dict(positions="alibi"),
    dict(positions="rope", n_kv_heads=1),
    dict(positions="rope", n_kv_heads=2, window=4),
    dict(positions=RotaryEmbedding(8, max_len=64, base=500.0)),
    dict(positions=ALiBi(4), window=3),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", range(len(CACHE_CASES)))
def test_kv_cache_decoding_equals_full_recomputation(backend, case) -> None:
    kwargs = CACHE_CASES[case]
    mha = MultiHeadAttention(32, 4, backend=backend, max_len=64, dtype=F64, **kwargs)
    randomize(mha, seed=case)
    x = randn(2, 13, 32, seed=case)
    full = mha(x)
    cache = KVCache()
    steps = [mha(x[:, :5], cache=cache)]  # prefill a prompt of 5 tokens, then one at a time
    steps += [mha(x[:, t : t + 1], cache=cache) for t in range(5, 13)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL[F64])
    assert cache.k.shape == (2, mha.n_kv_heads, 13, 8) and len(cache) == 13


def test_kv_cache_token_by_token_float32_and_reset() -> None:
    mha = MultiHeadAttention(24, 3, positions="rope", max_len=32)
    x = randn(1, 9, 24, seed=4, dtype=F32)
    cache = KVCache(max_len=32)
    with torch.no_grad():
        steps = torch.cat([mha(x[:, t : t + 1], cache=cache) for t in range(9)], dim=1)
        torch.testing.assert_close(steps, mha(x), **TOL[F32])
    cache.reset()
    assert len(cache) == 0 and cache.k is None


# --------------------------------------------------------------------------- errors


def test_error_unknown_backend() -> None:
    q, k, v = qkv(1, 1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="unknown attention backend 'fast'; allowed: 'naive'"):
        attention(q, k, v, backend="fast")
    with pytest.raises(ValueError, match="unknown attention backend"):
        MultiHeadAttention(16, 2, backend="cuda")
    assert resolve_backend("manual") == "naive" and set(ATTENTION_BACKENDS) >= set(CPU_BACKENDS)


def test_error_head_counts() -> None:
    with pytest.raises(ValueError, match=r"n_heads \(3\) must divide d_model \(16\).*pass d_head"):
        MultiHeadAttention(16, 3)
    with pytest.raises(ValueError, match=r"n_heads \(4\) must be a multiple of n_kv_heads \(3\)"):
        MultiHeadAttention(16, 4, n_kv_heads=3)
    q, k, v = qkv(1, 3, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="must be a multiple of the number of key/value heads"):
        attention(q, k, v)


def test_error_shapes_and_masks() -> None:
    q, k, v = qkv(1, 2, 2, 4, 6, 8)
    with pytest.raises(ValueError, match="does not broadcast to the attention scores"):
        attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        attention(q, k, v, mask=torch.ones(4, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(q, k, v, mask=torch.ones(3, 2, 4, 6, dtype=torch.bool), backend="sdpa")
    with pytest.raises(ValueError, match="4-D tensors"):
        attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="same D for q and k"):
        attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="share dtype"):
        attention(q.float(), k, v)
    mha = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, T, d_model=16\)"):
        mha(torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(torch.zeros(2, 3, 16), mask=torch.ones(3, 4, dtype=torch.bool))


def test_error_options() -> None:
    q, k, v = qkv(1, 2, 2, 4, 4, 8)
    with pytest.raises(ValueError, match="dropout_p=0.1 is not supported by backend 'tiled'"):
        attention(q, k, v, dropout_p=0.1, backend="tiled")
    with pytest.raises(ValueError, match="backend 'triton' supports causal or no masking only"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool), backend="triton")
    with pytest.raises(ValueError, match="unknown positions 'relative'"):
        MultiHeadAttention(16, 2, positions="relative")
    with pytest.raises(ValueError, match="window must be None"):
        MultiHeadAttention(16, 2, window=0)
    with pytest.raises(ValueError, match="RotaryEmbedding has d_head=4"):
        MultiHeadAttention(16, 2, positions=RotaryEmbedding(4))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        MultiHeadAttention(16, 2, dropout=1.5)


def test_error_cache_longer_than_position_table() -> None:
    mha = MultiHeadAttention(16, 2, positions="rope", max_len=8)
    cache = KVCache()
    mha(torch.zeros(1, 6, 16), cache=cache)
    with pytest.raises(ValueError, match=r"positions 6\.\.8 do not fit in the position table of "
                                         r"max_len=8 \(a KV cache of 6 tokens plus 3 new ones\)"):
        mha(torch.zeros(1, 3, 16), cache=cache)


def test_error_kv_cache_shapes_and_capacity() -> None:
    cache = KVCache(max_len=5)
    k = torch.zeros(1, 2, 3, 4)
    cache.append(k, k)
    with pytest.raises(ValueError, match="KVCache is full: 3 cached \\+ 3 new tokens > max_len=5"):
        cache.append(k, k)
    with pytest.raises(ValueError, match="new ones must match in every axis but T"):
        cache.append(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4))
    with pytest.raises(ValueError, match="same B, Hkv and T"):
        cache.append(k, torch.zeros(1, 2, 2, 4))


def test_training_mode_dropout_and_eval_determinism() -> None:
    mha = MultiHeadAttention(16, 2, dropout=0.5, backend="sdpa")
    x = randn(2, 8, 16, seed=0, dtype=F32)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    torch.manual_seed(0)
    assert not torch.allclose(mha(x), mha(x))
