"""The student edition of the book: the same pages without the solutions.

    python -m exercises.edition SOURCE TARGET   # what STUDENT_EDITION=1 tools/build-book.sh runs

Copies the book's sources (``_config.yml``, ``_toc.yml``, the top-level pages, ``_static/``,
``chapters/``, the local Sphinx extensions) from SOURCE to TARGET, then:

- in every notebook, removes each gated solution: the cells from the one that opens a
  ``{solution-start}`` directive to the one that holds its ``{solution-end}``, both included
  (the code cells between them, e.g. ``show_source`` of the reference solution, go too);
- in ``_config.yml``, sets sphinx-exercise's ``hide_solutions: true``, which drops every
  ``{solution}`` directive (the answers of the conceptual questions), and marks the title.

A source file is never changed: only the copy in TARGET.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

PAGES = ("*.md", "*.bib", "_toc.yml")
FOLDERS = ("chapters", "_static")


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


START = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-start\}.*?^(?P=f)[ \t]*$\n?", re.M | re.S)
END = re.compile(r"^(?P<f>`{3,}|:{3,})\{solution-end\}.*?^(?P=f)[ \t]*$\n?", re.M | re.S)


def strip_solutions(notebook: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``notebook`` without its gated solutions, and how many were removed.

    Everything from a ``{solution-start}`` directive to its ``{solution-end}`` goes, also when
    one markdown cell closes a solution and opens the next exercise and its solution.
    """
    kept, inside, removed = [], False, 0
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "markdown":
            if not inside:
                kept.append(cell)
            continue
        text, pos, pieces = _text(cell), 0, []
        while True:
            match = (END if inside else START).search(text, pos)
            if match is None:
                if not inside:
                    pieces.append(text[pos:])
                break
            if not inside:
                pieces.append(text[pos : match.start()])
                removed += 1
            inside, pos = not inside, match.end()
        rest = "".join(pieces)
        if rest.strip():
            kept.append({**cell, "source": rest.strip("\n")})
    if inside:
        raise ValueError("a {solution-start} has no {solution-end}")
    return {**notebook, "cells": kept}, removed


def student_config(config: dict[str, Any]) -> dict[str, Any]:
    """The book's configuration with every solution hidden."""
    config = dict(config)
    sphinx = dict(config.get("sphinx") or {})
    sphinx["config"] = {**(sphinx.get("config") or {}), "hide_solutions": True}
    config["sphinx"] = sphinx
    config["title"] = f"{config.get('title', 'The book')} (student edition)"
    return config


def make_edition(source: Path, target: Path) -> int:
    """Write the student edition's sources into ``target``; return the solutions removed."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for pattern in PAGES:
        for path in source.glob(pattern):
            shutil.copy2(path, target / path.name)
    for folder in FOLDERS:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    config = yaml.safe_load((source / "_config.yml").read_text())
    local = (config.get("sphinx") or {}).get("local_extensions") or {}
    for name, folder in local.items():  # e.g. sphinx_book_ext: tools/
        for found in (source / folder).glob(f"{name}*"):
            (target / folder).mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if found.is_dir() else shutil.copy2
            copy(found, target / folder / found.name)
    (target / "_config.yml").write_text(yaml.safe_dump(student_config(config), sort_keys=False))
    removed = 0
    for path in sorted((target / "chapters").glob("*.ipynb")):
        notebook, n = strip_solutions(json.loads(path.read_text()))
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        removed += n
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.edition",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the book's root")
    parser.add_argument("target", type=Path, help="where to write the student edition")
    args = parser.parse_args(argv)
    removed = make_edition(args.source.resolve(), args.target.resolve())
    print(f"student edition in {args.target}: {removed} gated solutions removed from notebooks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
