"""Graders for chapter 3 (gradient descent, backpropagation and optimizers).

Each grader calls the student's function on fixed cases with known answers and on random
cases compared with minigpt's reference (and PyTorch where it has the same thing), and raises
AssertionError with a hint if they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from exercises.catalog import Exercise
from exercises.graders.common import (
    check_docstring_examples,
    close,
    difference,
    expect_value_error,
)
from minigpt import autograd, optim

_HERE = "exercises.graders.ch03_gradient_descent"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "from collections.abc import Iterable",
    "",
    "import numpy as np",
    "import torch",
    "",
    "from minigpt.optim import cosine_schedule  # you may use it",
)

EXERCISES = (
    Exercise(
        "3.1",
        "linear_backward",
        "minigpt.autograd:linear_backward",
        f"{_HERE}:grade_linear_backward",
        "Write the backward pass of a linear layer y = x @ w + b by hand.",
    ),
    Exercise(
        "3.2",
        "adam_step",
        "minigpt.optim:adam_step",
        f"{_HERE}:grade_adam_step",
        "Write one step of Adam with decoupled weight decay (GPT-3's optimizer).",
    ),
    Exercise(
        "3.3",
        "clip_grad_norm_",
        "minigpt.optim:clip_grad_norm_",
        f"{_HERE}:grade_clip_grad_norm_",
        "Clip the gradients of all parameters together to a global norm (GPT-3: 1.0).",
    ),
    Exercise(
        "3.4",
        "warmup_cosine_schedule",
        "minigpt.optim:warmup_cosine_schedule",
        f"{_HERE}:grade_warmup_cosine_schedule",
        "Write GPT-3's learning-rate schedule: linear warmup, then cosine decay to a floor.",
    ),
)


def _allclose(got: Any, want: Any, what: str, tol: float = 1e-10) -> None:
    got = np.asarray(got, dtype=float)
    assert got.shape == np.shape(want), f"{what}: shape {got.shape}, want {np.shape(want)}"
    message = difference(got, np.asarray(want, dtype=float), tol, tol)
    assert message is None, f"{what}: got {got}, want {np.asarray(want)}; {message}"


# -- 3.1 ------------------------------------------------------------------------------------------


def grade_linear_backward(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, autograd.linear_backward)
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    dx, dw, db = fn(x, w, np.ones((1, 3)))
    _allclose(dx, [[0.0, 3.0]], "dL/dx = grad_out @ w.T")
    _allclose(dw, [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], "dL/dw = x.T @ grad_out")
    _allclose(db, [1.0, 1.0, 1.0], "dL/db = grad_out summed over the batch")
    rng = np.random.default_rng(0)
    for _ in range(10):
        n, d_in, d_out = (int(v) for v in rng.integers(1, 6, size=3))
        x, w, b = rng.normal(size=(n, d_in)), rng.normal(size=(d_in, d_out)), rng.normal(size=d_out)
        g = rng.normal(size=(n, d_out))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        (tx @ tw + tb).backward(torch.tensor(g))
        got = fn(x, w, g)
        for name, ours, theirs in zip(("dx", "dw", "db"), got, (tx, tw, tb), strict=True):
            _allclose(ours, theirs.grad.numpy(), f"{name} for shapes x {x.shape}, w {w.shape}")


# -- 3.2 ------------------------------------------------------------------------------------------


def grade_adam_step(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, optim.adam_step)
    # Two steps by hand: g1 = 1, g2 = -1, betas (0.5, 0.5): m2 = 0.25 - 0.5 = -0.25,
    # v2 = 0.25 + 0.5 = 0.75; m̂ = -0.25 / 0.75 = -1/3, v̂ = 0.75 / 0.75 = 1.
    p, m, v = fn(np.array([0.0]), np.array([1.0]), np.zeros(1), np.zeros(1), 1, lr=1.0,
                 betas=(0.5, 0.5), eps=0.0)
    _allclose(p, [-1.0], "the first step moves by lr * sign(g)")
    _allclose(m, [0.5], "m_1 = (1 - β1) g_1")
    _allclose(v, [0.5], "v_1 = (1 - β2) g_1²")
    p, m, v = fn(p, np.array([-1.0]), m, v, 2, lr=1.0, betas=(0.5, 0.5), eps=0.0)
    _allclose(m, [-0.25], "m_2 = β1 m_1 + (1 - β1) g_2")
    _allclose(v, [0.75], "v_2 = β2 v_1 + (1 - β2) g_2²")
    _allclose(p, [-1.0 + 1 / 3], "step 2 with bias correction")
    # Tiny gradients: ε is added after the square root, so it barely matters here.
    p, _, _ = fn(np.array([0.0]), np.array([1e-5]), np.zeros(1), np.zeros(1), 1, lr=1.0)
    _allclose(p, [-1e-5 / (1e-5 + 1e-8)], "ε goes outside the square root: √v̂ + ε", 1e-9)
    # Purity: the inputs are not modified.
    param, grad, m0, v0 = np.ones(3), np.ones(3), np.zeros(3), np.zeros(3)
    fn(param, grad, m0, v0, 1, lr=0.1, weight_decay=0.1)
    assert param.tolist() == [1.0] * 3 and m0.tolist() == [0.0] * 3 and v0.tolist() == [0.0] * 3, (
        "adam_step must return new arrays and leave its inputs unchanged"
    )
    # Random runs against minigpt's reference and torch.optim.AdamW.
    rng = np.random.default_rng(1)
    for trial in range(6):
        shape = tuple(int(s) for s in rng.integers(1, 4, size=int(rng.integers(1, 3))))
        betas = (float(rng.uniform(0.5, 0.99)), float(rng.uniform(0.9, 0.999)))
        lr, wd = float(rng.uniform(1e-3, 0.1)), [0.0, 0.1][trial % 2]
        start = rng.normal(size=shape)
        theta = torch.tensor(start, requires_grad=True)
        reference = torch.optim.AdamW([theta], lr=lr, betas=betas, eps=1e-8, weight_decay=wd)
        ours, m, v = start.copy(), np.zeros(shape), np.zeros(shape)
        for t in range(1, 11):
            g = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 2)
            theta.grad = torch.tensor(g)
            reference.step()
            ours, m, v = fn(ours, g, m, v, t, lr=lr, betas=betas, weight_decay=wd)
        _allclose(ours, theta.detach().numpy(),
                  f"10 steps with lr={lr:.3g}, betas=({betas[0]:.3f}, {betas[1]:.3f}), "
                  f"weight_decay={wd} differ from torch.optim.AdamW (decoupled decay first?)", 1e-8)


# -- 3.3 ------------------------------------------------------------------------------------------


def _with_grads(grads: list[np.ndarray]) -> list[torch.Tensor]:
    params = []
    for g in grads:
        p = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def grade_clip_grad_norm_(fn: Callable[..., Any]) -> None:
    params = _with_grads([np.array([3.0]), np.array([0.0, 4.0])])  # global norm 5
    norm = fn(params, 1.0)
    close(float(norm), 5.0, "the return value is the global norm before clipping")
    for p, want in zip(params, ([0.6], [0.0, 0.8]), strict=True):
        _allclose(p.grad.numpy(), want, "all gradients scaled by max_norm / global norm", 1e-5)
    params = _with_grads([np.array([0.3]), np.array([0.4])])  # norm 0.5 < 1: unchanged
    fn(params, 1.0)
    _allclose(torch.cat([p.grad for p in params]).numpy(), [0.3, 0.4],
              "gradients already within max_norm must not change (never scale up)")
    single = _with_grads([np.array([6.0, 8.0])])[0]
    close(float(fn(single, 5.0)), 10.0, "a single tensor is accepted too")
    _allclose(single.grad.numpy(), [3.0, 4.0], "clipping a single tensor", 1e-5)
    without = torch.zeros(2, requires_grad=True)
    fn([without, *_with_grads([np.array([2.0])])], 1.0)
    assert without.grad is None, "parameters without a gradient are skipped"
    rng = np.random.default_rng(2)
    for _ in range(10):
        sizes = rng.integers(1, 6, size=int(rng.integers(1, 4)))
        grads = [rng.normal(size=int(n)) * 3 for n in sizes]
        max_norm = float(rng.uniform(0.1, 5.0))
        ours, theirs = _with_grads(grads), _with_grads(grads)
        got = fn(ours, max_norm)
        want = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        close(float(got), float(want), "the global norm, as torch.nn.utils.clip_grad_norm_", 1e-9)
        for a, b in zip(ours, theirs, strict=True):
            _allclose(a.grad.numpy(), b.grad.numpy(),
                      f"gradients after clipping to {max_norm:.3f}, as torch", 1e-9)


# -- 3.4 ------------------------------------------------------------------------------------------


def grade_warmup_cosine_schedule(fn: Callable[..., Any]) -> None:
    kw = dict(warmup_steps=100, decay_steps=1100, min_lr_ratio=0.1)
    close(fn(0, **kw), 0.0, "the warmup starts at 0")
    close(fn(50, **kw), 0.5, "half-way through the warmup: 0.5")
    close(fn(100, **kw), 1.0, "the peak at the end of the warmup")
    close(fn(600, **kw), 0.55, "half-way through the decay: (1 + min_lr_ratio) / 2")
    close(fn(1100, **kw), 0.1, "the floor at decay_steps")
    close(fn(5000, **kw), 0.1, "the floor after decay_steps")
    close(fn(0, warmup_steps=0, decay_steps=10), 1.0, "no warmup: start at the peak")
    close(fn(10, warmup_steps=0, decay_steps=10, min_lr_ratio=0.0), 0.0, "decay to zero")
    gpt3 = dict(warmup_steps=optim.GPT3_WARMUP_TOKENS, decay_steps=optim.GPT3_DECAY_TOKENS,
                min_lr_ratio=optim.GPT3_MIN_LR_RATIO)
    close(fn(300e9, **gpt3), 0.1, "GPT-3 after 300B tokens: 10% of the peak")
    rng = np.random.default_rng(3)
    for _ in range(200):
        warmup = float(rng.uniform(0, 50))
        decay = warmup + float(rng.uniform(1, 500))
        ratio = float(rng.uniform(0, 1))
        step = float(rng.uniform(0, decay * 1.2))
        want = optim.warmup_cosine_schedule(step, warmup_steps=warmup, decay_steps=decay,
                                            min_lr_ratio=ratio)
        got = fn(step, warmup_steps=warmup, decay_steps=decay, min_lr_ratio=ratio)
        close(got, want, f"step {step:.2f}, warmup {warmup:.2f}, decay_steps {decay:.2f}, "
                         f"min_lr_ratio {ratio:.3f}", 1e-9)
    expect_value_error(fn, "decay_steps < warmup_steps is a mistake", 5, warmup_steps=10,
                       decay_steps=5)


# Plausible wrong answers: CI checks that each grader rejects them (a grader that cannot fail
# is a defect).
def _backward_mean_bias(x: Any, w: Any, grad_out: Any) -> tuple:
    dx, dw, _ = autograd.linear_backward(x, w, grad_out)
    return dx, dw, np.asarray(grad_out).mean(axis=0)


def _backward_averaged_weights(x: Any, w: Any, grad_out: Any) -> tuple:
    dx, dw, db = autograd.linear_backward(x, w, grad_out)
    return dx, dw / len(x), db


def _adam_no_bias_correction(param, grad, m, v, t, *, lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=0.0):
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return param - lr * m / (np.sqrt(v) + eps), m, v


def _adam_eps_inside(param, grad, m, v, t, *, lr, betas=(0.9, 0.999), eps=1e-8,
                     weight_decay=0.0):
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return param - lr * (m / (1 - b1**t)) / np.sqrt(v / (1 - b2**t) + eps), m, v


def _adam_coupled_decay(param, grad, m, v, t, *, lr, betas=(0.9, 0.999), eps=1e-8,
                        weight_decay=0.0):
    return optim.adam_step(param, grad + weight_decay * np.asarray(param), m, v, t, lr=lr,
                           betas=betas, eps=eps)


def _adam_in_place(param, grad, m, v, t, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    new = optim.adam_step(param, grad, m, v, t, lr=lr, betas=betas, eps=eps,
                          weight_decay=weight_decay)
    for old, value in zip((param, m, v), new, strict=True):
        if isinstance(old, np.ndarray):
            old[...] = value
    return new


def _clip_each_tensor(params, max_norm):
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    norms = []
    for p in params:
        if p.grad is not None:
            norms.append(torch.linalg.vector_norm(p.grad))
            torch.nn.utils.clip_grad_norm_([p], max_norm)
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.tensor(0.0)


def _clip_always_rescales(params, max_norm):
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    for g in grads:
        g.mul_(max_norm / (total + 1e-6))
    return total


def _clip_returns_norm_after(params, max_norm):
    total = optim.clip_grad_norm_(params, max_norm)
    return torch.clamp(total, max=max_norm)


def _schedule_decay_from_zero(step, *, warmup_steps, decay_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return step / warmup_steps
    return optim.cosine_schedule(step / decay_steps, min_lr_ratio)


def _schedule_ignores_floor(step, *, warmup_steps, decay_steps, min_lr_ratio=0.1):
    return optim.warmup_cosine_schedule(step, warmup_steps=warmup_steps,
                                        decay_steps=decay_steps, min_lr_ratio=0.0)


def _schedule_warmup_off_by_one(step, *, warmup_steps, decay_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return optim.warmup_cosine_schedule(step, warmup_steps=warmup_steps,
                                        decay_steps=decay_steps, min_lr_ratio=min_lr_ratio)


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "linear_backward": [_backward_mean_bias, _backward_averaged_weights],
    "adam_step": [_adam_no_bias_correction, _adam_eps_inside, _adam_coupled_decay,
                  _adam_in_place],
    "clip_grad_norm_": [_clip_each_tensor, _clip_always_rescales, _clip_returns_norm_after],
    "warmup_cosine_schedule": [_schedule_decay_from_zero, _schedule_ignores_floor,
                               _schedule_warmup_off_by_one],
}
