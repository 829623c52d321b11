"""Tests for minigpt.ngram (n-gram language models) and minigpt.data (the text corpora).

The smoothed models are checked against ``nltk.lm`` score for score. To make the comparison
exact, nltk is fed exactly the n-grams that minigpt counts: every sequence is padded with
``order - 1`` ``<s>`` and one ``</s>``, and for every predicted position its k-gram suffixes,
k = 1..order, are counted. nltk's vocabulary is built from the training tokens plus ``</s>``;
nltk adds its own ``<UNK>`` label, so both vocabularies have the same size.

Note that ``nltk``'s ``fit`` looks every token of every n-gram up in the vocabulary, so the
``<s>`` of the padding (which is not in the vocabulary) is stored as ``<UNK>``. The mapping is
one-to-one on the training data (no training token is unknown), so we query nltk with
``unmasked_score`` and contexts in which ``<s>`` is written as ``<UNK>``; the tests assert that
the counts then match minigpt's exactly.

Where nltk's Kneser-Ney breaks, minigpt follows the textbook interpolated Kneser-Ney (Chen &
Goodman 1999; Jurafsky & Martin, 3rd ed., eq. 3.35); the ``test_nltk_kn_*`` tests document each
difference.
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from conftest import needs_nltk
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt import data
from minigpt.ngram import (
    BOS,
    EOS,
    UNK,
    NGramLM,
    add_k_probability,
    count_ngrams,
    ngrams,
    pad,
    perplexity,
    temper_probabilities,
    unseen_ngram_rate,
)


def nltk_lm():
    """``nltk.lm``, the reference; imported only by the tests marked ``needs_nltk``."""
    import nltk.lm

    return nltk.lm


EXACT = 1e-9
DISCOUNTS = (0.1, 0.75)
GAMMAS = (0.01, 0.5, 2.0)


# --------------------------------------------------------------------------- helpers


def predicted_ngrams(sequence, order: int) -> list[tuple]:
    """The n-grams minigpt counts for one sequence: each predicted position's k-gram suffixes."""
    padded = pad(list(sequence), order)
    return [
        tuple(padded[i - k + 1 : i + 1])
        for i in range(order - 1, len(padded))
        for k in range(1, order + 1)
    ]


def fit_nltk(model_cls, sequences, order: int, **kwargs):
    """An ``nltk.lm`` model trained on exactly the n-grams (and vocabulary) minigpt uses."""
    model = model_cls(order=order, **kwargs)
    vocabulary_text = [t for s in sequences for t in s] + [EOS]
    model.fit([predicted_ngrams(s, order) for s in sequences], vocabulary_text=vocabulary_text)
    return model


def to_nltk(tokens, model) -> tuple:
    """minigpt's ``<s>`` and ``<unk>`` as nltk stores them: its unknown label."""
    unk = model.vocab.unk_label
    return tuple(unk if t in (BOS, UNK) else t for t in tokens)


def nltk_score(model, word, context: tuple) -> float:
    """nltk's ``P(word | context)`` for a minigpt word and (looked-up, full-length) context."""
    (word,) = to_nltk([word], model)
    return model.unmasked_score(word, to_nltk(context, model) or None)


def assert_same_counts(lm: NGramLM, model) -> None:
    """Vocabulary size and every n-gram count agree (call before scoring: nltk's counters are
    defaultdicts, so a lookup of an unseen context adds an empty entry)."""
    renamed = lambda counter: dict(zip(to_nltk(counter, model), counter.values(), strict=True))
    assert len(model.vocab) == len(lm.vocab)
    assert dict(model.counts.unigrams) == renamed(lm.counts[1][()])
    for k in range(2, lm.order + 1):
        theirs = model.counts[k]
        assert len(theirs.conditions()) == len(lm.counts[k])
        for context, following in lm.counts[k].items():
            assert dict(theirs[to_nltk(context, model)]) == renamed(following)


def minigpt_score(lm: NGramLM, word, context: tuple) -> float:
    """``lm.prob``, or 0 for ``<unk>`` where the model gives it no probability (prob raises)."""
    try:
        return lm.prob(word, context)
    except ValueError:
        if word == UNK:
            return 0.0
        raise


def assert_same_scores(lm: NGramLM, model, contexts, n_words: int | None = None) -> None:
    """minigpt's and nltk's probabilities agree to 1e-9 after every context, for every word
    of the vocabulary, or for ``n_words`` sampled words plus those seen after the context."""
    for i, context in enumerate(contexts):
        words = lm.vocab
        if n_words is not None:
            seen = lm.counts[len(context) + 1].get(context, {})
            words = set(sample(lm.vocab, n_words, seed=i)) | set(seen)
        for word in words:
            ours, theirs = minigpt_score(lm, word, context), nltk_score(model, word, context)
            assert ours == pytest.approx(theirs, abs=EXACT), (lm, context, word)


def model_pairs(sequences, order: int):
    """``(minigpt model, nltk model)`` pairs that must give identical scores."""
    yield NGramLM(order, "mle").fit(sequences), fit_nltk(nltk_lm().MLE, sequences, order)
    yield NGramLM(order, "laplace").fit(sequences), fit_nltk(nltk_lm().Laplace, sequences, order)
    for gamma in GAMMAS:
        yield (
            NGramLM(order, "lidstone", k=gamma).fit(sequences),
            fit_nltk(nltk_lm().Lidstone, sequences, order, gamma=gamma),
        )
    if order > 1:  # nltk's order-1 Kneser-Ney divides by zero, see test_nltk_kn_order_1_...
        for d in DISCOUNTS:
            yield (
                NGramLM(order, "kneser_ney", discount=d, uniform_floor=False).fit(sequences),
                fit_nltk(nltk_lm().KneserNeyInterpolated, sequences, order, discount=d),
            )


def sample(items, n: int, seed: int = 0) -> list:
    items = sorted(items, key=repr)
    return random.Random(seed).sample(items, min(n, len(items)))


def hamlet_lines(chars: int) -> list[str]:
    return data.load_play("hamlet")[:chars].splitlines()


def is_distribution(dist: dict) -> bool:
    values = list(dist.values())
    return all(0.0 <= v <= 1.0 for v in values) and math.isclose(sum(values), 1.0, abs_tol=EXACT)


# Small random corpora: a few short sequences over a tiny alphabet, at least one non-empty.
char_corpora = st.builds(
    lambda first, rest: [first, *rest],
    st.text("abc", min_size=1, max_size=6),
    st.lists(st.text("abc", max_size=6), max_size=3),
)
word_corpora = st.builds(
    lambda first, rest: [first, *rest],
    st.lists(st.sampled_from(["to", "be", "or", "not"]), min_size=1, max_size=6),
    st.lists(st.lists(st.sampled_from(["to", "be", "or", "not"]), max_size=6), max_size=3),
)
orders = st.integers(1, 4)
# contexts may hold unseen tokens ("z"), padding, the end symbol and <unk> anywhere
contexts = st.lists(st.sampled_from(["a", "b", "c", "z", BOS, EOS, UNK]), max_size=5)


# --------------------------------------------------------------------------- nltk agreement


@needs_nltk
@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_scores_match_nltk_on_hamlet(level, order) -> None:
    """MLE, Laplace, Lidstone and Kneser-Ney (``uniform_floor=False``) give nltk's scores on
    the opening of Hamlet, character- and word-level, on contexts seen in training."""
    lines = hamlet_lines(3000 if level == "char" else 6000)
    sequences = lines if level == "char" else [line.split() for line in lines]
    for lm, model in model_pairs(sequences, order):
        assert_same_counts(lm, model)
        # sampled: nltk's Kneser-Ney recounts continuations on every call
        seen = list(lm.counts[order])
        if lm.smoothing == "kneser_ney":
            assert_same_scores(lm, model, sample(seen, 20), n_words=15)
        else:
            assert_same_scores(lm, model, sample(seen, 60), n_words=40)


@needs_nltk
@settings(max_examples=40, deadline=None)
@given(corpus=st.one_of(char_corpora, word_corpora), order=orders)
def test_scores_match_nltk_on_random_corpora(corpus, order) -> None:
    """Same agreement on every seen context and every vocabulary word of random corpora."""
    for lm, model in model_pairs(corpus, order):
        assert_same_counts(lm, model)
        assert_same_scores(lm, model, list(lm.counts[order]))


@needs_nltk
@pytest.mark.parametrize("order", [2, 3])
def test_add_k_and_kn_match_nltk_on_unseen_contexts(order) -> None:
    """Unseen contexts (with unknown tokens too) also agree for add-k and, for in-vocabulary
    words, for Kneser-Ney without the uniform floor: both back off with alpha 0, gamma 1."""
    corpus = ["abab", "ba", "abba", "c"]
    seen = NGramLM(order).fit(corpus).counts[order]
    candidates = itertools.product(["a", "b", "c", EOS], repeat=order - 1)
    unseen = [c for c in candidates if c not in seen]
    assert unseen
    in_vocab = ["a", "b", "c", EOS]
    for lm, model in model_pairs(corpus, order):
        if lm.smoothing != "mle":
            for context, word in itertools.product(unseen, in_vocab):
                ours, theirs = lm.prob(word, context), nltk_score(model, word, context)
                assert ours == pytest.approx(theirs, abs=EXACT)
            # an unknown context token: unseen for both (nltk left unmasked, minigpt's <unk>)
            for word in in_vocab:
                theirs = model.unmasked_score(word, ("z",) * (order - 1))
                assert lm.prob(word, ["z"] * (order - 1)) == pytest.approx(theirs, abs=EXACT)


# --------------------------------------------------------------------------- textbook KN


def test_kneser_ney_matches_textbook_formula_by_hand() -> None:
    """Bigram interpolated KN on ["ab", "b"], D = 3/4, computed by hand with J&M eq. 3.35.

    Bigrams: (<s> a) (a b) (b </s>) (<s> b) (b </s>); V = {a, b, </s>, <unk>}. Continuation
    counts: a 1 (after <s>), b 2 (after a, <s>), </s> 1 (after b); 4 bigram types.
    """
    d = Fraction(3, 4)
    cont, types, vocab = {"a": 1, "b": 2, EOS: 1, UNK: 0}, 4, 4
    lam = d * 3 / types  # three words have a continuation count
    floor = {w: max(c - d, 0) / types + lam / vocab for w, c in cont.items()}
    assert floor == {
        "a": Fraction(13, 64),
        "b": Fraction(29, 64),
        EOS: Fraction(13, 64),
        UNK: Fraction(9, 64),
    }
    # after "b": </s> twice; alpha = (2 - D) / 2, gamma = D * 1 / 2
    after_b = {w: max((2 if w == EOS else 0) - d, 0) / 2 + d / 2 * p for w, p in floor.items()}
    no_floor = {w: Fraction(c, types) for w, c in cont.items()}
    after_b_no_floor = {
        w: max((2 if w == EOS else 0) - d, 0) / 2 + d / 2 * p for w, p in no_floor.items()
    }

    lm = NGramLM(2, "kneser_ney", discount=0.75).fit(["ab", "b"])
    plain = NGramLM(2, "kneser_ney", discount=0.75, uniform_floor=False).fit(["ab", "b"])
    for w in lm.vocab:
        assert lm.prob(w, ["b"]) == pytest.approx(float(after_b[w]), abs=1e-15)
        assert lm.prob(w, ["unseen"]) == pytest.approx(float(floor[w]), abs=1e-15)
        assert plain.distribution(["b"])[w] == pytest.approx(float(after_b_no_floor[w]), abs=1e-15)
    assert lm.prob("never seen", ["b"]) == pytest.approx(float(after_b[UNK]), abs=1e-15)


# --------------------------------------------------------------------------- nltk's KN failures


@needs_nltk
def test_nltk_kn_order_1_raises_zero_division() -> None:
    """nltk: an order-1 Kneser-Ney model raises ZeroDivisionError on *every* query.

    Its unigram is the continuation count ``N1+(. w) / N1+(. .)`` over bigram types, and an
    order-1 model stores no bigrams, so the denominator is 0 (also for seen words and empty
    context). minigpt ends the recursion with the raw unigram at the top order: with
    ``uniform_floor=False`` that is the MLE unigram (== nltk's order-1 MLE), with the floor it
    is the discounted unigram interpolated with the uniform distribution.
    """
    corpus = hamlet_lines(2000)
    model = fit_nltk(nltk_lm().KneserNeyInterpolated, corpus, 1, discount=0.75)
    for word, context in [("e", None), ("e", ("a",)), (EOS, None), ("<UNK>", None)]:
        with pytest.raises(ZeroDivisionError):
            model.unmasked_score(word, context)
    with pytest.raises(ZeroDivisionError):
        model.score("e")

    mle = fit_nltk(nltk_lm().MLE, corpus, 1)
    plain = NGramLM(1, "kneser_ney", uniform_floor=False).fit(corpus)
    assert_same_scores(plain, mle, [()])
    floored = NGramLM(1, "kneser_ney").fit(corpus)
    for lm in (plain, floored):
        assert is_distribution(lm.distribution())
    assert all(p > 0 for p in floored.distribution().values())
    assert floored.prob("never seen") == floored.prob(UNK) > 0


@needs_nltk
def test_nltk_kn_gives_unknown_words_zero_probability() -> None:
    """nltk: an out-of-vocabulary word gets probability 0 after every context (its
    continuation count is 0 at every level), so one unknown word makes the perplexity
    infinite. minigpt's textbook unigram mixes in the uniform 1/|V|, so ``<unk>`` gets a
    positive share, every distribution (``<unk>`` included) sums to 1 and the perplexity is
    finite. Without the floor minigpt refuses loudly instead of returning 0.
    """
    train, held_out = data.train_val_split(data.load_play("hamlet")[:8000], 0.2)
    train_words = [line.split() for line in train.splitlines()]
    text = "the ghost of elsinore".split()
    assert "elsinore" not in {w for s in train_words for w in s}
    for order in (2, 3):
        model = fit_nltk(nltk_lm().KneserNeyInterpolated, train_words, order, discount=0.75)
        lm = NGramLM(order, "kneser_ney", discount=0.75).fit(train_words)
        context = ("of",) if order == 2 else ("ghost", "of")
        assert model.score("elsinore", context) == 0.0
        assert model.unmasked_score("<UNK>", to_nltk(context, model)) == 0.0
        test_ngrams = [tuple(g) for g in ngrams(pad(text, order), order)]
        assert model.perplexity(test_ngrams) == math.inf

        assert 0 < lm.prob("elsinore", context) == lm.prob(UNK, context) < 1
        assert is_distribution(lm.distribution(context))
        assert math.isfinite(lm.perplexity([text]))
        assert math.isfinite(lm.perplexity([line.split() for line in held_out.splitlines()]))

        plain = NGramLM(order, "kneser_ney", uniform_floor=False).fit(train_words)
        with pytest.raises(ValueError, match="uniform_floor=True"):
            plain.prob("elsinore", context)


@needs_nltk
def test_nltk_kn_backs_off_on_unseen_padded_contexts() -> None:
    """What nltk does on unseen contexts when the n-grams are padded as minigpt pads them:
    it does NOT fail. Every context of every length 0..order-1 (orders 2..4) over the
    vocabulary, ``<s>`` and an unknown token (seen, unseen, ending in ``</s>``, or shorter
    than the model's context, which nltk scores as a lower order) is scored without error,
    and the full-length ones equal minigpt's ``uniform_floor=False`` score. Padding gives
    every lower-order context a left neighbour (``<s>``), so nltk's continuation totals are
    never 0 (see the unpadded test below for when they are).
    """
    corpus = ["abab", "ba", "abba", "c"]
    tokens = ["a", "b", "c", EOS, BOS, "z"]
    for order in (2, 3, 4):
        lm = NGramLM(order, "kneser_ney", uniform_floor=False).fit(corpus)
        model = fit_nltk(nltk_lm().KneserNeyInterpolated, corpus, order, discount=0.75)
        unk = model.vocab.unk_label
        for length in range(order):
            for context in itertools.product(tokens, repeat=length):
                nltk_context = tuple(unk if t == BOS else t for t in context)
                for word in ["a", "b", "c", EOS]:
                    theirs = model.unmasked_score(word, nltk_context or None)
                    if length == order - 1:
                        assert theirs == pytest.approx(lm.prob(word, context), abs=EXACT)
                    assert 0 < theirs < 1


@needs_nltk
def test_nltk_kn_zero_division_on_context_that_only_starts_a_sentence_when_unpadded() -> None:
    """nltk: ZeroDivisionError for an unseen context whose lower-order suffix was seen only at
    the start of a sentence, as happens when the n-grams are not left-padded.

    Trained on the unpadded everygrams of "xyz" (order 3), the context ("q", "x") is unseen, so
    nltk backs off to ("x",); "x" was followed by "y" but never preceded by anything, so its
    continuation total ``N1+(. x .)`` is 0. The same happens for the context ("x",). minigpt
    always pads with ``<s>``, so every lower-order context has continuation counts, and the
    distribution after ("q", "x") is proper.
    """
    from nltk.util import everygrams

    model = nltk_lm().KneserNeyInterpolated(3, discount=0.75)
    model.fit([list(everygrams(list("xyz"), max_len=3))], vocabulary_text=list("xyz"))
    for context in [("q", "x"), ("x",)]:
        with pytest.raises(ZeroDivisionError):
            model.unmasked_score("y", context)
    assert model.unmasked_score("z", ("x", "y")) > 0  # the seen full context is fine

    for floor in (True, False):
        lm = NGramLM(3, "kneser_ney", uniform_floor=floor).fit(["xyz"])
        for k in range(1, lm.order):  # every lower-order context has a left neighbour
            longer = {context[1:] for context in lm.counts[k + 1]}
            assert set(lm.counts[k]) <= longer
        dist = lm.distribution(["q", "x"])
        assert is_distribution(dist)
        assert dist["y"] > 0


@needs_nltk
def test_nltk_mle_returns_zeros_for_unseen_context() -> None:
    """nltk's MLE scores every word 0 after an unseen context (0/0 read as 0: a
    "distribution" summing to 0); minigpt raises a ValueError that says so."""
    model = fit_nltk(nltk_lm().MLE, ["abab"], 2)
    assert model.unmasked_score("a", ("<UNK>",)) == 1.0  # the <s> context is seen
    assert all(model.unmasked_score(w, (EOS,)) == 0 for w in ["a", "b", EOS])
    with pytest.raises(ValueError, match="never appeared in training"):
        NGramLM(2).fit(["abab"]).distribution([EOS])


# --------------------------------------------------------------------------- normalization


@settings(max_examples=60, deadline=None)
@given(
    corpus=char_corpora,
    order=orders,
    context=contexts,
    model=st.one_of(
        st.just({"smoothing": "laplace"}),
        st.builds(lambda k: {"smoothing": "lidstone", "k": k}, st.floats(0.001, 5.0)),
        st.builds(
            lambda d, floor: {"smoothing": "kneser_ney", "discount": d, "uniform_floor": floor},
            st.floats(0.01, 0.99),
            st.booleans(),
        ),
    ),
    unk_cutoff=st.integers(1, 2),
)
def test_smoothed_distributions_sum_to_one(corpus, order, context, model, unk_cutoff) -> None:
    """Every context's distribution (seen or not, with unknown tokens) sums to 1."""
    lm = NGramLM(order, unk_cutoff=unk_cutoff, **model).fit(corpus)
    dist = lm.distribution(context)
    assert list(dist) == lm.vocab
    assert is_distribution(dist)
    try:
        unknown = lm.prob("z", context)
    except ValueError:  # Kneser-Ney without the floor, and no <unk> in training
        assert model.get("uniform_floor") is False and dist[UNK] == 0.0
    else:
        assert unknown == dist[UNK] > 0
    word = lm.vocab[0]  # a training token, or </s>
    assert lm.logprob(word, context) == pytest.approx(math.log(lm.prob(word, context)))


@settings(max_examples=40, deadline=None)
@given(corpus=char_corpora, order=orders, unk_cutoff=st.integers(1, 2))
def test_mle_distributions_sum_to_one_on_seen_contexts(corpus, order, unk_cutoff) -> None:
    """MLE is a distribution after every seen context; an unseen one is an error."""
    lm = NGramLM(order, "mle", unk_cutoff=unk_cutoff).fit(corpus)
    for context in lm.counts[order]:
        assert is_distribution(lm.distribution(context))
    if order > 1:
        with pytest.raises(ValueError, match="never appeared"):
            lm.distribution([EOS] * (order - 1))


# --------------------------------------------------------------------------- counting


def test_padding_and_counting() -> None:
    assert pad("ab", 3) == [BOS, BOS, "a", "b", EOS]
    assert pad([], 1) == [EOS]
    assert ngrams("abcd", 2) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert ngrams("ab", 3) == []
    counts = count_ngrams(["ab", "a"], order=3)
    assert counts[3][(BOS, BOS)] == {"a": 2}
    assert counts[3][("a", "b")] == {EOS: 1}
    assert counts[2][("a",)] == {"b": 1, EOS: 1}
    assert counts[1][()] == {"a": 2, "b": 1, EOS: 2}
    # every order counts the same number of predicted positions
    assert {sum(sum(c.values()) for c in counts[k].values()) for k in (1, 2, 3)} == {5}


def test_vocabulary_and_unk_cutoff() -> None:
    lm = NGramLM(2, "laplace", unk_cutoff=2).fit(["aab", "ac"])
    assert lm.vocab == ["a", EOS, UNK]
    assert lm.counts[2][("a",)] == {"a": 1, UNK: 2}
    assert lm.counts[2][(UNK,)] == {EOS: 2}
    assert lm.prob("b", ["a"]) == lm.prob("c", ["a"]) == lm.prob(UNK, ["a"])
    assert repr(lm) == "NGramLM(order=2, smoothing='laplace', vocab_size=3)"
    assert add_k_probability(3, 10, 5, k=1.0) == pytest.approx(4 / 15)


# --------------------------------------------------------------------------- errors


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        NGramLM(0)
    with pytest.raises(ValueError, match="order must be at least 1"):
        count_ngrams(["ab"], 0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        ngrams("ab", 0)
    with pytest.raises(ValueError, match="unknown smoothing 'witten_bell'"):
        NGramLM(2, smoothing="witten_bell")
    with pytest.raises(ValueError, match="lidstone smoothing needs k > 0"):
        NGramLM(2, smoothing="lidstone", k=0)
    with pytest.raises(ValueError, match="discount must be in"):
        NGramLM(2, smoothing="kneser_ney", discount=1.0)
    with pytest.raises(ValueError, match="unk_cutoff"):
        NGramLM(2, unk_cutoff=0)
    with pytest.raises(ValueError, match="k must be positive"):
        add_k_probability(1, 2, 3, k=0)
    for empty in ([], [""], ["", []]):
        with pytest.raises(ValueError, match="empty corpus"):
            NGramLM(2).fit(empty)
    with pytest.raises(TypeError, match="not one str"):
        NGramLM(2).fit("to be or not to be")
    with pytest.raises(RuntimeError, match="not been fitted"):
        NGramLM(2).prob("a", ["b"])
    with pytest.raises(RuntimeError, match="not been fitted"):
        NGramLM(1, "laplace").distribution()


def test_mle_errors_on_unseen_token_and_context() -> None:
    lm = NGramLM(2, "mle").fit(["abab"])
    with pytest.raises(ValueError, match="smoothing='laplace'"):
        lm.prob("z", ["a"])
    with pytest.raises(ValueError, match="never appeared in training"):
        lm.prob("a", [EOS])
    with pytest.raises(ValueError, match="smoothing"):
        lm.perplexity(["abz"])
    assert lm.prob("b", ["a"]) == 1.0


def test_perplexity_and_temperature_errors() -> None:
    lm = NGramLM(2, "laplace").fit(["abab"])
    with pytest.raises(TypeError, match="list of sequences"):
        lm.perplexity("abab")
    with pytest.raises(ValueError, match="at least one sequence"):
        lm.perplexity([])
    with pytest.raises(ValueError, match="at least one log-probability"):
        perplexity([])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        temper_probabilities(np.array([0.5, 0.5]), -0.1)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        lm.generate(5, temperature=-1.0)


# --------------------------------------------------------------------------- perplexity


@pytest.mark.parametrize("smoothing", ["laplace", "kneser_ney"])
@pytest.mark.parametrize("order", [1, 3])
def test_perplexity_is_exp_of_mean_negative_logprob(smoothing, order) -> None:
    """Perplexity = exp(-mean log P) over every token and each final </s>, by hand."""
    train, held_out = data.train_val_split(data.load_play("hamlet")[:20000], 0.1)
    lm = NGramLM(order, smoothing).fit(train.splitlines())
    lines = held_out.splitlines()
    logs = []
    for line in lines:
        padded = [BOS] * (order - 1) + list(line) + [EOS]
        for i in range(order - 1, len(padded)):
            logs.append(math.log(lm.prob(padded[i], padded[i - order + 1 : i])))
    assert len(logs) == sum(len(line) + 1 for line in lines)
    expected = math.exp(-sum(logs) / len(logs))
    assert lm.perplexity(lines) == pytest.approx(expected, rel=1e-12)
    assert perplexity(logs) == pytest.approx(expected, rel=1e-12)
    assert 1 < expected < len(lm.vocab)


def test_perplexity_of_known_cases() -> None:
    assert perplexity([math.log(0.25)] * 4) == pytest.approx(4.0)
    assert perplexity([0.0, -math.inf]) == math.inf
    # a bigram model that has memorized "ab": every prediction has probability 1
    assert NGramLM(2).fit(["ab"]).perplexity(["ab"]) == 1.0


# --------------------------------------------------------------------------- temperature

probability_vectors = (
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8)
    .filter(lambda w: sum(w) > 1e-6)
    .map(lambda w: np.array(w) / sum(w))
)


@settings(max_examples=100, deadline=None)
@given(probs=probability_vectors, temperature=st.floats(0.05, 20.0))
def test_apply_temperature_properties(probs, temperature) -> None:
    """T = 1 is the identity, T = 0 a one-hot argmax (first of ties); any T keeps a
    distribution, keeps zeros at zero and preserves the order of the probabilities."""
    np.testing.assert_allclose(temper_probabilities(probs, 1.0), probs, rtol=1e-12, atol=1e-15)
    greedy = temper_probabilities(probs, 0.0)
    assert greedy.sum() == 1.0 and greedy[np.argmax(probs)] == 1.0

    out = temper_probabilities(probs, temperature)
    assert out.shape == probs.shape
    assert out.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(out[probs == 0] == 0)
    for i, j in itertools.permutations(range(len(probs)), 2):
        if probs[i] > probs[j]:
            assert out[i] >= out[j]
        elif probs[i] == probs[j]:
            assert out[i] == out[j]


def test_apply_temperature_sharpens_and_flattens() -> None:
    probs = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(temper_probabilities(probs, 0.5), [4 / 6, 1 / 6, 1 / 6])
    flat = temper_probabilities(probs, 1e6)
    np.testing.assert_allclose(flat, [1 / 3] * 3, atol=1e-6)
    assert temper_probabilities(np.array([0.2, 0.4, 0.4]), 0).tolist() == [0.0, 1.0, 0.0]


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("smoothing", ["laplace", "kneser_ney"])
def test_generate_is_deterministic_and_never_emits_unk(smoothing) -> None:
    """A fixed seed gives the same text; <unk> (which has mass here) and </s> never appear."""
    words = [line.split() for line in data.load_play("hamlet")[:20000].splitlines()]
    lm = NGramLM(2, smoothing, unk_cutoff=2).fit(words)
    assert lm.distribution(["the"])[UNK] > 0.05
    for temperature in (0.5, 1.0, 3.0):
        runs = [lm.generate(60, temperature=temperature, seed=s) for s in (7, 7, 8)]
        assert runs[0] == runs[1]
        for out in runs:
            assert len(out) <= 60
            assert UNK not in out and EOS not in out
            assert set(out) <= set(lm.vocab)
    greedy = lm.generate(20, context=["the"], temperature=0, seed=1)
    assert greedy == lm.generate(20, context=["the"], temperature=0, seed=2)


def test_generate_stops_at_end_symbol() -> None:
    lm = NGramLM(3, "mle").fit(["abc"])
    assert lm.generate(100) == ["a", "b", "c"]
    assert lm.generate(2) == ["a", "b"]
    assert "".join(NGramLM(2).fit(["ab"]).generate(5, context="a")) == "b"


def test_generate_mle_with_unk_cutoff_context_followed_only_by_unk() -> None:
    """BUG: with ``unk_cutoff > 1``, an MLE context followed only by rare words puts all its
    mass on ``<unk>``; ``generate`` drops ``<unk>``, renormalizes 0 / 0 and numpy fails with
    "Probabilities contain NaN". It happens on real text (word-level Hamlet, bigrams, some
    seeds). Expected: generation ends there (as at ``</s>``) instead of crashing."""
    lm = NGramLM(2, "mle", unk_cutoff=2).fit(["ab", "ac", "dd", "dd"])
    assert lm.distribution(["a"])[UNK] == 1.0
    out = lm.generate(5, context=["a"])
    assert UNK not in out


# --------------------------------------------------------------------------- unseen n-grams


def test_unseen_ngram_rate_on_constructed_case() -> None:
    train, held_out = ["abc"], ["abd"]
    # held-out unigrams a b d </s>: only d is new; bigrams (<s> a)(a b)(b d)(d </s>): 2 new
    assert unseen_ngram_rate(train, held_out, 1) == 0.25
    assert unseen_ngram_rate(train, held_out, 2) == 0.5
    assert unseen_ngram_rate(train, held_out, 3) == 0.5  # (<s> <s> a) and (<s> a b) are seen
    assert unseen_ngram_rate(train, train, 4) == 0.0
    with pytest.raises(ValueError, match="no n-grams"):
        unseen_ngram_rate(train, [], 2)


def test_unseen_ngram_rate_grows_with_n() -> None:
    train, held_out = data.train_val_split(data.load_play("hamlet")[:30000], 0.2)
    rates = [unseen_ngram_rate(train.splitlines(), held_out.splitlines(), n) for n in range(1, 6)]
    assert rates == sorted(rates)
    assert rates[0] < 0.01 and rates[-1] > 0.3  # characters: 5-grams are already sparse


# --------------------------------------------------------------------------- minigpt.data


def test_markdown_to_text_on_a_small_play() -> None:
    markdown = (
        "# The Tragedy of Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n"
        "_Enter BERNARDO and FRANCISCO_  \n\n"
        "**BERNARDO**  \nWho's there?\n\n\n\n"
        "**FRANCISCO**  \nNay, answer me: stand, and unfold yourself.  \n"
        "Long live the king\\!  \n\n"
        "_Exit_ \\[Aside] *softly*\n\n\n"
    )
    assert data.markdown_to_text(markdown) == (
        "The Tragedy of Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\n"
        "Enter BERNARDO and FRANCISCO\n\n"
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me: stand, and unfold yourself.\nLong live the king!\n\n"
        "Exit [Aside] softly\n"
    )


def test_load_shakespeare_is_plain_text(tmp_path, monkeypatch) -> None:
    """A fresh build (in an empty cache) has no Markdown left and is over 4 MB; the second
    load reads the cached file and gives the same text."""
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    data.load_shakespeare.cache_clear()
    try:
        text = data.load_shakespeare()
        assert list(tmp_path.glob("shakespeare-*.txt"))
        data.load_shakespeare.cache_clear()
        assert data.load_shakespeare() == text
    finally:
        data.load_shakespeare.cache_clear()
    assert len(text.encode("utf-8")) > 4_000_000
    for markup in ("**", "_", "#", "\\"):
        assert markup not in text, markup
    assert "\n\n\n" not in text
    assert "BERNARDO:\nWho's there?\n" in text
    assert data.load_play("hamlet") in text
    assert "tragedies/hamlet" in data.play_names()
    with pytest.raises(ValueError, match="unknown play"):
        data.load_play("cardenio")


def test_train_val_split_does_not_cut_a_line() -> None:
    text = data.load_play("hamlet")
    for fraction in (0.01, 0.1, 0.5, 0.9):
        train, val = data.train_val_split(text, fraction)
        assert train + val == text
        assert train.endswith("\n") and val
        assert len(val) == pytest.approx(fraction * len(text), abs=200)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            data.train_val_split(text, bad)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(st.text("ab ", max_size=10), min_size=2, max_size=8),
    fraction=st.floats(0.01, 0.99),
)
def test_train_val_split_keeps_lines_whole(lines, fraction) -> None:
    text = "\n".join(lines) + "\n"
    train, val = data.train_val_split(text, fraction)
    assert train + val == text
    assert train.endswith("\n")


def test_train_val_split_without_final_newline_cuts_the_last_line() -> None:
    """BUG: when the text does not end with a newline and the cut falls in the last line,
    there is no line break after it and the line is split ("bbbbbbbb" | "bb")."""
    train, val = data.train_val_split("aaaa\nbbbbbbbbbb", 0.1)
    assert (train, val) == ("aaaa\n", "bbbbbbbbbb")


def test_train_val_split_never_returns_an_empty_held_out_part() -> None:
    """BUG: when the cut falls in the last line, moving it to the next line break moves it to
    the end of the text, and the held-out part is empty (its perplexity is undefined)."""
    train, val = data.train_val_split("aaaa\nbbbbbbbbbb\n", 0.1)
    assert (train, val) == ("aaaa\n", "bbbbbbbbbb\n")


def test_load_text_errors(tmp_path) -> None:
    good = tmp_path / "corpus.txt"
    good.write_text("To be, or not to be\n", encoding="utf-8")
    assert data.load_text(good) == "To be, or not to be\n"
    assert data.load_text(str(good)) == "To be, or not to be\n"
    with pytest.raises(FileNotFoundError, match="no text file"):
        data.load_text(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="no text file"):
        data.load_text(tmp_path)
    for name, content in (("empty.txt", ""), ("blank.txt", " \n\n\t")):
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match="is empty"):
            data.load_text(tmp_path / name)
