"""Tests for minigpt.corpus.dedup (MinHash and LSH, GPT-3's fuzzy deduplication, Appendix A).

The reference is the ``datasketch`` package. Its MinHash uses other hash functions (SHA-1 and
its own permutations), so signatures differ value by value; what must agree is what they
estimate: both estimates of the Jaccard similarity must be unbiased and equally accurate on
the same shingle sets. Its ``MinHashLSH``, given our signatures and the same bands x rows,
must return exactly the candidates :func:`lsh_candidates` returns.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.corpus.dedup import (
    PRIME,
    candidate_probability,
    check_bands,
    deduplicate,
    duplicate_clusters,
    estimate_jaccard,
    hash_functions,
    jaccard,
    lsh_candidates,
    minhash_signature,
    minhash_signatures,
    shingle_hashes,
)
from minigpt.corpus.webpages import make_crawl, near_copy

needs_datasketch = pytest.mark.skipif(importlib.util.find_spec("datasketch") is None,
                                      reason="datasketch is the reference (pip install datasketch)")


def pairs_with_known_jaccard(n_pairs: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of shingle sets of 200 elements sharing a random number of them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_pairs):
        shared = int(rng.integers(0, 201))
        values = rng.choice(int(PRIME), size=400 - shared, replace=False).astype(np.uint64)
        a = values[:200]
        b = np.concatenate([values[:shared], values[200:]])
        out.append((np.unique(a), np.unique(b)))
    return out


@needs_datasketch
@pytest.mark.parametrize("num_perm", [64, 256])
def test_jaccard_estimates_as_accurate_as_datasketch(num_perm):
    from datasketch import MinHash

    a, b = hash_functions(num_perm, seed=1)
    ours, theirs, truth = [], [], []
    for x, y in pairs_with_known_jaccard(60):
        truth.append(jaccard(x, y))
        ours.append(estimate_jaccard(minhash_signature(x, a, b), minhash_signature(y, a, b)))
        mx, my = MinHash(num_perm=num_perm, seed=1), MinHash(num_perm=num_perm, seed=1)
        mx.update_batch([v.tobytes() for v in x])
        my.update_batch([v.tobytes() for v in y])
        theirs.append(mx.jaccard(my))
    ours, theirs, truth = map(np.array, (ours, theirs, truth))
    se = np.sqrt(truth * (1 - truth) / num_perm).mean()  # typical standard error
    assert abs((ours - truth).mean()) < 2 * se / np.sqrt(len(truth)) + 0.01  # unbiased
    assert abs((theirs - truth).mean()) < 2 * se / np.sqrt(len(truth)) + 0.01
    err_ours, err_theirs = np.abs(ours - truth).mean(), np.abs(theirs - truth).mean()
    assert err_ours < 1.5 * err_theirs + 0.005, (err_ours, err_theirs)
    assert np.abs(ours - theirs).max() < 6 * se


@needs_datasketch
@pytest.mark.parametrize(("bands", "rows"), [(10, 1), (16, 8), (32, 4)])
def test_lsh_candidates_equal_datasketch_minhashlsh(bands, rows):
    from datasketch import MinHash, MinHashLSH

    crawl = make_crawl(150, seed=3)
    sig = minhash_signatures([p.text for p in crawl], num_perm=bands * rows, n=5)
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    sketches = []
    for i, row in enumerate(sig):
        m = MinHash(num_perm=bands * rows, hashvalues=row, scheme="affine32")
        lsh.insert(i, m)
        sketches.append(m)
    want = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    assert {tuple(p) for p in lsh_candidates(sig, bands, rows).tolist()} == want


def test_batched_signatures_equal_one_by_one():
    texts = [p.text for p in make_crawl(40, seed=1)] + ["one", "two words", "a b c d e f"]
    a, b = hash_functions(32, seed=7)
    sig = minhash_signatures(texts, num_perm=32, n=5, seed=7, chunk=500)  # several slices
    for text, row in zip(texts, sig, strict=True):
        np.testing.assert_array_equal(row, minhash_signature(shingle_hashes(text, 5), a, b))


def test_planted_near_copies_are_found():
    crawl = make_crawl(300, seed=0, edit_rates=(0.0, 0.02))
    sig = minhash_signatures([p.text for p in crawl], num_perm=128)
    keep, pairs = deduplicate(sig, bands=16, rows=8, threshold=0.5)
    found = {tuple(p) for p in pairs.tolist()}
    planted = {(min(i, p.original), max(i, p.original)) for i, p in enumerate(crawl)
               if p.kind == "near_copy"}
    assert len(planted & found) >= 0.9 * len(planted)
    labels = duplicate_clusters(len(crawl), pairs)
    together = [labels[i] == labels[p.original] for i, p in enumerate(crawl)
                if p.kind == "near_copy"]
    assert np.mean(together) >= 0.9  # a copy and its original share a cluster
    assert (~keep).sum() >= 0.9 * len(together)  # ... so one of them is dropped


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 1), st.integers(1, 40), st.integers(1, 12))
def test_candidate_probability_bounds_and_monotone(s, bands, rows):
    p = candidate_probability(s, bands, rows)
    assert 0 <= p <= 1
    assert candidate_probability(min(1.0, s + 0.05), bands, rows) >= p
    assert candidate_probability(s, bands + 1, rows) >= p  # more bands: more candidates
    assert candidate_probability(s, bands, rows + 1) <= p  # longer bands: fewer


def test_s_curve_matches_simulation():
    """Pairs with known Jaccard become candidates at the rate the formula predicts."""
    a, b = hash_functions(20, seed=2)
    hits = np.array([np.any((minhash_signature(x, a, b) == minhash_signature(y, a, b))
                            .reshape(5, 4).all(axis=1)) for x, y in pairs_with_known_jaccard(0)])
    assert hits.size == 0
    pairs = pairs_with_known_jaccard(400, seed=3)
    sims = np.array([jaccard(x, y) for x, y in pairs])
    hits = []
    for k, (x, y) in enumerate(pairs):
        a, b = hash_functions(20, seed=100 + k)
        equal = minhash_signature(x, a, b) == minhash_signature(y, a, b)
        hits.append(equal.reshape(5, 4).all(axis=1).any())
    assert np.mean(hits) == pytest.approx(candidate_probability(sims, 5, 4).mean(), abs=0.06)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30),
       st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_estimate_is_one_for_equal_sets_and_jaccard_is_symmetric(x, y):
    a, b = hash_functions(16, seed=0)
    sx = np.unique(np.array(x, dtype=np.uint64))
    assert estimate_jaccard(minhash_signature(sx, a, b), minhash_signature(sx, a, b)) == 1.0
    assert jaccard(x, y) == jaccard(y, x)


def test_near_copy_and_clusters():
    text = "the quick brown fox jumps over the lazy dog " * 5
    assert near_copy(text, np.random.default_rng(0), 0.0) == " ".join(text.split())
    assert duplicate_clusters(4, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2, 3]
    assert duplicate_clusters(4, np.array([[2, 3], [1, 3]])).tolist() == [0, 1, 1, 1]


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="document 1: .* has no words"):
        minhash_signatures(["fine text here", "?!", "more"])
    with pytest.raises(ValueError, match=r"3 x 4 = 12, not 10; layouts that fit 10 hashes: "
                                         r"1x10, 2x5, 5x2, 10x1"):
        check_bands(10, 3, 4)
    with pytest.raises(ValueError, match="bands x rows"):
        lsh_candidates(np.zeros((3, 10), dtype=np.uint64), bands=4, rows=2)
    with pytest.raises(ValueError, match="non-empty"):
        minhash_signature(np.array([], dtype=np.uint64), *hash_functions(4))
    with pytest.raises(ValueError, match="similarity must be in"):
        candidate_probability(1.2, 10, 1)
    with pytest.raises(ValueError, match="same shape|one shape"):
        estimate_jaccard(np.zeros(3), np.zeros(4))
