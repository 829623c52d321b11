"""minigpt.energy: the arithmetic of kWh, and the GPT-3 figures it is checked against."""

from __future__ import annotations

import pytest

from minigpt.energy import (
    GPT3_100_PAGES_KWH,
    PATTERSON_GPT3_MWH,
    generation_energy_kwh,
    gpt3_training_energy,
    pages_to_tokens,
    training_energy_kwh,
)
from minigpt.scaling import GPT3_175B_FLOPS, lambda_v100_estimate


def test_kwh_arithmetic():
    # One GPU at 1 TFLOP/s for one hour (3.6e15 FLOPs) drawing 1 kW with PUE 1: 1 kWh.
    assert training_energy_kwh(3.6e15, 1e12, 1000, pue=1.0) == pytest.approx(1.0)
    assert training_energy_kwh(3.6e15, 1e12, 1000, pue=1.5) == pytest.approx(1.5)
    assert training_energy_kwh(7.2e15, 2e12, 500, pue=1.0) == pytest.approx(0.5)
    assert training_energy_kwh(0, 1e12, 300) == 0


def test_gpt3_estimate_agrees_with_the_other_modules_and_patterson():
    e = gpt3_training_energy()
    assert e["gpu_years"] == pytest.approx(lambda_v100_estimate().gpu_years)
    assert e["kwh"] == pytest.approx(lambda_v100_estimate().gpu_hours * 0.3 * 1.1)
    assert 0.5 < e["mwh"] / PATTERSON_GPT3_MWH < 2  # the same order of magnitude
    assert gpt3_training_energy(flops=2 * GPT3_175B_FLOPS)["kwh"] == pytest.approx(2 * e["kwh"])


def test_generation_is_orders_of_magnitude_below_training():
    kwh = generation_energy_kwh(pages_to_tokens(100), 174.6e9)
    assert kwh < GPT3_100_PAGES_KWH < 10 * kwh  # the paper's 0.4 kWh: a few times our bound
    assert gpt3_training_energy()["kwh"] / kwh > 1e6


def test_errors():
    with pytest.raises(ValueError, match="pue must be >= 1"):
        training_energy_kwh(1e18, 1e12, 300, pue=0.5)
    with pytest.raises(ValueError, match="flops_per_second_per_gpu must be a number > 0"):
        training_energy_kwh(1e18, 0, 300)
    with pytest.raises(ValueError, match="flops must be a number >= 0"):
        training_energy_kwh(-1.0, 1e12, 300)
    with pytest.raises(ValueError, match="pages must be a number > 0"):
        pages_to_tokens(0)
