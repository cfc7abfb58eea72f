"""Starting a backbone from existing weights (``model.init``), whatever bands they were trained on.

Sources, told apart by what they are and what their keys look like:

- a folder written by ``geodino export`` (``model.safetensors`` + ``bands.json``: bands known);
- a geodino run folder or pretraining checkpoint (its teacher, and its DINO head when the shapes fit);
- a state dict file, ``.safetensors`` or ``.pt``/``.pth``, in timm's layout, possibly wrapped the
  way other projects save it: DINO's checkpoints (``teacher``/``student``, ``module.backbone.``
  prefixes), DINOv2's (register tokens and mask token, which are dropped with a note; chunked
  ``blocks.<chunk>.<i>`` keys), ``state_dict``/``model`` wrappers. torchgeo's SSL4EO-S12 ViT
  weights are such a file, for the 13 Sentinel-2 L1C bands;
- a timm model name whose pretrained weights are in the local cache (``vit_small_patch16_224``).

**Bands by name.** The patch embedding has one slice per input band. The weights' bands (from
``model.init_bands``, the export's ``bands.json``, or 3 channels read as R, G, B) are matched to
the run's bands by name (``B4`` = ``B04`` = ``red``): a matched band copies its slice; a band the
weights do not have gets the mean of the weights' slices, rescaled to their average norm so that a
standardised input reaches the same activation magnitude as through a known band; bands only the
weights have are dropped. A run band that is at its mean (0 after standardisation) then contributes
nothing, so with the new bands at their mean the features are the source model's.

**Sizes.** Position embeddings are resampled to the run's grid (bicubic, timm's
``resample_abs_pos_embed``); a different patch size resamples the patch embedding with FlexiViT's
pseudo-inverse resize (Beyer et al. 2023; timm's ``resample_patch_embed``), which keeps the
embedding of a resized patch close to the original's. Every such change is a logged note.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geodino.runs.checkpoint import CHECKPOINT_NAME, EXPORT_BANDS, EXPORT_WEIGHTS, unreadable_reason
from geodino.utils import read_json, read_yaml

log = logging.getLogger("geodino")

SSL4EO_L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
RGB_BANDS = ["B04", "B03", "B02"]  # R, G, B: what a 3-channel image model was trained on
ALIASES = {"R": "B04", "RED": "B04", "G": "B03", "GREEN": "B03", "B": "B02", "BLUE": "B02", "NIR": "B08"}
# Keys of other projects that no timm backbone has: dropped with a note.
EXTRAS = ("register_tokens", "mask_token", "head.", "fc_norm.", "pre_logits.")


class InitError(ValueError):
    """``model.init`` cannot be read or does not fit the run's model."""


def canonical_band(name: str) -> str:
    """``B4``, ``b04``, ``red`` → ``B04``; other names upper-cased."""
    upper = str(name).strip().upper()
    upper = ALIASES.get(upper, upper)
    match = re.fullmatch(r"B(\d)", upper)
    return f"B0{match.group(1)}" if match else upper


@dataclass
class InitWeights:
    """Backbone weights in timm's layout, the bands of their patch embedding, and where from."""

    state: dict[str, torch.Tensor]
    bands: list[str] | None
    source: str
    head: dict[str, torch.Tensor] | None = None
    notes: list[str] = field(default_factory=list)


def read_init_weights(spec: str, init_bands: list[str] | None = None) -> InitWeights:
    """Read ``model.init``: a folder, a file or a timm model name (see the module docstring)."""
    path = Path(spec)
    if path.is_dir():
        weights = _read_folder(path)
    elif path.is_file():
        weights = _from_state(_load_file(path), str(path), beside=path.parent)
    elif path.suffix or "/" in spec:
        raise InitError(f"model.init: {spec} not found")
    else:
        weights = _from_timm(spec)
    if init_bands:
        weights.bands = list(init_bands)
    channels = weights.state["patch_embed.proj.weight"].shape[1]
    if weights.bands is None:
        if channels == 3:
            weights.bands = ["R", "G", "B"]
            weights.notes.append("the weights' 3 input channels are taken as R, G, B (set model.init_bands "
                                 "if they are not)")
        elif channels == len(SSL4EO_L1C_BANDS):
            weights.bands = list(SSL4EO_L1C_BANDS)
            weights.notes.append("the weights' 13 input channels are taken as the Sentinel-2 L1C bands B01-B12 "
                                 "with B8A (torchgeo's SSL4EO-S12 order; set model.init_bands if they are not)")
        else:
            raise InitError(f"model.init: the weights take {channels} input bands; name them with "
                            f"model.init_bands=[...] so that they can be matched to the run's bands")
    if len(weights.bands) != channels:
        raise InitError(f"model.init_bands lists {len(weights.bands)} bands, the weights take {channels}")
    return weights


def _load_file(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - one line naming the file, whatever the cause
        raise InitError(f"model.init: {path} cannot be read as weights: {unreadable_reason(err, path)}") from None


def _read_folder(path: Path) -> InitWeights:
    if (path / EXPORT_WEIGHTS).is_file():  # a geodino export
        weights = _from_state(_load_file(path / EXPORT_WEIGHTS), f"export {path}")
        bands_file = path / EXPORT_BANDS
        if bands_file.is_file():
            weights.bands = [b["name"] for b in read_json(bands_file)["bands"]]
        return weights
    if (path / CHECKPOINT_NAME).is_file():  # a geodino run folder
        return _from_state(_load_file(path / CHECKPOINT_NAME), f"run {path}", beside=path)
    raise InitError(f"model.init: {path} is a folder with neither {EXPORT_WEIGHTS} (an export) nor "
                    f"{CHECKPOINT_NAME} (a run)")


def _from_timm(name: str) -> InitWeights:
    import timm

    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as err:  # noqa: BLE001 - offline, unknown name, no weights: one line
        raise InitError(f"model.init: {name!r} is neither a file nor a folder, and timm cannot load pretrained "
                        f"weights for it here ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    return InitWeights(state=model.state_dict(), bands=None, source=f"timm {name}")


def _from_state(state: dict[str, Any], source: str, beside: Path | None = None) -> InitWeights:
    """Backbone weights out of the layouts geodino, DINO, DINOv2 and others save."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise InitError(f"model.init: {source} holds a {type(state).__name__}, not a state dict (a mapping of "
                        "parameter names to tensors)")
    head = None
    bands = None
    notes: list[str] = []
    if "teacher" in state and "config" in state and "step" in state:  # a geodino pretraining checkpoint
        teacher = state["teacher"]
        head = {k[len("head."):]: v for k, v in teacher.items() if k.startswith("head.")}
        source += f" (its teacher at step {int(state['step'])})"
        state = {k[len("backbone.model."):]: v for k, v in teacher.items() if k.startswith("backbone.model.")}
        card = beside / "card.yaml" if beside is not None else None
        if card is not None and card.is_file():  # the run's bands, as pretraining wrote them
            bands = [b["name"] for b in read_yaml(card)["bands"]]
    else:
        for key in ("teacher", "state_dict", "model", "module"):  # DINO saves teacher and student
            if key in state and isinstance(state[key], dict):
                notes.append(f"weights read from the checkpoint's {key!r}")
                state = state[key]
                break
        state = _strip_prefixes(state)
    if not any(k.startswith("patch_embed.proj.weight") for k in state):
        raise InitError(f"model.init: {source} holds no ViT patch embedding (patch_embed.proj.weight); "
                        f"its keys start {sorted(state)[:5]}")
    state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}  # DINOv2 chunks
    return InitWeights(state=dict(state), bands=bands, source=source, head=head or None, notes=notes)


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the wrappers' prefixes (``module.``, ``backbone.``, ``encoder.``, ``model.``) that every key shares."""
    for prefix in ("module.", "backbone.", "encoder.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
        elif any(k.startswith(prefix) for k in state) and prefix in ("module.", "backbone."):
            # DINO's teacher: backbone.* and head.*; keep the backbone's
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def band_mapping(source: list[str], target: list[str]) -> list[tuple[str, str | None]]:
    """For each run band, the weights' band it copies (None: new)."""
    index = {canonical_band(b): b for b in source}
    return [(t, index.get(canonical_band(t))) for t in target]


def map_patch_embedding(weight: torch.Tensor, source: list[str], target: list[str]) -> torch.Tensor:
    """``[D, len(target), p, p]``: matched slices copied, new ones the mean of all the weights'
    slices, rescaled to their average norm."""
    position = {canonical_band(b): i for i, b in enumerate(source)}
    mapping = band_mapping(source, target)
    if all(s is None for _, s in mapping):
        raise InitError(f"model.init: none of the run's bands {target} is among the weights' bands {source}")
    mean = weight.mean(dim=1)
    norm = weight.flatten(2).norm(dim=2).mean(dim=1)  # per output unit: the average slice norm
    new = mean * (norm / mean.flatten(1).norm(dim=1).clamp_min(1e-12))[:, None, None]
    slices = [weight[:, position[canonical_band(s)]] if s is not None else new for _, s in mapping]
    return torch.stack(slices, dim=1).contiguous()


def apply_init(model: torch.nn.Module, weights: InitWeights, target_bands: list[str]) -> dict[str, Any]:
    """Load ``weights`` into the timm ViT ``model`` in place; returns the report (logged, saved with the run)."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    own = model.state_dict()
    state = dict(weights.state)
    notes = list(weights.notes)
    dropped = sorted(k for k in state if k.startswith(EXTRAS) and k not in own)
    for key in dropped:
        del state[key]
    if dropped:
        notes.append(f"dropped {len(dropped)} tensors no timm backbone uses: {', '.join(dropped[:6])}")

    patch = state["patch_embed.proj.weight"]
    if patch.shape[-2:] != own["patch_embed.proj.weight"].shape[-2:]:
        new_size = list(own["patch_embed.proj.weight"].shape[-2:])
        notes.append(f"patch embedding resampled from {list(patch.shape[-2:])} to {new_size} px patches "
                     "(FlexiViT pseudo-inverse resize)")
        patch = resample_patch_embed(patch, new_size)
    mapping = band_mapping(weights.bands, target_bands)
    state["patch_embed.proj.weight"] = map_patch_embedding(patch, weights.bands, target_bands)
    unused = sorted(set(map(canonical_band, weights.bands)) - {canonical_band(s) for _, s in mapping if s})
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = getattr(model, "num_prefix_tokens", 1)
        grid = model.patch_embed.grid_size
        notes.append(f"position embeddings resampled from {state['pos_embed'].shape[1] - prefix} to "
                     f"{grid[0]}x{grid[1]} patches (bicubic)")
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], list(grid), num_prefix_tokens=prefix)

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problems = [f"{name}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                    for name, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong))
                    if keys]
        raise InitError(f"model.init: {weights.source} does not fit this model.arch ({'; '.join(problems)}); "
                        "the architecture must match the weights' (e.g. vit_small_patch14_dinov2 for DINOv2 ViT-S/14)")
    model.load_state_dict(state, strict=True)
    report = {"source": weights.source, "bands": [{"band": t, "from": s} for t, s in mapping],
              "new_bands": [t for t, s in mapping if s is None], "unused_weight_bands": unused, "notes": notes}
    rows = "\n".join(f"    {t:>8} <- {s if s is not None else 'new (mean of all slices)'}" for t, s in mapping)
    log.info("model.init: %s\n%s%s", weights.source, rows,
             "".join(f"\n  note: {n}" for n in notes) + (f"\n  unused bands of the weights: {unused}" if unused else ""))
    return report


def load_head(head: torch.nn.Module, state: dict[str, torch.Tensor] | None) -> bool:
    """The DINO head from the init checkpoint when every shape fits; False (a fresh head) otherwise."""
    if not state:
        return False
    own = head.state_dict()
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
        log.info("model.init: the checkpoint's DINO head does not fit this one; the head starts fresh")
        return False
    head.load_state_dict(state)
    log.info("model.init: the DINO head continues from the checkpoint's")
    return True
