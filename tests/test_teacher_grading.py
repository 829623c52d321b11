"""Grading a class: one process per submission, a time limit per case, a CSV that is right."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from test_workspace import solved_text

from exercises import teacher
from exercises.workspace import workspace_text


def test_a_class_with_a_correct_a_wrong_a_crashing_and_an_endless_submission(
    tmp_path: Path,
) -> None:
    solved = solved_text("ch02_bpe", workspace_text("ch02"))
    subs = tmp_path / "submissions"
    (subs / "bob").mkdir(parents=True)
    (subs / "alice.py").write_text(solved)  # correct
    (subs / "bob" / "ch02_bpe.py").write_text(  # wrong: counts nothing; a folder submission
        solved.replace("    return counts\n", "    return {}\n"))
    (subs / "carol.py").write_text(  # crashes in merge (and so in encode_with_merges)
        solved.replace("    first, second = pair\n", "    first, second = pair[5]\n"))
    (subs / "dave.py").write_text(  # never terminates in get_pair_counts
        solved.replace("    counts = {} if counts is None else counts\n",
                       "    while True:\n        pass\n"))
    (subs / "erin.py").write_text("import sys\nsys.exit(3)\n")  # exits while loading
    (tmp_path / "ch02_bpe.py").write_text("raise SystemExit('outside the submission')\n")
    out = tmp_path / "grades" / "ch02.csv"

    began = time.monotonic()
    teacher.main(["ch02", str(subs), "--out", str(out), "--timeout", "8", "--jobs", "2"])
    assert time.monotonic() - began < 240, "the endless loop was not stopped in time"

    rows = list(csv.DictReader(out.open()))
    got = {(r["student"], r["case"].split()[0]): (r["passed"], r["message"]) for r in rows}
    assert len(rows) == 5 * 4 and list(rows[0]) == ["student", "case", "passed", "message"]
    verdicts = {s: "".join("P" if got[s, f"2.{i}"][0] == "True" else "F" for i in range(1, 5))
                for s in ("alice", "bob", "carol", "dave", "erin")}
    assert verdicts == {"alice": "PPPP", "bob": "FPFP", "carol": "PFFP", "dave": "FPFP",
                        "erin": "FFFF"}
    assert "got {}" in got["bob", "2.1"][1]
    crash = got["carol", "2.2"][1]
    assert "crashed on merge([97, 97, 97, 98], (97, 97), 256): IndexError" in crash
    assert "carol.py, line" in crash and "pair[5]" in crash and "exercises-teacher" not in crash
    assert "timed out after 8 s" in got["dave", "2.1"][1]
    assert "SystemExit" in got["erin", "2.1"][1]
    summary = list(csv.DictReader(out.with_name("ch02-summary.csv").open()))
    assert [(s["student"], s["passed"], s["total"]) for s in summary] == [
        ("alice", "4", "4"), ("bob", "2", "4"), ("carol", "2", "4"), ("dave", "2", "4"),
        ("erin", "0", "4")]


def test_a_submission_sees_only_its_own_files(tmp_path: Path) -> None:
    subs = tmp_path / "submissions"
    (subs / "mallory").mkdir(parents=True)
    (subs / "trent").mkdir()
    (subs / "trent" / "helper.py").write_text("LEAK = True\n")
    (subs / "mallory" / "ch02_bpe.py").write_text(
        "import os\n"
        "try:\n"
        "    import helper  # trent's module: not on mallory's path\n"
        "    SEEN = 'helper'\n"
        "except ImportError:\n"
        "    SEEN = ''\n"
        "SEEN += ' ' + ' '.join(sorted(os.listdir('.')))\n"
        "def get_pair_counts(ids, counts=None):\n"
        "    raise RuntimeError(SEEN)\n"
    )
    (subs / "trent" / "ch02_bpe.py").write_text("from helper import LEAK\n")
    rows = teacher.grade_folder("ch02", subs, tmp_path / "out.csv", timeout=30)
    mallory = next(r for r in rows if r.student == "mallory" and r.case.startswith("2.1"))
    assert "RuntimeError:  ch02_bpe.py" in mallory.message, mallory.message
    trent = next(r for r in rows if r.student == "trent")
    assert "could not be loaded" not in trent.message, "a folder's own helper must import"
