"""After GPT-3 (issue #11): LLaMA-style vs GPT-3-style, ablations, IsoFLOP, SFT and limits.

Four experiments at toy scale, all on one CPU thread, and two measurements:

(a) **comparison**: a GPT-3-style and a LLaMA-style model of equal parameter count
    (:func:`minigpt.variants.llama_style`), trained on the same character-level Shakespeare
    tokens for the same number of steps. The learning rate is chosen per architecture from a
    small grid on seed 0, then both are trained on more seeds at their own best rate;
(b) **ablation**: each change alone (RMSNorm, SwiGLU, RoPE, no biases, multi-query
    attention) on the GPT-3-style model, at the GPT-3-style model's best learning rate (3
    seeds) and at the LLaMA-style model's (2 seeds);
(c) **IsoFLOP**: five GPT-3-style sizes trained with the same compute ``C = 6 N D``, each
    for ``D = C / (6N)`` tokens, spent in two ways (the same number of steps for every size,
    or the same batch); each profile's parabola minimum next to Chinchilla's prediction;
(d) **SFT**: a small model pre-trained on few-shot episodes (no task descriptions) answers
    zero-shot instructions before and after fine-tuning on instruction examples with the
    answer-only loss (:mod:`minigpt.finetune`), tested on queries never fine-tuned on;
(e) **limits**: the fine-tuned model's most confident wrong answers, descriptive words that
    co-occur with "he" vs "she" in Shakespeare (:mod:`minigpt.bias`), and GPT-3's training
    energy under stated assumptions (:mod:`minigpt.energy`).

    python experiments/after_gpt3.py --out minigpt/lab/results/after_gpt3.json

Everything needed to re-run is stored under ``"parameters"``;
``minigpt.lab.controlled.live_rerun(parameters["comparison"])`` repeats the smallest case (seed 0
of the comparison, both models) to compare with ``results["comparison"]`` by
``minigpt.lab.controlled.reproduces``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import shlex
import sys
import time
from typing import Any

import torch

from minigpt import bias, energy, finetune, variants
from minigpt.config import GPTConfig, count_parameters
from minigpt.data import load_shakespeare
from minigpt.lab import controlled, icl, isoflop
from minigpt.lab.record import path as result_path
from minigpt.lab.record import round_floats, save
from minigpt.lab.sweep import CharData, SweepSettings, char_data
from minigpt.tasks import score
from minigpt.train import TrainConfig

#: The model of the comparison and the ablation (GPT-3's layout; ~109K parameters).
BASE = {"n_layer": 2, "d_model": 64, "n_heads": 4}
#: Learning rates tried on seed 0 for each architecture of the comparison (factors of 2).
LR_GRID = (7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2)
#: Linear warmup over this share of each run's tokens, then cosine decay to 10 %.
WARMUP_FRACTION = 0.05
#: IsoFLOP sizes (GPT-3 layout), from 30K to 460K parameters.
ISOFLOP_SIZES = {
    "L2-D32": {"n_layer": 2, "d_model": 32, "n_heads": 4},
    "L2-D48": {"n_layer": 2, "d_model": 48, "n_heads": 4},
    "L2-D64": {"n_layer": 2, "d_model": 64, "n_heads": 4},
    "L3-D80": {"n_layer": 3, "d_model": 80, "n_heads": 4},
    "L4-D96": {"n_layer": 4, "d_model": 96, "n_heads": 4},
}
#: SFT: the pre-training mixture (few-shot episodes, never a description line) and the model.
#: Every antonym query is also a ``backwards`` query ("hot => cold" or "hot => toh"), and the
#: weights make the two about equally likely for those words: without an instruction, a
#: zero-shot "hot =>" is ambiguous.
SFT_TASKS = ("antonyms", "backwards")
SFT_WEIGHTS = {"antonyms": 1.0, "backwards": 2.0}
SFT_SIZE = {"n_layer": 2, "d_model": 64, "n_heads": 4, "positions": "rope", "lr": 5e-3}
#: What is fine-tuned: every weight, or only the last block and the final norm.
SFT_TRAINABLE = {"full": None, "last_block": ["transformer.h.1.*", "transformer.ln_f.*"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(result_path("after_gpt3")), help="results JSON to write")
    p.add_argument("--parts", nargs="+", default=["comparison", "ablation", "isoflop", "sft",
                                                    "limits"],
                   choices=["comparison", "ablation", "isoflop", "sft", "limits"])
    p.add_argument("--steps", type=int, default=400, help="steps of (a) and (b)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step, (a)-(c)")
    p.add_argument("--n-ctx", type=int, default=64,
                   help="context: characters per sequence, (a)-(c)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of (a)")
    p.add_argument("--ablation-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--val-sequences", type=int, default=256, help="held-out windows")
    p.add_argument("--compute", type=float, default=4e11, help="IsoFLOP budget C in FLOPs")
    p.add_argument("--isoflop-lr", type=float, default=6e-3, help="learning rate of (c)")
    p.add_argument("--sft-pretrain-steps", type=int, default=1000)
    p.add_argument("--sft-steps", type=int, default=60)
    p.add_argument("--sft-lrs", type=float, nargs="+", default=[3e-4, 1e-3],
                   help="fine-tuning learning rates (pre-training: 5e-3)")
    p.add_argument("--holdout", type=float, default=0.5, help="share of queries kept for test")
    return p.parse_args(argv)


def settings_for(args: argparse.Namespace, steps: int, lr: float, seed: int = 0) -> SweepSettings:
    """Shared settings: warmup over :data:`WARMUP_FRACTION` of the tokens, cosine to 10 %,
    GPT-3's AdamW, one thread."""
    tokens = steps * args.batch_size * args.n_ctx
    train = TrainConfig(seq_len=args.n_ctx, batch_size=args.batch_size, lr=lr,
                        warmup_tokens=int(WARMUP_FRACTION * tokens), seed=seed)
    return SweepSettings(train=train, n_tokens=tokens, val_sequences=args.val_sequences,
                         threads=1)


def log(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------------------------
# (a) GPT-3-style vs LLaMA-style


def run_comparison(args: argparse.Namespace, data: CharData) -> tuple[dict, dict]:
    base = GPTConfig(vocab_size=len(data.vocab), n_ctx=args.n_ctx, **BASE)
    configs = {"gpt3": base, "llama": variants.llama_style(base, match_parameters=True)}
    settings = settings_for(args, args.steps, LR_GRID[0])
    log("(a) learning-rate grid, seed 0")
    sweep: dict[str, dict[str, Any]] = {}
    for lr in LR_GRID:
        sweep[f"{lr:g}"] = controlled.compare(
            configs, settings.with_train(lr=lr), [args.seeds[0]], data, log=log)
    best = {name: min(LR_GRID, key=lambda lr: sweep[f"{lr:g}"][name]["val_loss"][
        str(args.seeds[0])]) for name in configs}
    log(f"(a) best learning rates {best}; more seeds")
    rest = controlled.compare(configs, settings, args.seeds[1:], data, lr=best, log=log) \
        if args.seeds[1:] else {}
    runs = {name: {str(args.seeds[0]): sweep[f"{best[name]:g}"][name]["runs"][
        str(args.seeds[0])], **(rest[name]["runs"] if rest else {})} for name in configs}
    val_loss = {name: {s: r["val_loss"] for s, r in runs[name].items()} for name in configs}
    parameters = {**controlled.run_parameters(configs, settings, args.seeds, lr=best),
                  "lr_grid": list(LR_GRID),
                  "lr_selection": "each architecture's best of lr_grid on the first seed"}
    results = {
        "n_parameters": {name: runs[name][str(args.seeds[0])]["n_parameters"]
                         for name in configs},
        "lr": best,
        "lr_at_grid_edge": {name: lr in (LR_GRID[0], LR_GRID[-1]) for name, lr in best.items()},
        "lr_grid_val_loss": {lr: {name: cell[name]["val_loss"][str(args.seeds[0])]
                                  for name in configs} for lr, cell in sweep.items()},
        "val_loss": val_loss,
        "summary": {name: controlled.summarize(list(v.values())) for name, v in val_loss.items()},
        "llama_minus_gpt3": controlled.paired_differences(val_loss["gpt3"], val_loss["llama"]),
        "loss_curves": {name: {s: r["loss_curve"] for s, r in runs[name].items()}
                        for name in configs},
        "seconds": {name: {s: r["seconds"] for s, r in runs[name].items()} for name in configs},
    }
    return parameters, results


# --------------------------------------------------------------------------------------------
# (b) each change alone


def run_ablation(args: argparse.Namespace, data: CharData, lr: float, seeds: list[int],
                 known: dict[str, dict[str, float]]) -> tuple[dict, dict]:
    """Each change alone at ``lr``; ``known`` holds runs already made with these settings
    (``{name: {seed: val_loss}}``, from the comparison), which are reused, not repeated."""
    base = GPTConfig(vocab_size=len(data.vocab), n_ctx=args.n_ctx, **BASE)
    configs = variants.ablation_configs(base)
    configs.pop("llama")
    settings = settings_for(args, args.steps, lr)
    log(f"(b) ablation at lr {lr:g}, seeds {seeds}")
    val_loss: dict[str, dict[str, float]] = {}
    for name, config in configs.items():
        have = known.get(name, {})
        todo = [s for s in seeds if str(s) not in have]
        out = controlled.compare({name: config}, settings, todo, data, log=log) if todo else {}
        runs = out[name]["val_loss"] if out else {}
        val_loss[name] = {str(s): have.get(str(s), runs.get(str(s))) for s in seeds}
    n_params = {name: count_parameters(c) for name, c in configs.items()}
    parameters = {**controlled.run_parameters(configs, settings, seeds),
                  "changes": {name: variants.CHANGES[name] for name in variants.CHANGES}}
    results = {
        "lr": lr,
        "n_parameters": n_params,
        "val_loss": val_loss,
        "summary": {name: controlled.summarize(list(v.values())) for name, v in val_loss.items()},
        "minus_gpt3": {name: controlled.paired_differences(val_loss["gpt3"], v)
                       for name, v in val_loss.items() if name != "gpt3"},
    }
    return parameters, results


# --------------------------------------------------------------------------------------------
# (c) IsoFLOP profile


def _isoflop_fit(points: dict[str, dict[str, Any]], compute: float) -> dict[str, Any]:
    n = [p["n_parameters"] for p in points.values()]
    losses = [p["val_loss"] for p in points.values()]
    try:
        n_opt, loss_opt = isoflop.isoflop_minimum(n, losses)
    except ValueError as err:
        return {"error": str(err)}
    return {"n_opt": round(n_opt), "loss_at_n_opt": round(loss_opt, 4),
            "tokens_at_n_opt": round(isoflop.tokens_for_budget(compute, n_opt)),
            "inside_measured_range": min(n) <= n_opt <= max(n)}


def run_isoflop(args: argparse.Namespace, data: CharData) -> tuple[dict, dict]:
    configs = {name: GPTConfig(vocab_size=len(data.vocab), n_ctx=args.n_ctx, **size)
               for name, size in ISOFLOP_SIZES.items()}
    plans = {
        "fixed_steps": isoflop.isoflop_plan(configs, args.compute, args.n_ctx,
                                            steps=args.steps),
        "fixed_batch": isoflop.isoflop_plan(configs, args.compute, args.n_ctx,
                                            batch_size=args.batch_size),
    }
    profiles = {}
    for profile, plan in plans.items():
        log(f"(c) IsoFLOP at C = {args.compute:.3g} FLOPs, {profile.replace('_', ' ')}")
        points = {}
        for name, config in configs.items():
            row = plan[name]
            tokens = row["tokens"]
            train = TrainConfig(seq_len=args.n_ctx, batch_size=row["batch_size"],
                                lr=args.isoflop_lr, warmup_tokens=int(WARMUP_FRACTION * tokens),
                                seed=0)
            settings = SweepSettings(train=train, n_tokens=tokens,
                                     val_sequences=args.val_sequences, threads=1)
            run = controlled.train_and_evaluate(config, settings, data)
            points[name] = {**row, "val_loss": run.val_loss, "seconds": run.seconds}
            log(f"{name:>8}: N={row['n_parameters']:>7,} D={tokens:>9,} "
                f"({row['tokens_per_parameter']:.1f} tokens/param, {row['steps']} steps of "
                f"{row['batch_size']}) val loss {run.val_loss:.4f} ({run.seconds:.1f} s)")
        profiles[profile] = {"points": points,
                             "best_measured": min(points, key=lambda k: points[k]["val_loss"]),
                             "parabola": _isoflop_fit(points, args.compute)}
    parameters = {"compute": args.compute, "lr": args.isoflop_lr, "seq_len": args.n_ctx,
                  "configs": {k: dataclasses.asdict(c) for k, c in configs.items()},
                  "fixed_steps": args.steps, "fixed_batch_size": args.batch_size,
                  "plans": {p: {k: {"steps": r["steps"], "batch_size": r["batch_size"]}
                                for k, r in plan.items()} for p, plan in plans.items()},
                  "warmup_fraction": WARMUP_FRACTION, "val_sequences": args.val_sequences,
                  "seed": 0, "flops": "6 N D, N = all parameters (embeddings included)"}
    results = {"profiles": profiles, "chinchilla": isoflop.chinchilla_prediction(args.compute)}
    return parameters, results


# --------------------------------------------------------------------------------------------
# (d) supervised fine-tuning, and (e) the confident mistakes


def _zero_shot(model, tokenizer, examples_by_task: dict[str, list]) -> dict[str, float]:
    predict = icl.greedy_predictor(model, tokenizer, max_new_tokens=16)
    return {name: round(score(predict([e.text for e in ex]), [e.answer for e in ex]), 3)
            for name, ex in examples_by_task.items()}


def _evaluate_sft(model, tokenizer, splits: dict[str, dict[str, list]],
                  few_shot: dict[str, list]) -> dict[str, Any]:
    predict = icl.greedy_predictor(model, tokenizer, max_new_tokens=16)
    out = {key: _zero_shot(model, tokenizer, by_task) for key, by_task in splits.items()}
    out["two_shot_test"] = {
        name: round(score(predict([p.text for p in prompts]), [p.answer for p in prompts]), 3)
        for name, prompts in few_shot.items()}
    everything = [e for ex in splits["zero_shot_test"].values() for e in ex]
    out["answer_loss_test"] = round(finetune.answer_loss(model, everything, tokenizer), 4)
    everything = [e for ex in splits["zero_shot_train"].values() for e in ex]
    out["answer_loss_train"] = round(finetune.answer_loss(model, everything, tokenizer), 4)
    return out


def sft_config(steps: int, lr: float) -> TrainConfig:
    """Fine-tuning: batches of 16 examples, no warmup, cosine to 10 %, no weight decay."""
    return TrainConfig(max_steps=steps, batch_size=16, lr=lr, warmup_tokens=0,
                       weight_decay=0.0, seed=0)


def run_sft(args: argparse.Namespace) -> tuple[dict, dict]:
    tokenizer = icl.CharTokenizer()
    mixture = icl.Mixture(weights=SFT_WEIGHTS, max_examples=6, p_description=0.0,
                          holdout_tasks=())
    steps = args.sft_pretrain_steps
    pretrain = TrainConfig(max_steps=steps, batch_size=16, seq_len=128,
                           warmup_tokens=int(0.05 * steps * 16 * 128), seed=0)
    tasks = {name: icl.ICL_TASKS[name] for name in SFT_TASKS}
    splits = {
        "zero_shot_train": {n: finetune.sft_examples(t, part="train", holdout=args.holdout)
                            for n, t in tasks.items()},
        "zero_shot_test": {n: finetune.sft_examples(t, part="test", holdout=args.holdout)
                           for n, t in tasks.items()},
        "zero_shot_test_no_instruction": {
            n: finetune.sft_examples(t, part="test", holdout=args.holdout, description=False)
            for n, t in tasks.items()},
    }
    few_shot = {n: icl.make_prompts(icl.split_task(t, "test", args.holdout), 100, k_shots=2,
                                    seed=1, description=False) for n, t in tasks.items()}
    log(f"(d) pre-training on few-shot episodes, {steps} steps")
    start = time.perf_counter()
    trainer = icl.make_trainer(SFT_SIZE, pretrain, mixture, data_seed=0, tokenizer=tokenizer)
    history = trainer.train()
    model = trainer.model.eval()
    pretrain_s = time.perf_counter() - start
    before = _evaluate_sft(model, tokenizer, splits, few_shot)
    log(f"    before: {before}")
    train_examples = [e for ex in splits["zero_shot_train"].values() for e in ex]
    after, mistakes = {}, {}
    test_prompts = [e for ex in splits["zero_shot_test"].values() for e in ex]
    predict = icl.greedy_predictor(model, tokenizer, max_new_tokens=16)
    mistakes["before"] = finetune.confident_mistakes(
        model, tokenizer, test_prompts, predict([p.text for p in test_prompts]), top=8)
    for name, trainable in SFT_TRAINABLE.items():
        for lr in args.sft_lrs:
            key = f"{name}_lr{lr:g}"
            tuned = copy.deepcopy(model)
            start = time.perf_counter()
            hist = finetune.finetune(tuned, train_examples, tokenizer,
                                     sft_config(args.sft_steps, lr), trainable=trainable)
            tuned.eval()
            after[key] = {**_evaluate_sft(tuned, tokenizer, splits, few_shot),
                          "trainable_parameters": _trainable_count(tuned, trainable),
                          "first_loss": round(hist[0]["loss"], 4),
                          "last_loss": round(hist[-1]["loss"], 4),
                          "seconds": round(time.perf_counter() - start, 1)}
            log(f"    after {key}: {after[key]}")
            predict = icl.greedy_predictor(tuned, tokenizer, max_new_tokens=16)
            mistakes[f"after_{key}"] = finetune.confident_mistakes(
                tuned, tokenizer, test_prompts, predict([p.text for p in test_prompts]), top=8)
    parameters = {
        "tasks": list(SFT_TASKS), "mixture": mixture.to_dict(), "size": SFT_SIZE,
        "pretrain": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(pretrain).items() if k in icl.TRAIN_FIELDS},
        "data_seed": 0, "alphabet": tokenizer.alphabet, "holdout": args.holdout,
        "finetune": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(sft_config(args.sft_steps,
                                                               args.sft_lrs[0])).items()
                     if k in icl.TRAIN_FIELDS},
        "finetune_lrs": list(args.sft_lrs),
        "trainable": SFT_TRAINABLE,
        "evaluation": {"zero_shot": "every distinct query of the share once, greedy, exact "
                                    "match", "two_shot": "100 prompts, seed 1, test share",
                       "max_new_tokens": 16},
        "n_examples": {key: {n: len(ex) for n, ex in by.items()} for key, by in splits.items()},
    }
    results = {"pretrain_final_loss": round(sum(r["loss"] for r in history[-10:]) / 10, 4),
               "pretrain_s": round(pretrain_s, 1), "before": before, "after": after,
               "confident_mistakes": mistakes}
    return parameters, results


def _trainable_count(model, trainable) -> int:
    if trainable is None:
        return finetune.trainable_parameters(model)
    finetune.freeze(model, trainable)
    count = finetune.trainable_parameters(model)
    finetune.unfreeze(model)
    return count


# --------------------------------------------------------------------------------------------
# (e) limits: co-occurrence bias and energy


def run_limits(window: int = 5, top: int = 10) -> tuple[dict, dict]:
    counts = bias.cooccurrence_counts(bias.words(load_shakespeare()), window=window)
    table = bias.bias_table(counts)
    parameters = {"window": window, "pronouns": bias.PRONOUNS,
                  "descriptive_words": list(bias.DESCRIPTIVE_WORDS), "min_count": 10,
                  "smoothing": 1.0,
                  "energy_assumptions": {"flops": energy.GPT3_175B_FLOPS,
                                         "flops_per_second_per_gpu": energy.V100_SUSTAINED_FLOPS,
                                         "watts_per_gpu": energy.V100_WATTS, "pue": 1.1,
                                         "pages": 100, "words_per_page": 500,
                                         "tokens_per_word": 4 / 3}}
    results = {
        "cooccurrence": {"most_male": table[:top], "most_female": table[::-1][:top],
                         "totals": {g: sum(c.values()) for g, c in counts.items()},
                         "mean_per_word": bias.mean_cooccurrences(counts)},
        "energy": {**energy.gpt3_training_energy(),
                   "generation_100_pages_kwh": energy.generation_energy_kwh(
                       energy.pages_to_tokens(100), 174.6e9),
                   "paper_100_pages_kwh": energy.GPT3_100_PAGES_KWH},
    }
    return parameters, results


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    parameters: dict[str, Any] = {
        "command": shlex.join(["python", "experiments/after_gpt3.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "num_threads": torch.get_num_threads(), "args": vars(args),
    }
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    data = char_data() if {"comparison", "ablation", "isoflop"} & set(args.parts) else None
    if data is not None:
        parameters["data"] = data.description
    if "comparison" in args.parts:
        t = time.perf_counter()
        parameters["comparison"], results["comparison"] = run_comparison(args, data)
        timings["comparison"] = time.perf_counter() - t
    if "ablation" in args.parts:
        t = time.perf_counter()
        comparison = results.get("comparison")
        lrs = comparison["lr"] if comparison else {"gpt3": 6e-3, "llama": 1.5e-3}
        parameters["ablation"], results["ablation"] = {}, {}
        for arch, seeds in (("gpt3", args.ablation_seeds), ("llama", args.ablation_seeds[:2])):
            known: dict[str, dict[str, float]] = {}
            if comparison:  # the GPT-3 runs of the comparison at this learning rate
                grid = comparison["lr_grid_val_loss"].get(f"{lrs[arch]:g}", {})
                known["gpt3"] = {str(args.seeds[0]): grid["gpt3"]} if grid else {}
                if lrs[arch] == lrs["gpt3"]:
                    known["gpt3"] = dict(comparison["val_loss"]["gpt3"])
            key = f"at_{arch}_lr"
            parameters["ablation"][key], results["ablation"][key] = run_ablation(
                args, data, lrs[arch], seeds, known)
            if comparison and arch == "llama":  # the full LLaMA-style model, for reference
                results["ablation"][key]["llama_val_loss"] = {
                    str(s): comparison["val_loss"]["llama"][str(s)] for s in seeds}
        timings["ablation"] = time.perf_counter() - t
    if "isoflop" in args.parts:
        t = time.perf_counter()
        parameters["isoflop"], results["isoflop"] = run_isoflop(args, data)
        timings["isoflop"] = time.perf_counter() - t
    if "sft" in args.parts:
        t = time.perf_counter()
        parameters["sft"], results["sft"] = run_sft(args)
        timings["sft"] = time.perf_counter() - t
    if "limits" in args.parts:
        t = time.perf_counter()
        parameters["limits"], results["limits"] = run_limits()
        timings["limits"] = time.perf_counter() - t
    total = time.perf_counter() - start
    print(f"\ntimings (s): { {k: round(v) for k, v in timings.items()} }, total {total:.0f} s")
    out = round_floats({"parameters": parameters, "results": results,
                        "timings_s": {k: round(v, 1) for k, v in timings.items()},
                        "total_s": round(total, 1)})
    save(out, args.out)
    return out


if __name__ == "__main__":
    main()
