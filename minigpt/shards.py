"""Token shards: a corpus too large for memory, streamed from disk one file at a time.

The book's own corpus (Shakespeare, about 1.5M tokens) fits in memory as one tensor, which
:class:`minigpt.train.TokenBatcher` cuts into windows. A larger public corpus (hundreds of
millions of tokens, downloaded on Colab as an optional extra) does not. The usual answer, as in
nanoGPT and llm.c, is to tokenize once into **shards**: files of a fixed number of token ids
(``uint16`` while the vocabulary has at most 65,536 entries, else ``uint32``), read through a
memory map so that only the pages a batch touches are loaded.

* :func:`write_shards` tokenizes an iterable of documents (each followed by the end-of-text
  token, as :func:`minigpt.train.pack_documents`) into ``shard_00000.npy``, ... (NumPy's format:
  the header stores the dtype and the length).
* :class:`ShardedBatcher` is a :class:`minigpt.train.Batcher`: it visits the shards in an order
  drawn from the seed and the epoch, and within each shard its windows of ``seq_len + 1`` tokens
  in a random order, holding one memory-mapped shard at a time. Its position is four integers,
  so a checkpoint resumes on exactly the next batch.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> paths = write_shards([[1, 2, 3], [4, 5]], folder, shard_tokens=4, eot_id=0)
>>> [p.name for p in paths], [read_shard(p).tolist() for p in paths]
(['shard_00000.npy', 'shard_00001.npy'], [[1, 2, 3, 0], [4, 5, 0]])
>>> x, y = ShardedBatcher(folder, seq_len=2, shuffle=False).next_batch(1)
>>> x.tolist(), y.tolist()
([[1, 2]], [[2, 3]])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ShardedBatcher", "list_shards", "read_shard", "write_shards"]


def _dtype_for(max_id: int) -> np.dtype:
    return np.dtype(np.uint16) if max_id < 2**16 else np.dtype(np.uint32)


def write_shards(
    documents: Iterable[Sequence[int]], folder: str | os.PathLike[str], *,
    shard_tokens: int = 2**24, eot_id: int, vocab_size: int | None = None,
) -> list[Path]:
    """Write the token ids of ``documents``, each followed by ``eot_id``, into files of
    ``shard_tokens`` ids (the last one shorter) named ``shard_00000.npy``, ... in ``folder``.

    The dtype is ``uint16`` when every id (or ``vocab_size - 1``) is below 65,536, else
    ``uint32``. Returns the paths, in order. Documents may be a generator (a streamed download):
    only one shard is held in memory.
    """
    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, int) or shard_tokens < 2:
        raise ValueError(f"shard_tokens must be an int >= 2, got {shard_tokens!r}")
    if isinstance(eot_id, bool) or not isinstance(eot_id, int) or eot_id < 0:
        raise ValueError(f"eot_id must be a token id (an int >= 0), got {eot_id!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = _dtype_for(vocab_size - 1 if vocab_size else 2**32 - 1)
    buffer = np.empty(shard_tokens, dtype=np.int64)
    filled, paths = 0, []

    def flush(n: int) -> None:
        ids = buffer[:n]
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(dtype).max):
            raise ValueError(f"token ids must lie in [0, {np.iinfo(dtype).max}], got "
                             f"{ids.min()}..{ids.max()}")
        path = folder / f"shard_{len(paths):05d}.npy"
        np.save(path, ids.astype(dtype))
        paths.append(path)

    for doc in documents:
        ids = np.append(np.asarray(doc, dtype=np.int64).ravel(), eot_id)
        while ids.size:
            take = min(ids.size, shard_tokens - filled)
            buffer[filled : filled + take] = ids[:take]
            filled, ids = filled + take, ids[take:]
            if filled == shard_tokens:
                flush(filled)
                filled = 0
    if filled or not paths:
        if not filled:
            raise ValueError("write_shards needs at least one document")
        flush(filled)
    return paths


def list_shards(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``shard_*.npy`` files of ``folder``, sorted; ``FileNotFoundError`` if there are none."""
    paths = sorted(Path(folder).glob("shard_*.npy"))
    if not paths:
        raise FileNotFoundError(f"no shard_*.npy files in {str(folder)!r} (write_shards makes "
                                "them)")
    return paths


def read_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """One shard as a read-only memory-mapped 1-D array of token ids (nothing is read yet)."""
    array = np.load(path, mmap_mode="r")
    if array.ndim != 1 or array.dtype not in (np.uint16, np.uint32):
        raise ValueError(f"{str(path)!r} is not a token shard (1-D uint16/uint32), got "
                         f"{array.dtype} of shape {array.shape}")
    return array


class ShardedBatcher:
    """Training windows streamed from token shards, one memory-mapped shard at a time.

    Shard ``s`` of ``n_s`` tokens gives ``(n_s - 1) // seq_len`` windows (inputs
    ``ids[i T : (i + 1) T]``, targets shifted by one; a window never crosses two shards). Each
    epoch visits the shards in an order drawn from ``seed`` and the epoch, and each shard's
    windows in an order drawn from the seed, epoch and shard (``shuffle=False``: in order).

    Args:
        shards: a folder of ``shard_*.npy`` files or a list of their paths.
        seq_len: tokens per training sequence.
        seed: the data order.
        shuffle: random orders (True) or file and window order (False).
    """

    def __init__(self, shards: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 seq_len: int, *, seed: int = 0, shuffle: bool = True) -> None:
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        paths = (list_shards(shards) if isinstance(shards, str | os.PathLike)
                 else [Path(p) for p in shards])
        self.windows = [(len(read_shard(p)) - 1) // seq_len for p in paths]
        self.paths = [p for p, w in zip(paths, self.windows, strict=True) if w > 0]
        self.windows = [w for w in self.windows if w > 0]
        if not self.paths:
            raise ValueError(f"no shard holds one sequence of {seq_len} tokens (+1 target)")
        self.seq_len, self.seed, self.shuffle = seq_len, seed, shuffle
        self.epoch = self.shard_pos = self.cursor = 0
        self._load()

    @property
    def n_windows(self) -> int:
        """Windows in one epoch (all shards)."""
        return sum(self.windows)

    def _perm(self, n: int, salt: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch, salt]).permutation(n)

    def _load(self) -> None:
        """Open the shard at ``shard_pos`` of this epoch's order and draw its window order."""
        self._shard_order = self._perm(len(self.paths), 0)
        index = int(self._shard_order[self.shard_pos])
        self._ids = read_shard(self.paths[index])
        self._order = self._perm(self.windows[index], index + 1)

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The next ``batch_size`` windows: ``x, y`` of shape ``(batch_size, seq_len)``."""
        rows = []
        for _ in range(batch_size):
            if self.cursor == len(self._order):
                self.cursor, self.shard_pos = 0, self.shard_pos + 1
                if self.shard_pos == len(self.paths):
                    self.shard_pos, self.epoch = 0, self.epoch + 1
                self._load()
            start = int(self._order[self.cursor]) * self.seq_len
            rows.append(np.asarray(self._ids[start : start + self.seq_len + 1], dtype=np.int64))
            self.cursor += 1
        batch = torch.from_numpy(np.stack(rows))  # (B, T + 1)
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        """The position in the data: ``{"seed", "epoch", "shard_pos", "cursor"}``."""
        return {"seed": self.seed, "epoch": self.epoch, "shard_pos": self.shard_pos,
                "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go back to a position saved by :meth:`state_dict`."""
        self.seed, self.epoch = state["seed"], state["epoch"]
        self.shard_pos, self.cursor = state["shard_pos"], state["cursor"]
        self._load()
