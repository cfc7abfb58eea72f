"""The ground floor every training loop stands on: what a run keeps in its folder (checkpoints,
the metrics log, the lock), how it stops on a signal, and the per-step schedules it follows.

Pretraining (:mod:`geodino.engine`), evaluation, fine-tuning and plotting all import from here;
nothing here imports from them.
"""
