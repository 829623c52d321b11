#!/usr/bin/env bash
# Run every test: lint, unit tests against reference libraries, minigpt's docstring examples,
# exercise graders (on the reference solutions, the stubs and known wrong answers), and every
# chapter notebook under strict nbval. tests/test_bootstrap.py also runs chapter 1's Colab path
# offline (tools/colab_sim.py), in Colab's preinstalled stack cached in .cache/colab-venv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

echo "== lint"
"$VENV/bin/ruff" check .
"$PY" tools/colab_cell.py --check
"$PY" -m exercises.generate --check

echo "== unit tests, graders and notebooks"
jobs=$("$PY" -c 'import os; print(min(4, os.cpu_count() or 1))')
"$PY" -m pytest tests minigpt chapters -n "$jobs" --dist loadfile --doctest-modules \
  --nbval --nbval-current-env --nbval-sanitize-with tools/nbval_sanitize.cfg \
  --nbval-cell-timeout 300 --durations 15 "$@"
