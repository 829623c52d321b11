"""Tests for minigpt.corpus.quality (GPT-3's quality classifier and Pareto rule, Appendix A).

The reference is scikit-learn: ``HashingVectorizer`` must give the same features (same
MurmurHash3 buckets, signs and L2 norm), and ``LogisticRegression`` trained on them with the
matching penalty (``C = 1 / (l2 * N)``) the same predictions within a tolerance. The Pareto
rule is checked against its closed form, ``P(keep | s) = (2 - s)^-alpha``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.corpus.quality import (
    QualityClassifier,
    fit_logistic_regression,
    hashed_features,
    keep_probability,
    murmurhash3_32,
    pareto_keep,
    tokenize,
)
from minigpt.corpus.webpages import make_crawl, reference_excerpts

needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="scikit-learn is the reference (pip install scikit-learn)",
)

DOCS = [
    "To be, or not to be, that is the question:",
    "Cheap flights CHEAP flights best price -- click here!!",
    "Ã© â€™ garbled Ã¨ text\ufffd with été and naïve words",
    "",
    "a b c",  # only one-letter words: no feature
    "Home | About us | Contact | Privacy Policy | © 2019 Acme Media. All rights reserved.",
]


@needs_sklearn
@pytest.mark.parametrize("n_features", [1, 7, 16, 1024, 2**18])
@pytest.mark.parametrize("alternate_sign", [True, False])
@pytest.mark.parametrize("norm", ["l2", None])
def test_features_equal_sklearn_hashing_vectorizer(n_features, alternate_sign, norm):
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(n_features=n_features, alternate_sign=alternate_sign, norm=norm)
    want = vectorizer.transform(DOCS).toarray()
    np.testing.assert_allclose(hashed_features(DOCS, n_features, alternate_sign, norm), want)


@needs_sklearn
def test_murmurhash_equals_sklearn_on_many_words():
    from sklearn.utils import murmurhash3_32 as sk_murmur

    words = set(tokenize(" ".join(p.text for p in make_crawl(40, seed=3))))
    words |= {"", "a", "ab", "abc", "abcd", "abcde", "été", "日本語", "x" * 101}
    for word in sorted(words):
        for seed in (0, 42):
            assert murmurhash3_32(word, seed) == sk_murmur(word, seed=seed), (word, seed)


@needs_sklearn
def test_logistic_regression_matches_sklearn_on_the_crawl():
    from sklearn.linear_model import LogisticRegression

    reference = reference_excerpts(150, seed=1)
    crawl = [p.text for p in make_crawl(150, seed=2)]
    X = hashed_features(reference + crawl, n_features=2**10)
    y = np.r_[np.ones(150), np.zeros(150)]
    l2 = 1e-2
    ours = fit_logistic_regression(X, y, l2=l2)
    theirs = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(X, y)
    held_out = hashed_features([p.text for p in make_crawl(100, seed=5)], n_features=2**10)
    np.testing.assert_allclose(ours.predict_proba(held_out),
                               theirs.predict_proba(held_out)[:, 1], atol=1e-4)
    np.testing.assert_allclose(ours.weights, theirs.coef_[0], atol=1e-3)
    assert ours.bias == pytest.approx(theirs.intercept_[0], abs=1e-3)


def test_classifier_ranks_plays_above_junk():
    crawl = make_crawl(300, seed=4)
    clf = QualityClassifier.fit(reference_excerpts(300, seed=1),
                                [p.text for p in make_crawl(150, seed=6)], n_features=2**10)
    scores = clf.score([p.text for p in crawl])
    kinds = np.array([p.kind for p in crawl])
    assert scores[kinds == "play"].mean() > 0.5
    for junk in ("boilerplate", "spam"):
        assert scores[kinds == junk].max() < scores[kinds == "play"].min()


def test_pareto_rule_keeps_at_the_closed_form_rate():
    for score in (0.0, 0.5, 0.8, 0.95):
        kept = pareto_keep(np.full(400_000, score), alpha=9.0, rng=1).mean()
        assert kept == pytest.approx(float(keep_probability([score])[0]), abs=0.003)


def test_pareto_rule_is_the_papers_numpy_call():
    """The legacy ``np.random.pareto`` of the paper and ``Generator.pareto`` are one law."""
    scores = np.random.default_rng(0).random(200_000)
    legacy = np.random.RandomState(0).pareto(9, size=len(scores)) > 1 - scores
    assert pareto_keep(scores, 9.0, rng=0).mean() == pytest.approx(legacy.mean(), abs=0.004)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=50), st.floats(0.1, 20))
def test_keep_probability_is_monotone_and_bounded(scores, alpha):
    p = keep_probability(sorted(scores), alpha)
    assert ((p > 0) & (p <= 1)).all() and (np.diff(p) >= 0).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_rows_have_unit_norm_or_are_empty(texts):
    X = hashed_features(texts, n_features=64)
    norms = np.linalg.norm(X, axis=1)
    for text, norm in zip(texts, norms, strict=True):
        assert norm == pytest.approx(1.0 if tokenize(text) else 0.0)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        pareto_keep([0.2, 1.5])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        pareto_keep([0.2], alpha=0)
    with pytest.raises(ValueError, match="not one str"):
        hashed_features("one document")
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic_regression(np.eye(3), np.ones(3))
    with pytest.raises(ValueError, match="reference and crawl"):
        QualityClassifier.fit([], ["x"])
