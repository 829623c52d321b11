"""Controlled comparisons of architectures: the same tokens, the same budget, several seeds.

"LLaMA-style beats GPT-3-style" is a claim about two recipes; to test it at toy scale, change
the architecture and nothing else. Here every model of a comparison

* is trained on the same character-level Shakespeare (:func:`minigpt.lab.sweep.char_data`), in the
  same order of sequences for a given seed, for the same number of tokens, with the same
  optimizer and schedule shape, warmup then cosine (:class:`minigpt.lab.sweep.SweepSettings` ->
  :class:`minigpt.train.Trainer`), the peak learning rate aside (see below);
* starts from ``torch.manual_seed(seed)``, so seed ``s`` gives every architecture the same data
  order (the weights differ, since the shapes do);
* is scored on the same fixed held-out windows (:func:`minigpt.lab.sweep.held_out_set`), in nats
  per character.

The seed-to-seed spread is the yardstick: a difference between two architectures means little
unless it is larger than the spread of either across seeds. :func:`paired_differences`
compares two architectures seed by seed (same data order), which removes part of that noise.

At this scale the learning rate matters as much as the architecture: one rate for every
model favours whichever one it suits, so :func:`compare` takes a rate per config, and
``experiments/after_gpt3.py`` gives each architecture the best of a small grid (chosen on one
seed, itself a noisy choice). The models are tiny and trained briefly: the results say what
happens *here*, not what happens at 7B parameters.

:func:`train_and_evaluate` returns a :class:`ControlledRun`. :func:`run_parameters` records
every setting of a comparison, :func:`config_from_parameters` and :func:`live_rerun` re-create
the smallest case from them, and :func:`minigpt.lab.record.reproduces` compares a re-run with
the stored numbers.

    >>> summarize([2.0, 2.2, 2.1])
    {'mean': 2.1, 'std': 0.1, 'min': 2.0, 'max': 2.2, 'n': 3}
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from minigpt.config import GPTConfig, count_parameters
from minigpt.lab.sweep import CharData, SweepSettings, char_data, held_out_set, torch_threads
from minigpt.model import GPT
from minigpt.train import Trainer, evaluate

__all__ = [
    "LOSS_CURVE_EVERY",
    "ControlledRun",
    "compare",
    "config_from_parameters",
    "live_rerun",
    "paired_differences",
    "run_parameters",
    "summarize",
    "train_and_evaluate",
]

#: The training loss is recorded at step 1 and every this many steps.
LOSS_CURVE_EVERY = 25


@dataclasses.dataclass(frozen=True)
class ControlledRun:
    """One model of a comparison, trained and measured by :func:`train_and_evaluate`.

    Attributes:
        n_parameters: trainable parameters; ``steps`` and ``tokens`` trained.
        val_loss: held-out loss, nats per character; ``train_loss``: the mean of the last 10
            steps' batch losses.
        loss_curve: ``[[step, batch loss], ...]`` at step 1 and every
            :data:`LOSS_CURVE_EVERY` steps.
        seconds: how long it took.
    """

    n_parameters: int
    steps: int
    tokens: int
    val_loss: float
    train_loss: float
    loss_curve: list[list[float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready values (as a results file stores it)."""
        return dataclasses.asdict(self)


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """Mean, sample standard deviation (``n - 1``; 0 for one value), min, max and count,
    rounded to ``digits`` decimals.

    >>> summarize([1.0])
    {'mean': 1.0, 'std': 0.0, 'min': 1.0, 'max': 1.0, 'n': 1}
    """
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"summarize needs at least one finite number, got {values}")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), digits), "std": round(std, digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "n": len(values)}


def paired_differences(
    baseline: Mapping[str, float], other: Mapping[str, float], digits: int = 4
) -> dict[str, Any]:
    """``other - baseline`` seed by seed (the seeds both have), and their :func:`summarize`.

    >>> paired_differences({"0": 2.0, "1": 2.1}, {"0": 1.9, "1": 2.05})
    {'per_seed': {'0': -0.1, '1': -0.05}, 'mean': -0.075, 'std': 0.0354, 'min': -0.1, \
'max': -0.05, 'n': 2}
    """
    seeds = [s for s in baseline if s in other]
    if not seeds:
        raise ValueError(f"no common seeds: {sorted(baseline)} vs {sorted(other)}")
    diffs = {s: round(float(other[s]) - float(baseline[s]), digits) for s in seeds}
    return {"per_seed": diffs, **summarize(list(diffs.values()), digits)}


def train_and_evaluate(
    config: GPTConfig,
    settings: SweepSettings,
    data: CharData,
    *,
    steps: int | None = None,
) -> ControlledRun:
    """Train one ``config`` with ``settings`` on ``data`` and measure its held-out loss.

    The model is built after ``torch.manual_seed(settings.train.seed)`` with context
    ``settings.n_ctx``, trained by :class:`~minigpt.train.Trainer` for
    ``settings.max_steps`` steps (or only the first ``steps``, with the schedule unchanged) on
    ``settings.threads`` torch threads, and scored on ``settings.val_sequences`` held-out
    windows.

    Returns a :class:`ControlledRun`.
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    if config.vocab_size != len(data.vocab):
        raise ValueError(f"config.vocab_size ({config.vocab_size}) must be the data's "
                         f"vocabulary size ({len(data.vocab)})")
    config = config.replace(n_ctx=settings.n_ctx)
    x_val, y_val = held_out_set(data.val, settings.val_sequences, settings.n_ctx)
    start = time.perf_counter()
    with torch_threads(settings.threads):
        torch.manual_seed(settings.train.seed)
        model = GPT(config)
        trainer = Trainer(model, data.train, settings.train_config())
        history = trainer.train(steps)
        val_loss = evaluate(model, x_val, y_val, batch_size=4 * settings.train.batch_size)
    last = [r["loss"] for r in history[-10:]]
    return ControlledRun(
        n_parameters=count_parameters(config),
        steps=trainer.step,
        tokens=trainer.tokens_seen,
        val_loss=round(val_loss, 5),
        train_loss=round(sum(last) / len(last), 5),
        loss_curve=[[r["step"], round(r["loss"], 5)] for r in history
                    if r["step"] == 1 or r["step"] % LOSS_CURVE_EVERY == 0],
        seconds=round(time.perf_counter() - start, 2),
    )


def compare(
    configs: Mapping[str, GPTConfig],
    settings: SweepSettings,
    seeds: Sequence[int],
    data: CharData,
    *,
    lr: Mapping[str, float] | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """:func:`train_and_evaluate` for every config and seed (``settings.train.seed`` replaced,
    and ``settings.train.lr`` by ``lr[name]`` where given).

    Returns ``{name: {"n_parameters", "lr", "val_loss": {seed: loss}, "runs": {seed: run},
    "summary": summarize(losses)}}`` with seeds as strings (JSON keys) and each run as
    :meth:`ControlledRun.to_dict`, ready to store. ``log`` gets a line
    per run (``None``: silent).
    """
    if not configs or not seeds:
        raise ValueError("compare needs at least one config and one seed")
    lr = dict(lr or {})
    unknown = set(lr) - set(configs)
    if unknown:
        raise ValueError(f"lr names configs that are not compared: {sorted(unknown)}")
    results: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        runs = {}
        base = settings.with_train(lr=lr.get(name, settings.train.lr))
        for seed in seeds:
            run = train_and_evaluate(config, base.with_train(seed=seed), data)
            runs[str(seed)] = run.to_dict()
            if log is not None:
                log(f"{name:>12} lr {base.train.lr:.3g} seed {seed}: {run.n_parameters:>7,} "
                    f"params, val loss {run.val_loss:.4f} ({run.seconds:.1f} s)")
        losses = {s: r["val_loss"] for s, r in runs.items()}
        results[name] = {"n_parameters": next(iter(runs.values()))["n_parameters"],
                         "lr": base.train.lr, "val_loss": losses, "runs": runs,
                         "summary": summarize(list(losses.values()))}
    return results


# --------------------------------------------------------------------------------------------
# Stored parameters and the live re-run


def run_parameters(
    configs: Mapping[str, GPTConfig],
    settings: SweepSettings,
    seeds: Sequence[int],
    lr: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of a comparison: every config's fields, the settings, the seeds,
    and each config's learning rate (``settings.train.lr`` unless ``lr`` says otherwise).

    >>> p = run_parameters({"a": GPTConfig(n_layer=1, d_model=8, n_heads=1, vocab_size=5,
    ...                                    n_ctx=8)}, SweepSettings(), [0, 1])
    >>> sorted(p), p["configs"]["a"]["d_model"], p["seeds"], p["lr"]
    (['configs', 'lr', 'seeds', 'settings'], 8, [0, 1], {'a': 0.01})
    """
    lr = dict(lr or {})
    return {"configs": {name: dataclasses.asdict(c) for name, c in configs.items()},
            "settings": settings.to_dict(), "seeds": [int(s) for s in seeds],
            "lr": {name: float(lr.get(name, settings.train.lr)) for name in configs}}


def config_from_parameters(parameters: Mapping[str, Any], name: str) -> GPTConfig:
    """The :class:`GPTConfig` called ``name`` in a :func:`run_parameters` record."""
    configs = parameters.get("configs", {})
    if name not in configs:
        raise ValueError(f"unknown config {name!r}; the parameters have {', '.join(configs)}")
    return GPTConfig(**configs[name])


def live_rerun(
    parameters: Mapping[str, Any],
    names: Sequence[str] = ("gpt3", "llama"),
    seed: int | None = None,
    data: CharData | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Re-train the smallest case of a stored comparison: ``names`` at one ``seed`` (default:
    the first stored seed), each at its stored learning rate.

    Returns ``{"val_loss": {name: {seed: loss}}}``, the shape of the stored
    ``{"val_loss": ...}`` tables, for :func:`minigpt.lab.record.reproduces` (about 10 s per
    model on one CPU thread with the settings of ``experiments/after_gpt3.py``).
    """
    seed = parameters["seeds"][0] if seed is None else seed
    if "settings" not in parameters:
        raise ValueError("not a run_parameters record (need 'settings')")
    settings = SweepSettings.from_dict(parameters["settings"]).with_train(seed=seed)
    data = char_data(val_fraction=settings.val_fraction) if data is None else data
    lrs = parameters.get("lr", {})
    out: dict[str, dict[str, float]] = {}
    for name in names:
        run = train_and_evaluate(config_from_parameters(parameters, name),
                                 settings.with_train(lr=lrs.get(name, settings.train.lr)), data)
        out[name] = {str(seed): run.val_loss}
    return {"val_loss": out}
