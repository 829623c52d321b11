"""minigpt.lab.record: the experiments' stored files, shipped inside the package."""

from __future__ import annotations

import json

import pytest

from minigpt.lab import record


def test_every_stored_file_loads_with_its_parameters() -> None:
    assert record.available() == ["after_gpt3", "icl_results", "scaling_law"]
    for name in record.available():
        document = record.load(name)
        assert "parameters" in document
        assert document == json.loads(record.path(name).read_text())


def test_save_then_read_back(tmp_path) -> None:
    document = {"parameters": {"seed": 0}, "results": [1.5, 2.25]}
    file = record.save(document, tmp_path / "new" / "x.json")
    assert json.loads(file.read_text()) == document
    with pytest.raises(ValueError, match="must be a dict"):
        record.save([1, 2], tmp_path / "y.json")


def test_bad_names_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="bare result name"):
        record.path("scaling_law.json")
    with pytest.raises(ValueError, match="bare result name"):
        record.path("../scaling_law")
    with pytest.raises(FileNotFoundError, match="available: after_gpt3, icl_results"):
        record.load("nonexistent")
