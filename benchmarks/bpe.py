"""Benchmark minigpt's byte-level BPE against Hugging Face tokenizers, tiktoken and the
naive recount-every-merge trainer. Single thread throughout.

    python benchmarks/bpe.py [--vocab-size 4096] [--naive-bytes 420000] [--repeats 5]

The last line is machine readable:
``bpe train_time_vs_hf=<ratio> speedup_vs_naive=<ratio> encode_speed_vs_tiktoken=<ratio>``

- train_time_vs_hf: minigpt training time / HF ``BpeTrainer`` time, full corpus (lower is
  better; target <= 3).
- speedup_vs_naive: ``train_naive`` time / minigpt training time at vocab 512 on a prefix
  where the naive trainer takes about 30 s (higher is better; target >= 100).
- encode_speed_vs_tiktoken: minigpt ``encode_ordinary`` MB/s / tiktoken's, same ranks,
  held-out text, starting from an empty pre-token cache (higher is better; target >= 0.2).

Ratios use CPU time (see :class:`Timing`), the fastest of ``--repeats`` interleaved runs
(the naive trainer runs once); the table also gives the ratios in wall-clock time.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported: one thread for HF

import argparse  # noqa: E402

from timing import Timing, best_times  # noqa: E402

from minigpt.bpe import ENDOFTEXT, BPETokenizer, train_naive  # noqa: E402
from minigpt.bpe_formats import to_tiktoken  # noqa: E402
from minigpt.data import load_shakespeare  # noqa: E402


def load_text() -> str:
    """The Shakespeare corpus (minigpt.data)."""
    return load_shakespeare()


def train_hf(text: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=0,
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.2f} MB"


def row(task: str, minigpt: str, reference: str, ratio: str, wall_ratio: str) -> str:
    return f"{task:<36} {minigpt:>10}   {reference:<21} {ratio:>6} {wall_ratio:>11}"


def bench_training(text: str, vocab_size: int, repeats: int) -> tuple[float, list[str]]:
    times, results = best_times(
        {
            "minigpt": lambda: BPETokenizer.train(text, vocab_size),
            "hf": lambda: train_hf(text, vocab_size),
        },
        repeats,
    )
    assert results["minigpt"].vocab_size == results["hf"].get_vocab_size() == vocab_size
    mini, hf = times["minigpt"], times["hf"]
    ratio = mini.cpu / hf.cpu
    task = f"train {mb(len(text.encode()))} -> vocab {vocab_size}"
    wall_ratio = f"{mini.wall / hf.wall:.2f}"
    line = row(task, f"{mini.cpu:.2f} s", f"HF {hf.cpu:.2f} s", f"{ratio:.2f}", wall_ratio)
    return ratio, [line]


def bench_naive(text: str, n_bytes: int, repeats: int) -> tuple[float, list[str]]:
    prefix = text.encode()[:n_bytes].decode("utf-8", errors="ignore")
    naive_time = Timing()
    naive = naive_time.run(lambda: train_naive(prefix, 512))
    times, results = best_times(
        {"fast": lambda: BPETokenizer.train(prefix, 512, special_tokens=())}, repeats
    )
    assert results["fast"].merges == naive, "fast and naive training disagree"
    fast = times["fast"]
    ratio = naive_time.cpu / fast.cpu
    task = f"train {mb(n_bytes)} -> vocab 512"
    line = row(
        task,
        f"{fast.cpu:.3f} s",
        f"naive {naive_time.cpu:.1f} s",
        f"{ratio:.1f}",
        f"{naive_time.wall / fast.wall:.1f}",
    )
    return ratio, [line]


def bench_encode(text: str, vocab_size: int, repeats: int) -> tuple[float, list[str]]:
    """Train on the first 90% of the corpus, encode the last 10%."""
    cut = int(len(text) * 0.9)
    trained = BPETokenizer.train(text[:cut], vocab_size)
    heldout = text[cut:]
    enc = to_tiktoken(trained)
    fresh = {}

    def cold() -> list[int]:  # a new tokenizer: its pre-token cache starts empty
        fresh["tok"] = BPETokenizer(trained.merges, trained.special_tokens)
        return fresh["tok"].encode_ordinary(heldout)

    times, results = best_times(
        {
            "cold": cold,
            "warm": lambda: fresh["tok"].encode_ordinary(heldout),  # same, cache filled
            "tiktoken": lambda: enc.encode_ordinary(heldout),
        },
        repeats,
    )
    ids = results["cold"]
    assert ids == results["warm"] == results["tiktoken"], "minigpt and tiktoken disagree"
    n = len(heldout.encode())
    tik = times["tiktoken"]
    rows = []
    for label in ["cold", "warm"]:
        mine = times[label]
        rows.append(
            row(
                f"encode {mb(n)} held-out, {label} cache",
                f"{n / 1e6 / mine.cpu:.2f} MB/s",
                f"tiktoken {n / 1e6 / tik.cpu:.2f} MB/s",
                f"{tik.cpu / mine.cpu:.2f}",
                f"{tik.wall / mine.wall:.2f}",
            )
        )
    rows.append(f"  ({len(ids)} tokens, {n / len(ids):.2f} bytes per token)")
    return tik.cpu / times["cold"].cpu, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument(
        "--naive-bytes",
        type=int,
        default=420_000,
        help="prefix size for the naive comparison (~30 s for the naive trainer on 1 core)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timings keep the best run")
    args = parser.parse_args()

    text = load_text()
    print(f"corpus: {mb(len(text.encode()))}, {len(text)} characters")
    print("CPU time, best of each; 'wall ratio' is the same ratio with wall-clock time")
    print(row("task", "minigpt", "reference", "ratio", "wall ratio"))
    train_ratio, rows = bench_training(text, args.vocab_size, args.repeats)
    naive_ratio, more = bench_naive(text, args.naive_bytes, args.repeats)
    rows += more
    encode_ratio, more = bench_encode(text, args.vocab_size, args.repeats)
    rows += more
    print("\n".join(rows))
    print(
        f"bpe train_time_vs_hf={train_ratio:.3f} speedup_vs_naive={naive_ratio:.1f} "
        f"encode_speed_vs_tiktoken={encode_ratio:.3f}"
    )


if __name__ == "__main__":
    main()
