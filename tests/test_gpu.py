"""minigpt.gpu and the GPU features of minigpt.train: precision, GradScaler, compile, fused AdamW,
time budget, MFU. Everything but the last tests runs on a CPU; those need CUDA and say so."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt import gpu, precision
from minigpt.config import GPTConfig, count_parameters, gpt3_config
from minigpt.model import GPT
from minigpt.scaling import PEAK_FLOPS, flops_per_token
from minigpt.train import TrainConfig, Trainer, load_checkpoint, pack_documents

ROOT = Path(__file__).resolve().parents[1]
CONFIG = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=64, n_ctx=16)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _stream(n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Documents that count upwards (mod 63) from a random start: learnable, not random."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, 63, (n // 30,), generator=g)
    return pack_documents([(torch.arange(29) + int(s)) % 63 + 1 for s in starts], eot_id=0)


def _trainer(device: str = "cpu", config: GPTConfig = CONFIG, val=None, **kw) -> Trainer:
    base = dict(max_steps=4, batch_size=4, micro_batch_size=2, lr=3e-3, seed=1)
    base.update(kw)
    torch.manual_seed(0)
    return Trainer(GPT(config).to(device), _stream(), TrainConfig(**base), val_tokens=val)


def _untimed(history):
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")} for r in history]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "benchmarks" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# minigpt.gpu


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835),
    ("NVIDIA H200", 989), ("NVIDIA GH200 480GB", 989), ("NVIDIA A100-SXM4-80GB", 312),
    ("NVIDIA A100-PCIE-40GB", 312), ("NVIDIA A100 80GB PCIe", 312), ("NVIDIA A10G", 70),
    ("NVIDIA A10", 125), ("NVIDIA L4", 121), ("NVIDIA L40S", 362), ("NVIDIA L40", 181),
    ("Tesla T4", 65), ("Tesla V100-SXM2-16GB", 125), ("Tesla V100-PCIE-32GB", 112),
    ("Tesla V100S-PCIE-32GB", 130),
])
def test_peak_table_lookups(name, tflops):
    assert gpu.lookup_peak_flops(name) == pytest.approx(tflops * 1e12, rel=1e-3)


def test_peak_table_unknown_and_cpu():
    assert gpu.lookup_peak_flops("NVIDIA GeForce GTX 1080") is None
    assert gpu.lookup_peak_flops("") is None
    assert gpu.peak_flops("cpu") is None
    # the same numbers as the scaling chapter's table
    for chip in PEAK_FLOPS:
        assert gpu.lookup_peak_flops(f"NVIDIA {chip}-SXM") == PEAK_FLOPS[chip]
    with pytest.raises(ValueError, match="GPU name"):
        gpu.lookup_peak_flops(None)


@pytest.mark.parametrize("capability, want", [((7, 0), "fp16"), ((7, 5), "fp16"),
                                              ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_precision_choice_by_compute_capability(monkeypatch, capability, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert precision.pick_precision("cuda") == want
    assert precision.supports_bf16(torch.device("cuda:0")) == (want == "bf16")
    assert gpu.peak_flops("cuda") == 65e12


def test_precision_on_cpu_is_fp32():
    assert precision.pick_precision("cpu") == "fp32" and not precision.supports_bf16("cpu")


def test_mfu_formula():
    assert gpu.mfu(1000.0, 6e6, 1e12) == pytest.approx(6e-3)
    small = gpt3_config("small")
    # 400k tokens/s of GPT-3 Small on an H100 is a quarter of its peak (Kaplan's count)
    assert gpu.mfu(4e5, flops_per_token(small), PEAK_FLOPS["H100"]) == pytest.approx(
        4e5 * 624.1e6 / 989e12, rel=1e-3)
    with pytest.raises(ValueError, match="peak"):
        gpu.mfu(1.0, 1.0, None)
    with pytest.raises(ValueError, match="tokens_per_s"):
        gpu.mfu(-1.0, 1.0, 1.0)


def test_gpt3_small_or_tiny_switch():
    small = gpu.gpt3_small_or_tiny(True, "triton")
    assert small == gpt3_config("small", attention_backend="triton",
                                attention_pattern="alternating")
    assert (small.local_window, small.layer_attention(0), small.layer_attention(1)) == (
        256, "dense", "local")
    assert count_parameters(small) == 125_226_240  # the band adds no parameter
    assert gpu.gpt3_small_or_tiny(True, attention_pattern="dense") == gpt3_config("small")
    tiny = gpu.gpt3_small_or_tiny(False, vocab_size=100)
    assert (tiny.n_layer, tiny.d_model, tiny.vocab_size, tiny.attention_backend) == (
        2, 64, 100, "sdpa")
    assert (tiny.attention_pattern, tiny.local_window) == ("alternating", 16)
    assert gpu.gpt3_small_or_tiny(False, n_ctx=64).local_window == 8
    with pytest.raises(ValueError, match="full"):
        gpu.gpt3_small_or_tiny("yes")


def test_describe_peak_never_says_zero(monkeypatch):
    assert gpu.describe_peak("cpu") == "no known peak FLOP/s for this device"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert gpu.describe_peak("cuda") == "peak 989 TFLOP/s (dense 16-bit)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GTX 1080")
    assert gpu.describe_peak("cuda") == "no known peak FLOP/s for this device"


def test_micro_batch_from_free_memory():
    small = gpt3_config("small")
    sizes = [gpu.micro_batch_for_memory(small, g.memory_gb * 1e9) for g in gpu.COLAB_GPUS]
    assert sizes == [4, 16, 32]  # T4, A100 40GB, H100 80GB
    # the naive backend stores every T x T score matrix: far fewer sequences fit
    naive = small.replace(attention_backend="naive")
    assert gpu.micro_batch_for_memory(naive, 85e9) < 32
    assert gpu.micro_batch_for_memory(small, 1e9) == 1  # never below one
    assert gpu.micro_batch_for_memory(get_tiny(), 85e9, cap=16) == 16
    with pytest.raises(ValueError, match="free_bytes"):
        gpu.micro_batch_for_memory(small, 0)


def get_tiny():
    return gpu.gpt3_small_or_tiny(False)


def test_adapt_to_gpu_on_cpu_and_on_a_t4(monkeypatch):
    assert gpu.adapt_to_gpu(get_tiny(), "cpu") == gpu.GPURecipe("CPU", "fp32", False, None,
                                                                None, 8)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (15.0e9, 15.8e9))
    recipe = gpu.adapt_to_gpu(gpt3_config("small"), "cuda")
    assert (recipe.precision, recipe.scaler, recipe.peak, recipe.micro_batch) == (
        "fp16", True, 65e12, 4)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (84e9, 85e9))
    recipe = gpu.adapt_to_gpu(gpt3_config("small"), "cuda")
    assert (recipe.precision, recipe.scaler, recipe.micro_batch) == ("bf16", False, 32)


def test_flash_attn_check_is_a_bool():
    assert isinstance(gpu.flash_attn_available(), bool)


# ---------------------------------------------------------------------------------------------
# TrainConfig and Trainer on a CPU


def test_new_settings_are_validated():
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'fp32'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="compile must be True or False"):
        TrainConfig(compile="yes")
    with pytest.raises(ValueError, match="fused_adamw"):
        TrainConfig(fused_adamw=None)
    with pytest.raises(ValueError, match="time_budget_s must be a number > 0"):
        TrainConfig(time_budget_s=0)
    with pytest.raises(ValueError, match="peak_flops"):
        TrainConfig(peak_flops=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(weight_decay=-0.1)


def test_auto_on_cpu_is_the_fp32_run_bit_for_bit():
    fp32, auto = _trainer(), _trainer(precision="auto")
    assert (auto.precision, auto.scaler) == ("fp32", None)
    assert auto.optimizer.param_groups[0]["fused"] is None  # fused AdamW is CUDA-only here
    assert _untimed(fp32.train()) == _untimed(auto.train())
    assert "mfu" not in fp32.history[0]  # no known peak on a CPU


def test_mfu_is_recorded_with_a_peak():
    trainer = _trainer(peak_flops=1e12, max_steps=2)
    record = trainer.train()[-1]
    assert trainer.flops_per_token == flops_per_token(CONFIG)
    assert record["mfu"] == pytest.approx(record["tokens_per_s"] * flops_per_token(CONFIG) / 1e12)
    short = _trainer(peak_flops=1e12, seq_len=8)  # the attention term follows the sequence
    assert short.flops_per_token == flops_per_token(CONFIG.replace(n_ctx=8))


def test_bf16_autocast_on_cpu():
    trainer = _trainer(precision="bf16", max_steps=3)
    dtypes = []
    trainer.model.lm_head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    history = trainer.train()
    assert trainer.scaler is None and dtypes[0] == torch.bfloat16
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights


def test_time_budget_stops_cleanly(tmp_path):
    path = tmp_path / "ckpt.pt"
    trainer = _trainer(max_steps=100_000, time_budget_s=0.3, eval_interval=10_000,
                       eval_batches=1, checkpoint_path=str(path), val=_stream(300, seed=2))
    history = trainer.train()
    assert trainer.stopped_by_budget and 1 <= len(history) < 100_000
    assert "val_loss" in history[-1]  # the last step is evaluated
    assert load_checkpoint(path)["step"] == trainer.step  # and saved
    resumed = Trainer.from_checkpoint(path, _stream(), device="cpu",
                                      max_steps=trainer.step + 2, time_budget_s=None)
    assert len(resumed.train()) == trainer.step + 2 and not resumed.stopped_by_budget


fp16_on_cpu = pytest.mark.skipif(
    not hasattr(torch.amp, "GradScaler"), reason="this torch has no torch.amp.GradScaler('cpu')")


@fp16_on_cpu
def test_fp16_unscales_before_clipping():
    fp32, fp16 = _trainer(max_steps=1), _trainer(precision="fp16", max_steps=1)
    start = torch.cat([p.detach().flatten() for p in fp32.model.parameters()])
    a, b = fp32.train()[0], fp16.train()[0]
    assert b["loss_scale"] == 2.0**16 and not b["skipped"]
    # the reported (and clipped) norm is that of the true gradient, not 65536 times it
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=0.01)
    # and the update goes the same way (Adam's first step is about lr * sign(g), so a few
    # tiny gradients that round to the other sign differ by 2 lr: compare directions)
    moves = [torch.cat([p.detach().flatten() for p in t.model.parameters()]) - start
             for t in (fp32, fp16)]
    assert torch.nn.functional.cosine_similarity(*moves, dim=0) > 0.99


@fp16_on_cpu
def test_fp16_overflow_skips_the_step_and_halves_the_scale():
    trainer = _trainer(precision="fp16", max_steps=2)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 overflows
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.train_step()
    assert record["skipped"] and record["loss_scale"] == 2.0**100
    assert trainer.scaler.get_scale() == 2.0**99
    assert all(torch.equal(p, q) for p, q in zip(before, trainer.model.parameters(), strict=True))
    assert not trainer.optimizer.state  # AdamW's moments were not touched either
    assert trainer.step == 1 and all(p.grad is None for p in trainer.model.parameters())


@fp16_on_cpu
def test_fp16_trains_and_resumes_exactly(tmp_path):
    straight = _trainer(precision="fp16", max_steps=6)
    expected = straight.train()
    assert expected[-1]["loss"] < expected[0]["loss"]
    first = _trainer(precision="fp16", max_steps=6)
    first.train(steps=4)
    first.save_checkpoint(tmp_path / "c.pt")
    resumed = Trainer.from_checkpoint(tmp_path / "c.pt", _stream())
    assert resumed.scaler.state_dict() == first.scaler.state_dict()
    assert _untimed(resumed.train()) == _untimed(expected)


def test_compile_wiring_with_the_eager_backend(monkeypatch):
    # Inductor takes about a minute to compile even this model on 2 cores; dynamo's capture
    # with the "eager" backend checks the wiring (graphs, autocast, checkpoint keys) in seconds.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain, compiled = _trainer(max_steps=2), _trainer(max_steps=2, compile=True)
    assert compiled._forward is not compiled.model
    for a, b in zip(plain.train(), compiled.train(), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert set(compiled.state_dict()["model"]) == set(plain.state_dict()["model"])


@pytest.mark.skipif(os.environ.get("MINIGPT_SLOW_TESTS") != "1",
                    reason="inductor compiles even the tiny model for about a minute on 2 CPU "
                           "cores; set MINIGPT_SLOW_TESTS=1 to run it")
def test_compile_with_inductor_on_cpu():
    plain, compiled = _trainer(max_steps=2), _trainer(max_steps=2, compile=True)
    for a, b in zip(plain.train(), compiled.train(), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)


def test_benchmark_skips_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_train.py")], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "no CUDA GPU: gpu_train benchmark skipped" in lines[0]
    assert lines[-1] == "gpu_train skipped reason=no-cuda"


def test_benchmark_inner_function_on_cpu():
    bench = _load_benchmark()
    r = bench.measure(CONFIG, compile=False, micro_batch=2, accum=2, steps=1, warmup=1,
                      device="cpu")
    assert r["tokens_per_s"] > 0 and r["mfu"] is None and r["precision"] == "fp32"
    counts = bench.flop_counts(gpt3_config("small"))
    assert [round(counts[k] / 1e6) for k in ("kaplan", "6n", "palm")] == [624, 510, 978]


# ---------------------------------------------------------------------------------------------
# CUDA


@needs_cuda
def test_cuda_auto_precision_autocast_and_fused_adamw():
    trainer = _trainer("cuda", precision="auto", max_steps=3)
    dtypes = []
    trainer.model.lm_head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    history = trainer.train()
    want = torch.bfloat16 if precision.supports_bf16("cuda") else torch.float16
    assert dtypes[0] == want and trainer.precision == precision.pick_precision("cuda")
    assert (trainer.scaler is not None) == (want == torch.float16)
    assert trainer.optimizer.param_groups[0]["fused"] is True
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert ("mfu" in history[-1]) == (gpu.peak_flops("cuda") is not None)
    unfused = _trainer("cuda", fused_adamw=False)
    assert not unfused.optimizer.param_groups[0]["fused"]


@needs_cuda
def test_cuda_fp16_with_scaler():
    trainer = _trainer("cuda", precision="fp16", max_steps=4)
    history = trainer.train()
    assert trainer.scaler is not None and "loss_scale" in history[0]
    assert history[-1]["loss"] < history[0]["loss"]


@needs_cuda
def test_cuda_bf16_refused_without_hardware_support():
    if precision.supports_bf16("cuda"):
        pytest.skip("this GPU has bf16; the refusal is for older ones (T4, V100)")
    with pytest.raises(ValueError, match="compute capability 8.0"):
        _trainer("cuda", precision="bf16")


@needs_cuda
def test_cuda_benchmark_inner_function():
    bench = _load_benchmark()
    config = gpu.gpt3_small_or_tiny(False, vocab_size=256)
    for backend in ("naive", "sdpa"):
        r = bench.measure(config.replace(attention_backend=backend), compile=False,
                          micro_batch=4, accum=2, steps=2, warmup=1)
        assert r["tokens_per_s"] > 0 and r["peak_mem_gb"] > 0
