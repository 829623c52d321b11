"""Every chapter against the exercise catalog: no answer on the page before its question.

For each graded exercise of ``exercises/catalog.py``:

1. no output of a code cell before the exercise contains the body of the function it asks for
   (``def name(`` as ``show_source`` renders it, for the function, its class or its module),
   and no code cell before it defines or ``show_source``-s it;
2. the exercise's reference solution is shown right after it, inside a collapsed
   (``:class: dropdown``) sphinx-exercise solution block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exercises.catalog import CHAPTERS, chapter

ROOT = Path(__file__).resolve().parents[1]


def _notebook(key: str) -> list[dict]:
    number = key[2:4]
    (path,) = (ROOT / "chapters").glob(f"{number}_*.ipynb")
    return json.loads(path.read_text())["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _outputs(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
        for kind in ("text/plain", "text/html", "text/markdown"):
            parts.append("".join(out.get("data", {}).get(kind, "")))
    return "\n".join(parts)


def _exercise_cell(cells: list[dict], name: str) -> int:
    """Index of the markdown cell whose ``{exercise}`` block asks for ``name``."""
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             and "{exercise}" in _text(c) and re.search(rf"`{re.escape(name)}[(`]", _text(c))]
    assert found, f"no {{exercise}} cell asks for `{name}(...)`"
    return found[0]


CASES = [(key, ex.name) for key in CHAPTERS for ex in chapter(key).exercises]


@pytest.mark.parametrize(("key", "name"), CASES, ids=[f"{k[:4]}:{n}" for k, n in CASES])
def test_no_solution_before_its_exercise(key: str, name: str) -> None:
    cells = _notebook(key)
    at = _exercise_cell(cells, name)
    defines = re.compile(rf"def {re.escape(name)}\(")
    shows = re.compile(rf"show_source\([\w.]*\b{re.escape(name)}\b")
    for i, cell in enumerate(cells[:at]):
        if cell["cell_type"] != "code":
            continue
        where = f"{key}, cell {i}, before exercise `{name}` (cell {at})"
        assert not defines.search(_text(cell)), f"{where} defines it"
        assert not shows.search(_text(cell)), f"{where} renders it with show_source"
        assert not defines.search(_outputs(cell)), f"{where} prints its code"


@pytest.mark.parametrize(("key", "name"), CASES, ids=[f"{k[:4]}:{n}" for k, n in CASES])
def test_solution_follows_its_exercise_collapsed(key: str, name: str) -> None:
    cells = _notebook(key)
    at = _exercise_cell(cells, name)
    block = _text(cells[at])
    assert "{solution-start}" in block and ":class: dropdown" in block, (
        f"{key}: exercise `{name}` must open a collapsed solution block (:class: dropdown)")
    end = next(i for i in range(at + 1, len(cells)) if "{solution-end}" in _text(cells[i]))
    inside = "\n".join(_text(c) for c in cells[at + 1 : end])
    assert re.search(rf"show_source\([\w.]*\b{re.escape(name)}\b", inside), (
        f"{key}: the solution block of `{name}` must show minigpt's own code")
