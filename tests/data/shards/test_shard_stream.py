"""Streaming shards for training: batches, splitting by rank/worker, epochs, and no DDP hang."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geodino.data.shards.format import expand_shards

from geodino.data.shards.read import iter_samples
from geodino.data.shards.stream import count_samples, make_shard_loader

HERE = Path(__file__).resolve().parent


def _keys(batches) -> list[str]:
    return [k for b in batches for k in b["key"]]


def test_batches_hold_raw_images_and_labels(ben_v1_shards) -> None:
    # No shuffle buffer: one epoch is then exactly one pass over the shards.
    loader = make_shard_loader(ben_v1_shards, batch_size=2, num_workers=0, split="all", shuffle_buffer=1)
    assert count_samples(ben_v1_shards, "all") == 4 and len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (2, 14, 120, 120)
    assert batch["labels19"].shape == (2, 19) and batch["labels43"].shape == (2, 43)
    assert sorted(_keys(batches)) == sorted(s["key"] for s in iter_samples(expand_shards(ben_v1_shards)))
    sar = batch["image"][:, 12:]
    assert (sar < 0).float().mean() > 0.99 and not torch.equal(sar, sar.round())


def test_folder_defaults_to_train_split(ben_v1_shards) -> None:
    assert count_samples(ben_v1_shards) == 2
    loader = make_shard_loader(ben_v1_shards, batch_size=1, num_workers=0, shuffle_buffer=1)
    train = {s["key"] for s in iter_samples(expand_shards(ben_v1_shards, "train"))}
    assert set(_keys(loader)) == train


def test_exact_split_by_rank_and_worker(ben_v1_shards) -> None:
    shards = expand_shards(ben_v1_shards)  # 4 shards of one sample each
    loader = make_shard_loader(shards, batch_size=1, num_workers=2, rank=1, world_size=2, steps_per_epoch=6,
                               resample=False, shuffle_buffer=1)
    own = {s["key"] for s in iter_samples(shards[1::2])}
    keys = _keys(loader)
    assert len(keys) == 6 and set(keys) == own
    with pytest.raises(ValueError, match="cannot be split"):
        make_shard_loader(shards, batch_size=1, num_workers=3, world_size=2, resample=False)


def test_epochs_reshuffle_and_set_epoch_replays(ben_v1_shards) -> None:
    loader = make_shard_loader(ben_v1_shards, batch_size=1, num_workers=0, split="all", shuffle_buffer=3,
                               steps_per_epoch=12, resample=True)
    first, second = _keys(loader), _keys(loader)
    assert first != second
    loader.set_epoch(0)
    assert _keys(loader) == first


def test_image_size_resizes_arrays(ben_v1_shards) -> None:
    loader = make_shard_loader(ben_v1_shards, batch_size=2, num_workers=0, image_size=64, steps_per_epoch=1)
    assert next(iter(loader))["image"].shape == (2, 14, 64, 64)


def test_two_ranks_fewer_shards_than_streams_do_not_hang(ben_v1_shards) -> None:
    """2 ranks x 2 workers over the 2 train shards: resampled, same number of batches everywhere."""
    from tests.data.conftest import subprocess_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, str(HERE / "stream_ddp_run.py"), str(ben_v1_shards), str(port), "3"],
                         capture_output=True, text=True, timeout=150, env=subprocess_env())
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = json.loads(run.stdout.strip().splitlines()[-1])
    assert [r["counts"] for r in ranks] == [[3, 3], [3, 3]]
    assert all(len(b) == 2 for r in ranks for b in r["keys"])
    assert ranks[0]["keys"] != ranks[1]["keys"]  # seeded per rank


def test_pretrain_data_from_a_recipe(ben_v1_shards) -> None:
    from geodino.config.load import load_config
    from geodino.data.build import build_pretrain_data

    cfg = load_config(None, ["data.source=shards", f"data.root={ben_v1_shards}", "data.batch_size=1",
                             "data.shuffle_buffer=2"])
    data = build_pretrain_data(cfg, rank=0, world_size=1)
    assert data.card.name == "bigearthnet-v1" and data.steps_per_epoch == 2  # the 2 train samples
    batches = list(data.batches(0, 0))
    # The bands travel in their stored dtype and size; the training device assembles them.
    assert [g.dtype for g in batches[0]["bands"]["groups"]] == [torch.uint16] * 3 + [torch.float32]
    assert "image" not in batches[0]
    images = [data.images(b, "cpu") for b in batches]
    assert [i.shape for i in images] == [(1, 14, 120, 120)] * 2 and images[0].dtype == torch.float32
    on_cpu = {s["key"]: torch.from_numpy(s["image"]) for s in iter_samples(expand_shards(ben_v1_shards, "train"))}
    for batch, image in zip(batches, images):
        torch.testing.assert_close(image[0], on_cpu[batch["key"][0]], rtol=0, atol=0)
    assert len(list(data.batches(1, 1))) == 1  # resumed mid-epoch: the remaining steps


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_resumed_mid_way_gets_exactly_the_missing_batches(tmp_path, workers) -> None:
    """Resuming at step s replays the first s batches without decoding and then serves exactly the
    batches an uninterrupted pass serves, also after a skipped bad sample and across shard cycles."""
    from geodino.data.shards.format import card_spec
    from geodino.data.bad import BadSamplePolicy
    from tests.data.shards.tiny import tiny_card, tiny_items, write_tiny

    folder = write_tiny(tmp_path / "d", tiny_items(train=12, s004={"nan": True}), shard_size=3)

    def loader(log):
        return make_shard_loader(folder, batch_size=2, num_workers=workers, shuffle_buffer=4, seed=3,
                                 steps_per_epoch=7, spec=card_spec(tiny_card()), resample=False,
                                 policy=BadSamplePolicy("skip", max_fraction=1.0, log_path=log))

    straight = loader(tmp_path / "a.jsonl")
    full = {epoch: [b["key"] for b in straight.iterate(epoch)] for epoch in (0, 1)}
    assert full[0] != full[1] and len(full[0]) == 7
    for start in (1, 4, 6):
        # The first run recorded the bad samples of the steps it trained; the resumed one knows them.
        log = tmp_path / f"r{start}.jsonl"
        first = loader(log)
        seen = [b["key"] for b, _ in zip(first.iterate(1), range(start))]
        resumed = [b["key"] for b in loader(log).iterate(1, start)]
        assert seen + resumed == full[1], start
    images = [b["image"] for b in loader(tmp_path / "x.jsonl").iterate(0, 5)]
    assert all(torch.isfinite(i).all() for i in images) and len(images) == 2


def test_resume_with_samples_of_another_size_and_another_spelling_of_the_folder(tmp_path, monkeypatch) -> None:
    """Without a card grid, every sample is held to the data's first sample (not to whatever the
    stream decodes first after a resume), and a folder named relatively is the same folder."""
    from geodino.data.bad import BadSamplePolicy
    from tests.data.shards.tiny import tiny_items, write_tiny

    odd = {f"s{i:03d}": {"size": 4} for i in range(1, 40, 5)}
    folder = write_tiny(tmp_path / "d", tiny_items(train=40, val=0, **odd), shard_size=5)

    def loader(root, log):
        return make_shard_loader(root, batch_size=2, num_workers=0, shuffle_buffer=6, seed=1, steps_per_epoch=12,
                                 resample=False, policy=BadSamplePolicy("skip", max_fraction=1.0, log_path=log))

    full = [b["key"] for b in loader(folder, tmp_path / "a.jsonl").iterate(2)]
    assert not {k for keys in full for k in keys} & set(odd)
    monkeypatch.chdir(tmp_path)
    for start in (3, 7, 11):
        log = tmp_path / f"r{start}.jsonl"
        seen = [b["key"] for b, _ in zip(loader(folder, log).iterate(2), range(start))]
        assert seen + [b["key"] for b in loader("d", log).iterate(2, start)] == full, start
