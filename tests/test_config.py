"""Tests for minigpt.config: GPT-3 presets, validation, and the parameter counter.

The counter is checked against ``torch.nn``: a reference GPT is assembled from ``nn.Linear``,
``nn.Embedding``, ``nn.LayerNorm`` and ``nn.RMSNorm`` on PyTorch's ``meta`` device (shapes
without storage, so even the 175B model costs no memory), and its ``parameters()`` are counted
(shared, tied tensors once). The GPT-3 sizes are also checked against the paper's Table D.1.
"""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigpt.config import (
    GPT3_CONFIGS,
    GPT3_TABLE,
    TINY_CONFIGS,
    GPTConfig,
    count_parameters,
    get_config,
    gpt3_config,
    gpt3_row,
    parameter_breakdown,
)


def reference_model(cfg: GPTConfig) -> nn.Module:
    """A GPT with ``cfg``'s shapes, built from torch.nn layers on the meta device."""

    def norm() -> nn.Module:
        if cfg.norm == "rmsnorm":
            return nn.RMSNorm(cfg.d_model)
        return nn.LayerNorm(cfg.d_model, bias=cfg.bias)

    def block() -> nn.Module:
        d, q, kv = cfg.d_model, cfg.d_attn, cfg.n_kv_heads * cfg.d_head
        attention = nn.ModuleList(
            [nn.Linear(d, q, bias=cfg.bias), nn.Linear(d, kv, bias=cfg.bias),
             nn.Linear(d, kv, bias=cfg.bias), nn.Linear(q, d, bias=cfg.bias)]
        )
        if cfg.mlp == "swiglu":
            mlp = nn.ModuleList([nn.Linear(d, cfg.d_ff, bias=cfg.bias),
                                 nn.Linear(d, cfg.d_ff, bias=cfg.bias),
                                 nn.Linear(cfg.d_ff, d, bias=cfg.bias)])
        else:
            mlp = nn.Sequential(nn.Linear(d, cfg.d_ff, bias=cfg.bias), nn.GELU(),
                                nn.Linear(cfg.d_ff, d, bias=cfg.bias))
        return nn.ModuleList([norm(), attention, norm(), mlp])

    with torch.device("meta"):
        model = nn.ModuleDict({
            "wte": nn.Embedding(cfg.vocab_size, cfg.d_model),
            "blocks": nn.ModuleList(block() for _ in range(cfg.n_layer)),
            "ln_f": norm(),
            "lm_head": nn.Linear(cfg.d_model, cfg.vocab_size, bias=False),
        })
        if cfg.positions == "learned":
            model["wpe"] = nn.Embedding(cfg.n_ctx, cfg.d_model)
    if cfg.tie_embeddings:
        model["lm_head"].weight = model["wte"].weight
    return model


def torch_count(cfg: GPTConfig) -> int:
    return sum(p.numel() for p in reference_model(cfg).parameters())  # shared tensors once


# -- the eight GPT-3 sizes -------------------------------------------------------------------

# Table D.1 parameter counts (millions); our counts must round to them.
TABLE_D1_MILLIONS = {"small": 125, "medium": 356, "large": 760, "xl": 1320, "2.7B": 2650,
                     "6.7B": 6660, "13B": 12850, "175B": 174600}


@pytest.mark.parametrize("name", list(GPT3_CONFIGS))
def test_gpt3_sizes_match_table_d1(name):
    n = count_parameters(GPT3_CONFIGS[name])
    assert abs(n / 1e6 - TABLE_D1_MILLIONS[name]) / TABLE_D1_MILLIONS[name] < 0.005
    assert GPT3_TABLE[name].params_d1 == TABLE_D1_MILLIONS[name]


@pytest.mark.parametrize("name", list(GPT3_CONFIGS))
def test_gpt3_sizes_match_torch_nn(name):
    assert count_parameters(GPT3_CONFIGS[name]) == torch_count(GPT3_CONFIGS[name])


def test_gpt3_closed_form_and_known_values():
    for cfg in GPT3_CONFIGS.values():
        L, d, V, n = cfg.n_layer, cfg.d_model, cfg.vocab_size, cfg.n_ctx
        assert count_parameters(cfg) == L * (12 * d * d + 13 * d) + V * d + n * d + 2 * d
    # Totals computed in the fact sheet (millions, one decimal).
    computed = {"small": 125.2, "medium": 355.9, "large": 760.3, "xl": 1315.7, "2.7B": 2651.6,
                "6.7B": 6658.4, "13B": 12853.4, "175B": 174604.3}
    non_embedding = {"small": 85.1, "medium": 302.3, "large": 680.0, "xl": 1208.6,
                     "2.7B": 2517.6, "6.7B": 6444.2, "13B": 12585.6, "175B": 173961.5}
    for name, cfg in GPT3_CONFIGS.items():
        assert abs(count_parameters(cfg) / 1e6 - computed[name]) <= 0.06
        assert abs(count_parameters(cfg, non_embedding=True) / 1e6 - non_embedding[name]) <= 0.06


def test_gpt3_table_2_1_rows():
    expected = {  # layers, d_model, heads, d_head, batch (tokens), learning rate
        "small": (12, 768, 12, 64, 0.5e6, 6.0e-4), "medium": (24, 1024, 16, 64, 0.5e6, 3.0e-4),
        "large": (24, 1536, 16, 96, 0.5e6, 2.5e-4), "xl": (24, 2048, 16, 128, 1e6, 2.0e-4),
        "2.7B": (32, 2560, 32, 80, 1e6, 1.6e-4), "6.7B": (32, 4096, 32, 128, 2e6, 1.2e-4),
        "13B": (40, 5120, 40, 128, 2e6, 1.0e-4), "175B": (96, 12288, 96, 128, 3.2e6, 0.6e-4),
    }
    for name, (layers, d, heads, d_head, batch, lr) in expected.items():
        row, cfg = GPT3_TABLE[name], GPT3_CONFIGS[name]
        assert (cfg.n_layer, cfg.d_model, cfg.n_heads, cfg.d_head) == (layers, d, heads, d_head)
        assert (row.batch_tokens, row.learning_rate) == (batch, lr)
        assert cfg.n_ctx == 2048 and cfg.vocab_size == 50257 and cfg.d_ff == 4 * d
        assert cfg.d_attn == cfg.d_model  # the choices below make every row consistent
        assert abs(row.batch_sequences * 2048 - batch) / batch < 0.05


def test_table_inconsistencies_are_recorded_and_the_alternatives_do_not_match_d1():
    assert GPT3_TABLE["13B"].printed == {"d_model": 5140}
    assert GPT3_TABLE["xl"].printed == {"n_heads": 24}
    xl24 = gpt3_config("xl", n_heads=24)  # d_head stays 128: attention width 3072
    assert xl24.d_attn == 3072 and round(count_parameters(xl24) / 1e6, 1) == 1517.1
    assert count_parameters(xl24) == torch_count(xl24)
    # d_model = 5140 as printed: 12,936M with 40 x 128 attention, 12,953M if it were 5140 wide
    assert round(count_parameters(gpt3_config("13B", d_model=5140)) / 1e6) == 12936
    wide13 = gpt3_config("13B", d_model=5140, n_heads=4, d_head=1285)
    assert round(count_parameters(wide13) / 1e6) == 12953


def test_gpt3_names_and_aliases():
    for alias, key in [("Small", "small"), ("125M", "small"), ("GPT-3 XL", "xl"), ("1.3B", "xl"),
                       ("gpt3-175b", "175B"), ("13.0B", "13B"), ("GPT-3", "175B")]:
        assert gpt3_row(alias) is GPT3_TABLE[key]
        assert gpt3_config(alias) == GPT3_CONFIGS[key]
    assert gpt3_config("175B", dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match="unknown GPT-3 model 'huge'.*small"):
        gpt3_config("huge")


# -- tiny presets ---------------------------------------------------------------------------


def test_tiny_presets_are_small():
    assert 100_000 <= count_parameters(TINY_CONFIGS["tiny"]) <= 1_000_000
    assert count_parameters(TINY_CONFIGS["mini"]) < 2_000_000
    for cfg in TINY_CONFIGS.values():
        assert count_parameters(cfg) == torch_count(cfg)
    assert get_config("TINY") == TINY_CONFIGS["tiny"]
    assert get_config("175B") == GPT3_CONFIGS["175B"]
    with pytest.raises(ValueError, match="unknown configuration 'nano'.*tiny.*175B"):
        get_config("nano")


# -- generalized layouts --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n_layer=st.integers(1, 3),
    n_kv_heads=st.sampled_from([1, 2, 4]),
    d_head=st.sampled_from([4, 6, 8]),
    d_model=st.sampled_from([8, 12, 24]),
    d_ff=st.sampled_from([None, 20]),
    bias=st.booleans(),
    tie=st.booleans(),
    norm=st.sampled_from(["layernorm", "rmsnorm"]),
    mlp=st.sampled_from(["gelu", "swiglu"]),
    positions=st.sampled_from(["learned", "rope"]),
)
def test_count_matches_torch_nn_for_every_switch(
    n_layer, n_kv_heads, d_head, d_model, d_ff, bias, tie, norm, mlp, positions
):
    cfg = GPTConfig(n_layer=n_layer, d_model=d_model, n_heads=4, d_head=d_head, vocab_size=37,
                    n_ctx=16, d_ff=d_ff, bias=bias, tie_embeddings=tie, norm=norm, mlp=mlp,
                    positions=positions, n_kv_heads=n_kv_heads)
    assert count_parameters(cfg) == torch_count(cfg)
    parts = parameter_breakdown(cfg)
    assert sum(parts.values()) == count_parameters(cfg)
    embeddings = parts["token_embedding"] + parts["position_embedding"] + parts["output"]
    assert count_parameters(cfg, non_embedding=True) == count_parameters(cfg) - embeddings


def test_switches_change_the_count_as_expected():
    base = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=100, n_ctx=32)
    d, L = 64, 2
    assert count_parameters(base.replace(positions="rope")) == count_parameters(base) - 32 * d
    assert count_parameters(base.replace(tie_embeddings=False)) == count_parameters(base) + 100 * d
    # multi-query attention: K and V shrink from d x d to d x d_head (plus biases)
    mqa = base.replace(n_kv_heads=1)
    assert count_parameters(base) - count_parameters(mqa) == L * 2 * (d * d + d - d * 16 - 16)
    # RMSNorm drops the shift of each of the 2L + 1 norms
    assert count_parameters(base) - count_parameters(base.replace(norm="rmsnorm")) == 5 * d


# -- the dataclass --------------------------------------------------------------------------


def test_defaults_and_derived_fields():
    cfg = GPTConfig()
    assert (cfg.vocab_size, cfg.n_ctx) == (50257, 2048)
    assert (cfg.d_head, cfg.d_ff, cfg.n_kv_heads, cfg.d_attn) == (64, 3072, 12, 768)
    assert cfg.bias and cfg.tie_embeddings and cfg == GPT3_CONFIGS["small"]
    assert GPTConfig(**dataclasses.asdict(cfg)) == cfg


def test_replace_rederives_only_implicit_fields():
    cfg = GPTConfig(n_layer=2, d_model=64, n_heads=4, d_ff=100)
    wider = cfg.replace(d_model=128)
    assert (wider.d_head, wider.d_ff, wider.n_kv_heads) == (32, 100, 4)
    assert cfg.replace(n_heads=8, n_kv_heads=2).n_kv_heads == 2
    with pytest.raises(ValueError, match="unknown GPTConfig field"):
        cfg.replace(n_embd=3)


def test_layer_attention_pattern():
    cfg = GPTConfig(n_layer=3, d_model=16, n_heads=2)
    assert [cfg.layer_attention(i) for i in range(3)] == ["dense"] * 3
    with pytest.raises(ValueError, match="layer must be in 0..2"):
        cfg.layer_attention(3)


def test_pickle_and_type_errors():
    cfg = get_config("tiny")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(cfg)).replace(d_model=128).d_head == 32
    with pytest.raises(ValueError, match="config must be a GPTConfig"):
        count_parameters("small")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_heads=5), r"d_model \(64\) is not divisible by n_heads \(5\); pass d_head"),
        (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
        (dict(d_model=64.0), "d_model must be a positive integer"),
        (dict(n_kv_heads=3), r"n_kv_heads \(3\) must divide n_heads \(4\)"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(norm="batchnorm"), "norm must be one of 'layernorm', 'rmsnorm', got 'batchnorm'"),
        (dict(mlp="relu"), "mlp must be one of 'gelu', 'swiglu'"),
        (dict(positions="sinusoidal"), "positions must be one of 'learned', 'rope'"),
        (dict(attention_pattern="sparse"), "attention_pattern must be one of 'dense'"),
        (dict(attention_backend="xformers"), "attention_backend must be one of 'naive'"),
        (dict(local_window=0), "local_window must be a positive integer"),
        (dict(d_head=7, positions="rope"), "d_head must be even, got 7"),
        (dict(bias=1), "bias must be True or False"),
        (dict(d_ff=0), "d_ff must be a positive integer"),
        (dict(norm_eps=0.0), "norm_eps must be > 0"),
    ],
)
def test_validation_errors(kwargs, message):
    base = dict(n_layer=2, d_model=64, n_heads=4)
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**base, **kwargs})
