"""Tests for minigpt.contamination (GPT-3's 13-gram overlap check, Appendix C).

The reference is ``nltk.util.ngrams``: a set of word tuples built with nltk from the same
normalized words must flag exactly the items the hashed index flags. Hashes must not depend on
the process (Python's own ``hash`` of a string does), which a subprocess with another
``PYTHONHASHSEED`` checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_nltk
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.contamination import (
    NgramIndex,
    build_index,
    choose_ngram_length,
    contamination_report,
    filter_document,
    find_contaminated,
    ngram_hashes,
    normalize_words,
)

CORPUS = (
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money "
    "in my purse, and nothing particular to interest me on shore, I thought I would sail about "
    "a little and see the watery part of the world."
)
WORDS = normalize_words(CORPUS)


def item_copying(k: int, start: int = 3) -> str:
    """An item whose only overlap with CORPUS is ``k`` consecutive corpus words."""
    return "zebra quartz " + " ".join(WORDS[start : start + k]) + " xylophone vortex"


def test_thirteen_copied_words_are_flagged_twelve_are_not():
    index = build_index(CORPUS)
    assert index.n == 13
    assert find_contaminated([item_copying(13), item_copying(12), item_copying(30)], index) == [
        True, False, True]


def test_case_and_punctuation_do_not_matter():
    index = build_index(CORPUS)
    shouted = "SOME YEARS AGO -- NEVER MIND HOW LONG PRECISELY -- HAVING LITTLE OR NO MONEY!!"
    assert find_contaminated([shouted, shouted.replace("PRECISELY", "EXACTLY")], index) == [
        True, False]
    assert normalize_words("Ishmael's   purse,\tand\nshore.") == ["ishmaels", "purse", "and",
                                                                  "shore"]


def nltk_ngrams(words: list[str], n: int):
    """``nltk.util.ngrams``, the reference; only the tests marked ``needs_nltk`` call it."""
    from nltk.util import ngrams

    return ngrams(words, n)


def naive_dirty(items: list[str], corpus_docs: list[str], n: int) -> list[bool]:
    grams = {g for doc in corpus_docs for g in nltk_ngrams(normalize_words(doc), n)}
    return [any(g in grams for g in nltk_ngrams(normalize_words(item), n)) for item in items]


words = st.sampled_from(["a", "B", "c.", "d,", "E!", "'f'", "g"])
texts = st.lists(words, min_size=0, max_size=30).map(" ".join)


@needs_nltk
@settings(max_examples=150, deadline=None)
@given(docs=st.lists(texts, min_size=1, max_size=4), items=st.lists(texts, max_size=6),
       n=st.integers(1, 5))
def test_matches_nltk_ngram_sets(docs, items, n):
    index = build_index(docs, n=n)
    assert find_contaminated(items, index) == naive_dirty(items, docs, n)
    distinct = {g for doc in docs for g in nltk_ngrams(normalize_words(doc), n)}
    assert len(index) == len(distinct)  # no hash collisions on these
    report = contamination_report(items, index)
    for item, overlaps, short in zip(items, report.overlaps, report.too_short, strict=True):
        grams = list(nltk_ngrams(normalize_words(item), n))
        assert short == (not grams)
        assert overlaps == sum(g in distinct for g in grams)


def test_ngram_hashes_are_stable_across_processes():
    text = "Stable hashes survive a restart of Python, unlike hash(str)."
    here = ngram_hashes(text, n=3).tolist()
    code = ("import json; from minigpt.contamination import ngram_hashes; "
            f"print(json.dumps(ngram_hashes({text!r}, n=3).tolist()))")
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout
        assert json.loads(out) == here
    # Fixed values guard against silent changes of the hash (saved indexes would break).
    assert ngram_hashes("the cat sat", n=2).tolist() == [7566757537511453933,
                                                         10556871769216296032]


def test_hash_is_the_documented_polynomial():
    """Pure-Python big-integer reference: BLAKE2b word values, Horner's rule modulo 2^64."""

    def word(w: str) -> int:
        return int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")

    words = normalize_words("The quick, brown fox -- jumps over the lazy dog!")
    expected = []
    for i in range(len(words) - 3 + 1):
        h = 0
        for w in words[i : i + 3]:
            h = (h * 0x100000001B3 + word(w)) % 2**64
        expected.append(h)
    assert ngram_hashes("The quick, brown fox -- jumps over the lazy dog!", n=3).tolist() == (
        expected)


def test_hash_properties():
    assert ngram_hashes("a b c", n=3).dtype == np.uint64
    assert len(ngram_hashes("a b c", n=4)) == 0
    h = ngram_hashes("x y z x y z", n=3)
    assert h[0] == h[3] and len(set(h.tolist())) == 3
    assert ngram_hashes("a b", n=2)[0] != ngram_hashes("b a", n=2)[0]  # order matters


def test_index_of_documents_does_not_cross_boundaries():
    joined = build_index("one two three four", n=3)
    split = build_index(["one two", "three four"], n=3)
    assert len(joined) == 2 and len(split) == 0
    assert split.n_documents == 2
    assert find_contaminated(["one two three"], split) == [False]
    empty = build_index([], n=3)
    assert len(empty) == 0 and find_contaminated(["a b c"], empty) == [False]


def test_max_documents_drops_boilerplate():
    boiler = "all rights reserved by the publisher"
    docs = [f"story {i} begins here. {boiler}" for i in range(12)]
    index = build_index(docs, n=4, max_documents=10)
    assert find_contaminated(["rights reserved by the", "story 3 begins here"], index) == [
        False, True]
    assert len(build_index(docs, n=4)) > len(index)


def test_report_and_ngram_length():
    index = build_index(CORPUS)
    clean = "zebra quartz " * 10
    report = contamination_report([item_copying(13), "too short", clean], index)
    assert report.dirty == [True, False, False]
    assert report.too_short == [False, True, False]
    assert report.overlaps == [1, 0, 0]
    assert report.fraction_dirty == pytest.approx(1 / 3)
    assert report.summary() == "1 of 3 items dirty (33.3%) at n=13; 1 too short to check"
    assert choose_ngram_length(["w " * 40] * 100) == 13
    assert choose_ngram_length(["w " * 5] * 100) == 8
    assert choose_ngram_length([("w " * k) for k in range(1, 101)]) == 8
    assert choose_ngram_length([("w " * k) for k in range(6, 106)]) == 10  # 10.95 rounded down


def test_filter_document():
    bench = build_index(["the answer to the question is forty two"], n=5)
    clean = "Nothing to see here. " * 30
    assert filter_document(clean, bench) == [clean]
    leak = "a" * 400 + " The answer, to the question is: forty two! " + "b" * 400
    pieces = filter_document(leak, bench)
    assert pieces == ["a" * 201, "b" * 201]  # 200 characters cut on each side of the 5-gram
    assert filter_document(leak, bench, min_piece=250) == []
    many = " ".join(["x" * 300, "the answer to the question is"] * 12)
    assert filter_document(many, bench, window=10) == []  # split into 13 pieces: dropped
    assert len(filter_document(many, bench, window=10, max_pieces=20)) == 12


def test_fast_enough_for_megabytes():
    """About 1 MB of text; the 5 MB figure is in the report, not asserted (no timed tests)."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    text = " ".join(vocab[i] for i in rng.integers(0, len(vocab), 200_000))
    index = build_index(text)
    assert len(index) == 200_000 - 12


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ngram_hashes("a b", n=0), "n must be a positive integer"),
        (lambda: build_index("a b", max_documents=0), "max_documents must be None or a positive"),
        (lambda: find_contaminated("one string", build_index("a")), "not one string"),
        (lambda: find_contaminated(["x"], {"a"}), "index must be an NgramIndex"),
        (lambda: normalize_words(b"bytes"), "text must be a str"),
        (lambda: choose_ngram_length([]), "items is empty"),
        (lambda: choose_ngram_length(["a"], low=9, high=8), "need 1 <= low <= high"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_index_type():
    assert isinstance(build_index("a b c"), NgramIndex)
