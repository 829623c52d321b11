"""Graders for chapter 9 (scaling: FLOPs, activation and training memory, Chinchilla).

Each grader checks known cases from the papers, then compares the student's function with
minigpt's on many configurations, and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from exercises.catalog import Exercise
from exercises.graders.common import close, expect_value_error
from minigpt.config import GPTConfig, count_parameters, gpt3_config
from minigpt.scaling import (
    CHINCHILLA,
    Memory,
    activation_bytes_per_layer,
    chinchilla_loss,
    chinchilla_optimal,
    flops_per_token,
    memory_per_gpu,
)

_HERE = "exercises.graders.ch09_scaling"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "",
    "import numpy as np",
    "",
    "from minigpt.config import GPTConfig, count_parameters",
    "from minigpt.scaling import CHINCHILLA, ChinchillaFit, Memory, activation_bytes, "
    "model_state_bytes",
)

EXERCISES = (
    Exercise(
        "9.1",
        "flops_per_token",
        "minigpt.scaling:flops_per_token",
        f"{_HERE}:grade_flops_per_token",
        "Training FLOPs per token: 6N plus Kaplan's attention term.",
    ),
    Exercise(
        "9.2",
        "activation_bytes_per_layer",
        "minigpt.scaling:activation_bytes_per_layer",
        f"{_HERE}:grade_activation_bytes_per_layer",
        "Activation memory of one layer, with recomputation and tensor parallelism.",
    ),
    Exercise(
        "9.3",
        "memory_per_gpu",
        "minigpt.scaling:memory_per_gpu",
        f"{_HERE}:grade_memory_per_gpu",
        "Training memory per GPU under data, tensor, pipeline parallelism and ZeRO.",
    ),
    Exercise(
        "9.4",
        "chinchilla_optimal",
        "minigpt.scaling:chinchilla_optimal",
        f"{_HERE}:grade_chinchilla_optimal",
        "The compute-optimal model size and token count under Chinchilla's fitted law.",
    ),
)

_CONFIGS = [
    gpt3_config("small"),
    gpt3_config("175B"),
    gpt3_config("xl", n_heads=24),
    gpt3_config("2.7B", attention_pattern="alternating"),
    GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=512, n_ctx=128),
    GPTConfig(n_layer=3, d_model=48, n_heads=4, vocab_size=65, n_ctx=64, d_head=16),
]


def grade_flops_per_token(fn: Callable[..., Any]) -> None:
    small = gpt3_config("small")
    n_total = count_parameters(small)
    close(fn(small, attention=False, params="total"), 6.0 * n_total,
          "GPT-3 Small, attention=False, params='total' (6 FLOPs per parameter per token)")
    close(fn(small, attention=False), 6.0 * count_parameters(small, non_embedding=True),
          "GPT-3 Small, attention=False: Kaplan's N leaves out the embeddings and the output")
    close(fn(small, attention=False, training=False), 2.0 * count_parameters(small, True),
          "the forward pass alone (training=False) costs 2 FLOPs per parameter")
    close(fn(small), flops_per_token(small),
          "GPT-3 Small with attention: add 6 n_layer n_ctx d_attn for training")
    for cfg, attention, params, training, banded in itertools.product(
        _CONFIGS, (True, False), ("non_embedding", "total"), (True, False), (False, True)
    ):
        kwargs = dict(attention=attention, params=params, training=training, banded=banded)
        close(fn(cfg, **kwargs), flops_per_token(cfg, **kwargs),
              f"n_layer={cfg.n_layer}, d_model={cfg.d_model}, n_ctx={cfg.n_ctx}, "
              f"pattern={cfg.attention_pattern}, {kwargs} (banded layers attend to "
              "min(local_window, n_ctx) positions)")
    expect_value_error(lambda: fn(small, params="embedding"), "params='embedding'")


def grade_activation_bytes_per_layer(fn: Callable[..., Any]) -> None:
    close(fn(2048, 1, 12288, 96), 2048 * 12288 * (34 + 5 * 96 * 2048 / 12288),
          "GPT-3 175B, s=2048, b=1: s b h (34 + 5 a s / h)")
    close(fn(2048, 1, 12288, 96, recompute="full"), 2 * 2048 * 12288,
          "full recomputation keeps only the layer's 16-bit input, 2 s b h bytes")
    close(fn(2048, 1, 12288, 96, recompute="selective"), 2048 * 12288 * 34,
          "selective recomputation drops the attention-core term 5 a s / h")
    for s, b, h, a in [(2048, 1, 12288, 96), (1024, 4, 768, 12), (512, 2, 64, 4)]:
        for rc, t, sp in itertools.product(("none", "selective", "full"), (1, 2, 8),
                                           (False, True)):
            kwargs = dict(recompute=rc, tensor_parallel=t, sequence_parallel=sp)
            close(fn(s, b, h, a, **kwargs), activation_bytes_per_layer(s, b, h, a, **kwargs),
                  f"s={s}, b={b}, h={h}, a={a}, {kwargs} (tensor parallelism divides 24 of "
                  "the 34 and the score term; sequence parallelism divides all 34)")
    expect_value_error(lambda: fn(0, 1, 64, 4), "seq_len = 0")
    expect_value_error(lambda: fn(128, 1, 64, 4, recompute="some"), "recompute='some'")


def _same_memory(got: Any, want: Memory, what: str) -> None:
    assert isinstance(got, Memory), f"{what}: return a Memory"
    for field in ("weights", "gradients", "optimizer", "activations"):
        close(getattr(got, field), getattr(want, field), f"{what}: {field}")


def grade_memory_per_gpu(fn: Callable[..., Any]) -> None:
    zero_paper = [120.0, 31.4, 16.6, 1.9]  # ZeRO paper, 7.5B parameters on 64 GPUs
    for stage, want in enumerate(zero_paper):
        got = fn(7.5e9, data_parallel=64, zero_stage=stage)
        assert isinstance(got, Memory), "return a Memory"
        assert round(got.total / 1e9, 1) == want, (
            f"7.5B parameters, 64 replicas, ZeRO stage {stage}: {got.total / 1e9:.1f} GB, "
            f"want {want} GB (stage 1 shards the optimizer, 2 also the gradients, 3 the weights)")
    close(fn(175e9, precision="fp32").weights, 700e9, "175B in fp32: 4 bytes per weight")
    close(fn(8e9, tensor_parallel=4, pipeline_parallel=2).total, 16 * 8e9 / 8,
          "tensor and pipeline parallelism divide the model states by t * p")
    for cfg, d, t, p, zero, rc in itertools.product(
        _CONFIGS[:2], (1, 8), (1, 4), (1, 4), (0, 1, 2, 3), ("none", "full")
    ):
        kwargs = dict(data_parallel=d, tensor_parallel=t, pipeline_parallel=p, zero_stage=zero,
                      recompute=rc, micro_batch=2)
        _same_memory(fn(cfg, **kwargs), memory_per_gpu(cfg, **kwargs),
                     f"n_layer={cfg.n_layer}, d_model={cfg.d_model}, {kwargs}")
    expect_value_error(lambda: fn(1e9, zero_stage=4), "zero_stage=4")
    expect_value_error(lambda: fn(1e9, data_parallel=0), "data_parallel=0")


def grade_chinchilla_optimal(fn: Callable[..., Any]) -> None:
    n, d = fn(3.14e23)
    assert math.isclose(n, 2.45e10, rel_tol=0.01) and math.isclose(d, 2.14e12, rel_tol=0.01), (
        f"GPT-3's budget 3.14e23 FLOPs: got N={n:.3g}, D={d:.3g}; want about 2.45e10 "
        "parameters on 2.14e12 tokens")
    close(6 * n * d, 3.14e23, "the answer must spend the budget: 6 N D = C", rel=1e-9)
    for c in np.geomspace(1e15, 1e26, 12):
        n, d = fn(float(c))
        want_n, want_d = chinchilla_optimal(float(c))
        close(n, want_n, f"N_opt at C={c:.3g}")
        close(d, want_d, f"D_opt at C={c:.3g}")
        # The optimum beats its neighbours on the iso-FLOP curve.
        here = chinchilla_loss(n, d)
        for factor in (0.8, 1.25):
            there = chinchilla_loss(n * factor, d / factor)
            assert here <= there + 1e-12, f"C={c:.3g}: not a minimum of L(N, C / 6N)"
    budgets = np.array([1e20, 1e22, 1e24])
    n, d = fn(budgets)
    want_n, want_d = chinchilla_optimal(budgets)
    assert np.allclose(n, want_n) and np.allclose(d, want_d), "arrays of budgets must work"
    other = CHINCHILLA._replace(alpha=0.5, beta=0.3)
    got, want = fn(1e21, other), chinchilla_optimal(1e21, other)
    assert np.allclose(got, want), "use the constants of the fit you are given"
    expect_value_error(fn, "compute = 0", 0.0)


# Plausible wrong answers: CI checks that each grader rejects them.
def _flops_no_backward(config, *, attention=True, params="non_embedding", training=True,
                       banded=False):  # noqa: ANN001, ANN202 - forgets the backward pass
    return flops_per_token(config, attention=attention, params=params, training=False,
                           banded=banded)


def _flops_total_params(config, *, attention=True, params="non_embedding", training=True,
                        banded=False):  # noqa: ANN001, ANN202 - always counts embeddings
    return flops_per_token(config, attention=attention, params="total", training=training,
                           banded=banded)


def _flops_ignore_banded(config, *, attention=True, params="non_embedding", training=True,
                         banded=False):  # noqa: ANN001, ANN202
    return flops_per_token(config, attention=attention, params=params, training=training)


def _act_no_scores(seq_len, micro_batch, d_model, n_heads, *, recompute="none",
                   tensor_parallel=1, sequence_parallel=False):  # noqa: ANN001, ANN202
    return activation_bytes_per_layer(seq_len, micro_batch, d_model, n_heads,
                                      recompute="selective" if recompute == "none" else recompute,
                                      tensor_parallel=tensor_parallel,
                                      sequence_parallel=sequence_parallel)


def _act_tp_divides_all(seq_len, micro_batch, d_model, n_heads, *, recompute="none",
                        tensor_parallel=1, sequence_parallel=False):  # noqa: ANN001, ANN202
    full = activation_bytes_per_layer(seq_len, micro_batch, d_model, n_heads,
                                      recompute=recompute)
    return full if recompute == "full" else full / tensor_parallel


def _act_full_fp32(seq_len, micro_batch, d_model, n_heads, *, recompute="none",
                   tensor_parallel=1, sequence_parallel=False):  # noqa: ANN001, ANN202
    if recompute == "full":
        return 4.0 * seq_len * micro_batch * d_model
    return activation_bytes_per_layer(seq_len, micro_batch, d_model, n_heads,
                                      recompute=recompute, tensor_parallel=tensor_parallel,
                                      sequence_parallel=sequence_parallel)


def _mem_zero_off_by_one(model, *, data_parallel=1, tensor_parallel=1, pipeline_parallel=1,
                         zero_stage=0, **kw):  # noqa: ANN001, ANN003, ANN202
    """Stage 1 already shards the gradients."""
    got = memory_per_gpu(model, data_parallel=data_parallel, tensor_parallel=tensor_parallel,
                         pipeline_parallel=pipeline_parallel,
                         zero_stage=min(zero_stage + 1, 3) if zero_stage else 0, **kw)
    return got


def _mem_dp_divides_all(model, *, data_parallel=1, tensor_parallel=1, pipeline_parallel=1,
                        zero_stage=0, **kw):  # noqa: ANN001, ANN003, ANN202
    """Data parallelism alone divides the model states (it copies them)."""
    got = memory_per_gpu(model, tensor_parallel=tensor_parallel,
                         pipeline_parallel=pipeline_parallel, **kw)
    d = data_parallel
    return Memory(got.weights / d, got.gradients / d, got.optimizer / d, got.activations)


def _mem_no_activations(model, **kw):  # noqa: ANN001, ANN003, ANN202
    n = count_parameters(model) if isinstance(model, GPTConfig) else model
    return memory_per_gpu(float(n), **{k: v for k, v in kw.items()
                                       if k not in ("micro_batch", "recompute")})


def _mem_fp32_moments_only(model, *, precision="mixed", **kw):  # noqa: ANN001, ANN003, ANN202
    """Mixed precision counted as 2 + 2 + 8: forgets the fp32 master weights."""
    got = memory_per_gpu(model, precision=precision, **kw)
    if precision == "mixed":
        return Memory(got.weights, got.gradients, got.optimizer * 8 / 12, got.activations)
    return got


def _chin_equal_split(compute, fit=CHINCHILLA):  # noqa: ANN001, ANN202 - N ∝ sqrt(C) only
    c = np.asarray(compute, dtype=float)
    if np.any(c <= 0):
        raise ValueError("compute")
    n = np.sqrt(c / 120)
    return (float(n), float(20 * n)) if n.ndim == 0 else (n, 20 * n)


def _chin_swapped_exponents(compute, fit=CHINCHILLA):  # noqa: ANN001, ANN202
    c = np.asarray(compute, dtype=float)
    if np.any(c <= 0):
        raise ValueError("compute")
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1 / (a + b))
    n = g * (c / 6) ** (a / (a + b))
    d = (c / 6) / n
    return (float(n), float(d)) if n.ndim == 0 else (n, d)


def _chin_forgets_six(compute, fit=CHINCHILLA):  # noqa: ANN001, ANN202 - uses C = N D
    return chinchilla_optimal(np.asarray(compute, dtype=float) * 6, fit)


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "flops_per_token": [_flops_no_backward, _flops_total_params, _flops_ignore_banded],
    "activation_bytes_per_layer": [_act_no_scores, _act_tp_divides_all, _act_full_fp32],
    "memory_per_gpu": [_mem_zero_off_by_one, _mem_dp_divides_all, _mem_no_activations,
                       _mem_fp32_moments_only],
    "chinchilla_optimal": [_chin_equal_split, _chin_swapped_exponents, _chin_forgets_six],
}

