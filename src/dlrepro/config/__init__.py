"""Typed configuration: the schema of params.yaml and its validated loading."""

from dlrepro.config.load import load_config
from dlrepro.config.schema import Config

__all__ = ["Config", "load_config"]
