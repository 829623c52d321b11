"""Peak memory and time of naive vs tiled (FlashAttention-style) attention as T doubles; on a
GPU also the throughput of naive, SDPA, tiled and the Triton kernel, and GPT-3's banded layers:
FlexAttention's block masks against SDPA with an explicit mask (and ``flash-attn``'s sliding
window where it is installed), forward and backward, at long contexts.

    python benchmarks/attention.py [--t-max 4096] [--heads 4] [--d-head 64] [--block 128]

The last line is machine readable: ``attention tiled_peak_mem_vs_naive=<ratio>``, the measured
peak extra memory of the tiled forward divided by the naive one's, at the largest CPU length
(lower is better; it shrinks like ``1/T``).

**How memory is measured on the CPU.**  PyTorch keeps no peak statistics for CPU memory, and
``tracemalloc`` does not see its allocations.  ``torch.profiler(profile_memory=True)`` attributes
allocations to operators but gives no peak without rebuilding the allocation timeline.  What is
used here is the operating system's own count: the resident set size (RSS) high-water mark.
Before each run the high-water mark is reset to the current RSS (writing ``5`` to
``/proc/self/clear_refs``, Linux), and after it ``VmHWM - VmRSS_before`` from
``/proc/self/status`` is the peak extra memory of the run.  For that to track tensors exactly,
the benchmark re-executes itself with glibc told to serve every allocation of 64 KiB or more by
its own ``mmap`` and to give freed memory back at once (``MALLOC_MMAP_THRESHOLD_=65536``,
``MALLOC_TRIM_THRESHOLD_=0``); otherwise freed heap memory is reused without showing up in the
RSS, and small runs read as zero.  Alongside, the size of the largest intermediate tensor is
computed analytically: ``4 B H T^2`` bytes (float32 scores) for naive attention, which holds
two such matrices at its peak (the scores and the softmax weights, plus boolean masks), and
``4 B H b^2`` for one ``b x b`` tile of the tiled version, whose output and row statistics add
``O(B H T D)``.
On a GPU, ``torch.cuda.max_memory_allocated`` gives the peak directly.

Times are CPU time (``time.process_time``) on one thread, fastest of ``--repeats`` runs.  On a
CPU the two take about the same time: the tiled loop pays Python overhead per tile but skips the
tiles above the causal diagonal and keeps its tiles in cache.  FlashAttention's real speed-up
comes from keeping tiles in the on-chip memory of a GPU, which the Triton kernel does.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from functools import partial

import torch

from minigpt.attention import attention, naive_attention
from minigpt.attention import flex as flex_module
from minigpt.attention.flash import flash_attention
from minigpt.attention.flash_triton import is_available as triton_available

#: glibc settings read at process start; see the module docstring.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
              "MALLOC_TOP_PAD_": "0"}
MiB = 2**20


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    assert match, key
    return int(match.group(1)) * 1024


def rss_peak_supported() -> bool:
    """Whether the RSS high-water mark can be reset (Linux >= 4.0, writable clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmHWM") - _status_bytes("VmRSS") < MiB
    except OSError:
        return False


def peak_extra_rss(fn: Callable[[], object]) -> int:
    """Peak resident memory above the starting point while ``fn()`` runs, in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current VmRSS
    before = _status_bytes("VmRSS")
    result = fn()
    peak = _status_bytes("VmHWM") - before
    del result
    return peak


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def cpu_section(args: argparse.Namespace) -> float | None:
    """Naive vs tiled on the CPU; returns the tiled/naive peak-memory ratio at the largest T."""
    torch.set_num_threads(1)
    b, h, d, block = 1, args.heads, args.d_head, args.block
    measure = rss_peak_supported()
    print(f"CPU, float32, causal, B={b} H={h} D={d}, tiles {block}x{block}, one thread")
    print("peak = measured extra RSS of the forward; largest = analytic largest intermediate")
    print(f"{'T':>6} {'naive peak':>11} {'tiled peak':>11} {'ratio':>7} {'naive largest':>14} "
          f"{'tiled largest':>14} {'naive s':>8} {'tiled s':>8} {'max |diff|':>10}")
    ratio = None
    t = args.t_min
    while t <= args.t_max:
        g = torch.Generator().manual_seed(t)
        q, k, v = torch.randn(3, b, h, t, d, generator=g)

        naive = partial(naive_attention, q, k, v, causal=True)
        tiled = partial(flash_attention, q, k, v, causal=True, block_q=block, block_k=block)
        diff = (naive() - tiled()).abs().max().item()  # also warms up both paths
        peaks = [peak_extra_rss(fn) if measure else float("nan") for fn in (naive, tiled)]
        times = [cpu_time(fn, args.repeats) for fn in (naive, tiled)]
        ratio = peaks[1] / peaks[0] if measure else None
        largest = (4 * b * h * t * t, 4 * b * h * min(block, t) ** 2)
        print(f"{t:>6} {peaks[0] / MiB:>8.1f}MiB {peaks[1] / MiB:>8.2f}MiB "
              f"{(ratio or float('nan')):>7.4f} {largest[0] / MiB:>11.1f}MiB "
              f"{largest[1] / MiB:>11.2f}MiB {times[0]:>8.3f} {times[1]:>8.3f} {diff:>10.2e}")
        t *= 2
    if not measure:
        print("(RSS peaks unavailable here: /proc/self/clear_refs is not writable)")
    return ratio


def gpu_section(args: argparse.Namespace) -> None:
    """Peak memory and throughput of naive, SDPA, tiled and Triton attention on the GPU."""
    dtype = torch.float16
    b, h, d = args.gpu_batch, args.gpu_heads, args.d_head
    backends = ["naive", "sdpa", "tiled"] + (["triton"] if triton_available() else [])
    print(f"\nGPU {torch.cuda.get_device_name()}, float16, causal, B={b} H={h} D={d}; "
          "forward only; TFLOP/s counts the causal half: 2 B H T^2 D")
    print(f"{'T':>6} " + " ".join(f"{n + ' ms':>10} {n + ' TF/s':>11} {n + ' MiB':>10}"
                                  for n in backends))
    t = 1024
    while t <= args.gpu_t_max:
        q, k, v = torch.randn(3, b, h, t, d, device="cuda", dtype=dtype)
        cells = []
        for name in backends:
            if name == "tiled" and t > 8192:  # thousands of small launches: too slow to matter
                cells.append(f"{'-':>10} {'-':>11} {'-':>10}")
                continue
            try:
                ms, peak = _gpu_run(partial(attention, q, k, v, causal=True, backend=name))
                tflops = 2 * b * h * t * t * d / (ms * 1e-3) / 1e12
                cells.append(f"{ms:>10.3f} {tflops:>11.1f} {peak / MiB:>10.1f}")
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                cells.append(f"{'OOM':>10} {'-':>11} {'-':>10}")
        print(f"{t:>6} " + " ".join(cells))
        del q, k, v
        t *= 2


def banded_variants(device: str) -> list[tuple[str, str, bool]]:
    """``(label, backend, banded)`` of the dense/banded comparison on ``device``."""
    rows = [("sdpa dense", "sdpa", False), ("flex dense", "flex", False),
            ("sdpa + band mask", "sdpa-mask", True), ("flex band", "flex", True)]
    if device == "cuda" and flex_module.flash_attn_window_available():
        rows.append(("flash-attn window", "sdpa", True))
    return rows


def banded_rows(t_values: list[int], *, device: str = "cuda", batch: int = 1, heads: int = 12,
                d_head: int = 64, window: int = 256, dtype: torch.dtype = torch.bfloat16,
                backward: bool = True, repeats: int = 5) -> list[dict[str, object]]:
    """Milliseconds (forward, plus backward if ``backward``) and peak extra memory (MiB, CUDA
    only) of dense causal and banded attention by SDPA and FlexAttention, per ``T``.

    One dict per (``T``, variant): ``t``, ``variant``, ``ms``, ``mib`` (``None`` on a CPU),
    ``tflops`` (the FLOPs the pattern needs, ``4 B H D`` per attended pair, times 3 with the
    backward pass), and ``error`` when a variant ran out of memory. On a CPU (the tools'
    dry run) FlexAttention runs eagerly and forward only: the figures are not speeds.
    """
    cuda = device == "cuda"
    rows: list[dict[str, object]] = []
    for t in t_values:
        g = torch.Generator(device=device).manual_seed(t)
        q, k, v = (torch.randn(batch, heads, t, d_head, device=device, dtype=dtype,
                               generator=g).requires_grad_(backward and cuda) for _ in range(3))
        for label, backend, banded in banded_variants(device):
            w = min(window, t)
            pairs = t * w - w * (w - 1) / 2 if banded else t * (t + 1) / 2
            if backend == "sdpa-mask":
                from minigpt.attention.sparse import local_mask
                mask = local_mask(t, window=w, device=device)
                fn = partial(attention, q, k, v, mask=mask, backend="sdpa")
            else:
                fn = partial(attention, q, k, v, causal=True, window=w if banded else None,
                             backend=backend)
            if backward and cuda:
                fn = partial(_forward_backward, fn)
            try:
                if cuda:
                    ms, peak = _gpu_run(fn, repeats)
                    mib = peak / MiB
                else:
                    with torch.no_grad():
                        fn()
                        start = time.perf_counter()
                        fn()
                        ms, mib = (time.perf_counter() - start) * 1e3, None
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                rows.append({"t": t, "variant": label, "ms": None, "mib": None, "tflops": None,
                             "error": "out of memory"})
                continue
            flops = 4 * batch * heads * d_head * pairs * (3 if backward and cuda else 1)
            rows.append({"t": t, "variant": label, "ms": ms, "mib": mib,
                         "tflops": flops / (ms * 1e-3) / 1e12})
        del q, k, v
    return rows


def _forward_backward(fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    out = fn()
    out.backward(torch.ones_like(out))
    return out


def banded_section(args: argparse.Namespace) -> None:
    """Print :func:`banded_rows` at ``T = 2048 .. --gpu-t-max`` on the GPU, in bf16."""
    t_values, t = [], 2048
    while t <= args.gpu_t_max:
        t_values.append(t)
        t *= 2
    print(f"\nGPT-3's banded layers: B=1 H=12 D=64 bf16, band {args.window}, forward + "
          "backward; TFLOP/s counts only the pairs each pattern attends")
    print(f"{'T':>6} {'variant':<18} {'ms':>9} {'TFLOP/s':>8} {'MiB':>9}")
    for row in banded_rows(t_values, window=args.window):
        if row.get("error"):
            print(f"{row['t']:>6} {row['variant']:<18} {row['error']}")
            continue
        print(f"{row['t']:>6} {row['variant']:<18} {row['ms']:>9.3f} {row['tflops']:>8.1f} "
              f"{row['mib']:>9.1f}")


def _gpu_run(fn: Callable[[], object], repeats: int = 10) -> tuple[float, int]:
    """Median milliseconds per call and peak extra allocated bytes of ``fn`` on the GPU."""
    fn()  # compile / warm up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--t-min", type=int, default=256)
    parser.add_argument("--t-max", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-batch", type=int, default=4)
    parser.add_argument("--gpu-heads", type=int, default=16)
    parser.add_argument("--gpu-t-max", type=int, default=16384)
    parser.add_argument("--window", type=int, default=256, help="band of the banded layers")
    args = parser.parse_args()
    if any(os.environ.get(key) != value for key, value in MALLOC_ENV.items()):
        # Start again with the allocator settings (read at process start); same arguments.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    ratio = cpu_section(args)
    if torch.cuda.is_available():
        gpu_section(args)
        banded_section(args)
    else:
        print("\n(no CUDA GPU: the naive / SDPA / Triton throughput table and the banded "
              "FlexAttention table are skipped)")
    print(f"attention tiled_peak_mem_vs_naive={ratio:.4f}" if ratio is not None
          else "attention tiled_peak_mem_vs_naive=nan")


if __name__ == "__main__":
    main()
