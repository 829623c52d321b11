"""Which device, and which number format to train in.

A GPU multiplies 16-bit numbers on its tensor cores many times faster than 32-bit ones.
``bfloat16`` keeps float32's exponent range, so training in it needs nothing else; it exists on
NVIDIA GPUs of compute capability 8.0 and later (Ampere: A100, A10, L4, H100, ...). Older ones
(V100, and Colab's free T4) have ``float16`` only, whose small range lets small gradients
underflow to 0: the loss is multiplied by a large **loss scale** before the backward pass and
the gradients divided by it before the update (``torch.amp.GradScaler``). :func:`pick_precision`
chooses; :class:`minigpt.train.Trainer` applies the choice.

Nothing here needs a GPU to import or to test: on a CPU the answer is ``"fp32"``.
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "cuda_device", "get_device", "pick_precision", "supports_bf16"]

#: What :class:`minigpt.train.TrainConfig` accepts: ``"auto"`` is :func:`pick_precision`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def get_device() -> str:
    """``"cuda"`` when a CUDA GPU is present, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cuda_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device`` if it is a CUDA one, else ``None``."""
    device = torch.device(get_device() if device is None else device)
    return device if device.type == "cuda" else None


def supports_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` is a CUDA GPU with bfloat16 tensor cores (compute capability 8.0+:
    A100, A10, L4, H100, ...; not V100 or T4). ``False`` on a CPU, where bf16 autocast runs but
    is no faster than float32 on most processors.

    >>> supports_bf16("cpu")
    False
    """
    cuda = cuda_device(device)
    return cuda is not None and torch.cuda.get_device_capability(cuda) >= (8, 0)


def pick_precision(device: str | torch.device | None = None) -> str:
    """What ``precision="auto"`` means on ``device``: ``"bf16"`` on a GPU that has it,
    ``"fp16"`` (with a gradient scaler) on an older GPU, ``"fp32"`` on a CPU.

    >>> pick_precision("cpu")
    'fp32'
    """
    if cuda_device(device) is None:
        return "fp32"
    return "bf16" if supports_bf16(device) else "fp16"
