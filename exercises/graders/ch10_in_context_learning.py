"""Graders for chapter 10 (in-context learning and data contamination).

Each grader checks known cases, then compares the student's function with minigpt's, and
raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples, close, expect_value_error
from minigpt.contamination import (
    build_index,
    choose_ngram_length,
    filter_document,
    ngram_hashes,
    normalize_words,
)
from minigpt.tasks import normalize_prediction, score

_HERE = "exercises.graders.ch10_in_context_learning"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import re",
    "from collections.abc import Iterable, Sequence",
    "",
    "import numpy as np",
    "",
    "from minigpt.contamination import NgramIndex, build_index, ngram_hashes, normalize_words",
    "from minigpt.tasks import normalize_prediction",
)

EXERCISES = (
    Exercise(
        "10.1",
        "score",
        "minigpt.tasks:score",
        f"{_HERE}:grade_score",
        "Exact-match accuracy of a model's continuations against the expected answers.",
    ),
    Exercise(
        "10.2",
        "choose_ngram_length",
        "minigpt.contamination:choose_ngram_length",
        f"{_HERE}:grade_choose_ngram_length",
        "GPT-3's per-benchmark n-gram length: the 5th percentile of item lengths, clamped.",
    ),
    Exercise(
        "10.3",
        "filter_document",
        "minigpt.contamination:filter_document",
        f"{_HERE}:grade_filter_document",
        "Cut every benchmark n-gram, with a window around it, out of a training document.",
    ),
)


# --------------------------------------------------------------------------------------------
# 10.1 score


def _random_predictions(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    words = ["124", "-5", "cold", "fast", "objects", "13", "right"]
    answers = [rng.choice(words) for _ in range(n)]
    predictions = []
    for answer in answers:
        kind = rng.randrange(6)
        if kind == 0:
            predictions.append(" " + answer)
        elif kind == 1:
            predictions.append(f" {answer}\n\nQ: What is 3 plus 4?")
        elif kind == 2:
            predictions.append(f"\n {answer} \nmore")
        elif kind == 3:
            predictions.append(" " + rng.choice(words))
        elif kind == 4:
            predictions.append(f" {answer} and more")
        else:
            predictions.append(answer.upper() + "\n")
    return predictions, answers


def grade_score(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, score)
    close(fn([" cold"], ["cold"]), 1.0, "one right answer with GPT's leading space")
    close(fn([" 124\n\nQ: What is 3 plus 4?"], ["124"]), 1.0,
          "only the first line of the continuation is the answer")
    close(fn([" 12"], ["124"]), 0.0, "a prefix of the answer is not the answer")
    close(fn([" 124 apples"], ["124"]), 0.0, "exact match: extra words on the line are wrong")
    close(fn(["Cold"], ["cold"]), 0.0, "exact match is case-sensitive")
    close(fn(["\n\n fast \n"], ["fast"]), 1.0,
          "blank lines before the answer do not count (normalize_prediction)")
    close(fn([" 5", " 6", " 7", " 8"], ["5", "6", "0", "0"]), 0.5, "two right of four")
    rng = random.Random(0)
    for n in (1, 5, 40):
        predictions, answers = _random_predictions(rng, n)
        close(fn(predictions, answers), score(predictions, answers), f"{n} random predictions")
    expect_value_error(lambda: fn([" 1", " 2"], ["1"]), "2 predictions for 1 answer")
    expect_value_error(lambda: fn([], []), "no answers at all")
    expect_value_error(lambda: fn(" 1", "1"), "a single string instead of a list")


# --------------------------------------------------------------------------------------------
# 10.2 choose_ngram_length


def _items(rng: random.Random, n: int, low: int, high: int) -> list[str]:
    vocab = ["the", "cat", "sat", "--", "on", "mat!", "What", "is", "48", "plus", "76?", "..."]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(low, high))) for _ in range(n)]


def grade_choose_ngram_length(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, choose_ngram_length)
    assert fn(["word " * 40] * 10) == 13, "long items: the paper's maximum, 13"
    assert fn(["word " * 3] * 10) == 8, "short items: the minimum, 8 (they stay too short)"
    assert fn(["a b c d e f g h i j"] * 5) == 10, "every item has 10 words: n = 10"
    assert fn(["one -- two ... three"] * 20, low=1) == 3, (
        "count words as normalize_words does: a token of punctuation only is not a word")
    assert fn(["x " * k for k in range(1, 101)], low=1, high=100) == 5, (
        "lengths 1..100: the 5th percentile is 5.95, rounded down to 5")
    rng = random.Random(0)
    for low, high in [(8, 13), (1, 13), (3, 5), (10, 10)]:
        for _ in range(20):
            items = _items(rng, rng.randint(1, 60), 1, 25)
            assert fn(items, low, high) == choose_ngram_length(items, low, high), (
                f"{len(items)} items, low={low}, high={high}: want "
                f"{choose_ngram_length(items, low, high)}, got {fn(items, low, high)}")
    expect_value_error(lambda: fn([]), "no items")
    expect_value_error(lambda: fn(["a b"], 9, 8), "low > high")
    expect_value_error(lambda: fn(["a b"], 0, 8), "low = 0")


# --------------------------------------------------------------------------------------------
# 10.3 filter_document


def _same(got: Any, want: list[str], what: str) -> None:
    assert isinstance(got, list) and got == want, (
        f"{what}: want pieces of lengths {[len(p) for p in want]}, got "
        f"{[len(p) for p in got] if isinstance(got, list) else got!r}")


def grade_filter_document(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, filter_document)
    bench = build_index("alpha beta gamma", n=3)
    clean = "x " * 300
    _same(fn(clean, bench), [clean], "a document with no collision comes back whole")
    doc = "x" * 300 + " Alpha beta, gamma " + "y" * 300
    _same(fn(doc, bench, window=0, min_piece=1), ["x" * 300 + " ", " " + "y" * 300],
          "window=0 cuts exactly the colliding words (case and punctuation ignored)")
    short = "x" * 150 + " alpha beta gamma " + "y" * 400
    _same(fn(short, bench, window=100), [short[267:]],
          "the piece before the cut is shorter than min_piece=200 characters: discard it")
    near = "x" * 300 + " alpha beta gamma " + "z" * 50 + " alpha beta gamma " + "y" * 300
    _same(fn(near, bench, window=100, min_piece=1), filter_document(near, bench, 100, 1),
          "two collisions whose windows overlap make one cut, not two")
    many = " ".join(["alpha beta gamma " + "w" * 30] * 12)
    _same(fn(many, bench, window=0, min_piece=1), [],
          "12 collisions split the document into more than max_pieces=10 pieces: drop it")
    _same(fn(many, bench, window=0, min_piece=1, max_pieces=20),
          filter_document(many, bench, 0, 1, 20), "max_pieces=20 keeps it")
    rng = random.Random(0)
    vocab = ["alpha", "beta", "gamma", "delta", "Alpha,", "--", "eps", "zeta", "eta"]
    for n in (2, 3, 5):
        bench = build_index([" ".join(rng.choice(vocab) for _ in range(8)) for _ in range(3)], n)
        for _ in range(30):
            document = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 120)))
            for window, min_piece, max_pieces in [(0, 1, 100), (5, 10, 3), (20, 40, 10)]:
                want = filter_document(document, bench, window, min_piece, max_pieces)
                got = fn(document, bench, window, min_piece, max_pieces)
                _same(got, want, f"random document of {len(document)} characters, n={n}, "
                      f"window={window}, min_piece={min_piece}, max_pieces={max_pieces}")


# --------------------------------------------------------------------------------------------
# Plausible wrong answers: CI checks that each grader rejects them.


def _score_raw(predictions, answers):  # noqa: ANN001, ANN202 - no normalisation
    score(predictions, answers)
    return sum(p == a for p, a in zip(predictions, answers, strict=True)) / len(answers)


def _score_strip_only(predictions, answers):  # noqa: ANN001, ANN202 - the whole text counts
    score(predictions, answers)
    return sum(p.strip() == a for p, a in zip(predictions, answers, strict=True)) / len(answers)


def _score_prefix(predictions, answers):  # noqa: ANN001, ANN202 - startswith instead of ==
    score(predictions, answers)
    hits = sum(normalize_prediction(p).startswith(a) for p, a in
               zip(predictions, answers, strict=True))
    return hits / len(answers)


def _score_no_checks(predictions, answers):  # noqa: ANN001, ANN202
    hits = sum(normalize_prediction(p) == a for p, a in zip(predictions, answers, strict=False))
    return hits / max(len(answers), 1)


def _choose_median(items, low=8, high=13):  # noqa: ANN001, ANN202
    lengths = [len(normalize_words(item)) for item in items]
    choose_ngram_length(items, low, high)
    return int(np.clip(int(np.median(lengths)), low, high))


def _choose_split_words(items, low=8, high=13):  # noqa: ANN001, ANN202 - punctuation counts
    choose_ngram_length(items, low, high)
    lengths = [len(item.split()) for item in items]
    return int(np.clip(int(np.percentile(lengths, 5)), low, high))


def _choose_rounded(items, low=8, high=13):  # noqa: ANN001, ANN202 - rounds to nearest
    choose_ngram_length(items, low, high)
    lengths = [len(normalize_words(item)) for item in items]
    return int(np.clip(round(float(np.percentile(lengths, 5))), low, high))


def _choose_unclamped(items, low=8, high=13):  # noqa: ANN001, ANN202
    choose_ngram_length(items, low, high)
    return int(np.percentile([len(normalize_words(item)) for item in items], 5))


def _filter_keep_short(document, index, window=200, min_piece=200, max_pieces=10):  # noqa: ANN001, ANN202
    return filter_document(document, index, window, 0, max_pieces)


def _filter_never_drop(document, index, window=200, min_piece=200, max_pieces=10):  # noqa: ANN001, ANN202
    return filter_document(document, index, window, min_piece, 10**9)


def _filter_no_window(document, index, window=200, min_piece=200, max_pieces=10):  # noqa: ANN001, ANN202
    return filter_document(document, index, 0, min_piece, max_pieces)


def _filter_first_word_only(document, index, window=200, min_piece=200, max_pieces=10):  # noqa: ANN001, ANN202
    """Cuts from the first word of each colliding n-gram only, not through its last word."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", document)
             if re.sub(r"[^\w\s]", "", m.group().lower())]
    hits = np.flatnonzero(index.contains(ngram_hashes(document, index.n)))
    if len(hits) == 0:
        return [document]
    pieces, start = [], 0
    for i in hits:
        a, b = max(0, spans[i][0] - window), min(len(document), spans[i][1] + window)
        if a > start:
            pieces.append(document[start:a])
        start = max(start, b)
    if start < len(document):
        pieces.append(document[start:])
    if len(pieces) > max_pieces:
        return []
    return [p for p in pieces if len(p) >= min_piece]


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "score": [_score_raw, _score_strip_only, _score_prefix, _score_no_checks],
    "choose_ngram_length": [_choose_median, _choose_split_words, _choose_rounded,
                            _choose_unclamped],
    "filter_document": [_filter_keep_short, _filter_never_drop, _filter_no_window,
                        _filter_first_word_only],
}
