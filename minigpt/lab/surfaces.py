"""Loss surfaces of two parameters, and the paths optimizers take across them.

A network has millions of parameters, but most of what gradient descent does already shows on a
function of two: a valley that is steep one way and flat the other, a learning rate that crawls,
zig-zags or blows up, the noise of mini-batches. Every loss here takes parameters ``p`` of shape
``(..., 2)`` and returns a loss of shape ``(...)``, so the same function draws a contour plot
(a grid of points, :func:`loss_grid`) and drives an optimizer (one point, :func:`descent_path`).

Example::

    >>> path = descent_path(bowl, start=(-4.0, 2.0), optimizer="sgd", lr=0.05, steps=100)
    >>> path.shape
    (101, 2)
    >>> bool(bowl(torch.tensor(path[-1])) < bowl(torch.tensor(path[0])))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from minigpt.optim import SGD, Adam

__all__ = [
    "OPTIMIZERS",
    "bowl",
    "descent_path",
    "loss_grid",
    "minibatch_loss",
    "regression_data",
    "regression_loss",
    "rosenbrock",
]

LossFn = Callable[[torch.Tensor], torch.Tensor]
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def _check_last_axis(p: torch.Tensor) -> None:
    if p.shape[-1:] != (2,):
        raise ValueError(f"parameters must have shape (..., 2), got {tuple(p.shape)}")


def bowl(p: torch.Tensor, curvature: tuple[float, float] = (1.0, 10.0)) -> torch.Tensor:
    """An elongated quadratic bowl ``(a x² + b y²) / 2``, minimum 0 at the origin.

    With ``curvature=(1, 10)`` it is ten times steeper along ``y`` than along ``x``: the
    *condition number* is 10. Gradient descent must use a learning rate small enough for the
    steep direction (``lr < 2 / b``), and then crawls along the flat one.

    Args:
        p: parameters ``(x, y)``, shape ``(..., 2)``.
        curvature: the second derivatives ``(a, b)`` along ``x`` and ``y``, both ``> 0``.

    Returns:
        The loss, shape ``(...)``.
    """
    _check_last_axis(p)
    a, b = curvature
    if not (a > 0 and b > 0):
        raise ValueError(f"curvature must be two positive numbers, got {curvature}")
    return 0.5 * (a * p[..., 0] ** 2 + b * p[..., 1] ** 2)


def rosenbrock(p: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana valley ``(a - x)² + b (y - x²)²``, minimum 0 at ``(a, a²)``.

    The valley floor is a curved, nearly flat parabola with steep walls: easy to fall into,
    slow to follow. Shape ``(..., 2) -> (...)``.
    """
    _check_last_axis(p)
    x, y = p[..., 0], p[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def regression_data(
    n: int = 256, slope: float = 2.0, intercept: float = -1.0, noise: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy points ``y = slope x + intercept + noise ε`` with ``x, ε ~ N(0, 1)``.

    Returns ``(x, y)``, each of shape ``(n,)``, float64, from ``torch.Generator(seed)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = slope * x + intercept + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def regression_loss(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the line ``w x + c`` with ``p = (w, c)`` on the points ``(x, y)``.

    Args:
        p: shape ``(..., 2)``: slope and intercept.
        x, y: shape ``(n,)``.

    Returns:
        ``mean_i (w x_i + c - y_i)²``, shape ``(...)``. A quadratic bowl in ``(w, c)``.
    """
    _check_last_axis(p)
    prediction = p[..., 0:1] * x + p[..., 1:2]  # (..., n)
    return ((prediction - y) ** 2).mean(dim=-1)


def minibatch_loss(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A loss that draws a fresh random mini-batch of ``batch_size`` points on every call.

    Each call samples ``batch_size`` indices without replacement (its own generator, seeded
    with ``seed``, so a run is reproducible) and returns :func:`regression_loss` on them: an
    unbiased but noisy estimate of the full loss, as in stochastic gradient descent.
    """
    if not 1 <= batch_size <= len(x):
        raise ValueError(f"batch_size must be in [1, {len(x)}], got {batch_size}")
    g = torch.Generator().manual_seed(seed)

    def loss(p: torch.Tensor) -> torch.Tensor:
        idx = torch.randperm(len(x), generator=g)[:batch_size]
        return regression_loss(p, x[idx], y[idx])

    return loss


def loss_grid(
    loss_fn: LossFn, xlim: tuple[float, float], ylim: tuple[float, float], n: int = 101
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``loss_fn`` on an ``n × n`` grid, for ``plt.contour(X, Y, Z)``.

    Returns ``(X, Y, Z)``, each of shape ``(n, n)``: ``X[i, j]`` runs over ``xlim`` along
    ``j``, ``Y[i, j]`` over ``ylim`` along ``i``, and ``Z = loss_fn((X, Y))``.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    xs = torch.linspace(*xlim, n, dtype=torch.float64)
    ys = torch.linspace(*ylim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = loss_fn(torch.stack([X, Y], dim=-1))
    return X.numpy(), Y.numpy(), Z.numpy()


def descent_path(
    loss_fn: LossFn,
    start: Sequence[float],
    optimizer: str = "sgd",
    lr: float = 0.1,
    steps: int = 50,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    max_norm: float = 1e6,
) -> np.ndarray:
    """The points visited by an optimizer from ``start`` on a two-parameter loss.

    Args:
        loss_fn: maps parameters of shape ``(2,)`` to a scalar loss (it may be stochastic,
            like :func:`minibatch_loss`).
        start: the initial ``(x, y)``.
        optimizer: ``"sgd"`` (plain), ``"momentum"`` (heavy ball, ``momentum``),
            ``"nesterov"``, or ``"adam"`` (``betas``); minigpt's :mod:`minigpt.optim` classes.
        lr: learning rate.
        steps: number of updates.
        momentum: ``μ`` for ``"momentum"`` and ``"nesterov"``.
        betas: ``(β1, β2)`` for ``"adam"``.
        max_norm: a run whose parameters leave the ball of this radius has diverged: it stops
            there and the rest of the path is NaN.

    Returns:
        An array of shape ``(steps + 1, 2)``: ``start``, then the point after each update.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    p = torch.tensor([float(v) for v in start], dtype=torch.float64, requires_grad=True)
    if p.shape != (2,):
        raise ValueError(f"start must be two numbers (x, y), got {start}")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = Adam([p], lr=lr, betas=betas)
    else:
        mu = 0.0 if optimizer == "sgd" else momentum
        opt = SGD([p], lr=lr, momentum=mu, nesterov=optimizer == "nesterov")
    path = np.full((steps + 1, 2), np.nan)
    path[0] = p.detach().numpy()
    for t in range(1, steps + 1):
        opt.zero_grad()
        loss_fn(p).backward()
        opt.step()
        point = p.detach().numpy()
        if not np.all(np.isfinite(point)) or np.linalg.norm(point) > max_norm:
            break  # diverged: leave the rest NaN
        path[t] = point
    return path
