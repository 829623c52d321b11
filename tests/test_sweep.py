"""Tests of minigpt.lab.sweep and of the stored file minigpt/lab/results/scaling_law.json."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt.config import count_parameters
from minigpt.data import load_shakespeare
from minigpt.lab.record import path as result_path
from minigpt.lab.record import round_floats
from minigpt.lab.sweep import (
    CURVE_COLUMNS,
    ModelSize,
    SweepPoint,
    SweepSettings,
    char_data,
    compute_frontier,
    eval_schedule,
    held_out_set,
    load_results,
    model_config,
    reproduces,
    save_results,
    settings_from_parameters,
    sweep_parameters,
    train_point,
)
from minigpt.scaling import fit_power_law, flops_per_token, training_flops
from minigpt.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA_FILE = result_path("scaling_law")
TINY = ModelSize(n_layer=1, n_heads=2, d_model=8)
TINY_SETTINGS = SweepSettings(train=TrainConfig(seq_len=16, batch_size=4, warmup_tokens=64,
                                                lr=1e-2),
                              n_tokens=64 * 24, n_evals=4, val_sequences=8)


@pytest.fixture(scope="module")
def small_data():
    return char_data(load_shakespeare()[:40_000])


@pytest.fixture(scope="module")
def tiny_point(small_data):
    return train_point(TINY, TINY_SETTINGS, small_data)


@pytest.fixture(scope="module")
def stored():
    return load_results(DATA_FILE)


def _without_time(point: SweepPoint) -> SweepPoint:
    return dataclasses.replace(point, wall_seconds=0.0)


# ---------------------------------------------------------------------------------------------
# Training one point


def test_training_is_deterministic(small_data, tiny_point):
    again = train_point(TINY, TINY_SETTINGS, small_data)
    assert _without_time(again) == _without_time(tiny_point)  # bit-identical losses
    assert reproduces(tiny_point, again, tol=0.0)


def test_point_contents(tiny_point):
    steps = eval_schedule(TINY_SETTINGS.max_steps, TINY_SETTINGS.n_evals)
    assert [row[0] for row in tiny_point.curve] == [s * 64 for s in steps]
    assert all(len(row) == len(CURVE_COLUMNS) for row in tiny_point.curve)
    assert tiny_point.final_val_loss == tiny_point.curve[-1][2]
    assert tiny_point.tokens == TINY_SETTINGS.n_tokens and tiny_point.complete
    # It learned something: below the uniform guess over the vocabulary.
    assert tiny_point.final_val_loss < math.log(80)
    assert torch.get_num_threads() == 1  # the thread count is restored (conftest sets 1)


def test_stop_after_gives_the_start_of_the_curve(small_data, tiny_point):
    part = train_point(TINY, TINY_SETTINGS, small_data, stop_after=2)
    assert part.curve == tiny_point.curve[:2] and not part.complete
    assert reproduces(tiny_point, part)


def test_flops_accounting_matches_minigpt_scaling(small_data, tiny_point):
    cfg = model_config(TINY, TINY_SETTINGS, len(small_data.vocab))
    n, (L, T, d) = count_parameters(cfg, non_embedding=True), (1, 16, 8)
    assert tiny_point.params_non_embedding == n == L * (12 * d * d + 13 * d) + 2 * d
    assert tiny_point.params == count_parameters(cfg)
    assert tiny_point.flops_per_token == flops_per_token(cfg) == 6 * n + 6 * L * T * d
    assert tiny_point.compute == training_flops(cfg, TINY_SETTINGS.n_tokens, attention=True,
                                                   params="non_embedding")
    for tokens, compute, _ in tiny_point.curve:
        assert compute == tokens * tiny_point.flops_per_token


def test_held_out_set_is_fixed_and_spread(small_data):
    x, y = held_out_set(small_data.val, 8, 16)
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x[0], small_data.val[:16]) and torch.equal(y[-1], small_data.val[-16:])


def test_eval_schedule():
    steps = eval_schedule(1000, 16)
    assert steps[-1] == 1000 and steps == sorted(set(steps)) and len(steps) == 17
    ideal = np.geomspace(steps[0], 1000, len(steps))  # geometric spacing, up to rounding
    assert np.all(np.abs(np.log(steps) - np.log(ideal)) <= 0.5 / steps[0] + 1e-9)


# ---------------------------------------------------------------------------------------------
# The data file


def test_json_round_trip(tmp_path, small_data, tiny_point):
    params = sweep_parameters([TINY], TINY_SETTINGS, small_data, command="pytest")
    path = tmp_path / "sub" / "sweep.json"
    save_results(path, [tiny_point], params)
    loaded = load_results(path)
    assert loaded["points"] == [SweepPoint.from_dict(round_floats(tiny_point.to_dict()))]
    assert loaded["parameters"] == round_floats(params)
    assert settings_from_parameters(loaded["parameters"]) == ([TINY], TINY_SETTINGS)
    assert reproduces(loaded["points"][0], tiny_point, tol=1e-5)
    json.loads(path.read_text())  # plain JSON


def test_round_floats():
    assert round_floats((1 / 3, [2e-7 / 3], {"a": 12345678.9})) == [
        0.333333, [6.66667e-08], {"a": 12345700.0}]
    assert round_floats({"n": 7, "s": "x", "f": math.inf}) == {"n": 7, "s": "x", "f": math.inf}


#: A stored point to compare against (the numbers of a 10-parameter model, made up).
TINY_POINT = SweepPoint("L1-H1-D8", 1, 1, 8, 100, 10, 60.0, 2, 128, 1280.0,
                        [[64, 640.0, 3.0], [128, 1280.0, 2.5]], 2.5, True, 1.0)


def test_reproduces():
    a = TINY_POINT
    assert reproduces(a, a, tol=0)
    assert not reproduces(a, dataclasses.replace(a, curve=[[64, 640.0, 3.02], [128, 1280.0, 2.5]]))
    assert not reproduces(a, dataclasses.replace(a, params_non_embedding=11))
    assert not reproduces(a, dataclasses.replace(a, curve=[[32, 320.0, 3.0]]))  # another schedule


def test_stored_file_recreates_its_configurations(stored):
    params = stored["parameters"]
    sizes, settings = settings_from_parameters(params)
    data = char_data()
    assert params["data"]["sha256"] == data.description["sha256"]  # the same corpus
    assert params["data"]["vocab"] == data.vocab
    by_n = sorted(sizes, key=lambda s: count_parameters(model_config(s, settings, 80), True))
    for size, point in zip(by_n, stored["points"], strict=True):
        cfg = model_config(size, settings, len(data.vocab))
        assert point.name == size.name
        assert point.params_non_embedding == count_parameters(cfg, non_embedding=True)
        assert point.params == count_parameters(cfg)
        assert point.flops_per_token == pytest.approx(flops_per_token(cfg), rel=1e-5)
        assert point.tokens == settings.n_tokens and point.complete
        steps = eval_schedule(settings.max_steps, settings.n_evals)
        assert [row[0] for row in point.curve] == [s * settings.tokens_per_step
                                                      for s in steps]
    smallest = stored["points"][0]
    assert smallest.wall_seconds < 15  # the notebook re-trains it live


def test_script_matches_stored_file(stored):
    spec = importlib.util.spec_from_file_location("scaling_law",
                                                  ROOT / "experiments" / "scaling_law.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert settings_from_parameters(stored["parameters"]) == (script.SIZES, script.SETTINGS)


def test_stored_points_follow_a_power_law(stored):
    points = stored["points"]
    n = np.array([p.params_non_embedding for p in points])
    loss = np.array([p.final_val_loss for p in points])
    assert len(points) >= 5 and n[-1] / n[0] >= 30
    assert np.all(np.diff(loss) < 0)  # strictly better with size
    fit = fit_power_law(n, loss)
    assert fit.b > 0 and fit.b_stderr < fit.b / 3
    c, frontier = compute_frontier(points)
    assert np.all(np.diff(c) > 0) and np.all(np.diff(frontier) < 0)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelSize(2, 3, 32), "divisible by n_heads"),
        (lambda: ModelSize(0, 1, 8), "n_layer must be a positive integer"),
        (lambda: SweepSettings(n_tokens=1000), "multiple of batch_size"),
        (lambda: SweepSettings().with_train(warmup_tokens=10**9), "warmup_tokens"),
        (lambda: SweepSettings().with_train(seq_len=None), "seq_len must be set"),
        (lambda: SweepSettings(val_fraction=1.0), "val_fraction"),
        (lambda: held_out_set(torch.arange(5), 2, 8), "at least seq_len"),
        (lambda: train_point(TINY, TINY_SETTINGS, data="text"), "CharData"),
        (lambda: train_point(TINY, TINY_SETTINGS, char_data("ab\n" * 300), stop_after=0),
         "stop_after"),
        (lambda: settings_from_parameters({}), "not the parameters of a sweep"),
        (lambda: load_results("no/such/file.json"), "no results file"),
        (lambda: reproduces(TINY_POINT, TINY_POINT, tol=-1), "tol must be >= 0"),
        (lambda: compute_frontier([dataclasses.replace(TINY_POINT, curve=[])]),
         "non-empty curves"),
        (lambda: char_data(""), "non-empty string"),
    ],
)
def test_bad_input(make, message):
    with pytest.raises(ValueError, match=message):
        make()
