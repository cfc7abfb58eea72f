"""Benchmark of the batched multi-crop augmentation: crops per second on a chosen device.

Random raw-like inputs (12 reflectance bands in 0..6000 and 2 SAR bands in dB, by default 14
bands of 120 px, like BigEarthNet-MM) go through :class:`geodino.augment.MultiCropAugment`
with the DINO-MM crop sizes (2 x 112 + 8 x 48) and modality masking. The timed loop includes
parameter sampling and the host-to-device parameter copies, as in training; the input batch
already sits on the device. Exposed as ``geodino bench augment``; also runnable as
``python -m geodino.bench.augment``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from geodino.augment import MultiCropAugment
from geodino.config.schema import number
from geodino.rng import step_key
from geodino.utils import cpu_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=["cpu", "cuda"], default=default_device,
                        help=f"where the pixel work runs (default: {default_device})")
    parser.add_argument("--batch-size", type=number(int, ge=1), default=64, help="images per batch (default: 64)")
    parser.add_argument("--in-chans", type=number(int, ge=1), default=14, help="bands per image (default: 14)")
    parser.add_argument("--image-size", type=number(int, ge=1), default=120, help="input side in pixels (default: 120)")
    parser.add_argument("--global-size", type=number(int, ge=1), default=112, help="global crop side (default: 112)")
    parser.add_argument("--local-size", type=number(int, ge=1), default=48, help="local crop side (default: 48)")
    parser.add_argument("--local-crops", type=number(int, ge=0), default=8, help="local crops per image (default: 8)")
    parser.add_argument("--mode", choices=["multispectral", "rgb"], default="multispectral",
                        help="augmentation recipe; rgb needs --in-chans 3 (default: multispectral)")
    parser.add_argument("--modality-drop-p", type=number(float, ge=0, le=1), default=0.5,
                        help="modality masking probability; the last 2 bands form a second modality "
                             "when there are more than 2 bands (default: 0.5)")
    parser.add_argument("--steps", type=number(int, ge=1), default=20, help="timed batches (default: 20)")
    parser.add_argument("--warmup", type=number(int, ge=0), default=3, help="untimed batches first (default: 3)")
    parser.add_argument("--seed", type=number(int, ge=0), default=0, help="generator seed (default: 0)")


def _raw_like(b: int, c: int, size: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """rgb: values in [0, 1]. Otherwise reflectance-like values (0..6000) for all but the last
    2 bands and SAR-dB-like values (-30..0) for those (all bands reflectance-like if C <= 2)."""
    x = torch.rand(b, c, size, size, generator=generator)
    if mode == "rgb":
        return x
    sar = 2 if c > 2 else 0
    x[:, : c - sar] *= 6000.0
    x[:, c - sar :] = x[:, c - sar :] * 30.0 - 30.0
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise ValueError("need --steps >= 1, --warmup >= 0 and --batch-size >= 1")
    device = torch.device(args.device)
    c = args.in_chans
    if args.mode == "rgb" and c != 3:
        raise ValueError(f"--mode rgb needs --in-chans 3, got {c}")
    modalities = None
    drop_p = 0.0
    if args.mode == "multispectral" and c > 2 and args.modality_drop_p > 0:
        modalities = {"optical": list(range(c - 2)), "sar": [c - 2, c - 1]}
        drop_p = args.modality_drop_p
    if args.mode == "rgb":
        mean, std = [0.5] * c, [0.29] * c
    else:
        # The statistics of uniform values on the ranges _raw_like draws from.
        sar = 2 if c > 2 else 0
        mean = [3000.0] * (c - sar) + [-15.0] * sar
        std = [1732.0] * (c - sar) + [8.66] * sar
    aug = MultiCropAugment(
        in_chans=c, mean=mean, std=std, mode=args.mode,
        global_size=args.global_size, local_size=args.local_size, n_local=args.local_crops,
        modalities=modalities, modality_drop_p=drop_p,
    )
    generator = torch.Generator().manual_seed(args.seed)
    images = _raw_like(args.batch_size, c, args.image_size, args.mode, generator).to(device)

    for k in range(args.warmup):
        aug(images, step_key(args.seed, k))
    _sync(device)
    start = time.perf_counter()
    for k in range(args.steps):
        aug(images, step_key(args.seed, args.warmup + k))
    _sync(device)
    seconds = time.perf_counter() - start

    images_per_s = args.batch_size * args.steps / seconds
    crops_per_image = 2 + args.local_crops
    result: dict[str, Any] = {
        "bench": "augment",
        "crops_per_s": round(images_per_s * crops_per_image, 1),
        "images_per_s": round(images_per_s, 1),
        "ms_per_batch": round(1000 * seconds / args.steps, 2),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu_model(),
        "batch_size": args.batch_size,
        "in_chans": c,
        "image_size": args.image_size,
        "global_size": args.global_size,
        "local_size": args.local_size,
        "local_crops": args.local_crops,
        "modality_drop_p": drop_p,
        "mode": aug.mode,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geodino.bench.augment", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
