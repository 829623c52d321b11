#!/usr/bin/env bash
# Build the book's website into _build/html, offline, from the notebooks' stored outputs.
# Any Sphinx warning fails the build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

"$PY" tools/colab_cell.py --check
if [[ "${STUDENT_EDITION:-0}" == 1 ]]; then
  # The student edition: no solutions (exercises/edition.py), built into _build/student.
  "$PY" -m exercises.edition "$ROOT" "$ROOT/_build/student-src"
  rm -rf _build/student
  "$VENV/bin/jupyter-book" build _build/student-src --path-output _build/student \
    --warningiserror --nitpick --keep-going
  echo
  echo "The student edition is built. Open: file://$ROOT/_build/student/_build/html/index.html"
  exit 0
fi
rm -rf _build/html
"$VENV/bin/jupyter-book" build . --warningiserror --nitpick --keep-going
echo
echo "The book is built. Open: file://$ROOT/_build/html/index.html"
