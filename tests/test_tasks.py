"""Tests for minigpt.tasks: GPT-3-style few-shot prompts, seeded, and exact-match scoring.

The reference for the arithmetic format is GPT-3's released test data (openai/gpt-3,
``data/two_digit_subtraction.jsonl`` and ``five_digit_addition.jsonl``): a few of its records
are copied below and must be reproduced exactly by the Q/A style. Answers are checked against
Python's own integer arithmetic.
"""

from __future__ import annotations

import json
import operator
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tasks import (
    ANTONYMS,
    REVERSAL_WORDS,
    SYNONYMS,
    TASKS,
    Example,
    Task,
    arithmetic_task,
    get_task,
    make_prompt,
    make_prompts,
    normalize_prediction,
    score,
    word_task,
)

RELEASED = [  # openai/gpt-3 data/*.jsonl records
    '{"context": "\\n\\nQ: What is 17 minus 14?\\n\\nA:", "completion": " 3"}',
    '{"context": "\\n\\nQ: What is 33 minus 88?\\n\\nA:", "completion": " -55"}',
    '{"context": "\\n\\nQ: What is 132 plus 79778?\\n\\nA:", "completion": " 79910"}',
]
QA = re.compile(r"Q: What is (\d+) (plus|minus) (\d+)\?")
OPS = {"plus": operator.add, "minus": operator.sub, "+": operator.add, "-": operator.sub}


@pytest.mark.parametrize("record", RELEASED)
def test_qa_style_reproduces_released_gpt3_records(record):
    record = json.loads(record)
    a, op, b = QA.search(record["context"]).groups()
    task = arithmetic_task(5, op)
    example = Example(f"Q: What is {a} {op} {b}?", str(OPS[op](int(a), int(b))))
    assert "\n\n" + task.render(example, with_answer=False) == record["context"]
    assert task.render(example) == record["context"].lstrip("\n") + record["completion"]


@pytest.mark.parametrize("name", [n for n in TASKS if n.endswith("d")])
@pytest.mark.parametrize("style", ["qa", "compact"])
def test_arithmetic_answers_are_right(name, style):
    digits = int(name.split("_")[1][:-1])
    pattern = QA if style == "qa" else re.compile(r"(\d+) ([+-]) (\d+)")
    for prompt in make_prompts(name, 50, k_shots=3, seed=1, style=style):
        *shots, query = pattern.findall(prompt.text)
        assert len(shots) == 3
        a, op, b = query
        assert int(prompt.answer) == OPS[op](int(a), int(b))
        assert int(a) < 10**digits and int(b) < 10**digits
        answered = [line for line in prompt.text.split("\n") if re.search(r"(=>|A:) \S", line)]
        for (a, op, b), line in zip(shots, answered, strict=True):
            assert line.endswith(" " + str(OPS[op](int(a), int(b))))


def test_operands_are_uniform_below_10_to_the_n():
    task, rng = arithmetic_task(3), random.Random(0)
    operands = [int(x) for _ in range(4000) for x in QA.search(task.sample(rng).query).groups()
                if x.isdigit()]
    assert min(operands) >= 0 and max(operands) <= 999
    assert abs(sum(operands) / len(operands) - 499.5) < 15
    assert any(x < 100 for x in operands)  # "3-digit" bounds the operand, as in GPT-3's data


@pytest.mark.parametrize("k", [0, 1, 2, 10])
def test_prompt_structure(k):
    prompt = make_prompt("antonyms", k, rng=k)
    lines = prompt.text.split("\n")
    assert lines[0] == "Give the opposite of each word:"
    assert len(lines) == 1 + k + 1
    pairs = [line.split(" => ") for line in lines[1:-1]]
    assert all(ANTONYMS[q] == a for q, a in pairs)
    query = lines[-1]
    assert query.endswith(" =>") and not prompt.text.endswith(" ")
    assert ANTONYMS[query.removesuffix(" =>")] == prompt.answer
    queries = [q for q, _ in pairs] + [query.removesuffix(" =>")]
    assert len(set(queries)) == len(queries)  # shots never repeat or give away the query
    assert "opposite" not in make_prompt("antonyms", k, rng=k, description=False).text


def test_word_tasks():
    for prompt in make_prompts("reversed_words", 30, k_shots=2, seed=5):
        scrambled = prompt.text.split("\n")[-1].removesuffix(" =>")
        assert scrambled[::-1] == prompt.answer and prompt.answer in REVERSAL_WORDS
    for prompt in make_prompts("synonyms", 30, k_shots=1, seed=5):
        assert SYNONYMS[prompt.text.split("\n")[-1].removesuffix(" =>")] == prompt.answer
    assert all(5 <= len(w) <= 14 and w != w[::-1] for w in REVERSAL_WORDS)
    assert "good" in SYNONYMS and SYNONYMS["good"] == "excellent"


def test_seeded_and_reproducible():
    assert make_prompts("addition_4d", 5, 3, seed=0) == make_prompts("addition_4d", 5, 3, seed=0)
    assert make_prompts("addition_4d", 5, 3, seed=0) != make_prompts("addition_4d", 5, 3, seed=1)
    rng_a, rng_b = random.Random(9), random.Random(9)
    assert make_prompt("synonyms", 2, rng_a) == make_prompt("synonyms", 2, rng_b)
    assert make_prompt("synonyms", 2, rng_a) != make_prompt("synonyms", 2, random.Random(9))
    # a known value guards against silent changes of the generator
    assert make_prompt("subtraction_2d", 0, rng=0).text == "Q: What is 49 minus 97?\n\nA:"


def test_custom_task_and_too_many_shots():
    task = word_task("capitals", [("France", "Paris"), ("Japan", "Tokyo")], "Capital cities:")
    assert isinstance(task, Task)
    assert make_prompt(task, 1, 0).text.startswith("Capital cities:\n")
    with pytest.raises(ValueError, match="cannot supply 3 distinct examples"):
        make_prompt(task, 2, 0)
    assert get_task(task) is task and get_task("antonyms") is TASKS["antonyms"]
    assert get_task("addition_3d", style="compact").joiner == " =>"
    with pytest.raises(ValueError, match="style only applies to a task given by name"):
        get_task(task, style="qa")


def test_score():
    assert score(["124", " 7\n\nQ: next", "x"], ["124", "7", "y"]) == pytest.approx(2 / 3)
    assert score(["-55"], [" -55"]) == 1.0
    assert normalize_prediction("   ") == ""
    prompts = make_prompts("addition_2d", 20, 2, seed=3)
    assert score([" " + p.answer + "\n" for p in prompts], [p.answer for p in prompts]) == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), min_size=1, max_size=20))
def test_score_is_a_fraction(pairs):
    predictions, answers = zip(*pairs, strict=True)
    value = score(list(predictions), list(answers))
    assert 0.0 <= value <= 1.0
    if all(len(a.strip().splitlines()) <= 1 for a in answers):  # one-line answers
        assert score(list(answers), list(answers)) == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_prompt("division_2d", 1, 0), "unknown task 'division_2d'; allowed:"),
        (lambda: make_prompt("antonyms", -1, 0), "k_shots must be a non-negative integer"),
        (lambda: make_prompt("antonyms", 1, "seed"), "rng must be a random.Random or an int"),
        (lambda: make_prompt("antonyms", 1, 0, style="qa"), "arithmetic tasks only"),
        (lambda: arithmetic_task(0), "digits must be an integer from 1 to 9"),
        (lambda: arithmetic_task(2, "times"), "operation must be one of 'plus', 'minus'"),
        (lambda: arithmetic_task(2, style="latex"), "style must be one of 'qa', 'compact'"),
        (lambda: score(["1"], ["1", "2"]), "got 1 predictions for 2 answers"),
        (lambda: score("12", "12"), "not one string"),
        (lambda: score([], []), "no answers to score"),
        (lambda: score([1], ["1"]), "predictions must be strings"),
        (lambda: make_prompts("antonyms", -1, 0), "n must be a non-negative integer"),
        (lambda: word_task("x", [], ""), "pairs must not be empty"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
