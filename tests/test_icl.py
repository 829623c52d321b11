"""Tests for minigpt.lab.icl: tokenizer, training episodes, evaluation, and the stored experiment.

The evaluation is checked with hand-made predictors whose accuracy is known in advance (an
oracle that solves each task, one that always answers the same, one that needs an example), so
that :func:`minigpt.lab.icl.evaluate_icl` is tested apart from any trained model. The stored
``minigpt/lab/results/icl_results.json`` is checked for its structure and for its parameters
re-creating the first training steps of its smallest run.
"""

from __future__ import annotations

import json
import math
import random
import re
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.config import GPTConfig
from minigpt.lab import icl, record
from minigpt.lab.record import path as result_path
from minigpt.model import GPT
from minigpt.tasks import ANTONYMS, SYNONYMS, make_prompts
from minigpt.train import TrainConfig, pack_documents

RESULTS = result_path("icl_results")
ARITHMETIC = re.compile(r"^(\d+) \+ (\d+) =>$")


def solve(line: str) -> str:
    """The answer to a query line ``"<query> =>"`` for every task of the mixture, except that
    a word with both an antonym and a backward spelling is answered as an antonym."""
    query = line.removesuffix(" =>")
    if m := ARITHMETIC.match(line):
        return str(int(m[1]) + int(m[2]))
    if query in ANTONYMS:
        return ANTONYMS[query]
    if query in SYNONYMS:
        return SYNONYMS[query]
    return query[::-1]


def solve_as(task: str, query: str) -> str:
    """The answer of ``query`` in task ``task``."""
    if task.startswith("addition_"):
        return solve(query + " =>")
    return {"antonyms": ANTONYMS, "synonyms": SYNONYMS}.get(task, {}).get(query, query[::-1])


def oracle(texts):
    return [" " + solve(t.split("\n")[-1]) + "\n" for t in texts]


# --------------------------------------------------------------------------------------------
# Tokenizer


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=icl.TASK_ALPHABET, max_size=60))
def test_tokenizer_round_trip(text):
    tok = icl.CharTokenizer()
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(1 <= i < tok.vocab_size for i in ids)  # 0 is reserved for EOT
    assert tok.decode(ids) == text


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, icl.CharTokenizer().vocab_size - 1), max_size=40))
def test_decode_then_encode_drops_only_eot(ids):
    tok = icl.CharTokenizer()
    assert tok.encode(tok.decode(ids)) == [i for i in ids if i != tok.eot_id]


def test_tokenizer_covers_every_task_and_rejects_the_rest():
    tok = icl.CharTokenizer()
    for name in icl.ICL_TASKS:
        for prompt in make_prompts(icl.ICL_TASKS[name], 20, 3, seed=0):
            tok.encode(prompt.text + " " + prompt.answer)  # no error
    with pytest.raises(ValueError, match=r"character 'é' \(position 3\) is not in the task"):
        tok.encode("caf\u00e9")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="repeated characters"):
        icl.CharTokenizer("aab")
    with pytest.raises(ValueError, match="takes a string"):
        tok.encode(["a"])


# --------------------------------------------------------------------------------------------
# Training data


def test_episodes_are_seeded_and_in_the_task_format():
    mixture = icl.Mixture()
    episodes = icl.training_episodes(mixture, 300, seed=3)
    assert episodes == icl.training_episodes(mixture, 300, seed=3)
    assert episodes != icl.training_episodes(mixture, 300, seed=4)
    assert {name for name, _ in episodes} == set(mixture.weights)
    described = 0
    for name, text in episodes:
        lines = text.split("\n")
        task = icl.ICL_TASKS[name]
        if lines[0] == task.description:
            described += 1
            lines = lines[1:]
        assert 1 <= len(lines) <= mixture.max_examples
        for line in lines:  # every line a solved example: "query => answer"
            query, answer = line.split(" => ")
            assert answer == solve_as(name, query)
        assert len({line.split(" => ")[0] for line in lines}) == len(lines)  # distinct queries
    assert 0.4 < described / len(episodes) < 0.6  # p_description = 0.5


def test_arithmetic_split_keeps_test_queries_out_of_training():
    mixture = icl.Mixture()
    train = {line.split(" => ")[0] for name, text in icl.training_episodes(mixture, 400, 0)
             if name == "addition_2d" for line in text.split("\n")[-9:] if "+" in line}
    test = {p.text.split("\n")[-1].removesuffix(" =>")
            for p in make_prompts(mixture.task("addition_2d", "test"), 200, 0, seed=1)}
    assert train and test and not train & test
    def in_test(query):  # the documented rule: crc32(query) / 2^32 < holdout
        return zlib.crc32(query.encode()) / 2**32 < 0.2

    every = [f"{a} + {b}" for a in range(100) for b in range(100)]
    assert sum(map(in_test, every)) / len(every) == pytest.approx(0.2, abs=0.02)
    task, rng = icl.ICL_TASKS["addition_2d"], random.Random(0)
    assert all(in_test(icl.split_task(task, "test", 0.2).sample(rng).query) for _ in range(200))
    assert not any(in_test(icl.split_task(task, "train", 0.2).sample(rng).query)
                   for _ in range(200))
    assert mixture.task("antonyms", "test") is icl.ICL_TASKS["antonyms"]  # words: not split


def test_training_tokens_are_packed_episodes():
    tok, mixture = icl.CharTokenizer(), icl.Mixture()
    stream = icl.training_tokens(tok, mixture, 2000, seed=1)
    assert stream.dtype == torch.long and stream.ndim == 1 and stream.numel() >= 2000
    assert torch.equal(stream, icl.training_tokens(tok, mixture, 2000, seed=1))
    episodes = [text for _, text in icl.training_episodes(mixture, 256, seed=1 * 1_000_003)]
    packed = pack_documents([tok.encode(t) for t in episodes], tok.eot_id)
    assert torch.equal(stream, packed)  # 2000 tokens: one batch of 256 episodes


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown task 'poetry'"):
        icl.Mixture().task("poetry")
    with pytest.raises(ValueError, match="weights must name tasks"):
        icl.Mixture(weights={"poetry": 1.0})
    with pytest.raises(ValueError, match="positive numbers"):
        icl.Mixture(weights={"antonyms": 0})
    with pytest.raises(ValueError, match="p_description"):
        icl.Mixture(p_description=1.5)
    with pytest.raises(ValueError, match="holdout must be a fraction"):
        icl.Mixture(holdout=1.0)
    with pytest.raises(ValueError, match="max_examples"):
        icl.Mixture(max_examples=0)
    with pytest.raises(ValueError, match="part must be"):
        icl.split_task(icl.ICL_TASKS["addition_2d"], "validation", 0.2)
    with pytest.raises(ValueError, match="n_examples"):
        icl.make_episode(icl.ICL_TASKS["antonyms"], 0, random.Random(0), False)
    with pytest.raises(ValueError, match="n_prompts"):
        icl.evaluate_icl(oracle, icl.Mixture(), n_prompts=0)
    with pytest.raises(ValueError, match="tol"):
        record.reproduces({"a": 1.0}, {"a": 1.0}, tol=-1)
    with pytest.raises(ValueError, match="no entry a/b"):
        record.max_difference({"a": {}}, {"a": {"b": 0.5}})
    with pytest.raises(ValueError, match="unknown size 'XL'"):
        icl.train_from_parameters({"sizes": {"S": {}}}, "XL")


# --------------------------------------------------------------------------------------------
# Evaluation with hand-made predictors


def test_evaluation_of_known_predictors():
    mixture = icl.Mixture()
    acc = icl.evaluate_icl(oracle, mixture, shots=(0, 1, 8), n_prompts=60)
    assert set(acc) == {"without_description", "with_description"}
    for kind in acc.values():
        assert set(kind) == set(icl.ICL_TASKS)
        assert kind["addition_5d"] == {"0": 1.0, "1": 1.0, "8": 1.0}
        assert kind["antonyms"]["8"] == 1.0 and kind["reversed_words"]["0"] == 1.0
        assert kind["backwards"]["0"] < 1.0  # words with an antonym are answered as antonyms

    silent = icl.evaluate_icl(lambda texts: [""] * len(texts), mixture, shots=(0,), n_prompts=5)
    assert all(v == {"0": 0.0} for kind in silent.values() for v in kind.values())


def test_a_predictor_that_learns_in_context():
    """Answers as the task of its first example says; guesses 'antonym' with no example."""

    def in_context(texts):
        out = []
        for text in texts:
            lines = [ln for ln in text.split("\n") if " => " in ln]
            query = text.split("\n")[-1].removesuffix(" =>")
            backwards = bool(lines) and lines[0].split(" => ")[1] == lines[0].split(" => ")[0][
                ::-1]
            out.append(" " + (query[::-1] if backwards else ANTONYMS.get(query, "?")))
        return out

    acc = icl.evaluate_icl(in_context, icl.Mixture(), tasks=("backwards",), shots=(0, 1, 4),
                           n_prompts=100, descriptions=(False,))
    row = acc["without_description"]["backwards"]
    assert row["0"] == 0.0 and row["1"] == row["4"] == 1.0


def test_greedy_predictor_on_a_tiny_model():
    tok = icl.CharTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=tok.vocab_size,
                          n_ctx=64))
    predict = icl.greedy_predictor(model, tok, max_new_tokens=5)
    texts = ["hot =>", "big =>", "12 + 3 =>"]  # two lengths: two batches
    out = predict(texts)
    assert len(out) == 3 and all(isinstance(o, str) and len(o) <= 5 for o in out)
    assert out == [predict([t])[0] for t in texts]  # batching changes nothing


def test_reproduces():
    stored = {"a": {"0": 0.5, "1": 0.9}, "b": {"0": 0.1}}
    assert record.reproduces(stored, {"a": {"1": 0.9}}, tol=0.0)
    assert record.max_difference(stored, {"a": {"0": 0.45}, "b": {"0": 0.2}}) == 0.1
    assert not record.reproduces(stored, {"b": {"0": 0.2}}, tol=0.05)


def test_live_summary_averages_every_cell():
    live = icl.LiveSlice.from_dict({"step": 3, "loss": 1.25, "accuracy": {
        "with": {"a": {"0": 0.0, "1": 1.0}}, "without": {"b": {"0": 0.5}}}})
    assert icl.live_summary(live) == {"loss": 1.25, "mean_accuracy": 0.5}
    assert icl.LiveSlice.from_dict(live.to_dict()) == live
    with pytest.raises(ValueError, match="no accuracies"):
        icl.live_summary(icl.LiveSlice(3, 1.0, {}))
    with pytest.raises(ValueError, match="missing: accuracy"):
        icl.LiveSlice.from_dict({"step": 3, "loss": 1.0})


# --------------------------------------------------------------------------------------------
# The stored experiment


@pytest.fixture(scope="module")
def stored():
    if not RESULTS.exists():
        pytest.skip("minigpt/lab/results/icl_results.json not written yet "
                    "(python experiments/icl.py)")
    return json.loads(RESULTS.read_text())


def test_stored_results_structure(stored):
    params, results = stored["parameters"], stored["results"]
    assert len(params["sizes"]) >= 3 and set(results) == set(params["sizes"])
    for key in ("torch_version", "command", "train", "mixture", "evaluation", "data_seed"):
        assert key in params
    ev = params["evaluation"]
    assert ev["shots"] == [0, 1, 2, 4, 8] and ev["n_prompts"] >= 100
    assert {"addition_2d", "addition_5d"} <= set(ev["tasks"])
    sizes = sorted(results, key=lambda n: results[n]["n_parameters"])
    assert sizes[0] == icl.smallest_size(params)
    for result in results.values():
        for kind in ("without_description", "with_description"):
            cells = result["accuracy"][kind]
            assert set(cells) == set(ev["tasks"])
            for row in cells.values():
                assert list(row) == [str(k) for k in ev["shots"]]
                assert all(0 <= v <= 1 and round(v, 3) == v for v in row.values())
        assert math.isfinite(result["final_loss"])
    live, name = params["live"], icl.smallest_size(params)
    assert live["size"] == name and 1 <= live["step"] <= params["train"]["max_steps"]
    record = results[name]["live"]
    assert record["step"] == live["step"] and math.isfinite(record["loss"])
    for description in live["descriptions"]:
        cells = record["accuracy"][
            "with_description" if description else "without_description"]
        assert set(cells) == set(live["tasks"])
        assert all(list(row) == [str(k) for k in live["shots"]] for row in cells.values())


def test_stored_second_run_matches_the_first_in_shape(stored):
    """``second_run``: the same parameters run again on another CPU (chapter 10 compares them)."""
    if "second_run" not in stored:
        pytest.skip("no second run stored")
    first, second = stored["results"], stored["second_run"]["results"]
    assert set(second) == set(first)
    for name in first:
        assert second[name]["n_parameters"] == first[name]["n_parameters"]
        for kind, cells in first[name]["accuracy"].items():
            assert {t: list(row) for t, row in second[name]["accuracy"][kind].items()} == \
                {t: list(row) for t, row in cells.items()}
        # identical at the start: the two CPUs round differently only later in training
        assert second[name]["loss_curve"][:2] == first[name]["loss_curve"][:2]
    assert set(second[icl.smallest_size(stored["parameters"])]["live"]) == {"step", "loss",
                                                                          "accuracy"}
    # what chapter 10 checks on any CPU: the live slice's loss and mean accuracy agree
    name = icl.smallest_size(stored["parameters"])
    assert record.reproduces(icl.live_summary(icl.LiveSlice.from_dict(first[name]["live"])),
                             icl.live_summary(icl.LiveSlice.from_dict(second[name]["live"])),
                             tol=0.03)


def test_stored_parameters_recreate_the_smallest_run(stored):
    params = stored["parameters"]
    name = icl.smallest_size(params)
    _, history = icl.train_from_parameters(params, name, steps=20)
    curve = dict(map(tuple, stored["results"][name]["loss_curve"]))
    for step in (1, 10, 20):
        assert history[step - 1]["loss"] == pytest.approx(curve[step], abs=2e-3)
    assert isinstance(icl.train_config(params), TrainConfig)
