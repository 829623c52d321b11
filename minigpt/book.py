"""Small helpers that every chapter notebook uses.

- :func:`show_source` renders a minigpt function's or class's code, highlighted, in the page, so
  the book teaches the package's own code rather than a pasted copy.
- :func:`set_seed` seeds Python, NumPy and PyTorch, so stored outputs re-run to the same text.
- :func:`controls` makes the chapters' interactive figures: precomputed views behind plain HTML
  controls (:mod:`minigpt.widgets`), live on the static page as in Jupyter.
- :func:`pick` chooses a setting by device (CUDA when there is a GPU, else the CPU: see
  :func:`minigpt.precision.get_device`), and :func:`on_colab` tells whether the notebook runs
  on Google Colab.
"""

from __future__ import annotations

import ast
import inspect
import random
import sys
import textwrap
from typing import Any

import numpy as np

__all__ = ["show_source", "source_of", "set_seed", "on_colab", "pick", "controls"]


def source_of(obj: Any, *, docstring: bool = True) -> str:
    """The source code of a function, class or method, dedented.

    With ``docstring=False`` the docstring of ``obj`` itself is left out, which keeps long
    explanations (already in the page's prose) from crowding the code.
    """
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as exc:
        raise TypeError(f"cannot show the source of {obj!r}: {exc}") from exc
    if not docstring:
        node = ast.parse(source).body[0]
        body = getattr(node, "body", [])
        if body and ast.get_docstring(node) is not None:
            lines = source.splitlines(keepends=True)
            del lines[body[0].lineno - 1 : body[0].end_lineno]
            source = "".join(lines)
    return source


def show_source(obj: Any, *, docstring: bool = True) -> Any:
    """Display ``obj``'s source, syntax-highlighted, as a notebook output.

    Returns an ``IPython.display.Code`` object: its HTML is highlighted in Jupyter and in the
    built book, and its plain-text form is the code itself.
    """
    from IPython.display import Code

    return Code(source_of(obj, docstring=docstring), language="python")


def set_seed(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator on purpose
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but seeding should not fail
        return
    torch.manual_seed(seed)


def on_colab() -> bool:
    """Whether this code runs inside Google Colab."""
    return "google.colab" in sys.modules


def pick(cpu: Any, gpu: Any, device: str | None = None) -> Any:
    """Choose a setting by device: the small ``cpu`` one, or the ``gpu`` one on CUDA.

    >>> pick(cpu=64, gpu=1024, device="cpu")
    64
    """
    if device is None:
        from minigpt.precision import get_device

        device = get_device()
    return gpu if device == "cuda" else cpu


def controls(fn: Any, **choices: Any) -> Any:
    """An interactive figure that works on the static page too: ``fn`` is run once for every
    combination of the choices, and a slider or a select per argument shows the matching view.

    Each choice is a list of values, a :class:`minigpt.widgets.Choice` (values, default, label),
    or an ipywidgets control (``IntSlider``, ``FloatSlider``, ``Dropdown``...), whose values
    are taken from it. See :func:`minigpt.widgets.static_controls`, which this calls: it needs
    no kernel and no network, and refuses more than a few hundred views.

    ``controls(plot, n=[1, 2, 4], temperature=Choice([0.5, 1.0, 2.0], default=1.0))``
    """
    from minigpt.widgets import Choice, static_controls, values_of

    if not choices:
        raise ValueError("controls needs at least one choice, given as name=values")
    converted = {name: value if isinstance(value, Choice | list | tuple) else values_of(value)
                 for name, value in choices.items()}
    return static_controls(fn, **converted)
