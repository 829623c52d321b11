"""The stored results of the book's longer experiments, shipped inside the package.

Each JSON file here was written by a script in ``experiments/`` and keeps every parameter
needed to run it again; the chapters plot these files and re-run their smallest case live.
Shipping them in the package means a notebook finds them wherever minigpt is installed (on
Colab too) without a download.

============== ============================ =====================================
name           written by                   read by
============== ============================ =====================================
scaling_law    experiments/scaling_law.py   chapter 9 (:mod:`minigpt.lab.sweep`)
icl_results    experiments/icl.py           chapter 10 (:mod:`minigpt.lab.icl`)
after_gpt3     experiments/after_gpt3.py    chapter 11 (:mod:`minigpt.lab.controlled`)
gpu_run        tools/gpu_run.py (on a GPU)  chapter 12 (absent until a GPU run)
============== ============================ =====================================

One format for all of them: indented JSON, floats rounded to 6 significant digits
(:func:`save`). :func:`load` reads one by name; :func:`max_difference` and :func:`reproduces`
compare a live re-run (a nested dict of numbers) with the stored one.

>>> {'after_gpt3', 'icl_results', 'scaling_law'} <= set(available())
True
>>> load("scaling_law")["parameters"]["command"]
'python experiments/scaling_law.py'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent / "results"


def available() -> list[str]:
    """Names of the stored result files (without ``.json``)."""
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def path(name: str) -> Path:
    """Where the result file ``name`` lives (it need not exist yet: scripts write it there)."""
    if not isinstance(name, str) or not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"name must be a bare result name such as 'scaling_law', got {name!r}")
    return FOLDER / f"{name}.json"


def save(document: dict[str, Any], file: str | os.PathLike[str], digits: int = 6) -> Path:
    """Write an experiment's ``document`` to ``file`` as indented JSON, floats rounded to
    ``digits`` significant digits (:func:`round_floats`; the folder is created if needed), and
    return the path; the experiments in ``experiments/`` end with this."""
    if not isinstance(document, dict):
        raise ValueError(f"document must be a dict, got {type(document).__name__}")
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(round_floats(document, digits), indent=1, ensure_ascii=False)
    file.write_text(text + "\n", encoding="utf-8")
    return file


def load(name: str) -> dict[str, Any]:
    """The stored result file ``name`` as a dictionary.

    Raises ``FileNotFoundError`` naming the files there are and the script that makes one.
    """
    file = path(name)
    if not file.exists():
        raise FileNotFoundError(
            f"no stored result {name!r}; available: {', '.join(available()) or 'none'} "
            f"(the scripts in experiments/ write them)")
    return json.loads(file.read_text())


def round_floats(obj: Any, digits: int = 6) -> Any:
    """``obj`` with every float rounded to ``digits`` significant digits (through dicts,
    lists and tuples; tuples become lists, as in JSON).

    >>> round_floats({"loss": [2.718281828, 1], "c": 123456789.0})
    {'loss': [2.71828, 1], 'c': 123457000.0}
    """
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_floats(v, digits) for v in obj]
    return obj


def leaves(
    tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every ``(path, value)`` of a nested dict whose value is not itself a dict."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def max_difference(stored: Mapping[str, Any], live: Mapping[str, Any]) -> float:
    """The largest ``|stored - live|`` over the numbers of ``live`` (nested dicts).

    Every path of ``live`` must exist in ``stored``; ``stored`` may hold more.

    >>> max_difference({"a": {"0": 0.5, "1": 0.9}}, {"a": {"1": 0.85}})
    0.05
    """
    diffs = []
    for path, value in leaves(live):
        node: Any = stored
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                raise ValueError(f"stored results have no entry {'/'.join(path)}")
            node = node[key]
        diffs.append(abs(float(node) - float(value)))
    if not diffs:
        raise ValueError("live results hold no numbers to compare")
    return round(max(diffs), 6)


def reproduces(stored: Mapping[str, Any], live: Mapping[str, Any], tol: float = 0.05) -> bool:
    """Whether every number of ``live`` is within ``tol`` of the same entry of ``stored``.

    On the machine that wrote ``stored`` (one thread) a re-run is identical; another CPU may
    round differently, and a few hundred steps of training can turn that into a few prompts
    answered differently, hence a tolerance.

    >>> reproduces({"a": {"0": 0.5}}, {"a": {"0": 0.53}}), reproduces({"a": {"0": 0.5}},
    ...                                                                {"a": {"0": 0.6}})
    (True, False)
    """
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return max_difference(stored, live) <= tol
