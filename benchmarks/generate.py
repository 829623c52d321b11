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
The last line is machine readable: ``generate kv_cache_speedup=<ratio>``, minigpt's tokens/s
with the cache divided by without it, at the longest length.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

from minigpt.config import get_config
from minigpt.generate import greedy
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mini")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
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
    print(f"generate kv_cache_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
