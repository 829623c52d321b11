"""Tests for minigpt.attention.sparse: every pattern against its set definition (Child et al. 2019),
attention under sparse masks against torch's SDPA, and GPT-3's per-layer pattern."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.attention import MultiHeadAttention, attention
from minigpt.attention.sparse import (
    GPT3_BAND_WIDTH,
    causal_mask,
    fixed_mask,
    fixed_masks,
    gpt3_layer_mask,
    gpt3_layer_windows,
    local_mask,
    mask_density,
    strided_mask,
    strided_masks,
)

F64 = torch.float64


def from_sets(t_q: int, t_k: int, allowed) -> torch.Tensor:
    """Mask built by brute force: query i (at position t_k - t_q + i) sees j if allowed(pos, j)."""
    mask = torch.zeros(t_q, t_k, dtype=torch.bool)
    for i in range(t_q):
        pos = t_k - t_q + i
        for j in range(t_k):
            mask[i, j] = allowed(pos, j)
    return mask


lengths = st.tuples(st.integers(1, 24), st.integers(0, 12))  # (t_q, extra cached keys)


@settings(max_examples=40, deadline=None)
@given(lengths=lengths, l=st.integers(1, 9))
def test_masks_match_their_set_definitions(lengths, l) -> None:  # noqa: E741
    t_q, extra = lengths
    t_k = t_q + extra
    ok = torch.testing.assert_close
    ok(causal_mask(t_q, t_k), from_sets(t_q, t_k, lambda i, j: j <= i))
    ok(local_mask(t_q, t_k, window=l), from_sets(t_q, t_k, lambda i, j: i - l < j <= i))
    a1, a2 = strided_masks(t_q, t_k, stride=l)
    # Child et al.: A1 = {t, ..., i}, t = max(0, i - l);  A2 = {j : (i - j) mod l = 0}
    ok(a1, from_sets(t_q, t_k, lambda i, j: max(0, i - l) <= j <= i))
    ok(a2, from_sets(t_q, t_k, lambda i, j: j <= i and (i - j) % l == 0))
    ok(strided_mask(t_q, t_k, stride=l), a1 | a2)
    c = 1 + (t_q % l)  # some c in 1..l
    b1, b2 = fixed_masks(t_q, t_k, stride=l, c=c)
    # A1 = {j : floor(j / l) = floor(i / l)};  A2 = {j : j mod l in {l - c, ..., l - 1}}
    ok(b1, from_sets(t_q, t_k, lambda i, j: j <= i and j // l == i // l))
    ok(b2, from_sets(t_q, t_k, lambda i, j: j <= i and l - c <= j % l <= l - 1))
    ok(fixed_mask(t_q, t_k, stride=l, c=c), b1 | b2)


def test_every_row_sees_itself_and_stays_causal() -> None:
    t = 50
    for mask in (local_mask(t, window=4), strided_mask(t, stride=7), fixed_mask(t, stride=7)):
        assert mask.diagonal().all()
        assert not mask.triu(diagonal=1).any()
    assert local_mask(t, window=4).sum(-1).tolist() == [min(i + 1, 4) for i in range(t)]
    assert torch.equal(local_mask(t, window=t), causal_mask(t))


def test_sparse_patterns_connect_all_pairs_in_two_steps() -> None:
    """The factorization property: A2 after A1 reaches every j <= i (Child et al., sec. 4.2)."""
    t, stride = 36, 6
    for a1, a2 in (strided_masks(t, stride=stride), fixed_masks(t, stride=stride)):
        two_steps = (a2.double() @ a1.double()) > 0  # i -> k in A2, then k -> j in A1
        assert torch.equal(two_steps | a1, causal_mask(t))


@pytest.mark.parametrize("backend", ["naive", "tiled", "sdpa"])
def test_attention_with_sparse_masks_matches_sdpa(backend) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 70, 8, generator=g, dtype=F64)
    masks = [local_mask(70, window=16), strided_mask(70, stride=8), fixed_mask(70, stride=8, c=2)]
    for mask in masks:
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = attention(q, k, v, causal=True, mask=mask, backend=backend)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_gpt3_alternating_layers() -> None:
    assert GPT3_BAND_WIDTH == 256
    assert gpt3_layer_windows(4, band_width=16) == [None, 16, None, 16]
    assert torch.equal(gpt3_layer_mask(0, 40, band_width=8), causal_mask(40))
    assert torch.equal(gpt3_layer_mask(3, 40, band_width=8), local_mask(40, window=8))
    assert round(mask_density(gpt3_layer_mask(1, 2048)), 3) == 0.234  # 1 - (1792/2048)^2
    with pytest.raises(ValueError, match="layer must be a non-negative integer"):
        gpt3_layer_mask(-1, 4)


def test_mha_window_equals_attention_under_a_band_mask() -> None:
    torch.manual_seed(0)
    layers = [MultiHeadAttention(16, 2, window=w, backend="sdpa", dtype=F64)
              for w in gpt3_layer_windows(2, band_width=5)]
    x = torch.randn(2, 20, 16, dtype=F64)
    banded = layers[1]
    q, k, v = banded.qkv(x)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=local_mask(20, window=5))
    expected = banded.c_proj(y.transpose(1, 2).reshape(2, 20, 16))
    torch.testing.assert_close(banded(x), expected, rtol=1e-10, atol=1e-10)
    assert layers[0].window is None and "window=5" in repr(banded)


def test_errors() -> None:
    with pytest.raises(ValueError, match="window must be a positive integer, got 0"):
        local_mask(4, window=0)
    with pytest.raises(ValueError, match="c \\(summary positions per block\\) must be <= stride=3"):
        fixed_mask(4, stride=3, c=4)
    with pytest.raises(ValueError, match="t_q must be a positive integer"):
        causal_mask(0)
    with pytest.raises(ValueError, match="square"):
        mask_density(causal_mask(2, 3))
