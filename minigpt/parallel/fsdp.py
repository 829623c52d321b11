"""Fully sharded data parallelism (ZeRO-3, Rajbhandari et al. 2020; PyTorch's FSDP).

Each of ``d`` data-parallel ranks keeps a ``1/d`` slice of every weight, gradient and optimizer
state, and all-gathers a layer's weights just before using them (:func:`fsdp_train`, run by
:func:`~minigpt.parallel.launch.spawn`). :func:`single_process_train` is the single-process
reference that
it, and :func:`~minigpt.parallel.pipeline.pipeline_train`, must match, on the random batches of
:func:`demo_batches`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from minigpt.checks import check_int
from minigpt.config import GPTConfig, count_parameters
from minigpt.model import GPT, configure_optimizer
from minigpt.parallel._common import rank_device

__all__ = ["demo_batches", "fsdp_train", "single_process_train"]


def demo_batches(
    config: GPTConfig, n_steps: int = 3, batch_size: int = 4, seq_len: int = 16, seed: int = 0
) -> Tensor:
    """Random token ids ``(n_steps, batch_size, seq_len + 1)`` for the training demos.

    Row ``[:, :-1]`` of a batch is the input, ``[:, 1:]`` the target. The same ``seed`` gives
    the same batches in every process.

    >>> from minigpt.config import get_config
    >>> demo_batches(get_config("tiny"), 2, 4, 8).shape
    torch.Size([2, 4, 9])
    """
    for name, value in (("n_steps", n_steps), ("batch_size", batch_size), ("seq_len", seq_len)):
        check_int(name, value)
    if seq_len > config.n_ctx:
        raise ValueError(f"seq_len={seq_len} exceeds the model's context n_ctx={config.n_ctx}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (n_steps, batch_size, seq_len + 1), generator=gen)


def single_process_train(
    model: nn.Module, batches: Tensor, lr: float = 1e-3
) -> tuple[list[float], dict[str, Tensor]]:
    """The single-process reference: one AdamW step per batch of ``batches (S, B, T + 1)``.

    Uses GPT-3's optimizer (:func:`minigpt.model.configure_optimizer`). Returns the loss of
    every step and the gradients of the last step, by parameter name.
    """
    optimizer = configure_optimizer(model, lr)
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return losses, grads


def _local_bytes(t: Tensor) -> int:
    """Bytes of ``t`` held by this rank (a DTensor's local shard)."""
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def fsdp_train(
    rank: int, world_size: int, config: GPTConfig, batches: Tensor, lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``GPT(config)`` with FSDP2 (``torch.distributed.fsdp.fully_shard``), ZeRO-3.

    Run it by :func:`~minigpt.parallel.launch.spawn`. Every rank builds the model from the same
    ``seed``; each block, then the whole model, is sharded over the ``world_size`` ranks
    (dimension 0 of every parameter is cut into ``world_size`` pieces). Every step, each rank
    takes its ``B / world_size`` rows of the batch ``(B, T + 1)``; FSDP all-gathers each
    block's weights just before it runs (and frees them after), and reduce-scatters the
    gradients, averaged over the ranks, so that every rank updates its own shard with GPT-3's
    AdamW. The result equals :func:`single_process_train` on the whole batch, up to rounding.

    Returns ``{"losses", "n_params", "param_bytes", "grad_bytes", "optimizer_bytes",
    "step_bytes"}``: the loss of each step (averaged over ranks: the whole batch's loss), and
    the bytes of parameters, gradients and Adam moments that this rank holds after the last
    step, measured on the local shards, plus the optimizer's step counters (one scalar per
    parameter tensor, not in the ``8 bytes / parameter`` of the formula).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    batch_size = batches.shape[1]
    if batch_size % world_size:
        raise ValueError(f"the batch size {batch_size} must be divisible by the number of ranks "
                         f"{world_size}")
    device = rank_device()
    torch.manual_seed(seed)
    model = GPT(config).to(device)
    mesh = init_device_mesh(device.type, (world_size,))
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest: embeddings (tied to the output layer), ln_f
    optimizer = configure_optimizer(model, lr)
    rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
    losses = []
    for batch in batches:
        batch = batch[rows].to(device)
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(total.item() / world_size)
    params = list(model.parameters())
    moments = [s for state in optimizer.state.values() for k, s in state.items() if k != "step"]
    steps = [s for state in optimizer.state.values() for k, s in state.items() if k == "step"]
    return {
        "losses": losses,
        "n_params": count_parameters(config),
        "param_bytes": sum(_local_bytes(p) for p in params),
        "grad_bytes": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer_bytes": sum(_local_bytes(s) for s in moments),
        "step_bytes": sum(_local_bytes(s) for s in steps),
    }
