"""Tests for minigpt.activations: values and derivatives against torch, gated units, FeedForward."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.activations import (
    ACTIVATIONS,
    GATED_ACTIVATIONS,
    FeedForward,
    bilinear,
    feed_forward_activations,
    geglu,
    glu,
    matched_hidden_size,
    reglu,
    split_halves,
    swiglu,
    swish,
    swish_grad,
)

TOL = {"rtol": 1e-12, "atol": 1e-12}

REFERENCE = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}

EDGE = [0.0, -0.0, 1e-300, -1e-300, 1e-8, -1e-8, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0]
EDGE += [5.0, -5.0, 10.0, -10.0, 20.0, -20.0, 40.0, -40.0, 1e3, -1e3, 1e6, -1e6, 1e30, -1e30]

finite_floats = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False
)
float_lists = st.lists(finite_floats, min_size=1, max_size=32)


def f64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def autograd_derivative(fn, x: torch.Tensor) -> torch.Tensor:
    """Elementwise derivative of an elementwise fn by autograd: grad of sum(fn(x))."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


def random_inputs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 257, generator=g, dtype=torch.float64) * 4


def inputs() -> list[torch.Tensor]:
    return [random_inputs(), f64(EDGE)]


def test_registry_covers_references() -> None:
    assert set(ACTIVATIONS) == set(REFERENCE)
    for name, (fn, grad) in ACTIVATIONS.items():
        assert callable(fn) and callable(grad), name


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_value_matches_torch(name: str) -> None:
    fn, _ = ACTIVATIONS[name]
    for x in inputs():
        torch.testing.assert_close(fn(x), REFERENCE[name](x), **TOL)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_derivative_matches_autograd_of_torch(name: str) -> None:
    _, grad = ACTIVATIONS[name]
    for x in inputs():
        torch.testing.assert_close(grad(x), autograd_derivative(REFERENCE[name], x), **TOL)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_autograd_through_formula_matches_analytic_derivative(name: str) -> None:
    fn, grad = ACTIVATIONS[name]
    for x in inputs():
        torch.testing.assert_close(autograd_derivative(fn, x), grad(x), **TOL)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@settings(max_examples=40, deadline=None)
@given(values=float_lists)
def test_value_and_derivative_on_hypothesis_floats(name: str, values: list[float]) -> None:
    fn, grad = ACTIVATIONS[name]
    x = f64(values)
    torch.testing.assert_close(fn(x), REFERENCE[name](x), **TOL)
    torch.testing.assert_close(grad(x), autograd_derivative(REFERENCE[name], x), **TOL)


def test_derivative_at_zero() -> None:
    zero = torch.zeros(1, dtype=torch.float64)
    expected = {
        "relu": 0.0,  # torch's convention at the kink
        "leaky_relu": 0.01,
        "sigmoid": 0.25,
        "tanh": 1.0,
        "gelu": 0.5,
        "gelu_tanh": 0.5,
        "silu": 0.5,
    }
    for name, (_, grad) in ACTIVATIONS.items():
        assert grad(zero).item() == pytest.approx(expected[name], abs=1e-15), name


def test_leaky_relu_slope_argument() -> None:
    fn, grad = ACTIVATIONS["leaky_relu"]
    x = random_inputs(1)
    torch.testing.assert_close(fn(x, 0.2), F.leaky_relu(x, 0.2), **TOL)
    expected = autograd_derivative(lambda t: F.leaky_relu(t, 0.2), x)
    torch.testing.assert_close(grad(x, 0.2), expected, **TOL)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.702])
def test_swish(beta: float) -> None:
    x = torch.cat([random_inputs(2).flatten(), f64(EDGE)])
    torch.testing.assert_close(swish(x, beta), x * torch.sigmoid(beta * x), **TOL)
    expected = autograd_derivative(lambda t: t * torch.sigmoid(beta * t), x)
    torch.testing.assert_close(swish_grad(x, beta), expected, **TOL)
    if beta == 1.0:
        torch.testing.assert_close(swish(x), F.silu(x), **TOL)


def test_gelu_tanh_is_close_to_exact_gelu() -> None:
    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    gap = (ACTIVATIONS["gelu"].fn(x) - ACTIVATIONS["gelu_tanh"].fn(x)).abs().max().item()
    assert 1e-5 < gap < 1e-3


# --------------------------------------------------------------------------- gated family


def gated_reference(name: str, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    a, b = x.chunk(2, dim=dim)
    gate = {"glu": torch.sigmoid, "bilinear": lambda t: t, "reglu": F.relu}
    gate |= {"geglu": F.gelu, "swiglu": F.silu}
    return a * gate[name](b)


GATED_FNS = {"glu": glu, "bilinear": bilinear, "reglu": reglu, "geglu": geglu, "swiglu": swiglu}


def test_glu_matches_torch_value_and_gradient() -> None:
    x = random_inputs(3).reshape(2, 2, 257)  # split along dim 1, also test dim=-1 below
    torch.testing.assert_close(glu(x, dim=1), F.glu(x, dim=1), **TOL)
    y = random_inputs(4)[:, :256]
    torch.testing.assert_close(glu(y), F.glu(y, dim=-1), **TOL)
    upstream = torch.randn(4, 128, dtype=torch.float64)
    mine = y.clone().requires_grad_(True)
    ref = y.clone().requires_grad_(True)
    (g_mine,) = torch.autograd.grad(glu(mine), mine, upstream)
    (g_ref,) = torch.autograd.grad(F.glu(ref, dim=-1), ref, upstream)
    torch.testing.assert_close(g_mine, g_ref, **TOL)


@pytest.mark.parametrize("name", sorted(GATED_FNS))
def test_gated_variants(name: str) -> None:
    x = torch.cat([random_inputs(5)[:, :256], f64(EDGE[:24]).expand(4, 24)], dim=-1)
    fn = GATED_FNS[name]
    out = fn(x)
    assert out.shape == (4, 140)
    torch.testing.assert_close(out, gated_reference(name, x), **TOL)
    mine = x.clone().requires_grad_(True)
    ref = x.clone().requires_grad_(True)
    (g_mine,) = torch.autograd.grad(fn(mine).sum(), mine)
    (g_ref,) = torch.autograd.grad(gated_reference(name, ref).sum(), ref)
    torch.testing.assert_close(g_mine, g_ref, **TOL)


@pytest.mark.parametrize("name", sorted(GATED_FNS))
def test_gated_odd_split_raises(name: str) -> None:
    with pytest.raises(ValueError, match=r"even.*size 7"):
        GATED_FNS[name](torch.randn(3, 7))


def test_split_halves_other_dim() -> None:
    a, b = split_halves(torch.arange(12.0).reshape(4, 3), dim=0)
    assert a.shape == b.shape == (2, 3)
    with pytest.raises(ValueError, match="dim 1"):
        split_halves(torch.randn(4, 3), dim=1)


# --------------------------------------------------------------------------- FeedForward


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("activation", feed_forward_activations())
def test_feedforward_shapes_and_gradients(activation: str) -> None:
    torch.manual_seed(0)
    ff = FeedForward(16, 24, activation=activation)
    assert ff.gated == (activation in GATED_ACTIVATIONS)
    for shape in [(16,), (5, 16), (2, 3, 16)]:
        assert ff(torch.randn(shape)).shape == shape
    x = torch.randn(2, 3, 16, requires_grad=True)
    ff(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in ff.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_feedforward_parameter_layout() -> None:
    ungated = FeedForward(8, 32, activation="gelu")
    gated = FeedForward(8, 21, activation="swiglu", bias=False)
    assert ungated.w3 is None and ungated.w1.weight.shape == (32, 8)
    assert ungated.w2.weight.shape == (8, 32)
    assert gated.w1.weight.shape == gated.w3.weight.shape == (21, 8)
    assert gated.w2.weight.shape == (8, 21)
    assert n_params(ungated) == 2 * 8 * 32 + 32 + 8
    assert n_params(gated) == 3 * 8 * 21
    assert all(lin.bias is None for lin in (gated.w1, gated.w2, gated.w3))


@pytest.mark.parametrize("name", sorted(GATED_FNS))
def test_gated_feedforward_equals_fused_glu(name: str) -> None:
    torch.manual_seed(1)
    ff = FeedForward(12, 10, activation=name).double()
    x = torch.randn(3, 12, dtype=torch.float64)
    fused = GATED_FNS[name](torch.cat([ff.w1(x), ff.w3(x)], dim=-1))
    torch.testing.assert_close(ff(x), ff.w2(fused), **TOL)


def test_ungated_feedforward_formula() -> None:
    torch.manual_seed(2)
    ff = FeedForward(12, 48, activation="gelu_tanh").double()
    x = torch.randn(3, 12, dtype=torch.float64)
    expected = ff.w2(F.gelu(ff.w1(x), approximate="tanh"))
    torch.testing.assert_close(ff(x), expected, **TOL)


@pytest.mark.parametrize("d_model", [64, 96, 768, 1024])
@pytest.mark.parametrize("bias", [True, False])
def test_matched_hidden_size_matches_parameter_count(d_model: int, bias: bool) -> None:
    ungated = FeedForward(d_model, matched_hidden_size(d_model, gated=False), "gelu", bias)
    gated = FeedForward(d_model, matched_hidden_size(d_model, gated=True), "swiglu", bias)
    ratio = n_params(gated) / n_params(ungated)
    assert abs(ratio - 1) < 0.03, ratio


def test_matched_hidden_size_values() -> None:
    assert matched_hidden_size(768, gated=False) == 3072
    assert matched_hidden_size(768, gated=True) == 2048
    assert matched_hidden_size(4096, gated=True, multiple_of=256) == 11008  # LLaMA-7B
    assert matched_hidden_size(100, gated=True, multiple_of=8) % 8 == 0
    h = matched_hidden_size(100, gated=True, multiple_of=8)
    assert math.isclose(h, 800 / 3, rel_tol=0.05)
    with pytest.raises(ValueError, match="positive"):
        matched_hidden_size(0, gated=True)


def test_feedforward_dropout_train_vs_eval() -> None:
    torch.manual_seed(3)
    ff = FeedForward(16, 64, activation="relu", dropout=0.5)
    x = torch.randn(4, 16)
    ff.eval()
    torch.testing.assert_close(ff(x), ff(x))
    ff.train()
    out = ff(x)
    assert (out == 0).float().mean() > 0.2


def test_feedforward_unknown_activation() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu_new'") as info:
        FeedForward(8, 32, activation="gelu_new")
    for name in ["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "glu"]:
        assert repr(name) in str(info.value)
