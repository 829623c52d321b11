"""Shared test settings, and the skip markers of the optional reference libraries.

A test that compares minigpt with an optional library (``pip install -e .[test]`` installs
them all) carries its marker and imports the library inside, so that a missing library skips
that test with its reason, never a whole file in silence (no module-level importorskip):

    from conftest import needs_nltk

    @needs_nltk
    def test_scores_match_nltk(): ...
"""

import importlib.util

import pytest
import torch


def _needs(module: str) -> pytest.MarkDecorator:
    """Skip unless ``module`` is installed; the reason says how to install it."""
    top = module.partition(".")[0]
    return pytest.mark.skipif(
        importlib.util.find_spec(top) is None,
        reason=f"{top} is not installed (pip install -e .[test])",
    )


needs_nltk = _needs("nltk")
needs_tiktoken = _needs("tiktoken")
needs_tokenizers = _needs("tokenizers")
needs_transformers = _needs("transformers")


def require(module: str) -> None:
    """Inside a fixture: skip the tests that use it unless ``module`` is installed."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e .[test])")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """pytest-xdist runs one worker per core, so one torch thread each avoids oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
