"""The recipe schema: every key a recipe may set, its type and its default.

Defaults are the reference DINO values (Caron et al. 2021) where the paper gives one; the
quickstart recipe overrides what it needs to run on a laptop CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Range:
    """The values a numeric key, or each item of a list key, may take; checked on loading
    (:func:`geodino.config.load.check_ranges`), so that a value outside it is an error naming the
    key before any work starts instead of a crash, or a silently odd run, later."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    length: int | None = None  # list keys: exactly this many items
    why: str = ""  # said with the error

    def describe(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}" if high else "a finite number"

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None."""
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                return f"expected {self.length} values, got {value}"
            for i, item in enumerate(value):
                if self.problem(item):
                    return f"item {i} must be {self.describe()}, got {value}"
            return None
        ok = (math.isfinite(value) and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if ok else f"must be {self.describe()}{f' ({self.why})' if self.why else ''}, got {value}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bounded(default: Any, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, length: int | None = None, why: str = "") -> Any:
    """A schema field whose values must lie in a :class:`Range`."""
    meta = {"range": Range(ge, gt, le, lt, length, why)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


PROBABILITY = dict(ge=0, le=1)


def number(kind: type, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """An argparse ``type=`` for a command-line number that must lie in a :class:`Range`: the
    options' counterpart of :func:`bounded` (``--k 0`` is refused by name, not met mid-run)."""
    import argparse

    bounds = Range(ge, gt, le, lt)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        problem = bounds.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


@dataclass
class RunConfig:
    out_dir: str = "runs/quickstart"
    seed: int = bounded(0, ge=0, lt=2**32)
    resume: str = "auto"  # "auto": continue from out_dir/checkpoint.pt if there; "never"; or a path
    max_steps: int = bounded(0, ge=0)  # stop early after this many steps (0 = the full schedule); for smoke tests


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | imagefolder | shards (geodino.data.registry)
    # Folder (imagefolder) or shard folder / pattern / URL (shards: a folder's train split); must be
    # empty for synthetic, which reads no files.
    root: str = ""
    card: str = ""  # dataset card name or path; shards default to the card beside them
    image_size: int = bounded(64, ge=1)  # size loaders deliver before multi-crop (synthetic, imagefolder)
    batch_size: int = bounded(64, ge=1)  # per process
    num_workers: int = bounded(0, ge=0)
    shuffle_buffer: int = bounded(1000, ge=0)  # shards only
    samples_per_epoch: int = bounded(0, ge=0)  # shards: defines the epoch length (0 = the shard index's count)
    bad_samples: Literal["error", "skip"] = "error"  # shards: stop, naming shard and key | record in bad_samples.jsonl
    max_bad_fraction: float = bounded(0.001, **PROBABILITY)  # skip: stop once more than this fraction of the data was bad
    allow_incomplete: bool = False  # read shards of a conversion that did not finish (with a warning)
    # Embedded synthetic scenes (see geodino.data.synthetic)
    num_samples: int = bounded(4096, ge=0)  # synthetic: at least 1 (other sources ignore it)
    num_classes: int = bounded(8, ge=2)
    # The k-NN check of pretraining: memory bank and queries (synthetic: held-out scenes; shards:
    # the first N samples of the train split and of the val, else test, split)
    eval_train_samples: int = bounded(1024, ge=1)
    eval_val_samples: int = bounded(512, ge=1)


@dataclass
class ModelConfig:
    arch: str = "vit_small_patch16_224"
    patch_size: int = bounded(0, ge=0)  # 0 = the arch's own
    depth: int = bounded(0, ge=0)  # ViT blocks; 0 = the arch's own (fewer make fast smoke tests)
    drop_path_rate: float = bounded(0.1, ge=0, lt=1)
    out_dim: int = bounded(65536, ge=2, why="the DINO head needs at least 2 prototypes; with 1 the loss is 0")
    hidden_dim: int = bounded(2048, ge=1)
    bottleneck_dim: int = bounded(256, ge=1)
    nlayers: int = bounded(3, ge=1)
    use_bn_in_head: bool = False
    norm_last_layer: bool = True
    # Start from existing weights (geodino.models.init): an export or run folder, a checkpoint or
    # state dict file (timm, DINO, DINOv2, torchgeo layouts), or a timm model name; "" = random.
    init: str = ""
    init_bands: list[str] = field(default_factory=list)  # the weights' input bands, when not known


@dataclass
class AugmentConfig:
    mode: Literal["auto", "rgb", "multispectral"] = "auto"
    global_size: int = bounded(224, ge=1)
    global_scale: list[float] = bounded([0.4, 1.0], gt=0, le=1, length=2)
    local_size: int = bounded(96, ge=1)
    local_scale: list[float] = bounded([0.05, 0.4], gt=0, le=1, length=2)
    n_local: int = bounded(8, ge=0)
    modality_drop_p: float = bounded(0.0, **PROBABILITY)
    modality_fill: float = 0.0
    modality_drop_on: Literal["all", "student"] = "all"
    # multispectral ops: joint (DINO-MM: brightness/contrast/grayscale over all bands together) |
    # physical (a gain on each band's physical quantity, contrast per band, grayscale per modality)
    band_ops: Literal["joint", "physical"] = "joint"
    # Per-view probabilities and strengths; defaults are the reference DINO recipe.
    flip_p: float = bounded(0.5, **PROBABILITY)
    jitter_p: float = bounded(0.8, **PROBABILITY)
    brightness: float = bounded(0.4, ge=0)
    contrast: float = bounded(0.4, ge=0)
    saturation: float = bounded(0.2, ge=0)  # rgb mode only
    hue: float = bounded(0.1, ge=0, le=0.5)  # rgb mode only
    grayscale_p: float = bounded(0.2, **PROBABILITY)
    blur_p: list[float] = bounded([1.0, 0.1, 0.5], **PROBABILITY, length=3)  # global 1, global 2, locals
    solarize_p: list[float] = bounded([0.0, 0.2, 0.0], **PROBABILITY, length=3)
    blur_sigma: list[float] = bounded([0.1, 2.0], gt=0, length=2)  # in output pixels


@dataclass
class OptimConfig:
    epochs: int = bounded(100, ge=1)
    lr: float = bounded(5e-4, gt=0)  # at a global batch of 256; scaled linearly with the global batch
    min_lr: float = bounded(1e-6, ge=0)
    warmup_epochs: int = bounded(10, ge=0)
    weight_decay: float = bounded(0.04, ge=0)
    weight_decay_end: float = bounded(0.4, ge=0)
    clip_grad: float = bounded(3.0, ge=0)  # 0 disables
    clip_mode: Literal["per_param", "global"] = "per_param"  # per_param: the reference's
    freeze_last_layer: int = bounded(1, ge=0)  # epochs during which the prototype layer gets no update
    momentum_teacher: float = bounded(0.996, **PROBABILITY)
    betas: list[float] = bounded([0.9, 0.999], ge=0, lt=1, length=2)


@dataclass
class DinoConfig:
    student_temp: float = bounded(0.1, gt=0)
    teacher_temp: float = bounded(0.04, gt=0)
    warmup_teacher_temp: float = bounded(0.04, gt=0)
    warmup_teacher_temp_epochs: int = bounded(0, ge=0)
    center_momentum: float = bounded(0.9, **PROBABILITY)


@dataclass
class SelfPatchConfig:
    """``objective.selfpatch``: SelfPatch's own settings (Yun et al. 2022)."""

    k: int = bounded(4, ge=1, le=8, why="a 3x3 window has 8 neighbours")  # neighbours kept out of the 3x3 window
    blocks: int = bounded(2, ge=1)  # class-attention blocks of the aggregation module


@dataclass
class MaskedConfig:
    """``objective.masked``: the masked-patch objective's own settings (iBOT-style)."""

    probability: float = bounded(0.5, **PROBABILITY)  # chance that a student global crop is masked
    ratio: list[float] = bounded([0.1, 0.5], **PROBABILITY, length=2)  # fraction of its patches masked


@dataclass
class ObjectiveConfig:
    """Patch-level objectives added to the image-level DINO loss (see geodino.objectives)."""

    patch: str = "none"  # none | selfpatch | masked
    patch_weight: float = bounded(0.1, ge=0)  # total = DINO image loss + patch_weight x patch loss (SelfPatch: 0.1)
    patch_out_dim: int = bounded(4096, ge=2, why="the patch head needs at least 2 prototypes")  # prototypes of the patch head
    # The patch head sees every patch token (SelfPatch) or the masked ones: narrower than the image
    # head's MLP (2048) to keep the step cheap; see `geodino bench step --objective`.
    patch_hidden_dim: int = bounded(512, ge=1)
    patch_bottleneck_dim: int = bounded(256, ge=1)
    patch_nlayers: int = bounded(3, ge=1)
    patch_student_temp: float = bounded(0.1, gt=0)
    patch_teacher_temp: float = bounded(0.0, ge=0)  # 0 = the image loss's teacher temperature (dino.* schedule)
    patch_center_momentum: float = bounded(0.9, ge=0, lt=1)
    selfpatch: SelfPatchConfig = field(default_factory=lambda: SelfPatchConfig())
    masked: MaskedConfig = field(default_factory=lambda: MaskedConfig())


@dataclass
class TrainConfig:
    precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = bounded(10, ge=1)
    checkpoint_every: int = bounded(500, ge=1)  # steps; a checkpoint is always written at the end
    compile: bool = False
    progress: bool = True
    tf32: bool = True  # TF32 tensor cores for fp32 matmuls on NVIDIA GPUs (no effect elsewhere)
    # Experiment trackers Accelerate logs to: auto (TensorBoard when installed), none, or names:
    # tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive.
    trackers: list[str] = field(default_factory=lambda: ["auto"])


@dataclass
class EvalConfig:
    knn: bool = True  # k-NN of the random teacher (step 0) and the trained one (end; every knn_every steps)
    knn_k: int = bounded(20, ge=1)
    knn_temperature: float = bounded(0.07, gt=0)
    knn_every: int = bounded(0, ge=0)  # steps; 0 = only before and after training


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
