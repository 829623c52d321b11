"""Hyperparameter search: grid search and random search.

**Hyperparameter search** treats training as a black box ``fn(**hyperparameters) -> score``.
:func:`grid_search` tries every combination of a few values; :func:`random_search` samples
``n_trials`` combinations, which covers each individual hyperparameter more finely for the same
budget (Bergstra & Bengio 2012). Both return the trials sorted best first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Trial",
    "grid_search",
    "log_uniform",
    "random_search",
    "uniform",
]


@dataclass(frozen=True)
class Trial:
    """One evaluated set of hyperparameters."""

    params: dict[str, Any]
    score: float


def _sorted_trials(trials: list[Trial], maximize: bool) -> list[Trial]:
    """Best first; NaN scores (diverged runs) last. Ties keep the order they were tried in."""

    def key(trial: Trial) -> tuple[bool, float]:
        nan = math.isnan(trial.score)
        return nan, 0.0 if nan else (-trial.score if maximize else trial.score)

    return sorted(trials, key=key)


def grid_search(
    fn: Callable[..., float], grid: Mapping[str, Sequence[Any]], maximize: bool = False
) -> list[Trial]:
    """Evaluate ``fn(**params)`` on every combination of the values in ``grid``.

    Args:
        fn: takes the hyperparameters as keyword arguments and returns a score.
        grid: ``{"lr": [1e-3, 3e-4], "batch_size": [16, 32]}`` (here 4 combinations).
        maximize: True if a higher score is better (default: lower, e.g. a loss).

    Returns:
        One :class:`Trial` per combination, best score first.
    """
    _check_space(grid, "grid")
    for name, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    names = list(grid)
    trials = []
    for combo in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, combo, strict=True))
        trials.append(Trial(params, float(fn(**params))))
    return _sorted_trials(trials, maximize)


Sampler = Callable[[np.random.Generator], Any]


def uniform(low: float, high: float) -> Sampler:
    """A sampler for :func:`random_search`: a float uniform in ``[low, high)``."""
    if not low < high:
        raise ValueError(f"uniform needs low < high, got low={low}, high={high}")
    return lambda rng: float(rng.uniform(low, high))


def log_uniform(low: float, high: float) -> Sampler:
    """A sampler whose logarithm is uniform: right for learning rates and weight decay."""
    if not 0 < low < high:
        raise ValueError(f"log_uniform needs 0 < low < high, got low={low}, high={high}")
    return lambda rng: float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _sample(spec: Any, rng: np.random.Generator, name: str) -> Any:
    """Draw a value: a callable is called with ``rng``, a list yields one of its items."""
    if callable(spec):
        return spec(rng)
    if isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) > 0:
        return spec[int(rng.integers(len(spec)))]
    raise ValueError(
        f"space[{name!r}] must be a non-empty list of choices or a sampler taking a "
        f"numpy Generator (e.g. uniform(0, 1), log_uniform(1e-5, 1e-2)), got {spec!r}"
    )


def random_search(
    fn: Callable[..., float],
    space: Mapping[str, Any],
    n_trials: int,
    seed: int = 0,
    maximize: bool = False,
) -> list[Trial]:
    """Evaluate ``fn(**params)`` on ``n_trials`` random draws from ``space``.

    Args:
        fn: takes the hyperparameters as keyword arguments and returns a score.
        space: maps each name to a list of choices (one drawn uniformly) or a sampler
            ``rng -> value`` such as :func:`uniform` or :func:`log_uniform`.
        n_trials: how many combinations to draw, ``>= 1``.
        seed: seeds ``numpy.random.default_rng``: the same seed gives the same trials.
        maximize: True if a higher score is better.

    Returns:
        One :class:`Trial` per draw, best score first.
    """
    _check_space(space, "space")
    if not (isinstance(n_trials, int) and n_trials >= 1):
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n_trials):
        params = {name: _sample(spec, rng, name) for name, spec in space.items()}
        trials.append(Trial(params, float(fn(**params))))
    return _sorted_trials(trials, maximize)


def _check_space(space: Mapping[str, Any], what: str) -> None:
    if not isinstance(space, Mapping) or len(space) == 0:
        raise ValueError(f"{what} must be a non-empty dict of hyperparameter names, got {space!r}")
