"""Co-occurrence bias: which descriptive words appear near "he" and which near "she".

GPT-3's paper (Brown et al. 2020, §6.2.1) measured gender associations by *co-occurrence*: it
sampled 800 continuations of prompts such as "He was very" and "She was very", and counted
which adjectives and adverbs occurred near each pronoun. Its Table 6.1 ranks the words "most
skewed towards a category by co-occurring with it at a higher rate as compared to the other
category": "beautiful" (158 co-occurrences) and "gorgeous" on the female side, "lazy",
"jolly" and "eccentric" among the male words.

A language model learns such associations from its training text. This module measures them
*in a corpus* (the book's Shakespeare), the same way: every occurrence of a pronoun of a group
counts the candidate words within ``window`` words on either side (:func:`cooccurrence_counts`;
a word near two pronouns counts twice). Because "he/him/his" are about twice as frequent as
"she/her/hers" in Shakespeare, raw counts would make nearly every word "male"; the ranking
(:func:`bias_table`) compares *rates*: a word's share of all the descriptive-word
co-occurrences of each group, as a smoothed log ratio.

Limits, stated: a fixed list of descriptive words (:data:`DESCRIPTIVE_WORDS`) stands in for the
paper's part-of-speech tagger; a window ignores syntax ("she loved the noble duke" makes "noble"
co-occur with "she"); "her" is both object and possessive; and only two pronoun groups are
compared, the simplification the paper's footnote also makes.

    >>> text = "She was fair. The old king said he was brave, and she was kind."
    >>> counts = cooccurrence_counts(words(text), window=2, vocabulary=["fair", "brave", "kind",
    ...                                                                  "old"])
    >>> dict(counts["female"]), dict(counts["male"])
    ({'fair': 1, 'brave': 1, 'kind': 1}, {'brave': 1})

    ("brave", said of the king, also lands near the second "she": a window is not syntax.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from minigpt.checks import check_int

__all__ = [
    "DESCRIPTIVE_WORDS",
    "PRONOUNS",
    "bias_table",
    "cooccurrence_counts",
    "mean_cooccurrences",
    "words",
]

#: The pronoun groups compared, as in the paper's §6.2.1 (male and female pronouns only).
PRONOUNS: dict[str, tuple[str, ...]] = {
    "male": ("he", "him", "his", "himself"),
    "female": ("she", "her", "hers", "herself"),
}

#: Adjectives frequent in Shakespeare that describe people (a fixed list in place of a
#: part-of-speech tagger, which would need downloaded data).
DESCRIPTIVE_WORDS: tuple[str, ...] = (
    "angry", "base", "beauteous", "beautiful", "black", "bloody", "bold", "brave", "bright",
    "chaste", "cold", "cruel", "dead", "dear", "fair", "false", "fearful", "fierce", "fond",
    "foolish", "foul", "gentle", "good", "gracious", "great", "happy", "holy", "honest",
    "jealous", "kind", "learned", "little", "lovely", "loving", "mad", "merry", "mighty",
    "modest", "noble", "old", "pale", "patient", "poor", "proud", "rich", "royal", "rude",
    "sad", "sick", "strong", "sweet", "tender", "true", "valiant", "vile", "virtuous",
    "wanton", "weak", "wicked", "wild", "wise", "worthy", "wretched", "young",
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters, with inner apostrophes kept: ``"o'er"``).

    >>> words("O, she doth teach the torches to burn bright! 'Tis o'er.")
    ['o', 'she', 'doth', 'teach', 'the', 'torches', 'to', 'burn', 'bright', 'tis', "o'er"]
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return _WORD.findall(text.lower())


def cooccurrence_counts(
    tokens: Sequence[str],
    groups: Mapping[str, Sequence[str]] = PRONOUNS,
    window: int = 5,
    vocabulary: Iterable[str] = DESCRIPTIVE_WORDS,
) -> dict[str, Counter]:
    """For each group, how often each ``vocabulary`` word is within ``window`` words of one
    of the group's words: ``{group: Counter({word: count})}``.

    Every occurrence of a group word at position ``i`` counts the vocabulary words at
    positions ``i - window .. i + window`` (itself excluded).

    >>> cooccurrence_counts(["he", "a", "good"], window=1, vocabulary=["good"])
    {'male': Counter(), 'female': Counter()}
    >>> cooccurrence_counts(["he", "good", "she"], window=1, vocabulary=["good"])["female"]
    Counter({'good': 1})
    """
    check_int("window", window)  # words on each side
    if isinstance(tokens, str):
        raise ValueError("tokens must be a sequence of words (use words(text)), not a string")
    if not groups:
        raise ValueError("groups must name at least one group of words")
    owner: dict[str, str] = {}
    for group, members in groups.items():
        for member in members:
            if member in owner:
                raise ValueError(f"{member!r} is in both groups {owner[member]!r} and "
                                 f"{group!r}")
            owner[member] = group
    vocabulary = set(vocabulary)
    counts = {group: Counter() for group in groups}
    for i, token in enumerate(tokens):
        group = owner.get(token)
        if group is None:
            continue
        for j in range(max(0, i - window), min(len(tokens), i + window + 1)):
            if j != i and tokens[j] in vocabulary:
                counts[group][tokens[j]] += 1
    return counts


def mean_cooccurrences(counts: Mapping[str, Counter]) -> dict[str, float]:
    """Average co-occurrence count per word that occurs with the group (the paper's
    "Average Number of Co-Occurrences Across All Words"), rounded to 0.1.

    >>> mean_cooccurrences({"male": Counter(a=3, b=1), "female": Counter()})
    {'male': 2.0, 'female': 0.0}
    """
    return {g: round(sum(c.values()) / len(c), 1) if c else 0.0 for g, c in counts.items()}


def bias_table(
    counts: Mapping[str, Counter],
    first: str = "male",
    second: str = "female",
    *,
    min_count: int = 10,
    smoothing: float = 1.0,
) -> list[dict[str, float | int | str]]:
    """Words ranked from most ``first``-leaning to most ``second``-leaning.

    For word ``w`` with counts ``a`` (with ``first``) and ``b`` (with ``second``), out of group
    totals ``A`` and ``B`` over ``V`` words: ``log_ratio = ln((b + s) / (B + s V)) -
    ln((a + s) / (A + s V))``, with add-``s`` smoothing. Negative: a larger share of
    ``first``'s co-occurrences; positive: of ``second``'s; ``ratio`` is ``exp(log_ratio)``.
    Words seen fewer than ``min_count`` times in all are left out (their ratios are noise).

    >>> table = bias_table({"male": Counter(brave=8, kind=4), "female": Counter(fair=6, kind=2)},
    ...                    min_count=1)
    >>> [(row["word"], row["log_ratio"]) for row in table]
    [('brave', -1.887), ('kind', -0.201), ('fair', 2.256)]
    """
    for group in (first, second):
        if group not in counts:
            raise ValueError(f"no counts for group {group!r}; have {', '.join(counts)}")
    if not smoothing > 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing!r}")
    a_counts, b_counts = counts[first], counts[second]
    vocab = sorted(set(a_counts) | set(b_counts))
    if not vocab:
        raise ValueError("no co-occurrences to rank")
    a_total = sum(a_counts.values()) + smoothing * len(vocab)
    b_total = sum(b_counts.values()) + smoothing * len(vocab)
    rows = []
    for word in vocab:
        a, b = a_counts[word], b_counts[word]
        if a + b < min_count:
            continue
        log_ratio = math.log((b + smoothing) / b_total) - math.log((a + smoothing) / a_total)
        rows.append({"word": word, first: a, second: b, "log_ratio": round(log_ratio, 3),
                     "ratio": round(math.exp(log_ratio), 3)})
    rows.sort(key=lambda r: (r["log_ratio"], r["word"]))
    return rows
