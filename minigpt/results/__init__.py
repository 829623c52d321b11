"""The stored results of the book's longer experiments, shipped inside the package.

Each JSON file here was written by a script in ``experiments/`` and keeps every parameter
needed to run it again; the chapters plot these files and re-run their smallest case live.
Shipping them in the package means a notebook finds them wherever minigpt is installed (on
Colab too) without a download.

============== ============================ =====================================
name           written by                   read by
============== ============================ =====================================
scaling_law    experiments/scaling_law.py   chapter 9 (:mod:`minigpt.sweep`)
icl_results    experiments/icl.py           chapter 10 (:mod:`minigpt.icl`)
after_gpt3     experiments/after_gpt3.py    chapter 11 (:mod:`minigpt.controlled`)
============== ============================ =====================================

>>> sorted(available())
['after_gpt3', 'icl_results', 'scaling_law']
>>> load("scaling_law")["parameters"]["command"]
'python experiments/scaling_law.py'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the stored result files (without ``.json``)."""
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def path(name: str) -> Path:
    """Where the result file ``name`` lives (it need not exist yet: scripts write it there)."""
    if not isinstance(name, str) or not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"name must be a bare result name such as 'scaling_law', got {name!r}")
    return FOLDER / f"{name}.json"


def save(document: dict[str, Any], file: str | os.PathLike[str]) -> Path:
    """Write an experiment's ``document`` to ``file`` as indented JSON (the folder is created
    if needed) and return the path; the experiments in ``experiments/`` end with this."""
    if not isinstance(document, dict):
        raise ValueError(f"document must be a dict, got {type(document).__name__}")
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(document, indent=1) + "\n")
    return file


def load(name: str) -> dict[str, Any]:
    """The stored result file ``name`` as a dictionary.

    Raises ``FileNotFoundError`` naming the files there are and the script that makes one.
    """
    file = path(name)
    if not file.exists():
        raise FileNotFoundError(
            f"no stored result {name!r}; available: {', '.join(available()) or 'none'} "
            f"(the scripts in experiments/ write them)")
    return json.loads(file.read_text())
