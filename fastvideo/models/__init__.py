"""Model adapters (one small file per model family) and their registry.

``build_adapter(cfg.model, device)`` returns the ``ModelAdapter`` registered under ``cfg.model.name``,
loaded lazily from the local diffusers directory ``cfg.model.path`` or, with ``cfg.model.tiny``,
built from tiny random configs of the real classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fastvideo.models.base import (
    Cond,
    ModelAdapter,
    ModelNotFoundError,
    cat_cond,
    repeat_cond,
    select_cond,
)

AdapterFactory = Callable[[Any, torch.device], ModelAdapter]
_REGISTRY: dict[str, AdapterFactory] = {}


def register_adapter(name: str, factory: AdapterFactory) -> None:
    """Register ``factory(model_cfg, device) -> ModelAdapter`` under ``name``."""
    if name in _REGISTRY and _REGISTRY[name] != factory:
        raise ValueError(f"a model adapter named {name!r} is already registered")
    _REGISTRY[name] = factory


def available_adapters() -> list[str]:
    """Registered adapter names, sorted."""
    return sorted(_REGISTRY)


def build_adapter(model_cfg: Any, device: torch.device | str = "cpu") -> ModelAdapter:
    """The adapter named ``model_cfg.name`` (nothing heavy is loaded until first use)."""
    if model_cfg.name not in _REGISTRY:
        raise ValueError(f"unknown model {model_cfg.name!r}; available: {', '.join(available_adapters())}")
    return _REGISTRY[model_cfg.name](model_cfg, torch.device(device))


def _register_builtin() -> None:
    from fastvideo.models.flux import FluxAdapter
    from fastvideo.models.sd import SDAdapter

    register_adapter("flux", FluxAdapter.from_config)
    register_adapter("sd", SDAdapter.from_config)
    from fastvideo.models import skyreels_i2v  # noqa: F401  (registers "hunyuan" and "skyreels_i2v")


_register_builtin()

__all__ = [
    "Cond",
    "ModelAdapter",
    "ModelNotFoundError",
    "available_adapters",
    "build_adapter",
    "cat_cond",
    "register_adapter",
    "repeat_cond",
    "select_cond",
]
