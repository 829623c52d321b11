"""Graders for chapter 2 (byte-level BPE tokenization).

Each grader calls the student's function on fixed cases with known answers and on random
cases compared with minigpt's reference, and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from exercises.catalog import Exercise
from exercises.graders.common import check_docstring_examples
from minigpt import bpe

_HERE = "exercises.graders.ch02_bpe"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "from collections.abc import Iterable, Mapping, Sequence",
    "",
    "from minigpt.bpe import GPT2_SPLIT_PATTERN, Pair, pretokenize  # you may use these",
)

EXERCISES = (
    Exercise(
        "2.1",
        "get_pair_counts",
        "minigpt.bpe:get_pair_counts",
        f"{_HERE}:grade_get_pair_counts",
        "Count the adjacent pairs of a list of ids, overlapping ones included.",
    ),
    Exercise(
        "2.2",
        "merge",
        "minigpt.bpe:merge",
        f"{_HERE}:grade_merge",
        "Replace every occurrence of a pair by a new id, scanning left to right.",
    ),
    Exercise(
        "2.3",
        "encode_with_merges",
        "minigpt.bpe:encode_with_merges",
        f"{_HERE}:grade_encode_with_merges",
        "Encode text: pre-tokenize, then merge the lowest-rank pair until none is left.",
    ),
    Exercise(
        "2.4",
        "decode_with_merges",
        "minigpt.bpe:decode_with_merges",
        f"{_HERE}:grade_decode_with_merges",
        "Decode ids: rebuild each token's bytes from the merges, then decode UTF-8 once.",
    ),
)

_ALPHABET = "abé 中!\n"


@functools.cache
def _tokenizer() -> bpe.BPETokenizer:
    """A small tokenizer, trained on random text full of spaces, accents and CJK."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcé中") for _ in range(rng.randint(1, 5))) for _ in range(40)]
    text = "".join(rng.choice([" ", "", "\n", "!", "  "]) + rng.choice(words) for _ in range(3000))
    return bpe.BPETokenizer.train(text, 400, special_tokens=())


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 30)))


def grade_get_pair_counts(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, bpe.get_pair_counts)
    assert dict(fn([])) == {}, "an empty list has no pairs"
    assert dict(fn([7])) == {}, "a single id has no pairs"
    got = dict(fn([1, 2, 1, 2]))
    assert got == {(1, 2): 2, (2, 1): 1}, f"get_pair_counts([1, 2, 1, 2]) gave {got}"
    got = dict(fn([5, 5, 5, 5]))
    assert got == {(5, 5): 3}, f"count overlapping pairs: [5, 5, 5, 5] has (5, 5) 3 times: {got}"
    counts = {(1, 2): 5}
    result = fn([1, 2, 3], counts)
    assert result is counts, "with counts given, update that dictionary and return it"
    assert counts == {(1, 2): 6, (2, 3): 1}, f"counts must be added to, got {counts}"
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(4) for _ in range(rng.randint(0, 20))]
        assert dict(fn(ids)) == bpe.get_pair_counts(ids), f"wrong counts for {ids}"


def grade_merge(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, bpe.merge)
    assert list(fn([], (1, 2), 9)) == [], "merging in an empty list gives an empty list"
    assert list(fn([1], (1, 2), 9)) == [1], "a lone 1 at the end is not the pair (1, 2)"
    got = list(fn([1, 1, 1, 1], (1, 1), 5))
    assert got == [5, 5], f"[1, 1, 1, 1] with (1, 1) -> 5 should be [5, 5], got {got}"
    got = list(fn([1, 1, 1], (1, 1), 5))
    assert got == [5, 1], f"scan left to right: [1, 1, 1] with (1, 1) -> 5 is [5, 1], got {got}"
    got = list(fn([2, 1], (1, 2), 9))
    assert got == [2, 1], f"the pair is ordered: (1, 2) does not match [2, 1], got {got}"
    ids = [1, 2, 3, 1, 2]
    fn(ids, (1, 2), 9)
    assert ids == [1, 2, 3, 1, 2], "return a new list: do not change the input"
    rng = random.Random(1)
    for _ in range(50):
        ids = [rng.randrange(3) for _ in range(rng.randint(0, 20))]
        pair = (rng.randrange(3), rng.randrange(3))
        want = bpe.merge(ids, pair, 99)
        assert list(fn(ids, pair, 99)) == want, f"merge({ids}, {pair}, 99) should be {want}"


def grade_encode_with_merges(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, bpe.encode_with_merges)
    assert list(fn("", {})) == [], "the empty text has no tokens"
    assert list(fn("hi", {})) == [104, 105], "without merges, the ids are the UTF-8 bytes"
    got = list(fn("é", {}))
    assert got == [195, 169], f"'é' is the two UTF-8 bytes [195, 169], not its code point: {got}"
    assert list(fn("é", {(195, 169): 256})) == [256], "merges apply to UTF-8 bytes"
    got = list(fn("  a", {(32, 32): 256}))
    assert got == [32, 32, 97], (
        f"'  a' is the pre-tokens ' ' and ' a', and merges never cross pre-tokens: got {got}"
    )
    got = list(fn("abc", {(98, 99): 256, (97, 98): 257}))
    assert got == [97, 256], f"merge the pair of lowest rank (smallest new id) first: got {got}"
    got = list(fn("aab", {(97, 98): 256, (97, 97): 257}))
    assert got == [97, 256], (
        f"not the leftmost known pair but the one of lowest rank: 'aab' -> [97, 256], got {got}"
    )
    tok = _tokenizer()
    merges = tok.merges
    rng = random.Random(2)
    for _ in range(60):
        text = _random_text(rng)
        want = tok.encode_ordinary(text)
        assert list(fn(text, merges)) == want, f"encoding {text!r} should give {want}"


def grade_decode_with_merges(fn: Callable[..., Any]) -> None:
    check_docstring_examples(fn, bpe.decode_with_merges)
    assert fn([], {}) == "", "no ids decode to the empty text"
    assert fn([104, 105], {}) == "hi", "ids below 256 are single bytes"
    merges = {(104, 105): 256, (33, 256): 257}
    got = fn([257, 256], merges)
    assert got == "!hihi", f"token 257 is b'!' + the bytes of token 256: want '!hihi', got {got!r}"
    zhong = {(228, 184): 256}  # "中" is the bytes 228 184 173
    got = fn([256, 173], zhong)
    assert got == "中", f"join all the bytes before decoding: want '中', got {got!r}"
    got = fn([184, 33], zhong)
    assert got == "\ufffd!", f"invalid UTF-8 becomes U+FFFD (errors='replace'): got {got!r}"
    tok = _tokenizer()
    merges = tok.merges
    rng = random.Random(3)
    for _ in range(60):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randint(0, 10))]
        want = tok.decode(ids)
        assert fn(ids, merges) == want, f"decoding {ids} should give {want!r}"


# Plausible wrong answers: CI checks that each grader rejects them (a grader that cannot fail
# is a defect).
def _pairs_no_overlap(ids: Any, counts: Any = None) -> dict:
    counts = {} if counts is None else counts
    i = 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def _pairs_fresh_dict(ids: Any, counts: Any = None) -> dict:
    return bpe.get_pair_counts(ids)


def _pairs_present(ids: Any, counts: Any = None) -> dict:
    return {p: 1 for p in zip(ids, ids[1:], strict=False)}


def _merge_right_to_left(ids: Any, pair: Any, new_id: int) -> list:
    return bpe.merge(list(ids)[::-1], pair[::-1], new_id)[::-1]


def _merge_in_place(ids: Any, pair: Any, new_id: int) -> list:
    i = 0
    while i + 1 < len(ids):
        if (ids[i], ids[i + 1]) == tuple(pair):
            ids[i : i + 2] = [new_id]
        i += 1
    return ids


def _merge_first_only(ids: Any, pair: Any, new_id: int) -> list:
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return ids


def _encode_loop(chunks: list[list[int]], merges: Any, choose: Callable[..., Any]) -> list:
    out: list[int] = []
    for chunk in chunks:
        while len(chunk) >= 2:
            known = [p for p in zip(chunk, chunk[1:], strict=False) if p in merges]
            if not known:
                break
            pair = choose(known, merges)
            chunk = bpe.merge(chunk, pair, merges[pair])
        out += chunk
    return out


def _lowest(known: list, merges: Any) -> Any:
    return min(known, key=merges.get)


def _encode_no_pretokenize(text: str, merges: Any, pattern: str = bpe.GPT2_SPLIT_PATTERN) -> list:
    return _encode_loop([list(text.encode())], merges, _lowest)


def _encode_leftmost(text: str, merges: Any, pattern: str = bpe.GPT2_SPLIT_PATTERN) -> list:
    chunks = [list(p.encode()) for p in bpe.pretokenize(text, pattern)]
    return _encode_loop(chunks, merges, lambda known, m: known[0])


def _encode_code_points(text: str, merges: Any, pattern: str = bpe.GPT2_SPLIT_PATTERN) -> list:
    chunks = [[ord(c) for c in p] for p in bpe.pretokenize(text, pattern)]
    return _encode_loop(chunks, merges, _lowest)


def _decode_each_token(ids: Any, merges: Any) -> str:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _decode_right_is_a_byte(ids: Any, merges: Any) -> str:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + bytes([b % 256])
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def _decode_strict(ids: Any, merges: Any) -> str:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8")


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "get_pair_counts": [_pairs_no_overlap, _pairs_fresh_dict, _pairs_present],
    "merge": [_merge_right_to_left, _merge_in_place, _merge_first_only],
    "encode_with_merges": [_encode_no_pretokenize, _encode_leftmost, _encode_code_points],
    "decode_with_merges": [_decode_each_token, _decode_right_is_a_byte, _decode_strict],
}
