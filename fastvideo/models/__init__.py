"""Model adapters (one small file per model family) and their registry.

``build_adapter(cfg.model, device)`` returns the ``ModelAdapter`` registered under ``cfg.model.name``,
loaded lazily from the local diffusers directory ``cfg.model.path`` or, with ``cfg.model.tiny``,
built from tiny random configs of the real classes.
"""

from __future__ import annotations

# each adapter file registers itself ("flux", "sd", "hunyuan", "skyreels_i2v", "sd3", "wan", "qwen_image")
from fastvideo.models import flux, hunyuan, qwen_image, sd, sd3, skyreels_i2v, wan  # noqa: E402, F401
from fastvideo.models.base import Cond, ModelAdapter, cat_cond, repeat_cond, select_cond
from fastvideo.models.registry import available_adapters, build_adapter, register_adapter  # noqa: E402
from fastvideo.models.sources import ModelNotFoundError

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
