"""The student's workspace: a git-ignored folder with the student's own copy of each chapter.

    python -m exercises.start ch06              # copy the chapter 6 stubs to workspace/
    python -m exercises.start ch06 --fresh      # start again: the old file goes to a backup

In a notebook (also on Colab, where the package is installed and the workspace is made in the
current folder)::

    from exercises.workspace import start
    start("ch06")

Where the workspace is: ``--workspace DIR``, else the environment variable
``MINIGPT_WORKSPACE``, else ``workspace/`` at the root of a clone of the repository, else (an
installed package) ``workspace/`` in the current folder. ``python -m exercises.grade`` grades
the workspace copy of a chapter when there is one.

Nothing here ever overwrites a student's file: starting a chapter that is already started
refuses unless ``fresh=True`` (``--fresh``), which first moves the old file to
``workspace/backup/<chapter>.<time>.py``. The project's own checks (``tools/test.sh``,
``python -m exercises.generate --check``, ``tests/``) never read the workspace.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from exercises.catalog import CHAPTERS, UnknownChapterError, resolve

ENV = "MINIGPT_WORKSPACE"
PACKAGE = Path(__file__).resolve().parent
FOLDER = "workspace"
# The first paragraph of every stub file's docstring (exercises/generate.py writes it); a
# workspace copy gets WORKSPACE_NOTE in its place.
STUB_NOTE = "This is the project's copy of the stubs: do not edit it."
WORKSPACE_NOTE = "This is your copy (your workspace): edit it, and grade it as below."


class AlreadyStartedError(FileExistsError):
    """The chapter's workspace file exists; its message says how to start again."""


def repository_root() -> Path | None:
    """The clone this package lives in, or None for an installed package."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "minigpt").is_dir():
        return root
    return None


def workspace_dir(workspace: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder (not created): the argument, $MINIGPT_WORKSPACE, or the default."""
    if workspace is not None:
        return Path(workspace).expanduser().resolve()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser().resolve()
    root = repository_root()
    return (root if root is not None else Path.cwd().resolve()) / FOLDER


def stub_path(key: str) -> Path:
    """The project's stub file of chapter ``key`` (never edited by students)."""
    return PACKAGE / f"{key}.py"


def workspace_file(key: str, workspace: str | os.PathLike[str] | None = None) -> Path:
    """Where the student's copy of chapter ``key`` lives (it may not exist yet)."""
    return workspace_dir(workspace) / f"{resolve(key)}.py"


def workspace_text(key: str) -> str:
    """The text of a fresh workspace copy: the stub file, its first paragraph adapted."""
    return stub_path(resolve(key)).read_text().replace(STUB_NOTE, WORKSPACE_NOTE, 1)


def _backup(path: Path) -> Path:
    folder = path.parent / "backup"
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"{path.stem}.{stamp}.py", 1
    while target.exists():  # never overwrite an earlier backup
        n += 1
        target = folder / f"{path.stem}.{stamp}-{n}.py"
    path.rename(target)
    return target


def start(chapter: str, workspace: str | os.PathLike[str] | None = None, *,
          fresh: bool = False, quiet: bool = False) -> Path:
    """Copy chapter ``chapter``'s stubs into the workspace and return the new file's path.

    Raises :class:`AlreadyStartedError` if the file exists, unless ``fresh=True``, which moves
    the existing file to ``backup/`` first (it is never overwritten or deleted).
    """
    key = resolve(chapter)
    target = workspace_file(key, workspace)
    backup = None
    if target.exists():
        if not fresh:
            raise AlreadyStartedError(
                f"{key} is already started: your work is in {target}. Nothing was changed. "
                "To start again from the stubs, pass --fresh (start(..., fresh=True)): your "
                f"file is then kept in {target.parent / 'backup'}/."
            )
        backup = _backup(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    gitignore = target.parent / ".gitignore"
    if not gitignore.exists():  # a workspace anywhere stays out of git
        gitignore.write_text("# the student's workspace (python -m exercises.start)\n*\n")
    target.write_text(workspace_text(key))
    if not quiet:
        if backup is not None:
            print(f"kept your previous file as {backup}")
        print(f"{CHAPTERS.titles[key]}: your exercises are in {target}")
        print(f"grade them with: python -m exercises.grade {key.split('_')[0]}"
              + ("" if workspace is None else f" --workspace {target.parent}"))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exercises.start",
        description="Copy a chapter's exercise stubs into your workspace, to work on them.",
    )
    parser.add_argument("chapters", nargs="+", help="e.g. ch06, 6 or attention")
    parser.add_argument("--workspace", help=f"the folder (default: ${ENV}, else {FOLDER}/)")
    parser.add_argument("--fresh", action="store_true",
                        help="start again from the stubs; your old file is kept in backup/")
    args = parser.parse_args(argv)
    status = 0
    for name in args.chapters:
        try:
            start(name, args.workspace, fresh=args.fresh)
        except UnknownChapterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except AlreadyStartedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
