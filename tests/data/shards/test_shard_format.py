"""Sample encoding/decoding and shard locating."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from geodino.data.shards.format import (
    SampleParts,
    ShardFormatError,
    add_members,
    decode_sample,
    encode_sample,
    expand_shards,
    training_shards,
)
from geodino.data.shards.read import iter_samples


def _sample(key: str = "S2A_x_1_2") -> SampleParts:
    rng = np.random.default_rng(0)
    return SampleParts(key=key, image=rng.normal(size=(3, 4, 5)).astype(np.float32),
                       meta={"bands": ["a", "b", "c"], "split": "train"},
                       labels19=np.eye(19, dtype=np.uint8)[2], mask=np.full((4, 5), 255, np.uint8),
                       corine=np.full((4, 5), 523, np.uint16), label=7)


def test_round_trip() -> None:
    parts = _sample()
    raw = {"__key__": parts.key, **{name.split(".", 1)[1]: data for name, data in encode_sample(parts)}}
    out = decode_sample(raw)
    np.testing.assert_array_equal(out["image"], parts.image)
    assert out["image"].dtype == np.float32 and out["corine"].dtype == np.uint16
    np.testing.assert_array_equal(out["labels19"], parts.labels19)
    assert out["label"] == 7 and out["meta"] == parts.meta and "labels43" not in out


def test_keys_and_meta_are_checked() -> None:
    with pytest.raises(ShardFormatError, match="must not contain"):
        encode_sample(_sample("a.b"))
    parts = _sample()
    parts.meta = {}
    with pytest.raises(ShardFormatError, match="bands"):
        encode_sample(parts)


def test_object_arrays_are_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    raw = {"__key__": "k", "image.npy": buf.getvalue(), "meta.json": b"{}"}
    with pytest.raises(ShardFormatError, match="k"):
        decode_sample(raw)


def test_expand_folder_brace_glob_and_split(tmp_path) -> None:
    for name in ("train-000000.tar", "train-000001.tar", "val-000000.tar"):
        with tarfile.open(tmp_path / name, "w") as tar:
            add_members(tar, encode_sample(_sample(name.split(".")[0])))
    assert [p.rsplit("/", 1)[1] for p in expand_shards(tmp_path)] == [
        "train-000000.tar", "train-000001.tar", "val-000000.tar"]
    assert len(expand_shards(f"{tmp_path}/train-{{000000..000001}}.tar")) == 2
    assert len(expand_shards(f"{tmp_path}/*.tar")) == 3
    assert len(expand_shards(tmp_path, split="val")) == 1
    assert len(training_shards(tmp_path)) == 2 and len(training_shards(tmp_path, "all")) == 3
    assert [s["key"] for s in iter_samples(expand_shards(tmp_path))] == ["train-000000", "train-000001", "val-000000"]
    with pytest.raises(FileNotFoundError, match="train-000002"):
        expand_shards(f"{tmp_path}/train-{{000000..000002}}.tar")
    with pytest.raises(FileNotFoundError, match="no shards"):
        expand_shards(tmp_path, split="test")



def test_uint16_bands_survive_the_int16_trip_to_a_device() -> None:
    """Off the CPU, uint16 groups travel as int16 bits and are widened there: exact, also above 32767."""
    import torch

    from geodino.data.shards.format import assemble_batch, uint16_bits_to_float

    values = torch.tensor([0, 1, 32767, 32768, 40000, 65535], dtype=torch.uint16)
    assert uint16_bits_to_float(values.view(torch.int16)).tolist() == [0, 1, 32767, 32768, 40000, 65535]
    groups = [torch.tensor([[[[0, 40000], [65535, 7]]]], dtype=torch.uint16),
              torch.tensor([[[[-12.5]]]], dtype=torch.float32)]
    batch = {"bands": {"groups": groups, "names": [["B02"], ["VV"]], "order": ["VV", "B02"], "grid": [2, 2]}}
    image = assemble_batch(batch, "cpu")
    assert image[0, 1].tolist() == [[0.0, 40000.0], [65535.0, 7.0]] and (image[0, 0] == -12.5).all()
