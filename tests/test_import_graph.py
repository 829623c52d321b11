"""The shape of minigpt's import graph, read from the source with ``ast`` (nothing is imported).

Every module of ``minigpt/`` is a node: a package's ``__init__`` (``minigpt.attention``) and
its submodules (``minigpt.attention.functional``) are distinct nodes. An edge is an import
anywhere in a module (at the top, inside a function, under ``if TYPE_CHECKING``), relative
imports resolved; ``from minigpt.attention import flash`` is an edge to the submodule
``minigpt.attention.flash`` when ``flash`` is one, else to ``minigpt.attention``. A package's
``__init__`` importing its own submodules is an ordinary edge, so it only closes a cycle if a
submodule imports the ``__init__`` back.

The rules (every failure names the offending edge, ``importer -> imported``):

1. no import cycle;
2. nothing outside ``minigpt.lab`` imports ``minigpt.lab`` (the experiment harnesses build on
   the concept modules, never the other way round);
3. a ``_private`` module or name is imported only from within its own (sub)package:
   ``minigpt.parallel.tensor`` may use ``minigpt.parallel._common``, ``minigpt.model`` may not
   use ``minigpt.layernorm._x``;
4. ``minigpt.gpu`` does not import ``minigpt.book`` (the notebooks' helpers).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigpt"

# Edges that rule 4 forbids besides the general rules: (importer, imported or a package of it).
FORBIDDEN = {("minigpt.gpu", "minigpt.book")}


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` (a minigpt module), at ``line``.

    ``name`` is the imported name for ``from target import name`` when it is not a submodule.
    """

    source: str
    target: str
    line: int
    name: str | None = None

    def __str__(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.source} -> {what} (minigpt/{path_of(self.source)}:{self.line})"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def path_of(module: str) -> str:
    """The file of a module, relative to minigpt/ (for messages)."""
    relative = Path(*module.split(".")[1:])
    init = PACKAGE / relative / "__init__.py"
    return str(init.relative_to(PACKAGE) if init.exists() else relative.with_suffix(".py"))


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def resolve_relative(module: str, level: int, target: str | None) -> str:
    """The absolute module of ``from <level dots><target> import ...`` written in ``module``."""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def closest_module(name: str) -> str | None:
    """``name`` if it is a minigpt module, else its nearest enclosing one (``a.b.c`` -> ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def edges_of(module: str) -> list[Edge]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = closest_module(alias.name)
                if target:
                    found.append(Edge(module, target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = (
                resolve_relative(module, node.level, node.module) if node.level else node.module
            )
            if not base or closest_module(base) is None:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    found.append(Edge(module, submodule, node.lineno))
                else:
                    name = None if alias.name == "*" else alias.name
                    found.append(Edge(module, closest_module(base), node.lineno, name))
    return found


EDGES: list[Edge] = [edge for module in MODULES for edge in edges_of(module)]


def subpackage(module: str) -> str:
    """The package a module belongs to: ``minigpt.parallel`` for ``minigpt.parallel.tensor``
    and for ``minigpt.parallel`` itself, ``minigpt`` for ``minigpt.model``."""
    return module if module in PACKAGES else module.rpartition(".")[0]


def privacy_scope(owner: str) -> str:
    """Who may use a ``_private`` module or name held by ``owner`` (a package or module): the
    owner's subpackage (``minigpt.parallel``), but for a top-level concept module only the
    module itself (``minigpt.layernorm``), and for ``minigpt`` itself the whole package."""
    package = subpackage(owner)
    return owner if package == "minigpt" and owner not in PACKAGES else package


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def private_part(edge: Edge) -> str | None:
    """The first ``_private`` component the edge reaches, as a dotted prefix, or None."""
    parts = edge.target.split(".") + ([edge.name] if edge.name else [])
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[: i + 1])
    return None


def find_cycle(edges: list[Edge]) -> list[Edge] | None:
    """One import cycle as its list of edges, or None (iterative depth-first search)."""
    graph: dict[str, list[Edge]] = {m: [] for m in MODULES}
    for edge in edges:
        if edge.source != edge.target:
            graph[edge.source].append(edge)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        path: list[Edge] = []
        stack = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            edge = next(todo, None)
            if edge is None:
                state[node] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            if state.get(edge.target) == 1:  # back to a module on the current path
                first = next(i for i, e in enumerate(path) if e.source == edge.target)
                return [*path[first:], edge]
            if edge.target not in state:
                state[edge.target] = 1
                path.append(edge)
                stack.append((edge.target, iter(graph[edge.target])))
    return None


# ---------------------------------------------------------------------------- the reader itself


def test_the_reader_sees_the_package() -> None:
    assert {"minigpt", "minigpt.model", "minigpt.attention", "minigpt.lab"} <= set(MODULES)
    assert "minigpt.attention.functional" in MODULES and "minigpt.attention" in PACKAGES
    assert any(e.source == "minigpt.model" for e in EDGES), "minigpt.model imports nothing?"


def test_relative_and_submodule_imports_resolve() -> None:
    assert resolve_relative("minigpt.attention.flash", 1, "_common") == (
        "minigpt.attention._common"
    )
    assert resolve_relative("minigpt.attention", 1, "functional") == (
        "minigpt.attention.functional"
    )
    assert resolve_relative("minigpt.parallel.tensor", 2, "config") == "minigpt.config"
    assert closest_module("minigpt.attention.functional.causal_attention") == (
        "minigpt.attention.functional"
    )


def test_the_cycle_finder_finds_a_cycle() -> None:
    a, b, c = "minigpt.model", "minigpt.config", "minigpt.train"
    cycle = find_cycle([Edge(a, b, 1), Edge(b, c, 2), Edge(c, b, 3)])
    assert cycle is not None and [e.source for e in cycle] == [b, c]
    assert find_cycle([Edge(a, b, 1), Edge(b, c, 2), Edge(a, c, 3)]) is None


# ---------------------------------------------------------------------------- the rules


def test_no_import_cycle() -> None:
    cycle = find_cycle(EDGES)
    assert cycle is None, "import cycle: " + ", ".join(map(str, cycle or []))


def test_concept_modules_never_import_the_lab() -> None:
    bad = [e for e in EDGES if within(e.target, "minigpt.lab") and not within(
        e.source, "minigpt.lab"
    )]
    assert not bad, "imports of minigpt.lab from outside it:\n" + "\n".join(map(str, bad))


def test_private_names_stay_inside_their_subpackage() -> None:
    bad = []
    for edge in EDGES:
        private = private_part(edge)
        if private is None:
            continue
        owner = private.rpartition(".")[0]  # the package or module that holds the private part
        if not within(edge.source, privacy_scope(owner)):
            bad.append(edge)
    assert not bad, "private imports from outside the owner:\n" + "\n".join(map(str, bad))


def test_forbidden_edges() -> None:
    bad = [e for e in EDGES for src, dst in FORBIDDEN if e.source == src and within(e.target, dst)]
    assert not bad, "forbidden imports:\n" + "\n".join(map(str, bad))


def test_rules_catch_a_planted_violation() -> None:
    """The rules' own checks flag the edges they exist for (so that none passes vacuously)."""
    to_lab = Edge("minigpt.finetune", "minigpt.lab.icl", 1)
    assert str(to_lab).startswith("minigpt.finetune -> minigpt.lab.icl")
    assert within(to_lab.target, "minigpt.lab") and not within(to_lab.source, "minigpt.lab")
    private = Edge("minigpt.model", "minigpt.layernorm", 1, "_x")
    assert private_part(private) == "minigpt.layernorm._x"
    assert not within(private.source, privacy_scope("minigpt.layernorm"))
    sibling = Edge("minigpt.parallel.tensor", "minigpt.parallel._common", 1)
    assert private_part(sibling) == "minigpt.parallel._common"
    assert within(sibling.source, privacy_scope("minigpt.parallel"))
    outsider = Edge("minigpt.model", "minigpt.parallel._common", 1)
    assert not within(outsider.source, privacy_scope("minigpt.parallel"))
    within_module = Edge("minigpt.parallel.tensor", "minigpt.parallel.fsdp", 1, "_shard")
    assert within(within_module.source, privacy_scope("minigpt.parallel.fsdp"))
    assert any(src == "minigpt.gpu" and dst == "minigpt.book" for src, dst in FORBIDDEN)


# ---------------------------------------------------------------------------- the package itself


def test_import_minigpt_loads_no_torch_and_has_a_version() -> None:
    code = (
        "import sys, minigpt; "
        "assert isinstance(minigpt.__version__, str) and minigpt.__version__, 'no __version__'; "
        "heavy = sorted(m for m in ('torch', 'numpy', 'einops') if m in sys.modules); "
        "print(' '.join(heavy))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "torch" not in run.stdout.split(), "import minigpt loaded torch"
