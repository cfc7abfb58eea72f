import math

import torch

from geodino.eval.knn import knn_predict, knn_scores


def test_weighted_votes_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.2]])
    votes = knn_predict(train, labels, query, num_classes=2, k=2, temperature=0.5)
    q = query / query.norm()
    sims = (torch.nn.functional.normalize(train, dim=1) @ q.t()).squeeze()
    # the two nearest are train[0] (class 0) and train[2] (class 1)
    expected = torch.tensor([[math.exp(sims[0] / 0.5), math.exp(sims[2] / 0.5)]])
    torch.testing.assert_close(votes, expected)


def test_scores_read_class_count_from_labels():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(13, 8, generator=g) * 5
    train_y = torch.arange(13).repeat(4)
    val_y = torch.arange(13)
    train_x = centers[train_y] + torch.randn(52, 8, generator=g) * 0.1
    val_x = centers[val_y] + torch.randn(13, 8, generator=g) * 0.1
    result = knn_scores(train_x, train_y, val_x, val_y, k=3)
    assert result["top1"] == 100.0 and result["top5"] == 100.0 and result["num_val"] == 13
