"""N-gram language models: counting, smoothing, perplexity and sampling.

An n-gram model predicts the next token from the previous ``n - 1`` tokens only::

    P(w_1 .. w_T) = prod_t P(w_t | w_{t-n+1} .. w_{t-1})

Every sequence is padded with ``n - 1`` begin symbols ``<s>`` on the left (so the first tokens
have a full context) and one end symbol ``</s>`` on the right (so the model learns where
sequences stop). Tokens can be anything hashable: characters, words or integer ids.

Estimators (``smoothing=``):

- ``"mle"``: maximum likelihood, ``c(ctx, w) / c(ctx)``. Unseen events get probability 0.
- ``"laplace"`` / ``"lidstone"``: add-k, ``(c(ctx, w) + k) / (c(ctx) + k |V|)``; Laplace is k = 1.
- ``"kneser_ney"``: interpolated Kneser-Ney (Kneser & Ney 1995; Chen & Goodman 1999) with an
  absolute discount ``D``: the highest order discounts raw counts, lower orders use
  *continuation* counts (in how many different contexts a word appears), and the recursion ends
  in the uniform distribution over the vocabulary, so every token, even an unknown one, gets
  some probability. ``uniform_floor=False`` ends the recursion at the continuation unigram
  instead, as Kneser & Ney's original paper and ``nltk.lm`` do.

The vocabulary ``V`` is every training token seen at least ``unk_cutoff`` times, plus ``</s>``
and ``<unk>``; rarer or unseen tokens are read as ``<unk>``. ``<s>`` is only ever context.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "SMOOTHINGS",
    "pad",
    "ngrams",
    "count_ngrams",
    "add_k_probability",
    "perplexity",
    "temper_probabilities",
    "unseen_ngram_rate",
    "NGramLM",
    "fill_blank",
]

Token = Hashable
Context = tuple[Token, ...]

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
SMOOTHINGS = ("mle", "laplace", "lidstone", "kneser_ney")


def pad(sequence: Sequence[Token], order: int) -> list[Token]:
    """Add ``order - 1`` begin symbols and one end symbol.

    >>> pad("ab", 3)
    ['<s>', '<s>', 'a', 'b', '</s>']
    """
    return [BOS] * (order - 1) + list(sequence) + [EOS]


def ngrams(sequence: Sequence[Token], n: int) -> list[tuple[Token, ...]]:
    """All windows of ``n`` consecutive tokens, in order.

    >>> ngrams("abcd", 2)
    [('a', 'b'), ('b', 'c'), ('c', 'd')]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]


def count_ngrams(
    sequences: Iterable[Sequence[Token]], order: int
) -> dict[int, dict[Context, Counter]]:
    """Count, for every order ``k = 1..order``, which token follows each ``(k-1)``-token context.

    Each sequence is padded with :func:`pad`; then for every position that the model predicts
    (each real token and the final ``</s>``) the k-gram ending there is counted for every k.
    Returns ``counts[k][context][token]``.

    >>> counts = count_ngrams(["ab", "a"], order=2)
    >>> dict(counts[2][("<s>",)])
    {'a': 2}
    >>> dict(counts[1][()])
    {'a': 2, 'b': 1, '</s>': 2}
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    grams: Counter = Counter()
    for sequence in sequences:
        grams.update(_padded_ngrams([sequence], order))
    # every lower-order k-gram at a predicted position is the suffix of that position's n-gram
    counts: dict[int, dict[Context, Counter]] = {k: {} for k in range(1, order + 1)}
    for gram, count in grams.items():
        for k in range(1, order + 1):
            counts[k].setdefault(gram[order - k : -1], Counter())[gram[-1]] += count
    return counts


def add_k_probability(count: int, context_count: int, vocab_size: int, k: float = 1.0) -> float:
    """Add-k (Lidstone) estimate ``(count + k) / (context_count + k * vocab_size)``.

    ``k = 1`` is Laplace smoothing; ``k -> 0`` approaches the maximum-likelihood estimate.

    Raises ``ValueError`` if ``k <= 0`` (that is not smoothing) or ``vocab_size < 1``.

    >>> add_k_probability(count=3, context_count=10, vocab_size=5, k=1.0)
    0.26666666666666666
    """
    if k <= 0:
        raise ValueError(f"k must be positive for add-k smoothing, got {k}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
    return (count + k) / (context_count + k * vocab_size)


def perplexity(logprobs: Sequence[float] | np.ndarray) -> float:
    """Perplexity ``exp(-mean(log p))`` of the natural-log probabilities of N predicted tokens.

    It is the size of a uniform choice that would be as surprising as the model is.

    Raises ``ValueError`` for an empty sequence: the perplexity of nothing is undefined.

    >>> round(perplexity([math.log(0.25)] * 4), 6)
    4.0
    """
    values = np.asarray(logprobs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("perplexity needs at least one log-probability")
    return float(np.exp(-values.mean()))


def temper_probabilities(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale a distribution: ``p_i^(1/T) / sum_j p_j^(1/T)``, shape ``(V,) -> (V,)``.

    ``T = 1`` leaves it unchanged, ``T < 1`` sharpens it, ``T > 1`` flattens it, and ``T = 0``
    puts all mass on the most likely token (greedy decoding; ties go to the first). Temperatures
    below ``1e-12`` are treated as 0, where ``p^(1/T)`` would overflow.

    Raises ``ValueError`` for a negative temperature.

    >>> temper_probabilities(np.array([0.5, 0.25, 0.25]), 0.5).round(4).tolist()
    [0.6667, 0.1667, 0.1667]
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    probs = np.asarray(probs, dtype=np.float64)
    if temperature < 1e-12:
        out = np.zeros_like(probs)
        out[np.argmax(probs)] = 1.0
        return out
    with np.errstate(divide="ignore"):
        logits = np.log(probs) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def unseen_ngram_rate(
    train: Iterable[Sequence[Token]], held_out: Iterable[Sequence[Token]], n: int
) -> float:
    """Share of the held-out n-grams (with padding) that never occur in the training sequences.

    It grows quickly with n: that sparsity is why a fixed-length context stops helping.
    """
    seen = set(_padded_ngrams(train, n))
    test = list(_padded_ngrams(held_out, n))
    if not test:
        raise ValueError("the held-out sequences contain no n-grams")
    return sum(g not in seen for g in test) / len(test)


def _padded_ngrams(sequences: Iterable[Sequence[Token]], n: int) -> Iterable[tuple[Token, ...]]:
    """Yield each predicted position's n-gram of the padded sequences (one order only)."""
    for sequence in sequences:
        padded = pad(sequence, n)
        yield from zip(*(padded[i:] for i in range(n)), strict=False)  # windows of length n


class NGramLM:
    """An n-gram language model of any order over any tokens.

    With the vocabulary {a, b, </s>, <unk>}, "a" is followed by "b" twice and by "</s>" once,
    so add-one smoothing gives P(b | a) = (2 + 1) / (3 + 4):

    >>> lm = NGramLM(order=2, smoothing="laplace").fit(["abab", "ba"])
    >>> round(lm.prob("b", context="a"), 4)
    0.4286
    >>> round(lm.perplexity(["ab"]), 3)
    2.904
    """

    def __init__(
        self,
        order: int,
        smoothing: str = "mle",
        k: float = 1.0,
        discount: float = 0.75,
        unk_cutoff: int = 1,
        uniform_floor: bool = True,
    ) -> None:
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
        if smoothing == "lidstone" and k <= 0:
            raise ValueError(f"lidstone smoothing needs k > 0, got {k}")
        if not 0 < discount < 1:
            raise ValueError(f"the Kneser-Ney discount must be in (0, 1), got {discount}")
        if unk_cutoff < 1:
            raise ValueError(f"unk_cutoff must be >= 1, got {unk_cutoff}")
        self.order = order
        self.smoothing = smoothing
        self.k = 1.0 if smoothing == "laplace" else k
        self.discount = discount
        self.unk_cutoff = unk_cutoff
        self.uniform_floor = uniform_floor
        self.vocab: list[Token] = []
        self.counts: dict[int, dict[Context, Counter]] = {}

    # ----- training -------------------------------------------------------------------------
    def fit(self, sequences: Iterable[Sequence[Token]]) -> NGramLM:
        """Count the n-grams of ``sequences`` (e.g. ``text.splitlines()`` or lists of words)."""
        if isinstance(sequences, str):
            raise TypeError("fit takes a list of sequences, e.g. text.splitlines(), not one str")
        sequences = [list(s) for s in sequences]
        if not any(sequences):
            raise ValueError("cannot fit an n-gram model on an empty corpus")
        frequency = Counter(t for s in sequences for t in s)
        kept = [t for t in frequency if frequency[t] >= self.unk_cutoff and t not in (EOS, UNK)]
        self.vocab = kept + [EOS, UNK]
        self._index = set(self.vocab)
        self.counts = count_ngrams(([self._lookup(t) for t in s] for s in sequences), self.order)
        self._totals = {
            k: {c: sum(n.values()) for c, n in level.items()} for k, level in self.counts.items()
        }
        if self.smoothing == "kneser_ney":
            self._fit_continuations()
        return self

    def _fit_continuations(self) -> None:
        """Continuation counts ``N1+(. ctx w)``: distinct tokens seen before ``ctx w``."""
        self._cont: dict[int, dict[Context, Counter]] = {}
        for k in range(1, self.order):
            level: dict[Context, Counter] = {}
            for context, following in self.counts[k + 1].items():
                for token in following:
                    level.setdefault(context[1:], Counter())[token] += 1
            self._cont[k] = level
        self._cont_totals = {
            k: {c: sum(n.values()) for c, n in level.items()} for k, level in self._cont.items()
        }

    # ----- scoring --------------------------------------------------------------------------
    def _lookup(self, token: Token) -> Token:
        """The token itself if it is in the vocabulary (or is ``<s>``), else ``<unk>``."""
        return token if token in self._index or token == BOS else UNK

    def _context(self, context: Sequence[Token]) -> Context:
        """The last ``order - 1`` tokens of ``context``, left-padded with ``<s>``, looked up."""
        self._check_fitted()
        need = self.order - 1
        tail = list(context)[-need:] if need else []
        return tuple([BOS] * (need - len(tail)) + [self._lookup(t) for t in tail])

    def prob(self, token: Token, context: Sequence[Token] = ()) -> float:
        """``P(token | context)``; only the last ``order - 1`` context tokens are used."""
        ctx = self._context(context)
        word = self._lookup(token)
        if word == UNK and not self._can_score_unknown():
            raise ValueError(
                f"token {token!r} never appeared in training, and a {self.smoothing!r} model "
                "gives it no probability; use smoothing='laplace', 'lidstone' or 'kneser_ney' "
                "(with uniform_floor=True), or unk_cutoff > 1 so that <unk> is trained"
            )
        if self.smoothing == "mle":
            return self._mle(word, ctx, context)
        if self.smoothing in ("laplace", "lidstone"):
            level = self.counts[len(ctx) + 1]
            count = level.get(ctx, Counter())[word]
            total = self._totals[len(ctx) + 1].get(ctx, 0)
            return add_k_probability(count, total, len(self.vocab), self.k)
        return self._kneser_ney(word, ctx)

    def logprob(self, token: Token, context: Sequence[Token] = ()) -> float:
        """Natural log of :meth:`prob` (``-inf`` for a zero probability)."""
        p = self.prob(token, context)
        return math.log(p) if p > 0 else -math.inf

    def _can_score_unknown(self) -> bool:
        """Whether ``<unk>`` can get probability: seen in training, or smoothing gives it mass."""
        if self.counts[1][()][UNK] > 0 or self.smoothing in ("laplace", "lidstone"):
            return True
        return self.smoothing == "kneser_ney" and self.uniform_floor

    def _mle(self, word: Token, ctx: Context, given: Sequence[Token] = ()) -> float:
        total = self._totals[len(ctx) + 1].get(ctx, 0)
        if total == 0:
            shown = tuple(list(given)[-len(ctx) :]) if given else ctx
            raise ValueError(
                f"context {shown!r} never appeared in training, so its maximum-likelihood "
                "distribution is undefined (0/0); use a smoothed model for unseen contexts"
            )
        return self.counts[len(ctx) + 1][ctx][word] / total

    def _kneser_ney(self, word: Token, ctx: Context) -> float:
        """Interpolated Kneser-Ney: ``alpha(w | ctx) + gamma(ctx) * P_KN(w | ctx[1:])``.

        At the highest order, alpha and gamma use raw counts; below it they use continuation
        counts. A context never seen at its level passes all its mass down (alpha 0, gamma 1).
        """
        top = len(ctx) == self.order - 1
        level, totals = (
            (self.counts[len(ctx) + 1], self._totals[len(ctx) + 1])
            if top
            else (self._cont[len(ctx) + 1], self._cont_totals[len(ctx) + 1])
        )
        total = totals.get(ctx, 0)
        if not ctx:
            return self._kn_unigram(word, level.get((), Counter()), total)
        lower = self._kneser_ney(word, ctx[1:])
        if total == 0:
            return lower
        following = level[ctx]
        alpha = max(following[word] - self.discount, 0.0) / total
        gamma = self.discount * len(following) / total
        return alpha + gamma * lower

    def _kn_unigram(self, word: Token, following: Counter, total: int) -> float:
        """End of the recursion: discounted unigram plus the uniform ``1/|V|``, or undiscounted."""
        if not self.uniform_floor:
            return following[word] / total
        alpha = max(following[word] - self.discount, 0.0) / total
        gamma = self.discount * len(following) / total
        return alpha + gamma / len(self.vocab)

    def distribution(self, context: Sequence[Token] = ()) -> dict[Token, float]:
        """``P(w | context)`` for every ``w`` in the vocabulary (sums to 1)."""
        ctx = self._context(context)
        if self.smoothing == "mle":
            return {w: self._mle(w, ctx) for w in self.vocab}
        scorable = self._can_score_unknown()
        return {w: (self.prob(w, ctx) if (w != UNK or scorable) else 0.0) for w in self.vocab}

    def sequence_logprob(self, sequence: Sequence[Token]) -> float:
        """Sum of ``log P`` over every token of the sequence and the final ``</s>``."""
        padded = pad([self._lookup(t) for t in sequence], self.order)
        n = self.order
        return sum(
            self.logprob(padded[i], padded[i - n + 1 : i]) for i in range(n - 1, len(padded))
        )

    def perplexity(self, sequences: Iterable[Sequence[Token]]) -> float:
        """Perplexity over all predicted tokens (``</s>`` included) of several sequences."""
        if isinstance(sequences, str):
            raise TypeError("perplexity takes a list of sequences, e.g. text.splitlines()")
        total, count = 0.0, 0
        for sequence in sequences:
            total += self.sequence_logprob(sequence)
            count += len(sequence) + 1
        if count == 0:
            raise ValueError("perplexity needs at least one sequence")
        return math.exp(-total / count)

    # ----- generation -----------------------------------------------------------------------
    def generate(
        self,
        max_tokens: int = 100,
        context: Sequence[Token] = (),
        temperature: float = 1.0,
        seed: int | np.random.Generator | None = 0,
    ) -> list[Token]:
        """Sample up to ``max_tokens`` tokens after ``context``, stopping early at ``</s>``.

        ``<unk>`` is never produced. Returns the new tokens only (without ``</s>``).
        """
        rng = np.random.default_rng(seed)
        history = list(context)
        out: list[Token] = []
        for _ in range(max_tokens):
            dist = self.distribution(history)
            dist.pop(UNK, None)
            tokens = list(dist)
            probs = np.fromiter(dist.values(), dtype=np.float64, count=len(tokens))
            if probs.sum() == 0:  # only <unk> ever followed this context (MLE, unk_cutoff > 1)
                break
            probs = temper_probabilities(probs / probs.sum(), temperature)
            token = tokens[rng.choice(len(tokens), p=probs)]
            if token == EOS:
                break
            out.append(token)
            history.append(token)
        return out

    def _check_fitted(self) -> None:
        if not self.counts:
            raise RuntimeError("the model has not been fitted yet: call fit(sequences) first")

    def __repr__(self) -> str:
        return (
            f"NGramLM(order={self.order}, smoothing={self.smoothing!r}, "
            f"vocab_size={len(self.vocab)})"
        )


def fill_blank(
    model: NGramLM, left: Sequence[Token], right: Sequence[Token] = (), use_right: bool = True
) -> Token:
    """The most likely token for a blank between ``left`` and ``right``.

    Left-only scoring (``use_right=False``) is what an autoregressive model such as GPT can do
    when it reaches the blank: ``argmax_w P(w | left)``. With ``use_right=True`` the score also
    includes how well each candidate explains the next ``order - 1`` tokens,
    ``log P(w | left) + sum_j log P(right_j | ..., w, right_<j)``: context from both sides, the
    task a masked language model such as BERT is trained on.
    """
    candidates = [t for t in model.vocab if t not in (UNK, EOS)]
    follow = list(right)[: model.order - 1] if use_right else []

    def score(w: Token) -> float:
        history = [*left, w]
        total = model.logprob(w, left)
        for token in follow:
            total += model.logprob(token, history)
            history.append(token)
        return total

    return max(candidates, key=score)
