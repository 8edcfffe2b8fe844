"""The model-adapter registry: ``register_adapter(name, factory)`` and ``build_adapter(model_cfg, device)``.

Each adapter file registers itself at import (``fastvideo.models`` imports the built-in ones);
plugins (``fastvideo.plugins``) may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fastvideo.models.base import ModelAdapter

AdapterFactory = Callable[[Any, torch.device], ModelAdapter]
_REGISTRY: dict[str, AdapterFactory] = {}


def register_adapter(name: str, factory: AdapterFactory) -> None:
    """Register ``factory(model_cfg, device) -> ModelAdapter`` under ``name``."""
    if name in _REGISTRY and _REGISTRY[name] != factory:
        raise ValueError(f"a model adapter named {name!r} is already registered")
    _REGISTRY[name] = factory


def available_adapters() -> list[str]:
    """Registered adapter names (plugins included), sorted."""
    from fastvideo.plugins import load_plugins

    load_plugins()
    return sorted(_REGISTRY)


def build_adapter(model_cfg: Any, device: torch.device | str = "cpu") -> ModelAdapter:
    """The adapter named ``model_cfg.name`` (nothing heavy is loaded until first use)."""
    if model_cfg.name not in _REGISTRY and model_cfg.name not in available_adapters():
        raise ValueError(f"unknown model {model_cfg.name!r}; available: {', '.join(available_adapters())}")
    return _REGISTRY[model_cfg.name](model_cfg, torch.device(device))
