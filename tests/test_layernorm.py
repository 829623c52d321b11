"""Tests for minigpt.layernorm: forward and hand-written backward against torch."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.layernorm import (
    BatchNorm1d,
    LayerNorm,
    LayerNormFunction,
    RMSNorm,
    RMSNormFunction,
    layer_norm,
    layer_norm_backward,
    rms_norm,
    rms_norm_backward,
)

TOL = {"rtol": 1e-10, "atol": 1e-10}
F64 = torch.float64


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Replace every parameter with random values, so affine terms are really tested."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(randn(*p.shape, seed=seed + 1000 + i))


def grads(out: torch.Tensor, inputs: list[torch.Tensor], dy: torch.Tensor) -> tuple:
    return torch.autograd.grad(out, inputs, dy)


# Shapes: 0-3 leading (batch) dims, 1-2 normalized (trailing) dims, sizes 1-5.
shapes = st.tuples(
    st.lists(st.integers(1, 4), min_size=0, max_size=3),
    st.lists(st.integers(1, 5), min_size=1, max_size=2),
)
seeds = st.integers(0, 2**31 - 1)


# --------------------------------------------------------------------------- LayerNorm


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=seeds, affine=st.booleans(), bias=st.booleans(), as_int=st.booleans())
def test_layernorm_module_matches_torch(shape, seed, affine, bias, as_int) -> None:
    batch, normalized = shape
    spec = normalized[0] if as_int and len(normalized) == 1 else tuple(normalized)
    ours = LayerNorm(spec, elementwise_affine=affine, bias=bias, dtype=F64)
    ref = torch.nn.LayerNorm(spec, elementwise_affine=affine, bias=bias, dtype=F64)
    randomize(ref, seed)
    ours.load_state_dict(ref.state_dict())
    x = (randn(*batch, *normalized, seed=seed) * 3 + 1).requires_grad_(True)
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref, **TOL)

    dy = randn(*y.shape, seed=seed + 1)
    got = grads(y, [x, *ours.parameters()], dy)
    want = grads(y_ref, [x, *ref.parameters()], dy)
    assert len(got) == len(want) == 1 + int(affine) + int(affine and bias)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=seeds, with_weight=st.booleans(), with_bias=st.booleans())
def test_functional_backward_matches_autograd(shape, seed, with_weight, with_bias) -> None:
    """layer_norm_backward equals autograd through torch.nn.functional.layer_norm."""
    batch, normalized = shape
    x = randn(*batch, *normalized, seed=seed).requires_grad_(True)
    w = randn(*normalized, seed=seed + 1).requires_grad_(True) if with_weight else None
    b = randn(*normalized, seed=seed + 2).requires_grad_(True) if with_bias else None
    eps = 1e-5
    y, cache = layer_norm(x.detach(), w, b, eps, normalized_shape=normalized)
    y_ref = torch.nn.functional.layer_norm(x, normalized, w, b, eps)
    torch.testing.assert_close(y, y_ref, **TOL)

    dy = randn(*y.shape, seed=seed + 3)
    dx, dw, db = layer_norm_backward(dy, cache)
    leaves = [t for t in (x, w, b) if t is not None]
    expected = iter(grads(y_ref, leaves, dy))
    torch.testing.assert_close(dx, next(expected), **TOL)
    assert (dw is None) == (w is None) and (db is None) == (b is None)
    if w is not None:
        torch.testing.assert_close(dw, next(expected), **TOL)
    if b is not None:
        torch.testing.assert_close(db, next(expected), **TOL)


def test_backward_formula_on_a_large_vector() -> None:
    """d_model = 768, as GPT-2 small, with a non-trivial eps and shifted, scaled inputs."""
    x = (randn(2, 5, 768, seed=7) * 10 - 4).requires_grad_(True)
    w, b = randn(768, seed=8), randn(768, seed=9)
    y, cache = layer_norm(x.detach(), w, b, 1e-3)
    y_ref = torch.nn.functional.layer_norm(x, (768,), w, b, 1e-3)
    torch.testing.assert_close(y, y_ref, **TOL)
    dy = randn(2, 5, 768, seed=10)
    (dx_ref,) = grads(y_ref, [x], dy)
    torch.testing.assert_close(layer_norm_backward(dy, cache)[0], dx_ref, **TOL)


def test_layernorm_normalizes() -> None:
    y = LayerNorm(64, elementwise_affine=False, dtype=F64)(randn(3, 4, 64) * 5 + 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 4, dtype=F64), **TOL)
    torch.testing.assert_close(
        y.var(-1, unbiased=False), torch.ones(3, 4, dtype=F64), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_layernorm_function_gradcheck(affine: tuple[bool, bool]) -> None:
    with_weight, with_bias = affine
    x = randn(3, 2, 4, 5, seed=11).requires_grad_(True)
    w = randn(4, 5, seed=12).requires_grad_(True) if with_weight else None
    b = randn(4, 5, seed=13).requires_grad_(True) if with_bias else None

    def fn(x, w, b):
        return LayerNormFunction.apply(x, w, b, (4, 5), 1e-5)

    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_layernorm_uses_hand_backward_not_autograd() -> None:
    x = randn(2, 8).requires_grad_(True)
    y = LayerNorm(8, dtype=F64)(x)
    assert type(y.grad_fn).__name__.startswith("LayerNormFunction")
    with pytest.raises(RuntimeError):  # once_differentiable: no double backward
        (g,) = torch.autograd.grad(y.pow(3).sum(), x, create_graph=True)
        g.sum().backward()


def test_layernorm_defaults_and_state_dict_keys() -> None:
    ours, ref = LayerNorm(6), torch.nn.LayerNorm(6)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert ours.normalized_shape == (6,) and ours.eps == 1e-5
    assert torch.equal(ours.weight, torch.ones(6)) and torch.equal(ours.bias, torch.zeros(6))
    assert LayerNorm(6, bias=False).bias is None
    assert LayerNorm(6, elementwise_affine=False).weight is None
    assert "bias" not in dict(LayerNorm(6, bias=False).named_parameters())


@pytest.mark.parametrize(
    ("module", "shape", "expected", "given"),
    [
        (LayerNorm(8), (2, 7), r"\(\.\.\., 8\)", r"\(2, 7\)"),
        (LayerNorm((3, 4)), (2, 4, 3), r"\(\.\.\., 3, 4\)", r"\(2, 4, 3\)"),
        (LayerNorm((3, 4)), (4,), r"\(\.\.\., 3, 4\)", r"\(4,\)"),
        (RMSNorm(8), (5, 7), r"\(\.\.\., 8\)", r"\(5, 7\)"),
    ],
)
def test_wrong_normalized_shape_raises(module, shape, expected, given) -> None:
    with pytest.raises(ValueError, match=f"{expected}.*{given}"):
        module(torch.randn(shape))


def test_functional_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"trailing shape \(\.\.\., 8\)"):
        layer_norm(torch.randn(2, 7), torch.ones(8), None)
    with pytest.raises(ValueError, match="normalized_shape"):
        layer_norm(torch.randn(2, 7), None, None)
    with pytest.raises(ValueError, match=r"weight has shape \(7,\)"):
        layer_norm(torch.randn(2, 7), torch.ones(7), None, normalized_shape=8)


# --------------------------------------------------------------------------- RMSNorm


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=seeds, affine=st.booleans(), eps=st.sampled_from([None, 1e-6, 1e-2]))
def test_rmsnorm_matches_torch(shape, seed, affine, eps) -> None:
    batch, normalized = shape
    ours = RMSNorm(tuple(normalized), eps=eps, elementwise_affine=affine, dtype=F64)
    ref = torch.nn.RMSNorm(tuple(normalized), eps=eps, elementwise_affine=affine, dtype=F64)
    randomize(ref, seed)
    ours.load_state_dict(ref.state_dict())
    x = (randn(*batch, *normalized, seed=seed) * 2 + 0.5).requires_grad_(True)
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref, **TOL)
    dy = randn(*y.shape, seed=seed + 1)
    got = grads(y, [x, *ours.parameters()], dy)
    want = grads(y_ref, [x, *ref.parameters()], dy)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL)


def test_rms_norm_functional_and_gradcheck() -> None:
    x = randn(3, 4, 6, seed=20).requires_grad_(True)
    w = randn(6, seed=21).requires_grad_(True)
    y, cache = rms_norm(x.detach(), w.detach(), 1e-6)
    y_ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(y, y_ref, **TOL)
    dy = randn(3, 4, 6, seed=22)
    dx, dw = rms_norm_backward(dy, cache)
    dx_ref, dw_ref = grads(y_ref, [x, w], dy)
    torch.testing.assert_close(dx, dx_ref, **TOL)
    torch.testing.assert_close(dw, dw_ref, **TOL)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, (6,), 1e-6), (x, w))
    assert torch.autograd.gradcheck(lambda x: RMSNormFunction.apply(x, None, (4, 6), None), (x,))


def test_rmsnorm_default_eps_is_dtype_eps() -> None:
    x = torch.full((2, 3), 1e-9, dtype=F64)
    ours, ref = RMSNorm(3, dtype=F64), torch.nn.RMSNorm(3, dtype=F64)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


# --------------------------------------------------------------------------- BatchNorm1d


@pytest.mark.parametrize("shape", [(8, 5), (6, 5, 7), (2, 5), (1, 5, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_eval_and_running_stats(shape: tuple[int, ...], affine: bool) -> None:
    ours = BatchNorm1d(5, affine=affine, dtype=F64)
    ref = torch.nn.BatchNorm1d(5, affine=affine, dtype=F64)
    randomize(ref, 30)
    ours.load_state_dict(ref.state_dict())
    assert ours.state_dict().keys() == ref.state_dict().keys()
    params_ours, params_ref = list(ours.parameters()), list(ref.parameters())

    for step in range(4):  # training: batch statistics, running stats updated
        x = (randn(*shape, seed=31 + step) * (step + 1) + step).requires_grad_(True)
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref, **TOL)
        dy = randn(*shape, seed=40 + step)
        got = grads(y, [x, *params_ours], dy)
        want = grads(y_ref, [x, *params_ref], dy)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, **TOL)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
        torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
        assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == step + 1

    ours.eval()
    ref.eval()
    x = randn(*shape, seed=50) * 3
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    torch.testing.assert_close(ours(x[:1]), ref(x[:1]), **TOL)  # a batch of one is fine in eval


def test_batchnorm_vs_layernorm_axes() -> None:
    """BatchNorm makes each channel zero-mean over the batch; LayerNorm each row over features."""
    x = randn(16, 6, seed=60) * 4 + 3
    bn = BatchNorm1d(6, affine=False, dtype=F64)(x)
    ln = LayerNorm(6, elementwise_affine=False, dtype=F64)(x)
    zeros = torch.zeros(6, dtype=F64)
    torch.testing.assert_close(bn.mean(0), zeros, **TOL)
    torch.testing.assert_close(ln.mean(1), torch.zeros(16, dtype=F64), **TOL)
    assert bn.mean(1).abs().max() > 1e-3 and ln.mean(0).abs().max() > 1e-3


def test_batchnorm_errors() -> None:
    bn = BatchNorm1d(4)
    with pytest.raises(ValueError, match=r"\(N, 4\) or \(N, 4, L\).*\(2, 3\)"):
        bn(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        bn(torch.randn(2, 4, 3, 1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 4))
