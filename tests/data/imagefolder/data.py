#!/usr/bin/env python3
"""Make a tiny ImageNet-style folder: two synset classes of small JPEGs, plus one PNG among them
(ImageNet has a few non-JPEG files behind image names) and sizes that need resizing and cropping.

    python tests/data/imagefolder/data.py OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"n01440764": 3, "n01443537": 2}


def write_image_folder(root: str | Path, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls, n in CLASSES.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            array = rng.integers(0, 255, (40 + 7 * i, 60, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / cls / f"{cls}_{i}.JPEG", format="JPEG", quality=90)
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(root / "n01443537" / "odd.png")
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    print(write_image_folder(parser.parse_args().out))
