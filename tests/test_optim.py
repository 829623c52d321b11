"""Tests for minigpt.optim: updates equal torch.optim, schedules equal their closed forms."""

from __future__ import annotations

import copy
import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from minigpt import optim

STEPS = 100
TOLERANCES = {torch.float32: 1e-6, torch.float64: 1e-12}


def make_model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def make_data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (32,), generator=g)
    return x, y


def two_groups(model: nn.Module, first: dict, second: dict) -> list[dict]:
    """Layer 1 in one parameter group, layer 2 in another, each with its own settings."""
    return [
        {"params": list(model[0].parameters()), **first},
        {"params": list(model[2].parameters()), **second},
    ]


def train(model: nn.Module, opt: torch.optim.Optimizer, dtype: torch.dtype, scheduler=None):
    x, y = make_data(dtype)
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return model


def assert_same_parameters(a: nn.Module, b: nn.Module, tol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


CASES = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "sgd_dampening": ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    "sgd_nesterov": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd_weight_decay": ("SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01}),
    "adam": ("Adam", {"lr": 1e-2}),
    "adam_gpt3": ("Adam", {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}),
    "adamw": ("AdamW", {"lr": 1e-2}),
    "adamw_gpt3": ("AdamW", {"lr": 1e-2, "betas": (0.9, 0.95), "weight_decay": 0.1}),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch_after_100_steps(case: str, dtype: torch.dtype) -> None:
    cls_name, kwargs = CASES[case]
    ours, theirs = make_model(dtype), make_model(dtype)
    train(ours, getattr(optim, cls_name)(ours.parameters(), **kwargs), dtype)
    train(theirs, getattr(torch.optim, cls_name)(theirs.parameters(), **kwargs), dtype)
    assert_same_parameters(ours, theirs, TOLERANCES[dtype])
    assert not torch.equal(ours[0].weight, make_model(dtype)[0].weight)  # it did train


GROUP_CASES = {
    "sgd": ("SGD", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.1, "weight_decay": 0.01}, {}),
    "sgd_nesterov": (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"weight_decay": 0.05},
        {"lr": 0.01},
    ),
    "adam": ("Adam", {"lr": 1e-2, "betas": (0.9, 0.95)}, {"weight_decay": 0.1}, {"lr": 3e-3}),
    "adamw": (
        "AdamW",
        {"lr": 1e-2, "betas": (0.9, 0.95), "weight_decay": 0.1},
        {"lr": 2e-2},
        {"weight_decay": 0.0, "betas": (0.8, 0.99)},
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(GROUP_CASES))
def test_parameter_groups_match_torch(case: str, dtype: torch.dtype) -> None:
    cls_name, defaults, first, second = GROUP_CASES[case]
    ours, theirs = make_model(dtype), make_model(dtype)
    opt = getattr(optim, cls_name)(two_groups(ours, first, second), **defaults)
    ref = getattr(torch.optim, cls_name)(two_groups(theirs, first, second), **defaults)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
    train(ours, opt, dtype)
    train(theirs, ref, dtype)
    assert_same_parameters(ours, theirs, TOLERANCES[dtype])


@pytest.mark.parametrize("cls_name", ["SGD", "AdamW"])
def test_works_with_lambda_lr_like_torch(cls_name: str) -> None:
    dtype = torch.float64
    schedule = partial(optim.warmup_cosine_schedule, warmup_steps=10, decay_steps=80)
    ours, theirs = make_model(dtype), make_model(dtype)
    opt = getattr(optim, cls_name)(ours.parameters(), lr=0.05)
    ref = getattr(torch.optim, cls_name)(theirs.parameters(), lr=0.05)
    train(ours, opt, dtype, torch.optim.lr_scheduler.LambdaLR(opt, schedule))
    train(theirs, ref, dtype, torch.optim.lr_scheduler.LambdaLR(ref, schedule))
    assert_same_parameters(ours, theirs, TOLERANCES[dtype])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1)  # at the floor


def test_parameters_without_grad_are_left_alone() -> None:
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = optim.AdamW([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3))
    assert set(opt.state) == {a}


def test_step_with_closure_returns_loss() -> None:
    p = torch.tensor([2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.25)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 4.0
    assert p.item() == pytest.approx(1.0)  # 2 - 0.25 * 4


def test_state_dict_round_trip() -> None:
    dtype = torch.float64
    model = make_model(dtype)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, dtype)
    clone = copy.deepcopy(model)
    opt2 = optim.Adam(clone.parameters(), lr=1e-2)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # else they share m, v
    train(model, opt, dtype)
    train(clone, opt2, dtype)
    assert_same_parameters(model, clone, 0.0)


# --------------------------------------------------------------------------------------------
# Gradient clipping
# --------------------------------------------------------------------------------------------


def grads_of(dtype: torch.dtype, scale: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    params = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in [(4, 3), (3,), (5,)]]
    for p in params[:2]:  # the last parameter has no gradient
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype) * scale
    return params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("scale", "max_norm"), [(10.0, 1.0), (0.01, 1.0), (1.0, 0.5)])
def test_clip_grad_norm_matches_torch(dtype: torch.dtype, scale: float, max_norm: float) -> None:
    ours, theirs = grads_of(dtype, scale), grads_of(dtype, scale)
    norm = optim.clip_grad_norm_(ours, max_norm)
    ref = nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, ref, rtol=TOLERANCES[dtype], atol=0)
    for p, q in zip(ours, theirs, strict=True):
        if q.grad is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=TOLERANCES[dtype], atol=0)
    clipped = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in ours if p.grad is not None))
    assert clipped <= max_norm * (1 + 1e-6)


def test_clip_grad_norm_single_tensor_and_no_grads() -> None:
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    assert optim.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]))
    assert optim.clip_grad_norm_([torch.zeros(2)], 1.0).item() == 0.0


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def test_constant_schedule() -> None:
    assert all(optim.constant_schedule(s) == 1.0 for s in range(50))


def test_step_decay_equals_closed_form_and_torch_step_lr() -> None:
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    step_lr = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.3)
    for s in range(40):
        ours = optim.step_decay_schedule(s, step_size=7, gamma=0.3)
        assert ours == 0.3 ** (s // 7)
        assert 0.5 * ours == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        step_lr.step()


def test_warmup_cosine_equals_closed_form_at_every_step() -> None:
    warmup, decay, floor = 10, 110, 0.1
    for s in range(150):
        if s < warmup:
            expected = s / warmup
        elif s < decay:
            expected = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / 100))
        else:
            expected = floor
        got = optim.warmup_cosine_schedule(
            s, warmup_steps=warmup, decay_steps=decay, min_lr_ratio=floor
        )
        assert got == pytest.approx(expected, abs=1e-15)


def test_warmup_cosine_shape() -> None:
    f = partial(optim.warmup_cosine_schedule, warmup_steps=50, decay_steps=1000)
    values = [f(s) for s in range(1200)]
    assert values[0] == 0.0 and f(50) == 1.0 and max(values) == 1.0
    assert values[:51] == sorted(values[:51])  # increases during warmup
    assert values[50:1001] == sorted(values[50:1001], reverse=True)  # then decreases
    assert f(1000) == f(1199) == f(10**9) == 0.1  # then stays at the floor
    steps = [abs(b - a) for a, b in zip(values[:-1], values[1:], strict=True)]
    assert max(steps) <= 1 / 50 + 1e-12  # no jumps
    # continuous at both corners, from either side
    for corner in (50, 1000):
        assert f(corner - 1e-9) == pytest.approx(f(corner), abs=1e-9)


def test_warmup_cosine_gpt3_in_tokens() -> None:
    f = partial(
        optim.warmup_cosine_schedule,
        warmup_steps=optim.GPT3_WARMUP_TOKENS,
        decay_steps=optim.GPT3_DECAY_TOKENS,
        min_lr_ratio=optim.GPT3_MIN_LR_RATIO,
    )
    assert f(optim.GPT3_WARMUP_TOKENS / 2) == 0.5
    assert f(optim.GPT3_WARMUP_TOKENS) == 1.0
    assert f(300e9) == 0.1


def test_warmup_cosine_without_warmup_and_with_floor_zero() -> None:
    f = partial(optim.warmup_cosine_schedule, warmup_steps=0, decay_steps=10, min_lr_ratio=0.0)
    assert f(0) == 1.0 and f(5) == pytest.approx(0.5) and f(10) == 0.0


def test_lambda_lr_uses_the_schedule() -> None:
    p = torch.zeros(1, requires_grad=True)
    opt = optim.AdamW([p], lr=6e-4)
    schedule = partial(optim.warmup_cosine_schedule, warmup_steps=5, decay_steps=20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    for s in range(30):
        assert opt.param_groups[0]["lr"] == pytest.approx(6e-4 * schedule(s), rel=1e-12)
        opt.step()
        scheduler.step()


# --------------------------------------------------------------------------------------------
# Batch-size ramp
# --------------------------------------------------------------------------------------------


def test_batch_ramp_in_tokens() -> None:
    full, ramp = 3_145_728, 4e9  # GPT-3 175B: 1536 x 2048 tokens
    f = partial(optim.batch_size_schedule, full_batch_tokens=full, ramp_tokens=ramp)
    sizes = [f(t) for t in range(0, int(5e9), int(1e7))]
    assert sizes[0] == 32_768
    assert sizes == sorted(sizes)
    assert f(ramp) == f(1e12) == full
    assert f(ramp / 2) == int(32_768 + (full - 32_768) / 2)


def test_batch_ramp_in_sequences_rounded_to_a_multiple() -> None:
    f = partial(
        optim.batch_size_schedule,
        full_batch_tokens=1536 * 2048,
        ramp_tokens=12e9,
        seq_len=2048,
        multiple=8,
    )
    sizes = [f(t) for t in range(0, int(13e9), int(5e7))]
    assert sizes[0] == 16  # 32k tokens
    assert sizes == sorted(sizes)
    assert sizes[-1] == 1536
    assert all(s % 8 == 0 for s in sizes)
    assert len(set(sizes)) > 100  # it really ramps


def test_batch_ramp_never_below_multiple_and_zero_ramp() -> None:
    f = partial(optim.batch_size_schedule, full_batch_tokens=4096, seq_len=1024)
    assert f(0, ramp_tokens=100, start_batch_tokens=512, multiple=2) == 2
    assert f(0, ramp_tokens=0, start_batch_tokens=1024) == 4


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def params() -> list[torch.Tensor]:
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: optim.SGD(params(), lr=-0.1), r"lr must be >= 0, got -0.1"),
        (lambda: optim.SGD(params(), momentum=-0.5), r"momentum must be >= 0"),
        (lambda: optim.SGD(params(), weight_decay=-1.0), r"weight_decay must be >= 0"),
        (lambda: optim.SGD(params(), nesterov=True), r"nesterov=True requires momentum > 0"),
        (
            lambda: optim.SGD(params(), momentum=0.9, dampening=0.1, nesterov=True),
            r"dampening = 0",
        ),
        (lambda: optim.Adam(params(), lr=-1e-3), r"lr must be >= 0"),
        (lambda: optim.Adam(params(), betas=(0.9, 1.0)), r"betas .* each in \[0, 1\)"),
        (lambda: optim.AdamW(params(), betas=(-0.1, 0.9)), r"betas .* each in \[0, 1\)"),
        (lambda: optim.AdamW(params(), weight_decay=-0.1), r"weight_decay must be >= 0"),
        (lambda: optim.AdamW(params(), eps=-1e-8), r"eps must be >= 0"),
        (
            lambda: optim.AdamW([{"params": params(), "lr": -1.0}], lr=1e-3),
            r"lr must be >= 0, got -1.0",
        ),
    ],
)
def test_optimizer_bad_arguments_raise(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_param_group_added_later_raises_and_is_not_stored() -> None:
    opt = optim.SGD(params(), lr=0.1)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        opt.add_param_group({"params": params(), "weight_decay": -0.1})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: optim.clip_grad_norm_(params(), 0.0), r"max_norm must be > 0, got 0.0"),
        (lambda: optim.clip_grad_norm_(params(), -1.0), r"max_norm must be > 0"),
        (
            lambda: optim.warmup_cosine_schedule(0, warmup_steps=-1, decay_steps=10),
            r"warmup_steps must be >= 0, got -1",
        ),
        (
            lambda: optim.warmup_cosine_schedule(0, warmup_steps=20, decay_steps=10),
            r"decay_steps must be >= warmup_steps",
        ),
        (
            lambda: optim.warmup_cosine_schedule(
                0, warmup_steps=1, decay_steps=10, min_lr_ratio=1.5
            ),
            r"min_lr_ratio must be in \[0, 1\], got 1.5",
        ),
        (lambda: optim.cosine_schedule(0.5, min_lr_ratio=-0.1), r"min_lr_ratio must be in"),
        (lambda: optim.constant_schedule(-1), r"step must be >= 0"),
        (lambda: optim.step_decay_schedule(3, step_size=0), r"step_size must be > 0"),
        (lambda: optim.step_decay_schedule(3, step_size=2, gamma=0), r"gamma must be > 0"),
        (
            lambda: optim.batch_size_schedule(0, full_batch_tokens=1000, ramp_tokens=10),
            r"start_batch_tokens <= full_batch_tokens",
        ),
        (
            lambda: optim.batch_size_schedule(
                -1, full_batch_tokens=10**6, ramp_tokens=10, start_batch_tokens=10
            ),
            r"tokens_seen must be >= 0",
        ),
        (
            lambda: optim.batch_size_schedule(
                0, full_batch_tokens=10**6, ramp_tokens=-1, start_batch_tokens=10
            ),
            r"ramp_tokens must be >= 0",
        ),
        (
            lambda: optim.batch_size_schedule(
                0, full_batch_tokens=10**6, ramp_tokens=1, start_batch_tokens=10, seq_len=3
            ),
            r"seq_len must be >= 1 and divide",
        ),
        (
            lambda: optim.batch_size_schedule(
                0, full_batch_tokens=100, ramp_tokens=1, start_batch_tokens=10, multiple=3
            ),
            r"must be a multiple of multiple=3",
        ),
    ],
)
def test_clip_and_schedule_bad_arguments_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# -- adam_step: one AdamW step as a pure function ---------------------------------------------


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("betas", [(0.9, 0.999), optim.GPT3_BETAS])
def test_adam_step_matches_torch_adamw(weight_decay: float, betas: tuple[float, float]) -> None:
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, generator=g, dtype=torch.float64)
    grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(20)]
    p = start.clone().requires_grad_(True)
    reference = torch.optim.AdamW([p], lr=0.01, betas=betas, eps=1e-8, weight_decay=weight_decay)
    ours, m, v = start.numpy().copy(), np.zeros((3, 4)), np.zeros((3, 4))
    for t, grad in enumerate(grads, start=1):
        p.grad = grad.clone()
        reference.step()
        ours, m, v = optim.adam_step(
            ours, grad.numpy(), m, v, t, lr=0.01, betas=betas, weight_decay=weight_decay
        )
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_adam_step_is_pure_and_checks_arguments() -> None:
    param, grad, m, v = np.ones(2), np.ones(2), np.zeros(2), np.zeros(2)
    optim.adam_step(param, grad, m, v, 1, lr=0.1, weight_decay=0.1)
    assert param.tolist() == [1.0, 1.0] and m.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="t counts steps from 1"):
        optim.adam_step(param, grad, m, v, 0, lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.adam_step(param, grad, m, v, 1, lr=0.1, betas=(0.9, 1.0))
