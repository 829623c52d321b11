"""Tests for minigpt.corpus.scoring (GPT-3's multiple-choice rules, section 2.4).

``choice_logprobs`` must agree with scoring the whole text in one forward pass (the sum of
the log-softmax of the completion's tokens), and the three rules must rank as defined.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigpt.config import GPTConfig
from minigpt.corpus.scoring import NEWS_DETECTION, SCORECARD, choice_logprobs, choice_scores
from minigpt.model import GPT


def test_choice_logprobs_equal_a_direct_forward_pass():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_heads=2, vocab_size=64, n_ctx=32)).eval()

    def encode(text: str) -> list[int]:
        return [ord(c) % 64 for c in text]

    context, choices = "ROMEO: O", [" she", " doth teach"]
    logprobs, lengths = choice_logprobs(model, encode, context, choices)
    assert lengths.tolist() == [4, 11]
    for choice, got in zip(choices, logprobs, strict=True):
        ids = torch.tensor(encode(context + choice))
        with torch.no_grad():
            logits = model(ids[None, :-1])[0][0]
        logp = F.log_softmax(logits.double(), -1)[torch.arange(len(ids) - 1), ids[1:]]
        assert got == pytest.approx(float(logp[len(context) - 1:].sum()), abs=1e-6)


def test_rules_can_disagree():
    logprobs, lengths = np.array([-4.0, -6.0]), np.array([1, 4])
    assert np.argmax(choice_scores(logprobs, lengths, "sum")) == 0
    assert np.argmax(choice_scores(logprobs, lengths, "per_token")) == 1
    unconditional = np.array([-3.0, -9.0])
    assert np.argmax(choice_scores(logprobs, lengths, "unconditional", unconditional)) == 1


def test_scorecard_cites_a_table_for_every_number():
    for result in SCORECARD:
        assert result.source.startswith("Table 3.")
        assert 0 <= result.zero_shot <= 100 and 0 <= result.few_shot <= 100
    assert NEWS_DETECTION["GPT-3 175B, ~200 words"] == (52.0, "Table 3.11")
    assert NEWS_DETECTION["GPT-3 Small (125M), ~200 words"] == (76.0, "Table 3.11")


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown rule 'mean'; allowed: sum, per_token"):
        choice_scores([-1.0], [1], "mean")
    with pytest.raises(ValueError, match="answer context"):
        choice_scores([-1.0], [1], "unconditional")
    with pytest.raises(ValueError, match="at least one token"):
        choice_scores([-1.0], [0], "per_token")
