"""Tests for minigpt.early_stopping and minigpt.hyperparameters."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from minigpt.early_stopping import EarlyStopping
from minigpt.hyperparameters import (
    Trial,
    grid_search,
    log_uniform,
    random_search,
    uniform,
)

# --------------------------------------------------------------------------------------------
# EarlyStopping
# --------------------------------------------------------------------------------------------


def run(stopper: EarlyStopping, metrics: list[float]) -> int | None:
    """Feed metrics one by one; return the index at which the stopper said stop."""
    for i, m in enumerate(metrics):
        if stopper.step(m):
            return i
    return None


def test_patience_counts_consecutive_bad_evaluations() -> None:
    stopper = EarlyStopping(patience=3)
    # improves at 0, 1, 4 (the counter resets), then three bad evaluations: stop at index 7
    assert run(stopper, [5.0, 4.0, 4.5, 4.2, 3.0, 3.0, 3.1, 3.5, 1.0]) == 7
    assert stopper.best == 3.0 and stopper.best_step == 4 and stopper.num_bad_steps == 3
    assert stopper.should_stop


def test_patience_one_stops_at_first_non_improvement() -> None:
    assert run(EarlyStopping(patience=1), [3.0, 2.0, 2.0]) == 2


def test_never_stops_while_improving() -> None:
    stopper = EarlyStopping(patience=1)
    assert run(stopper, [10.0 - i for i in range(20)]) is None
    assert stopper.best == -9.0 and stopper.num_bad_steps == 0


def test_min_delta_requires_a_big_enough_improvement() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert run(stopper, [1.0, 0.95, 0.92]) == 2  # 0.05 and 0.08 are too small
    assert stopper.best == 1.0


def test_mode_max() -> None:
    stopper = EarlyStopping(patience=2, mode="max")
    assert run(stopper, [0.5, 0.6, 0.7, 0.65, 0.7]) == 4
    assert stopper.best == 0.7 and stopper.best_step == 2


def test_nan_counts_as_no_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    assert run(stopper, [1.0, math.nan, math.nan]) == 2
    assert stopper.best == 1.0


def test_accepts_tensor_metrics() -> None:
    stopper = EarlyStopping(patience=1)
    stopper.step(torch.tensor(2.0))
    assert stopper.best == 2.0


def test_restores_best_weights() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    stopper = EarlyStopping(patience=2)
    snapshots = []
    for metric in [1.0, 0.5, 0.7, 0.8]:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)  # "training" changes the weights in place
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        stopped = stopper.step(metric, model)
    assert stopped
    for k, v in model.state_dict().items():  # restored automatically to evaluation 1
        assert torch.equal(v, snapshots[1][k])
    assert not torch.equal(model.weight, snapshots[-1]["weight"])


def test_manual_restore_without_auto_restore() -> None:
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=1, restore_best_weights=False)
    stopper.step(1.0, model)
    best = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.mul_(0.0)
    assert stopper.step(2.0, model)
    assert torch.equal(model.weight, torch.zeros_like(best))  # not restored automatically
    stopper.restore(model)
    assert torch.equal(model.weight, best)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": 0}, r"patience must be an integer >= 1 or None, got 0"),
        ({"patience": 2.5}, r"patience must be an integer >= 1"),
        ({"min_delta": -0.1}, r"min_delta must be >= 0, got -0.1"),
        ({"mode": "lowest"}, r"mode must be 'min' or 'max', got 'lowest'"),
    ],
)
def test_early_stopping_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_restore_before_any_saved_weights_raises() -> None:
    stopper = EarlyStopping()
    stopper.step(1.0)  # no model given
    with pytest.raises(ValueError, match="no weights saved yet"):
        stopper.restore(nn.Linear(1, 1))


# --------------------------------------------------------------------------------------------
# Hyperparameter search
# --------------------------------------------------------------------------------------------


def quadratic(lr: float, width: int) -> float:
    return (math.log10(lr) + 3) ** 2 + (width - 64) ** 2 / 1000


def test_grid_search_covers_the_product_and_sorts() -> None:
    grid = {"lr": [1e-4, 1e-3, 1e-2], "width": [32, 64]}
    calls = []

    def fn(**kwargs):
        calls.append(kwargs)
        return quadratic(**kwargs)

    trials = grid_search(fn, grid)
    expected = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    assert calls == expected  # every combination, once, in product order
    assert sorted(tuple(t.params.values()) for t in trials) == sorted(
        itertools.product(*grid.values())
    )
    assert [t.score for t in trials] == sorted(t.score for t in trials)
    assert trials[0] == Trial({"lr": 1e-3, "width": 64}, 0.0)


def test_grid_search_maximize_and_nan_last() -> None:
    scores = {1: 0.5, 2: math.nan, 3: 0.9, 4: 0.1}
    trials = grid_search(lambda x: scores[x], {"x": [1, 2, 3, 4]}, maximize=True)
    assert [t.params["x"] for t in trials] == [3, 1, 4, 2]
    trials = grid_search(lambda x: scores[x], {"x": [1, 2, 3, 4]})
    assert [t.params["x"] for t in trials] == [4, 1, 3, 2]


def test_random_search_is_seeded_and_deterministic() -> None:
    space = {"lr": log_uniform(1e-5, 1e-1), "width": [16, 32, 64, 128], "dropout": uniform(0, 0.5)}
    a = random_search(quadratic_with_dropout, space, n_trials=20, seed=7)
    b = random_search(quadratic_with_dropout, space, n_trials=20, seed=7)
    c = random_search(quadratic_with_dropout, space, n_trials=20, seed=8)
    assert a == b
    assert a != c
    assert len(a) == 20
    assert [t.score for t in a] == sorted(t.score for t in a)
    for t in a:
        assert 1e-5 <= t.params["lr"] < 1e-1
        assert t.params["width"] in (16, 32, 64, 128)
        assert 0 <= t.params["dropout"] < 0.5
    assert len({t.params["width"] for t in a}) > 1


def quadratic_with_dropout(lr: float, width: int, dropout: float) -> float:
    return quadratic(lr, width) + dropout


def test_random_search_log_uniform_spreads_over_decades() -> None:
    trials = random_search(lambda lr: lr, {"lr": log_uniform(1e-6, 1.0)}, n_trials=200, seed=0)
    decades = {math.floor(math.log10(t.params["lr"])) for t in trials}
    assert decades == {-6, -5, -4, -3, -2, -1}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: grid_search(quadratic, {}), r"grid must be a non-empty dict"),
        (lambda: grid_search(quadratic, {"lr": []}), r"grid\['lr'\] must be a non-empty list"),
        (lambda: grid_search(quadratic, {"lr": 0.1}), r"grid\['lr'\] must be a non-empty list"),
        (lambda: random_search(quadratic, {"lr": [1]}, n_trials=0), r"n_trials must be"),
        (lambda: random_search(quadratic, {"lr": 0.1}, n_trials=1), r"space\['lr'\] must be"),
        (lambda: uniform(1.0, 1.0), r"uniform needs low < high"),
        (lambda: log_uniform(0.0, 1.0), r"log_uniform needs 0 < low < high"),
    ],
)
def test_search_bad_arguments_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
