"""Grade a class: every submission of one chapter, each in its own process, into a CSV.

    python -m exercises.teacher ch02 submissions/ --out ch02.csv
    python -m exercises.teacher ch02 submissions/ --timeout 20 --jobs 2

``submissions/`` holds one entry per student: a file ``alice.py`` (student ``alice``) or a
folder ``bob/`` holding ``ch02_bpe.py`` (or a single ``.py`` file), plus any helper modules
of the student's own. Hidden entries (``.name``) are skipped.

Each submission is copied into a private temporary folder and graded there by a fresh Python
(``python -I``: no PYTHONPATH, no user site, not the current folder) whose import path is the
project, the installed packages and, last, that folder: a submission runs only its own files,
and nothing of another submission or of the folder it came from. Every case (one exercise) has
a time limit (``--timeout`` seconds); loading the file has its own (``--load-timeout``). A case
that runs past its limit, or a process that dies (``sys.exit``, a crash of the interpreter),
fails that case only: the process is killed with everything it started and a fresh one grades
the remaining cases. Submissions never share a process.

Writes ``--out`` (default ``<chapter>-grades.csv``), one row per student and case::

    student,case,passed,message

and ``<out>-summary.csv`` (``student,passed,failed,total``), and prints the summary. The
exit status is 0 when every submission was graded, whatever the grades.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from exercises.catalog import CHAPTERS, UnknownChapterError, resolve

PROJECT = Path(__file__).resolve().parent.parent  # the folder that holds the exercises package
MARK = "@@exercises.teacher@@ "  # protocol lines from the worker start with this
_WORKER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from exercises.teacher import _worker; _worker(sys.argv[2:])"
)


@dataclass(frozen=True)
class Row:
    student: str
    case: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Submission:
    student: str
    entry: Path  # the student's file, or folder
    file: Path | None  # the file to grade; None when the folder holds none (see problem)
    problem: str = ""


def find_submissions(folder: Path, key: str) -> list[Submission]:
    """Every submission in ``folder``, sorted by student."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_symlink():
            found.append(Submission(entry.stem, entry, None, "a symbolic link: not graded"))
            continue
        if entry.is_file() and entry.suffix == ".py":
            found.append(Submission(entry.stem, entry, entry))
        elif entry.is_dir():
            named = entry / f"{key}.py"
            files = sorted(entry.glob("*.py"))
            if named.is_file():
                found.append(Submission(entry.name, entry, named))
            elif len(files) == 1:
                found.append(Submission(entry.name, entry, files[0]))
            else:
                found.append(Submission(entry.name, entry, None, f"no {key}.py in {entry.name}/"))
    return found


def _links(folder: str, names: list[str]) -> list[str]:
    """Symbolic links, left out of a copied submission: they could point anywhere."""
    return [n for n in names if os.path.islink(os.path.join(folder, n))]


def _worker(argv: Sequence[str]) -> None:
    """In the child: load the submission, then grade the named exercises one by one."""
    key, file, *names = argv
    sys.dont_write_bytecode = True  # leave the submission's folder as it came
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the student's prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    sys.path.append(str(Path(file).parent))  # the submission's own helper modules, last

    def say(**event: object) -> None:
        proto.write(MARK + json.dumps(event) + "\n")
        proto.flush()

    from exercises.grade import _missing, grade_one, load_file

    exercises = {ex.name: ex for ex in CHAPTERS[key].exercises}
    try:
        namespace = vars(load_file(file))
    except BaseException as exc:  # noqa: BLE001 - any failure to load is the submission's
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SyntaxError):
            detail += f" (line {exc.lineno})"
        say(event="load_error", message=f"the file could not be loaded: {detail}")
        return
    say(event="ready")
    for name in names:
        ex = exercises[name]
        say(event="start", case=name)
        fn = namespace.get(name) or _missing(name, f"the submission defines no {name}")
        ok, message = grade_one(ex, fn)
        say(event="result", case=name, passed=ok, message=message)


class _Child:
    """One worker process and a thread that queues its protocol lines."""

    def __init__(self, key: str, file: Path, names: list[str], cwd: Path, log: Path) -> None:
        self.log = log.open("ab")
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
        env.update(HOME=str(cwd), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER, str(PROJECT), key, str(file), *names],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.log, start_new_session=True, text=True,
        )
        self.events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.events.put(json.loads(line[len(MARK):]))
        self.events.put(None)

    def next_event(self, seconds: float) -> dict | None | str:
        """The next event, None when the process ended, "timeout" past ``seconds``."""
        try:
            return self.events.get(timeout=max(seconds, 0.0))
        except queue.Empty:
            return "timeout"

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and all it started
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()


def _tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(line.strip() for line in text[-lines:])


def grade_submission(key: str, submission: Submission, timeout: float,
                     load_timeout: float) -> list[Row]:
    """Grade one submission in its own process(es), case by case, within the limits."""
    exercises = CHAPTERS[key].exercises
    label = {ex.name: f"{ex.number} {ex.name}" for ex in exercises}
    rows: dict[str, Row] = {}
    student, file = submission.student, submission.file
    with tempfile.TemporaryDirectory(prefix="exercises-teacher-") as tmp:
        work = Path(tmp) / "submission"
        if submission.entry.is_dir():  # the student's folder, and nothing else
            shutil.copytree(submission.entry, work, ignore=_links)
            target = work / file.name
        else:
            work.mkdir()
            target = work / file.name
            shutil.copyfile(file, target)
        log = Path(tmp) / "stderr.log"
        shown = f"{submission.entry.name}/" if submission.entry.is_dir() else ""
        todo = [ex.name for ex in exercises]
        while todo:
            child = _Child(key, target, todo, work, log)
            current, deadline = None, time.monotonic() + load_timeout
            try:
                while todo:
                    event = child.next_event(deadline - time.monotonic())
                    if event == "timeout" and current is None:  # still loading
                        why = f"loading the file took over {load_timeout:g} s (a loop at import?)"
                        rows.update({n: Row(student, label[n], False, why) for n in todo})
                        todo = []
                    elif event == "timeout":
                        current = current or todo[0]  # between cases: the next one
                        rows[current] = Row(student, label[current], False,
                                            f"timed out after {timeout:g} s (an endless loop?)")
                        todo.remove(current)
                        break  # a fresh process for the remaining cases
                    elif event is None:  # the process ended without a result
                        code = child.proc.wait()
                        why = f"the grading process died (exit status {code})"
                        tail = _tail(log)
                        why += f": {tail}" if tail else ""
                        victim = current or todo[0]
                        rows[victim] = Row(student, label[victim], False, why)
                        todo.remove(victim)
                        break
                    elif event["event"] == "load_error":
                        rows.update({n: Row(student, label[n], False, event["message"])
                                     for n in todo})
                        todo = []
                    elif event["event"] == "ready":
                        current, deadline = "", time.monotonic() + timeout
                    elif event["event"] == "start":
                        current, deadline = event["case"], time.monotonic() + timeout
                    elif event["event"] == "result":
                        name = event["case"]
                        message = event["message"].replace(str(work) + os.sep, shown)
                        rows[name] = Row(student, label[name], bool(event["passed"]), message)
                        todo.remove(name)
                        current, deadline = "", time.monotonic() + timeout
            finally:
                child.kill()
    return [rows[ex.name] for ex in exercises]


def grade_folder(chapter: str, folder: str | os.PathLike[str], out: str | os.PathLike[str] | None
                 = None, *, timeout: float = 30.0, load_timeout: float = 120.0,
                 jobs: int = 1) -> list[Row]:
    """Grade every submission in ``folder``; write the CSV and its summary; return the rows."""
    key = resolve(chapter)
    folder = Path(folder)
    out = Path(out) if out is not None else Path(f"{key}-grades.csv")
    CHAPTERS[key]  # noqa: B018 - load the graders here, so that a broken one fails at once
    found = find_submissions(folder, key)

    def one(submission: Submission) -> list[Row]:
        if submission.file is None:
            return [Row(submission.student, f"{ex.number} {ex.name}", False, submission.problem)
                    for ex in CHAPTERS[key].exercises]
        return grade_submission(key, submission, timeout, load_timeout)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = [row for result in pool.map(one, found) for row in result]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "case", "passed", "message"])
        writer.writerows([r.student, r.case, r.passed, r.message] for r in rows)
    summary = out.with_name(f"{out.stem}-summary.csv")
    totals: dict[str, list[int]] = {}
    for r in rows:
        totals.setdefault(r.student, [0, 0])[0 if r.passed else 1] += 1
    with summary.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "passed", "failed", "total"])
        writer.writerows([s, p, n, p + n] for s, (p, n) in totals.items())
    print(f"{CHAPTERS.titles[key]}: {len(totals)} submissions from {folder}")
    for student, (p, n) in totals.items():
        print(f"  {student}: {p}/{p + n} passed")
    print(f"wrote {out} and {summary}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.teacher",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="e.g. ch02, 2 or bpe")
    parser.add_argument("folder", help="one .py file or one folder per student")
    parser.add_argument("--out", help="the CSV to write (default: <chapter>-grades.csv)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per case (default 30)")
    parser.add_argument("--load-timeout", type=float, default=120.0,
                        help="seconds to start Python and load a submission (default 120)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    args = parser.parse_args(argv)
    try:
        resolve(args.chapter)
    except UnknownChapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not Path(args.folder).is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    grade_folder(args.chapter, args.folder, args.out, timeout=args.timeout,
                 load_timeout=args.load_timeout, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
