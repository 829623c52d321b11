"""minigpt.finetune: the answer-only loss equals cross-entropy over the answer tokens alone,
freezing leaves frozen weights untouched, and a short fine-tune lowers the answer loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.config import GPTConfig
from minigpt.finetune import (
    IGNORE_INDEX,
    ExampleBatcher,
    answer_loss,
    answer_loss_mask,
    answer_probability,
    confident_mistakes,
    distinct_examples,
    encode_examples,
    finetune,
    freeze,
    sft_batch,
    sft_examples,
    trainable_parameters,
    unfreeze,
)
from minigpt.lab.icl import CharTokenizer
from minigpt.model import GPT
from minigpt.tasks import ANTONYMS, Prompt
from minigpt.train import TrainConfig

TOK = CharTokenizer()


def _model(seed: int = 0, n_ctx: int = 64) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, d_model=32, n_heads=2, vocab_size=TOK.vocab_size,
                         n_ctx=n_ctx, positions="rope"))


# ---------------------------------------------------------------------------------------------
# The mask


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8)), min_size=1, max_size=5),
       st.integers(0, 4))
def test_answer_loss_mask_matches_a_loop(pairs, extra):
    prompt_lengths = torch.tensor([p for p, _ in pairs])
    lengths = torch.tensor([p + a for p, a in pairs])
    seq_len = int(lengths.max()) - 1 + extra
    mask = answer_loss_mask(prompt_lengths, lengths, seq_len)
    for b, (p, a) in enumerate(pairs):
        for t in range(seq_len):
            assert bool(mask[b, t]) == (p <= t + 1 < p + a)
        assert int(mask[b].sum()) == a  # one target per answer token


def test_masked_loss_is_cross_entropy_over_the_answer_tokens_only():
    rows, prompt_lengths, lengths = encode_examples(
        [Prompt("hot =>", "cold"), Prompt("Give the opposite of each word:\nup =>", "down")],
        TOK)
    model = _model()
    x, y = sft_batch(rows, prompt_lengths, lengths)
    with torch.no_grad():
        logits, loss = model(x, y)
    picked_logits, picked_targets = [], []
    for b in range(len(rows)):
        for t in range(int(prompt_lengths[b]) - 1, int(lengths[b]) - 1):
            picked_logits.append(logits[b, t])
            picked_targets.append(rows[b, t + 1])
    reference = F.cross_entropy(torch.stack(picked_logits), torch.stack(picked_targets))
    torch.testing.assert_close(loss, reference)
    assert len(picked_targets) == len(" cold") + 1 + len(" down") + 1  # answers and EOTs
    assert answer_loss(model, [Prompt("hot =>", "cold"),
                               Prompt("Give the opposite of each word:\nup =>", "down")],
                       TOK) == pytest.approx(loss.item(), rel=1e-5)


def test_encode_examples_layout():
    rows, p, n = encode_examples([Prompt("ab =>", "c"), Prompt("a =>", "cd")], TOK)
    assert rows[0].tolist() == [0, *TOK.encode("ab => c"), 0]
    assert rows[1].tolist() == [0, *TOK.encode("a => cd"), 0, 0][: rows.shape[1]]
    assert p.tolist() == [6, 5] and n.tolist() == [9, 9]


def test_mask_errors():
    with pytest.raises(ValueError, match="1 <= prompt_length < length"):
        answer_loss_mask(torch.tensor([3]), torch.tensor([3]), seq_len=5)
    with pytest.raises(ValueError, match="does not fit seq_len"):
        answer_loss_mask(torch.tensor([2]), torch.tensor([9]), seq_len=5)
    with pytest.raises(ValueError, match="same length"):
        answer_loss_mask(torch.tensor([2, 3]), torch.tensor([4]), seq_len=5)
    with pytest.raises(ValueError, match="at least one"):
        encode_examples([], TOK)


# ---------------------------------------------------------------------------------------------
# Freezing


def test_freeze_and_unfreeze():
    model = _model()
    kept = freeze(model, ["transformer.h.0.mlp.*"])
    assert kept and all(name.startswith("transformer.h.0.mlp.") for name in kept)
    assert trainable_parameters(model) == sum(
        p.numel() for p in model.transformer.h[0].mlp.parameters())
    unfreeze(model)
    assert trainable_parameters(model) == model.num_parameters()


def test_tied_matrix_follows_either_name():
    model = _model()
    assert freeze(model, ["lm_head.weight"]) == ["transformer.wte.weight"]
    assert model.lm_head.weight.requires_grad


def test_freeze_errors():
    model = _model()
    with pytest.raises(ValueError, match="matches no parameter"):
        freeze(model, ["transformer.h.7.*"])
    with pytest.raises(ValueError, match="sequence of patterns"):
        freeze(model, "transformer.h.0.*")


def test_finetune_lowers_answer_loss_and_leaves_frozen_weights_alone():
    examples = [Prompt(f"{w} =>", a) for w, a in list(ANTONYMS.items())[:12]]
    model = _model(seed=1)
    before = answer_loss(model, examples, TOK)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if ".h.0.attn." in k}
    history = finetune(model, examples, TOK,
                       TrainConfig(max_steps=30, batch_size=8, lr=3e-3, seed=0),
                       trainable=["transformer.h.0.mlp.*", "transformer.ln_f.*",
                                  "lm_head.weight"])
    after = answer_loss(model, examples, TOK)
    assert len(history) == 30 and after < 0.7 * before, (before, after)
    for k, v in frozen.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    assert trainable_parameters(model) == model.num_parameters()  # unfrozen afterwards


def test_finetune_errors():
    model = _model(n_ctx=8)
    with pytest.raises(ValueError, match="context"):
        finetune(model, [Prompt("a long prompt =>", "x")], TOK)
    with pytest.raises(ValueError, match="TrainConfig"):
        finetune(model, [Prompt("a =>", "b")], TOK, train={"lr": 1e-3})


def test_example_batcher_state_round_trip():
    rows, p, n = encode_examples([Prompt(f"{i} =>", str(i)) for i in range(5)], TOK)
    a = ExampleBatcher(rows, p, n, seed=3)
    a.next_batch(4)
    b = ExampleBatcher(rows, p, n, seed=3)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        (xa, ya), (xb, yb) = a.next_batch(3), b.next_batch(3)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert (ya != IGNORE_INDEX).any(dim=1).all()


# ---------------------------------------------------------------------------------------------
# Examples and mistakes


def test_sft_examples_split_train_and_test():
    train = sft_examples("antonyms", part="train")
    test = sft_examples("antonyms", part="test")
    assert len(train) + len(test) == len(ANTONYMS) == len(distinct_examples("antonyms"))
    assert not {e.text for e in train} & {e.text for e in test}
    assert all(e.text.startswith("Give the opposite of each word:\n") for e in train)
    assert all(ANTONYMS[e.text.split("\n")[1][:-3]] == e.answer for e in test)
    drawn = sft_examples("antonyms", n=5, seed=2, part="test")
    assert len(drawn) == 5 and {e.text for e in drawn} <= {e.text for e in test}


def test_confident_mistakes_sorts_wrong_answers_by_probability():
    model = _model()
    prompts = [Prompt("hot =>", "cold"), Prompt("up =>", "down"), Prompt("big =>", "small")]
    rows = confident_mistakes(model, TOK, prompts, [" cold", " uuu", " sma\n"], top=5)
    assert [r["answer"] for r in rows] in (["down", "small"], ["small", "down"])
    assert rows[0]["p_prediction"] >= rows[1]["p_prediction"]
    assert all(0 <= r["p_answer"] <= 1 for r in rows)


def test_answer_probabilities_of_exact_answers_sum_to_at_most_one():
    # Every exact answer ends with EOT or a newline, so answers are disjoint events: the
    # probabilities of all one-character answers, plus that of any longer one, are <= 1.
    model = _model()
    letters = "abcdefghijklmnopqrstuvwxyz"
    total = sum(answer_probability(model, TOK, "hot =>", c) for c in letters)
    assert 0 < total < 1
    p_prefix = answer_probability(model, TOK, "hot =>", "co")
    assert answer_probability(model, TOK, "hot =>", "cold") < 1 - p_prefix
