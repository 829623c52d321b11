"""Pipeline parallelism (GPipe, Huang et al. 2019; 1F1B, Narayanan et al. 2021).

Consecutive layers go to consecutive ranks (:func:`split_layers`, :class:`GPTStage`), and ``m``
micro-batches stream through them; the ranks idle for a fraction ``(p - 1) / (m + p - 1)`` of
the step, the *bubble* (:func:`bubble_fraction`). :func:`pipeline_schedule` simulates when each
stage runs what, and :func:`pipeline_train` runs the real thing with
``torch.distributed.pipelining``, under :func:`~minigpt.parallel.launch.spawn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.checks import check_int
from minigpt.config import GPTConfig
from minigpt.model import GPT, configure_optimizer
from minigpt.parallel._common import check_rank, rank_device, to_cpu

__all__ = [
    "GPTStage",
    "PipelineOp",
    "bubble_fraction",
    "idle_fraction",
    "peak_in_flight",
    "pipeline_schedule",
    "pipeline_train",
    "schedule_grid",
    "split_layers",
]


def bubble_fraction(n_stages: int, n_microbatches: int) -> float:
    """Fraction of a pipeline step that each stage idles: ``(p - 1) / (m + p - 1)``.

    ``p`` stages and ``m`` micro-batches, every stage as fast as the others: the last stage
    starts ``p - 1`` forward slots late, the first stage ends ``p - 1`` backward slots early.
    GPipe and 1F1B have the same bubble; 1F1B keeps fewer micro-batches in flight.

    Raises ``ValueError`` if ``n_stages`` or ``n_microbatches`` is not a positive int.

    >>> bubble_fraction(4, 1), bubble_fraction(4, 8), bubble_fraction(1, 8)
    (0.75, 0.2727272727272727, 0.0)
    """
    check_int("n_stages", n_stages)
    check_int("n_microbatches", n_microbatches)
    return (n_stages - 1) / (n_microbatches + n_stages - 1)


class PipelineOp(NamedTuple):
    """One forward (``"F"``) or backward (``"B"``) of a micro-batch on a stage, in time slots."""

    stage: int
    microbatch: int
    kind: str
    start: int
    end: int


SCHEDULES = ("gpipe", "1f1b")


def _stage_order(stage: int, n_stages: int, m: int, kind: str) -> list[tuple[str, int]]:
    """The order in which one stage runs its forwards and backwards."""
    if kind == "gpipe":  # all forwards, then all backwards
        return [("F", j) for j in range(m)] + [("B", j) for j in range(m)]
    warmup = min(n_stages - 1 - stage, m)  # 1F1B (PipeDream-Flush)
    order = [("F", j) for j in range(warmup)]
    for j in range(m - warmup):  # steady state: one forward, one backward
        order += [("F", warmup + j), ("B", j)]
    return order + [("B", j) for j in range(m - warmup, m)]


def pipeline_schedule(
    n_stages: int, n_microbatches: int, kind: str = "gpipe", backward_time: int = 1
) -> list[PipelineOp]:
    """Simulate one training step of a pipeline: when each stage runs what.

    Each stage runs its operations in a fixed order (GPipe: every forward, then every
    backward; 1F1B: ``p - 1 - s`` forwards to fill the pipe, then one forward and one
    backward in turn, then the remaining backwards), each as soon as its inputs exist: the
    forward of micro-batch ``j`` on stage ``s`` needs its forward on stage ``s - 1``, the
    backward needs the forward on ``s`` and the backward on ``s + 1``. A forward takes one time
    slot, a backward ``backward_time`` slots (about 2 in reality). This is a simulation in
    time slots, not a measurement; :func:`pipeline_train` runs the real thing.

    Returns the operations sorted by start time, then stage.

    >>> ops = pipeline_schedule(2, 3)
    >>> [f"{op.kind}{op.microbatch}@{op.stage}" for op in ops if op.start == 4]
    ['B0@1']
    >>> max(op.end for op in ops), idle_fraction(ops) == bubble_fraction(2, 3)
    (8, True)
    """
    check_int("n_stages", n_stages)
    check_int("n_microbatches", n_microbatches)
    check_int("backward_time", backward_time)
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    p, m = n_stages, n_microbatches
    orders = [_stage_order(s, p, m, kind) for s in range(p)]
    done: dict[tuple[str, int, int], int] = {}  # (kind, stage, microbatch) -> end time
    next_op, free = [0] * p, [0] * p
    ops = []
    while len(ops) < 2 * p * m:
        progress = False
        for s in range(p):
            if next_op[s] == len(orders[s]):
                continue
            op_kind, j = orders[s][next_op[s]]
            if op_kind == "F":
                deps = [("F", s - 1, j)] if s > 0 else []
            else:
                deps = [("F", s, j)] + ([("B", s + 1, j)] if s < p - 1 else [])
            if any(d not in done for d in deps):
                continue
            start = max([free[s]] + [done[d] for d in deps])
            end = start + (1 if op_kind == "F" else backward_time)
            done[(op_kind, s, j)] = free[s] = end
            ops.append(PipelineOp(s, j, op_kind, start, end))
            next_op[s] += 1
            progress = True
        if not progress:  # pragma: no cover - both orders are deadlock-free
            raise RuntimeError("the pipeline schedule deadlocked")
    return sorted(ops, key=lambda op: (op.start, op.stage))


def idle_fraction(ops: Sequence[PipelineOp]) -> float:
    """Measured bubble of a schedule: idle slots / (stages x total time).

    >>> idle_fraction(pipeline_schedule(4, 8, "1f1b", backward_time=2)) == bubble_fraction(4, 8)
    True
    """
    n_stages = 1 + max(op.stage for op in ops)
    makespan = max(op.end for op in ops)
    busy = sum(op.end - op.start for op in ops)
    return 1 - busy / (n_stages * makespan)


def peak_in_flight(ops: Sequence[PipelineOp]) -> list[int]:
    """Per stage, the most micro-batches whose activations are kept at once (forward done,
    backward not yet): the pipeline's activation memory, in micro-batches.

    >>> peak_in_flight(pipeline_schedule(4, 8, "gpipe")), peak_in_flight(
    ...     pipeline_schedule(4, 8, "1f1b"))
    ([8, 8, 8, 8], [4, 3, 2, 1])
    """
    n_stages = 1 + max(op.stage for op in ops)
    peaks = []
    for s in range(n_stages):
        held = best = 0
        for op in sorted((op for op in ops if op.stage == s), key=lambda op: op.start):
            held += 1 if op.kind == "F" else -1
            best = max(best, held)
        peaks.append(best)
    return peaks


def schedule_grid(ops: Sequence[PipelineOp]) -> list[list[str]]:
    """The schedule as a table: row ``s`` (stage), column ``t`` (time slot), ``"F3"``, ``"B3"``
    or ``""`` (idle). A backward of ``k`` slots fills ``k`` cells.

    >>> for row in schedule_grid(pipeline_schedule(2, 2)):
    ...     print(" ".join(cell or ".." for cell in row))
    F0 F1 .. .. B0 B1
    .. F0 F1 B0 B1 ..
    """
    n_stages = 1 + max(op.stage for op in ops)
    grid = [[""] * max(op.end for op in ops) for _ in range(n_stages)]
    for op in ops:
        for t in range(op.start, op.end):
            grid[op.stage][t] = f"{op.kind}{op.microbatch}"
    return grid


def split_layers(n_layer: int, n_stages: int) -> list[range]:
    """Blocks of each pipeline stage: ``n_layer`` split into ``n_stages`` nearly equal runs.

    >>> split_layers(5, 2)
    [range(0, 3), range(3, 5)]
    """
    check_int("n_layer", n_layer)
    check_int("n_stages", n_stages)
    if n_stages > n_layer:
        raise ValueError(f"cannot split {n_layer} blocks over {n_stages} stages: every stage "
                         f"needs at least one block (allowed: n_stages <= {n_layer})")
    bounds = [round(i * n_layer / n_stages + 1e-9) for i in range(n_stages + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class GPTStage(nn.Module):
    """Stage ``stage`` of ``n_stages`` of a :class:`~minigpt.model.GPT`, sharing its modules.

    The first stage embeds ``idx (B, T) -> (B, T, d_model)``, every stage runs its blocks
    (:func:`split_layers`), and the last applies ``ln_f`` and ``lm_head`` ``-> (B, T, V)``.
    Tied embeddings would put one matrix on two stages, so they are refused (Megatron keeps a
    copy on the last stage and all-reduces the two gradients).
    """

    def __init__(self, model: GPT, stage: int, n_stages: int) -> None:
        super().__init__()
        check_rank(stage, n_stages)
        if n_stages > 1 and model.config.tie_embeddings:
            raise ValueError("pipeline stages need tie_embeddings=False: the token embedding "
                             "(first stage) and the output layer (last stage) would share a "
                             "matrix across processes")
        self.first, self.last = stage == 0, stage == n_stages - 1
        layers = split_layers(model.config.n_layer, n_stages)[stage]
        tr = model.transformer
        if self.first:
            self.wte, self.drop = tr.wte, tr.drop
            self.wpe = tr.wpe if "wpe" in tr else None
        self.blocks = nn.ModuleList(tr.h[i] for i in layers)
        if self.last:
            self.ln_f, self.lm_head = tr.ln_f, model.lm_head

    def forward(self, x: Tensor) -> Tensor:
        """``idx (B, T)`` or ``(B, T, d)`` in; ``(B, T, d)`` or logits ``(B, T, V)`` out."""
        if self.first:
            idx = x
            x = self.wte(idx)
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        if self.last:
            x = self.lm_head(self.ln_f(x))
        return x


def _lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)``."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def pipeline_train(
    rank: int, world_size: int, config: GPTConfig, batches: Tensor, n_microbatches: int = 2,
    schedule: str = "gpipe", lr: float = 1e-3, seed: int = 0,
) -> dict[str, Any]:
    """Train ``GPT(config)`` split into ``world_size`` pipeline stages, one per rank.

    Run it by :func:`~minigpt.parallel.launch.spawn`. Uses PyTorch's own pipelining
    (``torch.distributed.pipelining``: ``PipelineStage`` and ``ScheduleGPipe`` or
    ``Schedule1F1B``), which sends activations forward and gradients backward between
    neighbouring ranks. Each batch ``(B, T + 1)`` is cut into ``n_microbatches`` micro-batches;
    the micro-batch losses are averaged and the gradients scaled to match, so the result equals
    :func:`~minigpt.parallel.fsdp.single_process_train` on the whole batch. ``config`` needs
    ``tie_embeddings=False`` (see :class:`GPTStage`).

    Returns ``{"losses", "grads"}``: the loss of each step (on the last stage; ``None``
    elsewhere) and this stage's gradients of the last step under the full model's names.
    """
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if batches.shape[1] % n_microbatches:
        raise ValueError(f"the batch size {batches.shape[1]} must be divisible by "
                         f"n_microbatches={n_microbatches}")
    device = rank_device()
    torch.manual_seed(seed)
    model = GPT(config)
    stage_module = GPTStage(model, rank, world_size).to(device)
    stage = PipelineStage(stage_module, rank, world_size, device)
    schedule_cls = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
    runner = schedule_cls(stage, n_microbatches, loss_fn=_lm_loss)
    optimizer = configure_optimizer(stage_module, lr)
    losses = []
    for batch in batches:
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        args = (batch[:, :-1],) if stage_module.first else ()
        if stage_module.last:
            micro_losses: list[Tensor] = []
            runner.step(*args, target=batch[:, 1:], losses=micro_losses)
            losses.append(torch.stack(micro_losses).mean().item())
        else:
            runner.step(*args)
        optimizer.step()
    names = {id(p): name for name, p in model.named_parameters()}
    grads = {names[id(p)]: p.grad for p in stage_module.parameters()}
    return to_cpu({"losses": losses if stage_module.last else None, "grads": grads})
