"""The Colab bootstrap cell: pinned, written from one place, silent off Colab, loud on failure.

The last two tests run the Colab path end to end, offline, with ``tools/colab_sim.py``: a fresh
environment holding only Colab's preinstalled stack (cached in ``.cache/colab-venv``), a fake
``google.colab``, and the real first cell pointed at a ``file://`` snapshot of this working
tree (``MINIGPT_BOOK_REPO``). Chapter 1 then runs top to bottom under nbval; and against an
address that does not exist, the cell must raise before any other cell runs. About 70 s, plus
about 80 s the first time, to build the cached environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402
import colab_sim  # noqa: E402

CHAPTERS = [p.stem for p in colab_cell.notebooks()]


def test_distribution_name_is_ours():
    name, version = colab_cell.project()
    assert name == "minigpt-book"  # `minigpt` on PyPI is an unrelated chat tool
    assert colab_cell.release_tag() == f"v{version}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_cell_pins_the_release_from_one_place(chapter):
    source = colab_cell.install_cell_source(chapter)
    name, version = colab_cell.project()
    assert source.startswith(colab_cell.MARKER)
    assert source.count(colab_cell.repository_url()) == 1
    assert f'"MINIGPT_BOOK_REF", "v{version}")' in source
    assert f'{name} @ git+{{repo}}@{{ref}}' in source or f"{name}[" in source
    assert "%pip" not in source and "!pip" not in source  # IPython would swallow a failure
    if chapter in colab_cell.CHAPTER_NEEDS and "gpu" in colab_cell.CHAPTER_NEEDS[chapter]:
        assert "# GPU: " in source and "No GPU in this runtime" in source
    else:
        assert "GPU" not in source


@pytest.mark.parametrize("doc", ["README.md", "intro.md"])
def test_docs_name_the_current_release(doc):
    tags = set(re.findall(r"\bv\d+\.\d+\.\d+\b", (ROOT / doc).read_text()))
    assert tags <= {colab_cell.release_tag()}


def test_repository_address_is_written_once():
    """_config.yml holds the address; only the notebooks' generated cells repeat it."""
    url = colab_cell.repository_url().split("://", 1)[1]
    listed = subprocess.run(
        ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    holders = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file() or path.suffix == ".ipynb":
            continue
        try:
            if url in path.read_text():
                holders.append(name)
        except UnicodeDecodeError:
            continue
    assert holders == ["_config.yml"]


def test_cell_does_nothing_outside_colab():
    """Run as plain Python without google.colab: no output, no error, nothing installed."""
    source = colab_cell.install_cell_source("12_gpu_training")
    code = (
        "import sys\n"
        f"exec(compile({source!r}, 'cell', 'exec'))\n"
        "assert 'subprocess' not in dir(), 'the cell ran its Colab branch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


@pytest.fixture(scope="module")
def stack():
    """Colab's preinstalled stack, built once and cached between runs."""
    return colab_sim.base_env()


def test_colab_path_runs_chapter_1(stack, tmp_path):
    sim = colab_sim.setup("01", tmp_path)
    result = colab_sim.run_nbval(sim)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout

    got = colab_sim.installed(sim)
    name, version = colab_cell.project()
    assert got["version"] == version
    assert Path(got["file"]).is_relative_to(tmp_path / "venv")  # not this working tree
    vcs = got["direct_url"]["vcs_info"]
    # the release tag, not the branch's head (one commit later)
    assert vcs["requested_revision"] == colab_cell.release_tag()
    assert vcs["commit_id"] == sim.commit
    missing = set(colab_sim.package_files()) - set(got["files"])
    assert not missing, f"an install of {name} lacks these files of minigpt/: {sorted(missing)}"
    print(json.dumps(sim.seconds, indent=1))


def test_colab_path_fails_loudly_on_a_bad_address(stack, tmp_path):
    sim = colab_sim.setup("01", tmp_path, bad_address=True)
    nb, error = colab_sim.run_all(sim)
    assert error is not None, "the notebook went on without minigpt"
    code = [c for c in nb.cells if c.cell_type == "code"]
    (failure,) = [o for o in code[0].outputs if o.output_type == "error"]
    assert failure.ename == "RuntimeError"
    for words in (colab_sim.BAD_ADDRESS, "failed", "MINIGPT_BOOK_REPO", "run it again"):
        assert words in failure.evalue
    assert all(c.execution_count is None and not c.outputs for c in code[1:]), \
        "cells after the failed bootstrap ran"
    done = subprocess.run([sim.python, "-c", "import minigpt"], capture_output=True,
                          cwd=tmp_path, env=colab_sim.clean_env())
    assert done.returncode != 0
