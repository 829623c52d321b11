"""Benchmark minigpt's MinHash and LSH (minigpt.corpus.dedup) against datasketch, at equal
settings: the same documents, the same shingles (word 5-grams of the normalised words), the
same number of hash functions and the same bands x rows. Single thread throughout.

    python benchmarks/dedup.py [--pages 3000] [--num-perm 128] [--bands 16] [--repeats 3]

The last line is machine readable:
``dedup minhash_speed_vs_datasketch=<ratio> lsh_speed_vs_datasketch=<ratio>``

- minhash_speed_vs_datasketch: datasketch time / minigpt time to turn every document into a
  signature, from its text (higher is better; target >= 1). datasketch builds one ``MinHash``
  per document and feeds it the shingles with ``update_batch``; minigpt hashes all documents'
  shingles in one numpy operation (``minhash_signatures``).
- lsh_speed_vs_datasketch: datasketch ``MinHashLSH`` (insert every signature, query every
  signature) time / minigpt ``lsh_candidates`` time, on the same signatures (higher is
  better).

Ratios use CPU time, the fastest of ``--repeats`` interleaved runs (see benchmarks/bpe.py);
the table also gives wall-clock ratios.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: one thread for everyone

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from timing import best_times  # noqa: E402

from minigpt.contamination import normalize_words  # noqa: E402
from minigpt.corpus.dedup import lsh_candidates, minhash_signatures  # noqa: E402
from minigpt.corpus.webpages import make_crawl  # noqa: E402


def datasketch_signatures(texts: list[str], num_perm: int, n: int) -> list:
    """One datasketch MinHash per document, fed the same word n-grams as minigpt's."""
    from datasketch import MinHash

    out = []
    for text in texts:
        words = normalize_words(text)
        k = min(n, len(words))
        shingles = {" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)}
        m = MinHash(num_perm=num_perm)
        m.update_batch(list(shingles))
        out.append(m)
    return out


def datasketch_lsh(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Candidate pairs from datasketch's MinHashLSH, fed minigpt's signatures."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    sketches = [MinHash(num_perm=bands * rows, hashvalues=row, scheme="affine32")
                for row in signatures]
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    return {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m)
            if i != j}


def row(task: str, minigpt: str, reference: str, ratio: str, wall_ratio: str) -> str:
    return f"{task:<40} {minigpt:>10}   {reference:<22} {ratio:>6} {wall_ratio:>11}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--bands", type=int, default=16)
    parser.add_argument("--shingle", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timings keep the best run")
    args = parser.parse_args()
    rows_per_band = args.num_perm // args.bands

    texts = [page.text for page in make_crawl(args.pages, seed=0)]
    n_words = sum(len(t.split()) for t in texts)
    print(f"corpus: {len(texts)} pages, {n_words:,} words; {args.num_perm} hashes, "
          f"{args.shingle}-word shingles, LSH {args.bands} bands x {rows_per_band} rows")
    print("CPU time, best of each; 'wall ratio' is the same ratio with wall-clock time")
    print(row("task", "minigpt", "reference", "ratio", "wall ratio"))

    times, results = best_times({
        "minigpt": lambda: minhash_signatures(texts, args.num_perm, args.shingle),
        "datasketch": lambda: datasketch_signatures(texts, args.num_perm, args.shingle),
    }, args.repeats)
    mini, ds = times["minigpt"], times["datasketch"]
    minhash_ratio = ds.cpu / mini.cpu
    print(row(f"MinHash {len(texts)} pages", f"{mini.cpu:.3f} s", f"datasketch {ds.cpu:.3f} s",
              f"{minhash_ratio:.2f}", f"{ds.wall / mini.wall:.2f}"))

    sig = results["minigpt"]
    times, results = best_times({
        "minigpt": lambda: lsh_candidates(sig, args.bands, rows_per_band),
        "datasketch": lambda: datasketch_lsh(sig, args.bands, rows_per_band),
    }, args.repeats)
    ours = {tuple(p) for p in results["minigpt"].tolist()}
    assert ours == results["datasketch"], "minigpt and datasketch LSH disagree"
    mini, ds = times["minigpt"], times["datasketch"]
    lsh_ratio = ds.cpu / mini.cpu
    print(row(f"LSH candidates ({len(ours)} pairs)", f"{mini.cpu:.3f} s",
              f"datasketch {ds.cpu:.3f} s", f"{lsh_ratio:.2f}", f"{ds.wall / mini.wall:.2f}"))
    print(f"dedup minhash_speed_vs_datasketch={minhash_ratio:.3f} "
          f"lsh_speed_vs_datasketch={lsh_ratio:.3f}")


if __name__ == "__main__":
    main()
