"""Graders for chapter 7 (the GPT-3 model and its training recipe).

Each grader checks known cases, then compares the student's function with minigpt's on random
inputs (small GPTs of several shapes), and raises AssertionError with a hint if they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from exercises.catalog import Exercise
from exercises.graders.common import expect_value_error
from minigpt.config import GPTConfig
from minigpt.model import GPT, block_forward, configure_optimizer
from minigpt.train import sequence_nll, train_step

_HERE = "exercises.graders.ch07_gpt3_model"

# The stub file's imports; the chapter's key and title are in exercises/catalog.py.
IMPORTS = (
    "import math",
    "from collections.abc import Iterable, Sequence",
    "from typing import Any",
    "",
    "import torch",
    "from torch import Tensor, nn",
    "",
    "from minigpt.attention import KVCache",
    "from minigpt.model import Block",
    "from minigpt.optim import clip_grad_norm_",
)

EXERCISES = (
    Exercise(
        "7.1",
        "pack_documents",
        "minigpt.train:pack_documents",
        f"{_HERE}:grade_pack_documents",
        "Join tokenized documents into one stream, each followed by <|endoftext|>.",
    ),
    Exercise(
        "7.2",
        "optimizer_groups",
        "minigpt.model:optimizer_groups",
        f"{_HERE}:grade_optimizer_groups",
        "Split a model's parameters into a weight-decayed group (matrices) and the rest.",
    ),
    Exercise(
        "7.3",
        "sequence_nll",
        "minigpt.train:sequence_nll",
        f"{_HERE}:grade_sequence_nll",
        "Score a held-out token stream in windows: total negative log-likelihood and count.",
    ),
    Exercise(
        "7.4",
        "block_forward",
        "minigpt.model:block_forward",
        f"{_HERE}:grade_block_forward",
        "The forward pass of a pre-LN transformer block: two sub-layers with residuals.",
    ),
    Exercise(
        "7.5",
        "train_step",
        "minigpt.train:train_step",
        f"{_HERE}:grade_train_step",
        "One training step: zero, forward, backward, clip, update, schedule.",
    ),
)


def grade_pack_documents(fn: Callable[..., Any]) -> None:
    got = fn([[5, 6, 7], [8]], eot_id=0)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.dtype == torch.long and got.ndim == 1, "return a 1-D long tensor"
    assert got.tolist() == [5, 6, 7, 0, 8, 0], (
        f"pack_documents([[5, 6, 7], [8]], eot_id=0) gave {got.tolist()}; every document, the "
        "last one too, is followed by eot_id"
    )
    got = fn([torch.tensor([3, 4]), [], torch.tensor([[1, 2]])], eot_id=9)
    assert got.tolist() == [3, 4, 9, 9, 1, 2, 9], (
        f"an empty document still gets its eot, and 2-D documents are flattened; got "
        f"{got.tolist()}"
    )
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        docs = [torch.randint(0, 50, (int(n),), generator=gen)
                for n in torch.randint(0, 9, (4,), generator=gen)]
        want = torch.cat([torch.cat([d, torch.tensor([50])]) for d in docs])
        assert torch.equal(fn(docs, eot_id=50), want), "random documents: wrong stream"
    expect_value_error(fn, "no documents at all", [], 0)
    expect_value_error(fn, "a negative token id in a document", [[1, -2]], 0)
    expect_value_error(fn, "a negative eot_id", [[1, 2]], -1)


_CONFIGS = [
    GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=40, n_ctx=8),
    GPTConfig(n_layer=2, d_model=24, n_heads=3, vocab_size=30, n_ctx=8, tie_embeddings=False),
    GPTConfig(n_layer=2, d_model=16, n_heads=4, vocab_size=20, n_ctx=8, bias=False,
              norm="rmsnorm", positions="rope"),
]


def grade_optimizer_groups(fn: Callable[..., Any]) -> None:
    for cfg in _CONFIGS:
        torch.manual_seed(0)
        model = GPT(cfg)
        groups = fn(model, 0.1)
        where = f"(n_layer={cfg.n_layer}, tie_embeddings={cfg.tie_embeddings}, bias={cfg.bias})"
        assert isinstance(groups, list) and len(groups) == 2, "return a list of two dicts"
        decay, no_decay = groups
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0, (
            "the first group has weight_decay=weight_decay, the second 0.0"
        )
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids)), (
            f"a parameter appears twice {where}: a tied matrix is one parameter"
        )
        assert set(ids) == {id(p) for p in model.parameters()}, (
            f"every parameter must be in exactly one group {where}"
        )
        for p in decay["params"]:
            assert p.ndim >= 2, f"a {p.ndim}-D tensor (bias or norm) is decayed {where}"
        for p in no_decay["params"]:
            assert p.ndim < 2, f"a {tuple(p.shape)} matrix is not decayed {where}"
        wte = model.transformer.wte.weight
        assert any(p is wte for p in decay["params"]), "the token embedding is a matrix: decay it"
        opt = torch.optim.AdamW(groups, lr=1e-3)  # the groups must be usable as they are
        assert len(opt.param_groups) == 2
    torch.manual_seed(0)
    groups = fn(GPT(_CONFIGS[0]), 0.3)
    assert groups[0]["weight_decay"] == 0.3, "use the weight_decay argument, not a constant"


def grade_sequence_nll(fn: Callable[..., Any]) -> None:
    def uniform(x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.zeros(1, x.shape[1], 8),)

    total, count = fn(uniform, torch.arange(10) % 8, 4)
    assert count == 9, f"10 tokens: 9 are predicted (all but the first), got {count}"
    assert math.isclose(total, 9 * math.log(8), rel_tol=1e-6), (
        f"a uniform model over 8 tokens scores log 8 per token: want {9 * math.log(8):.5f}, "
        f"got {total}; return the sum in nats, not the mean"
    )
    seen = []

    def recorder(x: torch.Tensor) -> tuple[torch.Tensor]:
        seen.append(x.shape[1])
        return (torch.zeros(1, x.shape[1], 8),)

    fn(recorder, torch.arange(11) % 8, 4)
    assert seen == [4, 4, 2], (
        f"11 tokens in windows of 4 should be fed as inputs of lengths [4, 4, 2], got {seen}"
    )
    for i, cfg in enumerate(_CONFIGS):
        torch.manual_seed(i)
        model = GPT(cfg)
        gen = torch.Generator().manual_seed(i)
        for n, window in [(30, 8), (17, 5), (9, 8), (2, 8)]:
            tokens = torch.randint(0, cfg.vocab_size, (n,), generator=gen)
            model.train(n % 2 == 0)
            mode = model.training
            got = fn(model, tokens, window)
            assert model.training == mode, "leave the model in the mode it was in"
            want = sequence_nll(model, tokens, window)
            assert got[1] == want[1], f"{n} tokens, window {window}: count {got[1]}, want {want[1]}"
            assert math.isclose(got[0], want[0], rel_tol=1e-5), (
                f"{n} tokens, window {window}: total {got[0]:.6f}, want {want[0]:.6f}"
            )
    expect_value_error(fn, "window=0", uniform, torch.arange(10) % 8, 0)


_BLOCK_CONFIGS = [
    GPTConfig(n_layer=2, d_model=16, n_heads=2, vocab_size=40, n_ctx=16),
    GPTConfig(n_layer=3, d_model=24, n_heads=3, vocab_size=30, n_ctx=16, bias=False,
              norm="rmsnorm", mlp="swiglu", d_ff=40, positions="rope"),
]


def _no_call(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("do not call block(x) or block.forward: write the pass from "
                         "block.ln_1, block.attn, block.ln_2 and block.mlp")


def _random_block(cfg: GPTConfig, seed: int) -> tuple[GPT, torch.nn.Module]:
    """A model in eval mode and its second block, with norms that are not the identity."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    block = model.transformer.h[1]
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * (0.5 if p.ndim == 1 else 0.05))
    block.forward = _no_call  # the student's function must not go through Block.forward
    return model, block


def grade_block_forward(fn: Callable[..., Any]) -> None:
    for i, cfg in enumerate(_BLOCK_CONFIGS):
        model, block = _random_block(cfg, i)
        where = (f"(d_model={cfg.d_model}, n_heads={cfg.n_heads}, norm={cfg.norm!r}, "
                 f"mlp={cfg.mlp!r})")
        x = torch.randn(2, 9, cfg.d_model, generator=torch.Generator().manual_seed(i))
        x_copy = x.clone()
        with torch.no_grad():
            got = fn(block, x)
            want = block_forward(block, x_copy.clone())
        assert isinstance(got, torch.Tensor) and got.shape == x.shape, (
            f"return a tensor of the input's shape {tuple(x.shape)}, got "
            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}"
        )
        assert torch.equal(x, x_copy), "do not modify x in place: x = x + ..., not x += ..."
        err = float((got - want).abs().max())
        assert err < 1e-5, (
            f"output differs from the reference by {err:.3g} {where}; the pre-LN block is "
            "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)): each norm reads what enters its "
            "sub-layer, each sub-layer's output is added to the stream, and the MLP reads the "
            "stream after the attention's addition"
        )
        caches = model.make_caches()
        with torch.no_grad():
            first = fn(block, x[:, :6], caches[1])
            last = fn(block, x[:, 6:], caches[1])
        assert len(caches[1]) == 9, (
            f"pass cache to block.attn(..., cache=cache): after feeding 6 then 3 positions the "
            f"cache should hold 9, it holds {len(caches[1])}"
        )
        err = float((torch.cat([first, last], 1) - want).abs().max())
        assert err < 1e-4, (
            f"feeding 6 positions, then 3 more with the cache, should equal one pass over 9; "
            f"it differs by {err:.3g} {where}"
        )


def _step_setup(cfg: GPTConfig, kind: str) -> tuple[GPT, torch.optim.Optimizer, Any]:
    """A model with stale gradients (from an earlier pass), left in eval mode, its optimizer
    and a learning-rate schedule that changes at every step."""
    torch.manual_seed(0)
    model = GPT(cfg)
    if kind == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    else:
        optimizer = configure_optimizer(model, lr=3e-3)
    factors = [1.0, 0.5, 0.25, 0.1]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factors[min(s, 3)])
    x = torch.arange(16).view(2, 8) % cfg.vocab_size
    _, loss = model(x, (x + 1) % cfg.vocab_size)
    loss.backward()  # stale gradients: a step must not add to them
    model.eval()
    return model, optimizer, scheduler


def grade_train_step(fn: Callable[..., Any]) -> None:
    cfg = GPTConfig(n_layer=2, d_model=16, n_heads=2, vocab_size=30, n_ctx=8, dropout=0.1)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, cfg.vocab_size, (4, 9), generator=gen) for _ in range(3)]
    for kind, clip in [("sgd", 0.05), ("adamw", 0.05), ("sgd", None)]:
        mine, ref = _step_setup(cfg, kind), _step_setup(cfg, kind)
        steps = batches if clip is not None else batches[:1]
        for n, batch in enumerate(steps, start=1):
            x, y = batch[:, :-1], batch[:, 1:]
            torch.manual_seed(100 + n)  # the same dropout masks for both
            got = fn(mine[0], mine[1], x, y, grad_clip=clip, scheduler=mine[2])
            torch.manual_seed(100 + n)
            want = train_step(ref[0], ref[1], x, y, grad_clip=clip, scheduler=ref[2])
            where = f"({kind}, grad_clip={clip}, step {n})"
            assert isinstance(got, float), (
                f"return the loss as a Python float (loss.item()), got {type(got).__name__}"
            )
            assert math.isclose(got, want, rel_tol=1e-5), (
                f"loss {got:.6f}, want {want:.6f} {where}: the loss of this batch, before the "
                "update, in training mode (model.train(): dropout is on)"
            )
            assert mine[0].training, "leave the model in training mode (call model.train())"
            lr, lr_want = mine[1].param_groups[0]["lr"], ref[1].param_groups[0]["lr"]
            assert math.isclose(lr, lr_want), (
                f"learning rate after the step {lr:.4g}, want {lr_want:.4g} {where}: call "
                "scheduler.step() once, after optimizer.step()"
            )
            err = max(float((a - b).detach().abs().max()) for a, b in
                      zip(mine[0].parameters(), ref[0].parameters(), strict=True))
            assert err < 1e-6, (
                f"the weights after the step differ from the reference's by {err:.3g} {where}. "
                "The model arrives with gradients from an earlier backward pass: zero them "
                "first (optimizer.zero_grad()); clip all gradients to grad_clip after "
                "backward and before optimizer.step() (and not at all with grad_clip=None); "
                "step the scheduler after the optimizer"
            )
    model, optimizer, _ = _step_setup(cfg, "sgd")
    x, y = batches[0][:, :-1], batches[0][:, 1:]
    expect_value_error(fn, "grad_clip=0", model, optimizer, x, y, grad_clip=0)
    expect_value_error(fn, "grad_clip=-1.0", model, optimizer, x, y, grad_clip=-1.0)


# Plausible wrong answers: CI checks that each grader rejects them.
def _pack_no_final_eot(documents, eot_id):  # noqa: ANN001, ANN202
    docs = [torch.as_tensor(d, dtype=torch.long).flatten() for d in documents]
    if not docs:
        raise ValueError("no documents")
    if eot_id < 0 or any(d.numel() and int(d.min()) < 0 for d in docs):
        raise ValueError("negative id")
    out = []
    for i, d in enumerate(docs):
        out += [d] + ([torch.tensor([eot_id])] if i < len(docs) - 1 else [])
    return torch.cat(out)


def _pack_eot_first(documents, eot_id):  # noqa: ANN001, ANN202
    docs = [torch.as_tensor(d, dtype=torch.long).flatten() for d in documents]
    if not docs:
        raise ValueError("no documents")
    if eot_id < 0 or any(d.numel() and int(d.min()) < 0 for d in docs):
        raise ValueError("negative id")
    return torch.cat([torch.cat([torch.tensor([eot_id]), d]) for d in docs])


def _pack_skips_empty(documents, eot_id):  # noqa: ANN001, ANN202
    docs = [torch.as_tensor(d, dtype=torch.long).flatten() for d in documents]
    if not docs:
        raise ValueError("no documents")
    if eot_id < 0 or any(d.numel() and int(d.min()) < 0 for d in docs):
        raise ValueError("negative id")
    return torch.cat([torch.cat([d, torch.tensor([eot_id])]) for d in docs if d.numel()])


def _pack_no_checks(documents, eot_id):  # noqa: ANN001, ANN202
    pieces = [torch.cat([torch.as_tensor(d, dtype=torch.long).flatten(), torch.tensor([eot_id])])
              for d in documents]
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)


def _groups_decay_all(model, weight_decay=0.1):  # noqa: ANN001, ANN202
    return [{"params": list(model.parameters()), "weight_decay": weight_decay},
            {"params": [], "weight_decay": 0.0}]


def _groups_by_name(model, weight_decay=0.1):  # noqa: ANN001, ANN202 - decays norm weights
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _groups_tied_twice(model, weight_decay=0.1):  # noqa: ANN001, ANN202
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def _groups_no_embeddings(model, weight_decay=0.1):  # noqa: ANN001, ANN202
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in emb]
    rest = [p for p in model.parameters() if p.ndim < 2 or id(p) in emb]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _nll_mean(model, tokens, window):  # noqa: ANN001, ANN202
    total, count = sequence_nll(model, tokens, window)
    return total / count, count


def _nll_drops_last_window(model, tokens, window):  # noqa: ANN001, ANN202
    n = (tokens.numel() - 1) // window * window
    if window < 1:
        raise ValueError("window")
    if n == 0:
        return sequence_nll(model, tokens, window)
    return sequence_nll(model, tokens[: n + 1], window)


def _nll_no_shift(model, tokens, window):  # noqa: ANN001, ANN202 - scores the inputs themselves
    if window < 1:
        raise ValueError("window")
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, tokens.numel() - 1, window):
            y = tokens[start + 1 : start + window + 1]
            x = tokens[start : start + y.numel()]
            logits = model(x[None].long())[0][0]
            total -= float(torch.log_softmax(logits.double(), -1).gather(1, x[:, None]).sum())
            count += y.numel()
    return total, count


def _nll_forgets_mode(model, tokens, window):  # noqa: ANN001, ANN202
    result = sequence_nll(model, tokens, window)
    if hasattr(model, "eval"):
        model.eval()
    return result


def _block_post_ln(block, x, cache=None):  # noqa: ANN001, ANN202 - the original Transformer
    x = block.ln_1(x + block.attn(x, cache=cache))
    return block.ln_2(x + block.mlp(x))


def _block_no_attn_residual(block, x, cache=None):  # noqa: ANN001, ANN202
    x = block.attn(block.ln_1(x), cache=cache)
    return x + block.mlp(block.ln_2(x))


def _block_no_mlp_residual(block, x, cache=None):  # noqa: ANN001, ANN202
    x = x + block.attn(block.ln_1(x), cache=cache)
    return block.mlp(block.ln_2(x))


def _block_parallel(block, x, cache=None):  # noqa: ANN001, ANN202 - GPT-J's layout, not GPT-3's
    return x + block.attn(block.ln_1(x), cache=cache) + block.mlp(block.ln_2(x))


def _block_one_norm(block, x, cache=None):  # noqa: ANN001, ANN202
    x = x + block.attn(block.ln_1(x), cache=cache)
    return x + block.mlp(block.ln_1(x))


def _block_no_cache(block, x, cache=None):  # noqa: ANN001, ANN202
    x = x + block.attn(block.ln_1(x))
    return x + block.mlp(block.ln_2(x))


def _block_in_place(block, x, cache=None):  # noqa: ANN001, ANN202
    x += block.attn(block.ln_1(x), cache=cache)
    return x + block.mlp(block.ln_2(x))


def _check_clip(grad_clip):  # noqa: ANN001, ANN202
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError("grad_clip")


def _step_clip_after_update(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def _step_no_zero_grad(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    model.train()
    _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def _step_no_clip(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def _step_schedule_first(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scheduler is not None:
        scheduler.step()
    optimizer.step()
    return loss.item()


def _step_eval_mode(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def _step_returns_tensor(model, optimizer, x, y, *, grad_clip=1.0, scheduler=None):  # noqa: ANN001, ANN202
    _check_clip(grad_clip)
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach()


MUTANTS: dict[str, list[Callable[..., Any]]] = {
    "pack_documents": [_pack_no_final_eot, _pack_eot_first, _pack_skips_empty, _pack_no_checks],
    "optimizer_groups": [_groups_decay_all, _groups_by_name, _groups_tied_twice,
                         _groups_no_embeddings],
    "sequence_nll": [_nll_mean, _nll_drops_last_window, _nll_no_shift, _nll_forgets_mode],
    "block_forward": [_block_post_ln, _block_no_attn_residual, _block_no_mlp_residual,
                      _block_parallel, _block_one_norm, _block_no_cache, _block_in_place],
    "train_step": [_step_clip_after_update, _step_no_zero_grad, _step_no_clip,
                   _step_schedule_first, _step_eval_mode, _step_returns_tensor],
}
