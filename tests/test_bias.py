"""minigpt.bias: co-occurrence counts on hand-made text, and the rate-based ranking."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from minigpt.bias import (
    DESCRIPTIVE_WORDS,
    PRONOUNS,
    bias_table,
    cooccurrence_counts,
    mean_cooccurrences,
    words,
)

TEXT = """He was a brave and noble king; his sword was bloody.
She was fair and gentle, and her voice was sweet.
The noble lady said she was weary."""


def test_counts_by_hand():
    counts = cooccurrence_counts(words(TEXT), window=3)
    # he(0): brave(3); his(7) sees 4..10: noble(5), bloody(10)
    assert counts["male"] == Counter({"brave": 1, "noble": 1, "bloody": 1})
    # she(11) sees 8..14: bloody(10), fair(13); her(17): gentle(15), sweet(20); she(25):
    # noble(22). "bloody" (the king's sword) crosses the sentence: a window is not syntax.
    assert counts["female"] == Counter({"bloody": 1, "fair": 1, "gentle": 1, "sweet": 1,
                                        "noble": 1})


def test_counts_match_a_brute_force_loop():
    tokens = words(TEXT * 3)
    vocab = set(DESCRIPTIVE_WORDS)
    for window in (1, 2, 5, 8):
        counts = cooccurrence_counts(tokens, window=window)
        for group, members in PRONOUNS.items():
            expected = Counter()
            for i, t in enumerate(tokens):
                if t in members:
                    for j, u in enumerate(tokens):
                        if 0 < abs(i - j) <= window and u in vocab:
                            expected[u] += 1
            assert counts[group] == expected, (window, group)


def test_ranking_uses_rates_not_raw_counts():
    # "he" twice as common: "kind" has 2x the male count but the same share of each group.
    counts = {"male": Counter(kind=20, brave=20), "female": Counter(kind=10, fair=10)}
    table = {row["word"]: row for row in bias_table(counts, min_count=1, smoothing=1e-9)}
    assert table["kind"]["log_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert table["brave"]["log_ratio"] < 0 < table["fair"]["log_ratio"]
    assert table["fair"]["ratio"] == pytest.approx(math.exp(table["fair"]["log_ratio"]), rel=1e-3)
    assert [r["word"] for r in bias_table(counts, min_count=15)] == ["brave", "kind"]


def test_mean_cooccurrences_and_words():
    assert mean_cooccurrences({"male": Counter(a=1, b=2), "female": Counter()}) == {
        "male": 1.5, "female": 0.0}
    assert words("Thou art more lovely and more temperate: O'er") == [
        "thou", "art", "more", "lovely", "and", "more", "temperate", "o'er"]


def test_errors():
    with pytest.raises(ValueError, match="window must be a positive integer"):
        cooccurrence_counts(["he"], window=0)
    with pytest.raises(ValueError, match="not a string"):
        cooccurrence_counts("he was brave")
    with pytest.raises(ValueError, match="in both groups"):
        cooccurrence_counts(["he"], groups={"a": ["he"], "b": ["he"]})
    with pytest.raises(ValueError, match="no counts for group"):
        bias_table({"male": Counter(a=1)})
    with pytest.raises(ValueError, match="text must be a string"):
        words(None)
