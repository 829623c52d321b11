"""What README.md and intro.md tell a newcomer exists: every path, script, program and module.

Checked: every repository path in backticks (a word with a slash, outside generated folders;
in the repository or, for the README's package table, in ``minigpt/``),
every ``bash tools/...`` script, every ``.venv/bin/...`` program (when the tests run in .venv),
every ``python -m module``, and every ``{doc}`` target of the intro.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "intro.md"]
GENERATED = ("_build", "dist", "build", ".venv", ".cache")  # made by the commands themselves


def text(doc: str) -> str:
    return (ROOT / doc).read_text()


def code_spans(doc: str) -> list[str]:
    body = re.sub(r"```.*?```", "", text(doc), flags=re.DOTALL)
    return re.findall(r"(?<![}\w])`([^`\n]+)`", body)  # not {doc}`...` roles


def commands(doc: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text(doc), flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line] + code_spans(doc)


@pytest.mark.parametrize("doc", DOCS)
def test_paths_exist(doc):
    missing = []
    for word in (word for span in code_spans(doc) for word in span.split()):
        if ("/" not in word or "://" in word or "<" in word or "*" in word
                or word.startswith((".venv/bin/", "-", "$"))):
            continue
        if word.strip("/").split("/")[0] in GENERATED:
            continue
        if not any((base / word).exists() for base in (ROOT, ROOT / "minigpt")):
            missing.append(word)  # (the README's package table names minigpt's subpackages)
    assert not missing, f"{doc} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_commands_exist(doc):
    missing = []
    for command in commands(doc):
        for script in re.findall(r"\bbash (\S+\.sh)\b", command):
            if not (ROOT / script).is_file():
                missing.append(script)
        for module in re.findall(r"python -m ([\w.]+)", command):
            if importlib.util.find_spec(module) is None:
                missing.append(f"python -m {module}")
        if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
            for program in re.findall(r"\.venv/bin/([\w.-]+)", command):
                if not (ROOT / ".venv" / "bin" / program).exists():
                    missing.append(f".venv/bin/{program}")
    assert not missing, f"{doc} tells readers to run what does not exist: {missing}"


def test_intro_links_exist():
    targets = re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text("intro.md"))
    assert targets
    missing = [t for t in targets if not any((ROOT / f"{t}{ext}").exists()
                                             for ext in (".md", ".ipynb"))]
    assert not missing, missing
