"""Training throughput on CPU: minigpt's GPT against Hugging Face's GPT2LMHeadModel.

Both models have the same shape and the same weights (converted with
``minigpt.model.to_hf_gpt2_state_dict``), see the same batches, use the same optimizer
(``torch.optim.AdamW`` with GPT-3's settings and parameter groups) and the same number of
threads. A training step is forward, backward, gradient clipping and the optimizer step.
Repeats alternate between the two models so that drifts in machine speed hit both; the
reported figure is the ratio of the median tokens/s (above 1: minigpt is faster).

    python benchmarks/train_cpu.py [--repeats 7] [--steps 5] [--threads 2]

Last line: ``train_cpu tokens_per_s_vs_hf=<ratio>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.config import GPTConfig
from minigpt.model import GPT, configure_optimizer, hf_gpt2_config, to_hf_gpt2_state_dict


def _step(model, optimizer, x, y, hf: bool) -> None:
    if hf:
        loss = model(input_ids=x, labels=y).loss
    else:
        loss = model(x, y)[1]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    config = GPTConfig(n_layer=4, d_model=128, n_heads=4, vocab_size=2048, n_ctx=128)
    torch.manual_seed(0)
    ours = GPT(config).train()
    theirs = GPT2LMHeadModel(hf_gpt2_config(config)).train()
    theirs.load_state_dict(to_hf_gpt2_state_dict(ours.state_dict()))
    models = {"minigpt": (ours, configure_optimizer(ours, 1e-4), False),
              "hf": (theirs, configure_optimizer(theirs, 1e-4), True)}
    # GPT2LMHeadModel shifts its labels itself; minigpt takes the shifted targets. Same tokens.
    x = torch.randint(0, config.vocab_size, (args.batch, config.n_ctx + 1))
    inputs = {"minigpt": (x[:, :-1], x[:, 1:]), "hf": (x[:, :-1], x[:, :-1])}
    tokens = args.batch * config.n_ctx * args.steps
    for name, (model, opt, hf) in models.items():  # warm-up
        for _ in range(2):
            _step(model, opt, *inputs[name], hf)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (model, opt, hf) in models.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                _step(model, opt, *inputs[name], hf)
            rates[name].append(tokens / (time.perf_counter() - t0))
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"shape: {config.n_layer} layers, d_model {config.d_model}, {config.n_heads} heads, "
          f"vocab {config.vocab_size}, batch {args.batch} x {config.n_ctx}, "
          f"{args.threads} threads, torch {torch.__version__}")
    for name, r in med.items():
        print(f"{name:8s} median {r:10.0f} tokens/s  (repeats: {[round(v) for v in rates[name]]})")
    print(f"train_cpu tokens_per_s_vs_hf={med['minigpt'] / med['hf']:.3f}")


if __name__ == "__main__":
    main()
