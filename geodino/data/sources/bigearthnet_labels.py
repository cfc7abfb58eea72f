"""BigEarthNet label nomenclatures: CORINE Land Cover level 3, the 43-class and 19-class sets.

- ``CORINE_LEVEL3``: the 44 CLC level-3 codes (111..523) and their official names.
- ``CLASSES_43``: BigEarthNet's original labels, i.e. CLC level 3 without "Glaciers and perpetual
  snow" (335), in CLC code order and spelled as in the BigEarthNet v1 metadata JSONs (which
  differ from CLC in four names, e.g. "Peatbogs" for "Peat bogs"; both spellings are accepted).
- ``CLASSES_19``: the BigEarthNet-19 nomenclature of Sumbul et al. 2020 ("BigEarthNet-MM",
  IEEE GRSM), which merges 32 of the 43 labels into 19 classes and drops the other 11.

Everything else (code → class tables, the lookup used to turn reference maps into masks) is
derived from these tables so that there is one source of truth.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

CORINE_LEVEL3: dict[int, str] = {
    111: "Continuous urban fabric",
    112: "Discontinuous urban fabric",
    121: "Industrial or commercial units",
    122: "Road and rail networks and associated land",
    123: "Port areas",
    124: "Airports",
    131: "Mineral extraction sites",
    132: "Dump sites",
    133: "Construction sites",
    141: "Green urban areas",
    142: "Sport and leisure facilities",
    211: "Non-irrigated arable land",
    212: "Permanently irrigated land",
    213: "Rice fields",
    221: "Vineyards",
    222: "Fruit trees and berry plantations",
    223: "Olive groves",
    231: "Pastures",
    241: "Annual crops associated with permanent crops",
    242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
    244: "Agro-forestry areas",
    311: "Broad-leaved forest",
    312: "Coniferous forest",
    313: "Mixed forest",
    321: "Natural grasslands",
    322: "Moors and heathland",
    323: "Sclerophyllous vegetation",
    324: "Transitional woodland-shrub",
    331: "Beaches, dunes, sands",
    332: "Bare rocks",
    333: "Sparsely vegetated areas",
    334: "Burnt areas",
    335: "Glaciers and perpetual snow",
    411: "Inland marshes",
    412: "Peat bogs",
    421: "Salt marshes",
    422: "Salines",
    423: "Intertidal flats",
    511: "Water courses",
    512: "Water bodies",
    521: "Coastal lagoons",
    522: "Estuaries",
    523: "Sea and ocean",
}

# BigEarthNet spells four CLC names differently; these are its spellings, keyed by CLC code.
_BIGEARTHNET_SPELLING = {
    321: "Natural grassland",
    324: "Transitional woodland/shrub",
    332: "Bare rock",
    412: "Peatbogs",
}
# Not a BigEarthNet label: no patch of the archive is covered by glaciers.
_NOT_IN_BIGEARTHNET = (335,)

CODES_43: tuple[int, ...] = tuple(c for c in CORINE_LEVEL3 if c not in _NOT_IN_BIGEARTHNET)
CLASSES_43: tuple[str, ...] = tuple(_BIGEARTHNET_SPELLING.get(c, CORINE_LEVEL3[c]) for c in CODES_43)

CLASSES_19: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

# 19-class name -> the 43-class labels it merges (a class not listed keeps its own single label).
_MERGES: dict[str, tuple[str, ...]] = {
    "Urban fabric": ("Continuous urban fabric", "Discontinuous urban fabric"),
    "Arable land": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields"),
    "Permanent crops": (
        "Vineyards",
        "Fruit trees and berry plantations",
        "Olive groves",
        "Annual crops associated with permanent crops",
    ),
    "Natural grassland and sparsely vegetated areas": ("Natural grassland", "Sparsely vegetated areas"),
    "Moors, heathland and sclerophyllous vegetation": ("Moors and heathland", "Sclerophyllous vegetation"),
    "Transitional woodland, shrub": ("Transitional woodland/shrub",),
    "Inland wetlands": ("Inland marshes", "Peatbogs"),
    "Coastal wetlands": ("Salt marshes", "Salines"),
    "Inland waters": ("Water courses", "Water bodies"),
    "Marine waters": ("Coastal lagoons", "Estuaries", "Sea and ocean"),
}

DROPPED_43: tuple[str, ...] = (
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Bare rock",
    "Burnt areas",
    "Intertidal flats",
)

MAP_43_TO_19: dict[str, str | None] = {name: None for name in DROPPED_43}
for _target in CLASSES_19:
    for _member in _MERGES.get(_target, (_target,)):
        MAP_43_TO_19[_member] = _target

# The published mapping: every 43-class label is either merged into one of the 19 classes (32)
# or dropped (11), and every one of the 19 classes receives at least one label.
assert len(CORINE_LEVEL3) == 44 and len(CLASSES_43) == 43 and len(CLASSES_19) == 19
assert set(MAP_43_TO_19) == set(CLASSES_43), set(MAP_43_TO_19) ^ set(CLASSES_43)
assert sum(v is not None for v in MAP_43_TO_19.values()) == 32 and len(DROPPED_43) == 11
assert set(v for v in MAP_43_TO_19.values() if v) == set(CLASSES_19)

NO_CLASS = 255  # mask value for pixels with no 19-class label (dropped labels, no data)


class UnknownLabelError(KeyError):
    """A label name that is neither a BigEarthNet 43-class, a CLC level-3 nor a 19-class name."""

    def __str__(self) -> str:
        return str(self.args[0])


def _folded(name: str) -> str:
    # Case, punctuation and spacing vary between releases ("Transitional woodland/shrub",
    # "Transitional woodland-shrub", "Peatbogs", "Peat bogs"); letters and digits do not.
    return re.sub(r"[^0-9a-z]", "", name.lower())


_LOOKUP_43: dict[str, str] = {_folded(n): n for n in CLASSES_43}
_LOOKUP_43.update({_folded(CORINE_LEVEL3[c]): _BIGEARTHNET_SPELLING[c] for c in _BIGEARTHNET_SPELLING})
_LOOKUP_19: dict[str, str] = {_folded(n): n for n in CLASSES_19}


def canonical_43(name: str) -> str | None:
    """The BigEarthNet 43-class spelling of ``name`` (CLC spellings accepted), or None."""
    return _LOOKUP_43.get(_folded(name))


def canonical_19(name: str) -> str | None:
    """The 19-class spelling of ``name``, or None if it is not a 19-class name."""
    return _LOOKUP_19.get(_folded(name))


def multi_hot(names: Iterable[str], classes: tuple[str, ...]) -> np.ndarray:
    """uint8 vector with ones at the positions of ``names`` (already canonical) in ``classes``."""
    out = np.zeros(len(classes), dtype=np.uint8)
    for name in names:
        out[classes.index(name)] = 1
    return out


def labels_from_names(names: Iterable[str], nomenclature: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Multi-hot 43-class and 19-class vectors from a patch's label names.

    ``nomenclature="43"``: the names are 43-class labels (CLC spellings accepted, as in the v1
    metadata JSONs); both vectors are returned, the 19-class one through :data:`MAP_43_TO_19`.
    ``nomenclature="19"``: the names are 19-class labels (as in BigEarthNet v2's metadata); the
    43-class vector cannot be recovered from them and is ``None``. The caller says which, because
    nine names (e.g. "Pastures") belong to both sets. An unknown name raises
    :class:`UnknownLabelError` naming the label.
    """
    if nomenclature not in ("43", "19"):
        raise ValueError(f"nomenclature must be '43' or '19', not {nomenclature!r}")
    resolve = canonical_43 if nomenclature == "43" else canonical_19
    canonical = []
    for name in names:
        found = resolve(str(name))
        if found is None:
            raise UnknownLabelError(f"unknown label {name!r} (not a BigEarthNet {nomenclature}-class name)")
        canonical.append(found)
    if nomenclature == "19":
        return None, multi_hot(canonical, CLASSES_19)
    mapped = [MAP_43_TO_19[n] for n in canonical if MAP_43_TO_19[n] is not None]
    return multi_hot(canonical, CLASSES_43), multi_hot(mapped, CLASSES_19)


def corine_lookup_19() -> np.ndarray:
    """A uint8 table indexed by any uint16 CLC code giving the 19-class index, or 255 (no class)."""
    table = np.full(1 << 16, NO_CLASS, dtype=np.uint8)
    for code, name in zip(CODES_43, CLASSES_43):
        target = MAP_43_TO_19[name]
        if target is not None:
            table[code] = CLASSES_19.index(target)
    return table


def labels43_from_codes(codes: np.ndarray) -> np.ndarray:
    """Multi-hot 43-class vector of the CLC codes present in a reference map (others ignored)."""
    present = set(int(c) for c in np.unique(codes))
    return multi_hot([n for c, n in zip(CODES_43, CLASSES_43) if c in present], CLASSES_43)
