"""The GPT-3 model: a decoder-only transformer, with switches for the ideas that came after it.

GPT-3 (Brown et al. 2020, section 2.1) "uses the same model and architecture as GPT-2":

* the input is the sum of a **token embedding** ``wte`` ``(V, d)`` and a **learned position
  embedding** ``wpe`` ``(n_ctx, d)``;
* ``n_layer`` **pre-LN blocks**, each ``x = x + attn(ln_1(x))`` then ``x = x + mlp(ln_2(x))``:
  causal multi-head self-attention, and a GELU MLP of width ``4 d``;
* a **final LayerNorm** ``ln_f`` after the last block;
* the **output layer** ``lm_head`` reuses the token embedding matrix (tied weights), so the logit
  of token ``v`` is the dot product of the final vector with ``wte[v]``;
* GPT-2's **modified initialization**: every weight from N(0, 0.02²), except the two matrices
  that write into the residual stream in each block (``attn.c_proj``, ``mlp.c_proj``), whose
  standard deviation is divided by ``sqrt(2 n_layer)``, so that the variance the ``2 n_layer``
  residual additions pile up stays the same whatever the depth;
* GPT-3's own change: **alternating dense and locally banded** attention layers
  (``attention_pattern="alternating"``, see :mod:`minigpt.attention.sparse`).

The module and parameter names are those of GPT-2 (``transformer.wte``, ``transformer.h.0.ln_1``,
``attn.c_attn``, ``mlp.c_fc``, ...), so :func:`to_hf_gpt2_state_dict` and
:func:`from_hf_gpt2_state_dict` are a table of transposes: GPT-2's ``Conv1D`` stores its weights
as ``(in, out)``, ``torch.nn.Linear`` as ``(out, in)``.

Every later variant is a :class:`~minigpt.config.GPTConfig` switch, not a code copy: RMSNorm,
SwiGLU, rotary positions, no biases (PaLM), an untied output layer, multi-query or grouped-query
attention. A LLaMA-style model is::

    >>> llama = GPTConfig(n_layer=2, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=256,
    ...                   n_ctx=64, norm="rmsnorm", mlp="swiglu", d_ff=172, positions="rope",
    ...                   bias=False, tie_embeddings=False)
    >>> model = GPT(llama)
    >>> sum(p.numel() for p in model.parameters()) == count_parameters(llama)
    True
    >>> logits, loss = model(torch.zeros(2, 8, dtype=torch.long))
    >>> logits.shape
    torch.Size([2, 8, 256])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.attention import KVCache, MultiHeadAttention
from minigpt.config import GPTConfig, count_parameters
from minigpt.layernorm import RMSNorm as _MiniRMSNorm

_NORM_TYPES = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None), _MiniRMSNorm) if t)

__all__ = [
    "GPT",
    "MLP",
    "Block",
    "INIT_STD",
    "block_forward",
    "configure_optimizer",
    "from_hf_gpt2_state_dict",
    "hf_gpt2_config",
    "make_norm",
    "optimizer_groups",
    "to_hf_gpt2_state_dict",
]

#: Standard deviation of GPT-2's initialization (``initializer_range`` in Hugging Face).
INIT_STD = 0.02


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalization layer ``config.norm`` asks for, over ``d_model`` features.

    ``"layernorm"``: :class:`torch.nn.LayerNorm` (a bias only if ``config.bias``);
    ``"rmsnorm"``: :class:`torch.nn.RMSNorm` (scale only). Both map ``(..., d) -> (..., d)``.
    The book's own :mod:`minigpt.layernorm` versions compute the same thing; the fused PyTorch
    kernels are used here because they are faster.
    """
    d, eps = config.d_model, config.norm_eps
    if config.norm == "layernorm":
        return nn.LayerNorm(d, eps=eps, bias=config.bias)
    if hasattr(nn, "RMSNorm"):  # torch >= 2.4
        return nn.RMSNorm(d, eps=eps)
    return _MiniRMSNorm(d, eps=eps)


class MLP(nn.Module):
    """The feed-forward sub-block, ``(B, T, d_model) -> (B, T, d_model)``.

    ``mlp="gelu"`` (GPT-2/3): ``c_proj(gelu(c_fc(x)))`` with the tanh approximation of GELU that
    GPT-2's code uses (Hugging Face's ``gelu_new``). ``mlp="swiglu"`` (PaLM, LLaMA):
    ``c_proj(silu(c_gate(x)) * c_fc(x))``. The hidden width is ``config.d_ff``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d, f, bias = config.d_model, config.d_ff, config.bias
        self.kind = config.mlp
        self.c_fc = nn.Linear(d, f, bias=bias)
        self.c_gate = nn.Linear(d, f, bias=bias) if config.mlp == "swiglu" else None
        self.c_proj = nn.Linear(f, d, bias=bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d_model) -> (B, T, d_model)``."""
        if self.c_gate is None:
            h = F.gelu(self.c_fc(x), approximate="tanh")  # (B, T, d_ff)
        else:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """One pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    ``layer`` (0-based) decides, through :meth:`GPTConfig.layer_attention`, whether the
    attention is dense or locally banded (band ``config.local_window``).
    """

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        local = config.layer_attention(layer) == "local"
        self.ln_1 = make_norm(config)
        self.attn = MultiHeadAttention(
            config.d_model,
            config.n_heads,
            config.n_kv_heads,
            bias=config.bias,
            dropout=config.dropout,
            backend=config.attention_backend,
            positions=config.positions,
            d_head=config.d_head,
            max_len=config.n_ctx,
            window=config.local_window if local else None,
        )
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """``(B, T, d_model) -> (B, T, d_model)``; ``cache`` is appended to in place.

        The computation is :func:`block_forward` (kept as a function: an exercise of chapter 7).
        """
        return block_forward(self, x, cache)


def block_forward(block: Block, x: Tensor, cache: KVCache | None = None) -> Tensor:
    """The forward pass of a pre-LN transformer block ``block``: ``(B, T, d_model)`` in and out.

    Two sub-layers, each reading the residual stream ``x`` through its own norm and adding its
    output back to it (a residual connection), in this order:

    1. ``x = x + block.attn(block.ln_1(x), cache=cache)``: causal multi-head attention of the
       normalized stream (``n_heads`` heads of width ``d_head``), ``(B, T, d_model)``;
    2. ``x = x + block.mlp(block.ln_2(x))``: the MLP (``d_model -> d_ff -> d_model``) of the
       stream *after* the attention's addition, normalized by the block's second norm.

    The norms are applied to what enters a sub-layer, never to the sum (that would be the
    original Transformer's post-LN layout), and the block returns the stream itself, not the
    sub-layers' outputs alone. ``cache`` (a :class:`~minigpt.attention.KVCache` or ``None``) is
    passed to ``block.attn`` unchanged; the attention appends this call's keys and values to it,
    which lets a decoder feed one new token at a time. The result does not depend on the batch:
    row ``b`` of the output is the block applied to row ``b`` of ``x``. Do not call ``block(x)``
    itself: :meth:`Block.forward` is this function.
    """
    x = x + block.attn(block.ln_1(x), cache=cache)  # (B, T, d_model)
    return x + block.mlp(block.ln_2(x))  # (B, T, d_model)


class GPT(nn.Module):
    """A decoder-only transformer language model described by a :class:`GPTConfig`.

    ``forward(idx, targets=None, caches=None) -> (logits, loss)``:

    * ``idx``: token ids ``(B, T)``, integers in ``[0, vocab_size)``;
    * ``targets``: optional ``(B, T)`` next-token ids; ``-100`` marks positions left out of the
      loss (PyTorch's and Hugging Face's ``ignore_index``);
    * ``caches``: optional list of one :class:`~minigpt.attention.KVCache` per layer (from
      :meth:`make_caches`); their common length is the position of ``idx[:, 0]``, and they are
      extended in place, so that decoding feeds one new token at a time;
    * ``logits``: ``(B, T, vocab_size)``; ``loss``: the mean cross-entropy (a 0-d tensor), or
      ``None`` without targets.

    >>> from minigpt.config import get_config
    >>> model = GPT(get_config("tiny"))
    >>> model(torch.zeros(1, 200, dtype=torch.long))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: sequence length 200 exceeds the model's context of 128; ...
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig (e.g. get_config('tiny')), "
                             f"got {type(config).__name__}")
        self.config = config
        modules = {"wte": nn.Embedding(config.vocab_size, config.d_model)}
        if config.positions == "learned":
            modules["wpe"] = nn.Embedding(config.n_ctx, config.d_model)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        modules["ln_f"] = make_norm(config)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix, two uses
        self.reset_parameters()

    # -- initialization -------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """GPT-2's initialization: weights and embeddings N(0, 0.02²), biases 0, norms 1;
        the residual projections ``attn.c_proj`` and ``mlp.c_proj`` N(0, (0.02 / sqrt(2 L))²)."""
        resid_std = INIT_STD / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                std = resid_std if name.endswith("c_proj") else INIT_STD
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, _NORM_TYPES):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    # -- the forward pass -----------------------------------------------------------------

    def make_caches(self, max_len: int | None = None) -> list[KVCache]:
        """One empty :class:`KVCache` per layer, bounded by ``max_len`` (default ``n_ctx``).

        Each cache allocates its buffers, ``(B, Hkv, max_len, d_head)``, at its first append
        and then only writes into them: a decoding step copies one token per layer.
        """
        max_len = self.config.n_ctx if max_len is None else max_len
        return [KVCache(max_len=max_len) for _ in range(self.config.n_layer)]

    def decode_step(self, idx: Tensor, caches: list[KVCache]) -> Tensor:
        """Inference only: the next-token logits ``(B, V)`` after ``idx (B, T)``, whose keys
        and values are appended to ``caches`` (one per layer, from :meth:`make_caches`).

        The same computation as ``forward(idx, caches=caches)[0][:, -1]``, for the decoding
        loops of :mod:`minigpt.generate` after their first call to :meth:`forward`: it skips
        the checks that cannot fail there (the ids are the model's own samples, the caches
        came from :meth:`make_caches`), which cost as much as a layer at a small width. Only
        the context length is still checked. Call it under :func:`torch.inference_mode`.
        """
        offset, t = len(caches[0]), idx.shape[1]
        if offset + t > self.config.n_ctx:
            self._check_input(idx, offset)  # raises the clear error
        x = self.transformer.wte(idx)  # (B, T, d)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe.weight[offset : offset + t]  # rows of wpe(pos)
        x = self.transformer.drop(x)
        for block, cache in zip(self.transformer.h, caches, strict=True):
            x = block(x, cache=cache)
        return self.lm_head(self.transformer.ln_f(x))[:, -1]  # (B, V)

    def _check_input(self, idx: Tensor, offset: int) -> None:
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype not in (
            torch.long, torch.int32, torch.int16, torch.uint8, torch.int8
        ):
            what = (f"a {idx.ndim}-D {idx.dtype} tensor of shape {tuple(idx.shape)}"
                    if isinstance(idx, Tensor) else type(idx).__name__)
            raise ValueError(f"idx must be an integer tensor of token ids of shape (B, T), "
                             f"got {what}")
        t, n_ctx = idx.shape[1], self.config.n_ctx
        if t == 0:
            raise ValueError("idx has no tokens (T = 0); give at least one token per sequence")
        if offset + t > n_ctx:
            cached = f" ({offset} cached + {t} new tokens)" if offset else ""
            raise ValueError(
                f"sequence length {offset + t} exceeds the model's context of {n_ctx}{cached}; "
                f"allowed: at most {n_ctx} tokens (crop the input to its last {n_ctx} tokens)"
            )
        if torch.compiler.is_compiling():
            return  # reading the ids back would break the compiled graph (checked when eager)
        lo, hi = (int(v) for v in torch.aminmax(idx.int()))
        vocab = self.config.vocab_size
        if lo < 0 or hi >= vocab:
            bad = hi if hi >= vocab else lo
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab})")

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``idx (B, T) -> (logits (B, T, V), loss or None)``; see the class docstring."""
        if caches is not None and len(caches) != self.config.n_layer:
            raise ValueError(f"caches must hold one KVCache per layer ({self.config.n_layer}), "
                             f"got {len(caches)}; use model.make_caches()")
        offset = len(caches[0]) if caches else 0
        self._check_input(idx, offset)
        idx = idx.long()
        t = idx.shape[1]
        x = self.transformer.wte(idx)  # (B, T, d)
        if "wpe" in self.transformer:
            pos = torch.arange(offset, offset + t, device=idx.device)
            x = x + self.transformer.wpe(pos)  # (T, d) broadcast over the batch
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache=None if caches is None else caches[i])
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != idx.shape:
                shape = tuple(targets.shape) if isinstance(targets, Tensor) else targets
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, "
                                 f"got {shape}")
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten().long(),
                                   ignore_index=-100)
        return logits, loss

    # -- bookkeeping ----------------------------------------------------------------------

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Trainable parameters (a tied matrix counted once); ``non_embedding`` leaves out the
        token and position tables and an untied output layer, as
        :func:`~minigpt.config.count_parameters`."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def expected_parameters(self) -> int:
        """:func:`~minigpt.config.count_parameters` of this model's config (no tensors)."""
        return count_parameters(self.config)


# ---------------------------------------------------------------------------------------------
# The optimizer


def optimizer_groups(
    model: nn.Module, weight_decay: float = 0.1
) -> list[dict[str, list[nn.Parameter] | float]]:
    """Two parameter groups: tensors with 2 or more dimensions get ``weight_decay``, the rest 0.

    The decayed set is every matrix: the attention and MLP weights **and the embeddings** (the
    token table, tied to the output layer, and the position table). Biases and the scales (and
    shifts) of LayerNorm/RMSNorm are not decayed: pulling a norm's scale towards 0 rescales
    the whole layer for no benefit. GPT-3's paper only says "weight decay of 0.1"; this split is
    nanoGPT's and Megatron-LM's (whose no-decay set is biases and norms).
    """
    decay, no_decay = [], []
    for p in model.parameters():  # a tied matrix appears once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def configure_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """GPT-3's optimizer: AdamW with ``β = (0.9, 0.95)``, ``ε = 1e-8``, weight decay 0.1 on
    matrices only (see :func:`optimizer_groups`).

    This is :class:`torch.optim.AdamW` (``foreach`` on CPU, ``fused`` on CUDA), which
    ``tests/test_optim.py`` shows equal to the written-out :class:`minigpt.optim.AdamW`.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    groups = optimizer_groups(model, weight_decay)
    device = next(model.parameters()).device
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **fused)


# ---------------------------------------------------------------------------------------------
# Conversion to and from Hugging Face's GPT-2

# Weights stored by GPT-2's Conv1D as (in, out), by nn.Linear as (out, in).
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _check_gpt2_layout(config: GPTConfig) -> None:
    wrong = {
        name: value
        for name, value, want in [
            ("norm", config.norm, "layernorm"), ("mlp", config.mlp, "gelu"),
            ("positions", config.positions, "learned"), ("bias", config.bias, True),
            ("n_kv_heads", config.n_kv_heads, config.n_heads),
            ("attention_pattern", config.attention_pattern, "dense"),
            ("d_attn", config.d_attn, config.d_model),
        ]
        if value != want
    }
    if wrong:
        raise ValueError(
            f"GPT-2's layout needs norm='layernorm', mlp='gelu', positions='learned', bias=True, "
            f"n_kv_heads == n_heads, attention_pattern='dense' and n_heads * d_head == d_model; "
            f"this config has {wrong}"
        )


def hf_gpt2_config(config: GPTConfig, **overrides):
    """The ``transformers.GPT2Config`` of the same shape (needs ``transformers`` installed).

    Dropouts are set to ``config.dropout``; ``overrides`` are passed on (e.g.
    ``attn_implementation="eager"``).
    """
    _check_gpt2_layout(config)
    from transformers import GPT2Config

    kwargs = dict(
        vocab_size=config.vocab_size, n_positions=config.n_ctx, n_embd=config.d_model,
        n_layer=config.n_layer, n_head=config.n_heads, n_inner=config.d_ff,
        activation_function="gelu_new", resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=config.norm_eps, initializer_range=INIT_STD,
        tie_word_embeddings=config.tie_embeddings,
        # GPT-2's <|endoftext|> is its last token; keep the ids inside a small vocabulary.
        bos_token_id=config.vocab_size - 1, eos_token_id=config.vocab_size - 1,
    )
    kwargs.update(overrides)
    return GPT2Config(**kwargs)


def _items(state_dict: Mapping[str, Tensor]) -> Iterator[tuple[str, Tensor]]:
    for key, value in state_dict.items():
        # Old transformers versions keep the causal mask as buffers attn.bias/attn.masked_bias.
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        yield key, value


def to_hf_gpt2_state_dict(
    state_dict: Mapping[str, Tensor], config: GPTConfig | None = None
) -> dict[str, Tensor]:
    """A minigpt :class:`GPT` state dict as Hugging Face ``GPT2LMHeadModel`` keys.

    The names are the same; the four projection weights of each block are transposed to
    Conv1D's ``(in, out)``. ``config`` (optional) is checked to be GPT-2's layout.
    """
    if config is not None:
        _check_gpt2_layout(config)
    out = {}
    for key, value in _items(state_dict):
        if not (key.startswith("transformer.") or key == "lm_head.weight"):
            raise ValueError(f"unexpected key {key!r}: not a minigpt GPT state dict")
        if "c_gate" in key or "rope" in key:
            raise ValueError(f"key {key!r} has no GPT-2 counterpart (SwiGLU/RoPE model)")
        out[key] = value.t().contiguous() if key.endswith(_CONV1D) else value
    return out


def from_hf_gpt2_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``GPT2LMHeadModel`` (or ``GPT2Model``) state dict as minigpt keys.

    Conv1D weights ``(in, out)`` are transposed to ``nn.Linear``'s ``(out, in)``; a
    ``GPT2Model`` (no ``transformer.`` prefix, no ``lm_head``) gets the prefix and a tied head.
    """
    out = {}
    for key, value in _items(state_dict):
        if key != "lm_head.weight" and not key.startswith("transformer."):
            key = "transformer." + key
        out[key] = value.t().contiguous() if key.endswith(_CONV1D) else value
    if "lm_head.weight" not in out and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out
