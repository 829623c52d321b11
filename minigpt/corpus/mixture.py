"""GPT-3's data mixture: Table 2.2 as sampling weights, epochs per source, a weighted sampler.

GPT-3 did not read its five datasets in proportion to their sizes (Brown et al. 2020,
section 2.2 and Table 2.2). Each training sequence was drawn from a dataset chosen with a
fixed weight: filtered Common Crawl, 410 billion tokens, got 60% of the draws; Wikipedia, 3
billion tokens, got 3%. Over the 300 billion training tokens (Table 2.1) a source of ``T``
tokens and weight ``w`` is therefore read ``w * 300e9 / T`` times, its number of *epochs*:
less than half of Common Crawl was seen, and Wikipedia about three times: the paper accepts
a little overfitting in exchange for higher-quality training data.

:class:`MixtureSampler` draws that way: the source of each draw is random with the weights,
and within a source the documents come in a shuffled order without replacement until the
source runs out; then it is reshuffled and read again (a new epoch). So documents repeat
*across* epochs of small sources, never within one.

    >>> names = [s.name for s in TABLE_2_2]
    >>> epochs = mixture_epochs([s.tokens for s in TABLE_2_2],
    ...                         normalize_weights([s.weight for s in TABLE_2_2]))
    >>> {n: round(float(e), 2) for n, e in zip(names, epochs)}["Wikipedia"]
    2.97
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Source",
    "TABLE_2_2",
    "TRAINING_TOKENS",
    "check_weights",
    "normalize_weights",
    "mixture_epochs",
    "MixtureSampler",
]

TRAINING_TOKENS = 300e9  # every GPT-3 model saw 300 billion tokens (Table 2.1 caption)


@dataclass(frozen=True)
class Source:
    """One row of Table 2.2: tokens in the dataset, weight in the training mix, and the epochs
    the paper reports for 300B training tokens."""

    name: str
    tokens: float
    weight: float
    epochs: float


TABLE_2_2 = (
    Source("Common Crawl (filtered)", 410e9, 0.60, 0.44),
    Source("WebText2", 19e9, 0.22, 2.9),
    Source("Books1", 12e9, 0.08, 1.9),
    Source("Books2", 55e9, 0.08, 0.43),
    Source("Wikipedia", 3e9, 0.03, 3.4),
)


def check_weights(weights: Sequence[float] | np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """The weights as a float array ``(S,)`` if they are a valid mixture, else a ``ValueError``.

    Valid: 1-D, not empty, finite, every weight ``>= 0``, and the sum within ``atol`` of 1.

    >>> check_weights([0.5, 0.5]).tolist()
    [0.5, 0.5]
    >>> check_weights([0.60, 0.22, 0.08, 0.08, 0.03])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: mixture weights must sum to 1, got 1.01 ... (normalize_weights)
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    total = float(w.sum())
    if abs(total - 1.0) > atol:
        raise ValueError(f"mixture weights must sum to 1, got {total:.6g} (Table 2.2 prints "
                         "rounded weights); divide by the sum first (normalize_weights)")
    return w


def normalize_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Divide non-negative weights by their sum, so that they sum to 1.

    >>> normalize_weights([3, 1]).tolist()
    [0.75, 0.25]
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w / w.sum()


def mixture_epochs(
    tokens: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    total_tokens: float = TRAINING_TOKENS,
) -> np.ndarray:
    """Epochs of each source when ``total_tokens`` are drawn with ``weights``: ``(S,)``.

    Source ``i`` holds ``tokens[i]`` tokens and supplies ``weights[i] * total_tokens`` of the
    training tokens, so it is read ``weights[i] * total_tokens / tokens[i]`` times.
    ``tokens`` and ``weights`` must have the same length; every ``tokens[i]`` and
    ``total_tokens`` must be ``> 0``; the weights must be a valid mixture
    (:func:`check_weights`: each ``>= 0``, summing to 1 within ``1e-6``). Anything else
    raises a ``ValueError``.

    >>> mixture_epochs([100, 50], [0.5, 0.5], total_tokens=200).tolist()
    [1.0, 2.0]
    """
    t = np.asarray(tokens, dtype=np.float64)
    w = check_weights(weights)
    if t.shape != w.shape:
        raise ValueError(f"tokens and weights must have the same length, got {t.shape} and "
                         f"{w.shape}")
    if not (np.isfinite(t).all() and (t > 0).all()):
        raise ValueError(f"every source must hold > 0 tokens, got {t.tolist()}")
    if not total_tokens > 0:
        raise ValueError(f"total_tokens must be > 0, got {total_tokens!r}")
    return w * total_tokens / t


class MixtureSampler:
    """Draw documents from several sources by weight: without replacement within an epoch of a
    source, with repetition across epochs.

    ``sizes[i]`` is the number of documents of source ``i``; ``weights`` a valid mixture
    (:func:`check_weights`). :meth:`draw` returns ``(n, 2)`` int64 rows ``(source, document)``.

    >>> sampler = MixtureSampler([3, 100], [0.5, 0.5], seed=0)
    >>> batch = sampler.draw(8)
    >>> batch.shape, sorted(set(batch[:, 0].tolist()))
    ((8, 2), [0, 1])
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | np.ndarray,
                 seed: int = 0) -> None:
        self.weights = check_weights(weights)
        self.sizes = np.asarray(sizes)
        if self.sizes.shape != self.weights.shape:
            raise ValueError(f"one size per weight: got {self.sizes.shape} sizes and "
                             f"{self.weights.shape} weights")
        if not np.issubdtype(self.sizes.dtype, np.integer) or (self.sizes < 1).any():
            raise ValueError(f"sizes must be positive integers, got {self.sizes.tolist()}")
        self.rng = np.random.default_rng(seed)
        self.orders = [self.rng.permutation(int(n)) for n in self.sizes]
        self.position = np.zeros(len(self.sizes), dtype=np.int64)  # next document in the order
        self.epoch = np.zeros(len(self.sizes), dtype=np.int64)  # completed epochs per source

    def _take(self, source: int, count: int) -> np.ndarray:
        """The next ``count`` documents of ``source``, reshuffling at each epoch boundary."""
        out = []
        while count > 0:
            order, pos = self.orders[source], int(self.position[source])
            step = min(count, len(order) - pos)
            out.append(order[pos:pos + step])
            self.position[source] += step
            count -= step
            if self.position[source] == len(order):
                self.orders[source] = self.rng.permutation(len(order))
                self.position[source] = 0
                self.epoch[source] += 1
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def draw(self, n: int) -> np.ndarray:
        """``n`` draws, ``(n, 2)``: the source of each (random, with the weights) and the
        document it gives (the next one in that source's shuffled order)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        sources = self.rng.choice(len(self.weights), size=n, p=self.weights)
        documents = np.empty(n, dtype=np.int64)
        for s in np.unique(sources):
            where = np.flatnonzero(sources == s)
            documents[where] = self._take(int(s), len(where))
        return np.stack([sources.astype(np.int64), documents], axis=1)

    def epochs_seen(self) -> np.ndarray:
        """Epochs read so far per source, fractional: ``(S,)``."""
        return self.epoch + self.position / self.sizes
