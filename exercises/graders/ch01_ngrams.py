"""Graders for chapter 1 (n-gram language models).

Each grader calls the student's function on fixed cases with known answers and on random
cases compared with minigpt's reference, and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples, close, expect_value_error
from minigpt import ngram

_HERE = "exercises.graders.ch01_ngrams"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "from collections import Counter",
    "from collections.abc import Iterable, Sequence",
    "",
    "import numpy as np",
    "",
    "from minigpt.ngram import BOS, EOS, Context, Token, ngrams, pad  # you may use these",
)

EXERCISES = (
    Exercise(
        "1.1",
        "count_ngrams",
        "minigpt.ngram:count_ngrams",
        f"{_HERE}:grade_count_ngrams",
        "Count, for every order k = 1..order, which token follows each context.",
    ),
    Exercise(
        "1.2",
        "add_k_probability",
        "minigpt.ngram:add_k_probability",
        f"{_HERE}:grade_add_k_probability",
        "Write the add-k (Laplace when k = 1, Lidstone otherwise) estimate.",
    ),
    Exercise(
        "1.3",
        "perplexity",
        "minigpt.ngram:perplexity",
        f"{_HERE}:grade_perplexity",
        "Turn the log-probabilities of N predicted tokens into a perplexity.",
    ),
    Exercise(
        "1.4",
        "temper_probabilities",
        "minigpt.ngram:temper_probabilities",
        f"{_HERE}:grade_apply_temperature",
        "Rescale a distribution by a temperature, with T = 0 meaning greedy.",
    ),
)


def _random_corpus(rng: random.Random) -> list[str]:
    return ["".join(rng.choice("abc") for _ in range(rng.randint(0, 6))) for _ in range(5)]


def _plain(counts: dict) -> dict:
    return {k: {c: dict(n) for c, n in level.items() if n} for k, level in counts.items()}


def grade_count_ngrams(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, ngram.count_ngrams)
    got = _plain(fn(["ab"], 2))
    want = {1: {(): {"a": 1, "b": 1, "</s>": 1}}, 2: {("<s>",): {"a": 1}, ("a",): {"b": 1},
                                                      ("b",): {"</s>": 1}}}
    assert got == want, f"count_ngrams(['ab'], 2) should be {want}, got {got}"
    rng = random.Random(0)
    for _ in range(30):
        corpus, order = _random_corpus(rng), rng.randint(1, 4)
        got, want = _plain(fn(corpus, order)), _plain(ngram.count_ngrams(corpus, order))
        assert got == want, f"count_ngrams({corpus}, {order}) differs from the expected counts"


def grade_add_k_probability(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, ngram.add_k_probability)
    close(fn(0, 0, 4, 1.0), 0.25, "an unseen context gives the uniform 1/V")
    close(fn(2, 3, 4, 0.5), 2.5 / 5.0, "add_k_probability(2, 3, 4, k=0.5)")
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 10, size=rng.integers(1, 8))
        k = float(rng.uniform(0.01, 2.0))
        total = sum(fn(int(c), int(counts.sum()), len(counts), k) for c in counts)
        close(total, 1.0, f"add-k probabilities over a vocabulary must sum to 1 (k={k:.3f})")
    expect_value_error(fn, "k = 0 is not add-k smoothing", 1, 2, 3, 0.0)


def grade_perplexity(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, ngram.perplexity)
    close(fn([math.log(1 / 7)] * 5), 7.0, "a uniform choice among 7 has perplexity 7")
    close(fn([0.0, 0.0]), 1.0, "certain predictions have perplexity 1")
    rng = np.random.default_rng(1)
    for _ in range(20):
        logp = np.log(rng.uniform(0.01, 1.0, size=rng.integers(1, 50)))
        close(float(fn(logp)), ngram.perplexity(logp), "perplexity of random log-probs")
    expect_value_error(fn, "the perplexity of nothing (an empty list) is undefined", [])


def grade_apply_temperature(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, ngram.temper_probabilities)
    p = np.array([0.1, 0.6, 0.3])
    assert np.allclose(fn(p, 1.0), p), "T = 1 must leave the distribution unchanged"
    assert np.array_equal(fn(p, 0.0), [0.0, 1.0, 0.0]), "T = 0 must be one-hot on the argmax"
    rng = np.random.default_rng(2)
    for _ in range(20):
        q = rng.dirichlet(np.ones(rng.integers(2, 10)))
        t = float(rng.uniform(0.1, 3.0))
        got = np.asarray(fn(q, t))
        assert np.allclose(got, ngram.temper_probabilities(q, t), atol=1e-12), (
            f"temperature {t:.3f} gives the wrong distribution"
        )
    expect_value_error(fn, "a negative temperature is meaningless", p, -1.0)


# Plausible wrong answers: CI checks that each grader rejects them (a grader that cannot fail
# is a defect).
def _count_no_eos(sequences: Any, order: int) -> dict:
    counts: dict = {k: {} for k in range(1, order + 1)}
    for seq in sequences:
        padded = [ngram.BOS] * (order - 1) + list(seq)
        for i in range(order - 1, len(padded)):
            for k in range(1, order + 1):
                counts[k].setdefault(tuple(padded[i - k + 1 : i]), Counter())[padded[i]] += 1
    return counts


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "count_ngrams": [_count_no_eos],
    "add_k_probability": [lambda c, n, v, k=1.0: (c + k) / (n + v)],
    "perplexity": [lambda lp: float(np.exp(-np.sum(lp)))],
    "temper_probabilities": [lambda p, t=1.0: np.asarray(p) ** t / np.sum(np.asarray(p) ** t)],
}
