#!/usr/bin/env bash
# Build the book's website into _build/html, offline, from the notebooks' stored outputs.
# Any Sphinx warning fails the build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

"$PY" tools/colab_cell.py --check
rm -rf _build/html
"$VENV/bin/jupyter-book" build . --warningiserror --nitpick --keep-going
echo
echo "The book is built. Open: file://$ROOT/_build/html/index.html"
