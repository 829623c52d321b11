"""Argument checks shared across minigpt, so that every module words its errors the same way.

>>> check_int("n_layer", 12)
>>> check_int("n_layer", 0)
Traceback (most recent call last):
...
ValueError: n_layer must be a positive integer, got 0
>>> check_int("n_evals", 1, minimum=2)
Traceback (most recent call last):
...
ValueError: n_evals must be an integer >= 2, got 1
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an integer (``int`` or NumPy's, not a ``bool``) and
    ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
