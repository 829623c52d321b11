"""Training on one GPU: which precision, how fast the chip could go, and how much of that we use.

* **Precision.** A GPU multiplies 16-bit numbers on its tensor cores many times faster than
  32-bit ones. ``bfloat16`` keeps float32's exponent range, so training in it needs nothing
  else; it exists on NVIDIA GPUs of compute capability 8.0 and later (Ampere: A100, A10, L4,
  H100, ...). Older ones (V100, and Colab's free T4) have ``float16`` only, whose small range
  lets small gradients underflow to 0: the loss is multiplied by a large **loss scale** before
  the backward pass and the gradients divided by it before the update
  (``torch.amp.GradScaler``). :func:`pick_precision` chooses.
* **Peak FLOP/s.** :data:`PEAK_TABLE` lists the dense 16-bit tensor-core peak of common GPUs
  from NVIDIA's datasheets; :func:`peak_flops` looks up the present one by name.
* **MFU**, model FLOPs utilization (Chowdhery et al. 2022, PaLM, appendix B): the FLOPs the
  model needs per token (:func:`minigpt.scaling.flops_per_token`) times the tokens per second
  achieved, over the peak. Work the hardware does beyond the model's count (recomputation,
  padding) earns nothing, so MFU compares runs fairly.
* :func:`gpt3_small_or_tiny`: one switch between GPT-3 Small exactly as in Table 2.1 and a
  tiny model that trains on a CPU in seconds.

Nothing here needs a GPU to import or to test: on a CPU the helpers answer "fp32" and "no peak".
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, NamedTuple

import torch

from minigpt.book import get_device
from minigpt.config import TINY_CONFIGS, GPTConfig, gpt3_config
from minigpt.scaling import PEAK_FLOPS

__all__ = [
    "PEAK_TABLE",
    "PRECISIONS",
    "PeakRow",
    "flash_attn_available",
    "gpt3_small_or_tiny",
    "lookup_peak_flops",
    "mfu",
    "peak_flops",
    "pick_precision",
    "supports_bf16",
]

#: What :class:`minigpt.train.TrainConfig` accepts: ``"auto"`` is :func:`pick_precision`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def _cuda(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device`` if it is a CUDA one, else ``None``."""
    device = torch.device(get_device() if device is None else device)
    return device if device.type == "cuda" else None


def peak_flops(device: str | torch.device | None = None) -> float | None:
    """The peak FLOP/s of ``device`` (default: :func:`minigpt.book.get_device`) for MFU:
    :func:`lookup_peak_flops` of its name on CUDA, ``None`` on a CPU or an unknown GPU.

    >>> peak_flops("cpu") is None
    True
    """
    cuda = _cuda(device)
    return None if cuda is None else lookup_peak_flops(torch.cuda.get_device_name(cuda))


def supports_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` is a CUDA GPU with bfloat16 tensor cores (compute capability 8.0+:
    A100, A10, L4, H100, ...; not V100 or T4). ``False`` on a CPU, where bf16 autocast runs but
    is no faster than float32 on most processors.

    >>> supports_bf16("cpu")
    False
    """
    cuda = _cuda(device)
    return cuda is not None and torch.cuda.get_device_capability(cuda) >= (8, 0)


def pick_precision(device: str | torch.device | None = None) -> str:
    """What ``precision="auto"`` means on ``device``: ``"bf16"`` on a GPU that has it,
    ``"fp16"`` (with a gradient scaler) on an older GPU, ``"fp32"`` on a CPU.

    >>> pick_precision("cpu")
    'fp32'
    """
    if _cuda(device) is None:
        return "fp32"
    return "bf16" if supports_bf16(device) else "fp16"


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float:
    """Model FLOPs utilization: ``tokens_per_s * flops_per_token / peak``, a fraction.

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

    >>> small = gpt3_small_or_tiny(True)
    >>> small.n_layer, small.d_model, small.n_heads, small.n_ctx, small.attention_backend
    (12, 768, 12, 2048, 'sdpa')
    >>> gpt3_small_or_tiny(False, "naive", vocab_size=256).d_model
    64
    """
    if not isinstance(full, bool):
        raise ValueError(f"full must be True (GPT-3 Small) or False (tiny), got {full!r}")
    overrides["attention_backend"] = attention_backend
    if full:
        return gpt3_config("small", **overrides)
    return TINY_CONFIGS["tiny"].replace(**overrides)
