"""Decoding: greedy, sampling (temperature, top-k, top-p) and beam search, through the KV cache.

A language model gives, for a prefix, a distribution over the next token. *Decoding* turns that
into text, one token at a time:

* **greedy** (:func:`greedy`) takes the most likely token;
* **sampling** (:func:`sample`) draws from the distribution, reshaped first by a temperature
  (:func:`apply_temperature`) and cut down to the ``k`` most likely tokens
  (:func:`top_k_filter`) or to the smallest set holding probability ``p``
  (:func:`top_p_filter`, "nucleus" sampling, Holtzman et al. 2020);
* **beam search** (:func:`beam_search`) keeps the ``num_beams`` best partial sequences by total
  log-probability and returns the best finished ones, scored by
  ``sum log p / generated_length ** length_penalty``.

GPT-3's paper (Brown et al. 2020, section 2.4) used beam search with width 4 and length penalty
0.6 for its free-form tasks. Every function feeds the model one new token per step and keeps
the keys and values of the past in :class:`~minigpt.attention.KVCache` objects
(``use_cache=False`` recomputes the whole prefix every step, which gives the same tokens and is
what ``benchmarks/generate.py`` times against). :func:`score_continuation` scores a given
continuation instead of generating one.

All functions take a batch of prompts of one length, ``idx`` ``(B, T)``, and switch the model
to ``eval()`` while they run (dropout off), restoring its mode afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BeamResult",
    "apply_temperature",
    "beam_search",
    "beam_step",
    "distinct_n",
    "greedy",
    "length_penalized_score",
    "sample",
    "score_continuation",
    "top_k_filter",
    "top_p_filter",
]

#: The score of a hypothesis that is not allowed (as in Hugging Face's beam search).
_NEG = -1.0e9


# ---------------------------------------------------------------------------------------------
# Logit transformations


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide logits by the temperature, ``(..., V) -> (..., V)``.

    ``softmax(logits / T)``: ``T = 1`` leaves the distribution unchanged, ``T < 1`` sharpens it,
    ``T > 1`` flattens it. ``T = 0`` is the limit, greedy decoding: the (first) largest logit
    becomes 0 and every other ``-inf``.

    >>> apply_temperature(torch.tensor([1.0, 2.0, 0.0]), 0.5).tolist()
    [2.0, 4.0, 0.0]
    >>> apply_temperature(torch.tensor([1.0, 2.0, 0.0]), 0).tolist()
    [-inf, 0.0, -inf]
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if temperature == 0:
        out = torch.full_like(logits, float("-inf"))
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to ``-inf``; ``(..., V)``.

    A token is kept when its logit is at least the ``k``-th largest, so ties with the ``k``-th
    are all kept (Hugging Face's ``TopKLogitsWarper``); ``k >= V`` keeps everything.

    >>> top_k_filter(torch.tensor([1.0, 3.0, 2.0, 0.0]), 2).tolist()
    [-inf, 3.0, 2.0, -inf]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be an integer >= 1 (None to switch it off), got {k!r}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the most likely tokens whose probabilities add up to ``p``;
    ``(..., V)``, the rest set to ``-inf``.

    The kept set is the smallest set of top tokens with total probability ``>= p``, and never
    empty. This is computed as Hugging Face's ``TopPLogitsWarper`` does, so the two agree
    exactly, ties and rounding included: sort the probabilities in *ascending* order, take the
    running sum, and drop the tokens whose running sum is ``<= 1 - p`` (the most likely token
    is always kept). ``p = 1`` keeps every token of nonzero probability.

    Raises ``ValueError`` unless ``0 < p <= 1``.

    >>> logits = torch.tensor([0.5, 0.3, 0.2]).log()
    >>> top_p_filter(logits, 0.7).isfinite().tolist()  # 0.5 < 0.7 <= 0.5 + 0.3
    [True, True, False]
    >>> top_p_filter(logits, 0.4).isfinite().tolist()  # 0.5 alone reaches 0.4
    [True, False, False]
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (None to switch it off), got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= 1 - p
    drop_sorted[..., -1] = False  # the most likely token always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# ---------------------------------------------------------------------------------------------
# Checks and the decoding loop


def _inference(fn: Callable) -> Callable:
    """Run ``fn(model, ...)`` under :func:`torch.inference_mode` with the model in eval mode.

    Inference mode skips autograd's bookkeeping (version counters, views) on every operation,
    which matters when the per-token work is small. The tensors returned are cloned outside
    it, so that they are ordinary tensors (inference tensors cannot be saved for backward, so
    could not be fed to a training step).
    """

    @functools.wraps(fn)
    def wrapper(model: nn.Module, *args, **kwargs):
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                result = fn(model, *args, **kwargs)
        finally:
            model.train(was_training)
        if isinstance(result, Tensor):
            return result.clone()
        if isinstance(result, BeamResult):
            return BeamResult(*(t.clone() for t in result))
        return result

    return wrapper


def _stepper(model: nn.Module, use_cache: bool) -> Callable[[Tensor, list | None], Tensor]:
    """``step(feed (B, T), caches) -> logits (B, V)`` of the last position, float32.

    The model's :meth:`~minigpt.model.GPT.decode_step` (no per-step re-validation) when the
    cache is used and the model has one, else ``model(feed, caches=caches)``.
    """
    decode_step = getattr(model, "decode_step", None) if use_cache else None
    if decode_step is None:
        return lambda feed, caches: model(feed, caches=caches)[0][:, -1].float()
    return lambda feed, caches: decode_step(feed, caches).float()


def _check_prompt(model: nn.Module, idx: Tensor, max_new_tokens: int) -> None:
    if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.is_floating_point():
        what = tuple(idx.shape) if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"idx must be an integer tensor of token ids (B, T), got {what}; "
                         "a single prompt is idx[None]")
    if idx.shape[1] == 0:
        raise ValueError("the prompt is empty (T = 0); give at least one token")
    n_ctx = model.config.n_ctx
    if idx.shape[1] > n_ctx:
        raise ValueError(f"prompt of {idx.shape[1]} tokens is longer than the model's context of "
                         f"{n_ctx}; allowed: at most {n_ctx} (keep its last {n_ctx} tokens)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")


def _decode(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    pick: Callable[[Tensor], Tensor],
    eos_id: int | None,
    pad_id: int | None,
    use_cache: bool,
) -> Tensor:
    """One token per step, ``pick(logits (B, V)) -> (B,)``; see :func:`greedy`."""
    _check_prompt(model, idx, max_new_tokens)
    n_ctx = model.config.n_ctx
    pad_id = eos_id if pad_id is None else pad_id
    caches = model.make_caches() if use_cache else None
    step = _stepper(model, use_cache)
    b, n = idx.shape  # n: tokens so far
    out = torch.empty(b, n + max_new_tokens, dtype=torch.long, device=idx.device)
    out[:, :n] = idx
    feed = out[:, :n]
    start = 0  # the model reads out[:, start:n]
    done = torch.zeros(b, dtype=torch.bool, device=idx.device)
    may_finish = eos_id is not None or b == 0  # else done.all() is False: skip the sync
    for i in range(max_new_tokens):
        if n - start > n_ctx:
            # The context is full: keep its newer half (see greedy's docstring).
            start = n - max(1, n_ctx // 2)
            if caches is not None:
                for cache in caches:
                    cache.reset()
                feed = out[:, start:n]
        if caches is None:  # no cache: recompute the whole window every step
            feed = out[:, start:n]
        if i == 0:  # the prompt: every check of forward
            logits = model(feed, caches=caches)[0][:, -1].float()  # (B, V)
        else:
            logits = step(feed, caches)  # (B, V)
        token = pick(logits)  # (B,)
        if eos_id is not None:
            token = token.masked_fill(done, pad_id)  # finished rows get padding
            done = done | (token == eos_id)
        out[:, n] = token
        n += 1
        feed = token[:, None]
        if may_finish and done.all():
            break
    return out[:, :n]


@_inference
def greedy(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    eos_id: int | None = None,
    pad_id: int | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Greedy decoding: append the most likely next token, ``max_new_tokens`` times.

    ``idx (B, T) -> (B, T + n)``, ``n <= max_new_tokens``. With ``eos_id``, a row that has
    produced it is finished: its later tokens are ``pad_id`` (default ``eos_id``), and the loop
    stops early once every row is finished (Hugging Face's convention).

    Past the context: when the model has read ``n_ctx`` tokens and must read one more, it keeps
    the newer half (the last ``n_ctx // 2``) and goes on from there, so it always reads between
    ``n_ctx // 2`` and ``n_ctx`` tokens. With learned positions the cache cannot slide by one
    token (every position would change), so this costs one recomputation of half a context
    every ``n_ctx // 2`` tokens instead of a full one every token; ``use_cache=False`` reads the
    same windows, recomputing each step, and gives the same tokens.

    >>> from minigpt.model import GPT
    >>> from minigpt.config import get_config
    >>> _ = torch.manual_seed(0); model = GPT(get_config("tiny"))
    >>> greedy(model, torch.zeros(2, 3, dtype=torch.long), 4).shape
    torch.Size([2, 7])
    """
    return _decode(model, idx, max_new_tokens, lambda logits: logits.argmax(-1),
                   eos_id, pad_id, use_cache)


@_inference
def sample(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Sample each next token from ``softmax(top_p(top_k(logits / temperature)))``.

    ``idx (B, T) -> (B, T + n)`` as :func:`greedy`. The filters apply in Hugging Face's order:
    temperature, then top-k, then top-p; ``None`` switches a filter off. ``temperature = 0``
    is greedy decoding. ``generator`` (a seeded :class:`torch.Generator`) makes the draws
    reproducible.

    >>> from minigpt.model import GPT
    >>> from minigpt.config import get_config
    >>> _ = torch.manual_seed(0); model = GPT(get_config("tiny"))
    >>> g = torch.Generator().manual_seed(0)
    >>> sample(model, torch.zeros(1, 3, dtype=torch.long), 5, top_k=10, generator=g).shape
    torch.Size([1, 8])
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None:
        top_k_filter(torch.zeros(1), top_k)  # validates top_k
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (None to switch it off), got {top_p}")

    def pick(logits: Tensor) -> Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return _decode(model, idx, max_new_tokens, pick, eos_id, pad_id, use_cache)


# ---------------------------------------------------------------------------------------------
# Beam search


def length_penalized_score(sum_logprob: float | Tensor, length: int | Tensor,
                           alpha: float) -> float | Tensor:
    """The score of a finished beam: ``sum_logprob / length ** alpha``.

    ``sum_logprob`` is the summed log-probability of the generated tokens (a number or a tensor
    of any shape), ``length`` their number (>= 1, the prompt not counted). This is Hugging
    Face's convention, which :func:`beam_search` follows. ``alpha = 0`` ranks by total
    log-probability, which favours short hypotheses (every token adds a negative term);
    ``alpha = 1`` ranks by the mean log-probability per token; ``alpha > 1`` favours long ones.
    (Wu et al. 2016 divide by ``((5 + length) / 6) ** alpha`` instead.)

    Raises ``ValueError`` if ``length`` (or any entry of a ``length`` tensor) is below 1, or
    if a number ``length`` is not an int.

    >>> length_penalized_score(-6.0, 4, 1.0)
    -1.5
    >>> length_penalized_score(-6.0, 4, 0.0)
    -6.0
    >>> round(length_penalized_score(-6.0, 4, 0.6), 4)
    -2.6117
    """
    if isinstance(length, Tensor):
        if bool((length < 1).any()):
            raise ValueError("length must be >= 1 (the number of generated tokens)")
    elif isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an integer >= 1 (the number of generated tokens), "
                         f"got {length!r}")
    return sum_logprob / (length**alpha)


def beam_step(beam_scores: Tensor, logprobs: Tensor, num_beams: int) -> tuple[Tensor, Tensor,
                                                                                 Tensor]:
    """One step of beam search for one prompt, without end-of-text tokens.

    ``beam_scores`` ``(K,)`` are the summed log-probabilities of the ``K`` current beams and
    ``logprobs`` ``(K, V)`` their next-token log-probabilities. Every beam proposes every token,
    the candidate (beam ``i``, token ``v``) scoring ``beam_scores[i] + logprobs[i, v]``; the
    ``num_beams`` best of all ``K V`` candidates survive, whichever beams they extend. Returns
    ``(scores, parents, tokens)``, each ``(num_beams,)``, best first: the new summed
    log-probabilities, the index of the beam each extends and the token it appends.

    >>> beam_scores = torch.tensor([-0.5, -1.0])
    >>> logprobs = torch.tensor([[-2.0, -2.0, -0.2], [-0.1, -3.0, -3.0]])
    >>> scores, parents, tokens = beam_step(beam_scores, logprobs, 2)
    >>> scores.tolist(), parents.tolist(), tokens.tolist()
    ([-0.699999988079071, -1.100000023841858], [0, 1], [2, 0])
    """
    if beam_scores.ndim != 1 or logprobs.ndim != 2 or logprobs.shape[0] != beam_scores.shape[0]:
        raise ValueError(f"beam_scores must be (K,) and logprobs (K, V), got "
                         f"{tuple(beam_scores.shape)} and {tuple(logprobs.shape)}")
    k_now, vocab = logprobs.shape
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) \
            or not 1 <= num_beams <= k_now * vocab:
        raise ValueError(f"num_beams must be an integer in [1, K * V = {k_now * vocab}], "
                         f"got {num_beams!r}")
    candidates = (beam_scores[:, None] + logprobs).flatten()  # (K V,)
    scores, flat = torch.topk(candidates, num_beams)
    return scores, flat // vocab, flat % vocab


class BeamResult(NamedTuple):
    """What :func:`beam_search` returns.

    ``sequences``: ``(B * R, T + n)`` token ids, prompt included, the ``R =
    num_return_sequences`` best of each prompt in order (prompt ``b``'s are rows ``b R`` to
    ``b R + R - 1``), padded after their end-of-text token with the pad id.
    ``scores``: ``(B * R,)`` their beam scores ``sum log p / n_gen ** length_penalty``.
    """

    sequences: Tensor
    scores: Tensor


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``x (B, K, ...)``, ``index (B, K') -> (B, K', ...)``: rows ``x[b, index[b, j]]``."""
    index = index.view(*index.shape, *([1] * (x.ndim - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, index)


def _check_beam_args(num_beams: int, early_stopping: object, num_return_sequences: int) -> None:
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams (the beam width) must be an integer >= 1, got {num_beams!r}")
    if not (isinstance(early_stopping, bool) or early_stopping == "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if not isinstance(num_return_sequences, int) or not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be in [1, num_beams={num_beams}], "
                         f"got {num_return_sequences!r}")


@_inference
def beam_search(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
    early_stopping: bool | Literal["never"] = False,
    eos_id: int | None = None,
    pad_id: int | None = None,
    num_return_sequences: int = 1,
    use_cache: bool = True,
) -> BeamResult:
    """Beam search, step for step the algorithm of Hugging Face ``generate(num_beams=...)``
    (transformers 5.x), so that both return the same sequences and scores.

    Each prompt of ``idx (B, T)`` keeps ``K = num_beams`` *running* beams with their summed
    log-probabilities, and a list of the ``K`` best *finished* hypotheses. Every step:

    1. every running beam proposes every token; the ``2K`` best (beam, token) pairs by summed
       log-probability are kept (``2K``, so that ``K`` remain even if ``K`` of them end);
    2. a candidate that ends (its token is ``eos_id``, or it reached ``max_new_tokens``) and is
       among the first ``K`` joins the finished list with the score
       ``sum log p / n_gen ** length_penalty``, ``n_gen`` = its generated tokens (the
       end-of-text token included, the prompt not); the list keeps its ``K`` best;
    3. the ``K`` best candidates that did not end are the next running beams (the KV cache rows
       are reordered to follow them, :meth:`~minigpt.attention.KVCache.reorder`).

    The search stops when no candidate can continue (``max_new_tokens``), or, with
    ``early_stopping=True``, as soon as ``K`` hypotheses are finished; with ``False`` when the
    best running beam, scored at its current length, cannot beat the worst finished one;
    with ``"never"`` the same test but, when ``length_penalty > 0``, at the longest possible
    length (``max_new_tokens``), so that the search stops only when it provably cannot improve.
    ``length_penalty > 0`` favours longer sequences, ``< 0`` shorter ones.

    Returns a :class:`BeamResult`: sequences ``(B R, T + n)`` (``R = num_return_sequences``,
    ``n`` the longest returned continuation, shorter ones padded with ``pad_id``, default
    ``eos_id``) and their scores ``(B R,)``.

    >>> from minigpt.model import GPT
    >>> from minigpt.config import get_config
    >>> _ = torch.manual_seed(0); model = GPT(get_config("tiny"))
    >>> out = beam_search(model, torch.zeros(2, 3, dtype=torch.long), 4, num_beams=3)
    >>> out.sequences.shape, out.scores.shape
    (torch.Size([2, 7]), torch.Size([2]))
    """
    _check_prompt(model, idx, max_new_tokens)
    _check_beam_args(num_beams, early_stopping, num_return_sequences)
    if max_new_tokens < 1:
        raise ValueError("beam search needs max_new_tokens >= 1")
    b, t = idx.shape
    k, max_len, n_ctx = num_beams, idx.shape[1] + max_new_tokens, model.config.n_ctx
    if max_len - 1 > n_ctx:
        raise ValueError(f"prompt ({t}) + max_new_tokens ({max_new_tokens}) - 1 = {max_len - 1} "
                         f"tokens exceed the model's context of {n_ctx}; beam search does not "
                         f"slide the window: allowed max_new_tokens <= {n_ctx - t + 1}")
    fill = pad_id if pad_id is not None else (eos_id if eos_id is not None else -1)
    dev, keep = idx.device, 2 * k  # HF: max(2, 1 + number of EOS ids) * K
    first_k = torch.arange(keep, device=dev) < k  # (2K,)

    running = torch.full((b, k, max_len), fill, dtype=torch.long, device=dev)
    running[:, :, :t] = idx.long()[:, None]
    run_scores = torch.zeros(b, k, device=dev)
    run_scores[:, 1:] = _NEG  # all beams start equal: only beam 0 may propose at step 1
    done_seqs, done_scores = running.clone(), torch.full((b, k), _NEG, device=dev)
    done_lens = torch.zeros(b, k, dtype=torch.long, device=dev)
    is_done = torch.zeros(b, k, dtype=torch.bool, device=dev)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=dev)
    caches = model.make_caches() if use_cache else None
    step = _stepper(model, use_cache)
    feed = running[:, :, :t].flatten(0, 1)  # (B K, T)

    for cur in range(t, max_len):
        if cur == t:  # the prompt: every check of forward
            logits = model(feed, caches=caches)[0][:, -1].float()  # (B K, V)
        else:
            logits = step(feed, caches)  # (B K, V)
        vocab = logits.shape[-1]
        logp = F.log_softmax(logits, dim=-1).view(b, k, vocab) + run_scores[:, :, None]
        top_lp, top_i = torch.topk(logp.view(b, k * vocab), keep)  # (B, 2K)
        src, token = top_i // vocab, top_i % vocab
        cand = _gather(running, src)  # (B, 2K, L)
        cand[:, :, cur] = token
        ends = torch.full_like(token, cur + 1 >= max_len, dtype=torch.bool)
        if eos_id is not None:
            ends = ends | (token == eos_id)

        # The K best candidates that go on.
        alive_lp = top_lp + ends.float() * _NEG
        nxt = torch.topk(alive_lp, k).indices  # (B, K)
        running, run_scores = _gather(cand, nxt), _gather(alive_lp, nxt)
        run_src = _gather(src, nxt)

        # The finished list: merge in the candidates that just ended (among the first K).
        n_gen = cur + 1 - t
        scored = length_penalized_score(top_lp, n_gen, length_penalty)
        scored = scored + (is_done.all(-1, keepdim=True) & (early_stopping is True)).float() * _NEG
        scored = scored + (~improvable).float() * _NEG
        just_done = ends & first_k
        scored = scored + (~just_done) * _NEG
        best = torch.topk(torch.cat([done_scores, scored], 1), k).indices
        done_seqs = _gather(torch.cat([done_seqs, cand], 1), best)
        done_scores = _gather(torch.cat([done_scores, scored], 1), best)
        done_lens = _gather(torch.cat([done_lens, torch.full_like(token, n_gen)], 1), best)
        is_done = _gather(torch.cat([is_done, just_done], 1), best)

        # Can the running beams still beat the worst finished hypothesis?
        n_best = max_new_tokens if early_stopping == "never" and length_penalty > 0 else n_gen
        best_running = length_penalized_score(run_scores[:, :1], n_best, length_penalty)
        worst_done = torch.where(is_done, done_scores.min(1, keepdim=True).values, _NEG)
        improvable = improvable & (best_running > worst_done).any(-1, keepdim=True)
        stop_full = bool(is_done.all()) and early_stopping is True
        if not bool(improvable.any()) or stop_full or bool(ends.all()):
            break
        if caches is not None:
            rows = (run_src + torch.arange(b, device=dev)[:, None] * k).flatten()
            for cache in caches:
                cache.reorder(rows)
            feed = running[:, :, cur].reshape(b * k, 1)
        else:
            feed = running[:, :, : cur + 1].flatten(0, 1)

    r = num_return_sequences
    lens = done_lens[:, :r]
    return BeamResult(done_seqs[:, :r, : t + int(lens.max())].flatten(0, 1),
                      done_scores[:, :r].flatten())


# ---------------------------------------------------------------------------------------------
# Scoring


def distinct_n(sequences: Sequence[Sequence[int]] | Tensor, n: int = 2) -> float:
    """The share of distinct n-grams: ``len(set(ngrams)) / len(ngrams)``, pooled over all rows.

    A measure of diversity (Li et al. 2016): 1 when no n-gram of tokens repeats, close to 0 for
    text that loops. ``sequences`` is a list of token-id lists (or a 2-D tensor), each row
    contributing its own n-grams (none cross a row boundary). Raises ``ValueError`` if no row
    has ``n`` tokens.

    >>> distinct_n([[1, 2, 1, 2, 1, 2]], 2)  # (1,2) (2,1) (1,2) (2,1) (1,2): 2 of 5
    0.4
    >>> distinct_n([[1, 2, 3], [1, 2, 4]], 2)  # (1,2) twice, (2,3), (2,4): 3 of 4
    0.75
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rows = sequences.tolist() if isinstance(sequences, Tensor) else [list(r) for r in sequences]
    grams = [tuple(row[i:i + n]) for row in rows for i in range(len(row) - n + 1)]
    if not grams:
        raise ValueError(f"no sequence has {n} tokens: no {n}-gram to count")
    return len(set(grams)) / len(grams)


def _as_ids(ids: Tensor | Sequence[int], name: str) -> Tensor:
    ids = torch.as_tensor(ids)
    if ids.ndim == 1 and ids.numel() == 0:
        return ids.long()
    if ids.ndim != 1 or ids.is_floating_point():
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape "
                         f"{tuple(ids.shape)} and dtype {ids.dtype}")
    return ids.long()


@_inference
def score_continuation(
    model: nn.Module, prompt_ids: Tensor | Sequence[int], continuation_ids: Tensor | Sequence[int]
) -> float:
    """``sum_i log p(c_i | prompt, c_<i)``: the log-probability of a continuation.

    ``prompt_ids`` ``(T,)`` (at least one token) and ``continuation_ids`` ``(C,)``, one forward
    pass over the ``T + C - 1`` tokens that predict the continuation. This is how GPT-3's
    multiple-choice tasks compare candidate answers (Brown et al. 2020, section 2.4). An empty
    continuation scores 0.

    >>> from minigpt.model import GPT
    >>> from minigpt.config import get_config
    >>> _ = torch.manual_seed(0); model = GPT(get_config("tiny"))
    >>> score_continuation(model, [1, 2, 3], [4, 5]) < 0
    True
    """
    prompt, cont = _as_ids(prompt_ids, "prompt_ids"), _as_ids(continuation_ids, "continuation_ids")
    if prompt.numel() == 0:
        raise ValueError("prompt_ids is empty; the first token needs a context of >= 1 token")
    if cont.numel() == 0:
        return 0.0
    ids = torch.cat([prompt, cont.to(prompt.device)])[:-1]  # the last token predicts nothing
    n_ctx = model.config.n_ctx
    if ids.numel() > n_ctx:
        raise ValueError(f"prompt + continuation - 1 = {ids.numel()} tokens exceed the model's "
                         f"context of {n_ctx}")
    logits = model(ids[None])[0][0, prompt.numel() - 1:].float()  # (C, V)
    logp = F.log_softmax(logits, dim=-1).gather(-1, cont[:, None].to(logits.device))
    return float(logp.double().sum())
