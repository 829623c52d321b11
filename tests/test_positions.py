"""Tests for minigpt.positions: tables against their formulas, RoPE's relative-distance
property, ALiBi's slopes as published, offsets and errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.positions import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_cos_sin,
    rotate_half,
    sinusoidal_table,
)

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --------------------------------------------------------------------------- absolute


def test_learned_table_rows_offsets_and_init() -> None:
    torch.manual_seed(0)
    pos = LearnedPositionalEmbedding(max_len=2048, d_model=64)
    assert list(dict(pos.named_parameters())) == ["weight"]  # GPT-2's wpe.weight
    assert abs(pos.weight.std().item() - 0.02) < 0.001
    torch.testing.assert_close(pos(5, offset=10), pos.weight[10:15])
    assert pos(2048).shape == (2048, 64)
    with pytest.raises(ValueError, match=r"positions 2047\.\.2048 do not fit .* max_len=2048"):
        pos(2, offset=2047)
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        LearnedPositionalEmbedding(0, 4)


def test_sinusoidal_table_matches_the_formula() -> None:
    table = sinusoidal_table(50, 16, base=10000.0)
    for p in (0, 1, 7, 49):
        for i in range(8):
            angle = p / 10000.0 ** (2 * i / 16)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    module = SinusoidalPositionalEmbedding(50, 16)
    torch.testing.assert_close(module(3, offset=4), table[4:7])
    assert list(module.state_dict()) == []  # fixed, nothing to train or save
    with pytest.raises(ValueError, match="d_model must be even"):
        sinusoidal_table(4, 5)


def test_sinusoidal_shift_is_a_rotation_per_pair() -> None:
    """PE[p + k] is PE[p] with every (sin, cos) pair rotated by the angle k * w_i."""
    d, k = 8, 5
    table = sinusoidal_table(40, d).double()
    w = 10000.0 ** (-torch.arange(0, d, 2, dtype=F64) / d)
    cos, sin = torch.cos(k * w), torch.sin(k * w)
    s, c = table[:30, 0::2], table[:30, 1::2]
    torch.testing.assert_close(table[k : 30 + k, 0::2], s * cos + c * sin, atol=1e-6, rtol=0)
    torch.testing.assert_close(table[k : 30 + k, 1::2], c * cos - s * sin, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- RoPE


def test_rope_equals_complex_multiplication() -> None:
    """Pair (x_i, x_{i+D/2}) as the complex number x_i + i x_{i+D/2}, times e^{i p theta}."""
    t, d, base = 12, 10, 10000.0
    x = randn(2, 3, t, d, seed=0)
    cos, sin = rope_cos_sin(t, d, base)
    rotated = apply_rope(x, cos, sin)
    theta = base ** (-torch.arange(0, d, 2, dtype=F64) / d)
    phase = torch.polar(torch.ones(t, d // 2, dtype=F64), torch.outer(torch.arange(t, dtype=F64),
                                                                       theta))
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * phase
    torch.testing.assert_close(rotated, torch.cat([z.real, z.imag], dim=-1), **TOL)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), **TOL)  # a rotation
    torch.testing.assert_close(rotate_half(rotate_half(x)), -x)


@settings(max_examples=50, deadline=None)
@given(
    m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(0, 300),
    half=st.integers(1, 8), seed=st.integers(0, 2**16),
)
def test_rope_scores_depend_only_on_relative_distance(m, n, shift, half, seed) -> None:
    d = 2 * half
    rope = RotaryEmbedding(d, max_len=512)
    q, k = randn(1, 1, 1, d, seed=seed), randn(1, 1, 1, d, seed=seed + 1)
    score = (rope.rotate(q, m) * rope.rotate(k, n)).sum()
    shifted = (rope.rotate(q, m + shift) * rope.rotate(k, n + shift)).sum()
    assert shifted.item() == pytest.approx(score.item(), abs=1e-9)


def test_rope_offset_matches_the_full_sequence() -> None:
    rope = RotaryEmbedding(8, max_len=32)
    q, k = randn(2, 2, 20, 8, seed=0), randn(2, 1, 20, 8, seed=1)
    q_all, k_all = rope(q, k)
    q_tail, k_tail = rope(q[:, :, 15:], k[:, :, 15:], offset=15)
    torch.testing.assert_close(q_tail, q_all[:, :, 15:])
    torch.testing.assert_close(k_tail, k_all[:, :, 15:])
    torch.testing.assert_close(q_all[:, :, 0], q[:, :, 0])  # position 0: no rotation


def test_rope_keeps_dtype_and_errors() -> None:
    rope = RotaryEmbedding(8, max_len=16)
    assert rope.rotate(torch.ones(1, 1, 3, 8, dtype=torch.float32)).dtype == torch.float32
    with pytest.raises(ValueError, match="positions 14..17 do not fit"):
        rope.rotate(torch.ones(1, 1, 4, 8), offset=14)
    with pytest.raises(ValueError, match="last axis must be 8"):
        rope.rotate(torch.ones(1, 1, 4, 6))
    with pytest.raises(ValueError, match="d_head must be even"):
        RotaryEmbedding(7)


# --------------------------------------------------------------------------- ALiBi


def test_alibi_slopes_as_published() -> None:
    """Press et al.: 8 heads -> 1/2, 1/4, ..., 1/256; other counts interleave 2m heads."""
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(1).tolist() == [2.0**-8]
    six = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]  # 4 heads, then odd of 8
    assert alibi_slopes(6).tolist() == six
    with pytest.raises(ValueError, match="n_heads must be a positive integer"):
        alibi_slopes(0)


def test_alibi_bias_definition_and_offsets() -> None:
    bias = alibi_bias(4, 5, 9)  # 5 queries at positions 4..8 over 9 keys
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(9):
                assert bias[h, i, j].item() == -slopes[h].item() * abs(4 + i - j)
    torch.testing.assert_close(alibi_bias(4, 9)[:, 4:], bias)
    assert ALiBi(4)(5, 9).shape == (4, 5, 9)
