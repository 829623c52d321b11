"""Tests for minigpt.autograd: every gradient must equal torch.autograd in float64."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from minigpt.autograd import (
    Tensor,
    cross_entropy,
    gradient_check,
    linear_backward,
    numerical_gradient,
    numerical_gradients,
    relative_error,
    torch_gradient_check,
    unbroadcast,
)

TOL = {"rtol": 1e-10, "atol": 1e-10}


def compare_with_torch(
    ours: Callable[..., Tensor],
    theirs: Callable[..., torch.Tensor],
    arrays: list[np.ndarray],
    seed: int = 0,
) -> None:
    """Run ``ours`` and ``theirs`` on the same float64 inputs and compare values and gradients.

    The output is contracted with random weights so every output entry gets its own upstream
    gradient (a plain ``.sum()`` would hide some bugs, e.g. in softmax's backward).
    """
    ts = [Tensor(a.copy()) for a in arrays]
    ps = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, ref = ours(*ts), theirs(*ps)
    assert np.isfinite(out.data).all()  # (assert_allclose would accept NaN == NaN)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **TOL)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * weights).sum().backward()
    (ref * torch.from_numpy(weights)).sum().backward()
    for t, p in zip(ts, ps, strict=True):
        assert np.isfinite(t.grad).all()
        np.testing.assert_allclose(t.grad, p.grad.numpy(), **TOL)


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def positive(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# --------------------------------------------------------------------------------------------
# Single operations
# --------------------------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, lambda x: -x),
    "exp": (lambda x: x.exp(), lambda x: x.exp()),
    "tanh": (lambda x: x.tanh(), lambda x: x.tanh()),
    "relu": (lambda x: x.relu(), lambda x: x.relu()),
    "square": (lambda x: x**2, lambda x: x**2),
    "cube": (lambda x: x**3, lambda x: x**3),
    "softmax_last": (lambda x: x.softmax(-1), lambda x: x.softmax(-1)),
    "softmax_first": (lambda x: x.softmax(0), lambda x: x.softmax(0)),
    "log_softmax_last": (lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1)),
    "log_softmax_mid": (lambda x: x.log_softmax(1), lambda x: x.log_softmax(1)),
    "transpose": (lambda x: x.transpose(), lambda x: x.permute(2, 1, 0)),
    "transpose_axes": (lambda x: x.transpose(1, 0, 2), lambda x: x.permute(1, 0, 2)),
    "reshape": (lambda x: x.reshape(6, 4), lambda x: x.reshape(6, 4)),
    "scalar_ops": (lambda x: 2.0 * x - 1.0 + x / 4.0, lambda x: 2.0 * x - 1.0 + x / 4.0),
    "rsub_rdiv": (lambda x: 3.0 - 1.0 / (x**2 + 1.0), lambda x: 3.0 - 1.0 / (x**2 + 1.0)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops_match_torch(name: str) -> None:
    ours, theirs = UNARY[name]
    compare_with_torch(ours, theirs, [randn(2, 3, 4)])


@pytest.mark.parametrize(
    ("name", "ours", "theirs"),
    [
        ("log", lambda x: x.log(), lambda x: x.log()),
        ("sqrt", lambda x: x**0.5, lambda x: x**0.5),
        ("inv_pow", lambda x: x**-1.5, lambda x: x**-1.5),
    ],
)
def test_positive_domain_ops_match_torch(name: str, ours, theirs) -> None:
    compare_with_torch(ours, theirs, [positive(3, 5)])


REDUCTIONS = [
    (None, False),
    (0, False),
    (-1, True),
    (1, True),
    ((0, 2), False),
    ((0, 2), True),
]


@pytest.mark.parametrize(("axis", "keepdims"), REDUCTIONS)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_reductions_match_torch(op: str, axis, keepdims: bool) -> None:
    def ours(x: Tensor) -> Tensor:
        return getattr(x, op)(axis=axis, keepdims=keepdims)

    def theirs(x: torch.Tensor) -> torch.Tensor:
        dim = tuple(range(x.ndim)) if axis is None else axis
        return getattr(x, op)(dim=dim, keepdim=keepdims)

    compare_with_torch(ours, theirs, [randn(2, 3, 4)])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1.0),
}


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [
        ((3, 4), (3, 4)),
        ((3, 1), (1, 4)),  # both operands broadcast
        ((5, 4), (4,)),  # bias add
        ((2, 3, 4), (3, 1)),
        ((), (2, 3)),  # scalar tensor
        ((2, 1, 4), (1, 3, 1)),
    ],
)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_ops_with_broadcasting_match_torch(op: str, shape_a, shape_b) -> None:
    fn = BINARY[op]
    compare_with_torch(fn, fn, [randn(*shape_a, seed=1), randn(*shape_b, seed=2)])


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (4, 5)),  # (B, T, C) @ (C, D)
        ((2, 3, 4), (2, 4, 5)),  # batched
        ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch dims
        ((4,), (4, 5)),  # vector @ matrix
        ((3, 4), (4,)),  # matrix @ vector
        ((4,), (4,)),  # dot product
        ((4,), (2, 4, 5)),
    ],
)
def test_matmul_matches_torch(shape_a, shape_b) -> None:
    fn = lambda a, b: a @ b
    compare_with_torch(fn, fn, [randn(*shape_a, seed=1), randn(*shape_b, seed=2)])


def test_linear_layer_with_bias_matches_torch() -> None:
    fn = lambda x, w, b: x @ w + b  # (B, T, C) @ (C, D) + (D,)
    compare_with_torch(fn, fn, [randn(2, 3, 4, seed=1), randn(4, 5, seed=2), randn(5, seed=3)])


def test_ndarray_on_the_left_and_constants_get_no_grad() -> None:
    x = Tensor(randn(3))
    c = np.arange(3.0)
    y = (c + x) * c - c / (x * x + 1.0)
    y.sum().backward()
    expected = c + c * 2 * x.data / (x.data**2 + 1.0) ** 2
    np.testing.assert_allclose(x.grad, expected, **TOL)


def test_reused_tensor_accumulates_gradient_like_torch() -> None:
    fn = lambda x: x * x + (x.tanh() * x).exp()  # x is used four times
    compare_with_torch(fn, fn, [randn(3, 2)])


def test_backward_twice_accumulates_like_torch() -> None:
    a = randn(3, 4)
    x = Tensor(a)
    xt = torch.tensor(a, requires_grad=True)
    y, yt = (x * x).tanh().sum(), (xt * xt).tanh().sum()
    y.backward()
    y.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), **TOL)


def test_backward_with_explicit_gradient() -> None:
    a, g = randn(2, 3), randn(2, 3, seed=5)
    x = Tensor(a)
    xt = torch.tensor(a, requires_grad=True)
    x.tanh().backward(g)
    xt.tanh().backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), **TOL)


def test_float32_stays_float32() -> None:
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    y = (2.0 * x + 1).tanh().mean(axis=0)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_integer_data_becomes_float64() -> None:
    assert Tensor([1, 2, 3]).dtype == np.float64


# --------------------------------------------------------------------------------------------
# Softmax and cross-entropy
# --------------------------------------------------------------------------------------------


def test_softmax_and_log_softmax_are_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, 1001.0, 999.0], [-1000.0, 0.0, 1000.0]])
    compare_with_torch(lambda x: x.softmax(-1), lambda x: x.softmax(-1), [logits])
    compare_with_torch(lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1), [logits])
    assert np.isfinite(Tensor(logits).log_softmax(-1).data).all()


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
def test_cross_entropy_matches_torch(shape: tuple[int, ...]) -> None:
    targets = np.random.default_rng(3).integers(0, shape[-1], shape[:-1])
    compare_with_torch(
        lambda z: cross_entropy(z, targets),
        lambda z: F.cross_entropy(z.reshape(-1, shape[-1]), torch.from_numpy(targets).reshape(-1)),
        [randn(*shape) * 3],
    )


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 5000.0]])
    targets = np.array([1, 2])
    compare_with_torch(
        lambda z: cross_entropy(z, targets),
        lambda z: F.cross_entropy(z, torch.from_numpy(targets)),
        [logits],
    )


def test_small_mlp_with_cross_entropy_matches_torch() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5))
    y = rng.integers(0, 3, 16)
    params = [
        rng.standard_normal((5, 8)) / np.sqrt(5),
        np.zeros(8) + 0.1,
        rng.standard_normal((8, 8)) / np.sqrt(8),
        rng.standard_normal(8) * 0.1,
        rng.standard_normal((8, 3)) / np.sqrt(8),
        np.zeros(3),
    ]

    def ours(w1, b1, w2, b2, w3, b3):
        h = (x @ w1 + b1).tanh()
        h = (h @ w2 + b2).relu()
        return cross_entropy(h @ w3 + b3, y)

    def theirs(w1, b1, w2, b2, w3, b3):
        xt = torch.from_numpy(x)
        h = (xt @ w1 + b1).tanh()
        h = (h @ w2 + b2).relu()
        return F.cross_entropy(h @ w3 + b3, torch.from_numpy(y))

    compare_with_torch(ours, theirs, params)


# --------------------------------------------------------------------------------------------
# Random graphs
# --------------------------------------------------------------------------------------------


def sum_keep(x, axis):
    return x.sum(axis, keepdims=True) if isinstance(x, Tensor) else x.sum(axis, keepdim=True)


def mean_keep(x, axis):
    return x.mean(axis, keepdims=True) if isinstance(x, Tensor) else x.mean(axis, keepdim=True)


GRAPH_UNARY = [
    lambda x: x.tanh(),
    lambda x: x.relu(),
    lambda x: x.tanh().exp(),
    lambda x: (x * x + 1.0).log(),
    lambda x: x**2,
    lambda x: -x,
    lambda x: x.softmax(-1),
    lambda x: x.log_softmax(0),
    lambda x: sum_keep(x, 0),
    lambda x: mean_keep(x, -1),
    lambda x: (x * x + 0.5) ** 0.5,
]
GRAPH_BINARY = [
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: a / (b * b + 1.0),
]


def random_graph(nodes: list, ops: list[tuple[int, int, int, int]], w):
    """Grow a graph: each op reads one or two existing nodes and appends a new one."""
    nodes = list(nodes)
    for kind, i, j, which in ops:
        a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
        if kind == 0:
            nodes.append(GRAPH_UNARY[which % len(GRAPH_UNARY)](a))
        elif kind == 1:
            nodes.append(GRAPH_BINARY[which % len(GRAPH_BINARY)](a, b))
        else:
            nodes.append((a + b + nodes[0]) @ w)  # nodes[0] is (3, 4): the sum is (3, 4)
    total = nodes[0].sum()
    for k, node in enumerate(nodes[1:], start=1):
        total = total + node.mean() * float(k % 3 + 1)
    return total


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_match_torch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    leaves = [rng.standard_normal(s) for s in [(3, 4), (1, 4), (3, 1), (4,)]]
    w = rng.standard_normal((4, 4)) * 0.5
    ops = [tuple(int(v) for v in rng.integers(0, 100, 4)) for _ in range(15)]
    ops = [(k % 3, i, j, which) for k, i, j, which in ops]

    def ours(*xs):
        return random_graph(xs[:-1], ops, xs[-1])

    compare_with_torch(ours, ours, [*leaves, w])


# --------------------------------------------------------------------------------------------
# Hypothesis-driven shapes
# --------------------------------------------------------------------------------------------

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(sorted(BINARY)),
    seed=st.integers(0, 2**16),
)
def test_broadcasting_binary_ops_hypothesis(shapes, op: str, seed: int) -> None:
    (shape_a, shape_b), _ = shapes
    fn = BINARY[op]
    compare_with_torch(fn, fn, [randn(*shape_a, seed=seed), randn(*shape_b, seed=seed + 1)])


@FAST
@given(
    batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
    n=st.integers(1, 4),
    k=st.integers(1, 4),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_matmul_hypothesis(batch, n: int, k: int, m: int, seed: int) -> None:
    (batch_a, batch_b), _ = batch
    fn = lambda a, b: a @ b
    a, b = randn(*batch_a, n, k, seed=seed), randn(*batch_b, k, m, seed=seed + 1)
    compare_with_torch(fn, fn, [a, b])


@FAST
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    keepdims=st.booleans(),
    op=st.sampled_from(["sum", "mean"]),
)
def test_reductions_hypothesis(shape, data, keepdims: bool, op: str) -> None:
    axes = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1).map(tuple))

    def ours(x: Tensor) -> Tensor:
        return getattr(x, op)(axis=axes, keepdims=keepdims)

    def theirs(x: torch.Tensor) -> torch.Tensor:
        return getattr(x, op)(dim=axes, keepdim=keepdims)

    compare_with_torch(ours, theirs, [randn(*shape)])


@FAST
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    data=st.data(),
    log=st.booleans(),
)
def test_softmax_hypothesis(shape, data, log: bool) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    name = "log_softmax" if log else "softmax"
    fn = lambda x: getattr(x, name)(axis)
    compare_with_torch(fn, fn, [randn(*shape) * 5])


@FAST
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=4, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_unbroadcast_equals_sum_of_broadcast_copies(shapes, seed: int) -> None:
    (shape,), result = shapes
    grad = randn(*result, seed=seed)
    # the reference: let torch differentiate an explicit broadcast
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    x.expand(result).backward(torch.from_numpy(grad))
    np.testing.assert_allclose(unbroadcast(grad, shape), x.grad.numpy(), **TOL)


# --------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------


def test_numerical_gradient_agrees_with_torch() -> None:
    w = randn(4, 3, seed=1)

    def f_torch(x: torch.Tensor) -> torch.Tensor:
        return (x @ torch.from_numpy(w)).tanh().pow(2).sum() + x.exp().mean()

    x = torch.tensor(randn(2, 4), requires_grad=True)
    f_torch(x).backward()
    numeric = numerical_gradient(lambda a: f_torch(torch.from_numpy(a)).item(), x.detach().numpy())
    np.testing.assert_allclose(numeric, x.grad.numpy(), rtol=1e-7, atol=1e-8)


def test_numerical_gradient_does_not_modify_its_input() -> None:
    x = randn(3, 2)
    before = x.copy()
    numerical_gradient(lambda a: float(np.sum(a**3)), x)
    np.testing.assert_array_equal(x, before)


def test_gradient_check_numpy_function_with_manual_gradients() -> None:
    x, w = randn(3, 4, seed=1), randn(4, 2, seed=2)
    f = lambda x, w: np.sum(np.tanh(x @ w))
    dz = 1 - np.tanh(x @ w) ** 2  # d tanh(z) / dz
    assert gradient_check(f, [x, w], [dz @ w.T, x.T @ dz]) < 1e-7
    wrong = [dz @ w.T, x.T @ dz * 1.1]  # a 10% error is caught
    assert gradient_check(f, [x, w], wrong) > 1e-2


def test_gradient_check_tensor_function_uses_backward() -> None:
    y = np.array([0, 2, 1])
    f = lambda z, w: cross_entropy((z @ w).tanh() * 3.0, y)
    assert gradient_check(f, [randn(3, 4, seed=1), randn(4, 3, seed=2)]) < 1e-7


def test_numerical_gradients_per_input() -> None:
    grads = numerical_gradients(lambda a, b: np.sum(a * b), [np.ones(2), np.arange(2.0)])
    np.testing.assert_allclose(grads[0], [0.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(grads[1], [1.0, 1.0], atol=1e-8)


def test_torch_gradient_check_adapter() -> None:
    f = lambda x, g: F.layer_norm(x, (4,), weight=g).pow(3).sum()
    assert torch_gradient_check(f, [torch.randn(2, 4), torch.rand(4) + 0.5]) < 1e-6


def test_relative_error() -> None:
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_matmul_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"matmul: shape mismatch \(3, 4\) @ \(5, 2\)"):
        Tensor(randn(3, 4)) @ Tensor(randn(5, 2))
    with pytest.raises(ValueError, match="batch dimensions"):
        Tensor(randn(2, 3, 4)) @ Tensor(randn(3, 4, 5))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        Tensor(randn(3)) @ Tensor(2.0)


def test_backward_on_non_scalar_without_grad_raises() -> None:
    with pytest.raises(ValueError, match=r"single-element tensor.*shape \(2, 3\)"):
        Tensor(randn(2, 3)).tanh().backward()
    with pytest.raises(ValueError, match="grad has shape"):
        Tensor(randn(2, 3)).tanh().backward(np.ones(3))


def test_cross_entropy_bad_targets_raise() -> None:
    logits = Tensor(randn(4, 3))
    with pytest.raises(ValueError, match=r"needs targets \(4,\), got \(3,\)"):
        cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="must be integers"):
        cross_entropy(logits, np.zeros(4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        cross_entropy(logits, np.array([0, 1, 2, 3]))


def test_other_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="does not broadcast"):
        unbroadcast(np.ones((3, 4)), (2, 4))
    with pytest.raises(ValueError, match="constant scalar exponent"):
        Tensor(randn(3)) ** Tensor(randn(3))
    with pytest.raises(ValueError, match="cannot reshape"):
        Tensor(randn(3, 4)).reshape(5, 2)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        Tensor(randn(3, 4)).sum(axis=2)
    with pytest.raises(ValueError, match="not a permutation"):
        Tensor(randn(3, 4)).transpose(0, 0)
    with pytest.raises(ValueError, match="single number"):
        numerical_gradient(lambda a: a * 2, np.ones(3))
    with pytest.raises(ValueError, match="eps must be > 0"):
        numerical_gradient(lambda a: a.sum(), np.ones(3), eps=0.0)
    with pytest.raises(ValueError, match="needs f to return a minigpt Tensor"):
        gradient_check(lambda a: 1.0, [np.ones(3)])


# -- linear_backward: the backward rule written by hand ---------------------------------------


def test_linear_backward_matches_the_engine_and_torch() -> None:
    rng = np.random.default_rng(0)
    x, w, b, g = (
        rng.normal(size=(5, 3)),
        rng.normal(size=(3, 4)),
        rng.normal(size=4),
        rng.normal(size=(5, 4)),
    )
    dx, dw, db = linear_backward(x, w, g)
    tx, tw, tb = (Tensor(a) for a in (x, w, b))
    (tx @ tw + tb).backward(g)
    np.testing.assert_allclose(dx, tx.grad, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad, atol=1e-12)
    px, pw, pb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.linear(px, pw.T, pb).backward(torch.tensor(g))
    for ours, theirs in [(dx, px), (dw, pw), (db, pb)]:
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-12)


def test_linear_backward_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="needs grad_out of shape"):
        linear_backward(np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        linear_backward(np.ones(3), np.ones((3, 4)), np.ones((1, 4)))
