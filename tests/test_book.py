"""The book's conventions, checked: every chapter notebook follows CONTRIBUTING.md."""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import pkgutil
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import minigpt
from minigpt import book, precision

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def code_cells(path: Path) -> list[dict]:
    return [c for c in cells(path) if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_chapters() -> None:
    assert NOTEBOOKS, "no notebooks in chapters/"


def test_every_chapter_is_in_the_table_of_contents() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    for nb in NOTEBOOKS:
        assert f"chapters/{nb.stem}" in files, f"{nb.name} is missing from _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_installs_minigpt_on_colab_only(path: Path) -> None:
    from tools.colab_cell import install_cell_source, repository_url

    first = source(code_cells(path)[0])
    assert first == install_cell_source(path.stem), "run: python tools/colab_cell.py"
    assert repository_url() in first
    assert 'if "google.colab" in sys.modules:' in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_executed_in_order_without_errors(path: Path) -> None:
    counts = []
    for cell in code_cells(path):
        if not source(cell).strip():
            continue
        assert cell["execution_count"] is not None, f"unexecuted cell: {source(cell)[:60]!r}"
        counts.append(cell["execution_count"])
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"stored error in {source(cell)[:60]!r}"
    assert counts == list(range(1, len(counts) + 1)), "execute the notebook top to bottom"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_seeds_and_imports_minigpt(path: Path) -> None:
    second = source(code_cells(path)[1])
    assert "set_seed(" in second and "minigpt" in second


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ignored_outputs_are_rare_and_never_hide_results(path: Path) -> None:
    code = code_cells(path)
    ignored = [c for c in code if source(c).lstrip().startswith("# NBVAL_IGNORE_OUTPUT")]
    skipped = [c for c in code if "NBVAL_SKIP" in source(c)]
    assert not skipped, "NBVAL_SKIP hides a cell from the tests entirely"
    assert len(ignored) <= max(2, len(code) // 10), "too many cells hidden from nbval"


def _public_minigpt_code() -> dict[str, str]:
    """Name -> source of every public function and class defined in minigpt."""
    code = {}
    for info in pkgutil.iter_modules(minigpt.__path__):
        module = __import__(f"minigpt.{info.name}", fromlist=["_"])
        for name, obj in vars(module).items():
            if (
                not name.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module.__name__
            ):
                code[name] = book.source_of(obj, docstring=False)
    return code


def _normalized(code: str) -> list[str]:
    """The lines of a definition as ast.unparse prints them, without its docstring."""
    node = ast.parse(textwrap.dedent(code)).body[0]
    body = getattr(node, "body", [])
    if body and ast.get_docstring(node) is not None:
        node.body = body[1:] or [ast.Pass()]
    return ast.unparse(node).splitlines()


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _normalized(a), _normalized(b)).ratio()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_does_not_paste_minigpt_code(path: Path) -> None:
    """Notebooks show minigpt's code with show_source; they never paste a copy of it."""
    package = _public_minigpt_code()
    for cell in code_cells(path):
        text = re.sub(r"^(\s*)[%!].*$", r"\1pass", source(cell), flags=re.M)  # magics
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in package:
                pasted = ast.get_source_segment(text, node) or ""
                assert _similarity(pasted, package[node.name]) < 0.5, (
                    f"{node.name} in {path.name} copies minigpt's code: show_source it instead"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_shows_package_source_and_cites(path: Path) -> None:
    text = json.dumps(cells(path))
    assert "show_source(" in text
    assert "{cite}" in text and "{term}" in text


def test_citations_exist_in_the_bibliography() -> None:
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    pages = [*NOTEBOOKS, *(ROOT / name for name in ("intro.md", "glossary.md"))]
    for page in pages:
        for group in re.findall(r"\{cite[:a-z]*\}`([^`]+)`", page.read_text()):
            for key in group.split(","):
                assert key.strip() in keys, f"{page.name} cites unknown {key.strip()!r}"


def test_source_of_shows_the_code_with_or_without_docstring() -> None:
    from minigpt.ngram import perplexity

    full = book.source_of(perplexity)
    assert full.startswith("def perplexity(") and '"""' in full
    bare = book.source_of(perplexity, docstring=False)
    assert '"""' not in bare and "np.exp(-values.mean())" in bare
    assert book.show_source(perplexity).data == full


def test_source_of_rejects_objects_without_source() -> None:
    with pytest.raises(TypeError, match="cannot show the source"):
        book.source_of(len)


def test_set_seed_makes_numpy_torch_and_random_repeat() -> None:
    import random

    book.set_seed(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    book.set_seed(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first  # noqa: NPY002


def test_device_helpers() -> None:
    assert precision.get_device() in ("cpu", "cuda")
    assert book.pick(cpu=1, gpu=2, device="cpu") == 1
    assert book.pick(cpu=1, gpu=2, device="cuda") == 2
    assert book.on_colab() is False


def test_controls_precompute_every_view_from_lists_choices_or_widgets() -> None:
    import ipywidgets as widgets

    from minigpt.widgets import Choice

    calls = []
    slider = widgets.IntSlider(value=1, min=0, max=2)
    shown = book.controls(lambda n, t: calls.append((n, t)), n=slider,
                          t=Choice([0.5, 1.0], default=1.0))
    assert sorted(calls) == [(n, t) for n in (0, 1, 2) for t in (0.5, 1.0)]
    assert shown.default == {"n": 1, "t": 1.0}
    html = shown._repr_html_()
    assert "<script" in html and "require" not in html and "http" not in html
    with pytest.raises(ValueError, match="at least one choice"):
        book.controls(print)
