"""minigpt.lab.record: the experiments' stored files, shipped inside the package."""

from __future__ import annotations

import json

import pytest

from minigpt.lab import record


def test_every_stored_file_loads_with_its_parameters() -> None:
    assert {"after_gpt3", "icl_results", "payoff", "scaling_law"} <= set(record.available())
    for name in record.available():
        document = record.load(name)
        assert "parameters" in document
        assert document == json.loads(record.path(name).read_text())


def test_save_then_read_back(tmp_path) -> None:
    document = {"parameters": {"seed": 0}, "results": [1.5, 2.25]}
    file = record.save(document, tmp_path / "new" / "x.json")
    assert json.loads(file.read_text()) == document
    file = record.save({"x": [1 / 3, 2.0e-9 / 3]}, tmp_path / "r.json")  # 6 significant digits
    assert json.loads(file.read_text()) == {"x": [0.333333, 6.66667e-10]}
    with pytest.raises(ValueError, match="must be a dict"):
        record.save([1, 2], tmp_path / "y.json")


def test_bad_names_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="bare result name"):
        record.path("scaling_law.json")
    with pytest.raises(ValueError, match="bare result name"):
        record.path("../scaling_law")
    with pytest.raises(FileNotFoundError, match="available: after_gpt3, icl_results"):
        record.load("nonexistent")


def test_live_reruns_compare_within_a_tolerance() -> None:
    stored = {"a": {"0": 0.5, "1": 0.9}, "b": {"0": 0.2}}
    assert record.max_difference(stored, {"a": {"1": 0.85}}) == 0.05
    assert record.reproduces(stored, {"a": {"1": 0.86}}, tol=0.05)
    assert not record.reproduces(stored, {"b": {"0": 0.3}}, tol=0.05)
    with pytest.raises(ValueError, match="no entry a/2"):
        record.max_difference(stored, {"a": {"2": 0.5}})
    with pytest.raises(ValueError, match="tol must be"):
        record.reproduces(stored, stored, tol=-1)
