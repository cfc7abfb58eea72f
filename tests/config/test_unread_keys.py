"""A key the run will not read is named, not ignored: refused on the command line, logged from a file.

Reproduces keys that were accepted without a word: ``data.card`` / ``data.shuffle_buffer`` /
``data.samples_per_epoch`` with the synthetic source, ``data.num_samples`` with shards,
``data.train_split`` / ``data.label_map`` in synthetic fine-tuning, and ``model.arch`` /
``model.patch_size`` when fine-tuning from a checkpoint.
"""

from __future__ import annotations

import dataclasses

import pytest

from geodino.config import ConfigError, load_config
from geodino.config.schema import DataConfig
from geodino.data.registry import get_source, source_names
from geodino.finetune.config import RANDOM_INIT_ONLY, SegDataConfig, SegModelConfig, load_seg_config

SCHEMAS = {"pretraining": DataConfig, "segmentation": SegDataConfig}
# A value of the right type for each data key, for overrides.
VALUES = {"source": None, "root": None, "card": "imagenet", "image_size": 32, "batch_size": 4, "num_workers": 0,
          "shuffle_buffer": 10, "samples_per_epoch": 8, "bad_samples": "skip", "max_bad_fraction": 0.5,
          "allow_incomplete": True, "num_samples": 16, "num_classes": 4, "eval_train_samples": 8,
          "eval_val_samples": 8, "train_split": "train", "val_split": "val", "val_samples": 8, "label_map": "igbp"}


def _base(source: str, tmp_path) -> list[str]:
    root = [f"data.root={tmp_path}"] if get_source(source).reads_files else []
    return [f"data.source={source}", *root]


def _load(job: str, overrides: list[str]):
    if job == "pretraining":
        return load_config(None, overrides)
    return load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", *overrides])


def test_every_declared_key_is_a_key_of_the_recipe() -> None:
    for job, schema in SCHEMAS.items():
        fields = {f.name for f in dataclasses.fields(schema)}
        assert set(VALUES) >= fields
        for name in source_names(job):
            assert get_source(name).keys_read(job) <= fields, name


@pytest.mark.parametrize("job", list(SCHEMAS))
def test_a_data_key_the_source_does_not_read_is_refused_on_the_command_line(job, tmp_path) -> None:
    checked = 0
    for source in source_names(job):
        read = get_source(source).keys_read(job)
        for f in dataclasses.fields(SCHEMAS[job]):
            value = VALUES[f.name]
            if value is None:
                continue
            override = [*_base(source, tmp_path), f"data.{f.name}={value}"]
            if f.name in read:
                _load(job, override)  # read: accepted
                continue
            checked += 1
            with pytest.raises(ConfigError, match=rf"^data\.{f.name}: not read when data\.source='{source}' "
                                                  r"\(read by [a-z, 0-9]+\); drop it$"):
                _load(job, override)
    assert checked >= 8


def test_the_message_names_every_unread_key_and_the_sources_that_read_them() -> None:
    with pytest.raises(ConfigError, match=r"^data\.card, data\.shuffle_buffer: not read when data\.source='synthetic' "
                                          r"\(read by imagefolder, shards\); drop them$"):
        load_config(None, ["data.card=imagenet", "data.shuffle_buffer=5"])


def test_a_recipe_file_may_carry_keys_of_another_source_and_the_log_names_them(tmp_path, caplog) -> None:
    recipe = tmp_path / "both.yaml"
    recipe.write_text("data:\n  source: synthetic\n  shuffle_buffer: 500\n  samples_per_epoch: 64\n")
    with caplog.at_level("INFO", logger="geodino.config.load"):
        cfg = load_config(recipe)
    assert cfg.data.shuffle_buffer == 500
    assert ("both.yaml: data.samples_per_epoch, data.shuffle_buffer not read when data.source='synthetic' "
            "(read by shards); ignored") in caplog.text
    # the packaged default recipe's synthetic keys, with shards chosen on the command line
    caplog.clear()
    with caplog.at_level("INFO", logger="geodino.config.load"):
        load_config(None, ["data.source=shards", f"data.root={tmp_path}"])
    assert "quickstart.yaml: data.num_classes, data.num_samples not read when data.source='shards'" in caplog.text
    # a key set both in the file and on the command line is the command line's: refused
    with pytest.raises(ConfigError, match="data.shuffle_buffer: not read"):
        load_config(recipe, ["data.shuffle_buffer=10"])


def test_fine_tuning_from_a_checkpoint_refuses_the_keys_that_shape_a_random_backbone(tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"")
    base = ["seg_synthetic_quickstart", [f"model.pretrained={checkpoint}"]]
    for key, value in (("arch", "vit_tiny_patch16_224"), ("patch_size", 8), ("depth", 2), ("img_size", 32),
                       ("drop_path_rate", 0.1)):
        assert key in RANDOM_INIT_ONLY
        with pytest.raises(ConfigError, match=rf"^model\.{key}: not read when model\.pretrained is a checkpoint"):
            load_seg_config(base[0], [*base[1], f"model.{key}={value}"])
        load_seg_config(base[0], ["model.pretrained=none", f"model.{key}={value}"])
    # the other model keys are read either way
    others = {f.name for f in dataclasses.fields(SegModelConfig)} - RANDOM_INIT_ONLY
    assert {"head", "freeze_backbone", "layer_decay", "decoder_channels", "levels"} <= others
    load_seg_config(base[0], [*base[1], "model.layer_decay=0.5", "model.freeze_backbone=true"])

