"""Export a checkpoint's teacher backbone as a plain timm model: safetensors weights, timm's
``config.json`` and the band order and normalisation it expects.

The folder written by :func:`export_backbone` holds:

- ``model.safetensors``: the timm model's state dict, nothing else (no DINO head);
- ``config.json``: timm's Hugging Face-style model config (``architecture``, ``model_args`` with
  every constructor argument geodino used: ``in_chans``, ``img_size``, ``patch_size``, ``depth``,
  ``dynamic_img_size``, ``num_classes=0``; ``pretrained_cfg`` with the input size and the
  dataset card's per-band mean and std), written by timm's own ``save_config_for_hf``;
- ``bands.json``: band names in input order, modality, unit, resolution, mean and std, and how to
  normalise (``(x − mean) / std`` on raw values in the listed units; a missing modality is filled
  with 0 after normalisation);
- ``torchgeo.ckpt``: the same weights as torchgeo's trainers take them (``weights=<path>``), for
  an export whose model has its architecture's default shape (torchgeo builds the model from the
  name alone);
- ``README.md``: a model card (Hugging Face front matter) with the exact lines that load it with
  timm, given the folder (checked by the tests); no path of the machine that wrote it.

``timm.create_model("local-dir:<folder>", pretrained=True)`` or ``timm.create_model(<arch>,
pretrained=True, pretrained_cfg_overlay=dict(file=..., ...), **model_args)`` then gives a model
whose ``model(x)`` (``num_classes=0``) is the teacher's CLS embedding, as geodino computes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geodino.data.card import DatasetCard
from geodino.runs.checkpoint import EXPORT_BANDS, EXPORT_CONFIG, EXPORT_WEIGHTS, save_torch
from geodino.utils import atomic_path, write_failure, write_json_atomic, write_text_atomic

README_FILE = "README.md"
# The same weights as a Lightning-style checkpoint, the form torchgeo's trainers take as ``weights=``
# (``hyper_parameters["model"]`` names the timm architecture, ``state_dict`` holds ``model.*``).
TORCHGEO_FILE = "torchgeo.ckpt"

# pretrained_cfg fields inherited from the ImageNet weights of the architecture that would describe
# those weights, not these.
FOREIGN_FIELDS = ("tag", "license", "hf_hub_id", "url", "paper_ids", "paper_name", "origin_url", "notes")


def timm_config(model: Any, card: DatasetCard, size: int) -> dict[str, Any]:
    """timm's own model config for ``model``, with this export's input size and normalisation."""
    import tempfile

    from timm.models._hub import save_config_for_hf

    data_config = {"input_size": (card.num_bands, size, size), "mean": tuple(card.mean or ()),
                   "std": tuple(card.std or ()), "interpolation": "bilinear", "crop_pct": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EXPORT_CONFIG
        save_config_for_hf(model, str(path), data_config=data_config)
        config = json.loads(path.read_text())
    pretrained = config["pretrained_cfg"]
    for key in FOREIGN_FIELDS:
        pretrained.pop(key, None)
    pretrained["tag"] = "geodino"
    return config


def band_description(card: DatasetCard, fill: float = 0.0) -> dict[str, Any]:
    return {
        "dataset": card.name,
        "bands": [{k: v for k, v in vars(b).items() if v not in ("", None)} for b in card.bands],
        "mean": card.mean,
        "std": card.std,
        "modalities": card.modalities,
        "normalisation": "(x - mean) / std per band, on raw values in the listed units and band order",
        "missing_modality_fill": fill,
        "classes": card.classes,
    }


# The README's code names the folder with this placeholder: the export may be moved or shared, so
# it holds no path of the machine that wrote it.
FOLDER_PLACEHOLDER = "path/to/this/folder"


def source_name(checkpoint: str | Path) -> str:
    """The checkpoint as ``<run folder>/<file>``: enough to recognise it, no local path."""
    path = Path(checkpoint)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def readme(config: dict[str, Any], card: DatasetCard, checkpoint: str) -> str:
    args = config["model_args"]
    size = args.get("img_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "img_size")
    input_size = tuple(config["pretrained_cfg"]["input_size"])
    tags = "".join(f"- {t}\n" for t in ("geodino", "dino", "self-supervised", "earth-observation",
                                          *card.modalities))
    return f"""---
library_name: timm
pipeline_tag: image-feature-extraction
tags:
{tags}---

# {config['architecture']} pretrained with geodino

Teacher backbone of the geodino pretraining checkpoint `{source_name(checkpoint)}` ({card.num_bands} bands of
`{card.name}`: {', '.join(card.band_names)}). Normalise each band as `(x - mean) / std` with the values in
`bands.json` (raw values, in the units listed there, in this band order); fill a missing modality with 0
after normalisation.

```python
from pathlib import Path

import timm
import torch

folder = Path("{FOLDER_PLACEHOLDER}")  # where config.json and model.safetensors are
model = timm.create_model(f"local-dir:{{folder}}", pretrained=True).eval()

# the same, spelled out
model = timm.create_model(
    "{config['architecture']}", pretrained=True,
    pretrained_cfg_overlay=dict(file=str(folder / "{EXPORT_WEIGHTS}"), num_classes=0, input_size={input_size!r}),
    img_size={size!r}, {shown},
).eval()

x = torch.zeros(1, {card.num_bands}, {size}, {size})  # standardised bands
features = model(x)  # [1, {config['num_features']}]: the CLS embedding geodino evaluates
```
"""


def export_backbone(checkpoint: str | Path, out_dir: str | Path,
                    card: DatasetCard | str | Path | None = None) -> dict[str, str]:
    """Write the export folder for ``checkpoint``; returns the paths written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from geodino.eval.checkpoint import load_teacher_backbone

    backbone, card, cfg = load_teacher_backbone(checkpoint, card)
    if card.mean is None or card.std is None:
        raise ValueError(f"dataset card {card.name!r} has no statistics: the export would not say how to "
                         "normalise (run `geodino stats`, or pass a card with statistics)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = backbone.model
    size = int(cfg["augment"]["global_size"])
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / EXPORT_WEIGHTS) as tmp:
        try:
            save_file(state, str(tmp),
                      metadata={"format": "pt", "source": "geodino", "checkpoint": source_name(checkpoint)})
        except SafetensorError as err:  # safetensors reports a refused write as its own error
            raise write_failure(out / EXPORT_WEIGHTS, err) from err
    save_torch({"hyper_parameters": {"model": cfg["model"]["arch"], "in_channels": card.num_bands},
                "state_dict": {f"model.{k}": v for k, v in state.items()}}, out / TORCHGEO_FILE)
    config = timm_config(model, card, size)
    write_json_atomic(out / EXPORT_CONFIG, config)
    write_json_atomic(out / EXPORT_BANDS, band_description(card, cfg.get("augment", {}).get("modality_fill", 0.0)))
    write_text_atomic(out / README_FILE, readme(config, card, str(checkpoint)))
    written = (EXPORT_WEIGHTS, EXPORT_CONFIG, EXPORT_BANDS, README_FILE, TORCHGEO_FILE)
    return {name: str(out / name) for name in written}
