import re

import pytest

from geodino.config import ConfigError, load_config, parse_overrides
from geodino.config.load import RECIPES_DIR


def test_quickstart_is_the_default_and_overrides_apply():
    cfg = load_config(None, ["optim.lr=1e-4", "model.arch=vit_small_patch16_224", "augment.global_scale=[0.3,1]"])
    assert cfg.data.source == "synthetic"
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.model.arch == "vit_small_patch16_224"
    assert cfg.augment.global_scale == [0.3, 1.0]


PRETRAIN_RECIPES = sorted(p.name for p in RECIPES_DIR.glob("*.yaml") if not p.name.startswith("seg_"))


@pytest.mark.parametrize("recipe", PRETRAIN_RECIPES)
def test_every_pretraining_recipe_loads(recipe):
    import yaml

    from geodino.data.registry import get_source

    source = (yaml.safe_load((RECIPES_DIR / recipe).read_text()).get("data") or {}).get("source", "synthetic")
    load_config(RECIPES_DIR / recipe, ["data.root=/some/where"] if get_source(source).reads_files else [])


def test_unknown_key_names_a_close_match():
    with pytest.raises(ConfigError, match=r"optim\.lrr.*did you mean 'lr'"):
        load_config(None, ["optim.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"unknown key 'optm'.*did you mean 'optim'"):
        load_config(None, ["optm.lr=1e-4"])


def test_wrong_types_are_rejected_with_the_key():
    with pytest.raises(ConfigError, match=r"optim\.epochs: expected int"):
        load_config(None, ["optim.epochs=ten"])
    with pytest.raises(ConfigError, match=r"train\.compile: expected bool"):
        load_config(None, ["train.compile=3"])
    with pytest.raises(ConfigError, match=r"augment\.global_scale"):
        load_config(None, ["augment.global_scale=0.4"])


def test_value_checks():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="data.root"):
        load_config(None, ["data.source=imagefolder"])


def test_a_root_for_the_synthetic_scenes_is_refused_naming_both_keys():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.root=shards/ben"])
    message = str(err.value)
    assert "data.root='shards/ben'" in message and "data.source='synthetic'" in message and "\n" not in message


def test_data_source_must_be_one_that_pretrains():
    with pytest.raises(ConfigError, match="data.source: unknown data source 'tif'; known sources: synthetic, "
                                          "imagefolder, shards, sen12ms"):
        load_config(None, ["data.source=tif"])
    with pytest.raises(ConfigError, match="data.source: data source 'sen12ms' cannot be used for pretraining"):
        load_config(None, ["data.source=sen12ms", "data.root=x"])


def test_missing_recipe_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="packaged recipe .*quickstart"):
        load_config(tmp_path / "nope.yaml")


def test_recipe_with_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  archh: vit_tiny_patch16_224\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.archh.*'arch'"):
        load_config(bad)


def test_parse_overrides_nests():
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError):
        parse_overrides(["nokey"])


@pytest.mark.parametrize("override, message", [
    ("model.out_dim=1", r"model\.out_dim: must be >= 2 \(the DINO head needs at least 2 prototypes; with 1 the loss is 0\), got 1"),  # trained to loss 0
    ("model.out_dim=0", r"model\.out_dim"),  # was a reshape traceback
    ("model.bottleneck_dim=0", r"model\.bottleneck_dim"),
    ("model.nlayers=0", r"model\.nlayers"),
    ("model.drop_path_rate=1", r"model\.drop_path_rate"),
    ("dino.teacher_temp=0", r"dino\.teacher_temp"),
    ("objective.patch_out_dim=1", r"objective\.patch_out_dim"),
    ("augment.band_ops=per_band", r"augment\.band_ops"),
])
def test_head_and_temperature_values_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_and_malformed_overrides_are_one_line_errors(tmp_path, capsys):
    from geodino.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML \(.* at line 3, column 1\)"):
        load_config(bad, [])
    with pytest.raises(ConfigError, match=r"override 'model\.depth=\[1,2': the value is not valid YAML"):
        load_config(None, ["model.depth=[1,2"])
    for item in ("=3", "model..depth=2"):
        with pytest.raises(ConfigError, match="has an empty part"):
            load_config(None, [item])
    assert main(["pretrain", str(bad), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML" in err
    assert err.count("bad.yaml") == 1, err  # it once said "bad.yaml: /path/bad.yaml: not valid YAML"


def test_trackers_are_chosen_by_name_and_checked(monkeypatch):
    import importlib.util

    from geodino.config.load import resolve_trackers

    installed = {"tensorboard", "mlflow"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert resolve_trackers(["auto"]) == ["tensorboard"] and resolve_trackers(["none"]) == []
    assert resolve_trackers(["mlflow", "tensorboard"]) == ["mlflow", "tensorboard"]
    with pytest.raises(ConfigError, match=r"train.trackers: wandb is not installed \(pip install wandb\)"):
        resolve_trackers(["wandb"])
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'"):
        resolve_trackers(["tensorbord"])
    installed.clear()
    assert resolve_trackers(["auto"]) == []
    with pytest.raises(ConfigError, match="wandb is not installed"):
        load_config(None, ["train.trackers=[wandb]"])


def _bounded_keys(node, prefix=""):
    import dataclasses

    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _bounded_keys(value, f"{prefix}{f.name}.")
        elif "range" in f.metadata:
            yield f"{prefix}{f.name}", value, f.metadata["range"]


def _outside(value, r):
    """Values just outside the range ``r`` (and NaN for floats), shaped like ``value``."""
    bad = []
    if r.ge is not None:
        bad.append(r.ge - (1 if isinstance(r.ge, int) else 0.5))
    if r.gt is not None:
        bad.append(r.gt)
    if r.le is not None:
        bad.append(r.le + 1)
    if r.lt is not None:
        bad.append(r.lt)
    if isinstance(value, list):
        return [[b] * len(value) for b in bad] + ([value[:-1]] if r.length else [])
    if isinstance(value, float):
        bad.append(float("nan"))
    return [type(value)(b) if not (isinstance(value, int) and b != int(b)) else b for b in bad]


def test_every_bounded_key_refuses_values_outside_its_range_by_name():
    """The schema declares the range of each numeric key; a value outside it (zero log interval,
    negative lr or warm-up, beta of length 1, momentum above 1, NaN, ...) is one error naming the
    key, before any work. Before, some crashed much later (ZeroDivisionError, IndexError in the
    optimiser, an assertion in the schedule) and others trained silently on nonsense."""
    import math

    from geodino.config.schema import Config

    keys = list(_bounded_keys(Config()))
    assert len(keys) > 50
    for key, value, r in keys:
        assert r.problem(value) is None, (key, value)  # the defaults are valid
        for bad in _outside(value, r):
            text = "[" + ",".join(repr(b) if not math.isnan(b) else ".nan" for b in bad) + "]" if isinstance(bad, list) \
                else (".nan" if isinstance(bad, float) and math.isnan(bad) else repr(bad))
            with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: "):
                load_config(None, [f"{key}={text}"])


@pytest.mark.parametrize("override,message", [
    ("train.log_every=0", r"train\.log_every: must be >= 1, got 0"),  # was ZeroDivisionError at step 0
    ("train.checkpoint_every=0", r"train\.checkpoint_every: must be >= 1"),
    ("optim.betas=[0.9]", r"optim\.betas: expected 2 values, got \[0\.9\]"),  # was IndexError in torch.optim
    ("optim.warmup_epochs=-1", r"optim\.warmup_epochs: must be >= 0"),  # was an assertion in the schedule
    ("optim.lr=-1", r"optim\.lr: must be > 0"),  # trained with a negative schedule (gradient ascent)
    ("optim.lr=.inf", r"optim\.lr: must be > 0, got inf"),
    ("optim.momentum_teacher=1.5", r"optim\.momentum_teacher: must be in \[0, 1\]"),
    ("optim.clip_grad=-1", r"optim\.clip_grad: must be >= 0"),  # silently meant "off"
    ("run.max_steps=-1", r"run\.max_steps: must be >= 0"),  # trained 0 steps, exit 0
    ("run.seed=-5", r"run\.seed: must be in \[0, 4294967296\), got -5"),
    ("eval.knn_k=0", r"eval\.knn_k: must be >= 1"),
    ("augment.local_size=64", r"augment\.local_size=64 is larger than augment\.global_size=32"),
    ("run.out_dir=", r"run\.out_dir: empty"),  # wrote the run into the current folder
    ("model.init_bands=[B4,B3,B2]", r"model\.init_bands is set but model\.init is empty"),
    ("eval.knn_every=5", None),  # fine: the quickstart checks k-NN
])
def test_values_the_probe_found_accepted_or_crashing_are_refused_by_name(override, message):
    if message is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])



def test_a_key_given_twice_or_an_empty_recipe_is_refused(tmp_path):
    """The last of two `lr:` used to win silently, and an empty file ran every default."""
    (tmp_path / "dup.yaml").write_text("optim:\n  lr: 1.0e-3\n  epochs: 2\n  lr: 5.0e-4\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: not valid YAML \(the key 'lr' is given twice at line 4, column 3\)"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the recipe is empty"):
        load_config(tmp_path / "empty.yaml")


def test_zero_synthetic_scenes_is_refused_but_other_sources_ignore_the_key(tmp_path, caplog):
    with pytest.raises(ConfigError, match=r"data\.num_samples=0: the synthetic source makes as many scenes as asked"):
        load_config(None, ["data.num_samples=0"])
    # Shard recipes written with the synthetic-only key at 0 still load (and resume), saying so.
    recipe = tmp_path / "shards.yaml"
    recipe.write_text(f"data:\n  source: shards\n  root: {tmp_path}\n  num_samples: 0\n")
    with caplog.at_level("INFO", logger="geodino.config.load"):
        load_config(recipe)
    assert "shards.yaml: data.num_samples not read when data.source='shards' (read by synthetic); ignored" \
        in caplog.text
