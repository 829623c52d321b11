"""Graders for chapter 11 (after GPT-3: SwiGLU width, answer-only loss, IsoFLOP, energy).

Each grader checks known cases, then compares the student's function with minigpt's, and
raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples, close, expect_value_error
from minigpt.energy import training_energy_kwh
from minigpt.finetune import answer_loss_mask
from minigpt.lab.isoflop import isoflop_minimum
from minigpt.variants import llama_d_ff

_HERE = "exercises.graders.ch11_after_gpt3"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "from collections.abc import Sequence",
    "",
    "import numpy as np",
    "import torch",
    "from torch import Tensor",
    "",
    "JOULES_PER_KWH = 3.6e6",
)

EXERCISES = (
    Exercise(
        "11.1",
        "llama_d_ff",
        "minigpt.variants:llama_d_ff",
        f"{_HERE}:grade_llama_d_ff",
        "LLaMA's SwiGLU hidden width: 2/3 of 4 d_model, rounded up to a multiple.",
    ),
    Exercise(
        "11.2",
        "answer_loss_mask",
        "minigpt.finetune:answer_loss_mask",
        f"{_HERE}:grade_answer_loss_mask",
        "Which next-token targets of a batch of examples belong to the answers.",
    ),
    Exercise(
        "11.3",
        "isoflop_minimum",
        "minigpt.lab.isoflop:isoflop_minimum",
        f"{_HERE}:grade_isoflop_minimum",
        "The minimum of a parabola in log N fitted to an IsoFLOP profile.",
    ),
    Exercise(
        "11.4",
        "training_energy_kwh",
        "minigpt.energy:training_energy_kwh",
        f"{_HERE}:grade_training_energy_kwh",
        "Training energy in kWh from FLOPs, sustained FLOP/s, watts and PUE.",
    ),
)


def grade_llama_d_ff(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, llama_d_ff)
    assert fn(4096, 256) == 11008, "LLaMA 7B (d_model 4096, multiple_of 256): want 11008"
    assert fn(48) == 128, "d_model 48: 2/3 x 192 = 128 exactly, already a multiple of 8"
    for d, m in itertools.product((1, 2, 3, 5, 7, 12, 33, 64, 100, 768, 5120, 8192),
                                  (1, 2, 8, 64, 256)):
        got, want = fn(d, m), llama_d_ff(d, m)
        assert got == want, (f"d_model={d}, multiple_of={m}: got {got}, want {want} (take "
                             "int(2 * 4 * d / 3), then round UP to a multiple of multiple_of)")
    expect_value_error(lambda: fn(0), "d_model=0")
    expect_value_error(lambda: fn(64.0), "a float d_model")
    expect_value_error(lambda: fn(64, 0), "multiple_of=0")


def grade_answer_loss_mask(fn: Callable[..., Any]) -> None:
    got = fn(torch.tensor([2, 3]), torch.tensor([4, 6]), seq_len=5)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bool, (
        f"return a boolean tensor, got {type(got).__name__} "
        f"{getattr(got, 'dtype', '')}")
    want = [[False, True, True, False, False], [False, False, True, True, True]]
    assert got.tolist() == want, (
        f"prompts of 2 and 3 tokens, examples of 4 and 6, seq_len 5: want {want}, got "
        f"{got.tolist()} (position t predicts token t + 1: keep t when token t + 1 is in the "
        "answer)")
    gen = torch.Generator().manual_seed(0)
    for seq_len in (2, 5, 17):
        for _ in range(20):
            lengths = torch.randint(2, seq_len + 2, (6,), generator=gen)
            prompts = (torch.rand(6, generator=gen) * (lengths - 1)).long() + 1
            got = fn(prompts, lengths, seq_len)
            want = answer_loss_mask(prompts, lengths, seq_len)
            assert got.shape == want.shape and torch.equal(got.bool(), want), (
                f"prompt_lengths {prompts.tolist()}, lengths {lengths.tolist()}, seq_len "
                f"{seq_len}: got {got.int().tolist()}, want {want.int().tolist()}")
    expect_value_error(lambda: fn(torch.tensor([3]), torch.tensor([3]), 5),
                       "an example with no answer token (length == prompt length)")
    expect_value_error(lambda: fn(torch.tensor([0]), torch.tensor([3]), 5), "an empty prompt")
    expect_value_error(lambda: fn(torch.tensor([2]), torch.tensor([8]), 5),
                       "an example of 8 tokens with seq_len 5")
    expect_value_error(lambda: fn(torch.tensor([1, 2]), torch.tensor([3]), 5),
                       "prompt_lengths and lengths of different sizes")


def grade_isoflop_minimum(fn: Callable[..., Any]) -> None:
    n, loss = fn([1e4, 1e5, 1e6], [2.5, 2.0, 2.5])
    close(n, 1e5, "a symmetric valley in log N around 1e5: N_opt", rel=1e-6)
    close(loss, 2.0, "a symmetric valley: the loss at N_opt", rel=1e-6)
    rng = np.random.default_rng(0)
    for k in range(30):
        sizes = np.sort(np.exp(rng.uniform(8, 16, size=int(rng.integers(3, 8)))))
        center, curve = rng.uniform(9, 15), rng.uniform(0.02, 0.3)
        losses = 2 + curve * (np.log(sizes) - center) ** 2 + rng.normal(0, 0.01, sizes.shape)
        try:
            want = isoflop_minimum(list(sizes), list(losses))
        except ValueError:
            expect_value_error(lambda s=sizes, v=losses: fn(list(s), list(v)),
                               f"case {k}: a fit that opens downwards")
            continue
        got = fn(list(sizes), list(losses))
        close(got[0], want[0], f"case {k}: N_opt (fit the parabola to ln N, not to N)",
              rel=1e-6)
        close(got[1], want[1], f"case {k}: the loss at N_opt", rel=1e-6)
    expect_value_error(lambda: fn([1e4, 1e5], [2.5, 2.0]), "only 2 sizes")
    expect_value_error(lambda: fn([1e4, 1e4, 1e4, 1e5], [2.5, 2.4, 2.6, 2.0]),
                       "only 2 distinct sizes")
    expect_value_error(lambda: fn([1e4, 1e5, 1e6], [2.0, 2.5, 2.0]), "a parabola opening down")
    expect_value_error(lambda: fn([1e4, 1e5, 1e6], [2.0, 2.5]), "lengths that differ")


def grade_training_energy_kwh(fn: Callable[..., Any]) -> None:
    close(fn(3.6e18, 1e12, watts_per_gpu=1000, pue=1.0), 1000.0,
          "3.6e18 FLOPs at 1e12 FLOP/s and 1 kW, PUE 1: a million GPU-seconds of 1 kW")
    close(fn(3.14e23, 28e12, 300, pue=1.1), 3.14e23 / 28e12 * 300 * 1.1 / 3.6e6,
          "GPT-3 175B on V100s (28 TFLOP/s sustained, 300 W, PUE 1.1)")
    close(fn(1e20, 1e14, 400), training_energy_kwh(1e20, 1e14, 400),
          "the default PUE is 1.1")
    close(fn(0.0, 1e12, 300), 0.0, "no FLOPs, no energy")
    for flops, rate, watts, pue in itertools.product((1e15, 2.25e20), (28e12, 312e12),
                                                     (300.0, 700.0), (1.0, 1.1, 1.58)):
        close(fn(flops, rate, watts, pue), training_energy_kwh(flops, rate, watts, pue),
              f"flops={flops}, {rate} FLOP/s, {watts} W, PUE {pue}")
    expect_value_error(lambda: fn(1e18, 1e12, 300, pue=0.9), "a PUE below 1")
    expect_value_error(lambda: fn(1e18, 0.0, 300), "zero FLOP/s")
    expect_value_error(lambda: fn(1e18, 1e12, -300), "negative watts")
    expect_value_error(lambda: fn(-1e18, 1e12, 300), "negative FLOPs")


# Plausible wrong answers: CI checks that each grader rejects them.
def _d_ff_round_down(d_model, multiple_of=8):  # noqa: ANN001, ANN202
    llama_d_ff(d_model, multiple_of)
    return multiple_of * (int(2 * 4 * d_model / 3) // multiple_of)


def _d_ff_no_two_thirds(d_model, multiple_of=8):  # noqa: ANN001, ANN202
    llama_d_ff(d_model, multiple_of)
    return multiple_of * -(-(4 * d_model) // multiple_of)


def _d_ff_no_checks(d_model, multiple_of=8):  # noqa: ANN001, ANN202
    hidden = int(2 * (4 * d_model) / 3)
    return multiple_of * -(-hidden // multiple_of) if multiple_of else hidden


def _mask_prompt_included(prompt_lengths, lengths, seq_len):  # noqa: ANN001, ANN202
    """Off by one: masks by input position instead of target position."""
    answer_loss_mask(prompt_lengths, lengths, seq_len)
    t = torch.arange(seq_len)
    return (t >= torch.as_tensor(prompt_lengths)[:, None]) & (
        t < torch.as_tensor(lengths)[:, None])


def _mask_keeps_padding(prompt_lengths, lengths, seq_len):  # noqa: ANN001, ANN202
    answer_loss_mask(prompt_lengths, lengths, seq_len)
    target = torch.arange(1, seq_len + 1)
    return (target >= torch.as_tensor(prompt_lengths)[:, None]).expand(len(lengths), seq_len)


def _mask_no_checks(prompt_lengths, lengths, seq_len):  # noqa: ANN001, ANN202
    target = torch.arange(1, seq_len + 1)
    return (target >= torch.as_tensor(prompt_lengths)[:, None]) & (
        target < torch.as_tensor(lengths)[:, None])


def _isoflop_linear_n(n_params, losses):  # noqa: ANN001, ANN202
    """Fits the parabola to N instead of ln N."""
    isoflop_minimum(n_params, losses)
    a, b, c = np.polyfit(np.asarray(n_params, dtype=float), np.asarray(losses, dtype=float), 2)
    return float(-b / (2 * a)), float(c - b * b / (4 * a))


def _isoflop_best_point(n_params, losses):  # noqa: ANN001, ANN202
    """The best measured size, not the parabola's minimum."""
    isoflop_minimum(n_params, losses)
    i = int(np.argmin(losses))
    return float(n_params[i]), float(losses[i])


def _isoflop_no_checks(n_params, losses):  # noqa: ANN001, ANN202
    x, y = np.log(np.asarray(n_params, dtype=float)), np.asarray(losses, dtype=float)
    a, b, c = np.polyfit(x, y, 2)
    return float(math.exp(-b / (2 * a))), float(c - b * b / (4 * a))


def _energy_no_pue(flops, flops_per_second_per_gpu, watts_per_gpu, pue=1.1):  # noqa: ANN001, ANN202
    return training_energy_kwh(flops, flops_per_second_per_gpu, watts_per_gpu, 1.0)


def _energy_joules(flops, flops_per_second_per_gpu, watts_per_gpu, pue=1.1):  # noqa: ANN001, ANN202
    """Returns kW-seconds: divides by 1000, not by 3.6e6."""
    return training_energy_kwh(flops, flops_per_second_per_gpu, watts_per_gpu, pue) * 3600


def _energy_no_checks(flops, flops_per_second_per_gpu, watts_per_gpu, pue=1.1):  # noqa: ANN001, ANN202
    return flops / flops_per_second_per_gpu * watts_per_gpu * pue / 3.6e6


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "llama_d_ff": [_d_ff_round_down, _d_ff_no_two_thirds, _d_ff_no_checks],
    "answer_loss_mask": [_mask_prompt_included, _mask_keeps_padding, _mask_no_checks],
    "isoflop_minimum": [_isoflop_linear_n, _isoflop_best_point, _isoflop_no_checks],
    "training_energy_kwh": [_energy_no_pue, _energy_joules, _energy_no_checks],
}
