"""Cheap rewards without weights: brightness and JPEG (in)compressibility."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fastvideo.rewards.base import Reward, register_reward


@register_reward("brightness")
class BrightnessReward(Reward):
    """Mean pixel value: r = mean over (C, H, W) of x, in [0, 1] (videos: also over frames).

    Used by the debug configs: a tiny generator learns to brighten its images within a few steps.
    """

    input_kind = "image"

    def __init__(self, device: str | torch.device | None = "cpu", batch_size: int = 256) -> None:
        super().__init__(device=device, batch_size=batch_size)

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        return images.float().flatten(1).mean(dim=1)


def to_uint8_hwc(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 (round to nearest)."""
    array = torch.round(image.detach().float().clamp(0, 1) * 255).to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def jpeg_size_kb(image: Tensor, quality: int = 95) -> float:
    """Size in kB (1000 bytes) of the image encoded as JPEG at ``quality``, in memory (no disk)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8_hwc(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.tell() / 1000.0


class _JpegSizeReward(Reward):
    """sign * JPEG size in kB at quality 95 (DDPO's compressibility rewards); runs on the CPU (PIL),
    whatever ``device`` says."""

    input_kind = "image"
    sign = 1.0

    def __init__(
        self, quality: int = 95, device: str | torch.device | None = "cpu", batch_size: int = 64
    ) -> None:
        super().__init__(device="cpu", batch_size=batch_size)  # PIL encodes on the CPU
        self.quality = quality

    def score_batch(self, images: Tensor, prompts: list[str]) -> Tensor:
        sizes = [jpeg_size_kb(image, self.quality) for image in images]
        return self.sign * torch.tensor(sizes, dtype=torch.float32)


@register_reward("jpeg_compressibility")
class JpegCompressibilityReward(_JpegSizeReward):
    """r = -(JPEG size in kB at quality 95): smaller files (flatter images) score higher."""

    sign = -1.0


@register_reward("jpeg_incompressibility")
class JpegIncompressibilityReward(_JpegSizeReward):
    """r = +(JPEG size in kB at quality 95): detailed, noisy images score higher."""

    sign = 1.0
