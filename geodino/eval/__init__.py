"""Evaluation of frozen features: weighted k-NN, linear probes, the missing-modality table.

``checkpoint`` (the teacher backbone of a checkpoint and its card), ``data`` (labelled sets from
shards or the synthetic scenes), ``features`` (extraction, modality filling, caching), ``knn``,
``linear``, ``metrics`` (AP, F1, top-k, IoU), ``modality_table`` and ``protocols`` (what
``geodino eval`` runs).
"""

from geodino.eval.knn import knn_evaluate, knn_predict, knn_scores

__all__ = ["knn_evaluate", "knn_predict", "knn_scores"]
