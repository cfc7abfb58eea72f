"""geodino: DINO self-supervised pretraining of Vision Transformers, built for Earth observation.

The package is laid out by concern:

- ``geodino.models``      backbones (timm), the DINO head, the multi-crop wrapper
- ``geodino.objectives``  image-level and patch-level self-distillation losses
- ``geodino.augment``     batched multi-crop augmentation on the batch's device
- ``geodino.data``        dataset cards, readers, shards, the embedded synthetic default
- ``geodino.engine``      the training loop, schedules, EMA teacher, checkpoints, monitoring
- ``geodino.eval``        k-NN and linear probes
- ``geodino.config``      recipes (YAML), dotted overrides and validation
- ``geodino.bench``       benchmarks behind ``geodino bench``
- ``geodino.cli``         the ``geodino`` command, a thin layer over the above
"""

__version__ = "0.1.0"
