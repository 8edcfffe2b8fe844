"""Loading a run configuration: YAML/TOML files (with ``base:`` includes), dotted command-line
overrides, unknown-key suggestions, saving, and ``--help`` from the fields' docstrings."""



from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import sys
import textwrap
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fastvideo.config.rules import ConfigError, _raise_problems, validate
from fastvideo.config.schema import Config
from fastvideo.utils import attribute_docstrings, deep_merge, format_value, yaml_load

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
            key = "dry_run.enabled" if key == "dry_run" else key  # a bare --dry_run
            overrides += [f"--{key}"] if raw is None else [f"--{key}={raw}"]
    return load_config(config_path, overrides)

