"""Tests for minigpt.lab.surfaces: paths equal closed forms and torch.optim; grids, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minigpt.lab import surfaces
from minigpt.lab.surfaces import (
    bowl,
    descent_path,
    loss_grid,
    minibatch_loss,
    regression_data,
    regression_loss,
    rosenbrock,
)


def test_sgd_on_the_bowl_follows_the_closed_form() -> None:
    # x_t = (1 - lr a)^t x_0 along each axis
    lr, a, b = 0.05, 1.0, 10.0
    path = descent_path(bowl, (-4.0, 2.0), "sgd", lr=lr, steps=30)
    t = np.arange(31)
    np.testing.assert_allclose(path[:, 0], -4.0 * (1 - lr * a) ** t, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], 2.0 * (1 - lr * b) ** t, rtol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_paths_equal_torch_optim(name: str) -> None:
    p = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    if name == "adam":
        opt = torch.optim.Adam([p], lr=0.02, betas=(0.9, 0.95))
    else:
        opt = torch.optim.SGD([p], lr=1e-3, momentum=0.8, nesterov=name == "nesterov")
    want = [p.detach().numpy().copy()]
    for _ in range(40):
        opt.zero_grad()
        rosenbrock(p).backward()
        opt.step()
        want.append(p.detach().numpy().copy())
    lr = 0.02 if name == "adam" else 1e-3
    got = descent_path(rosenbrock, (-1.5, 2.0), name, lr=lr, steps=40, momentum=0.8,
                       betas=(0.9, 0.95))
    np.testing.assert_allclose(got, np.array(want), rtol=1e-10, atol=1e-12)


def test_a_diverging_path_ends_in_nan() -> None:
    path = descent_path(bowl, (1.0, 1.0), "sgd", lr=0.3, steps=200)  # 0.3 > 2/10
    assert np.isfinite(path[0]).all() and np.isnan(path[-1]).all()


def test_loss_grid_evaluates_every_point() -> None:
    X, Y, Z = loss_grid(rosenbrock, (-2, 2), (-1, 3), n=7)
    assert X.shape == Y.shape == Z.shape == (7, 7)
    assert X[0, 0] == -2 and X[0, -1] == 2 and Y[0, 0] == -1 and Y[-1, 0] == 3
    np.testing.assert_allclose(Z, (1 - X) ** 2 + 100 * (Y - X**2) ** 2)


def test_regression_loss_is_the_mean_squared_error_and_minimal_at_least_squares() -> None:
    x, y = regression_data(100, seed=3)
    w, c = np.polyfit(x.numpy(), y.numpy(), 1)
    best = regression_loss(torch.tensor([w, c]), x, y)
    direct = torch.mean((w * x + c - y) ** 2)
    torch.testing.assert_close(best, direct)
    for dp in [(0.1, 0), (0, -0.1), (0.05, 0.05)]:
        assert regression_loss(torch.tensor([w + dp[0], c + dp[1]]), x, y) > best


def test_minibatch_loss_is_reproducible_and_unbiased() -> None:
    x, y = regression_data(64, seed=0)
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    a = [minibatch_loss(x, y, 8, seed=1)(p).item() for _ in range(2)]
    assert a[0] == a[1]
    loss = minibatch_loss(x, y, 8, seed=2)
    mean = np.mean([loss(p).item() for _ in range(3000)])
    assert abs(mean - regression_loss(p, x, y).item()) < 0.05 * regression_loss(p, x, y).item()
    full = minibatch_loss(x, y, 64)(p)
    torch.testing.assert_close(full, regression_loss(p, x, y))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        descent_path(bowl, (0, 0), "rmsprop")
    with pytest.raises(ValueError, match="shape"):
        bowl(torch.zeros(3))
    with pytest.raises(ValueError, match="curvature"):
        bowl(torch.zeros(2), curvature=(1.0, 0.0))
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_loss(torch.zeros(4), torch.zeros(4), 5)
    assert surfaces.OPTIMIZERS == ("sgd", "momentum", "nesterov", "adam")
