"""minigpt.lab.isoflop: equal compute per size, the parabola's vertex, Chinchilla's prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.config import GPTConfig, count_parameters
from minigpt.lab.isoflop import (
    chinchilla_prediction,
    isoflop_minimum,
    isoflop_plan,
    tokens_for_budget,
)
from minigpt.scaling import chinchilla_loss, chinchilla_optimal


def test_every_size_gets_the_same_compute():
    configs = {f"d{d}": GPTConfig(n_layer=2, d_model=d, n_heads=4, vocab_size=80, n_ctx=64)
               for d in (32, 48, 64, 96)}
    by_batch = isoflop_plan(configs, compute=4e11, seq_len=64, batch_size=16)
    by_steps = isoflop_plan(configs, compute=4e11, seq_len=64, steps=100)
    for name in configs:
        n = count_parameters(configs[name])
        for row in (by_batch[name], by_steps[name]):
            assert row["n_parameters"] == n
            assert row["tokens"] == row["steps"] * row["batch_size"] * 64
            assert row["compute"] == 6 * n * row["tokens"]
        half_step = 6 * n * 16 * 64 / 2  # rounding to whole steps or whole sequences
        assert abs(by_batch[name]["compute"] - 4e11) <= half_step
        assert abs(by_steps[name]["compute"] - 4e11) <= 6 * n * 100 * 64 / 2
        assert by_batch[name]["batch_size"] == 16 and by_steps[name]["steps"] == 100
    tokens = [row["tokens"] for row in by_batch.values()]
    assert tokens == sorted(tokens, reverse=True)  # larger model, fewer tokens
    batches = [row["batch_size"] for row in by_steps.values()]
    assert batches == sorted(batches, reverse=True)


@settings(max_examples=30, deadline=None)
@given(st.floats(3.0, 8.0), st.floats(0.01, 1.0), st.floats(1.0, 3.0))
def test_vertex_of_an_exact_parabola(log10_n_opt, curvature, floor):
    x = np.log(np.geomspace(1e2, 1e9, 6))
    x_opt = log10_n_opt * math.log(10)
    losses = curvature * (x - x_opt) ** 2 + floor
    n_opt, loss_opt = isoflop_minimum(np.exp(x), losses)
    assert math.log(n_opt) == pytest.approx(x_opt, rel=1e-6)
    assert loss_opt == pytest.approx(floor, abs=1e-6)


def test_chinchilla_law_profile_has_its_minimum_near_chinchilla_optimal():
    # An IsoFLOP profile drawn from Chinchilla's own fitted law: the parabola in log N should
    # land close to the analytic optimum (the law is not exactly a parabola, hence 10 %).
    compute = 1e21
    n = np.geomspace(1e8, 1e10, 9)
    n_opt, _ = isoflop_minimum(n, chinchilla_loss(n, compute / (6 * n)))
    assert n_opt == pytest.approx(chinchilla_optimal(compute)[0], rel=0.1)


def test_prediction_and_budget():
    assert tokens_for_budget(6e9, 1e3) == 1e6
    pred = chinchilla_prediction(3.14e23)
    assert pred["approach_3"]["n_params"] == pytest.approx(2.45e10, rel=0.01)
    assert pred["rule_20"]["tokens_per_parameter"] == 20.0


def test_errors():
    with pytest.raises(ValueError, match="compute must be"):
        tokens_for_budget(0, 1e3)
    with pytest.raises(ValueError, match="at least 3 distinct"):
        isoflop_minimum([1e3, 1e3, 1e4], [1.0, 1.1, 1.2])
    with pytest.raises(ValueError, match="opens downwards"):
        isoflop_minimum([1e3, 1e4, 1e5], [1.0, 2.0, 1.0])
    cfg = {"a": GPTConfig(n_layer=1, d_model=8, n_heads=1)}
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        isoflop_plan(cfg, 1e12, 0, steps=10)
    with pytest.raises(ValueError, match="exactly one of batch_size"):
        isoflop_plan(cfg, 1e12, 64)
    with pytest.raises(ValueError, match="exactly one of batch_size"):
        isoflop_plan(cfg, 1e12, 64, batch_size=8, steps=10)
