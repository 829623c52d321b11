"""Graders for chapter 8 (decoding: nucleus filtering, beam search, length penalty).

Each grader checks known cases, then compares the student's function with minigpt's on random
inputs, and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from exercises.catalog import Exercise
from exercises.graders.common import expect_value_error
from minigpt.generate import beam_step, length_penalized_score, top_p_filter

_HERE = "exercises.graders.ch08_decoding"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import torch",
    "from torch import Tensor",
)

EXERCISES = (
    Exercise(
        "8.1",
        "top_p_filter",
        "minigpt.generate:top_p_filter",
        f"{_HERE}:grade_top_p_filter",
        "Nucleus filtering: keep the smallest set of top tokens holding probability p.",
    ),
    Exercise(
        "8.2",
        "beam_step",
        "minigpt.generate:beam_step",
        f"{_HERE}:grade_beam_step",
        "One step of beam search: the best extensions of all beams, ranked together.",
    ),
    Exercise(
        "8.3",
        "length_penalized_score",
        "minigpt.generate:length_penalized_score",
        f"{_HERE}:grade_length_penalized_score",
        "The score of a finished beam: summed log-probability over length ** alpha.",
    ),
)


def grade_top_p_filter(fn: Callable[..., Any]) -> None:
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    for p, want in [(0.7, [True, True, False]), (0.4, [True, False, False]),
                    (0.85, [True, True, True]), (1.0, [True, True, True])]:
        got = fn(logits, p)
        assert isinstance(got, torch.Tensor) and got.shape == logits.shape, (
            "return a tensor of the same shape as logits")
        assert got.isfinite().tolist() == want, (
            f"probabilities [0.5, 0.3, 0.2], p={p}: kept {got.isfinite().tolist()}, want {want}; "
            "keep the smallest set of most likely tokens whose total is >= p")
    got = fn(torch.tensor([1.0, 3.0, 2.0, 0.0]), 0.5)
    assert got[1] == 3.0 and torch.isinf(got[[0, 2, 3]]).all() and (got[[0, 2, 3]] < 0).all(), (
        "the kept logits keep their values and the others become -inf; the order of the "
        "tokens must not change (unsort after sorting)")
    tiny = fn(torch.tensor([2.0, 1.0, 0.0]), 1e-6)
    assert tiny.isfinite().tolist() == [True, False, False], (
        "the most likely token is always kept, however small p is")
    gen = torch.Generator().manual_seed(0)
    for shape in [(7,), (3, 11), (2, 4, 50)]:
        for p in (0.1, 0.5, 0.9, 0.99):
            x = torch.randn(*shape, generator=gen) * 2
            got, want = fn(x.clone(), p), top_p_filter(x, p)
            assert torch.equal(got.isfinite(), want.isfinite()), (
                f"random logits of shape {shape}, p={p}: a different set of tokens is kept; "
                "filter each row (the last dimension) separately")
            assert torch.equal(got[want.isfinite()], x[want.isfinite()]), "kept logits changed"
    expect_value_error(fn, "p = 0", logits, 0.0)
    expect_value_error(fn, "p = 1.5", logits, 1.5)


def grade_beam_step(fn: Callable[..., Any]) -> None:
    scores = torch.tensor([-0.5, -1.0])
    logprobs = torch.tensor([[-2.0, -2.0, -0.2], [-0.1, -3.0, -3.0]])
    got = fn(scores, logprobs, 2)
    assert isinstance(got, tuple) and len(got) == 3, "return (scores, parents, tokens)"
    s, par, tok = got
    assert par.tolist() == [0, 1] and tok.tolist() == [2, 0], (
        f"beams scored [-0.5, -1.0]: the best extensions are (beam 0, token 2) at -0.7 and "
        f"(beam 1, token 0) at -1.1; got parents {par.tolist()}, tokens {tok.tolist()}")
    assert torch.allclose(s, torch.tensor([-0.7, -1.1])), (
        f"the new scores add the beam's score and the token's log-probability; got {s.tolist()}")
    # One beam can supply every survivor.
    s, par, tok = fn(torch.tensor([0.0, -5.0]), torch.tensor([[-0.1, -0.2, -0.3],
                                                              [-0.1, -0.2, -0.3]]), 3)
    assert par.tolist() == [0, 0, 0] and tok.tolist() == [0, 1, 2], (
        "rank all K * V candidates together: here all three survivors extend beam 0, the "
        f"better one; got parents {par.tolist()}, tokens {tok.tolist()}")
    gen = torch.Generator().manual_seed(0)
    for k, v, width in [(1, 9, 3), (3, 6, 3), (4, 10, 4), (2, 5, 7), (5, 3, 2)]:
        beam_scores = -torch.rand(k, generator=gen) * 4
        lp = torch.randn(k, v, generator=gen).log_softmax(-1)
        got = fn(beam_scores.clone(), lp.clone(), width)
        want = beam_step(beam_scores, lp, width)
        where = f"K={k} beams, V={v}, num_beams={width}"
        assert all(g.shape == (width,) for g in got), f"{where}: each output has shape (num_beams,)"
        assert torch.equal(got[1].long(), want[1]) and torch.equal(got[2].long(), want[2]), (
            f"{where}: different survivors or order (best first)")
        assert torch.allclose(got[0], want[0], atol=1e-6), f"{where}: wrong scores"


def grade_length_penalized_score(fn: Callable[..., Any]) -> None:
    cases = [((-6.0, 4, 1.0), -1.5), ((-6.0, 4, 0.0), -6.0), ((-6.0, 4, 0.6), -6.0 / 4**0.6),
             ((-3.0, 1, 0.6), -3.0), ((-5.0, 5, 2.0), -0.2), ((-2.0, 4, -1.0), -8.0)]
    for args, want in cases:
        got = fn(*args)
        assert math.isclose(float(got), want, rel_tol=1e-9), (
            f"length_penalized_score{args} = {got}, want {want}: divide the summed log-probability "
            "by length ** alpha")
    total = torch.tensor([-6.0, -2.0, -9.0])
    length = torch.tensor([4, 1, 3])
    got = fn(total, length, 0.5)
    want = length_penalized_score(total, length, 0.5)
    assert isinstance(got, torch.Tensor) and torch.allclose(got, want), (
        "tensors of sums and lengths must work elementwise")
    expect_value_error(fn, "length 0", -1.0, 0, 0.6)
    expect_value_error(fn, "a negative length", -1.0, -2, 0.6)


# Plausible wrong answers: CI checks that each grader rejects them.
def _top_p_strict(logits, p):  # noqa: ANN001, ANN202 - keeps tokens until the sum exceeds p
    if not 0 < p <= 1:
        raise ValueError("p")
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    cum = probs.cumsum(-1)
    drop_sorted = cum > p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _top_p_no_unsort(logits, p):  # noqa: ANN001, ANN202 - forgets to undo the sort
    if not 0 < p <= 1:
        raise ValueError("p")
    probs, _ = logits.softmax(-1).sort(-1, descending=True)
    drop = (probs.cumsum(-1) - probs) >= p
    return logits.masked_fill(drop, float("-inf"))


def _top_p_threshold(logits, p):  # noqa: ANN001, ANN202 - keeps tokens with probability >= 1 - p
    if not 0 < p <= 1:
        raise ValueError("p")
    return logits.masked_fill(logits.softmax(-1) < 1 - p, float("-inf"))


def _top_p_flat(logits, p):  # noqa: ANN001, ANN202 - one nucleus over the whole batch
    if not 0 < p <= 1:
        raise ValueError("p")
    return top_p_filter(logits.flatten(), p).view(logits.shape)


def _step_per_beam(beam_scores, logprobs, num_beams):  # noqa: ANN001, ANN202
    """Each beam keeps its own best token: greedy inside every beam."""
    best_lp, best_tok = logprobs.max(-1)
    total = beam_scores + best_lp
    order = total.argsort(descending=True)
    reps = (num_beams + len(order) - 1) // len(order)
    order = order.repeat(reps)[:num_beams]
    return total[order], order, best_tok[order]


def _step_ignores_scores(beam_scores, logprobs, num_beams):  # noqa: ANN001, ANN202
    vocab = logprobs.shape[1]
    top, flat = torch.topk(logprobs.flatten(), num_beams)
    return top + beam_scores[flat // vocab], flat // vocab, flat % vocab


def _step_swapped_index(beam_scores, logprobs, num_beams):  # noqa: ANN001, ANN202
    k = logprobs.shape[0]
    scores, flat = torch.topk((beam_scores[:, None] + logprobs).flatten(), num_beams)
    return scores, flat % k, flat // k


def _step_probabilities(beam_scores, logprobs, num_beams):  # noqa: ANN001, ANN202
    """Adds probabilities to log-probabilities."""
    vocab = logprobs.shape[1]
    scores, flat = torch.topk((beam_scores[:, None] + logprobs.exp()).flatten(), num_beams)
    return scores, flat // vocab, flat % vocab


def _lp_multiplies(sum_logprob, length, alpha):  # noqa: ANN001, ANN202
    if (torch.as_tensor(length) < 1).any():
        raise ValueError("length")
    return sum_logprob * length**alpha


def _lp_gnmt(sum_logprob, length, alpha):  # noqa: ANN001, ANN202 - Wu et al.'s formula
    if (torch.as_tensor(length) < 1).any():
        raise ValueError("length")
    return sum_logprob / ((5 + length) / 6) ** alpha


def _lp_no_check(sum_logprob, length, alpha):  # noqa: ANN001, ANN202
    return sum_logprob / (max(length, 1) if isinstance(length, int) else length) ** alpha


def _lp_mean_always(sum_logprob, length, alpha):  # noqa: ANN001, ANN202 - ignores alpha
    if (torch.as_tensor(length) < 1).any():
        raise ValueError("length")
    return sum_logprob / length


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "top_p_filter": [_top_p_strict, _top_p_no_unsort, _top_p_threshold, _top_p_flat],
    "beam_step": [_step_per_beam, _step_ignores_scores, _step_swapped_index, _step_probabilities],
    "length_penalized_score": [_lp_multiplies, _lp_gnmt, _lp_no_check, _lp_mean_always],
}
