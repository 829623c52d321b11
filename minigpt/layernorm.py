"""Layer normalization with a hand-derived backward pass, RMSNorm, and BatchNorm for contrast.

What is normalized, and over which axis:

* **LayerNorm** (Ba et al. 2016) normalizes each token on its own: for one vector ``x`` of
  ``d_model`` features it subtracts the mean of those features and divides by their standard
  deviation, then applies a learned per-feature scale ``weight`` and shift ``bias``.  Nothing is
  shared between tokens or between examples in the batch, so it works the same for a batch of
  one, for any sequence length, and identically in training and inference.
* **BatchNorm** (Ioffe & Szegedy 2015) normalizes each *feature* (channel) over the *batch*: the
  statistics of channel ``c`` come from all examples (and positions) in the mini-batch.  That
  couples examples, needs running averages to be usable at inference time, and is awkward for
  variable-length sequences and token-by-token generation, which is why transformers use
  LayerNorm instead.  :class:`BatchNorm1d` is here so that the two can be compared.
* **RMSNorm** (Zhang & Sennrich 2019) keeps only the rescaling: ``x / rms(x) * weight``, no
  mean subtraction and no bias.  It is cheaper and works as well; LLaMA uses it.

Where LayerNorm sits: the original transformer is *post-LN*, ``x = LN(x + sublayer(x))``.
GPT-2 moved it to the input of each sub-block, *pre-LN*: ``x = x + attn(LN1(x))`` and
``x = x + mlp(LN2(x))``, with one more LayerNorm after the last block; GPT-3 keeps this layout.
Pre-LN leaves an unnormalized residual path from the output back to the embeddings, so gradients
reach early layers undiminished and deep stacks train stably (Xiong et al. 2020 show it needs
far less learning-rate warm-up than post-LN).

The backward pass of LayerNorm is derived by hand in :func:`layer_norm_backward` and wrapped in a
:class:`torch.autograd.Function`, so autograd is only used by the tests, to check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "BatchNorm1d",
    "LayerNorm",
    "LayerNormCache",
    "LayerNormFunction",
    "RMSNorm",
    "RMSNormCache",
    "RMSNormFunction",
    "layer_norm",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_backward",
]

ShapeLike = int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# Shape helpers
# ---------------------------------------------------------------------------------------------


def _as_shape(normalized_shape: ShapeLike) -> tuple[int, ...]:
    """int or sequence of ints -> tuple of ints, e.g. 8 -> (8,)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or any(int(n) <= 0 for n in shape):
        raise ValueError(
            f"normalized_shape must be non-empty positive ints, got {normalized_shape}"
        )
    return tuple(int(n) for n in shape)


def _check_trailing_shape(x: Tensor, shape: tuple[int, ...], who: str) -> None:
    """Raise ValueError unless x has shape (..., *shape)."""
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        expected = ", ".join(["..."] + [str(n) for n in shape])
        raise ValueError(
            f"{who} expected input with trailing shape ({expected}) (normalized_shape={shape}), "
            f"got input of shape {tuple(x.shape)}"
        )


def _resolve_shape(
    weight: Tensor | None, normalized_shape: ShapeLike | None, who: str
) -> tuple[int, ...]:
    """The normalized shape, from ``normalized_shape`` or else from ``weight.shape``."""
    if normalized_shape is None:
        if weight is None:
            raise ValueError(f"{who}: pass normalized_shape when weight is None")
        return _as_shape(tuple(weight.shape))
    shape = _as_shape(normalized_shape)
    if weight is not None and tuple(weight.shape) != shape:
        raise ValueError(
            f"{who}: weight has shape {tuple(weight.shape)}, expected normalized_shape {shape}"
        )
    return shape


def _feature_dims(k: int) -> tuple[int, ...]:
    """The last k dims, the ones that are normalized: (-k, ..., -1)."""
    return tuple(range(-k, 0))


def _sum_over_batch(t: Tensor, k: int) -> Tensor:
    """Sum over all dims but the last k: (..., *normalized_shape) -> normalized_shape.

    (Written with a reshape because ``t.sum(dim=())`` would sum over *every* dim.)
    """
    return t.reshape(-1, *t.shape[t.ndim - k :]).sum(dim=0)


# ---------------------------------------------------------------------------------------------
# LayerNorm: functional forward and hand-written backward
# ---------------------------------------------------------------------------------------------


class LayerNormCache(NamedTuple):
    """What :func:`layer_norm_backward` needs from the forward pass.

    xhat: normalized input, shape (..., *normalized_shape).
    rstd: 1 / sigma, shape (..., 1, ..., 1) (k ones), broadcastable against xhat.
    weight: the scale, shape normalized_shape, or None.
    has_bias: whether a bias was added (so whether to return its gradient).
    k: number of normalized (trailing) dims.
    """

    xhat: Tensor
    rstd: Tensor
    weight: Tensor | None
    has_bias: bool
    k: int


def layer_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    normalized_shape: ShapeLike | None = None,
) -> tuple[Tensor, LayerNormCache]:
    """LayerNorm forward over the trailing dims, returning the output and a backward cache.

    For each vector of the D = prod(normalized_shape) trailing features::

        mu = mean(x),  var = mean((x - mu)^2)  (biased),  sigma = sqrt(var + eps)
        xhat = (x - mu) / sigma,  y = weight * xhat + bias

    Args:
        x: input, shape (..., *normalized_shape).
        weight: scale, shape normalized_shape, or None for no scale.
        bias: shift, shape normalized_shape, or None for no shift.
        eps: added to the variance for numerical safety.
        normalized_shape: the trailing shape; needed only when ``weight`` is None.

    Returns:
        y of the shape of x, and a :class:`LayerNormCache`.

    Raises:
        ValueError: if x does not end in normalized_shape, if weight's shape is not
            normalized_shape, or if weight and normalized_shape are both None.
    """
    shape = _resolve_shape(weight, normalized_shape, "layer_norm")
    _check_trailing_shape(x, shape, "layer_norm")
    dims = _feature_dims(len(shape))
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    xhat = (x - mu) * rstd
    y = xhat if weight is None else xhat * weight
    if bias is not None:
        y = y + bias
    return y, LayerNormCache(xhat, rstd, weight, bias is not None, len(shape))


def layer_norm_backward(
    dy: Tensor, cache: LayerNormCache
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Gradients of LayerNorm, derived by hand.

    Notation for one normalized vector (D features, index i, j; ``mean`` is over those D)::

        xhat_j = (x_j - mu) / sigma,   y_j = w_j xhat_j + b_j,   dy_j = dL/dy_j

    Parameters (summed over every batch position, since w and b are shared)::

        dL/db = sum dy,   dL/dw = sum dy * xhat,   and   dxhat_j = dL/dxhat_j = dy_j w_j

    Input.  With ``dmu/dx_i = 1/D`` and, because ``d var/dx_i = 2 (x_i - mu) / D`` (the term
    through mu vanishes as sum_j (x_j - mu) = 0), ``dsigma/dx_i = xhat_i / D``::

        dxhat_j/dx_i = (delta_ij - 1/D) / sigma - (x_j - mu) / sigma^2 * xhat_i / D
                     = (1/sigma) (delta_ij - 1/D - xhat_i xhat_j / D)

    and summing ``dxhat_j * dxhat_j/dx_i`` over j::

        dx = (1/sigma) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    The two subtracted terms remove the components of the gradient along the directions that
    normalization removes from x: a constant shift and a rescaling.

    Args:
        dy: upstream gradient, shape (..., *normalized_shape).
        cache: from :func:`layer_norm`.

    Returns:
        (dx, dweight, dbias): dx of the shape of dy; dweight and dbias of normalized_shape,
        or None where the forward had no weight / bias.
    """
    xhat, rstd, weight, has_bias, k = cache
    dims = _feature_dims(k)
    dbias = _sum_over_batch(dy, k) if has_bias else None
    dweight = _sum_over_batch(dy * xhat, k) if weight is not None else None
    dxhat = dy if weight is None else dy * weight
    mean_dxhat = dxhat.mean(dim=dims, keepdim=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(dim=dims, keepdim=True)
    dx = rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)
    return dx, dweight, dbias


class LayerNormFunction(torch.autograd.Function):
    """Autograd wrapper: forward :func:`layer_norm`, backward :func:`layer_norm_backward`.

    Usage: ``LayerNormFunction.apply(x, weight, bias, normalized_shape, eps)`` with
    weight / bias possibly None.  The backward is not itself differentiable (no double backward).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        normalized_shape: tuple[int, ...],
        eps: float,
    ) -> Tensor:
        y, cache = layer_norm(x, weight, bias, eps, normalized_shape=normalized_shape)
        ctx.save_for_backward(cache.xhat, cache.rstd, weight)
        ctx.has_bias, ctx.k = cache.has_bias, cache.k
        return y

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, dy: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        xhat, rstd, weight = ctx.saved_tensors
        cache = LayerNormCache(xhat, rstd, weight, ctx.has_bias, ctx.k)
        dx, dweight, dbias = layer_norm_backward(dy, cache)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return (
            dx if need_x else None,
            dweight if need_w else None,
            dbias if need_b else None,
            None,
            None,
        )


class LayerNorm(nn.Module):
    """LayerNorm over the trailing ``normalized_shape`` dims, with the hand-written backward.

    Same arguments, parameters and state-dict keys as :class:`torch.nn.LayerNorm`.
    Input (..., *normalized_shape) -> output of the same shape.

    Args:
        normalized_shape: int (last dim, e.g. d_model) or tuple (last k dims).
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (init 1) and, if ``bias``, ``bias`` (init 0).
        bias: learn a bias (only with ``elementwise_affine``).
    """

    def __init__(
        self,
        normalized_shape: ShapeLike,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        kw = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **kw))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **kw))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (..., *normalized_shape) -> same."""
        _check_trailing_shape(x, self.normalized_shape, type(self).__name__)
        return LayerNormFunction.apply(x, self.weight, self.bias, self.normalized_shape, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


# ---------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------


class RMSNormCache(NamedTuple):
    """What :func:`rms_norm_backward` needs: xhat = x / rms, rrms = 1 / rms (keepdim), weight, k."""

    xhat: Tensor
    rrms: Tensor
    weight: Tensor | None
    k: int


def rms_norm(
    x: Tensor,
    weight: Tensor | None,
    eps: float | None = None,
    *,
    normalized_shape: ShapeLike | None = None,
) -> tuple[Tensor, RMSNormCache]:
    """RMSNorm forward: ``y = x / sqrt(mean(x^2) + eps) * weight`` over the trailing dims.

    As :class:`torch.nn.RMSNorm`, ``eps=None`` means ``torch.finfo(x.dtype).eps``.

    Args:
        x: input, shape (..., *normalized_shape).
        weight: scale, shape normalized_shape, or None.
        eps: added to the mean square.
        normalized_shape: the trailing shape; needed only when ``weight`` is None.

    Returns:
        y of the shape of x, and a :class:`RMSNormCache`.
    """
    shape = _resolve_shape(weight, normalized_shape, "rms_norm")
    _check_trailing_shape(x, shape, "rms_norm")
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    rrms = torch.rsqrt((x * x).mean(dim=_feature_dims(len(shape)), keepdim=True) + eps)
    xhat = x * rrms
    y = xhat if weight is None else xhat * weight
    return y, RMSNormCache(xhat, rrms, weight, len(shape))


def rms_norm_backward(dy: Tensor, cache: RMSNormCache) -> tuple[Tensor, Tensor | None]:
    """Gradients of RMSNorm: LayerNorm's derivation without the mean.

    With r = sqrt(mean(x^2) + eps), xhat = x / r and dr/dx_i = xhat_i / D::

        dxhat_j/dx_i = (1/r) (delta_ij - xhat_i xhat_j / D)
        dx = (1/r) * (dxhat - xhat * mean(dxhat * xhat)),   dxhat = dy * weight
        dweight = sum over batch positions of dy * xhat

    Args:
        dy: upstream gradient, shape (..., *normalized_shape).
        cache: from :func:`rms_norm`.

    Returns:
        (dx, dweight): dx of the shape of dy, dweight of normalized_shape or None.
    """
    xhat, rrms, weight, k = cache
    dweight = _sum_over_batch(dy * xhat, k) if weight is not None else None
    dxhat = dy if weight is None else dy * weight
    mean_dxhat_xhat = (dxhat * xhat).mean(dim=_feature_dims(k), keepdim=True)
    return rrms * (dxhat - xhat * mean_dxhat_xhat), dweight


class RMSNormFunction(torch.autograd.Function):
    """Autograd wrapper: ``RMSNormFunction.apply(x, weight, normalized_shape, eps)``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        normalized_shape: tuple[int, ...],
        eps: float | None,
    ) -> Tensor:
        y, cache = rms_norm(x, weight, eps, normalized_shape=normalized_shape)
        ctx.save_for_backward(cache.xhat, cache.rrms, weight)
        ctx.k = cache.k
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        xhat, rrms, weight = ctx.saved_tensors
        dx, dweight = rms_norm_backward(dy, RMSNormCache(xhat, rrms, weight, ctx.k))
        need_x, need_w = ctx.needs_input_grad[:2]
        return (dx if need_x else None, dweight if need_w else None, None, None)


class RMSNorm(nn.Module):
    """RMSNorm over the trailing dims, as :class:`torch.nn.RMSNorm` (same arguments and keys).

    Input (..., *normalized_shape) -> output of the same shape.

    Args:
        normalized_shape: int (last dim) or tuple (last k dims).
        eps: added to the mean square; None means ``torch.finfo(x.dtype).eps``.
        elementwise_affine: learn ``weight`` (init 1).
    """

    def __init__(
        self,
        normalized_shape: ShapeLike,
        eps: float | None = None,
        elementwise_affine: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(
                torch.ones(self.normalized_shape, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("weight", None)

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (..., *normalized_shape) -> same."""
        _check_trailing_shape(x, self.normalized_shape, type(self).__name__)
        return RMSNormFunction.apply(x, self.weight, self.normalized_shape, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


# ---------------------------------------------------------------------------------------------
# BatchNorm1d, for contrast (plain autograd)
# ---------------------------------------------------------------------------------------------


class BatchNorm1d(nn.Module):
    """BatchNorm over the batch (and length) axis, as :class:`torch.nn.BatchNorm1d`.

    Input (N, C) or (N, C, L) -> same shape.  Per channel c, with n = N (or N * L) values:

    * training: normalize with the batch mean and the *biased* batch variance, and update
      ``running_mean = (1 - momentum) running_mean + momentum * mean`` and the same for
      ``running_var`` with the *unbiased* variance (times n / (n - 1));
    * eval: normalize with ``running_mean`` and ``running_var``.

    Then ``y = xhat * weight + bias`` if ``affine``.  Same buffers and state-dict keys as torch
    (running stats always tracked; ``momentum`` must be a float).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        kw = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **kw))
            self.bias = nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _check_input(self, x: Tensor) -> None:
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            c = self.num_features
            raise ValueError(
                f"BatchNorm1d expected input of shape (N, {c}) or (N, {c}, L), got {tuple(x.shape)}"
            )

    def _per_channel(self, t: Tensor, x: Tensor) -> Tensor:
        """Shape (C,) -> (1, C) or (1, C, 1), to broadcast against x."""
        return rearrange(t, "c -> 1 c") if x.ndim == 2 else rearrange(t, "c -> 1 c 1")

    def _batch_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel mean and biased variance over N (and L); updates the running stats."""
        dims = (0,) if x.ndim == 2 else (0, 2)
        n = x.numel() // self.num_features
        if n < 2:
            raise ValueError(
                f"BatchNorm1d in training mode needs more than 1 value per channel, "
                f"got input of shape {tuple(x.shape)}"
            )
        mean = x.mean(dim=dims)
        var = ((x - self._per_channel(mean, x)) ** 2).mean(dim=dims)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
            self.num_batches_tracked.add_(1)
        return mean, var

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (N, C) -> (N, C) or (N, C, L) -> (N, C, L)."""
        self._check_input(x)
        if self.training:
            mean, var = self._batch_stats(x)
        else:
            mean, var = self.running_mean, self.running_var
        xhat = (x - self._per_channel(mean, x)) / torch.sqrt(self._per_channel(var, x) + self.eps)
        if self.weight is not None:
            xhat = xhat * self._per_channel(self.weight, x) + self._per_channel(self.bias, x)
        return xhat

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )
