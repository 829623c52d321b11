"""minigpt.generate against Hugging Face's generate (random GPT-2 weights loaded from minigpt,
nothing downloaded), the filters against their definitions, sampling against the filtered
distribution, and the KV cache against full recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_transformers
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minigpt.config import GPTConfig
from minigpt.generate import (
    apply_temperature,
    beam_search,
    beam_step,
    distinct_n,
    greedy,
    length_penalized_score,
    sample,
    score_continuation,
    top_k_filter,
    top_p_filter,
)
from minigpt.model import GPT, hf_gpt2_config, to_hf_gpt2_state_dict
from minigpt.ngram import temper_probabilities

try:
    import transformers
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
except ImportError:  # the parity tests need it; the rest does not
    transformers = None


SMALL = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=97, n_ctx=24)
MAX_NEW = 10


@pytest.fixture(scope="module")
def model() -> GPT:
    """A random model whose next-token distributions are peaked enough that no two candidate
    scores are within float rounding of each other (GPT-2's init gives near-uniform logits)."""
    torch.manual_seed(0)
    m = GPT(SMALL).eval()
    with torch.no_grad():
        m.transformer.wte.weight.normal_(0.0, 0.15)
    return m


@pytest.fixture(scope="module")
def hf(model):
    h = transformers.GPT2LMHeadModel(hf_gpt2_config(SMALL, attn_implementation="eager")).eval()
    h.load_state_dict(to_hf_gpt2_state_dict(model.state_dict(), SMALL), strict=True)
    return h


@pytest.fixture(scope="module")
def prompts() -> torch.Tensor:
    return torch.randint(0, SMALL.vocab_size, (3, 5), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def eos(model, prompts) -> int:
    """A token that greedy decoding of prompt 0 emits at its 3rd step: an end-of-text id that
    some hypotheses reach early and others never."""
    return int(greedy(model, prompts, 3)[0, -1])


# ---------------------------------------------------------------------------------------------
# Parity with transformers' generate


@needs_transformers
@pytest.mark.parametrize("with_eos", [False, True])
def test_greedy_matches_hf(model, hf, prompts, eos, with_eos):
    eos_id = eos if with_eos else None
    ours = greedy(model, prompts, MAX_NEW, eos_id=eos_id, pad_id=1)
    theirs = hf.generate(prompts, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos_id,
                         pad_token_id=1)
    assert torch.equal(ours, theirs)


@needs_transformers
@pytest.mark.parametrize("early_stopping", [True, False, "never"])
@pytest.mark.parametrize("num_beams", [2, 3, 4, 5])
def test_beam_search_matches_hf(model, hf, prompts, eos, num_beams, early_stopping):
    for length_penalty in (1.0, 0.0, 2.0, -0.5):
        for eos_id in (None, eos):
            kw = dict(length_penalty=length_penalty, early_stopping=early_stopping)
            ours = beam_search(model, prompts, MAX_NEW, num_beams, eos_id=eos_id, pad_id=1,
                               num_return_sequences=2, **kw)
            out = hf.generate(prompts, max_new_tokens=MAX_NEW, num_beams=num_beams,
                              do_sample=False, eos_token_id=eos_id, pad_token_id=1,
                              num_return_sequences=2, output_scores=True,
                              return_dict_in_generate=True, **kw)
            where = f"length_penalty={length_penalty}, eos_id={eos_id}"
            assert torch.equal(ours.sequences, out.sequences), where
            torch.testing.assert_close(ours.scores, out.sequences_scores, atol=1e-5, rtol=1e-5,
                                       msg=where)


@needs_transformers
def test_beam_pad_id_zero_differs_from_hf(model, hf, prompts, eos):
    """Documented difference: HF fills finished beams with ``pad_token_id or eos_token_id``, so a
    pad id of 0 (falsy) becomes the EOS id; minigpt uses the pad id it is given."""
    kw = dict(num_return_sequences=3, length_penalty=-1.0)  # favours an early EOS
    ours = beam_search(model, prompts, MAX_NEW, 3, eos_id=eos, pad_id=0, **kw)
    out = hf.generate(prompts, max_new_tokens=MAX_NEW, num_beams=3, do_sample=False,
                      eos_token_id=eos, pad_token_id=0, **kw)
    assert ours.sequences.shape == out.shape
    padded = ours.sequences != out
    assert padded.any()  # the example must have an early EOS to be meaningful
    assert (ours.sequences[padded] == 0).all() and (out[padded] == eos).all()


@needs_transformers
def test_score_continuation_matches_hf_logits(model, hf):
    prompt, cont = [3, 14, 15, 92], [65, 35, 89, 79]
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logp = hf(ids).logits[0].log_softmax(-1)
    want = sum(float(logp[len(prompt) - 1 + i, c]) for i, c in enumerate(cont))
    assert score_continuation(model, prompt, cont) == pytest.approx(want, abs=1e-4)


def test_beam_score_is_sum_logprob_over_length_penalty(model, prompts):
    """The convention (transformers 5.x): score = sum log p / n_gen ** length_penalty, n_gen the
    generated tokens only, the prompt not counted."""
    for lp in (1.0, 0.6):
        out = beam_search(model, prompts, 6, 3, length_penalty=lp)
        for row, score in zip(out.sequences, out.scores, strict=True):
            total = score_continuation(model, row[:5], row[5:])
            assert float(score) == pytest.approx(total / 6**lp, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# The filters, by definition


# Distinct logits, at least 0.01 apart: no ties, whose order the definition leaves open.
_logits = st.lists(st.integers(-800, 800), min_size=2, max_size=40, unique=True).map(
    lambda xs: torch.tensor(xs, dtype=torch.float32) / 100)


@settings(max_examples=60, deadline=None)
@given(_logits, st.integers(1, 45))
def test_top_k_filter_definition(logits, k):
    out = top_k_filter(logits, k)
    kept = torch.isfinite(out)
    order = logits.argsort(descending=True)
    want = torch.zeros_like(kept)
    want[order[: min(k, len(logits))]] = True  # the k largest (the logits are distinct)
    assert torch.equal(kept, want)
    assert torch.equal(out[kept], logits[kept])
    if transformers is not None:
        hf_out = TopKLogitsWarper(k)(None, logits[None])[0]
        assert torch.equal(out, hf_out)


@settings(max_examples=80, deadline=None)
@given(_logits, st.floats(0.01, 1.0))
def test_top_p_filter_definition(logits, p):
    out = top_p_filter(logits, p)
    probs = logits.double().softmax(-1)
    order = probs.argsort(descending=True)
    before = torch.cat([torch.zeros(1, dtype=torch.float64), probs[order].cumsum(0)[:-1]])
    # Stay away from the boundary, where float32 rounding decides.
    assume(bool(((before - p).abs() > 1e-5).all()))
    assume(bool(((probs[order].cumsum(0) - p).abs() > 1e-5).all()))
    # Keep a token iff the tokens more likely than it hold less than p: the smallest top set
    # whose probability reaches p.
    want = torch.zeros(len(logits), dtype=torch.bool)
    want[order[before < p]] = True
    assert torch.equal(torch.isfinite(out), want)
    assert float(probs[want].sum()) >= p - 1e-5
    if transformers is not None:
        assert torch.equal(out, TopPLogitsWarper(p)(None, logits[None])[0])


@settings(max_examples=40, deadline=None)
@given(_logits, st.floats(0.05, 5.0))
def test_temperature_matches_ngram_version(logits, t):
    """Softmax of logits / T equals the n-gram chapter's rescaling of the probabilities."""
    probs = logits.double().softmax(-1).numpy()
    ours = apply_temperature(logits.double(), t).softmax(-1).numpy()
    np.testing.assert_allclose(ours, temper_probabilities(probs, t), atol=1e-9)


def test_filters_keep_at_least_one_token():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, 2.0, 2.0]])
    assert torch.isfinite(top_p_filter(logits, 1e-9)).sum(-1).tolist() == [1, 1]
    assert torch.isfinite(top_k_filter(logits, 1)).sum(-1).tolist() == [1, 3]  # ties stay
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


# ---------------------------------------------------------------------------------------------
# Sampling follows the filtered distribution


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.7, 20, None),
                                                       (1.3, None, 0.8), (1.0, 30, 0.9)])
def test_sampling_matches_filtered_distribution(model, temperature, top_k, top_p):
    """20,000 one-token draws (seed 0) against the filtered next-token distribution: the total
    variation distance is below 0.03 (its expected size here is about 0.01-0.02), and no
    draw falls outside the kept set."""
    n, prompt = 20_000, torch.tensor([[5, 17, 42]])
    with torch.no_grad():
        logits = model(prompt)[0][0, -1]
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    want = logits.softmax(-1)
    g = torch.Generator().manual_seed(0)
    draws = sample(model, prompt.expand(n, -1), 1, temperature=temperature, top_k=top_k,
                   top_p=top_p, generator=g)[:, -1]
    freq = torch.bincount(draws, minlength=SMALL.vocab_size).double() / n
    assert (freq[want == 0] == 0).all()
    tv = 0.5 * float((freq - want.double()).abs().sum())
    assert tv < 0.03, tv


def test_sample_is_reproducible_and_temperature_zero_is_greedy(model, prompts):
    a = sample(model, prompts, 8, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = sample(model, prompts, 8, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(sample(model, prompts, 8, temperature=0), greedy(model, prompts, 8))


# ---------------------------------------------------------------------------------------------
# KV cache = full recomputation


def test_greedy_and_sample_cache_equals_recompute(model, prompts, eos):
    # 5 + 30 tokens > n_ctx = 24: past the context both keep the newer half and go on.
    for eos_id in (None, eos):
        assert torch.equal(greedy(model, prompts, 30, eos_id=eos_id),
                           greedy(model, prompts, 30, eos_id=eos_id, use_cache=False))
    runs = [sample(model, prompts, 30, temperature=1.5, generator=torch.Generator().manual_seed(1),
                   use_cache=c) for c in (True, False)]
    assert torch.equal(*runs)


def test_past_the_context_the_model_reads_the_newer_half(model, prompts) -> None:
    """Greedy past n_ctx = 24 equals a plain loop that reads out[start:n], where the window
    start jumps to keep the last 12 tokens whenever the model would read 25."""
    n_ctx = model.config.n_ctx
    out, start = prompts.clone(), 0
    with torch.no_grad():
        for _ in range(40):
            if out.shape[1] - start > n_ctx:
                start = out.shape[1] - n_ctx // 2
            assert out.shape[1] - start <= n_ctx and (start == 0 or out.shape[1] - start > 11)
            logits = model(out[:, start:])[0][:, -1]
            out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy(model, prompts, 40), out)


@pytest.mark.parametrize("early_stopping", [True, "never"])
def test_beam_search_cache_equals_recompute(model, prompts, eos, early_stopping):
    runs = [beam_search(model, prompts, MAX_NEW, 4, length_penalty=0.6, eos_id=eos,
                        early_stopping=early_stopping, num_return_sequences=3, use_cache=c)
            for c in (True, False)]
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    torch.testing.assert_close(runs[0].scores, runs[1].scores, atol=1e-5, rtol=0)


SHAKESPEARE = GPTConfig(n_layer=4, d_model=128, n_heads=4, vocab_size=65, n_ctx=128)
GQA = GPTConfig(n_layer=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=97, n_ctx=24,
                norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, tie_embeddings=False)


@pytest.mark.parametrize("config, t, n", [(SHAKESPEARE, 100, 40), (GQA, 5, 30)],
                         ids=["shakespeare", "gqa-rope"])
def test_cache_equals_recompute_token_for_token(config, t, n):
    """The preallocated cache, the single-query step without a mask and the unchecked
    decode step give exactly the tokens of full recomputation, past the context included."""
    torch.manual_seed(1)
    m = GPT(config).eval()
    with torch.no_grad():
        m.transformer.wte.weight.normal_(0.0, 0.3)  # peaked distributions: tokens depend on x
    idx = torch.randint(0, config.vocab_size, (2, t), generator=torch.Generator().manual_seed(2))
    assert idx.shape[1] + n > config.n_ctx
    assert torch.equal(greedy(m, idx, n), greedy(m, idx, n, use_cache=False))
    runs = [sample(m, idx, n, temperature=0.8, top_k=20, top_p=0.95, use_cache=c,
                   generator=torch.Generator().manual_seed(3)) for c in (True, False)]
    assert torch.equal(*runs)


def test_decode_step_is_forward_without_the_checks(model, prompts):
    with torch.inference_mode():
        caches, ref = model.make_caches(), model.make_caches()
        model(prompts, caches=caches)
        model(prompts, caches=ref)
        nxt = prompts[:, :1]
        assert torch.equal(model.decode_step(nxt, caches), model(nxt, caches=ref)[0][:, -1])
        model.decode_step(torch.zeros(3, SMALL.n_ctx - 6, dtype=torch.long), caches)
        with pytest.raises(ValueError, match=r"sequence length 25 exceeds the model's context "
                                             r"of 24 \(24 cached \+ 1 new tokens\)"):
            model.decode_step(nxt, caches)


def test_generated_ids_are_ordinary_tensors(model, prompts):
    """Decoding runs in inference mode, but what it returns can train a model."""
    out = greedy(model, prompts, 3)
    beams = beam_search(model, prompts, 3, num_beams=2)
    assert not out.is_inference() and not beams.sequences.is_inference()
    model.train()
    try:
        model(out[:, :-1], out[:, 1:])[1].backward()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)


def test_beam_width_one_is_greedy(model, prompts):
    assert torch.equal(beam_search(model, prompts, MAX_NEW, 1).sequences,
                       greedy(model, prompts, MAX_NEW))


def test_generation_restores_training_mode(model, prompts):
    model.train()
    try:
        greedy(model, prompts, 2)
        assert model.training
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("call, message", [
    (lambda m, x: beam_search(m, x, 4, num_beams=0), "num_beams"),
    (lambda m, x: beam_search(m, x, 4, num_beams=2, early_stopping="sometimes"),
     "early_stopping"),
    (lambda m, x: beam_search(m, x, 4, num_beams=2, num_return_sequences=3),
     "num_return_sequences"),
    (lambda m, x: beam_search(m, x, 30, num_beams=2), "does not slide"),
    (lambda m, x: sample(m, x, 4, top_p=0.0), "top_p"),
    (lambda m, x: sample(m, x, 4, top_p=1.5), "top_p"),
    (lambda m, x: sample(m, x, 4, top_k=0), "top_k"),
    (lambda m, x: sample(m, x, 4, temperature=-0.1), "temperature"),
    (lambda m, x: greedy(m, torch.zeros(1, 25, dtype=torch.long), 1), "longer than"),
    (lambda m, x: greedy(m, x[0], 1), "idx\\[None\\]"),
    (lambda m, x: greedy(m, x, -1), "max_new_tokens"),
    (lambda m, x: score_continuation(m, [], [1]), "empty"),
    (lambda m, x: score_continuation(m, list(range(20)), list(range(10))), "context"),
])
def test_clear_errors(model, prompts, call, message):
    with pytest.raises(ValueError, match=message):
        call(model, prompts)


def test_filter_errors():
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(3), -1)


# ---------------------------------------------------------------------------------------------
# The pure helpers of the decoding chapter


def test_beam_step_by_brute_force():
    gen = torch.Generator().manual_seed(0)
    for k, v, width in [(1, 7, 3), (3, 5, 3), (2, 9, 4), (4, 4, 16)]:
        scores = -torch.rand(k, generator=gen) * 3
        logp = torch.randn(k, v, generator=gen).log_softmax(-1)
        got = beam_step(scores, logp, width)
        pairs = sorted(((float(scores[i] + logp[i, t]), i, t) for i in range(k) for t in range(v)),
                       reverse=True)[:width]
        assert got[0].tolist() == pytest.approx([p[0] for p in pairs])
        assert got[1].tolist() == [p[1] for p in pairs]
        assert got[2].tolist() == [p[2] for p in pairs]
    with pytest.raises(ValueError, match="num_beams"):
        beam_step(torch.zeros(2), torch.zeros(2, 3), 7)
    with pytest.raises(ValueError, match="logprobs"):
        beam_step(torch.zeros(2), torch.zeros(3, 3), 2)


def test_beam_step_loop_is_beam_search_without_eos(model, prompts):
    """Without an end-of-text token, repeated beam_step reproduces beam_search's best beam."""
    steps, width = 5, 3
    out = beam_search(model, prompts[:1], steps, width, length_penalty=0.0)
    seqs, scores = prompts[:1], torch.zeros(1)
    with torch.no_grad():
        for _ in range(steps):
            logp = model(seqs)[0][:, -1].float().log_softmax(-1)
            scores, parents, tokens = beam_step(scores, logp, min(width, logp.numel()))
            seqs = torch.cat([seqs[parents], tokens[:, None]], 1)
    assert torch.equal(seqs[0], out.sequences[0])
    assert float(scores[0]) == pytest.approx(float(out.scores[0]), abs=1e-4)


def test_length_penalized_score():
    assert length_penalized_score(-6.0, 4, 1.0) == -1.5
    assert length_penalized_score(-6.0, 4, 0.0) == -6.0
    t = length_penalized_score(torch.tensor([-6.0, -2.0]), torch.tensor([4, 1]), 0.5)
    assert t.tolist() == pytest.approx([-3.0, -2.0])
    with pytest.raises(ValueError, match="length"):
        length_penalized_score(-1.0, 0, 0.6)


def test_distinct_n():
    assert distinct_n([[1, 2, 3, 4]], 2) == 1.0
    assert distinct_n(torch.tensor([[5, 5, 5, 5, 5]]), 1) == 0.2
    assert distinct_n([[1, 2], [2, 1], [7]], 2) == 1.0  # no n-gram crosses rows
    with pytest.raises(ValueError, match="no sequence"):
        distinct_n([[1], [2]], 2)
