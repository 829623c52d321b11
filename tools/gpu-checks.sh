#!/usr/bin/env bash
# The book's GPU checks in one run, for a machine with one CUDA GPU and PyTorch installed (CI
# never runs this: it has no GPU). It runs the GPU-only tests (the compiled Triton
# FlashAttention kernel in half precision, mixed-precision training, torch.compile), then the
# two GPU benchmarks whose figures the attention and GPU-training issues ask for:
#
#   bash tools/gpu-checks.sh            # writes its logs to $OUT (default /tmp/gpu-checks)
#
# minigpt is used from this checkout (PYTHONPATH), with the machine's own python3 and packages
# (torch with CUDA, triton, pytest, hypothesis, einops, regex), so nothing is installed. Each
# step has a time limit; the whole script stays under about 9 minutes on an H100.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MINIGPT_SLOW_TESTS=1  # torch.compile tests too: quick on a GPU machine's many cores
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.txt, report the exit status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}

step device 60 "$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton",
triton.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name()
if torch.cuda.is_available() else "")'
step tests 240 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_flash.py tests/test_gpu.py
step attention 120 "$PY" benchmarks/attention.py
step gpu_train 300 "$PY" benchmarks/gpu_train.py
echo "== last lines"
tail -n 1 "$OUT/attention.txt" "$OUT/gpu_train.txt"
