"""Tensor parallelism (Shoeybi et al. 2019, Megatron-LM): every matrix of a block, split.

The MLP's first matrix is split by output columns (:class:`ColumnParallelLinear`), its second by
input rows (:class:`RowParallelLinear`), so that each rank computes a slice of the hidden layer
on its own and a single all-reduce sums the partial outputs. Attention splits its heads the
same way (:class:`TensorParallelAttention`). Two conjugate operators carry the communication:
``f`` (:func:`copy_to_tensor_parallel`: identity forward, all-reduce backward) and ``g``
(:func:`reduce_from_tensor_parallel`: all-reduce forward, identity backward).

:func:`tensor_parallel` turns a minigpt module into its parallel version for one rank, and
:func:`tensor_parallel_run` runs a forward and backward pass of it on every rank, under
:func:`~minigpt.parallel.launch.spawn`::

    results = spawn(tensor_parallel_run, 2, args=(MLP(config), x, grad_out))
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.attention import MultiHeadAttention
from minigpt.checks import check_int
from minigpt.model import GPT, MLP, Block
from minigpt.parallel._common import check_rank, rank_device, to_cpu

__all__ = [
    "ColumnParallelLinear",
    "RowParallelLinear",
    "TensorParallelAttention",
    "TensorParallelBlock",
    "TensorParallelMLP",
    "copy_to_tensor_parallel",
    "gather_from_tensor_parallel",
    "gather_tensor_parallel",
    "reduce_from_tensor_parallel",
    "scatter_to_tensor_parallel",
    "shard_tensor",
    "tensor_parallel",
    "tensor_parallel_gpt",
    "tensor_parallel_run",
    "unshard_tensors",
]


# ---------------------------------------------------------------------------------------------
# Megatron's communication operators


def _group_size(group: dist.ProcessGroup | None) -> int:
    """Ranks in ``group``; 1 when no process group exists (a single process)."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def _all_reduce(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """Sum of ``x`` over the ranks of ``group``, in a new tensor."""
    if _group_size(group) == 1:
        return x
    out = x.contiguous().clone()
    dist.all_reduce(out, group=group)
    return out


def _all_gather_last(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """``(..., n)`` on every rank -> ``(..., world * n)``, rank order along the last axis."""
    world = _group_size(group)
    if world == 1:
        return x
    parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def _my_slice_last(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """This rank's ``1/world`` slice of the last axis of ``x``."""
    world = _group_size(group)
    if world == 1:
        return x
    if x.shape[-1] % world:
        raise ValueError(f"the last axis ({x.shape[-1]}) must be divisible by the number of "
                         f"ranks ({world})")
    return x.chunk(world, dim=-1)[dist.get_rank(group)].contiguous()


class CopyToTensorParallel(torch.autograd.Function):
    """Megatron's ``f``: identity in the forward pass, all-reduce in the backward pass.

    It marks where a replicated activation enters a tensor-parallel region: every rank uses
    the same ``x``, each for its own slice of the weights, so each rank's gradient of ``x`` is
    only its slice's contribution and the true gradient is their sum.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _all_reduce(grad, ctx.group), None


class ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's ``g``: all-reduce in the forward pass, identity in the backward pass.

    It closes a tensor-parallel region: each rank holds a partial sum of the output, the
    all-reduce adds them up, and the gradient of a sum passes unchanged to every term.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        return _all_reduce(x, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class GatherFromTensorParallel(torch.autograd.Function):
    """All-gather along the last axis forward; keep this rank's slice of the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        ctx.group = group
        return _all_gather_last(x, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _my_slice_last(grad, ctx.group), None


class ScatterToTensorParallel(torch.autograd.Function):
    """Keep this rank's slice of the last axis forward; all-gather the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        ctx.group = group
        return _my_slice_last(x, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _all_gather_last(grad, ctx.group), None


def copy_to_tensor_parallel(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """``f``: ``x`` unchanged; its gradient is all-reduced (summed) over ``group``.

    Without a process group (one process) both ``f`` and ``g`` are the identity:

    >>> x = torch.ones(2, requires_grad=True)
    >>> copy_to_tensor_parallel(x).sum().backward(); x.grad.tolist()
    [1.0, 1.0]
    """
    return CopyToTensorParallel.apply(x, group)


def reduce_from_tensor_parallel(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """``g``: ``x`` summed over ``group``; its gradient passes unchanged."""
    return ReduceFromTensorParallel.apply(x, group)


def gather_from_tensor_parallel(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """``(..., n)`` slices on each rank -> ``(..., world * n)`` on every rank (differentiable)."""
    return GatherFromTensorParallel.apply(x, group)


def scatter_to_tensor_parallel(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """``(..., n)`` on every rank -> this rank's ``(..., n / world)`` slice (differentiable)."""
    return ScatterToTensorParallel.apply(x, group)


# ---------------------------------------------------------------------------------------------
# Tensor-parallel layers


def shard_tensor(
    t: Tensor, dim: int, rank: int, world_size: int, splits: Sequence[int] | None = None
) -> Tensor:
    """This rank's shard of ``t`` along ``dim``.

    ``splits`` (default: one block) cuts ``dim`` into independent blocks, such as the q, k and
    v parts of a fused projection; each block is cut into ``world_size`` equal slices and the
    rank's slices are concatenated, so that the shard of a fused q|k|v weight is again a fused
    q|k|v weight, for the rank's heads.

    Raises ``ValueError`` unless ``0 <= rank < world_size`` (ints), if ``splits`` does not add
    up to the size of ``dim``, or if a block cannot be split evenly over ``world_size``.

    >>> shard_tensor(torch.arange(8), 0, rank=1, world_size=2).tolist()
    [4, 5, 6, 7]
    >>> shard_tensor(torch.arange(8), 0, rank=1, world_size=2, splits=(4, 2, 2)).tolist()
    [2, 3, 5, 7]
    """
    check_rank(rank, world_size)
    splits = (t.shape[dim],) if splits is None else tuple(splits)
    if sum(splits) != t.shape[dim]:
        raise ValueError(f"splits {splits} add up to {sum(splits)}, not to the size "
                         f"{t.shape[dim]} of dimension {dim}")
    pieces = []
    for block in t.split(splits, dim=dim):
        size = block.shape[dim]
        if size % world_size:
            raise ValueError(f"a block of size {size} along dimension {dim} cannot be split "
                             f"evenly over world_size={world_size} ranks; allowed world sizes: "
                             f"divisors of {math.gcd(*splits)}")
        step = size // world_size
        pieces.append(block.narrow(dim, rank * step, step))
    return torch.cat(pieces, dim=dim)


def unshard_tensors(
    shards: Sequence[Tensor], dim: int, splits: Sequence[int] | None = None
) -> Tensor:
    """Inverse of :func:`shard_tensor`: the full tensor from every rank's shard, in rank order.

    >>> shards = [shard_tensor(torch.arange(8), 0, r, 2, (4, 2, 2)) for r in range(2)]
    >>> unshard_tensors(shards, 0, (4, 2, 2)).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    world = len(shards)
    if world == 0:
        raise ValueError("need at least one shard")
    local = shards[0].shape[dim] * world
    splits = (local,) if splits is None else tuple(splits)
    if any(s % world for s in splits) or sum(splits) != local:
        raise ValueError(f"splits {splits} do not match {world} shards of size "
                         f"{shards[0].shape[dim]} along dimension {dim}")
    local_splits = [s // world for s in splits]
    per_rank = [s.split(local_splits, dim=dim) for s in shards]
    blocks = [torch.cat([per_rank[r][b] for r in range(world)], dim=dim)
              for b in range(len(splits))]
    return torch.cat(blocks, dim=dim)


class _ParallelLinear(nn.Module):
    """Common part of the two parallel linear layers: rank, group and shard bookkeeping."""

    #: ``{parameter name: (dim, splits)}`` for the sharded parameters; the rest are replicated.
    shard_dims: dict[str, tuple[int, tuple[int, ...]]]

    def __init__(self, rank: int, world_size: int, group: dist.ProcessGroup | None) -> None:
        super().__init__()
        check_rank(rank, world_size)
        self.rank, self.world_size, self.group = rank, world_size, group

    def _check_group(self) -> None:
        world = _group_size(self.group)
        if world != self.world_size:
            where = "a process group of" if dist.is_initialized() else "no process group, i.e."
            raise RuntimeError(
                f"{type(self).__name__} was built for world_size={self.world_size} but runs in "
                f"{where} {world} rank(s); run it inside spawn(fn, world_size="
                f"{self.world_size}) or torch.distributed.init_process_group"
            )

    def _load(self, linear: nn.Linear) -> None:
        """Copy this rank's shards of ``linear``'s weight and bias."""
        if (linear.in_features, linear.out_features) != (self.in_features, self.out_features):
            raise ValueError(f"{type(self).__name__} is {self.in_features} -> "
                             f"{self.out_features}, the linear layer {linear.in_features} -> "
                             f"{linear.out_features}")
        if (linear.bias is None) != (self.bias is None):
            raise ValueError("the linear layer and its parallel version must both have a bias "
                             "or both have none")
        with torch.no_grad():
            for name, param in self.named_parameters(recurse=False):
                full = getattr(linear, name)
                if name in self.shard_dims:
                    dim, splits = self.shard_dims[name]
                    full = shard_tensor(full, dim, self.rank, self.world_size, splits)
                param.copy_(full)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, rank={self.rank}, world_size={self.world_size}")


class ColumnParallelLinear(_ParallelLinear):
    """``y = x W^T + b`` with the output features split over the ranks.

    Rank ``r`` holds rows ``r n/t .. (r+1) n/t`` of the weight ``W (n_out, n_in)`` and of the
    bias, and computes that slice of ``y``: ``(..., n_in) -> (..., n_out / t)``, no
    communication in the forward pass. The input enters through ``f``, so the backward pass
    all-reduces the input gradient. ``gather_output=True`` all-gathers the slices into the
    full ``(..., n_out)`` (only needed when the next layer is not row-parallel).

    ``splits`` treats the output axis as independent blocks, each split over the ranks (a
    fused q|k|v projection: ``splits=(q_width, kv_width, kv_width)``, see
    :func:`shard_tensor`). The usual way to make one is :meth:`from_linear`.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *, rank: int,
        world_size: int, gather_output: bool = False, splits: Sequence[int] | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__(rank, world_size, group)
        check_int("in_features", in_features)
        check_int("out_features", out_features)
        splits = (out_features,) if splits is None else tuple(splits)
        if sum(splits) != out_features:
            raise ValueError(f"splits {splits} must add up to out_features={out_features}")
        if any(s % world_size for s in splits):
            raise ValueError(
                f"out_features={out_features} (in blocks {splits}) is not divisible by "
                f"world_size={world_size}: each rank must get an equal slice of every block"
            )
        if gather_output and len(splits) > 1:
            raise ValueError("gather_output=True would interleave the blocks of a fused layer "
                             f"(splits={splits}); gather each block separately")
        self.in_features, self.out_features = in_features, out_features
        self.gather_output, self.splits = gather_output, splits
        local = out_features // world_size
        self.weight = nn.Parameter(torch.empty(local, in_features))
        self.bias = nn.Parameter(torch.zeros(local)) if bias else None
        nn.init.normal_(self.weight, std=0.02)
        self.shard_dims = {"weight": (0, splits), "bias": (0, splits)}

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int, world_size: int, *, gather_output: bool = False,
        splits: Sequence[int] | None = None, group: dist.ProcessGroup | None = None,
    ) -> ColumnParallelLinear:
        """The rank's part of ``linear`` (weights copied, so it computes the same function)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    rank=rank, world_size=world_size, gather_output=gather_output,
                    splits=splits, group=group)
        layer._load(linear)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        """``(..., n_in) -> (..., n_out / t)``, or ``(..., n_out)`` with ``gather_output``."""
        self._check_group()
        y = F.linear(copy_to_tensor_parallel(x, self.group), self.weight, self.bias)
        return gather_from_tensor_parallel(y, self.group) if self.gather_output else y


class RowParallelLinear(_ParallelLinear):
    """``y = x W^T + b`` with the input features split over the ranks.

    Rank ``r`` holds columns ``r n/t .. (r+1) n/t`` of ``W (n_out, n_in)`` and receives the
    matching slice of ``x``, ``(..., n_in / t)``; its product is a partial sum of ``y``, and
    ``g`` all-reduces the partial sums: ``(..., n_in / t) -> (..., n_out)``, the same on every
    rank. The bias is replicated and added once, after the sum. With
    ``input_is_parallel=False`` the layer takes the full ``(..., n_in)`` and keeps its own
    slice. The usual way to make one is :meth:`from_linear`.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *, rank: int,
        world_size: int, input_is_parallel: bool = True, group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__(rank, world_size, group)
        check_int("in_features", in_features)
        check_int("out_features", out_features)
        if in_features % world_size:
            raise ValueError(f"in_features={in_features} is not divisible by "
                             f"world_size={world_size}: each rank must get an equal slice")
        self.in_features, self.out_features = in_features, out_features
        self.input_is_parallel = input_is_parallel
        self.weight = nn.Parameter(torch.empty(out_features, in_features // world_size))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.weight, std=0.02)
        self.shard_dims = {"weight": (1, (in_features,))}

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int, world_size: int, *, input_is_parallel: bool = True,
        group: dist.ProcessGroup | None = None,
    ) -> RowParallelLinear:
        """The rank's part of ``linear`` (weights copied, so it computes the same function)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    rank=rank, world_size=world_size, input_is_parallel=input_is_parallel,
                    group=group)
        layer._load(linear)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        """``(..., n_in / t) -> (..., n_out)`` (``(..., n_in)`` in if not input_is_parallel)."""
        self._check_group()
        if not self.input_is_parallel:
            x = scatter_to_tensor_parallel(x, self.group)
        y = reduce_from_tensor_parallel(F.linear(x, self.weight), self.group)
        return y if self.bias is None else y + self.bias


class TensorParallelMLP(nn.Module):
    """:class:`~minigpt.model.MLP` split over ``world_size`` ranks, Megatron style.

    ``c_fc`` is column-parallel (each rank computes ``d_ff / t`` hidden units, and the GELU
    acts on them elementwise, so no communication is needed), ``c_proj`` is row-parallel:
    ``(B, T, d_model) -> (B, T, d_model)`` with **one all-reduce in the forward pass** (``g``,
    after ``c_proj``) and one in the backward pass (``f``, before ``c_fc``).

    SwiGLU's gate ``c_gate`` is column-parallel too; it gets its own ``f``, so the backward
    pass does two all-reduces (Megatron fuses ``c_gate`` and ``c_fc`` into one matrix to save
    one). Dropout after ``c_proj`` acts on the replicated output: with ``dropout > 0`` every
    rank needs the same random seed.
    """

    def __init__(
        self, d_model: int, d_ff: int, *, rank: int, world_size: int, kind: str = "gelu",
        bias: bool = True, dropout: float = 0.0, group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"kind must be 'gelu' or 'swiglu', got {kind!r}")
        if d_ff % world_size:
            raise ValueError(f"d_ff={d_ff} is not divisible by world_size={world_size}: each "
                             "rank computes d_ff / world_size hidden units")
        self.kind, self.rank, self.world_size = kind, rank, world_size
        kw = {"rank": rank, "world_size": world_size, "group": group}
        self.c_fc = ColumnParallelLinear(d_model, d_ff, bias, **kw)
        self.c_gate = ColumnParallelLinear(d_model, d_ff, bias, **kw) if kind == "swiglu" else None
        self.c_proj = RowParallelLinear(d_ff, d_model, bias, **kw)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_mlp(
        cls, mlp: MLP, rank: int, world_size: int, group: dist.ProcessGroup | None = None
    ) -> TensorParallelMLP:
        """The rank's part of ``mlp`` (weights copied)."""
        layer = cls(mlp.c_fc.in_features, mlp.c_fc.out_features, rank=rank,
                    world_size=world_size, kind=mlp.kind, bias=mlp.c_fc.bias is not None,
                    dropout=mlp.dropout.p, group=group)
        layer.c_fc._load(mlp.c_fc)
        layer.c_proj._load(mlp.c_proj)
        if mlp.c_gate is not None:
            layer.c_gate._load(mlp.c_gate)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d_model) -> (B, T, d_model)``, replicated on every rank."""
        if self.c_gate is None:
            h = F.gelu(self.c_fc(x), approximate="tanh")  # (B, T, d_ff / t): this rank's units
        else:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        return self.dropout(self.c_proj(h))  # c_proj all-reduces the partial sums


class TensorParallelAttention(MultiHeadAttention):
    """:class:`~minigpt.attention.MultiHeadAttention` with its heads split over the ranks.

    Each rank runs ordinary attention on ``n_heads / t`` query heads and ``n_kv_heads / t``
    key/value heads: the fused ``c_attn`` is column-parallel with blocks q|k|v (each block is
    split by heads, so a rank's shard is again a fused q|k|v for its own heads, see
    :func:`shard_tensor`), and ``c_proj`` is row-parallel. Heads never talk to one another, so
    the forward pass has one all-reduce (in ``c_proj``) and the backward pass one (in
    ``c_attn``), as in the MLP. Grouped-query attention works when ``t`` divides
    ``n_kv_heads``: a rank's query heads then read exactly its key/value heads.

    Inherits :meth:`forward` (KV cache included): ``(B, T, d_model) -> (B, T, d_model)``.
    ALiBi is not supported (its slope depends on the head's global index). Attention dropout
    acts on the rank's own heads; Megatron gives each rank a different seed for it.
    """

    def __init__(
        self, d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True,
        dropout: float = 0.0, backend: str = "sdpa", positions: Any = None, *, rank: int,
        world_size: int, group: dist.ProcessGroup | None = None, d_head: int | None = None,
        max_len: int = 2048, window: int | None = None, causal: bool = True,
        rope_base: float = 10000.0,
    ) -> None:
        check_rank(rank, world_size)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        d_head = self._check_sizes(d_model, n_heads, n_kv_heads, d_head)
        for name, value in (("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            if value % world_size:
                raise ValueError(f"{name}={value} is not divisible by world_size={world_size}: "
                                 "each rank must get whole heads; allowed world sizes: "
                                 f"divisors of {math.gcd(n_heads, n_kv_heads)}")
        if world_size > 1 and positions == "alibi":
            raise ValueError("TensorParallelAttention does not support positions='alibi' (each "
                             "head's slope depends on its global index); use 'rope' or absolute "
                             "positions")
        super().__init__(d_model, n_heads // world_size, n_kv_heads // world_size, bias, dropout,
                         backend, positions, d_head=d_head, max_len=max_len, window=window,
                         causal=causal, rope_base=rope_base)
        q_width, kv_width = n_heads * d_head, n_kv_heads * d_head
        kw = {"rank": rank, "world_size": world_size, "group": group}
        self.c_attn = ColumnParallelLinear(d_model, q_width + 2 * kv_width, bias,
                                           splits=(q_width, kv_width, kv_width), **kw)
        self.c_proj = RowParallelLinear(q_width, d_model, bias, **kw)
        self.rank, self.world_size = rank, world_size

    @classmethod
    def from_attention(
        cls, attn: MultiHeadAttention, rank: int, world_size: int,
        group: dist.ProcessGroup | None = None,
    ) -> TensorParallelAttention:
        """The rank's heads of ``attn`` (weights copied)."""
        if attn.alibi is not None and world_size > 1:
            raise ValueError("TensorParallelAttention does not support ALiBi attention")
        layer = cls(attn.d_model, attn.n_heads, attn.n_kv_heads, attn.c_attn.bias is not None,
                    attn.dropout, attn.backend, attn.rope if attn.alibi is None else "alibi",
                    rank=rank, world_size=world_size, group=group, d_head=attn.d_head,
                    window=attn.window, causal=attn.causal)
        layer.c_attn._load(attn.c_attn)
        layer.c_proj._load(attn.c_proj)
        return layer

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, world_size={self.world_size}"


class TensorParallelBlock(nn.Module):
    """:class:`~minigpt.model.Block` with tensor-parallel attention and MLP.

    The LayerNorms and the residual stream are replicated: every rank computes them on the
    same ``(B, T, d_model)``. Two all-reduces in the forward pass, two in the backward pass.
    """

    def __init__(self, ln_1: nn.Module, attn: TensorParallelAttention, ln_2: nn.Module,
                 mlp: TensorParallelMLP) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp

    @classmethod
    def from_block(
        cls, block: Block, rank: int, world_size: int, group: dist.ProcessGroup | None = None
    ) -> TensorParallelBlock:
        """The rank's part of ``block`` (weights copied)."""
        return cls(copy.deepcopy(block.ln_1),
                   TensorParallelAttention.from_attention(block.attn, rank, world_size, group),
                   copy.deepcopy(block.ln_2),
                   TensorParallelMLP.from_mlp(block.mlp, rank, world_size, group))

    def forward(self, x: Tensor, cache: Any = None) -> Tensor:
        """``(B, T, d_model) -> (B, T, d_model)``, as :meth:`minigpt.model.Block.forward`."""
        x = x + self.attn(self.ln_1(x), cache=cache)
        return x + self.mlp(self.ln_2(x))


def tensor_parallel_gpt(
    model: GPT, rank: int, world_size: int, group: dist.ProcessGroup | None = None
) -> GPT:
    """A copy of ``model`` whose blocks are :class:`TensorParallelBlock`.

    The embeddings, the final LayerNorm and the output layer stay replicated (Megatron also
    splits the vocabulary of the embedding and the output layer over the ranks; not done here).
    Parameter names are unchanged, so :func:`gather_tensor_parallel` gives a state dict of the
    original model.
    """
    parallel = copy.deepcopy(model)
    for i, block in enumerate(parallel.transformer.h):
        parallel.transformer.h[i] = TensorParallelBlock.from_block(block, rank, world_size, group)
    return parallel


def tensor_parallel(
    module: nn.Module, rank: int, world_size: int, *, linear: str = "column",
    group: dist.ProcessGroup | None = None,
) -> nn.Module:
    """The tensor-parallel version of ``module`` for this rank, with the same inputs and outputs.

    ``nn.Linear`` becomes a :class:`ColumnParallelLinear` with ``gather_output=True``
    (``linear="column"``) or a :class:`RowParallelLinear` with ``input_is_parallel=False``
    (``linear="row"``), so that both take and return full tensors; ``MLP``,
    ``MultiHeadAttention``, ``Block`` and ``GPT`` become their parallel versions.
    """
    if isinstance(module, nn.Linear):
        if linear == "column":
            return ColumnParallelLinear.from_linear(module, rank, world_size, gather_output=True,
                                                    group=group)
        if linear == "row":
            return RowParallelLinear.from_linear(module, rank, world_size,
                                                 input_is_parallel=False, group=group)
        raise ValueError(f"linear must be 'column' or 'row', got {linear!r}")
    if isinstance(module, MLP):
        return TensorParallelMLP.from_mlp(module, rank, world_size, group)
    if isinstance(module, MultiHeadAttention):
        return TensorParallelAttention.from_attention(module, rank, world_size, group)
    if isinstance(module, Block):
        return TensorParallelBlock.from_block(module, rank, world_size, group)
    if isinstance(module, GPT):
        return tensor_parallel_gpt(module, rank, world_size, group)
    raise ValueError(f"tensor_parallel handles nn.Linear, MLP, MultiHeadAttention, Block and "
                     f"GPT, got {type(module).__name__}")


def gather_tensor_parallel(
    module: nn.Module, what: str = "param", group: dist.ProcessGroup | None = None
) -> dict[str, Tensor]:
    """Every parameter (``what="param"``) or gradient (``"grad"``) of ``module`` in full.

    Sharded parameters (those listed in a parallel layer's ``shard_dims``) are all-gathered
    and reassembled with :func:`unshard_tensors`; replicated ones are returned as they are. The
    names are those of the original module. A collective: every rank must call it.
    """
    if what not in ("param", "grad"):
        raise ValueError(f"what must be 'param' or 'grad', got {what!r}")
    world = _group_size(group)
    out, seen = {}, set()
    for prefix, sub in module.named_modules():
        shard_dims = getattr(sub, "shard_dims", {})
        for name, param in sub.named_parameters(recurse=False):
            if id(param) in seen:  # a tied weight, listed once as named_parameters() does
                continue
            seen.add(id(param))
            full_name = f"{prefix}.{name}" if prefix else name
            value = param if what == "param" else param.grad
            if value is None:
                raise ValueError(f"{full_name} has no gradient; run a backward pass first")
            value = value.detach()
            if name in shard_dims and world > 1:
                dim, splits = shard_dims[name]
                shards = [torch.empty_like(value) for _ in range(world)]
                dist.all_gather(shards, value.contiguous(), group=group)
                value = unshard_tensors(shards, dim, splits)
            out[full_name] = value
    return out


def tensor_parallel_run(
    rank: int, world_size: int, module: nn.Module, x: Tensor, y: Tensor, linear: str = "column"
) -> dict[str, Any]:
    """One forward and backward pass of ``module`` split over the ranks.

    Run it by :func:`~minigpt.parallel.launch.spawn`.

    ``module`` is made tensor-parallel with :func:`tensor_parallel` (the same weights on
    every rank, so the result can be compared with ``module`` itself). For a
    :class:`~minigpt.model.GPT`, ``x`` is ``idx (B, T)`` and ``y`` the targets ``(B, T)``;
    otherwise ``x`` is the full input ``(..., n_in)`` and the loss is ``(module(x) * y).sum()``,
    so that ``y`` is the gradient fed to the output.

    Returns ``{"output", "loss", "grad_input", "grads"}``: the full output (replicated), the
    loss, the gradient of ``x`` (``None`` for a GPT) and every parameter's gradient in full,
    under the original names (:func:`gather_tensor_parallel`).
    """
    device = rank_device()
    parallel = tensor_parallel(module, rank, world_size, linear=linear).to(device)
    x, y = x.to(device), y.to(device)
    if isinstance(module, GPT):
        output, loss = parallel(x, y)
        grad_input = None
    else:
        x = x.clone().requires_grad_(True)
        output = parallel(x)
        loss = (output * y).sum()
    loss.backward()
    if not isinstance(module, GPT):
        grad_input = x.grad
    grads = gather_tensor_parallel(parallel, "grad")
    return to_cpu({"output": output, "loss": loss, "grad_input": grad_input, "grads": grads})
