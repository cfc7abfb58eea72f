"""The one switch over every machine-specific speed-up: ``GEODINO_SPEEDUPS``.

``on`` (the default): each speed-up decides for itself, as its module says (the oneDNN linears by
a measurement on this machine, malloc tuning where the C library is glibc, the CLS-only last
block and the packed crop sizes where the ViT block is timm's plain one). ``off``: none of them;
the plain PyTorch path, to compare against or to rule them out when something looks wrong. Each
also has its own variable (``GEODINO_ONEDNN_LINEAR=0|1``, ``GEODINO_KEEP_FREED_MEMORY=0``,
``GEODINO_CLS_ONLY=0``, ``GEODINO_PACKED=0``), consulted only while the switch is on.
"""

from __future__ import annotations

import os

SWITCH = "GEODINO_SPEEDUPS"
_OFF = ("off", "0", "false", "no")


def speedups_on() -> bool:
    return os.environ.get(SWITCH, "on").strip().lower() not in _OFF


def feature_on(variable: str) -> bool:
    """The switch is on and the feature's own variable does not say ``0``."""
    return speedups_on() and os.environ.get(variable, "1").strip().lower() not in _OFF
