"""Tests of minigpt's parallelism modules on 2 CPU processes: distributed (spawn),
tensor_parallel, fsdp, pipeline and parallel_layouts.

Every multi-process test goes through ``spawn`` (gloo on CPU), whose ``timeout`` stops the
processes and fails the test instead of hanging CI. Process start-up (importing PyTorch in two
fresh interpreters) costs seconds, so each module-scoped fixture runs many checks in one
``spawn`` with ``run_all``, and the tests then compare its results with the single-process
modules: outputs and gradients to rounding error.
"""

import time

import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigpt.attention import MultiHeadAttention
from minigpt.config import GPTConfig, count_parameters, gpt3_config
from minigpt.model import GPT, MLP, Block
from minigpt.parallel.fsdp import demo_batches, fsdp_train, single_process_train
from minigpt.parallel.launch import run_all, spawn
from minigpt.parallel.layouts import (
    GPT3_175B_LAYOUTS,
    Layout,
    communication_per_step,
    compare_layouts,
)
from minigpt.parallel.pipeline import (
    GPTStage,
    bubble_fraction,
    idle_fraction,
    peak_in_flight,
    pipeline_schedule,
    pipeline_train,
    schedule_grid,
    split_layers,
)
from minigpt.parallel.tensor import (
    ColumnParallelLinear,
    RowParallelLinear,
    TensorParallelAttention,
    TensorParallelMLP,
    copy_to_tensor_parallel,
    gather_tensor_parallel,
    reduce_from_tensor_parallel,
    shard_tensor,
    tensor_parallel,
    tensor_parallel_run,
    unshard_tensors,
)
from minigpt.scaling import memory_per_gpu

WORLD = 2
TIMEOUT = 120.0  # seconds; far above the few seconds these runs take on 2 busy cores
SMALL = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=64, n_ctx=16)
ATOL, RTOL = 1e-6, 1e-5

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")


def assert_close(actual, expected, what=""):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def _perturbed(module: nn.Module, seed: int) -> nn.Module:
    """``module`` with every parameter moved off its initial value (GPT zeroes its biases)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return module


def _tp_cases() -> dict[str, tuple]:
    """name -> (module, x, y, linear): the single-process modules and their inputs."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, SMALL.d_model)
    y = torch.randn(2, 5, SMALL.d_model)
    idx = torch.randint(0, SMALL.vocab_size, (2, 8))
    targets = torch.randint(0, SMALL.vocab_size, (2, 8))
    gqa = SMALL.replace(n_kv_heads=2, positions="rope", mlp="swiglu", d_ff=48, bias=False,
                        attention_pattern="alternating", local_window=3)
    return {
        "column": (nn.Linear(12, 10), torch.randn(3, 12), torch.randn(3, 10), "column"),
        "row": (nn.Linear(12, 10), torch.randn(3, 12), torch.randn(3, 10), "row"),
        "mlp": (MLP(SMALL), x, y, "column"),
        "mlp_swiglu": (MLP(gqa), x, y, "column"),
        "attention": (MultiHeadAttention(32, 4), x, y, "column"),
        "attention_gqa_rope": (MultiHeadAttention(32, 4, 2, positions="rope"), x, y, "column"),
        "block_local": (_perturbed(Block(gqa, 1), 1), x, y, "column"),
        "gpt": (_perturbed(GPT(SMALL), 2), idx, targets, "column"),
    }


@pytest.fixture(scope="module")
def tp_cases():
    return _tp_cases()


@pytest.fixture(scope="module")
def tp_results(tp_cases):
    """Every case run tensor-parallel on 2 gloo processes, in one spawn."""
    calls = [(tensor_parallel_run, case) for case in tp_cases.values()]
    per_rank = spawn(run_all, WORLD, args=(calls,), timeout=TIMEOUT)
    return {name: [per_rank[r][i] for r in range(WORLD)] for i, name in enumerate(tp_cases)}


def _reference(module, x, y):
    """Output, loss, input gradient (None for a GPT) and parameter gradients, in one process."""
    module.zero_grad(set_to_none=True)
    if isinstance(module, GPT):
        output, loss = module(x, y)
    else:
        x = x.clone().requires_grad_(True)
        output = module(x)
        loss = (output * y).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    return output.detach(), loss.detach(), None if isinstance(module, GPT) else x.grad, grads


@pytest.mark.parametrize("name", list(_tp_cases()))
def test_tensor_parallel_matches_single_process(name, tp_cases, tp_results):
    module, x, y, _ = tp_cases[name]
    output, loss, grad_input, grads = _reference(module, x, y)
    for rank, result in enumerate(tp_results[name]):
        assert_close(result["output"], output, f"{name} rank {rank} output")
        assert_close(result["loss"], loss, f"{name} rank {rank} loss")
        if grad_input is not None:
            assert_close(result["grad_input"], grad_input, f"{name} rank {rank} input gradient")
        assert set(result["grads"]) == set(grads), f"{name}: parameter names differ"
        for param_name, grad in grads.items():
            assert_close(result["grads"][param_name], grad, f"{name} rank {rank} {param_name}")


def test_tensor_parallel_world_of_one_is_the_module_itself(tp_cases):
    """Without a process group the parallel modules with world_size=1 are the originals."""
    for name, (module, x, y, linear) in tp_cases.items():
        parallel = tensor_parallel(module, 0, 1, linear=linear)
        with torch.no_grad():
            if isinstance(module, GPT):
                assert_close(parallel(x, y)[0], module(x, y)[0], name)
            else:
                assert_close(parallel(x), module(x), name)
        assert set(gather_tensor_parallel(parallel)) == {n for n, _ in module.named_parameters()}


def test_shards_hold_one_rank_of_the_weights():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, 2)  # q: 4 heads of 8, k and v: 2 heads of 8
    w = attn.c_attn.weight
    shard = TensorParallelAttention.from_attention(attn, rank=1, world_size=2)
    q, k, v = w.split([32, 16, 16])
    # rank 1 holds query heads 2-3 and key/value head 1, fused again as q|k|v
    torch.testing.assert_close(shard.c_attn.weight, torch.cat([q[16:], k[8:], v[8:]]))
    assert (shard.n_heads, shard.n_kv_heads) == (2, 1)
    torch.testing.assert_close(shard.c_proj.weight, attn.c_proj.weight[:, 16:])
    torch.testing.assert_close(shard.c_proj.bias, attn.c_proj.bias)  # replicated, added once
    mlp = TensorParallelMLP.from_mlp(MLP(SMALL), rank=0, world_size=2)
    assert mlp.c_fc.weight.shape == (SMALL.d_ff // 2, SMALL.d_model)
    assert mlp.c_proj.weight.shape == (SMALL.d_model, SMALL.d_ff // 2)
    parallel_params = sum(p.numel() for p in mlp.parameters())
    assert parallel_params == (SMALL.d_model * SMALL.d_ff * 2 + SMALL.d_ff) // 2 + SMALL.d_model


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(1, 4),
       st.integers(0, 1), st.integers(1, 3))
def test_shard_then_unshard_is_the_identity(blocks, world_size, dim, other):
    splits = [b * world_size for b in blocks]
    shape = [sum(splits), other] if dim == 0 else [other, sum(splits)]
    t = torch.randn(shape)
    shards = [shard_tensor(t, dim, r, world_size, splits) for r in range(world_size)]
    assert all(s.shape[dim] == sum(splits) // world_size for s in shards)
    torch.testing.assert_close(unshard_tensors(shards, dim, splits), t)


def test_f_and_g_are_the_identity_in_one_process():
    x = torch.randn(3, requires_grad=True)
    (copy_to_tensor_parallel(x) * 2 + reduce_from_tensor_parallel(x)).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 3.0))


# ---------------------------------------------------------------------------------------------
# FSDP and pipeline training on 2 processes, compared with one process

TRAIN_STEPS, BATCH, SEQ = 3, 4, 8


@pytest.fixture(scope="module")
def training_results():
    batches = demo_batches(SMALL, TRAIN_STEPS, BATCH, SEQ)
    untied = SMALL.replace(tie_embeddings=False)
    calls = [(fsdp_train, (SMALL, batches)),
             (pipeline_train, (untied, batches, 2, "gpipe")),
             (pipeline_train, (untied, batches, 4, "1f1b"))]
    fsdp, gpipe, one_f_one_b = zip(*spawn(run_all, WORLD, args=(calls,), timeout=TIMEOUT),
                                   strict=True)
    return {"batches": batches, "fsdp": fsdp, "gpipe": gpipe, "1f1b": one_f_one_b}


def test_fsdp_losses_equal_single_process(training_results):
    torch.manual_seed(0)
    expected, _ = single_process_train(GPT(SMALL), training_results["batches"])
    for rank, result in enumerate(training_results["fsdp"]):
        assert result["losses"] == pytest.approx(expected, rel=1e-5), f"rank {rank}"
    assert expected[-1] < expected[0]  # it did train


def test_fsdp_memory_per_rank_matches_zero3_formula(training_results):
    n = count_parameters(SMALL)
    formula = memory_per_gpu(n, data_parallel=WORLD, zero_stage=3, precision="fp32")
    for result in training_results["fsdp"]:
        assert result["n_params"] == n
        # every parameter of SMALL has an even first dimension, so each rank holds exactly half
        assert result["param_bytes"] == formula.weights == 4 * n / WORLD
        assert result["grad_bytes"] == formula.gradients == 4 * n / WORLD
        assert result["optimizer_bytes"] == formula.optimizer == 8 * n / WORLD
        # Adam's step counters, one fp32 scalar per parameter tensor, are outside the formula
        n_tensors = len(list(GPT(SMALL).parameters()))
        assert result["step_bytes"] == 4 * n_tensors


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_equals_single_process(schedule, training_results):
    torch.manual_seed(0)
    model = GPT(SMALL.replace(tie_embeddings=False))
    expected_losses, expected_grads = single_process_train(model, training_results["batches"])
    first, last = training_results[schedule]
    assert first["losses"] is None
    assert last["losses"] == pytest.approx(expected_losses, rel=1e-5)
    assert not set(first["grads"]) & set(last["grads"]), "a parameter lives on both stages"
    grads = {**first["grads"], **last["grads"]}
    assert set(grads) == set(expected_grads)
    assert "transformer.wte.weight" in first["grads"] and "lm_head.weight" in last["grads"]
    for name, grad in expected_grads.items():
        assert_close(grads[name], grad, f"{schedule} {name}")


def test_pipeline_stage_refuses_tied_embeddings():
    with pytest.raises(ValueError, match="tie_embeddings=False"):
        GPTStage(GPT(SMALL), 0, 2)


def test_pipeline_stages_compose_to_the_model():
    torch.manual_seed(0)
    model = GPT(SMALL.replace(n_layer=3, tie_embeddings=False))
    idx = torch.randint(0, SMALL.vocab_size, (2, 8))
    x = idx
    for s in range(3):
        x = GPTStage(model, s, 3)(x)
    torch.testing.assert_close(x, model(idx)[0])


# ---------------------------------------------------------------------------------------------
# Schedules and the bubble


def test_bubble_fraction_values():
    assert bubble_fraction(1, 1) == 0.0
    assert bubble_fraction(4, 1) == 0.75
    assert bubble_fraction(8, 24) == pytest.approx(7 / 31)
    assert bubble_fraction(4, 1000) < 0.003


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 10), st.sampled_from(["gpipe", "1f1b"]),
       st.integers(1, 3))
def test_schedule_properties(p, m, kind, backward_time):
    ops = pipeline_schedule(p, m, kind, backward_time)
    by_key = {(op.kind, op.stage, op.microbatch): op for op in ops}
    assert len(by_key) == len(ops) == 2 * p * m  # every forward and backward exactly once
    for (op_kind, s, j), op in by_key.items():
        assert op.end - op.start == (1 if op_kind == "F" else backward_time)
        if op_kind == "F" and s + 1 < p:  # the forward reaches stage s + 1 after stage s
            assert op.end <= by_key[("F", s + 1, j)].start
        if op_kind == "B":
            assert by_key[("F", s, j)].end <= op.start  # backward after forward, same stage
            if s > 0:  # the gradient flows back to stage s - 1 after stage s
                assert op.end <= by_key[("B", s - 1, j)].start
    for s in range(p):  # a stage does one thing at a time
        mine = sorted((op for op in ops if op.stage == s), key=lambda op: op.start)
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:], strict=False))
    assert max(op.end for op in ops) == (m + p - 1) * (1 + backward_time)
    assert idle_fraction(ops) == pytest.approx(bubble_fraction(p, m))
    expected_peak = [m] * p if kind == "gpipe" else [min(p - s, m) for s in range(p)]
    assert peak_in_flight(ops) == expected_peak
    grid = schedule_grid(ops)
    assert len(grid) == p and sum(cell != "" for row in grid for cell in row) == sum(
        op.end - op.start for op in ops)


def test_split_layers():
    assert split_layers(96, 8) == [range(12 * i, 12 * (i + 1)) for i in range(8)]
    assert [len(r) for r in split_layers(7, 3)] in ([2, 3, 2], [3, 2, 2], [2, 2, 3])
    with pytest.raises(ValueError, match="at least one block"):
        split_layers(2, 3)


# ---------------------------------------------------------------------------------------------
# GPT-3 175B: communication and memory of parallel layouts


def test_communication_per_step_by_hand():
    cfg = gpt3_config("175B")
    comm = communication_per_step(cfg, data_parallel=24, tensor_parallel=8, pipeline_parallel=8)
    m, bsh = 1536 // 24, 2048 * 12288 * 2  # micro-batches per step, bytes of one activation
    assert comm.tensor == pytest.approx(4 * 12 * m * (2 * 7 / 8) * bsh)
    assert comm.pipeline == pytest.approx(2 * m * bsh)
    assert comm.data == pytest.approx(2 * 23 / 24 * count_parameters(cfg) / 64 * 2)
    single = communication_per_step(cfg)
    assert (single.tensor, single.pipeline, single.data) == (0, 0, 0)
    zero0 = communication_per_step(cfg, data_parallel=64)
    zero3 = communication_per_step(cfg, data_parallel=64, zero_stage=3)
    assert zero3.data == pytest.approx(1.5 * zero0.data)
    assert zero3.tensor == zero3.pipeline == 0


def test_compare_layouts_uses_the_scaling_formula():
    cfg = gpt3_config("175B")
    reports = compare_layouts(cfg)
    assert [r.layout for r in reports] == list(GPT3_175B_LAYOUTS)
    assert all(r.layout.n_gpus == 1536 for r in reports)
    for r in reports:
        d, t, p, z = r.layout
        assert r.memory == memory_per_gpu(cfg, data_parallel=d, tensor_parallel=t,
                                          pipeline_parallel=p, zero_stage=z, recompute="selective")
    by_layout = {r.layout: r for r in reports}
    megatron, megatron_zero1 = by_layout[Layout(24, 8, 8)], by_layout[Layout(24, 8, 8, 1)]
    assert megatron_zero1.memory.optimizer == pytest.approx(megatron.memory.optimizer / 24)
    assert megatron.communication == megatron_zero1.communication


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("make, match", [
    (lambda: ColumnParallelLinear(4, 6, rank=0, world_size=4), "out_features=6"),
    (lambda: ColumnParallelLinear(4, 8, rank=0, world_size=2, splits=(4, 2)), "add up to"),
    (lambda: ColumnParallelLinear(4, 8, rank=0, world_size=2, splits=(4, 4),
                                  gather_output=True), "gather_output"),
    (lambda: RowParallelLinear(6, 4, rank=0, world_size=4), "in_features=6"),
    (lambda: RowParallelLinear(8, 4, rank=2, world_size=2), r"rank must be .* \[0, 2\)"),
    (lambda: TensorParallelAttention(32, 4, rank=0, world_size=3), "n_heads=4"),
    (lambda: TensorParallelAttention(32, 4, 2, rank=0, world_size=4), "n_kv_heads=2"),
    (lambda: TensorParallelAttention(32, 4, positions="alibi", rank=0, world_size=2), "alibi"),
    (lambda: TensorParallelMLP(8, 30, rank=0, world_size=4), "d_ff=30"),
    (lambda: tensor_parallel(nn.ReLU(), 0, 2), "ReLU"),
    (lambda: tensor_parallel(nn.Linear(4, 4), 0, 2, linear="diagonal"), "'column' or 'row'"),
    (lambda: shard_tensor(torch.zeros(6), 0, 0, 4), "divisors of 6"),
    (lambda: pipeline_schedule(2, 2, "zigzag"), "gpipe"),
    (lambda: bubble_fraction(0, 4), "n_stages"),
    (lambda: communication_per_step(SMALL, data_parallel=5, global_batch=8), "divisible"),
    (lambda: communication_per_step(SMALL, pipeline_parallel=3), "n_layer=2"),
    (lambda: spawn(run_all, 0), "world_size"),
    (lambda: spawn(run_all, 2, backend="mpi"), "backend"),
])
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_parallel_layer_outside_its_process_group():
    layer = ColumnParallelLinear.from_linear(nn.Linear(4, 4), rank=0, world_size=2)
    with pytest.raises(RuntimeError, match="world_size=2.*spawn"):
        layer(torch.zeros(1, 4))


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has 2 GPUs")
def test_nccl_without_gpus_says_so():
    with pytest.raises(RuntimeError, match="needs 2 CUDA GPUs"):
        spawn(run_all, 2, args=([],), backend="nccl")


# ---------------------------------------------------------------------------------------------
# spawn itself: errors and timeouts end the run instead of hanging it


def _fail_on_rank_1(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ArithmeticError("rank 1 gives up")
    dist.barrier()  # rank 0 waits for rank 1, which never comes: spawn must stop it
    return rank


def _sleep(rank: int, world_size: int) -> None:
    time.sleep(600)


def test_spawn_reports_the_failing_rank():
    with pytest.raises(RuntimeError, match="(?s)rank 1 of _fail_on_rank_1.*rank 1 gives up"):
        spawn(_fail_on_rank_1, 2, timeout=TIMEOUT)


def test_spawn_with_fresh_interpreters():
    # the other tests use the forkserver default; "spawn" is the portable fallback (Windows)
    assert spawn(run_all, 1, args=([],), timeout=TIMEOUT, start_method="spawn") == [[]]


def test_spawn_times_out():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 2 s"):
        spawn(_sleep, 2, timeout=2)
    assert time.monotonic() - start < 2 + 15  # stopped, not waited for


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason="NCCL tensor parallelism needs 2 CUDA GPUs; gloo on CPU is tested "
                           "above")
def test_tensor_parallel_on_gpus_with_nccl(tp_cases):  # pragma: no cover - GPU machines only
    module, x, y, linear = tp_cases["gpt"]
    results = spawn(tensor_parallel_run, 2, args=(module, x, y, linear), backend="nccl")
    _, loss, _, grads = _reference(module, x, y)
    for result in results:
        torch.testing.assert_close(result["loss"], loss, atol=1e-4, rtol=1e-4)
        for name, grad in grads.items():
            torch.testing.assert_close(result["grads"][name], grad, atol=1e-4, rtol=1e-3)

