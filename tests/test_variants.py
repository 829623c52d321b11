"""minigpt.variants: the LLaMA-style config has the advertised parts, about the GPT-3 model's
parameter count, and computes what Hugging Face's LlamaForCausalLM computes with the same
weights (random, tiny, nothing downloaded). The GPT-3 layout's parity with GPT-2 is in
tests/test_model.py."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_transformers

from minigpt.config import GPTConfig, count_parameters
from minigpt.model import GPT
from minigpt.variants import (
    CHANGES,
    ablation_configs,
    hf_llama_config,
    llama_d_ff,
    llama_style,
    matched_d_ff,
    single_change,
    to_hf_llama_state_dict,
)

try:
    import transformers
except ImportError:  # only the parity tests need it
    transformers = None


GPT3 = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=80, n_ctx=64)


@pytest.mark.parametrize("d_model", [32, 64, 96, 768, 4096])
def test_llama_style_has_the_parts_and_about_the_same_count(d_model):
    gpt3 = GPTConfig(n_layer=2, d_model=d_model, n_heads=4, vocab_size=100, n_ctx=64)
    for match in (False, True):
        llama = llama_style(gpt3, match_parameters=match)
        assert (llama.norm, llama.mlp, llama.positions, llama.bias) == (
            "rmsnorm", "swiglu", "rope", False)
        for field in ("n_layer", "d_model", "n_heads", "n_kv_heads", "vocab_size", "n_ctx",
                      "tie_embeddings", "d_head"):
            assert getattr(llama, field) == getattr(gpt3, field), field
        gap = count_parameters(llama) - count_parameters(gpt3)
        if match:  # within half a step of d_ff (8 units: 3 L d 8 parameters)
            assert abs(gap) <= 3 * gpt3.n_layer * d_model * 8 / 2
            assert abs(gap) / count_parameters(gpt3) < 0.03
        else:  # the 2/3 rule alone: the position table and biases are gone (7 % at d = 32)
            assert abs(gap) / count_parameters(gpt3) < 0.1
        assert count_parameters(llama) == sum(p.numel() for p in GPT(llama).parameters()) \
            if d_model <= 96 else True


def test_llama_d_ff_rule():
    assert llama_d_ff(4096, multiple_of=256) == 11008  # LLaMA 7B
    assert llama_d_ff(5120, multiple_of=256) == 13824  # LLaMA 13B
    for d in range(8, 300, 8):
        f = llama_d_ff(d)
        assert f % 8 == 0 and 8 * d / 3 <= f + 1 < 8 * d / 3 + 9


def test_matched_d_ff_is_the_closest_width():
    swiglu = GPT3.replace(mlp="swiglu")
    target = count_parameters(GPT3)
    best = matched_d_ff(swiglu, target)
    gaps = {f: abs(count_parameters(swiglu.replace(d_ff=f)) - target) for f in range(8, 400, 8)}
    assert gaps[best] == min(gaps.values())


def test_each_change_alone_changes_one_thing():
    configs = ablation_configs(GPT3)
    assert list(configs) == ["gpt3", *CHANGES, "llama"]
    for name, fields in CHANGES.items():
        changed = configs[name]
        for field, value in fields.items():
            assert getattr(changed, field) == value
        differing = {f for f in ("norm", "mlp", "positions", "bias", "n_kv_heads", "d_ff")
                     if getattr(changed, f) != getattr(GPT3, f)}
        assert differing == set(fields) | ({"d_ff"} if name == "swiglu" else set()), name
    assert count_parameters(configs["rope"]) == count_parameters(GPT3) - 64 * 64
    assert count_parameters(configs["multi_query"]) < count_parameters(GPT3)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="must be a GPTConfig"):
        llama_style({"d_model": 64})
    with pytest.raises(ValueError, match="unknown change 'alibi'"):
        single_change(GPT3, "alibi")
    with pytest.raises(ValueError, match="multiple_of must be a positive integer"):
        llama_d_ff(64, multiple_of=0)
    with pytest.raises(ValueError, match="LlamaForCausalLM's layout"):
        to_hf_llama_state_dict(GPT(GPT3).state_dict(), GPT3)


@needs_transformers
@pytest.mark.parametrize("n_kv_heads,tied", [(4, True), (2, False), (1, True)])
def test_same_logits_and_loss_as_hf_llama(n_kv_heads, tied):
    config = llama_style(GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=97, n_ctx=24,
                                   n_kv_heads=n_kv_heads, tie_embeddings=tied))
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():  # norms start at 1: perturb every weight so that each one matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = transformers.LlamaForCausalLM(hf_llama_config(config, attn_implementation="eager"))
    hf.load_state_dict(to_hf_llama_state_dict(model.state_dict(), config), strict=True)
    hf.eval()
    idx = torch.randint(0, config.vocab_size, (3, config.n_ctx),
                        generator=torch.Generator().manual_seed(1))
    targets = torch.cat([idx[:, 1:], torch.full_like(idx[:, :1], -100)], dim=1)
    logits, loss = model(idx, targets)
    out = hf(input_ids=idx, labels=idx)
    torch.testing.assert_close(logits, out.logits, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(loss, out.loss, atol=2e-5, rtol=1e-5)
