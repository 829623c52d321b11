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


# ---------------------------------------------------------------------------------------------
# The preallocated buffer


def test_cache_writes_in_place_into_one_buffer_of_max_len():
    cache = KVCache(max_len=8)
    steps = [torch.randn(2, 3, 1, 4) for _ in range(5)]
    cache.append(steps[0], steps[0] * 2)
    ptr = cache.k.data_ptr()
    for x in steps[1:]:
        k, v = cache.append(x, x * 2)
    assert cache.k.data_ptr() == ptr and cache._k.shape[2] == 8  # no copy of the past
    assert torch.equal(k, torch.cat(steps, dim=2)) and torch.equal(v, 2 * k)
    cache.reset()
    assert len(cache) == 0 and cache.k is None and cache.v is None
    cache.append(steps[4], steps[4])  # the buffer is reused after reset
    assert cache.k.data_ptr() == ptr and torch.equal(cache.k, steps[4])


def test_unbounded_cache_grows_and_keeps_its_tokens():
    cache = KVCache()
    steps = [torch.randn(1, 2, 3, 4) for _ in range(30)]  # 90 tokens > the first 64
    for x in steps:
        k, v = cache.append(x, -x)
    assert torch.equal(k, torch.cat(steps, dim=2)) and torch.equal(v, -k) and len(cache) == 90


def test_full_cache_is_a_clear_error_and_keeps_its_tokens():
    cache = KVCache(max_len=4)
    k = torch.randn(1, 1, 3, 2)
    cache.append(k, k)
    with pytest.raises(ValueError, match=r"KVCache is full: 3 cached \+ 2 new tokens > max_len=4"):
        cache.append(k[:, :, :2], k[:, :, :2])
    assert len(cache) == 3 and torch.equal(cache.k, k)
    with pytest.raises(ValueError, match="same dtypes and device"):
        cache.append(k[:, :, :1].double(), k[:, :, :1].double())
    with pytest.raises(ValueError, match="max_len must be None"):
        KVCache(max_len=0)


@pytest.mark.parametrize("index", [torch.tensor([1, 1, 0]), torch.tensor([2, 0, 1, 1, 2])],
                         ids=["same-batch", "new-batch"])
def test_reorder_then_append_equals_reordered_concatenation(index):
    k, v = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 6)
    cache = KVCache(max_len=10)
    cache.append(k[:, :, :3], v[:, :, :3])
    cache.append(k[:, :, 3:], v[:, :, 3:])
    cache.reorder(index)
    b = index.numel()
    k2, v2 = torch.randn(b, 2, 2, 5), torch.randn(b, 2, 2, 6)
    got_k, got_v = cache.append(k2, v2)
    assert torch.equal(got_k, torch.cat([k[index], k2], dim=2))
    assert torch.equal(got_v, torch.cat([v[index], v2], dim=2))
    assert len(cache) == 6 and cache.max_len == 10


def test_cache_with_autograd_does_not_write_in_place():
    """With gradients on, append concatenates: backward through every step still works."""
    mha_k = [torch.randn(1, 2, 1, 4, requires_grad=True) for _ in range(3)]
    cache = KVCache(max_len=8)
    outs = [cache.append(k, k)[0].sum() for k in mha_k]
    sum(outs).backward()
    assert [float(k.grad[0, 0, 0, 0]) for k in mha_k] == [3.0, 2.0, 1.0]
