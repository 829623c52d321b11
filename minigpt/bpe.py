"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2 and GPT-3.

A tokenizer turns text into a list of integer *token ids* and back. Byte-level BPE works
in three steps:

1. **Bytes.** Text is encoded as UTF-8, so every string is a sequence of bytes and the
   256 possible byte values are the first 256 tokens. Nothing is ever "unknown": an emoji
   or a Chinese character is simply several bytes.
2. **Pre-tokenization.** A regular expression (:data:`GPT2_SPLIT_PATTERN`) cuts the text
   into *pre-tokens* such as ``"Hello"``, ``" world"``, ``"'s"``, ``"!!"`` or ``"\\n\\n"``.
   Merges never cross a pre-token boundary, so a word and the punctuation after it stay
   separate tokens.
3. **Merges.** Training repeatedly finds the most frequent adjacent pair of tokens in the
   corpus and gives it a new id: ``(104, 101) -> 256`` means bytes ``b"h"`` and ``b"e"``
   become the token ``b"he"``. Encoding replays the merges in the order they were learned
   (their *rank*): inside each pre-token, the adjacent pair with the lowest rank is merged
   first, until no learned pair is left.

Special tokens such as ``<|endoftext|>`` get ids after all merged tokens. They are never
produced from ordinary text unless the caller explicitly allows them (as in ``tiktoken``).

Example::

    >>> tok = BPETokenizer.train("low lower lowest " * 50, vocab_size=263, special_tokens=())
    >>> [tok.token_bytes(i) for i in tok.encode(" lowest lowe")]
    [b' lowest', b' lowe']
    >>> tok.decode(tok.encode(" lower"))
    ' lower'

Training tie-break (deterministic): the pair with the highest count wins; among pairs with
equal counts, the smallest pair of ids ``(left, right)`` (compared as a tuple) wins. Because
ids 0..255 are the byte values, for pairs of single bytes this is byte order. Pair counts
include overlapping occurrences (``"aaa"`` has the pair ``(97, 97)`` twice), as in GPT-2,
Hugging Face ``tokenizers`` and most teaching code.

GPT-2's files, ``tiktoken`` and Hugging Face export live in :mod:`minigpt.bpe_formats`.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, pairwise, repeat
from typing import Literal, NoReturn

import regex

__all__ = [
    "ENDOFTEXT",
    "FORMAT_VERSION",
    "GPT2_SPLIT_PATTERN",
    "BPETokenizer",
    "bytes_to_unicode",
    "count_words",
    "decode_with_merges",
    "encode_with_merges",
    "get_pair_counts",
    "learn_merges",
    "merge",
    "pretokenize",
    "train_naive",
]

#: The pre-tokenization regex of GPT-2 and GPT-3 (``r50k_base``/``p50k_base``).
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
#: The end-of-text special token of GPT-2 and GPT-3.
ENDOFTEXT = "<|endoftext|>"
#: Version written in the first line of :meth:`BPETokenizer.save` files.
FORMAT_VERSION = 1
_FORMAT_MAGIC = "minigpt-bpe"

Pair = tuple[int, int]
SpecialSet = Literal["all"] | Iterable[str]

# Streaming encode keeps back this many pre-tokens at the end of each buffer, because the
# last pre-tokens of a buffer may change when more text arrives (see ``encode_stream``).
_STREAM_HOLDBACK_PIECES = 3
# Encoding cache size limit (number of distinct pre-tokens); the cache is cleared when full.
_CACHE_MAX = 1 << 18


# ---------------------------------------------------------------------------------------
# Teaching-sized building blocks
# ---------------------------------------------------------------------------------------


def get_pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count adjacent pairs of ids, overlapping ones included.

    >>> get_pair_counts(list(b"aaab"))
    {(97, 97): 2, (97, 98): 1}

    Pass ``counts`` to add to an existing dictionary (it is updated in place and returned).
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    >>> merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    >>> merge([1, 2, 3, 1, 2], (1, 2), 9)
    [9, 3, 9]
    """
    first, second = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def pretokenize(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split ``text`` into pre-tokens with the GPT-2 regex (or another ``pattern``).

    >>> pretokenize("Hello world's  end!!\\n")
    ['Hello', ' world', "'s", ' ', ' end', '!!', '\\n']
    """
    return regex.findall(pattern, text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    GPT-2's ``encoder.json`` and ``vocab.bpe`` store tokens as text, so each byte is shown
    as a visible character: printable Latin-1 bytes map to themselves and the others
    (control characters, space, ...) to characters from U+0100 upwards.

    >>> m = bytes_to_unicode()
    >>> m[ord("a")], m[ord(" ")], m[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    visible = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = visible[:]
    n = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in sorted(zip(visible, chars, strict=True))}


def _to_utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates become U+FFFD (as ``tiktoken`` does)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _fix_surrogates(text).encode("utf-8")


def _fix_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _check_vocab_size(vocab_size: int, n_special: int) -> int:
    """Return the number of merges for ``vocab_size``, or raise a ValueError."""
    minimum = 256 + n_special
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least 256 + number of special tokens = {minimum} "
            f"(256 byte tokens, {n_special} special tokens), got {vocab_size}"
        )
    return vocab_size - minimum


def train_naive(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> dict[Pair, int]:
    """Reference BPE training: recount every pair in the whole corpus after each merge.

    This is the short algorithm found in most teaching code. It is correct but slow: each
    of the ``vocab_size - 256`` merges walks over the entire corpus twice. It uses the
    same tie-break as the fast trainer (highest count, then smallest pair), so
    ``train_naive(t, v) == BPETokenizer.train(t, v, special_tokens=()).merges``.

    Returns the merges ``{(left_id, right_id): new_id}`` in the order they were learned.

    >>> train_naive("aaab", 258)
    {(97, 97): 256, (97, 98): 257}
    """
    num_merges = _check_vocab_size(vocab_size, 0)
    chunks = [list(_to_utf8(piece)) for piece in pretokenize(text, pattern)]
    if not chunks:
        raise ValueError("cannot train on an empty corpus: the training text has no characters")
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        counts: dict[Pair, int] = {}
        for ids in chunks:
            get_pair_counts(ids, counts)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
    return merges


def encode_with_merges(
    text: str, merges: Mapping[Pair, int], pattern: str = GPT2_SPLIT_PATTERN
) -> list[int]:
    """Encode ``text`` with learned ``merges``: BPE encoding in plain, slow Python.

    ``merges`` is ``{(left_id, right_id): new_id}`` as :func:`train_naive` returns it; a pair
    learned earlier has a smaller ``new_id`` (its *rank*). Split ``text`` with
    :func:`pretokenize` and turn each pre-token into its UTF-8 byte values. Then, inside each
    pre-token, merge the adjacent pair of lowest rank, everywhere it occurs (:func:`merge`),
    and repeat until no adjacent pair is in ``merges``. Concatenate the pre-tokens' ids.

    >>> merges = {(108, 111): 256, (256, 119): 257}  # b"l" b"o" -> b"lo", b"lo" b"w" -> b"low"
    >>> encode_with_merges("low lo", merges)  # "low" and " lo": the space is byte 32
    [257, 32, 256]
    """
    ids: list[int] = []
    for piece in pretokenize(text, pattern):
        chunk = list(piece.encode("utf-8"))
        while len(chunk) >= 2:
            pairs = get_pair_counts(chunk)
            pair = min(pairs, key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            chunk = merge(chunk, pair, merges[pair])
        ids.extend(chunk)
    return ids


def decode_with_merges(ids: Iterable[int], merges: Mapping[Pair, int]) -> str:
    """Decode token ids to text, given the ``merges`` that define the vocabulary.

    Token ``i < 256`` is the single byte ``i``; a merge ``(a, b) -> new_id`` makes token
    ``new_id`` the bytes of ``a`` followed by the bytes of ``b`` (merges come in the order
    learned, so ``a`` and ``b`` are already defined). Join the bytes of all the tokens, then
    decode them as UTF-8 once, replacing invalid bytes (half a character) with U+FFFD: one
    character may be split across several tokens, so tokens cannot be decoded one by one.

    >>> merges = {(228, 184): 256}  # the first two of the three bytes of "中"
    >>> decode_with_merges([256, 173, 33], merges)
    '中!'
    >>> decode_with_merges([256], merges) == "\\ufffd"  # half a character
    True
    """
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------
# Fast training
# ---------------------------------------------------------------------------------------


def count_words(
    text: str | Iterable[str],
    pattern: str = GPT2_SPLIT_PATTERN,
    special_tokens: Iterable[str] = (),
) -> dict[bytes, int]:
    """Count the distinct pre-tokens of a corpus, as UTF-8 bytes.

    ``text`` is one string or an iterable of documents. Occurrences of ``special_tokens``
    are cut out first: they split the text and never take part in merges.

    >>> count_words("the cat the end")
    {b'the': 1, b' cat': 1, b' the': 1, b' end': 1}
    """
    docs = [text] if isinstance(text, str) else text
    specials = sorted(set(special_tokens), key=len, reverse=True)
    splitter = re.compile("|".join(map(re.escape, specials))) if specials else None
    compiled = regex.compile(pattern)
    counter: Counter[str] = Counter()
    for doc in docs:
        for part in splitter.split(doc) if splitter else (doc,):
            counter.update(compiled.findall(part))
    counts: dict[bytes, int] = {}
    for word, n in counter.items():
        key = _to_utf8(word)
        counts[key] = counts.get(key, 0) + n
    return counts


def learn_merges(word_counts: Mapping[bytes, int], num_merges: int) -> dict[Pair, int]:
    """Learn up to ``num_merges`` merges from pre-token counts, incrementally.

    Instead of recounting the corpus after each merge (see :func:`train_naive`), keep:

    - ``pair_counts``: pair -> number of occurrences, weighted by word frequency;
    - ``where``: pair -> ids of the distinct words that (may) contain it;
    - a heap of ``(-count, left, right)`` with lazy deletion: an entry whose count is out of
      date is re-pushed with the current count when it reaches the top.

    A merge only touches the words that contain the pair. Counts of old pairs can only go
    down, so heap entries are never below the true count, which makes lazy deletion exact.
    New ids are ``256, 257, ...``; stops early if no pair is left.

    >>> learn_merges({b"aaab": 1}, 2)  # then (256, 97) and (97, 98) tie: smallest wins
    {(97, 97): 256, (97, 98): 257}
    """
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        for pair in pairwise(word):
            pair_counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        pair = _pop_best(heap, pair_counts)
        if pair is None:
            break
        merges[pair] = new_id
        new_pairs = _apply_merge(pair, new_id, words, freqs, pair_counts, where)
        for p in new_pairs:
            heapq.heappush(heap, (-pair_counts[p], p[0], p[1]))
    return merges


def _pop_best(heap: list[tuple[int, int, int]], pair_counts: dict[Pair, int]) -> Pair | None:
    """Pop the pair with the highest current count (ties: smallest pair); None if none."""
    while heap:
        neg_count, a, b = heap[0]
        current = pair_counts.get((a, b), 0)
        if current == -neg_count and current > 0:
            heapq.heappop(heap)
            return a, b
        if current > 0:  # stale entry: re-insert with the current (smaller) count
            heapq.heapreplace(heap, (-current, a, b))
        else:
            heapq.heappop(heap)
    return None


def _apply_merge(
    pair: Pair,
    new_id: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` in place in every word containing it; return the new pairs.

    Only the neighbours of each merge change: in ``x a b y`` -> ``x N y`` the pairs
    ``(x, a)`` and ``(b, y)`` lose ``freq`` and ``(x, N)`` and ``(N, y)`` gain it. (When
    merges are adjacent, as in ``a b a b`` -> ``N N``, the gains and losses still add up,
    because the left neighbour is then already ``N``.) The pair itself is deleted.
    """
    first, second = pair
    new_pairs: set[Pair] = set()
    for i in where.pop(pair):
        word, freq = words[i], freqs[i]
        j = 0
        while True:
            try:
                j = word.index(first, j)
            except ValueError:
                break
            if j + 1 < len(word) and word[j + 1] == second:
                word[j : j + 2] = (new_id,)
                if j > 0:
                    left = word[j - 1]
                    pair_counts[(left, first)] -= freq
                    new_pair = (left, new_id)
                    pair_counts[new_pair] += freq
                    where[new_pair].add(i)
                    new_pairs.add(new_pair)
                if j + 1 < len(word):
                    right = word[j + 1]
                    pair_counts[(second, right)] -= freq
                    new_pair = (new_id, right)
                    pair_counts[new_pair] += freq
                    where[new_pair].add(i)
                    new_pairs.add(new_pair)
            j += 1
    del pair_counts[pair]
    return new_pairs


# ---------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------


class BPETokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens, learned merges, special tokens.

    Args:
        merges: ``{(left_id, right_id): new_id}`` in rank order (first learned first).
        special_tokens: ``{text: id}``, e.g. ``{"<|endoftext|>": 50256}``.
        pattern: the pre-tokenization regex (default: GPT-2's).
        byte_ids: the token id of each byte value 0..255 (default: the byte value itself;
            GPT-2's own files use another order).

    Token ids must be exactly ``0 .. vocab_size - 1``. Use :meth:`train`, :meth:`load` or
    :meth:`from_gpt2_files` to build one.
    """

    def __init__(
        self,
        merges: Mapping[Pair, int] | None = None,
        special_tokens: Mapping[str, int] | None = None,
        pattern: str = GPT2_SPLIT_PATTERN,
        byte_ids: Sequence[int] | None = None,
    ) -> None:
        self.pattern = pattern
        self._pat = regex.compile(pattern)
        self._byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        self._identity_bytes = self._byte_ids == list(range(256))
        self._merges: dict[Pair, int] = {}
        self._ranks: dict[Pair, int] = {}
        self._special_tokens: dict[str, int] = {}
        self._decoder = self._build_vocab(merges or {}, special_tokens or {})
        self._rank_to_id = list(self._merges.values())
        self._cache = _PieceCache(self._encode_piece)
        self._special_res: dict[frozenset[str], re.Pattern[str] | None] = {}

    def _build_vocab(
        self, merges: Mapping[Pair, int], special_tokens: Mapping[str, int]
    ) -> dict[int, bytes]:
        if len(self._byte_ids) != 256 or len(set(self._byte_ids)) != 256:
            raise ValueError("byte_ids must give 256 distinct token ids, one per byte value")
        vocab = {tid: bytes([b]) for b, tid in enumerate(self._byte_ids)}
        for rank, ((a, b), new_id) in enumerate(merges.items()):
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge #{rank} {(a, b)} uses a token id that is not defined yet")
            if new_id in vocab:
                raise ValueError(f"merge #{rank} {(a, b)} -> {new_id}: id {new_id} already used")
            vocab[new_id] = vocab[a] + vocab[b]
            self._merges[(a, b)] = new_id
            self._ranks[(a, b)] = rank
        for text, tid in special_tokens.items():
            if not isinstance(text, str) or not text:
                raise ValueError(f"special tokens must be non-empty strings, got {text!r}")
            if tid in vocab:
                raise ValueError(f"special token {text!r} -> {tid}: id {tid} already used")
            vocab[tid] = text.encode("utf-8")
            self._special_tokens[text] = tid
        if sorted(vocab) != list(range(len(vocab))):
            raise ValueError(f"token ids must be exactly 0..{len(vocab) - 1} with no gaps")
        return vocab

    # -- training --------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str | Iterable[str],
        vocab_size: int,
        *,
        special_tokens: Iterable[str] = (ENDOFTEXT,),
        pattern: str = GPT2_SPLIT_PATTERN,
    ) -> BPETokenizer:
        """Train on ``text`` (a string or an iterable of documents) to ``vocab_size`` tokens.

        The vocabulary is 256 byte tokens, then ``vocab_size - 256 - len(special_tokens)``
        merged tokens, then the special tokens. Special-token text in the corpus is cut out
        before counting. If the corpus runs out of pairs first, training stops early with a
        warning and the vocabulary is smaller.
        """
        if isinstance(special_tokens, str):
            raise ValueError(
                f"special_tokens must be a collection of strings, e.g. ({special_tokens!r},)"
            )
        specials = list(dict.fromkeys(special_tokens))
        num_merges = _check_vocab_size(vocab_size, len(specials))
        word_counts = count_words(text, pattern, specials)
        if not word_counts:
            raise ValueError(
                "cannot train on an empty corpus: the training text has no characters "
                "(after removing special tokens)"
            )
        merges = learn_merges(word_counts, num_merges)
        if len(merges) < num_merges:
            warnings.warn(
                f"corpus too small: only {len(merges)} of {num_merges} merges possible; "
                f"vocabulary has {256 + len(merges) + len(specials)} tokens",
                stacklevel=2,
            )
        first_special = 256 + len(merges)
        return cls(merges, {s: first_special + j for j, s in enumerate(specials)}, pattern)

    # -- vocabulary ----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of tokens, special tokens included (ids are ``0 .. vocab_size - 1``)."""
        return len(self._decoder)

    n_vocab = vocab_size

    def truncated(self, num_merges: int) -> BPETokenizer:
        """The same tokenizer with only its first ``num_merges`` merges.

        Special tokens are kept and renumbered to follow the merged tokens. Training is
        greedy, so the first ``k`` merges of a tokenizer trained to a large vocabulary are
        exactly those of one trained to ``256 + k`` (+ special) tokens: one training run
        gives every smaller vocabulary.

        >>> tok = BPETokenizer.train("low lower lowest " * 50, vocab_size=263)
        >>> tok.truncated(2)
        BPETokenizer(vocab_size=259, merges=2, special_tokens=['<|endoftext|>'])
        """
        if not 0 <= num_merges <= len(self._merges):
            raise ValueError(
                f"num_merges must be between 0 and {len(self._merges)} (this tokenizer's "
                f"number of merges), got {num_merges}"
            )
        merges = dict(list(self._merges.items())[:num_merges])
        first = 256 + num_merges
        order = sorted(self._special_tokens, key=self._special_tokens.__getitem__)
        specials = {t: first + j for j, t in enumerate(order)}
        return type(self)(merges, specials, self.pattern, self._byte_ids)

    def bytes_per_token(self, text: str) -> float:
        """Compression: UTF-8 bytes of ``text`` per token (special tokens as plain text).

        >>> BPETokenizer().bytes_per_token("héllo")  # no merges: one token per byte
        1.0
        """
        ids = self.encode_ordinary(text)
        if not ids:
            raise ValueError("cannot measure compression on an empty text")
        return len(_to_utf8(text)) / len(ids)

    @property
    def merges(self) -> dict[Pair, int]:
        """``{(left_id, right_id): new_id}`` in rank order (a copy)."""
        return dict(self._merges)

    @property
    def special_tokens(self) -> dict[str, int]:
        """``{text: id}`` of the special tokens (a copy)."""
        return dict(self._special_tokens)

    @property
    def special_tokens_set(self) -> set[str]:
        return set(self._special_tokens)

    @property
    def eot_token(self) -> int:
        """The id of ``<|endoftext|>``."""
        if ENDOFTEXT not in self._special_tokens:
            raise ValueError(f"this tokenizer has no {ENDOFTEXT} special token")
        return self._special_tokens[ENDOFTEXT]

    @property
    def vocab(self) -> dict[int, bytes]:
        """``{id: token bytes}`` for every token (special tokens as their UTF-8 text)."""
        return dict(self._decoder)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes([token_id])

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
            f"special_tokens={list(self._special_tokens)})"
        )

    # -- encoding ------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token text as ordinary text.

        Splits with the regex, then looks each pre-token up in a cache; only pre-tokens not
        seen before go through the merge loop (:meth:`_encode_piece`).
        """
        return self._encode_pieces(self._pat.findall(text))

    def _encode_pieces(self, pieces: list[str]) -> list[int]:
        # A cache miss calls _PieceCache.__missing__, which runs _encode_piece once.
        return list(chain.from_iterable(map(self._cache.__getitem__, pieces)))

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """BPE on one pre-token: merge the lowest-rank adjacent pair until none is left.

        ``ranks[j]`` is the rank of the pair ``(ids[j], ids[j + 1])``. Each step merges the
        leftmost pair of lowest rank (same result as :func:`merge` on every occurrence)
        and recomputes only the ranks of the two pairs next to it.
        """
        data = _to_utf8(piece)
        ids = list(data) if self._identity_bytes else [self._byte_ids[b] for b in data]
        if len(ids) < 2:
            return tuple(ids)
        get_rank, no_rank, rank_to_id = self._ranks.get, len(self._ranks), self._rank_to_id
        ranks = list(map(get_rank, pairwise(ids), repeat(no_rank)))
        while True:
            best = min(ranks)
            if best == no_rank:
                break
            i = ranks.index(best)
            new = ids[i] = rank_to_id[best]
            del ids[i + 1]
            if i + 1 < len(ranks):
                del ranks[i + 1]
                ranks[i] = get_rank((new, ids[i + 1]), no_rank)
            else:
                del ranks[i]
                if not ranks:
                    break
            if i > 0:
                ranks[i - 1] = get_rank((ids[i - 1], new), no_rank)
        return tuple(ids)

    def encode(
        self,
        text: str,
        *,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> list[int]:
        """Encode ``text``, with ``tiktoken``'s rules for special tokens.

        - ``allowed_special``: special tokens whose text becomes the special id
          (``"all"`` or a collection of token strings; default: none).
        - ``disallowed_special``: special tokens whose text raises a ValueError
          (``"all"`` = every special token not allowed, the default; ``()`` = no check,
          so their text is encoded as ordinary text).

        Unlike ``tiktoken``, naming a string that is not a special token raises a ValueError.

        >>> tok = BPETokenizer.train("hello world", 260)
        >>> tok.encode("hi<|endoftext|>", allowed_special="all")[-1] == tok.eot_token
        True
        """
        allowed, disallowed = self._resolve_specials(allowed_special, disallowed_special)
        if disallowed:
            found = self._special_re(disallowed).search(text)  # type: ignore[union-attr]
            if found:
                _raise_disallowed(found.group())
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for found in self._special_re(allowed).finditer(text):  # type: ignore[union-attr]
            ids += self.encode_ordinary(text[start : found.start()])
            ids.append(self._special_tokens[found.group()])
            start = found.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def _resolve_specials(
        self, allowed_special: SpecialSet, disallowed_special: SpecialSet
    ) -> tuple[frozenset[str], frozenset[str]]:
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = frozenset(self._special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        return allowed, disallowed

    def _special_set(self, value: SpecialSet, name: str) -> frozenset[str]:
        if value == "all":
            return frozenset(self._special_tokens)
        if isinstance(value, str):
            raise ValueError(
                f"{name} must be 'all' or a collection of special token strings, got {value!r}"
            )
        tokens = frozenset(value)
        unknown = sorted(tokens - self._special_tokens.keys())
        if unknown:
            raise ValueError(
                f"{name} contains {unknown}, which are not special tokens of this tokenizer; "
                f"its special tokens are {sorted(self._special_tokens)}"
            )
        return tokens

    def _special_re(self, tokens: frozenset[str]) -> re.Pattern[str] | None:
        """A regex matching any of ``tokens`` (longest first), or None if there are none."""
        if tokens not in self._special_res:
            alternatives = sorted(tokens, key=lambda t: (-len(t), t))
            compiled = re.compile("|".join(map(re.escape, alternatives))) if tokens else None
            self._special_res[tokens] = compiled
        return self._special_res[tokens]

    # -- streaming -----------------------------------------------------------------------

    def encode_stream(
        self,
        chunks: Iterable[str],
        *,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> Iterator[list[int]]:
        """Encode text that arrives in pieces; yields lists of ids.

        Concatenating the yielded lists gives exactly ``encode("".join(chunks))``. The end
        of each buffer is held back until more text arrives: the last few pre-tokens (a
        whitespace run or ``"'l"`` may continue in the next chunk) and the last
        ``len(longest special token) - 1`` characters (a special token may be cut in two).
        Needs a pattern whose matches cover the whole text, as GPT-2's does.
        """
        allowed, disallowed = self._resolve_specials(allowed_special, disallowed_special)
        hold = max(map(len, allowed | disallowed), default=1) - 1
        carry = ""
        for chunk in chunks:
            if not chunk:
                continue
            ids, carry = self._encode_prefix(carry + chunk, hold, allowed, disallowed)
            if ids:
                yield ids
        if carry:
            yield self.encode(carry, allowed_special=allowed, disallowed_special=disallowed)

    def _encode_prefix(
        self, buf: str, hold: int, allowed: frozenset[str], disallowed: frozenset[str]
    ) -> tuple[list[int], str]:
        """Encode the part of ``buf`` that more text cannot change; return (ids, rest)."""
        limit = max(len(buf) - hold, 0)  # a special token starting before it is complete
        if disallowed:
            found = self._special_re(disallowed).search(buf)  # type: ignore[union-attr]
            if found and found.start() < limit:
                _raise_disallowed(found.group())
        ids: list[int] = []
        start = 0
        if allowed:
            for found in self._special_re(allowed).finditer(buf):  # type: ignore[union-attr]
                if found.start() >= limit:
                    break
                ids += self.encode_ordinary(buf[start : found.start()])
                ids.append(self._special_tokens[found.group()])
                start = found.end()
        tail = buf[start:limit]
        pieces = self._pat.findall(tail)
        if sum(map(len, pieces)) != len(tail):
            raise ValueError("encode_stream needs a pattern whose matches cover all the text")
        done = pieces[:-_STREAM_HOLDBACK_PIECES]
        ids += self._encode_pieces(done)
        return ids, buf[start + sum(map(len, done)) :]

    def encode_file(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = 1 << 20,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = "all",
    ) -> Iterator[int]:
        """Yield the ids of a UTF-8 text file, reading ``chunk_size`` characters at a time.

        The result equals ``encode(open(path).read())`` (newlines are not translated).
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of characters: {chunk_size}")
        with open(path, encoding="utf-8", newline="") as f:
            chunks = iter(lambda: f.read(chunk_size), "")
            batches = self.encode_stream(
                chunks, allowed_special=allowed_special, disallowed_special=disallowed_special
            )
            yield from chain.from_iterable(batches)

    # -- decoding ------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of the tokens ``ids``."""
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            ids = ids.tolist()  # type: ignore[union-attr]
        elif not isinstance(ids, (list, tuple)):
            ids = list(ids)
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not self._is_token_id(i))
            raise ValueError(
                f"token id {bad!r} is not in the vocabulary: ids must be integers "
                f"0..{self.vocab_size - 1}"
            ) from None

    def _is_token_id(self, value: object) -> bool:
        try:
            return value in self._decoder
        except TypeError:  # unhashable
            return False

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to text; invalid UTF-8 (e.g. half a character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- saving and loading --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as plain text (UTF-8). The format, line by line::

            minigpt-bpe 1                    magic word and format version
            pattern "<JSON string>"          the pre-tokenization regex
            bytes 256                        then 256 lines "<byte as 2 hex digits> <id>"
            merges <m>                       then m lines "<left id> <right id> <new id>",
                                             in rank order
            specials <k>                     then k lines "<id> <JSON string>"
        """
        lines = [f"{_FORMAT_MAGIC} {FORMAT_VERSION}", f"pattern {json.dumps(self.pattern)}"]
        lines.append("bytes 256")
        lines += [f"{b:02x} {tid}" for b, tid in enumerate(self._byte_ids)]
        lines.append(f"merges {len(self._merges)}")
        lines += [f"{a} {b} {new}" for (a, b), new in self._merges.items()]
        lines.append(f"specials {len(self._special_tokens)}")
        lines += [f"{tid} {json.dumps(t)}" for t, tid in self._special_tokens.items()]
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Read a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        return cls._from_lines(lines, str(path))

    @classmethod
    def _from_lines(cls, lines: list[str], where: str) -> BPETokenizer:
        reader = _LineReader(lines, where)
        magic, version = reader.fields(2)
        if magic != _FORMAT_MAGIC or version != str(FORMAT_VERSION):
            reader.fail(f"expected header '{_FORMAT_MAGIC} {FORMAT_VERSION}'")
        pattern = json.loads(reader.section("pattern"))
        byte_ids = [0] * 256
        for _ in range(reader.count("bytes")):
            hex_byte, tid = reader.fields(2)
            byte_ids[int(hex_byte, 16)] = int(tid)
        merges: dict[Pair, int] = {}
        for _ in range(reader.count("merges")):
            a, b, new = map(int, reader.fields(3))
            merges[(a, b)] = new
        specials: dict[str, int] = {}
        for _ in range(reader.count("specials")):
            tid, text = reader.fields(2)
            specials[json.loads(text)] = int(tid)
        reader.expect_end()
        return cls(merges, specials, pattern, byte_ids)

    # -- GPT-2 files ---------------------------------------------------------------------



# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


class _PieceCache(dict[str, tuple[int, ...]]):
    """Pre-token -> token ids; a missing pre-token is encoded on lookup (``__missing__``).

    Cleared when it holds ``_CACHE_MAX`` entries, so memory stays bounded on huge inputs.
    """

    def __init__(self, encode_piece: Callable[[str], tuple[int, ...]]) -> None:
        super().__init__()
        self.encode_piece = encode_piece

    def __missing__(self, piece: str) -> tuple[int, ...]:
        if len(self) >= _CACHE_MAX:
            self.clear()
        ids = self[piece] = self.encode_piece(piece)
        return ids


def _raise_disallowed(token: str) -> NoReturn:
    raise ValueError(
        f"Encountered text corresponding to disallowed special token {token!r}. "
        f"To encode it as the special token, pass allowed_special={{{token!r}}} "
        f"(or allowed_special='all'); to encode it as ordinary text, pass "
        f"disallowed_special=() (or leave {token!r} out of disallowed_special)."
    )


class _LineReader:
    """Reads the sections of a :meth:`BPETokenizer.save` file, with clear errors."""

    def __init__(self, lines: list[str], where: str) -> None:
        self.lines, self.where, self.pos = lines, where, 0

    def fail(self, message: str) -> NoReturn:
        raise ValueError(f"{self.where}, line {self.pos}: {message}")

    def fields(self, n: int) -> list[str]:
        if self.pos >= len(self.lines):
            self.fail("unexpected end of file")
        line = self.lines[self.pos]
        self.pos += 1
        parts = line.split(" ", n - 1)
        if len(parts) != n:
            self.fail(f"expected {n} space-separated fields, got {line!r}")
        return parts

    def section(self, name: str) -> str:
        key, value = self.fields(2)
        if key != name:
            self.fail(f"expected section {name!r}, got {key!r}")
        return value

    def count(self, name: str) -> int:
        value = self.section(name)
        if not value.isdigit():
            self.fail(f"expected a count after {name!r}, got {value!r}")
        return int(value)

    def expect_end(self) -> None:
        if any(line.strip() for line in self.lines[self.pos :]):
            self.pos += 1
            self.fail("unexpected text after the special tokens")
