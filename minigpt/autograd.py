"""A tiny reverse-mode automatic differentiation engine over NumPy arrays.

PyTorch computes gradients for us with ``loss.backward()``. This module opens that box. A
:class:`Tensor` wraps a NumPy array ``data`` and remembers how it was made: the tensors it was
computed from (its *parents*) and a small function that, given the gradient of the final loss with
respect to this tensor, adds the matching gradients into the parents. That function is the
*local* chain rule of one operation; each one below carries its formula as a comment.

``loss.backward()`` then does two things:

1. **Topological sort.** Walk the graph from ``loss`` and order the nodes so that every node comes
   after all the nodes it was computed from.
2. **Reverse sweep.** Seed ``dloss/dloss = 1`` and visit the nodes in reverse order; when a node is
   visited, every use of it has already sent its gradient in, so its ``.grad`` is complete and can
   be pushed on to its parents.

Broadcasting needs one extra idea. If ``b`` of shape ``(4,)`` is added to ``x`` of shape ``(3, 4)``,
``b`` was implicitly copied 3 times, so its gradient is the *sum* of the 3 copies' gradients.
:func:`unbroadcast` undoes broadcasting this way and every binary operation calls it.

The module ends with finite-difference gradient checks (:func:`numerical_gradient`,
:func:`gradient_check`, :func:`torch_gradient_check`) that other chapters reuse to test
hand-written backward passes.

Example::

    >>> x = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> w = Tensor(np.array([[0.5], [-1.0]]))
    >>> loss = (x @ w).tanh().sum()
    >>> loss.backward()
    >>> x.grad.shape, w.grad.shape
    ((2, 2), (2, 1))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Tensor",
    "as_tensor",
    "cross_entropy",
    "gradient_check",
    "linear_backward",
    "log_softmax",
    "numerical_gradient",
    "numerical_gradients",
    "relative_error",
    "softmax",
    "torch_gradient_check",
    "unbroadcast",
]

Axis = int | tuple[int, ...] | None
ArrayLike = Any  # anything np.asarray accepts: ndarray, list, Python/NumPy scalar


# ---------------------------------------------------------------------------------------------
# Broadcasting helpers
# ---------------------------------------------------------------------------------------------


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it has ``shape``.

    If an input of ``shape`` was broadcast to ``grad.shape`` in the forward pass, each of its
    entries was used several times, and the chain rule adds up the gradients of all the uses.

    Args:
        grad: gradient with respect to the broadcast result, shape ``(*lead, *S')``.
        shape: the input's shape ``S``, broadcast-compatible with ``grad.shape``.

    Returns:
        An array of shape ``shape``.

    Example: ``unbroadcast(np.ones((2, 3, 4)), (3, 1))`` has shape ``(3, 1)``, every entry 8.
    """
    shape = tuple(shape)
    if len(shape) > grad.ndim or any(
        s != 1 and s != g for s, g in zip(shape[::-1], grad.shape[::-1], strict=False)
    ):
        raise ValueError(
            f"unbroadcast: shape {shape} does not broadcast to gradient shape {grad.shape}; "
            "each dimension of the target shape must be 1 or equal to the gradient's dimension"
        )
    # 1. Leading axes that broadcasting prepended: sum them away.
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    # 2. Axes of size 1 that broadcasting stretched: sum them, keeping the size-1 axis.
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _normalize_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """Turn ``axis`` (None, int or tuple, possibly negative) into sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % ndim)
    return tuple(sorted(out))


def _expand_reduced(grad: np.ndarray, axis: Axis, keepdims: bool, shape: tuple[int, ...]):
    """Broadcast the gradient of a reduction (sum/mean) back to the input ``shape``."""
    if not keepdims:
        grad = np.expand_dims(grad, _normalize_axes(axis, len(shape)))
    return np.broadcast_to(grad, shape)


# ---------------------------------------------------------------------------------------------
# The Tensor
# ---------------------------------------------------------------------------------------------


class Tensor:
    """An ndarray that records the operations applied to it, so gradients can flow back.

    Attributes:
        data: the value, a floating-point ``np.ndarray`` of any shape.
        grad: ``dloss/ddata`` after :meth:`backward`, same shape as ``data`` (``None`` before).
        requires_grad: whether gradients are accumulated into this tensor.
        name: an optional label, handy when printing graphs.
    """

    __array_ufunc__ = None  # make ``ndarray + Tensor`` call Tensor.__radd__, not NumPy

    def __init__(
        self,
        data: ArrayLike,
        requires_grad: bool = True,
        name: str = "",
        _parents: tuple[Tensor, ...] = (),
        _op: str = "",
    ) -> None:
        array = np.asarray(data)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)  # integers/bools become float64
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self.name = name
        self._parents = _parents
        self._op = _op
        self._backward: Callable[[np.ndarray], None] = lambda g: None

    # -- small conveniences ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def T(self) -> Tensor:  # the name mirrors numpy and torch
        return self.transpose()

    def __repr__(self) -> str:
        label = f", name={self.name!r}" if self.name else ""
        op = f", op={self._op!r}" if self._op else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{op}{label})"

    def item(self) -> float:
        return float(self.data.item())

    def numpy(self) -> np.ndarray:
        return self.data

    def zero_grad(self) -> None:
        self.grad = None

    def _accumulate(self, grad: np.ndarray) -> None:
        """Add an incoming gradient: a tensor used twice receives the sum of both gradients."""
        if not self.requires_grad:
            return
        assert grad.shape == self.shape, (grad.shape, self.shape)  # internal invariant
        if self.grad is None:
            self.grad = np.array(grad, dtype=self.dtype)  # a copy, never an alias
        else:
            self.grad = (self.grad + grad).astype(self.dtype, copy=False)

    def _child(self, data: np.ndarray, parents: tuple[Tensor, ...], op: str) -> Tensor:
        """Create the output of an operation; it needs gradients if any parent does."""
        return Tensor(
            data, requires_grad=any(p.requires_grad for p in parents), _parents=parents, _op=op
        )

    # -- backward --------------------------------------------------------------------------

    def backward(self, grad: ArrayLike | None = None) -> None:
        """Compute ``d self / d t`` for every tensor ``t`` in the graph and add it to ``t.grad``.

        Args:
            grad: the upstream gradient, same shape as ``self``. May be omitted when ``self``
                holds a single number (a loss), in which case it is 1.
        """
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a single-element tensor (a loss), got "
                    f"shape {self.shape}; pass grad= of that shape or reduce with .sum()/.mean()"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad has shape {grad.shape}, expected {self.shape}")

        order = self._topological_order()
        for node in order:  # intermediate gradients from an earlier backward() are stale
            if node._parents:
                node.grad = None
        self._accumulate(grad)
        for node in reversed(order):  # the loss first, the leaves last
            if node.grad is not None and node._parents:
                node._backward(node.grad)

    def _topological_order(self) -> list[Tensor]:
        """Nodes reachable from ``self``, each after all of its parents (iterative DFS)."""
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in visited or not node.requires_grad:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in visited)
        return order

    # -- elementwise arithmetic (with broadcasting) --------------------------------------------

    def __add__(self, other: ArrayLike) -> Tensor:
        other = as_tensor(other, self.dtype)
        out = self._child(self.data + other.data, (self, other), "add")

        def backward(g: np.ndarray) -> None:
            # z = a + b:  dz/da = 1,  dz/db = 1
            self._accumulate(unbroadcast(g, self.shape))
            other._accumulate(unbroadcast(g, other.shape))

        out._backward = backward
        return out

    def __sub__(self, other: ArrayLike) -> Tensor:
        other = as_tensor(other, self.dtype)
        out = self._child(self.data - other.data, (self, other), "sub")

        def backward(g: np.ndarray) -> None:
            # z = a - b:  dz/da = 1,  dz/db = -1
            self._accumulate(unbroadcast(g, self.shape))
            other._accumulate(unbroadcast(-g, other.shape))

        out._backward = backward
        return out

    def __neg__(self) -> Tensor:
        out = self._child(-self.data, (self,), "neg")
        # z = -a:  dz/da = -1
        out._backward = lambda g: self._accumulate(-g)
        return out

    def __mul__(self, other: ArrayLike) -> Tensor:
        other = as_tensor(other, self.dtype)
        out = self._child(self.data * other.data, (self, other), "mul")

        def backward(g: np.ndarray) -> None:
            # z = a * b:  dz/da = b,  dz/db = a
            self._accumulate(unbroadcast(g * other.data, self.shape))
            other._accumulate(unbroadcast(g * self.data, other.shape))

        out._backward = backward
        return out

    def __truediv__(self, other: ArrayLike) -> Tensor:
        other = as_tensor(other, self.dtype)
        out = self._child(self.data / other.data, (self, other), "div")

        def backward(g: np.ndarray) -> None:
            # z = a / b:  dz/da = 1 / b,  dz/db = -a / b^2
            self._accumulate(unbroadcast(g / other.data, self.shape))
            other._accumulate(unbroadcast(-g * self.data / other.data**2, other.shape))

        out._backward = backward
        return out

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise ValueError(
                "pow: only a constant scalar exponent (int or float) is supported, got "
                f"{type(exponent).__name__}; for a tensor exponent write (b * a.log()).exp()"
            )
        p = float(exponent)
        out = self._child(self.data**p, (self,), f"pow{p:g}")
        # z = a^p:  dz/da = p * a^(p-1)
        out._backward = lambda g: self._accumulate(g * p * self.data ** (p - 1))
        return out

    def __radd__(self, other: ArrayLike) -> Tensor:
        return as_tensor(other, self.dtype) + self

    def __rsub__(self, other: ArrayLike) -> Tensor:
        return as_tensor(other, self.dtype) - self

    def __rmul__(self, other: ArrayLike) -> Tensor:
        return as_tensor(other, self.dtype) * self

    def __rtruediv__(self, other: ArrayLike) -> Tensor:
        return as_tensor(other, self.dtype) / self

    # -- matrix multiplication -----------------------------------------------------------------

    def __matmul__(self, other: ArrayLike) -> Tensor:
        """Batched matrix product ``(..., n, k) @ (..., k, m) -> (..., n, m)``, as ``np.matmul``.

        Batch dimensions broadcast, so ``(B, T, C) @ (C, D) -> (B, T, D)`` works. A 1-D left
        operand is treated as a row ``(1, k)`` and a 1-D right operand as a column ``(k, 1)``;
        the added axis is removed from the result.
        """
        a, b = self, as_tensor(other)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and "
                f"{b.shape}; use * for multiplication by a scalar"
            )
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if a.shape[-1] != k_b:
            raise ValueError(
                f"matmul: shape mismatch {a.shape} @ {b.shape}; the last dimension of the left "
                f"operand ({a.shape[-1]}) must equal the second-to-last of the right ({k_b})"
            )
        if a.ndim == 1:  # (k,) -> (1, k), multiply, then drop that axis again
            out = a.reshape(1, -1) @ b  # (..., 1, m), or (1,) if b is 1-D too
            return out.reshape(out.shape[:-2] + out.shape[-1:] if b.ndim > 1 else ())
        if b.ndim == 1:  # (k,) -> (k, 1), multiply, then drop that axis again
            return (a @ b.reshape(-1, 1)).reshape(a.shape[:-1])
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions {a.shape[:-2]} and {b.shape[:-2]} do not broadcast"
            ) from None
        out = self._child(a.data @ b.data, (a, b), "matmul")

        def backward(g: np.ndarray) -> None:
            # Z = A @ B:  dL/dA = dL/dZ @ B^T,  dL/dB = A^T @ dL/dZ  (then undo batch broadcasting)
            a._accumulate(unbroadcast(g @ np.swapaxes(b.data, -1, -2), a.shape))
            b._accumulate(unbroadcast(np.swapaxes(a.data, -1, -2) @ g, b.shape))

        out._backward = backward
        return out

    def __rmatmul__(self, other: ArrayLike) -> Tensor:
        return as_tensor(other) @ self

    # -- reductions ----------------------------------------------------------------------------

    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes if None); ``keepdims`` keeps reduced axes with size 1."""
        _normalize_axes(axis, self.ndim)  # validate early
        out = self._child(np.sum(self.data, axis=axis, keepdims=keepdims), (self,), "sum")
        # z = sum_i a_i:  dz/da_i = 1, so every summed entry receives the output's gradient
        out._backward = lambda g: self._accumulate(_expand_reduced(g, axis, keepdims, self.shape))
        return out

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis``; the gradient is the sum's gradient divided by the count ``n``."""
        n = int(np.prod([self.shape[a] for a in _normalize_axes(axis, self.ndim)]))
        out = self._child(np.mean(self.data, axis=axis, keepdims=keepdims), (self,), "mean")
        # z = (1/n) sum_i a_i:  dz/da_i = 1/n
        out._backward = lambda g: self._accumulate(
            _expand_reduced(g, axis, keepdims, self.shape) / n
        )
        return out

    # -- elementwise functions -----------------------------------------------------------------

    def exp(self) -> Tensor:
        out = self._child(np.exp(self.data), (self,), "exp")
        # z = e^a:  dz/da = e^a = z
        out._backward = lambda g: self._accumulate(g * out.data)
        return out

    def log(self) -> Tensor:
        out = self._child(np.log(self.data), (self,), "log")
        # z = ln a:  dz/da = 1 / a
        out._backward = lambda g: self._accumulate(g / self.data)
        return out

    def tanh(self) -> Tensor:
        out = self._child(np.tanh(self.data), (self,), "tanh")
        # z = tanh a:  dz/da = 1 - tanh^2 a = 1 - z^2
        out._backward = lambda g: self._accumulate(g * (1.0 - out.data**2))
        return out

    def relu(self) -> Tensor:
        out = self._child(np.maximum(self.data, 0.0), (self,), "relu")
        # z = max(a, 0):  dz/da = 1 if a > 0 else 0  (0 at a == 0, as PyTorch)
        out._backward = lambda g: self._accumulate(g * (self.data > 0))
        return out

    def softmax(self, axis: int = -1) -> Tensor:
        return softmax(self, axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return log_softmax(self, axis)

    # -- shape operations ----------------------------------------------------------------------

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        """Same data, new shape; accepts ``reshape(2, 3)`` or ``reshape((2, 3))``."""
        new_shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        try:
            data = self.data.reshape(new_shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.shape} ({self.data.size} "
                f"elements) into {new_shape}"
            ) from None
        out = self._child(data, (self,), "reshape")
        # reshape only moves entries around: the gradient is reshaped back
        out._backward = lambda g: self._accumulate(g.reshape(self.shape))
        return out

    def transpose(self, *axes: int) -> Tensor:
        """Permute axes (reverse them if none are given), like ``np.transpose``."""
        perm = tuple(range(self.ndim))[::-1] if not axes else tuple(axes)
        if len(perm) == 1 and isinstance(perm[0], tuple):
            perm = perm[0]
        if sorted(a % max(self.ndim, 1) for a in perm) != list(range(self.ndim)):
            raise ValueError(f"transpose: {perm} is not a permutation of {self.ndim} axes")
        out = self._child(np.transpose(self.data, perm), (self,), "transpose")
        # the inverse permutation sends each gradient entry back where it came from
        out._backward = lambda g: self._accumulate(np.transpose(g, np.argsort(perm)))
        return out


def as_tensor(x: ArrayLike, dtype: np.dtype | None = None) -> Tensor:
    """Return ``x`` if it is a Tensor, else wrap it as a constant (``requires_grad=False``).

    A Python number takes ``dtype`` when given, so ``float32_tensor * 2.0`` stays float32.
    """
    if isinstance(x, Tensor):
        return x
    if dtype is not None and isinstance(x, int | float):
        x = np.asarray(x, dtype=dtype)
    return Tensor(x, requires_grad=False)


# ---------------------------------------------------------------------------------------------
# Softmax and cross-entropy
# ---------------------------------------------------------------------------------------------


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """``log(sum(exp(x)))`` along ``axis`` (keepdims), stable: subtract the max before exp."""
    m = np.max(x, axis=axis, keepdims=True)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``s_i = exp(x_i) / sum_j exp(x_j)`` along ``axis``; output has the shape of ``x``."""
    _normalize_axes(axis, x.ndim)
    s = np.exp(x.data - _logsumexp(x.data, axis))
    out = x._child(s, (x,), "softmax")

    def backward(g: np.ndarray) -> None:
        # ds_i/dx_j = s_i (delta_ij - s_j)  =>  dL/dx = s * (g - sum_j g_j s_j)
        x._accumulate(s * (g - np.sum(g * s, axis=axis, keepdims=True)))

    out._backward = backward
    return out


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``x_i - log sum_j exp(x_j)`` along ``axis``, computed without overflow."""
    _normalize_axes(axis, x.ndim)
    out = x._child(x.data - _logsumexp(x.data, axis), (x,), "log_softmax")

    def backward(g: np.ndarray) -> None:
        # dz_i/dx_j = delta_ij - s_j  =>  dL/dx = g - s * sum_i g_i
        s = np.exp(out.data)
        x._accumulate(g - s * np.sum(g, axis=axis, keepdims=True))

    out._backward = backward
    return out


def cross_entropy(logits: Tensor, targets: ArrayLike) -> Tensor:
    """Mean negative log-likelihood of integer ``targets`` under ``softmax(logits)``.

    Args:
        logits: unnormalized scores, shape ``(N, C)`` or ``(B, T, C)`` (any leading dims).
        targets: class indices in ``[0, C)``, shape ``(N,)`` or ``(B, T)``: the leading dims.

    Returns:
        A scalar tensor: ``-(1/N) sum_n log softmax(logits_n)[targets_n]``.
    """
    targets = np.asarray(targets)
    if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: targets must have the logits' shape without the last (class) axis: "
            f"logits {logits.shape} needs targets {logits.shape[:-1]}, got {targets.shape}"
        )
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    num_classes = logits.shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"cross_entropy: targets must lie in [0, {num_classes}), got values in "
            f"[{targets.min()}, {targets.max()}]"
        )
    z = logits.data.reshape(-1, num_classes)  # (N, C)
    y = targets.reshape(-1)  # (N,)
    n = z.shape[0]
    logp = z - _logsumexp(z, axis=-1)  # (N, C)
    loss = -np.mean(logp[np.arange(n), y])
    out = logits._child(np.asarray(loss, dtype=logits.dtype), (logits,), "cross_entropy")

    def backward(g: np.ndarray) -> None:
        # L = -(1/N) sum_n log softmax(z_n)[y_n]  =>  dL/dz_n = (softmax(z_n) - onehot(y_n)) / N
        dz = np.exp(logp)
        dz[np.arange(n), y] -= 1.0
        logits._accumulate((g * dz / n).reshape(logits.shape))

    out._backward = backward
    return out


# ---------------------------------------------------------------------------------------------
# A backward rule written out by hand
# ---------------------------------------------------------------------------------------------


def linear_backward(
    x: np.ndarray, w: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backward pass of a linear layer ``y = x @ w + b``, without the engine.

    Given the upstream gradient ``grad_out = dL/dy``, the chain rule gives

    * ``dL/dx = grad_out @ w.T``: each input feeds every output through one weight;
    * ``dL/dw = x.T @ grad_out``: a sum over the ``N`` rows of the batch;
    * ``dL/db = grad_out.sum(axis=0)``: ``b`` was broadcast to every row, so its gradient is
      the sum of the rows' gradients (what :func:`unbroadcast` does).

    Args:
        x: inputs, shape ``(N, D_in)``.
        w: weights, shape ``(D_in, D_out)``.
        grad_out: ``dL/dy``, shape ``(N, D_out)``.

    Returns:
        ``(dL/dx, dL/dw, dL/db)`` with shapes ``(N, D_in)``, ``(D_in, D_out)``, ``(D_out,)``.

    Example:

    >>> dx, dw, db = linear_backward(np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4)))
    >>> dx.shape, dw.shape, db.shape
    ((2, 3), (3, 4), (4,))
    >>> db
    array([2., 2., 2., 2.])
    """
    x, w, grad_out = np.asarray(x), np.asarray(w), np.asarray(grad_out)
    if x.ndim != 2 or w.ndim != 2 or grad_out.ndim != 2:
        raise ValueError(
            f"linear_backward: x, w and grad_out must be 2-D, got shapes {x.shape}, {w.shape}, "
            f"{grad_out.shape}"
        )
    if x.shape[1] != w.shape[0] or grad_out.shape != (x.shape[0], w.shape[1]):
        raise ValueError(
            f"linear_backward: x {x.shape} @ w {w.shape} needs grad_out of shape "
            f"({x.shape[0]}, {w.shape[1]}), got {grad_out.shape}"
        )
    grad_x = grad_out @ w.T  # (N, D_out) @ (D_out, D_in) -> (N, D_in)
    grad_w = x.T @ grad_out  # (D_in, N) @ (N, D_out) -> (D_in, D_out)
    grad_b = grad_out.sum(axis=0)  # (D_out,)
    return grad_x, grad_w, grad_b


# ---------------------------------------------------------------------------------------------
# Finite-difference gradient checks
# ---------------------------------------------------------------------------------------------


def _to_float(value: Any) -> float:
    """A scalar from a Tensor, torch tensor, ndarray or number; error if not one element."""
    if isinstance(value, Tensor):
        value = value.data
    elif hasattr(value, "detach"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(
            f"the checked function must return a single number (e.g. a loss), got shape "
            f"{array.shape}; reduce it, e.g. with (out * weights).sum()"
        )
    return float(array.reshape(()))


def numerical_gradient(
    f: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central-difference estimate of the gradient of a scalar function ``f`` at ``x``.

    ``df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``, with error ``O(eps^2)``. Costs two
    calls of ``f`` per entry of ``x``, so use it on small inputs. Work in float64: in float32 the
    rounding error ``~1e-7 / eps`` swamps the estimate.

    Args:
        f: maps an array of ``x.shape`` to one number (ndarray, Tensor or torch scalar).
        x: the point, any shape; it is not modified.
        eps: the step size.

    Returns:
        An array of ``x.shape`` (float64).
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    x = np.array(x, dtype=np.float64)  # a private copy we can perturb
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views into x and grad
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + eps
        f_plus = _to_float(f(x))
        flat_x[i] = original - eps
        f_minus = _to_float(f(x))
        flat_x[i] = original
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def numerical_gradients(
    f: Callable[..., Any], inputs: Sequence[np.ndarray], eps: float = 1e-6
) -> list[np.ndarray]:
    """Central-difference gradients of ``f(*inputs)`` with respect to each input in turn."""
    arrays = [np.asarray(x, dtype=np.float64) for x in inputs]
    grads = []
    for k in range(len(arrays)):

        def f_k(xk: np.ndarray, k: int = k) -> Any:
            return f(*arrays[:k], xk, *arrays[k + 1 :])

        grads.append(numerical_gradient(f_k, arrays[k], eps))
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(max|a|, max|b|)``: 0 when equal, about 1 when unrelated.

    Scaling by the largest entry (not entry by entry) keeps gradient entries that are almost
    zero from producing huge ratios out of tiny finite-difference noise. Two all-zero arrays
    give 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: shapes differ: {a.shape} vs {b.shape}")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    diff = np.max(np.abs(a - b), initial=0.0)
    return 0.0 if diff == 0 else float(diff / scale)


def gradient_check(
    f: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    grads: Sequence[np.ndarray] | None = None,
    eps: float = 1e-6,
) -> float:
    """Compare analytic gradients of ``f(*inputs)`` with finite differences.

    Two ways to use it:

    * ``grads`` given: ``f`` is a plain NumPy function and ``grads[k]`` is your hand-derived
      ``df/dinputs[k]`` (e.g. from a manual backward pass).
    * ``grads`` omitted: ``f`` is written with :class:`Tensor` operations and the analytic
      gradients come from this module's ``backward()``.

    Returns:
        The largest :func:`relative_error` over the inputs. With ``eps=1e-6`` in float64, a
        correct gradient gives about 1e-8 or less; 1e-2 or more means a bug.
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in inputs]
    if grads is None:
        tensors = [Tensor(x.copy()) for x in arrays]
        out = f(*tensors)
        if not isinstance(out, Tensor):
            raise ValueError(
                "gradient_check without grads= needs f to return a minigpt Tensor; for a plain "
                "NumPy function pass your analytic gradients as grads="
            )
        _to_float(out)  # must be a single number
        out.backward()
        grads = [np.zeros_like(t.data) if t.grad is None else t.grad for t in tensors]

        def f_numeric(*xs: np.ndarray) -> Any:
            return f(*[Tensor(x, requires_grad=False) for x in xs])

    else:
        if len(grads) != len(arrays):
            raise ValueError(f"got {len(grads)} gradients for {len(arrays)} inputs")
        f_numeric = f
    numeric = numerical_gradients(f_numeric, arrays, eps)
    return max(relative_error(g, n) for g, n in zip(grads, numeric, strict=True))


def torch_gradient_check(f: Callable[..., Any], inputs: Sequence[Any], eps: float = 1e-6) -> float:
    """:func:`gradient_check` for a function of torch tensors, using ``torch.autograd``.

    The inputs are copied to float64; ``f(*inputs)`` must return a scalar torch tensor. Returns
    the largest relative error between autograd's gradients and central differences.
    """
    import torch  # imported lazily: the engine above only needs NumPy

    leaves = [torch.as_tensor(x).detach().to(torch.float64).requires_grad_(True) for x in inputs]
    out = f(*leaves)
    _to_float(out)  # must be a single number
    analytic = torch.autograd.grad(out, leaves, allow_unused=True)
    grads = [
        np.zeros(tuple(x.shape)) if g is None else g.detach().cpu().numpy()
        for x, g in zip(leaves, analytic, strict=True)
    ]

    def f_numpy(*xs: np.ndarray) -> float:
        with torch.no_grad():
            return _to_float(f(*[torch.from_numpy(x) for x in xs]))

    arrays = [x.detach().cpu().numpy() for x in leaves]
    return gradient_check(f_numpy, arrays, grads, eps)
