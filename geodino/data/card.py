"""Dataset cards: the bands, their order and modality, per-band statistics and classes of a dataset.

Sensors and bands are data, not code branches: everything downstream (normalisation, modality
masking, previews, evaluation) reads a card instead of hard-coding a sensor. Cards live as YAML in
``geodino/datasets/`` inside the package (found by name) and are also written next to shards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geodino.resources import CARDS, packaged_file, packaged_names
from geodino.utils import read_yaml, write_text_atomic


class CardError(ValueError):
    """A dataset card is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Band:
    name: str
    modality: str
    unit: str = ""
    resolution_m: float | None = None


@dataclass
class DatasetCard:
    name: str
    bands: list[Band]
    mean: list[float] | None = None
    std: list[float] | None = None
    classes: list[str] = field(default_factory=list)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise CardError(f"card {self.name!r}: duplicate band names in {names}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != len(self.bands):
                raise CardError(
                    f"card {self.name!r}: {key} has {len(values)} values for {len(self.bands)} bands"
                )
        if self.std is not None:
            for band, s in zip(self.bands, self.std):
                if not s > 0:
                    raise CardError(f"card {self.name!r}: band {band.name} has std {s} (must be > 0)")

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    @property
    def modalities(self) -> dict[str, list[int]]:
        """Channel indices of each modality, in band order (e.g. ``{'s2': [0..11], 's1': [12, 13]}``)."""
        groups: dict[str, list[int]] = {}
        for i, band in enumerate(self.bands):
            groups.setdefault(band.modality, []).append(i)
        return groups

    @property
    def label_kinds(self) -> list[str]:
        """The labels a sample of this dataset carries, in order of preference (``labels:`` in the
        card, e.g. ``[labels19, labels43, mask]``); a card that does not say has a class index
        (``label``) when it lists classes, and no labels otherwise."""
        declared = self.extra.get("labels")
        if declared is None:
            return ["label"] if self.classes else []
        if not isinstance(declared, list) or not all(isinstance(k, str) for k in declared):
            raise CardError(f"card {self.name!r}: labels must be a list of label names, got {declared!r}")
        return list(declared)

    def band_index(self, name: str) -> int:
        try:
            return self.band_names.index(name)
        except ValueError:
            raise CardError(f"card {self.name!r} has no band {name!r}; bands: {self.band_names}") from None

    def with_statistics(self, mean: list[float], std: list[float]) -> DatasetCard:
        return dataclasses.replace(self, mean=[float(m) for m in mean], std=[float(s) for s in std])

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["bands"] = [
            {k: v for k, v in dataclasses.asdict(b).items() if v not in ("", None)} for b in self.bands
        ]
        if self.mean is not None:
            out["statistics"] = {"mean": list(self.mean), "std": list(self.std or [])}
        if self.classes:
            out["classes"] = list(self.classes)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> DatasetCard:
        data = dict(data)
        try:
            name = data.pop("name")
            bands = [Band(**b) for b in data.pop("bands")]
        except (KeyError, TypeError) as err:
            raise CardError(f"{source}: a card needs 'name' and 'bands' (name, modality): {err}") from None
        stats = data.pop("statistics", None) or {}
        return cls(
            name=name,
            bands=bands,
            mean=stats.get("mean"),
            std=stats.get("std"),
            classes=list(data.pop("classes", []) or []),
            description=data.pop("description", ""),
            extra=data,
        )

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def beside_shards(cls, url: str) -> DatasetCard:
        """The ``card.yaml`` written beside a shard (a local path or a remote shard URL)."""
        from geodino.data.shards.format import CARD_FILE, read_beside

        text = read_beside(url, CARD_FILE)
        if text is None:
            raise CardError(f"no {CARD_FILE} beside {url}: name the dataset card with data.card (or --card)")
        source = f"the {CARD_FILE} beside {url}"
        try:
            data = read_yaml(source, text)
        except ValueError as err:
            raise CardError(str(err)) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, name_or_path: str | Path) -> DatasetCard:
        """Load a card from a YAML path, or by name from the cards packaged with geodino."""
        path = Path(name_or_path)
        if not path.suffix:
            path = packaged_file(CARDS, str(name_or_path)) or path
        if not path.is_file():
            raise CardError(f"dataset card {str(name_or_path)!r} not found (known cards: {packaged_names(CARDS)})")
        try:
            data = read_yaml(path)
        except ValueError as err:
            raise CardError(f"dataset card {err}") from None
        return cls.from_dict(data, source=str(path))
