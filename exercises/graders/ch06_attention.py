"""Graders for chapter 6 (attention).

Each grader checks the docstring examples or a known case, then compares the student's function
with a reference on random inputs (``torch.nn.functional.scaled_dot_product_attention``,
``torch.softmax``, ``torch.tril``, a rotation written out with complex numbers), and raises
AssertionError with a hint if they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples, difference, expect_value_error
from minigpt import attention, positions
from minigpt.attention import flash, sparse

_HERE = "exercises.graders.ch06_attention"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import torch",
    "from einops import repeat",
    "from torch import Tensor",
    "",
    "# you may use these:",
    "from minigpt.attention import check_mask",
    "from minigpt.checks import check_int",
    "from minigpt.positions import rotate_half",
    "",
    "NEG_INF = float(\"-inf\")",
)

EXERCISES = (
    Exercise(
        "6.1",
        "causal_mask",
        "minigpt.attention.sparse:causal_mask",
        f"{_HERE}:grade_causal_mask",
        "Build the causal mask, with the queries aligned to the last keys.",
    ),
    Exercise(
        "6.2",
        "masked_scores",
        "minigpt.attention:masked_scores",
        f"{_HERE}:grade_masked_scores",
        "Compute scaled, masked attention scores, handling rows that see no key.",
    ),
    Exercise(
        "6.3",
        "repeat_kv",
        "minigpt.attention:repeat_kv",
        f"{_HERE}:grade_repeat_kv",
        "Share each key/value head with a group of query heads (grouped-query attention).",
    ),
    Exercise(
        "6.4",
        "apply_rope",
        "minigpt.positions:apply_rope",
        f"{_HERE}:grade_apply_rope",
        "Rotate the feature pairs of queries and keys by their position's angles (RoPE).",
    ),
    Exercise(
        "6.5",
        "online_softmax",
        "minigpt.attention.flash:online_softmax",
        f"{_HERE}:grade_online_softmax",
        "Compute a softmax block by block with a running maximum and sum.",
    ),
)


def _close(got: Any, want: torch.Tensor, what: str, tol: float = 1e-9) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, want {want.dtype}"
    message = difference(got, want, tol, tol)  # NaN and inf are compared, never hidden
    assert message is None, f"{what}: {message}"


def grade_causal_mask(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, sparse.causal_mask)
    for t_q, t_k in [(1, 1), (5, 5), (3, 7), (7, 3), (4, None)]:
        got = fn(t_q, t_k)
        k = t_q if t_k is None else t_k
        want = torch.ones(t_q, k, dtype=torch.bool).tril(diagonal=k - t_q)
        _close(got, want, f"causal_mask({t_q}, {t_k}): query i sits at position t_k - t_q + i "
               "and sees keys j <= that position")
    for bad in [(0, 3), (3, 0)]:
        expect_value_error(fn, f"causal_mask{bad}: a length < 1", *bad)


def _sdpa_weights(q, k, causal, mask, scale):  # noqa: ANN001, ANN202
    """The attention weights SDPA uses: run it on identity values."""
    t_k = k.shape[2]
    eye = torch.eye(t_k, dtype=q.dtype).expand(q.shape[0], q.shape[1], t_k, t_k)
    k = attention.repeat_kv(k, q.shape[1] // k.shape[1])
    if causal:
        mask = attention.combine_masks(sparse.causal_mask(q.shape[2], t_k), mask)
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask, scale=scale)


def grade_masked_scores(fn: Callable[..., Any]) -> None:
    q = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]], dtype=torch.float64)
    scores, empty = fn(q, q.clone(), scale=1.0)
    _close(scores, torch.tensor([[[[1.0, 0.0], [0.0, 4.0]]]], dtype=torch.float64),
           "q k^T with scale=1 for q = k = [[1, 0], [0, 2]]")
    assert empty is None, "with no mask and no causal masking no row can be empty: return None"
    scores, _ = fn(q, q.clone(), causal=True, scale=1.0)
    assert scores[0, 0, 0, 1] == float("-inf") and scores[0, 0, 1, 0] == 0.0, (
        "causal=True: query 0 may not see key 1, so its score is -inf; query 1 sees key 0"
    )
    scores, _ = fn(q, q.clone())
    assert torch.isclose(scores[0, 0, 1, 1], torch.tensor(4 / 2**0.5, dtype=torch.float64)), (
        "the default scale is 1 / sqrt(D) with D the head size (last axis of q)"
    )
    gen = torch.Generator().manual_seed(6)
    cases = [  # (B, H, Hkv, Tq, Tk, D, causal, mask kind)
        (2, 4, 4, 5, 5, 8, True, None), (1, 4, 2, 3, 6, 8, True, None),
        (2, 2, 1, 6, 6, 4, False, "bool"), (1, 2, 2, 4, 4, 8, True, "float"),
        (1, 2, 2, 4, 4, 8, False, "empty"),
    ]
    for b, h, hkv, t_q, t_k, d, causal, kind in cases:
        q = torch.randn(b, h, t_q, d, generator=gen, dtype=torch.float64)
        k = torch.randn(b, hkv, t_k, d, generator=gen, dtype=torch.float64)
        mask = None
        if kind == "bool":
            mask = torch.rand(t_q, t_k, generator=gen) > 0.3
            mask[:, 0] = True
        elif kind == "float":
            mask = torch.randn(h, t_q, t_k, generator=gen, dtype=torch.float64)
        elif kind == "empty":
            mask = torch.ones(t_q, t_k, dtype=torch.bool)
            mask[1] = False  # query 1 may see nothing
        scale = 0.3 if kind == "float" else None
        what = (f"q {tuple(q.shape)}, k {tuple(k.shape)}, causal={causal}, mask={kind}")
        scores, empty = fn(q, k.clone(), causal=causal, mask=mask, scale=scale)
        want_scores, want_empty = attention.masked_scores(q, k, causal=causal, mask=mask,
                                                          scale=scale)
        _close(scores, want_scores, f"scores for {what}")
        if want_empty is None:
            assert empty is None or not bool(empty.any()), f"{what}: no row is empty"
        else:
            assert empty is not None, f"{what}: return the (B, H, Tq, 1) empty-row flags"
            _close(empty, want_empty, f"empty rows for {what}")
        weights = scores.softmax(-1)
        if empty is not None:
            weights = weights.masked_fill(empty, 0.0)
        _close(weights, _sdpa_weights(q, k, causal, mask, scale),
               f"softmax of your scores vs torch's scaled_dot_product_attention, {what}")


def grade_repeat_kv(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, attention.repeat_kv)
    gen = torch.Generator().manual_seed(7)
    for hkv, n_rep in [(1, 4), (2, 3), (3, 1), (4, 2)]:
        x = torch.randn(2, hkv, 5, 4, generator=gen, dtype=torch.float64)
        got = fn(x, n_rep)
        want = x.repeat_interleave(n_rep, dim=1)
        _close(got, want, f"repeat_kv of {hkv} heads x {n_rep}: query head h reads key/value "
               "head h // n_rep, so copies of one head are neighbours")
    q = torch.randn(1, 6, 4, 8, generator=gen, dtype=torch.float64)
    k, v = torch.randn(2, 1, 2, 4, 8, generator=gen, dtype=torch.float64)
    ours = F.scaled_dot_product_attention(q, fn(k, 3), fn(v, 3), is_causal=True)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    _close(ours, want, "attention with your shared heads vs torch SDPA's enable_gqa=True")


def _rotate_pairs(x: torch.Tensor, pos: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The RoPE rotation with complex numbers: pair (x_i, x_{i+D/2}) is x_i + i x_{i+D/2}."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half], x[..., half:])
    z = z * torch.polar(torch.ones_like(pos[:, None] * theta), pos[:, None] * theta)
    return torch.cat([z.real, z.imag], dim=-1)


def grade_apply_rope(fn: Callable[..., Any]) -> None:
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    cos, sin = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    _close(fn(x, cos, sin), torch.tensor([[0.0, 1.0]], dtype=torch.float64),
           "a 90 degree turn (cos 0, sin 1) takes the pair (1, 0) to (0, 1)")
    gen = torch.Generator().manual_seed(8)
    for d in (2, 8, 16):
        t = 7
        x = torch.randn(2, 3, t, d, generator=gen, dtype=torch.float64)
        cos, sin = positions.rope_cos_sin(t, d)
        theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        _close(fn(x, cos, sin), _rotate_pairs(x, torch.arange(t, dtype=torch.float64), theta),
               f"RoPE on (2, 3, {t}, {d}): pair feature i with feature i + D/2 (rotate half) "
               "and rotate it by +angle")
    x32 = torch.randn(1, 4, 8, generator=gen)
    cos, sin = positions.rope_cos_sin(4, 8)
    got = fn(x32, cos, sin)
    assert got.dtype == torch.float32, "keep x's dtype (cos and sin are float64: cast them)"
    q, k = torch.randn(2, 1, 1, 8, generator=gen, dtype=torch.float64)
    cos, sin = positions.rope_cos_sin(20, 8)
    scores = [float((fn(q, cos[m : m + 1], sin[m : m + 1]) * fn(k, cos[n : n + 1],
                     sin[n : n + 1])).sum()) for m, n in [(5, 2), (15, 12)]]
    assert abs(scores[0] - scores[1]) < 1e-9, (
        "q at 5 . k at 2 must equal q at 15 . k at 12: the score depends only on the distance"
    )


def grade_online_softmax(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, flash.online_softmax)
    gen = torch.Generator().manual_seed(9)
    for shape, block, scale in [((10,), 3, 1.0), ((4, 17), 5, 10.0), ((2, 3, 64), 16, 300.0),
                                ((3, 8), 1, 1.0), ((3, 8), 8, 1.0), ((3, 8), 20, 1.0)]:
        x = scale * torch.randn(*shape, generator=gen, dtype=torch.float64)
        x[..., -1] += 3 * scale  # the largest score comes late: the running max must rescale
        _close(fn(x, block), x.softmax(-1),
               f"online_softmax on shape {shape} in blocks of {block}, scores of size ~{scale}")
    x = torch.tensor([1000.0, 1001.0, 1002.0], dtype=torch.float64)
    got = fn(x, 1)
    assert torch.isfinite(got).all(), (
        "scores near 1000 overflow exp(): subtract the running maximum before exponentiating"
    )


# Plausible wrong answers: CI checks that each grader rejects them.
def _causal_top_left(t_q, t_k=None, *, device=None):  # noqa: ANN001, ANN202
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def _causal_strict(t_q, t_k=None, *, device=None):  # noqa: ANN001, ANN202
    i, j = sparse._query_key_positions(t_q, t_k, device)
    return j < i


def _causal_no_check(t_q, t_k=None, *, device=None):  # noqa: ANN001, ANN202
    t_k = t_q if t_k is None else t_k
    i = torch.arange(t_k - t_q, t_k).view(-1, 1)
    return torch.arange(t_k).view(1, -1) <= i


def _scores_no_scale(q, k, *, causal=False, mask=None, scale=None):  # noqa: ANN001, ANN202
    return attention.masked_scores(q, k, causal=causal, mask=mask, scale=1.0 if scale is None
                                   else scale)


def _scores_sqrt_of_all(q, k, *, causal=False, mask=None, scale=None):  # noqa: ANN001, ANN202
    scale = (q.shape[-1] * q.shape[1]) ** -0.5 if scale is None else scale
    return attention.masked_scores(q, k, causal=causal, mask=mask, scale=scale)


def _scores_zero_not_inf(q, k, *, causal=False, mask=None, scale=None):  # noqa: ANN001, ANN202
    scores, empty = attention.masked_scores(q, k, causal=causal, mask=mask, scale=scale)
    return scores.nan_to_num(neginf=0.0), empty


def _scores_nan_rows(q, k, *, causal=False, mask=None, scale=None):  # noqa: ANN001, ANN202
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k = attention.repeat_kv(k, q.shape[1] // k.shape[1])
    scores = torch.einsum("bhid,bhjd->bhij", q * scale, k)
    if causal:
        scores = scores.masked_fill(~sparse.causal_mask(*scores.shape[-2:]), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
            else scores + mask
    return scores, None


def _repeat_tiled(x, n_rep):  # noqa: ANN001, ANN202
    return x.repeat(1, n_rep, 1, 1)


def _rope_minus(x, cos, sin):  # noqa: ANN001, ANN202
    return x * cos.to(x.dtype) - positions.rotate_half(x) * sin.to(x.dtype)


def _rope_neighbours(x, cos, sin):  # noqa: ANN001, ANN202 - the RoFormer paper's interleaved pairs
    x1, x2 = x[..., 0::2], x[..., 1::2]
    half = x.shape[-1] // 2
    c, s = cos[..., :half].to(x.dtype), sin[..., :half].to(x.dtype)
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)
    return out.flatten(-2)


def _rope_keeps_float64(x, cos, sin):  # noqa: ANN001, ANN202
    return x * cos + positions.rotate_half(x) * sin


def _online_no_rescale(x, block):  # noqa: ANN001, ANN202
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype)
    l = torch.zeros_like(m)  # noqa: E741
    for start in range(0, x.shape[-1], block):
        chunk = x[..., start : start + block]
        m_new = torch.maximum(m, chunk.amax(dim=-1))
        l = l + torch.exp(chunk - m_new[..., None]).sum(dim=-1)  # noqa: E741
        m = m_new
    return torch.exp(x - m[..., None]) / l[..., None]


def _online_no_max(x, block):  # noqa: ANN001, ANN202
    l = torch.zeros(x.shape[:-1], dtype=x.dtype)  # noqa: E741
    for start in range(0, x.shape[-1], block):
        l = l + torch.exp(x[..., start : start + block]).sum(dim=-1)  # noqa: E741
    return torch.exp(x) / l[..., None]


def _online_block_max(x, block):  # noqa: ANN001, ANN202 - each block normalized on its own
    parts = [x[..., s : s + block].softmax(-1) for s in range(0, x.shape[-1], block)]
    return torch.cat(parts, dim=-1) / len(parts)


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "causal_mask": [_causal_top_left, _causal_strict, _causal_no_check],
    "masked_scores": [_scores_no_scale, _scores_sqrt_of_all, _scores_zero_not_inf,
                      _scores_nan_rows],
    "repeat_kv": [_repeat_tiled],
    "apply_rope": [_rope_minus, _rope_neighbours, _rope_keeps_float64],
    "online_softmax": [_online_no_rescale, _online_no_max, _online_block_max],
}
