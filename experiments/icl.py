"""In-context learning in miniature (issue #9): three model sizes, zero- to 8-shot accuracy.

Trains three small GPTs on the same mixture of few-shot episodes (:mod:`minigpt.lab.icl`: the same
data, the same number of tokens, as GPT-3's eight models all saw 300B tokens) and measures
exact-match accuracy of greedy completions for k = 0, 1, 2, 4, 8 solved examples in the prompt,
with and without the task's description line, on every task of the mixture, 1-, 2- and
5-digit addition among them. Writes everything needed to re-run it to ``--out``:

    python experiments/icl.py          # writes minigpt/lab/results/icl_results.json

About 7.5 minutes on one CPU thread; ``torch.set_num_threads(1)`` makes the run repeatable bit
for bit on one machine.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time

import torch

from minigpt.lab import icl
from minigpt.lab.record import path as result_path
from minigpt.lab.record import save
from minigpt.train import TrainConfig

#: The three sizes: depth, width, heads, and a learning rate that falls with size (GPT-3's
#: Table 2.1 does the same). Rotary positions: see the module docstring of minigpt.lab.icl.
SIZES: dict[str, dict] = {
    "XS": {"n_layer": 2, "d_model": 32, "n_heads": 2, "positions": "rope", "lr": 6e-3},
    "S": {"n_layer": 2, "d_model": 64, "n_heads": 4, "positions": "rope", "lr": 5e-3},
    "M": {"n_layer": 3, "d_model": 96, "n_heads": 4, "positions": "rope", "lr": 3e-3},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(result_path("icl_results")),
                   help="results JSON to write (default: minigpt/lab/results/icl_results.json)")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--steps", type=int, default=1600, help="optimizer steps for every size")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (= context)")
    p.add_argument("--warmup", type=float, default=0.05, help="warmup share of the tokens")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data-order seed")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training episodes")
    p.add_argument("--n-prompts", type=int, default=200, help="prompts per accuracy cell")
    p.add_argument("--eval-seed", type=int, default=1, help="seed of the evaluation prompts")
    p.add_argument("--live-step", type=int, default=500,
                   help="step at which the smallest size's live slice is evaluated")
    return p.parse_args(argv)


def print_table(name: str, result: icl.IclRun) -> None:
    print(f"\n{name}: {result.n_parameters:,} parameters, final loss "
          f"{result.final_loss:.3f}, train {result.train_s:.0f} s, "
          f"eval {result.eval_s:.0f} s")
    for kind, cells in result.accuracy.items():
        print(f"  {kind:20s}" + "".join(f"{'k=' + k:>7s}" for k in next(iter(cells.values()))))
        for task, row in cells.items():
            print(f"    {task:18s}" + "".join(f"{v:7.3f}" for v in row.values()))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    tokens = args.steps * args.batch_size * args.seq_len
    train = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                        warmup_tokens=int(args.warmup * tokens), seed=args.seed)
    parameters = icl.make_parameters(
        {name: SIZES[name] for name in args.sizes}, train, icl.Mixture(), args.data_seed,
        evaluation={"n_prompts": args.n_prompts, "seed": args.eval_seed},
        live={"step": args.live_step},
        command=shlex.join(["python", "experiments/icl.py", *(sys.argv[1:] if argv is None
                                                               else argv)]),
        torch_version=torch.__version__, python_version=platform.python_version(),
        num_threads=torch.get_num_threads(), tokens_per_size=tokens,
    )
    results = {}
    for name in args.sizes:
        run = icl.run_from_parameters(parameters, name)
        print_table(name, run)
        results[name] = run.to_dict()
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    out = {"parameters": parameters, "results": results, "total_s": round(total, 1)}
    save(out, args.out)
    return out


if __name__ == "__main__":
    main()
