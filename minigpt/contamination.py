"""Test-set contamination: GPT-3's 13-gram overlap check (Brown et al. 2020, Appendix C).

A model trained on a web crawl may have read the benchmark it is tested on. GPT-3's authors
looked for **13-grams**, runs of 13 consecutive words, shared between the training data and each
test item. A "word" there is lowercase, whitespace-delimited, with no punctuation, so
``"The cat, sat!"`` reads as ``the cat sat``. An item that shares any 13-gram with the training
data is flagged as dirty.

The index is a sorted array of 64-bit hashes of every 13-gram of the corpus. The hashes must be
the same in every process (an index saved today is read by another Python tomorrow), and
Python's ``hash(str)`` is randomized per process, so each distinct word gets a stable 64-bit
value from BLAKE2b, and a window of ``n`` word values ``v_0 .. v_{n-1}`` is hashed as the
polynomial ``v_0 P^{n-1} + v_1 P^{n-2} + ... + v_{n-1}`` modulo ``2^64``, computed for all
windows at once with numpy (whose unsigned integers wrap around modulo ``2^64``).

    >>> corpus = "It was the best of times, it was the worst of times, it was the age of wisdom."
    >>> index = build_index(corpus, n=13)
    >>> copied_13 = "IT WAS THE BEST OF TIMES, it was the worst of times, it -- said Dickens"
    >>> copied_12 = "it was the best of times, it was the worst of times, said Dickens"
    >>> find_contaminated([copied_13, copied_12], index)
    [True, False]

The paper also filtered the *training* data: it removed each colliding 13-gram with 200
characters around it (:func:`filter_document`), and ignored 13-grams found in more than 10
training documents, which are boilerplate rather than leaked answers (``max_documents``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ContaminationReport",
    "NgramIndex",
    "build_index",
    "choose_ngram_length",
    "contamination_report",
    "filter_document",
    "find_contaminated",
    "ngram_hashes",
    "normalize_words",
]

_PUNCTUATION = re.compile(r"[^\w\s]")
_TOKEN = re.compile(r"\S+")
_BASE = np.uint64(0x100000001B3)  # an odd multiplier (the 64-bit FNV prime)


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as the overlap check sees them: lowercased, punctuation removed.

    Punctuation is deleted, not turned into a space (``"don't"`` is ``"dont"``); a token made
    only of punctuation disappears.

    >>> normalize_words("Hello, World -- it's 9:30!")
    ['hello', 'world', 'its', '930']
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _PUNCTUATION.sub("", text.lower()).split()


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_values(words: Sequence[str]) -> np.ndarray:
    """A stable 64-bit value per word (BLAKE2b), each distinct word hashed once."""
    ids: dict[str, int] = {}
    positions = [ids.setdefault(w, len(ids)) for w in words]
    table = np.fromiter((_word_hash(w) for w in ids), dtype=np.uint64, count=len(ids))
    return table[np.asarray(positions, dtype=np.int64)]


def _window_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of ``n`` values, modulo 2^64 (Horner's rule)."""
    m = len(values) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        h = h * _BASE + values[k : k + m]
    return h


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (GPT-3 used 13), got {n!r}")


def ngram_hashes(text: str, n: int = 13) -> np.ndarray:
    """Stable 64-bit hashes of every ``n``-gram of ``normalize_words(text)``, in order.

    A text of ``w`` words has ``max(0, w - n + 1)`` of them; the result is the same in every
    process and on every platform.

    >>> h = ngram_hashes("a b c a b", n=2)
    >>> len(h), bool(h[0] == h[3]), bool(h[0] == h[1])
    (4, True, False)
    """
    _check_n(n)
    return _window_hashes(_word_values(normalize_words(text)), n)


@dataclass(frozen=True)
class NgramIndex:
    """The ``n``-grams of a corpus: ``hashes`` is a sorted array of distinct uint64 hashes."""

    hashes: np.ndarray
    n: int
    n_documents: int

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """A boolean array: which of ``hashes`` are in the index (binary search)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        if len(self.hashes) == 0:
            return np.zeros(hashes.shape, dtype=bool)
        where = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return self.hashes[where] == hashes


def build_index(
    corpus: str | Iterable[str], n: int = 13, max_documents: int | None = None
) -> NgramIndex:
    """Index every ``n``-gram of ``corpus``: one string, or an iterable of documents.

    Documents are read one at a time (a generator over files streams), and ``n``-grams do not
    span two documents. With ``max_documents``, ``n``-grams that occur in more than that many
    documents are dropped, as GPT-3's filtering ignored 13-grams found in more than 10 training
    documents.

    >>> docs = ["the quick brown fox", "the quick brown dog", "the quick brown cat"]
    >>> len(build_index(docs, n=3)), len(build_index(docs, n=3, max_documents=2))
    (4, 3)
    """
    _check_n(n)
    if max_documents is not None and (isinstance(max_documents, bool)
                                      or not isinstance(max_documents, int) or max_documents < 1):
        raise ValueError(f"max_documents must be None or a positive integer, got {max_documents!r}")
    documents = [corpus] if isinstance(corpus, str) else corpus
    per_document, count = [], 0
    for doc in documents:
        per_document.append(np.unique(ngram_hashes(doc, n)))
        count += 1
    if not per_document:
        return NgramIndex(np.empty(0, dtype=np.uint64), n, 0)
    if max_documents is None:
        hashes = np.unique(np.concatenate(per_document))
    else:
        hashes, counts = np.unique(np.concatenate(per_document), return_counts=True)
        hashes = hashes[counts <= max_documents]
    return NgramIndex(hashes, n, count)


@dataclass(frozen=True)
class ContaminationReport:
    """Per item: ``dirty`` (shares an n-gram), ``overlaps`` (how many of its n-gram positions
    are in the index) and ``too_short`` (fewer than ``n`` words: cannot be checked)."""

    dirty: list[bool]
    overlaps: list[int]
    too_short: list[bool]
    n: int

    @property
    def fraction_dirty(self) -> float:
        """Share of the items flagged (0 for no items)."""
        return sum(self.dirty) / len(self.dirty) if self.dirty else 0.0

    def summary(self) -> str:
        """One line, e.g. ``'3 of 10 items dirty (30.0%) at n=13; 1 too short to check'``."""
        return (f"{sum(self.dirty)} of {len(self.dirty)} items dirty "
                f"({100 * self.fraction_dirty:.1f}%) at n={self.n}; "
                f"{sum(self.too_short)} too short to check")


def contamination_report(items: Iterable[str], index: NgramIndex) -> ContaminationReport:
    """Check every item against ``index`` (with the index's ``n``).

    >>> index = build_index("one two three four five", n=3)
    >>> contamination_report(["Two, three... FOUR!", "three five", "one three"], index).summary()
    '1 of 3 items dirty (33.3%) at n=3; 2 too short to check'
    """
    if not isinstance(index, NgramIndex):
        raise ValueError(f"index must be an NgramIndex (see build_index), got "
                         f"{type(index).__name__}")
    if isinstance(items, str):
        raise ValueError("items must be a list of strings, not one string")
    overlaps, too_short = [], []
    for item in items:
        hashes = ngram_hashes(item, index.n)
        too_short.append(len(hashes) == 0)
        overlaps.append(int(index.contains(hashes).sum()))
    return ContaminationReport([k > 0 for k in overlaps], overlaps, too_short, index.n)


def find_contaminated(items: Iterable[str], index: NgramIndex) -> list[bool]:
    """For each item, whether it shares at least one ``n``-gram with the indexed corpus."""
    return contamination_report(items, index).dirty


def choose_ngram_length(items: Iterable[str], low: int = 8, high: int = 13) -> int:
    """GPT-3's per-benchmark ``n``: the 5th percentile of item lengths in words, within
    ``[low, high]`` (Appendix C used 8 and 13), so short items can still be checked.

    The percentile is rounded down (the paper does not say how it rounded).

    Raises ``ValueError`` if ``items`` is empty or unless ``1 <= low <= high``.

    >>> choose_ngram_length(["word " * 10] * 19 + ["word " * 3])
    9
    """
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got low={low}, high={high}")
    lengths = [len(normalize_words(item)) for item in items]
    if not lengths:
        raise ValueError("items is empty: no lengths to take a percentile of")
    return int(np.clip(int(np.percentile(lengths, 5)), low, high))


def _words_with_spans(text: str) -> Iterator[tuple[str, int, int]]:
    """(word, start, end) for every whitespace token that keeps a character after cleaning."""
    for match in _TOKEN.finditer(text):
        word = _PUNCTUATION.sub("", match.group().lower())
        if word:
            yield word, match.start(), match.end()


def filter_document(
    document: str,
    index: NgramIndex,
    window: int = 200,
    min_piece: int = 200,
    max_pieces: int = 10,
) -> list[str]:
    """GPT-3's cleaning of one *training* document against the benchmarks' ``index``.

    Every ``n``-gram that collides is cut out together with ``window`` characters on each
    side, splitting the document into pieces. Pieces shorter than ``min_piece`` characters are
    discarded, and a document split into more than ``max_pieces`` pieces is dropped entirely
    (returns ``[]``). A clean document comes back whole, as ``[document]``.

    >>> bench = build_index("alpha beta gamma", n=3)
    >>> doc = "x" * 300 + " Alpha beta, gamma " + "y" * 300
    >>> [len(piece) for piece in filter_document(doc, bench, window=50, min_piece=100)]
    [251, 251]
    """
    spans = list(_words_with_spans(document))
    hits = np.flatnonzero(index.contains(_window_hashes(_word_values([w for w, _, _ in spans]),
                                                        index.n)))
    if len(hits) == 0:
        return [document]
    cuts: list[list[int]] = []
    for i in hits:
        start = max(0, spans[i][1] - window)
        end = min(len(document), spans[i + index.n - 1][2] + window)
        if cuts and start <= cuts[-1][1]:
            cuts[-1][1] = max(cuts[-1][1], end)
        else:
            cuts.append([start, end])
    bounds = [0] + [x for cut in cuts for x in cut] + [len(document)]
    pieces = [document[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True) if b > a]
    if len(pieces) > max_pieces:
        return []
    return [piece for piece in pieces if len(piece) >= min_piece]
