"""Class-attention pooling: set summaries agree with pooling each set alone; invalid tokens are ignored."""

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
