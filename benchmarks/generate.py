"""Greedy decoding speed with and without the KV cache as the sequence grows, on the CPU.

    python benchmarks/generate.py [--config mini] [--lengths 32 64 128 256] [--repeats 3]

For each final length ``L`` the model generates ``L - 1`` tokens after a one-token prompt,
with :func:`minigpt.generate.greedy` (``use_cache=True`` and ``False``), and, when
``transformers`` is installed, with Hugging Face's ``generate`` on the same (random) weights as
the reference. Both ways give the same tokens (``tests/test_generate.py``); the cache turns the
work of step ``t`` from a forward pass over ``t`` tokens into one over a single token, so the
cost of a whole generation goes from ``O(L^2)`` token-passes to ``O(L)`` and the speed-up grows
with ``L`` (attention over the cache is still ``O(t)`` per step, but small at these sizes).

Times are wall-clock (``time.perf_counter``) on one torch thread, the fastest of ``--repeats``.

A second table is sampling at nanoGPT's Shakespeare shape (4 layers, width 128, 4 heads,
context 128, 65 characters, batch 1, a one-token prompt, ``--small-new`` = 200 new tokens,
temperature 0.8, ``--small-threads`` = 2): :func:`minigpt.generate.sample` with the cache
against nanoGPT's ``generate``, a loop that re-runs the last 128 tokens every step
(:func:`crop_loop`), the two runs alternating. Within the context both give the same tokens.
Past it, :func:`~minigpt.generate.sample` keeps the newer half of the context and goes on with
the cache (one recomputation of 64 tokens every 64 steps), where the crop loop slides by one
token (a 128-token forward pass every step): the tokens differ from there on, the work is far
less. At this size the per-token Python overhead dominates a cached step.

The last line is machine readable: ``generate kv_cache_speedup=<ratio>
kv_cache_speedup_small=<ratio>``, minigpt's tokens/s with the cache divided by without it, at
the longest length of the first table and at the Shakespeare shape.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

from minigpt.config import GPTConfig, get_config
from minigpt.generate import greedy, sample
from minigpt.model import GPT, hf_gpt2_config, to_hf_gpt2_state_dict


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall-clock time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hf_generate(hf: object, prompt: torch.Tensor, n: int, use_cache: bool) -> None:
    """Hugging Face's greedy ``generate`` of exactly ``n`` tokens."""
    with torch.no_grad():
        hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                    use_cache=use_cache)


#: nanoGPT's Shakespeare-character model, at the book's CPU width.
SHAKESPEARE = GPTConfig(n_layer=4, d_model=128, n_heads=4, vocab_size=65, n_ctx=128)


@torch.inference_mode()
def crop_loop(model: GPT, idx: torch.Tensor, n: int, temperature: float,
              gen: torch.Generator) -> torch.Tensor:
    """nanoGPT's ``generate``: every step re-runs the last ``n_ctx`` tokens, no cache."""
    n_ctx = model.config.n_ctx
    for _ in range(n):
        logits = model(idx[:, -n_ctx:])[0][:, -1] / temperature
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def small_sampling(new_tokens: int, threads: int, repeats: int) -> float:
    """Print the Shakespeare-shape table; return the cache's speed-up at ``new_tokens``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(SHAKESPEARE).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)

    def cached(n: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return sample(model, prompt, n, temperature=0.8, generator=gen)

    def cropped(n: int) -> torch.Tensor:
        return crop_loop(model, prompt, n, 0.8, torch.Generator().manual_seed(0))

    in_context = SHAKESPEARE.n_ctx - prompt.shape[1]
    lengths = sorted({min(in_context, new_tokens), new_tokens})
    # Warm-up; within the context the two loops give the same tokens.
    if not torch.equal(cached(in_context), cropped(in_context)):
        raise AssertionError("cached sampling and the cropping loop differ within the context")
    runs = {(n, name): partial(fn, n) for n in lengths
            for name, fn in (("cache", cached), ("crop", cropped))}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):  # alternate, so that drifts in machine speed hit both
        for key, run in runs.items():
            best[key] = min(best[key], best_time(run, 1))
    print(f"\nsampling at nanoGPT's Shakespeare shape: {model.num_parameters():,} parameters, "
          f"context {SHAKESPEARE.n_ctx}, batch 1, {threads} threads; tokens/s")
    print(f"{'new':>6} {'cache':>10} {'crop loop':>10} {'speed-up':>9}")
    for n in lengths:
        rates = [n / best[n, name] for name in ("cache", "crop")]
        print(f"{n:>6} {rates[0]:>10.0f} {rates[1]:>10.0f} {rates[0] / rates[1]:>8.2f}x")
    return best[new_tokens, "crop"] / best[new_tokens, "cache"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mini")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-new", type=int, default=200,
                        help="new tokens sampled at the Shakespeare shape")
    parser.add_argument("--small-threads", type=int, default=2)
    parser.add_argument("--small-repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = get_config(args.config)
    if max(args.lengths) > config.n_ctx:
        parser.error(f"lengths must be <= n_ctx = {config.n_ctx}")
    model = GPT(config).eval()
    try:
        import transformers

        hf = transformers.GPT2LMHeadModel(hf_gpt2_config(config)).eval()
        hf.load_state_dict(to_hf_gpt2_state_dict(model.state_dict(), config))
        hf.generation_config.pad_token_id = config.vocab_size - 1
    except ImportError:
        hf = None
    prompt = torch.zeros(1, 1, dtype=torch.long)
    print(f"config {args.config}: {model.num_parameters():,} parameters, greedy, batch 1, "
          f"1 thread; tokens/s (higher is better)")
    header = f"{'length':>6} {'cache':>10} {'no cache':>10} {'speed-up':>9}"
    print(header + (f" {'HF cache':>10} {'HF no cache':>12}" if hf is not None else ""))
    speedup = float("nan")
    for length in args.lengths:
        n = length - 1
        runs = [partial(greedy, model, prompt, n, use_cache=c) for c in (True, False)]
        rates = [n / best_time(run, args.repeats) for run in runs]
        speedup = rates[0] / rates[1]
        line = f"{length:>6} {rates[0]:>10.0f} {rates[1]:>10.0f} {speedup:>8.2f}x"
        if hf is not None:
            hf_runs = [partial(hf_generate, hf, prompt, n, c) for c in (True, False)]
            hf_rates = [n / best_time(run, args.repeats) for run in hf_runs]
            line += f" {hf_rates[0]:>10.0f} {hf_rates[1]:>12.0f}"
        print(line)
    small = small_sampling(args.small_new, args.small_threads, args.small_repeats)
    print(f"generate kv_cache_speedup={speedup:.2f} kv_cache_speedup_small={small:.2f}")


if __name__ == "__main__":
    main()
