"""minigpt.model against Hugging Face's GPT-2 (random weights, nothing downloaded), plus the
parameter counter, the KV cache, the switches and the error messages."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import needs_transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.config import GPT3_CONFIGS, TINY_CONFIGS, GPTConfig, count_parameters
from minigpt.model import (
    GPT,
    INIT_STD,
    configure_optimizer,
    from_hf_gpt2_state_dict,
    hf_gpt2_config,
    to_hf_gpt2_state_dict,
)

try:
    import transformers
except ImportError:  # the parity tests need it; the rest does not
    transformers = None


SMALL = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=97, n_ctx=24)
LLAMA = GPTConfig(n_layer=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=97, n_ctx=24,
                  norm="rmsnorm", mlp="swiglu", d_ff=88, positions="rope", bias=False,
                  tie_embeddings=False)


def _hf_model(config: GPTConfig, **overrides):
    cfg = hf_gpt2_config(config, attn_implementation="eager", **overrides)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _ids(config: GPTConfig, batch: int = 3, t: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, t or config.n_ctx), generator=g)


# ---------------------------------------------------------------------------------------------
# Parity with transformers.GPT2LMHeadModel


@needs_transformers
@pytest.mark.parametrize("tied", [True, False])
def test_minigpt_to_hf_same_logits_and_loss(tied):
    config = SMALL.replace(tie_embeddings=tied)
    torch.manual_seed(0)
    model = GPT(config).eval()
    hf = _hf_model(config)
    hf.load_state_dict(to_hf_gpt2_state_dict(model.state_dict(), config), strict=True)
    idx = _ids(config)
    # HF shifts the labels itself: position t predicts idx[t + 1], the last one nothing.
    targets = torch.cat([idx[:, 1:], torch.full_like(idx[:, :1], -100)], dim=1)
    with torch.no_grad():
        logits, loss = model(idx, targets)
        out = hf(idx, labels=idx)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=0)


@needs_transformers
@pytest.mark.parametrize("tied", [True, False])
def test_hf_to_minigpt_same_logits(tied):
    config = SMALL.replace(tie_embeddings=tied)
    torch.manual_seed(1)
    hf = _hf_model(config)
    model = GPT(config).eval()
    model.load_state_dict(from_hf_gpt2_state_dict(hf.state_dict()), strict=True)
    assert (model.lm_head.weight is model.transformer.wte.weight) == tied
    idx = _ids(config, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


@needs_transformers
def test_gradients_match_hf():
    torch.manual_seed(2)
    model = GPT(SMALL)
    hf = _hf_model(SMALL)
    hf.load_state_dict(to_hf_gpt2_state_dict(model.state_dict()))
    idx = _ids(SMALL, seed=2)
    targets = torch.cat([idx[:, 1:], torch.full_like(idx[:, :1], -100)], dim=1)
    model(idx, targets)[1].backward()
    hf(idx, labels=idx).loss.backward()
    ours = to_hf_gpt2_state_dict({n: p.grad for n, p in model.named_parameters()})
    for name, p in hf.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_conversion_round_trip_is_identity():
    sd = GPT(SMALL).state_dict()
    back = from_hf_gpt2_state_dict(to_hf_gpt2_state_dict(sd))
    assert back.keys() == sd.keys()
    for key, value in sd.items():
        assert torch.equal(back[key], value), key


@needs_transformers
def test_hf_past_key_values_match_kv_cache():
    torch.manual_seed(3)
    model = GPT(SMALL).eval()
    hf = _hf_model(SMALL)
    hf.load_state_dict(to_hf_gpt2_state_dict(model.state_dict()))
    idx = _ids(SMALL, batch=2, t=10, seed=3)
    caches = model.make_caches()
    with torch.no_grad():
        model(idx[:, :6], caches=caches)
        ours = model(idx[:, 6:], caches=caches)[0]
        past = hf(idx[:, :6], use_cache=True).past_key_values
        theirs = hf(idx[:, 6:], past_key_values=past).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@needs_transformers
def test_non_gpt2_layout_refuses_conversion():
    with pytest.raises(ValueError, match="GPT-2's layout"):
        hf_gpt2_config(LLAMA)
    with pytest.raises(ValueError, match="GPT-2's layout"):
        to_hf_gpt2_state_dict(GPT(LLAMA).state_dict(), LLAMA)


# ---------------------------------------------------------------------------------------------
# KV cache


@pytest.mark.parametrize(
    "config",
    [
        SMALL,
        LLAMA,
        SMALL.replace(attention_pattern="alternating", local_window=4, n_kv_heads=1),
        LLAMA.replace(attention_backend="naive", attention_pattern="alternating", local_window=5),
    ],
    ids=["gpt2", "llama", "banded-mqa", "llama-banded-naive"],
)
def test_kv_cache_equals_full_recomputation(config):
    torch.manual_seed(4)
    model = GPT(config).eval()
    idx = _ids(config, batch=2, t=config.n_ctx, seed=4)
    with torch.no_grad():
        full = model(idx)[0]
        caches = model.make_caches()
        steps = [model(idx[:, :7], caches=caches)[0]]
        steps += [model(idx[:, t : t + 1], caches=caches)[0] for t in range(7, config.n_ctx)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert all(len(c) == config.n_ctx for c in caches)


def test_kv_cache_overflow_is_a_clear_error():
    model = GPT(SMALL).eval()
    caches = model.make_caches()
    model(_ids(SMALL, batch=1, t=20), caches=caches)
    with pytest.raises(ValueError, match=r"sequence length 25 exceeds the model's context of 24 "
                                         r"\(20 cached \+ 5 new tokens\)"):
        model(_ids(SMALL, batch=1, t=5), caches=caches)
    with pytest.raises(ValueError, match="one KVCache per layer"):
        model(_ids(SMALL, batch=1, t=2), caches=caches[:1])


# ---------------------------------------------------------------------------------------------
# Parameter counts


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_count_parameters_tiny_presets(name):
    model = GPT(TINY_CONFIGS[name])
    assert sum(p.numel() for p in model.parameters()) == count_parameters(TINY_CONFIGS[name])


@settings(max_examples=25, deadline=None)
@given(
    n_layer=st.integers(1, 3),
    n_kv_heads=st.sampled_from([1, 2, 4]),
    d_head=st.sampled_from([2, 4, 6]),
    d_model=st.integers(4, 24),
    d_ff=st.one_of(st.none(), st.integers(1, 40)),
    norm=st.sampled_from(["layernorm", "rmsnorm"]),
    mlp=st.sampled_from(["gelu", "swiglu"]),
    positions=st.sampled_from(["learned", "rope"]),
    bias=st.booleans(),
    tie=st.booleans(),
    pattern=st.sampled_from(["dense", "alternating"]),
)
def test_count_parameters_random_switches(
    n_layer, n_kv_heads, d_head, d_model, d_ff, norm, mlp, positions, bias, tie, pattern
):
    config = GPTConfig(
        n_layer=n_layer, d_model=d_model, n_heads=4, d_head=d_head, n_kv_heads=n_kv_heads,
        vocab_size=11, n_ctx=8, d_ff=d_ff, norm=norm, mlp=mlp, positions=positions, bias=bias,
        tie_embeddings=tie, attention_pattern=pattern, local_window=2,
    )
    model = GPT(config)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == count_parameters(config)
    assert model.num_parameters(non_embedding=True) == count_parameters(config, non_embedding=True)
    logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 3, 11)


@pytest.mark.parametrize(
    "name, paper",
    [("small", 125e6), ("medium", 356e6), ("large", 760e6), ("xl", 1320e6), ("2.7B", 2650e6),
     ("6.7B", 6660e6), ("13B", 12850e6), ("175B", 174600e6)],
)
def test_gpt3_sizes_on_meta_device(name, paper):
    """Table D.1's sizes (in millions), built without allocating: the meta device."""
    with torch.device("meta"):
        model = GPT(GPT3_CONFIGS[name])
    n = sum(p.numel() for p in model.parameters())
    assert n == count_parameters(GPT3_CONFIGS[name])
    assert abs(n - paper) / paper < 0.005


# ---------------------------------------------------------------------------------------------
# Architecture details


def test_gpt2_initialization():
    config = GPTConfig(n_layer=8, d_model=128, n_heads=4, vocab_size=64, n_ctx=16)
    torch.manual_seed(5)
    model = GPT(config)
    resid = INIT_STD / math.sqrt(2 * config.n_layer)
    block = model.transformer.h[0]
    assert block.attn.c_proj.weight.std().item() == pytest.approx(resid, rel=0.03)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(resid, rel=0.03)
    assert block.mlp.c_fc.weight.std().item() == pytest.approx(INIT_STD, rel=0.03)
    assert block.attn.c_attn.weight.std().item() == pytest.approx(INIT_STD, rel=0.03)
    assert torch.all(block.attn.c_attn.bias == 0) and torch.all(block.ln_1.weight == 1)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_untied_output_has_its_own_matrix():
    model = GPT(SMALL.replace(tie_embeddings=False))
    assert model.lm_head.weight is not model.transformer.wte.weight


def test_no_bias_switch_removes_every_bias():
    model = GPT(SMALL.replace(bias=False))
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]


def test_backends_agree():
    torch.manual_seed(6)
    model = GPT(SMALL).eval()
    idx = _ids(SMALL, seed=6)
    with torch.no_grad():
        reference = model(idx)[0]
        for backend in ("naive", "tiled"):
            for block in model.transformer.h:
                block.attn.backend = backend
            torch.testing.assert_close(model(idx)[0], reference, atol=1e-5, rtol=0)


def test_alternating_pattern_bands_odd_layers():
    model = GPT(SMALL.replace(attention_pattern="alternating", local_window=4))
    assert [b.attn.window for b in model.transformer.h] == [None, 4]
    dense = GPT(SMALL)
    dense.load_state_dict(model.state_dict())
    idx = _ids(SMALL, batch=1, seed=7)
    with torch.no_grad():
        a, b = model.eval()(idx)[0], dense.eval()(idx)[0]
    torch.testing.assert_close(a[:, :4], b[:, :4])  # within the band: the same
    assert not torch.allclose(a[:, 4:], b[:, 4:])  # beyond it: banded layers see less


def test_causality():
    model = GPT(LLAMA).eval()
    idx = _ids(LLAMA, batch=1, seed=8)
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % LLAMA.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0][:, :10], model(changed)[0][:, :10])


def test_dropout_only_in_training():
    model = GPT(SMALL.replace(dropout=0.2))
    idx = _ids(SMALL, seed=9)
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_configure_optimizer_decays_matrices_only():
    model = GPT(SMALL)
    opt = configure_optimizer(model, lr=1e-3)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert any(p is model.transformer.wte.weight for p in decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == count_parameters(SMALL)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


# ---------------------------------------------------------------------------------------------
# Errors


def test_too_long_input_names_the_limit():
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=256, n_ctx=64))
    with pytest.raises(ValueError, match="sequence length 70 exceeds the model's context of 64"):
        model(torch.zeros(1, 70, dtype=torch.long))


@pytest.mark.parametrize("bad", [300, -1])
def test_token_outside_vocabulary_names_the_range(bad):
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=256, n_ctx=64))
    idx = torch.zeros(1, 5, dtype=torch.long)
    idx[0, 2] = bad
    with pytest.raises(ValueError, match=rf"token id {bad} is outside the vocabulary \[0, 256\)"):
        model(idx)


def test_other_bad_inputs():
    model = GPT(SMALL)
    with pytest.raises(ValueError, match="integer tensor of token ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="GPT needs a GPTConfig"):
        GPT({"n_layer": 2})


def test_block_forward_is_the_blocks_forward_pass_unchanged():
    """Block.forward delegates to block_forward, which is the pre-LN formula, with a cache too."""
    from minigpt.model import block_forward

    for config in (SMALL, LLAMA):
        torch.manual_seed(0)
        model = GPT(config).eval()
        block = model.transformer.h[1]
        x = torch.randn(2, 7, config.d_model)
        want = x + block.attn(block.ln_1(x))
        want = want + block.mlp(block.ln_2(want))
        assert torch.equal(block(x), want)
        assert torch.equal(block_forward(block, x), want)
        caches = model.make_caches()
        first = block_forward(block, x[:, :5], caches[1])
        last = block_forward(block, x[:, 5:], caches[1])
        assert len(caches[1]) == 7
        torch.testing.assert_close(torch.cat([first, last], 1), want, atol=1e-5, rtol=1e-5)
