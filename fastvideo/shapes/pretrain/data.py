"""On-the-fly training data: random scenes rendered for random TRAIN prompts, fresh at every step.

Each step's batch is a pure function of (seed, step), so a resumed run sees the same data.
"""

from __future__ import annotations

import numpy as np
import torch

from fastvideo.shapes.grammar import sample_prompts
from fastvideo.shapes.render import render_prompt

SPLIT_SEED = 0
"""Seed of the grammar's train/held-out split; pretraining only ever sees the train split."""


def step_rng(seed: int, step: int, purpose: int = 0) -> np.random.Generator:
    """Independent numpy generator for one (seed, step, purpose)."""
    return np.random.default_rng([seed, step, purpose])


def step_generator(seed: int, step: int, purpose: int = 0) -> torch.Generator:
    """Independent torch CPU generator for one (seed, step, purpose)."""
    seed_value = int(np.random.SeedSequence([seed, step, purpose, 7]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed_value)


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC images -> float (B, 3, H, W) in [-1, 1]."""
    array = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def scene_batch(batch_size: int, seed: int, step: int, image_size: int = 64) -> tuple[list[str], torch.Tensor]:
    """``batch_size`` skill-balanced train prompts and one random rendering of each, in [-1, 1]."""
    rng = step_rng(seed, step)
    prompts = [p.text for p in sample_prompts(batch_size, rng, split="train", seed=SPLIT_SEED)]
    images = [render_prompt(text, rng, size=image_size) for text in prompts]
    return prompts, images_to_tensor(images)


def foreground_weight(images: torch.Tensor, background: torch.Tensor, boost: float) -> torch.Tensor:
    """Per-pixel loss weight 1 + boost on pixels that differ from the background colour, (B, 1, H, W).

    Shapes cover a few percent of the canvas; without the boost a reconstruction loss is dominated by
    the flat background and colours of small shapes come out washed out.
    """
    differs = (images - background.view(1, 3, 1, 1)).abs().amax(dim=1, keepdim=True) > 0.02
    return 1.0 + boost * differs.float()
