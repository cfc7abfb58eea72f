"""Evaluation of frozen features: weighted k-NN (and, later, linear probes)."""

from geodino.eval.knn import knn_predict, knn_scores

__all__ = ["knn_predict", "knn_scores"]
