"""KVCache.reorder, the row selection beam search needs, against index_select and against
recomputing the reordered sequences."""

from __future__ import annotations

import pytest
import torch

from minigpt.attention import KVCache
from minigpt.config import GPTConfig
from minigpt.model import GPT


def test_reorder_is_index_select_along_batch():
    k, v = torch.randn(4, 2, 5, 3), torch.randn(4, 2, 5, 6)
    cache = KVCache()
    cache.append(k, v)
    index = torch.tensor([3, 0, 0, 2, 1])
    cache.reorder(index)
    assert torch.equal(cache.k, k.index_select(0, index))
    assert torch.equal(cache.v, v.index_select(0, index))
    assert len(cache) == 5


def test_reorder_empty_cache_is_a_no_op():
    cache = KVCache()
    cache.reorder(torch.tensor([0, 0]))
    assert cache.k is None and len(cache) == 0


@pytest.mark.parametrize("index", [torch.tensor([0, 2]), torch.tensor([-1]),
                                   torch.tensor([[0]]), torch.tensor([0.0])])
def test_reorder_rejects_bad_index(index):
    cache = KVCache()
    cache.append(torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1))
    with pytest.raises(ValueError, match="index"):
        cache.reorder(index)


def test_reordered_caches_continue_like_recomputation():
    """Reorder a model's caches, feed one more token per row: the logits equal a full forward
    pass over the reordered sequences."""
    config = GPTConfig(n_layer=2, d_model=32, n_heads=4, vocab_size=50, n_ctx=16)
    torch.manual_seed(0)
    model = GPT(config).eval()
    seqs = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(0))
    rows, nxt = torch.tensor([2, 2, 0, 1]), torch.tensor([[7], [8], [9], [10]])
    with torch.no_grad():
        caches = model.make_caches()
        model(seqs, caches=caches)
        for cache in caches:
            cache.reorder(rows)
        cached = model(nxt, caches=caches)[0][:, -1]
        full = model(torch.cat([seqs[rows], nxt], dim=1))[0][:, -1]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
