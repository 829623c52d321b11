"""Memory and communication per GPU of a parallel layout, for GPT-3 175B or any GPT.

A layout mixes data parallelism (with a ZeRO stage, :mod:`minigpt.parallel.fsdp`), tensor
parallelism
(:mod:`minigpt.parallel.tensor`) and pipeline parallelism (:mod:`minigpt.parallel.pipeline`).
:func:`communication_per_step` counts the bytes each GPU sends per training step, and
:func:`compare_layouts` sets them beside :func:`minigpt.scaling.memory_per_gpu` for several
layouts, by default :data:`GPT3_175B_LAYOUTS` (ways to train GPT-3 175B on 1,536 GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from minigpt.checks import check_int
from minigpt.config import GPTConfig, count_parameters
from minigpt.scaling import Memory, memory_per_gpu

__all__ = [
    "GPT3_175B_LAYOUTS",
    "Communication",
    "Layout",
    "LayoutReport",
    "communication_per_step",
    "compare_layouts",
]


@dataclass(frozen=True)
class Communication:
    """Bytes one GPU sends per training step, by kind of parallelism."""

    tensor: float
    pipeline: float
    data: float

    @property
    def total(self) -> float:
        return self.tensor + self.pipeline + self.data

    def gb(self) -> dict[str, float]:
        """Every field and the total in GB (1e9 bytes), rounded to 0.1."""
        parts = {"tensor": self.tensor, "pipeline": self.pipeline, "data": self.data,
                 "total": self.total}
        return {k: round(v / 1e9, 1) for k, v in parts.items()}


def _ring(n: int) -> float:
    """Bytes each of ``n`` ranks sends in a ring all-reduce, per byte reduced: ``2 (n-1)/n``."""
    return 2 * (n - 1) / n


def communication_per_step(
    config: GPTConfig,
    *,
    data_parallel: int = 1,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    global_batch: int = 1536,
    micro_batch: int = 1,
    seq_len: int | None = None,
    zero_stage: int = 0,
    bytes_per_value: int = 2,
) -> Communication:
    """Bytes one GPU sends in one training step under data, tensor and pipeline parallelism.

    ``b`` = ``micro_batch``, ``s`` = ``seq_len`` (default ``n_ctx``), ``h`` = ``d_model``,
    ``L`` = ``n_layer``, ``t, p, d`` the degrees, ``N`` the parameters; each pipeline runs
    ``m = global_batch / (d b)`` micro-batches per step; values are ``bytes_per_value`` bytes
    (2: 16-bit activations and gradients). Assumptions:

    - an all-reduce of ``V`` bytes over ``n`` ranks is a ring: each rank sends
      ``2 (n-1)/n V`` (a reduce-scatter, then an all-gather);
    - **tensor**: each block does 2 all-reduces of ``b s h`` values in the forward pass
      (``g`` after attention and after the MLP) and 2 in the backward pass (the ``f``'s);
      a GPU holds ``L / p`` blocks: ``4 (L/p) m 2 (t-1)/t b s h`` values (activation
      recomputation would add the forward's 2 again);
    - **pipeline**: a stage sends its output activation, ``b s h`` values, to the next stage
      and the gradient of its input, ``b s h``, to the previous one, per micro-batch:
      ``2 m b s h`` values for an inner stage (every GPU of a tensor-parallel group sends the
      whole tensor; Megatron's scatter/gather optimization would divide it by ``t``);
    - **data**: gradients of the GPU's ``N / (t p)`` parameters are all-reduced once per step:
      ``2 (d-1)/d N / (t p)`` values; ZeRO-1 and 2 send the same (a reduce-scatter of the
      gradients, an all-gather of the updated weights); ZeRO-3 also all-gathers the weights
      in the backward pass, ``3 (d-1)/d N / (t p)`` (Rajbhandari et al. 2020, section 7).

    GPT-3 175B was trained with batches of 3.2M tokens (Table 2.1); the default
    ``global_batch=1536`` sequences of 2048 tokens (3.1M) is the batch Megatron-LM uses for it.
    Megatron's 3D layout for 175B on 1536 GPUs (``t=8, p=8, d=24``, Narayanan et al. 2021):

    >>> from minigpt.config import gpt3_config
    >>> comm = communication_per_step(gpt3_config("175B"), data_parallel=24, tensor_parallel=8,
    ...                               pipeline_parallel=8)
    >>> comm.gb()
    {'tensor': 270.6, 'pipeline': 6.4, 'data': 10.5, 'total': 287.5}

    Tensor parallelism sends by far the most, which is why it stays inside one server, on
    NVLink, while pipeline and data parallelism cross the slower network between servers.
    """
    for name, value in [("data_parallel", data_parallel), ("tensor_parallel", tensor_parallel),
                        ("pipeline_parallel", pipeline_parallel), ("global_batch", global_batch),
                        ("micro_batch", micro_batch), ("bytes_per_value", bytes_per_value)]:
        check_int(name, value)
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if global_batch % (data_parallel * micro_batch):
        raise ValueError(f"global_batch={global_batch} must be divisible by data_parallel x "
                         f"micro_batch = {data_parallel * micro_batch}")
    if config.n_layer % pipeline_parallel:
        raise ValueError(f"n_layer={config.n_layer} must be divisible by "
                         f"pipeline_parallel={pipeline_parallel}")
    seq_len = config.n_ctx if seq_len is None else seq_len
    check_int("seq_len", seq_len)
    t, p, d = tensor_parallel, pipeline_parallel, data_parallel
    m = global_batch // (d * micro_batch)
    activation = micro_batch * seq_len * config.d_model * bytes_per_value  # one b x s x h tensor
    tensor = 4 * (config.n_layer / p) * m * _ring(t) * activation
    pipeline = 2 * m * activation if p > 1 else 0.0
    local_params = count_parameters(config) / (t * p)
    data = (1.5 if zero_stage == 3 else 1.0) * _ring(d) * local_params * bytes_per_value
    return Communication(tensor, pipeline, data)


class Layout(NamedTuple):
    """Degrees of data, tensor and pipeline parallelism, and the ZeRO stage."""

    data_parallel: int
    tensor_parallel: int
    pipeline_parallel: int
    zero_stage: int = 0

    @property
    def n_gpus(self) -> int:
        return self.data_parallel * self.tensor_parallel * self.pipeline_parallel


#: Ways to lay GPT-3 175B out on 1,536 GPUs: plain data parallelism with ZeRO-3 (FSDP),
#: Megatron-LM's 3D layout (Narayanan et al. 2021: t=8 inside a server, p=8, d=24) with and
#: without ZeRO-1, and deeper pipelines with less tensor parallelism.
GPT3_175B_LAYOUTS = (
    Layout(1536, 1, 1, zero_stage=3),
    Layout(24, 8, 8),
    Layout(24, 8, 8, zero_stage=1),
    Layout(48, 4, 8, zero_stage=1),
    Layout(12, 8, 16, zero_stage=1),
)


class LayoutReport(NamedTuple):
    """Memory and communication per GPU for one :class:`Layout`."""

    layout: Layout
    memory: Memory
    communication: Communication


def compare_layouts(
    config: GPTConfig,
    layouts: Sequence[Layout] = GPT3_175B_LAYOUTS,
    *,
    global_batch: int = 1536,
    micro_batch: int = 1,
    recompute: str = "selective",
    precision: str = "mixed",
) -> list[LayoutReport]:
    """Memory per GPU (:func:`minigpt.scaling.memory_per_gpu`, activations included) and
    bytes sent per GPU per step (:func:`communication_per_step`) for each layout.

    >>> from minigpt.config import gpt3_config
    >>> for r in compare_layouts(gpt3_config("175B")):
    ...     print(tuple(r.layout), r.memory.gb()["total"], r.communication.gb()["total"])
    (1536, 1, 1, 3) 84.0 1046.9
    (24, 8, 8, 0) 75.1 287.5
    (24, 8, 8, 1) 43.7 287.5
    (48, 4, 8, 1) 61.8 140.6
    (12, 8, 16, 1) 38.2 288.5
    """
    reports = []
    for layout in layouts:
        if not isinstance(layout, Layout):
            layout = Layout(*layout)
        memory = memory_per_gpu(
            config, data_parallel=layout.data_parallel, tensor_parallel=layout.tensor_parallel,
            pipeline_parallel=layout.pipeline_parallel, zero_stage=layout.zero_stage,
            precision=precision, micro_batch=micro_batch, recompute=recompute,
        )
        comm = communication_per_step(
            config, data_parallel=layout.data_parallel, tensor_parallel=layout.tensor_parallel,
            pipeline_parallel=layout.pipeline_parallel, zero_stage=layout.zero_stage,
            global_batch=global_batch, micro_batch=micro_batch,
        )
        reports.append(LayoutReport(layout, memory, comm))
    return reports
