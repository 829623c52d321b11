"""Early stopping: keep the best weights, stop when validation stops improving.

**Early stopping** watches a validation metric once per evaluation. Each time it improves by more
than ``min_delta`` the helper remembers the value (and, given a model, a copy of its
``state_dict``); after ``patience`` evaluations in a row without improvement it says stop, and
the remembered weights can be put back. GPT-3 itself trained for a fixed token budget, with no
early stopping; on the book's small models, which overfit within minutes, it is very handy.
:class:`~minigpt.train.Trainer` uses this class for its own early stopping.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop when a metric has not improved for ``patience`` evaluations in a row.

    Args:
        patience: stop after this many evaluations in a row without improvement (``>= 1``), or
            ``None`` to never stop and only keep track of the best evaluation.
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
        patience: int | None = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best_weights: bool = True,
    ) -> None:
        if patience is not None and not (isinstance(patience, int) and patience >= 1):
            raise ValueError(f"patience must be an integer >= 1 or None, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None  # best metric so far
        self.best_step: int | None = None  # the call's index, or the `at` it was given
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

    def step(self, metric: float, model: torch.nn.Module | None = None,
             at: int | None = None) -> bool:
        """Record one evaluation; return True when training should stop.

        Args:
            metric: the validation score of this evaluation (a float or 0-d tensor).
            model: if given, its weights are saved whenever ``metric`` is a new best.
            at: the training step of this evaluation, recorded as :attr:`best_step` (default:
                the index of this call).
        """
        metric = float(metric)
        if self.is_improvement(metric):
            self.best, self.num_bad_steps = metric, 0
            self.best_step = self.num_steps if at is None else at
            if model is not None:  # copies, not references to the live weights
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.num_bad_steps += 1
        self.num_steps += 1
        self.should_stop = self.patience is not None and self.num_bad_steps >= self.patience
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

    def state_dict(self) -> dict[str, Any]:
        """The counters and the best weights, for a checkpoint (:meth:`load_state_dict`)."""
        return {"best": self.best, "best_step": self.best_step, "best_state": self.best_state,
                "num_bad_steps": self.num_bad_steps, "num_steps": self.num_steps,
                "should_stop": self.should_stop}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for key, value in state.items():
            setattr(self, key, value)
