"""Class-attention pooling: set summaries agree with pooling each set alone; invalid tokens are ignored."""

import pytest
import torch

from geodino.models.class_attention import SummaryAggregator


def test_pool_sets_equals_pooling_each_set_alone():
    torch.manual_seed(0)
    agg = SummaryAggregator(64, depth=2).eval()
    tokens = torch.randn(2, 5, 64)
    index = torch.tensor([[[1, 2], [0, 4], [3, 3], [2, 1], [0, 0]]] * 2)
    valid = torch.ones_like(index, dtype=torch.bool)
    with torch.no_grad():
        sets = agg.pool_sets(tokens, index, valid)
        for b in range(2):
            for n in range(5):
                alone = agg.pool(tokens[b, index[b, n]].unsqueeze(0))[0]
                torch.testing.assert_close(sets[b, n], alone, atol=1e-5, rtol=1e-5)


def test_invalid_tokens_are_not_read():
    torch.manual_seed(0)
    agg = SummaryAggregator(64, depth=2).eval()
    tokens = torch.randn(1, 4, 64)
    index = torch.tensor([[[1, 2, 3]] * 4])
    valid = torch.tensor([[[True, True, False]] * 4])
    changed = tokens.clone()
    changed[0, 3] = 100.0  # only ever read through an invalid slot
    with torch.no_grad():
        a, b = agg.pool_sets(tokens, index, valid), agg.pool_sets(changed, index, valid)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a[0, 0], agg.pool(tokens[:, 1:3])[0], atol=1e-5, rtol=1e-5)
        # a set with no valid token still has a well-defined summary (it reads itself)
        empty = agg.pool_sets(tokens, index, torch.zeros_like(valid))
    assert torch.isfinite(empty).all()


def test_pools_of_two_sizes_and_sets_in_one_pass_equal_each_alone():
    from geodino.models.class_attention import Pool

    torch.manual_seed(0)
    agg = SummaryAggregator(64, depth=2).eval()
    big, small = torch.randn(2, 6, 64), torch.randn(3, 2, 64)
    rows = torch.cat([big.reshape(-1, 64), small.reshape(-1, 64)])
    index = torch.tensor([[0, 1], [2, 13], [17, 3]])
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    with torch.no_grad():
        out = agg(rows, [Pool(0, 2, 6), Pool(12, 3, 2)], (index, valid))
        torch.testing.assert_close(out[3:5], agg.pool(big), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[5:], agg.pool(small), atol=1e-5, rtol=1e-5)
        for s in range(3):
            alone = agg.pool(rows[index[s][valid[s]]].unsqueeze(0))[0]
            torch.testing.assert_close(out[s], alone, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="follow each other"):
            agg(rows, [Pool(0, 2, 6), Pool(10, 3, 2)])
