"""The worlds of the shapes GRPO runner: what its held-out evaluation draws, verifies and shows.

One evaluation loop (``fastvideo.shapes.policy_eval``), two small worlds:

- ``image`` (text-to-image adapters): ``num_prompts`` skill-balanced draws from the grammar's held-out
  split (``fastvideo.shapes.pretrain.base_eval.heldout_prompts``, the image model card's evaluation), checked
  by ``verifier.verify``; the before/after figure is an image grid (rows policies, columns prompts),
  upscaled, with each column's prompt, each row's name and each tile's verdict (``figure.py``).
- ``motion`` (video adapters, ``model.num_frames > 1``): ``sample_motion_prompts(num,
  default_rng(seed), split="heldout")``, the very draws of ``fastvideo.shapes.pretrain.video.evaluate_video``
  (same default ``num`` = 200 and seed, so the prompts are those of the video model card), checked by
  ``motion_verifier.verify_video``; the before/after figure is labelled as the image one (every cell the
  first / middle / last frame side by side) plus the same figure animated over every frame as a GIF
  (the GIF needs imageio, the ``[video]`` extra).

Every world verifies one sample into (score, correct, number of detections); for videos the number
of detections is the largest count over frames, so 0 means no shape was found in any frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from fastvideo.shapes.grammar import SKILLS
from fastvideo.shapes.motion import MOTION_SKILLS

logger = logging.getLogger("fastvideo")

CELL_MARGIN = 2
"""White pixels between the frames of a video figure's cell (each cell is several frames wide)."""
GIF_FPS = 4.0
VIDEO_KEY = ("Rows: policies; columns: held-out prompts; each cell: first / middle / last frame (the .gif: every "
             "frame). Frame and mark: the motion verifier's verdict on the clip (green / check: it holds).")


class ImageWorld:
    """Text-to-image shapes: grammar held-out prompts, ``verifier.verify``, an image grid."""

    name = "image"
    skills: tuple[str, ...] = SKILLS
    unit = "img"
    default_num_prompts = 400
    default_grid_per_skill = 2
    eval_info: dict = {}
    """Extra keys of summary.json's ``eval`` block (none for images: its summary stays as it was)."""

    def prompts(self, num: int, seed: int) -> list[tuple[str, str]]:
        """``num`` skill-balanced (text, skill) draws from the held-out split."""
        from fastvideo.shapes.heldout import heldout_prompts

        return heldout_prompts(num, seed)

    def verify(self, sample: torch.Tensor, text: str) -> tuple[float, bool, int]:
        """(score, correct, number of detected shapes) of one image (3, H, W) in [0, 1]."""
        from fastvideo.shapes.verifier import verify

        verdict = verify(sample, text)
        return verdict.score, verdict.correct, verdict.num_detected

    def save_figure(self, grids: list[torch.Tensor], path: Path, labels=None) -> list[Path]:
        """``path`` (PNG): one row per policy's (K, 3, H, W) images, upscaled and labelled
        (``fastvideo.shapes.figure``: prompts above, policy names left, verdict frames)."""
        from fastvideo.shapes.figure import annotated_grid

        annotated_grid(grids, labels).save(path)
        return [path]

    def legend(self) -> list[str]:
        """Lines of the figure's legend after the rows and columns."""
        return []

    def first_frames(self, adapter, seed: int):
        """``fn(texts, indices) -> first frames`` of an image-to-video evaluation, or None (images: none)."""
        return None


class MotionWorld(ImageWorld):
    """Moving shapes (text- or image-to-video): motion held-out prompts, ``verify_video``, strip + GIF."""

    name = "motion"
    skills = MOTION_SKILLS
    unit = "video"
    default_num_prompts = 200
    default_grid_per_skill = 4
    eval_info = {"prompt_draws": "sample_motion_prompts(num_prompts, default_rng(seed), split='heldout'), "
                                 "as fastvideo.shapes.pretrain.video.evaluate_video",
                 "verifier": "fastvideo.shapes.motion_verifier.verify_video",
                 "i2v_first_frames": "frame 0 of a ground-truth scene drawn from default_rng([seed, index]) "
                                     "(fastvideo.shapes.motion_frames.indexed_first_frames), unless a "
                                     "first-frame file is configured"}

    def prompts(self, num: int, seed: int) -> list[tuple[str, str]]:
        """``num`` skill-balanced (text, skill) held-out draws, exactly as the video pretraining eval."""
        from fastvideo.shapes.motion import sample_motion_prompts

        draws = sample_motion_prompts(num, np.random.default_rng(seed), split="heldout")
        return [(p.text, p.skill) for p in draws]

    def verify(self, sample: torch.Tensor, text: str) -> tuple[float, bool, int]:
        """(score, correct, most shapes detected in one frame) of one video (T, 3, H, W) in [0, 1]."""
        from fastvideo.shapes.motion_verifier import verify_video

        verdict = verify_video(sample, text)
        return verdict.score, verdict.correct, max(len(frame) for frame in verdict.detections)

    def save_figure(self, grids: list[torch.Tensor], path: Path, labels=None) -> list[Path]:
        """``path``: the labelled figure (``figure.py``: prompts above, policy names and held-out accuracy
        left, the verifier's verdict on the clip as each cell's frame) whose cells are the first, middle
        and last frames side by side; ``path``.gif: the same figure over every frame in turn."""
        from dataclasses import replace

        from fastvideo.inference.video import to_uint8, write_animation
        from fastvideo.shapes.figure import VIDEO_TILE_TARGET, FigureLabels, annotated_grid

        labels = replace(labels or FigureLabels(), key=VIDEO_KEY)
        videos = [[to_uint8(video) for video in grid] for grid in grids]  # [row][column]: (T, H, W, 3)
        strips = [np.stack([_frame_strip(video) for video in row]) for row in videos]
        annotated_grid(strips, labels, VIDEO_TILE_TARGET).save(path)
        frames = [np.asarray(annotated_grid([np.stack([video[t] for video in row]) for row in videos], labels,
                                            VIDEO_TILE_TARGET)) for t in range(videos[0][0].shape[0])]
        try:
            return [path, write_animation(np.stack(frames), path.with_suffix(".gif"), GIF_FPS)]
        except ImportError as err:  # imageio is the optional [video] extra: keep the run's other artefacts
            logger.warning("no %s (%s; pip install -e .[video])", path.with_suffix(".gif"), err)
            return [path]

    def first_frames(self, adapter, seed: int):
        """Image-to-video: a fresh ground-truth first frame per evaluation index (``eval_first_frames``)."""
        from fastvideo.shapes.motion_frames import eval_first_frames

        return eval_first_frames(adapter, seed)

    def legend(self) -> list[str]:
        return [f"cells: frames first / middle / last left to right; every frame at {GIF_FPS:g} fps in the .gif"]


def _frame_strip(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (H, F * W + (F - 1) * CELL_MARGIN, 3): the first / middle / last frames
    (``frame_picks``) left to right, with white CELL_MARGIN-px lines between them."""
    from fastvideo.inference.video import frame_picks

    white = np.full((video.shape[1], CELL_MARGIN, 3), 255, np.uint8)
    pieces = [piece for t in frame_picks(video.shape[0]) for piece in (white, video[t])][1:]
    return np.concatenate(pieces, axis=1)


IMAGE_WORLD = ImageWorld()
MOTION_WORLD = MotionWorld()
WORLDS: dict[str, ImageWorld] = {world.name: world for world in (IMAGE_WORLD, MOTION_WORLD)}
AUTO = "auto"


def is_video_adapter(adapter) -> bool:
    """True when the adapter samples videos: its model config asks for more than one frame."""
    model_cfg = getattr(adapter, "model_cfg", None)
    return int(getattr(model_cfg, "num_frames", 1) or 1) > 1


def get_world(name: str = AUTO, adapter=None) -> ImageWorld:
    """The world called ``name``; ``auto``: ``motion`` for a video adapter, else ``image``."""
    if name == AUTO:
        return MOTION_WORLD if adapter is not None and is_video_adapter(adapter) else IMAGE_WORLD
    if name not in WORLDS:
        raise ValueError(f"unknown shapes world {name!r}; expected one of {[AUTO, *WORLDS]}")
    return WORLDS[name]


__all__ = ["AUTO", "IMAGE_WORLD", "MOTION_WORLD", "WORLDS", "ImageWorld", "MotionWorld", "get_world",
           "is_video_adapter"]
