"""A small regression problem for watching training: data, a tiny MLP and a full-batch loop.

Language models take hours to show overfitting; this problem shows it in a second. The data are
noisy samples of a smooth curve, ``y = sin(3x) + noise``; the model is a small multilayer
perceptron; :func:`fit` trains it on the whole training set at every step (full batch) and
records the training and validation loss as it goes, optionally stopping early with
:class:`minigpt.early_stopping.EarlyStopping`.

Example::

    >>> train, val = curve_data(20, seed=1), curve_data(100, seed=2)
    >>> model = mlp(width=16, seed=0)
    >>> history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), train, val, steps=50)
    >>> len(history.steps), history.train[-1] < history.train[0]
    (5, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from minigpt.early_stopping import EarlyStopping

__all__ = ["History", "curve_data", "fit", "mlp"]

Data = tuple[torch.Tensor, torch.Tensor]


def curve_data(n: int, noise: float = 0.3, seed: int = 0) -> Data:
    """``n`` points ``(x, sin(3x) + noise ε)``, ``x ~ U[-1, 1]``, ``ε ~ N(0, 1)``.

    Returns ``(x, y)``, each of shape ``(n, 1)``, float32, from ``torch.Generator(seed)``. The
    noise sets a floor: no model can reach a mean squared error below ``noise²`` on new points.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    y = torch.sin(3 * x) + noise * torch.randn(n, 1, generator=g)
    return x, y


def mlp(width: int = 32, depth: int = 2, seed: int = 0) -> nn.Sequential:
    """A perceptron ``1 -> width -> ... -> 1`` with ``depth`` tanh hidden layers.

    Its weights come from PyTorch's default initialization after ``torch.manual_seed(seed)``.
    ``width=64, depth=2`` has 4,353 parameters: far more than the 20 points it will fit.
    """
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    fan_in = 1
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.Tanh()]
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    return nn.Sequential(*layers)


@dataclass
class History:
    """Losses recorded during :func:`fit`, one entry per evaluation."""

    steps: list[int] = field(default_factory=list)  # optimizer steps taken so far
    train: list[float] = field(default_factory=list)  # mean squared error on the training set
    val: list[float] = field(default_factory=list)  # on the validation set (if one was given)
    stopped_at: int | None = None  # the step at which early stopping ended training


def _mse(model: nn.Module, data: Data) -> torch.Tensor:
    x, y = data
    return ((model(x) - y) ** 2).mean()


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Data,
    val: Data | None = None,
    steps: int = 1000,
    eval_every: int = 10,
    stopper: EarlyStopping | None = None,
) -> History:
    """Train ``model`` by full-batch gradient steps on the mean squared error.

    Every ``eval_every`` steps the training and validation losses are recorded. With a
    ``stopper`` (which needs ``val``), each validation loss is passed to
    ``stopper.step(val_loss, model)``, and training ends when it says so; with
    ``restore_best_weights`` the model then holds its best weights.

    Returns:
        The :class:`History` of the run.
    """
    if steps < 0 or eval_every < 1:
        raise ValueError(f"need steps >= 0 and eval_every >= 1, got {steps}, {eval_every}")
    if stopper is not None and val is None:
        raise ValueError("early stopping watches the validation loss: pass val=(x, y)")
    history = History()
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        _mse(model, train).backward()
        optimizer.step()
        if step % eval_every:
            continue
        with torch.no_grad():
            history.steps.append(step)
            history.train.append(_mse(model, train).item())
            if val is not None:
                history.val.append(_mse(model, val).item())
        if stopper is not None and stopper.step(history.val[-1], model):
            history.stopped_at = step
            break
    return history
