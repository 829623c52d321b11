"""Tests for minigpt.lab.fitting: the loop equals a hand-written one, early stopping restores."""

from __future__ import annotations

import pytest
import torch

from minigpt.early_stopping import EarlyStopping
from minigpt.lab.fitting import curve_data, fit, mlp


def test_curve_data_is_reproducible_with_the_stated_noise() -> None:
    x, y = curve_data(2000, noise=0.3, seed=0)
    assert x.shape == y.shape == (2000, 1)
    assert torch.equal(x, curve_data(2000, noise=0.3, seed=0)[0])
    assert x.min() >= -1 and x.max() <= 1
    assert abs((y - torch.sin(3 * x)).std().item() - 0.3) < 0.02


def test_mlp_shape_and_parameter_count() -> None:
    model = mlp(width=64, depth=2)
    assert sum(p.numel() for p in model.parameters()) == 4353
    assert model(torch.zeros(5, 1)).shape == (5, 1)


def test_fit_equals_a_hand_written_loop() -> None:
    train, val = curve_data(20, seed=1), curve_data(50, seed=2)
    ours = mlp(16, seed=0)
    history = fit(ours, torch.optim.Adam(ours.parameters(), lr=0.01), train, val, 30, 10)
    theirs = mlp(16, seed=0)
    opt = torch.optim.Adam(theirs.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(theirs(train[0]), train[1]).backward()
        opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert history.steps == [10, 20, 30] and len(history.val) == 3
    want = torch.nn.functional.mse_loss(theirs(val[0]), val[1]).item()
    assert history.val[-1] == pytest.approx(want, rel=1e-6)


def test_early_stopping_ends_the_run_and_restores_the_best_weights() -> None:
    train, val = curve_data(12, noise=0.5, seed=1), curve_data(200, noise=0.5, seed=2)
    model = mlp(64, seed=0)
    stopper = EarlyStopping(patience=5)
    history = fit(model, torch.optim.Adam(model.parameters(), lr=0.01), train, val,
                  steps=3000, eval_every=20, stopper=stopper)
    assert history.stopped_at is not None and history.stopped_at < 3000
    with torch.no_grad():
        now = torch.nn.functional.mse_loss(model(val[0]), val[1]).item()
    assert now == pytest.approx(min(history.val), rel=1e-6)


def test_bad_arguments_raise() -> None:
    model = mlp(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pass val"):
        fit(model, opt, curve_data(4), stopper=EarlyStopping())
    with pytest.raises(ValueError, match="eval_every"):
        fit(model, opt, curve_data(4), eval_every=0)
    with pytest.raises(ValueError, match="width and depth"):
        mlp(0)
