"""Start a chapter's exercises: ``python -m exercises.start ch06`` (see exercises/workspace.py)."""

from exercises.workspace import main

if __name__ == "__main__":
    raise SystemExit(main())
