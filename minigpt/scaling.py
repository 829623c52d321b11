"""Training compute, time, cost and memory, and compute-optimal model sizes.

Four questions about training a GPT, each answered with arithmetic on its configuration:

1. **How many FLOPs?** A forward pass costs about 2 FLOPs per parameter per token (one multiply
   and one add per weight), plus the attention scores, which have no parameters; the backward
   pass costs twice the forward pass. Hence ``C ≈ 6 N D`` for ``N`` parameters and ``D`` tokens.
   GPT-3 175B: ``6 x 174.6e9 x 300e9 = 3.14e23`` FLOPs (Table D.1), i.e. 3,640 petaflop/s-days.
2. **How long, and at what price?** FLOPs divided by what the hardware sustains.
3. **How much memory?** Weights, gradients and Adam's two moments (16 bytes per parameter, in
   fp32 or in mixed precision alike), plus the activations kept for the backward pass, divided
   among GPUs by data, tensor and pipeline parallelism and by ZeRO.
4. **How big a model for a budget?** Chinchilla's fitted loss ``L(N, D)``, minimized under
   ``6 N D = C``, and Kaplan et al.'s earlier power laws for comparison.

:func:`fit_power_law` fits such laws to measured losses, with error bars.

    >>> from minigpt.config import gpt3_config
    >>> f"{training_flops(gpt3_config('175B'), 300e9):.3g}"
    '3.14e+23'
    >>> f"{lambda_v100_estimate().gpu_years:.1f} V100-years"  # the popular "355 GPU-years"
    '355.6 V100-years'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from minigpt.config import GPT3_TABLE, GPTConfig, count_parameters

__all__ = [
    "CHINCHILLA",
    "GPT3_175B_FLOPS",
    "GPT3_TABLE_D1",
    "GPT3_TOKENS",
    "KAPLAN",
    "PEAK_FLOPS",
    "PF_DAY",
    "SECONDS_PER_YEAR",
    "ChinchillaFit",
    "KaplanFit",
    "Memory",
    "PowerLawFit",
    "TrainingEstimate",
    "activation_bytes",
    "activation_bytes_per_layer",
    "chinchilla_loss",
    "chinchilla_optimal",
    "estimate_training",
    "fit_power_law",
    "flops_per_token",
    "h100_estimate",
    "kaplan_allocation",
    "kaplan_loss",
    "lambda_v100_estimate",
    "memory_per_gpu",
    "model_state_bytes",
    "pf_days",
    "tokens_per_parameter_rule",
    "training_flops",
]

PF_DAY = 8.64e19  # one petaflop/s sustained for a day: 1e15 * 86400
SECONDS_PER_YEAR = 365 * 86400
GPT3_TOKENS = 300e9  # every GPT-3 model was trained on 300B tokens (Table 2.1 caption)
GPT3_175B_FLOPS = 3.14e23  # Table D.1

#: GPT-3's Table D.1: ``name -> (petaflop/s-days, total training FLOPs, parameters in
#: millions)``. The paper computes ``6 x params x 300e9`` and ignores attention.
GPT3_TABLE_D1: dict[str, tuple[float, float, float]] = {
    "small": (2.60, 2.25e20, 125),
    "medium": (7.42, 6.41e20, 356),
    "large": (15.8, 1.37e21, 760),
    "xl": (27.5, 2.38e21, 1320),
    "2.7B": (55.2, 4.77e21, 2650),
    "6.7B": (139, 1.20e22, 6660),
    "13B": (268, 2.31e22, 12850),
    "175B": (3640, 3.14e23, 174600),
}
assert set(GPT3_TABLE_D1) == set(GPT3_TABLE)

#: Dense 16-bit tensor-core peaks in FLOP/s, SXM parts (NVIDIA datasheets; the A100 and H100
#: sheets also quote twice these figures, which assume 2:4 structured sparsity).
PEAK_FLOPS: dict[str, float] = {"V100": 125e12, "A100": 312e12, "H100": 989e12}


# --------------------------------------------------------------------------------------------
# 1. FLOPs


def flops_per_token(
    config: GPTConfig,
    *,
    attention: bool = True,
    params: str = "non_embedding",
    training: bool = True,
    banded: bool = False,
) -> float:
    """FLOPs to process one token, following Kaplan et al. (2020, Table 1).

    Forward: ``C_forward ≈ 2 N + 2 n_layer n_ctx d_attn``. The first term is one multiply-add
    per weight; the second is the attention scores ``QK^T`` (each query against ``n_ctx`` keys
    in each layer), which involve no parameters. Backward costs two forwards, so training
    (``training=True``) is ``3 x`` forward, ``6 N + 6 n_layer n_ctx d_attn``.

    Args:
        config: the model.
        attention: include the attention term (``False`` gives the plain ``2N`` / ``6N``).
        params: which ``N``: ``"non_embedding"`` (Kaplan's; embedding lookups cost no
            multiply-adds) or ``"total"`` (GPT-3's Appendix D, every parameter).
        training: ``True`` for forward + backward, ``False`` for the forward pass only.
        banded: count the banded layers of ``attention_pattern="alternating"`` over their
            window ``min(local_window, n_ctx)`` instead of the full context.

    Counting the ``softmax · V`` product too, as Chinchilla's Appendix F does, doubles the
    attention term; the output logits (``2 d V``) are left out of ``2 N`` when
    ``params="non_embedding"``.

    Raises ``ValueError`` if ``params`` is neither ``"non_embedding"`` nor ``"total"``.

    >>> from minigpt.config import gpt3_config
    >>> cfg = gpt3_config("small")
    >>> round(flops_per_token(cfg) / 1e6), round(flops_per_token(cfg, attention=False) / 1e6)
    (624, 510)
    """
    if params not in ("non_embedding", "total"):
        raise ValueError(f"params must be 'non_embedding' or 'total', got {params!r}")
    n = count_parameters(config, non_embedding=params == "non_embedding")
    forward = 2.0 * n
    if attention:
        for layer in range(config.n_layer):
            context = config.n_ctx
            if banded and config.layer_attention(layer) == "local":
                context = min(config.local_window, config.n_ctx)
            forward += 2.0 * context * config.d_attn
    return 3.0 * forward if training else forward


def training_flops(
    model: GPTConfig | float, n_tokens: float, *, attention: bool = False, params: str = "total"
) -> float:
    """Training FLOPs for ``n_tokens`` tokens; by default GPT-3's Appendix D, ``6 N D``.

    ``model`` is a :class:`~minigpt.config.GPTConfig` or a parameter count ``N``. With the
    defaults (all parameters, no attention term) this reproduces Table D.1: the paper states
    that it ignores attention, which it says is under 10% of the total for these models
    (Kaplan's term adds 1.4% for 175B but 15% for Small). ``attention=True`` and
    ``params="non_embedding"`` give Kaplan et al.'s count instead.

    >>> from minigpt.config import gpt3_config
    >>> f"{training_flops(gpt3_config('small'), 300e9):.3g}", f"{training_flops(175e9, 300e9):.3g}"
    ('2.25e+20', '3.15e+23')
    """
    if not n_tokens >= 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens!r}")
    if isinstance(model, GPTConfig):
        return n_tokens * flops_per_token(model, attention=attention, params=params)
    if attention:
        raise ValueError("attention=True needs a GPTConfig (n_layer, n_ctx, d_attn), not a count")
    if not model > 0:
        raise ValueError(f"model must be a GPTConfig or a parameter count > 0, got {model!r}")
    return 6.0 * model * n_tokens


def pf_days(flops: float) -> float:
    """FLOPs in petaflop/s-days (1 PF-day = 1e15 FLOP/s x 86,400 s = 8.64e19 FLOPs).

    >>> round(pf_days(3.14e23))
    3634
    """
    return flops / PF_DAY


# --------------------------------------------------------------------------------------------
# 2. Time and cost


class TrainingEstimate(NamedTuple):
    """How long a run takes: total GPU time, wall-clock time on ``n_gpus``, and its price."""

    gpu_hours: float
    gpu_years: float
    wall_days: float
    dollars: float | None


def estimate_training(
    flops: float,
    peak_flops_per_second: float,
    *,
    mfu: float = 1.0,
    n_gpus: int = 1,
    dollars_per_gpu_hour: float | None = None,
) -> TrainingEstimate:
    """Time and cost of ``flops`` on GPUs sustaining ``mfu x peak`` FLOP/s each.

    MFU (model FLOPs utilization) is the fraction of the peak that the model's own FLOPs
    (``6 N`` per token) actually achieve; well-tuned large runs reach roughly 0.3-0.5.
    Years are 365 days.

    >>> est = estimate_training(3.14e23, 989e12, mfu=0.4, n_gpus=1024)
    >>> round(est.wall_days, 1), round(est.gpu_years, 1)
    (9.0, 25.2)
    """
    if not flops >= 0:
        raise ValueError(f"flops must be >= 0, got {flops!r}")
    if not peak_flops_per_second > 0:
        raise ValueError(f"peak_flops_per_second must be > 0, got {peak_flops_per_second!r}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer, got {n_gpus!r}")
    gpu_seconds = flops / (peak_flops_per_second * mfu)
    gpu_hours = gpu_seconds / 3600
    dollars = None if dollars_per_gpu_hour is None else gpu_hours * dollars_per_gpu_hour
    return TrainingEstimate(gpu_hours, gpu_seconds / SECONDS_PER_YEAR,
                            gpu_seconds / n_gpus / 86400, dollars)


def lambda_v100_estimate(
    flops: float = GPT3_175B_FLOPS,
    flops_per_second: float = 28e12,
    dollars_per_gpu_hour: float = 1.50,
) -> TrainingEstimate:
    """The popular "355 V100-years, $4.6M" figure for GPT-3 175B.

    This is **not** in the GPT-3 paper, which gives no GPU count, training time or cost. It is a
    third-party estimate, usually attributed to Lambda Labs' 2020 GPT-3 overview: 3.14e23 FLOPs
    at 28 TFLOP/s on one V100 (far below the V100's 125 TFLOP/s fp16 tensor-core peak) take
    3.14e23 / 28e12 s = 355.6 years. A price of $1.50 per GPU-hour reproduces the $4.6M.

    >>> est = lambda_v100_estimate()
    >>> round(est.gpu_years, 1), f"${est.dollars / 1e6:.2f}M"
    (355.6, '$4.67M')
    """
    return estimate_training(flops, flops_per_second, dollars_per_gpu_hour=dollars_per_gpu_hour)


def h100_estimate(
    flops: float = GPT3_175B_FLOPS,
    *,
    mfu: float = 0.4,
    n_gpus: int = 1,
    dollars_per_gpu_hour: float | None = None,
) -> TrainingEstimate:
    """The same sum on H100 SXM GPUs (989 TFLOP/s dense bf16 peak) at a chosen MFU.

    GPT-3 175B at 40% MFU needs about 9,200 H100-days: 9 days on 1,024 GPUs.

    >>> round(h100_estimate(mfu=0.4).gpu_hours / 24)
    9187
    """
    return estimate_training(flops, PEAK_FLOPS["H100"], mfu=mfu, n_gpus=n_gpus,
                             dollars_per_gpu_hour=dollars_per_gpu_hour)


# --------------------------------------------------------------------------------------------
# 3. Memory

# Bytes per parameter for (weights, gradients, optimizer state) when training with Adam.
_STATE_BYTES = {
    "fp32": (4, 4, 8),  # fp32 weights and gradients, two fp32 moments
    "mixed": (2, 2, 12),  # fp16/bf16 weights and gradients; fp32 master copy + two moments
}
_RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU by kind. ``total`` adds them up; ``gb()`` gives decimal gigabytes."""

    weights: float
    gradients: float
    optimizer: float
    activations: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def gb(self) -> dict[str, float]:
        """Every field and the total in GB (1e9 bytes), rounded to 0.1."""
        parts = {k: getattr(self, k) for k in ("weights", "gradients", "optimizer", "activations")}
        parts["total"] = self.total
        return {k: round(v / 1e9, 1) for k, v in parts.items()}


def model_state_bytes(n_params: float, precision: str = "mixed") -> Memory:
    """Weights, gradients and Adam states of ``n_params`` parameters on one device.

    - ``"fp32"``: 4 + 4 + 8 (first and second moment) = 16 bytes per parameter.
    - ``"mixed"`` (Micikevicius et al. 2018; the ZeRO paper's accounting): 16-bit weights (2)
      and gradients (2), plus an fp32 master copy of the weights and the two fp32 moments
      (4 + 4 + 4 = 12): also 16 bytes per parameter. Mixed precision saves time and
      activation memory, not model-state memory.

    GPT-3 175B's weights alone take 700 GB in fp32 (175e9 x 4 bytes), and its model states
    2.8 TB: far beyond one GPU, hence the sharding in :func:`memory_per_gpu`.

    >>> model_state_bytes(175e9, "fp32").gb()["weights"]
    700.0
    >>> model_state_bytes(175e9).gb()  # doctest: +NORMALIZE_WHITESPACE
    {'weights': 350.0, 'gradients': 350.0, 'optimizer': 2100.0, 'activations': 0.0,
     'total': 2800.0}
    """
    if precision not in _STATE_BYTES:
        raise ValueError(f"precision must be one of {', '.join(map(repr, _STATE_BYTES))}, "
                         f"got {precision!r}")
    if not n_params >= 0:
        raise ValueError(f"n_params must be >= 0, got {n_params!r}")
    w, g, o = _STATE_BYTES[precision]
    return Memory(w * n_params, g * n_params, o * n_params)


def activation_bytes_per_layer(
    seq_len: int,
    micro_batch: int,
    d_model: int,
    n_heads: int,
    *,
    recompute: str = "none",
    tensor_parallel: int = 1,
    sequence_parallel: bool = False,
) -> float:
    """Activation memory one transformer layer keeps for the backward pass, in bytes.

    Korthikanti et al. (2022), for 16-bit activations, 1-byte dropout masks and GPT-3's block
    (``d_ff = 4h``), with ``s`` = sequence length, ``b`` = micro-batch, ``h`` = ``d_model``,
    ``a`` = heads, ``t`` = tensor-parallel degree:

    - no recomputation: ``s b h (34 + 5 a s / h)``; the ``5 a s / h`` part is the ``s x s``
      attention scores, softmax and dropout mask of every head, which grows with ``s^2``;
    - tensor parallel: ``s b h (10 + 24/t + 5 a s / (h t))`` (LayerNorms and dropouts, the
      ``10``, are replicated), or ``s b h (34 + 5 a s / h) / t`` with sequence parallelism;
    - ``"selective"`` recomputation drops the ``5 a s / h`` term (the attention core is redone
      in the backward pass);
    - ``"full"`` recomputation keeps only the layer's input, ``2 s b h``, and reruns the whole
      forward pass of the layer during the backward pass.

    GPT-3 175B at ``s = 2048``, ``b = 1``: 2.9 GB per layer, 275 GB for all 96 layers.

    Raises ``ValueError`` if ``seq_len``, ``micro_batch``, ``d_model``, ``n_heads`` or
    ``tensor_parallel`` is not a positive int, or ``recompute`` is not ``"none"``,
    ``"selective"`` or ``"full"``.

    >>> round(activation_bytes_per_layer(2048, 1, 12288, 96) / 1e9, 2)
    2.87
    """
    for name, value in [("seq_len", seq_len), ("micro_batch", micro_batch),
                        ("d_model", d_model), ("n_heads", n_heads),
                        ("tensor_parallel", tensor_parallel)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if recompute not in _RECOMPUTE:
        raise ValueError(f"recompute must be one of {', '.join(map(repr, _RECOMPUTE))}, "
                         f"got {recompute!r}")
    sbh = seq_len * micro_batch * d_model
    if recompute == "full":
        return 2.0 * sbh
    t = tensor_parallel
    scores = 0.0 if recompute == "selective" else 5 * n_heads * seq_len / (d_model * t)
    linear = 34 / t if sequence_parallel else 10 + 24 / t
    return sbh * (linear + scores)


def activation_bytes(
    config: GPTConfig,
    micro_batch: int = 1,
    *,
    seq_len: int | None = None,
    recompute: str = "none",
    tensor_parallel: int = 1,
    sequence_parallel: bool = False,
) -> float:
    """Activations of all ``n_layer`` layers for one micro-batch (see the per-layer formula).

    With pipeline parallelism and the 1F1B schedule, the first stage holds ``n_layer / p``
    layers for ``p`` micro-batches in flight: the same ``n_layer`` layers' worth, so the
    pipeline degree does not appear. Embedding and output activations are left out.
    """
    seq_len = config.n_ctx if seq_len is None else seq_len
    per_layer = activation_bytes_per_layer(
        seq_len, micro_batch, config.d_model, config.n_heads, recompute=recompute,
        tensor_parallel=tensor_parallel, sequence_parallel=sequence_parallel,
    )
    return config.n_layer * per_layer


def memory_per_gpu(
    model: GPTConfig | float,
    *,
    data_parallel: int = 1,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    zero_stage: int = 0,
    precision: str = "mixed",
    micro_batch: int = 1,
    recompute: str = "none",
    sequence_parallel: bool = False,
) -> Memory:
    """Training memory on one GPU under data, tensor and pipeline parallelism and ZeRO.

    Tensor (``t``) and pipeline (``p``) parallelism split the model: each GPU holds
    ``N / (t p)`` parameters (embeddings and LayerNorms treated like the rest). Data
    parallelism (``d`` replicas) copies it, unless ZeRO (Rajbhandari et al. 2020) shards the
    copies: stage 1 shards the optimizer states over the ``d`` replicas, stage 2 also the
    gradients, stage 3 also the weights. For mixed-precision Adam (``K = 12``) per GPU:

    - stage 0: ``(2 + 2 + 12) Ψ``;  stage 1: ``(2 + 2) Ψ + 12 Ψ / d``;
    - stage 2: ``2 Ψ + (2 + 12) Ψ / d``;  stage 3: ``16 Ψ / d``.

    ``model`` is a config (activations included, per :func:`activation_bytes`) or a parameter
    count (model states only). ZeRO's own example, 7.5B parameters on 64 GPUs:

    Raises ``ValueError`` if ``zero_stage`` is not 0, 1, 2 or 3, or a parallel degree
    (``data_parallel``, ``tensor_parallel``, ``pipeline_parallel``) is not a positive int.

    >>> [memory_per_gpu(7.5e9, data_parallel=64, zero_stage=s).gb()["total"] for s in range(4)]
    [120.0, 31.4, 16.6, 1.9]
    """
    for name, value in [("data_parallel", data_parallel), ("tensor_parallel", tensor_parallel),
                        ("pipeline_parallel", pipeline_parallel)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    n = count_parameters(model) if isinstance(model, GPTConfig) else model
    states = model_state_bytes(n / (tensor_parallel * pipeline_parallel), precision)
    d = data_parallel
    weights = states.weights / d if zero_stage >= 3 else states.weights
    gradients = states.gradients / d if zero_stage >= 2 else states.gradients
    optimizer = states.optimizer / d if zero_stage >= 1 else states.optimizer
    activations = 0.0
    if isinstance(model, GPTConfig):
        activations = activation_bytes(model, micro_batch, recompute=recompute,
                                       tensor_parallel=tensor_parallel,
                                       sequence_parallel=sequence_parallel)
    return Memory(weights, gradients, optimizer, activations)


# --------------------------------------------------------------------------------------------
# 4. Compute-optimal allocation


class ChinchillaFit(NamedTuple):
    """Constants of ``L(N, D) = E + A / N^alpha + B / D^beta`` (loss in nats per token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float


#: Hoffmann et al. (2022), approach 3 (Appendix D.2): fitted on their MassiveText runs.
CHINCHILLA = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_loss(n_params, n_tokens, fit: ChinchillaFit = CHINCHILLA):
    """Chinchilla's fitted loss for ``N`` parameters trained on ``D`` tokens (arrays work).

    ``E`` is the irreducible loss (the entropy of text); the two other terms are what a finite
    model and a finite dataset add. GPT-3's size and token count score worse than Chinchilla's
    70B model on 1.4T tokens, trained with about twice the compute:

    >>> round(chinchilla_loss(175e9, 300e9), 2), round(chinchilla_loss(70e9, 1.4e12), 2)
    (2.0, 1.94)
    """
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    if np.any(n <= 0) or np.any(d <= 0):
        raise ValueError("n_params and n_tokens must be > 0")
    loss = fit.E + fit.A / n**fit.alpha + fit.B / d**fit.beta
    return float(loss) if loss.ndim == 0 else loss


def chinchilla_optimal(compute, fit: ChinchillaFit = CHINCHILLA) -> tuple:
    """The ``(N_opt, D_opt)`` that minimize the fitted loss at a budget ``C = 6 N D`` FLOPs.

    Substituting ``D = C / (6N)`` and setting the derivative to zero gives

    ``N_opt = G (C/6)^(beta/(alpha+beta))``, ``D_opt = G^-1 (C/6)^(alpha/(alpha+beta))``,
    with ``G = (alpha A / (beta B))^(1/(alpha+beta))``.

    With the published constants ``N_opt ∝ C^0.45``: size and data grow almost equally. For
    GPT-3's budget this gives a 24.5B model on 2.1T tokens, about 87 tokens per parameter, far
    more than the "20 tokens per parameter" of :func:`tokens_per_parameter_rule`, which comes
    from the paper's other two approaches.

    Raises ``ValueError`` unless ``compute > 0`` (for an array: every entry).

    >>> n, d = chinchilla_optimal(3.14e23)
    >>> f"{n:.3g}", f"{d:.3g}", round(d / n)
    ('2.45e+10', '2.14e+12', 87)
    """
    c = np.asarray(compute, dtype=float)
    if np.any(c <= 0):
        raise ValueError(f"compute must be > 0 FLOPs, got {compute!r}")
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1 / (a + b))
    n_opt = g * (c / 6) ** (b / (a + b))
    d_opt = (c / 6) ** (a / (a + b)) / g
    if n_opt.ndim == 0:
        return float(n_opt), float(d_opt)
    return n_opt, d_opt


def tokens_per_parameter_rule(compute, tokens_per_param: float = 20.0) -> tuple:
    """``(N, D)`` with ``D = r N`` and ``6 N D = C``: ``N = sqrt(C / (6 r))``.

    "About 20 tokens per parameter" is not a sentence of the Chinchilla paper: it is what its
    approaches 1 and 2 give (Table 3: 1B params -> 20.2B tokens, 10B -> 205B, 175B -> 3.7T,
    20-22 tokens per parameter), and Chinchilla itself is 70B parameters on 1.4T tokens = 20.

    >>> n, d = tokens_per_parameter_rule(6 * 70e9 * 1.4e12)
    >>> round(n / 1e9), round(d / 1e12, 2)
    (70, 1.4)
    """
    c = np.asarray(compute, dtype=float)
    if np.any(c <= 0) or not tokens_per_param > 0:
        raise ValueError("compute and tokens_per_param must be > 0")
    n = np.sqrt(c / (6 * tokens_per_param))
    if n.ndim == 0:
        return float(n), float(tokens_per_param * n)
    return n, tokens_per_param * n


class KaplanFit(NamedTuple):
    """Kaplan et al. (2020) power laws (``N`` non-embedding parameters, nats on WebText2)."""

    alpha_n: float = 0.076
    n_c: float = 8.8e13
    alpha_d: float = 0.095
    d_c: float = 5.4e13
    n_exponent: float = 0.73  # compute-efficient N ∝ C^0.73
    d_exponent: float = 0.27  # and D ∝ C^0.27


KAPLAN = KaplanFit()


def kaplan_loss(n_params=None, n_tokens=None, fit: KaplanFit = KAPLAN) -> float:
    """Kaplan et al.'s ``L(N) = (N_c/N)^alpha_N``, ``L(D) = (D_c/D)^alpha_D``, or both at once.

    Given both, ``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``. The losses are on
    a different dataset and tokenizer from Chinchilla's: compare exponents, not values.

    >>> round(kaplan_loss(1e9), 3), round(kaplan_loss(n_tokens=1e10), 3)
    (2.376, 2.262)
    """
    if n_params is None and n_tokens is None:
        raise ValueError("give n_params, n_tokens or both")
    for name, value in (("n_params", n_params), ("n_tokens", n_tokens)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if n_tokens is None:
        return (fit.n_c / n_params) ** fit.alpha_n
    if n_params is None:
        return (fit.d_c / n_tokens) ** fit.alpha_d
    return ((fit.n_c / n_params) ** (fit.alpha_n / fit.alpha_d) + fit.d_c / n_tokens) ** fit.alpha_d


def kaplan_allocation(compute_ratio: float, fit: KaplanFit = KAPLAN) -> tuple[float, float]:
    """How much to grow ``(N, D)`` when compute grows ``compute_ratio``-fold, per Kaplan.

    Kaplan et al. put most of extra compute into size (``N ∝ C^0.73``); Chinchilla's
    approach 3 splits it almost evenly (``N ∝ C^0.45``, ``D ∝ C^0.55``).

    >>> [round(x, 1) for x in kaplan_allocation(10)]
    [5.4, 1.9]
    """
    if not compute_ratio > 0:
        raise ValueError(f"compute_ratio must be > 0, got {compute_ratio!r}")
    return compute_ratio**fit.n_exponent, compute_ratio**fit.d_exponent


# --------------------------------------------------------------------------------------------
# Fitting power laws


class PowerLawFit(NamedTuple):
    """``y = a x^-b + c`` with standard errors (``c`` is 0 without an irreducible term)."""

    a: float
    b: float
    c: float
    a_stderr: float
    b_stderr: float
    c_stderr: float

    def predict(self, x):
        """The fitted curve at ``x``."""
        return self.a * np.asarray(x, dtype=float) ** -self.b + self.c


def _ols_loglog(lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares ``ly = log a - b lx``: returns ``(log a, b)`` and their covariance."""
    design = np.column_stack([np.ones_like(lx), -lx])
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    dof = len(lx) - 2
    resid = ly - design @ coef
    s2 = resid @ resid / dof if dof > 0 else np.nan
    return coef, s2 * np.linalg.pinv(design.T @ design)


def _floor_model(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(c + a x^-b) for theta = (log a, b, c), and its Jacobian."""
    log_a, b, c = theta
    power = np.exp(log_a - b * np.log(x))
    m = c + power
    jac = np.column_stack([power / m, -power * np.log(x) / m, 1 / m])
    return np.log(m), jac


def _fit_floor(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit log y = log(c + a x^-b), c >= 0: a grid over c, then Levenberg-Marquardt."""
    ly = np.log(y)

    def sse(theta: np.ndarray) -> float:
        if theta[2] < 0 or np.any(theta[2] + np.exp(theta[0] - theta[1] * np.log(x)) <= 0):
            return math.inf
        return float(np.sum((ly - _floor_model(theta, x)[0]) ** 2))

    candidates = []
    for c in y.min() * (1 - np.geomspace(1, 1e-4, 60)):  # c from 0 to just below min(y)
        (log_a, b), _ = _ols_loglog(np.log(x), np.log(y - c))
        candidates.append(np.array([log_a, b, c]))
    theta = min(candidates, key=sse)
    current, lam = sse(theta), 1e-3
    for _ in range(500):
        model, jac = _floor_model(theta, x)
        hess = jac.T @ jac
        damping = lam * np.diag(np.diag(hess) + 1e-12)
        trial = theta + np.linalg.solve(hess + damping, jac.T @ (ly - model))
        trial[2] = max(trial[2], 0.0)
        value = sse(trial)
        if value < current:
            done = current - value <= 1e-15 * (1 + current)
            theta, current, lam = trial, value, lam / 3
            if done:
                break
        else:
            lam *= 4
            if lam > 1e12:
                break
    _, jac = _floor_model(theta, x)
    dof = len(x) - 3
    s2 = current / dof if dof > 0 else np.nan
    return theta, s2 * np.linalg.pinv(jac.T @ jac)


def _fit_once(x: np.ndarray, y: np.ndarray, irreducible: bool) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(log a, b, c)`` and the covariance of ``(log a, b[, c])``."""
    if irreducible:
        return _fit_floor(x, y)
    coef, cov = _ols_loglog(np.log(x), np.log(y))
    return np.array([coef[0], coef[1], 0.0]), cov


def fit_power_law(
    x, y, *, irreducible: bool = False, n_bootstrap: int = 0, seed: int = 0
) -> PowerLawFit:
    """Fit ``y = a x^-b`` (or ``y = a x^-b + c`` with ``irreducible=True``) to positive data.

    Scaling laws are straight lines on log-log axes: ``log y = log a - b log x``, so the plain
    fit is ordinary least squares on the logarithms, whose covariance gives standard errors
    (``a``'s by the delta method, ``se(a) = a se(log a)``). A floor ``c`` (the irreducible
    loss) bends the line; that fit minimizes the same log-space squared error over
    ``(a, b, c)`` with ``c >= 0``, by a grid over ``c`` refined by Levenberg-Marquardt, and its
    errors come from the Jacobian at the optimum. With ``n_bootstrap > 0`` the standard errors
    are instead the spread of refits on ``n_bootstrap`` resamples of the points (drawn with
    ``numpy.random.default_rng(seed)``), which needs no linearization.

    Standard errors need more points than parameters (else they are ``nan``).

    >>> n = np.array([1e6, 1e7, 1e8, 1e9])
    >>> fit = fit_power_law(n, 2.0 * n ** -0.076)
    >>> round(fit.a, 6), round(fit.b, 6), fit.c
    (2.0, 0.076, 0.0)
    >>> fit = fit_power_law(n, chinchilla_loss(n, 1e30), irreducible=True)
    >>> round(fit.a, 1), round(fit.b, 3), round(fit.c, 3)
    (406.4, 0.34, 1.69)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes "
                         f"{x.shape} and {y.shape}")
    need = 3 if irreducible else 2
    if len(np.unique(x)) < need:
        raise ValueError(f"need at least {need} distinct x values for this fit, got "
                         f"{len(np.unique(x))}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0)
            and np.all(y > 0)):
        raise ValueError("x and y must be finite and > 0 (the fit works with their logarithms)")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    theta, cov = _fit_once(x, y, irreducible)
    if n_bootstrap:
        errors = _bootstrap_stderr(x, y, irreducible, n_bootstrap, seed)
    else:
        se = np.sqrt(np.abs(np.diag(cov)))
        errors = np.array([math.exp(theta[0]) * se[0], se[1], se[2] if irreducible else 0.0])
    return PowerLawFit(float(np.exp(theta[0])), float(theta[1]), float(theta[2]),
                       *map(float, errors))


def _bootstrap_stderr(
    x: np.ndarray, y: np.ndarray, irreducible: bool, n_bootstrap: int, seed: int
) -> np.ndarray:
    """Standard deviation of ``(a, b, c)`` over refits on resampled points."""
    rng = np.random.default_rng(seed)
    need = 3 if irreducible else 2
    estimates = []
    while len(estimates) < n_bootstrap:
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) < need:
            continue  # a resample with too few distinct x cannot be fitted
        theta, _ = _fit_once(x[idx], y[idx], irreducible)
        estimates.append([math.exp(theta[0]), theta[1], theta[2]])
    return np.std(np.array(estimates), axis=0, ddof=1)
