"""One front door for data: the sources geodino reads, by name, and what each job gets from them.

A recipe's ``data.source`` names a source (``geodino eval`` turns its DATA argument into one).
Pretraining, evaluation and fine-tuning look the name up here with :func:`get_source` and call
the hook their job needs, so no job dispatches on source names itself:

- ``card(data)``: the dataset card of a recipe's ``data`` section: ``data.card`` when it names
  one, else the source's own (bands, statistics, classes, label kinds);
- ``pretrain_data(cfg, rank, world)``: :class:`~geodino.data.batches.PretrainData`;
- ``knn_data(cfg)``: labelled held-out sets for the k-NN check during pretraining, or None;
- ``labelled_set(spec, role, model_card, recipe, ...)``: a
  :class:`~geodino.data.labelled.LabelledSet` for ``geodino eval``;
- ``segmentation_data(cfg, card)``: :class:`~geodino.data.segmentation.SegData` for
  ``geodino finetune seg``.

Each source also declares the recipe's ``data.*`` keys it reads for each job (``READS``, see
:meth:`DataSource.keys_read`): loading a recipe refuses a key given on the command line that the
chosen source does not read, and logs one that the recipe file sets, instead of ignoring it.

A source overrides the hooks it can serve; the others raise :class:`SourceError` naming the
sources that can. A new source subclasses :class:`DataSource` and is added with
:func:`register_source`. Heavy modules are imported inside the hooks, so that looking a name up
(e.g. while validating a recipe) stays cheap.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from geodino.data.card import CardError, DatasetCard

log = logging.getLogger(__name__)

# Job → the hook that serves it.
JOBS = {"pretraining": "pretrain_data", "evaluation": "labelled_set", "segmentation": "segmentation_data"}
ROLES = ("train", "val")
# The data.* keys every source reads for a job; a source adds its own in READS.
COMMON_KEYS = {
    "pretraining": frozenset({"source", "batch_size", "num_workers"}),
    "segmentation": frozenset({"source", "batch_size", "num_workers", "image_size"}),
}


class SourceError(ValueError):
    """An unknown data source, or a source asked for a job it cannot serve."""


def _as_mapping(data: Any) -> Mapping[str, Any]:
    return dataclasses.asdict(data) if dataclasses.is_dataclass(data) else dict(data or {})


class DataSource:
    """A kind of data and what each job can get from it (see the module docstring).

    ``reads_files``: whether the source reads ``data.root`` (every source but the generated
    synthetic scenes), which recipe validation uses to ask for the key or refuse it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reads_files: ClassVar[bool] = True
    READS: ClassVar[dict[str, frozenset[str]]] = {}  # job → the data.* keys this source reads beyond COMMON_KEYS

    def keys_read(self, job: str) -> frozenset[str]:
        """The recipe's ``data.*`` keys this source reads for ``job`` (``root`` when it reads files)."""
        own = self.READS.get(job, frozenset()) | ({"root"} if self.reads_files else frozenset())
        return COMMON_KEYS.get(job, frozenset()) | own

    def serves(self, job: str) -> bool:
        """Whether this source fills the hook of ``job`` (one of :data:`JOBS`)."""
        hook = JOBS[job]
        return getattr(type(self), hook) is not getattr(DataSource, hook)

    def _cannot(self, job: str) -> SourceError:
        able = source_names(job)
        return SourceError(f"data source {self.name!r} cannot be used for {job}; sources that can: {', '.join(able)}")

    # -- hooks -------------------------------------------------------------------------------------
    def card(self, data: Any) -> DatasetCard:
        """The card of a recipe's ``data`` section (a mapping or the recipe's dataclass)."""
        data = _as_mapping(data)
        if data.get("card"):
            return DatasetCard.load(data["card"])
        return self.default_card(data)

    def default_card(self, data: Mapping[str, Any]) -> DatasetCard:
        raise CardError(f"cannot tell the dataset card of data.source={self.name!r}; name it (data.card, --card)")

    def pretrain_data(self, cfg: Any, rank: int, world: int):
        raise self._cannot("pretraining")

    def knn_data(self, cfg: Any):
        """``(memory bank, queries)`` as :class:`~geodino.data.labelled.LabelledSet` for the k-NN
        check of a pretraining run, or None when the data has no labelled held-out part."""
        return None

    def labelled_set(self, spec: str, role: str, model_card: DatasetCard, recipe: Mapping[str, Any], *,
                     label: str = "auto", split: str | None = None, num_samples: int | None = None,
                     image_size: int | None = None, split_option: str = "--val-split"):
        raise self._cannot("evaluation")

    def segmentation_data(self, cfg: Any, card: DatasetCard | None):
        raise self._cannot("segmentation")


_SOURCES: dict[str, DataSource] = {}


def register_source(cls: type[DataSource]) -> type[DataSource]:
    """Add a source class to the registry under its ``name`` (usable as a class decorator)."""
    if not cls.name:
        raise SourceError(f"{cls.__name__} has no name")
    if cls.name in _SOURCES and type(_SOURCES[cls.name]) is not cls:
        raise SourceError(f"data source {cls.name!r} is registered twice ({type(_SOURCES[cls.name]).__name__}, "
                          f"{cls.__name__})")
    _SOURCES[cls.name] = cls()
    return cls


def source_names(job: str | None = None) -> list[str]:
    """The registered source names, in registration order; with ``job``, those that serve it."""
    return [name for name, source in _SOURCES.items() if job is None or source.serves(job)]


def get_source(name: str, job: str | None = None) -> DataSource:
    """The source called ``name``; with ``job``, refused unless the source serves that job."""
    source = _SOURCES.get(name)
    if source is None:
        raise SourceError(f"unknown data source {name!r}; known sources: {', '.join(source_names())}")
    if job is not None and not source.serves(job):
        raise source._cannot(job)
    return source


# -- the built-in sources --------------------------------------------------------------------------
@register_source
class SyntheticSource(DataSource):
    name = "synthetic"
    description = "the embedded synthetic SAR-optical scenes (generated, no files)"
    reads_files = False
    READS = {"pretraining": frozenset({"image_size", "num_samples", "num_classes", "eval_train_samples",
                                       "eval_val_samples"}),
             "segmentation": frozenset({"num_samples", "val_samples", "num_classes"})}
    LABELS = ("label", "labels")  # dominant class, multi-hot of the classes covering >= 10 %

    def default_card(self, data: Mapping[str, Any]) -> DatasetCard:
        from geodino.data.synthetic import synthetic_card

        return synthetic_card(int(data.get("num_classes", 8)))

    def pretrain_data(self, cfg: Any, rank: int, world: int):
        from geodino.data.batches import map_style_pretrain_data
        from geodino.data.synthetic import SyntheticScenes

        d = cfg.data
        dataset = SyntheticScenes(d.num_samples, d.image_size, d.num_classes, seed=cfg.run.seed)
        return map_style_pretrain_data(dataset, dataset.card, cfg, rank, world,
                                       f"{len(dataset)} synthetic scenes of {d.image_size} px")

    def knn_data(self, cfg: Any):
        from geodino.data.synthetic import SyntheticScenes

        from geodino.data.labelled import LabelledSet

        d = cfg.data
        bank = SyntheticScenes(d.eval_train_samples, d.image_size, d.num_classes, cfg.run.seed, split="knn_train")
        query = SyntheticScenes(d.eval_val_samples, d.image_size, d.num_classes, cfg.run.seed, split="knn_val")
        names = list(bank.card.classes)
        return (LabelledSet(bank, "label", f"{len(bank)} held-out synthetic scenes", names),
                LabelledSet(query, "label", f"{len(query)} other held-out synthetic scenes", names))

    def labelled_set(self, spec: str, role: str, model_card: DatasetCard, recipe: Mapping[str, Any], *,
                     label: str = "auto", split: str | None = None, num_samples: int | None = None,
                     image_size: int | None = None, split_option: str = "--val-split"):
        from geodino.data.labelled import LabelledSet, choose_label
        from geodino.data.synthetic import SyntheticScenes, synthetic_card

        if split is not None:  # the bank and the queries are fixed, disjoint scene streams
            raise ValueError(f"{split_option} {split}: "
                             "the synthetic scenes have no splits (the bank and the queries never overlap)")
        data = dict(recipe.get("data", {}))
        if data.get("source", self.name) != self.name:
            # Pretrained on the synthetic scenes written as shards: same bands, the card's classes.
            if model_card.band_names != synthetic_card().band_names:
                raise ValueError("DATA=synthetic needs a checkpoint pretrained on the synthetic scenes "
                                 f"(this one used data.source={data.get('source')!r}, card {model_card.name!r})")
            data = {"num_classes": len(model_card.classes) or 8, "image_size": recipe["augment"]["global_size"]}
        label = choose_label(label, list(self.LABELS), "the synthetic scenes")
        default = data.get("eval_train_samples", 1024) if role == "train" else data.get("eval_val_samples", 512)
        # Memory bank and queries come from disjoint scene streams, never from the pretraining scenes.
        dataset = SyntheticScenes(num_samples or default, image_size or data.get("image_size", 64),
                                  data.get("num_classes", 8), seed=recipe.get("run", {}).get("seed", 0),
                                  split="knn_train" if role == "train" else "knn_val")
        return LabelledSet(dataset, label, f"{len(dataset)} synthetic scenes ({role})", list(dataset.card.classes))

    def segmentation_data(self, cfg: Any, card: DatasetCard | None):
        from geodino.data.segmentation import synthetic_seg_data

        return synthetic_seg_data(cfg, card)


@register_source
class ImageFolderSource(DataSource):
    name = "imagefolder"
    description = "RGB images in ImageNet-style class folders (root/<class>/<image>)"
    READS = {"pretraining": frozenset({"card", "image_size", "bad_samples", "max_bad_fraction"})}

    def default_card(self, data: Mapping[str, Any]) -> DatasetCard:
        return DatasetCard.load("imagenet")

    def pretrain_data(self, cfg: Any, rank: int, world: int):
        from geodino.data.batches import map_style_pretrain_data
        from geodino.data.sources.imagefolder import ImageFolderDataset

        d = cfg.data
        dataset = ImageFolderDataset(d.root, image_size=d.image_size, uint8=True)  # /255 on the device
        return map_style_pretrain_data(dataset, self.card(d), cfg, rank, world,
                                       f"{len(dataset)} images under {d.root}")


@register_source
class ShardSource(DataSource):
    name = "shards"
    description = "webdataset shards written by `geodino shard` (a folder, pattern, list or URL)"
    READS = {"pretraining": frozenset({"card", "image_size", "shuffle_buffer", "samples_per_epoch", "bad_samples",
                                       "max_bad_fraction", "allow_incomplete", "eval_train_samples",
                                       "eval_val_samples"}),  # image_size: RGB shards are resized to it
             "segmentation": frozenset({"train_split", "val_split", "num_samples", "val_samples"})}

    def default_card(self, data: Mapping[str, Any]) -> DatasetCard:
        from geodino.data.shards.format import expand_shards

        root = data.get("root")
        try:
            # Any shard will do: a folder has one card for all of its splits.
            return DatasetCard.beside_shards(expand_shards(root)[0])
        except (FileNotFoundError, CardError) as err:
            raise CardError(f"the card of the shards ({root!r}) cannot be read ({err}); name it (data.card, --card)") \
                from None

    def pretrain_data(self, cfg: Any, rank: int, world: int):
        from geodino.data.shards.stream import shard_pretrain_data
        from geodino.data.splits import training_split

        choice = training_split(cfg.data.root, allow_incomplete=cfg.data.allow_incomplete)
        data = shard_pretrain_data(cfg, rank, world)
        data.description = choice.describe()
        return data

    def knn_data(self, cfg: Any):
        """Bank: the first ``data.eval_train_samples`` of the train split; queries: the first
        ``data.eval_val_samples`` of the val (else test) split, with the card's preferred
        image-level label. None, with a log line saying why, when there is no such split or label."""
        from geodino.config.load import config_to_dict
        from geodino.data.splits import SplitError

        card = cfg.data.card or None
        try:
            model_card = DatasetCard.load(card) if card else self.default_card({"root": cfg.data.root})
            recipe = config_to_dict(cfg)
            bank = self.labelled_set(cfg.data.root, "train", model_card, recipe,
                                     num_samples=cfg.data.eval_train_samples)
            query = self.labelled_set(cfg.data.root, "val", model_card, recipe, label=bank.label_key,
                                      num_samples=cfg.data.eval_val_samples, split_option="data.root")
        except (SplitError, ValueError, OSError, CardError) as err:
            log.info("no k-NN check during pretraining: %s", err)
            return None
        return bank, query

    def labelled_set(self, spec: str, role: str, model_card: DatasetCard, recipe: Mapping[str, Any], *,
                     label: str = "auto", split: str | None = None, num_samples: int | None = None,
                     image_size: int | None = None, split_option: str = "--val-split"):
        from geodino.data.labelled import PIXEL_LABELS, LabelledSet, ShardSamples, choose_label, label_class_names
        from geodino.data.shards.read import iter_samples
        from geodino.data.shards.stream import NOT_BATCHED
        from geodino.data.splits import training_split, validation_split

        if image_size is not None:
            raise ValueError("--image-size sizes the generated synthetic scenes; shards are read as stored "
                             "(--size sets the backbone's input size)")
        choice = training_split(spec, split) if role == "train" else validation_split(spec, split, split_option)
        paths = choice.paths
        try:
            data_card = DatasetCard.beside_shards(paths[0])
        except CardError:
            data_card = None
        where = f"the shards at {spec}"
        bands = data_card.band_names if data_card is not None else None
        # A card that declares its labels is believed; otherwise the first sample shows them.
        kinds = data_card.label_kinds if data_card is not None and "labels" in data_card.extra else None
        if kinds is None or bands is None:
            first = next(iter(iter_samples(paths[:1])), None)
            if first is None:
                raise ValueError(f"{paths[0]} holds no samples")
            bands = bands or first["meta"].get("bands")
            if kinds is None:
                preferred = data_card.label_kinds if data_card is not None else []
                # Image-level labels are class indices and 1-D (multi-hot) arrays; of the 2-D
                # arrays only a mask is a label (raw codes such as corine.npy are not).
                found = [k for k in first if k not in NOT_BATCHED
                         and (k == "label" or k in PIXEL_LABELS or getattr(first[k], "ndim", 2) == 1)]
                kinds = [k for k in preferred if k in first] + [k for k in found if k not in preferred]
        if bands is not None and list(bands) != model_card.band_names:
            raise ValueError(f"{where} hold bands {list(bands)}, the model takes {model_card.band_names} "
                             "(in that order)")
        label = choose_label(label, kinds, where)
        description = (f"the first {num_samples} samples of " if num_samples else "") + choice.describe()
        return LabelledSet(ShardSamples(paths, label, num_samples), label, description,
                           label_class_names(data_card, label), shards=list(paths))

    def segmentation_data(self, cfg: Any, card: DatasetCard | None):
        from geodino.data.segmentation import shard_seg_data

        return shard_seg_data(cfg, card)


@register_source
class SEN12MSSource(DataSource):
    name = "sen12ms"
    description = "a local copy of SEN12MS (read by torchgeo), for segmentation"
    READS = {"segmentation": frozenset({"card", "train_split", "val_split", "num_samples", "val_samples", "label_map"})}

    def default_card(self, data: Mapping[str, Any]) -> DatasetCard:
        raise CardError("data.card: needed to read SEN12MS without a pretrained checkpoint (band order, statistics)")

    def segmentation_data(self, cfg: Any, card: DatasetCard | None):
        from geodino.data.segmentation import sen12ms_seg_data

        return sen12ms_seg_data(cfg, card or self.card(cfg.data))
