"""Typed configuration of a GRPO run.

Nested dataclasses, one per room (model, sampler, grpo, rewards, train, checkpoint, logging, data).
Each field carries a docstring (read by ``python -m fastvideo.train --help``) with its unit.
Loading, command-line overrides and validation live further down in this module:

- ``load_config(path=None, overrides=None) -> Config``: defaults < YAML/TOML file (a ``base:`` key names
  files merged first) < dotted overrides (``--grpo.clip_range 1e-4``, ``--a.b=v``, ``a.b=v``; values
  parsed like YAML; ``--rewards.terms.0.weight 2``); validated.
- ``parse_args(argv)``: ``--config``, ``--output_dir``, ``--resume auto|PATH``, ``--help``, overrides.
- ``validate(cfg)``, ``save_config(cfg, path)`` (YAML, round-trips), ``config_to_dict(cfg)``.
- Unknown keys, wrong types and invalid values raise ``ConfigError`` (a ValueError) naming the dotted
  key, with the closest valid keys for a misspelt one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import sys
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fastvideo.utils import attribute_docstrings, deep_merge, format_value, yaml_load


@dataclass
class ModelConfig:
    name: str = "flux"
    """Adapter registry name: 'flux' (rectified flow) or 'sd' (Stable Diffusion 1.x, DDIM)."""
    path: str | None = None
    """Local diffusers pipeline directory (e.g. ./data/flux). Ignored when ``tiny`` is true."""
    tiny: bool = False
    """Build a tiny randomly initialised model of the real classes (tests and CPU debug runs)."""
    height: int = 720
    """Image height in pixels."""
    width: int = 720
    """Image width in pixels."""
    num_frames: int = 1
    """Frames per sample (video models; 1 for images)."""
    guidance_scale: float = 3.5
    """FLUX/Hunyuan: embedded guidance value; SD: real classifier-free guidance scale (1 = no CFG)."""
    dtype: str = "auto"
    """Weight dtype of frozen parts (VAE, text encoders): auto | fp32 | bf16 | fp16. auto = bf16 on GPU, fp32 on CPU."""
    lora_rank: int = 0
    """LoRA rank; 0 trains the full transformer."""
    lora_alpha: float = 0.0
    """LoRA alpha (scaling = alpha / rank); 0 means alpha = rank."""
    lora_targets: list[str] = field(default_factory=list)
    """Module names LoRA adapts; empty = the adapter's default attention projections."""
    gradient_checkpointing: bool = False
    """Activation checkpointing of every transformer block during training."""


@dataclass
class SamplerConfig:
    num_steps: int = 16
    """Denoising steps S of a rollout."""
    shift: float = 3.0
    """Flow-matching time shift: sigma = shift*s / (1 + (shift-1)*s). Flow models only."""
    sde_type: str = "dance"
    """Flow SDE: dance | flow_grpo | cps | ode. Diffusion models always use DDIM-SDE."""
    eta: float = 0.3
    """Noise level of the SDE (DanceGRPO eta; Flow-GRPO/CPS 'a'); DDIM eta for diffusion models."""
    init_same_noise: bool = True
    """All G samples of a prompt start from the same initial latent."""
    window_size: int = 0
    """MixGRPO: steps w sampled with the SDE and trained (a sliding window); 0 = every step SDE (DanceGRPO)."""
    window_strategy: str = "progressive"
    """MixGRPO window movement: progressive (l += stride every shift_every iterations) | frozen (l = 0) | random."""
    window_shift_every: int = 25
    """MixGRPO tau: iterations between window moves (progressive strategy)."""
    window_stride: int = 1
    """MixGRPO s: steps the window moves each time (progressive strategy)."""
    ode_solver: str = "euler"
    """Solver of the ODE steps after the window: euler | dpm2 (2nd-order DPM-Solver++, MixGRPO-Flash). Flow models."""
    flash_ratio: float = 1.0
    """MixGRPO-Flash: fraction of the post-window steps kept (0.4 Flash, 0.2 Flash*); 1 = no compression."""
    rollout_guidance_scale: float | None = None
    """Guidance used in rollout and training (e.g. 1.0 = CFG-free training of a CFG model); None = model.guidance_scale."""
    eval_num_steps: int = 0
    """Steps for validation / evaluation sampling (Flow-GRPO trains with fewer); 0 = num_steps."""


@dataclass
class GRPOConfig:
    group_size: int = 12
    """Samples G generated per prompt (the group for advantage normalisation)."""
    clip_range: float = 1e-4
    """PPO clip epsilon on the ratio exp(logp - logp_old)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to [-adv_clip_max, adv_clip_max]."""
    timestep_fraction: float = 0.6
    """Fraction of the S-1 trainable steps trained per sample: floor((S-1)*fraction), in (0, 1]."""
    advantage_scope: str = "group"
    """Normalise rewards within each prompt's group ('group') or over the whole gathered batch ('global')."""
    per_prompt_stat_tracking: bool = False
    """Flow-GRPO: normalise with running per-prompt statistics instead of the current group only."""
    kl_coef: float = 0.0
    """Weight of the closed-form KL to the reference (base) policy; 0 disables it."""


@dataclass
class RewardTermConfig:
    name: str = "brightness"
    """Registry name of the reward (see fastvideo.rewards)."""
    weight: float = 1.0
    """Weight of this reward in the total (or in the advantage sum)."""
    threshold: float | None = None
    """If set, the reward becomes binary: 1 if score > threshold else 0."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the reward (checkpoint paths, conventions...)."""


@dataclass
class RewardsConfig:
    terms: list[RewardTermConfig] = field(default_factory=lambda: [RewardTermConfig()])
    """The rewards and their weights."""
    aggregation: str = "sum"
    """'sum': advantages of the weighted reward sum; 'advantage': weighted sum of per-reward advantages."""
    device: str = "auto"
    """Device the reward models run on (auto = the training device)."""
    nan_policy: str = "skip"
    """A non-finite reward: 'skip' the iteration's update with a warning, or 'error'."""


@dataclass
class DataConfig:
    prompt_file: str = "prompts.txt"
    """Text file with one prompt per line (blank lines skipped, duplicates kept once)."""
    embeddings_dir: str | None = None
    """Prompt-embedding cache written by fastvideo.data.preprocess; None encodes prompts online."""
    validation_prompts: list[str] = field(default_factory=list)
    """Fixed prompts rendered to an image grid every logging.validation_every iterations."""


@dataclass
class TrainConfig:
    max_iterations: int = 200
    """GRPO iterations (rollout + update) to run."""
    prompts_per_iteration: int = 1
    """Prompts per rank per iteration (per GPU); each yields group_size samples."""
    rollout_batch_size: int = 0
    """Samples per forward pass during the rollout, per GPU; 0 = all samples of the iteration at once."""
    train_batch_size: int = 1
    """Samples per forward/backward micro-batch during training, per GPU."""
    updates_per_iteration: int = 1
    """Optimizer steps per iteration: the iteration's samples are split into this many equal chunks."""
    lr: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold (DanceGRPO: 1.0; 0.01 in its 8-GPU FLUX recipe)."""
    lr_scheduler: str = "constant_with_warmup"
    """diffusers get_scheduler name."""
    lr_warmup_steps: int = 0
    """Warm-up optimizer steps of the LR schedule."""
    ema_decay: float = 0.0
    """EMA decay of trainable weights; 0 disables EMA."""
    mixed_precision: str = "auto"
    """auto | fp32 | bf16: autocast of the denoiser (auto = bf16 on CUDA, fp32 on CPU)."""
    fsdp: bool = True
    """Shard the denoiser with FSDP2 when more than one rank runs."""
    seed: int = 42
    """Seed of every random draw (noise, timestep subsets, prompt order)."""


@dataclass
class CheckpointConfig:
    every: int = 50
    """Save the full training state every N iterations (0 = only at the end)."""
    keep_last: int = 3
    """Number of most recent checkpoints kept."""
    resume: str = ""
    """'' = start fresh, 'auto' = latest complete checkpoint in output_dir, or a checkpoint path."""
    export_at_end: bool = True
    """Export the trained weights in diffusers format (or LoRA weights) at the end of the run."""


@dataclass
class LoggingConfig:
    log_every: int = 1
    """Write metrics every N iterations."""
    wandb: bool = False
    """Log to Weights & Biases (offline when no API key is configured)."""
    wandb_project: str = "dancegrpo"
    """W&B project name."""
    validation_every: int = 0
    """Render the validation prompts to an image grid every N iterations (0 = never)."""
    progress_bar: bool = True
    """tqdm progress bar on rank 0."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    output_dir: str = "outputs/run"
    """Run directory: metrics, config, checkpoints, exports, images."""


# ---------------------------------------------------------------------------------------------------
# Loading, command-line overrides, validation, saving
# ---------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """An unknown key, a value of the wrong type or an invalid value in a configuration."""


_NULL_STRINGS = frozenset({"null", "Null", "NULL", "none", "None", "~"})
_BASE_KEY = "base"
"""Key of a config file naming other files (relative to it) merged before the file itself."""

# --- schema walking --------------------------------------------------------------------------------


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _is_free_form(hint: Any) -> bool:
    """Values of this type are not key-checked (``Any``, ``dict[str, Any]``)."""
    return hint is Any or typing.get_origin(hint) is dict or hint is dict


def _list_item_type(hint: Any) -> Any | None:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else None


def _type_name(hint: Any) -> str:
    hint = _unwrap_optional(hint) if hint is not None else hint
    return (
        hint.__name__
        if isinstance(hint, type) and not typing.get_args(hint)
        else str(hint).replace("typing.", "")
    )


@functools.cache
def _all_dotted_keys(cls: type | None = None, prefix: str = "") -> tuple[str, ...]:
    """Every valid dotted key below ``cls`` (list items spelled with index 0)."""
    keys: list[str] = []
    for name, hint in _type_hints(cls or Config).items():
        key, hint = prefix + name, _unwrap_optional(hint)
        keys.append(key)
        item = _list_item_type(hint)
        if dataclasses.is_dataclass(hint):
            keys.extend(_all_dotted_keys(hint, key + "."))
        elif item is not None and dataclasses.is_dataclass(item):
            keys.extend(_all_dotted_keys(item, key + ".0."))
    return tuple(keys)


def _unknown_key_message(key: str, parent_cls: type, parent_key: str) -> str:
    prefix = parent_key + "." if parent_key else ""
    local = [prefix + name for name in _type_hints(parent_cls)]
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in _all_dotted_keys() if k.rsplit(".", 1)[-1] == leaf and k != key]
    close = difflib.get_close_matches(key, local + list(_all_dotted_keys()), n=3, cutoff=0.6)
    matches = list(dict.fromkeys(close + same_leaf))[:3]
    if matches:
        hint = " or ".join(repr(m) for m in matches)
        return f"unknown config key '{key}'; did you mean {hint}?"
    return f"unknown config key '{key}'; valid keys here: {', '.join(local)}"


def _walk(parts: list[str]) -> list[Any]:
    """Type of every prefix of a dotted key: ``hints[i]`` is the type of ``parts[:i]``."""
    hints: list[Any] = [Config]
    for depth, part in enumerate(parts):
        current, key = _unwrap_optional(hints[-1]), ".".join(parts[: depth + 1])
        item = _list_item_type(current)
        if _is_free_form(current):
            hints.append(Any)
        elif dataclasses.is_dataclass(current):
            if part not in _type_hints(current):
                raise ConfigError(_unknown_key_message(".".join(parts), current, ".".join(parts[:depth])))
            hints.append(_type_hints(current)[part])
        elif item is not None and part.isdigit():
            hints.append(item)
        elif item is not None:
            raise ConfigError(f"config key '{key}': '{key.rsplit('.', 1)[0]}' is a list; expected an index")
        else:
            raise ConfigError(f"unknown config key '{key}': '{key.rsplit('.', 1)[0]}' is a plain value")
    return hints


def _check_keys(value: Any, hint: Any, prefix: str, problems: list[str]) -> None:
    """Collect the unknown keys of a nested dict/list value of type ``hint``."""
    hint = _unwrap_optional(hint)
    item = _list_item_type(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = _type_hints(hint)
        for key, sub_value in value.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in hints:  # name the leaves of an unknown section: 'optim.lr' -> 'train.lr'
                problems += [
                    _unknown_key_message(leaf, hint, prefix) for leaf in _leaf_keys(sub_value, dotted)
                ]
            else:
                _check_keys(sub_value, hints[key], dotted, problems)
    elif item is not None and isinstance(value, list):
        for index, sub_value in enumerate(value):
            _check_keys(sub_value, item, f"{prefix}.{index}", problems)


def _leaf_keys(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for key, sub in value.items() for leaf in _leaf_keys(sub, f"{prefix}.{key}")]
    return [prefix]


def _raise_problems(problems: list[str], source: str) -> None:
    if problems:
        where = f" in {source}" if source else ""
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


# --- merging with OmegaConf ------------------------------------------------------------------------


def _type_error(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = re.sub(r"\[(\d+)\]", r".\1", str(getattr(exc, "full_key", "") or ""))
    try:
        expected = _type_name(_walk(key.split("."))[-1]) if key else "?"
    except ConfigError:
        expected = "?"
    value = getattr(exc, "value", None)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = f" ({source})" if source else ""
    return ConfigError(f"invalid value {value!r} for '{key}'{where}: expected {expected} ({reason})")


def _merge(conf: DictConfig, data: dict[str, Any], source: str) -> DictConfig:
    problems: list[str] = []
    _check_keys(data, Config, "", problems)
    _raise_problems(problems, source)
    try:
        return typing.cast(DictConfig, OmegaConf.merge(conf, data))
    except OmegaConfBaseException as exc:
        raise _type_error(exc, source) from exc


def read_config_file(path: str | os.PathLike[str], _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML/TOML config into a plain dict, with its ``base:`` files merged under it."""
    path = Path(path)
    if str(path.resolve()) in _chain:
        raise ConfigError(f"config files include each other: {' -> '.join(_chain + (str(path),))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    bases = data.pop(_BASE_KEY, None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_data = read_config_file(path.parent / base, _chain + (str(path.resolve()),))
        merged = deep_merge(merged, base_data)
    return deep_merge(merged, data)


# --- command-line overrides ------------------------------------------------------------------------


def split_overrides(argv: list[str]) -> list[tuple[str, str | None]]:
    """``--a.b v``, ``--a.b=v`` or ``a.b=v`` -> ``[("a.b", "v")]`` (value None for a bare ``--a.b``)."""
    pairs: list[tuple[str, str | None]] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        body = token[2:] if token.startswith("--") else token
        if "=" in body:
            key, raw = body.split("=", 1)
            index += 1
        elif token.startswith("--") and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            key, raw = body, argv[index + 1]
            index += 2
        elif token.startswith("--"):
            key, raw = body, None
            index += 1
        else:
            raise ConfigError(f"unexpected argument {token!r}: overrides look like --section.key VALUE")
        pairs.append((key.replace("-", "_"), raw))
    return pairs


def _parse_value(key: str, raw: str | None, hint: Any) -> Any:
    """A command-line string as a YAML scalar/list, or verbatim for string fields."""
    base = _unwrap_optional(hint)
    if raw is None:
        if base is bool:
            return True
        raise ConfigError(f"missing value for --{key} (expected {_type_name(hint)})")
    if base is str:
        return None if base is not hint and raw.strip() in _NULL_STRINGS else raw
    try:
        return yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse the value {raw!r} of '{key}': {exc}") from exc


def _grow_lists(conf: DictConfig, parts: list[str], hints: list[Any]) -> None:
    """Check list indices of an override; an index one past the end appends a default item."""
    for depth in range(1, len(parts)):
        item = _list_item_type(_unwrap_optional(hints[depth]))
        if item is None or _is_free_form(hints[depth]):
            continue
        node, index = OmegaConf.select(conf, ".".join(parts[:depth])), int(parts[depth])
        if index == len(node) and dataclasses.is_dataclass(item):
            node.append(OmegaConf.structured(item))
        elif index >= len(node):
            raise ConfigError(
                f"config key '{'.'.join(parts)}': index {index} out of range ({len(node)} items)"
            )


def _apply_override(conf: DictConfig, key: str, raw: str | None) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"malformed config key {key!r}")
    hints = _walk(parts)
    value = _parse_value(key, raw, hints[-1])
    problems: list[str] = []
    _check_keys(value, hints[-1], key, problems)
    _raise_problems(problems, f"--{key}")
    _grow_lists(conf, parts, hints)
    try:
        OmegaConf.update(conf, key, value, merge=True)
    except OmegaConfBaseException as exc:
        raise _type_error(exc, f"--{key}") from exc


# --- public API ------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults < config file (YAML/TOML, with its ``base:`` files) < dotted overrides; validated."""
    conf = typing.cast(DictConfig, OmegaConf.structured(Config))
    if path is not None:
        conf = _merge(conf, read_config_file(path), str(path))
    for key, raw in split_overrides(list(overrides or [])):
        _apply_override(conf, key, raw)
    cfg = typing.cast(Config, OmegaConf.to_object(conf))
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of builtin types (what ``save_config`` writes)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write ``cfg`` as YAML; ``load_config(path)`` returns an equal Config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    path.write_text("# Written by fastvideo.config.save_config\n" + text, encoding="utf-8")


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("auto", "fp32", "bf16", "fp16"),
    "sampler.sde_type": ("dance", "flow_grpo", "cps", "ode"),
    "sampler.window_strategy": ("progressive", "frozen", "random"),
    "sampler.ode_solver": ("euler", "dpm2"),
    "grpo.advantage_scope": ("group", "global"),
    "rewards.aggregation": ("sum", "advantage"),
    "rewards.nan_policy": ("skip", "error"),
    "train.mixed_precision": ("auto", "fp32", "bf16"),
}

_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("model.name", lambda v: isinstance(v, str) and v.strip() != "", "must be a non-empty string"),
    ("model.height", lambda v: v > 0, "must be > 0"),
    ("model.width", lambda v: v > 0, "must be > 0"),
    ("model.num_frames", lambda v: v >= 1, "must be >= 1"),
    ("model.lora_rank", lambda v: v >= 0, "must be >= 0 (0 = full fine-tune)"),
    ("model.lora_alpha", lambda v: v >= 0, "must be >= 0 (0 = alpha equals rank)"),
    ("model.guidance_scale", lambda v: v >= 0, "must be >= 0"),
    ("sampler.num_steps", lambda v: v >= 2, "must be >= 2 (the last step is never trained)"),
    ("sampler.shift", lambda v: v > 0, "must be > 0"),
    ("sampler.eta", lambda v: v >= 0, "must be >= 0"),
    ("sampler.window_size", lambda v: v >= 0, "must be >= 0 (0 = no window)"),
    ("sampler.window_shift_every", lambda v: v >= 1, "must be >= 1"),
    ("sampler.window_stride", lambda v: v >= 1, "must be >= 1"),
    ("sampler.flash_ratio", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("sampler.eval_num_steps", lambda v: v == 0 or v >= 2, "must be 0 (= num_steps) or >= 2"),
    ("sampler.rollout_guidance_scale", lambda v: v is None or v >= 0, "must be >= 0 or null"),
    ("grpo.group_size", lambda v: v >= 2, "must be >= 2 (advantages need a group)"),
    ("grpo.clip_range", lambda v: v > 0, "must be > 0"),
    ("grpo.adv_clip_max", lambda v: v > 0, "must be > 0"),
    ("grpo.timestep_fraction", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("grpo.kl_coef", lambda v: v >= 0, "must be >= 0"),
    ("rewards.terms", lambda v: len(v) > 0, "must name at least one reward"),
    ("train.max_iterations", lambda v: v >= 0, "must be >= 0"),
    ("train.prompts_per_iteration", lambda v: v >= 1, "must be >= 1"),
    ("train.rollout_batch_size", lambda v: v >= 0, "must be >= 0 (0 = whole iteration at once)"),
    ("train.train_batch_size", lambda v: v >= 1, "must be >= 1"),
    ("train.updates_per_iteration", lambda v: v >= 1, "must be >= 1"),
    ("train.lr", lambda v: v > 0, "must be > 0"),
    ("train.weight_decay", lambda v: v >= 0, "must be >= 0"),
    (
        "train.adam_betas",
        lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
        "must be two values in [0, 1)",
    ),
    ("train.adam_eps", lambda v: v > 0, "must be > 0"),
    ("train.max_grad_norm", lambda v: v >= 0, "must be >= 0"),
    ("train.lr_warmup_steps", lambda v: v >= 0, "must be >= 0"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "must be in [0, 1) (0 disables EMA)"),
    ("checkpoint.every", lambda v: v >= 0, "must be >= 0"),
    ("checkpoint.keep_last", lambda v: v >= 1, "must be >= 1"),
    ("logging.log_every", lambda v: v >= 1, "must be >= 1"),
    ("logging.validation_every", lambda v: v >= 0, "must be >= 0"),
    ("output_dir", lambda v: isinstance(v, str) and v != "", "must be a non-empty path"),
]


def _get(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _reward_term_problems(terms: list[RewardTermConfig]) -> list[str]:
    problems: list[str] = []
    for index, term in enumerate(terms):
        key = f"rewards.terms.{index}"
        if not isinstance(term.name, str) or not term.name.strip():
            problems.append(f"{key}.name: must be a non-empty reward name, got {term.name!r}")
        if not isinstance(term.weight, (int, float)) or not math.isfinite(term.weight):
            problems.append(f"{key}.weight: must be a finite number, got {term.weight!r}")
        if term.threshold is not None and not math.isfinite(term.threshold):
            problems.append(f"{key}.threshold: must be a finite number or null, got {term.threshold!r}")
        if not isinstance(term.kwargs, dict):
            problems.append(f"{key}.kwargs: must be a mapping, got {term.kwargs!r}")
    return problems


def validate(cfg: Config) -> Config:
    """Raise one ConfigError listing every invalid value of ``cfg`` (field and reason); return ``cfg``."""
    problems: list[str] = []
    for key, choices in _CHOICES.items():
        if _get(cfg, key) not in choices:
            problems.append(f"{key}: must be one of {' | '.join(choices)}, got {_get(cfg, key)!r}")
    for key, is_valid, reason in _RULES:
        value = _get(cfg, key)
        try:
            ok = bool(is_valid(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"{key}: {reason}, got {value!r}")
    problems.extend(_reward_term_problems(cfg.rewards.terms))
    if cfg.sampler.window_size > cfg.sampler.num_steps - 1:
        problems.append(f"sampler.window_size: must be <= num_steps - 1 = {cfg.sampler.num_steps - 1} "
                        f"(the last step is never trained), got {cfg.sampler.window_size}")
    _raise_problems(problems, "")
    return cfg


# --- command line ----------------------------------------------------------------------------------

USAGE = (
    "usage: python -m fastvideo.train [--config FILE.yaml|FILE.toml] [--output_dir DIR] "
    "[--resume auto|PATH] [--section.key VALUE | section.key=VALUE ...]"
)


def _help_lines(cls: type, prefix: str) -> list[str]:
    lines: list[str] = []
    docs, defaults = attribute_docstrings(cls), cls()
    # plain fields first, so that a top-level one (output_dir) is not read as part of the last section
    for f in sorted(
        dataclasses.fields(cls), key=lambda f: dataclasses.is_dataclass(_type_hints(cls)[f.name])
    ):
        hint, key = _unwrap_optional(_type_hints(cls)[f.name]), prefix + f.name
        if dataclasses.is_dataclass(hint):
            lines += ["", f"[{key}]", *_help_lines(hint, key + ".")]
            continue
        lines.append(f"  --{key}  ({f.type}, default: {format_value(getattr(defaults, f.name))})")
        lines += [f"      {line}" for line in textwrap.wrap(docs.get(f.name, ""), 96)]
        item = _list_item_type(hint)
        if item is not None and dataclasses.is_dataclass(item):
            lines += [f"    each item ({key}.N.*, N = 0, 1, ...):", *_help_lines(item, key + ".N.")]
    return lines


def format_help() -> str:
    """Every field with its type, default and docstring."""
    header = [
        USAGE,
        "",
        "Values are parsed like YAML: 1e-4, true, null, [to_q, to_k], {name: hps, weight: 1}.",
        "Precedence: defaults < --config file (its 'base:' files first) < command-line overrides.",
        "  --config FILE      YAML or TOML config file",
        "  --resume auto|PATH shortcut for --checkpoint.resume",
    ]
    return "\n".join(header + _help_lines(Config, "")) + "\n"


def parse_args(argv: list[str] | None = None) -> Config:
    """``--config PATH``, ``--output_dir DIR``, ``--resume auto``, ``--help`` and dotted overrides."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(format_help(), end="")
        raise SystemExit(0)
    config_path: str | None = None
    overrides: list[str] = []
    for key, raw in split_overrides(args):
        if key == "config":
            if raw is None:
                raise ConfigError("missing value for --config")
            config_path = raw
        else:
            key = "checkpoint.resume" if key == "resume" else key
            overrides += [f"--{key}"] if raw is None else [f"--{key}={raw}"]
    return load_config(config_path, overrides)
