"""Bad data is stopped (one line naming shard, key and reason) or skipped and recorded, never used
silently: NaN samples, wrong shapes or bands, and shards that are truncated, cut between samples,
garbage or not tars at all."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from geodino.cli import main
from geodino.data.shards.format import BadSample, SampleSpec, decode_sample, encode_sample, expand_shards
from geodino.data.bad import BadDataError, BadSamplePolicy
from geodino.data.shards.read import iter_samples
from geodino.data.shards.stream import make_shard_loader
from geodino.data.shards.format import card_spec

from tests.data.shards.tiny import read_tiny, tiny_card, tiny_items, write_tiny


def _raw(parts) -> dict:
    raw = {"__key__": parts.key, "__url__": "/x/train-000000.tar"}
    raw.update({name.split(".", 1)[1]: data for name, data in encode_sample(parts)})
    return raw


def _shard_of(folder: Path, key: str) -> Path:
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            if any(m.name.startswith(key + ".") for m in t.getmembers()):
                return tar
    raise AssertionError(key)


def _loader(folder: Path, policy: BadSamplePolicy | None = None, **kw):
    return make_shard_loader(folder, batch_size=2, num_workers=0, shuffle_buffer=1, spec=card_spec(tiny_card()),
                             policy=policy, **kw)


# -- decoding --------------------------------------------------------------------------------------
def test_decode_names_shard_key_and_reason() -> None:
    item = tiny_items()[0]
    raw = _raw(read_tiny(item.__class__(**{**item.__dict__, "nan": True})))
    with pytest.raises(BadSample, match=r"/x/train-000000.tar: sample s000: non-finite pixels .* VV: 64"):
        decode_sample(raw)
    good = _raw(read_tiny(item))
    with pytest.raises(BadSample, match="card lists 4"):
        decode_sample(good, SampleSpec(bands=("B02", "B03", "VV", "VH")))
    with pytest.raises(BadSample, match="image is 8x8 px, not the 16x16 grid of the card"):
        decode_sample(good, SampleSpec(grid=(16, 16)))
    cut = dict(good, **{"image.bands": good["image.bands"][:-10]})
    with pytest.raises(BadSample, match="s000: image.bands holds 310 bytes, its groups need more"):
        decode_sample(cut)
    longer = dict(good, **{"image.bands": good["image.bands"] + b"xx"})
    with pytest.raises(BadSample, match="holds 322 bytes, its groups 320"):
        decode_sample(longer)
    meta = json.loads(good["meta.json"])
    meta["groups"][0]["dtype"] = "<i8"
    with pytest.raises(BadSample, match=r"group \['B02', 'B03'\] is declared int64"):
        decode_sample(dict(good, **{"meta.json": json.dumps(meta).encode()}))
    with pytest.raises(BadSample, match="no image"):
        decode_sample({k: v for k, v in good.items() if k != "image.bands"})
    for field, value in (("grid", [0, 8]), ("grid", [8.0, 8]), ("shape", [2, 0, 4])):
        meta = json.loads(good["meta.json"])
        if field == "grid":
            meta["grid"] = value
        else:
            meta["groups"][0]["shape"] = value
        with pytest.raises(BadSample, match="s000"):  # not a resampling error from deep inside torch
            decode_sample(dict(good, **{"meta.json": json.dumps(meta).encode()}))
    assert decode_sample(good, card_spec(tiny_card()))["image"].shape == (3, 8, 8)


# -- policy ----------------------------------------------------------------------------------------
def test_nan_sample_stops_by_default_and_is_recorded_with_skip(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(s003={"nan": True}))
    with pytest.raises(BadDataError, match=r"train-0000\d\d.tar: sample s003: non-finite .*VV: 64$"):
        list(_loader(folder))  # no hint of a recipe key: inspect and stats, which read this way, take none
    with pytest.raises(BadDataError, match=r"sample s003: non-finite .*\(data\.bad_samples=skip skips"):
        list(_loader(folder, BadSamplePolicy(hint="data.bad_samples=skip skips and records such samples")))
    log = tmp_path / "bad.jsonl"
    loader = _loader(folder, BadSamplePolicy("skip", max_fraction=0.5, log_path=log), steps_per_epoch=3)
    keys = [k for batch in loader for k in batch["key"]]
    assert "s003" not in keys and len(keys) == 6
    record = json.loads(log.read_text())
    assert record["key"] == "s003" and "non-finite" in record["reason"] and record["epoch"] == 0
    assert loader.policy.count == 1


def test_too_many_bad_samples_stop_a_skipping_run(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(s001={"nan": True}, s004={"nan": True}))
    policy = BadSamplePolicy("skip", max_fraction=0.1, total=8)
    with pytest.raises(BadDataError, match="bad samples, more than data.max_bad_fraction=0.1 of 8"):
        list(_loader(folder, policy, steps_per_epoch=3))


def test_wrong_shape_is_rejected_when_written_and_a_bad_sample_when_read(tmp_path) -> None:
    import dataclasses

    from geodino.data.shards.writer import write_shards

    # The writer holds samples to the card's grid (SSL4EO patches of another size converted "fine"
    # into shards every later command refused).
    folder = write_tiny(tmp_path / "w", tiny_items(s002={"size": 16}))
    rejects = [json.loads(line) for line in (folder / "rejects.jsonl").read_text().splitlines()]
    assert [(r["patch"], r["reason"]) for r in rejects] == [
        ("s002", "image is 16x16 px, not the 8x8 grid of the dataset card")]
    # Shards written without a grid (another tool, an older geodino) are checked as they are read.
    folder = tmp_path / "d"
    write_shards(folder, tiny_items(s002={"size": 16}), read_tiny, dataclasses.replace(tiny_card(), extra={}),
                 shard_size=2, progress=False)
    with pytest.raises(BadDataError, match=r"sample s002: image is 16x16 px, not the 8x8 grid of the card"):
        list(_loader(folder))
    # Without a card grid every sample is held to the first sample of the data, on every rank,
    # worker and epoch alike.
    loose = make_shard_loader(folder, batch_size=2, num_workers=0, shuffle_buffer=1)
    with pytest.raises(BadDataError, match="s002: image is 16x16 px, not the 8x8 grid of the first sample of train-"):
        list(loose)


def test_nan_sample_fails_knn_evaluation_instead_of_scoring(tmp_path, capsys) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(v001={"nan": True}))
    with pytest.raises(BadDataError, match="v001"):
        list(iter_samples(expand_shards(folder, "val"), card_spec(tiny_card())))


# -- damaged shards --------------------------------------------------------------------------------
def _members(tar: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def _write_members(path: Path, members: list[tuple[str, bytes]], end_blocks: bool = True) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    if not end_blocks:
        data = data[: data.rindex(members[-1][1]) + len(members[-1][1])]
        data += b"\0" * (-len(data) % 512)
    path.write_bytes(data)


@pytest.mark.parametrize("damage", ["cut_between_samples", "cut_mid_member", "garbage", "empty_file", "html"])
def test_damaged_shard_is_one_line_or_a_recorded_skip(tmp_path, damage, capsys) -> None:
    folder = write_tiny(tmp_path / "d", shard_size=4)
    tar = folder / "train-000000.tar"
    members = _members(tar)
    if damage == "cut_between_samples":  # a valid tar holding the first sample only
        first = members[0][0].split(".")[0]
        _write_members(tar, [m for m in members if m[0].startswith(first + ".")], end_blocks=False)
        reason = "1 of the 4 samples index.json lists"
    elif damage == "cut_mid_member":
        tar.write_bytes(tar.read_bytes()[:1700])
        reason = "train-000000.tar"
    elif damage == "garbage":
        tar.write_bytes(np.random.default_rng(0).bytes(5000))
        reason = "train-000000.tar"
    elif damage == "empty_file":
        tar.write_bytes(b"")
        reason = "train-000000.tar"
    else:
        tar.write_bytes(b"<html><body>403 Forbidden</body></html>\n")
        reason = "train-000000.tar"
    with pytest.raises(BadDataError, match=reason):
        list(iter_samples(expand_shards(folder, "train"), expected={str(tar): 4}))
    with pytest.raises(BadDataError, match=reason):
        list(_loader(folder, resample=False))
    assert main(["stats", str(folder)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "train-000000.tar" in errors[0] and "Traceback" not in err
    log = tmp_path / "bad.jsonl"
    loader = _loader(folder, BadSamplePolicy("skip", max_fraction=0.6, log_path=log), steps_per_epoch=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert len(keys) == 4 and all(k.startswith("s00") for k in keys)
    assert any(json.loads(line)["shard"].endswith("train-000000.tar") for line in log.read_text().splitlines())


def test_every_shard_unreadable_while_skipping_stops_in_one_line(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(train=4, val=0), shard_size=2)
    for tar in folder.glob("train-*.tar"):
        tar.write_bytes(b"<html>gone</html>")
    loader = _loader(folder, BadSamplePolicy("skip", max_fraction=1.0), steps_per_epoch=2)
    with pytest.raises(BadDataError, match="worker 0: none of its shards yields a sample"):
        list(loader)
    assert loader.policy.count == 4  # the two shards' samples


def test_each_rank_counts_its_own_records_after_a_resume(tmp_path) -> None:
    log = tmp_path / "bad.jsonl"
    lines = [{"rank": 0, "shard": "a.tar", "key": "k1", "reason": "x"},
             {"rank": 1, "shard": "b.tar", "key": "k2", "reason": "x"},
             {"rank": 0, "shard": "c.tar", "key": None, "reason": "x", "samples": 5}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut by a ki')
    rank0 = BadSamplePolicy("skip", log_path=log, context={"rank": 0})
    rank1 = BadSamplePolicy("skip", log_path=log, context={"rank": 1})
    assert (rank0.count, rank1.count) == (6, 1)
    assert len(rank0.known) == len(rank1.known) == 3  # both skip all of them on replay
