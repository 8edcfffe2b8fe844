"""The run configuration: typed dataclasses with a docstring per field (``schema``), YAML/CLI loading
(``loader``) and validation (``rules``). Imports go one way: schema <- rules <- loader <- this file.

``python -m fastvideo.train --help`` lists every field with its unit and default.
"""

from fastvideo.config.loader import (
    config_to_dict,
    format_help,
    load_config,
    parse_args,
    read_config_file,
    save_config,
    split_overrides,
)
from fastvideo.config.rules import ConfigError, validate
from fastvideo.config.schema import (
    CheckpointConfig,
    Config,
    DataConfig,
    GRPOConfig,
    LoggingConfig,
    ModelConfig,
    RewardsConfig,
    RewardTermConfig,
    SamplerConfig,
    TrainConfig,
)

__all__ = [
    "CheckpointConfig", "Config", "ConfigError", "DataConfig", "GRPOConfig", "LoggingConfig", "ModelConfig",
    "RewardTermConfig", "RewardsConfig", "SamplerConfig", "TrainConfig", "config_to_dict", "format_help",
    "load_config", "parse_args", "read_config_file", "save_config", "split_overrides", "validate",
]
