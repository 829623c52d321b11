"""BPE tokenizers in other formats: GPT-2's files, ``tiktoken`` and Hugging Face ``tokenizers``.

:class:`~minigpt.bpe.BPETokenizer` trains, encodes and decodes; this module moves its tokens
between it and the formats of the rest of the world:

- :func:`from_gpt2_files` / :func:`save_gpt2_files`: GPT-2's ``encoder.json`` and ``vocab.bpe``
  (tokens written with :func:`~minigpt.bpe.bytes_to_unicode`);
- :func:`to_tiktoken`: a ``tiktoken.Encoding`` with the same ids (what the tests compare
  against, and a fast encoder);
- :func:`to_hf_tokenizers`: a Hugging Face ``tokenizers.Tokenizer``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import TYPE_CHECKING

from minigpt.bpe import ENDOFTEXT, GPT2_SPLIT_PATTERN, BPETokenizer, Pair, bytes_to_unicode

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time
    import tiktoken
    import tokenizers

__all__ = [
    "from_gpt2_files",
    "gpt2_strings",
    "mergeable_ranks",
    "save_gpt2_files",
    "to_hf_tokenizers",
    "to_tiktoken",
]


def from_gpt2_files(
    encoder_json: str | os.PathLike[str],
    vocab_bpe: str | os.PathLike[str],
    special_tokens: Iterable[str] | None = None,
) -> BPETokenizer:
    """Load GPT-2's ``encoder.json`` (token text -> id) and ``vocab.bpe`` (merges).

    Tokens are written with :func:`bytes_to_unicode`. ``special_tokens`` lists the
    entries of ``encoder.json`` that are special; by default ``<|endoftext|>`` if
    present. Every other entry must be a byte or the result of a merge.
    """
    with open(encoder_json, encoding="utf-8") as f:
        encoder: dict[str, int] = json.load(f)
    with open(vocab_bpe, encoding="utf-8") as f:
        merge_lines = f.read().split("\n")
    if merge_lines and merge_lines[0].startswith("#version"):  # header; "#" is a token
        merge_lines = merge_lines[1:]
    merge_lines = [line for line in merge_lines if line]
    if special_tokens is None:
        special_tokens = [ENDOFTEXT] if ENDOFTEXT in encoder else []
    specials = {t: _lookup(encoder, t, "special token") for t in special_tokens}
    b2u = bytes_to_unicode()
    byte_ids = [_lookup(encoder, b2u[b], "byte token") for b in range(256)]
    merges: dict[Pair, int] = {}
    for line in merge_lines:
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{vocab_bpe}: bad merge line {line!r}, expected 'left right'")
        left, right = parts
        pair = (_lookup(encoder, left, "merge part"), _lookup(encoder, right, "merge part"))
        merges[pair] = _lookup(encoder, left + right, "merge result")
    expected = 256 + len(merges) + len(specials)
    if len(encoder) != expected:
        raise ValueError(
            f"{encoder_json} has {len(encoder)} entries, expected 256 bytes + "
            f"{len(merges)} merges + {len(specials)} special tokens = {expected}"
        )
    return BPETokenizer(merges, specials, GPT2_SPLIT_PATTERN, byte_ids)

def save_gpt2_files(
    tok: BPETokenizer, encoder_json: str | os.PathLike[str], vocab_bpe: str | os.PathLike[str]
) -> None:
    """Write ``encoder.json`` and ``vocab.bpe`` in GPT-2's format."""
    as_text = gpt2_strings(tok)
    encoder = {as_text[tid]: tid for tid in range(tok.vocab_size)}
    with open(encoder_json, "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    lines = ["#version: 0.2"] + [f"{as_text[a]} {as_text[b]}" for a, b in tok.merges]
    with open(vocab_bpe, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")

def gpt2_strings(tok: BPETokenizer) -> dict[int, str]:
    """id -> token text in GPT-2's byte-to-unicode form (special tokens verbatim)."""
    b2u = bytes_to_unicode()
    specials = {tid: t for t, tid in tok.special_tokens.items()}
    return {
        tid: specials[tid] if tid in specials else "".join(b2u[b] for b in data)
        for tid, data in tok.vocab.items()
    }

def mergeable_ranks(tok: BPETokenizer) -> dict[bytes, int]:
    """``{token bytes: id}`` for all non-special tokens, as ``tiktoken`` wants them.

    ``tiktoken`` uses the id as merge priority, so merged tokens must have increasing
    ids in rank order (true for trained tokenizers and for GPT-2's files).
    """
    new_ids = list(tok.merges.values())
    if any(x >= y for x, y in pairwise(new_ids)):
        raise ValueError("merged token ids must increase with merge rank to use tiktoken")
    special_ids = set(tok.special_tokens.values())
    ranks = {data: tid for tid, data in tok.vocab.items() if tid not in special_ids}
    if len(ranks) != tok.vocab_size - len(special_ids):
        raise ValueError("two tokens have the same bytes; tiktoken cannot represent this")
    return ranks

def to_tiktoken(tok: BPETokenizer, name: str = "minigpt") -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with the same tokens, ids, regex and special tokens."""
    import tiktoken

    return tiktoken.Encoding(
        name,
        pat_str=tok.pattern,
        mergeable_ranks=mergeable_ranks(tok),
        special_tokens=dict(tok.special_tokens),
    )

def to_hf_tokenizers(tok: BPETokenizer) -> tokenizers.Tokenizer:
    """A Hugging Face ``tokenizers.Tokenizer``: byte-level BPE, same vocab and merges.

    Uses the ByteLevel pre-tokenizer (GPT-2 regex, ``add_prefix_space=False``) and
    decoder. Special tokens are added as special tokens with their ids; note that
    Hugging Face always treats their text as special (like ``allowed_special="all"``).
    """
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    as_text = gpt2_strings(tok)
    vocab = {text: tid for tid, text in as_text.items()}
    merges = [(as_text[a], as_text[b]) for a, b in tok.merges]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=tok.pattern == GPT2_SPLIT_PATTERN
    )
    if tok.pattern != GPT2_SPLIT_PATTERN:
        split = pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated")
        byte_level = pre_tokenizers.Sequence([split, byte_level])
    hf.pre_tokenizer = byte_level
    hf.decoder = decoders.ByteLevel()
    specials = sorted(tok.special_tokens, key=tok.special_tokens.__getitem__)
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return hf


def _lookup(encoder: Mapping[str, int], key: str, what: str) -> int:
    if key not in encoder:
        raise ValueError(f"encoder.json has no entry for {what} {key!r}")
    return encoder[key]
