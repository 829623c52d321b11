"""Helpers shared by the parallel modules: rank checks, the rank's device, results to the CPU.

Internal to :mod:`minigpt.parallel`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from minigpt.checks import check_int

__all__ = ["check_rank", "rank_device", "to_cpu"]


def check_rank(rank: int, world_size: int) -> None:
    check_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")


def rank_device() -> torch.device:
    """The device of this rank: its GPU under NCCL, else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor detached and moved to the CPU (to return it from a rank)."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value
