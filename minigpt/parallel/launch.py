"""Starting the processes of a parallel run on one machine: :func:`spawn` and :func:`run_all`.

GPT-3 175B does not fit on one GPU: its weights, gradients and Adam states take 2.8 TB
(:func:`minigpt.scaling.model_state_bytes`). The paper says only that the models were trained
"using a mixture of model parallelism within each matrix multiply and model parallelism across
the layers of the network". minigpt writes out the three ways of splitting the work, small
enough to run on two CPU processes talking through ``torch.distributed`` (``gloo``; ``nccl`` on
GPUs), one module each:

1. :mod:`minigpt.parallel.tensor`: tensor parallelism (Megatron-LM) splits every matrix of a
   block over the ranks;
2. :mod:`minigpt.parallel.fsdp`: fully sharded data parallelism (ZeRO-3, PyTorch's FSDP) keeps a
   slice
   of every weight, gradient and optimizer state on each data-parallel rank;
3. :mod:`minigpt.parallel.pipeline`: pipeline parallelism (GPipe, 1F1B) gives consecutive layers to
   consecutive ranks.

:mod:`minigpt.parallel.layouts` adds the bytes each GPU sends per training step to
:func:`minigpt.scaling.memory_per_gpu`, for any mix of the three.

Everything that needs several processes runs under :func:`spawn`, which starts ``world_size``
processes on this machine, joins them into one process group and returns what each one
returned, or raises (with the failing rank's traceback, or after ``timeout`` seconds)::

    results = spawn(tensor_parallel_run, 2, args=(MLP(config), x, grad_out))

The functions that run inside ``spawn``
(:func:`~minigpt.parallel.tensor.tensor_parallel_run`, :func:`~minigpt.parallel.fsdp.fsdp_train`,
:func:`~minigpt.parallel.pipeline.pipeline_train`, :func:`run_all` to run several in one go) live in
modules rather than in a notebook, because the ranks are new processes that must import them by
name.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from minigpt.checks import check_int

__all__ = ["run_all", "spawn"]


PROCESS_GROUP_BACKENDS = ("gloo", "nccl")



#: Modules that the forkserver imports once, before it forks any rank: this one and those whose
#: functions run inside :func:`spawn` (imported by name, so no import cycle).
FORKSERVER_PRELOAD = (__name__, "minigpt.parallel.tensor", "minigpt.parallel.fsdp",
                      "minigpt.parallel.pipeline")


def _loopback_interface() -> str | None:
    """Name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), if any."""
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:  # pragma: no cover - platforms without if_nameindex
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


def _run_rank(
    fn: Callable[..., Any], rank: int, world_size: int, backend: str, port: int,
    timeout: float, args: tuple, results: Any,
) -> None:
    """Body of one spawned process: join the group, run ``fn``, report back, leave."""
    torch.set_num_threads(1)  # the ranks share this machine's cores
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ:
        # All ranks are on this machine: talk over the loopback interface, which works even in
        # containers whose host name does not resolve.
        loopback = _loopback_interface()
        if loopback is not None:
            os.environ["GLOO_SOCKET_IFNAME"] = loopback
    wait = timedelta(seconds=timeout)
    try:
        store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=wait)
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=wait)
        result = fn(rank, world_size, *args)
        # Plain pickle copies tensors by value; torch.multiprocessing's queue would share their
        # memory, which dies with this process.
        results.put((rank, True, pickle.dumps(result)))
    except BaseException:  # report everything, KeyboardInterrupt and SystemExit included
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(
    fn: Callable[..., Any],
    world_size: int = 2,
    *,
    args: Sequence[Any] = (),
    backend: str = "gloo",
    timeout: float = 120.0,
    start_method: str | None = None,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new processes on this machine.

    The processes form one ``torch.distributed`` process group (``backend="gloo"`` on CPU,
    ``"nccl"`` with one GPU per rank), meeting at a :class:`torch.distributed.TCPStore` that
    this process opens on a free port of ``127.0.0.1`` (the operating system picks the port, so
    parallel test workers never collide). Each rank uses one CPU thread.

    Args:
        fn: a function importable by name (defined in a module, not in a notebook or a
            ``__main__`` script): each rank is a new process that imports it.
        world_size: number of processes.
        args: extra positional arguments, pickled to every rank.
        backend: ``"gloo"`` or ``"nccl"``.
        timeout: seconds before everything is stopped and :class:`TimeoutError` raised; also
            the timeout of every collective inside the group.
        start_method: ``"forkserver"`` (the default where the platform has it: a server
            process imports PyTorch and minigpt's parallel modules once, and every rank is
            a quick fork of it) or ``"spawn"`` (a fresh interpreter per rank, which imports
            everything again).

    Returns:
        The value each rank returned, in rank order (it must be picklable; tensors are copied).

    Raises:
        RuntimeError: a rank raised (its traceback is in the message) or died; the other ranks
            are stopped at once rather than left waiting in a collective.
        TimeoutError: the ranks did not all finish within ``timeout`` seconds.
    """
    check_int("world_size", world_size)
    if backend not in PROCESS_GROUP_BACKENDS:
        raise ValueError(f"backend must be one of {PROCESS_GROUP_BACKENDS}, got {backend!r}")
    if backend == "gloo" and not dist.is_gloo_available():
        raise RuntimeError("this PyTorch build has no gloo backend")
    if backend == "nccl":
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not dist.is_nccl_available() or n_gpus < world_size:
            raise RuntimeError(f"backend 'nccl' needs {world_size} CUDA GPUs, one per rank; this "
                               f"machine has {n_gpus}. Use backend='gloo' to run on CPU.")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    methods = [m for m in ("forkserver", "spawn") if m in mp.get_all_start_methods()]
    start_method = methods[0] if start_method is None else start_method
    if start_method not in methods:
        raise ValueError(f"start_method must be one of {methods}, got {start_method!r}")
    name = getattr(fn, "__qualname__", repr(fn))
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":  # no effect once the server runs
        ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=timeout))
    results_queue = ctx.Queue()
    procs = [
        ctx.Process(target=_run_rank, daemon=True,
                    args=(fn, rank, world_size, backend, store.port, timeout, tuple(args),
                          results_queue))
        for rank in range(world_size)
    ]
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.start()
        while len(results) < world_size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"spawn: {name} did not finish within {timeout:g} s on {world_size} ranks "
                    f"(ranks done: {sorted(results)}); the processes were stopped"
                )
            try:
                rank, ok, payload = results_queue.get(timeout=min(left, 0.2))
            except queue_module.Empty:
                crashed = [r for r, p in enumerate(procs)
                           if r not in results and p.exitcode not in (None, 0)]
                if crashed:  # a rank died without reporting (segfault, killed, out of memory)
                    try:  # it may still have reported an error just before dying
                        rank, ok, payload = results_queue.get(timeout=1.0)
                    except queue_module.Empty:
                        r = crashed[0]
                        raise RuntimeError(f"spawn: rank {r} of {name} exited with code "
                                           f"{procs[r].exitcode} before returning") from None
                else:
                    continue
            if not ok:
                raise RuntimeError(f"spawn: rank {rank} of {name} failed:\n{payload}")
            results[rank] = pickle.loads(payload)
    finally:
        for p in procs:
            p.join(timeout=5.0 if len(results) == world_size else 0.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():  # pragma: no cover - terminate ignored
                p.kill()
                p.join()
        results_queue.close()
        del store
    return [results[rank] for rank in range(world_size)]


def run_all(
    rank: int, world_size: int, calls: Sequence[tuple[Callable[..., Any], Sequence[Any]]]
) -> list[Any]:
    """Run each ``fn(rank, world_size, *args)`` of ``calls`` in turn, in the same processes.

    Starting processes and importing PyTorch takes seconds, so
    ``spawn(run_all, 2, args=([(fsdp_train, (config, batches)), (pipeline_train, (...))],))``
    pays for it once. Returns the list of results.
    """
    return [fn(rank, world_size, *args) for fn, args in calls]
