"""Graders for chapter 12 (training on GPUs: weight shards, MFU, the pipeline bubble).

Each grader checks known cases, then compares the student's function with minigpt's, and
raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch

from exercises.catalog import Exercise
from exercises.graders.common import close, expect_value_error
from minigpt.gpu import mfu
from minigpt.parallel.pipeline import bubble_fraction
from minigpt.parallel.tensor import shard_tensor

_HERE = "exercises.graders.ch12_gpu_training"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "from collections.abc import Sequence",
    "",
    "import torch",
    "from torch import Tensor",
)

EXERCISES = (
    Exercise(
        "12.1",
        "shard_tensor",
        "minigpt.parallel.tensor:shard_tensor",
        f"{_HERE}:grade_shard_tensor",
        "One rank's slice of a weight, block by block for fused projections.",
    ),
    Exercise(
        "12.2",
        "mfu",
        "minigpt.gpu:mfu",
        f"{_HERE}:grade_mfu",
        "Model FLOPs utilization: the model's FLOP/s over the hardware's peak.",
    ),
    Exercise(
        "12.3",
        "bubble_fraction",
        "minigpt.parallel.pipeline:bubble_fraction",
        f"{_HERE}:grade_bubble_fraction",
        "The fraction of a pipeline step that each stage idles.",
    ),
)


def grade_shard_tensor(fn: Callable[..., Any]) -> None:
    got = fn(torch.arange(8), 0, 1, 2)
    assert isinstance(got, torch.Tensor) and got.tolist() == [4, 5, 6, 7], (
        f"arange(8), rank 1 of 2: want [4, 5, 6, 7], got {got}")
    got = fn(torch.arange(8), 0, 1, 2, (4, 2, 2))
    assert got.tolist() == [2, 3, 5, 7], (
        f"arange(8) made of blocks (4, 2, 2), rank 1 of 2: want the second half of every block, "
        f"[2, 3, 5, 7], got {got.tolist()}")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(12, 6, generator=gen)
    for dim, world, splits in [(0, 2, None), (0, 3, None), (1, 2, None), (1, 3, (3, 3)),
                               (0, 2, (4, 4, 4)), (0, 4, (4, 4, 4)), (-1, 2, None)]:
        shards = [fn(w, dim, rank, world, splits) for rank in range(world)]
        for rank, shard in enumerate(shards):
            want = shard_tensor(w, dim, rank, world, splits)
            assert shard.shape == want.shape and torch.equal(shard, want), (
                f"weight (12, 6), dim={dim}, rank {rank} of {world}, splits={splits}: wrong "
                "slice (cut each block into world_size equal parts and keep part `rank`)")
    # The q|k|v layout of a fused attention projection: each rank gets whole heads of each.
    qkv = torch.cat([torch.full((4, 2), v) for v in (1.0, 2.0, 3.0)])
    got = fn(qkv, 0, 0, 2, (4, 4, 4))
    assert got[:, 0].tolist() == [1, 1, 2, 2, 3, 3], (
        "a fused q|k|v weight must give each rank a part of q, of k and of v")
    expect_value_error(lambda: fn(torch.arange(9), 0, 0, 2), "9 rows over 2 ranks")
    expect_value_error(lambda: fn(torch.arange(8), 0, 2, 2), "rank 2 of world size 2")
    expect_value_error(lambda: fn(torch.arange(8), 0, 0, 2, (4, 2)), "splits adding up to 6 of 8")


def grade_mfu(fn: Callable[..., Any]) -> None:
    close(fn(500e3, 624e6, 989e12), 500e3 * 624e6 / 989e12,
          "GPT-3 Small at 500k tokens/s on an H100 (989 TFLOP/s)")
    close(fn(0.0, 624e6, 989e12), 0.0, "no tokens, no utilization")
    for rate, flops, peak in itertools.product((1e3, 3.7e5), (6e6, 2.5e9), (65e12, 312e12)):
        close(fn(rate, flops, peak), mfu(rate, flops, peak),
              f"tokens_per_s={rate}, flops_per_token={flops}, peak={peak}")
    expect_value_error(lambda: fn(1e5, 6e8, None), "peak=None (a CPU has no known peak)")
    expect_value_error(lambda: fn(1e5, 6e8, 0.0), "peak=0")
    expect_value_error(lambda: fn(-1.0, 6e8, 1e12), "a negative rate")


def grade_bubble_fraction(fn: Callable[..., Any]) -> None:
    for (p, m), want in [((4, 1), 0.75), ((4, 8), 3 / 11), ((1, 8), 0.0), ((8, 64), 7 / 71)]:
        close(fn(p, m), want, f"p={p} stages, m={m} micro-batches: (p - 1) / (m + p - 1)")
    for p, m in itertools.product(range(1, 9), range(1, 40, 3)):
        close(fn(p, m), bubble_fraction(p, m), f"p={p}, m={m}")
    expect_value_error(lambda: fn(0, 4), "zero stages")
    expect_value_error(lambda: fn(4, 0), "zero micro-batches")
    expect_value_error(lambda: fn(2.5, 4), "a fractional number of stages")


# Plausible wrong answers: CI checks that each grader rejects them.
def _shard_ignores_splits(t, dim, rank, world_size, splits=None):  # noqa: ANN001, ANN202
    return shard_tensor(t, dim, rank, world_size)


def _shard_strided(t, dim, rank, world_size, splits=None):  # noqa: ANN001, ANN202
    """Takes every world_size-th row instead of a contiguous slice."""
    shard_tensor(t, dim, rank, world_size, splits)  # same checks
    index = torch.arange(rank, t.shape[dim], world_size)
    return t.index_select(dim, index)


def _shard_no_checks(t, dim, rank, world_size, splits=None):  # noqa: ANN001, ANN202
    step = t.shape[dim] // world_size
    return t.narrow(dim, min(rank * step, t.shape[dim] - step), step)


def _mfu_no_check(tokens_per_s, flops_per_token, peak):  # noqa: ANN001, ANN202
    return tokens_per_s * flops_per_token / (peak or 1.0)


def _mfu_percent(tokens_per_s, flops_per_token, peak):  # noqa: ANN001, ANN202
    return 100 * mfu(tokens_per_s, flops_per_token, peak)


def _mfu_times_six(tokens_per_s, flops_per_token, peak):  # noqa: ANN001, ANN202
    """Multiplies by 6 again although flops_per_token already counts training."""
    return 6 * mfu(tokens_per_s, flops_per_token, peak)


def _bubble_gpipe_paper(n_stages, n_microbatches):  # noqa: ANN001, ANN202 - (p-1)/m
    bubble_fraction(n_stages, n_microbatches)
    return (n_stages - 1) / n_microbatches


def _bubble_inverted(n_stages, n_microbatches):  # noqa: ANN001, ANN202
    bubble_fraction(n_stages, n_microbatches)
    return n_microbatches / (n_microbatches + n_stages - 1)


def _bubble_no_check(n_stages, n_microbatches):  # noqa: ANN001, ANN202
    return (n_stages - 1) / (n_microbatches + n_stages - 1)


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "shard_tensor": [_shard_ignores_splits, _shard_strided, _shard_no_checks],
    "mfu": [_mfu_no_check, _mfu_percent, _mfu_times_six],
    "bubble_fraction": [_bubble_gpipe_paper, _bubble_inverted, _bubble_no_check],
}
