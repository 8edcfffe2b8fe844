"""Batched tensor image preprocessing for the reward models (replaces the PIL pipelines).

The published scorers preprocess one PIL image at a time. We do the same operations on a whole
(B, 3, H, W) batch in [0, 1] on the reward's device:

1. optional 8-bit quantisation x <- round(255 x) / 255 (the reference converts to a uint8 PIL image);
2. bicubic resize with antialiasing (``torch.nn.functional.interpolate(..., antialias=True)`` uses
   PIL's bicubic kernel, a = -0.5), clamped to [0, 1];
3. ``"shortest_crop"`` (CLIP / PickScore / ImageReward: shortest side -> size, centre crop) or
   ``"longest_pad"`` (HPS-v2's ResizeMaxSize: longest side -> size, centred zero padding);
4. per-channel normalisation (x - mean) / std.

Deviation from the PIL path: PIL rounds the resized image to uint8 and its kernel sums are computed
in fixed point, so pixels differ by about 1e-3 on average and up to ~0.04 at sharp edges (in [0, 1]
units, before normalisation); tests/test_rewards_models.py bounds this.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest_crop", "longest_pad")


def quantize_8bit(images: Tensor) -> Tensor:
    """x -> round(255 * clamp(x, 0, 1)) / 255, what saving as a uint8 image does."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def _bicubic(images: Tensor, height: int, width: int) -> Tensor:
    if images.shape[-2:] == (height, width):
        return images
    resized = F.interpolate(images, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def resize_shortest_and_crop(images: Tensor, size: int, crop_size: int | None = None) -> Tensor:
    """Resize so the shortest side is ``size`` (aspect kept), then centre-crop ``crop_size`` (default size)."""
    crop_size = size if crop_size is None else crop_size
    height, width = images.shape[-2:]
    if height <= width:  # torchvision / transformers convention: the long side is truncated
        new_height, new_width = size, int(size * width / height)
    else:
        new_height, new_width = int(size * height / width), size
    images = _bicubic(images, new_height, new_width)
    top = max(0, int(round((new_height - crop_size) / 2.0)))
    left = max(0, int(round((new_width - crop_size) / 2.0)))
    return images[..., top : top + crop_size, left : left + crop_size]


def resize_longest_and_pad(images: Tensor, size: int) -> Tensor:
    """Resize so the longest side is ``size`` (aspect kept), then zero-pad to size x size, centred."""
    height, width = images.shape[-2:]
    scale = size / max(height, width)
    new_height, new_width = round(height * scale), round(width * scale)
    images = _bicubic(images, new_height, new_width)
    pad_h, pad_w = size - new_height, size - new_width
    return F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)


def preprocess_images(
    images: Tensor,
    size: int,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    *,
    mode: str = "shortest_crop",
    crop_size: int | None = None,
    quantize: bool = True,
) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> normalised (B, 3, S, S) model input (S = crop_size or size)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    images = images.float()
    if quantize:
        images = quantize_8bit(images)
    if mode == "shortest_crop":
        images = resize_shortest_and_crop(images, size, crop_size)
    else:
        images = resize_longest_and_pad(images, size)
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
