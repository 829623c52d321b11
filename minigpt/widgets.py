"""Interactive figures that work on a static page: precomputed views behind plain HTML controls.

:func:`static_controls` calls a function once for every combination of its arguments' values,
captures what each call prints, draws or returns, and renders all of it as one HTML block with a
slider (numbers) or a select (anything else) per argument and a few lines of plain JavaScript
that show the matching view. It needs no kernel, no ipywidgets manager, no require.js and no
network: it works the same in the built book, in JupyterLab and on Colab.

>>> def square(n):
...     print(f"{n} squared is {n * n}")
>>> w = static_controls(square, n=[1, 2, 3])
>>> len(w.views), w.default
(3, {'n': 1})
>>> w.views[(1,)]["text"]
'2 squared is 4\\n'
>>> print(w)
static_controls(square): n in [1, 2, 3]; 3 precomputed views

Choose the default with ``Choice``: ``static_controls(plot, n=Choice([1, 2, 4, 8], default=4))``.
:func:`values_of` turns an ipywidgets control (``IntSlider``, ``FloatSlider``, ``Dropdown``,
``Checkbox``...) into a ``Choice``, so that ``minigpt.book.controls`` can hand its widgets over.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Choice", "StaticControls", "static_controls", "values_of"]

MAX_VIEWS = 200  # every view is stored in the page; more than this is too heavy to ship


@dataclass(frozen=True)
class Choice:
    """The values one argument may take, the one shown first, and the control's label."""

    values: Sequence[Any]
    default: Any = None
    label: str | None = None

    def __post_init__(self) -> None:
        values = list(self.values)
        if not values:
            raise ValueError("a Choice needs at least one value")
        object.__setattr__(self, "values", values)
        if self.default is None:
            object.__setattr__(self, "default", values[0])
        elif self.default not in values:
            raise ValueError(f"default {self.default!r} is not one of the values {values!r}")

    @property
    def numeric(self) -> bool:
        """Numbers in increasing order get a slider; anything else gets a select."""
        nums = [v for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return len(nums) == len(self.values) > 1 and nums == sorted(nums)


def values_of(widget: Any, *, max_values: int = 25) -> Choice:
    """The values an ipywidgets control can take, as a :class:`Choice` with its current value.

    Sliders give ``min, min + step, ..., max``; a ``Dropdown``, ``RadioButtons`` or
    ``SelectionSlider`` gives its options; a ``Checkbox`` gives ``False, True``. Raises
    ``ValueError`` when a slider has more than ``max_values`` stops: give the values yourself.
    """
    label = getattr(widget, "description", None) or None
    value = widget.value
    if hasattr(widget, "options") and getattr(widget, "options", None) is not None:
        opts = list(widget.options)
        values = [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in opts]
    elif isinstance(value, bool):
        values = [False, True]
    elif all(hasattr(widget, a) for a in ("min", "max", "step")):
        lo, hi, step = widget.min, widget.max, widget.step
        count = int(round((hi - lo) / step)) + 1
        if count > max_values:
            raise ValueError(
                f"{type(widget).__name__} {label or ''} has {count} stops "
                f"({lo}..{hi} by {step}); pass at most {max_values} values with Choice([...])")
        if isinstance(value, int) and isinstance(step, int):
            values = [lo + i * step for i in range(count)]
        else:
            digits = max(0, -int(f"{step:e}".split("e")[1])) + 1
            values = [round(lo + i * step, digits) for i in range(count)]
        if value not in values:
            value = min(values, key=lambda v: abs(v - widget.value))
    else:
        raise ValueError(f"cannot list the values of a {type(widget).__name__}; use Choice([...])")
    return Choice(values, default=value, label=label)


def _capture(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run ``fn(**kwargs)``: what it printed, the figures it drew, and its rich result."""
    from contextlib import redirect_stdout
    from unittest import mock

    import matplotlib
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    out = io.StringIO()
    shown: list[Any] = []

    def show(*_: Any, **__: Any) -> None:  # plt.show() inside fn: keep the figure for the view
        for num in plt.get_fignums():
            if num not in before and plt.figure(num) not in shown:
                shown.append(plt.figure(num))

    with redirect_stdout(out), mock.patch.object(plt, "show", show):
        result = fn(**kwargs)
    figures = [plt.figure(n) for n in plt.get_fignums() if n not in before]
    if isinstance(result, matplotlib.figure.Figure) and result not in figures:
        figures.append(result)
        result = None
    images = []
    for fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", dpi=fig.dpi,
                    metadata={"Software": None})
        plt.close(fig)
        images.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    rich = None
    if result is not None:
        if isinstance(result, str):
            rich = f"<pre>{html.escape(result)}</pre>"
        elif hasattr(result, "_repr_html_"):
            rich = result._repr_html_()
        else:
            rich = f"<pre>{html.escape(repr(result))}</pre>"
    return {"text": out.getvalue(), "images": images, "html": rich}


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class StaticControls:
    """Precomputed views of ``fn`` with HTML controls; shown by Jupyter through ``_repr_html_``.

    ``views[(i, j, ...)]`` holds the view for the i-th value of the first argument, the j-th of
    the second, ...: ``{"text": printed text, "images": [base64 PNG], "html": rich result}``.
    """

    def __init__(self, fn: Callable[..., Any], choices: dict[str, Choice],
                 views: dict[tuple[int, ...], dict[str, Any]]) -> None:
        self.fn_name = getattr(fn, "__name__", "fn")
        self.choices = choices
        self.views = views

    @property
    def default(self) -> dict[str, Any]:
        return {name: c.default for name, c in self.choices.items()}

    def __repr__(self) -> str:
        args = "; ".join(f"{n} in [{', '.join(map(_fmt, c.values))}]"
                         for n, c in self.choices.items())
        return f"static_controls({self.fn_name}): {args}; {len(self.views)} precomputed views"

    def _view_html(self, view: dict[str, Any]) -> str:
        parts = []
        if view["text"]:
            parts.append(f'<pre class="minigpt-widget-text">{html.escape(view["text"])}</pre>')
        for png in view["images"]:
            parts.append(f'<img alt="figure" src="data:image/png;base64,{png}">')
        if view["html"]:
            parts.append(view["html"])
        return "".join(parts) or "<p><em>(no output)</em></p>"

    def _repr_html_(self) -> str:
        controls = []
        for i, (name, c) in enumerate(self.choices.items()):
            label = html.escape(c.label or name)
            start = c.values.index(c.default)
            shown = html.escape(_fmt(c.default))
            labels = html.escape(json.dumps([_fmt(v) for v in c.values]))
            if c.numeric:
                ctl = (f'<input type="range" min="0" max="{len(c.values) - 1}" step="1" '
                       f'value="{start}" data-arg="{i}" data-labels="{labels}" '
                       f'aria-label="{label}">'
                       f'<output style="min-width:4em;display:inline-block">{shown}</output>')
            else:
                opts = "".join(
                    f'<option value="{k}"{" selected" if k == start else ""}>'
                    f"{html.escape(_fmt(v))}</option>" for k, v in enumerate(c.values))
                ctl = f'<select data-arg="{i}" aria-label="{label}">{opts}</select>'
            controls.append(
                f'<label style="margin-right:1.5em;white-space:nowrap">{label} {ctl}</label>')
        start_key = ",".join(str(c.values.index(c.default)) for c in self.choices.values())
        frames = "".join(
            f'<div class="minigpt-widget-frame" data-key="{",".join(map(str, key))}"'
            f'{"" if ",".join(map(str, key)) == start_key else " hidden"}>'
            f"{self._view_html(view)}</div>"
            for key, view in self.views.items())
        return (f'<div class="minigpt-widget">'
                f'<div class="minigpt-widget-controls">{"".join(controls)}</div>'
                f"{frames}<script>{_SCRIPT}</script></div>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self._repr_html_(), "text/plain": repr(self)}


# Finds its widget (the script's parent), then shows the frame whose key matches the controls.
_SCRIPT = (
    "(function(s){var w=s&&s.parentElement;if(!w||w.dataset.ready)return;w.dataset.ready=1;"
    "var c=w.querySelectorAll('[data-arg]');function u(){var k=[];c.forEach(function(e){"
    "k[+e.dataset.arg]=e.value;if(e.type==='range'){e.nextElementSibling.textContent="
    "JSON.parse(e.dataset.labels)[+e.value];}});k=k.join(',');"
    "w.querySelectorAll('.minigpt-widget-frame').forEach(function(f){f.hidden="
    "f.dataset.key!==k;});}c.forEach(function(e){e.addEventListener('input',u);"
    "e.addEventListener('change',u);});u();})(document.currentScript);"
)


def static_controls(fn: Callable[..., Any], /, *, max_views: int = MAX_VIEWS,
                    **choices: Sequence[Any] | Choice) -> StaticControls:
    """Precompute ``fn(**values)`` for every combination of values; show it with HTML controls.

    Each keyword names one argument of ``fn`` and gives its values, as a list or a
    :class:`Choice` (to set the default and the label). ``fn`` may print, draw with matplotlib
    (the figures it opens are captured and closed) and return a string, a figure or any object
    with ``_repr_html_``. Raises ``ValueError`` with no choices, or with more combinations than
    ``max_views``. Display the result (the last expression of a cell) to get the controls.
    """
    if not choices:
        raise ValueError("static_controls needs at least one argument, as name=[values]")
    normalized = {name: c if isinstance(c, Choice) else Choice(list(c))
                  for name, c in choices.items()}
    total = 1
    for c in normalized.values():
        total *= len(c.values)
    if total > max_views:
        sizes = " x ".join(f"{len(c.values)} ({n})" for n, c in normalized.items())
        raise ValueError(f"{sizes} = {total} views, more than max_views={max_views}: "
                         "give fewer values (every view is stored in the page)")
    names = list(normalized)
    views = {}
    for key in itertools.product(*(range(len(c.values)) for c in normalized.values())):
        kwargs = {n: normalized[n].values[k] for n, k in zip(names, key, strict=True)}
        views[key] = _capture(fn, kwargs)
    return StaticControls(fn, normalized, views)
