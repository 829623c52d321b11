"""Chinchilla's point in miniature: at a fixed compute budget, how big a model?

Training compute is about ``C = 6 N D`` FLOPs for ``N`` parameters and ``D`` tokens
(:func:`minigpt.scaling.training_flops`), so a budget buys a large model on few tokens or a small
model on many. GPT-3 spent its budget on size: 175B parameters, 300B tokens, under 2 tokens per
parameter. Hoffmann et al. (2022) trained over 400 models and found that, for a fixed budget,
loss is lowest when parameters and tokens grow about equally: their 70B Chinchilla, on 1.4T
tokens, beat the 280B Gopher trained with the same compute.

Their "approach 2" is an **IsoFLOP profile**: train several sizes with the same ``C`` (each for
``D = C / (6N)`` tokens, its learning-rate schedule decaying over exactly its own run), plot
the final loss against ``log N``, fit a parabola and read off its minimum. :func:`isoflop_plan`
gives each size its tokens, steps and batch, :func:`isoflop_minimum` fits the parabola, and
:func:`chinchilla_prediction` says where Chinchilla's fitted law
(:func:`minigpt.scaling.chinchilla_optimal`, approach 3) puts the optimum for the same ``C``.
That law was fitted to MassiveText with a 32k-token vocabulary, not to Shakespeare's
characters: compare the *shape* (a valley, with an optimum at a moderate size), not the number.

At toy scale a second choice matters as much as ``N``: how the tokens are spent. With one
batch size for every model, a small model takes many more optimizer steps than a large one
on the same budget; with one number of steps, the batch grows with the tokens instead.
:func:`isoflop_plan` does either, and ``experiments/after_gpt3.py`` measures both.

    >>> round(tokens_for_budget(6e12, 1e5))
    10000000
    >>> n, loss = isoflop_minimum([1e4, 1e5, 1e6], [2.5, 2.0, 2.5])
    >>> round(n), round(loss, 3)
    (100000, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minigpt.config import GPTConfig, count_parameters
from minigpt.scaling import chinchilla_optimal, tokens_per_parameter_rule

__all__ = [
    "chinchilla_prediction",
    "isoflop_minimum",
    "isoflop_plan",
    "tokens_for_budget",
]


def tokens_for_budget(compute: float, n_params: float) -> float:
    """The tokens ``D = C / (6 N)`` that a budget of ``compute`` FLOPs buys a model of
    ``n_params`` parameters.

    >>> f"{tokens_for_budget(3.14e23, 175e9):.3g}"  # GPT-3's 300B tokens
    '2.99e+11'
    """
    if not (isinstance(compute, int | float) and compute > 0):
        raise ValueError(f"compute must be a number of FLOPs > 0, got {compute!r}")
    if not (isinstance(n_params, int | float) and n_params > 0):
        raise ValueError(f"n_params must be > 0, got {n_params!r}")
    return compute / (6.0 * n_params)


def isoflop_plan(
    configs: Mapping[str, GPTConfig],
    compute: float,
    seq_len: int,
    *,
    batch_size: int | None = None,
    steps: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Steps and batch for each model so that every one uses ``compute`` FLOPs (``6 N D``).

    ``N`` is every parameter (embeddings included, as Chinchilla counts them). Fix exactly
    one of the two ways to spend ``D = C / (6N)`` tokens of ``seq_len``:

    * ``batch_size`` (sequences): every model takes steps of the same size, so a small model
      takes many steps and a large one few;
    * ``steps``: every model takes the same number of optimizer steps, and its batch is
      ``D / (steps x seq_len)`` sequences.

    Both are rounded to whole numbers, so each run's actual compute is reported. Returns
    ``{name: {"n_parameters", "steps", "batch_size", "tokens", "compute",
    "tokens_per_parameter"}}``.

    >>> cfg = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=80, n_ctx=64)
    >>> row = isoflop_plan({"M": cfg}, 6.56e11, seq_len=64, batch_size=16)["M"]
    >>> row["steps"], row["batch_size"], row["tokens_per_parameter"]
    (977, 16, 9.15)
    >>> isoflop_plan({"M": cfg}, 6.56e11, seq_len=64, steps=400)["M"]["batch_size"]
    39
    """
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if (batch_size is None) == (steps is None):
        raise ValueError("give exactly one of batch_size (steps vary with the model) or steps "
                         "(the batch varies with the model)")
    if not configs:
        raise ValueError("isoflop_plan needs at least one config")
    plan = {}
    for name, config in configs.items():
        n = count_parameters(config)
        sequences = tokens_for_budget(compute, n) / seq_len
        if steps is None:
            run_steps, batch = max(1, round(sequences / batch_size)), batch_size
        else:
            run_steps, batch = steps, max(1, round(sequences / steps))
        tokens = run_steps * batch * seq_len
        plan[name] = {"n_parameters": n, "steps": run_steps, "batch_size": batch,
                      "tokens": tokens, "compute": 6.0 * n * tokens,
                      "tokens_per_parameter": round(tokens / n, 2)}
    return plan


def isoflop_minimum(n_params: Sequence[float], losses: Sequence[float]) -> tuple[float, float]:
    """The minimum of the parabola ``loss = a (ln N)^2 + b ln N + c`` fitted to an IsoFLOP
    profile (least squares): ``(N_opt, loss at N_opt)``, with ``N_opt = exp(-b / 2a)``.

    This is Hoffmann et al.'s approach 2. It needs at least 3 distinct sizes and an upward
    parabola (``a > 0``); an ``N_opt`` outside the sizes measured is an extrapolation, which
    the caller should say.

    >>> isoflop_minimum([1e4, 1e5], [2.5, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: need at least 3 distinct model sizes to fit a parabola, got 2
    >>> isoflop_minimum([1e4, 1e5, 1e6], [2.0, 2.5, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: the fitted parabola opens downwards (a = -0.0943): the losses have no minimum \
inside a valley; measure more sizes
    """
    x = np.log(np.asarray(n_params, dtype=float))
    y = np.asarray(losses, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("n_params and losses must be 1-D sequences of the same length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("n_params must be > 0 and losses finite")
    if len(np.unique(x)) < 3:
        raise ValueError(f"need at least 3 distinct model sizes to fit a parabola, got "
                         f"{len(np.unique(x))}")
    a, b, c = np.polyfit(x, y, 2)
    if not a > 0:
        raise ValueError(f"the fitted parabola opens downwards (a = {a:.3g}): the losses have "
                         "no minimum inside a valley; measure more sizes")
    x_opt = -b / (2 * a)
    return float(math.exp(x_opt)), float(c - b * b / (4 * a))


def chinchilla_prediction(compute: float) -> dict[str, float]:
    """Where Chinchilla's laws put the optimum for ``compute`` FLOPs.

    ``approach_3``: :func:`minigpt.scaling.chinchilla_optimal` (the fitted ``L(N, D)``);
    ``rule_20``: :func:`minigpt.scaling.tokens_per_parameter_rule`, 20 tokens per parameter
    (approaches 1 and 2). Both are fitted to MassiveText with a 32k-token vocabulary.

    >>> chinchilla_prediction(1e12)["approach_3"]
    {'n_params': 157000.0, 'tokens': 1060000.0, 'tokens_per_parameter': 6.7}
    """
    n3, d3 = chinchilla_optimal(compute)
    n20, d20 = tokens_per_parameter_rule(compute)

    def row(n: float, d: float) -> dict[str, float]:
        return {"n_params": float(f"{n:.3g}"), "tokens": float(f"{d:.3g}"),
                "tokens_per_parameter": round(d / n, 1)}

    return {"approach_3": row(n3, d3), "rule_20": row(n20, d20)}
