"""Tiny models for the chapters' experiments, small enough to train in seconds on a CPU.

The chapters on activations and normalization ask questions about parts of a transformer
(which nonlinearity? where does the LayerNorm go?) before the book has built attention. These
models keep just the parts in question:

* :class:`TinyLM`, a character-level language model in the style of Bengio et al. (2003): the
  embeddings of the last ``n_ctx`` characters are concatenated and projected to ``d_model``,
  then go through ``n_layer`` residual feed-forward blocks (:class:`ResidualBlock`, the MLP
  half of a transformer block) and an output layer that scores every next character.
* :class:`ResidualBlock` with a switch between the two places a transformer puts its norm::

      pre-LN  (GPT-2, GPT-3):          x = x + ffn(norm(x))      and one more norm at the end
      post-LN (original Transformer):  x = norm(x + ffn(x))

* :class:`DeepMLP`, a plain stack of ``depth`` equal-width layers, with or without residual
  connections, to measure how gradients shrink or grow with depth (:func:`mlp_gradient_norms`).
* :func:`train_steps` and :func:`run_seeds`: a short, deterministic AdamW loop on random
  mini-batches, repeated over seeds so that every comparison shows its spread.

Example::

    vocab = char_vocab(text)
    x, y = char_windows(text, n_ctx=8, vocab=vocab)      # (N, 8) and (N,)
    torch.manual_seed(0)
    model = TinyLM(len(vocab), n_ctx=8, activation="swiglu")
    losses = train_steps(model, x, y, steps=150, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from minigpt.activations import ACTIVATIONS, GATED_ACTIVATIONS, FeedForward, matched_hidden_size
from minigpt.attention import MultiHeadAttention, attention_weights
from minigpt.layernorm import LayerNorm, RMSNorm
from minigpt.positions import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from minigpt.train import evaluate

__all__ = [
    "TINY_NORMS",
    "NORM_POSITIONS",
    "TINY_POSITIONS",
    "AttentionBlock",
    "DeepMLP",
    "ResidualBlock",
    "Run",
    "TinyLM",
    "TinyTransformer",
    "char_vocab",
    "char_windows",
    "count_model_parameters",
    "dead_unit_fraction",
    "lag_batch",
    "make_tiny_norm",
    "mlp_gradient_norms",
    "repeat_batch",
    "run_seeds",
    "sequence_accuracy",
    "train_sequence_steps",
    "train_steps",
    "weight_gradient_norms",
]

TINY_NORMS = ("layernorm", "rmsnorm", "none")
NORM_POSITIONS = ("pre", "post")


# ---------------------------------------------------------------------------------------------
# Data: sliding windows of characters
# ---------------------------------------------------------------------------------------------


def char_vocab(text: str) -> list[str]:
    """The distinct characters of ``text``, sorted: index i is the id of character i.

    >>> char_vocab("abracadabra")
    ['a', 'b', 'c', 'd', 'r']
    """
    return sorted(set(text))


def char_windows(text: str, n_ctx: int, vocab: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Every (n_ctx characters, next character) pair of ``text``, as ids in ``vocab``.

    Returns ``x`` of shape (N, n_ctx) and ``y`` of shape (N,), N = len(text) - n_ctx:
    ``y[i]`` is the character that follows ``x[i]``.

    >>> x, y = char_windows("abcd", 2, vocab=["a", "b", "c", "d"])
    >>> x.tolist(), y.tolist()
    ([[0, 1], [1, 2]], [2, 3])
    """
    if n_ctx < 1:
        raise ValueError(f"n_ctx must be at least 1 character, got {n_ctx}")
    if len(text) <= n_ctx:
        raise ValueError(f"text of {len(text)} characters is too short for n_ctx {n_ctx}")
    stoi = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(text) - stoi.keys())
    if unknown:
        raise ValueError(f"characters {unknown} are not in the vocabulary; build it with "
                         "char_vocab on a text that contains them")
    ids = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    windows = ids.unfold(0, n_ctx + 1, 1)  # (N, n_ctx + 1)
    return windows[:, :-1].contiguous(), windows[:, -1].contiguous()


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def make_tiny_norm(kind: str, d_model: int, bias: bool = True) -> nn.Module:
    """A normalization layer by name: "layernorm", "rmsnorm" (never a bias) or "none"."""
    if kind == "layernorm":
        return LayerNorm(d_model, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(d_model)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; allowed values: {list(TINY_NORMS)}")


class ResidualBlock(nn.Module):
    """A residual feed-forward block, the MLP half of a transformer block.

    Input (..., d_model) -> output (..., d_model)::

        norm_position="pre":   x + ffn(norm(x))
        norm_position="post":  norm(x + ffn(x))

    Args:
        d_model: size of each vector.
        d_hidden: hidden size of the :class:`~minigpt.activations.FeedForward`.
        activation: any name that ``FeedForward`` accepts, e.g. "gelu_tanh" or "swiglu".
        norm: "layernorm", "rmsnorm" or "none".
        norm_position: "pre" or "post".
        bias: whether the linear layers (and the LayerNorm) have bias vectors.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        activation: str = "gelu_tanh",
        norm: str = "layernorm",
        norm_position: str = "pre",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"unknown norm_position {norm_position!r}; allowed values: {list(NORM_POSITIONS)}"
            )
        self.norm_position = norm_position
        self.norm = make_tiny_norm(norm, d_model, bias)
        self.ffn = FeedForward(d_model, d_hidden, activation, bias=bias)

    def ffn_input(self, x: Tensor) -> Tensor:
        """What the block's FFN reads: norm(x) pre-LN, x post-LN.  Shape: same as x."""
        return self.norm(x) if self.norm_position == "pre" else x

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (..., d_model) -> (..., d_model)."""
        if self.norm_position == "pre":
            return x + self.ffn(self.norm(x))
        return self.norm(x + self.ffn(x))


class TinyLM(nn.Module):
    """Character-level MLP language model: last ``n_ctx`` characters -> next-character logits.

    Input ids (B, n_ctx) -> logits (B, vocab_size)::

        x = proj(concat(embed(c_1), ..., embed(c_context)))       (B, d_model)
        x = block_L(... block_1(x))                               residual FFN blocks
        logits = head(final_norm(x))                              final_norm only for pre-LN

    ``d_hidden=None`` picks :func:`~minigpt.activations.matched_hidden_size`: 4 d_model for an
    ordinary activation and 2/3 of that for a gated one, so GELU and SwiGLU models have about
    the same number of parameters.

    Args:
        vocab_size: number of distinct characters.
        n_ctx: how many previous characters the model reads.
        d_embed: size of each character embedding.
        d_model: width of the residual stream.
        n_layer: number of residual blocks.
        d_hidden: FFN hidden size, or None for the parameter-matched default.
        activation, norm, norm_position, bias: as in :class:`ResidualBlock`.
    """

    def __init__(
        self,
        vocab_size: int,
        n_ctx: int = 8,
        d_embed: int = 16,
        d_model: int = 48,
        n_layer: int = 2,
        d_hidden: int | None = None,
        activation: str = "gelu_tanh",
        norm: str = "layernorm",
        norm_position: str = "pre",
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in [("vocab_size", vocab_size), ("n_ctx", n_ctx),
                            ("d_embed", d_embed), ("d_model", d_model)]:
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if n_layer < 0:
            raise ValueError(f"n_layer must be >= 0, got {n_layer}")
        if d_hidden is None:
            d_hidden = matched_hidden_size(d_model, gated=activation in GATED_ACTIVATIONS)
        self.n_ctx = n_ctx
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.proj = nn.Linear(n_ctx * d_embed, d_model, bias=bias)
        self.blocks = nn.ModuleList(
            ResidualBlock(d_model, d_hidden, activation, norm, norm_position, bias)
            for _ in range(n_layer)
        )
        pre = norm_position == "pre"
        self.final_norm = make_tiny_norm(norm, d_model, bias) if pre else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size, bias=bias)

    def forward(self, idx: Tensor) -> Tensor:
        """Shape: (B, n_ctx) long -> (B, vocab_size) logits."""
        if idx.ndim != 2 or idx.shape[1] != self.n_ctx:
            raise ValueError(
                f"TinyLM expected ids of shape (B, {self.n_ctx}), got {tuple(idx.shape)}"
            )
        x = self.proj(rearrange(self.embed(idx), "b k e -> b (k e)"))
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))

    def ffn_inputs(self, idx: Tensor) -> list[Tensor]:
        """What each block's FFN reads on ``idx``: one (B, d_model) tensor per block."""
        x = self.proj(rearrange(self.embed(idx), "b k e -> b (k e)"))
        inputs = []
        for block in self.blocks:
            inputs.append(block.ffn_input(x))
            x = block(x)
        return inputs


class DeepMLP(nn.Module):
    """``depth`` layers of equal width, each ``h = f(W h + b)``, or ``h = h + f(W h + b)``.

    Weights start as N(0, gain^2 / width) and biases as 0: ``gain=1`` keeps the variance of a
    linear layer's output equal to its input's (LeCun / Glorot-style), ``gain=sqrt(2)`` is He
    initialization, made for ReLU.  Input (B, width) -> output (B, width).

    Args:
        width: size of every layer.
        depth: number of layers.
        activation: a name from :data:`~minigpt.activations.ACTIVATIONS`.
        residual: add each layer's output to its input instead of replacing it.
        gain: scale of the initial weights.
    """

    def __init__(
        self, width: int, depth: int, activation: str = "relu", residual: bool = False,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {list(ACTIVATIONS)}")
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be positive, got {width} and {depth}")
        self.f = ACTIVATIONS[activation].fn
        self.residual = residual
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.normal_(0.0, gain / math.sqrt(width))
                layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (B, width) -> (B, width)."""
        for layer in self.layers:
            h = self.f(layer(x))
            x = x + h if self.residual else h
        return x


def count_model_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (entries of every tensor with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_gradient_norms(loss: Tensor, weights: Sequence[Tensor]) -> list[float]:
    """The L2 norm of ``d loss / d w`` for each tensor in ``weights``, in order.

    Uses ``torch.autograd.grad``, so no ``.grad`` field is touched.
    """
    grads = torch.autograd.grad(loss, list(weights))
    return [float(g.norm()) for g in grads]


def mlp_gradient_norms(
    activation: str,
    depth: int,
    residual: bool = False,
    width: int = 64,
    batch: int = 256,
    gain: float = 1.0,
    seed: int = 0,
) -> list[float]:
    """How much gradient reaches each layer of a fresh :class:`DeepMLP`, first layer first.

    Entry ``l`` is the norm of ``d loss / d W_l`` for the weight matrix of layer ``l``.  The
    loss is ``sum(output * probe) / batch`` for a fixed random ``probe``: its gradient at the
    output is the same whatever the activation, so the differences between layers come only
    from backpropagation through the stack.  Inputs and probe are N(0, 1), drawn from ``seed``,
    which also seeds the weights, so the result is deterministic.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen)
    probe = torch.randn(batch, width, generator=gen)
    torch.manual_seed(seed)
    model = DeepMLP(width, depth, activation, residual, gain)
    loss = (model(x) * probe).sum() / batch
    return weight_gradient_norms(loss, [layer.weight for layer in model.layers])


def dead_unit_fraction(ffn: FeedForward, x: Tensor) -> float:
    """Share of an FFN's hidden units whose pre-activation is <= 0 for every row of ``x``.

    For ReLU such a unit outputs 0 and gets no gradient on this data: it is *dead*.  For a
    gated FFN the gate's pre-activation (``w3``) is tested.  ``x``: (B, d_model).
    """
    with torch.no_grad():
        pre = (ffn.w1 if ffn.w3 is None else ffn.w3)(x)
    return float((pre <= 0).all(dim=0).float().mean())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_steps(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    steps: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train with AdamW on random mini-batches of (x, y); the training loss of every step.

    Batches are drawn from a generator seeded with ``seed``, so two calls with the same
    seed and the same initial weights give the same losses.  If the loss stops being finite
    (the run diverged), training stops and the remaining steps are reported as ``nan``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses + [math.nan] * (steps - len(losses))


@dataclass
class Run:
    """One training run: its seed, parameter count, training losses and final validation loss."""

    seed: int
    n_params: int
    losses: list[float]
    val_loss: float


def run_seeds(
    make_model: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    seeds: Sequence[int],
    **train_kwargs: float,
) -> list[Run]:
    """Train a fresh ``make_model()`` for each seed (weights and batches both seeded).

    ``train_kwargs`` go to :func:`train_steps` (``steps`` is required).  A run that diverged
    gets a validation loss of ``nan``.
    """
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = make_model()
        losses = train_steps(model, *train, seed=seed, **train_kwargs)  # type: ignore[arg-type]
        val_loss = (evaluate(model, *val, batch_size=4096) if math.isfinite(losses[-1])
                    else math.nan)
        runs.append(Run(seed, count_model_parameters(model), losses, val_loss))
    return runs


# ---------------------------------------------------------------------------------------------
# A tiny transformer for the attention chapter
# ---------------------------------------------------------------------------------------------

#: Position schemes of :class:`TinyTransformer`.
TINY_POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


class AttentionBlock(nn.Module):
    """A pre-LN transformer block: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``.

    With ``d_hidden=0`` the block has no feed-forward half (an attention-only block).
    Shape: ``(B, T, d_model) -> (B, T, d_model)``.
    """

    def __init__(
        self, d_model: int, n_heads: int, d_hidden: int = 0, positions: str | None = None,
        max_len: int = 2048, n_kv_heads: int | None = None, window: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(
            d_model, n_heads, n_kv_heads, backend="naive", positions=positions, max_len=max_len,
            window=window,
        )
        self.norm2 = LayerNorm(d_model) if d_hidden else None
        self.ffn = FeedForward(d_model, d_hidden) if d_hidden else None

    def attention_weights(self, x: Tensor) -> Tensor:
        """The softmax weights this block's attention puts on ``x``: ``(B, H, T, T)``."""
        h = self.norm1(x)
        q, k, _ = self.attn.qkv(h)
        mask = self.attn.attention_mask(q.shape[2], k.shape[2], None, h)
        return attention_weights(q, k, causal=self.attn.window is None, mask=mask)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x if self.ffn is None else x + self.ffn(self.norm2(x))


class TinyTransformer(nn.Module):
    """A small causal transformer: ids ``(B, T)`` -> next-token logits ``(B, T, vocab_size)``.

    Token embedding, a position scheme, ``n_layer`` :class:`AttentionBlock`, a final LayerNorm
    and an output layer.  ``positions``:

    * ``"learned"``: a trained table of ``n_ctx`` vectors added to the input (GPT-3); it has
      no row for position ``n_ctx`` or beyond, so longer inputs raise a ValueError;
    * ``"sinusoidal"``: the fixed table of Vaswani et al., added to the input;
    * ``"rope"`` or ``"alibi"``: applied inside every attention layer;
    * ``"none"``: no position information except the causal mask.

    ``n_ctx`` is the size of the tables (learned, sinusoidal, RoPE): the longest input the
    model accepts.  ``windows`` gives each layer's band width (``None`` = dense).

    >>> model = TinyTransformer(vocab_size=10, n_ctx=16, d_model=16, n_heads=2, n_layer=2)
    >>> model(torch.zeros(3, 5, dtype=torch.long)).shape
    torch.Size([3, 5, 10])
    >>> model.attention_maps(torch.zeros(1, 5, dtype=torch.long)).shape  # (layer, B, H, T, T)
    torch.Size([2, 1, 2, 5, 5])
    """

    def __init__(
        self, vocab_size: int, n_ctx: int = 64, d_model: int = 32, n_heads: int = 2,
        n_layer: int = 2, d_hidden: int = 0, positions: str = "learned",
        n_kv_heads: int | None = None, windows: Sequence[int | None] | None = None,
    ) -> None:
        super().__init__()
        if positions not in TINY_POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; allowed: {list(TINY_POSITIONS)}")
        windows = [None] * n_layer if windows is None else list(windows)
        if len(windows) != n_layer:
            raise ValueError(f"windows needs one entry per layer ({n_layer}), got {len(windows)}")
        self.positions, self.n_ctx = positions, n_ctx
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = None
        if positions == "learned":
            self.pos = LearnedPositionalEmbedding(n_ctx, d_model)
        elif positions == "sinusoidal":
            self.pos = SinusoidalPositionalEmbedding(n_ctx, d_model)
        inner = positions if positions in ("rope", "alibi") else None
        self.blocks = nn.ModuleList(
            AttentionBlock(d_model, n_heads, d_hidden, inner, n_ctx, n_kv_heads, w)
            for w in windows
        )
        self.final_norm = LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def _input(self, idx: Tensor) -> Tensor:
        if idx.ndim != 2:
            raise ValueError(f"TinyTransformer expects ids of shape (B, T), got {tuple(idx.shape)}")
        x = self.embed(idx)
        return x if self.pos is None else x + self.pos(idx.shape[1])

    def forward(self, idx: Tensor) -> Tensor:
        """Shape: ``(B, T)`` long -> ``(B, T, vocab_size)`` logits."""
        x = self._input(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Every layer's attention weights on ``idx``: ``(n_layer, B, H, T, T)``."""
        x, maps = self._input(idx), []
        for block in self.blocks:
            maps.append(block.attention_weights(x))
            x = block(x)
        return torch.stack(maps)


def repeat_batch(
    batch: int, half: int, vocab_size: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random sequences shown twice, ``x = (a_1 .. a_half, a_1 .. a_half)``, ``(batch, 2 half)``.

    ``y`` is the next token, with ``-100`` (ignored by ``F.cross_entropy``) wherever it cannot
    be known: the first half and the last position.  In the second half the answer is always in
    the context, ``half - 1`` positions back.
    """
    a = torch.randint(vocab_size, (batch, half), generator=gen)
    x = torch.cat([a, a], dim=1)
    y = torch.full_like(x, -100)
    y[:, half - 1 : -1] = x[:, half:]
    return x, y


def lag_batch(batch: int, length: int, vocab_size: int, lag: int, gen: torch.Generator,
              ) -> tuple[Tensor, Tensor]:
    """Random tokens ``x (batch, length)``; the target at position ``t`` is ``x[t - lag]``.

    Positions ``t < lag`` have no answer and get ``-100`` (ignored).  The rule is the same at
    every position, so a model that learned it *relative* to ``t`` works at any length.
    """
    if not 1 <= lag < length:
        raise ValueError(f"lag must be in [1, length), got lag={lag}, length={length}")
    x = torch.randint(vocab_size, (batch, length), generator=gen)
    y = torch.full_like(x, -100)
    y[:, lag:] = x[:, :-lag]
    return x, y


def train_sequence_steps(
    model: nn.Module, make_batch: Callable[[torch.Generator], tuple[Tensor, Tensor]],
    steps: int, lr: float = 3e-3, seed: int = 0,
) -> list[float]:
    """AdamW on fresh batches ``make_batch(gen)`` of ids and targets ``(B, T)`` (``-100`` =
    ignored); returns the loss of every step.  ``gen`` is seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        x, y = make_batch(gen)
        loss = F.cross_entropy(rearrange(model(x), "b t v -> b v t"), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def sequence_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of the positions with a target (``y != -100``) where the top logit is right."""
    model.eval()
    pred = model(x).argmax(dim=-1)
    model.train()
    keep = y != -100
    return float((pred[keep] == y[keep]).float().mean())
