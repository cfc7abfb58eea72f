"""The recipe schema: every key a recipe may set, its type and its default.

Defaults are the reference DINO values (Caron et al. 2021) where the paper gives one; the
quickstart recipe overrides what it needs to run on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class RunConfig:
    out_dir: str = "runs/quickstart"
    seed: int = 0
    resume: str = "auto"  # "auto": continue from out_dir/checkpoint.pt if there; "never"; or a path
    max_steps: int = 0  # stop early after this many steps (0 = the full schedule); for smoke tests


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | imagefolder | shards (geodino.data.registry)
    # Folder (imagefolder) or shard folder / pattern / URL (shards: a folder's train split); must be
    # empty for synthetic, which reads no files.
    root: str = ""
    card: str = ""  # dataset card name or path; shards default to the card beside them
    image_size: int = 64  # size loaders deliver before multi-crop (synthetic, imagefolder)
    batch_size: int = 64  # per process
    num_workers: int = 0
    shuffle_buffer: int = 1000  # shards only
    samples_per_epoch: int = 0  # shards: defines the epoch length (0 = the shard index's count)
    bad_samples: Literal["error", "skip"] = "error"  # shards: stop, naming shard and key | record in bad_samples.jsonl
    max_bad_fraction: float = 0.001  # skip: stop once more than this fraction of the data was bad
    allow_incomplete: bool = False  # read shards of a conversion that did not finish (with a warning)
    # Embedded synthetic scenes (see geodino.data.synthetic)
    num_samples: int = 4096
    num_classes: int = 8
    # The k-NN check of pretraining: memory bank and queries (synthetic: held-out scenes; shards:
    # the first N samples of the train split and of the val, else test, split)
    eval_train_samples: int = 1024
    eval_val_samples: int = 512


@dataclass
class ModelConfig:
    arch: str = "vit_small_patch16_224"
    patch_size: int = 0  # 0 = the arch's own
    depth: int = 0  # ViT blocks; 0 = the arch's own (fewer make fast smoke tests)
    drop_path_rate: float = 0.1
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    use_bn_in_head: bool = False
    norm_last_layer: bool = True
    # Start from existing weights (geodino.models.init): an export or run folder, a checkpoint or
    # state dict file (timm, DINO, DINOv2, torchgeo layouts), or a timm model name; "" = random.
    init: str = ""
    init_bands: list[str] = field(default_factory=list)  # the weights' input bands, when not known


@dataclass
class AugmentConfig:
    mode: Literal["auto", "rgb", "multispectral"] = "auto"
    global_size: int = 224
    global_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_size: int = 96
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    n_local: int = 8
    modality_drop_p: float = 0.0
    modality_fill: float = 0.0
    modality_drop_on: Literal["all", "student"] = "all"
    # multispectral ops: joint (DINO-MM: brightness/contrast/grayscale over all bands together) |
    # physical (a gain on each band's physical quantity, contrast per band, grayscale per modality)
    band_ops: Literal["joint", "physical"] = "joint"
    # Per-view probabilities and strengths; defaults are the reference DINO recipe.
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2  # rgb mode only
    hue: float = 0.1  # rgb mode only
    grayscale_p: float = 0.2
    blur_p: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.5])  # global 1, global 2, locals
    solarize_p: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.0])
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # in output pixels


@dataclass
class OptimConfig:
    epochs: int = 100
    lr: float = 5e-4  # at a global batch of 256; scaled linearly with the global batch
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # 0 disables
    clip_mode: Literal["per_param", "global"] = "per_param"  # per_param: the reference's
    freeze_last_layer: int = 1  # epochs during which the prototype layer gets no update
    momentum_teacher: float = 0.996
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class DinoConfig:
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9


@dataclass
class SelfPatchConfig:
    """``objective.selfpatch``: SelfPatch's own settings (Yun et al. 2022)."""

    k: int = 4  # neighbours kept out of the 3x3 window
    blocks: int = 2  # class-attention blocks of the aggregation module


@dataclass
class MaskedConfig:
    """``objective.masked``: the masked-patch objective's own settings (iBOT-style)."""

    probability: float = 0.5  # chance that a student global crop is masked
    ratio: list[float] = field(default_factory=lambda: [0.1, 0.5])  # fraction of its patches masked


@dataclass
class ObjectiveConfig:
    """Patch-level objectives added to the image-level DINO loss (see geodino.objectives)."""

    patch: str = "none"  # none | selfpatch | masked
    patch_weight: float = 0.1  # total = DINO image loss + patch_weight x patch loss (SelfPatch: 0.1)
    patch_out_dim: int = 4096  # prototypes of the patch head
    # The patch head sees every patch token (SelfPatch) or the masked ones: narrower than the image
    # head's MLP (2048) to keep the step cheap; see `geodino bench step --objective`.
    patch_hidden_dim: int = 512
    patch_bottleneck_dim: int = 256
    patch_nlayers: int = 3
    patch_student_temp: float = 0.1
    patch_teacher_temp: float = 0.0  # 0 = the image loss's teacher temperature (dino.* schedule)
    patch_center_momentum: float = 0.9
    selfpatch: SelfPatchConfig = field(default_factory=lambda: SelfPatchConfig())
    masked: MaskedConfig = field(default_factory=lambda: MaskedConfig())


@dataclass
class TrainConfig:
    precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    checkpoint_every: int = 500  # steps; a checkpoint is always written at the end
    compile: bool = False
    progress: bool = True
    tf32: bool = True  # TF32 tensor cores for fp32 matmuls on NVIDIA GPUs (no effect elsewhere)
    # Experiment trackers Accelerate logs to: auto (TensorBoard when installed), none, or names:
    # tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive.
    trackers: list[str] = field(default_factory=lambda: ["auto"])


@dataclass
class EvalConfig:
    knn: bool = True  # k-NN of the random teacher (step 0) and the trained one (end; every knn_every steps)
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_every: int = 0  # steps; 0 = only before and after training


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
