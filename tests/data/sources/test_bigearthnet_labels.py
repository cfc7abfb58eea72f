"""The BigEarthNet nomenclatures and the published 43 → 19 mapping (Sumbul et al. 2020)."""

from __future__ import annotations

import numpy as np
import pytest

from geodino.data.sources import bigearthnet_labels as L

# The published BigEarthNet-19 table, written out independently of the module.
PUBLISHED_19 = {
    "Urban fabric": {"Continuous urban fabric", "Discontinuous urban fabric"},
    "Industrial or commercial units": {"Industrial or commercial units"},
    "Arable land": {"Non-irrigated arable land", "Permanently irrigated land", "Rice fields"},
    "Permanent crops": {"Vineyards", "Fruit trees and berry plantations", "Olive groves",
                        "Annual crops associated with permanent crops"},
    "Pastures": {"Pastures"},
    "Complex cultivation patterns": {"Complex cultivation patterns"},
    "Land principally occupied by agriculture, with significant areas of natural vegetation":
        {"Land principally occupied by agriculture, with significant areas of natural vegetation"},
    "Agro-forestry areas": {"Agro-forestry areas"},
    "Broad-leaved forest": {"Broad-leaved forest"},
    "Coniferous forest": {"Coniferous forest"},
    "Mixed forest": {"Mixed forest"},
    "Natural grassland and sparsely vegetated areas": {"Natural grassland", "Sparsely vegetated areas"},
    "Moors, heathland and sclerophyllous vegetation": {"Moors and heathland", "Sclerophyllous vegetation"},
    "Transitional woodland, shrub": {"Transitional woodland/shrub"},
    "Beaches, dunes, sands": {"Beaches, dunes, sands"},
    "Inland wetlands": {"Inland marshes", "Peatbogs"},
    "Coastal wetlands": {"Salt marshes", "Salines"},
    "Inland waters": {"Water courses", "Water bodies"},
    "Marine waters": {"Coastal lagoons", "Estuaries", "Sea and ocean"},
}
DROPPED = {"Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
           "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities", "Bare rock",
           "Burnt areas", "Intertidal flats"}


def test_43_is_32_mapped_plus_11_dropped() -> None:
    mapped = {n for n, t in L.MAP_43_TO_19.items() if t is not None}
    dropped = {n for n, t in L.MAP_43_TO_19.items() if t is None}
    assert len(L.CLASSES_43) == 43 and len(mapped) == 32 and len(dropped) == 11
    assert dropped == DROPPED and mapped | dropped == set(L.CLASSES_43)


def test_mapping_is_the_published_one() -> None:
    assert list(L.CLASSES_19) == list(PUBLISHED_19)
    for target, members in PUBLISHED_19.items():
        assert {n for n, t in L.MAP_43_TO_19.items() if t == target} == members, target


def test_43_classes_are_corine_level3_without_glaciers() -> None:
    assert len(L.CORINE_LEVEL3) == 44 and sorted(L.CORINE_LEVEL3) == list(L.CORINE_LEVEL3)
    assert L.CORINE_LEVEL3[335] == "Glaciers and perpetual snow" and 335 not in L.CODES_43
    differing = {c: (L.CORINE_LEVEL3[c], n) for c, n in zip(L.CODES_43, L.CLASSES_43) if L.CORINE_LEVEL3[c] != n}
    assert differing == {321: ("Natural grasslands", "Natural grassland"),
                         324: ("Transitional woodland-shrub", "Transitional woodland/shrub"),
                         332: ("Bare rocks", "Bare rock"), 412: ("Peat bogs", "Peatbogs")}
    for code in (111, 211, 311, 411, 523):
        assert L.canonical_43(L.CORINE_LEVEL3[code]) == L.CLASSES_43[L.CODES_43.index(code)]


def test_multi_label_example_with_clc_spellings_and_a_dropped_label() -> None:
    labels43, labels19 = L.labels_from_names(
        ["Peat bogs", "Inland marshes", "Transitional woodland-shrub", "Airports", "Sea and ocean"], "43")
    assert labels43.dtype == np.uint8 and labels19.dtype == np.uint8
    assert {L.CLASSES_43[i] for i in np.flatnonzero(labels43)} == {
        "Peatbogs", "Inland marshes", "Transitional woodland/shrub", "Airports", "Sea and ocean"}
    # Two labels merge into Inland wetlands; Airports is dropped.
    assert [L.CLASSES_19[i] for i in np.flatnonzero(labels19)] == [
        "Transitional woodland, shrub", "Inland wetlands", "Marine waters"]


def test_only_dropped_labels_give_an_empty_19_vector() -> None:
    labels43, labels19 = L.labels_from_names(["Airports", "Bare rock"], "43")
    assert labels43.sum() == 2 and labels19.sum() == 0


def test_19_class_names() -> None:
    labels43, labels19 = L.labels_from_names(["Urban fabric", "Transitional woodland, shrub", "Pastures"], "19")
    assert labels43 is None and labels19.sum() == 3


def test_unknown_label_is_named() -> None:
    with pytest.raises(L.UnknownLabelError, match="Lava fields"):
        L.labels_from_names(["Pastures", "Lava fields"], "43")
    with pytest.raises(L.UnknownLabelError, match="Airports"):
        L.labels_from_names(["Airports"], "19")  # a 43-class name is not a 19-class one


def test_corine_code_tables() -> None:
    lut = L.corine_lookup_19()
    assert lut[111] == lut[112] == L.CLASSES_19.index("Urban fabric")
    assert lut[333] == lut[321] == L.CLASSES_19.index("Natural grassland and sparsely vegetated areas")
    assert lut[523] == L.CLASSES_19.index("Marine waters")
    for code in (122, 124, 332, 334, 335, 423, 0, 999):
        assert lut[code] == L.NO_CLASS
    assert (lut[list(L.CORINE_LEVEL3)] != L.NO_CLASS).sum() == 32
    codes = np.array([[111, 122], [999, 523]], dtype=np.uint16)
    assert {L.CLASSES_43[i] for i in np.flatnonzero(L.labels43_from_codes(codes))} == {
        "Continuous urban fabric", "Road and rail networks and associated land", "Sea and ocean"}
