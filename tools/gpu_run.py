"""The book's one prepared GPU run: every figure chapter 12 shows, in about 8 minutes on one H100.

    python tools/gpu_run.py            # on a CUDA machine: minigpt/lab/results/gpu_run.json
    python tools/gpu_run.py --dry-run  # anywhere, in seconds: tiny shapes, a temporary file

Nothing is downloaded: the corpus is ``data/shakespeare.txt.xz`` in this repository (the book's
Shakespeare, exactly :func:`minigpt.data.load_shakespeare`'s text, 1.5 MB compressed), and
minigpt is imported from this checkout. Four sections, each with a time limit within an overall
budget (``--budget-s``, 480 s), in this order:

1. **tests**: the GPU-only tests (``tests/test_flash.py``, ``tests/test_gpu.py``,
   ``tests/test_flex.py``: the Triton kernel, FlexAttention's compiled kernel, mixed precision,
   ``torch.compile``), in a subprocess;
2. **attention**: dense and banded attention at long contexts, SDPA with an explicit band mask
   against FlexAttention's block masks (and ``flash-attn``'s sliding window where installed),
   forward and backward (:func:`benchmarks.attention.banded_rows`);
3. **corpus**: the best model the book can train on its own corpus: a BPE of 4096 tokens, a model
   sized by :func:`minigpt.gpu.plan_for_data` (16 epochs, dropout 0.1) and two larger ones
   (4x and 16x the parameters, to test the rule), each within its share of the budget; held-out
   bits per character, loss curves, samples, and a character 5-gram (Kneser-Ney) on the same
   split for comparison;
4. **throughput**: GPT-3 Small (125M, context 2048, alternating dense and banded layers) in bf16
   (fp16 with a gradient scaler on GPUs without bf16), for each attention backend (naive, SDPA,
   FlexAttention, Triton) with and without ``torch.compile``, on **random tokens** (a speed
   measurement needs no meaningful data): tokens/s and MFU by Kaplan's count (with PaLM's
   beside it, and the banded count). The micro-batch comes from the free memory. The most
   useful combinations go first, so a short budget drops the least useful ones; it runs last
   and gets what the budget has left.

Everything goes to one JSON file written by :func:`minigpt.lab.record.save` (device, versions,
date, every figure, samples, curves); chapter 12 renders it when present. ``--dry-run`` runs the
same code on the CPU with tiny shapes and no tests, in seconds (CI runs it:
``tests/test_gpu_run.py``), and writes to a temporary file unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import lzma
import math
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from minigpt import gpu, precision  # noqa: E402
from minigpt.config import GPTConfig, count_parameters  # noqa: E402
from minigpt.lab import record  # noqa: E402

CORPUS = ROOT / "data" / "shakespeare.txt.xz"
#: sha256 of the decompressed corpus: the text of minigpt.data.load_shakespeare().
CORPUS_SHA256 = "366549425faf1375ce088dca7075b69692356a5c1a97a0de88e183d5f68189a7"
#: seconds per section on a GPU, in the order they run; the last one gets what is left of
#: the overall budget (480 s: about 8 minutes with start-up).
LIMITS = {"tests": 120, "attention": 60, "corpus": 130, "throughput": 240}
BUDGET_S = 480.0
MFU_TARGET = 0.5


def _load(name: str) -> Any:
    """A benchmark script of ``benchmarks/`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _short_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err) + ' ').splitlines()[0][:120]}"


# ---------------------------------------------------------------------------------------------
# 0. The machine


def environment(device: str, dry_run: bool) -> dict[str, Any]:
    """Device name, memory, precision, peak and the versions of what ran."""
    cuda = device == "cuda"
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "device": torch.cuda.get_device_name() if cuda else "CPU",
        "dry_run": dry_run,
        "precision": precision.pick_precision(device),
        "peak_flops": gpu.peak_flops(device),
        "peak": gpu.describe_peak(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "flash_attn": gpu.flash_attn_available(),
    }
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if cuda:
        free, total = torch.cuda.mem_get_info()
        env["memory_gb"] = total / 1e9
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return env


# ---------------------------------------------------------------------------------------------
# 1. Tests


def run_tests(limit_s: float) -> dict[str, Any]:
    """The GPU-only test files in a subprocess; counts from pytest's summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
               "tests/test_flash.py", "tests/test_gpu.py", "tests/test_flex.py"]
    start = time.perf_counter()
    try:
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                             timeout=limit_s)
        text, code = out.stdout + out.stderr, out.returncode
    except subprocess.TimeoutExpired as err:
        text, code = (err.stdout or b"").decode(errors="replace") if isinstance(
            err.stdout, bytes) else (err.stdout or ""), "timeout"
    summary = text.strip().splitlines()[-1] if text.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    failures = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"command": " ".join(command[1:]), "exit": code, "summary": summary,
            "counts": counts, "failures": failures[:20],
            "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# 2. Attention at long contexts


def attention_section(device: str, dry_run: bool, limit_s: float) -> dict[str, Any]:
    """Dense and banded attention by SDPA and FlexAttention (see benchmarks/attention.py);
    each context length compiles FlexAttention's kernels again, so lengths stop at the limit."""
    bench = _load("attention")
    if dry_run:
        t_values, kw = [128], dict(heads=2, d_head=16, window=32, dtype=torch.float32)
    else:
        t_values, kw = [4096, 16384, 8192], dict(heads=12, d_head=64, window=256)
    deadline = time.perf_counter() + limit_s
    rows = []
    for t in t_values:
        if rows and time.perf_counter() > deadline - 20:
            rows.append({"t": t, "variant": "all", "ms": None, "mib": None, "tflops": None,
                         "error": "skipped: time limit"})
            continue
        rows += bench.banded_rows([t], device=device, **kw)
    return {"shape": {"batch": 1, **{k: v for k, v in kw.items() if k != "dtype"}},
            "dtype": str(kw.get("dtype", torch.bfloat16)).removeprefix("torch."),
            "backward": device == "cuda", "rows": rows}


# ---------------------------------------------------------------------------------------------
# 3. GPT-3 Small: throughput and MFU


def throughput_combos(dry_run: bool) -> list[tuple[str, bool]]:
    """(backend, compile) in the order they are measured: the likely fastest first."""
    if dry_run:  # inductor takes minutes on a small CPU: eager only
        return [(b, False) for b in ("sdpa", "flex", "naive", "triton")]
    return [("sdpa", True), ("flex", True), ("sdpa", False), ("flex", False),
            ("triton", False), ("triton", True), ("naive", False), ("naive", True)]


def throughput_section(device: str, dry_run: bool, limit_s: float) -> dict[str, Any]:
    """Tokens/s and MFU of GPT-3 Small per backend and compile setting, within ``limit_s``."""
    bench = _load("gpu_train")
    deadline = time.perf_counter() + limit_s
    if dry_run:
        config = gpu.gpt3_small_or_tiny(False, vocab_size=256, n_ctx=64)
        steps, warmup, accum = 1, 1, 1
    else:
        config = gpu.gpt3_small_or_tiny(True)
        steps, warmup, accum = 6, 3, 2
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    counts = bench.flop_counts(config)
    rows = []
    for backend, comp in throughput_combos(dry_run):
        left = deadline - time.perf_counter()
        needed = 90 if comp else 15  # compilation, or warm-up, plus the timed steps
        row: dict[str, Any] = {"backend": backend, "compile": comp}
        if not dry_run and left < needed:
            rows.append({**row, "skipped": f"time budget ({left:.0f} s left)"})
            continue
        cfg = config.replace(attention_backend=backend)
        micro = gpu.adapt_to_gpu(cfg, device, cpu_micro_batch=2, cap=32).micro_batch
        start = time.perf_counter()
        try:
            micro, acc, r = bench.measure_fitting(
                cfg, micro_batch=micro, accum=accum, steps=steps, warmup=warmup,
                compile=comp, precision="auto", device=device)
            row.update(r, micro_batch=micro, accum=acc)
        except Exception as err:  # one failure must not end the table
            row["error"] = _short_error(err)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if device == "cuda":
            bench._free()
    measured = [r for r in rows if "tokens_per_s" in r]
    best = max(measured, key=lambda r: r["tokens_per_s"], default=None)
    result: dict[str, Any] = {
        "model": {"name": "GPT-3 Small" if not dry_run else "tiny (dry run)",
                  "n_layer": config.n_layer, "d_model": config.d_model,
                  "n_heads": config.n_heads, "n_ctx": config.n_ctx,
                  "vocab_size": config.vocab_size, "params": count_parameters(config),
                  "attention_pattern": config.attention_pattern,
                  "local_window": config.local_window},
        "data": "random tokens (a speed measurement: the values do not matter)",
        "flops_per_token": counts, "steps": steps, "warmup": warmup, "rows": rows,
    }
    if best is not None:
        result["best"] = {k: best.get(k) for k in ("backend", "compile", "tokens_per_s", "mfu",
                                                   "mfu_palm", "mfu_banded", "micro_batch")}
        result["mfu_target"] = MFU_TARGET
        result["target_met"] = best.get("mfu") is not None and best["mfu"] >= MFU_TARGET
    return result


# ---------------------------------------------------------------------------------------------
# 4. The book's corpus


def load_corpus() -> str:
    """The book's Shakespeare from ``data/shakespeare.txt.xz``, checked against its hash."""
    data = lzma.decompress(CORPUS.read_bytes())
    if hashlib.sha256(data).hexdigest() != CORPUS_SHA256:
        raise ValueError(f"{CORPUS} is not the book's corpus (sha256 mismatch)")
    return data.decode("utf-8")


def _lr_for(n_params: float) -> float:
    """GPT-3 Small's 6e-4 scaled by ``(85M / N)^(1/4)``: Table 2.1's rates fall with size
    roughly so; an assumption for models below its smallest."""
    return 6e-4 * (85e6 / n_params) ** 0.25


def _curve(history: list[dict[str, float]], points: int = 120) -> list[list[float | None]]:
    """``[step, tokens, train loss, validation loss or None]``, thinned to about ``points``
    rows (every evaluation kept)."""
    every = max(1, len(history) // points)
    return [[r["step"], r["tokens"], r["loss"], r.get("val_loss")]
            for i, r in enumerate(history)
            if i % every == 0 or "val_loss" in r or i == len(history) - 1]


def ngram_baseline(train_text: str, val_text: str, order: int) -> dict[str, Any]:
    """Held-out bits per character of a character n-gram (Kneser-Ney), as in chapter 1."""
    from minigpt.ngram import NGramLM

    start = time.perf_counter()
    lm = NGramLM(order=order, smoothing="kneser_ney").fit(train_text.splitlines())
    bpc = math.log2(lm.perplexity(val_text.splitlines()))
    return {"order": order, "bits_per_char": bpc, "seconds": time.perf_counter() - start}


def corpus_section(device: str, dry_run: bool, limit_s: float) -> dict[str, Any]:
    """BPE, models sized to the data, training, bits per character, samples."""
    from minigpt.bpe import BPETokenizer
    from minigpt.data import train_val_split
    from minigpt.generate import sample
    from minigpt.model import GPT
    from minigpt.train import TrainConfig, Trainer, evaluate

    deadline = time.perf_counter() + limit_s
    text = load_corpus()
    if dry_run:
        text = text[:20_000]
    train_text, val_text = train_val_split(text, val_fraction=0.05)
    vocab = 300 if dry_run else 4096
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(train_text, vocab_size=vocab)
    train_ids = torch.tensor(tokenizer.encode_ordinary(train_text))
    val_ids = torch.tensor(tokenizer.encode_ordinary(val_text))
    token_s = time.perf_counter() - start
    epochs = 2 if dry_run else 16
    plan = gpu.plan_for_data(len(train_ids), epochs=epochs)
    n_ctx = 64 if dry_run else 512
    batch = 8 if dry_run else 64  # sequences: 32K tokens per step on the GPU
    steps = max(1, plan.tokens_seen // (batch * n_ctx))
    if dry_run:
        steps = min(steps, 12)
    chars_per_token = len(val_text) / len(val_ids)
    result: dict[str, Any] = {
        "data": {"source": "data/shakespeare.txt.xz (minigpt.data.load_shakespeare)",
                 "chars": len(text), "train_chars": len(train_text),
                 "val_chars": len(val_text), "val_fraction": 0.05, "bpe_vocab": vocab,
                 "train_tokens": len(train_ids), "val_tokens": len(val_ids),
                 "chars_per_token": chars_per_token, "tokenize_seconds": token_s},
        "plan": {**plan._asdict(), "rule": "N = D' / 20, D' = U (1 + 15.4 (1 - exp(-(E-1) / "
                 "15.4))) (Muennighoff et al. 2023)"},
        "recipe": {"n_ctx": n_ctx, "local_window": n_ctx // 8, "batch_sequences": batch,
                   "steps": steps, "attention_backend": "sdpa", "lr_rule": "6e-4 (85M / N)^0.25",
                   "warmup": "2% of the tokens", "eval": "every half epoch, best kept",
                   "precision": precision.pick_precision(device)},
        "models": [],
    }
    result["ngram"] = ngram_baseline(train_text, val_text, order=3 if dry_run else 5)
    multipliers = (1, 4) if dry_run else (1, 4, 16)
    for i, mult in enumerate(multipliers):
        left = deadline - time.perf_counter()
        share = left / (len(multipliers) - i)
        n_layer, d_model = gpu.shape_for_params(plan.n_params * mult)
        if dry_run:
            n_layer, d_model = 2, 16 * mult
        config = GPTConfig(n_layer=n_layer, d_model=d_model, n_heads=max(1, d_model // 64),
                           vocab_size=tokenizer.vocab_size, n_ctx=n_ctx,
                           dropout=plan.dropout, attention_pattern="alternating",
                           local_window=n_ctx // 8, attention_backend="sdpa")
        n_params = count_parameters(config, non_embedding=True)
        micro = gpu.adapt_to_gpu(config, device, cpu_micro_batch=batch, cap=batch).micro_batch
        windows_per_epoch = (len(train_ids) - 1) // n_ctx
        recipe = TrainConfig(
            max_steps=steps, batch_size=batch, micro_batch_size=micro, lr=_lr_for(n_params),
            warmup_tokens=int(0.02 * steps * batch * n_ctx),
            eval_interval=max(1, windows_per_epoch // batch // 2),
            eval_batches=max(1, (len(val_ids) - 1) // n_ctx // micro),
            precision="auto", compile=False, fused_adamw=True,
            time_budget_s=max(1.0, share - 5.0), seed=0)
        torch.manual_seed(0)
        trainer = Trainer(GPT(config).to(device), train_ids, recipe, val_tokens=val_ids)
        t0 = time.perf_counter()
        history = trainer.train()
        seconds = time.perf_counter() - t0
        if trainer.best_model_state is not None:
            trainer.model.load_state_dict(trainer.best_model_state)
        n_val = (len(val_ids) - 1) // n_ctx * n_ctx
        x = val_ids[:n_val].view(-1, n_ctx).to(device)
        y = val_ids[1 : n_val + 1].view(-1, n_ctx).to(device)
        val_loss = evaluate(trainer.model, x, y, batch_size=micro)
        samples = []
        for j, prompt in enumerate(["ROMEO:\n", "First Citizen:\n"]):
            ids = torch.tensor([tokenizer.encode_ordinary(prompt)], device=device)
            gen = torch.Generator(device).manual_seed(j)
            out = sample(trainer.model, ids, 24 if dry_run else 160, temperature=0.8,
                         top_k=40, generator=gen)
            samples.append(tokenizer.decode(out[0].tolist()))
        tokens = history[-1]["tokens"] if history else 0
        result["models"].append({
            "name": f"{mult}x", "n_layer": n_layer, "d_model": d_model,
            "n_heads": config.n_heads, "params_non_embedding": n_params,
            "params": count_parameters(config), "dropout": plan.dropout,
            "lr": recipe.lr, "micro_batch": micro, "steps_done": trainer.step,
            "steps_planned": steps, "epochs_done": tokens / len(train_ids),
            "stopped_by_budget": trainer.stopped_by_budget, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds else None,
            "best_step": trainer.best_step if trainer.best_model_state is not None else None,
            "val_loss_nats_per_token": val_loss,
            "val_bits_per_char": val_loss / math.log(2) / chars_per_token,
            "curve": _curve(history), "samples": samples,
        })
        del trainer
        if device == "cuda":
            torch.cuda.empty_cache()
    best = min(result["models"], key=lambda m: m["val_bits_per_char"])
    result["best"] = best["name"]
    return result


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on the CPU, no tests, in seconds (CI)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: minigpt/lab/results/gpu_run.json; a "
                             "temporary file with --dry-run)")
    parser.add_argument("--sections", nargs="+", default=list(LIMITS), choices=list(LIMITS))
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help="overall time budget of the sections, in seconds")
    args = parser.parse_args(argv)

    device = "cpu" if args.dry_run else precision.get_device()
    if device != "cuda" and not args.dry_run:
        parser.error("no CUDA GPU: run with --dry-run on a CPU (chapter 12 then shows its CPU "
                     "fallback)")
    out = args.out or (Path(tempfile.gettempdir()) / "gpu_run.dry.json" if args.dry_run
                       else record.path("gpu_run"))
    if args.dry_run:
        torch.set_num_threads(1)
    start = time.perf_counter()
    document: dict[str, Any] = {
        "parameters": {"command": "python tools/gpu_run.py" + (" --dry-run" if args.dry_run
                                                              else ""),
                       "sections": args.sections, "limits_s": LIMITS,
                       "budget_s": args.budget_s},
        "environment": environment(device, args.dry_run),
    }
    print(f"gpu_run: {document['environment']['device']}, {document['environment']['peak']}, "
          f"torch {torch.__version__}", flush=True)
    sections = {"tests": lambda s: {"skipped": "dry run (CI runs these files itself)"}
                if args.dry_run else run_tests(s),
                "attention": lambda s: attention_section(device, args.dry_run, s),
                "throughput": lambda s: throughput_section(device, args.dry_run, s),
                "corpus": lambda s: corpus_section(device, args.dry_run, s)}
    end = start + args.budget_s
    for name in [n for n in LIMITS if n in args.sections]:
        t0 = time.perf_counter()
        try:
            document[name] = sections[name](max(10.0, min(LIMITS[name], end - t0)))
        except Exception as err:  # a broken section must not lose the others' figures
            document[name] = {"error": _short_error(err)}
        document[name + "_seconds"] = time.perf_counter() - t0
        print(f"== {name}: {document[name + '_seconds']:.1f} s"
              + (f" ERROR {document[name]['error']}" if "error" in document[name] else ""),
              flush=True)
        record.save({**document, "elapsed_s": time.perf_counter() - start}, out)
    document["elapsed_s"] = time.perf_counter() - start
    record.save(document, out)
    summary(document)
    print(f"gpu_run wrote {out} in {document['elapsed_s']:.1f} s")
    return out


def summary(document: dict[str, Any]) -> None:
    """The figures worth reading in a log."""
    tests = document.get("tests", {})
    if "summary" in tests:
        print(f"tests: {tests['summary']}")
    best = document.get("throughput", {}).get("best")
    if best:
        mfu = "n/a" if best["mfu"] is None else f"{best['mfu']:.1%}"
        palm = "n/a" if best["mfu_palm"] is None else f"{best['mfu_palm']:.1%}"
        print(f"throughput: best {best['backend']} compile={best['compile']}: "
              f"{best['tokens_per_s']:,.0f} tokens/s, MFU {mfu} (Kaplan), {palm} (PaLM)")
    corpus = document.get("corpus", {})
    for m in corpus.get("models", []):
        print(f"corpus model {m['name']}: {m['params_non_embedding']:,} params, "
              f"{m['val_bits_per_char']:.3f} bits/char, {m['seconds']:.0f} s")
    if "ngram" in corpus:
        print(f"character {corpus['ngram']['order']}-gram: "
              f"{corpus['ngram']['bits_per_char']:.3f} bits/char")


if __name__ == "__main__":
    main()
