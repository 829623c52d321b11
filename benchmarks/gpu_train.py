"""Training throughput and MFU of GPT-3 Small on the present GPU, by attention backend and compile.

GPT-3 Small as in Table 2.1 (12 layers, d_model 768, 12 heads, context 2048, GPT-2's
vocabulary), with GPT-3's alternating dense and locally banded layers (band 256, an
assumption: the paper gives none; ``--dense`` for all-dense), trains with
:class:`minigpt.train.Trainer`, the code the book's last chapter runs: mixed precision
(``precision="auto"``: bf16 where the GPU has it, else fp16 with a gradient scaler), fused
AdamW, gradient accumulation (``--accum`` micro-batches of ``--micro-batch`` sequences per
step), global-norm clipping. Every combination of attention backend (naive / sdpa / flex /
triton; the banded layers of naive, sdpa and triton use an explicit mask, flex skips the tiles
outside the band) and ``torch.compile`` off / on is timed over ``--steps`` steady-state steps
after ``--warmup`` steps (compilation, autotuning, the allocator's warm-up), between
``torch.cuda.synchronize()`` calls, on random tokens. A combination that runs out of memory is
retried with half the micro-batch and twice the accumulation (same batch); one that fails
otherwise is reported and skipped.

MFU is tokens/s x FLOPs per token over the GPU's dense 16-bit peak (:mod:`minigpt.gpu`). FLOPs
per token are :func:`minigpt.scaling.flops_per_token`: Kaplan et al.'s ``6N + 6 n_layer n_ctx
d`` with ``N`` the non-embedding parameters (624M for Small at 2048). The table also gives the
MFU of the plain ``6N`` count, which leaves attention out (510M), and of PaLM's count
(Chowdhery et al. 2022, appendix B: every parameter, and attention's two products, ``6N_total
+ 12 n_layer n_ctx d``, 978M), which includes the output layer's ``2 d V`` product that Kaplan's
leaves out: nanoGPT's MFU is PaLM's. These counts treat every layer as dense, the usual
convention; ``mfu_banded`` counts the banded layers over their band only (Kaplan's count with
``banded=True``, 574M), the FLOPs the alternating model really needs.

    python benchmarks/gpu_train.py [--micro-batch 16] [--accum 2] [--steps 8] [--warmup 3]
                                   [--backends naive sdpa triton] [--compile off on]

Last line: ``gpu_train mfu=<best fraction> tokens_per_s=<n> device=<name>`` (the best
combination, Kaplan's count), or ``gpu_train skipped reason=no-cuda`` without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from minigpt import gpu, precision
from minigpt.config import GPTConfig
from minigpt.model import GPT
from minigpt.scaling import flops_per_token
from minigpt.train import TrainConfig, Trainer


def flop_counts(config: GPTConfig) -> dict[str, float]:
    """Training FLOPs per token by three conventions (see the module docstring)."""
    palm = (flops_per_token(config, params="total", attention=False)
            + 12.0 * config.n_layer * config.n_ctx * config.d_attn)
    return {"kaplan": flops_per_token(config), "6n": flops_per_token(config, attention=False),
            "palm": palm, "banded": flops_per_token(config, banded=True)}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch._dynamo.reset()  # forget compiled graphs of the last model


def measure(config: GPTConfig, *, compile: bool, micro_batch: int, accum: int = 1,
            steps: int = 8, warmup: int = 3, precision: str = "auto",
            device: str = "cuda") -> dict[str, float | str | None]:
    """Train ``config`` for ``warmup + steps`` steps of ``micro_batch * accum`` sequences of
    ``config.n_ctx`` random tokens; time the last ``steps``. Returns ``tokens_per_s``,
    ``mfu`` (Kaplan's count, ``None`` if the GPU's peak is unknown), ``mfu_6n``, ``mfu_palm``,
    ``peak_mem_gb`` (``None`` on a CPU), the ``precision`` used and the last ``loss``. (It runs on
    a CPU too, for the tests.)"""
    cuda = torch.device(device).type == "cuda"
    torch.manual_seed(0)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model = GPT(config).to(device)
    batch, seq = micro_batch * accum, config.n_ctx
    stream = torch.randint(0, config.vocab_size, ((warmup + steps) * batch * seq + 1,))
    train_config = TrainConfig(max_steps=warmup + steps, batch_size=batch,
                               micro_batch_size=micro_batch, precision=precision,
                               compile=compile, fused_adamw=True)
    trainer = Trainer(model, stream, train_config)
    trainer.train(steps=warmup)
    _sync(device)
    t0 = time.perf_counter()
    trainer.train(steps=steps)
    _sync(device)
    tokens_per_s = steps * batch * seq / (time.perf_counter() - t0)
    peak = gpu.peak_flops(device)
    result: dict[str, float | str | None] = {
        "tokens_per_s": tokens_per_s, "precision": trainer.precision,
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "loss": trainer.history[-1]["loss"],
    }
    for name, flops in flop_counts(config).items():
        key = "mfu" if name == "kaplan" else f"mfu_{name}"
        result[key] = None if peak is None else gpu.mfu(tokens_per_s, flops, peak)
    del trainer, model
    return result


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def measure_fitting(config: GPTConfig, *, micro_batch: int, accum: int, **kw):
    """:func:`measure`, halving the micro-batch (doubling ``accum``) while memory runs out.
    Returns ``(micro_batch, accum, result)``."""
    while True:
        try:
            return micro_batch, accum, measure(config, micro_batch=micro_batch, accum=accum, **kw)
        except Exception as err:
            if not _is_oom(err) or micro_batch == 1:
                raise
        _free()  # here, once the traceback (which holds the tensors) is gone
        micro_batch, accum = micro_batch // 2, accum * 2


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--accum", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--seq-len", type=int, default=2048, help="context (GPT-3: 2048)")
    parser.add_argument("--backends", nargs="+", default=["naive", "sdpa", "flex", "triton"])
    parser.add_argument("--dense", action="store_true", help="every layer dense (no band)")
    parser.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("no CUDA GPU: gpu_train benchmark skipped (it measures GPT-3 Small on a GPU)")
        print("gpu_train skipped reason=no-cuda")
        return
    torch.backends.cuda.matmul.allow_tf32 = True  # float32 leftovers on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name()
    peak = gpu.peak_flops("cuda")
    config = gpu.gpt3_small_or_tiny(
        True, n_ctx=args.seq_len, attention_pattern="dense" if args.dense else "alternating")
    counts = flop_counts(config)
    print(f"device: {name}, peak {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}"
          f" (dense 16-bit), torch {torch.__version__}, precision {args.precision} -> "
          f"{precision.pick_precision('cuda') if args.precision == 'auto' else args.precision}")
    print(f"model: GPT-3 Small, {config.n_layer} layers, d_model {config.d_model}, "
          f"{config.n_heads} heads, context {config.n_ctx}, vocab {config.vocab_size}, "
          f"{config.attention_pattern} attention (band {config.local_window}); "
          f"FLOPs/token (training): Kaplan {counts['kaplan'] / 1e6:.0f}M, 6N "
          f"{counts['6n'] / 1e6:.0f}M, PaLM {counts['palm'] / 1e6:.0f}M")
    print(f"flash-attn package installed: {gpu.flash_attn_available()} (not a minigpt backend; "
          "'sdpa' reaches FlashAttention-2 through PyTorch)")
    header = (f"{'backend':8s} {'compile':7s} {'micro x accum':>13s} {'tokens/s':>10s} "
              f"{'MFU':>6s} {'MFU 6N':>7s} {'MFU PaLM':>8s} {'mem GB':>7s}  note")
    print(header)
    print("-" * len(header))
    best: tuple[float, float | None] | None = None
    for backend in args.backends:
        for comp in args.compile:
            cfg = config.replace(attention_backend=backend)
            failed = None
            try:
                micro, accum, r = measure_fitting(
                    cfg, micro_batch=args.micro_batch, accum=args.accum, steps=args.steps,
                    warmup=args.warmup, compile=comp == "on", precision=args.precision)
            except Exception as err:  # one failure must not end the table
                failed = f"failed: {type(err).__name__}: {(str(err) + ' ').splitlines()[0][:70]}"
            if failed:
                print(f"{backend:8s} {comp:7s} {'':>13s} {'':>10s} {'':>6s} {'':>7s} "
                      f"{'':>8s} {'':>7s}  {failed}")
                _free()
                continue
            print(f"{backend:8s} {comp:7s} {f'{micro} x {accum}':>13s} "
                  f"{r['tokens_per_s']:10.0f} {_pct(r['mfu']):>6s} {_pct(r['mfu_6n']):>7s} "
                  f"{_pct(r['mfu_palm']):>8s} {r['peak_mem_gb']:7.1f}  loss {r['loss']:.2f}",
                  flush=True)
            if best is None or r["tokens_per_s"] > best[0]:
                best = (r["tokens_per_s"], r["mfu"])
            _free()
    if best is None:
        print("gpu_train mfu=nan tokens_per_s=0 device=" + name.replace(" ", "_"))
        return
    mfu = "nan" if best[1] is None else f"{best[1]:.3f}"
    print(f"gpu_train mfu={mfu} tokens_per_s={best[0]:.0f} device={name.replace(' ', '_')}")


if __name__ == "__main__":
    main()
