"""Training-loop helpers: early stopping and small hyperparameter searches.

**Early stopping** watches a validation metric once per evaluation. Each time it improves by more
than ``min_delta`` the helper remembers the value (and, given a model, a deep copy of its
``state_dict``); after ``patience`` evaluations in a row without improvement it says stop, and
the remembered weights can be put back. GPT-3 itself trained for a fixed token budget, with no
early stopping; on the book's small models, which overfit within minutes, it is very handy.

**Hyperparameter search** treats training as a black box ``fn(**hyperparameters) -> score``.
:func:`grid_search` tries every combination of a few values; :func:`random_search` samples
``n_trials`` combinations, which covers each individual hyperparameter more finely for the same
budget (Bergstra & Bengio 2012). Both return the trials sorted best first.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "EarlyStopping",
    "Trial",
    "grid_search",
    "log_uniform",
    "random_search",
    "uniform",
]


# ---------------------------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------------------------


class EarlyStopping:
    """Stop when a metric has not improved for ``patience`` evaluations in a row.

    Args:
        patience: stop after this many evaluations in a row without improvement (``>= 1``).
        min_delta: an improvement must beat the best value by more than this (``>= 0``).
        mode: ``"min"`` for losses (lower is better) or ``"max"`` for accuracies.
        restore_best_weights: when :meth:`step` returns True and was given a model, load the
            best weights back into it.

    Example::

        stopper = EarlyStopping(patience=3)
        for epoch in range(100):
            train_one_epoch(model)
            if stopper.step(evaluate(model), model):
                break  # model now holds the weights of the best epoch
    """

    def __init__(
        self,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best_weights: bool = True,
    ) -> None:
        if not (isinstance(patience, int) and patience >= 1):
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None  # best metric so far
        self.best_step: int | None = None  # index of the call that produced it
        self.best_state: dict[str, Any] | None = None  # deep copy of the model's state_dict
        self.num_bad_steps = 0  # consecutive calls without improvement
        self.num_steps = 0
        self.should_stop = False

    def is_improvement(self, metric: float) -> bool:
        """Whether ``metric`` beats the best value so far by more than ``min_delta``."""
        if math.isnan(metric):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return metric < self.best - self.min_delta
        return metric > self.best + self.min_delta

    def step(self, metric: float, model: torch.nn.Module | None = None) -> bool:
        """Record one evaluation; return True when training should stop.

        Args:
            metric: the validation score of this evaluation (a float or 0-d tensor).
            model: if given, its weights are saved whenever ``metric`` is a new best.
        """
        metric = float(metric)
        if self.is_improvement(metric):
            self.best, self.best_step, self.num_bad_steps = metric, self.num_steps, 0
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())  # a copy, not references
        else:
            self.num_bad_steps += 1
        self.num_steps += 1
        self.should_stop = self.num_bad_steps >= self.patience
        if self.should_stop and self.restore_best_weights and model is not None:
            self.restore(model)
        return self.should_stop

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best weights seen so far into ``model``."""
        if self.best_state is None:
            raise ValueError(
                "no weights saved yet: pass the model to step(metric, model) so the best "
                "weights can be kept"
            )
        model.load_state_dict(self.best_state)


# ---------------------------------------------------------------------------------------------
# Hyperparameter search
# ---------------------------------------------------------------------------------------------


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
