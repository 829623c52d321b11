"""Training on one GPU: how fast the chip could go, and how much of that we use.

* **Precision** (which 16-bit format a GPU has, and the loss scale that float16 needs) is
  :mod:`minigpt.precision`.
* **Peak FLOP/s.** :data:`PEAK_TABLE` lists the dense 16-bit tensor-core peak of common GPUs
  from NVIDIA's datasheets; :func:`peak_flops` looks up the present one by name.
* **MFU**, model FLOPs utilization (Chowdhery et al. 2022, PaLM, appendix B): the FLOPs the
  model needs per token (:func:`minigpt.scaling.flops_per_token`) times the tokens per second
  achieved, over the peak. Work the hardware does beyond the model's count (recomputation,
  padding) earns nothing, so MFU compares runs fairly.
* :func:`gpt3_small_or_tiny`: one switch between GPT-3 Small as in Table 2.1 (with GPT-3's
  alternating dense and locally banded layers by default) and a tiny model that trains on a CPU
  in seconds.
* **A model sized to its data** (:func:`plan_for_data`): the book's compute-optimal rule (about
  20 tokens per parameter) applied to the tokens that repeated epochs are worth.
* **Adapting to the GPU found** (:func:`adapt_to_gpu`): bf16, or fp16 with a gradient scaler
  on a T4 or V100, and the largest micro-batch that the free memory holds
  (:func:`micro_batch_for_memory`); :data:`COLAB_GPUS` describes the three GPUs Colab lends.

Nothing here needs a GPU to import or to test: on a CPU the helpers answer "fp32" and
"no known peak FLOP/s for this device" (:func:`describe_peak`).
"""

from __future__ import annotations

import importlib.util
import math
import re
from typing import Any, NamedTuple

import torch

from minigpt.config import TINY_CONFIGS, GPTConfig, count_parameters, gpt3_config
from minigpt.precision import cuda_device, pick_precision
from minigpt.scaling import PEAK_FLOPS, activation_bytes

__all__ = [
    "COLAB_GPUS",
    "DataPlan",
    "GPURecipe",
    "PEAK_TABLE",
    "PeakRow",
    "adapt_to_gpu",
    "describe_peak",
    "flash_attn_available",
    "gpt3_small_or_tiny",
    "lookup_peak_flops",
    "mfu",
    "micro_batch_for_memory",
    "peak_flops",
    "plan_for_data",
    "shape_for_params",
    "training_bytes_per_sequence",
]

class PeakRow(NamedTuple):
    """A GPU of :data:`PEAK_TABLE`: the ``chip`` word of its name, an optional ``variant``
    word that must appear too (``"PCIE"``), its dense bf16/fp16 tensor-core peak in FLOP/s,
    and where that number comes from."""

    chip: str
    variant: str
    flops: float
    source: str


#: Dense (no 2:4 sparsity) bf16 / fp16 tensor-core peaks with float32 accumulation, in FLOP/s.
#: Datasheets print the sparse figure, twice these, with an asterisk; these are half of it.
#: The first row whose words all appear in the device name wins, so variants come first.
PEAK_TABLE: tuple[PeakRow, ...] = (
    PeakRow("H100", "PCIE", 756e12, "H100 datasheet: PCIe, 1,513 TFLOPS with sparsity"),
    PeakRow("H100", "NVL", 835e12, "H100 datasheet: NVL, 1,671 TFLOPS with sparsity"),
    PeakRow("H100", "", PEAK_FLOPS["H100"], "H100 datasheet: SXM, 1,979 TFLOPS with sparsity"),
    PeakRow("H200", "NVL", 835e12, "H200 datasheet: NVL, 1,671 TFLOPS with sparsity"),
    PeakRow("H200", "", 989e12, "H200 datasheet: SXM, 1,979 TFLOPS with sparsity"),
    PeakRow("GH200", "", 989e12, "GH200 datasheet: the H100/H200 GPU of the superchip"),
    PeakRow("A100", "", PEAK_FLOPS["A100"], "A100 datasheet: 312 TFLOPS (SXM and PCIe)"),
    PeakRow("A10G", "", 70e12, "AWS's A10G has no NVIDIA datasheet; 70 TFLOPS is the usual "
            "estimate (GA102, half-rate float32 accumulation); some tables give the A10's 125"),
    PeakRow("A10", "", 125e12, "A10 datasheet: 250 TFLOPS with sparsity"),
    PeakRow("L40S", "", 362e12, "L40S datasheet: 733 TFLOPS with sparsity"),
    PeakRow("L40", "", 181e12, "L40 datasheet: 362 TFLOPS with sparsity"),
    PeakRow("L4", "", 121e12, "L4 datasheet: 242 TFLOPS with sparsity"),
    PeakRow("T4", "", 65e12, "T4 datasheet: 65 TFLOPS mixed precision (fp16, no bf16)"),
    PeakRow("V100S", "", 130e12, "V100S datasheet: 130 TFLOPS (fp16, no bf16)"),
    PeakRow("V100", "PCIE", 112e12, "V100 datasheet: PCIe 112 TFLOPS (fp16, no bf16)"),
    PeakRow("V100", "", PEAK_FLOPS["V100"], "V100 datasheet: SXM2 125 TFLOPS (fp16, no bf16)"),
)


def lookup_peak_flops(name: str) -> float | None:
    """The dense 16-bit peak FLOP/s of the GPU called ``name`` (as
    ``torch.cuda.get_device_name`` reports it), or ``None`` if it is not in :data:`PEAK_TABLE`.

    The name is split into words at spaces, dashes and underscores, so ``"A10"`` does not
    match an A100 and ``"L4"`` not an L40S:

    >>> names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB",
    ...          "NVIDIA A10", "Tesla T4"]
    >>> [round(lookup_peak_flops(n) / 1e12) for n in names]
    [989, 756, 312, 125, 65]
    >>> lookup_peak_flops("NVIDIA GeForce GTX 1080") is None
    True
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a GPU name (str), got {type(name).__name__}")
    words = set(re.split(r"[\s\-_]+", name.upper()))
    for row in PEAK_TABLE:
        if row.chip in words and (not row.variant or row.variant in words):
            return row.flops
    return None


def peak_flops(device: str | torch.device | None = None) -> float | None:
    """The peak FLOP/s of ``device`` (default: :func:`minigpt.precision.get_device`) for MFU:
    :func:`lookup_peak_flops` of its name on CUDA, ``None`` on a CPU or an unknown GPU.

    >>> peak_flops("cpu") is None
    True
    """
    cuda = cuda_device(device)
    return None if cuda is None else lookup_peak_flops(torch.cuda.get_device_name(cuda))


def describe_peak(device: str | torch.device | None = None) -> str:
    """The peak of ``device`` in words, for a notebook's first lines: ``"peak 989 TFLOP/s
    (dense 16-bit)"``, or, on a CPU or a GPU missing from :data:`PEAK_TABLE`, ``"no known peak
    FLOP/s for this device"`` (there is then no MFU to compute, rather than a peak of 0).

    >>> describe_peak("cpu")
    'no known peak FLOP/s for this device'
    """
    peak = peak_flops(device)
    if peak is None:
        return "no known peak FLOP/s for this device"
    return f"peak {peak / 1e12:.0f} TFLOP/s (dense 16-bit)"


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float:
    """Model FLOPs utilization: ``tokens_per_s * flops_per_token / peak``, a fraction.

    Raises ``ValueError`` if ``tokens_per_s`` or ``flops_per_token`` is negative, or if
    ``peak`` is ``None`` (no known peak, e.g. a CPU) or not ``> 0``.

    GPT-3 Small (``flops_per_token`` = 624M for training, Kaplan's count with attention) at
    500k tokens/s on an H100 (989 TFLOP/s):

    >>> round(mfu(500e3, 624e6, 989e12), 3)
    0.315
    """
    for name, value in (("tokens_per_s", tokens_per_s), ("flops_per_token", flops_per_token)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if peak is None or not peak > 0:
        raise ValueError(f"peak must be the device's peak FLOP/s (> 0), got {peak!r}; "
                         "peak_flops(device) gives it for known GPUs")
    return tokens_per_s * flops_per_token / peak


def flash_attn_available() -> bool:
    """Whether the ``flash-attn`` package (Dao et al.'s CUDA kernels) is installed. minigpt's
    ``"sdpa"`` backend reaches the same FlashAttention-2 algorithm through PyTorch, and
    ``"triton"`` through the book's own kernel; this only reports on the package."""
    return importlib.util.find_spec("flash_attn") is not None


def gpt3_small_or_tiny(full: bool, attention_backend: str = "sdpa", **overrides: Any) -> GPTConfig:
    """The model of the training chapter: GPT-3 Small as in Table 2.1 (``full=True``: 12
    layers, ``d_model`` 768, 12 heads of 64, context 2048, GPT-2's 50,257 tokens) or the tiny
    CPU model (``full=False``: :data:`minigpt.config.TINY_CONFIGS` ``"tiny"``), with the given
    attention backend and any other field ``overrides`` (``n_ctx=1024`` where memory is short,
    ``vocab_size`` of the tokenizer in use).

    Both use GPT-3's **alternating** dense and locally banded layers (section 2.1 of the
    paper) unless ``attention_pattern="dense"`` is passed. The paper gives no band width: GPT-3
    Small's band is 256 tokens (GPT-Neo's choice, an eighth of the context), an assumption; the
    tiny model keeps the same eighth of its context.

    >>> small = gpt3_small_or_tiny(True)
    >>> small.n_layer, small.d_model, small.n_heads, small.n_ctx, small.attention_backend
    (12, 768, 12, 2048, 'sdpa')
    >>> small.attention_pattern, small.local_window
    ('alternating', 256)
    >>> gpt3_small_or_tiny(False, "naive", vocab_size=256).local_window
    16
    """
    if not isinstance(full, bool):
        raise ValueError(f"full must be True (GPT-3 Small) or False (tiny), got {full!r}")
    overrides["attention_backend"] = attention_backend
    overrides.setdefault("attention_pattern", "alternating")
    if full:
        return gpt3_config("small", **overrides)
    tiny = TINY_CONFIGS["tiny"]
    overrides.setdefault("local_window", max(1, overrides.get("n_ctx", tiny.n_ctx) // 8))
    return tiny.replace(**overrides)


# ---------------------------------------------------------------------------------------------
# Adapting to the GPU at hand


class ColabGPU(NamedTuple):
    """A GPU that Google Colab lends: its name as CUDA reports it, memory in GB (decimal),
    compute capability (bf16 from 8.0) and the tier that offers it."""

    name: str
    memory_gb: float
    capability: tuple[int, int]
    tier: str


#: The three GPUs of Colab's runtimes (memory as reported to PyTorch, about 5% under the
#: label). Their peaks come from :data:`PEAK_TABLE`.
COLAB_GPUS: tuple[ColabGPU, ...] = (
    ColabGPU("Tesla T4", 15.8, (7, 5), "free"),
    ColabGPU("NVIDIA A100-SXM4-40GB", 42.5, (8, 0), "paid"),
    ColabGPU("NVIDIA H100 80GB HBM3", 85.0, (9, 0), "paid"),
)


def training_bytes_per_sequence(config: GPTConfig, seq_len: int | None = None) -> float:
    """Memory that one more training sequence costs, in bytes: the activations kept for the
    backward pass (Korthikanti et al.'s count, :func:`minigpt.scaling.activation_bytes`; the
    ``T x T`` attention scores only for the ``"naive"`` and ``"tiled"`` backends, since the
    fused ones never store them) plus the output logits, ``T V`` values held in 16 bits, in
    float32 for the cross-entropy, and their gradient (10 bytes each).

    >>> round(training_bytes_per_sequence(gpt3_config("small")) / 1e9, 2)
    1.67
    """
    seq_len = config.n_ctx if seq_len is None else seq_len
    fused = config.attention_backend in ("sdpa", "triton", "flex")
    acts = activation_bytes(config, 1, seq_len=seq_len,
                            recompute="selective" if fused else "none")
    return acts + 10.0 * seq_len * config.vocab_size


def micro_batch_for_memory(config: GPTConfig, free_bytes: float, *, seq_len: int | None = None,
                           headroom: float = 0.8, cap: int = 64) -> int:
    """The largest power-of-two micro-batch whose training memory fits in ``headroom`` of
    ``free_bytes``: model states (16 bytes per parameter: weights, gradients, Adam's two
    moments, :func:`minigpt.scaling.model_state_bytes`) plus
    :func:`training_bytes_per_sequence` per sequence; at least 1, at most ``cap``.

    GPT-3 Small at context 2048 on an 80 GB H100, a 40 GB A100 and a 16 GB T4:

    >>> small = gpt3_config("small")
    >>> [micro_batch_for_memory(small, gb * 1e9) for gb in (85.0, 42.5, 15.8)]
    [32, 16, 4]
    """
    if not free_bytes > 0:
        raise ValueError(f"free_bytes must be > 0, got {free_bytes!r}")
    state = 16.0 * count_parameters(config)
    per_seq = training_bytes_per_sequence(config, seq_len)
    fits = int((headroom * free_bytes - state) // per_seq)
    micro = 1
    while micro * 2 <= min(fits, cap):
        micro *= 2
    return micro


class GPURecipe(NamedTuple):
    """What :func:`adapt_to_gpu` chose: the device's ``name``, ``precision`` (``"bf16"``,
    ``"fp16"`` with a gradient ``scaler``, or ``"fp32"`` on a CPU), the ``peak`` FLOP/s
    (``None`` if unknown), the free memory in bytes (``None`` on a CPU) and ``micro_batch``."""

    name: str
    precision: str
    scaler: bool
    peak: float | None
    free_bytes: float | None
    micro_batch: int


def adapt_to_gpu(config: GPTConfig, device: str | torch.device | None = None, *,
                 cpu_micro_batch: int = 8, cap: int = 64) -> GPURecipe:
    """How to train ``config`` on ``device`` (default: the present one): the precision
    (:func:`minigpt.precision.pick_precision`: bf16 from compute capability 8.0, else fp16 and
    a gradient scaler, as on Colab's free T4), the peak FLOP/s for MFU, and the micro-batch
    that the GPU's *free* memory holds (``torch.cuda.mem_get_info``, then
    :func:`micro_batch_for_memory`). On a CPU: fp32 and ``cpu_micro_batch``.

    >>> adapt_to_gpu(gpt3_small_or_tiny(False)).precision
    'fp32'
    """
    cuda = cuda_device(device)
    if cuda is None:
        return GPURecipe("CPU", "fp32", False, None, None, cpu_micro_batch)
    free, _total = torch.cuda.mem_get_info(cuda)
    chosen = pick_precision(cuda)
    return GPURecipe(torch.cuda.get_device_name(cuda), chosen, chosen == "fp16",
                     peak_flops(cuda), float(free),
                     micro_batch_for_memory(config, float(free), cap=cap))


# ---------------------------------------------------------------------------------------------
# A model sized to the data


class DataPlan(NamedTuple):
    """What :func:`plan_for_data` decided: ``unique_tokens`` ``U``, ``epochs`` ``E``,
    ``tokens_seen`` ``E U``, ``effective_tokens`` ``D'`` (what the repeated tokens are worth as
    fresh ones), ``n_params`` (non-embedding parameters ``D' / 20``) and ``dropout``."""

    unique_tokens: int
    epochs: int
    tokens_seen: int
    effective_tokens: float
    n_params: float
    dropout: float


#: Muennighoff et al. (2023), "Scaling Data-Constrained Language Models", fitted decay constant:
#: the ``R``-th repetition of the data is worth ``exp(-R / R*)`` of fresh tokens.
REPEAT_DECAY = 15.4


def plan_for_data(unique_tokens: int, epochs: int = 16, tokens_per_param: float = 20.0,
                  dropout_after: int = 4) -> DataPlan:
    """Size a model to ``unique_tokens`` of data seen for ``epochs`` epochs.

    Compute-optimal training (Hoffmann et al. 2022, chapter 9) wants about ``20`` tokens per
    parameter, *fresh* tokens. Repeated ones are worth less: Muennighoff et al. (2023) fit the
    effective data of ``U`` unique tokens seen ``1 + R`` times as
    ``D' = U + U R* (1 - exp(-R / R*))`` with ``R* = 15.4``: four epochs are worth almost four
    times the data (3.7), sixteen about ten and a half, and more add little. The model gets
    ``N = D' / 20`` non-embedding parameters, and dropout (0.1) once the data repeats more than
    ``dropout_after`` times, where the same sequences come back often enough to be memorized.

    The book's Shakespeare (1.46M training tokens with a 4096-token BPE) for 16 epochs:

    >>> plan = plan_for_data(1_460_000)
    >>> round(plan.effective_tokens / 1e6, 1), round(plan.n_params / 1e3), plan.dropout
    (15.5, 773, 0.1)
    """
    for name, value in (("unique_tokens", unique_tokens), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    repeats = epochs - 1
    effective = unique_tokens * (1.0 + REPEAT_DECAY * (1.0 - math.exp(-repeats / REPEAT_DECAY)))
    return DataPlan(unique_tokens, epochs, unique_tokens * epochs, effective,
                    effective / tokens_per_param, 0.1 if epochs > dropout_after else 0.0)


def shape_for_params(n_params: float, d_head: int = 64) -> tuple[int, int]:
    """``(n_layer, d_model)`` whose GPT-3 blocks hold about ``n_params`` non-embedding
    parameters (``12 L d^2``), with ``d_model`` a multiple of ``d_head`` and at least 2 layers,
    preferring, among near ties (within 10%), the aspect ratio ``d_model / n_layer`` closest to
    32-64, the range of the smaller GPT-3 models (Small: 768 / 12 = 64); Kaplan et al. found
    the loss nearly flat in the aspect ratio.

    >>> shape_for_params(774e3), shape_for_params(85e6)
    ((4, 128), (12, 768))
    """
    if not n_params > 0:
        raise ValueError(f"n_params must be > 0, got {n_params!r}")
    best: tuple[float, float, int, int] | None = None
    for n_layer in range(2, 49):
        for d_model in range(d_head, 64 * d_head + 1, d_head):
            miss = abs(math.log(12 * n_layer * d_model**2 / n_params))
            aspect = d_model / n_layer
            shape_cost = 0.0 if 32 <= aspect <= 64 else abs(math.log(min(aspect, 64) / 48))
            key = (round(miss / 0.1), shape_cost, n_layer, d_model)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3]


# ---------------------------------------------------------------------------------------------
# The stored GPU run (tools/gpu_run.py) as text, for chapter 12


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def throughput_table(throughput: dict[str, Any]) -> str:
    """The throughput section of a ``gpu_run`` results file as a text table: one line per
    attention backend and compile setting, tokens/s and MFU by Kaplan's, PaLM's and the banded
    count, the micro-batch and peak memory; skipped or failed combinations say why."""
    counts = throughput["flops_per_token"]
    lines = [f"FLOPs per token (training): Kaplan {counts['kaplan'] / 1e6:.0f}M, PaLM "
             f"{counts['palm'] / 1e6:.0f}M, banded layers over their band "
             f"{counts['banded'] / 1e6:.0f}M",
             f"{'backend':8s} {'compile':7s} {'micro x accum':>13s} {'tokens/s':>10s} "
             f"{'MFU':>6s} {'PaLM':>6s} {'banded':>6s} {'mem GB':>7s}"]
    for r in throughput["rows"]:
        head = f"{r['backend']:8s} {'on' if r['compile'] else 'off':7s}"
        if "tokens_per_s" not in r:
            lines.append(f"{head} {r.get('skipped') or r.get('error', '')}")
            continue
        mem = "n/a" if r.get("peak_mem_gb") is None else f"{r['peak_mem_gb']:.1f}"
        shape = f"{r['micro_batch']} x {r['accum']}"
        lines.append(f"{head} {shape:>13s} "
                     f"{r['tokens_per_s']:10,.0f} {_pct(r.get('mfu')):>6s} "
                     f"{_pct(r.get('mfu_palm')):>6s} {_pct(r.get('mfu_banded')):>6s} {mem:>7s}")
    return "\n".join(lines)


def attention_table(attention: dict[str, Any]) -> str:
    """The attention section of a ``gpu_run`` results file: milliseconds, TFLOP/s (of the
    pairs each pattern attends) and peak extra memory per context length and variant."""
    lines = [f"{'T':>6} {'variant':<18} {'ms':>9} {'TFLOP/s':>8} {'MiB':>8}"]
    for r in attention["rows"]:
        if r.get("error"):
            lines.append(f"{r['t']:>6} {r['variant']:<18} {r['error']}")
            continue
        mib = "n/a" if r["mib"] is None else f"{r['mib']:.0f}"
        lines.append(f"{r['t']:>6} {r['variant']:<18} {r['ms']:>9.3f} {r['tflops']:>8.1f} "
                     f"{mib:>8}")
    return "\n".join(lines)


def corpus_table(corpus: dict[str, Any]) -> str:
    """The corpus models of a ``gpu_run`` results file: shape, parameters, epochs, time and
    held-out bits per character, and the character n-gram on the same split."""
    lines = [f"{'model':6s} {'layers x width':>14s} {'params':>11s} {'dropout':>7s} "
             f"{'epochs':>6s} {'seconds':>7s} {'bits/char':>9s}"]
    for m in corpus["models"]:
        shape = f"{m['n_layer']} x {m['d_model']}"
        lines.append(f"{m['name']:6s} {shape:>14s} "
                     f"{m['params_non_embedding']:>11,} {m['dropout']:>7.1f} "
                     f"{m['epochs_done']:>6.1f} {m['seconds']:>7.0f} "
                     f"{m['val_bits_per_char']:>9.3f}")
    ngram = corpus["ngram"]
    lines.append(f"character {ngram['order']}-gram (Kneser-Ney), same split: "
                 f"{ngram['bits_per_char']:.3f} bits/char")
    return "\n".join(lines)
