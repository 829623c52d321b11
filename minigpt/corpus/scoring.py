"""How GPT-3's results were measured, and a scorecard of what they were.

Brown et al. 2020 (section 2.4) score a multiple-choice task by the language model's
likelihood of each candidate completion after the context, and pick the most likely one, with
three ways to compare candidates of different lengths (:func:`choice_scores`):

- ``"sum"``: the total log-probability ``log P(completion | context)``. Every token costs
  probability, so short completions win too often.
- ``"per_token"``: that total divided by the number of tokens of the completion, the paper's
  rule "for most tasks".
- ``"unconditional"``: ``log P(completion | context) - log P(completion | answer_context)``
  with ``answer_context = "Answer: "`` or ``"A: "``: how much the context raises the
  completion's probability over its prior. The paper used it for ARC, OpenBookQA and RACE,
  where it helped on the development set.

Free-form answers are instead generated, with beam search of width 4 and length penalty 0.6
(chapter 8), and scored by F1, BLEU or exact match.

:data:`SCORECARD` holds headline numbers of the paper, zero-, one- and few-shot, each with its
table, and :data:`NEWS_DETECTION` the human detection study of Tables 3.11 and 3.12.

    >>> choice_scores([-6.0, -9.0], [2, 6], "sum").tolist()
    [-6.0, -9.0]
    >>> choice_scores([-6.0, -9.0], [2, 6], "per_token").tolist()
    [-3.0, -1.5]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from minigpt.generate import score_continuation

__all__ = [
    "RULES",
    "choice_scores",
    "choice_logprobs",
    "Result",
    "SCORECARD",
    "NEWS_DETECTION",
]

RULES = ("sum", "per_token", "unconditional")


def choice_scores(
    logprobs: Sequence[float] | np.ndarray,
    n_tokens: Sequence[int] | np.ndarray,
    rule: str = "per_token",
    unconditional: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """The score of each candidate under one of GPT-3's rules (:data:`RULES`): ``(C,)``.

    ``logprobs[c]`` is ``log P(completion_c | context)``, ``n_tokens[c]`` the completion's
    length in tokens, and for ``rule="unconditional"``, ``unconditional[c]`` is
    ``log P(completion_c | answer_context)``. The model's answer is the ``argmax``.

    >>> choice_scores([-6.0, -9.0], [2, 6], "unconditional", unconditional=[-5.0, -12.0])
    array([-1.,  3.])
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    n = np.asarray(n_tokens)
    if lp.ndim != 1 or lp.size == 0 or n.shape != lp.shape:
        raise ValueError(f"logprobs and n_tokens must be 1-D of one non-zero length, got "
                         f"{lp.shape} and {n.shape}")
    if rule == "sum":
        return lp
    if rule == "per_token":
        if (n < 1).any():
            raise ValueError("every completion needs at least one token for per-token scores")
        return lp / n
    if rule == "unconditional":
        if unconditional is None:
            raise ValueError("rule 'unconditional' needs the completions' log-probabilities "
                             "after the answer context ('Answer: ')")
        un = np.asarray(unconditional, dtype=np.float64)
        if un.shape != lp.shape:
            raise ValueError(f"unconditional must have shape {lp.shape}, got {un.shape}")
        return lp - un
    raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(RULES)}")


def choice_logprobs(
    model: torch.nn.Module,
    encode: Callable[[str], Sequence[int]],
    context: str,
    choices: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """``log P(choice | context)`` for each choice, and each choice's length in tokens.

    ``encode`` turns text into token ids (e.g. ``BPETokenizer.encode_ordinary``); the context
    and each choice are encoded separately and scored with
    :func:`minigpt.generate.score_continuation`. Returns two ``(C,)`` arrays.
    """
    if isinstance(choices, str) or len(choices) == 0:
        raise ValueError("choices must be a non-empty sequence of strings")
    prompt = list(encode(context))
    ids = [list(encode(choice)) for choice in choices]
    logprobs = np.array([score_continuation(model, prompt, c) for c in ids])
    return logprobs, np.array([len(c) for c in ids])


class Result(NamedTuple):
    """A headline number of GPT-3 175B: zero-, one- and few-shot, and where the paper has it."""

    task: str
    metric: str
    zero_shot: float
    one_shot: float
    few_shot: float
    source: str


SCORECARD = (
    Result("LAMBADA", "accuracy %", 76.2, 72.5, 86.4, "Table 3.2"),
    Result("HellaSwag", "accuracy %", 78.9, 78.1, 79.3, "Table 3.2"),
    Result("StoryCloze", "accuracy %", 83.2, 84.7, 87.7, "Table 3.2"),
    Result("NaturalQS (closed book)", "exact match %", 14.6, 23.0, 29.9, "Table 3.3"),
    Result("WebQS (closed book)", "exact match %", 14.4, 25.3, 41.5, "Table 3.3"),
    Result("TriviaQA (closed book)", "exact match %", 64.3, 68.0, 71.2, "Table 3.3"),
    Result("Winogrande", "accuracy %", 70.2, 73.2, 77.7, "Table 3.5"),
    Result("PIQA", "accuracy %", 81.0, 80.5, 82.8, "Table 3.6"),
    Result("2-digit addition", "accuracy %", 76.9, 99.6, 100.0, "Table 3.9"),
)

# Human accuracy at telling model-written news articles from real ones (50% is chance).
NEWS_DETECTION = {
    "control (deliberately bad model), ~200 words": (86.0, "Table 3.11"),
    "GPT-3 Small (125M), ~200 words": (76.0, "Table 3.11"),
    "GPT-3 175B, ~200 words": (52.0, "Table 3.11"),
    "control, ~500 words": (88.0, "Table 3.12"),
    "GPT-3 175B, ~500 words": (52.0, "Table 3.12"),
}
