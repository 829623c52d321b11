#!/usr/bin/env bash
# Run every test: lint, unit tests against reference libraries, minigpt's docstring examples,
# exercise graders (on the reference solutions, the stubs and known wrong answers), and every
# chapter notebook under strict nbval. tests/test_bootstrap.py also runs chapter 1's Colab path
# offline (tools/colab_sim.py), in Colab's preinstalled stack cached in .cache/colab-venv.
# Then, when a Chromium is installed (chromium, chromium-browser or $CHROMIUM), it builds the
# book and runs the browser test of the site, tools/browser_test.py (BROWSER_TEST=0 skips it;
# it is strict: the notebook checks (empty widgets, outputs wider than the column, NBVAL
# markers on the page) fail it too; BROWSER_TEST_STRICT=0 only reports them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

echo "== lint"
"$VENV/bin/ruff" check .
"$PY" tools/colab_cell.py --check
"$PY" -m exercises.generate --check

echo "== unit tests, graders and notebooks"
# The chapters' grading cells grade the reader's workspace copy when there is one; the tests
# must never see a student's work, so they get an empty workspace of their own.
MINIGPT_WORKSPACE=$(mktemp -d)
export MINIGPT_WORKSPACE
trap 'rm -rf "$MINIGPT_WORKSPACE"' EXIT
jobs=$("$PY" -c 'import os; print(min(4, os.cpu_count() or 1))')
"$PY" -m pytest tests minigpt chapters -n "$jobs" --dist loadfile --doctest-modules \
  --nbval --nbval-current-env --nbval-sanitize-with tools/nbval_sanitize.cfg \
  --nbval-cell-timeout 300 --durations 15 "$@"

echo "== browser test of the built site"
if [ "${BROWSER_TEST:-1}" = "0" ]; then
  echo "skipped (BROWSER_TEST=0)"
elif ! "$PY" -c 'import sys; sys.path.insert(0, "tools"); import browser_test as b
sys.exit(b.find_chromium() is None)'; then
  echo "skipped: no Chromium (apt-get install chromium, or set CHROMIUM=/path/to/chromium)"
else
  bash tools/build-book.sh
  strict=()
  if [ "${BROWSER_TEST_STRICT:-1}" != "0" ]; then strict=(--strict); fi
  "$PY" tools/browser_test.py "${strict[@]}"
fi
