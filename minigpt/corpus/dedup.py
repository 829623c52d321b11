"""Fuzzy deduplication: MinHash signatures and locality-sensitive hashing (LSH).

GPT-3's authors "fuzzily deduplicated documents" within each dataset with Spark's
``MinHashLSH`` and 10 hashes (Brown et al. 2020, Appendix A), which removed about 10% of the
data. The idea (Broder 1997):

- A document is the *set* of its shingles, here its runs of ``n`` consecutive words
  (:func:`shingle_hashes`, which reuses the stable word hashing of chapter 10's
  :mod:`minigpt.contamination`). Two documents are similar when their sets overlap:
  Jaccard similarity ``|A & B| / |A | B|`` (:func:`jaccard`).
- A random hash ``h(x) = (a x + b) mod p`` orders the shingles at random; the smallest hash
  of ``A`` equals the smallest of ``B`` exactly when the first shingle of ``A | B`` in that
  order lies in both, which happens with probability ``J(A, B)``. ``k`` such hashes give a
  signature of ``k`` numbers (:func:`minhash_signature`), and the share of positions where
  two signatures agree estimates ``J`` (:func:`estimate_jaccard`), with standard error
  ``sqrt(J (1 - J) / k)``.
- Comparing every pair is ``O(N^2)``. LSH cuts each signature into ``bands`` bands of ``rows``
  numbers and calls two documents *candidates* when any band is equal: probability
  ``1 - (1 - J^rows)^bands`` (:func:`candidate_probability`), an S-curve in ``J``. Only
  candidates are compared (:func:`lsh_candidates`).

Spark's ``numHashTables`` is OR-amplification with one MinHash per table, so the paper's
10 hashes are 10 bands of 1 row; Spark then computes the exact distance of every candidate.

Hash values live modulo the Mersenne prime ``p = 2^31 - 1``, so ``a x + b < 2^63`` is exact in
``uint64``. :func:`minhash_signatures` computes all documents at once: the shingles of many
documents are concatenated, hashed by every function in one numpy operation, and reduced per
document with ``np.minimum.reduceat``.

    >>> a, b = hash_functions(128, seed=0)
    >>> x = shingle_hashes("the quick brown fox jumps over the lazy dog", n=2)
    >>> y = shingle_hashes("the quick brown fox jumped over the lazy dog", n=2)
    >>> jaccard(x, y)
    0.6
    >>> round(estimate_jaccard(minhash_signature(x, a, b), minhash_signature(y, a, b)), 2)
    0.64
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minigpt.checks import check_int
from minigpt.contamination import ngram_hashes, normalize_words

__all__ = [
    "PRIME",
    "shingle_hashes",
    "hash_functions",
    "minhash_signature",
    "minhash_signatures",
    "jaccard",
    "estimate_jaccard",
    "candidate_probability",
    "check_bands",
    "lsh_threshold",
    "lsh_candidates",
    "duplicate_clusters",
    "deduplicate",
]

PRIME = np.uint64((1 << 31) - 1)  # the Mersenne prime 2^31 - 1


def shingle_hashes(text: str, n: int = 5) -> np.ndarray:
    """The set of ``text``'s word ``n``-grams, as sorted unique ``uint64`` values below
    :data:`PRIME`, ``(S,)``.

    Words are :func:`minigpt.contamination.normalize_words` (lowercase, no punctuation). A
    text of fewer than ``n`` words (but at least one) is one shingle of all its words. A text
    with no word raises a ``ValueError``: it has no set to compare.

    >>> len(shingle_hashes("a b c a b c", n=3)), len(shingle_hashes("a b", n=3))
    (3, 1)
    """
    n_words = len(normalize_words(text))
    if n_words == 0:
        raise ValueError(f"the document {text[:40]!r} has no words (after lowercasing and "
                         "removing punctuation); MinHash needs at least one shingle")
    return np.unique(ngram_hashes(text, min(n, n_words)) % PRIME)


def hash_functions(num_perm: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_perm`` random hash functions ``h_i(x) = (a_i x + b_i) mod p``: ``(a, b)``, each
    ``(num_perm,)`` ``uint64``, with ``1 <= a_i < p`` and ``0 <= b_i < p``.

    >>> a, b = hash_functions(4, seed=0)
    >>> a.shape, a.dtype.name, bool((a >= 1).all() and (a < PRIME).all())
    ((4,), 'uint64', True)
    """
    check_int("num_perm", num_perm)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(PRIME), size=num_perm, dtype=np.uint64)
    b = rng.integers(0, int(PRIME), size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signature(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinHash signature of one document: ``sig[i] = min over x of (a[i] x + b[i]) mod p``.

    ``shingles`` ``(S,)`` are the document's shingle values (``uint64``, below
    ``p = PRIME = 2^31 - 1``); ``a`` and ``b`` ``(k,)`` are the hash functions of
    :func:`hash_functions`. Returns ``(k,)`` ``uint64``, computed exactly (``a x + b < 2^63``
    fits in ``uint64``). Raises a ``ValueError`` when there is
    no shingle (the minimum of an empty set is undefined), when a value is not below ``p``, or
    when ``a`` and ``b`` differ in shape.

    >>> minhash_signature(np.array([1, 2], dtype=np.uint64), np.array([3, 5], dtype=np.uint64),
    ...                   np.array([0, 1], dtype=np.uint64)).tolist()
    [3, 6]
    """
    x = np.asarray(shingles, dtype=np.uint64)
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"shingles must be a non-empty 1-D array, got shape {x.shape}")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got {a.shape} and {b.shape}")
    if (x >= PRIME).any() or (a >= PRIME).any() or (b >= PRIME).any():
        raise ValueError("shingles, a and b must be below PRIME = 2^31 - 1")
    return ((a[:, None] * x[None, :] + b[:, None]) % PRIME).min(axis=1)


def minhash_signatures(
    texts: Sequence[str],
    num_perm: int = 128,
    n: int = 5,
    seed: int = 0,
    chunk: int = 1 << 22,
) -> np.ndarray:
    """Signatures of many documents at once: ``(len(texts), num_perm)`` ``uint64``.

    Row ``d`` equals ``minhash_signature(shingle_hashes(texts[d], n), *hash_functions(num_perm,
    seed))``. The documents' shingles are concatenated and hashed ``num_perm`` at a time in
    one numpy operation, in slices of about ``chunk`` numbers, then reduced per document with
    ``np.minimum.reduceat``: no Python loop runs per hash or per shingle.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of documents, not one str")
    a, b = hash_functions(num_perm, seed)
    sets = []
    for d, text in enumerate(texts):
        try:
            sets.append(shingle_hashes(text, n))
        except ValueError as exc:
            raise ValueError(f"document {d}: {exc}") from None
    out = np.empty((len(sets), num_perm), dtype=np.uint64)
    if not sets:
        return out
    sizes = np.array([len(s) for s in sets])
    per_slice = max(1, chunk // num_perm)  # shingles per slice
    start = 0
    while start < len(sets):  # a slice of whole documents, about per_slice shingles
        stop = start + max(1, int(np.searchsorted(np.cumsum(sizes[start:]), per_slice)))
        values = np.concatenate(sets[start:stop])
        offsets = np.r_[0, np.cumsum(sizes[start:stop - 1])]
        hashed = (values[None, :] * a[:, None] + b[:, None]) % PRIME  # (k, shingles)
        out[start:stop] = np.minimum.reduceat(hashed, offsets, axis=1).T
        start = stop
    return out


def jaccard(a: np.ndarray | set, b: np.ndarray | set) -> float:
    """Exact Jaccard similarity ``|A & B| / |A | B|`` of two sets (or arrays of unique values).

    >>> jaccard({1, 2, 3}, {2, 3, 4})
    0.5
    """
    a, b = set(np.asarray(list(a)).tolist()), set(np.asarray(list(b)).tolist())
    if not a and not b:
        raise ValueError("the Jaccard similarity of two empty sets is undefined")
    return len(a & b) / len(a | b)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate of the Jaccard similarity: the share of equal positions.

    ``sig_a`` and ``sig_b`` are ``(k,)`` signatures made with the same hash functions,
    compared position by position; the result is a Python ``float``. A ``ValueError`` is
    raised when their shapes differ or they are empty.

    >>> estimate_jaccard(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0]))
    0.5
    """
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim != 1 or sig_a.size == 0:
        raise ValueError("signatures must be non-empty 1-D arrays of one shape, got "
                         f"{sig_a.shape} and {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def check_bands(num_perm: int, bands: int, rows: int) -> None:
    """Raise a ``ValueError`` unless ``bands * rows == num_perm`` (both positive), listing the
    layouts that fit.

    >>> check_bands(10, 10, 1)
    >>> check_bands(10, 3, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bands x rows must equal the number of hashes: 3 x 4 = 12, not 10; ... 5x2, 10x1
    """
    for name, value in (("num_perm", num_perm), ("bands", bands), ("rows", rows)):
        check_int(name, value)
    if bands * rows != num_perm:
        fits = ", ".join(f"{d}x{num_perm // d}" for d in range(1, num_perm + 1)
                         if num_perm % d == 0)
        raise ValueError(f"bands x rows must equal the number of hashes: {bands} x {rows} = "
                         f"{bands * rows}, not {num_perm}; layouts that fit {num_perm} "
                         f"hashes: {fits}")


def candidate_probability(similarity: float | np.ndarray, bands: int,
                          rows: int) -> float | np.ndarray:
    """The chance that LSH makes two documents of Jaccard similarity ``s`` candidates:
    ``1 - (1 - s^rows)^bands``.

    One band of ``rows`` MinHashes matches with probability ``s^rows`` (every row must agree);
    the pair is a candidate unless all ``bands`` bands fail. ``similarity`` is a float or an
    array of them in ``[0, 1]`` (the result has its shape); ``bands`` and ``rows`` are
    positive integers. Anything else raises a ``ValueError``.

    >>> round(candidate_probability(0.5, bands=10, rows=1), 4)
    0.999
    >>> round(candidate_probability(0.5, bands=20, rows=5), 4)
    0.4701
    """
    for name, value in (("bands", bands), ("rows", rows)):
        check_int(name, value)
    s = np.asarray(similarity, dtype=np.float64)
    if not ((s >= 0) & (s <= 1)).all():
        raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
    p = 1.0 - (1.0 - s**rows) ** bands
    return float(p) if p.ndim == 0 else p


def lsh_threshold(bands: int, rows: int) -> float:
    """The similarity near which the S-curve rises most steeply, about ``(1/bands)^(1/rows)``.

    >>> round(lsh_threshold(20, 5), 3)
    0.549
    """
    return (1.0 / bands) ** (1.0 / rows)


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Pairs of documents that share at least one band: ``(P, 2)`` int64, ``i < j``, sorted.

    ``signatures`` ``(N, bands * rows)``. For each band, documents are grouped by the band's
    values (``np.unique`` over rows); every pair inside a group is a candidate.
    """
    sig = np.asarray(signatures)
    if sig.ndim != 2:
        raise ValueError(f"signatures must be (N, k), got shape {sig.shape}")
    check_bands(sig.shape[1], bands, rows)
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for band in range(bands):
        block = np.ascontiguousarray(sig[:, band * rows:(band + 1) * rows])
        _, group, counts = np.unique(block, axis=0, return_inverse=True, return_counts=True)
        group = group.reshape(-1)
        for g in np.flatnonzero(counts > 1):
            members = np.flatnonzero(group == g)
            i, j = np.triu_indices(len(members), k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
    return np.unique(np.concatenate(pairs), axis=0)


def duplicate_clusters(n_docs: int, pairs: np.ndarray) -> np.ndarray:
    """Label each of ``n_docs`` documents with the smallest index of its connected component in
    the graph whose edges are ``pairs`` ``(P, 2)``: ``(n_docs,)`` int64 (union-find).

    >>> duplicate_clusters(5, np.array([[0, 3], [3, 4]])).tolist()
    [0, 1, 2, 0, 0]
    """
    parent = np.arange(n_docs)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.asarray(pairs, dtype=np.int64).reshape(-1, 2).tolist():
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n_docs)], dtype=np.int64)


def deduplicate(signatures: np.ndarray, bands: int, rows: int,
                threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep one document per cluster of near-duplicates: ``(keep (N,) bool, pairs (P, 2))``.

    Candidate pairs come from :func:`lsh_candidates`; with a ``threshold``, a candidate counts
    only if its estimated Jaccard similarity is at least ``threshold`` (as Spark's
    ``approxSimilarityJoin`` checks the distance of each candidate). In each cluster the
    first document is kept.
    """
    sig = np.asarray(signatures)
    pairs = lsh_candidates(sig, bands, rows)
    if threshold is not None and len(pairs):
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        similar = (sig[pairs[:, 0]] == sig[pairs[:, 1]]).mean(axis=1) >= threshold
        pairs = pairs[similar]
    labels = duplicate_clusters(len(sig), pairs)
    return labels == np.arange(len(sig)), pairs
