"""GPT-3's training recipe for a :class:`~minigpt.model.GPT`, small enough to read in one sitting.

What Brown et al. (2020, appendix B) describe, and where it lives here:

* **Adam(W)** with ``β1 = 0.9``, ``β2 = 0.95``, ``ε = 1e-8`` and weight decay 0.1 on matrices
  (:func:`minigpt.model.configure_optimizer`);
* **global-norm gradient clipping** at 1.0 (:func:`minigpt.optim.clip_grad_norm_`);
* **linear warmup, then cosine decay to 10 %** of the peak learning rate, counted in tokens
  (:func:`minigpt.optim.warmup_cosine_schedule`);
* a **batch-size ramp**: the batch grows linearly, in tokens seen, from a small start to the
  full batch (:func:`minigpt.optim.batch_size_schedule`), realised here by **gradient
  accumulation** over micro-batches of a fixed size;
* **documents packed** into full-length sequences, separated by ``<|endoftext|>``, so that no
  compute is spent on padding (:func:`pack_documents`, :class:`TokenBatcher`).

On a GPU, :class:`TrainConfig` adds what makes this fast (see :mod:`minigpt.gpu`): **mixed
precision** (``precision``: bf16 autocast, or fp16 with a gradient scaler on GPUs without
bf16), ``torch.compile`` (``compile``), the **fused AdamW** kernel (``fused_adamw``), a
**wall-clock budget** (``time_budget_s``), and the **MFU** of every step when the GPU's peak
FLOP/s is known.

:class:`Trainer` also evaluates on held-out data every ``eval_interval`` steps, records metrics
(loss, learning rate, gradient norm, batch size, tokens/s) in :attr:`Trainer.history`, draws
them with :func:`plot_metrics`, and writes checkpoints holding everything a run depends on
(weights, optimizer moments, data position, random-number-generator states), so that a run
stopped and resumed computes the same losses, step for step, as one that never stopped.
Checkpoints are written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which unpickles only tensors and plain containers: loading a file cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt import gpu
from minigpt.config import GPTConfig
from minigpt.early_stopping import EarlyStopping
from minigpt.model import GPT, optimizer_groups
from minigpt.optim import batch_size_schedule, clip_grad_norm_, warmup_cosine_schedule
from minigpt.precision import PRECISIONS, pick_precision, supports_bf16
from minigpt.scaling import flops_per_token

__all__ = [
    "evaluate",
    "Batcher",
    "TokenBatcher",
    "TrainConfig",
    "Trainer",
    "load_checkpoint",
    "pack_documents",
    "plot_metrics",
    "rng_state",
    "sequence_nll",
    "set_rng_state",
    "train_step",
]


# ---------------------------------------------------------------------------------------------
# Data: packing and batching


def pack_documents(documents: Iterable[Sequence[int] | Tensor], eot_id: int) -> Tensor:
    """Concatenate tokenized documents into one stream, each followed by ``eot_id``.

    GPT-2 and GPT-3 train on fixed-length sequences cut from such a stream; a sequence may span
    a document boundary, and the ``<|endoftext|>`` token between them tells the model that the
    text before it is unrelated. Returns a 1-D ``long`` tensor.

    Raises ``ValueError`` if there is no document at all, if a document holds a negative token
    id, or if ``eot_id`` is not an int >= 0. An empty document still adds its ``eot_id``.

    >>> pack_documents([[5, 6, 7], [8]], eot_id=0).tolist()
    [5, 6, 7, 0, 8, 0]
    """
    if isinstance(eot_id, bool) or not isinstance(eot_id, int) or eot_id < 0:
        raise ValueError(f"eot_id must be a token id (an int >= 0), got {eot_id!r}")
    pieces = []
    eot = torch.tensor([eot_id], dtype=torch.long)
    for i, doc in enumerate(documents):
        doc = torch.as_tensor(doc, dtype=torch.long).flatten()
        if doc.numel() and int(doc.min()) < 0:
            raise ValueError(f"document {i} has a negative token id {int(doc.min())}")
        pieces += [doc, eot]
    if not pieces:
        raise ValueError("pack_documents needs at least one document")
    return torch.cat(pieces)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per target) of ``model`` on inputs ``x`` and targets ``y``.

    ``x`` and ``y`` are ``(n, T)`` for a language model whose forward returns logits
    ``(n, T, V)`` (or a ``(logits, loss)`` pair, as :class:`~minigpt.model.GPT`), or ``x (n, ...)``
    and ``y (n,)`` for a classifier of one next token. Targets of ``-100`` are left out. Runs in
    chunks of ``batch_size`` rows, in eval mode, and puts the model back in the mode it was in.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same number (>= 1) of rows, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size])
            logits = out[0] if isinstance(out, tuple) else out
            target = y[i : i + batch_size].reshape(-1).long()
            total += float(F.cross_entropy(logits.reshape(target.numel(), -1).float(), target,
                                           ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
    finally:
        model.train(was_training)
    return total / count


class Batcher(Protocol):
    """What :class:`Trainer` reads its training batches from.

    :class:`TokenBatcher` (windows of a token stream) is the usual one; fine-tuning passes
    :class:`~minigpt.finetune.ExampleBatcher` (whole examples, prompts masked out). The state is
    what a checkpoint stores, so a resumed run reads exactly the batches it would have read.
    """

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Inputs and targets, both ``(batch_size, T)``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The position in the data."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go back to a position returned by :meth:`state_dict`."""
        ...


class TokenBatcher:
    """Fixed-length training sequences cut from a token stream, in a reproducible order.

    The stream ``tokens`` (1-D) is cut into ``n = (len(tokens) - 1) // seq_len`` windows: window
    ``i`` gives inputs ``tokens[i*T : (i+1)*T]`` and targets shifted by one. Each epoch visits
    the windows in a random order drawn from ``seed`` and the epoch number (or in order when
    ``shuffle=False``). The position in the data is two integers, ``(epoch, cursor)``
    (:meth:`state_dict`), so a resumed run reads exactly the batches it would have read.

    >>> b = TokenBatcher(torch.arange(10), seq_len=3, shuffle=False)
    >>> x, y = b.next_batch(2)
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]])
    """

    def __init__(self, tokens: Tensor, seq_len: int, *, seed: int = 0, shuffle: bool = True):
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 1 or tokens.is_floating_point():
            raise ValueError(f"tokens must be a 1-D integer tensor, got {tokens.dtype} "
                             f"of shape {tuple(tokens.shape)}")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        self.n_windows = (tokens.numel() - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(f"{tokens.numel()} tokens are too few for one sequence of "
                             f"{seq_len} (+1 for the last target)")
        self.tokens, self.seq_len = tokens.long(), seq_len
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.cursor = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n_windows)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n_windows, generator=g)

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The next ``batch_size`` windows: ``x, y`` of shape ``(batch_size, seq_len)``."""
        rows = []
        for _ in range(batch_size):
            if self.cursor == self.n_windows:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._make_order()
            start = int(self._order[self.cursor]) * self.seq_len
            rows.append(self.tokens[start : start + self.seq_len + 1])
            self.cursor += 1
        batch = torch.stack(rows)  # (B, T + 1)
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self) -> dict[str, int]:
        """The position in the data: ``{"epoch", "cursor", "seed"}``."""
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Go back to a position saved by :meth:`state_dict`."""
        self.seed, self.epoch, self.cursor = state["seed"], state["epoch"], state["cursor"]
        self._order = self._make_order()


# ---------------------------------------------------------------------------------------------
# Random-number-generator states


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators (CUDA too), as plain tensors and
    containers that ``torch.load(weights_only=True)`` accepts."""
    # NumPy's legacy global generator: what third-party code (and old notebooks) draw from.
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    numpy_state = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                   n["cached"])
    np.random.set_state(numpy_state)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# One training step, on its own


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    grad_clip: float | None = 1.0,
    scheduler: Any = None,
) -> float:
    """One step of GPT-3's recipe on one batch; returns the batch's loss (a float, in nats).

    ``x`` and ``y`` are ``(B, T)`` token ids, ``y`` the next tokens of ``x`` (``y[:, t] =
    stream[t + 1]``); ``model(x, y)`` returns ``(logits (B, T, V), loss)``, the loss a 0-d
    tensor, the mean cross-entropy over the ``B T`` positions. In this order:

    1. put the model in training mode (``model.train()``: dropout on);
    2. discard the gradients left in the parameters (``optimizer.zero_grad()``): PyTorch adds
       every backward pass's gradients to ``.grad``, so without this the steps accumulate;
    3. forward pass and loss, ``_, loss = model(x, y)``, then ``loss.backward()``;
    4. if ``grad_clip`` is not ``None``, clip the gradients of all parameters together to a
       global L2 norm of at most ``grad_clip`` (:func:`minigpt.optim.clip_grad_norm_`; GPT-3
       used 1.0), *before* the update;
    5. ``optimizer.step()``, then, if given, ``scheduler.step()`` (a ``torch.optim.lr_scheduler``:
       the learning rate of the *next* step; this step used the current one).

    The loss returned is ``loss.item()``, measured before the update. Raises ``ValueError`` if
    ``grad_clip`` is neither ``None`` nor a number > 0.

    :class:`Trainer` takes the same step in :meth:`Trainer.train_step`, with what a long run
    adds: it sets the learning rate itself from the token count (no scheduler object),
    accumulates gradients over micro-batches, runs under autocast with a gradient scaler for
    fp16, records the gradient norm, and zeroes the gradients after the update rather than
    before (the same thing between two steps of one trainer). With one micro-batch in fp32 its
    update is this function's.
    """
    if grad_clip is not None and (isinstance(grad_clip, bool) or not grad_clip > 0):
        raise ValueError(f"grad_clip must be a number > 0 or None, got {grad_clip!r}")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _, loss = model(x, y)  # logits (B, T, V); loss: mean cross-entropy, a 0-d tensor
    loss.backward()
    if grad_clip is not None:
        clip_grad_norm_(list(model.parameters()), grad_clip)  # one global norm, all gradients
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


# ---------------------------------------------------------------------------------------------
# The trainer


@dataclass
class TrainConfig:
    """The settings of a training run (GPT-3's values where the paper gives one).

    Attributes:
        max_steps: optimizer steps to take.
        batch_size: full batch, in sequences (GPT-3 175B: 1536 of 2048 tokens).
        micro_batch_size: sequences per forward/backward pass; the batch is accumulated from
            ``batch_size // micro_batch_size`` of them. ``None``: the whole batch at once.
        seq_len: tokens per sequence; ``None``: the model's context.
        lr: peak learning rate (GPT-3 Small: 6e-4).
        min_lr_ratio: the floor of the cosine, as a fraction of ``lr`` (GPT-3: 0.1).
        warmup_tokens: tokens of linear warmup (GPT-3: 375M).
        decay_tokens: tokens at which the cosine reaches its floor, warmup included (GPT-3:
            260B); ``None``: ``max_steps * batch_size * seq_len``.
        batch_ramp_tokens: tokens over which the batch grows from ``start_batch_size`` to
            ``batch_size`` (GPT-3: 4-12B); 0: no ramp.
        start_batch_size: first batch, in sequences (GPT-3: 32k tokens); ``None``:
            ``micro_batch_size``. The ramped batch is a multiple of ``micro_batch_size``.
        weight_decay, betas, eps: AdamW's (GPT-3: 0.1, (0.9, 0.95), 1e-8).
        grad_clip: global gradient-norm bound (GPT-3: 1.0); ``None``: no clipping.
        eval_interval: evaluate every this many steps (and after the last); 0: never.
        eval_batches: micro-batches of validation data per evaluation (always the same ones).
        checkpoint_path, checkpoint_interval: write a checkpoint there every this many steps
            (0: never).
        early_stopping_patience: stop after this many evaluations in a row without a new best
            validation loss (0: never stop early). Whatever it is, the weights of the best
            evaluation are kept in :attr:`Trainer.best_model_state`.
        progress: show a tqdm progress bar (off by default: notebooks and tests), with the
            loss, learning rate, tokens/s and MFU.
        seed: seeds torch, NumPy and Python at the start, and the data order.
        precision: ``"fp32"``; ``"bf16"`` (autocast to bfloat16: matrix products in 16 bits,
            weights, optimizer and reductions in float32); ``"fp16"`` (autocast to float16 with
            a ``torch.amp.GradScaler``: the loss is scaled up before the backward pass, the
            gradients are unscaled before clipping, and a step whose gradients overflowed is
            skipped and the scale halved); or ``"auto"`` (:func:`minigpt.precision.pick_precision`:
            bf16 on GPUs that have it, fp16 on older ones, fp32 on a CPU).
        compile: run the model through ``torch.compile`` (fused kernels; the first steps are
            slow while it compiles).
        fused_adamw: on CUDA, AdamW's single fused kernel instead of its multi-tensor one.
        time_budget_s: stop after the step during which this many seconds of wall-clock time
            have passed since :meth:`Trainer.train` was called (that step is evaluated if there
            is validation data, and checkpointed if there is a ``checkpoint_path``); ``None``:
            no limit.
        peak_flops: the device's peak FLOP/s for the ``mfu`` of each step; ``None``:
            :func:`minigpt.gpu.peak_flops` (known GPUs only; no ``mfu`` on a CPU).
    """

    max_steps: int = 100
    batch_size: int = 8
    micro_batch_size: int | None = None
    seq_len: int | None = None
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_tokens: int = 0
    decay_tokens: int | None = None
    batch_ramp_tokens: int = 0
    start_batch_size: int | None = None
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    eval_interval: int = 0
    eval_batches: int = 4
    checkpoint_path: str | None = None
    checkpoint_interval: int = 0
    early_stopping_patience: int = 0
    progress: bool = False
    seed: int = 0
    precision: str = "fp32"
    compile: bool = False
    fused_adamw: bool = True
    time_budget_s: float | None = None
    peak_flops: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        micro = self.micro
        if self.batch_size % micro:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of "
                             f"micro_batch_size ({micro})")
        start = self.start_batch_size or micro
        if not micro <= start <= self.batch_size or start % micro:
            raise ValueError(f"start_batch_size must be a multiple of micro_batch_size ({micro}) "
                             f"between it and batch_size ({self.batch_size}), got {start}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("warmup_tokens", "batch_ramp_tokens", "eval_interval",
                     "checkpoint_interval", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_interval and not self.checkpoint_path:
            raise ValueError("checkpoint_interval needs a checkpoint_path")
        if self.early_stopping_patience and not self.eval_interval:
            raise ValueError("early_stopping_patience needs an eval_interval (and val_tokens)")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                             f"got {self.precision!r}")
        for name in ("compile", "fused_adamw"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("time_budget_s", "peak_flops"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not value > 0):
                raise ValueError(f"{name} must be a number > 0 or None, got {value!r}")

    @property
    def micro(self) -> int:
        """The micro-batch size in sequences."""
        return self.micro_batch_size or self.batch_size


class Trainer:
    """Trains a :class:`GPT` with GPT-3's recipe; see the module docstring.

    Args:
        model: the model (its device is used for the batches).
        train_data: the packed training stream (1-D, :func:`pack_documents`), cut into windows
            by a :class:`TokenBatcher`; or any :class:`Batcher` to read batches from.
        config: a :class:`TrainConfig`.
        val_tokens: optional held-out stream for :meth:`evaluate`.

    :meth:`train` runs up to ``config.max_steps`` (or ``steps`` more) and returns
    :attr:`history`, one dict per step: ``step``, ``tokens`` (seen so far), ``loss`` (mean over
    the batch), ``lr``, ``grad_norm`` (before clipping), ``batch_size`` (sequences),
    ``tokens_per_s``, ``val_loss`` on evaluation steps, ``mfu`` when the peak FLOP/s is known
    (:attr:`peak_flops`; the model's FLOPs per token are :attr:`flops_per_token`), and with fp16
    ``loss_scale`` and ``skipped`` (True when the scaler skipped the update: the step's data
    and schedule position are used up all the same).

    :attr:`precision` is the precision in use (``config.precision`` with ``"auto"`` resolved)
    and :attr:`scaler` the ``GradScaler`` (fp16 only, else ``None``). :attr:`stopped_by_budget`
    tells whether the last :meth:`train` ran out of ``config.time_budget_s``.

    Early stopping: :attr:`best_val_loss` and :attr:`best_step` record the best evaluation so
    far and :attr:`best_model_state` a copy of its weights; with
    ``config.early_stopping_patience = p`` training stops (:attr:`stopped_early`) after ``p``
    evaluations in a row without a new best. ``trainer.model.load_state_dict(
    trainer.best_model_state)`` goes back to the best weights.
    """

    def __init__(
        self,
        model: GPT,
        train_data: Tensor | Batcher,
        config: TrainConfig,
        val_tokens: Tensor | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.model, self.config = model, config
        self.seq_len = config.seq_len or model.config.n_ctx
        if self.seq_len > model.config.n_ctx:
            raise ValueError(f"seq_len {self.seq_len} exceeds the model's context of "
                             f"{model.config.n_ctx}")
        self.device = next(model.parameters()).device
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)  # noqa: NPY002 (the legacy global generator)
        random.seed(config.seed)
        self.train_data = (train_data if hasattr(train_data, "next_batch")
                           else TokenBatcher(train_data, self.seq_len, seed=config.seed))
        self.val_data = (None if val_tokens is None
                         else TokenBatcher(val_tokens, self.seq_len, shuffle=False))
        # GPT-3's AdamW, as minigpt.model.configure_optimizer, with the choice of kernel.
        fused = config.fused_adamw and self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay),
                                           lr=config.lr, betas=config.betas, eps=config.eps,
                                           fused=fused or None)
        self.precision = (pick_precision(self.device) if config.precision == "auto"
                          else config.precision)
        if self.precision == "bf16" and self.device.type == "cuda" and not supports_bf16(
                self.device):
            raise ValueError(f"precision 'bf16' needs a GPU of compute capability 8.0 or more; "
                             f"{torch.cuda.get_device_name(self.device)} has none: use 'fp16' "
                             f"or 'auto'")
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self._forward = torch.compile(model) if config.compile else model
        self.flops_per_token = flops_per_token(model.config.replace(n_ctx=self.seq_len))
        self.peak_flops = config.peak_flops or gpu.peak_flops(self.device)
        self.stopped_by_budget = False
        self.step, self.tokens_seen = 0, 0
        self.history: list[dict[str, float]] = []
        self.early_stopping = EarlyStopping(patience=config.early_stopping_patience or None,
                                            restore_best_weights=False)

    # -- schedules ------------------------------------------------------------------------

    def lr_at(self, tokens: float) -> float:
        """The learning rate after ``tokens`` training tokens: warmup, cosine, floor."""
        c = self.config
        decay = c.decay_tokens or c.max_steps * c.batch_size * self.seq_len
        return c.lr * warmup_cosine_schedule(tokens, warmup_steps=c.warmup_tokens,
                                             decay_steps=max(decay, c.warmup_tokens),
                                             min_lr_ratio=c.min_lr_ratio)

    def batch_size_at(self, tokens: float) -> int:
        """The batch (sequences) after ``tokens`` training tokens: the linear ramp."""
        c = self.config
        start = c.start_batch_size or c.micro
        return batch_size_schedule(tokens, full_batch_tokens=c.batch_size * self.seq_len,
                                   ramp_tokens=c.batch_ramp_tokens,
                                   start_batch_tokens=start * self.seq_len,
                                   seq_len=self.seq_len, multiple=c.micro)

    # -- one step, evaluation, the loop ---------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the 16-bit type of :attr:`precision` (nothing for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self) -> dict[str, float]:
        """One optimizer step: accumulate gradients over micro-batches, clip, update."""
        c, model, scaler = self.config, self.model, self.scaler
        t0 = time.perf_counter()
        model.train()
        lr = self.lr_at(self.tokens_seen)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.batch_size_at(self.tokens_seen)
        n_micro = batch // c.micro
        total = torch.zeros((), dtype=torch.float64, device=self.device)  # read once, at the end
        for _ in range(n_micro):
            x, y = self.train_data.next_batch(c.micro)
            with self._autocast():
                _, loss = self._forward(x.to(self.device), y.to(self.device))
            total += loss.detach()
            loss = loss / n_micro  # the gradient of the mean over the whole batch
            (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(self.optimizer)  # clip and report the true gradients, not scaled ones
        params = [p for p in model.parameters() if p.grad is not None]
        if c.grad_clip is not None:
            norm = clip_grad_norm_(params, c.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        extra = {}
        if scaler is None:
            self.optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.step(self.optimizer)  # skipped if any gradient is inf or NaN
            scaler.update()  # then the scale is halved (and it doubles after 2000 good steps)
            extra = {"loss_scale": scale, "skipped": scaler.get_scale() < scale}
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += batch * self.seq_len
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # time the GPU's work, not only its launch
        elapsed = time.perf_counter() - t0
        tokens_per_s = batch * self.seq_len / max(elapsed, 1e-9)
        record = {"step": self.step, "tokens": self.tokens_seen,
                  "loss": float(total) / n_micro, "lr": lr, "grad_norm": float(norm),
                  "batch_size": batch, "tokens_per_s": tokens_per_s, **extra}
        if self.peak_flops:
            record["mfu"] = gpu.mfu(tokens_per_s, self.flops_per_token, self.peak_flops)
        self.history.append(record)
        return record

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the first ``eval_batches`` micro-batches of the validation stream
        (the same ones every time), in eval mode; consumes no random numbers."""
        if self.val_data is None:
            raise ValueError("evaluate needs val_tokens (pass them to Trainer)")
        state = self.val_data.state_dict()
        self.val_data.load_state_dict({**state, "epoch": 0, "cursor": 0})
        batches = [self.val_data.next_batch(self.config.micro)
                   for _ in range(self.config.eval_batches)]
        self.val_data.load_state_dict(state)
        x = torch.cat([b[0] for b in batches]).to(self.device)
        y = torch.cat([b[1] for b in batches]).to(self.device)
        with self._autocast():
            return evaluate(self.model, x, y, batch_size=self.config.micro)

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Run ``steps`` more steps (default: up to ``max_steps``), or until
        ``config.time_budget_s`` runs out; return :attr:`history`."""
        c = self.config
        start = time.perf_counter()
        self.stopped_by_budget = False
        end = c.max_steps if steps is None else min(self.step + steps, c.max_steps)
        bar = None
        if c.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=end - self.step, desc="train")
        while self.step < end and not self.stopped_early:
            record = self.train_step()
            out_of_time = (c.time_budget_s is not None
                           and time.perf_counter() - start >= c.time_budget_s)
            if self.val_data is not None and c.eval_interval and (
                self.step % c.eval_interval == 0 or self.step == c.max_steps or out_of_time
            ):
                record["val_loss"] = self.evaluate()
                self.early_stopping.step(record["val_loss"], self.model, at=self.step)
            if (c.checkpoint_interval and self.step % c.checkpoint_interval == 0) or (
                out_of_time and c.checkpoint_path
            ):
                self.save_checkpoint(c.checkpoint_path)
            if bar is not None:
                bar.update(1)
                mfu = {"mfu": f"{record['mfu']:.1%}"} if "mfu" in record else {}
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                tok_s=f"{record['tokens_per_s']:.3g}", **mfu)
            if out_of_time:
                self.stopped_by_budget = True
                break
        if bar is not None:
            bar.close()
        return self.history

    @property
    def best_val_loss(self) -> float:
        """The lowest validation loss so far (``inf`` before the first evaluation)."""
        best = self.early_stopping.best
        return math.inf if best is None else best

    @property
    def best_step(self) -> int:
        """The training step of :attr:`best_val_loss` (0 before the first evaluation)."""
        return self.early_stopping.best_step or 0

    @property
    def best_model_state(self) -> dict[str, Tensor] | None:
        """A copy of the weights at :attr:`best_step`."""
        return self.early_stopping.best_state

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended training."""
        return self.early_stopping.should_stop

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the rest of the run depends on, as tensors and plain containers."""
        return {
            "model": self.model.state_dict(),
            "model_config": dataclasses.asdict(self.model.config),
            "optimizer": self.optimizer.state_dict(),
            "train_config": {k: (list(v) if isinstance(v, tuple) else v)
                             for k, v in dataclasses.asdict(self.config).items()},
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "data": self.train_data.state_dict(),
            "history": self.history,
            "rng": rng_state(),
            "early_stopping": self.early_stopping.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: weights, optimizer, data position, RNG, counters
        (and the fp16 loss scale)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.train_data.load_state_dict(state["data"])
        self.history = [dict(r) for r in state["history"]]
        set_rng_state(state["rng"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` (atomically: a temporary file, then rename)."""
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        train_tokens: Tensor,
        val_tokens: Tensor | None = None,
        *,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> Trainer:
        """Rebuild model, optimizer and trainer from a checkpoint and continue where it
        stopped, on ``device`` (default: the CPU). ``overrides`` change :class:`TrainConfig`
        fields (e.g. ``max_steps``)."""
        state = load_checkpoint(path)
        model = GPT(GPTConfig(**state["model_config"]))
        if device is not None:
            model = model.to(device)
        fields = dict(state["train_config"])
        fields["betas"] = tuple(fields["betas"])
        fields.update(overrides)
        trainer = cls(model, train_tokens, TrainConfig(**fields), val_tokens)
        trainer.load_state_dict(state)
        return trainer


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :meth:`Trainer.save_checkpoint` (``weights_only=True``)."""
    if not os.path.exists(path):
        raise ValueError(f"no checkpoint at {os.fspath(path)!r}")
    return torch.load(path, map_location=map_location, weights_only=True)


# ---------------------------------------------------------------------------------------------
# Held-out likelihood


@torch.no_grad()
def sequence_nll(model: torch.nn.Module, tokens: Tensor, window: int) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of a token stream, and how many tokens it covers.

    The stream ``tokens`` (1-D) is cut into consecutive, non-overlapping windows of at most
    ``window`` inputs: window ``i`` feeds ``tokens[i*w : (i+1)*w]`` and is scored on the next
    tokens ``tokens[i*w + 1 : (i+1)*w + 1]``; the last window is shorter when the stream does
    not divide evenly, so every token but the first is predicted exactly once. ``model(x)``
    must return ``(logits, ...)`` with logits of shape ``(1, T, V)``. Returns
    ``(sum of -log P(token | earlier tokens in its window), number of tokens predicted)``,
    i.e. ``(total, len(tokens) - 1)``; ``total / count`` is the mean loss in nats per token,
    and ``total / n_characters / ln 2`` the bits per character of the text.

    Raises ``ValueError`` if ``tokens`` is not a 1-D integer tensor of at least 2 tokens, or
    if ``window`` is not an int >= 1.

    A model that gives every one of ``V`` tokens the same probability scores ``log V`` each:

    >>> uniform = lambda x: (torch.zeros(1, x.shape[1], 8),)
    >>> total, count = sequence_nll(uniform, torch.arange(10) % 8, window=4)
    >>> count, round(total / count, 4), round(math.log(8), 4)
    (9, 2.0794, 2.0794)
    """
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 1 or tokens.is_floating_point() or tokens.numel() < 2:
        raise ValueError(f"tokens must be a 1-D integer tensor of at least 2 tokens, got "
                         f"{tokens.dtype} of shape {tuple(tokens.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    total, count = 0.0, 0
    for start in range(0, tokens.numel() - 1, window):
        x = tokens[start : start + window]
        y = tokens[start + 1 : start + window + 1]
        x = x[: y.numel()]  # the last window: as many inputs as there are targets
        logits = model(x[None].long())[0][0]  # (T, V)
        nll = -torch.log_softmax(logits.double(), dim=-1).gather(1, y.long()[:, None])
        total += float(nll.sum())
        count += y.numel()
    if hasattr(model, "train"):
        model.train(was_training)
    return total, count


# ---------------------------------------------------------------------------------------------
# Plotting


def plot_metrics(history: Sequence[dict[str, float]]):
    """A matplotlib figure of a run: losses (train and validation), learning rate, gradient
    norm and throughput against optimizer steps. Returns the ``Figure``."""
    if not history:
        raise ValueError("plot_metrics needs a non-empty history (run Trainer.train first)")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    ax = axes[0, 0]
    ax.plot(steps, [r["loss"] for r in history], label="train")
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    for ax, key, label in [(axes[0, 1], "lr", "learning rate"),
                           (axes[1, 0], "grad_norm", "gradient norm (before clipping)"),
                           (axes[1, 1], "tokens_per_s", "tokens / s")]:
        ax.plot(steps, [r[key] for r in history])
        ax.set_ylabel(label)
    for ax in axes[1]:
        ax.set_xlabel("step")
    if any(not math.isfinite(r["loss"]) for r in history):
        axes[0, 0].set_title("warning: non-finite loss")
    fig.tight_layout()
    return fig
