"""Tests for minigpt.lab.tiny: data windows, model shapes, wiring, parameter matching, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.activations import FeedForward
from minigpt.lab.tiny import (
    DeepMLP,
    ResidualBlock,
    TinyLM,
    char_vocab,
    char_windows,
    count_model_parameters,
    dead_unit_fraction,
    make_tiny_norm,
    mlp_gradient_norms,
    run_seeds,
    train_steps,
    weight_gradient_norms,
)
from minigpt.layernorm import LayerNorm, RMSNorm
from minigpt.train import evaluate

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 4


def test_char_windows_pairs_each_context_with_the_next_character() -> None:
    vocab = char_vocab(TEXT)
    x, y = char_windows(TEXT, 5, vocab)
    assert x.shape == (len(TEXT) - 5, 5) and y.shape == (len(TEXT) - 5,)
    assert "".join(vocab[i] for i in x[3]) == TEXT[3:8] and vocab[y[3]] == TEXT[8]


def test_char_windows_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char_windows("abcz", 2, vocab=["a", "b", "c"])
    with pytest.raises(ValueError, match="too short"):
        char_windows("ab", 2, vocab=["a", "b"])
    with pytest.raises(ValueError, match="at least 1"):
        char_windows("abc", 0, vocab=["a", "b", "c"])


@pytest.mark.parametrize("activation", ["gelu_tanh", "relu", "swiglu", "geglu"])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_tiny_lm_shapes(activation: str, norm_position: str) -> None:
    model = TinyLM(30, n_ctx=6, n_layer=3, activation=activation, norm_position=norm_position)
    logits = model(torch.randint(30, (5, 6)))
    assert logits.shape == (5, 30)
    assert [t.shape for t in model.ffn_inputs(torch.randint(30, (5, 6)))] == [(5, 48)] * 3
    with pytest.raises(ValueError, match="expected ids of shape"):
        model(torch.randint(30, (5, 7)))


def test_gelu_and_swiglu_models_are_parameter_matched() -> None:
    gelu = count_model_parameters(TinyLM(64, activation="gelu_tanh"))
    swiglu = count_model_parameters(TinyLM(64, activation="swiglu"))
    assert abs(gelu - swiglu) / gelu < 0.02
    assert 40_000 < gelu < 60_000


def test_parameter_count_by_hand() -> None:
    v, k, e, d, h = 10, 3, 4, 8, 32
    model = TinyLM(v, n_ctx=k, d_embed=e, d_model=d, n_layer=1, d_hidden=h)
    ffn = d * h + h + h * d + d
    want = v * e + (k * e * d + d) + ffn + 2 * d + 2 * d + (d * v + v)  # block LN + final LN
    assert count_model_parameters(model) == want
    no_bias = TinyLM(v, n_ctx=k, d_embed=e, d_model=d, n_layer=1, d_hidden=h, bias=False)
    assert count_model_parameters(no_bias) == v * e + k * e * d + 2 * d * h + d + d + d * v
    rms = TinyLM(v, n_ctx=k, d_embed=e, d_model=d, n_layer=1, d_hidden=h, norm="rmsnorm")
    assert count_model_parameters(rms) == want - 2 * d  # RMSNorm has no bias


def test_pre_ln_block_adds_ffn_of_normalized_input() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(8, 16, norm_position="pre")
    x = 3.0 + 5.0 * torch.randn(4, 8)
    want = x + block.ffn(F.layer_norm(x, (8,), block.norm.weight, block.norm.bias))
    torch.testing.assert_close(block(x), want)


def test_post_ln_block_normalizes_the_sum() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(8, 16, norm_position="post")
    x = 3.0 + 5.0 * torch.randn(4, 8)
    out = block(x)
    torch.testing.assert_close(out, F.layer_norm(x + block.ffn(x), (8,)))
    torch.testing.assert_close(out.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)


def test_final_norm_only_for_pre_ln() -> None:
    assert isinstance(TinyLM(10, norm_position="pre").final_norm, LayerNorm)
    assert isinstance(TinyLM(10, norm_position="post").final_norm, torch.nn.Identity)
    assert isinstance(TinyLM(10, norm="rmsnorm").final_norm, RMSNorm)
    assert isinstance(TinyLM(10, norm="none").final_norm, torch.nn.Identity)


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="norm_position"):
        ResidualBlock(8, 16, norm_position="middle")
    with pytest.raises(ValueError, match="unknown norm"):
        make_tiny_norm("batchnorm", 8)
    with pytest.raises(ValueError, match="unknown activation"):
        DeepMLP(8, 2, activation="swiglu")
    with pytest.raises(ValueError, match="positive"):
        TinyLM(0)


def test_deep_mlp_init_and_residual() -> None:
    torch.manual_seed(0)
    mlp = DeepMLP(256, 2, "relu", gain=2.0)
    assert abs(float(mlp.layers[0].weight.detach().std()) - 2.0 / 16.0) < 0.005
    assert float(mlp.layers[0].bias.detach().abs().max()) == 0.0
    x = torch.randn(3, 256)
    one = DeepMLP(256, 1, "tanh", residual=True)
    torch.testing.assert_close(one(x), x + torch.tanh(one.layers[0](x)))


def test_weight_gradient_norms_match_autograd() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    norms = weight_gradient_norms(layer(x).pow(2).sum(), [layer.weight, layer.bias])
    layer(x).pow(2).sum().backward()
    assert norms == pytest.approx([float(layer.weight.grad.norm()), float(layer.bias.grad.norm())])


def test_sigmoid_gradients_vanish_and_residuals_prevent_it() -> None:
    plain = mlp_gradient_norms("sigmoid", depth=12)
    assert plain[0] < 1e-4 * plain[-1]
    residual = mlp_gradient_norms("sigmoid", depth=12, residual=True)
    assert residual[0] > 0.1 * residual[-1]
    assert mlp_gradient_norms("tanh", 6, seed=3) == mlp_gradient_norms("tanh", 6, seed=3)


def test_dead_unit_fraction() -> None:
    ffn = FeedForward(4, 6, "relu")
    with torch.no_grad():
        ffn.w1.weight.zero_()
        ffn.w1.bias.copy_(torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]))
    assert dead_unit_fraction(ffn, torch.randn(10, 4)) == 0.5


def _data() -> tuple[torch.Tensor, torch.Tensor, int]:
    vocab = char_vocab(TEXT)
    x, y = char_windows(TEXT, 4, vocab)
    return x, y, len(vocab)


def test_training_is_deterministic_and_lowers_the_loss() -> None:
    x, y, v = _data()

    def run() -> list[float]:
        torch.manual_seed(1)
        model = TinyLM(v, n_ctx=4, d_model=16, n_layer=1)
        return train_steps(model, x, y, steps=60, batch_size=32, lr=1e-2, seed=1)

    first, second = run(), run()
    assert first == second
    assert sum(first[-10:]) / 10 < first[0] - 0.5


def test_divergence_is_reported_as_nan() -> None:
    x, y, v = _data()
    torch.manual_seed(0)
    model = TinyLM(v, n_ctx=4, d_model=16, n_layer=1)
    with torch.no_grad():
        model.head.weight.fill_(math.inf)
    losses = train_steps(model, x, y, steps=5, batch_size=8)
    assert len(losses) == 5 and all(math.isnan(v) for v in losses)


def test_run_seeds_and_evaluate() -> None:
    x, y, v = _data()
    runs = run_seeds(
        lambda: TinyLM(v, n_ctx=4, d_model=16, n_layer=1), (x, y), (x, y), [0, 1], steps=5
    )
    assert [r.seed for r in runs] == [0, 1] and runs[0].losses != runs[1].losses
    torch.manual_seed(0)
    model = TinyLM(v, n_ctx=4, d_model=16, n_layer=1)
    with torch.no_grad():
        want = float(F.cross_entropy(model(x), y))
    assert evaluate(model, x, y, batch_size=7) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# TinyTransformer (chapter 6)


def test_tiny_transformer_attention_maps_are_causal_distributions() -> None:
    from minigpt.lab.tiny import TinyTransformer

    torch.manual_seed(0)
    for positions in ("learned", "sinusoidal", "rope", "alibi", "none"):
        model = TinyTransformer(11, n_ctx=12, d_model=16, n_heads=2, n_layer=2,
                                positions=positions, d_hidden=32 if positions == "rope" else 0)
        idx = torch.randint(11, (2, 9))
        assert model(idx).shape == (2, 9, 11)
        maps = model.attention_maps(idx)
        assert maps.shape == (2, 2, 2, 9, 9)
        assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 9))
        assert (maps.triu(diagonal=1) == 0).all()


def test_tiny_transformer_maps_reproduce_the_attention_output() -> None:
    from einops import rearrange

    from minigpt.lab.tiny import TinyTransformer

    torch.manual_seed(1)
    model = TinyTransformer(7, n_ctx=8, d_model=16, n_heads=4, n_layer=1, windows=[3])
    idx = torch.randint(7, (2, 8))
    block = model.blocks[0]
    x = model._input(idx)
    weights = block.attention_weights(x)
    assert (weights[..., 5, :3] == 0).all()  # band of 3: position 5 sees 3, 4, 5 only
    _, _, v = block.attn.qkv(block.norm1(x))
    want = block.attn.c_proj(rearrange(weights @ v, "b h t d -> b t (h d)"))
    assert torch.allclose(block.attn(block.norm1(x)), want, atol=1e-6)


def test_tiny_transformer_learned_positions_stop_at_max_len() -> None:
    from minigpt.lab.tiny import TinyTransformer

    model = TinyTransformer(5, n_ctx=4, d_model=8, n_heads=2, n_layer=1)
    with pytest.raises(ValueError, match="do not fit in the position table"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="allowed"):
        TinyTransformer(5, positions="wrong")


def test_sequence_tasks_and_training_learn_the_copy() -> None:
    from functools import partial

    from minigpt.lab.tiny import (
        TinyTransformer,
        lag_batch,
        repeat_batch,
        sequence_accuracy,
        train_sequence_steps,
    )

    gen = torch.Generator().manual_seed(0)
    x, y = repeat_batch(3, 4, 10, gen)
    assert (x[:, :4] == x[:, 4:]).all() and (y[:, 3:7] == x[:, 4:]).all()
    assert (y[:, :3] == -100).all()
    x, y = lag_batch(2, 6, 10, 2, gen)
    assert (y[:, 2:] == x[:, :-2]).all() and (y[:, :2] == -100).all()
    with pytest.raises(ValueError, match="lag"):
        lag_batch(2, 6, 10, 6, gen)
    torch.manual_seed(0)
    model = TinyTransformer(8, n_ctx=16, d_model=32, n_heads=2, n_layer=1)
    losses = train_sequence_steps(model, partial(lag_batch, 32, 16, 8, 2), steps=150, lr=3e-3)
    assert losses[-1] < 0.2 * losses[0]
    assert sequence_accuracy(model, *lag_batch(64, 16, 8, 2, gen)) > 0.9
