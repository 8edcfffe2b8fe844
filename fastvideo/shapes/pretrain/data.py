"""On-the-fly training data: random scenes rendered for random TRAIN prompts, fresh at every step.

Each step's batch is a pure function of (seed, step), so a resumed run sees the same data.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from fastvideo.shapes.grammar import COLORS, PLURALS, SHAPES, prompt_splits, sample_prompts
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


def scene_batch(batch_size: int, seed: int, step: int, image_size: int = 64,
                caption_noise: float = 0.0, skill: str | None = None,
                position_share: float = 0.0) -> tuple[list[str], torch.Tensor]:
    """``batch_size`` skill-balanced train prompts (``skill``: of that skill only) and one random
    rendering of each, in [-1, 1].

    ``position_share``: each prompt is replaced, with this probability, by a position prompt (drawn from
    its own generator, so the other prompts of a step stay those of the plain stream); the batch is then
    ``share + (1 - share) / 5`` position prompts on average.

    ``caption_noise``: the fraction of captions replaced by a *wrong* one (``noisy_captions``): the image
    is still rendered from the true prompt. The corruption draws from its own generator, so the
    prompts and images of a step are the same whatever the rate."""
    rng = step_rng(seed, step)
    prompts = [p.text for p in sample_prompts(batch_size, rng, split="train", skill=skill, seed=SPLIT_SEED)]
    if position_share > 0:
        extra = step_rng(seed, step, purpose=POSITION_SHARE_PURPOSE)
        chosen = extra.random(batch_size) < position_share
        positions = sample_prompts(batch_size, extra, split="train", skill="position", seed=SPLIT_SEED)
        prompts = [q.text if c else p for p, q, c in zip(prompts, positions, chosen)]
    images = [render_prompt(text, rng, size=image_size) for text in prompts]
    if caption_noise > 0:
        prompts = noisy_captions(prompts, step_rng(seed, step, purpose=CAPTION_NOISE_PURPOSE), caption_noise)
    return prompts, images_to_tensor(images)


CAPTION_NOISE_PURPOSE = 3
POSITION_SHARE_PURPOSE = 4


def _swap_words() -> dict[str, list[str]]:
    """Each attribute word and the words of its kind it may be swapped for (colours; shapes, same number)."""
    groups = [list(COLORS), list(SHAPES), [PLURALS[s] for s in SHAPES]]
    return {word: [other for other in group if other != word] for group in groups for word in group}


@functools.lru_cache(maxsize=1)
def caption_neighbours() -> dict[str, tuple[str, ...]]:
    """For every train prompt, the train prompts that differ from it in exactly one attribute word
    (one colour for another colour, or one shape for another shape): a caption that is wrong about
    one attribute of an image it otherwise describes. Held-out compositions never appear."""
    train = {p.text for p in prompt_splits(SPLIT_SEED)[0]}
    swaps, out = _swap_words(), {}
    for text in train:
        words, options = text.split(), []
        for i, word in enumerate(words):
            options += [" ".join([*words[:i], other, *words[i + 1:]]) for other in swaps.get(word, ())]
        out[text] = tuple(sorted(o for o in options if o in train))
    return out


def noisy_captions(prompts: list[str], rng: np.random.Generator, rate: float) -> list[str]:
    """Replace each caption, with probability ``rate``, by a random ``caption_neighbours`` entry (the
    alignment gap of web captions: most words right, one attribute wrong). Captions without a train
    neighbour stay as they are."""
    neighbours, out = caption_neighbours(), []
    for text in prompts:
        choices = neighbours.get(text, ())
        flip = rng.random() < rate
        out.append(choices[int(rng.integers(len(choices)))] if flip and choices else text)
    return out


def foreground_weight(images: torch.Tensor, background: torch.Tensor, boost: float) -> torch.Tensor:
    """Per-pixel loss weight 1 + boost on pixels that differ from the background colour, (B, 1, H, W).

    Shapes cover a few percent of the canvas; without the boost a reconstruction loss is dominated by
    the flat background and colours of small shapes come out washed out.
    """
    differs = (images - background.view(1, 3, 1, 1)).abs().amax(dim=1, keepdim=True) > 0.02
    return 1.0 + boost * differs.float()
