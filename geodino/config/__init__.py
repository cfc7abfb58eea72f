"""Recipes: the schema (``schema.py``) and loading with overrides and validation (``load.py``)."""

from geodino.config.load import ConfigError, config_to_dict, load_config, parse_overrides, save_config
from geodino.config.schema import Config

__all__ = ["Config", "ConfigError", "config_to_dict", "load_config", "parse_overrides", "save_config"]
