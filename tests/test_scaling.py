"""Tests for minigpt.scaling: FLOPs, time and cost, memory, Chinchilla, power-law fits.

References: GPT-3's Table D.1 (FLOPs and PF-days of the eight models), ZeRO's worked example
(7.5B parameters on 64 GPUs), ``torch.utils.flop_counter.FlopCounterMode`` counting the matrix
products of a real forward pass, the storage of real fp32/fp16 tensors for the bytes per
parameter, ``numpy.polyfit`` for the log-log fit and its covariance, and
a brute-force search along ``6 N D = C`` for Chinchilla's closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from minigpt.config import GPT3_CONFIGS, GPTConfig, count_parameters, gpt3_config
from minigpt.scaling import (
    CHINCHILLA,
    GPT3_TABLE_D1,
    KAPLAN,
    PEAK_FLOPS,
    activation_bytes,
    activation_bytes_per_layer,
    chinchilla_loss,
    chinchilla_optimal,
    estimate_training,
    fit_power_law,
    flops_per_token,
    h100_estimate,
    kaplan_allocation,
    kaplan_loss,
    lambda_v100_estimate,
    memory_per_gpu,
    model_state_bytes,
    pf_days,
    tokens_per_parameter_rule,
    training_flops,
)

# -- FLOPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GPT3_TABLE_D1))
def test_table_d1_reproduced(name):
    pf, flops, _ = GPT3_TABLE_D1[name]
    ours = training_flops(GPT3_CONFIGS[name], 300e9)
    assert f"{ours:.3g}" == f"{flops:.3g}" or abs(ours / flops - 1) < 0.006  # XL: 2.37 vs 2.38
    assert abs(pf_days(ours) / pf - 1) < 0.01


def test_175b_headline_figures():
    flops = training_flops(gpt3_config("175B"), 300e9)
    assert round(flops / 1e23, 2) == 3.14
    assert round(pf_days(3.14e23)) == 3634  # the paper prints 3,640
    assert training_flops(174.6e9, 300e9) == pytest.approx(3.1428e23)


def test_attention_share_matches_kaplan_term():
    # Kaplan's attention term, x3 for training, relative to 6N (all parameters)
    shares = {"small": 15.1, "medium": 14.1, "large": 9.9, "xl": 7.7, "13B": 3.3, "175B": 1.4}
    for name, share in shares.items():
        cfg = GPT3_CONFIGS[name]
        with_attn = training_flops(cfg, 1.0, attention=True)
        without = training_flops(cfg, 1.0)
        assert round(100 * (with_attn / without - 1), 1) == share
    cfg = gpt3_config("175B")
    extra = training_flops(cfg, 300e9, attention=True) - training_flops(cfg, 300e9)
    assert f"{extra:.3g}" == "4.35e+21"


def test_flops_per_token_formula():
    cfg = gpt3_config("small")
    n = count_parameters(cfg, non_embedding=True)
    attn = 2 * cfg.n_layer * cfg.n_ctx * cfg.d_attn
    assert flops_per_token(cfg, training=False) == 2 * n + attn
    assert flops_per_token(cfg) == 3 * (2 * n + attn)
    assert flops_per_token(cfg, attention=False, params="total") == 6 * count_parameters(cfg)
    banded = cfg.replace(attention_pattern="alternating", local_window=256)
    saved = 6 * (cfg.n_layer // 2) * (2048 - 256) * cfg.d_attn
    assert flops_per_token(banded, banded=True) == flops_per_token(cfg) - saved
    assert flops_per_token(banded) == flops_per_token(cfg)


def _forward(cfg: GPTConfig, params: dict, idx: torch.Tensor) -> torch.Tensor:
    """A GPT-2/3 forward pass in plain torch.nn.functional, for counting its FLOPs."""
    T, h, dh = idx.shape[1], cfg.n_heads, cfg.d_head
    x = F.embedding(idx, params["wte"]) + params["wpe"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in params["layers"]:
        a = F.layer_norm(x, (cfg.d_model,), *layer["ln1"])
        q, k, v = F.linear(a, *layer["qkv"]).split(cfg.d_attn, dim=-1)
        q, k, v = (t.view(1, T, h, dh).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~mask, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, T, cfg.d_attn)
        x = x + F.linear(y, *layer["proj"])
        m = F.layer_norm(x, (cfg.d_model,), *layer["ln2"])
        x = x + F.linear(F.gelu(F.linear(m, *layer["fc"])), *layer["fc2"])
    x = F.layer_norm(x, (cfg.d_model,), *params["ln_f"])
    return F.linear(x, params["wte"])


def test_kaplan_count_against_torch_flop_counter():
    """torch counts every matmul: 2 per weight, plus QK^T and AV (2 T d_attn each per token)
    and the output logits (2 d V). Kaplan's 2N + 2 n_layer n_ctx d_attn differs by exactly
    the logits, the AV product and the biases/LayerNorms (which are in N but not matmuls)."""
    cfg = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=50, n_ctx=16)
    d, f, g = cfg.d_model, cfg.d_ff, torch.Generator().manual_seed(0)

    def p(*shape):
        return torch.randn(*shape, generator=g)

    layers = [{"ln1": (p(d), p(d)), "qkv": (p(3 * d, d), p(3 * d)), "proj": (p(d, d), p(d)),
               "ln2": (p(d), p(d)), "fc": (p(f, d), p(f)), "fc2": (p(d, f), p(d))}
              for _ in range(cfg.n_layer)]
    params = {"wte": p(cfg.vocab_size, d), "wpe": p(cfg.n_ctx, d), "layers": layers,
              "ln_f": (p(d), p(d))}
    idx = torch.randint(0, cfg.vocab_size, (1, cfg.n_ctx), generator=g)
    with FlopCounterMode(display=False) as counter:
        _forward(cfg, params, idx)
    per_token = counter.get_total_flops() / cfg.n_ctx
    kaplan = flops_per_token(cfg, training=False)
    biases_and_norms = cfg.n_layer * (13 * d) + 2 * d  # 4d+5d biases, 4d LayerNorm per layer
    av_product = 2 * cfg.n_layer * cfg.n_ctx * cfg.d_attn
    logits = 2 * d * cfg.vocab_size
    assert per_token == kaplan - 2 * biases_and_norms + av_product + logits


def test_flops_errors():
    with pytest.raises(ValueError, match="params must be 'non_embedding' or 'total'"):
        flops_per_token(gpt3_config("small"), params="all")
    with pytest.raises(ValueError, match="attention=True needs a GPTConfig"):
        training_flops(1e9, 1e9, attention=True)
    with pytest.raises(ValueError, match="n_tokens must be >= 0"):
        training_flops(1e9, -1)
    with pytest.raises(ValueError, match="parameter count > 0"):
        training_flops(0, 1e9)


# -- time and cost --------------------------------------------------------------------------


def test_lambda_v100_estimate():
    est = lambda_v100_estimate()
    assert int(est.gpu_years) == 355
    assert round(est.dollars / 1e6, 1) == 4.7  # "$4.6M" in the post
    assert est.gpu_hours == pytest.approx(3.14e23 / 28e12 / 3600)


def test_h100_and_general_estimates():
    est = h100_estimate(mfu=0.4, n_gpus=1024, dollars_per_gpu_hour=2.0)
    assert est.wall_days == pytest.approx(3.14e23 / (989e12 * 0.4) / 1024 / 86400)
    assert est.dollars == pytest.approx(2.0 * est.gpu_hours)
    assert round(est.wall_days, 1) == 9.0
    assert PEAK_FLOPS["H100"] == 989e12
    # Megatron-LM (2021): 175B, 300B tokens, 1024 A100 at 140 TFLOP/s, 8TP/(nX) -> ~34 days
    megatron = estimate_training(8 * 175e9 * 300e9, 140e12, n_gpus=1024)
    assert round(megatron.wall_days, 1) == 33.9
    for kwargs, msg in [(dict(mfu=0), r"mfu must be in \(0, 1\]"),
                        (dict(n_gpus=0), "n_gpus must be a positive integer"),
                        (dict(n_gpus=1.5), "n_gpus must be a positive integer")]:
        with pytest.raises(ValueError, match=msg):
            estimate_training(1e20, 1e12, **kwargs)
    with pytest.raises(ValueError, match="peak_flops_per_second must be > 0"):
        estimate_training(1e20, 0)


# -- memory ---------------------------------------------------------------------------------


def test_model_state_bytes_match_real_tensors():
    """16 bytes per parameter both ways, checked against the storage of actual tensors."""
    n = 1000
    w32 = torch.zeros(n)
    fp32 = w32.nbytes + torch.zeros_like(w32).nbytes + 2 * torch.zeros_like(w32).nbytes
    w16 = torch.zeros(n, dtype=torch.float16)
    mixed = 2 * w16.nbytes + 3 * w32.nbytes  # fp16 weights + grads; fp32 master, m, v
    assert model_state_bytes(n, "fp32").total == fp32 == 16 * n
    assert model_state_bytes(n, "mixed").total == mixed == 16 * n
    assert model_state_bytes(175e9, "fp32").weights == 700e9


def test_zero_paper_example():
    gb = [memory_per_gpu(7.5e9, data_parallel=64, zero_stage=s).gb()["total"] for s in range(4)]
    assert gb == [120.0, 31.4, 16.6, 1.9]
    assert memory_per_gpu(174.6e9).total == pytest.approx(16 * 174.6e9)  # ~2.79 TB


def test_tensor_and_pipeline_split_the_model_states():
    cfg = gpt3_config("175B")
    one = memory_per_gpu(cfg)
    split = memory_per_gpu(cfg, tensor_parallel=8, pipeline_parallel=16)
    assert split.weights == pytest.approx(one.weights / 128)
    zero3 = memory_per_gpu(cfg, tensor_parallel=8, pipeline_parallel=16, data_parallel=8,
                           zero_stage=3)
    assert zero3.weights + zero3.gradients + zero3.optimizer == pytest.approx(
        16 * count_parameters(cfg) / 1024)


def test_activation_formulas():
    s, b, h, a = 2048, 1, 12288, 96
    sbh = s * b * h
    assert activation_bytes_per_layer(s, b, h, a) == sbh * (34 + 5 * a * s / h)
    assert activation_bytes_per_layer(s, b, h, a, recompute="full") == 2 * sbh
    assert activation_bytes_per_layer(s, b, h, a, recompute="selective") == 34 * sbh
    t = 8
    assert activation_bytes_per_layer(s, b, h, a, tensor_parallel=t) == pytest.approx(
        sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    assert activation_bytes_per_layer(s, b, h, a, tensor_parallel=t,
                                      sequence_parallel=True) == pytest.approx(
        sbh * (34 + 5 * a * s / h) / t)
    cfg = gpt3_config("175B")
    assert activation_bytes(cfg) == 96 * activation_bytes_per_layer(s, b, h, a)
    assert round(activation_bytes(cfg) / 1e9) == 275
    with pytest.raises(ValueError, match="recompute must be one of 'none', 'selective', 'full'"):
        activation_bytes_per_layer(s, b, h, a, recompute="some")
    with pytest.raises(ValueError, match="micro_batch must be a positive integer"):
        activation_bytes_per_layer(s, 0, h, a)


@settings(max_examples=50, deadline=None)
@given(stage=st.integers(0, 3), dp=st.integers(1, 128), n=st.floats(1e6, 1e12))
def test_zero_stages_never_increase_memory(stage, dp, n):
    mem = memory_per_gpu(n, data_parallel=dp, zero_stage=stage).total
    assert 16 * n / dp * (1 - 1e-12) <= mem <= 16 * n * (1 + 1e-12)
    if stage:
        assert mem <= memory_per_gpu(n, data_parallel=dp, zero_stage=stage - 1).total


def test_memory_errors():
    with pytest.raises(ValueError, match="zero_stage must be 0, 1, 2 or 3"):
        memory_per_gpu(1e9, zero_stage=4)
    with pytest.raises(ValueError, match="data_parallel must be a positive integer"):
        memory_per_gpu(1e9, data_parallel=0)
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'mixed'"):
        model_state_bytes(1e9, "bf16")


# -- compute-optimal allocation -------------------------------------------------------------


def test_chinchilla_constants_and_loss():
    assert CHINCHILLA == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert round(chinchilla_loss(175e9, 300e9), 2) == 2.00
    assert round(chinchilla_loss(70e9, 1.4e12), 2) == 1.94
    assert chinchilla_loss(np.array([1e9, 1e10]), 1e11).shape == (2,)


@pytest.mark.parametrize("compute", [1e19, 3.14e23, 5.76e23, 1e26])
def test_chinchilla_optimum_matches_brute_force(compute):
    n_opt, d_opt = chinchilla_optimal(compute)
    assert 6 * n_opt * d_opt == pytest.approx(compute)
    n = np.geomspace(n_opt / 100, n_opt * 100, 200_001)
    best = n[np.argmin(chinchilla_loss(n, compute / (6 * n)))]
    assert best == pytest.approx(n_opt, rel=1e-3)


def test_chinchilla_for_gpt3_budget_and_exponents():
    n, d = chinchilla_optimal(3.14e23)
    assert (round(n / 1e9, 1), round(d / 1e12, 2), round(d / n)) == (24.5, 2.14, 87)
    n2, d2 = chinchilla_optimal(3.14e24)
    exponent = math.log10(n2 / n)
    assert exponent == pytest.approx(0.28 / 0.62)  # ~0.45; the paper's Table 2 prints 0.46
    assert math.log10(d2 / d) == pytest.approx(0.34 / 0.62)
    arr_n, _ = chinchilla_optimal(np.array([1e20, 1e22]))
    assert arr_n.shape == (2,)


def test_tokens_per_parameter_rule():
    n, d = tokens_per_parameter_rule(6 * 70e9 * 1.4e12)  # Chinchilla: 70B on 1.4T tokens
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
    n, d = tokens_per_parameter_rule(3.14e23)
    assert round(n / 1e9, 1) == 51.2 and d / n == pytest.approx(20)


def test_kaplan():
    assert (KAPLAN.alpha_n, KAPLAN.n_c, KAPLAN.alpha_d, KAPLAN.d_c) == (0.076, 8.8e13, 0.095,
                                                                          5.4e13)
    assert kaplan_loss(8.8e13) == pytest.approx(1.0)
    both = kaplan_loss(1e9, 1e30)
    assert both == pytest.approx(kaplan_loss(1e9))  # infinite data: L(N)
    assert kaplan_loss(1e30, 1e10) == pytest.approx(kaplan_loss(n_tokens=1e10))
    n_growth, d_growth = kaplan_allocation(1e3)
    assert n_growth * d_growth == pytest.approx(1e3)  # 0.73 + 0.27 = 1: C = 6ND preserved
    with pytest.raises(ValueError, match="give n_params, n_tokens or both"):
        kaplan_loss()
    with pytest.raises(ValueError, match="compute must be > 0"):
        chinchilla_optimal(0)


# -- power-law fits -------------------------------------------------------------------------


def test_fit_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e6, 1e10, 9)
    y = 20 * x**-0.1 * np.exp(rng.normal(0, 0.02, x.size))
    fit = fit_power_law(x, y)
    (slope, intercept), cov = np.polyfit(np.log(x), np.log(y), 1, cov=True)
    assert fit.b == pytest.approx(-slope) and fit.a == pytest.approx(math.exp(intercept))
    assert fit.b_stderr == pytest.approx(math.sqrt(cov[0, 0]))
    assert fit.a_stderr == pytest.approx(fit.a * math.sqrt(cov[1, 1]))
    assert fit.predict(x) == pytest.approx(np.exp(np.polyval([slope, intercept], np.log(x))))


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.1, 1e3), b=st.floats(0.01, 1.5))
def test_noise_free_power_laws_are_recovered(a, b):
    x = np.geomspace(1, 1e6, 7)
    fit = fit_power_law(x, a * x**-b)
    assert fit.a == pytest.approx(a, rel=1e-6) and fit.b == pytest.approx(b, rel=1e-6)
    assert fit.b_stderr < 1e-6


def test_irreducible_term_recovered():
    n = np.geomspace(1e6, 1e11, 12)
    fit = fit_power_law(n, chinchilla_loss(n, 1e30), irreducible=True)
    assert (fit.a, fit.b, fit.c) == pytest.approx((406.4, 0.34, 1.69), rel=1e-4)
    rng = np.random.default_rng(1)
    noisy = chinchilla_loss(n, 1e30) * np.exp(rng.normal(0, 0.005, n.size))
    fit = fit_power_law(n, noisy, irreducible=True)
    assert abs(fit.c - 1.69) < 4 * fit.c_stderr and abs(fit.b - 0.34) < 4 * fit.b_stderr


def test_standard_errors_cover_the_truth():
    rng = np.random.default_rng(2)
    x = np.geomspace(1e3, 1e9, 8)
    hits = 0
    for _ in range(300):
        fit = fit_power_law(x, 5 * x**-0.2 * np.exp(rng.normal(0, 0.05, x.size)))
        hits += abs(fit.b - 0.2) < 1.96 * fit.b_stderr
    assert 0.88 < hits / 300 < 0.99  # t with 6 dof: 1.96 se covers ~90%


def test_bootstrap_is_seeded():
    x = np.geomspace(1e3, 1e9, 10)
    y = 5 * x**-0.2 * np.exp(np.random.default_rng(3).normal(0, 0.05, x.size))
    one = fit_power_law(x, y, n_bootstrap=100, seed=7)
    assert one == fit_power_law(x, y, n_bootstrap=100, seed=7)
    assert one[:3] == fit_power_law(x, y)[:3]  # same estimates, other error bars
    assert 0.3 < one.b_stderr / fit_power_law(x, y).b_stderr < 3
    floor = fit_power_law(x, y + 1.0, irreducible=True, n_bootstrap=20, seed=0)
    assert floor.c_stderr > 0


@pytest.mark.parametrize(
    "x, y, kwargs, message",
    [
        ([1, 2], [1, 2, 3], {}, "1-D arrays of equal length"),
        ([1, 1, 1], [1, 2, 3], {}, "at least 2 distinct x"),
        ([1, 2], [1, 2], dict(irreducible=True), "at least 3 distinct x"),
        ([1, -2, 3], [1, 2, 3], {}, "must be finite and > 0"),
        ([1, 2, 3], [1, 0, 3], {}, "must be finite and > 0"),
        ([1, 2, 3], [1, 2, 3], dict(n_bootstrap=-1), "n_bootstrap must be a non-negative"),
    ],
)
def test_fit_errors(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y, **kwargs)
