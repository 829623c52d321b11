"""Graders for chapter 13 (GPT-3's training data: filtering, deduplication, the mixture).

Each grader checks known cases, then compares the student's function with minigpt's, and
raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples, close, expect_value_error
from minigpt.corpus.dedup import (
    PRIME,
    candidate_probability,
    estimate_jaccard,
    hash_functions,
    minhash_signature,
)
from minigpt.corpus.mixture import (
    TABLE_2_2,
    TRAINING_TOKENS,
    mixture_epochs,
    normalize_weights,
)
from minigpt.corpus.quality import pareto_keep

_HERE = "exercises.graders.ch13_training_data"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "from collections.abc import Sequence",
    "",
    "import numpy as np",
    "",
    "from minigpt.corpus.dedup import PRIME",
    "from minigpt.corpus.mixture import TRAINING_TOKENS, check_weights",
)

EXERCISES = (
    Exercise(
        "13.1",
        "pareto_keep",
        "minigpt.corpus.quality:pareto_keep",
        f"{_HERE}:grade_pareto_keep",
        "GPT-3's quality rule: keep a document when a Pareto draw exceeds 1 - its score.",
    ),
    Exercise(
        "13.2",
        "minhash_signature",
        "minigpt.corpus.dedup:minhash_signature",
        f"{_HERE}:grade_minhash_signature",
        "The MinHash signature of one document: the minimum of each random hash.",
    ),
    Exercise(
        "13.3",
        "estimate_jaccard",
        "minigpt.corpus.dedup:estimate_jaccard",
        f"{_HERE}:grade_estimate_jaccard",
        "Estimate the Jaccard similarity of two documents from their MinHash signatures.",
    ),
    Exercise(
        "13.4",
        "candidate_probability",
        "minigpt.corpus.dedup:candidate_probability",
        f"{_HERE}:grade_candidate_probability",
        "The chance that LSH with bands x rows makes a pair of similarity s candidates.",
    ),
    Exercise(
        "13.5",
        "mixture_epochs",
        "minigpt.corpus.mixture:mixture_epochs",
        f"{_HERE}:grade_mixture_epochs",
        "Epochs of each source of a weighted mixture over a training run (Table 2.2).",
    ),
)


# --------------------------------------------------------------------------------------------
# 13.1 pareto_keep


def grade_pareto_keep(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, pareto_keep)
    got = np.asarray(fn(np.ones(50), 9.0, np.random.default_rng(0)))
    assert got.dtype == bool and got.shape == (50,), (
        f"return a boolean mask of shape (50,), got dtype {got.dtype} and shape {got.shape}")
    assert got.all(), "a score of 1 keeps a document whenever the draw is > 0, i.e. always"
    rng = np.random.default_rng(0)
    for seed, alpha, n in [(1, 9.0, 10), (2, 9.0, 1000), (3, 2.0, 300), (4, 0.5, 300)]:
        scores = rng.random(n)
        want = pareto_keep(scores, alpha, np.random.default_rng(seed))
        got = np.asarray(fn(scores, alpha, np.random.default_rng(seed)))
        assert np.array_equal(got, want), (
            f"{n} scores, alpha={alpha}: draw rng.pareto(alpha, size={n}) once and keep where "
            f"the draw > 1 - score; {int((got != want).sum())} of {n} decisions differ")
        assert np.array_equal(np.asarray(fn(scores, alpha, seed)), want), (
            "an int rng is a seed for np.random.default_rng")
    kept = np.asarray(fn(np.full(200_000, 0.5), 9.0, 5)).mean()
    assert abs(kept - 1.5**-9) < 0.003, (
        f"score 0.5, alpha 9: about (2 - 0.5)^-9 = 2.6% should be kept, got {kept:.2%}")
    expect_value_error(lambda: fn([0.5, 1.2]), "a score above 1")
    expect_value_error(lambda: fn([-0.1, 0.5]), "a negative score")
    expect_value_error(lambda: fn(np.full((2, 2), 0.5)), "2-D scores")
    expect_value_error(lambda: fn([0.5], 0.0), "alpha = 0")
    expect_value_error(lambda: fn([0.5], -9.0), "a negative alpha")


# --------------------------------------------------------------------------------------------
# 13.2 minhash_signature


def _u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def grade_minhash_signature(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, minhash_signature)
    p = int(PRIME)
    got = np.asarray(fn(_u64([7]), _u64([1, 2]), _u64([0, 5])))
    assert got.shape == (2,) and got.tolist() == [7, 19], (
        f"one shingle x=7, hashes (1x+0), (2x+5): want [7, 19], got {got.tolist()}")
    got = np.asarray(fn(_u64([p - 1, 3]), _u64([p - 1]), _u64([p - 1])))
    want = minhash_signature(_u64([p - 1, 3]), _u64([p - 1]), _u64([p - 1]))
    assert got.tolist() == want.tolist(), (
        f"values near p = 2^31 - 1: compute (a x + b) mod p exactly (it fits in uint64), want "
        f"{want.tolist()}, got {got.tolist()}")
    rng = np.random.default_rng(0)
    for k, size in [(1, 1), (4, 30), (64, 200), (128, 5)]:
        a, b = hash_functions(k, seed=int(rng.integers(1000)))
        x = np.unique(rng.integers(0, p, size=size, dtype=np.uint64))
        want = minhash_signature(x, a, b)
        got = np.asarray(fn(x, a, b))
        assert got.shape == (k,) and np.array_equal(got.astype(np.uint64), want), (
            f"{len(x)} shingles, {k} hashes: sig[i] = min over x of (a[i] x + b[i]) mod p; "
            f"{int((got != want).sum()) if got.shape == want.shape else 'all'} of {k} differ")
    expect_value_error(lambda: fn(_u64([]), _u64([1]), _u64([0])), "no shingle")
    expect_value_error(lambda: fn(_u64([1]), _u64([1, 2]), _u64([0])), "a and b of two lengths")
    expect_value_error(lambda: fn(_u64([p]), _u64([1]), _u64([0])), "a shingle value >= p")


# --------------------------------------------------------------------------------------------
# 13.3 estimate_jaccard


def grade_estimate_jaccard(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, estimate_jaccard)
    got = fn(np.array([5, 5, 5, 5]), np.array([5, 5, 1, 2]))
    assert isinstance(got, float), f"return a float, got {type(got).__name__}"
    close(got, 0.5, "positions 0 and 1 agree (repeated values count per position)")
    close(fn(np.array([1, 2]), np.array([2, 1])), 0.0,
          "compare position by position, not as sets")
    rng = np.random.default_rng(0)
    for k in (1, 10, 128):
        a, b = rng.integers(0, 4, size=k), rng.integers(0, 4, size=k)
        close(fn(a, b), estimate_jaccard(a, b), f"two random signatures of {k} values")
    expect_value_error(lambda: fn(np.array([1, 2, 3]), np.array([1, 2])), "lengths 3 and 2")
    expect_value_error(lambda: fn(np.array([]), np.array([])), "empty signatures")


# --------------------------------------------------------------------------------------------
# 13.4 candidate_probability


def grade_candidate_probability(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, candidate_probability)
    close(fn(0.0, 20, 5), 0.0, "similarity 0: never a candidate")
    close(fn(1.0, 20, 5), 1.0, "similarity 1: always a candidate")
    close(fn(0.8, 1, 1), 0.8, "one band of one row: the MinHash collision probability, s")
    close(fn(0.8, 1, 3), 0.8**3, "one band of 3 rows: every row must agree")
    close(fn(0.3, 10, 1), 1 - 0.7**10, "GPT-3's 10 hashes as 10 bands of 1 row")
    for bands, rows in [(20, 5), (16, 8), (4, 32), (128, 1)]:
        for s in (0.1, 0.45, 0.7, 0.95):
            close(fn(s, bands, rows), candidate_probability(s, bands, rows),
                  f"s={s}, {bands} bands x {rows} rows")
    s = np.linspace(0, 1, 11)
    got = np.asarray(fn(s, 20, 5))
    assert got.shape == (11,) and np.allclose(got, candidate_probability(s, 20, 5)), (
        "an array of similarities gives an array of probabilities, element by element")
    expect_value_error(lambda: fn(1.5, 20, 5), "similarity 1.5")
    expect_value_error(lambda: fn(-0.1, 20, 5), "similarity -0.1")
    expect_value_error(lambda: fn(0.5, 0, 5), "0 bands")
    expect_value_error(lambda: fn(0.5, 20, 0), "0 rows")
    expect_value_error(lambda: fn(0.5, 2.5, 4), "bands = 2.5, not an integer")


# --------------------------------------------------------------------------------------------
# 13.5 mixture_epochs


def grade_mixture_epochs(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, mixture_epochs)
    tokens = [s.tokens for s in TABLE_2_2]
    weights = normalize_weights([s.weight for s in TABLE_2_2])
    got = np.asarray(fn(tokens, weights))
    want = mixture_epochs(tokens, weights)
    assert got.shape == want.shape and np.allclose(got, want), (
        f"Table 2.2, weights divided by their sum, 300B tokens: want {np.round(want, 3)}, got "
        f"{np.round(got, 3) if got.shape == want.shape else got}")
    close(float(np.asarray(fn([1e9], [1.0], 3e9))[0]), 3.0,
          "one source of 1B tokens, 3B training tokens: 3 epochs")
    rng = np.random.default_rng(0)
    for n in (1, 3, 8):
        t = rng.uniform(1e6, 1e9, size=n)
        w = normalize_weights(rng.random(n) + 0.01)
        assert np.allclose(np.asarray(fn(t, w, 5e8)), mixture_epochs(t, w, 5e8)), (
            f"{n} random sources, 5e8 training tokens")
    assert TRAINING_TOKENS == 300e9
    expect_value_error(lambda: fn(tokens, [s.weight for s in TABLE_2_2]),
                       "Table 2.2's printed weights sum to 1.01")
    expect_value_error(lambda: fn([1e9, 1e9], [1.2, -0.2]), "a negative weight")
    expect_value_error(lambda: fn([1e9, 1e9], [1.0]), "2 sources and 1 weight")
    expect_value_error(lambda: fn([1e9, 0.0], [0.5, 0.5]), "a source of 0 tokens")
    expect_value_error(lambda: fn([1e9], [1.0], 0.0), "0 training tokens")


# --------------------------------------------------------------------------------------------
# Plausible wrong answers: CI checks that each grader rejects them.


def _keep_threshold(scores, alpha=9.0, rng=None):  # noqa: ANN001, ANN202 - a hard cut
    pareto_keep(scores, alpha, 0)
    return np.asarray(scores) > 0.5


def _keep_pareto_one(scores, alpha=9.0, rng=None):  # noqa: ANN001, ANN202 - Pareto I (1 + Lomax)
    pareto_keep(scores, alpha, 0)
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return 1.0 + g.pareto(alpha, size=len(scores)) > 1.0 - np.asarray(scores)


def _keep_flipped(scores, alpha=9.0, rng=None):  # noqa: ANN001, ANN202 - compares with score
    pareto_keep(scores, alpha, 0)
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return g.pareto(alpha, size=len(scores)) > np.asarray(scores)


def _keep_unchecked(scores, alpha=9.0, rng=None):  # noqa: ANN001, ANN202 - no validation
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    s = np.asarray(scores, dtype=float)
    return g.pareto(abs(alpha) or 1.0, size=s.shape) > 1.0 - s


def _sig_no_mod(shingles, a, b):  # noqa: ANN001, ANN202 - forgets mod p
    minhash_signature(shingles, a, b)
    x = np.asarray(shingles, dtype=np.uint64)
    return (a[:, None] * x[None, :] + b[:, None]).min(axis=1)


def _sig_max(shingles, a, b):  # noqa: ANN001, ANN202 - max instead of min
    minhash_signature(shingles, a, b)
    x = np.asarray(shingles, dtype=np.uint64)
    return ((a[:, None] * x[None, :] + b[:, None]) % PRIME).max(axis=1)


def _sig_mod_2_32(shingles, a, b):  # noqa: ANN001, ANN202 - the wrong modulus
    minhash_signature(shingles, a, b)
    x = np.asarray(shingles, dtype=np.uint64)
    return ((a[:, None] * x[None, :] + b[:, None]) % np.uint64(1 << 32)).min(axis=1)


def _sig_unchecked(shingles, a, b):  # noqa: ANN001, ANN202 - no validation
    x = np.asarray(shingles, dtype=np.uint64)
    if x.size == 0:
        return np.full(len(a), int(PRIME), dtype=np.uint64)
    k = min(len(a), len(b))
    return ((a[:k, None] * x[None, :] + b[:k, None]) % PRIME).min(axis=1)


def _jaccard_of_sets(sig_a, sig_b):  # noqa: ANN001, ANN202 - treats signatures as sets
    estimate_jaccard(sig_a, sig_b)
    a, b = set(np.asarray(sig_a).tolist()), set(np.asarray(sig_b).tolist())
    return len(a & b) / len(a | b)


def _jaccard_count(sig_a, sig_b):  # noqa: ANN001, ANN202 - count, not share
    estimate_jaccard(sig_a, sig_b)
    return float(np.sum(np.asarray(sig_a) == np.asarray(sig_b)))


def _jaccard_unchecked(sig_a, sig_b):  # noqa: ANN001, ANN202 - zips unequal lengths
    pairs = list(zip(np.asarray(sig_a).tolist(), np.asarray(sig_b).tolist(), strict=False))
    return sum(x == y for x, y in pairs) / max(len(pairs), 1)


def _candidate_swapped(similarity, bands, rows):  # noqa: ANN001, ANN202 - bands and rows swapped
    candidate_probability(similarity, bands, rows)
    return candidate_probability(similarity, rows, bands)


def _candidate_union(similarity, bands, rows):  # noqa: ANN001, ANN202 - bands * s^rows
    candidate_probability(similarity, bands, rows)
    p = np.minimum(1.0, bands * np.asarray(similarity, dtype=float) ** rows)
    return float(p) if p.ndim == 0 else p


def _candidate_unchecked(similarity, bands, rows):  # noqa: ANN001, ANN202 - no validation
    s = np.asarray(similarity, dtype=float)
    p = 1.0 - (1.0 - np.clip(s, 0, 1) ** max(rows, 1)) ** max(bands, 1)
    return float(p) if p.ndim == 0 else p


def _epochs_inverted(tokens, weights, total_tokens=TRAINING_TOKENS):  # noqa: ANN001, ANN202
    mixture_epochs(tokens, weights, total_tokens)
    return np.asarray(tokens, dtype=float) / (np.asarray(weights) * total_tokens)


def _epochs_renormalised(tokens, weights, total_tokens=TRAINING_TOKENS):  # noqa: ANN001, ANN202
    """Silently divides the weights by their sum instead of rejecting them."""
    w = normalize_weights(weights)
    return w * total_tokens / np.asarray(tokens, dtype=float)


def _epochs_share_of_tokens(tokens, weights, total_tokens=TRAINING_TOKENS):  # noqa: ANN001, ANN202
    """Epochs as if drawn in proportion to size, ignoring the weights."""
    mixture_epochs(tokens, weights, total_tokens)
    t = np.asarray(tokens, dtype=float)
    return np.full(len(t), total_tokens / t.sum())


def _epochs_unchecked(tokens, weights, total_tokens=TRAINING_TOKENS):  # noqa: ANN001, ANN202
    t, w = np.asarray(tokens, dtype=float), np.asarray(weights, dtype=float)
    with np.errstate(divide="ignore"):
        return w[: len(t)] * abs(total_tokens) / t[: len(w)]


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "pareto_keep": [_keep_threshold, _keep_pareto_one, _keep_flipped, _keep_unchecked],
    "minhash_signature": [_sig_no_mod, _sig_max, _sig_mod_2_32, _sig_unchecked],
    "estimate_jaccard": [_jaccard_of_sets, _jaccard_count, _jaccard_unchecked],
    "candidate_probability": [_candidate_swapped, _candidate_union, _candidate_unchecked],
    "mixture_epochs": [_epochs_inverted, _epochs_renormalised, _epochs_share_of_tokens,
                       _epochs_unchecked],
}
