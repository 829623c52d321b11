"""Model checkpoints that load without pickle: safetensors files that carry their own config.

:meth:`minigpt.train.Trainer.save_checkpoint` keeps everything a run needs to resume (optimizer
moments, data position, random states) in a ``torch.save`` file. A model that ships with the
package only needs its weights, and should load anywhere, fast, without unpickling anything.
:func:`save_checkpoint` writes the weights as a `safetensors <https://huggingface.co/docs/
safetensors>`_ file, a JSON header followed by raw tensor bytes, and stores the model's
:class:`~minigpt.config.GPTConfig` (and any other metadata) as JSON strings in that header.
:func:`load_checkpoint` rebuilds the :class:`~minigpt.model.GPT` from the file alone; loading
reads numbers and JSON, so a checkpoint cannot run code.

>>> import tempfile, torch
>>> from minigpt.config import get_config
>>> from minigpt.model import GPT
>>> model = GPT(get_config("tiny"))
>>> file = Path(tempfile.mkdtemp()) / "tiny.safetensors"
>>> _ = save_checkpoint(model, file, {"note": "an example"})
>>> again = load_checkpoint(file)
>>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
...                                       again.state_dict().values()))
True
>>> read_metadata(file)["note"]
'an example'
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from minigpt.config import GPTConfig
from minigpt.model import GPT

__all__ = ["CONFIG_KEY", "FORMAT", "load_checkpoint", "read_metadata", "save_checkpoint"]

#: The header entry that marks a file as a minigpt checkpoint, and its value.
FORMAT = "minigpt-gpt-v1"
#: The header entry that holds the model's :class:`GPTConfig` as JSON.
CONFIG_KEY = "minigpt_config"


def save_checkpoint(
    model: GPT, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights and config to ``path`` (a ``.safetensors`` file); return it.

    ``metadata``: extra JSON-serializable values stored in the header (each key's value is
    written as JSON and read back by :func:`read_metadata`). A tied output layer is stored
    once. The file is written to a temporary name first and then renamed, so a reader never
    sees half a file.
    """
    from safetensors.torch import save_file

    if not isinstance(model, GPT):
        raise ValueError(f"model must be a minigpt GPT, got {type(model).__name__}")
    metadata = dict(metadata or {})
    for key in ("format", CONFIG_KEY):
        if key in metadata:
            raise ValueError(f"metadata key {key!r} is reserved for the checkpoint format")
    header = {key: json.dumps(value) for key, value in metadata.items()}
    header["format"] = FORMAT
    header[CONFIG_KEY] = json.dumps(dataclasses.asdict(model.config))
    tensors = {name: p.detach().cpu().contiguous()
               for name, p in model.state_dict().items()
               if not (model.config.tie_embeddings and name == "lm_head.weight")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.chmod(tmp, 0o644)  # safetensors creates files readable by their owner only
    os.replace(tmp, path)
    return path


def _header(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a minigpt safetensors file, with clear errors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{str(path)!r} is not a safetensors file ({error}); minigpt "
                         f"checkpoints are written by minigpt.checkpoint.save_checkpoint") from None
    if header.get("format") != FORMAT or CONFIG_KEY not in header:
        raise ValueError(f"{str(path)!r} is a safetensors file but not a minigpt checkpoint "
                         f"(its header has no format={FORMAT!r} and {CONFIG_KEY!r}); write one "
                         f"with minigpt.checkpoint.save_checkpoint")
    return header


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata stored by :func:`save_checkpoint`, JSON-decoded, with the model config
    under ``"config"`` (a dict of :class:`GPTConfig` fields)."""
    header = _header(path)
    meta = {k: json.loads(v) for k, v in header.items() if k not in ("format", CONFIG_KEY)}
    meta["config"] = json.loads(header[CONFIG_KEY])
    return meta


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> GPT:
    """The :class:`GPT` saved at ``path`` by :func:`save_checkpoint`, in eval mode.

    Reads the config from the file's header and the tensors with ``safetensors`` (no pickle).
    Loading draws no number from PyTorch's global random generator.
    Raises ``FileNotFoundError`` if there is no file and ``ValueError`` if the file is not a
    minigpt checkpoint or its tensors do not fit its config.
    """
    from safetensors.torch import load_file

    header = _header(path)
    config = GPTConfig(**json.loads(header[CONFIG_KEY]))
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the
        model = GPT(config)  # caller's random numbers where they were
    tensors = load_file(str(path), device=str(device))
    if config.tie_embeddings:
        tensors.setdefault("lm_head.weight", tensors.get("transformer.wte.weight"))
    expected = set(model.state_dict())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{str(path)!r} does not match its config: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    model.load_state_dict(tensors)
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    return model.eval()
