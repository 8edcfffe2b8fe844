"""First frames of the moving-shapes world for image-to-video models, rendered in memory.

An image-to-video policy (``skyreels_i2v``) continues a given first frame. In the moving-shapes world
that frame is the first frame of a *ground-truth* clip of the prompt: ``motion_render`` samples a
scene (trajectories satisfying the prompt) from ``default_rng(prompt_seed(prompt, seed))`` and the
frame shows every object at its start position. The seed depends only on the prompt (and ``seed``),
so a prompt always gets the same frame: in every GRPO rollout and on every rank. With
``model.first_frame_scenes: per_iteration`` the rollouts draw a fresh scene per prompt and iteration instead
(the samples of a group share it). Nothing is written to disk.

    adapter.set_first_frame_source(MotionFirstFrames(size=32))      # or use_motion_first_frames(adapter)

Frames are rendered square at ``size`` (>= 32) and the adapter fits them to model.height x width.

Evaluations draw a fresh scene per *evaluation index* instead (``indexed_first_frames``, rng
``[seed, index]``): the held-out split has 18 single-object prompts (6 until 2026-12-07), and one frame per prompt would
measure 18 scenes. ``policy_eval.evaluate_policy`` (the README's I2V numbers) and
``fastvideo.shapes.pretrain.video_i2v.evaluate_i2v`` use the same frames; GRPO rollouts only know the
prompt, hence the per-prompt seed of ``MotionFirstFrames`` there.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from fastvideo.shapes.motion_render import check_video_size, sample_motion_scene
from fastvideo.shapes.render import render_scene

FIRST_FRAME_SEED = 0
"""Default seed mixed into every prompt's scene seed."""


def first_frame_seed(prompt: str, seed: int = FIRST_FRAME_SEED) -> int:
    """The scene seed of ``prompt`` (``skyreels_i2v.prompt_seed``: stable across runs and machines)."""
    from fastvideo.models.skyreels_i2v import prompt_seed

    return prompt_seed(prompt, seed)


def scene_first_frame(prompt: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Frame 0 of ``render_video(prompt, rng, size)``: float32 (3, size, size) in [0, 1] (the start
    positions do not depend on the clip length)."""
    trajectories = sample_motion_scene(prompt, rng, check_video_size(size))
    pixels = render_scene([trajectory.at(0.0) for trajectory in trajectories], size)
    return pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


def render_first_frame(prompt: str, size: int, seed: int = FIRST_FRAME_SEED) -> np.ndarray:
    """``scene_first_frame`` of the prompt's own scene, rng ``default_rng(first_frame_seed(prompt, seed))``."""
    return scene_first_frame(prompt, np.random.default_rng(first_frame_seed(prompt, seed)), size)


def indexed_first_frames(texts: list[str], indices: list[int], seed: int, size: int) -> torch.Tensor:
    """(B, 3, size, size) in [0, 1]: ``scene_first_frame`` of ``texts[i]`` with rng
    ``default_rng([seed, indices[i]])``, a fresh scene per draw."""
    frames = [scene_first_frame(text, np.random.default_rng([seed, index]), size)
              for text, index in zip(texts, indices)]
    return torch.from_numpy(np.stack(frames))


def eval_first_frames(adapter, seed: int):
    """``fn(texts, indices) -> frames`` for the evaluation of an image-to-video adapter that renders the
    world's ground-truth first frames (``MotionFirstFrames``); None for any other adapter (text-to-video,
    or a configured first-frame file, which the evaluation then uses as the rollouts do)."""
    source = getattr(adapter, "first_frame_source", None)
    if not isinstance(source, MotionFirstFrames):
        return None
    return lambda texts, indices: indexed_first_frames(texts, indices, seed, source.size)


class MotionFirstFrames:
    """``fn(prompts) -> (B, 3, size, size)`` in [0, 1]: the ground-truth first frame of each prompt.

    ``fresh=False``: every call renders the prompt's own scene (``render_first_frame``). ``fresh=True``: call k
    (counted from ``draws``) renders it from rng ``default_rng([first_frame_seed(prompt, seed), k])``, a new scene
    per call that every copy of the prompt within the call shares. The trainer encodes the iteration's prompts
    once (one call per iteration), so ``draws = trainer.iteration`` keeps a resumed run on the same scenes."""

    def __init__(self, size: int, seed: int = FIRST_FRAME_SEED, *, fresh: bool = False, draws: int = 0):
        self.size, self.seed, self.fresh, self.draws = check_video_size(size), seed, fresh, draws

    def scene_rng(self, prompt: str) -> np.random.Generator:
        """The rng of ``prompt``'s scene in this call: its own seed, plus the call count when ``fresh``."""
        seed = first_frame_seed(prompt, self.seed)
        return np.random.default_rng([seed, self.draws] if self.fresh else seed)

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        frames = [scene_first_frame(prompt, self.scene_rng(prompt), self.size) for prompt in prompts]
        self.draws += int(self.fresh)  # a fixed scene per prompt needs no count
        return torch.from_numpy(np.stack(frames)).reshape(len(frames), 3, self.size, self.size)


def use_motion_first_frames(adapter, seed: int = FIRST_FRAME_SEED, iteration: int = 0) -> bool:
    """Give an image-to-video adapter the rendered first frames, unless a first-frame file is configured
    (``model.first_frame_file`` or its environment variable): one scene per prompt, or with
    ``model.first_frame_scenes: per_iteration`` a fresh one per prompt and iteration, counted from ``iteration``
    (a resumed run's). Returns whether the source was set."""
    if not hasattr(adapter, "set_first_frame_source"):
        return False
    from fastvideo.models.skyreels_i2v import FIRST_FRAME_ENV

    model_cfg = adapter.model_cfg
    if getattr(model_cfg, "first_frame_file", None) or os.environ.get(FIRST_FRAME_ENV):
        return False
    fresh = getattr(model_cfg, "first_frame_scenes", "per_prompt") == "per_iteration"
    adapter.set_first_frame_source(MotionFirstFrames(max(int(model_cfg.height), int(model_cfg.width)), seed,
                                                     fresh=fresh, draws=iteration))
    return True


__all__ = ["FIRST_FRAME_SEED", "MotionFirstFrames", "eval_first_frames", "first_frame_seed", "indexed_first_frames",
           "render_first_frame", "scene_first_frame", "use_motion_first_frames"]
