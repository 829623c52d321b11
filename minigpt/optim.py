"""Optimizers, gradient clipping and learning-rate / batch-size schedules, from their equations.

Everything here re-derives what ``torch.optim`` does, one update equation at a time, so the
book can show the arithmetic; the tests check that the results equal ``torch.optim`` to rounding.
The classes subclass :class:`torch.optim.Optimizer` only for its bookkeeping (parameter groups,
``zero_grad``, ``state_dict``); every update is written out below.

Notation for one parameter tensor ``θ`` at step ``t`` (``t = 1, 2, ...``) with gradient ``g_t``:

* **SGD with momentum**: ``b_t = μ b_{t-1} + (1 - τ) g_t`` (``b_1 = g_t``), ``θ ← θ - lr b_t``.
  Nesterov looks one step ahead: ``θ ← θ - lr (g_t + μ b_t)``.
* **Adam**: ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``;
  bias-corrected ``m̂ = m_t / (1 - β1^t)``, ``v̂ = v_t / (1 - β2^t)``;
  ``θ ← θ - lr m̂ / (√v̂ + ε)``.
* **Weight decay**. *Coupled* (SGD, Adam): add ``λ θ`` to the gradient, the gradient of the L2
  penalty ``λ/2 ‖θ‖²``; in Adam the penalty is then rescaled per coordinate, which weakens it
  where gradients are large. *Decoupled* (AdamW, Loshchilov & Hutter 2019): shrink the weights
  directly, ``θ ← θ (1 - lr λ)``, before the Adam step. (The paper writes ``η_t λ`` with a
  schedule multiplier ``η_t``; PyTorch, and we, use ``lr λ``, so the decay follows the schedule.)

GPT-3 (Brown et al. 2020, appendix B) trained with Adam(W) ``β1 = 0.9, β2 = 0.95, ε = 1e-8``,
weight decay 0.1, global gradient-norm clipping at 1.0, a linear warmup over the first 375M
tokens, cosine decay to 10% of the peak over 260B tokens (then constant at 10%), and a batch size
that grew linearly from 32k tokens to the full batch over the first 4-12B tokens depending on
model size (the paper does not say which size got which). The ``GPT3_*`` constants record this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = [
    "GPT3_BATCH_RAMP_START_TOKENS",
    "GPT3_BETAS",
    "GPT3_CLIP_NORM",
    "GPT3_DECAY_TOKENS",
    "GPT3_EPS",
    "GPT3_MIN_LR_RATIO",
    "GPT3_WARMUP_TOKENS",
    "GPT3_WEIGHT_DECAY",
    "SGD",
    "Adam",
    "AdamW",
    "adam_step",
    "batch_size_schedule",
    "clip_grad_norm_",
    "constant_schedule",
    "cosine_schedule",
    "step_decay_schedule",
    "warmup_cosine_schedule",
]

GPT3_BETAS = (0.9, 0.95)
GPT3_EPS = 1e-8
GPT3_WEIGHT_DECAY = 0.1
GPT3_CLIP_NORM = 1.0
GPT3_WARMUP_TOKENS = 375_000_000
GPT3_DECAY_TOKENS = 260_000_000_000
GPT3_MIN_LR_RATIO = 0.1
GPT3_BATCH_RAMP_START_TOKENS = 32_768  # "32k": 16 sequences of 2048 tokens

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_nonnegative(name: str, value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_betas(betas: tuple[float, float]) -> None:
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers, each in [0, 1), got {betas}")


class _Optimizer(torch.optim.Optimizer):
    """Adds per-group validation to :class:`torch.optim.Optimizer` and a shared ``step``."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._check_group({**self.defaults, **param_group})  # before the group is stored
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, self.state[p], group)
        return loss


# ---------------------------------------------------------------------------------------------
# SGD
# ---------------------------------------------------------------------------------------------


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Args:
        params: tensors, or a list of dicts ``{"params": [...], "lr": ..., ...}`` (parameter
            groups; keys left out take the defaults below).
        lr: learning rate, ``>= 0``.
        momentum: ``μ >= 0``; 0 is plain SGD.
        dampening: ``τ``, scales the new gradient in the momentum buffer by ``1 - τ``.
        weight_decay: ``λ >= 0``, added to the gradient as ``λ θ`` (coupled, as PyTorch).
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            _check_nonnegative(name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def _update(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        g = p.grad
        if wd != 0:
            g = g.add(p, alpha=wd)  # g ← g + λ θ   (gradient of the penalty λ/2 ‖θ‖²)
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()  # b_1 = g_1
            else:
                buf.mul_(mu).add_(g, alpha=1 - group["dampening"])  # b_t = μ b + (1 - τ) g
            g = g.add(buf, alpha=mu) if group["nesterov"] else buf  # Nesterov: g + μ b_t
        p.add_(g, alpha=-lr)  # θ ← θ - lr g


# ---------------------------------------------------------------------------------------------
# Adam and AdamW
# ---------------------------------------------------------------------------------------------


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and coupled (L2) weight decay.

    Args:
        params: tensors or parameter groups (see :class:`SGD`).
        lr: learning rate, ``>= 0``.
        betas: ``(β1, β2)``, decay rates of the first and second moment averages, in ``[0, 1)``.
            GPT-3 used ``(0.9, 0.95)``: a shorter memory for ``v`` than the default 0.999.
        eps: ``ε >= 0``, added to ``√v̂`` (after the square root, as PyTorch) to avoid ÷0.
        weight_decay: ``λ >= 0``; added to the gradient as ``λ θ``. Prefer :class:`AdamW`.
    """

    decoupled_weight_decay = False

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "eps", "weight_decay"):
            _check_nonnegative(name, group[name])
        _check_betas(group["betas"])

    def _update(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, wd = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)  # m_0 = 0
            state["exp_avg_sq"] = torch.zeros_like(p)  # v_0 = 0
        state["step"] += 1
        t, m, v, g = state["step"], state["exp_avg"], state["exp_avg_sq"], p.grad

        if wd != 0 and self.decoupled_weight_decay:
            p.mul_(1 - lr * wd)  # AdamW: θ ← θ (1 - lr λ), outside the adaptive step
        elif wd != 0:
            g = g.add(p, alpha=wd)  # Adam: g ← g + λ θ, then rescaled like any gradient

        m.lerp_(g, 1 - beta1)  # m_t = β1 m + (1 - β1) g, written as m + (1 - β1)(g - m)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = β2 v + (1 - β2) g²
        bias_correction1 = 1 - beta1**t  # m̂ = m_t / (1 - β1^t) undoes the pull towards m_0 = 0
        bias_correction2 = 1 - beta2**t  # v̂ = v_t / (1 - β2^t)
        denom = (v.sqrt() / bias_correction2**0.5).add_(eps)  # √v̂ + ε
        p.addcdiv_(m, denom, value=-lr / bias_correction1)  # θ ← θ - lr m̂ / (√v̂ + ε)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): ``θ ← θ (1 - lr λ)``.

    Same arguments as :class:`Adam`; ``weight_decay`` defaults to 0.01 as in PyTorch. GPT-3:
    ``AdamW(params, lr, betas=GPT3_BETAS, eps=GPT3_EPS, weight_decay=GPT3_WEIGHT_DECAY)``.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Adam with decoupled weight decay (AdamW), as a pure function.

    The same arithmetic as :class:`AdamW`, on arrays, returning new arrays:

    1. ``θ ← θ (1 - lr λ)`` (decoupled weight decay; nothing when ``λ = 0``);
    2. ``m_t = β1 m + (1 - β1) g`` and ``v_t = β2 v + (1 - β2) g²``;
    3. ``m̂ = m_t / (1 - β1^t)``, ``v̂ = v_t / (1 - β2^t)`` (bias correction);
    4. ``θ ← θ - lr m̂ / (√v̂ + ε)``.

    Args:
        param, grad, m, v: arrays of one shape: ``θ``, ``g_t`` and the moments after step
            ``t - 1`` (zeros before the first step).
        t: the step number, starting at 1.
        lr: learning rate, ``>= 0``.
        betas: ``(β1, β2)``, each in ``[0, 1)``. GPT-3: ``(0.9, 0.95)``.
        eps: ``ε >= 0``, added after the square root. GPT-3: ``1e-8``.
        weight_decay: ``λ >= 0``. GPT-3: 0.1.

    Returns:
        ``(new_param, new_m, new_v)``.

    Example: the first step moves every coordinate by about ``lr``, whatever the gradient's
    size, because ``m̂ / √v̂ = g / |g|``:

    >>> p, m, v = adam_step(np.array([1.0, 1.0]), np.array([0.5, -20.0]), np.zeros(2),
    ...                     np.zeros(2), t=1, lr=0.1)
    >>> np.round(p, 6)
    array([0.9, 1.1])
    """
    if not (isinstance(t, int | np.integer) and t >= 1):
        raise ValueError(f"t counts steps from 1, got {t!r}")
    _check_nonnegative("lr", lr)
    _check_nonnegative("eps", eps)
    _check_nonnegative("weight_decay", weight_decay)
    _check_betas(betas)
    beta1, beta2 = betas
    param, grad = np.asarray(param, dtype=float), np.asarray(grad, dtype=float)
    param = param * (1 - lr * weight_decay)  # decoupled weight decay
    m = beta1 * np.asarray(m) + (1 - beta1) * grad  # first moment: a running mean of g
    v = beta2 * np.asarray(v) + (1 - beta2) * grad**2  # second moment: a running mean of g²
    m_hat = m / (1 - beta1**t)  # undo the pull towards m_0 = 0
    v_hat = v / (1 - beta2**t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# ---------------------------------------------------------------------------------------------
# Gradient clipping
# ---------------------------------------------------------------------------------------------


def clip_grad_norm_(params: torch.Tensor | Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    The global norm treats every gradient as part of one long vector:
    ``‖g‖ = sqrt(Σ_i ‖g_i‖²)``. If it exceeds ``max_norm``, every gradient is multiplied by
    ``max_norm / (‖g‖ + 1e-6)``, which keeps the update's *direction* and caps its length. GPT-3
    clipped at 1.0. Gradients are changed in place; parameters without ``.grad`` are skipped.

    Returns:
        The global norm *before* clipping (a 0-d tensor), as ``torch.nn.utils.clip_grad_norm_``.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if isinstance(params, torch.Tensor):
        params = [params]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])  # ‖g_i‖, shape (n,)
    total_norm = torch.linalg.vector_norm(norms)  # sqrt(Σ_i ‖g_i‖²)
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)  # never scale up
    for g in grads:
        g.mul_(scale)
    return total_norm


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules: multipliers of the peak learning rate
# ---------------------------------------------------------------------------------------------
#
# Each schedule maps a step count to a multiplier in [0, 1]: lr(step) = peak_lr * schedule(step).
# "step" may count optimizer steps or tokens seen (GPT-3 states its schedule in tokens). With
# PyTorch, bind the settings with functools.partial and hand the result to LambdaLR:
#     LambdaLR(optimizer, partial(warmup_cosine_schedule, warmup_steps=100, decay_steps=1000))


def _check_step(step: float) -> None:
    if not step >= 0:
        raise ValueError(f"step must be >= 0, got {step}")


def constant_schedule(step: float) -> float:
    """Always 1: the learning rate stays at its peak."""
    _check_step(step)
    return 1.0


def step_decay_schedule(step: float, *, step_size: int, gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` every ``step_size`` steps: ``gamma ** (step // step_size)``.

    Equals ``torch.optim.lr_scheduler.StepLR`` with the same ``step_size`` and ``gamma``.
    """
    _check_step(step)
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return gamma ** (step // step_size)


def cosine_schedule(progress: float, min_lr_ratio: float = 0.0) -> float:
    """Half a cosine from 1 down to ``min_lr_ratio`` as ``progress`` goes from 0 to 1.

    ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(π progress)) / 2``; ``progress`` is clamped
    to ``[0, 1]``, so the value stays at the floor afterwards.
    """
    _check_min_lr_ratio(min_lr_ratio)
    progress = min(max(progress, 0.0), 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_min_lr_ratio(min_lr_ratio: float) -> None:
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")


def warmup_cosine_schedule(
    step: float, *, warmup_steps: float, decay_steps: float, min_lr_ratio: float = 0.1
) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio``, then constant at that floor.

    * ``step < warmup_steps``: ``step / warmup_steps`` (from 0 up to 1);
    * ``warmup_steps <= step < decay_steps``: :func:`cosine_schedule` of
      ``(step - warmup_steps) / (decay_steps - warmup_steps)``;
    * ``step >= decay_steps``: ``min_lr_ratio``.

    ``decay_steps`` is where the decay *ends*, counted from step 0 (warmup included). The curve
    is continuous. GPT-3, counted in tokens: ``warmup_steps=375e6, decay_steps=260e9,
    min_lr_ratio=0.1`` (the paper leaves open whether the 260B include the warmup).

    Raises ``ValueError`` if ``warmup_steps < 0``, if ``decay_steps < warmup_steps``, if
    ``step`` is negative or if ``min_lr_ratio`` is outside ``[0, 1]``.
    """
    _check_step(step)
    if not warmup_steps >= 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if not decay_steps >= warmup_steps:
        raise ValueError(
            f"decay_steps must be >= warmup_steps (it is where the decay ends, counted from "
            f"step 0), got decay_steps={decay_steps}, warmup_steps={warmup_steps}"
        )
    _check_min_lr_ratio(min_lr_ratio)
    if step < warmup_steps:
        return step / warmup_steps
    if step >= decay_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    return cosine_schedule(progress, min_lr_ratio)


# ---------------------------------------------------------------------------------------------
# GPT-3's batch-size ramp
# ---------------------------------------------------------------------------------------------


def batch_size_schedule(
    tokens_seen: float,
    *,
    full_batch_tokens: int,
    ramp_tokens: float,
    start_batch_tokens: int = GPT3_BATCH_RAMP_START_TOKENS,
    seq_len: int | None = None,
    multiple: int = 1,
) -> int:
    """Batch size after ``tokens_seen`` tokens, growing linearly from a small start (GPT-3).

    The batch grows linearly in tokens seen, from ``start_batch_tokens`` at 0 to
    ``full_batch_tokens`` at ``ramp_tokens``, and stays full after that. GPT-3 started at 32k
    tokens and reached its full batch (e.g. 3.2M tokens for 175B) after 4-12B tokens.

    Args:
        tokens_seen: tokens trained on so far, ``>= 0``.
        full_batch_tokens: the final batch size in tokens.
        ramp_tokens: tokens over which the batch grows (0: full from the start).
        start_batch_tokens: the first batch size in tokens (GPT-3: 32k).
        seq_len: if given, the result counts sequences of this length, not tokens.
        multiple: the result is rounded *down* to a multiple of this (e.g. the number of
            data-parallel workers), but never below ``multiple``.

    Returns:
        The batch size, in tokens (or in sequences if ``seq_len`` is given); non-decreasing in
        ``tokens_seen``.
    """
    if not tokens_seen >= 0:
        raise ValueError(f"tokens_seen must be >= 0, got {tokens_seen}")
    if not 0 < start_batch_tokens <= full_batch_tokens:
        raise ValueError(
            "need 0 < start_batch_tokens <= full_batch_tokens, got "
            f"start_batch_tokens={start_batch_tokens}, full_batch_tokens={full_batch_tokens}"
        )
    if not ramp_tokens >= 0:
        raise ValueError(f"ramp_tokens must be >= 0, got {ramp_tokens}")
    if not multiple >= 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    unit = 1 if seq_len is None else seq_len
    if not unit >= 1 or full_batch_tokens % unit:
        raise ValueError(
            f"seq_len must be >= 1 and divide full_batch_tokens={full_batch_tokens}, got {unit}"
        )
    full = full_batch_tokens // unit
    if full % multiple:
        raise ValueError(
            f"the full batch ({full} {'tokens' if seq_len is None else 'sequences'}) must be a "
            f"multiple of multiple={multiple}"
        )
    fraction = 1.0 if tokens_seen >= ramp_tokens else tokens_seen / ramp_tokens
    tokens = start_batch_tokens + (full_batch_tokens - start_batch_tokens) * fraction
    size = int(tokens / unit // multiple) * multiple  # round down to a multiple
    return min(max(size, multiple), full)
