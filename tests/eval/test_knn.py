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


def test_multilabel_votes_by_hand() -> None:
    from geodino.eval.knn import knn_multilabel_scores

    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])  # class 2 is nowhere
    query = torch.tensor([[1.0, 0.2]])
    votes = knn_predict(train, labels, query, num_classes=3, k=2, temperature=0.5)
    sims = torch.nn.functional.normalize(train, dim=1) @ (query / query.norm()).t()
    w0, w2 = math.exp(sims[0, 0] / 0.5), math.exp(sims[2, 0] / 0.5)  # neighbours train[0], train[2]
    torch.testing.assert_close(votes, torch.tensor([[w0 + w2, w2, 0.0]]))
    result = knn_multilabel_scores(train, labels, query, torch.tensor([[1, 0, 0]]), k=2, temperature=0.5)
    assert result["map_macro"] == 100.0 and result["classes_evaluated"] == 1
    # shares: class 0 gets all the weight, class 1 w2/(w0+w2) < ½: only class 0 predicted
    assert result["f1_micro"] == 100.0


def test_k_larger_than_the_memory_bank_and_absent_classes() -> None:
    from geodino.eval.knn import knn_evaluate

    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    result = knn_evaluate(train_x, torch.tensor([0, 4]), torch.tensor([[0.9, 0.1]]), torch.tensor([0]), k=20)
    assert result["top1"] == 100.0 and result["num_train"] == 2
    # The report says what was used: knn.json said k=20 where 2 neighbours voted.
    assert result["k"] == 2 and result["k_requested"] == 20


def test_similarities_on_another_device_in_chunks_give_the_same_votes() -> None:
    # Chunks of 3 queries on an explicit device: the same votes as one pass, returned on the CPU
    # (on a GPU machine the bank is copied there once and the queries a chunk at a time).
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(40, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    queries = torch.randn(10, 8, generator=g)
    whole = knn_predict(bank, labels, queries, 4, k=5)
    chunked = knn_predict(bank, labels, queries, 4, k=5, chunk=3, device="cuda" if torch.cuda.is_available() else "cpu")
    assert chunked.device.type == "cpu"
    torch.testing.assert_close(chunked, whole)
