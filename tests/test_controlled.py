"""minigpt.lab.controlled, and the stored results of experiments/after_gpt3.py.

The unit tests train on a few hundred characters; ``minigpt/lab/results/after_gpt3.json`` is checked
for its structure, for the facts it must agree with (equal parameter counts, the configs of the
ablation), and for its parameters re-creating the first steps of the smallest case."""

from __future__ import annotations

import json
import math

import pytest

from minigpt.config import GPTConfig, count_parameters
from minigpt.lab import controlled, record
from minigpt.lab.record import path as result_path
from minigpt.lab.sweep import SweepSettings, char_data
from minigpt.train import TrainConfig
from minigpt.variants import CHANGES, llama_style, single_change

RESULTS = result_path("after_gpt3")
TEXT = "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind\n" * 20


@pytest.fixture(scope="module")
def tiny():
    data = char_data(TEXT, val_fraction=0.2)
    config = GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=len(data.vocab), n_ctx=16)
    settings = SweepSettings(train=TrainConfig(seq_len=16, batch_size=4, lr=1e-2, warmup_tokens=0),
                             n_tokens=4 * 16 * 6, val_sequences=8)
    return data, config, settings


def test_train_and_evaluate_is_deterministic_and_complete(tiny):
    data, config, settings = tiny
    a = controlled.train_and_evaluate(config, settings, data)
    b = controlled.train_and_evaluate(config, settings, data)
    assert a.val_loss == b.val_loss and a.loss_curve == b.loss_curve
    assert a.steps == 6 and a.tokens == settings.n_tokens
    assert a.n_parameters == count_parameters(config)
    assert a.loss_curve[0][0] == 1 and math.isfinite(a.val_loss)
    partial = controlled.train_and_evaluate(config, settings, data, steps=1)
    assert partial.steps == 1 and partial.loss_curve[0] == a.loss_curve[0]


def test_compare_same_seed_same_data_order(tiny):
    data, config, settings = tiny
    configs = {"gpt3": config, "llama": llama_style(config, match_parameters=True)}
    out = controlled.compare(configs, settings, [0, 1], data, lr={"llama": 5e-3}, log=None)
    assert set(out) == {"gpt3", "llama"} and out["llama"]["lr"] == 5e-3
    for row in out.values():
        assert list(row["val_loss"]) == ["0", "1"] and row["summary"]["n"] == 2
    rerun = controlled.train_and_evaluate(config, settings.with_train(seed=1), data)
    assert rerun.val_loss == out["gpt3"]["val_loss"]["1"]
    params = controlled.run_parameters(configs, settings, [0, 1], lr={"llama": 5e-3})
    assert controlled.config_from_parameters(params, "llama") == configs["llama"]
    assert SweepSettings.from_dict(params["settings"]) == settings
    live = controlled.live_rerun(params, names=["llama"], seed=1, data=data)
    stored = {"val_loss": {name: row["val_loss"] for name, row in out.items()}}
    assert record.reproduces(stored, live, tol=0.0)


def test_summaries():
    assert controlled.summarize([2.0, 2.2, 2.1]) == {"mean": 2.1, "std": 0.1, "min": 2.0,
                                                     "max": 2.2, "n": 3}
    diff = controlled.paired_differences({"0": 2.0, "1": 2.1, "2": 9.0}, {"0": 1.9, "1": 2.2})
    assert diff["per_seed"] == {"0": -0.1, "1": 0.1} and diff["mean"] == 0.0


def test_errors(tiny):
    data, config, settings = tiny
    with pytest.raises(ValueError, match="at least one finite number"):
        controlled.summarize([])
    with pytest.raises(ValueError, match="no common seeds"):
        controlled.paired_differences({"0": 1.0}, {"1": 1.0})
    with pytest.raises(ValueError, match="vocabulary size"):
        controlled.train_and_evaluate(config.replace(vocab_size=99), settings, data)
    with pytest.raises(ValueError, match="not compared"):
        controlled.compare({"a": config}, settings, [0], data, lr={"b": 1e-3}, log=None)
    with pytest.raises(ValueError, match="unknown config 'c'"):
        controlled.config_from_parameters({"configs": {"a": {}}}, "c")


# --------------------------------------------------------------------------------------------
# The stored experiment


@pytest.fixture(scope="module")
def stored():
    if not RESULTS.exists():
        pytest.skip("minigpt/lab/results/after_gpt3.json not written yet "
                    "(python experiments/after_gpt3.py)")
    return json.loads(RESULTS.read_text())


def test_stored_results_structure(stored):
    params, results = stored["parameters"], stored["results"]
    for key in ("command", "torch_version", "num_threads", "data", "comparison", "ablation",
                "isoflop", "sft", "limits"):
        assert key in params, key
    assert params["num_threads"] == 1
    assert set(results) == {"comparison", "ablation", "isoflop", "sft", "limits"}
    comp, cp = results["comparison"], params["comparison"]
    seeds = [str(s) for s in cp["seeds"]]
    assert len(seeds) >= 3
    for name in ("gpt3", "llama"):
        assert list(comp["val_loss"][name]) == seeds
        assert comp["lr"][name] == cp["lr"][name] in cp["lr_grid"]
        assert comp["summary"][name]["n"] == len(seeds)
    assert set(comp["llama_minus_gpt3"]["per_seed"]) == set(seeds)
    assert set(results["ablation"]) == {"at_gpt3_lr", "at_llama_lr"}
    for arch, ab in (("gpt3", results["ablation"]["at_gpt3_lr"]),
                     ("llama", results["ablation"]["at_llama_lr"])):
        assert set(ab["val_loss"]) == {"gpt3", *CHANGES} and ab["lr"] == comp["lr"][arch]
        assert all(set(v) == set(ab["val_loss"]["gpt3"]) for v in ab["val_loss"].values())
    ab = results["ablation"]["at_gpt3_lr"]
    assert ab["val_loss"]["gpt3"] == {s: comp["val_loss"]["gpt3"][s]
                                      for s in ab["val_loss"]["gpt3"]}
    iso = results["isoflop"]
    assert set(iso["profiles"]) == {"fixed_steps", "fixed_batch"}
    for profile in iso["profiles"].values():
        computes = [p["compute"] for p in profile["points"].values()]
        assert max(computes) / min(computes) < 1.1  # one budget for every size
        assert profile["best_measured"] in profile["points"]
    assert {"approach_3", "rule_20"} <= set(iso["chinchilla"])
    sft = results["sft"]
    for row in [sft["before"], *sft["after"].values()]:
        for key in ("zero_shot_train", "zero_shot_test", "two_shot_test"):
            assert set(row[key]) == set(params["sft"]["tasks"])
            assert all(0 <= v <= 1 for v in row[key].values())
    assert results["limits"]["cooccurrence"]["most_male"][0]["log_ratio"] < 0
    assert results["limits"]["energy"]["patterson_mwh"] == 1287.0


def test_stored_configs_are_what_they_claim(stored):
    cp, comp = stored["parameters"]["comparison"], stored["results"]["comparison"]
    gpt3 = controlled.config_from_parameters(cp, "gpt3")
    llama = controlled.config_from_parameters(cp, "llama")
    assert llama == llama_style(gpt3, match_parameters=True)
    assert abs(count_parameters(llama) / count_parameters(gpt3) - 1) < 0.02
    assert comp["n_parameters"] == {"gpt3": count_parameters(gpt3),
                                    "llama": count_parameters(llama)}
    for ap in stored["parameters"]["ablation"].values():
        for name in CHANGES:
            assert controlled.config_from_parameters(ap, name) == single_change(gpt3, name)


def test_stored_parameters_recreate_the_smallest_case(stored):
    params = stored["parameters"]["comparison"]
    settings = SweepSettings.from_dict(params["settings"])
    data = char_data(val_fraction=settings.val_fraction)
    assert data.description["sha256"] == stored["parameters"]["data"]["sha256"]
    seed = str(params["seeds"][0])
    for name in ("gpt3", "llama"):
        run = controlled.train_and_evaluate(
            controlled.config_from_parameters(params, name),
            settings.with_train(seed=int(seed), lr=params["lr"][name]), data,
            steps=controlled.LOSS_CURVE_EVERY)
        curve = dict(map(tuple, stored["results"]["comparison"]["loss_curves"][name][seed]))
        for step, loss in run.loss_curve:
            assert loss == pytest.approx(curve[step], abs=2e-3), (name, step)
