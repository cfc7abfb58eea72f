"""``data.root`` as remote shards: ``pipe:COMMAND`` and ``http://`` give the same batches as the
local folder, with ``index.json`` and ``card.yaml`` fetched beside the shards; without them the
error names the keys that replace them."""

from __future__ import annotations

import shutil

import pytest
import torch

from geodino.config.load import load_config
from geodino.data.build import build_pretrain_data
from geodino.data.card import CardError
from geodino.data.shards.format import IncompleteConversion
from geodino.data.bad import BadDataError
from geodino.data.shards.remote import RemoteError

from tests.data.shards.tiny import serve_folder, tiny_items, write_tiny


def _data(root: str, tmp_path, *extra: str):
    cfg = load_config(None, ["data.source=shards", f"data.root={root}", "data.batch_size=2", "data.shuffle_buffer=3",
                             f"run.out_dir={tmp_path / 'run'}", *extra])
    return build_pretrain_data(cfg)


def _epoch(data, epoch: int = 0) -> list[tuple[list[str], torch.Tensor]]:
    return [(b["key"], data.images(b, "cpu")) for b in data.batches(epoch, 0)]


def _same(a, b) -> None:
    assert [k for k, _ in a] == [k for k, _ in b]
    for (_, x), (_, y) in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_pipe_and_http_roots_stream_what_the_folder_streams(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(train=8, val=2), shard_size=2)
    local = _data(str(folder / "train-{000000..000003}.tar"), tmp_path)
    expected = _epoch(local)
    assert local.steps_per_epoch == 4 and local.card.name == "tiny"

    piped = _data(f"pipe:cat {folder}/train-{{000000..000003}}.tar", tmp_path)
    assert piped.steps_per_epoch == 4 and piped.card.band_names == local.card.band_names
    _same(_epoch(piped), expected)

    with serve_folder(folder) as base:
        served = _data(f"{base}/train-{{000000..000003}}.tar", tmp_path)
        assert served.card.name == "tiny"
        _same(_epoch(served), expected)


def test_remote_root_without_index_or_card_names_the_keys(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(train=8, val=0), shard_size=2)
    bare = tmp_path / "bare"
    bare.mkdir()
    for tar in folder.glob("*.tar"):
        shutil.copy(tar, bare / tar.name)
    root = f"pipe:cat {bare}/train-{{000000..000003}}.tar"
    with pytest.raises(FileNotFoundError, match="data.samples_per_epoch"):
        _data(root, tmp_path)
    with pytest.raises(CardError, match="data.card"):
        _data(root, tmp_path, "data.samples_per_epoch=8")
    shutil.copy(folder / "card.yaml", tmp_path / "tiny.yaml")
    data = _data(root, tmp_path, "data.samples_per_epoch=8", f"data.card={tmp_path / 'tiny.yaml'}")
    assert sum(len(k) for k, _ in _epoch(data)) == 8


def test_remote_incomplete_conversion_and_failing_command(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d", tiny_items(train=8, val=0), shard_size=2)
    index = (folder / "index.json").read_text().replace('"complete": true', '"complete": false')
    (folder / "index.json").write_text(index)
    with serve_folder(folder) as base:
        with pytest.raises(IncompleteConversion, match="is incomplete"):
            _data(f"{base}/train-{{000000..000003}}.tar", tmp_path)
    folder = write_tiny(tmp_path / "e", tiny_items(train=8, val=0), shard_size=2)
    with pytest.raises(RemoteError, match=r"index.json && exit 3: command failed \(exit status 3\)"):
        _data(f"pipe:cat {folder}/train-{{000000..000003}}.tar && exit 3", tmp_path)
    # One shard's download fails half-way: stop with one line naming it, or skip it when asked.
    script = tmp_path / "fetch.sh"
    script.write_text('cat "$1"; case "$1" in *train-000001.tar) echo "connection lost" >&2; exit 3;; esac\n')
    root = f"pipe:sh {script} {folder}/train-{{000000..000003}}.tar"
    with pytest.raises(BadDataError, match=r"train-000001.tar: command failed \(exit status 3\): connection lost"):
        _epoch(_data(root, tmp_path))
    skipping = _data(root, tmp_path, "data.bad_samples=skip", "data.max_bad_fraction=0.5")
    assert len(_epoch(skipping)) == 4 and skipping.bad_samples() == 1
