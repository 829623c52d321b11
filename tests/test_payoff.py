"""minigpt.checkpoint, and the payoff run of experiments/payoff.py with its shipped checkpoint."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from minigpt.config import get_config
from minigpt.lab import record
from minigpt.model import GPT
from minigpt.train import sequence_nll

ROOT = Path(__file__).resolve().parents[1]
#: How far the re-measured bits per character of the fixed slice may be from the stored
#: figure: float32 matrix products differ between CPUs in the last bits, far below this.
TOLERANCE = 5e-3


def _script():
    spec = importlib.util.spec_from_file_location("payoff", ROOT / "experiments" / "payoff.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored() -> dict:
    return record.load("payoff")


# ---------------------------------------------------------------------------------------------
# The shipped checkpoint


def test_shipped_checkpoint_loads_fast_and_scores_as_stored(stored) -> None:
    weights = record.path("payoff").with_suffix(".safetensors")
    assert weights.stat().st_size <= 10 * 2**20  # ships inside the package
    start = time.perf_counter()
    model = load_checkpoint(weights)
    assert time.perf_counter() - start < 3.0
    meta = read_metadata(weights)
    assert meta["tokenizer"] == "characters" and meta["step"] == stored["result"]["steps"]
    assert model.num_parameters() == stored["result"]["params"]

    _, val_text, vocab = _script().chapter7_text()
    assert vocab == meta["vocab"] == stored["parameters"]["data"]["vocab"]
    fixed = stored["result"]["test_slice"]
    ids = torch.tensor([vocab.index(c) for c in val_text[: fixed["chars"]]])
    nll, count = sequence_nll(model, ids, window=fixed["window"])
    bits = nll / math.log(2) / count
    assert bits == pytest.approx(fixed["bits_per_char"], abs=TOLERANCE)


def test_stored_result_has_what_chapter_7_prints(stored) -> None:
    result, parameters = stored["result"], stored["parameters"]
    assert result["finished"]
    assert parameters["command"].startswith("python experiments/payoff.py")
    assert result["ngram_bits_per_char"] == min(result["ngram_bits_per_char_by_order"].values())
    assert result["payoff_line"] == (
        f"payoff: gpt_bits_per_char={result['gpt_bits_per_char']:.3f} "
        f"ngram_bits_per_char={result['ngram_bits_per_char']:.3f} "
        f"train_minutes={result['train_minutes']:.0f} params={result['params']}")
    assert result["train_minutes"] <= 90
    assert set(result["samples"]) == {"0.5", "0.8", "1.0"}
    assert all(s.startswith(result["sample_settings"]["prompt"])
               for s in result["samples"].values())
    steps = [e["step"] for e in stored["evals"]]
    assert steps == sorted(steps) and steps[-1] == result["steps"]
    assert stored["evals"][-1]["bits_per_char"] == result["gpt_bits_per_char"]


# ---------------------------------------------------------------------------------------------
# Save and load


@pytest.mark.parametrize("overrides", [{}, {"positions": "rope", "tie_embeddings": False,
                                            "norm": "rmsnorm", "bias": False}])
def test_round_trip_is_lossless(tmp_path, overrides) -> None:
    torch.manual_seed(0)
    model = GPT(get_config("tiny", **overrides)).eval()
    file = save_checkpoint(model, tmp_path / "m.safetensors", {"note": [1, "two"]})
    again = load_checkpoint(file)
    assert again.config == model.config and not again.training
    assert model.state_dict().keys() == again.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    if model.config.tie_embeddings:
        assert again.lm_head.weight is again.transformer.wte.weight
    x = torch.randint(0, model.config.vocab_size, (2, 16))
    assert torch.equal(model(x)[0], again(x)[0])
    assert read_metadata(file)["note"] == [1, "two"]


def test_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a minigpt checkpoint"):
        load_checkpoint(other)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(GPT(get_config("tiny")), tmp_path / "x.safetensors", {"format": 1})
    with pytest.raises(ValueError, match="must be a minigpt GPT"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "y.safetensors")


# ---------------------------------------------------------------------------------------------
# The script does not rot


def test_smoke_run_writes_both_files(tmp_path) -> None:
    document = _script().main(["--smoke", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "payoff.json").read_text())
    assert saved.keys() == document.keys() and saved["result"].keys() == document["result"].keys()
    assert saved["result"]["payoff_line"] == document["result"]["payoff_line"]
    assert saved["parameters"]["smoke"] and saved["result"]["finished"]
    model = load_checkpoint(tmp_path / "payoff.safetensors")
    assert model.num_parameters() == saved["result"]["params"]
    assert saved["result"]["payoff_line"].startswith("payoff: gpt_bits_per_char=")


def test_loading_leaves_the_global_random_generator_alone(tmp_path) -> None:
    torch.manual_seed(0)
    file = tmp_path / "m.safetensors"
    save_checkpoint(GPT(get_config("tiny")), file)
    torch.manual_seed(1)
    want = torch.rand(3)
    torch.manual_seed(1)
    load_checkpoint(file)
    assert torch.equal(torch.rand(3), want)
