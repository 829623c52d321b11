"""The student workspace: start a chapter, grade it, and keep the project's checks green.

Everything runs on temporary folders: a temporary workspace, and for the end-to-end case a
temporary copy of the project (a "clean clone") whose default workspace/ is solved.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from exercises import generate, workspace
from exercises.catalog import chapter
from exercises.grade import check
from exercises.workspace import AlreadyStartedError, start, workspace_text

ROOT = Path(__file__).resolve().parents[1]


def _names(code: types.CodeType) -> set[str]:
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def solved_text(key: str, text: str) -> str:
    """``text`` (a stub file) with each exercise replaced by minigpt's reference solution:
    its source, after imports of the module-level names it uses that the stub lacks."""
    tree = ast.parse(text)
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    defined |= {a.asname or a.name for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    defined |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    spans = {n.name: (n.lineno, n.end_lineno) for n in tree.body
             if isinstance(n, ast.FunctionDef)}
    lines = text.splitlines()
    for ex in sorted(chapter(key).exercises, key=lambda e: -spans[e.name][0]):
        fn = inspect.unwrap(ex.load_solution())
        module = inspect.getmodule(fn)
        needed = sorted(n for n in _names(fn.__code__) if n in vars(module) and n not in defined)
        start_line, end_line = spans[ex.name]
        lines[start_line - 1 : end_line] = [
            *(f"from {module.__name__} import {n}" for n in needed),
            *inspect.getsource(fn).splitlines(),
        ]
    return "\n".join(lines) + "\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MINIGPT_WORKSPACE", "PYTHONPATH")}
    return {**env, **extra}


def test_start_copies_the_stubs_and_never_overwrites(tmp_path: Path) -> None:
    path = start("ch02", tmp_path, quiet=True)
    assert path == tmp_path / "ch02_bpe.py"
    assert path.read_text() == workspace_text("ch02")
    assert workspace.WORKSPACE_NOTE in path.read_text()
    assert "do not edit it" not in path.read_text()
    assert (tmp_path / ".gitignore").read_text().strip().endswith("*")
    path.write_text("# my work\n")
    with pytest.raises(AlreadyStartedError, match="--fresh"):
        start("2", tmp_path, quiet=True)
    assert workspace.main(["bpe", "--workspace", str(tmp_path)]) == 1
    assert path.read_text() == "# my work\n", "starting again overwrote the student's file"
    for _ in range(2):
        start("ch02_bpe", tmp_path, fresh=True, quiet=True)
        path.write_text("# my work\n")
    backups = sorted((tmp_path / "backup").iterdir())
    assert len(backups) == 2 and all(b.read_text() == "# my work\n" for b in backups)


def test_where_the_workspace_is(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MINIGPT_WORKSPACE", raising=False)
    assert workspace.workspace_dir() == ROOT / "workspace"  # a clone: at its root
    monkeypatch.setenv("MINIGPT_WORKSPACE", str(tmp_path / "env"))
    assert workspace.workspace_dir() == tmp_path / "env"
    assert workspace.workspace_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MINIGPT_WORKSPACE")
    monkeypatch.setattr(workspace, "repository_root", lambda: None)  # an installed package
    monkeypatch.chdir(tmp_path)
    assert workspace.workspace_dir() == tmp_path / "workspace"


def test_grading_reads_the_workspace_copy_afresh(tmp_path: Path, capsys) -> None:
    path = start("ch02", tmp_path, quiet=True)
    results = check("ch02", workspace=tmp_path)
    assert not any(r.passed for r in results)
    assert all("not attempted" in r.message for r in results)
    path.write_text(solved_text("ch02_bpe", path.read_text()))
    assert all(r.passed for r in check("ch02", workspace=tmp_path))
    assert f"grading {path}" in capsys.readouterr().out
    path.write_text(path.read_text().replace("    return counts\n", "    return {}\n"))
    failed = [r.name for r in check("ch02", workspace=tmp_path) if not r.passed]
    assert failed == ["get_pair_counts", "encode_with_merges"], "the edit was not re-read"


def test_generate_never_overwrites_edited_functions(tmp_path: Path) -> None:
    for stub in (ROOT / "exercises").glob("ch*_*.py"):
        shutil.copy(stub, tmp_path)
    mine = tmp_path / "ch02_bpe.py"
    edited = solved_text("ch02_bpe", mine.read_text())
    mine.write_text(edited)
    assert generate.main(["--check"], folder=tmp_path) == 1
    assert generate.main([], folder=tmp_path) == 1
    assert mine.read_text() == edited, "exercises.generate overwrote edited functions"
    assert generate.main(["--force"], folder=tmp_path) == 0
    assert (tmp_path / "ch02_bpe.py.bak").read_text() == edited
    assert mine.read_text() == (ROOT / "exercises" / "ch02_bpe.py").read_text()


def _copy_project(target: Path) -> Path:
    """A copy of what a clone holds that the exercise checks need (no workspace/)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.bak", "*.egg-info")
    for name in ("minigpt", "exercises"):
        shutil.copytree(ROOT / name, target / name, ignore=skip)
    (target / "tests").mkdir()
    for name in ("conftest.py", "test_exercises.py"):
        shutil.copy(ROOT / "tests" / name, target / "tests" / name)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    return target


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=600)


def test_a_solved_workspace_keeps_the_project_checks_green(tmp_path: Path) -> None:
    """From a clean clone: start ch02, solve it; the exercise checks of tools/test.sh pass
    (generate --check, tests/test_exercises.py, ruff) and the grader reports the student's."""
    clone = _copy_project(tmp_path / "clone")
    py = sys.executable
    started = _run([py, "-m", "exercises.start", "ch02"], clone)
    assert started.returncode == 0, started.stderr
    mine = clone / "workspace" / "ch02_bpe.py"
    assert mine.exists(), started.stdout
    mine.write_text(solved_text("ch02_bpe", mine.read_text())
                    + "import os  # unused, and not at the top: ruff would complain\n")

    generated = _run([py, "-m", "exercises.generate", "--check"], clone)
    assert generated.returncode == 0, generated.stderr
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_exercises.py",
                  "-k", "ch02 or command or generated or signature"], clone)
    assert tests.returncode == 0, tests.stdout[-3000:]
    ruff = Path(py).with_name("ruff")
    if ruff.exists():
        linted = _run([str(ruff), "check", "."], clone)
        assert linted.returncode == 0, linted.stdout[-2000:]

    graded = _run([py, "-m", "exercises.grade", "ch02"], clone)
    assert graded.returncode == 0, graded.stdout
    assert f"grading {mine}" in graded.stdout and "4 passed, 0 failed" in graded.stdout
    again = _run([py, "-m", "exercises.start", "ch02"], clone)
    assert again.returncode == 1 and "--fresh" in again.stderr
    assert "import os" in mine.read_text(), "starting again touched the student's file"


def test_the_wheel_ships_the_exercises_and_grades_outside_the_repository(tmp_path: Path) -> None:
    """pip builds a wheel with exercises/ (stubs, graders, questions); unpacked away from the
    clone, as on Colab, it starts a workspace in the current folder and grades it."""
    source = _copy_project(tmp_path / "src")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--wheel-dir", str(tmp_path / "dist"), str(source)], tmp_path)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("minigpt_book-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("exercises/grade.py", "exercises/teacher.py", "exercises/ch02_bpe.py",
                 "exercises/graders/ch02_bpe.py", "exercises/questions/ch06.md"):
        assert name in names, f"{name} is not in the wheel"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    colab = tmp_path / "content"
    colab.mkdir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import exercises.grade, minigpt\n"
        "assert exercises.grade.__file__.startswith(sys.argv[1]), exercises.grade.__file__\n"
        "assert minigpt.__file__.startswith(sys.argv[1]), minigpt.__file__\n"
        "from exercises.workspace import start\n"
        "from exercises.grade import grade\n"
        "start('ch02')\n"
        "grade('ch02')\n"
    )
    run = _run([sys.executable, "-I", "-c", code, str(site)], colab)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (colab / "workspace" / "ch02_bpe.py").exists()
    assert "not attempted" in run.stdout and "0 passed, 4 failed" in run.stdout
