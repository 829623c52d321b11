"""Model configurations: GPT-3's eight sizes, tiny CPU presets, and a parameter counter.

A :class:`GPTConfig` holds every number and switch that fixes the shape of a GPT: depth
``n_layer``, width ``d_model``, ``n_heads`` attention heads of size ``d_head``, the
feed-forward width ``d_ff``, the vocabulary and the context length ``n_ctx`` (nanoGPT calls it
``block_size``). The defaults are GPT-3's layout, which is GPT-2's: pre-LayerNorm blocks with
biases, a GELU MLP four times as wide as the model, learned positions, and an output layer that
reuses the token embedding (tied weights).

The switches name the later ideas the book compares with it: RMSNorm, SwiGLU, rotary positions
(RoPE), grouped-query attention (``n_kv_heads``) and GPT-3's "alternating dense and locally
banded sparse attention patterns". Nothing here allocates a tensor, so the 175B configuration is
as cheap to inspect as the tiny one::

    >>> cfg = gpt3_config("175B")
    >>> cfg.n_layer, cfg.d_model, cfg.n_heads, cfg.d_head
    (96, 12288, 96, 128)
    >>> f"{count_parameters(cfg) / 1e9:.1f}B"
    '174.6B'
    >>> count_parameters(get_config("tiny"))
    141056

Table 2.1 of Brown et al. (2020) has two inconsistent rows; see :data:`GPT3_TABLE` for the
choices made here (13B: width 5120, not the printed 5140; XL: 16 heads of 128, not the printed
24), both chosen because they reproduce the parameter counts of the paper's Table D.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from minigpt.checks import check_int

__all__ = [
    "ATTENTION_BACKENDS",
    "ATTENTION_BACKEND_ALIASES",
    "ATTENTION_PATTERNS",
    "MLPS",
    "NORMS",
    "POSITIONS",
    "GPT3_CONFIGS",
    "GPT3_TABLE",
    "GPT3Row",
    "GPTConfig",
    "TINY_CONFIGS",
    "count_parameters",
    "get_config",
    "gpt3_config",
    "gpt3_row",
    "parameter_breakdown",
]

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "rope")
ATTENTION_PATTERNS = ("dense", "alternating")
#: The attention backends of :mod:`minigpt.attention`: ``"naive"`` (softmax(QK^T)V written
#: out), ``"tiled"`` (FlashAttention's tiled online softmax in PyTorch), ``"sdpa"``
#: (``torch.nn.functional.scaled_dot_product_attention``), ``"triton"`` (the Triton kernel) and
#: ``"flex"`` (``torch.nn.attention.flex_attention`` with block masks: it skips the empty tiles
#: of GPT-3's locally banded layers).
ATTENTION_BACKENDS = ("naive", "tiled", "sdpa", "triton", "flex")
#: Other accepted backend names: the usual words for the two written-out backends.
ATTENTION_BACKEND_ALIASES = {"manual": "naive", "flash": "tiled"}

# Fields that are filled in from others when left as None (see GPTConfig.replace).
_DERIVED = ("d_head", "d_ff", "n_kv_heads")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")



@dataclass(frozen=True)
class GPTConfig:
    """The shape of a decoder-only transformer (defaults: GPT-3 Small).

    Attributes:
        n_layer: number of transformer blocks.
        d_model: width of the residual stream (the paper's "bottleneck layer").
        n_heads: number of query heads.
        d_head: size of each head. ``None`` means ``d_model // n_heads``, which requires
            ``d_model`` divisible by ``n_heads``; give it explicitly for an attention width
            ``d_attn = n_heads * d_head`` different from ``d_model``.
        vocab_size: number of tokens; 50257 is GPT-2's byte-level BPE, which GPT-3 reuses.
        n_ctx: context length in tokens (GPT-3's name; nanoGPT calls it ``block_size``).
        d_ff: hidden width of the MLP; ``None`` means ``4 * d_model``. SwiGLU models usually
            pick about ``8/3 * d_model`` instead, so that their three matrices cost what GELU's
            two do.
        dropout: dropout probability (GPT-3's paper does not state one; GPT-2's code used 0.1).
        bias: biases on every linear layer and LayerNorm (GPT-2/3: True).
        tie_embeddings: the output layer reuses the token embedding matrix (GPT-2/3: True).
        norm: ``"layernorm"`` (GPT-3) or ``"rmsnorm"`` (scale only, no mean, no bias).
        norm_eps: the epsilon inside the norm (GPT-2's code: 1e-5).
        mlp: ``"gelu"`` (GPT-3) or ``"swiglu"`` (gated: ``W2(silu(W1 x) * W3 x)``).
        positions: ``"learned"`` (a table of ``n_ctx`` vectors, GPT-3) or ``"rope"``
            (rotary embeddings: no parameters; needs an even ``d_head``).
        n_kv_heads: heads for keys and values. ``None`` means ``n_heads`` (multi-head);
            1 is multi-query attention, anything between is grouped-query attention. It must
            divide ``n_heads``.
        attention_pattern: ``"dense"`` (every layer causal over the whole context) or
            ``"alternating"`` (dense and locally banded layers take turns, see
            :meth:`layer_attention`).
        local_window: width ``w`` of the band in banded layers: position ``i`` sees ``j`` with
            ``i - w < j <= i``. GPT-3's paper gives no value; 256 is GPT-Neo's choice.
        attention_backend: which attention implementation the model uses, one of
            :data:`ATTENTION_BACKENDS`.

    Derived fields are filled in when the config is made::

        >>> GPTConfig(n_layer=2, d_model=64, n_heads=4).d_head
        16
        >>> GPTConfig(n_layer=2, d_model=64, n_heads=6)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: d_model (64) is not divisible by n_heads (6); pass d_head explicitly ...
        >>> GPTConfig(n_layer=2, d_model=64, n_heads=6, d_head=16).d_attn
        96
    """

    n_layer: int = 12
    d_model: int = 768
    n_heads: int = 12
    d_head: int | None = None
    vocab_size: int = 50257
    n_ctx: int = 2048
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu"
    positions: str = "learned"
    n_kv_heads: int | None = None
    attention_pattern: str = "dense"
    local_window: int = 256
    attention_backend: str = "sdpa"

    def __post_init__(self) -> None:
        # Remember which derived fields were given, for replace(); not a dataclass field, so
        # dataclasses.asdict(config) round-trips through GPTConfig(**d).
        given = frozenset(name for name in _DERIVED if getattr(self, name) is not None)
        object.__setattr__(self, "_given", given)
        for name in ("n_layer", "d_model", "n_heads", "vocab_size", "n_ctx", "local_window"):
            check_int(name, getattr(self, name))
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads}); "
                    "pass d_head explicitly (the attention width n_heads * d_head may then "
                    "differ from d_model)"
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        self._validate()

    def _validate(self) -> None:
        for name in _DERIVED:
            check_int(name, getattr(self, name))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads}): "
                "each key/value head serves a whole group of query heads"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_choice("norm", self.norm, NORMS)
        _check_choice("mlp", self.mlp, MLPS)
        _check_choice("positions", self.positions, POSITIONS)
        _check_choice("attention_pattern", self.attention_pattern, ATTENTION_PATTERNS)
        _check_choice("attention_backend", self.attention_backend, ATTENTION_BACKENDS)
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"positions='rope' rotates pairs of features: d_head must be even, "
                             f"got {self.d_head}")

    @property
    def d_attn(self) -> int:
        """Attention width ``n_heads * d_head`` (equal to ``d_model`` in GPT-3's layout)."""
        return self.n_heads * self.d_head

    def layer_attention(self, layer: int) -> str:
        """``"dense"`` or ``"local"`` for block ``layer`` (0-based).

        With ``attention_pattern="alternating"`` the even blocks are dense and the odd ones
        banded, as GPT-Neo does; GPT-3's paper does not say which ones are sparse.

        >>> cfg = GPTConfig(n_layer=4, d_model=64, n_heads=4, attention_pattern="alternating")
        >>> [cfg.layer_attention(i) for i in range(4)]
        ['dense', 'local', 'dense', 'local']
        """
        if not 0 <= layer < self.n_layer:
            raise ValueError(f"layer must be in 0..{self.n_layer - 1}, got {layer}")
        if self.attention_pattern == "alternating" and layer % 2 == 1:
            return "local"
        return "dense"

    def replace(self, **changes: Any) -> GPTConfig:
        """A copy with ``changes`` applied; derived fields left implicit are derived again.

        ``d_head``, ``d_ff`` and ``n_kv_heads`` that were filled in automatically follow the new
        width; those given explicitly are kept. (``dataclasses.replace`` would keep them all.)

        >>> small = GPTConfig(n_layer=2, d_model=64, n_heads=4)
        >>> small.replace(d_model=128).d_head, small.replace(d_model=128).d_ff
        (32, 512)
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s): {', '.join(sorted(unknown))}")
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in _DERIVED:
            if name not in getattr(self, "_given", ()):
                kwargs[name] = None
        kwargs.update(changes)
        return GPTConfig(**kwargs)


# --------------------------------------------------------------------------------------------
# Parameter counting


def _norm_params(cfg: GPTConfig) -> int:
    """One LayerNorm has a scale and a shift (``2d``); RMSNorm, or ``bias=False``, only a scale."""
    return 2 * cfg.d_model if cfg.norm == "layernorm" and cfg.bias else cfg.d_model


def _attention_params(cfg: GPTConfig) -> int:
    d, q, kv = cfg.d_model, cfg.d_attn, cfg.n_kv_heads * cfg.d_head
    weights = d * (q + 2 * kv) + q * d  # W_q, W_k, W_v, then the output projection
    biases = (q + 2 * kv + d) if cfg.bias else 0
    return weights + biases


def _mlp_params(cfg: GPTConfig) -> int:
    d, f = cfg.d_model, cfg.d_ff
    if cfg.mlp == "swiglu":  # W1 and W3 (d -> f, the gate and the value), W2 (f -> d)
        return 3 * d * f + ((2 * f + d) if cfg.bias else 0)
    return 2 * d * f + ((f + d) if cfg.bias else 0)


def parameter_breakdown(config: GPTConfig) -> dict[str, int]:
    """Trainable parameters by component, without building the model.

    Keys: ``token_embedding`` (``V d``), ``position_embedding`` (``n_ctx d``; 0 for RoPE),
    ``attention``, ``mlp`` and ``norms`` (all layers together, the final norm included in
    ``norms``), and ``output`` (``V d`` when the output layer is not tied, else 0).

    >>> parameter_breakdown(gpt3_config("small"))  # doctest: +NORMALIZE_WHITESPACE
    {'token_embedding': 38597376, 'position_embedding': 1572864, 'attention': 28348416,
     'mlp': 56669184, 'norms': 38400, 'output': 0}
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig (e.g. gpt3_config('small')), "
                         f"got {type(config).__name__}")
    d, layers = config.d_model, config.n_layer
    return {
        "token_embedding": config.vocab_size * d,
        "position_embedding": config.n_ctx * d if config.positions == "learned" else 0,
        "attention": layers * _attention_params(config),
        "mlp": layers * _mlp_params(config),
        "norms": (2 * layers + 1) * _norm_params(config),
        "output": 0 if config.tie_embeddings else config.vocab_size * d,
    }


def count_parameters(config: GPTConfig, non_embedding: bool = False) -> int:
    """Number of trainable parameters of the model ``config`` describes.

    For GPT-3's layout (``d_attn = d_model = d``, ``d_ff = 4d``, biases, LayerNorm, learned
    positions, tied output) each block has ``12 d^2 + 13 d`` parameters:

    - attention: ``4 d^2`` weights (Q, K, V, output) + ``4 d`` biases;
    - MLP: ``8 d^2`` weights (``d -> 4d -> d``) + ``5 d`` biases;
    - two LayerNorms: ``4 d``;

    and the whole model has ``P = L (12 d^2 + 13 d) + V d + n_ctx d + 2 d`` (embeddings and the
    final LayerNorm). ``non_embedding=True`` leaves out the token and position tables (and an
    untied output layer), which is the ``N`` of Kaplan et al.'s scaling laws.

    >>> cfg = gpt3_config("small")
    >>> L, d, V, n = cfg.n_layer, cfg.d_model, cfg.vocab_size, cfg.n_ctx
    >>> count_parameters(cfg) == L * (12 * d**2 + 13 * d) + V * d + n * d + 2 * d
    True
    >>> count_parameters(cfg), count_parameters(cfg, non_embedding=True)
    (125226240, 85056000)
    """
    parts = parameter_breakdown(config)
    if non_embedding:
        for key in ("token_embedding", "position_embedding", "output"):
            parts.pop(key)
    return sum(parts.values())


# --------------------------------------------------------------------------------------------
# GPT-3 (Brown et al. 2020, Table 2.1) and tiny presets


class GPT3Row(NamedTuple):
    """One row of GPT-3's Table 2.1 as used here, with what the paper printed.

    ``n_heads``, ``d_head`` and ``d_model`` are the values used; ``printed`` keeps the table's
    own values where they differ. ``batch_tokens`` is the table's rounded figure and
    ``batch_sequences`` the number of 2048-token sequences it stands for, which the paper does
    not print (1536 for 175B is stated by Narayanan et al. 2021; the others are the table's
    figure / 2048 rounded to a power of two, as in Megatron-DeepSpeed). ``params_d1`` is the
    parameter count of Table D.1 (in millions).
    """

    name: str
    params_label: str
    n_layer: int
    d_model: int
    n_heads: int
    d_head: int
    batch_tokens: float
    batch_sequences: int
    learning_rate: float
    params_d1: float
    printed: dict[str, int]

    def config(self, **overrides: Any) -> GPTConfig:
        """The :class:`GPTConfig` for this row (GPT-2 vocabulary, 2048 context)."""
        fields = dict(n_layer=self.n_layer, d_model=self.d_model, n_heads=self.n_heads,
                      d_head=self.d_head, vocab_size=50257, n_ctx=2048)
        fields.update(overrides)
        return GPTConfig(**fields)


#: GPT-3's Table 2.1 (Brown et al. 2020). Every model has ``n_ctx = 2048`` and
#: ``d_ff = 4 d_model`` and was trained on 300B tokens.
#:
#: Two rows are inconsistent as printed; the values used here are those that reproduce the
#: parameter counts of the paper's Table D.1:
#:
#: - **13B**: printed ``d_model = 5140``, but 40 heads x 128 = 5120. With 5120 the count is
#:   12,853M (Table D.1: 12,850M); with 5140 it would be 12,936M (12,953M if the attention were
#:   5140 wide too). 5140 is a typo; 5120 is used (as in Megatron-DeepSpeed's GPT-3 size table).
#: - **XL**: printed 24 heads of 128, i.e. an attention width of 3072 with ``d_model = 2048``.
#:   That layout has 1,517M parameters, not Table D.1's 1,320M; an attention width of 2048 gives
#:   1,315.7M. So XL here keeps ``d_model = 2048`` and ``d_head = 128`` and uses **16 heads**
#:   (what Megatron-DeepSpeed uses for "GPT-3 XL"). The paper itself does not resolve this; the
#:   alternative is ``gpt3_config("xl", n_heads=24)``.
#:
#: Batch sizes are the table's rounded token counts: 0.5M/1M/2M/3.2M stand for
#: 256/512/1024/1536 sequences of 2048 tokens (1536 x 2048 = 3,145,728).
GPT3_TABLE: dict[str, GPT3Row] = {
    row.name: row
    for row in [
        GPT3Row("small", "125M", 12, 768, 12, 64, 0.5e6, 256, 6.0e-4, 125, {}),
        GPT3Row("medium", "350M", 24, 1024, 16, 64, 0.5e6, 256, 3.0e-4, 356, {}),
        GPT3Row("large", "760M", 24, 1536, 16, 96, 0.5e6, 256, 2.5e-4, 760, {}),
        GPT3Row("xl", "1.3B", 24, 2048, 16, 128, 1e6, 512, 2.0e-4, 1320, {"n_heads": 24}),
        GPT3Row("2.7B", "2.7B", 32, 2560, 32, 80, 1e6, 512, 1.6e-4, 2650, {}),
        GPT3Row("6.7B", "6.7B", 32, 4096, 32, 128, 2e6, 1024, 1.2e-4, 6660, {}),
        GPT3Row("13B", "13.0B", 40, 5120, 40, 128, 2e6, 1024, 1.0e-4, 12850, {"d_model": 5140}),
        GPT3Row("175B", "175.0B", 96, 12288, 96, 128, 3.2e6, 1536, 0.6e-4, 174600, {}),
    ]
}

#: The eight GPT-3 models as :class:`GPTConfig` (keys as in :data:`GPT3_TABLE`). They use the
#: default dense attention: GPT-3's "alternating dense and locally banded" layers come without
#: a published band width, so ask for them with
#: ``gpt3_config(name, attention_pattern="alternating")`` (band 256, GPT-Neo's assumption).
GPT3_CONFIGS: dict[str, GPTConfig] = {name: row.config() for name, row in GPT3_TABLE.items()}

#: Models that train in seconds to minutes on a laptop CPU (vocabulary sized for a small
#: byte-level BPE). ``tiny``: 141K parameters; ``mini``: 1.09M.
TINY_CONFIGS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, d_model=64, n_heads=4, vocab_size=512, n_ctx=128),
    "mini": GPTConfig(n_layer=4, d_model=128, n_heads=4, vocab_size=2048, n_ctx=256),
}

_ALIASES = {
    "small": "small", "medium": "medium", "large": "large", "xl": "xl",
    "125m": "small", "350m": "medium", "760m": "large", "1.3b": "xl", "2.7b": "2.7B",
    "6.7b": "6.7B", "13b": "13B", "13.0b": "13B", "175b": "175B", "175.0b": "175B",
    "gpt-3": "175B", "gpt3": "175B",
}


def _gpt3_key(name: str) -> str | None:
    key = name.strip().lower().removeprefix("gpt-3 ").removeprefix("gpt3-").removeprefix("gpt-3-")
    return _ALIASES.get(key)


def gpt3_row(name: str) -> GPT3Row:
    """The Table 2.1 row for ``name`` ("small", "XL", "1.3B", "175B", "GPT-3 Large", ...).

    >>> row = gpt3_row("175B")
    >>> row.batch_sequences * 2048, row.learning_rate
    (3145728, 6e-05)
    """
    key = _gpt3_key(name) if isinstance(name, str) else None
    if key is None:
        raise ValueError(
            f"unknown GPT-3 model {name!r}; allowed: {', '.join(GPT3_TABLE)} "
            "(or the sizes 125M, 350M, 760M, 1.3B)"
        )
    return GPT3_TABLE[key]


def gpt3_config(name: str, **overrides: Any) -> GPTConfig:
    """The :class:`GPTConfig` of a GPT-3 model, with optional field ``overrides``.

    >>> gpt3_config("XL").n_heads, gpt3_config("xl", n_heads=24).d_attn
    (16, 3072)
    """
    return gpt3_row(name).config(**overrides)


def get_config(name: str, **overrides: Any) -> GPTConfig:
    """Any preset by name: a tiny CPU model (``"tiny"``, ``"mini"``) or a GPT-3 size.

    >>> get_config("mini", n_ctx=64).n_ctx
    64
    """
    if isinstance(name, str) and name.strip().lower() in TINY_CONFIGS:
        return TINY_CONFIGS[name.strip().lower()].replace(**overrides)
    if isinstance(name, str) and _gpt3_key(name) is not None:
        return gpt3_config(name, **overrides)
    raise ValueError(
        f"unknown configuration {name!r}; allowed: {', '.join(TINY_CONFIGS)}, "
        f"{', '.join(GPT3_TABLE)}"
    )
