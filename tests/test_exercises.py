"""Every grader passes on the reference solution and fails on the stub and on known wrong answers.

A grader that cannot fail is a defect, so this is part of CI. These tests read the project's
stubs (exercises/<chapter>.py) and never a student's workspace: every test here runs with
$MINIGPT_WORKSPACE set to an empty folder (tests/test_workspace.py proves that a solved
workspace leaves them green).
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exercises import catalog, generate, grade
from exercises.catalog import CHAPTERS, Chapters, Exercise, UnknownChapterError, chapter, resolve
from exercises.grade import grade_one

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_student_workspace(tmp_path_factory, monkeypatch) -> None:
    """Grade the project's stubs, whatever a student has in workspace/."""
    monkeypatch.setenv("MINIGPT_WORKSPACE", str(tmp_path_factory.mktemp("empty-workspace")))

ALL = [(c.key, ex) for c in CHAPTERS.values() for ex in c.exercises]
IDS = [f"{key}:{ex.name}" for key, ex in ALL]


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_passes_on_the_reference_solution(key: str, exercise: Exercise) -> None:
    ok, message = grade_one(exercise, exercise.load_solution())
    assert ok, message


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_fails_on_the_untouched_stub(key: str, exercise: Exercise) -> None:
    stub = getattr(importlib.import_module(f"exercises.{key}"), exercise.name)
    ok, message = grade_one(exercise, stub)
    assert not ok and "not attempted" in message


@pytest.mark.parametrize(("key", "exercise"), ALL, ids=IDS)
def test_grader_rejects_plausible_wrong_answers(key: str, exercise: Exercise) -> None:
    mutants = importlib.import_module(exercise.grader.partition(":")[0]).MUTANTS
    assert mutants.get(exercise.name), f"give {exercise.name} at least one wrong answer to reject"
    for wrong in mutants[exercise.name]:
        ok, _ = grade_one(exercise, wrong)
        assert not ok, f"the grader of {exercise.name} accepted a wrong answer"


def test_stub_files_are_generated_from_the_current_solutions() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m exercises.generate"


def test_stubs_keep_the_solutions_signature_and_docstring() -> None:
    for key, ex in ALL:
        stub = getattr(importlib.import_module(f"exercises.{key}"), ex.name)
        solution = ex.load_solution()
        assert stub.__doc__ == solution.__doc__
        assert stub.__annotations__ == solution.__annotations__


def test_every_chapter_has_at_least_three_exercises() -> None:
    for c in CHAPTERS.values():
        assert len(c.exercises) >= 3, c.key


def test_chapter_lookup_by_prefix_and_clear_error() -> None:
    assert chapter("ch01").key == "ch01_ngrams"
    with pytest.raises(KeyError, match="chapters with exercises"):
        chapter("ch99")


@pytest.mark.parametrize("spelling", ["ch2", "2", "02", "ch02", "bpe", "BPE", "ch02_bpe", "ch02_b"])
def test_a_chapter_key_can_be_spelled_many_ways(spelling: str) -> None:
    assert resolve(spelling) == "ch02_bpe"


def test_unknown_and_ambiguous_keys_name_the_valid_keys() -> None:
    with pytest.raises(UnknownChapterError) as unknown:
        resolve("ch99")
    assert "ch01_ngrams" in str(unknown.value) and "\n" not in str(unknown.value)
    with pytest.raises(UnknownChapterError, match="ambiguous.*ch07_gpt3_model, ch11_after_gpt3"):
        resolve("gpt3")


def test_grade_command_answers_an_unknown_key_in_one_line() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "exercises.grade", "ch99"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "unknown chapter 'ch99'" in run.stderr and "ch02_bpe" in run.stderr


def test_every_grader_module_is_declared_once_in_the_catalog() -> None:
    graders = sorted(p.stem for p in (ROOT / "exercises" / "graders").glob("ch*.py"))
    declared = [key for key, _ in catalog.DECLARED]
    assert sorted(declared) == graders, "declare each chapter once in exercises/catalog.py"
    assert declared == sorted(declared), "keep DECLARED in book order"


def test_grading_one_chapter_imports_no_other_grader() -> None:
    code = (
        "import sys\n"
        "from exercises.catalog import CHAPTERS\n"
        "from exercises.grade import main\n"
        "graders = lambda: sorted(m for m in sys.modules if m.startswith('exercises.graders.ch'))\n"
        "assert list(CHAPTERS) and graders() == [], graders()\n"
        "status = main(['bpe', '--solutions'])\n"
        "print('LOADED', *graders())\n"
        "raise SystemExit(status)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "LOADED exercises.graders.ch02_bpe"


def test_a_broken_grader_fails_only_its_own_chapter(monkeypatch, capsys) -> None:
    chapters = Chapters((("ch01_ngrams", CHAPTERS.titles["ch01_ngrams"]), ("ch98_gone", "Gone")))
    monkeypatch.setattr(catalog, "CHAPTERS", chapters)
    monkeypatch.setattr(grade, "CHAPTERS", chapters)
    assert grade.main(["--solutions"]) == 1
    out = capsys.readouterr().out
    assert "[PASS] 1.1 count_ngrams" in out
    assert "[FAIL] the graders of ch98_gone could not be loaded: ModuleNotFoundError" in out
    assert out.strip().endswith("passed, 1 failed")


def test_stubs_offer_no_private_helper() -> None:
    """A stub imports only public names: a private helper may be (part of) the answer."""
    for c in CHAPTERS.values():
        tree = ast.parse((ROOT / "exercises" / f"{c.key}.py").read_text())
        names = [alias.name for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names]
        private = [n for n in names if n.rsplit(".", 1)[-1].startswith("_") and n != "__future__"]
        assert not private, f"{c.key} offers private names: {private}"


def test_stub_header_says_to_work_in_the_workspace() -> None:
    text = (ROOT / "exercises" / "ch06_attention.py").read_text()
    assert "python -m exercises.start ch06" in text and "do not edit it" in text


def test_grade_command_reports_and_exits_with_status() -> None:
    run = [sys.executable, "-m", "exercises.grade", "ch02"]
    solutions = subprocess.run([*run, "--solutions"], cwd=ROOT, capture_output=True, text=True)
    assert solutions.returncode == 0, solutions.stdout + solutions.stderr
    assert solutions.stdout.strip().endswith("0 failed")
    stubs = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert stubs.returncode == 1 and "not attempted" in stubs.stdout


def _exercise(name: str) -> Exercise:
    return next(ex for _, ex in ALL if ex.name == name)


def test_a_crash_names_the_input_the_exception_and_the_students_line(tmp_path: Path) -> None:
    mine = tmp_path / "mine.py"
    mine.write_text("def repeat_kv(x, n_rep):\n    return x[99]\n")
    fn = grade.load_file(mine).repeat_kv
    ok, message = grade_one(_exercise("repeat_kv"), fn)
    assert not ok
    assert "crashed on repeat_kv(tensor(shape=(1, 2, 1, 1), dtype=torch.float32), 3)" in message
    assert "IndexError" in message and f"{mine}, line 2: return x[99]" in message


def test_nan_is_reported_never_hidden() -> None:
    import torch

    from exercises.graders.ch06_attention import _close

    want = torch.zeros(4, 64, dtype=torch.float64)
    got = want.clone()
    got[:2] = float("nan")  # 128 NaNs where the answer is 0
    with pytest.raises(AssertionError, match="128 NaN where the expected has no NaN or inf"):
        _close(got, want, "scores")
    want[:2] = float("-inf")  # -inf expected and -inf given: equal
    _close(want.clone(), want, "scores")


def test_a_false_docstring_comparison_reports_both_sides() -> None:
    ok, message = grade_one(_exercise("online_softmax"), lambda x, block: 2 * x.softmax(-1))
    assert not ok and "the left side is tensor([" in message and "got False" not in message


def test_the_student_edition_removes_gated_solutions_and_hides_the_others() -> None:
    from exercises.edition import strip_solutions, student_config

    md = lambda text: {"cell_type": "markdown", "source": text}  # noqa: E731
    code = {"cell_type": "code", "source": "show_source(causal_mask)"}
    cells = [md("````{exercise} X\n````"), md("````{solution-start} ex\n````"), code,
             md("````{solution-end}\n````"), md("next")]
    notebook, removed = strip_solutions({"cells": cells})
    assert removed == 1 and notebook["cells"] == [cells[0], cells[-1]]
    with pytest.raises(ValueError):
        strip_solutions({"cells": cells[:3]})
    mixed = [md("````{exercise} A\n````\n````{solution-start} a\n:class: dropdown\n````"), code,
             md("```{solution-end}\n```\n\n```{exercise} B\n```\n```{solution-start} b\n```"),
             code, md("```{solution-end}\n```\n\nGoing further")]
    notebook, removed = strip_solutions({"cells": mixed})
    assert removed == 2 and [c["source"] for c in notebook["cells"]] == [
        "````{exercise} A\n````", "```{exercise} B\n```", "Going further"]
    config = student_config({"title": "T", "sphinx": {"config": {"numfig": True}}})
    assert config["sphinx"]["config"] == {"numfig": True, "hide_solutions": True}


@pytest.mark.parametrize("key", list(CHAPTERS))
def test_each_chapter_has_two_to_four_questions_with_collapsed_answers(key: str) -> None:
    number = int(key[2:4])
    text = (ROOT / "exercises" / "questions" / f"{key[:4]}.md").read_text()
    questions = re.findall(r":::\{exercise\} Question (\d+)\.(\d+):.*\n:label: (\S+)", text)
    answers = re.findall(r":::\{solution\} (\S+)\n:class: dropdown", text)
    assert 2 <= len(questions) <= 4, key
    assert [int(c) for c, _, _ in questions] == [number] * len(questions)
    assert [int(n) for _, n, _ in questions] == list(range(1, len(questions) + 1))
    assert [label for _, _, label in questions] == answers, "one dropdown answer per question"
