"""After GPT-3: the LLaMA-style block as a handful of :class:`~minigpt.config.GPTConfig` switches.

GPT-3's block is GPT-2's: LayerNorm with a shift, biases on every linear layer, a GELU MLP of
width ``4d``, learned absolute positions. The open models that followed it (PaLM, then LLaMA,
Touvron et al. 2023) kept the decoder-only transformer and changed four parts of it:

* **RMSNorm** instead of LayerNorm (``norm="rmsnorm"``): rescale by the root mean square, no
  mean subtracted, no shift;
* **SwiGLU** instead of GELU (``mlp="swiglu"``): ``W2(silu(W1 x) * W3 x)``, three matrices
  instead of two, so LLaMA shrinks the hidden width from ``4d`` to ``2/3 x 4d`` to keep the
  parameter count (:func:`llama_d_ff`);
* **rotary positions** (RoPE) instead of a learned table (``positions="rope"``);
* **no bias vectors** (``bias=False``, PaLM's choice, which LLaMA kept).

A fifth change that came with them, **multi-query attention** (one key/value head shared by all
query heads, ``n_kv_heads=1``; grouped-query attention in between) saves memory at decoding
time rather than improving the loss; LLaMA 1 did not use it, LLaMA 2's 34B and 70B models
used grouped-query attention. :data:`CHANGES` names each change alone, for the ablation of
``experiments/after_gpt3.py``; :func:`llama_style` applies the four LLaMA changes at once.

The model code is the same for every variant (:class:`minigpt.model.GPT`); the names of its
modules are GPT-2's, and :func:`to_hf_llama_state_dict` renames them to Hugging Face's
``LlamaForCausalLM`` keys (``tests/test_variants.py`` shows the logits agree)::

    >>> from minigpt.config import count_parameters
    >>> gpt3 = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=80, n_ctx=64)
    >>> llama = llama_style(gpt3, match_parameters=True)
    >>> llama.norm, llama.mlp, llama.positions, llama.bias, llama.d_ff
    ('rmsnorm', 'swiglu', 'rope', False, 184)
    >>> count_parameters(gpt3), count_parameters(llama)
    (109312, 108864)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from minigpt.activations import matched_hidden_size
from minigpt.checks import check_int
from minigpt.config import GPTConfig, count_parameters

__all__ = [
    "CHANGES",
    "ablation_configs",
    "hf_llama_config",
    "llama_d_ff",
    "llama_style",
    "matched_d_ff",
    "single_change",
    "to_hf_llama_state_dict",
]

#: Each post-GPT-3 change alone, as the :class:`GPTConfig` fields it sets. ``"swiglu"`` also
#: gets a hidden width chosen by :func:`single_change` (SwiGLU has three matrices, not two).
CHANGES: dict[str, dict[str, Any]] = {
    "rmsnorm": {"norm": "rmsnorm"},
    "swiglu": {"mlp": "swiglu"},
    "rope": {"positions": "rope"},
    "no_bias": {"bias": False},
    "multi_query": {"n_kv_heads": 1},
}

#: The four changes that make up the LLaMA-style block (multi-query attention is not one).
_LLAMA_FIELDS = {"norm": "rmsnorm", "mlp": "swiglu", "positions": "rope", "bias": False}


def _check_config(config: Any) -> None:
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig (e.g. get_config('tiny')), "
                         f"got {type(config).__name__}")


def llama_d_ff(d_model: int, multiple_of: int = 8) -> int:
    """LLaMA's SwiGLU hidden width: ``int(2/3 x 4 d_model)``, rounded up to ``multiple_of``.

    Three ``d x f`` matrices at ``f = 8d/3`` hold as many weights as GPT-3's two at ``f = 4d``.
    LLaMA's code rounds up to a multiple of 256, which gives the 11008 of LLaMA 7B
    (``d = 4096``); tiny models here use 8. The rule itself is chapter 4's
    :func:`~minigpt.activations.matched_hidden_size` for a gated MLP.

    Raises ``ValueError`` if ``d_model`` or ``multiple_of`` is not a positive int.

    >>> llama_d_ff(4096, multiple_of=256), llama_d_ff(64), llama_d_ff(32)
    (11008, 176, 88)
    """
    check_int("d_model", d_model)
    check_int("multiple_of", multiple_of)
    return matched_hidden_size(d_model, gated=True, multiple_of=multiple_of)


def matched_d_ff(config: GPTConfig, target: int, multiple_of: int = 8) -> int:
    """The hidden width (a multiple of ``multiple_of``) that brings ``config`` closest to
    ``target`` parameters; the smaller width on a tie.

    The parameter count is linear in ``d_ff``, so this is one division and a rounding.

    >>> gpt3 = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=80, n_ctx=64)
    >>> matched_d_ff(gpt3.replace(mlp="swiglu"), count_parameters(gpt3))
    168
    """
    _check_config(config)
    check_int("multiple_of", multiple_of)
    base = count_parameters(config.replace(d_ff=multiple_of))
    step = count_parameters(config.replace(d_ff=2 * multiple_of)) - base  # per multiple_of
    k = max(1, round((target - base) / step - 1e-9) + 1)
    return k * multiple_of


def llama_style(
    config: GPTConfig, *, multiple_of: int = 8, match_parameters: bool = False
) -> GPTConfig:
    """The LLaMA-style version of a GPT-3 ``config``: RMSNorm, SwiGLU, RoPE, no biases.

    Depth, width, heads, context, vocabulary, ``n_kv_heads`` and ``tie_embeddings`` are kept
    (LLaMA unties its output layer; that is a separate switch, which adds ``V d`` parameters).
    The SwiGLU width is :func:`llama_d_ff` (LLaMA's ``2/3 x 4d`` rule), or with
    ``match_parameters=True`` the width that makes the parameter count closest to the GPT-3
    model's (:func:`matched_d_ff`): dropping the position table and the biases frees
    parameters, which this gives back to the MLP.

    >>> gpt3 = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=97, n_ctx=24)
    >>> cfg = llama_style(gpt3)
    >>> (cfg.norm, cfg.mlp, cfg.d_ff, cfg.positions, cfg.bias, cfg.n_kv_heads)
    ('rmsnorm', 'swiglu', 88, 'rope', False, 4)
    """
    _check_config(config)
    if not isinstance(match_parameters, bool):
        raise ValueError(f"match_parameters must be True or False, got {match_parameters!r}")
    llama = config.replace(**_LLAMA_FIELDS, d_ff=llama_d_ff(config.d_model, multiple_of))
    if match_parameters:
        llama = llama.replace(d_ff=matched_d_ff(llama, count_parameters(config), multiple_of))
    return llama


def single_change(config: GPTConfig, name: str, multiple_of: int = 8) -> GPTConfig:
    """``config`` with one change of :data:`CHANGES` applied, everything else as it was.

    ``"swiglu"`` alone keeps GPT-3's biases and positions; its hidden width is the one that
    keeps the parameter count of ``config`` (:func:`matched_d_ff`), as LLaMA's 2/3 rule
    intends. The other changes remove parameters (the position table, the biases, key and
    value heads) and are not compensated: compare their counts with the baseline's.

    >>> gpt3 = GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=80, n_ctx=64)
    >>> single_change(gpt3, "multi_query").n_kv_heads, single_change(gpt3, "swiglu").d_ff
    (1, 168)
    >>> single_change(gpt3, "alibi")
    Traceback (most recent call last):
    ...
    ValueError: unknown change 'alibi'; allowed: 'rmsnorm', 'swiglu', 'rope', 'no_bias', \
'multi_query'
    """
    _check_config(config)
    if name not in CHANGES:
        raise ValueError(f"unknown change {name!r}; allowed: {', '.join(map(repr, CHANGES))}")
    changed = config.replace(**CHANGES[name])
    if name == "swiglu":
        changed = changed.replace(d_ff=matched_d_ff(changed, count_parameters(config),
                                                    multiple_of))
    return changed


def ablation_configs(config: GPTConfig, multiple_of: int = 8) -> dict[str, GPTConfig]:
    """``{"gpt3": config, <each change alone>..., "llama": all four at equal count}``.

    >>> list(ablation_configs(GPTConfig(n_layer=1, d_model=32, n_heads=2, vocab_size=50,
    ...                                 n_ctx=16)))
    ['gpt3', 'rmsnorm', 'swiglu', 'rope', 'no_bias', 'multi_query', 'llama']
    """
    configs = {"gpt3": config}
    configs.update({name: single_change(config, name, multiple_of) for name in CHANGES})
    configs["llama"] = llama_style(config, multiple_of=multiple_of, match_parameters=True)
    return configs


# --------------------------------------------------------------------------------------------
# Hugging Face's LLaMA


def _check_llama_layout(config: GPTConfig) -> None:
    wrong = {name: getattr(config, name) for name, want in _LLAMA_FIELDS.items()
             if getattr(config, name) != want}
    if config.attention_pattern != "dense":
        wrong["attention_pattern"] = config.attention_pattern
    if wrong:
        raise ValueError(f"LlamaForCausalLM's layout needs norm='rmsnorm', mlp='swiglu', "
                         f"positions='rope', bias=False and dense attention; this config has "
                         f"{wrong} (use llama_style(config))")


def hf_llama_config(config: GPTConfig, **overrides: Any):
    """The ``transformers.LlamaConfig`` of the same shape (needs ``transformers``).

    RoPE base 10000 (minigpt's), the same RMSNorm epsilon, ``head_dim = d_head``. ``overrides``
    are passed on (e.g. ``attn_implementation="eager"``).
    """
    _check_config(config)
    _check_llama_layout(config)
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model,
        intermediate_size=config.d_ff, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
        head_dim=config.d_head, max_position_embeddings=config.n_ctx,
        rms_norm_eps=config.norm_eps, attention_bias=False, mlp_bias=False,
        tie_word_embeddings=config.tie_embeddings, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


_BLOCK_NAMES = {
    "ln_1.weight": "input_layernorm.weight",
    "ln_2.weight": "post_attention_layernorm.weight",
    "attn.c_proj.weight": "self_attn.o_proj.weight",
    "mlp.c_gate.weight": "mlp.gate_proj.weight",  # silu(gate) * up
    "mlp.c_fc.weight": "mlp.up_proj.weight",
    "mlp.c_proj.weight": "mlp.down_proj.weight",
}


def to_hf_llama_state_dict(
    state_dict: Mapping[str, Tensor], config: GPTConfig
) -> dict[str, Tensor]:
    """A LLaMA-style minigpt :class:`~minigpt.model.GPT` state dict as ``LlamaForCausalLM`` keys.

    Both store ``nn.Linear`` weights as ``(out, in)``, so this is renaming plus one split: the
    fused ``attn.c_attn`` ``(H dh + 2 Hkv dh, d)`` becomes ``q_proj``, ``k_proj``, ``v_proj``.
    Both rotate feature ``i`` with feature ``i + d_head/2`` ("rotate half"), so no permutation
    of the query and key rows is needed.
    """
    _check_config(config)
    _check_llama_layout(config)
    q, kv = config.d_attn, config.n_kv_heads * config.d_head
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "transformer.wte.weight":
            out["model.embed_tokens.weight"] = value
        elif key == "transformer.ln_f.weight":
            out["model.norm.weight"] = value
        elif key == "lm_head.weight":
            out["lm_head.weight"] = value
        elif key.startswith("transformer.h."):
            layer, _, rest = key.removeprefix("transformer.h.").partition(".")
            prefix = f"model.layers.{layer}."
            if rest == "attn.c_attn.weight":
                wq, wk, wv = value.split([q, kv, kv], dim=0)
                out[prefix + "self_attn.q_proj.weight"] = wq
                out[prefix + "self_attn.k_proj.weight"] = wk
                out[prefix + "self_attn.v_proj.weight"] = wv
            elif rest in _BLOCK_NAMES:
                out[prefix + _BLOCK_NAMES[rest]] = value
            else:
                raise ValueError(f"key {key!r} has no LlamaForCausalLM counterpart")
        else:
            raise ValueError(f"unexpected key {key!r}: not a LLaMA-style minigpt state dict")
    return out
