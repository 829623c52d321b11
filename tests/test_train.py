"""minigpt.train: packing, batching, the GPT-3 recipe, and resume == uninterrupted."""

from __future__ import annotations

import pytest
import torch

from minigpt.config import GPTConfig, get_config
from minigpt.model import GPT
from minigpt.train import (
    TokenBatcher,
    TrainConfig,
    Trainer,
    load_checkpoint,
    pack_documents,
    plot_metrics,
    sequence_nll,
)

CONFIG = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=64, n_ctx=16, dropout=0.1)


def _stream(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Documents that count upwards (mod 63) from a random start: learnable, not random."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 60, (n // 30,), generator=g)
    starts = torch.randint(0, 63, (n // 30,), generator=g)
    docs = [(torch.arange(int(k)) + int(s)) % 63 + 1 for k, s in zip(lengths, starts, strict=True)]
    return pack_documents(docs, eot_id=0)


def _train_config(**kw) -> TrainConfig:
    base = dict(max_steps=6, batch_size=8, micro_batch_size=2, lr=3e-3, warmup_tokens=256,
                batch_ramp_tokens=400, start_batch_size=4, eval_interval=3, eval_batches=2,
                seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_pack_documents_separates_with_eot():
    packed = pack_documents([torch.tensor([3, 4]), [5], []], eot_id=9)
    assert packed.tolist() == [3, 4, 9, 5, 9, 9]
    with pytest.raises(ValueError, match="eot_id"):
        pack_documents([[1]], eot_id=-1)


def test_batcher_covers_every_window_once_per_epoch():
    b = TokenBatcher(torch.arange(41), seq_len=4, seed=3)
    starts = [int(x[0, 0]) for x, _ in (b.next_batch(1) for _ in range(10))]
    assert sorted(starts) == list(range(0, 40, 4))
    x, y = b.next_batch(3)
    assert x.shape == (3, 4) and torch.equal(x[:, 1:], y[:, :-1])
    assert b.state_dict()["epoch"] == 1
    with pytest.raises(ValueError, match="too few"):
        TokenBatcher(torch.arange(4), seq_len=4)


def test_batcher_state_round_trip():
    a = TokenBatcher(torch.arange(200), seq_len=5, seed=2)
    a.next_batch(7)
    state = a.state_dict()
    expected = a.next_batch(50)
    b = TokenBatcher(torch.arange(200), seq_len=5, seed=2)
    b.load_state_dict(state)
    assert all(torch.equal(u, v) for u, v in zip(b.next_batch(50), expected, strict=True))


def test_schedules_follow_gpt3_recipe():
    torch.manual_seed(0)
    trainer = Trainer(GPT(CONFIG), _stream(), _train_config(max_steps=10))
    assert trainer.lr_at(0) == 0.0
    assert trainer.lr_at(128) == pytest.approx(1.5e-3)  # half-way through the warmup
    assert trainer.lr_at(256) == pytest.approx(3e-3)
    assert trainer.lr_at(10 * 8 * 16) == pytest.approx(3e-4)  # 10 % floor at the end
    assert trainer.batch_size_at(0) == 4 and trainer.batch_size_at(400) == 8
    sizes = [trainer.batch_size_at(t) for t in range(0, 500, 50)]
    assert sizes == sorted(sizes) and all(s % 2 == 0 for s in sizes)


def test_training_reduces_loss_and_records_metrics():
    torch.manual_seed(0)
    config = CONFIG.replace(dropout=0.0)
    trainer = Trainer(GPT(config), _stream(), _train_config(max_steps=30, eval_interval=10),
                      val_tokens=_stream(600, seed=1))
    history = trainer.train()
    assert len(history) == 30
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    assert {"step", "tokens", "loss", "lr", "grad_norm", "batch_size", "tokens_per_s"} <= set(
        history[0])
    assert [r["step"] for r in history if "val_loss" in r] == [10, 20, 30]
    fig = plot_metrics(history)
    assert len(fig.axes) == 4
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_clipping_bounds_the_update():
    torch.manual_seed(0)
    trainer = Trainer(GPT(CONFIG), _stream(), _train_config(grad_clip=1e-3, max_steps=1,
                                                          warmup_tokens=0))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.train_step()
    assert record["grad_norm"] > 1e-3
    assert all(p.grad is None for p in trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(),
                                                      strict=True))


def _comparable(history):
    return [(r["step"], r["tokens"], r["loss"], r["lr"], r["grad_norm"], r.get("val_loss"))
            for r in history]


def test_resume_equals_uninterrupted(tmp_path):
    stream, val = _stream(), _stream(600, seed=1)
    torch.manual_seed(0)
    straight = Trainer(GPT(CONFIG), stream, _train_config(), val_tokens=val)
    expected = _comparable(straight.train())

    torch.manual_seed(0)
    first = Trainer(GPT(CONFIG), stream, _train_config(), val_tokens=val)
    first.train(steps=4)  # stop in the middle of the batch ramp
    path = tmp_path / "ckpt.pt"
    first.save_checkpoint(path)
    torch.manual_seed(123)  # the RNG state must come from the checkpoint, not from here
    resumed = Trainer.from_checkpoint(path, stream, val_tokens=val)
    assert resumed.step == 4
    got = _comparable(resumed.train())
    assert got == expected  # bit for bit
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(GPT(CONFIG), _stream(), _train_config(max_steps=2, checkpoint_interval=1,
                                                             checkpoint_path=str(tmp_path / "c")))
    trainer.train()
    state = load_checkpoint(tmp_path / "c")
    assert state["step"] == 2 and state["data"]["cursor"] > 0
    with pytest.raises(ValueError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        TrainConfig(batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="start_batch_size"):
        TrainConfig(batch_size=8, micro_batch_size=2, start_batch_size=3)
    with pytest.raises(ValueError, match="exceeds the model's context of 16"):
        Trainer(GPT(CONFIG), _stream(), TrainConfig(seq_len=32))
    with pytest.raises(ValueError, match="checkpoint_path"):
        TrainConfig(checkpoint_interval=5)


def test_sequence_nll_matches_cross_entropy_of_each_window():
    torch.manual_seed(0)
    model = GPT(CONFIG.replace(dropout=0.0))
    tokens = _stream(100)
    total, count = sequence_nll(model, tokens, window=16)
    assert count == tokens.numel() - 1
    want = 0.0
    for start in range(0, tokens.numel() - 1, 16):
        x, y = tokens[start : start + 16], tokens[start + 1 : start + 17]
        with torch.no_grad():
            logits = model(x[: y.numel()][None])[0][0]
        want += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    assert total == pytest.approx(want, rel=1e-5)
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="window"):
        sequence_nll(model, tokens, window=0)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    # a tiny training set that the model memorizes, so the validation loss turns up
    train, val = _stream(200), _stream(600, seed=1)
    torch.manual_seed(0)
    cfg = _train_config(max_steps=200, eval_interval=5, early_stopping_patience=2,
                        batch_ramp_tokens=0, warmup_tokens=0, lr=1e-2)
    trainer = Trainer(GPT(CONFIG.replace(dropout=0.0)), train, cfg, val_tokens=val)
    history = trainer.train()
    evals = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    best_step, best = min(evals, key=lambda e: e[1])
    assert trainer.stopped_early and len(history) < 200
    assert (trainer.best_step, trainer.best_val_loss) == (best_step, best)
    assert [s for s, _ in evals][-1] == best_step + 2 * 5  # two evaluations without a new best
    trainer.model.load_state_dict(trainer.best_model_state)
    assert trainer.evaluate() == pytest.approx(best, rel=1e-6)
    path = tmp_path / "ckpt.pt"
    trainer.save_checkpoint(path)
    resumed = Trainer.from_checkpoint(path, train, val_tokens=val)
    assert (resumed.best_step, resumed.stopped_early) == (best_step, True)
    assert resumed.train() == history  # a stopped run stays stopped
    with pytest.raises(ValueError, match="eval_interval"):
        TrainConfig(early_stopping_patience=3)


def _manual_step(model, optimizer, x, y, grad_clip, scheduler):
    model.train()
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def test_train_step_equals_a_manual_step():
    from minigpt.model import configure_optimizer
    from minigpt.train import train_step

    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = GPT(CONFIG)
        opt = configure_optimizer(model, lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / 3)
        models.append((model, opt, sched))
    batcher = TokenBatcher(_stream(), CONFIG.n_ctx, seed=0)
    for step in range(3):
        x, y = batcher.next_batch(4)
        torch.manual_seed(step)  # the same dropout masks for both
        got = train_step(*models[0][:2], x, y, grad_clip=0.5, scheduler=models[0][2])
        torch.manual_seed(step)
        want = _manual_step(*models[1][:2], x, y, 0.5, models[1][2])
        assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(models[0][0].parameters(), models[1][0].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert models[0][1].param_groups[0]["lr"] == models[1][1].param_groups[0]["lr"]
    with pytest.raises(ValueError, match="grad_clip"):
        train_step(*models[0][:2], x, y, grad_clip=0)


def test_train_step_is_the_trainers_update_with_one_micro_batch():
    from minigpt.model import optimizer_groups
    from minigpt.train import train_step

    config = _train_config(max_steps=3, micro_batch_size=None, batch_ramp_tokens=0,
                           start_batch_size=None, warmup_tokens=0, eval_interval=0)
    torch.manual_seed(0)
    trainer = Trainer(GPT(CONFIG), _stream(), config)
    torch.manual_seed(0)
    model = GPT(CONFIG)
    model.load_state_dict(trainer.model.state_dict())
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.lr,
                                  betas=config.betas, eps=config.eps)
    batcher = TokenBatcher(_stream(), CONFIG.n_ctx, seed=config.seed)
    for _ in range(3):
        lr = trainer.lr_at(trainer.tokens_seen)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(trainer.step)
        record = trainer.train_step()
        x, y = batcher.next_batch(config.batch_size)
        torch.manual_seed(trainer.step - 1)
        loss = train_step(model, optimizer, x, y, grad_clip=config.grad_clip)
        assert loss == pytest.approx(record["loss"], rel=1e-6)
    for a, b in zip(trainer.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_evaluate_restores_the_mode_and_rejects_mismatched_data() -> None:
    from minigpt.train import evaluate

    torch.manual_seed(0)
    model = GPT(get_config("tiny")).train()
    x = torch.randint(0, model.config.vocab_size, (3, 8))
    y = torch.randint(0, model.config.vocab_size, (3, 8))
    want = float(model.eval()(x, y)[1])
    model.train()
    assert evaluate(model, x, y, batch_size=2) == pytest.approx(want, rel=1e-6)
    assert model.training  # put back in the mode it was in
    with pytest.raises(ValueError, match="same number"):
        evaluate(model, x, y[:2])
