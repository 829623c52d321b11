"""Tests for minigpt.bpe: byte-level BPE checked against tiktoken and Hugging Face tokenizers."""

from __future__ import annotations

import doctest
import json
import pathlib
import random
from collections import Counter

import numpy as np
import pytest
import regex
import torch
from conftest import needs_tiktoken, needs_tokenizers, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigpt.bpe
from minigpt.bpe import (
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    BPETokenizer,
    bytes_to_unicode,
    count_words,
    decode_with_merges,
    encode_with_merges,
    get_pair_counts,
    learn_merges,
    merge,
    pretokenize,
    train_naive,
)
from minigpt.bpe_formats import from_gpt2_files, save_gpt2_files, to_hf_tokenizers, to_tiktoken
from minigpt.data import load_shakespeare

PAD = "<|pad|>"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ corpora and fixtures


def _shakespeare() -> str:
    return load_shakespeare()


ASCII = [chr(c) for c in range(32, 127)]
ACCENTS = list("éèêëñüößÅçàÉØœŁ")
CJK = list("中文字日本語한국어漢")
EMOJI = ["😀", "🎉", "👍", "🏽", "❤", "\ufe0f", "\u200d", "👩‍👩‍👧"]
COMBINING = ["\u0301", "\u0308", "\u0327", "e\u0301", "n\u0303"]
SPACES = [" ", "  ", "\t", "\n", "\n\n", "\r\n", "\xa0", "\u3000", "\u2009", "\x0b", "\x0c"]
DIGITS = list("0123456789") + ["٣", "½", "²", "Ⅻ", "2024", "3.14"]
WORDS = ["the", " the", "thou", " art", "And", " KING", "'s", "'ll", "'re", "'ve", "'d", "'m"]
WORDS += ["'t", "'", "don't", "O!", "...", "--", "**", "_Exit_", "<|", "|>", "endoftext"]
FRAGMENTS = ASCII + ACCENTS + CJK + EMOJI + COMBINING + SPACES + DIGITS + WORDS

texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
specials_texts = st.lists(
    st.sampled_from(FRAGMENTS + [ENDOFTEXT, PAD, "<|endo", "ftext|>", "<|endoftext|"]),
    max_size=30,
).map("".join)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


def _multilingual(n_words: int, seed: int = 0) -> str:
    """A synthetic corpus full of accents, CJK, emoji, combining marks and odd spaces."""
    rng = random.Random(seed)
    pieces = ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    return "".join(rng.choice(pieces) for _ in range(n_words))


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return _shakespeare()


@pytest.fixture(scope="module")
def tok(shakespeare: str) -> BPETokenizer:
    corpus = shakespeare[:150_000] + _multilingual(8_000)
    return BPETokenizer.train(corpus, 1200, special_tokens=(ENDOFTEXT, PAD))


@pytest.fixture(scope="module")
def heldout(shakespeare: str) -> str:
    return shakespeare[-60_000:] + _multilingual(3_000, seed=1)


@pytest.fixture(scope="module")
def tik(tok: BPETokenizer):
    require("tiktoken")
    return to_tiktoken(tok)


@pytest.fixture(scope="module")
def hf(tok: BPETokenizer):
    require("tokenizers")
    return to_hf_tokenizers(tok)


# ------------------------------------------------------------------ building blocks


def test_docstring_examples() -> None:
    result = doctest.testmod(minigpt.bpe)
    assert result.attempted > 10 and result.failed == 0


def test_get_pair_counts_example() -> None:
    assert get_pair_counts(list(b"aaab")) == {(97, 97): 2, (97, 98): 1}
    counts = get_pair_counts([1, 2])
    assert get_pair_counts([1, 2, 3], counts) == {(1, 2): 2, (2, 3): 1}
    assert get_pair_counts([]) == {}


def test_merge_example() -> None:
    assert merge([97, 97, 97, 98], (97, 97), 256) == [256, 97, 98]
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge([1], (1, 2), 9) == [1]


def test_pretokenize_gpt2_pattern() -> None:
    expected = ["Hello", " world", "'s", " ", " end", "!!", "\n"]
    assert pretokenize("Hello world's  end!!\n") == expected
    assert pretokenize("I'll pay 1000 $") == ["I", "'ll", " pay", " 1000", " $"]


def test_bytes_to_unicode_is_gpt2_mapping() -> None:
    m = bytes_to_unicode()
    assert sorted(m) == list(range(256))
    assert len(set(m.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in m.values())
    assert (m[ord("a")], m[ord(" ")], m[ord("\n")], m[0]) == ("a", "Ġ", "Ċ", "Ā")


def test_count_words_cuts_out_special_tokens() -> None:
    counts = count_words(["x<|endoftext|>y y", "x"], special_tokens=[ENDOFTEXT])
    assert counts == {b"x": 2, b"y": 1, b" y": 1}


# ------------------------------------------------------------------ training


def _reference_train(text: str, num_merges: int) -> dict[tuple[int, int], int]:
    """Straightforward BPE: recount all pairs after every merge; ties -> smallest pair."""
    words = Counter(tuple(w.encode()) for w in regex.findall(GPT2_SPLIT_PATTERN, text))
    merges: dict[tuple[int, int], int] = {}
    for new_id in range(256, 256 + num_merges):
        counts: Counter[tuple[int, int]] = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                counts[pair] += freq
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges[best] = new_id
        new_words: Counter[tuple[int, ...]] = Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += freq
        words = new_words
    return merges


def test_training_matches_reference_and_naive(shakespeare: str) -> None:
    text = shakespeare[:12_000]
    fast = BPETokenizer.train(text, 256 + 120, special_tokens=()).merges
    assert fast == _reference_train(text, 120)
    assert fast == train_naive(text, 256 + 120)


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b", "ab", " a", " ", "aa", "ba", "\n", "é"]), max_size=60))
def test_training_matches_reference_on_tie_heavy_text(parts: list[str]) -> None:
    text = "".join(parts)
    if not text:
        return
    expected = _reference_train(text, 12)
    assert learn_merges(count_words(text), 12) == expected
    if len(expected) == 12:
        assert BPETokenizer.train(text, 268, special_tokens=()).merges == expected


def test_training_is_deterministic(shakespeare: str) -> None:
    text = shakespeare[:80_000]
    a = BPETokenizer.train(text, 700)
    b = BPETokenizer.train(text, 700)
    assert a.merges == b.merges and a.special_tokens == b.special_tokens


def test_vocab_layout(tok: BPETokenizer) -> None:
    assert tok.vocab_size == tok.n_vocab == 1200
    assert len(tok.merges) == 1200 - 256 - 2
    assert tok.special_tokens == {ENDOFTEXT: 1198, PAD: 1199}
    assert tok.eot_token == 1198
    assert list(tok.merges.values()) == list(range(256, 1198))
    assert all(ENDOFTEXT.encode() not in b for b in tok.vocab.values() if b != ENDOFTEXT.encode())


def test_training_on_a_list_of_documents_never_merges_across_them() -> None:
    tok = BPETokenizer.train(["ab", "ab", "cd"], 258, special_tokens=())
    assert tok.merges == {(97, 98): 256, (99, 100): 257}


def test_training_stops_early_with_warning() -> None:
    with pytest.warns(UserWarning, match="corpus too small: only 2 of 10 merges"):
        tok = BPETokenizer.train("abc", 256 + 10 + 1)
    assert tok.vocab_size == 256 + 2 + 1
    assert tok.encode("abc") == [257]


# ------------------------------------------------------------------ agreement with tiktoken / HF


def test_heldout_matches_tiktoken_and_hf(tok: BPETokenizer, tik, hf, heldout: str) -> None:
    ids = tok.encode_ordinary(heldout)
    assert ids == tik.encode_ordinary(heldout)
    assert ids == hf.encode(heldout, add_special_tokens=False).ids
    assert tok.encode(heldout) == ids
    assert len(ids) < len(heldout.encode()) / 2  # the merges do compress


@SETTINGS
@given(texts)
def test_encode_matches_tiktoken_and_hf(tok: BPETokenizer, tik, hf, text: str) -> None:
    ids = tok.encode_ordinary(text)
    assert ids == tik.encode_ordinary(text)
    assert ids == hf.encode(text, add_special_tokens=False).ids


@SETTINGS
@given(any_text)
def test_encode_matches_tiktoken_on_any_text(tok: BPETokenizer, tik, text: str) -> None:
    assert tok.encode_ordinary(text) == tik.encode_ordinary(text)


def test_lone_surrogates_are_replaced_like_tiktoken(tok: BPETokenizer, tik) -> None:
    text = "a\ud800b \udfff"
    assert tok.encode_ordinary(text) == tik.encode_ordinary(text)
    assert tok.decode(tok.encode_ordinary(text)) == "a\ufffdb \ufffd"


def test_hf_export_special_tokens_and_decoder(tok: BPETokenizer, hf) -> None:
    assert hf.get_vocab_size() == tok.vocab_size
    assert hf.token_to_id(ENDOFTEXT) == tok.eot_token
    text = f"thou art{ENDOFTEXT} 中文 😀"
    ids = tok.encode(text, allowed_special="all")
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == text


@needs_tiktoken
@needs_tokenizers
def test_custom_pattern_export(shakespeare: str) -> None:
    pattern = r"""\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+"""
    tok = BPETokenizer.train(shakespeare[:20_000], 400, pattern=pattern)
    text = shakespeare[-3_000:] + " 12345 thou"
    assert tok.encode(text) == to_tiktoken(tok).encode(text)
    assert tok.encode(text) == to_hf_tokenizers(tok).encode(text, add_special_tokens=False).ids


# ------------------------------------------------------------------ decoding


@SETTINGS
@given(st.one_of(texts, any_text))
def test_decode_inverts_encode(tok: BPETokenizer, text: str) -> None:
    ids = tok.encode_ordinary(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode()


def test_decode_partial_utf8_gives_replacement_characters(tok: BPETokenizer, tik) -> None:
    assert tok.decode([0xC3]) == "\ufffd"
    assert tok.decode_bytes([0xC3]) == b"\xc3"
    ids = tok.encode("é😀中")
    for cut in range(len(ids) + 1):
        assert tok.decode(ids[:cut]) == tik.decode(ids[:cut])
    raw = list("😀".encode())
    assert tok.decode(raw[:3]) == tik.decode(raw[:3])
    assert "\ufffd" in tok.decode(raw[:3])


def test_decode_accepts_arrays_and_tensors(tok: BPETokenizer) -> None:
    ids = tok.encode("To be, or not to be")
    assert tok.decode(np.array(ids)) == tok.decode(torch.tensor(ids)) == "To be, or not to be"
    assert tok.decode(iter(ids)) == "To be, or not to be"


def test_special_tokens_decode_to_their_text(tok: BPETokenizer) -> None:
    assert tok.decode([tok.eot_token]) == ENDOFTEXT
    assert tok.token_bytes(tok.special_tokens[PAD]) == PAD.encode()


# ------------------------------------------------------------------ special tokens


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_special": "all"},
        {"disallowed_special": ()},
        {"allowed_special": {ENDOFTEXT}, "disallowed_special": ()},
        {"allowed_special": {PAD}, "disallowed_special": ()},
        {"allowed_special": "all", "disallowed_special": ()},
    ],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=specials_texts)
def test_special_tokens_match_tiktoken(tok: BPETokenizer, tik, kwargs: dict, text: str) -> None:
    ids = tok.encode(text, **kwargs)
    assert ids == tik.encode(text, **kwargs)
    assert tok.decode(ids) == text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=specials_texts)
def test_disallowed_special_raises_like_tiktoken(tok: BPETokenizer, tik, text: str) -> None:
    for kwargs in [{}, {"allowed_special": {ENDOFTEXT}}, {"disallowed_special": {PAD}}]:
        try:
            expected = tik.encode(text, **kwargs)
        except ValueError:
            with pytest.raises(ValueError, match="disallowed special token"):
                tok.encode(text, **kwargs)
        else:
            assert tok.encode(text, **kwargs) == expected


def test_special_token_examples(tok: BPETokenizer) -> None:
    text = f"Exeunt.{ENDOFTEXT}ACT II"
    with pytest.raises(ValueError, match=r"disallowed special token '<\|endoftext\|>'"):
        tok.encode(text)
    ordinary = tok.encode(text, disallowed_special=())
    assert tok.eot_token not in ordinary
    assert tok.decode(ordinary) == text
    special = tok.encode(text, allowed_special={ENDOFTEXT})
    assert special.count(tok.eot_token) == 1
    assert tok.decode(special) == text
    assert tok.encode_ordinary(text) == ordinary


def test_unknown_special_token_names_are_rejected(tok: BPETokenizer) -> None:
    with pytest.raises(ValueError, match=r"allowed_special contains \['<\|x\|>'\]"):
        tok.encode("hi", allowed_special={"<|x|>"})
    with pytest.raises(ValueError, match="disallowed_special contains"):
        tok.encode("hi", disallowed_special={"<|x|>"})
    with pytest.raises(ValueError, match="must be 'all' or a collection"):
        tok.encode("hi", allowed_special=ENDOFTEXT)


# ------------------------------------------------------------------ errors


def test_vocab_size_too_small() -> None:
    with pytest.raises(ValueError, match=r"vocab_size must be at least 256 \+ .* = 257.*got 200"):
        BPETokenizer.train("hello", 200)
    with pytest.raises(ValueError, match=r"at least 256 \+ number of special tokens = 258"):
        BPETokenizer.train("hello", 257, special_tokens=(ENDOFTEXT, PAD))
    with pytest.raises(ValueError, match="at least 256"):
        train_naive("hello", 255)


def test_empty_corpus() -> None:
    for corpus in ["", [], ["", ""], ENDOFTEXT * 3]:
        with pytest.raises(ValueError, match="cannot train on an empty corpus"):
            BPETokenizer.train(corpus, 300)
    with pytest.raises(ValueError, match="cannot train on an empty corpus"):
        train_naive("", 300)


def test_special_tokens_must_be_a_collection() -> None:
    with pytest.raises(ValueError, match="special_tokens must be a collection"):
        BPETokenizer.train("hello", 300, special_tokens=ENDOFTEXT)


@pytest.mark.parametrize("bad", [1200, -1, 10**9, "a", 3.5])
def test_decode_rejects_ids_outside_vocabulary(tok: BPETokenizer, bad) -> None:
    with pytest.raises(ValueError, match=r"not in the vocabulary: ids must be integers 0\.\.1199"):
        tok.decode([1, 2, bad])


def test_bad_merges_are_rejected() -> None:
    with pytest.raises(ValueError, match="not defined yet"):
        BPETokenizer({(1, 300): 256})
    with pytest.raises(ValueError, match="already used"):
        BPETokenizer({(1, 2): 5})
    with pytest.raises(ValueError, match="no gaps"):
        BPETokenizer({(1, 2): 300})


# ------------------------------------------------------------------ streaming


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=specials_texts, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_encode_stream_equals_encode(tok: BPETokenizer, text: str, cuts: list[int]) -> None:
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    for kwargs in [{"allowed_special": "all"}, {"disallowed_special": ()}]:
        streamed = [i for ids in tok.encode_stream(chunks, **kwargs) for i in ids]
        assert streamed == tok.encode(text, **kwargs)
    if ENDOFTEXT in text or PAD in text:
        with pytest.raises(ValueError, match="disallowed special token"):
            list(tok.encode_stream(chunks))


def test_encode_stream_holds_back_contractions_and_spaces(tok: BPETokenizer) -> None:
    text = "we'll   go 'll\n\n  now" * 3
    for size in range(1, 8):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert [i for ids in tok.encode_stream(chunks) for i in ids] == tok.encode(text)


def test_encode_stream_with_a_long_special_token(shakespeare: str) -> None:
    special = "<|a b c d e f|>"  # many pre-tokens: only the special-token holdback keeps it
    tok = BPETokenizer.train(shakespeare[:5_000], 300, special_tokens=(special,))
    text = f"x {special}y{special} {special}"
    for size in range(1, len(text) + 1):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        streamed = [i for ids in tok.encode_stream(chunks, allowed_special="all") for i in ids]
        assert streamed == tok.encode(text, allowed_special="all")
        with pytest.raises(ValueError, match="disallowed special token"):
            list(tok.encode_stream(chunks))


def test_encode_file(tok: BPETokenizer, heldout: str, tmp_path: pathlib.Path) -> None:
    text = heldout[:20_000] + "\r\nlast line" + ENDOFTEXT + "after"
    path = tmp_path / "text.txt"
    path.write_bytes(text.encode())
    expected = tok.encode(text, allowed_special="all")
    for chunk_size in [1, 7, 1000, 1 << 20]:
        got = list(tok.encode_file(path, chunk_size=chunk_size, allowed_special="all"))
        assert got == expected
    with pytest.raises(ValueError, match="disallowed special token"):
        list(tok.encode_file(path, chunk_size=100))
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        list(tok.encode_file(path, chunk_size=0))


# ------------------------------------------------------------------ saving and loading


def test_save_load_round_trip(tok: BPETokenizer, heldout: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tok.bpe"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "minigpt-bpe 1"
    assert lines[1] == "pattern " + json.dumps(GPT2_SPLIT_PATTERN)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern
    assert loaded.vocab == tok.vocab
    text = heldout + ENDOFTEXT
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    again = tmp_path / "again.bpe"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_load_rejects_corrupt_files(tok: BPETokenizer, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tok.bpe"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.bpe"
    bad.write_text("\n".join(["minigpt-bpe 99"] + lines[1:]), encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expected header 'minigpt-bpe 1'"):
        BPETokenizer.load(bad)
    bad.write_text("\n".join(lines[:300]), encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected end of file"):
        BPETokenizer.load(bad)
    bad.write_text("\n".join(lines + ["extra"]), encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected text after"):
        BPETokenizer.load(bad)


def _write_gpt2_files(tok: BPETokenizer, directory: pathlib.Path) -> tuple[pathlib.Path, ...]:
    """Write encoder.json/vocab.bpe the way GPT-2 lays them out: byte tokens first in
    byte_encoder order, then one id per merge in rank order, then <|endoftext|>."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_encoder = dict(zip(bs, map(chr, cs), strict=True))
    text = {tid: "".join(byte_encoder[b] for b in data) for tid, data in tok.vocab.items()}
    encoder = {byte_encoder[b]: i for i, b in enumerate(bs)}
    merge_lines = []
    for rank, (a, b) in enumerate(tok.merges):
        encoder[text[a] + text[b]] = 256 + rank
        merge_lines.append(f"{text[a]} {text[b]}")
    encoder[ENDOFTEXT] = len(encoder)
    enc_path, bpe_path = directory / "encoder.json", directory / "vocab.bpe"
    enc_path.write_text(json.dumps(encoder), encoding="utf-8")
    bpe_path.write_text("#version: 0.2\n" + "\n".join(merge_lines) + "\n", encoding="utf-8")
    return enc_path, bpe_path


@needs_tiktoken
@needs_tokenizers
def test_gpt2_files_round_trip(tok: BPETokenizer, heldout: str, tmp_path: pathlib.Path) -> None:
    src = BPETokenizer(tok.merges, {ENDOFTEXT: len(tok.merges) + 256})
    enc_path, bpe_path = _write_gpt2_files(src, tmp_path)
    gpt2 = from_gpt2_files(enc_path, bpe_path)
    assert gpt2.vocab_size == src.vocab_size
    assert gpt2.special_tokens == {ENDOFTEXT: src.vocab_size - 1}
    assert gpt2.encode_ordinary("!") == [0]  # GPT-2 numbers the printable bytes first
    text = heldout[:20_000] + ENDOFTEXT + "中文 😀"
    ids = gpt2.encode(text, allowed_special="all")
    assert [gpt2.token_bytes(i) for i in ids] == [
        src.token_bytes(i) for i in src.encode(text, allowed_special="all")
    ]
    assert gpt2.decode(ids) == text
    assert to_tiktoken(gpt2).encode(text, allowed_special="all") == ids
    assert to_hf_tokenizers(gpt2).encode(text).ids == ids
    out = tmp_path / "out"
    out.mkdir()
    save_gpt2_files(gpt2, out / "encoder.json", out / "vocab.bpe")
    assert json.loads((out / "encoder.json").read_text()) == json.loads(enc_path.read_text())
    assert (out / "vocab.bpe").read_text() == bpe_path.read_text()
    saved = tmp_path / "gpt2.bpe"
    gpt2.save(saved)
    assert BPETokenizer.load(saved).vocab == gpt2.vocab


def test_gpt2_files_errors(tok: BPETokenizer, tmp_path: pathlib.Path) -> None:
    enc_path, bpe_path = _write_gpt2_files(tok, tmp_path)
    encoder = json.loads(enc_path.read_text())
    encoder["extra"] = len(encoder)
    enc_path.write_text(json.dumps(encoder))
    with pytest.raises(ValueError, match="entries, expected 256 bytes"):
        from_gpt2_files(enc_path, bpe_path)
    del encoder["Ġ"]
    enc_path.write_text(json.dumps(encoder))
    with pytest.raises(ValueError, match="no entry for byte token 'Ġ'"):
        from_gpt2_files(enc_path, bpe_path)


# ------------------------------------------------------------------ teaching helpers


@SETTINGS
@given(st.one_of(texts, any_text))
def test_encode_with_merges_matches_tiktoken(tok: BPETokenizer, tik, text: str) -> None:
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert encode_with_merges(text, tok.merges) == tik.encode_ordinary(text)


def test_encode_with_merges_on_shakespeare(tok: BPETokenizer, heldout: str) -> None:
    text = heldout[:20_000]
    assert encode_with_merges(text, tok.merges) == tok.encode_ordinary(text)


def test_decode_with_merges_matches_tiktoken(tok: BPETokenizer, tik) -> None:
    rng = random.Random(0)
    ordinary = tok.vocab_size - len(tok.special_tokens)
    for _ in range(200):
        ids = [rng.randrange(ordinary) for _ in range(rng.randint(0, 12))]
        assert decode_with_merges(ids, tok.merges) == tik.decode(ids) == tok.decode(ids)


def test_truncated_equals_training_a_smaller_vocabulary(shakespeare: str) -> None:
    text = shakespeare[:60_000]
    big = BPETokenizer.train(text, 800, special_tokens=(ENDOFTEXT, PAD))
    for k in (0, 1, 100, 542):
        small = big.truncated(k)
        again = BPETokenizer.train(text, 256 + k + 2, special_tokens=(ENDOFTEXT, PAD))
        assert small.merges == again.merges
        assert small.special_tokens == again.special_tokens == {ENDOFTEXT: 256 + k, PAD: 257 + k}
        assert small.encode("To be<|pad|>", allowed_special="all") == again.encode(
            "To be<|pad|>", allowed_special="all"
        )
    with pytest.raises(ValueError, match="num_merges must be between 0 and 542"):
        big.truncated(543)


def test_bytes_per_token(tok: BPETokenizer, heldout: str) -> None:
    text = heldout[:5_000]
    assert tok.bytes_per_token(text) == len(text.encode()) / len(tok.encode_ordinary(text))
    assert BPETokenizer().bytes_per_token("é") == 1.0  # two bytes, two tokens
    assert tok.truncated(0).bytes_per_token(text) == 1.0
    with pytest.raises(ValueError, match="empty"):
        tok.bytes_per_token("")
