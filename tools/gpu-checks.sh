#!/usr/bin/env bash
# The book's ONE prepared GPU command, for a machine with one CUDA GPU, PyTorch and no network:
#
#   bash tools/gpu-checks.sh              # about 8 minutes on an H100; give it a 9-minute limit
#   bash tools/gpu-checks.sh --dry-run    # the same code on a CPU with tiny shapes, in seconds
#
# It runs tools/gpu_run.py: the GPU-only tests, the attention benchmark (dense and banded, SDPA
# and FlexAttention), GPT-3 Small's throughput and MFU per attention backend with and without
# torch.compile, and the model sized to the book's corpus (data/shakespeare.txt.xz, in the
# repository), then writes everything to minigpt/lab/results/gpu_run.json, which chapter 12
# renders. The log and a copy of the results go to $OUT (default /tmp/gpu-checks).
#
# minigpt is used from this checkout (PYTHONPATH), with the machine's own python3 and packages
# (torch with CUDA, triton, numpy, regex, pytest, hypothesis, einops), so nothing is installed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"

# 510 s: the sections' own limits add up to about 7.8 minutes, plus start-up.
timeout 510 "$PY" tools/gpu_run.py "$@" 2>&1 | tee "$OUT/gpu_run.log"
status=${PIPESTATUS[0]}
if [[ " $* " != *" --dry-run "* && -f minigpt/lab/results/gpu_run.json ]]; then
  cp minigpt/lab/results/gpu_run.json "$OUT/"
fi
echo "== gpu_run: exit $status"
exit "$status"
