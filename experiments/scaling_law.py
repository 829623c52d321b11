"""Train a family of tiny GPTs on character-level Shakespeare and save a scaling-law data file.

Every model gets the same data, the same number of tokens and the same schedule; only the size
differs (see :mod:`minigpt.lab.sweep`). Re-run it from the repository root with

    python experiments/scaling_law.py                  # writes minigpt/lab/results/scaling_law.json
    python experiments/scaling_law.py --quick          # 3 sizes, a few seconds, a smoke test

The full sweep takes about 7 minutes on one thread of a 2024 server CPU (AMD EPYC), and about as
long on a recent laptop; the smallest model trains in about 10 seconds. Training uses one torch
thread, which makes every run bit-for-bit deterministic on a given machine; another CPU gives
losses within a few thousandths of a nat (``minigpt.lab.sweep.reproduces``). The file stores every
setting, so ``minigpt.lab.sweep.settings_from_parameters`` rebuilds the run from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path

from minigpt.lab.record import path as result_path
from minigpt.lab.sweep import (
    ModelSize,
    SweepSettings,
    char_data,
    run_sweep,
    save_results,
    sweep_parameters,
)
from minigpt.train import TrainConfig

#: The family: (n_layer, n_heads, d_model), about 30 times more non-embedding parameters from
#: the first to the last (``N = n_layer (12 d^2 + 13 d) + 2 d``).
SIZES = [
    ModelSize(1, 1, 16),
    ModelSize(1, 2, 24),
    ModelSize(2, 2, 24),
    ModelSize(2, 2, 32),
    ModelSize(3, 3, 48),
    ModelSize(4, 4, 64),
    ModelSize(4, 6, 96),
]
SETTINGS = SweepSettings(
    train=TrainConfig(seq_len=32, batch_size=16, lr=1e-2, warmup_tokens=32_768, seed=0),
    n_tokens=1_572_864, n_evals=16, val_sequences=512)
#: --quick: the three smallest sizes on an eighth of the tokens.
QUICK_SETTINGS = dataclasses.replace(
    SETTINGS.with_train(warmup_tokens=SETTINGS.train.warmup_tokens // 8),
    n_tokens=SETTINGS.n_tokens // 8, n_evals=6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="where to write the JSON file (default: minigpt/lab/results/"
                             "scaling_law.json, or scaling_law_quick.json in the temporary "
                             "folder with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: the three smallest sizes, an eighth of the tokens")
    args = parser.parse_args(argv)
    quick_out = Path(tempfile.gettempdir()) / "scaling_law_quick.json"
    out = args.out or (quick_out if args.quick else result_path("scaling_law"))
    sizes, settings = (SIZES[:3], QUICK_SETTINGS) if args.quick else (SIZES, SETTINGS)
    command = shlex.join(["python", "experiments/scaling_law.py",
                          *(sys.argv[1:] if argv is None else argv)])

    data = char_data()
    print(f"{len(sizes)} models, {settings.n_tokens:,} tokens each, vocabulary of "
          f"{len(data.vocab)} characters, {settings.threads} thread(s)")
    t0 = time.perf_counter()
    results = run_sweep(sizes, settings, data)
    parameters = sweep_parameters(sizes, settings, data, command=command)
    parameters["wall_seconds"] = round(time.perf_counter() - t0, 1)
    save_results(out, results, parameters)
    print(f"wrote {out} ({parameters['wall_seconds']} s)")


if __name__ == "__main__":
    main()
