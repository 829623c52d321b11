"""GPT-3's quality filter: a classifier on hashed words, and a Pareto rule to keep documents.

Brown et al. 2020 (Appendix A) trained a logistic regression to tell their curated corpora
(WebText, Wikipedia, web books), labelled 1, from raw Common Crawl, labelled 0, on the
features of Spark's tokenizer and ``HashingTF``. A crawled document with score ``s`` was kept
when ``np.random.pareto(alpha) > 1 - s`` with ``alpha = 9``: most kept documents score high,
but some low-scoring ones get through, so the filtered crawl is not only text that looks like
the reference corpora.

Here the features are the ones scikit-learn's ``HashingVectorizer`` computes with its
defaults, so that tests can compare the two: lowercased words of two or more word characters,
each hashed with MurmurHash3 (32 bits, seed 0) into one of ``n_features`` buckets, with the
sign of the hash as the sign of the count (collisions then cancel on average instead of
adding up), and each row scaled to unit length.

    >>> X = hashed_features(["the cat sat", "The CAT!"], n_features=16)
    >>> X.shape, np.round((X ** 2).sum(axis=1), 6).tolist()
    ((2, 16), [1.0, 1.0])
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.checks import check_int

__all__ = [
    "TOKEN_PATTERN",
    "tokenize",
    "murmurhash3_32",
    "hashed_features",
    "LogisticModel",
    "fit_logistic_regression",
    "QualityClassifier",
    "pareto_keep",
    "keep_probability",
]

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern

_M32 = 0xFFFFFFFF


def tokenize(text: str) -> list[str]:
    """The words the features count: lowercased runs of 2+ word characters.

    >>> tokenize("To be, or not to be: I'm Hamlet!")
    ['to', 'be', 'or', 'not', 'to', 'be', 'hamlet']
    """
    if not isinstance(text, str):
        raise ValueError(f"a document must be a str, got {type(text).__name__}")
    return TOKEN_PATTERN.findall(text.lower())


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


@functools.lru_cache(maxsize=1 << 17)
def murmurhash3_32(key: str, seed: int = 0) -> int:
    """MurmurHash3 (x86, 32 bits) of ``key``'s UTF-8 bytes, as a signed 32-bit integer.

    The hash scikit-learn's ``HashingVectorizer`` and Spark's ``HashingTF`` use (Spark with
    seed 42). Each distinct word is hashed once and cached.

    >>> murmurhash3_32("hello"), murmurhash3_32("hello", seed=42)
    (613153351, -488910111)
    """
    data = key.encode("utf-8")
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    n_blocks = len(data) // 4
    for i in range(n_blocks):
        k = int.from_bytes(data[4 * i: 4 * i + 4], "little")
        k = _rotl((k * c1) & _M32, 15) * c2 & _M32
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _M32
    tail = data[4 * n_blocks:]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= _rotl((k * c1) & _M32, 15) * c2 & _M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def _bucket(h: int, n_features: int) -> int:
    if h == -(1 << 31):  # abs() would overflow in 32 bits; scikit-learn's special case
        return ((1 << 31) - 1 - (n_features - 1)) % n_features
    return abs(h) % n_features


def hashed_features(
    texts: Sequence[str],
    n_features: int = 2**12,
    alternate_sign: bool = True,
    norm: str | None = "l2",
) -> np.ndarray:
    """Hashed bag-of-words features, ``(len(texts), n_features)`` float64.

    Word ``w`` adds ``sign(h)`` (or 1 with ``alternate_sign=False``) to bucket
    ``|h| mod n_features``, where ``h = murmurhash3_32(w)``; rows are then scaled to unit L2
    norm (``norm="l2"``) or left as counts (``norm=None``). A text with no word is a row of
    zeros. Equal to ``sklearn.feature_extraction.text.HashingVectorizer`` with the same
    arguments.

    >>> hashed_features(["to be or not to be"], n_features=4, alternate_sign=False, norm=None)
    array([[1., 0., 2., 3.]])
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of documents, not one str")
    check_int("n_features", n_features)
    if norm not in ("l2", None):
        raise ValueError(f"norm must be 'l2' or None, got {norm!r}")
    X = np.zeros((len(texts), n_features))
    for row, text in enumerate(texts):
        hashes = [murmurhash3_32(word) for word in tokenize(text)]
        if not hashes:
            continue
        buckets = np.array([_bucket(h, n_features) for h in hashes])
        signs = np.where(np.array(hashes) >= 0, 1.0, -1.0) if alternate_sign else 1.0
        np.add.at(X[row], buckets, signs)
    if norm == "l2":
        lengths = np.linalg.norm(X, axis=1, keepdims=True)
        X = np.divide(X, lengths, out=np.zeros_like(X), where=lengths > 0)
    return X


@dataclass(frozen=True)
class LogisticModel:
    """Weights ``(F,)`` and bias of a logistic regression: ``p(y=1|x) = sigmoid(x @ w + b)``."""

    weights: np.ndarray
    bias: float

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The logits ``X @ w + b``, ``(N,)`` for ``X`` ``(N, F)``."""
        return np.asarray(X, dtype=np.float64) @ self.weights + self.bias

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``p(y=1|x)`` for each row of ``X`` ``(N, F)``: ``(N,)`` in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))


def fit_logistic_regression(X: np.ndarray, y: np.ndarray, l2: float = 1e-3,
                            max_iter: int = 500) -> LogisticModel:
    """Minimise ``mean(log-loss) + l2/2 * ||w||^2`` (the bias is not penalised) with L-BFGS.

    ``X`` ``(N, F)``, ``y`` ``(N,)`` of 0s and 1s (both present). The objective is convex, so
    the result is scikit-learn's ``LogisticRegression(C=1 / (l2 * N))`` up to the solvers'
    tolerance.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (N, F) and y (N,), got {X.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all() or len(np.unique(y)) != 2:
        raise ValueError("y must hold 0s and 1s, and both classes")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2!r}")
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(Xt @ w + b, yt) + 0.5 * l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return LogisticModel(w.detach().numpy().copy(), float(b.detach()))


@dataclass(frozen=True)
class QualityClassifier:
    """A logistic regression on :func:`hashed_features`: ``score(texts)`` is the probability
    that each text comes from the reference (high-quality) side."""

    model: LogisticModel
    n_features: int

    @classmethod
    def fit(cls, reference: Sequence[str], crawl: Sequence[str], n_features: int = 2**12,
            l2: float = 1e-3) -> QualityClassifier:
        """Train on ``reference`` texts (label 1) against ``crawl`` texts (label 0)."""
        if len(reference) == 0 or len(crawl) == 0:
            raise ValueError("the classifier needs reference and crawl documents, got "
                             f"{len(reference)} and {len(crawl)}")
        X = hashed_features([*reference, *crawl], n_features)
        y = np.r_[np.ones(len(reference)), np.zeros(len(crawl))]
        return cls(fit_logistic_regression(X, y, l2), n_features)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """``(N,)`` scores in (0, 1), one per text."""
        return self.model.predict_proba(hashed_features(texts, self.n_features))


def _check_scores(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if not ((scores >= 0) & (scores <= 1)).all():
        raise ValueError("scores must be probabilities in [0, 1]; got values from "
                         f"{np.nanmin(scores):.3g} to {np.nanmax(scores):.3g}")
    return scores


def pareto_keep(
    scores: np.ndarray | Sequence[float],
    alpha: float = 9.0,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """GPT-3's keep rule: keep document ``i`` when ``pareto_i > 1 - scores[i]`` (Appendix A).

    ``scores`` ``(N,)`` are the classifier's probabilities, in ``[0, 1]``. The ``N`` draws come
    from one call ``rng.pareto(alpha, size=N)`` (the paper's ``np.random.pareto(alpha)``, a
    Lomax distribution), where ``rng`` is a numpy ``Generator``, or a seed for
    ``np.random.default_rng``. Returns a boolean mask ``(N,)``. A ``ValueError`` is raised for
    ``scores`` that are not 1-D or not in ``[0, 1]``, and for ``alpha <= 0``.

    >>> pareto_keep([1.0, 0.9, 0.1, 0.0], rng=0).tolist()
    [True, True, False, False]
    """
    scores = _check_scores(scores)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (GPT-3 used 9), got {alpha!r}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return generator.pareto(alpha, size=len(scores)) > 1.0 - scores


def keep_probability(scores: np.ndarray | Sequence[float], alpha: float = 9.0) -> np.ndarray:
    """The chance that :func:`pareto_keep` keeps a document of score ``s``: ``(2 - s)^-alpha``.

    A Lomax draw exceeds ``x >= 0`` with probability ``(1 + x)^-alpha``; here ``x = 1 - s``.

    >>> np.round(keep_probability([1.0, 0.5, 0.0]), 4).tolist()
    [1.0, 0.026, 0.002]
    """
    scores = _check_scores(scores)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (GPT-3 used 9), got {alpha!r}")
    return (2.0 - scores) ** -alpha
