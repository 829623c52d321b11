"""Model parallelism on one machine: the ways GPT-3-sized models are split across GPUs.

Every scheme runs on the CPU with the ``gloo`` backend (ranks are processes), so it can be tested
anywhere; the same code runs on GPUs with ``nccl``.

- :mod:`~minigpt.parallel.launch`: start the ranks of a run
  (:func:`~minigpt.parallel.launch.spawn`).
- :mod:`~minigpt.parallel.tensor`: tensor parallelism (Megatron-LM): every matrix of a block split.
- :mod:`~minigpt.parallel.pipeline`: pipeline parallelism (GPipe, 1F1B): blocks split in stages.
- :mod:`~minigpt.parallel.fsdp`: fully sharded data parallelism (ZeRO-3).
- :mod:`~minigpt.parallel.layouts`: memory and communication per GPU of a parallel layout.
"""
