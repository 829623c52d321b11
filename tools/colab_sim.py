"""Run a chapter the way a Colab user does, offline: the bootstrap cell, then the chapter.

What it builds, all in a temporary folder except the cached environment:

1. an environment holding only what Colab preinstalls (``COLAB_STACK``), cached in
   ``.cache/colab-venv/<hash of what it installs>`` and reused between runs; each run gets a
   fresh, empty virtual environment layered on it (a ``.pth`` file), so that nothing the
   bootstrap installs ever reaches the cache;
2. a stand-in ``google.colab`` module, imported at kernel start as Colab does;
3. a git repository holding a snapshot of this working tree (tracked and untracked files that
   git does not ignore), tagged ``v<version>``, with one more commit after the tag, so that
   the cell must install the tag, not the branch's head;
4. a copy of the chapter whose first cell is the current bootstrap cell
   (``tools/colab_cell.py``), run with ``MINIGPT_BOOK_REPO=file://<that repository>``.

Then either nbval runs the whole chapter and compares every output with the stored one, as
``tools/test.sh`` does (the bootstrap cell's own output is not compared: on Colab it reports
the install), or, with ``--bad-address``, "Run all" is simulated against an address that does
not exist and the cell must raise before any other cell runs.

    .venv/bin/python tools/colab_sim.py                 # chapter 1, then print the timings
    .venv/bin/python tools/colab_sim.py --chapter 05
    .venv/bin/python tools/colab_sim.py --bad-address

``tests/test_bootstrap.py`` runs both cases in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402

# What Colab preinstalls that the chapters use (Colab has many more packages). PyTorch's
# release is chosen as in tools/env.sh.
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")
COLAB_STACK = ["numpy", TORCH_SPEC, "matplotlib", "ipywidgets", "ipykernel", "nbconvert"]
CACHE = ROOT / ".cache" / "colab-venv"
KERNEL = "colab-sim"
BAD_ADDRESS = "file:///nonexistent/minigpt-book"
FAKE_COLAB = '''"""A stand-in for Colab's google.colab: the bootstrap cell only looks for it."""
'''


def log(message: str) -> None:
    print(f"[colab-sim] {message}", file=sys.stderr, flush=True)


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run([str(c) for c in cmd], **kwargs)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{error.stdout}{error.stderr}") \
            from error


def site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak into the simulated Colab."""
    drop = ("PYTHON", "PYTEST", "GIT_", "VIRTUAL_ENV", "JUPYTER", "IPYTHON", "MINIGPT_BOOK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def base_env() -> Path:
    """The cached environment with Colab's preinstalled stack (built on first use)."""
    key = hashlib.sha256(json.dumps(
        [COLAB_STACK, sys.version, os.path.realpath(sys._base_executable)]
    ).encode()).hexdigest()[:16]
    venv = CACHE / key
    with locked(CACHE / "lock"):
        if (venv / ".complete").exists():
            return venv
        for stale in CACHE.iterdir():  # earlier stacks
            if stale.is_dir():
                shutil.rmtree(stale)
        log(f"building the Colab stack in {venv.relative_to(ROOT)} (once): {COLAB_STACK}")
        start = time.perf_counter()
        run([sys.executable, "-m", "venv", venv], env=clean_env())  # on the base interpreter
        pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
        run([*pip, "--upgrade", "pip"], env=clean_env())
        run([*pip, *COLAB_STACK], env=clean_env())
        (venv / ".complete").write_text(json.dumps(COLAB_STACK) + "\n")
        log(f"built in {time.perf_counter() - start:.0f} s")
    return venv


def fresh_env(base: Path, dest: Path) -> Path:
    """An empty virtual environment that sees ``base``'s packages; its python."""
    run([sys.executable, "-m", "venv", "--without-pip", dest], env=clean_env())
    layer = f"import site; site.addsitedir({str(site_packages(base))!r})\n"
    (site_packages(dest) / "colab_preinstalled.pth").write_text(layer)
    return dest / "bin" / "python"


def snapshot_repo(dest: Path) -> tuple[str, str]:
    """A git repository holding this working tree, tagged as the release; (address, commit)."""
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"], env=clean_env()).stdout.split("\0")
    dest.mkdir(parents=True)
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-C", dest, "-c", "user.name=colab-sim", "-c", "user.email=sim@invalid",
           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
           "-c", "core.hooksPath=/dev/null"]
    env = clean_env()
    run([*git, "init", "--quiet"], env=env)
    run([*git, "add", "--all"], env=env)
    run([*git, "commit", "--quiet", "-m", "the release"], env=env)
    run([*git, "tag", colab_cell.release_tag()], env=env)
    commit = run([*git, "rev-parse", "HEAD"], env=env).stdout.strip()
    (dest / "after-the-release.txt").write_text("work after the release\n")
    run([*git, "add", "--all"], env=env)
    run([*git, "commit", "--quiet", "-m", "after the release"], env=env)
    return dest.as_uri(), commit


def prepare_notebook(chapter: str, dest: Path, *, clear: bool = False) -> Path:
    """A copy of ``chapters/<chapter>*.ipynb`` in ``dest`` with the current bootstrap cell."""
    (source,) = (ROOT / "chapters").glob(f"{chapter}*.ipynb")
    nb = json.loads(source.read_text())
    colab_cell.update(nb, source.stem)
    cell = colab_cell.first_code_cell(nb)
    cell["metadata"]["tags"] = [*cell["metadata"].get("tags", []), "nbval-ignore-output"]
    if clear:
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                c["outputs"], c["execution_count"] = [], None
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / source.name
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def colab_kernel(python: Path, dest: Path, repo: str) -> Path:
    """A kernelspec folder whose kernel is ``python`` with ``google.colab`` imported."""
    fake = dest / "fake-colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_COLAB)
    startup = dest / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # as on Colab\n")
    kernels = dest / "jupyter" / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (simulated Colab)",
        "language": "python",
        "env": {"PYTHONPATH": str(dest / "fake-colab"), "IPYTHONDIR": str(dest / "ipython"),
                "MINIGPT_BOOK_REPO": repo},
    }
    (kernels / KERNEL / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernels


@dataclass
class Sim:
    dest: Path
    python: Path  # the fresh environment's
    notebook: Path
    kernels: Path
    repo: str
    commit: str | None
    seconds: dict[str, float]


def setup(chapter: str, dest: Path, *, bad_address: bool = False) -> Sim:
    seconds = {}
    start = time.perf_counter()
    base = base_env()
    seconds["Colab stack (cached)"] = time.perf_counter() - start
    start = time.perf_counter()
    python = fresh_env(base, dest / "venv")
    if bad_address:
        repo, commit = BAD_ADDRESS, None
    else:
        repo, commit = snapshot_repo(dest / "minigpt-book")
    notebook = prepare_notebook(chapter, dest / "content", clear=bad_address)
    kernels = colab_kernel(python, dest, repo)
    seconds["fresh env, repository snapshot, notebook"] = time.perf_counter() - start
    return Sim(dest, python, notebook, kernels, repo, commit, seconds)


def run_nbval(sim: Sim, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the chapter under nbval in the simulated Colab, as tools/test.sh runs chapters."""
    start = time.perf_counter()
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", sim.notebook.parent, "--durations", "3", "--nbval", sim.notebook,
         "--nbval-kernel-name", KERNEL, "--nbval-cell-timeout", "300",
         "--nbval-sanitize-with", ROOT / "tools" / "nbval_sanitize.cfg"],
        cwd=sim.notebook.parent, env=clean_env(JUPYTER_PATH=str(sim.kernels.parent)),
        check=False, timeout=timeout,
    )
    sim.seconds["bootstrap cell + chapter under nbval"] = time.perf_counter() - start
    return result


def run_all(sim: Sim, timeout: int = 300) -> tuple[dict, BaseException | None]:
    """Colab's "Run all": cells in order, stopping at the first error; (notebook, error)."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(sim.notebook, as_version=4)
    km = KernelManager(kernel_name=KERNEL,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(sim.kernels)]))
    client = NotebookClient(nb, km=km, timeout=timeout,
                            resources={"metadata": {"path": str(sim.notebook.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute(env=clean_env())
    except CellExecutionError as raised:
        error = raised
    sim.seconds["Run all"] = time.perf_counter() - start
    return nb, error


def installed(sim: Sim) -> dict:
    """What the fresh environment holds of minigpt-book: version, origin, files."""
    dist, _ = colab_cell.project()
    code = (
        "import importlib.metadata as m, json, minigpt, pathlib\n"
        f"d = m.distribution({dist!r})\n"
        "root = pathlib.Path(minigpt.__file__).parent\n"
        "print(json.dumps({'version': d.version, 'file': minigpt.__file__,\n"
        "    'direct_url': json.loads(d.read_text('direct_url.json') or 'null'),\n"
        "    'files': sorted(str(p.relative_to(root)) for p in root.rglob('*')\n"
        "                    if p.is_file() and '__pycache__' not in p.parts)}))\n"
    )
    out = run([sim.python, "-c", code], cwd=sim.dest, env=clean_env()).stdout
    return json.loads(out)


def package_files() -> list[str]:
    """The files of minigpt/ that git tracks or would track (what an install must carry)."""
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard", "minigpt"], env=clean_env()).stdout.split("\0")
    return sorted(str(Path(n).relative_to("minigpt")) for n in listed
                  if n and (ROOT / n).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="01", help="notebook name prefix (default 01)")
    parser.add_argument("--bad-address", action="store_true",
                        help=f"point the cell at {BAD_ADDRESS}: it must raise")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    dest = Path(tempfile.mkdtemp(prefix="colab-sim-"))
    start = time.perf_counter()
    try:
        sim = setup(args.chapter, dest, bad_address=args.bad_address)
        if args.bad_address:
            nb, error = run_all(sim)
            ran = [i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and c.execution_count is not None]
            print(f"error: {type(error).__name__ if error else None}; cells run: {ran}")
            ok = error is not None and len(ran) == 1
        else:
            result = run_nbval(sim)
            print(result.stdout[-3000:] + result.stderr[-3000:])
            ok = result.returncode == 0
            if ok:
                print(json.dumps({k: v for k, v in installed(sim).items() if k != "files"}))
        for step, seconds in sim.seconds.items():
            print(f"{seconds:7.1f} s  {step}")
        print(f"{time.perf_counter() - start:7.1f} s  in all: {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {dest}")
        else:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
