"""Timing helpers shared by the benchmarks: the fastest of several interleaved runs.

The benchmarks are scripts (``python benchmarks/bpe.py``), so their own folder is on
``sys.path`` and they import this module as ``timing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Timing:
    """Fastest wall-clock and CPU time (seconds) over several runs of one function.

    CPU time (``time.process_time``, all threads of this process) is what the ratios use:
    every contender runs single-threaded, so on an idle machine it equals wall time, and on
    a busy one it is not inflated by other processes. Wall time is shown alongside.
    """

    def __init__(self) -> None:
        self.wall = self.cpu = float("inf")

    def run(self, fn: Callable[[], object]) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        self.cpu = min(self.cpu, time.process_time() - cpu)
        self.wall = min(self.wall, time.perf_counter() - wall)
        return result


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict, dict]:
    """Run each function ``repeats`` times, interleaved (so that all see the same machine
    load); return each one's :class:`Timing` and last result."""
    timings = {name: Timing() for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name] = timings[name].run(fn)
    return timings, results
