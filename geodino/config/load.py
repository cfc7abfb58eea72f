"""Load a recipe (YAML), apply dotted command-line overrides, and validate against the schema.

Every mistake is reported before any work starts, naming the key and, for a misspelt key, the
closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from geodino.config.schema import Config
from geodino.resources import RECIPES, packaged_file, packaged_folder, packaged_names
from geodino.utils import read_yaml, yaml_problem

log = logging.getLogger(__name__)
RECIPES_DIR = packaged_folder(RECIPES)
DEFAULT_RECIPE = RECIPES_DIR / "quickstart.yaml"


class ConfigError(ValueError):
    """A recipe or override names an unknown key or gives a value of the wrong type."""


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(options)}"


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:  # the allowed values are the type: checked here, and only here
        choices = typing.get_args(hint)
        value = _coerce(value, str, key)  # the schema's choices are strings (YAML's bare `no` included)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, bool):  # YAML 1.1 reads a bare `no` (train.precision: no) as False
            return "yes" if value else "no"
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{key}: expected {name}, got {value!r} ({type(value).__name__})")


# Keys that moved: a recipe that still uses the old name is told the new one.
RENAMED = {
    "objective.selfpatch_k": "objective.selfpatch.k",
    "objective.selfpatch_blocks": "objective.selfpatch.blocks",
    "objective.mask_probability": "objective.masked.probability",
    "objective.mask_ratio": "objective.masked.ratio",
}


def apply_mapping(node: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Set the fields of the dataclass tree ``node`` from a nested mapping, checking every key and
    type against the schema (the one loader of pretraining and fine-tuning recipes)."""
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            if path in RENAMED:
                raise ConfigError(f"{path} is now {RENAMED[path]} (write it as a nested section)")
            raise ConfigError(f"unknown key {path!r}{_suggest(key, names)}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of {sorted(f.name for f in dataclasses.fields(current))}")
            apply_mapping(current, value, f"{path}.")
        else:
            setattr(node, key, _coerce(value, hints[key], path))


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A recipe as an older geodino saved it in a checkpoint, with moved keys under their new names,
    so that its runs still resume and evaluate."""
    import copy

    saved = copy.deepcopy(saved)
    for old, new in RENAMED.items():
        (section, key), new_path = old.split("."), new.split(".")
        if key in saved.get(section, {}):
            node = saved
            for part in new_path[:-1]:
                node = node.setdefault(part, {})
            node[new_path[-1]] = saved[section].pop(key)
    return saved


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=1e-4", "data.root=/x"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: the key {dotted!r} has an empty part")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({yaml_problem(err)})") from None
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} not found: give a YAML file or a packaged recipe "
                          f"({', '.join(packaged_names(RECIPES))}; `geodino recipes` lists them)")
    try:
        data = read_yaml(path, expect=None)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if data is None:  # an empty file would run every default under a name that says otherwise
        raise ConfigError(f"{path}: the recipe is empty (run without a recipe for the defaults)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping")
    return data


def recipe_path(recipe: str | Path) -> Path:
    """A YAML file, or the name of a recipe packaged with geodino (``quickstart``,
    ``imagenet_dino_vits16``; also with its ``.yaml``, or as the ``recipes/<name>.yaml`` the
    repository used to hold) from any folder."""
    path = Path(recipe)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml") and len(path.parts) <= 2 and (len(path.parts) == 1 or path.parts[0] == RECIPES):
        packaged = packaged_file(RECIPES, path.stem if path.suffix else path.name)
        if packaged is not None:
            return packaged
    return path


@dataclasses.dataclass(frozen=True)
class Given:
    """The dotted keys that a recipe file and the command line set (every other key kept its default),
    so that a key the run will not read can be named instead of ignored."""

    recipe: str = ""
    in_file: frozenset[str] = frozenset()
    on_command_line: frozenset[str] = frozenset()

    def check_read(self, section: str, read: Iterable[str], why: Callable[[list[str]], str]) -> None:
        """Keys of ``section`` (e.g. ``data``) outside ``read``: those set on the command line are an
        error (an override that changes nothing), those from the recipe file are logged (a recipe can
        serve several sources). ``why(keys)`` completes "not read ..." for the keys it is said of
        (e.g. "when data.source='synthetic' (read by shards)")."""
        read = set(read)

        def unread(keys: Iterable[str]) -> list[str]:
            return sorted(k for k in keys if k.startswith(f"{section}.") and k.split(".")[1] not in read)

        if bad := unread(self.on_command_line):
            raise ConfigError(f"{', '.join(bad)}: not read {why(bad)}; drop {'it' if len(bad) == 1 else 'them'}")
        if bad := unread(self.in_file - self.on_command_line):
            log.info("%s: %s not read %s; ignored", self.recipe, ", ".join(bad), why(bad))


def dotted_keys(mapping: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The leaf keys of a nested mapping, dotted: ``{"data": {"root": x}}`` → ``{"data.root"}``."""
    keys: set[str] = set()
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            keys |= dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def apply_recipe(cfg: Any, path: Path, overrides: list[str] | None = None) -> Given:
    """Fill the dataclass tree ``cfg`` from the YAML at ``path``, then the dotted overrides; returns
    which keys each of them set."""
    data = _read_yaml(path)  # its errors name the file already
    try:
        apply_mapping(cfg, data, "")
        given = parse_overrides(overrides or [])
        apply_mapping(cfg, given, "")
    except ConfigError as err:
        raise ConfigError(f"{path.name}: {err}") from None
    return Given(path.name, frozenset(dotted_keys(data)), frozenset(dotted_keys(given)))


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults ← recipe (``None`` = the embedded quickstart) ← overrides. Validates everything."""
    cfg = Config()
    given = apply_recipe(cfg, recipe_path(recipe) if recipe else DEFAULT_RECIPE, overrides)
    validate(cfg)
    check_data_keys(given, cfg.data.source, "pretraining")
    return cfg


def check_data_source(source: str, root: str, job: str) -> None:
    """``data.source`` must name a source that serves ``job`` (see :mod:`geodino.data.registry`), and
    ``data.root`` be given exactly when that source reads files."""
    from geodino.data.registry import SourceError, get_source

    try:
        reads_files = get_source(source, job).reads_files
    except SourceError as err:
        raise ConfigError(f"data.source: {err}") from None
    if reads_files and not root:
        raise ConfigError(f"data.root: required when data.source={source!r}")
    if not reads_files and root:
        # A root beside a generated source is a recipe that meant other data: running on the
        # generated scenes instead would look like a success.
        raise ConfigError(f"data.root={root!r} is set but data.source={source!r} reads no files: drop data.root, "
                          "or set data.source to the kind of data at that root")


def check_data_keys(given: Given, source: str, job: str) -> None:
    """The ``data.*`` keys given must be ones that ``source`` reads for ``job`` (its
    :meth:`~geodino.data.registry.DataSource.keys_read`); the message names the sources that do."""
    from geodino.data.registry import get_source, source_names

    def why(keys: list[str]) -> str:
        names = {key.split(".")[1] for key in keys}
        readers = [name for name in sorted(source_names(job)) if names & get_source(name).keys_read(job)]
        return f"when data.source={source!r}" + (f" (read by {', '.join(readers)})" if readers else "")

    given.check_read("data", get_source(source, job).keys_read(job), why)


def check_ranges(node: Any, prefix: str = "") -> None:
    """Every key of the dataclass tree ``node`` that declares a :class:`~geodino.config.schema.Range`
    holds a value inside it (the schema's ``bounded`` fields; pretraining and fine-tuning)."""
    for f in dataclasses.fields(node):
        value, path = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{path}.")
        elif "range" in f.metadata and (problem := f.metadata["range"].problem(value)):
            raise ConfigError(f"{path}: {problem}")


def _check_ordered(path: str, pair: list[float]) -> None:
    if pair[0] > pair[1]:
        raise ConfigError(f"{path}: expected [low, high] with low <= high, got {pair}")


def validate(cfg: Config) -> None:
    """Checks of values and between keys; types were checked while loading."""
    check_ranges(cfg)
    if not cfg.run.out_dir.strip():
        raise ConfigError("run.out_dir: empty (give the run's folder)")
    check_data_source(cfg.data.source, cfg.data.root, "pretraining")
    if cfg.data.source == "synthetic" and cfg.data.num_samples == 0:
        raise ConfigError("data.num_samples=0: the synthetic source makes as many scenes as asked; give a number")
    _validate_model(cfg)
    if cfg.optim.warmup_epochs > cfg.optim.epochs or cfg.dino.warmup_teacher_temp_epochs > cfg.optim.epochs:
        raise ConfigError("optim.warmup_epochs / dino.warmup_teacher_temp_epochs: longer than optim.epochs")
    a = cfg.augment
    for key in ("global_scale", "local_scale", "blur_sigma"):
        _check_ordered(f"augment.{key}", getattr(a, key))
    if a.n_local and a.local_size > a.global_size:
        raise ConfigError(f"augment.local_size={a.local_size} is larger than augment.global_size={a.global_size}: "
                          "local crops are the small views")
    if a.band_ops != "joint" and a.mode == "rgb":
        raise ConfigError(f"augment.band_ops: {a.band_ops!r} is for multispectral mode (augment.mode is rgb)")
    _validate_objective(cfg)
    resolve_trackers(cfg.train.trackers)


# Accelerate's tracker names and the module each needs.
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                   "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}


def resolve_trackers(names: list[str]) -> list[str]:
    """The trackers a run logs to: ``auto`` is TensorBoard when it is installed (else none),
    ``none`` is none; a named tracker that is unknown or not installed is an error."""
    import importlib.util

    if names in ([], ["none"]):
        return []
    if names == ["auto"]:
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    for name in names:
        if name not in TRACKER_MODULES:
            raise ConfigError(f"train.trackers: unknown tracker {name!r} (auto, none, {', '.join(TRACKER_MODULES)})")
        if importlib.util.find_spec(TRACKER_MODULES[name]) is None:
            raise ConfigError(f"train.trackers: {name} is not installed (pip install {TRACKER_MODULES[name]})")
    return list(names)


def _validate_model(cfg: Config) -> None:
    m = cfg.model
    if m.init_bands and not m.init:
        raise ConfigError("model.init_bands is set but model.init is empty: it names the bands of the weights it loads")


def _validate_objective(cfg: Config) -> None:
    from geodino.objectives import patch_objective

    o = cfg.objective
    if o.patch != "none":
        try:
            patch_objective(o.patch)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    _check_ordered("objective.masked.ratio", o.masked.ratio)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    from geodino.utils import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
